//! Turns one coordinator request into one reply: parse, check against this cosigner's
//! own store, config and policy (through `signer-core`), persist, answer.
//!
//! Must never: reply with shares before [`Store::consume_nonces`] has returned, sign a
//! request whose DKG participant is not pinned in `peers`, or import a dealer key unless
//! the config allows it.

// Replies are built once per request; the error variant is the reply itself.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::sync::Arc;

use qls_protocol::quic::{fingerprint, verify_identity_sig, Identity};
use qls_protocol::*;
use qls_signer_core::dkg::{self, DkgSetup, Round1Entry};
use qls_signer_core::frost::keys::{KeyPackage, PublicKeyPackage};
use qls_signer_core::frost::round1;
use qls_signer_core::keys::{identifier_for, KeyShare};
use qls_signer_core::share_signer::{compute_shares, decide, derive_messages, ShareDecision, SignError};

use crate::approvals;
use crate::committer::Committer;
use crate::config::CosignerConfig;
use crate::dkg_sessions::{DkgPhase, DkgSessions};
use crate::key_holder::KeyHolder;
use crate::store::{Store, StoreError};

/// Test hook: when the environment variable `QLS_FAILPOINT` is `abort-after-nonce-consume`,
/// the process aborts right after the nonce consumption commits and before the shares
/// are sent — the worst moment to crash.
pub const FAILPOINT_ENV: &str = "QLS_FAILPOINT";
pub const FAILPOINT_AFTER_CONSUME: &str = "abort-after-nonce-consume";

/// Everything a request handler may touch.
pub struct CosignerState {
    pub config: CosignerConfig,
    pub identity: Identity,
    pub store: Arc<Store>,
    pub dkg: DkgSessions,
    committer: Committer,
    /// Decoded key shares; the store is the source of truth, this only saves decoding.
    key_cache: std::sync::RwLock<BTreeMap<KeyId, Arc<KeyShare>>>,
    failpoint_after_consume: bool,
    /// Present when this cosigner holds the node's ECDSA seed (`key_holder = true`).
    pub key_holder: Option<KeyHolder>,
    /// One libsecp256k1 context for channel validation (building one costs more than a check).
    pub secp: bitcoin::secp256k1::Secp256k1<bitcoin::secp256k1::All>,
    /// A clock fixed by a test (unix seconds); 0 means the system clock.
    fixed_clock: std::sync::atomic::AtomicU64,
}

impl CosignerState {
    /// The cosigner's clock, unix seconds (the node's idea of time is never used).
    pub fn now_unix(&self) -> u64 {
        match self.fixed_clock.load(std::sync::atomic::Ordering::Relaxed) {
            0 => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            t => t,
        }
    }

    /// Fixes the clock (tests of expiries, velocity windows and pruning); `None` restores
    /// the system clock. Library only: no config or CLI reaches it.
    pub fn set_clock_for_tests(&self, unix: Option<u64>) {
        self.fixed_clock.store(unix.unwrap_or(0), std::sync::atomic::Ordering::Relaxed);
    }

    pub fn new(config: CosignerConfig, identity: Identity, store: Store) -> Self {
        let failpoint_after_consume = std::env::var(FAILPOINT_ENV).is_ok_and(|v| v == FAILPOINT_AFTER_CONSUME);
        let store = Arc::new(store);
        Self {
            config,
            identity,
            committer: Committer::spawn(store.clone()),
            store,
            dkg: DkgSessions::default(),
            key_cache: Default::default(),
            fixed_clock: Default::default(),
            failpoint_after_consume,
            key_holder: None,
            secp: bitcoin::secp256k1::Secp256k1::new(),
        }
    }

    /// Makes this cosigner a key holder with `key_holder`'s seed.
    pub fn with_key_holder(mut self, key_holder: KeyHolder) -> Self {
        self.key_holder = Some(key_holder);
        self
    }

    /// The `abort-after-nonce-consume` test failpoint (see [`FAILPOINT_ENV`]).
    pub(crate) fn abort_if_failpoint(&self) {
        if self.failpoint_after_consume {
            std::process::abort();
        }
    }

    pub(crate) fn key(&self, key_id: &KeyId) -> Result<Arc<KeyShare>, StoreError> {
        if let Some(k) = self.key_cache.read().unwrap_or_else(|p| p.into_inner()).get(key_id) {
            return Ok(k.clone());
        }
        let k = Arc::new(self.store.key(key_id)?);
        self.key_cache.write().unwrap_or_else(|p| p.into_inner()).insert(*key_id, k.clone());
        Ok(k)
    }

    fn put_key(&self, share: KeyShare) -> Result<(), StoreError> {
        self.store.put_key(&share)?;
        self.key_cache.write().unwrap_or_else(|p| p.into_inner()).insert(share.key_id(), Arc::new(share));
        Ok(())
    }
}

pub(crate) fn error(kind: ErrorKind, detail: impl ToString) -> CosignerResponse {
    let mut detail = detail.to_string();
    detail.truncate(limits::MAX_DETAIL_BYTES);
    CosignerResponse::Error { kind, detail }
}

pub(crate) fn store_error(e: StoreError) -> CosignerResponse {
    let kind = match &e {
        StoreError::UnknownKey(_) => ErrorKind::UnknownKey,
        StoreError::UnknownNonce(_) => ErrorKind::UnknownNonce,
        StoreError::ConsumedNonce(_) => ErrorKind::ConsumedNonce,
        StoreError::WrongKey { .. }
        | StoreError::DuplicateNonce(_)
        | StoreError::VerificationNonce { .. }
        | StoreError::NoVerificationNonce { .. }
        | StoreError::TooManyVerificationNonces { .. }
        | StoreError::ForceCloseMessage { .. }
        | StoreError::ForceCloseSigned { .. } => ErrorKind::InvalidRequest,
        StoreError::Sign(_) => ErrorKind::Internal,
        _ => ErrorKind::Storage,
    };
    error(kind, e)
}

fn key_info(share: &KeyShare) -> Result<KeyInfo, CosignerResponse> {
    Ok(KeyInfo {
        key_id: share.key_id(),
        threshold: share.threshold(),
        public_key_package: share.public_key_package.serialize().map_err(|e| error(ErrorKind::Internal, e))?,
    })
}

/// Handles one request. Blocking (store I/O, fsync, curve arithmetic): call it from a
/// blocking-capable thread.
pub fn handle(state: &Arc<CosignerState>, req: CosignerRequest) -> CosignerResponse {
    let result = match req {
        CosignerRequest::Hello => hello(state),
        CosignerRequest::DkgRound1 { session, threshold, participants } => {
            dkg_round1(state, session, threshold, participants)
        }
        CosignerRequest::DkgRound2 { session, round1 } => dkg_round2(state, session, round1),
        CosignerRequest::DkgFinish { session, sealed } => dkg_finish(state, session, sealed),
        CosignerRequest::NonceCommitments { key_id, after_id, count } => {
            nonce_commitments(state, key_id, after_id, count)
        }
        CosignerRequest::Sign(req) => sign(state, req),
        CosignerRequest::ImportDealerShare { key_package, public_key_package } => {
            import_dealer_share(state, &key_package, &public_key_package)
        }
        CosignerRequest::Approve { subject, holder_keys } => approvals::approve(state, subject, holder_keys),
        CosignerRequest::KeyHolderSign { subject, approvals } => approvals::key_holder_sign(state, subject, approvals),
        CosignerRequest::ChannelKeys { channel } => approvals::channel_keys(state, &channel),
        CosignerRequest::PerCommitmentPoint { channel, commitment_number } => {
            approvals::per_commitment_point(state, &channel, commitment_number)
        }
        CosignerRequest::MusigLeaf => crate::taproot::musig_leaf(state),
        CosignerRequest::TaprootSetup { channel, setup, leaves } => {
            crate::taproot::setup(state, channel, setup, leaves)
        }
        CosignerRequest::TaprootNonces { channel, count } => crate::taproot::nonces(state, channel, count),
        CosignerRequest::TaprootSign { channel, request, session } => {
            crate::taproot::sign(state, channel, request, Some(session))
        }
        CosignerRequest::TaprootApply { channel, request } => crate::taproot::sign(state, channel, request, None),
        CosignerRequest::TaprootVerificationNonce { channel, commitment_number } => {
            crate::taproot::verification_nonce(state, channel, commitment_number)
        }
        CosignerRequest::TaprootFrostTargets { channel, item } => crate::taproot::frost_targets(state, channel, item),
        CosignerRequest::TaprootEscrowDeal { channel, commitment_number } => {
            crate::taproot_escrow::deal(state, channel, commitment_number)
        }
        CosignerRequest::TaprootEscrowKeep { channel, deals } => crate::taproot_escrow::keep(state, channel, deals),
        CosignerRequest::TaprootEscrowRelease { channel, commitment_number } => {
            crate::taproot_escrow::release(state, channel, commitment_number)
        }
    };
    result.unwrap_or_else(|e| e)
}

pub(crate) type Reply = Result<CosignerResponse, CosignerResponse>;

fn hello(state: &CosignerState) -> Reply {
    let keys = state.store.keys().map_err(store_error)?.iter().map(key_info).collect::<Result<_, _>>()?;
    Ok(CosignerResponse::Hello {
        fingerprint: state.identity.fingerprint,
        keys,
        key_holder: state.key_holder.is_some(),
    })
}

fn dkg_round1(state: &CosignerState, session: SessionId, threshold: u16, participants: Vec<DkgParticipant>) -> Reply {
    let me = state.identity.fingerprint;
    let mut certs = BTreeMap::new();
    for p in participants {
        let fp = fingerprint(&p.cert_der);
        if fp != me && !state.config.peers.contains(&fp) {
            return Err(error(
                ErrorKind::Forbidden,
                format!("DKG participant {} is not pinned in this cosigner's peers", &hex::encode(fp)[..16]),
            ));
        }
        certs.insert(fp, p.cert_der);
    }
    // The group is this cosigner and all its pinned peers: a coordinator may not run a DKG
    // with a subset of them, nor with a threshold below this cosigner's minimum.
    let group: std::collections::BTreeSet<Fingerprint> = state.config.peers.iter().copied().chain([me]).collect();
    if certs.keys().copied().collect::<std::collections::BTreeSet<_>>() != group {
        return Err(error(
            ErrorKind::Forbidden,
            format!(
                "DKG must include exactly this cosigner and its {} pinned peers; got {} participants",
                group.len() - 1,
                certs.len()
            ),
        ));
    }
    let min_threshold = state.config.dkg_min_threshold.unwrap_or((group.len() / 2 + 1) as u16);
    if threshold < min_threshold {
        return Err(error(
            ErrorKind::Forbidden,
            format!("DKG threshold {threshold} is below this cosigner's minimum {min_threshold}"),
        ));
    }
    let setup = DkgSetup::new(session, threshold, certs.keys().copied().collect(), me)
        .map_err(|e| error(ErrorKind::DkgFailed, e))?;
    let (r1, entry) = dkg::round1(setup.clone(), &mut rand::rngs::OsRng).map_err(|e| error(ErrorKind::DkgFailed, e))?;
    let statement = dkg::round1_statement(&setup, &entry);
    let identity_sig = state.identity.sign(&statement).map_err(|e| error(ErrorKind::Internal, e))?;
    state
        .dkg
        .start(session, DkgPhase::AwaitRound2 { setup, state: r1, certs })
        .map_err(|e| error(ErrorKind::DkgFailed, e))?;
    Ok(CosignerResponse::DkgRound1(DkgRound1Message {
        sender: me,
        package: entry.package,
        ephemeral_pubkey: entry.ephemeral_pubkey.to_vec(),
        identity_sig,
    }))
}

fn dkg_round2(state: &CosignerState, session: SessionId, round1: Vec<DkgRound1Message>) -> Reply {
    let Some((started, DkgPhase::AwaitRound2 { setup, state: r1, certs })) = state.dkg.take(&session) else {
        return Err(error(ErrorKind::DkgFailed, "no DKG session awaiting round 2 with that id"));
    };
    let mut entries = Vec::with_capacity(round1.len());
    for m in round1 {
        let sender = &hex::encode(m.sender)[..16];
        let cert = certs
            .get(&m.sender)
            .ok_or_else(|| error(ErrorKind::DkgFailed, format!("round-1 message from non-participant {sender}")))?;
        let ephemeral_pubkey: [u8; 33] = m.ephemeral_pubkey.as_slice().try_into().map_err(|_| {
            error(ErrorKind::DkgFailed, format!("round-1 message from {sender}: ephemeral key is not 33 bytes"))
        })?;
        let entry = Round1Entry { sender: m.sender, package: m.package, ephemeral_pubkey };
        verify_identity_sig(cert, &dkg::round1_statement(&setup, &entry), &m.identity_sig)
            .map_err(|e| error(ErrorKind::DkgFailed, format!("round-1 message from {sender}: {e}")))?;
        entries.push(entry);
    }
    let (r2, sealed) = dkg::round2(r1, &entries).map_err(|e| error(ErrorKind::DkgFailed, e))?;
    state.dkg.advance(session, started, DkgPhase::AwaitFinish(r2));
    Ok(CosignerResponse::DkgRound2 { sealed })
}

fn dkg_finish(state: &CosignerState, session: SessionId, sealed: Vec<SealedPackage>) -> Reply {
    let Some((_, DkgPhase::AwaitFinish(r2))) = state.dkg.take(&session) else {
        return Err(error(ErrorKind::DkgFailed, "no DKG session awaiting the sealed packages with that id"));
    };
    let share = dkg::finish(r2, &sealed).map_err(|e| error(ErrorKind::DkgFailed, e))?;
    let info = key_info(&share)?;
    state.put_key(share).map_err(store_error)?;
    tracing::info!(key_id = %hex::encode(info.key_id), threshold = info.threshold, "DKG finished; share stored");
    Ok(CosignerResponse::DkgFinished(info))
}

fn nonce_commitments(state: &CosignerState, key_id: KeyId, after_id: Option<u64>, count: u32) -> Reply {
    let share = state.key(&key_id).map_err(store_error)?;
    let signing_share = *share.key_package.signing_share();
    let made = state
        .store
        .nonce_commitments(&key_id, after_id, count, state.config.nonce_pool_max, || {
            round1::commit(&signing_share, &mut rand::rngs::OsRng).0
        })
        .map_err(store_error)?;
    let commitments =
        made.into_iter().map(|(nonce_id, commitments)| NonceCommitment { nonce_id, commitments }).collect();
    Ok(CosignerResponse::NonceCommitments { key_id, commitments })
}

pub(crate) fn violations(v: &[qls_signer_core::policy::Violation]) -> Vec<Violation> {
    v.iter().take(limits::MAX_VIOLATIONS).map(Violation::from).collect()
}

/// The funding outputs this cosigner allows for the channels a PSBT names: from its own
/// stored setups of open channels (paying one the counterparty funds is refused).
fn funding_outputs(
    state: &CosignerState,
    payload: &SignPayload,
) -> Result<Vec<qls_signer_core::policy::onchain::FundingOutput>, CosignerResponse> {
    let SignPayload::Psbt { funding_channels, .. } = payload else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for channel in funding_channels {
        if let Some(stored) = state.store.channel(channel).map_err(store_error)? {
            let window = state.config.policy.channel.velocity_window_secs;
            let funding = qls_signer_core::channel::funding_output(&stored, state.now_unix(), window)
                .map_err(|e| error(ErrorKind::Storage, format!("channel {}: {e}", hex::encode(&channel[..8]))))?;
            out.extend(funding);
        }
    }
    Ok(out)
}

fn sign(state: &CosignerState, req: SignRequest) -> Reply {
    let share = state.key(&req.key_id).map_err(store_error)?;
    let ids: Vec<u64> = req.items.iter().map(|i| i.nonce_id).collect();
    let nonces = state.store.load_nonces(&req.key_id, &ids).map_err(store_error)?;
    let items: Vec<(&[u8], _)> = req.items.iter().map(|i| i.signing_package.as_slice()).zip(nonces.iter()).collect();
    let share = share.as_ref();
    let bad = |e: SignError| {
        let kind = if matches!(e, SignError::Frost { .. }) { ErrorKind::Internal } else { ErrorKind::InvalidRequest };
        error(kind, e)
    };
    let (targets, payload_violations) = match &req.payload {
        SignPayload::Taproot { channel, item, first } => {
            let (all, v) = crate::taproot::frost_targets_of(state, channel, item)?;
            let first = *first as usize;
            let slice = all.get(first..first.saturating_add(req.items.len())).ok_or_else(|| {
                error(
                    ErrorKind::InvalidRequest,
                    format!("items {first}..{} of {} derived messages", first + req.items.len(), all.len()),
                )
            })?;
            (slice.to_vec(), v)
        }
        payload => {
            let funding = funding_outputs(state, payload)?;
            derive_messages(share, payload, &state.config.policy, &funding).map_err(bad)?
        }
    };
    let decision = decide(share, &targets, payload_violations, &items, &state.config.policy).map_err(bad)?;
    match decision {
        ShareDecision::Refuse { verdict } => {
            tracing::info!(refused = ?verdict.refused.iter().map(|v| v.tag.name()).collect::<Vec<_>>(), "policy refused a signing request");
            Ok(CosignerResponse::Refused { violations: violations(&verdict.refused) })
        }
        ShareDecision::Sign { packages, verdict } => {
            // Persist before acting: the nonces are removed from the store, durably, and
            // only then do the shares leave. The shares are computed meanwhile, in memory,
            // on this thread while the commit's fsync runs on the committer thread.
            let pending = state.committer.submit(req.key_id, ids);
            let shares = compute_shares(share, &packages, &nonces, &targets);
            pending.wait().map_err(store_error)?;
            if state.failpoint_after_consume {
                std::process::abort();
            }
            let shares = shares.map_err(|e| error(ErrorKind::Internal, e))?;
            Ok(CosignerResponse::Shares {
                shares: shares.iter().map(|s| s.serialize()).collect(),
                warnings: violations(&verdict.warned),
            })
        }
    }
}

fn import_dealer_share(state: &CosignerState, key_package: &[u8], public_key_package: &[u8]) -> Reply {
    if !state.config.allow_dealer_import {
        return Err(error(ErrorKind::Forbidden, "dealer import is disabled (allow_dealer_import = false)"));
    }
    let kp = KeyPackage::deserialize(key_package).map_err(|e| error(ErrorKind::InvalidRequest, e))?;
    let pkp = PublicKeyPackage::deserialize(public_key_package).map_err(|e| error(ErrorKind::InvalidRequest, e))?;
    let mine = identifier_for(&state.identity.fingerprint).map_err(|e| error(ErrorKind::Internal, e))?;
    if *kp.identifier() != mine {
        return Err(error(ErrorKind::InvalidRequest, "key package identifier is not this cosigner's"));
    }
    let share = KeyShare::new(kp, pkp).map_err(|e| error(ErrorKind::InvalidRequest, e))?;
    let info = key_info(&share)?;
    state.put_key(share).map_err(store_error)?;
    Ok(CosignerResponse::Imported(info))
}
