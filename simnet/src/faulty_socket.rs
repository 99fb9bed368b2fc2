//! A fault-injecting UDP socket under quinn (`Endpoint::new_with_abstract_socket`): per
//! peer address, packet loss, added latency with jitter, and partitions, so QUIC's own
//! retransmission, timeouts and reconnection are what the simnet exercises.
//!
//! Loss and partitions apply in both directions (sends are dropped; received datagrams
//! from the peer are filtered out); latency applies to sends. Must never: touch traffic
//! of peers with no fault set, or block the endpoint driver (delays run on timer tasks).

use std::collections::HashMap;
use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

/// Impairments of one link.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LinkFaults {
    /// Probability in 0..=1 that a datagram is dropped, each direction.
    pub loss: f64,
    pub latency_ms: u64,
    pub jitter_ms: u64,
    /// Drop everything, both directions.
    pub partitioned: bool,
}

/// Counters of what the socket did.
#[derive(Debug, Default)]
pub struct FaultStats {
    pub dropped_sent: AtomicU64,
    pub dropped_received: AtomicU64,
    pub delayed: AtomicU64,
}

/// Shared control over a [`FaultySocket`]'s per-peer faults.
pub struct FaultController {
    links: Mutex<HashMap<SocketAddr, LinkFaults>>,
    rng: Mutex<ChaCha20Rng>,
    pub stats: FaultStats,
}

impl FaultController {
    pub fn new(seed: u64) -> Arc<Self> {
        Arc::new(Self {
            links: Mutex::default(),
            rng: Mutex::new(ChaCha20Rng::seed_from_u64(seed)),
            stats: FaultStats::default(),
        })
    }

    pub fn set(&self, peer: SocketAddr, faults: LinkFaults) {
        self.links.lock().unwrap_or_else(|p| p.into_inner()).insert(peer, faults);
    }

    pub fn heal(&self, peer: SocketAddr) {
        self.links.lock().unwrap_or_else(|p| p.into_inner()).remove(&peer);
    }

    fn faults(&self, peer: &SocketAddr) -> Option<LinkFaults> {
        self.links.lock().unwrap_or_else(|p| p.into_inner()).get(peer).copied()
    }

    fn drops(&self, f: &LinkFaults) -> bool {
        f.partitioned || (f.loss > 0.0 && self.rng.lock().unwrap_or_else(|p| p.into_inner()).gen_bool(f.loss.min(1.0)))
    }

    fn delay(&self, f: &LinkFaults) -> Duration {
        let jitter = if f.jitter_ms > 0 {
            self.rng.lock().unwrap_or_else(|p| p.into_inner()).gen_range(0..=f.jitter_ms)
        } else {
            0
        };
        Duration::from_millis(f.latency_ms + jitter)
    }
}

/// A real UDP socket with faults applied per peer.
pub struct FaultySocket {
    inner: Arc<dyn AsyncUdpSocket>,
    ctl: Arc<FaultController>,
}

impl fmt::Debug for FaultySocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FaultySocket")
    }
}

impl FaultySocket {
    /// Binds a loopback UDP socket and wraps it.
    pub fn bind_loopback(ctl: Arc<FaultController>) -> io::Result<Arc<Self>> {
        let std = std::net::UdpSocket::bind("127.0.0.1:0")?;
        let inner = quinn::Runtime::wrap_udp_socket(&quinn::TokioRuntime, std)?;
        Ok(Arc::new(Self { inner, ctl }))
    }
}

impl AsyncUdpSocket for FaultySocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.inner.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        let Some(f) = self.ctl.faults(&transmit.destination) else { return self.inner.try_send(transmit) };
        if self.ctl.drops(&f) {
            self.ctl.stats.dropped_sent.fetch_add(1, Ordering::Relaxed);
            return Ok(()); // lost on the wire, as far as QUIC can tell
        }
        let delay = self.ctl.delay(&f);
        if delay.is_zero() {
            return self.inner.try_send(transmit);
        }
        self.ctl.stats.delayed.fetch_add(1, Ordering::Relaxed);
        let (inner, contents) = (self.inner.clone(), transmit.contents.to_vec());
        let (destination, ecn, segment_size, src_ip) =
            (transmit.destination, transmit.ecn, transmit.segment_size, transmit.src_ip);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            // A send that fails now is a lost datagram; QUIC recovers.
            let _ = inner.try_send(&Transmit { destination, ecn, contents: &contents, segment_size, src_ip });
        });
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        loop {
            let n = match self.inner.poll_recv(cx, bufs, meta) {
                Poll::Ready(Ok(n)) => n,
                other => return other,
            };
            let mut kept = 0;
            for i in 0..n {
                let dropped = self.ctl.faults(&meta[i].addr).is_some_and(|f| self.ctl.drops(&f));
                if dropped {
                    self.ctl.stats.dropped_received.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                if kept != i {
                    let len = meta[i].len;
                    let (head, tail) = bufs.split_at_mut(i);
                    head[kept][..len].copy_from_slice(&tail[0][..len]);
                    meta[kept] = meta[i];
                }
                kept += 1;
            }
            if kept > 0 {
                return Poll::Ready(Ok(kept));
            }
            // Everything was dropped: read again (the inner socket re-registers the waker
            // when it has nothing).
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.inner.max_transmit_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}
