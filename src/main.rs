//! Command line of fragment-gateway. Parses arguments and calls the library.

use std::io::Read;
use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use fragment_gateway::sim::ton::{TonSim, TonSimConfig};
use zeroize::Zeroizing;

#[derive(Parser)]
#[command(
    name = "fragment-gateway",
    version,
    about = "Buy Telegram Stars and gift Premium through Fragment, paid in TON"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Read a seed (base64 or the words) from stdin and print, as JSON, the wallet
    /// addresses it controls. The seed is never echoed.
    Wallet {
        /// BIP39 account index (m/44'/607'/<index>'); TON mnemonics have a single key.
        #[arg(long)]
        account_index: Option<u32>,
    },
    /// Run the simulators standalone, for testing integrations without a network.
    Sim {
        /// Address of the TON simulator (toncenter API).
        #[arg(long, default_value = "127.0.0.1:8081")]
        ton_listen: SocketAddr,
        /// Block time of the simulated chain, in milliseconds (0: only on POST /sim/block).
        #[arg(long, default_value_t = 400)]
        block_time_ms: u64,
    },
}

fn main() -> ExitCode {
    init_tracing();
    match Cli::parse().command {
        Command::Wallet { account_index } => wallet(account_index),
        Command::Sim {
            ton_listen,
            block_time_ms,
        } => run_async(sim(ton_listen, block_time_ms)),
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn run_async(fut: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(fut),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

fn wallet(account_index: Option<u32>) -> ExitCode {
    let mut input = Zeroizing::new(String::new());
    if let Err(e) = std::io::stdin().read_to_string(&mut input) {
        eprintln!("error: cannot read the seed from stdin: {e}");
        return ExitCode::FAILURE;
    }
    match fragment_gateway::cli::wallet_report(&input, account_index) {
        Ok(report) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&report).expect("JSON values serialise")
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: invalid seed: {e}");
            ExitCode::from(2)
        }
    }
}

async fn sim(ton_listen: SocketAddr, block_time_ms: u64) -> ExitCode {
    let config = TonSimConfig {
        block_time: std::time::Duration::from_millis(block_time_ms),
        ..Default::default()
    };
    let ton = match TonSim::start(config, ton_listen).await {
        Ok(sim) => sim,
        Err(e) => {
            eprintln!("error: cannot start the TON simulator on {ton_listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("TON simulator (toncenter API v2/v3): {}", ton.url());
    println!(
        "  faucet: POST {}/sim/faucet {{\"address\": \"<any form>\", \"amount\": \"<nanoton>\"}}",
        ton.url()
    );
    println!("Press Ctrl-C to stop.");
    let _ = tokio::signal::ctrl_c().await;
    ton.stop().await;
    ExitCode::SUCCESS
}
