//! Justice for legacy channels: the rules for signing, through our revocation key, an
//! output of a counterparty commitment the counterparty revoked.
//!
//! The commitment comes from the cosigner's own facts: the funding spend an SPV proof
//! showed ([`super::funding_spend`]) and the counterparty's per-commitment secrets in its
//! store. A revocation key exists only for a revoked commitment, so a signature made with
//! it unlocks nothing else; what remains to judge is where the money goes and what it pays
//! in fees.
//!
//! Must never: take the commitment number or its secret from a request, or let a justice
//! transaction pay anything but our wallet or an allowlisted script.

use alloc::format;
use alloc::vec::Vec;

use bitcoin::Transaction;

use super::funding_spend::{output_value, total_input_value};
use super::parse::ChannelError;
use super::state::ChannelState;
use crate::policy::{PolicyTag, Violation};

/// The per-commitment secret of counterparty commitment `n` (LDK numbering), if the
/// counterparty revoked it.
pub fn revoked_secret(state: &ChannelState, n: u64) -> Result<Option<[u8; 32]>, ChannelError> {
    crate::revocation_secrets::revealed_secret(&state.counterparty.secrets, n)
        .map_err(|_| ChannelError::CorruptState("secret store"))
}

/// The source rules of a justice input (`policy-justice-revoked`) and the total value of
/// `tx`'s inputs where known (see [`total_input_value`]).
pub(crate) fn judge_source(
    violations: &mut Vec<Violation>,
    state: &ChannelState,
    tx: &Transaction,
    input: usize,
    amount_sat: u64,
    htlc: bool,
) -> Result<Option<u64>, ChannelError> {
    let mut flag = |detail| violations.push(Violation { tag: PolicyTag::JusticeRevoked, detail });
    let Some(spend) = state.funding_spend.as_ref() else {
        flag("no spend of the funding output is proven: no commitment to punish".into());
        return Ok(None);
    };
    let Some(n) = spend.commitment_number else {
        flag("the proven funding spend is not a commitment transaction".into());
        return Ok(None);
    };
    if revoked_secret(state, n)?.is_none() {
        flag(format!("counterparty commitment {n} is not revoked"));
        return Ok(None);
    }
    match output_value(spend, tx, input) {
        Some(Some(value)) if value != amount_sat => {
            flag(format!("input {input} spends {value} sat of the revoked commitment, not {amount_sat}"))
        }
        Some(None) => flag(format!("input {input} spends no output of the revoked commitment")),
        None if htlc => flag(format!("input {input} claims an HTLC output but does not spend the revoked commitment")),
        _ => {}
    }
    Ok(total_input_value(violations, spend, tx, input, amount_sat))
}
