//! The taproot-channel counterparty's fixed test keys and the channel setup a node would
//! send for it, shared by the taproot tests and `bench-taproot`.
//!
//! Must never: be used as a signer of ours; its keys are fixed test keys (not secrets).

use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use qls_protocol::{TaprootChannelSetup, TaprootCounterpartyPoints};

/// The counterparty's funding secret (its other basepoints use 0x51..=0x54).
pub const FUNDING_SECRET: [u8; 32] = [0x50; 32];
/// The counterparty's HTLC basepoint secret.
pub const HTLC_SECRET: [u8; 32] = [0x54; 32];

/// The public key of the test secret `[b; 32]` (33 bytes).
pub fn test_key(b: u8) -> [u8; 33] {
    let sk = SecretKey::from_slice(&[b; 32]).expect("a constant below the curve order");
    PublicKey::from_secret_key(&Secp256k1::new(), &sk).serialize()
}

/// A channel we fund with `value_sat` from output 0 of `funding_txid`, 144-block delays.
pub fn setup(value_sat: u64, funding_txid: [u8; 32]) -> TaprootChannelSetup {
    TaprootChannelSetup {
        channel_value_sat: value_sat,
        funding_txid,
        funding_vout: 0,
        is_outbound: true,
        holder_selected_contest_delay: 144,
        counterparty_selected_contest_delay: 144,
        counterparty_dust_limit_sat: 354,
        holder_dust_limit_sat: 354,
        counterparty: TaprootCounterpartyPoints {
            funding: test_key(0x50).to_vec(),
            revocation: test_key(0x51).to_vec(),
            payment: test_key(0x52).to_vec(),
            delayed_payment: test_key(0x53).to_vec(),
            htlc: test_key(0x54).to_vec(),
        },
    }
}
