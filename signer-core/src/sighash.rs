//! BIP-341 sighashes computed by the cosigner itself from a PSBT: which inputs are the
//! group's, and the key-path message each of them signs.
//!
//! Only `SIGHASH_DEFAULT`/`SIGHASH_ALL` are signed: `NONE`, `SINGLE` and
//! `ANYONECANPAY` would let outputs or inputs change after signing, past the policy
//! checks. Because BIP-341 commits to every spent output's amount and script, the
//! amounts the fee policy reads from `witness_utxo` cannot be lied about without
//! invalidating the signature. Must never: take a sighash or amount from a field the
//! coordinator supplies outside the PSBT.

use alloc::vec::Vec;

use bitcoin::hashes::Hash;
use bitcoin::psbt::Psbt;
use bitcoin::sighash::{Prevouts, SighashCache};
use bitcoin::{Script, TapSighashType, Transaction, TxOut};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SighashError {
    #[error("PSBT does not decode: {0}")]
    BadPsbt(alloc::string::String),
    #[error("input {input} has no witness_utxo (taproot sighashes need every spent output)")]
    MissingPrevout { input: usize },
    #[error("input {input} asks for sighash type {found:#x}; only DEFAULT and ALL are signed")]
    UnsupportedSighashType { input: usize, found: u32 },
    #[error("no input spends the group's wallet output")]
    NoGroupInputs,
    #[error("sighash computation failed on input {input}: {reason}")]
    Compute { input: usize, reason: alloc::string::String },
}

/// The BIP-341 key-path sighash of input `input_index` of `tx`.
pub fn taproot_key_spend_sighash(
    tx: &Transaction,
    prevouts: &[TxOut],
    input_index: usize,
    sighash_type: TapSighashType,
) -> Result<[u8; 32], SighashError> {
    let mut cache = SighashCache::new(tx);
    cache
        .taproot_key_spend_signature_hash(input_index, &Prevouts::All(prevouts), sighash_type)
        .map(|h| h.to_byte_array())
        .map_err(|e| SighashError::Compute { input: input_index, reason: alloc::format!("{e}") })
}

pub fn parse_psbt(bytes: &[u8]) -> Result<Psbt, SighashError> {
    Psbt::deserialize(bytes).map_err(|e| SighashError::BadPsbt(alloc::format!("{e}")))
}

/// Every spent output, in input order; all must be present.
pub fn spent_outputs(psbt: &Psbt) -> Result<Vec<TxOut>, SighashError> {
    psbt.inputs
        .iter()
        .enumerate()
        .map(|(input, i)| i.witness_utxo.clone().ok_or(SighashError::MissingPrevout { input }))
        .collect()
}

/// `(input index, sighash)` for every input that spends `wallet_script`, in input order.
pub fn group_key_spend_sighashes(psbt: &Psbt, wallet_script: &Script) -> Result<Vec<(usize, [u8; 32])>, SighashError> {
    let prevouts = spent_outputs(psbt)?;
    let mut out = Vec::new();
    for (input, prevout) in prevouts.iter().enumerate() {
        if prevout.script_pubkey.as_script() != wallet_script {
            continue;
        }
        let sighash_type = match psbt.inputs[input].sighash_type {
            None => TapSighashType::Default,
            Some(t) => match t.taproot_hash_ty() {
                Ok(ty @ (TapSighashType::Default | TapSighashType::All)) => ty,
                _ => return Err(SighashError::UnsupportedSighashType { input, found: t.to_u32() }),
            },
        };
        out.push((input, taproot_key_spend_sighash(&psbt.unsigned_tx, &prevouts, input, sighash_type)?));
    }
    if out.is_empty() {
        return Err(SighashError::NoGroupInputs);
    }
    Ok(out)
}
