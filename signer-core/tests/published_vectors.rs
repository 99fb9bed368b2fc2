//! The published BIP-340 and BIP-341 vectors, every case, through the verification and
//! sighash code the cosigners and coordinator use; plus a FROST signature made from a
//! dealer split of each BIP-341 key-path vector's internal key, verified under the
//! vector's own output key (checks our BIP-341 tweak convention against the BIP).

use bitcoin::consensus::deserialize;
use bitcoin::{Amount, ScriptBuf, TapSighashType, Transaction, TxOut};
use qls_signer_core::schnorr::verify_bip340;
use qls_signer_core::sighash::{group_key_spend_sighashes, taproot_key_spend_sighash};
use qls_signer_core::{dealer, frost};
use rand::SeedableRng;

fn vectors(path: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/vectors").join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn h32(s: &str) -> [u8; 32] {
    hex::decode(s).unwrap().try_into().unwrap()
}

#[test]
fn bip340_vectors_all_cases() {
    let csv = vectors("bip340/test-vectors.csv");
    let (mut via_libsecp, mut via_frost) = (0, 0);
    for line in csv.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let (index, pk, msg, sig, expected) = (f[0], f[2], f[4], f[5], f[6] == "TRUE");
        let pk = hex::decode(pk).unwrap();
        let msg = hex::decode(msg).unwrap();
        let sig = hex::decode(sig).unwrap();
        // libsecp256k1 0.29 verifies 32-byte messages: every such case goes through it.
        if msg.len() == 32 {
            let got = verify_bip340(&pk.clone().try_into().unwrap(), &msg.clone().try_into().unwrap(), &sig).is_ok();
            assert_eq!(got, expected, "bip340 vector {index} via libsecp256k1");
            via_libsecp += 1;
        }
        // Every case, any message length, through the FROST crate's verifier.
        let mut compressed = vec![0x02];
        compressed.extend_from_slice(&pk);
        let got = frost::VerifyingKey::deserialize(&compressed)
            .ok()
            .zip(frost::Signature::deserialize(&sig).ok())
            .is_some_and(|(vk, s)| vk.verify(&msg, &s).is_ok());
        assert_eq!(got, expected, "bip340 vector {index} via frost");
        via_frost += 1;
    }
    assert!(via_libsecp >= 15, "only {via_libsecp} cases ran through libsecp256k1");
    assert_eq!(via_frost, csv.lines().count() - 1);
}

#[test]
fn bip341_key_path_vectors_sighash_and_frost_signature() {
    let json: serde_json::Value = serde_json::from_str(&vectors("bip341/wallet-test-vectors.json")).unwrap();
    let kps = &json["keyPathSpending"][0];
    let tx: Transaction = deserialize(&hex::decode(kps["given"]["rawUnsignedTx"].as_str().unwrap()).unwrap()).unwrap();
    let prevouts: Vec<TxOut> = kps["given"]["utxosSpent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| TxOut {
            value: Amount::from_sat(u["amountSats"].as_u64().unwrap()),
            script_pubkey: ScriptBuf::from_bytes(hex::decode(u["scriptPubKey"].as_str().unwrap()).unwrap()),
        })
        .collect();
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(341);
    let (mut cases, mut frost_signed) = (0, 0);
    for case in kps["inputSpending"].as_array().unwrap() {
        let idx = case["given"]["txinIndex"].as_u64().unwrap() as usize;
        let hash_type = case["given"]["hashType"].as_u64().unwrap() as u32;
        let ty = TapSighashType::from_consensus_u8(hash_type as u8).unwrap();
        let sighash = taproot_key_spend_sighash(&tx, &prevouts, idx, ty).unwrap();
        assert_eq!(hex::encode(sighash), case["intermediary"]["sigHash"].as_str().unwrap(), "input {idx}");
        let output_key: [u8; 32] = prevouts[idx].script_pubkey.as_bytes()[2..].try_into().unwrap();
        let witness_sig = hex::decode(case["expected"]["witness"][0].as_str().unwrap()).unwrap();
        verify_bip340(&output_key, &sighash, &witness_sig[..64]).unwrap();
        cases += 1;

        if case["given"]["merkleRoot"].is_null() {
            // Dealer-split the internal key 2-of-3; our key convention must yield the
            // vector's output key, and a FROST signature must verify under it.
            let fps = [[1u8; 32], [2u8; 32], [3u8; 32]];
            let internal = h32(case["given"]["internalPrivkey"].as_str().unwrap());
            let shares = dealer::split(Some(internal), &fps, 2, &mut rng).unwrap();
            assert_eq!(shares[0].1.key_id(), output_key, "input {idx}: tweak convention differs from BIP-341");
            let sig = dealer::sign_in_process(&[&shares[0].1, &shares[2].1], &sighash, &mut rng).unwrap();
            verify_bip340(&output_key, &sighash, &sig).unwrap();
            frost_signed += 1;
        }
        if hash_type == 0 || hash_type == 1 {
            // The PSBT path the cosigners use agrees with the raw computation.
            let mut psbt = bitcoin::psbt::Psbt::from_unsigned_tx(tx.clone()).unwrap();
            for (i, p) in prevouts.iter().enumerate() {
                psbt.inputs[i].witness_utxo = Some(p.clone());
            }
            if hash_type == 1 {
                psbt.inputs[idx].sighash_type = Some(TapSighashType::All.into());
            }
            let ours = group_key_spend_sighashes(&psbt, &prevouts[idx].script_pubkey).unwrap();
            assert!(ours.contains(&(idx, sighash)), "input {idx}");
        }
    }
    assert_eq!(cases, 7);
    // The file has exactly one key-path case without a script tree.
    assert_eq!(frost_signed, 1);
}
