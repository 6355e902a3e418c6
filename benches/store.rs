//! Event store throughput on both backends: durable appends one at a time, appends from many
//! tasks at once (where group commit shares one sync among them), and reading the log in
//! pages. At the end it prints, per backend, the appends per second of each writer count and
//! its ratio to the one-writer rate; then (under `cargo bench` only) that ratio for 256
//! writers again, from rounds that alternate one writer and 256, which a machine whose speed
//! drifts between criterion's measurements cannot bend as much.
//!
//! Run: `cargo bench --bench store`. The embedded store's files live in a temporary
//! directory (the figures are those of the disk under `$TMPDIR`); PostgreSQL is the server
//! at `FG_TEST_POSTGRES_URL` (default: the local `test` database), in a schema of its own that
//! is dropped at the end. Without a reachable server, only the embedded store is measured.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use events::{EventMetadata, ExpectedVersion, NewEvent};
use fragment_gateway::store::contract::TestSchema;
use fragment_gateway::store::{EventStore, SqliteStore};
use serde_json::json;
use uuid::Uuid;

/// The allocator `fragment-gateway` runs with: the writer thread frees what the callers'
/// threads allocated, which the system allocator makes dearer than the service pays.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Ids as the service makes them: time-ordered (UUIDv7), so an index of them grows at its end
/// as it does in production, not at random pages.
fn event(n: u64) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: "OrderPaid".into(),
        schema_version: 1,
        // About the size of a real order event.
        data: json!({
            "order_id": Uuid::now_v7(),
            "n": n,
            "amount": "12.500000000",
            "wallet": "0:83dfd552e63729b472fcbcc8c45ebcc6691702558b68ec7527e1ba403a0f31a8",
        }),
        metadata: EventMetadata::correlated(Uuid::now_v7()),
    }
}

/// Events in an order's stream over its life (created, payment queued, paid, submitted,
/// confirmed, …): the generated service logs have seven per fulfilled order.
const ORDER_EVENTS: u64 = 7;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Appends per second measured, by backend and number of writers.
type Rates = Arc<Mutex<BTreeMap<(&'static str, u64), (u64, Duration)>>>;

fn note(rates: &Rates, backend: &'static str, writers: u64, appends: u64, took: Duration) {
    let mut r = rates.lock().unwrap();
    let entry = r.entry((backend, writers)).or_default();
    entry.0 += appends;
    entry.1 += took;
}

/// A fresh store of each backend that can be had here.
fn backends(
    rt: &tokio::runtime::Runtime,
    dir: &std::path::Path,
) -> Vec<(&'static str, Arc<dyn EventStore>, Option<TestSchema>)> {
    let mut out: Vec<(&'static str, Arc<dyn EventStore>, Option<TestSchema>)> = vec![(
        "sqlite",
        Arc::new(SqliteStore::open(dir.join("appends.sqlite3")).expect("open")),
        None,
    )];
    let schema = TestSchema::new();
    match rt.block_on(schema.open()) {
        Ok(store) => out.push(("postgres", store, Some(schema))),
        Err(e) => eprintln!("postgres: not measured ({e})"),
    }
    out
}

fn appends(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let rates: Rates = Default::default();
    let mut g = c.benchmark_group("append");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8))
        .throughput(Throughput::Elements(1));
    for (backend, store, schema) in backends(&rt, dir.path()) {
        // One caller awaiting each append: every append pays a whole sync.
        let mut version = 0;
        g.bench_function(format!("{backend}/1_writer"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for n in 0..iters {
                        version = store
                            .append(
                                "order-single",
                                ExpectedVersion::Exact(version),
                                vec![event(n)],
                            )
                            .await
                            .expect("append")
                            .version;
                    }
                    let took = start.elapsed();
                    note(&rates, backend, 1, iters, took);
                    took
                })
            })
        });
        // Many callers, each appending to its own stream: the writer commits whatever is
        // queued together, so appends per second grow with the number of callers. A caller's
        // stream is an order's: it takes `ORDER_EVENTS` events, then the caller goes on with
        // a new order, as the service's streams go (a few wallet streams live long; the
        // order streams, almost all the appends, are short and made in time order).
        for writers in [16u64, 64, 256] {
            g.bench_with_input(
                BenchmarkId::new(format!("{backend}/writers"), writers),
                &writers,
                |b, &writers| {
                    b.iter_custom(|iters| {
                        let per_task = iters.div_ceil(writers);
                        rt.block_on(async {
                            let start = Instant::now();
                            write_orders(&store, writers, move |n| n < per_task).await;
                            let took = start.elapsed();
                            note(&rates, backend, writers, per_task * writers, took);
                            // Scaled to the iterations asked for; rounding up adds < 1 append
                            // per task.
                            took.mul_f64(iters as f64 / (per_task * writers) as f64)
                        })
                    })
                },
            );
        }
        if std::env::args().any(|a| a == "--bench") {
            alternating_rounds(&rt, backend, &store);
        }
        rt.block_on(store.close()).expect("close");
        if let Some(schema) = schema {
            rt.block_on(schema.remove());
        }
    }
    g.finish();
    let rates = rates.lock().unwrap();
    for ((backend, writers), (appends, took)) in rates.iter() {
        let rate = *appends as f64 / took.as_secs_f64();
        let single = rates
            .get(&(*backend, 1))
            .map(|(a, t)| *a as f64 / t.as_secs_f64())
            .unwrap_or(rate);
        eprintln!(
            "{backend}: {writers:>3} writers: {rate:>9.0} appends/s, {:>5.1}x one writer",
            rate / single
        );
    }
}

/// Rounds of the ratio measurement, and how long each side of a round writes.
const ROUNDS: usize = 5;
const ROUND: Duration = Duration::from_secs(2);

/// The ratio of 256 writers to one, measured in rounds that alternate the two, so that a
/// machine whose speed drifts (a shared VM whose hypervisor takes a varying share of it)
/// slows both sides alike; criterion measures each writer count for several seconds in turn,
/// far enough apart for the drift to bend the ratio. Prints each round's ratio and the
/// median.
fn alternating_rounds(rt: &tokio::runtime::Runtime, backend: &str, store: &Arc<dyn EventStore>) {
    let mut ratios = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let one = rt.block_on(write_for(store, 1, ROUND));
        let many = rt.block_on(write_for(store, 256, ROUND));
        ratios.push(many / one);
        eprintln!(
            "{backend}: round: 1 writer {one:>7.0} appends/s, 256 writers {many:>8.0} appends/s, {:>5.1}x",
            many / one
        );
    }
    ratios.sort_by(f64::total_cmp);
    eprintln!(
        "{backend}: 256 writers / 1 writer over {ROUNDS} alternating rounds: median {:.1}x (from {:.1}x to {:.1}x)",
        ratios[ROUNDS / 2],
        ratios[0],
        ratios[ROUNDS - 1]
    );
}

/// Appends per second of `writers` tasks writing order-shaped streams for `duration`.
async fn write_for(store: &Arc<dyn EventStore>, writers: u64, duration: Duration) -> f64 {
    let start = Instant::now();
    let deadline = start + duration;
    let appends = write_orders(store, writers, move |_| Instant::now() < deadline).await;
    appends as f64 / start.elapsed().as_secs_f64()
}

/// `writers` tasks, each appending one event at a time to order-shaped streams (named as the
/// service names them) while `more(appends so far)` holds; returns the appends made.
async fn write_orders(
    store: &Arc<dyn EventStore>,
    writers: u64,
    more: impl Fn(u64) -> bool + Copy + Send + 'static,
) -> u64 {
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut stream = String::new();
                let mut n = 0;
                while more(n) {
                    let version = n % ORDER_EVENTS;
                    if version == 0 {
                        stream = format!("order-{}", Uuid::now_v7());
                    }
                    store
                        .append(&stream, ExpectedVersion::Exact(version), vec![event(n)])
                        .await
                        .expect("append");
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut appends = 0;
    for task in tasks {
        appends += task.await.expect("task");
    }
    appends
}

fn reads(c: &mut Criterion) {
    const EVENTS: u64 = 20_000;
    const PAGE: usize = 1024;
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(dir.path().join("read.sqlite3")).expect("open");
    rt.block_on(async {
        for chunk in 0..EVENTS / 1000 {
            let batch = (0..1000).map(|i| event(chunk * 1000 + i)).collect();
            store
                .append(&format!("order-{chunk}"), ExpectedVersion::NoStream, batch)
                .await
                .expect("fill");
        }
    });

    let mut g = c.benchmark_group("read_all");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8))
        .throughput(Throughput::Elements(EVENTS));
    g.bench_function("whole_log_in_pages_of_1024", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut after = 0;
                loop {
                    let page = store.read_all(after, PAGE).await.expect("read");
                    match page.last() {
                        Some(e) => after = e.position,
                        None => break,
                    }
                }
                assert_eq!(after, EVENTS);
            })
        })
    });
    g.finish();
}

criterion_group!(benches, appends, reads);
criterion_main!(benches);
