//! One request frame and one reply frame per QUIC bidirectional stream: bounded reads,
//! post-decode validation, and a server loop that answers every bad frame with a typed
//! error reply instead of dropping or panicking.
//!
//! Must never: buffer more than one frame's bound, or let one bad stream end the
//! connection's other streams.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use quinn::{Connection, RecvStream, SendStream};
use serde::{de::DeserializeOwned, Serialize};

use crate::frame::{decode_body, encode_frame, frame_body_len, FrameError, FRAME_HEADER_BYTES};
use crate::messages::{CosignerResponse, ErrorKind, NodeResponse};
use crate::validate::{Validate, ValidationError};

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("frame: {0}")]
    Frame(#[from] FrameError),
    #[error("out-of-bound field: {0}")]
    Invalid(#[from] ValidationError),
    #[error("read: {0}")]
    Read(#[from] quinn::ReadExactError),
    #[error("write: {0}")]
    Write(#[from] quinn::WriteError),
    #[error("stream closed: {0}")]
    Closed(#[from] quinn::ClosedStream),
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error("no reply within {0} ms")]
    Timeout(u64),
}

/// Replies that can carry a transport-level error back to the requester.
pub trait ErrorReply {
    fn error_reply(kind: ErrorKind, detail: String) -> Self;
}

impl ErrorReply for CosignerResponse {
    fn error_reply(kind: ErrorKind, detail: String) -> Self {
        CosignerResponse::Error { kind, detail }
    }
}

impl ErrorReply for NodeResponse {
    fn error_reply(kind: ErrorKind, detail: String) -> Self {
        NodeResponse::Error { kind, detail }
    }
}

pub async fn write_frame<T: Serialize>(send: &mut SendStream, msg: &T) -> Result<(), StreamError> {
    let frame = encode_frame(msg)?;
    send.write_all(&frame).await?;
    Ok(())
}

/// Reads one frame: the header, its bound, the body, the version, the message, the
/// message's field bounds — in that order.
pub async fn read_frame<T: DeserializeOwned + Validate>(recv: &mut RecvStream) -> Result<T, StreamError> {
    let mut header = [0u8; FRAME_HEADER_BYTES];
    recv.read_exact(&mut header).await?;
    let len = frame_body_len(header)?;
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body).await?;
    let msg: T = decode_body(&body)?;
    msg.validate()?;
    Ok(msg)
}

/// Sends `req` on a new stream of `conn` and waits for the reply, at most `timeout`.
pub async fn request<Req, Resp>(conn: &Connection, req: &Req, timeout: Duration) -> Result<Resp, StreamError>
where
    Req: Serialize,
    Resp: DeserializeOwned + Validate,
{
    let exchange = async {
        let (mut send, mut recv) = conn.open_bi().await?;
        write_frame(&mut send, req).await?;
        send.finish()?;
        read_frame::<Resp>(&mut recv).await
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(r) => r,
        Err(_) => Err(StreamError::Timeout(timeout.as_millis() as u64)),
    }
}

fn error_kind(e: &StreamError) -> ErrorKind {
    match e {
        StreamError::Frame(FrameError::UnsupportedVersion { .. }) => ErrorKind::UnsupportedVersion,
        StreamError::Invalid(_) => ErrorKind::InvalidRequest,
        _ => ErrorKind::BadFrame,
    }
}

/// Serves every stream of `conn`: decode a request, call `handler`, write its reply.
/// A request that fails to decode gets an error reply of the right kind. Returns when
/// the connection closes.
pub async fn serve_connection<Req, Resp, H, Fut>(conn: Connection, handler: Arc<H>)
where
    Req: DeserializeOwned + Validate + Send + 'static,
    Resp: Serialize + ErrorReply + Send + Sync + 'static,
    H: Fn(Req) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Resp> + Send + 'static,
{
    while let Ok((mut send, mut recv)) = conn.accept_bi().await {
        let handler = handler.clone();
        tokio::spawn(async move {
            let reply = match read_frame::<Req>(&mut recv).await {
                Ok(req) => handler(req).await,
                Err(StreamError::Read(_)) => return,
                Err(e) => Resp::error_reply(error_kind(&e), e.to_string()),
            };
            if write_frame(&mut send, &reply).await.is_ok() {
                let _ = send.finish();
            }
        });
    }
}

/// The certificate (DER) the peer on `conn` presented.
pub fn peer_certificate(conn: &Connection) -> Option<Vec<u8>> {
    let certs = conn.peer_identity()?.downcast::<Vec<rustls_pki_types::CertificateDer<'static>>>().ok()?;
    certs.first().map(|c| c.to_vec())
}
