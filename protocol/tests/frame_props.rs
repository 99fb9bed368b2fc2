//! Property tests of the frame codec: any bytes decode to a message or a typed error for
//! every message type (never a panic), mutated valid frames too, and encode → decode is
//! the identity.

use proptest::prelude::*;
use qls_protocol::*;

fn decode_all(bytes: &[u8]) {
    let _ = decode_frame::<CosignerRequest>(bytes).map(|m| m.validate());
    let _ = decode_frame::<CosignerResponse>(bytes).map(|m| m.validate());
    let _ = decode_frame::<NodeRequest>(bytes).map(|m| m.validate());
    let _ = decode_frame::<NodeResponse>(bytes).map(|m| m.validate());
}

fn sign_request() -> impl Strategy<Value = CosignerRequest> {
    (
        any::<[u8; 32]>(),
        prop::collection::vec(any::<u8>(), 0..300),
        prop::collection::vec((any::<u64>(), prop::collection::vec(any::<u8>(), 0..200)), 0..4),
    )
        .prop_map(|(key_id, psbt, items)| {
            CosignerRequest::Sign(SignRequest {
                key_id,
                payload: SignPayload::Psbt { psbt, funding_channels: vec![] },
                items: items
                    .into_iter()
                    .map(|(nonce_id, signing_package)| SignItem { nonce_id, signing_package })
                    .collect(),
            })
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        decode_all(&bytes);
        // Also with a well-formed header and version in front of the noise.
        let mut framed = ((bytes.len() + 2) as u32).to_be_bytes().to_vec();
        framed.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
        framed.extend_from_slice(&bytes);
        decode_all(&framed);
    }

    #[test]
    fn mutated_valid_frames_never_panic(req in sign_request(), at in any::<usize>(), byte in any::<u8>()) {
        let mut frame = encode_frame(&req).unwrap();
        let i = at % frame.len();
        frame[i] = byte;
        decode_all(&frame);
    }

    #[test]
    fn encode_decode_is_identity(req in sign_request(), msg in any::<[u8; 32]>()) {
        prop_assert_eq!(decode_frame::<CosignerRequest>(&encode_frame(&req).unwrap()).unwrap(), req);
        let node = NodeRequest::SignMessage { msg };
        prop_assert_eq!(decode_frame::<NodeRequest>(&encode_frame(&node).unwrap()).unwrap(), node);
    }
}
