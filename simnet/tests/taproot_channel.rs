//! Simple taproot channels, both sides, over real QUIC: the QLS quorum (3 cosigners; the
//! funding key is their 3-of-3 NestedMuSig2 node, every other key 2-of-3 FROST) against a
//! counterparty with single keys running plain BIP-327 (the independent `musig2` crate),
//! driven by `qls_simnet::taproot_driver`. Every signature is checked by the counterparty's
//! own code and libsecp256k1; every signed transaction here also passes Bitcoin Core's script
//! interpreter (`bitcoinconsensus`, taproot key and script paths, all spent outputs given).
//!
//! Channel A: 100 updates both ways with HTLCs added, fulfilled and failed in both
//! directions (ours approved by the operator), justice on a revoked commitment (to_local,
//! HTLC and second-level outputs through the revocation key), a compromised node's
//! attempts, cooperative close. Channel B: force close with the verification nonce, HTLC-success and
//! HTLC-timeout, and sweeps of to_local, a second-level output, our anchor, to_remote and
//! (had the counterparty's commitment been broadcast) both HTLCs from it.

use bitcoin::hashes::{sha256, Hash};
use bitcoin::taproot::LeafVersion;
use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness};
use qls_node::client::{ClientError, NodeClient};
use qls_protocol::*;
use qls_signer_core::policy::PolicyConfig;
use qls_signer_core::taproot_channel::{self as tc, Side};
use qls_signer_core::taproot_scripts::{accepted_htlc, anchor, offered_htlc, second_level_htlc, to_local, to_remote};
use qls_simnet::channels::consensus_check_input;
use qls_simnet::harness::{approve_payment_request, test_policy, Harness, QuorumSpec};
use qls_simnet::taproot_driver::{DriverError, SignedSpend, TaprootChannelDriver};

const VALUE: u64 = 2_000_000;
/// Commitment rounds of channel A before its cooperative close.
const UPDATES: u64 = 100;
const ALL: &[&str] = &["c1", "c2", "c3"];

fn setup(funding_txid: [u8; 32]) -> TaprootChannelSetup {
    qls_simnet::taproot_counterparty::setup(VALUE, funding_txid)
}

fn spec() -> QuorumSpec {
    let mut spec = QuorumSpec::new(3, 2);
    spec.policies = vec![test_policy(), test_policy(), test_policy()];
    spec
}

/// Bitcoin Core's interpreter on input `input` of a signed spend (all spent outputs
/// given); a changed first output must fail it.
fn consensus_ok(s: &SignedSpend, input: usize) {
    consensus_check_input(&s.tx, &s.spent, input)
        .unwrap_or_else(|e| panic!("the script interpreter refuses the spend: {e}"));
    let mut changed = s.tx.clone();
    changed.output[0].value -= Amount::from_sat(1);
    assert!(
        consensus_check_input(&changed, &s.spent, input).is_err(),
        "a changed output must invalidate the signature"
    );
}

fn refused<T: std::fmt::Debug, E: Into<DriverError>>(result: Result<T, E>, tag: &str, honest: &[&str]) {
    match result.map_err(Into::into) {
        Err(DriverError::Client(ClientError::Refused(refusals))) => {
            for name in honest {
                let r = refusals.iter().find(|r| r.cosigner == *name).unwrap_or_else(|| panic!("{name}: {refusals:?}"));
                assert!(r.violations.iter().any(|v| v.tag == tag), "{name}: {:?}", r.violations);
            }
        }
        other => panic!("expected a refusal with {tag}, got {other:?}"),
    }
}

async fn approve(client: &NodeClient, preimage: &[u8; 32], amount_msat: u64) {
    let hash = sha256::Hash::hash(preimage).to_byte_array();
    client.node_key(approve_payment_request(hash, amount_msat)).await.unwrap();
}

fn preimage(n: u64) -> [u8; 32] {
    sha256::Hash::hash(&n.to_be_bytes()).to_byte_array()
}

/// A signed commitment of the counterparty's, as a spend of the funding output.
fn funding_spend(d: &TaprootChannelDriver, info: &TaprootCommitmentInfo, sig: &[u8; 64]) -> SignedSpend {
    let mut tx = tc::counterparty_commitment(&d.view, info).unwrap();
    tx.input[0].witness = Witness::p2tr_key_spend(&bitcoin::taproot::Signature {
        signature: bitcoin::secp256k1::schnorr::Signature::from_slice(sig).unwrap(),
        sighash_type: bitcoin::TapSighashType::Default,
    });
    SignedSpend { tx, spent: vec![tc::funding_txout(&d.view).unwrap()] }
}

fn foreign() -> ScriptBuf {
    ScriptBuf::from_bytes([&[0x51u8, 0x20][..], &[0xbb; 32]].concat())
}

fn their_close_script() -> ScriptBuf {
    ScriptBuf::from_bytes([&[0x00u8, 0x14][..], &[7; 20]].concat())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sided_updates_with_htlcs_both_ways_attacks_refused_and_cooperative_close() {
    let h = Harness::start(spec()).await.unwrap();
    let client = h.client().await.unwrap();
    let channel = [0x71; 32];
    let mut d = TaprootChannelDriver::open(&client, &h.chain, channel, setup([0x99; 32]), VALUE * 1000).await.unwrap();

    let ours_of = |d: &TaprootChannelDriver| d.book.htlcs.iter().position(|f| f.htlc.offered);
    let theirs_of = |d: &TaprootChannelDriver| d.book.htlcs.iter().position(|f| !f.htlc.offered);
    let (mut added, mut fulfilled, mut failed) = ([0u32; 2], [0u32; 2], [0u32; 2]);
    for n in 1..=UPDATES {
        match n % 8 {
            // We pay (approved by the operator); the counterparty pays us.
            1 | 5 => {
                approve(&client, &preimage(n), 30_000_000).await;
                d.book.offer(30_000_000, preimage(n), 700);
                added[0] += 1;
            }
            3 | 7 if d.book.theirs_msat >= 20_000_000 => {
                d.book.receive(20_000_000, preimage(n), 710);
                added[1] += 1;
            }
            2 => {
                if let Some(i) = ours_of(&d) {
                    d.book.fulfil(i);
                    fulfilled[0] += 1;
                }
            }
            6 => {
                if let Some(i) = ours_of(&d) {
                    d.book.fail(i);
                    failed[0] += 1;
                }
            }
            0 => {
                if let Some(i) = theirs_of(&d) {
                    d.book.fulfil(i);
                    fulfilled[1] += 1;
                }
            }
            4 => {
                if let Some(i) = theirs_of(&d) {
                    d.book.fail(i);
                    failed[1] += 1;
                }
            }
            _ => {}
        }
        let (info, sig) = d.update(&client).await.unwrap();
        if n == 1 || n == UPDATES || n % 25 == 5 {
            consensus_ok(&funding_spend(&d, &info, &sig), 0);
        }
    }
    for k in 0..2 {
        assert!(added[k] > 5 && fulfilled[k] > 2 && failed[k] > 2, "{added:?} {fulfilled:?} {failed:?}");
    }
    assert_eq!(d.next_counterparty, UPDATES + 1);

    // Justice: had the counterparty broadcast a revoked commitment, the quorum takes its
    // to_local, its HTLC outputs (both directions) and a second-level output through the
    // revocation key; not so for its latest, unrevoked commitment.
    let wallet = qls_signer_core::wallet::wallet_script(&h.key_id()).unwrap();
    let revoked_with = |theirs: bool| {
        d.counterparty_history[..d.counterparty_history.len() - 2]
            .iter()
            .rev()
            .find(|c| c.htlcs.iter().any(|h| h.offered == theirs) && c.to_broadcaster_msat > 0)
            .cloned()
            .unwrap()
    };
    let key_path = |s: &[u8; 64]| Witness::from_slice(&[s.to_vec()]);
    let delay = d.view.setup.holder_selected_contest_delay;
    for revoked in [revoked_with(true), revoked_with(false)] {
        let n_revoked = revoked.commitment_number;
        let cp = tc::commitment(&d.view, &revoked, Side::Counterparty).unwrap();
        let txid = cp.tx.compute_txid();
        let take = |vout: usize, out: &TxOut| {
            (spend(OutPoint { txid, vout: vout as u32 }, out.value, 0, wallet.clone(), 500), 0, vec![out.clone()])
        };
        let local = to_local(&cp.keys.local_delayed, &cp.keys.revocation, delay).unwrap();
        let v = cp.tx.output.iter().position(|o| o.script_pubkey == local.script_pubkey()).unwrap();
        let out = cp.tx.output[v].clone();
        let witness = |s: &[u8; 64]| script_witness(&local, "revocation", s);
        let taken = d.justice(&client, take(v, &out), n_revoked, RevokedOutput::ToLocal, witness).await;
        consensus_ok(&taken.unwrap(), 0);
        let latest = d.counterparty_latest.clone().unwrap().commitment_number;
        let not_revoked = d.justice(&client, take(v, &out), latest, RevokedOutput::ToLocal, witness).await;
        refused(not_revoked, "policy-justice-revoked", ALL);
        for (hinfo, vout) in revoked.htlcs.iter().zip(&cp.htlc_vouts) {
            let vout = vout.unwrap() as usize;
            let out = cp.tx.output[vout].clone();
            let taken =
                d.justice(&client, take(vout, &out), n_revoked, RevokedOutput::Htlc(hinfo.clone()), key_path).await;
            consensus_ok(&taken.unwrap(), 0);
        }
        let (_, second) = cp.second_level(&revoked).unwrap().remove(0);
        let out = second.tx.output[0].clone();
        let tx = spend(OutPoint { txid: second.tx.compute_txid(), vout: 0 }, out.value, 0, wallet.clone(), 500);
        let taken = d.justice(&client, (tx, 0, vec![out]), n_revoked, RevokedOutput::SecondLevel, key_path).await;
        consensus_ok(&taken.unwrap(), 0);
    }

    // A compromised node. Counterparty commitments: a skipped number, the counterparty
    // paid our balance with no HTLC, values that do not add up, an HTLC of ours nobody
    // approved.
    let n = d.next_counterparty;
    let sign = |info: TaprootCommitmentInfo| TaprootRequest::SignCounterpartyCommitment {
        commitment: info,
        outbound_preimages: vec![],
    };
    refused(
        client.taproot_sign(channel, sign(d.counterparty_info(n + 1)), [2; 66]).await,
        "policy-commitment-sequence",
        ALL,
    );
    let mut drain = d.counterparty_info(n);
    drain.to_broadcaster_msat += 100_000_000;
    drain.to_countersignatory_msat -= 100_000_000;
    refused(client.taproot_sign(channel, sign(drain), [2; 66]).await, "policy-commitment-holder-balance", ALL);
    let mut bad = d.counterparty_info(n);
    bad.to_countersignatory_msat += 1;
    refused(client.taproot_sign(channel, sign(bad), [2; 66]).await, "policy-commitment-value", ALL);
    let mut unapproved = d.counterparty_info(n);
    unapproved.to_countersignatory_msat -= 40_000_000;
    unapproved.htlcs.push(HtlcInfo {
        offered: false,
        amount_msat: 40_000_000,
        cltv_expiry: 700,
        payment_hash: [0xee; 32],
    });
    refused(client.taproot_sign(channel, sign(unapproved), [2; 66]).await, "policy-routing-unbalanced", ALL);
    // Our holder commitment: the counterparty's signature made over other outputs, and a
    // verification nonce of another commitment (the current one's) reused for the next.
    let m = d.next_holder;
    let point = client.per_commitment_point(channel, (1 << 48) - 1 - m).await.unwrap();
    let (qn, verification) = client.taproot_verification_nonce(channel, m).await.unwrap();
    let mut next = d.holder.as_ref().unwrap().info.clone();
    next.commitment_number = m;
    next.per_commitment_point = point;
    let mut other = next.clone();
    other.to_broadcaster_msat -= 1_000_000;
    other.to_countersignatory_msat += 1_000_000;
    let mut signed = d.counterparty_signs_holder(&next, verification.clone(), qn).unwrap();
    signed.their_psig = d.counterparty_signs_holder(&other, verification, qn).unwrap().their_psig;
    refused(
        client.taproot_apply(channel, d.validate_request(&signed)).await,
        "policy-commitment-counterparty-sig",
        ALL,
    );
    let current = d.holder.clone().unwrap();
    let reused = d.counterparty_signs_holder(&next, current.verification.clone(), current.quorum_nonce).unwrap();
    refused(client.taproot_apply(channel, d.validate_request(&reused)).await, "policy-taproot-verification-nonce", ALL);
    // Our latest holder commitment cannot be revoked (the next is not validated).
    refused(client.taproot_revoke_holder(channel, m - 1).await, "policy-revoke-before-next-commitment", ALL);

    // Settle: our HTLCs fulfilled, theirs failed back; one more round; close.
    while let Some(i) = ours_of(&d) {
        d.book.fulfil(i);
    }
    while let Some(i) = theirs_of(&d) {
        d.book.fail(i);
    }
    d.update(&client).await.unwrap();
    let req = |to: &ScriptBuf, theirs_sat: u64| TaprootRequest::SignClosing {
        to_holder_sat: d.book.ours_msat / 1000 - 1_000,
        to_counterparty_sat: theirs_sat,
        holder_script: to.to_bytes(),
        counterparty_script: their_close_script().to_bytes(),
        locktime: 0,
    };
    refused(
        client.taproot_sign(channel, req(&foreign(), d.book.theirs_msat / 1000), [2; 66]).await,
        "policy-close-destination",
        ALL,
    );
    refused(
        client.taproot_sign(channel, req(&wallet, d.book.theirs_msat / 1000 + 50_000), [2; 66]).await,
        "policy-close-value",
        ALL,
    );
    let closed = d.close(&client, &wallet, &their_close_script(), 1_000).await.unwrap();
    consensus_ok(&closed, 0);
    // The reserved shutdown nonce signed once; after the close nothing more is signed.
    refused(
        client.taproot_sign(channel, sign(d.counterparty_info(d.next_counterparty)), [2; 66]).await,
        "policy-channel-closed",
        ALL,
    );
    let wrong = TaprootRequest::CounterpartyRevocation { commitment_number: d.next_counterparty - 2, secret: [9; 32] };
    refused(client.taproot_apply(channel, wrong).await, "policy-revocation-secret-mismatch", ALL);
    h.shutdown().await;
}

/// A transaction spending `spent` (one input, `sequence`) to `to` less `fee`.
fn spend(spent: OutPoint, value: Amount, sequence: u32, to: ScriptBuf, fee: u64) -> Transaction {
    Transaction {
        version: bitcoin::transaction::Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: spent,
            script_sig: ScriptBuf::new(),
            sequence: Sequence(sequence),
            witness: Witness::new(),
        }],
        output: vec![TxOut { value: value - Amount::from_sat(fee), script_pubkey: to }],
    }
}

/// The script-path witness of `leaf` of `output`.
fn script_witness(output: &qls_signer_core::taproot_scripts::TaprootOutput, leaf: &str, sig: &[u8; 64]) -> Witness {
    let script = output.leaf(leaf).unwrap().clone();
    let control = output.spend_info.control_block(&(script.clone(), LeafVersion::TapScript)).unwrap();
    Witness::from_slice(&[sig.to_vec(), script.to_bytes(), control.serialize()])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_close_with_htlc_transactions_and_sweeps() {
    let h = Harness::start(spec()).await.unwrap();
    let client = h.client().await.unwrap();
    let channel = [0x72; 32];
    let mut d = TaprootChannelDriver::open(&client, &h.chain, channel, setup([0x98; 32]), VALUE * 1000).await.unwrap();
    // Pay the counterparty 100,000 sat, then one HTLC each way in flight.
    approve(&client, &preimage(1), 100_000_000).await;
    d.book.offer(100_000_000, preimage(1), 600);
    d.update(&client).await.unwrap();
    d.book.fulfil(0);
    d.update(&client).await.unwrap();
    approve(&client, &preimage(2), 50_000_000).await;
    d.book.offer(50_000_000, preimage(2), 800);
    d.book.receive(20_000_000, preimage(3), 900);
    let previous = d.holder.clone().unwrap();
    d.update(&client).await.unwrap();

    // A revoked holder commitment is never signed, even in its own verification session.
    let revoked = TaprootRequest::SignHolderCommitment { commitment_number: previous.info.commitment_number };
    refused(
        client.taproot_sign_reserved(channel, revoked, previous.their_nonce, previous.verification).await,
        "policy-commitment-holder-revoked",
        ALL,
    );

    // Force close with the latest, completed with its stored verification nonce.
    let commitment = d.force_close(&client).await.unwrap();
    consensus_ok(&commitment, 0);
    // Its nonces are spent; asked again, every cosigner sends the partial signature it
    // made with its verification nonce: the identical signature, no second one.
    let again = d.force_close(&client).await.unwrap();
    assert_eq!(again.tx, commitment.tx, "the same force close, signed once");

    let info = d.holder.clone().unwrap().info;
    let built = tc::commitment(&d.view, &info, Side::Holder).unwrap();
    let second = built.second_level(&info).unwrap();
    let index_of = |offered: bool| second.iter().position(|(i, _)| info.htlcs[*i].offered == offered).unwrap();
    // HTLC-success (received): only with the preimage. HTLC-timeout (offered).
    refused(d.holder_htlc_tx(&client, index_of(false), None).await, "policy-htlc-preimage", ALL);
    let success = d.holder_htlc_tx(&client, index_of(false), Some(preimage(3))).await.unwrap();
    consensus_ok(&success, 0);
    let timeout = d.holder_htlc_tx(&client, index_of(true), None).await.unwrap();
    consensus_ok(&timeout, 0);

    let wallet = qls_signer_core::wallet::wallet_script(&h.key_id()).unwrap();
    let k = &built.keys;
    let txid = built.tx.compute_txid();
    let vout_of = |script: &ScriptBuf| built.tx.output.iter().position(|o| &o.script_pubkey == script).unwrap();
    // to_local after the delay, to our wallet (a foreign script is refused).
    let local = to_local(&k.local_delayed, &k.revocation, built.to_self_delay).unwrap();
    let v = vout_of(&local.script_pubkey());
    let out = built.tx.output[v].clone();
    let op = OutPoint { txid, vout: v as u32 };
    let delay = u32::from(built.to_self_delay);
    let witness = |s: &[u8; 64]| script_witness(&local, "settle", s);
    refused(
        d.sweep(&client, (spend(op, out.value, delay, foreign(), 500), 0, vec![out.clone()]), None, witness).await,
        "policy-sweep-destination",
        ALL,
    );
    let swept =
        d.sweep(&client, (spend(op, out.value, delay, wallet.clone(), 500), 0, vec![out.clone()]), None, witness).await;
    consensus_ok(&swept.unwrap(), 0);
    // The HTLC-success output after the delay.
    let second_out = second_level_htlc(&k.local_delayed, &k.revocation, built.to_self_delay).unwrap();
    let op = OutPoint { txid: success.tx.compute_txid(), vout: 0 };
    let out = success.tx.output[0].clone();
    let tx = spend(op, out.value, delay, wallet.clone(), 500);
    let swept =
        d.sweep(&client, (tx, 0, vec![out]), None, |s| script_witness(&second_out, "success", s)).await.unwrap();
    consensus_ok(&swept, 0);
    // Our anchor, by key path, with a wallet input paying for the child.
    let our_anchor = anchor(&k.local_delayed).unwrap();
    let v = vout_of(&our_anchor.script_pubkey());
    let anchor_out = built.tx.output[v].clone();
    let mut tx = spend(OutPoint { txid, vout: v as u32 }, Amount::from_sat(20_000), 0, wallet.clone(), 1_000);
    tx.input.push(TxIn {
        previous_output: OutPoint { txid: bitcoin::Txid::from_byte_array([5; 32]), vout: 0 },
        ..tx.input[0].clone()
    });
    let fee_input = TxOut { value: Amount::from_sat(20_000), script_pubkey: wallet.clone() };
    let key_path = |s: &[u8; 64]| Witness::from_slice(&[s.to_vec()]);
    let spent = vec![anchor_out, fee_input];
    consensus_ok(&d.sweep(&client, (tx, 0, spent), None, key_path).await.unwrap(), 0);
    // to_remote of the counterparty's latest commitment (had it been the one broadcast).
    let theirs = d.counterparty_latest.clone().unwrap();
    let cp = tc::commitment(&d.view, &theirs, Side::Counterparty).unwrap();
    let remote = to_remote(&cp.keys.remote_payment).unwrap();
    let v = cp.tx.output.iter().position(|o| o.script_pubkey == remote.script_pubkey()).unwrap();
    let out = cp.tx.output[v].clone();
    let tx = spend(OutPoint { txid: cp.tx.compute_txid(), vout: v as u32 }, out.value, 1, wallet.clone(), 500);
    let swept = d.sweep(&client, (tx, 0, vec![out]), None, |s| script_witness(&remote, "settle", s)).await.unwrap();
    consensus_ok(&swept, 0);
    // The HTLCs on that counterparty commitment, claimed from it directly: ours after its
    // expiry (not before), theirs with the preimage (not without).
    let txid = cp.tx.compute_txid();
    for (h, vout) in theirs.htlcs.iter().zip(&cp.htlc_vouts) {
        let vout = vout.unwrap() as usize;
        let out = cp.tx.output[vout].clone();
        let mut tx = spend(OutPoint { txid, vout: vout as u32 }, out.value, 1, wallet.clone(), 500);
        let k = &cp.keys;
        if h.offered {
            let o = offered_htlc(&k.local_htlc, &k.remote_htlc, &k.revocation, &h.payment_hash).unwrap();
            let o = &o;
            let with = |p: [u8; 32]| {
                move |s: &[u8; 64]| {
                    let script = o.leaf("success").unwrap().clone();
                    let control = o.spend_info.control_block(&(script.clone(), LeafVersion::TapScript)).unwrap();
                    Witness::from_slice(&[s.to_vec(), p.to_vec(), script.to_bytes(), control.serialize()])
                }
            };
            let claim = (tx.clone(), 0, vec![out.clone()]);
            refused(d.sweep(&client, claim, Some([0; 32]), with([0; 32])).await, "policy-htlc-preimage", ALL);
            let claimed = d.sweep(&client, (tx, 0, vec![out]), Some(preimage(3)), with(preimage(3))).await.unwrap();
            consensus_ok(&claimed, 0);
        } else {
            let o =
                accepted_htlc(&k.local_htlc, &k.remote_htlc, &k.revocation, &h.payment_hash, h.cltv_expiry).unwrap();
            let early = (tx.clone(), 0, vec![out.clone()]);
            refused(
                d.sweep(&client, early, None, |s| script_witness(&o, "timeout", s)).await,
                "policy-sweep-locktime",
                ALL,
            );
            tx.lock_time = bitcoin::absolute::LockTime::from_consensus(h.cltv_expiry);
            let claimed =
                d.sweep(&client, (tx, 0, vec![out]), None, |s| script_witness(&o, "timeout", s)).await.unwrap();
            consensus_ok(&claimed, 0);
        }
    }
    // After the force close, no new commitment of either side.
    let after = TaprootRequest::SignCounterpartyCommitment {
        commitment: d.counterparty_info(d.next_counterparty),
        outbound_preimages: vec![],
    };
    refused(client.taproot_sign(channel, after, [2; 66]).await, "policy-channel-closed", ALL);
    h.shutdown().await;
}

/// A lost reply to the force-close signing (a coordinator that drops it, a link that
/// breaks) does not cost that commitment's force close: its verification nonce is spent,
/// but asked again the cosigner sends the partial signature it made with it (and its
/// escrow share again), and the force close passes Bitcoin Core's interpreter. The channel
/// then takes no new commitment, so the commitment whose signature is kept is never
/// revoked (the store would delete it). c2's and c3's replies are dropped: one escrow
/// share is fewer than the threshold, so the force close falls back to all three signing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_force_close_reply_is_answered_again_with_the_same_signature() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let dropping = Arc::new(AtomicBool::new(false));
    let drop_now = dropping.clone();
    let fault: qls_cosigner::ReplyFault = Arc::new(move |reply| match reply {
        CosignerResponse::TaprootPartialSig { .. } | CosignerResponse::TaprootEscrowShare { .. }
            if drop_now.load(Ordering::SeqCst) =>
        {
            CosignerResponse::Error { kind: ErrorKind::Internal, detail: "reply dropped".into() }
        }
        reply => reply,
    });
    let mut spec = spec();
    spec.faults = vec![None, Some(fault.clone()), Some(fault)];
    let h = Harness::start(spec).await.unwrap();
    let client = h.client().await.unwrap();
    let channel = [0x73; 32];
    let mut d = TaprootChannelDriver::open(&client, &h.chain, channel, setup([0x99; 32]), VALUE * 1000).await.unwrap();
    approve(&client, &preimage(7), 100_000_000).await;
    d.book.offer(100_000_000, preimage(7), 600);
    d.update(&client).await.unwrap();

    dropping.store(true, Ordering::SeqCst);
    let lost = d.force_close(&client).await;
    assert!(matches!(lost, Err(DriverError::Client(_))), "c2's reply was dropped: {lost:?}");
    dropping.store(false, Ordering::SeqCst);
    let first = d.force_close(&client).await.expect("the force close is answered again");
    consensus_ok(&first, 0);
    assert_eq!(d.force_close(&client).await.unwrap().tx, first.tx, "one signature per commitment");
    d.book.offer(1_000_000, preimage(8), 600);
    refused(d.update(&client).await, "policy-channel-closed", ALL);
    h.shutdown().await;
}

/// Force close with t of n: while all three are up, every holder commitment's partial
/// signature is escrowed 2-of-3; with c3 lost for good, c1 and c2 complete the force close
/// of the latest commitment (Bitcoin Core's interpreter accepts it) and refuse the revoked
/// one. After revocation a single cosigner (t−1 = 1, here c1, its store read directly)
/// holds nothing of the revoked commitment: no escrow share, no partial signature, no
/// verification nonce; its share of the latest one alone is not the quorum's partial
/// signature.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cosigner_lost_for_good_the_other_two_force_close_from_the_escrow() {
    let mut h = Harness::start(spec()).await.unwrap();
    let client = h.client().await.unwrap();
    let channel = [0x74; 32];
    let mut d = TaprootChannelDriver::open(&client, &h.chain, channel, setup([0x9a; 32]), VALUE * 1000).await.unwrap();
    approve(&client, &preimage(9), 100_000_000).await;
    d.book.offer(100_000_000, preimage(9), 600);
    let revoked = d.holder.clone().unwrap();
    d.update(&client).await.unwrap();
    let latest = d.holder.clone().unwrap();
    assert!(latest.info.commitment_number > revoked.info.commitment_number);

    // c1's view after the revocation (t−1 colluders): nothing of the revoked commitment.
    h.stop_cosigner(0).await;
    {
        let store =
            qls_cosigner::store::Store::open(&h.cosigners[0].data_dir.join(qls_cosigner::server::STORE_FILE)).unwrap();
        assert_eq!(store.escrow_share(&channel, revoked.info.commitment_number).unwrap(), None);
        assert_eq!(store.verification_pubnonce(&channel, revoked.info.commitment_number).unwrap(), None);
        let share = store.escrow_share(&channel, latest.info.commitment_number).unwrap().expect("c1 keeps a share");
        let (ours, external) = (d.view.holder.funding.as_slice().try_into().unwrap(), latest.quorum_nonce);
        let theirs: [u8; 33] = d.view.setup.counterparty.funding.as_slice().try_into().unwrap();
        let msg =
            tc::funding_sighash(&d.view, &tc::commitment(&d.view, &latest.info, Side::Holder).unwrap().tx).unwrap();
        assert!(!tc::escrow::quorum_psig_valid(&share, &ours, &external, &theirs, &latest.their_nonce, &msg));
    }
    h.start_cosigner(0).await.unwrap();

    // c3 is lost for good: c1 and c2 force-close the latest commitment from the escrow.
    h.stop_cosigner(2).await;
    let spend = d.force_close(&client).await.expect("two of three complete the force close");
    consensus_ok(&spend, 0);
    assert_eq!(spend.tx.compute_txid(), tc::commitment(&d.view, &latest.info, Side::Holder).unwrap().tx.compute_txid());
    // The revoked commitment is refused by both.
    let req = TaprootRequest::SignHolderCommitment { commitment_number: revoked.info.commitment_number };
    refused(
        client.taproot_sign_reserved(channel, req, revoked.their_nonce, revoked.verification).await,
        "policy-commitment-holder-revoked",
        &["c1", "c2"],
    );
    h.shutdown().await;
}

/// A taproot per-commitment secret needs every cosigner's approval: a coordinator that
/// has only c1 and c2 record a revocation (c3, which never saw it, could still complete
/// that commitment's force close with one other's escrow share) gets their two approvals —
/// a majority, enough for any other key-holder request — and no secret from the key
/// holder. The honest revocation that follows gets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taproot_commitment_secret_needs_every_cosigners_approval() {
    let h = Harness::start(spec()).await.unwrap();
    let client = h.client().await.unwrap();
    let channel = [0x75; 32];
    let mut d = TaprootChannelDriver::open(&client, &h.chain, channel, setup([0x9b; 32]), VALUE * 1000).await.unwrap();
    approve(&client, &preimage(10), 100_000_000).await;
    d.book.offer(100_000_000, preimage(10), 600);
    d.update_unrevoked(&client).await.unwrap();
    let previous = d.unrevoked.clone().expect("the previous commitment is not revoked yet").info.commitment_number;

    let evil = qls_simnet::malicious::MaliciousCoordinator::new(&h, vec![0], 2).unwrap();
    let revoke = CosignerRequest::TaprootApply {
        channel,
        request: TaprootRequest::RevokeHolderCommitment { commitment_number: previous },
    };
    for i in [0, 1] {
        let reply = evil.send_to(i, &revoke).await.unwrap();
        assert!(matches!(reply, CosignerResponse::TaprootApplied { .. }), "c{}: {reply:?}", i + 1);
    }
    let out = evil.try_subject(ApprovalSubject::TaprootSecret { channel, commitment_number: previous }).await;
    assert_eq!((out.approvals, out.refusals), (2, 1), "{out:?}");
    assert!(out.refused_tags.contains("policy-revoke-before-next-commitment"), "c3 did not revoke: {out:?}");
    assert!(!out.signed, "two of three approvals released a taproot per-commitment secret");

    d.revoke_previous(&client).await.expect("all three record the revocation, the key holder releases the secret");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_permissive_cosigner_cannot_get_a_drain_or_a_foreign_sweep_signed() {
    let mut spec = spec();
    spec.policies[2] = PolicyConfig::permissive();
    let h = Harness::start(spec).await.unwrap();
    let client = h.client().await.unwrap();
    let channel = [0x73; 32];
    let d = TaprootChannelDriver::open(&client, &h.chain, channel, setup([0x97; 32]), VALUE * 1000).await.unwrap();
    // The counterparty's balance jumps with no HTLC: c1 and c2 refuse, so the 3-of-3
    // funding key cannot sign, whatever c3 does.
    let mut drain = d.counterparty_info(d.next_counterparty);
    drain.to_broadcaster_msat += 500_000_000;
    drain.to_countersignatory_msat -= 500_000_000;
    let req = TaprootRequest::SignCounterpartyCommitment { commitment: drain, outbound_preimages: vec![] };
    refused(client.taproot_sign(channel, req, [2; 66]).await, "policy-commitment-holder-balance", &["c1", "c2"]);
    // A sweep of our to_remote to a foreign script: c1 and c2 refuse; c3 alone is below the
    // FROST threshold of 2.
    let theirs = d.counterparty_latest.clone().unwrap();
    let cp = tc::commitment(&d.view, &theirs, Side::Counterparty).unwrap();
    let remote = to_remote(&cp.keys.remote_payment).unwrap();
    if let Some(v) = cp.tx.output.iter().position(|o| o.script_pubkey == remote.script_pubkey()) {
        let out = cp.tx.output[v].clone();
        let tx = spend(OutPoint { txid: cp.tx.compute_txid(), vout: v as u32 }, out.value, 1, foreign(), 500);
        refused(
            d.sweep(&client, (tx, 0, vec![out]), None, |s| script_witness(&remote, "settle", s)).await,
            "policy-sweep-destination",
            &["c1", "c2"],
        );
    } else {
        panic!("our to_remote output is missing from the counterparty's commitment");
    }
    h.shutdown().await;
}
