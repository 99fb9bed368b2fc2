//! A malicious coordinator: it holds the real coordinator's identity (so every cosigner
//! accepts its connection) and sends requests around the honest coordinator — old
//! requests replayed, revocations out of order — collecting whatever approvals it gets
//! and handing them to the key holders, as a compromised coordinator would.
//!
//! Must never: be mistaken for a test of the honest coordinator; it only reports what the
//! cosigners and key holders answered.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use qls_coordinator::cosigner_link::CosignerLink;
use qls_coordinator::quorum;
use qls_protocol::{ApprovalSubject, CosignerRequest, CosignerResponse};

use crate::harness::{Harness, HarnessError};

/// What the cosigners answered to one malicious subject.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttackOutcome {
    /// Policy tags named by the refusing cosigners.
    pub refused_tags: BTreeSet<String>,
    pub refusals: usize,
    pub approvals: usize,
    /// A key holder signed with the approvals collected: a policy failure.
    pub signed: bool,
    /// Cosigners that did not answer (down, partitioned).
    pub unreachable: usize,
    /// Each refusing cosigner's name and the tags it named.
    pub refused_by: Vec<(String, BTreeSet<String>)>,
}

pub struct MaliciousCoordinator {
    _endpoint: quinn::Endpoint,
    links: Vec<Arc<CosignerLink>>,
    /// The cosigners' names, in link order.
    names: Vec<String>,
    key_holders: Vec<usize>,
    threshold: usize,
    timeout: Duration,
}

impl MaliciousCoordinator {
    /// Links to every cosigner of `h` under the coordinator's identity; `key_holders` are
    /// 0-based indices; `threshold` approvals are what a key holder needs.
    pub fn new(h: &Harness, key_holders: Vec<usize>, threshold: usize) -> Result<Self, HarnessError> {
        let (endpoint, links) = quorum::make_links(&h.coordinator_config, h.coordinator_identity.clone())
            .map_err(|e| HarnessError::Setup(format!("malicious coordinator links: {e}")))?;
        let names = h.coordinator_config.cosigners.iter().map(|c| c.name.clone()).collect();
        Ok(Self {
            _endpoint: endpoint,
            links,
            names,
            key_holders,
            threshold,
            timeout: h.coordinator_config.request_timeout,
        })
    }

    /// Approvals a key holder needs.
    pub fn threshold(&self) -> usize {
        self.threshold
    }

    /// Sends `req` to cosigner `i` alone (0-based), as a coordinator that keeps the others
    /// in the dark would.
    pub async fn send_to(&self, i: usize, req: &CosignerRequest) -> Result<CosignerResponse, String> {
        let link = self.links.get(i).ok_or_else(|| format!("no cosigner {i}"))?;
        link.call(req, self.timeout).await.map_err(|e| e.to_string())
    }

    /// Asks every cosigner to approve `subject`; with any approvals, asks each key holder
    /// to sign with them.
    pub async fn try_subject(&self, subject: ApprovalSubject) -> AttackOutcome {
        let mut out = AttackOutcome::default();
        let req = CosignerRequest::Approve { subject: subject.clone(), holder_keys: None };
        let replies = futures::future::join_all(self.links.iter().map(|l| l.call(&req, self.timeout))).await;
        let mut approvals = Vec::new();
        for (i, r) in replies.into_iter().enumerate() {
            match r {
                Ok(CosignerResponse::Approved { approval, .. }) => approvals.push(approval),
                Ok(CosignerResponse::Refused { violations }) => {
                    out.refusals += 1;
                    let tags: BTreeSet<String> = violations.into_iter().map(|v| v.tag).collect();
                    out.refused_tags.extend(tags.iter().cloned());
                    out.refused_by.push((self.names.get(i).cloned().unwrap_or_default(), tags));
                }
                Ok(_) => {}
                Err(_) => out.unreachable += 1,
            }
        }
        out.approvals = approvals.len();
        if approvals.is_empty() {
            return out;
        }
        let sign = CosignerRequest::KeyHolderSign { subject, approvals };
        for i in &self.key_holders {
            if let Some(link) = self.links.get(*i) {
                if let Ok(CosignerResponse::KeyHolderSigned(_)) = link.call(&sign, self.timeout).await {
                    out.signed = true;
                }
            }
        }
        out
    }
}
