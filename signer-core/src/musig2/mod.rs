//! BIP-327 MuSig2, written from the BIP's algorithms and checked against every published
//! vector (`tests/bip327_vectors.rs`): key sorting and aggregation, plain and x-only
//! tweaks, nonce generation and aggregation, partial signing and verification,
//! signature aggregation, deterministic signing. It is the base NestedMuSig2 builds on.
//!
//! Must never: sign with a secret nonce twice (a [`SecNonce`] is consumed by value and is
//! not `Clone`; the store that persists it must still refuse reuse), derive a nonce
//! without fresh randomness outside [`deterministic_sign`], or accept a point or scalar
//! outside its range.

mod keyagg;
pub mod nested;
mod nonce;
mod session;

pub use keyagg::{key_agg, key_sort, KeyAggContext};
pub use nonce::{nonce_agg, nonce_gen, AggNonce, PubNonce, SecNonce};
pub use session::{deterministic_sign, partial_sig_agg, partial_sig_verify, sign, SessionContext};

use k256::elliptic_curve::group::GroupEncoding;
use k256::elliptic_curve::ops::Reduce;
use k256::elliptic_curve::point::AffineCoordinates;
use k256::elliptic_curve::PrimeField;
use k256::{AffinePoint, FieldBytes, ProjectivePoint, Scalar, U256};
use sha2::{Digest, Sha256};

/// Which input of another party was invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contribution {
    Pubkey,
    Pubnonce,
    Aggnonce,
    Aggothernonce,
    Psig,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MusigError {
    /// A party's input is invalid; `signer` is its index, when one party is to blame.
    #[error("invalid {contrib:?} from signer {signer:?}")]
    InvalidContribution { signer: Option<usize>, contrib: Contribution },
    #[error("{0}")]
    Value(&'static str),
}

fn blame(signer: usize, contrib: Contribution) -> MusigError {
    MusigError::InvalidContribution { signer: Some(signer), contrib }
}

/// `hash_tag(x) = SHA256(SHA256(tag) ‖ SHA256(tag) ‖ x)`, with `x` the concatenation of `parts`.
pub(crate) fn hash_tag(tag: &str, parts: &[&[u8]]) -> [u8; 32] {
    let t = Sha256::digest(tag.as_bytes());
    let mut h = Sha256::new();
    h.update(t);
    h.update(t);
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// `int(x) mod n`.
pub(crate) fn scalar_reduce(bytes: &[u8; 32]) -> Scalar {
    <Scalar as Reduce<U256>>::reduce_bytes(FieldBytes::from_slice(bytes))
}

/// `int(x)`, failing if `x ≥ n`.
pub(crate) fn scalar_strict(bytes: &[u8]) -> Option<Scalar> {
    if bytes.len() != 32 {
        return None;
    }
    Option::from(Scalar::from_repr(*FieldBytes::from_slice(bytes)))
}

/// `cpoint(x)`: a 33-byte compressed point (prefix 02/03, x on the curve).
pub(crate) fn cpoint(bytes: &[u8]) -> Option<ProjectivePoint> {
    if bytes.len() != 33 || (bytes[0] != 2 && bytes[0] != 3) {
        return None;
    }
    let mut repr = <AffinePoint as GroupEncoding>::Repr::default();
    repr.copy_from_slice(bytes);
    Option::<AffinePoint>::from(AffinePoint::from_bytes(&repr)).map(ProjectivePoint::from)
}

/// `cpoint_ext(x)`: like [`cpoint`], but 33 zero bytes are the point at infinity.
pub(crate) fn cpoint_ext(bytes: &[u8]) -> Option<ProjectivePoint> {
    if bytes.len() == 33 && bytes.iter().all(|b| *b == 0) {
        return Some(ProjectivePoint::IDENTITY);
    }
    cpoint(bytes)
}

/// `cbytes(P)` (P finite).
pub(crate) fn cbytes(p: &ProjectivePoint) -> [u8; 33] {
    let mut out = [0u8; 33];
    out.copy_from_slice(&p.to_affine().to_bytes());
    out
}

/// `cbytes_ext(P)`: 33 zero bytes for the point at infinity.
pub(crate) fn cbytes_ext(p: &ProjectivePoint) -> [u8; 33] {
    if *p == ProjectivePoint::IDENTITY {
        return [0u8; 33];
    }
    cbytes(p)
}

pub(crate) fn xbytes(p: &ProjectivePoint) -> [u8; 32] {
    p.to_affine().x().into()
}

pub(crate) fn has_even_y(p: &ProjectivePoint) -> bool {
    !bool::from(p.to_affine().y_is_odd())
}

pub(crate) fn scalar_bytes(s: &Scalar) -> [u8; 32] {
    s.to_bytes().into()
}
