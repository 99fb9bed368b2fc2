//! Hard bounds on everything that crosses the wire. Decoders and validators check
//! against these; nothing here is configurable at run time on purpose, so that two
//! peers of the same version always agree on what is acceptable.

/// Largest frame body (version + encoded message), in bytes.
pub const MAX_FRAME_BYTES: usize = 1 << 20;
/// Largest serialized PSBT accepted in a request.
pub const MAX_PSBT_BYTES: usize = 512 * 1024;
/// Most cosigners in one quorum.
pub const MAX_COSIGNERS: usize = 32;
/// Most signatures (FROST sessions) in one signing request, e.g. PSBT inputs.
pub const MAX_SIGN_ITEMS: usize = 64;
/// Largest serialized FROST object (package, share, commitment) we accept.
pub const MAX_FROST_BLOB_BYTES: usize = 16 * 1024;
/// Most nonce uses listed in one signing report (≈ 75 bytes each).
pub const MAX_REPORT_NONCES: usize = 4096;
/// Most nonce commitments handed out in one reply.
pub const MAX_NONCE_BATCH: u32 = 256;
/// Most policy violations reported in one refusal.
pub const MAX_VIOLATIONS: usize = 64;
/// Longest free-text detail in an error or violation.
pub const MAX_DETAIL_BYTES: usize = 1024;
/// Longest certificate (DER) carried in a DKG participant list.
pub const MAX_CERT_BYTES: usize = 4096;
/// Longest identity signature (DER ECDSA) carried in a DKG message.
pub const MAX_IDENTITY_SIG_BYTES: usize = 128;
/// Most keys a cosigner reports in one hello.
pub const MAX_KEYS: usize = 256;
/// HTLCs in one commitment (BOLT 2: 483 each way).
pub const MAX_COMMITMENT_HTLCS: usize = 966;
/// A transaction in a channel request (sweeps, HTLC and anchor spends).
pub const MAX_TX_BYTES: usize = 400 * 1024;
/// Scripts, keys and other small blobs in channel requests.
pub const MAX_SCRIPT_BYTES: usize = 10_000;
/// Preimages revealed in one commitment update.
pub const MAX_PREIMAGES: usize = 966;
/// A gossip message or invoice preimage to sign.
pub const MAX_NODE_MESSAGE_BYTES: usize = 64 * 1024;
/// A BOLT 11 invoice carried for a payment approval (BOLT 11 bounds the invoice at 7089
/// characters with its longest fields; a margin on top).
pub const MAX_INVOICE_CHARS: usize = 8 * 1024;
/// Block headers in one heartbeat (one retarget period).
pub const MAX_HEADERS: usize = 2016;
/// Channels one funding transaction may open.
pub const MAX_FUNDING_CHANNELS: usize = 64;
/// Prevouts listed with one taproot sweep.
pub const MAX_SWEEP_INPUTS: usize = 256;
/// Tweaks on the way from the group key to a signing key.
pub const MAX_KEY_TWEAKS: usize = 4;
/// Merkle branch levels in a funding proof (2^24 transactions per block).
pub const MAX_MERKLE_BRANCH: usize = 24;
