//! An in-process quorum on loopback: n cosigners (each its own identity, store, policy
//! and QUIC endpoint), a coordinator with its node API, and a pinned node client; keys
//! from a real DKG or, for tests, a dealer. Cosigners can be stopped and restarted from
//! their stores, or made byzantine through a reply fault.
//!
//! Must never: share a store, identity or endpoint between two cosigners.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use quinn::Endpoint;
use tokio::task::JoinHandle;

use qls_coordinator::config::{CoordinatorConfig, CosignerSpec};
use qls_coordinator::node_api::NodeApi;
use qls_coordinator::{dkg, quorum, Quorum};
use qls_cosigner::{Cosigner, CosignerConfig, ReplyFault};
use qls_node::NodeClient;
use qls_protocol::quic::Identity;
use qls_protocol::{CosignerRequest, CosignerResponse, Fingerprint, KeyId};
use qls_signer_core::dealer;
use qls_signer_core::frost::round2::SignatureShare;
use qls_signer_core::policy::PolicyConfig;

use crate::faulty_socket::{FaultController, FaultySocket, LinkFaults};

#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("harness: {0}")]
    Setup(String),
}

fn setup<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> HarnessError {
    move |e| HarnessError::Setup(format!("{what}: {e}"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keygen {
    Dkg,
    /// Trusted dealer (tests only).
    Dealer,
}

/// What quorum to start.
#[derive(Clone)]
pub struct QuorumSpec {
    pub n: usize,
    pub t: u16,
    pub keygen: Keygen,
    /// Per-cosigner policy; missing entries get the default policy.
    pub policies: Vec<PolicyConfig>,
    /// Per-cosigner reply fault (byzantine behaviour); missing entries are honest.
    pub faults: Vec<Option<ReplyFault>>,
    pub request_timeout: Duration,
    pub nonce_pool_target: u32,
    /// Cosigners (by index) holding the node's ECDSA seed; default: the first.
    pub key_holders: Vec<usize>,
}

impl QuorumSpec {
    pub fn new(n: usize, t: u16) -> Self {
        Self {
            n,
            t,
            keygen: Keygen::Dkg,
            policies: Vec::new(),
            faults: Vec::new(),
            request_timeout: Duration::from_millis(2_000),
            nonce_pool_target: 128,
            key_holders: vec![0],
        }
    }
}

/// The payment approver key of simnet quorums (a fixed test key, not a secret): the
/// operator that approves the node's own payments in tests and scenarios.
pub const TEST_APPROVER_SECRET: [u8; 32] = [0x5a; 32];

/// The default policy with [`TEST_APPROVER_SECRET`]'s key as the payment approver.
pub fn test_policy() -> PolicyConfig {
    let secp = bitcoin::secp256k1::Secp256k1::new();
    let sk = bitcoin::secp256k1::SecretKey::from_slice(&TEST_APPROVER_SECRET).expect("valid test scalar");
    let pk = bitcoin::secp256k1::PublicKey::from_secret_key(&secp, &sk);
    let mut p = PolicyConfig::default();
    p.channel.payment_approvers = vec![hex::encode(pk.serialize())];
    p
}

/// An operator-approved `ApprovePayment`, signed with [`TEST_APPROVER_SECRET`], valid for
/// an hour from the system clock.
pub fn approve_payment_request(payment_hash: [u8; 32], amount_msat: u64) -> qls_protocol::NodeKeyRequest {
    let secp = bitcoin::secp256k1::Secp256k1::new();
    let sk = bitcoin::secp256k1::SecretKey::from_slice(&TEST_APPROVER_SECRET).expect("valid test scalar");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let expires_at = now + 3_600;
    let msg = bitcoin::secp256k1::Message::from_digest(qls_signer_core::channel::payment_approval_message(
        &payment_hash,
        amount_msat,
        expires_at,
    ));
    qls_protocol::NodeKeyRequest::ApprovePayment {
        payment_hash,
        amount_msat,
        expires_at,
        invoice: None,
        approval: Some(qls_protocol::PaymentApproval {
            approver: bitcoin::secp256k1::PublicKey::from_secret_key(&secp, &sk).serialize().to_vec(),
            sig: secp.sign_ecdsa(&msg, &sk).serialize_compact().to_vec(),
        }),
    }
}

/// A fault that replaces every signature share with a well-formed but wrong one.
pub fn invalid_share_fault() -> ReplyFault {
    Arc::new(|reply| match reply {
        CosignerResponse::Shares { shares, warnings } => {
            let mut wrong = [0u8; 32];
            wrong[31] = 7;
            let bad = SignatureShare::deserialize(&wrong).map(|s| s.serialize()).unwrap_or_default();
            CosignerResponse::Shares { shares: vec![bad; shares.len()], warnings }
        }
        other => other,
    })
}

pub struct CosignerSlot {
    pub name: String,
    pub data_dir: PathBuf,
    pub config: CosignerConfig,
    pub fingerprint: Fingerprint,
    pub addr: SocketAddr,
    fault: Option<ReplyFault>,
    running: Option<(Endpoint, JoinHandle<()>)>,
}

impl CosignerSlot {
    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }
}

pub struct Harness {
    _dir: tempfile::TempDir,
    pub cosigners: Vec<CosignerSlot>,
    /// Faults on the coordinator's links to the cosigners (its endpoint's socket).
    pub link_faults: Arc<FaultController>,
    pub coordinator_fingerprint: Fingerprint,
    pub coordinator_identity: Arc<Identity>,
    pub client_identity: Identity,
    pub quorum: Arc<Quorum>,
    /// The coordinator's config (cosigner addresses and pins), for tests that play a
    /// malicious coordinator with its identity.
    pub coordinator_config: CoordinatorConfig,
    pub api_addr: SocketAddr,
    /// The regtest chain this quorum's channels are funded on (the node's view; the
    /// cosigners learn it from the headers in funding proofs).
    pub chain: crate::sim_chain::SharedChain,
    api_endpoint: Endpoint,
    refill: JoinHandle<()>,
}

async fn start_slot(slot: &mut CosignerSlot) -> Result<(), HarnessError> {
    // A stopped cosigner's store is released once its last connection task ends.
    let mut last = String::new();
    for _ in 0..250 {
        match Cosigner::open(&slot.data_dir, slot.config.clone()) {
            Ok(mut c) => {
                if let Some(f) = &slot.fault {
                    c = c.with_reply_fault(f.clone());
                }
                slot.addr = c.local_addr().map_err(setup("cosigner address"))?;
                slot.config.listen = slot.addr;
                let endpoint = c.endpoint();
                slot.running = Some((endpoint, tokio::spawn(c.serve())));
                return Ok(());
            }
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(HarnessError::Setup(format!("cosigner {} did not start: {last}", slot.name)))
}

impl Harness {
    pub async fn start(spec: QuorumSpec) -> Result<Self, HarnessError> {
        let dir = tempfile::tempdir().map_err(setup("temp dir"))?;
        // Funding transactions are mined as deep as the most demanding cosigner asks.
        let funding_depth = (0..spec.n)
            .map(|i| spec.policies.get(i).cloned().unwrap_or_else(test_policy).channel.funding_min_depth)
            .max()
            .unwrap_or(1);
        let coordinator =
            Arc::new(Identity::init(&dir.path().join("coordinator"), "coordinator").map_err(setup("identity"))?);
        let client_identity = Identity::init(&dir.path().join("client"), "client").map_err(setup("identity"))?;
        let mut ids = Vec::new();
        for i in 1..=spec.n {
            let data_dir = dir.path().join(format!("cosigner-{i}"));
            ids.push((
                data_dir.clone(),
                Identity::init(&data_dir, &format!("c{i}")).map_err(setup("identity"))?.fingerprint,
            ));
        }
        let mut cosigners: Vec<CosignerSlot> = Vec::new();
        for (i, (data_dir, fingerprint)) in ids.iter().enumerate() {
            let config = CosignerConfig {
                name: format!("c{}", i + 1),
                listen: "127.0.0.1:0".parse().expect("literal"),
                coordinators: vec![coordinator.fingerprint],
                peers: ids.iter().filter(|(_, f)| f != fingerprint).map(|(_, f)| *f).collect(),
                key_holder_peers: ids
                    .iter()
                    .enumerate()
                    .filter(|(j, (_, f))| f != fingerprint && spec.key_holders.contains(j))
                    .map(|(_, (_, f))| *f)
                    .collect(),
                nonce_pool_max: 1024,
                dkg_min_threshold: None,
                allow_dealer_import: spec.keygen == Keygen::Dealer,
                key_holder: spec.key_holders.contains(&i),
                approval_threshold: Some(spec.t),
                single_device: spec.t < 2,
                network: bitcoin::Network::Regtest,
                policy: spec.policies.get(i).cloned().unwrap_or_else(test_policy),
            };
            let mut slot = CosignerSlot {
                name: config.name.clone(),
                data_dir: data_dir.clone(),
                config,
                fingerprint: *fingerprint,
                addr: "127.0.0.1:0".parse().expect("literal"),
                fault: spec.faults.get(i).cloned().flatten(),
                running: None,
            };
            // Every key holder holds the same node seed (an operator provisions it to each):
            // the later ones get a copy of the first one's before their first start.
            if let Some(first) = spec.key_holders.iter().min().filter(|f| **f < i && spec.key_holders.contains(&i)) {
                let seed = qls_cosigner::key_holder::SEED_FILE;
                std::fs::copy(cosigners[*first].data_dir.join(seed), slot.data_dir.join(seed))
                    .map_err(setup("node seed copy"))?;
            }
            start_slot(&mut slot).await?;
            cosigners.push(slot);
        }
        let config = CoordinatorConfig {
            name: "coordinator".into(),
            listen: "127.0.0.1:0".parse().expect("literal"),
            network: bitcoin::Network::Regtest,
            clients: vec![client_identity.fingerprint],
            cosigners: cosigners
                .iter()
                .map(|c| CosignerSpec { name: c.name.clone(), addr: c.addr, fingerprint: c.fingerprint })
                .collect(),
            key_id: None,
            request_timeout: spec.request_timeout,
            nonce_pool_target: spec.nonce_pool_target,
        };
        let key_id = keygen(&spec, &config, coordinator.clone(), &cosigners).await?;
        let config = CoordinatorConfig { key_id: Some(key_id), ..config };
        let link_faults = FaultController::new(0x5eed);
        let socket = FaultySocket::bind_loopback(link_faults.clone()).map_err(setup("faulty socket"))?;
        let endpoint = qls_protocol::quic::client_endpoint_on(socket).map_err(setup("coordinator endpoint"))?;
        let quorum =
            Quorum::connect_on(config.clone(), coordinator.clone(), endpoint).await.map_err(setup("coordinator"))?;
        let refill = quorum.spawn_refill_task();
        let api = NodeApi::bind(quorum.clone(), &coordinator).map_err(setup("node API"))?;
        let api_addr = api.local_addr().map_err(setup("node API address"))?;
        let api_endpoint = api.endpoint();
        tokio::spawn(api.serve());
        Ok(Self {
            _dir: dir,
            cosigners,
            link_faults,
            coordinator_fingerprint: coordinator.fingerprint,
            coordinator_identity: coordinator.clone(),
            client_identity,
            quorum,
            coordinator_config: config,
            api_addr,
            chain: crate::sim_chain::SimChain::shared(funding_depth),
            api_endpoint,
            refill,
        })
    }

    /// The wallet key (PSBT spends).
    pub fn key_id(&self) -> KeyId {
        self.quorum.key.key_id
    }

    /// The key raw 32-byte messages are signed under.
    pub fn message_key(&self) -> KeyId {
        self.quorum.key.message_key
    }

    /// Restarts the coordinator's node API on the same address and identity, as a
    /// coordinator process restart would look to the node (the quorum is kept).
    pub async fn restart_node_api(&mut self) -> Result<(), HarnessError> {
        self.api_endpoint.close(0u32.into(), b"restart");
        self.api_endpoint.wait_idle().await;
        let old = std::mem::replace(
            &mut self.api_endpoint,
            quinn::Endpoint::client("127.0.0.1:0".parse().expect("literal")).map_err(setup("placeholder endpoint"))?,
        );
        drop(old);
        let mut last = None;
        for _ in 0..50 {
            match NodeApi::bind_to(self.quorum.clone(), &self.coordinator_identity, self.api_addr) {
                Ok(api) => {
                    self.api_endpoint = api.endpoint();
                    tokio::spawn(api.serve());
                    return Ok(());
                }
                // The old socket is released once the old serve task has seen the close.
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(HarnessError::Setup(format!("node API rebind: {last:?}")))
    }

    /// A node client pinned to this coordinator.
    pub async fn client(&self) -> Result<NodeClient, HarnessError> {
        NodeClient::connect(&self.client_identity, self.api_addr, self.coordinator_fingerprint, Duration::from_secs(30))
            .await
            .map_err(setup("client"))
    }

    /// Stops cosigner `i` (closes its endpoint; its store is released).
    pub async fn stop_cosigner(&mut self, i: usize) {
        if let Some((endpoint, task)) = self.cosigners[i].running.take() {
            endpoint.close(0u32.into(), b"stopped");
            let _ = task.await;
            endpoint.wait_idle().await;
        }
    }

    /// Restarts cosigner `i` from its store, on the same address.
    pub async fn start_cosigner(&mut self, i: usize) -> Result<(), HarnessError> {
        if self.cosigners[i].running.is_none() {
            start_slot(&mut self.cosigners[i]).await?;
        }
        Ok(())
    }

    /// Impairs the coordinator's link to cosigner `i` (both directions).
    pub fn impair_link(&self, i: usize, faults: LinkFaults) {
        self.link_faults.set(self.cosigners[i].addr, faults);
    }

    /// Removes every impairment of the link to cosigner `i`.
    pub fn heal_link(&self, i: usize) {
        self.link_faults.heal(self.cosigners[i].addr);
    }

    /// Waits until every running cosigner's commitment pool has at least `n` entries.
    pub async fn wait_for_pools(&self, n: usize, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            let ready = self
                .quorum
                .members
                .iter()
                .zip(&self.cosigners)
                .all(|(m, c)| !c.is_running() || m.ready_commitments() >= n);
            if ready {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    pub async fn shutdown(mut self) {
        self.refill.abort();
        self.api_endpoint.close(0u32.into(), b"shutdown");
        self.quorum.close();
        for i in 0..self.cosigners.len() {
            self.stop_cosigner(i).await;
        }
    }
}

async fn keygen(
    spec: &QuorumSpec,
    config: &CoordinatorConfig,
    coordinator: Arc<Identity>,
    cosigners: &[CosignerSlot],
) -> Result<KeyId, HarnessError> {
    let (_endpoint, links) = quorum::make_links(config, coordinator).map_err(setup("links"))?;
    match spec.keygen {
        Keygen::Dkg => Ok(dkg::run_dkg(&links, spec.t, config.request_timeout).await.map_err(setup("DKG"))?.key_id),
        Keygen::Dealer => {
            let fps: Vec<Fingerprint> = cosigners.iter().map(|c| c.fingerprint).collect();
            let shares = dealer::split(None, &fps, spec.t, &mut rand::rngs::OsRng).map_err(setup("dealer"))?;
            let key_id = shares[0].1.key_id();
            for (link, (_, share)) in links.iter().zip(shares) {
                let req = CosignerRequest::ImportDealerShare {
                    key_package: share.key_package.serialize().map_err(setup("key package"))?,
                    public_key_package: share.public_key_package.serialize().map_err(setup("public key package"))?,
                };
                match link.call(&req, config.request_timeout).await.map_err(setup("import"))? {
                    CosignerResponse::Imported(_) => {}
                    other => return Err(HarnessError::Setup(format!("import refused: {other:?}"))),
                }
            }
            Ok(key_id)
        }
    }
}
