//! The cosigner store's taproot half: this cosigner's MuSig2 leaf secret (created once),
//! taproot channel states, and the MuSig2 secret nonces it handed out per channel — fresh
//! signing nonces (at most [`MUSIG_NONCES_PER_CHANNEL`] unused, oldest dropped) and
//! verification nonces, each pinned to one holder commitment (at most
//! [`VERIFICATION_NONCES_PER_CHANNEL`], never dropped but by that commitment's revocation).
//!
//! MuSig2 nonce ids come from their own monotonic counter in the same transactions: an id
//! below it that is no longer stored was consumed, at or above it was never handed out.
//! A taproot request is judged inside one write transaction with the channel state and the
//! payment entries it touches; if approved, the new state, the entries and the removal of
//! the nonce it signs with commit together, before the nonce's secret is returned.
//!
//! Must never: return a secret nonce for signing before its removal committed, hand a
//! nonce of one channel to another, let a nonce be consumed twice, or let a verification
//! nonce sign anything but its own holder commitment.

use redb::{ReadableTable, ReadableTableMetadata, TableDefinition};

use qls_protocol::ChannelKeysId;
use qls_signer_core::channel::PaymentIndex;
use qls_signer_core::musig2::{nonce_gen, PubNonce, SecNonce};
use qls_signer_core::policy::ChannelPolicy;
use qls_signer_core::taproot_channel::TaprootChannelState;

use crate::channel_store::{load_index, save_index, NODE, PAYMENTS};
use crate::store::{db_err, Store, StoreError};

const TAPROOT_CHANNELS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("taproot_channels");
/// nonce id → channel id (32 bytes) ‖ BIP-327 secret nonce (97 bytes) [‖ holder
/// commitment number (8 bytes, big-endian) for a verification nonce].
const MUSIG_NONCES: TableDefinition<u64, &[u8]> = TableDefinition::new("musig_nonces");
const MUSIG_META: TableDefinition<&str, &[u8]> = TableDefinition::new("musig_meta");
const NEXT_ID: &str = "next_nonce_id";
const LEAF_SECRET: &str = "leaf_secret";
/// Unused fresh MuSig2 nonces one channel may hold.
pub const MUSIG_NONCES_PER_CHANNEL: usize = 64;
/// Verification nonces one channel may hold (the latest holder commitment's, the next
/// one's, and slack for a retry).
pub const VERIFICATION_NONCES_PER_CHANNEL: usize = 4;

/// Which nonce a signature may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceUse {
    /// A fresh signing nonce (never a verification nonce).
    Fresh(u64),
    /// The verification nonce of holder commitment `commitment` (found by commitment).
    Verification { commitment: u64 },
}

/// What a judged taproot request leaves to persist.
pub struct TaprootUpdate<R> {
    /// `Some` to write the channel state (approved and changed).
    pub state: Option<TaprootChannelState>,
    pub write_payments: bool,
    /// The nonce to consume, in the same transaction (approved signing requests).
    pub consume: Option<NonceUse>,
    /// Drop the verification nonces of holder commitments at or below this number.
    pub drop_verification_upto: Option<u64>,
    pub result: R,
}

struct NonceRecord {
    channel: [u8; 32],
    sec: [u8; 97],
    commitment: Option<u64>,
}

fn decode(bytes: &[u8]) -> Result<NonceRecord, StoreError> {
    let corrupt = || StoreError::Corrupt("secret nonce");
    if bytes.len() != 129 && bytes.len() != 137 {
        return Err(corrupt());
    }
    Ok(NonceRecord {
        channel: bytes[..32].try_into().map_err(|_| corrupt())?,
        sec: bytes[32..129].try_into().map_err(|_| corrupt())?,
        commitment: match bytes.get(129..137) {
            Some(n) => Some(u64::from_be_bytes(n.try_into().map_err(|_| corrupt())?)),
            None => None,
        },
    })
}

fn encode(channel: &ChannelKeysId, sec: &SecNonce, commitment: Option<u64>) -> Vec<u8> {
    let mut record = Vec::with_capacity(137);
    record.extend_from_slice(channel);
    record.extend_from_slice(&sec.to_bytes());
    if let Some(n) = commitment {
        record.extend_from_slice(&n.to_be_bytes());
    }
    record
}

/// Every nonce of `channel`: (id, record).
fn channel_nonces(
    nonces: &impl ReadableTable<u64, &'static [u8]>,
    channel: &ChannelKeysId,
) -> Result<Vec<(u64, NonceRecord)>, StoreError> {
    let mut out = Vec::new();
    for row in nonces.iter().map_err(db_err)? {
        let (id, v) = row.map_err(db_err)?;
        if v.value().get(..32) == Some(channel.as_slice()) {
            out.push((id.value(), decode(v.value())?));
        }
    }
    Ok(out)
}

fn next_id(meta: &impl ReadableTable<&'static str, &'static [u8]>) -> Result<u64, StoreError> {
    match meta.get(NEXT_ID).map_err(db_err)? {
        Some(v) => Ok(u64::from_be_bytes(v.value().try_into().map_err(|_| StoreError::Corrupt("nonce counter"))?)),
        None => Ok(1),
    }
}

/// Inside `txn`: removes every MuSig2 nonce but the verification nonces of validated
/// holder commitments (see [`Store::forget_nonces_at_start`]); returns how many went.
pub(crate) fn forget_unpinned_musig_nonces(txn: &redb::WriteTransaction) -> Result<usize, StoreError> {
    let mut nonces = txn.open_table(MUSIG_NONCES).map_err(db_err)?;
    let channels = txn.open_table(TAPROOT_CHANNELS).map_err(db_err)?;
    let mut forget = Vec::new();
    for row in nonces.iter().map_err(db_err)? {
        let (id, v) = row.map_err(db_err)?;
        let record = decode(v.value())?;
        let validated = match record.commitment {
            None => false,
            Some(n) => match channels.get(record.channel.as_slice()).map_err(db_err)? {
                Some(state) => postcard::from_bytes::<TaprootChannelState>(state.value())
                    .map_err(|_| StoreError::Corrupt("taproot channel state"))?
                    .holder_latest
                    .is_some_and(|h| h.info.commitment_number == n),
                None => false,
            },
        };
        if !validated {
            forget.push(id.value());
        }
    }
    for id in &forget {
        nonces.remove(*id).map_err(db_err)?;
    }
    Ok(forget.len())
}

impl Store {
    /// This cosigner's MuSig2 leaf secret, created (from `fresh`) and stored on first use.
    pub fn musig_leaf_secret(&self, fresh: impl FnOnce() -> [u8; 32]) -> Result<[u8; 32], StoreError> {
        let txn = self.db().begin_write().map_err(db_err)?;
        let secret;
        {
            let mut meta = txn.open_table(MUSIG_META).map_err(db_err)?;
            let stored = meta.get(LEAF_SECRET).map_err(db_err)?.map(|v| v.value().to_vec());
            secret = match stored {
                Some(v) => v.try_into().map_err(|_| StoreError::Corrupt("leaf secret"))?,
                None => {
                    let s = fresh();
                    meta.insert(LEAF_SECRET, s.as_slice()).map_err(db_err)?;
                    s
                }
            };
        }
        txn.commit().map_err(db_err)?;
        Ok(secret)
    }

    pub fn taproot_channel(&self, channel: &ChannelKeysId) -> Result<Option<TaprootChannelState>, StoreError> {
        let txn = self.db().begin_read().map_err(db_err)?;
        let table = match txn.open_table(TAPROOT_CHANNELS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(db_err(e)),
        };
        match table.get(channel.as_slice()).map_err(db_err)? {
            Some(v) => Ok(Some(postcard::from_bytes(v.value()).map_err(|_| StoreError::Corrupt("taproot channel"))?)),
            None => Ok(None),
        }
    }

    pub fn put_taproot_channel(&self, channel: &ChannelKeysId, state: &TaprootChannelState) -> Result<(), StoreError> {
        let bytes = postcard::to_allocvec(state).map_err(|_| StoreError::Corrupt("taproot channel encoding"))?;
        let txn = self.db().begin_write().map_err(db_err)?;
        txn.open_table(TAPROOT_CHANNELS)
            .map_err(db_err)?
            .insert(channel.as_slice(), bytes.as_slice())
            .map_err(db_err)?;
        txn.commit().map_err(db_err)
    }

    /// Creates `count` (at most [`MUSIG_NONCES_PER_CHANNEL`]) nonces for `channel` under the
    /// channel leaf key `leaf`; durable before this returns.
    pub fn new_musig_nonces(
        &self,
        channel: &ChannelKeysId,
        leaf: &[u8; 33],
        count: usize,
        mut rand: impl FnMut() -> [u8; 32],
    ) -> Result<Vec<(u64, PubNonce)>, StoreError> {
        let count = count.min(MUSIG_NONCES_PER_CHANNEL);
        let txn = self.db().begin_write().map_err(db_err)?;
        let mut out = Vec::with_capacity(count);
        {
            let mut nonces = txn.open_table(MUSIG_NONCES).map_err(db_err)?;
            // Unused nonces of this channel beyond the bound are dropped, oldest first
            // (never used, so dropping is safe; a session naming one is refused).
            let held: Vec<u64> = channel_nonces(&nonces, channel)?
                .into_iter()
                .filter(|(_, r)| r.commitment.is_none())
                .map(|(id, _)| id)
                .collect();
            let excess = (held.len() + count).saturating_sub(MUSIG_NONCES_PER_CHANNEL);
            for id in held.iter().take(excess) {
                nonces.remove(*id).map_err(db_err)?;
            }
            let mut meta = txn.open_table(MUSIG_META).map_err(db_err)?;
            let mut next = next_id(&meta)?;
            for _ in 0..count {
                // Fresh randomness for every nonce (never derived from the message or key).
                let (sec, public) = nonce_gen(&rand(), None, leaf, None, None, None)
                    .map_err(|e| StoreError::Generate(e.to_string()))?;
                nonces.insert(next, encode(channel, &sec, None).as_slice()).map_err(db_err)?;
                out.push((next, public));
                next += 1;
            }
            meta.insert(NEXT_ID, next.to_be_bytes().as_slice()).map_err(db_err)?;
        }
        txn.commit().map_err(db_err)?;
        Ok(out)
    }

    /// The verification nonce of holder commitment `commitment` of `channel`: the stored one,
    /// or a fresh one stored durably before this returns.
    pub fn verification_nonce(
        &self,
        channel: &ChannelKeysId,
        commitment: u64,
        leaf: &[u8; 33],
        rand: impl FnOnce() -> [u8; 32],
    ) -> Result<(u64, PubNonce), StoreError> {
        let txn = self.db().begin_write().map_err(db_err)?;
        let out;
        {
            let mut nonces = txn.open_table(MUSIG_NONCES).map_err(db_err)?;
            let pinned: Vec<(u64, NonceRecord)> =
                channel_nonces(&nonces, channel)?.into_iter().filter(|(_, r)| r.commitment.is_some()).collect();
            if let Some((id, r)) = pinned.iter().find(|(_, r)| r.commitment == Some(commitment)) {
                return Ok((*id, SecNonce::from_bytes(r.sec).public_nonce()));
            }
            if pinned.len() >= VERIFICATION_NONCES_PER_CHANNEL {
                return Err(StoreError::TooManyVerificationNonces { commitment, held: pinned.len() });
            }
            let mut meta = txn.open_table(MUSIG_META).map_err(db_err)?;
            let id = next_id(&meta)?;
            let (sec, public) =
                nonce_gen(&rand(), None, leaf, None, None, None).map_err(|e| StoreError::Generate(e.to_string()))?;
            nonces.insert(id, encode(channel, &sec, Some(commitment)).as_slice()).map_err(db_err)?;
            meta.insert(NEXT_ID, (id + 1).to_be_bytes().as_slice()).map_err(db_err)?;
            out = (id, public);
        }
        txn.commit().map_err(db_err)?;
        Ok(out)
    }

    /// Judges a taproot request inside one write transaction: `judge` gets the channel's
    /// stored state and the payment entries for `hashes`; what it returns is persisted
    /// together with the consumption of the nonce it names, and that nonce's secret is
    /// returned only after the commit. Nothing is written when `judge` fails.
    pub fn update_taproot<R, E>(
        &self,
        channel: &ChannelKeysId,
        hashes: impl FnOnce(Option<&TaprootChannelState>) -> Vec<[u8; 32]>,
        limits: &ChannelPolicy,
        now: u64,
        judge: impl FnOnce(Option<TaprootChannelState>, &mut PaymentIndex) -> Result<TaprootUpdate<R>, E>,
    ) -> Result<Result<(R, Option<SecNonce>), E>, StoreError> {
        let txn = self.db().begin_write().map_err(db_err)?;
        let outcome;
        {
            let mut channels = txn.open_table(TAPROOT_CHANNELS).map_err(db_err)?;
            let current: Option<TaprootChannelState> = match channels.get(channel.as_slice()).map_err(db_err)? {
                Some(v) => Some(postcard::from_bytes(v.value()).map_err(|_| StoreError::Corrupt("taproot channel"))?),
                None => None,
            };
            let mut payments = txn.open_table(PAYMENTS).map_err(db_err)?;
            let mut node = txn.open_table(NODE).map_err(db_err)?;
            let hashes = hashes(current.as_ref());
            let (mut index, velocity) = load_index(&mut payments, &node, &hashes, limits, now)?;
            match judge(current, &mut index) {
                Err(e) => outcome = Err(e),
                Ok(update) => {
                    let mut nonces = txn.open_table(MUSIG_NONCES).map_err(db_err)?;
                    let next = next_id(&txn.open_table(MUSIG_META).map_err(db_err)?)?;
                    let sec = match update.consume {
                        None => None,
                        Some(NonceUse::Fresh(id)) => {
                            let record = match nonces.remove(id).map_err(db_err)? {
                                Some(v) => decode(v.value())?,
                                None if id < next => return Err(StoreError::ConsumedNonce(id)),
                                None => return Err(StoreError::UnknownNonce(id)),
                            };
                            if record.channel != *channel {
                                return Err(StoreError::WrongKey { id });
                            }
                            if let Some(commitment) = record.commitment {
                                return Err(StoreError::VerificationNonce { id, commitment });
                            }
                            Some(SecNonce::from_bytes(record.sec))
                        }
                        Some(NonceUse::Verification { commitment }) => {
                            let found = channel_nonces(&nonces, channel)?
                                .into_iter()
                                .find(|(_, r)| r.commitment == Some(commitment));
                            let Some((id, record)) = found else {
                                return Err(StoreError::NoVerificationNonce { commitment });
                            };
                            nonces.remove(id).map_err(db_err)?;
                            Some(SecNonce::from_bytes(record.sec))
                        }
                    };
                    if let Some(upto) = update.drop_verification_upto {
                        for (id, r) in channel_nonces(&nonces, channel)? {
                            if r.commitment.is_some_and(|n| n <= upto) {
                                nonces.remove(id).map_err(db_err)?;
                            }
                        }
                    }
                    if let Some(state) = &update.state {
                        let bytes = postcard::to_allocvec(state)
                            .map_err(|_| StoreError::Corrupt("taproot channel encoding"))?;
                        channels.insert(channel.as_slice(), bytes.as_slice()).map_err(db_err)?;
                    }
                    if update.write_payments {
                        save_index(&mut payments, &mut node, &index, &velocity)?;
                    }
                    outcome = Ok((update.result, sec));
                }
            }
        }
        if outcome.is_ok() {
            txn.commit().map_err(db_err)?;
        } else {
            txn.abort().map_err(db_err)?;
        }
        Ok(outcome)
    }

    /// The public verification nonce of holder commitment `commitment`, if stored.
    pub fn verification_pubnonce(
        &self,
        channel: &ChannelKeysId,
        commitment: u64,
    ) -> Result<Option<(u64, [u8; 66])>, StoreError> {
        let txn = self.db().begin_read().map_err(db_err)?;
        let nonces = match txn.open_table(MUSIG_NONCES) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(db_err(e)),
        };
        Ok(channel_nonces(&nonces, channel)?
            .into_iter()
            .find(|(_, r)| r.commitment == Some(commitment))
            .map(|(id, r)| (id, SecNonce::from_bytes(r.sec).public_nonce().0)))
    }

    /// Taproot channels stored.
    pub fn taproot_channel_count(&self) -> Result<usize, StoreError> {
        let txn = self.db().begin_read().map_err(db_err)?;
        match txn.open_table(TAPROOT_CHANNELS) {
            Ok(t) => Ok(t.len().map_err(db_err)? as usize),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
            Err(e) => Err(db_err(e)),
        }
    }

    /// The public nonce of stored nonce `id` of `channel`, without consuming it.
    pub fn musig_pubnonce(&self, channel: &ChannelKeysId, id: u64) -> Result<Option<[u8; 66]>, StoreError> {
        let txn = self.db().begin_read().map_err(db_err)?;
        let nonces = match txn.open_table(MUSIG_NONCES) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(db_err(e)),
        };
        let Some(v) = nonces.get(id).map_err(db_err)? else { return Ok(None) };
        let record = decode(v.value())?;
        if record.channel != *channel {
            return Ok(None);
        }
        Ok(Some(SecNonce::from_bytes(record.sec).public_nonce().0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Consumes nonce `use_` of `channel` through the request path (no state change).
    fn consume(store: &Store, channel: &ChannelKeysId, use_: NonceUse) -> Result<SecNonce, StoreError> {
        let policy = ChannelPolicy::default();
        let out = store.update_taproot(
            channel,
            |_| Vec::new(),
            &policy,
            0,
            |_, _| {
                Ok::<_, ()>(TaprootUpdate {
                    state: None,
                    write_payments: false,
                    consume: Some(use_),
                    drop_verification_upto: None,
                    result: (),
                })
            },
        )?;
        Ok(out.expect("judge never fails here").1.expect("a nonce was consumed"))
    }

    #[test]
    fn a_musig_nonce_is_consumed_once_survives_reopen_and_stays_with_its_channel() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let leaf = bitcoin::secp256k1::PublicKey::from_secret_key(
            &bitcoin::secp256k1::Secp256k1::new(),
            &bitcoin::secp256k1::SecretKey::from_slice(&[3; 32]).unwrap(),
        )
        .serialize();
        let mut r = 0u8;
        let mut rand = || {
            r += 1;
            [r; 32]
        };
        let made = {
            let store = Store::open(&path).unwrap();
            let made = store.new_musig_nonces(&[1; 32], &leaf, 3, &mut rand).unwrap();
            assert_eq!(store.musig_pubnonce(&[1; 32], made[0].0).unwrap(), Some(made[0].1 .0));
            let sec = consume(&store, &[1; 32], NonceUse::Fresh(made[0].0)).unwrap();
            assert_eq!(sec.public_nonce(), made[0].1);
            made
        };
        // After a restart: consumed stays consumed, another channel cannot take a nonce,
        // an id never handed out is unknown.
        let store = Store::open(&path).unwrap();
        assert!(matches!(consume(&store, &[1; 32], NonceUse::Fresh(made[0].0)), Err(StoreError::ConsumedNonce(_))));
        assert!(matches!(consume(&store, &[2; 32], NonceUse::Fresh(made[1].0)), Err(StoreError::WrongKey { .. })));
        assert!(matches!(consume(&store, &[1; 32], NonceUse::Fresh(999)), Err(StoreError::UnknownNonce(999))));
        assert!(consume(&store, &[1; 32], NonceUse::Fresh(made[1].0)).is_ok());
        // The per-channel bound drops the oldest unused nonces, never grows past it.
        let more = store.new_musig_nonces(&[1; 32], &leaf, MUSIG_NONCES_PER_CHANNEL, &mut rand).unwrap();
        assert_eq!(more.len(), MUSIG_NONCES_PER_CHANNEL);
        assert_eq!(store.musig_pubnonce(&[1; 32], made[2].0).unwrap(), None, "oldest unused nonce dropped");
        let ids: std::collections::BTreeSet<u64> = made.iter().chain(&more).map(|(id, _)| *id).collect();
        assert_eq!(ids.len(), 3 + MUSIG_NONCES_PER_CHANNEL, "ids are never reused");
    }

    #[test]
    fn a_verification_nonce_is_pinned_to_its_commitment_bounded_and_dropped_on_revocation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let leaf = bitcoin::secp256k1::PublicKey::from_secret_key(
            &bitcoin::secp256k1::Secp256k1::new(),
            &bitcoin::secp256k1::SecretKey::from_slice(&[3; 32]).unwrap(),
        )
        .serialize();
        let c = [1u8; 32];
        let (v5, v6) = {
            let store = Store::open(&path).unwrap();
            let v5 = store.verification_nonce(&c, 5, &leaf, || [5; 32]).unwrap();
            // Asked again: the same nonce, not a new one.
            assert_eq!(store.verification_nonce(&c, 5, &leaf, || [9; 32]).unwrap(), v5);
            let v6 = store.verification_nonce(&c, 6, &leaf, || [6; 32]).unwrap();
            (v5, v6)
        };
        let store = Store::open(&path).unwrap();
        assert_eq!(store.verification_pubnonce(&c, 5).unwrap(), Some((v5.0, v5.1 .0)), "survives a restart");
        // It never signs as a fresh nonce, and fresh nonces never evict it.
        assert!(matches!(
            consume(&store, &c, NonceUse::Fresh(v5.0)),
            Err(StoreError::VerificationNonce { commitment: 5, .. })
        ));
        store.new_musig_nonces(&c, &leaf, MUSIG_NONCES_PER_CHANNEL, || [7; 32]).unwrap();
        assert!(store.verification_pubnonce(&c, 5).unwrap().is_some());
        // Bounded per channel.
        store.verification_nonce(&c, 7, &leaf, || [7; 32]).unwrap();
        store.verification_nonce(&c, 8, &leaf, || [8; 32]).unwrap();
        assert!(matches!(
            store.verification_nonce(&c, 9, &leaf, || [9; 32]),
            Err(StoreError::TooManyVerificationNonces { .. })
        ));
        // Used once for its commitment; then gone.
        let sec = consume(&store, &c, NonceUse::Verification { commitment: 6 }).unwrap();
        assert_eq!(sec.public_nonce(), v6.1);
        assert!(matches!(
            consume(&store, &c, NonceUse::Verification { commitment: 6 }),
            Err(StoreError::NoVerificationNonce { commitment: 6 })
        ));
        // A revocation up to 7 drops 5 and 7, keeps 8.
        let policy = ChannelPolicy::default();
        store
            .update_taproot(
                &c,
                |_| Vec::new(),
                &policy,
                0,
                |_, _| {
                    Ok::<_, ()>(TaprootUpdate {
                        state: None,
                        write_payments: false,
                        consume: None,
                        drop_verification_upto: Some(7),
                        result: (),
                    })
                },
            )
            .unwrap()
            .unwrap();
        assert_eq!(store.verification_pubnonce(&c, 5).unwrap(), None);
        assert_eq!(store.verification_pubnonce(&c, 7).unwrap(), None);
        assert!(store.verification_pubnonce(&c, 8).unwrap().is_some());
    }
}
