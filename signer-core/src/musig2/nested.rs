//! NestedMuSig2 (Kohen, ePrint 2026/223; draft BIP, bitcoin/bips#2297, as summarised in
//! `shared/specs/nested-musig2-notes.md`): a signer tree whose every node is an n-of-n
//! BIP-327 group. QLS uses two levels: the root is {our quorum's node, the channel
//! counterparty}, and our node is the n cosigners. Towards the counterparty our node is
//! one ordinary BIP-327 signer: one 66-byte external nonce, one 32-byte partial signature.
//!
//! Rules followed (the draft's, not naive nesting): every node's key is `KeyAgg` of its
//! sorted children's plain keys, passed up as 33 bytes with parity; tweaks only at the
//! root; a non-root node passes up `NonceAggExt(out_d, pk_d)`, which binds its internal
//! aggregate nonce to its key with `b_d = H_NestedMuSig/aggnoncecoef(out_d ‖ cbytes(Q_d))`
//! (no message, so inner levels can pre-process) and scales only the second point; the
//! root uses BIP-327's `MuSig/noncecoef` over the message; a leaf signs with
//! `b̌ = Π b_d` and `č = c · Π a_d`. Open point: the draft text hashes the 33-byte
//! `cbytes(Q_d)` while its reference code hashes `xbytes`; we follow the text. There are
//! no published nested vectors yet, so correctness is checked by an unmodified BIP-327
//! counterparty (the independent `musig2` crate) aggregating our node's contribution.
//!
//! Must never: tweak a non-root node, pass an internal nonce up the tree or an external
//! nonce down it, or sign with a secret nonce twice.

use alloc::vec::Vec;

use k256::{ProjectivePoint, Scalar};

use super::keyagg::{key_agg, key_agg_coeff, key_sort};
use super::nonce::{AggNonce, PubNonce, SecNonce};
use super::{
    blame, cbytes, cbytes_ext, cpoint, cpoint_ext, has_even_y, hash_tag, scalar_bytes, scalar_reduce, scalar_strict,
    xbytes, Contribution, MusigError,
};

/// `NonceAggExt(aggnonce, pk_agg)`: the external nonce a non-root node passes up.
pub fn nonce_agg_ext(aggnonce: &AggNonce, pk_agg: &[u8; 33]) -> Result<PubNonce, MusigError> {
    let bad = MusigError::InvalidContribution { signer: None, contrib: Contribution::Aggnonce };
    let r1 = cpoint_ext(&aggnonce.0[..33]).ok_or(bad.clone())?;
    let r2 = cpoint_ext(&aggnonce.0[33..]).ok_or(bad)?;
    cpoint(pk_agg).ok_or(MusigError::InvalidContribution { signer: None, contrib: Contribution::Pubkey })?;
    let b = scalar_reduce(&hash_tag("NestedMuSig/aggnoncecoef", &[&aggnonce.0, pk_agg]));
    let mut out = [0u8; 66];
    out[..33].copy_from_slice(&cbytes_ext(&r1));
    out[33..].copy_from_slice(&cbytes_ext(&(r2 * b)));
    Ok(PubNonce(out))
}

/// One leaf's view of a nested session.
#[derive(Debug, Clone, Copy)]
pub struct NestedSessionContext<'a> {
    /// Internal aggregate nonces `out_0 … out_{Λ-1}`, root first.
    pub nonce_path: &'a [AggNonce],
    /// `T_0 … T_{Λ-1}`: at each level, the plain keys of the *other* children of the
    /// node on this leaf's path, root level first.
    pub pk_tree: &'a [Vec<[u8; 33]>],
    /// Tweaks on the root key only.
    pub tweaks: &'a [([u8; 32], bool)],
    pub msg: &'a [u8],
}

struct NestedValues {
    q: ProjectivePoint,
    gacc: Scalar,
    tacc: Scalar,
    b_check: Scalar,
    r: ProjectivePoint,
    c: Scalar,
    c_check: Scalar,
}

fn nested_values(ctx: &NestedSessionContext<'_>, leaf_pk: &[u8; 33]) -> Result<NestedValues, MusigError> {
    let levels = ctx.nonce_path.len();
    if levels == 0 || ctx.pk_tree.len() != levels {
        return Err(MusigError::Value("nonce path and key tree must have one entry per level"));
    }
    let mut pk = *leaf_pk;
    let mut a_prod = Scalar::ONE;
    let mut b_prod = Scalar::ONE;
    let mut root = None;
    for d in (0..levels).rev() {
        let mut members = ctx.pk_tree[d].clone();
        members.push(pk);
        let l = key_sort(&members);
        a_prod *= key_agg_coeff(&l, &pk);
        let node = key_agg(&l)?;
        if d >= 1 {
            let node_pk = node.plain_pubkey();
            b_prod *= scalar_reduce(&hash_tag("NestedMuSig/aggnoncecoef", &[&ctx.nonce_path[d].0, &node_pk]));
            pk = node_pk;
        } else {
            root = Some(node);
        }
    }
    let mut root = root.ok_or(MusigError::Value("empty tree"))?;
    for (t, x) in ctx.tweaks {
        root = root.apply_tweak(t, *x)?;
    }
    let out0 = &ctx.nonce_path[0];
    let b0 = scalar_reduce(&hash_tag("MuSig/noncecoef", &[&out0.0, &xbytes(&root.q), ctx.msg]));
    let bad = MusigError::InvalidContribution { signer: None, contrib: Contribution::Aggnonce };
    let r1 = cpoint_ext(&out0.0[..33]).ok_or(bad.clone())?;
    let r2 = cpoint_ext(&out0.0[33..]).ok_or(bad)?;
    let r = r1 + r2 * b0;
    let r = if r == ProjectivePoint::IDENTITY { ProjectivePoint::GENERATOR } else { r };
    let c = scalar_reduce(&hash_tag("BIP0340/challenge", &[&xbytes(&r), &xbytes(&root.q), ctx.msg]));
    Ok(NestedValues { q: root.q, gacc: root.gacc, tacc: root.tacc, b_check: b0 * b_prod, r, c, c_check: c * a_prod })
}

/// A leaf's partial signature. Consumes the secret nonce; self-verifies before returning.
pub fn nested_sign(secnonce: SecNonce, sk: &[u8; 32], ctx: &NestedSessionContext<'_>) -> Result<[u8; 32], MusigError> {
    let sec = secnonce.0;
    let nonzero = |b: &[u8], e| match scalar_strict(b) {
        Some(s) if !bool::from(s.is_zero()) => Ok(s),
        _ => Err(MusigError::Value(e)),
    };
    let k1_ = nonzero(&sec[..32], "first secnonce value is out of range.")?;
    let k2_ = nonzero(&sec[32..64], "second secnonce value is out of range.")?;
    let d_ = nonzero(sk, "secret key value is out of range.")?;
    let pk = cbytes(&(ProjectivePoint::GENERATOR * d_));
    if pk[..] != sec[64..] {
        return Err(MusigError::Value("Public key does not match nonce_gen argument"));
    }
    let v = nested_values(ctx, &pk)?;
    let (k1, k2) = if has_even_y(&v.r) { (k1_, k2_) } else { (-k1_, -k2_) };
    let g = if has_even_y(&v.q) { Scalar::ONE } else { -Scalar::ONE };
    let s = k1 + v.b_check * k2 + v.c_check * (g * v.gacc * d_);
    let psig = scalar_bytes(&s);
    let mut pubnonce = [0u8; 66];
    pubnonce[..33].copy_from_slice(&cbytes(&(ProjectivePoint::GENERATOR * k1_)));
    pubnonce[33..].copy_from_slice(&cbytes(&(ProjectivePoint::GENERATOR * k2_)));
    if !nested_partial_sig_verify(&psig, &PubNonce(pubnonce), &pk, ctx)? {
        return Err(MusigError::Value("the partial signature failed its own verification"));
    }
    Ok(psig)
}

/// Checks one leaf's partial signature: `s·G = ±(R*_1 + b̌·R*_2) + (č·g·gacc)·P`.
pub fn nested_partial_sig_verify(
    psig: &[u8; 32],
    pubnonce: &PubNonce,
    pk: &[u8; 33],
    ctx: &NestedSessionContext<'_>,
) -> Result<bool, MusigError> {
    let Some(s) = scalar_strict(psig) else { return Ok(false) };
    let Some(expected) = psig_point(pubnonce, pk, ctx)? else { return Ok(false) };
    Ok(ProjectivePoint::GENERATOR * s == expected)
}

/// `s·G` of the partial signature the leaf `pk` with `pubnonce` must make in `ctx`
/// (`None` when the nonce or key is not a point): what a holder of a share of that
/// partial signature checks the share's commitment against.
fn psig_point(
    pubnonce: &PubNonce,
    pk: &[u8; 33],
    ctx: &NestedSessionContext<'_>,
) -> Result<Option<ProjectivePoint>, MusigError> {
    let v = nested_values(ctx, pk)?;
    let (Some(r1), Some(r2), Some(p)) = (cpoint(&pubnonce.0[..33]), cpoint(&pubnonce.0[33..]), cpoint(pk)) else {
        return Ok(None);
    };
    let re_ = r1 + r2 * v.b_check;
    let re = if has_even_y(&v.r) { re_ } else { -re_ };
    let g = if has_even_y(&v.q) { Scalar::ONE } else { -Scalar::ONE };
    Ok(Some(re + p * (v.c_check * g * v.gacc)))
}

/// The compressed point `s·G` of the partial signature leaf `pk` (nonce `pubnonce`) must
/// make in `ctx`; an error when the nonce or key is not a point or the result is infinity.
pub fn nested_psig_point(
    pubnonce: &PubNonce,
    pk: &[u8; 33],
    ctx: &NestedSessionContext<'_>,
) -> Result<[u8; 33], MusigError> {
    match psig_point(pubnonce, pk, ctx)? {
        Some(p) if p != ProjectivePoint::IDENTITY => Ok(cbytes(&p)),
        _ => Err(MusigError::Value("the leaf's nonce or key is not a point")),
    }
}

/// An aggregator's sum of its children's partial signatures (no tweak term below the
/// root); a psig ≥ n is blamed on its child.
pub fn psig_sum(psigs: &[[u8; 32]]) -> Result<[u8; 32], MusigError> {
    let mut s = Scalar::ZERO;
    for (i, p) in psigs.iter().enumerate() {
        s += scalar_strict(p).ok_or_else(|| blame(i, Contribution::Psig))?;
    }
    Ok(scalar_bytes(&s))
}

/// The root-level signature from the root's children's partial signatures: BIP-327's
/// aggregation with the ordinary challenge `c` (for a root run by QLS itself).
pub fn nested_root_agg(
    psigs: &[[u8; 32]],
    ctx: &NestedSessionContext<'_>,
    any_leaf_pk: &[u8; 33],
) -> Result<[u8; 64], MusigError> {
    let v = nested_values(ctx, any_leaf_pk)?;
    let mut s = scalar_strict(&psig_sum(psigs)?).ok_or(MusigError::Value("sum out of range"))?;
    let g = if has_even_y(&v.q) { Scalar::ONE } else { -Scalar::ONE };
    s += v.c * g * v.tacc;
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&xbytes(&v.r));
    sig[32..].copy_from_slice(&scalar_bytes(&s));
    Ok(sig)
}

/// A node's plain key from its children's plain keys (sorted here).
pub fn node_pubkey(children: &[[u8; 33]]) -> Result<[u8; 33], MusigError> {
    Ok(key_agg(&key_sort(children))?.plain_pubkey())
}

/// Helper for building `pk_tree` entries: `all` minus one occurrence of `me`.
pub fn others(all: &[[u8; 33]], me: &[u8; 33]) -> Vec<[u8; 33]> {
    let mut v = all.to_vec();
    if let Some(i) = v.iter().position(|k| k == me) {
        v.remove(i);
    }
    v
}
