//! The cosigner's QUIC server: binds with its identity, admits only pinned coordinators,
//! and runs each request's handler on a blocking thread.
//!
//! Must never: serve a connection whose handshake failed pinning (such peers are logged
//! and dropped), or block the async runtime with store I/O.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use quinn::Endpoint;

use qls_protocol::quic::{fingerprint_hex, serve_connection, server_endpoint, Identity, IdentityError, TransportError};
use qls_protocol::{CosignerRequest, CosignerResponse, ErrorKind, Fingerprint};

use crate::config::{ConfigError, CosignerConfig};
use crate::handler::{handle, CosignerState};
use crate::key_holder::KeyHolder;
use crate::store::{Store, StoreError};

pub const STORE_FILE: &str = "cosigner.redb";

#[derive(Debug, thiserror::Error)]
pub enum CosignerError {
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("store {path}: {source}")]
    Store { path: PathBuf, source: StoreError },
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error(transparent)]
    KeyHolder(#[from] crate::key_holder::KeyHolderError),
    #[error("cosigner has no coordinator pinned: add one with `qls-cosigner pin --coordinator FP`")]
    NoCoordinator,
}

/// Fault injection for the simnet and tests: rewrites each reply before it is sent
/// (a byzantine cosigner). Only settable through the library, never by config or CLI.
pub type ReplyFault = Arc<dyn Fn(CosignerResponse) -> CosignerResponse + Send + Sync>;

/// A running cosigner: its state and its bound endpoint.
pub struct Cosigner {
    state: Arc<CosignerState>,
    endpoint: Endpoint,
    fault: Option<ReplyFault>,
}

impl Cosigner {
    /// Loads identity and store from `data_dir` and binds the endpoint.
    pub fn open(data_dir: &Path, config: CosignerConfig) -> Result<Self, CosignerError> {
        if config.coordinators.is_empty() {
            return Err(CosignerError::NoCoordinator);
        }
        let identity = Identity::load(data_dir)?;
        let path = data_dir.join(STORE_FILE);
        let store = Store::open(&path).map_err(|source| CosignerError::Store { path: path.clone(), source })?;
        // A store may be an older copy of itself: no nonce from before this start signs.
        let (frost, musig) = store.forget_nonces_at_start().map_err(|source| CosignerError::Store { path, source })?;
        tracing::info!(frost, musig, "unused nonces from before this start forgotten");
        let endpoint = server_endpoint(&identity, config.listen, config.coordinators.iter().copied())?;
        let mut state = CosignerState::new(config, identity, store);
        if state.config.key_holder {
            state = state.with_key_holder(KeyHolder::open(data_dir)?);
        }
        Ok(Self { state: Arc::new(state), endpoint, fault: None })
    }

    /// Makes this cosigner byzantine: every reply passes through `fault`.
    pub fn with_reply_fault(mut self, fault: ReplyFault) -> Self {
        self.fault = Some(fault);
        self
    }

    /// A handle to close the endpoint from elsewhere (stops [`Self::serve`]).
    pub fn endpoint(&self) -> Endpoint {
        self.endpoint.clone()
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    pub fn fingerprint(&self) -> Fingerprint {
        self.state.identity.fingerprint
    }

    /// Serves until the endpoint is closed.
    pub async fn serve(self) {
        let name = self.state.config.name.clone();
        tracing::info!(%name, addr = ?self.endpoint.local_addr().ok(), fingerprint = %fingerprint_hex(&self.fingerprint()), "cosigner listening");
        while let Some(incoming) = self.endpoint.accept().await {
            let state = self.state.clone();
            let fault = self.fault.clone();
            tokio::spawn(async move {
                let remote = incoming.remote_address();
                let conn = match incoming.await {
                    Ok(conn) => conn,
                    Err(e) => {
                        tracing::warn!(%remote, error = %e, "refused connection (handshake or pinning failed)");
                        return;
                    }
                };
                let handler = Arc::new(move |req: CosignerRequest| {
                    let state = state.clone();
                    let fault = fault.clone();
                    async move {
                        let reply =
                            tokio::task::spawn_blocking(move || handle(&state, req)).await.unwrap_or_else(|e| {
                                CosignerResponse::Error {
                                    kind: ErrorKind::Internal,
                                    detail: format!("handler failed: {e}"),
                                }
                            });
                        match fault {
                            Some(f) => f(reply),
                            None => reply,
                        }
                    }
                });
                serve_connection(conn, handler).await;
            });
        }
    }
}

/// `qls-cosigner run`: open, serve, stop on Ctrl-C.
pub async fn run_cosigner(data_dir: &Path, config: CosignerConfig) -> Result<(), CosignerError> {
    let cosigner = Cosigner::open(data_dir, config)?;
    let endpoint = cosigner.endpoint.clone();
    tokio::select! {
        _ = cosigner.serve() => {}
        _ = tokio::signal::ctrl_c() => { endpoint.close(0u32.into(), b"shutdown"); }
    }
    Ok(())
}
