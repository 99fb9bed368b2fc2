//! Every BIP-327 vector, every case, through `signer-core::musig2`. Final signatures are
//! also checked with libsecp256k1 (an implementation independent of ours) where the
//! vectors give one.

use qls_signer_core::musig2::*;
use serde_json::Value;

fn load(name: &str) -> Value {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/vectors/bip327").join(name);
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

fn bytes(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}

fn arr<const N: usize>(v: &Value) -> [u8; N] {
    bytes(v).try_into().unwrap_or_else(|b: Vec<u8>| panic!("expected {N} bytes, got {}", b.len()))
}

/// Key lists in vectors may hold invalid keys of other lengths; pad so they reach KeyAgg.
fn key33(v: &Value) -> [u8; 33] {
    let b = bytes(v);
    let mut out = [0u8; 33];
    out[..b.len().min(33)].copy_from_slice(&b[..b.len().min(33)]);
    out
}

fn pick<T: Clone>(all: &[T], idx: &Value) -> Vec<T> {
    idx.as_array().unwrap().iter().map(|i| all[i.as_u64().unwrap() as usize].clone()).collect()
}

fn tweaks(all: &[[u8; 32]], idx: &Value, xonly: &Value) -> Vec<([u8; 32], bool)> {
    pick(all, idx).into_iter().zip(xonly.as_array().unwrap().iter().map(|b| b.as_bool().unwrap())).collect()
}

fn pubnonce(v: &Value) -> PubNonce {
    let b = bytes(v);
    let mut out = [0u8; 66];
    out[..b.len().min(66)].copy_from_slice(&b[..b.len().min(66)]);
    PubNonce(out)
}

fn expect_error(got: MusigError, want: &Value, case: &str) {
    match want["type"].as_str().unwrap() {
        "invalid_contribution" => {
            let contrib = match want["contrib"].as_str().unwrap() {
                "pubkey" => Contribution::Pubkey,
                "pubnonce" => Contribution::Pubnonce,
                "aggnonce" => Contribution::Aggnonce,
                "aggothernonce" => Contribution::Aggothernonce,
                "psig" => Contribution::Psig,
                other => panic!("unknown contribution {other}"),
            };
            let signer = want["signer"].as_u64().map(|s| s as usize);
            assert_eq!(got, MusigError::InvalidContribution { signer, contrib }, "{case}");
        }
        "value" => assert_eq!(got, MusigError::Value(leak(want["message"].as_str().unwrap())), "{case}"),
        other => panic!("unknown error type {other}"),
    }
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

fn libsecp_verify(xonly: &[u8; 32], msg: &[u8], sig: &[u8; 64]) -> bool {
    // libsecp256k1 0.29 takes 32-byte messages; other lengths are checked through frost.
    if msg.len() != 32 {
        let mut c = vec![2u8];
        c.extend_from_slice(xonly);
        let vk = qls_signer_core::frost::VerifyingKey::deserialize(&c).unwrap();
        return vk.verify(msg, &qls_signer_core::frost::Signature::deserialize(sig).unwrap()).is_ok();
    }
    qls_signer_core::schnorr::verify_bip340(xonly, &msg.try_into().unwrap(), sig).is_ok()
}

#[test]
fn key_sort_vectors() {
    let v = load("key_sort_vectors.json");
    let keys: Vec<[u8; 33]> = v["pubkeys"].as_array().unwrap().iter().map(arr).collect();
    let sorted: Vec<[u8; 33]> = v["sorted_pubkeys"].as_array().unwrap().iter().map(arr).collect();
    assert_eq!(key_sort(&keys), sorted);
}

#[test]
fn key_agg_valid_and_errors() {
    let v = load("key_agg_vectors.json");
    let keys: Vec<[u8; 33]> = v["pubkeys"].as_array().unwrap().iter().map(key33).collect();
    let tw: Vec<[u8; 32]> = v["tweaks"].as_array().unwrap().iter().map(arr).collect();
    for (n, c) in v["valid_test_cases"].as_array().unwrap().iter().enumerate() {
        let ctx = key_agg(&pick(&keys, &c["key_indices"])).unwrap();
        assert_eq!(ctx.xonly_pubkey(), arr::<32>(&c["expected"]), "valid case {n}");
    }
    for (n, c) in v["error_test_cases"].as_array().unwrap().iter().enumerate() {
        let r = key_agg(&pick(&keys, &c["key_indices"])).and_then(|ctx| {
            tweaks(&tw, &c["tweak_indices"], &c["is_xonly"]).iter().try_fold(ctx, |k, (t, x)| k.apply_tweak(t, *x))
        });
        expect_error(r.unwrap_err(), &c["error"], &format!("error case {n}: {}", c["comment"]));
    }
}

#[test]
fn nonce_gen_all_cases() {
    let v = load("nonce_gen_vectors.json");
    for (n, c) in v["test_cases"].as_array().unwrap().iter().enumerate() {
        let opt32 = |x: &Value| (!x.is_null()).then(|| arr::<32>(x));
        let optb = |x: &Value| (!x.is_null()).then(|| bytes(x));
        let (sk, aggpk, msg, extra) = (opt32(&c["sk"]), opt32(&c["aggpk"]), optb(&c["msg"]), optb(&c["extra_in"]));
        let (sec, pubn) =
            nonce_gen(&arr(&c["rand_"]), sk.as_ref(), &arr(&c["pk"]), aggpk.as_ref(), msg.as_deref(), extra.as_deref())
                .unwrap();
        assert_eq!(sec.to_bytes().to_vec(), bytes(&c["expected_secnonce"]), "case {n}");
        assert_eq!(pubn.0.to_vec(), bytes(&c["expected_pubnonce"]), "case {n}");
    }
}

#[test]
fn nonce_agg_valid_and_errors() {
    let v = load("nonce_agg_vectors.json");
    let nonces: Vec<PubNonce> = v["pnonces"].as_array().unwrap().iter().map(pubnonce).collect();
    for (n, c) in v["valid_test_cases"].as_array().unwrap().iter().enumerate() {
        let agg = nonce_agg(&pick(&nonces, &c["pnonce_indices"])).unwrap();
        assert_eq!(agg.0.to_vec(), bytes(&c["expected"]), "valid case {n}");
    }
    for (n, c) in v["error_test_cases"].as_array().unwrap().iter().enumerate() {
        let e = nonce_agg(&pick(&nonces, &c["pnonce_indices"])).unwrap_err();
        expect_error(e, &c["error"], &format!("error case {n}"));
    }
}

#[test]
fn sign_verify_all_cases() {
    let v = load("sign_verify_vectors.json");
    let sk: [u8; 32] = arr(&v["sk"]);
    let keys: Vec<[u8; 33]> = v["pubkeys"].as_array().unwrap().iter().map(key33).collect();
    let secnonces: Vec<[u8; 97]> = v["secnonces"].as_array().unwrap().iter().map(arr).collect();
    let pnonces: Vec<PubNonce> = v["pnonces"].as_array().unwrap().iter().map(pubnonce).collect();
    let aggnonces: Vec<AggNonce> = v["aggnonces"].as_array().unwrap().iter().map(|x| AggNonce(pubnonce(x).0)).collect();
    let msgs: Vec<Vec<u8>> = v["msgs"].as_array().unwrap().iter().map(bytes).collect();
    for (n, c) in v["valid_test_cases"].as_array().unwrap().iter().enumerate() {
        let pks = pick(&keys, &c["key_indices"]);
        let msg = &msgs[c["msg_index"].as_u64().unwrap() as usize];
        let agg = aggnonces[c["aggnonce_index"].as_u64().unwrap() as usize];
        let nonces = pick(&pnonces, &c["nonce_indices"]);
        assert_eq!(nonce_agg(&nonces).unwrap(), agg, "case {n}: aggnonce");
        let ctx = SessionContext { aggnonce: &agg, pubkeys: &pks, tweaks: &[], msg };
        let psig = sign(SecNonce::from_bytes(secnonces[0]), &sk, &ctx).unwrap();
        assert_eq!(psig, arr::<32>(&c["expected"]), "valid case {n}");
        let i = c["signer_index"].as_u64().unwrap() as usize;
        assert!(partial_sig_verify(&psig, &nonces, &pks, &[], msg, i).unwrap(), "valid case {n} verifies");
    }
    for (n, c) in v["sign_error_test_cases"].as_array().unwrap().iter().enumerate() {
        let pks = pick(&keys, &c["key_indices"]);
        let agg = aggnonces[c["aggnonce_index"].as_u64().unwrap() as usize];
        let msg = &msgs[c["msg_index"].as_u64().unwrap() as usize];
        let ctx = SessionContext { aggnonce: &agg, pubkeys: &pks, tweaks: &[], msg };
        let sec = SecNonce::from_bytes(secnonces[c["secnonce_index"].as_u64().unwrap() as usize]);
        expect_error(sign(sec, &sk, &ctx).unwrap_err(), &c["error"], &format!("sign error case {n}: {}", c["comment"]));
    }
    for (n, c) in v["verify_fail_test_cases"].as_array().unwrap().iter().enumerate() {
        let pks = pick(&keys, &c["key_indices"]);
        let msg = &msgs[c["msg_index"].as_u64().unwrap() as usize];
        let sig: [u8; 32] = arr(&c["sig"]);
        let ok = partial_sig_verify(
            &sig,
            &pick(&pnonces, &c["nonce_indices"]),
            &pks,
            &[],
            msg,
            c["signer_index"].as_u64().unwrap() as usize,
        );
        assert_eq!(ok, Ok(false), "verify fail case {n}: {}", c["comment"]);
    }
    for (n, c) in v["verify_error_test_cases"].as_array().unwrap().iter().enumerate() {
        let pks = pick(&keys, &c["key_indices"]);
        let msg = &msgs[c["msg_index"].as_u64().unwrap() as usize];
        let e = partial_sig_verify(
            &arr(&c["sig"]),
            &pick(&pnonces, &c["nonce_indices"]),
            &pks,
            &[],
            msg,
            c["signer_index"].as_u64().unwrap() as usize,
        )
        .unwrap_err();
        expect_error(e, &c["error"], &format!("verify error case {n}"));
    }
}

#[test]
fn tweak_all_cases() {
    let v = load("tweak_vectors.json");
    let sk: [u8; 32] = arr(&v["sk"]);
    let keys: Vec<[u8; 33]> = v["pubkeys"].as_array().unwrap().iter().map(key33).collect();
    let secnonce: [u8; 97] = arr(&v["secnonce"]);
    let pnonces: Vec<PubNonce> = v["pnonces"].as_array().unwrap().iter().map(pubnonce).collect();
    let agg = AggNonce(pubnonce(&v["aggnonce"]).0);
    let tw: Vec<[u8; 32]> = v["tweaks"].as_array().unwrap().iter().map(arr).collect();
    let msg = bytes(&v["msg"]);
    for (n, c) in v["valid_test_cases"].as_array().unwrap().iter().enumerate() {
        let pks = pick(&keys, &c["key_indices"]);
        let t = tweaks(&tw, &c["tweak_indices"], &c["is_xonly"]);
        let nonces = pick(&pnonces, &c["nonce_indices"]);
        assert_eq!(nonce_agg(&nonces).unwrap(), agg);
        let ctx = SessionContext { aggnonce: &agg, pubkeys: &pks, tweaks: &t, msg: &msg };
        let psig = sign(SecNonce::from_bytes(secnonce), &sk, &ctx).unwrap();
        assert_eq!(psig, arr::<32>(&c["expected"]), "valid case {n}: {}", c["comment"]);
        let i = c["signer_index"].as_u64().unwrap() as usize;
        assert!(partial_sig_verify(&psig, &nonces, &pks, &t, &msg, i).unwrap());
    }
    for (n, c) in v["error_test_cases"].as_array().unwrap().iter().enumerate() {
        let pks = pick(&keys, &c["key_indices"]);
        let t = tweaks(&tw, &c["tweak_indices"], &c["is_xonly"]);
        let ctx = SessionContext { aggnonce: &agg, pubkeys: &pks, tweaks: &t, msg: &msg };
        expect_error(
            sign(SecNonce::from_bytes(secnonce), &sk, &ctx).unwrap_err(),
            &c["error"],
            &format!("error case {n}"),
        );
    }
}

#[test]
fn sig_agg_all_cases_and_libsecp_accepts() {
    let v = load("sig_agg_vectors.json");
    let keys: Vec<[u8; 33]> = v["pubkeys"].as_array().unwrap().iter().map(key33).collect();
    let pnonces: Vec<PubNonce> = v["pnonces"].as_array().unwrap().iter().map(pubnonce).collect();
    let tw: Vec<[u8; 32]> = v["tweaks"].as_array().unwrap().iter().map(arr).collect();
    let psigs: Vec<[u8; 32]> = v["psigs"].as_array().unwrap().iter().map(arr).collect();
    let msg = bytes(&v["msg"]);
    for (n, c) in v["valid_test_cases"].as_array().unwrap().iter().enumerate() {
        let pks = pick(&keys, &c["key_indices"]);
        let t = tweaks(&tw, &c["tweak_indices"], &c["is_xonly"]);
        let agg = AggNonce(arr(&c["aggnonce"]));
        assert_eq!(nonce_agg(&pick(&pnonces, &c["nonce_indices"])).unwrap(), agg, "case {n}");
        let ctx = SessionContext { aggnonce: &agg, pubkeys: &pks, tweaks: &t, msg: &msg };
        let sig = partial_sig_agg(&pick(&psigs, &c["psig_indices"]), &ctx).unwrap();
        assert_eq!(sig.to_vec(), bytes(&c["expected"]), "valid case {n}");
        let xonly =
            t.iter().try_fold(key_agg(&pks).unwrap(), |k, (tt, x)| k.apply_tweak(tt, *x)).unwrap().xonly_pubkey();
        assert!(libsecp_verify(&xonly, &msg, &sig), "valid case {n}: libsecp256k1 rejects");
    }
    for (n, c) in v["error_test_cases"].as_array().unwrap().iter().enumerate() {
        let pks = pick(&keys, &c["key_indices"]);
        let t = tweaks(&tw, &c["tweak_indices"], &c["is_xonly"]);
        let agg = AggNonce(arr(&c["aggnonce"]));
        let ctx = SessionContext { aggnonce: &agg, pubkeys: &pks, tweaks: &t, msg: &msg };
        let e = partial_sig_agg(&pick(&psigs, &c["psig_indices"]), &ctx).unwrap_err();
        expect_error(e, &c["error"], &format!("error case {n}"));
    }
}

#[test]
fn det_sign_all_cases() {
    let v = load("det_sign_vectors.json");
    let sk: [u8; 32] = arr(&v["sk"]);
    let keys: Vec<[u8; 33]> = v["pubkeys"].as_array().unwrap().iter().map(key33).collect();
    let msgs: Vec<Vec<u8>> = v["msgs"].as_array().unwrap().iter().map(bytes).collect();
    let run = |c: &Value| {
        let pks = pick(&keys, &c["key_indices"]);
        let t: Vec<([u8; 32], bool)> = c["tweaks"]
            .as_array()
            .unwrap()
            .iter()
            .map(arr)
            .zip(c["is_xonly"].as_array().unwrap().iter().map(|b| b.as_bool().unwrap()))
            .collect();
        let rand = (!c["rand"].is_null()).then(|| arr::<32>(&c["rand"]));
        let other = AggNonce(pubnonce(&c["aggothernonce"]).0);
        let msg = &msgs[c["msg_index"].as_u64().unwrap() as usize];
        deterministic_sign(&sk, &other, &pks, &t, msg, rand.as_ref())
    };
    for (n, c) in v["valid_test_cases"].as_array().unwrap().iter().enumerate() {
        let (pubn, psig) = run(c).unwrap();
        assert_eq!(pubn.0.to_vec(), bytes(&c["expected"][0]), "valid case {n}: pubnonce");
        assert_eq!(psig.to_vec(), bytes(&c["expected"][1]), "valid case {n}: psig");
    }
    for (n, c) in v["error_test_cases"].as_array().unwrap().iter().enumerate() {
        expect_error(run(c).unwrap_err(), &c["error"], &format!("error case {n}: {}", c["comment"]));
    }
}

#[test]
fn two_party_roundtrip_verifies_with_libsecp() {
    use rand::RngCore;
    let mut rng = rand::rngs::OsRng;
    let secp = secp256k1_ctx();
    let sks: Vec<[u8; 32]> = (0..2)
        .map(|_| {
            let mut b = [0u8; 32];
            rng.fill_bytes(&mut b);
            b
        })
        .collect();
    let pks: Vec<[u8; 33]> = sks.iter().map(&secp).collect();
    let pks = key_sort(&pks);
    let msg = b"a channel commitment, say";
    let mut secs = Vec::new();
    let mut pubs = Vec::new();
    for (sk, pk) in sks.iter().zip(sks.iter().map(&secp)) {
        let mut r = [0u8; 32];
        rng.fill_bytes(&mut r);
        let (s, p) = nonce_gen(&r, Some(sk), &pk, None, None, None).unwrap();
        secs.push(s);
        pubs.push(p);
    }
    let agg = nonce_agg(&pubs).unwrap();
    let tweak = [([7u8; 32], true)];
    let ctx = SessionContext { aggnonce: &agg, pubkeys: &pks, tweaks: &tweak, msg };
    let psigs: Vec<[u8; 32]> = secs.into_iter().zip(&sks).map(|(s, sk)| sign(s, sk, &ctx).unwrap()).collect();
    let sig = partial_sig_agg(&psigs, &ctx).unwrap();
    let q = key_agg(&pks).unwrap().apply_tweak(&tweak[0].0, true).unwrap().xonly_pubkey();
    assert!(libsecp_verify(&q, msg, &sig));
    let mut bad = sig;
    bad[40] ^= 1;
    assert!(!libsecp_verify(&q, msg, &bad));
}

fn secp256k1_ctx() -> impl Fn(&[u8; 32]) -> [u8; 33] {
    |sk| {
        let secp = secp256k1::Secp256k1::signing_only();
        secp256k1::PublicKey::from_secret_key(&secp, &secp256k1::SecretKey::from_slice(sk).unwrap()).serialize()
    }
}
