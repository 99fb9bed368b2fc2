//! Legacy (anchor, P2WSH 2-of-2) channels as one cosigner sees them: its own copy of each
//! channel's state, the state digest, the node-wide payment index, and the policy that
//! judges every channel request before any key holder may sign for it.
//!
//! Must never: sign (signing happens in the key holder shell, after approvals), or read
//! anything but the request, the stored state and the policy.

pub mod announcement;
pub mod counterparty_claims;
pub mod funding;
pub mod funding_facts;
pub mod funding_spend;
pub mod justice;
pub mod parse;
pub mod payment_approval;
pub mod payments;
pub mod provenance;
pub mod state;
pub mod sweep;
pub mod validate;
pub mod velocity;

#[cfg(test)]
mod tests;

pub use funding::funding_output;
pub use parse::ChannelError;
pub use payment_approval::{approve_payment, payment_approval_message, PaymentRequest};
pub use payments::{PaymentEntry, PaymentIndex};
pub use provenance::{holder_keys_statement, HolderKeysCheck};
pub use state::{approval_statement, chain_digest, request_digest, ChannelState, CloseState, NODE_STATE};
pub use sweep::{delayed_outputs, judge_sweep};
pub use validate::{apply, Applied, Context};
pub use velocity::Velocity;
