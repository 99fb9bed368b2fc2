//! Multi-ECDSA approval, coordinator side: asks every member to validate a channel or
//! node-key request, groups the approvals by the state digest they carry, reports the
//! cosigners whose digest differs from the largest group (rolled back, lagging or forked:
//! never counted), and hands the agreeing approvals to a key holder to sign.
//!
//! Must never: forward approvals over different digests as one quorum, or hide a refusal
//! or a divergence from the report.

use std::collections::BTreeMap;

use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use qls_protocol::*;

use crate::cosigner_link::LinkError;
use crate::quorum::{Member, Quorum};

/// Why an approved request got no key holder output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApprovalFailure {
    Refused { refusals: Vec<CosignerRefusal>, report: SignReport },
    Unavailable { detail: String, report: SignReport },
}

fn blame(report: &mut SignReport, m: &Member, reason: BlameReason, detail: String) {
    report.blamed.push(Blame { cosigner: m.name().to_string(), reason, detail });
}

/// For a legacy channel setup: a key holder's attestation of the channel's holder keys,
/// which cosigners without the seed need (`None` if no key holder answers: they refuse).
async fn setup_attestation(quorum: &Quorum, subject: &ApprovalSubject) -> Option<KeysAttestation> {
    let ApprovalSubject::Channel { channel, request: ChannelRequest::Setup(_) } = subject else { return None };
    match ask_key_holder(quorum, CosignerRequest::ChannelKeys { channel: *channel }).await {
        Ok(CosignerResponse::ChannelKeys { info, .. }) => Some(info.attestation),
        Ok(other) => {
            tracing::warn!(reply = ?other, "a key holder answered a channel-keys request with something else");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "no key holder attested a channel setup's keys");
            None
        }
    }
}

/// The least a round waits for the replies after its first `need` agreeing approvals.
pub const MIN_STRAGGLER_GRACE: Duration = Duration::from_millis(20);

/// One member's reply to an approval request, in its turn: it first replays what it
/// missed. A member that failed keeps its turn (the guard) until the round decided
/// whether the request is kept for its replay.
type MemberReply = (Arc<Member>, Result<CosignerResponse, LinkError>, Option<tokio::sync::OwnedMutexGuard<()>>);

fn ask(
    m: Arc<Member>,
    req: Arc<CosignerRequest>,
    skip_down: bool,
    timeout: Duration,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = MemberReply> + Send>> {
    Box::pin(async move {
        let turn = m.approval_turn.clone().lock_owned().await;
        if skip_down && m.is_down() {
            let detail = "marked down: not asked (caught up when it is back)".to_string();
            return (m.clone(), Err(LinkError::Unreachable { name: m.name().to_string(), detail }), Some(turn));
        }
        // A cosigner that missed earlier requests judges them first, in the order they
        // were sent (across channels: the payment index is node-wide); then this one.
        let reply = match m.missed.catch_up(&m.link, timeout).await {
            Ok(_) => m.link.call(&req, timeout).await,
            Err(e) => Err(e),
        };
        let turn = reply.is_err().then_some(turn);
        (m, reply, turn)
    })
}

/// Whether `need` approvals over one state digest are in, a key holder's among them (the
/// key holder signs only with its own approval).
fn enough_to_sign(replies: &[MemberReply], need: usize) -> bool {
    let mut by_state: BTreeMap<StateDigest, (usize, bool)> = BTreeMap::new();
    for (m, reply, _) in replies {
        if let Ok(CosignerResponse::Approved { approval, .. }) = reply {
            let e = by_state.entry(approval.state).or_default();
            e.0 += 1;
            e.1 |= m.key_holder;
        }
    }
    by_state.values().any(|(count, key_holder)| *count >= need && *key_holder)
}

/// Runs one approval round and the key holder's signature.
pub async fn approve_and_sign(
    quorum: &Quorum,
    subject: ApprovalSubject,
) -> Result<(KeyHolderOutput, SignReport), ApprovalFailure> {
    let timeout = quorum.config.request_timeout;
    // A taproot holder commitment's secret needs every cosigner's record of its revocation
    // (the key holders check the same): any t of them hold its force-close escrow until then.
    let need = match subject {
        ApprovalSubject::TaprootSecret { .. } => quorum.members.len(),
        _ => quorum.threshold(),
    };
    let holder_keys = setup_attestation(quorum, &subject).await;
    let req = Arc::new(CosignerRequest::Approve { subject: subject.clone(), holder_keys });
    let members = quorum.preference_order();
    let keep = crate::catch_up::must_catch_up(&subject);
    // A cosigner marked down is not waited for while enough others are up (the background
    // probe marks it up again); what it misses meanwhile is replayed to it when it is back.
    let skip_down = members.iter().filter(|m| !m.is_down()).count() >= need;
    let mut pending: FuturesUnordered<_> =
        members.iter().map(|m| ask(m.clone(), req.clone(), skip_down, timeout)).collect();
    // First answers: once `need` approvals over one state digest (a key holder's among
    // them) are in, the others get as long again as those took (at least
    // `MIN_STRAGGLER_GRACE`), then are collected in the background.
    let started = tokio::time::Instant::now();
    let mut grace: Option<tokio::time::Instant> = None;
    let mut replies = Vec::with_capacity(members.len());
    loop {
        let next = match grace {
            None => pending.next().await,
            Some(deadline) => match tokio::time::timeout_at(deadline, pending.next()).await {
                Ok(next) => next,
                Err(_) => break,
            },
        };
        let Some(reply) = next else { break };
        replies.push(reply);
        if grace.is_none() && enough_to_sign(&replies, need) {
            grace = Some(tokio::time::Instant::now() + started.elapsed().max(MIN_STRAGGLER_GRACE));
        }
    }
    let mut report = SignReport { attempts: 1, ..Default::default() };
    let mut refusals = Vec::new();
    let mut by_state: BTreeMap<StateDigest, Vec<(std::sync::Arc<Member>, Approval)>> = BTreeMap::new();
    // Members the request did not reach (down, or the link failed), each still holding
    // its turn until it is known whether it missed a request the quorum applied.
    let mut missed: Vec<(std::sync::Arc<Member>, tokio::sync::OwnedMutexGuard<()>)> = Vec::new();
    for (m, reply, turn) in replies {
        if let (Err(_), Some(turn)) = (&reply, turn) {
            missed.push((m.clone(), turn));
        }
        match reply {
            Ok(CosignerResponse::Approved { approval, warnings }) => {
                if !warnings.is_empty() {
                    report.warnings.push(CosignerRefusal { cosigner: m.name().to_string(), violations: warnings });
                }
                m.mark_up();
                by_state.entry(approval.state).or_default().push((m, approval));
            }
            Ok(CosignerResponse::Refused { violations }) => {
                refusals.push(CosignerRefusal { cosigner: m.name().to_string(), violations });
            }
            Ok(CosignerResponse::Error { kind, detail }) => {
                blame(&mut report, &m, BlameReason::ErrorReply, format!("{kind:?}: {detail}"))
            }
            Ok(other) => blame(&mut report, &m, BlameReason::ErrorReply, format!("unexpected reply {other:?}")),
            Err(e) => {
                m.mark_down();
                blame(&mut report, &m, BlameReason::Unreachable, e.to_string());
            }
        }
    }
    // The largest group of agreeing digests is the quorum's state; the rest diverged.
    let agreed = by_state.iter().max_by_key(|(s, v)| (v.len(), s.version)).map(|(s, _)| *s);
    let mut approvals = Vec::new();
    for (state, group) in by_state {
        for (m, a) in group {
            if Some(state) == agreed {
                approvals.push(a);
                report.signers.push(m.name().to_string());
            } else {
                tracing::warn!(cosigner = %m.name(), version = state.version, "cosigner's channel state diverges from the quorum's");
                blame(
                    &mut report,
                    &m,
                    BlameReason::StateDiverged,
                    format!(
                        "state v{} {} vs quorum's {:?}",
                        state.version,
                        hex::encode(&state.digest[..8]),
                        agreed.map(|s| s.version)
                    ),
                );
            }
        }
    }
    // The quorum applied it: whoever it did not reach judges it when back (requests the
    // quorum refused are not kept: nobody applied them). Then their turns are released.
    let applied = keep && approvals.len() >= need;
    for (m, turn) in missed {
        if applied {
            m.missed.remember((*req).clone());
        }
        drop(turn);
    }
    if !pending.is_empty() {
        // Stragglers: their replies are awaited in the background; one that fails is down,
        // and keeps the request for replay if the quorum applied it (before its turn goes).
        let req = req.clone();
        tokio::spawn(async move {
            while let Some((m, reply, turn)) = pending.next().await {
                match reply {
                    Ok(CosignerResponse::Approved { .. }) => m.mark_up(),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::info!(cosigner = %m.name(), error = %e, "a straggler's approval failed");
                        m.mark_down();
                        if applied {
                            m.missed.remember((*req).clone());
                        }
                    }
                }
                drop(turn);
            }
        });
    }
    if approvals.len() < need {
        return Err(if refusals.is_empty() {
            ApprovalFailure::Unavailable {
                detail: format!("{} agreeing approvals, {need} needed", approvals.len()),
                report,
            }
        } else {
            ApprovalFailure::Refused { refusals, report }
        });
    }
    let sign = CosignerRequest::KeyHolderSign { subject, approvals };
    // Failover: a key holder this request could not reach (marked down in the round
    // above) or one already down goes last, so the next one signs at once.
    let mut holders: Vec<_> = members.iter().filter(|m| m.key_holder).collect();
    holders.sort_by_key(|m| m.is_down() || m.link.connection_lost());
    if holders.is_empty() {
        return Err(ApprovalFailure::Unavailable { detail: "no key holder among the members".into(), report });
    }
    for m in holders {
        match m.link.call(&sign, timeout).await {
            Ok(CosignerResponse::KeyHolderSigned(output)) => return Ok((output, report)),
            Ok(CosignerResponse::Refused { violations }) => {
                refusals.push(CosignerRefusal { cosigner: m.name().to_string(), violations });
            }
            Ok(CosignerResponse::Error { kind, detail }) => {
                blame(&mut report, m, BlameReason::ErrorReply, format!("{kind:?}: {detail}"))
            }
            Ok(other) => blame(&mut report, m, BlameReason::ErrorReply, format!("unexpected reply {other:?}")),
            Err(e) => {
                m.mark_down();
                blame(&mut report, m, BlameReason::Unreachable, e.to_string())
            }
        }
    }
    Err(if refusals.is_empty() {
        ApprovalFailure::Unavailable { detail: "no key holder signed".into(), report }
    } else {
        ApprovalFailure::Refused { refusals, report }
    })
}

/// Asks the key holders (in order) a question that needs no approval (public keys, points).
pub async fn ask_key_holder(quorum: &Quorum, req: CosignerRequest) -> Result<CosignerResponse, String> {
    let timeout = quorum.config.request_timeout;
    let mut errors = Vec::new();
    // Up key holders first (rotating), down ones last: no wait on a down one.
    for m in quorum.preference_order().iter().filter(|m| m.key_holder) {
        match m.link.call(&req, timeout).await {
            Ok(CosignerResponse::Error { kind, detail }) => errors.push(format!("{}: {kind:?}: {detail}", m.name())),
            Ok(r) => return Ok(r),
            Err(e) => {
                m.mark_down();
                errors.push(format!("{}: {e}", m.name()))
            }
        }
    }
    Err(if errors.is_empty() { "no key holder among the members".into() } else { errors.join("; ") })
}
