//! The event store: the append-only log every order and wallet writes to, and the one
//! source of truth that projections, audits and replays read.
//!
//! `EventStore` is the port; `sqlite` is the embedded default backend. Every backend passes
//! the same contract suite (`tests/store_contract.rs` runs `contract::run_all` against each).

pub mod contract;
#[cfg(test)]
pub(crate) mod gate;
pub mod postgres;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use events::{DecodedEvent, ExpectedVersion, NewEvent, RecordedEvent};
use tokio::sync::watch;

pub use postgres::{PostgresConfig, PostgresStore};
pub use sqlite::SqliteStore;

/// Most appends a backend's writer commits in one transaction. Bounds the memory a burst can
/// pin and the time the first caller of a large group waits; a few hundred already shares one
/// sync among more callers than the gateway ever has in flight.
pub const GROUP_LIMIT: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The stream moved since the writer read it: reload and decide again.
    #[error("stream `{stream}` is at version {actual}, the append expected {expected:?}")]
    Conflict {
        stream: String,
        expected: ExpectedVersion,
        actual: u64,
    },
    /// An event id that is already stored: the append was a duplicate.
    #[error("event {0} is already stored")]
    DuplicateEventId(uuid::Uuid),
    #[error("an append needs at least one event")]
    EmptyAppend,
    /// The store is closed or its writer stopped.
    #[error("the event store is unavailable: {0}")]
    Unavailable(String),
    /// The read models are not at the position a commit started from: another writer moved
    /// them (or they were reset). Reload and fold again from where they are.
    #[error("the read models are at position {actual}, the commit started from {expected}")]
    ReadModelsMoved { expected: u64, actual: u64 },
    /// The backend failed (I/O, corruption). The message is for logs, never for clients.
    #[error("event store backend error: {0}")]
    Backend(String),
    /// The log holds an event this build cannot read (a newer version's, or a damaged one).
    /// Whatever depends on it (a payment to finish, a debt) cannot be decided without it, so
    /// the service refuses to start rather than act on a log it only partly understands.
    #[error("event {position} of stream `{stream}` ({event_type}) cannot be read by this build: {error}")]
    Undecodable {
        stream: String,
        position: u64,
        event_type: String,
        error: String,
    },
}

impl StoreError {
    pub fn undecodable(event: &RecordedEvent, error: impl std::fmt::Display) -> StoreError {
        StoreError::Undecodable {
            stream: event.stream.clone(),
            position: event.position,
            event_type: event.event_type.clone(),
            error: error.to_string(),
        }
    }
}

/// Where an append landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendResult {
    /// The stream's version after the append (its last event's version).
    pub version: u64,
    /// Global position of the last appended event.
    pub position: u64,
}

#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// A short name for `/health` and logs: `sqlite`, `postgres`, ….
    fn backend(&self) -> &'static str;

    /// Appends `events` to `stream` atomically if the stream is at `expected`. Durable when
    /// this returns `Ok`.
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError>;

    /// Events of `stream` with version ≥ `from_version`, in version order, at most `limit`.
    async fn read_stream(
        &self,
        stream: &str,
        from_version: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Events with global position > `after`, in position order, at most `limit`.
    async fn read_all(&self, after: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError>;

    /// `read_all`, decoded for a fold over the log: what folds need of each event (position,
    /// stream, type, time and the event), read straight from the stored text by backends
    /// that can, on the store's own threads, so the caller's thread only folds.
    async fn read_all_decoded(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<DecodedEvent>, StoreError> {
        Ok(self
            .read_all(after, limit)
            .await?
            .iter()
            .map(DecodedEvent::of)
            .collect())
    }

    /// The position of the last committed event (0 when empty).
    async fn head(&self) -> Result<u64, StoreError>;

    /// The current stream version (0 when the stream does not exist).
    async fn stream_version(&self, stream: &str) -> Result<u64, StoreError>;

    /// Notified with the head position after every commit. Subscriptions wait on it.
    fn head_watch(&self) -> watch::Receiver<u64>;

    /// Events of every stream of `category` (`order`, `wallet`: the part of a stream's name
    /// before its first `-`) with global position > `after`, in position order, at most
    /// `limit`. Answered from an index: it never scans the rest of the log.
    async fn read_category(
        &self,
        category: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// The read models kept in the same database as this log (the live set of tables).
    fn read_models(&self) -> Result<Arc<dyn crate::readmodel::ReadStore>, StoreError>;

    /// Stores events another store recorded, exactly as they were recorded (positions,
    /// versions, ids, times), in one transaction: for moving a log between stores
    /// (`migrate-store`). The first must be at the head + 1 and the rest follow it without a
    /// gap, each stream's versions continuing where the stream is; anything else is refused
    /// whole (`StoreError::Backend`, nothing stored).
    async fn import(&self, events: Vec<RecordedEvent>) -> Result<(), StoreError>;

    /// Stops taking appends and reads, lets the appends already queued commit (their callers
    /// get their answers), and releases the backend (files, connections). Returns once that
    /// is done, without blocking the async thread it is awaited on; later calls return at
    /// once. For a clean shutdown: dropping a store may leave that work running behind it.
    async fn close(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Why an import is refused, if it is: positions must go on from `head` one by one.
pub fn check_import(head: u64, events: &[RecordedEvent]) -> Result<(), StoreError> {
    for (i, e) in events.iter().enumerate() {
        let want = head + 1 + i as u64;
        if e.position != want {
            return Err(StoreError::Backend(format!(
                "an import must continue the log without a gap: event {} of the import is at \
                 position {}, the log needs {want}",
                i + 1,
                e.position
            )));
        }
    }
    Ok(())
}

/// Reads a whole stream.
pub async fn read_stream_all(
    store: &dyn EventStore,
    stream: &str,
) -> Result<Vec<RecordedEvent>, StoreError> {
    const PAGE: usize = 512;
    let mut out = Vec::new();
    loop {
        let page = store
            .read_stream(stream, out.len() as u64 + 1, PAGE)
            .await?;
        let done = page.len() < PAGE;
        out.extend(page);
        if done {
            return Ok(out);
        }
    }
}

/// A catch-up-then-live subscription to the whole log: yields every event after the start
/// position exactly once, in position order. It reads committed pages and, once caught up,
/// waits for the head to move; positions are gap-free in commit order, so reading "after the
/// last seen position" can neither skip nor repeat an event.
pub struct Subscription {
    store: Arc<dyn EventStore>,
    head: watch::Receiver<u64>,
    last: u64,
    buffer: std::collections::VecDeque<RecordedEvent>,
}

impl Subscription {
    const PAGE: usize = 1024;

    pub fn new(store: Arc<dyn EventStore>, after: u64) -> Subscription {
        let head = store.head_watch();
        Subscription {
            store,
            head,
            last: after,
            buffer: Default::default(),
        }
    }

    /// The position of the last event handed out.
    pub fn position(&self) -> u64 {
        self.last
    }

    /// The next event, waiting for one if the subscription has caught up.
    pub async fn next(&mut self) -> Result<RecordedEvent, StoreError> {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                self.last = event.position;
                return Ok(event);
            }
            // Mark the current head as seen before reading, so a commit that lands after the
            // read still wakes us.
            self.head.borrow_and_update();
            let page = self.store.read_all(self.last, Self::PAGE).await?;
            if page.is_empty() {
                self.head
                    .changed()
                    .await
                    .map_err(|_| StoreError::Unavailable("the store was closed".into()))?;
                continue;
            }
            self.buffer.extend(page);
        }
    }

    /// The next events: at least one (waiting for it if the subscription has caught up), at
    /// most `limit`, and no more than are already read: a batch never waits to fill up.
    pub async fn next_batch(&mut self, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let first = self.next().await?;
        let mut out = vec![first];
        while out.len() < limit {
            let Some(event) = self.buffer.pop_front() else {
                break;
            };
            self.last = event.position;
            out.push(event);
        }
        Ok(out)
    }

    /// Everything committed when this is called, without waiting: for "process what is
    /// pending" in workers and tests. It stops once it reaches the head it saw on entry, so
    /// writers that keep appending cannot keep it looping (or growing its result) for ever;
    /// the last page may run past that head, and the next call or `next` goes on from there.
    pub async fn drain_now(&mut self) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut out = Vec::new();
        self.drain_now_with(|e| out.push(e)).await?;
        Ok(out)
    }

    /// `drain_now`, handing each event to `f` page by page instead of collecting them: a
    /// catch-up over a long log holds one page in memory, not the log.
    pub async fn drain_now_with(
        &mut self,
        mut f: impl FnMut(RecordedEvent),
    ) -> Result<(), StoreError> {
        let target = self.store.head().await?;
        for event in self.buffer.drain(..) {
            self.last = event.position;
            f(event);
        }
        while self.last < target {
            let page = self.store.read_all(self.last, Self::PAGE).await?;
            let Some(e) = page.last() else {
                break;
            };
            self.last = e.position;
            page.into_iter().for_each(&mut f);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    /// A log that a busy writer grows by one event every time anyone reads it.
    struct EverGrowing {
        head: AtomicU64,
        reads: AtomicU64,
        watch: watch::Sender<u64>,
    }

    #[async_trait]
    impl EventStore for EverGrowing {
        fn backend(&self) -> &'static str {
            "ever-growing"
        }

        async fn append(
            &self,
            _: &str,
            _: ExpectedVersion,
            _: Vec<NewEvent>,
        ) -> Result<AppendResult, StoreError> {
            unreachable!("the test only reads")
        }

        async fn read_stream(
            &self,
            _: &str,
            _: u64,
            _: usize,
        ) -> Result<Vec<RecordedEvent>, StoreError> {
            unreachable!("the test only reads the whole log")
        }

        async fn read_all(
            &self,
            after: u64,
            limit: usize,
        ) -> Result<Vec<RecordedEvent>, StoreError> {
            let reads = self.reads.fetch_add(1, Ordering::SeqCst);
            assert!(reads < 1000, "still reading while the log keeps growing");
            let head = self.head.fetch_add(1, Ordering::SeqCst) + 1;
            Ok((after + 1..=head)
                .take(limit)
                .map(|position| RecordedEvent {
                    position,
                    stream: "order-1".into(),
                    version: position,
                    event_id: uuid::Uuid::new_v4(),
                    event_type: "Grown".into(),
                    schema_version: 1,
                    data: serde_json::Value::Null,
                    metadata: Default::default(),
                    recorded_at: chrono::Utc::now(),
                })
                .collect())
        }

        async fn head(&self) -> Result<u64, StoreError> {
            Ok(self.head.load(Ordering::SeqCst))
        }

        async fn stream_version(&self, _: &str) -> Result<u64, StoreError> {
            Ok(self.head.load(Ordering::SeqCst))
        }

        fn head_watch(&self) -> watch::Receiver<u64> {
            self.watch.subscribe()
        }

        async fn read_category(
            &self,
            _: &str,
            _: u64,
            _: usize,
        ) -> Result<Vec<RecordedEvent>, StoreError> {
            unreachable!("the test only reads the whole log")
        }

        fn read_models(&self) -> Result<Arc<dyn crate::readmodel::ReadStore>, StoreError> {
            Err(StoreError::Unavailable(
                "a test log without read models".into(),
            ))
        }

        async fn import(&self, _: Vec<RecordedEvent>) -> Result<(), StoreError> {
            unreachable!("the test only reads")
        }
    }

    /// A worker's "process what is pending" must return even when writers never pause.
    #[tokio::test]
    async fn drain_now_stops_at_the_head_it_found() {
        let store = Arc::new(EverGrowing {
            head: AtomicU64::new(3),
            reads: AtomicU64::new(0),
            watch: watch::channel(3).0,
        });
        let mut subscription = Subscription::new(store.clone(), 0);
        let drained = subscription.drain_now().await.expect("drain");
        let positions: Vec<u64> = drained.iter().map(|e| e.position).collect();
        // Everything up to the head at the call, plus what the same read happened to see.
        assert_eq!(positions, vec![1, 2, 3, 4]);
        assert_eq!(subscription.position(), 4);
    }
}
