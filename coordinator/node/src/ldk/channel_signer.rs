//! LDK's per-channel signer (`ChannelSigner` + `EcdsaChannelSigner`) backed by the quorum:
//! every method turns LDK's arguments into a [`ChannelRequest`] carrying the facts
//! cosigners rebuild the transaction from (never a sighash), and returns the key holder's
//! output once t cosigners approved it.
//!
//! Async where LDK supports it (counterparty commitment, holder commitment, revocation
//! secret, closing): `Err(())` while the round runs, see [`super::bridge`]. The
//! validations LDK does not allow to be async are sent and waited for; the one that may
//! come before the channel's parameters are known (the first holder commitment of an
//! inbound channel) is queued and sent, in order, right after the channel setup, as
//! LDK's docs describe ("return Ok and pause future signing operations").
//!
//! Must never: hand LDK a commitment signature that does not verify under our funding
//! key for the transaction LDK built, or sign anything itself (it holds no secret).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{ecdsa::Signature, All, Message, PublicKey, Secp256k1, SecretKey};
use bitcoin::sighash::{EcdsaSighashType, SighashCache};
use bitcoin::Transaction;
use lightning::ln::chan_utils::{
    get_htlc_redeemscript, get_revokeable_redeemscript, make_funding_redeemscript, ChannelPublicKeys,
    ChannelTransactionParameters, ClosingTransaction, CommitmentTransaction, HTLCOutputInCommitment,
    HolderCommitmentTransaction, TxCreationKeys,
};
use lightning::ln::msgs::UnsignedChannelAnnouncement;
use lightning::sign::ecdsa::EcdsaChannelSigner;
use lightning::sign::{ChannelSigner, HTLCDescriptor};
use lightning::types::payment::PaymentPreimage;
use qls_protocol::{ChannelKeysId, ChannelRequest, HtlcInfo, KeyHolderOutput};
use qls_signer_core::channel::parse;

use super::bridge::{QuorumBridge, RoundError};
use super::keys_cache::ChannelKeysCache;

/// Where a signer's public keys came from.
#[derive(Default, Clone, Copy, PartialEq, Eq, Debug)]
enum KeysSource {
    /// From the quorum, in this run.
    #[default]
    Quorum,
    /// From the node's cache: the quorum confirms them (and tells whether it stores the
    /// setup) before the first request; other keys stop the channel.
    Cache,
    /// The quorum was unreachable and nothing was cached: a placeholder, never ours. The
    /// quorum's keys are taken once it answers (LDK dropped a new channel meanwhile: it got
    /// no destination script; a channel LDK loaded from disk resumes).
    Placeholder,
}

#[derive(Default)]
struct SetupState {
    sent: bool,
    keys: KeysSource,
    /// Validations that came before the setup could be sent (in LDK's order).
    deferred: Vec<ChannelRequest>,
    /// A deferred validation was refused: sign nothing more for this channel.
    poisoned: Option<String>,
}

/// One channel's signer. Cheap to clone (shared state).
#[derive(Clone)]
pub struct QuorumChannelSigner {
    bridge: Arc<QuorumBridge>,
    id: ChannelKeysId,
    pubkeys: Arc<Mutex<ChannelPublicKeys>>,
    points: Arc<Mutex<BTreeMap<u64, PublicKey>>>,
    setup: Arc<Mutex<SetupState>>,
    /// Where the keys are remembered once the quorum stores the channel's setup.
    cache: Arc<ChannelKeysCache>,
}

fn one_sig(out: KeyHolderOutput) -> Result<Signature, String> {
    match out {
        KeyHolderOutput::Signatures { sig, .. } => {
            Signature::from_compact(&sig).map_err(|_| "key holder returned a malformed signature".into())
        }
        other => Err(format!("key holder returned {other:?}, not a signature")),
    }
}

fn funding_script(params: &ChannelTransactionParameters) -> Result<bitcoin::ScriptBuf, ()> {
    let counterparty = params.counterparty_parameters.as_ref().ok_or(())?;
    Ok(make_funding_redeemscript(&params.holder_pubkeys.funding_pubkey, &counterparty.pubkeys.funding_pubkey))
}

fn htlc_info(h: &HTLCOutputInCommitment) -> HtlcInfo {
    HtlcInfo {
        offered: h.offered,
        amount_msat: h.amount_msat,
        cltv_expiry: h.cltv_expiry,
        payment_hash: h.payment_hash.0,
    }
}

impl QuorumChannelSigner {
    fn with(
        bridge: Arc<QuorumBridge>,
        id: ChannelKeysId,
        pubkeys: ChannelPublicKeys,
        setup: SetupState,
        cache: Arc<ChannelKeysCache>,
    ) -> Self {
        let (pubkeys, setup) = (Arc::new(Mutex::new(pubkeys)), Arc::new(Mutex::new(setup)));
        Self { bridge, id, pubkeys, points: Default::default(), setup, cache }
    }

    /// Asks a key holder for the channel's public keys (LDK needs them synchronously);
    /// they are cached (`cache`) once the quorum stores the channel's setup.
    pub fn fetch(bridge: Arc<QuorumBridge>, id: ChannelKeysId, cache: Arc<ChannelKeysCache>) -> Result<Self, String> {
        let (pubkeys, set_up) = Self::quorum_keys(&bridge, id)?;
        // A channel the quorum already stores (node restart, LDK's second signer instance
        // for the monitor) sends its validations at once; only a new one holds them back.
        if set_up {
            Self::remember(&cache, id, &pubkeys);
        }
        Ok(Self::with(bridge, id, pubkeys, SetupState { sent: set_up, ..Default::default() }, cache))
    }

    /// A signer from keys the quorum gave earlier (the node's cache), built without asking
    /// it: the quorum is asked for the channel's keys and setup before the first request.
    pub fn from_cache(
        bridge: Arc<QuorumBridge>,
        id: ChannelKeysId,
        pubkeys: ChannelPublicKeys,
        cache: Arc<ChannelKeysCache>,
    ) -> Self {
        Self::with(bridge, id, pubkeys, SetupState { keys: KeysSource::Cache, ..Default::default() }, cache)
    }

    /// A signer for a channel whose keys the quorum could not give: its keys are a fixed
    /// placeholder, never ours, and it signs nothing until the quorum gives the real ones.
    /// `SignerProvider` refuses this channel's destination script, so LDK drops a new
    /// channel before sending any key.
    pub fn unavailable(bridge: Arc<QuorumBridge>, id: ChannelKeysId, cache: Arc<ChannelKeysCache>) -> Self {
        let secp = Secp256k1::signing_only();
        let placeholder = PublicKey::from_secret_key(&secp, &SecretKey::from_slice(&[1; 32]).expect("valid scalar"));
        let pubkeys = ChannelPublicKeys {
            funding_pubkey: placeholder,
            revocation_basepoint: placeholder.into(),
            payment_point: placeholder,
            delayed_payment_basepoint: placeholder.into(),
            htlc_basepoint: placeholder.into(),
        };
        Self::with(bridge, id, pubkeys, SetupState { keys: KeysSource::Placeholder, ..Default::default() }, cache)
    }

    /// The channel's public keys (the placeholder while the quorum could not give them).
    pub fn public_keys(&self) -> ChannelPublicKeys {
        self.pubkeys.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn funding_pubkey(&self) -> PublicKey {
        self.public_keys().funding_pubkey
    }

    /// The channel's keys as a key holder gives them, and whether it stores the setup.
    fn quorum_keys(bridge: &QuorumBridge, id: ChannelKeysId) -> Result<(ChannelPublicKeys, bool), String> {
        let (info, _) = bridge
            .wait(move |c| async move { c.channel_keys(id).await })
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        Ok((parse::channel_public_keys(&info.points).map_err(|e| e.to_string())?, info.set_up))
    }

    fn remember(cache: &ChannelKeysCache, id: ChannelKeysId, keys: &ChannelPublicKeys) {
        if let Err(e) = cache.insert(id, keys) {
            tracing::error!("{e}: a restart during a quorum outage would not load this channel");
        }
    }

    /// For keys not from the quorum in this run: asks it for the channel's keys and setup.
    /// Cached keys must be the quorum's (else the channel stops: nothing is signed); a
    /// placeholder takes the quorum's keys.
    fn confirm_keys(&self, s: &mut SetupState) -> Result<(), ()> {
        if s.keys == KeysSource::Quorum {
            return Ok(());
        }
        let (keys, set_up) = Self::quorum_keys(&self.bridge, self.id)
            .or_else(|e| self.refused("request", &format!("channel keys unavailable: {e}")))?;
        let mut ours = self.pubkeys.lock().unwrap_or_else(|e| e.into_inner());
        if s.keys == KeysSource::Cache && keys != *ours {
            let reason = "the cached channel keys are not the quorum's".to_string();
            self.log_refusal("request", &reason);
            s.poisoned = Some(reason);
            return Err(());
        }
        *ours = keys;
        s.keys = KeysSource::Quorum;
        s.sent = set_up;
        if set_up {
            Self::remember(&self.cache, self.id, &ours);
        }
        Ok(())
    }

    /// `Err` once the channel is stopped (keys unavailable, or a refused held-back validation).
    fn not_stopped(&self, what: &str) -> Result<(), ()> {
        match &self.setup.lock().unwrap_or_else(|e| e.into_inner()).poisoned {
            Some(reason) => self.refused(what, reason),
            None => Ok(()),
        }
    }

    fn refused<T>(&self, what: &str, reason: &str) -> Result<T, ()> {
        self.log_refusal(what, reason);
        Err(())
    }

    fn log_refusal(&self, what: &str, reason: &str) {
        tracing::warn!(channel = %hex::encode(&self.id[..8]), "{what} not signed: {reason}");
    }

    /// Sends the setup (once) and any held-back validations, in order.
    fn ensure_setup(&self, params: &ChannelTransactionParameters) -> Result<(), ()> {
        if let Some(funding) = params.funding_outpoint {
            let txid = bitcoin::hashes::Hash::to_byte_array(funding.txid);
            self.bridge.watch_funding(txid, u32::from(funding.index), self.id);
        }
        let mut s = self.setup.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(reason) = &s.poisoned {
            self.log_refusal("request", reason);
            return Err(());
        }
        self.confirm_keys(&mut s)?;
        if s.sent {
            let pending = !s.deferred.is_empty();
            drop(s);
            return if pending { self.flush_deferred() } else { Ok(()) };
        }
        let Some(setup) = parse::setup(params) else {
            self.log_refusal("request", "channel parameters incomplete (or spliced) before setup");
            return Err(());
        };
        if params.holder_pubkeys != self.public_keys() {
            self.log_refusal("setup", "LDK's holder keys for this channel are not the quorum's");
            return Err(());
        }
        if let Err(e) = self.bridge.channel_blocking(self.id, ChannelRequest::Setup(setup)) {
            self.log_refusal("setup", &e.to_string());
            return Err(());
        }
        s.sent = true;
        Self::remember(&self.cache, self.id, &self.public_keys());
        drop(s);
        self.flush_deferred()
    }

    /// Sends held-back validations in order. A refusal stops the channel (nothing more is
    /// signed for it); an unavailable quorum keeps the rest queued for the next call.
    fn flush_deferred(&self) -> Result<(), ()> {
        let mut s = self.setup.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(req) = s.deferred.first().cloned() {
            match self.bridge.channel_blocking(self.id, req) {
                Ok(_) => {
                    s.deferred.remove(0);
                }
                Err(RoundError::Refused(e)) => {
                    self.log_refusal("held-back validation", &e);
                    s.poisoned = Some(e);
                    return Err(());
                }
                Err(e @ RoundError::Unavailable(_)) => return self.refused("held-back validation", &e.to_string()),
            }
        }
        Ok(())
    }

    /// A validation LDK needs answered now: sent if the channel is set up, else queued.
    fn validate(&self, what: &str, request: ChannelRequest) -> Result<(), ()> {
        let mut s = self.setup.lock().unwrap_or_else(|e| e.into_inner());
        if s.poisoned.is_some() {
            return Err(());
        }
        self.confirm_keys(&mut s)?;
        if !s.sent || !s.deferred.is_empty() {
            s.deferred.push(request);
            return Ok(());
        }
        drop(s);
        self.bridge.channel_blocking(self.id, request).map(drop).map_err(|e| self.log_refusal(what, &e.to_string()))
    }

    fn async_request(&self, what: &str, request: ChannelRequest) -> Result<KeyHolderOutput, ()> {
        self.bridge.channel_async(self.id, request).map_err(|e| {
            if let Some(reason) = e {
                self.log_refusal(what, &reason);
            }
        })
    }

    /// A justice input (to_local or second-level output when `htlc` is `None`, else an HTLC
    /// output of the revoked commitment). The cosigners take the commitment and its secret
    /// from their own store; LDK's `per_commitment_key` only serves to check the signature.
    #[allow(clippy::too_many_arguments)]
    fn justice(
        &self,
        params: &ChannelTransactionParameters,
        justice_tx: &Transaction,
        input: usize,
        amount: u64,
        per_commitment_key: &SecretKey,
        htlc: Option<&HTLCOutputInCommitment>,
        secp: &Secp256k1<All>,
    ) -> Result<Signature, ()> {
        self.ensure_setup(params)?;
        let request = ChannelRequest::SignJustice {
            tx: bitcoin::consensus::serialize(justice_tx),
            input: u32::try_from(input).map_err(|_| ())?,
            amount_sat: amount,
            htlc: htlc.map(htlc_info),
        };
        let sig = self.blocking_sig("justice transaction", request)?;
        // The script LDK's own signer would sign for, under the revocation key of the
        // commitment whose secret LDK holds: the quorum's signature must verify for it.
        let directed = params.as_counterparty_broadcastable();
        let point = PublicKey::from_secret_key(secp, per_commitment_key);
        let keys = TxCreationKeys::from_channel_static_keys(
            &point,
            directed.broadcaster_pubkeys(),
            directed.countersignatory_pubkeys(),
            secp,
        );
        let script = match htlc {
            None => get_revokeable_redeemscript(
                &keys.revocation_key,
                directed.contest_delay(),
                &keys.broadcaster_delayed_payment_key,
            ),
            Some(h) => get_htlc_redeemscript(h, &params.channel_type_features, &keys),
        };
        self.verify_p2wsh(justice_tx, input, &script, amount, &sig, &keys.revocation_key.to_public_key(), secp)
            .map_err(|_| self.log_refusal("justice transaction", "returned signature does not verify"))?;
        Ok(sig)
    }

    /// Whether `sig` signs input `input` of `tx` (SIGHASH_ALL, P2WSH `script`, `amount` sat)
    /// under `key`.
    #[allow(clippy::too_many_arguments)]
    fn verify_p2wsh(
        &self,
        tx: &Transaction,
        input: usize,
        script: &bitcoin::Script,
        amount: u64,
        sig: &Signature,
        key: &PublicKey,
        secp: &Secp256k1<All>,
    ) -> Result<(), ()> {
        let sighash = SighashCache::new(tx)
            .p2wsh_signature_hash(input, script, bitcoin::Amount::from_sat(amount), EcdsaSighashType::All)
            .map_err(|_| ())?;
        secp.verify_ecdsa(&Message::from_digest(sighash.to_byte_array()), sig, key).map_err(|_| ())
    }

    fn blocking_sig(&self, what: &str, request: ChannelRequest) -> Result<Signature, ()> {
        self.bridge
            .channel_blocking(self.id, request)
            .map_err(|e| e.to_string())
            .and_then(one_sig)
            .map_err(|e| self.log_refusal(what, &e))
    }
}

impl ChannelSigner for QuorumChannelSigner {
    fn get_per_commitment_point(&self, idx: u64, _secp: &Secp256k1<All>) -> Result<PublicKey, ()> {
        self.not_stopped("per-commitment point")?;
        let mut points = self.points.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = points.get(&idx) {
            return Ok(*p);
        }
        let id = self.id;
        let bytes = self
            .bridge
            .wait(move |c| async move { c.per_commitment_point(id, idx).await })
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
            .map_err(|e| self.log_refusal("per-commitment point", &e))?;
        let point = PublicKey::from_slice(&bytes).map_err(|_| self.log_refusal("per-commitment point", "malformed"))?;
        // Numbers count down: keep only the few around the current one.
        points.retain(|n, _| *n <= idx.saturating_add(2));
        points.insert(idx, point);
        Ok(point)
    }

    fn release_commitment_secret(&self, idx: u64) -> Result<[u8; 32], ()> {
        self.not_stopped("commitment secret")?;
        // Revoking needs the next holder commitment validated first (cosigner policy).
        if self.setup.lock().unwrap_or_else(|e| e.into_inner()).sent {
            self.flush_deferred()?;
        }
        match self
            .async_request("commitment secret", ChannelRequest::ReleaseCommitmentSecret { commitment_number: idx })?
        {
            KeyHolderOutput::Secret(s) => Ok(s),
            other => self.refused("commitment secret", &format!("unexpected output {other:?}")),
        }
    }

    fn validate_holder_commitment(
        &self,
        holder_tx: &HolderCommitmentTransaction,
        outbound_htlc_preimages: Vec<PaymentPreimage>,
    ) -> Result<(), ()> {
        let commitment: &CommitmentTransaction = holder_tx;
        let request = ChannelRequest::ValidateHolderCommitment {
            commitment: parse::commitment_info(commitment),
            counterparty_sig: holder_tx.counterparty_sig.serialize_compact().to_vec(),
            counterparty_htlc_sigs: holder_tx
                .counterparty_htlc_sigs
                .iter()
                .map(|s| s.serialize_compact().to_vec())
                .collect(),
            outbound_preimages: outbound_htlc_preimages.iter().map(|p| p.0).collect(),
        };
        self.validate("holder commitment", request)
    }

    fn validate_counterparty_revocation(&self, idx: u64, secret: &SecretKey) -> Result<(), ()> {
        let request =
            ChannelRequest::ValidateCounterpartyRevocation { commitment_number: idx, secret: secret.secret_bytes() };
        self.validate("counterparty revocation", request)
    }

    fn pubkeys(&self, _secp: &Secp256k1<All>) -> ChannelPublicKeys {
        self.public_keys()
    }

    fn new_funding_pubkey(&self, _parent: bitcoin::Txid, _secp: &Secp256k1<All>) -> PublicKey {
        // Splicing is not supported: cosigners refuse spliced parameters at setup.
        self.log_refusal("splice funding key", "splicing is not supported");
        self.funding_pubkey()
    }

    fn channel_keys_id(&self) -> [u8; 32] {
        self.id
    }
}

impl EcdsaChannelSigner for QuorumChannelSigner {
    fn sign_counterparty_commitment(
        &self,
        params: &ChannelTransactionParameters,
        commitment_tx: &CommitmentTransaction,
        _inbound_htlc_preimages: Vec<PaymentPreimage>,
        outbound_htlc_preimages: Vec<PaymentPreimage>,
        secp: &Secp256k1<All>,
    ) -> Result<(Signature, Vec<Signature>), ()> {
        self.ensure_setup(params)?;
        let request = ChannelRequest::SignCounterpartyCommitment {
            commitment: parse::commitment_info(commitment_tx),
            outbound_preimages: outbound_htlc_preimages.iter().map(|p| p.0).collect(),
        };
        let KeyHolderOutput::Signatures { sig, htlc_sigs } = self.async_request("counterparty commitment", request)?
        else {
            return self.refused("counterparty commitment", "unexpected output");
        };
        let parse_sig = |b: &[u8]| Signature::from_compact(b).map_err(|_| ());
        let sig = parse_sig(&sig).map_err(|_| self.log_refusal("counterparty commitment", "malformed signature"))?;
        let htlc_sigs = htlc_sigs.iter().map(|s| parse_sig(s)).collect::<Result<Vec<_>, _>>()?;
        // The quorum rebuilt the transaction itself; check it signed the one LDK built.
        let sighash = commitment_tx
            .trust()
            .built_transaction()
            .get_sighash_all(&funding_script(params)?, params.channel_value_satoshis);
        if secp.verify_ecdsa(&sighash, &sig, &self.funding_pubkey()).is_err()
            || htlc_sigs.len() != commitment_tx.nondust_htlcs().len()
        {
            return self.refused("counterparty commitment", "returned signatures do not match LDK's transaction");
        }
        Ok((sig, htlc_sigs))
    }

    fn sign_holder_commitment(
        &self,
        params: &ChannelTransactionParameters,
        commitment_tx: &HolderCommitmentTransaction,
        secp: &Secp256k1<All>,
    ) -> Result<Signature, ()> {
        self.ensure_setup(params)?;
        let commitment: &CommitmentTransaction = commitment_tx;
        let request = ChannelRequest::SignHolderCommitment { commitment: parse::commitment_info(commitment) };
        let sig = one_sig(self.async_request("holder commitment", request)?)
            .map_err(|e| self.log_refusal("holder commitment", &e))?;
        let sighash = commitment_tx
            .trust()
            .built_transaction()
            .get_sighash_all(&funding_script(params)?, params.channel_value_satoshis);
        secp.verify_ecdsa(&sighash, &sig, &self.funding_pubkey())
            .map_err(|_| self.log_refusal("holder commitment", "returned signature does not verify"))?;
        Ok(sig)
    }

    fn sign_justice_revoked_output(
        &self,
        params: &ChannelTransactionParameters,
        justice_tx: &Transaction,
        input: usize,
        amount: u64,
        per_commitment_key: &SecretKey,
        secp: &Secp256k1<All>,
    ) -> Result<Signature, ()> {
        self.justice(params, justice_tx, input, amount, per_commitment_key, None, secp)
    }

    fn sign_justice_revoked_htlc(
        &self,
        params: &ChannelTransactionParameters,
        justice_tx: &Transaction,
        input: usize,
        amount: u64,
        per_commitment_key: &SecretKey,
        htlc: &HTLCOutputInCommitment,
        secp: &Secp256k1<All>,
    ) -> Result<Signature, ()> {
        self.justice(params, justice_tx, input, amount, per_commitment_key, Some(htlc), secp)
    }

    fn sign_holder_htlc_transaction(
        &self,
        htlc_tx: &Transaction,
        input: usize,
        descriptor: &HTLCDescriptor,
        _secp: &Secp256k1<All>,
    ) -> Result<Signature, ()> {
        self.ensure_setup(&descriptor.channel_derivation_parameters.transaction_parameters)?;
        let request = ChannelRequest::SignHolderHtlc {
            tx: bitcoin::consensus::serialize(htlc_tx),
            input: u32::try_from(input).map_err(|_| ())?,
            commitment_number: descriptor.per_commitment_number,
            htlc: htlc_info(&descriptor.htlc),
            preimage: descriptor.preimage.map(|p| p.0),
        };
        self.blocking_sig("holder HTLC transaction", request)
    }

    fn sign_counterparty_htlc_transaction(
        &self,
        params: &ChannelTransactionParameters,
        htlc_tx: &Transaction,
        input: usize,
        amount: u64,
        per_commitment_point: &PublicKey,
        htlc: &HTLCOutputInCommitment,
        secp: &Secp256k1<All>,
    ) -> Result<Signature, ()> {
        self.ensure_setup(params)?;
        let request = ChannelRequest::SignCounterpartyHtlcClaim {
            tx: bitcoin::consensus::serialize(htlc_tx),
            input: u32::try_from(input).map_err(|_| ())?,
            amount_sat: amount,
            htlc: htlc_info(htlc),
        };
        let sig = self.blocking_sig("claim on the counterparty's commitment", request)?;
        // Our HTLC key on their commitment, for the script LDK's own signer would sign.
        let directed = params.as_counterparty_broadcastable();
        let keys = TxCreationKeys::from_channel_static_keys(
            per_commitment_point,
            directed.broadcaster_pubkeys(),
            directed.countersignatory_pubkeys(),
            secp,
        );
        let script = get_htlc_redeemscript(htlc, &params.channel_type_features, &keys);
        self.verify_p2wsh(htlc_tx, input, &script, amount, &sig, &keys.countersignatory_htlc_key.to_public_key(), secp)
            .map_err(|_| {
                self.log_refusal("claim on the counterparty's commitment", "returned signature does not verify")
            })?;
        Ok(sig)
    }

    fn sign_closing_transaction(
        &self,
        params: &ChannelTransactionParameters,
        closing_tx: &ClosingTransaction,
        secp: &Secp256k1<All>,
    ) -> Result<Signature, ()> {
        self.ensure_setup(params)?;
        let request = ChannelRequest::SignClosing {
            to_holder_sat: closing_tx.to_holder_value_sat(),
            to_counterparty_sat: closing_tx.to_counterparty_value_sat(),
            to_holder_script: closing_tx.to_holder_script().to_bytes(),
            to_counterparty_script: closing_tx.to_counterparty_script().to_bytes(),
        };
        let sig = one_sig(self.async_request("closing transaction", request)?)
            .map_err(|e| self.log_refusal("closing", &e))?;
        let sighash = closing_tx.trust().get_sighash_all(&funding_script(params)?, params.channel_value_satoshis);
        secp.verify_ecdsa(&sighash, &sig, &self.funding_pubkey())
            .map_err(|_| self.log_refusal("closing", "returned signature does not verify"))?;
        Ok(sig)
    }

    fn sign_holder_keyed_anchor_input(
        &self,
        params: &ChannelTransactionParameters,
        anchor_tx: &Transaction,
        input: usize,
        _secp: &Secp256k1<All>,
    ) -> Result<Signature, ()> {
        self.ensure_setup(params)?;
        let request = ChannelRequest::SignHolderAnchor {
            tx: bitcoin::consensus::serialize(anchor_tx),
            input: u32::try_from(input).map_err(|_| ())?,
        };
        self.blocking_sig("anchor input", request)
    }

    fn sign_channel_announcement_with_funding_key(
        &self,
        params: &ChannelTransactionParameters,
        msg: &UnsignedChannelAnnouncement,
        secp: &Secp256k1<All>,
    ) -> Result<Signature, ()> {
        use lightning::util::ser::Writeable;
        self.ensure_setup(params)?;
        let request = ChannelRequest::SignChannelAnnouncement { message: msg.encode() };
        let sig = self.blocking_sig("channel announcement", request)?;
        let digest = bitcoin::hashes::sha256d::Hash::hash(&msg.encode()[..]);
        secp.verify_ecdsa(&Message::from_digest(digest.to_byte_array()), &sig, &self.funding_pubkey())
            .map_err(|_| self.log_refusal("channel announcement", "returned signature does not verify"))?;
        Ok(sig)
    }

    fn sign_splice_shared_input(
        &self,
        _params: &ChannelTransactionParameters,
        _tx: &Transaction,
        _input_index: usize,
        _secp: &Secp256k1<All>,
    ) -> Signature {
        // LDK gives this method no way to refuse. Splicing is never negotiated through
        // this signer (cosigners refuse spliced setups); answer with a signature over
        // nothing that no verifier accepts for any transaction.
        self.log_refusal("splice input", "splicing is not supported");
        // r = s = 0x0101…01 are below the group order: this encoding always parses.
        Signature::from_compact(&[1u8; 64]).expect("constant valid compact encoding")
    }
}
