//! The webhook outbox: one row per delivery owed, derived from the event log (each row is
//! keyed by the event it reports, so deriving it twice adds nothing), with its attempts. It
//! lives in the log's database beside the read models, with its own position: a rebuild or a
//! reset of the read models never derives (so never sends) a delivery again.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::readmodel::Page;
use crate::store::StoreError;

/// The tables, for the embedded store's format 4 and PostgreSQL's migration 5. The position
/// starts at the log's head when the tables are made: an upgraded gateway reports what
/// happens from then on, not its whole past.
pub const SQLITE_TABLES: &str = "
CREATE TABLE webhook_deliveries (
    event_id        TEXT    PRIMARY KEY,
    position        INTEGER NOT NULL,
    order_id        TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    url             TEXT    NOT NULL,
    body            TEXT    NOT NULL,
    created_ms      INTEGER NOT NULL,
    status          TEXT    NOT NULL,
    attempts        INTEGER NOT NULL,
    next_attempt_ms INTEGER NOT NULL,
    claimed_until_ms INTEGER NOT NULL,
    last_error      TEXT,
    delivered_ms    INTEGER
) STRICT;
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_ms);
CREATE INDEX webhook_deliveries_order ON webhook_deliveries (order_id, position);
CREATE INDEX webhook_deliveries_position ON webhook_deliveries (position);
CREATE TABLE webhook_attempts (
    event_id    TEXT    NOT NULL,
    attempt     INTEGER NOT NULL,
    at_ms       INTEGER NOT NULL,
    status_code INTEGER,
    error       TEXT,
    duration_ms INTEGER NOT NULL,
    PRIMARY KEY (event_id, attempt)
) STRICT;
CREATE TABLE webhook_state (id INTEGER PRIMARY KEY CHECK (id = 1), position INTEGER NOT NULL) STRICT;
INSERT INTO webhook_state SELECT 1, COALESCE(MAX(position), 0) FROM events;
";

pub const POSTGRES_TABLES: &str = r#"
CREATE TABLE webhook_deliveries (
    event_id         uuid    PRIMARY KEY,
    position         bigint  NOT NULL,
    order_id         uuid    NOT NULL,
    kind             text    NOT NULL,
    url              text    NOT NULL,
    body             text    NOT NULL,
    created_ms       bigint  NOT NULL,
    status           text    NOT NULL,
    attempts         integer NOT NULL,
    next_attempt_ms  bigint  NOT NULL,
    claimed_until_ms bigint  NOT NULL,
    last_error       text,
    delivered_ms     bigint
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_ms);
CREATE INDEX webhook_deliveries_order ON webhook_deliveries (order_id, position);
CREATE INDEX webhook_deliveries_position ON webhook_deliveries (position);
CREATE TABLE webhook_attempts (
    event_id    uuid    NOT NULL,
    attempt     integer NOT NULL,
    at_ms       bigint  NOT NULL,
    status_code integer,
    error       text,
    duration_ms bigint  NOT NULL,
    PRIMARY KEY (event_id, attempt)
);
CREATE TABLE webhook_state (id integer PRIMARY KEY CHECK (id = 1), position bigint NOT NULL);
INSERT INTO webhook_state SELECT 1, COALESCE(MAX(position), 0) FROM events;
"#;

/// A delivery owed, as the deriver adds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewDelivery {
    /// The event it reports: receivers deduplicate on it.
    pub event_id: Uuid,
    pub position: u64,
    pub order_id: Uuid,
    /// `order.created`, `order.paid`, …
    pub kind: String,
    pub url: String,
    /// The JSON body, as every attempt sends it.
    pub body: String,
    pub created_at: DateTime<Utc>,
}

/// A delivery and where it stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Delivery {
    pub event_id: Uuid,
    pub position: u64,
    pub order_id: Uuid,
    pub kind: String,
    pub url: String,
    #[serde(skip)]
    pub body: String,
    pub created_at: DateTime<Utc>,
    /// `pending`, `delivered`, or `failed` (given up after the retry window).
    pub status: String,
    pub attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// One try.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Attempt {
    pub event_id: Uuid,
    /// From 1.
    pub attempt: u32,
    pub at: DateTime<Utc>,
    /// The receiver's HTTP status, if it answered.
    pub status_code: Option<u16>,
    /// Why it did not count as delivered.
    pub error: Option<String>,
    pub duration_ms: u64,
}

/// What an attempt leaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    RetryAt(DateTime<Utc>),
    /// The retry window is over.
    GaveUp,
}

#[async_trait]
pub trait Outbox: Send + Sync + 'static {
    /// How far the log was derived.
    async fn position(&self) -> Result<u64, StoreError>;

    /// Adds the deliveries of the log from `from` (the position, checked:
    /// `StoreError::ReadModelsMoved` otherwise) to `to`, in one transaction; a delivery
    /// already there (its event id) is left as it is.
    async fn add(&self, from: u64, to: u64, rows: Vec<NewDelivery>) -> Result<(), StoreError>;

    /// Takes up to `limit` deliveries due at `now`, the oldest pending one of each order only
    /// (deliveries of one order go in order), for `lease` (another sender skips them
    /// meanwhile).
    async fn claim(
        &self,
        now: DateTime<Utc>,
        lease: std::time::Duration,
        limit: u64,
    ) -> Result<Vec<Delivery>, StoreError>;

    /// Records an attempt and its outcome, releasing the claim.
    async fn record(&self, attempt: Attempt, outcome: Outcome) -> Result<(), StoreError>;

    /// Deliveries, newest first; `status` and `order_id` filter.
    async fn list(
        &self,
        status: Option<String>,
        order_id: Option<Uuid>,
        offset: u64,
        limit: u64,
    ) -> Result<Page<Delivery>, StoreError>;

    async fn get(&self, event_id: Uuid) -> Result<Option<Delivery>, StoreError>;

    /// The attempts of these deliveries, by delivery, first first (one query for a page).
    async fn attempts(&self, event_ids: Vec<Uuid>) -> Result<Vec<Attempt>, StoreError>;

    /// Makes a delivery pending again, due at `now` (its attempts stay). False if unknown.
    async fn redeliver(&self, event_id: Uuid, now: DateTime<Utc>) -> Result<bool, StoreError>;
}

pub fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// The status column and its outcome's other columns.
pub fn outcome_columns(outcome: Outcome, now: DateTime<Utc>) -> (&'static str, i64, Option<i64>) {
    match outcome {
        Outcome::Delivered => ("delivered", ms(now), Some(ms(now))),
        Outcome::RetryAt(at) => ("pending", ms(at), None),
        Outcome::GaveUp => ("failed", ms(now), None),
    }
}
