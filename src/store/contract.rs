//! The contract every `EventStore` backend passes: the same cases, run against a fresh store
//! each, so SQLite today and PostgreSQL later are held to one definition of "correct".
//!
//! Not `cfg(test)`: integration tests of each backend call [`run_all`] with a factory for
//! fresh stores. Cases panic on a broken promise, like any test.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use events::{EventMetadata, ExpectedVersion, NewEvent, RecordedEvent};
use serde_json::json;
use uuid::Uuid;

use super::{read_stream_all, AppendResult, EventStore, StoreError, Subscription};

/// How long a case waits for something that should happen promptly. Generous, because CI
/// machines are small and shared; a correct store never comes near it.
const DEADLINE: Duration = Duration::from_secs(60);

type CaseFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// One promise of the contract, checked against a fresh, empty store.
pub struct Case {
    pub name: &'static str,
    pub run: fn(Arc<dyn EventStore>) -> CaseFuture,
}

macro_rules! case {
    ($name:ident) => {
        Case {
            name: stringify!($name),
            run: |store| Box::pin($name(store)),
        }
    };
}

pub const CASES: &[Case] = &[
    case!(an_empty_store_answers_empty),
    case!(appended_events_read_back_with_every_field),
    case!(an_empty_append_is_refused),
    case!(expected_versions_are_enforced_and_a_conflict_appends_nothing),
    case!(concurrent_appends_to_one_stream_lose_nothing),
    case!(a_duplicate_event_id_is_refused_and_its_batch_writes_nothing),
    case!(read_all_is_in_position_order_and_pages),
    case!(read_stream_starts_at_a_version_and_keeps_streams_apart),
    case!(read_stream_all_reads_past_one_page),
    case!(head_watch_follows_commits),
    case!(a_subscription_started_during_writes_sees_every_position_once),
    case!(a_subscription_from_the_middle_gets_exactly_the_rest),
];

/// Runs every case, one after the other, each on a store from `make` (which must be new and
/// empty). Call it from a multi-threaded tokio runtime: the concurrency cases need real
/// parallelism to mean anything. A failing case panics with its name.
pub async fn run_all<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn EventStore>>,
{
    for case in CASES {
        let store = make().await;
        assert_eq!(
            store.head().await.expect("head of a new store"),
            0,
            "the factory must give an empty store (case `{}`)",
            case.name
        );
        // Spawned so that a panic can be reported with the case's name.
        if let Err(e) = tokio::spawn((case.run)(store)).await {
            let why = if e.is_panic() {
                crate::panic_message(&*e.into_panic())
            } else {
                "cancelled".to_string()
            };
            panic!("event store contract case `{}` failed: {why}", case.name);
        }
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

pub async fn an_empty_store_answers_empty(store: Arc<dyn EventStore>) {
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

pub async fn appended_events_read_back_with_every_field(store: Arc<dyn EventStore>) {
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

pub async fn an_empty_append_is_refused(store: Arc<dyn EventStore>) {
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

pub async fn expected_versions_are_enforced_and_a_conflict_appends_nothing(
    store: Arc<dyn EventStore>,
) {
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

pub async fn concurrent_appends_to_one_stream_lose_nothing(store: Arc<dyn EventStore>) {
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

pub async fn a_duplicate_event_id_is_refused_and_its_batch_writes_nothing(
    store: Arc<dyn EventStore>,
) {
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

pub async fn read_all_is_in_position_order_and_pages(store: Arc<dyn EventStore>) {
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

pub async fn read_stream_starts_at_a_version_and_keeps_streams_apart(store: Arc<dyn EventStore>) {
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

pub async fn read_stream_all_reads_past_one_page(store: Arc<dyn EventStore>) {
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

pub async fn head_watch_follows_commits(store: Arc<dyn EventStore>) {
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

pub async fn a_subscription_started_during_writes_sees_every_position_once(
    store: Arc<dyn EventStore>,
) {
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

pub async fn a_subscription_from_the_middle_gets_exactly_the_rest(store: Arc<dyn EventStore>) {
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
