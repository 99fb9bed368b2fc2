//! QLS simnet: runs the real cosigner and coordinator code over real QUIC on loopback.
//! `harness` spins up a quorum (used by the integration tests, the scenario runner and
//! the bench); `scenario` reads scenario files; `workload` makes the seeded request
//! stream; `runner` drives it with faults and writes the report; `bench` measures.
//!
//! Must never: mock our own crypto or transport, or report a signature it has not verified.
#![forbid(unsafe_code)]

pub mod attack_corpus;
pub mod bench;
pub mod byzantine;
pub mod channel_bench;
pub mod channels;
pub mod compare;
pub mod counterparty;
pub mod faulty_socket;
pub mod harness;
pub mod htlc_book;
pub mod html;
pub mod legacy_driver;
pub mod lightning;
pub mod malicious;
pub mod nonce_audit;
pub mod policy;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod sim_chain;
pub mod taproot_bench;
pub mod taproot_counterparty;
pub mod taproot_driver;
pub mod workload;
