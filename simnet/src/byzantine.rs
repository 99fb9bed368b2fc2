//! Byzantine cosigners: reply faults that turn an honest cosigner's answers into a
//! misbehaving one's — invalid signature shares, wrong nonce commitments (FROST and
//! MuSig2 leaf nonces that are valid points but not its nonces), a stale channel state
//! digest on its approvals. (Slow replies are link latency, set by the runner.)
//!
//! Must never: change a reply that is not of the misbehaviour's kind.

use std::sync::Arc;

use qls_cosigner::ReplyFault;
use qls_protocol::{CosignerResponse, NonceCommitment};
use qls_signer_core::frost::round1::SigningCommitments;

use crate::harness::invalid_share_fault;

/// FROST commitments with hiding and binding swapped: well-formed, not the cosigner's.
fn swap_commitments(c: NonceCommitment) -> NonceCommitment {
    let swapped = SigningCommitments::deserialize(&c.commitments)
        .ok()
        .and_then(|sc| SigningCommitments::new(*sc.binding(), *sc.hiding()).serialize().ok());
    NonceCommitment { nonce_id: c.nonce_id, commitments: swapped.unwrap_or(c.commitments) }
}

/// A MuSig2 public nonce (R1 ‖ R2) with its two points swapped.
fn swap_pubnonce(n: &[u8]) -> Vec<u8> {
    if n.len() == 66 {
        [&n[33..], &n[..33]].concat()
    } else {
        n.to_vec()
    }
}

pub fn wrong_nonce_fault() -> ReplyFault {
    Arc::new(|reply| match reply {
        CosignerResponse::NonceCommitments { key_id, commitments } => CosignerResponse::NonceCommitments {
            key_id,
            commitments: commitments.into_iter().map(swap_commitments).collect(),
        },
        CosignerResponse::TaprootNonces(nonces) => CosignerResponse::TaprootNonces(
            nonces
                .into_iter()
                .map(|mut n| {
                    n.pubnonce = swap_pubnonce(&n.pubnonce);
                    n
                })
                .collect(),
        ),
        other => other,
    })
}

/// Approvals that report the state before the request (version − 1, digest of nothing).
pub fn stale_state_fault() -> ReplyFault {
    Arc::new(|reply| match reply {
        CosignerResponse::Approved { mut approval, warnings } => {
            approval.state.version = approval.state.version.saturating_sub(1);
            approval.state.digest = [0; 32];
            CosignerResponse::Approved { approval, warnings }
        }
        other => other,
    })
}

/// One reply fault doing every mode of `modes` (`invalid-shares`, `wrong-nonces`,
/// `stale-state`; others are not reply faults), or none.
pub fn reply_fault(modes: &[&str]) -> Option<ReplyFault> {
    let faults: Vec<ReplyFault> = modes
        .iter()
        .filter_map(|m| match *m {
            "invalid-shares" => Some(invalid_share_fault()),
            "wrong-nonces" => Some(wrong_nonce_fault()),
            "stale-state" => Some(stale_state_fault()),
            _ => None,
        })
        .collect();
    if faults.is_empty() {
        return None;
    }
    Some(Arc::new(move |reply| faults.iter().fold(reply, |r, f| f(r))))
}
