//! Scenario files (TOML): the quorum, the workload and the fault schedule of one run.
//! Every key is documented in `simnet/README.md`; unknown keys are refused.
//!
//! Must never: accept a scenario whose indices, shares or counts are out of range.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// The quickstart scenario, built in: what `qls-simnet run` runs with no file.
pub const QUICKSTART: &str = include_str!("../scenarios/quickstart.toml");

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("scenario {path}: {source}")]
    Parse { path: String, source: toml::de::Error },
    #[error("scenario {path}: {field}: {reason}")]
    Invalid { path: String, field: &'static str, reason: String },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    pub seed: u64,
    pub quorum: QuorumSection,
    /// The QLS node's channels (needed when the workload has payments).
    #[serde(default)]
    pub network: Option<NetworkSection>,
    pub workload: WorkloadSection,
    #[serde(default)]
    pub faults: Vec<FaultSection>,
    #[serde(default)]
    pub attacks: AttacksSection,
    #[serde(default)]
    pub expect: ExpectSection,
}

/// What a run must show beyond the invariants every run checks.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectSection {
    /// Every cosigner running at the end has replayed everything it missed and none of
    /// its replays was refused (invariant `caught-up-at-end`).
    #[serde(default)]
    pub caught_up: bool,
    /// While the first stopped cosigner is down, events per second at least this share
    /// of the rate before (invariant `outage-throughput`; 0 = not checked).
    #[serde(default)]
    pub outage_throughput_min: f64,
    /// And p99 latency during the outage at most this many times the p99 before.
    #[serde(default)]
    pub outage_p99_max_ratio: f64,
    /// After the workload, this cosigner (1-based) is lost for good and every open taproot
    /// channel is force-closed by the others from the force-close escrow; each spend must
    /// pass Bitcoin Core's interpreter (invariant `taproot-force-close-by-t`).
    #[serde(default)]
    pub taproot_force_close_without: Option<usize>,
}

/// Attacks played after the workload, against the same quorum.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttacksSection {
    /// Play the attack corpus (`attack_corpus`) as a compromised node and coordinator;
    /// invariant `attack-corpus-refused`.
    #[serde(default)]
    pub corpus: bool,
}

/// The QLS node's channels: one counterparty (single keys) per channel.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSection {
    /// Channels open when the run starts.
    pub channels: usize,
    /// Capacity range in satoshis, drawn uniformly per channel.
    #[serde(default = "default_capacity")]
    pub capacity_sat: [u64; 2],
    /// Fraction of channels that are simple taproot channels (the rest: anchor channels).
    #[serde(default)]
    pub taproot_share: f64,
    /// Fraction of channels the QLS node funded (it starts with the capacity; the others
    /// start with nothing on our side).
    #[serde(default = "default_half")]
    pub outbound_share: f64,
}

/// A cosigner that misbehaves in one of the byzantine ways.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MisbehaviourSection {
    /// 1-based cosigner index.
    pub cosigner: usize,
    /// `invalid-shares`, `wrong-nonces`, `stale-state` or `slow`.
    pub mode: String,
    /// `slow`: added delay of each of its replies, ms.
    #[serde(default)]
    pub delay_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuorumSection {
    pub cosigners: usize,
    pub threshold: u16,
    /// `dkg` (default) or `dealer`.
    #[serde(default = "default_keygen")]
    pub keygen: String,
    /// 1-based indices of cosigners that return invalid signature shares.
    #[serde(default)]
    pub byzantine: Vec<usize>,
    /// 1-based indices of compromised cosigners whose policy only warns (signs anything).
    #[serde(default)]
    pub permissive: Vec<usize>,
    #[serde(default = "default_timeout")]
    pub request_timeout_ms: u64,
    /// Every cosigner's PSBT fee cap.
    #[serde(default = "default_fee_cap")]
    pub fee_sat_max: u64,
    /// 1-based indices of the cosigners holding the node's ECDSA seed (legacy channels,
    /// per-commitment secrets).
    #[serde(default = "default_key_holders")]
    pub key_holders: Vec<usize>,
    /// Byzantine cosigners beyond `byzantine`'s invalid shares.
    #[serde(default)]
    pub misbehaving: Vec<MisbehaviourSection>,
    /// Keys of a cosigner's `[policy]` section (see the cosigner's config), for every cosigner.
    #[serde(default)]
    pub policy: toml::Table,
    /// Per-cosigner policy keys, by 1-based index ("2" = { ... }), over `policy`.
    #[serde(default)]
    pub cosigner_policy: std::collections::BTreeMap<String, toml::Table>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSection {
    /// Wallet requests (messages and PSBTs) through the node API.
    #[serde(default)]
    pub requests: usize,
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Fraction of requests that are PSBTs (the rest are 32-byte messages).
    #[serde(default = "default_psbt_share")]
    pub psbt_share: f64,
    /// Fraction of PSBTs that break policy (half unknown output, half fee above cap).
    #[serde(default = "default_violation_share")]
    pub violation_share: f64,
    /// Lightning payments over the `[network]` channels (or `rate_per_s` × `duration_s`).
    #[serde(default)]
    pub payments: usize,
    #[serde(default)]
    pub duration_s: f64,
    /// Events started per second (0: as fast as `concurrency` allows).
    #[serde(default)]
    pub rate_per_s: f64,
    /// `lognormal` (median `payment_sat`, `payment_sigma`), `uniform` (min..=max) or `fixed`.
    #[serde(default = "default_dist")]
    pub payment_dist: String,
    #[serde(default = "default_payment_sat")]
    pub payment_sat: u64,
    #[serde(default = "default_sigma")]
    pub payment_sigma: f64,
    #[serde(default = "default_payment_min")]
    pub payment_min_sat: u64,
    #[serde(default = "default_payment_max")]
    pub payment_max_sat: u64,
    /// Shares of payments the node forwards and receives; the rest it sends.
    #[serde(default = "default_forward_share")]
    pub forward_share: f64,
    #[serde(default = "default_receive_share")]
    pub receive_share: f64,
    /// Share of payments that fail at the last hop (the HTLC is failed back).
    #[serde(default)]
    pub fail_share: f64,
    /// Drain attempts by a compromised node, as a fraction of payments, mixed in.
    #[serde(default)]
    pub drain_share: f64,
    /// Replayed or reordered cosigner requests from a malicious coordinator, as a fraction
    /// of payments, mixed in.
    #[serde(default)]
    pub replay_share: f64,
    /// Channels opened, cooperatively closed and force-closed, spread evenly over the run.
    #[serde(default)]
    pub opens: usize,
    #[serde(default)]
    pub closes: usize,
    #[serde(default)]
    pub force_closes: usize,
}

impl WorkloadSection {
    /// Payments in the run: `payments`, or `rate_per_s` × `duration_s` when set.
    pub fn payment_count(&self) -> usize {
        if self.payments == 0 && self.duration_s > 0.0 && self.rate_per_s > 0.0 {
            (self.duration_s * self.rate_per_s).round() as usize
        } else {
            self.payments
        }
    }

    fn share(&self, f: f64) -> usize {
        (self.payment_count() as f64 * f).round() as usize
    }

    /// Every event of the run: requests, payments, opens, closes, force closes, drain
    /// attempts and replays.
    pub fn events(&self) -> usize {
        self.requests
            + self.payment_count()
            + self.opens
            + self.closes
            + self.force_closes
            + self.share(self.drain_share)
            + self.share(self.replay_share)
    }

    pub fn drains(&self) -> usize {
        self.share(self.drain_share)
    }

    pub fn replays(&self) -> usize {
        self.share(self.replay_share)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FaultSection {
    /// Applied before event number `at_event` (0-based) is started, once the events in
    /// flight have finished (`at_request` is accepted for the same key).
    #[serde(default, alias = "at_request")]
    pub at_event: Option<usize>,
    /// Or applied `at_ms` after the first event started, while events are in flight.
    #[serde(default)]
    pub at_ms: Option<u64>,
    /// `stop`, `start`, `restart` (stop, then start after `down_for` requests),
    /// `partition` (the coordinator's link to the cosigner drops everything) or `impair`
    /// (`loss`, `latency_ms`, `jitter_ms` on that link); the last two last `down_for`
    /// requests, or to the end of the run when `down_for` is 0.
    pub kind: String,
    /// 1-based cosigner index.
    pub cosigner: usize,
    #[serde(default)]
    pub down_for: usize,
    /// With `at_ms`: how long the fault lasts, ms (0 = to the end of the run).
    #[serde(default)]
    pub down_ms: u64,
    /// `impair`: probability in 0..=1 that a datagram is lost, each direction.
    #[serde(default)]
    pub loss: f64,
    /// `impair`: added one-way latency of the coordinator's sends, in ms.
    #[serde(default)]
    pub latency_ms: u64,
    /// `impair`: uniform extra latency 0..=jitter_ms.
    #[serde(default)]
    pub jitter_ms: u64,
}

fn default_capacity() -> [u64; 2] {
    [1_000_000, 5_000_000]
}
fn default_half() -> f64 {
    0.5
}
fn default_key_holders() -> Vec<usize> {
    vec![1]
}
fn default_dist() -> String {
    "lognormal".into()
}
fn default_payment_sat() -> u64 {
    20_000
}
fn default_sigma() -> f64 {
    1.0
}
fn default_payment_min() -> u64 {
    1_000
}
fn default_payment_max() -> u64 {
    200_000
}
fn default_forward_share() -> f64 {
    0.5
}
fn default_receive_share() -> f64 {
    0.25
}
fn default_keygen() -> String {
    "dkg".into()
}
fn default_timeout() -> u64 {
    2_000
}
fn default_fee_cap() -> u64 {
    50_000
}
fn default_concurrency() -> usize {
    4
}
fn default_psbt_share() -> f64 {
    0.3
}
fn default_violation_share() -> f64 {
    0.2
}

impl Scenario {
    pub fn parse(text: &str, path: &str) -> Result<Self, ScenarioError> {
        let s: Scenario = toml::from_str(text).map_err(|source| ScenarioError::Parse { path: path.into(), source })?;
        s.check(path)?;
        Ok(s)
    }

    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read { path: p.clone(), source })?;
        Self::parse(&text, &p)
    }

    fn check(&self, path: &str) -> Result<(), ScenarioError> {
        let bad = |field, reason: String| Err(ScenarioError::Invalid { path: path.into(), field, reason });
        let q = &self.quorum;
        if !(2..=qls_protocol::limits::MAX_COSIGNERS).contains(&q.cosigners) {
            return bad("quorum.cosigners", format!("{} is not in 2..=32", q.cosigners));
        }
        if q.threshold < 2 || q.threshold as usize > q.cosigners {
            return bad("quorum.threshold", format!("{} is not in 2..={}", q.threshold, q.cosigners));
        }
        if q.keygen != "dkg" && q.keygen != "dealer" {
            return bad("quorum.keygen", format!("{:?} is neither \"dkg\" nor \"dealer\"", q.keygen));
        }
        if let Some(b) = q.byzantine.iter().find(|b| **b == 0 || **b > q.cosigners) {
            return bad("quorum.byzantine", format!("cosigner {b} does not exist"));
        }
        if let Some(b) = q.permissive.iter().find(|b| **b == 0 || **b > q.cosigners) {
            return bad("quorum.permissive", format!("cosigner {b} does not exist"));
        }
        if !(10..=600_000).contains(&q.request_timeout_ms) {
            return bad("quorum.request_timeout_ms", format!("{} is not in 10..=600000", q.request_timeout_ms));
        }
        if let Some(k) = q.key_holders.iter().find(|k| **k == 0 || **k > q.cosigners) {
            return bad("quorum.key_holders", format!("cosigner {k} does not exist"));
        }
        if q.key_holders.is_empty() {
            return bad("quorum.key_holders", "at least one key holder".into());
        }
        for m in &q.misbehaving {
            if m.cosigner == 0 || m.cosigner > q.cosigners {
                return bad("quorum.misbehaving.cosigner", format!("cosigner {} does not exist", m.cosigner));
            }
            if !["invalid-shares", "wrong-nonces", "stale-state", "slow"].contains(&m.mode.as_str()) {
                return bad(
                    "quorum.misbehaving.mode",
                    format!("{:?} is not invalid-shares, wrong-nonces, stale-state or slow", m.mode),
                );
            }
            if m.delay_ms > 60_000 {
                return bad("quorum.misbehaving.delay_ms", format!("{} is above 60000", m.delay_ms));
            }
        }
        for i in 1..=q.cosigners {
            crate::policy::cosigner_policy(q, i).map_err(|e| ScenarioError::Invalid {
                path: path.into(),
                field: "quorum.policy",
                reason: e,
            })?;
        }
        if let Some(k) =
            q.cosigner_policy.keys().find(|k| k.parse::<usize>().map_or(true, |i| i == 0 || i > q.cosigners))
        {
            return bad("quorum.cosigner_policy", format!("{k:?} is not a cosigner index"));
        }
        let w = &self.workload;
        if w.requests > 1_000_000 {
            return bad("workload.requests", format!("{} is not in 0..=1000000", w.requests));
        }
        if w.payment_count() > 10_000_000 {
            return bad("workload.payments", format!("{} is above 10000000", w.payment_count()));
        }
        if w.events() == 0 {
            return bad("workload", "no requests and no payments".into());
        }
        let lightning = w.payment_count() + w.opens + w.closes + w.force_closes > 0;
        match &self.network {
            None if lightning => return bad("network", "payments, opens and closes need a [network]".into()),
            Some(n) => {
                if !(1..=1_000_000).contains(&n.channels) {
                    return bad("network.channels", format!("{} is not in 1..=1000000", n.channels));
                }
                let [lo, hi] = n.capacity_sat;
                if lo < 100_000 || hi < lo || hi > 21_000_000 * 100_000_000 {
                    return bad("network.capacity_sat", format!("[{lo}, {hi}] is not a range from 100000 sat up"));
                }
                for (field, v) in
                    [("network.taproot_share", n.taproot_share), ("network.outbound_share", n.outbound_share)]
                {
                    if !(0.0..=1.0).contains(&v) {
                        return bad(field, format!("{v} is not in 0..=1"));
                    }
                }
            }
            None => {}
        }
        if !["lognormal", "uniform", "fixed"].contains(&w.payment_dist.as_str()) {
            return bad("workload.payment_dist", format!("{:?} is not lognormal, uniform or fixed", w.payment_dist));
        }
        if !(0.0..=1.0).contains(&self.expect.outage_throughput_min) {
            return bad(
                "expect.outage_throughput_min",
                format!("{} is not a share in 0..=1", self.expect.outage_throughput_min),
            );
        }
        if !(0.0..=1_000.0).contains(&self.expect.outage_p99_max_ratio) {
            return bad(
                "expect.outage_p99_max_ratio",
                format!("{} is not a ratio in 0..=1000", self.expect.outage_p99_max_ratio),
            );
        }
        if w.payment_min_sat < 1_000 || w.payment_max_sat < w.payment_min_sat {
            return bad(
                "workload.payment_min_sat",
                format!("[{}, {}] is not a range from 1000 sat up", w.payment_min_sat, w.payment_max_sat),
            );
        }
        if !(0.0..=5.0).contains(&w.payment_sigma) {
            return bad("workload.payment_sigma", format!("{} is not in 0..=5", w.payment_sigma));
        }
        if !(0.0..=1e6).contains(&w.rate_per_s) || !(0.0..=1e6).contains(&w.duration_s) {
            return bad("workload.rate_per_s", "rate and duration must be in 0..=1000000".into());
        }
        if w.forward_share + w.receive_share > 1.0 {
            return bad("workload.forward_share", "forward_share + receive_share is above 1".into());
        }
        if !(1..=256).contains(&w.concurrency) {
            return bad("workload.concurrency", format!("{} is not in 1..=256", w.concurrency));
        }
        for (field, v) in [
            ("workload.psbt_share", w.psbt_share),
            ("workload.violation_share", w.violation_share),
            ("workload.forward_share", w.forward_share),
            ("workload.receive_share", w.receive_share),
            ("workload.fail_share", w.fail_share),
            ("workload.drain_share", w.drain_share),
            ("workload.replay_share", w.replay_share),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return bad(field, format!("{v} is not in 0..=1"));
            }
        }
        for f in &self.faults {
            if !["stop", "start", "restart", "partition", "impair"].contains(&f.kind.as_str()) {
                return bad("faults.kind", format!("{:?} is not stop, start, restart, partition or impair", f.kind));
            }
            if !(0.0..=1.0).contains(&f.loss) {
                return bad("faults.loss", format!("{} is not in 0..=1", f.loss));
            }
            if f.latency_ms > 10_000 || f.jitter_ms > 10_000 {
                return bad("faults.latency_ms", "latency and jitter are at most 10000 ms".into());
            }
            if f.cosigner == 0 || f.cosigner > q.cosigners {
                return bad("faults.cosigner", format!("cosigner {} does not exist", f.cosigner));
            }
            match (f.at_event, f.at_ms) {
                (Some(e), None) if e >= w.events() => {
                    return bad("faults.at_event", format!("{e} is past the last event ({})", w.events()));
                }
                (Some(_), None) | (None, Some(_)) => {}
                _ => return bad("faults.at_event", "give exactly one of at_event (or at_request) and at_ms".into()),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_library_scenario_parses() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let s = Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
            names.push(s.name);
        }
        names.sort();
        let want = [
            "byzantine-cosigner",
            "coordinator-replay",
            "cosigner-outage",
            "drain-attack",
            "partition-heal",
            "quickstart",
            "scale",
            "taproot-mix",
        ];
        assert_eq!(names, want);
    }

    #[test]
    fn quickstart_parses_and_bad_values_are_named() {
        let q = Scenario::parse(QUICKSTART, "quickstart").unwrap();
        assert_eq!((q.quorum.cosigners, q.quorum.threshold), (3, 2));
        let bad = QUICKSTART.replace("threshold = 2", "threshold = 4");
        let e = Scenario::parse(&bad, "x").unwrap_err().to_string();
        assert!(e.contains("quorum.threshold"), "{e}");
        let bad = format!("{QUICKSTART}\n[[faults]]\nat_request = 1\nkind = \"explode\"\ncosigner = 1\n");
        assert!(Scenario::parse(&bad, "x").unwrap_err().to_string().contains("faults.kind"));
    }
}
