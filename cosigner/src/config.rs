//! The cosigner's TOML config (`cosigner.toml` in its data directory): where it listens,
//! which coordinators and fellow cosigners it pins, its nonce pool bound and its policy.
//!
//! Must never: start with an unknown policy tag or action, an unparsable fingerprint or
//! script, or silently default a field it could not read.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bitcoin::ScriptBuf;
use serde::{Deserialize, Serialize};

use qls_protocol::quic::parse_fingerprint;
use qls_protocol::Fingerprint;
use qls_signer_core::policy::{ChannelPolicy, OnchainPolicy, PolicyAction, PolicyConfig, PolicyTag};

pub const CONFIG_FILE: &str = "cosigner.toml";
/// Unused nonces a cosigner keeps per key, at most.
pub const DEFAULT_NONCE_POOL_MAX: u32 = 1024;

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

/// The file as written; [`CosignerConfig`] is the checked form.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CosignerConfigFile {
    pub name: String,
    pub listen: SocketAddr,
    /// Fingerprints (hex) of coordinators allowed to connect.
    #[serde(default)]
    pub coordinators: Vec<String>,
    /// Fingerprints (hex) of fellow cosigners, trusted as DKG participants.
    #[serde(default)]
    pub peers: Vec<String>,
    /// Fingerprints (hex) of the peers that hold the node seed: their attestation of a
    /// legacy channel's holder keys is what this cosigner (if it holds no seed itself)
    /// needs to accept the channel. Each must also be in `peers`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_holder_peers: Vec<String>,
    #[serde(default = "default_pool")]
    pub nonce_pool_max: u32,
    /// Lowest DKG threshold this cosigner takes part in; default: a majority of the group
    /// (this cosigner and all its pinned peers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dkg_min_threshold: Option<u16>,
    /// Test-only: accept trusted-dealer key imports.
    #[serde(default)]
    pub allow_dealer_import: bool,
    /// This cosigner holds the node's ECDSA seed (`node-seed` in its data directory) and
    /// signs legacy-channel and node-key requests once a quorum approved them.
    #[serde(default)]
    pub key_holder: bool,
    /// Approvals a key holder needs (its own included); default: a majority of the group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_threshold: Option<u16>,
    /// A single-device set-up: allows `dkg_min_threshold` and `approval_threshold` below 2
    /// (one device decides alone). Never set it for a quorum.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub single_device: bool,
    /// `bitcoin`, `testnet`, `signet` or `regtest`: the chain whose headers this cosigner
    /// follows (from its genesis block) for heartbeats.
    #[serde(default = "default_network")]
    pub network: String,
    #[serde(default)]
    pub policy: PolicyFile,
}

fn default_network() -> String {
    "regtest".into()
}

fn default_xpub_lookahead() -> u32 {
    1_000
}

fn default_funding_sat_max() -> u64 {
    qls_signer_core::policy::DEFAULT_FUNDING_SAT_MAX
}

fn default_pool() -> u32 {
    DEFAULT_NONCE_POOL_MAX
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// Largest fee a PSBT may pay, in satoshis.
    pub fee_sat_max: u64,
    /// Largest channel the node may fund from the group's wallet, in satoshis.
    #[serde(default = "default_funding_sat_max")]
    pub funding_sat_max: u64,
    /// Output scripts (hex) besides the group's wallet that PSBTs may pay.
    #[serde(default)]
    pub allowlisted_scripts: Vec<String>,
    /// Account xpubs whose receive and change addresses (P2WPKH and P2TR, `0/i` and `1/i`
    /// for `i < xpub_lookahead`) outputs may pay, e.g. a cold wallet.
    #[serde(default)]
    pub allowlisted_xpubs: Vec<String>,
    #[serde(default = "default_xpub_lookahead")]
    pub xpub_lookahead: u32,
    /// Per-tag action, `error` or `warn`; unset tags use their default.
    #[serde(default)]
    pub actions: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub channel: ChannelPolicy,
}

impl Default for PolicyFile {
    fn default() -> Self {
        Self {
            fee_sat_max: OnchainPolicy::default().fee_sat_max,
            funding_sat_max: default_funding_sat_max(),
            allowlisted_scripts: Vec::new(),
            allowlisted_xpubs: Vec::new(),
            xpub_lookahead: default_xpub_lookahead(),
            actions: Default::default(),
            channel: ChannelPolicy::default(),
        }
    }
}

impl PolicyFile {
    /// Checks every policy field (tags, actions, scripts, xpubs, keys) and builds the
    /// runtime policy; `path` names the file in errors.
    pub fn check(&self, path: &Path) -> Result<PolicyConfig, ConfigError> {
        let invalid =
            |field: &str, reason: String| ConfigError::Invalid { path: path.into(), field: field.into(), reason };
        let mut actions = std::collections::BTreeMap::new();
        for (tag, action) in &self.actions {
            let t = PolicyTag::from_name(tag)
                .ok_or_else(|| invalid("policy.actions", format!("unknown policy tag {tag:?}")))?;
            let a = PolicyAction::from_name(action).ok_or_else(|| {
                invalid("policy.actions", format!("{tag}: action must be \"error\" or \"warn\", got {action:?}"))
            })?;
            actions.insert(t, a);
        }
        let mut allowlisted_scripts = self
            .allowlisted_scripts
            .iter()
            .map(|s| {
                hex::decode(s)
                    .map(ScriptBuf::from_bytes)
                    .map_err(|e| invalid("policy.allowlisted_scripts", format!("{s:?}: {e}")))
            })
            .collect::<Result<std::collections::BTreeSet<_>, _>>()?;
        let secp = bitcoin::secp256k1::Secp256k1::verification_only();
        for xpub in &self.allowlisted_xpubs {
            let scripts = qls_signer_core::policy::allowlist::xpub_scripts(&secp, xpub, self.xpub_lookahead)
                .map_err(|e| invalid("policy.allowlisted_xpubs", e))?;
            allowlisted_scripts.extend(scripts);
        }
        let channel = &self.channel;
        for (field, keys) in [
            ("policy.channel.payment_approvers", &channel.payment_approvers),
            ("policy.channel.payee_allowlist", &channel.payee_allowlist),
        ] {
            for k in keys {
                let ok = hex::decode(k).ok().and_then(|b| bitcoin::secp256k1::PublicKey::from_slice(&b).ok()).is_some();
                if !ok {
                    return Err(invalid(field, format!("{k:?} is not a 33-byte hex secp256k1 public key")));
                }
            }
        }
        if channel.velocity_window_secs < qls_signer_core::channel::velocity::VELOCITY_BUCKETS as u64 {
            return Err(invalid(
                "policy.channel.velocity_window_secs",
                format!("{} is below one second per bucket", channel.velocity_window_secs),
            ));
        }
        Ok(PolicyConfig {
            actions,
            onchain: OnchainPolicy {
                allowlisted_scripts,
                fee_sat_max: self.fee_sat_max,
                funding_sat_max: self.funding_sat_max,
            },
            channel: self.channel.clone(),
        })
    }
}

/// A checked cosigner config.
#[derive(Debug, Clone)]
pub struct CosignerConfig {
    pub name: String,
    pub listen: SocketAddr,
    pub coordinators: Vec<Fingerprint>,
    pub peers: Vec<Fingerprint>,
    pub key_holder_peers: Vec<Fingerprint>,
    pub nonce_pool_max: u32,
    pub dkg_min_threshold: Option<u16>,
    pub allow_dealer_import: bool,
    pub key_holder: bool,
    pub approval_threshold: Option<u16>,
    pub single_device: bool,
    pub network: bitcoin::Network,
    pub policy: PolicyConfig,
}

impl CosignerConfigFile {
    pub fn new(name: &str, listen: SocketAddr) -> Self {
        Self {
            name: name.into(),
            listen,
            coordinators: Vec::new(),
            peers: Vec::new(),
            key_holder_peers: Vec::new(),
            nonce_pool_max: DEFAULT_NONCE_POOL_MAX,
            dkg_min_threshold: None,
            allow_dealer_import: false,
            key_holder: false,
            approval_threshold: None,
            single_device: false,
            network: default_network(),
            policy: PolicyFile::default(),
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

    /// Checks every field and builds the runtime config.
    pub fn check(&self, path: &Path) -> Result<CosignerConfig, ConfigError> {
        let invalid =
            |field: &str, reason: String| ConfigError::Invalid { path: path.into(), field: field.into(), reason };
        let fps = |field: &str, list: &[String]| {
            list.iter()
                .map(|s| parse_fingerprint(s).map_err(|e| invalid(field, e.to_string())))
                .collect::<Result<Vec<_>, _>>()
        };
        if self.nonce_pool_max == 0 || self.nonce_pool_max > 1_000_000 {
            return Err(invalid("nonce_pool_max", format!("{} is not in 1..=1000000", self.nonce_pool_max)));
        }
        for (field, value) in
            [("dkg_min_threshold", self.dkg_min_threshold), ("approval_threshold", self.approval_threshold)]
        {
            if value.is_some_and(|t| t < 2) && !self.single_device {
                return Err(invalid(
                    field,
                    format!(
                        "{} lets one device decide alone; set `single_device = true` if that is what you run",
                        value.unwrap_or(0)
                    ),
                ));
            }
        }
        let policy = self.policy.check(path)?;
        let peers = fps("peers", &self.peers)?;
        let key_holder_peers = fps("key_holder_peers", &self.key_holder_peers)?;
        if let Some(stranger) = key_holder_peers.iter().find(|k| !peers.contains(k)) {
            return Err(invalid(
                "key_holder_peers",
                format!("{} is not one of `peers`", qls_protocol::quic::fingerprint_hex(stranger)),
            ));
        }
        Ok(CosignerConfig {
            name: self.name.clone(),
            listen: self.listen,
            coordinators: fps("coordinators", &self.coordinators)?,
            peers,
            key_holder_peers,
            nonce_pool_max: self.nonce_pool_max,
            dkg_min_threshold: self.dkg_min_threshold,
            allow_dealer_import: self.allow_dealer_import,
            key_holder: self.key_holder,
            approval_threshold: self.approval_threshold,
            single_device: self.single_device,
            network: match self.network.as_str() {
                "bitcoin" => bitcoin::Network::Bitcoin,
                "testnet" => bitcoin::Network::Testnet,
                "signet" => bitcoin::Network::Signet,
                "regtest" => bitcoin::Network::Regtest,
                other => return Err(invalid("network", format!("unknown network {other:?}"))),
            },
            policy,
        })
    }
}

impl CosignerConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        CosignerConfigFile::load(path)?.check(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<CosignerConfig, ConfigError> {
        let file: CosignerConfigFile =
            toml::from_str(text).map_err(|source| ConfigError::Parse { path: "t".into(), source })?;
        file.check(Path::new("t"))
    }

    #[test]
    fn unknown_tag_action_and_field_are_named() {
        let base = "name = \"c\"\nlisten = \"127.0.0.1:1\"\n";
        let e = check(&format!("{base}[policy]\nfee_sat_max = 1\n[policy.actions]\n\"policy-nope\" = \"warn\"\n"))
            .unwrap_err();
        assert!(e.to_string().contains("unknown policy tag \"policy-nope\""), "{e}");
        let e = check(&format!(
            "{base}[policy]\nfee_sat_max = 1\n[policy.actions]\n\"policy-onchain-fee-range\" = \"maybe\"\n"
        ))
        .unwrap_err();
        assert!(e.to_string().contains("\"maybe\""), "{e}");
        assert!(matches!(check(&format!("{base}colour = 1\n")), Err(ConfigError::Parse { .. })));
        assert!(check(&format!("{base}coordinators = [\"abc\"]\n")).unwrap_err().to_string().contains("coordinators"));
        let ok = check(&format!(
            "{base}[policy]\nfee_sat_max = 7\n[policy.actions]\n\"policy-onchain-fee-range\" = \"warn\"\n"
        ))
        .unwrap();
        assert_eq!(ok.policy.action(PolicyTag::OnchainFeeRange), PolicyAction::Warn);
        assert_eq!(ok.policy.onchain.fee_sat_max, 7);
    }

    #[test]
    fn thresholds_below_two_need_single_device_mode() {
        let base = "name = \"c\"\nlisten = \"127.0.0.1:1\"\n";
        for field in ["dkg_min_threshold", "approval_threshold"] {
            let e = check(&format!("{base}{field} = 1\n")).unwrap_err();
            assert!(e.to_string().contains(field) && e.to_string().contains("single_device"), "{e}");
            check(&format!("{base}{field} = 1\nsingle_device = true\n")).unwrap();
            check(&format!("{base}{field} = 2\n")).unwrap();
        }
    }

    #[test]
    fn key_holder_peers_must_be_pinned_peers() {
        let a = "aa".repeat(32);
        let b = "bb".repeat(32);
        let base = "name = \"c\"\nlisten = \"127.0.0.1:1\"\n";
        let ok = check(&format!("{base}peers = [\"{a}\", \"{b}\"]\nkey_holder_peers = [\"{a}\"]\n")).unwrap();
        assert_eq!(ok.key_holder_peers, vec![[0xaa; 32]]);
        let e = check(&format!("{base}peers = [\"{a}\"]\nkey_holder_peers = [\"{b}\"]\n")).unwrap_err();
        assert!(e.to_string().contains("key_holder_peers"), "{e}");
    }

    #[test]
    fn keys_and_xpubs_are_checked_at_load() {
        let base = "name = \"c\"\nlisten = \"127.0.0.1:1\"\n[policy]\nfee_sat_max = 1\n";
        let e = check(&format!("{base}[policy.channel]\npayment_approvers = [\"02ab\"]\n")).unwrap_err();
        assert!(e.to_string().contains("payment_approvers"), "{e}");
        let e = check(&format!("{base}[policy.channel]\npayee_allowlist = [\"zz\"]\n")).unwrap_err();
        assert!(e.to_string().contains("payee_allowlist"), "{e}");
        let e = check(&format!("{base}allowlisted_xpubs = [\"xpubnope\"]\n")).unwrap_err();
        assert!(e.to_string().contains("allowlisted_xpubs"), "{e}");
        let e = check(&format!("{base}[policy.channel]\nvelocity_window_secs = 3\n")).unwrap_err();
        assert!(e.to_string().contains("velocity_window_secs"), "{e}");
        // BIP-32 test vector 1's master public key: 2 chains × 3 indices × 2 script types.
        let xpub = "xpub661MyMwAqRbcFtXgS5sYJABqqG9YLmC4Q1Rdap9gSE8NqtwybGhePY2gZ29ESFjqJoCu1Rupje8YtGqsefD265TMg7usUDFdp6W1EGMcet8";
        let ok = check(&format!("{base}allowlisted_xpubs = [\"{xpub}\"]\nxpub_lookahead = 3\n")).unwrap();
        assert_eq!(ok.policy.onchain.allowlisted_scripts.len(), 12);
    }
}
