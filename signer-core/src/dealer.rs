//! Trusted-dealer key generation, for tests and vector checks only: splits a key (given
//! or random) into shares for cosigners identified by fingerprint, and applies the same
//! BIP-341 no-script-path tweak the DKG applies, so dealer keys follow the one key
//! convention (see `keys`). Cosigners refuse dealer imports unless configured for tests.
//!
//! Must never: be reachable in a production signing path.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use frost_secp256k1_tr::keys::{self, IdentifierList, KeyPackage, Tweak};
use frost_secp256k1_tr::SigningKey;
use rand_core::{CryptoRng, RngCore};

use qls_protocol::Fingerprint;

use crate::keys::{identifier_for, KeyError, KeyShare};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DealerError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("FROST dealer split failed")]
    Split,
}

/// Splits `secret` (random when `None`) t-of-n among `cosigners`; returns each
/// cosigner's share, in the order given.
pub fn split<R: RngCore + CryptoRng>(
    secret: Option<[u8; 32]>,
    cosigners: &[Fingerprint],
    threshold: u16,
    rng: &mut R,
) -> Result<Vec<(Fingerprint, KeyShare)>, DealerError> {
    let ids = cosigners.iter().map(identifier_for).collect::<Result<Vec<_>, _>>()?;
    let n = cosigners.len() as u16;
    let (shares, public) = match secret {
        Some(s) => {
            let key = SigningKey::deserialize(&s).map_err(|_| DealerError::Split)?;
            keys::split(&key, n, threshold, IdentifierList::Custom(&ids), rng)
        }
        None => keys::generate_with_dealer(n, threshold, IdentifierList::Custom(&ids), rng),
    }
    .map_err(|_| DealerError::Split)?;
    let public = public.tweak::<&[u8]>(None);
    let by_id: BTreeMap<_, _> = shares.into_iter().collect();
    cosigners
        .iter()
        .zip(ids)
        .map(|(fp, id)| {
            let share = by_id.get(&id).ok_or(DealerError::Split)?.clone();
            let kp = KeyPackage::try_from(share).map_err(|_| DealerError::Split)?.tweak::<&[u8]>(None);
            Ok((*fp, KeyShare::new(kp, public.clone())?))
        })
        .collect()
}

/// Runs both FROST rounds for `message` among `signers` in one process and aggregates:
/// the compute baseline for benchmarks and the reference path for vector tests.
pub fn sign_in_process<R: RngCore + CryptoRng>(
    signers: &[&KeyShare],
    message: &[u8],
    rng: &mut R,
) -> Result<[u8; 64], DealerError> {
    sign_in_process_tweaked(signers, message, &[], rng)
}

/// [`sign_in_process`] under the group key after `tweaks` (see [`crate::frost_tweak`]).
pub fn sign_in_process_tweaked<R: RngCore + CryptoRng>(
    signers: &[&KeyShare],
    message: &[u8],
    tweaks: &[crate::frost_tweak::KeyTweak],
    rng: &mut R,
) -> Result<[u8; 64], DealerError> {
    use frost_secp256k1_tr::{round1, round2, SigningPackage};
    let first = signers.first().ok_or(DealerError::Split)?;
    let mut nonces = BTreeMap::new();
    let mut commitments = BTreeMap::new();
    for s in signers {
        let (n, c) = round1::commit(s.key_package.signing_share(), rng);
        nonces.insert(s.identifier(), n);
        commitments.insert(s.identifier(), c);
    }
    let package = SigningPackage::new(commitments, message);
    let mut shares = BTreeMap::new();
    for s in signers {
        let nonce = nonces.get(&s.identifier()).ok_or(DealerError::Split)?;
        let kp = crate::frost_tweak::tweak_key_package(&s.key_package, tweaks).map_err(|_| DealerError::Split)?;
        shares.insert(s.identifier(), round2::sign(&package, nonce, &kp).map_err(|_| DealerError::Split)?);
    }
    let pp =
        crate::frost_tweak::tweak_public_package(&first.public_key_package, tweaks).map_err(|_| DealerError::Split)?;
    let sig = frost_secp256k1_tr::aggregate(&package, &shares, &pp).map_err(|_| DealerError::Split)?;
    let bytes = sig.serialize().map_err(|_| DealerError::Split)?;
    bytes.as_slice().try_into().map_err(|_| DealerError::Split)
}
