//! Allowlist entries that stand for many scripts: an account xpub allows the P2WPKH and
//! BIP-86 P2TR scripts of its receive (`0/i`) and change (`1/i`) addresses for the first
//! `lookahead` indices, expanded once when the config is loaded.
//!
//! Must never: allow a script no listed key derives, or derive without a bound.

use alloc::collections::BTreeSet;
use alloc::format;
use alloc::string::String;
use core::str::FromStr;

use bitcoin::bip32::{ChildNumber, Xpub};
use bitcoin::key::CompressedPublicKey;
use bitcoin::secp256k1::{Secp256k1, Verification};
use bitcoin::ScriptBuf;

/// Most indices per chain an xpub entry may expand to.
pub const MAX_XPUB_LOOKAHEAD: u32 = 100_000;

/// The scripts `xpub` allows: P2WPKH and P2TR (BIP-86 key path) of `0/i` and `1/i` for
/// `i < lookahead`.
pub fn xpub_scripts<C: Verification>(
    secp: &Secp256k1<C>,
    xpub: &str,
    lookahead: u32,
) -> Result<BTreeSet<ScriptBuf>, String> {
    if lookahead > MAX_XPUB_LOOKAHEAD {
        return Err(format!("lookahead {lookahead} is above {MAX_XPUB_LOOKAHEAD}"));
    }
    let account = Xpub::from_str(xpub).map_err(|e| format!("{xpub:?} is not an xpub: {e}"))?;
    let mut scripts = BTreeSet::new();
    for chain in [0, 1] {
        let chain_key = account
            .ckd_pub(secp, ChildNumber::Normal { index: chain })
            .map_err(|e| format!("{xpub:?}: cannot derive chain {chain}: {e}"))?;
        for i in 0..lookahead {
            let child = chain_key
                .ckd_pub(secp, ChildNumber::Normal { index: i })
                .map_err(|e| format!("{xpub:?}: cannot derive {chain}/{i}: {e}"))?;
            scripts.insert(ScriptBuf::new_p2wpkh(&CompressedPublicKey(child.public_key).wpubkey_hash()));
            scripts.insert(ScriptBuf::new_p2tr(secp, child.public_key.x_only_public_key().0, None));
        }
    }
    Ok(scripts)
}

#[cfg(test)]
mod tests {
    use super::*;

    use alloc::string::ToString;
    use bitcoin::bip32::{DerivationPath, Xpriv};

    // BIP-86's test vectors (mnemonic "abandon … about"): the root key, and the output keys
    // of m/86'/0'/0'/0/0 and m/86'/0'/0'/0/1.
    const BIP86_ROOT: &str = "xprv9s21ZrQH143K3GJpoapnV8SFfukcVBSfeCficPSGfubmSFDxo1kuHnLisriDvSnRRuL2Qrg5ggqHKNVpxR86QEC8w35uxmGoggxtQTPvfUu";
    // BIP-84's account key, in its SLIP-132 `zpub` encoding.
    const BIP84_ZPUB: &str = "zpub6rFR7y4Q2AijBEqTUquhVz398htDFrtymD9xYYfG1m4wAcvPhXNfE3EfH1r1ADqtfSdVCToUG868RvUUkgDKf31mGDtKsAYz2oz2AGutZYs";

    #[test]
    fn derives_the_published_addresses_and_nothing_past_lookahead() {
        let secp = Secp256k1::new();
        let root = Xpriv::from_str(BIP86_ROOT).unwrap();
        let account = root.derive_priv(&secp, &DerivationPath::from_str("m/86'/0'/0'").unwrap()).unwrap();
        let xpub = Xpub::from_priv(&secp, &account).to_string();
        let bip86_xpub = xpub.as_str();
        // BIP-86 m/86'/0'/0'/0/0 and /0/1 pay to these output keys.
        let scripts = xpub_scripts(&secp, bip86_xpub, 2).unwrap();
        let p2tr = |hex: &str| {
            let mut s = alloc::vec![0x51, 0x20];
            s.extend(hex::decode(hex).unwrap());
            ScriptBuf::from_bytes(s)
        };
        assert!(scripts.contains(&p2tr("a60869f0dbcf1dc659c9cecbaf8050135ea9e8cdc487053f1dc6880949dc684c")));
        assert!(scripts.contains(&p2tr("a82f29944d65b86ae6b5e5cc75e294ead6c59391a1edc5e016e3498c67fc7bbb")));
        assert_eq!(scripts.len(), 2 * 2 * 2, "two chains, two indices, two script types");
        // /0/2 is past the lookahead of 2.
        let more = xpub_scripts(&secp, bip86_xpub, 3).unwrap();
        assert!(more.is_superset(&scripts) && more.len() == 12);
        assert!(xpub_scripts(&secp, "xpubnope", 2).is_err());
        assert!(xpub_scripts(&secp, bip86_xpub, MAX_XPUB_LOOKAHEAD + 1).is_err());
    }

    #[test]
    fn zpub_is_not_an_xpub() {
        // Only xpub/tpub encodings are accepted (SLIP-132 variants would be misread).
        assert!(xpub_scripts(&Secp256k1::verification_only(), BIP84_ZPUB, 1).is_err());
    }
}
