//! The key holder role: this cosigner holds the node's ECDSA seed (`node-seed`, 32 bytes,
//! created on first start, mode 0600) and signs legacy-channel and node-key requests with
//! LDK's `KeysManager` / `InMemorySigner` — only after `approvals` checked a quorum.
//!
//! Channel keys derive deterministically from the seed and LDK's `channel_keys_id`, so the
//! seed is the whole secret: back it up like one, and never commit it.
//!
//! Must never: sign anything not rebuilt from this cosigner's own stored channel state, or
//! be called for a request whose approvals were not verified.

use std::io::Write;
use std::path::Path;

use bitcoin::constants::ChainHash;
use bitcoin::secp256k1::{ecdh::SharedSecret, All, Message, PublicKey, Scalar, Secp256k1};
use lightning::chain::transaction::OutPoint;
use lightning::ln::chan_utils::{
    get_countersigner_payment_script, get_revokeable_redeemscript, ClosingTransaction, HTLCOutputInCommitment,
    HolderCommitmentTransaction, TxCreationKeys,
};
use lightning::ln::channel_keys::RevocationKey;
use lightning::routing::gossip::NodeId;
use lightning::sign::ecdsa::EcdsaChannelSigner;
use lightning::sign::{
    ChannelDerivationParameters, ChannelSigner, DelayedPaymentOutputDescriptor, HTLCDescriptor, InMemorySigner,
    KeysManager, NodeSigner, Recipient, StaticPaymentOutputDescriptor,
};
use lightning::types::payment::{PaymentHash, PaymentPreimage};
use qls_protocol::{ChannelKeysId, ChannelRequest, KeyHolderOutput, NodeKeyRequest};
use qls_signer_core::channel::announcement::parse_announcement;
use qls_signer_core::channel::counterparty_claims::claimed_htlc;
use qls_signer_core::channel::justice::revoked_secret;
use qls_signer_core::channel::parse::{self, Broadcaster};
use qls_signer_core::channel::{delayed_outputs, ChannelState};
use qls_signer_core::node_key;

pub const SEED_FILE: &str = "node-seed";

#[derive(Debug, thiserror::Error)]
pub enum KeyHolderError {
    #[error("node seed {path}: {source}")]
    Seed { path: String, source: std::io::Error },
    #[error("node seed {0} is not 32 bytes")]
    SeedLength(String),
    #[error("channel {0} has no stored state")]
    NoState(String),
    #[error("cannot rebuild the transaction: {0}")]
    Rebuild(String),
    #[error("LDK signer refused: {0}")]
    Signer(&'static str),
}

pub struct KeyHolder {
    keys: KeysManager,
    secp: Secp256k1<All>,
}

fn sig_output(
    sig: bitcoin::secp256k1::ecdsa::Signature,
    htlc_sigs: &[bitcoin::secp256k1::ecdsa::Signature],
) -> KeyHolderOutput {
    KeyHolderOutput::Signatures {
        sig: sig.serialize_compact().to_vec(),
        htlc_sigs: htlc_sigs.iter().map(|s| s.serialize_compact().to_vec()).collect(),
    }
}

impl KeyHolder {
    /// Loads the seed from `data_dir`, creating it (random, 0600) if absent.
    pub fn open(data_dir: &Path) -> Result<Self, KeyHolderError> {
        let path = data_dir.join(SEED_FILE);
        let err = |source| KeyHolderError::Seed { path: path.display().to_string(), source };
        let seed: [u8; 32] = match std::fs::read(&path) {
            Ok(bytes) => bytes.try_into().map_err(|_| KeyHolderError::SeedLength(path.display().to_string()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let seed: [u8; 32] = rand::random();
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
                let mut f = opts.open(&path).map_err(err)?;
                f.write_all(&seed).and_then(|_| f.sync_all()).map_err(err)?;
                seed
            }
            Err(e) => return Err(err(e)),
        };
        Ok(Self::from_seed(&seed))
    }

    pub fn from_seed(seed: &[u8; 32]) -> Self {
        // The starting time only seeds LDK's internal PRNG; channel keys depend on the seed.
        Self { keys: KeysManager::new(seed, 0, 0, true), secp: Secp256k1::new() }
    }

    pub fn node_id(&self) -> PublicKey {
        PublicKey::from_secret_key(&self.secp, &self.keys.get_node_secret_key())
    }

    fn signer(&self, channel: &ChannelKeysId) -> InMemorySigner {
        self.keys.derive_channel_keys(channel)
    }

    /// The holder points this seed derives for `channel`.
    pub fn channel_points(&self, channel: &ChannelKeysId) -> qls_protocol::ChannelPoints {
        parse::channel_points(&self.signer(channel).pubkeys(&self.secp))
    }

    pub fn per_commitment_point(&self, channel: &ChannelKeysId, n: u64) -> Result<PublicKey, KeyHolderError> {
        self.signer(channel)
            .get_per_commitment_point(n, &self.secp)
            .map_err(|_| KeyHolderError::Signer("per-commitment point"))
    }

    /// The per-commitment secret of taproot holder commitment `n` (BOLT numbering, up from
    /// 0; the same BOLT 3 chain as LDK's, which counts down).
    pub fn release_taproot_secret(&self, channel: &ChannelKeysId, n: u64) -> Result<KeyHolderOutput, KeyHolderError> {
        let index = ((1u64 << 48) - 1).checked_sub(n).ok_or(KeyHolderError::Signer("commitment number"))?;
        self.signer(channel)
            .release_commitment_secret(index)
            .map(KeyHolderOutput::Secret)
            .map_err(|_| KeyHolderError::Signer("release secret"))
    }

    /// Whether the setup's holder keys are the ones this seed derives for `channel`.
    pub fn owns_setup(&self, channel: &ChannelKeysId, holder: &qls_protocol::ChannelPoints) -> bool {
        self.channel_points(channel) == *holder
    }

    /// Signs an approved channel request from the stored state `state`.
    pub fn sign_channel(
        &self,
        channel: &ChannelKeysId,
        state: Option<&ChannelState>,
        request: &ChannelRequest,
    ) -> Result<KeyHolderOutput, KeyHolderError> {
        let secp = &self.secp;
        let state = state.ok_or_else(|| KeyHolderError::NoState(hex::encode(&channel[..8])))?;
        let params = parse::transaction_parameters(&state.setup).map_err(|e| KeyHolderError::Rebuild(e.to_string()))?;
        let signer = self.signer(channel);
        let rebuild =
            |info, b| parse::commitment(&params, info, b, secp).map_err(|e| KeyHolderError::Rebuild(e.to_string()));
        match request {
            ChannelRequest::Setup(_)
            | ChannelRequest::FundingConfirmed(_)
            | ChannelRequest::FundingSpent(_)
            | ChannelRequest::ValidateHolderCommitment { .. }
            | ChannelRequest::ValidateCounterpartyRevocation { .. } => Ok(KeyHolderOutput::Done),
            ChannelRequest::SignCounterpartyCommitment { commitment, outbound_preimages } => {
                let tx = rebuild(commitment, Broadcaster::Counterparty)?;
                let pre = outbound_preimages.iter().map(|p| PaymentPreimage(*p)).collect();
                let (sig, htlc_sigs) = signer
                    .sign_counterparty_commitment(&params, &tx, Vec::new(), pre, secp)
                    .map_err(|_| KeyHolderError::Signer("counterparty commitment"))?;
                Ok(sig_output(sig, &htlc_sigs))
            }
            ChannelRequest::ReleaseCommitmentSecret { commitment_number } => signer
                .release_commitment_secret(*commitment_number)
                .map(KeyHolderOutput::Secret)
                .map_err(|_| KeyHolderError::Signer("release secret")),
            ChannelRequest::SignHolderCommitment { .. } => {
                let latest = state.holder.latest.as_ref().ok_or(KeyHolderError::Signer("no holder commitment"))?;
                let tx = rebuild(&latest.info, Broadcaster::Holder)?;
                let parse_sig = |b: &[u8]| {
                    parse::signature(b, "stored signature").map_err(|e| KeyHolderError::Rebuild(e.to_string()))
                };
                let cp_sig = parse_sig(&latest.counterparty_sig)?;
                let htlc_sigs =
                    latest.counterparty_htlc_sigs.iter().map(|s| parse_sig(s)).collect::<Result<Vec<_>, _>>()?;
                let cp_funding =
                    params.counterparty_pubkeys().ok_or(KeyHolderError::Signer("no counterparty keys"))?.funding_pubkey;
                let htx = HolderCommitmentTransaction::new(
                    tx,
                    cp_sig,
                    htlc_sigs,
                    &params.holder_pubkeys.funding_pubkey,
                    &cp_funding,
                );
                let sig = signer
                    .sign_holder_commitment(&params, &htx, secp)
                    .map_err(|_| KeyHolderError::Signer("holder commitment"))?;
                Ok(sig_output(sig, &[]))
            }
            ChannelRequest::SignClosing {
                to_holder_sat,
                to_counterparty_sat,
                to_holder_script,
                to_counterparty_script,
            } => {
                let outpoint = params.funding_outpoint.ok_or(KeyHolderError::Signer("no funding outpoint"))?;
                let ct = ClosingTransaction::new(
                    *to_holder_sat,
                    *to_counterparty_sat,
                    bitcoin::ScriptBuf::from_bytes(to_holder_script.clone()),
                    bitcoin::ScriptBuf::from_bytes(to_counterparty_script.clone()),
                    outpoint.into_bitcoin_outpoint(),
                );
                let sig = signer
                    .sign_closing_transaction(&params, &ct, secp)
                    .map_err(|_| KeyHolderError::Signer("closing"))?;
                Ok(sig_output(sig, &[]))
            }
            ChannelRequest::SignHolderAnchor { tx, input } => {
                let tx = parse::transaction(tx, "transaction").map_err(|e| KeyHolderError::Rebuild(e.to_string()))?;
                let sig = signer
                    .sign_holder_keyed_anchor_input(&params, &tx, *input as usize, secp)
                    .map_err(|_| KeyHolderError::Signer("anchor"))?;
                Ok(sig_output(sig, &[]))
            }
            ChannelRequest::SignDelayedSweep { tx, input } => {
                let spend =
                    parse::transaction(tx, "transaction").map_err(|e| KeyHolderError::Rebuild(e.to_string()))?;
                let latest = state.holder.latest.as_ref().ok_or(KeyHolderError::Signer("no holder commitment"))?;
                let commitment = rebuild(&latest.info, Broadcaster::Holder)?;
                let spent = spend.input.get(*input as usize).ok_or(KeyHolderError::Signer("input out of range"))?;
                let (outpoint, value) = delayed_outputs(state, &commitment)
                    .into_iter()
                    .find(|(o, _)| *o == spent.previous_output)
                    .ok_or(KeyHolderError::Signer("not a delayed output of ours"))?;
                let trusted = commitment.trust();
                let keys: &TxCreationKeys = trusted.keys();
                let delay = params.as_holder_broadcastable().contest_delay();
                let script =
                    get_revokeable_redeemscript(&keys.revocation_key, delay, &keys.broadcaster_delayed_payment_key)
                        .to_p2wsh();
                let index =
                    u16::try_from(outpoint.vout).map_err(|_| KeyHolderError::Signer("output index above 65535"))?;
                let descriptor = DelayedPaymentOutputDescriptor {
                    outpoint: OutPoint { txid: outpoint.txid, index },
                    per_commitment_point: keys.per_commitment_point,
                    to_self_delay: delay,
                    output: bitcoin::TxOut { value: bitcoin::Amount::from_sat(value), script_pubkey: script },
                    revocation_pubkey: RevocationKey(keys.revocation_key.to_public_key()),
                    channel_keys_id: *channel,
                    channel_value_satoshis: state.setup.channel_value_sat,
                    channel_transaction_parameters: Some(params.clone()),
                };
                let w = signer
                    .sign_dynamic_p2wsh_input(&spend, *input as usize, &descriptor, secp)
                    .map_err(|_| KeyHolderError::Signer("delayed sweep"))?;
                Ok(KeyHolderOutput::Witness(w.to_vec()))
            }
            ChannelRequest::SignHolderHtlc { tx, input, htlc, preimage, .. } => {
                let spend =
                    parse::transaction(tx, "transaction").map_err(|e| KeyHolderError::Rebuild(e.to_string()))?;
                let latest = state.holder.latest.as_ref().ok_or(KeyHolderError::Signer("no holder commitment"))?;
                let commitment = rebuild(&latest.info, Broadcaster::Holder)?;
                let trusted = commitment.trust();
                let spent = spend.input.get(*input as usize).ok_or(KeyHolderError::Signer("input out of range"))?;
                let (i, found) = commitment
                    .nondust_htlcs()
                    .iter()
                    .enumerate()
                    .find(|(_, h)| {
                        spent.previous_output.txid == trusted.txid()
                            && h.transaction_output_index == Some(spent.previous_output.vout)
                    })
                    .filter(|(_, h)| {
                        h.offered == htlc.offered
                            && h.amount_msat == htlc.amount_msat
                            && h.cltv_expiry == htlc.cltv_expiry
                            && h.payment_hash.0 == htlc.payment_hash
                    })
                    .ok_or(KeyHolderError::Signer("the input does not spend that HTLC of the commitment"))?;
                let cp_sig = latest
                    .counterparty_htlc_sigs
                    .get(i)
                    .ok_or(KeyHolderError::Signer("no counterparty HTLC signature"))
                    .and_then(|b| {
                        parse::signature(b, "stored signature")
                            .map_err(|_| KeyHolderError::Signer("bad stored signature"))
                    })?;
                let descriptor = HTLCDescriptor {
                    channel_derivation_parameters: ChannelDerivationParameters {
                        value_satoshis: state.setup.channel_value_sat,
                        keys_id: *channel,
                        transaction_parameters: params.clone(),
                    },
                    commitment_txid: trusted.txid(),
                    per_commitment_number: latest.info.commitment_number,
                    per_commitment_point: trusted.keys().per_commitment_point,
                    feerate_per_kw: latest.info.feerate_per_kw,
                    htlc: found.clone(),
                    preimage: preimage.map(PaymentPreimage),
                    counterparty_sig: cp_sig,
                };
                let sig = signer
                    .sign_holder_htlc_transaction(&spend, *input as usize, &descriptor, secp)
                    .map_err(|_| KeyHolderError::Signer("holder HTLC"))?;
                Ok(sig_output(sig, &[]))
            }
            // Our to_remote output of a counterparty commitment: locked by our payment key
            // alone (static remote key), which locks nothing else, so any spend of it the
            // policy let through (to our wallet, fee capped) is ours.
            ChannelRequest::SignRemoteSweep { tx, input, amount_sat } => {
                let spend =
                    parse::transaction(tx, "transaction").map_err(|e| KeyHolderError::Rebuild(e.to_string()))?;
                let spent = spend.input.get(*input as usize).ok_or(KeyHolderError::Signer("input out of range"))?;
                let index = u16::try_from(spent.previous_output.vout)
                    .map_err(|_| KeyHolderError::Signer("output index above 65535"))?;
                let payment_point = signer.pubkeys(secp).payment_point;
                let descriptor = StaticPaymentOutputDescriptor {
                    outpoint: OutPoint { txid: spent.previous_output.txid, index },
                    output: bitcoin::TxOut {
                        value: bitcoin::Amount::from_sat(*amount_sat),
                        script_pubkey: get_countersigner_payment_script(&params.channel_type_features, &payment_point),
                    },
                    channel_keys_id: *channel,
                    channel_value_satoshis: state.setup.channel_value_sat,
                    channel_transaction_parameters: Some(params.clone()),
                };
                let w = signer
                    .sign_counterparty_payment_input(&spend, *input as usize, &descriptor, secp)
                    .map_err(|_| KeyHolderError::Signer("to_remote sweep"))?;
                Ok(KeyHolderOutput::Witness(w.to_vec()))
            }
            // The announcement as the policy parsed it (nothing after it), signed as LDK's
            // signer does: double SHA-256 of the encoding, with our funding key.
            ChannelRequest::SignChannelAnnouncement { message } => {
                let msg = parse_announcement(message).ok_or(KeyHolderError::Signer("not a channel announcement"))?;
                // The node beside our funding key is ours (the policy checked the keys and
                // the short channel id; only the key holder knows the node id).
                let ours = NodeId::from_pubkey(&params.holder_pubkeys.funding_pubkey);
                let me = NodeId::from_pubkey(&self.node_id());
                let paired = (msg.bitcoin_key_1 == ours && msg.node_id_1 == me)
                    || (msg.bitcoin_key_2 == ours && msg.node_id_2 == me);
                if !paired {
                    return Err(KeyHolderError::Signer("the announcement pairs our funding key with another node"));
                }
                let sig = signer
                    .sign_channel_announcement_with_funding_key(&params, &msg, secp)
                    .map_err(|_| KeyHolderError::Signer("channel announcement"))?;
                Ok(sig_output(sig, &[]))
            }
            // A claim on the counterparty's commitment on chain: the HTLC and the
            // per-commitment point come from the stored commitment it rebuilds to.
            ChannelRequest::SignCounterpartyHtlcClaim { tx, input, amount_sat, htlc } => {
                let spend =
                    parse::transaction(tx, "transaction").map_err(|e| KeyHolderError::Rebuild(e.to_string()))?;
                let (info, found) = claimed_htlc(state, &params, &spend, *input as usize, htlc, secp)
                    .map_err(|e| KeyHolderError::Rebuild(e.to_string()))?
                    .map_err(|_| {
                        KeyHolderError::Signer("not an HTLC output of the counterparty commitment on chain")
                    })?;
                let point = PublicKey::from_slice(&info.per_commitment_point)
                    .map_err(|_| KeyHolderError::Signer("stored per-commitment point"))?;
                let sig = signer
                    .sign_counterparty_htlc_transaction(
                        &params,
                        &spend,
                        *input as usize,
                        *amount_sat,
                        &point,
                        &found,
                        secp,
                    )
                    .map_err(|_| KeyHolderError::Signer("counterparty HTLC claim"))?;
                Ok(sig_output(sig, &[]))
            }
            // Justice: the revocation key of the proven, revoked counterparty commitment,
            // from the secret in this cosigner's store (never one from the request).
            ChannelRequest::SignJustice { tx, input, amount_sat, htlc } => {
                let spend =
                    parse::transaction(tx, "transaction").map_err(|e| KeyHolderError::Rebuild(e.to_string()))?;
                let spent = spend.input.get(*input as usize).ok_or(KeyHolderError::Signer("input out of range"))?;
                let n = state
                    .funding_spend
                    .as_ref()
                    .and_then(|s| s.commitment_number)
                    .ok_or(KeyHolderError::Signer("no proven commitment spend"))?;
                let secret = revoked_secret(state, n)
                    .map_err(|e| KeyHolderError::Rebuild(e.to_string()))?
                    .ok_or(KeyHolderError::Signer("that commitment is not revoked"))?;
                let key = bitcoin::secp256k1::SecretKey::from_slice(&secret)
                    .map_err(|_| KeyHolderError::Signer("stored secret is not a key"))?;
                let sig = match htlc {
                    None => {
                        signer.sign_justice_revoked_output(&params, &spend, *input as usize, *amount_sat, &key, secp)
                    }
                    Some(h) => {
                        let htlc = HTLCOutputInCommitment {
                            offered: h.offered,
                            amount_msat: h.amount_msat,
                            cltv_expiry: h.cltv_expiry,
                            payment_hash: PaymentHash(h.payment_hash),
                            transaction_output_index: Some(spent.previous_output.vout),
                        };
                        signer.sign_justice_revoked_htlc(
                            &params,
                            &spend,
                            *input as usize,
                            *amount_sat,
                            &key,
                            &htlc,
                            secp,
                        )
                    }
                }
                .map_err(|_| KeyHolderError::Signer("justice"))?;
                Ok(sig_output(sig, &[]))
            }
        }
    }

    /// Signs every input of an approved batched sweep, each with its channel's key, from
    /// the states `state_of` gives (the ones the policy judged). The witnesses come in
    /// the transaction's input order (the policy had every input named exactly once).
    pub fn sign_sweep<'s>(
        &self,
        sweep: &qls_protocol::SweepRequest,
        state_of: impl Fn(&ChannelKeysId) -> Option<&'s ChannelState>,
    ) -> Result<KeyHolderOutput, KeyHolderError> {
        let mut inputs: Vec<&qls_protocol::SweepInput> = sweep.inputs.iter().collect();
        inputs.sort_by_key(|i| i.input);
        let mut witnesses = Vec::with_capacity(inputs.len());
        for i in inputs {
            let tx = sweep.tx.clone();
            let request = match i.source {
                qls_protocol::SweepSource::Delayed => ChannelRequest::SignDelayedSweep { tx, input: i.input },
                qls_protocol::SweepSource::ToRemote { amount_sat } => {
                    ChannelRequest::SignRemoteSweep { tx, input: i.input, amount_sat }
                }
            };
            match self.sign_channel(&i.channel, state_of(&i.channel), &request)? {
                KeyHolderOutput::Witness(w) => witnesses.push(w),
                _ => return Err(KeyHolderError::Signer("sweep input")),
            }
        }
        Ok(KeyHolderOutput::Witnesses(witnesses))
    }

    /// Signs a node-key request; signatures are over the digest `node_key` rebuilds from a
    /// preimage that parses as the request's kind (`chain`: the cosigner's chain).
    pub fn sign_node(&self, request: &NodeKeyRequest, chain: ChainHash) -> Result<KeyHolderOutput, KeyHolderError> {
        match request {
            NodeKeyRequest::Ecdh { other_key, tweak } => {
                let other = PublicKey::from_slice(other_key).map_err(|_| KeyHolderError::Signer("ECDH key"))?;
                let tweak =
                    tweak.map(Scalar::from_be_bytes).transpose().map_err(|_| KeyHolderError::Signer("ECDH tweak"))?;
                let s: SharedSecret = self
                    .keys
                    .ecdh(Recipient::Node, &other, tweak.as_ref())
                    .map_err(|_| KeyHolderError::Signer("ECDH"))?;
                Ok(KeyHolderOutput::SharedSecret(s.secret_bytes()))
            }
            NodeKeyRequest::SignInvoice { hrp, data, payment_hash, amount_msat } => {
                let hash = node_key::invoice_digest(&mut Vec::new(), hrp, data, payment_hash, *amount_msat)
                    .ok_or(KeyHolderError::Signer("the invoice does not parse as the request's BOLT 11 invoice"))?;
                let sig =
                    self.secp.sign_ecdsa_recoverable(&Message::from_digest(hash), &self.keys.get_node_secret_key());
                let (recid, bytes) = sig.serialize_compact();
                Ok(KeyHolderOutput::Recoverable { sig: bytes.to_vec(), recid: recid.to_i32() as u8 })
            }
            NodeKeyRequest::SignGossip { kind, message } => {
                let hash = node_key::gossip_digest(&mut Vec::new(), *kind, message, chain)
                    .ok_or(KeyHolderError::Signer("the gossip message does not parse as its kind"))?;
                let sig = self.secp.sign_ecdsa(&Message::from_digest(hash), &self.keys.get_node_secret_key());
                Ok(sig_output(sig, &[]))
            }
            NodeKeyRequest::SignMessage { message } => {
                let hash = node_key::message_digest(message);
                let sig =
                    self.secp.sign_ecdsa_recoverable(&Message::from_digest(hash), &self.keys.get_node_secret_key());
                let (recid, bytes) = sig.serialize_compact();
                Ok(KeyHolderOutput::Recoverable { sig: bytes.to_vec(), recid: recid.to_i32() as u8 })
            }
            NodeKeyRequest::ApprovePayment { .. } => Ok(KeyHolderOutput::Done),
            NodeKeyRequest::Heartbeat { .. } => Err(KeyHolderError::Signer("heartbeats are signed with the chain tip")),
        }
    }

    /// Signs a heartbeat for the approved chain tip at `unix_time` (this key holder's clock).
    pub fn sign_heartbeat(
        &self,
        height: u32,
        tip: &[u8; 32],
        unix_time: u64,
    ) -> Result<KeyHolderOutput, KeyHolderError> {
        let msg = Message::from_digest(qls_signer_core::chain::heartbeat_message(height, tip, unix_time));
        let sig = self.secp.sign_ecdsa(&msg, &self.keys.get_node_secret_key());
        Ok(KeyHolderOutput::Heartbeat { height, tip: *tip, unix_time, sig: sig.serialize_compact().to_vec() })
    }
}
