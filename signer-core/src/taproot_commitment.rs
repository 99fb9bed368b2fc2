//! Simple-taproot-channel commitment transactions: BOLT 3's structure (obscured
//! commitment number in sequence and locktime, BIP-69 output order with CLTV tie-break,
//! trimming, fee from weight paid by the funder) with the taproot outputs of
//! [`crate::taproot_scripts`], zero-fee HTLCs and two 330-sat anchors. Checked byte for
//! byte against lnd's taproot vectors (unsigned transaction; the witness comes from the
//! MuSig2 session).
//!
//! Weights: lnd's `TaprootCommitWeight` = 968 (base, key-path funding input) and 172 per
//! HTLC output. Must never: produce an output below the dust limit, or let fee and
//! anchors make the funder's balance negative (that is an error, not a clamp).

use alloc::vec::Vec;

use bitcoin::absolute::LockTime;
use bitcoin::hashes::{sha256, Hash};
use bitcoin::transaction::Version;
use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness};

use crate::taproot_scripts::{accepted_htlc, anchor, offered_htlc, to_local, to_remote, ScriptError};

pub const TAPROOT_COMMIT_WEIGHT: u64 = 968;
pub const HTLC_OUTPUT_WEIGHT: u64 = 172;
pub const ANCHOR_SAT: u64 = 330;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommitmentError {
    #[error(transparent)]
    Script(#[from] ScriptError),
    #[error("the funder's balance ({balance_sat} sat) cannot pay fee {fee_sat} sat and anchors")]
    FunderCannotPay { balance_sat: u64, fee_sat: u64 },
    #[error("commitment number {0} does not fit in 48 bits")]
    CommitmentNumber(u64),
}

/// The per-commitment keys of the commitment's holder ("local") and counterparty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitmentKeys {
    pub local_delayed: [u8; 33],
    pub revocation: [u8; 33],
    pub local_htlc: [u8; 33],
    pub remote_htlc: [u8; 33],
    /// The counterparty's payment key (to_remote and its anchor).
    pub remote_payment: [u8; 33],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Htlc {
    /// Offered by the holder (outgoing) or received (incoming).
    pub offered: bool,
    pub amount_msat: u64,
    pub cltv_expiry: u32,
    pub payment_hash: [u8; 32],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitmentParams {
    pub funding_outpoint: OutPoint,
    /// Lower 48 bits of SHA256(opener payment basepoint ‖ accepter payment basepoint).
    pub obscuring_factor: u64,
    pub commitment_number: u64,
    pub holder_is_funder: bool,
    pub to_self_delay: u16,
    pub dust_limit_sat: u64,
    pub fee_per_kw: u64,
    pub keys: CommitmentKeys,
}

/// BOLT 3's obscuring factor.
pub fn obscuring_factor(opener_payment_basepoint: &[u8; 33], accepter_payment_basepoint: &[u8; 33]) -> u64 {
    let h =
        sha256::Hash::hash(&[&opener_payment_basepoint[..], &accepter_payment_basepoint[..]].concat()).to_byte_array();
    let mut low = [0u8; 8];
    low[2..].copy_from_slice(&h[26..]);
    u64::from_be_bytes(low)
}

/// Fee of a commitment with `untrimmed_htlcs` HTLC outputs.
pub fn commitment_fee_sat(fee_per_kw: u64, untrimmed_htlcs: usize) -> u64 {
    fee_per_kw * (TAPROOT_COMMIT_WEIGHT + HTLC_OUTPUT_WEIGHT * untrimmed_htlcs as u64) / 1000
}

/// The unsigned commitment transaction, outputs in BIP-69 order (CLTV breaks HTLC ties).
pub fn build_commitment(
    p: &CommitmentParams,
    local_balance_msat: u64,
    remote_balance_msat: u64,
    htlcs: &[Htlc],
) -> Result<Transaction, CommitmentError> {
    build_commitment_with_vouts(p, local_balance_msat, remote_balance_msat, htlcs).map(|(tx, _)| tx)
}

/// Like [`build_commitment`], also giving each HTLC's output index (`None`: trimmed).
pub fn build_commitment_with_vouts(
    p: &CommitmentParams,
    local_balance_msat: u64,
    remote_balance_msat: u64,
    htlcs: &[Htlc],
) -> Result<(Transaction, Vec<Option<u32>>), CommitmentError> {
    if p.commitment_number >= 1 << 48 {
        return Err(CommitmentError::CommitmentNumber(p.commitment_number));
    }
    let k = &p.keys;
    let untrimmed: Vec<(usize, &Htlc)> =
        htlcs.iter().enumerate().filter(|(_, h)| h.amount_msat / 1000 >= p.dust_limit_sat).collect();
    let fee = commitment_fee_sat(p.fee_per_kw, untrimmed.len());
    let (mut local_sat, mut remote_sat) = (local_balance_msat / 1000, remote_balance_msat / 1000);
    let funder = if p.holder_is_funder { &mut local_sat } else { &mut remote_sat };
    *funder = funder
        .checked_sub(fee + 2 * ANCHOR_SAT)
        .ok_or(CommitmentError::FunderCannotPay { balance_sat: *funder, fee_sat: fee })?;

    // (value, script, cltv for ordering, HTLC index)
    let mut outputs: Vec<(u64, ScriptBuf, u32, Option<usize>)> = Vec::new();
    for (i, h) in &untrimmed {
        let out = if h.offered {
            offered_htlc(&k.local_htlc, &k.remote_htlc, &k.revocation, &h.payment_hash)?
        } else {
            accepted_htlc(&k.local_htlc, &k.remote_htlc, &k.revocation, &h.payment_hash, h.cltv_expiry)?
        };
        outputs.push((h.amount_msat / 1000, out.script_pubkey(), h.cltv_expiry, Some(*i)));
    }
    let has_local = local_sat >= p.dust_limit_sat;
    let has_remote = remote_sat >= p.dust_limit_sat;
    if has_local {
        outputs.push((local_sat, to_local(&k.local_delayed, &k.revocation, p.to_self_delay)?.script_pubkey(), 0, None));
    }
    if has_remote {
        outputs.push((remote_sat, to_remote(&k.remote_payment)?.script_pubkey(), 0, None));
    }
    if has_local || !untrimmed.is_empty() {
        outputs.push((ANCHOR_SAT, anchor(&k.local_delayed)?.script_pubkey(), 0, None));
    }
    if has_remote || !untrimmed.is_empty() {
        outputs.push((ANCHOR_SAT, anchor(&k.remote_payment)?.script_pubkey(), 0, None));
    }
    outputs.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.as_bytes().cmp(b.1.as_bytes())).then_with(|| a.2.cmp(&b.2)));

    let mut vouts = alloc::vec![None; htlcs.len()];
    for (vout, o) in outputs.iter().enumerate() {
        if let Some(i) = o.3 {
            vouts[i] = Some(vout as u32);
        }
    }
    let obscured = p.commitment_number ^ p.obscuring_factor;
    let tx = Transaction {
        version: Version::TWO,
        lock_time: LockTime::from_consensus((0x20 << 24) | (obscured & 0xff_ffff) as u32),
        input: alloc::vec![TxIn {
            previous_output: p.funding_outpoint,
            script_sig: ScriptBuf::new(),
            sequence: Sequence((0x80 << 24) | ((obscured >> 24) & 0xff_ffff) as u32),
            witness: Witness::new(),
        }],
        output: outputs
            .into_iter()
            .map(|(v, s, _, _)| TxOut { value: Amount::from_sat(v), script_pubkey: s })
            .collect(),
    };
    Ok((tx, vouts))
}
