//! Second-level HTLC transactions of simple taproot channels: HTLC-success (for HTLCs the
//! holder received) and HTLC-timeout (for HTLCs it offered), zero fee, one input at
//! sequence 1, one output to the delayed second-level script; their tapscript sighashes
//! (the counterparty signs with `SINGLE|ANYONECANPAY`, the holder with `DEFAULT`) and
//! their witnesses. Checked against lnd's taproot vectors, signatures included.
//!
//! Must never: sign a second-level transaction whose output is not the holder's delayed
//! script, or compute a sighash from a prevout the caller did not pass.

use alloc::vec::Vec;

use bitcoin::absolute::LockTime;
use bitcoin::hashes::Hash;
use bitcoin::sighash::{Prevouts, SighashCache};
use bitcoin::taproot::{LeafVersion, TapLeafHash};
use bitcoin::transaction::Version;
use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, TapSighashType, Transaction, TxIn, TxOut, Txid, Witness};

use crate::taproot_commitment::{CommitmentKeys, Htlc};
use crate::taproot_scripts::{accepted_htlc, offered_htlc, second_level_htlc, ScriptError, TaprootOutput};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HtlcTxError {
    #[error(transparent)]
    Script(#[from] ScriptError),
    #[error("sighash: {0}")]
    Sighash(alloc::string::String),
    #[error("no control block for the HTLC leaf")]
    ControlBlock,
}

/// A second-level transaction and what spending its input needs.
#[derive(Debug, Clone)]
pub struct SecondLevelTx {
    pub tx: Transaction,
    /// The commitment's HTLC output being spent.
    pub spent: TxOut,
    pub htlc_output: TaprootOutput,
    /// `success` for received HTLCs, `timeout` for offered ones.
    pub leaf_name: &'static str,
}

/// The HTLC-success (received) or HTLC-timeout (offered) transaction for `htlc`, spending
/// output `vout` of the commitment `commitment_txid`.
pub fn second_level_tx(
    commitment_txid: Txid,
    vout: u32,
    htlc: &Htlc,
    keys: &CommitmentKeys,
    to_self_delay: u16,
) -> Result<SecondLevelTx, HtlcTxError> {
    let (htlc_output, leaf_name, lock_time) = if htlc.offered {
        (
            offered_htlc(&keys.local_htlc, &keys.remote_htlc, &keys.revocation, &htlc.payment_hash)?,
            "timeout",
            htlc.cltv_expiry,
        )
    } else {
        (
            accepted_htlc(&keys.local_htlc, &keys.remote_htlc, &keys.revocation, &htlc.payment_hash, htlc.cltv_expiry)?,
            "success",
            0,
        )
    };
    let value = Amount::from_sat(htlc.amount_msat / 1000);
    let out = second_level_htlc(&keys.local_delayed, &keys.revocation, to_self_delay)?;
    let tx = Transaction {
        version: Version::TWO,
        lock_time: LockTime::from_consensus(lock_time),
        input: alloc::vec![TxIn {
            previous_output: OutPoint { txid: commitment_txid, vout },
            script_sig: ScriptBuf::new(),
            sequence: Sequence(1),
            witness: Witness::new(),
        }],
        output: alloc::vec![TxOut { value, script_pubkey: out.script_pubkey() }],
    };
    let spent = TxOut { value, script_pubkey: htlc_output.script_pubkey() };
    Ok(SecondLevelTx { tx, spent, htlc_output, leaf_name })
}

impl SecondLevelTx {
    fn leaf(&self) -> &ScriptBuf {
        self.htlc_output.leaf(self.leaf_name).expect("both HTLC trees have both leaves")
    }

    /// The tapscript sighash of the HTLC leaf under `ty`.
    pub fn sighash(&self, ty: TapSighashType) -> Result<[u8; 32], HtlcTxError> {
        let leaf = TapLeafHash::from_script(self.leaf(), LeafVersion::TapScript);
        let spent = [self.spent.clone()];
        let prevouts = match ty {
            TapSighashType::AllPlusAnyoneCanPay
            | TapSighashType::NonePlusAnyoneCanPay
            | TapSighashType::SinglePlusAnyoneCanPay => Prevouts::One(0, self.spent.clone()),
            _ => Prevouts::All(&spent),
        };
        SighashCache::new(&self.tx)
            .taproot_script_spend_signature_hash(0, &prevouts, leaf, ty)
            .map(|h| h.to_byte_array())
            .map_err(|e| HtlcTxError::Sighash(alloc::format!("{e}")))
    }

    /// The complete witness: counterparty signature (with its sighash byte), holder
    /// signature, the preimage for HTLC-success, the leaf script and its control block.
    pub fn witness(
        &self,
        remote_sig: &[u8],
        local_sig: &[u8],
        preimage: Option<&[u8; 32]>,
    ) -> Result<Witness, HtlcTxError> {
        let control = self
            .htlc_output
            .spend_info
            .control_block(&(self.leaf().clone(), LeafVersion::TapScript))
            .ok_or(HtlcTxError::ControlBlock)?;
        let mut items: Vec<Vec<u8>> = alloc::vec![remote_sig.to_vec(), local_sig.to_vec()];
        if let Some(p) = preimage {
            items.push(p.to_vec());
        }
        items.push(self.leaf().to_bytes());
        items.push(control.serialize());
        Ok(Witness::from_slice(&items))
    }
}
