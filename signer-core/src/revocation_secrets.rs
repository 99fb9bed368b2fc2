//! The counterparty's revealed per-commitment secrets, as LDK's
//! `CounterpartyCommitmentSecrets` stores them (BOLT 3 compact storage, 49 slots): a lookup
//! that never panics. LDK's `get_secret` asserts when asked for an index at or above the
//! oldest slot that no slot derives; this checks derivability on the stored slot indices
//! first (the encoding: 49 × (secret ‖ index, 8 bytes big-endian), then TLVs).
//!
//! Must never: panic on any stored bytes or index, or answer a secret the store does not
//! derive.

use lightning::ln::chan_utils::CounterpartyCommitmentSecrets;
use lightning::util::ser::Readable;

const SLOTS: usize = 49;
const SLOT_BYTES: usize = 40;

/// The stored bytes are not a secret store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the counterparty secret store does not decode")]
pub struct CorruptSecretStore;

/// The secret of commitment `index` (LDK numbering, counting down from 2^48 − 1) if the
/// store derives it.
pub fn revealed_secret(store: &[u8], index: u64) -> Result<Option<[u8; 32]>, CorruptSecretStore> {
    let secrets: CounterpartyCommitmentSecrets = Readable::read(&mut &store[..]).map_err(|_| CorruptSecretStore)?;
    if index >= 1 << 48 {
        return Ok(None);
    }
    let derivable = (0..SLOTS).any(|i| {
        let at = i * SLOT_BYTES + 32;
        let slot = store.get(at..at + 8).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes);
        slot.is_some_and(|slot| index & !((1u64 << i) - 1) == slot)
    });
    Ok(if derivable { secrets.get_secret(index) } else { None })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use lightning::util::ser::Writeable;

    /// BOLT 3's shachain: the secret of `index` from the seed.
    fn secret(seed: [u8; 32], index: u64) -> [u8; 32] {
        use bitcoin::hashes::{sha256, Hash};
        let mut s = seed;
        for bit in (0..48).rev() {
            if index & (1 << bit) != 0 {
                s[bit / 8] ^= 1 << (bit % 8);
                s = sha256::Hash::hash(&s).to_byte_array();
            }
        }
        s
    }

    #[test]
    fn a_lookup_answers_what_the_store_derives_and_never_panics() {
        let seed = [0x42; 32];
        let top = (1u64 << 48) - 1;
        let mut store = CounterpartyCommitmentSecrets::new();
        for k in 0..5 {
            store.provide_secret(top - k, secret(seed, top - k)).unwrap();
        }
        let mut bytes = Vec::new();
        store.write(&mut bytes).unwrap();
        for k in 0..5 {
            assert_eq!(revealed_secret(&bytes, top - k).unwrap(), Some(secret(seed, top - k)));
        }
        // Not revealed yet, past the numbering, and a store with a gap (LDK's own lookup
        // panics there): none, no panic.
        assert_eq!(revealed_secret(&bytes, top - 5).unwrap(), None);
        assert_eq!(revealed_secret(&bytes, 1 << 48).unwrap(), None);
        let mut gapped = CounterpartyCommitmentSecrets::new();
        gapped.provide_secret(top, secret(seed, top)).unwrap();
        // (LDK may refuse the gap; whatever it stored, the lookup must not panic)
        let _ = gapped.provide_secret(top - 2, secret(seed, top - 2));
        let mut bytes = Vec::new();
        gapped.write(&mut bytes).unwrap();
        for index in [top - 1, top - 3] {
            assert!(revealed_secret(&bytes, index).is_ok());
        }
        assert_eq!(revealed_secret(&bytes[..10], top), Err(CorruptSecretStore));
    }
}
