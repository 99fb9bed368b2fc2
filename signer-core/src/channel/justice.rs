//! Justice for legacy channels: which commitment a proven funding spend is, and the rules
//! for signing, through our revocation key, an output of a counterparty commitment the
//! counterparty revoked.
//!
//! The commitment comes from the cosigner's own facts: the funding spend an SPV proof
//! showed ([`funding_spend`], decoded from its obscured commitment number) and the
//! counterparty's per-commitment secrets in its store. A revocation key exists only for a
//! revoked commitment, so a signature made with it unlocks nothing else; what remains to
//! judge is where the money goes and what it pays in fees.
//!
//! Must never: take the commitment number or its secret from a request, or let a justice
//! transaction pay anything but our wallet or an allowlisted script.

use alloc::format;
use alloc::vec::Vec;

use bitcoin::hashes::Hash;
use bitcoin::Transaction;
use lightning::ln::chan_utils::{
    get_commitment_transaction_number_obscure_factor, ChannelTransactionParameters, CounterpartyCommitmentSecrets,
};
use lightning::util::ser::Readable;

use super::parse::ChannelError;
use super::state::{ChannelState, FundingSpend, INITIAL_COMMITMENT_NUMBER};
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

/// The per-commitment secret of counterparty commitment `n` (LDK numbering), if the
/// counterparty revoked it.
pub fn revoked_secret(state: &ChannelState, n: u64) -> Result<Option<[u8; 32]>, ChannelError> {
    let secrets: CounterpartyCommitmentSecrets =
        Readable::read(&mut &state.counterparty.secrets[..]).map_err(|_| ChannelError::CorruptState("secret store"))?;
    Ok(secrets.get_secret(n))
}

/// The source rules of a justice input (`policy-justice-revoked`) and the value of every
/// input of `tx`, where known: input `input` spends `amount_sat`; inputs spending the proven
/// commitment, its outputs' values. Returns the total input value, or `None` when some
/// input's value is unknown (flagged `policy-sweep-fee-range`: the fee cannot be judged).
pub(crate) fn judge_source(
    violations: &mut Vec<Violation>,
    state: &ChannelState,
    tx: &Transaction,
    input: usize,
    amount_sat: u64,
    htlc: bool,
) -> Result<Option<u64>, ChannelError> {
    let mut flag = |tag, detail| violations.push(Violation { tag, detail });
    let Some(spend) = state.funding_spend.as_ref() else {
        flag(PolicyTag::JusticeRevoked, "no spend of the funding output is proven: no commitment to punish".into());
        return Ok(None);
    };
    let Some(n) = spend.commitment_number else {
        flag(PolicyTag::JusticeRevoked, "the proven funding spend is not a commitment transaction".into());
        return Ok(None);
    };
    if revoked_secret(state, n)?.is_none() {
        flag(PolicyTag::JusticeRevoked, format!("counterparty commitment {n} is not revoked"));
        return Ok(None);
    }
    let on_commitment = |k: usize| {
        let prev = tx.input[k].previous_output;
        (prev.txid.to_byte_array() == spend.txid).then(|| spend.output_values.get(prev.vout as usize).copied())
    };
    match on_commitment(input) {
        Some(Some(value)) if value != amount_sat => flag(
            PolicyTag::JusticeRevoked,
            format!("input {input} spends {value} sat of the revoked commitment, not {amount_sat}"),
        ),
        Some(None) => {
            flag(PolicyTag::JusticeRevoked, format!("input {input} spends no output of the revoked commitment"))
        }
        None if htlc => flag(
            PolicyTag::JusticeRevoked,
            format!("input {input} claims an HTLC output but does not spend the revoked commitment"),
        ),
        _ => {}
    }
    let mut total = 0u64;
    for k in 0..tx.input.len() {
        let value = if k == input { Some(amount_sat) } else { on_commitment(k).flatten() };
        match value {
            Some(v) => total = total.saturating_add(v),
            None => {
                flag(
                    PolicyTag::SweepFeeRange,
                    format!("input {k}'s value is unknown to this cosigner: the fee cannot be judged"),
                );
                return Ok(None);
            }
        }
    }
    Ok(Some(total))
}
