//! The NestedMuSig2 session one cosigner signs in, built from the coordinator's session
//! message and the cosigner's own state: the quorum's internal aggregate nonce from every
//! leaf's nonce (this cosigner checks its own is there), the external nonce the quorum
//! shows the counterparty (`NonceAggExt`), the root aggregate nonce with the
//! counterparty's, the key tree (counterparty's funding key at the root, the other leaves
//! below) and the BIP-86 tweak of the funding output.
//!
//! Must never: accept a session without exactly one nonce per pinned leaf, or one in
//! which this cosigner's nonce differs from the one it stored.

use alloc::vec::Vec;

use bitcoin::hashes::Hash;
use qls_protocol::{ChannelKeysId, NestedSession};

use crate::musig2::nested::{nonce_agg_ext, others};
use crate::musig2::{key_agg, key_sort, nonce_agg, AggNonce, MusigError, PubNonce};

/// Everything a leaf needs for `nested_sign`, owned.
#[derive(Debug, Clone)]
pub struct LeafSession {
    pub nonce_path: [AggNonce; 2],
    pub pk_tree: [Vec<[u8; 33]>; 2],
    pub tweak: ([u8; 32], bool),
    /// The quorum's external nonce (what the counterparty sees).
    pub external_nonce: PubNonce,
}

fn arr33(v: &[u8]) -> Result<[u8; 33], MusigError> {
    v.try_into().map_err(|_| MusigError::Value("key is not 33 bytes"))
}

/// The BIP-86 tweak of `KeyAgg(KeySort(ours, theirs))` (x-only).
pub fn funding_tweak(ours: &[u8; 33], theirs: &[u8; 33]) -> Result<[u8; 32], MusigError> {
    let ctx = key_agg(&key_sort(&[*ours, *theirs]))?;
    let internal = bitcoin::key::UntweakedPublicKey::from_slice(&ctx.xonly_pubkey())
        .map_err(|_| MusigError::Value("aggregate key"))?;
    Ok(bitcoin::taproot::TapTweakHash::from_key_and_tweak(internal, None).to_byte_array())
}

/// Builds the session for the leaf `me` (its channel leaf key) of a quorum whose channel
/// leaves are `leaves` (index-aligned with `leaf_ids`), funding key `node_key`.
pub fn leaf_session(
    session: &NestedSession,
    leaf_ids: &[[u8; 32]],
    leaves: &[[u8; 33]],
    me: &[u8; 33],
    node_key: &[u8; 33],
    counterparty_funding: &[u8; 33],
    _channel: &ChannelKeysId,
) -> Result<LeafSession, MusigError> {
    if session.leaf_nonces.len() != leaves.len() {
        return Err(MusigError::Value("the session must carry one nonce per leaf"));
    }
    let mut nonces = Vec::with_capacity(leaves.len());
    for id in leaf_ids {
        let n = session
            .leaf_nonces
            .iter()
            .find(|n| &n.cosigner == id)
            .ok_or(MusigError::Value("a leaf's nonce is missing from the session"))?;
        let bytes: [u8; 66] = n.pubnonce.as_slice().try_into().map_err(|_| MusigError::Value("nonce length"))?;
        nonces.push(PubNonce(bytes));
    }
    let internal = nonce_agg(&nonces)?;
    let external = nonce_agg_ext(&internal, node_key)?;
    let theirs: [u8; 66] =
        session.counterparty_nonce.as_slice().try_into().map_err(|_| MusigError::Value("counterparty nonce length"))?;
    let root = nonce_agg(&[external, PubNonce(theirs)])?;
    Ok(LeafSession {
        nonce_path: [root, internal],
        pk_tree: [alloc::vec![*counterparty_funding], others(leaves, me)],
        tweak: (funding_tweak(node_key, counterparty_funding)?, true),
        external_nonce: external,
    })
}

/// A 33-byte key from the wire.
pub fn key33(v: &[u8]) -> Result<[u8; 33], MusigError> {
    arr33(v)
}
