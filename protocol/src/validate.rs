//! Post-decode bound checks: every length and count a decoded message carries is held
//! against [`crate::limits`] before any handler sees it.
//!
//! Must never: accept a message with an out-of-bound field; it returns the first
//! offending field with the value seen and the limit.

use alloc::vec::Vec;

use crate::channel::*;
use crate::limits::*;
use crate::messages::*;
use crate::taproot::*;

/// A decoded message with a field outside its bound.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}` is {seen}, limit {limit}")]
pub struct ValidationError {
    pub field: &'static str,
    pub seen: usize,
    pub limit: usize,
}

/// Bound checks for a decoded message.
pub trait Validate {
    fn validate(&self) -> Result<(), ValidationError>;
}

fn at_most(field: &'static str, seen: usize, limit: usize) -> Result<(), ValidationError> {
    if seen > limit {
        return Err(ValidationError { field, seen, limit });
    }
    Ok(())
}

fn exactly(field: &'static str, seen: usize, want: usize) -> Result<(), ValidationError> {
    if seen != want {
        return Err(ValidationError { field, seen, limit: want });
    }
    Ok(())
}

fn blobs(field: &'static str, items: &[Vec<u8>], count: usize, len: usize) -> Result<(), ValidationError> {
    at_most(field, items.len(), count)?;
    items.iter().try_for_each(|b| at_most(field, b.len(), len))
}

fn violations(v: &[Violation]) -> Result<(), ValidationError> {
    at_most("violations", v.len(), MAX_VIOLATIONS)?;
    v.iter().try_for_each(|v| {
        at_most("violation.tag", v.tag.len(), MAX_DETAIL_BYTES)?;
        at_most("violation.detail", v.detail.len(), MAX_DETAIL_BYTES)
    })
}

fn detail(d: &str) -> Result<(), ValidationError> {
    at_most("detail", d.len(), MAX_DETAIL_BYTES)
}

impl Validate for DkgRound1Message {
    fn validate(&self) -> Result<(), ValidationError> {
        at_most("round1.package", self.package.len(), MAX_FROST_BLOB_BYTES)?;
        exactly("round1.ephemeral_pubkey", self.ephemeral_pubkey.len(), 33)?;
        at_most("round1.identity_sig", self.identity_sig.len(), MAX_IDENTITY_SIG_BYTES)
    }
}

fn sealed(s: &[SealedPackage]) -> Result<(), ValidationError> {
    at_most("sealed", s.len(), MAX_COSIGNERS)?;
    s.iter().try_for_each(|p| at_most("sealed.ciphertext", p.ciphertext.len(), MAX_FROST_BLOB_BYTES))
}

fn key_info(k: &KeyInfo) -> Result<(), ValidationError> {
    at_most("key.public_key_package", k.public_key_package.len(), MAX_FROST_BLOB_BYTES)
}

impl Validate for SignRequest {
    fn validate(&self) -> Result<(), ValidationError> {
        if let SignPayload::Psbt { psbt, funding_channels } = &self.payload {
            at_most("payload.psbt", psbt.len(), MAX_PSBT_BYTES)?;
            at_most("payload.funding_channels", funding_channels.len(), MAX_FUNDING_CHANNELS)?;
        }
        if let SignPayload::Taproot { item, .. } = &self.payload {
            frost_item(item)?;
        }
        at_most("items", self.items.len(), MAX_SIGN_ITEMS)?;
        self.items
            .iter()
            .try_for_each(|i| at_most("items.signing_package", i.signing_package.len(), MAX_FROST_BLOB_BYTES))
    }
}

impl Validate for CosignerRequest {
    fn validate(&self) -> Result<(), ValidationError> {
        match self {
            CosignerRequest::Hello => Ok(()),
            CosignerRequest::DkgRound1 { participants, threshold, .. } => {
                at_most("participants", participants.len(), MAX_COSIGNERS)?;
                at_most("threshold", *threshold as usize, participants.len())?;
                participants.iter().try_for_each(|p| at_most("participant.cert_der", p.cert_der.len(), MAX_CERT_BYTES))
            }
            CosignerRequest::DkgRound2 { round1, .. } => {
                at_most("round1", round1.len(), MAX_COSIGNERS)?;
                round1.iter().try_for_each(Validate::validate)
            }
            CosignerRequest::DkgFinish { sealed: s, .. } => sealed(s),
            CosignerRequest::NonceCommitments { count, .. } => {
                at_most("count", *count as usize, MAX_NONCE_BATCH as usize)
            }
            CosignerRequest::Sign(req) => req.validate(),
            CosignerRequest::ImportDealerShare { key_package, public_key_package } => {
                at_most("key_package", key_package.len(), MAX_FROST_BLOB_BYTES)?;
                at_most("public_key_package", public_key_package.len(), MAX_FROST_BLOB_BYTES)
            }
            CosignerRequest::Approve { subject: s, holder_keys } => {
                subject(s)?;
                holder_keys.as_ref().map_or(Ok(()), attestation)
            }
            CosignerRequest::KeyHolderSign { subject: s, approvals } => {
                subject(s)?;
                at_most("approvals", approvals.len(), MAX_COSIGNERS)?;
                approvals.iter().try_for_each(approval)
            }
            CosignerRequest::ChannelKeys { .. } | CosignerRequest::PerCommitmentPoint { .. } => Ok(()),
            CosignerRequest::MusigLeaf => Ok(()),
            CosignerRequest::TaprootSetup { setup, leaves, .. } => {
                taproot_request(&TaprootRequest::Setup(setup.clone()))?;
                at_most("leaves", leaves.len(), MAX_COSIGNERS)?;
                leaves.iter().try_for_each(musig_leaf)
            }
            CosignerRequest::TaprootNonces { count, .. } => at_most("count", *count as usize, MAX_NONCE_BATCH as usize),
            CosignerRequest::TaprootSign { request, session, .. } => {
                taproot_request(request)?;
                nested_session(session)
            }
            CosignerRequest::TaprootApply { request, .. } => taproot_request(request),
            CosignerRequest::TaprootVerificationNonce { .. } => Ok(()),
            CosignerRequest::TaprootFrostTargets { item, .. } => frost_item(item),
            CosignerRequest::TaprootEscrowDeal { .. } | CosignerRequest::TaprootEscrowRelease { .. } => Ok(()),
            CosignerRequest::TaprootEscrowKeep { deals, .. } => {
                at_most("deals", deals.len(), MAX_COSIGNERS)?;
                deals.iter().try_for_each(escrow_deal)
            }
        }
    }
}

impl Validate for CosignerResponse {
    fn validate(&self) -> Result<(), ValidationError> {
        match self {
            CosignerResponse::Hello { keys, .. } => {
                at_most("keys", keys.len(), MAX_KEYS)?;
                keys.iter().try_for_each(key_info)
            }
            CosignerResponse::DkgRound1(m) => m.validate(),
            CosignerResponse::DkgRound2 { sealed: s } => sealed(s),
            CosignerResponse::DkgFinished(k) | CosignerResponse::Imported(k) => key_info(k),
            CosignerResponse::NonceCommitments { commitments, .. } => {
                at_most("commitments", commitments.len(), MAX_NONCE_BATCH as usize)?;
                commitments
                    .iter()
                    .try_for_each(|c| at_most("commitments.commitments", c.commitments.len(), MAX_FROST_BLOB_BYTES))
            }
            CosignerResponse::Shares { shares, warnings } => {
                blobs("shares", shares, MAX_SIGN_ITEMS, MAX_FROST_BLOB_BYTES)?;
                violations(warnings)
            }
            CosignerResponse::Refused { violations: v } => violations(v),
            CosignerResponse::Approved { approval: a, warnings } => {
                approval(a)?;
                violations(warnings)
            }
            CosignerResponse::KeyHolderSigned(o) => output(o),
            CosignerResponse::ChannelKeys { info, node_id } => {
                points(&info.points)?;
                attestation(&info.attestation)?;
                exactly("node_id", node_id.len(), 33)
            }
            CosignerResponse::Point(p) => exactly("point", p.len(), 33),
            CosignerResponse::MusigLeaf(l) => musig_leaf(l),
            CosignerResponse::TaprootApplied { warnings } => violations(warnings),
            CosignerResponse::TaprootEscrowDealt(deal) => escrow_deal(deal),
            CosignerResponse::TaprootEscrowShare { counterparty_funding, .. } => {
                exactly("counterparty_funding", counterparty_funding.len(), 33)
            }
            CosignerResponse::TaprootPartialSig { counterparty_funding, warnings, .. } => {
                exactly("counterparty_funding", counterparty_funding.len(), 33)?;
                violations(warnings)
            }
            CosignerResponse::TaprootNonces(n) => {
                at_most("nonces", n.len(), MAX_NONCE_BATCH as usize)?;
                n.iter().try_for_each(|n| exactly("pubnonce", n.pubnonce.len(), 66))
            }
            CosignerResponse::TaprootFrostTargets(t) => frost_targets(t),
            CosignerResponse::Error { detail: d, .. } => detail(d),
        }
    }
}

impl Validate for NodeRequest {
    fn validate(&self) -> Result<(), ValidationError> {
        match self {
            NodeRequest::GroupInfo | NodeRequest::SignMessage { .. } => Ok(()),
            NodeRequest::SignPsbt { psbt, funding_channels } => {
                at_most("psbt", psbt.len(), MAX_PSBT_BYTES)?;
                at_most("funding_channels", funding_channels.len(), MAX_FUNDING_CHANNELS)
            }
            NodeRequest::Channel { request, .. } => channel_request(request),
            NodeRequest::NodeKey(r) => node_key(r),
            NodeRequest::Sweep(s) => sweep(s),
            NodeRequest::ChannelKeys { .. } | NodeRequest::PerCommitmentPoint { .. } => Ok(()),
            NodeRequest::TaprootChannelKeys { .. } => Ok(()),
            NodeRequest::Taproot { request, counterparty_nonce, reserved, .. } => {
                taproot_request(request)?;
                at_most("reserved", reserved.len(), MAX_COSIGNERS)?;
                reserved.iter().try_for_each(|n| exactly("reserved.pubnonce", n.pubnonce.len(), 66))?;
                counterparty_nonce.as_ref().map_or(Ok(()), |n| exactly("counterparty_nonce", n.len(), 66))
            }
            NodeRequest::TaprootNonce { .. } | NodeRequest::TaprootVerificationNonce { .. } => Ok(()),
            NodeRequest::TaprootFrost { item, .. } => frost_item(item),
        }
    }
}

fn taproot_request(r: &TaprootRequest) -> Result<(), ValidationError> {
    match r {
        TaprootRequest::Setup(s) => {
            let c = &s.counterparty;
            for (f, p) in [
                ("counterparty.funding", &c.funding),
                ("counterparty.revocation", &c.revocation),
                ("counterparty.payment", &c.payment),
                ("counterparty.delayed_payment", &c.delayed_payment),
                ("counterparty.htlc", &c.htlc),
            ] {
                exactly(f, p.len(), 33)?;
            }
            Ok(())
        }
        TaprootRequest::SignCounterpartyCommitment { commitment, outbound_preimages } => {
            taproot_commitment(commitment)?;
            at_most("outbound_preimages", outbound_preimages.len(), MAX_PREIMAGES)
        }
        TaprootRequest::ValidateHolderCommitment {
            commitment,
            verification,
            counterparty_nonce,
            counterparty_psig,
            counterparty_htlc_sigs,
            outbound_preimages,
        } => {
            taproot_commitment(commitment)?;
            at_most("verification", verification.len(), MAX_COSIGNERS)?;
            verification.iter().try_for_each(|n| exactly("verification.pubnonce", n.pubnonce.len(), 66))?;
            exactly("counterparty_nonce", counterparty_nonce.len(), 66)?;
            exactly("counterparty_psig", counterparty_psig.len(), 32)?;
            blobs("counterparty_htlc_sigs", counterparty_htlc_sigs, MAX_COMMITMENT_HTLCS, 65)?;
            at_most("outbound_preimages", outbound_preimages.len(), MAX_PREIMAGES)
        }
        TaprootRequest::CounterpartyRevocation { .. }
        | TaprootRequest::RevokeHolderCommitment { .. }
        | TaprootRequest::SignHolderCommitment { .. } => Ok(()),
        TaprootRequest::FundingConfirmed(p) | TaprootRequest::FundingSpent(p) => funding_proof(p),
        TaprootRequest::SignClosing { holder_script, counterparty_script, .. } => {
            at_most("holder_script", holder_script.len(), MAX_SCRIPT_BYTES)?;
            at_most("counterparty_script", counterparty_script.len(), MAX_SCRIPT_BYTES)
        }
    }
}

fn taproot_commitment(c: &TaprootCommitmentInfo) -> Result<(), ValidationError> {
    exactly("per_commitment_point", c.per_commitment_point.len(), 33)?;
    at_most("htlcs", c.htlcs.len(), MAX_COMMITMENT_HTLCS)
}

fn frost_item(i: &TaprootFrostItem) -> Result<(), ValidationError> {
    match i {
        TaprootFrostItem::CounterpartyHtlcs { .. } | TaprootFrostItem::HolderHtlc { .. } => Ok(()),
        TaprootFrostItem::Sweep { tx, prevouts, .. } | TaprootFrostItem::Justice { tx, prevouts, .. } => {
            at_most("tx", tx.len(), MAX_TX_BYTES)?;
            at_most("prevouts", prevouts.len(), MAX_SWEEP_INPUTS)?;
            prevouts.iter().try_for_each(|p| at_most("prevouts.script_pubkey", p.script_pubkey.len(), MAX_SCRIPT_BYTES))
        }
    }
}

fn frost_targets(t: &[FrostTarget]) -> Result<(), ValidationError> {
    at_most("targets", t.len(), MAX_COMMITMENT_HTLCS)?;
    t.iter().try_for_each(|t| at_most("targets.tweaks", t.tweaks.len(), MAX_KEY_TWEAKS))
}

fn musig_leaf(l: &MusigLeaf) -> Result<(), ValidationError> {
    at_most("leaf.cert_der", l.cert_der.len(), MAX_CERT_BYTES)?;
    exactly("leaf.leaf", l.leaf.len(), 33)?;
    at_most("leaf.identity_sig", l.identity_sig.len(), MAX_IDENTITY_SIG_BYTES)
}

/// A sealed share is a 32-byte scalar plus the 16-byte Poly1305 tag.
const ESCROW_SEALED_BYTES: usize = 48;

fn escrow_deal(d: &EscrowDeal) -> Result<(), ValidationError> {
    at_most("deal.commitments", d.commitments.len(), MAX_COSIGNERS)?;
    d.commitments.iter().try_for_each(|c| exactly("deal.commitments", c.len(), 33))?;
    at_most("deal.sealed", d.sealed.len(), MAX_COSIGNERS)?;
    d.sealed.iter().try_for_each(|p| exactly("deal.sealed.ciphertext", p.ciphertext.len(), ESCROW_SEALED_BYTES))
}

fn nested_session(s: &NestedSession) -> Result<(), ValidationError> {
    at_most("leaf_nonces", s.leaf_nonces.len(), MAX_COSIGNERS)?;
    s.leaf_nonces.iter().try_for_each(|n| exactly("leaf_nonces.pubnonce", n.pubnonce.len(), 66))?;
    exactly("counterparty_nonce", s.counterparty_nonce.len(), 66)
}

fn holder_keys(k: &TaprootHolderKeys) -> Result<(), ValidationError> {
    for (f, p) in [
        ("funding", &k.funding),
        ("revocation", &k.revocation),
        ("payment", &k.payment),
        ("delayed_payment", &k.delayed_payment),
        ("htlc", &k.htlc),
    ] {
        exactly(f, p.len(), 33)?;
    }
    Ok(())
}

fn report(r: &SignReport) -> Result<(), ValidationError> {
    at_most("report.signers", r.signers.len(), MAX_COSIGNERS)?;
    at_most("report.blamed", r.blamed.len(), MAX_COSIGNERS * MAX_COSIGNERS)?;
    at_most("report.warnings", r.warnings.len(), MAX_COSIGNERS)?;
    at_most("report.nonces", r.nonces.len(), MAX_REPORT_NONCES)?;
    r.nonces.iter().try_for_each(|n| at_most("report.nonces.pubnonce", n.pubnonce.len(), MAX_FROST_BLOB_BYTES))
}

impl Validate for NodeResponse {
    fn validate(&self) -> Result<(), ValidationError> {
        match self {
            NodeResponse::GroupInfo(g) => at_most("cosigners", g.cosigners.len(), MAX_COSIGNERS),
            NodeResponse::Signature { sig, report: r } => {
                exactly("sig", sig.len(), 64)?;
                report(r)
            }
            NodeResponse::SignedPsbt { psbt, report: r } => {
                at_most("psbt", psbt.len(), MAX_PSBT_BYTES)?;
                report(r)
            }
            NodeResponse::Refused { refusals, report: r } => {
                at_most("refusals", refusals.len(), MAX_COSIGNERS)?;
                refusals.iter().try_for_each(|c| violations(&c.violations))?;
                report(r)
            }
            NodeResponse::KeyHolder { output: o, report: r } => {
                output(o)?;
                report(r)
            }
            NodeResponse::ChannelKeys { info, node_id } => {
                points(&info.points)?;
                attestation(&info.attestation)?;
                exactly("node_id", node_id.len(), 33)
            }
            NodeResponse::TaprootChannelKeys(k) => holder_keys(k),
            NodeResponse::TaprootNonce { pubnonce, leaf_nonces } => {
                exactly("pubnonce", pubnonce.len(), 66)?;
                at_most("leaf_nonces", leaf_nonces.len(), MAX_COSIGNERS)?;
                leaf_nonces.iter().try_for_each(|n| exactly("leaf_nonces.pubnonce", n.pubnonce.len(), 66))
            }
            NodeResponse::TaprootApplied { report: r } => report(r),
            NodeResponse::TaprootPartialSig { pubnonce, report: r, .. } => {
                exactly("pubnonce", pubnonce.len(), 66)?;
                report(r)
            }
            NodeResponse::TaprootSignatures { sigs, messages, report: r } => {
                blobs("sigs", sigs, MAX_COMMITMENT_HTLCS, 64)?;
                at_most("messages", messages.len(), MAX_COMMITMENT_HTLCS)?;
                report(r)
            }
            NodeResponse::Point(p) => exactly("point", p.len(), 33),
            NodeResponse::Error { detail: d, .. } => detail(d),
            NodeResponse::Unavailable { detail: d, report: r } => {
                detail(d)?;
                report(r)
            }
        }
    }
}

fn points(p: &ChannelPoints) -> Result<(), ValidationError> {
    for (field, v) in [
        ("points.funding", &p.funding),
        ("points.revocation", &p.revocation),
        ("points.payment", &p.payment),
        ("points.delayed_payment", &p.delayed_payment),
        ("points.htlc", &p.htlc),
    ] {
        exactly(field, v.len(), 33)?;
    }
    Ok(())
}

fn commitment(c: &CommitmentInfo) -> Result<(), ValidationError> {
    exactly("commitment.per_commitment_point", c.per_commitment_point.len(), 33)?;
    at_most("commitment.htlcs", c.htlcs.len(), MAX_COMMITMENT_HTLCS)
}

fn channel_request(r: &ChannelRequest) -> Result<(), ValidationError> {
    match r {
        ChannelRequest::Setup(s) => {
            points(&s.holder)?;
            points(&s.counterparty)?;
            at_most("setup.channel_type", s.channel_type.len(), 64)
        }
        ChannelRequest::SignCounterpartyCommitment { commitment: c, outbound_preimages } => {
            commitment(c)?;
            at_most("outbound_preimages", outbound_preimages.len(), MAX_PREIMAGES)
        }
        ChannelRequest::ValidateHolderCommitment {
            commitment: c,
            counterparty_sig,
            counterparty_htlc_sigs,
            outbound_preimages,
        } => {
            commitment(c)?;
            exactly("counterparty_sig", counterparty_sig.len(), 64)?;
            blobs("counterparty_htlc_sigs", counterparty_htlc_sigs, MAX_COMMITMENT_HTLCS, 64)?;
            at_most("outbound_preimages", outbound_preimages.len(), MAX_PREIMAGES)
        }
        ChannelRequest::ReleaseCommitmentSecret { .. } | ChannelRequest::ValidateCounterpartyRevocation { .. } => {
            Ok(())
        }
        ChannelRequest::SignHolderCommitment { commitment: c } => commitment(c),
        ChannelRequest::SignClosing { to_holder_script, to_counterparty_script, .. } => {
            at_most("to_holder_script", to_holder_script.len(), MAX_SCRIPT_BYTES)?;
            at_most("to_counterparty_script", to_counterparty_script.len(), MAX_SCRIPT_BYTES)
        }
        ChannelRequest::SignDelayedSweep { tx, .. }
        | ChannelRequest::SignRemoteSweep { tx, .. }
        | ChannelRequest::SignHolderAnchor { tx, .. }
        | ChannelRequest::SignHolderHtlc { tx, .. }
        | ChannelRequest::SignJustice { tx, .. }
        | ChannelRequest::SignCounterpartyHtlcClaim { tx, .. } => at_most("tx", tx.len(), MAX_TX_BYTES),
        ChannelRequest::SignChannelAnnouncement { message } => {
            at_most("message", message.len(), MAX_NODE_MESSAGE_BYTES)
        }
        ChannelRequest::FundingConfirmed(p) | ChannelRequest::FundingSpent(p) => funding_proof(p),
    }
}

fn funding_proof(p: &FundingProof) -> Result<(), ValidationError> {
    at_most("headers", p.headers.len(), MAX_HEADERS)?;
    p.headers.iter().try_for_each(|h| exactly("header", h.len(), 80))?;
    at_most("tx", p.tx.len(), MAX_TX_BYTES)?;
    exactly("block_header", p.block_header.len(), 80)?;
    at_most("merkle_branch", p.merkle_branch.len(), MAX_MERKLE_BRANCH)
}

fn node_key(r: &NodeKeyRequest) -> Result<(), ValidationError> {
    match r {
        NodeKeyRequest::Ecdh { other_key, .. } => exactly("other_key", other_key.len(), 33),
        NodeKeyRequest::SignInvoice { hrp, data, .. } => {
            at_most("hrp", hrp.len(), MAX_NODE_MESSAGE_BYTES)?;
            at_most("data", data.len(), MAX_NODE_MESSAGE_BYTES)
        }
        NodeKeyRequest::SignGossip { message, .. } | NodeKeyRequest::SignMessage { message } => {
            at_most("message", message.len(), MAX_NODE_MESSAGE_BYTES)
        }
        NodeKeyRequest::ApprovePayment { invoice, approval, .. } => {
            if let Some(i) = invoice {
                at_most("invoice", i.len(), MAX_INVOICE_CHARS)?;
            }
            if let Some(a) = approval {
                exactly("approver", a.approver.len(), 33)?;
                exactly("approver_sig", a.sig.len(), 64)?;
            }
            Ok(())
        }
        NodeKeyRequest::Heartbeat { headers, .. } => {
            at_most("headers", headers.len(), MAX_HEADERS)?;
            headers.iter().try_for_each(|h| exactly("header", h.len(), 80))
        }
    }
}

fn subject(s: &ApprovalSubject) -> Result<(), ValidationError> {
    match s {
        ApprovalSubject::Channel { request, .. } => channel_request(request),
        ApprovalSubject::Node(r) => node_key(r),
        ApprovalSubject::TaprootSecret { .. } => Ok(()),
        ApprovalSubject::Sweep(s) => sweep(s),
    }
}

fn sweep(s: &SweepRequest) -> Result<(), ValidationError> {
    at_most("tx", s.tx.len(), MAX_TX_BYTES)?;
    at_most("inputs", s.inputs.len(), MAX_SWEEP_INPUTS)
}

fn approval(a: &Approval) -> Result<(), ValidationError> {
    at_most("approval.cert_der", a.cert_der.len(), MAX_CERT_BYTES)?;
    at_most("approval.identity_sig", a.identity_sig.len(), MAX_IDENTITY_SIG_BYTES)
}

fn attestation(a: &KeysAttestation) -> Result<(), ValidationError> {
    at_most("attestation.cert_der", a.cert_der.len(), MAX_CERT_BYTES)?;
    at_most("attestation.identity_sig", a.identity_sig.len(), MAX_IDENTITY_SIG_BYTES)
}

fn output(o: &KeyHolderOutput) -> Result<(), ValidationError> {
    match o {
        KeyHolderOutput::Done | KeyHolderOutput::Secret(_) | KeyHolderOutput::SharedSecret(_) => Ok(()),
        KeyHolderOutput::Signatures { sig, htlc_sigs } => {
            exactly("sig", sig.len(), 64)?;
            blobs("htlc_sigs", htlc_sigs, MAX_COMMITMENT_HTLCS, 64)
        }
        KeyHolderOutput::Recoverable { sig, .. } | KeyHolderOutput::Heartbeat { sig, .. } => {
            exactly("sig", sig.len(), 64)
        }
        KeyHolderOutput::Witness(w) => blobs("witness", w, 16, MAX_SCRIPT_BYTES),
        KeyHolderOutput::Witnesses(ws) => {
            at_most("witnesses", ws.len(), MAX_SWEEP_INPUTS)?;
            ws.iter().try_for_each(|w| blobs("witness", w, 16, MAX_SCRIPT_BYTES))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_counts_are_named() {
        let req = CosignerRequest::NonceCommitments { key_id: [0; 32], after_id: None, count: MAX_NONCE_BATCH + 1 };
        assert_eq!(
            req.validate(),
            Err(ValidationError {
                field: "count",
                seen: MAX_NONCE_BATCH as usize + 1,
                limit: MAX_NONCE_BATCH as usize
            })
        );
        let too_many = SignRequest {
            key_id: [0; 32],
            payload: SignPayload::Message([0; 32]),
            items: alloc::vec![SignItem { nonce_id: 0, signing_package: Vec::new() }; MAX_SIGN_ITEMS + 1],
        };
        assert_eq!(too_many.validate().unwrap_err().field, "items");
    }

    #[test]
    fn threshold_above_participants_refused() {
        let req = CosignerRequest::DkgRound1 {
            session: [0; 32],
            threshold: 3,
            participants: alloc::vec![DkgParticipant { cert_der: Vec::new() }; 2],
        };
        assert_eq!(req.validate().unwrap_err().field, "threshold");
    }
}
