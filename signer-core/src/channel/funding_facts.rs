//! What a funding proof changes in a channel of either flavor: the height it was proven
//! at, and which incoming HTLCs cover forwards. One rule for legacy and taproot channels:
//! the incoming HTLCs on our latest commitment cover only while the funding is proven and
//! not spent (`policy-funding-proof`, `policy-routing-unbalanced`).
//!
//! Must never: let an incoming HTLC cover before its channel's funding is proven at depth,
//! or after a proven spend of it; or enter or withdraw an HTLC twice.

use qls_protocol::{FundingProof, HtlcInfo};

use super::payments::PaymentIndex;
use crate::chain::ChainTip;
use crate::funding_proof::{judge, judge_spend, ExpectedFunding};
use crate::policy::Violation;

/// The funding heights a channel keeps (fields of either flavor's state).
pub struct FundingHeights<'a> {
    pub confirmed_at: &'a mut Option<u32>,
    pub spent_at: &'a mut Option<u32>,
}

/// `FundingConfirmed`: the proof is judged ([`judge`]); once proven, and not spent, the
/// incoming HTLCs on our latest commitment (`incoming`) start to cover. Returns whether
/// this proof proved it.
#[allow(clippy::too_many_arguments)]
pub fn confirm<'h>(
    violations: &mut alloc::vec::Vec<Violation>,
    heights: FundingHeights<'_>,
    chain: Option<&ChainTip>,
    proof: &FundingProof,
    expected: &ExpectedFunding<'_>,
    min_depth: u32,
    incoming: impl IntoIterator<Item = &'h HtlcInfo>,
    payments: &mut PaymentIndex,
) -> bool {
    let unproven = heights.confirmed_at.is_none();
    judge(violations, heights.confirmed_at, chain, proof, expected, min_depth);
    let newly = unproven && heights.confirmed_at.is_some();
    if newly && heights.spent_at.is_none() {
        for h in incoming {
            payments.receive(violations, h);
        }
    }
    newly
}

/// `FundingSpent`: the proof is judged ([`judge_spend`]); once proven spent, the incoming
/// HTLCs that covered (the funding was proven) are withdrawn. Returns whether this proof
/// proved the spend.
pub fn spend<'h>(
    violations: &mut alloc::vec::Vec<Violation>,
    heights: FundingHeights<'_>,
    chain: Option<&ChainTip>,
    proof: &FundingProof,
    outpoint: &bitcoin::OutPoint,
    incoming: impl IntoIterator<Item = &'h HtlcInfo>,
    payments: &mut PaymentIndex,
) -> bool {
    let newly = judge_spend(violations, heights.spent_at, chain, proof, outpoint);
    if newly && heights.confirmed_at.is_some() {
        payments.withdraw(incoming);
    }
    newly
}
