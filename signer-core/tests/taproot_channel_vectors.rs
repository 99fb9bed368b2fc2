//! lnd's simple-taproot-channel vectors (`scripts` section): every output's leaf scripts,
//! leaf hashes, tapscript root, internal key, output key and pkScript, and the MuSig2
//! funding key, byte for byte.

use qls_signer_core::taproot_scripts::*;
use serde_json::Value;

fn h(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))).unwrap()
}

fn k33(v: &Value) -> [u8; 33] {
    h(v).try_into().unwrap()
}

fn vectors() -> Value {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/vectors/lnd/test_vectors_taproot.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// The channel's commitment parameters from the vectors, with the holder's keys derived
/// as given (`derived_*`); per case, [`case_params`] sets fee rate and dust limit.
fn base_params(v: &Value) -> qls_signer_core::taproot_commitment::CommitmentParams {
    use qls_signer_core::taproot_commitment::*;
    let params = &v["params"];
    let keys = &params["keys"];
    let funding_tx: bitcoin::Transaction =
        bitcoin::consensus::deserialize(&h(&v["scripts"]["funding"]["funding_tx_hex"])).unwrap();
    CommitmentParams {
        funding_outpoint: bitcoin::OutPoint { txid: funding_tx.compute_txid(), vout: 0 },
        obscuring_factor: obscuring_factor(
            &k33(&keys["local_payment_basepoint"]),
            &k33(&keys["remote_payment_basepoint"]),
        ),
        commitment_number: params["commit_height"].as_u64().unwrap(),
        holder_is_funder: true,
        to_self_delay: params["csv_delay"].as_u64().unwrap() as u16,
        dust_limit_sat: params["dust_limit_satoshis"].as_u64().unwrap(),
        fee_per_kw: 0,
        keys: CommitmentKeys {
            local_delayed: k33(&keys["derived_local_delayed_pubkey"]),
            revocation: k33(&keys["derived_revocation_pubkey"]),
            local_htlc: k33(&keys["derived_local_htlc_pubkey"]),
            remote_htlc: k33(&keys["derived_remote_htlc_pubkey"]),
            remote_payment: k33(&keys["derived_remote_payment_pubkey"]),
        },
    }
}

fn case_params(
    base: &qls_signer_core::taproot_commitment::CommitmentParams,
    t: &Value,
) -> qls_signer_core::taproot_commitment::CommitmentParams {
    let mut p = base.clone();
    p.fee_per_kw = t["fee_per_kw"].as_u64().unwrap();
    let name = t["name"].as_str().unwrap();
    if name.contains("trimmed") && !name.contains("untrimmed") {
        p.dust_limit_sat = 2500; // spec, "HTLC Trimming": this case uses dust_limit = 2500 sat
    }
    p
}

/// A case's HTLCs (holder's view: `incoming` = received) with their preimages.
fn case_htlcs(t: &Value) -> Vec<(qls_signer_core::taproot_commitment::Htlc, [u8; 32])> {
    t["htlcs"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|x| {
            let pre: [u8; 32] = h(&x["preimage"]).try_into().unwrap();
            let htlc = qls_signer_core::taproot_commitment::Htlc {
                offered: !x["incoming"].as_bool().unwrap(),
                amount_msat: x["amount_msat"].as_u64().unwrap(),
                cltv_expiry: x["expiry"].as_u64().unwrap() as u32,
                payment_hash: payment_hash(&pre),
            };
            (htlc, pre)
        })
        .collect()
}

fn check(name: &str, out: &TaprootOutput, want: &Value) {
    for (leaf, script) in want["scripts"].as_object().unwrap() {
        assert_eq!(
            out.leaf(leaf).unwrap_or_else(|| panic!("{name}: no leaf {leaf}")).to_bytes(),
            h(script),
            "{name}: {leaf} script"
        );
        let lh = out.leaf_hash(leaf).unwrap();
        assert_eq!(
            hex::encode(lh.as_ref() as &[u8]),
            want["leaf_hashes"][leaf].as_str().unwrap(),
            "{name}: {leaf} leaf hash"
        );
    }
    assert_eq!(out.leaves.len(), want["scripts"].as_object().unwrap().len(), "{name}: leaf count");
    let root = out.spend_info.merkle_root().unwrap();
    assert_eq!(hex::encode(root.as_ref() as &[u8]), want["tapscript_root"].as_str().unwrap(), "{name}: root");
    assert_eq!(out.internal_key.serialize().to_vec(), h(&want["internal_key"])[1..].to_vec(), "{name}: internal key");
    assert_eq!(out.output_key_compressed().to_vec(), h(&want["output_key"]), "{name}: output key");
    assert_eq!(out.script_pubkey().to_bytes(), h(&want["pkscript"]), "{name}: pkscript");
}

#[test]
fn lnd_taproot_scripts_every_output() {
    let v = vectors();
    let params = &v["params"];
    let keys = &params["keys"];
    assert_eq!(k33(&params["nums_point"]), SIMPLE_TAPROOT_NUMS);
    let csv = params["csv_delay"].as_u64().unwrap() as u16;
    let delayed = k33(&keys["derived_local_delayed_pubkey"]);
    let revocation = k33(&keys["derived_revocation_pubkey"]);
    let local_htlc = k33(&keys["derived_local_htlc_pubkey"]);
    let remote_htlc = k33(&keys["derived_remote_htlc_pubkey"]);
    let remote = k33(&keys["derived_remote_payment_pubkey"]);
    // The HTLC scripts in the vectors are for preimage 0³² and expiry 500 (as the first
    // HTLC of the transactions section).
    let first_htlc = &v["transactions"][1]["htlcs"][0];
    let hash = payment_hash(&h(&first_htlc["preimage"]).try_into().unwrap());
    let expiry = first_htlc["expiry"].as_u64().unwrap() as u32;
    let s = &v["scripts"];

    let funding =
        funding_output_key(&k33(&keys["local_funding_pubkey"]), &k33(&keys["remote_funding_pubkey"])).unwrap();
    assert_eq!(funding.to_vec(), h(&s["funding"]["combined_key"]));
    assert_eq!([&[0x51, 0x20][..], &funding].concat(), h(&s["funding"]["pkscript"]));

    check("to_local", &to_local(&delayed, &revocation, csv).unwrap(), &s["to_local"]);
    check("to_remote", &to_remote(&remote).unwrap(), &s["to_remote"]);
    check("local_anchor", &anchor(&delayed).unwrap(), &s["local_anchor"]);
    check("remote_anchor", &anchor(&remote).unwrap(), &s["remote_anchor"]);
    let offered = offered_htlc(&local_htlc, &remote_htlc, &revocation, &hash).unwrap();
    check("offered_htlc_local_commit", &offered, &s["offered_htlc_local_commit"]);
    check("offered_htlc_remote_commit", &offered, &s["offered_htlc_remote_commit"]);
    // lnd builds its "accepted" vector for the same HTLC the local party offered, seen
    // from the receiver: the receiver's HTLC key is `derived_remote_htlc_pubkey` and the
    // sender's is `derived_local_htlc_pubkey` (the spec's template, keys in those roles).
    let accepted = accepted_htlc(&remote_htlc, &local_htlc, &revocation, &hash, expiry).unwrap();
    check("accepted_htlc_local_commit", &accepted, &s["accepted_htlc_local_commit"]);
    check("accepted_htlc_remote_commit", &accepted, &s["accepted_htlc_remote_commit"]);
    let second = second_level_htlc(&delayed, &revocation, csv).unwrap();
    check("second_level_htlc_success", &second, &s["second_level_htlc_success"]);
    check("second_level_htlc_timeout", &second, &s["second_level_htlc_timeout"]);
    assert_eq!(s.as_object().unwrap().len(), 11, "every scripts entry is checked above");
}

/// Replays every commitment's MuSig2 session from lnd's vectors: our sighash of the
/// vector transaction, our partial signatures from the given secret nonces (the remote
/// one must equal `remote_partial_sig`), our aggregate equal to the signature in the
/// transaction's witness, accepted by libsecp256k1 under our funding key.
#[test]
fn lnd_taproot_commitment_musig2_replay() {
    use bitcoin::consensus::deserialize;
    use qls_signer_core::musig2::*;
    let v = vectors();
    let keys = &v["params"]["keys"];
    let local_pk = k33(&keys["local_funding_pubkey"]);
    let remote_pk = k33(&keys["remote_funding_pubkey"]);
    let local_sk: [u8; 32] = h(&keys["local_funding_privkey"]).try_into().unwrap();
    let remote_sk: [u8; 32] = h(&keys["remote_funding_privkey"]).try_into().unwrap();
    let funding_key = funding_output_key(&local_pk, &remote_pk).unwrap();
    let funding_spk = bitcoin::ScriptBuf::from_bytes([&[0x51, 0x20][..], &funding_key].concat());
    let funding_out = bitcoin::TxOut {
        value: bitcoin::Amount::from_sat(v["params"]["funding_amount_satoshis"].as_u64().unwrap()),
        script_pubkey: funding_spk,
    };
    let pubkeys = key_sort(&[local_pk, remote_pk]);
    let internal = key_agg(&pubkeys).unwrap().xonly_pubkey();
    let internal = bitcoin::key::UntweakedPublicKey::from_slice(&internal).unwrap();
    let tweak =
        bitcoin::hashes::Hash::to_byte_array(bitcoin::taproot::TapTweakHash::from_key_and_tweak(internal, None));
    let tweaks = [(tweak, true)];

    let txs = v["transactions"].as_array().unwrap();
    assert_eq!(txs.len(), 3);
    for t in txs {
        let name = t["name"].as_str().unwrap();
        let tx: bitcoin::Transaction = deserialize(&h(&t["expected_commitment_tx_hex"])).unwrap();
        let witness_sig = tx.input[0].witness.nth(0).unwrap().to_vec();
        let sighash = qls_signer_core::sighash::taproot_key_spend_sighash(
            &tx,
            std::slice::from_ref(&funding_out),
            0,
            bitcoin::TapSighashType::Default,
        )
        .unwrap();
        let local_nonce = PubNonce(h(&t["local_nonce"]).try_into().unwrap());
        let remote_nonce = PubNonce(h(&t["remote_nonce"]).try_into().unwrap());
        let agg = nonce_agg(&[local_nonce, remote_nonce]).unwrap();
        let ctx = SessionContext { aggnonce: &agg, pubkeys: &pubkeys, tweaks: &tweaks, msg: &sighash };
        let local_psig =
            sign(SecNonce::from_bytes(h(&t["local_sec_nonce"]).try_into().unwrap()), &local_sk, &ctx).unwrap();
        let remote_psig =
            sign(SecNonce::from_bytes(h(&t["remote_sec_nonce"]).try_into().unwrap()), &remote_sk, &ctx).unwrap();
        assert_eq!(remote_psig.to_vec(), h(&t["remote_partial_sig"]), "{name}: remote partial signature");
        let sig = partial_sig_agg(&[local_psig, remote_psig], &ctx).unwrap();
        assert_eq!(sig.to_vec(), witness_sig, "{name}: aggregated signature differs from the witness");
        qls_signer_core::schnorr::verify_bip340(&funding_key, &sighash, &sig).unwrap();
    }
}

/// Builds every vector commitment from the channel parameters and balances/HTLCs and
/// compares it with lnd's transaction, byte for byte (witness stripped).
#[test]
fn lnd_taproot_commitments_built_byte_for_byte() {
    use bitcoin::consensus::{deserialize, serialize};
    use qls_signer_core::taproot_commitment::*;
    let v = vectors();
    let base = base_params(&v);
    for t in v["transactions"].as_array().unwrap() {
        let name = t["name"].as_str().unwrap();
        let htlcs: Vec<Htlc> = case_htlcs(t).into_iter().map(|(x, _)| x).collect();
        let built = build_commitment(
            &case_params(&base, t),
            t["local_balance_msat"].as_u64().unwrap(),
            t["remote_balance_msat"].as_u64().unwrap(),
            &htlcs,
        )
        .unwrap();
        let mut expected: bitcoin::Transaction = deserialize(&h(&t["expected_commitment_tx_hex"])).unwrap();
        expected.input[0].witness = bitcoin::Witness::new();
        assert_eq!(hex::encode(serialize(&built)), hex::encode(serialize(&expected)), "{name}");
    }
}

#[test]
fn lnd_taproot_keys_and_second_level_htlc_txs() {
    use bitcoin::consensus::serialize;
    use bitcoin::secp256k1::{Keypair, Message, Secp256k1};
    use qls_signer_core::bolt3_keys::*;
    use qls_signer_core::taproot_commitment::*;
    use qls_signer_core::taproot_htlc::*;
    let v = vectors();
    let keys = &v["params"]["keys"];
    let pcp = k33(&keys["local_per_commit_point"]);
    let sk32 = |x: &Value| -> [u8; 32] { h(x).try_into().unwrap() };
    let ck = CommitmentKeys {
        local_delayed: derive_pubkey(&k33(&keys["local_delayed_payment_basepoint"]), &pcp).unwrap(),
        revocation: derive_revocation_pubkey(&k33(&keys["remote_revocation_basepoint"]), &pcp).unwrap(),
        local_htlc: derive_pubkey(&k33(&keys["local_htlc_basepoint"]), &pcp).unwrap(),
        remote_htlc: derive_pubkey(&k33(&keys["remote_htlc_basepoint"]), &pcp).unwrap(),
        remote_payment: k33(&keys["remote_payment_basepoint"]),
    };
    assert_eq!(ck.local_delayed, k33(&keys["derived_local_delayed_pubkey"]));
    assert_eq!(ck.revocation, k33(&keys["derived_revocation_pubkey"]));
    assert_eq!(ck.local_htlc, k33(&keys["derived_local_htlc_pubkey"]));
    assert_eq!(ck.remote_htlc, k33(&keys["derived_remote_htlc_pubkey"]));
    assert_eq!(ck.remote_payment, k33(&keys["derived_remote_payment_pubkey"]));
    let local_htlc_sk = derive_privkey(&sk32(&keys["local_htlc_basepoint_secret"]), &pcp).unwrap();
    let remote_htlc_sk = derive_privkey(&sk32(&keys["remote_htlc_basepoint_secret"]), &pcp).unwrap();

    let mut cp = base_params(&v);
    assert_eq!(cp.keys, ck, "derived keys equal the vector's derived keys");
    cp.keys = ck;
    let secp = Secp256k1::new();
    let mut checked = 0;
    for t in v["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["htlc_descs"].as_array().is_some_and(|d| !d.is_empty()))
    {
        let name = t["name"].as_str().unwrap();
        let p = case_params(&cp, t);
        let raw = case_htlcs(t);
        let htlcs: Vec<Htlc> = raw.iter().map(|(x, _)| *x).collect();
        let (commit, vouts) = build_commitment_with_vouts(
            &p,
            t["local_balance_msat"].as_u64().unwrap(),
            t["remote_balance_msat"].as_u64().unwrap(),
            &htlcs,
        )
        .unwrap();
        let mut by_vout: Vec<(u32, usize)> = vouts.iter().enumerate().filter_map(|(i, v)| v.map(|v| (v, i))).collect();
        by_vout.sort();
        let descs = t["htlc_descs"].as_array().unwrap();
        assert_eq!(descs.len(), by_vout.len(), "{name}: one resolution per untrimmed HTLC");
        for ((vout, i), desc) in by_vout.iter().zip(descs) {
            let (htlc, preimage) = &raw[*i];
            let second = second_level_tx(commit.compute_txid(), *vout, htlc, &ck, p.to_self_delay).unwrap();
            let sign = |sk: &[u8; 32], ty| {
                let kp = Keypair::from_seckey_slice(&secp, sk).unwrap();
                let msg = Message::from_digest(second.sighash(ty).unwrap());
                secp.sign_schnorr_with_aux_rand(&msg, &kp, &[0u8; 32]).serialize()
            };
            let mut remote_sig = sign(&remote_htlc_sk, bitcoin::TapSighashType::SinglePlusAnyoneCanPay).to_vec();
            remote_sig.push(bitcoin::TapSighashType::SinglePlusAnyoneCanPay as u8);
            assert_eq!(
                remote_sig,
                h(&desc["remote_partial_sig_hex"]).into_iter().chain([0x83]).collect::<Vec<_>>(),
                "{name}: HTLC at vout {vout}: counterparty signature"
            );
            let local_sig = sign(&local_htlc_sk, bitcoin::TapSighashType::Default);
            let mut tx = second.tx.clone();
            tx.input[0].witness = second.witness(&remote_sig, &local_sig, (!htlc.offered).then_some(preimage)).unwrap();
            assert_eq!(
                hex::encode(serialize(&tx)),
                desc["resolution_tx_hex"].as_str().unwrap(),
                "{name}: HTLC at vout {vout}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 7, "only {checked} second-level transactions checked");
}
