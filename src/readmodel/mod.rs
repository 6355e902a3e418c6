//! Durable read models: the projections' rows (orders, payment requests, wallets' commission
//! accounts) in tables of the same database as the log, with the position they reached.
//!
//! `ReadStore` is the port, with a backend per event store (`sqlite`: tables in the embedded
//! store's file; `postgres`: tables in the store's schema). Both pass the same contract suite
//! (`contract`). The projection runner (`actors::runner`) is their only writer in a process:
//! it folds the log batch by batch with `Projector`, and each batch's changed rows and the new
//! position are committed in one transaction, so a restart resumes exactly where the last
//! commit stopped and a crash never leaves a read model ahead of or behind its position. The
//! commit also checks the position it starts from (a compare-and-set), so two writers of the
//! same tables can never interleave their batches: the second one learns it is behind.
//!
//! Nothing here holds more than one batch's rows: the queue (what is in flight) and the
//! totals are the only models kept whole in memory, and the hot rows the API polls live in a
//! bounded cache (`cache`).

pub mod cache;
pub mod contract;
pub mod postgres;
pub mod sqlite;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use events::{DecodedEvent, OrderMode, RecordedEvent};
use projections::{
    EventContext, HistoryItem, Keys, OperatorTotals, OrderView, QueueView, RequestStatus,
    RequestView, Rows, Summary, WalletCommission, PROJECTIONS_VERSION,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::store::StoreError;

/// Which set of tables a store works on: the live ones the service reads, or the ones a
/// rebuild fills to compare with them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableSet {
    Live,
    Rebuild,
}

impl TableSet {
    /// The prefix of the set's table names.
    pub fn prefix(self) -> &'static str {
        match self {
            TableSet::Live => "read",
            TableSet::Rebuild => "rebuild",
        }
    }
}

/// What the tables hold besides the rows: how far they reached, in which projection version,
/// and the singletons.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredState {
    pub position: u64,
    pub version: u32,
    pub summary: Summary,
}

/// One batch's changes, committed together with the position they bring the tables to.
#[derive(Clone, Debug, Default)]
pub struct Commit {
    /// The position the tables must be at: the commit is refused otherwise.
    pub from: u64,
    pub to: u64,
    pub summary: Summary,
    pub orders: Vec<OrderView>,
    pub requests: Vec<RequestView>,
    pub wallets: Vec<(String, WalletCommission)>,
}

/// The rows a batch needs, by key.
#[derive(Clone, Debug, Default)]
pub struct RowKeys {
    pub orders: BTreeSet<Uuid>,
    pub requests: BTreeSet<Uuid>,
    pub wallets: BTreeSet<String>,
}

impl RowKeys {
    pub fn is_empty(&self) -> bool {
        self.orders.is_empty() && self.requests.is_empty() && self.wallets.is_empty()
    }
}

/// Rows as stored; a key with no row is absent.
#[derive(Clone, Debug, Default)]
pub struct RowSet {
    pub orders: Vec<OrderView>,
    pub requests: Vec<RequestView>,
    pub wallets: Vec<(String, WalletCommission)>,
}

/// Which orders a list wants; `None` means any.
#[derive(Clone, Debug, Default)]
pub struct OrderFilter {
    pub statuses: Option<Vec<String>>,
    pub modes: Option<Vec<OrderMode>>,
    /// The paying wallet (of the latest request), raw.
    pub wallet: Option<String>,
    /// `Some(None)`: no word yet from Fragment; `Some(Some(b))`: confirmed or not.
    pub delivery_confirmed: Option<Option<bool>>,
    /// A cursor: only orders older than this one (ids are time-ordered UUIDv7, so "older"
    /// is "smaller"). A page after a cursor stays right while new orders arrive, which
    /// offsets do not. `total` counts without it.
    pub before: Option<Uuid>,
}

/// Which requests a list wants; `None` means any.
#[derive(Clone, Debug, Default)]
pub struct RequestFilter {
    pub statuses: Option<Vec<RequestStatus>>,
    pub wallet: Option<String>,
}

/// A page of a list, newest first, and how many match in all.
#[derive(Clone, Debug, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: u64,
}

/// The service's own keys (the key of idempotency fingerprints), beside the read models in
/// the log's database and never in the log: a copy of the log alone (an export, an audit)
/// then holds only keyed hashes that nobody can test a guess against. 32 random bytes each,
/// made by the first instance that needs one and shared by every instance on the database.
pub const SQLITE_SERVICE_KEYS: &str =
    "CREATE TABLE service_keys (name TEXT PRIMARY KEY, key BLOB NOT NULL CHECK (length(key) = 32)) STRICT;";
pub const POSTGRES_SERVICE_KEYS: &str =
    "CREATE TABLE service_keys (name text PRIMARY KEY, key bytea NOT NULL CHECK (length(key) = 32));";

/// A key of the service, wiped when dropped.
pub type ServiceKey = zeroize::Zeroizing<[u8; 32]>;

/// A fresh random key.
pub fn new_service_key() -> ServiceKey {
    let mut key = zeroize::Zeroizing::new([0u8; 32]);
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, key.as_mut());
    key
}

/// A stored key, checked (the table's constraint says 32 bytes) and moved into a wiped buffer.
pub(crate) fn into_key(mut stored: Vec<u8>) -> Result<ServiceKey, StoreError> {
    let mut key = zeroize::Zeroizing::new([0u8; 32]);
    let ok = stored.len() == 32;
    if ok {
        key.copy_from_slice(&stored);
    }
    zeroize::Zeroize::zeroize(&mut stored);
    if ok {
        Ok(key)
    } else {
        Err(StoreError::Backend(
            "read models: a service key is not 32 bytes".into(),
        ))
    }
}

#[async_trait]
pub trait ReadStore: Send + Sync + 'static {
    /// The webhook outbox in the same database.
    fn outbox(&self) -> Arc<dyn crate::webhooks::outbox::Outbox>;

    /// The service key `name`: the stored one, or a new random one stored durably first (two
    /// instances asking at once get the same key).
    async fn service_key(&self, name: &str) -> Result<ServiceKey, StoreError>;

    /// Stores `key` as the service key `name`, replacing any (moving a store: the keyed
    /// hashes in the log stay checkable).
    async fn put_service_key(&self, name: &str, key: &ServiceKey) -> Result<(), StoreError>;

    /// `sqlite`, `postgres`.
    fn backend(&self) -> &'static str;

    /// The set this store works on.
    fn set(&self) -> TableSet;

    /// The same database's other set of tables (created if missing).
    async fn other_set(&self, set: TableSet) -> Result<Arc<dyn ReadStore>, StoreError>;

    /// Drops this set's tables (a rebuild set after use). Refused for the live set.
    async fn drop_set(&self) -> Result<(), StoreError>;

    /// How far the tables reached and their singletons.
    async fn state(&self) -> Result<StoredState, StoreError>;

    /// Empties the tables: position 0, projection `version`.
    async fn reset(&self, version: u32) -> Result<(), StoreError>;

    /// Stores a batch's rows and moves the position from `commit.from` to `commit.to`, in
    /// one transaction; `StoreError::ReadModelsMoved` (and nothing stored) if the tables are
    /// not at `commit.from`.
    async fn commit(&self, commit: Commit) -> Result<(), StoreError>;

    /// Replaces this set's rows and state with a copy of the `from` set's, in one
    /// transaction, if this set is at position `expected` (`ReadModelsMoved` otherwise).
    async fn adopt(&self, from: TableSet, expected: u64) -> Result<(), StoreError>;

    /// The rows of these keys that exist.
    async fn rows(&self, keys: RowKeys) -> Result<RowSet, StoreError>;

    /// Requests waiting or running (the queue's rows).
    async fn in_flight(&self) -> Result<Vec<RequestView>, StoreError>;

    async fn order(&self, id: Uuid) -> Result<Option<OrderView>, StoreError>;

    async fn request(&self, id: Uuid) -> Result<Option<RequestView>, StoreError>;

    async fn wallet(&self, raw: &str) -> Result<Option<WalletCommission>, StoreError>;

    /// A wallet's requests with their orders, newest paid first.
    async fn history(
        &self,
        raw: &str,
        offset: u64,
        limit: u64,
    ) -> Result<Page<HistoryItem>, StoreError>;

    /// Orders, newest first.
    async fn orders(
        &self,
        filter: OrderFilter,
        offset: u64,
        limit: u64,
    ) -> Result<Page<OrderView>, StoreError>;

    /// Requests, newest first.
    async fn requests(
        &self,
        filter: RequestFilter,
        offset: u64,
        limit: u64,
    ) -> Result<Page<RequestView>, StoreError>;

    /// Wallets' accounts, largest debt first (then by address); `owing`: only those in debt.
    async fn wallets(
        &self,
        owing: bool,
        offset: u64,
        limit: u64,
    ) -> Result<Page<(String, WalletCommission)>, StoreError>;

    /// Orders in key order after `after`: for comparing two sets without holding either.
    async fn scan_orders(
        &self,
        after: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<OrderView>, StoreError>;

    async fn scan_requests(
        &self,
        after: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<RequestView>, StoreError>;

    async fn scan_wallets(
        &self,
        after: Option<String>,
        limit: u64,
    ) -> Result<Vec<(String, WalletCommission)>, StoreError>;
}

/// A batch's rows: loaded for its keys, changed by the fold, the changed ones committed.
#[derive(Default)]
pub struct Overlay {
    orders: HashMap<Uuid, OrderView>,
    requests: HashMap<Uuid, RequestView>,
    wallets: HashMap<String, WalletCommission>,
    changed_orders: HashSet<Uuid>,
    changed_requests: HashSet<Uuid>,
    changed_wallets: HashSet<String>,
}

impl Overlay {
    pub fn from_rows(rows: RowSet) -> Overlay {
        let mut overlay = Overlay::default();
        overlay.add(rows);
        overlay
    }

    pub fn add(&mut self, rows: RowSet) {
        for o in rows.orders {
            self.orders.insert(o.order_id, o);
        }
        for r in rows.requests {
            self.requests.insert(r.request_id, r);
        }
        for (raw, w) in rows.wallets {
            self.wallets.insert(raw, w);
        }
    }

    /// The rows the fold changed.
    pub fn changed(mut self) -> RowSet {
        fn take<V>(changed: HashSet<Uuid>, map: &mut HashMap<Uuid, V>) -> Vec<V> {
            changed.into_iter().filter_map(|k| map.remove(&k)).collect()
        }
        let mut wallets: Vec<(String, WalletCommission)> = self
            .changed_wallets
            .into_iter()
            .filter_map(|k| self.wallets.remove(&k).map(|w| (k, w)))
            .collect();
        wallets.sort_by(|a, b| a.0.cmp(&b.0));
        let mut orders: Vec<OrderView> = take(self.changed_orders, &mut self.orders);
        orders.sort_by_key(|o| o.order_id);
        let mut requests: Vec<RequestView> = take(self.changed_requests, &mut self.requests);
        requests.sort_by_key(|r| r.request_id);
        RowSet {
            orders,
            requests,
            wallets,
        }
    }
}

impl Rows for Overlay {
    fn order(&self, id: &Uuid) -> Option<&OrderView> {
        self.orders.get(id)
    }
    fn order_mut(&mut self, id: &Uuid) -> Option<&mut OrderView> {
        let o = self.orders.get_mut(id)?;
        self.changed_orders.insert(*id);
        Some(o)
    }
    fn put_order(&mut self, order: OrderView) {
        self.changed_orders.insert(order.order_id);
        self.orders.insert(order.order_id, order);
    }
    fn request(&self, id: &Uuid) -> Option<&RequestView> {
        self.requests.get(id)
    }
    fn request_mut(&mut self, id: &Uuid) -> Option<&mut RequestView> {
        let r = self.requests.get_mut(id)?;
        self.changed_requests.insert(*id);
        Some(r)
    }
    fn put_request(&mut self, request: RequestView) {
        self.changed_requests.insert(request.request_id);
        self.requests.insert(request.request_id, request);
    }
    fn wallet_mut(&mut self, raw: &str) -> &mut WalletCommission {
        if !self.changed_wallets.contains(raw) {
            self.changed_wallets.insert(raw.to_string());
        }
        self.wallets.entry(raw.to_string()).or_default()
    }
}

/// Where rows come from before a fold: the cache of hot rows, if the caller keeps one, and
/// the store for the rest.
pub trait RowSource {
    /// Takes the rows it has out of `keys`.
    fn take_known(&self, keys: &mut RowKeys) -> RowSet;
}

/// No cache: every row comes from the store.
pub struct NoCache;

impl RowSource for NoCache {
    fn take_known(&self, _: &mut RowKeys) -> RowSet {
        RowSet::default()
    }
}

/// A batch folded and committed.
#[derive(Debug, Default)]
pub struct Folded {
    /// The position the tables are at now.
    pub position: u64,
    /// The rows the batch changed, as committed.
    pub rows: RowSet,
    /// Events this build could not read, skipped (live folding only; see `Projector::fold`).
    pub skipped: Vec<StoreError>,
}

/// Folds batches of the log into a store's tables: the in-memory part of the models (the
/// queue, the totals, the position) and the fold of each batch's rows.
#[derive(Clone, Debug)]
pub struct Projector {
    pub position: u64,
    pub queue: QueueView,
    pub totals: OperatorTotals,
}

impl Projector {
    /// The tables' state, reset first if they were written by another projection version
    /// or reach past the log's `head` (a restored older log).
    pub async fn load(store: &dyn ReadStore, head: u64) -> Result<Projector, StoreError> {
        let mut state = store.state().await?;
        let reason = if state.version != PROJECTIONS_VERSION {
            Some(format!(
                "they are of projection version {}, this build writes {PROJECTIONS_VERSION}",
                state.version
            ))
        } else if state.position > head {
            Some(format!(
                "they reach position {}, past the log's head {head} (a restored older log?)",
                state.position
            ))
        } else {
            None
        };
        if let Some(reason) = reason {
            if state.position > 0 || state.version != 0 {
                tracing::warn!(
                    set = store.set().prefix(),
                    %reason,
                    "read models discarded; rebuilding them from the log"
                );
            }
            store.reset(PROJECTIONS_VERSION).await?;
            state = StoredState {
                version: PROJECTIONS_VERSION,
                ..StoredState::default()
            };
        }
        let in_flight = store.in_flight().await?;
        Ok(Projector {
            position: state.position,
            queue: QueueView::from_rows(state.summary.queue, &in_flight),
            totals: state.summary.totals,
        })
    }

    pub fn summary(&self) -> Summary {
        Summary {
            totals: self.totals.clone(),
            queue: self.queue.counters.clone(),
        }
    }

    /// Folds `events` (in position order; those at or before the position are skipped) into
    /// the store's tables in one commit. Strict (`strict`): an event this build cannot read
    /// stops the fold with `StoreError::Undecodable` and nothing is committed. Otherwise it is
    /// skipped, logged and reported, and the rest goes on (the next start, which is strict,
    /// refuses to run on it). On an error the projector is unchanged: reload or retry.
    pub async fn fold(
        &mut self,
        store: &dyn ReadStore,
        known: &dyn RowSource,
        events: &[RecordedEvent],
        strict: bool,
    ) -> Result<Folded, StoreError> {
        let decoded = events
            .iter()
            .filter(|e| e.position > self.position)
            .map(DecodedEvent::of)
            .collect();
        self.fold_decoded(store, known, decoded, strict).await
    }

    /// `fold`, of events the store decoded (`EventStore::read_all_decoded`).
    pub async fn fold_decoded(
        &mut self,
        store: &dyn ReadStore,
        known: &dyn RowSource,
        events: Vec<DecodedEvent>,
        strict: bool,
    ) -> Result<Folded, StoreError> {
        let mut decoded = Vec::with_capacity(events.len());
        let mut skipped = vec![];
        for e in events.into_iter().filter(|e| e.position > self.position) {
            let ctx = EventContext::from(&e);
            match e.event {
                Ok(event) => decoded.push((ctx, Some(event))),
                Err(error) => {
                    let refused = StoreError::Undecodable {
                        stream: e.stream,
                        position: e.position,
                        event_type: e.event_type,
                        error: error.to_string(),
                    };
                    if strict {
                        return Err(refused);
                    }
                    tracing::error!(error = %refused, "cannot fold event");
                    skipped.push(refused);
                    decoded.push((ctx, None));
                }
            }
        }
        let Some(last) = decoded.last().map(|(ctx, _)| ctx.position) else {
            return Ok(Folded {
                position: self.position,
                ..Folded::default()
            });
        };
        let mut keys = RowKeys::default();
        for (_, event) in &decoded {
            let Some(event) = event else { continue };
            let k = Keys::of(event);
            keys.orders.extend(k.order);
            keys.requests.extend(k.request);
            keys.wallets.extend(k.wallet);
        }
        let mut overlay = Overlay::from_rows(known.take_known(&mut keys));
        if !keys.is_empty() {
            overlay.add(store.rows(keys).await?);
        }
        let mut queue = self.queue.clone();
        let mut totals = self.totals.clone();
        for (ctx, event) in &decoded {
            let Some(event) = event else { continue };
            projections::fold(&mut overlay, &mut queue, &mut totals, *ctx, event);
        }
        let rows = overlay.changed();
        let summary = Summary {
            totals: totals.clone(),
            queue: queue.counters.clone(),
        };
        store
            .commit(Commit {
                from: self.position,
                to: last,
                summary,
                orders: rows.orders.clone(),
                requests: rows.requests.clone(),
                wallets: rows.wallets.clone(),
            })
            .await?;
        self.position = last;
        self.queue = queue;
        self.totals = totals;
        Ok(Folded {
            position: last,
            rows,
            skipped,
        })
    }
}

/// How many rows of each kind a comparison looked at, and which differ.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Comparison {
    pub orders: u64,
    pub requests: u64,
    pub wallets: u64,
    /// Rows changed after the rebuild's position in the live set: not comparable.
    pub skipped: u64,
    /// The first differences found, as "table key: what".
    pub differences: Vec<String>,
    /// How many rows differ in all.
    pub differing: u64,
    /// Whether the singletons (totals, queue counters) were compared: only when both sets
    /// are at the same position.
    pub summary_compared: bool,
}

impl Comparison {
    pub fn equal(&self) -> bool {
        self.differing == 0
    }

    fn differ(&mut self, what: String) {
        const LISTED: usize = 20;
        self.differing += 1;
        if self.differences.len() < LISTED {
            self.differences.push(what);
        }
    }
}

/// Compares a `live` set with a `rebuilt` one at position `at`, one page at a time. A live
/// row changed after `at` cannot be compared (the live set moved on) and is skipped; every
/// other row must be in both and equal. The singletons are compared when the live set is at
/// `at` too.
pub async fn compare(
    live: &dyn ReadStore,
    rebuilt: &dyn ReadStore,
    at: u64,
) -> Result<Comparison, StoreError> {
    const PAGE: u64 = 1000;
    let mut c = Comparison::default();
    merge_compare(
        &mut c,
        "order",
        at,
        |after| live.scan_orders(after, PAGE),
        |after| rebuilt.scan_orders(after, PAGE),
        |o| o.order_id,
        |o| o.updated_at_position,
    )
    .await?;
    merge_compare(
        &mut c,
        "request",
        at,
        |after| live.scan_requests(after, PAGE),
        |after| rebuilt.scan_requests(after, PAGE),
        |r| r.request_id,
        |r| r.updated_at_position,
    )
    .await?;
    merge_compare(
        &mut c,
        "wallet",
        at,
        |after| live.scan_wallets(after, PAGE),
        |after| rebuilt.scan_wallets(after, PAGE),
        |w: &(String, WalletCommission)| w.0.clone(),
        |w| w.1.updated_at_position,
    )
    .await?;
    let (l, r) = (live.state().await?, rebuilt.state().await?);
    if l.position == at && r.position == at {
        c.summary_compared = true;
        if l.summary.totals != r.summary.totals {
            c.differ("summary: the operator's commission totals".into());
        }
        if l.summary.queue != r.summary.queue {
            c.differ("summary: the queue's counters".into());
        }
    }
    Ok(c)
}

/// Walks two key-ordered tables side by side.
async fn merge_compare<T, K, F1, F2, Fut1, Fut2>(
    c: &mut Comparison,
    table: &str,
    at: u64,
    live: F1,
    rebuilt: F2,
    key: impl Fn(&T) -> K,
    updated: impl Fn(&T) -> u64,
) -> Result<(), StoreError>
where
    T: PartialEq,
    K: Ord + Clone + std::fmt::Display,
    F1: Fn(Option<K>) -> Fut1,
    F2: Fn(Option<K>) -> Fut2,
    Fut1: std::future::Future<Output = Result<Vec<T>, StoreError>>,
    Fut2: std::future::Future<Output = Result<Vec<T>, StoreError>>,
{
    let mut lefts = Pager::new(live);
    let mut rights = Pager::new(rebuilt);
    loop {
        let l = lefts.peek(&key).await?;
        let r = rights.peek(&key).await?;
        let order = match (&l, &r) {
            (None, None) => return Ok(()),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(l), Some(r)) => key(l).cmp(&key(r)),
        };
        match order {
            std::cmp::Ordering::Less => {
                let l = lefts.next().expect("peeked");
                count(c, table);
                if updated(&l) > at {
                    c.skipped += 1;
                } else {
                    c.differ(format!("{table} {}: only in the live tables", key(&l)));
                }
            }
            std::cmp::Ordering::Greater => {
                let r = rights.next().expect("peeked");
                count(c, table);
                c.differ(format!("{table} {}: missing from the live tables", key(&r)));
            }
            std::cmp::Ordering::Equal => {
                let (l, r) = (
                    lefts.next().expect("peeked"),
                    rights.next().expect("peeked"),
                );
                count(c, table);
                if updated(&l) > at {
                    c.skipped += 1;
                } else if l != r {
                    c.differ(format!("{table} {}: differs from the log", key(&l)));
                }
            }
        }
    }
}

fn count(c: &mut Comparison, table: &str) {
    match table {
        "order" => c.orders += 1,
        "request" => c.requests += 1,
        _ => c.wallets += 1,
    }
}

/// Pages of a key-ordered scan, one item at a time.
struct Pager<T, K, F> {
    fetch: F,
    page: std::collections::VecDeque<T>,
    last: Option<K>,
    done: bool,
}

impl<T, K: Clone, F, Fut> Pager<T, K, F>
where
    F: Fn(Option<K>) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<T>, StoreError>>,
{
    fn new(fetch: F) -> Self {
        Pager {
            fetch,
            page: Default::default(),
            last: None,
            done: false,
        }
    }

    async fn peek(&mut self, key: &impl Fn(&T) -> K) -> Result<Option<&T>, StoreError> {
        if self.page.is_empty() && !self.done {
            let page = (self.fetch)(self.last.clone()).await?;
            match page.last() {
                Some(last) => self.last = Some(key(last)),
                None => self.done = true,
            }
            self.page.extend(page);
        }
        Ok(self.page.front())
    }

    fn next(&mut self) -> Option<T> {
        self.page.pop_front()
    }
}
