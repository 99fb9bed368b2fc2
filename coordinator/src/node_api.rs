//! The node-facing endpoint: pinned node clients send `NodeRequest`s, the coordinator
//! answers with verified signatures, a signed PSBT, or who refused and why.
//!
//! Must never: admit an unpinned client, or answer a PSBT request with a PSBT other than
//! the one sent plus the group's signatures.

use std::net::SocketAddr;
use std::sync::Arc;

use quinn::Endpoint;

use qls_protocol::quic::{serve_connection, server_endpoint, Identity, TransportError};
use qls_protocol::*;
use qls_signer_core::sighash::parse_psbt;
use qls_signer_core::wallet::wallet_address;

use crate::quorum::Quorum;
use crate::signing::{sign, SignFailure, SignOutcome};

pub struct NodeApi {
    endpoint: Endpoint,
    quorum: Arc<Quorum>,
}

impl NodeApi {
    pub fn bind(quorum: Arc<Quorum>, identity: &Identity) -> Result<Self, TransportError> {
        let listen = quorum.config.listen;
        Self::bind_to(quorum, identity, listen)
    }

    /// As [`Self::bind`], on `listen` instead of the configured address (a restart on
    /// the address a first bind to port 0 got).
    pub fn bind_to(quorum: Arc<Quorum>, identity: &Identity, listen: SocketAddr) -> Result<Self, TransportError> {
        let endpoint = server_endpoint(identity, listen, quorum.config.clients.iter().copied())?;
        Ok(Self { endpoint, quorum })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    pub fn endpoint(&self) -> Endpoint {
        self.endpoint.clone()
    }

    /// Serves until the endpoint is closed.
    pub async fn serve(self) {
        while let Some(incoming) = self.endpoint.accept().await {
            let quorum = self.quorum.clone();
            tokio::spawn(async move {
                let remote = incoming.remote_address();
                match incoming.await {
                    Ok(conn) => {
                        let handler = Arc::new(move |req: NodeRequest| {
                            let quorum = quorum.clone();
                            async move { handle(&quorum, req).await }
                        });
                        serve_connection(conn, handler).await;
                    }
                    Err(e) => tracing::warn!(%remote, error = %e, "refused node client (handshake or pinning failed)"),
                }
            });
        }
    }
}

async fn approved(quorum: &Quorum, subject: ApprovalSubject) -> NodeResponse {
    let _turn = match &subject {
        ApprovalSubject::Channel { channel, .. } => Some(quorum.lock_channel(channel).await),
        ApprovalSubject::TaprootSecret { channel, .. } => Some(quorum.lock_channel(channel).await),
        // A sweep changes no channel state: each cosigner judges it on its state as it is.
        ApprovalSubject::Node(_) | ApprovalSubject::Sweep(_) => None,
    };
    match crate::approval::approve_and_sign(quorum, subject).await {
        Ok((output, report)) => NodeResponse::KeyHolder { output, report },
        Err(crate::approval::ApprovalFailure::Refused { refusals, report }) => {
            NodeResponse::Refused { refusals, report }
        }
        Err(crate::approval::ApprovalFailure::Unavailable { detail, report }) => {
            NodeResponse::Unavailable { detail: truncate(detail), report }
        }
    }
}

fn failure(f: SignFailure) -> NodeResponse {
    match f {
        SignFailure::Refused { refusals, report } => NodeResponse::Refused { refusals, report: *report },
        SignFailure::QuorumUnavailable { threshold, detail, report } => NodeResponse::Unavailable {
            detail: truncate(format!("no quorum of {threshold}: {detail}")),
            report: *report,
        },
        SignFailure::BadRequest(d) => NodeResponse::Error { kind: ErrorKind::InvalidRequest, detail: truncate(d) },
        SignFailure::Internal(d) => NodeResponse::Error { kind: ErrorKind::Internal, detail: truncate(d) },
    }
}

fn taproot_failure(f: crate::taproot::TaprootFailure) -> NodeResponse {
    match f {
        crate::taproot::TaprootFailure::Refused { refusals, report } => NodeResponse::Refused { refusals, report },
        crate::taproot::TaprootFailure::Unavailable { detail, report } => {
            NodeResponse::Unavailable { detail: truncate(detail), report }
        }
    }
}

fn truncate(mut s: String) -> String {
    if s.len() > limits::MAX_DETAIL_BYTES {
        let mut cut = limits::MAX_DETAIL_BYTES;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// Puts the signatures into the PSBT: `tap_key_sig` and the final key-path witness.
pub fn attach_signatures(psbt_bytes: &[u8], outcome: &SignOutcome) -> Result<Vec<u8>, SignFailure> {
    let mut psbt = parse_psbt(psbt_bytes).map_err(|e| SignFailure::BadRequest(e.to_string()))?;
    for (input, sig) in outcome.inputs.iter().zip(&outcome.signatures) {
        let signature = bitcoin::taproot::Signature {
            signature: bitcoin::secp256k1::schnorr::Signature::from_slice(sig)
                .map_err(|e| SignFailure::Internal(e.to_string()))?,
            sighash_type: psbt.inputs[*input]
                .sighash_type
                .and_then(|t| t.taproot_hash_ty().ok())
                .unwrap_or(bitcoin::TapSighashType::Default),
        };
        psbt.inputs[*input].tap_key_sig = Some(signature);
        psbt.inputs[*input].final_script_witness = Some(bitcoin::Witness::p2tr_key_spend(&signature));
    }
    Ok(psbt.serialize())
}

pub async fn handle(quorum: &Quorum, req: NodeRequest) -> NodeResponse {
    match req {
        NodeRequest::GroupInfo => match wallet_address(&quorum.key.key_id, quorum.config.network) {
            Ok(address) => NodeResponse::GroupInfo(GroupInfo {
                key_id: quorum.key.key_id,
                message_key: quorum.key.message_key,
                address,
                threshold: quorum.key.threshold,
                cosigners: quorum.members.iter().map(|m| m.name().to_string()).collect(),
            }),
            Err(e) => NodeResponse::Error { kind: ErrorKind::Internal, detail: e.to_string() },
        },
        NodeRequest::SignMessage { msg } => match sign(quorum, SignPayload::Message(msg)).await {
            Ok(o) => NodeResponse::Signature { sig: o.signatures[0].to_vec(), report: o.report },
            Err(f) => failure(f),
        },
        NodeRequest::Channel { channel, request } => {
            approved(quorum, ApprovalSubject::Channel { channel, request }).await
        }
        NodeRequest::NodeKey(request) => approved(quorum, ApprovalSubject::Node(request)).await,
        NodeRequest::Sweep(sweep) => approved(quorum, ApprovalSubject::Sweep(sweep)).await,
        NodeRequest::ChannelKeys { channel } => {
            match crate::approval::ask_key_holder(quorum, CosignerRequest::ChannelKeys { channel }).await {
                Ok(CosignerResponse::ChannelKeys { info, node_id }) => NodeResponse::ChannelKeys { info, node_id },
                Ok(other) => NodeResponse::Error { kind: ErrorKind::Internal, detail: truncate(format!("{other:?}")) },
                Err(e) => NodeResponse::Error { kind: ErrorKind::QuorumUnavailable, detail: truncate(e) },
            }
        }
        NodeRequest::PerCommitmentPoint { channel, commitment_number } => {
            let req = CosignerRequest::PerCommitmentPoint { channel, commitment_number };
            match crate::approval::ask_key_holder(quorum, req).await {
                Ok(CosignerResponse::Point(p)) => NodeResponse::Point(p),
                Ok(other) => NodeResponse::Error { kind: ErrorKind::Internal, detail: truncate(format!("{other:?}")) },
                Err(e) => NodeResponse::Error { kind: ErrorKind::QuorumUnavailable, detail: truncate(e) },
            }
        }
        NodeRequest::TaprootChannelKeys { channel } => match crate::taproot::channel_keys(quorum, &channel).await {
            Ok(keys) => NodeResponse::TaprootChannelKeys(keys),
            Err(f) => taproot_failure(f),
        },
        NodeRequest::TaprootNonce { channel } => match crate::taproot::reserve_nonce(quorum, channel).await {
            Ok((pubnonce, leaf_nonces)) => NodeResponse::TaprootNonce { pubnonce: pubnonce.to_vec(), leaf_nonces },
            Err(f) => taproot_failure(f),
        },
        NodeRequest::Taproot { channel, request, counterparty_nonce, reserved } => {
            match crate::taproot::run(quorum, channel, request, counterparty_nonce, reserved).await {
                Ok(crate::taproot::TaprootOutcome::Applied(report)) => NodeResponse::TaprootApplied { report },
                Ok(crate::taproot::TaprootOutcome::PartialSig { pubnonce, psig, report }) => {
                    NodeResponse::TaprootPartialSig { pubnonce: pubnonce.to_vec(), psig, report }
                }
                Ok(crate::taproot::TaprootOutcome::Secret { secret, report }) => {
                    NodeResponse::KeyHolder { output: KeyHolderOutput::Secret(secret), report }
                }
                Err(f) => taproot_failure(f),
            }
        }
        NodeRequest::TaprootVerificationNonce { channel, commitment_number } => {
            match crate::taproot::verification_nonce(quorum, channel, commitment_number).await {
                Ok((pubnonce, leaf_nonces)) => NodeResponse::TaprootNonce { pubnonce: pubnonce.to_vec(), leaf_nonces },
                Err(f) => taproot_failure(f),
            }
        }
        NodeRequest::TaprootFrost { channel, item } => match crate::taproot::frost(quorum, channel, item).await {
            Ok((sigs, messages, report)) => {
                NodeResponse::TaprootSignatures { sigs: sigs.iter().map(|s| s.to_vec()).collect(), messages, report }
            }
            Err(f) => failure(f),
        },
        NodeRequest::SignPsbt { psbt, funding_channels } => {
            let payload = SignPayload::Psbt { psbt: psbt.clone(), funding_channels: funding_channels.clone() };
            let outcome = sign(quorum, payload).await;
            match outcome.and_then(|o| attach_signatures(&psbt, &o).map(|p| (p, o.report))) {
                Ok((psbt, report)) => NodeResponse::SignedPsbt { psbt, report },
                Err(f) => failure(f),
            }
        }
    }
}
