//! `qls-simnet bench-taproot`: a taproot channel update through the quorum (3 cosigners,
//! real QUIC on loopback, funding key 3-of-3 NestedMuSig2) and the same computation in one
//! process as the baseline. Prints a table; figures go to BENCHMARKS.md by hand.
//!
//! One update is: the quorum's partial signature on the counterparty's commitment `n`
//! (coordinator: one nonce from each cosigner, then each cosigner rebuilds the commitment
//! with `h` HTLCs, judges it, durably consumes its nonce with the new state, signs; every
//! partial signature verified and summed), then the FROST (2-of-3) signatures of its `h`
//! second-level HTLC transactions (every cosigner derives the messages and keys, two sign
//! from their nonce pools, the coordinator verifies every aggregate), then the
//! counterparty's revocation of `n − 1`. The in-process baseline does the same judging,
//! signing, verification and FROST rounds with no network and no disk.
//!
//! Must never: time anything but the request as the node sees it (client to client).

use std::time::Instant;

use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use lightning::ln::chan_utils::build_commitment_secret;
use qls_node::client::NodeClient;
use qls_protocol::*;
use qls_signer_core::channel::PaymentIndex;
use qls_signer_core::musig2::nested::{nested_partial_sig_verify, nested_sign, psig_sum, NestedSessionContext};
use qls_signer_core::musig2::nonce_gen;
use qls_signer_core::policy::{judge, PolicyConfig};
use qls_signer_core::taproot_channel as tc;

use crate::harness::{Harness, HarnessError, QuorumSpec};

const VALUE: u64 = 2_000_000;
const HTLC_MSAT: u64 = 1_000_000;
const SEED: [u8; 32] = [0x45; 32];

#[derive(Debug, Clone)]
pub struct TaprootBenchParams {
    pub updates: usize,
    pub htlc_counts: Vec<usize>,
}

#[derive(Debug, Clone)]
pub struct TaprootRow {
    pub op: &'static str,
    pub htlcs: usize,
    pub samples: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

fn secret(n: u64) -> [u8; 32] {
    build_commitment_secret(&SEED, (1 << 48) - 1 - n)
}

/// A channel the counterparty funded, pushing us half (so both sides hold a balance from
/// the first commitment on).
fn setup(channel: &ChannelKeysId) -> TaprootChannelSetup {
    let mut s = crate::taproot_counterparty::setup(VALUE, *channel);
    s.is_outbound = false;
    s
}

/// Commitment `n` with `h` HTLCs the counterparty offered (its balance funds them; ours
/// stays at half the channel).
fn commitment(n: u64, h: usize) -> TaprootCommitmentInfo {
    let ours = VALUE * 1000 / 2;
    let htlcs: Vec<HtlcInfo> = (0..h)
        .map(|i| HtlcInfo {
            offered: true,
            amount_msat: HTLC_MSAT,
            cltv_expiry: 600 + i as u32,
            payment_hash: [i as u8; 32],
        })
        .collect();
    let point =
        PublicKey::from_secret_key(&Secp256k1::new(), &SecretKey::from_slice(&secret(n)).expect("shachain secret"));
    TaprootCommitmentInfo {
        commitment_number: n,
        per_commitment_point: point.serialize().to_vec(),
        to_broadcaster_msat: VALUE * 1000 - ours - h as u64 * HTLC_MSAT,
        to_countersignatory_msat: ours,
        feerate_per_kw: 1_000,
        htlcs,
    }
}

fn counterparty_nonce() -> [u8; 66] {
    let theirs: [u8; 33] = crate::taproot_counterparty::test_key(0x50);
    nonce_gen(&rand::random(), None, &theirs, None, None, None).map(|(_, p)| p.0).unwrap_or([2; 66])
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn row(op: &'static str, htlcs: usize, mut v: Vec<f64>) -> TaprootRow {
    v.sort_by(f64::total_cmp);
    TaprootRow { op, htlcs, samples: v.len(), p50_ms: percentile(&v, 0.5), p99_ms: percentile(&v, 0.99) }
}

/// Latencies (ms) of the measured updates: whole update, its FROST part, the revocation.
struct Timings {
    update: Vec<f64>,
    frost: Vec<f64>,
    revoke: Vec<f64>,
}

async fn drive(client: &NodeClient, channel: ChannelKeysId, h: usize, updates: usize) -> Result<Timings, String> {
    let e = |e: qls_node::client::ClientError| e.to_string();
    client.taproot_apply(channel, TaprootRequest::Setup(setup(&channel))).await.map_err(e)?;
    let mut out = Timings { update: Vec::new(), frost: Vec::new(), revoke: Vec::new() };
    for n in 0..(updates as u64 + 2) {
        let info = commitment(n, if n == 0 { 0 } else { h });
        let htlcs = info.htlcs.len();
        let req = TaprootRequest::SignCounterpartyCommitment { commitment: info, outbound_preimages: vec![] };
        let t = Instant::now();
        client.taproot_sign(channel, req, counterparty_nonce()).await.map_err(e)?;
        let f = Instant::now();
        let (sigs, _, _) = client
            .taproot_frost(channel, TaprootFrostItem::CounterpartyHtlcs { commitment_number: n })
            .await
            .map_err(e)?;
        if sigs.len() != htlcs {
            return Err(format!("{} HTLC signatures for {htlcs} HTLCs", sigs.len()));
        }
        let (signed, frost) = (t.elapsed().as_secs_f64() * 1e3, f.elapsed().as_secs_f64() * 1e3);
        if n > 0 {
            let t = Instant::now();
            let req = TaprootRequest::CounterpartyRevocation { commitment_number: n - 1, secret: secret(n - 1) };
            client.taproot_apply(channel, req).await.map_err(e)?;
            // The first two updates warm the channel (HTLCs added, first revocation).
            if n >= 2 {
                out.update.push(signed);
                out.frost.push(frost);
                out.revoke.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
    }
    Ok(out)
}

/// The same update's computation in one process: three cosigners judge and sign, the
/// coordinator verifies and sums.
fn in_process(h: usize, updates: usize) -> Result<Vec<f64>, String> {
    let secp = Secp256k1::new();
    let policy = PolicyConfig::default();
    let channel = [0x77; 32];
    let sks: Vec<SecretKey> = (1..=3u8)
        .map(|i| SecretKey::from_slice(&[0x20 + i; 32]).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let base: Vec<[u8; 33]> = sks.iter().map(|k| PublicKey::from_secret_key(&secp, k).serialize()).collect();
    let mut rng = rand::thread_rng();
    let shares =
        qls_signer_core::dealer::split(None, &[[1; 32], [2; 32], [3; 32]], 2, &mut rng).map_err(|e| e.to_string())?;
    let holder = tc::holder_keys(&secp, &shares[0].1.public_key_package, &base, &channel).map_err(|e| e.to_string())?;
    let leaves: Vec<Vec<u8>> = base.iter().map(|l| l.to_vec()).collect();
    let ctx = tc::TaprootContext {
        policy: &policy,
        holder: &holder,
        leaves: &leaves,
        own_scripts: &[],
        secp: &secp,
        own_verification: None,
        chain: None,
        now: 1_700_000_000,
        stored_channels: 0,
        latest_escrowed: true,
    };
    let mut index = PaymentIndex::new(Default::default(), 0, policy.channel.max_payments);
    let mut state = tc::apply(&channel, None, &TaprootRequest::Setup(setup(&channel)), &[0; 32], &mut index, &ctx)
        .map_err(|e| e.to_string())?
        .state;
    let signers: Vec<&qls_signer_core::keys::KeyShare> = shares[..2].iter().map(|(_, s)| s).collect();
    let (node_key, channel_leaves) = tc::funding_node_key(&secp, &base, &channel).map_err(|e| e.to_string())?;
    let theirs: [u8; 33] = crate::taproot_counterparty::test_key(0x50);
    let ids = [[1u8; 32], [2; 32], [3; 32]];
    let mut times = Vec::new();
    for n in 0..(updates as u64 + 2) {
        let commitment = commitment(n, if n == 0 { 0 } else { h });
        let req = TaprootRequest::SignCounterpartyCommitment { commitment, outbound_preimages: vec![] };
        let t = Instant::now();
        let mut nonces = Vec::new();
        let mut secs = Vec::new();
        for (i, leaf) in channel_leaves.iter().enumerate() {
            let (sec, public) = nonce_gen(&rand::random(), None, leaf, None, None, None).map_err(|e| e.to_string())?;
            secs.push(sec);
            nonces.push(LeafNonce { cosigner: ids[i], nonce_id: n, pubnonce: public.0.to_vec() });
        }
        let session = NestedSession { leaf_nonces: nonces.clone(), counterparty_nonce: counterparty_nonce().to_vec() };
        let mut psigs = Vec::new();
        let mut next = None;
        for (i, sec) in secs.into_iter().enumerate() {
            let applied =
                tc::apply(&channel, Some(&state), &req, &[1; 32], &mut index, &ctx).map_err(|e| e.to_string())?;
            if !judge(applied.violations.clone(), &policy).approves() {
                return Err(format!("update {n} refused: {:?}", applied.violations));
            }
            let msg = applied.message.ok_or("no message")?;
            let ls =
                tc::leaf_session(&session, &ids, &channel_leaves, &channel_leaves[i], &node_key, &theirs, &channel)
                    .map_err(|e| e.to_string())?;
            let c = NestedSessionContext {
                nonce_path: &ls.nonce_path,
                pk_tree: &ls.pk_tree,
                tweaks: &[ls.tweak],
                msg: &msg,
            };
            let sk = tc::channel_leaf_secret(&sks[i], &base[i], &channel).map_err(|e| e.to_string())?;
            let psig = nested_sign(sec, &sk, &c).map_err(|e| e.to_string())?;
            // The coordinator's check of this leaf.
            let public =
                qls_signer_core::musig2::PubNonce(nonces[i].pubnonce.as_slice().try_into().map_err(|_| "nonce")?);
            if !nested_partial_sig_verify(&psig, &public, &channel_leaves[i], &c).map_err(|e| e.to_string())? {
                return Err("partial signature does not verify".into());
            }
            psigs.push(psig);
            next = Some(applied.state);
        }
        psig_sum(&psigs).map_err(|e| e.to_string())?;
        state = next.ok_or("no state")?;
        // The HTLC signatures: every cosigner derives the targets, two sign, the
        // coordinator verifies each aggregate.
        let item = TaprootFrostItem::CounterpartyHtlcs { commitment_number: n };
        let mut targets = Vec::new();
        for _ in 0..3 {
            targets = tc::frost_targets(&channel, &state, &item, &ctx).map_err(|e| e.to_string())?.0;
        }
        for target in &targets {
            let sig = qls_signer_core::dealer::sign_in_process_tweaked(&signers, &target.msg, &target.tweaks, &mut rng)
                .map_err(|e| e.to_string())?;
            let key = qls_signer_core::frost_tweak::tweaked_key(&shares[0].1.public_key_package, &target.tweaks)
                .map_err(|e| e.to_string())?;
            qls_signer_core::schnorr::verify_bip340(&key, &target.msg, &sig).map_err(|e| e.to_string())?;
        }
        times.push(t.elapsed().as_secs_f64() * 1e3);
        if n > 0 {
            let rev = TaprootRequest::CounterpartyRevocation { commitment_number: n - 1, secret: secret(n - 1) };
            state =
                tc::apply(&channel, Some(&state), &rev, &[2; 32], &mut index, &ctx).map_err(|e| e.to_string())?.state;
        }
    }
    Ok(times.split_off(2))
}

pub async fn bench_taproot(p: &TaprootBenchParams) -> Result<Vec<TaprootRow>, HarnessError> {
    let h = Harness::start(QuorumSpec::new(3, 2)).await?;
    let client = h.client().await?;
    let fail = |e: String| HarnessError::Setup(format!("taproot bench: {e}"));
    let mut rows = Vec::new();
    for (k, &htlcs) in p.htlc_counts.iter().enumerate() {
        let t = drive(&client, [0xa0 + k as u8; 32], htlcs, p.updates).await.map_err(fail)?;
        rows.push(row("update: MuSig2 partial sig + FROST HTLC sigs (quorum, QUIC)", htlcs, t.update));
        rows.push(row("  of which FROST HTLC signatures", htlcs, t.frost));
        rows.push(row("record counterparty revocation (quorum, QUIC)", htlcs, t.revoke));
        rows.push(row("same update computed in one process", htlcs, in_process(htlcs, p.updates).map_err(fail)?));
    }
    // Our side: each holder commitment validated (then escrowed for a force close by any
    // t: every cosigner deals, every cosigner keeps) and the previous one revoked.
    let mut d = crate::taproot_driver::TaprootChannelDriver::open(
        &client,
        &h.chain,
        [0xaf; 32],
        crate::taproot_counterparty::setup(2_000_000, [0xaf; 32]),
        2_000_000_000,
    )
    .await
    .map_err(|e| fail(e.to_string()))?;
    for _ in 0..p.updates + 2 {
        d.update(&client).await.map_err(|e| fail(e.to_string()))?;
    }
    let warm = |v: &[f64]| v.get(2..).unwrap_or_default().to_vec();
    rows.push(row("validate holder commitment + force-close escrow (quorum, QUIC)", 0, warm(&d.validate_ms)));
    rows.push(row("revoke holder commitment: n record it, key holder (QUIC)", 0, warm(&d.revoke_ms)));
    h.shutdown().await;
    Ok(rows)
}

pub fn table(rows: &[TaprootRow], p: &TaprootBenchParams) -> String {
    let mut out = format!(
        "taproot channel updates, 3 cosigners (3-of-3 NestedMuSig2 funding key), {} timed updates each\n",
        p.updates
    );
    out.push_str(&format!("{:<62} {:>6} {:>8} {:>9} {:>9}\n", "operation", "htlcs", "samples", "p50 ms", "p99 ms"));
    for r in rows {
        out.push_str(&format!("{:<62} {:>6} {:>8} {:>9.2} {:>9.2}\n", r.op, r.htlcs, r.samples, r.p50_ms, r.p99_ms));
    }
    out
}
