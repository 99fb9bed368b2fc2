//! Quorum integration tests over real QUIC on loopback: DKG, signing, faults, blame,
//! policy refusals, pinning, and Bitcoin Core's script interpreter on signed PSBTs.
//! Signatures are checked with libsecp256k1 directly, not through our wrappers.

use std::time::Duration;

use bitcoin::{Amount, ScriptBuf, TxOut};
use qls_protocol::quic::Identity;
use qls_protocol::{BlameReason, NodeRequest, NodeResponse};
use qls_signer_core::policy::PolicyConfig;
use qls_signer_core::wallet::wallet_script;
use qls_simnet::channels::consensus_check;
use qls_simnet::harness::{invalid_share_fault, Harness, Keygen, QuorumSpec};
use qls_simnet::workload::psbt;

fn libsecp_verify(key_id: &[u8; 32], msg: &[u8; 32], sig: &[u8; 64]) -> bool {
    let secp = secp256k1::Secp256k1::verification_only();
    let pk = secp256k1::XOnlyPublicKey::from_slice(key_id).unwrap();
    let sig = secp256k1::schnorr::Signature::from_slice(sig).unwrap();
    secp.verify_schnorr(&sig, &secp256k1::Message::from_digest(*msg), &pk).is_ok()
}

async fn sign_n(h: &Harness, count: usize) -> Vec<qls_protocol::SignReport> {
    let client = h.client().await.unwrap();
    let key = h.message_key();
    let mut reports = Vec::new();
    for i in 0..count {
        let msg = [i as u8 ^ 0x5a; 32];
        let (sig, report) = client.sign_message(&key, msg).await.unwrap();
        assert!(libsecp_verify(&key, &msg, &sig));
        let mut other = msg;
        other[0] ^= 1;
        assert!(!libsecp_verify(&key, &other, &sig), "signature must not verify for another message");
        reports.push(report);
    }
    reports
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dkg_2_of_3_signs_verifiable_messages() {
    let h = Harness::start(QuorumSpec::new(3, 2)).await.unwrap();
    assert_eq!(h.quorum.key.threshold, 2);
    let reports = sign_n(&h, 5).await;
    for r in &reports {
        assert_eq!(r.signers.len(), 2);
        assert!(r.blamed.is_empty());
        // One nonce use per signer, named after it (the audit trail of consumed nonces).
        let mut users: Vec<&str> = r.nonces.iter().map(|n| n.cosigner.as_str()).collect();
        users.sort();
        let mut signers: Vec<&str> = r.signers.iter().map(String::as_str).collect();
        signers.sort();
        assert_eq!(users, signers, "{r:?}");
    }
    assert_distinct_nonces(&reports);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dkg_3_of_5_signs_with_three() {
    let h = Harness::start(QuorumSpec::new(5, 3)).await.unwrap();
    assert_eq!(h.quorum.members.len(), 5);
    for r in sign_n(&h, 4).await {
        assert_eq!(r.signers.len(), 3);
    }
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_continues_with_one_cosigner_down_and_after_restart() {
    let mut spec = QuorumSpec::new(3, 2);
    spec.request_timeout = Duration::from_millis(500);
    let mut h = Harness::start(spec).await.unwrap();
    h.stop_cosigner(0).await;
    for r in sign_n(&h, 6).await {
        assert!(!r.signers.contains(&"c1".to_string()), "a stopped cosigner cannot sign: {r:?}");
    }
    h.start_cosigner(0).await.unwrap();
    h.stop_cosigner(1).await;
    for r in sign_n(&h, 6).await {
        assert!(!r.signers.contains(&"c2".to_string()));
    }
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byzantine_cosigner_is_blamed_and_routed_around() {
    let mut spec = QuorumSpec::new(3, 2);
    spec.faults = vec![None, Some(invalid_share_fault()), None];
    let h = Harness::start(spec).await.unwrap();
    let reports = sign_n(&h, 6).await;
    let blamed: Vec<_> = reports.iter().flat_map(|r| r.blamed.iter()).collect();
    assert!(!blamed.is_empty(), "c2 is chosen at least once in six rotating requests");
    assert!(blamed.iter().all(|b| b.cosigner == "c2" && b.reason == BlameReason::InvalidShare), "{blamed:?}");
    assert!(reports.iter().all(|r| !r.signers.contains(&"c2".to_string())));
    // The attempt c2 spoiled consumed its nonce and its partner's: both are listed,
    // besides the two of the attempt that signed.
    for r in reports.iter().filter(|r| !r.blamed.is_empty()) {
        assert!(r.nonces.iter().any(|n| n.cosigner == "c2"), "{r:?}");
        assert_eq!(r.nonces.len(), 2 * r.attempts as usize, "{r:?}");
    }
    assert_distinct_nonces(&reports);
    h.shutdown().await;
}

/// No (cosigner, public nonce) pair in two places of the reports.
fn assert_distinct_nonces(reports: &[qls_protocol::SignReport]) {
    let uses: Vec<(&str, &[u8])> =
        reports.iter().flat_map(|r| r.nonces.iter().map(|n| (n.cosigner.as_str(), n.pubnonce.as_slice()))).collect();
    let distinct: std::collections::BTreeSet<_> = uses.iter().collect();
    assert_eq!(distinct.len(), uses.len(), "a cosigner nonce was reported twice");
    assert!(reports.iter().all(|r| r.nonces_dropped == 0));
}

fn two_input_psbt(key: &[u8; 32], outputs: Vec<TxOut>) -> bitcoin::psbt::Psbt {
    let mut p = psbt(key, [1; 32], 60_000, outputs);
    let second = psbt(key, [2; 32], 40_000, vec![]);
    p.unsigned_tx.input.push(second.unsigned_tx.input[0].clone());
    p.inputs.push(second.inputs[0].clone());
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_psbt_passes_bitcoin_core_script_interpreter() {
    let h = Harness::start(QuorumSpec::new(3, 2)).await.unwrap();
    let key = h.key_id();
    let wallet = wallet_script(&key).unwrap();
    let unsigned = two_input_psbt(&key, vec![TxOut { value: Amount::from_sat(99_000), script_pubkey: wallet.clone() }]);
    let client = h.client().await.unwrap();
    let (signed, report) = client.sign_psbt(unsigned.serialize()).await.unwrap();
    assert_eq!(report.signers.len(), 2);
    let signed = bitcoin::psbt::Psbt::deserialize(&signed).unwrap();
    assert_eq!(signed.unsigned_tx, unsigned.unsigned_tx);
    let spent: Vec<TxOut> = signed.inputs.iter().map(|i| i.witness_utxo.clone().unwrap()).collect();
    let tx = signed.extract_tx().unwrap();
    consensus_check(&tx, &spent).unwrap_or_else(|e| panic!("rejected by the interpreter: {e}"));
    // The interpreter is not a rubber stamp: a changed output invalidates the signatures.
    let mut tampered = tx.clone();
    tampered.output[0].value = Amount::from_sat(98_000);
    assert!(consensus_check(&tampered, &spent).is_err());
    h.shutdown().await;
}

async fn refusal_tags(h: &Harness, request: NodeRequest) -> Vec<(String, Vec<String>)> {
    let client = h.client().await.unwrap();
    match client.call(&request).await.unwrap() {
        NodeResponse::Refused { refusals, .. } => {
            refusals.into_iter().map(|r| (r.cosigner, r.violations.into_iter().map(|v| v.tag).collect())).collect()
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psbt_policy_violations_refused_with_tags() {
    let mut spec = QuorumSpec::new(3, 2);
    spec.keygen = Keygen::Dealer;
    let h = Harness::start(spec).await.unwrap();
    let key = h.key_id();
    let wallet = wallet_script(&key).unwrap();
    let foreign = ScriptBuf::from_bytes([&[0x00, 0x14][..], &[0xab; 20]].concat());
    let unknown = two_input_psbt(
        &key,
        vec![
            TxOut { value: Amount::from_sat(89_000), script_pubkey: wallet.clone() },
            TxOut { value: Amount::from_sat(10_000), script_pubkey: foreign },
        ],
    );
    let refusals =
        refusal_tags(&h, NodeRequest::SignPsbt { psbt: unknown.serialize(), funding_channels: vec![] }).await;
    assert_eq!(refusals.len(), 2, "both cosigners asked refuse, and no third can make a quorum: {refusals:?}");
    assert!(refusals.iter().all(|(_, tags)| tags == &["policy-onchain-no-unknown-outputs"]));

    let fee_cap = PolicyConfig::default().onchain.fee_sat_max;
    let greedy =
        two_input_psbt(&key, vec![TxOut { value: Amount::from_sat(100_000 - fee_cap - 1), script_pubkey: wallet }]);
    let refusals = refusal_tags(&h, NodeRequest::SignPsbt { psbt: greedy.serialize(), funding_channels: vec![] }).await;
    assert!(
        refusals.len() >= 2 && refusals.iter().all(|(_, tags)| tags == &["policy-onchain-fee-range"]),
        "{refusals:?}"
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_permissive_cosigner_cannot_get_a_violation_signed() {
    let mut spec = QuorumSpec::new(3, 2);
    spec.keygen = Keygen::Dealer;
    spec.policies = vec![PolicyConfig::default(), PolicyConfig::default(), PolicyConfig::permissive()];
    let h = Harness::start(spec).await.unwrap();
    let key = h.key_id();
    let foreign = ScriptBuf::from_bytes([&[0x00, 0x14][..], &[0xcd; 20]].concat());
    let drain = two_input_psbt(&key, vec![TxOut { value: Amount::from_sat(99_000), script_pubkey: foreign }]);
    for _ in 0..3 {
        let refusals =
            refusal_tags(&h, NodeRequest::SignPsbt { psbt: drain.serialize(), funding_channels: vec![] }).await;
        let refusers: Vec<_> = refusals.iter().map(|(c, _)| c.as_str()).collect();
        assert!(refusers.contains(&"c1") && refusers.contains(&"c2"), "{refusers:?}");
        assert!(!refusers.contains(&"c3"));
    }
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpinned_node_client_is_refused() {
    let h = Harness::start(QuorumSpec::new(3, 2)).await.unwrap();
    let stranger = Identity::generate("stranger").unwrap();
    let outcome = async {
        let c = qls_node::NodeClient::connect(&stranger, h.api_addr, h.coordinator_fingerprint, Duration::from_secs(2))
            .await?;
        c.group_info().await
    }
    .await;
    assert!(outcome.is_err(), "an unpinned client got an answer: {outcome:?}");
    // The pinned client still works.
    assert_eq!(h.client().await.unwrap().group_info().await.unwrap().key_id, h.key_id());
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_refuses_cosigner_presenting_another_certificate() {
    let h = Harness::start(QuorumSpec::new(3, 2)).await.unwrap();
    let coordinator_like = std::sync::Arc::new(Identity::generate("x").unwrap());
    let endpoint = qls_protocol::quic::client_endpoint("127.0.0.1:0".parse().unwrap()).unwrap();
    // Dial c1's address but pin c2's fingerprint: c1's certificate must be refused.
    let spec = qls_coordinator::config::CosignerSpec {
        name: "c1-as-c2".into(),
        addr: h.cosigners[0].addr,
        fingerprint: h.cosigners[1].fingerprint,
    };
    let link = qls_coordinator::cosigner_link::CosignerLink::new(spec, endpoint, coordinator_like);
    let r = link.call(&qls_protocol::CosignerRequest::Hello, Duration::from_secs(2)).await;
    assert!(matches!(r, Err(qls_coordinator::cosigner_link::LinkError::Unreachable { .. })), "{r:?}");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_signing_cannot_authorise_a_wallet_spend() {
    // A compromised node asks for a raw "message" signature over the BIP-341 sighash of a
    // transaction draining the wallet. The signature it gets is under the message key, so
    // it is useless for the spend: libsecp256k1 and Bitcoin Core's interpreter reject it.
    let h = Harness::start(QuorumSpec::new(3, 2)).await.unwrap();
    let (key, message_key) = (h.key_id(), h.message_key());
    assert_ne!(key, message_key);
    let foreign = ScriptBuf::from_bytes([&[0x00, 0x14][..], &[0xee; 20]].concat());
    let drain = psbt(&key, [9; 32], 100_000, vec![TxOut { value: Amount::from_sat(99_000), script_pubkey: foreign }]);
    let spent = drain.inputs[0].witness_utxo.clone().unwrap();
    let sighash = qls_signer_core::sighash::taproot_key_spend_sighash(
        &drain.unsigned_tx,
        std::slice::from_ref(&spent),
        0,
        bitcoin::TapSighashType::Default,
    )
    .unwrap();
    let client = h.client().await.unwrap();
    let (sig, _) = client.sign_message(&message_key, sighash).await.unwrap();
    assert!(libsecp_verify(&message_key, &sighash, &sig));
    assert!(!libsecp_verify(&key, &sighash, &sig), "a message signature must not be a wallet signature");
    let mut tx = drain.unsigned_tx.clone();
    tx.input[0].witness = bitcoin::Witness::from_slice(&[sig.to_vec()]);
    let utxo = [bitcoinconsensus::Utxo {
        script_pubkey: spent.script_pubkey.as_bytes().as_ptr(),
        script_pubkey_len: spent.script_pubkey.len() as u32,
        value: spent.value.to_sat() as i64,
    }];
    let tx_bytes = bitcoin::consensus::serialize(&tx);
    assert!(bitcoinconsensus::verify(spent.script_pubkey.as_bytes(), 100_000, &tx_bytes, Some(&utxo), 0).is_err());
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cosigners_refuse_a_dkg_with_a_subset_or_a_low_threshold() {
    // A malicious coordinator tries to make a weaker key than the configured group.
    let mut spec = QuorumSpec::new(5, 3);
    spec.keygen = Keygen::Dealer;
    let h = Harness::start(spec).await.unwrap();
    let (_endpoint, links) =
        qls_coordinator::quorum::make_links(&h.quorum.config, h.coordinator_identity.clone()).unwrap();
    let timeout = Duration::from_secs(5);
    let subset = qls_coordinator::dkg::run_dkg(&links[..3], 3, timeout).await;
    assert!(subset.unwrap_err().to_string().contains("pinned peers"), "a 3-cosigner subset must be refused");
    let low = qls_coordinator::dkg::run_dkg(&links, 2, timeout).await;
    assert!(low.unwrap_err().to_string().contains("below this cosigner's minimum"), "2-of-5 is below the majority");
    // The configured group at a majority threshold still works.
    let ok = qls_coordinator::dkg::run_dkg(&links, 3, timeout).await.unwrap();
    assert_eq!(ok.threshold, 3);
    h.shutdown().await;
}

/// The node's client survives a coordinator restart: the first request after finds the
/// old connection closed before its stream opened and redials once, transparently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_client_redials_a_restarted_coordinator() {
    let mut h = Harness::start(QuorumSpec::new(3, 2)).await.unwrap();
    let client = h.client().await.unwrap();
    let before = client.group_info().await.unwrap();
    h.restart_node_api().await.unwrap();
    let after = client.group_info().await.expect("the client redials the restarted coordinator");
    assert_eq!(before.key_id, after.key_id);
    let (sig, _) = client.sign_message(&h.message_key(), [7; 32]).await.expect("and signs through it");
    assert_eq!(sig.len(), 64);
    h.shutdown().await;
}
