//! Taproot channels, coordinator side: collects every cosigner's signed MuSig2 leaf,
//! relays setups, holder-commitment validations and revocations to all cosigners (a holder
//! revocation then gets its per-commitment secret from a key holder on approvals), runs
//! the NestedMuSig2 round for the quorum's funding-key partial signature — a nonce set
//! (one nonce per cosigner, from the channel's pool, fetched 8 at a time, reserved earlier
//! by the node, or a holder commitment's verification nonce), then one signing request to
//! all, each leaf's partial signature verified and summed — and FROST items (HTLC
//! second-level transactions, sweeps), whose messages and keys the cosigners derive.
//!
//! The funding key is n-of-n: every cosigner must be up and must approve. The
//! coordinator holds no secret and only public nonces (in memory; each cosigner keeps the
//! secret and lets it sign once); a cosigner that refuses or whose partial signature does
//! not verify is named.
//!
//! Must never: return a partial signature it did not verify, or run two rounds of one
//! channel at once.

use futures::future::join_all;
use qls_protocol::quic::{fingerprint, verify_identity_sig};
use qls_protocol::*;
use qls_signer_core::musig2::nested::{nested_partial_sig_verify, psig_sum, NestedSessionContext};
use qls_signer_core::musig2::PubNonce;
use qls_signer_core::taproot_channel as tc;

use crate::quorum::{Member, Quorum};

/// Why a taproot request got no result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaprootFailure {
    Refused { refusals: Vec<CosignerRefusal>, report: SignReport },
    Unavailable { detail: String, report: SignReport },
}

fn blame(report: &mut SignReport, m: &Member, reason: BlameReason, detail: String) {
    report.blamed.push(Blame { cosigner: m.name().to_string(), reason, detail });
}

/// Sends `req` to every member; the replies in member order, failures already blamed.
async fn all(
    quorum: &Quorum,
    req: &CosignerRequest,
    report: &mut SignReport,
) -> Vec<(std::sync::Arc<Member>, Option<CosignerResponse>)> {
    let timeout = quorum.config.request_timeout;
    let replies =
        join_all(quorum.members.iter().map(|m| async move { (m.clone(), m.link.call(req, timeout).await) })).await;
    replies
        .into_iter()
        .map(|(m, r)| match r {
            Ok(CosignerResponse::Error { kind, detail }) => {
                blame(report, &m, BlameReason::ErrorReply, format!("{kind:?}: {detail}"));
                (m, None)
            }
            Ok(reply) => (m, Some(reply)),
            Err(e) => {
                blame(report, &m, BlameReason::Unreachable, e.to_string());
                (m, None)
            }
        })
        .collect()
}

/// Every cosigner's signed leaf, checked against the pinned fingerprints (cached).
pub async fn leaves(quorum: &Quorum) -> Result<Vec<MusigLeaf>, TaprootFailure> {
    if let Some(l) = quorum.musig_leaves.get() {
        return Ok(l.clone());
    }
    let mut report = SignReport { attempts: 1, ..Default::default() };
    let mut out = Vec::new();
    for (m, reply) in all(quorum, &CosignerRequest::MusigLeaf, &mut report).await {
        match reply {
            Some(CosignerResponse::MusigLeaf(l)) => {
                let leaf: Option<[u8; 33]> = l.leaf.as_slice().try_into().ok();
                let ok = l.cosigner == m.link.fingerprint()
                    && fingerprint(&l.cert_der) == l.cosigner
                    && leaf.is_some_and(|k| {
                        verify_identity_sig(&l.cert_der, &tc::leaf_statement(&k), &l.identity_sig).is_ok()
                    });
                if !ok {
                    blame(&mut report, &m, BlameReason::ErrorReply, "leaf not signed by the pinned cosigner".into());
                    continue;
                }
                out.push(l);
            }
            Some(other) => blame(&mut report, &m, BlameReason::ErrorReply, format!("unexpected reply {other:?}")),
            None => {}
        }
    }
    if out.len() != quorum.members.len() {
        return Err(TaprootFailure::Unavailable {
            detail: format!("{} of {} cosigners gave their MuSig2 leaf", out.len(), quorum.members.len()),
            report,
        });
    }
    out.sort_by_key(|l| l.cosigner);
    let _ = quorum.musig_leaves.set(out.clone());
    Ok(out)
}

fn base_keys(leaves: &[MusigLeaf]) -> Vec<[u8; 33]> {
    leaves.iter().filter_map(|l| l.leaf.as_slice().try_into().ok()).collect()
}

/// Our keys of `channel`, derived as every cosigner derives them.
pub async fn channel_keys(quorum: &Quorum, channel: &ChannelKeysId) -> Result<TaprootHolderKeys, TaprootFailure> {
    let leaves = leaves(quorum).await?;
    let secp = bitcoin::secp256k1::Secp256k1::verification_only();
    tc::holder_keys(&secp, &quorum.key.public_key_package, &base_keys(&leaves), channel).map_err(|e| {
        TaprootFailure::Unavailable {
            detail: format!("cannot derive channel keys: {e}"),
            report: SignReport::default(),
        }
    })
}

/// The quorum's result for one taproot request.
pub enum TaprootOutcome {
    Applied(SignReport),
    /// A holder commitment revoked by every cosigner, and its per-commitment secret from a
    /// key holder (on the approvals of the cosigners that recorded the revocation).
    Secret {
        secret: [u8; 32],
        report: SignReport,
    },
    /// External nonce (66 bytes) and the node's partial signature.
    PartialSig {
        pubnonce: [u8; 66],
        psig: [u8; 32],
        report: SignReport,
    },
}

/// Runs `request` on every cosigner (n-of-n).
pub async fn run(
    quorum: &Quorum,
    channel: ChannelKeysId,
    request: TaprootRequest,
    counterparty_nonce: Option<Vec<u8>>,
    reserved: Vec<LeafNonce>,
) -> Result<TaprootOutcome, TaprootFailure> {
    let _turn = quorum.lock_channel(&channel).await;
    let mut report = SignReport { attempts: 1, ..Default::default() };
    let leaves = leaves(quorum).await?;
    let first = match &request {
        TaprootRequest::Setup(setup) => {
            CosignerRequest::TaprootSetup { channel, setup: setup.clone(), leaves: leaves.clone() }
        }
        TaprootRequest::CounterpartyRevocation { .. }
        | TaprootRequest::FundingConfirmed(_)
        | TaprootRequest::FundingSpent(_)
        | TaprootRequest::ValidateHolderCommitment { .. }
        | TaprootRequest::RevokeHolderCommitment { .. } => {
            CosignerRequest::TaprootApply { channel, request: request.clone() }
        }
        TaprootRequest::SignHolderCommitment { commitment_number } => {
            let commitment_number = *commitment_number;
            // Force close: the verification session the counterparty signed in (the node
            // hands back the leaf nonces and the counterparty's nonce; each cosigner
            // checks them against its stored holder commitment).
            let Some(theirs) = counterparty_nonce else {
                return Err(TaprootFailure::Unavailable {
                    detail: "a holder commitment is completed with the counterparty's stored nonce".into(),
                    report,
                });
            };
            let leaf_nonces = check_reserved(quorum, reserved, &report).map_err(|f| *f)?;
            // Any t cosigners complete it from their escrow shares; without an escrow
            // (or fewer than t shares), every cosigner signs with its verification nonce.
            match release(quorum, channel, commitment_number, &leaves, &leaf_nonces, &theirs, &mut report).await {
                Ok(outcome) => return Ok(outcome),
                Err(TaprootFailure::Refused { refusals, report }) => {
                    return Err(TaprootFailure::Refused { refusals, report })
                }
                Err(TaprootFailure::Unavailable { detail, .. }) => {
                    tracing::info!(%detail, "force-close escrow incomplete: every cosigner signs");
                }
            }
            return sign(quorum, channel, request, theirs, &leaves, leaf_nonces, report).await;
        }
        TaprootRequest::SignCounterpartyCommitment { .. } | TaprootRequest::SignClosing { .. } => {
            let Some(theirs) = counterparty_nonce else {
                return Err(TaprootFailure::Unavailable {
                    detail: "a signing request needs the counterparty's nonce".into(),
                    report,
                });
            };
            let leaf_nonces = if reserved.is_empty() {
                pooled_nonces(quorum, channel, &mut report).await?
            } else {
                check_reserved(quorum, reserved, &report).map_err(|f| *f)?
            };
            let outcome = sign(quorum, channel, request, theirs, &leaves, leaf_nonces, report).await;
            if outcome.is_err() {
                // A pooled nonce may have been evicted by its cosigner: start afresh.
                quorum.taproot_pools.lock().unwrap_or_else(|p| p.into_inner()).remove(&channel);
            }
            return outcome;
        }
    };
    if let TaprootRequest::RevokeHolderCommitment { commitment_number } = request {
        // Each cosigner revokes only once it keeps its escrow share of the next commitment;
        // a validation whose escrow was cut short is completed here (deals are repeatable).
        let next = commitment_number.saturating_add(1);
        let escrowed = quorum.taproot_escrowed.lock().unwrap_or_else(|p| p.into_inner()).get(&channel) == Some(&next);
        if !escrowed {
            if let Err(e) = escrow(quorum, channel, next, &mut report).await {
                tracing::info!(error = ?e, "escrow of the next holder commitment before a revocation");
            }
        }
    }
    let mut refusals = Vec::new();
    let mut applied = 0;
    for (m, reply) in all(quorum, &first, &mut report).await {
        match reply {
            Some(CosignerResponse::TaprootApplied { warnings }) => {
                applied += 1;
                if !warnings.is_empty() {
                    report.warnings.push(CosignerRefusal { cosigner: m.name().into(), violations: warnings });
                }
            }
            Some(CosignerResponse::Refused { violations }) => {
                refusals.push(CosignerRefusal { cosigner: m.name().into(), violations })
            }
            Some(other) => blame(&mut report, &m, BlameReason::ErrorReply, format!("unexpected reply {other:?}")),
            None => {}
        }
    }
    match (applied == quorum.members.len(), refusals.is_empty()) {
        (true, _) => {
            match request {
                TaprootRequest::RevokeHolderCommitment { commitment_number } => {
                    return release_secret(quorum, channel, commitment_number, report).await;
                }
                TaprootRequest::ValidateHolderCommitment { commitment, .. } => {
                    // Applied by all n whatever the escrow does: an incomplete escrow is
                    // reported and completed before the next revocation (which every
                    // cosigner refuses until it keeps its share).
                    if let Err(e) = escrow(quorum, channel, commitment.commitment_number, &mut report).await {
                        tracing::warn!(error = ?e, "force-close escrow incomplete after a validation");
                    }
                }
                _ => {}
            }
            Ok(TaprootOutcome::Applied(report))
        }
        (false, false) => Err(TaprootFailure::Refused { refusals, report }),
        (false, true) => Err(TaprootFailure::Unavailable {
            detail: format!("{applied} of {} cosigners applied it", quorum.members.len()),
            report,
        }),
    }
}

/// Escrows holder commitment `n`'s force close: every cosigner deals its partial signature
/// (shares sealed to each cosigner), then every cosigner opens, checks and keeps its shares.
/// Needs all n; repeatable (a cosigner deals the same again).
async fn escrow(
    quorum: &Quorum,
    channel: ChannelKeysId,
    n: u64,
    report: &mut SignReport,
) -> Result<(), TaprootFailure> {
    let count = quorum.members.len();
    let mut refusals = Vec::new();
    let mut deals = Vec::with_capacity(count);
    let deal = CosignerRequest::TaprootEscrowDeal { channel, commitment_number: n };
    for (m, reply) in all(quorum, &deal, report).await {
        match reply {
            Some(CosignerResponse::TaprootEscrowDealt(d))
                if d.dealer == m.link.fingerprint() && d.commitment_number == n =>
            {
                deals.push(d)
            }
            Some(CosignerResponse::Refused { violations }) => {
                refusals.push(CosignerRefusal { cosigner: m.name().into(), violations })
            }
            Some(other) => blame(report, &m, BlameReason::ErrorReply, format!("unexpected deal {other:?}")),
            None => {}
        }
    }
    let incomplete = |what: String, refusals: Vec<CosignerRefusal>, report: &SignReport| {
        if refusals.is_empty() {
            TaprootFailure::Unavailable {
                detail: format!("force-close escrow of holder commitment {n}: {what}"),
                report: report.clone(),
            }
        } else {
            TaprootFailure::Refused { refusals, report: report.clone() }
        }
    };
    if deals.len() != count {
        return Err(incomplete(format!("{} of {count} cosigners dealt", deals.len()), refusals, report));
    }
    let keep = CosignerRequest::TaprootEscrowKeep { channel, deals };
    let mut kept = 0;
    for (m, reply) in all(quorum, &keep, report).await {
        match reply {
            Some(CosignerResponse::TaprootApplied { .. }) => kept += 1,
            Some(CosignerResponse::Refused { violations }) => {
                refusals.push(CosignerRefusal { cosigner: m.name().into(), violations })
            }
            Some(other) => blame(report, &m, BlameReason::ErrorReply, format!("unexpected reply {other:?}")),
            None => {}
        }
    }
    if kept != count {
        return Err(incomplete(format!("{kept} of {count} cosigners kept their shares"), refusals, report));
    }
    quorum.taproot_escrowed.lock().unwrap_or_else(|p| p.into_inner()).insert(channel, n);
    Ok(())
}

/// What a cosigner derived for a force close: the message and the counterparty's funding key.
type ForceCloseFacts = ([u8; 32], Vec<u8>);

/// One cosigner's released escrow share.
struct ReleasedShare {
    name: String,
    cosigner: Fingerprint,
    share: [u8; 32],
    facts: ForceCloseFacts,
}

/// Force close with t of n: every reachable cosigner judges the force close and returns
/// its escrow share; any t shares that agree on the message and channel are combined,
/// and the result is returned only once it verifies as the quorum's partial signature in
/// the verification session (`leaf_nonces`, the counterparty's nonce `theirs`).
#[allow(clippy::too_many_arguments)]
async fn release(
    quorum: &Quorum,
    channel: ChannelKeysId,
    n: u64,
    leaves: &[MusigLeaf],
    leaf_nonces: &[LeafNonce],
    their_nonce: &[u8],
    report: &mut SignReport,
) -> Result<TaprootOutcome, TaprootFailure> {
    let unavailable = |detail: String, report: &SignReport| TaprootFailure::Unavailable {
        detail: format!("force close of holder commitment {n} from escrow: {detail}"),
        report: report.clone(),
    };
    let req = CosignerRequest::TaprootEscrowRelease { channel, commitment_number: n };
    let mut refusals = Vec::new();
    let mut shares: Vec<ReleasedShare> = Vec::new();
    for (m, reply) in all(quorum, &req, report).await {
        match reply {
            Some(CosignerResponse::TaprootEscrowShare { share, msg, counterparty_funding }) => {
                shares.push(ReleasedShare {
                    name: m.name().to_string(),
                    cosigner: m.link.fingerprint(),
                    share,
                    facts: (msg, counterparty_funding),
                })
            }
            Some(CosignerResponse::Refused { violations }) => {
                refusals.push(CosignerRefusal { cosigner: m.name().into(), violations })
            }
            Some(other) => blame(report, &m, BlameReason::ErrorReply, format!("unexpected reply {other:?}")),
            None => {}
        }
    }
    let t = quorum.threshold();
    // The facts most shares agree on; cosigners that derived others are named.
    let mut facts: Vec<(ForceCloseFacts, usize)> = Vec::new();
    for ReleasedShare { facts: f, .. } in &shares {
        match facts.iter_mut().find(|(g, _)| g == f) {
            Some((_, c)) => *c += 1,
            None => facts.push((f.clone(), 1)),
        }
    }
    let Some(((msg, theirs), _)) = facts.into_iter().filter(|(_, c)| *c >= t).max_by_key(|(_, c)| *c) else {
        if !refusals.is_empty() && shares.len() < t {
            return Err(TaprootFailure::Refused { refusals, report: report.clone() });
        }
        return Err(unavailable(format!("{} shares agree, {t} needed", shares.len()), report));
    };
    let agreeing: Vec<_> = shares.iter().filter(|r| r.facts.0 == msg && r.facts.1 == theirs).collect();
    let secp = bitcoin::secp256k1::Secp256k1::verification_only();
    let (node_key, _) = tc::funding_node_key(&secp, &base_keys(leaves), &channel)
        .map_err(|e| unavailable(format!("funding key: {e}"), report))?;
    let external = external_nonce(leaves, &channel, leaf_nonces).map_err(|e| unavailable(e, report))?;
    let (Ok(theirs), Ok(their_nonce)) = (<[u8; 33]>::try_from(theirs.as_slice()), <[u8; 66]>::try_from(their_nonce))
    else {
        return Err(unavailable("malformed counterparty key or nonce".into(), report));
    };
    // Every t-subset in turn (a wrong share spoils only the subsets holding it).
    for subset in subsets(agreeing.len(), t) {
        let picked: Vec<(Fingerprint, [u8; 32])> =
            subset.iter().map(|&i| (agreeing[i].cosigner, agreeing[i].share)).collect();
        let Ok(psig) = tc::escrow::combine(&picked, t as u16, n) else { continue };
        if tc::escrow::quorum_psig_valid(&psig, &node_key, &external, &theirs, &their_nonce, &msg) {
            report.signers = subset.iter().map(|&i| agreeing[i].name.clone()).collect();
            return Ok(TaprootOutcome::PartialSig { pubnonce: external, psig, report: report.clone() });
        }
    }
    for r in &agreeing {
        report.blamed.push(Blame {
            cosigner: r.name.clone(),
            reason: BlameReason::InvalidShare,
            detail: "no t escrow shares including it combine to a valid partial signature".into(),
        });
    }
    Err(unavailable("no t shares combine to a valid partial signature".into(), report))
}

/// Every `k`-element subset of `0..n`, in lexicographic order (n ≤ MAX_COSIGNERS, small k).
fn subsets(n: usize, k: usize) -> Vec<Vec<usize>> {
    fn go(start: usize, n: usize, k: usize, cur: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
        if cur.len() == k {
            out.push(cur.clone());
            return;
        }
        for i in start..n {
            // Bounded: a quorum of at most 32 with a few mismatching shares.
            if out.len() >= 1024 {
                return;
            }
            cur.push(i);
            go(i + 1, n, k, cur, out);
            cur.pop();
        }
    }
    let mut out = Vec::new();
    if k > 0 && k <= n {
        go(0, n, k, &mut Vec::new(), &mut out);
    }
    out
}

/// The secret of holder commitment `n`, now revoked by every cosigner, from a key holder.
async fn release_secret(
    quorum: &Quorum,
    channel: ChannelKeysId,
    n: u64,
    mut report: SignReport,
) -> Result<TaprootOutcome, TaprootFailure> {
    let subject = ApprovalSubject::TaprootSecret { channel, commitment_number: n };
    match crate::approval::approve_and_sign(quorum, subject).await {
        Ok((KeyHolderOutput::Secret(secret), r)) => {
            report.blamed.extend(r.blamed);
            Ok(TaprootOutcome::Secret { secret, report })
        }
        Ok((other, r)) => {
            Err(TaprootFailure::Unavailable { detail: format!("key holder answered {other:?}"), report: r })
        }
        Err(crate::approval::ApprovalFailure::Refused { refusals, report }) => {
            Err(TaprootFailure::Refused { refusals, report })
        }
        Err(crate::approval::ApprovalFailure::Unavailable { detail, report }) => {
            Err(TaprootFailure::Unavailable { detail, report })
        }
    }
}

/// The quorum's verification nonce for holder commitment `n` (`next_local_nonce`): each
/// cosigner makes (once) and keeps its own; the external nonce and the leaf nonces.
pub async fn verification_nonce(
    quorum: &Quorum,
    channel: ChannelKeysId,
    n: u64,
) -> Result<([u8; 66], Vec<LeafNonce>), TaprootFailure> {
    let _turn = quorum.lock_channel(&channel).await;
    let mut report = SignReport { attempts: 1, ..Default::default() };
    let leaves = leaves(quorum).await?;
    let req = CosignerRequest::TaprootVerificationNonce { channel, commitment_number: n };
    let mut leaf_nonces = Vec::new();
    for (m, reply) in all(quorum, &req, &mut report).await {
        match reply {
            Some(CosignerResponse::TaprootNonces(mut v))
                if v.len() == 1 && v[0].cosigner == m.link.fingerprint() && v[0].pubnonce.len() == 66 =>
            {
                leaf_nonces.push(v.remove(0))
            }
            Some(other) => blame(&mut report, &m, BlameReason::ErrorReply, format!("unexpected nonce reply {other:?}")),
            None => {}
        }
    }
    if leaf_nonces.len() != quorum.members.len() {
        return Err(TaprootFailure::Unavailable {
            detail: format!("{} of {} cosigners gave a verification nonce", leaf_nonces.len(), quorum.members.len()),
            report,
        });
    }
    leaf_nonces.sort_by_key(|l| l.cosigner);
    let external = external_nonce(&leaves, &channel, &leaf_nonces)
        .map_err(|detail| TaprootFailure::Unavailable { detail, report: report.clone() })?;
    Ok((external, leaf_nonces))
}

/// The quorum's external nonce (what the counterparty sees) from its leaf nonces.
fn external_nonce(
    leaves: &[MusigLeaf],
    channel: &ChannelKeysId,
    leaf_nonces: &[LeafNonce],
) -> Result<[u8; 66], String> {
    let secp = bitcoin::secp256k1::Secp256k1::verification_only();
    let (node_key, _) = tc::funding_node_key(&secp, &base_keys(leaves), channel).map_err(|e| e.to_string())?;
    let nonces: Vec<PubNonce> =
        leaf_nonces.iter().filter_map(|l| <[u8; 66]>::try_from(l.pubnonce.as_slice()).ok().map(PubNonce)).collect();
    let internal = qls_signer_core::musig2::nonce_agg(&nonces).map_err(|e| e.to_string())?;
    Ok(qls_signer_core::musig2::nested::nonce_agg_ext(&internal, &node_key).map_err(|e| e.to_string())?.0)
}

/// FROST signatures for a taproot item: every cosigner derives the messages and keys from
/// its own state (the coordinator takes what at least the threshold agree on), then the
/// usual t-of-n signing round(s), at most [`limits::MAX_SIGN_ITEMS`] messages per round.
pub async fn frost(
    quorum: &Quorum,
    channel: ChannelKeysId,
    item: TaprootFrostItem,
) -> Result<(Vec<[u8; 64]>, Vec<[u8; 32]>, SignReport), crate::signing::SignFailure> {
    use crate::signing::SignFailure;
    let _turn = quorum.lock_channel(&channel).await;
    let mut report = SignReport { attempts: 1, ..Default::default() };
    let req = CosignerRequest::TaprootFrostTargets { channel, item: item.clone() };
    let mut refusals = Vec::new();
    let mut proposals: Vec<(Vec<FrostTarget>, usize)> = Vec::new();
    for (m, reply) in all(quorum, &req, &mut report).await {
        match reply {
            Some(CosignerResponse::TaprootFrostTargets(t)) => match proposals.iter_mut().find(|(p, _)| *p == t) {
                Some((_, count)) => *count += 1,
                None => proposals.push((t, 1)),
            },
            Some(CosignerResponse::Refused { violations }) => {
                refusals.push(CosignerRefusal { cosigner: m.name().into(), violations })
            }
            Some(other) => blame(&mut report, &m, BlameReason::ErrorReply, format!("unexpected reply {other:?}")),
            None => {}
        }
    }
    let t = quorum.threshold();
    let Some((targets, _)) = proposals.into_iter().filter(|(_, c)| *c >= t).max_by_key(|(_, c)| *c) else {
        if !refusals.is_empty() {
            return Err(SignFailure::Refused { refusals, report: Box::new(report) });
        }
        return Err(SignFailure::QuorumUnavailable {
            threshold: t,
            detail: "fewer than the threshold of cosigners derived the same messages".into(),
            report: Box::new(report),
        });
    };
    let mut signatures = Vec::with_capacity(targets.len());
    let messages: Vec<[u8; 32]> = targets.iter().map(|t| t.msg).collect();
    if targets.is_empty() {
        return Ok((signatures, messages, report));
    }
    for (k, chunk) in targets.chunks(limits::MAX_SIGN_ITEMS).enumerate() {
        let first = (k * limits::MAX_SIGN_ITEMS) as u32;
        let payload = SignPayload::Taproot { channel, item: item.clone(), first };
        let outcome = match crate::signing::sign_targets(quorum, payload, chunk.to_vec(), Vec::new()).await {
            Ok(o) => o,
            // The earlier chunks' blame and nonce uses stay in the report.
            Err(f) => return Err(f.after(report)),
        };
        signatures.extend(outcome.signatures);
        report.signers = outcome.report.signers.clone();
        report.attempts = report.attempts.max(outcome.report.attempts);
        report.absorb(outcome.report);
    }
    Ok((signatures, messages, report))
}

/// Nonce sets fetched per round trip when a channel's pool is empty.
const POOL_BATCH: u32 = 8;

/// `count` fresh nonce sets: one nonce from every cosigner per set (each cosigner stores
/// its secrets before answering).
async fn fresh_nonce_sets(
    quorum: &Quorum,
    channel: ChannelKeysId,
    count: u32,
    report: &mut SignReport,
) -> Result<Vec<Vec<LeafNonce>>, TaprootFailure> {
    let n = quorum.members.len();
    let mut per_member = Vec::with_capacity(n);
    for (m, reply) in all(quorum, &CosignerRequest::TaprootNonces { channel, count }, report).await {
        match reply {
            Some(CosignerResponse::TaprootNonces(v))
                if v.len() == count as usize && v.iter().all(|l| l.cosigner == m.link.fingerprint()) =>
            {
                per_member.push(v)
            }
            Some(other) => blame(report, &m, BlameReason::ErrorReply, format!("unexpected nonce reply {other:?}")),
            None => {}
        }
    }
    if per_member.len() != n {
        return Err(TaprootFailure::Unavailable {
            detail: format!("{} of {n} cosigners gave nonces", per_member.len()),
            report: report.clone(),
        });
    }
    Ok((0..count as usize).map(|j| per_member.iter().map(|v| v[j].clone()).collect()).collect())
}

/// One fresh nonce set.
async fn fresh_nonces(
    quorum: &Quorum,
    channel: ChannelKeysId,
    report: &mut SignReport,
) -> Result<Vec<LeafNonce>, TaprootFailure> {
    let mut sets = fresh_nonce_sets(quorum, channel, 1, report).await?;
    sets.pop().ok_or_else(|| TaprootFailure::Unavailable { detail: "no nonce set".into(), report: report.clone() })
}

/// A nonce set from the channel's pool, refilled with a batch when empty.
async fn pooled_nonces(
    quorum: &Quorum,
    channel: ChannelKeysId,
    report: &mut SignReport,
) -> Result<Vec<LeafNonce>, TaprootFailure> {
    let pooled = quorum.taproot_pools.lock().unwrap_or_else(|p| p.into_inner()).get_mut(&channel).and_then(Vec::pop);
    if let Some(set) = pooled {
        return Ok(set);
    }
    let mut sets = fresh_nonce_sets(quorum, channel, POOL_BATCH, report).await?;
    let set = sets
        .pop()
        .ok_or_else(|| TaprootFailure::Unavailable { detail: "no nonce set".into(), report: report.clone() })?;
    quorum.taproot_pools.lock().unwrap_or_else(|p| p.into_inner()).insert(channel, sets);
    Ok(set)
}

/// Reserved leaf nonces must be exactly one per member (each cosigner checks its own
/// against its store when it signs).
fn check_reserved(
    quorum: &Quorum,
    reserved: Vec<LeafNonce>,
    report: &SignReport,
) -> Result<Vec<LeafNonce>, Box<TaprootFailure>> {
    let members: std::collections::BTreeSet<Fingerprint> =
        quorum.members.iter().map(|m| m.link.fingerprint()).collect();
    let given: std::collections::BTreeSet<Fingerprint> = reserved.iter().map(|n| n.cosigner).collect();
    if given != members || reserved.len() != members.len() {
        return Err(Box::new(TaprootFailure::Unavailable {
            detail: "reserved nonces must name every cosigner once".into(),
            report: report.clone(),
        }));
    }
    Ok(reserved)
}

/// Reserves the quorum's next nonce for `channel`: the external nonce (66 bytes) and the
/// leaf nonces to hand back when signing.
pub async fn reserve_nonce(
    quorum: &Quorum,
    channel: ChannelKeysId,
) -> Result<([u8; 66], Vec<LeafNonce>), TaprootFailure> {
    let _turn = quorum.lock_channel(&channel).await;
    let mut report = SignReport { attempts: 1, ..Default::default() };
    let leaves = leaves(quorum).await?;
    let leaf_nonces = fresh_nonces(quorum, channel, &mut report).await?;
    let external = external_nonce(&leaves, &channel, &leaf_nonces)
        .map_err(|detail| TaprootFailure::Unavailable { detail, report: report.clone() })?;
    Ok((external, leaf_nonces))
}

#[allow(clippy::too_many_arguments)]
async fn sign(
    quorum: &Quorum,
    channel: ChannelKeysId,
    request: TaprootRequest,
    counterparty_nonce: Vec<u8>,
    leaves: &[MusigLeaf],
    leaf_nonces: Vec<LeafNonce>,
    mut report: SignReport,
) -> Result<TaprootOutcome, TaprootFailure> {
    let n = quorum.members.len();
    let unavailable = |detail: String, report: SignReport| TaprootFailure::Unavailable { detail, report };
    // Every cosigner judges, consumes its nonce and signs.
    let session = NestedSession { leaf_nonces: leaf_nonces.clone(), counterparty_nonce };
    let req = CosignerRequest::TaprootSign { channel, request, session: session.clone() };
    let mut refusals = Vec::new();
    let mut psigs = Vec::with_capacity(n);
    for (m, reply) in all(quorum, &req, &mut report).await {
        match reply {
            Some(CosignerResponse::TaprootPartialSig { psig, msg, counterparty_funding, warnings }) => {
                // Its leaf nonce is consumed, whatever becomes of this session.
                if let Some(l) = leaf_nonces.iter().find(|l| l.cosigner == m.link.fingerprint()) {
                    report.nonce_used(m.name(), l.pubnonce.clone());
                }
                if !warnings.is_empty() {
                    report.warnings.push(CosignerRefusal { cosigner: m.name().into(), violations: warnings });
                }
                psigs.push((m, psig, msg, counterparty_funding));
            }
            Some(CosignerResponse::Refused { violations }) => {
                refusals.push(CosignerRefusal { cosigner: m.name().into(), violations })
            }
            Some(other) => blame(&mut report, &m, BlameReason::ErrorReply, format!("unexpected reply {other:?}")),
            None => {}
        }
    }
    if !refusals.is_empty() {
        return Err(TaprootFailure::Refused { refusals, report });
    }
    if psigs.len() != n {
        return Err(unavailable(format!("{} of {n} cosigners signed", psigs.len()), report));
    }
    // Every cosigner must have derived the same message and counterparty key; then each
    // leaf's partial signature is verified in the session it signed in.
    let secp = bitcoin::secp256k1::Secp256k1::verification_only();
    let (node_key, channel_leaves) = tc::funding_node_key(&secp, &base_keys(leaves), &channel)
        .map_err(|e| unavailable(format!("funding key: {e}"), report.clone()))?;
    let (msg, theirs) = (psigs[0].2, psigs[0].3.clone());
    let ids: Vec<Fingerprint> = leaves.iter().map(|l| l.cosigner).collect();
    let theirs: [u8; 33] = match theirs.as_slice().try_into() {
        Ok(k) => k,
        Err(_) => return Err(unavailable("a cosigner reported a malformed counterparty key".into(), report)),
    };
    let mut leaf_session = None;
    let mut good = Vec::with_capacity(n);
    for (m, psig, m_msg, m_theirs) in &psigs {
        if *m_msg != msg || m_theirs.as_slice() != theirs.as_slice() {
            blame(
                &mut report,
                m,
                BlameReason::StateDiverged,
                "signed another message or channel than the quorum".into(),
            );
            continue;
        }
        let Some(i) = ids.iter().position(|f| *f == m.link.fingerprint()) else { continue };
        let me = channel_leaves[i];
        let ls = match tc::leaf_session(&session, &ids, &channel_leaves, &me, &node_key, &theirs, &channel) {
            Ok(ls) => ls,
            Err(e) => return Err(unavailable(format!("session: {e}"), report)),
        };
        let ctx =
            NestedSessionContext { nonce_path: &ls.nonce_path, pk_tree: &ls.pk_tree, tweaks: &[ls.tweak], msg: &msg };
        let pubnonce = leaf_nonces
            .iter()
            .find(|l| l.cosigner == ids[i])
            .and_then(|l| <[u8; 66]>::try_from(l.pubnonce.as_slice()).ok())
            .map(PubNonce);
        if !pubnonce.is_some_and(|p| nested_partial_sig_verify(psig, &p, &me, &ctx).unwrap_or(false)) {
            blame(&mut report, m, BlameReason::InvalidShare, "NestedMuSig2 partial signature does not verify".into());
            continue;
        }
        good.push((m.name().to_string(), *psig));
        leaf_session = Some(ls);
    }
    let (Some(ls), true) = (leaf_session, good.len() == n) else {
        return Err(unavailable(format!("{} of {n} partial signatures verified", good.len()), report));
    };
    let node_psig = psig_sum(&good.iter().map(|(_, p)| *p).collect::<Vec<_>>())
        .map_err(|e| unavailable(format!("partial signature sum: {e}"), report.clone()))?;
    report.signers = good.into_iter().map(|(name, _)| name).collect();
    Ok(TaprootOutcome::PartialSig { pubnonce: ls.external_nonce.0, psig: node_psig, report })
}
