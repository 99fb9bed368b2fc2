//! Every wire message a peer can send, from raw frame bytes: decoding and the post-decode
//! bound checks must return typed errors, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qls_protocol::{decode_frame, CosignerRequest, CosignerResponse, NodeRequest, NodeResponse, Validate};

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = decode_frame::<CosignerRequest>(data) {
        let _ = r.validate();
    }
    if let Ok(r) = decode_frame::<CosignerResponse>(data) {
        let _ = r.validate();
    }
    if let Ok(r) = decode_frame::<NodeRequest>(data) {
        let _ = r.validate();
    }
    if let Ok(r) = decode_frame::<NodeResponse>(data) {
        let _ = r.validate();
    }
});
