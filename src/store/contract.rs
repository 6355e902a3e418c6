//! The contract every `EventStore` backend passes: the same cases, run against a fresh store
//! each, so SQLite today and PostgreSQL later are held to one definition of "correct".
//!
//! Not `cfg(test)`: integration tests of each backend expand [`event_store_contract!`] with
//! a factory of fresh [`Fixture`]s, one test per case. Cases panic on a broken promise, like
//! any test.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use events::{EventMetadata, ExpectedVersion, NewEvent, RecordedEvent};
use serde_json::json;
use uuid::Uuid;

use super::{read_stream_all, AppendResult, EventStore, StoreError, Subscription, GROUP_LIMIT};

/// How long a case waits for something that should happen promptly. Generous, because CI
/// machines are small and shared; a correct store never comes near it.
const DEADLINE: Duration = Duration::from_secs(60);

/// What a case gets: a fresh, empty store, and a way to open the same data again the way
/// another process would (its own connections, its own writer).
pub struct Fixture {
    pub store: Arc<dyn EventStore>,
    /// Opens another handle on the same data. A backend that allows one process per store
    /// (the embedded file) answers `Err(StoreError::Unavailable)` while `store` is open.
    pub another: Opener,
    /// Run after a case that passed (a failed one leaves its data to look at).
    pub cleanup: Option<Cleanup>,
}

pub type Opener = Box<
    dyn Fn() -> Pin<Box<dyn Future<Output = Result<Arc<dyn EventStore>, StoreError>> + Send>>
        + Send
        + Sync,
>;
pub type Cleanup = Pin<Box<dyn Future<Output = ()> + Send>>;

/// One test per contract case for a backend, so that a failing case does not hide the rest:
/// `event_store_contract!(make_fixture())` inside a module of an integration test, where
/// `make_fixture()` is an expression whose future gives a fresh [`Fixture`] for every call.
#[macro_export]
macro_rules! event_store_contract {
    ($fixture:expr) => {
        $crate::event_store_contract!(@cases $fixture;
            an_empty_store_answers_empty,
            appended_events_read_back_with_every_field,
            an_empty_append_is_refused,
            expected_versions_are_enforced_and_a_conflict_appends_nothing,
            concurrent_appends_to_one_stream_lose_nothing,
            a_duplicate_event_id_is_refused_and_its_batch_writes_nothing,
            read_all_is_in_position_order_and_pages,
            read_stream_starts_at_a_version_and_keeps_streams_apart,
            read_stream_all_reads_past_one_page,
            head_watch_follows_commits,
            a_subscription_started_during_writes_sees_every_position_once,
            a_subscription_from_the_middle_gets_exactly_the_rest,
            a_caller_dropped_mid_append_leaves_all_of_it_or_none,
            a_closed_store_refuses_everything_and_keeps_what_it_stored,
            a_burst_larger_than_the_group_limit_is_stored_whole_and_in_order,
            two_processes_appending_to_one_stream_lose_nothing,
            category_reads_return_one_kind_in_position_order,
            an_import_stores_events_as_recorded_and_refuses_gaps_whole,
            decoded_reads_say_what_read_all_and_decoding_say,
        );
    };
    (@cases $fixture:expr; $($case:ident),* $(,)?) => {
        $(
            // Multi-threaded: the concurrency cases need real parallelism to mean anything.
            #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let fixture = $fixture.await;
                $crate::store::contract::run(fixture, $crate::store::contract::$case).await;
            }
        )*
    };
}

/// Runs one case on a fixture: checks that the store is empty, runs the case, cleans up.
pub async fn run<Fut>(mut fixture: Fixture, case: fn(Fixture) -> Fut)
where
    Fut: Future<Output = ()>,
{
    assert_eq!(
        fixture.store.head().await.expect("head of a new store"),
        0,
        "the fixture must give an empty store"
    );
    let cleanup = fixture.cleanup.take();
    case(fixture).await;
    if let Some(cleanup) = cleanup {
        cleanup.await;
    }
}

fn event(event_type: &str, data: serde_json::Value) -> NewEvent {
    NewEvent {
        event_id: Uuid::new_v4(),
        event_type: event_type.to_string(),
        schema_version: 1,
        data,
        metadata: EventMetadata::default(),
    }
}

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(DEADLINE, future).await {
        Ok(out) => out,
        Err(_) => panic!("gave up after {DEADLINE:?} waiting for {what}"),
    }
}

/// The whole log, read in small pages so paging is exercised too.
async fn everything(store: &dyn EventStore) -> Vec<RecordedEvent> {
    let mut out: Vec<RecordedEvent> = Vec::new();
    loop {
        let after = out.last().map_or(0, |e| e.position);
        let page = store.read_all(after, 97).await.expect("read_all");
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

fn positions(events: &[RecordedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.position).collect()
}

fn ids(events: &[RecordedEvent]) -> Vec<Uuid> {
    events.iter().map(|e| e.event_id).collect()
}

fn assert_conflict(result: Result<AppendResult, StoreError>, stream: &str, actual: u64) {
    match result {
        Err(StoreError::Conflict {
            stream: s,
            actual: a,
            ..
        }) => {
            assert_eq!(s, stream, "the conflict names the stream");
            assert_eq!(a, actual, "the conflict names the stream's actual version");
        }
        other => panic!("expected a conflict at version {actual} on {stream}, got {other:?}"),
    }
}

pub async fn an_empty_store_answers_empty(fixture: Fixture) {
    let store = fixture.store;
    assert_eq!(store.head().await.expect("head"), 0);
    assert!(store.read_all(0, 10).await.expect("read_all").is_empty());
    assert!(store
        .read_stream("order-none", 1, 10)
        .await
        .expect("read_stream")
        .is_empty());
    assert_eq!(
        store.stream_version("order-none").await.expect("version"),
        0
    );
    assert_eq!(*store.head_watch().borrow(), 0);
    let mut subscription = Subscription::new(store.clone(), 0);
    assert!(subscription.drain_now().await.expect("drain").is_empty());
    assert_eq!(subscription.position(), 0);
}

pub async fn appended_events_read_back_with_every_field(fixture: Fixture) {
    let store = fixture.store;
    let correlation = Uuid::new_v4();
    let causation = Uuid::new_v4();
    let sent = vec![
        NewEvent {
            event_id: Uuid::new_v4(),
            event_type: "OrderPlaced".into(),
            schema_version: 0,
            data: json!({
                "username": "dürer_🦊",
                "amount": "12.500000001",
                "nested": { "list": [1, -2, u64::MAX], "flag": true, "none": null },
            }),
            metadata: EventMetadata::correlated(correlation),
        },
        NewEvent {
            event_id: Uuid::new_v4(),
            event_type: "OrderPaid".into(),
            schema_version: u16::MAX,
            data: json!(["a", 1]),
            metadata: EventMetadata {
                correlation_id: Some(correlation),
                causation_id: Some(causation),
            },
        },
        NewEvent {
            event_id: Uuid::new_v4(),
            event_type: "Noted".into(),
            schema_version: 3,
            data: serde_json::Value::Null,
            metadata: EventMetadata::default(),
        },
    ];
    let before = Utc::now();
    let result = store
        .append("order-1", ExpectedVersion::NoStream, sent.clone())
        .await
        .expect("append");
    let after = Utc::now();
    assert_eq!(
        result,
        AppendResult {
            version: 3,
            position: 3
        },
        "the result names the last event's version and position"
    );

    let read = store.read_stream("order-1", 1, 100).await.expect("read");
    assert_eq!(read.len(), 3);
    for (i, (got, want)) in read.iter().zip(&sent).enumerate() {
        assert_eq!(got.position, i as u64 + 1);
        assert_eq!(got.version, i as u64 + 1);
        assert_eq!(got.stream, "order-1");
        assert_eq!(got.event_id, want.event_id);
        assert_eq!(got.event_type, want.event_type);
        assert_eq!(got.schema_version, want.schema_version);
        assert_eq!(got.data, want.data);
        assert_eq!(got.metadata, want.metadata);
        // Clocks may be coarse or differ by a little; a second either way is "now".
        let slack = chrono::Duration::seconds(1);
        assert!(
            got.recorded_at >= before - slack && got.recorded_at <= after + slack,
            "recorded_at {} is not the time of the append ({before} .. {after})",
            got.recorded_at
        );
    }
    assert_eq!(store.read_all(0, 100).await.expect("read_all"), read);

    // A second stream and a second append to the first continue the global order.
    let other = store
        .append(
            "order-2",
            ExpectedVersion::Exact(0),
            vec![event("OrderPlaced", json!({}))],
        )
        .await
        .expect("append to a new stream with Exact(0)");
    assert_eq!(
        other,
        AppendResult {
            version: 1,
            position: 4
        }
    );
    let more = store
        .append(
            "order-1",
            ExpectedVersion::Exact(3),
            vec![event("OrderDelivered", json!({}))],
        )
        .await
        .expect("append at the current version");
    assert_eq!(
        more,
        AppendResult {
            version: 4,
            position: 5
        }
    );
    assert_eq!(store.head().await.expect("head"), 5);
    assert_eq!(store.stream_version("order-1").await.expect("version"), 4);
    assert_eq!(store.stream_version("order-2").await.expect("version"), 1);
}

pub async fn an_empty_append_is_refused(fixture: Fixture) {
    let store = fixture.store;
    let result = store
        .append("order-1", ExpectedVersion::NoStream, Vec::new())
        .await;
    assert!(
        matches!(result, Err(StoreError::EmptyAppend)),
        "got {result:?}"
    );
    // Refused, not "succeeded with nothing": the stream still does not exist.
    assert_eq!(store.stream_version("order-1").await.expect("version"), 0);
    assert_eq!(store.head().await.expect("head"), 0);
}

pub async fn expected_versions_are_enforced_and_a_conflict_appends_nothing(fixture: Fixture) {
    let store = fixture.store;
    let s = "wallet-1";
    store
        .append(
            s,
            ExpectedVersion::NoStream,
            vec![event("A", json!(1)), event("B", json!(2))],
        )
        .await
        .expect("first append");
    let log_before = everything(store.as_ref()).await;

    let conflicts = [
        ExpectedVersion::NoStream,
        ExpectedVersion::Exact(0),
        ExpectedVersion::Exact(1),
        ExpectedVersion::Exact(3),
    ];
    for expected in conflicts {
        let batch = vec![event("C", json!(3)), event("D", json!(4))];
        let result = store.append(s, expected, batch).await;
        match &result {
            Err(StoreError::Conflict { expected: e, .. }) => assert_eq!(*e, expected),
            other => panic!("{expected:?} on a stream at 2 should conflict, got {other:?}"),
        }
        assert_conflict(result, s, 2);
    }
    assert_eq!(
        everything(store.as_ref()).await,
        log_before,
        "a refused append stores none of its events"
    );
    assert_eq!(store.stream_version(s).await.expect("version"), 2);

    let any = store
        .append(s, ExpectedVersion::Any, vec![event("E", json!(5))])
        .await
        .expect("Any appends whatever the version");
    assert_eq!(
        any,
        AppendResult {
            version: 3,
            position: 3
        }
    );
    let fresh = store
        .append("wallet-2", ExpectedVersion::Any, vec![event("F", json!(6))])
        .await
        .expect("Any creates a stream");
    assert_eq!(fresh.version, 1);
}

pub async fn concurrent_appends_to_one_stream_lose_nothing(fixture: Fixture) {
    let store = fixture.store;
    const TASKS: usize = 8;
    const APPENDS_PER_TASK: usize = 25;
    const STREAM: &str = "order-contended";

    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked: Vec<(Uuid, AppendResult)> = Vec::new();
            let mut expected = 0;
            for n in 0..APPENDS_PER_TASK {
                let e = event("Contended", json!({ "task": task, "n": n }));
                loop {
                    let attempt = store
                        .append(STREAM, ExpectedVersion::Exact(expected), vec![e.clone()])
                        .await;
                    match attempt {
                        Ok(result) => {
                            acked.push((e.event_id, result));
                            expected = result.version;
                            break;
                        }
                        Err(StoreError::Conflict { actual, .. }) => {
                            assert!(actual > expected, "versions only grow");
                            // Retry both ways a caller would: from the error, or by reading.
                            expected = if n % 2 == 0 {
                                actual
                            } else {
                                store.stream_version(STREAM).await.expect("version")
                            };
                        }
                        Err(other) => panic!("append failed: {other}"),
                    }
                }
            }
            acked
        }));
    }
    let mut acked = Vec::new();
    for task in tasks {
        acked.extend(within("the contending writers", task).await.expect("task"));
    }

    let total = (TASKS * APPENDS_PER_TASK) as u64;
    let stream = read_stream_all(store.as_ref(), STREAM).await.expect("read");
    assert_eq!(
        stream.iter().map(|e| e.version).collect::<Vec<_>>(),
        (1..=total).collect::<Vec<_>>(),
        "every acknowledged append is stored once, at contiguous versions"
    );
    assert_eq!(positions(&stream), (1..=total).collect::<Vec<_>>());
    let unique: HashSet<Uuid> = ids(&stream).into_iter().collect();
    assert_eq!(unique.len(), stream.len(), "no event stored twice");
    let by_id: BTreeMap<Uuid, &RecordedEvent> = stream.iter().map(|e| (e.event_id, e)).collect();
    assert_eq!(acked.len(), stream.len());
    for (id, result) in &acked {
        let stored = by_id.get(id).expect("an acknowledged event is stored");
        assert_eq!(stored.version, result.version);
        assert_eq!(stored.position, result.position);
    }
    assert_eq!(store.stream_version(STREAM).await.expect("version"), total);
}

pub async fn a_duplicate_event_id_is_refused_and_its_batch_writes_nothing(fixture: Fixture) {
    let store = fixture.store;
    let first = event("A", json!(1));
    store
        .append("order-1", ExpectedVersion::NoStream, vec![first.clone()])
        .await
        .expect("first");

    // A retried append (the caller lost the reply) must not store the event again.
    let retry = store
        .append("order-1", ExpectedVersion::Any, vec![first.clone()])
        .await;
    assert!(
        matches!(retry, Err(StoreError::DuplicateEventId(id)) if id == first.event_id),
        "got {retry:?}"
    );

    // The duplicate is the second event of a batch for another stream: the first event of
    // that batch must not stay behind either.
    let innocent = event("B", json!(2));
    let result = store
        .append(
            "order-2",
            ExpectedVersion::NoStream,
            vec![innocent.clone(), first.clone()],
        )
        .await;
    assert!(
        matches!(result, Err(StoreError::DuplicateEventId(id)) if id == first.event_id),
        "got {result:?}"
    );
    // The same id twice inside one batch.
    let twice = event("C", json!(3));
    let result = store
        .append(
            "order-3",
            ExpectedVersion::NoStream,
            vec![twice.clone(), twice.clone()],
        )
        .await;
    assert!(
        matches!(result, Err(StoreError::DuplicateEventId(id)) if id == twice.event_id),
        "got {result:?}"
    );

    assert_eq!(ids(&everything(store.as_ref()).await), vec![first.event_id]);
    assert_eq!(store.stream_version("order-2").await.expect("version"), 0);
    assert_eq!(store.stream_version("order-3").await.expect("version"), 0);

    // Nothing of the refused batches is left to collide with: their other events go in.
    let result = store
        .append("order-2", ExpectedVersion::NoStream, vec![innocent, twice])
        .await
        .expect("the refused batches' other events are still new");
    assert_eq!(
        result,
        AppendResult {
            version: 2,
            position: 3
        },
        "refused appends leave no gap in positions"
    );
}

pub async fn read_all_is_in_position_order_and_pages(fixture: Fixture) {
    let store = fixture.store;
    let plan = [
        ("order-a", 1),
        ("order-b", 2),
        ("order-a", 3),
        ("order-c", 1),
        ("order-b", 1),
        ("order-a", 2),
    ];
    let mut sent: Vec<(String, Uuid)> = Vec::new();
    for (stream, count) in plan {
        let batch: Vec<NewEvent> = (0..count).map(|i| event("Paged", json!(i))).collect();
        sent.extend(batch.iter().map(|e| (stream.to_string(), e.event_id)));
        store
            .append(stream, ExpectedVersion::Any, batch)
            .await
            .expect("append");
    }
    let total = sent.len() as u64;

    let all = store.read_all(0, 1000).await.expect("read_all");
    assert_eq!(positions(&all), (1..=total).collect::<Vec<_>>());
    let got: Vec<(String, Uuid)> = all.iter().map(|e| (e.stream.clone(), e.event_id)).collect();
    assert_eq!(got, sent, "global order is append order");
    let mut versions: BTreeMap<&str, u64> = BTreeMap::new();
    for e in &all {
        let v = versions.entry(e.stream.as_str()).or_default();
        *v += 1;
        assert_eq!(e.version, *v, "stream versions count up along the log");
    }

    let page = store.read_all(3, 4).await.expect("page");
    assert_eq!(positions(&page), vec![4, 5, 6, 7]);
    assert_eq!(page, all[3..7]);
    assert_eq!(
        positions(&store.read_all(total - 1, 10).await.expect("tail")),
        vec![total]
    );
    assert!(store.read_all(total, 10).await.expect("past").is_empty());
    assert!(store.read_all(u64::MAX, 10).await.expect("far").is_empty());
    assert!(store.read_all(0, 0).await.expect("no limit").is_empty());
    assert_eq!(everything(store.as_ref()).await, all);
    assert_eq!(store.head().await.expect("head"), total);
}

pub async fn read_stream_starts_at_a_version_and_keeps_streams_apart(fixture: Fixture) {
    let store = fixture.store;
    // Names that a prefix match or a LIKE pattern would confuse.
    for stream in ["order-1", "order-10", "order-1%", "order-1_"] {
        let batch = (0..5).map(|i| event("Kept", json!(i))).collect();
        store
            .append(stream, ExpectedVersion::NoStream, batch)
            .await
            .expect("append");
    }
    let versions = |events: Vec<RecordedEvent>| -> Vec<(String, u64)> {
        events.into_iter().map(|e| (e.stream, e.version)).collect()
    };
    let one = |v: u64| ("order-1".to_string(), v);

    let from_3 = store.read_stream("order-1", 3, 100).await.expect("read");
    assert_eq!(versions(from_3), vec![one(3), one(4), one(5)]);
    let limited = store.read_stream("order-1", 2, 2).await.expect("read");
    assert_eq!(versions(limited), vec![one(2), one(3)]);
    let from_0 = store.read_stream("order-1", 0, 100).await.expect("read");
    assert_eq!(versions(from_0).len(), 5, "version 0 means from the start");
    assert!(store
        .read_stream("order-1", 6, 100)
        .await
        .expect("read")
        .is_empty());
    assert!(store
        .read_stream("order-1", 1, 0)
        .await
        .expect("read")
        .is_empty());
    assert!(store
        .read_stream("order-", 1, 100)
        .await
        .expect("read")
        .is_empty());
    let pct = store.read_stream("order-1%", 1, 100).await.expect("read");
    assert!(pct.iter().all(|e| e.stream == "order-1%") && pct.len() == 5);
    assert_eq!(store.stream_version("order-10").await.expect("version"), 5);
    assert_eq!(store.stream_version("order-").await.expect("version"), 0);
}

pub async fn read_stream_all_reads_past_one_page(fixture: Fixture) {
    let store = fixture.store;
    // More than `read_stream_all`'s page, in one atomic append.
    const COUNT: u64 = 600;
    let batch: Vec<NewEvent> = (0..COUNT).map(|i| event("Bulk", json!(i))).collect();
    let sent: Vec<Uuid> = batch.iter().map(|e| e.event_id).collect();
    let result = store
        .append("order-bulk", ExpectedVersion::NoStream, batch)
        .await
        .expect("append");
    assert_eq!(
        result,
        AppendResult {
            version: COUNT,
            position: COUNT
        }
    );
    let read = read_stream_all(store.as_ref(), "order-bulk")
        .await
        .expect("read");
    assert_eq!(ids(&read), sent);
    assert_eq!(
        read.iter().map(|e| e.version).collect::<Vec<_>>(),
        (1..=COUNT).collect::<Vec<_>>()
    );
}

pub async fn head_watch_follows_commits(fixture: Fixture) {
    let store = fixture.store;
    let mut watch = store.head_watch();
    let result = store
        .append(
            "order-1",
            ExpectedVersion::NoStream,
            vec![event("A", json!(1))],
        )
        .await
        .expect("append");
    within("the head watch to reach the append", async {
        watch
            .wait_for(|head| *head >= result.position)
            .await
            .expect("store open")
    })
    .await;
    let result = store
        .append(
            "order-1",
            ExpectedVersion::Exact(1),
            vec![event("B", json!(2)), event("C", json!(3))],
        )
        .await
        .expect("append");
    within("the head watch to reach the second append", async {
        watch
            .wait_for(|head| *head >= result.position)
            .await
            .expect("store open")
    })
    .await;
    assert_eq!(*watch.borrow(), 3);
    assert_eq!(store.head().await.expect("head"), 3);
}

/// Writers for the subscription cases: each owns a few streams and appends batches of one to
/// three events with exact expected versions. The writers listed in `gated` stop halfway
/// until `gate` opens, so the log is still growing after the subscriptions start.
fn spawn_writers(
    store: &Arc<dyn EventStore>,
    gated: &[usize],
    gate: &tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    const WRITERS: usize = 4;
    const APPENDS: usize = 24;
    const STREAMS_PER_WRITER: usize = 3;
    (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            let mut gate = gate.clone();
            let gated = gated.contains(&w);
            tokio::spawn(async move {
                let mut versions = [0u64; STREAMS_PER_WRITER];
                for n in 0..APPENDS {
                    if gated && n == APPENDS / 2 {
                        gate.wait_for(|open| *open).await.expect("gate");
                    }
                    let k = n % STREAMS_PER_WRITER;
                    let size = 1 + (n + w) % 3;
                    let batch = (0..size)
                        .map(|i| event("Written", json!({ "writer": w, "n": n, "i": i })))
                        .collect();
                    let stream = format!("order-w{w}s{k}");
                    let result = store
                        .append(&stream, ExpectedVersion::Exact(versions[k]), batch)
                        .await
                        .expect("writer append");
                    versions[k] = result.version;
                }
            })
        })
        .collect()
}

/// Follows `subscription` until it hands out an event of type `Sentinel`.
fn follow_until_sentinel(
    mut subscription: Subscription,
) -> tokio::task::JoinHandle<Vec<RecordedEvent>> {
    tokio::spawn(async move {
        let mut seen = Vec::new();
        loop {
            let e = within("the subscription's next event", subscription.next())
                .await
                .expect("next");
            let done = e.event_type == "Sentinel";
            assert_eq!(subscription.position(), e.position);
            seen.push(e);
            if done {
                return seen;
            }
        }
    })
}

pub async fn a_subscription_started_during_writes_sees_every_position_once(fixture: Fixture) {
    let store = fixture.store;
    // Something to catch up on before the first live event.
    let early: Vec<NewEvent> = (0..10).map(|i| event("Early", json!(i))).collect();
    store
        .append("order-early", ExpectedVersion::NoStream, early)
        .await
        .expect("append");

    let (open_gate, gate) = tokio::sync::watch::channel(false);
    let writers = spawn_writers(&store, &[2, 3], &gate);
    // Start once the writers have visibly begun, so catch-up and live reading overlap them.
    let mut head = store.head_watch();
    within("the writers to begin", head.wait_for(|h| *h > 10))
        .await
        .expect("store open");

    let from_start = follow_until_sentinel(Subscription::new(store.clone(), 0));
    let middle = store.head().await.expect("head");
    let from_middle = follow_until_sentinel(Subscription::new(store.clone(), middle));
    open_gate.send_replace(true);

    for writer in writers {
        within("a writer", writer).await.expect("writer");
    }
    let end = store
        .append(
            "order-end",
            ExpectedVersion::NoStream,
            vec![event("Sentinel", json!({}))],
        )
        .await
        .expect("sentinel");

    let log = everything(store.as_ref()).await;
    assert_eq!(positions(&log), (1..=end.position).collect::<Vec<_>>());

    let seen = within("the first subscription", from_start)
        .await
        .expect("subscriber");
    assert_eq!(
        positions(&seen),
        (1..=end.position).collect::<Vec<_>>(),
        "every position once, in order"
    );
    assert_eq!(seen, log, "the subscription hands out the stored events");

    let rest = within("the second subscription", from_middle)
        .await
        .expect("subscriber");
    assert_eq!(
        positions(&rest),
        (middle + 1..=end.position).collect::<Vec<_>>()
    );
    assert_eq!(rest, log[middle as usize..]);
}

pub async fn a_subscription_from_the_middle_gets_exactly_the_rest(fixture: Fixture) {
    let store = fixture.store;
    let (_open, gate) = tokio::sync::watch::channel(true);
    for writer in spawn_writers(&store, &[], &gate) {
        within("a writer", writer).await.expect("writer");
    }
    let log = everything(store.as_ref()).await;
    let head = log.len() as u64;
    let middle = head / 2;

    let mut subscription = Subscription::new(store.clone(), middle);
    let rest = subscription.drain_now().await.expect("drain");
    assert_eq!(rest, log[middle as usize..]);
    assert_eq!(subscription.position(), head);
    assert!(
        subscription.drain_now().await.expect("drain").is_empty(),
        "nothing is handed out twice"
    );

    let more = event("More", json!({}));
    store
        .append("order-more", ExpectedVersion::NoStream, vec![more.clone()])
        .await
        .expect("append");
    let drained = subscription.drain_now().await.expect("drain");
    assert_eq!(ids(&drained), vec![more.event_id]);

    // Caught up, `next` waits for the next commit and hands it out.
    let waiting = tokio::spawn(async move {
        let e = subscription.next().await.expect("next");
        (e, subscription.position())
    });
    let live = event("Live", json!({}));
    let result = store
        .append("order-more", ExpectedVersion::Exact(1), vec![live.clone()])
        .await
        .expect("append");
    let (e, position) = within("the live event", waiting).await.expect("task");
    assert_eq!(e.event_id, live.event_id);
    assert_eq!(e.position, result.position);
    assert_eq!(position, result.position);
}

/// Callers that give up (a dropped future, an aborted task) at any point of an append: each
/// append of several events is then in the log whole or not at all, and whatever is in the
/// log is gap-free.
pub async fn a_caller_dropped_mid_append_leaves_all_of_it_or_none(fixture: Fixture) {
    const CALLERS: usize = 64;
    const BATCH: u64 = 5;
    let store = fixture.store;
    let callers: Vec<_> = (0..CALLERS)
        .map(|n| {
            let store = store.clone();
            let batch = (0..BATCH)
                .map(|i| event("Dropped", json!({ "n": n, "i": i })))
                .collect();
            let task = tokio::spawn(async move {
                store
                    .append(&format!("order-drop{n}"), ExpectedVersion::NoStream, batch)
                    .await
            });
            (n, task)
        })
        .collect();
    // Give up on them at different moments: some before they are sent, some while queued or
    // being committed, some never.
    for (n, task) in &callers {
        for _ in 0..(n % 8) {
            tokio::task::yield_now().await;
        }
        if n % 4 != 3 {
            task.abort();
        }
    }
    let mut answered = Vec::new();
    for (n, task) in callers {
        if let Ok(result) = within("a caller", task).await {
            answered.push((n, result.expect("an append that was not dropped succeeds")));
        }
    }
    // The writer takes appends in order: once a later one is answered, every earlier one
    // that reached it is settled.
    let last = store
        .append(
            "order-last",
            ExpectedVersion::NoStream,
            vec![event("Last", json!({}))],
        )
        .await
        .expect("append after the dropped callers");

    let log = everything(store.as_ref()).await;
    assert_eq!(positions(&log), (1..=last.position).collect::<Vec<_>>());
    for n in 0..CALLERS {
        let stream = format!("order-drop{n}");
        let version = store.stream_version(&stream).await.expect("version");
        assert!(
            version == 0 || version == BATCH,
            "{stream} holds {version} of its {BATCH} events"
        );
    }
    for (n, result) in answered {
        assert_eq!(
            result.version, BATCH,
            "caller {n} was answered for its whole batch"
        );
    }
}

/// After `close`: appends and reads are refused as unavailable (never a backend error, never
/// a hang), a second close returns at once, a subscription ends, and what was stored before
/// is still there for the next opener.
pub async fn a_closed_store_refuses_everything_and_keeps_what_it_stored(fixture: Fixture) {
    let store = fixture.store;
    let stored = store
        .append(
            "order-1",
            ExpectedVersion::NoStream,
            vec![event("A", json!(1)), event("B", json!(2))],
        )
        .await
        .expect("append");
    let mut subscription = Subscription::new(store.clone(), stored.position);
    within("close", store.close()).await.expect("a clean close");

    let unavailable = |what: &str, e: Option<StoreError>| match e {
        Some(StoreError::Unavailable(_)) => {}
        other => panic!("{what} after close: expected Unavailable, got {other:?}"),
    };
    let append = store
        .append(
            "order-1",
            ExpectedVersion::Exact(2),
            vec![event("C", json!(3))],
        )
        .await;
    unavailable("append", append.err());
    unavailable("read_all", store.read_all(0, 10).await.err());
    unavailable(
        "read_stream",
        store.read_stream("order-1", 1, 10).await.err(),
    );
    unavailable("head", store.head().await.err());
    unavailable(
        "stream_version",
        store.stream_version("order-1").await.err(),
    );
    let next = within("a subscription on a closed store", subscription.next()).await;
    assert!(
        next.is_err(),
        "a subscription on a closed store ends: {next:?}"
    );
    within("a second close", store.close())
        .await
        .expect("a second close returns at once");
    drop(store);

    let reopened = within("reopening", (fixture.another)())
        .await
        .expect("the data opens again once the store is closed");
    assert_eq!(reopened.head().await.expect("head"), 2);
    assert_eq!(
        reopened.stream_version("order-1").await.expect("version"),
        2
    );
    within("closing the reopened store", reopened.close())
        .await
        .expect("close");
}

/// More appends at once than one group commit takes: every one is stored, at gap-free
/// positions, each stream's appends in the order its writer made them.
pub async fn a_burst_larger_than_the_group_limit_is_stored_whole_and_in_order(fixture: Fixture) {
    let store = fixture.store;
    let appends = GROUP_LIMIT * 2 + 37;
    let tasks: Vec<_> = (0..appends)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                let size = 1 + n % 3;
                let batch = (0..size)
                    .map(|i| event("Burst", json!({ "n": n, "i": i })))
                    .collect();
                store
                    .append(&format!("order-burst{n}"), ExpectedVersion::NoStream, batch)
                    .await
                    .map(|result| (n, size as u64, result))
            })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(
            within("an append of the burst", task)
                .await
                .expect("task")
                .expect("append"),
        );
    }
    let total: u64 = results.iter().map(|(_, size, _)| size).sum();
    let log = everything(store.as_ref()).await;
    assert_eq!(positions(&log), (1..=total).collect::<Vec<_>>());
    let mut claimed = HashSet::new();
    for (n, size, result) in results {
        assert_eq!(result.version, size);
        for position in result.position + 1 - size..=result.position {
            let e = &log[position as usize - 1];
            assert_eq!(e.stream, format!("order-burst{n}"), "position {position}");
            assert!(
                claimed.insert(position),
                "position {position} answered twice"
            );
        }
    }
    assert_eq!(claimed.len() as u64, total);
}

/// Two processes on the same data, both appending to one stream with exact versions and to
/// streams of their own: nothing is lost or stored twice, versions and positions are
/// gap-free, and each sees the other's commits on its head watch. A backend that allows one
/// process per store must refuse the second one instead.
pub async fn two_processes_appending_to_one_stream_lose_nothing(fixture: Fixture) {
    const TASKS_PER_PROCESS: usize = 4;
    const APPENDS_PER_TASK: usize = 15;
    const STREAM: &str = "order-shared";
    let first = fixture.store;
    let second = match within("opening a second process", (fixture.another)()).await {
        Ok(second) => second,
        Err(StoreError::Unavailable(_)) => {
            // One process per store: appends from a second one are impossible by design.
            let still = first
                .append(
                    STREAM,
                    ExpectedVersion::NoStream,
                    vec![event("A", json!(1))],
                )
                .await
                .expect("the first process goes on after refusing the second");
            assert_eq!(still.position, 1);
            return;
        }
        Err(other) => panic!("a second process could not open the store: {other}"),
    };

    let mut tasks = Vec::new();
    for (p, store) in [(0, first.clone()), (1, second.clone())] {
        for t in 0..TASKS_PER_PROCESS {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut acked = Vec::new();
                let mut expected = 0;
                let own = format!("order-p{p}t{t}");
                for n in 0..APPENDS_PER_TASK {
                    let e = event("Shared", json!({ "p": p, "t": t, "n": n }));
                    loop {
                        match store
                            .append(STREAM, ExpectedVersion::Exact(expected), vec![e.clone()])
                            .await
                        {
                            Ok(result) => {
                                expected = result.version;
                                acked.push(e.event_id);
                                break;
                            }
                            Err(StoreError::Conflict { actual, .. }) => expected = actual,
                            Err(other) => panic!("shared append failed: {other}"),
                        }
                    }
                    let mine = event("Own", json!({ "p": p, "t": t, "n": n }));
                    store
                        .append(&own, ExpectedVersion::Exact(n as u64), vec![mine.clone()])
                        .await
                        .expect("append to a stream of its own");
                    acked.push(mine.event_id);
                }
                acked
            }));
        }
    }
    let mut acked = Vec::new();
    for task in tasks {
        acked.extend(
            within("the writers of both processes", task)
                .await
                .expect("task"),
        );
    }

    let total = (2 * TASKS_PER_PROCESS * APPENDS_PER_TASK) as u64;
    let shared = read_stream_all(first.as_ref(), STREAM).await.expect("read");
    assert_eq!(
        shared.iter().map(|e| e.version).collect::<Vec<_>>(),
        (1..=total).collect::<Vec<_>>()
    );
    let log = everything(first.as_ref()).await;
    assert_eq!(positions(&log), (1..=2 * total).collect::<Vec<_>>());
    assert_eq!(log, everything(second.as_ref()).await, "both read one log");
    let stored: HashSet<Uuid> = ids(&log).into_iter().collect();
    assert_eq!(stored.len(), log.len(), "no event stored twice");
    assert_eq!(acked.len(), log.len());
    assert!(
        acked.iter().all(|id| stored.contains(id)),
        "every acknowledged event is stored"
    );
    // Time follows positions whichever process wrote.
    assert!(log.windows(2).all(|w| w[0].recorded_at <= w[1].recorded_at));
    for store in [&first, &second] {
        let mut watch = store.head_watch();
        within("each process to see the other's commits", async {
            watch
                .wait_for(|h| *h >= 2 * total)
                .await
                .expect("store open")
        })
        .await;
    }
    within("closing the second process", second.close())
        .await
        .expect("close");
}

/// A category is the part of a stream's name before its first `-` (all of it if it has none):
/// streams whose names share a longer or shorter prefix are other categories.
pub async fn category_reads_return_one_kind_in_position_order(fixture: Fixture) {
    let store = fixture.store;
    let streams = [
        "order-1",
        "wallet-0:ab",
        "order-2",
        "orders-3",
        "order",
        "orderx-4",
        "order-1",
        "wallet-0:cd",
        "xorder-5",
        "order-3-6",
    ];
    for (i, stream) in streams.iter().enumerate() {
        store
            .append(
                stream,
                ExpectedVersion::Any,
                vec![event("Tested", json!(i))],
            )
            .await
            .expect("append");
    }
    let read = |category: &'static str, after: u64, limit: usize| {
        let store = store.clone();
        async move {
            store
                .read_category(category, after, limit)
                .await
                .expect("read_category")
                .into_iter()
                .map(|e| (e.position, e.stream))
                .collect::<Vec<_>>()
        }
    };
    let orders = read("order", 0, 100).await;
    assert_eq!(
        orders,
        [
            (1, "order-1"),
            (3, "order-2"),
            (5, "order"),
            (7, "order-1"),
            (10, "order-3-6")
        ]
        .map(|(p, s)| (p, s.to_string()))
    );
    assert_eq!(read("order", 1, 2).await, orders[1..3].to_vec());
    assert_eq!(read("order", 7, 100).await, orders[4..].to_vec());
    assert_eq!(read("order", 10, 100).await, vec![]);
    assert_eq!(
        read("wallet", 0, 100).await,
        [(2, "wallet-0:ab"), (8, "wallet-0:cd")].map(|(p, s)| (p, s.to_string()))
    );
    assert_eq!(read("orders", 0, 100).await, [(4, "orders-3".to_string())]);
    assert!(read("ord", 0, 100).await.is_empty());
    assert!(read("order%", 0, 100).await.is_empty());
    assert!(read("", 0, 100).await.is_empty());
}

/// Events imported from another store read back exactly as they were recorded there, and
/// the log goes on after them; an import that would leave a gap (in positions or in a
/// stream's versions) or repeat an id stores nothing.
pub async fn an_import_stores_events_as_recorded_and_refuses_gaps_whole(fixture: Fixture) {
    let store = fixture.store;
    let at = |secs: i64| {
        chrono::DateTime::parse_from_rfc3339("2026-11-01T10:00:00.123456Z")
            .unwrap()
            .with_timezone(&Utc)
            + chrono::Duration::seconds(secs)
    };
    let recorded = |position: u64, stream: &str, version: u64, secs: i64| RecordedEvent {
        position,
        stream: stream.to_string(),
        version,
        event_id: Uuid::new_v4(),
        event_type: "Imported".into(),
        schema_version: 3,
        data: json!({"position": position, "text": "ü \" \\ \n", "big": u64::MAX}),
        metadata: EventMetadata {
            correlation_id: Some(Uuid::new_v4()),
            causation_id: position.is_multiple_of(2).then(Uuid::new_v4),
        },
        recorded_at: at(secs),
    };
    let first = vec![
        recorded(1, "order-a", 1, 0),
        recorded(2, "wallet-0:b", 1, 5),
        recorded(3, "order-a", 2, 5),
    ];
    store.import(first.clone()).await.expect("import");
    assert_eq!(store.head().await.unwrap(), 3);
    assert_eq!(everything(&*store).await, first);
    let mut watch = store.head_watch();
    assert_eq!(
        *watch.borrow_and_update(),
        3,
        "the head watch follows an import"
    );

    for (refused, why) in [
        (vec![recorded(5, "order-c", 1, 9)], "a gap in positions"),
        (
            vec![recorded(4, "order-c", 1, 9), recorded(6, "order-c", 2, 9)],
            "a gap inside the import",
        ),
        (
            vec![recorded(4, "order-a", 4, 9)],
            "a gap in a stream's versions",
        ),
        (
            vec![recorded(4, "order-a", 2, 9)],
            "a version the stream has",
        ),
        (
            vec![RecordedEvent {
                event_id: first[0].event_id,
                ..recorded(4, "order-d", 1, 9)
            }],
            "an id the log holds",
        ),
        (
            vec![recorded(4, "order-e", 1, 9), recorded(3, "order-e", 2, 9)],
            "positions going back",
        ),
    ] {
        assert!(store.import(refused).await.is_err(), "{why} was imported");
        assert_eq!(
            everything(&*store).await,
            first,
            "{why}: something was stored"
        );
    }

    let appended = store
        .append(
            "order-a",
            ExpectedVersion::Exact(2),
            vec![event("After", json!(4))],
        )
        .await
        .expect("append after an import");
    assert_eq!((appended.position, appended.version), (4, 3));
    let log = everything(&*store).await;
    assert!(log[3].recorded_at >= log[2].recorded_at);
    store
        .import(vec![])
        .await
        .expect("an empty import is nothing");
}

/// `read_all_decoded` reads each event as `read_all` and `Event::from_recorded` would: the
/// current shapes, an old shape upcast, and the refusals of events this build cannot read.
pub async fn decoded_reads_say_what_read_all_and_decoding_say(fixture: Fixture) {
    let store = fixture.store;
    let order_id = Uuid::new_v4();
    let created = events::Event::from(events::OrderCreated {
        order_id,
        product: events::Product::Stars { amount: 50 },
        username: "alice".into(),
        mode: events::OrderMode::NoKyc,
        cookie_fingerprint: None,
        price_nanoton: events::Nanoton::new(u64::MAX),
        commission_rate: "0.01".parse().unwrap(),
        commission_nanoton: events::Nanoton::new(1),
        total_nanoton: events::Nanoton::new(u64::MAX),
        created_at: Utc::now(),
        expires_at: Utc::now(),
        payment_method: events::PaymentMethod::Ton,
        price_usdt: None,
    });
    let mut old = events::Event::from(events::OrderFailed {
        order_id,
        request_id: Uuid::new_v4(),
        error_code: "X".into(),
        error: "é \"quoted\"".into(),
        funds_moved: false,
        network_fee_nanoton: events::Nanoton::ZERO,
        failed_at: Utc::now(),
    })
    .to_new_event(EventMetadata::default());
    // Schema 1 of OrderFailed had no network fee: it is upcast.
    old.schema_version = 1;
    old.data
        .as_object_mut()
        .unwrap()
        .remove("network_fee_nanoton");
    let mut newer = created.to_new_event(EventMetadata::default());
    newer.schema_version = 999;
    let mut unknown = event("NoSuchEvent", json!({"a": 1}));
    unknown.schema_version = 1;
    let mut misshapen = created.to_new_event(EventMetadata::default());
    misshapen.data = json!({"order_id": "not a uuid"});
    store
        .append(
            &format!("order-{order_id}"),
            ExpectedVersion::Any,
            vec![
                created.to_new_event(EventMetadata::default()),
                old,
                newer,
                unknown,
                misshapen,
            ],
        )
        .await
        .expect("append");
    let recorded = store.read_all(0, 100).await.expect("read_all");
    let decoded = store
        .read_all_decoded(0, 100)
        .await
        .expect("read_all_decoded");
    assert_eq!(decoded.len(), recorded.len());
    for (d, r) in decoded.iter().zip(&recorded) {
        assert_eq!(
            (d.position, &d.stream, &d.event_type, d.recorded_at),
            (r.position, &r.stream, &r.event_type, r.recorded_at)
        );
        let want = events::Event::from_recorded(r);
        match (&d.event, &want) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "position {}", r.position),
            (Err(a), Err(b)) => assert_eq!(
                std::mem::discriminant(a),
                std::mem::discriminant(b),
                "position {}: {a} / {b}",
                r.position
            ),
            other => panic!("position {}: {other:?}", r.position),
        }
    }
    assert!(decoded[0].event.is_ok() && decoded[1].event.is_ok());
    assert!(decoded[2..].iter().all(|d| d.event.is_err()));
    let page = store.read_all_decoded(2, 2).await.expect("a page");
    assert_eq!(page.iter().map(|d| d.position).collect::<Vec<_>>(), [3, 4]);
}

/// The backend the service-level test suites (HTTP, core flows, the fault harness) run on:
/// `FG_TEST_BACKEND`, `sqlite` (the default) or `postgres`. The README's test command runs
/// them once on each.
pub fn test_backend() -> &'static str {
    match std::env::var("FG_TEST_BACKEND").as_deref() {
        Err(_) | Ok("") | Ok("sqlite") => "sqlite",
        Ok("postgres") => "postgres",
        Ok(other) => panic!("FG_TEST_BACKEND={other:?}: use sqlite or postgres"),
    }
}

/// A test schema's name for a test's data directory: the same directory (a restarted
/// gateway) finds the same schema.
pub fn test_schema_for(dir: &std::path::Path) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(dir.as_os_str().as_encoded_bytes());
    format!("t_{}", hex::encode(&digest[..12]))
}

/// The database tests of the PostgreSQL backend use: `FG_TEST_POSTGRES_URL`, by default the
/// local server's `test` database.
pub fn test_postgres_url() -> String {
    std::env::var("FG_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// A schema of its own for one test, in the test database: tests run in parallel without
/// seeing each other's data, and one that passed removes its schema.
#[derive(Clone, Debug)]
pub struct TestSchema {
    pub config: super::PostgresConfig,
}

impl TestSchema {
    pub fn new() -> TestSchema {
        let mut config = super::PostgresConfig::new(test_postgres_url().as_str().into());
        config.schema = format!("t_{}", Uuid::new_v4().simple());
        config.pool_size = 4;
        TestSchema { config }
    }

    pub async fn open(&self) -> Result<Arc<dyn EventStore>, StoreError> {
        super::PostgresStore::open(self.config.clone())
            .await
            .map(|s| Arc::new(s) as Arc<dyn EventStore>)
    }

    /// Drops the schema and everything in it.
    pub async fn remove(&self) {
        use sqlx::Connection;
        let url = test_postgres_url();
        let mut conn = sqlx::PgConnection::connect(&url)
            .await
            .expect("connecting to drop a test schema");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS {} CASCADE",
            self.config.schema
        )))
        .execute(&mut conn)
        .await
        .expect("dropping a test schema");
        let _ = conn.close().await;
    }
}

/// Drops its schema when dropped (on a thread of its own, so it works in async code too):
/// for a test's world that lives as long as the test.
pub struct SchemaGuard(pub TestSchema);

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        let schema = self.0.clone();
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(schema.remove())
        })
        .join();
        if dropped.is_err() && !std::thread::panicking() {
            panic!("dropping test schema {} failed", self.0.config.schema);
        }
    }
}

impl Default for TestSchema {
    fn default() -> TestSchema {
        TestSchema::new()
    }
}

/// A fresh schema and a store on it; `another` opens a second store on the same schema, with
/// its own connections and writer, as a second gateway process would.
pub async fn postgres_fixture() -> Fixture {
    let schema = TestSchema::new();
    let store = schema
        .open()
        .await
        .expect("open a PostgreSQL store on a fresh schema");
    let opener = schema.clone();
    Fixture {
        store,
        another: Box::new(move || {
            let schema = opener.clone();
            Box::pin(async move { schema.open().await })
        }),
        cleanup: Some(Box::pin(async move { schema.remove().await })),
    }
}
