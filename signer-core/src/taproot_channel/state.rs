//! One cosigner's copy of one simple taproot channel: the setup, the leaves pinned at
//! setup (so every later request uses the same funding key), our derived keys, the
//! counterparty commitments we signed and the secrets it revealed, our holder commitments
//! (the latest validated one and how far they are revoked), the close state and the state
//! digest (the same hash chain as legacy channels).
//!
//! Must never: change without going through `validate::apply`, or be persisted partially.

use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use qls_protocol::{LeafNonce, StateDigest, TaprootChannelSetup, TaprootCommitmentInfo, TaprootHolderKeys};

use crate::channel::CloseState;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaprootChannelState {
    pub setup: TaprootChannelSetup,
    /// Every cosigner's base MuSig2 leaf key (33 bytes each), pinned at setup.
    pub leaves: Vec<Vec<u8>>,
    pub holder: TaprootHolderKeys,
    /// The funding output's script (`OP_1 <output key>`), computed once at setup; empty in
    /// a state built by hand (then computed on use).
    pub funding_script: Vec<u8>,
    pub digest: StateDigest,
    /// The last counterparty commitment we signed.
    pub counterparty_latest: Option<TaprootCommitmentInfo>,
    /// The one before it, until the counterparty revokes it: either may be broadcast, and
    /// our HTLCs on it are claimed from these facts.
    pub counterparty_previous: Option<TaprootCommitmentInfo>,
    /// Per-commitment points of signed, not yet revoked counterparty commitments (≤ 2).
    pub unrevoked_points: Vec<(u64, Vec<u8>)>,
    /// LDK's `CounterpartyCommitmentSecrets` (BOLT 3 compact storage), serialized.
    pub secrets: Vec<u8>,
    /// Our latest holder commitment, validated: what a force close broadcasts.
    pub holder_latest: Option<TaprootHolderCommitment>,
    /// Every holder commitment numbered at or below this one is revoked.
    pub holder_revoked: Option<u64>,
    pub close: CloseState,
    /// Height of the block holding the funding transaction, once an SPV proof showed it
    /// at depth; until then incoming HTLCs of this channel cover nothing.
    pub funding_confirmed_at: Option<u32>,
    /// Height of the block holding a transaction that spent the funding output, once a
    /// proof showed it: no commitment is signed after, incoming HTLCs cover nothing.
    pub funding_spent_at: Option<u32>,
}

/// A holder commitment with what completing it needs: the counterparty's partial
/// signature, made in the session of our verification nonce (`verification`, one leaf
/// nonce per cosigner) and its own nonce, and its HTLC signatures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaprootHolderCommitment {
    pub info: TaprootCommitmentInfo,
    pub verification: Vec<LeafNonce>,
    pub counterparty_nonce: Vec<u8>,
    pub counterparty_psig: Vec<u8>,
    pub counterparty_htlc_sigs: Vec<Vec<u8>>,
}

impl TaprootChannelState {
    /// A state holding only public facts (setup and our keys), enough to rebuild every
    /// transaction of the channel: what a counterparty or a test sees.
    pub fn public_view(setup: TaprootChannelSetup, holder: TaprootHolderKeys) -> Self {
        Self {
            setup,
            leaves: Vec::new(),
            holder,
            funding_script: Vec::new(),
            digest: StateDigest { version: 0, digest: [0; 32] },
            counterparty_latest: None,
            counterparty_previous: None,
            unrevoked_points: Vec::new(),
            secrets: Vec::new(),
            holder_latest: None,
            holder_revoked: None,
            close: CloseState::Open,
            funding_confirmed_at: None,
            funding_spent_at: None,
        }
    }

    /// Whether holder commitment `n` is revoked.
    pub fn holder_is_revoked(&self, n: u64) -> bool {
        self.holder_revoked.is_some_and(|r| n <= r)
    }
}
