//! The cosigner store's taproot half: this cosigner's MuSig2 leaf secret (created once),
//! taproot channel states, and the MuSig2 secret nonces it handed out per channel — fresh
//! signing nonces (at most [`MUSIG_NONCES_PER_CHANNEL`] unused, oldest dropped) and
//! verification nonces, each pinned to one holder commitment (at most
//! [`VERIFICATION_NONCES_PER_CHANNEL`], never dropped but by that commitment's revocation).
//! A verification nonce that signed is replaced, in the same transaction, by the partial
//! signature it made (the force close of that commitment), kept until the commitment is
//! revoked so a lost reply can be answered again with the identical signature.
//!
//! MuSig2 nonce ids come from their own monotonic counter in the same transactions: an id
//! below it that is no longer stored was consumed, at or above it was never handed out.
//! A taproot request is judged inside one write transaction with the channel state and the
//! payment entries it touches; if approved, the new state, the entries, the removal of
//! the nonce it signs with and (for a force close) the partial signature commit together;
//! the partial signature is returned only after that commit.
//!
//! Must never: let a partial signature out before its nonce's removal committed, hand a
//! nonce of one channel to another, let a nonce be consumed twice, let a verification
//! nonce sign anything but its own holder commitment, or keep a force-close partial
//! signature past that commitment's revocation.

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
/// channel id (32 bytes) ‖ holder commitment number (8 bytes, big-endian) → message
/// (32 bytes) ‖ this leaf's partial signature (32 bytes) of that commitment's force close.
const FORCE_CLOSE_PSIGS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("force_close_psigs");
/// channel id ‖ holder commitment number (as above) → this cosigner's kept share (32
/// bytes) of the quorum's force-close partial signature of that commitment (the sum of the
/// shares every cosigner dealt it); deleted with the commitment's revocation.
const ESCROW_SHARES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("escrow_shares");
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
    /// The nonce to sign with and the message (approved signing requests): the nonce is
    /// consumed in the same transaction as the state.
    pub sign_with: Option<(NonceUse, [u8; 32])>,
    /// Drop the verification nonces of holder commitments at or below this number.
    pub drop_verification_upto: Option<u64>,
    pub result: R,
}

/// A judged taproot request: the judge's result and the partial signature made, or the
/// judge's error.
pub type TaprootOutcome<R, E> = Result<(R, Option<[u8; 32]>), E>;

/// Makes this leaf's partial signature on a message with a secret nonce (inside the
/// store transaction that consumes the nonce; its result leaves only after the commit).
pub type LeafSigner<'a> = &'a dyn Fn(SecNonce, &[u8; 32]) -> Result<[u8; 32], String>;

fn force_close_key(channel: &ChannelKeysId, commitment: u64) -> [u8; 40] {
    let mut key = [0u8; 40];
    key[..32].copy_from_slice(channel);
    key[32..].copy_from_slice(&commitment.to_be_bytes());
    key
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
            // Its force close is signed: that commitment gets no other nonce.
            let psigs = txn.open_table(FORCE_CLOSE_PSIGS).map_err(db_err)?;
            if psigs.get(force_close_key(channel, commitment).as_slice()).map_err(db_err)?.is_some() {
                return Err(StoreError::ForceCloseSigned { commitment });
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
    /// together with the consumption of the nonce it names, and `signer`'s partial
    /// signature with that nonce is returned only after the commit. A force close whose
    /// verification nonce already signed gets the stored partial signature of that same
    /// message again (no nonce is used twice). Nothing is written when `judge` or `signer`
    /// fails.
    pub fn update_taproot<R, E>(
        &self,
        channel: &ChannelKeysId,
        hashes: impl FnOnce(Option<&TaprootChannelState>) -> Vec<[u8; 32]>,
        limits: &ChannelPolicy,
        now: u64,
        judge: impl FnOnce(Option<TaprootChannelState>, &mut PaymentIndex) -> Result<TaprootUpdate<R>, E>,
        signer: LeafSigner<'_>,
    ) -> Result<TaprootOutcome<R, E>, StoreError> {
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
                    let mut psigs = txn.open_table(FORCE_CLOSE_PSIGS).map_err(db_err)?;
                    let psig = match update.sign_with {
                        None => None,
                        Some((NonceUse::Fresh(id), msg)) => {
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
                            Some(signer(SecNonce::from_bytes(record.sec), &msg).map_err(StoreError::Sign)?)
                        }
                        Some((NonceUse::Verification { commitment }, msg)) => {
                            let key = force_close_key(channel, commitment);
                            // Signed before (its reply lost): the same partial signature of
                            // the same message, never a second one — whatever nonce was
                            // made for that commitment since.
                            let stored = psigs.get(key.as_slice()).map_err(db_err)?.map(|v| v.value().to_vec());
                            match stored {
                                Some(v) if v.get(..32) == Some(msg.as_slice()) => Some(
                                    v[32..]
                                        .try_into()
                                        .map_err(|_| StoreError::Corrupt("force-close partial signature"))?,
                                ),
                                Some(_) => return Err(StoreError::ForceCloseMessage { commitment }),
                                None => {
                                    let found = channel_nonces(&nonces, channel)?
                                        .into_iter()
                                        .find(|(_, r)| r.commitment == Some(commitment));
                                    let Some((id, record)) = found else {
                                        return Err(StoreError::NoVerificationNonce { commitment });
                                    };
                                    nonces.remove(id).map_err(db_err)?;
                                    let psig =
                                        signer(SecNonce::from_bytes(record.sec), &msg).map_err(StoreError::Sign)?;
                                    let row: Vec<u8> = [msg, psig].concat();
                                    psigs.insert(key.as_slice(), row.as_slice()).map_err(db_err)?;
                                    Some(psig)
                                }
                            }
                        }
                    };
                    if let Some(upto) = update.drop_verification_upto {
                        for (id, r) in channel_nonces(&nonces, channel)? {
                            if r.commitment.is_some_and(|n| n <= upto) {
                                nonces.remove(id).map_err(db_err)?;
                            }
                        }
                        let revoked: Vec<Vec<u8>> = psigs
                            .range(force_close_key(channel, 0).as_slice()..=force_close_key(channel, upto).as_slice())
                            .map_err(db_err)?
                            .map(|row| row.map(|(k, _)| k.value().to_vec()))
                            .collect::<Result<_, _>>()
                            .map_err(db_err)?;
                        for key in revoked {
                            psigs.remove(key.as_slice()).map_err(db_err)?;
                        }
                        let mut shares = txn.open_table(ESCROW_SHARES).map_err(db_err)?;
                        let revoked: Vec<Vec<u8>> = shares
                            .range(force_close_key(channel, 0).as_slice()..=force_close_key(channel, upto).as_slice())
                            .map_err(db_err)?
                            .map(|row| row.map(|(k, _)| k.value().to_vec()))
                            .collect::<Result<_, _>>()
                            .map_err(db_err)?;
                        for key in revoked {
                            shares.remove(key.as_slice()).map_err(db_err)?;
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
                    outcome = Ok((update.result, psig));
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
    /// This cosigner's kept escrow share of holder commitment `commitment`, if any.
    pub fn escrow_share(&self, channel: &ChannelKeysId, commitment: u64) -> Result<Option<[u8; 32]>, StoreError> {
        let txn = self.db().begin_read().map_err(db_err)?;
        let shares = match txn.open_table(ESCROW_SHARES) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(db_err(e)),
        };
        let row = shares.get(force_close_key(channel, commitment).as_slice()).map_err(db_err)?;
        row.map(|v| v.value().try_into().map_err(|_| StoreError::Corrupt("escrow share"))).transpose()
    }

    /// Keeps the escrow share `judge` returns for holder commitment `commitment`, judged
    /// against the stored channel in the same write transaction (so a revocation cannot
    /// slip in between); nothing is written when `judge` fails.
    pub fn keep_escrow_share<E>(
        &self,
        channel: &ChannelKeysId,
        commitment: u64,
        judge: impl FnOnce(Option<TaprootChannelState>) -> Result<[u8; 32], E>,
    ) -> Result<Result<(), E>, StoreError> {
        let txn = self.db().begin_write().map_err(db_err)?;
        let outcome = {
            let channels = txn.open_table(TAPROOT_CHANNELS).map_err(db_err)?;
            let current: Option<TaprootChannelState> = match channels.get(channel.as_slice()).map_err(db_err)? {
                Some(v) => Some(postcard::from_bytes(v.value()).map_err(|_| StoreError::Corrupt("taproot channel"))?),
                None => None,
            };
            match judge(current) {
                Ok(share) => {
                    let mut shares = txn.open_table(ESCROW_SHARES).map_err(db_err)?;
                    shares.insert(force_close_key(channel, commitment).as_slice(), share.as_slice()).map_err(db_err)?;
                    Ok(())
                }
                Err(e) => Err(e),
            }
        };
        if outcome.is_ok() {
            txn.commit().map_err(db_err)?;
        } else {
            txn.abort().map_err(db_err)?;
        }
        Ok(outcome)
    }

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

    /// A stand-in leaf signer for the store's bookkeeping: the public nonce's first 32
    /// bytes after its parity byte, xor the message (which nonce signed which message).
    fn echo_signer(sec: SecNonce, msg: &[u8; 32]) -> Result<[u8; 32], String> {
        let public = sec.public_nonce().0;
        Ok(std::array::from_fn(|i| public[1 + i] ^ msg[i]))
    }

    /// Signs `msg` with nonce `use_` of `channel` through the request path (no state change).
    fn sign_msg(store: &Store, channel: &ChannelKeysId, use_: NonceUse, msg: [u8; 32]) -> Result<[u8; 32], StoreError> {
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
                    sign_with: Some((use_, msg)),
                    drop_verification_upto: None,
                    result: (),
                })
            },
            &echo_signer,
        )?;
        Ok(out.expect("judge never fails here").1.expect("a nonce signed"))
    }

    /// The nonce that signed (by [`echo_signer`]).
    fn consume(store: &Store, channel: &ChannelKeysId, use_: NonceUse) -> Result<[u8; 32], StoreError> {
        sign_msg(store, channel, use_, [0; 32])
    }

    fn signed_with(psig: [u8; 32], public: &PubNonce) -> bool {
        psig[..] == public.0[1..33]
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
            let psig = consume(&store, &[1; 32], NonceUse::Fresh(made[0].0)).unwrap();
            assert!(signed_with(psig, &made[0].1));
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
        // Used once for its commitment; then gone, its partial signature kept in its place:
        // asked again (a lost reply, a restart), the same one, never another message's.
        let psig = sign_msg(&store, &c, NonceUse::Verification { commitment: 6 }, [0x66; 32]).unwrap();
        assert!(signed_with(std::array::from_fn(|i| psig[i] ^ 0x66), &v6.1));
        assert_eq!(store.verification_pubnonce(&c, 6).unwrap(), None, "the nonce is gone");
        // No other nonce for that commitment: a second signature can never be made.
        assert!(matches!(
            store.verification_nonce(&c, 6, &leaf, || [0x16; 32]),
            Err(StoreError::ForceCloseSigned { commitment: 6 })
        ));
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(sign_msg(&store, &c, NonceUse::Verification { commitment: 6 }, [0x66; 32]).unwrap(), psig);
        assert!(matches!(
            sign_msg(&store, &c, NonceUse::Verification { commitment: 6 }, [0x67; 32]),
            Err(StoreError::ForceCloseMessage { commitment: 6 })
        ));
        assert!(matches!(
            sign_msg(&store, &[2; 32], NonceUse::Verification { commitment: 6 }, [0x66; 32]),
            Err(StoreError::NoVerificationNonce { commitment: 6 })
        ));
        // A revocation up to 7 drops the nonces of 5 and 7 and the signature of 6, keeps 8.
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
                        sign_with: None,
                        drop_verification_upto: Some(7),
                        result: (),
                    })
                },
                &echo_signer,
            )
            .unwrap()
            .unwrap();
        assert_eq!(store.verification_pubnonce(&c, 5).unwrap(), None);
        assert_eq!(store.verification_pubnonce(&c, 7).unwrap(), None);
        assert!(store.verification_pubnonce(&c, 8).unwrap().is_some());
        assert!(matches!(
            sign_msg(&store, &c, NonceUse::Verification { commitment: 6 }, [0x66; 32]),
            Err(StoreError::NoVerificationNonce { commitment: 6 })
        ));
    }
}
