//! Wire shapes of legacy-channel (anchor, P2WSH 2-of-2) and node-key requests and the
//! multi-ECDSA approvals that gate them.
//!
//! A request carries the *facts* a cosigner needs to rebuild what is signed (commitment
//! numbers, values, HTLCs, scripts, per-commitment points), never a bare sighash: each
//! cosigner rebuilds the transaction from its own channel state. Keys, points and
//! signatures travel as bytes and are parsed (with typed errors) by `signer-core`.
//!
//! Must never: hold logic beyond shapes, or grow a field without a bound in
//! [`crate::limits`] and a check in [`crate::validate`].

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::Fingerprint;

/// LDK's `channel_keys_id`: the node's handle for one channel's keys.
pub type ChannelKeysId = [u8; 32];
/// SHA-256 of a request's canonical encoding (see `signer-core`'s `request_digest`).
pub type RequestDigest = [u8; 32];
/// A cosigner's digest of its own copy of one channel's state (a hash chain over every
/// request it applied to that channel) together with the chain's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct StateDigest {
    pub version: u64,
    pub digest: [u8; 32],
}

/// One side's channel basepoints, 33-byte compressed points each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelPoints {
    pub funding: Vec<u8>,
    pub revocation: Vec<u8>,
    pub payment: Vec<u8>,
    pub delayed_payment: Vec<u8>,
    pub htlc: Vec<u8>,
}

/// Everything fixed at channel open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelSetup {
    pub channel_value_sat: u64,
    pub funding_txid: [u8; 32],
    pub funding_vout: u16,
    pub is_outbound: bool,
    /// The delay the counterparty must wait on its own outputs (we chose it).
    pub holder_selected_contest_delay: u16,
    /// The delay we must wait on our own outputs (the counterparty chose it).
    pub counterparty_selected_contest_delay: u16,
    pub holder: ChannelPoints,
    pub counterparty: ChannelPoints,
    /// BOLT 9 channel type feature bits, little-endian bytes as LDK stores them.
    pub channel_type: Vec<u8>,
}

/// That a channel's funding transaction is in a block of the chain, as a cosigner that
/// follows block headers can check it (legacy and taproot channels alike).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FundingProof {
    /// Headers (80 bytes each, in order) to extend the cosigner's chain with first; known
    /// ones are skipped, the first unknown one must connect to a known one.
    pub headers: Vec<Vec<u8>>,
    /// The funding transaction, consensus-encoded.
    pub tx: Vec<u8>,
    /// The 80-byte header of the block that holds it.
    pub block_header: Vec<u8>,
    /// Sibling hashes from the txid up to the header's merkle root, leaf level first.
    pub merkle_branch: Vec<[u8; 32]>,
    /// The transaction's index in the block.
    pub position: u32,
}

/// One non-dust HTLC, from the commitment broadcaster's point of view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HtlcInfo {
    /// Offered by the broadcaster of the commitment it appears in.
    pub offered: bool,
    pub amount_msat: u64,
    pub cltv_expiry: u32,
    pub payment_hash: [u8; 32],
}

/// The facts that fix one commitment transaction, given the channel setup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitmentInfo {
    /// LDK's commitment number: starts at 2^48 - 1 and counts down.
    pub commitment_number: u64,
    pub per_commitment_point: Vec<u8>,
    pub to_broadcaster_sat: u64,
    pub to_countersignatory_sat: u64,
    pub feerate_per_kw: u32,
    /// Non-dust HTLCs (dust ones are not outputs).
    pub htlcs: Vec<HtlcInfo>,
}

/// A request about one channel. Each is validated by every cosigner from its own state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChannelRequest {
    /// Record a new channel's parameters (after funding is known).
    Setup(ChannelSetup),
    /// Sign the counterparty's commitment (and its HTLC transactions).
    /// `outbound_preimages` are the preimages of our HTLCs the counterparty fulfilled
    /// since the previous commitment: they justify our balance going down.
    SignCounterpartyCommitment { commitment: CommitmentInfo, outbound_preimages: Vec<[u8; 32]> },
    /// Accept the counterparty's signature on our next holder commitment.
    /// `outbound_preimages` as for [`ChannelRequest::SignCounterpartyCommitment`].
    ValidateHolderCommitment {
        commitment: CommitmentInfo,
        counterparty_sig: Vec<u8>,
        counterparty_htlc_sigs: Vec<Vec<u8>>,
        outbound_preimages: Vec<[u8; 32]>,
    },
    /// Release the per-commitment secret of holder commitment `commitment_number`,
    /// revoking it.
    ReleaseCommitmentSecret { commitment_number: u64 },
    /// The counterparty revoked its commitment `commitment_number` with `secret`.
    ValidateCounterpartyRevocation { commitment_number: u64, secret: [u8; 32] },
    /// Sign our latest holder commitment for broadcast (force close).
    SignHolderCommitment { commitment: CommitmentInfo },
    /// Sign the cooperative closing transaction.
    SignClosing {
        to_holder_sat: u64,
        to_counterparty_sat: u64,
        to_holder_script: Vec<u8>,
        to_counterparty_script: Vec<u8>,
    },
    /// Sign input `input` of `tx` (consensus encoding) spending, after the contest delay,
    /// a delayed output of ours: the to_local output of the holder commitment we
    /// force-closed with, or the output of one of its second-stage HTLC transactions we
    /// signed. Which one is found from the cosigner's own state, never from the request.
    SignDelayedSweep { tx: Vec<u8>, input: u32 },
    /// Sign input `input` of `tx` spending our (anchor) to_remote output of a
    /// counterparty commitment `commitment_txid`, output `vout`, worth `amount_sat`.
    SignRemoteSweep { tx: Vec<u8>, input: u32, amount_sat: u64 },
    /// Sign our keyed anchor input `input` of `tx` (CPFP of our holder commitment).
    SignHolderAnchor { tx: Vec<u8>, input: u32 },
    /// The channel's funding transaction is confirmed: an SPV proof each cosigner checks
    /// against its own header chain (extended first with the proof's headers). Until then
    /// the channel's incoming HTLCs cover no forward.
    FundingConfirmed(FundingProof),
    /// Sign the second-stage HTLC transaction of our force-closed holder commitment.
    SignHolderHtlc { tx: Vec<u8>, input: u32, commitment_number: u64, htlc: HtlcInfo, preimage: Option<[u8; 32]> },
    /// The channel's funding output was spent on chain: an SPV proof (as for
    /// [`ChannelRequest::FundingConfirmed`]) of a transaction spending it. From then on
    /// the channel's incoming HTLCs cover nothing and no commitment is signed; sweeps are.
    FundingSpent(FundingProof),
    /// Sign input `input` of justice transaction `tx` (consensus encoding), which takes an
    /// output of the counterparty's revoked commitment through our revocation key: its
    /// to_local or the output of one of its second-level HTLC transactions (`htlc` is
    /// `None`), or its HTLC output `htlc` (from the counterparty's point of view). The input
    /// spends `amount_sat`. Which commitment was broadcast is the cosigner's own fact (the
    /// proven funding spend, `FundingSpent`), and its secret must be in the cosigner's store.
    SignJustice { tx: Vec<u8>, input: u32, amount_sat: u64, htlc: Option<HtlcInfo> },
    /// Sign input `input` of `tx` (consensus encoding), which claims HTLC output `htlc`
    /// (from the counterparty's point of view) of the counterparty's commitment on chain:
    /// ours after its expiry, theirs with the preimage. The commitment is the cosigner's own
    /// fact (the proven funding spend) and must be one it signed; the input spends
    /// `amount_sat`.
    SignCounterpartyHtlcClaim { tx: Vec<u8>, input: u32, amount_sat: u64, htlc: HtlcInfo },
    /// Sign the channel announcement `message` (LDK's `UnsignedChannelAnnouncement`
    /// encoding) with our funding key: the channel must be proven on chain, the message
    /// name its short channel id and our and the counterparty's funding keys, and parse
    /// with nothing after it.
    SignChannelAnnouncement { message: Vec<u8> },
}

/// A request about the node's own key (not one channel).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeKeyRequest {
    /// ECDH between the node key and `other_key` (33 bytes), with an optional scalar tweak
    /// of the node key.
    Ecdh { other_key: Vec<u8>, tweak: Option<[u8; 32]> },
    /// Sign a BOLT-11 invoice: its `hrp` (UTF-8) and the 5-bit values of its data part
    /// (signature excluded), one per byte, as LDK's `RawBolt11Invoice::to_raw` gives
    /// them. Cosigners parse the invoice and rebuild the digest themselves.
    SignInvoice { hrp: Vec<u8>, data: Vec<u8>, payment_hash: [u8; 32], amount_msat: Option<u64> },
    /// Sign a gossip message of `kind`: the unsigned message as LDK's
    /// `UnsignedGossipMessage` encodes it (signed as its double SHA-256).
    SignGossip { kind: GossipKind, message: Vec<u8> },
    /// Sign `message` as LN `signmessage` does: cosigners sign SHA-256d of
    /// "Lightning Signed Message:" ‖ `message` (the prefix is theirs, never the node's),
    /// with a recoverable signature.
    SignMessage { message: Vec<u8> },
    /// Allow paying `payment_hash` up to `amount_msat` until `expires_at` (unix seconds).
    /// Cosigners accept it either with `invoice` (BOLT 11, signed by the payee, of this
    /// hash) from an allowlisted payee, or with `approval` by an operator key. The node
    /// can make neither the payee's nor the operator's signature.
    ApprovePayment {
        payment_hash: [u8; 32],
        amount_msat: u64,
        expires_at: u64,
        invoice: Option<String>,
        approval: Option<PaymentApproval>,
    },
    /// Attest the chain tip `tip` with the node key, after extending each cosigner's own
    /// chain with `headers` (80-byte block headers, in order; those it knows are skipped).
    Heartbeat { headers: Vec<Vec<u8>>, tip: [u8; 32] },
}

/// The gossip messages the node key signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GossipKind {
    ChannelAnnouncement,
    ChannelUpdate,
    NodeAnnouncement,
}

/// An operator's approval of a payment: `sig` (64-byte compact ECDSA) by `approver`
/// (33-byte secp256k1 key, one of the cosigners' configured payment approvers) over
/// `signer-core`'s `payment_approval_message(payment_hash, amount_msat, expires_at)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentApproval {
    pub approver: Vec<u8>,
    pub sig: Vec<u8>,
}

/// What a key-holder request is about.
// One per request, encoded once: boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApprovalSubject {
    Channel {
        channel: ChannelKeysId,
        request: ChannelRequest,
    },
    Node(NodeKeyRequest),
    /// Release the per-commitment secret of taproot holder commitment `commitment_number`
    /// (BOLT numbering, up from 0), which every cosigner has recorded as revoked.
    TaprootSecret {
        channel: ChannelKeysId,
        commitment_number: u64,
    },
    /// Sign a batched sweep: every input of `tx` (consensus encoding) is one output of ours
    /// of a legacy channel, named in `inputs` (one entry per input, in any order). Each
    /// cosigner checks every input's source and value from its own state of the channel
    /// named, and the fee over the whole transaction. Signs nothing else; changes no state.
    Sweep(SweepRequest),
}

/// A sweep of outputs of ours from one or several legacy channels in one transaction (as
/// LDK's `OutputSweeper` batches them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepRequest {
    pub tx: Vec<u8>,
    pub inputs: Vec<SweepInput>,
}

/// One input of a batched sweep: which channel's output it spends, and what kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepInput {
    pub input: u32,
    pub channel: ChannelKeysId,
    pub source: SweepSource,
}

/// What an input of a batched sweep spends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SweepSource {
    /// A delayed output of ours (as [`ChannelRequest::SignDelayedSweep`]): the value is
    /// the cosigner's own fact.
    Delayed,
    /// Our to_remote output of a counterparty commitment (as
    /// [`ChannelRequest::SignRemoteSweep`]), worth `amount_sat`: the signature commits to
    /// that value (BIP 143), so it is invalid for an output worth anything else.
    ToRemote { amount_sat: u64 },
}

/// A cosigner's signed statement: "I validated request `request` against my state, and my
/// state after it is `state`". ECDSA-P256 by the cosigner's identity key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub cosigner: Fingerprint,
    /// The approver's certificate (DER), checked against its fingerprint and pinning.
    pub cert_der: Vec<u8>,
    pub request: RequestDigest,
    pub state: StateDigest,
    pub identity_sig: Vec<u8>,
}

/// A key holder's statement that `points` are the holder keys it derives for one channel
/// from the node seed: an identity signature (ECDSA P-256) over `signer-core`'s
/// `holder_keys_statement(channel, points)`. A cosigner without the seed accepts a legacy
/// channel setup only with such a statement from a key holder it pins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeysAttestation {
    pub cosigner: Fingerprint,
    /// The attesting key holder's certificate (DER), checked against its fingerprint.
    pub cert_der: Vec<u8>,
    pub identity_sig: Vec<u8>,
}

/// Public facts about one channel's keys, from a key holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelKeysInfo {
    pub channel: ChannelKeysId,
    pub points: ChannelPoints,
    /// The answering key holder's attestation of `points` for `channel`.
    pub attestation: KeysAttestation,
    /// Whether the answering key holder already stores this channel's setup (a node
    /// restarting knows it must not hold back validations until it sends the setup).
    pub set_up: bool,
}

/// What a key holder returns once it signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyHolderOutput {
    /// Nothing to sign: the request only moved state (e.g. validate a holder commitment).
    Done,
    /// One ECDSA signature (64-byte compact) and, for commitments, one per HTLC in the
    /// rebuilt commitment's HTLC order.
    Signatures { sig: Vec<u8>, htlc_sigs: Vec<Vec<u8>> },
    /// A revealed per-commitment secret.
    Secret([u8; 32]),
    /// An ECDH shared secret (SHA-256 of the shared point, as LDK expects).
    SharedSecret([u8; 32]),
    /// A recoverable signature: 64-byte compact plus recovery id.
    Recoverable { sig: Vec<u8>, recid: u8 },
    /// A complete input witness (sweeps of P2WSH / P2WPKH outputs).
    Witness(Vec<Vec<u8>>),
    /// One complete witness per input of a batched sweep, in the transaction's input order.
    Witnesses(Vec<Vec<Vec<u8>>>),
    /// A heartbeat: the node key's ECDSA signature (64-byte compact) over `signer-core`'s
    /// `heartbeat_message(height, tip, unix_time)`; `unix_time` is the key holder's clock.
    Heartbeat { height: u32, tip: [u8; 32], unix_time: u64, sig: Vec<u8> },
}
