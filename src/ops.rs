//! Operator tools over a store: `audit` (one order's or wallet's history), `replay` (fold the
//! whole log: counts, totals and consistency checks), `projections rebuild` (recompute the
//! read models' tables from position 0, compare them with the live ones and put them in their
//! place) and `migrate`.
//!
//! They read the same store the service writes. The embedded store admits one process at a
//! time, so they run while the service is stopped or on a copy of the data directory; a
//! PostgreSQL schema can be read while the service runs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use events::{Event, RecordedEvent, StreamName};
use projections::{HistoryItem, ReadModels, WalletCommission, PROJECTIONS_VERSION};
use serde::Serialize;
use uuid::Uuid;

use crate::actors::runner;
use crate::readmodel::{compare, Comparison, ReadStore, TableSet};
use crate::store::{
    read_stream_all, EventStore, PostgresConfig, PostgresStore, SqliteStore, StoreError,
};
use crate::ton::{Nanoton, ParsedAddress};
use crate::webhooks::outbox::NewDelivery;

/// The layout of a data directory.
#[derive(Clone, Debug)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub const EVENTS_FILE: &'static str = "events.sqlite3";
    /// Where builds before the durable read models kept them whole: removed at start.
    pub const LEGACY_CHECKPOINT_FILE: &'static str = "projections.json";

    pub fn new(root: impl Into<PathBuf>) -> DataDir {
        DataDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The event store: the one source of truth, to back up.
    pub fn events_file(&self) -> PathBuf {
        self.root.join(Self::EVENTS_FILE)
    }

    /// Removes the read models' snapshot an older build left (the tables replace it).
    pub fn remove_legacy_checkpoint(&self) {
        let path = self.root.join(Self::LEGACY_CHECKPOINT_FILE);
        match std::fs::remove_file(&path) {
            Ok(()) => {
                tracing::info!(path = %path.display(), "removed the read models' snapshot of an older version; they live in the store's tables now")
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove an older version's read models' snapshot")
            }
        }
    }

    pub const SESSION_KEY_FILE: &'static str = "session.key";

    /// The key Fragment sessions are named with (`FragmentClient::with_session_key`), made
    /// on first use and kept here so that a restarted service knows which configured
    /// session bought an order. It is not a cookie and opens nothing: it only makes the
    /// names stable. Written readable by the owner only.
    pub fn session_key(&self) -> std::io::Result<[u8; 32]> {
        let path = self.root.join(Self::SESSION_KEY_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
                std::io::Error::other(format!(
                    "{} is not a 32-byte key; remove it to make a new one",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut key);
                write_atomically(&path, &key, Some(0o600))?;
                Ok(key)
            }
            Err(e) => Err(e),
        }
    }

    /// Opens the store of an existing data directory. A path without one is an error, not a
    /// new empty store: a mistyped `--data-dir` must not "audit" nothing successfully.
    pub fn open_existing(&self) -> Result<Arc<dyn EventStore>, OpsError> {
        let file = self.events_file();
        if !file.is_file() {
            return Err(OpsError::NoStore(self.root.clone()));
        }
        match SqliteStore::open(&file) {
            Ok(store) => Ok(Arc::new(store)),
            Err(StoreError::Unavailable(_)) => Err(OpsError::InUse(self.root.clone())),
            Err(e) => Err(OpsError::Store(e)),
        }
    }
}

/// Opens the configured store for an operator tool: an embedded store only where one exists
/// (`DataDir::open_existing`), a PostgreSQL schema only if it is at this build's migration
/// (tools never migrate it).
pub async fn open_for_tools(
    backend: &crate::config::StoreBackend,
) -> Result<Arc<dyn EventStore>, OpsError> {
    match backend {
        crate::config::StoreBackend::Sqlite { data_dir } => DataDir::new(data_dir).open_existing(),
        crate::config::StoreBackend::Postgres(config) => {
            let config = PostgresConfig {
                migrate: false,
                ..config.clone()
            };
            Ok(Arc::new(PostgresStore::open(config).await?))
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error("no event store in {0} (expected the file events.sqlite3 there); check --data-dir")]
    NoStore(PathBuf),
    #[error(
        "the data directory {0} is in use by a running gateway; stop it, or work on a copy of the directory"
    )]
    InUse(PathBuf),
    #[error("`{0}` is neither an order id (UUID) nor a TON wallet address (raw or user-friendly)")]
    BadTarget(String),
    #[error("no events for {0} in this data directory")]
    NotFound(String),
    #[error("cannot write {path}: {error}")]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Settings(crate::config::ConfigError),
    /// The store is being changed by someone else (a running gateway), or is not empty.
    #[error("{0}")]
    Busy(String),
    #[error("{0}")]
    BadLocation(String),
}

/// What `migrate` did.
#[derive(Clone, Debug, Serialize)]
pub struct MigrateReport {
    pub backend: &'static str,
    /// Where: the data directory, or the PostgreSQL schema.
    pub target: String,
    /// Migrations applied now (PostgreSQL); empty when the schema was up to date.
    pub applied: Vec<i32>,
    /// The schema's version afterwards.
    pub version: i32,
}

impl MigrateReport {
    pub fn render_text(&self) -> String {
        if self.applied.is_empty() {
            format!(
                "{} store {} is at version {}: nothing to do\n",
                self.backend, self.target, self.version
            )
        } else {
            format!(
                "{} store {}: applied migrations {:?}; now at version {}\n",
                self.backend, self.target, self.applied, self.version
            )
        }
    }
}

/// Creates or migrates the configured store.
pub async fn migrate(backend: &crate::config::StoreBackend) -> Result<MigrateReport, OpsError> {
    match backend {
        crate::config::StoreBackend::Sqlite { data_dir } => {
            let dir = DataDir::new(data_dir);
            std::fs::create_dir_all(dir.root()).map_err(|error| OpsError::Write {
                path: dir.root().to_path_buf(),
                error,
            })?;
            let existed = dir.events_file().is_file();
            // Opening creates the file's schema (and refuses a newer build's file).
            let store = match SqliteStore::open(dir.events_file()) {
                Ok(store) => store,
                Err(StoreError::Unavailable(_)) => return Err(OpsError::InUse(dir.root().into())),
                Err(e) => return Err(e.into()),
            };
            EventStore::close(&store).await?;
            Ok(MigrateReport {
                backend: "sqlite",
                target: dir.events_file().display().to_string(),
                applied: if existed {
                    vec![]
                } else {
                    vec![crate::store::sqlite::FORMAT_VERSION as i32]
                },
                version: crate::store::sqlite::FORMAT_VERSION as i32,
            })
        }
        crate::config::StoreBackend::Postgres(config) => {
            let applied = PostgresStore::migrate(config).await?;
            Ok(MigrateReport {
                backend: "postgres",
                target: format!("schema {}", config.schema),
                applied,
                version: crate::store::postgres::MIGRATIONS.last().map_or(0, |m| m.0),
            })
        }
    }
}

/// One end of `migrate-store`: `sqlite:DIR` or `postgres:URL` (with its schema).
#[derive(Clone, Debug)]
pub enum StoreLocation {
    Sqlite(PathBuf),
    Postgres(PostgresConfig),
}

impl StoreLocation {
    /// `sqlite:DIR`, or `postgres:URL` in the `schema` given (`postgres:` alone takes the URL
    /// from `FG_STORE__URL`, so that a password need not be on the command line).
    pub fn parse(
        text: &str,
        schema: &str,
        env_url: Option<String>,
    ) -> Result<StoreLocation, OpsError> {
        let bad =
            |why: &str| OpsError::BadLocation(format!("{why}; use sqlite:DIR or postgres:URL"));
        match text.split_once(':') {
            Some(("sqlite", dir)) if !dir.is_empty() => Ok(StoreLocation::Sqlite(dir.into())),
            Some(("postgres", url)) => {
                let url = if url.is_empty() {
                    env_url.ok_or_else(|| bad("postgres: without a URL needs FG_STORE__URL"))?
                } else {
                    url.to_string()
                };
                if !crate::store::postgres::valid_schema(schema) {
                    return Err(OpsError::BadLocation(format!(
                        "schema {schema:?} must be a lower-case identifier (a-z, 0-9, _)"
                    )));
                }
                let mut config = PostgresConfig::new(url.as_str().into());
                config.schema = schema.to_string();
                Ok(StoreLocation::Postgres(config))
            }
            _ => Err(bad("not a store location")),
        }
    }

    /// Where, without any password: for reports.
    pub fn describe(&self) -> String {
        match self {
            StoreLocation::Sqlite(dir) => format!("sqlite:{}", dir.display()),
            StoreLocation::Postgres(c) => {
                let at = url::Url::parse(c.url.expose())
                    .map(|u| {
                        format!(
                            "{}:{}{}",
                            u.host_str().unwrap_or(""),
                            u.port().unwrap_or(5432),
                            u.path()
                        )
                    })
                    .unwrap_or_default();
                format!("postgres:{at} schema {}", c.schema)
            }
        }
    }
}

/// What `migrate-store` did.
#[derive(Clone, Debug, Serialize)]
pub struct MigrateStoreReport {
    pub from: String,
    pub to: String,
    pub events: u64,
    pub head: u64,
    /// The read models rebuilt in the target: rows of each kind.
    pub orders: u64,
    pub requests: u64,
    pub wallets: u64,
    /// `replay` of the source and of the target agree on everything they count and check.
    pub replay_matches: bool,
    /// Where `session.key` is now, or what to do with it.
    pub session_key: String,
    pub elapsed_ms: u64,
}

impl MigrateStoreReport {
    pub fn render_text(&self) -> String {
        format!(
            "copied {} events (up to position {}) from {} to {}\n\
             rebuilt the read models there: {} orders, {} payment requests, {} wallets with commission\n\
             replay of both stores: {}\n\
             session.key: {}\n",
            self.events,
            self.head,
            self.from,
            self.to,
            self.orders,
            self.requests,
            self.wallets,
            if self.replay_matches { "identical" } else { "DIFFERENT" },
            self.session_key,
        )
    }
}

/// Copies a whole log from one store to an empty one, as it was recorded (positions, ids,
/// times), rebuilds the read models there from the copy, and checks that `replay` of both
/// agrees. The source is only read; it must not change meanwhile (stop the gateway).
pub async fn migrate_store(
    from: &StoreLocation,
    to: &StoreLocation,
) -> Result<MigrateStoreReport, OpsError> {
    const PAGE: usize = 2000;
    let started = Instant::now();
    let source = match from {
        StoreLocation::Sqlite(dir) => DataDir::new(dir).open_existing()?,
        StoreLocation::Postgres(config) => {
            open_for_tools(&crate::config::StoreBackend::Postgres(config.clone())).await?
        }
    };
    let target: Arc<dyn EventStore> = match to {
        StoreLocation::Sqlite(dir) => {
            let dir = DataDir::new(dir);
            match SqliteStore::open(dir.events_file()) {
                Ok(store) => Arc::new(store),
                Err(StoreError::Unavailable(_)) => return Err(OpsError::InUse(dir.root().into())),
                Err(e) => return Err(e.into()),
            }
        }
        StoreLocation::Postgres(config) => Arc::new(PostgresStore::open(config.clone()).await?),
    };
    let result = copy_and_check(&source, &target, PAGE).await;
    let closed = (source.close().await, target.close().await);
    let (events, head, orders, requests, wallets, replay_matches) = result?;
    closed.0?;
    closed.1?;
    let session_key = match (from, to) {
        (StoreLocation::Sqlite(a), StoreLocation::Sqlite(b)) => {
            let (src, dst) = (
                a.join(DataDir::SESSION_KEY_FILE),
                b.join(DataDir::SESSION_KEY_FILE),
            );
            if src.is_file() {
                let key = std::fs::read(&src).map_err(|error| OpsError::Write {
                    path: src.clone(),
                    error,
                })?;
                write_atomically(&dst, &key, Some(0o600)).map_err(|error| OpsError::Write {
                    path: dst.clone(),
                    error,
                })?;
                format!("copied to {}", dst.display())
            } else {
                "none in the source directory".into()
            }
        }
        (StoreLocation::Sqlite(a), _) => format!(
            "keep {} as store.data_dir's session.key of the gateway on the new store",
            a.join(DataDir::SESSION_KEY_FILE).display()
        ),
        (_, _) => "unchanged: it lives in the gateway's data directory".into(),
    };
    Ok(MigrateStoreReport {
        from: from.describe(),
        to: to.describe(),
        events,
        head,
        orders,
        requests,
        wallets,
        replay_matches,
        session_key,
        elapsed_ms: started.elapsed().as_millis() as u64,
    })
}

type Copied = (u64, u64, u64, u64, u64, bool);

/// What lives beside the log and must move with it: the idempotency key (the log's keyed
/// hashes are checked with it, so a retry after the move still finds its first answer) and
/// the webhook outbox's place in the log with the deliveries still pending (the events before
/// it were reported by the old store; pending ones are still owed; later ones the new store
/// derives). Delivered deliveries and attempt logs stay with the old store.
async fn carry_service_state(
    source: &Arc<dyn EventStore>,
    target: &Arc<dyn EventStore>,
) -> Result<(), OpsError> {
    const PAGE: u64 = 500;
    let (from, to) = (source.read_models()?, target.read_models()?);
    let key = from.service_key(crate::idempotency::SERVICE_KEY).await?;
    to.put_service_key(crate::idempotency::SERVICE_KEY, &key)
        .await?;
    let (old, new) = (from.outbox(), to.outbox());
    let mut pending = vec![];
    loop {
        let page = old
            .list(Some("pending".into()), None, pending.len() as u64, PAGE)
            .await?;
        let done = (page.items.len() as u64) < PAGE;
        pending.extend(page.items.into_iter().map(|d| NewDelivery {
            event_id: d.event_id,
            position: d.position,
            order_id: d.order_id,
            kind: d.kind,
            url: d.url,
            body: d.body,
            created_at: d.created_at,
        }));
        if done {
            break;
        }
    }
    let reached = old.position().await?;
    let at = new.position().await?;
    new.add(at, reached, pending).await?;
    Ok(())
}

async fn copy_and_check(
    source: &Arc<dyn EventStore>,
    target: &Arc<dyn EventStore>,
    page: usize,
) -> Result<Copied, OpsError> {
    let existing = target.head().await?;
    if existing > 0 {
        return Err(OpsError::Busy(format!(
            "the target store already holds {existing} events; migrate-store copies into an empty store"
        )));
    }
    let head = source.head().await?;
    let mut after = 0;
    let mut events = 0u64;
    while after < head {
        let mut batch = source.read_all(after, page).await?;
        batch.retain(|e| e.position <= head);
        let Some(last) = batch.last().map(|e| e.position) else {
            break;
        };
        events += batch.len() as u64;
        target.import(batch).await?;
        after = last;
    }
    if source.head().await? != head {
        return Err(OpsError::Busy(
            "the source store changed during the copy: a gateway is writing to it; stop it and \
             copy into a new, empty target"
                .into(),
        ));
    }
    carry_service_state(source, target).await?;
    let tables = target.read_models()?;
    runner::rebuild_into(target, &*tables, head).await?;
    let orders = tables.orders(Default::default(), 0, 0).await?.total;
    let requests = tables.requests(Default::default(), 0, 0).await?.total;
    let wallets = tables.wallets(false, 0, 0).await?.total;
    let (a, b) = (replay(source).await?, replay(target).await?);
    let comparable = |r: &ReplayReport| {
        let mut json = serde_json::to_value(r).unwrap_or_default();
        if let Some(o) = json.as_object_mut() {
            o.remove("elapsed_ms");
        }
        json
    };
    Ok((
        events,
        head,
        orders,
        requests,
        wallets,
        comparable(&a) == comparable(&b),
    ))
}

/// What `audit` looks at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AuditTarget {
    Order {
        order_id: Uuid,
    },
    /// By raw address, whatever form was given.
    Wallet {
        address: String,
    },
    /// An idempotency key's stream, by its id (`idempotency-<key id>`).
    IdempotencyKey {
        key_id: String,
    },
}

impl AuditTarget {
    /// An order id, a wallet address in any form, or a stream name (`order-…`, `wallet-…`).
    pub fn parse(s: &str) -> Result<AuditTarget, OpsError> {
        let s = s.trim();
        if let Ok(id) = Uuid::parse_str(s) {
            return Ok(AuditTarget::Order { order_id: id });
        }
        if let Ok(stream) = StreamName::parse(s) {
            return Ok(match stream {
                StreamName::Order(order_id) => AuditTarget::Order { order_id },
                StreamName::Wallet(address) => AuditTarget::Wallet { address },
                StreamName::Idempotency(key_id) => AuditTarget::IdempotencyKey { key_id },
            });
        }
        match ParsedAddress::parse(s) {
            Ok(a) => Ok(AuditTarget::Wallet {
                address: crate::ton::address::raw(&a.address),
            }),
            Err(_) => Err(OpsError::BadTarget(s.to_string())),
        }
    }

    pub fn stream(&self) -> StreamName {
        match self {
            AuditTarget::Order { order_id } => StreamName::order(*order_id),
            AuditTarget::Wallet { address } => StreamName::Wallet(address.clone()),
            AuditTarget::IdempotencyKey { key_id } => StreamName::Idempotency(key_id.clone()),
        }
    }
}

/// One event of an audited stream.
#[derive(Clone, Debug, Serialize)]
pub struct AuditLine {
    pub position: u64,
    pub version: u64,
    pub recorded_at: DateTime<Utc>,
    pub event_type: String,
    pub schema_version: u16,
    /// The key fields, in words.
    pub summary: String,
    pub correlation_id: Option<Uuid>,
    pub causation_id: Option<Uuid>,
    /// The stored event itself (upcasted to the current shape when it could be decoded).
    pub data: serde_json::Value,
}

#[derive(Clone, Debug, Serialize)]
pub struct AuditReport {
    pub target: AuditTarget,
    pub stream: String,
    pub events: Vec<AuditLine>,
    /// For a wallet: its commission account, from the whole log.
    pub commission: Option<WalletCommission>,
    /// For a wallet: the orders it paid for, newest first, from the whole log.
    pub orders: Vec<HistoryItem>,
}

/// The history of one order or wallet. A wallet's commission account and the orders it paid
/// for come from the read models' tables when they are up to date with the log (or `live`:
/// the running service's, a moment behind at most), else from a fold of the whole log.
pub async fn audit(
    store: &Arc<dyn EventStore>,
    tables: &dyn ReadStore,
    target: AuditTarget,
    live: bool,
) -> Result<AuditReport, OpsError> {
    let stream = target.stream().to_string();
    let recorded = read_stream_all(store.as_ref(), &stream).await?;
    let events: Vec<AuditLine> = recorded.iter().map(audit_line).collect();
    let (commission, orders) = match &target {
        AuditTarget::Order { .. } | AuditTarget::IdempotencyKey { .. } => (None, vec![]),
        AuditTarget::Wallet { address } => {
            let (commission, orders) = wallet_account(store, tables, address, live).await?;
            (Some(commission), orders)
        }
    };
    if events.is_empty() && orders.is_empty() {
        let what = match &target {
            AuditTarget::Order { order_id } => format!("order {order_id}"),
            AuditTarget::Wallet { address } => format!("wallet {address}"),
            AuditTarget::IdempotencyKey { key_id } => format!("idempotency key {key_id}"),
        };
        return Err(OpsError::NotFound(what));
    }
    Ok(AuditReport {
        target,
        stream,
        events,
        commission,
        orders,
    })
}

/// A wallet's commission account and the orders it paid for, newest first.
async fn wallet_account(
    store: &Arc<dyn EventStore>,
    tables: &dyn ReadStore,
    raw: &str,
    live: bool,
) -> Result<(WalletCommission, Vec<HistoryItem>), OpsError> {
    let state = tables.state().await?;
    let current = state.version == PROJECTIONS_VERSION && state.position == store.head().await?;
    if live || current {
        let commission = tables.wallet(raw).await?.unwrap_or_default();
        let orders = tables.history(raw, 0, u64::MAX).await?.items;
        return Ok((commission, orders));
    }
    let models = rebuild_in_memory(store).await?;
    Ok((
        models.commission.wallet(raw),
        models.history.page(&models.orders, raw, 0, usize::MAX),
    ))
}

/// Folds the whole log into read models in memory (for tools, on logs their memory holds).
pub async fn rebuild_in_memory(store: &Arc<dyn EventStore>) -> Result<ReadModels, StoreError> {
    let mut models = ReadModels::new();
    read_ahead(store, |page| {
        for e in page {
            match &e.event {
                Ok(event) => models.apply_at((&e).into(), event),
                Err(error) => {
                    tracing::error!(position = e.position, event_type = %e.event_type, %error, "cannot fold event");
                    models.position = e.position;
                }
            }
        }
    })
    .await?;
    Ok(models)
}

/// Hands the whole log, as of the head when it starts, to `fold` a decoded page at a time,
/// reading the next pages while `fold` works on this one: the reading and the decoding run on
/// the store's threads, two pages at once (positions have no gaps, so page k is positions
/// k·PAGE + 1 to (k + 1)·PAGE, whoever reads it), and the fold on this one, so a replay keeps
/// every core busy.
pub async fn read_ahead(
    store: &Arc<dyn EventStore>,
    mut fold: impl FnMut(Vec<events::DecodedEvent>),
) -> Result<u64, StoreError> {
    const PAGE: usize = 2048;
    const READERS: u64 = 2;
    let head = store.head().await?;
    let pages = head.div_ceil(PAGE as u64);
    let mut channels = vec![];
    let mut readers = vec![];
    for first in 0..READERS.min(pages) {
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        channels.push(rx);
        let store = Arc::clone(store);
        readers.push(tokio::spawn(async move {
            let mut page = first;
            while page < pages {
                let after = page * PAGE as u64;
                let read = store.read_all_decoded(after, PAGE).await.map(|mut events| {
                    events.retain(|e| e.position <= head);
                    events
                });
                let failed = read.is_err();
                if tx.send(read).await.is_err() || failed {
                    return;
                }
                page += READERS;
            }
        }));
    }
    let mut reached = 0;
    'pages: for page in 0..pages {
        let channel = &mut channels[(page % READERS) as usize];
        let Some(events) = channel.recv().await else {
            break 'pages;
        };
        let events = events?;
        reached = events.last().map_or(reached, |e| e.position);
        fold(events);
    }
    for reader in readers {
        reader
            .await
            .map_err(|e| StoreError::Backend(format!("a log reader stopped: {e}")))?;
    }
    Ok(reached)
}

/// One stored event as `audit` shows it.
pub fn audit_line(r: &RecordedEvent) -> AuditLine {
    let (summary, data) = match Event::from_recorded(r) {
        Ok(event) => (summary(&event), event.data()),
        Err(e) => (
            format!("cannot be decoded by this build: {e}"),
            r.data.clone(),
        ),
    };
    AuditLine {
        position: r.position,
        version: r.version,
        recorded_at: r.recorded_at,
        event_type: r.event_type.clone(),
        schema_version: r.schema_version,
        summary,
        correlation_id: r.metadata.correlation_id,
        causation_id: r.metadata.causation_id,
        data,
    }
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn ton(amount: Nanoton) -> String {
    amount.to_string()
}

/// A sum an audit computed, or what went wrong with it.
fn sum_text(sum: Option<Nanoton>) -> String {
    sum.map_or_else(|| "a sum too large for nanoton".into(), ton)
}

fn amounts_text(amounts: &[Nanoton]) -> String {
    let list: Vec<String> = amounts.iter().map(|a| ton(*a)).collect();
    format!("[{}]", list.join(", "))
}

fn product(p: &events::Product) -> String {
    match p {
        events::Product::Stars { amount } => format!("{amount} Stars"),
        events::Product::Premium { months } => format!("{months} months of Premium"),
    }
}

/// The key fields of an event, in words.
pub fn summary(event: &Event) -> String {
    match event {
        Event::OrderCreated(e) => format!(
            "{} for @{}, {} mode: price {}, commission {} ({}), total {}, expires {}",
            product(&e.product),
            e.username,
            e.mode.as_str(),
            ton(e.price_nanoton),
            ton(e.commission_nanoton),
            e.commission_rate,
            ton(e.total_nanoton),
            time(e.expires_at),
        ),
        Event::OrderPaid(e) => format!(
            "request {} from wallet {} ({}, {}); balance {}, debt {}",
            e.request_id,
            e.wallet_friendly,
            e.wallet_address,
            e.wallet_version,
            ton(e.balance_nanoton),
            ton(e.debt_nanoton),
        ),
        Event::OrderQueued(e) => format!(
            "request {} queued, must start by {}",
            e.request_id,
            time(e.queue_deadline)
        ),
        Event::OrderProcessingStarted(e) => {
            format!("request {} started on session {}", e.request_id, e.session)
        }
        Event::PaymentSubmitted(e) => format!(
            "{}seqno {} valid until {}, message {}: {} to Fragment (request {}){}",
            match &e.checkout {
                Some(c) if c.broadcast_by_client => {
                    "signed and broadcast by the client's wallet (checkout): "
                }
                Some(_) => "signed by the client's wallet (checkout): ",
                None => "",
            },
            e.seqno,
            DateTime::from_timestamp(i64::from(e.valid_until), 0)
                .map_or_else(|| e.valid_until.to_string(), time),
            e.message_hash,
            ton(e.purchase_nanoton),
            e.fragment_request_id,
            if !e.collection_nanoton.is_zero() {
                format!(" + {} commission collection", ton(e.collection_nanoton))
            } else {
                String::new()
            },
        ),
        Event::OrderFulfilled(e) => format!(
            "tx {} (lt {}): cost {}, commission {}, collected {}, debt after {}, network fee {}",
            e.tx_hash,
            e.tx_lt,
            ton(e.cost_nanoton),
            ton(e.commission_nanoton),
            ton(e.collected_nanoton),
            ton(e.debt_after_nanoton),
            ton(e.network_fee_nanoton),
        ),
        Event::OrderDeliveryConfirmed(_) => "Fragment confirmed the delivery".to_string(),
        Event::OrderDeliveryUnconfirmed(e) => {
            format!("Fragment did not confirm the delivery: {}", e.reason)
        }
        Event::OrderFailed(e) => format!(
            "{}: {} ({})",
            e.error_code,
            e.error,
            if e.funds_moved {
                "funds moved"
            } else {
                "no funds moved"
            }
        ),
        Event::OrderTimedOut(e) => format!(
            "request {} timed out after {} s in the queue; the order can be paid again",
            e.request_id, e.waited_seconds
        ),
        Event::OrderPaymentAbandoned(e) => format!(
            "request {} abandoned: {}: {}",
            e.request_id, e.error_code, e.error
        ),
        Event::OrderExpired(_) => "expired unpaid".to_string(),
        Event::OrderCancelled(_) => "cancelled unpaid by the client".to_string(),
        Event::OrderWebhookSet(e) => format!("webhooks to {}", e.url),
        Event::CheckoutIssued(e) => format!(
            "checkout for wallet {} ({}, {}), valid until {}: {} to Fragment (request {}){}",
            e.wallet_friendly,
            e.wallet_address,
            e.wallet_version,
            DateTime::from_timestamp(i64::from(e.valid_until), 0)
                .map_or_else(|| e.valid_until.to_string(), time),
            ton(e.purchase_nanoton),
            e.fragment_request_id,
            if !e.collection_nanoton.is_zero() {
                format!(" + {} commission collection", ton(e.collection_nanoton))
            } else {
                String::new()
            },
        ),
        Event::CommissionAccrued(e) => format!(
            "{} for order {}; debt {}",
            ton(e.amount_nanoton),
            e.order_id,
            ton(e.debt_after_nanoton)
        ),
        Event::CommissionCollected(e) => format!(
            "{} collected with order {} in tx {}; debt {}",
            ton(e.amount_nanoton),
            e.order_id,
            e.tx_hash,
            ton(e.debt_after_nanoton)
        ),
        Event::CommissionCollectionFailed(e) => format!(
            "collection of {} with order {} did not arrive (tx {}); the debt stays",
            ton(e.amount_nanoton),
            e.order_id,
            e.tx_hash
        ),
        Event::DebtLimitReached(e) => format!(
            "debt {} reached the limit {}; new payments are refused",
            ton(e.debt_nanoton),
            ton(e.limit_nanoton)
        ),
        Event::DebtSettled(e) => format!(
            "{} settled by the operator ({}); debt {}",
            ton(e.amount_nanoton),
            e.reference,
            ton(e.debt_after_nanoton)
        ),
        Event::IdempotencyKeyClaimed(e) => format!(
            "key {:?} ({}) claimed for {}{}; lease until {}, kept until {}",
            e.idempotency_key,
            e.scope,
            e.operation,
            e.order_id
                .map(|id| format!(" of order {id}"))
                .unwrap_or_default(),
            time(e.lease_until),
            time(e.expires_at),
        ),
        Event::IdempotentAnswerRecorded(e) => {
            format!("answered {} ({} bytes)", e.status, e.body.len())
        }
        Event::IdempotencyKeyReleased(e) => format!(
            "released after {} {}: a retry runs again",
            e.status, e.error_code
        ),
    }
}

impl AuditReport {
    pub fn render_text(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(out, "stream {} ({} events)", self.stream, self.events.len());
        for e in &self.events {
            let _ = writeln!(
                out,
                "{}  #{:<3} {:<26} {}",
                time(e.recorded_at),
                e.version,
                e.event_type,
                e.summary
            );
        }
        if let Some(c) = &self.commission {
            let _ = writeln!(
                out,
                "commission: debt {}, accrued {}, collected {}, settled {}, failed collections {}",
                ton(c.debt_nanoton),
                ton(c.accrued_total_nanoton),
                ton(c.collected_total_nanoton),
                ton(c.settled_total_nanoton),
                c.failed_collections
            );
        }
        if let AuditTarget::Wallet { .. } = self.target {
            let _ = writeln!(out, "orders paid from this wallet ({}):", self.orders.len());
            for o in &self.orders {
                let _ = writeln!(
                    out,
                    "{}  order {} request {}: {} for @{}, cost {}, commission {}, {}{}",
                    time(o.created_at),
                    o.order_id,
                    o.request_id,
                    product(&o.product),
                    o.username,
                    ton(o.cost_nanoton),
                    ton(o.commission_nanoton),
                    o.status,
                    o.tx_hash
                        .as_deref()
                        .map(|h| format!(", tx {h}"))
                        .unwrap_or_default()
                );
            }
        }
        out
    }
}

/// Money moved according to the log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReplayTotals {
    /// Paid to Fragment by fulfilled orders.
    pub purchases_nanoton: Nanoton,
    pub stars_delivered: u64,
    pub premium_months_delivered: u64,
    /// Network fees the wallets paid, for payments made and for messages processed without
    /// paying.
    pub network_fees_nanoton: Nanoton,
    pub commission_accrued_nanoton: Nanoton,
    pub commission_collected_nanoton: Nanoton,
    pub commission_settled_nanoton: Nanoton,
    pub commission_outstanding_nanoton: Nanoton,
    pub failed_collections: u64,
}

/// One consistency check across streams.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    /// What disagrees, when something does (at most a few examples).
    pub problems: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct UndecodableEvent {
    pub position: u64,
    pub stream: String,
    pub event_type: String,
    pub error: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct ReplayReport {
    pub events: u64,
    pub head: u64,
    pub first_recorded_at: Option<DateTime<Utc>>,
    pub last_recorded_at: Option<DateTime<Utc>>,
    pub by_type: BTreeMap<String, u64>,
    pub order_streams: u64,
    pub wallet_streams: u64,
    pub orders_by_status: BTreeMap<String, u64>,
    pub requests_by_status: BTreeMap<String, u64>,
    /// Failed and abandoned requests by error code (timeouts under QUEUE_TIMEOUT).
    pub failures_by_code: BTreeMap<String, u64>,
    pub totals: ReplayTotals,
    pub undecodable: Vec<UndecodableEvent>,
    pub checks: Vec<Check>,
    pub elapsed_ms: u64,
    /// The folded models, for callers that compare them (not printed).
    #[serde(skip)]
    pub models: ReadModels,
}

impl ReplayReport {
    /// Every event decoded and every check held.
    pub fn consistent(&self) -> bool {
        self.undecodable.is_empty() && self.checks.iter().all(|c| c.ok)
    }

    pub fn render_text(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let secs = self.elapsed_ms as f64 / 1000.0;
        let _ = writeln!(
            out,
            "{} events up to position {} folded in {:.3} s",
            self.events, self.head, secs
        );
        if let (Some(a), Some(b)) = (self.first_recorded_at, self.last_recorded_at) {
            let _ = writeln!(out, "recorded from {} to {}", time(a), time(b));
        }
        let _ = writeln!(
            out,
            "streams: {} orders, {} wallets",
            self.order_streams, self.wallet_streams
        );
        let _ = writeln!(out, "events by type:");
        for (t, n) in &self.by_type {
            let _ = writeln!(out, "  {t:<28} {n}");
        }
        let list = |m: &BTreeMap<String, u64>| {
            m.iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(out, "orders: {}", list(&self.orders_by_status));
        let _ = writeln!(out, "payment requests: {}", list(&self.requests_by_status));
        if !self.failures_by_code.is_empty() {
            let _ = writeln!(out, "failures: {}", list(&self.failures_by_code));
        }
        let t = &self.totals;
        let _ = writeln!(
            out,
            "paid to Fragment: {} ({} Stars, {} months of Premium), network fees {}",
            ton(t.purchases_nanoton),
            t.stars_delivered,
            t.premium_months_delivered,
            ton(t.network_fees_nanoton)
        );
        let _ = writeln!(
            out,
            "commission: accrued {}, collected {}, settled {}, outstanding {}, failed collections {}",
            ton(t.commission_accrued_nanoton),
            ton(t.commission_collected_nanoton),
            ton(t.commission_settled_nanoton),
            ton(t.commission_outstanding_nanoton),
            t.failed_collections
        );
        for u in &self.undecodable {
            let _ = writeln!(
                out,
                "UNDECODABLE position {} ({} in {}): {}",
                u.position, u.event_type, u.stream, u.error
            );
        }
        for c in &self.checks {
            let _ = writeln!(
                out,
                "check {}: {}",
                c.name,
                if c.ok { "ok" } else { "FAILED" }
            );
            for p in &c.problems {
                let _ = writeln!(out, "  {p}");
            }
        }
        out
    }
}

/// What the checks need of the log, keyed by order.
#[derive(Default)]
struct Ledger {
    /// Order → (commission, collected) of its OrderFulfilled events.
    fulfilled: BTreeMap<Uuid, Vec<(Nanoton, Nanoton)>>,
    accrued: BTreeMap<Uuid, Vec<Nanoton>>,
    collected: BTreeMap<Uuid, Vec<Nanoton>>,
    submitted: BTreeMap<Uuid, u64>,
    products: BTreeMap<Uuid, events::Product>,
    /// Wallet → (accrued − collected − settled, last recorded debt).
    wallet_debt: BTreeMap<String, (i128, Nanoton)>,
}

/// Folds the whole log into the read models, counting and cross-checking as it goes.
pub async fn replay(store: &Arc<dyn EventStore>) -> Result<ReplayReport, OpsError> {
    const MAX_LISTED: usize = 20;
    let started = Instant::now();
    let head = store.head().await?;
    let mut models = ReadModels::new();
    let mut by_type = BTreeMap::new();
    let mut streams: BTreeSet<String> = BTreeSet::new();
    let mut undecodable = vec![];
    let mut totals = ReplayTotals::default();
    let mut ledger = Ledger::default();
    let (mut count, mut first, mut last) = (0u64, None, None);
    read_ahead(store, |page| {
        for r in page {
            if r.position > head {
                break;
            }
            count += 1;
            let ctx = projections::EventContext::from(&r);
            first.get_or_insert(r.recorded_at);
            last = Some(r.recorded_at);
            match by_type.get_mut(r.event_type.as_str()) {
                Some(n) => *n += 1,
                None => {
                    by_type.insert(r.event_type.clone(), 1);
                }
            }
            if !streams.contains(&r.stream) {
                streams.insert(r.stream.clone());
            }
            let event = match r.event {
                Ok(e) => e,
                Err(e) => {
                    if undecodable.len() < MAX_LISTED {
                        undecodable.push(UndecodableEvent {
                            position: r.position,
                            stream: r.stream,
                            event_type: r.event_type.clone(),
                            error: e.to_string(),
                        });
                    }
                    models.position = r.position;
                    continue;
                }
            };
            tally(&event, &mut totals, &mut ledger);
            models.apply_at(ctx, &event);
        }
    })
    .await?;
    let c = &models.commission.totals;
    totals.commission_accrued_nanoton = c.accrued_nanoton;
    totals.commission_collected_nanoton = c.collected_nanoton;
    totals.commission_settled_nanoton = c.settled_nanoton;
    totals.commission_outstanding_nanoton = c.outstanding_nanoton;
    totals.failed_collections = c.failed_collections;

    let mut orders_by_status = BTreeMap::new();
    for o in models.orders.orders.values() {
        *orders_by_status.entry(o.status.clone()).or_insert(0) += 1;
    }
    let mut requests_by_status = BTreeMap::new();
    let mut failures_by_code = BTreeMap::new();
    for r in models.orders.requests.values() {
        *requests_by_status
            .entry(r.status.as_str().to_string())
            .or_insert(0) += 1;
        if let Some(code) = &r.error_code {
            *failures_by_code.entry(code.clone()).or_insert(0) += 1;
        }
    }
    let count_category = |c: &str| {
        streams
            .iter()
            .filter(|s| StreamName::parse(s).is_ok_and(|n| n.category() == c))
            .count() as u64
    };
    Ok(ReplayReport {
        events: count,
        head,
        first_recorded_at: first,
        last_recorded_at: last,
        by_type,
        order_streams: count_category(StreamName::ORDER),
        wallet_streams: count_category(StreamName::WALLET),
        orders_by_status,
        requests_by_status,
        failures_by_code,
        totals,
        undecodable,
        checks: checks(&ledger, &models),
        elapsed_ms: started.elapsed().as_millis() as u64,
        models,
    })
}

fn tally(event: &Event, totals: &mut ReplayTotals, ledger: &mut Ledger) {
    // Signed, wide sums: an audit adds up what the log says, even a log that is wrong.
    let debt = |ledger: &mut Ledger, wallet: &str, delta: i128, after: Nanoton| {
        let entry = ledger.wallet_debt.entry(wallet.to_string()).or_default();
        entry.0 += delta;
        entry.1 = after;
    };
    match event {
        Event::OrderCreated(e) => {
            ledger.products.insert(e.order_id, e.product);
        }
        Event::OrderFulfilled(e) => {
            match ledger.products.get(&e.order_id) {
                Some(events::Product::Stars { amount }) => {
                    totals.stars_delivered += u64::from(*amount)
                }
                Some(events::Product::Premium { months }) => {
                    totals.premium_months_delivered += u64::from(*months)
                }
                None => {}
            }
            totals.purchases_nanoton = totals.purchases_nanoton.saturating_add(e.cost_nanoton);
            totals.network_fees_nanoton = totals
                .network_fees_nanoton
                .saturating_add(e.network_fee_nanoton);
            ledger
                .fulfilled
                .entry(e.order_id)
                .or_default()
                .push((e.commission_nanoton, e.collected_nanoton));
        }
        // A message the wallet processed without paying still cost its fees.
        Event::OrderFailed(e) => {
            totals.network_fees_nanoton = totals
                .network_fees_nanoton
                .saturating_add(e.network_fee_nanoton);
        }
        Event::PaymentSubmitted(e) => *ledger.submitted.entry(e.request_id).or_insert(0) += 1,
        Event::CommissionAccrued(e) => {
            ledger
                .accrued
                .entry(e.order_id)
                .or_default()
                .push(e.amount_nanoton);
            debt(
                ledger,
                &e.wallet_address,
                i128::from(e.amount_nanoton.as_u64()),
                e.debt_after_nanoton,
            );
        }
        Event::CommissionCollected(e) => {
            ledger
                .collected
                .entry(e.order_id)
                .or_default()
                .push(e.amount_nanoton);
            debt(
                ledger,
                &e.wallet_address,
                -(i128::from(e.amount_nanoton.as_u64())),
                e.debt_after_nanoton,
            );
        }
        Event::DebtSettled(e) => debt(
            ledger,
            &e.wallet_address,
            -(i128::from(e.amount_nanoton.as_u64())),
            e.debt_after_nanoton,
        ),
        _ => {}
    }
}

fn checks(ledger: &Ledger, models: &ReadModels) -> Vec<Check> {
    const EXAMPLES: usize = 10;
    let check = |name: &'static str, problems: Vec<String>| Check {
        name,
        ok: problems.is_empty(),
        problems: problems.into_iter().take(EXAMPLES).collect(),
    };
    // An order whose payment is on chain but not yet recorded as fulfilled (the service
    // stopped in between; the next start reconciles it) may have accrued already.
    let pending: BTreeSet<Uuid> = models
        .orders
        .unresolved_submissions()
        .map(|r| r.order_id)
        .collect();

    let mut once = vec![];
    for (order, outcomes) in &ledger.fulfilled {
        if outcomes.len() > 1 {
            once.push(format!(
                "order {order} was fulfilled {} times",
                outcomes.len()
            ));
        }
    }
    for (request, n) in &ledger.submitted {
        if *n > 1 {
            once.push(format!("request {request} signed {n} wallet messages"));
        }
    }

    let mut accrual = vec![];
    for (order, outcomes) in &ledger.fulfilled {
        let commission = Nanoton::checked_sum(outcomes.iter().map(|o| o.0));
        let accrued: Vec<Nanoton> = ledger.accrued.get(order).cloned().unwrap_or_default();
        let expected: Option<Vec<Nanoton>> =
            commission.map(|c| if c.is_zero() { vec![] } else { vec![c] });
        if expected.as_ref() != Some(&accrued) {
            accrual.push(format!(
                "order {order}: fulfilled with commission {}, accrued {}",
                sum_text(commission),
                amounts_text(&accrued)
            ));
        }
    }
    for (order, amounts) in &ledger.accrued {
        if !ledger.fulfilled.contains_key(order) && !pending.contains(order) {
            accrual.push(format!(
                "order {order}: commission {} accrued without a payment on chain",
                amounts_text(amounts)
            ));
        }
    }

    let mut collection = vec![];
    for (order, outcomes) in &ledger.fulfilled {
        let collected = Nanoton::checked_sum(outcomes.iter().map(|o| o.1));
        let recorded =
            Nanoton::checked_sum(ledger.collected.get(order).into_iter().flatten().copied());
        if collected.is_none() || collected != recorded {
            collection.push(format!(
                "order {order}: its payment collected {}, the wallet recorded {}",
                sum_text(collected),
                sum_text(recorded)
            ));
        }
    }
    for order in ledger.collected.keys() {
        if !ledger.fulfilled.contains_key(order) && !pending.contains(order) {
            collection.push(format!(
                "order {order}: a collection recorded without a payment on chain"
            ));
        }
    }

    let mut debts = vec![];
    for (wallet, (sum, last)) in &ledger.wallet_debt {
        if *sum != i128::from(last.as_u64()) {
            debts.push(format!(
                "wallet {wallet}: accrued − collected − settled = {sum} nanoton, but its last event says the debt is {last}"
            ));
        }
    }
    vec![
        check("each order paid at most once", once),
        check(
            "every fulfilled order accrued its commission, once",
            accrual,
        ),
        check(
            "collections match the payments that carried them",
            collection,
        ),
        check("each wallet's debt adds up from its events", debts),
    ]
}

/// What `projections rebuild` did.
#[derive(Clone, Debug, Serialize)]
pub struct RebuildReport {
    /// The live tables' position, where they were compared with the rebuild.
    pub position: u64,
    /// The position the rebuilt tables reached (the log's head).
    pub head: u64,
    pub orders: u64,
    pub requests: u64,
    pub wallets: u64,
    /// Whether the live tables were of this build's projection version.
    pub live_version_current: bool,
    pub comparison: Comparison,
    /// Whether the rebuilt tables took the live ones' place.
    pub replaced: bool,
    pub elapsed_ms: u64,
}

/// Rebuilds the read models' tables from position 0 beside the live ones, compares the two
/// where the live ones are, then puts the rebuild (brought up to the log's head) in their
/// place, unless they were equal and already at the head.
pub async fn rebuild_projections(
    backend: &crate::config::StoreBackend,
) -> Result<RebuildReport, OpsError> {
    let store = open_for_tools(backend).await?;
    let report = rebuild_tables(&store).await;
    store.close().await?;
    report
}

/// `rebuild_projections` on an open store.
pub async fn rebuild_tables(store: &Arc<dyn EventStore>) -> Result<RebuildReport, OpsError> {
    let started = Instant::now();
    let live = store.read_models()?;
    let state = live.state().await?;
    let live_version_current = state.version == PROJECTIONS_VERSION;
    let head = store.head().await?;
    let at = if live_version_current {
        state.position.min(head)
    } else {
        0
    };
    let rebuilt = live.other_set(TableSet::Rebuild).await?;
    let result = async {
        let mut projector = runner::rebuild_into(store, &*rebuilt, at).await?;
        let comparison = compare(&*live, &*rebuilt, at).await?;
        runner::fold_until(store, &*rebuilt, &mut projector, head, false).await?;
        let orders = rebuilt.orders(Default::default(), 0, 0).await?.total;
        let requests = rebuilt.requests(Default::default(), 0, 0).await?.total;
        let wallets = rebuilt.wallets(false, 0, 0).await?.total;
        let replaced = !(comparison.equal() && live_version_current && at == head);
        if replaced {
            live.adopt(TableSet::Rebuild, state.position).await?;
        }
        Ok::<_, StoreError>(RebuildReport {
            position: at,
            head: projector.position,
            orders,
            requests,
            wallets,
            live_version_current,
            comparison,
            replaced,
            elapsed_ms: started.elapsed().as_millis() as u64,
        })
    }
    .await;
    if let Err(e) = rebuilt.drop_set().await {
        tracing::warn!(error = %e, "cannot drop the rebuild tables");
    }
    match result {
        Err(StoreError::ReadModelsMoved { .. }) => Err(OpsError::Busy(
            "the live read models moved during the rebuild: a gateway is running on this store; \
             rebuild through its admin API (POST /admin/projections/rebuild) instead"
                .into(),
        )),
        other => Ok(other?),
    }
}

impl RebuildReport {
    pub fn render_text(&self) -> String {
        let mut out = format!(
            "rebuilt the read models from position 0 to {}: {} orders, {} payment requests, {} wallets with commission\n",
            self.head, self.orders, self.requests, self.wallets
        );
        let c = &self.comparison;
        if !self.live_version_current {
            out.push_str(
                "the live read models were of another projection version (or never built)\n",
            );
        } else if c.equal() {
            out.push_str(&format!(
                "the live read models at position {} were identical to the rebuild\n",
                self.position
            ));
        } else {
            out.push_str(&format!(
                "the live read models at position {} DIFFERED from the rebuild in {} rows:\n",
                self.position, c.differing
            ));
            for d in &c.differences {
                out.push_str(&format!("  {d}\n"));
            }
        }
        if self.replaced {
            out.push_str("the rebuilt read models are now the live ones\n");
        } else {
            out.push_str("nothing to replace\n");
        }
        out
    }
}

/// Writes `bytes` to `path` atomically (temp file, fsync, rename, fsync of the directory): a
/// crash leaves the old file or the new one, never half of either. `mode` sets the new
/// file's Unix permissions (ignored elsewhere).
pub(crate) fn write_atomically(
    path: &Path,
    bytes: &[u8],
    mode: Option<u32>,
) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if let Some(mode) = mode {
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
        }
        #[cfg(not(unix))]
        let _ = mode;
        let mut f = options.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    // The rename is durable once the directory entry is.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
