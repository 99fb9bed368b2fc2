//! Wire types of simple taproot channels (BOLT simple-taproot): the channel setup the node
//! sends, the commitment facts cosigners rebuild the transaction from, and the NestedMuSig2
//! round messages (each cosigner's MuSig2 leaf, its nonces, its partial signature).
//!
//! Must never: carry a sighash or a transaction to sign as such (cosigners derive the
//! message from these facts and their stored state), or a secret nonce.

use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::{ChannelKeysId, Fingerprint, HtlcInfo};

/// The counterparty's basepoints and funding key (33-byte compressed points).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaprootCounterpartyPoints {
    pub funding: Vec<u8>,
    pub revocation: Vec<u8>,
    pub payment: Vec<u8>,
    pub delayed_payment: Vec<u8>,
    pub htlc: Vec<u8>,
}

/// Everything fixed at a taproot channel's open. Our own keys are not in it: every cosigner
/// derives them (funding key from the quorum's MuSig2 leaves, basepoints from the group key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaprootChannelSetup {
    pub channel_value_sat: u64,
    pub funding_txid: [u8; 32],
    pub funding_vout: u16,
    pub is_outbound: bool,
    /// The delay the counterparty waits on its own outputs (we chose it).
    pub holder_selected_contest_delay: u16,
    /// The delay we wait on ours (the counterparty chose it).
    pub counterparty_selected_contest_delay: u16,
    /// The counterparty's dust limit (its commitment trims below it).
    pub counterparty_dust_limit_sat: u64,
    pub counterparty: TaprootCounterpartyPoints,
}

/// One commitment's facts: balances before fees and anchors (the funder pays them),
/// counting commitment numbers up from 0 as BOLT 3 does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaprootCommitmentInfo {
    pub commitment_number: u64,
    /// The broadcaster's per-commitment point (33 bytes).
    pub per_commitment_point: Vec<u8>,
    pub to_broadcaster_msat: u64,
    pub to_countersignatory_msat: u64,
    pub feerate_per_kw: u32,
    /// `offered` from the broadcaster's point of view.
    pub htlcs: Vec<HtlcInfo>,
}

/// What a taproot-channel request asks cosigners to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaprootRequest {
    Setup(TaprootChannelSetup),
    /// Our MuSig2 partial signature on the counterparty's commitment (its key-path spend
    /// of the funding output), with a just-in-time nonce against the counterparty's
    /// verification nonce.
    SignCounterpartyCommitment {
        commitment: TaprootCommitmentInfo,
    },
    /// Our partial signature, as the closer (just-in-time nonce against the counterparty's
    /// shutdown nonce), on the cooperative close paying `to_holder_sat` to `holder_script`
    /// and `to_counterparty_sat` to `counterparty_script` (an output of 0 is left out).
    SignClosing {
        to_holder_sat: u64,
        to_counterparty_sat: u64,
        holder_script: Vec<u8>,
        counterparty_script: Vec<u8>,
        locktime: u32,
    },
    /// The counterparty revoked its commitment `commitment_number` with `secret`.
    CounterpartyRevocation {
        commitment_number: u64,
        secret: [u8; 32],
    },
}

/// A cosigner's MuSig2 leaf key, signed by its identity key so a coordinator cannot swap
/// it: `identity_sig` (ECDSA P-256, DER) over `signer-core`'s `leaf_statement(leaf)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MusigLeaf {
    pub cosigner: Fingerprint,
    pub cert_der: Vec<u8>,
    /// The cosigner's base MuSig2 key (33 bytes); per channel it is tweaked publicly.
    pub leaf: Vec<u8>,
    pub identity_sig: Vec<u8>,
}

/// One cosigner's public nonce for a channel, by the id it stored the secret under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeafNonce {
    pub cosigner: Fingerprint,
    pub nonce_id: u64,
    pub pubnonce: Vec<u8>,
}

/// The session a cosigner signs in: every leaf's nonce (its own among them) and the
/// counterparty's public nonce for the root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NestedSession {
    pub leaf_nonces: Vec<LeafNonce>,
    pub counterparty_nonce: Vec<u8>,
}

/// Our public keys of one taproot channel, as every cosigner derives them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaprootHolderKeys {
    /// The quorum's funding key (the MuSig2 node key of the channel's leaves).
    pub funding: Vec<u8>,
    pub revocation: Vec<u8>,
    pub payment: Vec<u8>,
    pub delayed_payment: Vec<u8>,
    pub htlc: Vec<u8>,
}

/// For [`ChannelKeysId`] users: a taproot channel is named like a legacy one.
pub type TaprootChannelId = ChannelKeysId;
