//! What the FROST group signs for a taproot channel, derived by each cosigner from its own
//! state: the message of every signature and the tweaks from the group key to the key it
//! is made under, plus the policy violations of the item.
//!
//! - HTLC signatures for a counterparty commitment: its second-level transactions
//!   (SIGHASH_SINGLE|ANYONECANPAY) under our per-commitment HTLC key;
//! - our second-level transaction of the holder commitment we force-closed with (an
//!   HTLC-success only with the preimage);
//! - sweeps (SIGHASH_DEFAULT) of to_local, our anchor (key path), second-level outputs of
//!   our force-closed commitment, our to_remote of any counterparty commitment, and HTLC
//!   outputs of the latest counterparty commitment (our HTLCs after their expiry, theirs
//!   with the preimage) — to our own scripts only, after the relative delay (and absolute
//!   expiry), within the fee cap;
//! - justice: outputs of a revoked counterparty commitment (to_local through its
//!   revocation leaf, HTLC and second-level outputs by key path) under the revocation key,
//!   `R·SHA256(R ‖ P) + P·SHA256(P ‖ R)`, signed with the revealed per-commitment secret.
//!
//! Rules share the legacy tags (`policy-sweep-*`, `policy-htlc-preimage`).
//!
//! Must never: take a key, a script or a spent output's identity from the request (the
//! request's prevouts are only checked against what the state says), or sign for an output
//! that is not ours.

use alloc::format;
use alloc::vec::Vec;

use bitcoin::consensus::encode::deserialize;
use bitcoin::hashes::{sha256, Hash};
use bitcoin::secp256k1::{PublicKey, SecretKey};
use bitcoin::sighash::{Prevouts, SighashCache, TapSighashType};
use bitcoin::taproot::TapLeafHash;
use bitcoin::{Amount, OutPoint, ScriptBuf, Transaction, TxOut};
use qls_protocol::{ChannelKeysId, FrostTarget, KeyTweak, RevokedOutput, SpentOutput, TaprootFrostItem};

use super::build::{commitment, keys_at, point, BuiltCommitment, Side};
use super::keys::{basepoint_tweak, per_commitment_tweaks};
use super::state::{TaprootChannelState, TaprootHolderCommitment};
use super::validate::{Judge, TaprootChannelError, TaprootContext};
use crate::bolt3_keys::revocation_tweaks;
use crate::channel::CloseState;
use crate::policy::{PolicyTag, Violation};
use crate::taproot_scripts::{anchor, second_level_htlc, to_local, to_remote};

/// How one of our outputs is spent.
#[derive(Debug, Clone)]
enum Spend {
    /// Script path through `leaf`, after a relative delay of `csv` blocks.
    Script { leaf: TapLeafHash, csv: u16 },
    /// Key path (an anchor's internal key, tweaked by its script tree).
    Key,
}

/// What else a spend of an HTLC output needs.
#[derive(Debug, Clone, Copy)]
enum HtlcClaim {
    None,
    /// The preimage of this payment hash.
    Preimage([u8; 32]),
    /// A locktime at or after this expiry.
    Expiry(u32),
}

#[derive(Debug, Clone)]
struct Ours {
    /// `None`: any outpoint with this output (to_remote is the same script on every
    /// counterparty commitment).
    outpoint: Option<OutPoint>,
    txout: TxOut,
    spend: Spend,
    tweaks: Vec<KeyTweak>,
    what: &'static str,
    claim: HtlcClaim,
}

fn build_err(e: impl core::fmt::Display) -> TaprootChannelError {
    TaprootChannelError::Build(format!("{e}"))
}

/// The messages and keys of `item` and its violations.
pub fn frost_targets(
    channel: &ChannelKeysId,
    state: &TaprootChannelState,
    item: &TaprootFrostItem,
    ctx: &TaprootContext<'_>,
) -> Result<(Vec<FrostTarget>, Vec<Violation>), TaprootChannelError> {
    let mut j = Judge { violations: Vec::new(), policy: &ctx.policy.channel };
    let targets = match item {
        TaprootFrostItem::CounterpartyHtlcs { commitment_number } => {
            counterparty_htlcs(&mut j, channel, state, *commitment_number)?
        }
        TaprootFrostItem::HolderHtlc { htlc_index, preimage } => {
            holder_htlc(&mut j, channel, state, *htlc_index, preimage.as_ref())?
        }
        TaprootFrostItem::Sweep { tx, input, prevouts, preimage } => {
            sweep(&mut j, channel, state, (tx, *input, prevouts, preimage.as_ref()), ctx)?
        }
        TaprootFrostItem::Justice { tx, input, prevouts, commitment_number, output } => {
            justice(&mut j, channel, state, (tx, *input, prevouts, None), *commitment_number, output, ctx)?
        }
    };
    Ok((targets, j.violations))
}

fn counterparty_htlcs(
    j: &mut Judge<'_>,
    channel: &ChannelKeysId,
    state: &TaprootChannelState,
    n: u64,
) -> Result<Vec<FrostTarget>, TaprootChannelError> {
    let Some(info) = state.counterparty_latest.as_ref().filter(|c| c.commitment_number == n) else {
        let latest = state.counterparty_latest.as_ref().map(|c| c.commitment_number);
        j.flag(
            PolicyTag::CommitmentSequence,
            format!("HTLC signatures for counterparty commitment {n}; the latest signed is {latest:?}"),
        );
        return Ok(Vec::new());
    };
    let built = commitment(state, info, Side::Counterparty)?;
    let pcp = point(&info.per_commitment_point, "per-commitment point")?;
    let tweaks = per_commitment_tweaks(channel, "htlc", &point(&state.holder.htlc, "our HTLC basepoint")?, &pcp);
    built
        .second_level(info)?
        .into_iter()
        .map(|(_, tx)| {
            let msg = tx.sighash(TapSighashType::SinglePlusAnyoneCanPay).map_err(build_err)?;
            Ok(FrostTarget { msg, tweaks: tweaks.clone() })
        })
        .collect()
}

/// The holder commitment we force-closed with, rebuilt.
fn force_closed(
    j: &mut Judge<'_>,
    state: &TaprootChannelState,
) -> Result<Option<(TaprootHolderCommitment, BuiltCommitment)>, TaprootChannelError> {
    match (state.close, state.holder_latest.as_ref()) {
        (CloseState::ForceClosed { commitment_number }, Some(h)) if h.info.commitment_number == commitment_number => {
            Ok(Some((h.clone(), commitment(state, &h.info, Side::Holder)?)))
        }
        _ => {
            j.flag(PolicyTag::SweepSource, "no holder commitment was force-closed with".into());
            Ok(None)
        }
    }
}

fn holder_htlc(
    j: &mut Judge<'_>,
    channel: &ChannelKeysId,
    state: &TaprootChannelState,
    index: u32,
    preimage: Option<&[u8; 32]>,
) -> Result<Vec<FrostTarget>, TaprootChannelError> {
    let Some((h, built)) = force_closed(j, state)? else { return Ok(Vec::new()) };
    let second = built.second_level(&h.info)?;
    let Some((i, tx)) = second.get(index as usize) else {
        j.flag(
            PolicyTag::SweepSource,
            format!("holder commitment has {} HTLC outputs, not {}", second.len(), index + 1),
        );
        return Ok(Vec::new());
    };
    let htlc = &h.info.htlcs[*i];
    if !htlc.offered && preimage.is_none_or(|p| sha256::Hash::hash(p).to_byte_array() != htlc.payment_hash) {
        j.flag(PolicyTag::HtlcPreimage, "HTLC-success without the HTLC's preimage".into());
    }
    let pcp = point(&h.info.per_commitment_point, "per-commitment point")?;
    let tweaks = per_commitment_tweaks(channel, "htlc", &point(&state.holder.htlc, "our HTLC basepoint")?, &pcp);
    let msg = tx.sighash(TapSighashType::SinglePlusAnyoneCanPay).map_err(build_err)?;
    Ok(alloc::vec![FrostTarget { msg, tweaks }])
}

/// Every output of ours a sweep may spend, from the state.
fn our_outputs(channel: &ChannelKeysId, state: &TaprootChannelState) -> Result<Vec<Ours>, TaprootChannelError> {
    let mut out = Vec::new();
    let payment = point(&state.holder.payment, "our payment point")?;
    let remote = to_remote(&payment).map_err(build_err)?;
    out.push(Ours {
        outpoint: None,
        txout: TxOut { value: Amount::ZERO, script_pubkey: remote.script_pubkey() },
        spend: Spend::Script {
            leaf: remote.leaf_hash("settle").ok_or(TaprootChannelError::Malformed("leaf"))?,
            csv: 1,
        },
        tweaks: alloc::vec![basepoint_tweak(channel, "payment")],
        what: "to_remote",
        claim: HtlcClaim::None,
    });
    // Either unrevoked counterparty commitment may be the one on chain: each output is
    // found by its outpoint (the rebuilt commitment's txid).
    for info in [state.counterparty_latest.as_ref(), state.counterparty_previous.as_ref()].into_iter().flatten() {
        out.extend(counterparty_htlc_outputs(channel, state, info)?);
    }
    let (CloseState::ForceClosed { commitment_number }, Some(h)) = (state.close, state.holder_latest.as_ref()) else {
        return Ok(out);
    };
    if h.info.commitment_number != commitment_number {
        return Ok(out);
    }
    let built = commitment(state, &h.info, Side::Holder)?;
    let k = &built.keys;
    let pcp = point(&h.info.per_commitment_point, "per-commitment point")?;
    let delayed =
        per_commitment_tweaks(channel, "delayed_payment", &point(&state.holder.delayed_payment, "delayed")?, &pcp);
    let txid = built.tx.compute_txid();
    let local = to_local(&k.local_delayed, &k.revocation, built.to_self_delay).map_err(build_err)?;
    let our_anchor = anchor(&k.local_delayed).map_err(build_err)?;
    let anchor_root = our_anchor.spend_info.merkle_root().map(|r| r.to_byte_array());
    for (vout, o) in built.tx.output.iter().enumerate() {
        let outpoint = Some(OutPoint { txid, vout: vout as u32 });
        if o.script_pubkey == local.script_pubkey() {
            let leaf = local.leaf_hash("settle").ok_or(TaprootChannelError::Malformed("leaf"))?;
            let spend = Spend::Script { leaf, csv: built.to_self_delay };
            let tweaks = delayed.clone();
            out.push(Ours { outpoint, txout: o.clone(), spend, tweaks, what: "to_local", claim: HtlcClaim::None });
        } else if o.script_pubkey == our_anchor.script_pubkey() {
            let mut tweaks = delayed.clone();
            tweaks.push(KeyTweak::Taproot(anchor_root));
            let what = "our anchor";
            out.push(Ours { outpoint, txout: o.clone(), spend: Spend::Key, tweaks, what, claim: HtlcClaim::None });
        }
    }
    let second_out = second_level_htlc(&k.local_delayed, &k.revocation, built.to_self_delay).map_err(build_err)?;
    let leaf = second_out.leaf_hash("success").ok_or(TaprootChannelError::Malformed("leaf"))?;
    for (_, tx) in built.second_level(&h.info)? {
        out.push(Ours {
            outpoint: Some(OutPoint { txid: tx.tx.compute_txid(), vout: 0 }),
            txout: tx.tx.output[0].clone(),
            spend: Spend::Script { leaf, csv: built.to_self_delay },
            tweaks: delayed.clone(),
            what: "second-level HTLC output",
            claim: HtlcClaim::None,
        });
    }
    Ok(out)
}

/// The HTLC outputs of the counterparty's commitment `info` we may claim from it directly:
/// the ones we offered through their timeout leaf (after expiry), theirs through the
/// preimage leaf; both after one block, under our per-commitment HTLC key.
fn counterparty_htlc_outputs(
    channel: &ChannelKeysId,
    state: &TaprootChannelState,
    info: &qls_protocol::TaprootCommitmentInfo,
) -> Result<Vec<Ours>, TaprootChannelError> {
    let built = commitment(state, info, Side::Counterparty)?;
    let k = &built.keys;
    let pcp = point(&info.per_commitment_point, "per-commitment point")?;
    let tweaks = per_commitment_tweaks(channel, "htlc", &point(&state.holder.htlc, "our HTLC basepoint")?, &pcp);
    let txid = built.tx.compute_txid();
    let mut out = Vec::new();
    for (h, vout) in info.htlcs.iter().zip(&built.htlc_vouts) {
        let Some(vout) = vout else { continue };
        // `offered` is the counterparty's view: offered by it means we receive it.
        let (output, leaf, claim, what) = if h.offered {
            let o = crate::taproot_scripts::offered_htlc(&k.local_htlc, &k.remote_htlc, &k.revocation, &h.payment_hash)
                .map_err(build_err)?;
            (o, "success", HtlcClaim::Preimage(h.payment_hash), "their HTLC on their commitment")
        } else {
            let o = crate::taproot_scripts::accepted_htlc(
                &k.local_htlc,
                &k.remote_htlc,
                &k.revocation,
                &h.payment_hash,
                h.cltv_expiry,
            )
            .map_err(build_err)?;
            (o, "timeout", HtlcClaim::Expiry(h.cltv_expiry), "our HTLC on their commitment")
        };
        let leaf = output.leaf_hash(leaf).ok_or(TaprootChannelError::Malformed("leaf"))?;
        out.push(Ours {
            outpoint: Some(OutPoint { txid, vout: *vout }),
            txout: built.tx.output[*vout as usize].clone(),
            spend: Spend::Script { leaf, csv: 1 },
            tweaks: tweaks.clone(),
            what,
            claim,
        });
    }
    Ok(out)
}

fn is_ours(script: &ScriptBuf, ctx: &TaprootContext<'_>) -> bool {
    ctx.own_scripts.iter().any(|s| s == script) || ctx.policy.onchain.allows(script)
}

/// A sweep request: transaction, input, every input's spent output, an HTLC preimage.
type SweepRequest<'a> = (&'a [u8], u32, &'a [SpentOutput], Option<&'a [u8; 32]>);

fn sweep(
    j: &mut Judge<'_>,
    channel: &ChannelKeysId,
    state: &TaprootChannelState,
    (tx_bytes, input, prevouts, preimage): SweepRequest<'_>,
    ctx: &TaprootContext<'_>,
) -> Result<Vec<FrostTarget>, TaprootChannelError> {
    let (tx, i, prevouts) = parse_spend(tx_bytes, input, prevouts)?;
    let spent = tx.input[i].previous_output;
    let ours = our_outputs(channel, state)?;
    let found = ours.into_iter().find(|o| match o.outpoint {
        Some(op) => op == spent,
        None => prevouts[i].script_pubkey == o.txout.script_pubkey,
    });
    let Some(ours) = found else {
        j.flag(PolicyTag::SweepSource, format!("input {i} spends {spent}, not an output of ours"));
        return Ok(Vec::new());
    };
    if ours.outpoint.is_some() && prevouts[i] != ours.txout {
        j.flag(PolicyTag::SweepSource, format!("prevout of input {i} is not our {} as stored", ours.what));
    }
    if let Spend::Script { csv, .. } = ours.spend {
        let seq = tx.input[i].sequence;
        let blocks = seq.to_relative_lock_time().and_then(|l| match l {
            bitcoin::relative::LockTime::Blocks(b) => Some(b.value()),
            bitcoin::relative::LockTime::Time(_) => None,
        });
        if blocks.is_none_or(|b| b < csv) {
            j.flag(
                PolicyTag::SweepSequence,
                format!("input {i} ({}) needs a relative delay of {csv} blocks", ours.what),
            );
        }
    }
    match ours.claim {
        HtlcClaim::None => {}
        HtlcClaim::Preimage(hash) => {
            if preimage.is_none_or(|p| sha256::Hash::hash(p).to_byte_array() != hash) {
                j.flag(PolicyTag::HtlcPreimage, format!("input {i} claims {} without its preimage", ours.what));
            }
        }
        HtlcClaim::Expiry(_) => {}
    }
    let locked_until = match ours.claim {
        HtlcClaim::Expiry(cltv) => Some(cltv),
        _ => None,
    };
    j.violations.extend(crate::sweep_format::sweep_format_violations(&tx, locked_until));
    destinations_and_fee(j, &tx, &prevouts, ctx);
    let msg = spend_sighash(&tx, i, &prevouts, &ours.spend)?;
    Ok(alloc::vec![FrostTarget { msg, tweaks: ours.tweaks }])
}

/// The transaction, the input index and every input's spent output.
fn parse_spend(
    tx_bytes: &[u8],
    input: u32,
    prevouts: &[SpentOutput],
) -> Result<(Transaction, usize, Vec<TxOut>), TaprootChannelError> {
    let tx: Transaction = deserialize(tx_bytes).map_err(|_| TaprootChannelError::Malformed("sweep transaction"))?;
    let i = input as usize;
    if i >= tx.input.len() || prevouts.len() != tx.input.len() {
        return Err(TaprootChannelError::Malformed("sweep input index or prevout count"));
    }
    let prevouts = prevouts
        .iter()
        .map(|p| TxOut {
            value: Amount::from_sat(p.value_sat),
            script_pubkey: ScriptBuf::from_bytes(p.script_pubkey.clone()),
        })
        .collect();
    Ok((tx, i, prevouts))
}

/// Every output pays us; the fee is within the sweep cap.
fn destinations_and_fee(j: &mut Judge<'_>, tx: &Transaction, prevouts: &[TxOut], ctx: &TaprootContext<'_>) {
    for (k, o) in tx.output.iter().enumerate() {
        if !is_ours(&o.script_pubkey, ctx) {
            j.flag(PolicyTag::SweepDestination, format!("output {k} pays foreign script {}", o.script_pubkey));
        }
    }
    let inputs = prevouts.iter().try_fold(0u64, |a, p| a.checked_add(p.value.to_sat()));
    let outputs = tx.output.iter().try_fold(0u64, |a, o| a.checked_add(o.value.to_sat()));
    match inputs.zip(outputs).and_then(|(i, o)| i.checked_sub(o)) {
        Some(fee) if fee <= j.policy.sweep_fee_max_sat => {}
        fee => {
            j.flag(PolicyTag::SweepFeeRange, format!("sweep fee {fee:?} sat, at most {}", j.policy.sweep_fee_max_sat))
        }
    }
}

/// BIP-341 sighash (SIGHASH_DEFAULT) of input `i` spent by `spend`.
fn spend_sighash(
    tx: &Transaction,
    i: usize,
    prevouts: &[TxOut],
    spend: &Spend,
) -> Result<[u8; 32], TaprootChannelError> {
    let mut cache = SighashCache::new(tx);
    let all = Prevouts::All(prevouts);
    Ok(match spend {
        Spend::Script { leaf, .. } => {
            cache.taproot_script_spend_signature_hash(i, &all, *leaf, TapSighashType::Default)
        }
        Spend::Key => cache.taproot_key_spend_signature_hash(i, &all, TapSighashType::Default),
    }
    .map_err(build_err)?
    .to_byte_array())
}

/// A justice transaction's input: an output of the counterparty's revoked commitment `n`
/// (its secret is in our store), identified by its script alone — nobody but us can
/// derive the revocation key of a revoked commitment.
fn justice(
    j: &mut Judge<'_>,
    channel: &ChannelKeysId,
    state: &TaprootChannelState,
    (tx_bytes, input, prevouts, _): SweepRequest<'_>,
    n: u64,
    output: &RevokedOutput,
    ctx: &TaprootContext<'_>,
) -> Result<Vec<FrostTarget>, TaprootChannelError> {
    let (tx, i, prevouts) = parse_spend(tx_bytes, input, prevouts)?;
    let revealed = match ((1u64 << 48) - 1).checked_sub(n) {
        Some(index) => crate::revocation_secrets::revealed_secret(&state.secrets, index)
            .map_err(|_| TaprootChannelError::CorruptState("secret store"))?,
        None => None,
    };
    let Some(secret) = revealed else {
        j.flag(PolicyTag::JusticeRevoked, format!("counterparty commitment {n} is not revoked"));
        return Ok(Vec::new());
    };
    let sk = SecretKey::from_slice(&secret).map_err(|_| TaprootChannelError::CorruptState("revocation secret"))?;
    let pcp = PublicKey::from_secret_key(ctx.secp, &sk).serialize();
    let k = keys_at(state, &pcp, Side::Counterparty)?;
    let delay = state.setup.holder_selected_contest_delay;
    let (out, spend) = match output {
        RevokedOutput::ToLocal => {
            let o = to_local(&k.local_delayed, &k.revocation, delay).map_err(build_err)?;
            let leaf = o.leaf_hash("revocation").ok_or(TaprootChannelError::Malformed("leaf"))?;
            (o, Spend::Script { leaf, csv: 0 })
        }
        RevokedOutput::Htlc(h) if h.offered => {
            let o = crate::taproot_scripts::offered_htlc(&k.local_htlc, &k.remote_htlc, &k.revocation, &h.payment_hash)
                .map_err(build_err)?;
            (o, Spend::Key)
        }
        RevokedOutput::Htlc(h) => {
            let o = crate::taproot_scripts::accepted_htlc(
                &k.local_htlc,
                &k.remote_htlc,
                &k.revocation,
                &h.payment_hash,
                h.cltv_expiry,
            )
            .map_err(build_err)?;
            (o, Spend::Key)
        }
        RevokedOutput::SecondLevel => {
            (second_level_htlc(&k.local_delayed, &k.revocation, delay).map_err(build_err)?, Spend::Key)
        }
    };
    if prevouts[i].script_pubkey != out.script_pubkey() {
        j.flag(PolicyTag::SweepSource, format!("input {i} is not the {output:?} output of revoked commitment {n}"));
        return Ok(Vec::new());
    }
    destinations_and_fee(j, &tx, &prevouts, ctx);
    let basepoint = point(&state.holder.revocation, "our revocation basepoint")?;
    let (mul, add) =
        revocation_tweaks(&basepoint, &secret).map_err(|_| TaprootChannelError::CorruptState("revocation secret"))?;
    let mut tweaks = alloc::vec![basepoint_tweak(channel, "revocation"), KeyTweak::MulAdd { mul, add }];
    if matches!(spend, Spend::Key) {
        tweaks.push(KeyTweak::Taproot(out.spend_info.merkle_root().map(|r| r.to_byte_array())));
    }
    let msg = spend_sighash(&tx, i, &prevouts, &spend)?;
    Ok(alloc::vec![FrostTarget { msg, tweaks }])
}
