//! Wire facts → LDK's transaction types: parses points and signatures (typed errors, no
//! panics) and rebuilds commitment transactions with `lightning::ln::chan_utils` from the
//! cosigner's own stored channel setup.
//!
//! Must never: take a transaction, key or txid from the request where it can be rebuilt
//! from stored state.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{ecdsa::Signature, All, PublicKey, Secp256k1};
use lightning::chain::transaction::OutPoint;
use lightning::ln::chan_utils::{
    ChannelPublicKeys, ChannelTransactionParameters, CommitmentTransaction, CounterpartyChannelTransactionParameters,
    HTLCOutputInCommitment,
};
use lightning::ln::channel_keys::{DelayedPaymentBasepoint, HtlcBasepoint, RevocationBasepoint};
use lightning::types::features::ChannelTypeFeatures;
use lightning::types::payment::PaymentHash;
use qls_protocol::{ChannelPoints, ChannelSetup, CommitmentInfo, HtlcInfo};

/// A request that cannot be parsed or is inconsistent (not a policy question).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    #[error("{field}: not a valid 33-byte secp256k1 point")]
    BadPoint { field: &'static str },
    #[error("{field}: not a valid 64-byte compact ECDSA signature")]
    BadSignature { field: &'static str },
    #[error("{field}: not a valid transaction: {reason}")]
    BadTransaction { field: &'static str, reason: String },
    #[error("channel {channel} is not set up in this cosigner")]
    UnknownChannel { channel: String },
    #[error("input index {input} out of range for a transaction with {inputs} inputs")]
    InputOutOfRange { input: u32, inputs: usize },
    #[error("commitment number {0} is beyond the first commitment number 2^48 - 1")]
    BadCommitmentNumber(u64),
    #[error("stored channel state is corrupt: {0}")]
    CorruptState(&'static str),
}

pub fn point(bytes: &[u8], field: &'static str) -> Result<PublicKey, ChannelError> {
    if bytes.len() != 33 {
        return Err(ChannelError::BadPoint { field });
    }
    PublicKey::from_slice(bytes).map_err(|_| ChannelError::BadPoint { field })
}

pub fn signature(bytes: &[u8], field: &'static str) -> Result<Signature, ChannelError> {
    if bytes.len() != 64 {
        return Err(ChannelError::BadSignature { field });
    }
    Signature::from_compact(bytes).map_err(|_| ChannelError::BadSignature { field })
}

pub fn transaction(bytes: &[u8], field: &'static str) -> Result<bitcoin::Transaction, ChannelError> {
    bitcoin::consensus::deserialize(bytes).map_err(|e| ChannelError::BadTransaction { field, reason: e.to_string() })
}

/// Parses one side's basepoints into LDK's shape.
pub fn channel_public_keys(p: &ChannelPoints) -> Result<ChannelPublicKeys, ChannelError> {
    Ok(ChannelPublicKeys {
        funding_pubkey: point(&p.funding, "funding pubkey")?,
        revocation_basepoint: RevocationBasepoint(point(&p.revocation, "revocation basepoint")?),
        payment_point: point(&p.payment, "payment point")?,
        delayed_payment_basepoint: DelayedPaymentBasepoint(point(&p.delayed_payment, "delayed payment basepoint")?),
        htlc_basepoint: HtlcBasepoint(point(&p.htlc, "htlc basepoint")?),
    })
}

/// The wire form of LDK's public keys.
pub fn channel_points(k: &ChannelPublicKeys) -> ChannelPoints {
    ChannelPoints {
        funding: k.funding_pubkey.serialize().to_vec(),
        revocation: k.revocation_basepoint.0.serialize().to_vec(),
        payment: k.payment_point.serialize().to_vec(),
        delayed_payment: k.delayed_payment_basepoint.0.serialize().to_vec(),
        htlc: k.htlc_basepoint.0.serialize().to_vec(),
    }
}

pub fn channel_type(setup: &ChannelSetup) -> ChannelTypeFeatures {
    ChannelTypeFeatures::from_le_bytes(setup.channel_type.clone())
}

/// LDK's channel parameters, rebuilt from a stored setup.
pub fn transaction_parameters(setup: &ChannelSetup) -> Result<ChannelTransactionParameters, ChannelError> {
    Ok(ChannelTransactionParameters {
        holder_pubkeys: channel_public_keys(&setup.holder)?,
        holder_selected_contest_delay: setup.holder_selected_contest_delay,
        is_outbound_from_holder: setup.is_outbound,
        counterparty_parameters: Some(CounterpartyChannelTransactionParameters {
            pubkeys: channel_public_keys(&setup.counterparty)?,
            selected_contest_delay: setup.counterparty_selected_contest_delay,
        }),
        funding_outpoint: Some(OutPoint {
            txid: bitcoin::Txid::from_byte_array(setup.funding_txid),
            index: setup.funding_vout,
        }),
        splice_parent_funding_txid: None,
        channel_type_features: channel_type(setup),
        channel_value_satoshis: setup.channel_value_sat,
    })
}

/// The wire setup of LDK's channel parameters (the inverse of [`transaction_parameters`]);
/// `None` until the counterparty's keys and the funding outpoint are known, or for a
/// spliced channel (not supported).
pub fn setup(params: &ChannelTransactionParameters) -> Option<ChannelSetup> {
    let counterparty = params.counterparty_parameters.as_ref()?;
    let funding = params.funding_outpoint?;
    if params.splice_parent_funding_txid.is_some() {
        return None;
    }
    Some(ChannelSetup {
        channel_value_sat: params.channel_value_satoshis,
        funding_txid: funding.txid.to_byte_array(),
        funding_vout: funding.index,
        is_outbound: params.is_outbound_from_holder,
        holder_selected_contest_delay: params.holder_selected_contest_delay,
        counterparty_selected_contest_delay: counterparty.selected_contest_delay,
        holder: channel_points(&params.holder_pubkeys),
        counterparty: channel_points(&counterparty.pubkeys),
        channel_type: params.channel_type_features.le_flags().to_vec(),
    })
}

pub fn htlc(h: &HtlcInfo) -> HTLCOutputInCommitment {
    HTLCOutputInCommitment {
        offered: h.offered,
        amount_msat: h.amount_msat,
        cltv_expiry: h.cltv_expiry,
        payment_hash: PaymentHash(h.payment_hash),
        transaction_output_index: None,
    }
}

/// Which side broadcasts the commitment being rebuilt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broadcaster {
    Holder,
    Counterparty,
}

/// Rebuilds a commitment transaction (with its HTLC outputs sorted and indexed) from the
/// stored channel parameters and the request's facts.
pub fn commitment(
    params: &ChannelTransactionParameters,
    info: &CommitmentInfo,
    broadcaster: Broadcaster,
    secp: &Secp256k1<All>,
) -> Result<CommitmentTransaction, ChannelError> {
    if info.commitment_number > (1 << 48) - 1 {
        return Err(ChannelError::BadCommitmentNumber(info.commitment_number));
    }
    let pcp = point(&info.per_commitment_point, "per-commitment point")?;
    let htlcs: Vec<HTLCOutputInCommitment> = info.htlcs.iter().map(htlc).collect();
    let directed = match broadcaster {
        Broadcaster::Holder => params.as_holder_broadcastable(),
        Broadcaster::Counterparty => params.as_counterparty_broadcastable(),
    };
    Ok(CommitmentTransaction::new(
        info.commitment_number,
        &pcp,
        info.to_broadcaster_sat,
        info.to_countersignatory_sat,
        info.feerate_per_kw,
        htlcs,
        &directed,
        secp,
    ))
}

/// The wire facts of an LDK commitment (the inverse of [`commitment`]).
pub fn commitment_info(tx: &CommitmentTransaction) -> CommitmentInfo {
    CommitmentInfo {
        commitment_number: tx.commitment_number(),
        per_commitment_point: tx.per_commitment_point().serialize().to_vec(),
        to_broadcaster_sat: tx.to_broadcaster_value_sat(),
        to_countersignatory_sat: tx.to_countersignatory_value_sat(),
        feerate_per_kw: tx.negotiated_feerate_per_kw(),
        htlcs: tx
            .nondust_htlcs()
            .iter()
            .map(|h| HtlcInfo {
                offered: h.offered,
                amount_msat: h.amount_msat,
                cltv_expiry: h.cltv_expiry,
                payment_hash: h.payment_hash.0,
            })
            .collect(),
    }
}
