//! `qls-simnet`: run a scenario (default: the built-in quickstart) and write the report
//! and signature log; or run the benchmark.
//!
//! Must never: exit 0 when an invariant failed; errors end as one line and exit 1.

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use qls_simnet::bench::{bench, table, BenchParams};
use qls_simnet::runner::run;
use qls_simnet::scenario::{Scenario, QUICKSTART};

#[derive(Parser)]
#[command(name = "qls-simnet", version, about = "QLS simnet: quorum signing scenarios and benchmarks on loopback QUIC")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a scenario file (default: the built-in quickstart).
    Run {
        scenario: Option<PathBuf>,
        #[arg(long, default_value = "report.json")]
        report: PathBuf,
        #[arg(long, default_value = "sigs.jsonl")]
        signatures: PathBuf,
        /// Self-contained HTML page with plots.
        #[arg(long, default_value = "report.html")]
        html: PathBuf,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// Print the differences between two report.json files.
    Compare { a: PathBuf, b: PathBuf },
    /// Measure quorum signing latency and throughput for 2-of-3 and 3-of-5.
    Bench {
        #[arg(long, default_value_t = 2000)]
        sequential: usize,
        #[arg(long, default_value_t = 5000)]
        concurrent: usize,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
    /// Measure legacy-channel updates through the quorum, approvals per second and
    /// cosigner memory per stored channel.
    BenchChannels {
        /// Timed updates per HTLC count.
        #[arg(long, default_value_t = 200)]
        updates: usize,
        /// Channels updated concurrently for the throughput figure.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Updates per channel in the throughput run.
        #[arg(long, default_value_t = 50)]
        cycles: usize,
        /// Channels written to a cosigner store for the memory figure (0: skip).
        #[arg(long, default_value_t = 100_000)]
        memory_channels: usize,
    },
    /// Measure taproot channel updates through the quorum (NestedMuSig2) against the same
    /// computation in one process.
    BenchTaproot {
        /// Timed updates per HTLC count.
        #[arg(long, default_value_t = 200)]
        updates: usize,
    },
}

async fn main_inner(cli: Cli) -> Result<bool, Box<dyn std::error::Error>> {
    match cli.command {
        Command::Compare { a, b } => {
            let read = |p: &PathBuf| -> Result<serde_json::Value, Box<dyn std::error::Error>> {
                let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
                Ok(serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))?)
            };
            print!("{}", qls_simnet::compare::compare(&read(&a)?, &read(&b)?));
            Ok(true)
        }
        Command::Run { scenario, report, signatures, html, quiet } => {
            let scenario = match scenario {
                Some(p) => Scenario::load(&p)?,
                None => Scenario::parse(QUICKSTART, "built-in quickstart")?,
            };
            let (r, sigs) = run(&scenario, !quiet).await?;
            std::fs::write(&report, serde_json::to_string_pretty(&r)?)
                .map_err(|e| format!("{}: {e}", report.display()))?;
            let mut out = std::io::BufWriter::new(
                std::fs::File::create(&signatures).map_err(|e| format!("{}: {e}", signatures.display()))?,
            );
            for s in &sigs {
                writeln!(out, "{}", serde_json::to_string(s)?)?;
            }
            out.flush()?;
            std::fs::write(&html, qls_simnet::html::render(&r)).map_err(|e| format!("{}: {e}", html.display()))?;
            print!("{}", r.summary());
            println!("report: {}  signatures: {}  plots: {}", report.display(), signatures.display(), html.display());
            Ok(r.invariants_hold())
        }
        Command::Bench { sequential, concurrent, concurrency } => {
            let p = BenchParams { sequential, concurrent, concurrency };
            print!("{}", table(&bench(&p).await?, &p));
            Ok(true)
        }
        Command::BenchChannels { updates, concurrency, cycles, memory_channels } => {
            use qls_simnet::channel_bench::{bench_channels, table, ChannelBenchParams};
            let p = ChannelBenchParams { updates, htlc_counts: vec![0, 10, 100], concurrency, cycles, memory_channels };
            print!("{}", table(&bench_channels(&p).await?, &p));
            Ok(true)
        }
        Command::BenchTaproot { updates } => {
            use qls_simnet::taproot_bench::{bench_taproot, table, TaprootBenchParams};
            let p = TaprootBenchParams { updates, htlc_counts: vec![0, 10, 100] };
            print!("{}", table(&bench_taproot(&p).await?, &p));
            Ok(true)
        }
    }
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    match main_inner(Cli::parse()).await {
        Ok(true) => {}
        Ok(false) => {
            eprintln!("qls-simnet: an invariant failed (see the report)");
            std::process::exit(2);
        }
        Err(e) => {
            eprintln!("qls-simnet: error: {e}");
            std::process::exit(1);
        }
    }
}
