//! The run report (`report.json`), the signature log (`sigs.jsonl`) and the stdout
//! summary. Field meanings are documented in `simnet/README.md`.
//!
//! Must never: compute a figure from anything but the recorded outcomes.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

/// Nearest-rank percentiles of `samples` (any order), in the samples' unit.
pub fn percentiles(samples: &[f64]) -> Percentiles {
    if samples.is_empty() {
        return Percentiles::default();
    }
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let at = |p: f64| s[((p * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1];
    Percentiles { p50: at(0.50), p90: at(0.90), p99: at(0.99), max: s[s.len() - 1] }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FaultEvent {
    /// The event it was applied before (faults scheduled by event count), else none.
    pub at_event: Option<usize>,
    /// Milliseconds since the first event started (differs between runs of one seed).
    pub at_ms: u64,
    pub action: String,
    pub cosigner: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Invariant {
    pub name: &'static str,
    pub holds: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub seed: u64,
    pub threshold: u16,
    pub cosigners: usize,
    pub requests: usize,
    /// Requests answered with verified signatures.
    pub signed: usize,
    /// Refused requests counted once per policy tag any cosigner named.
    pub refused: BTreeMap<String, usize>,
    pub refused_requests: usize,
    /// Requests that ended in an error (no quorum, timeout, ...).
    pub failed: usize,
    pub signatures: usize,
    pub latency_ms: Percentiles,
    pub throughput_per_s: f64,
    pub duration_s: f64,
    pub faults_injected: usize,
    pub fault_events: Vec<FaultEvent>,
    /// cosigner → blame reason → count.
    pub blamed: BTreeMap<String, BTreeMap<String, usize>>,
    /// cosigner → signed requests it contributed a share to.
    pub participation: BTreeMap<String, usize>,
    /// What the fault-injecting socket under the coordinator did.
    pub link_faults: LinkFaultStats,
    pub invariants: Vec<Invariant>,
    pub machine: Machine,
    /// Per-request points for the HTML plots (not in report.json).
    #[serde(skip)]
    pub timeline: Vec<RequestPoint>,
    /// Event kind → outcomes (wallet requests by kind, Lightning events by kind; the
    /// initial channel opens count as `open`).
    pub events: BTreeMap<String, EventCounts>,
    /// Event kind → latency percentiles (ms), as the node sees it.
    pub latency_by_event_ms: BTreeMap<String, Percentiles>,
    /// Our value below the workload's ledger on anything signed, msat (must be 0).
    pub funds_lost_msat: u64,
    /// Closes and force closes run through `bitcoinconsensus`.
    pub transactions_checked: usize,
    /// Requests the node sent to the coordinator during the events (setup excluded).
    pub node_requests: u64,
    /// Seconds spent opening the initial channels (before the events).
    pub setup_s: f64,
    pub channels: ChannelCounts,
    /// Cosigner nonces the signing reports listed (each a share or partial signature made).
    pub cosigner_nonce_uses: usize,
    /// Peak resident memory of the simnet process (cosigners, coordinator, drivers all in
    /// it), KiB; 0 where `/proc` is missing.
    pub peak_rss_kib: u64,
    /// The attack corpus's attempts, when the scenario plays it.
    pub attacks: Vec<crate::attack_corpus::AttackResult>,
    /// Per cosigner: what catching it up did, and what was still waiting at the end.
    pub catch_up: BTreeMap<String, CatchUpReport>,
    /// Throughput and latency before, during and after the first cosigner stop.
    pub outage: Option<OutageReport>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct CatchUpReport {
    pub catch_ups: u64,
    pub replayed: u64,
    pub refused: u64,
    pub dropped: u64,
    pub longest_ms: u64,
    pub pending_at_end: usize,
    pub running_at_end: bool,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct OutageReport {
    pub cosigner: String,
    pub down_from_ms: u64,
    pub down_until_ms: u64,
    /// Requests completed per second, by when they started.
    pub before_per_s: f64,
    pub during_per_s: f64,
    pub after_per_s: f64,
    pub p99_before_ms: f64,
    pub p99_during_ms: f64,
    pub p99_after_ms: f64,
}

/// Throughput and p99 in the three windows the first `stop` and the `start` after it
/// cut the timeline into; `None` without such a pair.
pub fn outage_report(timeline: &[RequestPoint], faults: &[FaultEvent], duration_ms: f64) -> Option<OutageReport> {
    let (stop, start) = faults.iter().filter(|f| f.action == "stop").find_map(|stop| {
        let start =
            faults.iter().find(|f| f.action == "start" && f.cosigner == stop.cosigner && f.at_ms >= stop.at_ms)?;
        Some((stop, start))
    })?;
    let (from, until) = (stop.at_ms as f64, start.at_ms as f64);
    let window = |lo: f64, hi: f64| {
        let mut lat: Vec<f64> =
            timeline.iter().filter(|p| p.started_ms >= lo && p.started_ms < hi).map(|p| p.latency_ms).collect();
        let rate = if hi > lo { lat.len() as f64 / ((hi - lo) / 1000.0) } else { 0.0 };
        lat.sort_by(f64::total_cmp);
        let p99 = lat.get(((lat.len() as f64 * 0.99).ceil() as usize).saturating_sub(1)).copied().unwrap_or(0.0);
        (rate, p99)
    };
    let (before_per_s, p99_before_ms) = window(0.0, from);
    let (during_per_s, p99_during_ms) = window(from, until);
    let (after_per_s, p99_after_ms) = window(until, duration_ms.max(until));
    Some(OutageReport {
        cosigner: stop.cosigner.clone(),
        down_from_ms: stop.at_ms,
        down_until_ms: start.at_ms,
        before_per_s,
        during_per_s,
        after_per_s,
        p99_before_ms,
        p99_during_ms,
        p99_after_ms,
    })
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct EventCounts {
    pub done: usize,
    pub refused: usize,
    pub failed: usize,
    pub skipped: usize,
}

/// Channels by state at the end of the run.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ChannelCounts {
    pub planned: usize,
    pub open: usize,
    pub closed: usize,
    pub force_closed: usize,
    /// An update failed for good (a taproot channel while a cosigner was down, or an
    /// honest update refused); the channel took no more events.
    pub broken: usize,
}

/// `VmHWM` of this process, KiB (Linux), else 0.
pub fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// One completed request, for plots.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestPoint {
    /// When it was sent, ms after the first request.
    pub started_ms: f64,
    pub latency_ms: f64,
    pub outcome: PointOutcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointOutcome {
    Signed,
    Refused,
    Failed,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct LinkFaultStats {
    pub dropped_sent: u64,
    pub dropped_received: u64,
    pub delayed: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub os: &'static str,
}

impl Machine {
    pub fn this() -> Self {
        Self { cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1), os: std::env::consts::OS }
    }
}

/// One line of `sigs.jsonl`: a signature the quorum returned, checkable by anyone with
/// `scheme`'s verifier alone (hex fields).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SigRecord {
    /// `bip340` (x-only key, 64-byte signature: wallet, message key, taproot channel
    /// aggregates and FROST signatures) or `ecdsa` (33-byte key, 64-byte compact
    /// signature: legacy channel signatures).
    pub scheme: String,
    pub pubkey: String,
    /// The 32-byte digest signed (BIP-341/BIP-143 sighash, or the message itself).
    pub msg: String,
    pub sig: String,
}

impl SigRecord {
    pub fn bip340(xonly_key: &[u8], msg: &[u8; 32], sig: &[u8]) -> Self {
        Self { scheme: "bip340".into(), pubkey: hex::encode(xonly_key), msg: hex::encode(msg), sig: hex::encode(sig) }
    }

    pub fn ecdsa(key: &[u8], msg: &[u8; 32], compact_sig: &[u8]) -> Self {
        Self { scheme: "ecdsa".into(), pubkey: hex::encode(key), msg: hex::encode(msg), sig: hex::encode(compact_sig) }
    }

    /// The signature's nonce commitment (`R` of a Schnorr signature, `r` of an ECDSA one:
    /// the first 32 bytes either way) and the message, for the nonce-reuse invariant.
    pub fn r_and_msg(&self) -> Option<([u8; 32], [u8; 32])> {
        let sig = hex::decode(&self.sig).ok()?;
        let msg = hex::decode(&self.msg).ok()?;
        Some((sig.get(..32)?.try_into().ok()?, msg.as_slice().try_into().ok()?))
    }
}

impl Report {
    pub fn invariants_hold(&self) -> bool {
        self.invariants.iter().all(|i| i.holds)
    }

    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ =
            writeln!(s, "scenario {} (seed {}), {}-of-{}", self.scenario, self.seed, self.threshold, self.cosigners);
        let _ = writeln!(
            s,
            "  events     {:>8}   in {:.2} s, {:.0}/s ({} node requests; setup {:.2} s)",
            self.events.values().map(|c| c.done + c.refused + c.failed + c.skipped).sum::<usize>(),
            self.duration_s,
            self.throughput_per_s,
            self.node_requests,
            self.setup_s
        );
        let _ = writeln!(
            s,
            "    {:<20} {:>8} {:>8} {:>8} {:>8} {:>10} {:>10}",
            "kind", "done", "refused", "failed", "skipped", "p50 ms", "p99 ms"
        );
        for (k, c) in &self.events {
            let l = self.latency_by_event_ms.get(k).cloned().unwrap_or_default();
            let _ = writeln!(
                s,
                "    {k:<20} {:>8} {:>8} {:>8} {:>8} {:>10.2} {:>10.2}",
                c.done, c.refused, c.failed, c.skipped, l.p50, l.p99
            );
        }
        if self.channels.planned > 0 {
            let c = &self.channels;
            let _ = writeln!(
                s,
                "  channels   {:>8}   open {}, closed {}, force-closed {}, broken {}",
                c.planned, c.open, c.closed, c.force_closed, c.broken
            );
        }
        let _ = writeln!(s, "  requests   {:>8}   (wallet)", self.requests);
        let _ = writeln!(s, "  signed     {:>8}   ({} signatures)", self.signed, self.signatures);
        let _ = writeln!(s, "  refused    {:>8}", self.refused_requests);
        for (tag, n) in &self.refused {
            let _ = writeln!(s, "    {tag:<40} {n}");
        }
        let _ = writeln!(s, "  failed     {:>8}", self.failed);
        let l = &self.latency_ms;
        let _ = writeln!(s, "  latency ms   p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}", l.p50, l.p90, l.p99, l.max);
        let _ = writeln!(s, "  faults     {:>8}", self.faults_injected);
        let part: Vec<String> = self.participation.iter().map(|(c, n)| format!("{c} {n}")).collect();
        let _ = writeln!(s, "  signed by  {}", part.join(", "));
        let lf = &self.link_faults;
        if *lf != LinkFaultStats::default() {
            let _ = writeln!(
                s,
                "  link faults  dropped {} sent / {} received, delayed {}",
                lf.dropped_sent, lf.dropped_received, lf.delayed
            );
        }
        for (who, reasons) in &self.blamed {
            let _ = writeln!(s, "    blamed {who}: {reasons:?}");
        }
        if self.peak_rss_kib > 0 {
            let _ = writeln!(s, "  peak RSS   {:>8} KiB (whole simnet process)", self.peak_rss_kib);
        }
        for i in &self.invariants {
            let _ = writeln!(s, "  invariant  {:<30} {}  {}", i.name, if i.holds { "ok" } else { "FAILED" }, i.detail);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentiles(&v), Percentiles { p50: 50.0, p90: 90.0, p99: 99.0, max: 100.0 });
        assert_eq!(percentiles(&[3.0]).p99, 3.0);
    }
}
