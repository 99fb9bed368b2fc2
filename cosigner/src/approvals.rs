//! Multi-ECDSA approval, cosigner side. Every cosigner validates a channel or node-key
//! request against its own stored state and policy, applies it (one store transaction)
//! and returns an approval signed by its identity key over the request digest and its
//! state digest. A key holder signs only with at least the approval threshold of valid
//! approvals from distinct pinned cosigners over the same digests, its own included.
//!
//! Must never: sign as key holder for a request this cosigner did not itself approve at
//! its current state, count an approval from an unpinned certificate, or count one
//! cosigner twice.

// Replies are built once per request; the error variant is the reply itself.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, BTreeSet};

use bitcoin::constants::ChainHash;
use bitcoin::hashes::{sha256, Hash};
use qls_protocol::quic::{fingerprint, verify_identity_sig};
use qls_protocol::*;
use qls_signer_core::channel::{
    self, approval_statement, holder_keys_statement, request_digest, ChannelError, ChannelState, HolderKeysCheck,
    NODE_STATE,
};
use qls_signer_core::node_key;
use qls_signer_core::policy::{judge, Verdict};
use qls_signer_core::wallet::wallet_script;

use crate::channel_store::ChannelUpdate;
use crate::handler::{error, store_error, violations, CosignerState, Reply};

/// Payment hashes a request touches (HTLCs of the new commitment and of the one it
/// replaces, whose removed HTLCs change the index too; revealed preimages; approvals).
fn touched_hashes(subject: &ApprovalSubject, current: Option<&ChannelState>) -> Vec<[u8; 32]> {
    let from_info = |c: &CommitmentInfo| c.htlcs.iter().map(|h| h.payment_hash).collect::<Vec<_>>();
    let of_preimages = |p: &[[u8; 32]]| p.iter().map(|p| sha256::Hash::hash(p).to_byte_array()).collect::<Vec<_>>();
    let previous = |holder: bool| {
        let info = match current {
            Some(c) if holder => c.holder.latest.as_ref().map(|h| &h.info),
            Some(c) => c.counterparty.latest.as_ref(),
            None => None,
        };
        info.map(from_info).unwrap_or_default()
    };
    let mut out = match subject {
        ApprovalSubject::Channel { request, .. } => match request {
            ChannelRequest::SignCounterpartyCommitment { commitment, outbound_preimages } => {
                [from_info(commitment), previous(false), of_preimages(outbound_preimages)].concat()
            }
            ChannelRequest::ValidateHolderCommitment { commitment, outbound_preimages, .. } => {
                [from_info(commitment), previous(true), of_preimages(outbound_preimages)].concat()
            }
            // A proof or a spend adds or withdraws the incoming HTLCs of our latest commitment.
            ChannelRequest::FundingConfirmed(_) | ChannelRequest::FundingSpent(_) => previous(true),
            _ => Vec::new(),
        },
        ApprovalSubject::Node(NodeKeyRequest::ApprovePayment { payment_hash, .. }) => vec![*payment_hash],
        ApprovalSubject::Node(_) | ApprovalSubject::TaprootSecret { .. } | ApprovalSubject::Sweep(_) => Vec::new(),
    };
    out.sort();
    out.dedup();
    out
}

fn own_scripts(state: &CosignerState) -> Vec<bitcoin::ScriptBuf> {
    state.store.key_ids().unwrap_or_default().iter().filter_map(|k| wallet_script(k).ok()).collect()
}

/// What judging a subject against the stored state gave.
struct Judged {
    verdict: Verdict,
    /// Digest of this cosigner's state after the request.
    state: StateDigest,
    /// Whether the request changed (or would change) the stored state.
    changed: bool,
    channel_state: Option<ChannelState>,
}

fn channel_error(e: ChannelError) -> CosignerResponse {
    let kind = match e {
        ChannelError::UnknownChannel { .. } => ErrorKind::UnknownKey,
        ChannelError::CorruptState(_) => ErrorKind::Storage,
        _ => ErrorKind::InvalidRequest,
    };
    error(kind, e)
}

/// A taproot holder commitment's secret may be released once this cosigner recorded the
/// commitment as revoked (which needs the next one validated); nothing changes here.
fn judge_taproot_secret(state: &CosignerState, channel: &ChannelKeysId, n: u64) -> Result<Judged, CosignerResponse> {
    let current = state.store.taproot_channel(channel).map_err(store_error)?.ok_or_else(|| {
        error(ErrorKind::UnknownKey, format!("taproot channel {} is not set up", hex::encode(&channel[..8])))
    })?;
    let mut v = Vec::new();
    if !current.holder_is_revoked(n) {
        v.push(qls_signer_core::policy::Violation {
            tag: qls_signer_core::policy::PolicyTag::RevokeBeforeNext,
            detail: format!(
                "taproot holder commitment {n} is not revoked (revoked up to {:?})",
                current.holder_revoked
            ),
        });
    }
    Ok(Judged { verdict: judge(v, &state.config.policy), state: current.digest, changed: false, channel_state: None })
}

/// Judges a heartbeat against this cosigner's chain and, when `persist` and the policy
/// approves, keeps the extended chain.
fn judge_heartbeat(
    state: &CosignerState,
    headers: &[Vec<u8>],
    tip: &[u8; 32],
    persist: bool,
) -> Result<Judged, CosignerResponse> {
    let policy = &state.config.policy;
    let now = state.now_unix();
    state
        .store
        .update_chain(state.config.network, |chain| {
            let before = chain.clone();
            let mut v = Vec::new();
            let max_age = policy.channel.heartbeat_tip_max_age_secs;
            qls_signer_core::chain::judge_heartbeat(&mut v, chain, state.config.network, headers, tip, now, max_age);
            let verdict = judge(v, policy);
            let changed = *chain != before;
            // The headers carry their own proof of work: kept even when the heartbeat is
            // refused (a stale tip is still a longer chain).
            let write = persist && changed;
            (Judged { verdict, state: NODE_STATE, changed, channel_state: None }, write)
        })
        .map_err(store_error)
}

/// This cosigner's chain extended with `headers` (kept when `persist` and they extend it:
/// headers carry their own proof of work, whatever the request they came with).
pub(crate) fn chain_with(
    state: &CosignerState,
    headers: &[Vec<u8>],
    persist: bool,
) -> Result<qls_signer_core::chain::ChainTip, CosignerResponse> {
    let network = state.config.network;
    state
        .store
        .update_chain(network, |chain| {
            let before = chain.clone();
            if let Err(e) = chain.extend(network, headers) {
                tracing::info!(error = %e, "a funding proof's headers do not extend this cosigner's chain");
            }
            let changed = *chain != before;
            (chain.clone(), persist && changed)
        })
        .map_err(store_error)
}

/// The stored states of the channels a batched sweep names.
type SweepStates = BTreeMap<ChannelKeysId, ChannelState>;

/// Judges a batched sweep against this cosigner's state of every channel it names; it
/// changes nothing. Returns the states judged, which the key holder signs from.
fn judge_sweep(state: &CosignerState, sweep: &SweepRequest) -> Result<(Judged, SweepStates), CosignerResponse> {
    let mut states = SweepStates::new();
    for i in &sweep.inputs {
        if let std::collections::btree_map::Entry::Vacant(e) = states.entry(i.channel) {
            if let Some(s) = state.store.channel(&i.channel).map_err(store_error)? {
                e.insert(s);
            }
        }
    }
    let policy = &state.config.policy;
    let scripts = own_scripts(state);
    let ctx = channel::Context {
        policy,
        own_scripts: &scripts,
        secp: &state.secp,
        now: state.now_unix(),
        stored_channels: 0,
        holder_keys: None,
        chain: None,
        network: state.config.network,
    };
    let mut v = Vec::new();
    let state_of =
        |c: &ChannelKeysId| states.get(c).ok_or_else(|| ChannelError::UnknownChannel { channel: hex::encode(&c[..8]) });
    channel::judge_sweep(&mut v, sweep, state_of, &ctx).map_err(channel_error)?;
    let judged = Judged { verdict: judge(v, policy), state: NODE_STATE, changed: false, channel_state: None };
    Ok((judged, states))
}

/// Judges `subject` and, when `persist` and the policy approves, applies it durably.
/// `holder_keys` is a key holder's attestation, for a legacy setup.
fn judge_subject(
    state: &CosignerState,
    subject: &ApprovalSubject,
    holder_keys: Option<&KeysAttestation>,
    persist: bool,
) -> Result<Judged, CosignerResponse> {
    if let ApprovalSubject::Node(NodeKeyRequest::Heartbeat { headers, tip }) = subject {
        return judge_heartbeat(state, headers, tip, persist);
    }
    if let ApprovalSubject::TaprootSecret { channel, commitment_number } = subject {
        return judge_taproot_secret(state, channel, *commitment_number);
    }
    if let ApprovalSubject::Sweep(sweep) = subject {
        return judge_sweep(state, sweep).map(|(judged, _)| judged);
    }
    let digest = request_digest(subject);
    let policy = &state.config.policy;
    let scripts = own_scripts(state);
    let now = state.now_unix();
    let channel = match subject {
        ApprovalSubject::Channel { channel, .. } => Some(channel),
        ApprovalSubject::Node(_) | ApprovalSubject::TaprootSecret { .. } | ApprovalSubject::Sweep(_) => None,
    };
    let chain = match subject {
        ApprovalSubject::Channel {
            request: ChannelRequest::FundingConfirmed(proof) | ChannelRequest::FundingSpent(proof),
            ..
        } => Some(chain_with(state, &proof.headers, persist)?),
        _ => None,
    };
    let outcome = state
        .store
        .update_channel(
            channel,
            |current| touched_hashes(subject, current),
            &policy.channel,
            now,
            |current, index, stored_channels| {
                let keys_check = match subject {
                    ApprovalSubject::Channel { channel, request: ChannelRequest::Setup(setup) } => {
                        Some(holder_keys_check(state, channel, &setup.holder, holder_keys))
                    }
                    _ => None,
                };
                let ctx = channel::Context {
                    policy,
                    own_scripts: &scripts,
                    secp: &state.secp,
                    now,
                    stored_channels,
                    holder_keys: keys_check,
                    chain: chain.as_ref(),
                    network: state.config.network,
                };
                let (violations, next, changed) = match subject {
                    ApprovalSubject::Channel { channel, request } => {
                        if let Some(kh) = state.key_holder.as_ref() {
                            key_holder_checks(kh, channel, request)?;
                        }
                        let applied = channel::apply(channel, current.as_ref(), request, &digest, index, &ctx)
                            .map_err(channel_error)?;
                        (applied.violations, Some(applied.state), applied.changed)
                    }
                    ApprovalSubject::Node(NodeKeyRequest::ApprovePayment {
                        payment_hash,
                        amount_msat,
                        expires_at,
                        invoice,
                        approval,
                    }) => {
                        let mut v = Vec::new();
                        let before = index.get(payment_hash).cloned();
                        let req = channel::PaymentRequest {
                            hash: payment_hash,
                            amount_msat: *amount_msat,
                            expires_at: *expires_at,
                            invoice: invoice.as_deref(),
                            approval: approval.as_ref(),
                        };
                        channel::approve_payment(&mut v, &policy.channel, now, &req, index, &state.secp);
                        let changed = index.get(payment_hash) != before.as_ref();
                        (v, None, changed)
                    }
                    ApprovalSubject::Node(request) => (node_key_violations(state, request), None, false),
                    ApprovalSubject::TaprootSecret { .. } | ApprovalSubject::Sweep(_) => (Vec::new(), None, false),
                };
                let verdict = judge(violations, policy);
                let write = persist && verdict.approves() && changed;
                let digest_after = next.as_ref().map_or(NODE_STATE, |s| s.digest);
                Ok(ChannelUpdate {
                    state: if write { next.clone() } else { None },
                    write_payments: write,
                    result: Judged { verdict, state: digest_after, changed, channel_state: next },
                })
            },
        )
        .map_err(store_error)?;
    outcome
}

/// A node-key signature request's preimage must parse as its kind (one digest, one
/// meaning: `qls_signer_core::node_key`).
fn node_key_violations(state: &CosignerState, request: &NodeKeyRequest) -> Vec<qls_signer_core::policy::Violation> {
    let mut v = Vec::new();
    match request {
        NodeKeyRequest::SignInvoice { hrp, data, payment_hash, amount_msat } => {
            node_key::invoice_digest(&mut v, hrp, data, payment_hash, *amount_msat);
        }
        NodeKeyRequest::SignGossip { kind, message } => {
            node_key::gossip_digest(&mut v, *kind, message, ChainHash::using_genesis_block(state.config.network));
        }
        // The cosigners add signmessage's prefix themselves: nothing to judge.
        NodeKeyRequest::Ecdh { .. }
        | NodeKeyRequest::SignMessage { .. }
        | NodeKeyRequest::ApprovePayment { .. }
        | NodeKeyRequest::Heartbeat { .. } => {}
    }
    v
}

/// What only the seed's holder can check: our per-commitment points (holder keys are a
/// policy rule, `policy-channel-holder-keys`, judged with the setup).
fn key_holder_checks(
    kh: &crate::key_holder::KeyHolder,
    channel: &ChannelKeysId,
    request: &ChannelRequest,
) -> Result<(), CosignerResponse> {
    match request {
        ChannelRequest::ValidateHolderCommitment { commitment, .. } => {
            let ours = kh
                .per_commitment_point(channel, commitment.commitment_number)
                .map_err(|e| error(ErrorKind::InvalidRequest, e))?;
            if ours.serialize().as_slice() != commitment.per_commitment_point.as_slice() {
                return Err(error(
                    ErrorKind::InvalidRequest,
                    format!(
                        "holder commitment {} carries a per-commitment point that is not ours",
                        commitment.commitment_number
                    ),
                ));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Validates, applies and approves (or refuses) one request.
pub fn approve(state: &CosignerState, subject: ApprovalSubject, holder_keys: Option<KeysAttestation>) -> Reply {
    let judged = judge_subject(state, &subject, holder_keys.as_ref(), true)?;
    if !judged.verdict.approves() {
        tracing::info!(refused = ?judged.verdict.refused.iter().map(|v| format!("{}: {}", v.tag.name(), v.detail)).collect::<Vec<_>>(), "policy refused a channel request");
        return Ok(CosignerResponse::Refused { violations: violations(&judged.verdict.refused) });
    }
    let request = request_digest(&subject);
    let statement = approval_statement(&request, &judged.state);
    let identity_sig = state.identity.sign(&statement).map_err(|e| error(ErrorKind::Internal, e))?;
    Ok(CosignerResponse::Approved {
        approval: Approval {
            cosigner: state.identity.fingerprint,
            cert_der: state.identity.cert_der.to_vec(),
            request,
            state: judged.state,
            identity_sig,
        },
        warnings: violations(&judged.verdict.warned),
    })
}

fn approval_threshold(state: &CosignerState) -> usize {
    state.config.approval_threshold.map_or(state.config.peers.len().div_ceil(2) + 1, usize::from)
}

/// Distinct pinned cosigners whose approvals are valid for `request` at `at`.
fn valid_approvers(
    state: &CosignerState,
    approvals: &[Approval],
    request: &[u8; 32],
    at: &StateDigest,
) -> BTreeSet<Fingerprint> {
    let me = state.identity.fingerprint;
    let statement = approval_statement(request, at);
    approvals
        .iter()
        .filter(|a| a.request == *request && a.state == *at)
        .filter(|a| fingerprint(&a.cert_der) == a.cosigner)
        .filter(|a| a.cosigner == me || state.config.peers.contains(&a.cosigner))
        .filter(|a| verify_identity_sig(&a.cert_der, &statement, &a.identity_sig).is_ok())
        .map(|a| a.cosigner)
        .collect()
}

/// Key holders only: checks the approvals and signs.
pub fn key_holder_sign(state: &CosignerState, subject: ApprovalSubject, approvals: Vec<Approval>) -> Reply {
    let Some(kh) = state.key_holder.as_ref() else {
        return Err(error(ErrorKind::Forbidden, "this cosigner is not a key holder"));
    };
    let (judged, sweep_states) = match &subject {
        ApprovalSubject::Sweep(sweep) => judge_sweep(state, sweep)?,
        _ => (judge_subject(state, &subject, None, false)?, SweepStates::new()),
    };
    if !judged.verdict.approves() {
        return Ok(CosignerResponse::Refused { violations: violations(&judged.verdict.refused) });
    }
    if judged.changed {
        return Err(error(ErrorKind::Forbidden, "this key holder has not approved the request at its current state"));
    }
    let request = request_digest(&subject);
    let approvers = valid_approvers(state, &approvals, &request, &judged.state);
    // A taproot holder commitment's secret needs every cosigner's record of its revocation:
    // any t of them can complete its force close from their escrow shares until each has
    // deleted its share, and every set of t includes one that would refuse.
    let need = match subject {
        ApprovalSubject::TaprootSecret { .. } => state.config.peers.len() + 1,
        _ => approval_threshold(state),
    };
    if !approvers.contains(&state.identity.fingerprint) || approvers.len() < need {
        return Err(error(
            ErrorKind::Forbidden,
            format!(
                "{} valid approvals at state v{} (own included: {}), {need} needed",
                approvers.len(),
                judged.state.version,
                approvers.contains(&state.identity.fingerprint)
            ),
        ));
    }
    let output = match &subject {
        ApprovalSubject::Channel { channel, request } => {
            kh.sign_channel(channel, judged.channel_state.as_ref(), request)
        }
        ApprovalSubject::Node(NodeKeyRequest::Heartbeat { .. }) => {
            let tip =
                state.store.update_chain(state.config.network, |c| (c.tip().clone(), false)).map_err(store_error)?;
            kh.sign_heartbeat(tip.height, &tip.hash, state.now_unix())
        }
        ApprovalSubject::Node(r) => kh.sign_node(r, ChainHash::using_genesis_block(state.config.network)),
        ApprovalSubject::TaprootSecret { channel, commitment_number } => {
            kh.release_taproot_secret(channel, *commitment_number)
        }
        ApprovalSubject::Sweep(sweep) => kh.sign_sweep(sweep, |c| sweep_states.get(c)),
    }
    .map_err(|e| error(ErrorKind::Internal, e))?;
    Ok(CosignerResponse::KeyHolderSigned(output))
}

/// A key holder's public keys for `channel`, with its identity's attestation of them.
pub fn channel_keys(state: &CosignerState, channel: &ChannelKeysId) -> Reply {
    let kh =
        state.key_holder.as_ref().ok_or_else(|| error(ErrorKind::Forbidden, "this cosigner is not a key holder"))?;
    let points = kh.channel_points(channel);
    let statement = holder_keys_statement(channel, &points);
    let identity_sig = state.identity.sign(&statement).map_err(|e| error(ErrorKind::Internal, e))?;
    let attestation = KeysAttestation {
        cosigner: state.identity.fingerprint,
        cert_der: state.identity.cert_der.to_vec(),
        identity_sig,
    };
    let set_up = state.store.channel(channel).map_err(|e| error(ErrorKind::Internal, e))?.is_some();
    let info = ChannelKeysInfo { channel: *channel, points, attestation, set_up };
    Ok(CosignerResponse::ChannelKeys { info, node_id: kh.node_id().serialize().to_vec() })
}

/// Whether a setup's holder keys are the quorum's: a key holder derives them itself; any
/// other cosigner needs `attestation` from a key holder it pins (`key_holder_peers`).
fn holder_keys_check(
    state: &CosignerState,
    channel: &ChannelKeysId,
    holder: &ChannelPoints,
    attestation: Option<&KeysAttestation>,
) -> HolderKeysCheck {
    if let Some(kh) = state.key_holder.as_ref() {
        return if kh.owns_setup(channel, holder) {
            HolderKeysCheck::Ours
        } else {
            HolderKeysCheck::NotOurs("the holder keys are not the ones this key holder derives for the channel".into())
        };
    }
    let Some(a) = attestation else {
        return HolderKeysCheck::NotOurs("no key holder attested the holder keys".into());
    };
    let who = hex::encode(&a.cosigner[..8]);
    if !state.config.key_holder_peers.contains(&a.cosigner) {
        return HolderKeysCheck::NotOurs(format!("attested by {who}, which is not a pinned key holder"));
    }
    if fingerprint(&a.cert_der) != a.cosigner {
        return HolderKeysCheck::NotOurs(format!("the attestation's certificate is not {who}'s"));
    }
    let statement = holder_keys_statement(channel, holder);
    if verify_identity_sig(&a.cert_der, &statement, &a.identity_sig).is_err() {
        return HolderKeysCheck::NotOurs(format!(
            "{who}'s attestation does not sign these holder keys for channel {}",
            hex::encode(&channel[..8])
        ));
    }
    HolderKeysCheck::Ours
}

pub fn per_commitment_point(state: &CosignerState, channel: &ChannelKeysId, n: u64) -> Reply {
    let kh =
        state.key_holder.as_ref().ok_or_else(|| error(ErrorKind::Forbidden, "this cosigner is not a key holder"))?;
    let p = kh.per_commitment_point(channel, n).map_err(|e| error(ErrorKind::Internal, e))?;
    Ok(CosignerResponse::Point(p.serialize().to_vec()))
}
