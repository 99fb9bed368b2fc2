//! Both sides of a simple taproot channel: our node (a client of the QLS quorum, which
//! holds every key of ours) and the counterparty (single keys from
//! [`crate::taproot_counterparty`], plain BIP-327 through the independent `musig2` crate).
//! Released LDK has no taproot channel signer, so this driver stands in for the two nodes.
//!
//! One [`TaprootChannelDriver::update`] is a full BOLT 2 round both ways: the quorum's
//! partial signature and FROST HTLC signatures on the counterparty's next commitment (the
//! counterparty checks and completes them), its revocation of the previous one; its
//! partial signature and HTLC signatures on our next holder commitment in the session of the
//! quorum's verification nonce (the cosigners validate them), and our revocation of our
//! previous commitment (per-commitment secret from a key holder). Force close completes the
//! latest holder commitment with its verification nonce; the signed transactions are
//! returned for the caller to check with Bitcoin Core's interpreter.
//!
//! Every signature the quorum returns is checked here by the counterparty's own code path
//! (`musig2::verify_partial`, libsecp256k1 BIP-340 under keys the counterparty derives),
//! never by trusting the quorum's report.
//!
//! Must never: hold or derive a secret of ours (the quorum has them all), or be used as a
//! signer outside tests and scenarios (the counterparty's keys are fixed test keys).

use bitcoin::hashes::{sha256, Hash};
use bitcoin::secp256k1::{schnorr, Keypair, Message, PublicKey, Secp256k1, SecretKey, XOnlyPublicKey};
use bitcoin::sighash::TapSighashType;
use bitcoin::{Transaction, Witness};
use lightning::ln::chan_utils::build_commitment_secret;
use musig2::BinaryEncoding;
use qls_node::client::{ClientError, NodeClient};
use qls_protocol::*;
use qls_signer_core::bolt3_keys::derive_privkey;
use qls_signer_core::taproot_channel::{self as tc, Side, TaprootChannelState};

use crate::htlc_book::HtlcBook;
use crate::sim_chain::{funding_tx, lock_chain, SharedChain};
use crate::taproot_counterparty::{test_key, FUNDING_SECRET, HTLC_SECRET};

/// LDK numbers our commitments down from this (key holders answer in that numbering).
const INITIAL: u64 = (1 << 48) - 1;

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A signature or value from the quorum that the counterparty does not accept.
    #[error("counterparty check failed: {0}")]
    Check(String),
}

fn check(ok: bool, what: impl Into<String>) -> Result<(), DriverError> {
    if ok {
        Ok(())
    } else {
        Err(DriverError::Check(what.into()))
    }
}

/// Our latest holder commitment as the counterparty signed it (what force close uses).
#[derive(Debug, Clone)]
pub struct SignedHolder {
    pub info: TaprootCommitmentInfo,
    pub verification: Vec<LeafNonce>,
    pub quorum_nonce: [u8; 66],
    pub their_nonce: [u8; 66],
    pub their_psig: [u8; 32],
    /// The counterparty's HTLC signatures (65 bytes: BIP-340 + SIGHASH_SINGLE|ANYONECANPAY).
    pub htlc_sigs: Vec<Vec<u8>>,
}

/// A cooperative close or force close, signed: the transaction with its witness and the
/// output it spends.
#[derive(Debug, Clone)]
pub struct SignedSpend {
    pub tx: Transaction,
    pub spent: Vec<bitcoin::TxOut>,
}

pub struct TaprootChannelDriver {
    pub channel: ChannelKeysId,
    /// The channel's public facts as both sides know them (our keys from the quorum).
    pub view: TaprootChannelState,
    /// Balances and HTLCs in flight.
    pub book: HtlcBook,
    /// The counterparty's shachain seed (its per-commitment secrets).
    seed: [u8; 32],
    pub next_counterparty: u64,
    pub next_holder: u64,
    pub holder: Option<SignedHolder>,
    /// Our previous holder commitment while it is not revoked yet.
    pub unrevoked: Option<SignedHolder>,
    /// Milliseconds of each holder-commitment validation (with its force-close escrow) and
    /// each holder revocation through the quorum, in order (`bench-taproot`).
    pub validate_ms: Vec<f64>,
    pub revoke_ms: Vec<f64>,
    pub counterparty_latest: Option<TaprootCommitmentInfo>,
    /// Every counterparty commitment signed, by number (what a breach could broadcast).
    pub counterparty_history: Vec<TaprootCommitmentInfo>,
    /// The nonce point (`R`, x-only) and message of every signature the quorum returned
    /// through this driver and it verified, for the nonce-reuse invariant; drained by the
    /// caller.
    pub seen_sigs: Vec<crate::report::SigRecord>,
    /// The last `update` failed in its first step (signing the counterparty's commitment)
    /// and changed nothing here: calling it again repeats that step.
    pub first_step_failed: bool,
    secp: Secp256k1<bitcoin::secp256k1::All>,
}

fn musig_ctx(ours: &[u8; 33]) -> musig2::KeyAggContext {
    let theirs = test_key(0x50);
    let mut keys = [*ours, theirs];
    keys.sort();
    let points: Vec<secp::Point> = keys.iter().filter_map(|k| secp::Point::from_slice(k).ok()).collect();
    // Two valid keys (ours from the quorum, checked when the view was built).
    musig2::KeyAggContext::new(points)
        .ok()
        .and_then(|c| c.with_unspendable_taproot_tweak().ok())
        .unwrap_or_else(|| unreachable!("two valid keys aggregate"))
}

fn scalar(b: &[u8; 32]) -> secp::Scalar {
    secp::Scalar::from_slice(b).unwrap_or_else(|_| unreachable!("test secrets are valid scalars"))
}

impl TaprootChannelDriver {
    /// Sets up the channel on every cosigner and exchanges the first commitments: we hold
    /// `ours_msat` of `value_sat` (funded by us when `is_outbound`).
    /// `setup`'s funding outpoint is replaced by a real funding transaction's, mined on
    /// `chain`; the cosigners get its SPV proof once it is deep enough.
    pub async fn open(
        client: &NodeClient,
        chain: &SharedChain,
        channel: ChannelKeysId,
        mut setup: TaprootChannelSetup,
        ours_msat: u64,
    ) -> Result<Self, DriverError> {
        let holder = client.taproot_channel_keys(channel).await?;
        let out = tc::funding_txout(&TaprootChannelState::public_view(setup.clone(), holder.clone()))
            .map_err(|e| DriverError::Check(e.to_string()))?;
        let funding = funding_tx(channel, &out.script_pubkey, setup.channel_value_sat, setup.funding_vout);
        setup.funding_txid = funding.compute_txid().to_byte_array();
        client.taproot_apply(channel, TaprootRequest::Setup(setup.clone())).await?;
        let value = setup.channel_value_sat * 1000;
        let view = TaprootChannelState::public_view(setup, holder);
        let mut d = Self {
            channel,
            view,
            book: HtlcBook::new(ours_msat, value - ours_msat),
            seed: sha256::Hash::hash(&channel).to_byte_array(),
            next_counterparty: 0,
            next_holder: 0,
            holder: None,
            unrevoked: None,
            validate_ms: Vec::new(),
            revoke_ms: Vec::new(),
            counterparty_latest: None,
            counterparty_history: vec![],
            seen_sigs: vec![],
            first_step_failed: false,
            secp: Secp256k1::new(),
        };
        d.update(client).await?;
        let proof = lock_chain(chain).confirm(&[funding]).remove(0);
        client.taproot_apply(channel, TaprootRequest::FundingConfirmed(proof)).await?;
        Ok(d)
    }

    pub fn their_secret(&self, n: u64) -> [u8; 32] {
        build_commitment_secret(&self.seed, INITIAL - n)
    }

    fn their_point(&self, n: u64) -> Vec<u8> {
        let sk = SecretKey::from_slice(&self.their_secret(n)).unwrap_or_else(|_| unreachable!("shachain secret"));
        PublicKey::from_secret_key(&self.secp, &sk).serialize().to_vec()
    }

    /// The counterparty's next commitment (`offered` from its point of view).
    pub fn counterparty_info(&self, n: u64) -> TaprootCommitmentInfo {
        TaprootCommitmentInfo {
            commitment_number: n,
            per_commitment_point: self.their_point(n),
            to_broadcaster_msat: self.book.theirs_msat,
            to_countersignatory_msat: self.book.ours_msat,
            feerate_per_kw: 1_000,
            htlcs: self.book.htlcs.iter().map(|f| HtlcInfo { offered: !f.htlc.offered, ..f.htlc.clone() }).collect(),
        }
    }

    fn holder_info(&self, n: u64, point: Vec<u8>) -> TaprootCommitmentInfo {
        TaprootCommitmentInfo {
            commitment_number: n,
            per_commitment_point: point,
            to_broadcaster_msat: self.book.ours_msat,
            to_countersignatory_msat: self.book.theirs_msat,
            feerate_per_kw: 1_000,
            htlcs: self.book.htlcs.iter().map(|f| f.htlc.clone()).collect(),
        }
    }

    /// The funding keys' aggregation context and the counterparty's fresh nonce for `msg`.
    fn counterparty_session(
        &self,
        msg: [u8; 32],
    ) -> Result<([u8; 33], musig2::KeyAggContext, musig2::SecNonce), DriverError> {
        let ours: [u8; 33] =
            self.view.holder.funding.as_slice().try_into().map_err(|_| DriverError::Check("key".into()))?;
        let ctx = musig_ctx(&ours);
        let sec = musig2::SecNonce::generate(
            rand::random::<[u8; 32]>(),
            scalar(&FUNDING_SECRET),
            ctx.aggregated_pubkey::<secp::Point>(),
            msg,
            [],
        );
        Ok((ours, ctx, sec))
    }

    /// The quorum's partial signature on a funding spend (derived by the cosigners from
    /// `req`), checked and completed by the counterparty; with the quorum's nonce.
    pub async fn complete_funding_spend(
        &self,
        client: &NodeClient,
        req: TaprootRequest,
        tx: &Transaction,
        reserved: Vec<LeafNonce>,
    ) -> Result<([u8; 64], [u8; 66]), DriverError> {
        let msg = tc::funding_sighash(&self.view, tx).map_err(|e| DriverError::Check(e.to_string()))?;
        let (ours, ctx, sec) = self.counterparty_session(msg)?;
        let their_nonce: [u8; 66] = sec.public_nonce().to_bytes();
        let mut handed: Vec<Vec<u8>> = reserved.iter().map(|l| l.pubnonce.clone()).collect();
        let (quorum_nonce, quorum_psig, report) =
            client.taproot_sign_reserved(self.channel, req, their_nonce, reserved).await?;
        // The report's nonce audit lists the leaf nonces this session consumed: exactly the
        // reserved ones, when we handed them in (else the coordinator's pooled ones).
        let mut listed: Vec<Vec<u8>> = report.nonces.into_iter().map(|n| n.pubnonce).collect();
        handed.sort();
        listed.sort();
        let audited = if handed.is_empty() { !listed.is_empty() } else { listed == handed };
        check(audited, "the signing report lists other leaf nonces than the session's")?;
        let sig = self.aggregate(&ctx, &ours, quorum_nonce, quorum_psig, their_nonce, msg, |agg| {
            musig2::sign_partial(&ctx, scalar(&FUNDING_SECRET), sec, agg, msg).ok()
        })?;
        self.verify_funding_sig(&sig, msg)?;
        Ok((sig, quorum_nonce))
    }

    /// Checks the quorum's partial signature as plain BIP-327 and aggregates it with the
    /// counterparty's (made by `theirs` against the aggregate nonce).
    #[allow(clippy::too_many_arguments)]
    fn aggregate(
        &self,
        ctx: &musig2::KeyAggContext,
        ours: &[u8; 33],
        quorum_nonce: [u8; 66],
        quorum_psig: [u8; 32],
        their_nonce: [u8; 66],
        msg: [u8; 32],
        theirs: impl FnOnce(&musig2::AggNonce) -> Option<secp::MaybeScalar>,
    ) -> Result<[u8; 64], DriverError> {
        let bad = |w: &str| DriverError::Check(w.to_string());
        let qn = musig2::PubNonce::from_bytes(&quorum_nonce).map_err(|_| bad("quorum nonce"))?;
        let tn = musig2::PubNonce::from_bytes(&their_nonce).map_err(|_| bad("counterparty nonce"))?;
        let agg = musig2::AggNonce::sum([qn.clone(), tn]);
        let qp = secp::MaybeScalar::from_slice(&quorum_psig).map_err(|_| bad("quorum partial signature"))?;
        let point = secp::Point::from_slice(ours).map_err(|_| bad("funding key"))?;
        musig2::verify_partial(ctx, qp, &agg, point, &qn, msg)
            .map_err(|_| bad("the quorum's partial signature is not valid BIP-327"))?;
        let tp = theirs(&agg).ok_or_else(|| bad("counterparty signature"))?;
        let sig: musig2::CompactSignature =
            musig2::aggregate_partial_signatures(ctx, &agg, [qp, tp], msg).map_err(|_| bad("aggregation"))?;
        Ok(sig.serialize())
    }

    fn verify_funding_sig(&self, sig: &[u8; 64], msg: [u8; 32]) -> Result<(), DriverError> {
        let funding = tc::funding_txout(&self.view).map_err(|e| DriverError::Check(e.to_string()))?;
        let key = XOnlyPublicKey::from_slice(&funding.script_pubkey.as_bytes()[2..])
            .map_err(|_| DriverError::Check("funding output key".into()))?;
        let sig = schnorr::Signature::from_slice(sig).map_err(|_| DriverError::Check("signature".into()))?;
        self.secp
            .verify_schnorr(&sig, &Message::from_digest(msg), &key)
            .map_err(|_| DriverError::Check("signature does not verify under the funding output key".into()))
    }

    fn verify_bip340(&self, sig: &[u8; 64], msg: [u8; 32], key: &[u8; 33], what: &str) -> Result<(), DriverError> {
        let key = PublicKey::from_slice(key).map_err(|_| DriverError::Check(format!("{what}: key")))?;
        let sig = schnorr::Signature::from_slice(sig).map_err(|_| DriverError::Check(format!("{what}: signature")))?;
        self.secp
            .verify_schnorr(&sig, &Message::from_digest(msg), &XOnlyPublicKey::from(key))
            .map_err(|_| DriverError::Check(format!("{what} does not verify")))
    }

    /// One round both ways (see the module doc). Returns the counterparty's commitment as
    /// the quorum signed it, with the final signature.
    pub async fn update(&mut self, client: &NodeClient) -> Result<(TaprootCommitmentInfo, [u8; 64]), DriverError> {
        // A revocation that failed before is completed first (the cosigners expect it next).
        self.revoke_previous(client).await?;
        let out = self.update_unrevoked(client).await?;
        self.revoke_previous(client).await?;
        Ok(out)
    }

    /// Steps 1–3 of [`Self::update`]: our next holder commitment is validated but our
    /// previous one is not revoked yet ([`Self::revoke_previous`] does it).
    pub async fn update_unrevoked(
        &mut self,
        client: &NodeClient,
    ) -> Result<(TaprootCommitmentInfo, [u8; 64]), DriverError> {
        // 1. Their next commitment: our partial signature and HTLC signatures.
        let n = self.next_counterparty;
        let info = self.counterparty_info(n);
        let built =
            tc::commitment(&self.view, &info, Side::Counterparty).map_err(|e| DriverError::Check(e.to_string()))?;
        // Preimages of our fulfilled HTLCs justify our funds falling on both commitments.
        let preimages = self.book.fulfilled_ours.clone();
        let req = TaprootRequest::SignCounterpartyCommitment {
            commitment: info.clone(),
            outbound_preimages: preimages.clone(),
        };
        // Until both are back nothing of the driver has changed: a failed first step can
        // be retried by calling `update` again (`first_step_failed`).
        self.first_step_failed = true;
        let (sig, _) = self.complete_funding_spend(client, req, &built.tx, vec![]).await?;
        let (htlc_sigs, _, _) =
            client.taproot_frost(self.channel, TaprootFrostItem::CounterpartyHtlcs { commitment_number: n }).await?;
        self.first_step_failed = false;
        self.book.fulfilled_ours.clear();
        let second = built.second_level(&info).map_err(|e| DriverError::Check(e.to_string()))?;
        check(
            htlc_sigs.len() == second.len(),
            format!("{} HTLC signatures for {} HTLCs", htlc_sigs.len(), second.len()),
        )?;
        for ((_, tx), s) in second.iter().zip(&htlc_sigs) {
            let m =
                tx.sighash(TapSighashType::SinglePlusAnyoneCanPay).map_err(|e| DriverError::Check(e.to_string()))?;
            self.verify_bip340(s, m, &built.keys.remote_htlc, "our HTLC signature")?;
            self.seen_sigs.push(crate::report::SigRecord::bip340(&built.keys.remote_htlc[1..], &m, s));
        }
        let msg = tc::funding_sighash(&self.view, &built.tx).map_err(|e| DriverError::Check(e.to_string()))?;
        self.seen_sigs.push(crate::report::SigRecord::bip340(&self.funding_output_key()?, &msg, &sig));
        // 2. It revokes the one before.
        if n > 0 {
            let revoke =
                TaprootRequest::CounterpartyRevocation { commitment_number: n - 1, secret: self.their_secret(n - 1) };
            client.taproot_apply(self.channel, revoke).await?;
        }
        self.counterparty_latest = Some(info.clone());
        self.counterparty_history.push(info.clone());
        self.next_counterparty += 1;

        // 3. Our next commitment, signed by the counterparty in the session of the quorum's
        // verification nonce; the cosigners validate it.
        let m = self.next_holder;
        let point = client.per_commitment_point(self.channel, INITIAL - m).await?;
        let (quorum_nonce, verification) = client.taproot_verification_nonce(self.channel, m).await?;
        let holder = self.holder_info(m, point);
        let signed = self.counterparty_signs_holder(&holder, verification, quorum_nonce)?;
        let mut validate = self.validate_request(&signed);
        if let TaprootRequest::ValidateHolderCommitment { outbound_preimages, .. } = &mut validate {
            *outbound_preimages = preimages;
        }
        let started = std::time::Instant::now();
        client.taproot_apply(self.channel, validate).await?;
        self.validate_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        self.unrevoked = self.holder.replace(signed);
        self.next_holder += 1;
        Ok((info, sig))
    }

    /// Step 4 of [`Self::update`]: we revoke our previous holder commitment; the
    /// counterparty checks the secret against its per-commitment point.
    pub async fn revoke_previous(&mut self, client: &NodeClient) -> Result<(), DriverError> {
        let Some(prev) = self.unrevoked.clone() else { return Ok(()) };
        let started = std::time::Instant::now();
        let secret = client.taproot_revoke_holder(self.channel, prev.info.commitment_number).await?;
        self.revoke_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        let derived = SecretKey::from_slice(&secret)
            .map(|s| PublicKey::from_secret_key(&self.secp, &s).serialize().to_vec())
            .map_err(|_| DriverError::Check("revocation secret is not a scalar".into()))?;
        check(
            derived == prev.info.per_commitment_point,
            "our revocation secret does not match the per-commitment point",
        )?;
        self.unrevoked = None;
        Ok(())
    }

    /// Asks the quorum for its partial signature on a counterparty commitment that moves
    /// `drain_msat` of our balance to the counterparty for nothing (a compromised node's
    /// drain attempt). Returns the final signature if the quorum signed it.
    /// The funding output's x-only key (what the quorum and the counterparty's MuSig2
    /// aggregate signature verifies under).
    pub fn funding_output_key(&self) -> Result<[u8; 32], DriverError> {
        let out = tc::funding_txout(&self.view).map_err(|e| DriverError::Check(e.to_string()))?;
        out.script_pubkey
            .as_bytes()
            .get(2..34)
            .and_then(|k| k.try_into().ok())
            .ok_or_else(|| DriverError::Check("funding output is not P2TR".into()))
    }

    pub async fn attempt_drain(
        &self,
        client: &NodeClient,
        drain_msat: u64,
    ) -> Result<([u8; 64], [u8; 32]), DriverError> {
        let mut info = self.counterparty_info(self.next_counterparty);
        let drain = drain_msat.min(info.to_countersignatory_msat);
        info.to_countersignatory_msat -= drain;
        info.to_broadcaster_msat += drain;
        let built =
            tc::commitment(&self.view, &info, Side::Counterparty).map_err(|e| DriverError::Check(e.to_string()))?;
        let req = TaprootRequest::SignCounterpartyCommitment { commitment: info, outbound_preimages: vec![] };
        let (sig, _) = self.complete_funding_spend(client, req, &built.tx, vec![]).await?;
        let msg = tc::funding_sighash(&self.view, &built.tx).map_err(|e| DriverError::Check(e.to_string()))?;
        Ok((sig, msg))
    }

    /// The counterparty's signatures on our holder commitment `info`.
    pub fn counterparty_signs_holder(
        &self,
        info: &TaprootCommitmentInfo,
        verification: Vec<LeafNonce>,
        quorum_nonce: [u8; 66],
    ) -> Result<SignedHolder, DriverError> {
        let bad = |e: tc::TaprootChannelError| DriverError::Check(e.to_string());
        let built = tc::commitment(&self.view, info, Side::Holder).map_err(bad)?;
        let msg = tc::funding_sighash(&self.view, &built.tx).map_err(bad)?;
        let (_, ctx, sec) = self.counterparty_session(msg)?;
        let their_nonce = sec.public_nonce().to_bytes();
        let qn = musig2::PubNonce::from_bytes(&quorum_nonce).map_err(|_| DriverError::Check("quorum nonce".into()))?;
        let agg = musig2::AggNonce::sum([qn, sec.public_nonce()]);
        let psig: secp::MaybeScalar = musig2::sign_partial(&ctx, scalar(&FUNDING_SECRET), sec, &agg, msg)
            .map_err(|_| DriverError::Check("counterparty partial signature".into()))?;
        let pcp: [u8; 33] =
            info.per_commitment_point.as_slice().try_into().map_err(|_| DriverError::Check("point".into()))?;
        let htlc_sk = SecretKey::from_slice(
            &derive_privkey(&HTLC_SECRET, &pcp).map_err(|_| DriverError::Check("HTLC key".into()))?,
        )
        .map_err(|_| DriverError::Check("HTLC key".into()))?;
        let keypair = Keypair::from_secret_key(&self.secp, &htlc_sk);
        let mut htlc_sigs = Vec::new();
        for (_, tx) in built.second_level(info).map_err(bad)? {
            let m =
                tx.sighash(TapSighashType::SinglePlusAnyoneCanPay).map_err(|e| DriverError::Check(e.to_string()))?;
            let mut s = self.secp.sign_schnorr_no_aux_rand(&Message::from_digest(m), &keypair).serialize().to_vec();
            s.push(TapSighashType::SinglePlusAnyoneCanPay as u8);
            htlc_sigs.push(s);
        }
        Ok(SignedHolder {
            info: info.clone(),
            verification,
            quorum_nonce,
            their_nonce,
            their_psig: psig.serialize(),
            htlc_sigs,
        })
    }

    /// The request that has the cosigners validate `signed` (no preimages shown).
    pub fn validate_request(&self, signed: &SignedHolder) -> TaprootRequest {
        TaprootRequest::ValidateHolderCommitment {
            commitment: signed.info.clone(),
            verification: signed.verification.clone(),
            counterparty_nonce: signed.their_nonce.to_vec(),
            counterparty_psig: signed.their_psig.to_vec(),
            counterparty_htlc_sigs: signed.htlc_sigs.clone(),
            outbound_preimages: vec![],
        }
    }

    /// The cooperative close we initiate, signed with the nonce reserved for `shutdown`.
    pub async fn close(
        &mut self,
        client: &NodeClient,
        holder_script: &bitcoin::ScriptBuf,
        counterparty_script: &bitcoin::ScriptBuf,
        fee_sat: u64,
    ) -> Result<SignedSpend, DriverError> {
        let (to_holder_sat, to_counterparty_sat) = (self.book.ours_msat / 1000 - fee_sat, self.book.theirs_msat / 1000);
        let req = TaprootRequest::SignClosing {
            to_holder_sat,
            to_counterparty_sat,
            holder_script: holder_script.to_bytes(),
            counterparty_script: counterparty_script.to_bytes(),
            locktime: 0,
        };
        let mut tx = tc::closing_tx(
            &self.view,
            to_holder_sat,
            to_counterparty_sat,
            holder_script.as_bytes(),
            counterparty_script.as_bytes(),
            0,
        );
        let (shutdown_nonce, reserved) = client.taproot_nonce(self.channel).await?;
        let (sig, used) = self.complete_funding_spend(client, req, &tx, reserved).await?;
        check(used == shutdown_nonce, "the close was not signed with the nonce sent in shutdown")?;
        tx.input[0].witness = key_spend_witness(&sig)?;
        let funding = tc::funding_txout(&self.view).map_err(|e| DriverError::Check(e.to_string()))?;
        Ok(SignedSpend { tx, spent: vec![funding] })
    }

    /// Force close: the quorum completes our latest holder commitment with its stored
    /// verification nonce; with the counterparty's stored partial signature it verifies.
    pub async fn force_close(&mut self, client: &NodeClient) -> Result<SignedSpend, DriverError> {
        let h = self.holder.clone().ok_or_else(|| DriverError::Check("no holder commitment".into()))?;
        let req = TaprootRequest::SignHolderCommitment { commitment_number: h.info.commitment_number };
        let (quorum_nonce, quorum_psig, _) =
            client.taproot_sign_reserved(self.channel, req, h.their_nonce, h.verification.clone()).await?;
        check(quorum_nonce == h.quorum_nonce, "force close signed with another nonce than the verification nonce")?;
        let built = tc::commitment(&self.view, &h.info, Side::Holder).map_err(|e| DriverError::Check(e.to_string()))?;
        let msg = tc::funding_sighash(&self.view, &built.tx).map_err(|e| DriverError::Check(e.to_string()))?;
        let ours: [u8; 33] =
            self.view.holder.funding.as_slice().try_into().map_err(|_| DriverError::Check("key".into()))?;
        let ctx = musig_ctx(&ours);
        let theirs = secp::MaybeScalar::from_slice(&h.their_psig).ok();
        let sig = self.aggregate(&ctx, &ours, quorum_nonce, quorum_psig, h.their_nonce, msg, |_| theirs)?;
        self.verify_funding_sig(&sig, msg)?;
        let mut tx = built.tx;
        tx.input[0].witness = key_spend_witness(&sig)?;
        let funding = tc::funding_txout(&self.view).map_err(|e| DriverError::Check(e.to_string()))?;
        Ok(SignedSpend { tx, spent: vec![funding] })
    }

    /// Our second-level transaction of HTLC output `index` of the force-closed commitment,
    /// with the counterparty's stored signature and the quorum's FROST signature.
    pub async fn holder_htlc_tx(
        &self,
        client: &NodeClient,
        index: usize,
        preimage: Option<[u8; 32]>,
    ) -> Result<SignedSpend, DriverError> {
        let h = self.holder.as_ref().ok_or_else(|| DriverError::Check("no holder commitment".into()))?;
        let built = tc::commitment(&self.view, &h.info, Side::Holder).map_err(|e| DriverError::Check(e.to_string()))?;
        let second = built.second_level(&h.info).map_err(|e| DriverError::Check(e.to_string()))?;
        let (_, tx) = second.get(index).ok_or_else(|| DriverError::Check(format!("no HTLC output {index}")))?;
        let item = TaprootFrostItem::HolderHtlc { htlc_index: index as u32, preimage };
        let (sigs, _, _) = client.taproot_frost(self.channel, item).await?;
        let m = tx.sighash(TapSighashType::SinglePlusAnyoneCanPay).map_err(|e| DriverError::Check(e.to_string()))?;
        let sig = sigs.first().ok_or_else(|| DriverError::Check("no signature".into()))?;
        self.verify_bip340(sig, m, &built.keys.local_htlc, "our second-level signature")?;
        let mut local = sig.to_vec();
        local.push(TapSighashType::SinglePlusAnyoneCanPay as u8);
        let witness = tx
            .witness(&h.htlc_sigs[index], &local, preimage.as_ref())
            .map_err(|e| DriverError::Check(e.to_string()))?;
        let mut signed = tx.tx.clone();
        signed.input[0].witness = witness;
        Ok(SignedSpend { tx: signed, spent: vec![tx.spent.clone()] })
    }

    /// A justice transaction's input `input` (prevouts `spent`) taking `output` of the
    /// counterparty's revoked commitment `n`, signed by the quorum.
    pub async fn justice(
        &self,
        client: &NodeClient,
        (mut tx, input, spent): (Transaction, usize, Vec<bitcoin::TxOut>),
        n: u64,
        output: RevokedOutput,
        witness: impl FnOnce(&[u8; 64]) -> Witness,
    ) -> Result<SignedSpend, DriverError> {
        let prevouts: Vec<SpentOutput> = spent
            .iter()
            .map(|o| SpentOutput { value_sat: o.value.to_sat(), script_pubkey: o.script_pubkey.to_bytes() })
            .collect();
        let tx_bytes = bitcoin::consensus::serialize(&tx);
        let item =
            TaprootFrostItem::Justice { tx: tx_bytes, input: input as u32, prevouts, commitment_number: n, output };
        let (sigs, _, _) = client.taproot_frost(self.channel, item).await?;
        let sig = sigs.first().ok_or_else(|| DriverError::Check("no signature".into()))?;
        tx.input[input].witness = witness(sig);
        Ok(SignedSpend { tx, spent })
    }

    /// A sweep of input `input` of `tx` (prevouts `spent`; `preimage` for an HTLC claim),
    /// signed by the quorum; the witness is built by `witness` from the 64-byte signature.
    pub async fn sweep(
        &self,
        client: &NodeClient,
        (mut tx, input, spent): (Transaction, usize, Vec<bitcoin::TxOut>),
        preimage: Option<[u8; 32]>,
        witness: impl FnOnce(&[u8; 64]) -> Witness,
    ) -> Result<SignedSpend, DriverError> {
        let prevouts: Vec<SpentOutput> = spent
            .iter()
            .map(|o| SpentOutput { value_sat: o.value.to_sat(), script_pubkey: o.script_pubkey.to_bytes() })
            .collect();
        let item =
            TaprootFrostItem::Sweep { tx: bitcoin::consensus::serialize(&tx), input: input as u32, prevouts, preimage };
        let (sigs, _, _) = client.taproot_frost(self.channel, item).await?;
        let sig = sigs.first().ok_or_else(|| DriverError::Check("no signature".into()))?;
        tx.input[input].witness = witness(sig);
        Ok(SignedSpend { tx, spent })
    }
}

fn key_spend_witness(sig: &[u8; 64]) -> Result<Witness, DriverError> {
    let signature = schnorr::Signature::from_slice(sig).map_err(|_| DriverError::Check("signature".into()))?;
    Ok(Witness::p2tr_key_spend(&bitcoin::taproot::Signature { signature, sighash_type: TapSighashType::Default }))
}
