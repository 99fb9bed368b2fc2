//! BIP-327 signing sessions: session values, partial signing (with the BIP's
//! self-verification), partial signature verification, signature aggregation, and
//! deterministic (stateless) signing for one signer.
//!
//! Must never: return a partial signature that fails its own verification, or accept a
//! partial signature ≥ n in aggregation (the signer is blamed).

use k256::{ProjectivePoint, Scalar};

use super::keyagg::{key_agg, key_agg_coeff, KeyAggContext};
use super::nonce::{nonce_agg, AggNonce, PubNonce, SecNonce};
use super::{
    blame, cbytes, cpoint, cpoint_ext, has_even_y, hash_tag, scalar_bytes, scalar_reduce, scalar_strict, xbytes,
    Contribution, MusigError,
};

/// The session context: aggregate nonce, keys, tweaks (value, x-only?) and message.
#[derive(Debug, Clone, Copy)]
pub struct SessionContext<'a> {
    pub aggnonce: &'a AggNonce,
    pub pubkeys: &'a [[u8; 33]],
    pub tweaks: &'a [([u8; 32], bool)],
    pub msg: &'a [u8],
}

struct SessionValues {
    q: ProjectivePoint,
    gacc: Scalar,
    tacc: Scalar,
    b: Scalar,
    r: ProjectivePoint,
    e: Scalar,
}

fn tweaked_key_agg(pubkeys: &[[u8; 33]], tweaks: &[([u8; 32], bool)]) -> Result<KeyAggContext, MusigError> {
    let mut ctx = key_agg(pubkeys)?;
    for (t, is_xonly) in tweaks {
        ctx = ctx.apply_tweak(t, *is_xonly)?;
    }
    Ok(ctx)
}

fn session_values(ctx: &SessionContext<'_>) -> Result<SessionValues, MusigError> {
    let k = tweaked_key_agg(ctx.pubkeys, ctx.tweaks)?;
    let b = scalar_reduce(&hash_tag("MuSig/noncecoef", &[&ctx.aggnonce.0, &xbytes(&k.q), ctx.msg]));
    let bad = MusigError::InvalidContribution { signer: None, contrib: Contribution::Aggnonce };
    let r1 = cpoint_ext(&ctx.aggnonce.0[..33]).ok_or(bad.clone())?;
    let r2 = cpoint_ext(&ctx.aggnonce.0[33..]).ok_or(bad)?;
    let r = r1 + r2 * b;
    let r = if r == ProjectivePoint::IDENTITY { ProjectivePoint::GENERATOR } else { r };
    let e = scalar_reduce(&hash_tag("BIP0340/challenge", &[&xbytes(&r), &xbytes(&k.q), ctx.msg]));
    Ok(SessionValues { q: k.q, gacc: k.gacc, tacc: k.tacc, b, r, e })
}

fn session_key_agg_coeff(ctx: &SessionContext<'_>, pk: &[u8; 33]) -> Result<Scalar, MusigError> {
    if !ctx.pubkeys.contains(pk) {
        return Err(MusigError::Value("The signer's pubkey must be included in the list of pubkeys."));
    }
    Ok(key_agg_coeff(ctx.pubkeys, pk))
}

fn nonzero_scalar(bytes: &[u8], err: &'static str) -> Result<Scalar, MusigError> {
    match scalar_strict(bytes) {
        Some(s) if !bool::from(s.is_zero()) => Ok(s),
        _ => Err(MusigError::Value(err)),
    }
}

/// `Sign(secnonce, sk, session_ctx)`. Consumes the secret nonce.
pub fn sign(secnonce: SecNonce, sk: &[u8; 32], ctx: &SessionContext<'_>) -> Result<[u8; 32], MusigError> {
    let v = session_values(ctx)?;
    let sec = secnonce.0;
    let k1_ = nonzero_scalar(&sec[..32], "first secnonce value is out of range.")?;
    let k2_ = nonzero_scalar(&sec[32..64], "second secnonce value is out of range.")?;
    let (k1, k2) = if has_even_y(&v.r) { (k1_, k2_) } else { (-k1_, -k2_) };
    let d_ = nonzero_scalar(sk, "secret key value is out of range.")?;
    let p = ProjectivePoint::GENERATOR * d_;
    let pk = cbytes(&p);
    if pk[..] != sec[64..] {
        return Err(MusigError::Value("Public key does not match nonce_gen argument"));
    }
    let a = session_key_agg_coeff(ctx, &pk)?;
    let g = if has_even_y(&v.q) { Scalar::ONE } else { -Scalar::ONE };
    let d = g * v.gacc * d_;
    let s = k1 + v.b * k2 + v.e * a * d;
    let psig = scalar_bytes(&s);
    let mut pubnonce = [0u8; 66];
    pubnonce[..33].copy_from_slice(&cbytes(&(ProjectivePoint::GENERATOR * k1_)));
    pubnonce[33..].copy_from_slice(&cbytes(&(ProjectivePoint::GENERATOR * k2_)));
    if !verify_internal(&psig, &PubNonce(pubnonce), &pk, ctx)? {
        return Err(MusigError::Value("the partial signature failed its own verification"));
    }
    Ok(psig)
}

fn verify_internal(
    psig: &[u8; 32],
    pubnonce: &PubNonce,
    pk: &[u8; 33],
    ctx: &SessionContext<'_>,
) -> Result<bool, MusigError> {
    let v = session_values(ctx)?;
    let Some(s) = scalar_strict(psig) else { return Ok(false) };
    let (Some(r1), Some(r2)) = (cpoint(&pubnonce.0[..33]), cpoint(&pubnonce.0[33..])) else { return Ok(false) };
    let re_ = r1 + r2 * v.b;
    let re = if has_even_y(&v.r) { re_ } else { -re_ };
    let Some(p) = cpoint(pk) else { return Ok(false) };
    let a = session_key_agg_coeff(ctx, pk)?;
    let g = if has_even_y(&v.q) { Scalar::ONE } else { -Scalar::ONE };
    let g_ = g * v.gacc;
    Ok(ProjectivePoint::GENERATOR * s == re + p * (v.e * a * g_))
}

/// `PartialSigVerify(psig, pubnonce1..u, pk1..u, tweaks, m, i)`: `Ok(false)` when the
/// partial signature is wrong, an error when an input is invalid.
pub fn partial_sig_verify(
    psig: &[u8; 32],
    pubnonces: &[PubNonce],
    pubkeys: &[[u8; 33]],
    tweaks: &[([u8; 32], bool)],
    msg: &[u8],
    i: usize,
) -> Result<bool, MusigError> {
    if pubnonces.len() != pubkeys.len() || i >= pubkeys.len() {
        return Err(MusigError::Value("signer index or list lengths are inconsistent"));
    }
    let aggnonce = nonce_agg(pubnonces)?;
    let ctx = SessionContext { aggnonce: &aggnonce, pubkeys, tweaks, msg };
    verify_internal(psig, &pubnonces[i], &pubkeys[i], &ctx)
}

/// `PartialSigAgg(psig1..u, session_ctx)`: the final 64-byte BIP-340 signature.
pub fn partial_sig_agg(psigs: &[[u8; 32]], ctx: &SessionContext<'_>) -> Result<[u8; 64], MusigError> {
    let v = session_values(ctx)?;
    let mut s = Scalar::ZERO;
    for (i, p) in psigs.iter().enumerate() {
        s += scalar_strict(p).ok_or_else(|| blame(i, Contribution::Psig))?;
    }
    let g = if has_even_y(&v.q) { Scalar::ONE } else { -Scalar::ONE };
    s += v.e * g * v.tacc;
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&xbytes(&v.r));
    sig[32..].copy_from_slice(&scalar_bytes(&s));
    Ok(sig)
}

/// `DeterministicSign(sk, aggothernonce, pk1..u, tweaks, m, rand)`: for the one signer
/// who contributes last and keeps no nonce state.
pub fn deterministic_sign(
    sk: &[u8; 32],
    aggothernonce: &AggNonce,
    pubkeys: &[[u8; 33]],
    tweaks: &[([u8; 32], bool)],
    msg: &[u8],
    rand: Option<&[u8; 32]>,
) -> Result<(PubNonce, [u8; 32]), MusigError> {
    let mut sk_ = *sk;
    if let Some(r) = rand {
        let aux = hash_tag("MuSig/aux", &[r]);
        for (b, a) in sk_.iter_mut().zip(aux) {
            *b ^= a;
        }
    }
    let aggpk = tweaked_key_agg(pubkeys, tweaks)?.xonly_pubkey();
    let k = |i: u8| {
        scalar_reduce(&hash_tag(
            "MuSig/deterministic/nonce",
            &[&sk_, &aggothernonce.0, &aggpk, &(msg.len() as u64).to_be_bytes(), msg, &[i]],
        ))
    };
    let (k1, k2) = (k(0), k(1));
    if bool::from(k1.is_zero()) || bool::from(k2.is_zero()) {
        return Err(MusigError::Value("nonce is zero"));
    }
    let mut pubnonce = [0u8; 66];
    pubnonce[..33].copy_from_slice(&cbytes(&(ProjectivePoint::GENERATOR * k1)));
    pubnonce[33..].copy_from_slice(&cbytes(&(ProjectivePoint::GENERATOR * k2)));
    let d = nonzero_scalar(sk, "secret key value is out of range.")?;
    let mut sec = [0u8; 97];
    sec[..32].copy_from_slice(&scalar_bytes(&k1));
    sec[32..64].copy_from_slice(&scalar_bytes(&k2));
    sec[64..].copy_from_slice(&cbytes(&(ProjectivePoint::GENERATOR * d)));
    let aggnonce = nonce_agg(&[PubNonce(pubnonce), PubNonce(aggothernonce.0)]).map_err(|e| match e {
        MusigError::InvalidContribution { .. } => {
            MusigError::InvalidContribution { signer: None, contrib: Contribution::Aggothernonce }
        }
        other => other,
    })?;
    let ctx = SessionContext { aggnonce: &aggnonce, pubkeys, tweaks, msg };
    let psig = sign(SecNonce(sec), sk, &ctx)?;
    Ok((PubNonce(pubnonce), psig))
}
