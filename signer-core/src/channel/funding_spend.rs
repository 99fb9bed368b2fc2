//! What a proven spend of the funding output is: its txid, its outputs' values and, when
//! it has a commitment transaction's shape, which commitment (decoded from its obscured
//! commitment number). The facts justice and claims on the counterparty's commitment stand
//! on, never taken from a request.
//!
//! Must never: decode a commitment number from anything but a transaction an SPV proof
//! showed spending the funding output.

use alloc::format;
use alloc::vec::Vec;

use bitcoin::hashes::Hash;
use bitcoin::Transaction;
use lightning::ln::chan_utils::{get_commitment_transaction_number_obscure_factor, ChannelTransactionParameters};

use super::state::{FundingSpend, INITIAL_COMMITMENT_NUMBER};
use crate::policy::{PolicyTag, Violation};

/// BOLT 3: a commitment transaction's locktime starts with 0x20, its input's sequence
/// with 0x80; the lower 24 bits of each carry the obscured commitment number.
const LOCKTIME_MARKER: u32 = 0x20;
const SEQUENCE_MARKER: u32 = 0x80;

/// What a proven spend of the funding output is. `params` are the channel's transaction
/// parameters (both sides' payment basepoints give the obscuring factor).
pub fn funding_spend(params: &ChannelTransactionParameters, tx: &Transaction) -> FundingSpend {
    let commitment_number = commitment_number(params, tx);
    FundingSpend {
        txid: tx.compute_txid().to_byte_array(),
        output_values: tx.output.iter().map(|o| o.value.to_sat()).collect(),
        commitment_number,
    }
}

fn commitment_number(params: &ChannelTransactionParameters, tx: &Transaction) -> Option<u64> {
    let locktime = tx.lock_time.to_consensus_u32();
    let [input] = tx.input.as_slice() else { return None };
    let sequence = input.sequence.0;
    if locktime >> 24 != LOCKTIME_MARKER || sequence >> 24 != SEQUENCE_MARKER {
        return None;
    }
    let obscured = (u64::from(sequence & 0xff_ffff) << 24) | u64::from(locktime & 0xff_ffff);
    let counterparty = params.counterparty_parameters.as_ref()?;
    // The factor is the same for both sides' commitments: SHA-256(opener's payment
    // basepoint ‖ accepter's), as LDK computes it for the holder's.
    let factor = get_commitment_transaction_number_obscure_factor(
        &params.holder_pubkeys.payment_point,
        &counterparty.pubkeys.payment_point,
        params.is_outbound_from_holder,
    );
    INITIAL_COMMITMENT_NUMBER.checked_sub(obscured ^ factor)
}

/// The value of every input of `tx`: input `input` spends `amount_sat` (its signature
/// commits to it), inputs spending the proven transaction spend its outputs' values.
/// `None` when another input's value is unknown (flagged `policy-sweep-fee-range`: the fee
/// cannot be judged).
pub(crate) fn total_input_value(
    violations: &mut Vec<Violation>,
    spend: &FundingSpend,
    tx: &Transaction,
    input: usize,
    amount_sat: u64,
) -> Option<u64> {
    let mut total = 0u64;
    for k in 0..tx.input.len() {
        let value = if k == input { Some(amount_sat) } else { output_value(spend, tx, k).flatten() };
        match value {
            Some(v) => total = total.saturating_add(v),
            None => {
                violations.push(Violation {
                    tag: PolicyTag::SweepFeeRange,
                    detail: format!("input {k}'s value is unknown to this cosigner: the fee cannot be judged"),
                });
                return None;
            }
        }
    }
    Some(total)
}

/// For input `k` of `tx`: `None` if it does not spend the proven transaction, else the
/// value of the output it spends (`None` inside when there is no such output).
pub(crate) fn output_value(spend: &FundingSpend, tx: &Transaction, k: usize) -> Option<Option<u64>> {
    let prev = tx.input.get(k)?.previous_output;
    (prev.txid.to_byte_array() == spend.txid).then(|| spend.output_values.get(prev.vout as usize).copied())
}
