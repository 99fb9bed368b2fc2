//! Funding a channel from the QLS wallet, through the real quorum over QUIC (3 cosigners,
//! t = 2): the channel is set up first (its funding outpoint is the unsigned
//! transaction's txid, as with LDK's `unsafe_manual_funding_transaction_generated`), then
//! the funding PSBT is signed, and the signed transaction passes Bitcoin Core's script
//! interpreter. A funding output that differs from the setup, one for a channel the
//! counterparty funds, one the node does not name, or one whose first commitment the
//! counterparty has not signed yet is refused by every cosigner asked.

use bitcoin::hashes::Hash;
use bitcoin::psbt::Psbt;
use bitcoin::{Amount, ScriptBuf, TxOut};
use qls_protocol::*;
use qls_signer_core::wallet::wallet_script;
use qls_simnet::counterparty::Counterparty;
use qls_simnet::harness::{Harness, QuorumSpec};
use qls_simnet::legacy_driver::LegacyChannelDriver;
use qls_simnet::workload::psbt;

const VALUE: u64 = 500_000;
const IN_SAT: u64 = 800_000;
const FEE: u64 = 1_000;

/// A PSBT spending a wallet UTXO into `funding` (value `value`) plus change.
fn funding_psbt(key: &[u8; 32], funding: &ScriptBuf, value: u64) -> Psbt {
    let wallet = wallet_script(key).unwrap();
    psbt(
        key,
        [3; 32],
        IN_SAT,
        vec![
            TxOut { value: Amount::from_sat(value), script_pubkey: funding.clone() },
            TxOut { value: Amount::from_sat(IN_SAT - value - FEE), script_pubkey: wallet },
        ],
    )
}

async fn refused_with(client: &qls_node::client::NodeClient, psbt: &Psbt, channels: Vec<ChannelKeysId>, tag: &str) {
    match client.call(&NodeRequest::SignPsbt { psbt: psbt.serialize(), funding_channels: channels }).await.unwrap() {
        NodeResponse::Refused { refusals, .. } => {
            // FROST asks t = 2 at a time: once two refused, too few are left to ask.
            assert!(refusals.len() >= 2, "{refusals:?}");
            assert!(refusals.iter().all(|r| r.violations.iter().any(|v| v.tag == tag)), "{refusals:?}");
        }
        other => panic!("expected a refusal with {tag}, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wallet_funds_a_channel_exactly_as_set_up() {
    let h = Harness::start(QuorumSpec::new(3, 2)).await.unwrap();
    let key = h.key_id();
    let client = h.client().await.unwrap();
    let cp = Counterparty::new();

    // Our channel: the funding script from both funding keys, then the transaction, then
    // the setup naming that transaction's output.
    let ours: ChannelKeysId = [0x51; 32];
    let (keys, _) = client.channel_keys(ours).await.unwrap();
    let script = Counterparty::funding_script(&cp.setup(keys.points.clone(), VALUE, true, [0; 32])).unwrap().to_p2wsh();
    let unsigned = funding_psbt(&key, &script, VALUE);
    let txid = unsigned.unsigned_tx.compute_txid().to_byte_array();
    let setup = cp.setup(keys.points, VALUE, true, txid);
    client.channel(ours, ChannelRequest::Setup(setup.clone())).await.unwrap();

    // Not named, or named with another value (hence another txid): refused.
    refused_with(&client, &unsigned, vec![], "policy-onchain-no-unknown-outputs").await;
    let short = funding_psbt(&key, &script, VALUE - 1);
    refused_with(&client, &short, vec![ours], "policy-funding-output").await;

    // A channel the counterparty funds: we never pay its funding output.
    let theirs: ChannelKeysId = [0x52; 32];
    let (keys2, _) = client.channel_keys(theirs).await.unwrap();
    let script2 =
        Counterparty::funding_script(&cp.setup(keys2.points.clone(), VALUE, false, [0; 32])).unwrap().to_p2wsh();
    let inbound = funding_psbt(&key, &script2, VALUE);
    let txid2 = inbound.unsigned_tx.compute_txid().to_byte_array();
    client.channel(theirs, ChannelRequest::Setup(cp.setup(keys2.points, VALUE, false, txid2))).await.unwrap();
    refused_with(&client, &inbound, vec![theirs], "policy-funding-output").await;

    // As set up, but before the counterparty signed our first commitment: refused (the
    // funds would sit in a 2-of-2 we could not close on our own).
    refused_with(&client, &unsigned, vec![ours], "policy-funding-initial-commitment-countersigned").await;
    LegacyChannelDriver::after_setup(&client, ours, Counterparty::new(), setup).await.unwrap();

    // As set up, with our first commitment countersigned: signed, and Bitcoin Core's
    // interpreter accepts the spend.
    let (signed, _) = client.sign_funding_psbt(unsigned.serialize(), vec![ours]).await.unwrap();
    let signed = Psbt::deserialize(&signed).unwrap();
    let spent = signed.inputs[0].witness_utxo.clone().unwrap();
    let tx = signed.extract_tx().unwrap();
    assert_eq!(tx.compute_txid().to_byte_array(), txid, "the txid the channel was set up with");
    let utxo = [bitcoinconsensus::Utxo {
        script_pubkey: spent.script_pubkey.as_bytes().as_ptr(),
        script_pubkey_len: spent.script_pubkey.len() as u32,
        value: spent.value.to_sat() as i64,
    }];
    let bytes = bitcoin::consensus::serialize(&tx);
    bitcoinconsensus::verify(spent.script_pubkey.as_bytes(), spent.value.to_sat(), &bytes, Some(&utxo), 0)
        .expect("the funding transaction's input passes the script interpreter");
    h.shutdown().await;
}
