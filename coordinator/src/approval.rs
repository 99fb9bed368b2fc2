//! Multi-ECDSA approval, coordinator side: asks every member to validate a channel or
//! node-key request, groups the approvals by the state digest they carry, reports the
//! cosigners whose digest differs from the largest group (rolled back, lagging or forked:
//! never counted), and hands the agreeing approvals to a key holder to sign.
//!
//! Must never: forward approvals over different digests as one quorum, or hide a refusal
//! or a divergence from the report.

use std::collections::BTreeMap;

use std::sync::atomic::Ordering;
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

/// The least a round waits for the other replies after its first `need` agreeing
/// approvals (it waits as long again as those took).
pub const MIN_STRAGGLER_GRACE: Duration = Duration::from_millis(20);

/// Replays what `m` missed in the background (one replay at a time per member).
fn spawn_catch_up(m: Arc<Member>, timeout: Duration) {
    tokio::spawn(async move {
        if let Err(e) = m.missed.catch_up(&m.link, timeout).await {
            tracing::info!(cosigner = %m.name(), error = %e, "background catch-up stopped");
        }
    });
}

/// One member's reply to an approval request.
type MemberReply = (Arc<Member>, Result<CosignerResponse, LinkError>);

fn ask(
    m: Arc<Member>,
    req: Arc<CosignerRequest>,
    skip_down: bool,
    spare: bool,
    timeout: Duration,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = MemberReply> + Send>> {
    Box::pin(async move {
        if skip_down && m.is_down() {
            let detail = "marked down: not asked (caught up when it is back)".to_string();
            return (m.clone(), Err(LinkError::Unreachable { name: m.name().to_string(), detail }));
        }
        if skip_down && spare && !m.key_holder && (m.missed.pending() > 0 || m.unsettled.load(Ordering::SeqCst) > 0) {
            // Behind: its replay runs in the background (one at a time per member) and
            // this request joins the queue if the quorum applies it, so no round waits
            // for a catch-up and no replay is cut short.
            spawn_catch_up(m.clone(), timeout);
            let detail = format!("catching up ({} missed requests queued)", m.missed.pending());
            return (m.clone(), Err(LinkError::Slow { name: m.name().to_string(), detail }));
        }
        // A cosigner that missed earlier requests judges them first, in the order they
        // were sent (across channels: the payment index is node-wide); then this one.
        let reply = match m.missed.catch_up(&m.link, timeout).await {
            Ok(_) => m.link.call(&req, timeout).await,
            Err(e) => Err(e),
        };
        (m, reply)
    })
}

/// Whether `need` approvals over one state digest are in, a key holder's among them (the
/// key holder signs only with its own approval).
fn enough_to_sign(replies: &[MemberReply], need: usize) -> bool {
    let mut by_state: BTreeMap<StateDigest, (usize, bool)> = BTreeMap::new();
    for (m, reply) in replies {
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
    // A member that is behind is left to its background replay only when the request is
    // kept for it and enough others are up and not behind (a key holder among them);
    // otherwise it catches up inline first, as the round needs it.
    let fresh = |m: &&Arc<Member>| !m.is_down() && m.missed.pending() == 0 && m.unsettled.load(Ordering::SeqCst) == 0;
    let spare =
        keep && members.iter().filter(fresh).count() >= need && members.iter().filter(fresh).any(|m| m.key_holder);
    let mut pending: FuturesUnordered<_> =
        members.iter().map(|m| ask(m.clone(), req.clone(), skip_down, spare, timeout)).collect();
    // First answers: once `need` approvals over one state digest (a key holder's among
    // them) are in, the others get as long again as those took (at least
    // `MIN_STRAGGLER_GRACE`); then the round goes on without them.
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
        if reply.1.is_err() {
            // Until this round decided, no other round sends it a live request.
            reply.0.unsettled.fetch_add(1, Ordering::SeqCst);
        }
        replies.push(reply);
        if grace.is_none() && enough_to_sign(&replies, need) {
            grace = Some(tokio::time::Instant::now() + started.elapsed().max(MIN_STRAGGLER_GRACE));
        }
    }
    // Members still silent after the grace count as having missed the request (kept for
    // replay below; if it still lands, the replay is a retry). Their replies are awaited
    // in the background only to mark them down or up.
    if !pending.is_empty() {
        tokio::spawn(async move {
            while let Some((m, reply)) = pending.next().await {
                match reply {
                    Ok(_) => m.mark_up(),
                    Err(LinkError::Slow { .. }) => {}
                    Err(_) => m.mark_down(),
                }
            }
        });
    }
    let answered: Vec<Fingerprint> = replies.iter().map(|(m, _)| m.link.fingerprint()).collect();
    for m in members.iter().filter(|m| !answered.contains(&m.link.fingerprint())) {
        let detail = format!("slower than the round's grace ({} ms)", started.elapsed().as_millis());
        m.unsettled.fetch_add(1, Ordering::SeqCst);
        replies.push((m.clone(), Err(LinkError::Slow { name: m.name().to_string(), detail })));
    }
    let mut report = SignReport { attempts: 1, ..Default::default() };
    let mut refusals = Vec::new();
    let mut by_state: BTreeMap<StateDigest, Vec<(std::sync::Arc<Member>, Approval)>> = BTreeMap::new();
    // Members the request did not reach (down, the link failed, or slower than the grace).
    let mut missed: Vec<std::sync::Arc<Member>> = Vec::new();
    for (m, reply) in replies {
        if reply.is_err() {
            missed.push(m.clone());
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
            // Slow, not down: it is asked again next time (after its replay).
            Err(e @ LinkError::Slow { .. }) => blame(&mut report, &m, BlameReason::Unreachable, e.to_string()),
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
    // quorum refused are not kept: nobody applied them).
    let applied = keep && approvals.len() >= need;
    for m in &missed {
        if applied {
            m.missed.remember((*req).clone());
        }
        m.unsettled.fetch_sub(1, Ordering::SeqCst);
        // A member that is up replays what it missed now, in the background.
        if !m.is_down() && m.missed.pending() > 0 {
            spawn_catch_up(m.clone(), timeout);
        }
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
    // Failover: key holders whose approval is in go first; one this request could not
    // reach (or that was not waited for) or one already down goes last, so the next one
    // signs at once.
    let approved_by: Vec<String> = report.signers.clone();
    let mut holders: Vec<_> = members.iter().filter(|m| m.key_holder).collect();
    holders.sort_by_key(|m| (!approved_by.iter().any(|n| n == m.name()), m.is_down() || m.link.connection_lost()));
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
