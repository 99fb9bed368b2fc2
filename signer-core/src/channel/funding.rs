//! The funding output of a channel we fund, from the cosigner's stored setup: what a
//! funding transaction must pay for the on-chain policy to allow it.
//!
//! Must never: describe a funding output from anything but the stored setup, or one for
//! a channel the counterparty funds or that is closed.

use bitcoin::hashes::Hash;
use bitcoin::{OutPoint, Txid};
use lightning::ln::chan_utils::make_funding_redeemscript;

use super::parse::{self, ChannelError};
use super::state::{ChannelState, CloseState};
use crate::policy::onchain::FundingOutput;

/// The channel's P2WSH funding output script, from the stored setup.
pub fn funding_script(state: &ChannelState) -> Result<bitcoin::ScriptBuf, ChannelError> {
    let params = parse::transaction_parameters(&state.setup)?;
    let counterparty =
        params.counterparty_parameters.as_ref().ok_or(ChannelError::CorruptState("setup without counterparty keys"))?;
    Ok(make_funding_redeemscript(&params.holder_pubkeys.funding_pubkey, &counterparty.pubkeys.funding_pubkey)
        .to_p2wsh())
}

/// `Some` for an open channel (one the counterparty funds is marked `inbound`, so that
/// paying it is refused by name); `now` and `window_secs` (the velocity window) tell
/// whether its setup was counted against the funding velocity in the current window.
pub fn funding_output(state: &ChannelState, now: u64, window_secs: u64) -> Result<Option<FundingOutput>, ChannelError> {
    let setup = &state.setup;
    if state.close != CloseState::Open {
        return Ok(None);
    }
    let script = funding_script(state)?;
    Ok(Some(FundingOutput {
        outpoint: OutPoint { txid: Txid::from_byte_array(setup.funding_txid), vout: u32::from(setup.funding_vout) },
        script,
        value_sat: setup.channel_value_sat,
        countersigned: state.holder.latest.is_some(),
        within_velocity_window: state.set_up_at.is_some_and(|t| t.saturating_add(window_secs) > now),
        inbound: !setup.is_outbound,
    }))
}

/// The funding velocity rule, for legacy and taproot setups alike: a channel we fund
/// counts its value against `funding_velocity_max_sat` per velocity window, when it is set
/// up (a PSBT can fund only a stored setup). A refused setup counts nothing.
pub fn funding_velocity(
    violations: &mut alloc::vec::Vec<crate::policy::Violation>,
    index: &mut super::PaymentIndex,
    policy: &crate::policy::ChannelPolicy,
    now: u64,
    value_sat: u64,
) {
    let limit = policy.funding_velocity_max_sat.saturating_mul(1000);
    if let Err(total) =
        index.funding_velocity.spend(now, policy.velocity_window_secs, value_sat.saturating_mul(1000), limit)
    {
        violations.push(crate::policy::Violation {
            tag: crate::policy::PolicyTag::FundingVelocity,
            detail: alloc::format!(
                "funding {value_sat} sat would make {} sat within {} s, at most {}",
                total / 1000,
                policy.velocity_window_secs,
                policy.funding_velocity_max_sat
            ),
        });
    }
}
