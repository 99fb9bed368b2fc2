//! The node side of the node API: a pinned QUIC client that asks the coordinator for
//! group info and signatures. Used by `qls-client`, the LDK adapter, the tests and the
//! simnet. A connection found dead before a request's stream opened (a coordinator
//! restart) is redialled once, transparently: nothing reached the coordinator.
//!
//! Must never: accept a coordinator certificate other than the pinned one, or treat an
//! unverified signature as good (it re-verifies every BIP-340 signature it receives).

use std::net::SocketAddr;
use std::time::Duration;

use quinn::{ClientConfig, Connection, Endpoint};

use qls_protocol::quic::{client_config, client_endpoint, request, Identity, StreamError, TransportError, SERVER_NAME};
use qls_protocol::*;
use qls_signer_core::schnorr::verify_bip340;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("coordinator: {0}")]
    Stream(#[from] StreamError),
    #[error("coordinator error {kind:?}: {detail}")]
    Coordinator { kind: ErrorKind, detail: String },
    #[error("refused by {}", .0.iter().map(|r| format!("{} [{}]", r.cosigner, r.violations.iter().map(|v| v.tag.as_str()).collect::<Vec<_>>().join(", "))).collect::<Vec<_>>().join("; "))]
    Refused(Vec<CosignerRefusal>),
    #[error("unexpected reply: {0}")]
    Unexpected(String),
    #[error("returned signature does not verify under the group key")]
    BadSignature,
    #[error("no QUIC handshake with the coordinator at {addr} within {after:?}")]
    DialTimeout { addr: SocketAddr, after: Duration },
}

pub struct NodeClient {
    endpoint: Endpoint,
    /// Pinned to the coordinator's certificate; kept to redial.
    config: ClientConfig,
    addr: SocketAddr,
    conn: std::sync::Mutex<Connection>,
    timeout: Duration,
    /// Requests sent so far (for simulators' counts).
    calls: std::sync::atomic::AtomicU64,
    /// Sees every signing report that comes back (simulators tally blame and
    /// participation with it).
    observer: Option<ReportObserver>,
}

/// A callback for every [`SignReport`] in a reply.
pub type ReportObserver = std::sync::Arc<dyn Fn(&SignReport) + Send + Sync>;

/// The signing report a reply carries, if any.
pub fn reply_report(r: &NodeResponse) -> Option<&SignReport> {
    match r {
        NodeResponse::Signature { report, .. }
        | NodeResponse::SignedPsbt { report, .. }
        | NodeResponse::Refused { report, .. }
        | NodeResponse::KeyHolder { report, .. }
        | NodeResponse::TaprootApplied { report, .. }
        | NodeResponse::TaprootPartialSig { report, .. }
        | NodeResponse::TaprootSignatures { report, .. }
        | NodeResponse::Unavailable { report, .. } => Some(report),
        _ => None,
    }
}

impl NodeClient {
    pub async fn connect(
        identity: &Identity,
        addr: SocketAddr,
        coordinator_pin: Fingerprint,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        let endpoint = client_endpoint("0.0.0.0:0".parse().expect("literal address"))?;
        let config = client_config(identity, coordinator_pin)?;
        let conn = Self::dial(&endpoint, &config, addr, timeout).await?;
        Ok(Self {
            endpoint,
            config,
            addr,
            conn: std::sync::Mutex::new(conn),
            timeout,
            calls: Default::default(),
            observer: None,
        })
    }

    /// A connection to the coordinator, or an error within `timeout` (a coordinator that is
    /// down would otherwise hold the caller until QUIC's idle timeout).
    async fn dial(
        endpoint: &Endpoint,
        config: &ClientConfig,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<Connection, ClientError> {
        let connecting = endpoint
            .connect_with(config.clone(), addr, SERVER_NAME)
            .map_err(|source| TransportError::Connect { addr, source })?;
        match tokio::time::timeout(timeout, connecting).await {
            Ok(conn) => Ok(conn.map_err(|source| TransportError::Handshake { addr, source })?),
            Err(_) => Err(ClientError::DialTimeout { addr, after: timeout }),
        }
    }

    fn connection(&self) -> Connection {
        self.conn.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Calls `observer` with the signing report of every reply from now on.
    pub fn with_observer(mut self, observer: ReportObserver) -> Self {
        self.observer = Some(observer);
        self
    }

    pub async fn call(&self, req: &NodeRequest) -> Result<NodeResponse, ClientError> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let reply = match request(&self.connection(), req, self.timeout).await {
            // The connection died (e.g. the coordinator restarted) before the stream
            // opened: nothing reached the coordinator, so one redial is safe.
            Err(StreamError::Connection(e)) => {
                tracing::info!(error = %e, "connection to the coordinator lost; redialling");
                let conn = Self::dial(&self.endpoint, &self.config, self.addr, self.timeout).await?;
                *self.conn.lock().unwrap_or_else(|e| e.into_inner()) = conn.clone();
                request(&conn, req, self.timeout).await?
            }
            other => other?,
        };
        if let (Some(observe), Some(report)) = (&self.observer, reply_report(&reply)) {
            observe(report);
        }
        Ok(reply)
    }

    /// Requests this client has sent.
    pub fn calls(&self) -> u64 {
        self.calls.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn fail(r: NodeResponse) -> ClientError {
        match r {
            NodeResponse::Error { kind, detail } => ClientError::Coordinator { kind, detail },
            NodeResponse::Unavailable { detail, report } => ClientError::Coordinator {
                kind: ErrorKind::QuorumUnavailable,
                detail: format!("{detail}; blamed: {:?}", report.blamed),
            },
            NodeResponse::Refused { refusals, .. } => ClientError::Refused(refusals),
            other => ClientError::Unexpected(format!("{other:?}")),
        }
    }

    pub async fn group_info(&self) -> Result<GroupInfo, ClientError> {
        match self.call(&NodeRequest::GroupInfo).await? {
            NodeResponse::GroupInfo(g) => Ok(g),
            other => Err(Self::fail(other)),
        }
    }

    /// Signs `msg` under the group key; checks the signature before returning it.
    pub async fn sign_message(&self, key_id: &KeyId, msg: [u8; 32]) -> Result<([u8; 64], SignReport), ClientError> {
        match self.call(&NodeRequest::SignMessage { msg }).await? {
            NodeResponse::Signature { sig, report } => {
                let sig: [u8; 64] = sig.as_slice().try_into().map_err(|_| ClientError::BadSignature)?;
                verify_bip340(key_id, &msg, &sig).map_err(|_| ClientError::BadSignature)?;
                Ok((sig, report))
            }
            other => Err(Self::fail(other)),
        }
    }

    pub async fn sign_psbt(&self, psbt: Vec<u8>) -> Result<(Vec<u8>, SignReport), ClientError> {
        self.sign_funding_psbt(psbt, Vec::new()).await
    }

    /// Signs a PSBT that creates the funding outputs of `channels` (set up with the
    /// quorum, ours to fund): each cosigner allows those outputs only as it stored them.
    pub async fn sign_funding_psbt(
        &self,
        psbt: Vec<u8>,
        funding_channels: Vec<ChannelKeysId>,
    ) -> Result<(Vec<u8>, SignReport), ClientError> {
        match self.call(&NodeRequest::SignPsbt { psbt, funding_channels }).await? {
            NodeResponse::SignedPsbt { psbt, report } => Ok((psbt, report)),
            other => Err(Self::fail(other)),
        }
    }

    /// A legacy-channel request: the quorum approves, a key holder signs.
    pub async fn channel(
        &self,
        channel: ChannelKeysId,
        request: ChannelRequest,
    ) -> Result<(KeyHolderOutput, SignReport), ClientError> {
        match self.call(&NodeRequest::Channel { channel, request }).await? {
            NodeResponse::KeyHolder { output, report } => Ok((output, report)),
            other => Err(Self::fail(other)),
        }
    }

    /// A node-key request (ECDH, invoice, gossip, payment approval).
    pub async fn node_key(&self, request: NodeKeyRequest) -> Result<(KeyHolderOutput, SignReport), ClientError> {
        match self.call(&NodeRequest::NodeKey(request)).await? {
            NodeResponse::KeyHolder { output, report } => Ok((output, report)),
            other => Err(Self::fail(other)),
        }
    }

    /// A batched sweep of outputs of ours from legacy channels: one witness per input,
    /// in the order of `sweep.inputs`.
    pub async fn sweep(&self, sweep: SweepRequest) -> Result<(KeyHolderOutput, SignReport), ClientError> {
        match self.call(&NodeRequest::Sweep(sweep)).await? {
            NodeResponse::KeyHolder { output, report } => Ok((output, report)),
            other => Err(Self::fail(other)),
        }
    }

    /// Our keys of a taproot channel (funding node key and basepoints).
    pub async fn taproot_channel_keys(&self, channel: ChannelKeysId) -> Result<TaprootHolderKeys, ClientError> {
        match self.call(&NodeRequest::TaprootChannelKeys { channel }).await? {
            NodeResponse::TaprootChannelKeys(k) => Ok(k),
            other => Err(Self::fail(other)),
        }
    }

    /// A taproot request without a signature (setup, revocation), applied by every cosigner.
    pub async fn taproot_apply(
        &self,
        channel: ChannelKeysId,
        request: TaprootRequest,
    ) -> Result<SignReport, ClientError> {
        match self.call(&NodeRequest::Taproot { channel, request, counterparty_nonce: None, reserved: vec![] }).await? {
            NodeResponse::TaprootApplied { report } => Ok(report),
            other => Err(Self::fail(other)),
        }
    }

    /// The quorum's MuSig2 nonce (66 bytes) and partial signature for a signing request,
    /// against the counterparty's public nonce.
    pub async fn taproot_sign(
        &self,
        channel: ChannelKeysId,
        request: TaprootRequest,
        counterparty_nonce: [u8; 66],
    ) -> Result<([u8; 66], [u8; 32], SignReport), ClientError> {
        self.taproot_sign_reserved(channel, request, counterparty_nonce, vec![]).await
    }

    /// Reserves the quorum's next nonce for `channel` (e.g. for `shutdown`): the external
    /// nonce to send, and the leaf nonces to pass to [`Self::taproot_sign_reserved`].
    pub async fn taproot_nonce(&self, channel: ChannelKeysId) -> Result<([u8; 66], Vec<LeafNonce>), ClientError> {
        match self.call(&NodeRequest::TaprootNonce { channel }).await? {
            NodeResponse::TaprootNonce { pubnonce, leaf_nonces } => {
                let nonce =
                    pubnonce.as_slice().try_into().map_err(|_| ClientError::Unexpected("nonce length".into()))?;
                Ok((nonce, leaf_nonces))
            }
            other => Err(Self::fail(other)),
        }
    }

    /// Like [`Self::taproot_sign`], with nonces reserved earlier (one round trip less;
    /// each reserved set signs once).
    pub async fn taproot_sign_reserved(
        &self,
        channel: ChannelKeysId,
        request: TaprootRequest,
        counterparty_nonce: [u8; 66],
        reserved: Vec<LeafNonce>,
    ) -> Result<([u8; 66], [u8; 32], SignReport), ClientError> {
        let req =
            NodeRequest::Taproot { channel, request, counterparty_nonce: Some(counterparty_nonce.to_vec()), reserved };
        match self.call(&req).await? {
            NodeResponse::TaprootPartialSig { pubnonce, psig, report } => {
                let nonce =
                    pubnonce.as_slice().try_into().map_err(|_| ClientError::Unexpected("nonce length".into()))?;
                Ok((nonce, psig, report))
            }
            other => Err(Self::fail(other)),
        }
    }

    /// The quorum's verification nonce for holder commitment `n` (`next_local_nonce`): the
    /// external nonce to send, and the leaf nonces to hand back when validating that
    /// commitment and, for a force close, when completing it.
    pub async fn taproot_verification_nonce(
        &self,
        channel: ChannelKeysId,
        n: u64,
    ) -> Result<([u8; 66], Vec<LeafNonce>), ClientError> {
        match self.call(&NodeRequest::TaprootVerificationNonce { channel, commitment_number: n }).await? {
            NodeResponse::TaprootNonce { pubnonce, leaf_nonces } => {
                let nonce =
                    pubnonce.as_slice().try_into().map_err(|_| ClientError::Unexpected("nonce length".into()))?;
                Ok((nonce, leaf_nonces))
            }
            other => Err(Self::fail(other)),
        }
    }

    /// Revokes holder commitment `n` on every cosigner and returns its per-commitment
    /// secret (released by a key holder) for `revoke_and_ack`.
    pub async fn taproot_revoke_holder(&self, channel: ChannelKeysId, n: u64) -> Result<[u8; 32], ClientError> {
        let request = TaprootRequest::RevokeHolderCommitment { commitment_number: n };
        match self.call(&NodeRequest::Taproot { channel, request, counterparty_nonce: None, reserved: vec![] }).await? {
            NodeResponse::KeyHolder { output: KeyHolderOutput::Secret(s), .. } => Ok(s),
            other => Err(Self::fail(other)),
        }
    }

    /// FROST signatures (BIP-340, 64 bytes) for a taproot item, with the messages signed.
    pub async fn taproot_frost(
        &self,
        channel: ChannelKeysId,
        item: TaprootFrostItem,
    ) -> Result<(Vec<[u8; 64]>, Vec<[u8; 32]>, SignReport), ClientError> {
        match self.call(&NodeRequest::TaprootFrost { channel, item }).await? {
            NodeResponse::TaprootSignatures { sigs, messages, report } => {
                let sigs = sigs
                    .iter()
                    .map(|s| s.as_slice().try_into().map_err(|_| ClientError::Unexpected("signature length".into())))
                    .collect::<Result<Vec<[u8; 64]>, _>>()?;
                Ok((sigs, messages, report))
            }
            other => Err(Self::fail(other)),
        }
    }

    /// One channel's public keys and the node id, from a key holder.
    pub async fn channel_keys(&self, channel: ChannelKeysId) -> Result<(ChannelKeysInfo, Vec<u8>), ClientError> {
        match self.call(&NodeRequest::ChannelKeys { channel }).await? {
            NodeResponse::ChannelKeys { info, node_id } => Ok((info, node_id)),
            other => Err(Self::fail(other)),
        }
    }

    pub async fn per_commitment_point(
        &self,
        channel: ChannelKeysId,
        commitment_number: u64,
    ) -> Result<Vec<u8>, ClientError> {
        match self.call(&NodeRequest::PerCommitmentPoint { channel, commitment_number }).await? {
            NodeResponse::Point(p) => Ok(p),
            other => Err(Self::fail(other)),
        }
    }
}
