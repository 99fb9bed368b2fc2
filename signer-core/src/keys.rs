//! A cosigner's share of one group key: its FROST `KeyPackage` and the group's
//! `PublicKeyPackage`, their stored encoding, and the key id.
//!
//! Key convention (ARCHITECTURE.md): FROST-tr's DKG already applies the BIP-341
//! no-script-path tweak, so the group verifying key *is* the P2TR output key
//! Q = P + H_TapTweak(P)·G, and the key id is Q's x coordinate. Dealer-made keys get the
//! same tweak at import, so both paths yield the same kind of key and signing never
//! tweaks again. Must never: apply a second tweak, or expose the signing share.

use alloc::vec::Vec;

use frost_secp256k1_tr::keys::{KeyPackage, PublicKeyPackage, Tweak};
use frost_secp256k1_tr::Identifier;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use qls_protocol::{Fingerprint, KeyId};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("stored or received key material does not decode: {0}")]
    Decode(&'static str),
    #[error("key package and public key package disagree on the group key")]
    Inconsistent,
    #[error("FROST identifier derivation failed")]
    Identifier,
}

/// One cosigner's share of a group key.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyShare {
    pub key_package: KeyPackage,
    pub public_key_package: PublicKeyPackage,
}

impl core::fmt::Debug for KeyShare {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("KeyShare").field("key_id", &hex::encode(self.key_id())).finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
struct StoredKeyShare {
    key_package: Vec<u8>,
    public_key_package: Vec<u8>,
}

impl KeyShare {
    pub fn new(key_package: KeyPackage, public_key_package: PublicKeyPackage) -> Result<Self, KeyError> {
        if key_package.verifying_key() != public_key_package.verifying_key() {
            return Err(KeyError::Inconsistent);
        }
        Ok(Self { key_package, public_key_package })
    }

    pub fn key_id(&self) -> KeyId {
        key_id_of(&self.public_key_package)
    }

    pub fn threshold(&self) -> u16 {
        *self.key_package.min_signers()
    }

    pub fn identifier(&self) -> Identifier {
        *self.key_package.identifier()
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>, KeyError> {
        let stored = StoredKeyShare {
            key_package: self.key_package.serialize().map_err(|_| KeyError::Decode("key package"))?,
            public_key_package: self
                .public_key_package
                .serialize()
                .map_err(|_| KeyError::Decode("public key package"))?,
        };
        postcard::to_allocvec(&stored).map_err(|_| KeyError::Decode("key share"))
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        let stored: StoredKeyShare = postcard::from_bytes(bytes).map_err(|_| KeyError::Decode("key share"))?;
        Self::new(
            KeyPackage::deserialize(&stored.key_package).map_err(|_| KeyError::Decode("key package"))?,
            decode_public_key_package(&stored.public_key_package)?,
        )
    }
}

pub fn decode_public_key_package(bytes: &[u8]) -> Result<PublicKeyPackage, KeyError> {
    PublicKeyPackage::deserialize(bytes).map_err(|_| KeyError::Decode("public key package"))
}

/// The x-only group key of a public key package.
pub fn key_id_of(public_key_package: &PublicKeyPackage) -> KeyId {
    let compressed = public_key_package.verifying_key().serialize().unwrap_or_default();
    let mut id = [0u8; 32];
    if compressed.len() == 33 {
        id.copy_from_slice(&compressed[1..]);
    }
    id
}

/// The tweak input ("merkle root" in BIP-341's tweak formula) that derives the group's
/// *message key* from its wallet key: `Q' = Q + H_TapTweak(Q ‖ root)·G`. Raw 32-byte
/// messages are signed under Q', never under the wallet key Q, so a signature on a raw
/// message can never complete a spend of the group's wallet (a transaction sighash sent
/// as a "message" yields a signature that is invalid for Q).
pub fn message_key_root() -> [u8; 32] {
    Sha256::digest(b"QLS/message-key/v1").into()
}

/// The x-only message key of a group (see [`message_key_root`]).
pub fn message_key_id(public_key_package: &PublicKeyPackage) -> KeyId {
    key_id_of(&public_key_package.clone().tweak(Some(message_key_root())))
}

/// A cosigner's FROST identifier, derived from its certificate fingerprint so that no
/// coordinator can assign (or duplicate) identifiers.
pub fn identifier_for(fingerprint: &Fingerprint) -> Result<Identifier, KeyError> {
    let mut input = Vec::with_capacity(48);
    input.extend_from_slice(b"QLS/cosigner-id/v1");
    input.extend_from_slice(fingerprint);
    Identifier::derive(&input).map_err(|_| KeyError::Identifier)
}
