//! A legacy channel request from the node, judged by a cosigner that has no state for the
//! channel yet (a setup with any points, channel type and delays, or anything else):
//! typed errors or violations, never a panic.
#![no_main]

use bitcoin::secp256k1::Secp256k1;
use libfuzzer_sys::fuzz_target;
use qls_protocol::ChannelRequest;
use qls_signer_core::channel::{apply, Context, HolderKeysCheck, PaymentIndex};
use qls_signer_core::policy::PolicyConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = postcard::from_bytes::<ChannelRequest>(data) else { return };
    let policy = PolicyConfig::default();
    let secp = Secp256k1::new();
    let ctx = Context {
        policy: &policy,
        own_scripts: &[],
        secp: &secp,
        now: 1_700_000_000,
        stored_channels: 0,
            network: bitcoin::Network::Regtest,
        holder_keys: Some(HolderKeysCheck::Ours),
        chain: None,
    };
    let mut index = PaymentIndex::default();
    if let Ok(applied) = apply(&[7; 32], None, &request, &[0; 32], &mut index, &ctx) {
        // A stored setup, then the same request again against it.
        let _ = apply(&[7; 32], Some(&applied.state), &request, &[1; 32], &mut index, &ctx);
    }
});
