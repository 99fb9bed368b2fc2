//! A PSBT from the node: parsing, the group inputs' BIP-341 sighashes and the on-chain
//! policy (with and without funding outputs) must never panic.
#![no_main]

use bitcoin::hashes::Hash;
use libfuzzer_sys::fuzz_target;
use qls_signer_core::policy::onchain::{check_psbt, FundingOutput};
use qls_signer_core::policy::OnchainPolicy;
use qls_signer_core::sighash::group_key_spend_sighashes;
use qls_signer_core::wallet::wallet_script;

/// The x-only generator: a valid group key.
const KEY: [u8; 32] = [
    0x79, 0xbe, 0x66, 0x7e, 0xf9, 0xdc, 0xbb, 0xac, 0x55, 0xa0, 0x62, 0x95, 0xce, 0x87, 0x0b, 0x07, 0x02, 0x9b, 0xfc,
    0xdb, 0x2d, 0xce, 0x28, 0xd9, 0x59, 0xf2, 0x81, 0x5b, 0x16, 0xf8, 0x17, 0x98,
];

fuzz_target!(|data: &[u8]| {
    let Ok(psbt) = bitcoin::psbt::Psbt::deserialize(data) else { return };
    let Ok(wallet) = wallet_script(&KEY) else { return };
    let _ = group_key_spend_sighashes(&psbt, &wallet);
    let funding = [FundingOutput {
        outpoint: bitcoin::OutPoint { txid: psbt.unsigned_tx.compute_txid(), vout: 0 },
        script: bitcoin::ScriptBuf::new_p2wsh(&bitcoin::WScriptHash::from_byte_array([1; 32])),
        value_sat: 50_000,
        countersigned: data.len() % 2 == 0,
        within_velocity_window: data.len() % 3 == 0,
        inbound: data.len() % 5 == 0,
    }];
    let _ = check_psbt(&psbt, &wallet, &OnchainPolicy::default(), Some(&funding));
    let _ = check_psbt(&psbt, &wallet, &OnchainPolicy::default(), None);
});
