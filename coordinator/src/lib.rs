//! QLS coordinator: holds no secret and no durable safety state. It routes node requests
//! to the cosigners, keeps their public nonce commitments in memory, runs FROST rounds
//! with a responsive quorum, retries around failures, blames cosigners whose shares do
//! not verify, and verifies every aggregated signature before returning it.
//!
//! Must never: return a signature libsecp256k1 has not verified, reuse a cosigner's nonce
//! commitment in two sessions, or talk to an unpinned peer.
#![forbid(unsafe_code)]

pub mod approval;
pub mod catch_up;
pub mod config;
pub mod cosigner_link;
pub mod dkg;
pub mod node_api;
pub mod quorum;
pub mod signing;
pub mod taproot;

pub use config::{ConfigError, CoordinatorConfig};
pub use quorum::{Quorum, QuorumError};
pub use signing::{SignFailure, SignOutcome};
