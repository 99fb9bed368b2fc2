//! QLS node side: what a Lightning node links to use a QLS quorum as its signer — the
//! node API client ([`NodeClient`], pinned QUIC to the coordinator), the LDK adapter
//! ([`ldk`]: `NodeSigner`, `SignerProvider`, per-channel `EcdsaChannelSigner`,
//! `OutputSpender`, chain watch) and example PSBTs; the `qls-client` tool is built on it.
//! The coordinator's server code is not linked into a node.
//!
//! Must never: hold a secret that moves channel funds or speaks for the node id, return
//! a signature or witness it has not verified, or talk to an unpinned coordinator.
#![forbid(unsafe_code)]

pub mod client;
pub mod example;
pub mod ldk;

pub use client::{ClientError, NodeClient};
