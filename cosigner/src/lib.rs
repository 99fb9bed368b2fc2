//! QLS cosigner: the async shell around `signer-core`. It holds this device's key
//! shares and nonces in its own store, checks every request against its own policy and
//! state, and answers the pinned coordinator over QUIC.
//!
//! Must never: send a signature share before the nonce it used is durably consumed,
//! accept a connection from an unpinned certificate, or trust a field it can recompute.
#![forbid(unsafe_code)]

pub mod approvals;
pub mod channel_store;
pub mod committer;
pub mod config;
pub mod dkg_sessions;
pub mod handler;
pub mod key_holder;
pub mod server;
pub mod store;
pub mod taproot;
pub mod taproot_escrow;
pub mod taproot_store;

pub use config::{ConfigError, CosignerConfig};
pub use server::{run_cosigner, Cosigner, CosignerError, ReplyFault};
