//! An SPV funding proof from the node: its headers extend a cosigner's chain, then the
//! proof is checked against a stored funding output. Never a panic.
#![no_main]

use bitcoin::hashes::Hash;
use libfuzzer_sys::fuzz_target;
use qls_protocol::FundingProof;
use qls_signer_core::chain::ChainTip;
use qls_signer_core::funding_proof::{check, ExpectedFunding};

fuzz_target!(|data: &[u8]| {
    let Ok(proof) = postcard::from_bytes::<FundingProof>(data) else { return };
    let mut chain = ChainTip::genesis(bitcoin::Network::Regtest);
    let _ = chain.extend(bitcoin::Network::Regtest, &proof.headers);
    let script = bitcoin::ScriptBuf::new_p2wsh(&bitcoin::WScriptHash::from_byte_array([2; 32]));
    let expected = ExpectedFunding::of_setup([3; 32], 0, &script, 100_000);
    let _ = check(&chain, &proof, &expected, 1);
});
