//! `qls-simnet bench`: quorum signature latency (p50/p99, sequential) and sustained
//! signatures per second (concurrent) over loopback QUIC, against the same FROST rounds
//! run in one process as the compute baseline.
//!
//! Must never: time anything but complete, verified signatures.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use rand::RngCore;

use qls_signer_core::dealer;

use crate::harness::{Harness, HarnessError, QuorumSpec};
use crate::report::{percentiles, Percentiles};

#[derive(Debug, Clone)]
pub struct BenchRow {
    pub n: usize,
    pub t: u16,
    pub quic_ms: Percentiles,
    pub signatures_per_s: f64,
    pub in_process_ms: Percentiles,
}

pub struct BenchParams {
    pub sequential: usize,
    pub concurrent: usize,
    pub concurrency: usize,
}

async fn bench_one(n: usize, t: u16, p: &BenchParams) -> Result<BenchRow, HarnessError> {
    let mut spec = QuorumSpec::new(n, t);
    spec.nonce_pool_target = 512;
    let harness = Harness::start(spec).await?;
    harness.wait_for_pools(256, Duration::from_secs(10)).await;
    let key_id = harness.message_key();
    let client = Arc::new(harness.client().await?);
    let mut rng = rand::rngs::OsRng;
    let fail = |e: qls_node::ClientError| HarnessError::Setup(format!("bench signature failed: {e}"));

    for _ in 0..50 {
        let mut msg = [0u8; 32];
        rng.fill_bytes(&mut msg);
        client.sign_message(&key_id, msg).await.map_err(fail)?;
    }
    let mut samples = Vec::with_capacity(p.sequential);
    for _ in 0..p.sequential {
        let mut msg = [0u8; 32];
        rng.fill_bytes(&mut msg);
        let started = Instant::now();
        client.sign_message(&key_id, msg).await.map_err(fail)?;
        samples.push(started.elapsed().as_secs_f64() * 1e3);
    }
    let quic_ms = percentiles(&samples);

    let started = Instant::now();
    let mut in_flight = FuturesUnordered::new();
    let mut sent = 0;
    let mut ok = 0usize;
    while sent < p.concurrent || !in_flight.is_empty() {
        while sent < p.concurrent && in_flight.len() < p.concurrency {
            let client = client.clone();
            let mut msg = [0u8; 32];
            rng.fill_bytes(&mut msg);
            in_flight.push(tokio::spawn(async move { client.sign_message(&key_id, msg).await.is_ok() }));
            sent += 1;
        }
        if let Some(Ok(true)) = in_flight.next().await {
            ok += 1;
        }
    }
    let signatures_per_s = ok as f64 / started.elapsed().as_secs_f64();
    drop(client);
    harness.shutdown().await;

    let fps: Vec<[u8; 32]> = (1..=n as u8).map(|i| [i; 32]).collect();
    let shares = dealer::split(None, &fps, t, &mut rng).map_err(|e| HarnessError::Setup(e.to_string()))?;
    let signers: Vec<_> = shares.iter().take(t as usize).map(|(_, s)| s).collect();
    let mut local = Vec::with_capacity(p.sequential);
    for _ in 0..p.sequential {
        let mut msg = [0u8; 32];
        rng.fill_bytes(&mut msg);
        let started = Instant::now();
        dealer::sign_in_process(&signers, &msg, &mut rng).map_err(|e| HarnessError::Setup(e.to_string()))?;
        local.push(started.elapsed().as_secs_f64() * 1e3);
    }
    Ok(BenchRow { n, t, quic_ms, signatures_per_s, in_process_ms: percentiles(&local) })
}

pub async fn bench(p: &BenchParams) -> Result<Vec<BenchRow>, HarnessError> {
    let mut rows = Vec::new();
    for (n, t) in [(3, 2), (5, 3)] {
        rows.push(bench_one(n, t, p).await?);
    }
    Ok(rows)
}

pub fn table(rows: &[BenchRow], p: &BenchParams) -> String {
    let mut s = format!(
        "quorum signature (message, node API → coordinator → t cosigners, loopback QUIC, {} sequential / {} at concurrency {}), {} cores\n",
        p.sequential,
        p.concurrent,
        p.concurrency,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    s += "| quorum | QUIC p50 ms | QUIC p99 ms | signatures/s | in-process p50 ms | in-process p99 ms | p50 ratio |\n";
    s += "|---|---|---|---|---|---|---|\n";
    for r in rows {
        s += &format!(
            "| {}-of-{} | {:.3} | {:.3} | {:.0} | {:.3} | {:.3} | {:.1}x |\n",
            r.t,
            r.n,
            r.quic_ms.p50,
            r.quic_ms.p99,
            r.signatures_per_s,
            r.in_process_ms.p50,
            r.in_process_ms.p99,
            r.quic_ms.p50 / r.in_process_ms.p50
        );
    }
    s
}
