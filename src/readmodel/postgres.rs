//! The read models in the PostgreSQL store's schema: the same tables as the embedded store's
//! (key columns, indexed, and the whole view as JSON), written and read through the event
//! store's own connections and runtime (`store::postgres::Access`).
//!
//! Design, and why:
//! - **One statement per table per batch.** A batch's changed rows go up as arrays and are
//!   upserted with `INSERT … SELECT FROM unnest(…) ON CONFLICT … DO UPDATE`: a batch of a
//!   thousand events is a handful of round trips, in one transaction with the position.
//! - **Byte order for text keys** (`COLLATE "C"`): scans are compared key by key in Rust
//!   (`readmodel::compare`), which orders strings by bytes; the database's own collation
//!   might not.
//! - **`json`, not `jsonb`**: the document is only ever read back whole, and `json` stores
//!   the text as given, without the parse `jsonb` costs on every write.

use std::sync::Arc;

use async_trait::async_trait;
use projections::{HistoryItem, OrderView, RequestView, Summary, WalletCommission};
use sqlx::{PgPool, QueryBuilder, Row};
use uuid::Uuid;

use super::{
    Commit, OrderFilter, Page, ReadStore, RequestFilter, RowKeys, RowSet, StoredState, TableSet,
};
use crate::store::postgres::{Access, ReadError};
use crate::store::StoreError;
use crate::webhooks::outbox::{self, Attempt, Delivery, NewDelivery, Outbox, Outcome};
use chrono::{DateTime, Utc};

/// The tables of one set; `{p}` is the set's prefix. The live set is created by migration 2
/// (`store::postgres`) from this same text, a rebuild set on demand: never edit what a
/// shipped migration made, add a migration and change this text to match.
pub const TABLES: &str = r#"
CREATE TABLE IF NOT EXISTS {p}_orders (
    order_id            uuid    PRIMARY KEY,
    status              text    NOT NULL,
    mode                text    NOT NULL,
    wallet              text    COLLATE "C",
    delivery_confirmed  boolean,
    updated_at_position bigint  NOT NULL,
    doc                 json    NOT NULL
);
CREATE INDEX IF NOT EXISTS {p}_orders_status ON {p}_orders (status, order_id);
CREATE INDEX IF NOT EXISTS {p}_orders_wallet ON {p}_orders (wallet, order_id) WHERE wallet IS NOT NULL;
CREATE INDEX IF NOT EXISTS {p}_orders_delivery ON {p}_orders (delivery_confirmed, order_id);
CREATE TABLE IF NOT EXISTS {p}_requests (
    request_id          uuid    PRIMARY KEY,
    order_id            uuid    NOT NULL,
    status              text    NOT NULL,
    wallet              text    COLLATE "C" NOT NULL,
    paid_position       bigint  NOT NULL,
    updated_at_position bigint  NOT NULL,
    doc                 json    NOT NULL
);
CREATE INDEX IF NOT EXISTS {p}_requests_wallet ON {p}_requests (wallet, paid_position);
CREATE INDEX IF NOT EXISTS {p}_requests_status ON {p}_requests (status, request_id);
CREATE TABLE IF NOT EXISTS {p}_wallets (
    wallet              text    COLLATE "C" PRIMARY KEY,
    debt                bigint  NOT NULL,
    updated_at_position bigint  NOT NULL,
    doc                 json    NOT NULL
);
CREATE INDEX IF NOT EXISTS {p}_wallets_debt ON {p}_wallets (debt DESC, wallet);
CREATE TABLE IF NOT EXISTS {p}_state (
    id       integer PRIMARY KEY CHECK (id = 1),
    position bigint  NOT NULL,
    version  integer NOT NULL,
    doc      json    NOT NULL
);
INSERT INTO {p}_state (id, position, version, doc) VALUES (1, 0, 0, '{}') ON CONFLICT DO NOTHING;
"#;

/// The DDL of a set.
pub fn tables(set: TableSet) -> String {
    TABLES.replace("{p}", set.prefix())
}

pub struct PgReadStore {
    access: Access,
    set: TableSet,
    t: Arc<Names>,
}

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

fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn uint(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn json<T: serde::Serialize>(value: &T) -> Result<String, ReadError> {
    serde_json::to_string(value).map_err(|e| {
        ReadError::Store(StoreError::Backend(format!(
            "read models: encoding a row: {e}"
        )))
    })
}

fn parse<T: serde::de::DeserializeOwned>(table: &str, text: &str) -> Result<T, ReadError> {
    serde_json::from_str(text).map_err(|e| {
        ReadError::Store(StoreError::Backend(format!(
            "read models: an unreadable row in {table}: {e}"
        )))
    })
}

fn sql(text: String) -> sqlx::AssertSqlSafe<String> {
    // Table names come from `Names` (fixed prefixes), never from input.
    sqlx::AssertSqlSafe(text)
}

async fn state(conn: impl sqlx::PgExecutor<'_>, t: &Names) -> Result<StoredState, ReadError> {
    let row = sqlx::query(sql(format!(
        "SELECT position, version, doc::text FROM {} WHERE id = 1",
        t.state
    )))
    .fetch_one(conn)
    .await?;
    let (position, version, doc): (i64, i32, String) =
        (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
    Ok(StoredState {
        position: uint(position),
        version: u32::try_from(version).unwrap_or(0),
        summary: if version == 0 {
            Summary::default()
        } else {
            parse(&t.state, &doc)?
        },
    })
}

/// `doc` of each row a query returns.
async fn docs<T: serde::de::DeserializeOwned>(
    pool: &PgPool,
    table: &str,
    query: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
) -> Result<Vec<T>, ReadError> {
    let rows = query.fetch_all(pool).await?;
    rows.iter()
        .map(|r| parse(table, &r.try_get::<String, _>(0)?))
        .collect()
}

impl PgReadStore {
    /// The live set of the schema `access` works in; its tables exist (migration 2).
    pub fn live(access: Access) -> PgReadStore {
        PgReadStore {
            access,
            set: TableSet::Live,
            t: Arc::new(Names::of(TableSet::Live)),
        }
    }

    async fn run<T, F, Fut>(&self, what: &'static str, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(PgPool, Arc<Names>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T, ReadError>> + Send + 'static,
    {
        let t = Arc::clone(&self.t);
        self.access.run(what, move |pool| work(pool, t)).await
    }
}

/// A `WHERE` clause of filters on columns, built with bound values.
fn push_filters(q: &mut QueryBuilder<sqlx::Postgres>, filters: Vec<Filter>) {
    for (i, f) in filters.into_iter().enumerate() {
        q.push(if i == 0 { " WHERE " } else { " AND " });
        match f {
            Filter::AnyOf(column, values) => {
                q.push(column).push(" = ANY(").push_bind(values).push(")");
            }
            Filter::Equals(column, value) => {
                q.push(column).push(" = ").push_bind(value);
            }
            Filter::IsNull(column) => {
                q.push(column).push(" IS NULL");
            }
            Filter::Bool(column, value) => {
                q.push(column).push(" = ").push_bind(value);
            }
            Filter::Below(column, value) => {
                q.push(column).push(" < ").push_bind(value);
            }
            Filter::Id(column, value) => {
                q.push(column).push(" = ").push_bind(value);
            }
        }
    }
}

enum Filter {
    AnyOf(&'static str, Vec<String>),
    Equals(&'static str, String),
    IsNull(&'static str),
    Bool(&'static str, bool),
    Below(&'static str, Uuid),
    Id(&'static str, Uuid),
}

/// A filtered page: the rows' documents, newest first by `key`, and the count of all (the
/// `page_filter`, a cursor, narrows the page only).
async fn page<T: serde::de::DeserializeOwned>(
    pool: &PgPool,
    table: &str,
    key: &str,
    filters: impl Fn() -> Vec<Filter>,
    page_filter: Option<Filter>,
    offset: u64,
    limit: u64,
) -> Result<Page<T>, ReadError> {
    let mut count = QueryBuilder::new(format!("SELECT COUNT(*) FROM {table}"));
    push_filters(&mut count, filters());
    let total: i64 = count.build_query_scalar().fetch_one(pool).await?;
    let mut select = QueryBuilder::new(format!("SELECT doc::text FROM {table}"));
    push_filters(
        &mut select,
        filters().into_iter().chain(page_filter).collect(),
    );
    select
        .push(format!(" ORDER BY {key} DESC LIMIT "))
        .push_bind(int(limit))
        .push(" OFFSET ")
        .push_bind(int(offset));
    let rows = select.build().fetch_all(pool).await?;
    let items = rows
        .iter()
        .map(|r| parse(table, &r.try_get::<String, _>(0)?))
        .collect::<Result<_, _>>()?;
    Ok(Page {
        items,
        total: uint(total),
    })
}

#[async_trait]
impl ReadStore for PgReadStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn set(&self) -> TableSet {
        self.set
    }

    fn outbox(&self) -> Arc<dyn Outbox> {
        Arc::new(PgOutbox(self.access.clone()))
    }

    async fn service_key(&self, name: &str) -> Result<super::ServiceKey, StoreError> {
        let name = name.to_string();
        let fresh = super::new_service_key();
        let stored: Vec<u8> = self
            .run("reading a service key", move |pool, _| async move {
                // Inserted unless there is one already; then the stored one is read, so two
                // instances asking at once both get the one that was committed first.
                sqlx::query(
                    "INSERT INTO service_keys (name, key) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                )
                .bind(&name)
                .bind(&fresh[..])
                .execute(&pool)
                .await?;
                let key: Vec<u8> =
                    sqlx::query_scalar("SELECT key FROM service_keys WHERE name = $1")
                        .bind(&name)
                        .fetch_one(&pool)
                        .await?;
                Ok(key)
            })
            .await?;
        super::into_key(stored)
    }

    async fn put_service_key(&self, name: &str, key: &super::ServiceKey) -> Result<(), StoreError> {
        let name = name.to_string();
        let key = key.clone();
        self.run("storing a service key", move |pool, _| async move {
            sqlx::query(
                "INSERT INTO service_keys (name, key) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET key = EXCLUDED.key",
            )
            .bind(&name)
            .bind(&key[..])
            .execute(&pool)
            .await?;
            Ok(())
        })
        .await
    }

    async fn other_set(&self, set: TableSet) -> Result<Arc<dyn ReadStore>, StoreError> {
        let ddl = tables(set);
        self.run("creating tables", move |pool, _| async move {
            sqlx::raw_sql(sql(ddl)).execute(&pool).await?;
            Ok(())
        })
        .await?;
        Ok(Arc::new(PgReadStore {
            access: self.access.clone(),
            set,
            t: Arc::new(Names::of(set)),
        }))
    }

    async fn drop_set(&self) -> Result<(), StoreError> {
        if self.set == TableSet::Live {
            return Err(StoreError::Backend(
                "the live read models are never dropped".into(),
            ));
        }
        self.run("dropping tables", |pool, t| async move {
            sqlx::raw_sql(sql(format!(
                "DROP TABLE IF EXISTS {}, {}, {}, {}",
                t.orders, t.requests, t.wallets, t.state
            )))
            .execute(&pool)
            .await?;
            Ok(())
        })
        .await
    }

    async fn state(&self) -> Result<StoredState, StoreError> {
        self.run("reading the state", |pool, t| async move {
            state(&pool, &t).await
        })
        .await
    }

    async fn reset(&self, version: u32) -> Result<(), StoreError> {
        self.run("resetting", move |pool, t| async move {
            let mut tx = pool.begin().await?;
            sqlx::raw_sql(sql(format!(
                "TRUNCATE {}, {}, {}",
                t.orders, t.requests, t.wallets
            )))
            .execute(&mut *tx)
            .await?;
            sqlx::query(sql(format!(
                "UPDATE {} SET position = 0, version = $1, doc = $2::json WHERE id = 1",
                t.state
            )))
            .bind(i32::try_from(version).unwrap_or(i32::MAX))
            .bind(json(&Summary::default())?)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn commit(&self, c: Commit) -> Result<(), StoreError> {
        self.run("committing a batch", move |pool, t| async move {
            let mut tx = pool.begin().await?;
            let moved = sqlx::query(sql(format!(
                "UPDATE {} SET position = $1, doc = $2::json WHERE id = 1 AND position = $3",
                t.state
            )))
            .bind(int(c.to))
            .bind(json(&c.summary)?)
            .bind(int(c.from))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if moved != 1 {
                let actual = state(&mut *tx, &t).await?.position;
                return Err(ReadError::Store(StoreError::ReadModelsMoved {
                    expected: c.from,
                    actual,
                }));
            }
            if !c.orders.is_empty() {
                let mut ids = vec![];
                let mut statuses = vec![];
                let mut modes = vec![];
                let mut wallets = vec![];
                let mut delivery = vec![];
                let mut updated = vec![];
                let mut docs = vec![];
                for o in &c.orders {
                    ids.push(o.order_id);
                    statuses.push(o.status.clone());
                    modes.push(o.mode.as_str().to_string());
                    wallets.push(o.wallet_raw.clone());
                    delivery.push(o.delivery_confirmed);
                    updated.push(int(o.updated_at_position));
                    docs.push(json(o)?);
                }
                sqlx::query(sql(format!(
                    "INSERT INTO {} (order_id, status, mode, wallet, delivery_confirmed, updated_at_position, doc) \
                     SELECT o, s, m, w, d, u, doc::json FROM unnest($1::uuid[], $2::text[], $3::text[], \
                     $4::text[], $5::boolean[], $6::bigint[], $7::text[]) AS x(o, s, m, w, d, u, doc) \
                     ON CONFLICT (order_id) DO UPDATE SET status = EXCLUDED.status, mode = EXCLUDED.mode, \
                     wallet = EXCLUDED.wallet, delivery_confirmed = EXCLUDED.delivery_confirmed, \
                     updated_at_position = EXCLUDED.updated_at_position, doc = EXCLUDED.doc",
                    t.orders
                )))
                .bind(ids)
                .bind(statuses)
                .bind(modes)
                .bind(wallets)
                .bind(delivery)
                .bind(updated)
                .bind(docs)
                .execute(&mut *tx)
                .await?;
            }
            if !c.requests.is_empty() {
                let mut ids = vec![];
                let mut orders = vec![];
                let mut statuses = vec![];
                let mut wallets = vec![];
                let mut paid = vec![];
                let mut updated = vec![];
                let mut docs = vec![];
                for r in &c.requests {
                    ids.push(r.request_id);
                    orders.push(r.order_id);
                    statuses.push(r.status.as_str().to_string());
                    wallets.push(r.wallet_address.clone());
                    paid.push(int(r.paid_position));
                    updated.push(int(r.updated_at_position));
                    docs.push(json(r)?);
                }
                sqlx::query(sql(format!(
                    "INSERT INTO {} (request_id, order_id, status, wallet, paid_position, updated_at_position, doc) \
                     SELECT r, o, s, w, p, u, doc::json FROM unnest($1::uuid[], $2::uuid[], $3::text[], \
                     $4::text[], $5::bigint[], $6::bigint[], $7::text[]) AS x(r, o, s, w, p, u, doc) \
                     ON CONFLICT (request_id) DO UPDATE SET order_id = EXCLUDED.order_id, \
                     status = EXCLUDED.status, wallet = EXCLUDED.wallet, paid_position = EXCLUDED.paid_position, \
                     updated_at_position = EXCLUDED.updated_at_position, doc = EXCLUDED.doc",
                    t.requests
                )))
                .bind(ids)
                .bind(orders)
                .bind(statuses)
                .bind(wallets)
                .bind(paid)
                .bind(updated)
                .bind(docs)
                .execute(&mut *tx)
                .await?;
            }
            if !c.wallets.is_empty() {
                let mut keys = vec![];
                let mut debts = vec![];
                let mut updated = vec![];
                let mut docs = vec![];
                for (raw, w) in &c.wallets {
                    keys.push(raw.clone());
                    debts.push(int(w.debt_nanoton.as_u64()));
                    updated.push(int(w.updated_at_position));
                    docs.push(json(w)?);
                }
                sqlx::query(sql(format!(
                    "INSERT INTO {} (wallet, debt, updated_at_position, doc) \
                     SELECT w, d, u, doc::json FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[]) \
                     AS x(w, d, u, doc) \
                     ON CONFLICT (wallet) DO UPDATE SET debt = EXCLUDED.debt, \
                     updated_at_position = EXCLUDED.updated_at_position, doc = EXCLUDED.doc",
                    t.wallets
                )))
                .bind(keys)
                .bind(debts)
                .bind(updated)
                .bind(docs)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn adopt(&self, from: TableSet, expected: u64) -> Result<(), StoreError> {
        let f = Names::of(from);
        self.run("adopting the rebuilt tables", move |pool, t| async move {
            let mut tx = pool.begin().await?;
            // Lock the state row first: a writer of the live tables (another process) waits.
            let actual: i64 = sqlx::query_scalar(sql(format!(
                "SELECT position FROM {} WHERE id = 1 FOR UPDATE",
                t.state
            )))
            .fetch_one(&mut *tx)
            .await?;
            if uint(actual) != expected {
                return Err(ReadError::Store(StoreError::ReadModelsMoved {
                    expected,
                    actual: uint(actual),
                }));
            }
            sqlx::raw_sql(sql(format!(
                "TRUNCATE {to_o}, {to_r}, {to_w};
                 INSERT INTO {to_o} (order_id, status, mode, wallet, delivery_confirmed, updated_at_position, doc)
                     SELECT order_id, status, mode, wallet, delivery_confirmed, updated_at_position, doc FROM {f_o};
                 INSERT INTO {to_r} (request_id, order_id, status, wallet, paid_position, updated_at_position, doc)
                     SELECT request_id, order_id, status, wallet, paid_position, updated_at_position, doc FROM {f_r};
                 INSERT INTO {to_w} (wallet, debt, updated_at_position, doc)
                     SELECT wallet, debt, updated_at_position, doc FROM {f_w};
                 UPDATE {to_s} AS s SET position = f.position, version = f.version, doc = f.doc
                     FROM {f_s} AS f WHERE s.id = 1 AND f.id = 1;",
                to_o = t.orders,
                to_r = t.requests,
                to_w = t.wallets,
                to_s = t.state,
                f_o = f.orders,
                f_r = f.requests,
                f_w = f.wallets,
                f_s = f.state,
            )))
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn rows(&self, keys: RowKeys) -> Result<RowSet, StoreError> {
        self.run("reading rows", move |pool, t| async move {
            let orders: Vec<Uuid> = keys.orders.into_iter().collect();
            let requests: Vec<Uuid> = keys.requests.into_iter().collect();
            let wallets: Vec<String> = keys.wallets.into_iter().collect();
            let mut set = RowSet::default();
            if !orders.is_empty() {
                set.orders = docs(
                    &pool,
                    &t.orders,
                    sqlx::query(sql(format!(
                        "SELECT doc::text FROM {} WHERE order_id = ANY($1)",
                        t.orders
                    )))
                    .bind(orders),
                )
                .await?;
            }
            if !requests.is_empty() {
                set.requests = docs(
                    &pool,
                    &t.requests,
                    sqlx::query(sql(format!(
                        "SELECT doc::text FROM {} WHERE request_id = ANY($1)",
                        t.requests
                    )))
                    .bind(requests),
                )
                .await?;
            }
            if !wallets.is_empty() {
                let rows = sqlx::query(sql(format!(
                    "SELECT wallet, doc::text FROM {} WHERE wallet = ANY($1)",
                    t.wallets
                )))
                .bind(wallets)
                .fetch_all(&pool)
                .await?;
                for r in rows {
                    set.wallets.push((
                        r.try_get(0)?,
                        parse(&t.wallets, &r.try_get::<String, _>(1)?)?,
                    ));
                }
            }
            Ok(set)
        })
        .await
    }

    async fn in_flight(&self) -> Result<Vec<RequestView>, StoreError> {
        self.run("reading the queue", |pool, t| async move {
            docs(
                &pool,
                &t.requests,
                sqlx::query(sql(format!(
                    "SELECT doc::text FROM {} WHERE status IN ('queued', 'processing')",
                    t.requests
                ))),
            )
            .await
        })
        .await
    }

    async fn order(&self, id: Uuid) -> Result<Option<OrderView>, StoreError> {
        self.run("reading an order", move |pool, t| async move {
            let doc: Option<String> = sqlx::query_scalar(sql(format!(
                "SELECT doc::text FROM {} WHERE order_id = $1",
                t.orders
            )))
            .bind(id)
            .fetch_optional(&pool)
            .await?;
            doc.map(|d| parse(&t.orders, &d)).transpose()
        })
        .await
    }

    async fn request(&self, id: Uuid) -> Result<Option<RequestView>, StoreError> {
        self.run("reading a request", move |pool, t| async move {
            let doc: Option<String> = sqlx::query_scalar(sql(format!(
                "SELECT doc::text FROM {} WHERE request_id = $1",
                t.requests
            )))
            .bind(id)
            .fetch_optional(&pool)
            .await?;
            doc.map(|d| parse(&t.requests, &d)).transpose()
        })
        .await
    }

    async fn wallet(&self, raw: &str) -> Result<Option<WalletCommission>, StoreError> {
        let raw = raw.to_string();
        self.run("reading a wallet", move |pool, t| async move {
            let doc: Option<String> = sqlx::query_scalar(sql(format!(
                "SELECT doc::text FROM {} WHERE wallet = $1",
                t.wallets
            )))
            .bind(raw)
            .fetch_optional(&pool)
            .await?;
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
        self.run("reading a history", move |pool, t| async move {
            let rows = sqlx::query(sql(format!(
                "SELECT r.doc::text, o.doc::text FROM {r} AS r JOIN {o} AS o ON o.order_id = r.order_id \
                 WHERE r.wallet = $1 ORDER BY r.paid_position DESC LIMIT $2 OFFSET $3",
                r = t.requests,
                o = t.orders
            )))
            .bind(&raw)
            .bind(int(limit))
            .bind(int(offset))
            .fetch_all(&pool)
            .await?;
            let mut items = vec![];
            for row in rows {
                let request: RequestView = parse(&t.requests, &row.try_get::<String, _>(0)?)?;
                let order: OrderView = parse(&t.orders, &row.try_get::<String, _>(1)?)?;
                items.push(HistoryItem::new(&order, &request));
            }
            let total: i64 = sqlx::query_scalar(sql(format!(
                "SELECT COUNT(*) FROM {} WHERE wallet = $1",
                t.requests
            )))
            .bind(&raw)
            .fetch_one(&pool)
            .await?;
            Ok(Page {
                items,
                total: uint(total),
            })
        })
        .await
    }

    async fn orders(
        &self,
        f: OrderFilter,
        offset: u64,
        limit: u64,
    ) -> Result<Page<OrderView>, StoreError> {
        self.run("listing orders", move |pool, t| async move {
            let filters = || {
                let mut out = vec![];
                if let Some(s) = &f.statuses {
                    out.push(Filter::AnyOf("status", s.clone()));
                }
                if let Some(m) = &f.modes {
                    out.push(Filter::AnyOf(
                        "mode",
                        m.iter().map(|m| m.as_str().to_string()).collect(),
                    ));
                }
                if let Some(w) = &f.wallet {
                    out.push(Filter::Equals("wallet", w.clone()));
                }
                match f.delivery_confirmed {
                    None => {}
                    Some(None) => out.push(Filter::IsNull("delivery_confirmed")),
                    Some(Some(b)) => out.push(Filter::Bool("delivery_confirmed", b)),
                }
                out
            };
            let before = f.before.map(|id| Filter::Below("order_id", id));
            page(&pool, &t.orders, "order_id", filters, before, offset, limit).await
        })
        .await
    }

    async fn requests(
        &self,
        f: RequestFilter,
        offset: u64,
        limit: u64,
    ) -> Result<Page<RequestView>, StoreError> {
        self.run("listing requests", move |pool, t| async move {
            let filters = || {
                let mut out = vec![];
                if let Some(s) = &f.statuses {
                    out.push(Filter::AnyOf(
                        "status",
                        s.iter().map(|s| s.as_str().to_string()).collect(),
                    ));
                }
                if let Some(w) = &f.wallet {
                    out.push(Filter::Equals("wallet", w.clone()));
                }
                out
            };
            page(
                &pool,
                &t.requests,
                "request_id",
                filters,
                None,
                offset,
                limit,
            )
            .await
        })
        .await
    }

    async fn wallets(
        &self,
        owing: bool,
        offset: u64,
        limit: u64,
    ) -> Result<Page<(String, WalletCommission)>, StoreError> {
        self.run("listing wallets", move |pool, t| async move {
            let filter = if owing { "WHERE debt > 0" } else { "" };
            let total: i64 = sqlx::query_scalar(sql(format!(
                "SELECT COUNT(*) FROM {} {filter}",
                t.wallets
            )))
            .fetch_one(&pool)
            .await?;
            let rows = sqlx::query(sql(format!(
                "SELECT wallet, doc::text FROM {} {filter} ORDER BY debt DESC, wallet LIMIT $1 OFFSET $2",
                t.wallets
            )))
            .bind(int(limit))
            .bind(int(offset))
            .fetch_all(&pool)
            .await?;
            let mut items = vec![];
            for r in rows {
                items.push((r.try_get(0)?, parse(&t.wallets, &r.try_get::<String, _>(1)?)?));
            }
            Ok(Page {
                items,
                total: uint(total),
            })
        })
        .await
    }

    async fn scan_orders(
        &self,
        after: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<OrderView>, StoreError> {
        self.run("scanning orders", move |pool, t| async move {
            docs(
                &pool,
                &t.orders,
                sqlx::query(sql(format!(
                    "SELECT doc::text FROM {} WHERE $1::uuid IS NULL OR order_id > $1 ORDER BY order_id LIMIT $2",
                    t.orders
                )))
                .bind(after)
                .bind(int(limit)),
            )
            .await
        })
        .await
    }

    async fn scan_requests(
        &self,
        after: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<RequestView>, StoreError> {
        self.run("scanning requests", move |pool, t| async move {
            docs(
                &pool,
                &t.requests,
                sqlx::query(sql(format!(
                    "SELECT doc::text FROM {} WHERE $1::uuid IS NULL OR request_id > $1 ORDER BY request_id LIMIT $2",
                    t.requests
                )))
                .bind(after)
                .bind(int(limit)),
            )
            .await
        })
        .await
    }

    async fn scan_wallets(
        &self,
        after: Option<String>,
        limit: u64,
    ) -> Result<Vec<(String, WalletCommission)>, StoreError> {
        self.run("scanning wallets", move |pool, t| async move {
            let rows = sqlx::query(sql(format!(
                "SELECT wallet, doc::text FROM {} WHERE wallet > $1 ORDER BY wallet LIMIT $2",
                t.wallets
            )))
            .bind(after.unwrap_or_default())
            .bind(int(limit))
            .fetch_all(&pool)
            .await?;
            let mut out = vec![];
            for r in rows {
                out.push((
                    r.try_get(0)?,
                    parse(&t.wallets, &r.try_get::<String, _>(1)?)?,
                ));
            }
            Ok(out)
        })
        .await
    }
}

/// The webhook outbox in the store's schema.
pub struct PgOutbox(Access);

const DELIVERY_COLUMNS: &str = "event_id, position, order_id, kind, url, body, created_ms, \
    status, attempts, next_attempt_ms, last_error, delivered_ms";

fn delivery_row(r: &sqlx::postgres::PgRow) -> Result<Delivery, sqlx::Error> {
    Ok(Delivery {
        event_id: r.try_get(0)?,
        position: uint(r.try_get(1)?),
        order_id: r.try_get(2)?,
        kind: r.try_get(3)?,
        url: r.try_get(4)?,
        body: r.try_get(5)?,
        created_at: outbox::time(r.try_get(6)?),
        status: r.try_get(7)?,
        attempts: u32::try_from(r.try_get::<i32, _>(8)?).unwrap_or(0),
        next_attempt_at: outbox::time(r.try_get(9)?),
        last_error: r.try_get(10)?,
        delivered_at: r.try_get::<Option<i64>, _>(11)?.map(outbox::time),
    })
}

#[async_trait]
impl Outbox for PgOutbox {
    async fn position(&self) -> Result<u64, StoreError> {
        self.0
            .run("reading the outbox position", |pool| async move {
                let p: i64 = sqlx::query_scalar("SELECT position FROM webhook_state WHERE id = 1")
                    .fetch_one(&pool)
                    .await?;
                Ok(uint(p))
            })
            .await
    }

    async fn add(&self, from: u64, to: u64, rows: Vec<NewDelivery>) -> Result<(), StoreError> {
        self.0
            .run("adding deliveries", move |pool| async move {
                let mut tx = pool.begin().await?;
                let at: i64 = sqlx::query_scalar(
                    "SELECT position FROM webhook_state WHERE id = 1 FOR UPDATE",
                )
                .fetch_one(&mut *tx)
                .await?;
                if uint(at) != from {
                    return Err(StoreError::ReadModelsMoved {
                        expected: from,
                        actual: uint(at),
                    }
                    .into());
                }
                for d in rows {
                    sqlx::query(
                        "INSERT INTO webhook_deliveries (event_id, position, order_id, kind, url, \
                         body, created_ms, status, attempts, next_attempt_ms, claimed_until_ms) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', 0, $7, 0) \
                         ON CONFLICT (event_id) DO NOTHING",
                    )
                    .bind(d.event_id)
                    .bind(int(d.position))
                    .bind(d.order_id)
                    .bind(d.kind)
                    .bind(d.url)
                    .bind(d.body)
                    .bind(outbox::ms(d.created_at))
                    .execute(&mut *tx)
                    .await?;
                }
                sqlx::query("UPDATE webhook_state SET position = $1 WHERE id = 1")
                    .bind(int(to))
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            })
            .await
    }

    async fn claim(
        &self,
        now: DateTime<Utc>,
        lease: std::time::Duration,
        limit: u64,
    ) -> Result<Vec<Delivery>, StoreError> {
        let until = outbox::ms(now) + i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2);
        self.0
            .run("claiming deliveries", move |pool| async move {
                let mut tx = pool.begin().await?;
                // Rows another instance is claiming are skipped, not waited for.
                let rows = sqlx::query(sql(format!(
                    "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d \
                     WHERE status = 'pending' AND next_attempt_ms <= $1 AND claimed_until_ms <= $1 \
                     AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e WHERE e.order_id = d.order_id \
                         AND e.status = 'pending' AND e.position < d.position) \
                     ORDER BY position LIMIT $2 FOR UPDATE SKIP LOCKED"
                )))
                .bind(outbox::ms(now))
                .bind(int(limit))
                .fetch_all(&mut *tx)
                .await?;
                let due: Vec<Delivery> = rows.iter().map(delivery_row).collect::<Result<_, _>>()?;
                let ids: Vec<Uuid> = due.iter().map(|d| d.event_id).collect();
                sqlx::query(
                    "UPDATE webhook_deliveries SET claimed_until_ms = $1 WHERE event_id = ANY($2)",
                )
                .bind(until)
                .bind(&ids)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(due)
            })
            .await
    }

    async fn record(&self, attempt: Attempt, outcome: Outcome) -> Result<(), StoreError> {
        self.0
            .run("recording an attempt", move |pool| async move {
                let mut tx = pool.begin().await?;
                sqlx::query(
                    "INSERT INTO webhook_attempts (event_id, attempt, at_ms, status_code, error, \
                     duration_ms) VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (event_id, attempt) DO UPDATE SET at_ms = EXCLUDED.at_ms, \
                     status_code = EXCLUDED.status_code, error = EXCLUDED.error, \
                     duration_ms = EXCLUDED.duration_ms",
                )
                .bind(attempt.event_id)
                .bind(i32::try_from(attempt.attempt).unwrap_or(i32::MAX))
                .bind(outbox::ms(attempt.at))
                .bind(attempt.status_code.map(i32::from))
                .bind(attempt.error.clone())
                .bind(int(attempt.duration_ms))
                .execute(&mut *tx)
                .await?;
                let (status, next, delivered) = outbox::outcome_columns(outcome, attempt.at);
                sqlx::query(
                    "UPDATE webhook_deliveries SET status = $1, attempts = $2, next_attempt_ms = $3, \
                     delivered_ms = $4, last_error = $5, claimed_until_ms = 0 WHERE event_id = $6",
                )
                .bind(status)
                .bind(i32::try_from(attempt.attempt).unwrap_or(i32::MAX))
                .bind(next)
                .bind(delivered)
                .bind(attempt.error)
                .bind(attempt.event_id)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
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
            .run("listing deliveries", move |pool| async move {
                let filters = || {
                    let mut out = vec![];
                    if let Some(s) = &status {
                        out.push(Filter::Equals("status", s.clone()));
                    }
                    if let Some(id) = order_id {
                        out.push(Filter::Id("order_id", id));
                    }
                    out
                };
                let mut count = QueryBuilder::new("SELECT COUNT(*) FROM webhook_deliveries");
                push_filters(&mut count, filters());
                let total: i64 = count.build_query_scalar().fetch_one(&pool).await?;
                let mut select =
                    QueryBuilder::new(format!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries"));
                push_filters(&mut select, filters());
                select
                    .push(" ORDER BY position DESC LIMIT ")
                    .push_bind(int(limit))
                    .push(" OFFSET ")
                    .push_bind(int(offset));
                let rows = select.build().fetch_all(&pool).await?;
                let items = rows.iter().map(delivery_row).collect::<Result<_, _>>()?;
                Ok(Page {
                    items,
                    total: uint(total),
                })
            })
            .await
    }

    async fn get(&self, event_id: Uuid) -> Result<Option<Delivery>, StoreError> {
        self.0
            .run("reading a delivery", move |pool| async move {
                let row = sqlx::query(sql(format!(
                    "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE event_id = $1"
                )))
                .bind(event_id)
                .fetch_optional(&pool)
                .await?;
                Ok(row.as_ref().map(delivery_row).transpose()?)
            })
            .await
    }

    async fn attempts(&self, event_ids: Vec<Uuid>) -> Result<Vec<Attempt>, StoreError> {
        self.0
            .run("reading attempts", move |pool| async move {
                let rows = sqlx::query(
                    "SELECT event_id, attempt, at_ms, status_code, error, duration_ms \
                     FROM webhook_attempts WHERE event_id = ANY($1) ORDER BY event_id, attempt",
                )
                .bind(&event_ids)
                .fetch_all(&pool)
                .await?;
                let mut out = vec![];
                for r in rows {
                    out.push(Attempt {
                        event_id: r.try_get(0)?,
                        attempt: u32::try_from(r.try_get::<i32, _>(1)?).unwrap_or(0),
                        at: outbox::time(r.try_get(2)?),
                        status_code: r
                            .try_get::<Option<i32>, _>(3)?
                            .and_then(|c| u16::try_from(c).ok()),
                        error: r.try_get(4)?,
                        duration_ms: uint(r.try_get(5)?),
                    });
                }
                Ok(out)
            })
            .await
    }

    async fn redeliver(&self, event_id: Uuid, now: DateTime<Utc>) -> Result<bool, StoreError> {
        self.0
            .run("redelivering", move |pool| async move {
                let done = sqlx::query(
                    "UPDATE webhook_deliveries SET status = 'pending', next_attempt_ms = $1, \
                     claimed_until_ms = 0 WHERE event_id = $2",
                )
                .bind(outbox::ms(now))
                .bind(event_id)
                .execute(&pool)
                .await?;
                Ok(done.rows_affected() > 0)
            })
            .await
    }
}
