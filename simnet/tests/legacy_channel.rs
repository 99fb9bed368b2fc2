//! Legacy (anchor) channel requests through the real quorum over QUIC: 3 cosigners, t = 2,
//! c1 the key holder. The test plays the channel counterparty with its own keys and an
//! attacker holding the node, talking to the coordinator as the node would.
//!
//! Every signature the quorum returns is checked with libsecp256k1 against the
//! transaction rebuilt by LDK's `chan_utils`; the force-close commitment is checked with
//! Bitcoin Core's script interpreter (`bitcoinconsensus`).

use bitcoin::hashes::{sha256, Hash};
use bitcoin::secp256k1::{PublicKey, SecretKey};
use bitcoin::{Amount, ScriptBuf, Witness};
use qls_node::client::NodeClient;
use qls_protocol::*;
use qls_signer_core::channel::parse::{self, Broadcaster};
use qls_signer_core::channel::state::INITIAL_COMMITMENT_NUMBER as N0;
use qls_signer_core::policy::PolicyConfig;
use qls_signer_core::wallet::wallet_script;
use qls_simnet::counterparty::{htlc, Counterparty, DELAY, FEERATE};
use qls_simnet::harness::{approve_payment_request, test_policy, Harness, QuorumSpec};

const VALUE: u64 = 1_000_000;
const CHANNEL: ChannelKeysId = [0x42; 32];

struct Channel {
    cp: Counterparty,
    setup: ChannelSetup,
    client: NodeClient,
}

fn fee(n: usize) -> u64 {
    u64::from(FEERATE) * (1124 + 172 * n as u64) / 1000
}

fn ours_sat(n_htlcs: usize, htlc_sat: u64, theirs: u64) -> u64 {
    VALUE - fee(n_htlcs) - 660 - htlc_sat - theirs
}

fn wallet(h: &Harness) -> ScriptBuf {
    wallet_script(&h.quorum.key.key_id).unwrap()
}

impl Channel {
    async fn open(h: &Harness) -> Self {
        let client = h.client().await.unwrap();
        let (keys, node_id) = client.channel_keys(CHANNEL).await.unwrap();
        assert_eq!(node_id.len(), 33);
        let cp = Counterparty::new();
        let setup = cp.setup(keys.points, VALUE, true, [0x77; 32]);
        let ch = Self { cp, setup, client };
        ch.ok(ChannelRequest::Setup(ch.setup.clone())).await;
        let ours = ours_sat(0, 0, 0);
        ch.sign_cp(ch.cp_info(N0, 0, ours, vec![]), vec![]).await;
        ch.ok(ch.validate_req(ch.holder_info(N0, ours, 0, vec![]).await, vec![])).await;
        ch
    }

    async fn ok(&self, req: ChannelRequest) -> KeyHolderOutput {
        let (out, report) = self.client.channel(CHANNEL, req).await.expect("honest request signed");
        assert!(report.blamed.is_empty(), "{report:?}");
        out
    }

    /// Refused, with `tag`, by every honest cosigner asked.
    async fn refused(&self, req: ChannelRequest, tag: &str, honest: &[&str]) {
        match self.client.call(&NodeRequest::Channel { channel: CHANNEL, request: req }).await.unwrap() {
            NodeResponse::Refused { refusals, .. } => {
                for name in honest {
                    let r = refusals
                        .iter()
                        .find(|r| r.cosigner == *name)
                        .unwrap_or_else(|| panic!("{name} did not refuse: {refusals:?}"));
                    assert!(r.violations.iter().any(|v| v.tag == tag), "{name}: {:?}", r.violations);
                }
            }
            other => panic!("expected a refusal with {tag}, got {other:?}"),
        }
    }

    fn cp_info(&self, n: u64, theirs: u64, ours: u64, htlcs: Vec<HtlcInfo>) -> CommitmentInfo {
        self.cp.commitment(n, theirs, ours, htlcs)
    }

    async fn holder_info(&self, n: u64, ours: u64, theirs: u64, htlcs: Vec<HtlcInfo>) -> CommitmentInfo {
        CommitmentInfo {
            commitment_number: n,
            per_commitment_point: self.client.per_commitment_point(CHANNEL, n).await.unwrap(),
            to_broadcaster_sat: ours,
            to_countersignatory_sat: theirs,
            feerate_per_kw: FEERATE,
            htlcs,
        }
    }

    fn funding_script(&self) -> ScriptBuf {
        Counterparty::funding_script(&self.setup).unwrap()
    }

    /// Signs their commitment through the quorum and checks the signature independently.
    async fn sign_cp(&self, info: CommitmentInfo, preimages: Vec<[u8; 32]>) {
        let out = self
            .ok(ChannelRequest::SignCounterpartyCommitment { commitment: info.clone(), outbound_preimages: preimages })
            .await;
        let KeyHolderOutput::Signatures { sig, htlc_sigs } = out else { panic!("{out:?}") };
        let params = parse::transaction_parameters(&self.setup).unwrap();
        let tx = parse::commitment(&params, &info, Broadcaster::Counterparty, &self.cp.secp).unwrap();
        let sighash = tx.trust().built_transaction().get_sighash_all(&self.funding_script(), VALUE);
        let sig = bitcoin::secp256k1::ecdsa::Signature::from_compact(&sig).unwrap();
        let holder_funding = PublicKey::from_slice(&self.setup.holder.funding).unwrap();
        assert!(
            self.cp.secp.verify_ecdsa(&sighash, &sig, &holder_funding).is_ok(),
            "libsecp256k1 rejects the commitment signature"
        );
        assert_eq!(htlc_sigs.len(), info.htlcs.len());
    }

    fn validate_req(&self, info: CommitmentInfo, preimages: Vec<[u8; 32]>) -> ChannelRequest {
        self.cp.validate_request(&self.setup, info, preimages).unwrap()
    }

    /// A full update round: their commitment, ours, our revocation, theirs.
    async fn round(&self, n: u64, ours: u64, theirs: u64, cp_htlcs: Vec<HtlcInfo>, preimages: Vec<[u8; 32]>) {
        let holder_htlcs: Vec<HtlcInfo> =
            cp_htlcs.iter().map(|h| HtlcInfo { offered: !h.offered, ..h.clone() }).collect();
        self.sign_cp(self.cp_info(n, theirs, ours, cp_htlcs), preimages.clone()).await;
        self.ok(self.validate_req(self.holder_info(n, ours, theirs, holder_htlcs).await, preimages)).await;
        let KeyHolderOutput::Secret(secret) =
            self.ok(ChannelRequest::ReleaseCommitmentSecret { commitment_number: n + 1 }).await
        else {
            panic!("no secret")
        };
        let point = self.client.per_commitment_point(CHANNEL, n + 1).await.unwrap();
        let derived = PublicKey::from_secret_key(&self.cp.secp, &SecretKey::from_slice(&secret).unwrap());
        assert_eq!(derived.serialize().to_vec(), point, "released secret matches the published point");
        self.ok(ChannelRequest::ValidateCounterpartyRevocation {
            commitment_number: n + 1,
            secret: self.cp.secret(n + 1),
        })
        .await;
    }
}

async fn approve_payment(ch: &Channel, tag: u8, sat: u64) {
    let hash = sha256::Hash::hash(&[tag; 32]).to_byte_array();
    let (out, _) = ch.client.node_key(approve_payment_request(hash, sat * 1000)).await.unwrap();
    assert_eq!(out, KeyHolderOutput::Done);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honest_updates_are_signed_and_a_compromised_node_cannot_drain() {
    let h = Harness::start(QuorumSpec::new(3, 2)).await.unwrap();
    let ch = Channel::open(&h).await;
    let all = ["c1", "c2", "c3"];

    // An approved payment goes out and settles.
    approve_payment(&ch, 1, 100_000).await;
    ch.round(N0 - 1, ours_sat(1, 100_000, 0), 0, vec![htlc(false, 100_000, 1)], vec![]).await;
    ch.round(N0 - 2, ours_sat(0, 0, 100_000), 100_000, vec![], vec![[1; 32]]).await;

    // Attacks, each refused with its tag by every cosigner.
    // The node approves its own payment (signing with a key that is not an approver).
    let forged = {
        let secp = bitcoin::secp256k1::Secp256k1::new();
        let node_key = SecretKey::from_slice(&[0x77; 32]).unwrap();
        let hash = sha256::Hash::hash(&[30; 32]).to_byte_array();
        let expires_at = u64::MAX;
        let msg = bitcoin::secp256k1::Message::from_digest(qls_signer_core::channel::payment_approval_message(
            &hash,
            500_000_000,
            expires_at,
        ));
        NodeKeyRequest::ApprovePayment {
            payment_hash: hash,
            amount_msat: 500_000_000,
            expires_at,
            invoice: None,
            approval: Some(qls_protocol::PaymentApproval {
                approver: PublicKey::from_secret_key(&secp, &node_key).serialize().to_vec(),
                sig: secp.sign_ecdsa(&msg, &node_key).serialize_compact().to_vec(),
            }),
        }
    };
    match ch.client.call(&NodeRequest::NodeKey(forged)).await.unwrap() {
        NodeResponse::Refused { refusals, .. } => {
            assert_eq!(refusals.len(), 3, "{refusals:?}");
            assert!(refusals.iter().all(|r| r.violations.iter().any(|v| v.tag == "policy-payment-approver")));
        }
        other => panic!("a self-approved payment was accepted: {other:?}"),
    }
    let ours = ours_sat(0, 0, 100_000);
    ch.refused(
        ch.cp_info(N0 - 3, 100_000, ours, vec![htlc(false, 50_000, 9)]).pipe_sign(),
        "policy-routing-unbalanced",
        &all,
    )
    .await;
    approve_payment(&ch, 2, 10_000).await;
    ch.refused(
        ch.cp_info(N0 - 3, 100_000, ours_sat(1, 20_000, 100_000), vec![htlc(false, 20_000, 2)]).pipe_sign(),
        "policy-payment-fee-max",
        &all,
    )
    .await;
    ch.refused(
        ChannelRequest::SignCounterpartyCommitment {
            commitment: ch.cp_info(N0 - 3, 100_000, ours_sat(1, 10_000, 100_000), vec![htlc(false, 10_000, 1)]),
            outbound_preimages: vec![],
        },
        "policy-invoice-paid-twice",
        &all,
    )
    .await;
    ch.refused(
        ChannelRequest::SignCounterpartyCommitment {
            commitment: ch.cp_info(N0 - 3, 300_000, ours - 200_000, vec![]),
            outbound_preimages: vec![],
        },
        "policy-commitment-holder-balance",
        &all,
    )
    .await;
    ch.refused(
        ChannelRequest::ReleaseCommitmentSecret { commitment_number: N0 - 2 },
        "policy-revoke-before-next-commitment",
        &all,
    )
    .await;
    let revoked = ch.holder_info(N0 - 1, ours_sat(1, 100_000, 0), 0, vec![htlc(true, 100_000, 1)]).await;
    ch.refused(ChannelRequest::SignHolderCommitment { commitment: revoked }, "policy-commitment-holder-revoked", &all)
        .await;
    let foreign = ScriptBuf::new_p2wpkh(&bitcoin::WPubkeyHash::hash(b"attacker"));
    let close = |to: &ScriptBuf| ChannelRequest::SignClosing {
        to_holder_sat: ours + 1124 + 660 - 500,
        to_counterparty_sat: 100_000,
        to_holder_script: to.to_bytes(),
        to_counterparty_script: foreign.to_bytes(),
    };
    ch.refused(close(&foreign), "policy-close-destination", &all).await;
    let req = ch.validate_req(ch.holder_info(N0 - 3, ours, 100_000, vec![]).await, vec![]);
    let ChannelRequest::ValidateHolderCommitment { commitment, counterparty_htlc_sigs, outbound_preimages, .. } =
        req.clone()
    else {
        unreachable!()
    };
    let bad_sig = ChannelRequest::ValidateHolderCommitment {
        commitment,
        counterparty_sig: vec![1; 64],
        counterparty_htlc_sigs,
        outbound_preimages,
    };
    match ch.client.call(&NodeRequest::Channel { channel: CHANNEL, request: bad_sig }).await.unwrap() {
        NodeResponse::Refused { .. } | NodeResponse::Error { .. } | NodeResponse::Unavailable { .. } => {}
        other => panic!("a holder commitment with a bad signature was accepted: {other:?}"),
    }

    // The honest close to our wallet is signed.
    let out = ch.ok(close(&wallet(&h))).await;
    assert!(matches!(out, KeyHolderOutput::Signatures { .. }));
    h.shutdown().await;
}

trait PipeSign {
    fn pipe_sign(self) -> ChannelRequest;
}
impl PipeSign for CommitmentInfo {
    fn pipe_sign(self) -> ChannelRequest {
        ChannelRequest::SignCounterpartyCommitment { commitment: self, outbound_preimages: vec![] }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_close_commitment_passes_bitcoin_core_and_sweep_to_foreign_script_is_refused() {
    let h = Harness::start(QuorumSpec::new(3, 2)).await.unwrap();
    let ch = Channel::open(&h).await;
    let ours = ours_sat(0, 0, 0);
    let latest = ch.holder_info(N0, ours, 0, vec![]).await;
    let KeyHolderOutput::Signatures { sig, .. } =
        ch.ok(ChannelRequest::SignHolderCommitment { commitment: latest.clone() }).await
    else {
        panic!()
    };
    // Assemble the 2-of-2 witness and run Bitcoin Core's interpreter on the funding spend.
    let params = parse::transaction_parameters(&ch.setup).unwrap();
    let commitment = parse::commitment(&params, &latest, Broadcaster::Holder, &ch.cp.secp).unwrap();
    let trusted = commitment.trust();
    let mut tx = trusted.built_transaction().transaction.clone();
    let sighash = trusted.built_transaction().get_sighash_all(&ch.funding_script(), VALUE);
    let cp_sig = ch.cp.sign_funding(&sighash);
    let holder_sig = bitcoin::secp256k1::ecdsa::Signature::from_compact(&sig).unwrap();
    let (first, second) = if ch.setup.holder.funding < ch.setup.counterparty.funding {
        (holder_sig, cp_sig)
    } else {
        (cp_sig, holder_sig)
    };
    let mut w = Witness::new();
    w.push(Vec::new());
    w.push_ecdsa_signature(&bitcoin::ecdsa::Signature::sighash_all(first));
    w.push_ecdsa_signature(&bitcoin::ecdsa::Signature::sighash_all(second));
    w.push(ch.funding_script().as_bytes());
    tx.input[0].witness = w;
    let spent = ch.funding_script().to_p2wsh();
    let bytes = bitcoin::consensus::serialize(&tx);
    let utxo = [bitcoinconsensus::Utxo {
        script_pubkey: spent.as_bytes().as_ptr(),
        script_pubkey_len: spent.len() as u32,
        value: VALUE as i64,
    }];
    bitcoinconsensus::verify(spent.as_bytes(), VALUE, &bytes, Some(&utxo), 0)
        .expect("Bitcoin Core accepts the force-close commitment");

    // Now the node tries to sweep our to_local to a foreign script, then to our wallet.
    let vout = trusted.revokeable_output_index().unwrap();
    let value = tx.output[vout].value.to_sat();
    let sweep = |script: ScriptBuf| {
        let t = bitcoin::Transaction {
            version: bitcoin::transaction::Version::TWO,
            lock_time: bitcoin::absolute::LockTime::ZERO,
            input: vec![bitcoin::TxIn {
                previous_output: bitcoin::OutPoint { txid: trusted.txid(), vout: vout as u32 },
                script_sig: ScriptBuf::new(),
                sequence: bitcoin::Sequence(u32::from(DELAY)),
                witness: Witness::new(),
            }],
            output: vec![bitcoin::TxOut { value: Amount::from_sat(value - 1000), script_pubkey: script }],
        };
        ChannelRequest::SignDelayedSweep { tx: bitcoin::consensus::serialize(&t), input: 0 }
    };
    let foreign = ScriptBuf::new_p2wpkh(&bitcoin::WPubkeyHash::hash(b"attacker"));
    ch.refused(sweep(foreign), "policy-sweep-destination", &["c1", "c2", "c3"]).await;
    let KeyHolderOutput::Witness(w) = ch.ok(sweep(wallet(&h))).await else { panic!() };
    assert_eq!(w.len(), 3, "sig, empty (non-revocation branch), witness script");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_permissive_cosigner_cannot_get_a_drain_signed() {
    let mut spec = QuorumSpec::new(3, 2);
    spec.policies = vec![test_policy(), test_policy(), PolicyConfig::permissive()];
    let h = Harness::start(spec).await.unwrap();
    let ch = Channel::open(&h).await;
    let foreign = ScriptBuf::new_p2wpkh(&bitcoin::WPubkeyHash::hash(b"attacker"));
    let drain = ChannelRequest::SignClosing {
        to_holder_sat: VALUE - 2_000,
        to_counterparty_sat: 0,
        to_holder_script: foreign.to_bytes(),
        to_counterparty_script: foreign.to_bytes(),
    };
    ch.refused(drain.clone(), "policy-close-destination", &["c1", "c2"]).await;
    let fwd = ch.cp_info(N0 - 1, 0, ours_sat(1, 50_000, 0), vec![htlc(false, 50_000, 5)]);
    ch.refused(fwd.pipe_sign(), "policy-routing-unbalanced", &["c1", "c2"]).await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn htlc_count_and_in_flight_above_limits_are_refused() {
    // Cosigners configured for at most 2 HTLCs and 150,000 sat in flight per commitment.
    let mut policy = test_policy();
    policy.channel.max_htlcs = 2;
    policy.channel.max_inflight_msat = 150_000_000;
    let mut spec = QuorumSpec::new(3, 2);
    spec.policies = vec![policy.clone(), policy.clone(), policy];
    let h = Harness::start(spec).await.unwrap();
    let ch = Channel::open(&h).await;
    let all = ["c1", "c2", "c3"];
    for tag in [21, 22, 23] {
        approve_payment(&ch, tag, 10_000).await;
    }
    let three: Vec<_> = [21, 22, 23].into_iter().map(|t| htlc(false, 10_000, t)).collect();
    ch.refused(ch.cp_info(N0 - 1, 0, ours_sat(3, 30_000, 0), three).pipe_sign(), "policy-commitment-htlc-count", &all)
        .await;
    approve_payment(&ch, 24, 200_000).await;
    let big = vec![htlc(false, 200_000, 24)];
    ch.refused(
        ch.cp_info(N0 - 1, 0, ours_sat(1, 200_000, 0), big).pipe_sign(),
        "policy-commitment-htlc-inflight",
        &all,
    )
    .await;
    // Within both limits the same kind of update is signed.
    ch.round(N0 - 1, ours_sat(2, 20_000, 0), 0, vec![htlc(false, 10_000, 21), htlc(false, 10_000, 22)], vec![]).await;
    h.shutdown().await;
}

/// A cosigner down while the channel moved on judges the requests it missed when it is
/// back (the coordinator replays them, in order, before its next request of the channel),
/// so its state digest agrees again and it counts. (A cosigner whose state truly differs —
/// rolled back, forked — is still reported `StateDiverged`: the scenario tests'
/// `stale-state` cosigner.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cosigner_that_missed_an_update_catches_up_by_replay() {
    let mut h = Harness::start(QuorumSpec::new(3, 2)).await.unwrap();
    let ch = Channel::open(&h).await;
    // c3 misses two state changes (commitments).
    h.stop_cosigner(2).await;
    let ours = ours_sat(0, 0, 0);
    let req = ch.cp_info(N0 - 1, 0, ours, vec![]).pipe_sign();
    let (_, report) = ch.client.channel(CHANNEL, req).await.expect("c1 and c2 sign without c3");
    assert!(report.blamed.iter().any(|b| b.cosigner == "c3" && b.reason == BlameReason::Unreachable));
    let validate = ch.validate_req(ch.holder_info(N0 - 1, ours, 0, vec![]).await, vec![]);
    ch.client.channel(CHANNEL, validate).await.expect("c1 and c2 approve without c3");
    assert_eq!(h.quorum.members[2].missed.pending(), 2, "both requests wait for c3");
    h.start_cosigner(2).await.unwrap();
    // Let the coordinator's dial back-off and background probe see c3 again.
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    // The next request finds c3 behind: its catch-up runs in the background (no round
    // waits for it) and c3 judges the two it missed, in order, then this one.
    let close = ChannelRequest::SignClosing {
        to_holder_sat: VALUE - 1_000,
        to_counterparty_sat: 0,
        to_holder_script: wallet(&h).to_bytes(),
        to_counterparty_script: wallet(&h).to_bytes(),
    };
    ch.client.channel(CHANNEL, close.clone()).await.expect("c1 and c2 sign while c3 catches up");
    for _ in 0..200 {
        if h.quorum.members[2].missed.pending() == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(h.quorum.members[2].missed.stats().replayed, 3, "c3 judged the two it missed and the close");
    assert_eq!(h.quorum.members[2].missed.stats().refused, 0);
    // Caught up, its digest agrees again: asked again (a retry), it counts.
    let (out, report) = ch.client.channel(CHANNEL, close).await.expect("the quorum signs");
    assert!(matches!(out, KeyHolderOutput::Signatures { .. }));
    assert!(report.blamed.is_empty(), "{report:?}");
    assert!(report.signers.contains(&"c3".to_string()), "{report:?}");
    assert_eq!(h.quorum.members[2].missed.pending(), 0);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holder_commitment_with_a_foreign_point_is_refused_by_the_key_holder() {
    let h = Harness::start(QuorumSpec::new(3, 2)).await.unwrap();
    let ch = Channel::open(&h).await;
    // The counterparty could know the secret of a point that is not ours and take our
    // to_local by the revocation path; only the key holder can tell.
    let ours = ours_sat(0, 0, 0);
    let mut info = ch.holder_info(N0 - 1, ours, 0, vec![]).await;
    info.per_commitment_point = ch.cp.point(3);
    let reply =
        ch.client.call(&NodeRequest::Channel { channel: CHANNEL, request: ch.validate_req(info, vec![]) }).await;
    assert!(!matches!(reply.unwrap(), NodeResponse::KeyHolder { .. }), "accepted a foreign per-commitment point");
    h.shutdown().await;
}

/// A coordinator (or link) that drops the key holder's replies — the counterparty
/// commitment's signatures, or the revocation secret — after every cosigner has recorded
/// the step cannot leave the channel without a force close: our latest validated holder
/// commitment is still signed for broadcast (and passes Bitcoin Core's interpreter), and
/// the dropped step itself can be retried with the same data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_key_holder_replies_never_cost_the_force_close() {
    use std::sync::atomic::{AtomicU8, Ordering};
    use std::sync::Arc;
    // 0: pass everything; 1: drop commitment signatures; 2: drop revocation secrets.
    let drop_mode = Arc::new(AtomicU8::new(0));
    let mode = drop_mode.clone();
    let fault: qls_cosigner::ReplyFault = Arc::new(move |reply| match (&reply, mode.load(Ordering::SeqCst)) {
        (CosignerResponse::KeyHolderSigned(KeyHolderOutput::Signatures { .. }), 1)
        | (CosignerResponse::KeyHolderSigned(KeyHolderOutput::Secret(_)), 2) => {
            CosignerResponse::Error { kind: ErrorKind::Internal, detail: "reply dropped".into() }
        }
        _ => reply,
    });
    let mut spec = QuorumSpec::new(3, 2);
    spec.faults = vec![Some(fault), None, None];
    let h = Harness::start(spec).await.unwrap();
    let client = h.client().await.unwrap();
    for (k, mode) in [(1u8, 1u8), (2, 2)] {
        let (mut d, _) =
            qls_simnet::legacy_driver::LegacyChannelDriver::open(&client, &h.chain, [0xd0 + k; 32], 1_000_000, true)
                .await
                .unwrap();
        let hash = sha256::Hash::hash(&[0x50 + k; 32]).to_byte_array();
        client.node_key(approve_payment_request(hash, 100_000_000)).await.unwrap();
        d.book.offer(100_000_000, [0x50 + k; 32], 700);
        drop_mode.store(mode, Ordering::SeqCst);
        assert!(d.update(&client).await.is_err(), "mode {mode}: the dropped reply surfaced as an error");
        // Still dropping: the force close needs no reply of the kind being dropped (the
        // holder commitment is signed as `Signatures`, so mode 1 stops dropping first).
        if mode == 1 {
            drop_mode.store(0, Ordering::SeqCst);
        }
        let (spend, _) = d.force_close(&client).await.expect("our latest validated commitment is signed");
        qls_simnet::channels::consensus_check_input(&spend.tx, &spend.spent, 0)
            .expect("the force close passes Bitcoin Core's interpreter");
        drop_mode.store(0, Ordering::SeqCst);
    }
    h.shutdown().await;
}

/// Two key holders (c1, c2): with c1 cut off (its link partitioned, so the coordinator
/// sees no closed connection), the first request after times out on it once (in the
/// approval round, which marks it down) and c2 signs at once — c1 is not tried again as
/// key holder in that request (a second timeout), nor asked at all in the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_first_key_holder_down_the_next_signs_at_once() {
    let mut spec = QuorumSpec::new(3, 2);
    spec.key_holders = vec![0, 1];
    spec.request_timeout = std::time::Duration::from_millis(500);
    let h = Harness::start(spec).await.unwrap();
    let client = h.client().await.unwrap();
    let (mut d, _) =
        qls_simnet::legacy_driver::LegacyChannelDriver::open(&client, &h.chain, [0xe1; 32], 1_000_000, true)
            .await
            .unwrap();
    let hash = sha256::Hash::hash(&[0xe1; 32]).to_byte_array();
    client.node_key(approve_payment_request(hash, 100_000_000)).await.unwrap();
    d.book.offer(100_000_000, [0xe1; 32], 700);
    let cut = qls_simnet::faulty_socket::LinkFaults { partitioned: true, ..Default::default() };
    h.impair_link(0, cut);
    let info = d.next_counterparty_info().unwrap();
    let request = ChannelRequest::SignCounterpartyCommitment { commitment: info, outbound_preimages: vec![] };
    let (out, report) = client.channel([0xe1; 32], request).await.expect("c2 signs as key holder");
    assert!(matches!(out, KeyHolderOutput::Signatures { .. }));
    let c1_blamed = report.blamed.iter().filter(|b| b.cosigner == "c1").count();
    assert_eq!(c1_blamed, 1, "c1 tried once, not again as key holder: {report:?}");
    // Its request times out in the background and marks it down.
    for _ in 0..100 {
        if h.quorum.members[0].is_down() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(h.quorum.members[0].is_down());
    // Our commitment for broadcast: c1 is not asked, c2 signs.
    let latest = d.holder_latest.clone().unwrap();
    let (_, report) =
        client.channel([0xe1; 32], ChannelRequest::SignHolderCommitment { commitment: latest }).await.unwrap();
    assert!(report.signers.contains(&"c2".to_string()) && !report.signers.contains(&"c1".to_string()), "{report:?}");
    h.shutdown().await;
}
