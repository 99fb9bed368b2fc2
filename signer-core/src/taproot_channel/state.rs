//! One cosigner's copy of one simple taproot channel: the setup, the leaves pinned at
//! setup (so every later request uses the same funding key), our derived keys, the
//! counterparty commitments we signed and the secrets it revealed, the close state and the
//! state digest (the same hash chain as legacy channels).
//!
//! Must never: change without going through `validate::apply`, or be persisted partially.

use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use qls_protocol::{StateDigest, TaprootChannelSetup, TaprootCommitmentInfo, TaprootHolderKeys};

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
    /// Per-commitment points of signed, not yet revoked counterparty commitments (≤ 2).
    pub unrevoked_points: Vec<(u64, Vec<u8>)>,
    /// LDK's `CounterpartyCommitmentSecrets` (BOLT 3 compact storage), serialized.
    pub secrets: Vec<u8>,
    pub close: CloseState,
}
