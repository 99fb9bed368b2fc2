//! What a node-key signature means: every request that the node key signs is rebuilt
//! here into the one digest its kind signs, from a preimage that parses as that kind, so
//! that no request of one kind yields a signature valid as another.
//!
//! The kinds and their digests (all ECDSA under the node key):
//! - BOLT 11 invoice: SHA-256(hrp ‖ packed 5-bit data), where the hrp parses as a BOLT 11
//!   hrp (starts with `ln`) and the data as a BOLT 11 data part with the request's payment
//!   hash and amount (`policy-node-invoice-shape`). Such a preimage is at least 43 bytes
//!   and starts with `ln`.
//! - Gossip (channel announcement, channel update, node announcement): SHA-256d(message),
//!   where the message parses as the named kind, a channel announcement or update is for
//!   this cosigner's chain, and the message does not start with LN `signmessage`'s prefix
//!   (`policy-node-gossip-shape`). The inner SHA-256 makes the signed preimage 32 bytes.
//! - Heartbeat: a tagged hash (`chain::heartbeat_message`), a 132-byte preimage starting
//!   with the tag's hash, never `ln`.
//! - LN `signmessage`: SHA-256d("Lightning Signed Message:" ‖ message), the prefix added
//!   here: its inner preimage starts with the prefix, which gossip never does, and its
//!   outer preimage is 32 bytes, which an invoice's (≥ 43) and a heartbeat's (132) never are.
//!
//! Preimage lengths/prefixes that cannot meet, so one digest has one meaning.
//!
//! Must never: hand back a digest for a preimage it did not parse, or take a digest from
//! the request.

use alloc::format;
use alloc::vec::Vec;

use bech32::Fe32;
use bitcoin::constants::ChainHash;
use bitcoin::hashes::{sha256, sha256d, Hash};
use lightning::bolt11_invoice::RawBolt11Invoice;
use lightning::ln::msgs::{UnsignedChannelAnnouncement, UnsignedChannelUpdate, UnsignedNodeAnnouncement};
use lightning::util::ser::LengthReadable;
use qls_protocol::GossipKind;

use crate::policy::{PolicyTag, Violation};

/// LN `signmessage`'s prefix: a gossip message starting with it would sign as a message.
pub const SIGNMESSAGE_PREFIX: &[u8] = b"Lightning Signed Message:";

/// The digest an LN `signmessage` signature of `message` signs (the prefix added here).
pub fn message_digest(message: &[u8]) -> [u8; 32] {
    sha256d::Hash::hash(&[SIGNMESSAGE_PREFIX, message].concat()).to_byte_array()
}

/// The digest a BOLT 11 invoice signature signs, if `hrp` and `data` (5-bit values, one
/// per byte, signature excluded) parse as an invoice for `payment_hash` of `amount_msat`.
pub fn invoice_digest(
    violations: &mut Vec<Violation>,
    hrp: &[u8],
    data: &[u8],
    payment_hash: &[u8; 32],
    amount_msat: Option<u64>,
) -> Option<[u8; 32]> {
    let mut flag = |detail: alloc::string::String| {
        violations.push(Violation { tag: PolicyTag::NodeInvoiceShape, detail });
        None
    };
    let Ok(hrp) = core::str::from_utf8(hrp) else { return flag("the invoice's hrp is not UTF-8".into()) };
    let Ok(fes) = data.iter().map(|b| Fe32::try_from(*b)).collect::<Result<Vec<_>, _>>() else {
        return flag("the invoice data holds a value above 31 (not 5-bit)".into());
    };
    let invoice = match RawBolt11Invoice::from_raw(hrp, &fes) {
        Ok(i) => i,
        Err(e) => return flag(format!("not a BOLT 11 invoice: {e}")),
    };
    match invoice.payment_hash() {
        Some(h) if h.0.to_byte_array() == *payment_hash => {}
        _ => return flag("the invoice does not carry the request's payment hash".into()),
    }
    let amount = invoice.amount_pico_btc().map(|p| p / 10);
    if amount != amount_msat {
        return flag(format!("the invoice is for {amount:?} msat, the request says {amount_msat:?}"));
    }
    Some(invoice.signable_hash())
}

/// The digest a gossip signature signs, if `message` (the unsigned message, as LDK's
/// `UnsignedGossipMessage` encodes it) parses as `kind` on the chain `chain`.
pub fn gossip_digest(
    violations: &mut Vec<Violation>,
    kind: GossipKind,
    message: &[u8],
    chain: ChainHash,
) -> Option<[u8; 32]> {
    let mut flag = |detail: alloc::string::String| {
        violations.push(Violation { tag: PolicyTag::NodeGossipShape, detail });
        None
    };
    if message.starts_with(SIGNMESSAGE_PREFIX) {
        return flag("the message starts with LN signmessage's prefix".into());
    }
    let chain_of = match kind {
        GossipKind::ChannelAnnouncement => {
            UnsignedChannelAnnouncement::read_from_fixed_length_buffer(&mut &message[..]).map(|m| Some(m.chain_hash))
        }
        GossipKind::ChannelUpdate => {
            UnsignedChannelUpdate::read_from_fixed_length_buffer(&mut &message[..]).map(|m| Some(m.chain_hash))
        }
        GossipKind::NodeAnnouncement => {
            UnsignedNodeAnnouncement::read_from_fixed_length_buffer(&mut &message[..]).map(|_| None)
        }
    };
    match chain_of {
        Err(e) => flag(format!("not a {kind:?}: {e:?}")),
        Ok(Some(c)) if c != chain => flag(format!("a {kind:?} for chain {c}, this cosigner follows {chain}")),
        Ok(_) => Some(sha256d::Hash::hash(message).to_byte_array()),
    }
}

/// SHA-256 of an invoice preimage (what LDK's `signable_hash` is), for tests and checks.
pub fn invoice_preimage_hash(hrp: &[u8], packed_data: &[u8]) -> [u8; 32] {
    sha256::Hash::hash(&[hrp, packed_data].concat()).to_byte_array()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use bitcoin::secp256k1::{Secp256k1, SecretKey};
    use lightning::bolt11_invoice::{Currency, InvoiceBuilder, PaymentSecret};
    use lightning::util::ser::Writeable;

    fn raw_invoice(amount_msat: u64) -> RawBolt11Invoice {
        let secp = Secp256k1::new();
        let key = SecretKey::from_slice(&[3; 32]).unwrap();
        InvoiceBuilder::new(Currency::Regtest)
            .description("coffee".into())
            .payment_hash(sha256::Hash::hash(&[1; 32]))
            .payment_secret(PaymentSecret([2; 32]))
            .duration_since_epoch(core::time::Duration::from_secs(1_700_000_000))
            .min_final_cltv_expiry_delta(18)
            .amount_milli_satoshis(amount_msat)
            .build_signed(|h| secp.sign_ecdsa_recoverable(h, &key))
            .unwrap()
            .into_signed_raw()
            .raw_invoice()
            .clone()
    }

    fn hash1() -> [u8; 32] {
        sha256::Hash::hash(&[1; 32]).to_byte_array()
    }

    #[test]
    fn invoice_digest_is_ldks_signable_hash_and_needs_a_real_invoice() {
        let invoice = raw_invoice(5_000);
        let (hrp, data) = invoice.to_raw();
        let data: Vec<u8> = data.iter().map(|f| f.to_u8()).collect();
        let mut v = Vec::new();
        let digest = invoice_digest(&mut v, hrp.as_bytes(), &data, &hash1(), Some(5_000));
        assert_eq!(digest, Some(invoice.signable_hash()));
        assert!(v.is_empty());
        // Another hash or amount; a chosen preimage (e.g. a heartbeat's) as hrp and data.
        let tags = |hrp: &[u8], data: &[u8], hash: [u8; 32], amount| {
            let mut v = Vec::new();
            assert!(invoice_digest(&mut v, hrp, data, &hash, amount).is_none());
            v.iter().map(|v| v.tag).collect::<Vec<_>>()
        };
        assert_eq!(tags(hrp.as_bytes(), &data, [9; 32], Some(5_000)), vec![PolicyTag::NodeInvoiceShape]);
        assert_eq!(tags(hrp.as_bytes(), &data, hash1(), Some(6_000)), vec![PolicyTag::NodeInvoiceShape]);
        let heartbeat = crate::chain::heartbeat_message(1, &[2; 32], 3);
        assert_eq!(tags(&heartbeat[..16], &[1, 2, 3], hash1(), None), vec![PolicyTag::NodeInvoiceShape]);
        assert_eq!(tags(b"lnbcrt", &[40], hash1(), None), vec![PolicyTag::NodeInvoiceShape]);
    }

    #[test]
    fn gossip_must_parse_as_its_kind_on_our_chain() {
        let update = UnsignedChannelUpdate {
            chain_hash: ChainHash::using_genesis_block(bitcoin::Network::Regtest),
            short_channel_id: 42,
            timestamp: 1,
            message_flags: 1,
            channel_flags: 0,
            cltv_expiry_delta: 40,
            htlc_minimum_msat: 1,
            htlc_maximum_msat: 1_000,
            fee_base_msat: 1,
            fee_proportional_millionths: 1,
            excess_data: vec![],
        };
        let bytes = update.encode();
        let regtest = ChainHash::using_genesis_block(bitcoin::Network::Regtest);
        let mut v = Vec::new();
        assert_eq!(
            gossip_digest(&mut v, GossipKind::ChannelUpdate, &bytes, regtest),
            Some(sha256d::Hash::hash(&bytes).to_byte_array())
        );
        let bitcoin = ChainHash::using_genesis_block(bitcoin::Network::Bitcoin);
        assert!(gossip_digest(&mut v, GossipKind::ChannelUpdate, &bytes, bitcoin).is_none());
        assert!(gossip_digest(&mut v, GossipKind::ChannelAnnouncement, &bytes[..20], regtest).is_none());
        let mut message = SIGNMESSAGE_PREFIX.to_vec();
        message.extend_from_slice(&bytes);
        assert!(gossip_digest(&mut v, GossipKind::NodeAnnouncement, &message, regtest).is_none());
        assert_eq!(v.iter().map(|v| v.tag).collect::<Vec<_>>(), vec![PolicyTag::NodeGossipShape; 3]);
    }

    #[test]
    fn heartbeat_preimages_never_start_like_an_invoice() {
        // The heartbeat's tagged-hash preimage starts with SHA-256 of its tag.
        let tag = sha256::Hash::hash(b"QLS/heartbeat/v1").to_byte_array();
        assert_ne!(&tag[..2], b"ln");
    }
}
