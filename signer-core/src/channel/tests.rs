//! The legacy-channel policy, one test per tag plus the honest flows: a fixture channel
//! with real keys on both sides, commitments rebuilt by LDK's `chan_utils`, counterparty
//! signatures made with the counterparty's keys and checked by libsecp256k1.

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;

use bitcoin::hashes::{sha256, Hash};
use bitcoin::secp256k1::{All, Message, PublicKey, Secp256k1, SecretKey};
use bitcoin::sighash::{EcdsaSighashType, SighashCache};
use bitcoin::{
    absolute::LockTime, transaction::Version, Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness,
};
use lightning::ln::chan_utils::{
    build_commitment_secret, build_htlc_transaction, derive_private_key, get_htlc_redeemscript,
    make_funding_redeemscript,
};
use lightning::types::features::ChannelTypeFeatures;
use qls_protocol::{ApprovalSubject, ChannelPoints, ChannelRequest, ChannelSetup, CommitmentInfo, HtlcInfo};

use super::parse::{self, Broadcaster};
use super::payments::{PaymentEntry, PaymentIndex};
use super::provenance::HolderKeysCheck;
use super::state::{request_digest, ChannelState, INITIAL_COMMITMENT_NUMBER as N0};
use super::validate::{apply, Context};
use crate::policy::{ChannelPolicy, PolicyConfig, PolicyTag};

const VALUE: u64 = 1_000_000;
const FEERATE: u32 = 1000;
const DELAY: u16 = 144;
/// The cosigner clock in these tests (unix seconds).
const NOW: u64 = 1_800_000_000;

#[derive(Clone)]
struct Side {
    funding: SecretKey,
    revocation: SecretKey,
    payment: SecretKey,
    delayed: SecretKey,
    htlc: SecretKey,
    seed: [u8; 32],
}

impl Side {
    fn new(tag: u8) -> Self {
        let k = |i: u8| SecretKey::from_slice(&[tag.wrapping_mul(16).wrapping_add(2 * i) | 1; 32]).unwrap();
        Self { funding: k(1), revocation: k(2), payment: k(3), delayed: k(4), htlc: k(5), seed: [tag; 32] }
    }
    fn points(&self, secp: &Secp256k1<All>) -> ChannelPoints {
        let p = |s: &SecretKey| PublicKey::from_secret_key(secp, s).serialize().to_vec();
        ChannelPoints {
            funding: p(&self.funding),
            revocation: p(&self.revocation),
            payment: p(&self.payment),
            delayed_payment: p(&self.delayed),
            htlc: p(&self.htlc),
        }
    }
    fn secret(&self, n: u64) -> [u8; 32] {
        build_commitment_secret(&self.seed, n)
    }
    fn point(&self, secp: &Secp256k1<All>, n: u64) -> Vec<u8> {
        PublicKey::from_secret_key(secp, &SecretKey::from_slice(&self.secret(n)).unwrap()).serialize().to_vec()
    }
}

fn script(tag: &[u8]) -> ScriptBuf {
    ScriptBuf::new_p2wpkh(&bitcoin::WPubkeyHash::hash(tag))
}

#[derive(Clone)]
struct Fx {
    secp: Secp256k1<All>,
    holder: Side,
    cp: Side,
    setup: ChannelSetup,
    state: Option<ChannelState>,
    payments: BTreeMap<[u8; 32], PaymentEntry>,
    policy: PolicyConfig,
    own: Vec<ScriptBuf>,
    /// What the shell found about the setup's holder keys.
    holder_keys: Option<HolderKeysCheck>,
    /// The funding transaction the setup names (its txid is `setup.funding_txid`).
    funding_tx: Transaction,
    /// This cosigner's header chain, once a block holds the funding transaction.
    chain: Option<crate::chain::ChainTip>,
    /// The node-wide funding velocity, as a cosigner's store keeps it.
    funding_velocity: super::Velocity,
}

fn fee(n: usize) -> u64 {
    u64::from(FEERATE) * (1124 + 172 * n as u64) / 1000
}

fn htlc(offered: bool, sat: u64, hash_of: u8) -> HtlcInfo {
    HtlcInfo {
        offered,
        amount_msat: sat * 1000,
        cltv_expiry: 500_000,
        payment_hash: sha256::Hash::hash(&[hash_of; 32]).to_byte_array(),
    }
}

impl Fx {
    fn new(outbound: bool) -> Self {
        Self::with_counterparty(outbound, 2)
    }

    /// A channel with the counterparty whose keys come from `cp_tag` (another channel).
    fn with_counterparty(outbound: bool, cp_tag: u8) -> Self {
        let secp = Secp256k1::new();
        let (holder, cp) = (Side::new(1), Side::new(cp_tag));
        let mut setup = ChannelSetup {
            channel_value_sat: VALUE,
            funding_txid: [7; 32],
            funding_vout: 0,
            is_outbound: outbound,
            holder_selected_contest_delay: DELAY,
            counterparty_selected_contest_delay: DELAY,
            holder: holder.points(&secp),
            counterparty: cp.points(&secp),
            channel_type: ChannelTypeFeatures::anchors_zero_htlc_fee_and_dependencies().le_flags().to_vec(),
        };
        let funding_script = make_funding_redeemscript(
            &PublicKey::from_secret_key(&secp, &holder.funding),
            &PublicKey::from_secret_key(&secp, &cp.funding),
        )
        .to_p2wsh();
        let funding_tx = crate::funding_proof::tests::paying(0x77, &funding_script, VALUE);
        setup.funding_txid = funding_tx.compute_txid().to_byte_array();
        Self {
            secp,
            holder,
            cp,
            setup,
            state: None,
            payments: BTreeMap::new(),
            policy: PolicyConfig::default(),
            own: vec![script(b"wallet")],
            holder_keys: Some(HolderKeysCheck::Ours),
            funding_tx,
            chain: None,
            funding_velocity: Default::default(),
        }
    }

    /// Mines the funding transaction (alone in its block) and one block on it into this
    /// cosigner's chain, and hands the cosigner the SPV proof; returns its tags.
    fn confirm_funding(&mut self) -> Vec<PolicyTag> {
        use crate::funding_proof::tests::mine;
        use bitcoin::consensus::encode::serialize;
        let mut chain = crate::chain::ChainTip::genesis(bitcoin::Network::Regtest);
        let block = mine(chain.tip_hash(), self.setup.funding_txid, 1_700_000_000);
        let next = mine(block.block_hash(), [0; 32], 1_700_000_600);
        let headers = vec![serialize(&block), serialize(&next)];
        chain.extend(bitcoin::Network::Regtest, &headers).unwrap();
        self.chain = Some(chain);
        self.policy.channel.funding_min_depth = 2;
        let proof = qls_protocol::FundingProof {
            headers,
            tx: serialize(&self.funding_tx),
            block_header: serialize(&block),
            merkle_branch: vec![],
            position: 0,
        };
        self.run(ChannelRequest::FundingConfirmed(proof))
    }

    /// Applies `req` like a cosigner shell: persists only when the policy approves.
    fn run(&mut self, req: ChannelRequest) -> Vec<PolicyTag> {
        let subject = ApprovalSubject::Channel { channel: [9; 32], request: req.clone() };
        let digest = request_digest(&subject);
        let mut index = PaymentIndex::new(self.payments.clone(), self.payments.len(), self.policy.channel.max_payments);
        index.funding_velocity = self.funding_velocity.clone();
        let ctx = Context {
            policy: &self.policy,
            own_scripts: &self.own,
            secp: &self.secp,
            now: NOW,
            stored_channels: 0,
            network: bitcoin::Network::Regtest,
            holder_keys: self.holder_keys.clone(),
            chain: self.chain.as_ref(),
        };
        let applied = apply(&[9; 32], self.state.as_ref(), &req, &digest, &mut index, &ctx).expect("request parses");
        let verdict = crate::policy::judge(applied.violations, &self.policy);
        if verdict.approves() {
            self.state = Some(applied.state);
            self.payments.extend(index.changed());
            self.funding_velocity = index.funding_velocity;
        }
        verdict.refused.iter().chain(&verdict.warned).map(|v| v.tag).collect()
    }

    fn ours_sat(&self, n_htlcs: usize, htlc_sat: u64, theirs: u64) -> u64 {
        VALUE - fee(n_htlcs) - 660 - htlc_sat - theirs
    }

    fn cp_info(&self, n: u64, theirs: u64, ours: u64, htlcs: Vec<HtlcInfo>) -> CommitmentInfo {
        CommitmentInfo {
            commitment_number: n,
            per_commitment_point: self.cp.point(&self.secp, n),
            to_broadcaster_sat: theirs,
            to_countersignatory_sat: ours,
            feerate_per_kw: FEERATE,
            htlcs,
        }
    }

    fn holder_info(&self, n: u64, ours: u64, theirs: u64, htlcs: Vec<HtlcInfo>) -> CommitmentInfo {
        CommitmentInfo {
            commitment_number: n,
            per_commitment_point: self.holder.point(&self.secp, n),
            to_broadcaster_sat: ours,
            to_countersignatory_sat: theirs,
            feerate_per_kw: FEERATE,
            htlcs,
        }
    }

    /// The counterparty's signatures on our holder commitment, made with its keys.
    fn validate_req(&self, info: CommitmentInfo, preimages: Vec<[u8; 32]>) -> ChannelRequest {
        let params = parse::transaction_parameters(&self.setup).unwrap();
        let tx = parse::commitment(&params, &info, Broadcaster::Holder, &self.secp).unwrap();
        let funding_script = make_funding_redeemscript(
            &PublicKey::from_secret_key(&self.secp, &self.holder.funding),
            &PublicKey::from_secret_key(&self.secp, &self.cp.funding),
        );
        let trusted = tx.trust();
        let sighash = trusted.built_transaction().get_sighash_all(&funding_script, VALUE);
        let sig = self.secp.sign_ecdsa(&sighash, &self.cp.funding).serialize_compact().to_vec();
        let pcp = PublicKey::from_slice(&info.per_commitment_point).unwrap();
        let htlc_key = derive_private_key(&self.secp, &pcp, &self.cp.htlc);
        let keys = trusted.keys();
        let htlc_sigs = tx
            .nondust_htlcs()
            .iter()
            .map(|h| {
                let htlc_tx = build_htlc_transaction(
                    &trusted.txid(),
                    FEERATE,
                    DELAY,
                    h,
                    &params.channel_type_features,
                    &keys.broadcaster_delayed_payment_key,
                    &keys.revocation_key,
                );
                let script = get_htlc_redeemscript(h, &params.channel_type_features, keys);
                let hash = SighashCache::new(&htlc_tx)
                    .p2wsh_signature_hash(0, &script, h.to_bitcoin_amount(), EcdsaSighashType::SinglePlusAnyoneCanPay)
                    .unwrap();
                self.secp
                    .sign_ecdsa(&Message::from_digest(hash.to_byte_array()), &htlc_key)
                    .serialize_compact()
                    .to_vec()
            })
            .collect();
        ChannelRequest::ValidateHolderCommitment {
            commitment: info,
            counterparty_sig: sig,
            counterparty_htlc_sigs: htlc_sigs,
            outbound_preimages: preimages,
        }
    }

    fn sign_cp(&mut self, info: CommitmentInfo, preimages: Vec<[u8; 32]>) -> Vec<PolicyTag> {
        self.run(ChannelRequest::SignCounterpartyCommitment { commitment: info, outbound_preimages: preimages })
    }

    /// Setup and the first commitments on both sides; everything ours (we fund).
    fn open(&mut self) {
        let ours = self.ours_sat(0, 0, 0);
        assert_eq!(self.run(ChannelRequest::Setup(self.setup.clone())), vec![]);
        assert_eq!(self.sign_cp(self.cp_info(N0, 0, ours, vec![]), vec![]), vec![]);
        let req = self.validate_req(self.holder_info(N0, ours, 0, vec![]), vec![]);
        assert_eq!(self.run(req), vec![]);
    }

    /// One full round with `htlcs` (sat split `ours`/`theirs`), both sides, revocations included.
    fn round(
        &mut self,
        n: u64,
        ours: u64,
        theirs: u64,
        cp_htlcs: Vec<HtlcInfo>,
        preimages: Vec<[u8; 32]>,
    ) -> Vec<PolicyTag> {
        let holder_htlcs: Vec<HtlcInfo> =
            cp_htlcs.iter().map(|h| HtlcInfo { offered: !h.offered, ..h.clone() }).collect();
        let mut tags = self.sign_cp(self.cp_info(n, theirs, ours, cp_htlcs), preimages.clone());
        let req = self.validate_req(self.holder_info(n, ours, theirs, holder_htlcs), preimages);
        tags.extend(self.run(req));
        tags.extend(self.run(ChannelRequest::ReleaseCommitmentSecret { commitment_number: n + 1 }));
        let secret = self.cp.secret(n + 1);
        tags.extend(self.run(ChannelRequest::ValidateCounterpartyRevocation { commitment_number: n + 1, secret }));
        tags
    }

    fn latest_holder(&self) -> CommitmentInfo {
        self.state.as_ref().unwrap().holder.latest.as_ref().unwrap().info.clone()
    }
}

fn approve(fx: &mut Fx, hash_of: u8, sat: u64) {
    let hash = sha256::Hash::hash(&[hash_of; 32]).to_byte_array();
    let mut v = Vec::new();
    let mut index = PaymentIndex::new(fx.payments.clone(), fx.payments.len(), 10);
    index.approve(&mut v, &hash, sat * 1000, NOW + 3_600);
    fx.payments.extend(index.changed());
}

// ---------------------------------------------------------------- honest flows

#[test]
fn honest_payment_round_trip_has_no_violations_and_digests_chain() {
    let mut fx = Fx::new(true);
    fx.open();
    let v1 = fx.state.as_ref().unwrap().digest;
    approve(&mut fx, 1, 100_000);
    // We offer an approved HTLC, then it is fulfilled (preimage known) and removed.
    let h = htlc(false, 100_000, 1);
    let ours = fx.ours_sat(1, 100_000, 0);
    assert_eq!(fx.round(N0 - 1, ours, 0, vec![h], vec![]), vec![]);
    let ours = fx.ours_sat(0, 0, 100_000);
    assert_eq!(fx.round(N0 - 2, ours, 100_000, vec![], vec![[1; 32]]), vec![]);
    let v2 = fx.state.as_ref().unwrap().digest;
    assert_eq!(v2.version, v1.version + 8);
    // An idempotent retry changes nothing, digest included.
    let before = fx.state.clone();
    let info = fx.cp_info(N0 - 2, 100_000, ours, vec![]);
    assert_eq!(fx.sign_cp(info, vec![[1; 32]]), vec![]);
    assert_eq!(fx.state, before);
}

#[test]
fn two_cosigners_with_one_history_agree_and_a_lagging_one_shows_a_lower_version() {
    let (mut a, mut b) = (Fx::new(true), Fx::new(true));
    a.open();
    b.open();
    assert_eq!(a.state.as_ref().unwrap().digest, b.state.as_ref().unwrap().digest);
    let ours = a.ours_sat(0, 0, 0);
    let info = a.cp_info(N0 - 1, 0, ours, vec![]);
    assert_eq!(a.sign_cp(info, vec![]), vec![]);
    let (da, db) = (a.state.as_ref().unwrap().digest, b.state.as_ref().unwrap().digest);
    assert!(da.version > db.version && da.digest != db.digest);
}

#[test]
fn forward_with_matching_incoming_htlc_is_allowed() {
    let mut fx = Fx::new(false);
    let theirs = fx.ours_sat(0, 0, 0); // they funded: all theirs
    assert_eq!(fx.run(ChannelRequest::Setup(fx.setup.clone())), vec![]);
    assert_eq!(fx.sign_cp(fx.cp_info(N0, theirs, 0, vec![]), vec![]), vec![]);
    let req = fx.validate_req(fx.holder_info(N0, 0, theirs, vec![]), vec![]);
    assert_eq!(fx.run(req), vec![]);
    assert_eq!(fx.confirm_funding(), vec![]);
    // They pay us 200k: the incoming HTLC lands in our holder commitment first.
    let theirs2 = fx.ours_sat(1, 200_000, 0);
    let req = fx.validate_req(fx.holder_info(N0 - 1, 0, theirs2, vec![htlc(false, 200_000, 3)]), vec![]);
    assert_eq!(fx.run(req), vec![]);
    let entry = fx.payments.get(&sha256::Hash::hash(&[3; 32]).to_byte_array()).unwrap();
    assert_eq!(entry.incoming_msat, 200_000_000);
}

#[test]
fn a_spent_funding_output_withdraws_the_channels_cover_and_ends_its_updates() {
    use crate::funding_proof::tests::mine;
    use bitcoin::consensus::encode::serialize;
    let mut fx = Fx::new(false);
    let theirs = fx.ours_sat(0, 0, 0);
    assert_eq!(fx.run(ChannelRequest::Setup(fx.setup.clone())), vec![]);
    assert_eq!(fx.sign_cp(fx.cp_info(N0, theirs, 0, vec![]), vec![]), vec![]);
    let req = fx.validate_req(fx.holder_info(N0, 0, theirs, vec![]), vec![]);
    assert_eq!(fx.run(req), vec![]);
    assert_eq!(fx.confirm_funding(), vec![]);
    let theirs2 = fx.ours_sat(1, 200_000, 0);
    let req = fx.validate_req(fx.holder_info(N0 - 1, 0, theirs2, vec![htlc(false, 200_000, 3)]), vec![]);
    assert_eq!(fx.run(req), vec![]);
    let hash = sha256::Hash::hash(&[3; 32]).to_byte_array();
    assert_eq!(fx.payments.get(&hash).unwrap().incoming_msat, 200_000_000);
    // A block with a transaction spending the funding output (the peer's commitment),
    // and one with a transaction that spends something else.
    let funding = bitcoin::OutPoint { txid: fx.funding_tx.compute_txid(), vout: 0 };
    let mut spend = crate::funding_proof::tests::paying(0x99, &script(b"them"), 900_000);
    let unrelated = spend.clone();
    spend.input[0].previous_output = funding;
    let mut chain = fx.chain.clone().unwrap();
    let block = mine(chain.tip_hash(), spend.compute_txid().to_byte_array(), 1_700_001_200);
    let other = mine(block.block_hash(), unrelated.compute_txid().to_byte_array(), 1_700_001_800);
    chain.extend(bitcoin::Network::Regtest, &[serialize(&block), serialize(&other)]).unwrap();
    fx.chain = Some(chain);
    let proof = |tx: &bitcoin::Transaction, header: &bitcoin::block::Header| qls_protocol::FundingProof {
        headers: vec![],
        tx: serialize(tx),
        block_header: serialize(header),
        merkle_branch: vec![],
        position: 0,
    };
    assert_eq!(fx.run(ChannelRequest::FundingSpent(proof(&unrelated, &other))), vec![PolicyTag::FundingProof]);
    assert_eq!(fx.payments.get(&hash).unwrap().incoming_msat, 200_000_000);
    assert_eq!(fx.run(ChannelRequest::FundingSpent(proof(&spend, &block))), vec![]);
    assert_eq!(fx.state.as_ref().unwrap().funding_spent_at, Some(3));
    // The incoming HTLC covers nothing any more; the channel signs no commitment.
    assert_eq!(fx.payments.get(&hash).unwrap().incoming_msat, 0);
    let info = fx.cp_info(N0 - 1, theirs2, 0, vec![htlc(true, 200_000, 3)]);
    assert_eq!(fx.sign_cp(info, vec![]), vec![PolicyTag::ChannelClosed]);
}

#[test]
fn incoming_htlcs_from_before_the_funding_proof_cover_once_it_is_proven() {
    let mut fx = Fx::new(false);
    let theirs = fx.ours_sat(0, 0, 0);
    assert_eq!(fx.run(ChannelRequest::Setup(fx.setup.clone())), vec![]);
    assert_eq!(fx.sign_cp(fx.cp_info(N0, theirs, 0, vec![]), vec![]), vec![]);
    let req = fx.validate_req(fx.holder_info(N0, 0, theirs, vec![]), vec![]);
    assert_eq!(fx.run(req), vec![]);
    let theirs2 = fx.ours_sat(1, 200_000, 0);
    let req = fx.validate_req(fx.holder_info(N0 - 1, 0, theirs2, vec![htlc(false, 200_000, 3)]), vec![]);
    assert_eq!(fx.run(req), vec![]);
    let hash = sha256::Hash::hash(&[3; 32]).to_byte_array();
    assert!(fx.payments.get(&hash).is_none_or(|e| e.incoming_msat == 0), "unproven: covers nothing");
    assert_eq!(fx.confirm_funding(), vec![]);
    assert_eq!(fx.payments.get(&hash).unwrap().incoming_msat, 200_000_000, "proven: the HTLC on it covers");
}

/// Mines `tx` into the fixture's chain (alone in its block) and hands the cosigner the
/// proof that it spent the funding output; returns its tags.
fn prove_funding_spend(fx: &mut Fx, tx: &Transaction) -> Vec<PolicyTag> {
    let depth = fx.policy.channel.funding_min_depth;
    prove_funding_spend_at(fx, tx, depth)
}

/// `prove_funding_spend` with the spending block `depth` deep.
fn prove_funding_spend_at(fx: &mut Fx, tx: &Transaction, depth: u32) -> Vec<PolicyTag> {
    use crate::funding_proof::tests::mine;
    use bitcoin::consensus::encode::serialize;
    let mut chain = fx.chain.clone().unwrap();
    let block = mine(chain.tip_hash(), tx.compute_txid().to_byte_array(), 1_700_001_200);
    let mut headers = vec![serialize(&block)];
    for k in 1..depth {
        headers.push(serialize(&mine(chain_tip_of(&headers), [0; 32], 1_700_001_200 + 600 * k)));
    }
    chain.extend(bitcoin::Network::Regtest, &headers).unwrap();
    fx.chain = Some(chain);
    let proof = qls_protocol::FundingProof {
        headers: vec![],
        tx: serialize(tx),
        block_header: serialize(&block),
        merkle_branch: vec![],
        position: 0,
    };
    fx.run(ChannelRequest::FundingSpent(proof))
}

fn chain_tip_of(headers: &[Vec<u8>]) -> bitcoin::BlockHash {
    let last: bitcoin::block::Header = bitcoin::consensus::deserialize(headers.last().unwrap()).unwrap();
    last.block_hash()
}

/// A spend proof shallower than `funding_min_depth` stops the channel but is not a fact to
/// sign on (a reorg could replace the spend); a proof of the spend at depth is.
#[test]
fn only_a_spend_at_depth_is_recorded_for_justice_claims_and_sweeps() {
    let mut fx = Fx::new(true);
    fx.open();
    assert_eq!(fx.confirm_funding(), vec![]);
    let latest = fx.latest_holder();
    let params = parse::transaction_parameters(&fx.setup).unwrap();
    let commitment = parse::commitment(&params, &latest, Broadcaster::Holder, &fx.secp).unwrap();
    let tx = commitment.trust().built_transaction().transaction.clone();
    assert_eq!(prove_funding_spend_at(&mut fx, &tx, 1), vec![]);
    let state = fx.state.as_ref().unwrap();
    assert!(state.funding_spent_at.is_some(), "a shallow spend stops the channel");
    assert!(state.funding_spend.is_none(), "but is not signed on");
    assert_eq!(prove_funding_spend_at(&mut fx, &tx, 2), vec![]);
    let spend = fx.state.as_ref().unwrap().funding_spend.as_ref().expect("recorded at depth");
    assert_eq!(spend.txid, tx.compute_txid().to_byte_array());
}

#[test]
fn justice_takes_only_a_proven_revoked_counterparty_commitment_to_our_wallet() {
    // They fund: their balance is the to_local a revoked commitment of theirs carries.
    let mut fx = Fx::new(false);
    let theirs = fx.ours_sat(0, 0, 0);
    assert_eq!(fx.run(ChannelRequest::Setup(fx.setup.clone())), vec![]);
    assert_eq!(fx.sign_cp(fx.cp_info(N0, theirs, 0, vec![]), vec![]), vec![]);
    let req = fx.validate_req(fx.holder_info(N0, 0, theirs, vec![]), vec![]);
    assert_eq!(fx.run(req), vec![]);
    assert_eq!(fx.confirm_funding(), vec![]);
    // One more round: their commitment N0 is revoked, N0 - 1 is not.
    assert_eq!(fx.round(N0 - 1, 0, theirs, vec![], vec![]), vec![]);
    let params = parse::transaction_parameters(&fx.setup).unwrap();
    let broadcast = |n: u64| {
        let c = parse::commitment(&params, &fx.cp_info(n, theirs, 0, vec![]), Broadcaster::Counterparty, &fx.secp);
        c.unwrap().trust().built_transaction().transaction.clone()
    };
    let (revoked, current) = (broadcast(N0), broadcast(N0 - 1));
    let to_local = |tx: &Transaction| tx.output.iter().position(|o| o.value.to_sat() == theirs).unwrap() as u32;
    let justice = |of: &Transaction, extra_input: bool, to: &[u8], out_sat: u64, amount_sat: u64| {
        let mut input = vec![bitcoin::TxIn {
            previous_output: bitcoin::OutPoint { txid: of.compute_txid(), vout: to_local(of) },
            ..Default::default()
        }];
        if extra_input {
            input.push(bitcoin::TxIn {
                previous_output: bitcoin::OutPoint { txid: bitcoin::Txid::from_byte_array([0xee; 32]), vout: 0 },
                ..Default::default()
            });
        }
        let tx = Transaction {
            version: bitcoin::transaction::Version::TWO,
            lock_time: bitcoin::absolute::LockTime::ZERO,
            input,
            output: vec![bitcoin::TxOut { value: bitcoin::Amount::from_sat(out_sat), script_pubkey: script(to) }],
        };
        ChannelRequest::SignJustice { tx: bitcoin::consensus::serialize(&tx), input: 0, amount_sat, htlc: None }
    };
    // Nothing proven spent yet: no commitment to punish.
    assert_eq!(fx.run(justice(&revoked, false, b"wallet", theirs - 1_000, theirs)), vec![PolicyTag::JusticeRevoked]);

    // Their unrevoked commitment on chain: not a justice case.
    let mut honest = fx.clone();
    assert_eq!(prove_funding_spend(&mut honest, &current), vec![]);
    assert_eq!(
        honest.run(justice(&current, false, b"wallet", theirs - 1_000, theirs)),
        vec![PolicyTag::JusticeRevoked]
    );

    // Their revoked commitment on chain: decoded from the transaction itself.
    assert_eq!(prove_funding_spend(&mut fx, &revoked), vec![]);
    let spend = fx.state.as_ref().unwrap().funding_spend.clone().unwrap();
    assert_eq!(spend.commitment_number, Some(N0));
    assert_eq!(spend.txid, revoked.compute_txid().to_byte_array());
    assert_eq!(fx.run(justice(&revoked, false, b"wallet", theirs - 1_000, theirs)), vec![]);
    assert_eq!(
        fx.run(justice(&revoked, false, b"attacker", theirs - 1_000, theirs)),
        vec![PolicyTag::SweepDestination]
    );
    // Another value than the proven output's, an input of unknown value, a fee over the cap.
    assert_eq!(fx.run(justice(&revoked, false, b"wallet", 1_000, 2_000)), vec![PolicyTag::JusticeRevoked]);
    assert_eq!(fx.run(justice(&revoked, true, b"wallet", theirs - 1_000, theirs)), vec![PolicyTag::SweepFeeRange]);
    assert_eq!(fx.run(justice(&revoked, false, b"wallet", 1_000, theirs)), vec![PolicyTag::SweepFeeRange]);
}

#[test]
fn claims_on_the_counterpartys_commitment_spend_only_our_htlcs_of_the_one_we_signed() {
    let mut fx = Fx::new(true);
    fx.open();
    assert_eq!(fx.confirm_funding(), vec![]);
    approve(&mut fx, 6, 100_000);
    let ours = fx.ours_sat(1, 100_000, 0);
    // Our HTLC, as their commitment carries it (offered by us: received by them).
    let our_htlc = htlc(false, 100_000, 6);
    assert_eq!(fx.round(N0 - 1, ours, 0, vec![our_htlc.clone()], vec![]), vec![]);
    let params = parse::transaction_parameters(&fx.setup).unwrap();
    let info = fx.cp_info(N0 - 1, 0, ours, vec![our_htlc.clone()]);
    let built = parse::commitment(&params, &info, Broadcaster::Counterparty, &fx.secp).unwrap();
    let theirs_on_chain = built.trust().built_transaction().transaction.clone();
    let vout = built.nondust_htlcs()[0].transaction_output_index.unwrap();
    let claim = |lock: u32, to: &[u8], out_sat: u64, amount_sat: u64, h: &HtlcInfo| {
        let tx = Transaction {
            version: bitcoin::transaction::Version::TWO,
            lock_time: bitcoin::absolute::LockTime::from_consensus(lock),
            input: vec![bitcoin::TxIn {
                previous_output: bitcoin::OutPoint { txid: theirs_on_chain.compute_txid(), vout },
                sequence: bitcoin::Sequence(1),
                ..Default::default()
            }],
            output: vec![bitcoin::TxOut { value: bitcoin::Amount::from_sat(out_sat), script_pubkey: script(to) }],
        };
        let tx = bitcoin::consensus::serialize(&tx);
        ChannelRequest::SignCounterpartyHtlcClaim { tx, input: 0, amount_sat, htlc: h.clone() }
    };
    let expiry = our_htlc.cltv_expiry;
    // Nothing proven on chain yet.
    let honest = claim(expiry, b"wallet", 99_000, 100_000, &our_htlc);
    assert_eq!(fx.run(honest.clone()), vec![PolicyTag::CounterpartyClaimSource]);

    // Our own commitment on chain (same number): not the counterparty's we signed.
    let mut ours_on_chain = fx.clone();
    let holder = fx.latest_holder();
    let ours_tx = parse::commitment(&params, &holder, Broadcaster::Holder, &fx.secp).unwrap();
    let ours_tx = ours_tx.trust().built_transaction().transaction.clone();
    assert_eq!(prove_funding_spend(&mut ours_on_chain, &ours_tx), vec![]);
    assert_eq!(ours_on_chain.run(honest.clone()), vec![PolicyTag::CounterpartyClaimSource]);

    assert_eq!(prove_funding_spend(&mut fx, &theirs_on_chain), vec![]);
    assert_eq!(fx.run(honest), vec![]);
    // Before its expiry, to someone else, another HTLC, another value, a fee over the cap.
    assert_eq!(fx.run(claim(expiry - 1, b"wallet", 99_000, 100_000, &our_htlc)), vec![PolicyTag::SweepLocktime]);
    assert_eq!(fx.run(claim(expiry, b"attacker", 99_000, 100_000, &our_htlc)), vec![PolicyTag::SweepDestination]);
    let invented = htlc(false, 100_000, 7);
    assert_eq!(fx.run(claim(expiry, b"wallet", 99_000, 100_000, &invented)), vec![PolicyTag::CounterpartyClaimSource]);
    assert_eq!(fx.run(claim(expiry, b"wallet", 80_000, 90_000, &our_htlc)), vec![PolicyTag::CounterpartyClaimSource]);
    fx.policy.channel.sweep_fee_max_sat = 10_000;
    assert_eq!(fx.run(claim(expiry, b"wallet", 89_999, 100_000, &our_htlc)), vec![PolicyTag::SweepFeeRange]);
}

#[test]
fn the_previous_counterparty_commitment_is_kept_until_revoked() {
    let mut fx = Fx::new(true);
    fx.open();
    let ours = fx.ours_sat(0, 0, 0);
    assert_eq!(fx.sign_cp(fx.cp_info(N0 - 1, 0, ours, vec![]), vec![]), vec![]);
    let cp = &fx.state.as_ref().unwrap().counterparty;
    assert_eq!(cp.previous.as_ref().map(|c| c.commitment_number), Some(N0), "either may be broadcast");
    // Oldest first: revoking the latest before it would leave a gap in the secret store.
    let skip =
        ChannelRequest::ValidateCounterpartyRevocation { commitment_number: N0 - 1, secret: fx.cp.secret(N0 - 1) };
    assert_eq!(fx.run(skip), vec![PolicyTag::CommitmentSequence]);
    let secret = fx.cp.secret(N0);
    assert_eq!(fx.run(ChannelRequest::ValidateCounterpartyRevocation { commitment_number: N0, secret }), vec![]);
    assert_eq!(fx.state.as_ref().unwrap().counterparty.previous, None, "revoked: only justice applies");
}

#[test]
fn a_channel_announcement_is_signed_only_for_this_proven_channel_and_its_keys() {
    use bitcoin::constants::ChainHash;
    use lightning::ln::msgs::UnsignedChannelAnnouncement;
    use lightning::routing::gossip::NodeId;
    use lightning::types::features::ChannelFeatures;
    use lightning::util::ser::Writeable;
    let mut fx = Fx::new(true);
    fx.open();
    let ours = PublicKey::from_secret_key(&fx.secp, &fx.holder.funding);
    let theirs = PublicKey::from_secret_key(&fx.secp, &fx.cp.funding);
    let secp = fx.secp.clone();
    let node =
        |b: u8| NodeId::from_pubkey(&PublicKey::from_secret_key(&secp, &SecretKey::from_slice(&[b; 32]).unwrap()));
    let scid = lightning::util::scid_utils::scid_from_parts(1, 0, 0).unwrap();
    let announcement = |scid: u64, k1: PublicKey, k2: PublicKey, chain: ChainHash, excess: Vec<u8>| {
        let msg = UnsignedChannelAnnouncement {
            features: ChannelFeatures::empty(),
            chain_hash: chain,
            short_channel_id: scid,
            node_id_1: node(0x31),
            node_id_2: node(0x32),
            bitcoin_key_1: NodeId::from_pubkey(&k1),
            bitcoin_key_2: NodeId::from_pubkey(&k2),
            excess_data: excess,
        };
        ChannelRequest::SignChannelAnnouncement { message: msg.encode() }
    };
    let regtest = ChainHash::using_genesis_block(bitcoin::Network::Regtest);
    let honest = announcement(scid, theirs, ours, regtest, vec![]);
    // Not proven on chain yet: no short channel id to announce.
    assert_eq!(fx.run(honest.clone()), vec![PolicyTag::ChannelAnnouncement]);
    assert_eq!(fx.confirm_funding(), vec![]);
    assert_eq!(fx.run(honest), vec![]);
    assert_eq!(fx.run(announcement(scid, ours, theirs, regtest, vec![])), vec![], "either key order");
    let refused = [
        announcement(scid + 1, theirs, ours, regtest, vec![]),
        announcement(scid, node(0x33).as_pubkey().unwrap(), ours, regtest, vec![]),
        announcement(scid, theirs, ours, ChainHash::BITCOIN, vec![]),
        announcement(scid, theirs, ours, regtest, vec![1, 2, 3]),
        // A transaction's signature preimage instead of an announcement.
        ChannelRequest::SignChannelAnnouncement { message: bitcoin::consensus::serialize(&fx.funding_tx.clone()) },
    ];
    for r in refused {
        assert_eq!(fx.run(r), vec![PolicyTag::ChannelAnnouncement]);
    }
}

#[test]
fn to_remote_sweep_rules() {
    let mut fx = Fx::new(true);
    fx.open();
    let sweep = |inputs: usize, sequence: u32, to: &[u8], out_sat: u64| {
        let input = |i: u8| bitcoin::TxIn {
            previous_output: bitcoin::OutPoint { txid: bitcoin::Txid::from_byte_array([i; 32]), vout: 1 },
            sequence: bitcoin::Sequence(sequence),
            ..Default::default()
        };
        let tx = Transaction {
            version: bitcoin::transaction::Version::TWO,
            lock_time: bitcoin::absolute::LockTime::ZERO,
            input: (0..inputs as u8).map(input).collect(),
            output: vec![bitcoin::TxOut { value: bitcoin::Amount::from_sat(out_sat), script_pubkey: script(to) }],
        };
        ChannelRequest::SignRemoteSweep { tx: bitcoin::consensus::serialize(&tx), input: 0, amount_sat: 100_000 }
    };
    assert_eq!(fx.run(sweep(1, 1, b"wallet", 99_000)), vec![]);
    assert_eq!(fx.run(sweep(1, 1, b"attacker", 99_000)), vec![PolicyTag::SweepDestination]);
    assert_eq!(fx.run(sweep(1, 0, b"wallet", 99_000)), vec![PolicyTag::SweepSequence]);
    // A second input of unknown value: the fee could burn our output.
    assert_eq!(fx.run(sweep(2, 1, b"wallet", 1)), vec![PolicyTag::SweepFeeRange]);
}

// ---------------------------------------------------------------- one test per tag

#[test]
fn safe_type_only() {
    let mut fx = Fx::new(true);
    fx.setup.channel_type = ChannelTypeFeatures::only_static_remote_key().le_flags().to_vec();
    assert_eq!(fx.run(ChannelRequest::Setup(fx.setup.clone())), vec![PolicyTag::ChannelSafeType]);
}

#[test]
fn contest_delay_out_of_range() {
    let mut fx = Fx::new(true);
    fx.setup.holder_selected_contest_delay = 6;
    assert_eq!(fx.run(ChannelRequest::Setup(fx.setup.clone())), vec![PolicyTag::ChannelContestDelay]);
}

#[test]
fn counterparty_delay_above_maximum() {
    let mut fx = Fx::new(true);
    fx.setup.counterparty_selected_contest_delay = 5000;
    assert_eq!(fx.run(ChannelRequest::Setup(fx.setup.clone())), vec![PolicyTag::ChannelCounterpartyDelay]);
}

#[test]
fn channel_id_reuse() {
    let mut fx = Fx::new(true);
    fx.open();
    assert_eq!(fx.run(ChannelRequest::Setup(fx.setup.clone())), vec![], "identical setup is a retry");
    let mut other = fx.setup.clone();
    other.channel_value_sat += 1;
    assert_eq!(fx.run(ChannelRequest::Setup(other)), vec![PolicyTag::ChannelIdReuse]);
}

#[test]
fn incoming_htlcs_cover_forwards_only_once_the_funding_is_proven() {
    let hash = sha256::Hash::hash(&[3; 32]).to_byte_array();
    let incoming = |fx: &mut Fx| {
        let all = fx.ours_sat(0, 0, 0);
        assert_eq!(fx.run(ChannelRequest::Setup(fx.setup.clone())), vec![]);
        assert_eq!(fx.sign_cp(fx.cp_info(N0, all, 0, vec![]), vec![]), vec![]);
        let req = fx.validate_req(fx.holder_info(N0, 0, all, vec![]), vec![]);
        assert_eq!(fx.run(req), vec![]);
    };
    // Never proven: the incoming HTLC is accepted but covers nothing.
    let mut fx = Fx::new(false);
    incoming(&mut fx);
    let theirs = fx.ours_sat(1, 200_000, 0);
    let req = fx.validate_req(fx.holder_info(N0 - 1, 0, theirs, vec![htlc(false, 200_000, 3)]), vec![]);
    assert_eq!(fx.run(req), vec![]);
    assert!(fx.payments.get(&hash).is_none_or(|e| e.incoming_msat == 0));
    // A proof that does not hold is refused and changes nothing.
    let mut bad = Fx::new(false);
    incoming(&mut bad);
    bad.funding_tx.output[0].value = bitcoin::Amount::from_sat(VALUE - 1);
    assert_eq!(bad.confirm_funding(), vec![PolicyTag::FundingProof]);
    assert_eq!(bad.state.as_ref().unwrap().funding_confirmed_at, None);
    // Proven at depth: it covers.
    let mut fx = Fx::new(false);
    incoming(&mut fx);
    assert_eq!(fx.confirm_funding(), vec![]);
    assert_eq!(fx.state.as_ref().unwrap().funding_confirmed_at, Some(1));
    let req = fx.validate_req(fx.holder_info(N0 - 1, 0, theirs, vec![htlc(false, 200_000, 3)]), vec![]);
    assert_eq!(fx.run(req), vec![]);
    assert_eq!(fx.payments.get(&hash).unwrap().incoming_msat, 200_000_000);
}

#[test]
fn funding_velocity_limits_channels_we_fund() {
    // Room for one channel of VALUE in the window, not two.
    let mut fx = Fx::new(true);
    fx.policy.channel.funding_velocity_max_sat = 2 * VALUE - 1;
    assert_eq!(fx.run(ChannelRequest::Setup(fx.setup.clone())), vec![]);
    let first = fx.state.take();
    // A second channel we fund (a fresh state: another channel id) passes the limit and is
    // refused; one the counterparty funds counts nothing.
    assert_eq!(fx.run(ChannelRequest::Setup(fx.setup.clone())), vec![PolicyTag::FundingVelocity]);
    assert!(fx.state.is_none());
    let mut theirs = fx.setup.clone();
    theirs.is_outbound = false;
    assert_eq!(fx.run(ChannelRequest::Setup(theirs)), vec![]);
    // The retry of an existing setup counts nothing either.
    fx.state = first;
    assert_eq!(fx.run(ChannelRequest::Setup(fx.setup.clone())), vec![]);
}

#[test]
fn setup_with_foreign_holder_keys_refused() {
    let mut fx = Fx::new(true);
    fx.holder_keys = Some(HolderKeysCheck::NotOurs("attested by nobody we pin".into()));
    assert_eq!(fx.run(ChannelRequest::Setup(fx.setup.clone())), vec![PolicyTag::ChannelHolderKeys]);
    assert!(fx.state.is_none(), "nothing stored");
    fx.holder_keys = None;
    assert_eq!(fx.run(ChannelRequest::Setup(fx.setup.clone())), vec![PolicyTag::ChannelHolderKeys]);
    fx.holder_keys = Some(HolderKeysCheck::Ours);
    assert_eq!(fx.run(ChannelRequest::Setup(fx.setup.clone())), vec![]);
}

#[test]
fn incoming_htlc_failed_after_outgoing_fulfilled() {
    // They fund; they pay us 200,000 sat through an incoming HTLC that we forward.
    let start = |fx: &mut Fx| {
        let all = fx.ours_sat(0, 0, 0);
        assert_eq!(fx.run(ChannelRequest::Setup(fx.setup.clone())), vec![]);
        assert_eq!(fx.sign_cp(fx.cp_info(N0, all, 0, vec![]), vec![]), vec![]);
        let req = fx.validate_req(fx.holder_info(N0, 0, all, vec![]), vec![]);
        assert_eq!(fx.run(req), vec![]);
        assert_eq!(fx.confirm_funding(), vec![]);
        let theirs = fx.ours_sat(1, 200_000, 0);
        assert_eq!(fx.round(N0 - 1, 0, theirs, vec![htlc(true, 200_000, 3)], vec![]), vec![]);
        all
    };
    let hash = sha256::Hash::hash(&[3; 32]).to_byte_array();
    // While the outgoing leg is pending, failing back is allowed.
    let mut fx = Fx::new(false);
    let all = start(&mut fx);
    assert_eq!(fx.round(N0 - 2, 0, all, vec![], vec![]), vec![]);
    // Once it was fulfilled downstream (the payment settled node-wide), the incoming HTLC
    // may leave only claimed, on either side's commitment.
    let mut fx = Fx::new(false);
    let all = start(&mut fx);
    fx.payments.get_mut(&hash).expect("incoming recorded").settled = true;
    assert_eq!(fx.sign_cp(fx.cp_info(N0 - 2, all, 0, vec![]), vec![]), vec![PolicyTag::RoutingFailAfterFulfil]);
    let req = fx.validate_req(fx.holder_info(N0 - 2, 0, all, vec![]), vec![]);
    assert_eq!(fx.run(req), vec![PolicyTag::RoutingFailAfterFulfil]);
    let theirs = fx.ours_sat(0, 0, 200_000);
    assert_eq!(fx.round(N0 - 2, 200_000, theirs, vec![], vec![]), vec![]);

    // Two incoming HTLCs of one amount, one settled downstream: failing the settled one
    // while claiming the other raises our balance by the same amount — refused; claiming
    // the settled one alone (the other stays) is fine.
    let mut fx = Fx::new(false);
    let all = fx.ours_sat(0, 0, 0);
    assert_eq!(fx.run(ChannelRequest::Setup(fx.setup.clone())), vec![]);
    assert_eq!(fx.sign_cp(fx.cp_info(N0, all, 0, vec![]), vec![]), vec![]);
    let req = fx.validate_req(fx.holder_info(N0, 0, all, vec![]), vec![]);
    assert_eq!(fx.run(req), vec![]);
    assert_eq!(fx.confirm_funding(), vec![]);
    let two = vec![htlc(true, 100_000, 3), htlc(true, 100_000, 4)];
    assert_eq!(fx.round(N0 - 1, 0, fx.ours_sat(2, 200_000, 0), two, vec![]), vec![]);
    fx.payments.get_mut(&hash).expect("incoming recorded").settled = true;
    let swapped = fx.cp_info(N0 - 2, fx.ours_sat(0, 0, 100_000), 100_000, vec![]);
    assert_eq!(fx.sign_cp(swapped, vec![]), vec![PolicyTag::RoutingFailAfterFulfil]);
    let claimed = vec![htlc(true, 100_000, 4)];
    assert_eq!(fx.round(N0 - 2, 100_000, fx.ours_sat(1, 100_000, 100_000), claimed, vec![]), vec![]);
}

#[test]
fn no_update_after_close() {
    let mut fx = Fx::new(true);
    fx.open();
    let ours = fx.ours_sat(0, 0, 0);
    let close = ChannelRequest::SignClosing {
        to_holder_sat: VALUE - 1000,
        to_counterparty_sat: 0,
        to_holder_script: script(b"wallet").to_bytes(),
        to_counterparty_script: script(b"them").to_bytes(),
    };
    assert_eq!(fx.state.as_ref().unwrap().closed_at, None);
    assert_eq!(fx.run(close), vec![]);
    // The closing time (the cosigner's clock) is what pruning counts from.
    assert_eq!(fx.state.as_ref().unwrap().closed_at, Some(NOW));
    let info = fx.cp_info(N0 - 1, 0, ours, vec![]);
    assert_eq!(fx.sign_cp(info, vec![]), vec![PolicyTag::ChannelClosed]);
}

#[test]
fn outbound_push_refused() {
    let mut fx = Fx::new(true);
    assert_eq!(fx.run(ChannelRequest::Setup(fx.setup.clone())), vec![]);
    let info = fx.cp_info(N0, 10_000, fx.ours_sat(0, 0, 10_000), vec![]);
    assert_eq!(fx.sign_cp(info, vec![]), vec![PolicyTag::FundingNoPush]);
}

#[test]
fn commitment_number_skips() {
    let mut fx = Fx::new(true);
    fx.open();
    let info = fx.cp_info(N0 - 5, 0, fx.ours_sat(0, 0, 0), vec![]);
    let tags = fx.sign_cp(info, vec![]);
    assert!(tags.contains(&PolicyTag::CommitmentSequence), "{tags:?}");
}

#[test]
fn retry_with_other_data() {
    let mut fx = Fx::new(true);
    fx.open();
    let info = fx.cp_info(N0, 1000, fx.ours_sat(0, 0, 1000), vec![]);
    assert_eq!(fx.sign_cp(info, vec![]), vec![PolicyTag::CommitmentRetrySame]);
}

#[test]
fn third_unrevoked_commitment() {
    let mut fx = Fx::new(true);
    fx.open();
    let ours = fx.ours_sat(0, 0, 0);
    assert_eq!(fx.sign_cp(fx.cp_info(N0 - 1, 0, ours, vec![]), vec![]), vec![]);
    // N0 and N0-1 are both unrevoked: N0-2 must wait for N0's revocation.
    assert_eq!(fx.sign_cp(fx.cp_info(N0 - 2, 0, ours, vec![]), vec![]), vec![PolicyTag::CommitmentPreviousRevoked]);
}

#[test]
fn first_commitment_with_htlc() {
    let mut fx = Fx::new(false);
    assert_eq!(fx.run(ChannelRequest::Setup(fx.setup.clone())), vec![]);
    let theirs = fx.ours_sat(1, 1000, 0);
    let info = fx.cp_info(N0, theirs, 0, vec![htlc(true, 1000, 2)]);
    assert_eq!(fx.sign_cp(info, vec![]), vec![PolicyTag::CommitmentFirstNoHtlcs]);
}

#[test]
fn too_many_htlcs() {
    let mut fx = Fx::new(true);
    fx.policy.channel.max_htlcs = 2;
    fx.open();
    approve(&mut fx, 4, 30_000);
    let hs = vec![htlc(false, 10_000, 4), htlc(false, 10_000, 4), htlc(false, 10_000, 4)];
    let info = fx.cp_info(N0 - 1, 0, fx.ours_sat(3, 30_000, 0), hs);
    assert_eq!(fx.sign_cp(info, vec![]), vec![PolicyTag::CommitmentHtlcCount]);
}

#[test]
fn inflight_above_limit() {
    let mut fx = Fx::new(true);
    fx.policy.channel.max_inflight_msat = 50_000_000;
    fx.open();
    approve(&mut fx, 5, 60_000);
    let info = fx.cp_info(N0 - 1, 0, fx.ours_sat(1, 60_000, 0), vec![htlc(false, 60_000, 5)]);
    assert_eq!(fx.sign_cp(info, vec![]), vec![PolicyTag::CommitmentHtlcInflight]);
}

#[test]
fn commitment_feerate_out_of_range() {
    let mut fx = Fx::new(true);
    fx.open();
    let mut info = fx.cp_info(N0 - 1, 0, fx.ours_sat(0, 0, 0), vec![]);
    info.feerate_per_kw = 200;
    info.to_countersignatory_sat = VALUE - 1124 * 200 / 1000 - 660;
    assert_eq!(fx.sign_cp(info, vec![]), vec![PolicyTag::CommitmentFeeRange]);
}

#[test]
fn outputs_exceed_channel_value() {
    let mut fx = Fx::new(true);
    fx.open();
    let info = fx.cp_info(N0 - 1, 5_000, fx.ours_sat(0, 0, 0), vec![]);
    let tags = fx.sign_cp(info, vec![]);
    assert!(tags.contains(&PolicyTag::CommitmentValue), "{tags:?}");
}

#[test]
fn balance_drop_without_preimage() {
    let mut fx = Fx::new(true);
    fx.open();
    approve(&mut fx, 6, 100_000);
    let ours = fx.ours_sat(1, 100_000, 0);
    assert_eq!(fx.round(N0 - 1, ours, 0, vec![htlc(false, 100_000, 6)], vec![]), vec![]);
    // The HTLC is removed and its value given to them, but no preimage was shown.
    let ours = fx.ours_sat(0, 0, 100_000);
    let info = fx.cp_info(N0 - 2, 100_000, ours, vec![]);
    assert_eq!(fx.sign_cp(info, vec![]), vec![PolicyTag::CommitmentHolderBalance]);
}

#[test]
fn small_drains_below_the_dust_allowance_are_refused() {
    // Found by the simnet's drain-attack scenario: the channel-wide dust allowance (50,000
    // sat) used to excuse any fall of our balance up to it, on every update.
    for drain in [1_000, 10_000, 49_000] {
        let mut fx = Fx::new(true);
        fx.open();
        let info = fx.cp_info(N0 - 1, drain, fx.ours_sat(0, 0, drain), vec![]);
        assert_eq!(fx.sign_cp(info, vec![]), vec![PolicyTag::CommitmentHolderBalance], "{drain} sat");
    }
}

#[test]
fn holder_commitment_bad_signature() {
    let mut fx = Fx::new(true);
    fx.open();
    let ours = fx.ours_sat(0, 0, 0);
    let mut req = fx.validate_req(fx.holder_info(N0 - 1, ours, 0, vec![]), vec![]);
    if let ChannelRequest::ValidateHolderCommitment { commitment, .. } = &mut req {
        commitment.to_broadcaster_sat -= 1; // signed one tx, asked to accept another
    }
    assert_eq!(fx.run(req), vec![PolicyTag::CommitmentCounterpartySig]);
}

#[test]
fn holder_commitment_htlc_signatures_missing_or_bad() {
    let mut fx = Fx::new(true);
    fx.open();
    let ours = fx.ours_sat(1, 50_000, 0);
    let info = fx.holder_info(N0 - 1, ours, 0, vec![htlc(true, 50_000, 15)]);
    let req = fx.validate_req(info, vec![]);
    let ChannelRequest::ValidateHolderCommitment { commitment, counterparty_sig, mut counterparty_htlc_sigs, .. } = req
    else {
        unreachable!()
    };
    // The commitment signature is good; the one HTLC signature is for another transaction.
    let good = counterparty_htlc_sigs.clone();
    counterparty_htlc_sigs[0] = counterparty_sig.clone();
    for htlc_sigs in [vec![], counterparty_htlc_sigs, [good.clone(), good].concat()] {
        let req = ChannelRequest::ValidateHolderCommitment {
            commitment: commitment.clone(),
            counterparty_sig: counterparty_sig.clone(),
            counterparty_htlc_sigs: htlc_sigs,
            outbound_preimages: vec![],
        };
        assert_eq!(fx.run(req), vec![PolicyTag::CommitmentHtlcSigs]);
    }
}

#[test]
fn revoked_holder_commitment_not_signed() {
    let mut fx = Fx::new(true);
    fx.open();
    let old = fx.latest_holder();
    let ours = fx.ours_sat(0, 0, 0);
    assert_eq!(fx.round(N0 - 1, ours, 0, vec![], vec![]), vec![]);
    assert_eq!(
        fx.run(ChannelRequest::SignHolderCommitment { commitment: old }),
        vec![PolicyTag::CommitmentHolderRevoked]
    );
    let latest = fx.latest_holder();
    assert_eq!(fx.run(ChannelRequest::SignHolderCommitment { commitment: latest }), vec![]);
}

#[test]
fn unknown_holder_commitment_not_signed() {
    let mut fx = Fx::new(true);
    fx.open();
    let mut forged = fx.latest_holder();
    forged.to_broadcaster_sat -= 500;
    assert_eq!(
        fx.run(ChannelRequest::SignHolderCommitment { commitment: forged }),
        vec![PolicyTag::CommitmentHolderUnknown]
    );
}

#[test]
fn revoke_before_next_commitment() {
    let mut fx = Fx::new(true);
    fx.open();
    // The latest validated holder commitment is N0: revoking it would leave us nothing.
    assert_eq!(
        fx.run(ChannelRequest::ReleaseCommitmentSecret { commitment_number: N0 }),
        vec![PolicyTag::RevokeBeforeNext]
    );
}

#[test]
fn wrong_revocation_secret() {
    let mut fx = Fx::new(true);
    fx.open();
    let ours = fx.ours_sat(0, 0, 0);
    assert_eq!(fx.sign_cp(fx.cp_info(N0 - 1, 0, ours, vec![]), vec![]), vec![]);
    let wrong = fx.cp.secret(N0 - 1);
    assert_eq!(
        fx.run(ChannelRequest::ValidateCounterpartyRevocation { commitment_number: N0, secret: wrong }),
        vec![PolicyTag::RevocationSecretMismatch]
    );
    let right = fx.cp.secret(N0);
    assert_eq!(fx.run(ChannelRequest::ValidateCounterpartyRevocation { commitment_number: N0, secret: right }), vec![]);
}

#[test]
fn revocation_secret_off_the_bolt3_chain_refused() {
    let mut fx = Fx::new(true);
    fx.open();
    let ours = fx.ours_sat(0, 0, 0);
    // Commitment N0 - 1 under a point of another seed: its secret matches its point, but
    // does not derive the already revealed secret of N0 (BOLT 3 shachain).
    let other = Side::new(3);
    let mut info = fx.cp_info(N0 - 1, 0, ours, vec![]);
    info.per_commitment_point = other.point(&fx.secp, N0 - 1);
    assert_eq!(fx.sign_cp(info, vec![]), vec![]);
    let right = fx.cp.secret(N0);
    assert_eq!(fx.run(ChannelRequest::ValidateCounterpartyRevocation { commitment_number: N0, secret: right }), vec![]);
    let off_chain = other.secret(N0 - 1);
    assert_eq!(
        fx.run(ChannelRequest::ValidateCounterpartyRevocation { commitment_number: N0 - 1, secret: off_chain }),
        vec![PolicyTag::RevocationSecretChain]
    );
}

fn closing(to_holder: u64, to_cp: u64, to: &[u8]) -> ChannelRequest {
    ChannelRequest::SignClosing {
        to_holder_sat: to_holder,
        to_counterparty_sat: to_cp,
        to_holder_script: script(to).to_bytes(),
        to_counterparty_script: script(b"them").to_bytes(),
    }
}

#[test]
fn close_with_pending_htlc() {
    let mut fx = Fx::new(true);
    fx.open();
    approve(&mut fx, 7, 1_000);
    let ours = fx.ours_sat(1, 1_000, 0);
    assert_eq!(fx.round(N0 - 1, ours, 0, vec![htlc(false, 1_000, 7)], vec![]), vec![]);
    assert_eq!(fx.run(closing(VALUE - 2_000, 0, b"wallet")), vec![PolicyTag::ClosePendingHtlcs]);
}

#[test]
fn close_to_foreign_script() {
    let mut fx = Fx::new(true);
    fx.open();
    assert_eq!(fx.run(closing(VALUE - 1_000, 0, b"attacker")), vec![PolicyTag::CloseDestination]);
}

#[test]
fn close_with_a_dust_output_refused() {
    // We paid the counterparty 50,000 sat; a close giving it 200 sat on P2WPKH (dust
    // threshold 294) would never relay, and no force close is signed after it.
    let mut fx = Fx::new(true);
    fx.open();
    approve(&mut fx, 12, 50_000);
    let ours = fx.ours_sat(1, 50_000, 0);
    assert_eq!(fx.round(N0 - 1, ours, 0, vec![htlc(false, 50_000, 12)], vec![]), vec![]);
    let ours = fx.ours_sat(0, 0, 50_000);
    assert_eq!(fx.round(N0 - 2, ours, 50_000, vec![], vec![[12; 32]]), vec![]);
    assert_eq!(fx.run(closing(VALUE - 1_200, 200, b"wallet")), vec![PolicyTag::CloseOutputsStandard]);
    assert_eq!(fx.run(closing(VALUE - 51_000, 50_000, b"wallet")), vec![]);
}

#[test]
fn close_below_balance() {
    let mut fx = Fx::new(true);
    fx.open();
    assert_eq!(fx.run(closing(VALUE - 60_000, 59_000, b"wallet")), vec![PolicyTag::CloseValue]);
}

#[test]
fn close_fee_above_cap() {
    let mut fx = Fx::new(true);
    fx.open();
    assert_eq!(fx.run(closing(VALUE - 200_000, 0, b"wallet")), vec![PolicyTag::CloseFeeRange]);
}

/// Force-closes and returns a to_local sweep paying `to`, waiting `sequence`, with `fee`.
fn force_close_and_sweep(fx: &mut Fx, to: &[u8], sequence: u32, fee: u64, vout_shift: u32) -> ChannelRequest {
    let latest = fx.latest_holder();
    assert_eq!(fx.run(ChannelRequest::SignHolderCommitment { commitment: latest.clone() }), vec![]);
    let params = parse::transaction_parameters(&fx.setup).unwrap();
    let tx = parse::commitment(&params, &latest, Broadcaster::Holder, &fx.secp).unwrap();
    let trusted = tx.trust();
    let vout = trusted.revokeable_output_index().unwrap() as u32;
    let value = trusted.built_transaction().transaction.output[vout as usize].value.to_sat();
    let sweep = Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint { txid: trusted.txid(), vout: vout + vout_shift },
            script_sig: ScriptBuf::new(),
            sequence: Sequence(sequence),
            witness: Witness::new(),
        }],
        output: vec![TxOut { value: Amount::from_sat(value - fee), script_pubkey: script(to) }],
    };
    ChannelRequest::SignDelayedSweep { tx: bitcoin::consensus::serialize(&sweep), input: 0 }
}

#[test]
fn honest_sweep_after_force_close_is_allowed() {
    let mut fx = Fx::new(true);
    fx.open();
    let req = force_close_and_sweep(&mut fx, b"wallet", u32::from(DELAY), 500, 0);
    assert_eq!(fx.run(req), vec![]);
}

#[test]
fn anchor_spend_only_of_our_anchor() {
    let mut fx = Fx::new(true);
    fx.open();
    let latest = fx.latest_holder();
    let spend_of = |fx: &Fx, outpoint: OutPoint| ChannelRequest::SignHolderAnchor {
        tx: bitcoin::consensus::serialize(&Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: vec![TxIn {
                previous_output: outpoint,
                script_sig: ScriptBuf::new(),
                sequence: Sequence::MAX,
                witness: Witness::new(),
            }],
            output: vec![TxOut { value: Amount::from_sat(300), script_pubkey: fx.own[0].clone() }],
        }),
        input: 0,
    };
    // Before a force close there is nothing to bump.
    assert_eq!(
        fx.run(spend_of(&fx, OutPoint { txid: bitcoin::Txid::all_zeros(), vout: 0 })),
        vec![PolicyTag::SweepSource]
    );
    assert_eq!(fx.run(ChannelRequest::SignHolderCommitment { commitment: latest.clone() }), vec![]);
    let params = parse::transaction_parameters(&fx.setup).unwrap();
    let built =
        parse::commitment(&params, &latest, Broadcaster::Holder, &fx.secp).unwrap().trust().built_transaction().clone();
    let anchor =
        lightning::ln::chan_utils::get_keyed_anchor_redeemscript(&params.holder_pubkeys.funding_pubkey).to_p2wsh();
    let ours = built.transaction.output.iter().position(|o| o.script_pubkey == anchor).unwrap() as u32;
    assert_eq!(fx.run(spend_of(&fx, OutPoint { txid: built.txid, vout: ours })), vec![]);
    // The counterparty's anchor, or any other output of the commitment.
    for vout in (0..built.transaction.output.len() as u32).filter(|v| *v != ours) {
        assert_eq!(
            fx.run(spend_of(&fx, OutPoint { txid: built.txid, vout })),
            vec![PolicyTag::SweepSource],
            "output {vout}"
        );
    }
}

#[test]
fn sweep_to_foreign_script() {
    let mut fx = Fx::new(true);
    fx.open();
    let req = force_close_and_sweep(&mut fx, b"attacker", u32::from(DELAY), 500, 0);
    assert_eq!(fx.run(req), vec![PolicyTag::SweepDestination]);
}

#[test]
fn sweep_of_unknown_output() {
    let mut fx = Fx::new(true);
    fx.open();
    let req = force_close_and_sweep(&mut fx, b"wallet", u32::from(DELAY), 500, 1);
    assert_eq!(fx.run(req), vec![PolicyTag::SweepSource]);
}

#[test]
fn sweep_before_delay() {
    let mut fx = Fx::new(true);
    fx.open();
    let req = force_close_and_sweep(&mut fx, b"wallet", 3, 500, 0);
    assert_eq!(fx.run(req), vec![PolicyTag::SweepSequence]);
}

#[test]
fn sweep_fee_above_cap() {
    let mut fx = Fx::new(true);
    fx.open();
    let req = force_close_and_sweep(&mut fx, b"wallet", u32::from(DELAY), 150_000, 0);
    assert_eq!(fx.run(req), vec![PolicyTag::SweepFeeRange]);
}

/// An inbound channel whose latest holder commitment carries `incoming` HTLCs, force-closed;
/// returns that commitment and one unsigned HTLC-success transaction per HTLC (output order).
fn force_closed_with_incoming(fx: &mut Fx, incoming: Vec<HtlcInfo>) -> (CommitmentInfo, Vec<Transaction>) {
    let theirs = fx.ours_sat(0, 0, 0);
    assert_eq!(fx.run(ChannelRequest::Setup(fx.setup.clone())), vec![]);
    assert_eq!(fx.sign_cp(fx.cp_info(N0, theirs, 0, vec![]), vec![]), vec![]);
    let req = fx.validate_req(fx.holder_info(N0, 0, theirs, vec![]), vec![]);
    assert_eq!(fx.run(req), vec![]);
    let in_sat = incoming.iter().map(|h| h.amount_msat / 1000).sum();
    let theirs2 = fx.ours_sat(incoming.len(), in_sat, 0);
    let req = fx.validate_req(fx.holder_info(N0 - 1, 0, theirs2, incoming), vec![]);
    assert_eq!(fx.run(req), vec![]);
    let latest = fx.latest_holder();
    assert_eq!(fx.run(ChannelRequest::SignHolderCommitment { commitment: latest.clone() }), vec![]);
    let params = parse::transaction_parameters(&fx.setup).unwrap();
    let tx = parse::commitment(&params, &latest, Broadcaster::Holder, &fx.secp).unwrap();
    let trusted = tx.trust();
    let keys = trusted.keys();
    let htlc_txs = tx
        .nondust_htlcs()
        .iter()
        .map(|h| {
            build_htlc_transaction(
                &trusted.txid(),
                FEERATE,
                DELAY,
                h,
                &params.channel_type_features,
                &keys.broadcaster_delayed_payment_key,
                &keys.revocation_key,
            )
        })
        .collect();
    (latest, htlc_txs)
}

#[test]
fn htlc_success_wrong_preimage() {
    let mut fx = Fx::new(false);
    let incoming = htlc(false, 200_000, 8);
    let (latest, htlc_txs) = force_closed_with_incoming(&mut fx, vec![incoming.clone()]);
    let htlc_tx = htlc_txs[0].clone();
    let req = |preimage| ChannelRequest::SignHolderHtlc {
        tx: bitcoin::consensus::serialize(&htlc_tx),
        input: 0,
        commitment_number: latest.commitment_number,
        htlc: incoming.clone(),
        preimage,
    };
    assert_eq!(fx.run(req(Some([9; 32]))), vec![PolicyTag::HtlcPreimage]);
    assert_eq!(fx.run(req(Some([8; 32]))), vec![]);

    // The HTLC-success output, after the delay, sweeps to the wallet; an output of an HTLC
    // transaction we never signed does not.
    let sweep = |txid, value: u64| ChannelRequest::SignDelayedSweep {
        tx: bitcoin::consensus::serialize(&Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint { txid, vout: 0 },
                script_sig: ScriptBuf::new(),
                sequence: Sequence(u32::from(DELAY)),
                witness: Witness::new(),
            }],
            output: vec![TxOut { value: Amount::from_sat(value - 300), script_pubkey: script(b"wallet") }],
        }),
        input: 0,
    };
    let value = htlc_tx.output[0].value.to_sat();
    assert_eq!(fx.run(sweep(htlc_tx.compute_txid(), value)), vec![]);
    let mut other = htlc_tx.clone();
    other.lock_time = LockTime::from_consensus(1);
    assert_eq!(fx.run(sweep(other.compute_txid(), value)), vec![PolicyTag::SweepSource]);
}

#[test]
fn forward_without_incoming() {
    let mut fx = Fx::new(true);
    fx.open();
    let info = fx.cp_info(N0 - 1, 0, fx.ours_sat(1, 50_000, 0), vec![htlc(false, 50_000, 10)]);
    assert_eq!(fx.sign_cp(info, vec![]), vec![PolicyTag::RoutingUnbalanced]);
}

#[test]
fn own_payment_fee_above_cap() {
    // Approved 40,000 sat: the route may add 50 sat + 1 % (450 sat), no more.
    let mut fx = Fx::new(true);
    fx.open();
    approve(&mut fx, 11, 40_000);
    let info = fx.cp_info(N0 - 1, 0, fx.ours_sat(1, 40_451, 0), vec![htlc(false, 40_451, 11)]);
    assert_eq!(fx.sign_cp(info, vec![]), vec![PolicyTag::PaymentFeeMax]);
    let info = fx.cp_info(N0 - 1, 0, fx.ours_sat(1, 40_450, 0), vec![htlc(false, 40_450, 11)]);
    assert_eq!(fx.sign_cp(info, vec![]), vec![]);
    // A node that may pay no fee at all: the approved amount exactly.
    let mut fx = Fx::new(true);
    fx.policy.channel.payment_fee_max_base_msat = 0;
    fx.policy.channel.payment_fee_max_ppm = 0;
    fx.open();
    approve(&mut fx, 11, 40_000);
    let info = fx.cp_info(N0 - 1, 0, fx.ours_sat(1, 40_001, 0), vec![htlc(false, 40_001, 11)]);
    assert_eq!(fx.sign_cp(info, vec![]), vec![PolicyTag::PaymentFeeMax]);
}

#[test]
fn untrimmed_dust_output_refused() {
    let mut fx = Fx::new(true);
    fx.open();
    approve(&mut fx, 13, 1);
    // A 353-sat HTLC output: the commitment would not relay.
    let info = fx.cp_info(N0 - 1, 0, fx.ours_sat(1, 353, 0), vec![htlc(false, 353, 13)]);
    assert_eq!(fx.sign_cp(info, vec![]), vec![PolicyTag::CommitmentOutputsTrimmed, PolicyTag::PaymentFeeMax]);
    // The counterparty's 100-sat balance kept as an output.
    let info = fx.cp_info(N0 - 1, 100, fx.ours_sat(0, 0, 100), vec![]);
    assert!(fx.sign_cp(info, vec![]).contains(&PolicyTag::CommitmentOutputsTrimmed));
}

#[test]
fn htlc_expiry_as_a_time_refused() {
    let mut fx = Fx::new(true);
    fx.open();
    approve(&mut fx, 14, 50_000);
    let mut h = htlc(false, 50_000, 14);
    h.cltv_expiry = 500_000_000;
    let info = fx.cp_info(N0 - 1, 0, fx.ours_sat(1, 50_000, 0), vec![h]);
    assert_eq!(fx.sign_cp(info, vec![]), vec![PolicyTag::HtlcCltvRange]);
}

#[test]
fn invoice_paid_twice() {
    let mut fx = Fx::new(true);
    fx.open();
    approve(&mut fx, 12, 100_000);
    let ours = fx.ours_sat(1, 50_000, 0);
    assert_eq!(fx.round(N0 - 1, ours, 0, vec![htlc(false, 50_000, 12)], vec![]), vec![]);
    let ours = fx.ours_sat(0, 0, 50_000);
    assert_eq!(fx.round(N0 - 2, ours, 50_000, vec![], vec![[12; 32]]), vec![]);
    // Settled: the same hash again, even within the approved amount, is refused.
    let info = fx.cp_info(N0 - 3, 50_000, fx.ours_sat(1, 10_000, 50_000), vec![htlc(false, 10_000, 12)]);
    assert_eq!(fx.sign_cp(info, vec![]), vec![PolicyTag::InvoicePaidTwice]);
}

#[test]
fn forward_cltv_delta_too_small() {
    let incoming = HtlcInfo { cltv_expiry: 500_100, ..htlc(true, 50_000, 13) };
    let mut index = PaymentIndex::new(BTreeMap::new(), 0, 10);
    let mut v = Vec::new();
    index.receive(&mut v, &incoming);
    // 40 blocks before the incoming expiry: enough for a minimum of 34.
    let policy = ChannelPolicy { forward_cltv_delta_min: 34, ..Default::default() };
    index.offer(&mut v, &HtlcInfo { cltv_expiry: 500_060, amount_msat: 20_000_000, ..incoming.clone() }, &policy);
    assert_eq!(v, vec![]);
    // 10 blocks before it: the forward leaves no time to claim upstream.
    index.offer(&mut v, &HtlcInfo { cltv_expiry: 500_090, amount_msat: 20_000_000, ..incoming }, &policy);
    assert_eq!(v.iter().map(|v| v.tag).collect::<Vec<_>>(), vec![PolicyTag::RoutingCltvDelta]);
}

#[test]
fn payment_index_and_channel_store_bounded() {
    let mut fx = Fx::new(true);
    fx.policy.channel.max_payments = 0;
    fx.open();
    let mut v = Vec::new();
    let mut index = PaymentIndex::new(BTreeMap::new(), 0, 0);
    index.approve(&mut v, &[1; 32], 1, u64::MAX);
    assert_eq!(v.iter().map(|v| v.tag).collect::<Vec<_>>(), vec![PolicyTag::NodeStateBounded]);
    // The channel store: a new channel is refused when it is full, a known one is not.
    let mut fx = Fx::new(true);
    fx.policy.channel.max_channels = 2;
    let setup = ChannelRequest::Setup(fx.setup.clone());
    let ctx = |stored_channels| Context {
        policy: &fx.policy,
        own_scripts: &fx.own,
        secp: &fx.secp,
        now: NOW,
        stored_channels,
        holder_keys: Some(HolderKeysCheck::Ours),
        chain: None,
        network: bitcoin::Network::Regtest,
    };
    let mut index = PaymentIndex::default();
    let tags = |a: super::Applied| a.violations.iter().map(|v| v.tag).collect::<Vec<_>>();
    let full = apply(&[1; 32], None, &setup, &[0; 32], &mut index, &ctx(2)).unwrap();
    assert_eq!(tags(full), vec![PolicyTag::NodeChannelsBounded]);
    let room = apply(&[1; 32], None, &setup, &[0; 32], &mut index, &ctx(1)).unwrap();
    let state = room.state.clone();
    assert_eq!(tags(room), vec![]);
    let again = apply(&[1; 32], Some(&state), &setup, &[0; 32], &mut index, &ctx(2)).unwrap();
    assert_eq!(tags(again), vec![]);
}

#[test]
fn permissive_policy_warns_but_reports_the_same_tags() {
    let mut fx = Fx::new(true);
    fx.policy = PolicyConfig::permissive();
    fx.open();
    assert_eq!(fx.run(closing(VALUE - 1_000, 0, b"attacker")), vec![PolicyTag::CloseDestination]);
    assert!(matches!(fx.state.as_ref().unwrap().close, super::state::CloseState::MutualClose { .. }));
}

#[test]
fn unknown_channel_and_garbage_are_typed_errors() {
    let fx = Fx::new(true);
    let mut index = PaymentIndex::default();
    let ctx = Context {
        policy: &fx.policy,
        own_scripts: &fx.own,
        secp: &fx.secp,
        now: NOW,
        stored_channels: 0,
        network: bitcoin::Network::Regtest,
        holder_keys: Some(HolderKeysCheck::Ours),
        chain: None,
    };
    let req = ChannelRequest::ReleaseCommitmentSecret { commitment_number: 1 };
    let err = apply(&[1; 32], None, &req, &[0; 32], &mut index, &ctx).unwrap_err();
    assert!(matches!(err, super::ChannelError::UnknownChannel { .. }));
    let mut bad = fx.setup.clone();
    bad.counterparty.funding = vec![5; 33];
    let err = apply(&[1; 32], None, &ChannelRequest::Setup(bad), &[0; 32], &mut index, &ctx).unwrap_err();
    assert!(matches!(err, super::ChannelError::BadPoint { .. }));
}

// ---------------------------------------------------------------- review regressions

#[test]
fn release_beyond_the_first_commitment_number_never_reveals_the_seed() {
    let mut fx = Fx::new(true);
    fx.open();
    let ours = fx.ours_sat(0, 0, 0);
    assert_eq!(fx.round(N0 - 1, ours, 0, vec![], vec![]), vec![]);
    // 2^48 maps to index 0 in LDK's secret derivation: the commitment seed itself.
    assert_eq!(
        fx.run(ChannelRequest::ReleaseCommitmentSecret { commitment_number: 1 << 48 }),
        vec![PolicyTag::RevokeBeforeNext]
    );
}

#[test]
fn zero_fee_commitment_channels_are_not_safe() {
    let mut fx = Fx::new(true);
    let mut t = ChannelTypeFeatures::anchors_zero_htlc_fee_and_dependencies();
    t.set_anchor_zero_fee_commitments_required();
    fx.setup.channel_type = t.le_flags().to_vec();
    assert_eq!(fx.run(ChannelRequest::Setup(fx.setup.clone())), vec![PolicyTag::ChannelSafeType]);
}

#[test]
fn commitment_number_above_2_pow_48_is_a_typed_error() {
    let mut fx = Fx::new(true);
    fx.open();
    let mut index = PaymentIndex::default();
    let ctx = Context {
        policy: &fx.policy,
        own_scripts: &fx.own,
        secp: &fx.secp,
        now: NOW,
        stored_channels: 0,
        network: bitcoin::Network::Regtest,
        holder_keys: Some(HolderKeysCheck::Ours),
        chain: None,
    };
    let info = fx.cp_info(u64::MAX, 0, 1, vec![]);
    let req = ChannelRequest::SignCounterpartyCommitment { commitment: info, outbound_preimages: vec![] };
    let err = apply(&[9; 32], fx.state.as_ref(), &req, &[0; 32], &mut index, &ctx).unwrap_err();
    assert!(matches!(err, super::ChannelError::BadCommitmentNumber(_)));
}

#[test]
fn sweep_with_a_second_input_is_refused() {
    let mut fx = Fx::new(true);
    fx.open();
    let req = force_close_and_sweep(&mut fx, b"wallet", u32::from(DELAY), 500, 0);
    let ChannelRequest::SignDelayedSweep { tx, input } = req else { unreachable!() };
    let mut tx: Transaction = bitcoin::consensus::deserialize(&tx).unwrap();
    let mut extra = tx.input[0].clone();
    extra.previous_output.vout += 7;
    tx.input.push(extra);
    let req = ChannelRequest::SignDelayedSweep { tx: bitcoin::consensus::serialize(&tx), input };
    assert_eq!(fx.run(req), vec![PolicyTag::SweepFeeRange]);
}

/// Two identical incoming HTLCs (two parts of one payment): the HTLC-success of the
/// second one is recognised by the output it spends, not confused with the first.
#[test]
fn identical_htlcs_are_told_apart_by_output() {
    let mut fx = Fx::new(false);
    let part = htlc(false, 100_000, 8);
    let (latest, htlc_txs) = force_closed_with_incoming(&mut fx, vec![part.clone(), part.clone()]);
    for htlc_tx in htlc_txs {
        let req = ChannelRequest::SignHolderHtlc {
            tx: bitcoin::consensus::serialize(&htlc_tx),
            input: 0,
            commitment_number: latest.commitment_number,
            htlc: part.clone(),
            preimage: Some([8; 32]),
        };
        assert_eq!(fx.run(req), vec![], "HTLC transaction spending {}", htlc_tx.input[0].previous_output);
    }
    assert_eq!(fx.state.as_ref().unwrap().holder.second_stage.len(), 2, "both second-stage outputs recorded");
}

// ---------------------------------------------------------------- batched sweeps

/// Force-closes `fx` with its latest holder commitment; the to_local outpoint and value.
fn force_close_to_local(fx: &mut Fx) -> (OutPoint, u64) {
    let latest = fx.latest_holder();
    assert_eq!(fx.run(ChannelRequest::SignHolderCommitment { commitment: latest.clone() }), vec![]);
    let params = parse::transaction_parameters(&fx.setup).unwrap();
    let tx = parse::commitment(&params, &latest, Broadcaster::Holder, &fx.secp).unwrap();
    let trusted = tx.trust();
    let vout = trusted.revokeable_output_index().unwrap();
    (
        OutPoint { txid: trusted.txid(), vout: vout as u32 },
        trusted.built_transaction().transaction.output[vout].value.to_sat(),
    )
}

/// Two channels force-closed by us (a: [0xa; 32], b: [0xb; 32]) and a to_remote output of 50k sat.
struct Batch {
    a: Fx,
    b: Fx,
    spent: Vec<(OutPoint, u64)>,
}

const A: [u8; 32] = [0xa; 32];
const B: [u8; 32] = [0xb; 32];
const TO_REMOTE_SAT: u64 = 50_000;

impl Batch {
    fn new() -> Self {
        let (mut a, mut b) = (Fx::new(true), Fx::with_counterparty(true, 3));
        a.open();
        b.open();
        let to_remote = (OutPoint { txid: bitcoin::Txid::from_byte_array([0x55; 32]), vout: 1 }, TO_REMOTE_SAT);
        let spent = vec![force_close_to_local(&mut a), force_close_to_local(&mut b), to_remote];
        // Channel a's funding spend as a FundingSpent proof leaves it (a transaction whose
        // output 1 is our to_remote; the proof rules are tested with `prove_funding_spend`).
        a.state.as_mut().unwrap().funding_spend = Some(super::state::FundingSpend {
            txid: [0x55; 32],
            output_values: vec![330, TO_REMOTE_SAT],
            commitment_number: None,
        });
        assert_ne!(spent[0].0, spent[1].0, "two channels, two commitments");
        Self { a, b, spent }
    }

    /// A sweep of every spent output (after the delays) paying `to` all but `fee`.
    fn tx(&self, to: &[u8], fee: u64) -> Transaction {
        let input = |(o, _): &(OutPoint, u64), sequence: u16| TxIn {
            previous_output: *o,
            sequence: Sequence::from_height(sequence),
            ..Default::default()
        };
        let total: u64 = self.spent.iter().map(|(_, v)| v).sum();
        Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: vec![input(&self.spent[0], DELAY), input(&self.spent[1], DELAY), input(&self.spent[2], 1)],
            output: vec![TxOut { value: Amount::from_sat(total - fee), script_pubkey: script(to) }],
        }
    }

    fn honest_inputs() -> Vec<qls_protocol::SweepInput> {
        use qls_protocol::{SweepInput, SweepSource};
        vec![
            SweepInput { input: 0, channel: A, source: SweepSource::Delayed },
            SweepInput { input: 1, channel: B, source: SweepSource::Delayed },
            SweepInput { input: 2, channel: A, source: SweepSource::ToRemote { amount_sat: TO_REMOTE_SAT } },
        ]
    }

    /// The tags this cosigner's policy gives the sweep (refused and warned).
    fn judge(
        &self,
        tx: &Transaction,
        inputs: Vec<qls_protocol::SweepInput>,
    ) -> Result<Vec<PolicyTag>, super::ChannelError> {
        let fx = &self.a;
        let ctx = Context {
            policy: &fx.policy,
            own_scripts: &fx.own,
            secp: &fx.secp,
            now: NOW,
            stored_channels: 2,
            network: bitcoin::Network::Regtest,
            holder_keys: Some(HolderKeysCheck::Ours),
            chain: None,
        };
        let request = qls_protocol::SweepRequest { tx: bitcoin::consensus::serialize(tx), inputs };
        let mut v = Vec::new();
        super::judge_sweep(
            &mut v,
            &request,
            |c| match *c {
                A => Ok(self.a.state.as_ref().unwrap()),
                B => Ok(self.b.state.as_ref().unwrap()),
                _ => Err(super::ChannelError::UnknownChannel { channel: "c".into() }),
            },
            &ctx,
        )?;
        let verdict = crate::policy::judge(v, &fx.policy);
        Ok(verdict.refused.iter().chain(&verdict.warned).map(|v| v.tag).collect())
    }
}

#[test]
fn a_batched_sweep_of_several_channels_and_a_to_remote_is_allowed() {
    let batch = Batch::new();
    assert_eq!(batch.judge(&batch.tx(b"wallet", 1_000), Batch::honest_inputs()).unwrap(), vec![]);
}

#[test]
fn a_batched_sweeps_fee_is_checked_over_all_its_inputs() {
    let batch = Batch::new();
    let max = batch.a.policy.channel.sweep_fee_max_sat;
    assert_eq!(batch.judge(&batch.tx(b"wallet", max), Batch::honest_inputs()).unwrap(), vec![]);
    // Each input alone could carry this fee; the three together pay max + 1.
    let tags = batch.judge(&batch.tx(b"wallet", max + 1), Batch::honest_inputs()).unwrap();
    assert_eq!(tags, vec![PolicyTag::SweepFeeRange]);
}

#[test]
fn a_batched_sweep_to_a_foreign_script_is_refused() {
    let batch = Batch::new();
    let mut tx = batch.tx(b"wallet", 1_000);
    tx.output.push(TxOut { value: Amount::from_sat(1), script_pubkey: script(b"attacker") });
    tx.output[0].value -= Amount::from_sat(1);
    assert_eq!(batch.judge(&tx, Batch::honest_inputs()).unwrap(), vec![PolicyTag::SweepDestination]);
}

#[test]
fn every_input_of_a_batched_sweep_is_named_once_with_its_own_source() {
    use qls_protocol::SweepSource;
    let batch = Batch::new();
    let tx = batch.tx(b"wallet", 1_000);
    // An input left unnamed has no known value.
    let mut inputs = Batch::honest_inputs();
    inputs.pop();
    assert_eq!(batch.judge(&tx, inputs).unwrap(), vec![PolicyTag::SweepSource]);
    // One input named twice (counted twice, the other left out).
    let mut inputs = Batch::honest_inputs();
    inputs[1].input = 0;
    inputs[1].channel = A;
    assert!(batch.judge(&tx, inputs).unwrap().contains(&PolicyTag::SweepSource));
    // b's to_local claimed as a delayed output of channel a.
    let mut inputs = Batch::honest_inputs();
    inputs[1].channel = A;
    assert_eq!(batch.judge(&tx, inputs).unwrap(), vec![PolicyTag::SweepSource]);
    // A to_remote named on a channel whose proven funding spend is not the transaction it
    // spends (b has none), or with another amount than the proof's: the node could supply
    // its own witness for such an input and burn ours as fee.
    let mut inputs = Batch::honest_inputs();
    inputs[2].channel = B;
    assert_eq!(batch.judge(&tx, inputs).unwrap(), vec![PolicyTag::SweepSource]);
    let mut inputs = Batch::honest_inputs();
    inputs[2].source = SweepSource::ToRemote { amount_sat: TO_REMOTE_SAT + 1 };
    assert_eq!(batch.judge(&tx, inputs).unwrap(), vec![PolicyTag::SweepSource]);
    let mut elsewhere = tx.clone();
    elsewhere.input[2].previous_output.vout = 2;
    assert_eq!(batch.judge(&elsewhere, Batch::honest_inputs()).unwrap(), vec![PolicyTag::SweepSource]);
    // A to_remote input without its 1-block delay.
    let mut tx_no_wait = tx.clone();
    tx_no_wait.input[2].sequence = Sequence::ZERO;
    assert_eq!(batch.judge(&tx_no_wait, Batch::honest_inputs()).unwrap(), vec![PolicyTag::SweepSequence]);
    // A delayed input before the contest delay.
    let mut early = tx.clone();
    early.input[0].sequence = Sequence::from_height(DELAY - 1);
    assert_eq!(batch.judge(&early, Batch::honest_inputs()).unwrap(), vec![PolicyTag::SweepSequence]);
    // A channel this cosigner does not hold, and an input index past the transaction: errors, nothing signed.
    let mut inputs = Batch::honest_inputs();
    inputs[2].channel = [0xc; 32];
    assert!(matches!(batch.judge(&tx, inputs), Err(super::ChannelError::UnknownChannel { .. })));
    let mut inputs = Batch::honest_inputs();
    inputs[2].input = 3;
    assert!(matches!(batch.judge(&tx, inputs), Err(super::ChannelError::InputOutOfRange { input: 3, inputs: 3 })));
}

/// Input values that sum past u64 (a node naming an input of its own with a huge amount,
/// were it ever valued) leave the fee unjudged: refused, never skipped.
#[test]
fn a_batched_sweep_whose_input_values_overflow_is_refused() {
    use qls_protocol::SweepSource;
    let mut batch = Batch::new();
    batch.a.state.as_mut().unwrap().funding_spend.as_mut().unwrap().output_values[1] = u64::MAX;
    let tx = batch.tx(b"wallet", 1_000);
    let mut inputs = Batch::honest_inputs();
    inputs[2].source = SweepSource::ToRemote { amount_sat: u64::MAX };
    assert_eq!(batch.judge(&tx, inputs).unwrap(), vec![PolicyTag::SweepFeeRange]);
}
