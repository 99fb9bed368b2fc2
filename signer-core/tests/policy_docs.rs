//! The policy-tag table in `docs/policy-tags.md` is generated from the catalog in
//! `signer-core::policy`; this test fails when they differ. Regenerate with
//! `QLS_BLESS=1 cargo test -p qls-signer-core --test policy_docs`.

use qls_signer_core::policy::catalog_markdown;

#[test]
fn docs_table_matches_catalog() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/policy-tags.md");
    let want = format!(
        "# Policy tags\n\nGenerated from `signer-core/src/policy/mod.rs` by `signer-core/tests/policy_docs.rs`; do not edit by hand.\nEach tag's action is `error` (refuse) or `warn` (sign and report), per cosigner, in `[policy.actions]` of `cosigner.toml`.\n\n{}",
        catalog_markdown()
    );
    if std::env::var("QLS_BLESS").is_ok() {
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(have, want, "docs/policy-tags.md is stale: rerun with QLS_BLESS=1");
}
