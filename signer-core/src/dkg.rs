//! FROST distributed key generation for one cosigner, as three pure steps, with the
//! round-2 packages sealed end to end between cosigners so the coordinator that relays
//! them learns nothing.
//!
//! Sealing: each participant publishes an ephemeral secp256k1 ECDH key in its round-1
//! message, which the shell signs with the participant's long-term identity (TLS) key and
//! every receiver checks against the certificate pinned in its own config. The key for
//! sender i → receiver j is `H(ECDH(e_i, E_j) ‖ transcript ‖ fp_i ‖ fp_j)`, used once with
//! ChaCha20-Poly1305. The transcript hashes every round-1 message, so two honest
//! cosigners that were shown different round-1 sets (an equivocating coordinator) fail
//! to open each other's packages and the DKG aborts rather than splitting the group.
//!
//! Must never: let a secret package or share leave unsealed, accept an identifier the
//! coordinator chose, or finish with a round-2 package that failed to authenticate.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use frost_secp256k1_tr::keys::dkg::{self, round1, round2};
use frost_secp256k1_tr::Identifier;
use rand_core::{CryptoRng, RngCore};
use secp256k1::{ecdh::SharedSecret, PublicKey, Secp256k1, SecretKey};

use qls_protocol::limits::MAX_COSIGNERS;
use qls_protocol::{Fingerprint, SealedPackage, SessionId};

use crate::keys::{identifier_for, KeyError, KeyShare};
use crate::tagged::tagged_hash;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DkgError {
    #[error("threshold {threshold} is not in 2..={n}")]
    BadThreshold { threshold: u16, n: usize },
    #[error("{n} participants; between 2 and {max} are supported, each once")]
    BadParticipants { n: usize, max: usize },
    #[error("this cosigner is not among the participants")]
    NotAParticipant,
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("round-1 messages do not match the participant list (missing, extra or duplicate sender)")]
    Round1SetMismatch,
    #[error("the coordinator altered this cosigner's own round-1 message")]
    OwnMessageAltered,
    #[error("round-1 message from {sender} does not decode: {what}")]
    BadRound1 { sender: alloc::string::String, what: &'static str },
    #[error("sealed round-2 packages do not match the participants (missing, extra, duplicate or misaddressed)")]
    Round2SetMismatch,
    #[error("round-2 package from {sender} failed to authenticate (tampered, or a different round-1 transcript)")]
    Unseal { sender: alloc::string::String },
    #[error("FROST DKG {step} failed: {reason}")]
    Frost { step: &'static str, reason: alloc::string::String },
}

/// Parameters of a DKG session as this cosigner sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DkgSetup {
    pub session: SessionId,
    pub threshold: u16,
    /// Sorted, unique.
    pub participants: Vec<Fingerprint>,
    pub me: Fingerprint,
}

impl DkgSetup {
    pub fn new(
        session: SessionId,
        threshold: u16,
        mut participants: Vec<Fingerprint>,
        me: Fingerprint,
    ) -> Result<Self, DkgError> {
        let n = participants.len();
        participants.sort_unstable();
        participants.dedup();
        if participants.len() != n || !(2..=MAX_COSIGNERS).contains(&n) {
            return Err(DkgError::BadParticipants { n, max: MAX_COSIGNERS });
        }
        if threshold < 2 || threshold as usize > n {
            return Err(DkgError::BadThreshold { threshold, n });
        }
        if !participants.contains(&me) {
            return Err(DkgError::NotAParticipant);
        }
        Ok(Self { session, threshold, participants, me })
    }
}

/// What a participant publishes in round 1 (before its identity signature).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Round1Entry {
    pub sender: Fingerprint,
    pub package: Vec<u8>,
    pub ephemeral_pubkey: [u8; 33],
}

/// The statement a participant signs with its identity key in round 1.
pub fn round1_statement(setup: &DkgSetup, entry: &Round1Entry) -> [u8; 32] {
    let participants: Vec<u8> = setup.participants.iter().flatten().copied().collect();
    tagged_hash(
        "QLS/dkg/round1/v1",
        &[
            &setup.session,
            &setup.threshold.to_be_bytes(),
            &participants,
            &entry.sender,
            &entry.package,
            &entry.ephemeral_pubkey,
        ],
    )
}

/// Secret state kept between round 1 and round 2 (memory only).
pub struct Round1State {
    setup: DkgSetup,
    secret: round1::SecretPackage,
    ephemeral: SecretKey,
    own: Round1Entry,
}

/// Secret state kept between round 2 and finish (memory only).
pub struct Round2State {
    setup: DkgSetup,
    secret: round2::SecretPackage,
    round1_packages: BTreeMap<Identifier, round1::Package>,
    ephemeral: SecretKey,
    peer_ephemeral: BTreeMap<Fingerprint, PublicKey>,
    transcript: [u8; 32],
}

fn frost_err(step: &'static str) -> impl Fn(frost_secp256k1_tr::Error) -> DkgError {
    move |e| DkgError::Frost { step, reason: alloc::format!("{e}") }
}

fn random_secret_key<R: RngCore + CryptoRng>(rng: &mut R) -> SecretKey {
    loop {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        if let Ok(sk) = SecretKey::from_slice(&bytes) {
            return sk;
        }
    }
}

/// Round 1: this cosigner's FROST commitment package and its ephemeral sealing key.
pub fn round1<R: RngCore + CryptoRng>(setup: DkgSetup, rng: &mut R) -> Result<(Round1State, Round1Entry), DkgError> {
    let me = identifier_for(&setup.me)?;
    let (secret, package) =
        dkg::part1(me, setup.participants.len() as u16, setup.threshold, &mut *rng).map_err(frost_err("part1"))?;
    let ephemeral = random_secret_key(rng);
    let own = Round1Entry {
        sender: setup.me,
        package: package.serialize().map_err(frost_err("part1 serialize"))?,
        ephemeral_pubkey: PublicKey::from_secret_key(&Secp256k1::signing_only(), &ephemeral).serialize(),
    };
    Ok((Round1State { setup, secret, ephemeral, own: own.clone() }, own))
}

fn sealing_key(shared: &SharedSecret, transcript: &[u8; 32], sender: &Fingerprint, receiver: &Fingerprint) -> [u8; 32] {
    tagged_hash("QLS/dkg/seal/v1", &[&shared.secret_bytes(), transcript, sender, receiver])
}

fn hex_fp(fp: &Fingerprint) -> alloc::string::String {
    hex::encode(&fp[..8])
}

/// Round 2: check the round-1 set (identity signatures are checked by the caller), then
/// produce a sealed round-2 package for every other participant.
pub fn round2(state: Round1State, entries: &[Round1Entry]) -> Result<(Round2State, Vec<SealedPackage>), DkgError> {
    let setup = state.setup;
    let mut by_sender: BTreeMap<Fingerprint, &Round1Entry> = BTreeMap::new();
    for e in entries {
        if by_sender.insert(e.sender, e).is_some() {
            return Err(DkgError::Round1SetMismatch);
        }
    }
    if by_sender.keys().ne(setup.participants.iter()) {
        return Err(DkgError::Round1SetMismatch);
    }
    if by_sender.get(&setup.me) != Some(&&state.own) {
        return Err(DkgError::OwnMessageAltered);
    }
    let statements: Vec<[u8; 32]> = by_sender.values().map(|e| round1_statement(&setup, e)).collect();
    let statement_refs: Vec<&[u8]> = statements.iter().map(|s| s.as_slice()).collect();
    let transcript = tagged_hash("QLS/dkg/transcript/v1", &statement_refs);

    let mut round1_packages = BTreeMap::new();
    let mut peer_ephemeral = BTreeMap::new();
    for (fp, e) in by_sender.iter().filter(|(fp, _)| **fp != setup.me) {
        let bad = |what| DkgError::BadRound1 { sender: hex_fp(fp), what };
        let package = round1::Package::deserialize(&e.package).map_err(|_| bad("package"))?;
        let eph = PublicKey::from_slice(&e.ephemeral_pubkey).map_err(|_| bad("ephemeral key"))?;
        round1_packages.insert(identifier_for(fp)?, package);
        peer_ephemeral.insert(*fp, eph);
    }
    let (secret, outgoing) = dkg::part2(state.secret, &round1_packages).map_err(frost_err("part2"))?;
    let mut sealed = Vec::with_capacity(outgoing.len());
    for (receiver, eph) in &peer_ephemeral {
        let package = outgoing.get(&identifier_for(receiver)?).ok_or(DkgError::Round2SetMismatch)?;
        let plaintext = package.serialize().map_err(frost_err("part2 serialize"))?;
        let key = sealing_key(&SharedSecret::new(eph, &state.ephemeral), &transcript, &setup.me, receiver);
        let ciphertext = ChaCha20Poly1305::new(Key::from_slice(&key))
            .encrypt(Nonce::from_slice(&[0u8; 12]), Payload { msg: &plaintext, aad: &transcript })
            .map_err(|_| DkgError::Frost { step: "seal", reason: "encryption failed".into() })?;
        sealed.push(SealedPackage { sender: setup.me, receiver: *receiver, ciphertext });
    }
    Ok((Round2State { setup, secret, round1_packages, ephemeral: state.ephemeral, peer_ephemeral, transcript }, sealed))
}

/// Finish: open the sealed packages addressed to this cosigner and derive its key share.
pub fn finish(state: Round2State, sealed: &[SealedPackage]) -> Result<KeyShare, DkgError> {
    let setup = &state.setup;
    let mut round2_packages = BTreeMap::new();
    for p in sealed {
        if p.receiver != setup.me {
            return Err(DkgError::Round2SetMismatch);
        }
        let eph = state.peer_ephemeral.get(&p.sender).ok_or(DkgError::Round2SetMismatch)?;
        let key = sealing_key(&SharedSecret::new(eph, &state.ephemeral), &state.transcript, &p.sender, &setup.me);
        let plaintext = ChaCha20Poly1305::new(Key::from_slice(&key))
            .decrypt(Nonce::from_slice(&[0u8; 12]), Payload { msg: &p.ciphertext, aad: &state.transcript })
            .map_err(|_| DkgError::Unseal { sender: hex_fp(&p.sender) })?;
        let package =
            round2::Package::deserialize(&plaintext).map_err(|_| DkgError::Unseal { sender: hex_fp(&p.sender) })?;
        if round2_packages.insert(identifier_for(&p.sender)?, package).is_some() {
            return Err(DkgError::Round2SetMismatch);
        }
    }
    if round2_packages.len() != state.peer_ephemeral.len() {
        return Err(DkgError::Round2SetMismatch);
    }
    let (kp, pkp) = dkg::part3(&state.secret, &state.round1_packages, &round2_packages).map_err(frost_err("part3"))?;
    Ok(KeyShare::new(kp, pkp)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn run(n: u8, t: u16, tamper: impl Fn(&mut Vec<SealedPackage>)) -> Vec<Result<KeyShare, DkgError>> {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let fps: Vec<Fingerprint> = (1..=n).map(|i| [i; 32]).collect();
        let mut states = Vec::new();
        let mut entries = Vec::new();
        for fp in &fps {
            let setup = DkgSetup::new([9; 32], t, fps.clone(), *fp).unwrap();
            let (s, e) = round1(setup, &mut rng).unwrap();
            states.push(s);
            entries.push(e);
        }
        let mut r2 = Vec::new();
        let mut all_sealed = Vec::new();
        for s in states {
            let (s2, sealed) = round2(s, &entries).unwrap();
            r2.push(s2);
            all_sealed.extend(sealed);
        }
        tamper(&mut all_sealed);
        r2.into_iter()
            .zip(&fps)
            .map(|(s, fp)| {
                let mine: Vec<_> = all_sealed.iter().filter(|p| p.receiver == *fp).cloned().collect();
                finish(s, &mine)
            })
            .collect()
    }

    #[test]
    fn all_participants_agree_on_group_key() {
        let shares: Vec<KeyShare> = run(3, 2, |_| {}).into_iter().map(Result::unwrap).collect();
        assert!(shares.iter().all(|s| s.key_id() == shares[0].key_id()));
        assert_eq!(shares[0].threshold(), 2);
    }

    #[test]
    fn tampered_sealed_package_aborts() {
        let results = run(3, 2, |sealed| sealed[0].ciphertext[0] ^= 1);
        assert!(results.iter().any(|r| matches!(r, Err(DkgError::Unseal { .. }))));
    }

    #[test]
    fn setup_rejects_bad_threshold_and_duplicates() {
        assert!(matches!(
            DkgSetup::new([0; 32], 3, alloc::vec![[1; 32], [2; 32]], [1; 32]),
            Err(DkgError::BadThreshold { .. })
        ));
        assert!(matches!(
            DkgSetup::new([0; 32], 2, alloc::vec![[1; 32], [1; 32]], [1; 32]),
            Err(DkgError::BadParticipants { .. })
        ));
        assert!(matches!(
            DkgSetup::new([0; 32], 2, alloc::vec![[1; 32], [2; 32]], [3; 32]),
            Err(DkgError::NotAParticipant)
        ));
    }
}
