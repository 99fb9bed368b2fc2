//! Make a QLS quorum the signer of an LDK node: connect to the coordinator with the
//! node's pinned client identity (made by `qls-client init`), build the keys interface
//! and show what LDK will get from it. See README "Use QLS as the signer of an LDK node".
//!
//! ```sh
//! cargo run --release -p qls-node --example ldk_signer -- <client-data-dir>
//! ```
//!
//! Must never: keep a channel secret; everything is signed by the quorum.

use std::sync::Arc;
use std::time::Duration;

use lightning::sign::{ChannelSigner, NodeSigner, Recipient, SignerProvider};
use qls_node::ldk::{QuorumBridge, QuorumKeysManager};
use qls_protocol::quic::Identity;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().unwrap_or_else(|| "node".into()));
    // `qls-client init` stored the identity, the coordinator's address and its pin.
    let identity = Identity::load(&dir)?;
    let config: toml::Table = toml::from_str(&std::fs::read_to_string(dir.join("client.toml"))?)?;
    let field = |k: &str| config.get(k).and_then(|v| v.as_str()).ok_or(format!("client.toml has no {k}"));
    let addr = field("coordinator_addr")?.parse()?;
    let pin = qls_protocol::quic::parse_fingerprint(field("coordinator_fingerprint")?)?;

    // One bridge per node: its own runtime, one pinned QUIC connection to the coordinator.
    let bridge = QuorumBridge::connect(&identity, addr, pin, Duration::from_secs(30))?;
    // The local seed only derives keys that guard no funds (inbound payment secrets,
    // peer storage, blinded-path auth). Keep it like any node secret.
    let local_seed: [u8; 32] = rand::random();
    let keys = Arc::new(QuorumKeysManager::new(bridge.clone(), &local_seed)?);

    // Pass `keys` to ChainMonitor::new (entropy, peer-storage key) and ChannelManager::new
    // as entropy source, node signer and signer provider; use it as OutputSpender.
    println!(
        "node id (held by the quorum's key holder): {}",
        keys.get_node_id(Recipient::Node).map_err(|_| "no node id")?
    );
    println!("shutdown / sweep script (QLS wallet, P2TR): {}", keys.wallet_script());
    let channel = keys.derive_channel_signer([7; 32]);
    let secp = lightning::bitcoin::secp256k1::Secp256k1::new();
    println!("funding key of channel 0707…: {}", channel.pubkeys(&secp).funding_pubkey);

    // In the node's event loop: LDK's async signing returns Err(()) while a quorum round
    // runs; when one finished, tell LDK to ask again.
    //   if bridge.wait_unblocked(Duration::from_millis(100)) {
    //       channel_manager.signer_unblocked(None);
    //       chain_monitor.signer_unblocked(None);
    //   }
    let _ = bridge.wait_unblocked(Duration::ZERO);
    Ok(())
}
