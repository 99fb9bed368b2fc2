//! Simple taproot channels as one cosigner sees them: our keys (MuSig2 funding node key
//! from the cosigners' leaves, FROST-tweaked basepoints), its own copy of each channel's
//! state, the policy that judges every request and derives the message to sign, and the
//! NestedMuSig2 session a leaf signs in.
//!
//! Must never: sign (the cosigner shell signs after the policy approved and the nonce's
//! consumption is durable), or read anything but the request, the stored state and the
//! policy.

pub mod keys;
pub mod session;
pub mod state;
pub mod validate;

#[cfg(test)]
mod tests;

pub use keys::{channel_leaf_pubkey, channel_leaf_secret, funding_node_key, holder_keys, leaf_statement};
pub use session::{leaf_session, LeafSession};
pub use state::TaprootChannelState;
pub use validate::{
    apply, counterparty_commitment, funding_sighash, funding_txout, TaprootApplied, TaprootChannelError, TaprootContext,
};
