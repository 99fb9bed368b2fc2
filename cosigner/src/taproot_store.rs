//! The cosigner store's taproot half: this cosigner's MuSig2 leaf secret (created once),
//! taproot channel states, and the MuSig2 secret nonces it handed out per channel.
//!
//! MuSig2 nonce ids come from their own monotonic counter in the same transactions: an id
//! below it that is no longer stored was consumed, at or above it was never handed out.
//! A nonce is removed, together with the channel state the signature moves to, in one
//! durable transaction before its secret is used.
//!
//! Must never: return a secret nonce for signing before its removal committed, hand a
//! nonce of one channel to another, or let a nonce be consumed twice.

use redb::{ReadableTable, TableDefinition};

use qls_protocol::ChannelKeysId;
use qls_signer_core::musig2::{nonce_gen, PubNonce, SecNonce};
use qls_signer_core::taproot_channel::TaprootChannelState;

use crate::store::{db_err, Store, StoreError};

const TAPROOT_CHANNELS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("taproot_channels");
/// nonce id → channel id (32 bytes) ‖ BIP-327 secret nonce (97 bytes).
const MUSIG_NONCES: TableDefinition<u64, &[u8]> = TableDefinition::new("musig_nonces");
const MUSIG_META: TableDefinition<&str, &[u8]> = TableDefinition::new("musig_meta");
const NEXT_ID: &str = "next_nonce_id";
const LEAF_SECRET: &str = "leaf_secret";
/// Unused MuSig2 nonces one channel may hold.
pub const MUSIG_NONCES_PER_CHANNEL: usize = 64;

fn next_id(meta: &impl ReadableTable<&'static str, &'static [u8]>) -> Result<u64, StoreError> {
    match meta.get(NEXT_ID).map_err(db_err)? {
        Some(v) => Ok(u64::from_be_bytes(v.value().try_into().map_err(|_| StoreError::Corrupt("nonce counter"))?)),
        None => Ok(1),
    }
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
            let mut held = Vec::new();
            for row in nonces.iter().map_err(db_err)? {
                let (id, v) = row.map_err(db_err)?;
                if v.value().get(..32) == Some(channel.as_slice()) {
                    held.push(id.value());
                }
            }
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
                let mut record = Vec::with_capacity(32 + 97);
                record.extend_from_slice(channel);
                record.extend_from_slice(&sec.to_bytes());
                nonces.insert(next, record.as_slice()).map_err(db_err)?;
                out.push((next, public));
                next += 1;
            }
            meta.insert(NEXT_ID, next.to_be_bytes().as_slice()).map_err(db_err)?;
        }
        txn.commit().map_err(db_err)?;
        Ok(out)
    }

    /// Removes nonce `id` of `channel` and writes `state` (when given) in one durable
    /// transaction, then returns the secret nonce: the only way a secret nonce leaves the
    /// store.
    pub fn consume_musig_nonce(
        &self,
        channel: &ChannelKeysId,
        id: u64,
        state: Option<&TaprootChannelState>,
    ) -> Result<SecNonce, StoreError> {
        let txn = self.db().begin_write().map_err(db_err)?;
        let sec;
        {
            let next = next_id(&txn.open_table(MUSIG_META).map_err(db_err)?)?;
            let mut nonces = txn.open_table(MUSIG_NONCES).map_err(db_err)?;
            let record = match nonces.remove(id).map_err(db_err)? {
                Some(v) => v.value().to_vec(),
                None if id < next => return Err(StoreError::ConsumedNonce(id)),
                None => return Err(StoreError::UnknownNonce(id)),
            };
            if record.get(..32) != Some(channel.as_slice()) {
                return Err(StoreError::WrongKey { id });
            }
            let bytes: [u8; 97] = record[32..].try_into().map_err(|_| StoreError::Corrupt("secret nonce"))?;
            sec = SecNonce::from_bytes(bytes);
            if let Some(s) = state {
                let encoded = postcard::to_allocvec(s).map_err(|_| StoreError::Corrupt("taproot channel encoding"))?;
                txn.open_table(TAPROOT_CHANNELS)
                    .map_err(db_err)?
                    .insert(channel.as_slice(), encoded.as_slice())
                    .map_err(db_err)?;
            }
        }
        txn.commit().map_err(db_err)?;
        Ok(sec)
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
        let record = v.value();
        if record.get(..32) != Some(channel.as_slice()) {
            return Ok(None);
        }
        let bytes: [u8; 97] = record[32..].try_into().map_err(|_| StoreError::Corrupt("secret nonce"))?;
        Ok(Some(SecNonce::from_bytes(bytes).public_nonce().0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            let sec = store.consume_musig_nonce(&[1; 32], made[0].0, None).unwrap();
            assert_eq!(sec.public_nonce(), made[0].1);
            made
        };
        // After a restart: consumed stays consumed, another channel cannot take a nonce,
        // an id never handed out is unknown.
        let store = Store::open(&path).unwrap();
        assert!(matches!(store.consume_musig_nonce(&[1; 32], made[0].0, None), Err(StoreError::ConsumedNonce(_))));
        assert!(matches!(store.consume_musig_nonce(&[2; 32], made[1].0, None), Err(StoreError::WrongKey { .. })));
        assert!(matches!(store.consume_musig_nonce(&[1; 32], 999, None), Err(StoreError::UnknownNonce(999))));
        assert!(store.consume_musig_nonce(&[1; 32], made[1].0, None).is_ok());
        // The per-channel bound drops the oldest unused nonces, never grows past it.
        let more = store.new_musig_nonces(&[1; 32], &leaf, MUSIG_NONCES_PER_CHANNEL, &mut rand).unwrap();
        assert_eq!(more.len(), MUSIG_NONCES_PER_CHANNEL);
        assert_eq!(store.musig_pubnonce(&[1; 32], made[2].0).unwrap(), None, "oldest unused nonce dropped");
        let ids: std::collections::BTreeSet<u64> = made.iter().chain(&more).map(|(id, _)| *id).collect();
        assert_eq!(ids.len(), 3 + MUSIG_NONCES_PER_CHANNEL, "ids are never reused");
    }
}
