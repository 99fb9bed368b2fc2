//! The node's cache of its channels' public keys, as the quorum's key holder gave them:
//! LDK asks for a channel's signer (`derive_channel_signer`, which cannot fail) whenever it
//! loads or re-creates a channel, and the quorum may be unreachable at that moment. A
//! channel whose keys are cached gets its signer at once; the quorum is asked only when it
//! must sign.
//!
//! Optionally kept in a file (one line per channel: hex channel keys id, space, hex of
//! LDK's serialization of `ChannelPublicKeys`), appended and synced on every new channel,
//! so a node restarted during an outage still loads its channels.
//!
//! Public keys only: the file holds no secret. A tampered file gives LDK wrong keys for a
//! channel, which the cosigners refuse at setup and whose signatures the adapter refuses.
//!
//! Keys are remembered once the quorum stores the channel's setup (a peer that opens and
//! abandons channels does not grow the file).
//!
//! Must never: hand out keys the quorum did not give (no derivation here), or panic on a
//! malformed file (a typed error names the line).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use lightning::ln::chan_utils::ChannelPublicKeys;
use lightning::util::ser::{Readable, Writeable};
use qls_protocol::ChannelKeysId;

#[derive(Debug, thiserror::Error)]
pub enum KeysCacheError {
    #[error("channel keys cache {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("channel keys cache {path}, line {line}: {reason}")]
    Malformed { path: PathBuf, line: usize, reason: &'static str },
}

/// Channel keys id → the channel's public keys, in memory and optionally in a file; and
/// the channels whose keys the quorum could not give when LDK asked.
#[derive(Default)]
pub struct ChannelKeysCache {
    keys: Mutex<HashMap<ChannelKeysId, ChannelPublicKeys>>,
    file: Option<PathBuf>,
    /// Bounded by [`MAX_UNAVAILABLE`]: the oldest are forgotten (LDK asks for a new
    /// channel's destination script right after its signer, never much later).
    unavailable: Mutex<std::collections::VecDeque<ChannelKeysId>>,
}

/// Channels remembered as unavailable at most (a peer opening channels during an outage
/// cannot grow the set without bound).
pub const MAX_UNAVAILABLE: usize = 1024;

fn decode_line(line: &str) -> Result<(ChannelKeysId, ChannelPublicKeys), &'static str> {
    let (id, keys) = line.split_once(' ').ok_or("expected `<id> <keys>`")?;
    let id: ChannelKeysId =
        hex::decode(id).ok().and_then(|b| b.try_into().ok()).ok_or("channel keys id is not 32 bytes of hex")?;
    let bytes = hex::decode(keys.trim()).map_err(|_| "keys are not hex")?;
    let mut reader = &bytes[..];
    let keys = ChannelPublicKeys::read(&mut reader).map_err(|_| "keys do not decode")?;
    if !reader.is_empty() {
        return Err("trailing bytes after the keys");
    }
    Ok((id, keys))
}

impl ChannelKeysCache {
    /// A cache kept in `path` (created if absent), loaded now.
    pub fn open(path: &Path) -> Result<Self, KeysCacheError> {
        let io = |source| KeysCacheError::Io { path: path.to_owned(), source };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io(e)),
        };
        let mut keys = HashMap::new();
        for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let (id, k) = decode_line(line).map_err(|reason| KeysCacheError::Malformed {
                path: path.to_owned(),
                line: n + 1,
                reason,
            })?;
            keys.insert(id, k);
        }
        Ok(Self { keys: Mutex::new(keys), file: Some(path.to_owned()), unavailable: Default::default() })
    }

    pub fn get(&self, id: &ChannelKeysId) -> Option<ChannelPublicKeys> {
        self.keys.lock().unwrap_or_else(|e| e.into_inner()).get(id).cloned()
    }

    /// The quorum could not give `id`'s keys when LDK asked.
    pub fn mark_unavailable(&self, id: ChannelKeysId) {
        let mut u = self.unavailable.lock().unwrap_or_else(|e| e.into_inner());
        if !u.contains(&id) {
            if u.len() == MAX_UNAVAILABLE {
                u.pop_front();
            }
            u.push_back(id);
        }
    }

    /// Whether the quorum could not give `id`'s keys (and has not since).
    pub fn is_unavailable(&self, id: &ChannelKeysId) -> bool {
        self.unavailable.lock().unwrap_or_else(|e| e.into_inner()).contains(id)
    }

    /// Remembers `keys` for `id` (and appends them to the file, synced); `id` is no longer
    /// unavailable. A failed write leaves the keys in memory and is returned: the caller
    /// logs it.
    pub fn insert(&self, id: ChannelKeysId, keys: &ChannelPublicKeys) -> Result<(), KeysCacheError> {
        self.unavailable.lock().unwrap_or_else(|e| e.into_inner()).retain(|u| *u != id);
        let mut map = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if map.get(&id) == Some(keys) {
            return Ok(());
        }
        map.insert(id, keys.clone());
        let Some(path) = &self.file else { return Ok(()) };
        let io = |source| KeysCacheError::Io { path: path.clone(), source };
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(io)?;
        writeln!(f, "{} {}", hex::encode(id), hex::encode(keys.encode())).map_err(io)?;
        f.sync_all().map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
    use lightning::ln::channel_keys::{DelayedPaymentBasepoint, HtlcBasepoint, RevocationBasepoint};

    fn keys(tag: u8) -> ChannelPublicKeys {
        let secp = Secp256k1::new();
        let p = |k: u8| PublicKey::from_secret_key(&secp, &SecretKey::from_slice(&[k; 32]).unwrap());
        ChannelPublicKeys {
            funding_pubkey: p(tag),
            revocation_basepoint: RevocationBasepoint(p(tag + 1)),
            payment_point: p(tag + 2),
            delayed_payment_basepoint: DelayedPaymentBasepoint(p(tag + 3)),
            htlc_basepoint: HtlcBasepoint(p(tag + 4)),
        }
    }

    #[test]
    fn keys_written_are_read_back_by_a_restarted_node() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("channel-keys");
        let cache = ChannelKeysCache::open(&path).unwrap();
        assert!(cache.get(&[1; 32]).is_none());
        cache.insert([1; 32], &keys(1)).unwrap();
        cache.insert([2; 32], &keys(10)).unwrap();
        cache.insert([1; 32], &keys(1)).unwrap();
        let reopened = ChannelKeysCache::open(&path).unwrap();
        assert_eq!(reopened.get(&[1; 32]), Some(keys(1)));
        assert_eq!(reopened.get(&[2; 32]), Some(keys(10)));
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 2, "a known channel is not appended again");
    }

    #[test]
    fn a_malformed_file_is_a_typed_error_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("channel-keys");
        let good = format!("{} {}\n", hex::encode([1; 32]), hex::encode(keys(1).encode()));
        for (bad, reason) in [
            ("zz", "expected `<id> <keys>`"),
            ("0101 00", "channel keys id is not 32 bytes of hex"),
            (&*format!("{} 0001", hex::encode([1; 32])), "keys do not decode"),
            (
                &*format!("{} {}00", hex::encode([1; 32]), hex::encode(keys(1).encode())),
                "trailing bytes after the keys",
            ),
        ] {
            std::fs::write(&path, format!("{good}{bad}\n")).unwrap();
            match ChannelKeysCache::open(&path) {
                Err(KeysCacheError::Malformed { line: 2, reason: r, .. }) => assert_eq!(r, reason),
                other => panic!("{bad}: {:?}", other.map(|_| ())),
            }
        }
    }
}
