//! Payments of the node's own through the real quorum over QUIC (3 cosigners, t = 2):
//! a BOLT 11 invoice from an allowlisted payee is approved without an operator; an
//! attacker holding the node cannot get its own invoice, an expired invoice or more than
//! the velocity limit approved — each refused with its tag by every honest cosigner, also
//! when one cosigner is fully permissive.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bitcoin::hashes::{sha256, Hash};
use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use lightning::bolt11_invoice::{Currency, InvoiceBuilder, PaymentSecret};
use qls_protocol::*;
use qls_signer_core::policy::PolicyConfig;
use qls_simnet::harness::{test_policy, Harness, QuorumSpec};

const PAYEE: [u8; 32] = [0x6b; 32];
const ATTACKER: [u8; 32] = [0x7c; 32];
const VELOCITY_MAX_MSAT: u64 = 1_000_000;

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// An invoice for `hash` signed by `payee`, created `age` seconds ago, valid one hour.
fn invoice(payee: &[u8; 32], hash: [u8; 32], amount_msat: u64, age: u64) -> String {
    let secp = Secp256k1::new();
    let key = SecretKey::from_slice(payee).unwrap();
    InvoiceBuilder::new(Currency::Regtest)
        .description("qls test".into())
        .payment_hash(sha256::Hash::from_byte_array(hash))
        .payment_secret(PaymentSecret([9; 32]))
        .duration_since_epoch(Duration::from_secs(now() - age))
        .expiry_time(Duration::from_secs(3_600))
        .min_final_cltv_expiry_delta(144)
        .amount_milli_satoshis(amount_msat)
        .build_signed(|m| secp.sign_ecdsa_recoverable(m, &key))
        .unwrap()
        .to_string()
}

fn pay_invoice(hash: [u8; 32], amount_msat: u64, invoice: String) -> NodeRequest {
    NodeRequest::NodeKey(NodeKeyRequest::ApprovePayment {
        payment_hash: hash,
        amount_msat,
        // The node's claim; the invoice's own expiry bounds it.
        expires_at: u64::MAX,
        invoice: Some(invoice),
        approval: None,
    })
}

fn policy() -> PolicyConfig {
    let mut p = test_policy();
    let payee = PublicKey::from_secret_key(&Secp256k1::new(), &SecretKey::from_slice(&PAYEE).unwrap());
    p.channel.payee_allowlist = vec![hex::encode(payee.serialize())];
    p.channel.velocity_max_msat = VELOCITY_MAX_MSAT;
    p
}

/// Refused, with `tag`, by each of `honest`.
async fn refused(h: &Harness, req: &NodeRequest, tag: &str, honest: &[&str]) {
    let client = h.client().await.unwrap();
    match client.call(req).await.unwrap() {
        NodeResponse::Refused { refusals, .. } => {
            for name in honest {
                let r = refusals
                    .iter()
                    .find(|r| r.cosigner == *name)
                    .unwrap_or_else(|| panic!("{name} did not refuse: {refusals:?}"));
                assert!(r.violations.iter().any(|v| v.tag == tag), "{name}: {:?}", r.violations);
            }
        }
        other => panic!("expected a refusal with {tag}, got {other:?}"),
    }
}

async fn approved(h: &Harness, req: &NodeRequest) {
    let client = h.client().await.unwrap();
    match client.call(req).await.unwrap() {
        NodeResponse::KeyHolder { output, .. } => assert_eq!(output, KeyHolderOutput::Done),
        other => panic!("expected an approval, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoice_payments_are_judged_by_payee_expiry_and_velocity() {
    for permissive in [None, Some(2)] {
        let mut spec = QuorumSpec::new(3, 2);
        spec.policies = vec![policy(), policy(), policy()];
        if let Some(i) = permissive {
            spec.policies[i] = PolicyConfig { channel: policy().channel, ..PolicyConfig::permissive() };
        }
        let honest: &[&str] = if permissive.is_some() { &["c1", "c2"] } else { &["c1", "c2", "c3"] };
        let h = Harness::start(spec).await.unwrap();
        let hash = |n: u8| sha256::Hash::hash(&[n; 32]).to_byte_array();

        // The allowlisted payee's invoice: approved with no operator involved.
        approved(&h, &pay_invoice(hash(1), 600_000, invoice(&PAYEE, hash(1), 600_000, 0))).await;
        // The attacker's own invoice (its node is not allowlisted).
        let theirs = pay_invoice(hash(2), 100_000, invoice(&ATTACKER, hash(2), 100_000, 0));
        refused(&h, &theirs, "policy-payment-payee", honest).await;
        // The payee's invoice, expired an hour ago (the node's claimed expiry is ignored).
        let stale = pay_invoice(hash(3), 100_000, invoice(&PAYEE, hash(3), 100_000, 7_200));
        refused(&h, &stale, "policy-invoice-expired", honest).await;
        // The payee's real invoice presented for another payment hash.
        let swapped = pay_invoice(hash(4), 100_000, invoice(&PAYEE, hash(5), 100_000, 0));
        refused(&h, &swapped, "policy-invoice-invalid", honest).await;
        // A second good invoice that would take the day's total past the velocity limit.
        let more = pay_invoice(hash(6), 500_000, invoice(&PAYEE, hash(6), 500_000, 0));
        refused(&h, &more, "policy-payment-velocity", honest).await;
        // Within the limit it passes: refusals counted nothing toward it.
        approved(&h, &pay_invoice(hash(7), 400_000, invoice(&PAYEE, hash(7), 400_000, 0))).await;
        h.shutdown().await;
    }
}
