//! The taproot-channel policy: judges one [`TaprootRequest`] against a cosigner's own copy
//! of the channel and returns the next state, every rule it breaks, and — for a signing
//! request — the message (BIP-341 key-path sighash of the funding output) the cosigner
//! derived itself from the stored setup and the request's facts.
//!
//! Rules shared with legacy channels keep their tags (`policy-commitment-*`,
//! `policy-channel-*`, `policy-revocation-secret-mismatch`).
//!
//! Must never: take a key, a transaction or a sighash from the request, or sign a new
//! counterparty commitment while the one before the previous is unrevoked.

use alloc::format;
use alloc::vec::Vec;

use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{All, PublicKey, Secp256k1, SecretKey};
use bitcoin::sighash::{Prevouts, SighashCache, TapSighashType};
use bitcoin::{Amount, OutPoint, ScriptBuf, Transaction, TxOut, Txid};
use lightning::ln::chan_utils::CounterpartyCommitmentSecrets;
use lightning::util::ser::{Readable, Writeable};
use qls_protocol::{ChannelKeysId, TaprootChannelSetup, TaprootCommitmentInfo, TaprootHolderKeys, TaprootRequest};

use super::state::TaprootChannelState;
use crate::bolt3_keys::{derive_pubkey, derive_revocation_pubkey};
use crate::channel::validate::{commitment_limit_violations, contest_delay_violations};
use crate::channel::{chain_digest, CloseState};
use crate::policy::{ChannelPolicy, PolicyConfig, PolicyTag, Violation};
use crate::taproot_commitment::{self, CommitmentKeys, CommitmentParams, Htlc};
use crate::taproot_scripts::funding_output_key;

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
}

/// What a cosigner needs besides the state.
pub struct TaprootContext<'a> {
    pub policy: &'a PolicyConfig,
    /// Our keys of this channel (funding node key from the pinned leaves, basepoints).
    pub holder: &'a TaprootHolderKeys,
    /// Every cosigner's base leaf (verified by the shell), for a setup.
    pub leaves: &'a [Vec<u8>],
    /// Scripts that are ours (the group wallet); allowlisted scripts come from the policy.
    pub own_scripts: &'a [ScriptBuf],
    pub secp: &'a Secp256k1<All>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaprootApplied {
    pub state: TaprootChannelState,
    pub changed: bool,
    pub violations: Vec<Violation>,
    /// For a signing request: the 32-byte message to sign (BIP-341 sighash).
    pub message: Option<[u8; 32]>,
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

fn point(bytes: &[u8], what: &'static str) -> Result<[u8; 33], TaprootChannelError> {
    PublicKey::from_slice(bytes).map(|p| p.serialize()).map_err(|_| TaprootChannelError::BadPoint { what })
}

/// Judges `request` for `channel` against `current` (None if never set up).
pub fn apply(
    channel: &ChannelKeysId,
    current: Option<&TaprootChannelState>,
    request: &TaprootRequest,
    request_digest: &[u8; 32],
    ctx: &TaprootContext<'_>,
) -> Result<TaprootApplied, TaprootChannelError> {
    let mut j = Judge { violations: Vec::new(), policy: &ctx.policy.channel };
    let (next, message) = match (request, current) {
        (TaprootRequest::Setup(setup), cur) => (setup_channel(&mut j, cur, setup, ctx)?, None),
        (_, None) => return Err(TaprootChannelError::UnknownChannel { channel: hex::encode(&channel[..8]) }),
        (TaprootRequest::SignCounterpartyCommitment { commitment }, Some(cur)) => {
            let mut next = cur.clone();
            let msg = sign_counterparty(&mut j, &mut next, commitment)?;
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
            sign_closing(&mut j, &mut next, *to_holder_sat, *to_counterparty_sat, holder_script, ctx);
            (next, Some(msg))
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

fn setup_channel(
    j: &mut Judge<'_>,
    current: Option<&TaprootChannelState>,
    setup: &TaprootChannelSetup,
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
    j.violations.extend(contest_delay_violations(
        j.policy,
        setup.holder_selected_contest_delay,
        setup.counterparty_selected_contest_delay,
    ));
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
        unrevoked_points: Vec::new(),
        secrets,
        close: CloseState::Open,
    };
    state.funding_script = funding_txout(&state)?.script_pubkey.into_bytes();
    Ok(state)
}

/// The funding output our funding key and the counterparty's make (BIP-86-tweaked MuSig2).
pub fn funding_txout(state: &TaprootChannelState) -> Result<TxOut, TaprootChannelError> {
    if !state.funding_script.is_empty() {
        return Ok(TxOut {
            value: Amount::from_sat(state.setup.channel_value_sat),
            script_pubkey: ScriptBuf::from_bytes(state.funding_script.clone()),
        });
    }
    let ours = point(&state.holder.funding, "our funding key")?;
    let theirs = point(&state.setup.counterparty.funding, "counterparty funding key")?;
    let key = funding_output_key(&ours, &theirs).map_err(|e| TaprootChannelError::Build(format!("{e}")))?;
    let mut script = Vec::with_capacity(34);
    script.extend_from_slice(&[0x51, 0x20]);
    script.extend_from_slice(&key);
    Ok(TxOut { value: Amount::from_sat(state.setup.channel_value_sat), script_pubkey: ScriptBuf::from_bytes(script) })
}

/// The counterparty's commitment `info`, rebuilt from the stored setup and our keys.
pub fn counterparty_commitment(
    state: &TaprootChannelState,
    info: &TaprootCommitmentInfo,
) -> Result<Transaction, TaprootChannelError> {
    let s = &state.setup;
    let pcp = point(&info.per_commitment_point, "per-commitment point")?;
    let bad = |what| move |_| TaprootChannelError::BadPoint { what };
    let theirs = |b: &[u8], what| point(b, what);
    let keys = CommitmentKeys {
        local_delayed: derive_pubkey(&theirs(&s.counterparty.delayed_payment, "delayed")?, &pcp)
            .map_err(bad("delayed key"))?,
        revocation: derive_revocation_pubkey(&point(&state.holder.revocation, "revocation")?, &pcp)
            .map_err(bad("revocation key"))?,
        local_htlc: derive_pubkey(&theirs(&s.counterparty.htlc, "htlc")?, &pcp)
            .map_err(bad("counterparty HTLC key"))?,
        remote_htlc: derive_pubkey(&point(&state.holder.htlc, "htlc")?, &pcp).map_err(bad("our HTLC key"))?,
        remote_payment: point(&state.holder.payment, "our payment point")?,
    };
    let (opener, accepter) = if s.is_outbound {
        (point(&state.holder.payment, "payment")?, theirs(&s.counterparty.payment, "payment")?)
    } else {
        (theirs(&s.counterparty.payment, "payment")?, point(&state.holder.payment, "payment")?)
    };
    let params = CommitmentParams {
        funding_outpoint: OutPoint { txid: Txid::from_byte_array(s.funding_txid), vout: u32::from(s.funding_vout) },
        obscuring_factor: taproot_commitment::obscuring_factor(&opener, &accepter),
        commitment_number: info.commitment_number,
        holder_is_funder: !s.is_outbound,
        to_self_delay: s.holder_selected_contest_delay,
        dust_limit_sat: s.counterparty_dust_limit_sat,
        fee_per_kw: u64::from(info.feerate_per_kw),
        keys,
    };
    let htlcs: Vec<Htlc> = info
        .htlcs
        .iter()
        .map(|h| Htlc {
            offered: h.offered,
            amount_msat: h.amount_msat,
            cltv_expiry: h.cltv_expiry,
            payment_hash: h.payment_hash,
        })
        .collect();
    taproot_commitment::build_commitment(&params, info.to_broadcaster_msat, info.to_countersignatory_msat, &htlcs)
        .map_err(|e| TaprootChannelError::Build(format!("{e}")))
}

/// BIP-341 key-path sighash (SIGHASH_DEFAULT) of `tx`'s only input, the funding output.
pub fn funding_sighash(state: &TaprootChannelState, tx: &Transaction) -> Result<[u8; 32], TaprootChannelError> {
    let prevout = funding_txout(state)?;
    SighashCache::new(tx)
        .taproot_key_spend_signature_hash(0, &Prevouts::All(&[prevout]), TapSighashType::Default)
        .map(|h| h.to_byte_array())
        .map_err(|e| TaprootChannelError::Build(format!("{e}")))
}

fn sign_counterparty(
    j: &mut Judge<'_>,
    state: &mut TaprootChannelState,
    info: &TaprootCommitmentInfo,
) -> Result<[u8; 32], TaprootChannelError> {
    let tx = counterparty_commitment(state, info)?;
    let msg = funding_sighash(state, &tx)?;
    if state.close != CloseState::Open {
        j.flag(
            PolicyTag::ChannelClosed,
            format!("counterparty commitment after the channel was closed ({:?})", state.close),
        );
    }
    let latest = state.counterparty_latest.as_ref().map(|c| c.commitment_number);
    if latest == Some(info.commitment_number) {
        if state.counterparty_latest.as_ref() != Some(info) {
            j.flag(
                PolicyTag::CommitmentRetrySame,
                format!("counterparty commitment {} signed again with other data", info.commitment_number),
            );
        }
        return Ok(msg);
    }
    let expected = latest.map_or(0, |l| l + 1);
    if info.commitment_number != expected {
        j.flag(
            PolicyTag::CommitmentSequence,
            format!("counterparty commitment {}, expected {expected}", info.commitment_number),
        );
    }
    if let Some((n, _)) = state.unrevoked_points.iter().find(|(n, _)| n.saturating_add(2) <= info.commitment_number) {
        j.flag(
            PolicyTag::CommitmentPreviousRevoked,
            format!("counterparty commitment {n} is not revoked; cannot sign {}", info.commitment_number),
        );
    }
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
    if total != state.setup.channel_value_sat.checked_mul(1000) {
        j.flag(
            PolicyTag::CommitmentValue,
            format!(
                "balances and HTLCs add up to {total:?} msat, the channel holds {} sat",
                state.setup.channel_value_sat
            ),
        );
    }
    // Our balance falls only by what we newly offer (HTLCs the counterparty receives);
    // fulfilled HTLCs leave it unchanged.
    if let Some(prev) = state.counterparty_latest.as_ref() {
        let ours =
            |c: &TaprootCommitmentInfo| c.htlcs.iter().filter(|h| !h.offered).map(|h| h.amount_msat).sum::<u64>();
        let fall = prev.to_countersignatory_msat.saturating_sub(info.to_countersignatory_msat);
        let offered_more = ours(info).saturating_sub(ours(prev));
        if fall > offered_more {
            j.flag(
                PolicyTag::CommitmentHolderBalance,
                format!(
                    "our balance falls by {fall} msat but our HTLCs grow by {offered_more} msat (commitment {})",
                    info.commitment_number
                ),
            );
        }
    }
    state.unrevoked_points.push((info.commitment_number, info.per_commitment_point.clone()));
    state.counterparty_latest = Some(info.clone());
    Ok(msg)
}

/// The cooperative close: version 2, the funding input with sequence 0xFFFFFFFD, outputs
/// of value above 0 in BIP-69 order.
pub fn closing_tx(
    state: &TaprootChannelState,
    to_holder_sat: u64,
    to_counterparty_sat: u64,
    holder_script: &[u8],
    counterparty_script: &[u8],
    locktime: u32,
) -> Transaction {
    let s = &state.setup;
    let mut output: Vec<TxOut> = [(to_holder_sat, holder_script), (to_counterparty_sat, counterparty_script)]
        .into_iter()
        .filter(|(v, _)| *v > 0)
        .map(|(v, script)| TxOut { value: Amount::from_sat(v), script_pubkey: ScriptBuf::from_bytes(script.to_vec()) })
        .collect();
    output.sort_by(|a, b| a.value.cmp(&b.value).then_with(|| a.script_pubkey.cmp(&b.script_pubkey)));
    Transaction {
        version: bitcoin::transaction::Version::TWO,
        lock_time: bitcoin::absolute::LockTime::from_consensus(locktime),
        input: alloc::vec![bitcoin::TxIn {
            previous_output: OutPoint { txid: Txid::from_byte_array(s.funding_txid), vout: u32::from(s.funding_vout) },
            script_sig: ScriptBuf::new(),
            sequence: bitcoin::Sequence(0xFFFF_FFFD),
            witness: bitcoin::Witness::new(),
        }],
        output,
    }
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
            let secrets: CounterpartyCommitmentSecrets = Readable::read(&mut &state.secrets[..])
                .map_err(|_| TaprootChannelError::CorruptState("secret store"))?;
            if secrets.get_secret(INITIAL - n) != Some(*secret) {
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
    let mut secrets: CounterpartyCommitmentSecrets =
        Readable::read(&mut &state.secrets[..]).map_err(|_| TaprootChannelError::CorruptState("secret store"))?;
    if secrets.provide_secret(INITIAL - n, *secret).is_err() {
        j.flag(
            PolicyTag::RevocationSecretMismatch,
            format!("secret for commitment {n} breaks the BOLT 3 secret chain"),
        );
        return Ok(());
    }
    let mut bytes = Vec::new();
    secrets.write(&mut bytes).map_err(|_| TaprootChannelError::CorruptState("secret store"))?;
    state.secrets = bytes;
    state.unrevoked_points.retain(|(m, _)| *m != n);
    Ok(())
}
