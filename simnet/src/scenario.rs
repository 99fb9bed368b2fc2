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
    pub workload: WorkloadSection,
    #[serde(default)]
    pub faults: Vec<FaultSection>,
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
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSection {
    pub requests: usize,
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Fraction of requests that are PSBTs (the rest are 32-byte messages).
    #[serde(default = "default_psbt_share")]
    pub psbt_share: f64,
    /// Fraction of PSBTs that break policy (half unknown output, half fee above cap).
    #[serde(default = "default_violation_share")]
    pub violation_share: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FaultSection {
    /// Applied before request number `at_request` (0-based) is sent.
    pub at_request: usize,
    /// `stop`, `start`, `restart` (stop, then start after `down_for` requests),
    /// `partition` (the coordinator's link to the cosigner drops everything) or `impair`
    /// (`loss`, `latency_ms`, `jitter_ms` on that link); the last two last `down_for`
    /// requests, or to the end of the run when `down_for` is 0.
    pub kind: String,
    /// 1-based cosigner index.
    pub cosigner: usize,
    #[serde(default)]
    pub down_for: usize,
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
        let w = &self.workload;
        if !(1..=1_000_000).contains(&w.requests) {
            return bad("workload.requests", format!("{} is not in 1..=1000000", w.requests));
        }
        if !(1..=256).contains(&w.concurrency) {
            return bad("workload.concurrency", format!("{} is not in 1..=256", w.concurrency));
        }
        for (field, v) in [("workload.psbt_share", w.psbt_share), ("workload.violation_share", w.violation_share)] {
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
            if f.at_request >= w.requests {
                return bad("faults.at_request", format!("{} is past the last request", f.at_request));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
