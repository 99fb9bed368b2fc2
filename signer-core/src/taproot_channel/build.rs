//! Every transaction of a taproot channel as one cosigner rebuilds it from its stored
//! setup, its derived keys and a commitment's facts: the funding output, both sides'
//! commitments (with each HTLC's output index), the second-level HTLC transactions, the
//! cooperative close, and the BIP-341 sighash of a funding spend.
//!
//! Must never: take a key or a script from a request; everything comes from the state.

use alloc::format;
use alloc::vec::Vec;

use bitcoin::hashes::Hash;
use bitcoin::secp256k1::PublicKey;
use bitcoin::sighash::{Prevouts, SighashCache, TapSighashType};
use bitcoin::{Amount, OutPoint, ScriptBuf, Transaction, TxOut, Txid};
use qls_protocol::TaprootCommitmentInfo;

use super::state::TaprootChannelState;
use super::validate::TaprootChannelError;
use crate::bolt3_keys::{derive_pubkey, derive_revocation_pubkey};
use crate::taproot_commitment::{self, CommitmentKeys, CommitmentParams, Htlc};
use crate::taproot_htlc::{second_level_tx, SecondLevelTx};
use crate::taproot_scripts::funding_output_key;

/// Whose commitment: ours (we broadcast it) or the counterparty's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Holder,
    Counterparty,
}

pub(crate) fn point(bytes: &[u8], what: &'static str) -> Result<[u8; 33], TaprootChannelError> {
    PublicKey::from_slice(bytes).map(|p| p.serialize()).map_err(|_| TaprootChannelError::BadPoint { what })
}

/// A commitment rebuilt: the transaction, its keys, each HTLC's output (by the index of
/// the HTLC in the facts; `None`: trimmed) and the delay on the broadcaster's outputs.
#[derive(Debug, Clone)]
pub struct BuiltCommitment {
    pub tx: Transaction,
    pub keys: CommitmentKeys,
    pub htlc_vouts: Vec<Option<u32>>,
    pub to_self_delay: u16,
}

impl BuiltCommitment {
    /// The second-level transactions of every untrimmed HTLC, in output order, each with
    /// the index of its HTLC in `info.htlcs`.
    pub fn second_level(
        &self,
        info: &TaprootCommitmentInfo,
    ) -> Result<Vec<(usize, SecondLevelTx)>, TaprootChannelError> {
        let mut out: Vec<(u32, usize)> =
            self.htlc_vouts.iter().enumerate().filter_map(|(i, v)| v.map(|v| (v, i))).collect();
        out.sort();
        let txid = self.tx.compute_txid();
        out.into_iter()
            .map(|(vout, i)| {
                let h = htlc(&info.htlcs[i]);
                second_level_tx(txid, vout, &h, &self.keys, self.to_self_delay)
                    .map(|tx| (i, tx))
                    .map_err(|e| TaprootChannelError::Build(format!("{e}")))
            })
            .collect()
    }
}

fn htlc(h: &qls_protocol::HtlcInfo) -> Htlc {
    Htlc { offered: h.offered, amount_msat: h.amount_msat, cltv_expiry: h.cltv_expiry, payment_hash: h.payment_hash }
}

/// The keys of commitment `info` broadcast by `side`.
pub fn commitment_keys(
    state: &TaprootChannelState,
    info: &TaprootCommitmentInfo,
    side: Side,
) -> Result<CommitmentKeys, TaprootChannelError> {
    keys_at(state, &point(&info.per_commitment_point, "per-commitment point")?, side)
}

/// The keys of a commitment broadcast by `side` with per-commitment point `pcp`.
pub fn keys_at(state: &TaprootChannelState, pcp: &[u8; 33], side: Side) -> Result<CommitmentKeys, TaprootChannelError> {
    let s = &state.setup;
    let h = &state.holder;
    let c = &s.counterparty;
    let bad = |what| move |_| TaprootChannelError::BadPoint { what };
    let derive = |base: &[u8], what| derive_pubkey(&point(base, what)?, pcp).map_err(bad(what));
    Ok(match side {
        Side::Counterparty => CommitmentKeys {
            local_delayed: derive(&c.delayed_payment, "counterparty delayed payment basepoint")?,
            revocation: derive_revocation_pubkey(&point(&h.revocation, "our revocation basepoint")?, pcp)
                .map_err(bad("revocation key"))?,
            local_htlc: derive(&c.htlc, "counterparty HTLC basepoint")?,
            remote_htlc: derive(&h.htlc, "our HTLC basepoint")?,
            remote_payment: point(&h.payment, "our payment point")?,
        },
        Side::Holder => CommitmentKeys {
            local_delayed: derive(&h.delayed_payment, "our delayed payment basepoint")?,
            revocation: derive_revocation_pubkey(&point(&c.revocation, "counterparty revocation basepoint")?, pcp)
                .map_err(bad("revocation key"))?,
            local_htlc: derive(&h.htlc, "our HTLC basepoint")?,
            remote_htlc: derive(&c.htlc, "counterparty HTLC basepoint")?,
            remote_payment: point(&c.payment, "counterparty payment point")?,
        },
    })
}

/// Commitment `info` broadcast by `side`, rebuilt from the stored setup and our keys.
pub fn commitment(
    state: &TaprootChannelState,
    info: &TaprootCommitmentInfo,
    side: Side,
) -> Result<BuiltCommitment, TaprootChannelError> {
    let s = &state.setup;
    let keys = commitment_keys(state, info, side)?;
    let ours = point(&state.holder.payment, "our payment point")?;
    let theirs = point(&s.counterparty.payment, "counterparty payment point")?;
    let (opener, accepter) = if s.is_outbound { (ours, theirs) } else { (theirs, ours) };
    let (holder_is_funder, to_self_delay, dust_limit_sat) = match side {
        Side::Counterparty => (!s.is_outbound, s.holder_selected_contest_delay, s.counterparty_dust_limit_sat),
        Side::Holder => (s.is_outbound, s.counterparty_selected_contest_delay, s.holder_dust_limit_sat),
    };
    let params = CommitmentParams {
        funding_outpoint: OutPoint { txid: Txid::from_byte_array(s.funding_txid), vout: u32::from(s.funding_vout) },
        obscuring_factor: taproot_commitment::obscuring_factor(&opener, &accepter),
        commitment_number: info.commitment_number,
        holder_is_funder,
        to_self_delay,
        dust_limit_sat,
        fee_per_kw: u64::from(info.feerate_per_kw),
        keys,
    };
    let htlcs: Vec<Htlc> = info.htlcs.iter().map(htlc).collect();
    let (tx, htlc_vouts) = taproot_commitment::build_commitment_with_vouts(
        &params,
        info.to_broadcaster_msat,
        info.to_countersignatory_msat,
        &htlcs,
    )
    .map_err(|e| TaprootChannelError::Build(format!("{e}")))?;
    Ok(BuiltCommitment { tx, keys, htlc_vouts, to_self_delay })
}

/// The counterparty's commitment `info` (its transaction only).
pub fn counterparty_commitment(
    state: &TaprootChannelState,
    info: &TaprootCommitmentInfo,
) -> Result<Transaction, TaprootChannelError> {
    commitment(state, info, Side::Counterparty).map(|c| c.tx)
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

/// BIP-341 key-path sighash (SIGHASH_DEFAULT) of `tx`'s only input, the funding output.
pub fn funding_sighash(state: &TaprootChannelState, tx: &Transaction) -> Result<[u8; 32], TaprootChannelError> {
    let prevout = funding_txout(state)?;
    SighashCache::new(tx)
        .taproot_key_spend_signature_hash(0, &Prevouts::All(&[prevout]), TapSighashType::Default)
        .map(|h| h.to_byte_array())
        .map_err(|e| TaprootChannelError::Build(format!("{e}")))
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
