//! QLS signing core, sans-IO: every decision a cosigner takes about a request, as pure
//! functions of the request, the cosigner's key share, its policy and its randomness.
//!
//! Owns: the policy engine and its tag catalog, BIP-341 sighash computation from a PSBT,
//! BIP-340 verification, the FROST share decision, and DKG round logic with sealed
//! round-2 packages. Must never: open a socket, read a clock, touch a disk, or persist
//! anything — the shell persists what this crate returns (nonce consumption first).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod bolt3_keys;
pub mod chain;
pub mod channel;
pub mod dealer;
pub mod dkg;
pub mod frost_tweak;
pub mod funding_proof;
pub mod keys;
pub mod musig2;
pub mod node_key;
pub mod policy;
pub mod revocation_secrets;
pub mod schnorr;
pub mod share_signer;
pub mod sighash;
pub mod sweep_format;
pub mod taproot_channel;
pub mod taproot_commitment;
pub mod taproot_htlc;
pub mod taproot_scripts;
pub mod wallet;

mod tagged;

pub use frost_secp256k1_tr as frost;
