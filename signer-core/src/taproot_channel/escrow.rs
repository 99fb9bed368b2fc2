//! Force-close escrow of our taproot holder commitments: how any t of the n cosigners
//! complete our force close when a cosigner is gone, while no t−1 of them (nor the
//! coordinator or the node, which only relay) ever hold a signature of a commitment once
//! it is revoked.
//!
//! While all n are present, each cosigner makes its NestedMuSig2 partial signature `s_i`
//! of the latest holder commitment in that commitment's verification session (the one the
//! counterparty signed in), deals it with Feldman-verifiable Shamir sharing (FROST's
//! `keys::split`, degree t−1, at every cosigner's FROST identifier) and seals each share
//! to its receiver under an ECDH key of the two channel leaf keys. Each receiver opens its
//! shares, checks each against its dealer's commitments and checks the constant term
//! against the point `s_i·G` it recomputes from public facts (the dealer's verification
//! nonce and leaf key, the message it derived itself), then keeps the sum: its share of
//! the quorum's partial signature `S = Σ s_i`. Any t kept shares interpolate to `S`.
//! Shares are deleted when the commitment is revoked (see ARCHITECTURE.md for the whole
//! argument).
//!
//! Must never: deal or keep for a commitment that is not the latest validated and
//! unrevoked one, keep a share that does not match its dealer's commitments or the partial
//! signature's point, or let a share leave unsealed.

use alloc::collections::BTreeSet;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use bitcoin::secp256k1::{ecdh::SharedSecret, All, PublicKey, Secp256k1, SecretKey};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use frost_secp256k1_tr::keys::{
    IdentifierList, KeyPackage, SecretShare, SigningShare, VerifiableSecretSharingCommitment, VerifyingShare,
};
use frost_secp256k1_tr::{Identifier, SigningKey, VerifyingKey};
use qls_protocol::{ChannelKeysId, EscrowDeal, Fingerprint, NestedSession, SealedPackage};
use rand_core::SeedableRng;

use super::build::{commitment, funding_sighash, Side};
use super::keys::channel_leaf_pubkey;
use super::session::{key33, leaf_session};
use super::state::TaprootChannelState;
use crate::channel::CloseState;
use crate::keys::identifier_for;
use crate::musig2::nested::{nested_psig_point, NestedSessionContext};
use crate::musig2::{scalar_bytes, scalar_strict, PubNonce};
use crate::policy::{PolicyTag, Violation};
use crate::tagged::tagged_hash;

/// Why an escrow step failed; carries the commitment and, for a deal, its dealer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EscrowError {
    #[error("escrow of holder commitment {commitment}: {reason}")]
    Escrow { commitment: u64, reason: String },
    #[error("deal of cosigner {dealer} for holder commitment {commitment} refused: {reason}")]
    BadDeal { dealer: String, commitment: u64, reason: &'static str },
    #[error("escrow shares of holder commitment {commitment} do not combine: {reason}")]
    Combine { commitment: u64, reason: &'static str },
}

fn escrow_error(commitment: u64, reason: impl Into<String>) -> EscrowError {
    EscrowError::Escrow { commitment, reason: reason.into() }
}

fn short(fp: &Fingerprint) -> String {
    hex::encode(&fp[..4])
}

/// Every cosigner of the channel: its fingerprint and its channel leaf key, in the stored
/// (fingerprint) order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EscrowParty {
    pub cosigner: Fingerprint,
    pub channel_leaf: [u8; 33],
}

/// The parties of `state`'s channel: `ids` are the cosigners' fingerprints index-aligned
/// with the stored base leaves.
pub fn parties(
    secp: &Secp256k1<All>,
    state: &TaprootChannelState,
    ids: &[Fingerprint],
    channel: &ChannelKeysId,
) -> Result<Vec<EscrowParty>, EscrowError> {
    if ids.len() != state.leaves.len() {
        return Err(escrow_error(0, format!("{} cosigners for {} stored leaves", ids.len(), state.leaves.len())));
    }
    ids.iter()
        .zip(&state.leaves)
        .map(|(id, leaf)| {
            let base = key33(leaf).map_err(|_| escrow_error(0, "a stored leaf is not 33 bytes"))?;
            let channel_leaf =
                channel_leaf_pubkey(secp, &base, channel).map_err(|_| escrow_error(0, "a stored leaf"))?;
            Ok(EscrowParty { cosigner: *id, channel_leaf })
        })
        .collect()
}

/// Whether holder commitment `n` may be escrowed (dealt, kept) now, and its message (the
/// funding sighash of the commitment, derived from the stored state): only the latest
/// validated, unrevoked commitment of a channel not closed cooperatively.
pub fn escrow_message(state: &TaprootChannelState, n: u64) -> Result<([u8; 32], Vec<Violation>), EscrowError> {
    let mut violations = Vec::new();
    let Some(latest) = state.holder_latest.as_ref() else {
        violations.push(Violation {
            tag: PolicyTag::CommitmentHolderUnknown,
            detail: format!("escrow of {n}: none validated"),
        });
        return Ok(([0; 32], violations));
    };
    if latest.info.commitment_number != n {
        violations.push(Violation {
            tag: PolicyTag::CommitmentHolderUnknown,
            detail: format!(
                "escrow of holder commitment {n}: the latest validated is {}",
                latest.info.commitment_number
            ),
        });
    }
    if state.holder_is_revoked(n) {
        violations.push(Violation {
            tag: PolicyTag::CommitmentHolderRevoked,
            detail: format!("escrow of holder commitment {n}: revoked"),
        });
    }
    if matches!(state.close, CloseState::MutualClose { .. }) {
        violations.push(Violation {
            tag: PolicyTag::ChannelClosed,
            detail: format!("escrow of holder commitment {n} after a cooperative close was signed"),
        });
    }
    let tx = commitment(state, &latest.info, Side::Holder).map_err(|e| escrow_error(n, format!("{e}")))?.tx;
    let msg = funding_sighash(state, &tx).map_err(|e| escrow_error(n, format!("{e}")))?;
    Ok((msg, violations))
}

/// `s_i·G` of every cosigner's partial signature of the latest holder commitment (message
/// `msg`) in its verification session, by fingerprint.
pub fn expected_points(
    state: &TaprootChannelState,
    parties: &[EscrowParty],
    channel: &ChannelKeysId,
    msg: &[u8; 32],
) -> Result<Vec<(Fingerprint, [u8; 33])>, EscrowError> {
    let h = state.holder_latest.as_ref().ok_or_else(|| escrow_error(0, "no holder commitment validated"))?;
    let n = h.info.commitment_number;
    let session =
        NestedSession { leaf_nonces: h.verification.clone(), counterparty_nonce: h.counterparty_nonce.clone() };
    let ids: Vec<Fingerprint> = parties.iter().map(|p| p.cosigner).collect();
    let leaves: Vec<[u8; 33]> = parties.iter().map(|p| p.channel_leaf).collect();
    let node_key = key33(&state.holder.funding).map_err(|_| escrow_error(n, "our funding key"))?;
    let theirs = key33(&state.setup.counterparty.funding).map_err(|_| escrow_error(n, "counterparty funding key"))?;
    parties
        .iter()
        .map(|p| {
            let s = leaf_session(&session, &ids, &leaves, &p.channel_leaf, &node_key, &theirs, channel)
                .map_err(|e| escrow_error(n, format!("verification session: {e}")))?;
            let nonce = h
                .verification
                .iter()
                .find(|l| l.cosigner == p.cosigner)
                .and_then(|l| <[u8; 66]>::try_from(l.pubnonce.as_slice()).ok())
                .ok_or_else(|| escrow_error(n, format!("no verification nonce of {}", short(&p.cosigner))))?;
            let ctx = NestedSessionContext { nonce_path: &s.nonce_path, pk_tree: &s.pk_tree, tweaks: &[s.tweak], msg };
            let point = nested_psig_point(&PubNonce(nonce), &p.channel_leaf, &ctx)
                .map_err(|e| escrow_error(n, format!("partial signature point of {}: {e}", short(&p.cosigner))))?;
            Ok((p.cosigner, point))
        })
        .collect()
}

fn ids_of(parties: &[EscrowParty], n: u64) -> Result<Vec<Identifier>, EscrowError> {
    parties
        .iter()
        .map(|p| identifier_for(&p.cosigner).map_err(|_| escrow_error(n, "a cosigner's identifier")))
        .collect()
}

fn seal_key(
    my_leaf_secret: &[u8; 32],
    their_leaf: &[u8; 33],
    channel: &ChannelKeysId,
    n: u64,
    dealer: &Fingerprint,
    receiver: &Fingerprint,
) -> Result<[u8; 32], EscrowError> {
    let sk = SecretKey::from_slice(my_leaf_secret).map_err(|_| escrow_error(n, "our channel leaf secret"))?;
    let pk = PublicKey::from_slice(their_leaf).map_err(|_| escrow_error(n, "a channel leaf key"))?;
    let shared = SharedSecret::new(&pk, &sk);
    Ok(tagged_hash("QLS/escrow/seal/v1", &[&shared.secret_bytes(), channel, &n.to_be_bytes(), dealer, receiver]))
}

/// What a sealed share's AEAD binds besides the share: the deal's commitments.
fn seal_aad(n: u64, commitments: &[Vec<u8>]) -> Vec<u8> {
    let mut aad = n.to_be_bytes().to_vec();
    commitments.iter().for_each(|c| aad.extend_from_slice(c));
    aad
}

/// This cosigner's deal of its partial signature `psig` of holder commitment `n`: one share
/// per party, `threshold` of them needed. Deterministic in its inputs (the polynomial comes
/// from a key only this cosigner holds), so a lost reply is answered with the same deal.
#[allow(clippy::too_many_arguments)]
pub fn deal(
    psig: &[u8; 32],
    threshold: u16,
    parties: &[EscrowParty],
    me: &Fingerprint,
    my_leaf_secret: &[u8; 32],
    channel: &ChannelKeysId,
    n: u64,
) -> Result<EscrowDeal, EscrowError> {
    let count = u16::try_from(parties.len()).map_err(|_| escrow_error(n, "too many cosigners"))?;
    if threshold < 2 || threshold > count {
        return Err(escrow_error(n, format!("threshold {threshold} of {count} cosigners")));
    }
    let ids = ids_of(parties, n)?;
    let key = SigningKey::deserialize(psig).map_err(|_| escrow_error(n, "the partial signature is not a key"))?;
    let seed = tagged_hash("QLS/escrow/coefficients/v1", &[my_leaf_secret, channel, &n.to_be_bytes(), psig]);
    let mut rng = rand_chacha::ChaCha20Rng::from_seed(seed);
    let (shares, _) = frost_secp256k1_tr::keys::split(&key, count, threshold, IdentifierList::Custom(&ids), &mut rng)
        .map_err(|e| escrow_error(n, format!("split: {e}")))?;
    let first = shares.values().next().ok_or_else(|| escrow_error(n, "no share"))?;
    let commitments = first.commitment().serialize().map_err(|e| escrow_error(n, format!("commitments: {e}")))?;
    let aad = seal_aad(n, &commitments);
    let mut sealed = Vec::with_capacity(parties.len());
    for (party, id) in parties.iter().zip(&ids) {
        let share = shares.get(id).ok_or_else(|| escrow_error(n, "a party got no share"))?;
        let key = seal_key(my_leaf_secret, &party.channel_leaf, channel, n, me, &party.cosigner)?;
        let plaintext = share.signing_share().serialize();
        let ciphertext = ChaCha20Poly1305::new(Key::from_slice(&key))
            .encrypt(Nonce::from_slice(&[0; 12]), Payload { msg: &plaintext, aad: &aad })
            .map_err(|_| escrow_error(n, "sealing failed"))?;
        sealed.push(SealedPackage { sender: *me, receiver: party.cosigner, ciphertext });
    }
    Ok(EscrowDeal { dealer: *me, commitment_number: n, commitments, sealed })
}

/// Opens and checks the share every deal sealed to this cosigner and returns their sum,
/// its share of the quorum's partial signature. `expected` is every dealer's partial
/// signature point ([`expected_points`]). Refuses unless there is exactly one deal per
/// party, each for `n`, with `threshold` commitments whose constant term is the expected
/// point and a share that opens and matches them.
#[allow(clippy::too_many_arguments)]
pub fn keep(
    deals: &[EscrowDeal],
    threshold: u16,
    parties: &[EscrowParty],
    me: &Fingerprint,
    my_leaf_secret: &[u8; 32],
    channel: &ChannelKeysId,
    n: u64,
    expected: &[(Fingerprint, [u8; 33])],
) -> Result<[u8; 32], EscrowError> {
    let dealers: BTreeSet<Fingerprint> = deals.iter().map(|d| d.dealer).collect();
    let all: BTreeSet<Fingerprint> = parties.iter().map(|p| p.cosigner).collect();
    if dealers != all || deals.len() != parties.len() {
        return Err(escrow_error(n, format!("{} deals, one from each of {} cosigners needed", deals.len(), all.len())));
    }
    let my_id = identifier_for(me).map_err(|_| escrow_error(n, "this cosigner's identifier"))?;
    let mut sum = k256::Scalar::ZERO;
    for d in deals {
        let bad = |reason| EscrowError::BadDeal { dealer: short(&d.dealer), commitment: n, reason };
        if d.commitment_number != n {
            return Err(bad("it is for another commitment"));
        }
        if d.commitments.len() != usize::from(threshold) {
            return Err(bad("its polynomial is not of this quorum's threshold"));
        }
        let point = expected.iter().find(|(c, _)| *c == d.dealer).map(|(_, p)| p);
        if point.is_none_or(|p| d.commitments.first().map(Vec::as_slice) != Some(p.as_slice())) {
            return Err(bad("it does not share the dealer's partial signature of this commitment"));
        }
        let mut mine = d.sealed.iter().filter(|p| p.receiver == *me && p.sender == d.dealer);
        let (Some(sealed), None) = (mine.next(), mine.next()) else {
            return Err(bad("it holds no single share sealed to this cosigner"));
        };
        let party = parties.iter().find(|p| p.cosigner == d.dealer).ok_or_else(|| bad("unknown dealer"))?;
        let key = seal_key(my_leaf_secret, &party.channel_leaf, channel, n, &d.dealer, me)?;
        let plaintext = ChaCha20Poly1305::new(Key::from_slice(&key))
            .decrypt(
                Nonce::from_slice(&[0; 12]),
                Payload { msg: &sealed.ciphertext, aad: &seal_aad(n, &d.commitments) },
            )
            .map_err(|_| bad("its share does not open"))?;
        let share = SigningShare::deserialize(&plaintext).map_err(|_| bad("its share is not a scalar"))?;
        let commitment = VerifiableSecretSharingCommitment::deserialize(d.commitments.clone())
            .map_err(|_| bad("its commitments are not points"))?;
        SecretShare::new(my_id, share, commitment)
            .verify()
            .map_err(|_| bad("its share does not match its commitments"))?;
        sum += scalar_strict(&plaintext).ok_or_else(|| bad("its share is not a scalar"))?;
    }
    Ok(scalar_bytes(&sum))
}

/// The quorum's partial signature from kept shares (any `threshold` of them; more are
/// ignored beyond the first `threshold`). The caller verifies the result: a wrong share
/// gives a wrong sum, never an error here.
pub fn combine(shares: &[(Fingerprint, [u8; 32])], threshold: u16, n: u64) -> Result<[u8; 32], EscrowError> {
    let bad = |reason| EscrowError::Combine { commitment: n, reason };
    if shares.len() < usize::from(threshold) {
        return Err(bad("fewer shares than the threshold"));
    }
    // Any valid verifying key: `reconstruct` reads only identifiers and shares.
    let placeholder =
        VerifyingKey::from(&SigningKey::deserialize(&scalar_bytes(&k256::Scalar::ONE)).map_err(|_| bad("key"))?);
    let packages = shares
        .iter()
        .take(usize::from(threshold))
        .map(|(fp, share)| {
            let id = identifier_for(fp).map_err(|_| bad("a cosigner's identifier"))?;
            let signing = SigningShare::deserialize(share).map_err(|_| bad("a share is not a scalar"))?;
            Ok(KeyPackage::new(id, signing, VerifyingShare::from(signing), placeholder, threshold))
        })
        .collect::<Result<Vec<_>, EscrowError>>()?;
    let key = frost_secp256k1_tr::keys::reconstruct(&packages).map_err(|_| bad("duplicate or too few shares"))?;
    let bytes = key.serialize();
    bytes.as_slice().try_into().map_err(|_| bad("reconstructed key length"))
}

/// Whether `psig` is our quorum's partial signature of `msg` towards the counterparty: an
/// ordinary BIP-327 partial signature of our funding key `ours` with our external nonce
/// `external`, in the session with the counterparty's key and nonce (BIP-86 tweak). What
/// the coordinator checks a combined escrow against before it returns it.
pub fn quorum_psig_valid(
    psig: &[u8; 32],
    ours: &[u8; 33],
    external: &[u8; 66],
    theirs: &[u8; 33],
    their_nonce: &[u8; 66],
    msg: &[u8; 32],
) -> bool {
    let Ok(tweak) = super::session::funding_tweak(ours, theirs) else { return false };
    let pubkeys = crate::musig2::key_sort(&[*ours, *theirs]);
    let nonces: Vec<PubNonce> =
        pubkeys.iter().map(|k| PubNonce(if k == ours { *external } else { *their_nonce })).collect();
    let Some(i) = pubkeys.iter().position(|k| k == ours) else { return false };
    crate::musig2::partial_sig_verify(psig, &nonces, &pubkeys, &[(tweak, true)], msg, i).unwrap_or(false)
}
