//! On-chain spending rules for PSBTs the group signs: outputs only to the group's own
//! wallet, allowlisted scripts or the funding outputs of channels we fund exactly as set
//! up (`policy-onchain-no-unknown-outputs`, `policy-funding-output`), a fee cap
//! (`policy-onchain-fee-range`), a standard shape (`policy-onchain-standard`), and for
//! funding transactions only segwit inputs, so the txid the channel was set up with
//! cannot change (`policy-funding-segwit-inputs`), only once the counterparty signed our
//! first commitment (`policy-funding-initial-commitment-countersigned`: funds are never
//! locked in a 2-of-2 we cannot close on our own), and within a per-channel maximum
//! (`policy-funding-max`), never for a channel the counterparty funds
//! (`policy-funding-inbound`); weight within standardness (`policy-onchain-max-size`).
//!
//! Must never: stop at the first violation (every violation is reported), or read an
//! amount from anywhere but the PSBT's own `witness_utxo`s (committed by the sighash).

use alloc::format;
use alloc::vec::Vec;

use bitcoin::psbt::Psbt;
use bitcoin::{OutPoint, Script, ScriptBuf};

use super::{OnchainPolicy, PolicyTag, Violation};
use crate::sighash::{spent_outputs, SighashError};

/// A channel funding output this cosigner allows: from a stored setup of a channel we fund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FundingOutput {
    pub outpoint: OutPoint,
    pub script: ScriptBuf,
    pub value_sat: u64,
    /// The counterparty's signature on our first holder commitment was validated (we can
    /// force-close the channel on our own).
    pub countersigned: bool,
    /// The setup was counted against the funding velocity within the current window (a
    /// setup staged windows ago would fund outside the limit).
    pub within_velocity_window: bool,
    /// The counterparty funds this channel: its commitments give it the whole value, so
    /// our wallet paying this output would hand the money over.
    pub inbound: bool,
}

/// Largest standard transaction (Bitcoin Core's `MAX_STANDARD_TX_WEIGHT`).
pub const MAX_STANDARD_TX_WEIGHT: u64 = 400_000;

/// All on-chain violations of `psbt` under `policy`, for a group whose wallet pays to
/// `wallet_script`. `funding` is `Some` for a transaction that funds channels: the
/// funding outputs the cosigner found in its own stored setups.
pub fn check_psbt(
    psbt: &Psbt,
    wallet_script: &Script,
    policy: &OnchainPolicy,
    funding: Option<&[FundingOutput]>,
) -> Result<Vec<Violation>, SighashError> {
    let mut violations = Vec::new();
    let tx = &psbt.unsigned_tx;
    let weight = tx.weight().to_wu();
    if !matches!(tx.version.0, 1 | 2) {
        violations.push(Violation {
            tag: PolicyTag::OnchainStandard,
            detail: format!("version {} (standard: 1 or 2)", tx.version.0),
        });
    }
    if weight > MAX_STANDARD_TX_WEIGHT {
        violations.push(Violation {
            tag: PolicyTag::OnchainMaxSize,
            detail: format!("weight {weight} WU, at most {MAX_STANDARD_TX_WEIGHT}"),
        });
    }
    let txid = tx.compute_txid();
    if let Some(funding) = funding {
        for (i, input) in psbt.inputs.iter().enumerate() {
            if !input.witness_utxo.as_ref().is_some_and(|o| o.script_pubkey.is_witness_program()) {
                violations.push(Violation {
                    tag: PolicyTag::FundingSegwitInputs,
                    detail: format!("input {i} of a funding transaction does not spend a known segwit output"),
                });
            }
        }
        if funding.iter().all(|f| f.inbound) {
            violations.push(Violation {
                tag: PolicyTag::FundingOutput,
                detail: "no named channel is set up here as one we fund".into(),
            });
        }
    }
    for (i, out) in tx.output.iter().enumerate() {
        let script = out.script_pubkey.as_script();
        let here = OutPoint { txid, vout: i as u32 };
        let funded = funding.unwrap_or_default();
        if let Some(f) = funded
            .iter()
            .find(|f| f.outpoint == here && f.script == out.script_pubkey && f.value_sat == out.value.to_sat())
        {
            if f.inbound {
                violations.push(Violation {
                    tag: PolicyTag::FundingInbound,
                    detail: format!("output {here} funds a channel the counterparty funds: its balance is all theirs"),
                });
                continue;
            }
            if !f.countersigned {
                violations.push(Violation {
                    tag: PolicyTag::FundingCountersigned,
                    detail: format!(
                        "output {here} funds a channel whose first holder commitment the counterparty has not signed"
                    ),
                });
            }
            if !f.within_velocity_window {
                violations.push(Violation {
                    tag: PolicyTag::FundingVelocity,
                    detail: format!(
                        "output {here} funds a channel set up before the current velocity window: it is funded in the window its setup was counted in, or not at all"
                    ),
                });
            }
            if f.value_sat > policy.funding_sat_max {
                violations.push(Violation {
                    tag: PolicyTag::FundingMax,
                    detail: format!(
                        "output {here} funds a channel with {} sat, at most {} allowed",
                        f.value_sat, policy.funding_sat_max
                    ),
                });
            }
            continue;
        }
        if let Some(f) = funded.iter().find(|f| f.script == out.script_pubkey) {
            violations.push(Violation {
                tag: PolicyTag::FundingOutput,
                detail: format!(
                    "output {here} pays {} sat to a channel's funding script; its setup says {} with {} sat",
                    out.value.to_sat(),
                    f.outpoint,
                    f.value_sat
                ),
            });
            continue;
        }
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
    use bitcoin::hashes::Hash;
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
        let v = check_psbt(&psbt, &wallet(), &OnchainPolicy::default(), None).unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].tag, PolicyTag::OnchainNoUnknownOutputs);
        let allow = OnchainPolicy { allowlisted_scripts: [foreign].into(), ..OnchainPolicy::default() };
        assert!(check_psbt(&psbt, &wallet(), &allow, None).unwrap().is_empty());
    }

    #[test]
    fn fee_above_cap_refused() {
        let policy = OnchainPolicy { fee_sat_max: 1_000, ..OnchainPolicy::default() };
        let at_cap = psbt_spending(&wallet(), 10_000, &[(wallet(), 9_000)]);
        assert!(check_psbt(&at_cap, &wallet(), &policy, None).unwrap().is_empty());
        let above = psbt_spending(&wallet(), 10_000, &[(wallet(), 8_999)]);
        let v = check_psbt(&above, &wallet(), &policy, None).unwrap();
        assert_eq!(v.iter().map(|v| v.tag).collect::<Vec<_>>(), vec![PolicyTag::OnchainFeeRange]);
        let negative = psbt_spending(&wallet(), 10_000, &[(wallet(), 10_001)]);
        assert_eq!(check_psbt(&negative, &wallet(), &policy, None).unwrap()[0].tag, PolicyTag::OnchainFeeRange);
        // Output values that overflow 64 bits when summed: a violation, not a panic.
        let huge = psbt_spending(&wallet(), 10_000, &[(wallet(), u64::MAX / 2 + 1), (wallet(), u64::MAX / 2 + 1)]);
        assert_eq!(check_psbt(&huge, &wallet(), &policy, None).unwrap()[0].tag, PolicyTag::OnchainFeeRange);
    }

    fn tags(v: Vec<Violation>) -> Vec<PolicyTag> {
        v.iter().map(|v| v.tag).collect()
    }

    #[test]
    fn nonstandard_transaction_refused() {
        let mut psbt = psbt_spending(&wallet(), 10_000, &[(wallet(), 9_000)]);
        psbt.unsigned_tx.version = Version(3);
        assert_eq!(
            tags(check_psbt(&psbt, &wallet(), &OnchainPolicy::default(), None).unwrap()),
            vec![PolicyTag::OnchainStandard]
        );
        // 2,500 outputs of 43 bytes: over 400,000 WU.
        let many: Vec<_> = (0..2_500).map(|_| (wallet(), 1)).collect();
        let big = psbt_spending(&wallet(), 10_000, &many);
        assert_eq!(
            tags(check_psbt(&big, &wallet(), &OnchainPolicy::default(), None).unwrap()),
            vec![PolicyTag::OnchainMaxSize]
        );
    }

    #[test]
    fn funding_output_must_match_the_setup() {
        let channel = ScriptBuf::new_p2wsh(&bitcoin::WScriptHash::from_byte_array([5; 32]));
        let psbt = psbt_spending(&wallet(), 100_000, &[(channel.clone(), 60_000), (wallet(), 39_000)]);
        let txid = psbt.unsigned_tx.compute_txid();
        let setup = |vout: u32, value_sat: u64| FundingOutput {
            outpoint: OutPoint { txid, vout },
            script: channel.clone(),
            value_sat,
            countersigned: true,
            within_velocity_window: true,
            inbound: false,
        };
        let check =
            |p: &Psbt, f: &[FundingOutput]| tags(check_psbt(p, &wallet(), &OnchainPolicy::default(), Some(f)).unwrap());
        assert_eq!(check(&psbt, &[setup(0, 60_000)]), vec![]);
        // Without naming the channel the output is just unknown.
        assert_eq!(
            tags(check_psbt(&psbt, &wallet(), &OnchainPolicy::default(), None).unwrap()),
            vec![PolicyTag::OnchainNoUnknownOutputs]
        );
        // The setup says another value or another output index; or no channel of ours is named.
        assert_eq!(check(&psbt, &[setup(0, 50_000)]), vec![PolicyTag::FundingOutput]);
        assert_eq!(check(&psbt, &[setup(1, 60_000)]), vec![PolicyTag::FundingOutput]);
        assert_eq!(check(&psbt, &[]), vec![PolicyTag::FundingOutput, PolicyTag::OnchainNoUnknownOutputs]);
        // An input whose spent output is not segwit (its txid could be malleated).
        let mut legacy = psbt.clone();
        legacy.inputs[0].witness_utxo.as_mut().unwrap().script_pubkey =
            ScriptBuf::new_p2pkh(&bitcoin::PubkeyHash::from_byte_array([1; 20]));
        assert_eq!(check(&legacy, &[setup(0, 60_000)]), vec![PolicyTag::FundingSegwitInputs]);
    }

    /// A 60,000-sat funding output as a channel we fund sets it up, and a PSBT paying it.
    fn funding_fixture() -> (Psbt, FundingOutput) {
        let channel = ScriptBuf::new_p2wsh(&bitcoin::WScriptHash::from_byte_array([5; 32]));
        let psbt = psbt_spending(&wallet(), 100_000, &[(channel.clone(), 60_000), (wallet(), 39_000)]);
        let outpoint = OutPoint { txid: psbt.unsigned_tx.compute_txid(), vout: 0 };
        let funding = FundingOutput {
            outpoint,
            script: channel,
            value_sat: 60_000,
            countersigned: true,
            within_velocity_window: true,
            inbound: false,
        };
        (psbt, funding)
    }

    #[test]
    fn funding_before_first_commitment_countersigned_refused() {
        let (psbt, funding) = funding_fixture();
        let check =
            |f: FundingOutput| tags(check_psbt(&psbt, &wallet(), &OnchainPolicy::default(), Some(&[f])).unwrap());
        assert_eq!(check(funding.clone()), vec![]);
        assert_eq!(
            check(FundingOutput { countersigned: false, ..funding.clone() }),
            vec![PolicyTag::FundingCountersigned]
        );
        // A setup staged before the current velocity window funds nothing.
        assert_eq!(
            check(FundingOutput { within_velocity_window: false, ..funding.clone() }),
            vec![PolicyTag::FundingVelocity]
        );
    }

    #[test]
    fn funding_a_channel_the_counterparty_funds_refused() {
        let (psbt, funding) = funding_fixture();
        let check =
            |f: &[FundingOutput]| tags(check_psbt(&psbt, &wallet(), &OnchainPolicy::default(), Some(f)).unwrap());
        // The output matches the stored setup exactly, but the setup is inbound.
        let inbound = FundingOutput { inbound: true, ..funding };
        assert_eq!(check(&[inbound]), vec![PolicyTag::FundingOutput, PolicyTag::FundingInbound]);
    }

    #[test]
    fn funding_above_the_channel_maximum_refused() {
        let (psbt, funding) = funding_fixture();
        let check = |max: u64| {
            let policy = OnchainPolicy { funding_sat_max: max, ..OnchainPolicy::default() };
            tags(check_psbt(&psbt, &wallet(), &policy, Some(core::slice::from_ref(&funding))).unwrap())
        };
        assert_eq!(check(60_000), vec![]);
        assert_eq!(check(59_999), vec![PolicyTag::FundingMax]);
    }
}
