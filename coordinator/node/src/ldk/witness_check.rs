//! Checks a P2WSH input witness the quorum returned before the node broadcasts it: the
//! witness script is the one the spent output commits to, and the signature is a
//! SIGHASH_ALL signature valid for this input and its value under a key that script names
//! (any other sighash type would let the transaction be changed around our signature).
//!
//! Not a script interpreter: it catches a witness for another input, value, transaction or
//! key (a key holder's bug or a coordinator's forgery), not a script that fails otherwise.
//!
//! Must never: accept a witness whose script hash differs from the spent output's.

use bitcoin::hashes::Hash;
use bitcoin::script::Instruction;
use bitcoin::secp256k1::{All, Message, PublicKey, Secp256k1};
use bitcoin::sighash::SighashCache;
use bitcoin::{ScriptBuf, Transaction, TxOut};

/// Why a witness does not sign its input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WitnessError {
    #[error("input {0} does not exist")]
    NoInput(usize),
    #[error("the witness has {0} elements, at least a signature and a script expected")]
    Shape(usize),
    #[error("the witness script is not the one the spent output commits to")]
    ScriptMismatch,
    #[error("the first witness element is not an ECDSA signature with a sighash type")]
    Signature,
    #[error("the signature's sighash type is {0}, not SIGHASH_ALL")]
    SighashType(String),
    #[error("sighash: {0}")]
    Sighash(String),
    #[error("the signature verifies under no key of the witness script")]
    NoKey,
}

/// Whether input `input` of `tx`, spending `spent`, carries a valid P2WSH signature.
pub fn p2wsh_witness_signs(
    tx: &Transaction,
    input: usize,
    spent: &TxOut,
    secp: &Secp256k1<All>,
) -> Result<(), WitnessError> {
    let witness = &tx.input.get(input).ok_or(WitnessError::NoInput(input))?.witness;
    let (Some(first), Some(last)) = (witness.nth(0), witness.last()) else {
        return Err(WitnessError::Shape(witness.len()));
    };
    if witness.len() < 2 {
        return Err(WitnessError::Shape(witness.len()));
    }
    let script = ScriptBuf::from_bytes(last.to_vec());
    if script.to_p2wsh() != spent.script_pubkey {
        return Err(WitnessError::ScriptMismatch);
    }
    let sig = bitcoin::ecdsa::Signature::from_slice(first).map_err(|_| WitnessError::Signature)?;
    if sig.sighash_type != bitcoin::sighash::EcdsaSighashType::All {
        return Err(WitnessError::SighashType(sig.sighash_type.to_string()));
    }
    let sighash = SighashCache::new(tx)
        .p2wsh_signature_hash(input, &script, spent.value, sig.sighash_type)
        .map_err(|e| WitnessError::Sighash(e.to_string()))?;
    let message = Message::from_digest(sighash.to_byte_array());
    let signs = script
        .instructions()
        .filter_map(|i| match i {
            Ok(Instruction::PushBytes(b)) if b.len() == 33 => PublicKey::from_slice(b.as_bytes()).ok(),
            _ => None,
        })
        .any(|key| secp.verify_ecdsa(&message, &sig.signature, &key).is_ok());
    if signs {
        Ok(())
    } else {
        Err(WitnessError::NoKey)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::blockdata::opcodes::all::OP_CHECKSIG;
    use bitcoin::secp256k1::SecretKey;
    use bitcoin::sighash::EcdsaSighashType;
    use bitcoin::{absolute, transaction, Amount, OutPoint, Sequence, TxIn, Witness};

    fn signed(value: u64, sign_value: u64, key: &SecretKey) -> (Transaction, TxOut) {
        let secp = Secp256k1::new();
        let pk = PublicKey::from_secret_key(&secp, &SecretKey::from_slice(&[7; 32]).unwrap());
        let script = bitcoin::script::Builder::new().push_slice(pk.serialize()).push_opcode(OP_CHECKSIG).into_script();
        let spent = TxOut { value: Amount::from_sat(value), script_pubkey: script.to_p2wsh() };
        let mut tx = Transaction {
            version: transaction::Version::TWO,
            lock_time: absolute::LockTime::ZERO,
            input: vec![TxIn { previous_output: OutPoint::null(), sequence: Sequence::MAX, ..Default::default() }],
            output: vec![TxOut { value: Amount::from_sat(value - 500), script_pubkey: ScriptBuf::new() }],
        };
        let sighash = SighashCache::new(&tx)
            .p2wsh_signature_hash(0, &script, Amount::from_sat(sign_value), EcdsaSighashType::All)
            .unwrap();
        let sig = secp.sign_ecdsa(&Message::from_digest(sighash.to_byte_array()), key);
        let sig = bitcoin::ecdsa::Signature { signature: sig, sighash_type: EcdsaSighashType::All };
        tx.input[0].witness = Witness::from_slice(&[sig.to_vec(), script.to_bytes()]);
        (tx, spent)
    }

    #[test]
    fn a_signature_by_the_scripts_key_over_the_right_value_verifies() {
        let secp = Secp256k1::new();
        let key = SecretKey::from_slice(&[7; 32]).unwrap();
        let (tx, spent) = signed(10_000, 10_000, &key);
        assert_eq!(p2wsh_witness_signs(&tx, 0, &spent, &secp), Ok(()));
    }

    #[test]
    fn a_wrong_value_key_or_script_is_refused() {
        let secp = Secp256k1::new();
        let key = SecretKey::from_slice(&[7; 32]).unwrap();
        let (tx, spent) = signed(10_000, 9_999, &key);
        assert_eq!(p2wsh_witness_signs(&tx, 0, &spent, &secp), Err(WitnessError::NoKey));
        let (tx, spent) = signed(10_000, 10_000, &SecretKey::from_slice(&[8; 32]).unwrap());
        assert_eq!(p2wsh_witness_signs(&tx, 0, &spent, &secp), Err(WitnessError::NoKey));
        let (tx, mut spent) = signed(10_000, 10_000, &key);
        spent.script_pubkey = ScriptBuf::new_p2wsh(&bitcoin::WScriptHash::all_zeros());
        assert_eq!(p2wsh_witness_signs(&tx, 0, &spent, &secp), Err(WitnessError::ScriptMismatch));
        assert_eq!(p2wsh_witness_signs(&tx, 1, &spent, &secp), Err(WitnessError::NoInput(1)));
    }

    #[test]
    fn a_valid_signature_of_another_sighash_type_is_refused() {
        let secp = Secp256k1::new();
        let key = SecretKey::from_slice(&[7; 32]).unwrap();
        let (mut tx, spent) = signed(10_000, 10_000, &key);
        let script = ScriptBuf::from_bytes(tx.input[0].witness.last().unwrap().to_vec());
        let sighash = SighashCache::new(&tx)
            .p2wsh_signature_hash(0, &script, spent.value, EcdsaSighashType::SinglePlusAnyoneCanPay)
            .unwrap();
        let sig = secp.sign_ecdsa(&Message::from_digest(sighash.to_byte_array()), &key);
        let sig = bitcoin::ecdsa::Signature { signature: sig, sighash_type: EcdsaSighashType::SinglePlusAnyoneCanPay };
        tx.input[0].witness = Witness::from_slice(&[sig.to_vec(), script.to_bytes()]);
        assert_eq!(
            p2wsh_witness_signs(&tx, 0, &spent, &secp),
            Err(WitnessError::SighashType("SIGHASH_SINGLE|SIGHASH_ANYONECANPAY".into()))
        );
    }
}
