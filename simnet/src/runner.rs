//! Runs a scenario: starts the quorum, opens the network's channels, sends the seeded
//! event stream (wallet requests through the node API and Lightning events through the
//! channel drivers) with bounded concurrency and an optional rate, applies the fault
//! schedule (by event count, in-flight events drained first, or by time, while events are
//! in flight), checks every returned signature and signed transaction, and builds the
//! report and the signature log.
//!
//! Must never: count a signature as good without verifying it, run two events on one
//! channel at once, or start a channel's events in another order than generated.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use rand::{Rng, SeedableRng};
use tokio::sync::Mutex;

use qls_node::NodeClient;
use qls_protocol::{BlameReason, NodeRequest, NodeResponse, SignReport};
use qls_signer_core::schnorr::verify_bip340;
use qls_signer_core::sighash::{group_key_spend_sighashes, parse_psbt};
use qls_signer_core::wallet::wallet_script;

use crate::channels::{EventOutcome, EventResult, LnContext, Slot, SlotRef, SlotState};
use crate::faulty_socket::LinkFaults;
use crate::harness::{Harness, HarnessError, Keygen, QuorumSpec};
use crate::lightning::LnEvent;
use crate::nonce_audit::NonceAudit;
use crate::report::{
    percentiles, ChannelCounts, EventCounts, FaultEvent, Invariant, LinkFaultStats, Machine, PointOutcome, Report,
    RequestPoint, SigRecord,
};
use crate::scenario::Scenario;
use crate::workload::{generate, RequestKind, WorkItem, WorkloadParams};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Harness(#[from] HarnessError),
}

enum Outcome {
    Signed(Vec<SigRecord>),
    Refused(BTreeSet<String>),
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
    let outcome = match (reply, &item.request) {
        (Ok(NodeResponse::Signature { sig, .. }), NodeRequest::SignMessage { msg }) => {
            match verify_bip340(&message_key, msg, &sig) {
                Ok(()) => Outcome::Signed(vec![SigRecord::bip340(&message_key, msg, &sig)]),
                Err(e) => Outcome::BadSignature(format!("returned signature does not verify: {e}")),
            }
        }
        (Ok(NodeResponse::SignedPsbt { psbt, .. }), NodeRequest::SignPsbt { psbt: sent, .. }) => {
            match psbt_signatures(&key_id, sent, &psbt) {
                Ok(records) => Outcome::Signed(records),
                Err(e) => Outcome::BadSignature(e),
            }
        }
        (Ok(NodeResponse::Refused { refusals, .. }), _) => {
            Outcome::Refused(refusals.iter().flat_map(|r| r.violations.iter().map(|v| v.tag.clone())).collect())
        }
        (Ok(NodeResponse::Error { kind, detail }), _) => Outcome::Failed(format!("{kind:?}: {detail}")),
        (Ok(NodeResponse::Unavailable { detail, .. }), _) => Outcome::Failed(format!("QuorumUnavailable: {detail}")),
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
    if hashes.is_empty() {
        return Err("the PSBT spends no group input: nothing was signed".into());
    }
    hashes
        .into_iter()
        .map(|(input, msg)| {
            let sig = signed.inputs[input].tap_key_sig.ok_or_else(|| format!("input {input} left unsigned"))?;
            let sig = sig.signature.serialize();
            verify_bip340(key_id, &msg, &sig).map_err(|e| format!("input {input}: {e}"))?;
            Ok(SigRecord::bip340(key_id, &msg, &sig))
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

/// Fault actions by event index and by milliseconds after the start.
type Schedule = (BTreeMap<usize, Vec<Action>>, BTreeMap<u64, Vec<Action>>);

fn fault_schedule(s: &Scenario) -> Schedule {
    let (mut by_event, mut by_time): Schedule = Default::default();
    let events = s.workload.events();
    for f in &s.faults {
        let i = f.cosigner - 1;
        let faults = LinkFaults {
            loss: f.loss,
            latency_ms: f.latency_ms,
            jitter_ms: f.jitter_ms,
            partitioned: f.kind == "partition",
        };
        let (first, second) = match f.kind.as_str() {
            "stop" => (Action::Stop(i), None),
            "start" => (Action::Start(i), None),
            "restart" => (Action::Stop(i), Some(Action::Start(i))),
            _ => (Action::Impair(i, faults), Some(Action::Heal(i))),
        };
        match (f.at_event, f.at_ms) {
            (Some(at), _) => {
                by_event.entry(at).or_default().push(first);
                let until = at + f.down_for;
                if let Some(a) = second.filter(|_| f.down_for > 0 || f.kind == "restart") {
                    if until < events {
                        by_event.entry(until).or_default().push(a);
                    } else if f.kind == "restart" {
                        by_event.entry(events).or_default().push(a);
                    }
                }
            }
            (None, Some(ms)) => {
                by_time.entry(ms).or_default().push(first);
                if let Some(a) = second.filter(|_| f.down_ms > 0 || f.kind == "restart") {
                    by_time.entry(ms + f.down_ms).or_default().push(a);
                }
            }
            (None, None) => {}
        }
    }
    (by_event, by_time)
}

/// One event of the run.
enum Event {
    Request(Box<WorkItem>),
    Lightning(LnEvent),
}

/// What an event came back with.
enum Finished {
    Request(Done),
    Lightning(EventResult, f64),
}

/// Advances each channel's turn when its event ends (also if the event's task panics, so
/// later events on the channel do not wait forever).
struct NextTurn(Vec<Arc<tokio::sync::watch::Sender<u64>>>);

impl Drop for NextTurn {
    fn drop(&mut self) {
        for t in &self.0 {
            t.send_modify(|serving| *serving += 1);
        }
    }
}

/// The quorum a scenario asks for.
fn quorum_spec(scenario: &Scenario) -> Result<QuorumSpec, RunError> {
    let q = &scenario.quorum;
    let mut spec = QuorumSpec::new(q.cosigners, q.threshold);
    spec.keygen = if q.keygen == "dealer" { Keygen::Dealer } else { Keygen::Dkg };
    spec.request_timeout = Duration::from_millis(q.request_timeout_ms);
    spec.key_holders = q.key_holders.iter().map(|k| k - 1).collect();
    spec.policies = (1..=q.cosigners)
        .map(|i| crate::policy::cosigner_policy(q, i).map_err(|e| RunError::Harness(HarnessError::Setup(e))))
        .collect::<Result<_, _>>()?;
    spec.faults = (1..=q.cosigners)
        .map(|i| {
            let mut modes: Vec<&str> =
                q.misbehaving.iter().filter(|m| m.cosigner == i).map(|m| m.mode.as_str()).collect();
            if q.byzantine.contains(&i) {
                modes.push("invalid-shares");
            }
            crate::byzantine::reply_fault(&modes)
        })
        .collect();
    Ok(spec)
}

/// Applies `actions` and records them.
async fn apply(
    harness: &mut Harness,
    actions: Vec<Action>,
    at_event: Option<usize>,
    started: Instant,
    events: &mut Vec<FaultEvent>,
) -> Result<(), RunError> {
    for action in actions {
        match action {
            Action::Stop(i) => harness.stop_cosigner(i).await,
            Action::Start(i) => harness.start_cosigner(i).await?,
            Action::Impair(i, f) => harness.impair_link(i, f),
            Action::Heal(i) => harness.heal_link(i),
        }
        let (name, i) = action.describe();
        tracing::info!(?at_event, cosigner = %harness.cosigners[i].name, action = name, "fault injected");
        events.push(FaultEvent {
            at_event,
            at_ms: started.elapsed().as_millis() as u64,
            action: name.into(),
            cosigner: harness.cosigners[i].name.clone(),
        });
    }
    Ok(())
}

/// Opens the network's initial channels (not timed as events).
async fn open_network(
    ctx: &Arc<LnContext>,
    slots: &[SlotRef],
    initial: usize,
    concurrency: usize,
    progress: bool,
) -> Vec<EventResult> {
    let bar = if progress { ProgressBar::new(initial as u64) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{spinner} {bar:40} {pos}/{len} channels opened  eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut out = Vec::with_capacity(initial);
    let mut in_flight = FuturesUnordered::new();
    for (i, slot) in slots.iter().enumerate().take(initial) {
        if in_flight.len() >= concurrency {
            if let Some(Ok(r)) = in_flight.next().await {
                out.push(r);
            }
            bar.inc(1);
        }
        let guard = slot.clone().lock_owned().await;
        let ctx = ctx.clone();
        in_flight.push(tokio::spawn(async move { ctx.run(LnEvent::Open { channel: i }, vec![(i, guard)]).await }));
    }
    while let Some(r) = in_flight.next().await {
        if let Ok(r) = r {
            out.push(r);
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    out
}

/// Runs `scenario`; `progress` draws a progress bar on stderr.
pub async fn run(scenario: &Scenario, progress: bool) -> Result<(Report, Vec<SigRecord>), RunError> {
    let q = &scenario.quorum;
    let mut harness = Harness::start(quorum_spec(scenario)?).await?;
    for m in q.misbehaving.iter().filter(|m| m.mode == "slow") {
        harness.impair_link(m.cosigner - 1, LinkFaults { latency_ms: m.delay_ms, ..LinkFaults::default() });
    }
    harness.wait_for_pools(16, Duration::from_secs(5)).await;
    let key_id = harness.key_id();
    let keys = (key_id, harness.message_key());
    // Blame and participation from every signing report the node gets back.
    let seen = Arc::new(std::sync::Mutex::new(Seen::default()));
    let observer = {
        let seen = seen.clone();
        Arc::new(move |r: &SignReport| {
            if let Ok(mut s) = seen.lock() {
                s.add(r);
            }
        })
    };
    let client = Arc::new(harness.client().await?.with_observer(observer));
    let w = &scenario.workload;

    // The Lightning side: channels, their drivers, the event stream.
    let (plan, ln_events) = match &scenario.network {
        Some(net) => crate::lightning::generate(scenario.seed, net, w),
        None => (vec![], vec![]),
    };
    let initial = scenario.network.as_ref().map_or(0, |n| n.channels);
    let slots: Arc<Vec<SlotRef>> = Arc::new(
        plan.into_iter()
            .map(|plan| Arc::new(Mutex::new(Slot { plan, driver: None, ledger_msat: 0, state: SlotState::Planned })))
            .collect(),
    );
    let wallet = wallet_script(&key_id).map_err(|e| HarnessError::Setup(e.to_string()))?;
    let malicious = if w.replays() > 0 {
        Some(crate::malicious::MaliciousCoordinator::new(
            &harness,
            q.key_holders.iter().map(|k| k - 1).collect(),
            usize::from(q.threshold),
        )?)
    } else {
        None
    };
    let ctx = Arc::new(LnContext {
        client: client.clone(),
        chain: harness.chain.clone(),
        wallet,
        malicious,
        retry_for: Duration::from_secs(20),
    });
    let setup_started = Instant::now();
    let opened = open_network(&ctx, &slots, initial, w.concurrency, progress).await;
    let setup_s = setup_started.elapsed().as_secs_f64();
    let setup_requests = client.calls();

    // Wallet requests and Lightning events, interleaved by the seed.
    let params = WorkloadParams {
        seed: scenario.seed,
        requests: w.requests,
        psbt_share: w.psbt_share,
        violation_share: w.violation_share,
        fee_sat_max: q.fee_sat_max,
    };
    let mut requests: VecDeque<WorkItem> = generate(&params, &key_id).into();
    let mut lightning: VecDeque<LnEvent> = ln_events.into();
    let mut mix = rand_chacha::ChaCha20Rng::seed_from_u64(scenario.seed ^ 0x006d_6978);
    let total = requests.len() + lightning.len();
    let mut work: VecDeque<Event> = VecDeque::with_capacity(total);
    while !requests.is_empty() || !lightning.is_empty() {
        let take_request = mix.gen_range(0..requests.len() + lightning.len()) < requests.len();
        work.push_back(match (take_request, requests.pop_front(), lightning.pop_front()) {
            (true, Some(r), l) => {
                if let Some(l) = l {
                    lightning.push_front(l);
                }
                Event::Request(Box::new(r))
            }
            (_, r, Some(l)) => {
                if let Some(r) = r {
                    requests.push_front(r);
                }
                Event::Lightning(l)
            }
            (_, Some(r), None) => Event::Request(Box::new(r)),
            (_, None, None) => break,
        });
    }
    let (mut by_event, mut by_time) = fault_schedule(scenario);
    let turns: Vec<Arc<tokio::sync::watch::Sender<u64>>> =
        slots.iter().map(|_| Arc::new(tokio::sync::watch::channel(0u64).0)).collect();
    let mut issued = vec![0u64; slots.len()];
    let mut panicked = 0usize;

    let bar = if progress { ProgressBar::new(total as u64) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{spinner} {bar:40} {pos}/{len} events  {per_sec}  eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut finished: Vec<Finished> = Vec::with_capacity(total);
    let mut fault_events = Vec::new();
    let mut in_flight = FuturesUnordered::new();
    let started = Instant::now();
    let mut next = 0usize;
    loop {
        // Time-based faults land whenever they are due, events in flight or not.
        while let Some((&ms, _)) = by_time.first_key_value() {
            if started.elapsed() < Duration::from_millis(ms) {
                break;
            }
            let (_, actions) = by_time.pop_first().expect("due fault");
            apply(&mut harness, actions, None, started, &mut fault_events).await?;
        }
        let fault_due = by_event.first_key_value().is_some_and(|(at, _)| *at == next);
        if fault_due && in_flight.is_empty() {
            let (at, actions) = by_event.pop_first().expect("due fault");
            apply(&mut harness, actions, Some(at), started, &mut fault_events).await?;
            continue;
        }
        let due_at = (w.rate_per_s > 0.0).then(|| started + Duration::from_secs_f64(next as f64 / w.rate_per_s));
        let can_start = next < total && in_flight.len() < w.concurrency && !fault_due;
        if can_start && due_at.is_none_or(|t| Instant::now() >= t) {
            let ev = work.pop_front().expect("one item per event");
            let sent_at = started.elapsed().as_secs_f64() * 1e3;
            match ev {
                Event::Request(item) => {
                    let client = client.clone();
                    in_flight.push(tokio::spawn(async move {
                        Finished::Request(send(&client, keys, *item, started).await)
                    }));
                }
                Event::Lightning(ev) => {
                    // A ticket per channel, in stream order: the event runs when every one
                    // of its channels serves its ticket, so a channel's events never overlap
                    // or reorder, and this loop never waits for a busy channel.
                    let tickets: Vec<(usize, u64, tokio::sync::watch::Receiver<u64>)> = ev
                        .channels()
                        .into_iter()
                        .map(|c| {
                            issued[c] += 1;
                            (c, issued[c] - 1, turns[c].subscribe())
                        })
                        .collect();
                    let advance = NextTurn(ev.channels().iter().map(|c| turns[*c].clone()).collect());
                    let (ctx, slots) = (ctx.clone(), slots.clone());
                    in_flight.push(tokio::spawn(async move {
                        let _advance = advance;
                        let mut guards = Vec::new();
                        for (c, ticket, mut turn) in tickets {
                            let _ = turn.wait_for(|serving| *serving == ticket).await;
                            guards.push((c, slots[c].clone().lock_owned().await));
                        }
                        Finished::Lightning(ctx.run(ev, guards).await, sent_at)
                    }));
                }
            }
            next += 1;
            continue;
        }
        if next >= total && in_flight.is_empty() {
            break;
        }
        // Wait for an event to finish, the next start time, or the next timed fault.
        let mut wake = by_time.first_key_value().map(|(ms, _)| started + Duration::from_millis(*ms));
        if can_start {
            wake = match (wake, due_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        let sleep = async {
            match wake {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => futures::future::pending().await,
            }
        };
        tokio::select! {
            r = in_flight.next(), if !in_flight.is_empty() => {
                match r {
                    Some(Ok(f)) => finished.push(f),
                    Some(Err(e)) => {
                        tracing::error!(error = %e, "an event task panicked");
                        panicked += 1;
                    }
                    None => {}
                }
                bar.inc(1);
            }
            _ = sleep => {}
        }
    }
    // Faults scheduled at the very end (restarts) still run.
    for (at, actions) in std::mem::take(&mut by_event) {
        apply(&mut harness, actions, Some(at), started, &mut fault_events).await?;
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
    let lost_for_good = match scenario.expect.taproot_force_close_without {
        Some(lost) => Some(force_close_taproot_without(&mut harness, &client, &slots, lost).await),
        None => None,
    };
    let node_requests = client.calls() - setup_requests;
    let mut channels = ChannelCounts { planned: slots.len(), ..Default::default() };
    for s in slots.iter() {
        match &s.lock().await.state {
            SlotState::Planned => {}
            SlotState::Open => channels.open += 1,
            SlotState::Closed => channels.closed += 1,
            SlotState::ForceClosed => channels.force_closed += 1,
            SlotState::Broken(_) => channels.broken += 1,
        }
    }
    drop(ctx);
    drop(client);
    // The run's catch-up window: a cosigner back up near the end may not have been asked
    // anything since; once the background probe finds it up (≤ 10 s), what it missed is
    // replayed to it, as the next request would.
    if scenario.expect.caught_up {
        let deadline = Instant::now() + Duration::from_secs(10);
        let timeout = harness.coordinator_config.request_timeout;
        for (slot, m) in harness.cosigners.iter().zip(harness.quorum.members.iter()) {
            if !slot.is_running() || m.missed.pending() == 0 {
                continue;
            }
            while m.is_down() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if let Err(e) = m.missed.catch_up(&m.link, timeout).await {
                tracing::warn!(cosigner = %slot.name, error = %e, "catch-up window: replay failed");
            }
        }
    }
    let catch_up: BTreeMap<String, crate::report::CatchUpReport> = harness
        .cosigners
        .iter()
        .zip(harness.quorum.members.iter())
        .map(|(slot, m)| {
            let s = m.missed.stats();
            let r = crate::report::CatchUpReport {
                catch_ups: s.catch_ups,
                replayed: s.replayed,
                refused: s.refused,
                dropped: s.dropped,
                longest_ms: s.longest_ms,
                pending_at_end: m.missed.pending(),
                running_at_end: slot.is_running(),
            };
            (slot.name.clone(), r)
        })
        .collect();
    let attacks = if scenario.attacks.corpus {
        Some(
            crate::attack_corpus::run(&harness)
                .await
                .map_err(|e| RunError::Harness(HarnessError::Setup(e.to_string())))?,
        )
    } else {
        None
    };
    harness.shutdown().await;
    let finished_count = finished.len();
    let seen = std::mem::take(&mut *seen.lock().unwrap_or_else(|e| e.into_inner()));
    let (mut report, sigs) = build_report(scenario, finished, opened, fault_events, duration_s, &seen.nonces);
    report.outage = crate::report::outage_report(&report.timeline, &report.fault_events, report.duration_s * 1000.0);
    let expect = &scenario.expect;
    if expect.caught_up {
        let behind: Vec<String> = catch_up
            .iter()
            .filter(|(_, c)| c.running_at_end && (c.pending_at_end > 0 || c.refused > 0 || c.dropped > 0))
            .map(|(name, c)| format!("{name}: {c:?}"))
            .collect();
        let replayed: u64 = catch_up.values().map(|c| c.replayed).sum();
        report.invariants.push(Invariant {
            name: "caught-up-at-end",
            holds: behind.is_empty(),
            detail: format!(
                "{replayed} missed requests replayed; every running cosigner caught up with none refused{}",
                if behind.is_empty() { String::new() } else { format!("; behind: {}", behind.join(", ")) }
            ),
        });
    }
    if expect.outage_throughput_min > 0.0 || expect.outage_p99_max_ratio > 0.0 {
        let (holds, detail) = match &report.outage {
            Some(o) => {
                let share = if o.before_per_s > 0.0 { o.during_per_s / o.before_per_s } else { 0.0 };
                let ratio = if o.p99_before_ms > 0.0 { o.p99_during_ms / o.p99_before_ms } else { f64::INFINITY };
                let ok_rate = expect.outage_throughput_min <= 0.0 || share >= expect.outage_throughput_min;
                let ok_p99 = expect.outage_p99_max_ratio <= 0.0 || ratio <= expect.outage_p99_max_ratio;
                (
                    ok_rate && ok_p99,
                    format!(
                        "{} down: {:.1}/s during vs {:.1}/s before ({:.0} %, min {:.0} %), p99 {:.0} ms vs {:.0} ms ({ratio:.2}x, max {:.1}x); after {:.1}/s",
                        o.cosigner,
                        o.during_per_s,
                        o.before_per_s,
                        share * 100.0,
                        expect.outage_throughput_min * 100.0,
                        o.p99_during_ms,
                        o.p99_before_ms,
                        expect.outage_p99_max_ratio,
                        o.after_per_s
                    ),
                )
            }
            None => (false, "no stop and start of a cosigner in the run".into()),
        };
        report.invariants.push(Invariant { name: "outage-throughput", holds, detail });
    }
    report.catch_up = catch_up;
    if let Some(invariant) = lost_for_good {
        report.invariants.push(invariant);
    }
    if let Some(results) = attacks {
        // Honest: neither permissive nor byzantine nor misbehaving. n − t + 1 refusals
        // leave no t to sign.
        let q = &scenario.quorum;
        let honest: Vec<String> = (1..=q.cosigners)
            .filter(|i| !q.permissive.contains(i) && !q.byzantine.contains(i))
            .filter(|i| !q.misbehaving.iter().any(|m| m.cosigner == *i))
            .map(|i| format!("c{i}"))
            .collect();
        let blocking = (q.cosigners + 1).saturating_sub(usize::from(q.threshold)).min(honest.len());
        let held = results.iter().filter(|r| r.held(&honest, blocking)).count();
        let kinds = crate::attack_corpus::kinds(&results);
        report.invariants.push(Invariant {
            name: "attack-corpus-refused",
            holds: held == results.len() && kinds >= 30,
            detail: format!(
                "{held} of {} attempts ({kinds} kinds) refused with their tag by {blocking}+ of the honest {honest:?}, nothing signed",
                results.len()
            ),
        });
        report.attacks = results;
    }
    report.invariants.push(Invariant {
        name: "every-event-finished",
        holds: panicked == 0 && finished_count == total,
        detail: format!("{finished_count} of {total} events finished, {panicked} event tasks panicked"),
    });
    report.failed += panicked;
    report.blamed = seen.blamed;
    report.participation = seen.participation;
    report.link_faults = link_faults;
    report.node_requests = node_requests;
    report.setup_s = setup_s;
    report.channels = channels;
    for n in names {
        report.participation.entry(n).or_insert(0);
    }
    Ok((report, sigs))
}

/// Cosigner `lost` (1-based) is lost for good; every open taproot channel is then
/// force-closed by the cosigners left (from the force-close escrow), each spend checked by
/// Bitcoin Core's interpreter.
async fn force_close_taproot_without(
    harness: &mut Harness,
    client: &NodeClient,
    slots: &[SlotRef],
    lost: usize,
) -> Invariant {
    let name = harness.cosigners.get(lost.wrapping_sub(1)).map(|c| c.name.clone()).unwrap_or_default();
    harness.stop_cosigner(lost.wrapping_sub(1)).await;
    let (mut open, mut closed, mut failures) = (0, 0, Vec::new());
    for slot in slots {
        let mut s = slot.lock().await;
        if s.state != SlotState::Open {
            continue;
        }
        let Some(crate::channels::Driver::Taproot(d)) = s.driver.as_mut() else { continue };
        open += 1;
        let channel = hex::encode(&d.channel[..4]);
        match d.force_close(client).await {
            Ok(spend) => match crate::channels::consensus_check(&spend.tx, &spend.spent) {
                Ok(()) => {
                    closed += 1;
                    s.state = SlotState::ForceClosed;
                }
                Err(e) => failures.push(format!("{channel}: interpreter: {e}")),
            },
            Err(e) => failures.push(format!("{channel}: {e}")),
        }
    }
    Invariant {
        name: "taproot-force-close-by-t",
        holds: failures.is_empty() && open > 0,
        detail: format!(
            "{name} lost for good: {closed} of {open} open taproot channels force-closed by the others, \
             every spend accepted by bitcoinconsensus{}",
            if failures.is_empty() { String::new() } else { format!("; failed: {}", failures.join("; ")) }
        ),
    }
}

fn blame_reason(r: &BlameReason) -> &'static str {
    match r {
        BlameReason::InvalidShare => "invalid-share",
        BlameReason::Timeout => "timeout",
        BlameReason::Unreachable => "unreachable",
        BlameReason::ErrorReply => "error-reply",
        BlameReason::StateDiverged => "state-diverged",
    }
}

/// Blame and participation over every signing report (setup included).
#[derive(Default)]
struct Seen {
    blamed: BTreeMap<String, BTreeMap<String, usize>>,
    participation: BTreeMap<String, usize>,
    nonces: NonceAudit,
}

impl Seen {
    fn add(&mut self, report: &SignReport) {
        for b in &report.blamed {
            *self.blamed.entry(b.cosigner.clone()).or_default().entry(blame_reason(&b.reason).into()).or_default() += 1;
        }
        for n in &report.signers {
            *self.participation.entry(n.clone()).or_default() += 1;
        }
        self.nonces.add(report);
    }
}

/// Counts over everything that finished.
#[derive(Default)]
struct Tally {
    signed: usize,
    refused: BTreeMap<String, usize>,
    refused_requests: usize,
    failed: usize,
    sigs: Vec<SigRecord>,
    violation_signed: usize,
    bad_signatures: usize,
    honest_refused_wrongly: usize,
    events: BTreeMap<String, EventCounts>,
    funds_lost_msat: u64,
    txs_checked: usize,
    tx_failures: Vec<String>,
}

impl Tally {
    fn lightning(&mut self, r: &EventResult) {
        let c = self.events.entry(r.kind.into()).or_default();
        match &r.outcome {
            EventOutcome::Done => c.done += 1,
            EventOutcome::Refused(tags) => {
                c.refused += 1;
                for t in tags {
                    *self.refused.entry(t.clone()).or_default() += 1;
                }
            }
            EventOutcome::Failed(e) => {
                c.failed += 1;
                self.failed += 1;
                tracing::warn!(event = r.kind, error = %e, "event failed");
            }
            EventOutcome::Skipped(_) => c.skipped += 1,
        }
        if r.violation_signed {
            self.violation_signed += 1;
        }
        // An honest event refused, or an attack that was neither refused nor signed.
        let refused = matches!(r.outcome, EventOutcome::Refused(_));
        if (!r.must_refuse && refused) || (r.must_refuse && r.outcome == EventOutcome::Done && !r.violation_signed) {
            self.honest_refused_wrongly += 1;
        }
        self.funds_lost_msat += r.funds_lost_msat;
        self.txs_checked += r.txs_checked;
        self.tx_failures.extend(r.tx_failures.iter().cloned());
        self.sigs.extend(r.sigs.iter().cloned());
    }
}

fn build_report(
    s: &Scenario,
    finished: Vec<Finished>,
    opened: Vec<EventResult>,
    fault_events: Vec<FaultEvent>,
    duration_s: f64,
    nonces: &NonceAudit,
) -> (Report, Vec<SigRecord>) {
    let mut t = Tally::default();
    let mut latency_by_event: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut timeline = Vec::new();
    let mut latencies = Vec::new();
    for r in &opened {
        t.lightning(r);
    }
    let mut requests = 0;
    for f in &finished {
        match f {
            Finished::Request(d) => {
                requests += 1;
                latencies.push(d.latency_ms);
                latency_by_event.entry(d.kind.name().into()).or_default().push(d.latency_ms);
                let c = t.events.entry(d.kind.name().into()).or_default();
                timeline.push(RequestPoint {
                    started_ms: d.started_ms,
                    latency_ms: d.latency_ms,
                    outcome: match d.outcome {
                        Outcome::Signed(_) => PointOutcome::Signed,
                        Outcome::Refused(_) => PointOutcome::Refused,
                        Outcome::Failed(_) | Outcome::BadSignature(_) => PointOutcome::Failed,
                    },
                });
                match &d.outcome {
                    Outcome::Signed(records) => {
                        c.done += 1;
                        t.signed += 1;
                        t.sigs.extend(records.iter().cloned());
                        if d.kind.expected_refusal().is_some() {
                            t.violation_signed += 1;
                        }
                    }
                    Outcome::Refused(tags) => {
                        c.refused += 1;
                        t.refused_requests += 1;
                        for tag in tags {
                            *t.refused.entry(tag.clone()).or_default() += 1;
                        }
                        if d.kind.expected_refusal().is_none_or(|e| !tags.contains(e)) {
                            t.honest_refused_wrongly += 1;
                        }
                    }
                    Outcome::Failed(e) => {
                        c.failed += 1;
                        t.failed += 1;
                        tracing::warn!(error = %e, "request failed");
                    }
                    Outcome::BadSignature(e) => {
                        c.failed += 1;
                        t.failed += 1;
                        t.bad_signatures += 1;
                        tracing::error!(error = %e, "bad signature returned");
                    }
                }
            }
            Finished::Lightning(r, sent_at) => {
                t.lightning(r);
                if matches!(r.outcome, EventOutcome::Skipped(_)) {
                    continue;
                }
                latencies.push(r.latency_ms);
                latency_by_event.entry(r.kind.into()).or_default().push(r.latency_ms);
                timeline.push(RequestPoint {
                    started_ms: *sent_at,
                    latency_ms: r.latency_ms,
                    outcome: match r.outcome {
                        EventOutcome::Done => PointOutcome::Signed,
                        EventOutcome::Refused(_) => PointOutcome::Refused,
                        _ => PointOutcome::Failed,
                    },
                });
            }
        }
    }
    // Every signature of the run (wallet and channel): R (r) is its first half.
    let all_r: Vec<([u8; 32], [u8; 32])> = t.sigs.iter().filter_map(SigRecord::r_and_msg).collect();
    let mut by_r: BTreeMap<[u8; 32], BTreeSet<[u8; 32]>> = BTreeMap::new();
    for (r, m) in &all_r {
        by_r.entry(*r).or_default().insert(*m);
    }
    let reused = by_r.values().filter(|msgs| msgs.len() > 1).count();
    let repeated_nonces = nonces.repeated();
    let ln_events: usize = finished.iter().filter(|f| matches!(f, Finished::Lightning(..))).count();
    let invariants = vec![
        Invariant {
            name: "policy-violations-never-signed",
            holds: t.violation_signed == 0,
            detail: format!("{} violating requests or events signed", t.violation_signed),
        },
        Invariant {
            name: "refusals-match-violations",
            holds: t.honest_refused_wrongly == 0,
            detail: format!("{} honest requests or events refused, or refusals without the expected tag", t.honest_refused_wrongly),
        },
        Invariant {
            name: "no-repeated-nonce",
            holds: reused == 0 && repeated_nonces.is_empty(),
            detail: format!(
                "{} signatures, {} distinct R values, {reused} R values over two different messages; \
                 {} cosigner nonce uses in signing reports{}, repeated: {}",
                all_r.len(),
                by_r.len(),
                nonces.uses(),
                if nonces.dropped() > 0 { format!(" (+{} not listed)", nonces.dropped()) } else { String::new() },
                if repeated_nonces.is_empty() { "none".to_string() } else { format!("{repeated_nonces:?}") },
            ),
        },
        Invariant {
            name: "all-signatures-verify",
            holds: t.bad_signatures == 0,
            detail: format!(
                "{} signatures logged, every one checked with libsecp256k1 (wallet ones here, {} bad; channel ones by the drivers: a bad one fails its event)",
                t.sigs.len(),
                t.bad_signatures
            ),
        },
        Invariant {
            name: "signed-transactions-verify",
            holds: t.tx_failures.is_empty(),
            detail: if t.tx_failures.is_empty() {
                format!("{} closes and force closes passed bitcoinconsensus", t.txs_checked)
            } else {
                format!("{} of {} failed bitcoinconsensus: {}", t.tx_failures.len(), t.txs_checked, t.tx_failures.join("; "))
            },
        },
        Invariant {
            name: "funds-lost-zero",
            holds: t.funds_lost_msat == 0,
            detail: format!("{} msat below the workload's ledger on signed commitments and closes", t.funds_lost_msat),
        },
    ];
    let latency_by_event = latency_by_event.into_iter().map(|(k, v)| (k, percentiles(&v))).collect();
    let completed = requests + ln_events;
    let report = Report {
        scenario: s.name.clone(),
        seed: s.seed,
        threshold: s.quorum.threshold,
        cosigners: s.quorum.cosigners,
        requests,
        signed: t.signed,
        refused: t.refused,
        refused_requests: t.refused_requests,
        failed: t.failed,
        signatures: all_r.len(),
        latency_ms: percentiles(&latencies),
        throughput_per_s: if duration_s > 0.0 { completed as f64 / duration_s } else { 0.0 },
        duration_s,
        faults_injected: fault_events.len(),
        fault_events,
        blamed: BTreeMap::new(),
        participation: BTreeMap::new(),
        link_faults: LinkFaultStats::default(),
        invariants,
        machine: Machine::this(),
        timeline,
        events: t.events,
        latency_by_event_ms: latency_by_event,
        funds_lost_msat: t.funds_lost_msat,
        transactions_checked: t.txs_checked,
        node_requests: 0,
        setup_s: 0.0,
        channels: ChannelCounts::default(),
        cosigner_nonce_uses: nonces.uses(),
        peak_rss_kib: crate::report::peak_rss_kib(),
        attacks: Vec::new(),
        catch_up: BTreeMap::new(),
        outage: None,
    };
    (report, t.sigs)
}
