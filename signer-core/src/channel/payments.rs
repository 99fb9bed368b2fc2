//! The node-wide payment index a cosigner keeps across channels: per payment hash, what
//! came in (incoming HTLCs irrevocably committed to us), what went out (HTLCs we offered),
//! what the operator approved paying, and whether the payment settled.
//!
//! It backs the routing-balance rule (an HTLC we offer is covered by incoming HTLCs of the
//! same hash or by an approved payment) and the invoice rules (never overpaid, never paid
//! twice). Bounded: at most `max_payments` entries; a new entry beyond that is refused.
//!
//! Must never: grow without bound, or let an outgoing HTLC through without either cover.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use qls_protocol::HtlcInfo;

use super::velocity::Velocity;
use crate::policy::{ChannelPolicy, PolicyTag, Violation};

pub type PaymentHash = [u8; 32];

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentEntry {
    pub incoming_msat: u64,
    /// The earliest expiry among incoming HTLCs of this hash (what a forward must beat).
    pub incoming_min_cltv: Option<u32>,
    pub outgoing_msat: u64,
    pub approved_msat: Option<u64>,
    /// When the approval (or its invoice) expires, unix seconds.
    pub expires_at: Option<u64>,
    pub settled: bool,
    /// When the payment settled (the cosigner's clock): a forward's entry is kept for
    /// [`SETTLED_RETENTION_SECS`] after, while its incoming HTLC may still be on a
    /// commitment (forgetting `settled` would let it be failed back).
    pub settled_at: Option<u64>,
}

/// How long a settled forward's entry is kept: longer than any HTLC's expiry lasts (2016
/// blocks), after which the incoming HTLC is resolved on chain or gone.
pub const SETTLED_RETENTION_SECS: u64 = 21 * 86_400;

impl PaymentEntry {
    /// Whether forgetting this entry changes no future decision: a forward with nothing
    /// incoming left (a fresh entry judges the same), or an approval past its expiry (it
    /// cannot be approved again, so nothing more can be paid for it).
    pub fn prunable(&self, now: u64) -> bool {
        match self.approved_msat {
            None => {
                self.incoming_msat == 0
                    && self.settled_at.is_none_or(|t| t.saturating_add(SETTLED_RETENTION_SECS) <= now)
            }
            Some(_) => self.expires_at.is_some_and(|e| e <= now),
        }
    }
}

/// The entries one request touches, loaded by the shell, plus the index's total size.
#[derive(Debug, Clone, Default)]
pub struct PaymentIndex {
    entries: BTreeMap<PaymentHash, PaymentEntry>,
    dirty: BTreeSet<PaymentHash>,
    /// Entries in the whole index (stored), before this request.
    pub stored_count: usize,
    /// The cosigner's clock (unix seconds) for this request, set by the shell.
    pub now: u64,
    pub max: usize,
    /// The node-wide velocity buckets (loaded and persisted with the entries).
    pub velocity: Velocity,
    /// The node-wide funding velocity: channel value we agreed to fund per window.
    pub funding_velocity: Velocity,
}

impl PaymentIndex {
    pub fn new(loaded: BTreeMap<PaymentHash, PaymentEntry>, stored_count: usize, max: usize) -> Self {
        Self {
            entries: loaded,
            dirty: BTreeSet::new(),
            stored_count,
            now: 0,
            max,
            velocity: Velocity::default(),
            funding_velocity: Velocity::default(),
        }
    }

    /// The entries this request changed, to persist with the channel state.
    pub fn changed(&self) -> Vec<(PaymentHash, PaymentEntry)> {
        self.dirty.iter().filter_map(|h| self.entries.get(h).map(|e| (*h, e.clone()))).collect()
    }

    pub fn get(&self, hash: &PaymentHash) -> Option<&PaymentEntry> {
        self.entries.get(hash)
    }

    fn entry(&mut self, violations: &mut Vec<Violation>, hash: &PaymentHash) -> &mut PaymentEntry {
        if !self.entries.contains_key(hash) {
            if self.stored_count >= self.max {
                violations.push(Violation {
                    tag: PolicyTag::NodeStateBounded,
                    detail: format!("payment index is full ({} entries)", self.max),
                });
            }
            self.stored_count += 1;
        }
        self.dirty.insert(*hash);
        self.entries.entry(*hash).or_default()
    }

    /// An HTLC offered by the counterparty is now committed to us.
    pub fn receive(&mut self, violations: &mut Vec<Violation>, h: &HtlcInfo) {
        let e = self.entry(violations, &h.payment_hash);
        e.incoming_msat = e.incoming_msat.saturating_add(h.amount_msat);
        e.incoming_min_cltv = Some(e.incoming_min_cltv.map_or(h.cltv_expiry, |c| c.min(h.cltv_expiry)));
    }

    /// An incoming HTLC left our commitment (failed or fulfilled).
    pub fn unreceive(&mut self, hash: &PaymentHash, amount_msat: u64) {
        if let Some(e) = self.entries.get_mut(hash) {
            e.incoming_msat = e.incoming_msat.saturating_sub(amount_msat);
            self.dirty.insert(*hash);
        }
    }

    /// The channel holding `incoming` (HTLCs offered to us) closed on chain: they cover
    /// nothing any more.
    pub fn withdraw<'a>(&mut self, incoming: impl IntoIterator<Item = &'a HtlcInfo>) {
        for h in incoming {
            self.unreceive(&h.payment_hash, h.amount_msat);
        }
    }

    /// We offer `h`: it must be covered by incoming HTLCs (a forward, when `policy.routing`)
    /// or an approved payment plus at most the routing fee cap, and a forward must expire
    /// at least `forward_cltv_delta_min` blocks before what it forwards.
    pub fn offer(&mut self, violations: &mut Vec<Violation>, h: &HtlcInfo, policy: &ChannelPolicy) {
        let hash = hex::encode(&h.payment_hash[..8]);
        let mut found = Vec::new();
        let e = self.entry(&mut found, &h.payment_hash);
        let out = e.outgoing_msat.saturating_add(h.amount_msat);
        match e.approved_msat {
            Some(_) if e.settled => found.push(Violation {
                tag: PolicyTag::InvoicePaidTwice,
                detail: format!("payment {hash} already settled; new HTLC of {} msat", h.amount_msat),
            }),
            Some(a) => {
                let fee_cap = payment_fee_cap_msat(policy, a);
                // A node that does not route: incoming HTLCs of the hash cover nothing.
                let incoming = if policy.routing { e.incoming_msat } else { 0 };
                let cover = incoming.saturating_add(a).saturating_add(fee_cap);
                if out > cover {
                    found.push(Violation {
                        tag: PolicyTag::PaymentFeeMax,
                        detail: format!(
                            "payment {hash}: {out} msat out, approved {a} msat + routing fee cap {fee_cap} msat (+{} in)",
                            e.incoming_msat
                        ),
                    });
                }
            }
            None if out > e.incoming_msat => found.push(Violation {
                tag: PolicyTag::RoutingUnbalanced,
                detail: format!("payment {hash}: {out} msat out, {} msat in, no approved payment", e.incoming_msat),
            }),
            None if !policy.routing => found.push(Violation {
                tag: PolicyTag::RoutingDisabled,
                detail: format!("payment {hash}: {} msat forwarded, but this node does not route", h.amount_msat),
            }),
            None => {}
        }
        if let Some(incoming) = e.incoming_min_cltv.filter(|_| e.approved_msat.is_none()) {
            let cltv_delta_min = policy.forward_cltv_delta_min;
            if h.cltv_expiry.saturating_add(cltv_delta_min) > incoming {
                found.push(Violation {
                    tag: PolicyTag::RoutingCltvDelta,
                    detail: format!(
                        "payment {hash}: outgoing expiry {} is less than {cltv_delta_min} blocks before incoming {incoming}",
                        h.cltv_expiry
                    ),
                });
            }
        }
        e.outgoing_msat = out;
        violations.extend(found);
    }

    /// How much of `removed` (incoming HTLCs that left a commitment) belongs to payments
    /// we already settled downstream: we know their preimage, so they must leave claimed.
    pub fn settled_incoming_msat<'a>(&self, removed: impl IntoIterator<Item = &'a HtlcInfo>) -> u64 {
        removed
            .into_iter()
            .filter(|h| self.entries.get(&h.payment_hash).is_some_and(|e| e.settled))
            .fold(0u64, |a, h| a.saturating_add(h.amount_msat))
    }

    /// A preimage of one of our outgoing HTLCs was revealed: that payment settled.
    pub fn settle(&mut self, hash: &PaymentHash) {
        if let Some(e) = self.entries.get_mut(hash) {
            e.settled = true;
            e.settled_at.get_or_insert(self.now);
            self.dirty.insert(*hash);
        }
    }

    /// Paying `hash` up to `amount_msat` until `expires_at` was approved (checked by
    /// [`super::payment_approval::approve_payment`]); returns how much the approved amount grew.
    pub fn approve(
        &mut self,
        violations: &mut Vec<Violation>,
        hash: &PaymentHash,
        amount_msat: u64,
        expires_at: u64,
    ) -> u64 {
        let e = self.entry(violations, hash);
        let before = e.approved_msat.unwrap_or(0);
        e.approved_msat = Some(before.max(amount_msat));
        e.expires_at = Some(e.expires_at.map_or(expires_at, |x| x.max(expires_at)));
        amount_msat.saturating_sub(before)
    }
}

/// The routing fees our own payment of `approved_msat` may pay on top (the payee gets
/// the approved amount; the route's fees go to other nodes): `payment_fee_max_base_msat`
/// plus `payment_fee_max_ppm` of the amount, as LDK's default fee limit.
pub fn payment_fee_cap_msat(policy: &ChannelPolicy, approved_msat: u64) -> u64 {
    let proportional = u128::from(approved_msat) * u128::from(policy.payment_fee_max_ppm) / 1_000_000;
    policy.payment_fee_max_base_msat.saturating_add(u64::try_from(proportional).unwrap_or(u64::MAX))
}

/// The fail-after-fulfil rule, for legacy and taproot commitments alike: incoming HTLCs
/// worth `settled_removed_msat` left the commitment while their payment was already
/// settled downstream, so they must have been claimed. Balance growth cannot tell which
/// removed HTLC was claimed (failing a settled one while claiming another of the same
/// amount would look the same), so when any settled one leaves, *every* incoming HTLC
/// leaving in that update (`removed_incoming_msat` in all) must be claimed: our funds, from
/// `before_msat`, must reach `after_msat` plus every fall the balance rule explains
/// (`explained_fall_msat`: our own fulfilled HTLCs, fees we pay, rounding) at least that
/// much higher. (An update that fulfils a settled HTLC and fails another is refused: the
/// node resolves them in separate updates.)
pub fn fail_after_fulfil(
    violations: &mut Vec<Violation>,
    settled_removed_msat: u64,
    removed_incoming_msat: u64,
    before_msat: u64,
    after_msat: u64,
    explained_fall_msat: u64,
    commitment_number: u64,
) {
    if settled_removed_msat == 0 {
        return;
    }
    let reached = after_msat.saturating_add(explained_fall_msat);
    let needed = before_msat.saturating_add(removed_incoming_msat.max(settled_removed_msat));
    if reached < needed {
        violations.push(Violation {
            tag: PolicyTag::RoutingFailAfterFulfil,
            detail: format!(
                "commitment {commitment_number}: incoming HTLCs of {removed_incoming_msat} msat left, {settled_removed_msat} msat of them of payments settled downstream, not all claimed (our funds {before_msat} -> {after_msat} msat)"
            ),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn a_settled_forward_is_kept_while_its_incoming_htlc_may_still_be_failed() {
        let hash = [5; 32];
        let h = HtlcInfo { offered: true, amount_msat: 1_000, cltv_expiry: 100, payment_hash: hash };
        let mut index = PaymentIndex::new(BTreeMap::new(), 0, 10);
        index.now = 1_000;
        index.receive(&mut Vec::new(), &h);
        index.settle(&hash);
        index.unreceive(&hash, 1_000);
        let e = index.get(&hash).unwrap().clone();
        assert_eq!((e.incoming_msat, e.settled, e.settled_at), (0, true, Some(1_000)));
        assert!(!e.prunable(1_000 + SETTLED_RETENTION_SECS - 1), "pruned while the other commitment may still hold it");
        assert!(e.prunable(1_000 + SETTLED_RETENTION_SECS));
        // A forward that never settled is forgotten as soon as nothing comes in.
        let unsettled = PaymentEntry { settled: false, settled_at: None, ..e };
        assert!(unsettled.prunable(1_000));
    }

    #[test]
    fn a_node_that_does_not_route_refuses_forwards() {
        let h =
            |offered, hash| HtlcInfo { offered, amount_msat: 5_000_000, cltv_expiry: 900, payment_hash: [hash; 32] };
        let tags = |policy: &ChannelPolicy| {
            let mut index = PaymentIndex::new(BTreeMap::new(), 0, 10);
            let mut v = Vec::new();
            index.receive(&mut v, &h(true, 1));
            index.offer(&mut v, &HtlcInfo { cltv_expiry: 800, ..h(false, 1) }, policy);
            // Our own approved payment still goes out.
            index.approve(&mut v, &[2; 32], 5_000_000, u64::MAX);
            index.offer(&mut v, &h(false, 2), policy);
            // An incoming HTLC of an approved payment's hash does not stretch the approval
            // when the node does not route.
            index.receive(&mut v, &h(true, 3));
            index.approve(&mut v, &[3; 32], 1_000_000, u64::MAX);
            index.offer(&mut v, &h(false, 3), policy);
            v.iter().map(|v| v.tag).collect::<Vec<_>>()
        };
        assert_eq!(tags(&ChannelPolicy::default()), vec![]);
        assert_eq!(
            tags(&ChannelPolicy { routing: false, ..Default::default() }),
            vec![PolicyTag::RoutingDisabled, PolicyTag::PaymentFeeMax]
        );
    }
}
