//! A legacy-channel counterparty with single keys and plain BOLT 3 (LDK's `chan_utils`):
//! it builds the requests a node would send about one anchor channel — its commitment
//! facts, and our holder commitment signed by it (commitment and HTLC signatures) — so
//! tests and benchmarks can drive the quorum through real channel updates.
//!
//! Must never: be used as a signer of ours; its keys are fixed test keys (not secrets).

use bitcoin::hashes::{sha256, Hash};
use bitcoin::secp256k1::{All, Message, PublicKey, Secp256k1, SecretKey};
use bitcoin::sighash::{EcdsaSighashType, SighashCache};
use bitcoin::ScriptBuf;
use lightning::ln::chan_utils::{
    build_commitment_secret, build_htlc_transaction, derive_private_key, get_htlc_redeemscript,
    make_funding_redeemscript,
};
use lightning::types::features::ChannelTypeFeatures;
use qls_protocol::{ChannelPoints, ChannelRequest, ChannelSetup, CommitmentInfo, HtlcInfo};
use qls_signer_core::channel::parse::{self, Broadcaster};

/// Commitment feerate used by the helpers (sat per 1000 weight).
pub const FEERATE: u32 = 1000;
/// Contest delay both sides choose.
pub const DELAY: u16 = 144;

pub struct Counterparty {
    pub secp: Secp256k1<All>,
    funding: SecretKey,
    htlc: SecretKey,
    base: [SecretKey; 3],
    seed: [u8; 32],
}

impl Default for Counterparty {
    fn default() -> Self {
        Self::new()
    }
}

impl Counterparty {
    pub fn new() -> Self {
        let k = |b: u8| SecretKey::from_slice(&[b; 32]).expect("non-zero scalar below the order");
        Self {
            secp: Secp256k1::new(),
            funding: k(0x11),
            htlc: k(0x12),
            base: [k(0x13), k(0x14), k(0x15)],
            seed: [0x16; 32],
        }
    }

    pub fn points(&self) -> ChannelPoints {
        let p = |s: &SecretKey| PublicKey::from_secret_key(&self.secp, s).serialize().to_vec();
        ChannelPoints {
            funding: p(&self.funding),
            revocation: p(&self.base[0]),
            payment: p(&self.base[1]),
            delayed_payment: p(&self.base[2]),
            htlc: p(&self.htlc),
        }
    }

    /// Its per-commitment secret for commitment `n`.
    pub fn secret(&self, n: u64) -> [u8; 32] {
        build_commitment_secret(&self.seed, n)
    }

    /// Its per-commitment point for commitment `n` (33 bytes).
    pub fn point(&self, n: u64) -> Vec<u8> {
        let sk = SecretKey::from_slice(&self.secret(n)).expect("shachain output is a valid scalar");
        PublicKey::from_secret_key(&self.secp, &sk).serialize().to_vec()
    }

    /// An anchors channel between `holder` (our keys, from a key holder) and this
    /// counterparty.
    pub fn setup(
        &self,
        holder: ChannelPoints,
        value_sat: u64,
        is_outbound: bool,
        funding_txid: [u8; 32],
    ) -> ChannelSetup {
        ChannelSetup {
            channel_value_sat: value_sat,
            funding_txid,
            funding_vout: 0,
            is_outbound,
            holder_selected_contest_delay: DELAY,
            counterparty_selected_contest_delay: DELAY,
            holder,
            counterparty: self.points(),
            channel_type: ChannelTypeFeatures::anchors_zero_htlc_fee_and_dependencies().le_flags().to_vec(),
        }
    }

    /// Its commitment `n`: it broadcasts, `theirs` to itself, `ours` to us.
    pub fn commitment(&self, n: u64, theirs: u64, ours: u64, htlcs: Vec<HtlcInfo>) -> CommitmentInfo {
        CommitmentInfo {
            commitment_number: n,
            per_commitment_point: self.point(n),
            to_broadcaster_sat: theirs,
            to_countersignatory_sat: ours,
            feerate_per_kw: FEERATE,
            htlcs,
        }
    }

    /// Its signature on a funding-output sighash (e.g. our holder commitment).
    pub fn sign_funding(&self, sighash: &Message) -> bitcoin::secp256k1::ecdsa::Signature {
        self.secp.sign_ecdsa(sighash, &self.funding)
    }

    /// The 2-of-2 funding script.
    pub fn funding_script(setup: &ChannelSetup) -> Option<ScriptBuf> {
        Some(make_funding_redeemscript(
            &PublicKey::from_slice(&setup.holder.funding).ok()?,
            &PublicKey::from_slice(&setup.counterparty.funding).ok()?,
        ))
    }

    /// `ValidateHolderCommitment` for our commitment `info`, signed by the counterparty
    /// (commitment signature and one SINGLE|ANYONECANPAY signature per HTLC).
    pub fn validate_request(
        &self,
        setup: &ChannelSetup,
        info: CommitmentInfo,
        preimages: Vec<[u8; 32]>,
    ) -> Result<ChannelRequest, parse::ChannelError> {
        let secp = &self.secp;
        let params = parse::transaction_parameters(setup)?;
        let tx = parse::commitment(&params, &info, Broadcaster::Holder, secp)?;
        let trusted = tx.trust();
        let funding = Self::funding_script(setup).ok_or(parse::ChannelError::CorruptState("funding keys"))?;
        let sighash = trusted.built_transaction().get_sighash_all(&funding, setup.channel_value_sat);
        let sig = secp.sign_ecdsa(&sighash, &self.funding).serialize_compact().to_vec();
        let pcp = parse::point(&info.per_commitment_point, "per-commitment point")?;
        let htlc_key = derive_private_key(secp, &pcp, &self.htlc);
        let keys = trusted.keys();
        let mut htlc_sigs = Vec::new();
        for h in tx.nondust_htlcs() {
            let t = build_htlc_transaction(
                &trusted.txid(),
                FEERATE,
                setup.holder_selected_contest_delay,
                h,
                &params.channel_type_features,
                &keys.broadcaster_delayed_payment_key,
                &keys.revocation_key,
            );
            let s = get_htlc_redeemscript(h, &params.channel_type_features, keys);
            let hash = SighashCache::new(&t)
                .p2wsh_signature_hash(0, &s, h.to_bitcoin_amount(), EcdsaSighashType::SinglePlusAnyoneCanPay)
                .map_err(|_| parse::ChannelError::CorruptState("HTLC sighash"))?;
            htlc_sigs.push(
                secp.sign_ecdsa(&Message::from_digest(hash.to_byte_array()), &htlc_key).serialize_compact().to_vec(),
            );
        }
        Ok(ChannelRequest::ValidateHolderCommitment {
            commitment: info,
            counterparty_sig: sig,
            counterparty_htlc_sigs: htlc_sigs,
            outbound_preimages: preimages,
        })
    }
}

/// An HTLC of `sat` satoshis whose payment hash is SHA-256 of `[tag; 32]`.
pub fn htlc(offered: bool, sat: u64, tag: u8) -> HtlcInfo {
    HtlcInfo {
        offered,
        amount_msat: sat * 1000,
        cltv_expiry: 600_000,
        payment_hash: sha256::Hash::hash(&[tag; 32]).to_byte_array(),
    }
}
