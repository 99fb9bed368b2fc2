//! Long-term identity of a coordinator, cosigner or client: an ECDSA P-256 key and a
//! self-signed certificate made with `rcgen`, stored in the data directory. The
//! certificate's SHA-256 fingerprint is what peers pin.
//!
//! Must never: overwrite an existing identity, or write the private key world-readable.

use std::path::{Path, PathBuf};

use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};

use crate::messages::Fingerprint;

const KEY_FILE: &str = "identity.key.der";
const CERT_FILE: &str = "identity.cert.der";

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("an identity already exists in {0}")]
    AlreadyExists(PathBuf),
    #[error("no identity in {dir} (run `init --data-dir {dir}` first): {source}")]
    Missing { dir: PathBuf, source: std::io::Error },
    #[error("i/o on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("identity key is unusable: {0}")]
    BadKey(String),
    #[error("identity signature does not verify under the certificate: {0}")]
    BadSignature(String),
    #[error("fingerprint must be 64 hex characters, got {0:?}")]
    BadFingerprint(String),
}

/// A loaded identity: certificate, private key and the certificate's fingerprint.
pub struct Identity {
    pub cert_der: CertificateDer<'static>,
    key_pkcs8: Vec<u8>,
    signer: EcdsaKeyPair,
    pub fingerprint: Fingerprint,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity").field("fingerprint", &fingerprint_hex(&self.fingerprint)).finish()
    }
}

impl Identity {
    /// Makes a fresh identity in memory (key and self-signed certificate).
    pub fn generate(name: &str) -> Result<Self, IdentityError> {
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(vec![super::SERVER_NAME.to_string()])?;
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let cert = params.self_signed(&key)?;
        Self::from_der(cert.der().to_vec(), key.serialize_der())
    }

    fn from_der(cert: Vec<u8>, key_pkcs8: Vec<u8>) -> Result<Self, IdentityError> {
        let signer = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &key_pkcs8, &SystemRandom::new())
            .map_err(|e| IdentityError::BadKey(e.to_string()))?;
        Ok(Self { fingerprint: fingerprint(&cert), cert_der: CertificateDer::from(cert), key_pkcs8, signer })
    }

    /// Creates a new identity in `dir` and returns it. Refuses if one exists.
    pub fn init(dir: &Path, name: &str) -> Result<Self, IdentityError> {
        let key_path = dir.join(KEY_FILE);
        if key_path.exists() {
            return Err(IdentityError::AlreadyExists(dir.to_path_buf()));
        }
        std::fs::create_dir_all(dir).map_err(|source| IdentityError::Io { path: dir.to_path_buf(), source })?;
        let id = Self::generate(name)?;
        write_private(&key_path, &id.key_pkcs8)?;
        let cert_path = dir.join(CERT_FILE);
        std::fs::write(&cert_path, id.cert_der.as_ref())
            .map_err(|source| IdentityError::Io { path: cert_path, source })?;
        Ok(id)
    }

    /// Loads the identity stored in `dir`.
    pub fn load(dir: &Path) -> Result<Self, IdentityError> {
        let read = |file: &str| {
            std::fs::read(dir.join(file)).map_err(|source| IdentityError::Missing { dir: dir.to_path_buf(), source })
        };
        Self::from_der(read(CERT_FILE)?, read(KEY_FILE)?)
    }

    /// The key of QUIC stateless resets (RFC 9000 §10.3) for a server with this identity:
    /// derived from the private key, so a server restarted after a crash resets the
    /// connections its previous run left open and clients redial at once (instead of
    /// waiting out the idle timeout). Tokens reveal nothing about the identity key.
    pub fn stateless_reset_key(&self) -> ring::hmac::Key {
        let mut h = Sha256::new();
        h.update(b"QLS/quic-stateless-reset/v1");
        h.update(&self.key_pkcs8);
        ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &h.finalize())
    }

    /// The key a server's connection ids are made under (see
    /// [`Self::stateless_reset_key`]): a restarted server must recognise its previous run's
    /// ids as its own to answer them with a reset rather than drop them.
    pub fn connection_id_key(&self) -> u64 {
        let mut h = Sha256::new();
        h.update(b"QLS/quic-connection-ids/v1");
        h.update(&self.key_pkcs8);
        let d = h.finalize();
        u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
    }

    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_pkcs8.clone()))
    }

    /// DER ECDSA-P256-SHA256 signature over `msg` with the identity key.
    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, IdentityError> {
        self.signer
            .sign(&SystemRandom::new(), msg)
            .map(|s| s.as_ref().to_vec())
            .map_err(|e| IdentityError::BadKey(e.to_string()))
    }
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), IdentityError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| IdentityError::Io { path: path.to_path_buf(), source };
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), IdentityError> {
    std::fs::write(path, bytes).map_err(|source| IdentityError::Io { path: path.to_path_buf(), source })
}

/// SHA-256 of a certificate's DER bytes.
pub fn fingerprint(cert_der: &[u8]) -> Fingerprint {
    Sha256::digest(cert_der).into()
}

pub fn fingerprint_hex(fp: &Fingerprint) -> String {
    fp.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses a 64-hex-character fingerprint (as printed by `init`).
pub fn parse_fingerprint(s: &str) -> Result<Fingerprint, IdentityError> {
    let s = s.trim();
    let bad = || IdentityError::BadFingerprint(s.to_string());
    if s.len() != 64 || !s.is_ascii() {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

/// Checks `sig` (DER ECDSA-P256-SHA256) over `msg` against the key in `cert_der`.
pub fn verify_identity_sig(cert_der: &[u8], msg: &[u8], sig: &[u8]) -> Result<(), IdentityError> {
    let cert_der = CertificateDer::from(cert_der);
    let cert = webpki::EndEntityCert::try_from(&cert_der).map_err(|e| IdentityError::BadSignature(e.to_string()))?;
    cert.verify_signature(webpki::ring::ECDSA_P256_SHA256, msg, sig)
        .map_err(|e| IdentityError::BadSignature(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_load_roundtrip_and_no_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let a = Identity::init(dir.path(), "a").unwrap();
        let b = Identity::load(dir.path()).unwrap();
        assert_eq!(a.fingerprint, b.fingerprint);
        assert!(matches!(Identity::init(dir.path(), "a"), Err(IdentityError::AlreadyExists(_))));
        assert_eq!(parse_fingerprint(&fingerprint_hex(&a.fingerprint)).unwrap(), a.fingerprint);
    }

    #[test]
    fn identity_signature_binds_to_certificate() {
        let a = Identity::generate("a").unwrap();
        let b = Identity::generate("b").unwrap();
        let sig = a.sign(b"statement").unwrap();
        verify_identity_sig(&a.cert_der, b"statement", &sig).unwrap();
        assert!(verify_identity_sig(&a.cert_der, b"statemenT", &sig).is_err());
        assert!(verify_identity_sig(&b.cert_der, b"statement", &sig).is_err());
    }
}
