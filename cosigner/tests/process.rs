//! The cosigner as a real process (`qls-cosigner run`), driven over QUIC by a test that
//! plays the coordinator: nonce safety across `kill -9` and across an abort right after
//! the nonce is consumed and across a restore of an older copy of the store, bad frames
//! answered with typed errors, unpinned peers refused.

mod common;

use std::time::Duration;

use common::*;
use qls_protocol::quic::{client_endpoint, connect, Identity};
use qls_protocol::*;
use qls_signer_core::frost::{self, round2};
use qls_signer_core::keys::{message_key_id, message_key_root};
use quinn::Connection;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nonce_refused_after_abort_between_consumption_and_share() {
    let mut cosigner = Cosigner::new();
    let conn = cosigner.start(Some("abort-after-nonce-consume")).await;
    let (theirs, ours) = import_key(&conn, &cosigner).await;
    let pool = commitments(&conn, &theirs, 1).await;
    let (req, _, _) = sign_request(&theirs, &ours, pool[0].0, pool[0].1, [1; 32]);
    assert!(call(&conn, &req).await.is_err(), "the process must die before any share is sent");
    let status = cosigner.wait_exit();
    assert!(!status.success(), "aborted: {status:?}");

    let conn = cosigner.start(None).await;
    assert_eq!(error_kind(call(&conn, &req).await.unwrap()), ErrorKind::ConsumedNonce);
    let (other_msg, _, _) = sign_request(&theirs, &ours, pool[0].0, pool[0].1, [2; 32]);
    assert_eq!(error_kind(call(&conn, &other_msg).await.unwrap()), ErrorKind::ConsumedNonce);
    assert!(cosigner.data_dir().join("cosigner.redb").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_after_commitment_then_nonce_used_once_only() {
    let mut cosigner = Cosigner::new();
    let conn = cosigner.start(None).await;
    let (theirs, ours) = import_key(&conn, &cosigner).await;
    let pool = commitments(&conn, &theirs, 2).await;
    assert_eq!(pool.len(), 2);
    cosigner.kill_9();

    let conn = cosigner.start(None).await;
    // A restart forgets every nonce handed out before it (the store could be an older
    // copy of itself): those ids are refused as consumed, and fresh ones come after them.
    let (before, _, _) = sign_request(&theirs, &ours, pool[1].0, pool[1].1, [3; 32]);
    assert_eq!(error_kind(call(&conn, &before).await.unwrap()), ErrorKind::ConsumedNonce);
    let pool = commitments(&conn, &theirs, 2).await;
    assert_eq!(pool.len(), 2);
    assert!(
        pool.iter().all(|(id, _)| *id > 2),
        "ids never go back: {:?}",
        pool.iter().map(|p| p.0).collect::<Vec<_>>()
    );
    let msg = [3; 32];
    let (req, package, our_nonce) = sign_request(&theirs, &ours, pool[1].0, pool[1].1, msg);
    let share = match call(&conn, &req).await.unwrap() {
        CosignerResponse::Shares { shares, .. } => round2::SignatureShare::deserialize(&shares[0]).unwrap(),
        other => panic!("{other:?}"),
    };
    // Raw messages are signed under the message key (a tweak of the wallet key).
    let root = message_key_root();
    let our_share = round2::sign_with_tweak(&package, &our_nonce, &ours.key_package, Some(root.as_slice())).unwrap();
    let shares = [(theirs.identifier(), share), (ours.identifier(), our_share)].into_iter().collect();
    let sig = frost::aggregate_with_tweak(&package, &shares, &theirs.public_key_package, Some(root.as_slice()))
        .unwrap()
        .serialize()
        .unwrap();
    let secp = secp256k1::Secp256k1::verification_only();
    let pk = secp256k1::XOnlyPublicKey::from_slice(&message_key_id(&theirs.public_key_package)).unwrap();
    secp.verify_schnorr(
        &secp256k1::schnorr::Signature::from_slice(&sig).unwrap(),
        &secp256k1::Message::from_digest(msg),
        &pk,
    )
    .unwrap();

    cosigner.kill_9();
    let conn = cosigner.start(None).await;
    let (reuse, _, _) = sign_request(&theirs, &ours, pool[1].0, pool[1].1, [4; 32]);
    assert_eq!(error_kind(call(&conn, &reuse).await.unwrap()), ErrorKind::ConsumedNonce);
    let (unknown, _, _) = sign_request(&theirs, &ours, 1_000_000, pool[0].1, [5; 32]);
    assert_eq!(error_kind(call(&conn, &unknown).await.unwrap()), ErrorKind::UnknownNonce);
    // A package whose commitment for this cosigner is not the nonce's is refused too.
    let pool = commitments(&conn, &theirs, 2).await;
    let (mismatch, _, _) = sign_request(&theirs, &ours, pool[0].0, pool[1].1, [6; 32]);
    assert_eq!(error_kind(call(&conn, &mismatch).await.unwrap()), ErrorKind::InvalidRequest);
}

async fn raw_exchange(c: &Connection, bytes: &[u8]) -> CosignerResponse {
    let (mut send, mut recv) = c.open_bi().await.unwrap();
    send.write_all(bytes).await.unwrap();
    let _ = send.finish();
    qls_protocol::quic::read_frame::<CosignerResponse>(&mut recv).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_oversized_and_wrong_version_frames_get_typed_errors() {
    let mut cosigner = Cosigner::new();
    let conn = cosigner.start(None).await;

    let oversized = ((limits::MAX_FRAME_BYTES + 1) as u32).to_be_bytes();
    assert_eq!(error_kind(raw_exchange(&conn, &oversized).await), ErrorKind::BadFrame);

    let mut wrong_version = encode_frame(&CosignerRequest::Hello).unwrap();
    wrong_version[4..6].copy_from_slice(&2u16.to_be_bytes());
    assert_eq!(error_kind(raw_exchange(&conn, &wrong_version).await), ErrorKind::UnsupportedVersion);

    let mut garbage = 40u32.to_be_bytes().to_vec();
    garbage.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    garbage.extend_from_slice(&[0xee; 38]);
    assert_eq!(error_kind(raw_exchange(&conn, &garbage).await), ErrorKind::BadFrame);

    let too_many =
        CosignerRequest::NonceCommitments { key_id: [0; 32], after_id: None, count: limits::MAX_NONCE_BATCH + 1 };
    assert_eq!(error_kind(raw_exchange(&conn, &encode_frame(&too_many).unwrap()).await), ErrorKind::InvalidRequest);

    let unknown_key = CosignerRequest::NonceCommitments { key_id: [7; 32], after_id: None, count: 1 };
    assert_eq!(error_kind(call(&conn, &unknown_key).await.unwrap()), ErrorKind::UnknownKey);
    let dkg_unpinned_peer = CosignerRequest::DkgRound1 {
        session: [1; 32],
        threshold: 2,
        participants: vec![DkgParticipant { cert_der: Identity::generate("x").unwrap().cert_der.to_vec() }; 2],
    };
    assert_eq!(error_kind(call(&conn, &dkg_unpinned_peer).await.unwrap()), ErrorKind::Forbidden);

    // After all that, the cosigner still serves.
    assert!(matches!(call(&conn, &CosignerRequest::Hello).await.unwrap(), CosignerResponse::Hello { .. }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpinned_coordinator_is_refused() {
    let mut cosigner = Cosigner::new();
    let _pinned = cosigner.start(None).await;
    let stranger = Identity::generate("stranger").unwrap();
    let endpoint = client_endpoint("127.0.0.1:0".parse().unwrap()).unwrap();
    let outcome = async {
        let c = connect(&endpoint, &stranger, cosigner.addr, cosigner.fingerprint).await.map_err(|e| e.to_string())?;
        call(&c, &CosignerRequest::Hello).await.map_err(|e| e.to_string())
    };
    let outcome = tokio::time::timeout(Duration::from_secs(5), outcome).await.expect("refusal is prompt");
    assert!(outcome.is_err(), "an unpinned coordinator got {outcome:?}");
}

/// A cosigner started from an older copy of its store (a restored backup or VM snapshot)
/// holds secret nonces that already signed in the timeline it was copied from. A
/// coordinator that recorded a signing package replays it, and the same nonce with another
/// message, against the restored copy: both are refused, so no nonce signs twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restored_store_copy_never_signs_with_a_nonce_again() {
    let mut cosigner = Cosigner::new();
    let conn = cosigner.start(None).await;
    let (theirs, ours) = import_key(&conn, &cosigner).await;
    let pool = commitments(&conn, &theirs, 3).await;
    // The backup: taken while the pool's nonces are unused (the process is stopped first,
    // as a snapshot tool would quiesce it).
    cosigner.kill_9();
    let store = cosigner.data_dir().join("cosigner.redb");
    let backup = cosigner.data_dir().join("backup.redb");
    std::fs::copy(&store, &backup).unwrap();

    // The live timeline: restarted, fresh nonces, one signature (the coordinator records it).
    let conn = cosigner.start(None).await;
    let live = commitments(&conn, &theirs, 1).await;
    let (recorded, _, _) = sign_request(&theirs, &ours, live[0].0, live[0].1, [7; 32]);
    assert!(matches!(call(&conn, &recorded).await.unwrap(), CosignerResponse::Shares { .. }));
    cosigner.kill_9();

    // The restore: the old copy comes back and starts.
    std::fs::copy(&backup, &store).unwrap();
    let conn = cosigner.start(None).await;
    for (id, c) in pool.iter().chain(&live) {
        for msg in [[7u8; 32], [8; 32]] {
            let (replay, _, _) = sign_request(&theirs, &ours, *id, *c, msg);
            let reply = call(&conn, &replay).await.unwrap();
            assert!(
                matches!(
                    reply,
                    CosignerResponse::Error {
                        kind: ErrorKind::ConsumedNonce | ErrorKind::UnknownNonce | ErrorKind::InvalidRequest,
                        ..
                    }
                ),
                "nonce {id} signed again after a restore: {reply:?}"
            );
        }
    }
    // It still serves, with nonces it makes now (the live timeline's id included: its
    // recorded package names another commitment and is refused).
    let fresh = commitments(&conn, &theirs, 2).await;
    let (replay, _, _) = sign_request(&theirs, &ours, live[0].0, live[0].1, [8; 32]);
    assert_eq!(error_kind(call(&conn, &replay).await.unwrap()), ErrorKind::InvalidRequest);
    assert!(!pool.iter().chain(&live).any(|(_, c)| *c == fresh[0].1), "a fresh nonce repeats an old commitment");
    let (req, _, _) = sign_request(&theirs, &ours, fresh[0].0, fresh[0].1, [9; 32]);
    assert!(matches!(call(&conn, &req).await.unwrap(), CosignerResponse::Shares { .. }));
}

/// A coordinator's connection to a cosigner that was `kill -9`ed and restarted is reset by
/// the restarted process on its next packet (stateless reset under the identity's key),
/// so the coordinator redials at once instead of waiting out the 30 s idle timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_cosigner_resets_the_connections_of_its_previous_run() {
    let mut cosigner = Cosigner::new();
    let old = cosigner.start(None).await;
    cosigner.kill_9();
    let _new = cosigner.start(None).await;
    // The old connection's next packet (this request, or a keep-alive) meets the new
    // process, which answers with a stateless reset.
    let started = std::time::Instant::now();
    let answer = call(&old, &CosignerRequest::Hello).await;
    assert!(answer.is_err(), "the dead connection answered: {answer:?}");
    let reason = tokio::time::timeout(std::time::Duration::from_secs(5), old.closed())
        .await
        .expect("the old connection is closed well before the idle timeout");
    assert!(matches!(reason, quinn::ConnectionError::Reset), "{reason:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
}
