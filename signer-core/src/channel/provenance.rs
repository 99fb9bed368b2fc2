//! Provenance of a legacy channel's holder keys: the statement a key holder signs to
//! attest that a setup's holder points are the ones it derives from the node seed, and the
//! outcome of checking a setup's keys that the channel rules act on.
//!
//! The check itself needs what this crate does not have (the seed, the identity
//! certificates' P-256 signatures), so the shell performs it and hands the outcome in
//! through [`super::Context::holder_keys`]; the rule (`policy-channel-holder-keys`) and
//! its tag live here and in `validate.rs`.
//!
//! Must never: treat a setup whose keys were not checked as ours.

use alloc::string::String;

use qls_protocol::{ChannelKeysId, ChannelPoints};

use crate::tagged::tagged_hash;

/// What the shell found about a setup's holder keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HolderKeysCheck {
    /// Derived by this cosigner from the node seed, or attested by a pinned key holder.
    Ours,
    /// Neither; the reason, for the refusal.
    NotOurs(String),
}

/// The 32-byte statement a key holder signs with its identity key: "`points` are the
/// holder keys of channel `channel`" (domain-separated from every other identity
/// signature: approvals, DKG messages, MuSig2 leaves).
pub fn holder_keys_statement(channel: &ChannelKeysId, points: &ChannelPoints) -> [u8; 32] {
    tagged_hash(
        "QLS/legacy-holder-keys/v1",
        &[channel, &points.funding, &points.revocation, &points.payment, &points.delayed_payment, &points.htlc],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(b: u8) -> ChannelPoints {
        ChannelPoints {
            funding: [b; 33].to_vec(),
            revocation: [2; 33].to_vec(),
            payment: [3; 33].to_vec(),
            delayed_payment: [4; 33].to_vec(),
            htlc: [5; 33].to_vec(),
        }
    }

    #[test]
    fn statement_binds_channel_and_every_point() {
        let base = holder_keys_statement(&[1; 32], &points(1));
        assert_ne!(base, holder_keys_statement(&[2; 32], &points(1)));
        assert_ne!(base, holder_keys_statement(&[1; 32], &points(9)));
        let mut moved = points(1);
        moved.htlc = [6; 33].to_vec();
        assert_ne!(base, holder_keys_statement(&[1; 32], &moved));
    }
}
