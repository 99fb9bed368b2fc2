//! Holder commitments, force close and FROST items, in process: three leaves hand out a
//! verification nonce, the independent `musig2` crate (the counterparty) signs our holder
//! commitment in its session, the policy checks that partial signature and the HTLC
//! signatures, the leaves complete the force-close signature (libsecp256k1 accepts it under
//! the funding output key), and the FROST group's signatures on second-level transactions
//! and sweeps verify under keys taken from the transactions' own scripts. Every rule is
//! tripped.

use alloc::vec;
use alloc::vec::Vec;

use bitcoin::consensus::encode::serialize;
use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{schnorr, Keypair, Message, PublicKey, SecretKey, XOnlyPublicKey};
use bitcoin::sighash::TapSighashType;
use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness};
use musig2::BinaryEncoding;
use qls_protocol::{
    HtlcInfo, LeafNonce, NestedSession, SpentOutput, TaprootCommitmentInfo, TaprootFrostItem, TaprootRequest,
};

use super::build::{commitment, Side};
use super::tests::{hash, htlc, pk, wallet, Fx, CHANNEL, PREIMAGE, VALUE};

use super::*;
use crate::bolt3_keys::derive_privkey;
use crate::frost_tweak::tests::sign_with;
use crate::musig2::nested::{nested_sign, nonce_agg_ext, psig_sum, NestedSessionContext};
use crate::musig2::{nonce_agg, nonce_gen, PubNonce, SecNonce};
use crate::policy::PolicyTag;

/// Our per-commitment secret `n` (a toy chain; only the points matter here).
fn our_secret(n: u64) -> [u8; 32] {
    lightning::ln::chan_utils::build_commitment_secret(&[0x66; 32], (1 << 48) - 1 - n)
}

fn our_point(fx: &Fx, n: u64) -> Vec<u8> {
    PublicKey::from_secret_key(&fx.secp, &SecretKey::from_slice(&our_secret(n)).unwrap()).serialize().to_vec()
}

fn holder_info(fx: &Fx, n: u64, ours: u64, theirs: u64, htlcs: Vec<HtlcInfo>) -> TaprootCommitmentInfo {
    TaprootCommitmentInfo {
        commitment_number: n,
        per_commitment_point: our_point(fx, n),
        to_broadcaster_msat: ours,
        to_countersignatory_msat: theirs,
        feerate_per_kw: 1_000,
        htlcs,
    }
}

/// A verification nonce: one leaf nonce per cosigner (the secrets kept by the test).
struct Verification {
    secs: Vec<SecNonce>,
    nonces: Vec<LeafNonce>,
}

fn channel_leaves(fx: &Fx) -> ([u8; 33], Vec<[u8; 33]>, Vec<[u8; 33]>) {
    let base: Vec<[u8; 33]> = fx.leaves.iter().map(|l| l.as_slice().try_into().unwrap()).collect();
    let (node, leaves) = funding_node_key(&fx.secp, &base, &CHANNEL).unwrap();
    (node, leaves, base)
}

fn verification(fx: &Fx, seed: u8) -> Verification {
    let (_, leaves, _) = channel_leaves(fx);
    let mut secs = Vec::new();
    let mut nonces = Vec::new();
    for (i, leaf) in leaves.iter().enumerate() {
        let (sec, public) = nonce_gen(&[seed + i as u8; 32], None, leaf, None, None, None).unwrap();
        secs.push(sec);
        nonces.push(LeafNonce { cosigner: [i as u8 + 1; 32], nonce_id: u64::from(seed), pubnonce: public.0.to_vec() });
    }
    Verification { secs, nonces }
}

struct Counterparty {
    ctx: musig2::KeyAggContext,
    aggnonce: musig2::AggNonce,
    nonce: musig2::PubNonce,
    psig: secp::MaybeScalar,
    msg: [u8; 32],
}

/// The counterparty (musig2 crate) signs our holder commitment `info` against `v`.
fn counterparty_signs(fx: &Fx, info: &TaprootCommitmentInfo, v: &Verification, seed: u8) -> Counterparty {
    let state = fx.state.as_ref().unwrap();
    let msg = funding_sighash(state, &commitment(state, info, Side::Holder).unwrap().tx).unwrap();
    let (node, _, _) = channel_leaves(fx);
    let leaf_nonces: Vec<_> =
        v.nonces.iter().map(|n| crate::musig2::PubNonce(n.pubnonce.as_slice().try_into().unwrap())).collect();
    let external = nonce_agg_ext(&nonce_agg(&leaf_nonces).unwrap(), &node).unwrap();
    let their_pk: [u8; 33] = pk(&fx.secp, 0x50).try_into().unwrap();
    let sorted = crate::musig2::key_sort(&[node, their_pk]);
    let pks: Vec<secp::Point> = sorted.iter().map(|k| secp::Point::from_slice(k).unwrap()).collect();
    let ctx = musig2::KeyAggContext::new(pks).unwrap().with_unspendable_taproot_tweak().unwrap();
    let sec = musig2::SecNonce::generate(
        [seed; 32],
        secp::Scalar::from_slice(&[0x50; 32]).unwrap(),
        ctx.aggregated_pubkey::<secp::Point>(),
        msg,
        [],
    );
    let nonce = sec.public_nonce();
    let aggnonce = musig2::AggNonce::sum([musig2::PubNonce::from_bytes(&external.0).unwrap(), nonce.clone()]);
    let psig: secp::MaybeScalar =
        musig2::sign_partial(&ctx, secp::Scalar::from_slice(&[0x50; 32]).unwrap(), sec, &aggnonce, msg).unwrap();
    Counterparty { ctx, aggnonce, nonce, psig, msg }
}

/// The counterparty's HTLC signatures on our second-level transactions (its HTLC key).
fn counterparty_htlc_sigs(fx: &Fx, info: &TaprootCommitmentInfo) -> Vec<Vec<u8>> {
    let state = fx.state.as_ref().unwrap();
    let built = commitment(state, info, Side::Holder).unwrap();
    let pcp: [u8; 33] = info.per_commitment_point.as_slice().try_into().unwrap();
    let sk = SecretKey::from_slice(&derive_privkey(&[0x54; 32], &pcp).unwrap()).unwrap();
    let keypair = Keypair::from_secret_key(&fx.secp, &sk);
    built
        .second_level(info)
        .unwrap()
        .into_iter()
        .map(|(_, tx)| {
            let m = tx.sighash(TapSighashType::SinglePlusAnyoneCanPay).unwrap();
            let mut sig = fx.secp.sign_schnorr_no_aux_rand(&Message::from_digest(m), &keypair).serialize().to_vec();
            sig.push(TapSighashType::SinglePlusAnyoneCanPay as u8);
            sig
        })
        .collect()
}

/// Validates `info` as cosigner 1, whose stored verification nonce is the first of `v`.
fn validate_as_first(
    fx: &mut Fx,
    info: &TaprootCommitmentInfo,
    v: &Verification,
    c: &Counterparty,
    htlc_sigs: Vec<Vec<u8>>,
) -> Vec<PolicyTag> {
    fx.own_verification = Some(v.nonces[0].clone());
    fx.run(validate(info, v, c, htlc_sigs, vec![])).0
}

fn validate(
    info: &TaprootCommitmentInfo,
    v: &Verification,
    c: &Counterparty,
    htlc_sigs: Vec<Vec<u8>>,
    preimages: Vec<[u8; 32]>,
) -> TaprootRequest {
    TaprootRequest::ValidateHolderCommitment {
        commitment: info.clone(),
        verification: v.nonces.clone(),
        counterparty_nonce: c.nonce.to_bytes().to_vec(),
        counterparty_psig: c.psig.serialize().to_vec(),
        counterparty_htlc_sigs: htlc_sigs,
        outbound_preimages: preimages,
    }
}

fn verify(fx: &Fx, sig: &[u8; 64], msg: &[u8; 32], key: &[u8; 33]) {
    let key = XOnlyPublicKey::from(PublicKey::from_slice(key).unwrap());
    fx.secp
        .verify_schnorr(&schnorr::Signature::from_slice(sig).unwrap(), &Message::from_digest(*msg), &key)
        .expect("libsecp256k1 accepts the FROST signature");
}

/// A channel the counterparty funded, pushing us 600,000 sat, with holder commitment 1
/// validated (an incoming HTLC), 0 revoked.
fn with_holder_commitments(fx: &mut Fx) -> (TaprootCommitmentInfo, Verification, Counterparty) {
    let (ours, theirs) = (600_000_000, 400_000_000);
    let mut setup = fx.setup();
    setup.is_outbound = false;
    let (setup, funding) = fx.funded(setup);
    assert_eq!(fx.run(TaprootRequest::Setup(setup)).0, vec![]);
    assert_eq!(fx.run(fx.commitment(0, theirs, ours, vec![])).0, vec![]);
    let h0 = holder_info(fx, 0, ours, theirs, vec![]);
    let v0 = verification(fx, 10);
    let c0 = counterparty_signs(fx, &h0, &v0, 1);
    assert_eq!(validate_as_first(fx, &h0, &v0, &c0, vec![]), vec![]);
    // The counterparty pays us 20,000 sat: an incoming HTLC on our commitment 1.
    let incoming = HtlcInfo { offered: false, amount_msat: 20_000_000, cltv_expiry: 600, payment_hash: hash() };
    let h1 = holder_info(fx, 1, ours, theirs - 20_000_000, vec![incoming]);
    let v1 = verification(fx, 20);
    let c1 = counterparty_signs(fx, &h1, &v1, 2);
    // A partial signature made for another message, and a missing HTLC signature.
    let wrong = counterparty_signs(fx, &holder_info(fx, 1, ours + 20_000_000, theirs - 20_000_000, vec![]), &v1, 3);
    let sigs = counterparty_htlc_sigs(fx, &h1);
    assert_eq!(validate_as_first(fx, &h1, &v1, &wrong, sigs.clone()), vec![PolicyTag::CommitmentCounterpartySig]);
    assert_eq!(validate_as_first(fx, &h1, &v1, &c1, vec![]), vec![PolicyTag::CommitmentHtlcSigs]);
    // The HTLC offered by us instead, uncovered: our balance would leave to the counterparty.
    let drain = holder_info(fx, 1, ours - 20_000_000, theirs, vec![HtlcInfo { offered: true, ..h1.htlcs[0] }]);
    let cd = counterparty_signs(fx, &drain, &v1, 4);
    let dsigs = counterparty_htlc_sigs(fx, &drain);
    assert_eq!(validate_as_first(fx, &drain, &v1, &cd, dsigs), vec![PolicyTag::RoutingUnbalanced]);
    // Before the funding is proven on chain the incoming HTLC covers nothing; once it is,
    // the next validation counts it.
    let before_proof = fx.clone_state();
    assert_eq!(validate_as_first(fx, &h1, &v1, &c1, sigs.clone()), vec![]);
    assert!(fx.payments.get(&hash()).is_none_or(|e| e.incoming_msat == 0));
    fx.restore_state(before_proof);
    assert_eq!(fx.confirm_funding(&funding), vec![]);
    assert_eq!(validate_as_first(fx, &h1, &v1, &c1, sigs), vec![]);
    // The incoming HTLC now covers a forward of the same hash.
    assert_eq!(fx.payments[&hash()].incoming_msat, 20_000_000);
    // Commitment 1 is the latest: it cannot be revoked; 0 can, once.
    let revoke = |n| TaprootRequest::RevokeHolderCommitment { commitment_number: n };
    assert_eq!(fx.run(revoke(1)).0, vec![PolicyTag::RevokeBeforeNext]);
    // Nor is 0 revoked before this cosigner keeps its escrow share of 1's force close.
    fx.escrowed = false;
    assert_eq!(fx.run(revoke(0)).0, vec![PolicyTag::RevokeBeforeNext]);
    fx.escrowed = true;
    assert_eq!(fx.run(revoke(0)).0, vec![]);
    assert_eq!(fx.state.as_ref().unwrap().holder_revoked, Some(0));
    // A revoked holder commitment is not validated again, even as a "new" one.
    assert_eq!(
        validate_as_first(fx, &h0, &v0, &c0, vec![]),
        vec![PolicyTag::CommitmentSequence, PolicyTag::CommitmentHolderRevoked]
    );
    (h1, v1, c1)
}

const IDS: [[u8; 32]; 3] = [[1; 32], [2; 32], [3; 32]];

/// Every leaf's partial signature of the holder commitment `c` signed, in its
/// verification session `v` (consumed).
fn leaf_psigs(fx: &Fx, v: Verification, c: &Counterparty) -> Vec<[u8; 32]> {
    let (node, leaves, base) = channel_leaves(fx);
    let session = NestedSession { leaf_nonces: v.nonces.clone(), counterparty_nonce: c.nonce.to_bytes().to_vec() };
    let their_pk: [u8; 33] = pk(&fx.secp, 0x50).try_into().unwrap();
    let mut psigs = Vec::new();
    for (i, sec) in v.secs.into_iter().enumerate() {
        let ls = leaf_session(&session, &IDS, &leaves, &leaves[i], &node, &their_pk, &CHANNEL).unwrap();
        let ctx =
            NestedSessionContext { nonce_path: &ls.nonce_path, pk_tree: &ls.pk_tree, tweaks: &[ls.tweak], msg: &c.msg };
        let sk = channel_leaf_secret(&fx.leaf_sks[i], &base[i], &CHANNEL).unwrap();
        psigs.push(nested_sign(sec, &sk, &ctx).unwrap());
    }
    psigs
}

/// Whether our partial signature `ours` with the counterparty's completes a signature
/// libsecp256k1 accepts under the funding output key.
fn force_close_verifies(fx: &Fx, ours: &[u8; 32], c: &Counterparty) -> bool {
    let Ok(ours) = secp::MaybeScalar::from_slice(ours) else { return false };
    let aggregated: Result<musig2::CompactSignature, _> =
        musig2::aggregate_partial_signatures(&c.ctx, &c.aggnonce, [ours, c.psig], c.msg);
    let Ok(sig) = aggregated else { return false };
    let state = fx.state.clone().unwrap();
    let output_key = funding_txout(&state).unwrap().script_pubkey.as_bytes()[2..].to_vec();
    fx.secp
        .verify_schnorr(
            &schnorr::Signature::from_slice(&sig.serialize()).unwrap(),
            &Message::from_digest(c.msg),
            &XOnlyPublicKey::from_slice(&output_key).unwrap(),
        )
        .is_ok()
}

/// The force-close escrow: each leaf deals its partial signature 2-of-3, sealed; each
/// keeps the sum of its shares; any 2 kept shares complete a force close libsecp accepts,
/// one share (with that leaf's own partial signature) completes nothing; a deal that
/// shares another value, a share opened by the wrong receiver, a tampered ciphertext or a
/// missing dealer is refused; a revoked or stale commitment is not escrowed.
#[test]
fn any_two_of_three_escrowed_shares_complete_the_force_close_and_one_does_not() {
    use super::escrow::{combine, deal, escrow_message, expected_points, keep, parties, EscrowError};
    let mut fx = Fx::new();
    let (_, v1, c1) = with_holder_commitments(&mut fx);
    let state = fx.state.clone().unwrap();
    let (msg, refused) = escrow_message(&state, 1).unwrap();
    assert_eq!((msg, refused), (c1.msg, vec![]));
    let stale: Vec<_> = escrow_message(&state, 0).unwrap().1.into_iter().map(|v| v.tag).collect();
    assert_eq!(stale, vec![PolicyTag::CommitmentHolderUnknown, PolicyTag::CommitmentHolderRevoked]);

    let leaf_nonces: Vec<PubNonce> =
        v1.nonces.iter().map(|l| PubNonce(l.pubnonce.clone().try_into().unwrap())).collect();
    let psigs = leaf_psigs(&fx, v1, &c1);
    let (node, _, _) = channel_leaves(&fx);
    let external = nonce_agg_ext(&nonce_agg(&leaf_nonces).unwrap(), &node).unwrap().0;
    let their_pk: [u8; 33] = pk(&fx.secp, 0x50).try_into().unwrap();
    let their_nonce: [u8; 66] = c1.nonce.to_bytes();
    let quorum_valid =
        |p: &[u8; 32]| super::escrow::quorum_psig_valid(p, &node, &external, &their_pk, &their_nonce, &msg);
    let party = parties(&fx.secp, &state, &IDS, &CHANNEL).unwrap();
    let (_, _, base) = channel_leaves(&fx);
    let sk = |i: usize| channel_leaf_secret(&fx.leaf_sks[i], &base[i], &CHANNEL).unwrap();
    let expected = expected_points(&state, &party, &CHANNEL, &msg).unwrap();
    let deals: Vec<_> = (0..3).map(|i| deal(&psigs[i], 2, &party, &IDS[i], &sk(i), &CHANNEL, 1).unwrap()).collect();
    assert_eq!(deal(&psigs[0], 2, &party, &IDS[0], &sk(0), &CHANNEL, 1).unwrap(), deals[0], "deterministic");
    let kept: Vec<[u8; 32]> =
        (0..3).map(|i| keep(&deals, 2, &party, &IDS[i], &sk(i), &CHANNEL, 1, &expected).unwrap()).collect();
    for pair in [[0, 1], [0, 2], [1, 2]] {
        let shares: Vec<_> = pair.iter().map(|&i| (IDS[i], kept[i])).collect();
        let ours = combine(&shares, 2, 1).unwrap();
        assert_eq!(ours, psig_sum(&psigs).unwrap(), "cosigners {pair:?}");
        assert!(force_close_verifies(&fx, &ours, &c1), "cosigners {pair:?}");
        assert!(quorum_valid(&ours), "what the coordinator checks before returning it");
    }
    // One cosigner alone: too few shares; neither its share nor its own partial
    // signature, nor their sum, is the quorum's partial signature.
    assert!(matches!(combine(&[(IDS[0], kept[0])], 2, 1), Err(EscrowError::Combine { .. })));
    let alone = [kept[0], psigs[0], psig_sum(&[kept[0], psigs[0]]).unwrap()];
    assert!(alone.iter().all(|guess| !force_close_verifies(&fx, guess, &c1) && !quorum_valid(guess)));

    // Cosigner 3 deals a share of something else than its partial signature.
    let mut forged = deals.clone();
    forged[2] = deal(&psigs[0], 2, &party, &IDS[2], &sk(2), &CHANNEL, 1).unwrap();
    let refusal = keep(&forged, 2, &party, &IDS[0], &sk(0), &CHANNEL, 1, &expected).unwrap_err();
    assert!(matches!(refusal, EscrowError::BadDeal { ref dealer, .. } if *dealer == hex::encode(&IDS[2][..4])));
    // Cosigner 1's share for cosigner 2 readdressed to cosigner 3, and a tampered one.
    let mut readdressed = deals.clone();
    readdressed[0].sealed[2].ciphertext = readdressed[0].sealed[1].ciphertext.clone();
    assert!(keep(&readdressed, 2, &party, &IDS[2], &sk(2), &CHANNEL, 1, &expected).is_err());
    let mut tampered = deals.clone();
    tampered[1].sealed[0].ciphertext[0] ^= 1;
    assert!(keep(&tampered, 2, &party, &IDS[0], &sk(0), &CHANNEL, 1, &expected).is_err());
    // A deal missing, or one of another threshold.
    assert!(keep(&deals[..2], 2, &party, &IDS[0], &sk(0), &CHANNEL, 1, &expected).is_err());
    let three = deal(&psigs[1], 3, &party, &IDS[1], &sk(1), &CHANNEL, 1).unwrap();
    let mut other_threshold = deals.clone();
    other_threshold[1] = three;
    assert!(keep(&other_threshold, 2, &party, &IDS[0], &sk(0), &CHANNEL, 1, &expected).is_err());
}

#[test]
fn holder_commitment_is_validated_revoked_and_completed_for_force_close() {
    let mut fx = Fx::new();
    let (h1, v1, c1) = with_holder_commitments(&mut fx);
    let sign = |n| TaprootRequest::SignHolderCommitment { commitment_number: n };
    assert_eq!(fx.run(sign(0)).0, vec![PolicyTag::CommitmentHolderUnknown, PolicyTag::CommitmentHolderRevoked]);
    let (tags, msg) = fx.run(sign(1));
    assert_eq!(tags, vec![]);
    assert_eq!(msg, Some(c1.msg));
    assert_eq!(fx.state.as_ref().unwrap().close, crate::channel::CloseState::ForceClosed { commitment_number: 1 });

    // The leaves complete it with the verification nonce; the counterparty's partial
    // signature (stored) aggregates with ours into a signature libsecp accepts.
    let psigs = leaf_psigs(&fx, v1, &c1);
    assert!(force_close_verifies(&fx, &psig_sum(&psigs).unwrap(), &c1));
    // After the force close: no new commitment of either side, no cooperative close.
    assert_eq!(fx.run(fx.commitment(1, 400_000_000, 600_000_000, vec![])).0, vec![PolicyTag::ChannelClosed]);
    let _ = h1;
}

fn sweep_tx(spent: OutPoint, sequence: u32, outputs: Vec<TxOut>) -> Vec<u8> {
    serialize(&Transaction {
        version: bitcoin::transaction::Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: spent,
            script_sig: ScriptBuf::new(),
            sequence: Sequence(sequence),
            witness: Witness::new(),
        }],
        output: outputs,
    })
}

#[test]
fn frost_signs_htlc_transactions_and_sweeps_only_of_our_outputs_to_us() {
    let mut fx = Fx::new();
    let (h1, _, _) = with_holder_commitments(&mut fx);
    // Before a force close, nothing of the holder commitment can be signed.
    let (_, tags) = fx.frost(&TaprootFrostItem::HolderHtlc { htlc_index: 0, preimage: Some(PREIMAGE) });
    assert_eq!(tags, vec![PolicyTag::SweepSource]);
    assert_eq!(fx.run(TaprootRequest::SignHolderCommitment { commitment_number: 1 }).0, vec![]);
    let state = fx.state.clone().unwrap();
    let built = commitment(&state, &h1, Side::Holder).unwrap();

    // Our HTLC-success: only with the preimage; the signature verifies under our HTLC key
    // as the second-level script holds it.
    let no_preimage = TaprootFrostItem::HolderHtlc { htlc_index: 0, preimage: None };
    assert_eq!(fx.frost(&no_preimage).1, vec![PolicyTag::HtlcPreimage]);
    let (targets, tags) = fx.frost(&TaprootFrostItem::HolderHtlc { htlc_index: 0, preimage: Some(PREIMAGE) });
    assert_eq!(tags, vec![]);
    let second = built.second_level(&h1).unwrap();
    assert_eq!(targets[0].msg, second[0].1.sighash(TapSighashType::SinglePlusAnyoneCanPay).unwrap());
    let (sig, _) = sign_with(&fx.shares, &targets[0].tweaks, &targets[0].msg);
    verify(&fx, &sig, &targets[0].msg, &built.keys.local_htlc);
    assert_eq!(
        fx.frost(&TaprootFrostItem::HolderHtlc { htlc_index: 1, preimage: None }).1,
        vec![PolicyTag::SweepSource]
    );

    // Sweep to_local after the delay, to our wallet.
    let txid = built.tx.compute_txid();
    let (vout, local_out) = built
        .tx
        .output
        .iter()
        .enumerate()
        .find(|(_, o)| {
            let k = &built.keys;
            o.script_pubkey
                == crate::taproot_scripts::to_local(&k.local_delayed, &k.revocation, 144).unwrap().script_pubkey()
        })
        .map(|(i, o)| (i as u32, o.clone()))
        .unwrap();
    let spent = OutPoint { txid, vout };
    let prevout =
        vec![SpentOutput { value_sat: local_out.value.to_sat(), script_pubkey: local_out.script_pubkey.to_bytes() }];
    let to = |script: ScriptBuf, fee: u64| {
        vec![TxOut { value: local_out.value - Amount::from_sat(fee), script_pubkey: script }]
    };
    let item =
        |tx: Vec<u8>, prevouts: Vec<SpentOutput>| TaprootFrostItem::Sweep { tx, input: 0, prevouts, preimage: None };
    let (targets, tags) = fx.frost(&item(sweep_tx(spent, 144, to(wallet(), 500)), prevout.clone()));
    assert_eq!(tags, vec![]);
    let (sig, _) = sign_with(&fx.shares, &targets[0].tweaks, &targets[0].msg);
    verify(&fx, &sig, &targets[0].msg, &built.keys.local_delayed);
    // To a foreign script; before the delay; a fee above the cap; a prevout that lies;
    // an output that is not ours.
    let foreign = ScriptBuf::from_bytes([&[0x51u8, 0x20][..], &[0xbb; 32]].concat());
    assert_eq!(
        fx.frost(&item(sweep_tx(spent, 144, to(foreign, 500)), prevout.clone())).1,
        vec![PolicyTag::SweepDestination]
    );
    assert_eq!(
        fx.frost(&item(sweep_tx(spent, 143, to(wallet(), 500)), prevout.clone())).1,
        vec![PolicyTag::SweepSequence]
    );
    assert_eq!(
        fx.frost(&item(sweep_tx(spent, 144, to(wallet(), 500_000)), prevout.clone())).1,
        vec![PolicyTag::SweepFeeRange]
    );
    let mut lying = prevout.clone();
    lying[0].value_sat += 1;
    assert_eq!(fx.frost(&item(sweep_tx(spent, 144, to(wallet(), 500)), lying)).1, vec![PolicyTag::SweepSource]);
    let elsewhere = OutPoint { txid, vout: vout + 10 };
    assert_eq!(fx.frost(&item(sweep_tx(elsewhere, 144, to(wallet(), 500)), prevout)).1, vec![PolicyTag::SweepSource]);

    // Our anchor, by key path, with a wallet input paying the fee.
    let anchor_out = crate::taproot_scripts::anchor(&built.keys.local_delayed).unwrap();
    let anchor_vout = built.tx.output.iter().position(|o| o.script_pubkey == anchor_out.script_pubkey()).unwrap();
    let mut tx: Transaction = bitcoin::consensus::encode::deserialize(&sweep_tx(
        OutPoint { txid, vout: anchor_vout as u32 },
        0,
        vec![TxOut { value: Amount::from_sat(10_000), script_pubkey: wallet() }],
    ))
    .unwrap();
    tx.input.push(TxIn {
        previous_output: OutPoint { txid: bitcoin::Txid::from_byte_array([5; 32]), vout: 0 },
        ..tx.input[0].clone()
    });
    let prevouts = vec![
        SpentOutput { value_sat: 330, script_pubkey: anchor_out.script_pubkey().to_bytes() },
        SpentOutput { value_sat: 10_500, script_pubkey: wallet().to_bytes() },
    ];
    let (targets, tags) = fx.frost(&TaprootFrostItem::Sweep { tx: serialize(&tx), input: 0, prevouts, preimage: None });
    assert_eq!(tags, vec![]);
    let (sig, _) = sign_with(&fx.shares, &targets[0].tweaks, &targets[0].msg);
    verify(&fx, &sig, &targets[0].msg, &anchor_out.output_key_compressed());
}

#[test]
fn htlc_signatures_for_a_counterparty_commitment_verify_under_our_htlc_key() {
    let mut fx = Fx::new();
    let all = VALUE * 1000;
    fx.run(TaprootRequest::Setup(fx.setup()));
    fx.approve(5_000_000);
    assert_eq!(fx.run(fx.commitment(0, 0, all, vec![])).0, vec![]);
    // 200 sat over the approved amount: above its routing fee cap (50 sat + 1 %).
    let htlcs = vec![htlc(false, 5_000_000), htlc(false, 200_000)];
    assert_eq!(fx.run(fx.commitment(1, 0, all - 5_200_000, htlcs)).0, vec![PolicyTag::PaymentFeeMax]);
    fx.approve(5_100_000);
    assert_eq!(
        fx.run(fx.commitment(1, 0, all - 5_100_000, vec![htlc(false, 5_000_000), htlc(false, 100_000)])).0,
        vec![]
    );
    // Only the latest signed commitment.
    assert_eq!(
        fx.frost(&TaprootFrostItem::CounterpartyHtlcs { commitment_number: 0 }).1,
        vec![PolicyTag::CommitmentSequence]
    );
    let (targets, tags) = fx.frost(&TaprootFrostItem::CounterpartyHtlcs { commitment_number: 1 });
    assert_eq!(tags, vec![]);
    // 100 sat is below the counterparty's dust limit: one HTLC output, one signature.
    assert_eq!(targets.len(), 1);
    let state = fx.state.clone().unwrap();
    let built = commitment(&state, state.counterparty_latest.as_ref().unwrap(), Side::Counterparty).unwrap();
    let (sig, _) = sign_with(&fx.shares, &targets[0].tweaks, &targets[0].msg);
    verify(&fx, &sig, &targets[0].msg, &built.keys.remote_htlc);
}

#[test]
fn a_verification_nonce_signs_only_its_own_holder_commitment() {
    let mut fx = Fx::new();
    let (h1, v1, _) = with_holder_commitments(&mut fx);
    // Holder commitment 2 offered in the session of commitment 1's verification nonce
    // (this cosigner's stored nonce for 2 is another one), then with a nonce missing.
    let h2 = holder_info(&fx, 2, h1.to_broadcaster_msat, h1.to_countersignatory_msat, h1.htlcs.clone());
    let c2 = counterparty_signs(&fx, &h2, &v1, 5);
    let sigs = counterparty_htlc_sigs(&fx, &h2);
    fx.own_verification = Some(verification(&fx, 30).nonces[0].clone());
    assert_eq!(fx.run(validate(&h2, &v1, &c2, sigs.clone(), vec![])).0, vec![PolicyTag::TaprootVerificationNonce]);
    let short = Verification { secs: Vec::new(), nonces: v1.nonces[..2].to_vec() };
    fx.own_verification = Some(v1.nonces[0].clone());
    let tags = fx.run(validate(&h2, &short, &c2, sigs.clone(), vec![])).0;
    assert!(tags.contains(&PolicyTag::TaprootVerificationNonce), "{tags:?}");
    // In its own session it is accepted.
    let v2 = verification(&fx, 30);
    let c2 = counterparty_signs(&fx, &h2, &v2, 6);
    assert_eq!(validate_as_first(&mut fx, &h2, &v2, &c2, sigs), vec![]);
}

#[test]
fn our_htlc_on_the_previous_unrevoked_counterparty_commitment_is_claimed_until_it_is_revoked() {
    let mut fx = Fx::new();
    let all = VALUE * 1000;
    fx.run(TaprootRequest::Setup(fx.setup()));
    fx.approve(5_000_000);
    assert_eq!(fx.run(fx.commitment(0, 0, all, vec![])).0, vec![]);
    assert_eq!(fx.run(fx.commitment(1, 0, all - 5_000_000, vec![htlc(false, 5_000_000)])).0, vec![]);
    assert_eq!(fx.revoke(0), vec![]);
    // The HTLC fails back on commitment 2; commitment 1, with it, is not revoked yet and
    // may be the one the counterparty broadcasts.
    assert_eq!(fx.run(fx.commitment(2, 0, all, vec![])).0, vec![]);
    let state = fx.state.clone().unwrap();
    let previous = state.counterparty_previous.clone().expect("commitment 1 is kept");
    assert_eq!(previous.commitment_number, 1);
    let built = commitment(&state, &previous, Side::Counterparty).unwrap();
    let vout = built.htlc_vouts[0].unwrap();
    let out = built.tx.output[vout as usize].clone();
    let tx = Transaction {
        version: bitcoin::transaction::Version::TWO,
        lock_time: bitcoin::absolute::LockTime::from_consensus(500),
        input: vec![TxIn {
            previous_output: OutPoint { txid: built.tx.compute_txid(), vout },
            sequence: Sequence(1),
            ..Default::default()
        }],
        output: vec![TxOut { value: out.value - Amount::from_sat(500), script_pubkey: wallet() }],
    };
    let prevouts = vec![SpentOutput { value_sat: out.value.to_sat(), script_pubkey: out.script_pubkey.to_bytes() }];
    let claim = TaprootFrostItem::Sweep { tx: serialize(&tx), input: 0, prevouts, preimage: None };
    let (targets, tags) = fx.frost(&claim);
    assert_eq!(tags, vec![]);
    let (sig, _) = sign_with(&fx.shares, &targets[0].tweaks, &targets[0].msg);
    verify(&fx, &sig, &targets[0].msg, &built.keys.remote_htlc);
    // Oldest first (a skipped secret would leave a gap in the store); revoked, it is a
    // justice case, no longer a claim.
    assert_eq!(fx.revoke(2), vec![PolicyTag::CommitmentSequence]);
    assert_eq!(fx.revoke(1), vec![]);
    assert_eq!(fx.state.as_ref().unwrap().counterparty_previous, None);
    assert_eq!(fx.frost(&claim).1, vec![PolicyTag::SweepSource]);
}
