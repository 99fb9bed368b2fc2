//! Example PSBTs for trying the flow and for the simnet's workload: one input spending a
//! (made-up) group UTXO, with the `witness_utxo` the cosigners need.
//!
//! Must never: be mistaken for wallet code: the prevout does not exist on any chain.

use bitcoin::absolute::LockTime;
use bitcoin::hashes::Hash;
use bitcoin::psbt::Psbt;
use bitcoin::transaction::Version;
use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, Witness};

use qls_protocol::KeyId;
use qls_signer_core::wallet::{wallet_script, BadKeyId};

/// A PSBT spending `in_sat` from the group's wallet at the made-up outpoint
/// `prevout_txid:0`, to `outputs`.
pub fn group_spend_psbt(
    key_id: &KeyId,
    prevout_txid: [u8; 32],
    in_sat: u64,
    outputs: Vec<TxOut>,
) -> Result<Psbt, BadKeyId> {
    let wallet = wallet_script(key_id)?;
    let tx = Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint { txid: Txid::from_byte_array(prevout_txid), vout: 0 },
            script_sig: ScriptBuf::new(),
            sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
            witness: Witness::new(),
        }],
        output: outputs,
    };
    let mut psbt = Psbt::from_unsigned_tx(tx).expect("a transaction without signatures");
    psbt.inputs[0].witness_utxo = Some(TxOut { value: Amount::from_sat(in_sat), script_pubkey: wallet });
    Ok(psbt)
}
