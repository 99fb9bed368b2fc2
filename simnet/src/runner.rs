//! Runs a scenario: starts the quorum, sends the seeded workload through the node API
//! with bounded concurrency, applies the fault schedule between requests, checks every
//! returned signature, and builds the report and the signature log.
//!
//! Must never: count a signature as good without verifying it, or let a fault race a
//! request (in-flight requests drain before each fault).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use indicatif::{ProgressBar, ProgressStyle};

use qls_coordinator::NodeClient;
use qls_protocol::{BlameReason, NodeRequest, NodeResponse, SignReport};
use qls_signer_core::schnorr::verify_bip340;
use qls_signer_core::sighash::{group_key_spend_sighashes, parse_psbt};
use qls_signer_core::wallet::wallet_script;

use crate::faulty_socket::LinkFaults;
use crate::harness::{invalid_share_fault, Harness, HarnessError, Keygen, QuorumSpec};
use crate::report::{
    percentiles, FaultEvent, Invariant, LinkFaultStats, Machine, PointOutcome, Report, RequestPoint, SigRecord,
};
use crate::scenario::Scenario;
use crate::workload::{generate, RequestKind, WorkItem, WorkloadParams};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Harness(#[from] HarnessError),
}

enum Outcome {
    Signed(Vec<SigRecord>, SignReport),
    Refused(BTreeSet<String>, SignReport),
    Failed(String),
    /// A signature came back that does not verify (or a PSBT that was altered).
    BadSignature(String),
}

struct Done {
    kind: RequestKind,
    started_ms: f64,
    latency_ms: f64,
    outcome: Outcome,
}

async fn send(client: &NodeClient, keys: ([u8; 32], [u8; 32]), item: WorkItem, run_start: Instant) -> Done {
    let (key_id, message_key) = keys;
    let started = Instant::now();
    let started_ms = started.duration_since(run_start).as_secs_f64() * 1e3;
    let reply = client.call(&item.request).await;
    let latency_ms = started.elapsed().as_secs_f64() * 1e3;
    let pubkey = hex::encode(message_key);
    let outcome = match (reply, &item.request) {
        (Ok(NodeResponse::Signature { sig, report }), NodeRequest::SignMessage { msg }) => {
            match verify_bip340(&message_key, msg, &sig) {
                Ok(()) => {
                    Outcome::Signed(vec![SigRecord { pubkey, msg: hex::encode(msg), sig: hex::encode(&sig) }], report)
                }
                Err(e) => Outcome::BadSignature(format!("returned signature does not verify: {e}")),
            }
        }
        (Ok(NodeResponse::SignedPsbt { psbt, report }), NodeRequest::SignPsbt { psbt: sent, .. }) => {
            match psbt_signatures(&key_id, sent, &psbt) {
                Ok(records) => Outcome::Signed(records, report),
                Err(e) => Outcome::BadSignature(e),
            }
        }
        (Ok(NodeResponse::Refused { refusals, report }), _) => {
            Outcome::Refused(refusals.iter().flat_map(|r| r.violations.iter().map(|v| v.tag.clone())).collect(), report)
        }
        (Ok(NodeResponse::Error { kind, detail }), _) => Outcome::Failed(format!("{kind:?}: {detail}")),
        (Ok(other), _) => Outcome::Failed(format!("unexpected reply {other:?}")),
        (Err(e), _) => Outcome::Failed(e.to_string()),
    };
    Done { kind: item.kind, started_ms, latency_ms, outcome }
}

/// Checks a signed PSBT against the one sent: same transaction, and a verifying
/// signature for every group input over the sighash we compute ourselves.
fn psbt_signatures(key_id: &[u8; 32], sent: &[u8], signed: &[u8]) -> Result<Vec<SigRecord>, String> {
    let sent = parse_psbt(sent).map_err(|e| e.to_string())?;
    let signed = parse_psbt(signed).map_err(|e| e.to_string())?;
    if sent.unsigned_tx != signed.unsigned_tx {
        return Err("coordinator returned a different transaction".into());
    }
    let wallet = wallet_script(key_id).map_err(|e| e.to_string())?;
    let hashes = group_key_spend_sighashes(&sent, &wallet).map_err(|e| e.to_string())?;
    hashes
        .into_iter()
        .map(|(input, msg)| {
            let sig = signed.inputs[input].tap_key_sig.ok_or_else(|| format!("input {input} left unsigned"))?;
            let sig = sig.signature.serialize();
            verify_bip340(key_id, &msg, &sig).map_err(|e| format!("input {input}: {e}"))?;
            Ok(SigRecord { pubkey: hex::encode(key_id), msg: hex::encode(msg), sig: hex::encode(sig) })
        })
        .collect()
}

/// One scheduled fault action on cosigner (index).
#[derive(Debug, Clone, Copy)]
enum Action {
    Stop(usize),
    Start(usize),
    Impair(usize, LinkFaults),
    Heal(usize),
}

impl Action {
    fn describe(&self) -> (&'static str, usize) {
        match self {
            Action::Stop(i) => ("stop", *i),
            Action::Start(i) => ("start", *i),
            Action::Impair(i, f) if f.partitioned => ("partition", *i),
            Action::Impair(i, _) => ("impair", *i),
            Action::Heal(i) => ("heal", *i),
        }
    }
}

fn fault_schedule(s: &Scenario) -> BTreeMap<usize, Vec<Action>> {
    let mut at: BTreeMap<usize, Vec<Action>> = BTreeMap::new();
    for f in &s.faults {
        let i = f.cosigner - 1;
        let mut push = |n: usize, a: Action| at.entry(n).or_default().push(a);
        let until = (f.down_for > 0).then_some(f.at_request + f.down_for);
        match f.kind.as_str() {
            "stop" => push(f.at_request, Action::Stop(i)),
            "start" => push(f.at_request, Action::Start(i)),
            "restart" => {
                push(f.at_request, Action::Stop(i));
                push(f.at_request + f.down_for, Action::Start(i));
            }
            kind => {
                let faults = LinkFaults {
                    loss: f.loss,
                    latency_ms: f.latency_ms,
                    jitter_ms: f.jitter_ms,
                    partitioned: kind == "partition",
                };
                push(f.at_request, Action::Impair(i, faults));
                if let Some(n) = until.filter(|n| *n < s.workload.requests) {
                    push(n, Action::Heal(i));
                }
            }
        }
    }
    at
}

/// Runs `scenario`; `progress` draws a progress bar on stderr.
pub async fn run(scenario: &Scenario, progress: bool) -> Result<(Report, Vec<SigRecord>), RunError> {
    let q = &scenario.quorum;
    let mut spec = QuorumSpec::new(q.cosigners, q.threshold);
    spec.keygen = if q.keygen == "dealer" { Keygen::Dealer } else { Keygen::Dkg };
    spec.request_timeout = Duration::from_millis(q.request_timeout_ms);
    spec.policies = (1..=q.cosigners)
        .map(|i| {
            let mut p = if q.permissive.contains(&i) {
                qls_signer_core::policy::PolicyConfig::permissive()
            } else {
                crate::harness::test_policy()
            };
            p.onchain.fee_sat_max = q.fee_sat_max;
            p
        })
        .collect();
    spec.faults = (1..=q.cosigners).map(|i| q.byzantine.contains(&i).then(invalid_share_fault)).collect();
    let mut harness = Harness::start(spec).await?;
    harness.wait_for_pools(16, Duration::from_secs(5)).await;
    let key_id = harness.key_id();
    let keys = (key_id, harness.message_key());
    let client = Arc::new(harness.client().await?);
    let w = &scenario.workload;
    let params = WorkloadParams {
        seed: scenario.seed,
        requests: w.requests,
        psbt_share: w.psbt_share,
        violation_share: w.violation_share,
        fee_sat_max: q.fee_sat_max,
    };
    let mut work: VecDeque<WorkItem> = generate(&params, &key_id).into();
    let mut schedule = fault_schedule(scenario);

    let bar = if progress { ProgressBar::new(w.requests as u64) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{spinner} {bar:40} {pos}/{len} requests  {per_sec}  eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut done: Vec<Done> = Vec::with_capacity(w.requests);
    let mut fault_events = Vec::new();
    let mut in_flight = FuturesUnordered::new();
    let started = Instant::now();
    let mut next = 0usize;
    while next < w.requests || !in_flight.is_empty() {
        let fault_due = schedule.first_key_value().is_some_and(|(at, _)| *at == next);
        if next < w.requests && in_flight.len() < w.concurrency && !fault_due {
            let item = work.pop_front().expect("one item per request");
            let client = client.clone();
            in_flight.push(tokio::spawn(async move { send(&client, keys, item, started).await }));
            next += 1;
            continue;
        }
        if fault_due && in_flight.is_empty() {
            let (at, actions) = schedule.pop_first().expect("due fault");
            for action in actions {
                match action {
                    Action::Stop(i) => harness.stop_cosigner(i).await,
                    Action::Start(i) => harness.start_cosigner(i).await?,
                    Action::Impair(i, f) => harness.impair_link(i, f),
                    Action::Heal(i) => harness.heal_link(i),
                }
                let (name, i) = action.describe();
                tracing::info!(at_request = at, cosigner = %harness.cosigners[i].name, action = name, "fault injected");
                fault_events.push(FaultEvent {
                    at_request: at,
                    at_ms: started.elapsed().as_millis() as u64,
                    action: name.into(),
                    cosigner: harness.cosigners[i].name.clone(),
                });
            }
            continue;
        }
        if let Some(r) = in_flight.next().await {
            if let Ok(d) = r {
                done.push(d);
            }
            bar.inc(1);
        }
    }
    let duration_s = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let st = &harness.link_faults.stats;
    let link_faults = LinkFaultStats {
        dropped_sent: st.dropped_sent.load(std::sync::atomic::Ordering::Relaxed),
        dropped_received: st.dropped_received.load(std::sync::atomic::Ordering::Relaxed),
        delayed: st.delayed.load(std::sync::atomic::Ordering::Relaxed),
    };
    let names: Vec<String> = harness.cosigners.iter().map(|c| c.name.clone()).collect();
    drop(client);
    harness.shutdown().await;
    let (mut report, sigs) = build_report(scenario, done, fault_events, duration_s);
    report.link_faults = link_faults;
    for n in names {
        report.participation.entry(n).or_insert(0);
    }
    Ok((report, sigs))
}

fn build_report(
    s: &Scenario,
    done: Vec<Done>,
    fault_events: Vec<FaultEvent>,
    duration_s: f64,
) -> (Report, Vec<SigRecord>) {
    let mut signed = 0;
    let mut refused: BTreeMap<String, usize> = BTreeMap::new();
    let mut refused_requests = 0;
    let mut failed = 0;
    let mut blamed: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    let mut sigs = Vec::new();
    let mut violation_signed = 0;
    let mut bad_signatures = 0;
    let mut participation: BTreeMap<String, usize> = BTreeMap::new();
    let mut honest_refused_wrongly = 0;
    let mut add_blame = |report: &SignReport| {
        for b in &report.blamed {
            let reason = match b.reason {
                BlameReason::InvalidShare => "invalid-share",
                BlameReason::Timeout => "timeout",
                BlameReason::Unreachable => "unreachable",
                BlameReason::ErrorReply => "error-reply",
                BlameReason::StateDiverged => "state-diverged",
            };
            *blamed.entry(b.cosigner.clone()).or_default().entry(reason.into()).or_default() += 1;
        }
    };
    for d in &done {
        match &d.outcome {
            Outcome::Signed(records, report) => {
                signed += 1;
                for c in &report.signers {
                    *participation.entry(c.clone()).or_default() += 1;
                }
                add_blame(report);
                sigs.extend(records.iter().cloned());
                if d.kind.expected_refusal().is_some() {
                    violation_signed += 1;
                }
            }
            Outcome::Refused(tags, report) => {
                refused_requests += 1;
                add_blame(report);
                for t in tags {
                    *refused.entry(t.clone()).or_default() += 1;
                }
                if d.kind.expected_refusal().is_none_or(|t| !tags.contains(t)) {
                    honest_refused_wrongly += 1;
                }
            }
            Outcome::Failed(e) => {
                failed += 1;
                tracing::warn!(error = %e, "request failed");
            }
            Outcome::BadSignature(e) => {
                failed += 1;
                bad_signatures += 1;
                tracing::error!(error = %e, "bad signature returned");
            }
        }
    }
    let r_values: BTreeSet<&str> = sigs.iter().map(|r| &r.sig[..64]).collect();
    let invariants = vec![
        Invariant {
            name: "policy-violations-never-signed",
            holds: violation_signed == 0,
            detail: format!("{violation_signed} violating requests signed"),
        },
        Invariant {
            name: "refusals-match-violations",
            holds: honest_refused_wrongly == 0,
            detail: format!("{honest_refused_wrongly} refusals without the expected tag"),
        },
        Invariant {
            name: "no-repeated-nonce",
            holds: r_values.len() == sigs.len(),
            detail: format!("{} signatures, {} distinct R values", sigs.len(), r_values.len()),
        },
        Invariant {
            name: "all-signatures-verify",
            holds: bad_signatures == 0,
            detail: format!("{} signatures checked with libsecp256k1, {bad_signatures} bad", sigs.len()),
        },
    ];
    let latencies: Vec<f64> = done.iter().map(|d| d.latency_ms).collect();
    let timeline = done
        .iter()
        .map(|d| RequestPoint {
            started_ms: d.started_ms,
            latency_ms: d.latency_ms,
            outcome: match d.outcome {
                Outcome::Signed(..) => PointOutcome::Signed,
                Outcome::Refused(..) => PointOutcome::Refused,
                Outcome::Failed(_) | Outcome::BadSignature(_) => PointOutcome::Failed,
            },
        })
        .collect();
    let report = Report {
        scenario: s.name.clone(),
        seed: s.seed,
        threshold: s.quorum.threshold,
        cosigners: s.quorum.cosigners,
        requests: done.len(),
        signed,
        refused,
        refused_requests,
        failed,
        signatures: sigs.len(),
        latency_ms: percentiles(&latencies),
        throughput_per_s: if duration_s > 0.0 { done.len() as f64 / duration_s } else { 0.0 },
        duration_s,
        faults_injected: fault_events.len(),
        fault_events,
        blamed,
        participation,
        link_faults: LinkFaultStats::default(),
        invariants,
        machine: Machine::this(),
        timeline,
    };
    (report, sigs)
}
