//! A real, unmodified LDK node signed by a QLS quorum: three `ChannelManager`s in one
//! process (A — B — C), in-memory peer messages and a simulated chain. Node B's keys
//! interface is `qls_node::ldk::QuorumKeysManager` talking to a coordinator and 3
//! cosigners (t = 2, c1 the key holder) over real QUIC on loopback; A and C use LDK's
//! own `KeysManager`.
//!
//! Scenario: anchor channels A–B (A funds) and B–C (B funds), confirmed; 100 payments
//! (A→C and C→A through B, A→B, and B→C approved by the operator); cooperative close of
//! A–B; A force-closes a second A–B channel and B sweeps its to_remote; A broadcasts a
//! revoked commitment from a stale copy of its channel monitor and B's justice takes A's
//! balance; B force-closes B–C with one HTLC in flight, its HTLC-timeout transaction is
//! signed by the quorum, and both delayed outputs (to_local and the second-stage HTLC
//! output) are swept to the QLS wallet after the delay; C force-closes a C–B channel with
//! HTLCs both ways in flight and B claims C's with the preimage and its own after expiry,
//! both from C's commitment, and sweeps its to_remote; an announced A–B channel's announcement (B's funding-key and node-key
//! signatures from the quorum) is accepted by A's and C's network graphs. Every transaction mined in the run has
//! each input whose spent output is known checked by Bitcoin Core's script interpreter
//! (`bitcoinconsensus`), B's included.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lightning::bitcoin::absolute::LockTime;
use lightning::bitcoin::block::{Header, Version as BlockVersion};
use lightning::bitcoin::hashes::Hash;
use lightning::bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use lightning::bitcoin::sighash::{EcdsaSighashType, SighashCache};
use lightning::bitcoin::transaction::Version as TxVersion;
use lightning::bitcoin::{
    Amount, Block, BlockHash, CompactTarget, Network, OutPoint, Psbt, ScriptBuf, Sequence, Transaction, TxIn,
    TxMerkleNode, TxOut, Txid, Witness,
};
use lightning::bolt11_invoice::{Bolt11InvoiceDescription, Description};
use lightning::chain::chaininterface::{BroadcasterInterface, ConfirmationTarget, FeeEstimator};
use lightning::chain::chainmonitor::{ChainMonitor, Persist};
use lightning::chain::channelmonitor::{ChannelMonitor, ChannelMonitorUpdate};
use lightning::chain::{BestBlock, ChannelMonitorUpdateStatus, Filter, Listen, WatchedOutput};
use lightning::events::bump_transaction::sync::{BumpTransactionEventHandlerSync, WalletSourceSync, WalletSync};
use lightning::events::bump_transaction::Utxo;
use lightning::events::{ClosureReason, Event, EventsProvider, ReplayEvent};
use lightning::ln::channelmanager::{Bolt11InvoiceParameters, ChainParameters, ChannelManager, PaymentId, Retry};
use lightning::ln::msgs::{BaseMessageHandler, ChannelMessageHandler, Init, MessageSendEvent};
use lightning::ln::types::ChannelId;
use lightning::onion_message::messenger::NullMessageRouter;
use lightning::routing::gossip::NetworkGraph;
use lightning::routing::router::{DefaultRouter, RouteParametersConfig};
use lightning::routing::scoring::FixedPenaltyScorer;
use lightning::sign::ecdsa::EcdsaChannelSigner;
use lightning::sign::{
    ChangeDestinationSourceSync, EntropySource, KeysManager, NodeSigner, OutputSpender, SpendableOutputDescriptor,
};
use lightning::util::config::UserConfig;
use lightning::util::logger::{Level, Logger, Record};
use lightning::util::persist::{KVStoreSync, MonitorName};
use lightning::util::sweep::{OutputSpendStatus, OutputSweeperSync};
use qls_node::ldk::{QuorumBridge, QuorumChainWatch, QuorumKeysManager};
use qls_simnet::harness::{approve_payment_request, test_policy, Harness, QuorumSpec};

// ---------------------------------------------------------------------------------------
// Chain, fees, logging, persistence: the minimum LDK needs, all in memory.

struct TestLogger(&'static str);
impl Logger for TestLogger {
    fn log(&self, r: Record) {
        if r.level >= Level::Warn || std::env::var_os("QLS_LDK_LOG").is_some() && r.level >= Level::Debug {
            eprintln!("[{}] {:<5} {}:{} {}", self.0, r.level, r.module_path, r.line, r.args);
        }
    }
}

struct FixedFee;
impl FeeEstimator for FixedFee {
    fn get_est_sat_per_1000_weight(&self, t: ConfirmationTarget) -> u32 {
        match t {
            // Commitments already pay more than the sweep targets: broadcast without CPFP.
            ConfirmationTarget::AnchorChannelFee => 500,
            ConfirmationTarget::MaximumFeeEstimate => 1000,
            _ => 253,
        }
    }
}

#[derive(Default)]
struct Mempool {
    txs: Mutex<Vec<Transaction>>,
}
impl BroadcasterInterface for Mempool {
    fn broadcast_transactions(&self, txs: &[&Transaction]) {
        let mut m = self.txs.lock().unwrap();
        for tx in txs {
            let id = tx.compute_txid();
            if !m.iter().any(|t| t.compute_txid() == id) {
                m.push((*tx).clone());
            }
        }
    }
}

struct NoFilter;
impl Filter for NoFilter {
    fn register_tx(&self, _txid: &Txid, _script_pubkey: &lightning::bitcoin::Script) {}
    fn register_output(&self, _output: WatchedOutput) {}
}

struct MemPersister;
impl<S: EcdsaChannelSigner> Persist<S> for MemPersister {
    fn persist_new_channel(&self, _: MonitorName, _: &ChannelMonitor<S>) -> ChannelMonitorUpdateStatus {
        ChannelMonitorUpdateStatus::Completed
    }
    fn update_persisted_channel(
        &self,
        _: MonitorName,
        _: Option<&ChannelMonitorUpdate>,
        _: &ChannelMonitor<S>,
    ) -> ChannelMonitorUpdateStatus {
        ChannelMonitorUpdateStatus::Completed
    }
    fn archive_persisted_channel(&self, _: MonitorName) {}
}

/// The store of LDK's `OutputSweeper` state, in memory.
#[derive(Default)]
struct MemStore(Mutex<HashMap<(String, String, String), Vec<u8>>>);
impl KVStoreSync for MemStore {
    fn read(&self, primary: &str, secondary: &str, key: &str) -> Result<Vec<u8>, lightning::io::Error> {
        let k = (primary.to_owned(), secondary.to_owned(), key.to_owned());
        self.0.lock().unwrap().get(&k).cloned().ok_or_else(|| lightning::io::ErrorKind::NotFound.into())
    }
    fn write(&self, primary: &str, secondary: &str, key: &str, buf: Vec<u8>) -> Result<(), lightning::io::Error> {
        self.0.lock().unwrap().insert((primary.to_owned(), secondary.to_owned(), key.to_owned()), buf);
        Ok(())
    }
    fn remove(&self, primary: &str, secondary: &str, key: &str, _lazy: bool) -> Result<(), lightning::io::Error> {
        self.0.lock().unwrap().remove(&(primary.to_owned(), secondary.to_owned(), key.to_owned()));
        Ok(())
    }
    fn list(&self, primary: &str, secondary: &str) -> Result<Vec<String>, lightning::io::Error> {
        let m = self.0.lock().unwrap();
        Ok(m.keys().filter(|(p, s, _)| p == primary && s == secondary).map(|(_, _, k)| k.clone()).collect())
    }
}

/// Where LDK's `OutputSweeper` sends B's swept outputs: the QLS wallet.
struct SweepTo(ScriptBuf);
impl ChangeDestinationSourceSync for SweepTo {
    fn get_change_destination_script(&self) -> Result<ScriptBuf, ()> {
        Ok(self.0.clone())
    }
}

/// B's sweeper: LDK's own `OutputSweeper`, unmodified, spending through the quorum.
type Sweeper = OutputSweeperSync<
    Arc<Mempool>,
    Arc<SweepTo>,
    Arc<FixedFee>,
    Arc<NoFilter>,
    Arc<MemStore>,
    Arc<TestLogger>,
    Arc<QuorumKeysManager>,
>;

/// The fee wallet LDK's bump handler spends for HTLC transactions (anchor channels pay
/// second-stage fees from the wallet). A single P2WPKH key: it is the node operator's
/// on-chain fee wallet, allowlisted in the cosigners' policy as a change destination.
struct FeeWallet {
    sk: SecretKey,
    utxos: Mutex<Vec<Utxo>>,
    secp: Secp256k1<lightning::bitcoin::secp256k1::All>,
}
impl FeeWallet {
    fn pk(&self) -> lightning::bitcoin::PublicKey {
        lightning::bitcoin::PublicKey::new(self.sk.public_key(&self.secp))
    }
    fn script(&self) -> ScriptBuf {
        ScriptBuf::new_p2wpkh(&self.pk().wpubkey_hash().unwrap())
    }
}
impl WalletSourceSync for FeeWallet {
    fn list_confirmed_utxos(&self) -> Result<Vec<Utxo>, ()> {
        Ok(self.utxos.lock().unwrap().clone())
    }
    fn get_change_script(&self) -> Result<ScriptBuf, ()> {
        Ok(self.script())
    }
    fn sign_psbt(&self, psbt: Psbt) -> Result<Transaction, ()> {
        let mut tx = psbt.extract_tx_unchecked_fee_rate();
        let utxos = self.utxos.lock().unwrap();
        for i in 0..tx.input.len() {
            if let Some(u) = utxos.iter().find(|u| u.outpoint == tx.input[i].previous_output) {
                let sighash = SighashCache::new(&tx)
                    .p2wpkh_signature_hash(i, &u.output.script_pubkey, u.output.value, EcdsaSighashType::All)
                    .map_err(|_| ())?;
                let msg = lightning::bitcoin::secp256k1::Message::from_digest(sighash.to_byte_array());
                let sig = self.secp.sign_ecdsa_low_r(&msg, &self.sk);
                let sig = lightning::bitcoin::ecdsa::Signature { signature: sig, sighash_type: EcdsaSighashType::All };
                tx.input[i].witness = Witness::p2wpkh(&sig, &self.sk.public_key(&self.secp));
            }
        }
        Ok(tx)
    }
}

// ---------------------------------------------------------------------------------------
// Nodes. A and C use LDK's KeysManager, B the quorum: the same shape, two key types.

type Graph = NetworkGraph<Arc<TestLogger>>;
/// A node's chain monitor, for keys interface `K` (LDK's `KeysManager` or the quorum's).
type ChainMon<K> = ChainMonitor<
    <K as lightning::sign::SignerProvider>::EcdsaSigner,
    Arc<NoFilter>,
    Arc<Mempool>,
    Arc<FixedFee>,
    Arc<TestLogger>,
    Arc<MemPersister>,
    Arc<K>,
>;

macro_rules! node_type {
    ($node:ident, $keys:ty) => {
        #[allow(clippy::type_complexity)]
        struct $node {
            name: &'static str,
            keys: Arc<$keys>,
            chain_monitor: Arc<ChainMon<$keys>>,
            cm: Arc<
                ChannelManager<
                    Arc<ChainMon<$keys>>,
                    Arc<Mempool>,
                    Arc<$keys>,
                    Arc<$keys>,
                    Arc<$keys>,
                    Arc<FixedFee>,
                    Arc<
                        DefaultRouter<
                            Arc<Graph>,
                            Arc<TestLogger>,
                            Arc<$keys>,
                            Arc<Mutex<FixedPenaltyScorer>>,
                            (),
                            FixedPenaltyScorer,
                        >,
                    >,
                    Arc<NullMessageRouter>,
                    Arc<TestLogger>,
                >,
            >,
            #[allow(dead_code)] // A and C never bump: only B's fee wallet is read
            wallet: Arc<FeeWallet>,
            bump: BumpTransactionEventHandlerSync<
                Arc<Mempool>,
                Arc<WalletSync<Arc<FeeWallet>, Arc<TestLogger>>>,
                Arc<$keys>,
                Arc<TestLogger>,
            >,
            spendable: RefCell<Vec<SpendableOutputDescriptor>>,
            log: RefCell<Vec<Event>>,
            bridge: Option<Arc<QuorumBridge>>,
            /// The node's view of the public network (channel announcements it accepted).
            #[allow(dead_code)] // B's is not read: A and C judge the announcement
            graph: Arc<Graph>,
        }

        impl $node {
            fn new(
                name: &'static str,
                keys: Arc<$keys>,
                mempool: &Arc<Mempool>,
                wallet_seed: u8,
                bridge: Option<Arc<QuorumBridge>>,
            ) -> Self {
                let logger = Arc::new(TestLogger(name));
                let fee = Arc::new(FixedFee);
                let chain_monitor = Arc::new(ChainMonitor::new(
                    None::<Arc<NoFilter>>,
                    mempool.clone(),
                    logger.clone(),
                    fee.clone(),
                    Arc::new(MemPersister),
                    keys.clone(),
                    keys.get_peer_storage_key(),
                ));
                let graph = Arc::new(NetworkGraph::new(Network::Regtest, logger.clone()));
                let scorer = Arc::new(Mutex::new(FixedPenaltyScorer::with_penalty(0)));
                let router = Arc::new(DefaultRouter::new(graph.clone(), logger.clone(), keys.clone(), scorer, ()));
                let params = ChainParameters {
                    network: Network::Regtest,
                    best_block: BestBlock::from_network(Network::Regtest),
                };
                let cm = Arc::new(ChannelManager::new(
                    fee,
                    chain_monitor.clone(),
                    mempool.clone(),
                    router,
                    Arc::new(NullMessageRouter {}),
                    logger.clone(),
                    keys.clone(),
                    keys.clone(),
                    keys.clone(),
                    config(),
                    params,
                    chain_epoch(),
                ));
                let secp = Secp256k1::new();
                let wallet = Arc::new(FeeWallet {
                    sk: SecretKey::from_slice(&[wallet_seed; 32]).unwrap(),
                    utxos: Mutex::new(Vec::new()),
                    secp,
                });
                let bump = BumpTransactionEventHandlerSync::new(
                    mempool.clone(),
                    Arc::new(WalletSync::new(wallet.clone(), logger.clone())),
                    keys.clone(),
                    logger,
                );
                Self {
                    name,
                    keys,
                    chain_monitor,
                    cm,
                    wallet,
                    bump,
                    spendable: RefCell::new(Vec::new()),
                    log: RefCell::new(Vec::new()),
                    bridge,
                    graph,
                }
            }
        }

        impl Peer for $node {
            fn name(&self) -> &'static str {
                self.name
            }
            fn id(&self) -> PublicKey {
                self.cm.get_our_node_id()
            }
            fn handler(&self) -> &dyn ChannelMessageHandler {
                &*self.cm
            }
            fn init(&self) -> Init {
                Init { features: self.cm.init_features(), networks: None, remote_network_address: None }
            }
            fn step(&self) -> (bool, Vec<MessageSendEvent>) {
                self.cm.process_pending_htlc_forwards();
                let any = Cell::new(false);
                self.cm.process_pending_events(&|ev: Event| -> Result<(), ReplayEvent> {
                    any.set(true);
                    match &ev {
                        Event::FundingGenerationReady {
                            temporary_channel_id,
                            counterparty_node_id,
                            channel_value_satoshis,
                            output_script,
                            ..
                        } => {
                            let tx =
                                funding_tx(self.keys.get_secure_random_bytes(), *channel_value_satoshis, output_script);
                            self.cm
                                .funding_transaction_generated(*temporary_channel_id, *counterparty_node_id, tx)
                                .unwrap();
                        }
                        Event::OpenChannelRequest { temporary_channel_id, counterparty_node_id, .. } => {
                            self.cm
                                .accept_inbound_channel(temporary_channel_id, counterparty_node_id, 0, None)
                                .unwrap();
                        }
                        Event::PaymentClaimable { purpose, payment_hash, .. }
                            if !HOLD.with(|h| h.borrow().contains(&payment_hash.0)) =>
                        {
                            self.cm.claim_funds(purpose.preimage().unwrap());
                        }
                        _ => {}
                    }
                    self.log.borrow_mut().push(ev);
                    Ok(())
                });
                self.chain_monitor.process_pending_events(&|ev: Event| -> Result<(), ReplayEvent> {
                    any.set(true);
                    match &ev {
                        Event::BumpTransaction(b) => self.bump.handle_event(b),
                        Event::SpendableOutputs { outputs, .. } => self.spendable.borrow_mut().extend(outputs.clone()),
                        _ => {}
                    }
                    self.log.borrow_mut().push(ev);
                    Ok(())
                });
                if let Some(bridge) = &self.bridge {
                    // LDK's async signing: rounds run in the background; once one finished,
                    // LDK asks again and gets the stored result.
                    let wait = if bridge.in_flight() > 0 { Duration::from_secs(20) } else { Duration::ZERO };
                    if bridge.wait_unblocked(wait) {
                        self.cm.signer_unblocked(None);
                        self.chain_monitor.signer_unblocked(None);
                        any.set(true);
                    }
                }
                let busy = any.get() || self.cm.needs_pending_htlc_processing();
                (busy, self.cm.get_and_clear_pending_msg_events())
            }
            fn connect_block(&self, block: &Block, height: u32) {
                self.chain_monitor.block_connected(block, height);
                self.cm.block_connected(block, height);
            }
        }
    };
}

node_type!(LdkNode, KeysManager);
node_type!(QlsNode, QuorumKeysManager);

thread_local! {
    /// Payment hashes the receiver must not claim (held HTLCs).
    static HOLD: RefCell<HashSet<[u8; 32]>> = RefCell::new(HashSet::new());
}

trait Peer {
    fn name(&self) -> &'static str;
    fn id(&self) -> PublicKey;
    fn handler(&self) -> &dyn ChannelMessageHandler;
    fn init(&self) -> Init;
    /// Forwards, events (incl. async-signer unblocking); returns (busy, outgoing messages).
    fn step(&self) -> (bool, Vec<MessageSendEvent>);
    fn connect_block(&self, block: &Block, height: u32);
}

fn config() -> UserConfig {
    let mut cfg = UserConfig::default();
    cfg.channel_handshake_config.negotiate_anchors_zero_fee_htlc_tx = true;
    cfg.manually_accept_inbound_channels = true;
    cfg.channel_handshake_config.minimum_depth = 1;
    cfg.channel_handshake_config.max_inbound_htlc_value_in_flight_percent_of_channel = 100;
    cfg.accept_forwards_to_priv_channels = true;
    cfg.channel_handshake_config.announce_for_forwarding = false;
    // One channel below is announced (its opener's choice); the acceptor takes either.
    cfg.channel_handshake_limits.force_announced_channel_preference = false;
    cfg
}

fn funding_tx(random: [u8; 32], value_sat: u64, script: &ScriptBuf) -> Transaction {
    Transaction {
        version: TxVersion::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint { txid: Txid::from_byte_array(random), vout: 0 },
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::from_slice(&[vec![1u8; 72], vec![2u8; 33]]),
        }],
        output: vec![TxOut { value: Amount::from_sat(value_sat), script_pubkey: script.clone() }],
    }
}

/// The time of this test chain's first block: two hours ago by the clock the cosigners
/// judge heartbeats with (a block a second after it), so the watch's heartbeats attest a
/// fresh tip.
fn chain_epoch() -> u32 {
    static EPOCH: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(|| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        u32::try_from(now - 7_200).unwrap()
    })
}

struct World<'a> {
    nodes: Vec<&'a dyn Peer>,
    mempool: Arc<Mempool>,
    tip: BlockHash,
    height: u32,
    spent: HashSet<OutPoint>,
    /// Every output of every mined transaction, to check spends with Bitcoin Core.
    outputs: HashMap<OutPoint, TxOut>,
    mined: Vec<Transaction>,
    /// (inputs checked by bitcoinconsensus, transactions mined)
    verified: (usize, usize),
    /// When false, error messages (force close) are not delivered: the closer's
    /// counterparty learns of the close from the chain.
    deliver_errors: bool,
    /// B's chain watch: SPV proofs of B's channels' funding transactions to the quorum.
    watch: Option<&'a QuorumChainWatch>,
    /// Channel announcements the nodes broadcast (complete: all four signatures).
    announcements: RefCell<Vec<lightning::ln::msgs::ChannelAnnouncement>>,
    /// B's output sweeper, once it runs: fed every block, then asked to (re)broadcast.
    sweeper: Option<Arc<Sweeper>>,
}

impl<'a> World<'a> {
    fn peer(&self, id: &PublicKey) -> &'a dyn Peer {
        *self.nodes.iter().find(|n| n.id() == *id).expect("known peer")
    }

    fn deliver(&self, from: &dyn Peer, ev: MessageSendEvent) {
        let src = from.id();
        use MessageSendEvent::*;
        match ev {
            SendOpenChannel { node_id, msg } => self.peer(&node_id).handler().handle_open_channel(src, &msg),
            SendAcceptChannel { node_id, msg } => self.peer(&node_id).handler().handle_accept_channel(src, &msg),
            SendFundingCreated { node_id, msg } => self.peer(&node_id).handler().handle_funding_created(src, &msg),
            SendFundingSigned { node_id, msg } => self.peer(&node_id).handler().handle_funding_signed(src, &msg),
            SendChannelReady { node_id, msg } => self.peer(&node_id).handler().handle_channel_ready(src, &msg),
            SendChannelUpdate { node_id, msg } => self.peer(&node_id).handler().handle_channel_update(src, &msg),
            SendChannelReestablish { node_id, msg } => {
                self.peer(&node_id).handler().handle_channel_reestablish(src, &msg)
            }
            UpdateHTLCs { node_id, channel_id, updates } => {
                let d = self.peer(&node_id).handler();
                for m in updates.update_fulfill_htlcs {
                    d.handle_update_fulfill_htlc(src, m);
                }
                for m in &updates.update_fail_htlcs {
                    d.handle_update_fail_htlc(src, m);
                }
                for m in &updates.update_fail_malformed_htlcs {
                    d.handle_update_fail_malformed_htlc(src, m);
                }
                for m in &updates.update_add_htlcs {
                    d.handle_update_add_htlc(src, m);
                }
                if let Some(m) = &updates.update_fee {
                    d.handle_update_fee(src, m);
                }
                match updates.commitment_signed.len() {
                    0 => {}
                    1 => d.handle_commitment_signed(src, &updates.commitment_signed[0]),
                    _ => d.handle_commitment_signed_batch(src, channel_id, updates.commitment_signed),
                }
            }
            SendRevokeAndACK { node_id, msg } => self.peer(&node_id).handler().handle_revoke_and_ack(src, &msg),
            SendShutdown { node_id, msg } => self.peer(&node_id).handler().handle_shutdown(src, &msg),
            SendClosingSigned { node_id, msg } => self.peer(&node_id).handler().handle_closing_signed(src, &msg),
            SendAnnouncementSignatures { node_id, msg } => {
                self.peer(&node_id).handler().handle_announcement_signatures(src, &msg)
            }
            BroadcastChannelAnnouncement { msg, .. } => self.announcements.borrow_mut().push(msg),
            HandleError {
                node_id,
                action:
                    lightning::ln::msgs::ErrorAction::DisconnectPeer { msg: Some(m) }
                    | lightning::ln::msgs::ErrorAction::SendErrorMessage { msg: m },
            } => {
                if self.deliver_errors {
                    self.peer(&node_id).handler().handle_error(src, &m);
                } else {
                    eprintln!("[{}] error to {} not delivered: {}", from.name(), self.peer(&node_id).name(), m.data);
                }
            }
            _ => {}
        }
    }

    fn pump(&self) {
        for _ in 0..2_000 {
            let mut busy = false;
            for n in &self.nodes {
                let (b, msgs) = n.step();
                busy |= b || !msgs.is_empty();
                for m in msgs {
                    self.deliver(*n, m);
                }
            }
            if !busy {
                return;
            }
        }
        panic!("the nodes never went quiet");
    }

    /// Mines the mempool (first seen wins; conflicts dropped), checks every input whose
    /// spent output is known with Bitcoin Core's interpreter, and feeds the block to all.
    fn mine(&mut self) -> Vec<Transaction> {
        let mut txdata = Vec::new();
        let pending: Vec<Transaction> = self.mempool.txs.lock().unwrap().drain(..).collect();
        for tx in pending {
            if tx.input.iter().any(|i| self.spent.contains(&i.previous_output)) {
                continue;
            }
            self.verify(&tx);
            for i in &tx.input {
                self.spent.insert(i.previous_output);
            }
            txdata.push(tx);
        }
        self.mined.extend(txdata.iter().cloned());
        for tx in &txdata {
            let txid = tx.compute_txid();
            for (vout, o) in tx.output.iter().enumerate() {
                self.outputs.insert(OutPoint { txid, vout: vout as u32 }, o.clone());
            }
        }
        self.height += 1;
        let mut block = Block {
            header: Header {
                version: BlockVersion::NO_SOFT_FORK_SIGNALLING,
                prev_blockhash: self.tip,
                merkle_root: TxMerkleNode::all_zeros(),
                time: chain_epoch() + self.height,
                bits: CompactTarget::from_consensus(0x207fffff),
                nonce: 0,
            },
            txdata,
        };
        // A real block header (merkle root, regtest proof of work): the cosigners follow
        // this chain from the headers in B's funding proofs.
        block.header.merkle_root = block.compute_merkle_root().unwrap_or_else(TxMerkleNode::all_zeros);
        while block.header.validate_pow(block.header.target()).is_err() {
            block.header.nonce += 1;
        }
        if let Some(watch) = self.watch {
            watch.block_connected(&block, self.height);
        }
        for n in &self.nodes {
            n.connect_block(&block, self.height);
        }
        if let Some(sweeper) = &self.sweeper {
            sweeper.block_connected(&block, self.height);
            sweeper.regenerate_and_broadcast_spend_if_necessary().expect("the sweeper spends through the quorum");
        }
        self.tip = block.block_hash();
        self.verified.1 += block.txdata.len();
        self.pump();
        block.txdata
    }

    fn verify(&mut self, tx: &Transaction) {
        let bytes = lightning::bitcoin::consensus::serialize(tx);
        for (i, input) in tx.input.iter().enumerate() {
            let Some(spent) = self.outputs.get(&input.previous_output) else { continue };
            bitcoinconsensus::verify(spent.script_pubkey.as_bytes(), spent.value.to_sat(), &bytes, None, i)
                .unwrap_or_else(|e| panic!("Bitcoin Core rejects input {i} of {}: {e:?}", tx.compute_txid()));
            self.verified.0 += 1;
        }
    }
}

fn count(log: &RefCell<Vec<Event>>, f: impl Fn(&Event) -> bool) -> usize {
    log.borrow().iter().filter(|e| f(e)).count()
}

fn invoice_params(amount_msat: u64) -> Bolt11InvoiceParameters {
    Bolt11InvoiceParameters {
        amount_msats: Some(amount_msat),
        description: Bolt11InvoiceDescription::Direct(Description::new("qls".into()).unwrap()),
        ..Default::default()
    }
}

#[test]
fn ldk_node_b_signed_by_the_quorum() {
    let _ = tracing_subscriber::fmt().with_max_level(tracing::Level::WARN).with_test_writer().try_init();
    let rt = tokio::runtime::Runtime::new().unwrap();
    // B's fee wallet (seed 0xb2) is the only foreign script cosigners let B's change pay.
    let fee_wallet_script = {
        let secp = Secp256k1::new();
        let pk = lightning::bitcoin::PublicKey::new(SecretKey::from_slice(&[0xb2; 32]).unwrap().public_key(&secp));
        ScriptBuf::new_p2wpkh(&pk.wpubkey_hash().unwrap())
    };
    let mut policy = test_policy();
    policy.onchain.allowlisted_scripts.insert(fee_wallet_script);
    policy.channel.funding_min_depth = 1;
    // C (seed 0xc1) is an allowlisted payee: B pays C's invoices without an operator.
    let c_node_id = KeysManager::new(&[0xc1; 32], 1, 0, true).get_node_id(lightning::sign::Recipient::Node).unwrap();
    policy.channel.payee_allowlist = vec![hex::encode(c_node_id.serialize())];
    let mut spec = QuorumSpec::new(3, 2);
    spec.policies = vec![policy.clone(), policy.clone(), policy];
    spec.request_timeout = Duration::from_secs(5);
    let harness = rt.block_on(Harness::start(spec)).unwrap();

    let bridge = QuorumBridge::connect(
        &harness.client_identity,
        harness.api_addr,
        harness.coordinator_fingerprint,
        Duration::from_secs(30),
    )
    .unwrap();
    // B keeps its channels' public keys in a file, as a node restarted in an outage needs.
    let keys_dir = tempfile::tempdir().unwrap();
    let b_keys = Arc::new(
        QuorumKeysManager::new(bridge.clone(), &[0xb1; 32])
            .unwrap()
            .with_channel_keys_file(&keys_dir.path().join("channel-keys"))
            .unwrap(),
    );
    let wallet_script = b_keys.wallet_script().clone();
    // LN signmessage through the quorum, checked by LDK's own verifier against B's node id.
    let signed = b_keys.sign_message(b"B is signed by a QLS quorum").unwrap();
    let b_id = b_keys.get_node_id(lightning::sign::Recipient::Node).unwrap();
    assert!(lightning::util::message_signing::verify(b"B is signed by a QLS quorum", &signed, &b_id));

    let mempool = Arc::new(Mempool::default());
    let km = |s: u8| Arc::new(KeysManager::new(&[s; 32], 1, 0, true));
    let a = LdkNode::new("A", km(0xa1), &mempool, 0xa2, None);
    let b = QlsNode::new("B", b_keys.clone(), &mempool, 0xb2, Some(bridge.clone()));
    // LDK here takes a channel as usable after 1 confirmation; B's chain watch proves the
    // funding to the cosigners at that depth too (their `funding_min_depth` is 1 below).
    let b_watch = QuorumChainWatch::new(bridge.clone(), 1);
    let c = LdkNode::new("C", km(0xc1), &mempool, 0xc2, None);
    let genesis = lightning::bitcoin::constants::genesis_block(Network::Regtest);
    let mut w = World {
        nodes: vec![&a, &b, &c],
        mempool: mempool.clone(),
        tip: genesis.block_hash(),
        height: 0,
        spent: HashSet::new(),
        outputs: HashMap::new(),
        verified: (0, 0),
        mined: Vec::new(),
        deliver_errors: true,
        announcements: RefCell::new(Vec::new()),
        watch: Some(&b_watch),
        sweeper: None,
    };
    // B's fee wallet gets one confirmed coin (a transaction with a placeholder input).
    let coin = funding_tx([0xfe; 32], 200_000, &b.wallet.script());
    mempool.broadcast_transactions(&[&coin]);
    w.mine();
    let coin_out = OutPoint { txid: coin.compute_txid(), vout: 0 };
    b.wallet.utxos.lock().unwrap().push(Utxo::new_v0_p2wpkh(
        coin_out,
        Amount::from_sat(200_000),
        &b.wallet.pk().wpubkey_hash().unwrap(),
    ));

    // Connect and open A–B (A funds) and B–C (B funds: B's first quorum-signed commitments).
    for (x, y) in [(&a as &dyn Peer, &b as &dyn Peer), (&b as &dyn Peer, &c as &dyn Peer)] {
        x.handler().peer_connected(y.id(), &y.init(), true).unwrap();
        y.handler().peer_connected(x.id(), &x.init(), false).unwrap();
    }
    a.cm.create_channel(b.id(), 1_000_000, 0, 1, None, None).unwrap();
    b.cm.create_channel(c.id(), 1_000_000, 0, 2, None, None).unwrap();
    w.pump();
    w.mine();
    assert_eq!(b.cm.list_usable_channels().len(), 2, "both of B's channels are usable");
    let chan = |x: &LdkNode| -> ChannelId {
        x.cm.list_channels().into_iter().find(|ch| ch.counterparty.node_id == b.id()).unwrap().channel_id
    };
    let (chan_ab, chan_bc) = (chan(&a), chan(&c));

    // 100 payments: 40 A→C and 40 C→A (B forwards), 10 A→B, 10 B→C (5 operator-approved,
    // 5 on C's invoice alone: C is an allowlisted payee).
    type Invoice = lightning::bolt11_invoice::Bolt11Invoice;
    let cfg = RouteParametersConfig::default;
    let b_pay = |inv: &Invoice, id: PaymentId| {
        let req = if id.0[0].is_multiple_of(2) {
            // The operator (its key, not the node's) approves B's own payment.
            approve_payment_request(inv.payment_hash().to_byte_array(), inv.amount_milli_satoshis().unwrap())
        } else {
            // C's own invoice (LDK-made, signed by C): C is an allowlisted payee.
            qls_protocol::NodeKeyRequest::ApprovePayment {
                payment_hash: inv.payment_hash().to_byte_array(),
                amount_msat: inv.amount_milli_satoshis().unwrap(),
                expires_at: u64::MAX,
                invoice: Some(inv.to_string()),
                approval: None,
            }
        };
        bridge.node_key_blocking(req).expect("payment approved");
        b.cm.pay_for_bolt11_invoice(inv, id, None, cfg(), Retry::Attempts(0)).unwrap()
    };
    for i in 0..100u8 {
        let id = PaymentId([i; 32]);
        match i {
            0..40 => {
                let inv = c.cm.create_bolt11_invoice(invoice_params(5_000_000)).unwrap();
                a.cm.pay_for_bolt11_invoice(&inv, id, None, cfg(), Retry::Attempts(0)).unwrap();
            }
            40..80 => {
                let inv = a.cm.create_bolt11_invoice(invoice_params(2_000_000)).unwrap();
                c.cm.pay_for_bolt11_invoice(&inv, id, None, cfg(), Retry::Attempts(0)).unwrap();
            }
            80..90 => {
                let inv = b.cm.create_bolt11_invoice(invoice_params(3_000_000)).unwrap();
                a.cm.pay_for_bolt11_invoice(&inv, id, None, cfg(), Retry::Attempts(0)).unwrap();
            }
            _ => b_pay(&c.cm.create_bolt11_invoice(invoice_params(2_000_000)).unwrap(), id),
        }
        w.pump();
    }
    let sent = |n: &RefCell<Vec<Event>>| count(n, |e| matches!(e, Event::PaymentSent { .. }));
    let failed = |n: &RefCell<Vec<Event>>| count(n, |e| matches!(e, Event::PaymentFailed { .. }));
    let forwarded = count(&b.log, |e| matches!(e, Event::PaymentForwarded { .. }));
    eprintln!(
        "payments sent: A {} C {} B {}; failed: A {} C {} B {}; B forwarded {forwarded}",
        sent(&a.log),
        sent(&c.log),
        sent(&b.log),
        failed(&a.log),
        failed(&c.log),
        failed(&b.log)
    );
    assert_eq!((sent(&a.log), sent(&c.log), sent(&b.log)), (50, 40, 10), "every payment succeeded");
    assert_eq!(forwarded, 80, "B forwarded both ways");

    // Cooperative close of A–B, initiated by B: its output pays the QLS wallet.
    b.cm.close_channel(&chan_ab, &a.id()).unwrap();
    w.pump();
    let mined = w.mine();
    let close =
        mined.iter().find(|t| t.input.iter().any(|i| i.previous_output.txid != coin_out.txid)).expect("closing tx");
    assert!(close.output.iter().any(|o| o.script_pubkey == wallet_script), "B's share goes to the QLS wallet");
    w.pump();
    assert!(b.cm.list_channels().iter().all(|ch| ch.channel_id != chan_ab));

    // A opens another channel to B pushing B 200,000 sat, then force-closes it: B's
    // balance sits in the to_remote output of A's commitment (a StaticPaymentOutput),
    // swept by the quorum (B's payment key) to the QLS wallet.
    a.cm.create_channel(b.id(), 500_000, 200_000_000, 3, None, None).unwrap();
    w.pump();
    w.mine();
    w.pump();
    let chan_ab2 =
        a.cm.list_channels()
            .into_iter()
            .find(|ch| ch.counterparty.node_id == b.id() && ch.is_channel_ready)
            .expect("the pushed channel is ready")
            .channel_id;
    a.cm.force_close_broadcasting_latest_txn(&chan_ab2, &b.id(), "A closes".into()).unwrap();
    w.pump();
    let a_commitment = w.mine();
    assert_eq!(a_commitment.len(), 1, "A's commitment is mined");
    let to_remote = |d: &&SpendableOutputDescriptor| matches!(d, SpendableOutputDescriptor::StaticPaymentOutput(_));
    for _ in 0..20 {
        if b.spendable.borrow().iter().any(|d| to_remote(&d)) {
            break;
        }
        w.mine();
    }
    let spendable = b.spendable.borrow().clone();
    let remote = spendable.iter().find(to_remote).expect("B's to_remote on A's commitment is spendable");
    let sweep =
        b_keys.spend_spendable_outputs(&[remote], vec![], wallet_script.clone(), 253, None, &Secp256k1::new()).unwrap();
    assert_eq!(sweep.output.len(), 1);
    assert_eq!(sweep.output[0].script_pubkey, wallet_script);
    assert!(sweep.output[0].value.to_sat() > 199_000, "B's pushed balance, less a small fee: {sweep:?}");
    mempool.broadcast_transactions(&[&sweep]);
    let mined = w.mine();
    assert!(mined.iter().any(|t| t.compute_txid() == sweep.compute_txid()), "the to_remote sweep is mined");

    // A cheats: it opens a channel to B, keeps a copy of its channel monitor (a stale
    // backup), pays B 100,000 sat, then broadcasts the revoked commitment the copy holds.
    // B's monitor punishes it: the justice transaction, signed by the quorum (the revoked
    // commitment proven spent by B's chain watch, its secret in every cosigner's store),
    // takes A's whole to_local to the QLS wallet.
    a.cm.create_channel(b.id(), 400_000, 0, 4, None, None).unwrap();
    w.pump();
    w.mine();
    w.pump();
    let chan_ab3 =
        a.cm.list_channels()
            .into_iter()
            .find(|ch| ch.counterparty.node_id == b.id() && ch.is_channel_ready && ch.channel_value_satoshis == 400_000)
            .expect("the third A–B channel is ready")
            .channel_id;
    let stale_backup = {
        use lightning::util::ser::Writeable;
        a.chain_monitor.get_monitor(chan_ab3).expect("A's monitor").encode()
    };
    let inv = b.cm.create_bolt11_invoice(invoice_params(100_000_000)).unwrap();
    a.cm.pay_for_bolt11_invoice(&inv, PaymentId([0xab; 32]), None, cfg(), Retry::Attempts(0)).unwrap();
    w.pump();
    assert_eq!(sent(&a.log), 51, "A paid B over the new channel");
    let stale = {
        use lightning::util::ser::ReadableArgs;
        let (_, monitor) = <(lightning::bitcoin::BlockHash, ChannelMonitor<lightning::sign::InMemorySigner>)>::read(
            &mut &stale_backup[..],
            (&*a.keys, &*a.keys),
        )
        .expect("the stale backup reads");
        monitor
    };
    let stale_logger = Arc::new(TestLogger("A-stale"));
    stale.broadcast_latest_holder_commitment_txn(&mempool, &Arc::new(FixedFee), &stale_logger);
    // An anchor commitment comes as a bump event (the commitment, signed, and its anchor);
    // it pays enough fee here to be broadcast alone.
    let handler = |event: Event| {
        if let Event::BumpTransaction(lightning::events::bump_transaction::BumpTransactionEvent::ChannelClose {
            commitment_tx,
            ..
        }) = event
        {
            mempool.broadcast_transactions(&[&commitment_tx]);
        }
        Ok(())
    };
    stale.process_pending_events(&&handler, &stale_logger).unwrap();
    let revoked = w.mine();
    assert_eq!(revoked.len(), 1, "A's revoked commitment is mined");
    let revoked_txid = revoked[0].compute_txid();
    let a_balance = revoked[0].output.iter().map(|o| o.value.to_sat()).max().unwrap();
    let mut justice = None;
    for _ in 0..10 {
        justice = w.mined.iter().find(|t| t.input.iter().any(|i| i.previous_output.txid == revoked_txid)).cloned();
        if justice.is_some() {
            break;
        }
        w.mine();
    }
    let justice = justice.expect("B's justice transaction is mined");
    assert_eq!(justice.output.len(), 1);
    assert_eq!(justice.output[0].script_pubkey, wallet_script, "A's balance goes to the QLS wallet");
    let fee = a_balance - justice.output[0].value.to_sat();
    assert!(a_balance > 390_000 && fee < 2_000, "A's whole to_local ({a_balance} sat) less a fee of {fee} sat");
    assert!(b
        .log
        .borrow()
        .iter()
        .any(|e| matches!(e, Event::ChannelClosed { channel_id, .. } if *channel_id == chan_ab3)));

    // B pays C once more and C holds the HTLC; B force-closes B–C with it in flight.
    let held: Invoice = c.cm.create_bolt11_invoice(invoice_params(7_000_000)).unwrap();
    HOLD.with(|h| h.borrow_mut().insert(held.payment_hash().to_byte_array()));
    b_pay(&held, PaymentId([0xee; 32]));
    w.pump();
    w.deliver_errors = false;
    b.cm.force_close_broadcasting_latest_txn(&chan_bc, &c.id(), "test force close".into()).unwrap();
    w.pump();
    let commitment = w.mine();
    assert_eq!(commitment.len(), 1, "B's holder commitment, signed by the quorum, is mined");
    let commitment_txid = commitment[0].compute_txid();
    assert!(b
        .log
        .borrow()
        .iter()
        .any(|e| matches!(e, Event::ChannelClosed { reason: ClosureReason::HolderForceClosed { .. }, .. })));

    // Past the HTLC's expiry B's HTLC-timeout (quorum + fee wallet) confirms; after the
    // contest delay both delayed outputs become spendable.
    for _ in 0..400 {
        w.mine();
        let delayed = |d: &&SpendableOutputDescriptor| matches!(d, SpendableOutputDescriptor::DelayedPaymentOutput(_));
        if b.spendable.borrow().iter().filter(delayed).count() >= 2 {
            break;
        }
    }
    let htlc_timeout = w
        .mined
        .iter()
        .find(|t| t.input.iter().any(|i| i.previous_output.txid == commitment_txid) && t.input.len() == 2)
        .expect("B's HTLC-timeout (commitment HTLC output + fee-wallet coin) was mined");
    assert!(htlc_timeout.input.iter().any(|i| i.previous_output == coin_out), "fees came from the fee wallet");
    let spendable = b.spendable.borrow().clone();
    let delayed: Vec<_> =
        spendable.iter().filter(|d| matches!(d, SpendableOutputDescriptor::DelayedPaymentOutput(_))).collect();
    assert_eq!(delayed.len(), 2, "to_local and the HTLC-timeout output: {spendable:?}");
    // Both are swept below, in one transaction with the to_remote of C's commitment.
    let delayed: Vec<SpendableOutputDescriptor> = delayed.into_iter().cloned().collect();

    // C force-closes on B with HTLCs both ways in flight: C opens a channel to B pushing
    // B 200,000 sat, B pays C over it and C holds the HTLC, C pays B and B holds it, then C
    // broadcasts its commitment. B's chain watch proves it; B claims C's HTLC with the
    // preimage at once, and after its own HTLC's expiry times it out, both from C's
    // commitment (quorum-signed: the commitment rebuilt from what the cosigners signed);
    // those claims and the sweep of B's to_remote all pay the QLS wallet.
    c.cm.create_channel(b.id(), 500_000, 200_000_000, 5, None, None).unwrap();
    w.pump();
    w.mine();
    w.pump();
    let chan_cb =
        c.cm.list_channels()
            .into_iter()
            .find(|ch| ch.counterparty.node_id == b.id() && ch.is_channel_ready)
            .expect("C's channel to B is ready")
            .channel_id;
    let held_on_chain: Invoice = c.cm.create_bolt11_invoice(invoice_params(9_000_000)).unwrap();
    HOLD.with(|h| h.borrow_mut().insert(held_on_chain.payment_hash().to_byte_array()));
    b_pay(&held_on_chain, PaymentId([0xef; 32]));
    w.pump();
    // And C's HTLC to B, which B holds (claimed only once C's commitment is on chain).
    let to_b: Invoice = b.cm.create_bolt11_invoice(invoice_params(8_000_000)).unwrap();
    HOLD.with(|h| h.borrow_mut().insert(to_b.payment_hash().to_byte_array()));
    c.cm.pay_for_bolt11_invoice(&to_b, PaymentId([0xc8; 32]), None, cfg(), Retry::Attempts(0)).unwrap();
    w.pump();
    c.cm.force_close_broadcasting_latest_txn(&chan_cb, &b.id(), "C closes".into()).unwrap();
    w.pump();
    let c_commitment = w.mine();
    assert_eq!(c_commitment.len(), 1, "C's commitment is mined");
    let c_txid = c_commitment[0].compute_txid();
    assert!(
        c_commitment[0].output.iter().any(|o| o.value.to_sat() == 9_000),
        "B's HTLC is on C's commitment: {c_commitment:?}"
    );
    assert!(c_commitment[0].output.iter().any(|o| o.value.to_sat() == 8_000), "C's HTLC to B is on it too");
    // B claims C's HTLC with the preimage from C's commitment (quorum-signed, its own
    // record of that commitment), to the QLS wallet.
    let preimage = b
        .log
        .borrow()
        .iter()
        .find_map(|e| match e {
            Event::PaymentClaimable { purpose, payment_hash, .. }
                if payment_hash.0 == to_b.payment_hash().to_byte_array() =>
            {
                purpose.preimage()
            }
            _ => None,
        })
        .expect("B was offered C's HTLC");
    b.cm.claim_funds(preimage);
    w.pump();
    let claim_of = |w: &World, value: u64| {
        w.mined
            .iter()
            .find(|t| {
                t.input.iter().any(|i| {
                    i.previous_output.txid == c_txid
                        && c_commitment[0].output[i.previous_output.vout as usize].value.to_sat() == value
                })
            })
            .cloned()
    };
    for _ in 0..6 {
        if claim_of(&w, 8_000).is_some() {
            break;
        }
        w.mine();
    }
    let preimage_claim = claim_of(&w, 8_000).expect("B's preimage claim on C's commitment is mined");
    assert!(preimage_claim.output.iter().all(|o| o.script_pubkey == wallet_script), "{preimage_claim:?}");
    for _ in 0..400 {
        if claim_of(&w, 9_000).is_some() {
            break;
        }
        w.mine();
    }
    let timeout_claim = claim_of(&w, 9_000).expect("B's HTLC timeout on C's commitment is mined");
    assert!(timeout_claim.output.iter().all(|o| o.script_pubkey == wallet_script), "{timeout_claim:?}");
    let spendable = b.spendable.borrow().clone();
    let remote = spendable
        .iter()
        .find(|d| matches!(d, SpendableOutputDescriptor::StaticPaymentOutput(o) if o.outpoint.txid == c_txid))
        .expect("B's to_remote on C's commitment is spendable");
    // LDK's OutputSweeper, unmodified, sweeps B's two delayed outputs (of its own force
    // close) and the to_remote of C's commitment in one transaction: three inputs of two
    // channels, each valued by the cosigners from their own state (the to_remote by the
    // amount its signature commits to), the fee judged over the whole transaction.
    let sweeper = Arc::new(Sweeper::new(
        BestBlock::new(w.tip, w.height),
        mempool.clone(),
        Arc::new(FixedFee),
        None,
        b_keys.clone(),
        Arc::new(SweepTo(wallet_script.clone())),
        Arc::new(MemStore::default()),
        Arc::new(TestLogger("B-sweeper")),
    ));
    let mut batch = delayed.clone();
    batch.push(remote.clone());
    let swept_sat: u64 = batch
        .iter()
        .map(|d| match d {
            SpendableOutputDescriptor::DelayedPaymentOutput(o) => o.output.value.to_sat(),
            SpendableOutputDescriptor::StaticPaymentOutput(o) => o.output.value.to_sat(),
            SpendableOutputDescriptor::StaticOutput { output, .. } => output.value.to_sat(),
        })
        .sum();
    sweeper.track_spendable_outputs(batch.clone(), None, true, None).unwrap();
    w.sweeper = Some(sweeper.clone());
    let batched = |t: &Transaction| t.input.len() == batch.len();
    for _ in 0..3 {
        if w.mine().iter().any(batched) {
            break;
        }
    }
    let sweep = w.mined.iter().find(|t| batched(t)).cloned().expect("one sweep of all three outputs is mined");
    let tracked = sweeper.tracked_spendable_outputs();
    assert_eq!(tracked.len(), 3);
    assert!(
        tracked.iter().all(|o| matches!(o.status, OutputSpendStatus::PendingThresholdConfirmations { .. })),
        "the sweeper sees its sweep confirmed: {tracked:?}"
    );
    let outpoint = |d: &SpendableOutputDescriptor| d.spendable_outpoint().into_bitcoin_outpoint();
    for d in &batch {
        assert!(sweep.input.iter().any(|i| i.previous_output == outpoint(d)), "{:?} is swept", outpoint(d));
    }
    assert_eq!(sweep.output.len(), 1);
    assert_eq!(sweep.output[0].script_pubkey, wallet_script);
    // To the satoshi: the wallet gets everything swept less the fee at the sweeper's feerate.
    let fee = swept_sat - sweep.output[0].value.to_sat();
    let weight = sweep.weight().to_wu();
    assert!(
        fee >= weight * 253 / 1000 && fee <= weight * 253 / 1000 + 10,
        "fee {fee} sat for {weight} WU at 253 sat/kWU"
    );

    // An announced channel: A opens it to B asking for announcement; after six blocks
    // both sign the announcement (B's funding-key signature from the quorum, checked
    // against B's own funding proof; its node-key signature too) and A's and C's network
    // graphs accept it, all four signatures verified.
    let mut announced = config();
    announced.channel_handshake_config.announce_for_forwarding = true;
    a.cm.create_channel(b.id(), 300_000, 0, 6, None, Some(announced)).unwrap();
    w.pump();
    for _ in 0..7 {
        w.mine();
        w.pump();
    }
    let scid =
        a.cm.list_channels()
            .into_iter()
            .find(|ch| ch.counterparty.node_id == b.id() && ch.is_announced)
            .and_then(|ch| ch.short_channel_id)
            .expect("the announced A–B channel is confirmed");
    let announcement = w
        .announcements
        .borrow()
        .iter()
        .find(|m| m.contents.short_channel_id == scid)
        .cloned()
        .expect("the channel announcement was broadcast");
    for (node, graph) in [("A", &a.graph), ("C", &c.graph)] {
        graph
            .update_channel_from_announcement_no_lookup(&announcement)
            .unwrap_or_else(|e| panic!("{node}'s graph refuses the announcement: {e:?}"));
        assert!(graph.read_only().channel(scid).is_some(), "{node}'s graph holds the channel");
    }

    // The ledger, to the satoshi: every mined transaction that pays only the QLS wallet
    // (B's justice, HTLC claims and sweeps) spends outputs mined here, and all it takes
    // in reaches the wallet but a fee within the highest feerate LDK was given
    // (1,000 sat/kWU).
    let mut paid_to_wallet = 0u64;
    let mut claims = 0;
    for tx in w.mined.iter().filter(|t| t.output.iter().all(|o| o.script_pubkey == wallet_script)) {
        let spent: u64 = tx
            .input
            .iter()
            .map(|i| w.outputs.get(&i.previous_output).expect("spends an output mined here").value.to_sat())
            .sum();
        let paid: u64 = tx.output.iter().map(|o| o.value.to_sat()).sum();
        let fee = spent.checked_sub(paid).expect("pays out no more than it spends");
        assert!(fee <= tx.weight().to_wu(), "{} pays {fee} sat of fee for {} WU", tx.compute_txid(), tx.weight());
        paid_to_wallet += paid;
        claims += 1;
    }
    eprintln!("{claims} transactions paid the QLS wallet {paid_to_wallet} sat");
    assert!(claims >= 5, "justice, two claims on C's commitment, a to_remote sweep and the batched sweep");
    let (inputs, txs) = w.verified;
    eprintln!("bitcoinconsensus checked {inputs} inputs of {txs} mined transactions");
    assert!(inputs >= 6, "closing, commitment, HTLC-timeout and sweeps were all checked");
    // B holds no secret: every signature above came from quorum rounds, and in this
    // honest run none was refused.
    let rounds = bridge.round_counts();
    eprintln!("B's channel rounds through the quorum: {rounds:?}");
    assert!(rounds.signed > 800, "hundreds of commitment updates went through the quorum: {rounds:?}");
    assert_eq!(rounds.failed, 0, "no honest request was refused");
    drop(w);
    drop(b);
    rt.block_on(harness.shutdown());
}
