//! The seeded request stream: 32-byte messages and PSBTs spending made-up group UTXOs,
//! some of which break policy (unknown output, fee above cap). Same seed, same stream.
//!
//! Must never: depend on anything but the seed, the parameters and the group key.

use bitcoin::psbt::Psbt;
use bitcoin::{Amount, ScriptBuf, TxOut};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use qls_node::example::group_spend_psbt;
use qls_protocol::{KeyId, NodeRequest};
use qls_signer_core::wallet::wallet_script;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RequestKind {
    Message,
    Psbt,
    PsbtUnknownOutput,
    PsbtFeeAboveCap,
}

impl RequestKind {
    /// The policy tag an honest quorum must refuse this request with, if any.
    /// The kind's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            RequestKind::Message => "message",
            RequestKind::Psbt => "psbt",
            RequestKind::PsbtUnknownOutput => "psbt-unknown-output",
            RequestKind::PsbtFeeAboveCap => "psbt-fee-above-cap",
        }
    }

    pub fn expected_refusal(self) -> Option<&'static str> {
        match self {
            RequestKind::PsbtUnknownOutput => Some("policy-onchain-no-unknown-outputs"),
            RequestKind::PsbtFeeAboveCap => Some("policy-onchain-fee-range"),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct WorkItem {
    pub kind: RequestKind,
    pub request: NodeRequest,
}

pub struct WorkloadParams {
    pub seed: u64,
    pub requests: usize,
    pub psbt_share: f64,
    pub violation_share: f64,
    pub fee_sat_max: u64,
}

/// A PSBT spending a made-up group UTXO (see `qls_coordinator::example`).
pub fn psbt(key_id: &KeyId, prevout_txid: [u8; 32], in_sat: u64, outputs: Vec<TxOut>) -> Psbt {
    group_spend_psbt(key_id, prevout_txid, in_sat, outputs).expect("group key is a valid point")
}

pub fn generate(p: &WorkloadParams, key_id: &KeyId) -> Vec<WorkItem> {
    let mut rng = ChaCha20Rng::seed_from_u64(p.seed);
    let wallet = wallet_script(key_id).expect("group key is a valid point");
    (0..p.requests)
        .map(|_| {
            if !rng.gen_bool(p.psbt_share) {
                return WorkItem { kind: RequestKind::Message, request: NodeRequest::SignMessage { msg: rng.gen() } };
            }
            let in_sat = rng.gen_range(100_000..10_000_000u64);
            let fee = rng.gen_range(200..2_000u64);
            let txid: [u8; 32] = rng.gen();
            let mut outputs = vec![TxOut { value: Amount::from_sat(in_sat - fee), script_pubkey: wallet.clone() }];
            let kind = if rng.gen_bool(p.violation_share) {
                if rng.gen_bool(0.5) {
                    let foreign: [u8; 20] = rng.gen();
                    let mut script = vec![0x00, 0x14];
                    script.extend_from_slice(&foreign);
                    outputs[0].value = Amount::from_sat(in_sat - fee - 10_000);
                    outputs
                        .push(TxOut { value: Amount::from_sat(10_000), script_pubkey: ScriptBuf::from_bytes(script) });
                    RequestKind::PsbtUnknownOutput
                } else {
                    outputs[0].value = Amount::from_sat(in_sat - p.fee_sat_max - fee);
                    RequestKind::PsbtFeeAboveCap
                }
            } else {
                RequestKind::Psbt
            };
            WorkItem {
                kind,
                request: NodeRequest::SignPsbt {
                    psbt: psbt(key_id, txid, in_sat, outputs).serialize(),
                    funding_channels: vec![],
                },
            }
        })
        .collect()
}
