//! The PostgreSQL event store: the log in one table of a schema the service creates and
//! migrates, shared by any number of gateway processes.
//!
//! Design, and why:
//! - **Gap-free positions across processes: an advisory transaction lock.** Every append
//!   transaction first takes `pg_advisory_xact_lock(APPEND_LOCK, hashtext(schema))`, reads
//!   the head (`MAX(position)`, one seek of the primary key) and numbers its events from
//!   there. The lock is released only after the commit is visible, so the transaction that
//!   wrote position n is visible before any transaction can even read n as its head: readers
//!   never see n + 1 without n, and "everything after the last position I saw" is exact. A
//!   sequence cannot promise that (numbers are taken at insert time and a later number may
//!   commit first, so a reader would skip the earlier one for good). A one-row counter
//!   updated by each transaction serialises the same way through its row lock, but costs a
//!   write of that row per transaction (WAL, and a dead tuple on the hottest row for VACUUM)
//!   and is a second copy of a fact the events already hold; the advisory lock costs neither.
//!   The lock is per schema, so stores in other schemas of the same database do not wait on
//!   each other.
//! - **Group commit.** Like the embedded store, one writer task per process takes every
//!   append already queued (at most [`super::GROUP_LIMIT`]) and stores them with one call of
//!   the `append_group` function, in one transaction: one round trip and one WAL flush for
//!   the group. The function checks each append's expected version and event ids in order
//!   (under the lock, so against everything committed and everything earlier in the group)
//!   and stores or refuses each one alone. Callers are answered after the commit.
//! - **Live subscriptions: LISTEN/NOTIFY with a polling fallback.** The group's transaction
//!   notifies `fg_events` with `<schema>:<head>`, delivered at commit; a listener task moves
//!   the head watch when another process commits. Notifications are lost while the
//!   listening connection is down, so the task also reads the head every
//!   [`POLL_FALLBACK`] and at once after reconnecting. This process's own commits move the
//!   watch directly.
//! - **Its own runtime.** Connections are I/O resources of the runtime that opened them, and
//!   the gateway's HTTP workers are separate single-threaded runtimes. All database I/O runs on
//!   a small runtime owned by the store, which callers on any runtime await.
//! - **Secrets.** The URL's password is kept out of every message the store produces:
//!   backend errors are scrubbed of it before they leave this module.

use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use events::{EventMetadata, ExpectedVersion, NewEvent, RecordedEvent};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, Row};
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::{AppendResult, EventStore, StoreError, GROUP_LIMIT};
use crate::config::Secret;

/// Appends waiting for the writer; a full queue makes `append` wait (backpressure).
const QUEUE_DEPTH: usize = 1024;

/// How often the head is read when no notification came: the bound on how late a commit of
/// another process is seen if its notification is lost.
pub const POLL_FALLBACK: Duration = Duration::from_secs(1);

/// First argument of the advisory locks (the second is the schema's hash): names this
/// program's locks apart from other users of the database.
const APPEND_LOCK: i32 = 0x4647_0001;
const MIGRATE_LOCK: i32 = 0x4647_0002;

/// The listening connection's `application_name`, followed by the schema: how an operator
/// (or a test) tells it apart in `pg_stat_activity`.
pub const LISTEN_APPLICATION: &str = "fragment-gateway listen";

/// The channel commits are announced on; the payload is `<schema>:<head>`.
const CHANNEL: &str = "fg_events";

/// Versioned schema changes, applied in order, each in its own transaction and recorded in
/// `schema_migrations`. Never edit one that has shipped: add the next. (sqlx has a migrator,
/// but only for its own connections; the embedded store keeps the same scheme in SQLite.)
pub const MIGRATIONS: &[Migration] = &[
    (1, "event log", || MIGRATION_1.to_string()),
    (2, "read models and category reads", migration_2),
    (3, "append_group set-based", || MIGRATION_3.to_string()),
    (4, "service keys", || {
        crate::readmodel::POSTGRES_SERVICE_KEYS.to_string()
    }),
    (5, "webhook outbox", || {
        crate::webhooks::outbox::POSTGRES_TABLES.to_string()
    }),
];

/// `append_group` again, doing per group what version 1 did per append: one read of the
/// streams' versions, one of the ids already stored, one insert. Version 1 ran three
/// statements for every append of a group, so a group cost as much as its appends did alone
/// and group commit gained little; worse, their plans were cached while the table was empty
/// (sequential scans) and every append slowed as the log grew. Plans are made for each call
/// now (`plan_cache_mode`), for the log as it is.
const MIGRATION_3: &str = r#"
CREATE OR REPLACE FUNCTION append_group(
    p_streams  text[],
    p_expected bigint[],
    p_counts   integer[],
    p_ids      uuid[],
    p_types    text[],
    p_schemas  integer[],
    p_data     text[],
    p_corr     uuid[],
    p_caus     uuid[]
) RETURNS TABLE (outcome smallint, version bigint, "position" bigint, duplicate uuid)
LANGUAGE plpgsql
SET plan_cache_mode = force_custom_plan
AS $$
DECLARE
    v_head     bigint;
    v_at       timestamptz;
    v_names    text[];
    v_versions bigint[];
    v_taken    uuid[];
    v_from     integer := 1;
    v_to       integer;
    v_idx      integer;
    v_current  bigint;
    v_dup      uuid;
    i_pos      bigint[] := '{}';
    i_stream   text[] := '{}';
    i_version  bigint[] := '{}';
    i_event    integer[] := '{}';
BEGIN
    PERFORM pg_advisory_xact_lock(1179058177, hashtext(current_schema()));
    SELECT e.position, e.recorded_at INTO v_head, v_at
        FROM events e ORDER BY e.position DESC LIMIT 1;
    v_head := COALESCE(v_head, 0);
    -- Time never goes backwards along positions, whichever process's clock wrote last.
    v_at := GREATEST(clock_timestamp(), COALESCE(v_at, '-infinity'));
    -- Each stream's version, read once; the loop keeps them as the group goes on.
    SELECT array_agg(s.name),
           array_agg(COALESCE((SELECT MAX(e.version) FROM events e WHERE e.stream = s.name), 0))
        INTO v_names, v_versions
        FROM (SELECT DISTINCT unnest(p_streams) AS name) s;
    -- Ids stored already; the loop adds those the group stores.
    SELECT COALESCE(array_agg(e.event_id), '{}') INTO v_taken
        FROM events e WHERE e.event_id = ANY (p_ids);
    FOR i IN 1 .. COALESCE(array_length(p_streams, 1), 0) LOOP
        v_to := v_from + p_counts[i] - 1;
        v_idx := array_position(v_names, p_streams[i]);
        v_current := v_versions[v_idx];
        duplicate := NULL;
        IF p_expected[i] IS NOT NULL AND p_expected[i] <> v_current THEN
            outcome := 1; version := v_current; "position" := NULL;
        ELSE
            -- The first id that is stored already or repeats an earlier one of this append.
            v_dup := NULL;
            FOR k IN v_from .. v_to LOOP
                IF p_ids[k] = ANY (v_taken) OR p_ids[k] = ANY (p_ids[v_from:k - 1]) THEN
                    v_dup := p_ids[k];
                    EXIT;
                END IF;
            END LOOP;
            IF v_dup IS NOT NULL THEN
                outcome := 2; version := NULL; "position" := NULL; duplicate := v_dup;
            ELSE
                FOR k IN v_from .. v_to LOOP
                    v_head := v_head + 1;
                    v_current := v_current + 1;
                    i_pos := i_pos || v_head;
                    i_stream := i_stream || p_streams[i];
                    i_version := i_version || v_current;
                    i_event := i_event || k;
                END LOOP;
                v_versions[v_idx] := v_current;
                v_taken := v_taken || p_ids[v_from:v_to];
                outcome := 0; version := v_current; "position" := v_head;
            END IF;
        END IF;
        RETURN NEXT;
        v_from := v_to + 1;
    END LOOP;
    IF COALESCE(array_length(i_pos, 1), 0) > 0 THEN
        INSERT INTO events (position, stream, version, event_id, event_type, schema_version,
                            data, correlation_id, causation_id, recorded_at)
        SELECT x.p, x.s, x.v, p_ids[x.k], p_types[x.k], p_schemas[x.k], p_data[x.k]::json,
               p_corr[x.k], p_caus[x.k], v_at
        FROM unnest(i_pos, i_stream, i_version, i_event) AS x(p, s, v, k);
        PERFORM pg_notify('fg_events', current_schema() || ':' || v_head);
    END IF;
END
$$;
"#;

/// The current version of each of the streams `$1` (0 for a stream without events).
///
/// One backward step on the `(stream, version)` index per stream, whatever the planner
/// thinks of the table. The obvious `WHERE stream = ANY($1) GROUP BY stream` lets it weigh
/// how many rows the named streams hold; on a large log with statistics it chose a parallel
/// sequential scan of the whole table, and an import into a log of 7 million events ran past
/// the statement timeout.
pub const STREAM_VERSIONS: &str = "SELECT s.name, COALESCE((SELECT e.version FROM events e \
     WHERE e.stream = s.name ORDER BY e.version DESC LIMIT 1), 0) \
     FROM unnest($1::text[]) AS s(name)";

/// A migration: its version, its name, and its SQL.
pub type Migration = (i32, &'static str, fn() -> String);

/// The read models' live tables (`readmodel::postgres::TABLES`), and an index of the streams'
/// categories (the part of a stream's name before its first `-`) for category reads.
fn migration_2() -> String {
    format!(
        "CREATE INDEX events_category ON events ((split_part(stream, '-', 1)), position);\n{}",
        crate::readmodel::postgres::tables(crate::readmodel::TableSet::Live)
    )
}

const MIGRATION_1: &str = r#"
CREATE TABLE events (
    position       bigint      PRIMARY KEY CHECK (position >= 1),
    stream         text        NOT NULL,
    version        bigint      NOT NULL CHECK (version >= 1),
    event_id       uuid        NOT NULL UNIQUE,
    event_type     text        NOT NULL,
    schema_version integer     NOT NULL CHECK (schema_version BETWEEN 0 AND 65535),
    -- json, not jsonb: the text is kept as written (key order, any valid JSON).
    data           json        NOT NULL,
    correlation_id uuid,
    causation_id   uuid,
    recorded_at    timestamptz NOT NULL,
    UNIQUE (stream, version)
);

-- One group of appends, in order, under the schema's append lock. Each append is checked
-- against everything committed and everything earlier in the group, and stored or refused
-- alone. Returns one row per append: outcome 0 stored (version, position of its last event),
-- 1 version conflict (version = the stream's actual version), 2 duplicate event id.
-- expected: NULL for "any", else the exact version the stream must be at (0: no stream).
CREATE FUNCTION append_group(
    p_streams  text[],
    p_expected bigint[],
    p_counts   integer[],
    p_ids      uuid[],
    p_types    text[],
    p_schemas  integer[],
    p_data     text[],
    p_corr     uuid[],
    p_caus     uuid[]
) RETURNS TABLE (outcome smallint, version bigint, "position" bigint, duplicate uuid)
LANGUAGE plpgsql AS $$
DECLARE
    v_head    bigint;
    v_at      timestamptz;
    v_current bigint;
    v_from    integer := 1;
    v_to      integer;
    v_dup     uuid;
    v_stored  boolean := false;
BEGIN
    PERFORM pg_advisory_xact_lock(1179058177, hashtext(current_schema()));
    SELECT e.position, e.recorded_at INTO v_head, v_at
        FROM events e ORDER BY e.position DESC LIMIT 1;
    v_head := COALESCE(v_head, 0);
    -- Time never goes backwards along positions, whichever process's clock wrote last.
    v_at := GREATEST(clock_timestamp(), COALESCE(v_at, '-infinity'));
    FOR i IN 1 .. COALESCE(array_length(p_streams, 1), 0) LOOP
        v_to := v_from + p_counts[i] - 1;
        SELECT COALESCE(MAX(e.version), 0) INTO v_current
            FROM events e WHERE e.stream = p_streams[i];
        duplicate := NULL;
        IF p_expected[i] IS NOT NULL AND p_expected[i] <> v_current THEN
            outcome := 1; version := v_current; "position" := NULL;
        ELSE
            -- The first id that is stored already or repeats an earlier one of this append.
            SELECT x.id INTO v_dup
                FROM unnest(p_ids[v_from:v_to]) WITH ORDINALITY AS x(id, k)
                WHERE EXISTS (SELECT 1 FROM events e WHERE e.event_id = x.id)
                   OR EXISTS (SELECT 1 FROM unnest(p_ids[v_from:v_to]) WITH ORDINALITY AS y(id, j)
                              WHERE y.id = x.id AND y.j < x.k)
                ORDER BY x.k LIMIT 1;
            IF v_dup IS NOT NULL THEN
                outcome := 2; version := NULL; "position" := NULL; duplicate := v_dup;
            ELSE
                INSERT INTO events (position, stream, version, event_id, event_type,
                                    schema_version, data, correlation_id, causation_id,
                                    recorded_at)
                SELECT v_head + k, p_streams[i], v_current + k, p_ids[v_from + k - 1],
                       p_types[v_from + k - 1], p_schemas[v_from + k - 1],
                       p_data[v_from + k - 1]::json, p_corr[v_from + k - 1],
                       p_caus[v_from + k - 1], v_at
                FROM generate_series(1, p_counts[i]) AS k;
                v_head := v_head + p_counts[i];
                v_stored := true;
                outcome := 0; version := v_current + p_counts[i]; "position" := v_head;
            END IF;
        END IF;
        RETURN NEXT;
        v_from := v_to + 1;
    END LOOP;
    IF v_stored THEN
        PERFORM pg_notify('fg_events', current_schema() || ':' || v_head);
    END IF;
END
$$;
"#;

/// Where and how to connect.
#[derive(Clone, Debug)]
pub struct PostgresConfig {
    /// `postgres://user:password@host:port/database?sslmode=…`. Secret: it may hold a password.
    pub url: Secret,
    /// The schema the tables live in; created if missing.
    pub schema: String,
    /// Most connections the store opens for reads (the writer and the listener have their own).
    pub pool_size: u32,
    /// Longest a statement may run before the server cancels it.
    pub statement_timeout: Duration,
    /// Longest a connection (or a pooled one) is waited for.
    pub connect_timeout: Duration,
    /// Whether `open` applies pending migrations (the service does). Operator tools open
    /// without: a tool of a newer build must not migrate a schema under a running service.
    pub migrate: bool,
}

impl PostgresConfig {
    /// Defaults for everything but where to connect.
    pub fn new(url: Secret) -> PostgresConfig {
        PostgresConfig {
            url,
            schema: "public".into(),
            pool_size: 8,
            statement_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            migrate: true,
        }
    }
}

/// Whether `name` can be a schema here: a plain lower-case identifier, so it never needs
/// quoting rules and names the same schema in every statement.
pub fn valid_schema(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 63
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Replaces the URL's password wherever it appears in a message.
#[derive(Clone)]
struct Scrubber {
    /// The password as written in the URL and decoded; empty when there is none.
    forms: Arc<Vec<Zeroizing<String>>>,
}

impl Scrubber {
    fn new(url: &str) -> Scrubber {
        let mut forms = Vec::new();
        if let Ok(parsed) = url::Url::parse(url) {
            if let Some(raw) = parsed.password().filter(|p| !p.is_empty()) {
                forms.push(Zeroizing::new(raw.to_string()));
                let decoded = Zeroizing::new(
                    percent_encoding::percent_decode_str(raw)
                        .decode_utf8_lossy()
                        .into_owned(),
                );
                if decoded.as_str() != raw {
                    forms.push(decoded);
                }
            }
        }
        Scrubber {
            forms: Arc::new(forms),
        }
    }

    fn scrub(&self, message: impl std::fmt::Display) -> String {
        let mut text = message.to_string();
        for form in self.forms.iter() {
            if text.contains(form.as_str()) {
                text = text.replace(form.as_str(), "***");
            }
        }
        text
    }

    fn backend(&self, what: &str) -> impl Fn(sqlx::Error) -> StoreError + '_ {
        let what = what.to_string();
        move |e| StoreError::Backend(self.scrub(format!("{what}: {e}")))
    }
}

/// The connection settings, parsed once; errors never repeat the URL.
fn connect_options(config: &PostgresConfig) -> Result<PgConnectOptions, StoreError> {
    let url = config.url.expose();
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(StoreError::Backend(
            "store.url must be a postgres:// or postgresql:// URL".into(),
        ));
    }
    let scrubber = Scrubber::new(url);
    let options = PgConnectOptions::from_str(url).map_err(|e| {
        StoreError::Backend(
            scrubber.scrub(format!("store.url is not a usable PostgreSQL URL: {e}")),
        )
    })?;
    if !valid_schema(&config.schema) {
        return Err(StoreError::Backend(format!(
            "store.schema {:?} must be a lower-case identifier (a-z, 0-9, _; at most 63 bytes)",
            config.schema
        )));
    }
    let timeout_ms = config.statement_timeout.as_millis().max(1).to_string();
    Ok(options.application_name("fragment-gateway").options([
        ("search_path", config.schema.as_str()),
        ("statement_timeout", timeout_ms.as_str()),
    ]))
}

/// The PostgreSQL event store. `close` (or a drop) lets the writer commit what is queued,
/// then releases every connection.
pub struct PostgresStore {
    schema: String,
    /// Where the store's I/O runs; shut down in the background when the store is dropped.
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    pool: PgPool,
    appends: Mutex<Option<mpsc::Sender<AppendRequest>>>,
    /// The writer task, awaited by `close`.
    writer: Mutex<Option<tokio::task::JoinHandle<()>>>,
    listener: Mutex<Option<tokio::task::JoinHandle<()>>>,
    head: watch::Receiver<u64>,
    /// Moved by imports (the writer and the listener move it for appends).
    head_sender: Arc<watch::Sender<u64>>,
    scrubber: Scrubber,
    closed: tokio::sync::OnceCell<()>,
}

struct AppendRequest {
    stream: String,
    expected: ExpectedVersion,
    events: Vec<EncodedEvent>,
    reply: oneshot::Sender<Result<AppendResult, StoreError>>,
}

struct EncodedEvent {
    event_id: Uuid,
    event_type: String,
    schema_version: u16,
    data: String,
    metadata: EventMetadata,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl PostgresStore {
    /// Connects, creates the schema and runs pending migrations (refusing a database a newer
    /// build migrated), and starts the writer and the listener.
    pub async fn open(config: PostgresConfig) -> Result<PostgresStore, StoreError> {
        let options = connect_options(&config)?;
        let scrubber = Scrubber::new(config.url.expose());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("event-store-pg")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Backend(format!("starting the store's runtime: {e}")))?;
        let handle = runtime.handle().clone();
        let opening = {
            let scrubber = scrubber.clone();
            let config = config.clone();
            handle.spawn(async move { start(options, config, scrubber).await })
        };
        let started = match opening.await {
            Ok(result) => result,
            Err(e) => Err(StoreError::Backend(format!("opening the store: {e}"))),
        };
        let started = match started {
            Ok(started) => started,
            Err(e) => {
                runtime.shutdown_background();
                return Err(e);
            }
        };
        tracing::info!(
            backend = "postgres",
            host = started.host,
            database = started.database,
            schema = config.schema,
            head = *started.head.borrow(),
            "event store opened"
        );
        Ok(PostgresStore {
            schema: config.schema,
            runtime: Some(runtime),
            handle,
            pool: started.pool,
            appends: Mutex::new(Some(started.appends)),
            writer: Mutex::new(Some(started.writer)),
            listener: Mutex::new(Some(started.listener)),
            head: started.head,
            head_sender: started.head_sender,
            scrubber,
            closed: tokio::sync::OnceCell::new(),
        })
    }

    /// Connects and runs pending migrations, then disconnects: `fragment-gateway migrate`.
    /// Returns the versions it applied.
    pub async fn migrate(config: &PostgresConfig) -> Result<Vec<i32>, StoreError> {
        let options = connect_options(config)?;
        let scrubber = Scrubber::new(config.url.expose());
        let mut conn = connect(&options, config.connect_timeout, &scrubber).await?;
        let applied = migrate(&mut conn, &config.schema, &scrubber).await;
        let _ = conn.close().await;
        applied
    }

    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// What the read models' store needs of this one: its pool, on its runtime.
    fn access(&self) -> Access {
        Access {
            pool: self.pool.clone(),
            handle: self.handle.clone(),
            scrubber: self.scrubber.clone(),
        }
    }

    /// Runs `work` on the store's runtime.
    async fn on_runtime<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: std::future::Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        if self.closed.initialized() || self.pool.is_closed() {
            return Err(StoreError::Unavailable("the store is closed".into()));
        }
        match self.handle.spawn(work).await {
            Ok(out) => out,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(StoreError::Unavailable("the store is shutting down".into())),
        }
    }

    async fn fetch(
        &self,
        what: &'static str,
        query: sqlx::query::Query<'static, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let pool = self.pool.clone();
        let scrubber = self.scrubber.clone();
        self.on_runtime(async move {
            let rows = query
                .fetch_all(&pool)
                .await
                .map_err(|e| closed_or(e, scrubber.backend(what)))?;
            rows.iter().map(decode).collect()
        })
        .await
    }
}

/// The store's connections, lent to the read models in the same schema: every statement
/// runs on the store's runtime (the connections belong to it), and its errors are scrubbed
/// of the URL's password like the store's own.
#[derive(Clone)]
pub struct Access {
    pool: PgPool,
    handle: tokio::runtime::Handle,
    scrubber: Scrubber,
}

impl Access {
    /// Runs `work` with the pool on the store's runtime; `what` names it in errors.
    pub async fn run<T, F, Fut>(&self, what: &'static str, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(PgPool) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T, ReadError>> + Send + 'static,
    {
        if self.pool.is_closed() {
            return Err(StoreError::Unavailable("the store is closed".into()));
        }
        let pool = self.pool.clone();
        let scrubber = self.scrubber.clone();
        let task = self.handle.spawn(async move {
            work(pool).await.map_err(|e| match e {
                ReadError::Sql(e) => closed_or(e, |e| {
                    StoreError::Backend(scrubber.scrub(format!("read models: {what}: {e}")))
                }),
                ReadError::Store(e) => e,
            })
        });
        match task.await {
            Ok(out) => out,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(StoreError::Unavailable("the store is shutting down".into())),
        }
    }
}

/// What read-model work on PostgreSQL fails with: a statement, or a decision of its own.
#[derive(Debug)]
pub enum ReadError {
    Sql(sqlx::Error),
    Store(StoreError),
}

impl From<sqlx::Error> for ReadError {
    fn from(e: sqlx::Error) -> ReadError {
        ReadError::Sql(e)
    }
}

impl From<StoreError> for ReadError {
    fn from(e: StoreError) -> ReadError {
        ReadError::Store(e)
    }
}

/// A closed pool reads as "closed", everything else as a backend failure.
fn closed_or(e: sqlx::Error, backend: impl Fn(sqlx::Error) -> StoreError) -> StoreError {
    match e {
        sqlx::Error::PoolClosed => StoreError::Unavailable("the store is closed".into()),
        e => backend(e),
    }
}

struct Started {
    head_sender: Arc<watch::Sender<u64>>,
    pool: PgPool,
    appends: mpsc::Sender<AppendRequest>,
    writer: tokio::task::JoinHandle<()>,
    listener: tokio::task::JoinHandle<()>,
    head: watch::Receiver<u64>,
    host: String,
    database: String,
}

async fn connect(
    options: &PgConnectOptions,
    timeout: Duration,
    scrubber: &Scrubber,
) -> Result<PgConnection, StoreError> {
    match tokio::time::timeout(timeout, PgConnection::connect_with(options)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(StoreError::Unavailable(scrubber.scrub(format!(
            "cannot connect to PostgreSQL at {}:{}: {e}",
            options.get_host(),
            options.get_port()
        )))),
        Err(_) => Err(StoreError::Unavailable(format!(
            "cannot connect to PostgreSQL at {}:{}: no answer within {timeout:?}",
            options.get_host(),
            options.get_port()
        ))),
    }
}

async fn start(
    options: PgConnectOptions,
    config: PostgresConfig,
    scrubber: Scrubber,
) -> Result<Started, StoreError> {
    let mut writer_conn = connect(&options, config.connect_timeout, &scrubber).await?;
    if config.migrate {
        migrate(&mut writer_conn, &config.schema, &scrubber).await?;
    } else {
        check_migrated(&mut writer_conn, &config.schema, &scrubber).await?;
    }
    let head = read_head(&mut writer_conn, &scrubber).await?;
    let pool = PgPoolOptions::new()
        .max_connections(config.pool_size.max(1))
        .acquire_timeout(config.connect_timeout)
        .connect_with(options.clone())
        .await
        .map_err(|e| {
            StoreError::Unavailable(scrubber.scrub(format!("opening the connection pool: {e}")))
        })?;
    let (head_tx, head_rx) = watch::channel(head);
    let head_tx = Arc::new(head_tx);
    let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
    let writer = tokio::spawn(
        Writer {
            conn: Some(writer_conn),
            options: options.clone(),
            connect_timeout: config.connect_timeout,
            head: Arc::clone(&head_tx),
            scrubber: scrubber.clone(),
        }
        .run(rx),
    );
    // The listener's own pool of one: it holds its connection for good, and PgListener
    // reconnects through it.
    let listen_pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(config.connect_timeout)
        .max_lifetime(None)
        .idle_timeout(None)
        .connect_lazy_with(
            options
                .clone()
                .application_name(&format!("{LISTEN_APPLICATION} {}", config.schema)),
        );
    let listener = tokio::spawn(listen(
        listen_pool,
        pool.clone(),
        config.schema.clone(),
        Arc::clone(&head_tx),
        scrubber,
    ));
    Ok(Started {
        head_sender: head_tx,
        pool,
        appends: tx,
        writer,
        listener,
        head: head_rx,
        host: options.get_host().to_string(),
        database: options.get_database().unwrap_or("").to_string(),
    })
}

/// Creates the schema and applies pending migrations, one at a time across processes.
async fn migrate(
    conn: &mut PgConnection,
    schema: &str,
    scrubber: &Scrubber,
) -> Result<Vec<i32>, StoreError> {
    let failed = |what: &'static str| scrubber.backend(what);
    sqlx::query("SELECT pg_advisory_lock($1, hashtext($2))")
        .bind(MIGRATE_LOCK)
        .bind(schema)
        .execute(&mut *conn)
        .await
        .map_err(failed("taking the migration lock"))?;
    let result = apply_migrations(conn, schema, scrubber).await;
    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1, hashtext($2))")
        .bind(MIGRATE_LOCK)
        .bind(schema)
        .execute(&mut *conn)
        .await;
    let applied = result?;
    unlocked.map_err(failed("releasing the migration lock"))?;
    Ok(applied)
}

async fn apply_migrations(
    conn: &mut PgConnection,
    schema: &str,
    scrubber: &Scrubber,
) -> Result<Vec<i32>, StoreError> {
    let failed = |what: &'static str| scrubber.backend(what);
    // The schema name passed `valid_schema`: a plain identifier, safe to put in the text.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
             version    integer     PRIMARY KEY,
             name       text        NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         );"
    )))
    .execute(&mut *conn)
    .await
    .map_err(failed("creating the schema"))?;
    let current: i32 =
        sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
            .fetch_one(&mut *conn)
            .await
            .map_err(failed("reading the schema version"))?;
    let newest = MIGRATIONS.last().map_or(0, |m| m.0);
    if current > newest {
        return Err(StoreError::Backend(format!(
            "schema {schema} is at migration {current}, newer than migration {newest} that this \
             build knows; run a newer fragment-gateway (or restore a backup)"
        )));
    }
    let mut applied = Vec::new();
    for &(version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        let mut tx = conn.begin().await.map_err(failed("starting a migration"))?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql()))
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                StoreError::Backend(scrubber.scrub(format!("migration {version} ({name}): {e}")))
            })?;
        sqlx::query("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)")
            .bind(version)
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(failed("recording a migration"))?;
        tx.commit()
            .await
            .map_err(failed("committing a migration"))?;
        tracing::info!(schema, version, name, "event store migrated");
        applied.push(version);
    }
    Ok(applied)
}

/// Refuses a schema that is not at exactly this build's migration.
async fn check_migrated(
    conn: &mut PgConnection,
    schema: &str,
    scrubber: &Scrubber,
) -> Result<(), StoreError> {
    let exists: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM information_schema.tables \
         WHERE table_schema = $1 AND table_name = 'schema_migrations')",
    )
    .bind(schema)
    .fetch_one(&mut *conn)
    .await
    .map_err(scrubber.backend("reading the schema version"))?;
    let current: i32 = if exists {
        sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
            .fetch_one(&mut *conn)
            .await
            .map_err(scrubber.backend("reading the schema version"))?
    } else {
        0
    };
    let newest = MIGRATIONS.last().map_or(0, |m| m.0);
    match current.cmp(&newest) {
        std::cmp::Ordering::Equal => Ok(()),
        std::cmp::Ordering::Less if current == 0 => Err(StoreError::Backend(format!(
            "schema {schema} holds no event store; check store.url and store.schema, or create \
             it with `fragment-gateway migrate`"
        ))),
        std::cmp::Ordering::Less => Err(StoreError::Backend(format!(
            "schema {schema} is at migration {current}, this build needs {newest}; run \
             `fragment-gateway migrate` first"
        ))),
        std::cmp::Ordering::Greater => Err(StoreError::Backend(format!(
            "schema {schema} is at migration {current}, newer than migration {newest} that this \
             build knows; use a newer fragment-gateway"
        ))),
    }
}

async fn read_head(conn: &mut PgConnection, scrubber: &Scrubber) -> Result<u64, StoreError> {
    let head: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM events")
        .fetch_one(&mut *conn)
        .await
        .map_err(scrubber.backend("reading the head"))?;
    stored_u64("position", head)
}

/// Moves the watch forward only: a late notification or poll never moves it back.
fn advance(head: &watch::Sender<u64>, to: u64) {
    head.send_if_modified(|h| {
        let moved = to > *h;
        if moved {
            *h = to;
        }
        moved
    });
}

/// Follows other processes' commits: notifications while listening, a poll of the head
/// every `POLL_FALLBACK` and right after the listening connection was lost.
async fn listen(
    listen_pool: PgPool,
    pool: PgPool,
    schema: String,
    head: Arc<watch::Sender<u64>>,
    scrubber: Scrubber,
) {
    let prefix = format!("{schema}:");
    let poll = |pool: PgPool, head: Arc<watch::Sender<u64>>| async move {
        if let Ok(h) = sqlx::query_scalar::<_, i64>("SELECT COALESCE(MAX(position), 0) FROM events")
            .fetch_one(&pool)
            .await
        {
            advance(&head, u64::try_from(h).unwrap_or(0));
        }
    };
    let mut ticker = tokio::time::interval(POLL_FALLBACK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut listener: Option<PgListener> = None;
    loop {
        if pool.is_closed() {
            return;
        }
        if listener.is_none() {
            match PgListener::connect_with(&listen_pool).await {
                Ok(mut l) => match l.listen(CHANNEL).await {
                    Ok(()) => {
                        listener = Some(l);
                        // What committed while nobody listened.
                        poll(pool.clone(), Arc::clone(&head)).await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %scrubber.scrub(e), "LISTEN failed; polling the event store head")
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %scrubber.scrub(e), "cannot listen for commits; polling the event store head")
                }
            }
        }
        let Some(l) = listener.as_mut() else {
            ticker.tick().await;
            poll(pool.clone(), Arc::clone(&head)).await;
            continue;
        };
        tokio::select! {
            received = l.try_recv() => match received {
                Ok(Some(notification)) => {
                    if let Some(h) = notification.payload().strip_prefix(&prefix) {
                        if let Ok(h) = h.parse::<u64>() {
                            advance(&head, h);
                        }
                    }
                }
                Ok(None) => {
                    // Reconnected: notifications sent meanwhile are lost.
                    poll(pool.clone(), Arc::clone(&head)).await;
                }
                Err(e) => {
                    tracing::warn!(error = %scrubber.scrub(e), "the event store's listening connection failed; reconnecting");
                    listener = None;
                    ticker.tick().await;
                }
            },
            _ = ticker.tick() => poll(pool.clone(), Arc::clone(&head)).await,
        }
    }
}

/// Owns the write connection; reconnects after a failure, for the next group.
struct Writer {
    conn: Option<PgConnection>,
    options: PgConnectOptions,
    connect_timeout: Duration,
    head: Arc<watch::Sender<u64>>,
    scrubber: Scrubber,
}

impl Writer {
    async fn run(mut self, mut requests: mpsc::Receiver<AppendRequest>) {
        let mut group = Vec::with_capacity(GROUP_LIMIT);
        // `recv` keeps returning queued requests after the senders are gone, so everything
        // accepted before close is still written.
        while let Some(first) = requests.recv().await {
            group.push(first);
            while group.len() < GROUP_LIMIT {
                match requests.try_recv() {
                    Ok(next) => group.push(next),
                    Err(_) => break,
                }
            }
            self.commit_group(std::mem::take(&mut group)).await;
        }
        if let Some(conn) = self.conn.take() {
            let _ = conn.close().await;
        }
        tracing::debug!("event store writer stopped");
    }

    async fn commit_group(&mut self, group: Vec<AppendRequest>) {
        let outcomes = match self.write_group(&group).await {
            Ok(outcomes) => outcomes,
            Err(e) => {
                // Nothing of the group is stored, or we cannot know that it is (a commit whose
                // answer was lost), which callers must treat the same way. The connection is
                // dropped: the next group starts on a fresh one.
                tracing::error!(error = %e, appends = group.len(), "event store group commit failed");
                self.conn = None;
                group
                    .iter()
                    .map(|_| Err(StoreError::Backend(format!("group commit failed: {e}"))))
                    .collect()
            }
        };
        for (request, outcome) in group.into_iter().zip(outcomes) {
            // A caller that gave up waiting dropped its receiver; its append stands anyway.
            let _ = request.reply.send(outcome);
        }
    }

    async fn write_group(
        &mut self,
        group: &[AppendRequest],
    ) -> Result<Vec<Result<AppendResult, StoreError>>, String> {
        if self.conn.is_none() {
            let conn = connect(&self.options, self.connect_timeout, &self.scrubber)
                .await
                .map_err(|e| e.to_string())?;
            self.conn = Some(conn);
        }
        let conn = self.conn.as_mut().expect("connected above");
        let events = group.iter().map(|r| r.events.len()).sum();
        let mut streams = Vec::with_capacity(group.len());
        let mut expected = Vec::with_capacity(group.len());
        let mut counts = Vec::with_capacity(group.len());
        let mut ids = Vec::with_capacity(events);
        let mut types = Vec::with_capacity(events);
        let mut schemas = Vec::with_capacity(events);
        let mut data = Vec::with_capacity(events);
        let mut correlations = Vec::with_capacity(events);
        let mut causations = Vec::with_capacity(events);
        for request in group {
            streams.push(request.stream.as_str());
            expected.push(match request.expected {
                ExpectedVersion::Any => None,
                ExpectedVersion::NoStream => Some(0),
                ExpectedVersion::Exact(v) => Some(i64::try_from(v).unwrap_or(i64::MAX)),
            });
            counts.push(i32::try_from(request.events.len()).unwrap_or(i32::MAX));
            for e in &request.events {
                ids.push(e.event_id);
                types.push(e.event_type.as_str());
                schemas.push(i32::from(e.schema_version));
                data.push(e.data.as_str());
                correlations.push(e.metadata.correlation_id);
                causations.push(e.metadata.causation_id);
            }
        }
        // Outside an explicit transaction the call is its own: one round trip, one commit.
        let rows = sqlx::query(
            "SELECT outcome, version, position, duplicate FROM append_group($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&streams)
        .bind(&expected)
        .bind(&counts)
        .bind(&ids)
        .bind(&types)
        .bind(&schemas)
        .bind(&data)
        .bind(&correlations)
        .bind(&causations)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| self.scrubber.scrub(e))?;
        if rows.len() != group.len() {
            return Err(format!(
                "append_group answered {} rows for {} appends",
                rows.len(),
                group.len()
            ));
        }
        let mut head = None;
        let outcomes = rows
            .iter()
            .zip(group)
            .map(|(row, request)| {
                let outcome: i16 = row.try_get(0).map_err(|e| e.to_string())?;
                let version: Option<i64> = row.try_get(1).map_err(|e| e.to_string())?;
                let position: Option<i64> = row.try_get(2).map_err(|e| e.to_string())?;
                let duplicate: Option<Uuid> = row.try_get(3).map_err(|e| e.to_string())?;
                Ok(match (outcome, version, position, duplicate) {
                    (0, Some(version), Some(position), _) => {
                        let result = AppendResult {
                            version: u64::try_from(version).unwrap_or(0),
                            position: u64::try_from(position).unwrap_or(0),
                        };
                        head = Some(result.position);
                        Ok(result)
                    }
                    (1, Some(actual), _, _) => Err(StoreError::Conflict {
                        stream: request.stream.clone(),
                        expected: request.expected,
                        actual: u64::try_from(actual).unwrap_or(0),
                    }),
                    (2, _, _, Some(id)) => Err(StoreError::DuplicateEventId(id)),
                    other => return Err(format!("append_group answered {other:?}")),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        if let Some(head) = head {
            advance(&self.head, head);
        }
        Ok(outcomes)
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        drop(lock(&self.appends).take());
        if let Some(runtime) = self.runtime.take() {
            // The writer finishes what is queued only if the runtime keeps running; a drop
            // cannot wait for it on an async thread. `close` is the clean way.
            if self.closed.initialized() {
                runtime.shutdown_background();
            } else {
                let pool = self.pool.clone();
                let writer = lock(&self.writer).take();
                let listener = lock(&self.listener).take();
                std::thread::spawn(move || {
                    runtime.block_on(async move {
                        if let Some(writer) = writer {
                            let _ = writer.await;
                        }
                        if let Some(listener) = listener {
                            listener.abort();
                        }
                        pool.close().await;
                    });
                    runtime.shutdown_background();
                });
            }
        }
    }
}

#[async_trait]
impl EventStore for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        if events.is_empty() {
            return Err(StoreError::EmptyAppend);
        }
        let events = events
            .into_iter()
            .map(|event| {
                let data = serde_json::to_string(&event.data).map_err(|e| {
                    StoreError::Backend(format!("event {} data: {e}", event.event_id))
                })?;
                Ok(EncodedEvent {
                    event_id: event.event_id,
                    event_type: event.event_type,
                    schema_version: event.schema_version,
                    data,
                    metadata: event.metadata,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let (reply, answer) = oneshot::channel();
        let request = AppendRequest {
            stream: stream.to_string(),
            expected,
            events,
            reply,
        };
        let writer = lock(&self.appends)
            .clone()
            .ok_or_else(|| StoreError::Unavailable("the store is closed".into()))?;
        writer
            .send(request)
            .await
            .map_err(|_| StoreError::Unavailable("the event store writer has stopped".into()))?;
        drop(writer);
        answer.await.map_err(|_| {
            StoreError::Unavailable("the event store writer stopped before answering".into())
        })?
    }

    async fn read_stream(
        &self,
        stream: &str,
        from_version: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let stream = stream.to_string();
        self.fetch(
            "reading a stream",
            sqlx::query(
                "SELECT position, stream, version, event_id, event_type, schema_version, \
                 data::text, correlation_id, causation_id, recorded_at FROM events \
                 WHERE stream = $1 AND version >= $2 ORDER BY version LIMIT $3",
            )
            .bind(stream)
            .bind(sql_int(from_version))
            .bind(sql_limit(limit)),
        )
        .await
    }

    async fn read_all(&self, after: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.fetch(
            "reading the log",
            sqlx::query(
                "SELECT position, stream, version, event_id, event_type, schema_version, \
                 data::text, correlation_id, causation_id, recorded_at FROM events \
                 WHERE position > $1 ORDER BY position LIMIT $2",
            )
            .bind(sql_int(after))
            .bind(sql_limit(limit)),
        )
        .await
    }

    async fn read_all_decoded(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<events::DecodedEvent>, StoreError> {
        let pool = self.pool.clone();
        let scrubber = self.scrubber.clone();
        self.on_runtime(async move {
            let rows = sqlx::query(
                "SELECT position, stream, event_type, schema_version, data::text, recorded_at \
                 FROM events WHERE position > $1 ORDER BY position LIMIT $2",
            )
            .bind(sql_int(after))
            .bind(sql_limit(limit))
            .fetch_all(&pool)
            .await
            .map_err(|e| closed_or(e, scrubber.backend("reading the log")))?;
            rows.iter()
                .map(|row| {
                    let column = |e: sqlx::Error| {
                        StoreError::Backend(format!("reading an event column: {e}"))
                    };
                    let position: i64 = row.try_get(0).map_err(column)?;
                    let event_type: String = row.try_get(2).map_err(column)?;
                    let schema_version: i32 = row.try_get(3).map_err(column)?;
                    let schema_version = u16::try_from(schema_version)
                        .map_err(|_| corrupt("schema_version", schema_version))?;
                    let data: &str = row.try_get(4).map_err(column)?;
                    Ok(events::DecodedEvent {
                        position: stored_u64("position", position)?,
                        stream: row.try_get(1).map_err(column)?,
                        event: events::Event::decode_str(&event_type, schema_version, data),
                        event_type,
                        recorded_at: row.try_get::<DateTime<Utc>, _>(5).map_err(column)?,
                    })
                })
                .collect()
        })
        .await
    }

    async fn head(&self) -> Result<u64, StoreError> {
        let pool = self.pool.clone();
        let scrubber = self.scrubber.clone();
        self.on_runtime(async move {
            let head: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM events")
                .fetch_one(&pool)
                .await
                .map_err(|e| closed_or(e, scrubber.backend("reading the head")))?;
            stored_u64("position", head)
        })
        .await
    }

    async fn stream_version(&self, stream: &str) -> Result<u64, StoreError> {
        let pool = self.pool.clone();
        let scrubber = self.scrubber.clone();
        let stream = stream.to_string();
        self.on_runtime(async move {
            let version: i64 = sqlx::query_scalar(
                "SELECT COALESCE(MAX(version), 0) FROM events WHERE stream = $1",
            )
            .bind(stream)
            .fetch_one(&pool)
            .await
            .map_err(|e| closed_or(e, scrubber.backend("reading a stream version")))?;
            stored_u64("version", version)
        })
        .await
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
        // The same expression as the index `events_category`, so the index answers it.
        self.fetch(
            "reading a category",
            sqlx::query(
                "SELECT position, stream, version, event_id, event_type, schema_version, \
                 data::text, correlation_id, causation_id, recorded_at FROM events \
                 WHERE split_part(stream, '-', 1) = $1 AND position > $2 \
                 ORDER BY position LIMIT $3",
            )
            .bind(category.to_string())
            .bind(sql_int(after))
            .bind(sql_limit(limit)),
        )
        .await
    }

    fn read_models(&self) -> Result<Arc<dyn crate::readmodel::ReadStore>, StoreError> {
        Ok(Arc::new(crate::readmodel::postgres::PgReadStore::live(
            self.access(),
        )))
    }

    async fn import(&self, events: Vec<RecordedEvent>) -> Result<(), StoreError> {
        let Some(last) = events.last().map(|e| e.position) else {
            return Ok(());
        };
        let pool = self.pool.clone();
        let scrubber = self.scrubber.clone();
        let head = Arc::clone(&self.head_sender);
        self.on_runtime(async move {
            let sql = |e: sqlx::Error| closed_or(e, scrubber.backend("importing events"));
            let mut tx = pool.begin().await.map_err(sql)?;
            // The appends' lock: positions are taken under it, so the head read here stays
            // the head until this commits.
            sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))")
                .bind(APPEND_LOCK)
                .execute(&mut *tx)
                .await
                .map_err(sql)?;
            let at: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM events")
                .fetch_one(&mut *tx)
                .await
                .map_err(sql)?;
            super::check_import(stored_u64("position", at)?, &events)?;
            let streams: Vec<String> = events
                .iter()
                .map(|e| e.stream.clone())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            let mut versions: std::collections::HashMap<String, u64> =
                sqlx::query_as::<_, (String, i64)>(STREAM_VERSIONS)
                    .bind(&streams)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(sql)?
                    .into_iter()
                    .map(|(stream, v)| (stream, u64::try_from(v).unwrap_or(0)))
                    .collect();
            let mut positions = Vec::with_capacity(events.len());
            let mut names = Vec::with_capacity(events.len());
            let mut numbers = Vec::with_capacity(events.len());
            let mut ids = Vec::with_capacity(events.len());
            let mut types = Vec::with_capacity(events.len());
            let mut schemas = Vec::with_capacity(events.len());
            let mut data = Vec::with_capacity(events.len());
            let mut correlations = Vec::with_capacity(events.len());
            let mut causations = Vec::with_capacity(events.len());
            let mut times = Vec::with_capacity(events.len());
            for e in &events {
                let version = versions.entry(e.stream.clone()).or_insert(0);
                if e.version != *version + 1 {
                    return Err(StoreError::Backend(format!(
                        "an import must continue each stream: event at position {} is version \
                         {} of `{}`, which is at version {version}",
                        e.position, e.version, e.stream
                    )));
                }
                *version = e.version;
                positions.push(sql_int(e.position));
                names.push(e.stream.clone());
                numbers.push(sql_int(e.version));
                ids.push(e.event_id);
                types.push(e.event_type.clone());
                schemas.push(i32::from(e.schema_version));
                data.push(serde_json::to_string(&e.data).map_err(|err| {
                    StoreError::Backend(format!("event {} data: {err}", e.event_id))
                })?);
                correlations.push(e.metadata.correlation_id);
                causations.push(e.metadata.causation_id);
                times.push(e.recorded_at);
            }
            sqlx::query(
                "INSERT INTO events (position, stream, version, event_id, event_type, \
                 schema_version, data, correlation_id, causation_id, recorded_at) \
                 SELECT p, s, v, i, t, sv, d::json, c, ca, r FROM unnest($1::bigint[], \
                 $2::text[], $3::bigint[], $4::uuid[], $5::text[], $6::integer[], $7::text[], \
                 $8::uuid[], $9::uuid[], $10::timestamptz[]) AS x(p, s, v, i, t, sv, d, c, ca, r)",
            )
            .bind(&positions)
            .bind(&names)
            .bind(&numbers)
            .bind(&ids)
            .bind(&types)
            .bind(&schemas)
            .bind(&data)
            .bind(&correlations)
            .bind(&causations)
            .bind(&times)
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                match e.as_database_error().map(|d| d.is_unique_violation()) {
                    Some(true) => StoreError::Backend(
                        "an import repeats an event id the log already holds".into(),
                    ),
                    _ => sql(e),
                }
            })?;
            sqlx::query("SELECT pg_notify($1, current_schema() || ':' || $2)")
                .bind(CHANNEL)
                .bind(last.to_string())
                .execute(&mut *tx)
                .await
                .map_err(sql)?;
            tx.commit().await.map_err(sql)?;
            advance(&head, last);
            Ok(())
        })
        .await
    }

    async fn close(&self) -> Result<(), StoreError> {
        self.closed
            .get_or_init(|| async {
                drop(lock(&self.appends).take());
                let writer = lock(&self.writer).take();
                let listener = lock(&self.listener).take();
                let pool = self.pool.clone();
                let closing = self.handle.spawn(async move {
                    if let Some(writer) = writer {
                        let _ = writer.await;
                    }
                    if let Some(listener) = listener {
                        listener.abort();
                        let _ = listener.await;
                    }
                    pool.close().await;
                });
                let _ = closing.await;
            })
            .await;
        Ok(())
    }
}

fn decode(row: &PgRow) -> Result<RecordedEvent, StoreError> {
    let column = |e: sqlx::Error| StoreError::Backend(format!("reading an event column: {e}"));
    let position: i64 = row.try_get(0).map_err(column)?;
    let version: i64 = row.try_get(2).map_err(column)?;
    let schema_version: i32 = row.try_get(5).map_err(column)?;
    let data: String = row.try_get(6).map_err(column)?;
    Ok(RecordedEvent {
        position: stored_u64("position", position)?,
        stream: row.try_get(1).map_err(column)?,
        version: stored_u64("version", version)?,
        event_id: row.try_get(3).map_err(column)?,
        event_type: row.try_get(4).map_err(column)?,
        schema_version: u16::try_from(schema_version)
            .map_err(|_| corrupt("schema_version", schema_version))?,
        data: serde_json::from_str(&data).map_err(|e| corrupt("data", e))?,
        metadata: EventMetadata {
            correlation_id: row.try_get(7).map_err(column)?,
            causation_id: row.try_get(8).map_err(column)?,
        },
        recorded_at: row.try_get::<DateTime<Utc>, _>(9).map_err(column)?,
    })
}

fn stored_u64(column: &str, value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| corrupt(column, value))
}

fn corrupt(column: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("stored event has an unreadable {column}: {detail}"))
}

/// Bounds from callers are u64; PostgreSQL's bigint is i64. Past i64::MAX no row can match.
fn sql_int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_plain_identifiers() {
        for good in ["public", "fg", "_x1", "t_0123456789abcdef"] {
            assert!(valid_schema(good), "{good}");
        }
        for bad in ["", "Public", "1x", "a-b", "a;drop", "a b", &"x".repeat(64)] {
            assert!(!valid_schema(bad), "{bad}");
        }
    }

    #[test]
    fn the_password_is_scrubbed_in_every_form() {
        let scrubber = Scrubber::new("postgres://fg:s%3Acret%40x@db.example:5432/fg");
        let message = scrubber.scrub("failed for s%3Acret%40x and s:cret@x");
        assert_eq!(message, "failed for *** and ***");
        assert!(Scrubber::new("postgres://fg@db/fg").forms.is_empty());
    }

    #[test]
    fn a_url_error_does_not_repeat_the_url() {
        let mut config = PostgresConfig::new(Secret::from("mysql://fg:hunter2@db/fg"));
        let Err(e) = connect_options(&config) else {
            panic!("a mysql URL was taken")
        };
        assert!(!e.to_string().contains("hunter2"), "{e}");
        config.url = Secret::from("postgres://fg:hunter2@db:notaport/fg");
        let Err(e) = connect_options(&config) else {
            panic!("a bad port was taken")
        };
        assert!(!e.to_string().contains("hunter2"), "{e}");
        config.url = Secret::from("postgres://fg:hunter2@db/fg");
        config.schema = "Bad-Name".into();
        let Err(e) = connect_options(&config) else {
            panic!("a bad schema was taken")
        };
        assert!(e.to_string().contains("store.schema"), "{e}");
    }

    #[test]
    fn the_lock_ids_in_the_function_match_the_constants() {
        for function in [MIGRATION_1, MIGRATION_3] {
            assert!(function.contains(&format!("pg_advisory_xact_lock({APPEND_LOCK},")));
            assert!(function.contains(&format!("pg_notify('{CHANNEL}'")));
        }
    }
}
