//! A simple taproot channel's counterparty commitments signed by the quorum over real
//! QUIC (3 cosigners; the funding key is their 3-of-3 NestedMuSig2 node). The counterparty
//! is the independent `musig2` crate running plain BIP-327: it verifies the quorum's
//! partial signature, adds its own, and the aggregate signature spends the funding output
//! under Bitcoin Core's script interpreter (`bitcoinconsensus`, taproot key path).
//!
//! 100 updates with HTLCs added, fulfilled and failed, each followed by the counterparty's
//! revocation; a compromised node tries what policy refuses; then we close cooperatively
//! (the closing transaction also passes the interpreter).

use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{schnorr, Message, PublicKey, Secp256k1, SecretKey, XOnlyPublicKey};
use bitcoin::Witness;
use lightning::ln::chan_utils::build_commitment_secret;
use musig2::BinaryEncoding;
use qls_protocol::*;
use qls_signer_core::channel::CloseState;
use qls_signer_core::policy::PolicyConfig;
use qls_signer_core::taproot_channel::{counterparty_commitment, funding_sighash, funding_txout, TaprootChannelState};
use qls_simnet::harness::{test_policy, Harness, QuorumSpec};

const CHANNEL: ChannelKeysId = [0x71; 32];
const VALUE: u64 = 2_000_000;
const SEED: [u8; 32] = [0x44; 32];
const FUNDING_SK: [u8; 32] = qls_simnet::taproot_counterparty::FUNDING_SECRET;
/// Commitments signed before the cooperative close (each followed by a revocation).
const UPDATES: u64 = 100;

fn secret(n: u64) -> [u8; 32] {
    build_commitment_secret(&SEED, (1 << 48) - 1 - n)
}

fn point(n: u64) -> Vec<u8> {
    PublicKey::from_secret_key(&Secp256k1::new(), &SecretKey::from_slice(&secret(n)).unwrap()).serialize().to_vec()
}

fn setup() -> TaprootChannelSetup {
    qls_simnet::taproot_counterparty::setup(VALUE, [0x99; 32])
}

/// Commitment `n`: the counterparty has `theirs_msat`, the HTLCs are in flight, we have
/// the rest.
fn commitment(n: u64, theirs_msat: u64, htlcs: Vec<HtlcInfo>) -> TaprootCommitmentInfo {
    let in_htlcs: u64 = htlcs.iter().map(|h| h.amount_msat).sum();
    TaprootCommitmentInfo {
        commitment_number: n,
        per_commitment_point: point(n),
        to_broadcaster_msat: theirs_msat,
        to_countersignatory_msat: VALUE * 1000 - theirs_msat - in_htlcs,
        feerate_per_kw: 1_000,
        htlcs,
    }
}

/// The counterparty: its view of the channel (to rebuild and check what it signs).
struct Peer {
    state: TaprootChannelState,
}

impl Peer {
    /// Signs commitment `info` with the quorum: returns the final BIP-340 signature after
    /// checking the quorum's partial signature as plain BIP-327.
    async fn sign(&self, client: &qls_coordinator::client::NodeClient, info: &TaprootCommitmentInfo) -> [u8; 64] {
        let tx = counterparty_commitment(&self.state, info).unwrap();
        let req = TaprootRequest::SignCounterpartyCommitment { commitment: info.clone() };
        self.sign_tx(client, req, &tx, vec![]).await.0
    }

    /// Signs `tx` (a spend of the funding output) with the quorum, which derives it from `req`.
    async fn sign_tx(
        &self,
        client: &qls_coordinator::client::NodeClient,
        req: TaprootRequest,
        tx: &bitcoin::Transaction,
        reserved: Vec<LeafNonce>,
    ) -> ([u8; 64], [u8; 66]) {
        let msg = funding_sighash(&self.state, tx).unwrap();
        let ours: [u8; 33] = self.state.holder.funding.as_slice().try_into().unwrap();
        let theirs: [u8; 33] = qls_simnet::taproot_counterparty::test_key(0x50);
        let mut keys = [ours, theirs];
        keys.sort();
        let points: Vec<secp::Point> = keys.iter().map(|k| secp::Point::from_slice(k).unwrap()).collect();
        let ctx = musig2::KeyAggContext::new(points).unwrap().with_unspendable_taproot_tweak().unwrap();
        let sec = musig2::SecNonce::generate(
            rand::random::<[u8; 32]>(),
            secp::Scalar::from_slice(&FUNDING_SK).unwrap(),
            ctx.aggregated_pubkey::<secp::Point>(),
            msg,
            [],
        );
        let their_nonce: [u8; 66] = sec.public_nonce().to_bytes();
        let (quorum_nonce, quorum_psig, report) =
            client.taproot_sign_reserved(CHANNEL, req, their_nonce, reserved).await.unwrap();
        assert_eq!(report.signers.len(), 3, "{report:?}");
        let quorum_nonce_bytes = quorum_nonce;
        let quorum_nonce = musig2::PubNonce::from_bytes(&quorum_nonce).unwrap();
        let agg = musig2::AggNonce::sum([quorum_nonce.clone(), sec.public_nonce()]);
        let quorum_psig = secp::MaybeScalar::from_slice(&quorum_psig).unwrap();
        musig2::verify_partial(&ctx, quorum_psig, &agg, secp::Point::from_slice(&ours).unwrap(), &quorum_nonce, msg)
            .expect("the counterparty accepts the quorum's partial signature (plain BIP-327)");
        let psig: secp::MaybeScalar =
            musig2::sign_partial(&ctx, secp::Scalar::from_slice(&FUNDING_SK).unwrap(), sec, &agg, msg).unwrap();
        let sig: musig2::CompactSignature =
            musig2::aggregate_partial_signatures(&ctx, &agg, [quorum_psig, psig], msg).unwrap();
        (sig.serialize(), quorum_nonce_bytes)
    }
}

/// The signed commitment passes Bitcoin Core's interpreter as a key-path spend of the
/// funding output; a changed output does not.
fn check_with_bitcoin_core(state: &TaprootChannelState, info: &TaprootCommitmentInfo, sig: &[u8; 64]) {
    check_tx_with_bitcoin_core(state, counterparty_commitment(state, info).unwrap(), sig)
}

fn check_tx_with_bitcoin_core(state: &TaprootChannelState, mut tx: bitcoin::Transaction, sig: &[u8; 64]) {
    let funding = funding_txout(state).unwrap();
    tx.input[0].witness = Witness::p2tr_key_spend(&bitcoin::taproot::Signature {
        signature: schnorr::Signature::from_slice(sig).unwrap(),
        sighash_type: bitcoin::TapSighashType::Default,
    });
    let utxo = [bitcoinconsensus::Utxo {
        script_pubkey: funding.script_pubkey.as_bytes().as_ptr(),
        script_pubkey_len: funding.script_pubkey.len() as u32,
        value: funding.value.to_sat() as i64,
    }];
    let bytes = bitcoin::consensus::serialize(&tx);
    bitcoinconsensus::verify(funding.script_pubkey.as_bytes(), funding.value.to_sat(), &bytes, Some(&utxo), 0)
        .expect("the commitment's funding input passes the script interpreter");
    let mut changed = tx.clone();
    changed.output[0].value -= bitcoin::Amount::from_sat(1);
    let bytes = bitcoin::consensus::serialize(&changed);
    assert!(bitcoinconsensus::verify(funding.script_pubkey.as_bytes(), funding.value.to_sat(), &bytes, Some(&utxo), 0)
        .is_err());
}

fn refused(
    result: Result<([u8; 66], [u8; 32], SignReport), qls_coordinator::client::ClientError>,
    tag: &str,
    honest: &[&str],
) {
    match result {
        Err(qls_coordinator::client::ClientError::Refused(refusals)) => {
            for name in honest {
                let r = refusals.iter().find(|r| r.cosigner == *name).unwrap_or_else(|| panic!("{name}: {refusals:?}"));
                assert!(r.violations.iter().any(|v| v.tag == tag), "{name}: {:?}", r.violations);
            }
        }
        other => panic!("expected a refusal with {tag}, got {other:?}"),
    }
}

async fn open(h: &Harness) -> (qls_coordinator::client::NodeClient, Peer) {
    let client = h.client().await.unwrap();
    let holder = client.taproot_channel_keys(CHANNEL).await.unwrap();
    client.taproot_apply(CHANNEL, TaprootRequest::Setup(setup())).await.unwrap();
    let state = TaprootChannelState {
        setup: setup(),
        leaves: vec![],
        holder,
        funding_script: vec![],
        digest: StateDigest { version: 0, digest: [0; 32] },
        counterparty_latest: None,
        unrevoked_points: vec![],
        secrets: vec![],
        close: CloseState::Open,
    };
    (client, Peer { state })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_signs_taproot_commitments_an_unmodified_musig2_peer_completes() {
    let h = Harness::start(QuorumSpec::new(3, 2)).await.unwrap();
    let (client, peer) = open(&h).await;
    let funding_key =
        XOnlyPublicKey::from_slice(&funding_txout(&peer.state).unwrap().script_pubkey.as_bytes()[2..]).unwrap();
    let secp = Secp256k1::verification_only();

    // UPDATES updates: HTLCs we offer (our balance funds them) settle to the counterparty or
    // fail back, and the counterparty offers HTLCs to us; each signed commitment is
    // followed by the counterparty revoking the one before.
    let mut theirs = 0u64;
    let mut pending: Vec<HtlcInfo> = vec![];
    for n in 0..UPDATES {
        let hash = bitcoin::hashes::sha256::Hash::hash(&n.to_be_bytes()).to_byte_array();
        let ours_offered = |p: &Vec<HtlcInfo>| p.iter().position(|h| !h.offered);
        let theirs_offered = |p: &Vec<HtlcInfo>| p.iter().position(|h| h.offered);
        match n % 8 {
            // We offer (our balance funds it); the counterparty offers (its balance does).
            1 | 5 => {
                pending.push(HtlcInfo { offered: false, amount_msat: 30_000_000, cltv_expiry: 700, payment_hash: hash })
            }
            3 | 7 if theirs >= 20_000_000 => {
                theirs -= 20_000_000;
                pending.push(HtlcInfo { offered: true, amount_msat: 20_000_000, cltv_expiry: 710, payment_hash: hash });
            }
            // Ours fulfilled: the counterparty gains it.
            2 => {
                if let Some(i) = ours_offered(&pending) {
                    theirs += pending.remove(i).amount_msat;
                }
            }
            // Ours failed: back to us. Theirs fulfilled (to us) or failed (back to them).
            6 => {
                if let Some(i) = ours_offered(&pending) {
                    pending.remove(i);
                }
            }
            4 => {
                if let Some(i) = theirs_offered(&pending) {
                    pending.remove(i);
                }
            }
            0 => {
                if let Some(i) = theirs_offered(&pending) {
                    theirs += pending.remove(i).amount_msat;
                }
            }
            _ => {}
        }
        let info = commitment(n, theirs, pending.clone());
        let sig = peer.sign(&client, &info).await;
        let tx = counterparty_commitment(&peer.state, &info).unwrap();
        let msg = Message::from_digest(funding_sighash(&peer.state, &tx).unwrap());
        secp.verify_schnorr(&schnorr::Signature::from_slice(&sig).unwrap(), &msg, &funding_key)
            .expect("verifies under the funding key");
        if n == 0 || n == UPDATES - 1 || n % 25 == 5 {
            check_with_bitcoin_core(&peer.state, &info, &sig);
        }
        if n > 0 {
            let revoke = TaprootRequest::CounterpartyRevocation { commitment_number: n - 1, secret: secret(n - 1) };
            client.taproot_apply(CHANNEL, revoke).await.unwrap();
        }
    }

    // A compromised node: a commitment that skips one number (the latest is still
    // unrevoked), one paying the counterparty our balance without an HTLC, and one whose
    // values do not add up.
    let skip =
        TaprootRequest::SignCounterpartyCommitment { commitment: commitment(UPDATES + 1, theirs, pending.clone()) };
    refused(client.taproot_sign(CHANNEL, skip, [2; 66]).await, "policy-commitment-sequence", &["c1", "c2", "c3"]);
    let drain = TaprootRequest::SignCounterpartyCommitment {
        commitment: commitment(UPDATES, theirs + 100_000_000, pending.clone()),
    };
    refused(
        client.taproot_sign(CHANNEL, drain, [2; 66]).await,
        "policy-commitment-holder-balance",
        &["c1", "c2", "c3"],
    );
    let mut bad = commitment(UPDATES, theirs, pending.clone());
    bad.to_countersignatory_msat += 1;
    let bad = TaprootRequest::SignCounterpartyCommitment { commitment: bad };
    refused(client.taproot_sign(CHANNEL, bad, [2; 66]).await, "policy-commitment-value", &["c1", "c2", "c3"]);
    // Settle everything: our HTLCs fulfilled, theirs failed back (our balance unchanged),
    // then the cooperative close, which we initiate.
    theirs += pending.iter().map(|h| h.amount_msat).sum::<u64>();
    let last = commitment(UPDATES, theirs, vec![]);
    peer.sign(&client, &last).await;
    client
        .taproot_apply(
            CHANNEL,
            TaprootRequest::CounterpartyRevocation { commitment_number: UPDATES - 1, secret: secret(UPDATES - 1) },
        )
        .await
        .unwrap();
    let wallet = qls_signer_core::wallet::wallet_script(&h.key_id()).unwrap();
    let ours_sat = last.to_countersignatory_msat / 1000;
    let close = |to: &bitcoin::ScriptBuf, theirs_sat: u64| TaprootRequest::SignClosing {
        to_holder_sat: ours_sat - 1_000,
        to_counterparty_sat: theirs_sat,
        holder_script: to.to_bytes(),
        counterparty_script: vec![0x00, 0x14, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7],
        locktime: 0,
    };
    let foreign = bitcoin::ScriptBuf::from_bytes([&[0x51u8, 0x20][..], &[0xbb; 32]].concat());
    refused(
        client.taproot_sign(CHANNEL, close(&foreign, theirs / 1000), [2; 66]).await,
        "policy-close-destination",
        &["c1", "c2", "c3"],
    );
    refused(
        client.taproot_sign(CHANNEL, close(&wallet, theirs / 1000 + 50_000), [2; 66]).await,
        "policy-close-value",
        &["c1", "c2", "c3"],
    );
    let honest = close(&wallet, theirs / 1000);
    let TaprootRequest::SignClosing {
        to_holder_sat,
        to_counterparty_sat,
        holder_script,
        counterparty_script,
        locktime,
    } = honest.clone()
    else {
        unreachable!()
    };
    let tx = qls_signer_core::taproot_channel::validate::closing_tx(
        &peer.state,
        to_holder_sat,
        to_counterparty_sat,
        &holder_script,
        &counterparty_script,
        locktime,
    );
    // Our nonce was reserved ahead (as sent in `shutdown`): the signature uses exactly it,
    // and the reserved set signs once.
    let (shutdown_nonce, reserved) = client.taproot_nonce(CHANNEL).await.unwrap();
    let (sig, used) = peer.sign_tx(&client, honest.clone(), &tx, reserved.clone()).await;
    assert_eq!(used, shutdown_nonce, "the close is signed with the nonce sent in shutdown");
    check_tx_with_bitcoin_core(&peer.state, tx.clone(), &sig);
    // The same request again, with a valid counterparty nonce: only the consumed nonces
    // stand in the way, and no cosigner signs.
    let their_key: [u8; 33] = qls_simnet::taproot_counterparty::test_key(0x50);
    let (_, valid) = qls_signer_core::musig2::nonce_gen(&[5; 32], None, &their_key, None, None, None).unwrap();
    match client.taproot_sign_reserved(CHANNEL, honest, valid.0, reserved).await {
        Err(qls_coordinator::client::ClientError::Coordinator { detail, .. }) => {
            assert!(detail.contains("0 of 3 cosigners signed"), "{detail}")
        }
        other => panic!("a reserved nonce set signed twice: {other:?}"),
    }
    // After the close, no further commitment.
    let after = TaprootRequest::SignCounterpartyCommitment { commitment: commitment(UPDATES + 1, theirs, vec![]) };
    refused(client.taproot_sign(CHANNEL, after, [2; 66]).await, "policy-channel-closed", &["c1", "c2", "c3"]);

    // A revocation secret that is not the counterparty's.
    let wrong = TaprootRequest::CounterpartyRevocation { commitment_number: UPDATES - 1, secret: [9; 32] };
    match client.taproot_apply(CHANNEL, wrong).await {
        Err(qls_coordinator::client::ClientError::Refused(r)) => {
            assert!(
                r.iter().all(|r| r.violations.iter().any(|v| v.tag == "policy-revocation-secret-mismatch")),
                "{r:?}"
            )
        }
        other => panic!("a wrong revocation secret was accepted: {other:?}"),
    }
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_permissive_cosigner_cannot_get_a_drain_signed() {
    let mut spec = QuorumSpec::new(3, 2);
    spec.policies = vec![test_policy(), test_policy(), PolicyConfig::permissive()];
    let h = Harness::start(spec).await.unwrap();
    let (client, peer) = open(&h).await;
    peer.sign(&client, &commitment(0, 0, vec![])).await;
    // The counterparty's balance jumps with no HTLC: c1 and c2 refuse, so the 3-of-3
    // funding key cannot sign, whatever c3 does.
    let drain = TaprootRequest::SignCounterpartyCommitment { commitment: commitment(1, 500_000_000, vec![]) };
    refused(client.taproot_sign(CHANNEL, drain, [2; 66]).await, "policy-commitment-holder-balance", &["c1", "c2"]);
    h.shutdown().await;
}
