//! What a taproot commitment update does to our money, judged with the same rules and
//! tags as legacy channels: our funds (balance before fees plus HTLCs we offered) fall
//! only by HTLCs of ours the counterparty fulfilled with a preimage we were shown; an HTLC
//! we newly offer must be covered in the node-wide payment index (a forward of an incoming
//! HTLC or an approved payment); incoming HTLCs on our validated commitments cover
//! forwards; an incoming HTLC whose payment settled downstream leaves only claimed
//! (`policy-routing-fail-after-fulfil`, the rule shared with legacy channels).
//!
//! Balances in [`TaprootCommitmentInfo`] are before fees and anchors, so no fee term
//! enters the rule: any fall not explained by a fulfilled HTLC is refused.
//!
//! Must never: let an HTLC we offer through without cover, or count a fulfilment without
//! its preimage.

use alloc::format;
use alloc::vec::Vec;

use qls_protocol::{HtlcInfo, TaprootCommitmentInfo};

use super::build::Side;
use crate::channel::payments::fail_after_fulfil;
use crate::channel::validate::{multiset_minus, preimage_hashes};
use crate::channel::PaymentIndex;
use crate::policy::{ChannelPolicy, PolicyTag, Violation};

/// HTLCs in `info` that we offered.
pub fn offered_by_us(info: &TaprootCommitmentInfo, side: Side) -> impl Iterator<Item = &HtlcInfo> {
    let we_broadcast = side == Side::Holder;
    info.htlcs.iter().filter(move |h| h.offered == we_broadcast)
}

/// HTLCs in `info` that the counterparty offered us.
pub fn received_by_us(info: &TaprootCommitmentInfo, side: Side) -> impl Iterator<Item = &HtlcInfo> {
    let we_broadcast = side == Side::Holder;
    info.htlcs.iter().filter(move |h| h.offered != we_broadcast)
}

fn our_balance_msat(info: &TaprootCommitmentInfo, side: Side) -> u64 {
    match side {
        Side::Holder => info.to_broadcaster_msat,
        Side::Counterparty => info.to_countersignatory_msat,
    }
}

fn their_balance_msat(info: &TaprootCommitmentInfo, side: Side) -> u64 {
    match side {
        Side::Holder => info.to_countersignatory_msat,
        Side::Counterparty => info.to_broadcaster_msat,
    }
}

/// Our funds in `info`: our balance plus the HTLCs we offered.
pub fn ours_msat(info: &TaprootCommitmentInfo, side: Side) -> u64 {
    offered_by_us(info, side).fold(our_balance_msat(info, side), |a, h| a.saturating_add(h.amount_msat))
}

/// The holder-balance rule between the previous commitment of the same side and `next`.
pub fn holder_balance(
    violations: &mut Vec<Violation>,
    we_fund: bool,
    prev: Option<&TaprootCommitmentInfo>,
    next: &TaprootCommitmentInfo,
    side: Side,
    preimages: &[[u8; 32]],
    payments: &PaymentIndex,
) {
    let Some(prev) = prev else {
        let theirs = their_balance_msat(next, side);
        if we_fund && theirs > 0 {
            violations.push(Violation {
                tag: PolicyTag::FundingNoPush,
                detail: format!("first commitment of a channel we fund pays them {theirs} msat"),
            });
        }
        return;
    };
    let (before, after) = (ours_msat(prev, side), ours_msat(next, side));
    let hashes = preimage_hashes(preimages);
    let now: Vec<&HtlcInfo> = offered_by_us(next, side).collect();
    let fulfilled: u64 = multiset_minus(offered_by_us(prev, side), &now)
        .into_iter()
        .filter(|h| hashes.contains(&h.payment_hash))
        .map(|h| h.amount_msat)
        .sum();
    let received_now: Vec<&HtlcInfo> = received_by_us(next, side).collect();
    let removed_in = multiset_minus(received_by_us(prev, side), &received_now);
    let removed_in_msat = removed_in.iter().fold(0u64, |a, h| a.saturating_add(h.amount_msat));
    let settled_removed = payments.settled_incoming_msat(removed_in);
    fail_after_fulfil(violations, settled_removed, removed_in_msat, before, after, fulfilled, next.commitment_number);
    let fall = before.saturating_sub(after);
    if fall > fulfilled {
        violations.push(Violation {
            tag: PolicyTag::CommitmentHolderBalance,
            detail: format!(
                "our funds fall by {fall} msat; HTLCs fulfilled with a preimage explain {fulfilled} msat (commitment {})",
                next.commitment_number
            ),
        });
    }
}

/// HTLCs we newly offer in `next` (against `prev`) must be covered; shown preimages
/// settle their payments.
pub fn route_offered(
    violations: &mut Vec<Violation>,
    payments: &mut PaymentIndex,
    prev: Option<&TaprootCommitmentInfo>,
    next: &TaprootCommitmentInfo,
    side: Side,
    preimages: &[[u8; 32]],
    policy: &ChannelPolicy,
) {
    let before: Vec<&HtlcInfo> = prev.map(|p| offered_by_us(p, side).collect()).unwrap_or_default();
    let new_out: Vec<HtlcInfo> = multiset_minus(offered_by_us(next, side), &before).into_iter().cloned().collect();
    for h in &new_out {
        payments.offer(violations, h, policy);
    }
    for hash in preimage_hashes(preimages) {
        payments.settle(&hash);
    }
}

/// Incoming HTLCs on our newly validated commitment `next` cover forwards; those that left
/// it (failed or fulfilled) cover nothing any more.
pub fn record_received(
    violations: &mut Vec<Violation>,
    payments: &mut PaymentIndex,
    prev: Option<&TaprootCommitmentInfo>,
    next: &TaprootCommitmentInfo,
) {
    let before: Vec<&HtlcInfo> = prev.map(|p| received_by_us(p, Side::Holder).collect()).unwrap_or_default();
    let now: Vec<&HtlcInfo> = received_by_us(next, Side::Holder).collect();
    for h in multiset_minus(received_by_us(next, Side::Holder), &before) {
        payments.receive(violations, h);
    }
    for h in multiset_minus(before.iter().copied(), &now) {
        payments.unreceive(&h.payment_hash, h.amount_msat);
    }
}

/// The payment hashes a request about `infos` may touch (to load from the index).
pub fn touched_hashes<'a>(
    infos: impl Iterator<Item = &'a TaprootCommitmentInfo>,
    preimages: &[[u8; 32]],
) -> Vec<[u8; 32]> {
    let mut out: Vec<[u8; 32]> = infos.flat_map(|i| i.htlcs.iter().map(|h| h.payment_hash)).collect();
    out.extend(preimage_hashes(preimages));
    out.sort();
    out.dedup();
    out
}
