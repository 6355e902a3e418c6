//! The SQLite event store: the shared contract, then what only a file-backed store promises —
//! data survives a reopen and a killed process, and a file from a newer build is refused.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use events::{EventMetadata, ExpectedVersion, NewEvent, RecordedEvent};
use fragment_gateway::store::{contract, read_stream_all, EventStore, SqliteStore, StoreError};
use serde_json::json;
use uuid::Uuid;

fn event(data: serde_json::Value) -> NewEvent {
    NewEvent {
        event_id: Uuid::new_v4(),
        event_type: "Tested".into(),
        schema_version: 1,
        data,
        metadata: EventMetadata::default(),
    }
}

async fn everything(store: &dyn EventStore) -> Vec<RecordedEvent> {
    let mut out: Vec<RecordedEvent> = Vec::new();
    loop {
        let after = out.last().map_or(0, |e| e.position);
        let page = store.read_all(after, 1000).await.expect("read_all");
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

/// A store in a directory of its own; `another` opens the same file again.
async fn sqlite_fixture() -> contract::Fixture {
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let path = dir.path().join("events.sqlite3");
    let store = Arc::new(SqliteStore::open(&path).expect("open")) as Arc<dyn EventStore>;
    contract::Fixture {
        store,
        another: Box::new(move || {
            // The directory lives as long as the case can open it.
            let (dir, path) = (Arc::clone(&dir), path.clone());
            Box::pin(async move {
                let _dir = dir;
                tokio::task::spawn_blocking(move || SqliteStore::open(path))
                    .await
                    .expect("open task")
                    .map(|s| Arc::new(s) as Arc<dyn EventStore>)
            })
        }),
        cleanup: None,
    }
}

mod sqlite_contract {
    fragment_gateway::event_store_contract!(super::sqlite_fixture());
}

mod postgres_contract {
    fragment_gateway::event_store_contract!(fragment_gateway::store::contract::postgres_fixture());
}

mod sqlite_read_models {
    fragment_gateway::read_model_contract!(super::sqlite_fixture());
}

mod postgres_read_models {
    fragment_gateway::read_model_contract!(fragment_gateway::store::contract::postgres_fixture());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reopened_store_has_everything_and_continues_positions_and_versions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("data").join("events.sqlite3");

    let store = SqliteStore::open(&path).expect("open");
    store
        .append(
            "order-a",
            ExpectedVersion::NoStream,
            vec![event(json!(1)), event(json!(2))],
        )
        .await
        .expect("append");
    store
        .append("order-b", ExpectedVersion::NoStream, vec![event(json!(3))])
        .await
        .expect("append");
    let before = everything(&store).await;
    store.close().expect("clean close");

    let store = SqliteStore::open(&path).expect("reopen");
    assert_eq!(everything(&store).await, before);
    assert_eq!(store.head().await.expect("head"), 3);
    assert_eq!(
        *store.head_watch().borrow(),
        3,
        "the watch starts at the head"
    );
    assert_eq!(store.stream_version("order-a").await.expect("version"), 2);

    let result = store
        .append("order-a", ExpectedVersion::Exact(2), vec![event(json!(4))])
        .await
        .expect("append after reopen");
    assert_eq!((result.version, result.position), (3, 4));
    let stale = store
        .append("order-b", ExpectedVersion::NoStream, vec![event(json!(5))])
        .await;
    assert!(
        matches!(stale, Err(StoreError::Conflict { actual: 1, .. })),
        "versions survive the reopen: {stale:?}"
    );
    let a = read_stream_all(&store, "order-a").await.expect("read");
    assert_eq!(
        a.iter()
            .map(|e| (e.version, e.position))
            .collect::<Vec<_>>(),
        vec![(1, 1), (2, 2), (3, 4)]
    );
    // Dropping (rather than `close`) must also release the file for the next open.
    drop(store);
    let store = SqliteStore::open(&path).expect("reopen after drop");
    assert_eq!(store.head().await.expect("head"), 4);
}

#[tokio::test]
async fn a_second_store_on_the_same_file_is_refused_while_the_first_is_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.sqlite3");
    let first = SqliteStore::open(&path).expect("open");
    match SqliteStore::open(&path) {
        Err(StoreError::Unavailable(message)) => {
            assert!(message.contains("already open"), "{message}")
        }
        Err(other) => panic!("expected Unavailable, got {other}"),
        Ok(_) => panic!("two stores opened the same file"),
    }
    drop(first);
    SqliteStore::open(&path).expect("open once the first is closed");
}

#[test]
fn a_file_from_a_newer_build_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.sqlite3");
    SqliteStore::open(&path)
        .expect("create")
        .close()
        .expect("close");
    let conn = rusqlite::Connection::open(&path).expect("sqlite");
    conn.pragma_update(None, "user_version", 99)
        .expect("set version");
    drop(conn);

    match SqliteStore::open(&path) {
        Err(StoreError::Backend(message)) => {
            assert!(
                message.contains("format version 99") && message.contains("newer"),
                "the message says what is wrong: {message}"
            );
        }
        Err(other) => panic!("expected a backend error, got {other}"),
        Ok(_) => panic!("a newer file was opened"),
    }
    // Refused before touching it: the version is still the newer one.
    let conn = rusqlite::Connection::open(&path).expect("sqlite");
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .expect("version");
    assert_eq!(version, 99);
}

/// A file of format 1 (the log alone, as the build before the durable read models wrote it)
/// opens as format 2: its events untouched, the read models' tables added empty (the service
/// folds the log into them at its first start), category reads answered by the new index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_format_1_file_is_migrated_in_place_keeping_every_event() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.sqlite3");
    {
        let db = rusqlite::Connection::open(&path).unwrap();
        db.execute_batch(
            "CREATE TABLE events (
                position INTEGER PRIMARY KEY CHECK (position >= 1),
                stream TEXT NOT NULL,
                version INTEGER NOT NULL CHECK (version >= 1),
                event_id TEXT NOT NULL UNIQUE,
                event_type TEXT NOT NULL,
                schema_version INTEGER NOT NULL CHECK (schema_version BETWEEN 0 AND 65535),
                data TEXT NOT NULL CHECK (json_valid(data)),
                correlation_id TEXT,
                causation_id TEXT,
                recorded_at TEXT NOT NULL,
                UNIQUE (stream, version)
            ) STRICT;
            INSERT INTO events VALUES
                (1, 'order-a', 1, '00000000-0000-0000-0000-000000000001', 'Tested', 1, '1', NULL, NULL, '2026-11-01T00:00:00.000000Z'),
                (2, 'wallet-0:b', 1, '00000000-0000-0000-0000-000000000002', 'Tested', 1, '2', NULL, NULL, '2026-11-01T00:00:00.000000Z'),
                (3, 'order-c', 1, '00000000-0000-0000-0000-000000000003', 'Tested', 1, '3', NULL, NULL, '2026-11-01T00:00:00.000000Z');
            PRAGMA user_version = 1;",
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path).expect("a format 1 file opens");
    assert_eq!(store.head().await.unwrap(), 3);
    let orders: Vec<u64> = store
        .read_category("order", 0, 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.position)
        .collect();
    assert_eq!(orders, [1, 3]);
    let tables = store.read_models().unwrap();
    assert_eq!(tables.state().await.unwrap().position, 0);
    store
        .append("order-d", ExpectedVersion::NoStream, vec![event(json!(4))])
        .await
        .unwrap();
    EventStore::close(&store).await.unwrap();
    let db = rusqlite::Connection::open(&path).unwrap();
    let format: i64 = db
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(format, fragment_gateway::store::sqlite::FORMAT_VERSION);
    // Format 3: the service's keys.
    let keys: i64 = db
        .query_row("SELECT COUNT(*) FROM service_keys", [], |r| r.get(0))
        .unwrap();
    assert_eq!(keys, 0);
    let plan: String = db
        .query_row(
            "EXPLAIN QUERY PLAN SELECT position FROM events WHERE (CASE WHEN instr(stream, '-') > 0 \
             THEN substr(stream, 1, instr(stream, '-') - 1) ELSE stream END) = 'order' AND position > 0 \
             ORDER BY position",
            [],
            |r| r.get(3),
        )
        .unwrap();
    assert!(
        plan.contains("events_category"),
        "category reads scan the log: {plan}"
    );
}

#[test]
fn files_that_are_not_event_stores_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let other_db = dir.path().join("other.sqlite3");
    let conn = rusqlite::Connection::open(&other_db).expect("sqlite");
    conn.execute_batch("CREATE TABLE users (name TEXT)")
        .expect("table");
    drop(conn);
    match SqliteStore::open(&other_db) {
        Err(StoreError::Backend(message)) => {
            assert!(message.contains("not an event store"), "{message}")
        }
        other => panic!("expected a backend error, got {:?}", other.map(|_| ())),
    }

    let garbage = dir.path().join("garbage.sqlite3");
    std::fs::write(&garbage, vec![0x42u8; 8192]).expect("write");
    assert!(matches!(
        SqliteStore::open(&garbage),
        Err(StoreError::Backend(_))
    ));
}

// ---- Crash safety ------------------------------------------------------------------------
//
// The parent test starts this test binary again, running only `crash_child_writer`, which
// appends from several tasks and prints a line for every acknowledged append. The parent
// SIGKILLs it mid-stream, reopens the store and checks that what was acknowledged is there and
// that nothing half-written is. On PostgreSQL two children write at once, as two gateway
// processes would, and are killed one after the other.

/// `sqlite:<file>` or `postgres:<schema>` (in the test database).
const CRASH_STORE_ENV: &str = "FRAGMENT_GATEWAY_CRASH_TEST_STORE";
/// The child's first task number: children of one test write disjoint streams and ids.
const CRASH_TASK_BASE_ENV: &str = "FRAGMENT_GATEWAY_CRASH_TEST_TASK_BASE";
const CHILD_TASKS: u64 = 4;
const STREAMS_PER_TASK: u64 = 3;
const ACKS_BEFORE_KILL: usize = 300;

/// Ids a checker can recompute from an event's data: a stored event whose id does not match
/// its (task, batch, index) was not written by the child.
fn crash_event_id(task: u64, batch: u64, index: u64) -> Uuid {
    Uuid::from_u128(
        0xC4A5_0000_0000_0000_0000_0000_0000_0000
            | (task as u128) << 80
            | (batch as u128) << 16
            | index as u128,
    )
}

fn crash_batch_size(task: u64, batch: u64) -> u64 {
    1 + (batch * 7 + task * 3) % 5
}

fn crash_stream(task: u64, batch: u64) -> String {
    format!("order-crash-{task}-{}", batch % STREAMS_PER_TASK)
}

/// Not a test on its own: the child process of `a_killed_writer_loses_no_acknowledged_append`,
/// which sets the environment variable; without it this returns at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child process of a_killed_writer_loses_no_acknowledged_append"]
async fn crash_child_writer() {
    let Ok(locator) = std::env::var(CRASH_STORE_ENV) else {
        return;
    };
    let base: u64 = std::env::var(CRASH_TASK_BASE_ENV)
        .ok()
        .and_then(|b| b.parse().ok())
        .unwrap_or(0);
    let store = open_crash_store(&locator).await;
    let out = Arc::new(Mutex::new(std::io::stdout()));
    // Keeps an orphaned child from writing for ever if the parent died without killing it.
    let give_up = Instant::now() + Duration::from_secs(300);
    let tasks: Vec<_> = (base..base + CHILD_TASKS)
        .map(|task| {
            let store = store.clone();
            let out = out.clone();
            tokio::spawn(async move {
                let mut versions = [0u64; STREAMS_PER_TASK as usize];
                for batch in 0.. {
                    if Instant::now() > give_up {
                        return;
                    }
                    let stream = crash_stream(task, batch);
                    let size = crash_batch_size(task, batch);
                    let events: Vec<NewEvent> = (0..size)
                        .map(|index| NewEvent {
                            event_id: crash_event_id(task, batch, index),
                            event_type: "CrashTested".into(),
                            schema_version: 1,
                            data: json!({ "task": task, "batch": batch, "index": index, "size": size }),
                            metadata: EventMetadata::default(),
                        })
                        .collect();
                    let ids: Vec<String> = events.iter().map(|e| e.event_id.to_string()).collect();
                    let k = (batch % STREAMS_PER_TASK) as usize;
                    let result = store
                        .append(&stream, ExpectedVersion::Exact(versions[k]), events)
                        .await
                        .expect("child append");
                    versions[k] = result.version;
                    // One write per line (well under PIPE_BUF, so the parent never sees half
                    // of one), flushed before the next append.
                    let line = format!(
                        "ACK {stream} {} {} {}\n",
                        result.position,
                        result.version,
                        ids.join(",")
                    );
                    let mut out = out.lock().expect("stdout");
                    if out.write_all(line.as_bytes()).and_then(|()| out.flush()).is_err() {
                        return; // the parent is gone
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("child task");
    }
}

struct Ack {
    stream: String,
    last_position: u64,
    last_version: u64,
    ids: Vec<Uuid>,
}

fn parse_ack(line: &str) -> Option<Ack> {
    let mut parts = line.strip_prefix("ACK ")?.split(' ');
    let ack = Ack {
        stream: parts.next()?.to_string(),
        last_position: parts.next()?.parse().ok()?,
        last_version: parts.next()?.parse().ok()?,
        ids: parts
            .next()?
            .split(',')
            .map(Uuid::parse_str)
            .collect::<Result<_, _>>()
            .ok()?,
    };
    parts.next().is_none().then_some(ack)
}

/// Kills the child if the parent fails before it does, so no writer outlives the test.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn open_crash_store(locator: &str) -> Arc<dyn EventStore> {
    if let Some(path) = locator.strip_prefix("sqlite:") {
        Arc::new(SqliteStore::open(PathBuf::from(path)).expect("open the SQLite store"))
    } else if let Some(schema) = locator.strip_prefix("postgres:") {
        let mut test = contract::TestSchema::new();
        test.config.schema = schema.to_string();
        test.open().await.expect("open the PostgreSQL store")
    } else {
        panic!("unknown store {locator}")
    }
}

fn spawn_child(
    locator: &str,
    task_base: u64,
    lines_tx: mpsc::Sender<String>,
) -> (KillOnDrop, std::thread::JoinHandle<String>) {
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "crash_child_writer",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_STORE_ENV, locator)
        .env(CRASH_TASK_BASE_ENV, task_base.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the child");
    let stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                // A line cut short by the kill was never a complete acknowledgement.
                Ok(n) if n > 0 && line.ends_with('\n') => {
                    if lines_tx.send(line.trim_end().to_string()).is_err() {
                        return;
                    }
                }
                _ => return,
            }
        }
    });
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    (KillOnDrop(child), errors)
}

/// Reads acknowledgements until there are `count` in all, failing with the children's
/// output if they stop first.
fn collect_acks(
    lines: &mpsc::Receiver<String>,
    acks: &mut Vec<Ack>,
    count: usize,
    children: &mut [(KillOnDrop, Option<std::thread::JoinHandle<String>>)],
) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while acks.len() < count {
        let wait = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(wait) {
            Ok(line) if line.starts_with("ACK ") => {
                acks.push(parse_ack(&line).unwrap_or_else(|| panic!("bad ack line: {line}")))
            }
            Ok(_) => {} // the test harness's own output
            Err(why) => {
                let mut report = String::new();
                for (child, stderr) in children.iter_mut() {
                    let _ = child.0.kill();
                    let status = child.0.wait().expect("wait");
                    let text = stderr
                        .take()
                        .and_then(|s| s.join().ok())
                        .unwrap_or_default();
                    report.push_str(&format!("--- child ({status}):\n{text}\n"));
                }
                panic!(
                    "the children stopped acknowledging after {} appends ({why:?}):\n{report}",
                    acks.len()
                );
            }
        }
    }
}

/// Kills a child and takes the acknowledgements already in its pipe: they count too.
fn kill(child: &mut KillOnDrop) {
    child.0.kill().expect("SIGKILL the child");
    child.0.wait().expect("reap the child");
}

#[test]
fn a_killed_writer_loses_no_acknowledged_append() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("events.sqlite3");
    let locator = format!("sqlite:{}", db.display());
    let (lines_tx, lines) = mpsc::channel();
    let (child, stderr) = spawn_child(&locator, 0, lines_tx);
    let mut children = [(child, Some(stderr))];
    let mut acks = Vec::new();
    collect_acks(&lines, &mut acks, ACKS_BEFORE_KILL, &mut children);
    kill(&mut children[0].0);
    acks.extend(lines.iter().filter_map(|line| parse_ack(&line)));

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(check_after_crash(&locator, CHILD_TASKS, &acks));
}

/// Two processes appending to one PostgreSQL schema at once; one is killed mid-stream while
/// the other goes on, then the other is killed too.
#[test]
fn killed_postgres_writers_in_two_processes_lose_no_acknowledged_append() {
    let schema = contract::TestSchema::new();
    let locator = format!("postgres:{}", schema.config.schema);
    let (lines_tx, lines) = mpsc::channel();
    let (a, a_err) = spawn_child(&locator, 0, lines_tx.clone());
    let (b, b_err) = spawn_child(&locator, CHILD_TASKS, lines_tx);
    let mut children = [(a, Some(a_err)), (b, Some(b_err))];
    let mut acks = Vec::new();
    collect_acks(&lines, &mut acks, ACKS_BEFORE_KILL, &mut children);
    kill(&mut children[0].0);
    collect_acks(&lines, &mut acks, 2 * ACKS_BEFORE_KILL, &mut children[1..]);
    kill(&mut children[1].0);
    acks.extend(lines.iter().filter_map(|line| parse_ack(&line)));
    // Both wrote: the log interleaves two processes.
    for base in [0, CHILD_TASKS] {
        assert!(
            acks.iter()
                .any(|a| a.stream.starts_with(&format!("order-crash-{base}-"))),
            "the child with tasks from {base} acknowledged nothing"
        );
    }

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        check_after_crash(&locator, 2 * CHILD_TASKS, &acks).await;
        schema.remove().await;
    });
}

async fn check_after_crash(locator: &str, tasks: u64, acks: &[Ack]) {
    let store = open_crash_store(locator).await;
    let log = everything(store.as_ref()).await;
    let head = store.head().await.expect("head");
    assert_eq!(
        log.iter().map(|e| e.position).collect::<Vec<_>>(),
        (1..=head).collect::<Vec<_>>(),
        "positions 1..head with no gap"
    );

    // Every acknowledged event, where the acknowledgement said.
    let by_id: BTreeMap<Uuid, &RecordedEvent> = log.iter().map(|e| (e.event_id, e)).collect();
    for ack in acks {
        let n = ack.ids.len() as u64;
        for (i, id) in ack.ids.iter().enumerate() {
            let e = by_id
                .get(id)
                .unwrap_or_else(|| panic!("acknowledged event {id} is missing"));
            assert_eq!(e.stream, ack.stream);
            assert_eq!(e.position, ack.last_position + 1 + i as u64 - n);
            assert_eq!(e.version, ack.last_version + 1 + i as u64 - n);
        }
    }

    // Every stored event is one the child wrote, and every batch is whole.
    let mut batches: BTreeMap<(u64, u64), Vec<&RecordedEvent>> = BTreeMap::new();
    for e in &log {
        let field = |name: &str| {
            e.data[name]
                .as_u64()
                .unwrap_or_else(|| panic!("event {} has no {name}", e.position))
        };
        let (task, batch, index) = (field("task"), field("batch"), field("index"));
        assert_eq!(
            e.event_id,
            crash_event_id(task, batch, index),
            "a foreign event"
        );
        assert_eq!(e.stream, crash_stream(task, batch));
        assert_eq!(field("size"), crash_batch_size(task, batch));
        batches.entry((task, batch)).or_default().push(e);
    }
    for ((task, batch), events) in &batches {
        let size = crash_batch_size(*task, *batch);
        let indexes: Vec<u64> = events
            .iter()
            .map(|e| e.data["index"].as_u64().expect("index"))
            .collect();
        assert_eq!(
            indexes,
            (0..size).collect::<Vec<_>>(),
            "batch {batch} of task {task} is all or nothing"
        );
        let first = events[0].position;
        assert!(
            events.iter().zip(first..).all(|(e, p)| e.position == p),
            "a batch sits at consecutive positions"
        );
    }
    // Each task appended one batch at a time, so what it stored is a prefix of its batches.
    for task in 0..tasks {
        let stored: Vec<u64> = batches
            .keys()
            .filter(|(t, _)| *t == task)
            .map(|(_, b)| *b)
            .collect();
        assert_eq!(stored, (0..stored.len() as u64).collect::<Vec<_>>());
    }
    // Stream versions count 1, 2, 3 … along the log.
    let mut versions: BTreeMap<&str, u64> = BTreeMap::new();
    for e in &log {
        let v = versions.entry(e.stream.as_str()).or_default();
        *v += 1;
        assert_eq!(e.version, *v, "stream {} has a version gap", e.stream);
    }
    let acked: BTreeSet<&Uuid> = acks.iter().flat_map(|a| &a.ids).collect();
    assert!(acked.len() >= ACKS_BEFORE_KILL && log.len() >= acked.len());

    // The reopened store carries on from where the file ends.
    let result = store
        .append(
            "order-after",
            ExpectedVersion::NoStream,
            vec![event(json!({}))],
        )
        .await
        .expect("append after the crash");
    assert_eq!(result.position, head + 1);
}

// ---- PostgreSQL only ----------------------------------------------------------------------

mod postgres_only {
    use std::sync::Arc;
    use std::time::Duration;

    use events::ExpectedVersion;
    use fragment_gateway::store::contract::{test_postgres_url, TestSchema};
    use fragment_gateway::store::postgres::{LISTEN_APPLICATION, MIGRATIONS, STREAM_VERSIONS};
    use fragment_gateway::store::{EventStore, PostgresConfig, PostgresStore, StoreError};
    use serde_json::json;
    use sqlx::Connection;

    use super::event;

    async fn admin() -> sqlx::PgConnection {
        sqlx::PgConnection::connect(&test_postgres_url())
            .await
            .expect("connect to the test database")
    }

    async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(60), f)
            .await
            .unwrap_or_else(|_| panic!("timed out: {what}"))
    }

    /// Backends of the store's listener, found by the application name it sets.
    async fn listeners(conn: &mut sqlx::PgConnection, schema: &str) -> Vec<i32> {
        sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND query LIKE 'LISTEN%'",
        )
        .bind(format!("{LISTEN_APPLICATION} {schema}"))
        .fetch_all(conn)
        .await
        .expect("pg_stat_activity")
    }

    /// Another process's commits reach the head watch while the listening connection is
    /// gone (by polling), and the store listens again afterwards.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lost_listening_connection_falls_back_to_polling_and_listens_again() {
        let schema = TestSchema::new();
        let watched = schema.open().await.expect("open");
        let writer = schema.open().await.expect("open a second process");
        let mut conn = admin().await;
        let name = schema.config.schema.clone();
        let pids = within("the listener to start", async {
            loop {
                let pids = listeners(&mut conn, &name).await;
                if !pids.is_empty() {
                    return pids;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        for pid in &pids {
            sqlx::query("SELECT pg_terminate_backend($1)")
                .bind(pid)
                .execute(&mut conn)
                .await
                .expect("terminate the listener");
        }
        let stored = writer
            .append("order-1", ExpectedVersion::NoStream, vec![event(json!(1))])
            .await
            .expect("append from the other process");
        let mut head = watched.head_watch();
        within("the watch to see the other process's commit", async {
            head.wait_for(|h| *h >= stored.position)
                .await
                .expect("open")
        })
        .await;
        within("a new listener", async {
            loop {
                let now = listeners(&mut conn, &name).await;
                if now.iter().any(|pid| !pids.contains(pid)) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        watched.close().await.expect("close");
        writer.close().await.expect("close");
        schema.remove().await;
    }

    /// An append that cannot finish within the statement timeout (here: another session
    /// holds the schema's append lock) is cancelled by the server and stores nothing; the
    /// store goes on once the lock is free.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_statement_timeout_bounds_an_append_and_a_cancelled_one_stores_nothing() {
        let mut schema = TestSchema::new();
        schema.config.statement_timeout = Duration::from_millis(200);
        let store = schema.open().await.expect("open");
        let mut conn = admin().await;
        sqlx::query("SELECT pg_advisory_lock($1, hashtext($2))")
            .bind(0x4647_0001_i32)
            .bind(&schema.config.schema)
            .execute(&mut conn)
            .await
            .expect("take the append lock");
        let blocked = store
            .append("order-1", ExpectedVersion::NoStream, vec![event(json!(1))])
            .await;
        match blocked {
            Err(StoreError::Backend(message)) => {
                assert!(message.contains("statement timeout"), "{message}")
            }
            other => panic!("expected the statement timeout, got {other:?}"),
        }
        sqlx::query("SELECT pg_advisory_unlock($1, hashtext($2))")
            .bind(0x4647_0001_i32)
            .bind(&schema.config.schema)
            .execute(&mut conn)
            .await
            .expect("release the append lock");
        assert_eq!(
            store.head().await.expect("head"),
            0,
            "the cancelled append left nothing"
        );
        let stored = store
            .append("order-1", ExpectedVersion::NoStream, vec![event(json!(2))])
            .await
            .expect("the writer reconnects and goes on");
        assert_eq!((stored.position, stored.version), (1, 1));
        store.close().await.expect("close");
        schema.remove().await;
    }

    /// The streams' versions an import checks are read by index whatever the planner knows
    /// of the table: on an analyzed log of long streams, the query this replaced
    /// (`stream = ANY($1) GROUP BY stream`) was planned as a scan of the whole table, which
    /// on a log of millions of events outlasted the statement timeout.
    #[tokio::test]
    async fn stream_versions_are_read_by_index_on_an_analyzed_log_of_long_streams() {
        let schema = TestSchema::new();
        let store = schema.open().await.expect("open");
        for s in 0..8 {
            let events = (0..1000).map(|n| event(json!(n))).collect();
            store
                .append(&format!("wallet-{s}"), ExpectedVersion::NoStream, events)
                .await
                .expect("append");
        }
        store.close().await.expect("close");
        let name = &schema.config.schema;
        let mut conn = admin().await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "SET search_path TO {name}; ANALYZE events; PREPARE versions(text[]) AS {STREAM_VERSIONS};"
        )))
        .execute(&mut conn)
        .await
        .expect("prepare");
        for mode in ["force_custom_plan", "force_generic_plan"] {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("SET plan_cache_mode = {mode}")))
                .execute(&mut conn)
                .await
                .expect("plan mode");
            let plan: Vec<String> = sqlx::query_scalar(
                "EXPLAIN EXECUTE versions('{wallet-1,wallet-2,wallet-3,wallet-4,order-9}')",
            )
            .fetch_all(&mut conn)
            .await
            .expect("explain");
            let plan = plan.join("\n");
            assert!(
                !plan.contains("Seq Scan on events"),
                "{mode}: the versions are read by a scan of the log:\n{plan}"
            );
        }
        let mut versions: Vec<(String, i64)> =
            sqlx::query_as("EXECUTE versions('{wallet-1,wallet-2,wallet-3,wallet-4,order-9}')")
                .fetch_all(&mut conn)
                .await
                .expect("versions");
        versions.sort();
        assert_eq!(
            versions,
            vec![
                ("order-9".to_string(), 0),
                ("wallet-1".to_string(), 1000),
                ("wallet-2".to_string(), 1000),
                ("wallet-3".to_string(), 1000),
                ("wallet-4".to_string(), 1000),
            ]
        );
        let _ = conn.close().await;
        schema.remove().await;
    }

    #[tokio::test]
    async fn migrations_apply_once_and_concurrent_first_opens_agree() {
        let schema = TestSchema::new();
        let opens: Vec<_> = (0..4)
            .map(|_| {
                let schema = schema.clone();
                tokio::spawn(async move { schema.open().await })
            })
            .collect();
        let mut stores: Vec<Arc<dyn EventStore>> = Vec::new();
        for open in opens {
            stores.push(open.await.expect("task").expect("a concurrent first open"));
        }
        assert_eq!(
            PostgresStore::migrate(&schema.config)
                .await
                .expect("migrate"),
            Vec::<i32>::new(),
            "nothing is left to apply"
        );
        let mut conn = admin().await;
        let recorded: Vec<i32> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT version FROM {}.schema_migrations ORDER BY version",
            schema.config.schema
        )))
        .fetch_all(&mut conn)
        .await
        .expect("schema_migrations");
        assert_eq!(recorded, MIGRATIONS.iter().map(|m| m.0).collect::<Vec<_>>());
        for store in stores {
            store.close().await.expect("close");
        }
        schema.remove().await;

        let fresh = TestSchema::new();
        assert_eq!(
            PostgresStore::migrate(&fresh.config)
                .await
                .expect("migrate alone"),
            MIGRATIONS.iter().map(|m| m.0).collect::<Vec<_>>()
        );
        fresh.remove().await;
    }

    /// A schema of migration 1 (the log alone, as the build before the durable read models
    /// made it) is brought to the newest migration at open: its events untouched, the read
    /// models' tables empty, category reads answered by the new index.
    #[tokio::test]
    async fn a_schema_of_migration_1_is_migrated_keeping_every_event() {
        let schema = TestSchema::new();
        let name = schema.config.schema.clone();
        let mut conn = admin().await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE SCHEMA {name};
             SET search_path TO {name};
             CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now());
             {}
             INSERT INTO schema_migrations (version, name) VALUES (1, 'event log');",
            (MIGRATIONS[0].2)()
        )))
        .execute(&mut conn)
        .await
        .expect("a schema of migration 1");
        let old = {
            let mut config = schema.config.clone();
            config.migrate = false;
            config
        };
        match PostgresStore::open(old).await {
            Err(StoreError::Backend(message)) => {
                assert!(message.contains("fragment-gateway migrate"), "{message}")
            }
            other => panic!(
                "a tool opened an unmigrated schema: {:?}",
                other.map(|_| ())
            ),
        }
        let store = schema.open().await.expect("the service's open migrates");
        for (stream, n) in [("order-a", 1), ("wallet-0:b", 2), ("order-c", 3)] {
            store
                .append(stream, ExpectedVersion::NoStream, vec![event(json!(n))])
                .await
                .unwrap();
        }
        let orders: Vec<u64> = store
            .read_category("order", 0, 10)
            .await
            .unwrap()
            .iter()
            .map(|e| e.position)
            .collect();
        assert_eq!(orders, [1, 3]);
        assert_eq!(
            store.read_models().unwrap().state().await.unwrap().position,
            0
        );
        let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "EXPLAIN SELECT position FROM {name}.events WHERE split_part(stream, '-', 1) = 'order' \
             AND position > 0 ORDER BY position"
        )))
        .fetch_all(&mut conn)
        .await
        .unwrap();
        // A tiny table may be read whole either way; the index must at least exist and match.
        let indexes: Vec<String> = sqlx::query_scalar(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND indexname = 'events_category'",
        )
        .bind(&name)
        .fetch_all(&mut conn)
        .await
        .unwrap();
        assert_eq!(indexes.len(), 1, "{plan:?}");
        assert!(
            indexes[0].contains("split_part(stream, '-'::text, 1)"),
            "{indexes:?}"
        );
        store.close().await.unwrap();
        schema.remove().await;
    }

    #[tokio::test]
    async fn a_schema_a_newer_build_migrated_is_refused() {
        let schema = TestSchema::new();
        schema
            .open()
            .await
            .expect("open")
            .close()
            .await
            .expect("close");
        let mut conn = admin().await;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {}.schema_migrations (version, name) VALUES (9999, 'from the future')",
            schema.config.schema
        )))
        .execute(&mut conn)
        .await
        .expect("insert");
        match schema.open().await {
            Err(StoreError::Backend(message)) => {
                assert!(
                    message.contains("9999") && message.contains("newer"),
                    "{message}"
                )
            }
            Ok(_) => panic!("a schema from a newer build was opened"),
            Err(other) => panic!("unexpected error: {other}"),
        }
        schema.remove().await;
    }

    /// Unreachable servers and bad URLs are reported with where, never with the password.
    #[tokio::test]
    async fn connection_errors_never_show_the_password() {
        let secret = "hunter2-Secret";
        for url in [
            format!("postgres://fg:{secret}@127.0.0.1:1/test"),
            format!("postgres://fg:{secret}@127.0.0.1:notaport/test"),
            format!("postgresql://fg:{secret}@127.0.0.1:5432/test?sslmode=bogus"),
            format!("mysql://fg:{secret}@127.0.0.1/test"),
        ] {
            let mut config = PostgresConfig::new(url.as_str().into());
            config.connect_timeout = Duration::from_secs(5);
            let error = match PostgresStore::open(config.clone()).await {
                Ok(_) => panic!("{url} opened"),
                Err(e) => e.to_string(),
            };
            assert!(!error.contains(secret), "{error}");
            assert!(
                !format!("{config:?}").contains(secret),
                "Debug shows the password"
            );
        }
    }
}
