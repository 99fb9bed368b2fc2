//! The rules for approving a payment of the node's own (`ApprovePayment`): who vouches
//! for it (a BOLT 11 invoice signed by an allowlisted payee, or an operator approval), that
//! it has not expired, that it does not pay more than the invoice asks, and the velocity
//! limit.
//!
//! Must never: accept a payment the node alone could have authorised (the node holds
//! neither the payee's nor an operator's key), read a clock (the shell passes `now`), or
//! count a refused approval toward the velocity limit.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::str::FromStr;

use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{ecdsa::Signature, All, Message, PublicKey, Secp256k1};
use lightning::bolt11_invoice::Bolt11Invoice;
use qls_protocol::PaymentApproval;

use super::payments::{PaymentHash, PaymentIndex};
use crate::policy::{ChannelPolicy, PolicyTag, Violation};

/// What a payment approver signs (ECDSA, secp256k1) to approve paying `hash` up to
/// `amount_msat` until `expires_at` (unix seconds).
pub fn payment_approval_message(hash: &PaymentHash, amount_msat: u64, expires_at: u64) -> [u8; 32] {
    crate::tagged::tagged_hash(
        "QLS/payment-approval/v2",
        &[hash, &amount_msat.to_be_bytes(), &expires_at.to_be_bytes()],
    )
}

/// One `ApprovePayment` request's facts.
pub struct PaymentRequest<'a> {
    pub hash: &'a PaymentHash,
    pub amount_msat: u64,
    pub expires_at: u64,
    pub invoice: Option<&'a str>,
    pub approval: Option<&'a PaymentApproval>,
}

/// Judges a payment approval and, whatever the verdict, records it in `index` (the shell
/// persists the index only when the policy approves).
pub fn approve_payment(
    violations: &mut Vec<Violation>,
    policy: &ChannelPolicy,
    now: u64,
    req: &PaymentRequest<'_>,
    index: &mut PaymentIndex,
    secp: &Secp256k1<All>,
) {
    let hash8 = hex::encode(&req.hash[..8]);
    let mut expires_at = req.expires_at;
    let payee = match req.invoice.map(|s| check_invoice(s, req, &hash8)) {
        None => None,
        Some(Err(v)) => {
            violations.push(v);
            None
        }
        Some(Ok(invoice)) => {
            let invoice_expiry = invoice.duration_since_epoch().saturating_add(invoice.expiry_time()).as_secs();
            expires_at = expires_at.min(invoice_expiry);
            if let Some(asked) = invoice.amount_milli_satoshis() {
                if req.amount_msat > asked {
                    violations.push(Violation {
                        tag: PolicyTag::InvoiceOverpaid,
                        detail: format!(
                            "payment {hash8}: approving {} msat, the invoice asks {asked}",
                            req.amount_msat
                        ),
                    });
                }
            }
            Some(invoice.get_payee_pub_key())
        }
    };
    if expires_at <= now {
        violations.push(Violation {
            tag: PolicyTag::InvoiceExpired,
            detail: format!("payment {hash8}: expired at {expires_at}, now {now}"),
        });
    }
    match req.approval {
        Some(a) => check_payment_approver(violations, &policy.payment_approvers, a, req, secp),
        None => {
            let allowlisted = payee.is_some_and(|p| {
                policy.payee_allowlist.iter().any(|a| hex::decode(a).is_ok_and(|k| k == p.serialize()))
            });
            if !allowlisted {
                violations.push(Violation {
                    tag: PolicyTag::PaymentPayee,
                    detail: match payee {
                        Some(p) => format!("payment {hash8}: payee {p} is not allowlisted and no operator approved"),
                        None => format!("payment {hash8}: no valid invoice and no operator approval"),
                    },
                });
            }
        }
    }
    let added = index.approve(violations, req.hash, req.amount_msat, expires_at);
    if let Err(total) = index.velocity.spend(now, policy.velocity_window_secs, added, policy.velocity_max_msat) {
        violations.push(Violation {
            tag: PolicyTag::PaymentVelocity,
            detail: format!(
                "payment {hash8}: {total} msat approved within {} s, limit {}",
                policy.velocity_window_secs, policy.velocity_max_msat
            ),
        });
    }
}

/// The invoice must parse, carry a valid payee signature and be for this payment hash.
fn check_invoice(text: &str, req: &PaymentRequest<'_>, hash8: &str) -> Result<Bolt11Invoice, Violation> {
    let invalid = |why: String| Violation { tag: PolicyTag::InvoiceInvalid, detail: format!("payment {hash8}: {why}") };
    // Parsing checks the signature (and recovers the payee when the invoice names none).
    let invoice = Bolt11Invoice::from_str(text).map_err(|e| invalid(format!("invoice does not parse: {e}")))?;
    if invoice.payment_hash().to_byte_array() != *req.hash {
        return Err(invalid(format!("invoice is for payment hash {}", invoice.payment_hash())));
    }
    Ok(invoice)
}

/// The approver must be configured and its signature valid; else a violation.
fn check_payment_approver(
    violations: &mut Vec<Violation>,
    approvers: &[String],
    approval: &PaymentApproval,
    req: &PaymentRequest<'_>,
    secp: &Secp256k1<All>,
) {
    let configured = approvers.iter().any(|a| hex::decode(a).is_ok_and(|k| k == approval.approver));
    let valid = match (PublicKey::from_slice(&approval.approver), Signature::from_compact(&approval.sig)) {
        (Ok(pk), Ok(s)) => {
            let msg = Message::from_digest(payment_approval_message(req.hash, req.amount_msat, req.expires_at));
            secp.verify_ecdsa(&msg, &s, &pk).is_ok()
        }
        _ => false,
    };
    if !configured || !valid {
        violations.push(Violation {
            tag: PolicyTag::PaymentApprover,
            detail: format!(
                "payment {}: approver {} is {}",
                hex::encode(&req.hash[..8]),
                hex::encode(&approval.approver),
                if configured { "configured but the signature is invalid" } else { "not a configured approver" }
            ),
        });
    }
}

#[cfg(test)]
mod tests {
    use alloc::collections::BTreeMap;
    use alloc::string::ToString;
    use alloc::vec;

    use bitcoin::hashes::sha256;
    use bitcoin::secp256k1::SecretKey;
    use lightning::bolt11_invoice::{Currency, InvoiceBuilder, PaymentSecret};

    use super::*;

    const NOW: u64 = 1_800_000_000;
    const HOUR: u64 = 3_600;

    struct Fx {
        secp: Secp256k1<All>,
        policy: ChannelPolicy,
        operator: SecretKey,
        payee: SecretKey,
        index: PaymentIndex,
    }

    impl Fx {
        fn new() -> Self {
            let secp = Secp256k1::new();
            let operator = SecretKey::from_slice(&[0x5a; 32]).unwrap();
            let payee = SecretKey::from_slice(&[0x6b; 32]).unwrap();
            let key = |k: &SecretKey| hex::encode(PublicKey::from_secret_key(&secp, k).serialize());
            let policy = ChannelPolicy {
                payment_approvers: vec![key(&operator)],
                payee_allowlist: vec![key(&payee)],
                ..ChannelPolicy::default()
            };
            Self { secp, policy, operator, payee, index: PaymentIndex::new(BTreeMap::new(), 0, 100) }
        }

        /// A BOLT 11 invoice signed by `signer`, created at `created`, valid one hour.
        fn invoice(&self, signer: &SecretKey, hash: &PaymentHash, amount_msat: u64, created: u64) -> String {
            InvoiceBuilder::new(Currency::Bitcoin)
                .description("test".to_string())
                .payment_hash(sha256::Hash::from_byte_array(*hash))
                .payment_secret(PaymentSecret([3; 32]))
                .duration_since_epoch(core::time::Duration::from_secs(created))
                .expiry_time(core::time::Duration::from_secs(HOUR))
                .min_final_cltv_expiry_delta(144)
                .amount_milli_satoshis(amount_msat)
                .build_signed(|m| self.secp.sign_ecdsa_recoverable(m, signer))
                .unwrap()
                .to_string()
        }

        fn approval(&self, key: &SecretKey, hash: &PaymentHash, amount_msat: u64, expires_at: u64) -> PaymentApproval {
            let msg = Message::from_digest(payment_approval_message(hash, amount_msat, expires_at));
            PaymentApproval {
                approver: PublicKey::from_secret_key(&self.secp, key).serialize().to_vec(),
                sig: self.secp.sign_ecdsa(&msg, key).serialize_compact().to_vec(),
            }
        }

        /// Judges one approval like the shell: the index keeps it only when nothing refused.
        fn run(&mut self, now: u64, req: &PaymentRequest<'_>) -> Vec<PolicyTag> {
            let mut v = Vec::new();
            let mut index = self.index.clone();
            approve_payment(&mut v, &self.policy, now, req, &mut index, &self.secp);
            if v.is_empty() {
                self.index = index;
            }
            v.iter().map(|v| v.tag).collect()
        }
    }

    fn req<'a>(
        hash: &'a PaymentHash,
        amount_msat: u64,
        expires_at: u64,
        invoice: Option<&'a str>,
        approval: Option<&'a PaymentApproval>,
    ) -> PaymentRequest<'a> {
        PaymentRequest { hash, amount_msat, expires_at, invoice, approval }
    }

    #[test]
    fn payment_approval_needs_an_approver_signature() {
        let mut fx = Fx::new();
        let hash = [7; 32];
        let node = SecretKey::from_slice(&[0x5b; 32]).unwrap();
        let ok = fx.approval(&fx.operator, &hash, 1_000, NOW + HOUR);
        assert_eq!(fx.run(NOW, &req(&hash, 1_000, NOW + HOUR, None, Some(&ok))), vec![]);
        assert_eq!(fx.index.get(&hash).unwrap().approved_msat, Some(1_000));
        // The node signs its own approval: not a configured approver.
        let own = fx.approval(&node, &hash, 2_000, NOW + HOUR);
        assert_eq!(fx.run(NOW, &req(&hash, 2_000, NOW + HOUR, None, Some(&own))), vec![PolicyTag::PaymentApprover]);
        // The operator's signature over another amount, or another expiry.
        assert_eq!(fx.run(NOW, &req(&hash, 9_000, NOW + HOUR, None, Some(&ok))), vec![PolicyTag::PaymentApprover]);
        assert_eq!(fx.run(NOW, &req(&hash, 1_000, NOW + 9 * HOUR, None, Some(&ok))), vec![PolicyTag::PaymentApprover]);
        assert_eq!(fx.index.get(&hash).unwrap().approved_msat, Some(1_000), "refusals change nothing");
    }

    #[test]
    fn payment_to_unlisted_payee_needs_an_approver() {
        let mut fx = Fx::new();
        let hash = [8; 32];
        // An allowlisted payee's own invoice needs no operator.
        let listed = fx.invoice(&fx.payee, &hash, 5_000, NOW);
        assert_eq!(fx.run(NOW, &req(&hash, 5_000, NOW + HOUR, Some(&listed), None)), vec![]);
        // Another payee's invoice (say, the attacker's) does, and with one it passes.
        let other = SecretKey::from_slice(&[0x7c; 32]).unwrap();
        let hash2 = [9; 32];
        let foreign = fx.invoice(&other, &hash2, 5_000, NOW);
        assert_eq!(fx.run(NOW, &req(&hash2, 5_000, NOW + HOUR, Some(&foreign), None)), vec![PolicyTag::PaymentPayee]);
        // No invoice and no approval: refused too.
        assert_eq!(fx.run(NOW, &req(&hash2, 5_000, NOW + HOUR, None, None)), vec![PolicyTag::PaymentPayee]);
        let ok = fx.approval(&fx.operator, &hash2, 5_000, NOW + HOUR);
        assert_eq!(fx.run(NOW, &req(&hash2, 5_000, NOW + HOUR, Some(&foreign), Some(&ok))), vec![]);
    }

    #[test]
    fn invoice_for_another_hash_or_forged() {
        let mut fx = Fx::new();
        let hash = [10; 32];
        // The allowlisted payee's real invoice, offered for another payment hash.
        let real = fx.invoice(&fx.payee, &[11; 32], 5_000, NOW);
        let tags = fx.run(NOW, &req(&hash, 5_000, NOW + HOUR, Some(&real), None));
        assert_eq!(tags, vec![PolicyTag::InvoiceInvalid, PolicyTag::PaymentPayee]);
        // One character of the signature changed: the signature no longer verifies (or
        // recovers another payee, who is not allowlisted).
        let mut forged = fx.invoice(&fx.payee, &hash, 5_000, NOW);
        let at = forged.len() - 10;
        let c = if &forged[at..at + 1] == "q" { "p" } else { "q" };
        forged.replace_range(at..at + 1, c);
        let tags = fx.run(NOW, &req(&hash, 5_000, NOW + HOUR, Some(&forged), None));
        assert!(tags.contains(&PolicyTag::InvoiceInvalid) || tags == vec![PolicyTag::PaymentPayee], "{tags:?}");
        assert!(fx.index.get(&hash).is_none());
    }

    #[test]
    fn approving_more_than_the_invoice_asks_refused() {
        let mut fx = Fx::new();
        let hash = [10; 32];
        let good = fx.invoice(&fx.payee, &hash, 5_000, NOW);
        assert_eq!(fx.run(NOW, &req(&hash, 5_001, NOW + HOUR, Some(&good), None)), vec![PolicyTag::InvoiceOverpaid]);
        assert!(fx.index.get(&hash).is_none());
        assert_eq!(fx.run(NOW, &req(&hash, 5_000, NOW + HOUR, Some(&good), None)), vec![]);
    }

    #[test]
    fn expired_invoice_or_approval_refused() {
        let mut fx = Fx::new();
        let hash = [12; 32];
        // The invoice expired an hour after creation, whatever expiry the node claims.
        let old = fx.invoice(&fx.payee, &hash, 5_000, NOW - 2 * HOUR);
        assert_eq!(fx.run(NOW, &req(&hash, 5_000, NOW + HOUR, Some(&old), None)), vec![PolicyTag::InvoiceExpired]);
        // An operator approval replayed after its expiry.
        let ok = fx.approval(&fx.operator, &hash, 5_000, NOW + HOUR);
        assert_eq!(
            fx.run(NOW + 2 * HOUR, &req(&hash, 5_000, NOW + HOUR, None, Some(&ok))),
            vec![PolicyTag::InvoiceExpired]
        );
        assert_eq!(fx.run(NOW, &req(&hash, 5_000, NOW + HOUR, None, Some(&ok))), vec![]);
        // Once expired, the entry is prunable; before, it is not.
        let entry = fx.index.get(&hash).unwrap();
        assert!(!entry.prunable(NOW) && entry.prunable(NOW + HOUR));
    }

    #[test]
    fn payment_velocity_limit() {
        let mut fx = Fx::new();
        fx.policy.velocity_max_msat = 10_000;
        fx.policy.velocity_window_secs = 24 * HOUR;
        let pay = |fx: &mut Fx, n: u8, amount: u64, now: u64| {
            let hash = [n; 32];
            let a = fx.approval(&fx.operator, &hash, amount, now + HOUR);
            fx.run(now, &req(&hash, amount, now + HOUR, None, Some(&a)))
        };
        assert_eq!(pay(&mut fx, 1, 6_000, NOW), vec![]);
        assert_eq!(pay(&mut fx, 2, 4_000, NOW + HOUR), vec![]);
        assert_eq!(pay(&mut fx, 3, 1, NOW + 2 * HOUR), vec![PolicyTag::PaymentVelocity]);
        // Re-approving an approved payment for the same amount adds nothing.
        assert_eq!(pay(&mut fx, 2, 4_000, NOW + 2 * HOUR), vec![]);
        // A day later the first 6,000 left the window.
        assert_eq!(pay(&mut fx, 3, 6_000, NOW + 24 * HOUR), vec![]);
        assert_eq!(pay(&mut fx, 4, 1, NOW + 24 * HOUR), vec![PolicyTag::PaymentVelocity]);
    }
}
