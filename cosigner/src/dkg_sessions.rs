//! DKG sessions in progress: secret round state kept in memory only, bounded in number
//! and in lifetime. A cosigner that restarts mid-DKG forgets the session and the DKG is
//! run again; nothing half-made is ever persisted.
//!
//! Must never: hold more than [`MAX_DKG_SESSIONS`] sessions or keep one past [`DKG_SESSION_TTL`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use qls_protocol::{Fingerprint, SessionId};
use qls_signer_core::dkg::{DkgSetup, Round1State, Round2State};

pub const MAX_DKG_SESSIONS: usize = 4;
pub const DKG_SESSION_TTL: Duration = Duration::from_secs(300);

pub enum DkgPhase {
    /// Round 1 sent; waiting for everyone's round-1 messages.
    AwaitRound2 { setup: DkgSetup, state: Round1State, certs: BTreeMap<Fingerprint, Vec<u8>> },
    /// Round 2 sent; waiting for the sealed packages.
    AwaitFinish(Round2State),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DkgSessionError {
    #[error("too many DKG sessions in progress (limit {MAX_DKG_SESSIONS})")]
    TooMany,
    #[error("DKG session already exists")]
    Exists,
}

#[derive(Default)]
pub struct DkgSessions {
    inner: Mutex<HashMap<SessionId, (Instant, DkgPhase)>>,
}

impl DkgSessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, (Instant, DkgPhase)>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a session (round 1 done).
    pub fn start(&self, session: SessionId, phase: DkgPhase) -> Result<(), DkgSessionError> {
        let mut map = self.lock();
        map.retain(|_, (t, _)| t.elapsed() < DKG_SESSION_TTL);
        if map.contains_key(&session) {
            return Err(DkgSessionError::Exists);
        }
        if map.len() >= MAX_DKG_SESSIONS {
            return Err(DkgSessionError::TooMany);
        }
        map.insert(session, (Instant::now(), phase));
        Ok(())
    }

    /// Moves a session to its next phase (keeps its start time).
    pub fn advance(&self, session: SessionId, started: Instant, phase: DkgPhase) {
        self.lock().insert(session, (started, phase));
    }

    /// Takes a live session out; the caller puts it back with [`Self::advance`].
    pub fn take(&self, session: &SessionId) -> Option<(Instant, DkgPhase)> {
        self.lock().remove(session).filter(|(t, _)| t.elapsed() < DKG_SESSION_TTL)
    }
}
