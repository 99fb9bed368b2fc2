//! The LDK adapter while the quorum is unreachable: `derive_channel_signer` (which LDK
//! gives no way to fail) never panics. A channel the quorum stores gets its signer from
//! the node's keys file, as a restarted node loads it; a new channel gets a placeholder
//! signer that signs nothing and no destination script, so LDK drops it before any key
//! reaches the peer; a placeholder takes the quorum's keys once it answers (a channel LDK
//! loaded from disk resumes). A keys file that disagrees with the quorum stops the channel.

use std::sync::Arc;
use std::time::Duration;

use bitcoin::secp256k1::{Secp256k1, SecretKey};
use lightning::ln::chan_utils::ChannelPublicKeys;
use lightning::sign::{ChannelSigner, SignerProvider};
use lightning::util::ser::Writeable;
use qls_node::ldk::{ChannelKeysCache, QuorumBridge, QuorumChannelSigner, QuorumKeysManager};
use qls_protocol::ChannelRequest;
use qls_simnet::counterparty::Counterparty;
use qls_simnet::harness::{Harness, QuorumSpec};

#[test]
fn channel_signers_never_panic_when_the_quorum_is_unreachable() {
    let secp = Secp256k1::new();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let harness = rt.block_on(Harness::start(QuorumSpec::new(3, 2))).unwrap();
    let (known, tampered, new, fresh) = ([0x11; 32], [0x33; 32], [0x22; 32], [0x44; 32]);
    // `known` is a channel the quorum stores (its setup sent, as LDK's signer sends it).
    let client = rt.block_on(harness.client()).unwrap();
    rt.block_on(async {
        let (keys, _) = client.channel_keys(known).await.unwrap();
        let setup = Counterparty::new().setup(keys.points, 1_000_000, true, [0x77; 32]);
        client.channel(known, ChannelRequest::Setup(setup)).await.unwrap();
    });
    let bridge = QuorumBridge::connect(
        &harness.client_identity,
        harness.api_addr,
        harness.coordinator_fingerprint,
        Duration::from_secs(2),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("channel-keys");
    let node = || QuorumKeysManager::new(bridge.clone(), &[0xb1; 32]).unwrap().with_channel_keys_file(&file).unwrap();
    let first = node();
    let keys: ChannelPublicKeys = first.derive_channel_signer(known).pubkeys(&secp);
    let other_keys = first.derive_channel_signer(fresh).pubkeys(&secp);
    assert_ne!(keys, other_keys, "each channel has its own keys");
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text.lines().count(), 1, "only the channel the quorum stores is remembered: {text}");
    // A line naming another channel's keys for `tampered` (the file is the node's, not trusted).
    std::fs::write(&file, format!("{text}{} {}\n", hex::encode(tampered), hex::encode(other_keys.encode()))).unwrap();

    // The node restarts: its keys file is loaded. A cached signer serves once the quorum
    // confirmed its keys (any request confirms them first); wrong keys stop the channel.
    let restarted = node();
    let from_file = restarted.derive_channel_signer(known);
    assert_eq!(from_file.pubkeys(&secp), keys, "the file gives the keys the quorum gave");
    let secret = SecretKey::from_slice(&[5; 32]).unwrap();
    let _ = from_file.validate_counterparty_revocation(1, &secret); // refused by policy: no such commitment
    assert!(from_file.get_per_commitment_point(1 << 47, &secp).is_ok(), "confirmed keys: the channel serves");
    let wrong = restarted.derive_channel_signer(tampered);
    assert_eq!(wrong.pubkeys(&secp), other_keys);
    assert!(wrong.validate_counterparty_revocation(1, &secret).is_err());
    assert!(wrong.get_per_commitment_point(1 << 47, &secp).is_err(), "keys the quorum does not give stop the channel");

    // A placeholder signer (as made while the quorum was unreachable) takes the quorum's
    // keys at its first request once the quorum answers.
    let cache = Arc::new(ChannelKeysCache::default());
    cache.mark_unavailable(known);
    let healed = QuorumChannelSigner::unavailable(bridge.clone(), known, cache.clone());
    assert_ne!(healed.pubkeys(&secp), keys);
    let _ = healed.validate_counterparty_revocation(1, &secret);
    assert_eq!(healed.pubkeys(&secp), keys, "the quorum's keys replace the placeholder");
    assert!(!cache.is_unavailable(&known) && cache.get(&known) == Some(keys.clone()));

    // The quorum goes away.
    rt.block_on(harness.shutdown());
    let from_file = restarted.derive_channel_signer(known);
    assert_eq!(from_file.pubkeys(&secp), keys, "a known channel's signer needs no quorum");
    assert!(restarted.get_destination_script(known).is_ok());
    assert!(from_file.get_per_commitment_point(1 << 46, &secp).is_err(), "nothing is signed without the quorum");
    let unavailable = restarted.derive_channel_signer(new);
    assert!(
        ![keys.funding_pubkey, other_keys.funding_pubkey].contains(&unavailable.pubkeys(&secp).funding_pubkey),
        "a placeholder, never a key of ours"
    );
    assert!(restarted.get_destination_script(new).is_err(), "LDK drops the new channel before sending keys");
    assert!(unavailable.release_commitment_secret(1 << 47).is_err());
    assert!(unavailable.validate_counterparty_revocation(1, &secret).is_err());
}
