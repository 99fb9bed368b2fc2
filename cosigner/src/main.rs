//! `qls-cosigner`: create an identity, pin peers, run the cosigner.
//!
//! Must never: print or log key material; errors end as one line and exit code 1.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

use qls_cosigner::config::{CosignerConfigFile, CONFIG_FILE};
use qls_cosigner::run_cosigner;
use qls_protocol::quic::{fingerprint_hex, parse_fingerprint, Identity};

#[derive(Parser)]
#[command(name = "qls-cosigner", version, about = "QLS cosigner: one device of the signing quorum")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create an identity (key + self-signed certificate) and a config in DATA_DIR; print the fingerprint.
    Init {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long, default_value = "cosigner")]
        name: String,
        #[arg(long, default_value = "127.0.0.1:7001")]
        listen: SocketAddr,
    },
    /// Print this cosigner's certificate fingerprint.
    Fingerprint {
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Pin a coordinator (may connect) or a peer cosigner (trusted as DKG participant);
    /// `--key-holder-peer` pins a peer that also holds the node seed (its attestation of
    /// a channel's holder keys is accepted).
    Pin {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long = "coordinator")]
        coordinators: Vec<String>,
        #[arg(long = "peer")]
        peers: Vec<String>,
        #[arg(long = "key-holder-peer")]
        key_holder_peers: Vec<String>,
    },
    /// Serve the pinned coordinators.
    Run {
        #[arg(long)]
        data_dir: PathBuf,
        /// Config file; default DATA_DIR/cosigner.toml.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn config_path(data_dir: &Path) -> PathBuf {
    data_dir.join(CONFIG_FILE)
}

async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    match cli.command {
        Command::Init { data_dir, name, listen } => {
            let id = Identity::init(&data_dir, &name)?;
            CosignerConfigFile::new(&name, listen).save(&config_path(&data_dir))?;
            println!("{}", fingerprint_hex(&id.fingerprint));
        }
        Command::Fingerprint { data_dir } => println!("{}", fingerprint_hex(&Identity::load(&data_dir)?.fingerprint)),
        Command::Pin { data_dir, coordinators, mut peers, key_holder_peers } => {
            let path = config_path(&data_dir);
            let mut file = CosignerConfigFile::load(&path)?;
            peers.extend(key_holder_peers.iter().cloned());
            for (list, new) in [
                (&mut file.coordinators, coordinators),
                (&mut file.peers, peers),
                (&mut file.key_holder_peers, key_holder_peers),
            ] {
                for fp in new {
                    let hex = fingerprint_hex(&parse_fingerprint(&fp)?);
                    if !list.contains(&hex) {
                        list.push(hex);
                    }
                }
            }
            file.check(&path)?;
            file.save(&path)?;
        }
        Command::Run { data_dir, config } => {
            let path = config.unwrap_or_else(|| config_path(&data_dir));
            let config = CosignerConfigFile::load(&path)?.check(&path)?;
            run_cosigner(&data_dir, config).await?;
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
        eprintln!("qls-cosigner: error: {e}");
        std::process::exit(1);
    }
}
