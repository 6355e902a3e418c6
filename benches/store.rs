//! Embedded event store throughput: durable appends one at a time, appends from many tasks at
//! once (where group commit shares one fsync among them), and reading the log in pages.
//!
//! Run: `cargo bench --bench store`. The files live in a temporary directory, so the figures
//! are those of the disk under `$TMPDIR`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use events::{EventMetadata, ExpectedVersion, NewEvent};
use fragment_gateway::store::{EventStore, SqliteStore};
use serde_json::json;
use uuid::Uuid;

fn event(n: u64) -> NewEvent {
    NewEvent {
        event_id: Uuid::new_v4(),
        event_type: "OrderPaid".into(),
        schema_version: 1,
        // About the size of a real order event.
        data: json!({
            "order_id": Uuid::new_v4(),
            "n": n,
            "amount": "12.500000000",
            "wallet": "0:83dfd552e63729b472fcbcc8c45ebcc6691702558b68ec7527e1ba403a0f31a8",
        }),
        metadata: EventMetadata::correlated(Uuid::new_v4()),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn appends(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut g = c.benchmark_group("append");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8))
        .throughput(Throughput::Elements(1));

    // One caller awaiting each append: every append pays a whole fsync.
    let store = Arc::new(SqliteStore::open(dir.path().join("single.sqlite3")).expect("open"));
    let mut version = 0;
    g.bench_function("single_writer", |b| {
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
                start.elapsed()
            })
        })
    });
    report_groups("single_writer", &store);

    // Many callers, each appending to its own stream: the writer commits whatever is queued
    // together, so appends per second grow with the number of callers.
    for tasks in [16u64, 64] {
        let store = Arc::new(
            SqliteStore::open(dir.path().join(format!("tasks{tasks}.sqlite3"))).expect("open"),
        );
        let mut round = 0u64;
        g.bench_with_input(
            BenchmarkId::new("concurrent_tasks", tasks),
            &tasks,
            |b, &tasks| {
                b.iter_custom(|iters| {
                    round += 1;
                    let per_task = iters.div_ceil(tasks);
                    rt.block_on(async {
                        let start = Instant::now();
                        let handles: Vec<_> = (0..tasks)
                            .map(|t| {
                                let store = store.clone();
                                let stream = format!("order-r{round}t{t}");
                                tokio::spawn(async move {
                                    for n in 0..per_task {
                                        store
                                            .append(
                                                &stream,
                                                ExpectedVersion::Exact(n),
                                                vec![event(n)],
                                            )
                                            .await
                                            .expect("append");
                                    }
                                })
                            })
                            .collect();
                        for h in handles {
                            h.await.expect("task");
                        }
                        // Scaled to the iterations asked for; rounding up adds < 1 append per task.
                        start
                            .elapsed()
                            .mul_f64(iters as f64 / (per_task * tasks) as f64)
                    })
                })
            },
        );
        report_groups(&format!("concurrent_tasks/{tasks}"), &store);
    }
    g.finish();
}

fn report_groups(name: &str, store: &SqliteStore) {
    let stats = store.group_commit_stats();
    if stats.commits > 0 {
        eprintln!(
            "{name}: {} appends in {} commits, {:.1} appends per fsync",
            stats.appends,
            stats.commits,
            stats.appends as f64 / stats.commits as f64
        );
    }
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
