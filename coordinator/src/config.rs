//! The coordinator's TOML config (`coordinator.toml` in its data directory): the node
//! API address, the pinned clients, the cosigners (name, address, pinned fingerprint),
//! the network for addresses, timeouts and nonce-pool sizes.
//!
//! Must never: accept a cosigner without a pinned fingerprint, or an out-of-range limit.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use qls_protocol::quic::parse_fingerprint;
use qls_protocol::{Fingerprint, KeyId};

pub const CONFIG_FILE: &str = "coordinator.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Parse { path: PathBuf, source: toml::de::Error },
    #[error("{path}: {field}: {reason}")]
    Invalid { path: PathBuf, field: String, reason: String },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CosignerEntry {
    pub name: String,
    pub addr: SocketAddr,
    pub fingerprint: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoordinatorConfigFile {
    pub name: String,
    /// Node API address.
    pub listen: SocketAddr,
    /// `bitcoin`, `testnet`, `signet` or `regtest`: the network of printed addresses.
    #[serde(default = "default_network")]
    pub network: String,
    /// Fingerprints (hex) of node clients allowed to connect.
    #[serde(default)]
    pub clients: Vec<String>,
    #[serde(default)]
    pub cosigners: Vec<CosignerEntry>,
    /// The group key to sign with (hex x-only); set by `dkg`. When unset, the one key all
    /// cosigners report is used.
    #[serde(default)]
    pub key_id: Option<String>,
    #[serde(default = "default_timeout")]
    pub request_timeout_ms: u64,
    /// Commitments kept in memory per cosigner; refilled below half.
    #[serde(default = "default_pool_target")]
    pub nonce_pool_target: u32,
}

fn default_network() -> String {
    "regtest".into()
}
fn default_timeout() -> u64 {
    2_000
}
fn default_pool_target() -> u32 {
    128
}

/// A checked coordinator config.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    pub name: String,
    pub listen: SocketAddr,
    pub network: bitcoin::Network,
    pub clients: Vec<Fingerprint>,
    pub cosigners: Vec<CosignerSpec>,
    pub key_id: Option<KeyId>,
    pub request_timeout: Duration,
    pub nonce_pool_target: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosignerSpec {
    pub name: String,
    pub addr: SocketAddr,
    pub fingerprint: Fingerprint,
}

impl CoordinatorConfigFile {
    pub fn new(name: &str, listen: SocketAddr) -> Self {
        Self {
            name: name.into(),
            listen,
            network: default_network(),
            clients: Vec::new(),
            cosigners: Vec::new(),
            key_id: None,
            request_timeout_ms: default_timeout(),
            nonce_pool_target: default_pool_target(),
        }
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse { path: path.into(), source })
    }

    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        let text = toml::to_string_pretty(self).map_err(|e| ConfigError::Invalid {
            path: path.into(),
            field: "*".into(),
            reason: e.to_string(),
        })?;
        std::fs::write(path, text).map_err(|source| ConfigError::Write { path: path.into(), source })
    }

    pub fn check(&self, path: &Path) -> Result<CoordinatorConfig, ConfigError> {
        let invalid =
            |field: &str, reason: String| ConfigError::Invalid { path: path.into(), field: field.into(), reason };
        let network = match self.network.as_str() {
            "bitcoin" | "mainnet" => bitcoin::Network::Bitcoin,
            "testnet" => bitcoin::Network::Testnet,
            "signet" => bitcoin::Network::Signet,
            "regtest" => bitcoin::Network::Regtest,
            other => return Err(invalid("network", format!("unknown network {other:?}"))),
        };
        if !(10..=600_000).contains(&self.request_timeout_ms) {
            return Err(invalid("request_timeout_ms", format!("{} is not in 10..=600000", self.request_timeout_ms)));
        }
        if !(1..=qls_protocol::limits::MAX_NONCE_BATCH * 16).contains(&self.nonce_pool_target) {
            return Err(invalid("nonce_pool_target", format!("{} is not in 1..=4096", self.nonce_pool_target)));
        }
        if self.cosigners.len() > qls_protocol::limits::MAX_COSIGNERS {
            return Err(invalid(
                "cosigners",
                format!("{} cosigners; at most {}", self.cosigners.len(), qls_protocol::limits::MAX_COSIGNERS),
            ));
        }
        let clients = self
            .clients
            .iter()
            .map(|s| parse_fingerprint(s).map_err(|e| invalid("clients", e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        let mut cosigners = Vec::new();
        for c in &self.cosigners {
            let fingerprint =
                parse_fingerprint(&c.fingerprint).map_err(|e| invalid("cosigners", format!("{}: {e}", c.name)))?;
            if cosigners.iter().any(|o: &CosignerSpec| o.fingerprint == fingerprint || o.name == c.name) {
                return Err(invalid("cosigners", format!("{}: duplicate name or fingerprint", c.name)));
            }
            cosigners.push(CosignerSpec { name: c.name.clone(), addr: c.addr, fingerprint });
        }
        let key_id = match &self.key_id {
            None => None,
            Some(s) => Some(
                hex::decode(s)
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .ok_or_else(|| invalid("key_id", format!("{s:?} is not 64 hex characters")))?,
            ),
        };
        Ok(CoordinatorConfig {
            name: self.name.clone(),
            listen: self.listen,
            network,
            clients,
            cosigners,
            key_id,
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            nonce_pool_target: self.nonce_pool_target,
        })
    }
}

impl CoordinatorConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        CoordinatorConfigFile::load(path)?.check(path)
    }
}
