//! Channel announcements (legacy channels): the rules for signing, with our funding key,
//! the announcement of a channel we hold.
//!
//! The funding key also signs the channel's transactions, and an announcement is signed
//! as the double SHA-256 of bytes the node supplies. So the bytes must parse as exactly one
//! channel announcement (nothing after it) of our chain, for this channel's short channel
//! id (from the cosigner's own funding proof) with our and the counterparty's funding keys:
//! no transaction preimage can meet that, and no other channel's announcement either.
//!
//! Must never: approve bytes that do not parse as an announcement of this channel, or one
//! for a channel not proven on chain or already closed.

use alloc::format;
use alloc::vec::Vec;

use bitcoin::constants::ChainHash;
use bitcoin::Network;
use lightning::ln::chan_utils::ChannelTransactionParameters;
use lightning::ln::msgs::UnsignedChannelAnnouncement;
use lightning::util::scid_utils::scid_from_parts;
use lightning::util::ser::LengthReadable;

use super::state::{ChannelState, CloseState};
use crate::policy::{PolicyTag, Violation};

/// The announcement `message` parses to, if it does (nothing may follow it).
pub fn parse_announcement(message: &[u8]) -> Option<UnsignedChannelAnnouncement> {
    let parsed = UnsignedChannelAnnouncement::read_from_fixed_length_buffer(&mut &message[..]).ok()?;
    parsed.excess_data.is_empty().then_some(parsed)
}

/// `policy-channel-announcement`.
pub(crate) fn judge_announcement(
    violations: &mut Vec<Violation>,
    state: &ChannelState,
    params: &ChannelTransactionParameters,
    message: &[u8],
    network: Network,
) {
    let mut flag = |detail| violations.push(Violation { tag: PolicyTag::ChannelAnnouncement, detail });
    let Some(msg) = parse_announcement(message) else {
        flag("the message is not one channel announcement (or carries data after it)".into());
        return;
    };
    if msg.chain_hash != ChainHash::using_genesis_block(network) {
        flag(format!("announcement for chain {}, not {network}", msg.chain_hash));
    }
    if state.close != CloseState::Open || state.funding_spent_at.is_some() {
        flag("the channel is closed".into());
    }
    let expected = match (state.funding_confirmed_at, state.funding_tx_index) {
        (Some(height), Some(index)) => {
            scid_from_parts(u64::from(height), u64::from(index), u64::from(state.setup.funding_vout)).ok()
        }
        _ => None,
    };
    match expected {
        None => flag("the channel's funding is not proven on chain: it has no short channel id".into()),
        Some(scid) if scid != msg.short_channel_id => {
            flag(format!("short channel id {} is not this channel's ({scid})", msg.short_channel_id))
        }
        Some(_) => {}
    }
    let ours = params.holder_pubkeys.funding_pubkey;
    let theirs = params.counterparty_parameters.as_ref().map(|c| c.pubkeys.funding_pubkey);
    let keys = (msg.bitcoin_key_1.as_pubkey(), msg.bitcoin_key_2.as_pubkey());
    let ok = match (keys, theirs) {
        ((Ok(k1), Ok(k2)), Some(theirs)) => (k1, k2) == (ours, theirs) || (k1, k2) == (theirs, ours),
        _ => false,
    };
    if !ok {
        flag("the announced funding keys are not ours and the counterparty's".into());
    }
}
