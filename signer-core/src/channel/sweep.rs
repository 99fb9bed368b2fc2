//! Sweeps of our outputs of legacy channels: the per-input source rules (a delayed output
//! of the holder commitment we force-closed with, or our to_remote output of a counterparty
//! commitment) and the batched sweep that spends outputs of several channels in one
//! transaction, as LDK's `OutputSweeper` builds it.
//!
//! Every input's value is a fact the cosigner holds: delayed outputs from its own rebuild
//! of the commitment and the second-stage outputs it signed; in a batched sweep, a
//! to_remote output from the SPV-proven transaction that spent the channel's funding
//! output. (A single-input to_remote sweep may take the amount from the request: BIP 143
//! signs the spent amount, so a signature over a wrong value is invalid on chain. In a
//! batch that is not enough: the node can name an input of its own as "to_remote", drop
//! our invalid signature for it and supply its own, so a claimed value would let it burn
//! our other inputs as fee.) With every input known, the fee is checked over the whole
//! transaction.
//!
//! Must never: sign a sweep with an input it cannot value (the fee could burn our outputs),
//! pay anything but our wallet or an allowlisted script, or take an input's source from
//! the request rather than from the cosigner's own state.

use alloc::collections::BTreeSet;
use alloc::format;
use alloc::vec::Vec;

use bitcoin::hashes::Hash;
use bitcoin::{OutPoint, Transaction};
use lightning::ln::chan_utils::{ChannelTransactionParameters, CommitmentTransaction};
use qls_protocol::{ChannelKeysId, SweepRequest, SweepSource};

use super::parse::{self, Broadcaster, ChannelError};
use super::state::{ChannelState, CloseState};
use super::validate::{is_ours, Context};
use crate::policy::{PolicyTag, Violation};
use crate::sweep_format::sweep_format_violations;

fn flag(v: &mut Vec<Violation>, tag: PolicyTag, detail: alloc::string::String) {
    v.push(Violation { tag, detail });
}

/// The holder commitment we force-closed with (rebuilt from our state), or a
/// `policy-sweep-source` violation when there is none (or it is not commitment `n`).
pub(crate) fn force_closed_commitment(
    v: &mut Vec<Violation>,
    state: &ChannelState,
    params: &ChannelTransactionParameters,
    n: Option<u64>,
    ctx: &Context<'_>,
) -> Result<Option<CommitmentTransaction>, ChannelError> {
    match (state.close, state.holder.latest.as_ref()) {
        (CloseState::ForceClosed { commitment_number }, Some(h)) if n.is_none_or(|n| n == commitment_number) => {
            Ok(Some(parse::commitment(params, &h.info, Broadcaster::Holder, ctx.secp)?))
        }
        _ => {
            let which = n.map_or("a".into(), |n| format!("holder commitment {n} is not the"));
            flag(v, PolicyTag::SweepSource, format!("{which} holder commitment we force-closed with"));
            Ok(None)
        }
    }
}

/// The delayed outputs of ours a sweep may spend: to_local of the force-closed holder
/// commitment and the second-stage HTLC outputs we signed, with their values.
pub fn delayed_outputs(state: &ChannelState, commitment: &CommitmentTransaction) -> Vec<(OutPoint, u64)> {
    let trusted = commitment.trust();
    let built = trusted.built_transaction();
    let to_local = trusted
        .revokeable_output_index()
        .map(|o| (OutPoint { txid: built.txid, vout: o as u32 }, built.transaction.output[o].value.to_sat()));
    let second = state
        .holder
        .second_stage
        .iter()
        .map(|o| (OutPoint { txid: bitcoin::Txid::from_byte_array(o.txid), vout: o.vout }, o.value_sat));
    to_local.into_iter().chain(second).collect()
}

/// Input `input` of `tx` spends a delayed output of ours after the contest delay
/// (`policy-sweep-source`, `policy-sweep-sequence`); its value when the source holds.
pub(crate) fn delayed_input(
    v: &mut Vec<Violation>,
    state: &ChannelState,
    params: &ChannelTransactionParameters,
    tx: &Transaction,
    input: usize,
    ctx: &Context<'_>,
) -> Result<Option<u64>, ChannelError> {
    let Some(commitment) = force_closed_commitment(v, state, params, None, ctx)? else { return Ok(None) };
    let spent = &tx.input[input];
    let Some((_, value)) = delayed_outputs(state, &commitment).into_iter().find(|(o, _)| *o == spent.previous_output)
    else {
        let detail = format!("input {input} spends {}, not a delayed output of ours", spent.previous_output);
        flag(v, PolicyTag::SweepSource, detail);
        return Ok(None);
    };
    let delay = params.as_holder_broadcastable().contest_delay();
    if !spent.sequence.is_relative_lock_time() || spent.sequence.0 & 0xffff < u32::from(delay) {
        let detail = format!("input {input} sequence {:#x} does not wait {delay} blocks", spent.sequence.0);
        flag(v, PolicyTag::SweepSequence, detail);
    }
    Ok(Some(value))
}

/// Input `input` of `tx` spends our to_remote output of an anchor channel: our payment key
/// locks only those (static remote key), so the source is ours by the key; the input must
/// wait the 1-block delay (`policy-sweep-sequence`).
pub(crate) fn to_remote_input(v: &mut Vec<Violation>, tx: &Transaction, input: usize) {
    let sequence = tx.input[input].sequence;
    if !sequence.is_relative_lock_time() || sequence.0 & 0xffff < 1 {
        let detail = format!("to_remote input {input} sequence {:#x} does not wait the 1-block delay", sequence.0);
        flag(v, PolicyTag::SweepSequence, detail);
    }
}

/// `policy-sweep-destination`: every output pays our wallet, an allowlisted script or
/// `expected` (a second-stage HTLC output the transaction must create).
pub(crate) fn outputs_ours(
    v: &mut Vec<Violation>,
    tx: &Transaction,
    expected: Option<&bitcoin::ScriptBuf>,
    ctx: &Context<'_>,
) {
    for (i, o) in tx.output.iter().enumerate() {
        if !is_ours(&o.script_pubkey, ctx) && expected != Some(&o.script_pubkey) {
            flag(v, PolicyTag::SweepDestination, format!("output {i} pays foreign script {}", o.script_pubkey));
        }
    }
}

/// The value of batched-sweep input `input` named as our to_remote: an output of the
/// proven funding spend (a counterparty commitment on chain), at its proven value, which
/// must be the amount the request has the key holder sign for (`policy-sweep-source`).
pub(crate) fn proven_to_remote_input(
    v: &mut Vec<Violation>,
    state: &ChannelState,
    tx: &Transaction,
    input: usize,
    amount_sat: u64,
) -> Option<u64> {
    let spent = tx.input[input].previous_output;
    let proven = state.funding_spend.as_ref().and_then(|spend| super::funding_spend::output_value(spend, tx, input));
    match proven.flatten() {
        Some(value) if value == amount_sat => Some(value),
        Some(value) => {
            let detail = format!("to_remote input {input} spends {value} sat on chain, not {amount_sat}");
            flag(v, PolicyTag::SweepSource, detail);
            None
        }
        None => {
            let detail =
                format!("to_remote input {input} spends {spent}, not an output of this channel's proven funding spend");
            flag(v, PolicyTag::SweepSource, detail);
            None
        }
    }
}

/// `policy-sweep-fee-range` for a transaction spending `value` sat in all.
pub(crate) fn total_fee(v: &mut Vec<Violation>, tx: &Transaction, value: u64, ctx: &Context<'_>) {
    let max = ctx.policy.channel.sweep_fee_max_sat;
    let out = tx.output.iter().try_fold(0u64, |a, o| a.checked_add(o.value.to_sat()));
    match out.and_then(|o| value.checked_sub(o)) {
        Some(fee) if fee <= max => {}
        fee => flag(v, PolicyTag::SweepFeeRange, format!("sweep fee {fee:?} sat, at most {max}")),
    }
}

/// Judges a batched sweep. `state_of` gives this cosigner's state of each channel named
/// (an unknown or non-legacy channel is an error: nothing is signed for it). Every input of
/// the transaction must be named exactly once; the fee is checked over their sum.
pub fn judge_sweep<'s>(
    v: &mut Vec<Violation>,
    request: &SweepRequest,
    mut state_of: impl FnMut(&ChannelKeysId) -> Result<&'s ChannelState, ChannelError>,
    ctx: &Context<'_>,
) -> Result<(), ChannelError> {
    let tx = parse::transaction(&request.tx, "sweep")?;
    v.extend(sweep_format_violations(&tx, None));
    outputs_ours(v, &tx, None, ctx);
    let mut named = BTreeSet::new();
    for i in &request.inputs {
        if i.input as usize >= tx.input.len() {
            return Err(ChannelError::InputOutOfRange { input: i.input, inputs: tx.input.len() });
        }
        if !named.insert(i.input) {
            flag(v, PolicyTag::SweepSource, format!("input {} is named twice", i.input));
        }
    }
    let unnamed: Vec<usize> = (0..tx.input.len()).filter(|n| !named.contains(&(*n as u32))).collect();
    if !unnamed.is_empty() {
        // An input of unknown value could carry a fee that burns our outputs.
        let detail = format!("inputs {unnamed:?} are not outputs of ours: their value is unknown");
        flag(v, PolicyTag::SweepSource, detail);
    }
    let mut total: Option<u64> = Some(0);
    let mut valued = true;
    for i in &request.inputs {
        let state = state_of(&i.channel)?;
        let value = match i.source {
            SweepSource::Delayed => {
                let params = parse::transaction_parameters(&state.setup)?;
                delayed_input(v, state, &params, &tx, i.input as usize, ctx)?
            }
            SweepSource::ToRemote { amount_sat } => {
                to_remote_input(v, &tx, i.input as usize);
                proven_to_remote_input(v, state, &tx, i.input as usize, amount_sat)
            }
        };
        // An input without a value was flagged where it was valued.
        valued &= value.is_some();
        total = total.zip(value).and_then(|(t, x)| t.checked_add(x));
    }
    if !unnamed.is_empty() || !valued {
        return Ok(()); // refused above: the fee cannot be judged
    }
    match total {
        Some(total) => total_fee(v, &tx, total, ctx),
        None => flag(v, PolicyTag::SweepFeeRange, "the inputs' values overflow: the fee cannot be judged".into()),
    }
    Ok(())
}
