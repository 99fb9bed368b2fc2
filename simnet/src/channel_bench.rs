//! `qls-simnet bench-channels`: legacy-channel updates through the quorum (3 cosigners,
//! t = 2, c1 the key holder, real QUIC on loopback), approvals per second, and cosigner
//! memory per stored channel. Prints a table; figures go to BENCHMARKS.md by hand.
//!
//! What one update is: the counterparty (`crate::counterparty`) offers `h` HTLCs; the
//! node asks the quorum to sign the counterparty's commitment (every cosigner rebuilds
//! it, checks policy, applies it to its state in one redb transaction, approves; the key
//! holder signs it and the `h` HTLC transactions), to validate our holder commitment
//! (every cosigner verifies the counterparty's commitment and `h` HTLC signatures), to
//! release our previous per-commitment secret (revoke), and to record the counterparty's
//! revocation.
//!
//! Must never: time anything but the request as the node sees it (client to client).

use std::time::Instant;

use qls_cosigner::channel_store::ChannelUpdate;
use qls_cosigner::store::Store;
use qls_node::client::NodeClient;
use qls_protocol::{ChannelKeysId, ChannelRequest, ChannelSetup, KeyHolderOutput};
use qls_signer_core::channel::state::{HolderCommitment, INITIAL_COMMITMENT_NUMBER as N0};
use qls_signer_core::channel::{apply, ChannelState, Context, PaymentIndex};
use qls_signer_core::policy::PolicyConfig;

use crate::counterparty::{htlc, Counterparty, FEERATE};
use crate::harness::{Harness, HarnessError, QuorumSpec};

const VALUE: u64 = 2_000_000;
const HTLC_SAT: u64 = 1_000;

#[derive(Debug, Clone)]
pub struct ChannelBenchParams {
    /// Timed updates per HTLC count.
    pub updates: usize,
    pub htlc_counts: Vec<usize>,
    /// Channels updated concurrently for the throughput figure.
    pub concurrency: usize,
    /// Update cycles per channel in the throughput run.
    pub cycles: usize,
    /// Channels stored for the memory figure.
    pub memory_channels: usize,
}

#[derive(Debug, Clone)]
pub struct LatencyRow {
    pub op: &'static str,
    pub htlcs: usize,
    pub samples: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

#[derive(Debug, Clone)]
pub struct MemoryRow {
    pub channels: usize,
    pub state_bytes: usize,
    pub rss_growth_bytes: u64,
    pub disk_bytes: u64,
}

#[derive(Debug, Clone)]
pub struct ChannelBenchResult {
    pub latency: Vec<LatencyRow>,
    pub throughput_requests: usize,
    pub throughput_secs: f64,
    pub memory: Option<MemoryRow>,
}

fn fee_sat(htlcs: usize) -> u64 {
    u64::from(FEERATE) * (1124 + 172 * htlcs as u64) / 1000
}

/// One inbound channel (the counterparty funded it), driven through the quorum.
struct Driven {
    id: ChannelKeysId,
    cp: Counterparty,
    setup: ChannelSetup,
    next: u64,
}

async fn ok(client: &NodeClient, id: ChannelKeysId, req: ChannelRequest) -> Result<KeyHolderOutput, String> {
    client.channel(id, req).await.map(|(o, _)| o).map_err(|e| e.to_string())
}

impl Driven {
    async fn open(client: &NodeClient, id: ChannelKeysId) -> Result<Self, String> {
        let (keys, _) = client.channel_keys(id).await.map_err(|e| e.to_string())?;
        let cp = Counterparty::new();
        let setup = cp.setup(keys.points, VALUE, false, id);
        ok(client, id, ChannelRequest::Setup(setup.clone())).await?;
        let mut ch = Self { id, cp, setup, next: N0 };
        ch.update(client, 0, None).await?;
        Ok(ch)
    }

    /// One update with `h` HTLCs offered by the counterparty; `times` gets the four
    /// request latencies.
    async fn update(&mut self, client: &NodeClient, h: usize, times: Option<&mut [Vec<f64>; 4]>) -> Result<(), String> {
        let n = self.next;
        let theirs = VALUE - fee_sat(h) - 660 - h as u64 * HTLC_SAT;
        let offered: Vec<_> = (0..h).map(|i| htlc(true, HTLC_SAT, i as u8)).collect();
        let received: Vec<_> = (0..h).map(|i| htlc(false, HTLC_SAT, i as u8)).collect();
        let ms = |t: Instant| t.elapsed().as_secs_f64() * 1e3;
        let mut lat = [0.0; 4];

        let t = Instant::now();
        let commitment = self.cp.commitment(n, theirs, 0, offered);
        ok(client, self.id, ChannelRequest::SignCounterpartyCommitment { commitment, outbound_preimages: vec![] })
            .await?;
        lat[0] = ms(t);

        let point = client.per_commitment_point(self.id, n).await.map_err(|e| e.to_string())?;
        let holder = qls_protocol::CommitmentInfo {
            commitment_number: n,
            per_commitment_point: point,
            to_broadcaster_sat: 0,
            to_countersignatory_sat: theirs,
            feerate_per_kw: FEERATE,
            htlcs: received,
        };
        let req = self.cp.validate_request(&self.setup, holder, vec![]).map_err(|e| e.to_string())?;
        let t = Instant::now();
        ok(client, self.id, req).await?;
        lat[1] = ms(t);

        if n < N0 {
            let t = Instant::now();
            ok(client, self.id, ChannelRequest::ReleaseCommitmentSecret { commitment_number: n + 1 }).await?;
            lat[2] = ms(t);
            let t = Instant::now();
            let req = ChannelRequest::ValidateCounterpartyRevocation {
                commitment_number: n + 1,
                secret: self.cp.secret(n + 1),
            };
            ok(client, self.id, req).await?;
            lat[3] = ms(t);
        }
        if let Some(times) = times {
            for (v, l) in times.iter_mut().zip(lat) {
                v.push(l);
            }
        }
        self.next = n - 1;
        Ok(())
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

const OPS: [&str; 4] = [
    "sign counterparty commitment",
    "validate holder commitment",
    "revoke (release secret)",
    "record counterparty revocation",
];

pub async fn bench_channels(p: &ChannelBenchParams) -> Result<ChannelBenchResult, HarnessError> {
    let memory = if p.memory_channels > 0 { Some(memory_per_channel(p.memory_channels)?) } else { None };
    let h = Harness::start(QuorumSpec::new(3, 2)).await?;
    let client = h.client().await?;
    let fail = |e: String| HarnessError::Setup(format!("channel bench: {e}"));
    let mut latency = Vec::new();
    for (k, &htlcs) in p.htlc_counts.iter().enumerate() {
        let mut ch = Driven::open(&client, [k as u8 + 1; 32]).await.map_err(fail)?;
        // Warm-up: the first update adds the HTLCs; later ones carry them.
        ch.update(&client, htlcs, None).await.map_err(fail)?;
        let mut times: [Vec<f64>; 4] = Default::default();
        for _ in 0..p.updates {
            ch.update(&client, htlcs, Some(&mut times)).await.map_err(fail)?;
        }
        for (op, mut v) in OPS.into_iter().zip(times) {
            v.sort_by(f64::total_cmp);
            latency.push(LatencyRow {
                op,
                htlcs,
                samples: v.len(),
                p50_ms: percentile(&v, 0.5),
                p99_ms: percentile(&v, 0.99),
            });
        }
    }

    // Throughput: `concurrency` channels, each doing `cycles` updates with 1 HTLC.
    let mut chans = Vec::new();
    for i in 0..p.concurrency {
        let mut id = [0xc0; 32];
        id[..8].copy_from_slice(&(i as u64).to_be_bytes());
        chans.push(Driven::open(&client, id).await.map_err(fail)?);
    }
    let start = Instant::now();
    let results = futures::future::join_all(chans.into_iter().map(|mut ch| {
        let client = &client;
        async move {
            for _ in 0..p.cycles {
                ch.update(client, 1, None).await?;
            }
            Ok::<_, String>(())
        }
    }))
    .await;
    let secs = start.elapsed().as_secs_f64();
    for r in results {
        r.map_err(fail)?;
    }
    h.shutdown().await;
    Ok(ChannelBenchResult { latency, throughput_requests: p.concurrency * p.cycles * 4, throughput_secs: secs, memory })
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()))
        .map_or(0, |pages| pages * 4096)
}

/// A realistic stored state (after updates: both latest commitments, full shachain store)
/// written under `n` channel ids into a fresh cosigner store, which is then reopened and
/// every channel read back (as serving one request each). Growth is measured from before
/// the store was created, so the insert's own allocations count against us.
fn memory_per_channel(n: usize) -> Result<MemoryRow, HarnessError> {
    let fail = |e: String| HarnessError::Setup(format!("memory bench: {e}"));
    let cp = Counterparty::new();
    let setup = cp.setup(cp.points(), VALUE, false, [9; 32]);
    let policy = PolicyConfig::default();
    let secp = bitcoin::secp256k1::Secp256k1::new();
    // The bench's setup uses the counterparty's own points as ours: their provenance is
    // not what it measures.
    let ctx = Context {
        policy: &policy,
        own_scripts: &[],
        secp: &secp,
        now: 1_800_000_000,
        stored_channels: 0,
        network: bitcoin::Network::Regtest,
        holder_keys: Some(qls_signer_core::channel::HolderKeysCheck::Ours),
        chain: None,
    };
    let mut index = PaymentIndex::default();
    let applied = apply(&[9; 32], None, &ChannelRequest::Setup(setup.clone()), &[1; 32], &mut index, &ctx)
        .map_err(|e| fail(e.to_string()))?;
    let mut state: ChannelState = applied.state;
    let info = cp.commitment(N0 - 1000, VALUE - fee_sat(0) - 660, 0, vec![]);
    state.counterparty.latest = Some(info.clone());
    state.counterparty.unrevoked_points = vec![(N0 - 1000, info.per_commitment_point.clone())];
    state.holder.latest =
        Some(HolderCommitment { info, counterparty_sig: vec![7; 64], counterparty_htlc_sigs: vec![] });
    let state_bytes = postcard::to_allocvec(&state).map_err(|e| fail(e.to_string()))?.len();

    let dir = tempfile::tempdir().map_err(|e| fail(e.to_string()))?;
    let path = dir.path().join("store.redb");
    let id = |i: usize| {
        let mut c = [0u8; 32];
        c[..8].copy_from_slice(&(i as u64).to_be_bytes());
        c
    };
    let limits = qls_signer_core::policy::ChannelPolicy::default();
    let rss_before = rss_bytes();
    {
        let store = Store::open(&path).map_err(|e| fail(e.to_string()))?;
        for i in 0..n {
            store
                .update_channel(
                    Some(&id(i)),
                    |_| Vec::new(),
                    &limits,
                    1_800_000_000,
                    |_, _, _| {
                        Ok::<_, ()>(ChannelUpdate { state: Some(state.clone()), write_payments: false, result: () })
                    },
                )
                .map_err(|e| fail(e.to_string()))?
                .map_err(|_| fail("update refused".into()))?;
        }
    }
    let store = Store::open(&path).map_err(|e| fail(e.to_string()))?;
    for i in 0..n {
        let got = store.channel(&id(i)).map_err(|e| fail(e.to_string()))?;
        if got.as_ref() != Some(&state) {
            return Err(fail(format!("channel {i} did not read back")));
        }
    }
    let rss_after = rss_bytes();
    let disk_bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    drop(store);
    Ok(MemoryRow { channels: n, state_bytes, rss_growth_bytes: rss_after.saturating_sub(rss_before), disk_bytes })
}

pub fn table(r: &ChannelBenchResult, p: &ChannelBenchParams) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "legacy channel updates through the quorum (3 cosigners, t = 2, QUIC loopback), {} timed updates per row\n",
        p.updates
    ));
    out.push_str("| operation | HTLCs | p50 ms | p99 ms |\n|---|---|---|---|\n");
    for row in &r.latency {
        out.push_str(&format!("| {} | {} | {:.2} | {:.2} |\n", row.op, row.htlcs, row.p50_ms, row.p99_ms));
    }
    out.push_str(&format!(
        "\nthroughput: {} channel requests ({} channels x {} updates x 4) in {:.2} s = {:.0} approved requests/s ({:.0} cosigner approvals/s)\n",
        r.throughput_requests,
        p.concurrency,
        p.cycles,
        r.throughput_secs,
        r.throughput_requests as f64 / r.throughput_secs,
        3.0 * r.throughput_requests as f64 / r.throughput_secs,
    ));
    if let Some(m) = &r.memory {
        out.push_str(&format!(
            "memory: {} channels, state {} B encoded; RSS growth {:.1} MiB = {:.0} B per channel; store file {:.1} MiB = {:.0} B per channel\n",
            m.channels,
            m.state_bytes,
            m.rss_growth_bytes as f64 / (1 << 20) as f64,
            m.rss_growth_bytes as f64 / m.channels as f64,
            m.disk_bytes as f64 / (1 << 20) as f64,
            m.disk_bytes as f64 / m.channels as f64,
        ));
    }
    out
}
