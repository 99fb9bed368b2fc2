//! Each simulated cosigner's policy: the cosigner's own `[policy]` defaults, with the test
//! payment approver, then the scenario's `[quorum.policy]` keys, then the cosigner's own
//! `[quorum.cosigner_policy."i"]` keys, checked by the cosigner's config code; `permissive`
//! cosigners only warn.
//!
//! Must never: accept a key the cosigner's config would refuse.

use std::path::Path;

use qls_cosigner::config::PolicyFile;
use qls_signer_core::policy::{PolicyAction, PolicyConfig, PolicyTag};

use crate::scenario::QuorumSection;

/// Merges `over` into `base`, table by table.
fn merge(base: &mut toml::Table, over: &toml::Table) {
    for (k, v) in over {
        match (base.get_mut(k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

/// The policy of cosigner `i` (1-based) of `q`.
pub fn cosigner_policy(q: &QuorumSection, i: usize) -> Result<PolicyConfig, String> {
    let approver = crate::harness::test_policy().channel.payment_approvers;
    let mut file = PolicyFile { fee_sat_max: q.fee_sat_max, ..PolicyFile::default() };
    file.channel.payment_approvers = approver;
    let mut table = toml::Table::try_from(&file).map_err(|e| e.to_string())?;
    merge(&mut table, &q.policy);
    if let Some(own) = q.cosigner_policy.get(&i.to_string()) {
        merge(&mut table, own);
    }
    let file: PolicyFile = table.try_into().map_err(|e: toml::de::Error| format!("cosigner {i}: {e}"))?;
    let mut policy = file.check(Path::new(&format!("cosigner {i}"))).map_err(|e| e.to_string())?;
    if q.permissive.contains(&i) {
        policy.actions = PolicyTag::ALL.iter().map(|t| (*t, PolicyAction::Warn)).collect();
    }
    Ok(policy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{Scenario, QUICKSTART};

    #[test]
    fn overrides_apply_per_cosigner_and_bad_keys_are_named() {
        let text = QUICKSTART.replace(
            "[workload]",
            "[quorum.policy.channel]\nmax_htlcs = 7\n[quorum.cosigner_policy.2.channel]\nmax_htlcs = 9\n\n[workload]",
        );
        let s = Scenario::parse(&text, "x").unwrap();
        assert_eq!(cosigner_policy(&s.quorum, 1).unwrap().channel.max_htlcs, 7);
        assert_eq!(cosigner_policy(&s.quorum, 2).unwrap().channel.max_htlcs, 9);
        assert_eq!(cosigner_policy(&s.quorum, 1).unwrap().onchain.fee_sat_max, 50_000);
        let bad = QUICKSTART.replace("[workload]", "[quorum.policy.channel]\nmax_htlcz = 7\n\n[workload]");
        let e = Scenario::parse(&bad, "x").unwrap_err().to_string();
        assert!(e.contains("max_htlcz"), "{e}");
        let bad = QUICKSTART.replace("[workload]", "[quorum.policy.actions]\n\"policy-nope\" = \"warn\"\n\n[workload]");
        assert!(Scenario::parse(&bad, "x").unwrap_err().to_string().contains("policy-nope"));
    }
}
