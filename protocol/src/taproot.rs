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
    /// Our dust limit (our commitment trims below it).
    pub holder_dust_limit_sat: u64,
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
// One per request, encoded once: boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaprootRequest {
    Setup(TaprootChannelSetup),
    /// Our MuSig2 partial signature on the counterparty's commitment (its key-path spend
    /// of the funding output), with a just-in-time nonce against the counterparty's
    /// verification nonce. `outbound_preimages` are the preimages of our HTLCs the
    /// counterparty fulfilled since the previous commitment: they justify our HTLCs leaving
    /// without coming back to our balance.
    SignCounterpartyCommitment {
        commitment: TaprootCommitmentInfo,
        #[serde(default)]
        outbound_preimages: Vec<[u8; 32]>,
    },
    /// Accept the counterparty's partial signature on our holder commitment, made in the
    /// session of our verification nonce for that commitment (`verification`: the leaf
    /// nonces the quorum handed out for it) and the counterparty's nonce; and its HTLC
    /// signatures (BIP-340 + sighash byte, SIGHASH_SINGLE|ANYONECANPAY, one per HTLC output
    /// in output order) on our second-level transactions.
    ValidateHolderCommitment {
        commitment: TaprootCommitmentInfo,
        verification: Vec<LeafNonce>,
        counterparty_nonce: Vec<u8>,
        counterparty_psig: Vec<u8>,
        counterparty_htlc_sigs: Vec<Vec<u8>>,
        outbound_preimages: Vec<[u8; 32]>,
    },
    /// The channel's funding transaction is confirmed (see [`crate::FundingProof`]).
    FundingConfirmed(crate::FundingProof),
    /// The channel's funding output was spent on chain (the proof is of the spending
    /// transaction): its incoming HTLCs cover nothing any more, no commitment is signed.
    FundingSpent(crate::FundingProof),
    /// Revoke holder commitment `commitment_number` (the next one is validated): its
    /// verification nonce is dropped by every cosigner, and the key holders may release
    /// its per-commitment secret.
    RevokeHolderCommitment {
        commitment_number: u64,
    },
    /// Our partial signature on our latest holder commitment, for broadcast (force close),
    /// with the verification nonce stored for it and the counterparty's stored nonce.
    SignHolderCommitment {
        commitment_number: u64,
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

/// What the FROST group (t-of-n, BIP-340) signs for a taproot channel. Cosigners derive
/// every message and every key from their own channel state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaprootFrostItem {
    /// Our signatures (SIGHASH_SINGLE|ANYONECANPAY) on the second-level transactions of
    /// every HTLC output of counterparty commitment `commitment_number` (the latest we
    /// signed), in output order.
    CounterpartyHtlcs { commitment_number: u64 },
    /// Our signature (SIGHASH_SINGLE|ANYONECANPAY) on the second-level transaction of HTLC
    /// output `htlc_index` (in output order) of the holder commitment we force-closed with;
    /// an HTLC-success needs the HTLC's preimage.
    HolderHtlc { htlc_index: u32, preimage: Option<[u8; 32]> },
    /// Our signature (SIGHASH_DEFAULT) on input `input` of `tx` (consensus encoding) taking
    /// `output` of the counterparty's *revoked* commitment `commitment_number` (or of one of
    /// its second-level transactions) through the revocation key, whose secret half is the
    /// per-commitment secret the counterparty revealed. `prevouts` as for a sweep.
    Justice { tx: Vec<u8>, input: u32, prevouts: Vec<SpentOutput>, commitment_number: u64, output: RevokedOutput },
    /// Our signature (SIGHASH_DEFAULT) on input `input` of `tx` (consensus encoding), which
    /// spends one of our outputs: to_local or our anchor of the force-closed holder
    /// commitment, the output of one of its second-level HTLC transactions, to_remote of a
    /// counterparty commitment, or an HTLC output of the latest or previous unrevoked counterparty commitment (ours
    /// after its expiry, theirs with its `preimage`). `prevouts` are every input's spent
    /// output, in input order; cosigners check the one spent here against their own state.
    Sweep {
        tx: Vec<u8>,
        input: u32,
        prevouts: Vec<SpentOutput>,
        #[serde(default)]
        preimage: Option<[u8; 32]>,
    },
}

/// Which output of a revoked counterparty commitment a justice transaction takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RevokedOutput {
    /// Its to_local (revocation leaf).
    ToLocal,
    /// An HTLC output (key path), `htlc` from the counterparty's point of view.
    Htlc(crate::HtlcInfo),
    /// The output of its second-level transaction (key path).
    SecondLevel,
}

/// An output a transaction spends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpentOutput {
    pub value_sat: u64,
    pub script_pubkey: Vec<u8>,
}

/// One step from the FROST group key to the key a signature is made under, each on the
/// even-y key `P`: a BIP-341 tweak (with an optional merkle root), an additive tweak
/// `P + t·G` (BOLT 3 per-commitment keys), or `P·m + a·G` (BOLT 3 revocation keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyTweak {
    Taproot(Option<[u8; 32]>),
    Add([u8; 32]),
    MulAdd { mul: [u8; 32], add: [u8; 32] },
}

/// A message a cosigner derived, with the tweaks of the key it is signed under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrostTarget {
    pub msg: [u8; 32],
    pub tweaks: Vec<KeyTweak>,
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

/// One cosigner's t-of-n deal of its NestedMuSig2 partial signature of one of our holder
/// commitments (made in that commitment's verification session): the Feldman commitments
/// of its polynomial (`commitments[0]` is the partial signature's point, which every
/// receiver recomputes from public facts) and one share per cosigner, each sealed to its
/// receiver (ChaCha20-Poly1305 under an ECDH key of the two channel leaf keys) so the
/// coordinator that relays the deal cannot read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscrowDeal {
    pub dealer: Fingerprint,
    pub commitment_number: u64,
    /// 33-byte compressed points, `t` of them.
    pub commitments: Vec<Vec<u8>>,
    pub sealed: Vec<crate::SealedPackage>,
}
