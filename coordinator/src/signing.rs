//! One signing request through the quorum: derive the messages, pick t responsive
//! cosigners with commitments ready, send one round trip of signing packages, aggregate,
//! and on failure blame, exclude and retry with another subset until no t remain.
//!
//! Must never: return a signature that libsecp256k1 rejects, reuse a commitment after a
//! session that may have consumed it, or hide who refused or who was blamed.

use std::collections::{BTreeMap, BTreeSet};

use futures::future::join_all;

use qls_protocol::*;
use qls_signer_core::frost::keys::PublicKeyPackage;
use qls_signer_core::frost::round1::SigningCommitments;
use qls_signer_core::frost::round2::SignatureShare;
use qls_signer_core::frost::{self, Identifier, SigningPackage};
use qls_signer_core::frost_tweak::tweak_public_package;
use qls_signer_core::keys::message_key_root;
use qls_signer_core::schnorr::verify_bip340;
use qls_signer_core::sighash::{group_key_spend_sighashes, parse_psbt};
use qls_signer_core::wallet::wallet_script;

use crate::cosigner_link::LinkError;
use crate::quorum::{Member, Quorum};

/// Signing attempts per request, at most (each excludes at least one cosigner).
pub const MAX_SIGN_ATTEMPTS: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignOutcome {
    /// One BIP-340 signature per derived message, in order, each verified.
    pub signatures: Vec<[u8; 64]>,
    /// The messages, as the coordinator derived them.
    pub messages: Vec<[u8; 32]>,
    /// For PSBTs: the input index of each signature.
    pub inputs: Vec<usize>,
    pub report: SignReport,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignFailure {
    #[error("refused by policy: {}", describe_refusals(.refusals))]
    Refused { refusals: Vec<CosignerRefusal>, report: Box<SignReport> },
    #[error("no quorum of {threshold}: {detail}")]
    QuorumUnavailable { threshold: usize, detail: String, report: Box<SignReport> },
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("internal: {0}")]
    Internal(String),
}

impl SignFailure {
    /// This failure of a later round, with `earlier`'s blame and nonce uses in front of
    /// its own report.
    pub fn after(self, mut earlier: SignReport) -> Self {
        let merge = |report: Box<SignReport>| {
            earlier.signers = report.signers.clone();
            earlier.attempts = earlier.attempts.max(report.attempts);
            earlier.absorb(*report);
            Box::new(earlier)
        };
        match self {
            SignFailure::Refused { refusals, report } => SignFailure::Refused { refusals, report: merge(report) },
            SignFailure::QuorumUnavailable { threshold, detail, report } => {
                SignFailure::QuorumUnavailable { threshold, detail, report: merge(report) }
            }
            other => other,
        }
    }
}

fn describe_refusals(r: &[CosignerRefusal]) -> String {
    r.iter()
        .map(|c| {
            format!("{} [{}]", c.cosigner, c.violations.iter().map(|v| v.tag.as_str()).collect::<Vec<_>>().join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The messages a payload signs and their keys, as the cosigners will derive them, with
/// each signature's PSBT input index.
pub fn derive_messages(quorum: &Quorum, payload: &SignPayload) -> Result<(Vec<FrostTarget>, Vec<usize>), SignFailure> {
    match payload {
        SignPayload::Message(m) => {
            Ok((vec![FrostTarget { msg: *m, tweaks: vec![KeyTweak::Taproot(Some(message_key_root()))] }], vec![0]))
        }
        SignPayload::Psbt { psbt: bytes, .. } => {
            let psbt = parse_psbt(bytes).map_err(|e| SignFailure::BadRequest(e.to_string()))?;
            let wallet = wallet_script(&quorum.key.key_id).map_err(|e| SignFailure::Internal(e.to_string()))?;
            let hashes =
                group_key_spend_sighashes(&psbt, &wallet).map_err(|e| SignFailure::BadRequest(e.to_string()))?;
            if hashes.len() > limits::MAX_SIGN_ITEMS {
                return Err(SignFailure::BadRequest(format!(
                    "{} group inputs; at most {}",
                    hashes.len(),
                    limits::MAX_SIGN_ITEMS
                )));
            }
            Ok((
                hashes.iter().map(|(_, h)| FrostTarget { msg: *h, tweaks: Vec::new() }).collect(),
                hashes.iter().map(|(i, _)| *i).collect(),
            ))
        }
        SignPayload::Taproot { .. } => Err(SignFailure::BadRequest(
            "taproot-channel items are signed through the taproot path (their messages come from the cosigners)".into(),
        )),
    }
}

enum Reply {
    Shares(Vec<SignatureShare>, Vec<Violation>),
    Refused(Vec<Violation>),
    Failed(BlameReason, String),
    /// The cosigner no longer holds the nonces we hold commitments of (it restarted: a
    /// cosigner forgets its unused nonces at start). Its pool is dropped; it stays eligible.
    ForgotNonces(String),
}

fn classify(member: &Member, r: Result<CosignerResponse, LinkError>, m: usize) -> Reply {
    match r {
        Ok(CosignerResponse::Shares { shares, warnings }) if shares.len() == m => {
            match shares.iter().map(|s| SignatureShare::deserialize(s)).collect::<Result<Vec<_>, _>>() {
                Ok(s) => Reply::Shares(s, warnings),
                Err(_) => Reply::Failed(BlameReason::InvalidShare, "share does not decode".into()),
            }
        }
        Ok(CosignerResponse::Shares { shares, .. }) => {
            Reply::Failed(BlameReason::InvalidShare, format!("{} shares for {m} messages", shares.len()))
        }
        Ok(CosignerResponse::Refused { violations }) => Reply::Refused(violations),
        Ok(CosignerResponse::Error { kind, detail }) => {
            if matches!(kind, ErrorKind::ConsumedNonce | ErrorKind::UnknownNonce) {
                // A restarted cosigner forgot every nonce it handed out before.
                member.forget_pool();
                return Reply::ForgotNonces(format!("{kind:?}: {detail}"));
            }
            Reply::Failed(BlameReason::ErrorReply, format!("{kind:?}: {detail}"))
        }
        Ok(other) => Reply::Failed(BlameReason::ErrorReply, format!("unexpected reply {other:?}")),
        Err(LinkError::Timeout { ms, .. }) => {
            member.mark_down();
            Reply::Failed(BlameReason::Timeout, format!("no reply within {ms} ms"))
        }
        Err(e) => {
            member.mark_down();
            Reply::Failed(BlameReason::Unreachable, e.to_string())
        }
    }
}

/// Signs `payload` with a quorum. See the module doc for the retry rules.
pub async fn sign(quorum: &Quorum, payload: SignPayload) -> Result<SignOutcome, SignFailure> {
    let (targets, inputs) = derive_messages(quorum, &payload)?;
    sign_targets(quorum, payload, targets, inputs).await
}

/// The public key package and the x-only key of each target's tweaks (shared runs reuse
/// one computation).
fn tweaked_keys(quorum: &Quorum, targets: &[FrostTarget]) -> Result<Vec<(PublicKeyPackage, [u8; 32])>, SignFailure> {
    let mut out: Vec<(PublicKeyPackage, [u8; 32])> = Vec::with_capacity(targets.len());
    for (k, t) in targets.iter().enumerate() {
        if k > 0 && targets[k - 1].tweaks == t.tweaks {
            out.push(out[k - 1].clone());
            continue;
        }
        let pp = tweak_public_package(&quorum.key.public_key_package, &t.tweaks)
            .map_err(|e| SignFailure::Internal(format!("key tweak: {e}")))?;
        let key = qls_signer_core::keys::key_id_of(&pp);
        out.push((pp, key));
    }
    Ok(out)
}

/// Signs `targets` (messages and key tweaks the cosigners derive from `payload` alike).
pub async fn sign_targets(
    quorum: &Quorum,
    payload: SignPayload,
    targets: Vec<FrostTarget>,
    inputs: Vec<usize>,
) -> Result<SignOutcome, SignFailure> {
    let messages: Vec<[u8; 32]> = targets.iter().map(|t| t.msg).collect();
    let keys = tweaked_keys(quorum, &targets)?;
    let m = messages.len();
    let t = quorum.threshold();
    let mut report = SignReport::default();
    let mut refusals: Vec<CosignerRefusal> = Vec::new();
    let mut excluded: BTreeSet<Identifier> = BTreeSet::new();

    for attempt in 1..=MAX_SIGN_ATTEMPTS {
        report.attempts = attempt as u16;
        let selected = select(quorum, &excluded, t, m).await;
        if selected.len() < t {
            for (member, taken) in selected {
                member.release(taken, true);
            }
            break;
        }
        let packages: Vec<SigningPackage> = (0..m)
            .map(|k| {
                let commitments: BTreeMap<Identifier, SigningCommitments> =
                    selected.iter().map(|(mem, taken)| (mem.identifier, taken[k].1)).collect();
                SigningPackage::new(commitments, &messages[k])
            })
            .collect();
        let package_bytes: Vec<Vec<u8>> = packages
            .iter()
            .map(|p| p.serialize().map_err(|e| SignFailure::Internal(e.to_string())))
            .collect::<Result<_, _>>()?;

        let timeout = quorum.config.request_timeout;
        let replies = join_all(selected.iter().map(|(member, taken)| {
            let req = CosignerRequest::Sign(SignRequest {
                key_id: quorum.key.key_id,
                payload: payload.clone(),
                items: taken
                    .iter()
                    .zip(&package_bytes)
                    .map(|((nonce_id, _), p)| SignItem { nonce_id: *nonce_id, signing_package: p.clone() })
                    .collect(),
            });
            async move { member.link.call(&req, timeout).await }
        }))
        .await;

        let mut shares: Vec<BTreeMap<Identifier, SignatureShare>> = vec![BTreeMap::new(); m];
        let mut all_shared = true;
        for ((member, taken), reply) in selected.into_iter().zip(replies) {
            match classify(&member, reply, m) {
                Reply::Shares(s, warnings) => {
                    for (_, commitments) in &taken {
                        let bytes = commitments.serialize().map_err(|e| SignFailure::Internal(e.to_string()))?;
                        report.nonce_used(member.name(), bytes);
                    }
                    member.release(taken, false);
                    for (k, share) in s.into_iter().enumerate() {
                        shares[k].insert(member.identifier, share);
                    }
                    if !warnings.is_empty() {
                        report.warnings.push(CosignerRefusal { cosigner: member.name().into(), violations: warnings });
                    }
                }
                Reply::Refused(violations) => {
                    // A refusing cosigner consumed nothing: its commitments stay usable.
                    member.release(taken, true);
                    tracing::info!(cosigner = %member.name(), tags = ?violations.iter().map(|v| &v.tag).collect::<Vec<_>>(), "cosigner refused");
                    refusals.push(CosignerRefusal { cosigner: member.name().into(), violations });
                    excluded.insert(member.identifier);
                    all_shared = false;
                }
                Reply::ForgotNonces(detail) => {
                    member.release(taken, false);
                    tracing::info!(cosigner = %member.name(), %detail, "cosigner restarted; its nonce pool is fetched again");
                    all_shared = false;
                }
                Reply::Failed(reason, detail) => {
                    member.release(taken, false);
                    tracing::warn!(cosigner = %member.name(), ?reason, %detail, "cosigner blamed");
                    report.blamed.push(Blame { cosigner: member.name().into(), reason, detail });
                    excluded.insert(member.identifier);
                    all_shared = false;
                }
            }
        }
        if !all_shared {
            continue;
        }

        let mut signatures = Vec::with_capacity(m);
        let mut culprits: BTreeSet<Identifier> = BTreeSet::new();
        for k in 0..m {
            let (package, verify_key) = &keys[k];
            match frost::aggregate(&packages[k], &shares[k], package) {
                Ok(sig) => {
                    let bytes = sig.serialize().map_err(|e| SignFailure::Internal(e.to_string()))?;
                    let sig: [u8; 64] = bytes
                        .as_slice()
                        .try_into()
                        .map_err(|_| SignFailure::Internal("signature is not 64 bytes".into()))?;
                    verify_bip340(verify_key, &messages[k], &sig).map_err(|e| {
                        SignFailure::Internal(format!("aggregated signature rejected by libsecp256k1: {e}"))
                    })?;
                    signatures.push(sig);
                }
                Err(frost::Error::InvalidSignatureShare { culprits: c }) => culprits.extend(c),
                Err(e) => return Err(SignFailure::Internal(format!("aggregation failed: {e}"))),
            }
        }
        if culprits.is_empty() {
            report.signers =
                shares[0].keys().filter_map(|id| quorum.member(id)).map(|m| m.name().to_string()).collect();
            return Ok(SignOutcome { signatures, messages, inputs, report });
        }
        for id in culprits {
            let name = quorum.member(&id).map(|m| m.name().to_string()).unwrap_or_else(|| format!("{id:?}"));
            tracing::warn!(cosigner = %name, "invalid signature share; cosigner blamed and excluded");
            report.blamed.push(Blame {
                cosigner: name,
                reason: BlameReason::InvalidShare,
                detail: "FROST share verification failed".into(),
            });
            excluded.insert(id);
        }
    }

    if !refusals.is_empty() {
        return Err(SignFailure::Refused { refusals, report: Box::new(report) });
    }
    let detail = format!(
        "{} of {} cosigners excluded or without commitments after {} attempts",
        excluded.len(),
        quorum.members.len(),
        report.attempts
    );
    Err(SignFailure::QuorumUnavailable { threshold: t, detail, report: Box::new(report) })
}

/// Picks up to `t` members not in `excluded`, each with `m` commitments taken.
async fn select(
    quorum: &Quorum,
    excluded: &BTreeSet<Identifier>,
    t: usize,
    m: usize,
) -> Vec<(std::sync::Arc<Member>, Vec<(u64, SigningCommitments)>)> {
    let mut selected = Vec::with_capacity(t);
    let mut starved = Vec::new();
    for member in quorum.preference_order() {
        if selected.len() == t {
            break;
        }
        if excluded.contains(&member.identifier) {
            continue;
        }
        match member.take(m) {
            Some(taken) => selected.push((member, taken)),
            None => starved.push(member),
        }
    }
    // Too few with commitments ready: fetch on demand from the others, once.
    if selected.len() < t && !starved.is_empty() {
        join_all(starved.iter().map(|mem| quorum.refill(mem, m))).await;
        for member in starved {
            if selected.len() == t {
                break;
            }
            if let Some(taken) = member.take(m) {
                selected.push((member, taken));
            }
        }
    }
    selected
}
