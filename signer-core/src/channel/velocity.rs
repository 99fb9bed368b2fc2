//! The payment velocity limit: how much the node may approve paying within a sliding
//! window, kept in a fixed number of time buckets so its memory never grows.
//!
//! The window is `VELOCITY_BUCKETS` buckets of `window / VELOCITY_BUCKETS` seconds; an
//! amount counts in the bucket of the time it was approved and is forgotten when that
//! bucket leaves the window (so the limit holds over any window, up to one bucket's
//! width of slack).
//!
//! Must never: read a clock (the shell passes `now`), or forget an amount before its
//! bucket left the window.

use serde::{Deserialize, Serialize};

/// Buckets per window (one hour each with the default one-day window).
pub const VELOCITY_BUCKETS: usize = 24;

/// Approved amounts per bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Velocity {
    /// The bucket number (`unix time / bucket width`) of `amounts_msat[0]`.
    first_bucket: u64,
    amounts_msat: [u64; VELOCITY_BUCKETS],
}

impl Velocity {
    fn bucket_secs(window_secs: u64) -> u64 {
        (window_secs / VELOCITY_BUCKETS as u64).max(1)
    }

    /// Drops buckets older than the window ending at `now`.
    fn advance(&mut self, now: u64, window_secs: u64) {
        let current = now / Self::bucket_secs(window_secs);
        let first = current.saturating_sub(VELOCITY_BUCKETS as u64 - 1);
        if first <= self.first_bucket {
            // A clock that went back keeps the amounts where they are (never forgets early).
            return;
        }
        let shift = (first - self.first_bucket).min(VELOCITY_BUCKETS as u64) as usize;
        self.amounts_msat.rotate_left(shift);
        for a in &mut self.amounts_msat[VELOCITY_BUCKETS - shift..] {
            *a = 0;
        }
        self.first_bucket = first;
    }

    /// The total approved within the window ending at `now`.
    pub fn total_msat(&self, now: u64, window_secs: u64) -> u64 {
        let mut v = self.clone();
        v.advance(now, window_secs);
        v.amounts_msat.iter().fold(0u64, |a, b| a.saturating_add(*b))
    }

    /// Counts `amount_msat` at `now` if the window's total stays within `limit_msat`;
    /// else leaves everything unchanged and returns the total it would have reached.
    pub fn spend(&mut self, now: u64, window_secs: u64, amount_msat: u64, limit_msat: u64) -> Result<(), u64> {
        self.advance(now, window_secs);
        let total = self.amounts_msat.iter().fold(amount_msat, |a, b| a.saturating_add(*b));
        if total > limit_msat {
            return Err(total);
        }
        let current = now / Self::bucket_secs(window_secs);
        let i = current.saturating_sub(self.first_bucket).min(VELOCITY_BUCKETS as u64 - 1) as usize;
        self.amounts_msat[i] = self.amounts_msat[i].saturating_add(amount_msat);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;
    const HOUR: u64 = 3_600;

    #[test]
    fn limit_holds_within_the_window_and_frees_as_buckets_leave() {
        let mut v = Velocity::default();
        let t0 = 1_800_000_000;
        assert_eq!(v.spend(t0, DAY, 600, 1_000), Ok(()));
        assert_eq!(v.spend(t0 + 10 * HOUR, DAY, 400, 1_000), Ok(()));
        // Full: a single msat more within the day is refused, and refusing changes nothing.
        assert_eq!(v.spend(t0 + 20 * HOUR, DAY, 1, 1_000), Err(1_001));
        assert_eq!(v.total_msat(t0 + 20 * HOUR, DAY), 1_000);
        // A day after the first spend its 600 left the window; the 400 are still in.
        assert_eq!(v.total_msat(t0 + DAY + HOUR, DAY), 400);
        assert_eq!(v.spend(t0 + DAY + HOUR, DAY, 600, 1_000), Ok(()));
        assert_eq!(v.spend(t0 + DAY + HOUR, DAY, 1, 1_000), Err(1_001));
        // Long after, everything is forgotten.
        assert_eq!(v.total_msat(t0 + 10 * DAY, DAY), 0);
    }

    #[test]
    fn clock_going_back_forgets_nothing() {
        let mut v = Velocity::default();
        let t0 = 1_800_000_000;
        v.spend(t0, DAY, 900, 1_000).unwrap();
        assert_eq!(v.spend(t0 - 5 * DAY, DAY, 200, 1_000), Err(1_100));
        assert_eq!(v.total_msat(t0, DAY), 900);
    }
}
