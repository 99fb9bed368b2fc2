//! Property test of the nonce store against a reference model: random sequences of
//! generate / load / consume (sometimes batched, sometimes duplicated) / reopen. The
//! store must agree with the model on every outcome, and no nonce may ever be consumed
//! twice, across reopens (which stand in for crashes: every committed change is durable).

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use qls_cosigner::store::{Store, StoreError};
use qls_signer_core::dealer;
use qls_signer_core::frost::round1;
use rand::SeedableRng;

#[derive(Debug, Clone)]
enum Op {
    Generate(u32),
    Load(Vec<u64>),
    Consume(Vec<u64>),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1u32..6).prop_map(Op::Generate),
        prop::collection::vec(0u64..14, 1..3).prop_map(Op::Load),
        prop::collection::vec(0u64..14, 1..3).prop_map(Op::Consume),
        Just(Op::Reopen),
    ]
}

#[derive(Default)]
struct Model {
    next: u64,
    unused: BTreeSet<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Ok,
    Duplicate,
    Consumed,
    Unknown,
}

impl Model {
    fn check(&self, ids: &[u64]) -> Expect {
        let mut seen = BTreeSet::new();
        if ids.iter().any(|i| !seen.insert(*i)) {
            return Expect::Duplicate;
        }
        for id in ids {
            if !self.unused.contains(id) {
                return if *id < self.next { Expect::Consumed } else { Expect::Unknown };
            }
        }
        Expect::Ok
    }
}

fn classify<T>(r: &Result<T, StoreError>) -> Expect {
    match r {
        Ok(_) => Expect::Ok,
        Err(StoreError::DuplicateNonce(_)) => Expect::Duplicate,
        Err(StoreError::ConsumedNonce(_)) => Expect::Consumed,
        Err(StoreError::UnknownNonce(_)) => Expect::Unknown,
        Err(e) => panic!("unexpected store error {e}"),
    }
}

const POOL_MAX: u32 = 8;

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn store_matches_model_and_never_consumes_twice(ops in prop::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(9);
        let share = dealer::split(None, &[[1; 32], [2; 32]], 2, &mut rng).unwrap().remove(0).1;
        let key = share.key_id();
        let mut store = Store::open(&path).unwrap();
        store.put_key(&share).unwrap();
        // The model starts where the store's counter starts (ids from 1).
        let mut model = Model { next: 1, ..Model::default() };
        let mut consumed_ever: BTreeMap<u64, usize> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Generate(count) => {
                    let got = store
                        .nonce_commitments(&key, Some(model.next - 1), count, POOL_MAX, || {
                            round1::commit(share.key_package.signing_share(), &mut rng).0
                        })
                        .unwrap();
                    let room = (POOL_MAX as usize).saturating_sub(model.unused.len());
                    prop_assert_eq!(got.len(), (count as usize).min(room));
                    for (id, _) in got {
                        prop_assert_eq!(id, model.next);
                        model.unused.insert(id);
                        model.next += 1;
                    }
                }
                Op::Load(ids) => {
                    prop_assert_eq!(classify(&store.load_nonces(&key, &ids)), model.check(&ids));
                }
                Op::Consume(ids) => {
                    let want = model.check(&ids);
                    prop_assert_eq!(classify(&store.consume_nonces(&key, &ids)), want);
                    if matches!(want, Expect::Ok) {
                        for id in ids {
                            model.unused.remove(&id);
                            *consumed_ever.entry(id).or_default() += 1;
                        }
                    }
                }
                Op::Reopen => {
                    drop(store);
                    store = Store::open(&path).unwrap();
                }
            }
            prop_assert_eq!(store.unused_nonces(&key).unwrap(), model.unused.len());
        }
        prop_assert!(consumed_ever.values().all(|n| *n == 1), "a nonce was consumed twice");
    }
}
