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
}

pub struct CosignerLink {
    pub spec: CosignerSpec,
    endpoint: Endpoint,
    identity: Arc<Identity>,
    conn: Mutex<Option<Connection>>,
}

impl CosignerLink {
    pub fn new(spec: CosignerSpec, endpoint: Endpoint, identity: Arc<Identity>) -> Self {
        Self { spec, endpoint, identity, conn: Mutex::new(None) }
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

    async fn connection(&self, timeout: Duration) -> Result<Connection, LinkError> {
        let mut guard = self.conn.lock().await;
        if let Some(c) = guard.as_ref() {
            if c.close_reason().is_none() {
                return Ok(c.clone());
            }
        }
        let dial = connect(&self.endpoint, &self.identity, self.spec.addr, self.spec.fingerprint);
        let conn = match tokio::time::timeout(timeout, dial).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(self.unreachable(e)),
            Err(_) => return Err(LinkError::Timeout { name: self.spec.name.clone(), ms: timeout.as_millis() as u64 }),
        };
        *guard = Some(conn.clone());
        Ok(conn)
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
            let conn = self.connection(timeout).await?;
            let left = timeout.saturating_sub(started.elapsed());
            match request::<_, CosignerResponse>(&conn, req, left).await {
                Ok(r) => return Ok(r),
                Err(StreamError::Timeout(ms)) => return Err(LinkError::Timeout { name: self.spec.name.clone(), ms }),
                // The connection died (e.g. the cosigner restarted) before the stream
                // opened: nothing reached the cosigner, so one redial is safe.
                Err(StreamError::Connection(e)) if attempt == 0 => {
                    tracing::debug!(cosigner = %self.spec.name, error = %e, "connection lost; redialling");
                    *self.conn.lock().await = None;
                }
                Err(e @ (StreamError::Connection(_) | StreamError::Read(_) | StreamError::Write(_))) => {
                    *self.conn.lock().await = None;
                    return Err(LinkError::Unreachable { name: self.spec.name.clone(), detail: e.to_string() });
                }
                Err(e) => return Err(LinkError::Stream { name: self.spec.name.clone(), detail: e.to_string() }),
            }
        }
        Err(LinkError::Unreachable { name: self.spec.name.clone(), detail: "connection lost twice".into() })
    }
}
