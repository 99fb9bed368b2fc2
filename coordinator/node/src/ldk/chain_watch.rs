//! The node's chain, told to the quorum: [`QuorumChainWatch`] is a `lightning::chain::Listen`
//! the node feeds full blocks, as it feeds its `ChainManager` and `ChainMonitor`. When a
//! block holds the funding transaction of a channel the quorum signs for, the watch keeps
//! an SPV proof (the transaction, the block's header, its merkle branch) and, once the
//! block is `min_depth` deep, sends it with the recent headers as
//! `ChannelRequest::FundingConfirmed`: only then do the channel's incoming HTLCs cover
//! forwards at the cosigners. A transaction spending a watched funding output is proven
//! the same way (`ChannelRequest::FundingSpent`): from then on the channel covers nothing.
//!
//! The cosigners' chain moves only with the headers a request carries: when no proof was
//! taken for [`HEARTBEAT_EVERY`] blocks, the watch sends a heartbeat (the kept headers and
//! the tip), so a later proof still connects to every cosigner's chain.
//!
//! Must never: block LDK's chain notifications on a quorum that is down for longer than a
//! round's timeout (a failed proof is sent again on the next block), or keep more than the
//! last [`KEPT_HEADERS`] headers.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bitcoin::block::Header;
use bitcoin::consensus::encode::serialize;
use bitcoin::hashes::Hash;
use bitcoin::Block;
use lightning::chain::{BestBlock, Listen};
use qls_protocol::{ChannelKeysId, ChannelRequest, FundingProof, NodeKeyRequest};
use qls_signer_core::chain::KEPT_HEADERS;
use qls_signer_core::funding_proof::merkle_branch;

use super::bridge::QuorumBridge;

/// Blocks without a proof taken after which the watch sends a heartbeat: half of what the
/// cosigners keep, so the headers it sends always connect.
pub const HEARTBEAT_EVERY: u32 = KEPT_HEADERS as u32 / 2;
/// Blocks between heartbeats the quorum did not take (each may wait out a round timeout).
pub const HEARTBEAT_RETRY_BLOCKS: u32 = 6;

/// A funding transaction (or a spend of its output) found in a block, waiting for depth.
struct Found {
    channel: ChannelKeysId,
    height: u32,
    proof: FundingProof,
    spend: bool,
}

#[derive(Default)]
struct WatchState {
    /// The last headers (serialized) and the height of the last one.
    headers: VecDeque<(u32, Vec<u8>)>,
    found: Vec<Found>,
    /// Height of the last block whose headers the quorum took (with a proof or heartbeat).
    synced: u32,
    /// After a heartbeat the quorum did not take, none before this height.
    heartbeat_retry_at: u32,
}

/// Sends the quorum SPV proofs of our channels' funding transactions.
pub struct QuorumChainWatch {
    bridge: Arc<QuorumBridge>,
    min_depth: u32,
    state: Mutex<WatchState>,
}

impl QuorumChainWatch {
    /// `min_depth`: confirmations (the block included) before a proof is sent; the
    /// cosigners' `funding_min_depth` must not be above it.
    pub fn new(bridge: Arc<QuorumBridge>, min_depth: u32) -> Self {
        Self { bridge, min_depth: min_depth.max(1), state: Default::default() }
    }

    fn push_header(state: &mut WatchState, header: &Header, height: u32) {
        while state.headers.back().is_some_and(|(h, _)| *h >= height) {
            state.headers.pop_back();
        }
        state.headers.push_back((height, serialize(header)));
        while state.headers.len() > KEPT_HEADERS - 1 {
            state.headers.pop_front();
        }
    }

    /// Sends every found proof that is deep enough; keeps those the quorum did not take.
    fn send_due(&self, tip: u32) {
        let due: Vec<Found> = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let headers: Vec<Vec<u8>> = state.headers.iter().map(|(_, h)| h.clone()).collect();
            let (due, wait): (Vec<Found>, Vec<Found>) =
                state.found.drain(..).partition(|f| tip + 1 >= f.height + self.min_depth);
            state.found = wait;
            due.into_iter()
                .map(|f| Found { proof: FundingProof { headers: headers.clone(), ..f.proof }, ..f })
                .collect()
        };
        for f in due {
            let request = if f.spend {
                ChannelRequest::FundingSpent(f.proof.clone())
            } else {
                ChannelRequest::FundingConfirmed(f.proof.clone())
            };
            match self.bridge.channel_blocking(f.channel, request) {
                Ok(_) => {
                    self.state.lock().unwrap_or_else(|e| e.into_inner()).synced = tip;
                    tracing::info!(channel = %hex::encode(&f.channel[..8]), height = f.height, spend = f.spend, "funding proof taken by the quorum")
                }
                Err(e) => {
                    tracing::warn!(channel = %hex::encode(&f.channel[..8]), error = %e, "funding proof not taken; sent again on the next block");
                    // Past what cosigners keep, a proof can no longer be checked.
                    if tip < f.height + KEPT_HEADERS as u32 / 2 {
                        self.state.lock().unwrap_or_else(|e| e.into_inner()).found.push(f);
                    }
                }
            }
        }
    }
}

impl QuorumChainWatch {
    /// A heartbeat for tip `tip` (at `height`) when the quorum took no headers for
    /// [`HEARTBEAT_EVERY`] blocks.
    fn heartbeat_if_due(&self, tip: [u8; 32], height: u32) {
        let headers: Vec<Vec<u8>> = {
            let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if height < state.synced.saturating_add(HEARTBEAT_EVERY) || height < state.heartbeat_retry_at {
                return;
            }
            state.headers.iter().map(|(_, h)| h.clone()).collect()
        };
        match self.bridge.node_key_blocking(NodeKeyRequest::Heartbeat { headers, tip }) {
            Ok(_) => self.state.lock().unwrap_or_else(|e| e.into_inner()).synced = height,
            Err(e) => {
                self.state.lock().unwrap_or_else(|e| e.into_inner()).heartbeat_retry_at =
                    height.saturating_add(HEARTBEAT_RETRY_BLOCKS);
                tracing::warn!(height, error = %e, "heartbeat not taken; sent again in {HEARTBEAT_RETRY_BLOCKS} blocks")
            }
        }
    }
}

impl Listen for QuorumChainWatch {
    /// A filtered block cannot prove anything (its other txids are missing): only its
    /// header is kept.
    fn filtered_block_connected(
        &self,
        header: &Header,
        _txdata: &lightning::chain::transaction::TransactionData,
        height: u32,
    ) {
        Self::push_header(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()), header, height);
        self.send_due(height);
        self.heartbeat_if_due(header.block_hash().to_byte_array(), height);
    }

    fn block_connected(&self, block: &Block, height: u32) {
        let watched = self.bridge.watched_fundings();
        {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            Self::push_header(&mut state, &block.header, height);
            let txids: Vec<[u8; 32]> = block.txdata.iter().map(|t| t.compute_txid().to_byte_array()).collect();
            for (i, tx) in block.txdata.iter().enumerate() {
                let proof = || FundingProof {
                    headers: Vec::new(),
                    tx: serialize(tx),
                    block_header: serialize(&block.header),
                    merkle_branch: merkle_branch(&txids, i),
                    position: i as u32,
                };
                if let Some((_, channel)) = watched.get(&txids[i]) {
                    state.found.retain(|f| f.channel != *channel || f.spend);
                    state.found.push(Found { channel: *channel, height, proof: proof(), spend: false });
                }
                let spent = tx.input.iter().find_map(|input| {
                    let prev = input.previous_output;
                    watched.get(&prev.txid.to_byte_array()).filter(|(vout, _)| *vout == prev.vout).map(|(_, c)| *c)
                });
                if let Some(channel) = spent {
                    state.found.retain(|f| f.channel != channel || !f.spend);
                    state.found.push(Found { channel, height, proof: proof(), spend: true });
                }
            }
        }
        self.send_due(height);
        self.heartbeat_if_due(block.block_hash().to_byte_array(), height);
    }

    fn blocks_disconnected(&self, fork_point: BestBlock) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.headers.retain(|(h, _)| *h <= fork_point.height);
        state.found.retain(|f| f.height <= fork_point.height);
    }
}
