//! Command line of fragment-gateway. Parses arguments and calls the library.

use std::io::Read;
use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use fragment_gateway::cli::SimOverrides;
use fragment_gateway::ops::{self, AuditTarget, OpsError};
use fragment_gateway::sim::fragment::{default_payment_wallet, FragmentSim, FragmentSimConfig};
use fragment_gateway::sim::ton::TonSim;
use fragment_gateway::{app, config};
use zeroize::Zeroizing;

/// mimalloc rather than the system allocator: the service makes many small, short-lived
/// allocations on several threads (answers, decoded events, rows), where glibc's malloc took
/// a tenth or more of a poll's time in profiles, and holds on to freed memory.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Run the gateway with both simulators in-process: the whole API, no accounts, no
    /// funds. Prints a funded demo wallet's seed (a sandbox key).
    Sandbox {
        /// Address of the gateway's API.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Data directory (default: data/sandbox).
        #[arg(long)]
        data_dir: Option<std::path::PathBuf>,
        /// Settings layered over config/sandbox.toml.
        #[arg(long)]
        config: Option<std::path::PathBuf>,
    },
    /// Run the gateway against fragment.com and a TON HTTP API, as configured.
    Serve {
        /// The settings file (see config/production.example.toml); FG_SECTION__KEY
        /// environment variables override it.
        #[arg(long)]
        config: std::path::PathBuf,
    },
    /// Run the simulators standalone, for testing integrations without a network.
    Sim(Box<SimArgs>),
    /// Print the event history of one order (by id) or wallet (any address form), with the
    /// orders a wallet paid for and its commission account. Run it while the service is
    /// stopped, or on a copy of the data directory.
    Audit {
        /// An order id, a wallet address (raw or user-friendly) or a stream name.
        target: String,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Fold the whole log: event counts, order and request outcomes, money totals and
    /// consistency checks (exit status 1 when a check fails or an event cannot be read).
    Replay {
        #[command(flatten)]
        data: DataArgs,
    },
    /// Maintain the read models.
    Projections {
        #[command(subcommand)]
        command: ProjectionsCommand,
    },
    /// Create the configured store's schema, or bring it to this build's version, and exit.
    /// `serve` and `sandbox` migrate at start too; this runs it alone (before starting a new
    /// version on several machines, say). Other tools never migrate.
    Migrate {
        #[command(flatten)]
        data: DataArgs,
    },
    /// Copy a whole event log into a new, empty store (`sqlite:DIR` or `postgres:URL`; a bare
    /// `postgres:` takes the URL from FG_STORE__URL), exactly as recorded, rebuild the read
    /// models there, and check that `replay` of both agrees. Stop the gateway first.
    MigrateStore {
        /// The store to copy: sqlite:DIR or postgres:URL.
        #[arg(long)]
        from: String,
        /// The new store: sqlite:DIR or postgres:URL. It must hold no events.
        #[arg(long)]
        to: String,
        /// The PostgreSQL schema of `--from`.
        #[arg(long, default_value = "public")]
        from_schema: String,
        /// The PostgreSQL schema of `--to` (created if missing).
        #[arg(long, default_value = "public")]
        to_schema: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ProjectionsCommand {
    /// Recompute every read model from position 0 and store it as the checkpoint the
    /// service starts from.
    Rebuild {
        #[command(flatten)]
        data: DataArgs,
    },
}

/// Which store an operator tool works on: the `[store]` settings of `--config` (or the
/// defaults), with FG_STORE__* environment variables over them, and `--data-dir` over those.
#[derive(clap::Args)]
struct DataArgs {
    /// The data directory (holding events.sqlite3); default: store.data_dir of the settings.
    #[arg(long, env = "FG_DATA_DIR")]
    data_dir: Option<std::path::PathBuf>,
    /// A settings file to take the store settings from (e.g. the one `serve` uses, for a
    /// PostgreSQL store).
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

impl DataArgs {
    fn backend(&self) -> Result<config::StoreBackend, OpsError> {
        let loaded = match &self.config {
            Some(path) => config::Settings::load_file(path, None, std::env::vars()),
            None => config::Settings::load(&[], std::env::vars()),
        };
        let mut store = loaded.map_err(OpsError::Settings)?.store;
        if let Some(dir) = &self.data_dir {
            store.data_dir = dir.clone();
        }
        store.backend().map_err(OpsError::Settings)
    }

    async fn open(
        &self,
    ) -> Result<std::sync::Arc<dyn fragment_gateway::store::EventStore>, OpsError> {
        ops::open_for_tools(&self.backend()?).await
    }
}

#[derive(clap::Args)]
struct SimArgs {
    /// Address of the fragment.com simulator.
    #[arg(long, default_value = "127.0.0.1:8082")]
    fragment_listen: SocketAddr,
    /// Address of the TON simulator (toncenter API).
    #[arg(long, default_value = "127.0.0.1:8081")]
    ton_listen: SocketAddr,
    /// Settings of both simulators (see config/sim.example.toml); flags given win.
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    #[command(flatten)]
    overrides: SimOverrides,
}

fn main() -> ExitCode {
    let command = Cli::parse().command;
    // The gateway's log format is a setting; the other commands log as text.
    if !matches!(command, Command::Sandbox { .. } | Command::Serve { .. }) {
        init_tracing(false);
    }
    match command {
        Command::Wallet { account_index } => wallet(account_index),
        Command::Sim(args) => run_async(sim(*args)),
        Command::Sandbox {
            listen,
            data_dir,
            config,
        } => {
            let extra = match config.as_deref().map(std::fs::read_to_string).transpose() {
                Ok(text) => text,
                Err(e) => {
                    eprintln!("error: cannot read the settings file: {e}");
                    return ExitCode::from(2);
                }
            };
            let mut layers = vec![("config/sandbox.toml", config::SANDBOX_TOML)];
            if let Some(text) = extra.as_deref() {
                layers.push(("--config", text));
            }
            match config::Settings::load(&layers, std::env::vars()) {
                Ok(mut settings) => {
                    if let Some(l) = listen {
                        settings.server.listen = l;
                    }
                    if let Some(d) = data_dir {
                        settings.store.data_dir = d;
                    }
                    run_gateway(settings, true)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Serve { config } => {
            match config::Settings::load_file(&config, None, std::env::vars()) {
                Ok(settings) => run_gateway(settings, false),
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Audit { target, data } => run_async(audit(target, data)),
        Command::Replay { data } => run_async(replay(data)),
        Command::Projections {
            command: ProjectionsCommand::Rebuild { data },
        } => run_async(rebuild(data)),
        Command::Migrate { data } => run_async(migrate(data)),
        Command::MigrateStore {
            from,
            to,
            from_schema,
            to_schema,
            json,
        } => run_async(migrate_store(from, to, from_schema, to_schema, json)),
    }
}

/// Prints an operator command's failure; exit status 2 for what the caller can fix (a
/// wrong path or target, a running service), 1 for the rest.
fn ops_failed(e: OpsError) -> ExitCode {
    eprintln!("error: {e}");
    match e {
        OpsError::NoStore(_)
        | OpsError::InUse(_)
        | OpsError::BadTarget(_)
        | OpsError::NotFound(_)
        | OpsError::Settings(_)
        | OpsError::Busy(_)
        | OpsError::BadLocation(_) => ExitCode::from(2),
        OpsError::Write { .. } | OpsError::Store(_) => ExitCode::FAILURE,
    }
}

fn print_report<T: serde::Serialize>(json: bool, report: &T, text: impl FnOnce(&T) -> String) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(report).expect("reports serialise")
        );
    } else {
        print!("{}", text(report));
    }
}

async fn audit(target: String, data: DataArgs) -> ExitCode {
    let result = async {
        let target = AuditTarget::parse(&target)?;
        let store = data.open().await?;
        let report = match store.read_models() {
            Ok(tables) => ops::audit(&store, tables.as_ref(), target, false).await,
            Err(e) => Err(e.into()),
        };
        store.close().await?;
        report
    }
    .await;
    match result {
        Ok(report) => {
            print_report(data.json, &report, ops::AuditReport::render_text);
            ExitCode::SUCCESS
        }
        Err(e) => ops_failed(e),
    }
}

async fn replay(data: DataArgs) -> ExitCode {
    let result = async {
        let store = data.open().await?;
        let report = ops::replay(&store).await;
        store.close().await?;
        report
    }
    .await;
    match result {
        Ok(report) => {
            print_report(data.json, &report, ops::ReplayReport::render_text);
            if report.consistent() {
                ExitCode::SUCCESS
            } else {
                eprintln!("error: the log is not consistent; see the failed checks");
                ExitCode::FAILURE
            }
        }
        Err(e) => ops_failed(e),
    }
}

async fn rebuild(data: DataArgs) -> ExitCode {
    let rebuilt = match data.backend() {
        Ok(backend) => ops::rebuild_projections(&backend).await,
        Err(e) => Err(e),
    };
    match rebuilt {
        Ok(report) => {
            print_report(data.json, &report, ops::RebuildReport::render_text);
            ExitCode::SUCCESS
        }
        Err(e) => ops_failed(e),
    }
}

async fn migrate(data: DataArgs) -> ExitCode {
    match data
        .backend()
        .map(|b| async move { ops::migrate(&b).await })
    {
        Ok(migrating) => match migrating.await {
            Ok(report) => {
                print_report(data.json, &report, ops::MigrateReport::render_text);
                ExitCode::SUCCESS
            }
            Err(e) => ops_failed(e),
        },
        Err(e) => ops_failed(e),
    }
}

async fn migrate_store(
    from: String,
    to: String,
    from_schema: String,
    to_schema: String,
    json: bool,
) -> ExitCode {
    let env_url = std::env::var("FG_STORE__URL")
        .ok()
        .filter(|u| !u.is_empty());
    let locations = ops::StoreLocation::parse(&from, &from_schema, env_url.clone())
        .and_then(|f| Ok((f, ops::StoreLocation::parse(&to, &to_schema, env_url)?)));
    let result = match locations {
        Ok((from, to)) => ops::migrate_store(&from, &to).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(report) => {
            print_report(json, &report, ops::MigrateStoreReport::render_text);
            if report.replay_matches {
                ExitCode::SUCCESS
            } else {
                eprintln!("error: replay of the copy differs from replay of the source");
                ExitCode::FAILURE
            }
        }
        Err(e) => ops_failed(e),
    }
}

fn run_gateway(settings: config::Settings, sandbox: bool) -> ExitCode {
    init_tracing(settings.server.log_format == "json");
    actix_web::rt::System::new().block_on(async move {
        let started = if sandbox {
            app::start_sandbox(&settings).await
        } else {
            app::start_serve(&settings).await
        };
        let app = match started {
            Ok(app) => app,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        };
        if let Some(s) = &app.sandbox {
            println!("fragment-gateway sandbox: http://{}", app.addr);
            println!("  data directory: {}", settings.store.data_dir.display());
            println!("  fragment.com simulator: {}", s.fragment.url());
            println!("  TON simulator: {}  (faucet: POST {}/sim/faucet {{\"address\": \"…\", \"amount\": \"<nanoton>\"}})", s.ton.url(), s.ton.url());
            println!("  users: @alice, @bob, @premium_pete (has Premium), @stars_shop_bot (a bot); @ghost_user does not exist");
            println!(
                "  demo wallet {} (v4r2), funded with {} TON and {} USDT on the simulated chain",
                s.demo_wallet.friendly_address(false),
                settings.sandbox.demo_balance_ton,
                settings.sandbox.demo_balance_usdt
            );
            println!("  WARNING: a sandbox key, for simulated TON only. Never send real funds to it. Its seed (base64), for the API's \"seed\" field:");
            println!("{}", s.demo_seed_base64.as_str());
            println!("Press Ctrl-C to stop.");
        } else {
            println!("fragment-gateway serving on http://{} ({})", app.addr, settings.network.name);
        }
        wait_for_signal().await;
        eprintln!("stopping: no new requests; letting running payments reach a recorded state");
        app.stop().await;
        ExitCode::SUCCESS
    })
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
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
    // A seed is a few hundred bytes; the buffer is allocated once so that it never
    // reallocates (which would leave unwiped copies), and larger input is refused.
    const MAX_INPUT: usize = 4096;
    let mut buf = Zeroizing::new(vec![0u8; MAX_INPUT + 1]);
    let mut len = 0;
    let mut stdin = std::io::stdin().lock();
    loop {
        match stdin.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => {
                len += n;
                if len > MAX_INPUT {
                    eprintln!("error: invalid seed: input is longer than {MAX_INPUT} bytes");
                    return ExitCode::from(2);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                eprintln!("error: cannot read the seed from stdin: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let Ok(input) = std::str::from_utf8(&buf[..len]) else {
        eprintln!("error: invalid seed: input is not UTF-8 text");
        return ExitCode::from(2);
    };
    match fragment_gateway::cli::wallet_report(input, account_index) {
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

async fn sim(args: SimArgs) -> ExitCode {
    let file = match &args.config {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => Some(text),
            Err(e) => {
                eprintln!("error: cannot read {}: {e}", path.display());
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    let settings = match fragment_gateway::cli::sim_settings(file.as_deref(), &args.overrides) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let ton_listen = args.ton_listen;
    let config = settings.ton;
    let ton = match TonSim::start(config, ton_listen).await {
        Ok(sim) => sim,
        Err(e) => {
            eprintln!("error: cannot start the TON simulator on {ton_listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let fragment_config = FragmentSimConfig {
        ton_api_url: ton.url().to_string(),
        ..settings.fragment
    };
    let fragment_config_uses_default_wallet = fragment_config.payment_address.is_none();
    let network = fragment_config.network;
    let fragment = match FragmentSim::start(fragment_config, args.fragment_listen).await {
        Ok(sim) => sim,
        Err(e) => {
            eprintln!(
                "error: cannot start the fragment.com simulator on {}: {e}",
                args.fragment_listen
            );
            return ExitCode::FAILURE;
        }
    };
    // Fragment's payment addresses are deployed contracts; so is the simulator's.
    if fragment_config_uses_default_wallet {
        ton.install_wallet(
            &default_payment_wallet(network),
            fragment_gateway::ton::Nanoton::ZERO,
        );
    }
    println!("fragment.com simulator: {}", fragment.url());
    println!("TON simulator (toncenter API v2/v3): {}", ton.url());
    println!(
        "  invoices are paid to {} on the simulated chain",
        fragment.payment_address_friendly()
    );
    println!(
        "  log in: POST {}/sim/login {{\"account\": \"client\", \"wallet\": \"<address>\"}} (accounts: owner, client, unverified)",
        fragment.url()
    );
    println!(
        "  faucet: POST {}/sim/faucet {{\"address\": \"<any form>\", \"amount\": \"<nanoton>\"}}",
        ton.url()
    );
    println!("  users: @alice, @bob, @premium_pete (has Premium), @stars_shop_bot (a bot); others do not exist");
    println!("Press Ctrl-C to stop.");
    let _ = tokio::signal::ctrl_c().await;
    fragment.stop().await;
    ton.stop().await;
    ExitCode::SUCCESS
}
