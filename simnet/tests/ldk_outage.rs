//! The LDK adapter while the quorum is unreachable: `derive_channel_signer` (which LDK
//! gives no way to fail) never panics. A channel whose keys the quorum gave before gets
//! its signer from the node's keys file, as a restarted node loads it; a new channel gets
//! a signer that refuses everything and no destination script, so LDK drops it before any
//! key reaches the peer. A keys file that disagrees with the quorum stops the channel.

use std::time::Duration;

use bitcoin::secp256k1::{Secp256k1, SecretKey};
use lightning::ln::chan_utils::ChannelPublicKeys;
use lightning::sign::{ChannelSigner, SignerProvider};
use lightning::util::ser::Writeable;
use qls_node::ldk::{QuorumBridge, QuorumKeysManager};
use qls_simnet::harness::{Harness, QuorumSpec};

#[test]
fn channel_signers_never_panic_when_the_quorum_is_unreachable() {
    let secp = Secp256k1::new();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let harness = rt.block_on(Harness::start(QuorumSpec::new(3, 2))).unwrap();
    let bridge = QuorumBridge::connect(
        &harness.client_identity,
        harness.api_addr,
        harness.coordinator_fingerprint,
        Duration::from_secs(2),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("channel-keys");
    let node =
        |seed: u8| QuorumKeysManager::new(bridge.clone(), &[seed; 32]).unwrap().with_channel_keys_file(&file).unwrap();
    let (known, tampered, new) = ([0x11; 32], [0x33; 32], [0x22; 32]);
    let first = node(0xb1);
    let keys: ChannelPublicKeys = first.derive_channel_signer(known).pubkeys(&secp);
    let other_keys = first.derive_channel_signer([0x44; 32]).pubkeys(&secp);
    assert_ne!(keys, other_keys, "each channel has its own keys");
    // A line naming another channel's keys for `tampered` (the file is the node's, not trusted).
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str(&format!("{} {}\n", hex::encode(tampered), hex::encode(other_keys.encode())));
    std::fs::write(&file, text).unwrap();

    // The node restarts: its keys file is loaded.
    let restarted = node(0xb1);
    let from_file = restarted.derive_channel_signer(known);
    assert_eq!(from_file.pubkeys(&secp), keys, "the file gives the keys the quorum gave");
    let secret = SecretKey::from_slice(&[5; 32]).unwrap();
    // The channel is not set up yet: the quorum confirms the keys, and the validation
    // waits for the setup (LDK's order), as for a signer fetched from the quorum.
    assert!(from_file.validate_counterparty_revocation(1, &secret).is_ok());
    let wrong = restarted.derive_channel_signer(tampered);
    assert_eq!(wrong.pubkeys(&secp), other_keys);
    assert!(
        wrong.validate_counterparty_revocation(1, &secret).is_err(),
        "keys the quorum does not give stop the channel"
    );
    assert!(wrong.get_per_commitment_point(1 << 47, &secp).is_err(), "and it stays stopped");

    // The quorum goes away.
    rt.block_on(harness.shutdown());
    let from_file = restarted.derive_channel_signer(known);
    assert_eq!(from_file.pubkeys(&secp), keys, "a known channel's signer needs no quorum");
    assert!(restarted.get_destination_script(known).is_ok());
    assert!(from_file.get_per_commitment_point(1 << 47, &secp).is_err(), "nothing is signed without the quorum");
    let unavailable = restarted.derive_channel_signer(new);
    assert!(
        ![keys.funding_pubkey, other_keys.funding_pubkey].contains(&unavailable.pubkeys(&secp).funding_pubkey),
        "a placeholder, never a key of ours"
    );
    assert!(restarted.get_destination_script(new).is_err(), "LDK drops the new channel before sending keys");
    assert!(unavailable.get_per_commitment_point(1 << 47, &secp).is_err());
    assert!(unavailable.release_commitment_secret(1 << 47).is_err());
    assert!(unavailable.validate_counterparty_revocation(1, &secret).is_err());
}
