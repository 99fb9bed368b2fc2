//! Claims on the counterparty's commitment (legacy channels): the rules for signing, with
//! our HTLC key, a spend of an HTLC output of the counterparty's commitment on chain — our
//! offered HTLC after its expiry, their offered HTLC with its preimage.
//!
//! The commitment comes from the cosigner's own facts: the funding spend an SPV proof
//! showed ([`super::funding_spend`]) must rebuild, from the stored facts of a counterparty
//! commitment we signed (latest or previous unrevoked), to the same txid; the HTLC must be
//! one of its outputs, at its value.
//!
//! Must never: take the commitment, its per-commitment point or an HTLC from a request
//! without finding it in the stored state, or let a claim pay anything but our wallet or an
//! allowlisted script.

use alloc::format;
use alloc::vec::Vec;

use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{All, Secp256k1};
use bitcoin::Transaction;
use lightning::ln::chan_utils::{ChannelTransactionParameters, HTLCOutputInCommitment};
use qls_protocol::{CommitmentInfo, HtlcInfo};

use super::funding_spend::total_input_value;
use super::parse::{self, Broadcaster, ChannelError};
use super::state::ChannelState;
use crate::policy::{PolicyTag, Violation};
use crate::sweep_format::sweep_format_violations;

/// The counterparty commitment on chain, as we signed it, and the HTLC output `htlc` of
/// it that `tx`'s input `input` spends; `Err` with the reason it is not one.
pub fn claimed_htlc(
    state: &ChannelState,
    params: &ChannelTransactionParameters,
    tx: &Transaction,
    input: usize,
    htlc: &HtlcInfo,
    secp: &Secp256k1<All>,
) -> Result<Result<(CommitmentInfo, HTLCOutputInCommitment), alloc::string::String>, ChannelError> {
    let Some(spend) = state.funding_spend.as_ref() else {
        return Ok(Err("no spend of the funding output is proven".into()));
    };
    let Some(n) = spend.commitment_number else {
        return Ok(Err("the proven funding spend is not a commitment transaction".into()));
    };
    let cp = &state.counterparty;
    let Some(info) =
        [cp.latest.as_ref(), cp.previous.as_ref()].into_iter().flatten().find(|c| c.commitment_number == n)
    else {
        return Ok(Err(format!("counterparty commitment {n} is not one we signed and hold")));
    };
    let built = parse::commitment(params, info, Broadcaster::Counterparty, secp)?;
    if built.trust().txid().to_byte_array() != spend.txid {
        return Ok(Err(format!("the transaction on chain is not counterparty commitment {n} as we signed it")));
    }
    let Some(spent) = tx.input.get(input).map(|i| i.previous_output) else {
        return Ok(Err(format!("no input {input}")));
    };
    let found = built.nondust_htlcs().iter().find(|h| {
        spent.txid.to_byte_array() == spend.txid
            && h.transaction_output_index == Some(spent.vout)
            && h.offered == htlc.offered
            && h.amount_msat == htlc.amount_msat
            && h.cltv_expiry == htlc.cltv_expiry
            && h.payment_hash.0 == htlc.payment_hash
    });
    match found {
        Some(h) => Ok(Ok((info.clone(), h.clone()))),
        None => Ok(Err(format!("input {input} does not spend that HTLC output of counterparty commitment {n}"))),
    }
}

/// The rules of a claim (`policy-counterparty-claim-source`, the timeout's locktime and
/// format) and the total value of `tx`'s inputs where known.
#[allow(clippy::too_many_arguments)]
pub(crate) fn judge_claim(
    violations: &mut Vec<Violation>,
    state: &ChannelState,
    params: &ChannelTransactionParameters,
    tx: &Transaction,
    input: usize,
    amount_sat: u64,
    htlc: &HtlcInfo,
    secp: &Secp256k1<All>,
) -> Result<Option<u64>, ChannelError> {
    let flag = |violations: &mut Vec<Violation>, detail| {
        violations.push(Violation { tag: PolicyTag::CounterpartyClaimSource, detail })
    };
    let (_, found) = match claimed_htlc(state, params, tx, input, htlc, secp)? {
        Ok(found) => found,
        Err(reason) => {
            flag(violations, reason);
            return Ok(None);
        }
    };
    if found.amount_msat / 1000 != amount_sat {
        flag(violations, format!("the HTLC output holds {} sat, not {amount_sat}", found.amount_msat / 1000));
    }
    // Ours (offered by us: "received" on their commitment) only after its expiry.
    let locked_until = (!found.offered).then_some(found.cltv_expiry);
    violations.extend(sweep_format_violations(tx, locked_until));
    let Some(spend) = state.funding_spend.as_ref() else { return Ok(None) };
    Ok(total_input_value(violations, spend, tx, input, amount_sat))
}
