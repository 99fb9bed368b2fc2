//! Whether a channel's funding output exists on chain, as one cosigner can know it: an
//! SPV proof (the funding transaction, the header of a block in this cosigner's own
//! header chain, the merkle branch from the txid to that header's root) at a configured
//! depth. Flavor-neutral: legacy and taproot channels pass their stored funding outpoint,
//! script and value.
//!
//! Until a channel's funding is proven, its incoming HTLCs cover nothing node-wide (a
//! channel the node merely claims to have cannot "explain" a forward). The spend of the
//! funding output is proven the same way (`check_spend`): from then on the channel covers
//! nothing and signs no commitment. (A node can withhold a spend proof; see ARCHITECTURE.)
//!
//! Must never: take the txid, value or script from anywhere but the proof's own
//! transaction and the stored setup, accept a block that is not in this cosigner's chain,
//! or accept a 64-byte transaction (it could be an inner merkle node).

use alloc::format;
use alloc::string::{String, ToString};

use bitcoin::block::Header;
use bitcoin::consensus::encode::{deserialize, serialize};
use bitcoin::hashes::{sha256d, Hash};
use bitcoin::{OutPoint, Script, Transaction, TxMerkleNode};
use qls_protocol::FundingProof;

use crate::chain::ChainTip;

/// Longest merkle branch (a block of 2^24 transactions is far beyond any real one).
pub const MAX_MERKLE_DEPTH: usize = qls_protocol::limits::MAX_MERKLE_BRANCH;

/// The funding output a proof must show, from the stored setup.
pub struct ExpectedFunding<'a> {
    pub outpoint: OutPoint,
    pub script: &'a Script,
    pub value_sat: u64,
}

impl<'a> ExpectedFunding<'a> {
    /// The stored setup's funding output: `txid:vout` paying `value_sat` to `script`.
    pub fn of_setup(txid: [u8; 32], vout: u16, script: &'a Script, value_sat: u64) -> Self {
        use bitcoin::hashes::Hash as _;
        Self {
            outpoint: OutPoint { txid: bitcoin::Txid::from_byte_array(txid), vout: u32::from(vout) },
            script,
            value_sat,
        }
    }
}

/// Sibling hashes from leaf `position` up to the root of a block's `txids` (Bitcoin's
/// tree: an odd level repeats its last node) — what a node puts in a [`FundingProof`].
pub fn merkle_branch(txids: &[[u8; 32]], position: usize) -> alloc::vec::Vec<[u8; 32]> {
    let (mut level, mut i, mut branch) = (txids.to_vec(), position, alloc::vec::Vec::new());
    while level.len() > 1 {
        if level.len() % 2 == 1 {
            level.push(level[level.len() - 1]);
        }
        branch.push(level[i ^ 1]);
        level = level
            .chunks(2)
            .map(|p| sha256d::Hash::hash(&[p[0].as_slice(), p[1].as_slice()].concat()).to_byte_array())
            .collect();
        i /= 2;
    }
    branch
}

/// The merkle root that `txid` at `position` with `branch` (siblings, leaf level first)
/// commits to.
pub fn merkle_root(txid: [u8; 32], branch: &[[u8; 32]], position: u32) -> [u8; 32] {
    let mut node = txid;
    for (level, sibling) in branch.iter().enumerate() {
        let (left, right) = if (position >> level) & 1 == 1 { (sibling, &node) } else { (&node, sibling) };
        node = sha256d::Hash::hash(&[left.as_slice(), right.as_slice()].concat()).to_byte_array();
    }
    node
}

/// Whether `branch` is one a real block gives `position`: Bitcoin pairs the last node of
/// an odd level with itself, so the last transaction's branch also hashes to the root at
/// the position one past it (a transaction index that does not exist). A node on the right
/// whose sibling is itself is that duplicate.
pub fn merkle_position_is_real(txid: [u8; 32], branch: &[[u8; 32]], position: u32) -> bool {
    let mut node = txid;
    for (level, sibling) in branch.iter().enumerate() {
        let right = (position >> level) & 1 == 1;
        if right && *sibling == node {
            return false;
        }
        let (left, right) = if right { (sibling, &node) } else { (&node, sibling) };
        node = sha256d::Hash::hash(&[left.as_slice(), right.as_slice()].concat()).to_byte_array();
    }
    true
}

/// Why a funding proof does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProofRefusal {
    /// It proves nothing: another transaction or output, a block outside this cosigner's
    /// chain, a branch that does not reach the root (`policy-funding-proof`).
    Invalid(String),
    /// It holds, but the block is not yet `min_depth` deep (`policy-funding-proof-depth`).
    Shallow { height: u32, depth: u32, min_depth: u32 },
}

impl core::fmt::Display for ProofRefusal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ProofRefusal::Invalid(why) => f.write_str(why),
            ProofRefusal::Shallow { height, depth, min_depth } => {
                write!(f, "block at height {height} is {depth} deep, at least {min_depth} needed")
            }
        }
    }
}

/// Checks `proof` against this cosigner's `chain` (already extended with the proof's
/// headers); returns the height of the block holding the funding transaction, or why the
/// proof fails.
pub fn check(
    chain: &ChainTip,
    proof: &FundingProof,
    expected: &ExpectedFunding<'_>,
    min_depth: u32,
) -> Result<u32, ProofRefusal> {
    let height = prove(chain, proof, expected)?;
    let depth = chain.tip().height.saturating_sub(height).saturating_add(1);
    if depth < min_depth {
        return Err(ProofRefusal::Shallow { height, depth, min_depth });
    }
    Ok(height)
}

fn prove(chain: &ChainTip, proof: &FundingProof, expected: &ExpectedFunding<'_>) -> Result<u32, ProofRefusal> {
    let tx = decode_tx(proof).map_err(ProofRefusal::Invalid)?;
    pays_the_funding_output(&tx, expected).map_err(ProofRefusal::Invalid)?;
    included(chain, proof, &tx).map_err(ProofRefusal::Invalid)
}

fn decode_tx(proof: &FundingProof) -> Result<Transaction, String> {
    let tx: Transaction = deserialize(&proof.tx).map_err(|e| format!("the proven transaction does not decode: {e}"))?;
    let mut stripped = tx.clone();
    for i in &mut stripped.input {
        i.witness.clear();
    }
    if serialize(&stripped).len() == 64 {
        return Err("a 64-byte transaction cannot be told from an inner merkle node".into());
    }
    Ok(tx)
}

fn pays_the_funding_output(tx: &Transaction, expected: &ExpectedFunding<'_>) -> Result<(), String> {
    let txid = tx.compute_txid();
    if txid != expected.outpoint.txid {
        return Err(format!("transaction {txid} is not the funding transaction {}", expected.outpoint.txid));
    }
    let out = tx
        .output
        .get(expected.outpoint.vout as usize)
        .ok_or_else(|| format!("the funding transaction has no output {}", expected.outpoint.vout))?;
    if out.script_pubkey.as_script() != expected.script || out.value.to_sat() != expected.value_sat {
        return Err(format!(
            "output {} pays {} sat to another script than the channel's funding output ({} sat)",
            expected.outpoint,
            out.value.to_sat(),
            expected.value_sat
        ));
    }
    Ok(())
}

/// `tx` sits, by the proof's merkle branch, in a block of `chain`: that block's height.
fn included(chain: &ChainTip, proof: &FundingProof, tx: &Transaction) -> Result<u32, String> {
    let txid = tx.compute_txid();
    let header: Header =
        deserialize(&proof.block_header).map_err(|e| format!("the block header does not decode: {e}"))?;
    let hash = header.block_hash().to_byte_array();
    let known = chain
        .recent
        .iter()
        .find(|k| k.hash == hash)
        .ok_or_else(|| format!("block {} is not in this cosigner's chain", header.block_hash()))?;
    if proof.merkle_branch.len() > MAX_MERKLE_DEPTH || u64::from(proof.position) >> proof.merkle_branch.len() != 0 {
        return Err(format!(
            "position {} does not fit a merkle branch of {} levels",
            proof.position,
            proof.merkle_branch.len()
        ));
    }
    let root = merkle_root(txid.to_byte_array(), &proof.merkle_branch, proof.position);
    if TxMerkleNode::from_byte_array(root) != header.merkle_root {
        return Err(format!("the merkle branch does not lead to block {}'s merkle root", header.block_hash()));
    }
    // The position gives the short channel id: it must be the transaction's real index.
    if !merkle_position_is_real(txid.to_byte_array(), &proof.merkle_branch, proof.position) {
        return Err(format!("position {} is past the block's last transaction (a duplicated node)", proof.position));
    }
    Ok(known.height)
}

/// Checks a proof that the funding output `outpoint` was spent: `proof.tx` has an input
/// spending it and sits in a block of `chain`. Any depth counts to stop signing (see
/// [`spend_is_deep`] for the depth a spend needs to be signed on). Returns the block's height.
pub fn check_spend(chain: &ChainTip, proof: &FundingProof, outpoint: &OutPoint) -> Result<u32, ProofRefusal> {
    let tx = decode_tx(proof).map_err(ProofRefusal::Invalid)?;
    if !tx.input.iter().any(|i| i.previous_output == *outpoint) {
        return Err(ProofRefusal::Invalid(format!(
            "transaction {} does not spend the funding output {outpoint}",
            tx.compute_txid()
        )));
    }
    included(chain, proof, &tx).map_err(ProofRefusal::Invalid)
}

/// Whether `proof` of a spend of `outpoint` holds in `chain` at least `min_depth` deep:
/// only then is the spending transaction a fact to sign on (justice, claims, sweeps); a
/// shallower block can still be reorganised away for another spend.
pub fn spend_is_deep(chain: &ChainTip, proof: &FundingProof, outpoint: &OutPoint, min_depth: u32) -> bool {
    check_spend(chain, proof, outpoint)
        .is_ok_and(|height| chain.tip().height.saturating_sub(height).saturating_add(1) >= min_depth)
}

/// The spend rule, for either flavor: a proof sets `spent_at` (a later one changes
/// nothing) or is refused with `policy-funding-proof`. Returns whether it was newly set
/// (the caller then withdraws the channel's incoming HTLCs from the payment index).
pub fn judge_spend(
    violations: &mut alloc::vec::Vec<crate::policy::Violation>,
    spent_at: &mut Option<u32>,
    chain: Option<&ChainTip>,
    proof: &FundingProof,
    outpoint: &OutPoint,
) -> bool {
    use crate::policy::{PolicyTag, Violation};
    let outcome = match chain {
        Some(chain) => check_spend(chain, proof, outpoint),
        None => Err(ProofRefusal::Invalid("this cosigner has no header chain to check the proof against".into())),
    };
    match outcome {
        Ok(height) if spent_at.is_none() => {
            *spent_at = Some(height);
            true
        }
        Ok(_) => false,
        Err(refusal) => {
            violations.push(Violation { tag: PolicyTag::FundingProof, detail: refusal.to_string() });
            false
        }
    }
}

/// The rule, for either flavor: a proof sets `confirmed_at` (the height; a later proof
/// changes nothing) or is refused with `policy-funding-proof` (or, holding but too
/// shallow, `policy-funding-proof-depth`). `chain` is `None` when the
/// shell has no chain to judge by.
pub fn judge(
    violations: &mut alloc::vec::Vec<crate::policy::Violation>,
    confirmed_at: &mut Option<u32>,
    chain: Option<&ChainTip>,
    proof: &FundingProof,
    expected: &ExpectedFunding<'_>,
    min_depth: u32,
) {
    use crate::policy::{PolicyTag, Violation};
    let outcome = match chain {
        Some(chain) => check(chain, proof, expected, min_depth),
        None => Err(ProofRefusal::Invalid("this cosigner has no header chain to check the proof against".into())),
    };
    match outcome {
        Ok(height) => {
            if confirmed_at.is_none() {
                *confirmed_at = Some(height);
            }
        }
        Err(refusal) => {
            let tag = match refusal {
                ProofRefusal::Invalid(_) => PolicyTag::FundingProof,
                ProofRefusal::Shallow { .. } => PolicyTag::FundingProofDepth,
            };
            violations.push(Violation { tag, detail: refusal.to_string() })
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;
    use bitcoin::block::Version;
    use bitcoin::{absolute, transaction, Amount, BlockHash, CompactTarget, ScriptBuf, TxIn, TxOut};

    /// A transaction paying `value` to `script` (its input a placeholder tagged `tag`).
    pub(crate) fn paying(tag: u8, script: &ScriptBuf, value: u64) -> Transaction {
        Transaction {
            version: transaction::Version::TWO,
            lock_time: absolute::LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint { txid: bitcoin::Txid::from_byte_array([tag; 32]), vout: 0 },
                ..Default::default()
            }],
            output: vec![TxOut { value: Amount::from_sat(value), script_pubkey: script.clone() }],
        }
    }

    /// A mined regtest header on `prev` committing to `root`.
    pub(crate) fn mine(prev: BlockHash, root: [u8; 32], time: u32) -> Header {
        let mut h = Header {
            version: Version::TWO,
            prev_blockhash: prev,
            merkle_root: TxMerkleNode::from_byte_array(root),
            time,
            bits: CompactTarget::from_consensus(0x207f_ffff),
            nonce: 0,
        };
        while h.validate_pow(h.target()).is_err() {
            h.nonce += 1;
        }
        h
    }

    /// The last of 5 transactions also hashes to the root at position 5 (Bitcoin
    /// duplicates an odd level's last node): only its real position holds.
    #[test]
    fn the_last_transaction_proves_only_at_its_real_position() {
        let txids: Vec<[u8; 32]> = (0..5u8).map(|i| [i; 32]).collect();
        let root = bitcoin::merkle_tree::calculate_root(txids.iter().map(|t| bitcoin::Txid::from_byte_array(*t)))
            .unwrap()
            .to_byte_array();
        let branch = merkle_branch(&txids, 4);
        assert_eq!(merkle_root(txids[4], &branch, 4), root);
        assert_eq!(merkle_root(txids[4], &branch, 5), root, "the duplicate reaches the root too");
        assert!(merkle_position_is_real(txids[4], &branch, 4));
        assert!(!merkle_position_is_real(txids[4], &branch, 5));
        for pos in 0..txids.len() {
            assert!(merkle_position_is_real(txids[pos], &merkle_branch(&txids, pos), pos as u32), "position {pos}");
        }
    }

    #[test]
    fn merkle_root_matches_rust_bitcoins_for_every_position() {
        let txids: Vec<[u8; 32]> = (0..5u8).map(|i| [i; 32]).collect();
        let root = bitcoin::merkle_tree::calculate_root(txids.iter().map(|t| bitcoin::Txid::from_byte_array(*t)))
            .unwrap()
            .to_byte_array();
        // Branches as Bitcoin Core builds them (odd levels duplicate their last node).
        for pos in 0..txids.len() {
            let branch = merkle_branch(&txids, pos);
            assert_eq!(merkle_root(txids[pos], &branch, pos as u32), root, "position {pos}");
        }
    }

    #[test]
    fn a_proof_holds_only_for_the_stored_output_in_our_chain_at_depth() {
        let script = ScriptBuf::new_p2wsh(&bitcoin::WScriptHash::from_byte_array([3; 32]));
        let funding = paying(1, &script, 50_000);
        let other = paying(2, &script, 7);
        let txids = [funding.compute_txid(), other.compute_txid()];
        let root = bitcoin::merkle_tree::calculate_root(txids.iter().copied()).unwrap().to_byte_array();
        let mut chain = ChainTip::genesis(bitcoin::Network::Regtest);
        let block = mine(chain.tip_hash(), root, 1_700_000_000);
        let next = mine(block.block_hash(), [0; 32], 1_700_000_600);
        chain.extend(bitcoin::Network::Regtest, &[serialize(&block), serialize(&next)]).unwrap();
        let proof = FundingProof {
            headers: vec![],
            tx: serialize(&funding),
            block_header: serialize(&block),
            merkle_branch: vec![txids[1].to_byte_array()],
            position: 0,
        };
        let outpoint = OutPoint { txid: txids[0], vout: 0 };
        let expected = ExpectedFunding { outpoint, script: &script, value_sat: 50_000 };
        assert_eq!(check(&chain, &proof, &expected, 2), Ok(1));
        assert_eq!(
            check(&chain, &proof, &expected, 3),
            Err(ProofRefusal::Shallow { height: 1, depth: 2, min_depth: 3 })
        );
        let mut violations = vec![];
        let mut confirmed_at = None;
        judge(&mut violations, &mut confirmed_at, Some(&chain), &proof, &expected, 3);
        let tags: Vec<_> = violations.iter().map(|v| v.tag).collect();
        assert_eq!((tags, confirmed_at), (vec![crate::policy::PolicyTag::FundingProofDepth], None));
        judge(&mut violations, &mut confirmed_at, Some(&chain), &proof, &expected, 2);
        assert_eq!((violations.len(), confirmed_at), (1, Some(1)));
        let wrong_value = ExpectedFunding { value_sat: 50_001, ..expected };
        assert!(check(&chain, &proof, &wrong_value, 1).is_err());
        let wrong_branch = FundingProof { merkle_branch: vec![[9; 32]], ..proof.clone() };
        assert!(check(&chain, &wrong_branch, &expected, 1).unwrap_err().to_string().contains("merkle"));
        let wrong_position = FundingProof { position: 1, ..proof.clone() };
        assert!(check(&chain, &wrong_position, &expected, 1).is_err());
        let other_tx = FundingProof { tx: serialize(&other), ..proof.clone() };
        assert!(check(&chain, &other_tx, &expected, 1)
            .unwrap_err()
            .to_string()
            .contains("not the funding transaction"));
        // A block the cosigner's chain does not hold (never relayed, or without the work).
        let stranger = mine(BlockHash::from_byte_array([5; 32]), root, 1_700_000_000);
        let unknown = FundingProof { block_header: serialize(&stranger), ..proof };
        assert!(check(&chain, &unknown, &expected, 1)
            .unwrap_err()
            .to_string()
            .contains("not in this cosigner's chain"));
    }
}
