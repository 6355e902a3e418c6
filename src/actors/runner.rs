//! The projection runner: folds the log into the durable read models (`readmodel`), live,
//! batch by batch, each batch's rows and position committed together, and serves the API's
//! reads of them.
//!
//! Readers wanting to see their own write wait for the position their append returned
//! (`wait_for`), so an API answer never shows a state older than the command it answers.
//!
//! The runner lives on a thread of its own, with its own small runtime: folding and the
//! tables' commits never run on the core's single thread, where they would stall every
//! actor. What it keeps in memory is bounded by the work in flight, never by the log: the
//! queue (waiting and running requests), the operator's totals, one batch's rows while it
//! folds, and the hot-row cache (`store.cache_rows` orders and as many requests).

use std::num::NonZeroUsize;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use projections::{OperatorTotals, OrderView, QueueView, RequestView, PROJECTIONS_VERSION};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

use crate::readmodel::cache::HotRows;
use crate::readmodel::{
    compare, Comparison, NoCache, Projector, ReadStore, RowSet, RowSource, TableSet,
};
use crate::store::{EventStore, StoreError, Subscription};

/// Most events folded into one commit. Large enough that a catch-up commits rarely, small
/// enough that one batch's rows stay a few megabytes.
const BATCH: usize = 1024;

/// How long the runner waits before trying again after the tables or the log failed.
const RETRY: Duration = Duration::from_millis(500);

/// What of the read models is kept whole in memory, as of `position`.
#[derive(Clone, Debug, Default)]
pub struct Live {
    pub position: u64,
    pub queue: QueueView,
    pub totals: OperatorTotals,
}

impl Live {
    fn of(p: &Projector) -> Live {
        Live {
            position: p.position,
            queue: p.queue.clone(),
            totals: p.totals.clone(),
        }
    }
}

enum Command {
    /// Put the rebuilt set in place of the live one.
    Adopt {
        rebuilt: Arc<dyn ReadStore>,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
}

pub struct ProjectionRunner {
    store: Arc<dyn EventStore>,
    tables: Arc<dyn ReadStore>,
    cache: Arc<HotRows>,
    live: Arc<RwLock<Arc<Live>>>,
    position: watch::Receiver<u64>,
    stop: watch::Sender<bool>,
    /// Never sent on: the runner's thread drops the sender once it has stopped following the
    /// log, which is what `stop` waits for.
    finished: watch::Receiver<()>,
    commands: mpsc::Sender<Command>,
    /// One rebuild at a time: they share the rebuild tables.
    rebuilding: tokio::sync::Mutex<()>,
}

/// What a rebuild found.
#[derive(Clone, Debug, Serialize)]
pub struct Rebuilt {
    /// The position the rebuild was compared at.
    pub position: u64,
    pub comparison: Comparison,
    /// Whether the rebuilt tables took the live ones' place.
    pub replaced: bool,
    pub elapsed_ms: u64,
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl ProjectionRunner {
    /// Loads the read models' state from their tables (rebuilding them from the log if they
    /// are of another projection version or ahead of the log), folds what the log holds past
    /// them, then follows it live. The catch-up is strict: an event this build cannot read
    /// stops the start, naming it.
    pub async fn start(
        store: Arc<dyn EventStore>,
        cache_rows: NonZeroUsize,
    ) -> Result<ProjectionRunner, StoreError> {
        let tables = store.read_models()?;
        Self::start_with(store, tables, cache_rows).await
    }

    /// `start`, on tables of the caller's choosing (tests wrap them to make them fail).
    pub async fn start_with(
        store: Arc<dyn EventStore>,
        tables: Arc<dyn ReadStore>,
        cache_rows: NonZeroUsize,
    ) -> Result<ProjectionRunner, StoreError> {
        let cache = Arc::new(HotRows::new(cache_rows));
        let (ready_tx, ready) = oneshot::channel();
        let (stop, stopped) = watch::channel(false);
        let (finished_tx, finished) = watch::channel(());
        let (commands, commands_rx) = mpsc::channel(4);
        let follower = {
            let (store, tables, cache) =
                (Arc::clone(&store), Arc::clone(&tables), Arc::clone(&cache));
            move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = ready_tx.send(Err(StoreError::Backend(format!(
                            "starting the projection runner's runtime: {e}"
                        ))));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let _finished = finished_tx;
                    let projector = match catch_up(&store, &*tables).await {
                        Ok(projector) => projector,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let live = Arc::new(RwLock::new(Arc::new(Live::of(&projector))));
                    let (position_tx, position) = watch::channel(projector.position);
                    if ready_tx.send(Ok((Arc::clone(&live), position))).is_ok() {
                        Follower {
                            subscription: Subscription::new(Arc::clone(&store), projector.position),
                            store,
                            tables,
                            cache,
                            live,
                            position: position_tx,
                            projector,
                        }
                        .run(stopped, commands_rx)
                        .await;
                    }
                });
            }
        };
        std::thread::Builder::new()
            .name("projection-runner".into())
            .spawn(follower)
            .map_err(|e| StoreError::Backend(format!("starting the projection runner: {e}")))?;
        let (live, position) = ready.await.map_err(|_| {
            StoreError::Backend("the projection runner stopped while catching up".into())
        })??;
        Ok(ProjectionRunner {
            store,
            tables,
            cache,
            live,
            position,
            stop,
            finished,
            commands,
            rebuilding: tokio::sync::Mutex::new(()),
        })
    }

    /// The queue, the totals and their position, as of the last batch folded.
    pub fn live(&self) -> Arc<Live> {
        Arc::clone(&read(&self.live))
    }

    /// The tables, for lists and lookups that the cache does not answer.
    pub fn tables(&self) -> &Arc<dyn ReadStore> {
        &self.tables
    }

    pub fn cache(&self) -> &HotRows {
        &self.cache
    }

    /// An order, from the hot rows or the tables.
    pub async fn order(&self, id: Uuid) -> Result<Option<Arc<OrderView>>, StoreError> {
        if let Some(hot) = self.cache.order(&id) {
            return Ok(Some(hot));
        }
        let generation = self.cache.generation();
        let Some(row) = self.tables.order(id).await? else {
            return Ok(None);
        };
        let row = Arc::new(row);
        self.cache.offer_order(generation, Arc::clone(&row));
        Ok(Some(row))
    }

    /// A payment request, from the hot rows or the tables.
    pub async fn request(&self, id: Uuid) -> Result<Option<Arc<RequestView>>, StoreError> {
        if let Some(hot) = self.cache.request(&id) {
            return Ok(Some(hot));
        }
        let generation = self.cache.generation();
        let Some(row) = self.tables.request(id).await? else {
            return Ok(None);
        };
        let row = Arc::new(row);
        self.cache.offer_request(generation, Arc::clone(&row));
        Ok(Some(row))
    }

    pub fn position(&self) -> u64 {
        *self.position.borrow()
    }

    /// Every row in memory, as `ReadModels`: for tests and comparisons on small logs only
    /// (it holds the whole tables). Taken at the position the models are at when it starts;
    /// rows changed by batches folded while it reads may be newer.
    pub async fn snapshot(&self) -> Result<projections::ReadModels, StoreError> {
        let live = self.live();
        let mut models = projections::ReadModels {
            position: live.position,
            queue: live.queue.clone(),
            ..Default::default()
        };
        models.commission.totals = live.totals.clone();
        let mut after = None;
        loop {
            let page = self.tables.scan_orders(after, 1000).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.order_id);
            models
                .orders
                .orders
                .extend(page.into_iter().map(|o| (o.order_id, o)));
        }
        let mut after = None;
        let mut requests = vec![];
        loop {
            let page = self.tables.scan_requests(after, 1000).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.request_id);
            requests.extend(page);
        }
        requests.sort_by_key(|r| r.paid_position);
        for r in requests {
            models.history.paid(&r.wallet_address, r.request_id);
            models.orders.requests.insert(r.request_id, r);
        }
        let mut after = None;
        loop {
            let page = self.tables.scan_wallets(after, 1000).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.0.clone());
            models.commission.wallets.extend(page);
        }
        Ok(models)
    }

    /// Waits until the models include position `p`.
    pub async fn wait_for(&self, p: u64) {
        let mut rx = self.position.clone();
        // The runner only stops with the core; an error here means the wait is moot.
        let _ = rx.wait_for(|&pos| pos >= p).await;
    }

    /// Stops following the log, returning once the batch being folded is committed. The
    /// models stay readable.
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        let mut finished = self.finished.clone();
        while finished.changed().await.is_ok() {}
    }

    /// Folds the log from position 0 into the rebuild tables, up to where the live ones are,
    /// and compares the two. With `replace`, rebuilt tables that differ take the live ones'
    /// place (the runner brings them up to its position first, and pauses meanwhile).
    pub async fn rebuild(&self, replace: bool) -> Result<Rebuilt, StoreError> {
        let _one = self.rebuilding.lock().await;
        let started = Instant::now();
        let at = self.position();
        let rebuilt = self.tables.other_set(TableSet::Rebuild).await?;
        let result = async {
            rebuild_into(&self.store, &*rebuilt, at).await?;
            let comparison = compare(&*self.tables, &*rebuilt, at).await?;
            let replaced = if replace && !comparison.equal() {
                let (reply, answer) = oneshot::channel();
                self.commands
                    .send(Command::Adopt {
                        rebuilt: Arc::clone(&rebuilt),
                        reply,
                    })
                    .await
                    .map_err(|_| StoreError::Unavailable("the projection runner stopped".into()))?;
                answer.await.map_err(|_| {
                    StoreError::Unavailable("the projection runner stopped".into())
                })??;
                true
            } else {
                false
            };
            Ok(Rebuilt {
                position: at,
                comparison,
                replaced,
                elapsed_ms: started.elapsed().as_millis() as u64,
            })
        }
        .await;
        if let Err(e) = rebuilt.drop_set().await {
            tracing::warn!(error = %e, "cannot drop the rebuild tables");
        }
        result
    }
}

/// Empties `tables` and folds the log into them from position 0 up to `up_to` (and no
/// further). Lenient, as the live fold is: an event this build cannot read is skipped and
/// logged. Returns the projector at `up_to`.
pub async fn rebuild_into(
    store: &Arc<dyn EventStore>,
    tables: &dyn ReadStore,
    up_to: u64,
) -> Result<Projector, StoreError> {
    tables.reset(PROJECTIONS_VERSION).await?;
    let mut projector = Projector::load(tables, u64::MAX).await?;
    fold_until(store, tables, &mut projector, up_to, false).await?;
    Ok(projector)
}

/// Folds the log into `tables` from the projector's position up to `up_to`.
pub async fn fold_until(
    store: &Arc<dyn EventStore>,
    tables: &dyn ReadStore,
    projector: &mut Projector,
    up_to: u64,
    strict: bool,
) -> Result<(), StoreError> {
    while projector.position < up_to {
        let mut page = store.read_all_decoded(projector.position, BATCH).await?;
        page.retain(|e| e.position <= up_to);
        if page.is_empty() {
            break;
        }
        projector
            .fold_decoded(tables, &NoCache, page, strict)
            .await?;
    }
    Ok(())
}

/// Loads the tables' state and folds, strictly, what the log holds past it.
async fn catch_up(
    store: &Arc<dyn EventStore>,
    tables: &dyn ReadStore,
) -> Result<Projector, StoreError> {
    let head = store.head().await?;
    let mut projector = Projector::load(tables, head).await?;
    let from = projector.position;
    fold_until(store, tables, &mut projector, head, true).await?;
    if projector.position > from {
        tracing::info!(
            from,
            to = projector.position,
            "read models caught up with the log"
        );
    }
    Ok(projector)
}

/// The runner's thread: follows the log into the tables.
struct Follower {
    store: Arc<dyn EventStore>,
    tables: Arc<dyn ReadStore>,
    cache: Arc<HotRows>,
    live: Arc<RwLock<Arc<Live>>>,
    position: watch::Sender<u64>,
    projector: Projector,
    subscription: Subscription,
}

impl Follower {
    async fn run(
        mut self,
        mut stopped: watch::Receiver<bool>,
        mut commands: mpsc::Receiver<Command>,
    ) {
        let mut reload = false;
        loop {
            if reload {
                tokio::select! {
                    _ = tokio::time::sleep(RETRY) => {}
                    _ = stopped.changed() => break,
                }
                reload = !self.reload().await;
                continue;
            }
            let batch = tokio::select! {
                batch = self.subscription.next_batch(BATCH) => batch,
                Some(command) = commands.recv() => {
                    self.obey(command).await;
                    continue;
                }
                _ = stopped.changed() => break,
            };
            let events = match batch {
                Ok(events) => events,
                Err(e) => {
                    tracing::error!(error = %e, "projection runner cannot read the log; retrying");
                    reload = true;
                    continue;
                }
            };
            match self
                .projector
                .fold(
                    &*self.tables,
                    &*self.cache as &dyn RowSource,
                    &events,
                    false,
                )
                .await
            {
                Ok(folded) => self.publish(&folded.rows),
                Err(e) => {
                    tracing::error!(error = %e, "projection runner cannot store a batch; reloading the read models");
                    reload = true;
                }
            }
        }
    }

    /// The batch is committed: the cache takes its rows, then readers see the new position.
    fn publish(&self, rows: &RowSet) {
        self.cache.stored(rows);
        *self
            .live
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Arc::new(Live::of(&self.projector));
        self.position.send_replace(self.projector.position);
    }

    /// Starts again from what the tables hold (after a failed commit, or when another writer
    /// moved them). Says whether it could.
    async fn reload(&mut self) -> bool {
        let loaded = match self.store.head().await {
            Ok(head) => Projector::load(&*self.tables, head).await,
            Err(e) => Err(e),
        };
        match loaded {
            Ok(projector) => {
                self.cache.clear();
                self.subscription = Subscription::new(Arc::clone(&self.store), projector.position);
                self.projector = projector;
                self.publish(&RowSet::default());
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "projection runner cannot load the read models; retrying");
                false
            }
        }
    }

    async fn obey(&mut self, command: Command) {
        match command {
            Command::Adopt { rebuilt, reply } => {
                let adopted = self.adopt(&*rebuilt).await;
                let _ = reply.send(adopted);
            }
        }
    }

    /// Brings `rebuilt` up to the live position, copies it over the live tables, and goes on
    /// from there.
    async fn adopt(&mut self, rebuilt: &dyn ReadStore) -> Result<u64, StoreError> {
        let at = self.projector.position;
        let mut projector = Projector::load(rebuilt, u64::MAX).await?;
        fold_until(&self.store, rebuilt, &mut projector, at, false).await?;
        self.tables.adopt(rebuilt.set(), at).await?;
        let head = self.store.head().await?;
        self.projector = Projector::load(&*self.tables, head).await?;
        self.cache.clear();
        self.subscription = Subscription::new(Arc::clone(&self.store), self.projector.position);
        self.publish(&RowSet::default());
        tracing::warn!(
            position = at,
            "the live read models were replaced by a rebuild from the log"
        );
        Ok(at)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;
    use events::{Event, EventMetadata, ExpectedVersion};
    use projections::{HistoryItem, OrderView, RequestView, WalletCommission};

    use super::*;
    use crate::readmodel::contract::synthetic_log;
    use crate::readmodel::{Commit, OrderFilter, Page, RequestFilter, RowKeys, StoredState};
    use crate::store::SqliteStore;

    /// Tables whose next `failing` commits fail, as a database that went away would.
    struct Flaky {
        inner: Arc<dyn ReadStore>,
        failing: AtomicUsize,
        commits: AtomicUsize,
    }

    #[async_trait]
    impl ReadStore for Flaky {
        fn backend(&self) -> &'static str {
            "flaky"
        }
        fn set(&self) -> TableSet {
            self.inner.set()
        }
        fn outbox(&self) -> Arc<dyn crate::webhooks::outbox::Outbox> {
            self.inner.outbox()
        }
        async fn service_key(
            &self,
            name: &str,
        ) -> Result<crate::readmodel::ServiceKey, StoreError> {
            self.inner.service_key(name).await
        }
        async fn put_service_key(
            &self,
            name: &str,
            key: &crate::readmodel::ServiceKey,
        ) -> Result<(), StoreError> {
            self.inner.put_service_key(name, key).await
        }
        async fn other_set(&self, set: TableSet) -> Result<Arc<dyn ReadStore>, StoreError> {
            self.inner.other_set(set).await
        }
        async fn drop_set(&self) -> Result<(), StoreError> {
            self.inner.drop_set().await
        }
        async fn state(&self) -> Result<StoredState, StoreError> {
            self.inner.state().await
        }
        async fn reset(&self, version: u32) -> Result<(), StoreError> {
            self.inner.reset(version).await
        }
        async fn commit(&self, commit: Commit) -> Result<(), StoreError> {
            self.commits.fetch_add(1, Ordering::SeqCst);
            let failing = self.failing.load(Ordering::SeqCst);
            if failing > 0 {
                self.failing.store(failing - 1, Ordering::SeqCst);
                return Err(StoreError::Unavailable("the database went away".into()));
            }
            self.inner.commit(commit).await
        }
        async fn adopt(&self, from: TableSet, expected: u64) -> Result<(), StoreError> {
            self.inner.adopt(from, expected).await
        }
        async fn rows(&self, keys: RowKeys) -> Result<RowSet, StoreError> {
            self.inner.rows(keys).await
        }
        async fn in_flight(&self) -> Result<Vec<RequestView>, StoreError> {
            self.inner.in_flight().await
        }
        async fn order(&self, id: Uuid) -> Result<Option<OrderView>, StoreError> {
            self.inner.order(id).await
        }
        async fn request(&self, id: Uuid) -> Result<Option<RequestView>, StoreError> {
            self.inner.request(id).await
        }
        async fn wallet(&self, raw: &str) -> Result<Option<WalletCommission>, StoreError> {
            self.inner.wallet(raw).await
        }
        async fn history(
            &self,
            raw: &str,
            o: u64,
            l: u64,
        ) -> Result<Page<HistoryItem>, StoreError> {
            self.inner.history(raw, o, l).await
        }
        async fn orders(
            &self,
            f: OrderFilter,
            o: u64,
            l: u64,
        ) -> Result<Page<OrderView>, StoreError> {
            self.inner.orders(f, o, l).await
        }
        async fn requests(
            &self,
            f: RequestFilter,
            o: u64,
            l: u64,
        ) -> Result<Page<RequestView>, StoreError> {
            self.inner.requests(f, o, l).await
        }
        async fn wallets(
            &self,
            owing: bool,
            o: u64,
            l: u64,
        ) -> Result<Page<(String, WalletCommission)>, StoreError> {
            self.inner.wallets(owing, o, l).await
        }
        async fn scan_orders(&self, a: Option<Uuid>, l: u64) -> Result<Vec<OrderView>, StoreError> {
            self.inner.scan_orders(a, l).await
        }
        async fn scan_requests(
            &self,
            a: Option<Uuid>,
            l: u64,
        ) -> Result<Vec<RequestView>, StoreError> {
            self.inner.scan_requests(a, l).await
        }
        async fn scan_wallets(
            &self,
            a: Option<String>,
            l: u64,
        ) -> Result<Vec<(String, WalletCommission)>, StoreError> {
            self.inner.scan_wallets(a, l).await
        }
    }

    async fn append(store: &Arc<dyn EventStore>, stream: &str, events: &[Event]) -> u64 {
        let new = events
            .iter()
            .map(|e| e.to_new_event(EventMetadata::default()))
            .collect();
        store
            .append(stream, ExpectedVersion::Any, new)
            .await
            .expect("append")
            .position
    }

    /// A batch the tables refused is neither lost nor counted twice: the runner starts again
    /// from what the tables hold, and the hot rows it had are dropped with it.
    #[tokio::test]
    async fn a_refused_commit_is_folded_again_from_the_tables_and_nothing_is_lost_or_doubled() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn EventStore> =
            Arc::new(SqliteStore::open(dir.path().join("events.sqlite3")).expect("open"));
        let flaky = Arc::new(Flaky {
            inner: store.read_models().unwrap(),
            failing: AtomicUsize::new(0),
            commits: AtomicUsize::new(0),
        });
        let runner = ProjectionRunner::start_with(
            Arc::clone(&store),
            flaky.clone(),
            NonZeroUsize::new(100).unwrap(),
        )
        .await
        .expect("start");
        let log = synthetic_log(5, 40, 3);
        let (first, rest) = log.split_at(log.len() / 2);
        for (stream, events) in first {
            append(&store, stream, events).await;
        }
        runner.wait_for(store.head().await.unwrap()).await;
        // The next three commits fail; the log goes on meanwhile.
        flaky.failing.store(3, Ordering::SeqCst);
        let before = flaky.commits.load(Ordering::SeqCst);
        let mut head = 0;
        for (stream, events) in rest {
            head = append(&store, stream, events).await;
        }
        tokio::time::timeout(std::time::Duration::from_secs(30), runner.wait_for(head))
            .await
            .expect("the runner caught up after the failures");
        assert!(flaky.commits.load(Ordering::SeqCst) >= before + 4);
        let live = runner.snapshot().await.unwrap();
        let folded = crate::ops::rebuild_in_memory(&store).await.unwrap();
        assert_eq!(live, folded, "the tables equal a fold of the whole log");
        runner.stop().await;
        store.close().await.unwrap();
    }
}
