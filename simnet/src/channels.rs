//! Runs the Lightning events of a scenario against the quorum: each channel is driven by
//! its legacy or taproot driver (both sides of the channel, real requests through the
//! node API), payments move HTLCs through full update rounds, closes and force closes are
//! signed and run through Bitcoin Core's interpreter, drain attempts and coordinator
//! replays must be refused. Every event yields an [`EventResult`] with what it observed:
//! signatures (nonce points), refusals, transactions checked, and funds lost — our value
//! on anything the quorum signed that is below what the workload's own ledger says we own.
//!
//! Must never: move a channel's ledger except by a payment that completed, or count a
//! signature it did not verify.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bitcoin::hashes::{sha256, Hash};
use bitcoin::{ScriptBuf, Transaction, TxOut};
use tokio::sync::{Mutex, OwnedMutexGuard};

use qls_node::client::{ClientError, NodeClient};
use qls_protocol::{ApprovalSubject, ChannelKeysId, ChannelRequest};

use crate::harness::approve_payment_request;
use crate::htlc_book::HtlcBook;
use crate::legacy_driver::{LegacyChannelDriver, SeenSig};
use crate::lightning::{forward_fee_msat, ChannelPlan, LnEvent, CLTV_DELTA, CLTV_IN};
use crate::malicious::MaliciousCoordinator;
use crate::report::SigRecord;
use crate::taproot_driver::{DriverError, SignedSpend, TaprootChannelDriver};

/// Fee of a cooperative close, paid by the funder (sat).
pub const CLOSE_FEE_SAT: u64 = 500;

pub enum Driver {
    Legacy(Box<LegacyChannelDriver>),
    Taproot(Box<TaprootChannelDriver>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotState {
    Planned,
    Open,
    Closed,
    ForceClosed,
    /// A request of an update failed for good; the channel takes no more events.
    Broken(String),
}

pub struct Slot {
    pub plan: ChannelPlan,
    pub driver: Option<Driver>,
    /// What the workload says the quorum owns in this channel (msat): the opening balance
    /// plus payments received and forwarded in, less payments sent and forwarded out.
    pub ledger_msat: u64,
    pub state: SlotState,
}

pub type SlotRef = Arc<Mutex<Slot>>;

/// How an event ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventOutcome {
    Done,
    Refused(BTreeSet<String>),
    Failed(String),
    Skipped(String),
}

#[derive(Debug, Clone)]
pub struct EventResult {
    pub kind: &'static str,
    pub outcome: EventOutcome,
    /// A drain attempt or replay: policy must refuse it.
    pub must_refuse: bool,
    /// Something policy must refuse got a signature.
    pub violation_signed: bool,
    /// `(R, message)` of every signature returned and verified.
    pub sigs: Vec<SigRecord>,
    pub funds_lost_msat: u64,
    pub txs_checked: usize,
    pub tx_failures: Vec<String>,
    pub latency_ms: f64,
}

impl EventResult {
    fn new(kind: &'static str) -> Self {
        Self {
            kind,
            outcome: EventOutcome::Done,
            must_refuse: false,
            violation_signed: false,
            sigs: vec![],
            funds_lost_msat: 0,
            txs_checked: 0,
            tx_failures: vec![],
            latency_ms: 0.0,
        }
    }
}

pub struct LnContext {
    pub client: Arc<NodeClient>,
    /// The chain channels are funded on (SPV proofs for the cosigners).
    pub chain: crate::sim_chain::SharedChain,
    pub wallet: ScriptBuf,
    pub malicious: Option<MaliciousCoordinator>,
    /// How long a failing legacy update is retried (a cosigner down, a lost link).
    pub retry_for: Duration,
}

/// The channel id of plan entry `i`.
pub fn channel_id(i: usize) -> ChannelKeysId {
    sha256::Hash::hash(format!("qls-simnet channel {i}").as_bytes()).to_byte_array()
}

/// Runs input `input` of `tx` (its inputs spending `spent`, in order) through Bitcoin
/// Core's script interpreter.
pub fn consensus_check_input(tx: &Transaction, spent: &[TxOut], input: usize) -> Result<(), String> {
    let bytes = bitcoin::consensus::serialize(tx);
    let utxos: Vec<bitcoinconsensus::Utxo> = spent
        .iter()
        .map(|o| bitcoinconsensus::Utxo {
            script_pubkey: o.script_pubkey.as_bytes().as_ptr(),
            script_pubkey_len: o.script_pubkey.len() as u32,
            value: o.value.to_sat() as i64,
        })
        .collect();
    let o = spent.get(input).ok_or_else(|| format!("input {input}: no spent output given"))?;
    bitcoinconsensus::verify(o.script_pubkey.as_bytes(), o.value.to_sat(), &bytes, Some(&utxos), input)
        .map_err(|e| format!("input {input}: {e:?}"))
}

/// Runs every input of `tx` through Bitcoin Core's script interpreter.
pub fn consensus_check(tx: &Transaction, spent: &[TxOut]) -> Result<(), String> {
    (0..spent.len()).try_for_each(|i| consensus_check_input(tx, spent, i))
}

fn refusal_tags(e: &ClientError) -> Option<BTreeSet<String>> {
    match e {
        ClientError::Refused(r) => Some(r.iter().flat_map(|r| r.violations.iter().map(|v| v.tag.clone())).collect()),
        _ => None,
    }
}

fn driver_refusal(e: &DriverError) -> Option<BTreeSet<String>> {
    match e {
        DriverError::Client(c) => refusal_tags(c),
        DriverError::Check(_) => None,
    }
}

impl LnContext {
    /// One update round of `slot`'s channel; legacy updates are retried until `retry_for`
    /// passes. Records nonce points and checks our signed value against the ledger.
    async fn update(&self, slot: &mut Slot, r: &mut EventResult) -> Result<(), EventOutcome> {
        let ledger = slot.ledger_msat;
        let started = Instant::now();
        let outcome = loop {
            // Signatures verified before a later step failed count too.
            let res = match slot.driver.as_mut() {
                Some(Driver::Legacy(d)) => {
                    let res = d.update(&self.client).await.map(|()| {
                        // Fees we advance as funder stay ours; rounding to sat loses < 1 sat.
                        r.funds_lost_msat += ledger.saturating_sub(d.last_signed_value_msat + 999);
                    });
                    r.sigs.extend(d.seen.drain(..).map(|s: SeenSig| s.record()));
                    res
                }
                Some(Driver::Taproot(d)) => {
                    let res = d.update(&self.client).await.map(|(info, _)| {
                        let offered: u64 = info.htlcs.iter().filter(|h| !h.offered).map(|h| h.amount_msat).sum();
                        r.funds_lost_msat += ledger.saturating_sub(info.to_countersignatory_msat + offered);
                    });
                    r.sigs.append(&mut d.seen_sigs);
                    res
                }
                None => return Err(EventOutcome::Skipped("channel not open".into())),
            };
            match res {
                Ok(()) => break Ok(()),
                Err(e) => {
                    if let Some(tags) = driver_refusal(&e) {
                        break Err(EventOutcome::Refused(tags));
                    }
                    // Legacy updates resume at the failed step; taproot ones only when
                    // the first step failed (nothing changed yet).
                    let resumable = match &slot.driver {
                        Some(Driver::Legacy(_)) => true,
                        Some(Driver::Taproot(d)) => d.first_step_failed,
                        None => false,
                    };
                    if resumable && matches!(e, DriverError::Client(_)) && started.elapsed() < self.retry_for {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                    break Err(EventOutcome::Failed(e.to_string()));
                }
            }
        };
        outcome.inspect_err(|o| {
            slot.state = SlotState::Broken(format!("{o:?}"));
        })
    }

    async fn open(&self, i: usize, slot: &mut Slot, r: &mut EventResult) -> Result<(), EventOutcome> {
        let p = slot.plan.clone();
        let id = channel_id(i);
        let value_msat = p.capacity_sat * 1000;
        let fail = |e: DriverError| match driver_refusal(&e) {
            Some(tags) => EventOutcome::Refused(tags),
            None => EventOutcome::Failed(e.to_string()),
        };
        let driver = if p.taproot {
            let mut setup = crate::taproot_counterparty::setup(p.capacity_sat, sha256::Hash::hash(&id).to_byte_array());
            setup.is_outbound = p.outbound;
            let ours = if p.outbound { value_msat } else { 0 };
            let mut d = TaprootChannelDriver::open(&self.client, &self.chain, id, setup, ours).await.map_err(fail)?;
            r.sigs.append(&mut d.seen_sigs);
            Driver::Taproot(Box::new(d))
        } else {
            let (d, sigs) = LegacyChannelDriver::open(&self.client, &self.chain, id, p.capacity_sat, p.outbound)
                .await
                .map_err(fail)?;
            r.sigs.extend(sigs.iter().map(SeenSig::record));
            Driver::Legacy(Box::new(d))
        };
        slot.driver = Some(driver);
        slot.ledger_msat = if p.outbound { value_msat } else { 0 };
        slot.state = SlotState::Open;
        Ok(())
    }

    /// Runs one event with its channels locked (in the order of [`LnEvent::channels`]).
    pub async fn run(&self, ev: LnEvent, mut slots: Vec<(usize, OwnedMutexGuard<Slot>)>) -> EventResult {
        let mut r = EventResult::new(ev.name());
        let started = Instant::now();
        let res = self.run_inner(&ev, &mut slots, &mut r).await;
        r.latency_ms = started.elapsed().as_secs_f64() * 1e3;
        if let Err(o) = res {
            r.outcome = o;
        }
        r
    }

    async fn run_inner(
        &self,
        ev: &LnEvent,
        slots: &mut [(usize, OwnedMutexGuard<Slot>)],
        r: &mut EventResult,
    ) -> Result<(), EventOutcome> {
        let get = |slots: &mut [(usize, OwnedMutexGuard<Slot>)], ch: usize| -> usize {
            slots.iter().position(|(i, _)| *i == ch).unwrap_or_else(|| unreachable!("event channels are locked"))
        };
        for (_, s) in slots.iter() {
            let needs_open = !matches!(ev, LnEvent::Open { .. });
            if needs_open && s.state != SlotState::Open {
                return Err(EventOutcome::Skipped(format!("channel {:?}", s.state)));
            }
        }
        match *ev {
            LnEvent::Open { channel } => {
                let k = get(slots, channel);
                self.open(channel, &mut slots[k].1, r).await
            }
            LnEvent::Send { channel, amount_msat, preimage, fail } => {
                let k = get(slots, channel);
                let hash = sha256::Hash::hash(&preimage).to_byte_array();
                let approve = approve_payment_request(hash, amount_msat);
                self.client.node_key(approve).await.map_err(|e| match refusal_tags(&e) {
                    Some(t) => EventOutcome::Refused(t),
                    None => EventOutcome::Failed(e.to_string()),
                })?;
                let s = &mut slots[k].1;
                add(s, true, amount_msat, preimage, CLTV_IN - CLTV_DELTA)?;
                self.update(s, r).await?;
                settle(s, &hash, fail);
                if !fail {
                    s.ledger_msat -= amount_msat;
                }
                self.update(s, r).await
            }
            LnEvent::Receive { channel, amount_msat, preimage, fail } => {
                let k = get(slots, channel);
                let hash = sha256::Hash::hash(&preimage).to_byte_array();
                let s = &mut slots[k].1;
                add(s, false, amount_msat, preimage, CLTV_IN)?;
                self.update(s, r).await?;
                settle(s, &hash, fail);
                if !fail {
                    s.ledger_msat += amount_msat;
                }
                self.update(s, r).await
            }
            LnEvent::Forward { from, to, amount_msat, preimage, fail } => {
                let (kf, kt) = (get(slots, from), get(slots, to));
                let hash = sha256::Hash::hash(&preimage).to_byte_array();
                let fee = forward_fee_msat(amount_msat);
                add(&mut slots[kf].1, false, amount_msat + fee, preimage, CLTV_IN)?;
                self.update(&mut slots[kf].1, r).await?;
                // From here the incoming HTLC is on `from`: if the rest fails, `from` is
                // broken too (its HTLC would hang until expiry).
                let rest = async {
                    add(&mut slots[kt].1, true, amount_msat, preimage, CLTV_IN - CLTV_DELTA)?;
                    self.update(&mut slots[kt].1, r).await?;
                    settle(&mut slots[kt].1, &hash, fail);
                    if !fail {
                        slots[kt].1.ledger_msat -= amount_msat;
                    }
                    self.update(&mut slots[kt].1, r).await?;
                    settle(&mut slots[kf].1, &hash, fail);
                    if !fail {
                        slots[kf].1.ledger_msat += amount_msat + fee;
                    }
                    self.update(&mut slots[kf].1, r).await
                };
                let res = rest.await;
                if let Err(o) = &res {
                    if slots[kf].1.state == SlotState::Open {
                        slots[kf].1.state = SlotState::Broken(format!("forward's outgoing leg: {o:?}"));
                    }
                }
                res
            }
            LnEvent::Close { channel } => {
                let k = get(slots, channel);
                let s = &mut slots[k].1;
                let (spend, lost) = match s.driver.as_mut() {
                    Some(Driver::Legacy(d)) => {
                        let (spend, sigs) = d.close(&self.client, &self.wallet, CLOSE_FEE_SAT).await.map_err(fail)?;
                        r.sigs.extend(sigs.iter().map(SeenSig::record));
                        let fee = if d.is_outbound() { CLOSE_FEE_SAT } else { 0 };
                        let lost = self.shortfall(&spend, s.ledger_msat, fee);
                        (spend, lost)
                    }
                    Some(Driver::Taproot(d)) => {
                        let cp = ScriptBuf::new_p2wpkh(&bitcoin::WPubkeyHash::hash(&d.channel));
                        let fee = if d.view.setup.is_outbound { CLOSE_FEE_SAT } else { 0 };
                        let spend = close_taproot(d, &self.client, &self.wallet, &cp, fee).await.map_err(fail)?;
                        r.sigs.push(key_spend_sig(&spend));
                        (spend.clone(), self.shortfall(&spend, s.ledger_msat, fee))
                    }
                    None => return Err(EventOutcome::Skipped("not open".into())),
                };
                r.funds_lost_msat += lost;
                self.check_tx(&spend, r);
                s.state = SlotState::Closed;
                Ok(())
            }
            LnEvent::ForceClose { channel } => {
                let k = get(slots, channel);
                let s = &mut slots[k].1;
                let ledger = s.ledger_msat;
                let spend = match s.driver.as_mut() {
                    Some(Driver::Legacy(d)) => {
                        let (spend, sigs) = d.force_close(&self.client).await.map_err(fail)?;
                        r.sigs.extend(sigs.iter().map(SeenSig::record));
                        if let Some(h) = &d.holder_latest {
                            let fees = if d.is_outbound() {
                                crate::legacy_driver::commitment_fee_sat(h.htlcs.len())
                                    + crate::legacy_driver::ANCHORS_SAT
                            } else {
                                0
                            };
                            let offered: u64 = h.htlcs.iter().filter(|x| x.offered).map(|x| x.amount_msat).sum();
                            r.funds_lost_msat +=
                                ledger.saturating_sub((h.to_broadcaster_sat + fees) * 1000 + offered + 999);
                        }
                        spend
                    }
                    Some(Driver::Taproot(d)) => {
                        let spend = d.force_close(&self.client).await.map_err(fail)?;
                        r.sigs.push(key_spend_sig(&spend));
                        if let Some(h) = &d.holder {
                            r.funds_lost_msat += ledger.saturating_sub(h.info.to_broadcaster_msat);
                        }
                        spend
                    }
                    None => return Err(EventOutcome::Skipped("not open".into())),
                };
                self.check_tx(&spend, r);
                s.state = SlotState::ForceClosed;
                Ok(())
            }
            LnEvent::Drain { channel, amount_msat } => {
                r.must_refuse = true;
                let k = get(slots, channel);
                let s = &mut slots[k].1;
                let res = match s.driver.as_ref() {
                    Some(Driver::Legacy(d)) => d.attempt_drain(&self.client, amount_msat).await.map(|sigs| {
                        r.sigs.extend(sigs.iter().map(SeenSig::record));
                    }),
                    Some(Driver::Taproot(d)) => d
                        .attempt_drain(&self.client, amount_msat)
                        .await
                        .map(|(sig, msg)| {
                            r.sigs.push(SigRecord::bip340(&d.funding_output_key().unwrap_or_default(), &msg, &sig));
                        })
                        .or_else(|e| match e {
                            DriverError::Client(c) => Err(c),
                            // A check failed after the quorum answered: it signed something.
                            DriverError::Check(_) => Ok(()),
                        }),
                    None => return Err(EventOutcome::Skipped("not open".into())),
                };
                match res {
                    Ok(()) => {
                        r.violation_signed = true;
                        r.funds_lost_msat += amount_msat;
                        Ok(())
                    }
                    Err(e) => Err(match refusal_tags(&e) {
                        Some(t) => EventOutcome::Refused(t),
                        None => EventOutcome::Failed(e.to_string()),
                    }),
                }
            }
            LnEvent::Replay { channel } => {
                r.must_refuse = true;
                let k = get(slots, channel);
                let s = &mut slots[k].1;
                let Some(m) = &self.malicious else {
                    return Err(EventOutcome::Skipped("no malicious coordinator".into()));
                };
                let id = channel_id(channel);
                // An old counterparty commitment replayed, and our latest commitment's
                // secret asked for before a newer one exists (reordered revocation).
                let subjects: Vec<ApprovalSubject> = match s.driver.as_ref() {
                    Some(Driver::Legacy(d)) => {
                        let mut v = vec![ApprovalSubject::Channel {
                            channel: id,
                            request: ChannelRequest::ReleaseCommitmentSecret { commitment_number: d.next_number() + 1 },
                        }];
                        if d.signed_history.len() >= 2 {
                            v.push(ApprovalSubject::Channel { channel: id, request: d.signed_history[0].clone() });
                        }
                        v
                    }
                    Some(Driver::Taproot(d)) => vec![ApprovalSubject::TaprootSecret {
                        channel: id,
                        commitment_number: d.next_holder.saturating_sub(1),
                    }],
                    None => return Err(EventOutcome::Skipped("not open".into())),
                };
                let mut tags = BTreeSet::new();
                for subject in subjects {
                    let o = m.try_subject(subject).await;
                    // Enough approvals to sign is a policy failure even if no key holder
                    // answered.
                    if o.signed || o.approvals >= m.threshold() {
                        r.violation_signed = true;
                    }
                    if o.refusals == 0 && o.approvals == 0 {
                        return Err(EventOutcome::Failed(format!("{} cosigners unreachable", o.unreachable)));
                    }
                    tags.extend(o.refused_tags);
                }
                if r.violation_signed {
                    Ok(())
                } else {
                    Err(EventOutcome::Refused(tags))
                }
            }
            LnEvent::Unroutable { .. } => Err(EventOutcome::Skipped("no channel with the balance".into())),
        }
    }

    /// What we should have got from a close and did not: ledger less our output less the
    /// fee we pay, in msat (≤ 999 msat of rounding forgiven).
    fn shortfall(&self, spend: &SignedSpend, ledger_msat: u64, fee_sat: u64) -> u64 {
        let ours: u64 =
            spend.tx.output.iter().filter(|o| o.script_pubkey == self.wallet).map(|o| o.value.to_sat()).sum();
        ledger_msat.saturating_sub((ours + fee_sat) * 1000 + 999)
    }

    fn check_tx(&self, spend: &SignedSpend, r: &mut EventResult) {
        r.txs_checked += 1;
        if let Err(e) = consensus_check(&spend.tx, &spend.spent) {
            r.tx_failures.push(format!("{}: {e}", spend.tx.compute_txid()));
        }
    }
}

fn fail(e: DriverError) -> EventOutcome {
    match driver_refusal(&e) {
        Some(tags) => EventOutcome::Refused(tags),
        None => EventOutcome::Failed(e.to_string()),
    }
}

async fn close_taproot(
    d: &mut TaprootChannelDriver,
    client: &NodeClient,
    wallet: &ScriptBuf,
    cp: &ScriptBuf,
    fee_sat: u64,
) -> Result<SignedSpend, DriverError> {
    if fee_sat > 0 {
        d.close(client, wallet, cp, fee_sat).await
    } else {
        // The counterparty funded: it pays the close fee from its side.
        d.book.theirs_msat -= CLOSE_FEE_SAT * 1000;
        let res = d.close(client, wallet, cp, 0).await;
        if res.is_err() {
            d.book.theirs_msat += CLOSE_FEE_SAT * 1000;
        }
        res
    }
}

/// The signature of a single-input key-path spend, with the spent output's key and the
/// BIP-341 sighash, as a signature-log line.
fn key_spend_sig(spend: &SignedSpend) -> SigRecord {
    let sig = spend.tx.input[0].witness.nth(0).and_then(|s| s.get(..64)).unwrap_or_default();
    let key = spend.spent.first().and_then(|o| o.script_pubkey.as_bytes().get(2..34)).unwrap_or_default();
    let msg = bitcoin::sighash::SighashCache::new(&spend.tx)
        .taproot_key_spend_signature_hash(
            0,
            &bitcoin::sighash::Prevouts::All(&spend.spent),
            bitcoin::sighash::TapSighashType::Default,
        )
        .map(|h| h.to_byte_array())
        .unwrap_or_default();
    SigRecord::bip340(key, &msg, sig)
}

/// The channel's balances and HTLCs, whichever the driver.
fn book(s: &mut Slot) -> Option<&mut HtlcBook> {
    match s.driver.as_mut() {
        Some(Driver::Legacy(d)) => Some(&mut d.book),
        Some(Driver::Taproot(d)) => Some(&mut d.book),
        None => None,
    }
}

/// Adds an HTLC (`offered` by us, or by the counterparty) if its payer has the balance.
fn add(s: &mut Slot, offered: bool, amount_msat: u64, preimage: [u8; 32], cltv: u32) -> Result<(), EventOutcome> {
    let b = book(s).ok_or_else(|| EventOutcome::Skipped("channel not open".into()))?;
    let balance = if offered { b.ours_msat } else { b.theirs_msat };
    if balance < amount_msat {
        return Err(EventOutcome::Skipped(format!("{balance} msat cannot pay {amount_msat} msat")));
    }
    if offered {
        b.offer(amount_msat, preimage, cltv);
    } else {
        b.receive(amount_msat, preimage, cltv);
    }
    Ok(())
}

/// Settles the HTLC `hash`: fulfilled, or failed back when `fail`.
fn settle(s: &mut Slot, hash: &[u8; 32], fail: bool) {
    let Some(b) = book(s) else { return };
    if let Some(i) = b.position(hash) {
        if fail {
            b.fail(i);
        } else {
            b.fulfil(i);
        }
    }
}
