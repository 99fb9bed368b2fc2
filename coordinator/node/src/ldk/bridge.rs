//! The bridge between LDK's synchronous signer traits and the coordinator's async node
//! API: a dedicated Tokio runtime owns one pinned [`NodeClient`]; LDK threads either wait
//! for a round (blocking calls) or start it and come back later (LDK's async signing:
//! the trait method returns `Err(())`, the round runs in the background, and once its
//! result is stored the node calls `signer_unblocked` and LDK asks again).
//!
//! Results are keyed by the request digest (the same canonical digest cosigners approve),
//! so LDK's retry of the same request picks up exactly the result of that request.
//!
//! Requests about one channel, blocking or async, go through one ordered queue per
//! channel and reach the coordinator one at a time, in the order LDK made them: every
//! cosigner must apply a channel's requests in the same order or their state digests
//! part ways.
//!
//! Must never: return a result for a request other than the one asked, hold a result for
//! more than one pick-up, or run a quorum round on an LDK thread's own runtime.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use qls_protocol::quic::Identity;
use qls_protocol::{
    ApprovalSubject, ChannelKeysId, ChannelRequest, Fingerprint, KeyHolderOutput, NodeKeyRequest, SweepRequest,
};
use qls_signer_core::channel::request_digest;

use crate::client::{ClientError, NodeClient};

#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("cannot start the signer runtime: {0}")]
    Runtime(std::io::Error),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("the signer runtime stopped")]
    Stopped,
}

enum Slot {
    InFlight,
    Done(Result<KeyHolderOutput, RoundError>),
    /// Refused by policy: answered again without a new round (LDK keeps asking).
    Refused(String),
}

/// Why a round gave no output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoundError {
    /// The quorum refused (policy): asking again changes nothing.
    #[error("refused: {0}")]
    Refused(String),
    /// Unreachable, timed out, diverged, coordinator error: may work later.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl From<ClientError> for RoundError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Refused(_) => RoundError::Refused(e.to_string()),
            other => RoundError::Unavailable(other.to_string()),
        }
    }
}

#[derive(Default)]
struct Pending {
    slots: HashMap<[u8; 32], Slot>,
    /// Results stored since the node last called [`QuorumBridge::wait_unblocked`].
    ready: usize,
}

/// Channel rounds this bridge saw end, by outcome (for operators and tests).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RoundCounts {
    pub signed: u64,
    pub failed: u64,
}

type Done = Box<dyn FnOnce(Result<KeyHolderOutput, RoundError>) + Send>;

struct Job {
    request: ChannelRequest,
    done: Done,
}

pub struct QuorumBridge {
    runtime: Option<tokio::runtime::Runtime>,
    client: Arc<NodeClient>,
    pending: Arc<(Mutex<Pending>, Condvar)>,
    queues: Mutex<HashMap<ChannelKeysId, tokio::sync::mpsc::UnboundedSender<Job>>>,
    counts: Arc<Mutex<RoundCounts>>,
    /// Funding txid → channel, for the channels whose setup this node sent: what
    /// [`super::QuorumChainWatch`] looks for in blocks.
    /// Funding txid → (output index, channel).
    fundings: Mutex<HashMap<[u8; 32], (u32, ChannelKeysId)>>,
}

impl QuorumBridge {
    /// Starts the runtime and connects to the coordinator pinned by `coordinator_pin`.
    pub fn connect(
        identity: &Identity,
        coordinator: std::net::SocketAddr,
        coordinator_pin: Fingerprint,
        timeout: Duration,
    ) -> Result<Arc<Self>, BridgeError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("qls-ldk-signer")
            .enable_all()
            .build()
            .map_err(BridgeError::Runtime)?;
        let client = runtime.block_on(NodeClient::connect(identity, coordinator, coordinator_pin, timeout))?;
        Ok(Arc::new(Self {
            runtime: Some(runtime),
            client: Arc::new(client),
            pending: Default::default(),
            queues: Default::default(),
            counts: Default::default(),
            fundings: Default::default(),
        }))
    }

    /// Watches for `channel`'s funding output `txid:vout` (the proofs of its
    /// confirmation and of its spend go to the quorum).
    pub fn watch_funding(&self, txid: [u8; 32], vout: u32, channel: ChannelKeysId) {
        self.fundings.lock().unwrap_or_else(|e| e.into_inner()).insert(txid, (vout, channel));
    }

    /// The funding outputs watched for: txid → (output index, channel).
    pub fn watched_fundings(&self) -> HashMap<[u8; 32], (u32, ChannelKeysId)> {
        self.fundings.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        self.runtime.as_ref().expect("runtime lives until drop").handle()
    }

    /// Runs `f` on the bridge's runtime and waits for it (from any thread, even one inside
    /// another runtime).
    pub fn wait<T, F>(&self, f: impl FnOnce(Arc<NodeClient>) -> F) -> Result<T, BridgeError>
    where
        T: Send + 'static,
        F: Future<Output = T> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let fut = f(self.client.clone());
        self.handle().spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().map_err(|_| BridgeError::Stopped)
    }

    /// Queues `request` behind the channel's earlier requests; `done` gets the result.
    fn enqueue(&self, channel: ChannelKeysId, request: ChannelRequest, done: Done) {
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        let mut job = Job { request, done };
        if let Some(q) = queues.get(&channel) {
            match q.send(job) {
                Ok(()) => return,
                Err(tokio::sync::mpsc::error::SendError(back)) => job = back,
            }
        }
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Job>();
        let client = self.client.clone();
        let counts = self.counts.clone();
        self.handle().spawn(async move {
            while let Some(job) = rx.recv().await {
                let r = client.channel(channel, job.request).await.map(|(o, _)| o).map_err(RoundError::from);
                {
                    let mut c = counts.lock().unwrap_or_else(|e| e.into_inner());
                    match r {
                        Ok(_) => c.signed += 1,
                        Err(_) => c.failed += 1,
                    }
                }
                (job.done)(r);
            }
        });
        // A fresh queue's receiver is alive: this send cannot fail.
        let _ = tx.send(job);
        queues.insert(channel, tx);
    }

    /// A channel request, waiting for the round (and for the channel's earlier requests).
    pub fn channel_blocking(
        &self,
        channel: ChannelKeysId,
        request: ChannelRequest,
    ) -> Result<KeyHolderOutput, RoundError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.enqueue(
            channel,
            request,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        rx.recv().map_err(|_| RoundError::Unavailable(BridgeError::Stopped.to_string()))?
    }

    /// A node-key request, waiting for the round.
    pub fn node_key_blocking(&self, request: NodeKeyRequest) -> Result<KeyHolderOutput, String> {
        self.wait(move |c| async move { c.node_key(request).await.map(|(o, _)| o) })
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }

    /// A batched sweep, waiting for the round.
    pub fn sweep_blocking(&self, sweep: SweepRequest) -> Result<KeyHolderOutput, String> {
        self.wait(move |c| async move { c.sweep(sweep).await.map(|(o, _)| o) })
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }

    /// LDK's async pattern for a channel request: the stored result if the round for this
    /// exact request finished (taken, once), else start it (if not running) and
    /// `Err(None)`: the caller returns `Err(())` to LDK. `Err(Some(reason))` when the
    /// finished round was refused (remembered: answered again without a new round). A
    /// round that found the quorum unavailable is started again on LDK's next call.
    pub fn channel_async(
        &self,
        channel: ChannelKeysId,
        request: ChannelRequest,
    ) -> Result<KeyHolderOutput, Option<String>> {
        let key = request_digest(&ApprovalSubject::Channel { channel, request: request.clone() });
        let mut p = self.pending.0.lock().unwrap_or_else(|e| e.into_inner());
        match p.slots.remove(&key) {
            Some(Slot::Done(Ok(out))) => return Ok(out),
            Some(Slot::Done(Err(RoundError::Refused(reason)))) | Some(Slot::Refused(reason)) => {
                p.slots.insert(key, Slot::Refused(reason.clone()));
                return Err(Some(reason));
            }
            Some(Slot::Done(Err(RoundError::Unavailable(reason)))) => {
                // Retry: a new round now; the round's own timeout paces the retries.
                tracing::warn!(channel = %hex::encode(&channel[..8]), "quorum unavailable, retrying: {reason}");
            }
            Some(Slot::InFlight) => {
                p.slots.insert(key, Slot::InFlight);
                return Err(None);
            }
            None => {}
        }
        p.slots.insert(key, Slot::InFlight);
        drop(p);
        let pending = self.pending.clone();
        self.enqueue(
            channel,
            request,
            Box::new(move |r| {
                let (lock, cvar) = &*pending;
                let mut p = lock.lock().unwrap_or_else(|e| e.into_inner());
                p.slots.insert(key, Slot::Done(r));
                p.ready += 1;
                cvar.notify_all();
            }),
        );
        Err(None)
    }

    /// Channel rounds ended so far, signed or failed.
    pub fn round_counts(&self) -> RoundCounts {
        *self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Rounds started by the async pattern and not finished yet.
    pub fn in_flight(&self) -> usize {
        let p = self.pending.0.lock().unwrap_or_else(|e| e.into_inner());
        p.slots.values().filter(|s| matches!(s, Slot::InFlight)).count()
    }

    /// Waits up to `timeout` until at least one async round finished since the last call;
    /// true if one did. When it returns true the node must call
    /// `ChannelManager::signer_unblocked(None)` and `ChainMonitor::signer_unblocked(None)`.
    pub fn wait_unblocked(&self, timeout: Duration) -> bool {
        let (lock, cvar) = &*self.pending;
        let p = lock.lock().unwrap_or_else(|e| e.into_inner());
        let (mut p, _) = cvar.wait_timeout_while(p, timeout, |p| p.ready == 0).unwrap_or_else(|e| e.into_inner());
        let any = p.ready > 0;
        p.ready = 0;
        any
    }
}

impl Drop for QuorumBridge {
    fn drop(&mut self) {
        // Dropping a runtime from inside another one panics; never block on shutdown.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
