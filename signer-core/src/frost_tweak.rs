//! Public tweaks of the FROST group key, applied alike to a cosigner's key package (its
//! share) and to the group's public key package, so the t-of-n group signs under derived
//! keys without a new DKG:
//! - [`KeyTweak::Taproot`]: BIP-341's `P + H_TapTweak(P ‖ root)·G` on the even-y key (what
//!   the FROST crate's `tweak` does);
//! - [`KeyTweak::Add`]: BOLT 3's additive per-commitment derivation `P + t·G` on the even-y
//!   key (a published 33-byte basepoint is always the even-y point, `02 ‖ x`);
//! - [`KeyTweak::MulAdd`]: `P·m + a·G` on the even-y key, BOLT 3's revocation key
//!   `R·SHA256(R ‖ P) + P·SHA256(P ‖ R)` once the per-commitment secret `p` is known
//!   (`m = SHA256(R ‖ P)`, `a = p·SHA256(P ‖ R)`), in one step (no parity change between).
//!
//! Mapping every share `s ↦ s·m + a` maps the shared secret the same way (Lagrange
//! coefficients are linear and sum to one), and every verifying share and the group key
//! `V ↦ V·m + a·G`. The arithmetic is done by
//! libsecp256k1 on the packages' serialized forms, through the crate's public API.
//!
//! Must never: take a tweak from a request (callers derive tweaks from stored public facts),
//! or return a package whose group key disagrees with [`tweaked_key`].

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use bitcoin::secp256k1::{PublicKey, Scalar, Secp256k1, SecretKey};
use frost_secp256k1_tr::keys::{EvenY, KeyPackage, PublicKeyPackage, SigningShare, Tweak, VerifyingShare};
use frost_secp256k1_tr::VerifyingKey;

pub use qls_protocol::KeyTweak;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TweakError {
    #[error("tweak is not a scalar below the curve order")]
    NotAScalar,
    #[error("the tweaked {0} is not valid (the tweak cancels the key)")]
    Degenerate(&'static str),
    #[error("a package field does not (de)serialize: {0}")]
    Encoding(&'static str),
}

fn scalar(t: &[u8; 32]) -> Result<Scalar, TweakError> {
    Scalar::from_be_bytes(*t).map_err(|_| TweakError::NotAScalar)
}

/// `x ↦ x·m + a` for a scalar, `X ↦ X·m + a·G` for a point (`m = 1` for an addition).
#[derive(Clone, Copy)]
struct Affine {
    mul: Option<Scalar>,
    add: Scalar,
}

impl Affine {
    fn of(tweak: &KeyTweak) -> Result<Option<Self>, TweakError> {
        Ok(match tweak {
            KeyTweak::Taproot(_) => None,
            KeyTweak::Add(t) => Some(Self { mul: None, add: scalar(t)? }),
            KeyTweak::MulAdd { mul, add } => Some(Self { mul: Some(scalar(mul)?), add: scalar(add)? }),
        })
    }

    fn point(&self, bytes: &[u8], what: &'static str) -> Result<[u8; 33], TweakError> {
        let secp = Secp256k1::verification_only();
        let mut p = PublicKey::from_slice(bytes).map_err(|_| TweakError::Encoding(what))?;
        if let Some(m) = self.mul {
            p = p.mul_tweak(&secp, &m).map_err(|_| TweakError::Degenerate(what))?;
        }
        Ok(p.add_exp_tweak(&secp, &self.add).map_err(|_| TweakError::Degenerate(what))?.serialize())
    }

    fn secret(&self, bytes: &[u8]) -> Result<[u8; 32], TweakError> {
        let mut s = SecretKey::from_slice(bytes).map_err(|_| TweakError::Encoding("share"))?;
        if let Some(m) = self.mul {
            s = s.mul_tweak(&m).map_err(|_| TweakError::Degenerate("share"))?;
        }
        Ok(s.add_tweak(&self.add).map_err(|_| TweakError::Degenerate("share"))?.secret_bytes())
    }

    fn verifying_key(&self, key: &VerifyingKey) -> Result<VerifyingKey, TweakError> {
        let bytes = key.serialize().map_err(|_| TweakError::Encoding("group key"))?;
        VerifyingKey::deserialize(&self.point(&bytes, "group key")?).map_err(|_| TweakError::Encoding("group key"))
    }

    fn verifying_share(&self, share: &VerifyingShare) -> Result<VerifyingShare, TweakError> {
        let bytes = share.serialize().map_err(|_| TweakError::Encoding("verifying share"))?;
        VerifyingShare::deserialize(&self.point(&bytes, "verifying share")?)
            .map_err(|_| TweakError::Encoding("verifying share"))
    }

    fn key_package(&self, kp: KeyPackage) -> Result<KeyPackage, TweakError> {
        let kp = kp.into_even_y(None);
        let share = self.secret(&kp.signing_share().serialize())?;
        let signing_share = SigningShare::deserialize(&share).map_err(|_| TweakError::Encoding("signing share"))?;
        Ok(KeyPackage::new(
            *kp.identifier(),
            signing_share,
            self.verifying_share(kp.verifying_share())?,
            self.verifying_key(kp.verifying_key())?,
            *kp.min_signers(),
        ))
    }

    fn public_package(&self, pp: PublicKeyPackage) -> Result<PublicKeyPackage, TweakError> {
        let pp = pp.into_even_y(None);
        let shares = pp
            .verifying_shares()
            .iter()
            .map(|(id, s)| Ok((*id, self.verifying_share(s)?)))
            .collect::<Result<BTreeMap<_, _>, TweakError>>()?;
        Ok(PublicKeyPackage::new(shares, self.verifying_key(pp.verifying_key())?, pp.min_signers()))
    }
}

/// A cosigner's key package after `tweaks`, in order.
pub fn tweak_key_package(kp: &KeyPackage, tweaks: &[KeyTweak]) -> Result<KeyPackage, TweakError> {
    tweaks.iter().try_fold(kp.clone(), |kp, t| match (t, Affine::of(t)?) {
        (KeyTweak::Taproot(root), _) => Ok(kp.tweak(root.as_ref())),
        (_, Some(a)) => a.key_package(kp),
        (_, None) => Ok(kp),
    })
}

/// The group's public key package after `tweaks`, in order.
pub fn tweak_public_package(pp: &PublicKeyPackage, tweaks: &[KeyTweak]) -> Result<PublicKeyPackage, TweakError> {
    tweaks.iter().try_fold(pp.clone(), |pp, t| match (t, Affine::of(t)?) {
        (KeyTweak::Taproot(root), _) => Ok(pp.tweak(root.as_ref())),
        (_, Some(a)) => a.public_package(pp),
        (_, None) => Ok(pp),
    })
}

/// The x-only key a signature under `tweaks` verifies with.
pub fn tweaked_key(pp: &PublicKeyPackage, tweaks: &[KeyTweak]) -> Result<[u8; 32], TweakError> {
    Ok(crate::keys::key_id_of(&tweak_public_package(pp, tweaks)?))
}

/// Serialized tweaks, for hashing into request digests.
pub fn describe(tweaks: &[KeyTweak]) -> Vec<u8> {
    postcard::to_allocvec(tweaks).unwrap_or_default()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use alloc::vec;
    use bitcoin::key::TapTweak;
    use bitcoin::secp256k1::{schnorr, Message, XOnlyPublicKey};
    use rand::SeedableRng;

    /// FROST signing under `tweaks` by the first `t` of `shares`; the aggregate and the key.
    pub(crate) fn sign_with(
        shares: &[crate::keys::KeyShare],
        tweaks: &[KeyTweak],
        msg: &[u8; 32],
    ) -> ([u8; 64], [u8; 32]) {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(msg[0].into());
        let signers: Vec<&crate::keys::KeyShare> = shares[..shares[0].threshold() as usize].iter().collect();
        let sig = crate::dealer::sign_in_process_tweaked(&signers, msg, tweaks, &mut rng).unwrap();
        (sig, tweaked_key(&shares[0].public_key_package, tweaks).unwrap())
    }

    /// 2-of-3 FROST signing under `tweaks` with shares from the dealer.
    fn sign(tweaks: &[KeyTweak], msg: &[u8; 32]) -> ([u8; 64], [u8; 32]) {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        let shares = crate::dealer::split(None, &[[1; 32], [2; 32], [3; 32]], 2, &mut rng).unwrap();
        let shares: Vec<_> = shares.into_iter().map(|(_, s)| s).collect();
        sign_with(&shares, tweaks, msg)
    }

    fn group_key() -> [u8; 33] {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        let shares = crate::dealer::split(None, &[[1; 32], [2; 32], [3; 32]], 2, &mut rng).unwrap();
        let mut p = [2u8; 33];
        p[1..].copy_from_slice(&crate::keys::key_id_of(&shares[0].1.public_key_package));
        p
    }

    /// The keys are computed independently with libsecp256k1 (BOLT 3 `derive_pubkey` and
    /// rust-bitcoin's BIP-341 tap tweak); every signature is checked by libsecp256k1.
    #[test]
    fn signatures_under_chained_tweaks_verify_under_independently_derived_keys() {
        let secp = Secp256k1::new();
        let msg = [0x42; 32];
        let root = [0x17; 32];
        let base = group_key();
        // Basepoint (BIP-341 tweak by a root, as the channel basepoints are made).
        let basepoint_x = XOnlyPublicKey::from_slice(&base[1..])
            .unwrap()
            .tap_tweak(&secp, Some(bitcoin::TapNodeHash::assume_hidden(root)))
            .0
            .to_x_only_public_key();
        let mut basepoint = [2u8; 33];
        basepoint[1..].copy_from_slice(&basepoint_x.serialize());
        // BOLT 3 per-commitment key of that basepoint for some point.
        let pcp = PublicKey::from_secret_key(&secp, &SecretKey::from_slice(&[9; 32]).unwrap()).serialize();
        let derived = crate::bolt3_keys::derive_pubkey(&basepoint, &pcp).unwrap();
        let add = crate::bolt3_keys::per_commitment_tweak(&pcp, &basepoint);
        // And a BIP-86 output key of the derived key (as an anchor's key path is).
        let derived_x = PublicKey::from_slice(&derived).unwrap().x_only_public_key().0;
        let output_x = derived_x.tap_tweak(&secp, None).0.to_x_only_public_key();
        // The BOLT 3 revocation key of that basepoint for a per-commitment secret.
        let pcs = SecretKey::from_slice(&[11; 32]).unwrap();
        let rev_pcp = PublicKey::from_secret_key(&secp, &pcs).serialize();
        let revocation = crate::bolt3_keys::derive_revocation_pubkey(&basepoint, &rev_pcp).unwrap();
        let revocation_x = PublicKey::from_slice(&revocation).unwrap().x_only_public_key().0;
        let (rmul, radd) = crate::bolt3_keys::revocation_tweaks(&basepoint, &pcs.secret_bytes()).unwrap();
        for (tweaks, expected) in [
            (vec![KeyTweak::Taproot(Some(root)), KeyTweak::MulAdd { mul: rmul, add: radd }], revocation_x),
            (vec![KeyTweak::Taproot(Some(root))], basepoint_x),
            (vec![KeyTweak::Taproot(Some(root)), KeyTweak::Add(add)], derived_x),
            (vec![KeyTweak::Taproot(Some(root)), KeyTweak::Add(add), KeyTweak::Taproot(None)], output_x),
        ] {
            let (sig, key) = sign(&tweaks, &msg);
            assert_eq!(key, expected.serialize(), "{tweaks:?}");
            let sig = schnorr::Signature::from_slice(&sig).unwrap();
            secp.verify_schnorr(&sig, &Message::from_digest(msg), &expected).expect("libsecp accepts");
        }
    }

    #[test]
    fn a_tweak_at_or_above_the_order_is_refused() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        let shares = crate::dealer::split(None, &[[1; 32], [2; 32], [3; 32]], 2, &mut rng).unwrap();
        let bad = [KeyTweak::Add([0xff; 32])];
        assert_eq!(tweak_key_package(&shares[0].1.key_package, &bad).unwrap_err(), TweakError::NotAScalar);
        assert_eq!(tweak_public_package(&shares[0].1.public_key_package, &bad).unwrap_err(), TweakError::NotAScalar);
    }
}
