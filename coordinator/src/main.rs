//! `qls-coordinator`: create an identity, configure cosigners and clients, run DKG,
//! serve the node API.
//!
//! Must never: store a secret (there is none here); errors end as one line and exit 1.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Parser, Subcommand};

use qls_coordinator::config::{CoordinatorConfigFile, CosignerEntry, CONFIG_FILE};
use qls_coordinator::node_api::NodeApi;
use qls_coordinator::{dkg, quorum, Quorum};
use qls_protocol::quic::{fingerprint_hex, parse_fingerprint, Identity};

#[derive(Parser)]
#[command(name = "qls-coordinator", version, about = "QLS coordinator: routes node requests to the cosigner quorum")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create an identity and a config in DATA_DIR; print the fingerprint.
    Init {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long, default_value = "coordinator")]
        name: String,
        /// Node API address.
        #[arg(long, default_value = "127.0.0.1:7000")]
        listen: SocketAddr,
    },
    /// Print this coordinator's certificate fingerprint.
    Fingerprint {
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Add a cosigner (name, address, pinned fingerprint) to the config.
    AddCosigner {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        fingerprint: String,
    },
    /// Pin a node client allowed to use the node API.
    AddClient {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        fingerprint: String,
    },
    /// Run a t-of-n FROST DKG among all configured cosigners; print the group key and address.
    Dkg {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        threshold: u16,
    },
    /// Serve the node API.
    Serve {
        #[arg(long)]
        data_dir: PathBuf,
    },
}

async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    let config_path = |d: &Path| d.join(CONFIG_FILE);
    match cli.command {
        Command::Init { data_dir, name, listen } => {
            let id = Identity::init(&data_dir, &name)?;
            CoordinatorConfigFile::new(&name, listen).save(&config_path(&data_dir))?;
            println!("{}", fingerprint_hex(&id.fingerprint));
        }
        Command::Fingerprint { data_dir } => println!("{}", fingerprint_hex(&Identity::load(&data_dir)?.fingerprint)),
        Command::AddCosigner { data_dir, name, addr, fingerprint } => {
            let path = config_path(&data_dir);
            let mut file = CoordinatorConfigFile::load(&path)?;
            let fingerprint = fingerprint_hex(&parse_fingerprint(&fingerprint)?);
            file.cosigners.retain(|c| c.name != name);
            file.cosigners.push(CosignerEntry { name, addr, fingerprint });
            file.check(&path)?;
            file.save(&path)?;
        }
        Command::AddClient { data_dir, fingerprint } => {
            let path = config_path(&data_dir);
            let mut file = CoordinatorConfigFile::load(&path)?;
            let fp = fingerprint_hex(&parse_fingerprint(&fingerprint)?);
            if !file.clients.contains(&fp) {
                file.clients.push(fp);
            }
            file.check(&path)?;
            file.save(&path)?;
        }
        Command::Dkg { data_dir, threshold } => {
            let path = config_path(&data_dir);
            let mut file = CoordinatorConfigFile::load(&path)?;
            let config = file.check(&path)?;
            let identity = Arc::new(Identity::load(&data_dir)?);
            let (_endpoint, links) = quorum::make_links(&config, identity)?;
            let key = dkg::run_dkg(&links, threshold, config.request_timeout).await?;
            let address = qls_signer_core::wallet::wallet_address(&key.key_id, config.network)?;
            file.key_id = Some(hex::encode(key.key_id));
            file.save(&path)?;
            println!("group key (x-only): {}", hex::encode(key.key_id));
            println!("threshold: {} of {}", key.threshold, links.len());
            println!("P2TR address ({}): {address}", config.network);
        }
        Command::Serve { data_dir } => {
            let path = config_path(&data_dir);
            let config = CoordinatorConfigFile::load(&path)?.check(&path)?;
            let identity = Arc::new(Identity::load(&data_dir)?);
            let quorum = Quorum::connect(config, identity.clone()).await?;
            let _refill = quorum.spawn_refill_task();
            let api = NodeApi::bind(quorum.clone(), &identity)?;
            tracing::info!(addr = ?api.local_addr().ok(), key_id = %hex::encode(quorum.key.key_id), threshold = quorum.key.threshold, "coordinator serving the node API");
            let endpoint = api.endpoint();
            tokio::select! {
                _ = api.serve() => {}
                _ = tokio::signal::ctrl_c() => endpoint.close(0u32.into(), b"shutdown"),
            }
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(Cli::parse()).await {
        eprintln!("qls-coordinator: error: {e}");
        std::process::exit(1);
    }
}
