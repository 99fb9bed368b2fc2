//! BIP-327 key sorting, key aggregation and tweaking.
//!
//! Must never: accept an invalid individual key (the culprit is named) or a tweak ≥ n.

use alloc::vec::Vec;

use k256::{ProjectivePoint, Scalar};

use super::{blame, cpoint, has_even_y, hash_tag, scalar_reduce, scalar_strict, xbytes, Contribution, MusigError};

/// `KeySort`: lexicographic order of 33-byte keys.
pub fn key_sort(pubkeys: &[[u8; 33]]) -> Vec<[u8; 33]> {
    let mut v = pubkeys.to_vec();
    v.sort_unstable();
    v
}

/// `keyagg_ctx = (Q, gacc, tacc)` plus the key list it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyAggContext {
    pub(crate) pubkeys: Vec<[u8; 33]>,
    pub(crate) q: ProjectivePoint,
    pub(crate) gacc: Scalar,
    pub(crate) tacc: Scalar,
}

fn second_key(pubkeys: &[[u8; 33]]) -> [u8; 33] {
    pubkeys.iter().find(|pk| **pk != pubkeys[0]).copied().unwrap_or([0u8; 33])
}

fn hash_keys(pubkeys: &[[u8; 33]]) -> [u8; 32] {
    let parts: Vec<&[u8]> = pubkeys.iter().map(|p| p.as_slice()).collect();
    hash_tag("KeyAgg list", &parts)
}

fn coeff_internal(l: &[u8; 32], pk: &[u8; 33], pk2: &[u8; 33]) -> Scalar {
    if pk == pk2 {
        return Scalar::ONE;
    }
    scalar_reduce(&hash_tag("KeyAgg coefficient", &[l, pk]))
}

/// `KeyAggCoeff(pk1..u, pk')`.
pub(crate) fn key_agg_coeff(pubkeys: &[[u8; 33]], pk: &[u8; 33]) -> Scalar {
    coeff_internal(&hash_keys(pubkeys), pk, &second_key(pubkeys))
}

/// `KeyAgg(pk1..u)`.
pub fn key_agg(pubkeys: &[[u8; 33]]) -> Result<KeyAggContext, MusigError> {
    if pubkeys.is_empty() {
        return Err(MusigError::Value("at least one public key is required"));
    }
    let l = hash_keys(pubkeys);
    let pk2 = second_key(pubkeys);
    let mut q = ProjectivePoint::IDENTITY;
    for (i, pk) in pubkeys.iter().enumerate() {
        let p = cpoint(pk).ok_or_else(|| blame(i, Contribution::Pubkey))?;
        q += p * coeff_internal(&l, pk, &pk2);
    }
    if q == ProjectivePoint::IDENTITY {
        return Err(MusigError::Value("the aggregate public key is infinite"));
    }
    Ok(KeyAggContext { pubkeys: pubkeys.to_vec(), q, gacc: Scalar::ONE, tacc: Scalar::ZERO })
}

impl KeyAggContext {
    /// `ApplyTweak(keyagg_ctx, tweak, is_xonly_t)`.
    pub fn apply_tweak(&self, tweak: &[u8; 32], is_xonly: bool) -> Result<Self, MusigError> {
        let g = if is_xonly && !has_even_y(&self.q) { -Scalar::ONE } else { Scalar::ONE };
        let t = scalar_strict(tweak).ok_or(MusigError::Value("The tweak must be less than n."))?;
        let q = self.q * g + ProjectivePoint::GENERATOR * t;
        if q == ProjectivePoint::IDENTITY {
            return Err(MusigError::Value("The result of tweaking cannot be infinity."));
        }
        Ok(Self { pubkeys: self.pubkeys.clone(), q, gacc: g * self.gacc, tacc: t + g * self.tacc })
    }

    /// `GetXonlyPubkey`: the 32-byte x-only aggregate key.
    pub fn xonly_pubkey(&self) -> [u8; 32] {
        xbytes(&self.q)
    }

    /// `GetPlainPubkey`: the 33-byte compressed aggregate key.
    pub fn plain_pubkey(&self) -> [u8; 33] {
        super::cbytes(&self.q)
    }
}
