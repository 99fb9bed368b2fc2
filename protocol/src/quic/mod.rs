//! The transport the async shells share: long-term identities, certificate pinning in
//! both directions, QUIC endpoints, and one request/response frame pair per
//! bidirectional stream.
//!
//! Must never: accept a peer whose certificate fingerprint is not pinned, or read more
//! than [`crate::limits::MAX_FRAME_BYTES`] for one frame.

pub mod endpoint;
pub mod identity;
pub mod pinning;
pub mod stream;

pub use endpoint::{
    client_config, client_endpoint, client_endpoint_on, connect, server_endpoint, TransportError, SERVER_NAME,
};
pub use identity::{fingerprint, fingerprint_hex, parse_fingerprint, verify_identity_sig, Identity, IdentityError};
pub use stream::{peer_certificate, read_frame, request, serve_connection, write_frame, ErrorReply, StreamError};
