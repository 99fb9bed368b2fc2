//! LDK's node-level signer interfaces backed by the quorum: `NodeSigner` (node id, ECDH,
//! invoices, gossip), `SignerProvider` (one [`QuorumChannelSigner`] per channel, the QLS
//! wallet as destination and shutdown script), `OutputSpender` (sweeps of delayed
//! and to_remote outputs, batched, every input judged by the quorum) and `EntropySource`.
//!
//! Three keys LDK wants synchronously and that guard no funds come from a node-local
//! seed (an LDK `KeysManager` that never signs anything else): the inbound-payment key
//! (payment secrets of our invoices), the peer-storage encryption key and the
//! receive-auth key for blinded paths. The node operator keeps that seed like any node
//! secret; losing it to an attacker does not let anyone move channel funds.
//!
//! Must never: sign with the local seed anything that moves funds or speaks for the node
//! id, or return a transaction whose inputs the quorum did not sign.

use std::sync::Arc;

use bitcoin::hashes::Hash;
use bitcoin::secp256k1::ecdh::SharedSecret;
use bitcoin::secp256k1::ecdsa::{RecoverableSignature, RecoveryId, Signature};
use bitcoin::secp256k1::{schnorr, All, PublicKey, Scalar, Secp256k1};
use bitcoin::{absolute::LockTime, ScriptBuf, Transaction, TxOut, Witness};
use lightning::bolt11_invoice::RawBolt11Invoice;
use lightning::ln::inbound_payment::ExpandedKey;
use lightning::ln::msgs::UnsignedGossipMessage;
use lightning::ln::script::ShutdownScript;
use lightning::offers::invoice::UnsignedBolt12Invoice;
use lightning::sign::{
    EntropySource, KeysManager, NodeSigner, OutputSpender, PeerStorageKey, ReceiveAuthKey, Recipient, SignerProvider,
    SpendableOutputDescriptor,
};
use lightning::util::ser::Writeable;
use qls_protocol::{GossipKind, KeyHolderOutput, NodeKeyRequest, SweepInput, SweepRequest, SweepSource};
use qls_signer_core::wallet::wallet_script;

use super::bridge::{BridgeError, QuorumBridge};
use super::channel_signer::QuorumChannelSigner;
use super::keys_cache::{ChannelKeysCache, KeysCacheError};

/// Tries at fetching a new channel's keys before its signer is given up (LDK's thread
/// waits: each try is bounded by the bridge's request timeout, 200 ms between).
const DERIVE_ATTEMPTS: u64 = 2;

#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error(transparent)]
    Bridge(#[from] BridgeError),
    #[error("coordinator: {0}")]
    Coordinator(String),
    #[error("the quorum's wallet key or node id is malformed")]
    BadKey,
    #[error(transparent)]
    KeysCache(#[from] KeysCacheError),
}

/// The node's keys interface: hand it to `ChannelManager` as entropy source, node
/// signer and signer provider, and use it as the `OutputSpender` of swept outputs.
pub struct QuorumKeysManager {
    bridge: Arc<QuorumBridge>,
    node_id: PublicKey,
    wallet_script: ScriptBuf,
    local: KeysManager,
    /// Channel public keys the quorum gave, so a channel's signer never waits on it; and
    /// the channels whose keys it could not give when LDK asked (LDK gets no destination
    /// script for them, so a new one is dropped before any key is sent).
    keys_cache: Arc<ChannelKeysCache>,
}

fn refuse(what: &str, reason: &str) {
    tracing::warn!("{what} not signed: {reason}");
}

fn refused<T>(what: &str, reason: &str) -> Result<T, ()> {
    refuse(what, reason);
    Err(())
}

impl QuorumKeysManager {
    /// Fetches the node id (from a key holder) and the wallet key (from the group);
    /// `local_seed` derives only the node-local keys described in the module doc.
    pub fn new(bridge: Arc<QuorumBridge>, local_seed: &[u8; 32]) -> Result<Self, KeysError> {
        let (_, node_id) = bridge
            .wait(|c| async move { c.channel_keys([0; 32]).await })?
            .map_err(|e| KeysError::Coordinator(e.to_string()))?;
        let group =
            bridge.wait(|c| async move { c.group_info().await })?.map_err(|e| KeysError::Coordinator(e.to_string()))?;
        let node_id = PublicKey::from_slice(&node_id).map_err(|_| KeysError::BadKey)?;
        let wallet_script = wallet_script(&group.key_id).map_err(|_| KeysError::BadKey)?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let local = KeysManager::new(local_seed, now.as_secs(), now.subsec_nanos(), true);
        Ok(Self { bridge, node_id, wallet_script, local, keys_cache: Default::default() })
    }

    /// Keeps the channels' public keys in `path` too, so a node restarted while the quorum
    /// is unreachable still gets a signer for every channel it had (see `keys_cache`).
    pub fn with_channel_keys_file(mut self, path: &std::path::Path) -> Result<Self, KeysError> {
        self.keys_cache = Arc::new(ChannelKeysCache::open(path)?);
        Ok(self)
    }

    pub fn bridge(&self) -> &Arc<QuorumBridge> {
        &self.bridge
    }

    /// The QLS wallet's P2TR script: shutdown and sweep destination.
    pub fn wallet_script(&self) -> &ScriptBuf {
        &self.wallet_script
    }

    fn node_key(&self, what: &str, request: NodeKeyRequest) -> Result<KeyHolderOutput, ()> {
        self.bridge.node_key_blocking(request).map_err(|e| refuse(what, &e))
    }
}

impl EntropySource for QuorumKeysManager {
    fn get_secure_random_bytes(&self) -> [u8; 32] {
        self.local.get_secure_random_bytes()
    }
}

impl NodeSigner for QuorumKeysManager {
    fn get_node_id(&self, recipient: Recipient) -> Result<PublicKey, ()> {
        match recipient {
            Recipient::Node => Ok(self.node_id),
            Recipient::PhantomNode => Err(()),
        }
    }

    fn ecdh(&self, recipient: Recipient, other_key: &PublicKey, tweak: Option<&Scalar>) -> Result<SharedSecret, ()> {
        if !matches!(recipient, Recipient::Node) {
            return Err(());
        }
        let request =
            NodeKeyRequest::Ecdh { other_key: other_key.serialize().to_vec(), tweak: tweak.map(|t| t.to_be_bytes()) };
        match self.node_key("ECDH", request)? {
            KeyHolderOutput::SharedSecret(s) => Ok(SharedSecret::from_bytes(s)),
            other => refused("ECDH", &format!("unexpected output {other:?}")),
        }
    }

    fn get_expanded_key(&self) -> ExpandedKey {
        self.local.get_expanded_key()
    }

    fn get_peer_storage_key(&self) -> PeerStorageKey {
        self.local.get_peer_storage_key()
    }

    fn get_receive_auth_key(&self) -> ReceiveAuthKey {
        self.local.get_receive_auth_key()
    }

    fn sign_invoice(&self, invoice: &RawBolt11Invoice, recipient: Recipient) -> Result<RecoverableSignature, ()> {
        if !matches!(recipient, Recipient::Node) {
            return Err(());
        }
        // The cosigners parse these back into the invoice and rebuild its digest.
        let (hrp, data) = invoice.to_raw();
        let (hrp, data) = (hrp.into_bytes(), data.iter().map(|f| f.to_u8()).collect());
        let payment_hash = invoice.payment_hash().map(|h| h.0.to_byte_array()).ok_or(())?;
        let request = NodeKeyRequest::SignInvoice {
            hrp,
            data,
            payment_hash,
            amount_msat: invoice.amount_pico_btc().map(|p| p / 10),
        };
        match self.node_key("invoice", request)? {
            KeyHolderOutput::Recoverable { sig, recid } => {
                let recid = RecoveryId::from_i32(i32::from(recid)).map_err(|_| ())?;
                RecoverableSignature::from_compact(&sig, recid).map_err(|_| refuse("invoice", "malformed signature"))
            }
            other => refused("invoice", &format!("unexpected output {other:?}")),
        }
    }

    fn sign_bolt12_invoice(&self, _invoice: &UnsignedBolt12Invoice) -> Result<schnorr::Signature, ()> {
        refused("BOLT 12 invoice", "not supported yet")
    }

    fn sign_gossip_message(&self, msg: UnsignedGossipMessage) -> Result<Signature, ()> {
        let kind = match msg {
            UnsignedGossipMessage::ChannelAnnouncement(_) => GossipKind::ChannelAnnouncement,
            UnsignedGossipMessage::ChannelUpdate(_) => GossipKind::ChannelUpdate,
            UnsignedGossipMessage::NodeAnnouncement(_) => GossipKind::NodeAnnouncement,
        };
        match self.node_key("gossip", NodeKeyRequest::SignGossip { kind, message: msg.encode() })? {
            KeyHolderOutput::Signatures { sig, .. } => {
                Signature::from_compact(&sig).map_err(|_| refuse("gossip", "malformed signature"))
            }
            other => refused("gossip", &format!("unexpected output {other:?}")),
        }
    }

    /// LN `signmessage`: the cosigners add the prefix and sign SHA-256d of it and `msg`;
    /// the result is zbase32(recovery id + 31 ‖ compact signature), as LDK's
    /// `message_signing::sign` makes it.
    fn sign_message(&self, msg: &[u8]) -> Result<String, ()> {
        match self.node_key("message", NodeKeyRequest::SignMessage { message: msg.to_vec() })? {
            KeyHolderOutput::Recoverable { sig, recid } if sig.len() == 64 && recid < 4 => {
                Ok(zbase32(&[&[recid + 31], &sig[..]].concat()))
            }
            other => refused("message", &format!("unexpected output {other:?}")),
        }
    }
}

impl SignerProvider for QuorumKeysManager {
    type EcdsaSigner = QuorumChannelSigner;

    fn generate_channel_keys_id(&self, _inbound: bool, _user_channel_id: u128) -> [u8; 32] {
        // Any 32 bytes name a channel: the key holder derives its keys from them and its seed.
        self.local.get_secure_random_bytes()
    }

    fn derive_channel_signer(&self, channel_keys_id: [u8; 32]) -> Self::EcdsaSigner {
        // LDK gives this method no way to fail. Keys the quorum gave before come from the
        // cache at once; a new channel's keys are asked for, retried once. If the quorum
        // stays unreachable the signer has placeholder keys and signs nothing, and the
        // channel gets no destination script: LDK drops a new channel (no key reaches the
        // peer) and the node keeps running; a channel loaded from disk resumes once the
        // quorum answers.
        let cache = self.keys_cache.clone();
        if let Some(keys) = cache.get(&channel_keys_id) {
            return QuorumChannelSigner::from_cache(self.bridge.clone(), channel_keys_id, keys, cache);
        }
        let mut last = String::new();
        for attempt in 0..DERIVE_ATTEMPTS {
            match QuorumChannelSigner::fetch(self.bridge.clone(), channel_keys_id, cache.clone()) {
                Ok(s) => return s,
                Err(e) => last = e,
            }
            if attempt + 1 < DERIVE_ATTEMPTS {
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
        }
        let channel = hex::encode(&channel_keys_id[..8]);
        tracing::error!(%channel, "channel keys unavailable from the quorum: {last}; a new channel is refused");
        cache.mark_unavailable(channel_keys_id);
        QuorumChannelSigner::unavailable(self.bridge.clone(), channel_keys_id, cache)
    }

    fn get_destination_script(&self, channel_keys_id: [u8; 32]) -> Result<ScriptBuf, ()> {
        if self.keys_cache.is_unavailable(&channel_keys_id) {
            return refused("destination script", "the quorum could not give this channel's keys");
        }
        Ok(self.wallet_script.clone())
    }

    fn get_shutdown_scriptpubkey(&self) -> Result<ShutdownScript, ()> {
        ShutdownScript::try_from(self.wallet_script.clone()).map_err(|_| ())
    }
}

impl OutputSpender for QuorumKeysManager {
    /// Spends delayed outputs of force-closed channels (to_local and second-stage HTLC
    /// outputs) and our to_remote outputs of counterparty commitments
    /// (`StaticPaymentOutput`), any number of them from any of our legacy channels in one
    /// transaction, as LDK's `OutputSweeper` batches them: one quorum round judges every
    /// input and the fee over the whole transaction. `StaticOutput`s (outputs already paying
    /// the QLS wallet) are refused here: track them with `exclude_static_outputs = true`.
    fn spend_spendable_outputs(
        &self,
        descriptors: &[&SpendableOutputDescriptor],
        outputs: Vec<TxOut>,
        change_destination_script: ScriptBuf,
        feerate_sat_per_1000_weight: u32,
        locktime: Option<LockTime>,
        secp_ctx: &Secp256k1<All>,
    ) -> Result<Transaction, ()> {
        let (psbt, _) = SpendableOutputDescriptor::create_spendable_outputs_psbt(
            secp_ctx,
            descriptors,
            outputs,
            change_destination_script,
            feerate_sat_per_1000_weight,
            locktime,
        )?;
        let mut tx = psbt.unsigned_tx;
        let mut inputs = Vec::with_capacity(tx.input.len());
        let mut spent = Vec::with_capacity(tx.input.len());
        for (index, txin) in tx.input.iter().enumerate() {
            let found = descriptors.iter().find_map(|d| match d {
                SpendableOutputDescriptor::DelayedPaymentOutput(o)
                    if o.outpoint.into_bitcoin_outpoint() == txin.previous_output =>
                {
                    Some((o.channel_keys_id, SweepSource::Delayed, o.output.clone()))
                }
                SpendableOutputDescriptor::StaticPaymentOutput(o)
                    if o.outpoint.into_bitcoin_outpoint() == txin.previous_output =>
                {
                    let amount_sat = o.output.value.to_sat();
                    Some((o.channel_keys_id, SweepSource::ToRemote { amount_sat }, o.output.clone()))
                }
                _ => None,
            });
            let Some((channel, source, output)) = found else {
                return refused("sweep", &format!("input {index} is not a delayed or to_remote output of ours"));
            };
            inputs.push(SweepInput { input: index as u32, channel, source });
            spent.push(output);
        }
        let request = SweepRequest { tx: bitcoin::consensus::serialize(&tx), inputs };
        let witnesses = match self.bridge.sweep_blocking(request) {
            Ok(KeyHolderOutput::Witnesses(w)) if w.len() == tx.input.len() => w,
            Ok(other) => return refused("sweep", &format!("unexpected output {other:?}")),
            Err(e) => return refused("sweep", &e),
        };
        for (index, w) in witnesses.into_iter().enumerate() {
            tx.input[index].witness = Witness::from_slice(&w);
        }
        // The key holder's output is checked before LDK broadcasts it.
        for (index, output) in spent.iter().enumerate() {
            if let Err(e) = super::witness_check::p2wsh_witness_signs(&tx, index, output, secp_ctx) {
                return refused("sweep", &format!("the quorum's witness of input {index} does not verify: {e}"));
            }
        }
        Ok(tx)
    }
}

/// zbase32 (Zimmermann's human-oriented base 32, as LN `signmessage` uses it): 5 bits a
/// character, most significant first, the last group zero-padded, no padding characters.
fn zbase32(data: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ybndrfg8ejkmcpqxot1uwisza345h769";
    let mut out = String::with_capacity(data.len() * 8 / 5 + 1);
    let (mut acc, mut bits) = (0u32, 0u32);
    for b in data {
        acc = (acc << 8) | u32::from(*b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((acc >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((acc << (5 - bits)) & 31) as usize]));
    }
    out
}

#[cfg(test)]
mod tests {
    /// The vector of LDK's `message_signing` tests (secret key one, message "test message").
    #[test]
    fn zbase32_matches_ldks_signmessage_encoding() {
        use bitcoin::secp256k1::{Message, Secp256k1, SecretKey};
        let sk = SecretKey::from_slice(&[1; 32]).unwrap();
        let digest = qls_signer_core::node_key::message_digest(b"test message");
        let sig = Secp256k1::new().sign_ecdsa_recoverable(&Message::from_digest(digest), &sk);
        let (recid, bytes) = sig.serialize_compact();
        let ours = super::zbase32(&[&[recid.to_i32() as u8 + 31], &bytes[..]].concat());
        assert_eq!(ours, lightning::util::message_signing::sign(b"test message", &sk));
        let pk = bitcoin::secp256k1::PublicKey::from_secret_key(&Secp256k1::new(), &sk);
        assert!(lightning::util::message_signing::verify(b"test message", &ours, &pk));
    }
}
