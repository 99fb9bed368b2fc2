//! A cosigner's own view of the chain tip, kept from block headers the node relays: each
//! header must connect to a header this cosigner already knows, meet its own proof of
//! work under the network's limit, and (on networks that retarget) keep the previous
//! difficulty except at a retarget boundary, where it may move at most fourfold. The
//! branch with the most work wins; only the last [`KEPT_HEADERS`] headers are kept.
//!
//! This is what the heartbeat attests. A node cannot make a cosigner believe a tip
//! without the work behind it, but can withhold headers (the tip's age shows it).
//! Not checked: the exact retarget value and timestamps against median time past.
//!
//! Must never: accept a header that does not connect, grow without bound, or switch to a
//! branch with less work.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use bitcoin::block::Header;
use bitcoin::consensus::encode::deserialize;
use bitcoin::hashes::Hash;
use bitcoin::pow::Work;
use bitcoin::{BlockHash, Network};
use serde::{Deserialize, Serialize};

/// Headers kept: a reorganisation deeper than this does not connect.
pub const KEPT_HEADERS: usize = 144;
/// Most headers in one request.
pub const MAX_HEADERS_PER_REQUEST: usize = 2016;
const RETARGET_INTERVAL: u32 = 2016;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownHeader {
    pub height: u32,
    pub hash: [u8; 32],
    /// Block time (header timestamp).
    pub time: u32,
    pub bits: u32,
    /// Total work of the chain up to this header, big-endian.
    pub chain_work: [u8; 32],
}

/// The most-work chain's last headers, oldest first (never empty).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainTip {
    pub recent: Vec<KnownHeader>,
}

impl ChainTip {
    /// The network's genesis block as the only known header.
    pub fn genesis(network: Network) -> Self {
        let h = bitcoin::blockdata::constants::genesis_block(network).header;
        Self {
            recent: alloc::vec![KnownHeader {
                height: 0,
                hash: h.block_hash().to_byte_array(),
                time: h.time,
                bits: h.bits.to_consensus(),
                chain_work: h.work().to_be_bytes(),
            }],
        }
    }

    pub fn tip(&self) -> &KnownHeader {
        self.recent.last().expect("a chain tip always holds at least one header")
    }

    /// Extends (or reorganises) the chain with `headers` (80 bytes each, in order).
    /// Headers already known change nothing. Returns a reason when one does not hold.
    pub fn extend(&mut self, network: Network, headers: &[Vec<u8>]) -> Result<(), String> {
        if headers.len() > MAX_HEADERS_PER_REQUEST {
            return Err(format!("{} headers, at most {MAX_HEADERS_PER_REQUEST}", headers.len()));
        }
        let params = bitcoin::params::Params::new(network);
        let mut branch: Vec<KnownHeader> = Vec::new();
        let mut fork_at = None;
        for (i, raw) in headers.iter().enumerate() {
            let header: Header = deserialize(raw).map_err(|e| format!("header {i} does not decode: {e}"))?;
            let hash = header.block_hash().to_byte_array();
            let prev = header.prev_blockhash.to_byte_array();
            let parent = match branch.last() {
                Some(p) if p.hash == prev => p.clone(),
                Some(_) => return Err(format!("header {i} does not follow header {}", i - 1)),
                None => {
                    if self.recent.iter().any(|k| k.hash == hash) {
                        continue; // already known (a retry): nothing to do
                    }
                    let at = self.recent.iter().position(|k| k.hash == prev).ok_or_else(|| {
                        format!(
                            "header {i} ({}) does not connect to the last {KEPT_HEADERS} known headers",
                            header.block_hash()
                        )
                    })?;
                    fork_at = Some(at);
                    self.recent[at].clone()
                }
            };
            let target = header.target();
            if target > params.max_attainable_target {
                return Err(format!("header {i}: target above the network's proof-of-work limit"));
            }
            header.validate_pow(target).map_err(|e| format!("header {i}: {e}"))?;
            let height = parent.height + 1;
            if !params.no_pow_retargeting && !params.allow_min_difficulty_blocks {
                let before = bitcoin::Target::from_compact(bitcoin::CompactTarget::from_consensus(parent.bits));
                let ok = if height % RETARGET_INTERVAL == 0 {
                    target >= before.min_transition_threshold() && target <= before.max_transition_threshold(&params)
                } else {
                    header.bits.to_consensus() == parent.bits
                };
                if !ok {
                    return Err(format!("header {i} at height {height}: difficulty changed outside the retarget rule"));
                }
            }
            let work = Work::from_be_bytes(parent.chain_work) + header.work();
            branch.push(KnownHeader {
                height,
                hash,
                time: header.time,
                bits: header.bits.to_consensus(),
                chain_work: work.to_be_bytes(),
            });
        }
        let (Some(at), Some(new_tip)) = (fork_at, branch.last()) else {
            return Ok(());
        };
        if new_tip.chain_work <= self.tip().chain_work {
            return Err(format!("branch to height {} has no more work than the tip", new_tip.height));
        }
        self.recent.truncate(at + 1);
        self.recent.extend(branch);
        let excess = self.recent.len().saturating_sub(KEPT_HEADERS);
        self.recent.drain(..excess);
        Ok(())
    }

    pub fn tip_hash(&self) -> BlockHash {
        BlockHash::from_byte_array(self.tip().hash)
    }
}

/// Judges a heartbeat: `headers` extend this cosigner's chain (`policy-chain-headers`),
/// and the tip the node wants attested is this cosigner's tip, no older than
/// `max_age_secs` by its own clock (`policy-heartbeat-tip`).
pub fn judge_heartbeat(
    violations: &mut Vec<crate::policy::Violation>,
    chain: &mut ChainTip,
    network: Network,
    headers: &[Vec<u8>],
    claimed_tip: &[u8; 32],
    now: u64,
    max_age_secs: u64,
) {
    use crate::policy::{PolicyTag, Violation};
    if let Err(detail) = chain.extend(network, headers) {
        violations.push(Violation { tag: PolicyTag::ChainHeaders, detail });
    }
    let tip = chain.tip();
    if tip.hash != *claimed_tip {
        violations.push(Violation {
            tag: PolicyTag::HeartbeatTip,
            detail: format!(
                "tip to attest {} is not this cosigner's tip {} (height {})",
                BlockHash::from_byte_array(*claimed_tip),
                chain.tip_hash(),
                tip.height
            ),
        });
    } else if u64::from(tip.time).saturating_add(max_age_secs) < now {
        violations.push(Violation {
            tag: PolicyTag::HeartbeatTipAge,
            detail: format!(
                "tip at height {} is {} s old, at most {max_age_secs}",
                tip.height,
                now - u64::from(tip.time)
            ),
        });
    }
}

/// What the node key signs for a heartbeat (ECDSA): the tip height and hash this quorum
/// attests, and the signing key holder's clock.
pub fn heartbeat_message(height: u32, tip: &[u8; 32], unix_time: u64) -> [u8; 32] {
    crate::tagged::tagged_hash("QLS/heartbeat/v1", &[&height.to_be_bytes(), tip, &unix_time.to_be_bytes()])
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use alloc::vec;
    use bitcoin::block::Version;
    use bitcoin::consensus::encode::serialize;
    use bitcoin::{CompactTarget, TxMerkleNode};

    /// A regtest header on `prev` (mined: regtest's limit takes a few tries).
    pub(crate) fn mine(prev: BlockHash, time: u32, salt: u32) -> Vec<u8> {
        let mut h = Header {
            version: Version::TWO,
            prev_blockhash: prev,
            merkle_root: TxMerkleNode::from_byte_array([salt as u8; 32]),
            time,
            bits: CompactTarget::from_consensus(0x207fffff),
            nonce: 0,
        };
        while h.validate_pow(h.target()).is_err() {
            h.nonce += 1;
        }
        serialize(&h)
    }

    fn hash_of(raw: &[u8]) -> BlockHash {
        deserialize::<Header>(raw).unwrap().block_hash()
    }

    fn chain(from: BlockHash, n: u32, salt: u32) -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = Vec::new();
        for i in 0..n {
            let prev = out.last().map_or(from, |h| hash_of(h));
            out.push(mine(prev, 1_800_000_000 + i * 600, salt));
        }
        out
    }

    #[test]
    fn follows_the_most_work_branch_and_refuses_what_does_not_connect() {
        let mut tip = ChainTip::genesis(Network::Regtest);
        let genesis = tip.tip_hash();
        let main = chain(genesis, 5, 1);
        tip.extend(Network::Regtest, &main).unwrap();
        assert_eq!((tip.tip().height, tip.tip_hash()), (5, hash_of(&main[4])));
        // Retrying the same headers changes nothing.
        let before = tip.clone();
        tip.extend(Network::Regtest, &main).unwrap();
        assert_eq!(tip, before);
        // A shorter fork from height 2 has less work: refused, tip unchanged.
        let short = chain(hash_of(&main[1]), 2, 2);
        assert!(tip.extend(Network::Regtest, &short).is_err());
        assert_eq!(tip, before);
        // A longer one wins (a reorganisation of 3 blocks).
        let long = chain(hash_of(&main[1]), 4, 3);
        tip.extend(Network::Regtest, &long).unwrap();
        assert_eq!((tip.tip().height, tip.tip_hash()), (6, hash_of(&long[3])));
        // A header whose parent is unknown, and one without its proof of work.
        let orphan = chain(BlockHash::from_byte_array([7; 32]), 1, 4);
        assert!(tip.extend(Network::Regtest, &orphan).unwrap_err().contains("does not connect"));
        let mut lazy: Header = deserialize(&mine(tip.tip_hash(), 1_800_010_000, 5)).unwrap();
        while lazy.validate_pow(lazy.target()).is_ok() {
            lazy.nonce += 1;
        }
        assert!(tip.extend(Network::Regtest, &[serialize(&lazy)]).is_err());
        assert_eq!(tip.tip().height, 6);
    }

    #[test]
    fn heartbeat_attests_only_a_fresh_own_tip() {
        let mut tip = ChainTip::genesis(Network::Regtest);
        let headers = chain(tip.tip_hash(), 3, 1);
        let last = hash_of(&headers[2]).to_byte_array();
        let block_time = 1_800_000_000 + 2 * 600;
        let tags = |tip: &mut ChainTip, h: &[Vec<u8>], claimed: [u8; 32], now: u64| {
            let mut v = Vec::new();
            judge_heartbeat(&mut v, tip, Network::Regtest, h, &claimed, now, 3_600);
            v.iter().map(|v| v.tag).collect::<Vec<_>>()
        };
        use crate::policy::PolicyTag::{ChainHeaders, HeartbeatTip, HeartbeatTipAge};
        assert_eq!(tags(&mut tip, &headers, last, block_time + 60), vec![]);
        // Another tip than ours (the node claims a block we never saw).
        assert_eq!(tags(&mut tip, &[], [9; 32], block_time + 60), vec![HeartbeatTip]);
        // Our tip, but older than the limit: the node withholds blocks.
        assert_eq!(tags(&mut tip, &[], last, block_time + 3_601), vec![HeartbeatTipAge]);
        // Headers that do not connect.
        let orphan = chain(BlockHash::from_byte_array([7; 32]), 1, 4);
        assert_eq!(tags(&mut tip, &orphan, last, block_time + 60), vec![ChainHeaders]);
    }

    #[test]
    fn memory_is_bounded() {
        let mut tip = ChainTip::genesis(Network::Regtest);
        let headers = chain(tip.tip_hash(), KEPT_HEADERS as u32 + 10, 1);
        tip.extend(Network::Regtest, &headers).unwrap();
        assert_eq!(tip.recent.len(), KEPT_HEADERS);
        assert_eq!(tip.tip().height, KEPT_HEADERS as u32 + 10);
    }

    #[test]
    fn mainnet_headers_need_real_work() {
        // A regtest-difficulty header on top of mainnet's genesis exceeds the limit.
        let mut tip = ChainTip::genesis(Network::Bitcoin);
        let fake = mine(tip.tip_hash(), 1_231_006_600, 1);
        assert!(tip.extend(Network::Bitcoin, &[fake]).unwrap_err().contains("limit"));
    }
}
