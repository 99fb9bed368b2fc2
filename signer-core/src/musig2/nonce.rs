//! BIP-327 nonce generation and aggregation. Randomness comes in as an argument (this
//! crate reads no RNG): callers pass 32 fresh bytes from the OS for every nonce.
//!
//! Must never: make a nonce without the caller's fresh randomness, or let a [`SecNonce`]
//! be copied (it is not `Clone`; signing consumes it).

use alloc::vec::Vec;

use k256::ProjectivePoint;

use super::{blame, cbytes, cbytes_ext, cpoint, hash_tag, scalar_bytes, scalar_reduce, Contribution, MusigError};

/// `secnonce = k1 ‖ k2 ‖ pk` (97 bytes). Consumed by signing; never copy it, and persist
/// it only in a store that refuses a second use.
#[derive(PartialEq, Eq)]
pub struct SecNonce(pub(crate) [u8; 97]);

impl core::fmt::Debug for SecNonce {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SecNonce(..)")
    }
}

impl SecNonce {
    /// For a store that persisted it; the store must refuse to hand it out twice.
    pub fn from_bytes(bytes: [u8; 97]) -> Self {
        Self(bytes)
    }
    pub fn to_bytes(&self) -> [u8; 97] {
        self.0
    }

    /// The matching public nonce (`k1·G ‖ k2·G`); all-zero points if the bytes are not
    /// valid scalars (signing refuses such a nonce anyway).
    pub fn public_nonce(&self) -> PubNonce {
        let mut out = [0u8; 66];
        for (i, part) in [&self.0[..32], &self.0[32..64]].into_iter().enumerate() {
            if let Some(k) = super::scalar_strict(part) {
                out[i * 33..(i + 1) * 33].copy_from_slice(&cbytes(&(ProjectivePoint::GENERATOR * k)));
            }
        }
        PubNonce(out)
    }
}

/// `pubnonce = cbytes(R1) ‖ cbytes(R2)` (66 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PubNonce(pub [u8; 66]);

/// `aggnonce = cbytes_ext(R1) ‖ cbytes_ext(R2)` (66 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AggNonce(pub [u8; 66]);

/// `NonceGen(sk, pk, aggpk, m, extra_in)` with `rand_` the fresh random 32 bytes.
pub fn nonce_gen(
    rand_: &[u8; 32],
    sk: Option<&[u8; 32]>,
    pk: &[u8; 33],
    aggpk: Option<&[u8; 32]>,
    msg: Option<&[u8]>,
    extra_in: Option<&[u8]>,
) -> Result<(SecNonce, PubNonce), MusigError> {
    let mut rand = *rand_;
    if let Some(sk) = sk {
        let aux = hash_tag("MuSig/aux", &[rand_]);
        for (r, (s, a)) in rand.iter_mut().zip(sk.iter().zip(aux)) {
            *r = s ^ a;
        }
    }
    let aggpk: &[u8] = aggpk.map(|a| a.as_slice()).unwrap_or(&[]);
    let mut m_prefixed = Vec::new();
    match msg {
        None => m_prefixed.push(0u8),
        Some(m) => {
            m_prefixed.push(1u8);
            m_prefixed.extend_from_slice(&(m.len() as u64).to_be_bytes());
            m_prefixed.extend_from_slice(m);
        }
    }
    let extra_in = extra_in.unwrap_or(&[]);
    let extra_len = u32::try_from(extra_in.len()).map_err(|_| MusigError::Value("extra_in is too long"))?;
    let k = |i: u8| {
        scalar_reduce(&hash_tag(
            "MuSig/nonce",
            &[
                &rand,
                &[pk.len() as u8],
                pk,
                &[aggpk.len() as u8],
                aggpk,
                &m_prefixed,
                &extra_len.to_be_bytes(),
                extra_in,
                &[i],
            ],
        ))
    };
    let (k1, k2) = (k(0), k(1));
    if bool::from(k1.is_zero()) || bool::from(k2.is_zero()) {
        return Err(MusigError::Value("nonce is zero"));
    }
    let mut sec = [0u8; 97];
    sec[..32].copy_from_slice(&scalar_bytes(&k1));
    sec[32..64].copy_from_slice(&scalar_bytes(&k2));
    sec[64..].copy_from_slice(pk);
    let mut pubn = [0u8; 66];
    pubn[..33].copy_from_slice(&cbytes(&(ProjectivePoint::GENERATOR * k1)));
    pubn[33..].copy_from_slice(&cbytes(&(ProjectivePoint::GENERATOR * k2)));
    Ok((SecNonce(sec), PubNonce(pubn)))
}

/// `NonceAgg(pubnonce1..u)`; an invalid public nonce is blamed on its signer.
pub fn nonce_agg(pubnonces: &[PubNonce]) -> Result<AggNonce, MusigError> {
    if pubnonces.is_empty() {
        return Err(MusigError::Value("at least one public nonce is required"));
    }
    let mut out = [0u8; 66];
    for j in 0..2 {
        let mut r = ProjectivePoint::IDENTITY;
        for (i, n) in pubnonces.iter().enumerate() {
            r += cpoint(&n.0[33 * j..33 * (j + 1)]).ok_or_else(|| blame(i, Contribution::Pubnonce))?;
        }
        out[33 * j..33 * (j + 1)].copy_from_slice(&cbytes_ext(&r));
    }
    Ok(AggNonce(out))
}
