//! The LDK adapter: makes a QLS quorum the signer of an unmodified LDK (`lightning` 0.2)
//! node. [`QuorumKeysManager`] is the node's `NodeSigner` / `SignerProvider` /
//! `OutputSpender` / `EntropySource`, [`QuorumChannelSigner`] each channel's
//! `EcdsaChannelSigner`; both talk to the coordinator through one [`QuorumBridge`].
//! [`QuorumChainWatch`] is a `chain::Listen` that sends the quorum SPV proofs of our
//! channels' funding transactions.
//!
//! Must never: hold a secret that moves channel funds or speaks for the node id.

pub mod bridge;
pub mod chain_watch;
pub mod channel_signer;
pub mod keys;
pub mod keys_cache;
pub mod witness_check;

pub use bridge::{BridgeError, QuorumBridge, RoundCounts, RoundError};
pub use chain_watch::QuorumChainWatch;
pub use channel_signer::QuorumChannelSigner;
pub use keys::{KeysError, QuorumKeysManager};
pub use keys_cache::{ChannelKeysCache, KeysCacheError};
