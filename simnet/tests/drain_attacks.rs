//! Drain attempts of a compromised node (and, where it fits, a malicious coordinator with
//! the real coordinator's identity) against the real quorum over QUIC: 3 cosigners, t = 2,
//! c1 the only key holder — once with every cosigner on the default policy and once with
//! t − 1 = 1 cosigner fully permissive. Each attempt must be refused with its tag and
//! nothing signed.
//!
//! - a channel set up with holder keys that are not the quorum's (fake funding), then a
//!   wallet PSBT funding it; the same setup sent around the coordinator without a key
//!   holder's attestation;
//! - the whole attack corpus of `qls_simnet::attack_corpus` (setups, funding, commitments,
//!   routing, payments, our own commitment, closes, sweeps, node-key requests).

use bitcoin::hashes::Hash;
use bitcoin::psbt::Psbt;
use bitcoin::{Amount, TxOut};
use qls_protocol::*;
use qls_signer_core::policy::PolicyConfig;
use qls_signer_core::wallet::wallet_script;
use qls_simnet::counterparty::Counterparty;
use qls_simnet::harness::{test_policy, Harness, QuorumSpec};
use qls_simnet::malicious::MaliciousCoordinator;
use qls_simnet::workload::psbt;

const VALUE: u64 = 500_000;

/// The two set-ups every attack runs against: all default, and c3 fully permissive.
async fn quorums() -> Vec<(Harness, Vec<&'static str>)> {
    let all = Harness::start(QuorumSpec::new(3, 2)).await.unwrap();
    let mut spec = QuorumSpec::new(3, 2);
    spec.policies = vec![test_policy(), test_policy(), PolicyConfig::permissive()];
    let permissive = Harness::start(spec).await.unwrap();
    vec![(all, vec!["c1", "c2", "c3"]), (permissive, vec!["c1", "c2"])]
}

/// `request` is refused, and every cosigner in `honest` names `tag`.
async fn refused(client: &qls_node::client::NodeClient, request: NodeRequest, tag: &str, honest: &[&str]) {
    match client.call(&request).await.unwrap() {
        NodeResponse::Refused { refusals, .. } => {
            for name in honest {
                let r = refusals
                    .iter()
                    .find(|r| r.cosigner == *name)
                    .unwrap_or_else(|| panic!("{name} did not refuse: {refusals:?}"));
                assert!(r.violations.iter().any(|v| v.tag == tag), "{name} refused without {tag}: {:?}", r.violations);
            }
        }
        other => panic!("expected a refusal with {tag}, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_with_foreign_holder_keys_is_refused_and_cannot_be_funded() {
    for (h, honest) in quorums().await {
        let client = h.client().await.unwrap();
        let key = h.key_id();
        let attacker = Counterparty::new();
        let fake: ChannelKeysId = [0xf1; 32];
        // The node claims a channel whose "holder" keys are the attacker's own.
        let mut setup = attacker.setup(attacker.points(), VALUE, true, [0; 32]);
        let script = Counterparty::funding_script(&setup).unwrap().to_p2wsh();
        let wallet = wallet_script(&key).unwrap();
        let outputs = vec![
            TxOut { value: Amount::from_sat(VALUE), script_pubkey: script },
            TxOut { value: Amount::from_sat(200_000), script_pubkey: wallet },
        ];
        let funding: Psbt = psbt(&key, [4; 32], VALUE + 201_000, outputs);
        setup.funding_txid = funding.unsigned_tx.compute_txid().to_byte_array();
        let request = NodeRequest::Channel { channel: fake, request: ChannelRequest::Setup(setup.clone()) };
        refused(&client, request, "policy-channel-holder-keys", &honest).await;
        // Funding it from the wallet: no honest cosigner holds the channel.
        let sign = NodeRequest::SignPsbt { psbt: funding.serialize(), funding_channels: vec![fake] };
        match client.call(&sign).await.unwrap() {
            NodeResponse::Refused { refusals, .. } => assert!(!refusals.is_empty()),
            other => panic!("the fake channel's funding was not refused: {other:?}"),
        }

        // Around the coordinator (no key holder's attestation at all): the attacker's keys
        // are approved by no honest cosigner, so no key holder output exists for them.
        let evil = MaliciousCoordinator::new(&h, vec![0], 2).unwrap();
        let subject = ApprovalSubject::Channel { channel: [0xf3; 32], request: ChannelRequest::Setup(setup) };
        let outcome = evil.try_subject(subject).await;
        assert!(!outcome.signed, "{outcome:?}");
        assert!(outcome.refused_tags.contains("policy-channel-holder-keys"), "{outcome:?}");
        assert_eq!(outcome.refusals, honest.len(), "{outcome:?}");
        if honest.len() == 3 {
            // Our real keys, unattested: only the key holder itself can tell they are ours.
            let (keys, _) = client.channel_keys([0xf2; 32]).await.unwrap();
            let unattested = attacker.setup(keys.points, VALUE, true, [5; 32]);
            let subject = ApprovalSubject::Channel { channel: [0xf2; 32], request: ChannelRequest::Setup(unattested) };
            let outcome = evil.try_subject(subject).await;
            assert!(!outcome.signed && outcome.approvals == 1 && outcome.refusals == 2, "{outcome:?}");
        }
        h.shutdown().await;
    }
}

/// The attack corpus (`qls_simnet::attack_corpus`): every attempt refused with its tag by
/// every honest cosigner, nothing signed, on the default policies and with one of the
/// three cosigners fully permissive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_attack_corpus_is_refused_with_its_tags_by_every_honest_cosigner() {
    for (h, honest) in quorums().await {
        let honest: Vec<String> = honest.iter().map(|s| s.to_string()).collect();
        let results = qls_simnet::attack_corpus::run(&h).await.unwrap();
        let kinds = qls_simnet::attack_corpus::kinds(&results);
        eprintln!("{kinds} kinds of attack, {} attempts", results.len());
        assert!(kinds >= 30, "only {kinds} kinds of attack");
        // n − t + 1 = 2 refusals block a 2-of-3 quorum.
        let failed: Vec<_> = results.iter().filter(|r| !r.held(&honest, 2)).collect();
        assert!(
            failed.is_empty(),
            "{} of {} attacks not refused as expected: {failed:#?}",
            failed.len(),
            results.len()
        );
        h.shutdown().await;
    }
}
