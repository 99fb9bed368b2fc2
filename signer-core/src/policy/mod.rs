//! The policy engine: the catalog of policy tags (each declared once, with its meaning,
//! default action and the test that trips it), per-cosigner actions (`error` refuses,
//! `warn` signs and reports), and the verdict over a request's violations.
//!
//! Must never: sign on a violation whose action is `error`, or let a tag exist without a
//! declaration here (the docs table is generated from this catalog).

pub mod allowlist;
pub mod onchain;

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

/// What a cosigner does when a rule is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyAction {
    /// Refuse the request.
    Error,
    /// Sign, and report the violation with the shares.
    Warn,
}

impl PolicyAction {
    pub fn name(self) -> &'static str {
        match self {
            PolicyAction::Error => "error",
            PolicyAction::Warn => "warn",
        }
    }
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "error" => Some(PolicyAction::Error),
            "warn" => Some(PolicyAction::Warn),
            _ => None,
        }
    }
}

macro_rules! policy_tags {
    ($( $variant:ident => $name:literal, $default:ident, $test:literal, $doc:literal; )*) => {
        /// Every policy rule QLS enforces, by stable tag.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum PolicyTag { $( #[doc = $doc] $variant, )* }

        impl PolicyTag {
            pub const ALL: &'static [PolicyTag] = &[$(PolicyTag::$variant),*];
            /// The stable tag, as it appears in configs, refusals and reports.
            pub fn name(self) -> &'static str { match self { $(PolicyTag::$variant => $name,)* } }
            /// One line: what the rule requires.
            pub fn doc(self) -> &'static str { match self { $(PolicyTag::$variant => $doc,)* } }
            pub fn default_action(self) -> PolicyAction { match self { $(PolicyTag::$variant => PolicyAction::$default,)* } }
            /// The test that trips this rule.
            pub fn test_name(self) -> &'static str { match self { $(PolicyTag::$variant => $test,)* } }
            pub fn from_name(s: &str) -> Option<Self> { Self::ALL.iter().copied().find(|t| t.name() == s) }
        }
    };
}

policy_tags! {
    OnchainNoUnknownOutputs => "policy-onchain-no-unknown-outputs", Error,
        "policy::onchain::tests::unknown_output_refused",
        "Every output pays the group's own wallet or an allowlisted script.";
    OnchainFeeRange => "policy-onchain-fee-range", Error,
        "policy::onchain::tests::fee_above_cap_refused",
        "The fee (inputs minus outputs) is non-negative and at most the configured cap.";
    OnchainStandard => "policy-onchain-standard", Error,
        "policy::onchain::tests::nonstandard_transaction_refused",
        "A transaction we sign has a standard version (1 or 2).";
    OnchainMaxSize => "policy-onchain-max-size", Error,
        "policy::onchain::tests::nonstandard_transaction_refused",
        "A transaction we sign has a standard weight (at most 400,000 WU), so it relays.";
    FundingInbound => "policy-funding-inbound", Error,
        "policy::onchain::tests::funding_a_channel_the_counterparty_funds_refused",
        "Our wallet never pays the funding output of a channel the counterparty funds (its commitments give the counterparty the whole value).";
    FundingOutput => "policy-funding-output", Error,
        "policy::onchain::tests::funding_output_must_match_the_setup",
        "A funding transaction pays each named channel's funding output exactly as its stored setup says (script, value, outpoint), for channels we fund.";
    FundingSegwitInputs => "policy-funding-segwit-inputs", Error,
        "policy::onchain::tests::funding_output_must_match_the_setup",
        "Every input of a funding transaction spends a segwit output (its txid cannot be malleated).";
    ChannelSafeType => "policy-channel-safe-type", Error,
        "channel::tests::safe_type_only",
        "The channel type is anchors with zero-fee HTLC transactions and static remote key, nothing else.";
    ChannelContestDelay => "policy-channel-contest-delay-range", Error,
        "channel::tests::contest_delay_out_of_range",
        "The delay we impose on the counterparty's outputs is at least `contest_delay_min` (time to punish a cheat).";
    ChannelCounterpartyDelay => "policy-channel-counterparty-delay-max", Error,
        "channel::tests::counterparty_delay_above_maximum",
        "The delay the counterparty imposes on our outputs is at most `contest_delay_max` (our funds are not locked for long after a force close).";
    ChannelDustLimitRange => "policy-channel-dust-limit-range", Error,
        "taproot_channel::tests::dust_limits_out_of_range_refused",
        "A taproot channel's dust limits are within [354, 546] sat: lower, our commitment could carry outputs that do not relay; higher, the counterparty could trim our HTLCs into fees.";
    CommitmentOutputsTrimmed => "policy-commitment-outputs-trimmed", Error,
        "channel::tests::untrimmed_dust_output_refused",
        "Every output a legacy commitment carries is at least 354 sat (smaller ones must be trimmed), so our commitment is standard and our force close relays.";
    HtlcCltvRange => "policy-htlc-cltv-range", Error,
        "channel::tests::htlc_expiry_as_a_time_refused",
        "Every HTLC expires at a block height (below 500,000,000): a larger expiry is a unix time long past, so its offerer could time it out at once.";
    ChannelHolderKeys => "policy-channel-holder-keys", Error,
        "channel::tests::setup_with_foreign_holder_keys_refused",
        "A channel's holder keys are the quorum's: derived by this cosigner from the node seed, or attested by a key holder it pins (identity signature over channel id and keys).";
    RoutingFailAfterFulfil => "policy-routing-fail-after-fulfil", Error,
        "channel::tests::incoming_htlc_failed_after_outgoing_fulfilled",
        "An incoming HTLC whose payment we already settled downstream (preimage known) leaves a commitment only claimed: our funds grow by its amount.";
    FundingCountersigned => "policy-funding-initial-commitment-countersigned", Error,
        "policy::onchain::tests::funding_before_first_commitment_countersigned_refused",
        "A funding transaction is signed only after the counterparty's signature on our first holder commitment was validated.";
    FundingProof => "policy-funding-proof", Error,
        "funding_proof::tests::a_proof_holds_only_for_the_stored_output_in_our_chain_at_depth",
        "A channel's funding counts as confirmed only by an SPV proof: the transaction pays the stored funding output and sits, by its merkle branch, in a block of this cosigner's own header chain; until then its incoming HTLCs cover no forward.";
    FundingProofDepth => "policy-funding-proof-depth", Error,
        "funding_proof::tests::a_proof_holds_only_for_the_stored_output_in_our_chain_at_depth",
        "A funding proof counts only once its block is at least `funding_min_depth` deep in this cosigner's chain (a shallow block can still be reorganised away).";
    FundingVelocity => "policy-funding-velocity", Error,
        "channel::tests::funding_velocity_limits_channels_we_fund",
        "Channels we fund add up to at most `funding_velocity_max_sat` per velocity window (counted at setup, 24 buckets, bounded memory).";
    FundingMax => "policy-funding-max", Error,
        "policy::onchain::tests::funding_above_the_channel_maximum_refused",
        "A channel we fund is at most the configured maximum value.";
    NodeInvoiceShape => "policy-node-invoice-shape", Error,
        "node_key::tests::invoice_digest_is_ldks_signable_hash_and_needs_a_real_invoice",
        "The node key signs an invoice only as a BOLT 11 invoice that parses, with the request's payment hash and amount (its digest rebuilt by the cosigner).";
    NodeGossipShape => "policy-node-gossip-shape", Error,
        "node_key::tests::gossip_must_parse_as_its_kind_on_our_chain",
        "The node key signs gossip only as a message that parses as its kind, on this cosigner's chain, never one that starts like an LN signmessage.";
    ChannelIdReuse => "policy-channel-id-reuse", Error,
        "channel::tests::channel_id_reuse",
        "A channel's keys are set up once; a second setup must be identical.";
    ChannelClosed => "policy-channel-closed", Error,
        "channel::tests::no_update_after_close",
        "No commitment, revocation or close is signed after the channel was closed.";
    FundingNoPush => "policy-funding-no-push", Error,
        "channel::tests::outbound_push_refused",
        "A channel we fund starts with the whole balance ours (no push to the counterparty).";
    CommitmentSequence => "policy-commitment-sequence", Error,
        "channel::tests::commitment_number_skips",
        "Commitments are signed in order: the same number again or the next one.";
    CommitmentRetrySame => "policy-commitment-retry-same", Error,
        "channel::tests::retry_with_other_data",
        "A commitment signed again carries identical data.";
    CommitmentPreviousRevoked => "policy-commitment-previous-revoked", Error,
        "channel::tests::third_unrevoked_commitment",
        "A new counterparty commitment is signed only when the one before the previous is revoked.";
    CommitmentFirstNoHtlcs => "policy-commitment-first-no-htlcs", Error,
        "channel::tests::first_commitment_with_htlc",
        "The first commitment has no HTLCs.";
    CommitmentHtlcCount => "policy-commitment-htlc-count", Error,
        "channel::tests::too_many_htlcs",
        "At most the configured number of HTLC outputs per commitment.";
    CommitmentHtlcInflight => "policy-commitment-htlc-inflight", Error,
        "channel::tests::inflight_above_limit",
        "The HTLCs of a commitment carry at most the configured amount in flight.";
    CommitmentFeeRange => "policy-commitment-fee-range", Error,
        "channel::tests::commitment_feerate_out_of_range",
        "The commitment feerate is within the configured range.";
    CommitmentValue => "policy-commitment-value", Error,
        "channel::tests::outputs_exceed_channel_value",
        "Outputs, fee and anchors add up to the channel value, short of it by at most the dust allowance.";
    CommitmentHolderBalance => "policy-commitment-holder-balance", Error,
        "channel::tests::balance_drop_without_preimage",
        "Our balance falls only by HTLCs we offered that were fulfilled (preimage known), fee growth we pay, output rounding (< 1 sat) and, when we fund, the anchors (660 sat); never by the dust allowance.";
    CommitmentCounterpartySig => "policy-commitment-counterparty-sig", Error,
        "channel::tests::holder_commitment_bad_signature",
        "The counterparty's signature on our holder commitment is valid (we can broadcast it).";
    CommitmentHtlcSigs => "policy-commitment-htlc-sigs", Error,
        "channel::tests::holder_commitment_htlc_signatures_missing_or_bad",
        "The counterparty signed each HTLC transaction of our holder commitment, validly (we can claim every HTLC output after a force close).";
    CommitmentHolderRevoked => "policy-commitment-holder-revoked", Error,
        "channel::tests::revoked_holder_commitment_not_signed",
        "A holder commitment that was revoked is never signed.";
    CommitmentHolderUnknown => "policy-commitment-holder-unknown", Error,
        "channel::tests::unknown_holder_commitment_not_signed",
        "Only the latest validated holder commitment, with identical data, is signed for broadcast.";
    RevokeBeforeNext => "policy-revoke-before-next-commitment", Error,
        "channel::tests::revoke_before_next_commitment",
        "A holder commitment is revoked only after a newer one was signed by the counterparty and validated.";
    RevocationSecretMismatch => "policy-revocation-secret-mismatch", Error,
        "channel::tests::wrong_revocation_secret",
        "A counterparty revocation secret matches the point of a commitment we signed and that is not yet revoked.";
    RevocationSecretChain => "policy-revocation-secret-chain", Error,
        "channel::tests::revocation_secret_off_the_bolt3_chain_refused",
        "A counterparty revocation secret derives the earlier ones (BOLT 3 shachain), so the compact secret store can rebuild every revoked commitment's key for a justice claim.";
    ClosePendingHtlcs => "policy-close-pending-htlcs", Error,
        "channel::tests::close_with_pending_htlc",
        "A cooperative close is signed only with no HTLC pending.";
    CloseDestination => "policy-close-destination", Error,
        "channel::tests::close_to_foreign_script",
        "Our cooperative-close output pays our wallet or an allowlisted script.";
    CloseValue => "policy-close-value", Error,
        "channel::tests::close_below_balance",
        "Our cooperative-close output is our balance of the last commitment less the fee we pay.";
    CloseFeeRange => "policy-close-fee-range", Error,
        "channel::tests::close_fee_above_cap",
        "The cooperative-close fee is at most the configured cap.";
    CloseOutputsStandard => "policy-close-outputs-standard", Error,
        "channel::tests::close_with_a_dust_output_refused",
        "Each output of a cooperative close is above its script's dust threshold: a close that never relays would leave the channel closed to us (no force close is signed after it).";
    SweepDestination => "policy-sweep-destination", Error,
        "channel::tests::sweep_to_foreign_script",
        "Sweeps, anchor spends and HTLC transactions pay only our wallet, an allowlisted script or the expected second-stage output.";
    SweepSource => "policy-sweep-source", Error,
        "channel::tests::sweep_of_unknown_output",
        "A sweep or anchor spend spends our output of the holder commitment we force-closed with.";
    JusticeRevoked => "policy-justice-revoked", Error,
        "channel::tests::justice_takes_only_a_proven_revoked_counterparty_commitment_to_our_wallet",
        "A justice signature (our revocation key) is made only for a counterparty commitment the counterparty revoked (its secret in the store): for legacy channels the one an SPV proof showed spending the funding output, and only for its outputs (at their proven value) or its second-level outputs.";
    ChannelAnnouncement => "policy-channel-announcement", Error,
        "channel::tests::a_channel_announcement_is_signed_only_for_this_proven_channel_and_its_keys",
        "The funding key signs a channel announcement only as exactly one announcement (nothing after it) of our chain, for this channel's short channel id from the cosigner's own funding proof, with our and the counterparty's funding keys, while the channel is open: no transaction preimage or other channel's announcement can be signed that way.";
    CounterpartyClaimSource => "policy-counterparty-claim-source", Error,
        "channel::tests::claims_on_the_counterpartys_commitment_spend_only_our_htlcs_of_the_one_we_signed",
        "A claim on the counterparty's commitment spends an HTLC output of the commitment an SPV proof showed spending the funding output, which is one we signed and hold (latest or previous unrevoked, rebuilt to the same txid), at that HTLC's output index and value.";
    SweepSequence => "policy-sweep-sequence", Error,
        "channel::tests::sweep_before_delay",
        "A to_local sweep waits the contest delay (input sequence).";
    SweepVersion => "policy-sweep-version", Error,
        "sweep_format::tests::a_sweep_needs_a_standard_version_and_a_locktime_reaching_the_expiry",
        "A sweep, anchor spend or HTLC transaction has version 2 or 3: standard, and able to carry relative delays (else it is never mined and the output waits).";
    SweepLocktime => "policy-sweep-locktime", Error,
        "sweep_format::tests::a_sweep_needs_a_standard_version_and_a_locktime_reaching_the_expiry",
        "A transaction timing out an HTLC output has a block-height locktime at or past the HTLC's expiry (else it is invalid as signed).";
    SweepFeeRange => "policy-sweep-fee-range", Error,
        "channel::tests::sweep_fee_above_cap",
        "A sweep's fee is at most the configured cap.";
    HtlcPreimage => "policy-htlc-preimage", Error,
        "channel::tests::htlc_success_wrong_preimage",
        "An HTLC-success transaction carries the HTLC's preimage.";
    RoutingUnbalanced => "policy-routing-unbalanced", Error,
        "channel::tests::forward_without_incoming",
        "An HTLC we offer is matched by incoming HTLCs of the same payment hash (at least as much) or by an approved payment.";
    RoutingCltvDelta => "policy-routing-cltv-delta", Error,
        "channel::tests::forward_cltv_delta_too_small",
        "A forwarded HTLC expires at least `forward_cltv_delta_min` blocks before the earliest incoming HTLC it forwards.";
    InvoiceOverpaid => "policy-invoice-overpaid", Error,
        "channel::payment_approval::tests::approving_more_than_the_invoice_asks_refused",
        "A payment is never approved for more than its invoice asks.";
    PaymentFeeMax => "policy-payment-fee-max", Error,
        "channel::tests::own_payment_fee_above_cap",
        "Our own payment's HTLCs add up to at most its approved amount plus the routing fee cap (`payment_fee_max_base_msat` + `payment_fee_max_ppm` of the amount).";
    RoutingDisabled => "policy-routing-disabled", Error,
        "channel::payments::tests::a_node_that_does_not_route_refuses_forwards",
        "With `routing = false`, every HTLC we offer is one of our own approved payments: no forward, so incoming HTLCs cover nothing.";
    InvoicePaidTwice => "policy-invoice-paid-twice", Error,
        "channel::tests::invoice_paid_twice",
        "An approved payment that was settled is never paid again.";
    PaymentApprover => "policy-payment-approver", Error,
        "channel::payment_approval::tests::payment_approval_needs_an_approver_signature",
        "A payment is approved only with a valid signature by one of the configured payment approvers (operator keys the node does not hold).";
    PaymentPayee => "policy-payment-payee", Error,
        "channel::payment_approval::tests::payment_to_unlisted_payee_needs_an_approver",
        "A payment without an operator approval needs a valid invoice from an allowlisted payee.";
    PaymentVelocity => "policy-payment-velocity", Error,
        "channel::payment_approval::tests::payment_velocity_limit",
        "Payments approved within `velocity_window_secs` add up to at most `velocity_max_msat` (fixed buckets, bounded memory).";
    InvoiceInvalid => "policy-invoice-invalid", Error,
        "channel::payment_approval::tests::invoice_for_another_hash_or_forged",
        "An invoice given for a payment parses, carries a valid payee signature and is for the payment's hash.";
    InvoiceExpired => "policy-invoice-expired", Error,
        "channel::payment_approval::tests::expired_invoice_or_approval_refused",
        "A payment is not approved after its approval or its invoice expired.";
    ChainHeaders => "policy-chain-headers", Error,
        "chain::tests::follows_the_most_work_branch_and_refuses_what_does_not_connect",
        "Block headers connect to the cosigner's known chain, carry valid proof of work within the network's rules, and a new branch has more work.";
    HeartbeatTip => "policy-heartbeat-tip", Error,
        "chain::tests::heartbeat_attests_only_a_fresh_own_tip",
        "A heartbeat attests the cosigner's own chain tip (a block it has, on its most-work branch).";
    HeartbeatTipAge => "policy-heartbeat-tip-age", Error,
        "chain::tests::heartbeat_attests_only_a_fresh_own_tip",
        "The tip a heartbeat attests is no older than `heartbeat_tip_max_age_secs` by the cosigner's clock (a node withholding blocks is seen).";
    TaprootVerificationNonce => "policy-taproot-verification-nonce", Error,
        "taproot_channel::holder_tests::a_verification_nonce_signs_only_its_own_holder_commitment",
        "A taproot holder commitment is accepted only in the session of its own verification nonce: one stored nonce per cosigner, this cosigner's the one it made for that commitment.";
    NodeStateBounded => "policy-node-state-bounded", Error,
        "channel::tests::payment_index_and_channel_store_bounded",
        "The payment index stays within `max_payments` entries (those that no longer matter are pruned first); a new one is refused when full.";
    NodeChannelsBounded => "policy-node-channels-bounded", Error,
        "channel::tests::payment_index_and_channel_store_bounded",
        "Each channel store (legacy, taproot) holds at most `max_channels` channels (closed legacy ones past their retention are pruned first); a new setup is refused when full.";
}

/// A broken rule and the facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub tag: PolicyTag,
    pub detail: String,
}

impl From<&Violation> for qls_protocol::Violation {
    fn from(v: &Violation) -> Self {
        qls_protocol::Violation { tag: v.tag.name().into(), detail: v.detail.clone() }
    }
}

/// On-chain rules' parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnchainPolicy {
    /// Scripts (besides the group's own wallet) that outputs may pay: the configured ones
    /// and those derived from allowlisted xpubs ([`allowlist::xpub_scripts`]).
    pub allowlisted_scripts: alloc::collections::BTreeSet<bitcoin::ScriptBuf>,
    /// Largest fee, in satoshis, a PSBT may pay.
    pub fee_sat_max: u64,
    /// Largest channel we fund, in satoshis.
    pub funding_sat_max: u64,
}

/// Default [`OnchainPolicy::funding_sat_max`]: 1 BTC.
pub const DEFAULT_FUNDING_SAT_MAX: u64 = 100_000_000;

impl OnchainPolicy {
    pub fn allows(&self, script: &bitcoin::Script) -> bool {
        self.allowlisted_scripts.contains(script)
    }
}

impl Default for OnchainPolicy {
    fn default() -> Self {
        Self { allowlisted_scripts: Default::default(), fee_sat_max: 50_000, funding_sat_max: DEFAULT_FUNDING_SAT_MAX }
    }
}

/// Channel rules' parameters (`[policy.channel]` in `cosigner.toml`; unset keys default).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChannelPolicy {
    /// Smallest delay we impose on the counterparty's outputs (time to punish a cheat).
    pub contest_delay_min: u16,
    /// Largest delay the counterparty may impose on ours.
    pub contest_delay_max: u16,
    pub feerate_min_per_kw: u32,
    pub feerate_max_per_kw: u32,
    pub max_htlcs: u16,
    pub max_inflight_msat: u64,
    /// Value that may vanish into dust HTLCs and rounding per commitment.
    pub dust_allowance_sat: u64,
    pub close_fee_max_sat: u64,
    pub sweep_fee_max_sat: u64,
    /// Entries the node-wide payment index may hold.
    pub max_payments: usize,
    /// Blocks a forward must leave between its outgoing and incoming HTLC expiries (time
    /// to claim the incoming HTLC on-chain after the outgoing one is claimed from us).
    pub forward_cltv_delta_min: u32,
    /// Keys (33-byte secp256k1, hex) whose signature approves a payment the node makes.
    /// Empty: no payment of our own can be approved (forwards still work).
    pub payment_approvers: Vec<alloc::string::String>,
    /// Payee node ids (33-byte hex) the node may pay with their signed invoice alone.
    pub payee_allowlist: Vec<alloc::string::String>,
    /// The velocity window, seconds (kept in 24 buckets).
    pub velocity_window_secs: u64,
    /// Most that payments approved within one window may add up to.
    pub velocity_max_msat: u64,
    /// Channels the store may hold (open ones and closed ones not yet pruned).
    pub max_channels: usize,
    /// How long a closed channel is kept (its sweeps need it) before it may be pruned.
    pub closed_channel_retention_secs: u64,
    /// Oldest chain tip (by block time) a heartbeat may attest.
    pub heartbeat_tip_max_age_secs: u64,
    /// Confirmations (the block included) a funding transaction needs before the
    /// channel's incoming HTLCs cover forwards.
    pub funding_min_depth: u32,
    /// Most that channels we fund may add up to within one velocity window.
    pub funding_velocity_max_sat: u64,
    /// Whether this node forwards payments. `false` (a wallet that does not route, VLS's
    /// `policy-no-routing`): an HTLC we offer must be our own approved payment, so
    /// incoming HTLCs, real or invented, can never send anything out.
    pub routing: bool,
    /// Routing fees our own payments may pay on top of the approved amount: this base...
    pub payment_fee_max_base_msat: u64,
    /// ...plus this share of the amount, in millionths.
    pub payment_fee_max_ppm: u32,
}

impl Default for ChannelPolicy {
    fn default() -> Self {
        Self {
            contest_delay_min: 144,
            contest_delay_max: 2016,
            feerate_min_per_kw: 253,
            feerate_max_per_kw: 100_000,
            max_htlcs: 483,
            max_inflight_msat: 10_000_000_000,
            dust_allowance_sat: 50_000,
            close_fee_max_sat: 100_000,
            sweep_fee_max_sat: 100_000,
            max_payments: 100_000,
            forward_cltv_delta_min: 34,
            payment_approvers: Vec::new(),
            payee_allowlist: Vec::new(),
            velocity_window_secs: 86_400,
            velocity_max_msat: 10_000_000_000,
            max_channels: 1_000_000,
            closed_channel_retention_secs: 90 * 86_400,
            heartbeat_tip_max_age_secs: 3 * 3_600,
            funding_min_depth: 3,
            funding_velocity_max_sat: 500_000_000,
            routing: true,
            payment_fee_max_base_msat: 50_000,
            payment_fee_max_ppm: 10_000,
        }
    }
}

/// One cosigner's policy: actions per tag (defaults where unset) and rule parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyConfig {
    pub actions: BTreeMap<PolicyTag, PolicyAction>,
    pub onchain: OnchainPolicy,
    pub channel: ChannelPolicy,
}

impl PolicyConfig {
    pub fn action(&self, tag: PolicyTag) -> PolicyAction {
        self.actions.get(&tag).copied().unwrap_or_else(|| tag.default_action())
    }

    /// A policy that only warns: what a compromised or careless cosigner would run.
    pub fn permissive() -> Self {
        Self { actions: PolicyTag::ALL.iter().map(|t| (*t, PolicyAction::Warn)).collect(), ..Self::default() }
    }
}

/// The outcome of the policy engine over one request's violations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    pub refused: Vec<Violation>,
    pub warned: Vec<Violation>,
}

impl Verdict {
    pub fn approves(&self) -> bool {
        self.refused.is_empty()
    }
}

pub fn judge(violations: Vec<Violation>, config: &PolicyConfig) -> Verdict {
    let (refused, warned) = violations.into_iter().partition(|v| config.action(v.tag) == PolicyAction::Error);
    Verdict { refused, warned }
}

/// The docs table of every tag (Markdown), generated from the catalog.
pub fn catalog_markdown() -> String {
    let mut out = String::from("| tag | meaning | default | test that trips it |\n|---|---|---|---|\n");
    for t in PolicyTag::ALL {
        let _ = writeln!(out, "| `{}` | {} | {} | `{}` |", t.name(), t.doc(), t.default_action().name(), t.test_name());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_names_are_unique_and_parse_back() {
        for t in PolicyTag::ALL {
            assert_eq!(PolicyTag::from_name(t.name()), Some(*t));
            assert!(t.name().starts_with("policy-"));
        }
        assert_eq!(PolicyTag::from_name("policy-nonexistent"), None);
    }

    #[test]
    fn warn_action_moves_violation_out_of_refusals() {
        let v = Violation { tag: PolicyTag::OnchainFeeRange, detail: "x".into() };
        assert!(!judge(alloc::vec![v.clone()], &PolicyConfig::default()).approves());
        let verdict = judge(alloc::vec![v.clone()], &PolicyConfig::permissive());
        assert!(verdict.approves());
        assert_eq!(verdict.warned, alloc::vec![v]);
    }

    #[test]
    fn docs_table_is_generated_from_catalog() {
        let table = catalog_markdown();
        for t in PolicyTag::ALL {
            assert!(table.contains(t.name()) && table.contains(t.test_name()));
        }
    }
}
