//! Our keys of a taproot channel, derived by every cosigner alike from public facts:
//! - the funding key is the MuSig2 node key of the cosigners' *channel leaves*, each
//!   cosigner's base leaf key plus a public tweak by the channel id (no per-channel
//!   secret is ever stored or sent);
//! - the basepoints are the FROST group key tweaked (BIP-341 style, as the FROST crate
//!   tweaks) by a per-channel, per-role root, so FROST can later sign under them.
//!
//! Must never: use a leaf that its cosigner's identity key did not sign, or derive a
//! key from anything a request could choose besides the channel id.

use alloc::vec::Vec;

use bitcoin::secp256k1::{PublicKey, Scalar, Secp256k1, SecretKey, Verification};
use frost_secp256k1_tr::keys::{PublicKeyPackage, Tweak};
use qls_protocol::{ChannelKeysId, KeyTweak, TaprootHolderKeys};

use crate::musig2::{nested::node_pubkey, MusigError};
use crate::tagged::tagged_hash;

/// What a cosigner's identity key signs to vouch for its MuSig2 leaf.
pub fn leaf_statement(leaf: &[u8; 33]) -> [u8; 32] {
    tagged_hash("QLS/musig-leaf/v1", &[leaf])
}

fn leaf_tweak(leaf: &[u8; 33], channel: &ChannelKeysId) -> Scalar {
    // A tagged SHA-256 is below the curve order except with negligible probability; the
    // libsecp tweak below rejects the impossible case.
    Scalar::from_be_bytes(tagged_hash("QLS/channel-leaf/v1", &[leaf, channel])).unwrap_or(Scalar::ZERO)
}

/// A cosigner's leaf public key for `channel`: `P + H(P ‖ channel)·G`.
pub fn channel_leaf_pubkey<C: Verification>(
    secp: &Secp256k1<C>,
    leaf: &[u8; 33],
    channel: &ChannelKeysId,
) -> Result<[u8; 33], MusigError> {
    let p = PublicKey::from_slice(leaf).map_err(|_| MusigError::Value("leaf key is not a point"))?;
    let t = leaf_tweak(leaf, channel);
    Ok(p.add_exp_tweak(secp, &t).map_err(|_| MusigError::Value("leaf tweak"))?.serialize())
}

/// The matching secret: `d + H(P ‖ channel)`.
pub fn channel_leaf_secret(
    secret: &SecretKey,
    leaf: &[u8; 33],
    channel: &ChannelKeysId,
) -> Result<[u8; 32], MusigError> {
    let t = leaf_tweak(leaf, channel);
    Ok(secret.add_tweak(&t).map_err(|_| MusigError::Value("leaf tweak"))?.secret_bytes())
}

/// The quorum's funding key of `channel` from every cosigner's base leaf key.
pub fn funding_node_key<C: Verification>(
    secp: &Secp256k1<C>,
    leaves: &[[u8; 33]],
    channel: &ChannelKeysId,
) -> Result<([u8; 33], Vec<[u8; 33]>), MusigError> {
    let tweaked = leaves.iter().map(|l| channel_leaf_pubkey(secp, l, channel)).collect::<Result<Vec<_>, _>>()?;
    Ok((node_pubkey(&tweaked)?, tweaked))
}

/// The FROST-tweak root of one basepoint of one channel.
fn basepoint_root(channel: &ChannelKeysId, role: &str) -> [u8; 32] {
    tagged_hash("QLS/taproot-basepoint/v1", &[channel, role.as_bytes()])
}

/// The FROST tweak that makes basepoint `role` of `channel` from the group key.
pub fn basepoint_tweak(channel: &ChannelKeysId, role: &str) -> KeyTweak {
    KeyTweak::Taproot(Some(basepoint_root(channel, role)))
}

/// The FROST tweaks of basepoint `role` (published as `basepoint`) derived for the
/// per-commitment point `pcp` (BOLT 3 `derive_pubkey`).
pub fn per_commitment_tweaks(
    channel: &ChannelKeysId,
    role: &str,
    basepoint: &[u8; 33],
    pcp: &[u8; 33],
) -> Vec<KeyTweak> {
    alloc::vec![basepoint_tweak(channel, role), KeyTweak::Add(crate::bolt3_keys::per_commitment_tweak(pcp, basepoint))]
}

fn tweaked_point(group: &PublicKeyPackage, channel: &ChannelKeysId, role: &str) -> Result<[u8; 33], MusigError> {
    let key = crate::keys::key_id_of(&group.clone().tweak(Some(basepoint_root(channel, role))));
    let mut p = [0u8; 33];
    p[0] = 0x02; // x-only key, even y (BIP-340)
    p[1..].copy_from_slice(&key);
    PublicKey::from_slice(&p).map_err(|_| MusigError::Value("tweaked group key"))?;
    Ok(p)
}

/// Our keys of `channel`: the funding node key and the FROST-tweaked basepoints.
pub fn holder_keys<C: Verification>(
    secp: &Secp256k1<C>,
    group: &PublicKeyPackage,
    leaves: &[[u8; 33]],
    channel: &ChannelKeysId,
) -> Result<TaprootHolderKeys, MusigError> {
    let (funding, _) = funding_node_key(secp, leaves, channel)?;
    Ok(TaprootHolderKeys {
        funding: funding.to_vec(),
        revocation: tweaked_point(group, channel, "revocation")?.to_vec(),
        payment: tweaked_point(group, channel, "payment")?.to_vec(),
        delayed_payment: tweaked_point(group, channel, "delayed_payment")?.to_vec(),
        htlc: tweaked_point(group, channel, "htlc")?.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_leaf_secret_matches_its_public_key_and_channels_differ() {
        let secp = Secp256k1::new();
        let sk = SecretKey::from_slice(&[7; 32]).unwrap();
        let leaf = PublicKey::from_secret_key(&secp, &sk).serialize();
        let a = channel_leaf_secret(&sk, &leaf, &[1; 32]).unwrap();
        let pa = PublicKey::from_secret_key(&secp, &SecretKey::from_slice(&a).unwrap()).serialize();
        assert_eq!(pa, channel_leaf_pubkey(&secp, &leaf, &[1; 32]).unwrap());
        assert_ne!(pa, channel_leaf_pubkey(&secp, &leaf, &[2; 32]).unwrap());
        // The node key does not depend on the order leaves are listed in.
        let other = PublicKey::from_secret_key(&secp, &SecretKey::from_slice(&[8; 32]).unwrap()).serialize();
        let (k1, _) = funding_node_key(&secp, &[leaf, other], &[1; 32]).unwrap();
        let (k2, _) = funding_node_key(&secp, &[other, leaf], &[1; 32]).unwrap();
        assert_eq!(k1, k2);
    }
}
