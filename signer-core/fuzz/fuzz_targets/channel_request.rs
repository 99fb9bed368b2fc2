//! A legacy channel request from the node, judged by a cosigner that has no state for the
//! channel yet (a setup with any points, channel type and delays, or anything else):
//! typed errors or violations, never a panic. The same bytes as a batched sweep, judged
//! against that channel's state if the request stored one.
#![no_main]

use bitcoin::secp256k1::Secp256k1;
use libfuzzer_sys::fuzz_target;
use qls_protocol::{ChannelRequest, SweepRequest};
use qls_signer_core::channel::{apply, judge_sweep, ChannelError, Context, HolderKeysCheck, PaymentIndex};
use qls_signer_core::policy::PolicyConfig;

fuzz_target!(|data: &[u8]| {
    let request = postcard::from_bytes::<ChannelRequest>(data).ok();
    let sweep = postcard::from_bytes::<SweepRequest>(data).ok();
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
    let applied = request.and_then(|r| {
        let applied = apply(&[7; 32], None, &r, &[0; 32], &mut index, &ctx).ok()?;
        // A stored setup, then the same request again against it.
        let _ = apply(&[7; 32], Some(&applied.state), &r, &[1; 32], &mut index, &ctx);
        Some(applied)
    });
    if let Some(sweep) = sweep {
        let state = applied.as_ref().map(|a| &a.state);
        let state_of = |_: &[u8; 32]| state.ok_or_else(|| ChannelError::UnknownChannel { channel: "fuzz".into() });
        let _ = judge_sweep(&mut Vec::new(), &sweep, state_of, &ctx);
    }
});
