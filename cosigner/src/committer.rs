//! A long-lived thread per cosigner that runs the nonce-consumption commits, so a signing
//! handler can compute its shares while the commit's fsync runs, without spawning a
//! thread per request. The thread ends (releasing the store) when the cosigner's state
//! is dropped.
//!
//! Must never: report success before `Store::consume_nonces` has returned `Ok`.

use std::sync::mpsc;
use std::sync::Arc;

use qls_protocol::KeyId;

use crate::store::{Store, StoreError};

struct Job {
    key_id: KeyId,
    ids: Vec<u64>,
    reply: mpsc::SyncSender<Result<(), StoreError>>,
}

pub struct Committer {
    jobs: mpsc::Sender<Job>,
}

/// A commit under way; [`Pending::wait`] returns its outcome.
pub struct Pending(mpsc::Receiver<Result<(), StoreError>>);

impl Pending {
    pub fn wait(self) -> Result<(), StoreError> {
        self.0.recv().unwrap_or_else(|_| Err(StoreError::Db("nonce committer stopped".into())))
    }
}

impl Committer {
    pub fn spawn(store: Arc<Store>) -> Self {
        let (jobs, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("nonce-committer".into())
            .spawn(move || {
                for job in rx {
                    let _ = job.reply.send(store.consume_nonces(&job.key_id, &job.ids));
                }
            })
            .expect("spawning the nonce committer thread");
        Self { jobs }
    }

    /// Starts consuming `ids` of `key_id` durably.
    pub fn submit(&self, key_id: KeyId, ids: Vec<u64>) -> Pending {
        let (reply, rx) = mpsc::sync_channel(1);
        // If the thread is gone, `reply` is dropped with the job and `wait` reports it.
        let _ = self.jobs.send(Job { key_id, ids, reply });
        Pending(rx)
    }
}
