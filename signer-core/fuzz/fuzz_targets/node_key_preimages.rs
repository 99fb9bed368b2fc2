//! What the node asks the node key to sign: a BOLT 11 invoice's hrp and 5-bit data, gossip
//! of each kind, and a payee's BOLT 11 invoice string in a payment approval. Parsing and
//! judging must never panic.
#![no_main]

use bitcoin::constants::ChainHash;
use bitcoin::secp256k1::Secp256k1;
use libfuzzer_sys::fuzz_target;
use qls_protocol::GossipKind;
use qls_signer_core::channel::{approve_payment, PaymentIndex, PaymentRequest};
use qls_signer_core::node_key::{gossip_digest, invoice_digest};
use qls_signer_core::policy::ChannelPolicy;

fuzz_target!(|data: &[u8]| {
    let mut v = Vec::new();
    if let Some((&split, rest)) = data.split_first() {
        let (hrp, body) = rest.split_at(usize::from(split).min(rest.len()));
        let _ = invoice_digest(&mut v, hrp, body, &[0; 32], None);
    }
    let chain = ChainHash::using_genesis_block(bitcoin::Network::Regtest);
    for kind in [GossipKind::ChannelAnnouncement, GossipKind::ChannelUpdate, GossipKind::NodeAnnouncement] {
        let _ = gossip_digest(&mut v, kind, data, chain);
    }
    if let Ok(invoice) = core::str::from_utf8(data) {
        let secp = Secp256k1::new();
        let mut index = PaymentIndex::new(Default::default(), 0, 10);
        let req = PaymentRequest {
            hash: &[1; 32],
            amount_msat: 1_000,
            expires_at: 1_800_000_000,
            invoice: Some(invoice),
            approval: None,
        };
        approve_payment(&mut v, &ChannelPolicy::default(), 1_700_000_000, &req, &mut index, &secp);
    }
});
