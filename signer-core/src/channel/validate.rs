//! The legacy-channel policy: judges one [`ChannelRequest`] against a cosigner's own copy of
//! the channel state and returns the state after it plus every rule it breaks.
//!
//! Pure: the shell loads the state and the payment entries the request touches, calls
//! [`apply`], asks the policy engine for a verdict and persists the result in one
//! transaction only when the verdict approves.
//!
//! Must never: trust a transaction, key or balance it can rebuild from stored state, or
//! return a state that skips a rule check because a field failed to parse (parse errors
//! are hard errors, not violations).

use alloc::format;
use alloc::vec::Vec;

use bitcoin::hashes::{sha256, Hash};
use bitcoin::secp256k1::{All, Message, PublicKey, Secp256k1, SecretKey};
use bitcoin::sighash::{EcdsaSighashType, SighashCache};
use bitcoin::{ScriptBuf, Transaction};
use lightning::ln::chan_utils::{
    build_htlc_transaction, get_htlc_redeemscript, get_keyed_anchor_redeemscript, get_revokeable_redeemscript,
    make_funding_redeemscript, ChannelTransactionParameters, CommitmentTransaction, CounterpartyCommitmentSecrets,
};
use lightning::util::ser::{Readable, Writeable};
use qls_protocol::{ChannelKeysId, ChannelRequest, ChannelSetup, CommitmentInfo, HtlcInfo};

use super::funding_facts::{self, FundingHeights};
use super::parse::{self, Broadcaster, ChannelError};
use super::payments::PaymentIndex;
use super::state::{
    chain_digest, ChannelState, CloseState, HolderCommitment, SecondStageOutput, INITIAL_COMMITMENT_NUMBER,
};
use super::sweep;

/// Second-stage outputs remembered per HTLC of the force-closed commitment (the latest
/// re-bumps of its HTLC transaction; any of them may be the one that confirms).
pub const SECOND_STAGE_PER_HTLC: usize = 4;
use crate::policy::{ChannelPolicy, PolicyConfig, PolicyTag, Violation};
use crate::sweep_format::sweep_format_violations;

const ANCHOR_OUTPUT_SAT: u64 = 330;
const ANCHOR_COMMITMENT_BASE_WEIGHT: u64 = 1124;
const COMMITMENT_WEIGHT_PER_HTLC: u64 = 172;

/// What a cosigner needs besides the state: its policy and the scripts it owns.
pub struct Context<'a> {
    pub policy: &'a PolicyConfig,
    /// Scripts that are ours (the group wallet); allowlisted scripts come from the policy.
    pub own_scripts: &'a [ScriptBuf],
    pub secp: &'a Secp256k1<All>,
    /// The cosigner's clock, unix seconds (closing times, expiries, velocity).
    pub now: u64,
    /// Channels in the cosigner's store before this request (closed ones past their
    /// retention already pruned).
    pub stored_channels: usize,
    /// For a setup: what the shell found about its holder keys (`None`: not checked,
    /// treated as not ours).
    pub holder_keys: Option<super::HolderKeysCheck>,
    /// For a funding proof: this cosigner's header chain, extended with the proof's
    /// headers (`None`: no chain, the proof is refused).
    pub chain: Option<&'a crate::chain::ChainTip>,
    /// The network this cosigner serves (gossip names its chain).
    pub network: bitcoin::Network,
}

/// The outcome of judging one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The channel state after the request (equal to the input for idempotent retries).
    pub state: ChannelState,
    /// Whether `state` differs from what was stored (the shell writes only then).
    pub changed: bool,
    pub violations: Vec<Violation>,
}

struct Judge<'a> {
    violations: Vec<Violation>,
    policy: &'a ChannelPolicy,
}

impl Judge<'_> {
    fn flag(&mut self, tag: PolicyTag, detail: alloc::string::String) {
        self.violations.push(Violation { tag, detail });
    }
}

fn hex8(id: &[u8]) -> alloc::string::String {
    hex::encode(&id[..id.len().min(8)])
}

/// Judges `request` for channel `channel` against `current` (None if never set up).
pub fn apply(
    channel: &ChannelKeysId,
    current: Option<&ChannelState>,
    request: &ChannelRequest,
    request_digest: &[u8; 32],
    payments: &mut PaymentIndex,
    ctx: &Context<'_>,
) -> Result<Applied, ChannelError> {
    let mut j = Judge { violations: Vec::new(), policy: &ctx.policy.channel };
    let next = match (request, current) {
        (ChannelRequest::Setup(setup), cur) => setup_channel(&mut j, cur, setup, payments, ctx)?,
        (_, None) => return Err(ChannelError::UnknownChannel { channel: hex8(channel) }),
        (req, Some(cur)) => {
            let mut next = cur.clone();
            update(&mut j, &mut next, req, payments, ctx)?;
            next
        }
    };
    let mut next = next;
    if current.is_some_and(|c| c.close == CloseState::Open) && next.close != CloseState::Open {
        next.closed_at = Some(ctx.now);
    }
    let changed = current != Some(&next);
    let mut state = next;
    if changed {
        state.digest = chain_digest(&current.map(|c| c.digest).unwrap_or(state.digest), request_digest);
    }
    Ok(Applied { state, changed, violations: j.violations })
}

fn update(
    j: &mut Judge<'_>,
    next: &mut ChannelState,
    req: &ChannelRequest,
    payments: &mut PaymentIndex,
    ctx: &Context<'_>,
) -> Result<(), ChannelError> {
    if !is_safe_type(&next.setup) {
        // A permissive cosigner may have stored an unsafe type; nothing is built on it.
        return Err(ChannelError::CorruptState("stored channel type is not anchors/static_remotekey"));
    }
    let params = parse::transaction_parameters(&next.setup)?;
    match req {
        ChannelRequest::Setup(_) => {}
        ChannelRequest::SignCounterpartyCommitment { commitment, outbound_preimages } => {
            sign_counterparty(j, next, &params, commitment, outbound_preimages, payments, ctx)?
        }
        ChannelRequest::ValidateHolderCommitment {
            commitment,
            counterparty_sig,
            counterparty_htlc_sigs,
            outbound_preimages,
        } => validate_holder(
            j,
            next,
            &params,
            commitment,
            counterparty_sig,
            counterparty_htlc_sigs,
            outbound_preimages,
            payments,
            ctx,
        )?,
        ChannelRequest::ReleaseCommitmentSecret { commitment_number } => release_secret(j, next, *commitment_number),
        ChannelRequest::ValidateCounterpartyRevocation { commitment_number, secret } => {
            counterparty_revocation(j, next, *commitment_number, secret, ctx.secp)?
        }
        ChannelRequest::SignHolderCommitment { commitment } => sign_holder(j, next, commitment),
        ChannelRequest::SignClosing {
            to_holder_sat,
            to_counterparty_sat,
            to_holder_script,
            to_counterparty_script,
        } => {
            let outputs =
                [(*to_holder_sat, &to_holder_script[..]), (*to_counterparty_sat, &to_counterparty_script[..])];
            j.violations.extend(close_outputs_dust(&outputs));
            sign_closing(j, next, *to_holder_sat, *to_counterparty_sat, to_holder_script, ctx)
        }
        ChannelRequest::SignDelayedSweep { tx, input } => delayed_sweep(j, next, &params, tx, *input, ctx)?,
        ChannelRequest::SignRemoteSweep { tx, input, amount_sat } => {
            let tx = parse::transaction(tx, "sweep")?;
            check_input(&tx, *input)?;
            j.violations.extend(sweep_format_violations(&tx, None));
            outputs_are_ours(j, &tx, None, ctx);
            one_input(j, &tx, "to_remote");
            sweep::to_remote_input(&mut j.violations, &tx, *input as usize);
            sweep_fee(j, &tx, Some(*amount_sat), ctx);
        }
        ChannelRequest::SignHolderAnchor { tx, input } => {
            let tx = parse::transaction(tx, "anchor spend")?;
            check_input(&tx, *input)?;
            j.violations.extend(sweep_format_violations(&tx, None));
            outputs_are_ours(j, &tx, None, ctx);
            anchor_source(j, next, &params, &tx, *input, ctx)?;
        }
        ChannelRequest::FundingConfirmed(proof) => {
            let script = super::funding::funding_script(next)?;
            let setup = &next.setup;
            let expected = crate::funding_proof::ExpectedFunding::of_setup(
                setup.funding_txid,
                setup.funding_vout,
                &script,
                setup.channel_value_sat,
            );
            let before = j.violations.len();
            let heights =
                FundingHeights { confirmed_at: &mut next.funding_confirmed_at, spent_at: &mut next.funding_spent_at };
            let incoming = next.holder.latest.iter().flat_map(|h| h.info.htlcs.iter().filter(|h| !h.offered));
            let min_depth = j.policy.funding_min_depth;
            funding_facts::confirm(
                &mut j.violations,
                heights,
                ctx.chain,
                proof,
                &expected,
                min_depth,
                incoming,
                payments,
            );
            // The proof's position gives the short channel id (kept from the first valid
            // proof, or a later one for a state from before the field existed).
            if next.funding_confirmed_at.is_some() && next.funding_tx_index.is_none() && proof_held(j, before) {
                next.funding_tx_index = Some(proof.position);
            }
        }
        ChannelRequest::FundingSpent(proof) => {
            let outpoint = bitcoin::OutPoint {
                txid: bitcoin::Txid::from_byte_array(next.setup.funding_txid),
                vout: u32::from(next.setup.funding_vout),
            };
            let before = j.violations.len();
            let heights =
                FundingHeights { confirmed_at: &mut next.funding_confirmed_at, spent_at: &mut next.funding_spent_at };
            let incoming = next.holder.latest.iter().flat_map(|h| h.info.htlcs.iter().filter(|h| !h.offered));
            funding_facts::spend(&mut j.violations, heights, ctx.chain, proof, &outpoint, incoming, payments);
            // What the spend is (same provenance rule as the position above), from a proof
            // `funding_min_depth` deep: justice, claims and sweeps are signed on it, and a
            // shallow block can be reorganised away for another spend (a shallow proof
            // still stops the channel; a deeper one of the spend that stays records it).
            let deep = ctx
                .chain
                .is_some_and(|c| crate::funding_proof::spend_is_deep(c, proof, &outpoint, j.policy.funding_min_depth));
            if deep && next.funding_spent_at.is_some() && next.funding_spend.is_none() && proof_held(j, before) {
                let tx = parse::transaction(&proof.tx, "funding spend")?;
                next.funding_spend = Some(super::funding_spend::funding_spend(&params, &tx));
            }
        }
        ChannelRequest::SignHolderHtlc { tx, input, commitment_number, htlc, preimage } => {
            holder_htlc(j, next, &params, tx, *input, *commitment_number, htlc, preimage, ctx)?
        }
        ChannelRequest::SignCounterpartyHtlcClaim { tx, input, amount_sat, htlc } => {
            let tx = parse::transaction(tx, "claim")?;
            check_input(&tx, *input)?;
            outputs_are_ours(j, &tx, None, ctx);
            let total = super::counterparty_claims::judge_claim(
                &mut j.violations,
                next,
                &params,
                &tx,
                *input as usize,
                *amount_sat,
                htlc,
                ctx.secp,
            )?;
            if let Some(total) = total {
                sweep::total_fee(&mut j.violations, &tx, total, ctx);
            }
        }
        ChannelRequest::SignChannelAnnouncement { message } => {
            super::announcement::judge_announcement(&mut j.violations, next, &params, message, ctx.network);
        }
        ChannelRequest::SignJustice { tx, input, amount_sat, htlc } => {
            let tx = parse::transaction(tx, "justice")?;
            check_input(&tx, *input)?;
            j.violations.extend(sweep_format_violations(&tx, None));
            outputs_are_ours(j, &tx, None, ctx);
            let total = super::justice::judge_source(
                &mut j.violations,
                next,
                &tx,
                *input as usize,
                *amount_sat,
                htlc.is_some(),
            )?;
            if let Some(total) = total {
                sweep::total_fee(&mut j.violations, &tx, total, ctx);
            }
        }
    }
    Ok(())
}

pub(crate) fn is_safe_type(setup: &ChannelSetup) -> bool {
    // Exactly anchors (zero-fee HTLC) + static_remote_key, optionally with the bits that do
    // not change any transaction (scid privacy, zero-conf). Anything else (e.g. zero-fee
    // commitments) is built differently and is refused outright.
    use lightning::types::features::ChannelTypeFeatures;
    let t = parse::channel_type(setup);
    let base = ChannelTypeFeatures::anchors_zero_htlc_fee_and_dependencies();
    [(false, false), (true, false), (false, true), (true, true)].into_iter().any(|(scid, zero_conf)| {
        let mut allowed = base.clone();
        if scid {
            allowed.set_scid_privacy_required();
        }
        if zero_conf {
            allowed.set_zero_conf_required();
        }
        allowed == t
    })
}

/// `policy-node-channels-bounded` for a new setup (legacy and taproot stores alike):
/// `stored` channels are already kept (closed ones past retention pruned first).
pub(crate) fn channel_store_full(stored: usize, max: usize) -> Option<Violation> {
    (stored >= max).then(|| Violation {
        tag: PolicyTag::NodeChannelsBounded,
        detail: format!("{stored} channels stored, at most {max} (none closed long enough to prune)"),
    })
}

fn setup_channel(
    j: &mut Judge<'_>,
    current: Option<&ChannelState>,
    setup: &ChannelSetup,
    payments: &mut PaymentIndex,
    ctx: &Context<'_>,
) -> Result<ChannelState, ChannelError> {
    let stored_channels = ctx.stored_channels;
    // Every point must parse, whatever the policy says.
    parse::transaction_parameters(setup)?;
    if let Some(cur) = current {
        if cur.setup != *setup {
            j.flag(PolicyTag::ChannelIdReuse, "channel keys already set up with other parameters".into());
        }
        return Ok(cur.clone());
    }
    j.violations.extend(channel_store_full(stored_channels, j.policy.max_channels));
    match &ctx.holder_keys {
        Some(super::HolderKeysCheck::Ours) => {}
        Some(super::HolderKeysCheck::NotOurs(why)) => j.flag(PolicyTag::ChannelHolderKeys, why.clone()),
        None => j.flag(PolicyTag::ChannelHolderKeys, "the setup's holder keys were not checked".into()),
    }
    if !is_safe_type(setup) {
        j.flag(
            PolicyTag::ChannelSafeType,
            format!(
                "channel type bits {} are not anchors_zero_fee_htlc_tx + static_remote_key",
                hex::encode(&setup.channel_type)
            ),
        );
    }
    j.violations.extend(contest_delay_violations(
        j.policy,
        setup.holder_selected_contest_delay,
        setup.counterparty_selected_contest_delay,
    ));
    if setup.is_outbound {
        super::funding::funding_velocity(&mut j.violations, payments, j.policy, ctx.now, setup.channel_value_sat);
    }
    let mut secrets = Vec::new();
    CounterpartyCommitmentSecrets::new()
        .write(&mut secrets)
        .map_err(|_| ChannelError::CorruptState("cannot encode an empty secret store"))?;
    let mut state = ChannelState::new(setup.clone(), secrets);
    state.set_up_at = Some(ctx.now);
    Ok(state)
}

/// The feerate range, HTLC count and in-flight limits of a commitment (legacy and taproot
/// channels alike).
pub(crate) fn commitment_limit_violations(
    p: &ChannelPolicy,
    feerate_per_kw: u32,
    htlcs: &[HtlcInfo],
) -> Vec<Violation> {
    let mut v = Vec::new();
    if feerate_per_kw < p.feerate_min_per_kw || feerate_per_kw > p.feerate_max_per_kw {
        v.push(Violation {
            tag: PolicyTag::CommitmentFeeRange,
            detail: format!(
                "feerate {feerate_per_kw} sat/kw outside [{}, {}]",
                p.feerate_min_per_kw, p.feerate_max_per_kw
            ),
        });
    }
    if htlcs.len() > usize::from(p.max_htlcs) {
        v.push(Violation {
            tag: PolicyTag::CommitmentHtlcCount,
            detail: format!("{} HTLCs, at most {}", htlcs.len(), p.max_htlcs),
        });
    }
    let inflight = htlcs.iter().try_fold(0u64, |a, h| a.checked_add(h.amount_msat));
    if inflight.is_none_or(|v| v > p.max_inflight_msat) {
        v.push(Violation {
            tag: PolicyTag::CommitmentHtlcInflight,
            detail: format!("{inflight:?} msat in flight, at most {}", p.max_inflight_msat),
        });
    }
    // An expiry of 500,000,000 or more is a unix time to OP_CHECKLOCKTIMEVERIFY: long past,
    // so the HTLC could be timed out at once by its offerer (an incoming one covers nothing).
    for h in htlcs.iter().filter(|h| h.cltv_expiry >= LOCKTIME_THRESHOLD) {
        v.push(Violation {
            tag: PolicyTag::HtlcCltvRange,
            detail: format!(
                "HTLC of {} msat expires at {}, a time rather than a block height",
                h.amount_msat, h.cltv_expiry
            ),
        });
    }
    v
}

/// Where locktimes and CLTV expiries stop being block heights and become unix times.
pub(crate) const LOCKTIME_THRESHOLD: u32 = 500_000_000;

/// The smallest output a commitment may carry: LDK's smallest dust limit, above Bitcoin
/// Core's relay dust for every output type a commitment has.
pub(crate) const COMMITMENT_OUTPUT_MIN_SAT: u64 = 354;

/// `policy-commitment-outputs-trimmed` for a legacy commitment, whose outputs the node
/// lists: each present output is at least [`COMMITMENT_OUTPUT_MIN_SAT`], or the
/// commitment is non-standard and our force close would not relay. (Taproot commitments
/// are trimmed by the cosigner's own builder, at dust limits checked at setup.)
pub(crate) fn untrimmed_outputs(info: &CommitmentInfo) -> Vec<Violation> {
    let direct = [("to_broadcaster", info.to_broadcaster_sat), ("to_countersignatory", info.to_countersignatory_sat)];
    let small_direct = direct.into_iter().filter(|(_, v)| *v != 0 && *v < COMMITMENT_OUTPUT_MIN_SAT);
    let small_htlcs = info
        .htlcs
        .iter()
        .filter(|h| h.amount_msat / 1000 < COMMITMENT_OUTPUT_MIN_SAT)
        .map(|h| ("HTLC", h.amount_msat / 1000));
    small_direct
        .chain(small_htlcs)
        .map(|(what, sat)| Violation {
            tag: PolicyTag::CommitmentOutputsTrimmed,
            detail: format!(
                "commitment {}: {what} output of {sat} sat is below {COMMITMENT_OUTPUT_MIN_SAT} sat and not trimmed",
                info.commitment_number
            ),
        })
        .collect()
}

/// `policy-channel-contest-delay-range` and `policy-channel-counterparty-delay-max` for a
/// setup: the delay we impose on the counterparty and the one it imposes on us (legacy
/// and taproot channels alike).
pub(crate) fn contest_delay_violations(
    policy: &ChannelPolicy,
    ours_imposed: u16,
    imposed_on_us: u16,
) -> Vec<Violation> {
    let mut v = Vec::new();
    if ours_imposed < policy.contest_delay_min {
        v.push(Violation {
            tag: PolicyTag::ChannelContestDelay,
            detail: format!("delay we impose {ours_imposed} is below the minimum {}", policy.contest_delay_min),
        });
    }
    if imposed_on_us > policy.contest_delay_max {
        v.push(Violation {
            tag: PolicyTag::ChannelCounterpartyDelay,
            detail: format!("delay imposed on us {imposed_on_us} is above the maximum {}", policy.contest_delay_max),
        });
    }
    v
}

fn open_or_flag(j: &mut Judge<'_>, state: &ChannelState, what: &str) {
    if state.close != CloseState::Open {
        j.flag(PolicyTag::ChannelClosed, format!("{what} after the channel was closed ({:?})", state.close));
    }
    if let Some(height) = state.funding_spent_at {
        j.flag(PolicyTag::ChannelClosed, format!("{what} after the funding output was spent (block {height})"));
    }
}

/// Commitment fee (anchors, zero-fee HTLC) for `n` non-dust HTLCs, as BOLT 3 and LDK compute it.
fn commitment_fee_sat(feerate_per_kw: u32, n: usize) -> u64 {
    u64::from(feerate_per_kw).saturating_mul(ANCHOR_COMMITMENT_BASE_WEIGHT + n as u64 * COMMITMENT_WEIGHT_PER_HTLC)
        / 1000
}

/// Rules every commitment obeys, whoever broadcasts it.
fn commitment_shape(j: &mut Judge<'_>, setup: &ChannelSetup, info: &CommitmentInfo) {
    let p = j.policy;
    j.violations.extend(commitment_limit_violations(p, info.feerate_per_kw, &info.htlcs));
    j.violations.extend(untrimmed_outputs(info));
    if info.commitment_number == INITIAL_COMMITMENT_NUMBER && !info.htlcs.is_empty() {
        j.flag(PolicyTag::CommitmentFirstNoHtlcs, format!("first commitment carries {} HTLCs", info.htlcs.len()));
    }
    let outputs = info
        .htlcs
        .iter()
        .try_fold(info.to_broadcaster_sat.checked_add(info.to_countersignatory_sat), |a, h| {
            Some(a.and_then(|a| a.checked_add(h.amount_msat / 1000)))
        })
        .flatten();
    let spent = outputs.and_then(|o| {
        o.checked_add(commitment_fee_sat(info.feerate_per_kw, info.htlcs.len()))?.checked_add(2 * ANCHOR_OUTPUT_SAT)
    });
    match spent.and_then(|s| setup.channel_value_sat.checked_sub(s)) {
        Some(slack) if slack <= p.dust_allowance_sat => {}
        Some(slack) => j.flag(
            PolicyTag::CommitmentValue,
            format!("{slack} sat of the channel value is unaccounted for (dust allowance {})", p.dust_allowance_sat),
        ),
        None => j.flag(
            PolicyTag::CommitmentValue,
            format!("outputs, fee and anchors exceed the channel value {} sat", setup.channel_value_sat),
        ),
    }
}

/// Our value in a commitment, msat: our direct output plus the HTLCs we offered.
fn ours_msat(info: &CommitmentInfo, broadcaster: Broadcaster) -> u64 {
    let (direct, we_offered) = match broadcaster {
        Broadcaster::Holder => (info.to_broadcaster_sat, true),
        Broadcaster::Counterparty => (info.to_countersignatory_sat, false),
    };
    info.htlcs
        .iter()
        .filter(|h| h.offered == we_offered)
        .fold(direct.saturating_mul(1000), |a, h| a.saturating_add(h.amount_msat))
}

fn received_by_us(info: &CommitmentInfo, broadcaster: Broadcaster) -> impl Iterator<Item = &HtlcInfo> {
    let we_offered = broadcaster == Broadcaster::Holder;
    info.htlcs.iter().filter(move |h| h.offered != we_offered)
}

fn offered_by_us(info: &CommitmentInfo, broadcaster: Broadcaster) -> impl Iterator<Item = &HtlcInfo> {
    let we_offered = broadcaster == Broadcaster::Holder;
    info.htlcs.iter().filter(move |h| h.offered == we_offered)
}

pub(crate) fn multiset_minus<'a>(a: impl Iterator<Item = &'a HtlcInfo>, b: &[&'a HtlcInfo]) -> Vec<&'a HtlcInfo> {
    let mut rest: Vec<&HtlcInfo> = b.to_vec();
    let mut out = Vec::new();
    for h in a {
        match rest.iter().position(|r| *r == h) {
            Some(i) => {
                rest.swap_remove(i);
            }
            None => out.push(h),
        }
    }
    out
}

pub(crate) fn preimage_hashes(preimages: &[[u8; 32]]) -> Vec<[u8; 32]> {
    preimages.iter().map(|p| sha256::Hash::hash(p).to_byte_array()).collect()
}

/// Our balance may fall only by fulfilled HTLCs we offered, fee growth we pay, and dust.
fn holder_balance(
    j: &mut Judge<'_>,
    setup: &ChannelSetup,
    prev: Option<&CommitmentInfo>,
    next: &CommitmentInfo,
    broadcaster: Broadcaster,
    preimages: &[[u8; 32]],
    payments: &PaymentIndex,
) {
    let Some(prev) = prev else {
        if setup.is_outbound {
            let theirs = match broadcaster {
                Broadcaster::Holder => next.to_countersignatory_sat,
                Broadcaster::Counterparty => next.to_broadcaster_sat,
            };
            if theirs > 0 {
                j.flag(
                    PolicyTag::FundingNoPush,
                    format!("first commitment of a channel we fund pays them {theirs} sat"),
                );
            }
        }
        return;
    };
    let (before, after) = (ours_msat(prev, broadcaster), ours_msat(next, broadcaster));
    let hashes = preimage_hashes(preimages);
    let now: Vec<&HtlcInfo> = offered_by_us(next, broadcaster).collect();
    let fulfilled: u64 = multiset_minus(offered_by_us(prev, broadcaster), &now)
        .into_iter()
        .filter(|h| hashes.contains(&h.payment_hash))
        .map(|h| h.amount_msat)
        .sum();
    let fee_growth = if setup.is_outbound {
        commitment_fee_sat(next.feerate_per_kw, next.htlcs.len())
            .saturating_sub(commitment_fee_sat(prev.feerate_per_kw, prev.htlcs.len()))
    } else {
        0
    };
    // Besides fulfilled HTLCs and fee growth, our outputs may lose the msat rounding of
    // each output (< 1 sat) and, when we fund, the two anchors appearing (330 sat each).
    // Nothing else: the commitment lists dust HTLCs too, so trimming does not lower
    // `ours_msat`. (The channel-wide `dust_allowance_sat` must not be spent here: it would
    // let every update hand that much of our balance to the counterparty.)
    let slack_sat = 1 + if setup.is_outbound { 2 * ANCHOR_OUTPUT_SAT } else { 0 };
    let allowed = fulfilled.saturating_add(fee_growth.saturating_mul(1000)).saturating_add(slack_sat * 1000);
    let received_now: Vec<&HtlcInfo> = received_by_us(next, broadcaster).collect();
    let removed_in = multiset_minus(received_by_us(prev, broadcaster), &received_now);
    let removed_in_msat = removed_in.iter().fold(0u64, |a, h| a.saturating_add(h.amount_msat));
    let settled_removed = payments.settled_incoming_msat(removed_in);
    super::payments::fail_after_fulfil(
        &mut j.violations,
        settled_removed,
        removed_in_msat,
        before,
        after,
        allowed,
        next.commitment_number,
    );
    let drop = before.saturating_sub(after);
    if drop > allowed {
        j.flag(
            PolicyTag::CommitmentHolderBalance,
            format!(
                "our balance falls by {drop} msat; fulfilled HTLCs {fulfilled} msat, fee growth {fee_growth} sat, rounding and anchors {slack_sat} sat"
            ),
        );
    }
}

fn sequence(j: &mut Judge<'_>, latest: Option<u64>, n: u64, side: &str) -> bool {
    let expected = latest.map_or(INITIAL_COMMITMENT_NUMBER, |l| l.saturating_sub(1));
    let retry = latest == Some(n);
    if n != expected && !retry {
        j.flag(
            PolicyTag::CommitmentSequence,
            format!("{side} commitment {n}, expected {expected} (or a retry of {latest:?})"),
        );
    }
    retry
}

fn sign_counterparty(
    j: &mut Judge<'_>,
    state: &mut ChannelState,
    params: &ChannelTransactionParameters,
    info: &CommitmentInfo,
    preimages: &[[u8; 32]],
    payments: &mut PaymentIndex,
    ctx: &Context<'_>,
) -> Result<(), ChannelError> {
    parse::commitment(params, info, Broadcaster::Counterparty, ctx.secp)?;
    open_or_flag(j, state, "counterparty commitment");
    let latest = state.counterparty.latest.as_ref().map(|c| c.commitment_number);
    if sequence(j, latest, info.commitment_number, "counterparty") {
        if state.counterparty.latest.as_ref() != Some(info) {
            j.flag(
                PolicyTag::CommitmentRetrySame,
                format!("counterparty commitment {} signed again with other data", info.commitment_number),
            );
        }
        return Ok(());
    }
    if let Some((n, _)) =
        state.counterparty.unrevoked_points.iter().find(|(n, _)| *n >= info.commitment_number.saturating_add(2))
    {
        j.flag(
            PolicyTag::CommitmentPreviousRevoked,
            format!("counterparty commitment {n} is not revoked; cannot sign {}", info.commitment_number),
        );
    }
    commitment_shape(j, &state.setup, info);
    holder_balance(
        j,
        &state.setup,
        state.counterparty.latest.as_ref(),
        info,
        Broadcaster::Counterparty,
        preimages,
        payments,
    );
    // New HTLCs we offer must be forwards of incoming HTLCs or approved payments.
    let before: Vec<&HtlcInfo> = state
        .counterparty
        .latest
        .as_ref()
        .map(|c| offered_by_us(c, Broadcaster::Counterparty).collect())
        .unwrap_or_default();
    let new_out: Vec<HtlcInfo> =
        multiset_minus(offered_by_us(info, Broadcaster::Counterparty), &before).into_iter().cloned().collect();
    for h in &new_out {
        payments.offer(&mut j.violations, h, &ctx.policy.channel);
    }
    for hash in preimage_hashes(preimages) {
        payments.settle(&hash);
    }
    state.counterparty.unrevoked_points.push((info.commitment_number, info.per_commitment_point.clone()));
    state.counterparty.previous = state.counterparty.latest.replace(info.clone());
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn validate_holder(
    j: &mut Judge<'_>,
    state: &mut ChannelState,
    params: &ChannelTransactionParameters,
    info: &CommitmentInfo,
    counterparty_sig: &[u8],
    counterparty_htlc_sigs: &[alloc::vec::Vec<u8>],
    preimages: &[[u8; 32]],
    payments: &mut PaymentIndex,
    ctx: &Context<'_>,
) -> Result<(), ChannelError> {
    let tx = parse::commitment(params, info, Broadcaster::Holder, ctx.secp)?;
    let sig = parse::signature(counterparty_sig, "counterparty commitment signature")?;
    let htlc_sigs = counterparty_htlc_sigs
        .iter()
        .map(|s| parse::signature(s, "counterparty HTLC signature"))
        .collect::<Result<Vec<_>, _>>()?;
    open_or_flag(j, state, "holder commitment");
    let latest = state.holder.latest.as_ref().map(|c| c.info.commitment_number);
    let candidate = HolderCommitment {
        info: info.clone(),
        counterparty_sig: counterparty_sig.to_vec(),
        counterparty_htlc_sigs: counterparty_htlc_sigs.to_vec(),
    };
    if sequence(j, latest, info.commitment_number, "holder") {
        if state.holder.latest.as_ref() != Some(&candidate) {
            j.flag(
                PolicyTag::CommitmentRetrySame,
                format!("holder commitment {} validated again with other data", info.commitment_number),
            );
        }
        return Ok(());
    }
    commitment_shape(j, &state.setup, info);
    holder_balance(
        j,
        &state.setup,
        state.holder.latest.as_ref().map(|h| &h.info),
        info,
        Broadcaster::Holder,
        preimages,
        payments,
    );
    check_counterparty_sigs(j, params, &tx, &sig, &htlc_sigs, ctx.secp);
    // Incoming HTLCs (offered by the counterparty) are now irrevocably ours to forward —
    // on a channel whose funding was proven on chain; on any other they cover nothing.
    if state.funding_confirmed_at.is_some() {
        let before: Vec<&HtlcInfo> = state
            .holder
            .latest
            .as_ref()
            .map(|h| h.info.htlcs.iter().filter(|h| !h.offered).collect())
            .unwrap_or_default();
        let new_in: Vec<HtlcInfo> =
            multiset_minus(info.htlcs.iter().filter(|h| !h.offered), &before).into_iter().cloned().collect();
        for h in &new_in {
            payments.receive(&mut j.violations, h);
        }
        // Incoming HTLCs that left our commitment (failed or fulfilled) no longer cover
        // anything we offer.
        let now_in: Vec<&HtlcInfo> = info.htlcs.iter().filter(|h| !h.offered).collect();
        for h in multiset_minus(before.iter().copied(), &now_in) {
            payments.unreceive(&h.payment_hash, h.amount_msat);
        }
    }
    state.holder.latest = Some(candidate);
    Ok(())
}

fn check_counterparty_sigs(
    j: &mut Judge<'_>,
    params: &ChannelTransactionParameters,
    tx: &CommitmentTransaction,
    sig: &bitcoin::secp256k1::ecdsa::Signature,
    htlc_sigs: &[bitcoin::secp256k1::ecdsa::Signature],
    secp: &Secp256k1<All>,
) {
    let Some(cp) = params.counterparty_parameters.as_ref() else { return };
    let funding_script = make_funding_redeemscript(&params.holder_pubkeys.funding_pubkey, &cp.pubkeys.funding_pubkey);
    let trusted = tx.trust();
    let sighash = trusted.built_transaction().get_sighash_all(&funding_script, params.channel_value_satoshis);
    if secp.verify_ecdsa(&sighash, sig, &cp.pubkeys.funding_pubkey).is_err() {
        j.flag(
            PolicyTag::CommitmentCounterpartySig,
            "commitment signature does not verify under their funding key".into(),
        );
        return;
    }
    let htlcs = tx.nondust_htlcs();
    if htlcs.len() != htlc_sigs.len() {
        j.flag(PolicyTag::CommitmentHtlcSigs, format!("{} HTLC signatures for {} HTLCs", htlc_sigs.len(), htlcs.len()));
        return;
    }
    let keys = trusted.keys();
    let txid = trusted.txid();
    let channel_type = &params.channel_type_features;
    let delay = params.as_holder_broadcastable().contest_delay();
    for (i, (htlc, s)) in htlcs.iter().zip(htlc_sigs).enumerate() {
        let htlc_tx = build_htlc_transaction(
            &txid,
            tx.negotiated_feerate_per_kw(),
            delay,
            htlc,
            channel_type,
            &keys.broadcaster_delayed_payment_key,
            &keys.revocation_key,
        );
        let script = get_htlc_redeemscript(htlc, channel_type, keys);
        let ok = SighashCache::new(&htlc_tx)
            .p2wsh_signature_hash(0, &script, htlc.to_bitcoin_amount(), EcdsaSighashType::SinglePlusAnyoneCanPay)
            .ok()
            .map(|h| Message::from_digest(h.to_byte_array()))
            .is_some_and(|m| secp.verify_ecdsa(&m, s, &keys.countersignatory_htlc_key.to_public_key()).is_ok());
        if !ok {
            j.flag(PolicyTag::CommitmentHtlcSigs, format!("HTLC signature {i} does not verify"));
        }
    }
}

fn release_secret(j: &mut Judge<'_>, state: &mut ChannelState, n: u64) {
    if n > INITIAL_COMMITMENT_NUMBER {
        // LDK derives secrets from the low 48 bits only: 2^48 would release the seed.
        j.flag(PolicyTag::RevokeBeforeNext, format!("commitment number {n} is beyond the first commitment"));
        return;
    }
    if matches!(state.close, CloseState::ForceClosed { .. }) {
        j.flag(PolicyTag::ChannelClosed, format!("revocation of holder commitment {n} after force close"));
    }
    match state.holder.latest.as_ref().map(|h| h.info.commitment_number) {
        Some(latest) if latest < n => {}
        latest => {
            j.flag(
                PolicyTag::RevokeBeforeNext,
                format!("holder commitment {n} revoked, but the newest validated one is {latest:?}"),
            );
            return;
        }
    }
    state.holder.revoked_from = Some(state.holder.revoked_from.map_or(n, |r| r.min(n)));
}

fn counterparty_revocation(
    j: &mut Judge<'_>,
    state: &mut ChannelState,
    n: u64,
    secret: &[u8; 32],
    secp: &Secp256k1<All>,
) -> Result<(), ChannelError> {
    if state.counterparty.revoked_from.is_some_and(|r| r <= n) {
        return Ok(()); // already revoked: idempotent
    }
    let point = SecretKey::from_slice(secret).map(|s| PublicKey::from_secret_key(secp, &s));
    let stored = state.counterparty.unrevoked_points.iter().find(|(m, _)| *m == n).map(|(_, p)| p.clone());
    match (point, stored) {
        (Ok(p), Some(s)) if p.serialize().as_slice() == s.as_slice() => {}
        (_, None) => {
            j.flag(PolicyTag::RevocationSecretMismatch, format!("no signed, unrevoked counterparty commitment {n}"));
            return Ok(());
        }
        _ => {
            j.flag(PolicyTag::RevocationSecretMismatch, format!("secret for commitment {n} does not match its point"));
            return Ok(());
        }
    }
    // Oldest first (numbers count down): the compact store derives every revoked secret
    // only when none is skipped.
    let oldest = state.counterparty.unrevoked_points.iter().map(|(m, _)| *m).max();
    if oldest != Some(n) {
        j.flag(PolicyTag::CommitmentSequence, format!("counterparty commitment {n} revoked before {oldest:?}"));
        return Ok(());
    }
    let mut secrets: CounterpartyCommitmentSecrets =
        Readable::read(&mut &state.counterparty.secrets[..]).map_err(|_| ChannelError::CorruptState("secret store"))?;
    // LDK indexes secrets by commitment number as well.
    if secrets.provide_secret(n, *secret).is_err() {
        j.flag(PolicyTag::RevocationSecretChain, format!("secret for commitment {n} breaks the BOLT 3 secret chain"));
        return Ok(());
    }
    let mut bytes = Vec::new();
    secrets.write(&mut bytes).map_err(|_| ChannelError::CorruptState("secret store"))?;
    state.counterparty.secrets = bytes;
    state.counterparty.unrevoked_points.retain(|(m, _)| *m != n);
    if state.counterparty.previous.as_ref().is_some_and(|p| p.commitment_number >= n) {
        state.counterparty.previous = None;
    }
    state.counterparty.revoked_from = Some(state.counterparty.revoked_from.map_or(n, |r| r.min(n)));
    Ok(())
}

fn sign_holder(j: &mut Judge<'_>, state: &mut ChannelState, info: &CommitmentInfo) {
    let n = info.commitment_number;
    if state.holder.revoked_from.is_some_and(|r| r <= n) {
        j.flag(PolicyTag::CommitmentHolderRevoked, format!("holder commitment {n} was revoked"));
        return;
    }
    if state.holder.latest.as_ref().map(|h| &h.info) != Some(info) {
        j.flag(PolicyTag::CommitmentHolderUnknown, format!("holder commitment {n} is not the latest validated one"));
        return;
    }
    if let CloseState::MutualClose { .. } = state.close {
        j.flag(PolicyTag::ChannelClosed, "force close after a cooperative close was signed".into());
    }
    state.close = CloseState::ForceClosed { commitment_number: n };
}

pub(crate) fn is_ours(script: &bitcoin::Script, ctx: &Context<'_>) -> bool {
    ctx.own_scripts.iter().any(|s| s.as_script() == script) || ctx.policy.onchain.allows(script)
}

/// `policy-close-outputs-standard`, for legacy and taproot closes alike: each output a
/// cooperative close carries (value and script) is above its script's dust threshold. A
/// close with a dust output never relays, and once it is signed the channel is closed to
/// us: our commitment is no longer signed for broadcast, so the funds would wait on the
/// counterparty.
pub(crate) fn close_outputs_dust(outputs: &[(u64, &[u8])]) -> Vec<Violation> {
    outputs
        .iter()
        .filter(|(sat, _)| *sat > 0)
        .filter_map(|(sat, script)| {
            let dust = bitcoin::Script::from_bytes(script).minimal_non_dust().to_sat();
            (*sat < dust).then(|| Violation {
                tag: PolicyTag::CloseOutputsStandard,
                detail: format!(
                    "close output of {sat} sat to {} is below its dust threshold {dust}",
                    hex::encode(script)
                ),
            })
        })
        .collect()
}

fn sign_closing(
    j: &mut Judge<'_>,
    state: &mut ChannelState,
    to_holder_sat: u64,
    to_counterparty_sat: u64,
    to_holder_script: &[u8],
    ctx: &Context<'_>,
) {
    if matches!(state.close, CloseState::ForceClosed { .. }) {
        j.flag(PolicyTag::ChannelClosed, "cooperative close after a force close was signed".into());
    }
    let pending = state.holder.latest.as_ref().map_or(0, |h| h.info.htlcs.len())
        + state.counterparty.latest.as_ref().map_or(0, |c| c.htlcs.len());
    if pending > 0 {
        j.flag(PolicyTag::ClosePendingHtlcs, format!("{pending} HTLCs pending on the latest commitments"));
    }
    if to_holder_sat > 0 && !is_ours(bitcoin::Script::from_bytes(to_holder_script), ctx) {
        j.flag(
            PolicyTag::CloseDestination,
            format!("our output pays foreign script {}", hex::encode(to_holder_script)),
        );
    }
    let value = state.setup.channel_value_sat;
    let fee = value.checked_sub(to_holder_sat.saturating_add(to_counterparty_sat));
    match fee {
        Some(f) if f <= ctx.policy.channel.close_fee_max_sat => {}
        _ => j.flag(
            PolicyTag::CloseFeeRange,
            format!("close fee {fee:?} sat, at most {} sat", ctx.policy.channel.close_fee_max_sat),
        ),
    }
    // Our balance on both latest commitments (the lower), back to full value for the funder:
    // the commitment fee and anchors return to whoever paid them.
    let ours = |info: &CommitmentInfo, b: Broadcaster| {
        let refund = if state.setup.is_outbound {
            commitment_fee_sat(info.feerate_per_kw, info.htlcs.len()) + 2 * ANCHOR_OUTPUT_SAT
        } else {
            0
        };
        ours_msat(info, b) / 1000 + refund
    };
    let expected = [
        state.holder.latest.as_ref().map(|h| ours(&h.info, Broadcaster::Holder)),
        state.counterparty.latest.as_ref().map(|c| ours(c, Broadcaster::Counterparty)),
    ]
    .into_iter()
    .flatten()
    .min()
    .unwrap_or(if state.setup.is_outbound { value } else { 0 });
    let we_pay = if state.setup.is_outbound { fee.unwrap_or(0) } else { 0 };
    if to_holder_sat.saturating_add(we_pay).saturating_add(1) < expected {
        j.flag(
            PolicyTag::CloseValue,
            format!("we get {to_holder_sat} sat (+{we_pay} fee we pay), our balance is {expected} sat"),
        );
    }
    if state.close == CloseState::Open {
        state.close = CloseState::MutualClose { to_holder_sat };
    }
}

/// Whether the funding proof judged since `before` violations held (no proof tag).
fn proof_held(j: &Judge<'_>, before: usize) -> bool {
    !j.violations[before..].iter().any(|v| matches!(v.tag, PolicyTag::FundingProof | PolicyTag::FundingProofDepth))
}

fn check_input(tx: &Transaction, input: u32) -> Result<(), ChannelError> {
    if (input as usize) < tx.input.len() {
        Ok(())
    } else {
        Err(ChannelError::InputOutOfRange { input, inputs: tx.input.len() })
    }
}

/// Every output pays us (wallet or allowlist) or, for HTLC transactions, `expected`.
fn outputs_are_ours(j: &mut Judge<'_>, tx: &Transaction, expected: Option<&ScriptBuf>, ctx: &Context<'_>) {
    sweep::outputs_ours(&mut j.violations, tx, expected, ctx);
}

fn sweep_fee(j: &mut Judge<'_>, tx: &Transaction, single_input_value: Option<u64>, ctx: &Context<'_>) {
    let Some(value) = single_input_value.filter(|_| tx.input.len() == 1) else { return };
    sweep::total_fee(&mut j.violations, tx, value, ctx);
}

/// A single-channel sweep has one input: other inputs' values are unknown, and the fee
/// could burn our output (batched sweeps name every input: [`sweep::judge_sweep`]).
fn one_input(j: &mut Judge<'_>, tx: &Transaction, what: &str) {
    if tx.input.len() != 1 {
        j.flag(PolicyTag::SweepFeeRange, format!("a {what} sweep has exactly one input, not {}", tx.input.len()));
    }
}

/// An anchor spend's input is our anchor output of the holder commitment we force-closed
/// with (a signature by the funding key on anything else is refused).
fn anchor_source(
    j: &mut Judge<'_>,
    state: &ChannelState,
    params: &ChannelTransactionParameters,
    tx: &Transaction,
    input: u32,
    ctx: &Context<'_>,
) -> Result<(), ChannelError> {
    let Some(commitment) = sweep::force_closed_commitment(&mut j.violations, state, params, None, ctx)? else {
        return Ok(());
    };
    let built = commitment.trust().built_transaction().clone();
    let anchor = get_keyed_anchor_redeemscript(&params.holder_pubkeys.funding_pubkey).to_p2wsh();
    let ours = built.transaction.output.iter().position(|o| o.script_pubkey == anchor);
    let spent = tx.input[input as usize].previous_output;
    if ours.is_none_or(|v| spent != bitcoin::OutPoint { txid: built.txid, vout: v as u32 }) {
        j.flag(
            PolicyTag::SweepSource,
            format!("anchor spend input {input} spends {spent}, not our anchor of the force-closed commitment"),
        );
    }
    Ok(())
}

fn delayed_sweep(
    j: &mut Judge<'_>,
    state: &ChannelState,
    params: &ChannelTransactionParameters,
    tx: &[u8],
    input: u32,
    ctx: &Context<'_>,
) -> Result<(), ChannelError> {
    let tx = parse::transaction(tx, "delayed output sweep")?;
    check_input(&tx, input)?;
    j.violations.extend(sweep_format_violations(&tx, None));
    outputs_are_ours(j, &tx, None, ctx);
    one_input(j, &tx, "delayed");
    let value = sweep::delayed_input(&mut j.violations, state, params, &tx, input as usize, ctx)?;
    sweep_fee(j, &tx, value, ctx);
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn holder_htlc(
    j: &mut Judge<'_>,
    state: &mut ChannelState,
    params: &ChannelTransactionParameters,
    tx: &[u8],
    input: u32,
    n: u64,
    htlc: &HtlcInfo,
    preimage: &Option<[u8; 32]>,
    ctx: &Context<'_>,
) -> Result<(), ChannelError> {
    let tx = parse::transaction(tx, "HTLC transaction")?;
    check_input(&tx, input)?;
    // An HTLC we offered is timed out: its transaction waits for the expiry.
    j.violations.extend(sweep_format_violations(&tx, htlc.offered.then_some(htlc.cltv_expiry)));
    let Some(commitment) = sweep::force_closed_commitment(&mut j.violations, state, params, Some(n), ctx)? else {
        outputs_are_ours(j, &tx, None, ctx);
        return Ok(());
    };
    let trusted = commitment.trust();
    let keys = trusted.keys();
    let second_stage = get_revokeable_redeemscript(
        &keys.revocation_key,
        params.as_holder_broadcastable().contest_delay(),
        &keys.broadcaster_delayed_payment_key,
    )
    .to_p2wsh();
    outputs_are_ours(j, &tx, Some(&second_stage), ctx);
    // The HTLC is the commitment output the input spends (identical HTLCs, e.g. parts of
    // one payment, are told apart by output index), and it must be the one described.
    let spent = tx.input[input as usize].previous_output;
    let found = commitment
        .nondust_htlcs()
        .iter()
        .find(|h| spent.txid == trusted.txid() && h.transaction_output_index == Some(spent.vout));
    let matches = found.is_some_and(|h| {
        h.offered == htlc.offered
            && h.amount_msat == htlc.amount_msat
            && h.cltv_expiry == htlc.cltv_expiry
            && h.payment_hash.0 == htlc.payment_hash
    });
    if !matches {
        j.flag(PolicyTag::SweepSource, format!("input {input} does not spend that HTLC of commitment {n}"));
    }
    // Output `input` (SIGHASH_SINGLE pairing) is the second-stage output a later delayed
    // sweep may spend. Each re-bump of an HTLC transaction adds one; the oldest of that
    // HTLC's entries go beyond a small bound (a claim is never refused for it).
    if let (true, Some(out)) = (matches, tx.output.get(input as usize).filter(|o| o.script_pubkey == second_stage)) {
        let entry = SecondStageOutput {
            txid: tx.compute_txid().to_byte_array(),
            vout: input,
            value_sat: out.value.to_sat(),
            htlc_vout: spent.vout,
        };
        let outputs = &mut state.holder.second_stage;
        if !outputs.contains(&entry) {
            if outputs.iter().filter(|o| o.htlc_vout == spent.vout).count() >= SECOND_STAGE_PER_HTLC {
                if let Some(oldest) = outputs.iter().position(|o| o.htlc_vout == spent.vout) {
                    outputs.remove(oldest);
                }
            }
            outputs.push(entry);
        }
    }
    if !htlc.offered {
        let ok = preimage.is_some_and(|p| sha256::Hash::hash(&p).to_byte_array() == htlc.payment_hash);
        if !ok {
            j.flag(PolicyTag::HtlcPreimage, "HTLC-success without the HTLC's preimage".into());
        }
    }
    Ok(())
}
