//! The read models in the embedded store's file: a table per kind of row, each row its key
//! columns (what lists filter and sort on, indexed) and the whole view as JSON text, plus one
//! state row with the position and the singletons.
//!
//! Design, and why:
//! - **Same file, own connections.** The tables live beside the log, so a copy of the file is
//!   a consistent copy of both. The projection runner writes through a connection of its own
//!   (SQLite serialises it with the event writer's transactions; each waits at most
//!   `BUSY_TIMEOUT`), with `synchronous=NORMAL`: a power cut may lose the last commits of the
//!   read models, never tear one, and the position lost with them is folded again from the
//!   log, which is synced at every append.
//! - **Reads off the async threads**, on a small pool of read-only connections, as the
//!   event store's reads are.
//! - **Closed with the event store.** The store that made this one shares a flag with it: once
//!   the event store is closing, this one refuses work too, so no connection of a closed
//!   store writes the file another process may have opened since.
//! - **JSON documents with key columns.** A view has twenty fields of unsigned amounts, times
//!   and optional values; stored as the serde form of the same struct, it reads back exactly
//!   (`u64` nanoton included) and a new field needs no migration, while the columns lists
//!   filter and sort on are real, indexed columns.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use projections::{HistoryItem, OrderView, RequestView, WalletCommission};
use rusqlite::types::Value as Sql;
use rusqlite::{params, params_from_iter, Connection, OpenFlags, OptionalExtension};
use tokio::sync::Semaphore;
use uuid::Uuid;

use super::{
    Commit, OrderFilter, Page, ReadStore, RequestFilter, RowKeys, RowSet, StoredState, TableSet,
};
use crate::store::StoreError;
use crate::webhooks::outbox::{self, Attempt, Delivery, NewDelivery, Outbox, Outcome};
use chrono::{DateTime, Utc};

/// Read connections kept, and the most reads at once.
const READERS: usize = 4;

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The tables of one set; `{p}` is the set's prefix. The live set is created by the event
/// store's format migration 2 from this same text (`store::sqlite`), a rebuild set on demand.
pub const TABLES: &str = "
CREATE TABLE IF NOT EXISTS {p}_orders (
    order_id            TEXT    PRIMARY KEY,
    status              TEXT    NOT NULL,
    mode                TEXT    NOT NULL,
    wallet              TEXT,
    delivery_confirmed  INTEGER,
    updated_at_position INTEGER NOT NULL,
    doc                 TEXT    NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS {p}_orders_status ON {p}_orders (status, order_id);
CREATE INDEX IF NOT EXISTS {p}_orders_wallet ON {p}_orders (wallet, order_id) WHERE wallet IS NOT NULL;
CREATE INDEX IF NOT EXISTS {p}_orders_delivery ON {p}_orders (delivery_confirmed, order_id);
CREATE TABLE IF NOT EXISTS {p}_requests (
    request_id          TEXT    PRIMARY KEY,
    order_id            TEXT    NOT NULL,
    status              TEXT    NOT NULL,
    wallet              TEXT    NOT NULL,
    paid_position       INTEGER NOT NULL,
    updated_at_position INTEGER NOT NULL,
    doc                 TEXT    NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS {p}_requests_wallet ON {p}_requests (wallet, paid_position);
CREATE INDEX IF NOT EXISTS {p}_requests_status ON {p}_requests (status, request_id);
CREATE TABLE IF NOT EXISTS {p}_wallets (
    wallet              TEXT    PRIMARY KEY,
    debt                INTEGER NOT NULL,
    updated_at_position INTEGER NOT NULL,
    doc                 TEXT    NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS {p}_wallets_debt ON {p}_wallets (debt DESC, wallet);
CREATE TABLE IF NOT EXISTS {p}_state (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    position INTEGER NOT NULL,
    version  INTEGER NOT NULL,
    doc      TEXT    NOT NULL
) STRICT;
INSERT OR IGNORE INTO {p}_state (id, position, version, doc) VALUES (1, 0, 0, '{}');
";

/// The DDL of a set.
pub fn tables(set: TableSet) -> String {
    TABLES.replace("{p}", set.prefix())
}

pub struct SqliteReadStore {
    shared: Arc<Shared>,
    set: TableSet,
    /// Table names of the set.
    t: Names,
}

/// What the stores of one file share: the connections, and the event store's closing.
pub struct Shared {
    path: PathBuf,
    /// Set by the event store when it closes.
    closed: Arc<AtomicBool>,
    writer: Mutex<Option<Connection>>,
    readers: Mutex<Vec<Connection>>,
    permits: Semaphore,
}

#[derive(Clone)]
struct Names {
    orders: String,
    requests: String,
    wallets: String,
    state: String,
}

impl Names {
    fn of(set: TableSet) -> Names {
        let p = set.prefix();
        Names {
            orders: format!("{p}_orders"),
            requests: format!("{p}_requests"),
            wallets: format!("{p}_wallets"),
            state: format!("{p}_state"),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn db(what: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |e| StoreError::Backend(format!("read models: {what}: {e}"))
}

fn json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Backend(format!("read models: encoding a row: {e}")))
}

fn parse<T: serde::de::DeserializeOwned>(table: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Backend(format!("read models: an unreadable row in {table}: {e}")))
}

fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn uint(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl Shared {
    /// The read models' connections to the event store's file at `path`.
    pub fn new(path: &Path, closed: Arc<AtomicBool>) -> Arc<Shared> {
        Arc::new(Shared {
            path: path.to_path_buf(),
            closed,
            writer: Mutex::new(None),
            readers: Mutex::new(Vec::new()),
            permits: Semaphore::new(READERS),
        })
    }

    fn check_open(&self) -> Result<(), StoreError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("the store is closed".into()));
        }
        Ok(())
    }

    fn open(&self, read_only: bool) -> Result<Connection, StoreError> {
        let at = |e: rusqlite::Error| {
            StoreError::Backend(format!("read models: opening {}: {e}", self.path.display()))
        };
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(at)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(at)?;
        if read_only {
            conn.pragma_update(None, "query_only", true).map_err(at)?;
        } else {
            conn.pragma_update(None, "synchronous", "NORMAL")
                .map_err(at)?;
        }
        Ok(conn)
    }
}

impl SqliteReadStore {
    /// The live set of the file `shared` opens; its tables exist (the event store's format
    /// migration made them).
    pub fn live(shared: Arc<Shared>) -> SqliteReadStore {
        SqliteReadStore {
            shared,
            set: TableSet::Live,
            t: Names::of(TableSet::Live),
        }
    }

    /// Runs `work` on the write connection, off the async threads.
    async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &Names) -> Result<T, StoreError> + Send + 'static,
    {
        self.shared.check_open()?;
        let shared = Arc::clone(&self.shared);
        let names = self.t.clone();
        blocking(move || {
            let mut writer = lock(&shared.writer);
            shared.check_open()?;
            if writer.is_none() {
                *writer = Some(shared.open(false)?);
            }
            work(writer.as_mut().expect("opened"), &names)
        })
        .await
    }

    /// Runs `read` on a pooled read connection, off the async threads.
    async fn read<T, F>(&self, read: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &Names) -> Result<T, StoreError> + Send + 'static,
    {
        self.shared.check_open()?;
        let _permit = self
            .shared
            .permits
            .acquire()
            .await
            .map_err(|_| StoreError::Unavailable("the store is closed".into()))?;
        let shared = Arc::clone(&self.shared);
        let names = self.t.clone();
        blocking(move || {
            let conn = match lock(&shared.readers).pop() {
                Some(conn) => conn,
                None => shared.open(true)?,
            };
            let out = read(&conn, &names);
            if !shared.closed.load(Ordering::SeqCst) {
                lock(&shared.readers).push(conn);
            }
            out
        })
        .await
    }
}

async fn blocking<T, F>(work: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(out) => out,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(StoreError::Unavailable(
            "the runtime is shutting down".into(),
        )),
    }
}

fn state(conn: &Connection, t: &Names) -> Result<StoredState, StoreError> {
    let (position, version, doc): (i64, i64, String) = conn
        .prepare_cached(&format!(
            "SELECT position, version, doc FROM {} WHERE id = 1",
            t.state
        ))
        .and_then(|mut s| s.query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))))
        .map_err(db("reading the state"))?;
    Ok(StoredState {
        position: uint(position),
        version: u32::try_from(version).unwrap_or(0),
        summary: if version == 0 {
            Default::default()
        } else {
            parse(&t.state, &doc)?
        },
    })
}

fn upsert_order(conn: &Connection, t: &Names, o: &OrderView) -> Result<(), StoreError> {
    conn.prepare_cached(&format!(
        "INSERT INTO {} (order_id, status, mode, wallet, delivery_confirmed, updated_at_position, doc) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
         ON CONFLICT (order_id) DO UPDATE SET status = excluded.status, mode = excluded.mode, \
         wallet = excluded.wallet, delivery_confirmed = excluded.delivery_confirmed, \
         updated_at_position = excluded.updated_at_position, doc = excluded.doc",
        t.orders
    ))
    .and_then(|mut s| {
        s.execute(params![
            o.order_id.to_string(),
            o.status,
            o.mode.as_str(),
            o.wallet_raw,
            o.delivery_confirmed,
            int(o.updated_at_position),
            json(o).map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?,
        ])
    })
    .map_err(db("writing an order"))?;
    Ok(())
}

fn upsert_request(conn: &Connection, t: &Names, r: &RequestView) -> Result<(), StoreError> {
    conn.prepare_cached(&format!(
        "INSERT INTO {} (request_id, order_id, status, wallet, paid_position, updated_at_position, doc) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
         ON CONFLICT (request_id) DO UPDATE SET order_id = excluded.order_id, \
         status = excluded.status, wallet = excluded.wallet, paid_position = excluded.paid_position, \
         updated_at_position = excluded.updated_at_position, doc = excluded.doc",
        t.requests
    ))
    .and_then(|mut s| {
        s.execute(params![
            r.request_id.to_string(),
            r.order_id.to_string(),
            r.status.as_str(),
            r.wallet_address,
            int(r.paid_position),
            int(r.updated_at_position),
            json(r).map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?,
        ])
    })
    .map_err(db("writing a request"))?;
    Ok(())
}

fn upsert_wallet(
    conn: &Connection,
    t: &Names,
    raw: &str,
    w: &WalletCommission,
) -> Result<(), StoreError> {
    conn.prepare_cached(&format!(
        "INSERT INTO {} (wallet, debt, updated_at_position, doc) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (wallet) DO UPDATE SET debt = excluded.debt, \
         updated_at_position = excluded.updated_at_position, doc = excluded.doc",
        t.wallets
    ))
    .and_then(|mut s| {
        s.execute(params![
            raw,
            int(w.debt_nanoton.as_u64()),
            int(w.updated_at_position),
            json(w).map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?,
        ])
    })
    .map_err(db("writing a wallet"))?;
    Ok(())
}

/// `(key, doc)` of the rows whose `key` is in `keys`, a chunk at a time (SQLite caps the
/// parameters of a statement).
fn docs_in<T: serde::de::DeserializeOwned>(
    conn: &Connection,
    table: &str,
    key: &str,
    keys: Vec<String>,
) -> Result<Vec<(String, T)>, StoreError> {
    let mut out = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(500) {
        let marks = vec!["?"; chunk.len()].join(", ");
        let sql = format!("SELECT {key}, doc FROM {table} WHERE {key} IN ({marks})");
        let mut stmt = conn.prepare_cached(&sql).map_err(db("reading rows"))?;
        let rows = stmt
            .query_map(params_from_iter(chunk.iter()), |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(db("reading rows"))?;
        for r in rows {
            let (k, doc) = r.map_err(db("reading rows"))?;
            out.push((k, parse(table, &doc)?));
        }
    }
    Ok(out)
}

fn docs<T: serde::de::DeserializeOwned>(
    conn: &Connection,
    table: &str,
    sql: &str,
    args: Vec<Sql>,
) -> Result<Vec<T>, StoreError> {
    let mut stmt = conn.prepare_cached(sql).map_err(db("listing"))?;
    let rows = stmt
        .query_map(params_from_iter(args), |r| r.get::<_, String>(0))
        .map_err(db("listing"))?;
    rows.map(|doc| parse(table, &doc.map_err(db("listing"))?))
        .collect()
}

fn count(conn: &Connection, sql: &str, args: Vec<Sql>) -> Result<u64, StoreError> {
    conn.prepare_cached(sql)
        .and_then(|mut s| s.query_row(params_from_iter(args), |r| r.get::<_, i64>(0)))
        .map(uint)
        .map_err(db("counting"))
}

/// A `WHERE` clause of filters on columns and its arguments.
#[derive(Default)]
struct Where {
    clauses: Vec<String>,
    args: Vec<Sql>,
}

impl Where {
    fn any_of(&mut self, column: &str, values: Option<Vec<String>>) {
        if let Some(values) = values {
            let marks = vec!["?"; values.len()].join(", ");
            if values.is_empty() {
                self.clauses.push("0".into());
            } else {
                self.clauses.push(format!("{column} IN ({marks})"));
            }
            self.args.extend(values.into_iter().map(Sql::Text));
        }
    }

    fn sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.clauses.join(" AND "))
        }
    }
}

#[async_trait]
impl ReadStore for SqliteReadStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn set(&self) -> TableSet {
        self.set
    }

    fn outbox(&self) -> Arc<dyn Outbox> {
        Arc::new(SqliteOutbox(SqliteReadStore::live(Arc::clone(
            &self.shared,
        ))))
    }

    async fn service_key(&self, name: &str) -> Result<super::ServiceKey, StoreError> {
        let name = name.to_string();
        let fresh = super::new_service_key();
        self.write(move |conn, _| {
            store_key_synced(
                conn,
                "INSERT OR IGNORE INTO service_keys (name, key) VALUES (?1, ?2)",
                &name,
                &fresh,
            )?;
            let stored: Vec<u8> = conn
                .query_row(
                    "SELECT key FROM service_keys WHERE name = ?1",
                    params![name],
                    |row| row.get(0),
                )
                .map_err(db("reading a service key"))?;
            super::into_key(stored)
        })
        .await
    }

    async fn put_service_key(&self, name: &str, key: &super::ServiceKey) -> Result<(), StoreError> {
        let name = name.to_string();
        let key = key.clone();
        self.write(move |conn, _| {
            store_key_synced(
                conn,
                "INSERT OR REPLACE INTO service_keys (name, key) VALUES (?1, ?2)",
                &name,
                &key,
            )
        })
        .await
    }

    async fn other_set(&self, set: TableSet) -> Result<Arc<dyn ReadStore>, StoreError> {
        let ddl = tables(set);
        self.write(move |conn, _| conn.execute_batch(&ddl).map_err(db("creating tables")))
            .await?;
        Ok(Arc::new(SqliteReadStore {
            shared: Arc::clone(&self.shared),
            set,
            t: Names::of(set),
        }))
    }

    async fn drop_set(&self) -> Result<(), StoreError> {
        if self.set == TableSet::Live {
            return Err(StoreError::Backend(
                "the live read models are never dropped".into(),
            ));
        }
        self.write(|conn, t| {
            conn.execute_batch(&format!(
                "DROP TABLE IF EXISTS {}; DROP TABLE IF EXISTS {}; DROP TABLE IF EXISTS {}; DROP TABLE IF EXISTS {};",
                t.orders, t.requests, t.wallets, t.state
            ))
            .map_err(db("dropping tables"))
        })
        .await
    }

    async fn state(&self) -> Result<StoredState, StoreError> {
        self.read(state).await
    }

    async fn reset(&self, version: u32) -> Result<(), StoreError> {
        self.write(move |conn, t| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(db("starting a reset"))?;
            tx.execute_batch(&format!(
                "DELETE FROM {}; DELETE FROM {}; DELETE FROM {};",
                t.orders, t.requests, t.wallets
            ))
            .map_err(db("emptying the tables"))?;
            tx.execute(
                &format!(
                    "UPDATE {} SET position = 0, version = ?1, doc = ?2 WHERE id = 1",
                    t.state
                ),
                params![i64::from(version), json(&projections::Summary::default())?],
            )
            .map_err(db("resetting the state"))?;
            tx.commit().map_err(db("committing a reset"))
        })
        .await
    }

    async fn commit(&self, c: Commit) -> Result<(), StoreError> {
        self.write(move |conn, t| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(db("starting a commit"))?;
            let moved = tx
                .execute(
                    &format!(
                        "UPDATE {} SET position = ?1, doc = ?2 WHERE id = 1 AND position = ?3",
                        t.state
                    ),
                    params![int(c.to), json(&c.summary)?, int(c.from)],
                )
                .map_err(db("moving the position"))?;
            if moved != 1 {
                let actual = state(&tx, t)?.position;
                return Err(StoreError::ReadModelsMoved {
                    expected: c.from,
                    actual,
                });
            }
            for o in &c.orders {
                upsert_order(&tx, t, o)?;
            }
            for r in &c.requests {
                upsert_request(&tx, t, r)?;
            }
            for (raw, w) in &c.wallets {
                upsert_wallet(&tx, t, raw, w)?;
            }
            tx.commit().map_err(db("committing"))
        })
        .await
    }

    async fn adopt(&self, from: TableSet, expected: u64) -> Result<(), StoreError> {
        let f = Names::of(from);
        self.write(move |conn, t| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(db("starting to adopt"))?;
            let actual = state(&tx, t)?.position;
            if actual != expected {
                return Err(StoreError::ReadModelsMoved { expected, actual });
            }
            tx.execute_batch(&format!(
                "DELETE FROM {to_o}; DELETE FROM {to_r}; DELETE FROM {to_w};
                 INSERT INTO {to_o} (order_id, status, mode, wallet, delivery_confirmed, updated_at_position, doc)
                     SELECT order_id, status, mode, wallet, delivery_confirmed, updated_at_position, doc FROM {f_o};
                 INSERT INTO {to_r} (request_id, order_id, status, wallet, paid_position, updated_at_position, doc)
                     SELECT request_id, order_id, status, wallet, paid_position, updated_at_position, doc FROM {f_r};
                 INSERT INTO {to_w} (wallet, debt, updated_at_position, doc)
                     SELECT wallet, debt, updated_at_position, doc FROM {f_w};
                 UPDATE {to_s} SET position = (SELECT position FROM {f_s} WHERE id = 1),
                     version = (SELECT version FROM {f_s} WHERE id = 1),
                     doc = (SELECT doc FROM {f_s} WHERE id = 1) WHERE id = 1;",
                to_o = t.orders,
                to_r = t.requests,
                to_w = t.wallets,
                to_s = t.state,
                f_o = f.orders,
                f_r = f.requests,
                f_w = f.wallets,
                f_s = f.state,
            ))
            .map_err(db("copying the rebuilt tables"))?;
            tx.commit().map_err(db("committing the rebuilt tables"))
        })
        .await
    }

    async fn rows(&self, keys: RowKeys) -> Result<RowSet, StoreError> {
        self.read(move |conn, t| {
            let ids = |keys: &std::collections::BTreeSet<Uuid>| {
                keys.iter().map(Uuid::to_string).collect()
            };
            Ok(RowSet {
                orders: docs_in(conn, &t.orders, "order_id", ids(&keys.orders))?
                    .into_iter()
                    .map(|(_, doc)| doc)
                    .collect(),
                requests: docs_in(conn, &t.requests, "request_id", ids(&keys.requests))?
                    .into_iter()
                    .map(|(_, doc)| doc)
                    .collect(),
                wallets: docs_in(
                    conn,
                    &t.wallets,
                    "wallet",
                    keys.wallets.into_iter().collect(),
                )?,
            })
        })
        .await
    }

    async fn in_flight(&self) -> Result<Vec<RequestView>, StoreError> {
        self.read(|conn, t| {
            docs(
                conn,
                &t.requests,
                &format!(
                    "SELECT doc FROM {} WHERE status IN ('queued', 'processing')",
                    t.requests
                ),
                vec![],
            )
        })
        .await
    }

    async fn order(&self, id: Uuid) -> Result<Option<OrderView>, StoreError> {
        self.read(move |conn, t| {
            let doc: Option<String> = conn
                .prepare_cached(&format!("SELECT doc FROM {} WHERE order_id = ?1", t.orders))
                .and_then(|mut s| s.query_row([id.to_string()], |r| r.get(0)).optional())
                .map_err(db("reading an order"))?;
            doc.map(|d| parse(&t.orders, &d)).transpose()
        })
        .await
    }

    async fn request(&self, id: Uuid) -> Result<Option<RequestView>, StoreError> {
        self.read(move |conn, t| {
            let doc: Option<String> = conn
                .prepare_cached(&format!(
                    "SELECT doc FROM {} WHERE request_id = ?1",
                    t.requests
                ))
                .and_then(|mut s| s.query_row([id.to_string()], |r| r.get(0)).optional())
                .map_err(db("reading a request"))?;
            doc.map(|d| parse(&t.requests, &d)).transpose()
        })
        .await
    }

    async fn wallet(&self, raw: &str) -> Result<Option<WalletCommission>, StoreError> {
        let raw = raw.to_string();
        self.read(move |conn, t| {
            let doc: Option<String> = conn
                .prepare_cached(&format!("SELECT doc FROM {} WHERE wallet = ?1", t.wallets))
                .and_then(|mut s| s.query_row([raw], |r| r.get(0)).optional())
                .map_err(db("reading a wallet"))?;
            doc.map(|d| parse(&t.wallets, &d)).transpose()
        })
        .await
    }

    async fn history(
        &self,
        raw: &str,
        offset: u64,
        limit: u64,
    ) -> Result<Page<HistoryItem>, StoreError> {
        let raw = raw.to_string();
        self.read(move |conn, t| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT r.doc, o.doc FROM {r} AS r JOIN {o} AS o ON o.order_id = r.order_id \
                     WHERE r.wallet = ?1 ORDER BY r.paid_position DESC LIMIT ?2 OFFSET ?3",
                    r = t.requests,
                    o = t.orders
                ))
                .map_err(db("reading a history"))?;
            let rows = stmt
                .query_map(params![raw, int(limit), int(offset)], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })
                .map_err(db("reading a history"))?;
            let mut items = vec![];
            for row in rows {
                let (request, order) = row.map_err(db("reading a history"))?;
                let request: RequestView = parse(&t.requests, &request)?;
                let order: OrderView = parse(&t.orders, &order)?;
                items.push(HistoryItem::new(&order, &request));
            }
            let total = count(
                conn,
                &format!("SELECT COUNT(*) FROM {} WHERE wallet = ?1", t.requests),
                vec![Sql::Text(raw)],
            )?;
            Ok(Page { items, total })
        })
        .await
    }

    async fn orders(
        &self,
        f: OrderFilter,
        offset: u64,
        limit: u64,
    ) -> Result<Page<OrderView>, StoreError> {
        self.read(move |conn, t| {
            let mut w = Where::default();
            w.any_of("status", f.statuses);
            w.any_of(
                "mode",
                f.modes
                    .map(|m| m.iter().map(|m| m.as_str().to_string()).collect()),
            );
            if let Some(wallet) = f.wallet {
                w.clauses.push("wallet = ?".into());
                w.args.push(Sql::Text(wallet));
            }
            match f.delivery_confirmed {
                None => {}
                Some(None) => w.clauses.push("delivery_confirmed IS NULL".into()),
                Some(Some(b)) => {
                    w.clauses.push("delivery_confirmed = ?".into());
                    w.args.push(Sql::Integer(i64::from(b)));
                }
            }
            let total = count(
                conn,
                &format!("SELECT COUNT(*) FROM {} {}", t.orders, w.sql()),
                w.args.clone(),
            )?;
            if let Some(before) = f.before {
                w.clauses.push("order_id < ?".into());
                w.args.push(Sql::Text(before.to_string()));
            }
            let filter = w.sql();
            let mut args = w.args;
            args.extend([Sql::Integer(int(limit)), Sql::Integer(int(offset))]);
            let items = docs(
                conn,
                &t.orders,
                &format!(
                    "SELECT doc FROM {} {filter} ORDER BY order_id DESC LIMIT ? OFFSET ?",
                    t.orders
                ),
                args,
            )?;
            Ok(Page { items, total })
        })
        .await
    }

    async fn requests(
        &self,
        f: RequestFilter,
        offset: u64,
        limit: u64,
    ) -> Result<Page<RequestView>, StoreError> {
        self.read(move |conn, t| {
            let mut w = Where::default();
            w.any_of(
                "status",
                f.statuses
                    .map(|s| s.iter().map(|s| s.as_str().to_string()).collect()),
            );
            if let Some(wallet) = f.wallet {
                w.clauses.push("wallet = ?".into());
                w.args.push(Sql::Text(wallet));
            }
            let filter = w.sql();
            let total = count(
                conn,
                &format!("SELECT COUNT(*) FROM {} {filter}", t.requests),
                w.args.clone(),
            )?;
            let mut args = w.args;
            args.extend([Sql::Integer(int(limit)), Sql::Integer(int(offset))]);
            let items = docs(
                conn,
                &t.requests,
                &format!(
                    "SELECT doc FROM {} {filter} ORDER BY request_id DESC LIMIT ? OFFSET ?",
                    t.requests
                ),
                args,
            )?;
            Ok(Page { items, total })
        })
        .await
    }

    async fn wallets(
        &self,
        owing: bool,
        offset: u64,
        limit: u64,
    ) -> Result<Page<(String, WalletCommission)>, StoreError> {
        self.read(move |conn, t| {
            let filter = if owing { "WHERE debt > 0" } else { "" };
            let total = count(conn, &format!("SELECT COUNT(*) FROM {} {filter}", t.wallets), vec![])?;
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT wallet, doc FROM {} {filter} ORDER BY debt DESC, wallet LIMIT ?1 OFFSET ?2",
                    t.wallets
                ))
                .map_err(db("listing wallets"))?;
            let rows = stmt
                .query_map(params![int(limit), int(offset)], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })
                .map_err(db("listing wallets"))?;
            let mut items = vec![];
            for row in rows {
                let (raw, doc) = row.map_err(db("listing wallets"))?;
                items.push((raw, parse(&t.wallets, &doc)?));
            }
            Ok(Page { items, total })
        })
        .await
    }

    async fn scan_orders(
        &self,
        after: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<OrderView>, StoreError> {
        self.read(move |conn, t| {
            docs(
                conn,
                &t.orders,
                &format!(
                    "SELECT doc FROM {} WHERE order_id > ?1 ORDER BY order_id LIMIT ?2",
                    t.orders
                ),
                vec![
                    Sql::Text(after.map(|a| a.to_string()).unwrap_or_default()),
                    Sql::Integer(int(limit)),
                ],
            )
        })
        .await
    }

    async fn scan_requests(
        &self,
        after: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<RequestView>, StoreError> {
        self.read(move |conn, t| {
            docs(
                conn,
                &t.requests,
                &format!(
                    "SELECT doc FROM {} WHERE request_id > ?1 ORDER BY request_id LIMIT ?2",
                    t.requests
                ),
                vec![
                    Sql::Text(after.map(|a| a.to_string()).unwrap_or_default()),
                    Sql::Integer(int(limit)),
                ],
            )
        })
        .await
    }

    async fn scan_wallets(
        &self,
        after: Option<String>,
        limit: u64,
    ) -> Result<Vec<(String, WalletCommission)>, StoreError> {
        self.read(move |conn, t| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT wallet, doc FROM {} WHERE wallet > ?1 ORDER BY wallet LIMIT ?2",
                    t.wallets
                ))
                .map_err(db("scanning wallets"))?;
            let rows = stmt
                .query_map(params![after.unwrap_or_default(), int(limit)], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })
                .map_err(db("scanning wallets"))?;
            let mut out = vec![];
            for row in rows {
                let (raw, doc) = row.map_err(db("scanning wallets"))?;
                out.push((raw, parse(&t.wallets, &doc)?));
            }
            Ok(out)
        })
        .await
    }
}

/// Runs `insert` (parameters: the key's name, the key) in a commit that syncs. The read
/// models' connection commits without a sync of its own (the log's position is what makes
/// them durable); a key must survive a power cut like the events hashed with it.
fn store_key_synced(
    conn: &Connection,
    insert: &str,
    name: &str,
    key: &super::ServiceKey,
) -> Result<(), StoreError> {
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(db("syncing a service key"))?;
    let stored = conn
        .execute(insert, params![name, &key[..]])
        .map_err(db("storing a service key"));
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(db("syncing a service key"))?;
    stored.map(|_| ())
}

/// The webhook outbox in the embedded store's file, on the read models' connections.
pub struct SqliteOutbox(SqliteReadStore);

const DELIVERY_COLUMNS: &str = "event_id, position, order_id, kind, url, body, created_ms, \
    status, attempts, next_attempt_ms, last_error, delivered_ms";

fn delivery_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Delivery> {
    let uuid = |i: usize| -> rusqlite::Result<Uuid> {
        let text: String = r.get(i)?;
        Uuid::parse_str(&text).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
        })
    };
    Ok(Delivery {
        event_id: uuid(0)?,
        position: uint(r.get(1)?),
        order_id: uuid(2)?,
        kind: r.get(3)?,
        url: r.get(4)?,
        body: r.get(5)?,
        created_at: outbox::time(r.get(6)?),
        status: r.get(7)?,
        attempts: u32::try_from(r.get::<_, i64>(8)?).unwrap_or(u32::MAX),
        next_attempt_at: outbox::time(r.get(9)?),
        last_error: r.get(10)?,
        delivered_at: r.get::<_, Option<i64>>(11)?.map(outbox::time),
    })
}

#[async_trait]
impl Outbox for SqliteOutbox {
    async fn position(&self) -> Result<u64, StoreError> {
        self.0
            .read(|conn, _| {
                conn.query_row("SELECT position FROM webhook_state WHERE id = 1", [], |r| {
                    r.get::<_, i64>(0)
                })
                .map(uint)
                .map_err(db("reading the outbox position"))
            })
            .await
    }

    async fn add(&self, from: u64, to: u64, rows: Vec<NewDelivery>) -> Result<(), StoreError> {
        self.0
            .write(move |conn, _| {
                let tx = conn
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                    .map_err(db("starting an outbox batch"))?;
                let at: i64 = tx
                    .query_row("SELECT position FROM webhook_state WHERE id = 1", [], |r| {
                        r.get(0)
                    })
                    .map_err(db("reading the outbox position"))?;
                if uint(at) != from {
                    return Err(StoreError::ReadModelsMoved {
                        expected: from,
                        actual: uint(at),
                    });
                }
                {
                    let mut insert = tx
                        .prepare_cached(
                            "INSERT OR IGNORE INTO webhook_deliveries (event_id, position, order_id, \
                             kind, url, body, created_ms, status, attempts, next_attempt_ms, \
                             claimed_until_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', 0, ?7, 0)",
                        )
                        .map_err(db("adding deliveries"))?;
                    for d in rows {
                        insert
                            .execute(params![
                                d.event_id.to_string(),
                                int(d.position),
                                d.order_id.to_string(),
                                d.kind,
                                d.url,
                                d.body,
                                outbox::ms(d.created_at),
                            ])
                            .map_err(db("adding deliveries"))?;
                    }
                }
                tx.execute(
                    "UPDATE webhook_state SET position = ?1 WHERE id = 1",
                    params![int(to)],
                )
                .map_err(db("moving the outbox position"))?;
                tx.commit().map_err(db("committing an outbox batch"))
            })
            .await
    }

    async fn claim(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u64,
    ) -> Result<Vec<Delivery>, StoreError> {
        let until = outbox::ms(now) + i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2);
        self.0
            .write(move |conn, _| {
                let tx = conn
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                    .map_err(db("claiming deliveries"))?;
                let due: Vec<Delivery> = {
                    let mut stmt = tx
                        .prepare_cached(&format!(
                            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d \
                             WHERE status = 'pending' AND next_attempt_ms <= ?1 \
                             AND claimed_until_ms <= ?1 AND NOT EXISTS (\
                                 SELECT 1 FROM webhook_deliveries e WHERE e.order_id = d.order_id \
                                 AND e.status = 'pending' AND e.position < d.position) \
                             ORDER BY position LIMIT ?2"
                        ))
                        .map_err(db("claiming deliveries"))?;
                    let rows = stmt
                        .query_map(params![outbox::ms(now), int(limit)], delivery_row)
                        .map_err(db("claiming deliveries"))?;
                    rows.collect::<Result<_, _>>()
                        .map_err(db("claiming deliveries"))?
                };
                for d in &due {
                    tx.execute(
                        "UPDATE webhook_deliveries SET claimed_until_ms = ?1 WHERE event_id = ?2",
                        params![until, d.event_id.to_string()],
                    )
                    .map_err(db("claiming deliveries"))?;
                }
                tx.commit().map_err(db("claiming deliveries"))?;
                Ok(due)
            })
            .await
    }

    async fn record(&self, attempt: Attempt, outcome: Outcome) -> Result<(), StoreError> {
        self.0
            .write(move |conn, _| {
                let tx = conn
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                    .map_err(db("recording an attempt"))?;
                tx.execute(
                    "INSERT OR REPLACE INTO webhook_attempts (event_id, attempt, at_ms, status_code, \
                     error, duration_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        attempt.event_id.to_string(),
                        i64::from(attempt.attempt),
                        outbox::ms(attempt.at),
                        attempt.status_code.map(i64::from),
                        attempt.error,
                        int(attempt.duration_ms),
                    ],
                )
                .map_err(db("recording an attempt"))?;
                let (status, next, delivered) = outbox::outcome_columns(outcome, attempt.at);
                tx.execute(
                    "UPDATE webhook_deliveries SET status = ?1, attempts = ?2, next_attempt_ms = ?3, \
                     delivered_ms = ?4, last_error = ?5, claimed_until_ms = 0 WHERE event_id = ?6",
                    params![
                        status,
                        i64::from(attempt.attempt),
                        next,
                        delivered,
                        attempt.error,
                        attempt.event_id.to_string(),
                    ],
                )
                .map_err(db("recording an attempt"))?;
                tx.commit().map_err(db("recording an attempt"))
            })
            .await
    }

    async fn list(
        &self,
        status: Option<String>,
        order_id: Option<Uuid>,
        offset: u64,
        limit: u64,
    ) -> Result<Page<Delivery>, StoreError> {
        self.0
            .read(move |conn, _| {
                let mut w = Where::default();
                w.any_of("status", status.map(|s| vec![s]));
                if let Some(id) = order_id {
                    w.clauses.push("order_id = ?".into());
                    w.args.push(Sql::Text(id.to_string()));
                }
                let filter = w.sql();
                let total = count(
                    conn,
                    &format!("SELECT COUNT(*) FROM webhook_deliveries {filter}"),
                    w.args.clone(),
                )?;
                let mut args = w.args;
                args.extend([Sql::Integer(int(limit)), Sql::Integer(int(offset))]);
                let mut stmt = conn
                    .prepare_cached(&format!(
                        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries {filter} \
                         ORDER BY position DESC LIMIT ? OFFSET ?"
                    ))
                    .map_err(db("listing deliveries"))?;
                let items = stmt
                    .query_map(params_from_iter(args), delivery_row)
                    .map_err(db("listing deliveries"))?
                    .collect::<Result<_, _>>()
                    .map_err(db("listing deliveries"))?;
                Ok(Page { items, total })
            })
            .await
    }

    async fn get(&self, event_id: Uuid) -> Result<Option<Delivery>, StoreError> {
        self.0
            .read(move |conn, _| {
                conn.query_row(
                    &format!(
                        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE event_id = ?1"
                    ),
                    params![event_id.to_string()],
                    delivery_row,
                )
                .optional()
                .map_err(db("reading a delivery"))
            })
            .await
    }

    async fn attempts(&self, event_ids: Vec<Uuid>) -> Result<Vec<Attempt>, StoreError> {
        self.0
            .read(move |conn, _| {
                let mut out = vec![];
                for chunk in event_ids.chunks(500) {
                    let marks = vec!["?"; chunk.len()].join(", ");
                    let mut stmt = conn
                        .prepare_cached(&format!(
                            "SELECT event_id, attempt, at_ms, status_code, error, duration_ms \
                             FROM webhook_attempts WHERE event_id IN ({marks}) \
                             ORDER BY event_id, attempt"
                        ))
                        .map_err(db("reading attempts"))?;
                    let ids = chunk.iter().map(Uuid::to_string);
                    let rows = stmt
                        .query_map(params_from_iter(ids), |r| {
                            let id: String = r.get(0)?;
                            Ok(Attempt {
                                event_id: Uuid::parse_str(&id).unwrap_or_default(),
                                attempt: u32::try_from(r.get::<_, i64>(1)?).unwrap_or(u32::MAX),
                                at: outbox::time(r.get(2)?),
                                status_code: r
                                    .get::<_, Option<i64>>(3)?
                                    .and_then(|c| u16::try_from(c).ok()),
                                error: r.get(4)?,
                                duration_ms: uint(r.get(5)?),
                            })
                        })
                        .map_err(db("reading attempts"))?;
                    for row in rows {
                        out.push(row.map_err(db("reading attempts"))?);
                    }
                }
                Ok(out)
            })
            .await
    }

    async fn redeliver(&self, event_id: Uuid, now: DateTime<Utc>) -> Result<bool, StoreError> {
        self.0
            .write(move |conn, _| {
                conn.execute(
                    "UPDATE webhook_deliveries SET status = 'pending', next_attempt_ms = ?1, \
                     claimed_until_ms = 0 WHERE event_id = ?2",
                    params![outbox::ms(now), event_id.to_string()],
                )
                .map(|n| n > 0)
                .map_err(db("redelivering"))
            })
            .await
    }
}
