//! rustls certificate verifiers that accept exactly the pinned fingerprints, in both
//! directions (server verifying clients, client verifying the one server it dialled).
//! Handshake signatures are still checked with the certificate's key, so holding a
//! pinned certificate without its private key is not enough.
//!
//! Must never: accept an unpinned certificate, or skip the handshake signature check.

use std::collections::HashSet;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::identity::fingerprint;
use crate::messages::Fingerprint;

fn algorithms() -> WebPkiSupportedAlgorithms {
    rustls::crypto::ring::default_provider().signature_verification_algorithms
}

#[derive(Debug)]
struct Pins {
    allowed: HashSet<Fingerprint>,
    algs: WebPkiSupportedAlgorithms,
}

impl Pins {
    fn check(&self, cert: &CertificateDer<'_>) -> Result<(), Error> {
        if self.allowed.contains(&fingerprint(cert)) {
            Ok(())
        } else {
            Err(Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure))
        }
    }
}

/// The handshake-signature methods both verifiers share: checked with the
/// certificate's own key, whatever the pin.
macro_rules! delegate_handshake_signatures {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            verify_tls12_signature(message, cert, dss, &self.0.algs)
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            verify_tls13_signature(message, cert, dss, &self.0.algs)
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.algs.supported_schemes()
        }
    };
}

/// Server side: a client must present a pinned certificate.
#[derive(Debug)]
pub struct PinnedClientVerifier(Pins);

impl PinnedClientVerifier {
    pub fn new(allowed: impl IntoIterator<Item = Fingerprint>) -> Arc<Self> {
        Arc::new(Self(Pins { allowed: allowed.into_iter().collect(), algs: algorithms() }))
    }
}

impl ClientCertVerifier for PinnedClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        self.0.check(end_entity).map(|_| ClientCertVerified::assertion())
    }
    delegate_handshake_signatures!();
}

/// Client side: the server must present the certificate pinned for that server.
#[derive(Debug)]
pub struct PinnedServerVerifier(Pins);

impl PinnedServerVerifier {
    pub fn new(allowed: impl IntoIterator<Item = Fingerprint>) -> Arc<Self> {
        Arc::new(Self(Pins { allowed: allowed.into_iter().collect(), algs: algorithms() }))
    }
}

impl ServerCertVerifier for PinnedServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        self.0.check(end_entity).map(|_| ServerCertVerified::assertion())
    }
    delegate_handshake_signatures!();
}
