//! The core's read side and its actors:
//! - replay: events per second folded into all projections (decode + upcast + apply), from
//!   memory and from the embedded store (read + decode + apply, as `fragment-gateway replay`
//!   and `audit` fold the whole log);
//! - memory per idle actor: live heap bytes per order actor and per wallet actor started by
//!   the registry with its state loaded, counted by a global allocator.
//!
//! Run: `cargo bench --bench core`. Under `cargo test` it runs once on a small log, as a
//! smoke test.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use criterion::{Criterion, Throughput};
use events::*;
use fragment_gateway::actors::registry::Registry;
use fragment_gateway::domain::Policy;
use fragment_gateway::store::{EventStore, SqliteStore};
use projections::ReadModels;
use rust_decimal::Decimal;
use uuid::Uuid;

/// Counts the bytes the Rust heap holds (SQLite's own cache is allocated outside it), over
/// the allocator the binary uses (mimalloc). It counts only while `COUNTING` is set (the
/// memory measurement): a counter every thread adds to on every allocation is one cache line
/// the cores fight over, and it cost replay a tenth of its time, which `fragment-gateway`
/// does not pay.
struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static LIVE: AtomicIsize = AtomicIsize::new(0);

fn count(bytes: isize) {
    if COUNTING.load(Ordering::Relaxed) {
        LIVE.fetch_add(bytes, Ordering::Relaxed);
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        unsafe { mimalloc::MiMalloc.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as isize));
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size as isize - layout.size() as isize);
        unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const WALLETS: u64 = 100;

fn wallet(n: u64) -> String {
    format!("0:{:064x}", n + 1)
}

/// The events of one fulfilled no-KYC order, as the actors write them: its stream's seven
/// and the wallet's accrual.
fn order_events(n: u64) -> (Uuid, Vec<Event>, Event) {
    let t =
        Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap() + chrono::Duration::seconds(n as i64);
    let order_id = Uuid::from_u128(n as u128 + 1);
    let request_id = Uuid::from_u128((1 << 64) + n as u128);
    let raw = wallet(n % WALLETS);
    let price = Nanoton::new(250_000_000 + n * 5_000_000);
    let commission = Nanoton::new(price.as_u64() / 100);
    let order = vec![
        OrderCreated {
            order_id,
            product: Product::Stars {
                amount: 50 + n as u32,
            },
            username: "alice".into(),
            mode: OrderMode::NoKyc,
            cookie_fingerprint: None,
            price_nanoton: price,
            commission_rate: Decimal::new(1, 2),
            commission_nanoton: commission,
            total_nanoton: price.checked_add(commission).unwrap(),
            created_at: t,
            expires_at: t + chrono::Duration::minutes(10),
            payment_method: events::PaymentMethod::Ton,
            price_usdt: None,
        }
        .into(),
        OrderPaid {
            order_id,
            request_id,
            wallet_address: raw.clone(),
            wallet_friendly: "UQBGJpNLunAgG11Y3VXkUv5Tz-v3HnbuTU88c2XhGXwWWSax".into(),
            wallet_version: "v4r2".into(),
            account_index: None,
            balance_nanoton: Nanoton::new(60_000_000_000),
            debt_nanoton: Nanoton::new(0),
            paid_at: t,
        }
        .into(),
        OrderQueued {
            order_id,
            request_id,
            queued_at: t,
            queue_deadline: t + chrono::Duration::minutes(5),
        }
        .into(),
        OrderProcessingStarted {
            order_id,
            request_id,
            session: "owner:0".into(),
            started_at: t,
        }
        .into(),
        PaymentSubmitted {
            order_id,
            request_id,
            wallet_address: raw.clone(),
            wallet_version: "v4r2".into(),
            seqno: n as u32,
            valid_until: 1_795_516_108,
            message_hash: "d9".repeat(32),
            normalized_hash: "e1".repeat(32),
            body_hash: "a7".repeat(32),
            // A signed v4r2 external message with one internal message and a comment is
            // about this long in base64.
            boc: "te6cckEBAgEAqwAB4Yg".repeat(24),
            messages: vec![SubmittedMessage {
                destination: "0:".to_string() + &"5f".repeat(32),
                amount_nanoton: price,
                body_hash: "c3".repeat(32),
                purpose: "purchase".into(),
            }],
            fragment_request_id: "yFSXMbt8y71z".into(),
            purchase_nanoton: price,
            collection_nanoton: Nanoton::new(0),
            submitted_at: t,
            wallet_last_lt: None,
            confirmation: None,
            checkout: None,
            usdt: None,
        }
        .into(),
        OrderFulfilled {
            order_id,
            request_id,
            tx_hash: "26".repeat(32),
            tx_lt: 47_000_000_000_000 + n,
            cost_nanoton: price,
            commission_nanoton: commission,
            collected_nanoton: Nanoton::new(0),
            debt_after_nanoton: commission,
            network_fee_nanoton: Nanoton::new(1_600_000),
            completed_at: t + chrono::Duration::seconds(2),
            cost_usdt: None,
        }
        .into(),
        OrderDeliveryConfirmed {
            order_id,
            request_id,
            confirmed_at: t + chrono::Duration::seconds(3),
        }
        .into(),
    ];
    let accrual = CommissionAccrued {
        wallet_address: raw,
        order_id,
        amount_nanoton: commission,
        debt_after_nanoton: commission,
        accrued_total_after_nanoton: commission,
        at: t,
    }
    .into();
    (order_id, order, accrual)
}

/// The log of `orders` fulfilled orders, as the store would hand it out.
fn recorded_log(orders: u64) -> Vec<RecordedEvent> {
    let mut log = vec![];
    for n in 0..orders {
        let (_, order, accrual) = order_events(n);
        for (version, event) in order.into_iter().chain([accrual]).enumerate() {
            let position = log.len() as u64 + 1;
            log.push(
                event
                    .to_new_event(EventMetadata::correlated(Uuid::new_v4()))
                    .recorded(
                        event.stream().to_string(),
                        position,
                        version as u64 + 1,
                        Utc::now(),
                    ),
            );
        }
    }
    log
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Writes `orders` fulfilled orders to a store, many appends at once (group commit).
async fn fill(store: &Arc<dyn EventStore>, orders: u64) -> Vec<Uuid> {
    let mut ids = vec![];
    for chunk in (0..orders).collect::<Vec<_>>().chunks(256) {
        let tasks: Vec<_> = chunk
            .iter()
            .map(|&n| {
                let store = Arc::clone(store);
                tokio::spawn(async move {
                    let (id, order, accrual) = order_events(n);
                    let stream = StreamName::order(id).to_string();
                    let new = order
                        .iter()
                        .map(|e| e.to_new_event(EventMetadata::default()))
                        .collect();
                    store
                        .append(&stream, ExpectedVersion::NoStream, new)
                        .await
                        .expect("append order");
                    store
                        .append(
                            &accrual.stream().to_string(),
                            ExpectedVersion::Any,
                            vec![accrual.to_new_event(EventMetadata::default())],
                        )
                        .await
                        .expect("append accrual");
                    id
                })
            })
            .collect();
        for t in tasks {
            ids.push(t.await.expect("task"));
        }
    }
    ids
}

fn replay(c: &mut Criterion, orders: u64) {
    let log = recorded_log(orders);
    let events = log.len() as u64;
    let mut g = c.benchmark_group("replay");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10))
        .throughput(Throughput::Elements(events));
    g.bench_function(format!("memory/{events}_events"), |b| {
        b.iter(|| {
            let mut models = ReadModels::new();
            for e in &log {
                models.apply_recorded(e).expect("decodes");
            }
            assert_eq!(models.orders.orders.len() as u64, orders);
            models
        })
    });

    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn EventStore> =
        Arc::new(SqliteStore::open(dir.path().join("events.sqlite3")).expect("open"));
    rt.block_on(fill(&store, orders));
    g.bench_function(format!("sqlite/{events}_events"), |b| {
        b.iter(|| {
            let models = rt
                .block_on(fragment_gateway::ops::rebuild_in_memory(&store))
                .expect("rebuild");
            assert_eq!(models.position, events);
            models
        })
    });
    g.finish();
}

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// Starts `orders` order actors and one actor per wallet, each with its state loaded, and
/// reports the heap they hold while idle.
fn actor_memory(orders: u64) {
    // Counted from here on; only differences between two counts are reported, so what was
    // allocated before and freed during a measurement is at most noise.
    COUNTING.store(true, Ordering::Relaxed);
    let dir = tempfile::tempdir().expect("tempdir");
    actix_web::rt::System::new().block_on(async move {
        let store: Arc<dyn EventStore> =
            Arc::new(SqliteStore::open(dir.path().join("events.sqlite3")).expect("open"));
        let ids = fill(&store, orders).await;
        let registry = Registry::new(
            Arc::clone(&store),
            Arc::new(Policy::default()),
            Duration::from_secs(3600),
        );
        // One actor first, so that one-time allocations (pools, thread locals) are not
        // charged to the actors measured.
        registry.order_state(ids[0]).await.expect("state");
        registry.wallet_state(&wallet(0)).await.expect("state");
        let before = live();
        for id in &ids[1..] {
            let state = registry.order_state(*id).await.expect("state");
            assert!(state.created.is_some());
        }
        let per_order = (live() - before) as f64 / (ids.len() - 1) as f64;
        let before = live();
        for n in 1..WALLETS.min(orders) {
            registry.wallet_state(&wallet(n)).await.expect("state");
        }
        let per_wallet = (live() - before) as f64 / (WALLETS.min(orders) - 1) as f64;
        println!(
            "memory per idle actor (state loaded, mailbox, registry entry): order {:.0} bytes ({} actors, fulfilled orders of 7 events), wallet {:.0} bytes ({} actors)",
            per_order,
            ids.len() - 1,
            per_wallet,
            WALLETS.min(orders) - 1
        );
    });
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test` does not, and gets a quick smoke run.
    let bench = std::env::args().any(|a| a == "--bench");
    let mut c = Criterion::default().configure_from_args();
    replay(&mut c, if bench { 10_000 } else { 200 });
    actor_memory(if bench { 10_000 } else { 200 });
    c.final_summary();
}
