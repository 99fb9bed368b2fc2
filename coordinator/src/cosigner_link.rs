//! One pinned QUIC connection from the coordinator to one cosigner: dialled lazily,
//! redialled after the cosigner restarts, one stream per request, every call bounded by
//! a timeout.
//!
//! Must never: accept any certificate but the one pinned for this cosigner, or retry a
//! request that may have reached the cosigner (only a failure to open the stream is retried).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::{Connection, Endpoint};
use tokio::sync::Mutex;

use qls_protocol::quic::{connect, peer_certificate, request, Identity, StreamError, TransportError};
use qls_protocol::{CosignerRequest, CosignerResponse, Fingerprint};

use crate::config::CosignerSpec;

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cosigner {name} unreachable: {detail}")]
    Unreachable { name: String, detail: String },
    #[error("cosigner {name} did not answer within {ms} ms")]
    Timeout { name: String, ms: u64 },
    #[error("cosigner {name}: {detail}")]
    Stream { name: String, detail: String },
    /// A round had what it needed and stopped waiting for this cosigner.
    #[error("cosigner {name} not waited for: {detail}")]
    Slow { name: String, detail: String },
}

/// After a failed dial, other calls fail at once for this long instead of queueing up
/// behind one another's dial timeouts.
pub const DIAL_BACKOFF: Duration = Duration::from_millis(250);

#[derive(Default)]
struct LinkState {
    conn: Option<Connection>,
    dial_failed_at: Option<tokio::time::Instant>,
}

pub struct CosignerLink {
    pub spec: CosignerSpec,
    endpoint: Endpoint,
    identity: Arc<Identity>,
    state: Mutex<LinkState>,
}

impl CosignerLink {
    pub fn new(spec: CosignerSpec, endpoint: Endpoint, identity: Arc<Identity>) -> Self {
        Self { spec, endpoint, identity, state: Mutex::new(LinkState::default()) }
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn addr(&self) -> SocketAddr {
        self.spec.addr
    }

    pub fn fingerprint(&self) -> Fingerprint {
        self.spec.fingerprint
    }

    /// True when the last connection was closed (by the cosigner, or lost) and no
    /// new one is up: the cosigner is most likely down.
    pub fn connection_lost(&self) -> bool {
        match self.state.try_lock() {
            Ok(s) => s.conn.as_ref().is_some_and(|c| c.close_reason().is_some()) || s.dial_failed_at.is_some(),
            Err(_) => false, // a call is using or dialling the connection right now
        }
    }

    async fn connection(&self, timeout: Duration) -> Result<Connection, LinkError> {
        let mut state = self.state.lock().await;
        if let Some(c) = state.conn.as_ref() {
            if c.close_reason().is_none() {
                return Ok(c.clone());
            }
        }
        if state.dial_failed_at.is_some_and(|t| t.elapsed() < DIAL_BACKOFF) {
            return Err(LinkError::Unreachable {
                name: self.spec.name.clone(),
                detail: "dial failed moments ago".into(),
            });
        }
        let dial = connect(&self.endpoint, &self.identity, self.spec.addr, self.spec.fingerprint);
        let result = match tokio::time::timeout(timeout, dial).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(self.unreachable(e)),
            Err(_) => Err(LinkError::Timeout { name: self.spec.name.clone(), ms: timeout.as_millis() as u64 }),
        };
        match result {
            Ok(conn) => {
                *state = LinkState { conn: Some(conn.clone()), dial_failed_at: None };
                Ok(conn)
            }
            Err(e) => {
                state.dial_failed_at = Some(tokio::time::Instant::now());
                Err(e)
            }
        }
    }

    fn unreachable(&self, e: TransportError) -> LinkError {
        LinkError::Unreachable { name: self.spec.name.clone(), detail: e.to_string() }
    }

    /// The certificate the cosigner presented (DER), dialling if needed.
    pub async fn peer_cert(&self, timeout: Duration) -> Result<Vec<u8>, LinkError> {
        let conn = self.connection(timeout).await?;
        peer_certificate(&conn)
            .ok_or_else(|| LinkError::Stream { name: self.spec.name.clone(), detail: "no peer certificate".into() })
    }

    /// Sends one request and waits for its reply, at most `timeout` in all.
    pub async fn call(&self, req: &CosignerRequest, timeout: Duration) -> Result<CosignerResponse, LinkError> {
        let started = tokio::time::Instant::now();
        for attempt in 0..2 {
            let conn = self.connection(timeout.saturating_sub(started.elapsed())).await?;
            let left = timeout.saturating_sub(started.elapsed());
            match request::<_, CosignerResponse>(&conn, req, left).await {
                Ok(r) => return Ok(r),
                Err(StreamError::Timeout(ms)) => return Err(LinkError::Timeout { name: self.spec.name.clone(), ms }),
                // The connection died (e.g. the cosigner restarted) before the stream
                // opened: nothing reached the cosigner, so one redial is safe.
                Err(StreamError::Connection(e)) if attempt == 0 => {
                    tracing::debug!(cosigner = %self.spec.name, error = %e, "connection lost; redialling");
                    self.state.lock().await.conn = None;
                }
                Err(e @ (StreamError::Connection(_) | StreamError::Read(_) | StreamError::Write(_))) => {
                    self.state.lock().await.conn = None;
                    return Err(LinkError::Unreachable { name: self.spec.name.clone(), detail: e.to_string() });
                }
                Err(e) => return Err(LinkError::Stream { name: self.spec.name.clone(), detail: e.to_string() }),
            }
        }
        Err(LinkError::Unreachable { name: self.spec.name.clone(), detail: "connection lost twice".into() })
    }
}
