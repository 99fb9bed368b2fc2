//! NestedMuSig2 checked against an independent, unmodified BIP-327 implementation (the
//! `musig2` crate) playing the channel counterparty: our three cosigners form one node,
//! the counterparty sees one ordinary signer (one pubnonce, one psig), verifies our
//! node's partial signature with its own code, aggregates, and libsecp256k1 accepts the
//! result under the tweaked root key. Also: a nested tree of one level is BIP-327.

use musig2::BinaryEncoding;
use qls_signer_core::musig2::nested::*;
use qls_signer_core::musig2::*;
use rand::RngCore;

fn pk_of(sk: &[u8; 32]) -> [u8; 33] {
    let secp = secp256k1::Secp256k1::signing_only();
    secp256k1::PublicKey::from_secret_key(&secp, &secp256k1::SecretKey::from_slice(sk).unwrap()).serialize()
}

fn random32() -> [u8; 32] {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b
}

struct Run {
    sig: [u8; 64],
    root_xonly: [u8; 32],
    counterparty_accepted_our_psig: bool,
    leaf_psigs_verified: bool,
}

/// One signing session; `corrupt` flips a bit of cosigner 2's partial signature.
fn run(msg: &[u8], corrupt: bool) -> Run {
    let cosigner_sks: Vec<[u8; 32]> = (0..3).map(|_| random32()).collect();
    let cosigner_pks: Vec<[u8; 33]> = cosigner_sks.iter().map(pk_of).collect();
    let node_pk = node_pubkey(&cosigner_pks).unwrap();
    let their_sk = random32();
    let their_pk = pk_of(&their_sk);
    let tweak = ([0x42u8; 32], true); // a taproot-style x-only tweak on the root only

    // The counterparty's own, independent view of the root key.
    let mut root_keys = [node_pk, their_pk];
    root_keys.sort();
    let points: Vec<secp::Point> = root_keys.iter().map(|k| secp::Point::from_slice(k).unwrap()).collect();
    let their_ctx = musig2::KeyAggContext::new(points)
        .unwrap()
        .with_tweak(secp::Scalar::from_slice(&tweak.0).unwrap(), true)
        .unwrap();
    let root_xonly: [u8; 32] = their_ctx.aggregated_pubkey::<secp::Point>().serialize_xonly();

    // Round 1: leaves make nonces (fresh randomness); our node aggregates and extends.
    let mut secs = Vec::new();
    let mut pubs = Vec::new();
    for (sk, pk) in cosigner_sks.iter().zip(&cosigner_pks) {
        let (s, p) = nonce_gen(&random32(), Some(sk), pk, Some(&root_xonly), None, None).unwrap();
        secs.push(s);
        pubs.push(p);
    }
    let out_1 = nonce_agg(&pubs).unwrap();
    let external = nonce_agg_ext(&out_1, &node_pk).unwrap();

    let their_secnonce = musig2::SecNonce::generate(
        random32(),
        secp::Scalar::from_slice(&their_sk).unwrap(),
        their_ctx.aggregated_pubkey::<secp::Point>(),
        msg,
        [],
    );
    let their_pubnonce = their_secnonce.public_nonce();
    let our_pubnonce = musig2::PubNonce::from_bytes(&external.0).unwrap();
    let their_aggnonce = musig2::AggNonce::sum([our_pubnonce.clone(), their_pubnonce.clone()]);
    let out_0 = nonce_agg(&[external, PubNonce(their_pubnonce.to_bytes())]).unwrap();
    assert_eq!(out_0.0.to_vec(), their_aggnonce.to_bytes().to_vec(), "both sides agree on the root nonce");

    // Round 2: each leaf signs with its nested session context; the node sums.
    let mut leaf_ok = true;
    let mut psigs = Vec::new();
    for (i, ((sec, sk), pk)) in secs.into_iter().zip(&cosigner_sks).zip(&cosigner_pks).enumerate() {
        let tree = [vec![their_pk], others(&cosigner_pks, pk)];
        let path = [out_0, out_1];
        let ctx = NestedSessionContext { nonce_path: &path, pk_tree: &tree, tweaks: &[tweak], msg };
        let mut psig = nested_sign(sec, sk, &ctx).unwrap();
        if corrupt && i == 1 {
            psig[31] ^= 1;
        }
        leaf_ok &= nested_partial_sig_verify(&psig, &pubs[i], pk, &ctx).unwrap();
        psigs.push(psig);
    }
    let node_psig = psig_sum(&psigs).unwrap();

    // The counterparty treats our node as one BIP-327 signer.
    let ours = secp::MaybeScalar::from_slice(&node_psig).unwrap();
    let accepted = musig2::verify_partial(
        &their_ctx,
        ours,
        &their_aggnonce,
        secp::Point::from_slice(&node_pk).unwrap(),
        &our_pubnonce,
        msg,
    )
    .is_ok();
    let theirs: secp::MaybeScalar = musig2::sign_partial(
        &their_ctx,
        secp::Scalar::from_slice(&their_sk).unwrap(),
        their_secnonce,
        &their_aggnonce,
        msg,
    )
    .unwrap();
    let sig: musig2::CompactSignature =
        match musig2::aggregate_partial_signatures(&their_ctx, &their_aggnonce, [ours, theirs], msg) {
            Ok(s) => s,
            Err(_) => {
                return Run {
                    sig: [0; 64],
                    root_xonly,
                    counterparty_accepted_our_psig: accepted,
                    leaf_psigs_verified: leaf_ok,
                }
            }
        };
    Run { sig: sig.serialize(), root_xonly, counterparty_accepted_our_psig: accepted, leaf_psigs_verified: leaf_ok }
}

#[test]
fn nested_node_signs_with_unmodified_bip327_counterparty() {
    for _ in 0..8 {
        let msg = random32();
        let r = run(&msg, false);
        assert!(r.leaf_psigs_verified);
        assert!(r.counterparty_accepted_our_psig, "the musig2 crate rejects our node's partial signature");
        qls_signer_core::schnorr::verify_bip340(&r.root_xonly, &msg, &r.sig)
            .expect("libsecp256k1 rejects the final signature");
    }
}

#[test]
fn corrupted_leaf_share_is_caught_by_both_sides() {
    let msg = random32();
    let r = run(&msg, true);
    assert!(!r.leaf_psigs_verified, "our nested verification must catch the bad leaf");
    assert!(!r.counterparty_accepted_our_psig, "the counterparty must reject the node's sum");
    assert!(qls_signer_core::schnorr::verify_bip340(&r.root_xonly, &msg, &r.sig).is_err());
}

#[test]
fn one_level_tree_is_bip327() {
    // Λ = 1 is BIP-327 over the sorted key list: the vector-checked `sign` and the nested
    // code give the same partial signature for the same secret nonce and session.
    let p =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/vectors/bip327/sign_verify_vectors.json");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    let h = |x: &serde_json::Value| hex::decode(x.as_str().unwrap()).unwrap();
    let sk: [u8; 32] = h(&v["sk"]).try_into().unwrap();
    let keys: Vec<[u8; 33]> = (0..3).map(|i| h(&v["pubkeys"][i]).try_into().unwrap()).collect();
    let agg = AggNonce(h(&v["aggnonces"][0]).try_into().unwrap());
    let msg = h(&v["msgs"][0]);
    let secnonce: [u8; 97] = h(&v["secnonces"][0]).try_into().unwrap();
    let me = pk_of(&sk);
    let tree = [others(&keys, &me)];
    let ctx = NestedSessionContext { nonce_path: &[agg], pk_tree: &tree, tweaks: &[], msg: &msg };
    let psig = nested_sign(SecNonce::from_bytes(secnonce), &sk, &ctx).unwrap();
    let sorted = key_sort(&keys);
    let flat = SessionContext { aggnonce: &agg, pubkeys: &sorted, tweaks: &[], msg: &msg };
    assert_eq!(psig, sign(SecNonce::from_bytes(secnonce), &sk, &flat).unwrap());
    // With the vector's own (unsorted) order the flat result differs, as it must.
    let unsorted = SessionContext { aggnonce: &agg, pubkeys: &keys, tweaks: &[], msg: &msg };
    assert_ne!(psig, sign(SecNonce::from_bytes(secnonce), &sk, &unsorted).unwrap());
}
