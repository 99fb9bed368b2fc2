//! The message enums of both links: node ↔ coordinator (`Node*`) and coordinator ↔
//! cosigner (`Cosigner*`). FROST objects travel as opaque bytes (their own canonical
//! serialization); `signer-core` parses them, so this crate never depends on FROST.
//!
//! Must never: carry a secret in clear (DKG round-2 packages travel sealed), or grow a
//! field without a bound in [`crate::limits`] and a check in [`crate::validate`].

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::channel::*;
use crate::taproot::*;

/// A group key id: the x-only (BIP-340) group public key, which is also the key of the
/// group's P2TR output.
pub type KeyId = [u8; 32];
/// SHA-256 of a peer's self-signed certificate (DER): how peers are pinned.
pub type Fingerprint = [u8; 32];
/// A DKG session id, chosen at random by the coordinator.
pub type SessionId = [u8; 32];

// ---------------------------------------------------------------- coordinator → cosigner

/// A request from the coordinator to one cosigner; one per QUIC bidirectional stream.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CosignerRequest {
    /// Who are you and which group keys do you hold?
    Hello,
    /// DKG round 1: start a session among `participants` (all, including the receiver).
    DkgRound1 { session: SessionId, threshold: u16, participants: Vec<DkgParticipant> },
    /// DKG round 2: every participant's signed round-1 message.
    DkgRound2 { session: SessionId, round1: Vec<DkgRound1Message> },
    /// DKG round 3: the sealed round-2 packages addressed to the receiver.
    DkgFinish { session: SessionId, sealed: Vec<SealedPackage> },
    /// Hand out (and, up to the cosigner's pool bound, create) unused nonce
    /// commitments for `key_id` with nonce ids greater than `after_id`.
    NonceCommitments { key_id: KeyId, after_id: Option<u64>, count: u32 },
    /// Produce signature shares; the cosigner recomputes every message from `payload`.
    Sign(SignRequest),
    /// Test-only: import a trusted dealer's key package. Refused unless the cosigner's
    /// config enables it.
    ImportDealerShare { key_package: Vec<u8>, public_key_package: Vec<u8> },
    /// Validate a channel or node-key request against this cosigner's own state and
    /// policy; apply it and return a signed approval, or refuse with tags.
    /// `holder_keys` is a key holder's attestation of the holder keys of a legacy channel
    /// setup (evidence, not part of the request digest); cosigners without the seed refuse
    /// a setup without a valid one.
    Approve { subject: ApprovalSubject, holder_keys: Option<KeysAttestation> },
    /// Key holders only: sign `subject`, given at least the threshold of approvals from
    /// distinct pinned cosigners over the same request and state digests (its own included).
    KeyHolderSign { subject: ApprovalSubject, approvals: Vec<Approval> },
    /// Key holders only: the public keys of one channel and the node id.
    ChannelKeys { channel: ChannelKeysId },
    /// Key holders only: the per-commitment point of our holder commitment `commitment_number`.
    PerCommitmentPoint { channel: ChannelKeysId, commitment_number: u64 },
    /// This cosigner's MuSig2 leaf key, signed by its identity key.
    MusigLeaf,
    /// Store a taproot channel's setup; `leaves` are every cosigner's signed leaf (this
    /// one and all its pinned peers, no other).
    TaprootSetup { channel: ChannelKeysId, setup: TaprootChannelSetup, leaves: Vec<MusigLeaf> },
    /// Create `count` MuSig2 nonces for `channel`, stored durably before they are returned.
    TaprootNonces { channel: ChannelKeysId, count: u32 },
    /// Judge `request` against this cosigner's taproot channel state and, if the policy
    /// approves, consume this cosigner's nonce in `session` durably and return its
    /// NestedMuSig2 partial signature.
    TaprootSign { channel: ChannelKeysId, request: TaprootRequest, session: NestedSession },
    /// Judge and apply a taproot request that signs nothing (a revocation, a holder
    /// commitment's validation).
    TaprootApply { channel: ChannelKeysId, request: TaprootRequest },
    /// The verification nonce of holder commitment `commitment_number` (created and stored
    /// on first request, the same one after): it signs nothing but that commitment.
    TaprootVerificationNonce { channel: ChannelKeysId, commitment_number: u64 },
    /// The messages and keys this cosigner would sign `item` with, or a refusal.
    TaprootFrostTargets { channel: ChannelKeysId, item: TaprootFrostItem },
    /// Force-close escrow, step 1: make this cosigner's partial signature of our latest
    /// holder commitment `commitment_number` (in its verification session) and deal it
    /// t-of-n to every cosigner, each share sealed to its receiver.
    TaprootEscrowDeal { channel: ChannelKeysId, commitment_number: u64 },
    /// Force-close escrow, step 2: every cosigner's deal of one holder commitment; this
    /// cosigner opens and checks the shares sealed to it and keeps their sum.
    TaprootEscrowKeep { channel: ChannelKeysId, deals: Vec<EscrowDeal> },
    /// Force close with t of n: judge the force close of holder commitment
    /// `commitment_number` (recorded as for `SignHolderCommitment`) and return this
    /// cosigner's kept share of the quorum's partial signature.
    TaprootEscrowRelease { channel: ChannelKeysId, commitment_number: u64 },
}

/// One DKG participant, identified by its certificate; its FROST identifier is derived
/// from the certificate's fingerprint, so the coordinator cannot assign identifiers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DkgParticipant {
    pub cert_der: Vec<u8>,
}

/// A participant's round-1 broadcast, signed with its long-term identity key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DkgRound1Message {
    pub sender: Fingerprint,
    /// FROST `dkg::round1::Package`, serialized.
    pub package: Vec<u8>,
    /// Compressed secp256k1 point (33 bytes): the sender's ephemeral ECDH key for sealing
    /// round-2 packages.
    pub ephemeral_pubkey: Vec<u8>,
    /// DER ECDSA-P256 signature by the sender's identity key over the round-1 statement.
    pub identity_sig: Vec<u8>,
}

/// A FROST round-2 package, encrypted and authenticated from `sender` to `receiver`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedPackage {
    pub sender: Fingerprint,
    pub receiver: Fingerprint,
    pub ciphertext: Vec<u8>,
}

/// What is to be signed. Cosigners derive the signed messages from this themselves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SignPayload {
    /// A 32-byte message signed as-is (BIP-340) under the group's *message key*, a
    /// tweak of the wallet key, so it can never authorise a wallet spend.
    Message([u8; 32]),
    /// A PSBT (BIP-174, serialized): every input whose spent output is the group's P2TR
    /// output is signed with the BIP-341 key-path sighash, in input order.
    /// `funding_channels` names the channels (set up, ours to fund) whose funding outputs
    /// this transaction creates; cosigners allow those outputs only as their stored setup
    /// describes them.
    Psbt { psbt: Vec<u8>, funding_channels: Vec<crate::ChannelKeysId> },
    /// Signatures for a taproot channel (HTLC second-level transactions, sweeps): the
    /// cosigner derives every message and key from its channel state; this request signs
    /// the derived messages `first..first + items`.
    Taproot { channel: crate::ChannelKeysId, item: TaprootFrostItem, first: u32 },
}

/// One FROST signing session inside a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignItem {
    /// The receiving cosigner's nonce, by the id it gave out with the commitment.
    pub nonce_id: u64,
    /// FROST `SigningPackage`, serialized (all signers' commitments and the message).
    pub signing_package: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignRequest {
    pub key_id: KeyId,
    pub payload: SignPayload,
    /// One item per message derived from `payload`, in the same order.
    pub items: Vec<SignItem>,
}

/// A cosigner's reply; one per stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CosignerResponse {
    Hello {
        fingerprint: Fingerprint,
        keys: Vec<KeyInfo>,
        /// Holds the node's ECDSA seed (signs legacy-channel and node-key requests).
        key_holder: bool,
    },
    DkgRound1(DkgRound1Message),
    DkgRound2 {
        sealed: Vec<SealedPackage>,
    },
    DkgFinished(KeyInfo),
    NonceCommitments {
        key_id: KeyId,
        commitments: Vec<NonceCommitment>,
    },
    /// One FROST signature share per item, in order; `warnings` are violations whose
    /// action is `warn` in this cosigner's policy.
    Shares {
        shares: Vec<Vec<u8>>,
        warnings: Vec<Violation>,
    },
    /// The request breaks this cosigner's policy; nothing was signed, no nonce consumed.
    Refused {
        violations: Vec<Violation>,
    },
    Imported(KeyInfo),
    Approved {
        approval: Approval,
        warnings: Vec<Violation>,
    },
    KeyHolderSigned(KeyHolderOutput),
    ChannelKeys {
        info: ChannelKeysInfo,
        node_id: Vec<u8>,
    },
    Point(Vec<u8>),
    MusigLeaf(MusigLeaf),
    /// A taproot request applied (setup) with no signature to return.
    TaprootApplied {
        warnings: Vec<Violation>,
    },
    TaprootNonces(Vec<LeafNonce>),
    /// The cosigner's NestedMuSig2 partial signature over `msg`, the message it derived,
    /// with the counterparty funding key of its stored setup (so the coordinator can verify
    /// the partial signature in the same session).
    TaprootPartialSig {
        psig: [u8; 32],
        msg: [u8; 32],
        counterparty_funding: Vec<u8>,
        warnings: Vec<Violation>,
    },
    /// What a taproot FROST item signs, as this cosigner derived it.
    TaprootFrostTargets(Vec<FrostTarget>),
    /// This cosigner's deal of its force-close partial signature.
    TaprootEscrowDealt(EscrowDeal),
    /// This cosigner's kept share of the quorum's partial signature of a holder commitment
    /// whose force close it approved, and the message it derived (the commitment's sighash).
    TaprootEscrowShare {
        share: [u8; 32],
        msg: [u8; 32],
        counterparty_funding: Vec<u8>,
    },
    Error {
        kind: ErrorKind,
        detail: String,
    },
}

/// Public facts about a group key held by a cosigner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    pub key_id: KeyId,
    pub threshold: u16,
    /// FROST `PublicKeyPackage`, serialized.
    pub public_key_package: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NonceCommitment {
    pub nonce_id: u64,
    /// FROST `round1::SigningCommitments`, serialized.
    pub commitments: Vec<u8>,
}

/// A policy violation: a stable tag (e.g. `policy-onchain-fee-range`) and the facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    pub tag: String,
    pub detail: String,
}

/// Error classes a peer reports; `detail` carries the facts in words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// The frame could not be decoded (bad length, malformed body).
    BadFrame,
    /// The frame's protocol version is not the one this peer speaks.
    UnsupportedVersion,
    /// A field is out of bounds or inconsistent.
    InvalidRequest,
    UnknownKey,
    /// The nonce id was never handed out by this cosigner.
    UnknownNonce,
    /// The nonce id was handed out and has already been consumed.
    ConsumedNonce,
    DkgFailed,
    Storage,
    /// The request is not allowed here (e.g. dealer import disabled).
    Forbidden,
    /// Not enough cosigners could be reached or agreed.
    QuorumUnavailable,
    /// The coordinator has no group key yet (run DKG first).
    NoGroupKey,
    Internal,
}

// ---------------------------------------------------------------- node → coordinator

/// A request from the node (client) to the coordinator.
// One per stream, encoded once: boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeRequest {
    GroupInfo,
    SignMessage {
        msg: [u8; 32],
    },
    SignPsbt {
        psbt: Vec<u8>,
        /// Channels whose funding outputs this PSBT creates (empty for other spends).
        #[serde(default)]
        funding_channels: Vec<ChannelKeysId>,
    },
    /// A legacy-channel request: approved by the quorum, then signed by a key holder.
    Channel {
        channel: ChannelKeysId,
        request: ChannelRequest,
    },
    /// A node-key request (ECDH, invoices, gossip, payment approval).
    NodeKey(NodeKeyRequest),
    /// A batched sweep of outputs of ours from legacy channels: approved by the quorum,
    /// then every input signed by a key holder.
    Sweep(SweepRequest),
    ChannelKeys {
        channel: ChannelKeysId,
    },
    PerCommitmentPoint {
        channel: ChannelKeysId,
        commitment_number: u64,
    },
    /// Our keys of a taproot channel, as the cosigners derive them.
    TaprootChannelKeys {
        channel: ChannelKeysId,
    },
    /// A taproot-channel request: a setup (stored by every cosigner) or a signature (all
    /// cosigners sign as one MuSig2 party against `counterparty_nonce`).
    Taproot {
        channel: ChannelKeysId,
        request: TaprootRequest,
        counterparty_nonce: Option<Vec<u8>>,
        /// Leaf nonces reserved earlier with `TaprootNonce` (e.g. the nonce we sent in
        /// `shutdown`); empty: fresh nonces in a first round.
        #[serde(default)]
        reserved: Vec<LeafNonce>,
    },
    /// Reserve the quorum's next MuSig2 nonce for `channel` (one per cosigner, stored by
    /// each until used): the external nonce to send the counterparty, and the leaf nonces
    /// to hand back with the signing request.
    TaprootNonce {
        channel: ChannelKeysId,
    },
    /// The quorum's verification nonce for our holder commitment `commitment_number`
    /// (`next_local_nonce`): the external nonce to send, and the leaf nonces to hand back
    /// when validating that commitment.
    TaprootVerificationNonce {
        channel: ChannelKeysId,
        commitment_number: u64,
    },
    /// FROST signatures (t-of-n) for a taproot channel item.
    TaprootFrost {
        channel: ChannelKeysId,
        item: TaprootFrostItem,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeResponse {
    GroupInfo(GroupInfo),
    /// A 64-byte BIP-340 signature, already verified by the coordinator.
    Signature {
        sig: Vec<u8>,
        report: SignReport,
    },
    /// The PSBT with `tap_key_sig` and the final witness set on every group input.
    SignedPsbt {
        psbt: Vec<u8>,
        report: SignReport,
    },
    /// Fewer than `threshold` cosigners would sign: who refused and why.
    Refused {
        refusals: Vec<CosignerRefusal>,
        report: SignReport,
    },
    /// A key holder's output for an approved request.
    KeyHolder {
        output: KeyHolderOutput,
        report: SignReport,
    },
    ChannelKeys {
        info: ChannelKeysInfo,
        node_id: Vec<u8>,
    },
    Point(Vec<u8>),
    Error {
        kind: ErrorKind,
        detail: String,
    },
    /// Fewer than the needed cosigners could be reached or agreed on a signing request:
    /// why, and the report of the attempts made (blame and the nonces consumed).
    Unavailable {
        detail: String,
        report: SignReport,
    },
    TaprootChannelKeys(TaprootHolderKeys),
    TaprootNonce {
        pubnonce: Vec<u8>,
        leaf_nonces: Vec<LeafNonce>,
    },
    TaprootApplied {
        report: SignReport,
    },
    /// The quorum's external MuSig2 nonce and partial signature, already verified by the
    /// coordinator as a BIP-327 partial signature of the funding key's party.
    TaprootPartialSig {
        pubnonce: Vec<u8>,
        psig: [u8; 32],
        report: SignReport,
    },
    /// BIP-340 signatures (64 bytes each) for a taproot FROST item, each verified by the
    /// coordinator under its derived key; `messages` as the cosigners derived them.
    TaprootSignatures {
        sigs: Vec<Vec<u8>>,
        messages: Vec<[u8; 32]>,
        report: SignReport,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInfo {
    /// The wallet key (P2TR output key); it signs PSBT inputs only.
    pub key_id: KeyId,
    /// The key raw 32-byte messages are signed under (a tweak of the wallet key).
    pub message_key: KeyId,
    pub address: String,
    pub threshold: u16,
    pub cosigners: Vec<String>,
}

/// How a signing request went: who signed, who was blamed, how many rounds it took, and
/// which public nonces the cosigners' signature shares consumed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignReport {
    pub signers: Vec<String>,
    pub blamed: Vec<Blame>,
    pub attempts: u16,
    pub warnings: Vec<CosignerRefusal>,
    /// Every public nonce a cosigner returned a signature share or partial signature for
    /// (in every attempt, good shares or not), so that the node or an auditor can check
    /// that no cosigner ever signs with one nonce twice. At most
    /// [`crate::limits::MAX_REPORT_NONCES`]; `nonces_dropped` counts the rest.
    pub nonces: Vec<NonceUse>,
    pub nonces_dropped: u32,
}

/// A public nonce a cosigner's signature share was made with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NonceUse {
    pub cosigner: String,
    /// FROST: the serialized `SigningCommitments` (hiding and binding points); NestedMuSig2:
    /// the leaf's 66-byte public nonce.
    pub pubnonce: Vec<u8>,
}

impl SignReport {
    /// Records that `cosigner` signed with `pubnonce` (counted, not kept, past the limit).
    pub fn nonce_used(&mut self, cosigner: &str, pubnonce: Vec<u8>) {
        if self.nonces.len() < crate::limits::MAX_REPORT_NONCES {
            self.nonces.push(NonceUse { cosigner: cosigner.to_string(), pubnonce });
        } else {
            self.nonces_dropped = self.nonces_dropped.saturating_add(1);
        }
    }

    /// Adds `other`'s blame, warnings and nonce uses to this report (signers and
    /// attempts are the caller's to merge).
    pub fn absorb(&mut self, other: SignReport) {
        self.blamed.extend(other.blamed);
        self.warnings.extend(other.warnings);
        for n in other.nonces {
            self.nonce_used(&n.cosigner, n.pubnonce);
        }
        self.nonces_dropped = self.nonces_dropped.saturating_add(other.nonces_dropped);
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blame {
    pub cosigner: String,
    pub reason: BlameReason,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BlameReason {
    /// FROST share verification named this cosigner as a culprit.
    InvalidShare,
    Timeout,
    Unreachable,
    /// The cosigner answered with an error (e.g. consumed nonce) or an unexpected reply.
    ErrorReply,
    /// The cosigner's channel state digest differs from the quorum's (rolled back, lagging
    /// or forked); its approval is not counted.
    StateDiverged,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CosignerRefusal {
    pub cosigner: String,
    pub violations: Vec<Violation>,
}
