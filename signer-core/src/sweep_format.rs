//! The shape rules of every transaction that spends a channel output of ours after a
//! close (sweeps, anchor spends, HTLC transactions), for legacy and taproot channels alike:
//! a version that relays and can carry relative delays (`policy-sweep-version`), and, for
//! an output locked until a block, a locktime that reaches it (`policy-sweep-locktime`).
//!
//! Must never: accept a transaction that could not be mined as signed (our signature
//! would be spent on nothing while the output waits).

use alloc::format;
use alloc::vec::Vec;

use bitcoin::Transaction;

use crate::policy::{PolicyTag, Violation};

/// The rules for `tx`; `locked_until` is the block an absolute timelock of the spent
/// output needs (an HTLC's expiry), if any.
pub fn sweep_format_violations(tx: &Transaction, locked_until: Option<u32>) -> Vec<Violation> {
    let mut v = Vec::new();
    if !matches!(tx.version.0, 2 | 3) {
        v.push(Violation {
            tag: PolicyTag::SweepVersion,
            detail: format!("version {}: a sweep has version 2 or 3 (standard, relative delays)", tx.version.0),
        });
    }
    if let Some(cltv) = locked_until {
        let lock = tx.lock_time;
        if !lock.is_block_height() || lock.to_consensus_u32() < cltv {
            v.push(Violation {
                tag: PolicyTag::SweepLocktime,
                detail: format!("locktime {} does not reach block {cltv}", lock.to_consensus_u32()),
            });
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use bitcoin::absolute::LockTime;
    use bitcoin::transaction::Version;

    fn tx(version: i32, lock: u32) -> Transaction {
        Transaction {
            version: Version(version),
            lock_time: LockTime::from_consensus(lock),
            input: vec![],
            output: vec![],
        }
    }

    fn tags(tx: &Transaction, locked_until: Option<u32>) -> Vec<PolicyTag> {
        sweep_format_violations(tx, locked_until).iter().map(|v| v.tag).collect()
    }

    #[test]
    fn a_sweep_needs_a_standard_version_and_a_locktime_reaching_the_expiry() {
        assert_eq!(tags(&tx(2, 0), None), vec![]);
        assert_eq!(tags(&tx(3, 800), Some(800)), vec![]);
        assert_eq!(tags(&tx(1, 0), None), vec![PolicyTag::SweepVersion]);
        assert_eq!(tags(&tx(4, 0), None), vec![PolicyTag::SweepVersion]);
        assert_eq!(tags(&tx(2, 799), Some(800)), vec![PolicyTag::SweepLocktime]);
        // A time, however late, is not a block height.
        assert_eq!(tags(&tx(2, 1_900_000_000), Some(800)), vec![PolicyTag::SweepLocktime]);
    }
}
