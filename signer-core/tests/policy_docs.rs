//! The policy-tag table in `docs/policy-tags.md` is generated from the catalog in
//! `signer-core::policy`, followed by where each of VLS's policy controls stands in QLS;
//! this test fails when the file differs, or when a control names a tag QLS does not have.
//! Regenerate with `QLS_BLESS=1 cargo test -p qls-signer-core --test policy_docs`.

use qls_signer_core::policy::{catalog_markdown, PolicyTag};

/// VLS's policy controls (`docs/policy-controls.md` of validating-lightning-signer) and
/// where each stands in QLS: the tag(s) enforcing it, or why it needs no check here.
pub const VLS_CONTROLS: &[(&str, &str)] = &[
    ("policy-channel-contest-delay-range-holder", "`policy-channel-contest-delay-range`"),
    ("policy-channel-contest-delay-range-counterparty", "`policy-channel-counterparty-delay-max`"),
    ("policy-channel-safe-mode", "`policy-channel-safe-type`"),
    ("policy-onchain-output-scriptpubkey", "`policy-funding-output`"),
    ("policy-onchain-output-match-commitment", "`policy-funding-output`: the output must be the stored setup's, which every commitment is built on"),
    ("policy-onchain-initial-commitment-countersigned", "`policy-funding-initial-commitment-countersigned`"),
    ("policy-onchain-no-unknown-outputs", "`policy-onchain-no-unknown-outputs`"),
    ("policy-onchain-no-channel-push", "`policy-funding-no-push`"),
    ("policy-onchain-no-fund-inbound", "`policy-funding-inbound`"),
    ("policy-onchain-wallet-path-predictable", "does not apply: the group wallet is one script (the FROST group key's P2TR output), with no derivation paths; change pays exactly it (`policy-onchain-no-unknown-outputs`)"),
    ("policy-onchain-fee-range", "`policy-onchain-fee-range`"),
    ("policy-onchain-format-standard", "`policy-onchain-standard`"),
    ("policy-onchain-funding-non-malleable", "`policy-funding-segwit-inputs`"),
    ("policy-onchain-max-size", "`policy-onchain-max-size`"),
    ("policy-commitment-input-single", "by construction: every cosigner builds each commitment itself from its stored setup; the node sends numbers and HTLCs, never a transaction"),
    ("policy-commitment-input-match-funding", "by construction (as above)"),
    ("policy-commitment-initial-funding-value", "`policy-funding-no-push`, `policy-commitment-value`"),
    ("policy-commitment-version", "by construction"),
    ("policy-commitment-locktime", "by construction"),
    ("policy-commitment-sequence", "by construction (transaction field); commitment numbers: `policy-commitment-sequence`"),
    ("policy-commitment-singular-to-holder", "by construction"),
    ("policy-commitment-singular-to-counterparty", "by construction"),
    ("policy-commitment-no-unrecognized-outputs", "by construction"),
    ("policy-commitment-spends-active-utxo", "`policy-funding-proof`, `policy-funding-proof-depth` (SPV proof against the cosigner's own headers); a later spend of the funding output is not watched (ARCHITECTURE, weaker points)"),
    ("policy-commitment-first-no-htlcs", "`policy-commitment-first-no-htlcs`"),
    ("policy-commitment-htlc-inflight-limit", "`policy-commitment-htlc-inflight`"),
    ("policy-commitment-fee-range", "`policy-commitment-fee-range`"),
    ("policy-commitment-htlc-count-limit", "`policy-commitment-htlc-count`"),
    ("policy-commitment-htlc-routing-balance", "`policy-routing-unbalanced`"),
    ("policy-commitment-htlc-received-spends-active-utxo", "`policy-funding-proof`: incoming HTLCs of a channel whose funding is not proven cover nothing"),
    ("policy-commitment-revocation-pubkey", "by construction: keys derived by the cosigner from stored points (holder points checked by `policy-channel-holder-keys`)"),
    ("policy-commitment-to-self-delay-range", "by construction, from the setup checked by `policy-channel-contest-delay-range` / `policy-channel-counterparty-delay-max`"),
    ("policy-commitment-broadcaster-pubkey", "by construction (derived keys)"),
    ("policy-commitment-countersignatory-pubkey", "by construction (derived keys)"),
    ("policy-commitment-htlc-revocation-pubkey", "by construction (derived keys)"),
    ("policy-commitment-htlc-counterparty-htlc-pubkey", "by construction (derived keys)"),
    ("policy-commitment-htlc-holder-htlc-pubkey", "by construction (derived keys)"),
    ("policy-commitment-htlc-cltv-range", "`policy-htlc-cltv-range` (a block height) and `policy-routing-cltv-delta`; no bound against the chain tip (a cosigner's tip may lag the node's)"),
    ("policy-commitment-htlc-offered-hash-matches", "`policy-routing-unbalanced` (per payment hash, node-wide)"),
    ("policy-commitment-outputs-trimmed", "`policy-commitment-outputs-trimmed`, `policy-channel-dust-limit-range`"),
    ("policy-commitment-previous-revoked", "`policy-commitment-previous-revoked`, `policy-revocation-secret-mismatch`, `policy-revocation-secret-chain`"),
    ("policy-commitment-holder-not-revoked", "`policy-commitment-holder-revoked`"),
    ("policy-commitment-retry-same", "`policy-commitment-retry-same`"),
    ("policy-commitment-anchors-not-when-off", "`policy-channel-safe-type` (anchors are always on) and by construction"),
    ("policy-commitment-anchor-to-holder", "by construction"),
    ("policy-commitment-anchor-to-counterparty", "by construction"),
    ("policy-commitment-anchor-amount", "by construction"),
    ("policy-commitment-anchor-static-remotekey", "`policy-channel-safe-type`"),
    ("policy-commitment-anchor-match-fundingkey", "by construction"),
    ("policy-commitment-payment-settled-preimage", "`policy-commitment-holder-balance`"),
    ("policy-commitment-payment-allowlisted", "`policy-payment-payee`"),
    ("policy-commitment-payment-velocity", "`policy-payment-velocity`"),
    ("policy-commitment-payment-approved", "`policy-payment-approver`"),
    ("policy-commitment-payment-invoiced", "`policy-invoice-overpaid`, `policy-payment-fee-max`"),
    ("policy-no-routing", "`policy-routing-disabled` (`routing = false`)"),
    ("policy-revoke-new-commitment-signed", "`policy-revoke-before-next-commitment`"),
    ("policy-revoke-new-commitment-valid", "`policy-revoke-before-next-commitment` (the newer commitment passed every commitment rule when validated)"),
    ("policy-revoke-not-closed", "`policy-channel-closed`"),
    ("policy-htlc-version", "by construction for HTLC transactions built by the cosigner; ours as broadcast: `policy-sweep-version`"),
    ("policy-htlc-locktime", "by construction; ours as broadcast: `policy-sweep-locktime`"),
    ("policy-htlc-sequence", "by construction"),
    ("policy-htlc-cltv-range", "`policy-htlc-cltv-range`"),
    ("policy-htlc-revocation-pubkey", "by construction; the second-stage output must be the expected script (`policy-sweep-destination`)"),
    ("policy-htlc-to-self-delay", "by construction (as above)"),
    ("policy-htlc-delayed-pubkey", "by construction (as above)"),
    ("policy-htlc-fee-range", "does not apply: HTLC transactions are zero-fee (anchors); fees come from wallet inputs under the PSBT rules"),
    ("policy-mutual-destination-allowlisted", "`policy-close-destination`"),
    ("policy-mutual-value-matches-commitment", "`policy-close-value`"),
    ("policy-mutual-fee-range", "`policy-close-fee-range`"),
    ("policy-mutual-no-pending-htlcs", "`policy-close-pending-htlcs`"),
    ("policy-sweep-version", "`policy-sweep-version`"),
    ("policy-sweep-sequence", "`policy-sweep-sequence`"),
    ("policy-sweep-locktime", "`policy-sweep-locktime`"),
    ("policy-sweep-destination-allowlisted", "`policy-sweep-destination`"),
    ("policy-sweep-fee-range", "`policy-sweep-fee-range`"),
    ("policy-funding-max", "`policy-funding-max`"),
    ("policy-velocity-funding", "`policy-funding-velocity`"),
    ("policy-velocity-transferred", "not kept as such: value leaving is bounded by approvals (`policy-payment-velocity`) and, for forwards, by incoming HTLCs (`policy-routing-unbalanced`)"),
    ("policy-merchant-no-sends", "configuration: no `payment_approvers`, empty `payee_allowlist` and `routing = false` leave no HTLC we could offer"),
    ("policy-routing-balanced", "`policy-routing-unbalanced`: incoming HTLCs of a hash are summed over every channel, so what leaves never exceeds what can be claimed"),
    ("policy-routing-deltas-only-htlc", "`policy-commitment-holder-balance`"),
];

fn vls_markdown() -> String {
    let mut out = String::from("| VLS control | in QLS |\n|---|---|\n");
    for (vls, qls) in VLS_CONTROLS {
        out.push_str(&format!("| `{vls}` | {qls} |\n"));
    }
    out
}

#[test]
fn docs_table_matches_catalog() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/policy-tags.md");
    let want = format!(
        "# Policy tags\n\nGenerated from `signer-core/src/policy/mod.rs` by `signer-core/tests/policy_docs.rs`; do not edit by hand.\nEach tag's action is `error` (refuse) or `warn` (sign and report), per cosigner, in `[policy.actions]` of `cosigner.toml`.\n\n{}\n## VLS's policy controls\n\nEach control of VLS's `docs/policy-controls.md` and the QLS tag that enforces it, or why none is needed. \"By construction\": cosigners build the transaction themselves from stored state, so the node has no field to get wrong.\n\n{}",
        catalog_markdown(),
        vls_markdown()
    );
    if std::env::var("QLS_BLESS").is_ok() {
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(have, want, "docs/policy-tags.md is stale: rerun with QLS_BLESS=1");
}

#[test]
fn every_vls_control_maps_to_tags_qls_has() {
    for (vls, qls) in VLS_CONTROLS {
        for part in qls.split('`').skip(1).step_by(2).filter(|p| p.starts_with("policy-")) {
            assert!(PolicyTag::from_name(part).is_some(), "{vls} maps to unknown tag {part}");
        }
        assert!(!qls.is_empty(), "{vls}");
    }
    let names: std::collections::BTreeSet<_> = VLS_CONTROLS.iter().map(|(v, _)| *v).collect();
    assert_eq!(names.len(), VLS_CONTROLS.len(), "a VLS control listed twice");
}
