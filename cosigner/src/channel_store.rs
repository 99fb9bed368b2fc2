//! The cosigner store's channel half: one record per channel (`ChannelState`, postcard)
//! and one per payment hash (`PaymentEntry`), changed together in one redb write
//! transaction per request, so a crash leaves the old or the new state.
//!
//! Must never: write a channel state without the payment entries the same request changed,
//! or write anything when the policy refused the request.

use std::collections::BTreeMap;

use redb::{ReadableTable, ReadableTableMetadata, TableDefinition};

use qls_protocol::ChannelKeysId;
use qls_signer_core::chain::ChainTip;
use qls_signer_core::channel::{ChannelState, PaymentEntry, PaymentIndex, Velocity};
use qls_signer_core::policy::ChannelPolicy;

use crate::store::{db_err, Store, StoreError};

pub(crate) const CHANNELS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("channels");
pub(crate) const PAYMENTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("payments");
/// Node-wide records: the payment velocity buckets.
pub(crate) const NODE: TableDefinition<&str, &[u8]> = TableDefinition::new("node");
const VELOCITY: &str = "velocity";
const FUNDING_VELOCITY: &str = "funding_velocity";
const CHAIN: &str = "chain";

/// What a judged request leaves to persist.
pub struct ChannelUpdate<R> {
    /// `Some` to write the channel state (the request changed it and was approved).
    pub state: Option<ChannelState>,
    /// Whether to write the payment entries the request changed.
    pub write_payments: bool,
    pub result: R,
}

impl Store {
    /// Runs `judge` on the channel's stored state (none for node-level requests) and the payment entries for `hashes`,
    /// inside one write transaction, and persists what it returns. When the payment index
    /// is full, entries that no longer matter at `now` are pruned first (same transaction).
    pub fn update_channel<R, E>(
        &self,
        channel: Option<&ChannelKeysId>,
        hashes: impl FnOnce(Option<&ChannelState>) -> Vec<[u8; 32]>,
        limits: &ChannelPolicy,
        now: u64,
        judge: impl FnOnce(Option<ChannelState>, &mut PaymentIndex, usize) -> Result<ChannelUpdate<R>, E>,
    ) -> Result<Result<R, E>, StoreError> {
        let txn = self.db().begin_write().map_err(db_err)?;
        let outcome;
        {
            let mut channels = txn.open_table(CHANNELS).map_err(db_err)?;
            let mut payments = txn.open_table(PAYMENTS).map_err(db_err)?;
            let stored = match channel {
                Some(c) => channels.get(c.as_slice()).map_err(db_err)?.map(|v| v.value().to_vec()),
                None => None,
            };
            let current = match stored {
                Some(v) => {
                    Some(postcard::from_bytes::<ChannelState>(&v).map_err(|_| StoreError::Corrupt("channel state"))?)
                }
                None => None,
            };
            let mut stored_channels = channels.len().map_err(db_err)? as usize;
            if current.is_none() && stored_channels >= limits.max_channels {
                stored_channels -= prune_closed_channels(&mut channels, now, limits.closed_channel_retention_secs)?;
            }
            let mut node = txn.open_table(NODE).map_err(db_err)?;
            let hashes = hashes(current.as_ref());
            let (mut index, velocity) = load_index(&mut payments, &node, &hashes, limits, now)?;
            match judge(current, &mut index, stored_channels) {
                Err(e) => outcome = Err(e),
                Ok(update) => {
                    if let (Some(state), Some(channel)) = (&update.state, channel) {
                        let bytes =
                            postcard::to_allocvec(state).map_err(|_| StoreError::Corrupt("channel state encoding"))?;
                        channels.insert(channel.as_slice(), bytes.as_slice()).map_err(db_err)?;
                    }
                    if update.write_payments {
                        save_index(&mut payments, &mut node, &index, &velocity)?;
                    }
                    outcome = Ok(update.result);
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

    /// Runs `f` on this cosigner's chain tip (the network's genesis if none is stored) in
    /// one write transaction; writes it back when `f` returns `true` (approved and changed).
    pub fn update_chain<R>(
        &self,
        network: bitcoin::Network,
        f: impl FnOnce(&mut ChainTip) -> (R, bool),
    ) -> Result<R, StoreError> {
        let txn = self.db().begin_write().map_err(db_err)?;
        let result;
        {
            let mut node = txn.open_table(NODE).map_err(db_err)?;
            let mut tip = match node.get(CHAIN).map_err(db_err)? {
                Some(v) => postcard::from_bytes(v.value()).map_err(|_| StoreError::Corrupt("chain tip"))?,
                None => ChainTip::genesis(network),
            };
            let (r, write) = f(&mut tip);
            if write {
                let bytes = postcard::to_allocvec(&tip).map_err(|_| StoreError::Corrupt("chain tip encoding"))?;
                node.insert(CHAIN, bytes.as_slice()).map_err(db_err)?;
            }
            result = r;
        }
        txn.commit().map_err(db_err)?;
        Ok(result)
    }

    /// Payment entries stored (pruned ones are gone).
    pub fn payment_count(&self) -> Result<usize, StoreError> {
        let txn = self.db().begin_read().map_err(db_err)?;
        match txn.open_table(PAYMENTS) {
            Ok(t) => Ok(t.len().map_err(db_err)? as usize),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
            Err(e) => Err(db_err(e)),
        }
    }

    /// The stored state of one channel, if any.
    pub fn channel(&self, channel: &ChannelKeysId) -> Result<Option<ChannelState>, StoreError> {
        let txn = self.db().begin_read().map_err(db_err)?;
        let table = txn.open_table(CHANNELS).map_err(db_err)?;
        match table.get(channel.as_slice()).map_err(db_err)? {
            Some(v) => Ok(Some(postcard::from_bytes(v.value()).map_err(|_| StoreError::Corrupt("channel state"))?)),
            None => Ok(None),
        }
    }
}

/// The payment index for a request touching `hashes` (pruned first when full) and the
/// stored velocity buckets it started from.
pub(crate) fn load_index(
    payments: &mut redb::Table<&[u8], &[u8]>,
    node: &redb::Table<&str, &[u8]>,
    hashes: &[[u8; 32]],
    limits: &ChannelPolicy,
    now: u64,
) -> Result<(PaymentIndex, VelocitiesBefore), StoreError> {
    let max_payments = limits.max_payments;
    let mut count = payments.len().map_err(db_err)? as usize;
    if count >= max_payments {
        count -= prune_payments(payments, now)?;
    }
    let mut loaded = BTreeMap::new();
    for h in hashes {
        if let Some(v) = payments.get(h.as_slice()).map_err(db_err)? {
            let e: PaymentEntry = postcard::from_bytes(v.value()).map_err(|_| StoreError::Corrupt("payment entry"))?;
            loaded.insert(*h, e);
        }
    }
    let read = |key: &str, what: &'static str| -> Result<Velocity, StoreError> {
        match node.get(key).map_err(db_err)? {
            Some(v) => postcard::from_bytes(v.value()).map_err(|_| StoreError::Corrupt(what)),
            None => Ok(Velocity::default()),
        }
    };
    let mut index = PaymentIndex::new(loaded, count, max_payments);
    index.now = now;
    index.velocity = read(VELOCITY, "velocity")?;
    index.funding_velocity = read(FUNDING_VELOCITY, "funding velocity")?;
    let before = VelocitiesBefore { payments: index.velocity.clone(), funding: index.funding_velocity.clone() };
    Ok((index, before))
}

/// The velocity buckets as loaded (written back only if they moved).
pub(crate) struct VelocitiesBefore {
    payments: Velocity,
    funding: Velocity,
}

/// Writes the entries `index` changed and its velocity buckets (if they moved).
pub(crate) fn save_index(
    payments: &mut redb::Table<&[u8], &[u8]>,
    node: &mut redb::Table<&str, &[u8]>,
    index: &PaymentIndex,
    before: &VelocitiesBefore,
) -> Result<(), StoreError> {
    for (key, now, then) in
        [(VELOCITY, &index.velocity, &before.payments), (FUNDING_VELOCITY, &index.funding_velocity, &before.funding)]
    {
        if now != then {
            let bytes = postcard::to_allocvec(now).map_err(|_| StoreError::Corrupt("velocity encoding"))?;
            node.insert(key, bytes.as_slice()).map_err(db_err)?;
        }
    }
    for (h, e) in index.changed() {
        let bytes = postcard::to_allocvec(&e).map_err(|_| StoreError::Corrupt("payment encoding"))?;
        payments.insert(h.as_slice(), bytes.as_slice()).map_err(db_err)?;
    }
    Ok(())
}

/// Deletes every payment entry that no longer matters at `now`; returns how many.
fn prune_payments(payments: &mut redb::Table<&[u8], &[u8]>, now: u64) -> Result<usize, StoreError> {
    let mut prunable = Vec::new();
    for row in payments.iter().map_err(db_err)? {
        let (k, v) = row.map_err(db_err)?;
        let e: PaymentEntry = postcard::from_bytes(v.value()).map_err(|_| StoreError::Corrupt("payment entry"))?;
        if e.prunable(now) {
            prunable.push(k.value().to_vec());
        }
    }
    for k in &prunable {
        payments.remove(k.as_slice()).map_err(db_err)?;
    }
    Ok(prunable.len())
}

/// Deletes every channel closed at least `retention_secs` before `now`; returns how many.
fn prune_closed_channels(
    channels: &mut redb::Table<&[u8], &[u8]>,
    now: u64,
    retention_secs: u64,
) -> Result<usize, StoreError> {
    let mut prunable = Vec::new();
    for row in channels.iter().map_err(db_err)? {
        let (k, v) = row.map_err(db_err)?;
        let state: ChannelState = postcard::from_bytes(v.value()).map_err(|_| StoreError::Corrupt("channel state"))?;
        if state.closed_at.is_some_and(|t| t.saturating_add(retention_secs) <= now) {
            prunable.push(k.value().to_vec());
        }
    }
    for k in &prunable {
        channels.remove(k.as_slice()).map_err(db_err)?;
    }
    Ok(prunable.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use qls_protocol::{ChannelPoints, ChannelSetup};

    const NOW: u64 = 1_800_000_000;

    fn setup() -> ChannelSetup {
        let points = ChannelPoints {
            funding: vec![2; 33],
            revocation: vec![2; 33],
            payment: vec![2; 33],
            delayed_payment: vec![2; 33],
            htlc: vec![2; 33],
        };
        ChannelSetup {
            funding_txid: [1; 32],
            funding_vout: 0,
            channel_value_sat: 1_000_000,
            is_outbound: true,
            holder_selected_contest_delay: 144,
            counterparty_selected_contest_delay: 144,
            holder: points.clone(),
            counterparty: points,
            channel_type: vec![],
        }
    }

    /// Writes what `f` leaves in the index (and `state` for `channel`), as an approved request would.
    fn write(
        store: &Store,
        limits: &ChannelPolicy,
        channel: Option<&ChannelKeysId>,
        state: Option<ChannelState>,
        hash: [u8; 32],
        f: impl FnOnce(&mut PaymentIndex),
    ) -> usize {
        store
            .update_channel(
                channel,
                |_| vec![hash],
                limits,
                NOW,
                |_, index, stored_channels| {
                    f(index);
                    Ok::<_, ()>(ChannelUpdate { state, write_payments: true, result: stored_channels })
                },
            )
            .unwrap()
            .unwrap()
    }

    #[test]
    fn full_payment_index_prunes_what_no_longer_matters() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let limits = ChannelPolicy { max_payments: 3, ..ChannelPolicy::default() };
        let mut v = Vec::new();
        // An approval that expired, one still valid, and a forward with HTLCs still incoming.
        write(&store, &limits, None, None, [1; 32], |i| {
            i.approve(&mut v, &[1; 32], 5, NOW - 1);
        });
        write(&store, &limits, None, None, [2; 32], |i| {
            i.approve(&mut v, &[2; 32], 5, NOW + 60);
        });
        let incoming =
            qls_protocol::HtlcInfo { offered: false, amount_msat: 7, cltv_expiry: 500, payment_hash: [3; 32] };
        write(&store, &limits, None, None, [3; 32], |i| i.receive(&mut v, &incoming));
        assert_eq!(store.payment_count().unwrap(), 3);
        // Full: a fourth entry prunes the expired approval (only it) and fits.
        write(&store, &limits, None, None, [4; 32], |i| {
            i.approve(&mut v, &[4; 32], 5, NOW + 60);
        });
        assert!(v.is_empty(), "{v:?}");
        assert_eq!(store.payment_count().unwrap(), 3);
        // Full again with nothing prunable: the next new entry is refused by the index.
        write(&store, &limits, None, None, [5; 32], |i| {
            i.approve(&mut v, &[5; 32], 5, NOW + 60);
        });
        assert_eq!(
            v.iter().map(|v| v.tag).collect::<Vec<_>>(),
            vec![qls_signer_core::policy::PolicyTag::NodeStateBounded]
        );
    }

    #[test]
    fn full_channel_store_prunes_channels_closed_past_retention() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let limits = ChannelPolicy { max_channels: 2, closed_channel_retention_secs: 100, ..ChannelPolicy::default() };
        let mut closed = ChannelState::new(setup(), vec![]);
        closed.close = qls_signer_core::channel::CloseState::MutualClose { to_holder_sat: 1 };
        closed.closed_at = Some(NOW - 100);
        let open = ChannelState::new(setup(), vec![]);
        write(&store, &limits, Some(&[1; 32]), Some(closed.clone()), [0; 32], |_| {});
        write(&store, &limits, Some(&[2; 32]), Some(open.clone()), [0; 32], |_| {});
        // A known channel never prunes; a new one finds the closed channel pruned.
        assert_eq!(write(&store, &limits, Some(&[2; 32]), None, [0; 32], |_| {}), 2);
        assert_eq!(write(&store, &limits, Some(&[3; 32]), None, [0; 32], |_| {}), 1);
        assert!(store.channel(&[1; 32]).unwrap().is_none() && store.channel(&[2; 32]).unwrap().is_some());
        // A channel closed more recently than the retention stays.
        closed.closed_at = Some(NOW - 99);
        write(&store, &limits, Some(&[4; 32]), Some(closed), [0; 32], |_| {});
        assert_eq!(write(&store, &limits, Some(&[5; 32]), None, [0; 32], |_| {}), 2);
        assert!(store.channel(&[4; 32]).unwrap().is_some());
    }
}
