//! Catch-up by replay: the state-changing approval requests a cosigner missed (it was down
//! or its link failed), kept per member in the order the coordinator sent them, and
//! replayed to it — all of them, in that order, before it gets its next request — so a
//! restarted cosigner brings its own state forward by judging each missed request itself.
//!
//! One order for all channels, not one per channel: the payment index is node-wide, so an
//! outgoing HTLC on one channel is covered by an incoming HTLC or a payment approval that
//! came through another; replayed out of that order, the cover would be missing.
//!
//! A replayed request is an ordinary `Approve`: the cosigner applies only what its policy
//! allows, and its approval is thrown away (nothing is signed for a past step). A request
//! whose reply was lost may be replayed although it was applied: cosigners treat an
//! identical request as a retry (no change). Only requests the quorum applied (its round
//! gathered the approvals it needed) are kept. Bound: [`MISSED_MAX`] requests and
//! [`MISSED_BYTES_MAX`] bytes per member;
//! beyond it new ones are not kept and that cosigner stays diverged for their channels
//! (reported `StateDiverged` by the rounds, as before). The log is in memory: a
//! coordinator restart forgets it.
//!
//! Must never: send a cosigner a live request while requests it missed are still queued
//! (every round catches the member up first; replays hold the member's turn, one at a
//! time), replay anything but approvals, or hold the queue's lock across a network call.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use qls_protocol::{ApprovalSubject, CosignerRequest, CosignerResponse, NodeKeyRequest};

use crate::cosigner_link::{CosignerLink, LinkError};

/// Missed requests kept per member.
pub const MISSED_MAX: usize = 32_768;
/// Their encoded size per member (a request may be up to a frame: 1 MiB).
pub const MISSED_BYTES_MAX: usize = 64 << 20;

/// Whether a cosigner that missed `subject` must still see it: channel requests and
/// payment approvals change state later requests depend on; the rest do not.
pub fn must_catch_up(subject: &ApprovalSubject) -> bool {
    match subject {
        ApprovalSubject::Channel { .. } => true,
        ApprovalSubject::Node(NodeKeyRequest::ApprovePayment { .. }) => true,
        ApprovalSubject::Node(_) | ApprovalSubject::TaprootSecret { .. } | ApprovalSubject::Sweep(_) => false,
    }
}

/// What catching one member up has done so far (for reports and operators).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CatchUpStats {
    /// Catch-ups that replayed at least one request.
    pub catch_ups: u64,
    /// Requests replayed in all.
    pub replayed: u64,
    /// Replayed requests the member refused or failed (it stays behind on that channel).
    pub refused: u64,
    /// Requests not kept because the log was full (the member stays behind).
    pub dropped: u64,
    /// The longest catch-up, ms.
    pub longest_ms: u64,
}

/// One member's missed requests.
#[derive(Default)]
pub struct MissedLog {
    /// The requests and their encoded sizes, oldest first.
    queue: Mutex<VecDeque<(CosignerRequest, usize)>>,
    /// Held by whoever sends this member a request: while it replays, nobody else sends.
    turn: tokio::sync::Mutex<()>,
    stats: Mutex<CatchUpStats>,
}

impl MissedLog {
    fn queue(&self) -> std::sync::MutexGuard<'_, VecDeque<(CosignerRequest, usize)>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `request` did not reach the cosigner (or its reply was lost).
    pub fn remember(&self, request: CosignerRequest) {
        let size = qls_protocol::encode_frame(&request).map_or(usize::MAX, |f| f.len());
        let mut q = self.queue();
        let bytes = q.iter().fold(0usize, |a, (_, n)| a.saturating_add(*n));
        if q.len() >= MISSED_MAX || bytes.saturating_add(size) > MISSED_BYTES_MAX {
            tracing::warn!("missed-request log full: the cosigner stays behind");
            self.stats.lock().unwrap_or_else(|e| e.into_inner()).dropped += 1;
            return;
        }
        q.push_back((request, size));
    }

    /// How many requests are waiting.
    pub fn pending(&self) -> usize {
        self.queue().len()
    }

    /// What catching this member up has done so far.
    pub fn stats(&self) -> CatchUpStats {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replays every missed request, in order, over `link`, holding the member's turn so
    /// that two rounds never replay at once. Stops at the first request that does not get
    /// through (it and the rest stay queued). Once it returns `Ok`, everything missed so
    /// far has reached the cosigner: the caller's own request may follow.
    pub async fn catch_up(&self, link: &CosignerLink, timeout: Duration) -> Result<usize, LinkError> {
        let _turn = self.turn.lock().await;
        let started = tokio::time::Instant::now();
        let mut done = 0usize;
        loop {
            let next = self.queue().front().map(|(r, _)| r.clone());
            let Some(req) = next else { break };
            let reply = link.call(&req, timeout).await?;
            done += 1;
            let refused = match &reply {
                CosignerResponse::Refused { violations } => {
                    // Its policy or its state says no: it stays behind on that channel.
                    let tags: Vec<&str> = violations.iter().map(|v| v.tag.as_str()).collect();
                    tracing::warn!(cosigner = %link.name(), ?tags, "a replayed request was refused");
                    1
                }
                CosignerResponse::Error { kind, detail } => {
                    tracing::warn!(cosigner = %link.name(), ?kind, %detail, "a replayed request failed");
                    1
                }
                _ => 0,
            };
            // Counted as it happens: a caller may stop waiting for the rest.
            let mut s = self.stats.lock().unwrap_or_else(|e| e.into_inner());
            s.catch_ups += u64::from(done == 1);
            s.replayed += 1;
            s.refused += refused;
            s.longest_ms = s.longest_ms.max(started.elapsed().as_millis() as u64);
            drop(s);
            // Popped last: whoever sees the queue empty sees the counts too.
            self.queue().pop_front();
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
    fn the_log_keeps_order_and_its_bound() {
        let log = MissedLog::default();
        for n in 0..(MISSED_MAX as u64 + 3) {
            log.remember(req(n));
        }
        assert_eq!(log.pending(), MISSED_MAX);
        let q = log.queue();
        assert_eq!(q.front().map(|(r, _)| r), Some(&req(0)));
        assert_eq!(
            q.back().map(|(r, _)| r),
            Some(&req(MISSED_MAX as u64 - 1)),
            "beyond the bound new ones are not kept"
        );
    }

    #[test]
    fn only_state_changing_subjects_are_caught_up() {
        let channel = ApprovalSubject::Channel {
            channel: [2; 32],
            request: qls_protocol::ChannelRequest::ReleaseCommitmentSecret { commitment_number: 1 },
        };
        assert!(must_catch_up(&channel));
        let pay = ApprovalSubject::Node(NodeKeyRequest::ApprovePayment {
            payment_hash: [0; 32],
            amount_msat: 1,
            expires_at: 1,
            invoice: None,
            approval: None,
        });
        assert!(must_catch_up(&pay));
        let ecdh = ApprovalSubject::Node(NodeKeyRequest::Ecdh { other_key: vec![2; 33], tweak: None });
        assert!(!must_catch_up(&ecdh));
    }
}
