//! Taproot channels, cosigner side: this cosigner's MuSig2 leaf (signed by its identity
//! key), channel setups (accepted only with the signed leaves of exactly this cosigner and
//! its pinned peers), fresh MuSig2 nonces, and NestedMuSig2 partial signatures for
//! requests the policy approves.
//!
//! Must never: sign before the nonce's removal and the new channel state are durable, sign
//! a message it did not derive itself, or accept a leaf set a coordinator could have
//! chosen (an unpinned or missing cosigner, a leaf its cosigner did not sign).

// Replies are built once per request; the error variant is the reply itself.
#![allow(clippy::result_large_err)]

use std::collections::BTreeSet;

use bitcoin::secp256k1::{PublicKey, SecretKey};
use qls_protocol::quic::{fingerprint, verify_identity_sig};
use qls_protocol::*;
use qls_signer_core::musig2::nested::{nested_sign, NestedSessionContext};
use qls_signer_core::policy::judge;
use qls_signer_core::taproot_channel::{self as tc, TaprootChannelError, TaprootChannelState};

use crate::handler::{error, store_error, violations, CosignerState, Reply};

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

fn group(state: &CosignerState) -> Result<qls_signer_core::frost::keys::PublicKeyPackage, CosignerResponse> {
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
    let current = state.store.taproot_channel(&channel).map_err(store_error)?;
    let request = TaprootRequest::Setup(setup);
    let own = own_scripts(state);
    let ctx = tc::TaprootContext {
        policy: &state.config.policy,
        holder: &holder,
        leaves: &leaf_bytes,
        own_scripts: &own,
        secp: &state.secp,
    };
    let applied =
        tc::apply(&channel, current.as_ref(), &request, &digest_of(&channel, &request), &ctx).map_err(channel_error)?;
    let verdict = judge(applied.violations, &state.config.policy);
    if !verdict.approves() {
        return Ok(CosignerResponse::Refused { violations: violations(&verdict.refused) });
    }
    if applied.changed {
        state.store.put_taproot_channel(&channel, &applied.state).map_err(store_error)?;
    }
    Ok(CosignerResponse::TaprootApplied { warnings: violations(&verdict.warned) })
}

fn stored(state: &CosignerState, channel: &ChannelKeysId) -> Result<TaprootChannelState, CosignerResponse> {
    state.store.taproot_channel(channel).map_err(store_error)?.ok_or_else(|| {
        error(ErrorKind::UnknownKey, format!("taproot channel {} is not set up", hex::encode(&channel[..8])))
    })
}

fn my_channel_leaf(state: &CosignerState, channel: &ChannelKeysId) -> Result<([u8; 33], [u8; 32]), CosignerResponse> {
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
    let leaves: Vec<[u8; 33]> = current
        .leaves
        .iter()
        .map(|l| l.as_slice().try_into().map_err(|_| error(ErrorKind::Storage, "stored leaf is not 33 bytes")))
        .collect::<Result<_, _>>()?;
    let own = own_scripts(state);
    let ctx = tc::TaprootContext {
        policy: &state.config.policy,
        holder: &current.holder,
        leaves: &current.leaves,
        own_scripts: &own,
        secp: &state.secp,
    };
    let applied =
        tc::apply(&channel, Some(&current), &request, &digest_of(&channel, &request), &ctx).map_err(channel_error)?;
    let verdict = judge(applied.violations, &state.config.policy);
    if !verdict.approves() {
        tracing::info!(refused = ?verdict.refused.iter().map(|v| v.tag.name()).collect::<Vec<_>>(), "policy refused a taproot request");
        return Ok(CosignerResponse::Refused { violations: violations(&verdict.refused) });
    }
    let (Some(msg), Some(session)) = (applied.message, session) else {
        if applied.message.is_some() {
            return Err(error(ErrorKind::InvalidRequest, "a signing request needs a MuSig2 session"));
        }
        // Nothing to sign (a revocation): just keep the state.
        if applied.changed {
            state.store.put_taproot_channel(&channel, &applied.state).map_err(store_error)?;
        }
        return Ok(CosignerResponse::TaprootApplied { warnings: violations(&verdict.warned) });
    };
    // Every cosigner's channel leaf, in stored (fingerprint) order.
    let me = state.identity.fingerprint;
    let mut ids: Vec<Fingerprint> = state.config.peers.iter().copied().chain([me]).collect();
    ids.sort();
    let channel_leaves = leaves
        .iter()
        .map(|l| tc::channel_leaf_pubkey(&state.secp, l, &channel))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(ErrorKind::Internal, e))?;
    let (my_leaf, my_sk) = my_channel_leaf(state, &channel)?;
    let node_key: [u8; 33] =
        current.holder.funding.as_slice().try_into().map_err(|_| error(ErrorKind::Storage, "funding key"))?;
    let theirs = tc::session::key33(&current.setup.counterparty.funding).map_err(|e| error(ErrorKind::Storage, e))?;
    let leaf_session = tc::leaf_session(&session, &ids, &channel_leaves, &my_leaf, &node_key, &theirs, &channel)
        .map_err(|e| error(ErrorKind::InvalidRequest, e))?;
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
    // Durable before any secret is used: the nonce is gone and the state moved on.
    let secnonce = state
        .store
        .consume_musig_nonce(&channel, mine.nonce_id, applied.changed.then_some(&applied.state))
        .map_err(store_error)?;
    state.abort_if_failpoint();
    let ctx = NestedSessionContext {
        nonce_path: &leaf_session.nonce_path,
        pk_tree: &leaf_session.pk_tree,
        tweaks: &[leaf_session.tweak],
        msg: &msg,
    };
    let psig = nested_sign(secnonce, &my_sk, &ctx).map_err(|e| error(ErrorKind::Internal, e))?;
    Ok(CosignerResponse::TaprootPartialSig {
        psig,
        msg,
        counterparty_funding: theirs.to_vec(),
        warnings: violations(&verdict.warned),
    })
}
