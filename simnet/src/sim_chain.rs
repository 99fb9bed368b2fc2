//! The simulated chain a simnet run's channels are funded on: regtest blocks mined in
//! process (real proof of work at regtest's limit, real merkle roots) holding the funding
//! transactions, and the SPV proofs (`FundingProof`) the node hands the cosigners once a
//! funding transaction is deep enough.
//!
//! Must never: hand out a proof the cosigners could not check from the headers it carries
//! (every proof carries the chain's last headers, up to what a cosigner keeps).

use std::sync::{Arc, Mutex};

use bitcoin::block::{Header, Version};
use bitcoin::consensus::encode::serialize;
use bitcoin::hashes::Hash;
use bitcoin::{absolute, transaction, Amount, BlockHash, CompactTarget, OutPoint, ScriptBuf, Transaction, TxIn, TxOut};
use qls_protocol::FundingProof;
use qls_signer_core::chain::KEPT_HEADERS;
use qls_signer_core::funding_proof::merkle_branch;

/// A chain shared by every driver of one run.
pub type SharedChain = Arc<Mutex<SimChain>>;

/// The chain, even if a panicking driver poisoned its lock (mining keeps it consistent).
pub fn lock_chain(chain: &SharedChain) -> std::sync::MutexGuard<'_, SimChain> {
    chain.lock().unwrap_or_else(|e| e.into_inner())
}

pub struct SimChain {
    /// Every header after regtest's genesis, in order.
    headers: Vec<Header>,
    tip: BlockHash,
    /// Blocks a funding transaction gets (its own included) before its proof is made.
    depth: u32,
}

/// A transaction paying `value_sat` to `script` at output `vout` (the outputs before it
/// pay a placeholder), spending a placeholder input named by `tag`: a funding transaction
/// whose txid a channel setup can name before anything is signed.
pub fn funding_tx(tag: [u8; 32], script: &ScriptBuf, value_sat: u64, vout: u16) -> Transaction {
    let mut output: Vec<TxOut> = (0..vout)
        .map(|_| TxOut { value: Amount::from_sat(1_000), script_pubkey: ScriptBuf::new_op_return([0u8; 4]) })
        .collect();
    output.push(TxOut { value: Amount::from_sat(value_sat), script_pubkey: script.clone() });
    Transaction {
        version: transaction::Version::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint { txid: bitcoin::Txid::from_byte_array(tag), vout: 0 },
            ..Default::default()
        }],
        output,
    }
}

impl SimChain {
    pub fn new(depth: u32) -> Self {
        let genesis = bitcoin::blockdata::constants::genesis_block(bitcoin::Network::Regtest);
        Self { headers: Vec::new(), tip: genesis.block_hash(), depth: depth.max(1) }
    }

    pub fn shared(depth: u32) -> SharedChain {
        Arc::new(Mutex::new(Self::new(depth)))
    }

    pub fn height(&self) -> u32 {
        self.headers.len() as u32
    }

    fn mine(&mut self, merkle_root: [u8; 32]) -> Header {
        let height = self.height() + 1;
        let mut header = Header {
            version: Version::TWO,
            prev_blockhash: self.tip,
            merkle_root: bitcoin::TxMerkleNode::from_byte_array(merkle_root),
            time: 1_700_000_000 + height * 600,
            bits: CompactTarget::from_consensus(0x207f_ffff),
            nonce: 0,
        };
        while header.validate_pow(header.target()).is_err() {
            header.nonce += 1;
        }
        self.tip = header.block_hash();
        self.headers.push(header);
        header
    }

    /// The last headers a cosigner can connect (serialized).
    fn recent_headers(&self) -> Vec<Vec<u8>> {
        let from = self.headers.len().saturating_sub(KEPT_HEADERS - 1);
        self.headers[from..].iter().map(serialize).collect()
    }

    /// Mines one block holding `txs` (after a placeholder coinbase) and enough blocks on
    /// it for the chain's depth; returns one proof per transaction, in order.
    pub fn confirm(&mut self, txs: &[Transaction]) -> Vec<FundingProof> {
        let coinbase = funding_tx([0xcb; 32], &ScriptBuf::new_op_return([1u8; 4]), 0, 0);
        let txids: Vec<[u8; 32]> =
            std::iter::once(&coinbase).chain(txs).map(|t| t.compute_txid().to_byte_array()).collect();
        let root = bitcoin::merkle_tree::calculate_root(txids.iter().map(|t| bitcoin::Txid::from_byte_array(*t)))
            .map(|r| r.to_byte_array())
            .unwrap_or_default();
        let block = self.mine(root);
        for _ in 1..self.depth {
            self.mine([0; 32]);
        }
        let headers = self.recent_headers();
        txs.iter()
            .enumerate()
            .map(|(i, tx)| FundingProof {
                headers: headers.clone(),
                tx: serialize(tx),
                block_header: serialize(&block),
                merkle_branch: merkle_branch(&txids, i + 1),
                position: (i + 1) as u32,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_check_against_a_cosigners_chain() {
        let mut chain = SimChain::new(3);
        let script = ScriptBuf::new_p2wsh(&bitcoin::WScriptHash::from_byte_array([1; 32]));
        let txs: Vec<Transaction> = (0..3u8).map(|i| funding_tx([i; 32], &script, 10_000 + u64::from(i), 0)).collect();
        let proofs = chain.confirm(&txs);
        let mut tip = qls_signer_core::chain::ChainTip::genesis(bitcoin::Network::Regtest);
        tip.extend(bitcoin::Network::Regtest, &proofs[0].headers).unwrap();
        for (tx, proof) in txs.iter().zip(&proofs) {
            let expected = qls_signer_core::funding_proof::ExpectedFunding {
                outpoint: OutPoint { txid: tx.compute_txid(), vout: 0 },
                script: &script,
                value_sat: tx.output[0].value.to_sat(),
            };
            assert_eq!(qls_signer_core::funding_proof::check(&tip, proof, &expected, 3), Ok(1));
        }
    }
}
