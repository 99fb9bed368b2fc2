//! Heartbeats through the real quorum over QUIC (3 cosigners, t = 2): each cosigner
//! follows the chain from headers the node relays, and the key holder signs, with the
//! node key, only a tip every approving cosigner holds itself and that is fresh by its
//! own clock. An attacker holding the node cannot get a stale tip, a tip the cosigners
//! never saw, or headers without proof of work attested.

use std::time::{SystemTime, UNIX_EPOCH};

use bitcoin::block::{Header, Version};
use bitcoin::consensus::encode::serialize;
use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{ecdsa::Signature, Message, PublicKey, Secp256k1};
use bitcoin::{BlockHash, CompactTarget, Network, TxMerkleNode};
use qls_protocol::*;
use qls_simnet::harness::{Harness, QuorumSpec};

fn now() -> u32 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as u32
}

/// `n` regtest headers on `prev`, the last one `age` seconds old.
fn mine(prev: BlockHash, n: u32, age: u32, salt: u8) -> Vec<Header> {
    let mut out: Vec<Header> = Vec::new();
    for i in 0..n {
        let mut h = Header {
            version: Version::TWO,
            prev_blockhash: out.last().map_or(prev, |h| h.block_hash()),
            merkle_root: TxMerkleNode::from_byte_array([salt; 32]),
            time: now() - age - (n - 1 - i) * 600,
            bits: CompactTarget::from_consensus(0x207fffff),
            nonce: 0,
        };
        while h.validate_pow(h.target()).is_err() {
            h.nonce += 1;
        }
        out.push(h);
    }
    out
}

fn heartbeat(headers: &[Header], tip: BlockHash) -> NodeRequest {
    NodeRequest::NodeKey(NodeKeyRequest::Heartbeat {
        headers: headers.iter().map(serialize).collect(),
        tip: tip.to_byte_array(),
    })
}

async fn refused(h: &Harness, req: &NodeRequest, tag: &str) {
    let client = h.client().await.unwrap();
    match client.call(req).await.unwrap() {
        NodeResponse::Refused { refusals, .. } => {
            for name in ["c1", "c2", "c3"] {
                let r = refusals.iter().find(|r| r.cosigner == name).unwrap_or_else(|| panic!("{name}: {refusals:?}"));
                assert!(r.violations.iter().any(|v| v.tag == tag), "{name}: {:?}", r.violations);
            }
        }
        other => panic!("expected a refusal with {tag}, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_attests_the_cosigners_own_fresh_tip() {
    let h = Harness::start(QuorumSpec::new(3, 2)).await.unwrap();
    let client = h.client().await.unwrap();
    let (_, node_id) = client.channel_keys([1; 32]).await.unwrap();
    let node_id = PublicKey::from_slice(&node_id).unwrap();
    let genesis = bitcoin::blockdata::constants::genesis_block(Network::Regtest).block_hash();

    // Headers whose tip is four hours old: the node withholds newer blocks.
    let stale = mine(genesis, 3, 4 * 3_600, 1);
    refused(&h, &heartbeat(&stale, stale[2].block_hash()), "policy-heartbeat-tip-age").await;
    // Its headers were kept all the same (they carry their proof of work): the stale tip is
    // now each cosigner's own tip, refused for its age alone, not as unseen.
    refused(&h, &heartbeat(&[], stale[2].block_hash()), "policy-heartbeat-tip-age").await;
    // A header without its proof of work.
    let mut lazy = mine(genesis, 1, 0, 2);
    while lazy[0].validate_pow(lazy[0].target()).is_ok() {
        lazy[0].nonce += 1;
    }
    refused(&h, &heartbeat(&lazy, lazy[0].block_hash()), "policy-chain-headers").await;

    // Fresh headers: signed by the node key over (height, tip, time).
    let fresh = mine(genesis, 5, 60, 3);
    let tip = fresh[4].block_hash();
    let (out, _) = client
        .node_key(NodeKeyRequest::Heartbeat {
            headers: fresh.iter().map(serialize).collect(),
            tip: tip.to_byte_array(),
        })
        .await
        .unwrap();
    let KeyHolderOutput::Heartbeat { height, tip: signed_tip, unix_time, sig } = out else { panic!("{out:?}") };
    assert_eq!((height, signed_tip), (5, tip.to_byte_array()));
    assert!(unix_time.abs_diff(u64::from(now())) < 60);
    let msg = Message::from_digest(qls_signer_core::chain::heartbeat_message(height, &signed_tip, unix_time));
    let sig = Signature::from_compact(&sig).unwrap();
    Secp256k1::verification_only().verify_ecdsa(&msg, &sig, &node_id).expect("node key signed the heartbeat");

    // A tip the cosigners never saw (the node claims a block without relaying it).
    let unseen = mine(tip, 1, 0, 4);
    refused(&h, &heartbeat(&[], unseen[0].block_hash()), "policy-heartbeat-tip").await;
    // Relayed, it is attested; the earlier tip no longer is.
    let (out, _) = client
        .node_key(NodeKeyRequest::Heartbeat {
            headers: vec![serialize(&unseen[0])],
            tip: unseen[0].block_hash().to_byte_array(),
        })
        .await
        .unwrap();
    assert!(matches!(out, KeyHolderOutput::Heartbeat { height: 6, .. }), "{out:?}");
    refused(&h, &heartbeat(&[], tip), "policy-heartbeat-tip").await;
    h.shutdown().await;
}
