//! On-chain spending rules for PSBTs the group signs: outputs only to the group's own
//! wallet or allowlisted scripts (`policy-onchain-no-unknown-outputs`), and a fee cap
//! (`policy-onchain-fee-range`).
//!
//! Must never: stop at the first violation (every violation is reported), or read an
//! amount from anywhere but the PSBT's own `witness_utxo`s (committed by the sighash).

use alloc::format;
use alloc::vec::Vec;

use bitcoin::psbt::Psbt;
use bitcoin::Script;

use super::{OnchainPolicy, PolicyTag, Violation};
use crate::sighash::{spent_outputs, SighashError};

/// All on-chain violations of `psbt` under `policy`, for a group whose wallet pays to
/// `wallet_script`.
pub fn check_psbt(psbt: &Psbt, wallet_script: &Script, policy: &OnchainPolicy) -> Result<Vec<Violation>, SighashError> {
    let mut violations = Vec::new();
    for (i, out) in psbt.unsigned_tx.output.iter().enumerate() {
        let script = out.script_pubkey.as_script();
        if script != wallet_script && !policy.allows(script) {
            violations.push(Violation {
                tag: PolicyTag::OnchainNoUnknownOutputs,
                detail: format!(
                    "output {i} pays {} sat to unknown script {}",
                    out.value.to_sat(),
                    script.to_hex_string()
                ),
            });
        }
    }
    let sum = |mut values: alloc::vec::IntoIter<u64>| values.try_fold(0u64, |a, v| a.checked_add(v));
    let inputs = sum(spent_outputs(psbt)?.iter().map(|o| o.value.to_sat()).collect::<Vec<_>>().into_iter());
    let outputs = sum(psbt.unsigned_tx.output.iter().map(|o| o.value.to_sat()).collect::<Vec<_>>().into_iter());
    let (Some(inputs_sat), Some(outputs_sat)) = (inputs, outputs) else {
        violations.push(Violation { tag: PolicyTag::OnchainFeeRange, detail: "amounts overflow 64 bits".into() });
        return Ok(violations);
    };
    match inputs_sat.checked_sub(outputs_sat) {
        None => violations.push(Violation {
            tag: PolicyTag::OnchainFeeRange,
            detail: format!("outputs ({outputs_sat} sat) exceed inputs ({inputs_sat} sat)"),
        }),
        Some(fee) if fee > policy.fee_sat_max => violations.push(Violation {
            tag: PolicyTag::OnchainFeeRange,
            detail: format!("fee {fee} sat exceeds cap {} sat", policy.fee_sat_max),
        }),
        Some(_) => {}
    }
    Ok(violations)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use alloc::vec;
    use bitcoin::absolute::LockTime;
    use bitcoin::transaction::Version;
    use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness};

    pub(crate) fn psbt_spending(wallet: &ScriptBuf, in_sat: u64, outs: &[(ScriptBuf, u64)]) -> Psbt {
        let tx = Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint::null(),
                script_sig: ScriptBuf::new(),
                sequence: Sequence::MAX,
                witness: Witness::new(),
            }],
            output: outs.iter().map(|(s, v)| TxOut { value: Amount::from_sat(*v), script_pubkey: s.clone() }).collect(),
        };
        let mut psbt = Psbt::from_unsigned_tx(tx).unwrap();
        psbt.inputs[0].witness_utxo = Some(TxOut { value: Amount::from_sat(in_sat), script_pubkey: wallet.clone() });
        psbt
    }

    fn wallet() -> ScriptBuf {
        let mut g = [0u8; 32];
        hex::decode_to_slice("79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798", &mut g).unwrap();
        crate::wallet::wallet_script(&g).unwrap()
    }

    #[test]
    fn unknown_output_refused() {
        let foreign =
            ScriptBuf::from_bytes(vec![0x00, 0x14, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7]);
        let psbt = psbt_spending(&wallet(), 10_000, &[(foreign.clone(), 4_000), (wallet(), 5_000)]);
        let v = check_psbt(&psbt, &wallet(), &OnchainPolicy::default()).unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].tag, PolicyTag::OnchainNoUnknownOutputs);
        let allow = OnchainPolicy { allowlisted_scripts: [foreign].into(), ..OnchainPolicy::default() };
        assert!(check_psbt(&psbt, &wallet(), &allow).unwrap().is_empty());
    }

    #[test]
    fn fee_above_cap_refused() {
        let policy = OnchainPolicy { fee_sat_max: 1_000, ..OnchainPolicy::default() };
        let at_cap = psbt_spending(&wallet(), 10_000, &[(wallet(), 9_000)]);
        assert!(check_psbt(&at_cap, &wallet(), &policy).unwrap().is_empty());
        let above = psbt_spending(&wallet(), 10_000, &[(wallet(), 8_999)]);
        let v = check_psbt(&above, &wallet(), &policy).unwrap();
        assert_eq!(v.iter().map(|v| v.tag).collect::<Vec<_>>(), vec![PolicyTag::OnchainFeeRange]);
        let negative = psbt_spending(&wallet(), 10_000, &[(wallet(), 10_001)]);
        assert_eq!(check_psbt(&negative, &wallet(), &policy).unwrap()[0].tag, PolicyTag::OnchainFeeRange);
        // Output values that overflow 64 bits when summed: a violation, not a panic.
        let huge = psbt_spending(&wallet(), 10_000, &[(wallet(), u64::MAX / 2 + 1), (wallet(), u64::MAX / 2 + 1)]);
        assert_eq!(check_psbt(&huge, &wallet(), &policy).unwrap()[0].tag, PolicyTag::OnchainFeeRange);
    }
}
