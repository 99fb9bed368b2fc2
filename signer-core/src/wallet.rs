//! The group's own on-chain wallet: its P2TR output script and address. The group key
//! (key id) is already the BIP-341 output key (see `keys`), so the script is
//! `OP_1 <key id>` with no further tweak.

use alloc::string::{String, ToString};

use bitcoin::key::TweakedPublicKey;
use bitcoin::{Address, Network, ScriptBuf, XOnlyPublicKey};

use qls_protocol::KeyId;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("key id {0} is not a valid x-only public key")]
pub struct BadKeyId(pub String);

fn output_key(key_id: &KeyId) -> Result<TweakedPublicKey, BadKeyId> {
    let xonly = XOnlyPublicKey::from_slice(key_id).map_err(|_| BadKeyId(hex::encode(key_id)))?;
    Ok(TweakedPublicKey::dangerous_assume_tweaked(xonly))
}

/// `OP_1 <key id>`: the script of every output the group's wallet owns.
pub fn wallet_script(key_id: &KeyId) -> Result<ScriptBuf, BadKeyId> {
    Ok(ScriptBuf::new_p2tr_tweaked(output_key(key_id)?))
}

/// The group's P2TR address on `network`.
pub fn wallet_address(key_id: &KeyId, network: Network) -> Result<String, BadKeyId> {
    Ok(Address::p2tr_tweaked(output_key(key_id)?, network).to_string())
}
