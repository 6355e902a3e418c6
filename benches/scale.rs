//! A gateway on a long log: what a year of business costs at start and in memory.
//!
//! For each store backend: a log of `ORDERS` orders is generated as events (every kind and
//! fate a long-running service leaves behind: paid, failed, expired, timed out and paid again,
//! delivered or not, commission accrued, collected, settled) and imported into a fresh store;
//! the read models' tables are built from it. Then a `fragment-gateway sandbox` process is
//! started on that store: the time from the process's start until `/health` answers, and its
//! resident memory (VmRSS) once started and again after 20 000 reads of random orders (which
//! fill the hot-row cache). Then `MORE` orders are added to the log and the gateway is started
//! twice more: once folding them into the tables as it starts, once on caught-up tables.
//!
//! Run: `cargo bench --bench scale` (1 000 000 orders and 100 000 more; `FG_SCALE_ORDERS`
//! and `FG_SCALE_MORE` change them; `FG_SCALE_BACKENDS=postgres` measures one backend).
//! PostgreSQL is measured when the server at `FG_TEST_POSTGRES_URL` answers. A table goes to
//! stderr and `target/bench-scale.json`.
//! Under `cargo test` it runs on 2 000 orders, as a smoke test.

#[path = "../tests/spawned/mod.rs"]
mod spawned;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use events::{EventMetadata, RecordedEvent};
use fragment_gateway::actors::runner;
use fragment_gateway::readmodel::contract::LogGenerator;
use fragment_gateway::store::contract::{test_postgres_url, TestSchema};
use fragment_gateway::store::{EventStore, SqliteStore};
use rand::{Rng, SeedableRng};
use uuid::Uuid;

/// Orders per generated chunk (imported in one or a few transactions).
const CHUNK: u64 = 10_000;
const WALLETS: u64 = 20_000;

#[derive(Debug, serde::Serialize)]
struct Started {
    seconds_to_serving: f64,
    rss_mb_started: f64,
    rss_mb_after_reads: f64,
}

#[derive(Debug, serde::Serialize)]
struct Report {
    backend: &'static str,
    orders: u64,
    events: u64,
    import_seconds: f64,
    tables_seconds: f64,
    tables_events_per_second: f64,
    started: Started,
    more_orders: u64,
    more_events: u64,
    started_folding_more: Started,
    started_again: Started,
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let orders = if bench {
        env_u64("FG_SCALE_ORDERS", 1_000_000)
    } else {
        2_000
    };
    let more = if bench {
        env_u64("FG_SCALE_MORE", 100_000)
    } else {
        200
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let only = std::env::var("FG_SCALE_BACKENDS").unwrap_or_default();
    let mut reports = vec![];
    for backend in ["sqlite", "postgres"] {
        if !only.is_empty() && !only.split(',').any(|b| b.trim() == backend) {
            continue;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("data dir");
        let schema = TestSchema::new();
        let url = test_postgres_url();
        let env: Vec<(&str, &str)> = if backend == "postgres" {
            vec![
                ("FG_STORE__BACKEND", "postgres"),
                ("FG_STORE__URL", url.as_str()),
                ("FG_STORE__SCHEMA", schema.config.schema.as_str()),
            ]
        } else {
            vec![]
        };
        let open = || -> Option<Arc<dyn EventStore>> {
            if backend == "postgres" {
                rt.block_on(schema.open()).ok()
            } else {
                Some(Arc::new(
                    SqliteStore::open(data.join("events.sqlite3")).expect("open"),
                ))
            }
        };
        let Some(store) = open() else {
            eprintln!("postgres: not measured (no server at FG_TEST_POSTGRES_URL)");
            continue;
        };
        let mut generator = LogGenerator::new(1, WALLETS, true);
        let mut versions = HashMap::new();
        let started = Instant::now();
        let events = rt.block_on(import(&store, &mut generator, orders, &mut versions));
        let import_seconds = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let tables = store.read_models().expect("read models");
        let head = rt.block_on(store.head()).expect("head");
        rt.block_on(runner::rebuild_into(&store, &*tables, head))
            .expect("build the tables");
        let tables_seconds = started.elapsed().as_secs_f64();
        rt.block_on(store.close()).expect("close");
        drop(store);
        eprintln!(
            "{backend}: {orders} orders, {events} events imported in {import_seconds:.1} s; tables built in {tables_seconds:.1} s"
        );

        let reads = if bench { 20_000 } else { 200 };
        let first = run_gateway(&rt, &data, &env, orders, reads);
        let store = open().expect("reopen");
        let more_events = rt.block_on(import(&store, &mut generator, more, &mut versions));
        rt.block_on(store.close()).expect("close");
        drop(store);
        let folding = run_gateway(&rt, &data, &env, orders + more, reads);
        let again = run_gateway(&rt, &data, &env, orders + more, reads);
        let report = Report {
            backend,
            orders,
            events,
            import_seconds,
            tables_seconds,
            tables_events_per_second: events as f64 / tables_seconds,
            started: first,
            more_orders: more,
            more_events,
            started_folding_more: folding,
            started_again: again,
        };
        eprintln!("{report:#?}");
        reports.push(report);
        if backend == "postgres" {
            rt.block_on(schema.remove());
        }
    }
    for r in &reports {
        eprintln!(
            "{:<8} {:>8} orders ({:>9} events): serving after {:>5.2} s, RSS {:>6.1} MB, {:>6.1} MB after the reads | +{} orders: first start {:>5.2} s (folds them), then {:>5.2} s, RSS {:>6.1} MB, {:>6.1} MB after reads | tables built at {:.0} events/s",
            r.backend,
            r.orders,
            r.events,
            r.started.seconds_to_serving,
            r.started.rss_mb_started,
            r.started.rss_mb_after_reads,
            r.more_orders,
            r.started_folding_more.seconds_to_serving,
            r.started_again.seconds_to_serving,
            r.started_again.rss_mb_started,
            r.started_again.rss_mb_after_reads,
            r.tables_events_per_second,
        );
    }
    if bench {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-scale.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&reports).expect("json")).expect("report");
        eprintln!("report: {}", path.display());
    }
}

/// Generates `orders` more orders and imports them as recorded events; returns how many.
async fn import(
    store: &Arc<dyn EventStore>,
    generator: &mut LogGenerator,
    orders: u64,
    wallet_versions: &mut HashMap<String, u64>,
) -> u64 {
    let mut position = store.head().await.expect("head");
    let mut count = 0;
    let mut left = orders;
    while left > 0 {
        let n = left.min(CHUNK);
        left -= n;
        // Order streams are new in their chunk; wallet streams go on across chunks.
        let mut order_versions: HashMap<String, u64> = HashMap::new();
        let mut batch: Vec<RecordedEvent> = vec![];
        let at = chrono::Utc::now();
        for (stream, appended) in generator.chunk(n) {
            let versions = if stream.starts_with("wallet-") {
                &mut *wallet_versions
            } else {
                &mut order_versions
            };
            for event in appended {
                let version = versions.entry(stream.clone()).or_insert(0);
                *version += 1;
                position += 1;
                batch.push(event.to_new_event(EventMetadata::default()).recorded(
                    stream.clone(),
                    position,
                    *version,
                    at,
                ));
            }
        }
        count += batch.len() as u64;
        // Handed over a part at a time, each event moved once (not cloned, nor shifted along
        // the batch as its head is cut off).
        let mut events = batch.into_iter();
        loop {
            let part: Vec<RecordedEvent> = events.by_ref().take(5_000).collect();
            if part.is_empty() {
                break;
            }
            store.import(part).await.expect("import");
        }
    }
    count
}

/// Starts a sandbox gateway on the store, measures, stops it.
fn run_gateway(
    rt: &tokio::runtime::Runtime,
    data: &std::path::Path,
    env: &[(&str, &str)],
    orders: u64,
    reads: u64,
) -> Started {
    let mut env = env.to_vec();
    env.push(("FG_RATE_LIMIT__REQUESTS_PER_MINUTE", "0"));
    env.push(("RUST_LOG", "warn"));
    let log_dir = tempfile::tempdir().expect("tempdir");
    let started = Instant::now();
    let sandbox = spawned::Sandbox::start_in(log_dir, data, &env);
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            if let Ok(r) = reqwest::get(format!("{}/health", sandbox.url)).await {
                if r.status().is_success() {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "no /health: {}", sandbox.log());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    let seconds_to_serving = started.elapsed().as_secs_f64();
    let rss_mb_started = rss_mb(sandbox.pid());
    rt.block_on(async {
        let http = reqwest::Client::new();
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        for _ in 0..reads {
            let n = rng.gen_range(0..orders) as u128;
            let id = Uuid::from_u128((1u128 << 100) + n);
            let r = http
                .get(format!("{}/api/v1/orders/{id}", sandbox.url))
                .send()
                .await
                .expect("get");
            assert!(r.status().is_success(), "order {n}: {}", r.status());
        }
    });
    let rss_mb_after_reads = rss_mb(sandbox.pid());
    drop(sandbox);
    Started {
        seconds_to_serving,
        rss_mb_started,
        rss_mb_after_reads,
    }
}

/// The process's resident memory, in MB.
fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}
