//! Drives one legacy (anchor) channel through the quorum as a node and its counterparty
//! would: HTLCs offered, received, fulfilled and failed, each state change one full
//! update round (their commitment signed by us, ours validated, both revoked), then a
//! cooperative close or a force close. Every signature the quorum returns is checked
//! against the transaction rebuilt here with LDK's `chan_utils` (libsecp256k1); closes
//! and force closes are also run through Bitcoin Core's interpreter (`bitcoinconsensus`).
//!
//! An update is resumable: if a request fails (a cosigner down, a lost link), calling
//! [`LegacyChannelDriver::update`] again repeats the failed step with the same facts.
//!
//! Must never: change its balances on a refusal, or report a signature it did not verify.

use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{ecdsa, Message, PublicKey, SecretKey};
use bitcoin::sighash::{EcdsaSighashType, SighashCache};
use bitcoin::{ScriptBuf, Transaction, TxOut, Witness};
use lightning::ln::chan_utils::{build_htlc_transaction, get_htlc_redeemscript, ClosingTransaction};
use qls_node::client::{ClientError, NodeClient};
use qls_protocol::{ChannelKeysId, ChannelRequest, ChannelSetup, CommitmentInfo, HtlcInfo, KeyHolderOutput};
use qls_signer_core::channel::parse::{self, Broadcaster};
use qls_signer_core::channel::state::INITIAL_COMMITMENT_NUMBER as N0;

use crate::counterparty::{Counterparty, FEERATE};
use crate::htlc_book::HtlcBook;
use crate::sim_chain::{funding_tx, lock_chain, SharedChain};
use crate::taproot_driver::{DriverError, SignedSpend};

/// Both sides' dust limit (LDK's smallest).
const DUST_LIMIT_SAT: u64 = 354;

/// Weight-based commitment fee of an anchor channel with `htlcs` non-dust HTLCs.
pub fn commitment_fee_sat(htlcs: usize) -> u64 {
    u64::from(FEERATE) * (1124 + 172 * htlcs as u64) / 1000
}

/// Both anchors, paid by the funder.
pub const ANCHORS_SAT: u64 = 660;

/// A signature the quorum returned, after verification: its nonce commitment (`r` of an
/// ECDSA signature, `R` of a Schnorr one) and the message, for the nonce-reuse invariant
/// (one `R` over two different messages leaks the key; over the same message it is the
/// same deterministic signature).
/// The key it verifies under is kept too, for the run's signature log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenSig {
    pub r: [u8; 32],
    pub msg: [u8; 32],
    /// The 33-byte key the signature verified under and the 64-byte compact signature.
    pub pubkey: [u8; 33],
    pub sig: [u8; 64],
}

impl SeenSig {
    /// Its line in the signature log.
    pub fn record(&self) -> crate::report::SigRecord {
        crate::report::SigRecord::ecdsa(&self.pubkey, &self.msg, &self.sig)
    }
}

fn check(ok: bool, what: impl Into<String>) -> Result<(), DriverError> {
    if ok {
        Ok(())
    } else {
        Err(DriverError::Check(what.into()))
    }
}

fn seen(sig: &ecdsa::Signature, msg: &Message, key: &PublicKey) -> SeenSig {
    let compact = sig.serialize_compact();
    let mut r = [0u8; 32];
    r.copy_from_slice(&compact[..32]);
    SeenSig { r, msg: *msg.as_ref(), pubkey: key.serialize(), sig: compact }
}

/// The facts of an update in progress, fixed when it starts so a retry repeats them.
#[derive(Debug, Clone)]
struct Pending {
    n: u64,
    counterparty: CommitmentInfo,
    holder_htlcs: Vec<HtlcInfo>,
    ours_sat: u64,
    theirs_sat: u64,
    preimages: Vec<[u8; 32]>,
    /// Steps done: 0 none, 1 their commitment signed, 2 ours validated, 3 ours revoked.
    done: u8,
}

pub struct LegacyChannelDriver {
    pub channel: ChannelKeysId,
    pub cp: Counterparty,
    pub setup: ChannelSetup,
    /// Balances and HTLCs in flight.
    pub book: HtlcBook,
    /// Next commitment number (LDK counts down from 2^48 − 1; both sides in step).
    next: u64,
    pending: Option<Pending>,
    /// Our latest validated holder commitment (what force close broadcasts).
    pub holder_latest: Option<CommitmentInfo>,
    /// The last few counterparty commitments signed, oldest first (what a malicious
    /// coordinator could replay).
    pub signed_history: Vec<ChannelRequest>,
    /// Our value (msat) on the counterparty commitment signed last: our output, the fees
    /// we advanced as funder, our offered HTLCs.
    pub last_signed_value_msat: u64,
    /// Every signature the quorum returned and this driver verified, also from updates
    /// that failed later on; drained by the caller (nonce-reuse invariant).
    pub seen: Vec<SeenSig>,
}

impl LegacyChannelDriver {
    /// Sets the channel up on every cosigner and exchanges the first commitments. We
    /// funded it when `is_outbound` (we hold `value_sat` less the fees), else it holds all.
    /// Its funding transaction is mined on `chain`, and the cosigners get its SPV proof
    /// once it is deep enough (so the channel's incoming HTLCs cover forwards).
    pub async fn open(
        client: &NodeClient,
        chain: &SharedChain,
        channel: ChannelKeysId,
        value_sat: u64,
        is_outbound: bool,
    ) -> Result<(Self, Vec<SeenSig>), DriverError> {
        let (keys, _) = client.channel_keys(channel).await?;
        let cp = Counterparty::new();
        let mut setup = cp.setup(keys.points, value_sat, is_outbound, [0; 32]);
        let script = Counterparty::funding_script(&setup)
            .ok_or_else(|| DriverError::Check("the setup's funding keys do not parse".into()))?
            .to_p2wsh();
        let funding = funding_tx(channel, &script, value_sat, setup.funding_vout);
        setup.funding_txid = funding.compute_txid().to_byte_array();
        client.channel(channel, ChannelRequest::Setup(setup.clone())).await?;
        let opened = Self::after_setup(client, channel, cp, setup).await?;
        let proof = lock_chain(chain).confirm(&[funding]).remove(0);
        client.channel(channel, ChannelRequest::FundingConfirmed(proof)).await?;
        Ok(opened)
    }

    /// For a channel whose `setup` (with `cp` as counterparty) every cosigner already
    /// stores: exchanges the first commitments (after which a funding transaction may be
    /// signed).
    pub async fn after_setup(
        client: &NodeClient,
        channel: ChannelKeysId,
        cp: Counterparty,
        setup: ChannelSetup,
    ) -> Result<(Self, Vec<SeenSig>), DriverError> {
        let value_sat = setup.channel_value_sat;
        let is_outbound = setup.is_outbound;
        let (ours_msat, theirs_msat) = if is_outbound { (value_sat * 1000, 0) } else { (0, value_sat * 1000) };
        let mut d = Self {
            channel,
            cp,
            setup,
            book: HtlcBook::new(ours_msat, theirs_msat),
            next: N0,
            pending: None,
            holder_latest: None,
            signed_history: vec![],
            last_signed_value_msat: 0,
            seen: vec![],
        };
        d.update(client).await?;
        let sigs = std::mem::take(&mut d.seen);
        Ok((d, sigs))
    }

    pub fn is_outbound(&self) -> bool {
        self.setup.is_outbound
    }

    /// The next commitment number (LDK's, counting down).
    pub fn next_number(&self) -> u64 {
        self.next
    }

    /// What the funder pays on a commitment with `htlcs` HTLCs.
    fn funder_fee_sat(htlcs: usize) -> u64 {
        commitment_fee_sat(htlcs) + ANCHORS_SAT
    }

    /// The two balances as outputs, fees taken from the funder.
    fn outputs_sat(&self) -> Result<(u64, u64), DriverError> {
        let fee = Self::funder_fee_sat(self.book.htlcs.len());
        let (ours, theirs) = (self.book.ours_msat / 1000, self.book.theirs_msat / 1000);
        let short = || DriverError::Check("the funder cannot pay the commitment fee".into());
        let (ours, theirs) = if self.setup.is_outbound {
            (ours.checked_sub(fee).ok_or_else(short)?, theirs)
        } else {
            (ours, theirs.checked_sub(fee).ok_or_else(short)?)
        };
        // As LDK does: an output below the dust limit is trimmed (its value goes to fees).
        let trim = |sat: u64| if sat < DUST_LIMIT_SAT { 0 } else { sat };
        Ok((trim(ours), trim(theirs)))
    }

    fn funding_script(&self) -> Result<ScriptBuf, DriverError> {
        Counterparty::funding_script(&self.setup).ok_or_else(|| DriverError::Check("funding keys".into()))
    }

    fn rebuild_err(e: parse::ChannelError) -> DriverError {
        DriverError::Check(e.to_string())
    }

    /// The counterparty's commitment `info` signed by us: checks our commitment signature
    /// and every HTLC signature (libsecp256k1).
    fn verify_counterparty_sigs(
        &self,
        info: &CommitmentInfo,
        sig: &[u8],
        htlc_sigs: &[Vec<u8>],
    ) -> Result<Vec<SeenSig>, DriverError> {
        let secp = &self.cp.secp;
        let params = parse::transaction_parameters(&self.setup).map_err(Self::rebuild_err)?;
        let tx = parse::commitment(&params, info, Broadcaster::Counterparty, secp).map_err(Self::rebuild_err)?;
        let trusted = tx.trust();
        let sighash =
            trusted.built_transaction().get_sighash_all(&self.funding_script()?, self.setup.channel_value_sat);
        let sig = ecdsa::Signature::from_compact(sig).map_err(|_| DriverError::Check("commitment signature".into()))?;
        let holder_funding =
            PublicKey::from_slice(&self.setup.holder.funding).map_err(|_| DriverError::Check("funding key".into()))?;
        check(secp.verify_ecdsa(&sighash, &sig, &holder_funding).is_ok(), "our commitment signature does not verify")?;
        let mut out = vec![seen(&sig, &sighash, &holder_funding)];
        let htlcs = tx.nondust_htlcs();
        check(
            htlc_sigs.len() == htlcs.len(),
            format!("{} HTLC signatures for {} HTLCs", htlc_sigs.len(), htlcs.len()),
        )?;
        let keys = trusted.keys();
        for (h, s) in htlcs.iter().zip(htlc_sigs) {
            let t = build_htlc_transaction(
                &trusted.txid(),
                FEERATE,
                self.setup.holder_selected_contest_delay,
                h,
                &params.channel_type_features,
                &keys.broadcaster_delayed_payment_key,
                &keys.revocation_key,
            );
            let script = get_htlc_redeemscript(h, &params.channel_type_features, keys);
            let hash = SighashCache::new(&t)
                .p2wsh_signature_hash(0, &script, h.to_bitcoin_amount(), EcdsaSighashType::SinglePlusAnyoneCanPay)
                .map_err(|_| DriverError::Check("HTLC sighash".into()))?;
            let s = ecdsa::Signature::from_compact(s).map_err(|_| DriverError::Check("HTLC signature".into()))?;
            let m = Message::from_digest(hash.to_byte_array());
            check(
                secp.verify_ecdsa(&m, &s, &keys.countersignatory_htlc_key.to_public_key()).is_ok(),
                "our HTLC signature does not verify",
            )?;
            out.push(seen(&s, &m, &keys.countersignatory_htlc_key.to_public_key()));
        }
        Ok(out)
    }

    /// The counterparty's next commitment as we would sign it now.
    pub fn next_counterparty_info(&self) -> Result<CommitmentInfo, DriverError> {
        let (ours, theirs) = self.outputs_sat()?;
        let htlcs = self.book.htlcs.iter().map(|f| HtlcInfo { offered: !f.htlc.offered, ..f.htlc.clone() }).collect();
        Ok(self.cp.commitment(self.next, theirs, ours, htlcs))
    }

    /// One full update round with the current balances and HTLCs; resumes a failed one.
    /// The signatures it verified go to [`Self::seen`].
    pub async fn update(&mut self, client: &NodeClient) -> Result<(), DriverError> {
        let mut p = match self.pending.take() {
            Some(p) => p,
            None => {
                let (ours_sat, theirs_sat) = self.outputs_sat()?;
                Pending {
                    n: self.next,
                    counterparty: self.next_counterparty_info()?,
                    holder_htlcs: self.book.htlcs.iter().map(|f| f.htlc.clone()).collect(),
                    ours_sat,
                    theirs_sat,
                    preimages: std::mem::take(&mut self.book.fulfilled_ours),
                    done: 0,
                }
            }
        };
        let result = self.steps(client, &mut p).await;
        match result {
            Ok(()) => {
                self.next = p.n - 1;
                Ok(())
            }
            Err(e) => {
                self.pending = Some(p);
                Err(e)
            }
        }
    }

    async fn steps(&mut self, client: &NodeClient, p: &mut Pending) -> Result<(), DriverError> {
        let id = self.channel;
        if p.done == 0 {
            let req = ChannelRequest::SignCounterpartyCommitment {
                commitment: p.counterparty.clone(),
                outbound_preimages: p.preimages.clone(),
            };
            let (out, _) = client.channel(id, req.clone()).await?;
            let KeyHolderOutput::Signatures { sig, htlc_sigs } = out else {
                return Err(DriverError::Check(format!("unexpected output {out:?}")));
            };
            let verified = self.verify_counterparty_sigs(&p.counterparty, &sig, &htlc_sigs)?;
            self.seen.extend(verified);
            let c = &p.counterparty;
            let fees = if self.setup.is_outbound { Self::funder_fee_sat(c.htlcs.len()) } else { 0 };
            let offered: u64 = c.htlcs.iter().filter(|h| !h.offered).map(|h| h.amount_msat).sum();
            self.last_signed_value_msat = (c.to_countersignatory_sat + fees) * 1000 + offered;
            self.signed_history.push(req);
            if self.signed_history.len() > 4 {
                self.signed_history.remove(0);
            }
            p.done = 1;
        }
        if p.done == 1 {
            let point = client.per_commitment_point(id, p.n).await?;
            let info = CommitmentInfo {
                commitment_number: p.n,
                per_commitment_point: point,
                to_broadcaster_sat: p.ours_sat,
                to_countersignatory_sat: p.theirs_sat,
                feerate_per_kw: FEERATE,
                htlcs: p.holder_htlcs.clone(),
            };
            let req =
                self.cp.validate_request(&self.setup, info.clone(), p.preimages.clone()).map_err(Self::rebuild_err)?;
            client.channel(id, req).await?;
            self.holder_latest = Some(info);
            p.done = 2;
        }
        if p.n == N0 {
            return Ok(());
        }
        if p.done == 2 {
            let (out, _) =
                client.channel(id, ChannelRequest::ReleaseCommitmentSecret { commitment_number: p.n + 1 }).await?;
            let KeyHolderOutput::Secret(secret) = out else {
                return Err(DriverError::Check(format!("unexpected output {out:?}")));
            };
            let point = client.per_commitment_point(id, p.n + 1).await?;
            let derived = SecretKey::from_slice(&secret)
                .map(|s| PublicKey::from_secret_key(&self.cp.secp, &s).serialize().to_vec())
                .map_err(|_| DriverError::Check("revocation secret is not a scalar".into()))?;
            check(derived == point, "our revocation secret does not match the per-commitment point")?;
            p.done = 3;
        }
        let revoke = ChannelRequest::ValidateCounterpartyRevocation {
            commitment_number: p.n + 1,
            secret: self.cp.secret(p.n + 1),
        };
        client.channel(id, revoke).await?;
        Ok(())
    }

    /// Asks the quorum to sign a counterparty commitment that moves `drain_msat` of our
    /// balance to the counterparty with nothing in return (a compromised node's drain
    /// attempt). Returns the refusal, or — if the quorum returned signatures at all — the
    /// ones that verify (a drain the quorum signed is signed even if the signature is bad).
    pub async fn attempt_drain(&self, client: &NodeClient, drain_msat: u64) -> Result<Vec<SeenSig>, ClientError> {
        let mut info = self.next_counterparty_info().map_err(|e| ClientError::Unexpected(e.to_string()))?;
        let drain = (drain_msat / 1000).min(info.to_countersignatory_sat);
        info.to_countersignatory_sat -= drain;
        info.to_broadcaster_sat += drain;
        let req = ChannelRequest::SignCounterpartyCommitment { commitment: info.clone(), outbound_preimages: vec![] };
        let (out, _) = client.channel(self.channel, req).await?;
        match out {
            KeyHolderOutput::Signatures { sig, htlc_sigs } => {
                Ok(self.verify_counterparty_sigs(&info, &sig, &htlc_sigs).unwrap_or_default())
            }
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// A cooperative close paying our balance (less `fee_sat` if we fund) to `ours_script`.
    /// Needs no HTLC in flight. Returns the signed close (2-of-2 witness assembled).
    pub async fn close(
        &self,
        client: &NodeClient,
        ours_script: &ScriptBuf,
        fee_sat: u64,
    ) -> Result<(SignedSpend, Vec<SeenSig>), DriverError> {
        check(self.book.htlcs.is_empty(), "HTLCs in flight")?;
        let (mut ours, mut theirs) = (self.book.ours_msat / 1000, self.book.theirs_msat / 1000);
        let payer = if self.setup.is_outbound { &mut ours } else { &mut theirs };
        *payer = payer.checked_sub(fee_sat).ok_or_else(|| DriverError::Check("close fee above balance".into()))?;
        let cp_script = ScriptBuf::new_p2wpkh(&bitcoin::WPubkeyHash::hash(&self.channel));
        let req = ChannelRequest::SignClosing {
            to_holder_sat: ours,
            to_counterparty_sat: theirs,
            to_holder_script: ours_script.to_bytes(),
            to_counterparty_script: cp_script.to_bytes(),
        };
        let (out, _) = client.channel(self.channel, req).await?;
        let KeyHolderOutput::Signatures { sig, .. } = out else {
            return Err(DriverError::Check(format!("unexpected output {out:?}")));
        };
        let params = parse::transaction_parameters(&self.setup).map_err(Self::rebuild_err)?;
        let outpoint = params.funding_outpoint.ok_or_else(|| DriverError::Check("funding outpoint".into()))?;
        let ct =
            ClosingTransaction::new(ours, theirs, ours_script.clone(), cp_script, outpoint.into_bitcoin_outpoint());
        let trusted = ct.trust();
        let sighash = trusted.get_sighash_all(&self.funding_script()?, self.setup.channel_value_sat);
        let tx = trusted.built_transaction().clone();
        self.complete_2of2(tx, sighash, &sig)
    }

    /// Force close: our latest holder commitment signed by the quorum, completed with the
    /// counterparty's signature.
    pub async fn force_close(&self, client: &NodeClient) -> Result<(SignedSpend, Vec<SeenSig>), DriverError> {
        let latest = self.holder_latest.clone().ok_or_else(|| DriverError::Check("no holder commitment".into()))?;
        let (out, _) =
            client.channel(self.channel, ChannelRequest::SignHolderCommitment { commitment: latest.clone() }).await?;
        let KeyHolderOutput::Signatures { sig, .. } = out else {
            return Err(DriverError::Check(format!("unexpected output {out:?}")));
        };
        let params = parse::transaction_parameters(&self.setup).map_err(Self::rebuild_err)?;
        let tx = parse::commitment(&params, &latest, Broadcaster::Holder, &self.cp.secp).map_err(Self::rebuild_err)?;
        let trusted = tx.trust();
        let sighash =
            trusted.built_transaction().get_sighash_all(&self.funding_script()?, self.setup.channel_value_sat);
        let tx = trusted.built_transaction().transaction.clone();
        self.complete_2of2(tx, sighash, &sig)
    }

    /// Verifies our signature on a funding spend and adds the counterparty's into the
    /// 2-of-2 witness.
    fn complete_2of2(
        &self,
        mut tx: Transaction,
        sighash: Message,
        sig: &[u8],
    ) -> Result<(SignedSpend, Vec<SeenSig>), DriverError> {
        let secp = &self.cp.secp;
        let ours = ecdsa::Signature::from_compact(sig).map_err(|_| DriverError::Check("signature".into()))?;
        let key = PublicKey::from_slice(&self.setup.holder.funding).map_err(|_| DriverError::Check("key".into()))?;
        check(secp.verify_ecdsa(&sighash, &ours, &key).is_ok(), "our funding signature does not verify")?;
        let theirs = self.cp.sign_funding(&sighash);
        let (first, second) =
            if self.setup.holder.funding < self.setup.counterparty.funding { (ours, theirs) } else { (theirs, ours) };
        let script = self.funding_script()?;
        let mut w = Witness::new();
        w.push(Vec::new());
        w.push_ecdsa_signature(&bitcoin::ecdsa::Signature::sighash_all(first));
        w.push_ecdsa_signature(&bitcoin::ecdsa::Signature::sighash_all(second));
        w.push(script.as_bytes());
        tx.input[0].witness = w;
        let spent = vec![TxOut {
            value: bitcoin::Amount::from_sat(self.setup.channel_value_sat),
            script_pubkey: script.to_p2wsh(),
        }];
        Ok((SignedSpend { tx, spent }, vec![seen(&ours, &sighash, &key)]))
    }
}
