//! Output scripts of simple taproot channels (`shared/specs/bolt-simple-taproot*.md`):
//! the MuSig2 funding key, to_local, to_remote, anchors, offered/accepted HTLCs and the
//! second-level HTLC outputs, each as its tapscript leaves, internal key, merkle root and
//! output key. Checked byte for byte against lnd's taproot vectors.
//!
//! Must never: build a script from a key it was not given, or use another NUMS point than
//! the spec's (the one lnd's vectors use: the pr1330 revision's `simple_taproot_nums`).

use alloc::vec::Vec;

use bitcoin::hashes::{ripemd160, sha256, Hash};
use bitcoin::key::{TapTweak, UntweakedPublicKey};
use bitcoin::opcodes::all::*;
use bitcoin::script::Builder;
use bitcoin::secp256k1::{PublicKey, Secp256k1, XOnlyPublicKey};
use bitcoin::taproot::{TapLeafHash, TaprootBuilder, TaprootSpendInfo};
use bitcoin::ScriptBuf;

use crate::musig2::{key_agg, key_sort, MusigError};

/// The spec's nothing-up-my-sleeve internal key for to_local and to_remote.
pub const SIMPLE_TAPROOT_NUMS: [u8; 33] = [
    0x02, 0xdc, 0xa0, 0x94, 0x75, 0x11, 0x09, 0xd0, 0xbd, 0x05, 0x5d, 0x03, 0x56, 0x58, 0x74, 0xe8, 0x27, 0x6d, 0xd5,
    0x3e, 0x92, 0x6b, 0x44, 0xe3, 0xbd, 0x1b, 0xb6, 0xbf, 0x4b, 0xc1, 0x30, 0xa2, 0x79,
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScriptError {
    #[error("invalid public key")]
    BadKey,
    #[error("taproot tree could not be built")]
    Tree,
    #[error(transparent)]
    Musig(#[from] MusigError),
}

/// A taproot output: named leaves, internal key and the spend info (root, output key).
#[derive(Debug, Clone)]
pub struct TaprootOutput {
    pub leaves: Vec<(&'static str, ScriptBuf)>,
    pub internal_key: XOnlyPublicKey,
    pub spend_info: TaprootSpendInfo,
}

impl TaprootOutput {
    pub fn script_pubkey(&self) -> ScriptBuf {
        ScriptBuf::new_p2tr_tweaked(self.spend_info.output_key())
    }
    /// The output key with its parity, as 33 compressed bytes.
    pub fn output_key_compressed(&self) -> [u8; 33] {
        let mut out = [0u8; 33];
        out[0] = if self.spend_info.output_key_parity() == bitcoin::secp256k1::Parity::Odd { 3 } else { 2 };
        out[1..].copy_from_slice(&self.spend_info.output_key().to_x_only_public_key().serialize());
        out
    }
    pub fn leaf(&self, name: &str) -> Option<&ScriptBuf> {
        self.leaves.iter().find(|(n, _)| *n == name).map(|(_, s)| s)
    }
    pub fn leaf_hash(&self, name: &str) -> Option<TapLeafHash> {
        self.leaf(name).map(|s| TapLeafHash::from_script(s, bitcoin::taproot::LeafVersion::TapScript))
    }
}

fn xonly(pk: &[u8; 33]) -> Result<XOnlyPublicKey, ScriptError> {
    PublicKey::from_slice(pk).map(XOnlyPublicKey::from).map_err(|_| ScriptError::BadKey)
}

fn build(internal: &[u8; 33], leaves: Vec<(&'static str, ScriptBuf)>) -> Result<TaprootOutput, ScriptError> {
    let internal_key = xonly(internal)?;
    let depth = if leaves.len() == 1 { 0 } else { 1 };
    let mut builder = TaprootBuilder::new();
    for (_, s) in &leaves {
        builder = builder.add_leaf(depth, s.clone()).map_err(|_| ScriptError::Tree)?;
    }
    let spend_info = builder.finalize(&Secp256k1::verification_only(), internal_key).map_err(|_| ScriptError::Tree)?;
    Ok(TaprootOutput { leaves, internal_key, spend_info })
}

fn push_key(b: Builder, pk: &[u8; 33]) -> Result<Builder, ScriptError> {
    Ok(b.push_slice(xonly(pk)?.serialize()))
}

/// The funding output key: BIP-86 tweak of `KeyAgg(KeySort(local, remote))` (x-only).
pub fn funding_output_key(local: &[u8; 33], remote: &[u8; 33]) -> Result<[u8; 32], ScriptError> {
    let ctx = key_agg(&key_sort(&[*local, *remote]))?;
    let internal = UntweakedPublicKey::from_slice(&ctx.xonly_pubkey()).map_err(|_| ScriptError::BadKey)?;
    let (tweaked, _) = internal.tap_tweak(&Secp256k1::verification_only(), None);
    let t = tweaked.to_x_only_public_key().serialize();
    // Cross-check through BIP-327's tweak path: the MuSig2 signers sign for this key.
    let tweak = bitcoin::taproot::TapTweakHash::from_key_and_tweak(internal, None).to_byte_array();
    let via_musig = ctx.apply_tweak(&tweak, true)?.xonly_pubkey();
    if via_musig != t {
        return Err(ScriptError::Tree);
    }
    Ok(t)
}

/// to_local: key path unusable (NUMS); leaves `settle` (delayed key after `to_self_delay`)
/// and `revocation` (revocation key; the delayed key is pushed and dropped).
pub fn to_local(delayed: &[u8; 33], revocation: &[u8; 33], to_self_delay: u16) -> Result<TaprootOutput, ScriptError> {
    let settle = push_key(Builder::new(), delayed)?
        .push_opcode(OP_CHECKSIGVERIFY)
        .push_int(to_self_delay.into())
        .push_opcode(OP_CSV)
        .into_script();
    let revoke = push_key(push_key(Builder::new(), delayed)?.push_opcode(OP_DROP), revocation)?
        .push_opcode(OP_CHECKSIG)
        .into_script();
    build(&SIMPLE_TAPROOT_NUMS, alloc::vec![("settle", settle), ("revocation", revoke)])
}

/// to_remote: NUMS internal key; leaf `settle` (remote key after 1 block).
pub fn to_remote(remote: &[u8; 33]) -> Result<TaprootOutput, ScriptError> {
    let settle =
        push_key(Builder::new(), remote)?.push_opcode(OP_CHECKSIGVERIFY).push_int(1).push_opcode(OP_CSV).into_script();
    build(&SIMPLE_TAPROOT_NUMS, alloc::vec![("settle", settle)])
}

/// Anchor: internal key is the owner's key (local delayed / remote); anyone after 16 blocks.
pub fn anchor(owner: &[u8; 33]) -> Result<TaprootOutput, ScriptError> {
    let sweep = Builder::new().push_int(16).push_opcode(OP_CSV).into_script();
    build(owner, alloc::vec![("sweep", sweep)])
}

fn payment_hash160(payment_hash: &[u8; 32]) -> [u8; 20] {
    ripemd160::Hash::hash(payment_hash).to_byte_array()
}

fn preimage_check(payment_hash: &[u8; 32]) -> Builder {
    Builder::new()
        .push_opcode(OP_SIZE)
        .push_int(32)
        .push_opcode(OP_EQUALVERIFY)
        .push_opcode(OP_HASH160)
        .push_slice(payment_hash160(payment_hash))
        .push_opcode(OP_EQUALVERIFY)
}

/// An HTLC offered by the commitment's owner ("local"): revocation internal key; leaves
/// `timeout` (both HTLC keys) and `success` (preimage + remote key after 1 block).
pub fn offered_htlc(
    local_htlc: &[u8; 33],
    remote_htlc: &[u8; 33],
    revocation: &[u8; 33],
    payment_hash: &[u8; 32],
) -> Result<TaprootOutput, ScriptError> {
    let timeout = push_key(push_key(Builder::new(), local_htlc)?.push_opcode(OP_CHECKSIGVERIFY), remote_htlc)?
        .push_opcode(OP_CHECKSIG)
        .into_script();
    let success = push_key(preimage_check(payment_hash), remote_htlc)?
        .push_opcode(OP_CHECKSIGVERIFY)
        .push_int(1)
        .push_opcode(OP_CSV)
        .into_script();
    build(revocation, alloc::vec![("success", success), ("timeout", timeout)])
}

/// An HTLC accepted by the commitment's owner: leaves `success` (preimage + both keys)
/// and `timeout` (remote key after 1 block and `cltv_expiry`). `local_htlc` is the
/// receiver's HTLC key, `remote_htlc` the sender's.
pub fn accepted_htlc(
    local_htlc: &[u8; 33],
    remote_htlc: &[u8; 33],
    revocation: &[u8; 33],
    payment_hash: &[u8; 32],
    cltv_expiry: u32,
) -> Result<TaprootOutput, ScriptError> {
    let success =
        push_key(push_key(preimage_check(payment_hash), local_htlc)?.push_opcode(OP_CHECKSIGVERIFY), remote_htlc)?
            .push_opcode(OP_CHECKSIG)
            .into_script();
    let timeout = push_key(Builder::new(), remote_htlc)?
        .push_opcode(OP_CHECKSIGVERIFY)
        .push_int(1)
        .push_opcode(OP_CSV)
        .push_opcode(OP_VERIFY)
        .push_int(cltv_expiry.into())
        .push_opcode(OP_CLTV)
        .into_script();
    build(revocation, alloc::vec![("success", success), ("timeout", timeout)])
}

/// The output of an HTLC-success or HTLC-timeout transaction: revocation internal key;
/// one leaf, the delayed key after `to_self_delay`.
pub fn second_level_htlc(
    delayed: &[u8; 33],
    revocation: &[u8; 33],
    to_self_delay: u16,
) -> Result<TaprootOutput, ScriptError> {
    let leaf = push_key(Builder::new(), delayed)?
        .push_opcode(OP_CHECKSIGVERIFY)
        .push_int(to_self_delay.into())
        .push_opcode(OP_CSV)
        .into_script();
    build(revocation, alloc::vec![("success", leaf)])
}

/// `SHA256(preimage)`: the payment hash HTLC scripts commit to.
pub fn payment_hash(preimage: &[u8; 32]) -> [u8; 32] {
    sha256::Hash::hash(preimage).to_byte_array()
}
