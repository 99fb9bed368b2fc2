//! One channel's balances as both sides see them between updates: our balance, theirs,
//! the HTLCs in flight (with their preimages, which the simulated payee and payer know)
//! and the preimages of our HTLCs fulfilled since the last update (they justify our
//! balance falling). Shared by the legacy and taproot channel drivers.
//!
//! Must never: move value except by an HTLC added, fulfilled or failed.

use bitcoin::hashes::{sha256, Hash};
use qls_protocol::HtlcInfo;

/// An HTLC in flight, from our side (`offered`: we offered it), with its preimage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flight {
    pub htlc: HtlcInfo,
    pub preimage: [u8; 32],
}

#[derive(Debug, Clone, Default)]
pub struct HtlcBook {
    pub ours_msat: u64,
    pub theirs_msat: u64,
    pub htlcs: Vec<Flight>,
    /// Preimages of our HTLCs fulfilled since the last update.
    pub fulfilled_ours: Vec<[u8; 32]>,
}

impl HtlcBook {
    pub fn new(ours_msat: u64, theirs_msat: u64) -> Self {
        Self { ours_msat, theirs_msat, ..Self::default() }
    }

    fn add(&mut self, offered: bool, amount_msat: u64, preimage: [u8; 32], cltv_expiry: u32) {
        let payment_hash = sha256::Hash::hash(&preimage).to_byte_array();
        let payer = if offered { &mut self.ours_msat } else { &mut self.theirs_msat };
        *payer -= amount_msat;
        self.htlcs.push(Flight { htlc: HtlcInfo { offered, amount_msat, cltv_expiry, payment_hash }, preimage });
    }

    /// We offer an HTLC (the node must have had it approved or be forwarding it).
    pub fn offer(&mut self, amount_msat: u64, preimage: [u8; 32], cltv_expiry: u32) {
        self.add(true, amount_msat, preimage, cltv_expiry);
    }

    /// The counterparty offers us an HTLC.
    pub fn receive(&mut self, amount_msat: u64, preimage: [u8; 32], cltv_expiry: u32) {
        self.add(false, amount_msat, preimage, cltv_expiry);
    }

    /// The index of the HTLC with `payment_hash`.
    pub fn position(&self, payment_hash: &[u8; 32]) -> Option<usize> {
        self.htlcs.iter().position(|f| f.htlc.payment_hash == *payment_hash)
    }

    /// HTLC `i` is fulfilled: its receiver gets it (ours come with their preimage).
    pub fn fulfil(&mut self, i: usize) -> Flight {
        let f = self.htlcs.remove(i);
        if f.htlc.offered {
            self.theirs_msat += f.htlc.amount_msat;
            self.fulfilled_ours.push(f.preimage);
        } else {
            self.ours_msat += f.htlc.amount_msat;
        }
        f
    }

    /// HTLC `i` fails back to its offerer.
    pub fn fail(&mut self, i: usize) -> Flight {
        let f = self.htlcs.remove(i);
        if f.htlc.offered {
            self.ours_msat += f.htlc.amount_msat;
        } else {
            self.theirs_msat += f.htlc.amount_msat;
        }
        f
    }
}
