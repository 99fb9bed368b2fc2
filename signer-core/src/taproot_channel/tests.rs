//! Taproot-channel policy and session, in process: three leaves sign a counterparty
//! commitment as one MuSig2 party; the independent `musig2` crate plays the counterparty
//! and aggregates a signature libsecp256k1 accepts under the funding output key. Each
//! policy rule is tripped.

use alloc::vec;
use alloc::vec::Vec;

use bitcoin::secp256k1::{schnorr, Message, PublicKey, Secp256k1, SecretKey, XOnlyPublicKey};
use musig2::BinaryEncoding;
use qls_protocol::{
    HtlcInfo, LeafNonce, NestedSession, TaprootChannelSetup, TaprootCommitmentInfo, TaprootCounterpartyPoints,
    TaprootRequest,
};
use rand::SeedableRng;

use super::*;
use crate::channel::{request_digest, PaymentEntry, PaymentIndex};
use crate::musig2::nested::{nested_partial_sig_verify, nested_sign, psig_sum, NestedSessionContext};
use crate::musig2::nonce_gen;
use crate::policy::{PolicyConfig, PolicyTag};
use alloc::collections::BTreeMap;

pub(super) const CHANNEL: [u8; 32] = [0x33; 32];
pub(super) const VALUE: u64 = 1_000_000;

pub(super) fn pk(secp: &Secp256k1<bitcoin::secp256k1::All>, b: u8) -> Vec<u8> {
    PublicKey::from_secret_key(secp, &SecretKey::from_slice(&[b; 32]).unwrap()).serialize().to_vec()
}

/// The counterparty's per-commitment secret `n` (a toy chain: not BOLT 3's, except where a
/// test needs the shachain).
pub(super) fn cp_secret(n: u64) -> [u8; 32] {
    lightning::ln::chan_utils::build_commitment_secret(&[0x44; 32], (1 << 48) - 1 - n)
}

pub(super) struct Fx {
    pub(super) secp: Secp256k1<bitcoin::secp256k1::All>,
    pub(super) policy: PolicyConfig,
    pub(super) leaf_sks: Vec<SecretKey>,
    pub(super) leaves: Vec<Vec<u8>>,
    pub(super) holder: qls_protocol::TaprootHolderKeys,
    pub(super) state: Option<TaprootChannelState>,
    /// The node-wide payment index, as a cosigner's store keeps it.
    pub(super) payments: BTreeMap<[u8; 32], PaymentEntry>,
    /// The FROST group's shares (2-of-3, dealer) the basepoints derive from.
    pub(super) shares: Vec<crate::keys::KeyShare>,
    /// The cosigner's own stored verification nonce (for holder commitment validations).
    pub(super) own_verification: Option<LeafNonce>,
    /// This cosigner's header chain, once a block holds the funding transaction.
    pub(super) chain: Option<crate::chain::ChainTip>,
    /// Whether this cosigner keeps the force-close escrow of the latest holder commitment.
    pub(super) escrowed: bool,
}

impl Fx {
    pub(super) fn new() -> Self {
        let secp = Secp256k1::new();
        let leaf_sks: Vec<SecretKey> = (1..=3u8).map(|i| SecretKey::from_slice(&[0x10 + i; 32]).unwrap()).collect();
        let leaves: Vec<Vec<u8>> =
            leaf_sks.iter().map(|k| PublicKey::from_secret_key(&secp, k).serialize().to_vec()).collect();
        let fps = [[1u8; 32], [2; 32], [3; 32]];
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let shares = crate::dealer::split(None, &fps, 2, &mut rng).unwrap();
        let base: Vec<[u8; 33]> = leaves.iter().map(|l| l.as_slice().try_into().unwrap()).collect();
        let holder = holder_keys(&secp, &shares[0].1.public_key_package, &base, &CHANNEL).unwrap();
        let shares = shares.into_iter().map(|(_, s)| s).collect();
        Self {
            secp,
            policy: PolicyConfig::default(),
            leaf_sks,
            leaves,
            holder,
            state: None,
            payments: BTreeMap::new(),
            shares,
            own_verification: None,
            chain: None,
            escrowed: true,
        }
    }

    /// The channel state and payment index, to go back to.
    pub(super) fn clone_state(&self) -> (Option<TaprootChannelState>, BTreeMap<[u8; 32], PaymentEntry>) {
        (self.state.clone(), self.payments.clone())
    }

    pub(super) fn restore_state(&mut self, saved: (Option<TaprootChannelState>, BTreeMap<[u8; 32], PaymentEntry>)) {
        (self.state, self.payments) = saved;
    }

    /// `setup` naming a real funding transaction (output 1 pays the channel's funding
    /// output), and that transaction.
    pub(super) fn funded(&self, mut setup: TaprootChannelSetup) -> (TaprootChannelSetup, bitcoin::Transaction) {
        let view = TaprootChannelState::public_view(setup.clone(), self.holder.clone());
        let out = super::build::funding_txout(&view).unwrap();
        let mut tx = crate::funding_proof::tests::paying(0x66, &wallet(), 1_000);
        tx.output.push(out);
        setup.funding_vout = 1;
        setup.funding_txid = bitcoin::hashes::Hash::to_byte_array(tx.compute_txid());
        (setup, tx)
    }

    /// Mines `tx` (alone in its block) and one block on it into this cosigner's chain and
    /// hands the cosigner the SPV proof (depth 2 required); returns the tags.
    pub(super) fn confirm_funding(&mut self, tx: &bitcoin::Transaction) -> Vec<PolicyTag> {
        use crate::funding_proof::tests::mine;
        use bitcoin::consensus::encode::serialize;
        let mut chain = crate::chain::ChainTip::genesis(bitcoin::Network::Regtest);
        let block = mine(chain.tip_hash(), bitcoin::hashes::Hash::to_byte_array(tx.compute_txid()), 1_700_000_000);
        let next = mine(block.block_hash(), [0; 32], 1_700_000_600);
        let headers = vec![serialize(&block), serialize(&next)];
        chain.extend(bitcoin::Network::Regtest, &headers).unwrap();
        self.chain = Some(chain);
        self.policy.channel.funding_min_depth = 2;
        let proof = qls_protocol::FundingProof {
            headers,
            tx: serialize(tx),
            block_header: serialize(&block),
            merkle_branch: vec![],
            position: 0,
        };
        self.run(TaprootRequest::FundingConfirmed(proof)).0
    }

    pub(super) fn setup(&self) -> TaprootChannelSetup {
        TaprootChannelSetup {
            channel_value_sat: VALUE,
            funding_txid: [0x99; 32],
            funding_vout: 1,
            is_outbound: true,
            holder_selected_contest_delay: 144,
            counterparty_selected_contest_delay: 144,
            counterparty_dust_limit_sat: 354,
            holder_dust_limit_sat: 354,
            counterparty: TaprootCounterpartyPoints {
                funding: pk(&self.secp, 0x50),
                revocation: pk(&self.secp, 0x51),
                payment: pk(&self.secp, 0x52),
                delayed_payment: pk(&self.secp, 0x53),
                htlc: pk(&self.secp, 0x54),
            },
        }
    }

    pub(super) fn run(&mut self, req: TaprootRequest) -> (Vec<PolicyTag>, Option<[u8; 32]>) {
        let subject = qls_protocol::ApprovalSubject::Channel {
            channel: CHANNEL,
            request: qls_protocol::ChannelRequest::ReleaseCommitmentSecret { commitment_number: 0 },
        };
        let digest = request_digest(&subject);
        let own = [wallet()];
        let ctx = TaprootContext {
            policy: &self.policy,
            holder: &self.holder,
            leaves: &self.leaves,
            own_scripts: &own,
            secp: &self.secp,
            own_verification: self.own_verification.as_ref(),
            chain: self.chain.as_ref(),
            now: 1_700_000_000,
            stored_channels: 0,
            latest_escrowed: self.escrowed,
        };
        let mut index = PaymentIndex::new(self.payments.clone(), self.payments.len(), 1000);
        let applied = apply(&CHANNEL, self.state.as_ref(), &req, &digest, &mut index, &ctx).expect("request parses");
        let verdict = crate::policy::judge(applied.violations, &self.policy);
        if verdict.approves() {
            self.state = Some(applied.state);
            self.payments.extend(index.changed());
        }
        (verdict.refused.iter().map(|v| v.tag).collect(), applied.message)
    }

    /// An approved payment of `msat` for the test hash.
    pub(super) fn approve(&mut self, msat: u64) {
        let mut index = PaymentIndex::new(self.payments.clone(), self.payments.len(), 1000);
        index.approve(&mut Vec::new(), &hash(), msat, u64::MAX);
        self.payments.extend(index.changed());
    }

    pub(super) fn frost(
        &self,
        item: &qls_protocol::TaprootFrostItem,
    ) -> (Vec<qls_protocol::FrostTarget>, Vec<PolicyTag>) {
        let own = [wallet()];
        let ctx = TaprootContext {
            policy: &self.policy,
            holder: &self.holder,
            leaves: &self.leaves,
            own_scripts: &own,
            secp: &self.secp,
            own_verification: None,
            chain: None,
            now: 1_700_000_000,
            stored_channels: 0,
            latest_escrowed: true,
        };
        let (targets, v) = frost_targets(&CHANNEL, self.state.as_ref().unwrap(), item, &ctx).expect("item parses");
        let verdict = crate::policy::judge(v, &self.policy);
        (targets, verdict.refused.iter().map(|v| v.tag).collect())
    }

    pub(super) fn commitment(&self, n: u64, theirs_msat: u64, ours_msat: u64, htlcs: Vec<HtlcInfo>) -> TaprootRequest {
        self.commitment_with(n, theirs_msat, ours_msat, htlcs, vec![])
    }

    pub(super) fn commitment_with(
        &self,
        n: u64,
        theirs_msat: u64,
        ours_msat: u64,
        htlcs: Vec<HtlcInfo>,
        outbound_preimages: Vec<[u8; 32]>,
    ) -> TaprootRequest {
        let point = PublicKey::from_secret_key(&self.secp, &SecretKey::from_slice(&cp_secret(n)).unwrap());
        TaprootRequest::SignCounterpartyCommitment {
            outbound_preimages,
            commitment: TaprootCommitmentInfo {
                commitment_number: n,
                per_commitment_point: point.serialize().to_vec(),
                to_broadcaster_msat: theirs_msat,
                to_countersignatory_msat: ours_msat,
                feerate_per_kw: 1_000,
                htlcs,
            },
        }
    }

    pub(super) fn revoke(&mut self, n: u64) -> Vec<PolicyTag> {
        self.run(TaprootRequest::CounterpartyRevocation { commitment_number: n, secret: cp_secret(n) }).0
    }
}

pub(super) fn wallet() -> bitcoin::ScriptBuf {
    bitcoin::ScriptBuf::from_bytes([&[0x51u8, 0x20][..], &[0xaa; 32]].concat())
}

fn close(ours: u64, theirs: u64, to: &bitcoin::ScriptBuf) -> TaprootRequest {
    TaprootRequest::SignClosing {
        to_holder_sat: ours,
        to_counterparty_sat: theirs,
        holder_script: to.to_bytes(),
        counterparty_script: vec![0x00, 0x14, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7],
        locktime: 0,
    }
}

#[test]
fn cooperative_close_rules() {
    let mut fx = Fx::new();
    fx.run(TaprootRequest::Setup(fx.setup()));
    let all = VALUE * 1000;
    fx.approve(5_000_000);
    assert_eq!(fx.run(fx.commitment(0, 0, all, vec![])).0, vec![]);
    assert_eq!(fx.run(fx.commitment(1, 0, all - 5_000_000, vec![htlc(false, 5_000_000)])).0, vec![]);
    let foreign = bitcoin::ScriptBuf::from_bytes([&[0x51u8, 0x20][..], &[0xbb; 32]].concat());
    // An HTLC is pending.
    assert_eq!(fx.run(close(VALUE - 1_000, 0, &wallet())).0, vec![PolicyTag::ClosePendingHtlcs]);
    fx.revoke(0);
    // Our HTLC was fulfilled (we were shown the preimage): the counterparty has 5,000 sat.
    assert_eq!(fx.run(fx.commitment_with(2, 5_000_000, all - 5_000_000, vec![], vec![PREIMAGE])).0, vec![]);
    // To a foreign script; more to the counterparty than its balance; a fee above the cap.
    assert_eq!(fx.run(close(VALUE - 5_000 - 1_000, 5_000, &foreign)).0, vec![PolicyTag::CloseDestination]);
    assert_eq!(fx.run(close(VALUE - 105_000, 100_000, &wallet())).0, vec![PolicyTag::CloseValue]);
    assert_eq!(fx.run(close(VALUE - 5_000 - 200_000, 5_000, &wallet())).0, vec![PolicyTag::CloseFeeRange]);
    let (tags, msg) = fx.run(close(VALUE - 6_000, 5_000, &wallet()));
    assert_eq!(tags, vec![]);
    let state = fx.state.clone().unwrap();
    let tx = closing_tx(&state, VALUE - 6_000, 5_000, wallet().as_bytes(), &close_script(), 0);
    assert_eq!(funding_sighash(&state, &tx).unwrap(), msg.unwrap());
    // Closed: no new commitment.
    fx.revoke(1);
    assert_eq!(fx.run(fx.commitment(3, 5_000_000, all - 5_000_000, vec![])).0, vec![PolicyTag::ChannelClosed]);
}

fn close_script() -> Vec<u8> {
    vec![0x00, 0x14, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7]
}

pub(super) const PREIMAGE: [u8; 32] = [7; 32];

pub(super) fn hash() -> [u8; 32] {
    crate::taproot_scripts::payment_hash(&PREIMAGE)
}

pub(super) fn htlc(offered: bool, msat: u64) -> HtlcInfo {
    HtlcInfo { offered, amount_msat: msat, cltv_expiry: 500, payment_hash: hash() }
}

#[test]
fn quorum_leaves_sign_a_counterparty_commitment_an_unmodified_musig2_peer_completes() {
    let mut fx = Fx::new();
    assert_eq!(fx.run(TaprootRequest::Setup(fx.setup())).0, vec![]);
    let (tags, msg) = fx.run(fx.commitment(0, 0, VALUE * 1000, vec![]));
    assert_eq!(tags, vec![]);
    let msg = msg.unwrap();
    let state = fx.state.clone().unwrap();
    let tx = counterparty_commitment(&state, state.counterparty_latest.as_ref().unwrap()).unwrap();
    assert_eq!(funding_sighash(&state, &tx).unwrap(), msg);

    // Leaves: channel-tweaked keys; node key = the funding key we report.
    let base: Vec<[u8; 33]> = fx.leaves.iter().map(|l| l.as_slice().try_into().unwrap()).collect();
    let (node_key, channel_leaves) = funding_node_key(&fx.secp, &base, &CHANNEL).unwrap();
    assert_eq!(node_key.to_vec(), fx.holder.funding);
    let mut secs = Vec::new();
    let mut nonces = Vec::new();
    for (i, leaf) in channel_leaves.iter().enumerate() {
        let (sec, pubn) = nonce_gen(&[i as u8 + 1; 32], None, leaf, None, None, None).unwrap();
        secs.push(sec);
        nonces.push(LeafNonce { cosigner: [i as u8 + 1; 32], nonce_id: i as u64, pubnonce: pubn.0.to_vec() });
    }
    // The counterparty (musig2 crate) with its funding key and a fresh nonce.
    let their_sk = SecretKey::from_slice(&[0x50; 32]).unwrap();
    let their_pk: [u8; 33] = pk(&fx.secp, 0x50).try_into().unwrap();
    let sorted = crate::musig2::key_sort(&[node_key, their_pk]);
    let pks: Vec<secp::Point> = sorted.iter().map(|k| secp::Point::from_slice(k).unwrap()).collect();
    let their_ctx = musig2::KeyAggContext::new(pks).unwrap().with_unspendable_taproot_tweak().unwrap();
    let their_sec = musig2::SecNonce::generate(
        [9; 32],
        secp::Scalar::from_slice(&[0x50; 32]).unwrap(),
        their_ctx.aggregated_pubkey::<secp::Point>(),
        msg,
        [],
    );
    let session =
        NestedSession { leaf_nonces: nonces.clone(), counterparty_nonce: their_sec.public_nonce().to_bytes().to_vec() };
    let ids = [[1u8; 32], [2; 32], [3; 32]];
    let mut psigs = Vec::new();
    for (i, (sec, sk)) in secs.into_iter().zip(&fx.leaf_sks).enumerate() {
        let me = channel_leaves[i];
        let ls = leaf_session(&session, &ids, &channel_leaves, &me, &node_key, &their_pk, &CHANNEL).unwrap();
        let ctx =
            NestedSessionContext { nonce_path: &ls.nonce_path, pk_tree: &ls.pk_tree, tweaks: &[ls.tweak], msg: &msg };
        let leaf_sk = channel_leaf_secret(sk, &base[i], &CHANNEL).unwrap();
        let psig = nested_sign(sec, &leaf_sk, &ctx).unwrap();
        let pubn = crate::musig2::PubNonce(nonces[i].pubnonce.as_slice().try_into().unwrap());
        assert!(nested_partial_sig_verify(&psig, &pubn, &me, &ctx).unwrap());
        psigs.push((psig, ls.external_nonce));
    }
    let external = psigs[0].1;
    let ours = psig_sum(&psigs.iter().map(|(p, _)| *p).collect::<Vec<_>>()).unwrap();
    let our_pub = musig2::PubNonce::from_bytes(&external.0).unwrap();
    let agg = musig2::AggNonce::sum([our_pub.clone(), their_sec.public_nonce()]);
    let ours = secp::MaybeScalar::from_slice(&ours).unwrap();
    musig2::verify_partial(&their_ctx, ours, &agg, secp::Point::from_slice(&node_key).unwrap(), &our_pub, msg)
        .expect("the counterparty accepts the quorum's partial signature");
    let theirs: secp::MaybeScalar = musig2::sign_partial(
        &their_ctx,
        secp::Scalar::from_slice(&their_sk.secret_bytes()).unwrap(),
        their_sec,
        &agg,
        msg,
    )
    .unwrap();
    let sig: musig2::CompactSignature =
        musig2::aggregate_partial_signatures(&their_ctx, &agg, [ours, theirs], msg).unwrap();
    let output_key = funding_txout(&state).unwrap().script_pubkey.as_bytes()[2..].to_vec();
    let xonly = XOnlyPublicKey::from_slice(&output_key).unwrap();
    fx.secp
        .verify_schnorr(&schnorr::Signature::from_slice(&sig.serialize()).unwrap(), &Message::from_digest(msg), &xonly)
        .expect("the aggregate signature verifies under the funding output key");
}

#[test]
fn counterparty_commitment_rules() {
    let mut fx = Fx::new();
    fx.run(TaprootRequest::Setup(fx.setup()));
    let all = VALUE * 1000;
    assert_eq!(fx.run(fx.commitment(0, 0, all, vec![])).0, vec![]);
    // First commitment again with other data; a skipped number.
    assert_eq!(fx.run(fx.commitment(0, 1_000, all - 1_000, vec![])).0, vec![PolicyTag::CommitmentRetrySame]);
    let skipped = fx.run(fx.commitment(2, 0, all, vec![])).0;
    assert_eq!(skipped, vec![PolicyTag::CommitmentSequence, PolicyTag::CommitmentPreviousRevoked]);
    // We offer an HTLC: our balance falls by its amount; it must be covered (a forward or
    // an approved payment).
    let offer = fx.commitment(1, 0, all - 5_000_000, vec![htlc(false, 5_000_000)]);
    assert_eq!(fx.run(offer.clone()).0, vec![PolicyTag::RoutingUnbalanced]);
    fx.approve(4_000_000);
    assert_eq!(fx.run(offer.clone()).0, vec![PolicyTag::PaymentFeeMax]);
    fx.approve(5_000_000);
    assert_eq!(fx.run(offer).0, vec![]);
    // It is fulfilled: without the preimage our funds fall unexplained.
    let unexplained = fx.commitment(2, 5_000_000, all - 5_000_000, vec![]);
    assert_eq!(fx.run(unexplained).0, vec![PolicyTag::CommitmentPreviousRevoked, PolicyTag::CommitmentHolderBalance]);
    // Commitment 2 while 0 is unrevoked.
    let c2 = fx.commitment_with(2, 5_000_000, all - 5_000_000, vec![], vec![PREIMAGE]);
    assert_eq!(fx.run(c2.clone()).0, vec![PolicyTag::CommitmentPreviousRevoked]);
    // A wrong secret, then the right one.
    assert_eq!(
        fx.run(TaprootRequest::CounterpartyRevocation { commitment_number: 0, secret: [5; 32] }).0,
        vec![PolicyTag::RevocationSecretMismatch]
    );
    assert_eq!(fx.revoke(0), vec![]);
    assert_eq!(fx.run(c2).0, vec![]);
    // Our balance falls with no new HTLC of ours; value that does not add up.
    assert_eq!(fx.revoke(1), vec![]);
    assert_eq!(
        fx.run(fx.commitment(3, 6_000_000, all - 6_000_000, vec![])).0,
        vec![PolicyTag::CommitmentHolderBalance]
    );
    assert_eq!(fx.run(fx.commitment(3, 5_000_001, all - 5_000_000, vec![])).0, vec![PolicyTag::CommitmentValue]);
    // Limits.
    fx.policy.channel.max_htlcs = 1;
    let two = vec![htlc(true, 1_000_000), htlc(true, 1_000_000)];
    let tags = fx.run(fx.commitment(3, 3_000_000, all - 5_000_000, two)).0;
    assert_eq!(tags, vec![PolicyTag::CommitmentHtlcCount]);
}

#[test]
fn incoming_htlc_failed_after_its_payment_settled_is_refused() {
    let mut fx = Fx::new();
    fx.run(TaprootRequest::Setup(fx.setup()));
    let all = VALUE * 1000;
    assert_eq!(fx.run(fx.commitment(0, 0, all, vec![])).0, vec![]);
    // We pay 5,000 sat (approved), fulfilled with the preimage: that payment is settled.
    fx.approve(5_000_000);
    assert_eq!(fx.run(fx.commitment(1, 0, all - 5_000_000, vec![htlc(false, 5_000_000)])).0, vec![]);
    assert_eq!(fx.revoke(0), vec![]);
    let paid = fx.commitment_with(2, 5_000_000, all - 5_000_000, vec![], vec![PREIMAGE]);
    assert_eq!(fx.run(paid).0, vec![]);
    assert_eq!(fx.revoke(1), vec![]);
    // An incoming HTLC of that (settled) hash arrives: we know its preimage.
    assert_eq!(fx.run(fx.commitment(3, 3_000_000, all - 5_000_000, vec![htlc(true, 2_000_000)])).0, vec![]);
    assert_eq!(fx.revoke(2), vec![]);
    // Failing it back gives the 2,000 sat back to them: refused. Claiming it is fine.
    let failed = fx.run(fx.commitment(4, 5_000_000, all - 5_000_000, vec![])).0;
    assert_eq!(failed, vec![PolicyTag::RoutingFailAfterFulfil]);
    assert_eq!(fx.run(fx.commitment(4, 3_000_000, all - 3_000_000, vec![])).0, vec![]);
}

#[test]
fn a_full_channel_store_refuses_new_taproot_setups() {
    let mut fx = Fx::new();
    fx.policy.channel.max_channels = 0;
    assert_eq!(fx.run(TaprootRequest::Setup(fx.setup())).0, vec![PolicyTag::NodeChannelsBounded]);
}

#[test]
fn dust_limits_out_of_range_refused() {
    for (holder, counterparty) in [(353, 354), (354, 547), (0, 100_000)] {
        let mut fx = Fx::new();
        let setup = TaprootChannelSetup {
            holder_dust_limit_sat: holder,
            counterparty_dust_limit_sat: counterparty,
            ..fx.setup()
        };
        let tags = fx.run(TaprootRequest::Setup(setup)).0;
        assert!(tags.contains(&PolicyTag::ChannelDustLimitRange), "{holder}/{counterparty}: {tags:?}");
    }
    let mut fx = Fx::new();
    let setup = TaprootChannelSetup { holder_dust_limit_sat: 546, counterparty_dust_limit_sat: 354, ..fx.setup() };
    assert_eq!(fx.run(TaprootRequest::Setup(setup)).0, vec![]);
}

#[test]
fn setup_twice_with_other_data_and_unknown_channel() {
    let mut fx = Fx::new();
    assert_eq!(fx.run(TaprootRequest::Setup(fx.setup())).0, vec![]);
    let mut other = fx.setup();
    other.channel_value_sat += 1;
    assert_eq!(fx.run(TaprootRequest::Setup(other)).0, vec![PolicyTag::ChannelIdReuse]);
    let ctx = TaprootContext {
        policy: &fx.policy,
        holder: &fx.holder,
        leaves: &fx.leaves,
        own_scripts: &[],
        secp: &fx.secp,
        own_verification: None,
        chain: None,
        now: 1_700_000_000,
        stored_channels: 0,
        latest_escrowed: true,
    };
    let mut index = PaymentIndex::default();
    let err = apply(&[1; 32], None, &fx.commitment(0, 0, 0, vec![]), &[0; 32], &mut index, &ctx).unwrap_err();
    assert!(matches!(err, TaprootChannelError::UnknownChannel { .. }));
}
