//! The contract every `ReadStore` backend passes, on the read models of a fresh event store
//! each case (the event store contract's `Fixture`): rows read back exactly, commits are whole
//! and positioned, lists filter, sort, page and count alike, and folding a log batch by batch
//! into the tables gives what the in-memory fold (`projections::ReadModels`) gives.
//!
//! Not `cfg(test)`, for the same reason as `store::contract`: integration tests expand
//! [`read_model_contract!`] per backend. `synthetic_log` is also what the benchmarks build
//! their logs from.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use events::*;
use projections::{
    HistoryItem, OrderView, ReadModels, RequestStatus, RequestView, Summary, WalletCommission,
    PROJECTIONS_VERSION,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::{
    compare, Commit, NoCache, OrderFilter, Projector, ReadStore, RequestFilter, RowKeys,
    StoredState, TableSet,
};
use crate::store::contract::Fixture;
use crate::store::{EventStore, StoreError};

/// One test per case for a backend: `read_model_contract!(make_fixture())`, as with
/// `event_store_contract!`.
#[macro_export]
macro_rules! read_model_contract {
    ($fixture:expr) => {
        $crate::read_model_contract!(@cases $fixture;
            new_tables_are_empty_at_position_zero,
            rows_read_back_exactly_with_every_field,
            a_commit_from_another_position_stores_nothing,
            a_commit_whose_caller_went_away_stands_whole_or_not_at_all,
            a_second_writer_cannot_interleave_its_batches,
            lists_filter_sort_page_and_count,
            a_wallets_history_is_newest_paid_first_with_its_orders,
            scans_walk_every_row_in_key_order,
            a_rebuild_set_is_apart_until_adopted_whole,
            folding_a_log_in_batches_equals_the_in_memory_fold,
            a_reset_empties_everything,
            read_models_refuse_work_once_the_store_closed,
            a_service_key_is_made_once_and_shared_by_every_instance,
        );
    };
    (@cases $fixture:expr; $($case:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let fixture = $fixture.await;
                $crate::store::contract::run(fixture, $crate::readmodel::contract::$case).await;
            }
        )*
    };
}

fn tables(fixture: &Fixture) -> Arc<dyn ReadStore> {
    fixture
        .store
        .read_models()
        .expect("the store's read models")
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap()
}

/// A wallet's raw address.
pub fn wallet(n: u64) -> String {
    format!("0:{:064x}", n + 1)
}

fn order(n: u128, status: &str, wallet_raw: Option<&str>, at: u64) -> OrderView {
    OrderView {
        order_id: Uuid::from_u128(n),
        product: if n.is_multiple_of(2) {
            Product::Stars {
                amount: 50 + n as u32,
            }
        } else {
            Product::Premium { months: 6 }
        },
        username: format!("user_{n}"),
        mode: if n.is_multiple_of(3) {
            OrderMode::Kyc
        } else {
            OrderMode::NoKyc
        },
        status: status.into(),
        // Amounts past i64 survive the trip.
        price_nanoton: Nanoton::new(u64::MAX - n as u64),
        commission_rate: Decimal::new(125, 4),
        commission_nanoton: Nanoton::new(12_345),
        total_nanoton: Nanoton::new(7),
        created_at: t0() + Duration::milliseconds(n as i64 * 1001),
        expires_at: t0() + Duration::minutes(10),
        wallet_address: wallet_raw.map(|w| format!("UQ-{w}")),
        wallet_raw: wallet_raw.map(str::to_string),
        request_id: wallet_raw.map(|_| Uuid::from_u128(n + 1_000_000)),
        tx_hash: Some("ab".repeat(32)),
        error_code: None,
        error: Some("a message with \"quotes\", ünïcödé and a\nnewline".into()),
        completed_at: None,
        delivery_confirmed: match n % 4 {
            0 => None,
            1 => Some(true),
            _ => Some(false),
        },
        updated_at_position: at,
        payment_method: if n.is_multiple_of(3) {
            events::PaymentMethod::UsdtTon
        } else {
            events::PaymentMethod::Ton
        },
        price_usdt: n
            .is_multiple_of(3)
            .then_some(events::JettonAmount(u64::MAX - n as u64)),
    }
}

fn request(
    n: u128,
    order_n: u128,
    status: RequestStatus,
    wallet_raw: &str,
    paid: u64,
) -> RequestView {
    RequestView {
        request_id: Uuid::from_u128(n),
        order_id: Uuid::from_u128(order_n),
        status,
        product: Product::Stars { amount: 100 },
        username: "alice".into(),
        mode: OrderMode::NoKyc,
        commission_rate: Decimal::new(1, 2),
        wallet_address: wallet_raw.into(),
        wallet_friendly: format!("UQ-{wallet_raw}"),
        wallet_version: "v5r1".into(),
        created_at: t0(),
        queue_deadline: t0() + Duration::minutes(5),
        started_at: (status != RequestStatus::Queued).then(|| t0() + Duration::seconds(3)),
        completed_at: None,
        submitted: status == RequestStatus::Processing,
        error_code: None,
        error: None,
        result: (status == RequestStatus::Completed).then(|| projections::RequestResult {
            transaction_hash: "cd".repeat(32),
            cost_nanoton: Nanoton::new(u64::MAX),
            commission_nanoton: Nanoton::new(1),
            collected_nanoton: Nanoton::new(0),
            commission_balance_nanoton: Nanoton::new(5),
            completed_at: t0() + Duration::seconds(9),
            cost_usdt: Some(events::JettonAmount(u64::MAX)),
        }),
        paid_position: paid,
        queued_position: Some(paid + 1),
        updated_at_position: paid + 1,
    }
}

fn account(debt: u64, at: u64) -> WalletCommission {
    WalletCommission {
        debt_nanoton: Nanoton::new(debt),
        accrued_total_nanoton: Nanoton::new(debt.saturating_add(10)),
        collected_total_nanoton: Nanoton::new(10),
        settled_total_nanoton: Nanoton::new(0),
        failed_collections: 1,
        updated_at: Some(t0()),
        updated_at_position: at,
    }
}

async fn ready(t: &dyn ReadStore) {
    t.reset(PROJECTIONS_VERSION).await.expect("reset");
}

async fn commit(t: &dyn ReadStore, from: u64, to: u64, rows: Commit) {
    t.commit(Commit { from, to, ..rows }).await.expect("commit");
}

pub async fn new_tables_are_empty_at_position_zero(fixture: Fixture) {
    let t = tables(&fixture);
    let state = t.state().await.expect("state");
    assert_eq!(state.position, 0);
    assert!(state.version == 0 || state.version == PROJECTIONS_VERSION);
    assert_eq!(t.order(Uuid::from_u128(1)).await.unwrap(), None);
    assert_eq!(t.request(Uuid::from_u128(1)).await.unwrap(), None);
    assert_eq!(t.wallet(&wallet(1)).await.unwrap(), None);
    assert_eq!(
        t.orders(OrderFilter::default(), 0, 10).await.unwrap().total,
        0
    );
    assert_eq!(
        t.requests(RequestFilter::default(), 0, 10)
            .await
            .unwrap()
            .total,
        0
    );
    assert_eq!(t.wallets(false, 0, 10).await.unwrap().total, 0);
    assert_eq!(t.history(&wallet(1), 0, 10).await.unwrap().total, 0);
    assert!(t.in_flight().await.unwrap().is_empty());
    assert_eq!(t.set(), TableSet::Live);
}

pub async fn rows_read_back_exactly_with_every_field(fixture: Fixture) {
    let t = tables(&fixture);
    ready(&*t).await;
    let w = wallet(7);
    let orders = vec![
        order(1, "success", Some(&w), 3),
        order(2, "created", None, 1),
    ];
    let requests = vec![request(10, 1, RequestStatus::Completed, &w, 2)];
    let wallets = vec![(w.clone(), account(u64::MAX, 3))];
    let mut summary = Summary::default();
    summary.totals.accrued_nanoton = Nanoton::new(u64::MAX);
    summary.queue.completed = 3;
    summary.queue.recent_ms.extend([1, 2, 3]);
    commit(
        &*t,
        0,
        3,
        Commit {
            summary: summary.clone(),
            orders: orders.clone(),
            requests: requests.clone(),
            wallets: wallets.clone(),
            ..Commit::default()
        },
    )
    .await;
    assert_eq!(
        t.state().await.unwrap(),
        StoredState {
            position: 3,
            version: PROJECTIONS_VERSION,
            summary
        }
    );
    for o in &orders {
        assert_eq!(t.order(o.order_id).await.unwrap().as_ref(), Some(o));
    }
    assert_eq!(
        t.request(requests[0].request_id).await.unwrap().as_ref(),
        Some(&requests[0])
    );
    assert_eq!(t.wallet(&w).await.unwrap(), Some(wallets[0].1.clone()));
    let mut keys = RowKeys::default();
    keys.orders
        .extend([Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(99)]);
    keys.requests
        .extend([Uuid::from_u128(10), Uuid::from_u128(11)]);
    keys.wallets.extend([w.clone(), wallet(8)]);
    let mut rows = t.rows(keys).await.unwrap();
    rows.orders.sort_by_key(|o| o.order_id);
    assert_eq!(rows.orders, orders);
    assert_eq!(rows.requests, requests);
    assert_eq!(rows.wallets, wallets);
}

pub async fn a_commit_from_another_position_stores_nothing(fixture: Fixture) {
    let t = tables(&fixture);
    ready(&*t).await;
    commit(&*t, 0, 5, Commit::default()).await;
    let refused = t
        .commit(Commit {
            from: 4,
            to: 9,
            orders: vec![order(1, "created", None, 9)],
            ..Commit::default()
        })
        .await;
    match refused {
        Err(StoreError::ReadModelsMoved {
            expected: 4,
            actual: 5,
        }) => {}
        other => panic!("a commit from the wrong position answered {other:?}"),
    }
    assert_eq!(t.state().await.unwrap().position, 5);
    assert_eq!(t.order(Uuid::from_u128(1)).await.unwrap(), None);
}

pub async fn a_commit_whose_caller_went_away_stands_whole_or_not_at_all(fixture: Fixture) {
    let t = tables(&fixture);
    ready(&*t).await;
    let orders: Vec<OrderView> = (1..=300).map(|n| order(n, "created", None, 1)).collect();
    let mut dropped_early = 0;
    for attempt in 0..20u64 {
        let from = t.state().await.unwrap().position;
        let call = t.commit(Commit {
            from,
            to: from + 1,
            orders: orders
                .iter()
                .map(|o| OrderView {
                    updated_at_position: from + 1,
                    status: format!("s{attempt}"),
                    ..o.clone()
                })
                .collect(),
            ..Commit::default()
        });
        // Cut the caller off after a growing delay: before, during or after the commit.
        let _ = tokio::time::timeout(std::time::Duration::from_micros(attempt * 300), call).await;
        // Whatever happened, wait for any write still running to end, then look.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let state = t.state().await.unwrap();
        let statuses: std::collections::BTreeSet<String> = t
            .orders(OrderFilter::default(), 0, 1000)
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|o| o.status)
            .collect();
        if state.position == from {
            dropped_early += 1;
            assert!(
                !statuses.contains(&format!("s{attempt}")),
                "rows of a commit that did not move the position were stored"
            );
        } else {
            assert_eq!(state.position, from + 1);
            assert_eq!(
                statuses,
                [format!("s{attempt}")].into_iter().collect(),
                "a commit that moved the position stored only some of its rows"
            );
        }
    }
    // Not asserted either way: the split depends on the machine. Both outcomes are checked.
    let _ = dropped_early;
}

pub async fn a_service_key_is_made_once_and_shared_by_every_instance(fixture: Fixture) {
    let t = tables(&fixture);
    let other_store = (fixture.another)().await.ok();
    let other = match &other_store {
        Some(store) => store.read_models().expect("the other store's read models"),
        None => tables(&fixture),
    };
    // Two instances asking at once for a key nobody made yet get the same one.
    let (a, b) = tokio::join!(t.service_key("first"), other.service_key("first"));
    let (a, b) = (a.expect("a key"), b.expect("a key"));
    assert_eq!(*a, *b);
    assert_ne!(*a, [0u8; 32], "a random key, not a blank one");
    assert_eq!(*t.service_key("first").await.unwrap(), *a, "kept");
    let second = t.service_key("second").await.unwrap();
    assert_ne!(*second, *a, "each name has its own key");
    // The keys live beside the tables, never in the log.
    assert_eq!(fixture.store.head().await.unwrap(), 0);
}

pub async fn a_second_writer_cannot_interleave_its_batches(fixture: Fixture) {
    let first = tables(&fixture);
    ready(&*first).await;
    // Another process where the backend admits one, else another handle in this one.
    let other_store = (fixture.another)().await.ok();
    let second = match &other_store {
        Some(store) => store.read_models().expect("the other store's read models"),
        None => tables(&fixture),
    };
    let from = first.state().await.unwrap().position;
    let (a, b) = tokio::join!(
        first.commit(Commit {
            from,
            to: from + 3,
            orders: vec![order(1, "first", None, from + 3)],
            ..Commit::default()
        }),
        second.commit(Commit {
            from,
            to: from + 5,
            orders: vec![order(1, "second", None, from + 5)],
            ..Commit::default()
        }),
    );
    let (winner, loser) = match (&a, &b) {
        (Ok(()), Err(StoreError::ReadModelsMoved { .. })) => ("first", from + 3),
        (Err(StoreError::ReadModelsMoved { .. }), Ok(())) => ("second", from + 5),
        other => panic!("two commits from one position answered {other:?}"),
    };
    assert_eq!(t_status(&*first, 1).await, winner);
    assert_eq!(first.state().await.unwrap().position, loser);
    if let Some(store) = other_store {
        store.close().await.expect("close");
    }
}

async fn t_status(t: &dyn ReadStore, n: u128) -> String {
    t.order(Uuid::from_u128(n))
        .await
        .unwrap()
        .expect("the order")
        .status
}

pub async fn lists_filter_sort_page_and_count(fixture: Fixture) {
    let t = tables(&fixture);
    ready(&*t).await;
    let (a, b) = (wallet(1), wallet(2));
    let statuses = ["created", "queued", "success", "failed", "expired"];
    let orders: Vec<OrderView> = (1..=25u128)
        .map(|n| {
            let w = match n % 3 {
                0 => None,
                1 => Some(a.as_str()),
                _ => Some(b.as_str()),
            };
            order(n, statuses[n as usize % 5], w, n as u64)
        })
        .collect();
    let requests: Vec<RequestView> = (1..=12u128)
        .map(|n| {
            let status = RequestStatus::ALL[n as usize % 5];
            request(
                100 + n,
                n,
                status,
                if n % 2 == 0 { &a } else { &b },
                n as u64 * 10,
            )
        })
        .collect();
    let wallets = vec![
        (wallet(3), account(5, 1)),
        (wallet(1), account(9, 1)),
        (wallet(2), account(0, 1)),
        (wallet(4), account(5, 1)),
    ];
    commit(
        &*t,
        0,
        200,
        Commit {
            orders: orders.clone(),
            requests: requests.clone(),
            wallets,
            ..Commit::default()
        },
    )
    .await;
    let expect_orders = |keep: &dyn Fn(&OrderView) -> bool| -> Vec<Uuid> {
        let mut ids: Vec<Uuid> = orders
            .iter()
            .filter(|o| keep(o))
            .map(|o| o.order_id)
            .collect();
        ids.sort();
        ids.reverse();
        ids
    };
    let ids = |items: Vec<OrderView>| items.into_iter().map(|o| o.order_id).collect::<Vec<_>>();

    let all = t.orders(OrderFilter::default(), 0, 100).await.unwrap();
    assert_eq!((all.total, ids(all.items)), (25, expect_orders(&|_| true)));
    let page = t.orders(OrderFilter::default(), 5, 7).await.unwrap();
    assert_eq!(page.total, 25);
    assert_eq!(ids(page.items), expect_orders(&|_| true)[5..12].to_vec());

    let filter = OrderFilter {
        statuses: Some(vec!["created".into(), "failed".into()]),
        modes: Some(vec![OrderMode::NoKyc]),
        wallet: Some(a.clone()),
        delivery_confirmed: None,
        before: None,
    };
    let got = t.orders(filter.clone(), 0, 100).await.unwrap();
    let want = expect_orders(&|o| {
        ["created", "failed"].contains(&o.status.as_str())
            && o.mode == OrderMode::NoKyc
            && o.wallet_raw.as_deref() == Some(a.as_str())
    });
    assert_eq!(got.total, want.len() as u64);
    assert_eq!(ids(got.items), want);
    // A cursor (the last id of a page) walks the same list, newest first, each once; the
    // total counts the whole list on every page.
    let mut walked = vec![];
    let mut before = None;
    loop {
        let page = t
            .orders(
                OrderFilter {
                    before,
                    ..filter.clone()
                },
                0,
                2,
            )
            .await
            .unwrap();
        assert_eq!(page.total, want.len() as u64);
        let Some(last) = page.items.last() else {
            break;
        };
        before = Some(last.order_id);
        walked.extend(ids(page.items));
    }
    assert_eq!(walked, want);

    for delivery in [None, Some(true), Some(false)] {
        let got = t
            .orders(
                OrderFilter {
                    delivery_confirmed: Some(delivery),
                    ..OrderFilter::default()
                },
                0,
                100,
            )
            .await
            .unwrap();
        assert_eq!(
            ids(got.items),
            expect_orders(&|o| o.delivery_confirmed == delivery)
        );
    }
    let none = t
        .orders(
            OrderFilter {
                statuses: Some(vec![]),
                ..OrderFilter::default()
            },
            0,
            100,
        )
        .await
        .unwrap();
    assert_eq!(none.total, 0);

    let got = t
        .requests(
            RequestFilter {
                statuses: Some(vec![RequestStatus::Queued, RequestStatus::Completed]),
                wallet: Some(a.clone()),
            },
            0,
            100,
        )
        .await
        .unwrap();
    let mut want: Vec<Uuid> = requests
        .iter()
        .filter(|r| {
            [RequestStatus::Queued, RequestStatus::Completed].contains(&r.status)
                && r.wallet_address == a
        })
        .map(|r| r.request_id)
        .collect();
    want.sort();
    want.reverse();
    assert_eq!(got.total, want.len() as u64);
    assert_eq!(
        got.items.iter().map(|r| r.request_id).collect::<Vec<_>>(),
        want
    );

    let mut in_flight: Vec<Uuid> = t
        .in_flight()
        .await
        .unwrap()
        .iter()
        .map(|r| r.request_id)
        .collect();
    in_flight.sort();
    let mut want: Vec<Uuid> = requests
        .iter()
        .filter(|r| matches!(r.status, RequestStatus::Queued | RequestStatus::Processing))
        .map(|r| r.request_id)
        .collect();
    want.sort();
    assert_eq!(in_flight, want);

    // Largest debt first, then by address; `owing` leaves out the wallet without debt.
    let owing = t.wallets(true, 0, 10).await.unwrap();
    assert_eq!(owing.total, 3);
    let order: Vec<String> = owing.items.into_iter().map(|w| w.0).collect();
    assert_eq!(order, [wallet(1), wallet(3), wallet(4)]);
    let every = t.wallets(false, 1, 10).await.unwrap();
    assert_eq!(every.total, 4);
    assert_eq!(
        every.items.into_iter().map(|w| w.0).collect::<Vec<_>>(),
        [wallet(3), wallet(4), wallet(2)]
    );
}

pub async fn a_wallets_history_is_newest_paid_first_with_its_orders(fixture: Fixture) {
    let t = tables(&fixture);
    ready(&*t).await;
    let (a, b) = (wallet(1), wallet(2));
    // Request keys in the opposite order of payment: the history follows payment.
    let orders: Vec<OrderView> = (1..=6u128)
        .map(|n| order(n, "success", Some(&a), 1))
        .collect();
    let requests = vec![
        request(900, 1, RequestStatus::Completed, &a, 10),
        request(800, 2, RequestStatus::Failed, &a, 20),
        request(700, 3, RequestStatus::Queued, &b, 30),
        request(600, 4, RequestStatus::Timeout, &a, 40),
        request(500, 4, RequestStatus::Processing, &a, 50),
    ];
    commit(
        &*t,
        0,
        60,
        Commit {
            orders: orders.clone(),
            requests: requests.clone(),
            ..Commit::default()
        },
    )
    .await;
    let page = t.history(&a, 0, 10).await.unwrap();
    assert_eq!(page.total, 4);
    let want: Vec<HistoryItem> = [4, 3, 1, 0]
        .iter()
        .map(|&i| {
            let r = &requests[i];
            let o = orders.iter().find(|o| o.order_id == r.order_id).unwrap();
            HistoryItem::new(o, r)
        })
        .collect();
    assert_eq!(page.items, want);
    let second = t.history(&a, 1, 2).await.unwrap();
    assert_eq!(second.items, want[1..3].to_vec());
    assert_eq!(second.total, 4);
    assert_eq!(t.history(&b, 0, 10).await.unwrap().total, 1);
    assert_eq!(t.history(&wallet(9), 0, 10).await.unwrap().items, vec![]);
}

pub async fn scans_walk_every_row_in_key_order(fixture: Fixture) {
    let t = tables(&fixture);
    ready(&*t).await;
    let mut rng = StdRng::seed_from_u64(7);
    let mut orders: Vec<OrderView> = (0..1500)
        .map(|_| {
            let mut o = order(0, "created", None, 1);
            o.order_id = Uuid::from_u128(rng.gen());
            o
        })
        .collect();
    let mut wallets: Vec<(String, WalletCommission)> = (0..300)
        .map(|_| {
            (
                format!("{}:{:064x}", rng.gen_range(-1..=0), rng.gen::<u128>()),
                account(1, 1),
            )
        })
        .collect();
    commit(
        &*t,
        0,
        1,
        Commit {
            orders: orders.clone(),
            wallets: wallets.clone(),
            ..Commit::default()
        },
    )
    .await;
    orders.sort_by_key(|o| o.order_id);
    wallets.sort_by(|x, y| x.0.cmp(&y.0));
    let mut seen = vec![];
    let mut after = None;
    loop {
        let page = t.scan_orders(after, 256).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.order_id);
        seen.extend(page);
    }
    assert_eq!(seen, orders);
    let mut seen = vec![];
    let mut after = None;
    loop {
        let page = t.scan_wallets(after, 64).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.0.clone());
        seen.extend(page);
    }
    assert_eq!(seen, wallets, "wallets scan in byte order of their address");
    assert!(t.scan_requests(None, 10).await.unwrap().is_empty());
}

pub async fn a_rebuild_set_is_apart_until_adopted_whole(fixture: Fixture) {
    let live = tables(&fixture);
    ready(&*live).await;
    commit(
        &*live,
        0,
        4,
        Commit {
            orders: vec![order(1, "created", None, 1), order(2, "success", None, 4)],
            ..Commit::default()
        },
    )
    .await;
    let rebuilt = live
        .other_set(TableSet::Rebuild)
        .await
        .expect("a rebuild set");
    assert_eq!(rebuilt.set(), TableSet::Rebuild);
    ready(&*rebuilt).await;
    assert_eq!(rebuilt.order(Uuid::from_u128(1)).await.unwrap(), None);
    let mut summary = Summary::default();
    summary.queue.failed = 2;
    commit(
        &*rebuilt,
        0,
        6,
        Commit {
            summary: summary.clone(),
            orders: vec![order(1, "expired", None, 5), order(3, "created", None, 6)],
            ..Commit::default()
        },
    )
    .await;
    assert_eq!(
        t_status(&*live, 1).await,
        "created",
        "the live set is untouched"
    );
    let c = compare(&*live, &*rebuilt, 4).await.unwrap();
    // Order 1 exists in both (equal? no: it changed at 5 > 4 in the rebuild only); order 2
    // only live, order 3 only rebuilt.
    assert!(!c.equal(), "{c:?}");
    match live.adopt(TableSet::Rebuild, 3).await {
        Err(StoreError::ReadModelsMoved {
            expected: 3,
            actual: 4,
        }) => {}
        other => panic!("adopting from a wrong position answered {other:?}"),
    }
    assert_eq!(t_status(&*live, 1).await, "created");
    live.adopt(TableSet::Rebuild, 4).await.expect("adopt");
    assert_eq!(
        live.state().await.unwrap(),
        StoredState {
            position: 6,
            version: PROJECTIONS_VERSION,
            summary,
        }
    );
    assert_eq!(t_status(&*live, 1).await, "expired");
    assert_eq!(live.order(Uuid::from_u128(2)).await.unwrap(), None);
    assert_eq!(t_status(&*live, 3).await, "created");
    let c = compare(&*live, &*rebuilt, 6).await.unwrap();
    assert!(c.equal() && c.summary_compared, "{c:?}");
    rebuilt.drop_set().await.expect("drop the rebuild set");
    assert!(live.drop_set().await.is_err(), "the live set was dropped");
    // A new rebuild set starts empty.
    let again = live.other_set(TableSet::Rebuild).await.unwrap();
    assert_eq!(again.state().await.unwrap().position, 0);
    assert_eq!(again.order(Uuid::from_u128(3)).await.unwrap(), None);
    again.drop_set().await.unwrap();
}

pub async fn a_reset_empties_everything(fixture: Fixture) {
    let t = tables(&fixture);
    ready(&*t).await;
    let w = wallet(1);
    commit(
        &*t,
        0,
        9,
        Commit {
            orders: vec![order(1, "success", Some(&w), 2)],
            requests: vec![request(2, 1, RequestStatus::Queued, &w, 3)],
            wallets: vec![(w.clone(), account(3, 4))],
            ..Commit::default()
        },
    )
    .await;
    t.reset(PROJECTIONS_VERSION).await.unwrap();
    assert_eq!(
        t.state().await.unwrap(),
        StoredState {
            position: 0,
            version: PROJECTIONS_VERSION,
            summary: Summary::default()
        }
    );
    assert_eq!(
        t.orders(OrderFilter::default(), 0, 9).await.unwrap().total,
        0
    );
    assert_eq!(
        t.requests(RequestFilter::default(), 0, 9)
            .await
            .unwrap()
            .total,
        0
    );
    assert_eq!(t.wallets(false, 0, 9).await.unwrap().total, 0);
}

pub async fn read_models_refuse_work_once_the_store_closed(fixture: Fixture) {
    let t = tables(&fixture);
    ready(&*t).await;
    fixture.store.close().await.expect("close");
    for result in [
        t.state().await.map(|_| ()),
        t.commit(Commit {
            from: 0,
            to: 1,
            ..Commit::default()
        })
        .await,
        t.order(Uuid::from_u128(1)).await.map(|_| ()),
    ] {
        assert!(
            matches!(result, Err(StoreError::Unavailable(_))),
            "a closed store's read models answered {result:?}"
        );
    }
}

/// What the fold must agree on: every row, the singletons and the queue.
async fn assert_tables_equal_models(t: &dyn ReadStore, models: &ReadModels, projector: &Projector) {
    let mut orders = vec![];
    let mut after = None;
    loop {
        let page = t.scan_orders(after, 100).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.order_id);
        orders.extend(page);
    }
    let want: Vec<OrderView> = models.orders.orders.values().cloned().collect();
    assert_eq!(orders, want, "orders");
    let mut requests = vec![];
    let mut after = None;
    loop {
        let page = t.scan_requests(after, 100).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.request_id);
        requests.extend(page);
    }
    let want: Vec<RequestView> = models.orders.requests.values().cloned().collect();
    assert_eq!(requests, want, "requests");
    let wallets = t.scan_wallets(None, 10_000).await.unwrap();
    let want: Vec<(String, WalletCommission)> =
        models.commission.wallets.clone().into_iter().collect();
    assert_eq!(wallets, want, "wallets");
    let state = t.state().await.unwrap();
    assert_eq!(state.position, models.position);
    assert_eq!(state.summary, models.summary(), "summary");
    assert_eq!(projector.queue, models.queue, "queue");
    assert_eq!(projector.totals, models.commission.totals, "totals");
    for raw in models.commission.wallets.keys() {
        let page = t.history(raw, 0, 10_000).await.unwrap();
        let want = models.history.page(&models.orders, raw, 0, usize::MAX);
        assert_eq!(page.items, want, "history of {raw}");
        assert_eq!(page.total, models.history.count(raw) as u64);
    }
}

pub async fn folding_a_log_in_batches_equals_the_in_memory_fold(fixture: Fixture) {
    let t = tables(&fixture);
    let log = synthetic_log(11, 120, 6);
    append_log(&*fixture.store, &log, 1).await;
    let recorded = everything(&*fixture.store).await;
    let mut models = ReadModels::new();
    for r in &recorded {
        models.apply_recorded(r).expect("a readable event");
    }
    let head = recorded.last().unwrap().position;
    // Batches of uneven sizes, and a "restart" (a projector loaded from the tables) midway.
    let mut projector = Projector::load(&*t, head).await.unwrap();
    let mut rng = StdRng::seed_from_u64(3);
    let mut i = 0;
    while i < recorded.len() {
        let n = rng.gen_range(1..=40).min(recorded.len() - i);
        projector
            .fold(&*t, &NoCache, &recorded[i..i + n], true)
            .await
            .expect("fold");
        i += n;
        if i > recorded.len() / 2 && i - n <= recorded.len() / 2 {
            projector = Projector::load(&*t, head).await.unwrap();
            assert_eq!(projector.position, recorded[i - 1].position);
        }
    }
    // Folding what is already folded changes nothing.
    let again = projector
        .fold(&*t, &NoCache, &recorded[..10], true)
        .await
        .unwrap();
    assert_eq!(again.position, head);
    assert!(again.rows.orders.is_empty());
    assert_tables_equal_models(&*t, &models, &projector).await;
    let reloaded = Projector::load(&*t, head).await.unwrap();
    assert_eq!(
        reloaded.queue, projector.queue,
        "the queue rebuilt from the rows"
    );
    assert!(
        !projector.queue.is_empty() && models.orders.requests.len() > 100,
        "the log is meant to leave requests in flight"
    );
    // A log that ends before the tables do (a restored older log): the tables start over.
    let behind = Projector::load(&*t, head - 1).await.unwrap();
    assert_eq!(behind.position, 0);
    assert_eq!(
        t.orders(OrderFilter::default(), 0, 1).await.unwrap().total,
        0
    );
}

async fn everything(store: &dyn EventStore) -> Vec<RecordedEvent> {
    let mut out: Vec<RecordedEvent> = Vec::new();
    loop {
        let after = out.last().map_or(0, |e| e.position);
        let page = store.read_all(after, 500).await.expect("read_all");
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

/// Appends `log` in its order, `concurrency` appends at a time (1: exactly in order).
pub async fn append_log(store: &dyn EventStore, log: &[(String, Vec<Event>)], concurrency: usize) {
    use futures_util::StreamExt;
    futures_util::stream::iter(log.iter())
        .map(|(stream, events)| async move {
            let new = events
                .iter()
                .map(|e| e.to_new_event(EventMetadata::default()))
                .collect();
            store
                .append(stream, ExpectedVersion::Any, new)
                .await
                .expect("append")
        })
        .buffered(concurrency.max(1))
        .collect::<Vec<_>>()
        .await;
}

/// What happens to one order in a synthetic log.
#[derive(Clone, Copy, Debug)]
enum Fate {
    Unpaid,
    Expired,
    Fulfilled {
        confirmed: Option<bool>,
        collected: bool,
    },
    TimedOutThenFulfilled,
    Failed,
    Abandoned,
    Waiting,
    Running,
}

/// A deterministic log of `orders` orders of every kind and fate (paid, unpaid, expired,
/// failed, timed out and paid again, abandoned, still waiting, still running, delivered or
/// not, commission accrued, collected, failed to collect, settled), from `wallets` wallets,
/// the steps of up to eight orders interleaved. Each entry is one append: a stream and its
/// events.
pub fn synthetic_log(seed: u64, orders: u64, wallets: u64) -> Vec<(String, Vec<Event>)> {
    LogGenerator::new(seed, wallets, false).chunk(orders)
}

/// Makes synthetic logs a chunk of orders at a time, so that a log of millions of orders
/// never has to be held whole (the benchmarks'). The wallets' debts carry over from chunk to
/// chunk; every order of a chunk ends within it.
pub struct LogGenerator {
    rng: StdRng,
    wallets: u64,
    next: u64,
    debts: BTreeMap<String, (u64, u64, u64)>,
    /// Only what a service that ran a long time leaves behind: unpaid orders expired, no
    /// request waiting or running, every delivery with Fragment's word on it.
    settled: bool,
}

impl LogGenerator {
    pub fn new(seed: u64, wallets: u64, settled: bool) -> LogGenerator {
        LogGenerator {
            rng: StdRng::seed_from_u64(seed),
            wallets,
            next: 0,
            debts: BTreeMap::new(),
            settled,
        }
    }

    /// The appends of the next `orders` orders.
    pub fn chunk(&mut self, orders: u64) -> Vec<(String, Vec<Event>)> {
        let mut out = vec![];
        let mut scripts: Vec<std::collections::VecDeque<(String, Vec<Event>)>> = vec![];
        let end = self.next + orders;
        while self.next < end || !scripts.is_empty() {
            if self.next < end && (scripts.len() < 8 || self.rng.gen_bool(0.1)) {
                let n = self.next;
                let script = order_script(
                    &mut self.rng,
                    n,
                    self.wallets,
                    &mut self.debts,
                    self.settled,
                );
                scripts.push(script.into());
                self.next += 1;
            }
            let i = self.rng.gen_range(0..scripts.len());
            if let Some(step) = scripts[i].pop_front() {
                out.push(step);
            }
            if scripts[i].is_empty() {
                scripts.swap_remove(i);
            }
        }
        out
    }
}

fn order_script(
    rng: &mut StdRng,
    n: u64,
    wallets: u64,
    debts: &mut BTreeMap<String, (u64, u64, u64)>,
    settled: bool,
) -> Vec<(String, Vec<Event>)> {
    let t = t0() + Duration::seconds(n as i64 * 7);
    let order_id = Uuid::from_u128((1u128 << 100) + n as u128);
    let stream = StreamName::order(order_id).to_string();
    let raw = wallet(rng.gen_range(0..wallets.max(1)));
    let wallet_stream = StreamName::Wallet(raw.clone()).to_string();
    let kyc = rng.gen_bool(0.3);
    let product = if rng.gen_bool(0.7) {
        Product::Stars {
            amount: rng.gen_range(50..5000),
        }
    } else {
        Product::Premium {
            months: [3, 6, 12][rng.gen_range(0..3)],
        }
    };
    let price = Nanoton::new(rng.gen_range(100_000_000..20_000_000_000));
    let commission = Nanoton::new(if kyc { 0 } else { price.as_u64() / 100 });
    let fate = match rng.gen_range(0..20) {
        0 if !settled => Fate::Unpaid,
        0 | 1 => Fate::Expired,
        2 => Fate::TimedOutThenFulfilled,
        3 => Fate::Failed,
        4 => Fate::Abandoned,
        5 if !settled => Fate::Waiting,
        6 if !settled => Fate::Running,
        _ => Fate::Fulfilled {
            confirmed: if settled {
                [Some(true), Some(true), Some(true), Some(false)][rng.gen_range(0..4)]
            } else {
                [None, Some(true), Some(true), Some(false)][rng.gen_range(0..4)]
            },
            collected: rng.gen_bool(0.2),
        },
    };
    let mut steps = vec![(
        stream.clone(),
        vec![OrderCreated {
            order_id,
            product,
            username: format!("user{}", n % 97),
            mode: if kyc {
                OrderMode::Kyc
            } else {
                OrderMode::NoKyc
            },
            cookie_fingerprint: kyc.then(|| "f0".repeat(32)),
            price_nanoton: price,
            commission_rate: if kyc {
                Decimal::ZERO
            } else {
                Decimal::new(1, 2)
            },
            commission_nanoton: commission,
            total_nanoton: price.checked_add(commission).unwrap(),
            created_at: t,
            expires_at: t + Duration::minutes(10),
            payment_method: events::PaymentMethod::Ton,
            price_usdt: None,
        }
        .into()],
    )];
    let pay = |request: u128, at: DateTime<Utc>| -> Vec<Event> {
        let request_id = Uuid::from_u128(request);
        vec![
            OrderPaid {
                order_id,
                request_id,
                wallet_address: raw.clone(),
                wallet_friendly: format!("UQ{}", &raw[2..14]),
                wallet_version: "v4r2".into(),
                account_index: None,
                balance_nanoton: Nanoton::new(60_000_000_000),
                debt_nanoton: Nanoton::new(0),
                paid_at: at,
            }
            .into(),
            OrderQueued {
                order_id,
                request_id,
                queued_at: at,
                queue_deadline: at + Duration::minutes(5),
            }
            .into(),
        ]
    };
    let first = (2u128 << 100) + 2 * n as u128;
    let start = |request: u128, at: DateTime<Utc>| -> Event {
        OrderProcessingStarted {
            order_id,
            request_id: Uuid::from_u128(request),
            session: "owner:0".into(),
            started_at: at,
        }
        .into()
    };
    let submit = |request: u128, at: DateTime<Utc>| -> Event {
        PaymentSubmitted {
            order_id,
            request_id: Uuid::from_u128(request),
            wallet_address: raw.clone(),
            wallet_version: "v4r2".into(),
            seqno: n as u32,
            valid_until: 1_795_516_108,
            message_hash: "d9".repeat(32),
            normalized_hash: "e1".repeat(32),
            body_hash: "a7".repeat(32),
            boc: "te6cckEBAgEAqwAB4Yg".repeat(24),
            messages: vec![],
            fragment_request_id: "yFSXMbt8y71z".into(),
            purchase_nanoton: price,
            collection_nanoton: Nanoton::new(0),
            submitted_at: at,
            wallet_last_lt: None,
            confirmation: None,
            checkout: None,
            usdt: None,
        }
        .into()
    };
    let mut fulfil = |request: u128,
                      at: DateTime<Utc>,
                      collected: bool,
                      steps: &mut Vec<(String, Vec<Event>)>| {
        let entry = debts.entry(raw.clone()).or_default();
        let mut wallet_events: Vec<Event> = vec![];
        let mut taken = Nanoton::ZERO;
        if !commission.is_zero() {
            entry.0 += commission.as_u64();
            entry.1 += commission.as_u64();
            wallet_events.push(
                CommissionAccrued {
                    wallet_address: raw.clone(),
                    order_id,
                    amount_nanoton: commission,
                    debt_after_nanoton: Nanoton::new(entry.0),
                    accrued_total_after_nanoton: Nanoton::new(entry.1),
                    at,
                }
                .into(),
            );
        }
        if collected && entry.0 > 0 {
            taken = Nanoton::new(entry.0);
            entry.2 += entry.0;
            entry.0 = 0;
            wallet_events.push(
                CommissionCollected {
                    wallet_address: raw.clone(),
                    order_id,
                    amount_nanoton: taken,
                    debt_after_nanoton: Nanoton::ZERO,
                    collected_total_after_nanoton: Nanoton::new(entry.2),
                    tx_hash: "11".repeat(32),
                    at,
                }
                .into(),
            );
        } else if collected {
            wallet_events.push(
                CommissionCollectionFailed {
                    wallet_address: raw.clone(),
                    order_id,
                    amount_nanoton: Nanoton::new(1),
                    tx_hash: "22".repeat(32),
                    at,
                }
                .into(),
            );
        }
        if !wallet_events.is_empty() {
            steps.push((wallet_stream.clone(), wallet_events));
        }
        steps.push((
            stream.clone(),
            vec![OrderFulfilled {
                order_id,
                request_id: Uuid::from_u128(request),
                tx_hash: format!("{:064x}", request),
                tx_lt: n,
                cost_nanoton: price,
                commission_nanoton: commission,
                collected_nanoton: taken,
                debt_after_nanoton: Nanoton::new(entry.0),
                network_fee_nanoton: Nanoton::new(3_000_000),
                completed_at: at,
                cost_usdt: None,
            }
            .into()],
        ));
    };
    let at = |s: i64| t + Duration::milliseconds(s * 250);
    match fate {
        Fate::Unpaid => {}
        Fate::Expired => steps.push((
            stream.clone(),
            vec![OrderExpired {
                order_id,
                expired_at: at(2400),
            }
            .into()],
        )),
        Fate::Waiting => steps.push((stream.clone(), pay(first, at(1)))),
        Fate::Running => {
            steps.push((stream.clone(), pay(first, at(1))));
            steps.push((stream.clone(), vec![start(first, at(2))]));
        }
        Fate::Abandoned => {
            steps.push((stream.clone(), pay(first, at(1))));
            steps.push((
                stream.clone(),
                vec![OrderPaymentAbandoned {
                    order_id,
                    request_id: Uuid::from_u128(first),
                    error_code: "SERVICE_UNAVAILABLE".into(),
                    error: "restarted".into(),
                    abandoned_at: at(3),
                }
                .into()],
            ));
            // Reopened, and not paid again: in a log of a service long past, it expired.
            if settled {
                steps.push((
                    stream.clone(),
                    vec![OrderExpired {
                        order_id,
                        expired_at: at(2400),
                    }
                    .into()],
                ));
            }
        }
        Fate::Failed => {
            steps.push((stream.clone(), pay(first, at(1))));
            steps.push((
                stream.clone(),
                vec![start(first, at(2)), submit(first, at(3))],
            ));
            steps.push((
                stream.clone(),
                vec![OrderFailed {
                    order_id,
                    request_id: Uuid::from_u128(first),
                    error_code: "FRAGMENT_ERROR".into(),
                    error: "no".into(),
                    funds_moved: false,
                    network_fee_nanoton: Nanoton::new(1_000_000),
                    failed_at: at(9),
                }
                .into()],
            ));
        }
        Fate::TimedOutThenFulfilled => {
            steps.push((stream.clone(), pay(first, at(1))));
            steps.push((
                stream.clone(),
                vec![OrderTimedOut {
                    order_id,
                    request_id: Uuid::from_u128(first),
                    waited_seconds: 300,
                    timed_out_at: at(1200),
                }
                .into()],
            ));
            let second = first + 1;
            steps.push((stream.clone(), pay(second, at(1201))));
            steps.push((
                stream.clone(),
                vec![start(second, at(1203)), submit(second, at(1204))],
            ));
            fulfil(second, at(1220), false, &mut steps);
            // In a log of a service long past, Fragment's word on the delivery came.
            if settled {
                steps.push((
                    stream.clone(),
                    vec![OrderDeliveryConfirmed {
                        order_id,
                        request_id: Uuid::from_u128(second),
                        confirmed_at: at(1222),
                    }
                    .into()],
                ));
            }
        }
        Fate::Fulfilled {
            confirmed,
            collected,
        } => {
            steps.push((stream.clone(), pay(first, at(1))));
            steps.push((stream.clone(), vec![start(first, at(2))]));
            steps.push((stream.clone(), vec![submit(first, at(3))]));
            fulfil(first, at(10), collected, &mut steps);
            let request_id = Uuid::from_u128(first);
            match confirmed {
                None => {}
                Some(true) => steps.push((
                    stream.clone(),
                    vec![OrderDeliveryConfirmed {
                        order_id,
                        request_id,
                        confirmed_at: at(12),
                    }
                    .into()],
                )),
                Some(false) => steps.push((
                    stream.clone(),
                    vec![OrderDeliveryUnconfirmed {
                        order_id,
                        request_id,
                        reason: "no answer".into(),
                        at: at(400),
                    }
                    .into()],
                )),
            }
        }
    }
    if n % 17 == 5 {
        let entry = debts.entry(raw.clone()).or_default();
        if entry.0 > 0 {
            let amount = entry.0 / 2;
            entry.0 -= amount;
            steps.push((
                wallet_stream.clone(),
                vec![DebtSettled {
                    wallet_address: raw.clone(),
                    amount_nanoton: Nanoton::new(amount),
                    debt_after_nanoton: Nanoton::new(entry.0),
                    reference: format!("bank {n}"),
                    at: at(5000),
                }
                .into()],
            ));
        }
    }
    steps
}
