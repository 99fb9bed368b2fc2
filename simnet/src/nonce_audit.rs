//! The nonce audit of a run: every (cosigner, public nonce) pair the coordinator's signing
//! reports say a signature share or partial signature was made with, and the pairs seen
//! more than once. An honest cosigner consumes each secret nonce once, so any repeat is a
//! secret nonce used twice — which the aggregate-R check cannot see when the co-signers
//! or the message differ (FROST's binding factors then change R).
//!
//! A force close asked for twice is counted twice, although the cosigner sends the partial
//! signature it stored, not a second one: the runs here never ask twice.
//!
//! Must never: count a pair as repeated because one report was observed twice (each
//! reply's report is added once, by the client observer).

use std::collections::BTreeMap;

use qls_protocol::SignReport;

#[derive(Debug, Default)]
pub struct NonceAudit {
    uses: BTreeMap<(String, Vec<u8>), usize>,
    /// Uses the coordinator counted but did not list (report size limit).
    dropped: u64,
}

impl NonceAudit {
    pub fn add(&mut self, report: &SignReport) {
        for n in &report.nonces {
            *self.uses.entry((n.cosigner.clone(), n.pubnonce.clone())).or_default() += 1;
        }
        self.dropped += u64::from(report.nonces_dropped);
    }

    /// Nonce uses seen in all.
    pub fn uses(&self) -> usize {
        self.uses.values().sum()
    }

    /// Uses the reports counted without listing them.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Per cosigner, how many of its public nonces were signed with more than once.
    pub fn repeated(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for ((cosigner, _), count) in &self.uses {
            if *count > 1 {
                *out.entry(cosigner.clone()).or_default() += 1;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use qls_protocol::NonceUse;

    fn report(uses: &[(&str, u8)]) -> SignReport {
        SignReport {
            nonces: uses.iter().map(|(c, n)| NonceUse { cosigner: c.to_string(), pubnonce: vec![*n; 66] }).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_nonce_signed_with_in_two_reports_is_a_repeat_of_its_cosigner() {
        let mut audit = NonceAudit::default();
        audit.add(&report(&[("c1", 1), ("c2", 2)]));
        audit.add(&report(&[("c1", 3), ("c3", 2)]));
        assert!(audit.repeated().is_empty(), "the same bytes from two cosigners are two nonces");
        audit.add(&report(&[("c2", 2), ("c1", 4)]));
        assert_eq!(audit.repeated(), BTreeMap::from([("c2".to_string(), 1)]));
        assert_eq!(audit.uses(), 6);
    }

    #[test]
    fn dropped_uses_are_counted() {
        let mut audit = NonceAudit::default();
        audit.add(&SignReport { nonces_dropped: 5, ..Default::default() });
        assert_eq!(audit.dropped(), 5);
        assert_eq!(audit.uses(), 0);
    }
}
