//! One cosigner's copy of one legacy channel's state, and the state digest that lets the
//! coordinator and key holders see whether cosigners agree.
//!
//! The digest is a hash chain over every request the cosigner *applied* to the channel
//! (an idempotent retry changes nothing), with its length as a version: two honest
//! cosigners that applied the same requests in the same order have the same digest; one
//! that was rolled back shows a lower version, one that was forked the same version with
//! another digest.
//!
//! Must never: change without going through `validate::apply`, or be persisted partially
//! (the shell writes the whole record in one transaction).

use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use qls_protocol::{ApprovalSubject, ChannelSetup, CommitmentInfo, StateDigest};

use crate::tagged::tagged_hash;

/// LDK's first commitment number (counts down from here).
pub const INITIAL_COMMITMENT_NUMBER: u64 = (1 << 48) - 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelState {
    pub setup: ChannelSetup,
    pub digest: StateDigest,
    pub holder: HolderSide,
    pub counterparty: CounterpartySide,
    pub close: CloseState,
    /// When this cosigner first saw the channel closed (its clock, unix seconds); closed
    /// channels are pruned `closed_channel_retention_secs` after it.
    pub closed_at: Option<u64>,
    /// Height of the block holding the funding transaction, once an SPV proof showed it
    /// at depth (`ChannelRequest::FundingConfirmed`); until then incoming HTLCs of this
    /// channel cover nothing.
    pub funding_confirmed_at: Option<u32>,
    /// The funding transaction's index in that block (bound by the proof's merkle branch):
    /// with the height and output, the channel's short channel id.
    pub funding_tx_index: Option<u32>,
    /// Height of the block holding a transaction that spent the funding output, once an
    /// SPV proof showed it (`ChannelRequest::FundingSpent`): no commitment is signed after
    /// it, and the channel's incoming HTLCs no longer cover anything.
    pub funding_spent_at: Option<u32>,
    /// What that proven spend is (its txid, output values, commitment number): the
    /// commitment a justice transaction or a claim on the counterparty's commitment
    /// spends from, never taken from a request.
    pub funding_spend: Option<FundingSpend>,
    /// When this cosigner stored the setup (its clock): a channel we fund is funded only
    /// within the velocity window it was counted in.
    pub set_up_at: Option<u64>,
}

/// The transaction an SPV proof showed spending the funding output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FundingSpend {
    pub txid: [u8; 32],
    /// Its outputs' values, in order (satoshis).
    pub output_values: Vec<u64>,
    /// When it has a commitment transaction's shape (BOLT 3 locktime and sequence
    /// markers): the commitment number (LDK's, counting down) its obscured number
    /// decodes to under this channel's obscuring factor. Either side's commitment.
    pub commitment_number: Option<u64>,
}

/// Our own (holder) commitments: what the counterparty signed for us and what we revoked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HolderSide {
    pub latest: Option<HolderCommitment>,
    /// Every holder commitment numbered at or above this one has been revoked.
    pub revoked_from: Option<u64>,
    /// Delayed outputs of the second-stage HTLC transactions we signed for the
    /// force-closed holder commitment (a few per HTLC of that commitment).
    pub second_stage: Vec<SecondStageOutput>,
}

/// The to_local-like output of a second-stage HTLC transaction we signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecondStageOutput {
    pub txid: [u8; 32],
    pub vout: u32,
    pub value_sat: u64,
    /// The commitment output (HTLC) this transaction spends.
    pub htlc_vout: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HolderCommitment {
    pub info: CommitmentInfo,
    pub counterparty_sig: Vec<u8>,
    pub counterparty_htlc_sigs: Vec<Vec<u8>>,
}

/// The counterparty's commitments we signed and the secrets it revealed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterpartySide {
    /// The last counterparty commitment we signed.
    pub latest: Option<CommitmentInfo>,
    /// The one before it, until the counterparty revokes it: either may be broadcast, and
    /// our HTLCs on it are claimed from these facts.
    pub previous: Option<CommitmentInfo>,
    /// Per-commitment points of signed, not yet revoked counterparty commitments (≤ 2).
    pub unrevoked_points: Vec<(u64, Vec<u8>)>,
    /// Every counterparty commitment numbered at or above this one has been revoked.
    pub revoked_from: Option<u64>,
    /// LDK's `CounterpartyCommitmentSecrets` (BOLT 3 compact storage), serialized.
    pub secrets: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CloseState {
    Open,
    /// We signed a cooperative close.
    MutualClose {
        to_holder_sat: u64,
    },
    /// We signed holder commitment `commitment_number` for broadcast.
    ForceClosed {
        commitment_number: u64,
    },
}

impl ChannelState {
    pub fn new(setup: ChannelSetup, secrets: Vec<u8>) -> Self {
        Self {
            setup,
            digest: StateDigest { version: 0, digest: [0; 32] },
            holder: HolderSide::default(),
            counterparty: CounterpartySide { secrets, ..Default::default() },
            close: CloseState::Open,
            closed_at: None,
            funding_confirmed_at: None,
            funding_tx_index: None,
            funding_spent_at: None,
            funding_spend: None,
            set_up_at: None,
        }
    }
}

/// The canonical digest of a request: what approvals are over.
pub fn request_digest(subject: &ApprovalSubject) -> [u8; 32] {
    // postcard encodes a value one way only; every cosigner re-encodes what it decoded.
    let bytes = postcard::to_allocvec(subject).unwrap_or_default();
    tagged_hash("QLS/approval-subject/v1", &[&bytes])
}

/// The digest after applying `request` to a state with digest `prev`.
pub fn chain_digest(prev: &StateDigest, request: &[u8; 32]) -> StateDigest {
    let version = prev.version.saturating_add(1);
    StateDigest {
        version,
        digest: tagged_hash("QLS/channel-state/v1", &[&prev.digest, &version.to_be_bytes(), request]),
    }
}

/// The statement a cosigner signs with its identity key to approve a request.
pub fn approval_statement(request: &[u8; 32], state: &StateDigest) -> [u8; 32] {
    tagged_hash("QLS/approval/v1", &[request, &state.version.to_be_bytes(), &state.digest])
}

/// The digest approvals of node-key requests carry (node requests have no channel state).
pub const NODE_STATE: StateDigest = StateDigest { version: 0, digest: [0; 32] };
