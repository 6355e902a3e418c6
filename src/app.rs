//! Assembling the service: settings → data directory, store, Fragment and TON clients (or, in
//! `sandbox`, both simulators in-process), the core, and the HTTP server. Tests start the
//! same `App` on port 0 with a fresh data directory.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use zeroize::Zeroizing;

use crate::actors::{Core, CoreConfig, Liveness, Services};
use crate::api::{self, AppState, HttpSettings};
use crate::config::Settings;
use crate::config::StoreBackend;
use crate::fragment::{FragmentClient, FragmentConfig, FragmentCookies};
use crate::ops::DataDir;
use crate::sim::fragment::{default_payment_wallet, FragmentSim, FragmentSimConfig};
use crate::sim::ton::{TonSim, TonSimConfig};
use crate::store::{EventStore, PostgresStore, SqliteStore};
use crate::ton::client::{TonApiConfig, TonCenterClient};
use crate::ton::{KeyPair, Nanoton, Network, ParsedAddress, Seed, WalletContract, WalletVersion};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(String),
    #[error("cannot open the event store in {dir}: {error}")]
    Store { dir: PathBuf, error: String },
    #[error("cannot open the PostgreSQL event store (schema {schema}): {error}")]
    Database { schema: String, error: String },
    #[error("cannot listen on {addr}: {error}")]
    Listen {
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error("cannot start: {0}")]
    Other(String),
}

/// The simulators of a sandbox, and what a newcomer needs to use them.
pub struct Sandbox {
    pub ton: TonSim,
    pub fragment: FragmentSim,
    /// The funded demo wallet's seed as the API takes it (base64 of the words).
    pub demo_seed_base64: Zeroizing<String>,
    pub demo_wallet: WalletContract,
    pub fee_wallet: WalletContract,
}

/// A running gateway.
pub struct App {
    pub core: Core,
    pub server: actix_web::dev::ServerHandle,
    /// The server's task: it ends when the server has stopped.
    serving: tokio::task::JoinHandle<std::io::Result<()>>,
    /// Stopped with the server: a delivery cut short is sent again by the next start.
    webhooks: Arc<crate::webhooks::Webhooks>,
    pub addr: SocketAddr,
    pub sandbox: Option<Sandbox>,
    grace: Duration,
}

impl App {
    /// Stops taking requests, lets the ones in flight and the payments being signed or
    /// broadcast finish (bounded by the grace period), writes the projections' checkpoint,
    /// then stops the simulators of a sandbox.
    pub async fn stop(self) {
        self.server.stop(true).await;
        let _ = self.serving.await;
        self.webhooks.stop();
        self.core.shutdown(self.grace).await;
        if let Some(s) = self.sandbox {
            s.fragment.stop().await;
            s.ton.stop().await;
        }
    }
}

type Serving = (
    actix_web::dev::ServerHandle,
    tokio::task::JoinHandle<std::io::Result<()>>,
    Arc<crate::webhooks::Webhooks>,
);

fn random_key() -> KeyPair {
    let mut secret = Zeroizing::new([0u8; 32]);
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, secret.as_mut());
    KeyPair::from_secret_seed(&secret)
}

/// The configured event store, and the data directory (the session key; the embedded store's
/// file).
pub async fn open_store(settings: &Settings) -> Result<(Arc<dyn EventStore>, DataDir), StartError> {
    let backend = settings
        .store
        .backend()
        .map_err(|e| StartError::Config(e.to_string()))?;
    let dir = DataDir::new(&settings.store.data_dir);
    std::fs::create_dir_all(dir.root()).map_err(|e| StartError::Store {
        dir: dir.root().to_path_buf(),
        error: e.to_string(),
    })?;
    let store: Arc<dyn EventStore> = match backend {
        StoreBackend::Sqlite { .. } => {
            dir.remove_legacy_checkpoint();
            Arc::new(
                SqliteStore::open(dir.events_file()).map_err(|e| StartError::Store {
                    dir: dir.root().to_path_buf(),
                    error: e.to_string(),
                })?,
            )
        }
        StoreBackend::Postgres(config) => {
            let schema = config.schema.clone();
            Arc::new(
                PostgresStore::open(config)
                    .await
                    .map_err(|e| StartError::Database {
                        schema,
                        error: e.to_string(),
                    })?,
            )
        }
    };
    Ok((store, dir))
}

fn core_config(settings: &Settings, fast: bool) -> Result<CoreConfig, StartError> {
    let policy = settings
        .policy()
        .map_err(|e| StartError::Config(e.to_string()))?;
    Ok(CoreConfig {
        policy,
        cache_rows: settings
            .store
            .cache_rows()
            .map_err(|e| StartError::Config(e.to_string()))?,
        queue_limit: settings.orders.queue_limit,
        idle_after: Duration::from_secs(300),
        tick: Duration::from_millis(if fast { 200 } else { 1000 }),
        sign_ttl_secs: settings.ton.sign_ttl_seconds,
        checkout_ttl_secs: settings.orders.checkout_ttl_seconds,
        poll_interval: Duration::from_millis(if fast { 300 } else { 2000 }),
        delivery_timeout: Duration::from_secs(settings.fragment.delivery_timeout_seconds),
        owner_wait: CoreConfig::default().owner_wait,
        hooks: Default::default(),
    })
}

async fn start(
    settings: &Settings,
    services: Services,
    network_name: &str,
    wallet_network: Network,
    listen: SocketAddr,
    fast: bool,
) -> Result<(Core, Serving, SocketAddr), StartError> {
    let (store, dir) = open_store(settings).await?;
    let config = core_config(settings, fast)?;
    let key = dir.session_key().map_err(|error| {
        StartError::Config(format!(
            "the session key in {}: {error}",
            dir.root().display()
        ))
    })?;
    let services = Services {
        fragment: services.fragment.with_session_key(key),
        ..services
    };
    let idempotency = settings
        .idempotency
        .settings()
        .map_err(|e| StartError::Config(e.to_string()))?;
    let idempotency = crate::idempotency::Idempotency::open(Arc::clone(&store), idempotency)
        .await
        .map_err(|e| StartError::Other(format!("the idempotency key: {e}")))?;
    let webhooks = settings
        .webhooks
        .settings()
        .map_err(|e| StartError::Config(e.to_string()))?;
    let webhooks = Arc::new(
        crate::webhooks::Webhooks::start(Arc::clone(&store), webhooks)
            .map_err(|e| StartError::Other(format!("webhooks: {e}")))?,
    );
    let core = Core::start(config, services, store, Liveness::default())
        .await
        .map_err(|e| StartError::Other(e.to_string()))?;
    let listener = TcpListener::bind(listen).map_err(|error| StartError::Listen {
        addr: listen,
        error,
    })?;
    let addr = listener.local_addr().map_err(|error| StartError::Listen {
        addr: listen,
        error,
    })?;
    let state = AppState {
        core: core.clone(),
        network_name: network_name.to_string(),
        wallet_network,
        started: Instant::now(),
        rates_updated_at: chrono::Utc::now(),
        store_health: Default::default(),
        bodies: api::bodies::Bodies::new(
            settings
                .store
                .cache_rows()
                .map_err(|e| StartError::Config(e.to_string()))?,
        ),
        idempotency: Arc::new(idempotency),
        webhooks: Arc::clone(&webhooks),
    };
    let http = HttpSettings {
        body_limit_bytes: settings.server.body_limit_bytes,
        requests_per_minute: settings.rate_limit.requests_per_minute,
        burst: settings.rate_limit.burst,
        max_clients: settings.rate_limit.max_clients,
        shutdown_timeout: settings.server.shutdown_grace_seconds,
        admin_key: settings.admin.key.clone(),
        trusted_proxies: settings
            .server
            .trusted_proxies()
            .map_err(|e| StartError::Config(e.to_string()))?,
    };
    let server = api::serve(listener, state, http).map_err(|error| StartError::Listen {
        addr: listen,
        error,
    })?;
    // The server serves once it is polled: it runs as its own task.
    let handle = server.handle();
    let serving = actix_web::rt::spawn(server);
    Ok((core, (handle, serving, webhooks), addr))
}

/// `sandbox`: the gateway with both simulators in-process and funded fixtures.
pub async fn start_sandbox(settings: &Settings) -> Result<App, StartError> {
    let s = &settings.sandbox;
    let network = Network::Mainnet;
    let ton = TonSim::start(
        TonSimConfig {
            block_time: Duration::from_millis(s.block_time_ms),
            ..Default::default()
        },
        s.ton_listen,
    )
    .await
    .map_err(|error| StartError::Listen {
        addr: s.ton_listen,
        error,
    })?;
    let fragment = FragmentSim::start(
        FragmentSimConfig {
            ton_api_url: ton.url().to_string(),
            poll_ms: 300,
            ..Default::default()
        },
        s.fragment_listen,
    )
    .await
    .map_err(|error| StartError::Listen {
        addr: s.fragment_listen,
        error,
    })?;
    // Fragment's payment addresses are deployed wallets; so is the simulator's.
    ton.install_wallet(&default_payment_wallet(network), Nanoton::ZERO);

    if s.demo_mnemonic.trim().is_empty() {
        return Err(StartError::Config(
            "sandbox.demo_mnemonic is empty: set the 24 words of a TON mnemonic for the demo wallet"
                .into(),
        ));
    }
    let demo_seed = Seed::from_words(&s.demo_mnemonic)
        .map_err(|e| StartError::Config(format!("sandbox.demo_mnemonic: {e}")))?;
    let demo_key = demo_seed
        .derive_key(None)
        .map_err(|e| StartError::Config(format!("sandbox.demo_mnemonic: {e}")))?;
    drop(demo_seed);
    let demo_wallet = WalletContract::new(WalletVersion::V4R2, network, demo_key.public_key());
    drop(demo_key);
    let balance = Nanoton::parse_ton(&s.demo_balance_ton)
        .map_err(|e| StartError::Config(format!("sandbox.demo_balance_ton: {e}")))?;
    ton.fund(demo_wallet.address(), balance);
    let usdt = crate::ton::jetton::JettonAmount::parse_decimal(
        &s.demo_balance_usdt,
        crate::sim::ton::jetton::USDT_DECIMALS,
    )
    .ok_or_else(|| {
        StartError::Config(format!(
            "sandbox.demo_balance_usdt: {:?} is not a decimal amount of USDT (at most 6 decimals)",
            s.demo_balance_usdt
        ))
    })?;
    if usdt != crate::ton::jetton::JettonAmount::ZERO {
        ton.mint_usdt(demo_wallet.address(), usdt);
    }
    let demo_seed_base64 =
        Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(s.demo_mnemonic.trim()));

    // The operator: a verified fragment.com login with a wallet connected, and a fee wallet.
    let owner_wallet = WalletContract::new(WalletVersion::V4R2, network, random_key().public_key());
    let owner = fragment
        .login("owner", Some(owner_wallet.address()))
        .map_err(StartError::Other)?;
    let fee_wallet = WalletContract::new(WalletVersion::V4R2, network, random_key().public_key());
    let fee = ParsedAddress::parse(&fee_wallet.friendly_address(false))
        .map_err(|e| StartError::Other(e.to_string()))?;

    let services = Services {
        fragment: FragmentClient::new(FragmentConfig {
            base_url: fragment.url().to_string(),
            timeout: Duration::from_secs(10),
            backoff: Duration::from_millis(100),
            payment_addresses: vec![fragment.payment_address_friendly()],
            ..FragmentConfig::fragment_com()
        })
        .map_err(|e| StartError::Other(e.to_string()))?,
        chain: TonCenterClient::new(TonApiConfig {
            public_max_wait: Duration::from_secs(settings.ton.public_read_max_wait_seconds),
            ..TonApiConfig::local(ton.url())
        })
        .map_err(|e| StartError::Other(e.to_string()))?,
        owner_cookies: vec![owner],
        fee_address: Some(fee),
        usdt_master: crate::sim::ton::usdt_master(),
    };
    let (core, (server, serving, webhooks), addr) = start(
        settings,
        services,
        "sandbox",
        network,
        settings.server.listen,
        true,
    )
    .await?;
    Ok(App {
        core,
        server,
        serving,
        webhooks,
        addr,
        sandbox: Some(Sandbox {
            ton,
            fragment,
            demo_seed_base64,
            demo_wallet,
            fee_wallet,
        }),
        grace: Duration::from_secs(settings.server.shutdown_grace_seconds),
    })
}

/// `serve`: the gateway against fragment.com and a TON HTTP API, as configured.
pub async fn start_serve(settings: &Settings) -> Result<App, StartError> {
    let network = match settings.network.name.as_str() {
        "mainnet" => Network::Mainnet,
        "testnet" => Network::Testnet,
        other => {
            return Err(StartError::Config(format!(
                "network.name must be \"mainnet\" or \"testnet\", not {other:?}"
            )))
        }
    };
    let required = |key: &str, value: &str| {
        if value.trim().is_empty() {
            Err(StartError::Config(format!("missing setting {key}")))
        } else {
            Ok(())
        }
    };
    required("ton.api_url", &settings.ton.api_url)?;
    required("fragment.base_url", &settings.fragment.base_url)?;
    let owner_cookies = read_owner_cookies(settings)?;
    if owner_cookies.is_empty() {
        tracing::warn!("fragment.owner_cookies_file is not set: no-KYC orders will be refused with OWNER_COOKIES_NOT_CONFIGURED");
    }
    let fee_address = match settings.commission.fee_address.trim() {
        "" => {
            tracing::warn!("commission.fee_address is not set: commission accrues as debt but is never collected");
            None
        }
        a => Some(
            ParsedAddress::parse(a)
                .map_err(|e| StartError::Config(format!("commission.fee_address {a:?}: {e}")))?,
        ),
    };
    let mut fragment = FragmentConfig {
        base_url: settings.fragment.base_url.clone(),
        timeout: Duration::from_secs(settings.fragment.timeout_seconds),
        network,
        ..FragmentConfig::fragment_com()
    };
    if !settings.fragment.payment_addresses.is_empty() {
        fragment.payment_addresses = settings.fragment.payment_addresses.clone();
    }
    // A `Secret` clone, wiped on drop: the client keeps it for the life of the process.
    let api_key = Some(settings.ton.api_key.clone()).filter(|k| !k.is_empty());
    if api_key.is_none() {
        tracing::warn!(
            "ton.api_key is not set: toncenter allows about 1 request a second without one"
        );
    }
    let services = Services {
        fragment: FragmentClient::new(fragment).map_err(|e| StartError::Config(e.to_string()))?,
        chain: TonCenterClient::new(TonApiConfig {
            requests_per_second: settings
                .ton
                .pacing()
                .map_err(|e| StartError::Config(e.to_string()))?,
            public_max_wait: Duration::from_secs(settings.ton.public_read_max_wait_seconds),
            ..TonApiConfig::toncenter(settings.ton.api_url.clone(), api_key)
        })
        .map_err(|e| StartError::Config(e.to_string()))?,
        owner_cookies,
        fee_address,
        usdt_master: settings
            .ton
            .usdt_master()
            .map_err(|e| StartError::Config(e.to_string()))?,
    };
    let (core, (server, serving, webhooks), addr) = start(
        settings,
        services,
        &settings.network.name,
        network,
        settings.server.listen,
        false,
    )
    .await?;
    Ok(App {
        core,
        server,
        serving,
        webhooks,
        addr,
        sandbox: None,
        grace: Duration::from_secs(settings.server.shutdown_grace_seconds),
    })
}

/// The operator's sessions: base64 `fragment_cookies`, one per line (`#` comments allowed).
fn read_owner_cookies(settings: &Settings) -> Result<Vec<FragmentCookies>, StartError> {
    let path = &settings.fragment.owner_cookies_file;
    if path.as_os_str().is_empty() {
        return Ok(vec![]);
    }
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
        StartError::Config(format!(
            "fragment.owner_cookies_file {}: {e}",
            path.display()
        ))
    })?);
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|(n, line)| {
            FragmentCookies::parse_kyc(line.trim()).map_err(|e| {
                StartError::Config(format!(
                    "fragment.owner_cookies_file {} line {}: {e}",
                    path.display(),
                    n + 1
                ))
            })
        })
        .collect()
}
