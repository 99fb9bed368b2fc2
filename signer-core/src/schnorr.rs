//! BIP-340 verification with libsecp256k1: the check the coordinator runs on every
//! aggregated signature before it leaves, and that tests run against the BIP-340 vectors.
//!
//! Must never: report success for anything libsecp256k1 does not accept.

use secp256k1::{schnorr::Signature, Message, Secp256k1, XOnlyPublicKey};

/// Why a signature did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("public key is not a valid x-only point")]
    BadPublicKey,
    #[error("signature is not 64 bytes or not well-formed")]
    BadSignature,
    #[error("signature does not verify")]
    Invalid,
}

/// Verifies a BIP-340 signature over a 32-byte message.
pub fn verify_bip340(pubkey_xonly: &[u8; 32], msg: &[u8; 32], sig: &[u8]) -> Result<(), VerifyError> {
    let pk = XOnlyPublicKey::from_slice(pubkey_xonly).map_err(|_| VerifyError::BadPublicKey)?;
    let sig = Signature::from_slice(sig).map_err(|_| VerifyError::BadSignature)?;
    let msg = Message::from_digest(*msg);
    Secp256k1::verification_only().verify_schnorr(&sig, &msg, &pk).map_err(|_| VerifyError::Invalid)
}
