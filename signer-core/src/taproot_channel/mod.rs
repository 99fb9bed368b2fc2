//! Simple taproot channels as one cosigner sees them: our keys (MuSig2 funding node key
//! from the cosigners' leaves, FROST-tweaked basepoints), its own copy of each channel's
//! state, the transactions rebuilt from it, the policy that judges every request and
//! derives the message to sign, the NestedMuSig2 session a leaf signs in, and what the
//! FROST group signs (HTLC second-level transactions, sweeps, anchors).
//!
//! Must never: sign (the cosigner shell signs after the policy approved and the nonce's
//! consumption is durable), or read anything but the request, the stored state, the
//! payment index and the policy.

pub mod build;
pub mod escrow;
pub mod frost_targets;
pub mod keys;
pub mod routing;
pub mod session;
pub mod state;
pub mod validate;

#[cfg(test)]
mod holder_tests;
#[cfg(test)]
mod tests;

pub use build::{closing_tx, commitment, counterparty_commitment, funding_sighash, funding_txout, Side};
pub use frost_targets::frost_targets;
pub use keys::{
    basepoint_tweak, channel_leaf_pubkey, channel_leaf_secret, funding_node_key, holder_keys, leaf_statement,
    per_commitment_tweaks,
};
pub use session::{leaf_session, LeafSession};
pub use state::{TaprootChannelState, TaprootHolderCommitment};
pub use validate::{apply, TaprootApplied, TaprootChannelError, TaprootContext};
