//! Catch-up by replay: the state-changing approval requests a cosigner missed (it was down
//! or its link failed), kept per member and per channel, and replayed to it — in order,
//! before it gets the next request of the same channel — so a restarted cosigner brings
//! its own state forward by judging each missed request itself.
//!
//! A replayed request is an ordinary `Approve`: the cosigner applies only what its policy
//! allows, and its approval is thrown away (nothing is signed for a past step). A request
//! whose reply was lost may be replayed although it was applied: cosigners treat an
//! identical request as a retry (no change). Bounds: [`MISSED_PER_CHANNEL`] requests per
//! channel and [`MISSED_NODE`] node-wide ones (payment approvals) per member; beyond
//! that the oldest are dropped and that cosigner stays diverged for the channel (reported
//! `StateDiverged` by the rounds, as before). The log is in memory: a coordinator restart
//! forgets it.
//!
//! Must never: reorder one channel's requests for a cosigner, replay anything but
//! approvals, or hold a lock across a network call.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use qls_protocol::{ApprovalSubject, ChannelKeysId, CosignerRequest, NodeKeyRequest};

use crate::cosigner_link::{CosignerLink, LinkError};

/// Missed requests kept per channel and member.
pub const MISSED_PER_CHANNEL: usize = 64;
/// Missed node-wide requests (payment approvals) kept per member.
pub const MISSED_NODE: usize = 256;

/// Where a missed request belongs: one channel's sequence, or the node-wide one.
pub type Lane = Option<ChannelKeysId>;

/// The lane of an approval subject whose effect a cosigner that missed it must still see,
/// or `None` for one that changes no state a later request depends on.
pub fn lane_of(subject: &ApprovalSubject) -> Option<Lane> {
    match subject {
        ApprovalSubject::Channel { channel, .. } => Some(Some(*channel)),
        ApprovalSubject::Node(NodeKeyRequest::ApprovePayment { .. }) => Some(None),
        ApprovalSubject::Node(_) | ApprovalSubject::TaprootSecret { .. } => None,
    }
}

/// One member's missed requests.
#[derive(Default)]
pub struct MissedLog {
    lanes: Mutex<BTreeMap<Lane, VecDeque<CosignerRequest>>>,
}

impl MissedLog {
    fn lanes(&self) -> std::sync::MutexGuard<'_, BTreeMap<Lane, VecDeque<CosignerRequest>>> {
        self.lanes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `request` did not reach the cosigner (or its reply was lost).
    pub fn remember(&self, lane: Lane, request: CosignerRequest) {
        let bound = if lane.is_some() { MISSED_PER_CHANNEL } else { MISSED_NODE };
        let mut lanes = self.lanes();
        let q = lanes.entry(lane).or_default();
        if q.len() == bound {
            q.pop_front();
            tracing::warn!(lane = ?lane.map(|c| hex::encode(&c[..8])), "missed-request log full: the oldest is dropped, the cosigner stays behind");
        }
        q.push_back(request);
    }

    /// How many requests are waiting in `lane`.
    pub fn pending(&self, lane: Lane) -> usize {
        self.lanes().get(&lane).map_or(0, VecDeque::len)
    }

    fn take(&self, lane: Lane) -> VecDeque<CosignerRequest> {
        self.lanes().remove(&lane).unwrap_or_default()
    }

    fn put_back(&self, lane: Lane, mut rest: VecDeque<CosignerRequest>) {
        let mut lanes = self.lanes();
        let q = lanes.entry(lane).or_default();
        // Anything remembered meanwhile came later: it stays behind the rest.
        rest.extend(q.drain(..));
        *q = rest;
    }

    /// Replays the node-wide lane and `lane`, in order, over `link`. Stops at the first
    /// request that does not get through (it and the rest stay for the next time).
    /// Returns how many were replayed.
    pub async fn replay(&self, link: &CosignerLink, lane: Lane, timeout: Duration) -> Result<usize, LinkError> {
        let mut done = 0;
        // The node-wide lane first (payment approvals a channel request may rely on).
        let order: Vec<Lane> = if lane.is_some() { vec![None, lane] } else { vec![None] };
        for l in order {
            let mut q = self.take(l);
            while let Some(req) = q.pop_front() {
                match link.call(&req, timeout).await {
                    Ok(_) => done += 1,
                    Err(e) => {
                        q.push_front(req);
                        self.put_back(l, q);
                        return Err(e);
                    }
                }
            }
        }
        if done > 0 {
            tracing::info!(cosigner = %link.name(), done, "missed requests replayed");
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(n: u64) -> CosignerRequest {
        CosignerRequest::Approve {
            subject: ApprovalSubject::Channel {
                channel: [1; 32],
                request: qls_protocol::ChannelRequest::ReleaseCommitmentSecret { commitment_number: n },
            },
            holder_keys: None,
        }
    }

    #[test]
    fn lanes_keep_order_bounds_and_requests_remembered_during_a_replay() {
        let log = MissedLog::default();
        let lane = Some([1; 32]);
        for n in 0..(MISSED_PER_CHANNEL as u64 + 3) {
            log.remember(lane, req(n));
        }
        assert_eq!(log.pending(lane), MISSED_PER_CHANNEL);
        assert_eq!(log.pending(None), 0);
        // The oldest three were dropped; a replay takes them in order and puts back what
        // did not get through in front of anything remembered meanwhile.
        let mut q = log.take(lane);
        assert_eq!(q.front(), Some(&req(3)));
        let first = q.pop_front().unwrap();
        log.remember(lane, req(1_000));
        q.push_front(first);
        log.put_back(lane, q);
        let q = log.take(lane);
        assert_eq!(q.front(), Some(&req(3)));
        assert_eq!(q.back(), Some(&req(1_000)));
        assert_eq!(q.len(), MISSED_PER_CHANNEL + 1);
    }

    #[test]
    fn only_state_changing_subjects_have_a_lane() {
        let channel = ApprovalSubject::Channel {
            channel: [2; 32],
            request: qls_protocol::ChannelRequest::ReleaseCommitmentSecret { commitment_number: 1 },
        };
        assert_eq!(lane_of(&channel), Some(Some([2; 32])));
        let pay = ApprovalSubject::Node(NodeKeyRequest::ApprovePayment {
            payment_hash: [0; 32],
            amount_msat: 1,
            expires_at: 1,
            invoice: None,
            approval: None,
        });
        assert_eq!(lane_of(&pay), Some(None));
        let ecdh = ApprovalSubject::Node(NodeKeyRequest::Ecdh { other_key: vec![2; 33], tweak: None });
        assert_eq!(lane_of(&ecdh), None);
    }
}
