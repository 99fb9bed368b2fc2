//! The coordinator's view of the group: the group key (learned from the cosigners, never
//! stored), one member per cosigner with its link, FROST identifier, health, and pool of
//! public nonce commitments, refilled in the background so signing is one round trip.
//!
//! Must never: hand one commitment to two sessions (taken commitments are "in flight"
//! until released), or count a cosigner whose public key package differs from the group's.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use quinn::Endpoint;

use qls_protocol::limits::MAX_NONCE_BATCH;
use qls_protocol::quic::{client_endpoint, fingerprint_hex, Identity, TransportError};
use qls_protocol::{ChannelKeysId, CosignerRequest, CosignerResponse, KeyId, KeyInfo};
use qls_signer_core::frost::keys::PublicKeyPackage;
use qls_signer_core::frost::round1::SigningCommitments;
use qls_signer_core::frost::Identifier;
use qls_signer_core::keys::{decode_public_key_package, identifier_for, key_id_of, message_key_id};

use crate::config::CoordinatorConfig;
use crate::cosigner_link::{CosignerLink, LinkError};

/// How often a cosigner marked down (timed out or unreachable) is probed in the
/// background; it stays down, and is picked only when too few others are up, until a
/// probe succeeds.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(500);
/// How often the background task checks the pools.
pub const REFILL_INTERVAL: Duration = Duration::from_millis(20);

#[derive(Debug, thiserror::Error)]
pub enum QuorumError {
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("no cosigner reachable to learn the group key: {0}")]
    NoneReachable(String),
    #[error("no group key: run `qls-coordinator dkg` first")]
    NoGroupKey,
    #[error("cosigners hold several group keys ({0}); set key_id in the coordinator config")]
    AmbiguousKey(String),
    #[error("group key {0} is not held by any reachable cosigner")]
    KeyNotFound(String),
    #[error("group key package does not decode")]
    BadKeyPackage,
    #[error("group key {key}: {agreeing} reachable cosigners report one public key package, {needed} (the threshold) needed")]
    KeyNotAgreed { key: String, agreeing: usize, needed: usize },
}

/// The group key as the coordinator uses it.
#[derive(Debug, Clone)]
pub struct GroupKey {
    /// The wallet key: PSBT key-path spends.
    pub key_id: KeyId,
    /// The message key (a tweak of the wallet key): raw 32-byte messages.
    pub message_key: KeyId,
    pub threshold: u16,
    pub public_key_package: PublicKeyPackage,
    pub wire: KeyInfo,
}

#[derive(Default)]
struct NoncePool {
    ready: VecDeque<(u64, SigningCommitments)>,
    in_flight: HashSet<u64>,
    last_id: Option<u64>,
}

/// One cosigner as a quorum member.
pub struct Member {
    pub link: Arc<CosignerLink>,
    pub identifier: Identifier,
    /// Said in its Hello: it holds the node's ECDSA seed.
    pub key_holder: bool,
    pool: std::sync::Mutex<NoncePool>,
    /// `Some(next probe time)` while the cosigner is down.
    down: std::sync::Mutex<Option<Instant>>,
    /// State-changing requests it missed, replayed (in order) before its next request.
    pub missed: crate::catch_up::MissedLog,
    /// Approval rounds that saw this member miss their request and have not yet decided
    /// whether to queue it for replay: while any has not, the member gets no live request
    /// (it would overtake the missed one).
    pub unsettled: std::sync::atomic::AtomicUsize,
    refilling: tokio::sync::Mutex<()>,
}

impl Member {
    fn pool(&self) -> std::sync::MutexGuard<'_, NoncePool> {
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn name(&self) -> &str {
        self.link.name()
    }

    pub fn ready_commitments(&self) -> usize {
        self.pool().ready.len()
    }

    fn health(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.down.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn is_down(&self) -> bool {
        self.health().is_some()
    }

    /// Marks the member down; one already down keeps its probe time (every request that
    /// skips a down member reports it unreachable again: re-arming the probe on each
    /// would postpone it for as long as requests keep coming, and the member would never
    /// be found up).
    pub fn mark_down(&self) {
        let mut h = self.health();
        if h.is_none() {
            *h = Some(Instant::now() + PROBE_INTERVAL);
        }
    }

    pub fn mark_up(&self) {
        *self.health() = None;
    }

    /// True (once per interval) when a down cosigner is due for a probe.
    fn probe_due(&self) -> bool {
        let mut h = self.health();
        match *h {
            Some(next) if Instant::now() >= next => {
                *h = Some(Instant::now() + PROBE_INTERVAL);
                true
            }
            _ => false,
        }
    }

    /// Takes `m` commitments for one session, or none.
    pub fn take(&self, m: usize) -> Option<Vec<(u64, SigningCommitments)>> {
        let mut pool = self.pool();
        if pool.ready.len() < m {
            return None;
        }
        let taken: Vec<_> = pool.ready.drain(..m).collect();
        pool.in_flight.extend(taken.iter().map(|(id, _)| *id));
        Some(taken)
    }

    /// Drops every ready commitment: the cosigner no longer holds them (it forgets its
    /// unused nonces when it restarts), so each would only fail one session.
    pub fn forget_pool(&self) {
        let mut pool = self.pool();
        let dropped = pool.ready.len();
        pool.ready.clear();
        tracing::info!(cosigner = %self.name(), dropped, "nonce pool dropped: the cosigner forgot its nonces");
    }

    /// Ends a session's hold on `taken`; `unused` commitments (the cosigner provably did
    /// not sign with them) go back to the pool.
    pub fn release(&self, taken: Vec<(u64, SigningCommitments)>, unused: bool) {
        let mut pool = self.pool();
        for (id, c) in taken.into_iter().rev() {
            pool.in_flight.remove(&id);
            if unused {
                pool.ready.push_front((id, c));
            }
        }
    }
}

/// The group as the coordinator runs it.
pub struct Quorum {
    pub config: CoordinatorConfig,
    pub key: GroupKey,
    pub members: Vec<Arc<Member>>,
    rotate: AtomicUsize,
    endpoint: Endpoint,
    /// One lock per legacy channel: its approval rounds run one at a time, so every
    /// cosigner applies the channel's requests in the same order.
    channel_locks: std::sync::Mutex<std::collections::HashMap<ChannelKeysId, Arc<tokio::sync::Mutex<()>>>>,
    /// Every cosigner's signed MuSig2 leaf, fetched once (taproot channels).
    pub musig_leaves: std::sync::OnceLock<Vec<qls_protocol::MusigLeaf>>,
    /// Per taproot channel, nonce sets fetched ahead (one leaf nonce per cosigner each),
    /// so most signing requests take one round trip. Lost on restart (the cosigners keep
    /// the nonces until they evict them).
    pub taproot_pools: std::sync::Mutex<std::collections::HashMap<ChannelKeysId, Vec<Vec<qls_protocol::LeafNonce>>>>,
    /// Per taproot channel, the latest holder commitment whose force-close escrow every
    /// cosigner kept in this run (in memory: after a restart the escrow is run again,
    /// which cosigners answer with the same deal).
    pub taproot_escrowed: std::sync::Mutex<std::collections::HashMap<ChannelKeysId, u64>>,
}

/// The client endpoint and one link per configured cosigner.
pub fn make_links(
    config: &CoordinatorConfig,
    identity: Arc<Identity>,
) -> Result<(Endpoint, Vec<Arc<CosignerLink>>), TransportError> {
    let endpoint = client_endpoint("0.0.0.0:0".parse().expect("literal address"))?;
    Ok(links_on(config, identity, endpoint))
}

/// One link per configured cosigner, all on `endpoint`.
pub fn links_on(
    config: &CoordinatorConfig,
    identity: Arc<Identity>,
    endpoint: Endpoint,
) -> (Endpoint, Vec<Arc<CosignerLink>>) {
    let links = config
        .cosigners
        .iter()
        .map(|spec| Arc::new(CosignerLink::new(spec.clone(), endpoint.clone(), identity.clone())))
        .collect();
    (endpoint, links)
}

impl Quorum {
    /// Waits for channel `channel`'s turn; the round holds the guard until it is done.
    pub async fn lock_channel(&self, channel: &ChannelKeysId) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.channel_locks.lock().unwrap_or_else(|e| e.into_inner());
            locks.entry(*channel).or_default().clone()
        };
        lock.lock_owned().await
    }

    /// Dials every cosigner, learns the group key from those that answer, and builds the
    /// members. Cosigners that are down now are members all the same and are used when
    /// they come back.
    pub async fn connect(config: CoordinatorConfig, identity: Arc<Identity>) -> Result<Arc<Self>, QuorumError> {
        let endpoint = client_endpoint("0.0.0.0:0".parse().expect("literal address"))?;
        Self::connect_on(config, identity, endpoint).await
    }

    /// Like [`Self::connect`], on a caller-provided endpoint (the simnet's faulty socket).
    pub async fn connect_on(
        config: CoordinatorConfig,
        identity: Arc<Identity>,
        endpoint: Endpoint,
    ) -> Result<Arc<Self>, QuorumError> {
        let (endpoint, links) = links_on(&config, identity, endpoint);
        let timeout = config.request_timeout;
        let hellos =
            join_all(links.iter().map(|l| async move { l.call(&CosignerRequest::Hello, timeout).await })).await;
        let mut reported: Vec<(usize, KeyInfo)> = Vec::new();
        let mut key_holders = Vec::new();
        let mut errors = Vec::new();
        for (i, h) in hellos.into_iter().enumerate() {
            match h {
                Ok(CosignerResponse::Hello { keys, key_holder, .. }) => {
                    if key_holder {
                        key_holders.push(i);
                    }
                    // A key whose package does not decode to its own key id is forged or
                    // corrupt: never let it define the group.
                    for k in keys {
                        match decode_public_key_package(&k.public_key_package) {
                            Ok(p) if key_id_of(&p) == k.key_id => reported.push((i, k)),
                            _ => {
                                tracing::error!(cosigner = %links[i].name(), key_id = %hex::encode(k.key_id), "reported key package does not match its key id; ignored")
                            }
                        }
                    }
                }
                Ok(other) => errors.push(format!("{}: unexpected reply {other:?}", links[i].name())),
                Err(e) => errors.push(e.to_string()),
            }
        }
        if errors.len() == links.len() {
            return Err(QuorumError::NoneReachable(errors.join("; ")));
        }
        let wire = match config.key_id {
            Some(id) => reported
                .iter()
                .find(|(_, k)| k.key_id == id)
                .map(|(_, k)| k.clone())
                .ok_or_else(|| QuorumError::KeyNotFound(hex::encode(id)))?,
            None => {
                let mut ids: Vec<KeyId> = reported.iter().map(|(_, k)| k.key_id).collect();
                ids.sort_unstable();
                ids.dedup();
                match ids.len() {
                    0 => return Err(QuorumError::NoGroupKey),
                    1 => reported[0].1.clone(),
                    _ => {
                        return Err(QuorumError::AmbiguousKey(
                            ids.iter().map(hex::encode).collect::<Vec<_>>().join(", "),
                        ))
                    }
                }
            }
        };
        // The package (verifying shares included) is taken only as at least `threshold`
        // cosigners report it byte for byte: one cosigner cannot make the coordinator blame
        // honest shares against verifying shares of its own making.
        let wire = {
            let mut votes: Vec<(&KeyInfo, usize)> = Vec::new();
            for (_, k) in reported.iter().filter(|(_, k)| k.key_id == wire.key_id) {
                match votes
                    .iter_mut()
                    .find(|(v, _)| v.public_key_package == k.public_key_package && v.threshold == k.threshold)
                {
                    Some((_, n)) => *n += 1,
                    None => votes.push((k, 1)),
                }
            }
            let (best, agreeing) = votes.into_iter().max_by_key(|(_, n)| *n).ok_or(QuorumError::NoGroupKey)?;
            // A threshold is itself a claim: below 2 only for a one-cosigner set-up.
            let needed = usize::from(best.threshold).max(links.len().min(2));
            if agreeing < needed {
                return Err(QuorumError::KeyNotAgreed { key: hex::encode(best.key_id), agreeing, needed });
            }
            best.clone()
        };
        for (i, k) in &reported {
            if k.key_id == wire.key_id && k.public_key_package != wire.public_key_package {
                tracing::error!(cosigner = %links[*i].name(), "cosigner's public key package differs from the group's; it will not be used");
            }
        }
        let public_key_package =
            decode_public_key_package(&wire.public_key_package).map_err(|_| QuorumError::BadKeyPackage)?;
        let message_key = message_key_id(&public_key_package);
        let key = GroupKey { key_id: wire.key_id, message_key, threshold: wire.threshold, public_key_package, wire };
        let mut members = Vec::new();
        for (i, link) in links.into_iter().enumerate() {
            let divergent = reported
                .iter()
                .any(|(j, k)| *j == i && k.key_id == key.key_id && k.public_key_package != key.wire.public_key_package);
            let Ok(identifier) = identifier_for(&link.fingerprint()) else { continue };
            if divergent || !key.public_key_package.verifying_shares().contains_key(&identifier) {
                tracing::warn!(cosigner = %link.name(), fingerprint = %fingerprint_hex(&link.fingerprint()), "cosigner is not a member of the group key; skipped");
                continue;
            }
            members.push(Arc::new(Member {
                link,
                identifier,
                key_holder: key_holders.contains(&i),
                pool: Default::default(),
                down: Default::default(),
                missed: Default::default(),
                unsettled: Default::default(),
                refilling: Default::default(),
            }));
        }
        let quorum = Arc::new(Self {
            config,
            key,
            members,
            rotate: AtomicUsize::new(0),
            endpoint,
            channel_locks: Default::default(),
            musig_leaves: Default::default(),
            taproot_pools: Default::default(),
            taproot_escrowed: Default::default(),
        });
        join_all(quorum.members.iter().map(|m| quorum.refill(m, 1))).await;
        Ok(quorum)
    }

    pub fn threshold(&self) -> usize {
        self.key.threshold as usize
    }

    pub fn member(&self, id: &Identifier) -> Option<&Arc<Member>> {
        self.members.iter().find(|m| m.identifier == *id)
    }

    /// Members in this request's order of preference: a rotating start spreads load;
    /// members marked down go last.
    pub fn preference_order(&self) -> Vec<Arc<Member>> {
        let n = self.members.len().max(1);
        let start = self.rotate.fetch_add(1, Ordering::Relaxed) % n;
        let mut order: Vec<_> = (0..self.members.len()).map(|i| self.members[(start + i) % n].clone()).collect();
        order.sort_by_key(|m| m.is_down() || m.link.connection_lost());
        order
    }

    /// Tops `member`'s pool up to the target if it holds fewer than `want` commitments.
    pub async fn refill(&self, member: &Member, want: usize) {
        let _one_at_a_time = member.refilling.lock().await;
        let (have, after_id) = {
            let pool = member.pool();
            (pool.ready.len(), pool.last_id)
        };
        if have >= want {
            return;
        }
        let target = (self.config.nonce_pool_target as usize).max(want);
        let count = (target - have).min(MAX_NONCE_BATCH as usize) as u32;
        match self.fetch_commitments(member, after_id, count).await {
            Ok(got) if got.is_empty() && have == 0 && after_id.is_some() => {
                // The cosigner's pool is full of commitments we no longer hold (lost in
                // failed sessions or before a coordinator restart): take them again.
                if let Ok(again) = self.fetch_commitments(member, None, count).await {
                    self.add_commitments(member, again);
                }
            }
            Ok(got) => self.add_commitments(member, got),
            Err(e) => {
                tracing::debug!(cosigner = %member.name(), error = %e, "nonce refill failed");
                member.mark_down();
            }
        }
    }

    /// Probes a down cosigner with a nonce request; success marks it up again.
    pub async fn probe(&self, member: &Member) {
        let _one_at_a_time = member.refilling.lock().await;
        let (have, after_id) = {
            let pool = member.pool();
            (pool.ready.len(), pool.last_id)
        };
        let count = (self.config.nonce_pool_target as usize).saturating_sub(have).min(MAX_NONCE_BATCH as usize) as u32;
        match self.fetch_commitments(member, after_id, count).await {
            Ok(got) => {
                tracing::info!(cosigner = %member.name(), "cosigner is back");
                self.add_commitments(member, got);
            }
            Err(e) => tracing::debug!(cosigner = %member.name(), error = %e, "probe failed"),
        }
    }

    async fn fetch_commitments(
        &self,
        member: &Member,
        after_id: Option<u64>,
        count: u32,
    ) -> Result<Vec<(u64, SigningCommitments)>, LinkError> {
        let req = CosignerRequest::NonceCommitments { key_id: self.key.key_id, after_id, count };
        match member.link.call(&req, self.config.request_timeout).await? {
            CosignerResponse::NonceCommitments { key_id, commitments } if key_id == self.key.key_id => {
                member.mark_up();
                Ok(commitments
                    .into_iter()
                    .filter_map(|c| SigningCommitments::deserialize(&c.commitments).ok().map(|s| (c.nonce_id, s)))
                    .collect())
            }
            other => Err(LinkError::Stream {
                name: member.name().into(),
                detail: format!("unexpected reply to nonce request: {other:?}"),
            }),
        }
    }

    fn add_commitments(&self, member: &Member, got: Vec<(u64, SigningCommitments)>) {
        let mut pool = member.pool();
        for (id, c) in got {
            pool.last_id = Some(pool.last_id.map_or(id, |l| l.max(id)));
            if !pool.in_flight.contains(&id) && !pool.ready.iter().any(|(r, _)| *r == id) {
                pool.ready.push_back((id, c));
            }
        }
    }

    /// Keeps every member's pool above half its target until the quorum is dropped.
    pub fn spawn_refill_task(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(REFILL_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(q) = weak.upgrade() else { return };
                let low = (q.config.nonce_pool_target as usize / 2).max(1);
                for m in &q.members {
                    if !m.is_down() && m.link.connection_lost() {
                        tracing::info!(cosigner = %m.name(), "connection to cosigner lost; marked down");
                        m.mark_down();
                    }
                    let probe = m.is_down() && m.probe_due();
                    if !probe && (m.is_down() || m.ready_commitments() >= low) {
                        continue;
                    }
                    if m.refilling.try_lock().is_err() {
                        continue; // a refill or probe is already under way
                    }
                    let (q, m) = (q.clone(), m.clone());
                    tokio::spawn(async move {
                        if probe {
                            q.probe(&m).await
                        } else {
                            q.refill(&m, low).await
                        }
                    });
                }
            }
        })
    }

    pub fn close(&self) {
        self.endpoint.close(0u32.into(), b"coordinator closing");
    }
}
