//! QLS wire protocol: the versioned message types exchanged between the node, the
//! coordinator and the cosigners, and the length-prefixed frame codec that carries them.
//!
//! Owns: message shapes, protocol version, hard size/count bounds, typed decode errors.
//! Must never: hold business logic, touch secrets, or panic on any input. The default
//! build has no I/O and no async runtime (`no_std` + `alloc`); the `quic` feature adds the
//! transport the async shells share (pinned mutual TLS over QUIC, frame I/O on streams).
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod channel;
pub mod frame;
pub mod limits;
pub mod messages;
pub mod taproot;
pub mod validate;

#[cfg(feature = "quic")]
pub mod quic;

pub use channel::*;
pub use frame::{decode_frame, encode_frame, frame_body_len, FrameError, FRAME_HEADER_BYTES};
pub use messages::*;
pub use taproot::*;
pub use validate::{Validate, ValidationError};

/// The one protocol version this build speaks. A frame carrying another version is
/// refused with [`FrameError::UnsupportedVersion`].
pub const PROTOCOL_VERSION: u16 = 1;
