//! DKG orchestration: relays the three FROST DKG rounds between all configured
//! cosigners. Participants are named by the certificates they present on their pinned
//! connections; round-2 packages pass through here sealed, so the coordinator relays
//! what it cannot read. Every cosigner must finish with the same group key.
//!
//! Must never: proceed with a subset of cosigners, or report a key that not every
//! cosigner reported.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;

use qls_protocol::*;

use crate::cosigner_link::{CosignerLink, LinkError};

#[derive(Debug, thiserror::Error)]
pub enum DkgRunError {
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error("cosigner {cosigner} failed DKG {step}: {detail}")]
    Cosigner { cosigner: String, step: &'static str, detail: String },
    #[error("cosigners finished with different group keys; the DKG is void")]
    KeyMismatch,
    #[error("threshold {threshold} is not in 2..={n}")]
    BadThreshold { threshold: u16, n: usize },
}

async fn all<F, T>(links: &[Arc<CosignerLink>], f: impl Fn(Arc<CosignerLink>) -> F) -> Result<Vec<T>, DkgRunError>
where
    F: std::future::Future<Output = Result<T, DkgRunError>>,
{
    join_all(links.iter().cloned().map(f)).await.into_iter().collect()
}

fn unexpected(cosigner: &str, step: &'static str, r: CosignerResponse) -> DkgRunError {
    let detail = match r {
        CosignerResponse::Error { kind, detail } => format!("{kind:?}: {detail}"),
        other => format!("unexpected reply {other:?}"),
    };
    DkgRunError::Cosigner { cosigner: cosigner.into(), step, detail }
}

/// Runs a t-of-n DKG among every linked cosigner and returns the group key.
pub async fn run_dkg(links: &[Arc<CosignerLink>], threshold: u16, timeout: Duration) -> Result<KeyInfo, DkgRunError> {
    if threshold < 2 || threshold as usize > links.len() {
        return Err(DkgRunError::BadThreshold { threshold, n: links.len() });
    }
    let mut session = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut session);
    let certs = all(links, |l| async move { Ok(l.peer_cert(timeout).await?) }).await?;
    let participants: Vec<DkgParticipant> = certs.into_iter().map(|cert_der| DkgParticipant { cert_der }).collect();

    let req = CosignerRequest::DkgRound1 { session, threshold, participants };
    let round1 = all(links, |l| {
        let req = req.clone();
        async move {
            match l.call(&req, timeout).await? {
                CosignerResponse::DkgRound1(m) => Ok(m),
                other => Err(unexpected(l.name(), "round 1", other)),
            }
        }
    })
    .await?;

    let req = CosignerRequest::DkgRound2 { session, round1 };
    let sealed: Vec<SealedPackage> = all(links, |l| {
        let req = req.clone();
        async move {
            match l.call(&req, timeout).await? {
                CosignerResponse::DkgRound2 { sealed } => Ok(sealed),
                other => Err(unexpected(l.name(), "round 2", other)),
            }
        }
    })
    .await?
    .into_iter()
    .flatten()
    .collect();
    let mut by_receiver: BTreeMap<Fingerprint, Vec<SealedPackage>> = BTreeMap::new();
    for p in sealed {
        by_receiver.entry(p.receiver).or_default().push(p);
    }

    let keys = all(links, |l| {
        let req = CosignerRequest::DkgFinish {
            session,
            sealed: by_receiver.get(&l.fingerprint()).cloned().unwrap_or_default(),
        };
        async move {
            match l.call(&req, timeout).await? {
                CosignerResponse::DkgFinished(k) => Ok(k),
                other => Err(unexpected(l.name(), "finish", other)),
            }
        }
    })
    .await?;
    let first = keys[0].clone();
    if keys.iter().any(|k| k.key_id != first.key_id || k.public_key_package != first.public_key_package) {
        return Err(DkgRunError::KeyMismatch);
    }
    Ok(first)
}
