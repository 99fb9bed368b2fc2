//! Frame codec: `[u32 big-endian body length][u16 big-endian version][postcard message]`.
//!
//! Owns: turning a message into bytes and back, with the length bound and the version
//! checked before any decoding. Must never: allocate more than the bound allows, or
//! accept a frame of another version.

use alloc::vec::Vec;
use serde::{de::DeserializeOwned, Serialize};

use crate::limits::MAX_FRAME_BYTES;
use crate::PROTOCOL_VERSION;

/// Bytes of the length prefix that precedes every frame body.
pub const FRAME_HEADER_BYTES: usize = 4;
const VERSION_BYTES: usize = 2;

/// Why a frame could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame body of {len} bytes exceeds the limit of {max} bytes")]
    Oversized { len: usize, max: usize },
    #[error("frame body of {len} bytes is too short to hold a version")]
    Truncated { len: usize },
    #[error("frame length prefix says {declared} bytes but {actual} bytes follow")]
    LengthMismatch { declared: usize, actual: usize },
    #[error("unsupported protocol version {got} (this build speaks {supported})")]
    UnsupportedVersion { got: u16, supported: u16 },
    #[error("malformed message: {0}")]
    Malformed(&'static str),
    #[error("message could not be encoded: {0}")]
    Encode(&'static str),
}

fn postcard_reason(e: postcard::Error) -> &'static str {
    use postcard::Error as E;
    match e {
        E::DeserializeUnexpectedEnd => "unexpected end of message",
        E::DeserializeBadVarint => "bad varint",
        E::DeserializeBadBool => "bad bool",
        E::DeserializeBadChar => "bad char",
        E::DeserializeBadUtf8 => "bad utf-8 string",
        E::DeserializeBadOption => "bad option tag",
        E::DeserializeBadEnum => "unknown message variant",
        E::DeserializeBadEncoding => "bad encoding",
        _ => "undecodable message",
    }
}

/// Encodes `msg` as a complete frame (header included).
pub fn encode_frame<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&[0u8; FRAME_HEADER_BYTES]);
    out.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    let out = postcard::to_extend(msg, out).map_err(|e| FrameError::Encode(postcard_reason(e)))?;
    let body_len = out.len() - FRAME_HEADER_BYTES;
    if body_len > MAX_FRAME_BYTES {
        return Err(FrameError::Oversized { len: body_len, max: MAX_FRAME_BYTES });
    }
    let mut out = out;
    out[..FRAME_HEADER_BYTES].copy_from_slice(&(body_len as u32).to_be_bytes());
    Ok(out)
}

/// Reads the body length from a frame header and checks it against the bound, before
/// any body byte is read.
pub fn frame_body_len(header: [u8; FRAME_HEADER_BYTES]) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(FrameError::Oversized { len, max: MAX_FRAME_BYTES });
    }
    if len < VERSION_BYTES {
        return Err(FrameError::Truncated { len });
    }
    Ok(len)
}

/// Decodes a frame body (the bytes after the header): version check, then message.
/// Trailing bytes after the message are refused.
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    if body.len() > MAX_FRAME_BYTES {
        return Err(FrameError::Oversized { len: body.len(), max: MAX_FRAME_BYTES });
    }
    if body.len() < VERSION_BYTES {
        return Err(FrameError::Truncated { len: body.len() });
    }
    let version = u16::from_be_bytes([body[0], body[1]]);
    if version != PROTOCOL_VERSION {
        return Err(FrameError::UnsupportedVersion { got: version, supported: PROTOCOL_VERSION });
    }
    let (msg, rest) =
        postcard::take_from_bytes(&body[VERSION_BYTES..]).map_err(|e| FrameError::Malformed(postcard_reason(e)))?;
    if !rest.is_empty() {
        return Err(FrameError::Malformed("trailing bytes after message"));
    }
    Ok(msg)
}

/// Decodes a complete frame (header included).
pub fn decode_frame<T: DeserializeOwned>(frame: &[u8]) -> Result<T, FrameError> {
    if frame.len() < FRAME_HEADER_BYTES {
        return Err(FrameError::Truncated { len: frame.len() });
    }
    let mut header = [0u8; FRAME_HEADER_BYTES];
    header.copy_from_slice(&frame[..FRAME_HEADER_BYTES]);
    let declared = frame_body_len(header)?;
    let body = &frame[FRAME_HEADER_BYTES..];
    if body.len() != declared {
        return Err(FrameError::LengthMismatch { declared, actual: body.len() });
    }
    decode_body(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{CosignerRequest, NodeRequest};

    #[test]
    fn roundtrip_preserves_message() {
        let req = NodeRequest::SignMessage { msg: [7u8; 32] };
        let frame = encode_frame(&req).unwrap();
        assert_eq!(decode_frame::<NodeRequest>(&frame).unwrap(), req);
    }

    #[test]
    fn wrong_version_refused_before_decoding() {
        let mut frame = encode_frame(&CosignerRequest::Hello).unwrap();
        frame[FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + 2].copy_from_slice(&9u16.to_be_bytes());
        assert_eq!(
            decode_frame::<CosignerRequest>(&frame),
            Err(FrameError::UnsupportedVersion { got: 9, supported: PROTOCOL_VERSION })
        );
    }

    #[test]
    fn oversized_header_refused() {
        let header = ((MAX_FRAME_BYTES + 1) as u32).to_be_bytes();
        assert!(matches!(frame_body_len(header), Err(FrameError::Oversized { .. })));
    }

    #[test]
    fn garbage_and_truncation_are_errors_not_panics() {
        let frame = encode_frame(&NodeRequest::SignPsbt { psbt: alloc::vec![1; 300], funding_channels: alloc::vec![] })
            .unwrap();
        for cut in 0..frame.len() {
            assert!(decode_frame::<NodeRequest>(&frame[..cut]).is_err(), "cut at {cut}");
        }
        let mut body = alloc::vec![0u8, 1];
        body.extend_from_slice(&[0xff; 40]);
        assert!(matches!(decode_body::<NodeRequest>(&body), Err(FrameError::Malformed(_))));
    }

    #[test]
    fn trailing_bytes_refused() {
        let mut frame = encode_frame(&CosignerRequest::Hello).unwrap();
        frame.push(0);
        let len = (frame.len() - FRAME_HEADER_BYTES) as u32;
        frame[..4].copy_from_slice(&len.to_be_bytes());
        assert_eq!(decode_frame::<CosignerRequest>(&frame), Err(FrameError::Malformed("trailing bytes after message")));
    }
}
