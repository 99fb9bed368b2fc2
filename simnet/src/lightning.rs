//! The seeded Lightning workload of a scenario: the QLS node's channels (capacity, type,
//! who funded them) and the stream of events over them — payments sent, received and
//! forwarded (some failed back), channel opens, cooperative closes and force closes, a
//! compromised node's drain attempts and a malicious coordinator's replays. The
//! generator keeps its own ledger of both balances per channel, so every payment it emits
//! is payable when the events before it have run; one that is not (no channel with the
//! balance) is emitted as `Unroutable` so the event count never depends on luck.
//!
//! Must never: depend on anything but the scenario and its seed.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use crate::scenario::{NetworkSection, WorkloadSection};

/// Balance a side keeps beyond a payment (fees, reserve), msat.
pub const HEADROOM_MSAT: u64 = 20_000_000;
/// Routing fee the node earns on a forward: 1 sat + 100 ppm.
pub fn forward_fee_msat(out_msat: u64) -> u64 {
    1_000 + out_msat / 10_000
}
/// CLTV expiry of the HTLCs we receive; forwards go out this many blocks earlier.
pub const CLTV_IN: u32 = 600_100;
pub const CLTV_DELTA: u32 = 40;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelPlan {
    pub capacity_sat: u64,
    pub taproot: bool,
    /// We funded it (we start with the capacity, the counterparty with nothing).
    pub outbound: bool,
}

/// One event of the Lightning workload. Channels are indices into the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LnEvent {
    Open {
        channel: usize,
    },
    /// The node pays (operator-approved) over `channel`.
    Send {
        channel: usize,
        amount_msat: u64,
        preimage: [u8; 32],
        fail: bool,
    },
    /// The counterparty pays us.
    Receive {
        channel: usize,
        amount_msat: u64,
        preimage: [u8; 32],
        fail: bool,
    },
    /// In on `from`, out on `to` (`amount_msat` out, plus the fee in).
    Forward {
        from: usize,
        to: usize,
        amount_msat: u64,
        preimage: [u8; 32],
        fail: bool,
    },
    Close {
        channel: usize,
    },
    ForceClose {
        channel: usize,
    },
    /// A compromised node asks for a counterparty commitment moving `amount_msat` of ours
    /// to the counterparty for nothing.
    Drain {
        channel: usize,
        amount_msat: u64,
    },
    /// A malicious coordinator replays an old request of `channel` to every cosigner and
    /// sends a revocation out of order.
    Replay {
        channel: usize,
    },
    /// A payment of this kind found no channel with the balance.
    Unroutable {
        kind: &'static str,
    },
}

impl LnEvent {
    pub fn name(&self) -> &'static str {
        match self {
            LnEvent::Open { .. } => "open",
            LnEvent::Send { .. } => "send",
            LnEvent::Receive { .. } => "receive",
            LnEvent::Forward { .. } => "forward",
            LnEvent::Close { .. } => "close",
            LnEvent::ForceClose { .. } => "force-close",
            LnEvent::Drain { .. } => "drain-attempt",
            LnEvent::Replay { .. } => "coordinator-replay",
            LnEvent::Unroutable { kind } => match *kind {
                "send" => "unroutable-send",
                "receive" => "unroutable-receive",
                "forward" => "unroutable-forward",
                "close" => "unroutable-close",
                "force-close" => "unroutable-force-close",
                "drain-attempt" => "unroutable-drain-attempt",
                _ => "unroutable-coordinator-replay",
            },
        }
    }

    /// The channels the event touches, in lock order (ascending).
    pub fn channels(&self) -> Vec<usize> {
        match self {
            LnEvent::Open { channel }
            | LnEvent::Send { channel, .. }
            | LnEvent::Receive { channel, .. }
            | LnEvent::Close { channel }
            | LnEvent::ForceClose { channel }
            | LnEvent::Drain { channel, .. }
            | LnEvent::Replay { channel } => vec![*channel],
            LnEvent::Forward { from, to, .. } => {
                let mut v = vec![*from, *to];
                v.sort_unstable();
                v
            }
            LnEvent::Unroutable { .. } => vec![],
        }
    }
}

/// The generator's view of one channel.
#[derive(Debug, Clone)]
struct Ledger {
    ours: u64,
    theirs: u64,
    open: bool,
    /// Taproot channels' HTLC signatures are FROST: usable after open like legacy ones.
    updates: usize,
}

/// A payment size in msat from the scenario's distribution.
fn size_msat(w: &WorkloadSection, rng: &mut ChaCha20Rng) -> u64 {
    let sat = match w.payment_dist.as_str() {
        "fixed" => w.payment_sat as f64,
        "uniform" => rng.gen_range(w.payment_min_sat..=w.payment_max_sat) as f64,
        _ => {
            // Box-Muller: a standard normal from two uniforms.
            let (u1, u2): (f64, f64) = (rng.gen_range(f64::EPSILON..1.0), rng.gen());
            let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
            w.payment_sat as f64 * (w.payment_sigma * z).exp()
        }
    };
    (sat.round() as u64).clamp(w.payment_min_sat, w.payment_max_sat) * 1_000
}

/// The channel plan and the event stream (`Lightning` events only, in order).
pub fn generate(seed: u64, net: &NetworkSection, w: &WorkloadSection) -> (Vec<ChannelPlan>, Vec<LnEvent>) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed ^ 0x6c6e_6576_656e_7473);
    let total = net.channels + w.opens;
    let plan: Vec<ChannelPlan> = (0..total)
        .map(|_| ChannelPlan {
            capacity_sat: rng.gen_range(net.capacity_sat[0]..=net.capacity_sat[1]),
            taproot: rng.gen_bool(net.taproot_share),
            outbound: rng.gen_bool(net.outbound_share),
        })
        .collect();
    let mut ledger: Vec<Ledger> = plan
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let value = p.capacity_sat * 1_000;
            let (ours, theirs) = if p.outbound { (value, 0) } else { (0, value) };
            Ledger { ours, theirs, open: i < net.channels, updates: 0 }
        })
        .collect();

    // Opens, closes and force closes at even spacing among the payments; drain attempts
    // and replays at seeded positions.
    let payments = w.payment_count();
    let mut kinds: Vec<u8> = vec![0; payments];
    let spread = |kinds: &mut Vec<u8>, n: usize, k: u8| {
        for j in 0..n {
            let at = ((j + 1) * kinds.len()) / (n + 1);
            kinds.insert(at.min(kinds.len()), k);
        }
    };
    spread(&mut kinds, w.opens, 1);
    spread(&mut kinds, w.closes, 2);
    spread(&mut kinds, w.force_closes, 3);
    for (n, k) in [(w.drains(), 4u8), (w.replays(), 5u8)] {
        for _ in 0..n {
            let at = rng.gen_range(0..=kinds.len());
            kinds.insert(at, k);
        }
    }
    let mut next_open = net.channels;
    let mut events = Vec::with_capacity(kinds.len());
    let pick_open = |ledger: &[Ledger], rng: &mut ChaCha20Rng, ok: &dyn Fn(&Ledger) -> bool| -> Option<usize> {
        for _ in 0..16 {
            let i = rng.gen_range(0..ledger.len());
            if ledger[i].open && ok(&ledger[i]) {
                return Some(i);
            }
        }
        None
    };
    for k in kinds {
        let ev = match k {
            1 => {
                let channel = next_open;
                next_open += 1;
                ledger[channel].open = true;
                LnEvent::Open { channel }
            }
            2 | 3 => match pick_open(&ledger, &mut rng, &|_| true) {
                Some(channel) => {
                    ledger[channel].open = false;
                    if k == 2 {
                        LnEvent::Close { channel }
                    } else {
                        LnEvent::ForceClose { channel }
                    }
                }
                None => LnEvent::Unroutable { kind: if k == 2 { "close" } else { "force-close" } },
            },
            4 => match pick_open(&ledger, &mut rng, &|l| l.ours > HEADROOM_MSAT) {
                Some(channel) => LnEvent::Drain { channel, amount_msat: ledger[channel].ours / 2 },
                None => LnEvent::Unroutable { kind: "drain-attempt" },
            },
            5 => match pick_open(&ledger, &mut rng, &|l| l.updates >= 2) {
                Some(channel) => LnEvent::Replay { channel },
                None => LnEvent::Unroutable { kind: "coordinator-replay" },
            },
            _ => {
                let amount = size_msat(w, &mut rng);
                let preimage: [u8; 32] = rng.gen();
                let fail = rng.gen_bool(w.fail_share);
                let r: f64 = rng.gen();
                let need = amount + HEADROOM_MSAT;
                if r < w.forward_share {
                    let fee = forward_fee_msat(amount);
                    let from = pick_open(&ledger, &mut rng, &|l| l.theirs >= need + fee);
                    let to = pick_open(&ledger, &mut rng, &|l| l.ours >= need);
                    match (from, to) {
                        (Some(from), Some(to)) if from != to => {
                            ledger[from].updates += 1;
                            ledger[to].updates += 1;
                            if !fail {
                                ledger[from].theirs -= amount + fee;
                                ledger[from].ours += amount + fee;
                                ledger[to].ours -= amount;
                                ledger[to].theirs += amount;
                            }
                            LnEvent::Forward { from, to, amount_msat: amount, preimage, fail }
                        }
                        _ => LnEvent::Unroutable { kind: "forward" },
                    }
                } else if r < w.forward_share + w.receive_share {
                    match pick_open(&ledger, &mut rng, &|l| l.theirs >= need) {
                        Some(channel) => {
                            ledger[channel].updates += 1;
                            if !fail {
                                ledger[channel].theirs -= amount;
                                ledger[channel].ours += amount;
                            }
                            LnEvent::Receive { channel, amount_msat: amount, preimage, fail }
                        }
                        None => LnEvent::Unroutable { kind: "receive" },
                    }
                } else {
                    match pick_open(&ledger, &mut rng, &|l| l.ours >= need) {
                        Some(channel) => {
                            ledger[channel].updates += 1;
                            if !fail {
                                ledger[channel].ours -= amount;
                                ledger[channel].theirs += amount;
                            }
                            LnEvent::Send { channel, amount_msat: amount, preimage, fail }
                        }
                        None => LnEvent::Unroutable { kind: "send" },
                    }
                }
            }
        };
        events.push(ev);
    }
    (plan, events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;

    const TEXT: &str = r#"
name = "t"
seed = 9
[quorum]
cosigners = 3
threshold = 2
[network]
channels = 20
taproot_share = 0.3
[workload]
payments = 500
fail_share = 0.1
drain_share = 0.02
replay_share = 0.02
opens = 3
closes = 2
force_closes = 1
"#;

    #[test]
    fn same_seed_same_events_and_balances_never_go_negative() {
        let s = Scenario::parse(TEXT, "t").unwrap();
        let net = s.network.as_ref().unwrap();
        let (pa, a) = generate(s.seed, net, &s.workload);
        let (pb, b) = generate(s.seed, net, &s.workload);
        assert_eq!((pa.clone(), a.clone()), (pb, b));
        assert_eq!(a.len(), s.workload.events());
        assert_eq!(pa.len(), 23);
        assert!(pa.iter().any(|p| p.taproot) && pa.iter().any(|p| !p.taproot));
        let count = |n: &str| a.iter().filter(|e| e.name() == n).count();
        assert_eq!((count("open"), count("close"), count("force-close")), (3, 2, 1));
        assert_eq!(
            count("drain-attempt")
                + a.iter().filter(|e| matches!(e, LnEvent::Unroutable { kind: "drain-attempt" })).count(),
            10
        );
        assert!(count("forward") > 100 && count("send") > 20 && count("receive") > 50, "{a:?}");
        let (_, other) = generate(s.seed + 1, net, &s.workload);
        assert_ne!(a, other);
    }
}
