//! The attack corpus: drain and confusion attempts a compromised node (and, for a few, a
//! malicious coordinator holding the real coordinator's identity) plays against a running
//! quorum, each with the policy tag an honest cosigner must refuse it with. Run by
//! `simnet/tests/drain_attacks.rs` (default policies, and again with t − 1 cosigners fully
//! permissive) and by any scenario with `[attacks] corpus = true`.
//!
//! Every attempt is a real request over QUIC to real cosigner processes; channels are set
//! up honestly first (real keys, funding proven on the simnet chain) so that each attempt
//! differs from an honest request in exactly the way it names.
//!
//! Must never: count an attempt as refused unless every honest cosigner named its tag and
//! nothing was signed, or reuse channel ids a scenario's workload uses (ids start 0xA7).

use std::collections::BTreeSet;

use bitcoin::hashes::{sha256, Hash};
use bitcoin::{Amount, ScriptBuf, TxOut};
use qls_node::client::{ClientError, NodeClient};
use qls_protocol::{
    ApprovalSubject, ChannelKeysId, ChannelRequest, GossipKind, NodeKeyRequest, NodeRequest, NodeResponse,
    PaymentApproval,
};
use qls_signer_core::channel::parse::{self, Broadcaster};
use qls_signer_core::wallet::wallet_script;
use serde::Serialize;

use crate::counterparty::Counterparty;
use crate::harness::{approve_payment_request, Harness};
use crate::legacy_driver::LegacyChannelDriver;
use crate::malicious::MaliciousCoordinator;
use crate::sim_chain::{funding_tx, lock_chain};
use crate::taproot_driver::DriverError;
use crate::workload::psbt;

/// What one attempt got.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AttackResult {
    /// The attack, kebab-case.
    pub attack: &'static str,
    /// The tag every honest cosigner must name.
    pub tag: &'static str,
    /// Cosigners that refused it naming `tag`.
    pub refused_with_tag: Vec<String>,
    /// Cosigners whose refusal came back (a FROST round stops as soon as enough refused
    /// that no t can sign, so not every cosigner answers every request).
    pub answered: Vec<String>,
    /// Something other than a refusal came back (a signature, a secret, `Done`).
    pub accepted: bool,
    /// The answer, shortened (for the report).
    pub answer: String,
}

impl AttackResult {
    /// Nothing was given; every cosigner in `honest` that answered refused with the tag;
    /// and at least `blocking` of them did (n − t + 1: enough that no t could sign).
    pub fn held(&self, honest: &[String], blocking: usize) -> bool {
        let answered = honest.iter().filter(|c| self.answered.contains(c));
        let with_tag = honest.iter().filter(|c| self.refused_with_tag.contains(c)).count();
        !self.accepted && answered.clone().all(|c| self.refused_with_tag.contains(c)) && with_tag >= blocking
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    #[error("attack {attack}: setting up: {source}")]
    Driver { attack: &'static str, source: DriverError },
    #[error("attack {attack}: setting up: {source}")]
    Client { attack: &'static str, source: ClientError },
    #[error("attack {attack}: {detail}")]
    Setup { attack: &'static str, detail: String },
}

/// Distinct channel ids for the corpus: `[0xA7, k, 0, …]`.
fn id(k: u8) -> ChannelKeysId {
    let mut c = [0; 32];
    c[0] = 0xa7;
    c[1] = k;
    c
}

fn hash_of(preimage: &[u8; 32]) -> [u8; 32] {
    sha256::Hash::hash(preimage).to_byte_array()
}

fn foreign_script() -> ScriptBuf {
    ScriptBuf::new_p2wpkh(&bitcoin::WPubkeyHash::hash(b"attacker"))
}

fn short(s: String) -> String {
    s.chars().take(200).collect()
}

struct Corpus<'a> {
    h: &'a Harness,
    client: NodeClient,
    results: Vec<AttackResult>,
}

impl Corpus<'_> {
    async fn attempt(&mut self, attack: &'static str, tag: &'static str, request: NodeRequest) {
        let result = match self.client.call(&request).await {
            Ok(NodeResponse::Refused { refusals, .. }) => AttackResult {
                attack,
                tag,
                refused_with_tag: refusals
                    .iter()
                    .filter(|r| r.violations.iter().any(|v| v.tag == tag))
                    .map(|r| r.cosigner.clone())
                    .collect(),
                answered: refusals.iter().map(|r| r.cosigner.clone()).collect(),
                accepted: false,
                answer: short(format!("{refusals:?}")),
            },
            Ok(other) => AttackResult {
                attack,
                tag,
                refused_with_tag: vec![],
                answered: vec![],
                accepted: !matches!(other, NodeResponse::Error { .. }),
                answer: short(format!("{other:?}")),
            },
            Err(e) => AttackResult {
                attack,
                tag,
                refused_with_tag: vec![],
                answered: vec![],
                accepted: false,
                answer: short(e.to_string()),
            },
        };
        self.results.push(result);
    }

    async fn channel(&mut self, attack: &'static str, tag: &'static str, channel: ChannelKeysId, r: ChannelRequest) {
        self.attempt(attack, tag, NodeRequest::Channel { channel, request: r }).await
    }

    async fn open(
        &self,
        attack: &'static str,
        k: u8,
        value_sat: u64,
        outbound: bool,
    ) -> Result<LegacyChannelDriver, CorpusError> {
        LegacyChannelDriver::open(&self.client, &self.h.chain, id(k), value_sat, outbound)
            .await
            .map(|(d, _)| d)
            .map_err(|source| CorpusError::Driver { attack, source })
    }

    async fn update(&self, attack: &'static str, d: &mut LegacyChannelDriver) -> Result<(), CorpusError> {
        d.update(&self.client).await.map_err(|source| CorpusError::Driver { attack, source })
    }

    async fn approve(&self, attack: &'static str, preimage: &[u8; 32], msat: u64) -> Result<(), CorpusError> {
        self.client
            .node_key(approve_payment_request(hash_of(preimage), msat))
            .await
            .map(|_| ())
            .map_err(|source| CorpusError::Client { attack, source })
    }

    /// The request to sign `d`'s next counterparty commitment as the node would send it.
    fn next_commitment(
        attack: &'static str,
        d: &LegacyChannelDriver,
    ) -> Result<qls_protocol::CommitmentInfo, CorpusError> {
        d.next_counterparty_info().map_err(|source| CorpusError::Driver { attack, source })
    }

    /// A channel to fund, set up (and its first commitments exchanged when
    /// `first_commitments`), and the wallet PSBT that funds it (its txid is the setup's).
    async fn staged(
        &self,
        k: u8,
        value: u64,
        outbound: bool,
        first_commitments: bool,
    ) -> Result<bitcoin::psbt::Psbt, CorpusError> {
        const A: &str = "funding";
        let key = self.h.key_id();
        let wallet = wallet_script(&key).map_err(|e| CorpusError::Setup { attack: A, detail: e.to_string() })?;
        let (keys, _) =
            self.client.channel_keys(id(k)).await.map_err(|source| CorpusError::Client { attack: A, source })?;
        let cp = Counterparty::new();
        let mut setup = cp.setup(keys.points, value, outbound, [0; 32]);
        let script = Counterparty::funding_script(&setup)
            .ok_or_else(|| CorpusError::Setup { attack: A, detail: "funding keys".into() })?
            .to_p2wsh();
        let outputs = vec![
            TxOut { value: Amount::from_sat(value), script_pubkey: script },
            TxOut { value: Amount::from_sat(100_000), script_pubkey: wallet },
        ];
        let p = psbt(&key, [k; 32], value + 101_000, outputs);
        setup.funding_txid = p.unsigned_tx.compute_txid().to_byte_array();
        self.client
            .channel(id(k), ChannelRequest::Setup(setup.clone()))
            .await
            .map_err(|source| CorpusError::Client { attack: A, source })?;
        if first_commitments {
            LegacyChannelDriver::after_setup(&self.client, id(k), cp, setup)
                .await
                .map_err(|source| CorpusError::Driver { attack: A, source })?;
        }
        Ok(p)
    }

    /// `d`'s next counterparty commitment with one more HTLC we offer, `d` left as it was.
    fn with_offer(
        attack: &'static str,
        d: &mut LegacyChannelDriver,
        amount_msat: u64,
        preimage: [u8; 32],
        cltv_expiry: u32,
    ) -> Result<qls_protocol::CommitmentInfo, CorpusError> {
        d.book.offer(amount_msat, preimage, cltv_expiry);
        let info = Self::next_commitment(attack, d);
        d.book.htlcs.pop();
        d.book.ours_msat += amount_msat;
        info
    }

    fn sign(info: qls_protocol::CommitmentInfo) -> ChannelRequest {
        ChannelRequest::SignCounterpartyCommitment { commitment: info, outbound_preimages: vec![] }
    }
}

/// Runs every attack against `h`'s quorum through its coordinator (and around it, for the
/// malicious-coordinator ones). The quorum must have [`crate::harness::test_policy`]'s
/// payment approver and c1 as its key holder (the harness default).
pub async fn run(h: &Harness) -> Result<Vec<AttackResult>, CorpusError> {
    let client = h.client().await.map_err(|e| CorpusError::Setup { attack: "connect", detail: e.to_string() })?;
    let mut c = Corpus { h, client, results: Vec::new() };
    setups(&mut c).await?;
    funding(&mut c).await?;
    commitments(&mut c).await?;
    routing_and_payments(&mut c).await?;
    holder_side_and_close(&mut c).await?;
    after_force_close(&mut c).await?;
    node_key(&mut c).await;
    around_the_coordinator(&mut c).await;
    Ok(c.results)
}

/// Channel setups a cosigner must refuse.
async fn setups(c: &mut Corpus<'_>) -> Result<(), CorpusError> {
    const A: &str = "setups";
    let attacker = Counterparty::new();
    let fake = attacker.setup(attacker.points(), 500_000, true, [0x51; 32]);
    c.channel("setup-with-attacker-holder-keys", "policy-channel-holder-keys", id(1), ChannelRequest::Setup(fake))
        .await;
    let (keys, _) = c.client.channel_keys(id(2)).await.map_err(|source| CorpusError::Client { attack: A, source })?;
    let honest = attacker.setup(keys.points.clone(), 500_000, true, [0x52; 32]);
    let mut unsafe_type = honest.clone();
    unsafe_type.channel_type =
        lightning::types::features::ChannelTypeFeatures::only_static_remote_key().le_flags().to_vec();
    c.channel("setup-without-anchors", "policy-channel-safe-type", id(2), ChannelRequest::Setup(unsafe_type)).await;
    let mut short_delay = honest.clone();
    short_delay.holder_selected_contest_delay = 6;
    c.channel("setup-with-a-6-block-punishment-window", "policy-channel-contest-delay-range", id(2), {
        ChannelRequest::Setup(short_delay)
    })
    .await;
    let mut long_delay = honest.clone();
    long_delay.counterparty_selected_contest_delay = 10_000;
    c.channel(
        "setup-locking-our-funds-10000-blocks",
        "policy-channel-counterparty-delay-max",
        id(2),
        ChannelRequest::Setup(long_delay),
    )
    .await;
    // A real channel, then its setup again with another value.
    let d = c.open(A, 3, 1_000_000, true).await?;
    let mut again = d.setup.clone();
    again.channel_value_sat += 1;
    c.channel("setup-replaced-with-other-parameters", "policy-channel-id-reuse", id(3), ChannelRequest::Setup(again))
        .await;
    // A channel we fund whose first commitment already pays the counterparty.
    let (keys, _) = c.client.channel_keys(id(4)).await.map_err(|source| CorpusError::Client { attack: A, source })?;
    let cp = Counterparty::new();
    let setup = cp.setup(keys.points, 1_000_000, true, [0x54; 32]);
    c.client
        .channel(id(4), ChannelRequest::Setup(setup))
        .await
        .map_err(|source| CorpusError::Client { attack: A, source })?;
    let fee = crate::legacy_driver::commitment_fee_sat(0) + 660;
    let push = cp.commitment(
        qls_signer_core::channel::state::INITIAL_COMMITMENT_NUMBER,
        400_000,
        1_000_000 - fee - 400_000,
        vec![],
    );
    c.channel("first-commitment-pushes-funds-away", "policy-funding-no-push", id(4), Corpus::sign(push)).await;
    Ok(())
}

/// Wallet spends and funding transactions.
async fn funding(c: &mut Corpus<'_>) -> Result<(), CorpusError> {
    const A: &str = "funding";
    let key = c.h.key_id();
    let wallet = wallet_script(&key).map_err(|e| CorpusError::Setup { attack: A, detail: e.to_string() })?;
    let out = |sat: u64, script: &ScriptBuf| TxOut { value: Amount::from_sat(sat), script_pubkey: script.clone() };
    let spend = |p: bitcoin::psbt::Psbt, channels: Vec<ChannelKeysId>| NodeRequest::SignPsbt {
        psbt: p.serialize(),
        funding_channels: channels,
    };
    let foreign = psbt(&key, [0x61; 32], 1_000_000, vec![out(990_000, &foreign_script())]);
    c.attempt("wallet-pays-a-foreign-script", "policy-onchain-no-unknown-outputs", spend(foreign, vec![])).await;
    let burn = psbt(&key, [0x62; 32], 1_000_000, vec![out(100_000, &wallet)]);
    c.attempt("wallet-burns-900000-sat-as-fee", "policy-onchain-fee-range", spend(burn, vec![])).await;
    let mut odd = psbt(&key, [0x63; 32], 1_000_000, vec![out(999_000, &wallet)]);
    odd.unsigned_tx.version = bitcoin::transaction::Version(7);
    c.attempt("wallet-spend-with-nonstandard-version", "policy-onchain-standard", spend(odd, vec![])).await;

    let inbound = c.staged(10, 500_000, false, true).await?;
    c.attempt("wallet-funds-a-channel-the-peer-funds", "policy-funding-inbound", spend(inbound, vec![id(10)])).await;
    let early = c.staged(11, 500_000, true, false).await?;
    c.attempt(
        "funding-before-the-peer-signed-our-first-commitment",
        "policy-funding-initial-commitment-countersigned",
        spend(early, vec![id(11)]),
    )
    .await;
    let big = c.staged(12, 150_000_000, true, true).await?;
    c.attempt("funding-a-channel-above-the-maximum", "policy-funding-max", spend(big, vec![id(12)])).await;
    let mut other_value = c.staged(13, 500_000, true, true).await?;
    other_value.unsigned_tx.output[0].value = Amount::from_sat(400_000);
    other_value.unsigned_tx.output[1].value = Amount::from_sat(200_000);
    c.attempt("funding-output-differs-from-the-setup", "policy-funding-output", spend(other_value, vec![id(13)])).await;

    // A proof of another transaction, and one of a block the cosigners never saw.
    let d = c.open(A, 14, 1_000_000, false).await?;
    // The funding transaction last of three in a block, proven at the position past it
    // (Bitcoin duplicates an odd level's last node, so that branch reaches the root too):
    // the position would fix a short channel id pointing at nothing.
    let script = Counterparty::funding_script(&d.setup)
        .ok_or_else(|| CorpusError::Setup { attack: A, detail: "funding keys".into() })?
        .to_p2wsh();
    let funding = funding_tx(d.channel, &script, d.setup.channel_value_sat, d.setup.funding_vout);
    let filler = funding_tx([0x6e; 32], &ScriptBuf::new(), 1_000, 0);
    let mut past = lock_chain(&c.h.chain).confirm(&[filler, funding]).remove(1);
    past.position += 1;
    c.channel(
        "funding-proof-at-a-position-past-the-last-transaction",
        "policy-funding-proof",
        d.channel,
        ChannelRequest::FundingConfirmed(past),
    )
    .await;
    let other = funding_tx([0x6c; 32], &ScriptBuf::new(), 1_000_000, 0);
    let mut proof = lock_chain(&c.h.chain).confirm(&[other]).remove(0);
    c.channel(
        "funding-proof-of-another-transaction",
        "policy-funding-proof",
        d.channel,
        ChannelRequest::FundingConfirmed(proof.clone()),
    )
    .await;
    proof.headers.clear();
    proof.block_header[0] ^= 1;
    c.channel("funding-proof-in-an-unknown-block", "policy-funding-proof", d.channel, {
        ChannelRequest::FundingConfirmed(proof)
    })
    .await;
    Ok(())
}

/// Counterparty commitments that move our money or break the commitment rules.
async fn commitments(c: &mut Corpus<'_>) -> Result<(), CorpusError> {
    const A: &str = "commitments";
    let mut d = c.open(A, 20, 1_000_000, true).await?;
    let base = Corpus::next_commitment(A, &d)?;
    let mut drain = base.clone();
    drain.to_countersignatory_sat -= 400_000;
    drain.to_broadcaster_sat += 400_000;
    c.channel("commitment-hands-our-balance-to-the-peer", "policy-commitment-holder-balance", d.channel, {
        Corpus::sign(drain)
    })
    .await;
    let mut inflated = base.clone();
    inflated.to_broadcaster_sat += 200_000;
    c.channel("commitment-outputs-exceed-the-channel-value", "policy-commitment-value", d.channel, {
        Corpus::sign(inflated)
    })
    .await;
    let mut skipped = base.clone();
    skipped.commitment_number -= 5;
    skipped.per_commitment_point = d.cp.point(skipped.commitment_number);
    c.channel("commitment-skips-numbers", "policy-commitment-sequence", d.channel, Corpus::sign(skipped)).await;
    let mut feerate = base.clone();
    feerate.feerate_per_kw = 1;
    c.channel("commitment-feerate-far-below-the-range", "policy-commitment-fee-range", d.channel, {
        Corpus::sign(feerate)
    })
    .await;
    // The last commitment we signed, again with other balances.
    c.update(A, &mut d).await?;
    let last = d.signed_history.last().cloned();
    if let Some(ChannelRequest::SignCounterpartyCommitment { mut commitment, outbound_preimages }) = last {
        commitment.to_broadcaster_sat += 1_000;
        commitment.to_countersignatory_sat -= 1_000;
        c.channel(
            "commitment-retried-with-other-data",
            "policy-commitment-retry-same",
            d.channel,
            ChannelRequest::SignCounterpartyCommitment { commitment, outbound_preimages },
        )
        .await;
    }
    // HTLC shapes: an expiry that is a time (long past), an output below dust.
    let p = [0x21; 32];
    c.approve(A, &p, 50_000_000).await?;
    let timed = Corpus::with_offer(A, &mut d, 50_000_000, p, 600_000_000)?;
    c.channel("htlc-expiry-is-a-unix-time", "policy-htlc-cltv-range", d.channel, Corpus::sign(timed)).await;
    let q = [0x22; 32];
    c.approve(A, &q, 300_000).await?;
    let dust = Corpus::with_offer(A, &mut d, 300_000, q, 700)?;
    c.channel("commitment-keeps-a-300-sat-htlc-output", "policy-commitment-outputs-trimmed", d.channel, {
        Corpus::sign(dust)
    })
    .await;
    Ok(())
}

/// Forwards without cover, fail-back after fulfil, our own payments beyond approval.
async fn routing_and_payments(c: &mut Corpus<'_>) -> Result<(), CorpusError> {
    const A: &str = "routing";
    let mut inbound = c.open(A, 30, 2_000_000, false).await?;
    let mut outbound = c.open(A, 31, 2_000_000, true).await?;
    // An HTLC out whose hash nobody sent us.
    let forward = Corpus::with_offer(A, &mut outbound, 100_000_000, [0x31; 32], 700)?;
    c.channel("forward-of-a-payment-nobody-sent-us", "policy-routing-unbalanced", outbound.channel, {
        Corpus::sign(forward)
    })
    .await;

    // An incoming HTLC that was failed back still "covering" a forward of its hash.
    let failed = [0x32; 32];
    inbound.book.receive(100_000_000, failed, 800);
    c.update(A, &mut inbound).await?;
    if let Some(i) = inbound.book.position(&hash_of(&failed)) {
        inbound.book.fail(i);
    }
    c.update(A, &mut inbound).await?;
    let uncovered = Corpus::with_offer(A, &mut outbound, 100_000_000, failed, 700)?;
    c.channel("forward-covered-by-a-failed-incoming-htlc", "policy-routing-unbalanced", outbound.channel, {
        Corpus::sign(uncovered)
    })
    .await;

    // A forward expiring 10 blocks before what it forwards (34 needed).
    let tight = [0x33; 32];
    inbound.book.receive(50_000_000, tight, 800);
    c.update(A, &mut inbound).await?;
    let close_expiry = Corpus::with_offer(A, &mut outbound, 49_000_000, tight, 790)?;
    c.channel("forward-leaves-no-time-to-claim-upstream", "policy-routing-cltv-delta", outbound.channel, {
        Corpus::sign(close_expiry)
    })
    .await;

    // A real forward, fulfilled downstream; then its incoming HTLC is failed back.
    let settled = [0x34; 32];
    inbound.book.receive(200_000_000, settled, 800);
    c.update(A, &mut inbound).await?;
    outbound.book.offer(199_000_000, settled, 700);
    c.update(A, &mut outbound).await?;
    if let Some(i) = outbound.book.position(&hash_of(&settled)) {
        outbound.book.fulfil(i);
    }
    c.update(A, &mut outbound).await?;
    if let Some(i) = inbound.book.position(&hash_of(&settled)) {
        inbound.book.fail(i);
    }
    let fail_back = Corpus::next_commitment(A, &inbound)?;
    c.channel(
        "incoming-htlc-failed-after-its-forward-was-fulfilled",
        "policy-routing-fail-after-fulfil",
        inbound.channel,
        Corpus::sign(fail_back),
    )
    .await;

    // Our own payment: approved 100,000 sat, sent 150,000 (fee cap 50 sat + 1 %).
    let own = [0x35; 32];
    c.approve(A, &own, 100_000_000).await?;
    let overpay = Corpus::with_offer(A, &mut outbound, 150_000_000, own, 700)?;
    c.channel("own-payment-pays-50-percent-in-fees", "policy-payment-fee-max", outbound.channel, {
        Corpus::sign(overpay)
    })
    .await;
    // Paid and settled, then paid again.
    outbound.book.offer(100_000_000, own, 700);
    c.update(A, &mut outbound).await?;
    if let Some(i) = outbound.book.position(&hash_of(&own)) {
        outbound.book.fulfil(i);
    }
    c.update(A, &mut outbound).await?;
    let twice = Corpus::with_offer(A, &mut outbound, 50_000_000, own, 700)?;
    c.channel("settled-payment-paid-again", "policy-invoice-paid-twice", outbound.channel, Corpus::sign(twice)).await;

    // The node approves its own payment with a key of its own; or names an unknown payee.
    let secp = bitcoin::secp256k1::Secp256k1::new();
    let node_key = bitcoin::secp256k1::SecretKey::from_slice(&[0x77; 32])
        .map_err(|e| CorpusError::Setup { attack: A, detail: e.to_string() })?;
    let hash = hash_of(&[0x36; 32]);
    let expires_at = u64::from(u32::MAX);
    let msg = bitcoin::secp256k1::Message::from_digest(qls_signer_core::channel::payment_approval_message(
        &hash,
        1_000_000_000,
        expires_at,
    ));
    let forged = NodeKeyRequest::ApprovePayment {
        payment_hash: hash,
        amount_msat: 1_000_000_000,
        expires_at,
        invoice: None,
        approval: Some(PaymentApproval {
            approver: bitcoin::secp256k1::PublicKey::from_secret_key(&secp, &node_key).serialize().to_vec(),
            sig: secp.sign_ecdsa(&msg, &node_key).serialize_compact().to_vec(),
        }),
    };
    c.attempt("payment-approved-by-the-nodes-own-key", "policy-payment-approver", NodeRequest::NodeKey(forged)).await;
    let unlisted = NodeKeyRequest::ApprovePayment {
        payment_hash: hash,
        amount_msat: 1_000_000_000,
        expires_at,
        invoice: None,
        approval: None,
    };
    c.attempt("payment-without-approval-or-allowlisted-invoice", "policy-payment-payee", {
        NodeRequest::NodeKey(unlisted)
    })
    .await;

    // A channel invented by the node (never funded on chain) "receives" an HTLC whose
    // hash then goes out on a real channel.
    let invented = id(37);
    let (keys, _) =
        c.client.channel_keys(invented).await.map_err(|source| CorpusError::Client { attack: A, source })?;
    let attacker = Counterparty::new();
    let setup = attacker.setup(keys.points, 1_000_000, false, [0x6b; 32]);
    c.client
        .channel(invented, ChannelRequest::Setup(setup.clone()))
        .await
        .map_err(|source| CorpusError::Client { attack: A, source })?;
    let (mut fake, _) = LegacyChannelDriver::after_setup(&c.client, invented, attacker, setup)
        .await
        .map_err(|source| CorpusError::Driver { attack: A, source })?;
    let made_up = [0x37; 32];
    fake.book.receive(300_000_000, made_up, 800);
    c.update(A, &mut fake).await?;
    let from_nowhere = Corpus::with_offer(A, &mut outbound, 300_000_000, made_up, 700)?;
    c.channel(
        "forward-covered-by-a-channel-never-funded-on-chain",
        "policy-routing-unbalanced",
        outbound.channel,
        Corpus::sign(from_nowhere),
    )
    .await;

    // A real inbound channel receives an HTLC, then its funding output is spent on chain
    // (its commitment confirmed): the HTLC's hash going out covers nothing any more. A
    // "spend" proof of a transaction that spends something else changes nothing.
    let mut closing = c.open(A, 38, 1_000_000, false).await?;
    let gone = [0x38; 32];
    closing.book.receive(200_000_000, gone, 800);
    c.update(A, &mut closing).await?;
    let (spend, _) =
        closing.force_close(&c.client).await.map_err(|source| CorpusError::Driver { attack: A, source })?;
    let unrelated = funding_tx([0x6d; 32], &ScriptBuf::new(), 1_000, 0);
    let on_chain = spend.tx.clone();
    let mut proofs = lock_chain(&c.h.chain).confirm(&[spend.tx, unrelated]);
    let (spent_proof, unrelated_proof) = (proofs.remove(0), proofs.remove(0));
    c.channel("funding-spend-proof-of-another-transaction", "policy-funding-proof", closing.channel, {
        ChannelRequest::FundingSpent(unrelated_proof)
    })
    .await;
    c.client
        .channel(closing.channel, ChannelRequest::FundingSpent(spent_proof))
        .await
        .map_err(|source| CorpusError::Client { attack: A, source })?;
    // Justice on the commitment now on chain (ours, whose number the counterparty never
    // revoked): the revocation key of a commitment not revoked is never used; nor does
    // justice pay anyone but us. (`take_largest`: a spend of its largest output, paying
    // 1,000 sat of fee, and that output's value.)
    let take_largest = |to: ScriptBuf| {
        let (vout, out) = on_chain.output.iter().enumerate().max_by_key(|(_, o)| o.value).expect("outputs");
        let tx = bitcoin::Transaction {
            version: bitcoin::transaction::Version::TWO,
            lock_time: bitcoin::absolute::LockTime::ZERO,
            input: vec![bitcoin::TxIn {
                previous_output: bitcoin::OutPoint { txid: on_chain.compute_txid(), vout: vout as u32 },
                ..Default::default()
            }],
            output: vec![TxOut { value: out.value - Amount::from_sat(1_000), script_pubkey: to }],
        };
        (bitcoin::consensus::serialize(&tx), out.value.to_sat())
    };
    let justice = |to: ScriptBuf| {
        let (tx, amount_sat) = take_largest(to);
        ChannelRequest::SignJustice { tx, input: 0, amount_sat, htlc: None }
    };
    let key = c.h.key_id();
    let wallet = wallet_script(&key).map_err(|e| CorpusError::Setup { attack: A, detail: e.to_string() })?;
    c.channel(
        "justice-on-a-commitment-never-revoked",
        "policy-justice-revoked",
        closing.channel,
        justice(wallet.clone()),
    )
    .await;
    c.channel("justice-paying-a-foreign-script", "policy-sweep-destination", closing.channel, {
        justice(foreign_script())
    })
    .await;
    // A "claim on the counterparty's commitment" of an HTLC output of our own commitment:
    // the commitment on chain is not one of theirs we signed.
    let (tx, amount_sat) = take_largest(wallet);
    let htlc =
        qls_protocol::HtlcInfo { offered: false, amount_msat: amount_sat * 1000, cltv_expiry: 0, payment_hash: gone };
    let claim = ChannelRequest::SignCounterpartyHtlcClaim { tx, input: 0, amount_sat, htlc };
    c.channel("claim-on-a-commitment-that-is-not-theirs", "policy-counterparty-claim-source", closing.channel, claim)
        .await;
    let after_close = Corpus::with_offer(A, &mut outbound, 200_000_000, gone, 700)?;
    c.channel(
        "forward-covered-by-a-channel-closed-on-chain",
        "policy-routing-unbalanced",
        outbound.channel,
        Corpus::sign(after_close),
    )
    .await;
    Ok(())
}

/// Our own commitment, revocation and the cooperative close.
async fn holder_side_and_close(c: &mut Corpus<'_>) -> Result<(), CorpusError> {
    const A: &str = "holder";
    let mut d = c.open(A, 40, 1_000_000, true).await?;
    // A channel announcement with our funding key for a channel we do not hold (another
    // short channel id, a stranger's key beside ours): the funding key signs nothing but
    // this channel's own announcement.
    let stranger = bitcoin::secp256k1::PublicKey::from_secret_key(
        &d.cp.secp,
        &bitcoin::secp256k1::SecretKey::from_slice(&[0x44; 32]).expect("a valid key"),
    );
    let ours = bitcoin::secp256k1::PublicKey::from_slice(&d.setup.holder.funding)
        .map_err(|e| CorpusError::Setup { attack: A, detail: e.to_string() })?;
    let foreign = lightning::ln::msgs::UnsignedChannelAnnouncement {
        features: lightning::types::features::ChannelFeatures::empty(),
        chain_hash: bitcoin::constants::ChainHash::using_genesis_block(bitcoin::Network::Regtest),
        short_channel_id: 700_000u64 << 40,
        node_id_1: lightning::routing::gossip::NodeId::from_pubkey(&stranger),
        node_id_2: lightning::routing::gossip::NodeId::from_pubkey(&ours),
        bitcoin_key_1: lightning::routing::gossip::NodeId::from_pubkey(&stranger),
        bitcoin_key_2: lightning::routing::gossip::NodeId::from_pubkey(&ours),
        excess_data: Vec::new(),
    };
    let message = lightning::util::ser::Writeable::encode(&foreign);
    c.channel("announcement-of-a-channel-we-do-not-hold", "policy-channel-announcement", d.channel, {
        ChannelRequest::SignChannelAnnouncement { message }
    })
    .await;
    let first = d.holder_latest.clone();
    c.update(A, &mut d).await?;
    let latest = d.holder_latest.clone().ok_or_else(|| CorpusError::Setup { attack: A, detail: "no holder".into() })?;
    if let Some(old) = first {
        c.channel("broadcast-a-revoked-commitment", "policy-commitment-holder-revoked", d.channel, {
            ChannelRequest::SignHolderCommitment { commitment: old }
        })
        .await;
    }
    let mut invented = latest.clone();
    invented.to_broadcaster_sat -= 10_000;
    c.channel("broadcast-a-commitment-never-validated", "policy-commitment-holder-unknown", d.channel, {
        ChannelRequest::SignHolderCommitment { commitment: invented }
    })
    .await;
    c.channel("revoke-our-only-valid-commitment", "policy-revoke-before-next-commitment", d.channel, {
        ChannelRequest::ReleaseCommitmentSecret { commitment_number: latest.commitment_number }
    })
    .await;
    // Our next commitment with a signature the counterparty never made.
    let mut next = latest.clone();
    next.commitment_number -= 1;
    next.per_commitment_point = c
        .client
        .per_commitment_point(d.channel, next.commitment_number)
        .await
        .map_err(|source| CorpusError::Client { attack: A, source })?;
    let request =
        d.cp.validate_request(&d.setup, next, vec![])
            .map_err(|e| CorpusError::Setup { attack: A, detail: e.to_string() })?;
    if let ChannelRequest::ValidateHolderCommitment { commitment, counterparty_htlc_sigs, .. } = request {
        let forged = ChannelRequest::ValidateHolderCommitment {
            commitment,
            counterparty_sig: vec![1; 64],
            counterparty_htlc_sigs,
            outbound_preimages: vec![],
        };
        c.channel(
            "accept-our-commitment-with-a-forged-peer-signature",
            "policy-commitment-counterparty-sig",
            d.channel,
            forged,
        )
        .await;
    }
    // The counterparty "revokes" its latest commitment with a secret of nothing.
    let unrevoked = d.next_number() + 1;
    c.channel("peer-revocation-with-a-wrong-secret", "policy-revocation-secret-mismatch", d.channel, {
        ChannelRequest::ValidateCounterpartyRevocation { commitment_number: unrevoked, secret: [0x42; 32] }
    })
    .await;

    // Cooperative closes.
    let key = c.h.key_id();
    let wallet = wallet_script(&key).map_err(|e| CorpusError::Setup { attack: A, detail: e.to_string() })?;
    let ours = d.book.ours_msat / 1000;
    let close = |to_holder: u64, to_cp: u64, to: &ScriptBuf| ChannelRequest::SignClosing {
        to_holder_sat: to_holder,
        to_counterparty_sat: to_cp,
        to_holder_script: to.to_bytes(),
        to_counterparty_script: foreign_script().to_bytes(),
    };
    c.channel("close-pays-us-to-a-foreign-script", "policy-close-destination", d.channel, {
        close(ours - 1_000, 0, &foreign_script())
    })
    .await;
    c.channel("close-gives-the-peer-half", "policy-close-value", d.channel, close(ours / 2, ours / 2 - 1_000, &wallet))
        .await;
    c.channel("close-with-a-dust-output-that-never-relays", "policy-close-outputs-standard", d.channel, {
        close(ours - 1_200, 200, &wallet)
    })
    .await;
    let p = [0x41; 32];
    c.approve(A, &p, 20_000_000).await?;
    d.book.offer(20_000_000, p, 700);
    c.update(A, &mut d).await?;
    let ours = d.book.ours_msat / 1000;
    c.channel("close-with-an-htlc-in-flight", "policy-close-pending-htlcs", d.channel, close(ours - 1_000, 0, &wallet))
        .await;
    Ok(())
}

/// A force-closed channel: no more updates, sweeps only of our outputs to our wallet.
async fn after_force_close(c: &mut Corpus<'_>) -> Result<(), CorpusError> {
    const A: &str = "force-close";
    let d = c.open(A, 50, 1_000_000, true).await?;
    let (spend, _) = d.force_close(&c.client).await.map_err(|source| CorpusError::Driver { attack: A, source })?;
    let commitment = spend.tx;
    let info = d.holder_latest.clone().ok_or_else(|| CorpusError::Setup { attack: A, detail: "no holder".into() })?;
    let params =
        parse::transaction_parameters(&d.setup).map_err(|e| CorpusError::Setup { attack: A, detail: e.to_string() })?;
    let built = parse::commitment(&params, &info, Broadcaster::Holder, &d.cp.secp)
        .map_err(|e| CorpusError::Setup { attack: A, detail: e.to_string() })?;
    let vout = built
        .trust()
        .revokeable_output_index()
        .ok_or_else(|| CorpusError::Setup { attack: A, detail: "no to_local".into() })?;
    let value = commitment.output[vout].value.to_sat();
    let txid = commitment.compute_txid();
    let key = c.h.key_id();
    let wallet = wallet_script(&key).map_err(|e| CorpusError::Setup { attack: A, detail: e.to_string() })?;
    let sweep = |version: i32, sequence: u32, to: &ScriptBuf, out_sat: u64, spent: bitcoin::OutPoint| {
        let tx = bitcoin::Transaction {
            version: bitcoin::transaction::Version(version),
            lock_time: bitcoin::absolute::LockTime::ZERO,
            input: vec![bitcoin::TxIn {
                previous_output: spent,
                script_sig: ScriptBuf::new(),
                sequence: bitcoin::Sequence(sequence),
                witness: bitcoin::Witness::new(),
            }],
            output: vec![TxOut { value: Amount::from_sat(out_sat), script_pubkey: to.clone() }],
        };
        bitcoin::consensus::serialize(&tx)
    };
    let to_local = bitcoin::OutPoint { txid, vout: vout as u32 };
    let delay = u32::from(d.setup.counterparty_selected_contest_delay);
    let delayed = |tx: Vec<u8>| ChannelRequest::SignDelayedSweep { tx, input: 0 };
    c.channel("sweep-our-to-local-to-a-foreign-script", "policy-sweep-destination", d.channel, {
        delayed(sweep(2, delay, &foreign_script(), value - 1_000, to_local))
    })
    .await;
    c.channel("sweep-before-the-contest-delay", "policy-sweep-sequence", d.channel, {
        delayed(sweep(2, 1, &wallet, value - 1_000, to_local))
    })
    .await;
    c.channel("sweep-with-version-1-no-relative-delay", "policy-sweep-version", d.channel, {
        delayed(sweep(1, delay, &wallet, value - 1_000, to_local))
    })
    .await;
    c.channel("sweep-burning-our-output-as-fee", "policy-sweep-fee-range", d.channel, {
        delayed(sweep(2, delay, &wallet, value / 2, to_local))
    })
    .await;
    let someone_else = bitcoin::OutPoint { txid: bitcoin::Txid::from_byte_array([0x55; 32]), vout: 0 };
    c.channel("anchor-signature-for-someone-elses-output", "policy-sweep-source", d.channel, {
        ChannelRequest::SignHolderAnchor { tx: sweep(2, 0, &wallet, 1_000, someone_else), input: 0 }
    })
    .await;
    let next = Corpus::next_commitment(A, &d)?;
    c.channel("update-after-force-close", "policy-channel-closed", d.channel, Corpus::sign(next)).await;
    // Our to_remote on a counterparty commitment, swept to the attacker.
    let their_commitment = bitcoin::OutPoint { txid: bitcoin::Txid::from_byte_array([0x56; 32]), vout: 1 };
    c.channel("to-remote-sweep-to-a-foreign-script", "policy-sweep-destination", d.channel, {
        ChannelRequest::SignRemoteSweep {
            tx: sweep(2, 1, &foreign_script(), 90_000, their_commitment),
            input: 0,
            amount_sat: 100_000,
        }
    })
    .await;
    batched_sweeps(c, &d, &commitment, to_local, value, &wallet).await
}

/// Batched sweeps (as LDK's `OutputSweeper` builds them) that slip something in among
/// honest inputs: an input of unknown value, someone else's output named as ours (as a
/// delayed output, or as a to_remote with the amount it claims), a to_remote paying a
/// foreign script, a fee that is small per input but not in all. The channel's funding
/// spend (our commitment) is proven first, so its outputs have known values.
async fn batched_sweeps(
    c: &mut Corpus<'_>,
    d: &LegacyChannelDriver,
    commitment: &bitcoin::Transaction,
    to_local: bitcoin::OutPoint,
    value: u64,
    wallet: &ScriptBuf,
) -> Result<(), CorpusError> {
    use qls_protocol::{SweepInput, SweepRequest, SweepSource};
    const A: &str = "batched-sweep";
    let proof = lock_chain(&c.h.chain).confirm(std::slice::from_ref(commitment)).remove(0);
    c.client
        .channel(d.channel, ChannelRequest::FundingSpent(proof))
        .await
        .map_err(|source| CorpusError::Client { attack: A, source })?;
    // Another output of the proven commitment (the counterparty's), at its proven value.
    let (other_vout, other) = commitment
        .output
        .iter()
        .enumerate()
        .filter(|(k, _)| *k as u32 != to_local.vout)
        .max_by_key(|(_, o)| o.value)
        .ok_or_else(|| CorpusError::Setup { attack: A, detail: "one output".into() })?;
    let proven = bitcoin::OutPoint { txid: to_local.txid, vout: other_vout as u32 };
    let proven_sat = other.value.to_sat();
    let delay = u32::from(d.setup.counterparty_selected_contest_delay);
    let tx = |inputs: &[(bitcoin::OutPoint, u32)], outputs: Vec<(&ScriptBuf, u64)>| {
        let tx = bitcoin::Transaction {
            version: bitcoin::transaction::Version::TWO,
            lock_time: bitcoin::absolute::LockTime::ZERO,
            input: inputs
                .iter()
                .map(|(o, sequence)| bitcoin::TxIn {
                    previous_output: *o,
                    sequence: bitcoin::Sequence(*sequence),
                    ..Default::default()
                })
                .collect(),
            output: outputs
                .into_iter()
                .map(|(to, sat)| TxOut { value: Amount::from_sat(sat), script_pubkey: to.clone() })
                .collect(),
        };
        bitcoin::consensus::serialize(&tx)
    };
    let delayed = |input| SweepInput { input, channel: d.channel, source: SweepSource::Delayed };
    let to_remote =
        |input, amount_sat| SweepInput { input, channel: d.channel, source: SweepSource::ToRemote { amount_sat } };
    let someone_else = bitcoin::OutPoint { txid: bitcoin::Txid::from_byte_array([0x57; 32]), vout: 0 };
    let attempts = [
        (
            "batched-sweep-with-an-unnamed-input",
            "policy-sweep-source",
            SweepRequest {
                tx: tx(&[(to_local, delay), (someone_else, 0)], vec![(wallet, value - 1_000)]),
                inputs: vec![delayed(0)],
            },
        ),
        (
            "batched-sweep-naming-someone-elses-output-as-ours",
            "policy-sweep-source",
            SweepRequest {
                tx: tx(&[(to_local, delay), (someone_else, delay)], vec![(wallet, value - 1_000)]),
                inputs: vec![delayed(0), delayed(1)],
            },
        ),
        (
            // The node's own coin named as a to_remote with an inflated amount: it would
            // drop our (invalid) signature for it and sign it itself, and the inflated
            // amount would hide our to_local going to fee.
            "batched-sweep-naming-its-own-coin-as-a-to-remote",
            "policy-sweep-source",
            SweepRequest {
                tx: tx(&[(to_local, delay), (someone_else, 1)], vec![(wallet, 1_000)]),
                inputs: vec![delayed(0), to_remote(1, u64::MAX - value)],
            },
        ),
        (
            "batched-sweep-with-an-output-to-a-foreign-script",
            "policy-sweep-destination",
            SweepRequest {
                tx: tx(
                    &[(to_local, delay), (proven, 1)],
                    vec![(wallet, value - 1_000), (&foreign_script(), proven_sat)],
                ),
                inputs: vec![delayed(0), to_remote(1, proven_sat)],
            },
        ),
        (
            "batched-sweep-burning-the-sum-as-fee",
            "policy-sweep-fee-range",
            SweepRequest {
                tx: tx(&[(to_local, delay), (proven, 1)], vec![(wallet, (value + proven_sat) / 2)]),
                inputs: vec![delayed(0), to_remote(1, proven_sat)],
            },
        ),
    ];
    for (attack, tag, request) in attempts {
        c.attempt(attack, tag, NodeRequest::Sweep(request)).await;
    }
    Ok(())
}

/// Node-key requests shaped as something else.
async fn node_key(c: &mut Corpus<'_>) {
    // An "invoice" whose hrp ‖ data is a heartbeat's tagged-hash preimage.
    let tag = sha256::Hash::hash(b"QLS/heartbeat/v1").to_byte_array();
    let mut preimage = [tag, tag].concat();
    for part in [&100u32.to_be_bytes()[..], &[7; 32], &1_700_000_000u64.to_be_bytes()] {
        preimage.extend_from_slice(&(part.len() as u64).to_be_bytes());
        preimage.extend_from_slice(part);
    }
    let invoice = NodeKeyRequest::SignInvoice {
        hrp: preimage[..64].to_vec(),
        data: preimage[64..].to_vec(),
        payment_hash: [1; 32],
        amount_msat: None,
    };
    c.attempt("invoice-that-is-a-heartbeat-preimage", "policy-node-invoice-shape", NodeRequest::NodeKey(invoice)).await;
    let mut update = bitcoin::constants::ChainHash::BITCOIN.to_bytes().to_vec();
    update.extend_from_slice(&[0; 46]);
    let gossip = NodeKeyRequest::SignGossip { kind: GossipKind::ChannelUpdate, message: update };
    c.attempt("channel-update-for-another-chain", "policy-node-gossip-shape", NodeRequest::NodeKey(gossip)).await;
    let mut message = b"Lightning Signed Message:".to_vec();
    message.extend_from_slice(&[0; 200]);
    let gossip = NodeKeyRequest::SignGossip { kind: GossipKind::NodeAnnouncement, message };
    c.attempt("gossip-shaped-as-signmessage", "policy-node-gossip-shape", NodeRequest::NodeKey(gossip)).await;
    let heartbeat = NodeKeyRequest::Heartbeat { headers: vec![], tip: [9; 32] };
    c.attempt("heartbeat-for-a-tip-we-never-saw", "policy-heartbeat-tip", NodeRequest::NodeKey(heartbeat)).await;
}

/// A coordinator holding the real coordinator's identity, going around it.
async fn around_the_coordinator(c: &mut Corpus<'_>) {
    let Ok(evil) = MaliciousCoordinator::new(c.h, vec![0], 2) else {
        return;
    };
    let attacker = Counterparty::new();
    let setup = attacker.setup(attacker.points(), 500_000, true, [0x71; 32]);
    let subject = ApprovalSubject::Channel { channel: id(60), request: ChannelRequest::Setup(setup) };
    let outcome = evil.try_subject(subject).await;
    let tag = "policy-channel-holder-keys";
    c.results.push(AttackResult {
        attack: "coordinator-sets-up-attacker-keys-around-the-node-api",
        tag,
        refused_with_tag: outcome
            .refused_by
            .iter()
            .filter(|(_, tags)| tags.contains(tag))
            .map(|(name, _)| name.clone())
            .collect(),
        answered: outcome.refused_by.iter().map(|(name, _)| name.clone()).collect(),
        accepted: outcome.signed,
        answer: short(format!("{outcome:?}")),
    });
}

/// Distinct attack kinds in `results`.
pub fn kinds(results: &[AttackResult]) -> usize {
    results.iter().map(|r| r.attack).collect::<BTreeSet<_>>().len()
}
