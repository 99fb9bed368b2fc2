//! Taproot force-close escrow, cosigner side: deals this cosigner's partial signature of
//! the latest holder commitment (made with that commitment's verification nonce, stored
//! before the deal leaves), keeps the sum of the shares dealt to it (checked by
//! `signer_core::taproot_channel::escrow` against the channel state in the same store
//! transaction), and releases its kept share for a force close the policy approves
//! (recorded as `SignHolderCommitment` is, so the commitment is never revoked after).
//!
//! Must never: deal or keep for a commitment the policy would not force-close now, keep a
//! share past the commitment's revocation (the store deletes it in the revocation's
//! transaction), or release a share without recording the force close first.

// Replies are built once per request; the error variant is the reply itself.
#![allow(clippy::result_large_err)]

use qls_protocol::*;
use qls_signer_core::policy::judge;
use qls_signer_core::taproot_channel::{escrow, TaprootChannelState};

use crate::handler::{error, store_error, violations, CosignerState, Reply};
use crate::taproot::{
    cosigner_ids, judge_and_apply, leaf_sign, my_channel_leaf, no_signing, session_of, stored, Judged,
};
use crate::taproot_store::{NonceUse, TaprootUpdate};

fn escrow_error(e: escrow::EscrowError) -> CosignerResponse {
    error(ErrorKind::InvalidRequest, e)
}

/// The FROST threshold of this cosigner's group: how many kept shares complete a force close.
fn threshold(state: &CosignerState) -> Result<u16, CosignerResponse> {
    let ids = state.store.key_ids().map_err(store_error)?;
    let id = ids.first().ok_or_else(|| error(ErrorKind::NoGroupKey, "no group key: run the DKG first"))?;
    Ok(state.key(id).map_err(store_error)?.threshold())
}

/// The message of holder commitment `n`'s force close, or the policy's refusal of escrowing it.
fn judged_message(state: &CosignerState, current: &TaprootChannelState, n: u64) -> Result<[u8; 32], CosignerResponse> {
    let (msg, found) = escrow::escrow_message(current, n).map_err(escrow_error)?;
    let verdict = judge(found, &state.config.policy);
    if !verdict.approves() {
        return Err(CosignerResponse::Refused { violations: violations(&verdict.refused) });
    }
    Ok(msg)
}

/// Step 1: this cosigner's partial signature of holder commitment `n` (its verification
/// nonce consumed and the signature stored in one transaction, or the one stored before),
/// dealt t-of-n and sealed to every cosigner.
pub fn deal(state: &CosignerState, channel: ChannelKeysId, n: u64) -> Reply {
    let current = stored(state, &channel)?;
    judged_message(state, &current, n)?;
    let h = current.holder_latest.as_ref().ok_or_else(|| error(ErrorKind::Internal, "no holder commitment"))?;
    let session =
        NestedSession { leaf_nonces: h.verification.clone(), counterparty_nonce: h.counterparty_nonce.clone() };
    let (my_sk, leaf_session) = session_of(state, &channel, &current, &session)?;
    let signer = |secnonce, msg: &[u8; 32]| leaf_sign(secnonce, &my_sk, &leaf_session, msg);
    let policy = &state.config.policy;
    let outcome = state
        .store
        .update_taproot(
            &channel,
            |_| Vec::new(),
            &policy.channel,
            state.now_unix(),
            |now, _| {
                // Judged again inside the transaction: no revocation slips in between.
                let now = now.ok_or_else(|| error(ErrorKind::UnknownKey, "taproot channel is not set up"))?;
                let msg = judged_message(state, &now, n)?;
                Ok::<_, CosignerResponse>(TaprootUpdate {
                    state: None,
                    write_payments: false,
                    sign_with: Some((NonceUse::Verification { commitment: n }, msg)),
                    drop_verification_upto: None,
                    result: (),
                })
            },
            &signer,
        )
        .map_err(store_error)?;
    let (_, psig) = outcome?;
    let psig = psig.ok_or_else(|| error(ErrorKind::Internal, "no partial signature made"))?;
    let parties = escrow::parties(&state.secp, &current, &cosigner_ids(state), &channel).map_err(escrow_error)?;
    let dealt = escrow::deal(&psig, threshold(state)?, &parties, &state.identity.fingerprint, &my_sk, &channel, n)
        .map_err(escrow_error)?;
    Ok(CosignerResponse::TaprootEscrowDealt(dealt))
}

/// Step 2: opens and checks the shares every cosigner dealt to this one and keeps their sum.
pub fn keep(state: &CosignerState, channel: ChannelKeysId, deals: Vec<EscrowDeal>) -> Reply {
    let n = deals.first().map(|d| d.commitment_number).ok_or_else(|| error(ErrorKind::InvalidRequest, "no deals"))?;
    let (_, my_sk) = my_channel_leaf(state, &channel)?;
    let t = threshold(state)?;
    let ids = cosigner_ids(state);
    let me = state.identity.fingerprint;
    let kept = state
        .store
        .keep_escrow_share(&channel, n, |current| {
            let current = current.ok_or_else(|| error(ErrorKind::UnknownKey, "taproot channel is not set up"))?;
            let msg = judged_message(state, &current, n)?;
            let parties = escrow::parties(&state.secp, &current, &ids, &channel).map_err(escrow_error)?;
            let expected = escrow::expected_points(&current, &parties, &channel, &msg).map_err(escrow_error)?;
            escrow::keep(&deals, t, &parties, &me, &my_sk, &channel, n, &expected).map_err(escrow_error)
        })
        .map_err(store_error)?;
    kept?;
    Ok(CosignerResponse::TaprootApplied { warnings: Vec::new() })
}

/// Force close with t of n: records the force close of holder commitment `n` if the policy
/// approves it (as `SignHolderCommitment`), then returns the kept share.
pub fn release(state: &CosignerState, channel: ChannelKeysId, n: u64) -> Reply {
    let current = stored(state, &channel)?;
    let request = TaprootRequest::SignHolderCommitment { commitment_number: n };
    let (judged, _) = judge_and_apply(state, channel, &request, &current.holder, &current.leaves, None, &no_signing)?;
    let msg = match judged {
        Judged::Refused(verdict) => return Ok(CosignerResponse::Refused { violations: violations(&verdict.refused) }),
        Judged::Approved { message: Some(msg), .. } => msg,
        Judged::Approved { message: None, .. } => {
            return Err(error(ErrorKind::Internal, "a force close derived no message"))
        }
    };
    let share = state.store.escrow_share(&channel, n).map_err(store_error)?.ok_or_else(|| {
        error(ErrorKind::InvalidRequest, format!("no force-close escrow share kept for holder commitment {n}"))
    })?;
    Ok(CosignerResponse::TaprootEscrowShare { share, msg, counterparty_funding: current.setup.counterparty.funding })
}
