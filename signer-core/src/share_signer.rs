//! The cosigner's signing decision: recompute every message from the payload, check the
//! coordinator's signing packages against it and against the cosigner's own nonce
//! commitments, run the policy engine, and only then compute FROST signature shares.
//!
//! Must never: sign a message it did not derive itself, sign on an `error` violation,
//! or accept a signing package whose commitment for this cosigner is not the one its
//! nonce belongs to. Nonce consumption is the caller's job, durably, before the shares
//! leave (see `cosigner::store`).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use frost_secp256k1_tr::keys::KeyPackage;
use frost_secp256k1_tr::round1::SigningNonces;
use frost_secp256k1_tr::round2::{self, SignatureShare};
use frost_secp256k1_tr::SigningPackage;

use qls_protocol::{FrostTarget, KeyTweak, SignPayload};

use crate::frost_tweak::tweak_key_package;
use crate::keys::KeyShare;
use crate::policy::{judge, onchain, PolicyConfig, Verdict};
use crate::sighash::{group_key_spend_sighashes, parse_psbt, SighashError};
use crate::wallet::wallet_script;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error(transparent)]
    Sighash(#[from] SighashError),
    #[error("request has {got} signing items but the payload yields {expected} messages")]
    ItemCountMismatch { expected: usize, got: usize },
    #[error("signing package of item {item} does not decode")]
    BadSigningPackage { item: usize },
    #[error("signing package of item {item} signs a message other than the one this cosigner derived")]
    MessageMismatch { item: usize },
    #[error("signing package of item {item} carries a commitment for this cosigner other than its nonce's")]
    CommitmentMismatch { item: usize },
    #[error("signing package of item {item} has {signers} signers, fewer than the threshold {threshold}")]
    TooFewSigners { item: usize, signers: usize, threshold: u16 },
    #[error("signing package of item {item} names a signer outside the group")]
    UnknownSigner { item: usize },
    #[error("FROST signing failed on item {item}: {reason}")]
    Frost { item: usize, reason: String },
    #[error("group key id is not a valid point")]
    BadKeyId,
    #[error("a taproot-channel payload is derived from the channel state, not the payload alone")]
    NeedsChannelState,
}

/// What the cosigner decided about a request, before any share is computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShareDecision {
    /// Approved: the checked signing packages, one per item in order, plus violations
    /// the policy only warns about. Shares come from [`compute_shares`] with the same
    /// targets (each names the key tweaks its message is signed under).
    Sign { packages: Vec<SigningPackage>, verdict: Verdict },
    /// The policy refuses: no share may be computed.
    Refuse { verdict: Verdict },
}

/// The messages this request signs and their keys, derived from the payload alone, and
/// the policy violations of the payload. Taproot-channel payloads need the channel state:
/// the shell derives them with `taproot_channel::frost_targets`.
pub fn derive_messages(
    key: &KeyShare,
    payload: &SignPayload,
    policy: &PolicyConfig,
    funding: &[onchain::FundingOutput],
) -> Result<(Vec<FrostTarget>, Vec<crate::policy::Violation>), SignError> {
    match payload {
        // Raw messages are signed under the message key, never the wallet key.
        SignPayload::Message(m) => Ok((
            alloc::vec![FrostTarget {
                msg: *m,
                tweaks: alloc::vec![KeyTweak::Taproot(Some(crate::keys::message_key_root()))]
            }],
            Vec::new(),
        )),
        SignPayload::Psbt { psbt: bytes, funding_channels } => {
            let psbt = parse_psbt(bytes)?;
            let wallet = wallet_script(&key.key_id()).map_err(|_| SignError::BadKeyId)?;
            let sighashes = group_key_spend_sighashes(&psbt, &wallet)?;
            let funding = (!funding_channels.is_empty()).then_some(funding);
            let violations = onchain::check_psbt(&psbt, &wallet, &policy.onchain, funding)?;
            Ok((sighashes.into_iter().map(|(_, h)| FrostTarget { msg: h, tweaks: Vec::new() }).collect(), violations))
        }
        SignPayload::Taproot { .. } => Err(SignError::NeedsChannelState),
    }
}

/// Decides on a signing request whose messages are `targets` (with the payload's
/// `violations`). `items` pairs each signing package (as sent) with the secret nonces the
/// cosigner loaded for the nonce id of that item. Computes nothing secret: the caller
/// consumes the nonces durably, then (or meanwhile) computes the shares with
/// [`compute_shares`], and releases them only after the consumption.
pub fn decide(
    key: &KeyShare,
    targets: &[FrostTarget],
    violations: Vec<crate::policy::Violation>,
    items: &[(&[u8], &SigningNonces)],
    policy: &PolicyConfig,
) -> Result<ShareDecision, SignError> {
    if items.len() != targets.len() {
        return Err(SignError::ItemCountMismatch { expected: targets.len(), got: items.len() });
    }
    let me = key.identifier();
    let group = key.public_key_package.verifying_shares();
    let mut packages = Vec::with_capacity(items.len());
    for (item, ((package_bytes, nonces), target)) in items.iter().zip(targets).enumerate() {
        let package = SigningPackage::deserialize(package_bytes).map_err(|_| SignError::BadSigningPackage { item })?;
        if package.message().as_slice() != target.msg.as_slice() {
            return Err(SignError::MessageMismatch { item });
        }
        if package.signing_commitments().get(&me) != Some(nonces.commitments()) {
            return Err(SignError::CommitmentMismatch { item });
        }
        let signers = package.signing_commitments().len();
        if signers < key.threshold() as usize {
            return Err(SignError::TooFewSigners { item, signers, threshold: key.threshold() });
        }
        if package.signing_commitments().keys().any(|id| !group.contains_key(id)) {
            return Err(SignError::UnknownSigner { item });
        }
        packages.push(package);
    }
    let verdict = judge(violations, policy);
    if !verdict.approves() {
        return Ok(ShareDecision::Refuse { verdict });
    }
    Ok(ShareDecision::Sign { packages, verdict })
}

/// FROST signature shares for packages that [`decide`] approved, with the same nonces,
/// each under its target's tweaked key.
pub fn compute_shares(
    key: &KeyShare,
    packages: &[SigningPackage],
    nonces: &[SigningNonces],
    targets: &[FrostTarget],
) -> Result<Vec<SignatureShare>, SignError> {
    let mut tweaked: Option<(&[KeyTweak], KeyPackage)> = None;
    packages
        .iter()
        .zip(nonces)
        .zip(targets)
        .enumerate()
        .map(|(item, ((package, nonces), target))| {
            // Consecutive targets mostly share their tweaks (all HTLCs of one commitment).
            let kp = match &tweaked {
                Some((t, kp)) if *t == target.tweaks.as_slice() => kp,
                _ => {
                    let kp = tweak_key_package(&key.key_package, &target.tweaks)
                        .map_err(|e| SignError::Frost { item, reason: format!("{e}") })?;
                    &tweaked.insert((target.tweaks.as_slice(), kp)).1
                }
            };
            round2::sign(package, nonces, kp).map_err(|e| SignError::Frost { item, reason: format!("{e}") })
        })
        .collect()
}
