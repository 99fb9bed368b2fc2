//! BOLT 3 per-commitment key derivation: `pubkey = basepoint + SHA256(pcp ‖ basepoint)·G`,
//! its secret counterpart, and the revocation key
//! `R·SHA256(R ‖ pcp) + pcp·SHA256(pcp ‖ R)`. Shared by legacy and taproot channels;
//! checked against the derived keys of lnd's vectors.
//!
//! Must never: accept a point or scalar that does not parse, or return a key at infinity.

use bitcoin::hashes::{sha256, Hash};
use bitcoin::secp256k1::{PublicKey, Scalar, Secp256k1, SecretKey};

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid key material for BOLT 3 derivation")]
pub struct DerivationError;

fn tweak(a: &[u8; 33], b: &[u8; 33]) -> Result<Scalar, DerivationError> {
    let h = sha256::Hash::hash(&[&a[..], &b[..]].concat()).to_byte_array();
    Scalar::from_be_bytes(h).map_err(|_| DerivationError)
}

fn pk(b: &[u8; 33]) -> Result<PublicKey, DerivationError> {
    PublicKey::from_slice(b).map_err(|_| DerivationError)
}

/// The scalar `SHA256(per_commitment_point ‖ basepoint)` that [`derive_pubkey`] adds (for
/// threshold signers, who add it to their shares).
pub fn per_commitment_tweak(per_commitment_point: &[u8; 33], basepoint: &[u8; 33]) -> [u8; 32] {
    sha256::Hash::hash(&[&per_commitment_point[..], &basepoint[..]].concat()).to_byte_array()
}

/// `basepoint + SHA256(per_commitment_point ‖ basepoint)·G`.
pub fn derive_pubkey(basepoint: &[u8; 33], per_commitment_point: &[u8; 33]) -> Result<[u8; 33], DerivationError> {
    let t = tweak(per_commitment_point, basepoint)?;
    pk(basepoint)?
        .add_exp_tweak(&Secp256k1::verification_only(), &t)
        .map(|p| p.serialize())
        .map_err(|_| DerivationError)
}

/// The secret key of [`derive_pubkey`].
pub fn derive_privkey(
    basepoint_secret: &[u8; 32],
    per_commitment_point: &[u8; 33],
) -> Result<[u8; 32], DerivationError> {
    let sk = SecretKey::from_slice(basepoint_secret).map_err(|_| DerivationError)?;
    let basepoint = PublicKey::from_secret_key(&Secp256k1::signing_only(), &sk).serialize();
    let t = tweak(per_commitment_point, &basepoint)?;
    sk.add_tweak(&t).map(|s| s.secret_bytes()).map_err(|_| DerivationError)
}

/// `revocation_basepoint·SHA256(revocation_basepoint ‖ pcp) + pcp·SHA256(pcp ‖ revocation_basepoint)`.
pub fn derive_revocation_pubkey(
    revocation_basepoint: &[u8; 33],
    per_commitment_point: &[u8; 33],
) -> Result<[u8; 33], DerivationError> {
    let secp = Secp256k1::verification_only();
    let a = pk(revocation_basepoint)?
        .mul_tweak(&secp, &tweak(revocation_basepoint, per_commitment_point)?)
        .map_err(|_| DerivationError)?;
    let b = pk(per_commitment_point)?
        .mul_tweak(&secp, &tweak(per_commitment_point, revocation_basepoint)?)
        .map_err(|_| DerivationError)?;
    a.combine(&b).map(|p| p.serialize()).map_err(|_| DerivationError)
}

/// For threshold signers of the revocation key of `revocation_basepoint` once the
/// per-commitment secret is known: `(m, a)` with `key = basepoint·m + a·G`, i.e.
/// `m = SHA256(R ‖ P)` and `a = p·SHA256(P ‖ R)`.
pub fn revocation_tweaks(
    revocation_basepoint: &[u8; 33],
    per_commitment_secret: &[u8; 32],
) -> Result<([u8; 32], [u8; 32]), DerivationError> {
    let p = SecretKey::from_slice(per_commitment_secret).map_err(|_| DerivationError)?;
    let point = PublicKey::from_secret_key(&Secp256k1::signing_only(), &p).serialize();
    let m = sha256::Hash::hash(&[&revocation_basepoint[..], &point[..]].concat()).to_byte_array();
    let a = p.mul_tweak(&tweak(&point, revocation_basepoint)?).map_err(|_| DerivationError)?;
    Ok((m, a.secret_bytes()))
}
