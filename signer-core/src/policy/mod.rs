//! The policy engine: the catalog of policy tags (each declared once, with its meaning,
//! default action and the test that trips it), per-cosigner actions (`error` refuses,
//! `warn` signs and reports), and the verdict over a request's violations.
//!
//! Must never: sign on a violation whose action is `error`, or let a tag exist without a
//! declaration here (the docs table is generated from this catalog).

pub mod onchain;

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

/// What a cosigner does when a rule is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyAction {
    /// Refuse the request.
    Error,
    /// Sign, and report the violation with the shares.
    Warn,
}

impl PolicyAction {
    pub fn name(self) -> &'static str {
        match self {
            PolicyAction::Error => "error",
            PolicyAction::Warn => "warn",
        }
    }
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "error" => Some(PolicyAction::Error),
            "warn" => Some(PolicyAction::Warn),
            _ => None,
        }
    }
}

macro_rules! policy_tags {
    ($( $variant:ident => $name:literal, $default:ident, $test:literal, $doc:literal; )*) => {
        /// Every policy rule QLS enforces, by stable tag.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum PolicyTag { $( #[doc = $doc] $variant, )* }

        impl PolicyTag {
            pub const ALL: &'static [PolicyTag] = &[$(PolicyTag::$variant),*];
            /// The stable tag, as it appears in configs, refusals and reports.
            pub fn name(self) -> &'static str { match self { $(PolicyTag::$variant => $name,)* } }
            /// One line: what the rule requires.
            pub fn doc(self) -> &'static str { match self { $(PolicyTag::$variant => $doc,)* } }
            pub fn default_action(self) -> PolicyAction { match self { $(PolicyTag::$variant => PolicyAction::$default,)* } }
            /// The test that trips this rule.
            pub fn test_name(self) -> &'static str { match self { $(PolicyTag::$variant => $test,)* } }
            pub fn from_name(s: &str) -> Option<Self> { Self::ALL.iter().copied().find(|t| t.name() == s) }
        }
    };
}

policy_tags! {
    OnchainNoUnknownOutputs => "policy-onchain-no-unknown-outputs", Error,
        "policy::onchain::tests::unknown_output_refused",
        "Every output pays the group's own wallet or an allowlisted script.";
    OnchainFeeRange => "policy-onchain-fee-range", Error,
        "policy::onchain::tests::fee_above_cap_refused",
        "The fee (inputs minus outputs) is non-negative and at most the configured cap.";
}

/// A broken rule and the facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub tag: PolicyTag,
    pub detail: String,
}

impl From<&Violation> for qls_protocol::Violation {
    fn from(v: &Violation) -> Self {
        qls_protocol::Violation { tag: v.tag.name().into(), detail: v.detail.clone() }
    }
}

/// On-chain rules' parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnchainPolicy {
    /// Scripts (besides the group's own wallet) that outputs may pay.
    pub allowlisted_scripts: Vec<bitcoin::ScriptBuf>,
    /// Largest fee, in satoshis, a PSBT may pay.
    pub fee_sat_max: u64,
}

impl Default for OnchainPolicy {
    fn default() -> Self {
        Self { allowlisted_scripts: Vec::new(), fee_sat_max: 50_000 }
    }
}

/// One cosigner's policy: actions per tag (defaults where unset) and rule parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyConfig {
    pub actions: BTreeMap<PolicyTag, PolicyAction>,
    pub onchain: OnchainPolicy,
}

impl PolicyConfig {
    pub fn action(&self, tag: PolicyTag) -> PolicyAction {
        self.actions.get(&tag).copied().unwrap_or_else(|| tag.default_action())
    }

    /// A policy that only warns: what a compromised or careless cosigner would run.
    pub fn permissive() -> Self {
        Self { actions: PolicyTag::ALL.iter().map(|t| (*t, PolicyAction::Warn)).collect(), ..Self::default() }
    }
}

/// The outcome of the policy engine over one request's violations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    pub refused: Vec<Violation>,
    pub warned: Vec<Violation>,
}

impl Verdict {
    pub fn approves(&self) -> bool {
        self.refused.is_empty()
    }
}

pub fn judge(violations: Vec<Violation>, config: &PolicyConfig) -> Verdict {
    let (refused, warned) = violations.into_iter().partition(|v| config.action(v.tag) == PolicyAction::Error);
    Verdict { refused, warned }
}

/// The docs table of every tag (Markdown), generated from the catalog.
pub fn catalog_markdown() -> String {
    let mut out = String::from("| tag | meaning | default | test that trips it |\n|---|---|---|---|\n");
    for t in PolicyTag::ALL {
        let _ = writeln!(out, "| `{}` | {} | {} | `{}` |", t.name(), t.doc(), t.default_action().name(), t.test_name());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_names_are_unique_and_parse_back() {
        for t in PolicyTag::ALL {
            assert_eq!(PolicyTag::from_name(t.name()), Some(*t));
            assert!(t.name().starts_with("policy-"));
        }
        assert_eq!(PolicyTag::from_name("policy-nonexistent"), None);
    }

    #[test]
    fn warn_action_moves_violation_out_of_refusals() {
        let v = Violation { tag: PolicyTag::OnchainFeeRange, detail: "x".into() };
        assert!(!judge(alloc::vec![v.clone()], &PolicyConfig::default()).approves());
        let verdict = judge(alloc::vec![v.clone()], &PolicyConfig::permissive());
        assert!(verdict.approves());
        assert_eq!(verdict.warned, alloc::vec![v]);
    }

    #[test]
    fn docs_table_is_generated_from_catalog() {
        let table = catalog_markdown();
        for t in PolicyTag::ALL {
            assert!(table.contains(t.name()) && table.contains(t.test_name()));
        }
    }
}
