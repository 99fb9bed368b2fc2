//! The cosigner's embedded ACID store (`redb`): key shares and the secret nonce pool.
//! One write transaction per state change; redb commits durably (fsync) by default, so a
//! crash leaves either the old or the new state.
//!
//! Nonce ids are allocated from a monotonic counter kept in the same transactions, so an
//! id below the counter that is no longer stored was consumed, and an id at or above it
//! was never handed out — both are refused, with no unbounded "consumed" table.
//!
//! Must never: return from [`Store::consume_nonces`] before the removal is durable, or
//! hand the same secret nonce to two signing sessions.

use std::path::Path;

use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};

use qls_protocol::KeyId;
use qls_signer_core::frost::round1::SigningNonces;
use qls_signer_core::keys::KeyShare;

const KEYS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("keys");
/// nonce id → key id (32 bytes) ‖ serialized `SigningNonces`.
const NONCES: TableDefinition<u64, &[u8]> = TableDefinition::new("nonces");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const NEXT_NONCE_ID: &str = "next_nonce_id";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store: {0}")]
    Db(String),
    #[error("stored record is corrupt: {0}")]
    Corrupt(&'static str),
    #[error("unknown key {0}")]
    UnknownKey(String),
    #[error("nonce {0} was never handed out")]
    UnknownNonce(u64),
    #[error("nonce {0} has already been consumed")]
    ConsumedNonce(u64),
    #[error("nonce {id} belongs to another key")]
    WrongKey { id: u64 },
    #[error("nonce {0} appears twice in one request")]
    DuplicateNonce(u64),
    #[error("nonce generation failed: {0}")]
    Generate(String),
    #[error("nonce {id} is the verification nonce of holder commitment {commitment}: it signs nothing else")]
    VerificationNonce { id: u64, commitment: u64 },
    #[error("no verification nonce is stored for holder commitment {commitment} (never made, used or revoked)")]
    NoVerificationNonce { commitment: u64 },
    #[error(
        "verification nonce for holder commitment {commitment} refused: {held} are held, the most a channel may hold"
    )]
    TooManyVerificationNonces { commitment: u64, held: usize },
    #[error("holder commitment {commitment}'s force close was signed over another message")]
    ForceCloseMessage { commitment: u64 },
    #[error("holder commitment {commitment}'s force close is signed: it gets no other verification nonce")]
    ForceCloseSigned { commitment: u64 },
    #[error("partial signature failed: {0}")]
    Sign(String),
}

pub(crate) fn db_err<E: Into<redb::Error>>(e: E) -> StoreError {
    StoreError::Db(e.into().to_string())
}

pub struct Store {
    db: Database,
}

/// redb's page cache. Channel states and nonces live on disk and are read per request;
/// the cache bounds the store's memory whatever the number of channels (redb's default
/// would let it grow to 1 GiB).
pub const STORE_CACHE_BYTES: usize = 64 << 20;

impl Store {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::builder().set_cache_size(STORE_CACHE_BYTES).create(path).map_err(db_err)?;
        let txn = db.begin_write().map_err(db_err)?;
        {
            txn.open_table(KEYS).map_err(db_err)?;
            txn.open_table(NONCES).map_err(db_err)?;
            txn.open_table(crate::channel_store::CHANNELS).map_err(db_err)?;
            txn.open_table(crate::channel_store::PAYMENTS).map_err(db_err)?;
            let mut meta = txn.open_table(META).map_err(db_err)?;
            if meta.get(NEXT_NONCE_ID).map_err(db_err)?.is_none() {
                meta.insert(NEXT_NONCE_ID, 1).map_err(db_err)?;
            }
        }
        txn.commit().map_err(db_err)?;
        Ok(Self { db })
    }

    pub(crate) fn db(&self) -> &Database {
        &self.db
    }

    pub fn put_key(&self, share: &KeyShare) -> Result<(), StoreError> {
        let bytes = share.to_bytes().map_err(|_| StoreError::Corrupt("key share encoding"))?;
        let txn = self.db.begin_write().map_err(db_err)?;
        txn.open_table(KEYS).map_err(db_err)?.insert(share.key_id().as_slice(), bytes.as_slice()).map_err(db_err)?;
        txn.commit().map_err(db_err)
    }

    pub fn key(&self, key_id: &KeyId) -> Result<KeyShare, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(KEYS).map_err(db_err)?;
        let v =
            table.get(key_id.as_slice()).map_err(db_err)?.ok_or_else(|| StoreError::UnknownKey(hex::encode(key_id)))?;
        KeyShare::from_bytes(v.value()).map_err(|_| StoreError::Corrupt("key share"))
    }

    /// The ids of the stored keys, without decoding the shares.
    pub fn key_ids(&self) -> Result<Vec<KeyId>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(KEYS).map_err(db_err)?;
        let mut out = Vec::new();
        for row in table.iter().map_err(db_err)? {
            let (k, _) = row.map_err(db_err)?;
            out.push(k.value().try_into().map_err(|_| StoreError::Corrupt("key id"))?);
        }
        Ok(out)
    }

    pub fn keys(&self) -> Result<Vec<KeyShare>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(KEYS).map_err(db_err)?;
        let mut out = Vec::new();
        for row in table.iter().map_err(db_err)? {
            let (_, v) = row.map_err(db_err)?;
            out.push(KeyShare::from_bytes(v.value()).map_err(|_| StoreError::Corrupt("key share"))?);
        }
        Ok(out)
    }

    /// Up to `count` unused nonce commitments of `key_id` with ids above `after_id`:
    /// stored ones first, then fresh ones from `generate` while the key's pool holds
    /// fewer than `pool_max` unused nonces. New nonces are durable before this returns.
    pub fn nonce_commitments(
        &self,
        key_id: &KeyId,
        after_id: Option<u64>,
        count: u32,
        pool_max: u32,
        mut generate: impl FnMut() -> SigningNonces,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let txn = self.db.begin_write().map_err(db_err)?;
        let mut out = Vec::new();
        {
            let mut nonces = txn.open_table(NONCES).map_err(db_err)?;
            let mut unused = 0u32;
            for row in nonces.iter().map_err(db_err)? {
                let (id, v) = row.map_err(db_err)?;
                let (owner, body) = split_record(v.value())?;
                if owner != key_id {
                    continue;
                }
                unused += 1;
                if after_id.is_none_or(|a| id.value() > a) && out.len() < count as usize {
                    out.push((id.value(), commitments_of(body)?));
                }
            }
            let mut meta = txn.open_table(META).map_err(db_err)?;
            let mut next =
                meta.get(NEXT_NONCE_ID).map_err(db_err)?.ok_or(StoreError::Corrupt("nonce counter"))?.value();
            let room = pool_max.saturating_sub(unused) as usize;
            let fresh = (count as usize).saturating_sub(out.len()).min(room);
            for _ in 0..fresh {
                let n = generate();
                let body = n.serialize().map_err(|e| StoreError::Generate(e.to_string()))?;
                let mut record = Vec::with_capacity(32 + body.len());
                record.extend_from_slice(key_id);
                record.extend_from_slice(&body);
                nonces.insert(next, record.as_slice()).map_err(db_err)?;
                out.push((next, n.commitments().serialize().map_err(|e| StoreError::Generate(e.to_string()))?));
                next += 1;
            }
            meta.insert(NEXT_NONCE_ID, next).map_err(db_err)?;
        }
        txn.commit().map_err(db_err)?;
        Ok(out)
    }

    /// The secret nonces for `ids`, without consuming them.
    pub fn load_nonces(&self, key_id: &KeyId, ids: &[u64]) -> Result<Vec<SigningNonces>, StoreError> {
        reject_duplicates(ids)?;
        let txn = self.db.begin_read().map_err(db_err)?;
        let nonces = txn.open_table(NONCES).map_err(db_err)?;
        let next =
            txn.open_table(META).map_err(db_err)?.get(NEXT_NONCE_ID).map_err(db_err)?.map(|v| v.value()).unwrap_or(1);
        ids.iter()
            .map(|id| match nonces.get(*id).map_err(db_err)? {
                Some(v) => {
                    let (owner, body) = split_record(v.value())?;
                    if owner != key_id {
                        return Err(StoreError::WrongKey { id: *id });
                    }
                    SigningNonces::deserialize(body).map_err(|_| StoreError::Corrupt("secret nonce"))
                }
                None if *id < next => Err(StoreError::ConsumedNonce(*id)),
                None => Err(StoreError::UnknownNonce(*id)),
            })
            .collect()
    }

    /// Removes the nonces for `ids` in one durable transaction; fails, changing nothing,
    /// if any of them is no longer there (consumed concurrently) or belongs to another key.
    pub fn consume_nonces(&self, key_id: &KeyId, ids: &[u64]) -> Result<(), StoreError> {
        reject_duplicates(ids)?;
        let txn = self.db.begin_write().map_err(db_err)?;
        {
            let next = txn
                .open_table(META)
                .map_err(db_err)?
                .get(NEXT_NONCE_ID)
                .map_err(db_err)?
                .map(|v| v.value())
                .unwrap_or(1);
            let mut nonces = txn.open_table(NONCES).map_err(db_err)?;
            for id in ids {
                let removed = nonces.remove(*id).map_err(db_err)?;
                match removed {
                    Some(v) if split_record(v.value())?.0 == key_id => {}
                    Some(_) => return Err(StoreError::WrongKey { id: *id }),
                    None if *id < next => return Err(StoreError::ConsumedNonce(*id)),
                    None => return Err(StoreError::UnknownNonce(*id)),
                }
            }
        }
        txn.commit().map_err(db_err)
    }

    /// Run once at start, before serving: forgets every unused nonce that a restarted
    /// cosigner could be asked to sign with again in another session. If this store is an
    /// older copy (a restored backup or VM snapshot), those secret nonces may already have
    /// signed in the timeline it was copied from; a coordinator that recorded those
    /// packages could otherwise replay them here. Gone: every FROST pool nonce, every
    /// fresh MuSig2 nonce, and every taproot verification nonce whose holder commitment
    /// was not validated (its session is not fixed yet). Kept: verification nonces of a
    /// validated holder commitment (they sign only that commitment in its stored session,
    /// so a repeat is the same partial signature). The nonce counters never go back, so a
    /// forgotten id is refused as consumed. Returns (FROST, MuSig2) nonces forgotten.
    pub fn forget_nonces_at_start(&self) -> Result<(usize, usize), StoreError> {
        let txn = self.db.begin_write().map_err(db_err)?;
        let frost;
        {
            let mut nonces = txn.open_table(NONCES).map_err(db_err)?;
            frost = nonces.len().map_err(db_err)? as usize;
            nonces.retain(|_, _| false).map_err(db_err)?;
        }
        let musig = crate::taproot_store::forget_unpinned_musig_nonces(&txn)?;
        txn.commit().map_err(db_err)?;
        Ok((frost, musig))
    }

    /// Unused nonces held for `key_id`.
    pub fn unused_nonces(&self, key_id: &KeyId) -> Result<usize, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let nonces = txn.open_table(NONCES).map_err(db_err)?;
        let mut n = 0;
        for row in nonces.iter().map_err(db_err)? {
            let (_, v) = row.map_err(db_err)?;
            if split_record(v.value())?.0 == key_id {
                n += 1;
            }
        }
        Ok(n)
    }
}

fn reject_duplicates(ids: &[u64]) -> Result<(), StoreError> {
    let mut seen = std::collections::BTreeSet::new();
    ids.iter().try_for_each(|id| if seen.insert(*id) { Ok(()) } else { Err(StoreError::DuplicateNonce(*id)) })
}

fn split_record(v: &[u8]) -> Result<(&[u8], &[u8]), StoreError> {
    if v.len() < 32 {
        return Err(StoreError::Corrupt("nonce record"));
    }
    Ok(v.split_at(32))
}

fn commitments_of(body: &[u8]) -> Result<Vec<u8>, StoreError> {
    let n = SigningNonces::deserialize(body).map_err(|_| StoreError::Corrupt("secret nonce"))?;
    n.commitments().serialize().map_err(|_| StoreError::Corrupt("nonce commitments"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use qls_signer_core::dealer;
    use qls_signer_core::frost::round1;
    use rand::SeedableRng;

    #[test]
    fn nonce_lifecycle_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let share = dealer::split(None, &[[1; 32], [2; 32]], 2, &mut rng).unwrap().remove(0).1;
        let key = share.key_id();
        let ids: Vec<u64> = {
            let store = Store::open(&path).unwrap();
            store.put_key(&share).unwrap();
            let got = store
                .nonce_commitments(&key, None, 3, 2, || round1::commit(share.key_package.signing_share(), &mut rng).0)
                .unwrap();
            assert_eq!(got.len(), 2, "pool bound caps generation");
            got.iter().map(|(id, _)| *id).collect()
        };
        let store = Store::open(&path).unwrap();
        assert_eq!(store.key(&key).unwrap(), share);
        let again = store.nonce_commitments(&key, None, 5, 2, || unreachable!("pool is full")).unwrap();
        assert_eq!(again.iter().map(|(id, _)| *id).collect::<Vec<_>>(), ids, "stored commitments handed out again");
        assert!(store.nonce_commitments(&key, Some(ids[1]), 5, 2, || unreachable!()).unwrap().is_empty());
        store.load_nonces(&key, &ids[..1]).unwrap();
        store.consume_nonces(&key, &ids[..1]).unwrap();
        drop(store);
        let store = Store::open(&path).unwrap();
        assert!(matches!(store.load_nonces(&key, &ids[..1]), Err(StoreError::ConsumedNonce(_))));
        assert!(matches!(store.consume_nonces(&key, &ids[..1]), Err(StoreError::ConsumedNonce(_))));
        assert!(matches!(store.load_nonces(&key, &[999]), Err(StoreError::UnknownNonce(999))));
        assert!(matches!(store.load_nonces(&key, &[ids[1], ids[1]]), Err(StoreError::DuplicateNonce(_))));
        assert!(matches!(store.load_nonces(&[0; 32], &ids[1..]), Err(StoreError::WrongKey { .. })));
        // A failed consume changes nothing: the good id in the batch stays usable.
        assert!(store.consume_nonces(&key, &[ids[1], ids[0]]).is_err());
        assert_eq!(store.unused_nonces(&key).unwrap(), 1);
    }
}
