//! Shared by the process tests: the real `qls-cosigner` binary started in a temporary data
//! directory, with `kill -9`, failpoints and a test coordinator identity.
// Each test crate uses its own subset of these helpers.
#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use qls_protocol::quic::{client_endpoint, connect, request, Identity};
use qls_protocol::*;
use qls_signer_core::dealer;
use qls_signer_core::frost::round1::{self, SigningCommitments};
use qls_signer_core::frost::SigningPackage;
use qls_signer_core::keys::{identifier_for, KeyShare};
use quinn::{Connection, Endpoint};

pub const BIN: &str = env!("CARGO_BIN_EXE_qls-cosigner");

pub struct Cosigner {
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    pub fingerprint: Fingerprint,
    child: Option<Child>,
    pub coordinator: Identity,
    pub endpoint: Endpoint,
}

pub fn cli(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

impl Cosigner {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let d = dir.path().to_str().unwrap();
        let fp = cli(&["init", "--data-dir", d, "--name", "c1", "--listen", &addr.to_string()]);
        let coordinator = Identity::generate("coordinator").unwrap();
        cli(&["pin", "--data-dir", d, "--coordinator", &qls_protocol::quic::fingerprint_hex(&coordinator.fingerprint)]);
        let config = dir.path().join("cosigner.toml");
        let text = std::fs::read_to_string(&config)
            .unwrap()
            .replace("allow_dealer_import = false", "allow_dealer_import = true");
        std::fs::write(&config, text).unwrap();
        let fingerprint = qls_protocol::quic::parse_fingerprint(&fp).unwrap();
        let endpoint = client_endpoint("127.0.0.1:0".parse().unwrap()).unwrap();
        Self { dir, addr, fingerprint, child: None, coordinator, endpoint }
    }

    pub async fn start(&mut self, failpoint: Option<&str>) -> Connection {
        let mut cmd = Command::new(BIN);
        cmd.args(["run", "--data-dir", self.dir.path().to_str().unwrap()]).env("RUST_LOG", "warn");
        if let Some(f) = failpoint {
            cmd.env("QLS_FAILPOINT", f);
        }
        self.child = Some(cmd.spawn().unwrap());
        for _ in 0..200 {
            let attempt = connect(&self.endpoint, &self.coordinator, self.addr, self.fingerprint);
            if let Ok(Ok(c)) = tokio::time::timeout(Duration::from_millis(200), attempt).await {
                if let Ok(CosignerResponse::Hello { .. }) = call(&c, &CosignerRequest::Hello).await {
                    return c;
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("cosigner did not come up");
    }

    /// SIGKILL: no destructor, no flush, like pulling the plug on the process.
    pub fn kill_9(&mut self) {
        let mut c = self.child.take().unwrap();
        c.kill().unwrap();
        c.wait().unwrap();
    }

    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        self.child.take().unwrap().wait().unwrap()
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Cosigner {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub async fn call(c: &Connection, req: &CosignerRequest) -> Result<CosignerResponse, qls_protocol::quic::StreamError> {
    request(c, req, Duration::from_secs(3)).await
}

/// Imports a 2-of-2 dealer key: the process holds share 1, the test holds share 2.
pub async fn import_key(c: &Connection, cosigner: &Cosigner) -> (KeyShare, KeyShare) {
    let mut rng = rand::rngs::OsRng;
    let mut shares = dealer::split(None, &[cosigner.fingerprint, [9; 32]], 2, &mut rng).unwrap();
    let (_, theirs) = shares.remove(0);
    let (_, ours) = shares.remove(0);
    let req = CosignerRequest::ImportDealerShare {
        key_package: theirs.key_package.serialize().unwrap(),
        public_key_package: theirs.public_key_package.serialize().unwrap(),
    };
    assert!(matches!(call(c, &req).await.unwrap(), CosignerResponse::Imported(_)));
    (theirs, ours)
}

pub async fn commitments(c: &Connection, key: &KeyShare, count: u32) -> Vec<(u64, SigningCommitments)> {
    let req = CosignerRequest::NonceCommitments { key_id: key.key_id(), after_id: None, count };
    match call(c, &req).await.unwrap() {
        CosignerResponse::NonceCommitments { commitments, .. } => commitments
            .into_iter()
            .map(|n| (n.nonce_id, SigningCommitments::deserialize(&n.commitments).unwrap()))
            .collect(),
        other => panic!("{other:?}"),
    }
}

/// A sign request for `msg` using the process's nonce (`id`, `theirs`) and a fresh local
/// nonce of ours; returns the request, the package and our nonce.
pub fn sign_request(
    key: &KeyShare,
    ours: &KeyShare,
    id: u64,
    theirs: SigningCommitments,
    msg: [u8; 32],
) -> (CosignerRequest, SigningPackage, round1::SigningNonces) {
    let (our_nonce, our_commit) = round1::commit(ours.key_package.signing_share(), &mut rand::rngs::OsRng);
    let package = SigningPackage::new(
        [(identifier_for(&[9; 32]).unwrap(), our_commit), (key.identifier(), theirs)].into_iter().collect(),
        &msg,
    );
    let req = CosignerRequest::Sign(SignRequest {
        key_id: key.key_id(),
        payload: SignPayload::Message(msg),
        items: vec![SignItem { nonce_id: id, signing_package: package.serialize().unwrap() }],
    });
    (req, package, our_nonce)
}

pub fn error_kind(r: CosignerResponse) -> ErrorKind {
    match r {
        CosignerResponse::Error { kind, .. } => kind,
        other => panic!("expected an error reply, got {other:?}"),
    }
}
