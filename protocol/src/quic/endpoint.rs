//! QUIC endpoints with pinned mutual TLS 1.3: a server endpoint that only admits pinned
//! client certificates, and client endpoints that dial one server pinned per connection.
//!
//! Must never: build a TLS config without client authentication, or share one client
//! config across servers with different pins.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{ClientConfig, Connection, Endpoint, ServerConfig, TransportConfig};

use super::identity::Identity;
use super::pinning::{PinnedClientVerifier, PinnedServerVerifier};
use crate::messages::Fingerprint;

/// The name every QLS certificate carries and every client asks for; identity comes from
/// the pinned fingerprint, not from the name.
pub const SERVER_NAME: &str = "qls";
const ALPN: &[u8] = b"qls/1";
/// Idle connections are closed after this long without traffic or keep-alives.
pub const IDLE_TIMEOUT_MS: u64 = 30_000;
const KEEP_ALIVE_MS: u64 = 5_000;
/// Concurrent requests (bidirectional streams) one peer may have open.
pub const MAX_CONCURRENT_STREAMS: u32 = 512;

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("tls configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("quic crypto configuration: {0}")]
    QuicCrypto(String),
    #[error("cannot bind {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: SocketAddr, source: quinn::ConnectError },
    #[error("handshake with {addr} failed: {source}")]
    Handshake { addr: SocketAddr, source: quinn::ConnectionError },
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn transport_config() -> Arc<TransportConfig> {
    let mut t = TransportConfig::default();
    t.max_idle_timeout(Some(Duration::from_millis(IDLE_TIMEOUT_MS).try_into().expect("constant fits")));
    t.keep_alive_interval(Some(Duration::from_millis(KEEP_ALIVE_MS)));
    t.max_concurrent_bidi_streams(MAX_CONCURRENT_STREAMS.into());
    t.max_concurrent_uni_streams(0u32.into());
    Arc::new(t)
}

/// A server endpoint on `bind` that admits only clients whose certificate fingerprint is
/// in `client_pins`.
pub fn server_endpoint(
    identity: &Identity,
    bind: SocketAddr,
    client_pins: impl IntoIterator<Item = Fingerprint>,
) -> Result<Endpoint, TransportError> {
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(PinnedClientVerifier::new(client_pins))
        .with_single_cert(vec![identity.cert_der.clone()], identity.private_key())?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = QuicServerConfig::try_from(tls).map_err(|e| TransportError::QuicCrypto(e.to_string()))?;
    let mut config = ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(transport_config());
    // Resets under the identity's own key: a restarted server closes its previous run's
    // connections on their next packet (see `Identity::stateless_reset_key`).
    let mut endpoint_config = quinn::EndpointConfig::new(Arc::new(identity.stateless_reset_key()));
    let cid_key = identity.connection_id_key();
    endpoint_config.cid_generator(move || Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key)));
    let bind_err = |source| TransportError::Bind { addr: bind, source };
    let socket = std::net::UdpSocket::bind(bind).map_err(bind_err)?;
    Endpoint::new(endpoint_config, Some(config), socket, Arc::new(quinn::TokioRuntime)).map_err(bind_err)
}

/// A client-only endpoint bound to an ephemeral loopback or wildcard port.
pub fn client_endpoint(bind: SocketAddr) -> Result<Endpoint, TransportError> {
    Endpoint::client(bind).map_err(|source| TransportError::Bind { addr: bind, source })
}

/// A client-only endpoint on a caller-provided socket (e.g. the simnet's fault-injecting
/// socket wrapped around a real one).
pub fn client_endpoint_on(socket: Arc<dyn quinn::AsyncUdpSocket>) -> Result<Endpoint, TransportError> {
    let addr = socket.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    Endpoint::new_with_abstract_socket(quinn::EndpointConfig::default(), None, socket, Arc::new(quinn::TokioRuntime))
        .map_err(|source| TransportError::Bind { addr, source })
}

/// The client config to dial one server whose certificate must be `server_pin`.
pub fn client_config(identity: &Identity, server_pin: Fingerprint) -> Result<ClientConfig, TransportError> {
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(PinnedServerVerifier::new([server_pin]))
        .with_client_auth_cert(vec![identity.cert_der.clone()], identity.private_key())?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = QuicClientConfig::try_from(tls).map_err(|e| TransportError::QuicCrypto(e.to_string()))?;
    let mut config = ClientConfig::new(Arc::new(crypto));
    config.transport_config(transport_config());
    Ok(config)
}

/// Dials `addr`, requiring its certificate to be `server_pin` and presenting `identity`.
pub async fn connect(
    endpoint: &Endpoint,
    identity: &Identity,
    addr: SocketAddr,
    server_pin: Fingerprint,
) -> Result<Connection, TransportError> {
    let config = client_config(identity, server_pin)?;
    let connecting =
        endpoint.connect_with(config, addr, SERVER_NAME).map_err(|source| TransportError::Connect { addr, source })?;
    connecting.await.map_err(|source| TransportError::Handshake { addr, source })
}
