//! The taproot-channel policy: judges one [`TaprootRequest`] against a cosigner's own copy
//! of the channel and the node-wide payment index, and returns the next state, every rule
//! it breaks, and — for a signing request — the message (BIP-341 key-path sighash of the
//! funding output) the cosigner derived itself from the stored setup and the request's
//! facts.
//!
//! Rules shared with legacy channels keep their tags (`policy-commitment-*`,
//! `policy-channel-*`, `policy-revocation-secret-mismatch`, `policy-routing-*`, ...).
//!
//! Must never: take a key, a transaction or a sighash from the request, sign a new
//! counterparty commitment while the one before the previous is unrevoked, or sign a
//! holder commitment that is revoked or not the latest validated one.

use alloc::format;
use alloc::vec::Vec;

use crate::channel::funding_facts::{self, FundingHeights};
use bitcoin::secp256k1::{schnorr, All, Message, PublicKey, Secp256k1, SecretKey, XOnlyPublicKey};
use bitcoin::sighash::TapSighashType;
use lightning::ln::chan_utils::CounterpartyCommitmentSecrets;
use lightning::util::ser::{Readable, Writeable};
use qls_protocol::{
    ChannelKeysId, LeafNonce, TaprootChannelSetup, TaprootCommitmentInfo, TaprootHolderKeys, TaprootRequest,
};

use super::build::{closing_tx, commitment, funding_sighash, funding_txout, point, Side};
use super::routing::{holder_balance, offered_by_us, record_received, route_offered};
use super::session::funding_tweak;
use super::state::{TaprootChannelState, TaprootHolderCommitment};
use crate::channel::validate::{
    channel_store_full, close_outputs_dust, commitment_limit_violations, contest_delay_violations,
};
use crate::channel::{chain_digest, CloseState, PaymentIndex};
use crate::musig2::nested::nonce_agg_ext;
use crate::musig2::{key_sort, nonce_agg, partial_sig_verify, PubNonce};
use crate::policy::{ChannelPolicy, PolicyConfig, PolicyTag, Violation};

const INITIAL: u64 = (1 << 48) - 1;

/// Why a request could not even be judged (malformed facts, unknown channel).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaprootChannelError {
    #[error("taproot channel {channel} is not set up")]
    UnknownChannel { channel: alloc::string::String },
    #[error("{what} is not a valid point")]
    BadPoint { what: &'static str },
    #[error("commitment cannot be built: {0}")]
    Build(alloc::string::String),
    #[error("stored state is corrupt: {0}")]
    CorruptState(&'static str),
    #[error("{0}")]
    Malformed(&'static str),
}

/// What a cosigner needs besides the state.
pub struct TaprootContext<'a> {
    pub policy: &'a PolicyConfig,
    /// Our keys of this channel (funding node key from the pinned leaves, basepoints).
    pub holder: &'a TaprootHolderKeys,
    /// Every cosigner's base leaf (verified by the shell), for a setup.
    pub leaves: &'a [Vec<u8>],
    /// Scripts that are ours (the group wallet); allowlisted scripts come from the policy.
    pub own_scripts: &'a [bitcoin::ScriptBuf],
    pub secp: &'a Secp256k1<All>,
    /// For a holder commitment's validation: this cosigner's stored verification nonce for
    /// that commitment (`None` if it has none).
    pub own_verification: Option<&'a LeafNonce>,
    /// For a funding proof: this cosigner's header chain, extended with the proof's
    /// headers (`None`: no chain, the proof is refused).
    pub chain: Option<&'a crate::chain::ChainTip>,
    /// The cosigner's clock, unix seconds (velocity windows).
    pub now: u64,
    /// For a setup: taproot channels in the cosigner's store before it.
    pub stored_channels: usize,
    /// For a holder revocation: whether this cosigner keeps its force-close escrow share
    /// of the latest validated holder commitment (`escrow`), without which a revocation
    /// could leave no commitment that t of n cosigners can broadcast.
    pub latest_escrowed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaprootApplied {
    pub state: TaprootChannelState,
    pub changed: bool,
    pub violations: Vec<Violation>,
    /// For a signing request: the 32-byte message to sign (BIP-341 sighash).
    pub message: Option<[u8; 32]>,
}

pub(crate) struct Judge<'a> {
    pub(crate) violations: Vec<Violation>,
    pub(crate) policy: &'a ChannelPolicy,
}

impl Judge<'_> {
    pub(crate) fn flag(&mut self, tag: PolicyTag, detail: alloc::string::String) {
        self.violations.push(Violation { tag, detail });
    }
}

fn open_or_flag(j: &mut Judge<'_>, state: &TaprootChannelState, what: &str) {
    if state.close != CloseState::Open {
        j.flag(PolicyTag::ChannelClosed, format!("{what} after the channel was closed ({:?})", state.close));
    }
    if let Some(height) = state.funding_spent_at {
        j.flag(PolicyTag::ChannelClosed, format!("{what} after the funding output was spent (block {height})"));
    }
}

/// Judges `request` for `channel` against `current` (None if never set up) and the
/// payment entries the request touches (loaded by the shell into `payments`).
pub fn apply(
    channel: &ChannelKeysId,
    current: Option<&TaprootChannelState>,
    request: &TaprootRequest,
    request_digest: &[u8; 32],
    payments: &mut PaymentIndex,
    ctx: &TaprootContext<'_>,
) -> Result<TaprootApplied, TaprootChannelError> {
    let mut j = Judge { violations: Vec::new(), policy: &ctx.policy.channel };
    let (next, message) = match (request, current) {
        (TaprootRequest::Setup(setup), cur) => (setup_channel(&mut j, cur, setup, payments, ctx)?, None),
        (_, None) => return Err(TaprootChannelError::UnknownChannel { channel: hex::encode(&channel[..8]) }),
        (TaprootRequest::SignCounterpartyCommitment { commitment, outbound_preimages }, Some(cur)) => {
            let mut next = cur.clone();
            let msg = sign_counterparty(&mut j, &mut next, commitment, outbound_preimages, payments)?;
            (next, Some(msg))
        }
        (
            TaprootRequest::ValidateHolderCommitment {
                commitment,
                verification,
                counterparty_nonce,
                counterparty_psig,
                counterparty_htlc_sigs,
                outbound_preimages,
            },
            Some(cur),
        ) => {
            let mut next = cur.clone();
            let candidate = TaprootHolderCommitment {
                info: commitment.clone(),
                verification: verification.clone(),
                counterparty_nonce: counterparty_nonce.clone(),
                counterparty_psig: counterparty_psig.clone(),
                counterparty_htlc_sigs: counterparty_htlc_sigs.clone(),
            };
            validate_holder(&mut j, &mut next, candidate, outbound_preimages, payments, ctx)?;
            (next, None)
        }
        (TaprootRequest::RevokeHolderCommitment { commitment_number }, Some(cur)) => {
            let mut next = cur.clone();
            revoke_holder(&mut j, &mut next, *commitment_number, ctx.latest_escrowed);
            (next, None)
        }
        (TaprootRequest::SignHolderCommitment { commitment_number }, Some(cur)) => {
            let mut next = cur.clone();
            let msg = sign_holder(&mut j, &mut next, *commitment_number)?;
            (next, Some(msg))
        }
        (
            TaprootRequest::SignClosing {
                to_holder_sat,
                to_counterparty_sat,
                holder_script,
                counterparty_script,
                locktime,
            },
            Some(cur),
        ) => {
            let mut next = cur.clone();
            let tx =
                closing_tx(cur, *to_holder_sat, *to_counterparty_sat, holder_script, counterparty_script, *locktime);
            let msg = funding_sighash(cur, &tx)?;
            let outputs = [(*to_holder_sat, &holder_script[..]), (*to_counterparty_sat, &counterparty_script[..])];
            j.violations.extend(close_outputs_dust(&outputs));
            sign_closing(&mut j, &mut next, *to_holder_sat, *to_counterparty_sat, holder_script, ctx);
            (next, Some(msg))
        }
        (TaprootRequest::FundingConfirmed(proof), Some(cur)) => {
            let mut next = cur.clone();
            let out = super::build::funding_txout(cur)?;
            let setup = &cur.setup;
            let expected = crate::funding_proof::ExpectedFunding::of_setup(
                setup.funding_txid,
                setup.funding_vout,
                &out.script_pubkey,
                setup.channel_value_sat,
            );
            let heights =
                FundingHeights { confirmed_at: &mut next.funding_confirmed_at, spent_at: &mut next.funding_spent_at };
            let incoming = next.holder_latest.iter().flat_map(|h| h.info.htlcs.iter().filter(|h| !h.offered));
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
            (next, None)
        }
        (TaprootRequest::FundingSpent(proof), Some(cur)) => {
            let mut next = cur.clone();
            let outpoint = bitcoin::OutPoint {
                txid: bitcoin::hashes::Hash::from_byte_array(cur.setup.funding_txid),
                vout: u32::from(cur.setup.funding_vout),
            };
            let heights =
                FundingHeights { confirmed_at: &mut next.funding_confirmed_at, spent_at: &mut next.funding_spent_at };
            let incoming = next.holder_latest.iter().flat_map(|h| h.info.htlcs.iter().filter(|h| !h.offered));
            funding_facts::spend(&mut j.violations, heights, ctx.chain, proof, &outpoint, incoming, payments);
            (next, None)
        }
        (TaprootRequest::CounterpartyRevocation { commitment_number, secret }, Some(cur)) => {
            let mut next = cur.clone();
            counterparty_revocation(&mut j, &mut next, *commitment_number, secret, ctx.secp)?;
            (next, None)
        }
    };
    let changed = current != Some(&next);
    let mut state = next;
    if changed {
        state.digest = chain_digest(&current.map(|c| c.digest).unwrap_or(state.digest), request_digest);
    }
    Ok(TaprootApplied { state, changed, violations: j.violations, message })
}

/// Dust limits a taproot channel may use (LDK's bounds): below the minimum our
/// commitment could carry outputs that do not relay; above the maximum the counterparty
/// could trim our HTLCs into fees.
const DUST_LIMIT_MIN_SAT: u64 = crate::channel::validate::COMMITMENT_OUTPUT_MIN_SAT;
const DUST_LIMIT_MAX_SAT: u64 = 546;

fn setup_channel(
    j: &mut Judge<'_>,
    current: Option<&TaprootChannelState>,
    setup: &TaprootChannelSetup,
    payments: &mut PaymentIndex,
    ctx: &TaprootContext<'_>,
) -> Result<TaprootChannelState, TaprootChannelError> {
    let c = &setup.counterparty;
    for (p, what) in [
        (&c.funding, "counterparty funding key"),
        (&c.revocation, "counterparty revocation basepoint"),
        (&c.payment, "counterparty payment point"),
        (&c.delayed_payment, "counterparty delayed payment basepoint"),
        (&c.htlc, "counterparty HTLC basepoint"),
    ] {
        point(p, what)?;
    }
    if let Some(cur) = current {
        if cur.setup != *setup || cur.leaves != ctx.leaves {
            j.flag(PolicyTag::ChannelIdReuse, "taproot channel already set up with other parameters".into());
        }
        return Ok(cur.clone());
    }
    j.violations.extend(channel_store_full(ctx.stored_channels, j.policy.max_channels));
    j.violations.extend(contest_delay_violations(
        j.policy,
        setup.holder_selected_contest_delay,
        setup.counterparty_selected_contest_delay,
    ));
    for (limit, whose) in [(setup.holder_dust_limit_sat, "holder"), (setup.counterparty_dust_limit_sat, "counterparty")]
    {
        if !(DUST_LIMIT_MIN_SAT..=DUST_LIMIT_MAX_SAT).contains(&limit) {
            j.flag(
                PolicyTag::ChannelDustLimitRange,
                format!("{whose} dust limit {limit} sat outside [{DUST_LIMIT_MIN_SAT}, {DUST_LIMIT_MAX_SAT}]"),
            );
        }
    }
    if setup.is_outbound {
        crate::channel::funding::funding_velocity(
            &mut j.violations,
            payments,
            j.policy,
            ctx.now,
            setup.channel_value_sat,
        );
    }
    let mut secrets = Vec::new();
    CounterpartyCommitmentSecrets::new()
        .write(&mut secrets)
        .map_err(|_| TaprootChannelError::CorruptState("cannot encode an empty secret store"))?;
    let mut state = TaprootChannelState {
        setup: setup.clone(),
        leaves: ctx.leaves.to_vec(),
        holder: ctx.holder.clone(),
        funding_script: Vec::new(),
        digest: qls_protocol::StateDigest { version: 0, digest: [0; 32] },
        counterparty_latest: None,
        counterparty_previous: None,
        unrevoked_points: Vec::new(),
        secrets,
        holder_latest: None,
        holder_revoked: None,
        close: CloseState::Open,
        funding_confirmed_at: None,
        funding_spent_at: None,
    };
    state.funding_script = funding_txout(&state)?.script_pubkey.into_bytes();
    Ok(state)
}

/// The shape rules every commitment of either side must pass: HTLC limits, fee range,
/// value conservation, no HTLCs in the first one.
fn commitment_shape(j: &mut Judge<'_>, setup: &TaprootChannelSetup, info: &TaprootCommitmentInfo) {
    j.violations.extend(commitment_limit_violations(j.policy, info.feerate_per_kw, &info.htlcs));
    if info.commitment_number == 0 && !info.htlcs.is_empty() {
        j.flag(PolicyTag::CommitmentFirstNoHtlcs, format!("first commitment carries {} HTLCs", info.htlcs.len()));
    }
    let total = info
        .htlcs
        .iter()
        .try_fold(info.to_broadcaster_msat.checked_add(info.to_countersignatory_msat), |a, h| {
            Some(a.and_then(|a| a.checked_add(h.amount_msat)))
        })
        .flatten();
    if total != setup.channel_value_sat.checked_mul(1000) {
        j.flag(
            PolicyTag::CommitmentValue,
            format!("balances and HTLCs add up to {total:?} msat, the channel holds {} sat", setup.channel_value_sat),
        );
    }
}

/// Sequence of one side's commitments: `Some(true)` for a retry of the latest.
fn sequence(j: &mut Judge<'_>, latest: Option<u64>, n: u64, side: &str) -> bool {
    if latest == Some(n) {
        return true;
    }
    let expected = latest.map_or(0, |l| l + 1);
    if n != expected {
        j.flag(PolicyTag::CommitmentSequence, format!("{side} commitment {n}, expected {expected}"));
    }
    false
}

fn sign_counterparty(
    j: &mut Judge<'_>,
    state: &mut TaprootChannelState,
    info: &TaprootCommitmentInfo,
    preimages: &[[u8; 32]],
    payments: &mut PaymentIndex,
) -> Result<[u8; 32], TaprootChannelError> {
    let tx = commitment(state, info, Side::Counterparty)?.tx;
    let msg = funding_sighash(state, &tx)?;
    open_or_flag(j, state, "counterparty commitment");
    let latest = state.counterparty_latest.as_ref().map(|c| c.commitment_number);
    if sequence(j, latest, info.commitment_number, "counterparty") {
        if state.counterparty_latest.as_ref() != Some(info) {
            j.flag(
                PolicyTag::CommitmentRetrySame,
                format!("counterparty commitment {} signed again with other data", info.commitment_number),
            );
        }
        return Ok(msg);
    }
    if let Some((n, _)) = state.unrevoked_points.iter().find(|(n, _)| n.saturating_add(2) <= info.commitment_number) {
        j.flag(
            PolicyTag::CommitmentPreviousRevoked,
            format!("counterparty commitment {n} is not revoked; cannot sign {}", info.commitment_number),
        );
    }
    commitment_shape(j, &state.setup, info);
    let prev = state.counterparty_latest.as_ref();
    holder_balance(&mut j.violations, state.setup.is_outbound, prev, info, Side::Counterparty, preimages, payments);
    route_offered(&mut j.violations, payments, prev, info, Side::Counterparty, preimages, j.policy);
    state.unrevoked_points.push((info.commitment_number, info.per_commitment_point.clone()));
    state.counterparty_previous = state.counterparty_latest.replace(info.clone());
    Ok(msg)
}

/// The counterparty's partial signature on our holder commitment (message `msg`), in the
/// session of our verification nonce (`verification`, summed into the quorum's external
/// nonce) and its nonce.
fn counterparty_psig_valid(
    state: &TaprootChannelState,
    h: &TaprootHolderCommitment,
    msg: &[u8; 32],
) -> Result<bool, TaprootChannelError> {
    let bad = TaprootChannelError::Malformed;
    if h.verification.len() != state.leaves.len() {
        // Flagged by the session rule; no partial signature can be checked in it.
        return Ok(false);
    }
    let leaf_nonces = h
        .verification
        .iter()
        .map(|n| n.pubnonce.as_slice().try_into().map(PubNonce).map_err(|_| bad("verification nonce length")))
        .collect::<Result<Vec<_>, _>>()?;
    let ours = point(&state.holder.funding, "our funding key")?;
    let theirs = point(&state.setup.counterparty.funding, "counterparty funding key")?;
    let internal = nonce_agg(&leaf_nonces).map_err(|_| bad("verification nonces do not aggregate"))?;
    let external = nonce_agg_ext(&internal, &ours).map_err(|_| bad("verification nonce"))?;
    let their_nonce =
        PubNonce(h.counterparty_nonce.as_slice().try_into().map_err(|_| bad("counterparty nonce length"))?);
    let psig: [u8; 32] = h.counterparty_psig.as_slice().try_into().map_err(|_| bad("partial signature length"))?;
    let pubkeys = key_sort(&[ours, theirs]);
    let nonces: Vec<PubNonce> = pubkeys.iter().map(|k| if *k == theirs { their_nonce } else { external }).collect();
    let i = pubkeys.iter().position(|k| *k == theirs).unwrap_or(0);
    let tweak = funding_tweak(&ours, &theirs).map_err(|_| bad("funding key"))?;
    // An invalid nonce or signature encoding is as good as a wrong signature: refuse.
    Ok(partial_sig_verify(&psig, &nonces, &pubkeys, &[(tweak, true)], msg, i).unwrap_or(false))
}

/// The counterparty's signatures on our second-level HTLC transactions: BIP-340 under its
/// HTLC key, SIGHASH_SINGLE|ANYONECANPAY (sighash byte 0x83), one per HTLC output.
fn htlc_sigs_valid(
    state: &TaprootChannelState,
    h: &TaprootHolderCommitment,
    secp: &Secp256k1<All>,
) -> Result<Option<alloc::string::String>, TaprootChannelError> {
    let built = commitment(state, &h.info, Side::Holder)?;
    let second = built.second_level(&h.info)?;
    if second.len() != h.counterparty_htlc_sigs.len() {
        return Ok(Some(format!(
            "{} HTLC signatures for {} HTLC outputs",
            h.counterparty_htlc_sigs.len(),
            second.len()
        )));
    }
    let key = XOnlyPublicKey::from(
        PublicKey::from_slice(&built.keys.remote_htlc)
            .map_err(|_| TaprootChannelError::BadPoint { what: "HTLC key" })?,
    );
    for (k, ((_, tx), sig)) in second.iter().zip(&h.counterparty_htlc_sigs).enumerate() {
        let ok = sig.len() == 65
            && sig[64] == TapSighashType::SinglePlusAnyoneCanPay as u8
            && schnorr::Signature::from_slice(&sig[..64]).is_ok_and(|s| {
                tx.sighash(TapSighashType::SinglePlusAnyoneCanPay)
                    .is_ok_and(|m| secp.verify_schnorr(&s, &Message::from_digest(m), &key).is_ok())
            });
        if !ok {
            return Ok(Some(format!("HTLC signature {k} does not verify")));
        }
    }
    Ok(None)
}

fn validate_holder(
    j: &mut Judge<'_>,
    state: &mut TaprootChannelState,
    candidate: TaprootHolderCommitment,
    preimages: &[[u8; 32]],
    payments: &mut PaymentIndex,
    ctx: &TaprootContext<'_>,
) -> Result<(), TaprootChannelError> {
    let info = &candidate.info;
    let tx = commitment(state, info, Side::Holder)?.tx;
    let msg = funding_sighash(state, &tx)?;
    open_or_flag(j, state, "holder commitment");
    let latest = state.holder_latest.as_ref().map(|h| h.info.commitment_number);
    if sequence(j, latest, info.commitment_number, "holder") {
        if state.holder_latest.as_ref() != Some(&candidate) {
            j.flag(
                PolicyTag::CommitmentRetrySame,
                format!("holder commitment {} validated again with other data", info.commitment_number),
            );
        }
        return Ok(());
    }
    if state.holder_is_revoked(info.commitment_number) {
        j.flag(PolicyTag::CommitmentHolderRevoked, format!("holder commitment {} is revoked", info.commitment_number));
    }
    verification_session(j, state, &candidate, ctx.own_verification);
    commitment_shape(j, &state.setup, info);
    let prev = state.holder_latest.as_ref().map(|h| h.info.clone());
    holder_balance(&mut j.violations, state.setup.is_outbound, prev.as_ref(), info, Side::Holder, preimages, payments);
    if !counterparty_psig_valid(state, &candidate, &msg)? {
        j.flag(
            PolicyTag::CommitmentCounterpartySig,
            format!("counterparty partial signature on holder commitment {} does not verify", info.commitment_number),
        );
    }
    if let Some(why) = htlc_sigs_valid(state, &candidate, ctx.secp)? {
        j.flag(PolicyTag::CommitmentHtlcSigs, format!("holder commitment {}: {why}", info.commitment_number));
    }
    // An HTLC we offer was judged (and counted in the payment index) when we signed it on
    // the counterparty's commitment; on ours it may only appear after that.
    offered_as_signed(j, state, prev.as_ref(), info);
    for hash in crate::channel::validate::preimage_hashes(preimages) {
        payments.settle(&hash);
    }
    // Incoming HTLCs cover forwards only on a channel whose funding was proven on chain.
    if state.funding_confirmed_at.is_some() {
        record_received(&mut j.violations, payments, prev.as_ref(), info);
    }
    state.holder_latest = Some(candidate);
    Ok(())
}

/// The session must carry one nonce per cosigner, and this cosigner's must be the one it
/// stored for this very commitment (never another commitment's, never a signing nonce).
fn verification_session(
    j: &mut Judge<'_>,
    state: &TaprootChannelState,
    h: &TaprootHolderCommitment,
    own: Option<&LeafNonce>,
) {
    let n = h.info.commitment_number;
    let mut cosigners: Vec<_> = h.verification.iter().map(|l| l.cosigner).collect();
    cosigners.sort();
    cosigners.dedup();
    if cosigners.len() != h.verification.len() || h.verification.len() != state.leaves.len() {
        j.flag(
            PolicyTag::TaprootVerificationNonce,
            format!(
                "holder commitment {n}: {} verification nonces for {} cosigners",
                h.verification.len(),
                state.leaves.len()
            ),
        );
        return;
    }
    let mine = own.and_then(|o| h.verification.iter().find(|l| l.cosigner == o.cosigner).map(|l| (l, o)));
    if !mine.is_some_and(|(l, o)| l.pubnonce == o.pubnonce && l.nonce_id == o.nonce_id) {
        j.flag(
            PolicyTag::TaprootVerificationNonce,
            format!("holder commitment {n}: this cosigner's nonce in the session is not its verification nonce for it"),
        );
    }
}

fn offered_as_signed(
    j: &mut Judge<'_>,
    state: &TaprootChannelState,
    prev: Option<&TaprootCommitmentInfo>,
    info: &TaprootCommitmentInfo,
) {
    // The same HTLC reads `offered` on our commitment and not on theirs: compare the rest.
    let key = |h: &qls_protocol::HtlcInfo| (h.amount_msat, h.cltv_expiry, h.payment_hash);
    let mut allowed: Vec<_> = prev.map(|p| offered_by_us(p, Side::Holder).map(key).collect()).unwrap_or_default();
    if let Some(c) = state.counterparty_latest.as_ref() {
        allowed.extend(offered_by_us(c, Side::Counterparty).map(key));
    }
    let unsigned = offered_by_us(info, Side::Holder).find(|h| match allowed.iter().position(|a| *a == key(h)) {
        Some(i) => {
            allowed.swap_remove(i);
            false
        }
        None => true,
    });
    if let Some(h) = unsigned {
        j.flag(
            PolicyTag::RoutingUnbalanced,
            format!(
                "holder commitment {} carries an HTLC of ours ({} msat, {}) not on the counterparty commitment we signed",
                info.commitment_number,
                h.amount_msat,
                hex::encode(&h.payment_hash[..8])
            ),
        );
    }
}

fn revoke_holder(j: &mut Judge<'_>, state: &mut TaprootChannelState, n: u64, latest_escrowed: bool) {
    let latest = state.holder_latest.as_ref().map(|h| h.info.commitment_number);
    if latest.is_none_or(|l| l <= n) {
        j.flag(
            PolicyTag::RevokeBeforeNext,
            format!("holder commitment {n} revoked before the next one is validated (latest {latest:?})"),
        );
        return;
    }
    if state.close == (CloseState::ForceClosed { commitment_number: n }) {
        j.flag(PolicyTag::CommitmentHolderRevoked, format!("holder commitment {n} was broadcast"));
        return;
    }
    let expected = state.holder_revoked.map_or(0, |r| r + 1);
    if n > expected {
        j.flag(PolicyTag::CommitmentSequence, format!("holder commitment {n} revoked, expected {expected} next"));
        return;
    }
    if n == expected && !latest_escrowed {
        j.flag(
            PolicyTag::RevokeBeforeNext,
            format!(
                "holder commitment {n} revoked before the force-close escrow of the next ({latest:?}) is kept: \
                 no t of n could broadcast either"
            ),
        );
        return;
    }
    // At or below what is revoked: a retry, nothing changes.
    state.holder_revoked = Some(state.holder_revoked.map_or(n, |r| r.max(n)));
}

fn sign_holder(j: &mut Judge<'_>, state: &mut TaprootChannelState, n: u64) -> Result<[u8; 32], TaprootChannelError> {
    let Some(latest) = state.holder_latest.as_ref() else {
        j.flag(PolicyTag::CommitmentHolderUnknown, format!("holder commitment {n}: none validated"));
        return Ok([0; 32]);
    };
    if latest.info.commitment_number != n {
        j.flag(
            PolicyTag::CommitmentHolderUnknown,
            format!("holder commitment {n} is not the latest validated ({})", latest.info.commitment_number),
        );
    }
    if state.holder_is_revoked(n) {
        j.flag(PolicyTag::CommitmentHolderRevoked, format!("holder commitment {n} is revoked"));
    }
    if matches!(state.close, CloseState::MutualClose { .. }) {
        j.flag(PolicyTag::ChannelClosed, "force close after a cooperative close was signed".into());
    }
    let tx = commitment(state, &latest.info, Side::Holder)?.tx;
    let msg = funding_sighash(state, &tx)?;
    if state.close == CloseState::Open {
        state.close = CloseState::ForceClosed { commitment_number: n };
    }
    Ok(msg)
}

fn sign_closing(
    j: &mut Judge<'_>,
    state: &mut TaprootChannelState,
    to_holder_sat: u64,
    to_counterparty_sat: u64,
    holder_script: &[u8],
    ctx: &TaprootContext<'_>,
) {
    if matches!(state.close, CloseState::ForceClosed { .. }) {
        j.flag(PolicyTag::ChannelClosed, "cooperative close after a force close".into());
    }
    let Some(latest) = state.counterparty_latest.as_ref() else {
        j.flag(PolicyTag::CloseValue, "no commitment signed yet: nothing to close from".into());
        return;
    };
    if !latest.htlcs.is_empty() {
        j.flag(PolicyTag::ClosePendingHtlcs, format!("{} HTLCs pending", latest.htlcs.len()));
    }
    let script = bitcoin::Script::from_bytes(holder_script);
    let ours = ctx.own_scripts.iter().any(|s| s.as_script() == script) || ctx.policy.onchain.allows(script);
    if to_holder_sat > 0 && !ours {
        j.flag(PolicyTag::CloseDestination, format!("our output pays foreign script {}", hex::encode(holder_script)));
    }
    // The counterparty gets at most its balance; the rest is ours less the fee.
    if to_counterparty_sat.saturating_mul(1000) > latest.to_broadcaster_msat {
        j.flag(
            PolicyTag::CloseValue,
            format!(
                "counterparty output {to_counterparty_sat} sat exceeds its balance {} msat",
                latest.to_broadcaster_msat
            ),
        );
    }
    let fee = state.setup.channel_value_sat.checked_sub(to_holder_sat.saturating_add(to_counterparty_sat));
    match fee {
        Some(f) if f <= j.policy.close_fee_max_sat => {}
        _ => j.flag(PolicyTag::CloseFeeRange, format!("close fee {fee:?} sat, at most {}", j.policy.close_fee_max_sat)),
    }
    if state.close == CloseState::Open {
        state.close = CloseState::MutualClose { to_holder_sat };
    }
}

fn counterparty_revocation(
    j: &mut Judge<'_>,
    state: &mut TaprootChannelState,
    n: u64,
    secret: &[u8; 32],
    secp: &Secp256k1<All>,
) -> Result<(), TaprootChannelError> {
    let stored = state.unrevoked_points.iter().find(|(m, _)| *m == n).map(|(_, p)| p.clone());
    let derived = SecretKey::from_slice(secret).map(|s| PublicKey::from_secret_key(secp, &s).serialize().to_vec());
    match (derived, stored) {
        (Ok(p), Some(s)) if p == s => {}
        (_, None) => {
            // Already revoked: a retry with the same secret changes nothing; any other is wrong.
            let revealed = match INITIAL.checked_sub(n) {
                Some(index) => crate::revocation_secrets::revealed_secret(&state.secrets, index)
                    .map_err(|_| TaprootChannelError::CorruptState("secret store"))?,
                None => None,
            };
            if revealed != Some(*secret) {
                j.flag(
                    PolicyTag::RevocationSecretMismatch,
                    format!("secret for commitment {n} is not the one revealed"),
                );
            }
            return Ok(());
        }
        _ => {
            j.flag(
                PolicyTag::RevocationSecretMismatch,
                format!("secret for commitment {n} does not match a signed, unrevoked commitment"),
            );
            return Ok(());
        }
    }
    // Oldest first: the compact store derives every revoked secret only when none is skipped.
    let oldest = state.unrevoked_points.iter().map(|(m, _)| *m).min();
    if oldest != Some(n) {
        j.flag(PolicyTag::CommitmentSequence, format!("counterparty commitment {n} revoked before {oldest:?}"));
        return Ok(());
    }
    let mut secrets: CounterpartyCommitmentSecrets =
        Readable::read(&mut &state.secrets[..]).map_err(|_| TaprootChannelError::CorruptState("secret store"))?;
    if secrets.provide_secret(INITIAL - n, *secret).is_err() {
        j.flag(PolicyTag::RevocationSecretChain, format!("secret for commitment {n} breaks the BOLT 3 secret chain"));
        return Ok(());
    }
    let mut bytes = Vec::new();
    secrets.write(&mut bytes).map_err(|_| TaprootChannelError::CorruptState("secret store"))?;
    state.secrets = bytes;
    state.unrevoked_points.retain(|(m, _)| *m != n);
    if state.counterparty_previous.as_ref().is_some_and(|p| p.commitment_number <= n) {
        state.counterparty_previous = None;
    }
    Ok(())
}
