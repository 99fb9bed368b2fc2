//! `qls-client`: the node side of the node API from a shell — group info, sign a
//! message, sign a PSBT, and make an example PSBT to try the flow.
//!
//! Must never: print a signature it has not verified; errors end as one line and exit 1.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bitcoin::psbt::Psbt;
use bitcoin::{Amount, ScriptBuf, TxOut};
use clap::{Parser, Subcommand};
use serde::{Deserialize, Serialize};

use qls_node::example::group_spend_psbt;
use qls_node::NodeClient;
use qls_protocol::quic::{fingerprint_hex, parse_fingerprint, Identity};

const CONFIG_FILE: &str = "client.toml";

#[derive(Parser)]
#[command(name = "qls-client", version, about = "QLS node-API client: ask the coordinator for signatures")]
struct Cli {
    #[arg(long, global = true, default_value = "qls-client")]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a client identity and pin the coordinator; print the client's fingerprint.
    Init {
        #[arg(long)]
        coordinator_addr: SocketAddr,
        #[arg(long)]
        coordinator_fingerprint: String,
    },
    /// Print this client's certificate fingerprint.
    Fingerprint,
    /// Print the group key, its P2TR address and the cosigners.
    Group,
    /// Sign a 32-byte message (hex) under the group key (BIP-340).
    SignMessage {
        #[arg(long)]
        msg: String,
    },
    /// Sign every group input of a PSBT (base64); prints the signed PSBT (base64) and the final transaction (hex).
    SignPsbt {
        #[arg(long)]
        psbt: String,
    },
    /// Print (base64) a PSBT spending a made-up group UTXO of AMOUNT sat, paying AMOUNT-FEE to PAY_TO (hex script; default the group's own address).
    ExamplePsbt {
        #[arg(long, default_value_t = 100_000)]
        amount: u64,
        #[arg(long, default_value_t = 1_000)]
        fee: u64,
        #[arg(long)]
        pay_to: Option<String>,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientConfig {
    coordinator_addr: SocketAddr,
    coordinator_fingerprint: String,
    #[serde(default = "default_timeout")]
    timeout_ms: u64,
}

fn default_timeout() -> u64 {
    10_000
}

async fn client(data_dir: &std::path::Path) -> Result<NodeClient, Box<dyn std::error::Error>> {
    let path = data_dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let config: ClientConfig = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let identity = Identity::load(data_dir)?;
    let pin = parse_fingerprint(&config.coordinator_fingerprint)?;
    Ok(NodeClient::connect(&identity, config.coordinator_addr, pin, Duration::from_millis(config.timeout_ms)).await?)
}

fn hex32(s: &str) -> Result<[u8; 32], String> {
    hex::decode(s.trim()).ok().and_then(|b| b.try_into().ok()).ok_or_else(|| format!("{s:?} is not 32 bytes of hex"))
}

fn example_psbt(
    key_id: &[u8; 32],
    amount: u64,
    fee: u64,
    pay_to: Option<ScriptBuf>,
) -> Result<Psbt, Box<dyn std::error::Error>> {
    let wallet = qls_signer_core::wallet::wallet_script(key_id)?;
    let mut txid = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut txid);
    let value = Amount::from_sat(amount.checked_sub(fee).ok_or("fee exceeds amount")?);
    let output = TxOut { value, script_pubkey: pay_to.unwrap_or(wallet) };
    Ok(group_spend_psbt(key_id, txid, amount, vec![output])?)
}

async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    let dir = cli.data_dir;
    match cli.command {
        Command::Init { coordinator_addr, coordinator_fingerprint } => {
            let coordinator_fingerprint = fingerprint_hex(&parse_fingerprint(&coordinator_fingerprint)?);
            let id = Identity::init(&dir, "qls-client")?;
            let config = ClientConfig { coordinator_addr, coordinator_fingerprint, timeout_ms: default_timeout() };
            std::fs::write(dir.join(CONFIG_FILE), toml::to_string_pretty(&config)?)?;
            println!("{}", fingerprint_hex(&id.fingerprint));
        }
        Command::Fingerprint => println!("{}", fingerprint_hex(&Identity::load(&dir)?.fingerprint)),
        Command::Group => {
            let g = client(&dir).await?.group_info().await?;
            println!("group key (x-only): {}", hex::encode(g.key_id));
            println!("message key (x-only): {}", hex::encode(g.message_key));
            println!("P2TR address: {}", g.address);
            println!("threshold: {} of {} ({})", g.threshold, g.cosigners.len(), g.cosigners.join(", "));
        }
        Command::SignMessage { msg } => {
            let c = client(&dir).await?;
            // Raw messages are signed under the message key, never the wallet key.
            let key = c.group_info().await?.message_key;
            let (sig, report) = c.sign_message(&key, hex32(&msg)?).await?;
            println!("{}", hex::encode(sig));
            eprintln!(
                "verified under {}; signers: {}; attempts: {}",
                hex::encode(key),
                report.signers.join(", "),
                report.attempts
            );
            for b in report.blamed {
                eprintln!("blamed {}: {:?} ({})", b.cosigner, b.reason, b.detail);
            }
        }
        Command::SignPsbt { psbt } => {
            let psbt: Psbt = psbt.trim().parse()?;
            let c = client(&dir).await?;
            let (signed, report) = c.sign_psbt(psbt.serialize()).await?;
            let signed = Psbt::deserialize(&signed)?;
            println!("{signed}");
            match signed.clone().extract_tx() {
                Ok(tx) => println!("{}", bitcoin::consensus::encode::serialize_hex(&tx)),
                Err(e) => eprintln!("not every input is signed yet: {e}"),
            }
            eprintln!("signers: {}; attempts: {}", report.signers.join(", "), report.attempts);
        }
        Command::ExamplePsbt { amount, fee, pay_to } => {
            let key = client(&dir).await?.group_info().await?.key_id;
            let pay_to = pay_to.map(|h| hex::decode(h.trim()).map(ScriptBuf::from_bytes)).transpose()?;
            println!("{}", example_psbt(&key, amount, fee, pay_to)?);
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(Cli::parse()).await {
        eprintln!("qls-client: error: {e}");
        std::process::exit(1);
    }
}
