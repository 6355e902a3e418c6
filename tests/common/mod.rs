//! The world the core's integration tests run in: both simulators over loopback, an owner
//! session, a fee wallet, a data dir, and a core on the embedded store (optionally one that
//! "dies" after a chosen event).
#![allow(dead_code)] // each test binary uses its own part of this module

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use events::{Event, ExpectedVersion, NewEvent, RecordedEvent};
use fragment_gateway::actors::{Core, CoreConfig, Liveness, PayerKey, Services};
use fragment_gateway::domain::{Policy, Username};
use fragment_gateway::fragment::{FragmentClient, FragmentConfig, FragmentCookies};
use fragment_gateway::sim::fragment::state::Rules;
use fragment_gateway::sim::fragment::{default_payment_wallet, FragmentSim, FragmentSimConfig};
use fragment_gateway::sim::ton::{TonSim, TonSimConfig};
use fragment_gateway::store::{contract, AppendResult, EventStore, SqliteStore, StoreError};
use fragment_gateway::ton::client::{TonApiConfig, TonCenterClient};
use fragment_gateway::ton::{
    KeyPair, Nanoton, Network, ParsedAddress, Seed, WalletContract, WalletVersion,
};
use tokio::sync::watch;

pub const TON_WORDS: &str = "art hockey victory skill bubble stool heart gas debris april column knife gadget envelope donkey base nature dynamic artefact leg edge aisle retreat fatigue";

/// The Fragment session key of every core of a test world (see `DataDir::session_key`).
pub const SESSION_KEY: [u8; 32] = [9; 32];

pub fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

pub struct World {
    pub ton: TonSim,
    pub fragment: FragmentSim,
    pub owner: FragmentCookies,
    pub dir: tempfile::TempDir,
    pub fee: ParsedAddress,
    /// The world's PostgreSQL schema when the tests run on PostgreSQL (`FG_TEST_BACKEND`),
    /// dropped with the world.
    pub schema: Option<contract::SchemaGuard>,
}

pub async fn world() -> World {
    world_with_blocks(Duration::from_millis(50)).await
}

/// A world whose chain makes a block every `block_time` (zero: only on `produce_block`).
pub async fn world_with_blocks(block_time: Duration) -> World {
    let ton = TonSim::start(
        TonSimConfig {
            block_time,
            ..Default::default()
        },
        loopback(),
    )
    .await
    .unwrap();
    let fragment = FragmentSim::start(
        FragmentSimConfig {
            ton_api_url: ton.url().to_string(),
            poll_ms: 50,
            rules: Rules {
                processing_ms: 50,
                ..Default::default()
            },
            ..Default::default()
        },
        loopback(),
    )
    .await
    .unwrap();
    ton.install_wallet(&default_payment_wallet(Network::Mainnet), Nanoton::ZERO);
    let owner_key = KeyPair::from_secret_seed(&zeroize::Zeroizing::new([42u8; 32]));
    let owner_wallet = WalletContract::new(
        WalletVersion::V4R2,
        Network::Mainnet,
        owner_key.public_key(),
    );
    let owner = fragment
        .login("owner", Some(owner_wallet.address()))
        .unwrap();
    let fee_key = KeyPair::from_secret_seed(&zeroize::Zeroizing::new([7u8; 32]));
    let fee_wallet =
        WalletContract::new(WalletVersion::V4R2, Network::Mainnet, fee_key.public_key());
    let fee = ParsedAddress::parse(&fee_wallet.friendly_address(false)).unwrap();
    World {
        ton,
        fragment,
        owner,
        dir: tempfile::tempdir().unwrap(),
        fee,
        schema: (contract::test_backend() == "postgres")
            .then(|| contract::SchemaGuard(contract::TestSchema::new())),
    }
}

pub fn payer() -> PayerKey {
    let key = Seed::from_words(TON_WORDS)
        .unwrap()
        .derive_key(None)
        .unwrap();
    let wallet = WalletContract::new(WalletVersion::V4R2, Network::Mainnet, key.public_key());
    PayerKey { key, wallet }
}

pub fn config(policy: Policy) -> CoreConfig {
    CoreConfig {
        policy,
        idle_after: Duration::from_secs(2),
        tick: Duration::from_millis(50),
        sign_ttl_secs: 20,
        checkout_ttl_secs: 60,
        poll_interval: Duration::from_millis(50),
        delivery_timeout: Duration::from_secs(10),
        owner_wait: Duration::from_secs(10),
        cache_rows: CoreConfig::default().cache_rows,
        queue_limit: CoreConfig::default().queue_limit,
        hooks: Default::default(),
    }
}

impl World {
    pub fn services(&self) -> Services {
        Services {
            fragment: FragmentClient::new(FragmentConfig {
                base_url: self.fragment.url().to_string(),
                timeout: Duration::from_secs(5),
                backoff: Duration::from_millis(20),
                payment_addresses: vec![self.fragment.payment_address_friendly()],
                ..FragmentConfig::fragment_com()
            })
            .unwrap()
            // What the data dir's session key is to a service: the same across restarts.
            .with_session_key(SESSION_KEY),
            chain: TonCenterClient::new(TonApiConfig::local(self.ton.url())).unwrap(),
            owner_cookies: vec![self.owner.clone()],
            fee_address: Some(self.fee.clone()),
            usdt_master: fragment_gateway::sim::ton::usdt_master(),
        }
    }

    pub fn store_path(&self) -> std::path::PathBuf {
        self.dir.path().join("events.sqlite3")
    }

    /// Opens the world's store: its PostgreSQL schema, or the data dir's file. A killed
    /// core's last store calls still hold the file for a moment, as an exiting process does:
    /// wait for it to be free, as a supervisor restarting the service would.
    pub async fn open_store(&self) -> Arc<dyn EventStore> {
        if let Some(schema) = &self.schema {
            return schema.0.open().await.expect("open the PostgreSQL store");
        }
        Arc::new(self.open_sqlite().await)
    }

    /// Sets the stored schema version of `stream`'s events of one type, as a newer build
    /// (or damage) would leave them: returns how many changed.
    pub async fn set_schema_version(&self, stream: &str, event_type: &str, version: i32) -> u64 {
        if let Some(schema) = &self.schema {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&contract::test_postgres_url())
                .await
                .unwrap();
            let sql = format!(
                "UPDATE {}.events SET schema_version = $1 WHERE stream = $2 AND event_type = $3",
                schema.0.config.schema
            );
            return sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(version)
                .bind(stream)
                .bind(event_type)
                .execute(&mut conn)
                .await
                .unwrap()
                .rows_affected();
        }
        let db = rusqlite::Connection::open(self.store_path()).unwrap();
        db.execute(
            "UPDATE events SET schema_version = ?1 WHERE stream = ?2 AND event_type = ?3",
            rusqlite::params![version, stream, event_type],
        )
        .unwrap() as u64
    }

    async fn open_sqlite(&self) -> SqliteStore {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match SqliteStore::open(self.store_path()) {
                Ok(s) => return s,
                Err(StoreError::Unavailable(e)) if std::time::Instant::now() < deadline => {
                    tracing::debug!(error = %e, "waiting for the old core to close the store");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("cannot open the store: {e}"),
            }
        }
    }

    pub async fn core(
        &self,
        policy: Policy,
        halt: Option<(&'static str, usize)>,
    ) -> (Core, Arc<dyn EventStore>) {
        let (core, store) = self.core_with(config(policy), halt).await;
        (core, store as Arc<dyn EventStore>)
    }

    /// A core with its own timings. Its "process" dies after the `halt` event, or whenever the
    /// test calls `Halting::kill`: its store file is closed and it stops acting on the
    /// outside world, so another core can start on the same data dir, as after a restart.
    pub async fn core_with(
        &self,
        config: CoreConfig,
        halt: Option<(&'static str, usize)>,
    ) -> (Core, Arc<Halting>) {
        self.core_with_services(config, self.services(), halt).await
    }

    /// `core_with` on services of the test's making (another fee address, other clients).
    pub async fn core_with_services(
        &self,
        config: CoreConfig,
        services: Services,
        halt: Option<(&'static str, usize)>,
    ) -> (Core, Arc<Halting>) {
        let liveness = Liveness::default();
        let store = Arc::new(Halting::new(
            self.open_store().await,
            halt,
            liveness.clone(),
        ));
        let core = Core::start(
            config,
            services,
            Arc::clone(&store) as Arc<dyn EventStore>,
            liveness,
        )
        .await
        .unwrap();
        (core, store)
    }
}

/// A store that "kills the process" right after the `nth` append of an event of one type
/// (or when told to, `kill`): that append succeeds, every later one fails, and the liveness
/// flag drops so no payment step acts on the outside world any more — what a SIGKILL
/// between two events leaves.
pub struct Halting {
    /// Taken out when the process "dies", closing the file as the OS would.
    inner: Mutex<Option<Arc<dyn EventStore>>>,
    head: watch::Receiver<u64>,
    /// The event type that trips the kill, and how many of them to let through first.
    trip: Mutex<Option<(&'static str, usize)>>,
    halted: Mutex<bool>,
    liveness: Liveness,
    /// Appends of this event type wait this long first (a slow disk, a busy database).
    slow: Mutex<Option<(&'static str, Duration)>>,
}

impl Halting {
    fn new(
        inner: Arc<dyn EventStore>,
        trip: Option<(&'static str, usize)>,
        liveness: Liveness,
    ) -> Halting {
        Halting {
            head: inner.head_watch(),
            inner: Mutex::new(Some(inner)),
            trip: Mutex::new(trip),
            halted: Mutex::new(false),
            liveness,
            slow: Mutex::new(None),
        }
    }

    /// Appends holding an event of `event_type` take `delay` longer from now on.
    pub fn slow_appends(&self, event_type: &'static str, delay: Duration) {
        *self.slow.lock().unwrap() = Some((event_type, delay));
    }

    /// A store that only "dies" when told to (`kill`): for a clean restart in one process.
    pub fn closable(inner: Arc<dyn EventStore>) -> Halting {
        Halting::new(inner, None, Liveness::default())
    }

    /// The process dies now: no more side effects, and the store file is closed.
    pub fn kill(&self) {
        *self.halted.lock().unwrap() = true;
        self.liveness.kill();
        self.inner.lock().unwrap().take();
    }

    pub fn is_dead(&self) -> bool {
        *self.halted.lock().unwrap()
    }

    /// No crash from here on, unless the trip already fired: then the process is dead (now,
    /// if the tripping append had not yet got to kill it). Answers whether it is dead.
    pub fn disarm(&self) -> bool {
        let tripped = matches!(self.trip.lock().unwrap().take(), Some((_, 0)));
        if tripped {
            self.kill();
        }
        self.is_dead()
    }

    fn inner(&self) -> Result<Arc<dyn EventStore>, StoreError> {
        self.inner
            .lock()
            .unwrap()
            .clone()
            .ok_or_else(|| StoreError::Unavailable("process killed".into()))
    }
}

#[async_trait]
impl EventStore for Halting {
    fn backend(&self) -> &'static str {
        "halting"
    }
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        if *self.halted.lock().unwrap() {
            return Err(StoreError::Unavailable("process killed".into()));
        }
        let slow = *self.slow.lock().unwrap();
        if let Some((event_type, delay)) = slow {
            if events.iter().any(|e| e.event_type == event_type) {
                tokio::time::sleep(delay).await;
            }
        }
        let trips = match &mut *self.trip.lock().unwrap() {
            // Trips once: appends racing past the kill do not count further.
            Some((event_type, remaining))
                if *remaining > 0 && events.iter().any(|e| e.event_type == *event_type) =>
            {
                *remaining -= 1;
                *remaining == 0
            }
            _ => false,
        };
        let result = self.inner()?.append(stream, expected, events).await;
        if trips {
            self.kill();
        }
        result
    }
    async fn read_stream(
        &self,
        stream: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner()?.read_stream(stream, from, limit).await
    }
    async fn read_all(&self, after: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner()?.read_all(after, limit).await
    }
    async fn head(&self) -> Result<u64, StoreError> {
        self.inner()?.head().await
    }
    async fn stream_version(&self, stream: &str) -> Result<u64, StoreError> {
        self.inner()?.stream_version(stream).await
    }
    fn head_watch(&self) -> watch::Receiver<u64> {
        self.head.clone()
    }
    async fn read_category(
        &self,
        category: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner()?.read_category(category, after, limit).await
    }
    fn read_models(&self) -> Result<Arc<dyn fragment_gateway::readmodel::ReadStore>, StoreError> {
        self.inner()?.read_models()
    }
    async fn import(&self, events: Vec<RecordedEvent>) -> Result<(), StoreError> {
        self.inner()?.import(events).await
    }
    async fn close(&self) -> Result<(), StoreError> {
        // A killed process has nothing left to close.
        match self.inner() {
            Ok(inner) => inner.close().await,
            Err(_) => Ok(()),
        }
    }
}

/// Another client's wallet (v4r2 of a fixed key), for tests that need several payers.
pub fn payer_n(n: u8) -> PayerKey {
    let key = KeyPair::from_secret_seed(&zeroize::Zeroizing::new([100u8.wrapping_add(n); 32]));
    let wallet = WalletContract::new(WalletVersion::V4R2, Network::Mainnet, key.public_key());
    PayerKey { key, wallet }
}

/// The events in `stream`, in order.
pub async fn stream_events(store: &dyn EventStore, stream: &str) -> Vec<Event> {
    fragment_gateway::store::read_stream_all(store, stream)
        .await
        .unwrap()
        .iter()
        .map(|e| Event::from_recorded(e).unwrap())
        .collect()
}

/// The types of the events in `stream`, in order.
pub async fn event_types(store: &dyn EventStore, stream: &str) -> Vec<&'static str> {
    stream_events(store, stream)
        .await
        .iter()
        .map(Event::event_type)
        .collect()
}

pub fn alice() -> Username {
    Username::parse("@alice").unwrap()
}

/// Polls the async `check` until it holds (the core works in the background).
pub async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `check` until it holds (the core works in the background).
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn assert_no_seed_in(dir: &Path) {
    let words: Vec<&str> = TON_WORDS.split(' ').collect();
    for entry in std::fs::read_dir(dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        // Any run of three consecutive seed words would be the seed leaking.
        for three in words.windows(3) {
            assert!(
                !text.contains(&three.join(" ")),
                "seed words found in the data dir"
            );
        }
        let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, TON_WORDS);
        assert!(
            !text.contains(&b64[..40]),
            "base64 seed found in the data dir"
        );
    }
}
