//! Taproot channels, cosigner side: this cosigner's MuSig2 leaf (signed by its identity
//! key), channel setups (accepted only with the signed leaves of exactly this cosigner and
//! its pinned peers), fresh and verification MuSig2 nonces, NestedMuSig2 partial
//! signatures for requests the policy approves (judged with the payment index, in one
//! store transaction with the nonce's consumption), and the messages and keys of FROST
//! items (HTLC transactions, sweeps) for the signing path.
//!
//! Must never: sign before the nonce's removal and the new channel state are durable, sign
//! a message it did not derive itself, use a verification nonce for anything but its own
//! holder commitment, or accept a leaf set a coordinator could have chosen (an unpinned or
//! missing cosigner, a leaf its cosigner did not sign).

// Replies are built once per request; the error variant is the reply itself.
#![allow(clippy::result_large_err)]

use std::collections::BTreeSet;

use bitcoin::secp256k1::{PublicKey, SecretKey};
use qls_protocol::quic::{fingerprint, verify_identity_sig};
use qls_protocol::*;
use qls_signer_core::musig2::nested::{nested_sign, NestedSessionContext};
use qls_signer_core::policy::judge;
use qls_signer_core::policy::Verdict;
use qls_signer_core::taproot_channel::{self as tc, routing, TaprootChannelError, TaprootChannelState};

use crate::handler::{error, store_error, violations, CosignerState, Reply};
use crate::taproot_store::{LeafSigner, NonceUse, TaprootUpdate};

fn leaf_secret(state: &CosignerState) -> Result<SecretKey, CosignerResponse> {
    let bytes = state
        .store
        .musig_leaf_secret(|| loop {
            let b: [u8; 32] = rand::random();
            if SecretKey::from_slice(&b).is_ok() {
                break b;
            }
        })
        .map_err(store_error)?;
    SecretKey::from_slice(&bytes).map_err(|_| error(ErrorKind::Storage, "stored MuSig2 leaf secret is not a key"))
}

fn leaf_public(state: &CosignerState) -> Result<[u8; 33], CosignerResponse> {
    Ok(PublicKey::from_secret_key(&state.secp, &leaf_secret(state)?).serialize())
}

pub fn musig_leaf(state: &CosignerState) -> Reply {
    let leaf = leaf_public(state)?;
    let identity_sig = state.identity.sign(&tc::leaf_statement(&leaf)).map_err(|e| error(ErrorKind::Internal, e))?;
    Ok(CosignerResponse::MusigLeaf(MusigLeaf {
        cosigner: state.identity.fingerprint,
        cert_der: state.identity.cert_der.to_vec(),
        leaf: leaf.to_vec(),
        identity_sig,
    }))
}

/// The leaves of this cosigner and all its pinned peers, each signed by its identity key;
/// returned sorted by fingerprint (the order every cosigner uses).
fn checked_leaves(
    state: &CosignerState,
    leaves: &[MusigLeaf],
) -> Result<Vec<(Fingerprint, [u8; 33])>, CosignerResponse> {
    let me = state.identity.fingerprint;
    let expected: BTreeSet<Fingerprint> = state.config.peers.iter().copied().chain([me]).collect();
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    let bad = |why: String| error(ErrorKind::InvalidRequest, why);
    for l in leaves {
        let leaf: [u8; 33] = l.leaf.as_slice().try_into().map_err(|_| bad("leaf is not 33 bytes".into()))?;
        if fingerprint(&l.cert_der) != l.cosigner || !expected.contains(&l.cosigner) || !seen.insert(l.cosigner) {
            return Err(bad(format!(
                "leaf of {} is not from a distinct pinned cosigner",
                hex::encode(&l.cosigner[..4])
            )));
        }
        verify_identity_sig(&l.cert_der, &tc::leaf_statement(&leaf), &l.identity_sig)
            .map_err(|_| bad(format!("leaf of {} is not signed by its identity key", hex::encode(&l.cosigner[..4]))))?;
        if l.cosigner == me && leaf != leaf_public(state)? {
            return Err(bad("the leaf given for this cosigner is not its own".into()));
        }
        out.push((l.cosigner, leaf));
    }
    if seen != expected {
        return Err(bad(format!(
            "{} leaves, this cosigner and its {} peers expected",
            seen.len(),
            state.config.peers.len()
        )));
    }
    out.sort();
    Ok(out)
}

pub(crate) fn group(state: &CosignerState) -> Result<qls_signer_core::frost::keys::PublicKeyPackage, CosignerResponse> {
    let ids = state.store.key_ids().map_err(store_error)?;
    let id = ids.first().ok_or_else(|| error(ErrorKind::NoGroupKey, "no group key: run the DKG first"))?;
    Ok(state.key(id).map_err(store_error)?.public_key_package.clone())
}

fn own_scripts(state: &CosignerState) -> Vec<bitcoin::ScriptBuf> {
    let keys = state.store.key_ids().unwrap_or_default();
    keys.iter().filter_map(|k| qls_signer_core::wallet::wallet_script(k).ok()).collect()
}

fn channel_error(e: TaprootChannelError) -> CosignerResponse {
    let kind = match e {
        TaprootChannelError::UnknownChannel { .. } => ErrorKind::UnknownKey,
        TaprootChannelError::CorruptState(_) => ErrorKind::Storage,
        _ => ErrorKind::InvalidRequest,
    };
    error(kind, e)
}

fn digest_of(channel: &ChannelKeysId, request: &TaprootRequest) -> [u8; 32] {
    use bitcoin::hashes::{sha256, Hash};
    let bytes = postcard::to_allocvec(&("QLS/taproot-request/v1", channel, request)).unwrap_or_default();
    sha256::Hash::hash(&bytes).to_byte_array()
}

/// LDK counts holder commitments down from this; taproot requests count up from 0.
const INITIAL_COMMITMENT_NUMBER: u64 = (1 << 48) - 1;

pub(crate) fn stored(state: &CosignerState, channel: &ChannelKeysId) -> Result<TaprootChannelState, CosignerResponse> {
    state.store.taproot_channel(channel).map_err(store_error)?.ok_or_else(|| {
        error(ErrorKind::UnknownKey, format!("taproot channel {} is not set up", hex::encode(&channel[..8])))
    })
}

pub(crate) fn my_channel_leaf(
    state: &CosignerState,
    channel: &ChannelKeysId,
) -> Result<([u8; 33], [u8; 32]), CosignerResponse> {
    let base = leaf_public(state)?;
    let pk = tc::channel_leaf_pubkey(&state.secp, &base, channel).map_err(|e| error(ErrorKind::Internal, e))?;
    let sk =
        tc::channel_leaf_secret(&leaf_secret(state)?, &base, channel).map_err(|e| error(ErrorKind::Internal, e))?;
    Ok((pk, sk))
}

pub fn nonces(state: &CosignerState, channel: ChannelKeysId, count: u32) -> Reply {
    stored(state, &channel)?;
    let (leaf, _) = my_channel_leaf(state, &channel)?;
    let made = state.store.new_musig_nonces(&channel, &leaf, count as usize, rand::random).map_err(store_error)?;
    Ok(CosignerResponse::TaprootNonces(
        made.into_iter()
            .map(|(nonce_id, n)| LeafNonce { cosigner: state.identity.fingerprint, nonce_id, pubnonce: n.0.to_vec() })
            .collect(),
    ))
}

/// This cosigner's verification nonce for holder commitment `n` (made once, then the same).
pub fn verification_nonce(state: &CosignerState, channel: ChannelKeysId, n: u64) -> Reply {
    let current = stored(state, &channel)?;
    if current.holder_is_revoked(n) {
        return Err(error(ErrorKind::Forbidden, format!("holder commitment {n} is revoked")));
    }
    let latest = current.holder_latest.as_ref().map(|h| h.info.commitment_number);
    if latest.is_some_and(|l| n < l) {
        return Err(error(
            ErrorKind::Forbidden,
            format!("holder commitment {n} is older than the latest ({latest:?})"),
        ));
    }
    let (leaf, _) = my_channel_leaf(state, &channel)?;
    let (nonce_id, n) = state.store.verification_nonce(&channel, n, &leaf, rand::random).map_err(store_error)?;
    Ok(CosignerResponse::TaprootNonces(vec![LeafNonce {
        cosigner: state.identity.fingerprint,
        nonce_id,
        pubnonce: n.0.to_vec(),
    }]))
}

/// The payment hashes `request` may touch, given the stored state.
fn touched_hashes(current: Option<&TaprootChannelState>, request: &TaprootRequest) -> Vec<[u8; 32]> {
    let prev_holder = current.and_then(|c| c.holder_latest.as_ref()).map(|h| &h.info);
    let prev_counterparty = current.and_then(|c| c.counterparty_latest.as_ref());
    match request {
        TaprootRequest::SignCounterpartyCommitment { commitment, outbound_preimages } => {
            routing::touched_hashes([commitment].into_iter().chain(prev_counterparty), outbound_preimages)
        }
        TaprootRequest::ValidateHolderCommitment { commitment, outbound_preimages, .. } => {
            routing::touched_hashes([commitment].into_iter().chain(prev_holder), outbound_preimages)
        }
        // A spend withdraws the incoming HTLCs of our latest commitment.
        // A proof or a spend adds or withdraws the incoming HTLCs of our latest commitment.
        TaprootRequest::FundingConfirmed(_) | TaprootRequest::FundingSpent(_) => {
            routing::touched_hashes(prev_holder.into_iter(), &[])
        }
        _ => Vec::new(),
    }
}

/// What only the seed's holder can check: the per-commitment point of our commitment.
fn key_holder_checks(
    state: &CosignerState,
    channel: &ChannelKeysId,
    request: &TaprootRequest,
) -> Result<(), CosignerResponse> {
    let (Some(kh), TaprootRequest::ValidateHolderCommitment { commitment, .. }) = (state.key_holder.as_ref(), request)
    else {
        return Ok(());
    };
    let n = commitment.commitment_number;
    let ours = kh
        .per_commitment_point(channel, INITIAL_COMMITMENT_NUMBER.saturating_sub(n))
        .map_err(|e| error(ErrorKind::InvalidRequest, e))?;
    if ours.serialize().as_slice() != commitment.per_commitment_point.as_slice() {
        return Err(error(
            ErrorKind::InvalidRequest,
            format!("holder commitment {n} carries a per-commitment point that is not ours"),
        ));
    }
    Ok(())
}

/// The judged outcome the store transaction hands back.
pub(crate) enum Judged {
    Refused(Verdict),
    Approved { verdict: Verdict, message: Option<[u8; 32]> },
}

pub(crate) fn leaves_of(current: &TaprootChannelState) -> Result<Vec<[u8; 33]>, CosignerResponse> {
    current
        .leaves
        .iter()
        .map(|l| l.as_slice().try_into().map_err(|_| error(ErrorKind::Storage, "stored leaf is not 33 bytes")))
        .collect()
}

pub fn setup(
    state: &CosignerState,
    channel: ChannelKeysId,
    setup: TaprootChannelSetup,
    leaves: Vec<MusigLeaf>,
) -> Reply {
    let leaves = checked_leaves(state, &leaves)?;
    let base: Vec<[u8; 33]> = leaves.iter().map(|(_, l)| *l).collect();
    let holder = tc::holder_keys(&state.secp, &group(state)?, &base, &channel)
        .map_err(|e| error(ErrorKind::InvalidRequest, e))?;
    let leaf_bytes: Vec<Vec<u8>> = base.iter().map(|l| l.to_vec()).collect();
    let request = TaprootRequest::Setup(setup);
    judge_and_apply(state, channel, &request, &holder, &leaf_bytes, None, &no_signing).map(|(j, _)| match j {
        Judged::Refused(v) => CosignerResponse::Refused { violations: violations(&v.refused) },
        Judged::Approved { verdict, .. } => CosignerResponse::TaprootApplied { warnings: violations(&verdict.warned) },
    })
}

/// The signer of requests that sign nothing (a setup): never called.
pub(crate) fn no_signing(_: qls_signer_core::musig2::SecNonce, _: &[u8; 32]) -> Result<[u8; 32], String> {
    Err("this request signs nothing".into())
}

/// Judges `request` against the stored state and the payment index in one store
/// transaction; if approved, persists it together with the consumption of `nonce` (for a
/// signing request) and returns `signer`'s partial signature with it.
pub(crate) fn judge_and_apply(
    state: &CosignerState,
    channel: ChannelKeysId,
    request: &TaprootRequest,
    holder: &TaprootHolderKeys,
    leaves: &[Vec<u8>],
    nonce: Option<NonceUse>,
    signer: LeafSigner<'_>,
) -> Result<(Judged, Option<[u8; 32]>), CosignerResponse> {
    key_holder_checks(state, &channel, request)?;
    let own = own_scripts(state);
    let own_verification = match request {
        TaprootRequest::ValidateHolderCommitment { commitment, .. } => state
            .store
            .verification_pubnonce(&channel, commitment.commitment_number)
            .map_err(store_error)?
            .map(|(nonce_id, p)| LeafNonce { cosigner: state.identity.fingerprint, nonce_id, pubnonce: p.to_vec() }),
        _ => None,
    };
    let chain = match request {
        TaprootRequest::FundingConfirmed(proof) | TaprootRequest::FundingSpent(proof) => {
            Some(crate::approvals::chain_with(state, &proof.headers, true)?)
        }
        _ => None,
    };
    let stored_channels = match request {
        TaprootRequest::Setup(_) => state.store.taproot_channel_count().map_err(store_error)?,
        _ => 0,
    };
    let latest_escrowed = match request {
        TaprootRequest::RevokeHolderCommitment { .. } => {
            let latest = state
                .store
                .taproot_channel(&channel)
                .map_err(store_error)?
                .and_then(|c| c.holder_latest.map(|h| h.info.commitment_number));
            match latest {
                Some(n) => state.store.escrow_share(&channel, n).map_err(store_error)?.is_some(),
                None => false,
            }
        }
        _ => false,
    };
    let ctx = tc::TaprootContext {
        policy: &state.config.policy,
        holder,
        leaves,
        own_scripts: &own,
        secp: &state.secp,
        own_verification: own_verification.as_ref(),
        chain: chain.as_ref(),
        now: state.now_unix(),
        stored_channels,
        latest_escrowed,
    };
    let digest = digest_of(&channel, request);
    let policy = &state.config.policy;
    let outcome = state
        .store
        .update_taproot(
            &channel,
            |current| touched_hashes(current, request),
            &policy.channel,
            state.now_unix(),
            |current, index| {
                let applied =
                    tc::apply(&channel, current.as_ref(), request, &digest, index, &ctx).map_err(channel_error)?;
                let verdict = judge(applied.violations, policy);
                if !verdict.approves() {
                    return Ok(TaprootUpdate {
                        state: None,
                        write_payments: false,
                        sign_with: None,
                        drop_verification_upto: None,
                        result: Judged::Refused(verdict),
                    });
                }
                let drop = match request {
                    TaprootRequest::RevokeHolderCommitment { commitment_number } => Some(*commitment_number),
                    _ => None,
                };
                let sign_with = match (nonce, applied.message) {
                    (Some(nonce), Some(msg)) => Some((nonce, msg)),
                    _ => None,
                };
                Ok(TaprootUpdate {
                    state: applied.changed.then_some(applied.state),
                    write_payments: applied.changed,
                    sign_with,
                    drop_verification_upto: drop,
                    result: Judged::Approved { verdict, message: applied.message },
                })
            },
            signer,
        )
        .map_err(store_error)?;
    outcome
}

/// Every cosigner's fingerprint, sorted: the order of the stored leaves.
pub(crate) fn cosigner_ids(state: &CosignerState) -> Vec<Fingerprint> {
    let mut ids: Vec<Fingerprint> = state.config.peers.iter().copied().chain([state.identity.fingerprint]).collect();
    ids.sort();
    ids
}

/// This cosigner's channel leaf secret and the NestedMuSig2 session it signs in.
pub(crate) fn session_of(
    state: &CosignerState,
    channel: &ChannelKeysId,
    current: &TaprootChannelState,
    session: &NestedSession,
) -> Result<([u8; 32], tc::LeafSession), CosignerResponse> {
    let channel_leaves = leaves_of(current)?
        .iter()
        .map(|l| tc::channel_leaf_pubkey(&state.secp, l, channel))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(ErrorKind::Internal, e))?;
    let (my_leaf, my_sk) = my_channel_leaf(state, channel)?;
    let node_key: [u8; 33] =
        current.holder.funding.as_slice().try_into().map_err(|_| error(ErrorKind::Storage, "funding key"))?;
    let theirs = tc::session::key33(&current.setup.counterparty.funding).map_err(|e| error(ErrorKind::Storage, e))?;
    let leaf_session =
        tc::leaf_session(session, &cosigner_ids(state), &channel_leaves, &my_leaf, &node_key, &theirs, channel)
            .map_err(|e| error(ErrorKind::InvalidRequest, e))?;
    Ok((my_sk, leaf_session))
}

/// This leaf's NestedMuSig2 partial signature of `msg` in `session`.
pub(crate) fn leaf_sign(
    secnonce: qls_signer_core::musig2::SecNonce,
    sk: &[u8; 32],
    session: &tc::LeafSession,
    msg: &[u8; 32],
) -> Result<[u8; 32], String> {
    let ctx = NestedSessionContext {
        nonce_path: &session.nonce_path,
        pk_tree: &session.pk_tree,
        tweaks: &[session.tweak],
        msg,
    };
    nested_sign(secnonce, sk, &ctx).map_err(|e| e.to_string())
}

/// Judges `request`; applies it, and for a signing request (which needs `session`) signs.
pub fn sign(
    state: &CosignerState,
    channel: ChannelKeysId,
    request: TaprootRequest,
    session: Option<NestedSession>,
) -> Reply {
    if matches!(request, TaprootRequest::Setup(_)) {
        return Err(error(ErrorKind::InvalidRequest, "a taproot setup comes with the leaves (TaprootSetup)"));
    }
    let current = stored(state, &channel)?;
    let me = state.identity.fingerprint;
    let signs = matches!(
        request,
        TaprootRequest::SignCounterpartyCommitment { .. }
            | TaprootRequest::SignClosing { .. }
            | TaprootRequest::SignHolderCommitment { .. }
    );
    let nonce = match (&request, &session) {
        (_, None) if signs => {
            return Err(error(ErrorKind::InvalidRequest, "a signing request needs a MuSig2 session"));
        }
        (_, None) => None,
        (TaprootRequest::SignHolderCommitment { commitment_number }, Some(session)) => {
            // The force-close session is the one the counterparty signed in: the stored
            // verification nonces and its stored nonce.
            // (Another commitment than the latest is for the policy to refuse, by its tags.)
            let latest = current.holder_latest.as_ref().filter(|h| h.info.commitment_number == *commitment_number);
            let other = latest.is_some_and(|h| {
                h.verification != session.leaf_nonces || h.counterparty_nonce != session.counterparty_nonce
            });
            if other {
                return Err(error(
                    ErrorKind::InvalidRequest,
                    format!("holder commitment {commitment_number} is signed only in its stored verification session"),
                ));
            }
            Some(NonceUse::Verification { commitment: *commitment_number })
        }
        (_, Some(session)) => {
            let mine = session
                .leaf_nonces
                .iter()
                .find(|n| n.cosigner == me)
                .ok_or_else(|| error(ErrorKind::InvalidRequest, "the session carries no nonce of this cosigner"))?;
            let stored_pub = state.store.musig_pubnonce(&channel, mine.nonce_id).map_err(store_error)?;
            if stored_pub.is_some_and(|p| p.as_slice() != mine.pubnonce.as_slice()) {
                return Err(error(
                    ErrorKind::InvalidRequest,
                    format!("nonce {} is not the one this cosigner handed out", mine.nonce_id),
                ));
            }
            Some(NonceUse::Fresh(mine.nonce_id))
        }
    };
    // The session this leaf signs in: built before anything is consumed, so a malformed
    // session costs no nonce.
    let (my_sk, leaf_session) = match &session {
        Some(s) => {
            let (sk, ls) = session_of(state, &channel, &current, s)?;
            (sk, Some(ls))
        }
        None => ([0; 32], None),
    };
    let signer = |secnonce: qls_signer_core::musig2::SecNonce, msg: &[u8; 32]| -> Result<[u8; 32], String> {
        let leaf_session = leaf_session.as_ref().ok_or("a signing request needs a MuSig2 session")?;
        leaf_sign(secnonce, &my_sk, leaf_session, msg)
    };
    let theirs = tc::session::key33(&current.setup.counterparty.funding).map_err(|e| error(ErrorKind::Storage, e))?;
    let (judged, psig) = judge_and_apply(state, channel, &request, &current.holder, &current.leaves, nonce, &signer)?;
    let (verdict, message) = match judged {
        Judged::Refused(verdict) => {
            tracing::info!(refused = ?verdict.refused.iter().map(|v| v.tag.name()).collect::<Vec<_>>(), "policy refused a taproot request");
            return Ok(CosignerResponse::Refused { violations: violations(&verdict.refused) });
        }
        Judged::Approved { verdict, message } => (verdict, message),
    };
    let (Some(msg), Some(psig)) = (message, psig) else {
        // Nothing to sign (a revocation, a validation).
        return Ok(CosignerResponse::TaprootApplied { warnings: violations(&verdict.warned) });
    };
    // The nonce is gone and the state moved on, durably; only now does the signature leave.
    state.abort_if_failpoint();
    Ok(CosignerResponse::TaprootPartialSig {
        psig,
        msg,
        counterparty_funding: theirs.to_vec(),
        warnings: violations(&verdict.warned),
    })
}

/// The messages and keys of a FROST item and its violations, from the stored state.
pub fn frost_targets_of(
    state: &CosignerState,
    channel: &ChannelKeysId,
    item: &TaprootFrostItem,
) -> Result<(Vec<FrostTarget>, Vec<qls_signer_core::policy::Violation>), CosignerResponse> {
    let current = stored(state, channel)?;
    let own = own_scripts(state);
    let ctx = tc::TaprootContext {
        policy: &state.config.policy,
        holder: &current.holder,
        leaves: &current.leaves,
        own_scripts: &own,
        secp: &state.secp,
        own_verification: None,
        chain: None,
        now: state.now_unix(),
        stored_channels: 0,
        latest_escrowed: false,
    };
    tc::frost_targets(channel, &current, item, &ctx).map_err(channel_error)
}

/// What this cosigner would sign for `item`, or its refusal.
pub fn frost_targets(state: &CosignerState, channel: ChannelKeysId, item: TaprootFrostItem) -> Reply {
    let (targets, v) = frost_targets_of(state, &channel, &item)?;
    let verdict = judge(v, &state.config.policy);
    if !verdict.approves() {
        return Ok(CosignerResponse::Refused { violations: violations(&verdict.refused) });
    }
    Ok(CosignerResponse::TaprootFrostTargets(targets))
}
