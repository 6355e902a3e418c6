//! The embedded event store: one SQLite file in WAL mode, one writer thread that owns the
//! only write connection, and a small pool of read connections.
//!
//! Design, and why:
//! - **One writer thread.** Appends travel over a channel to a std thread that checks the
//!   expected version and inserts in the same place, so no other code path can read a
//!   version and write after someone else moved the stream. It also makes the writer the
//!   only source of positions: `last + 1`, in commit order, so readers never see a gap.
//! - **Group commit.** The writer takes every append already queued, writes them in turn
//!   (an append of several events in its own SAVEPOINT; a refused append rolls back
//!   alone), then COMMITs once, and the whole group shares one sync.
//! - **Pipelined sync.** The writer's connection runs with `synchronous=NORMAL`: a COMMIT
//!   writes the group to the WAL without waiting for the disk, and the writer goes on with
//!   the next group while a second thread, the syncer, `fdatasync`s the WAL (one sync for
//!   every commit made since its last one), then publishes the new head, then answers the
//!   callers. So `Ok` still means durable, and the disk's sync latency no longer idles the
//!   writer (on our machines it was a third of the writer's time with 256 callers).
//!   Readers see only what is synced: every read is bounded by the published head, so no
//!   reader, projection or actor acts on an event a power cut could take back. SQLite keeps
//!   the file consistent in this mode (it syncs the WAL before each checkpoint and the
//!   database after it); a sync that fails stops the store taking appends, and the callers
//!   in doubt are told so, since after a failed fsync the kernel may have dropped the pages
//!   it could not write (the lesson PostgreSQL learned in 2018).
//! - **No streams table.** A stream's version is `MAX(version)` over the `UNIQUE(stream,
//!   version)` index, one B-tree seek. A table of current versions would cost a second write
//!   per append and be a second copy of a fact the events already hold, one that could
//!   disagree with them after a bug or a hand edit; it only pays off where writers race for a
//!   row lock, which the single writer never does.
//! - **Readers never wait for the writer.** WAL lets read connections run beside the writer
//!   and see only committed transactions; reads go through `spawn_blocking` so the async
//!   runtime's threads never sit in SQLite.
//! - **One process per file.** A lock on `<file>-lock`, held by the writer thread, refuses a
//!   second store on the same file: it would not see the first one's head notifications,
//!   and two writers would fight over the next position.
//! - **Format version** in `PRAGMA user_version`; a file from a newer build is refused
//!   rather than half-understood.
//! - **Closing never blocks an async thread.** `close` (the `EventStore` one) awaits the
//!   writer without blocking; a drop only tells the writer to finish the queue and stop, and
//!   waits for it only where no runtime runs (a plain thread, `main`). The writer closes every
//!   connection on its own thread (the last close checkpoints the WAL: an fsync), then
//!   releases the file lock. An `open` of a file whose store this process dropped waits for
//!   that writer instead of refusing the file as in use.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use events::{EventMetadata, ExpectedVersion, NewEvent, RecordedEvent};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use tokio::sync::{mpsc, oneshot, watch, Notify, Semaphore};
use uuid::Uuid;

use super::{AppendResult, EventStore, StoreError};

/// The file format this build writes. Bump it with a migration (`migration`) when the schema
/// changes; older builds then refuse the file instead of misreading it.
/// (2: the read models' tables, and the index of category reads; 3: the service's keys;
/// 4: the webhook outbox.)
pub const FORMAT_VERSION: i64 = 4;

/// Most appends the writer puts in one transaction.
const MAX_GROUP: usize = super::GROUP_LIMIT;

/// Appends waiting for the writer. A full queue makes `append` wait (backpressure) instead of
/// growing memory without bound.
const QUEUE_DEPTH: usize = 1024;

/// Read connections kept open, and the most reads running at once. Reads are short indexed
/// scans; more connections than cores only adds contention.
const READERS: usize = 4;

/// How long a connection waits for a lock SQLite holds briefly (WAL recovery, checkpoints).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const SCHEMA: &str = "
CREATE TABLE events (
    position       INTEGER PRIMARY KEY CHECK (position >= 1),
    stream         TEXT    NOT NULL,
    version        INTEGER NOT NULL CHECK (version >= 1),
    event_id       TEXT    NOT NULL UNIQUE,
    event_type     TEXT    NOT NULL,
    schema_version INTEGER NOT NULL CHECK (schema_version BETWEEN 0 AND 65535),
    data           TEXT    NOT NULL CHECK (json_valid(data)),
    correlation_id TEXT,
    causation_id   TEXT,
    recorded_at    TEXT    NOT NULL,
    UNIQUE (stream, version)
) STRICT;
";

/// A stream's category (the part of its name before its first `-`, all of it if it has none), for the index `events_category` and the queries it answers: SQLite
/// uses an index on an expression only for a query that repeats the expression.
const CATEGORY: &str =
    "(CASE WHEN instr(stream, '-') > 0 THEN substr(stream, 1, instr(stream, '-') - 1) ELSE stream END)";

/// The SQL that brings a file from the format before to each format. Format 2: an index of the
/// streams' categories for category reads, and the read models' live tables
/// (`readmodel::sqlite::TABLES`).
fn migration(format: i64) -> String {
    match format {
        1 => SCHEMA.to_string(),
        2 => format!(
            "CREATE INDEX events_category ON events ({CATEGORY}, position);\n{}",
            crate::readmodel::sqlite::tables(crate::readmodel::TableSet::Live)
        ),
        3 => crate::readmodel::SQLITE_SERVICE_KEYS.to_string(),
        4 => crate::webhooks::outbox::SQLITE_TABLES.to_string(),
        other => unreachable!("no migration to format {other}"),
    }
}

const COLUMNS: &str = "position, stream, version, event_id, event_type, schema_version, data, \
                       correlation_id, causation_id, recorded_at";

/// The SQLite event store. Closing it ([`EventStore::close`], [`SqliteStore::close`]) or
/// dropping it lets the writer finish the appends already queued, then stops it and releases
/// the file.
pub struct SqliteStore {
    path: PathBuf,
    /// Each append sends on a clone. `None` once closing: when the last clone is gone the
    /// channel closes, which is the writer's signal to finish the queue and stop. An append
    /// that took its clone before the close is still queued, committed and answered.
    appends: Mutex<Option<mpsc::Sender<Request>>>,
    /// Set by the writer thread once it has stopped and released the file.
    stopped: Arc<Stopped>,
    /// The file as `open` names it when it looks for this store closing (`CLOSING`).
    canonical: PathBuf,
    readers: Arc<ReadPool>,
    /// Caps reads in flight so the pool never opens more than `READERS` connections.
    read_permits: Arc<Semaphore>,
    head: watch::Receiver<u64>,
    stats: Arc<WriterCounters>,
    /// The read models' connections to this file, refused once this store closes.
    read_models: Arc<crate::readmodel::sqlite::Shared>,
    closing: Arc<AtomicBool>,
}

/// How well group commit is doing: `appends / commits` is the average group size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupCommitStats {
    /// Transactions that stored at least one append (one fsync each).
    pub commits: u64,
    /// Appends stored by those transactions.
    pub appends: u64,
}

#[derive(Default)]
struct WriterCounters {
    commits: AtomicU64,
    appends: AtomicU64,
}

/// One caller's append on its way to the writer, already encoded so the writer thread spends
/// its time in SQLite only.
/// What the writer thread is asked to do.
enum Request {
    Append(AppendRequest),
    Import(ImportRequest),
}

/// Events of another store, to be stored as they are (`EventStore::import`).
struct ImportRequest {
    events: Vec<RecordedEvent>,
    reply: oneshot::Sender<Result<(), StoreError>>,
}

struct AppendRequest {
    stream: String,
    expected: ExpectedVersion,
    events: Vec<EncodedEvent>,
    reply: oneshot::Sender<Outcome>,
}

type Outcome = Result<AppendResult, StoreError>;

struct EncodedEvent {
    event_id: Uuid,
    event_type: String,
    schema_version: u16,
    data: String,
    correlation_id: Option<String>,
    causation_id: Option<String>,
}

impl EncodedEvent {
    fn encode(event: NewEvent) -> Result<EncodedEvent, StoreError> {
        let data = serde_json::to_string(&event.data)
            .map_err(|e| StoreError::Backend(format!("event {} data: {e}", event.event_id)))?;
        Ok(EncodedEvent {
            event_id: event.event_id,
            event_type: event.event_type,
            schema_version: event.schema_version,
            data,
            correlation_id: event.metadata.correlation_id.map(uuid_text),
            causation_id: event.metadata.causation_id.map(uuid_text),
        })
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path`, e.g. `<data_dir>/events.sqlite3`.
    /// Blocks for the schema check and, on a new file, one commit; call it at startup.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        Self::open_with(path.as_ref(), Hooks::default())
    }

    /// `open`, with hooks tests use to hold the writer or the syncer where a slow disk
    /// would, or to make a sync fail.
    fn open_with(path: &Path, hooks: Hooks) -> Result<SqliteStore, StoreError> {
        let path = path.to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // A first start (sandbox mode's fresh `./data`) should not need a manual mkdir.
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Backend(format!("creating directory {}: {e}", dir.display()))
            })?;
        }
        wait_for_closing(&path);
        let lock = lock_file(&path)?;
        let conn = open_writer(&path)?;
        let canonical = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        let (head, last_recorded_at) = last_event(&conn)?;
        let readers = Arc::new(ReadPool {
            path: path.clone(),
            idle: Mutex::default(),
        });
        // Open one reader now so a file the readers cannot use fails here, not on first read.
        readers.put(open_reader(&path)?);

        let (head_tx, head_rx) = watch::channel(head);
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let stats = Arc::new(WriterCounters::default());
        let failed = Arc::new(AtomicBool::new(false));
        let (synced, syncer) = Syncer {
            wal: open_wal(&path)?,
            head: head_tx,
            failed: Arc::clone(&failed),
            before_sync: hooks.before_sync,
        }
        .start()?;
        let writer = Writer {
            conn,
            synced: Some(synced),
            failed,
            last_recorded_at,
            stats: stats.clone(),
            before_commit: hooks.before_commit,
        };
        let stopped = Arc::new(Stopped::default());
        let (pool, done) = (Arc::clone(&readers), Arc::clone(&stopped));
        std::thread::Builder::new()
            .name("event-store-writer".into())
            .spawn(move || {
                let mut writer = writer;
                let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| writer.run(rx)));
                // The syncer syncs and answers what the writer committed, then stops when the
                // writer's sender is gone; the store is closed only once it has.
                drop(writer.synced.take());
                let synced = syncer.join();
                // Readers first, so that the writer's connection is the last one: its close
                // checkpoints the WAL into the file, an fsync that belongs here and not on
                // whichever thread dropped the store.
                drop(pool.close());
                drop(writer);
                // Held until now: no other store can write this file while this one might.
                drop(lock);
                let outcome = match (run, synced) {
                    (Ok(()), Ok(())) => Ok(()),
                    (Err(panic), _) => {
                        let message = crate::panic_message(&*panic);
                        tracing::error!(panic = %message, "the event store writer panicked");
                        Err(message)
                    }
                    (Ok(()), Err(panic)) => {
                        let message = crate::panic_message(&*panic);
                        tracing::error!(panic = %message, "the event store syncer panicked");
                        Err(format!("the syncer: {message}"))
                    }
                };
                done.finish(outcome);
            })
            .map_err(|e| StoreError::Backend(format!("starting the writer thread: {e}")))?;
        tracing::info!(path = %path.display(), head, "event store opened");
        let closing = Arc::new(AtomicBool::new(false));
        Ok(SqliteStore {
            read_models: crate::readmodel::sqlite::Shared::new(&path, Arc::clone(&closing)),
            closing,
            path,
            appends: Mutex::new(Some(tx)),
            stopped,
            canonical,
            readers,
            read_permits: Arc::new(Semaphore::new(READERS)),
            head: head_rx,
            stats,
        })
    }

    /// The database file this store writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The last position on disk for sure (pipelined sync): what reads are bounded by.
    fn synced(&self) -> u64 {
        *self.head.borrow()
    }

    pub fn group_commit_stats(&self) -> GroupCommitStats {
        GroupCommitStats {
            commits: self.stats.commits.load(Ordering::Relaxed),
            appends: self.stats.appends.load(Ordering::Relaxed),
        }
    }

    /// Stops the writer after the queued appends and releases the file, and says whether the
    /// writer stopped cleanly. Blocks until it has: for code outside a runtime (tools,
    /// `main`); async code awaits [`EventStore::close`].
    pub fn close(self) -> Result<(), StoreError> {
        self.begin_close();
        self.stopped.wait()
    }

    /// Refuses appends and reads from now on. Reads already running finish; appends already
    /// sending are queued, and the writer commits the queue before it stops.
    fn begin_close(&self) {
        self.closing.store(true, Ordering::SeqCst);
        drop(lock(&self.appends).take());
        self.read_permits.close();
    }

    /// Runs `read` on a pooled read connection off the async threads.
    async fn read<T, F>(&self, read: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let permit = self
            .read_permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Unavailable("the store is closed".into()))?;
        let pool = self.readers.clone();
        let task = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let conn = match pool.take() {
                Some(conn) => conn,
                None => open_reader(&pool.path)?,
            };
            let out = read(&conn);
            pool.put(conn);
            out
        });
        match task.await {
            Ok(out) => out,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(StoreError::Unavailable(
                "the runtime is shutting down".into(),
            )),
        }
    }
}

/// The writer is told to stop and, on an async thread, left to do so alone: joining it there
/// would stall every task of that thread for the rest of the queue and the final fsync. Only
/// a thread outside any runtime waits, as it always could, so that a tool's `main` does not
/// exit under a writer still committing. Nothing queued is dropped either way: the writer
/// commits and answers everything queued before it stops.
impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.begin_close();
        if self.stopped.is_done() {
            return;
        }
        if tokio::runtime::Handle::try_current().is_ok() {
            closing(self.canonical.clone(), Arc::clone(&self.stopped));
        } else {
            // A panic is logged by the writer thread itself.
            let _ = self.stopped.wait();
        }
    }
}

/// The end of a store's writer thread, for whoever waits for it: an async `close`, a blocking
/// `close` or drop, or an `open` of the same file.
#[derive(Default)]
struct Stopped {
    /// `Some` once the writer has stopped and released the file; `Err` holds a panic's message.
    outcome: Mutex<Option<Result<(), String>>>,
    /// For blocking waiters.
    finished: Condvar,
    /// For async ones.
    notify: Notify,
}

impl Stopped {
    fn finish(&self, outcome: Result<(), String>) {
        *lock(&self.outcome) = Some(outcome);
        self.finished.notify_all();
        self.notify.notify_waiters();
    }

    fn is_done(&self) -> bool {
        lock(&self.outcome).is_some()
    }

    fn result(outcome: &Result<(), String>) -> Result<(), StoreError> {
        outcome
            .clone()
            .map_err(|panic| StoreError::Backend(format!("the writer thread panicked: {panic}")))
    }

    fn wait(&self) -> Result<(), StoreError> {
        let outcome = self
            .finished
            .wait_while(lock(&self.outcome), |outcome| outcome.is_none())
            .unwrap_or_else(PoisonError::into_inner);
        Stopped::result(outcome.as_ref().expect("waited until set"))
    }

    async fn stopped(&self) -> Result<(), StoreError> {
        loop {
            // Registered before the check, so a `finish` between the two still wakes us.
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(outcome) = lock(&self.outcome).as_ref() {
                return Stopped::result(outcome);
            }
            notified.await;
        }
    }
}

/// Stores dropped on an async thread whose writers may still hold their files. The lock file
/// cannot tell "in use" from "closing", but this process can: `open` waits for these.
static CLOSING: Mutex<Vec<(PathBuf, Arc<Stopped>)>> = Mutex::new(Vec::new());

fn closing(file: PathBuf, stopped: Arc<Stopped>) {
    let mut closing = lock(&CLOSING);
    closing.retain(|(_, s)| !s.is_done());
    closing.push((file, stopped));
}

/// Blocks until the writers of stores of `path` that this process dropped have stopped (it
/// is part of `open`, which blocks anyway): reopening right after a drop works, and waits only
/// for the rest of that store's queue.
fn wait_for_closing(path: &Path) {
    let Ok(file) = std::fs::canonicalize(path) else {
        return; // No file yet, so no store of it.
    };
    let waits: Vec<Arc<Stopped>> = {
        let mut closing = lock(&CLOSING);
        closing.retain(|(_, s)| !s.is_done());
        closing
            .iter()
            .filter(|(f, _)| *f == file)
            .map(|(_, s)| Arc::clone(s))
            .collect()
    };
    for stopped in waits {
        // A panic is logged by that writer; its file is released all the same.
        let _ = stopped.wait();
    }
}

/// The mutexes here guard values that a panic cannot leave half-updated (a flag, an
/// `Option` that is set or taken, a list pushed to or popped), so poison is moot.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[async_trait]
impl EventStore for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
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
            .map(EncodedEvent::encode)
            .collect::<Result<Vec<_>, _>>()?;
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
            .send(Request::Append(request))
            .await
            .map_err(|_| StoreError::Unavailable("the event store writer has stopped".into()))?;
        // Queued: the writer will answer it. Our clone must not keep the channel open.
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
        let synced = self.synced();
        self.read(move |conn| {
            let sql = format!(
                "SELECT {COLUMNS} FROM events WHERE stream = ?1 AND version >= ?2 \
                 AND position <= ?4 ORDER BY version LIMIT ?3"
            );
            query_events(
                conn,
                &sql,
                params![
                    stream,
                    sql_int(from_version),
                    sql_limit(limit),
                    sql_int(synced)
                ],
            )
        })
        .await
    }

    async fn read_all_decoded(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<events::DecodedEvent>, StoreError> {
        let synced = self.synced();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT position, stream, event_type, schema_version, data, recorded_at \
                     FROM events WHERE position > ?1 AND position <= ?3 ORDER BY position \
                     LIMIT ?2",
                )
                .map_err(db("preparing a read"))?;
            let mut rows = stmt
                .query(params![sql_int(after), sql_limit(limit), sql_int(synced)])
                .map_err(db("reading events"))?;
            let mut out = Vec::with_capacity(limit.min(4096));
            while let Some(row) = rows.next().map_err(db("reading events"))? {
                let column = |e: rusqlite::Error| corrupt("column", e);
                let position: i64 = row.get(0).map_err(column)?;
                let event_type: String = row.get(2).map_err(column)?;
                let schema_version: u16 = row.get(3).map_err(column)?;
                // Borrowed from the row: the text is read straight into the event.
                let data = row
                    .get_ref(4)
                    .map_err(column)?
                    .as_str()
                    .map_err(|e| corrupt("data", e))?;
                let event = events::Event::decode_str(&event_type, schema_version, data);
                let recorded_at = parse_recorded_at(
                    row.get_ref(5)
                        .map_err(column)?
                        .as_str()
                        .map_err(|e| corrupt("recorded_at", e))?,
                )?;
                out.push(events::DecodedEvent {
                    position: stored_u64("position", position)?,
                    stream: row.get(1).map_err(column)?,
                    event_type,
                    recorded_at,
                    event,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn read_all(&self, after: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let synced = self.synced();
        self.read(move |conn| {
            let sql = format!(
                "SELECT {COLUMNS} FROM events WHERE position > ?1 AND position <= ?3 \
                 ORDER BY position LIMIT ?2"
            );
            query_events(
                conn,
                &sql,
                params![sql_int(after), sql_limit(limit), sql_int(synced)],
            )
        })
        .await
    }

    /// The synced head, which the syncer publishes: the table may hold later events, committed
    /// but not yet on disk for sure, which no reader is shown.
    async fn head(&self) -> Result<u64, StoreError> {
        if self.closing.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("the store is closed".into()));
        }
        Ok(self.synced())
    }

    async fn stream_version(&self, stream: &str) -> Result<u64, StoreError> {
        let stream = stream.to_string();
        let synced = self.synced();
        self.read(move |conn| {
            // Newest first along the `UNIQUE (stream, version)` index, whose entries carry
            // the position (the rowid): the first synced one is usually the first looked at.
            conn.prepare_cached(
                "SELECT version FROM events WHERE stream = ?1 AND position <= ?2 \
                 ORDER BY version DESC LIMIT 1",
            )
            .and_then(|mut stmt| {
                stmt.query_row(params![stream, sql_int(synced)], |row| row.get::<_, i64>(0))
                    .optional()
            })
            .map(|version| version.map_or(0, sql_u64))
            .map_err(db("reading a stream version"))
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
        let category = category.to_string();
        let synced = self.synced();
        self.read(move |conn| {
            // The same expression as the index `events_category`, so the index answers it.
            let sql = format!(
                "SELECT {COLUMNS} FROM events WHERE {CATEGORY} = ?1 AND position > ?2 \
                 AND position <= ?4 ORDER BY position LIMIT ?3"
            );
            query_events(
                conn,
                &sql,
                params![category, sql_int(after), sql_limit(limit), sql_int(synced)],
            )
        })
        .await
    }

    fn read_models(&self) -> Result<Arc<dyn crate::readmodel::ReadStore>, StoreError> {
        Ok(Arc::new(crate::readmodel::sqlite::SqliteReadStore::live(
            Arc::clone(&self.read_models),
        )))
    }

    async fn import(&self, events: Vec<RecordedEvent>) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        let writer = lock(&self.appends)
            .clone()
            .ok_or_else(|| StoreError::Unavailable("the store is closed".into()))?;
        writer
            .send(Request::Import(ImportRequest { events, reply }))
            .await
            .map_err(|_| StoreError::Unavailable("the event store writer has stopped".into()))?;
        drop(writer);
        answer.await.map_err(|_| {
            StoreError::Unavailable("the event store writer stopped before answering".into())
        })?
    }

    async fn close(&self) -> Result<(), StoreError> {
        self.begin_close();
        self.stopped.stopped().await
    }
}

/// Owns the only write connection. Runs on its own thread until the request channel closes.
struct Writer {
    conn: Connection,
    /// Each commit goes to the syncer, which syncs the WAL, publishes the head and answers.
    /// `None` once the writer has stopped (the syncer then finishes and stops).
    synced: Option<std::sync::mpsc::Sender<Committed>>,
    /// Set by the syncer when a sync failed: nothing written after it could be made durable,
    /// so the writer refuses every append from then on.
    failed: Arc<AtomicBool>,
    /// `recorded_at` never goes backwards along positions, even if the wall clock does, so a
    /// reader can treat position order as time order.
    last_recorded_at: DateTime<Utc>,
    stats: Arc<WriterCounters>,
    before_commit: Option<CommitHook>,
}

type CommitHook = Arc<dyn Fn() + Send + Sync>;
type SyncHook = Arc<dyn Fn() -> std::io::Result<()> + Send + Sync>;

/// Where tests hold or break the store: before each COMMIT (on the writer thread) and before
/// each sync (on the syncer thread, whose error stands for the sync's own).
#[derive(Default)]
struct Hooks {
    before_commit: Option<CommitHook>,
    before_sync: Option<SyncHook>,
}

/// What callers are told once a sync failed (the writer refuses their appends).
const SYNC_FAILED: &str = "the event store stopped taking appends: syncing its log to disk \
                           failed; restart the service";

/// A committed transaction on its way to the syncer, with the answers it holds back until
/// its events are on disk.
struct Committed {
    /// The head after this transaction, if it stored anything; `None` if it stored nothing
    /// (only refusals, or it failed), which needs no sync but is answered in turn: a refusal
    /// was judged against the commits before it.
    head: Option<u64>,
    answers: Answers,
}

enum Answers {
    Appends(Vec<(oneshot::Sender<Outcome>, Outcome)>),
    Import(
        oneshot::Sender<Result<(), StoreError>>,
        Result<(), StoreError>,
    ),
}

impl Committed {
    /// Sends the answers: as decided if the commits up to this one are synced, all as
    /// `failure` if a sync failed (the events may or may not be on disk, which is the
    /// caller's to know).
    fn answer(self, failure: Option<&str>) {
        fn settle<T>(
            decided: Result<T, StoreError>,
            failure: Option<&str>,
        ) -> Result<T, StoreError> {
            match failure {
                None => decided,
                Some(why) => Err(StoreError::Backend(why.to_string())),
            }
        }
        // A caller that gave up waiting dropped its receiver; its append stands anyway, as
        // it would had the reply been lost on the way.
        match self.answers {
            Answers::Appends(answers) => {
                for (reply, decided) in answers {
                    let _ = reply.send(settle(decided, failure));
                }
            }
            Answers::Import(reply, decided) => {
                let _ = reply.send(settle(decided, failure));
            }
        }
    }
}

impl Writer {
    fn run(&mut self, mut requests: mpsc::Receiver<Request>) {
        let mut group = Vec::with_capacity(MAX_GROUP);
        // `blocking_recv` keeps returning queued requests after the store drops its sender,
        // so everything accepted before close is still written.
        while let Some(first) = requests.blocking_recv() {
            let mut import = None;
            match first {
                Request::Append(a) => group.push(a),
                Request::Import(i) => import = Some(i),
            }
            // Appends queued behind an import wait for it: the group ends where one is met.
            while import.is_none() && group.len() < MAX_GROUP {
                match requests.try_recv() {
                    Ok(Request::Append(a)) => group.push(a),
                    Ok(Request::Import(i)) => import = Some(i),
                    Err(_) => break,
                }
            }
            if !group.is_empty() {
                self.commit_group(std::mem::take(&mut group));
            }
            if let Some(ImportRequest { events, reply }) = import {
                if self.failed.load(Ordering::SeqCst) {
                    let _ = reply.send(Err(StoreError::Unavailable(SYNC_FAILED.into())));
                    continue;
                }
                let outcome = self.import(&events);
                let head = match (&outcome, events.last()) {
                    (Ok(()), Some(last)) => Some(last.position),
                    _ => None,
                };
                self.hand_over(Committed {
                    head,
                    answers: Answers::Import(reply, outcome),
                });
            }
        }
        tracing::debug!("event store writer stopped");
    }

    /// Passes a commit to the syncer. If the syncer is gone (it panicked), nothing can be
    /// synced any more: the callers are told their appends are in doubt, and the writer
    /// refuses the rest.
    fn hand_over(&mut self, committed: Committed) {
        let Some(synced) = &self.synced else {
            unreachable!("the writer hands over commits only while it runs");
        };
        if let Err(std::sync::mpsc::SendError(committed)) = synced.send(committed) {
            if !self.failed.swap(true, Ordering::SeqCst) {
                tracing::error!(
                    "the event store syncer stopped; appends are refused until a restart"
                );
            }
            committed.answer(Some(
                "the event store syncer stopped before this append was synced: it may or may \
                 not be stored; restart the service",
            ));
        }
    }

    /// Stores another store's events as they were recorded, in one transaction.
    fn import(&mut self, events: &[RecordedEvent]) -> Result<(), StoreError> {
        let Some(last) = events.last() else {
            return Ok(());
        };
        let written = (|| -> Result<(), StoreError> {
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(db("starting an import"))?;
            let (head, _) = last_event(&tx)?;
            super::check_import(head, events)?;
            {
                let mut insert = tx
                    .prepare_cached(INSERT_EVENT)
                    .map_err(db("preparing the import"))?;
                for e in events {
                    let version =
                        stream_version(&tx, &e.stream).map_err(db("reading a stream version"))?;
                    if e.version != version + 1 {
                        return Err(StoreError::Backend(format!(
                            "an import must continue each stream: event at position {} is \
                             version {} of `{}`, which is at version {version}",
                            e.position, e.version, e.stream
                        )));
                    }
                    let data = serde_json::to_string(&e.data).map_err(|err| {
                        StoreError::Backend(format!("event {} data: {err}", e.event_id))
                    })?;
                    insert
                        .execute(params![
                            sql_int(e.position),
                            e.stream,
                            sql_int(e.version),
                            uuid_text(e.event_id),
                            e.event_type,
                            e.schema_version,
                            data,
                            e.metadata.correlation_id.map(uuid_text),
                            e.metadata.causation_id.map(uuid_text),
                            format_recorded_at(e.recorded_at),
                        ])
                        .map_err(|err| {
                            if is_duplicate_event_id(&err) {
                                StoreError::DuplicateEventId(e.event_id)
                            } else {
                                db("importing an event")(err)
                            }
                        })?;
                }
            }
            tx.commit().map_err(db("committing an import"))
        })();
        if written.is_ok() {
            self.last_recorded_at = self.last_recorded_at.max(last.recorded_at);
        }
        written
    }

    /// Writes a group in one transaction and hands it to the syncer, which publishes the head
    /// once it is on disk and then answers each caller. Publishing first means a caller
    /// holding its `Ok` already sees the head at or past its events.
    fn commit_group(&mut self, group: Vec<AppendRequest>) {
        if self.failed.load(Ordering::SeqCst) {
            for request in group {
                let _ = request
                    .reply
                    .send(Err(StoreError::Unavailable(SYNC_FAILED.into())));
            }
            return;
        }
        let recorded_at = Utc::now().trunc_subsecs(6).max(self.last_recorded_at);
        let mut new_head = None;
        let outcomes = match self.write_group(&group, recorded_at) {
            Ok((outcomes, head)) => {
                let stored = outcomes.iter().filter(|o| o.is_ok()).count() as u64;
                if stored > 0 {
                    self.last_recorded_at = recorded_at;
                    self.stats.commits.fetch_add(1, Ordering::Relaxed);
                    self.stats.appends.fetch_add(stored, Ordering::Relaxed);
                    new_head = Some(head);
                }
                outcomes
            }
            Err(e) => {
                // Nothing of the group is stored (or we cannot know that it is, which the
                // callers must treat the same way): every caller gets the error, including
                // those whose append was refused, since their refusal was judged against
                // appends that did not commit.
                tracing::error!(error = %e, appends = group.len(), "event store group commit failed");
                if !self.conn.is_autocommit() {
                    if let Err(e) = self.conn.execute_batch("ROLLBACK") {
                        tracing::error!(error = %e, "event store rollback failed");
                    }
                }
                group
                    .iter()
                    .map(|_| Err(StoreError::Backend(format!("group commit failed: {e}"))))
                    .collect()
            }
        };
        let answers = group
            .into_iter()
            .zip(outcomes)
            .map(|(request, outcome)| (request.reply, outcome))
            .collect();
        self.hand_over(Committed {
            head: new_head,
            answers: Answers::Appends(answers),
        });
    }

    /// The group's transaction: each request's outcome and the head after it. `Err` means
    /// the transaction itself failed and nothing was committed; refusals of single appends
    /// are outcomes.
    fn write_group(
        &mut self,
        group: &[AppendRequest],
        recorded_at: DateTime<Utc>,
    ) -> Result<(Vec<Outcome>, u64), rusqlite::Error> {
        let recorded_at = format_recorded_at(recorded_at);
        // IMMEDIATE takes the write lock up front, so the head read below cannot be stale.
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        // Re-read rather than trust memory: after a failed commit the table is the truth.
        let mut head = sql_u64(
            self.conn
                .prepare_cached("SELECT COALESCE(MAX(position), 0) FROM events")?
                .query_row([], |row| row.get::<_, i64>(0))?,
        );
        let mut outcomes = Vec::with_capacity(group.len());
        // Looked up once per group rather than per append (each lookup hashes the SQL).
        let mut statements = AppendStatements {
            version: self.conn.prepare_cached(STREAM_VERSION)?,
            insert: self.conn.prepare_cached(INSERT_EVENT)?,
        };
        for request in group {
            // An append of several events is undone whole if one of them is refused (a
            // duplicate id), so it runs in a savepoint. One event needs none: its version is
            // checked before anything is written, and a refused INSERT leaves nothing. Most
            // appends are of one event, and a savepoint copies every page it touches first.
            let savepoint = request.events.len() > 1;
            if savepoint {
                // Prepared once: a group runs these for every append of several events.
                self.conn.prepare_cached("SAVEPOINT append")?.execute([])?;
            }
            match Self::insert(&mut statements, request, head, &recorded_at)? {
                Ok(result) => {
                    if savepoint {
                        self.conn.prepare_cached("RELEASE append")?.execute([])?;
                    }
                    head = result.position;
                    outcomes.push(Ok(result));
                }
                Err(refused) => {
                    if savepoint {
                        self.conn
                            .execute_batch("ROLLBACK TO append; RELEASE append")?;
                    }
                    outcomes.push(Err(refused));
                }
            }
        }
        if let Some(hook) = &self.before_commit {
            hook();
        }
        self.conn.execute_batch("COMMIT")?;
        Ok((outcomes, head))
    }

    /// One append: its result, or why it is refused (`Ok(Err(_))`: a version conflict, found
    /// before anything is written, or a duplicate event id, whose INSERT SQLite undoes
    /// alone). Any other failure (`Err`) leaves the transaction in doubt, and the group
    /// fails whole. The version check and the inserts see the same snapshot because this
    /// thread is the only writer.
    fn insert(
        statements: &mut AppendStatements<'_>,
        request: &AppendRequest,
        head: u64,
        recorded_at: &str,
    ) -> Result<Result<AppendResult, StoreError>, rusqlite::Error> {
        let actual = statements
            .version
            .query_row([&request.stream], |row| row.get::<_, i64>(0))
            .map(sql_u64)?;
        if !request.expected.matches(actual) {
            return Ok(Err(StoreError::Conflict {
                stream: request.stream.clone(),
                expected: request.expected,
                actual,
            }));
        }
        let insert = &mut statements.insert;
        let mut result = AppendResult {
            version: actual,
            position: head,
        };
        for event in &request.events {
            result.version += 1;
            result.position += 1;
            let inserted = insert.execute(params![
                sql_int(result.position),
                request.stream,
                sql_int(result.version),
                uuid_text(event.event_id),
                event.event_type,
                event.schema_version,
                event.data,
                event.correlation_id,
                event.causation_id,
                recorded_at,
            ]);
            match inserted {
                Ok(_) => {}
                Err(e) if is_duplicate_event_id(&e) => {
                    return Ok(Err(StoreError::DuplicateEventId(event.event_id)))
                }
                Err(e) => return Err(e),
            }
        }
        Ok(Ok(result))
    }
}

/// Makes commits durable and answers their callers, on a thread of its own so the writer never
/// waits for the disk (see "Pipelined sync" above).
struct Syncer {
    /// The store's WAL, which every commit writes (the database file is synced by SQLite
    /// itself at each checkpoint, after syncing the WAL).
    wal: File,
    /// The synced head; the syncer is the only sender.
    head: watch::Sender<u64>,
    failed: Arc<AtomicBool>,
    before_sync: Option<SyncHook>,
}

impl Syncer {
    fn start(
        self,
    ) -> Result<
        (
            std::sync::mpsc::Sender<Committed>,
            std::thread::JoinHandle<()>,
        ),
        StoreError,
    > {
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("event-store-sync".into())
            .spawn(move || self.run(rx))
            .map_err(|e| StoreError::Backend(format!("starting the sync thread: {e}")))?;
        Ok((tx, thread))
    }

    /// Takes every commit waiting, syncs once for all of them, publishes the head, answers.
    /// Commits arrive in commit order, so the head only grows, and a refusal is answered only
    /// once the commits it was judged against are on disk.
    fn run(self, commits: std::sync::mpsc::Receiver<Committed>) {
        let mut batch = Vec::new();
        while let Ok(first) = commits.recv() {
            batch.push(first);
            batch.extend(commits.try_iter());
            let head = batch.iter().filter_map(|c| c.head).max();
            let failure = if self.failed.load(Ordering::SeqCst) {
                Some(IN_DOUBT)
            } else if let Some(head) = head {
                match self.sync() {
                    Ok(()) => {
                        self.head.send_replace(head);
                        None
                    }
                    Err(e) => {
                        self.failed.store(true, Ordering::SeqCst);
                        tracing::error!(error = %e, head, "syncing the event log to disk failed; the store takes no more appends until a restart");
                        Some(IN_DOUBT)
                    }
                }
            } else {
                None
            };
            for committed in batch.drain(..) {
                committed.answer(failure);
            }
        }
    }

    fn sync(&self) -> std::io::Result<()> {
        if let Some(hook) = &self.before_sync {
            hook()?;
        }
        self.wal.sync_data()
    }
}

/// What the callers of commits a failed sync covered are told.
const IN_DOUBT: &str = "syncing the event log to disk failed: this append may or may not be \
                        stored (a restart shows which), and the store takes no more appends \
                        until the service restarts";

/// The WAL of the store at `path`, for the syncer. SQLite removes a WAL only when the last
/// connection to the file closes, and the writer's connection stays open until the syncer
/// has stopped, so this handle is the WAL the syncer's whole life (a checkpoint truncates
/// or rewrites it in place, the same file).
fn open_wal(path: &Path) -> Result<File, StoreError> {
    let mut name = path.as_os_str().to_owned();
    name.push("-wal");
    let wal = PathBuf::from(name);
    // Written to (never through this handle): some systems sync only a handle open for writing.
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(&wal)
        .map_err(|e| StoreError::Backend(format!("opening the log {}: {e}", wal.display())))
}

/// The statements of an append, prepared once for a group.
struct AppendStatements<'conn> {
    version: rusqlite::CachedStatement<'conn>,
    insert: rusqlite::CachedStatement<'conn>,
}

/// A stream's version, everything committed counted (the writer's view).
const STREAM_VERSION: &str = "SELECT COALESCE(MAX(version), 0) FROM events WHERE stream = ?1";

const INSERT_EVENT: &str = "INSERT INTO events (position, stream, version, event_id, event_type, \
                            schema_version, data, correlation_id, causation_id, recorded_at) \
                            VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";

/// Idle read connections. Connections are opened lazily up to the semaphore's limit and kept.
struct ReadPool {
    path: PathBuf,
    idle: Mutex<Idle>,
}

#[derive(Default)]
struct Idle {
    connections: Vec<Connection>,
    /// Set when the writer stops: a connection handed back later is closed by the read that
    /// used it, on its blocking thread, instead of waiting for the last handle's drop.
    closed: bool,
}

impl ReadPool {
    fn take(&self) -> Option<Connection> {
        lock(&self.idle).connections.pop()
    }

    fn put(&self, conn: Connection) {
        let mut idle = lock(&self.idle);
        if !idle.closed && idle.connections.len() < READERS {
            idle.connections.push(conn);
        }
    }

    /// The idle connections, for the writer thread to close; later ones are not kept.
    fn close(&self) -> Vec<Connection> {
        let mut idle = lock(&self.idle);
        idle.closed = true;
        std::mem::take(&mut idle.connections)
    }
}

/// The lock file stays on disk after close: deleting it could let a process that opened it
/// just before the delete hold a lock on a name nobody else will ever open again.
fn lock_file(path: &Path) -> Result<File, StoreError> {
    let mut name = path.as_os_str().to_owned();
    name.push("-lock");
    let lock_path = PathBuf::from(name);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| StoreError::Backend(format!("opening {}: {e}", lock_path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(StoreError::Unavailable(format!(
            "{} is already open in another event store (another process, or this one)",
            path.display()
        ))),
        Err(TryLockError::Error(e)) => Err(StoreError::Backend(format!(
            "locking {}: {e}",
            lock_path.display()
        ))),
    }
}

fn open_writer(path: &Path) -> Result<Connection, StoreError> {
    let at = |what: &'static str| {
        let path = path.display().to_string();
        move |e: rusqlite::Error| StoreError::Backend(format!("{what} {path}: {e}"))
    };
    let mut conn = Connection::open(path).map_err(at("opening"))?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(at("configuring"))?;
    // Check the format before changing anything in the file (WAL mode is written to it).
    let found: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(at("reading the format of"))?;
    check_format(path, found)?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(at("enabling WAL on"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Backend(format!(
            "{} cannot use WAL (journal mode stays {mode})",
            path.display()
        )));
    }
    // A migration is synced as it commits, before anything relies on it.
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(at("configuring"))?;
    if found < FORMAT_VERSION {
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(at("migrating"))?;
        if found == 0 {
            let objects: i64 = tx
                .query_row("SELECT COUNT(*) FROM sqlite_schema", [], |row| row.get(0))
                .map_err(at("reading the schema of"))?;
            if objects > 0 {
                return Err(StoreError::Backend(format!(
                    "{} is an SQLite database but not an event store (format version 0 with {objects} schema objects); refusing to add tables to it",
                    path.display()
                )));
            }
        }
        for format in found + 1..=FORMAT_VERSION {
            tx.execute_batch(&migration(format))
                .map_err(at("migrating"))?;
        }
        tx.pragma_update(None, "user_version", FORMAT_VERSION)
            .map_err(at("migrating"))?;
        tx.commit().map_err(at("migrating"))?;
        if found > 0 {
            tracing::info!(path = %path.display(), from = found, to = FORMAT_VERSION, "event store file migrated");
        }
    }
    // NORMAL from here: a commit does not wait for the disk; the syncer thread syncs the WAL
    // before any caller is answered or any reader sees the commit (module docs, "Pipelined
    // sync"). SQLite still syncs the WAL before each checkpoint and the file after it.
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(at("configuring"))?;
    Ok(conn)
}

fn check_format(path: &Path, found: i64) -> Result<(), StoreError> {
    if found > FORMAT_VERSION {
        return Err(StoreError::Backend(format!(
            "{} has event store format version {found}, newer than version {FORMAT_VERSION} \
             that this build understands; run a newer fragment-gateway (or restore a backup)",
            path.display()
        )));
    }
    if found < 0 {
        return Err(StoreError::Backend(format!(
            "{} has an invalid event store format version {found}",
            path.display()
        )));
    }
    Ok(())
}

fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let at = |e: rusqlite::Error| {
        StoreError::Backend(format!("opening a reader on {}: {e}", path.display()))
    };
    // No CREATE flag: a reader never makes a file the writer did not.
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(at)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(at)?;
    // Read-write open (so WAL's shared memory works without special cases), but refusing
    // writes: the writer thread must stay the only writer.
    conn.pragma_update(None, "query_only", true).map_err(at)?;
    // Reads of a long log (a replay, a rebuild) map the file instead of copying every page
    // through read(2). Address space only: the kernel pages it in and out as it likes.
    conn.pragma_update(None, "mmap_size", MMAP_BYTES)
        .map_err(at)?;
    Ok(conn)
}

/// How much of the file a read connection maps.
const MMAP_BYTES: i64 = 1 << 30;

/// The head and the last `recorded_at`, to start the writer where the file ends.
fn last_event(conn: &Connection) -> Result<(u64, DateTime<Utc>), StoreError> {
    let last: Option<(i64, String)> = conn
        .query_row(
            "SELECT position, recorded_at FROM events ORDER BY position DESC LIMIT 1",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()
        .map_err(db("reading the last event"))?;
    match last {
        None => Ok((0, DateTime::<Utc>::MIN_UTC)),
        Some((position, recorded_at)) => Ok((
            stored_u64("position", position)?,
            parse_recorded_at(&recorded_at)?,
        )),
    }
}

fn stream_version(conn: &Connection, stream: &str) -> rusqlite::Result<u64> {
    conn.prepare_cached(STREAM_VERSION)?
        .query_row([stream], |row| row.get::<_, i64>(0))
        .map(sql_u64)
}

fn query_events(
    conn: &Connection,
    sql: &str,
    params: &[&dyn rusqlite::ToSql],
) -> Result<Vec<RecordedEvent>, StoreError> {
    let mut stmt = conn.prepare_cached(sql).map_err(db("preparing a read"))?;
    let mut rows = stmt.query(params).map_err(db("reading events"))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(db("reading events"))? {
        out.push(decode(row)?);
    }
    Ok(out)
}

fn decode(row: &rusqlite::Row<'_>) -> Result<RecordedEvent, StoreError> {
    let column = db("reading an event column");
    let position: i64 = row.get(0).map_err(&column)?;
    let version: i64 = row.get(2).map_err(&column)?;
    let event_id: String = row.get(3).map_err(&column)?;
    let schema_version: i64 = row.get(5).map_err(&column)?;
    let data: String = row.get(6).map_err(&column)?;
    let correlation_id: Option<String> = row.get(7).map_err(&column)?;
    let causation_id: Option<String> = row.get(8).map_err(&column)?;
    let recorded_at: String = row.get(9).map_err(&column)?;
    Ok(RecordedEvent {
        position: stored_u64("position", position)?,
        stream: row.get(1).map_err(&column)?,
        version: stored_u64("version", version)?,
        event_id: parse_uuid("event_id", &event_id)?,
        event_type: row.get(4).map_err(&column)?,
        schema_version: u16::try_from(schema_version)
            .map_err(|_| corrupt("schema_version", schema_version))?,
        data: serde_json::from_str(&data).map_err(|e| corrupt("data", e))?,
        metadata: EventMetadata {
            correlation_id: correlation_id
                .map(|id| parse_uuid("correlation_id", &id))
                .transpose()?,
            causation_id: causation_id
                .map(|id| parse_uuid("causation_id", &id))
                .transpose()?,
        },
        recorded_at: parse_recorded_at(&recorded_at)?,
    })
}

/// RFC 3339 in UTC with exactly six fractional digits: every value has the same width, so
/// text order is time order, and microseconds match what PostgreSQL's timestamptz keeps.
fn format_recorded_at(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn parse_recorded_at(text: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(text)
        .map(|at| at.with_timezone(&Utc))
        .map_err(|e| corrupt("recorded_at", e))
}

fn uuid_text(id: Uuid) -> String {
    id.hyphenated().to_string()
}

fn parse_uuid(column: &str, text: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(text).map_err(|e| corrupt(column, e))
}

fn stored_u64(column: &str, value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| corrupt(column, value))
}

fn corrupt(column: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("stored event has an unreadable {column}: {detail}"))
}

/// Bounds from callers are u64; SQLite integers are i64. Past i64::MAX no row can match, so
/// clamping keeps the query's meaning.
fn sql_int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// For aggregates the schema's CHECKs keep non-negative.
fn sql_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn db(what: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |e| StoreError::Backend(format!("{what}: {e}"))
}

fn is_duplicate_event_id(e: &rusqlite::Error) -> bool {
    match e {
        rusqlite::Error::SqliteFailure(err, Some(message)) => {
            err.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                && message.contains("events.event_id")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::gate::{Gate, LIMIT};

    struct Harness {
        _dir: tempfile::TempDir,
        path: PathBuf,
        writer: Writer,
        head: watch::Receiver<u64>,
        stats: Arc<WriterCounters>,
    }

    fn harness() -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.sqlite3");
        let (head_tx, head) = watch::channel(0);
        let stats = Arc::new(WriterCounters::default());
        let conn = open_writer(&path).expect("open writer");
        let failed = Arc::new(AtomicBool::new(false));
        // Stops when the writer (its sender) is dropped with the harness.
        let (synced, _syncer) = Syncer {
            wal: open_wal(&path).expect("open the WAL"),
            head: head_tx,
            failed: Arc::clone(&failed),
            before_sync: None,
        }
        .start()
        .expect("syncer");
        let writer = Writer {
            conn,
            synced: Some(synced),
            failed,
            last_recorded_at: DateTime::<Utc>::MIN_UTC,
            stats: stats.clone(),
            before_commit: None,
        };
        Harness {
            _dir: dir,
            path,
            writer,
            head,
            stats,
        }
    }

    type Answer = oneshot::Receiver<Outcome>;

    fn request(stream: &str, expected: ExpectedVersion, ids: &[Uuid]) -> (AppendRequest, Answer) {
        let (reply, answer) = oneshot::channel();
        let events = ids
            .iter()
            .map(|&event_id| {
                EncodedEvent::encode(NewEvent {
                    event_id,
                    event_type: "Tested".into(),
                    schema_version: 1,
                    data: serde_json::json!({ "id": event_id }),
                    metadata: EventMetadata::default(),
                })
                .expect("encode")
            })
            .collect();
        let request = AppendRequest {
            stream: stream.into(),
            expected,
            events,
            reply,
        };
        (request, answer)
    }

    fn stored(path: &Path) -> Vec<RecordedEvent> {
        let conn = open_reader(path).expect("reader");
        query_events(
            &conn,
            &format!("SELECT {COLUMNS} FROM events ORDER BY position"),
            &[],
        )
        .expect("read")
    }

    /// A caller's conflict or duplicate leaves the rest of its group committed: an append of
    /// several events is undone whole by its savepoint, a one-event append's refused INSERT
    /// by SQLite itself. Queuing the requests before the writer runs makes the group
    /// deterministic.
    #[test]
    fn a_group_commits_once_and_a_refused_append_rolls_back_alone() {
        let mut h = harness();
        let shared_id = Uuid::new_v4();
        let (a, a_answer) = request("order-a", ExpectedVersion::NoStream, &[shared_id]);
        // Conflicts with `a`, which is not committed yet but is earlier in the same group.
        let (b, b_answer) = request("order-a", ExpectedVersion::NoStream, &[Uuid::new_v4()]);
        // Its second event repeats `a`'s id: the first one must not stay behind.
        let (c, c_answer) = request(
            "order-c",
            ExpectedVersion::NoStream,
            &[Uuid::new_v4(), shared_id],
        );
        let (d, d_answer) = request(
            "order-a",
            ExpectedVersion::Exact(1),
            &[Uuid::new_v4(), Uuid::new_v4()],
        );
        // One event (no savepoint), repeating `a`'s id in a new stream.
        let (e, e_answer) = request("order-e", ExpectedVersion::NoStream, &[shared_id]);

        h.writer.commit_group(vec![a, b, c, d, e]);

        let a = a_answer.blocking_recv().expect("a answered");
        assert_eq!(
            a.expect("a stored"),
            AppendResult {
                version: 1,
                position: 1
            }
        );
        match b_answer.blocking_recv().expect("b answered") {
            Err(StoreError::Conflict {
                stream,
                expected: ExpectedVersion::NoStream,
                actual: 1,
            }) => assert_eq!(stream, "order-a"),
            other => panic!("b should conflict at version 1, got {other:?}"),
        }
        match c_answer.blocking_recv().expect("c answered") {
            Err(StoreError::DuplicateEventId(id)) => assert_eq!(id, shared_id),
            other => panic!("c should be a duplicate, got {other:?}"),
        }
        // Positions continue right after `a`: the refused appends left no gap.
        let d = d_answer.blocking_recv().expect("d answered");
        assert_eq!(
            d.expect("d stored"),
            AppendResult {
                version: 3,
                position: 3
            }
        );

        match e_answer.blocking_recv().expect("e answered") {
            Err(StoreError::DuplicateEventId(id)) => assert_eq!(id, shared_id),
            other => panic!("e should be a duplicate, got {other:?}"),
        }

        let events = stored(&h.path);
        let placed: Vec<(u64, &str, u64)> = events
            .iter()
            .map(|e| (e.position, e.stream.as_str(), e.version))
            .collect();
        assert_eq!(
            placed,
            vec![(1, "order-a", 1), (2, "order-a", 2), (3, "order-a", 3)]
        );
        assert_eq!(*h.head.borrow(), 3);
        assert_eq!(h.stats.commits.load(Ordering::Relaxed), 1);
        assert_eq!(h.stats.appends.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn recorded_at_does_not_go_back_when_the_clock_does() {
        let mut h = harness();
        let ahead = (Utc::now() + chrono::Duration::hours(1)).trunc_subsecs(6);
        h.writer.last_recorded_at = ahead;
        let (a, answer) = request("order-a", ExpectedVersion::Any, &[Uuid::new_v4()]);
        h.writer.commit_group(vec![a]);
        answer.blocking_recv().expect("answered").expect("stored");
        assert_eq!(stored(&h.path)[0].recorded_at, ahead);
    }

    #[test]
    fn recorded_at_text_has_a_fixed_width_so_text_order_is_time_order() {
        let whole_second = DateTime::parse_from_rfc3339("2025-03-01T10:00:00Z")
            .expect("date")
            .with_timezone(&Utc);
        let later = whole_second + chrono::Duration::microseconds(1);
        let (a, b) = (format_recorded_at(whole_second), format_recorded_at(later));
        assert_eq!(a, "2025-03-01T10:00:00.000000Z");
        assert_eq!(b, "2025-03-01T10:00:00.000001Z");
        assert!(a < b);
        assert_eq!(parse_recorded_at(&b).expect("parse"), later);
    }

    fn tested() -> NewEvent {
        NewEvent {
            event_id: Uuid::new_v4(),
            event_type: "Tested".into(),
            schema_version: 1,
            data: serde_json::json!({}),
            metadata: EventMetadata::default(),
        }
    }

    /// One `tested` event appended to the new stream `stream` by a task of its own.
    fn spawn_append(
        store: &Arc<SqliteStore>,
        stream: &'static str,
    ) -> tokio::task::JoinHandle<Result<AppendResult, StoreError>> {
        let store = Arc::clone(store);
        tokio::spawn(async move {
            store
                .append(stream, ExpectedVersion::NoStream, vec![tested()])
                .await
        })
    }

    /// A store whose writer waits at `gate` before every COMMIT, as on a slow fsync.
    fn gated_store(path: &Path, gate: &Arc<Gate>) -> SqliteStore {
        let gate = Arc::clone(gate);
        let hooks = Hooks {
            before_commit: Some(Arc::new(move || gate.pass())),
            ..Hooks::default()
        };
        SqliteStore::open_with(path, hooks).expect("open")
    }

    /// A store whose syncer calls `before_sync` before every sync of the WAL; its error
    /// stands for the sync's.
    fn store_with_sync_hook(
        path: &Path,
        before_sync: impl Fn() -> std::io::Result<()> + Send + Sync + 'static,
    ) -> SqliteStore {
        let hooks = Hooks {
            before_sync: Some(Arc::new(before_sync)),
            ..Hooks::default()
        };
        SqliteStore::open_with(path, hooks).expect("open")
    }

    /// Pipelined sync: a commit waiting for its sync is in the table, yet no read shows it
    /// and its caller has no answer, a refusal judged against it waits with it, and the writer
    /// meanwhile commits the next append. Once the sync is done, all are answered and shown.
    #[tokio::test]
    async fn a_commit_is_answered_and_read_only_once_synced_and_the_writer_goes_on_meanwhile() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.sqlite3");
        let gate = Gate::new();
        let store = Arc::new(store_with_sync_hook(&path, {
            let gate = Arc::clone(&gate);
            move || {
                gate.pass();
                Ok(())
            }
        }));
        let append = |stream| spawn_append(&store, stream);
        let first = append("order-a");
        tokio::time::timeout(LIMIT * 2, gate.arrival())
            .await
            .expect("the syncer is syncing the first commit");
        assert_eq!(stored(&path).len(), 1, "committed before the sync");
        assert_eq!(store.head().await.expect("head"), 0);
        assert!(store.read_all(0, 10).await.expect("read").is_empty());
        assert!(store
            .read_all_decoded(0, 10)
            .await
            .expect("read")
            .is_empty());
        assert!(store
            .read_category("order", 0, 10)
            .await
            .expect("read")
            .is_empty());
        assert!(store
            .read_stream("order-a", 1, 10)
            .await
            .expect("read")
            .is_empty());
        assert_eq!(store.stream_version("order-a").await.expect("version"), 0);

        // Refused against the unsynced commit, then a new stream: once the second is in the
        // table, the writer has judged the refusal too (it takes appends in order).
        let refused = append("order-a");
        let second = append("order-b");
        until("the writer commits while the syncer waits", || {
            stored(&path).len() == 2
        })
        .await;
        for task in [&first, &refused, &second] {
            assert!(!task.is_finished(), "answered before its sync");
        }

        gate.open();
        let first = first.await.expect("task").expect("first stored");
        let second = second.await.expect("task").expect("second stored");
        assert_eq!((first.position, second.position), (1, 2));
        match refused.await.expect("task") {
            Err(StoreError::Conflict { actual: 1, .. }) => {}
            other => panic!("expected a conflict at version 1, got {other:?}"),
        }
        assert_eq!(store.head().await.expect("head"), 2);
        assert_eq!(store.read_all(0, 10).await.expect("read").len(), 2);
        assert_eq!(store.stream_version("order-a").await.expect("version"), 1);
        assert!(!gate.timed_out());
        EventStore::close(&*store).await.expect("close");
    }

    /// After a failed sync nobody is told "stored" or "not stored": the callers it covered
    /// are told their appends are in doubt, nothing unsynced is shown, and the store refuses
    /// appends until it is reopened, which shows what the disk holds.
    #[tokio::test]
    async fn a_failed_sync_leaves_its_appends_in_doubt_and_the_store_refusing_until_reopened() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.sqlite3");
        let disk_fails = Arc::new(AtomicBool::new(true));
        let store = store_with_sync_hook(&path, {
            let disk_fails = Arc::clone(&disk_fails);
            move || match disk_fails.load(Ordering::SeqCst) {
                true => Err(std::io::Error::other(
                    "injected: the disk refused the write",
                )),
                false => Ok(()),
            }
        });
        match store
            .append("order-a", ExpectedVersion::NoStream, vec![tested()])
            .await
        {
            Err(StoreError::Backend(message)) => {
                assert!(message.contains("may or may not be stored"), "{message}")
            }
            other => panic!("expected an append in doubt, got {other:?}"),
        }
        assert_eq!(store.head().await.expect("head"), 0);
        assert!(store.read_all(0, 10).await.expect("read").is_empty());

        // The disk is back, but what the kernel dropped cannot be known: still refused.
        disk_fails.store(false, Ordering::SeqCst);
        match store
            .append("order-b", ExpectedVersion::NoStream, vec![tested()])
            .await
        {
            Err(StoreError::Unavailable(message)) => {
                assert!(message.contains("restart"), "{message}")
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        let imported = store.import(stored(&path)).await;
        assert!(
            matches!(imported, Err(StoreError::Unavailable(_))),
            "{imported:?}"
        );
        EventStore::close(&store).await.expect("close");

        // Reopened, the store shows what the file holds: here the commit did reach it.
        let reopened = SqliteStore::open(&path).expect("reopen");
        assert_eq!(reopened.head().await.expect("head"), 1);
        let next = reopened
            .append("order-b", ExpectedVersion::NoStream, vec![tested()])
            .await
            .expect("appends again");
        assert_eq!(next.position, 2);
    }

    /// The last handle dropped on a runtime's only thread while the writer is stuck in a
    /// commit: the drop must leave the writer to finish alone. What it was committing still
    /// lands, and the next open of the file waits for it rather than failing.
    #[tokio::test]
    async fn dropping_the_store_on_an_async_thread_does_not_wait_for_its_writer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.sqlite3");
        let gate = Gate::new();
        let store = Arc::new(gated_store(&path, &gate));
        let appending = tokio::spawn({
            let store = Arc::clone(&store);
            async move {
                store
                    .append("order-a", ExpectedVersion::NoStream, vec![tested()])
                    .await
            }
        });
        tokio::time::timeout(LIMIT * 2, gate.arrival())
            .await
            .expect("the writer is committing");
        // The caller gives up (its append stands, as a lost reply would leave it), and with
        // it goes the last handle but ours.
        appending.abort();
        assert!(appending.await.expect_err("aborted").is_cancelled());

        drop(store);
        // The gate is closed: the test runs on only if the drop did not wait for the writer.
        // The old writer still holds the file; an open now waits for it instead of failing.
        let reopening = tokio::task::spawn_blocking({
            let path = path.clone();
            move || SqliteStore::open(&path)
        });
        gate.open();
        let reopened = reopening
            .await
            .expect("task")
            .expect("reopen once the old writer is done");

        assert!(
            !gate.timed_out(),
            "dropping the store blocked the runtime's only thread on its writer"
        );
        assert_eq!(
            reopened.head().await.expect("head"),
            1,
            "the append being committed at the drop is stored"
        );
    }

    /// Yields to the runtime's other tasks until `done` holds (never a sleep: each step is a
    /// spawned task taking its turn), failing after `LIMIT`.
    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + LIMIT;
        while !done() {
            assert!(std::time::Instant::now() < deadline, "timed out: {what}");
            tokio::task::yield_now().await;
        }
    }

    /// `close` with appends in flight: the one being committed and the one queued behind it
    /// are both stored and answered `Ok`; one after the close is refused; `close` returns once
    /// the writer is done, and then the file is free.
    #[tokio::test]
    async fn close_commits_and_answers_what_is_queued_then_refuses_and_frees_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.sqlite3");
        let gate = Gate::new();
        let store = Arc::new(gated_store(&path, &gate));
        let append = |stream| spawn_append(&store, stream);
        let first = append("order-a");
        tokio::time::timeout(LIMIT * 2, gate.arrival())
            .await
            .expect("the writer is committing the first append");
        let second = append("order-b");
        let queued = || {
            lock(&store.appends)
                .as_ref()
                .is_some_and(|tx| tx.capacity() < QUEUE_DEPTH)
        };
        until("the second append is queued", queued).await;

        let closing = tokio::spawn({
            let store = Arc::clone(&store);
            async move { EventStore::close(&*store).await }
        });
        until("close has begun", || lock(&store.appends).is_none()).await;
        let late = store
            .append("order-c", ExpectedVersion::NoStream, vec![tested()])
            .await;
        assert!(matches!(late, Err(StoreError::Unavailable(_))), "{late:?}");
        assert!(matches!(
            store.head().await,
            Err(StoreError::Unavailable(_))
        ));
        assert!(!closing.is_finished(), "close returned with appends queued");

        gate.open();
        let first = first
            .await
            .expect("task")
            .expect("the first append is stored");
        let second = second
            .await
            .expect("task")
            .expect("the queued append is stored");
        assert_eq!((first.position, second.position), (1, 2));
        closing.await.expect("task").expect("a clean close");
        assert!(!gate.timed_out());

        // Free at once: no wait for a closing store, no retry.
        assert!(lock(&CLOSING)
            .iter()
            .all(|(_, s)| !Arc::ptr_eq(s, &store.stopped)));
        let reopened = SqliteStore::open(&path).expect("reopen after close");
        assert_eq!(reopened.head().await.expect("head"), 2);
        assert_eq!(
            EventStore::close(&*store).await.ok(),
            Some(()),
            "a second close returns at once"
        );
    }

    /// Outside any runtime a drop may block, and does: the file is free when it returns.
    #[test]
    fn dropping_the_store_outside_a_runtime_frees_the_file_before_it_returns() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.sqlite3");
        let store = SqliteStore::open(&path).expect("open");
        let stopped = Arc::clone(&store.stopped);
        drop(store);
        assert!(stopped.is_done());
        assert!(lock(&CLOSING)
            .iter()
            .all(|(_, s)| !Arc::ptr_eq(s, &stopped)));
        SqliteStore::open(&path)
            .expect("reopen")
            .close()
            .expect("close");
    }

    #[test]
    fn a_group_with_only_refusals_does_not_move_the_head() {
        let mut h = harness();
        let (a, answer) = request("order-a", ExpectedVersion::Exact(4), &[Uuid::new_v4()]);
        h.writer.commit_group(vec![a]);
        assert!(matches!(
            answer.blocking_recv().expect("answered"),
            Err(StoreError::Conflict { actual: 0, .. })
        ));
        assert!(!h.head.has_changed().expect("writer alive"));
        assert_eq!(h.stats.commits.load(Ordering::Relaxed), 0);
        assert!(stored(&h.path).is_empty());
    }
}
