//! MuSig2 nonce safety of the real `qls-cosigner` process across crashes at each step of a
//! taproot signing round: `kill -9` after nonces were handed out (a restart forgets them),
//! `kill -9` after a partial signature left, and an abort between the nonce's durable
//! consumption and the reply.
//! A retried request never gets a second partial signature from a nonce, and every partial
//! signature that left the process used a different public nonce (R values).
//!
//! Verification nonces: one handed out before a restart is forgotten unless its holder
//! commitment was validated; a validated one survives `kill -9`, is bound to its holder
//! commitment (it never signs a counterparty commitment) and completes that commitment for
//! force close once: a reply lost to an abort right after the signing committed, or a
//! retry after another `kill -9`, gets the identical partial signature again (stored in the
//! nonce's place), never a second one; a retry in another session gets nothing.
//!
//! The process is a one-cosigner quorum (no peers): its leaf alone is the funding node.

mod common;

use std::collections::BTreeSet;

use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use common::*;
use qls_protocol::*;
use qls_signer_core::musig2::nested::{nested_partial_sig_verify, NestedSessionContext};
use qls_signer_core::musig2::{nonce_gen, PubNonce};
use qls_signer_core::taproot_channel as tc;
use quinn::Connection;

const CHANNEL: ChannelKeysId = [0x61; 32];

fn pk(b: u8) -> Vec<u8> {
    PublicKey::from_secret_key(&Secp256k1::new(), &SecretKey::from_slice(&[b; 32]).unwrap()).serialize().to_vec()
}

fn setup() -> TaprootChannelSetup {
    TaprootChannelSetup {
        channel_value_sat: 1_000_000,
        funding_txid: [0x98; 32],
        funding_vout: 0,
        is_outbound: true,
        holder_selected_contest_delay: 144,
        counterparty_selected_contest_delay: 144,
        counterparty_dust_limit_sat: 354,
        holder_dust_limit_sat: 354,
        counterparty: TaprootCounterpartyPoints {
            funding: pk(0x50),
            revocation: pk(0x51),
            payment: pk(0x52),
            delayed_payment: pk(0x53),
            htlc: pk(0x54),
        },
    }
}

fn commitment(n: u64) -> TaprootRequest {
    TaprootRequest::SignCounterpartyCommitment {
        outbound_preimages: vec![],
        commitment: TaprootCommitmentInfo {
            commitment_number: n,
            per_commitment_point: pk(0x60 + n as u8),
            to_broadcaster_msat: 0,
            to_countersignatory_msat: 1_000_000_000,
            feerate_per_kw: 1_000,
            htlcs: vec![],
        },
    }
}

async fn nonces(c: &Connection, count: u32) -> Vec<LeafNonce> {
    match call(c, &CosignerRequest::TaprootNonces { channel: CHANNEL, count }).await.unwrap() {
        CosignerResponse::TaprootNonces(n) => n,
        other => panic!("{other:?}"),
    }
}

fn sign_request(request: TaprootRequest, nonce: &LeafNonce) -> CosignerRequest {
    let theirs: [u8; 33] = pk(0x50).try_into().unwrap();
    let (_, counterparty_nonce) = nonce_gen(&rand::random(), None, &theirs, None, None, None).unwrap();
    CosignerRequest::TaprootSign {
        channel: CHANNEL,
        request,
        session: NestedSession { leaf_nonces: vec![nonce.clone()], counterparty_nonce: counterparty_nonce.0.to_vec() },
    }
}

/// The partial signature, checked against the leaf's nonce and key in its session.
fn verified_psig(reply: CosignerResponse, req: &CosignerRequest, leaf: &[u8; 33]) -> [u8; 32] {
    let (CosignerResponse::TaprootPartialSig { psig, msg, .. }, CosignerRequest::TaprootSign { session, .. }) =
        (reply, req)
    else {
        panic!("expected a partial signature")
    };
    let secp = Secp256k1::verification_only();
    let (node_key, leaves) = tc::funding_node_key(&secp, &[*leaf], &CHANNEL).unwrap();
    let theirs: [u8; 33] = pk(0x50).try_into().unwrap();
    let n = &session.leaf_nonces[0];
    let ls = tc::leaf_session(session, &[n.cosigner], &leaves, &leaves[0], &node_key, &theirs, &CHANNEL).unwrap();
    let ctx = NestedSessionContext { nonce_path: &ls.nonce_path, pk_tree: &ls.pk_tree, tweaks: &[ls.tweak], msg: &msg };
    let pubnonce = PubNonce(n.pubnonce.as_slice().try_into().unwrap());
    assert!(nested_partial_sig_verify(&psig, &pubnonce, &leaves[0], &ctx).unwrap(), "partial signature verifies");
    psig
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn musig2_nonces_survive_crashes_and_are_never_used_twice() {
    let mut cosigner = Cosigner::new();
    let conn = cosigner.start(None).await;
    import_key(&conn, &cosigner).await;
    let leaf = match call(&conn, &CosignerRequest::MusigLeaf).await.unwrap() {
        CosignerResponse::MusigLeaf(l) => l,
        other => panic!("{other:?}"),
    };
    let leaf_key: [u8; 33] = leaf.leaf.as_slice().try_into().unwrap();
    let req = CosignerRequest::TaprootSetup { channel: CHANNEL, setup: setup(), leaves: vec![leaf] };
    assert!(matches!(call(&conn, &req).await.unwrap(), CosignerResponse::TaprootApplied { .. }));
    let mut used_r = Vec::new();

    // Step 1 — crash after handing out nonces: a restart forgets them (the store could be
    // an older copy of itself), so they never sign; fresh ones do.
    let old = nonces(&conn, 2).await;
    cosigner.kill_9();
    let conn = cosigner.start(None).await;
    let stale = sign_request(commitment(0), &old[0]);
    assert_eq!(error_kind(call(&conn, &stale).await.unwrap()), ErrorKind::ConsumedNonce);
    let n = nonces(&conn, 1).await;
    assert!(n[0].nonce_id > old[1].nonce_id, "nonce ids never go back");
    let first = sign_request(commitment(0), &n[0]);
    verified_psig(call(&conn, &first).await.unwrap(), &first, &leaf_key);
    used_r.push(n[0].pubnonce.clone());

    // Step 2 — crash after the partial signature left: the same request, or the nonce
    // for the next commitment, is refused.
    cosigner.kill_9();
    let conn = cosigner.start(None).await;
    assert_eq!(error_kind(call(&conn, &first).await.unwrap()), ErrorKind::ConsumedNonce);
    let other_msg = sign_request(commitment(1), &n[0]);
    assert_eq!(error_kind(call(&conn, &other_msg).await.unwrap()), ErrorKind::ConsumedNonce);

    // Step 3 — abort between the durable consumption and the reply: no reply, and after
    // the restart that nonce is gone; the retried commitment signs with a fresh nonce.
    drop(conn);
    cosigner.kill_9();
    let conn = cosigner.start(Some("abort-after-nonce-consume")).await;
    let aborted = nonces(&conn, 1).await.remove(0);
    let second = sign_request(commitment(1), &aborted);
    assert!(call(&conn, &second).await.is_err(), "the process dies before any partial signature is sent");
    assert!(!cosigner.wait_exit().success());
    let conn = cosigner.start(None).await;
    assert_eq!(error_kind(call(&conn, &second).await.unwrap()), ErrorKind::ConsumedNonce);
    let fresh = nonces(&conn, 1).await;
    let retry = sign_request(commitment(1), &fresh[0]);
    verified_psig(call(&conn, &retry).await.unwrap(), &retry, &leaf_key);
    used_r.push(fresh[0].pubnonce.clone());

    // A nonce id never handed out is refused (a retry of commitment 1, which policy allows).
    let mut bogus = fresh[0].clone();
    bogus.nonce_id = 1_000_000;
    assert_eq!(error_kind(call(&conn, &sign_request(commitment(1), &bogus)).await.unwrap()), ErrorKind::UnknownNonce);

    // Every partial signature that left used its own public nonce.
    assert_eq!(used_r.iter().collect::<BTreeSet<_>>().len(), used_r.len(), "an R value was used twice");
    assert!(!used_r.contains(&aborted.pubnonce), "the nonce consumed by the aborted round never signed");
    assert!(!used_r.contains(&old[0].pubnonce), "a nonce from before a restart never signed");
}

async fn verification_nonce(c: &Connection, n: u64) -> LeafNonce {
    let req = CosignerRequest::TaprootVerificationNonce { channel: CHANNEL, commitment_number: n };
    match call(c, &req).await.unwrap() {
        CosignerResponse::TaprootNonces(mut v) if v.len() == 1 => v.remove(0),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verification_nonce_survives_crashes_and_completes_one_force_close() {
    use qls_signer_core::musig2::{key_sort, nested::nonce_agg_ext, nonce_agg, sign, SessionContext};
    let mut cosigner = Cosigner::new();
    let conn = cosigner.start(None).await;
    let (share, _) = import_key(&conn, &cosigner).await;
    let leaf = match call(&conn, &CosignerRequest::MusigLeaf).await.unwrap() {
        CosignerResponse::MusigLeaf(l) => l,
        other => panic!("{other:?}"),
    };
    let leaf_key: [u8; 33] = leaf.leaf.as_slice().try_into().unwrap();
    let req = CosignerRequest::TaprootSetup { channel: CHANNEL, setup: setup(), leaves: vec![leaf.clone()] };
    assert!(matches!(call(&conn, &req).await.unwrap(), CosignerResponse::TaprootApplied { .. }));

    // Handed out, then kill -9 before the commitment was validated: forgotten (its session
    // is not fixed yet, and the store could be an older copy), a new one replaces it.
    let before = verification_nonce(&conn, 0).await;
    cosigner.kill_9();
    let conn = cosigner.start(None).await;
    let v = verification_nonce(&conn, 0).await;
    assert_ne!(v, before);
    // While this process runs, it is the same nonce for commitment 0 on every request.
    assert_eq!(verification_nonce(&conn, 0).await, v);
    // It never signs a counterparty commitment.
    assert_eq!(error_kind(call(&conn, &sign_request(commitment(0), &v)).await.unwrap()), ErrorKind::InvalidRequest);

    // The counterparty signs our commitment 0 in its session (BIP-327, signer-core's
    // vector-checked implementation); the cosigner validates it.
    let secp = Secp256k1::new();
    let holder = tc::holder_keys(&secp, &share.public_key_package, &[leaf_key], &CHANNEL).unwrap();
    let view = tc::TaprootChannelState::public_view(setup(), holder.clone());
    let info = TaprootCommitmentInfo {
        commitment_number: 0,
        per_commitment_point: pk(0x70),
        to_broadcaster_msat: 1_000_000_000,
        to_countersignatory_msat: 0,
        feerate_per_kw: 1_000,
        htlcs: vec![],
    };
    let msg = tc::funding_sighash(&view, &tc::commitment(&view, &info, tc::Side::Holder).unwrap().tx).unwrap();
    let node_key: [u8; 33] = holder.funding.as_slice().try_into().unwrap();
    let theirs: [u8; 33] = pk(0x50).try_into().unwrap();
    let (their_sec, their_pub) = nonce_gen(&[3; 32], Some(&[0x50; 32]), &theirs, None, None, None).unwrap();
    let external =
        nonce_agg_ext(&nonce_agg(&[PubNonce(v.pubnonce.as_slice().try_into().unwrap())]).unwrap(), &node_key).unwrap();
    let aggnonce = nonce_agg(&[external, their_pub]).unwrap();
    let pubkeys = key_sort(&[node_key, theirs]);
    let tweak = tc::session::funding_tweak(&node_key, &theirs).unwrap();
    let ctx = SessionContext { aggnonce: &aggnonce, pubkeys: &pubkeys, tweaks: &[(tweak, true)], msg: &msg };
    let their_psig = sign(their_sec, &[0x50; 32], &ctx).unwrap();
    let validate = TaprootRequest::ValidateHolderCommitment {
        commitment: info,
        verification: vec![v.clone()],
        counterparty_nonce: their_pub.0.to_vec(),
        counterparty_psig: their_psig.to_vec(),
        counterparty_htlc_sigs: vec![],
        outbound_preimages: vec![],
    };
    let req = CosignerRequest::TaprootApply { channel: CHANNEL, request: validate };
    assert!(matches!(call(&conn, &req).await.unwrap(), CosignerResponse::TaprootApplied { .. }));
    cosigner.kill_9();

    // Force close, and the process aborts after the signing committed, before the reply:
    // the reply is lost.
    let conn = cosigner.start(Some("abort-after-nonce-consume")).await;
    let force = CosignerRequest::TaprootSign {
        channel: CHANNEL,
        request: TaprootRequest::SignHolderCommitment { commitment_number: 0 },
        session: NestedSession { leaf_nonces: vec![v.clone()], counterparty_nonce: their_pub.0.to_vec() },
    };
    assert!(call(&conn, &force).await.is_err(), "the reply was lost");
    assert!(!cosigner.wait_exit().success());
    // Asked again: the partial signature made with the verification nonce, verified...
    let conn = cosigner.start(None).await;
    let psig = verified_psig(call(&conn, &force).await.unwrap(), &force, &leaf_key);
    // ...and after a kill -9 the identical one, never a second signature with that nonce.
    cosigner.kill_9();
    let conn = cosigner.start(None).await;
    assert_eq!(verified_psig(call(&conn, &force).await.unwrap(), &force, &leaf_key), psig);
    // Another session (another counterparty nonce) for the same commitment gets nothing.
    let (_, other_pub) = nonce_gen(&[4; 32], Some(&[0x50; 32]), &theirs, None, None, None).unwrap();
    let other = CosignerRequest::TaprootSign {
        channel: CHANNEL,
        request: TaprootRequest::SignHolderCommitment { commitment_number: 0 },
        session: NestedSession { leaf_nonces: vec![v.clone()], counterparty_nonce: other_pub.0.to_vec() },
    };
    assert_eq!(error_kind(call(&conn, &other).await.unwrap()), ErrorKind::InvalidRequest);
}
