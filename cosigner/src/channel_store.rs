//! The cosigner store's channel half: one record per channel (`ChannelState`, postcard)
//! and one per payment hash (`PaymentEntry`), changed together in one redb write
//! transaction per request, so a crash leaves the old or the new state.
//!
//! Must never: write a channel state without the payment entries the same request changed,
//! or write anything when the policy refused the request.

use std::collections::BTreeMap;

use redb::{ReadableTable, ReadableTableMetadata, TableDefinition};

use qls_protocol::ChannelKeysId;
use qls_signer_core::channel::{ChannelState, PaymentEntry, PaymentIndex};

use crate::store::{db_err, Store, StoreError};

pub(crate) const CHANNELS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("channels");
pub(crate) const PAYMENTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("payments");

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
    /// inside one write transaction, and persists what it returns.
    pub fn update_channel<R, E>(
        &self,
        channel: Option<&ChannelKeysId>,
        hashes: &[[u8; 32]],
        max_payments: usize,
        judge: impl FnOnce(Option<ChannelState>, &mut PaymentIndex) -> Result<ChannelUpdate<R>, E>,
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
            let mut loaded = BTreeMap::new();
            for h in hashes {
                if let Some(v) = payments.get(h.as_slice()).map_err(db_err)? {
                    let e: PaymentEntry =
                        postcard::from_bytes(v.value()).map_err(|_| StoreError::Corrupt("payment entry"))?;
                    loaded.insert(*h, e);
                }
            }
            let count = payments.len().map_err(db_err)? as usize;
            let mut index = PaymentIndex::new(loaded, count, max_payments);
            match judge(current, &mut index) {
                Err(e) => outcome = Err(e),
                Ok(update) => {
                    if let (Some(state), Some(channel)) = (&update.state, channel) {
                        let bytes =
                            postcard::to_allocvec(state).map_err(|_| StoreError::Corrupt("channel state encoding"))?;
                        channels.insert(channel.as_slice(), bytes.as_slice()).map_err(db_err)?;
                    }
                    if update.write_payments {
                        for (h, e) in index.changed() {
                            let bytes =
                                postcard::to_allocvec(&e).map_err(|_| StoreError::Corrupt("payment encoding"))?;
                            payments.insert(h.as_slice(), bytes.as_slice()).map_err(db_err)?;
                        }
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
