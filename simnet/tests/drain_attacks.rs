//! Drain attempts of a compromised node (and, where it fits, a malicious coordinator with
//! the real coordinator's identity) against the real quorum over QUIC: 3 cosigners, t = 2,
//! c1 the only key holder — once with every cosigner on the default policy and once with
//! t − 1 = 1 cosigner fully permissive. Each attempt must be refused with its tag and
//! nothing signed.
//!
//! - a channel set up with holder keys that are not the quorum's (fake funding), then a
//!   wallet PSBT funding it;
//! - the same setup sent around the coordinator without a key holder's attestation;
//! - an incoming HTLC that was failed still "covering" a forward of its hash;
//! - a node-key invoice request whose preimage is a heartbeat's (cross-purpose signature);
//! - gossip for another chain, or shaped as an LN signmessage.

use bitcoin::hashes::{sha256, Hash};
use bitcoin::psbt::Psbt;
use bitcoin::{Amount, TxOut};
use qls_protocol::*;
use qls_signer_core::policy::PolicyConfig;
use qls_signer_core::wallet::wallet_script;
use qls_simnet::counterparty::Counterparty;
use qls_simnet::harness::{test_policy, Harness, QuorumSpec};
use qls_simnet::legacy_driver::LegacyChannelDriver;
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
async fn refused(client: &qls_coordinator::client::NodeClient, request: NodeRequest, tag: &str, honest: &[&str]) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_incoming_htlc_covers_no_forward() {
    for (h, honest) in quorums().await {
        let client = h.client().await.unwrap();
        let (mut inbound, _) =
            LegacyChannelDriver::open(&client, &h.chain, [0xa1; 32], 1_000_000, false).await.unwrap();
        let (mut outbound, _) =
            LegacyChannelDriver::open(&client, &h.chain, [0xa2; 32], 1_000_000, true).await.unwrap();
        let preimage = [0x42; 32];
        // An incoming HTLC arrives and is irrevocably ours...
        inbound.book.receive(200_000_000, preimage, 800);
        inbound.update(&client).await.unwrap();
        // ...and is failed back.
        let i = inbound.book.position(&sha256::Hash::hash(&preimage).to_byte_array()).unwrap();
        inbound.book.fail(i);
        inbound.update(&client).await.unwrap();
        // A "forward" of its hash now has nothing behind it.
        outbound.book.offer(200_000_000, preimage, 700);
        let info = outbound.next_counterparty_info().unwrap();
        let request = NodeRequest::Channel {
            channel: [0xa2; 32],
            request: ChannelRequest::SignCounterpartyCommitment { commitment: info, outbound_preimages: vec![] },
        };
        refused(&client, request, "policy-routing-unbalanced", &honest).await;
        h.shutdown().await;
    }
}

/// The node invents an inbound channel (our real keys, a counterparty of the attacker's)
/// that was never funded on chain, "receives" an HTLC on it and forwards its hash out on
/// a real channel: the invented HTLC covers nothing. Funding proofs that do not hold
/// (another transaction, a block outside the cosigners' chain) do not make it real.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn htlcs_on_a_channel_never_funded_on_chain_cover_no_forward() {
    for (h, honest) in quorums().await {
        let client = h.client().await.unwrap();
        let invented: ChannelKeysId = [0xb1; 32];
        let (keys, _) = client.channel_keys(invented).await.unwrap();
        let attacker = Counterparty::new();
        let setup = attacker.setup(keys.points, 1_000_000, false, [0x6b; 32]);
        client.channel(invented, ChannelRequest::Setup(setup.clone())).await.unwrap();
        let (mut fake, _) = LegacyChannelDriver::after_setup(&client, invented, attacker, setup).await.unwrap();
        // A "proof" of another transaction mined on the real chain, and one whose block
        // the cosigners never saw.
        let other = qls_simnet::sim_chain::funding_tx([0x6c; 32], &bitcoin::ScriptBuf::new(), 1_000_000, 0);
        let mut proof = h.chain.lock().unwrap().confirm(&[other]).remove(0);
        let bogus =
            NodeRequest::Channel { channel: invented, request: ChannelRequest::FundingConfirmed(proof.clone()) };
        refused(&client, bogus, "policy-funding-proof", &honest).await;
        proof.headers.clear();
        proof.block_header[0] ^= 1;
        let unknown = NodeRequest::Channel { channel: invented, request: ChannelRequest::FundingConfirmed(proof) };
        refused(&client, unknown, "policy-funding-proof", &honest).await;
        // The invented incoming HTLC is accepted on the invented channel (it moves nothing
        // of ours)...
        let preimage = [0x43; 32];
        fake.book.receive(300_000_000, preimage, 800);
        fake.update(&client).await.unwrap();
        // ...but a real channel's outgoing HTLC of its hash is not a forward of anything.
        let (mut real, _) = LegacyChannelDriver::open(&client, &h.chain, [0xb2; 32], 1_000_000, true).await.unwrap();
        real.book.offer(300_000_000, preimage, 700);
        let info = real.next_counterparty_info().unwrap();
        let request = NodeRequest::Channel {
            channel: [0xb2; 32],
            request: ChannelRequest::SignCounterpartyCommitment { commitment: info, outbound_preimages: vec![] },
        };
        refused(&client, request, "policy-routing-unbalanced", &honest).await;
        h.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_key_requests_sign_only_what_their_kind_means() {
    for (h, honest) in quorums().await {
        let client = h.client().await.unwrap();
        // An "invoice" whose hrp ‖ data is a heartbeat's tagged-hash preimage: its SHA-256
        // would be a valid heartbeat for a tip of the attacker's choosing.
        let tag = sha256::Hash::hash(b"QLS/heartbeat/v1").to_byte_array();
        let mut preimage = [tag, tag].concat();
        for part in [&100u32.to_be_bytes()[..], &[7; 32], &1_700_000_000u64.to_be_bytes()] {
            preimage.extend_from_slice(&(part.len() as u64).to_be_bytes());
            preimage.extend_from_slice(part);
        }
        assert_eq!(
            sha256::Hash::hash(&preimage).to_byte_array(),
            qls_signer_core::chain::heartbeat_message(100, &[7; 32], 1_700_000_000)
        );
        let invoice = NodeKeyRequest::SignInvoice {
            hrp: preimage[..64].to_vec(),
            data: preimage[64..].to_vec(),
            payment_hash: [1; 32],
            amount_msat: None,
        };
        refused(&client, NodeRequest::NodeKey(invoice), "policy-node-invoice-shape", &honest).await;
        // Gossip: a channel update of another chain; a message shaped as LN signmessage.
        let mut update = bitcoin::constants::ChainHash::BITCOIN.to_bytes().to_vec();
        update.extend_from_slice(&[0; 46]);
        let gossip = NodeKeyRequest::SignGossip { kind: GossipKind::ChannelUpdate, message: update };
        refused(&client, NodeRequest::NodeKey(gossip), "policy-node-gossip-shape", &honest).await;
        let mut message = b"Lightning Signed Message:".to_vec();
        message.extend_from_slice(&[0; 200]);
        let gossip = NodeKeyRequest::SignGossip { kind: GossipKind::NodeAnnouncement, message };
        refused(&client, NodeRequest::NodeKey(gossip), "policy-node-gossip-shape", &honest).await;
        h.shutdown().await;
    }
}
