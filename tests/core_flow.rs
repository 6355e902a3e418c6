//! The event-sourced core end to end: purchases through the actors against the TON and
//! fragment.com simulators over loopback, with the embedded store on disk (no-KYC, KYC on the
//! client's own session, Premium); restarts in the middle of every step; order expiry and
//! queue timeouts; refusals at payment; reconciliation of a message that never landed or
//! that a TON API outage kept from the network; and the seed never reaching the store file.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use events::{Event, OrderMode, Product, StreamName};
use fragment_gateway::actors::{Core, CoreConfig, CoreError, Hooks, PaymentHooks, Services, Step};
use fragment_gateway::domain::order::{Payer, WalletFunds};
use fragment_gateway::domain::{DomainError, OrderCommand, Policy, Username};
use fragment_gateway::idempotency::{
    Begin, Idempotency, IdempotencyError, IdempotencyKey, IdempotencySettings, Keyed, Scope,
};
use fragment_gateway::sim::faults::FaultConfig;
use fragment_gateway::sim::fragment::state::Prices;
use fragment_gateway::store::EventStore;
use fragment_gateway::ton::client::TonApiConfig;
use fragment_gateway::ton::Nanoton;
use rust_decimal::Decimal;
use std::sync::Arc;
use uuid::Uuid;

fn order_stream(id: Uuid) -> String {
    StreamName::order(id).to_string()
}

fn wallet_stream(raw: &str) -> String {
    StreamName::wallet(raw).unwrap().to_string()
}

/// A no-KYC order of `amount` Stars for @alice.
/// Waits until the order's read model shows an outcome (success, failed or expired) and
/// returns it. Waiting for "not processing" is not enough: the read model follows the log,
/// so it may still show the order as queued when the wait begins.
async fn order_outcome(core: &Core, id: Uuid) -> projections::OrderView {
    until("the order has an outcome", || async {
        matches!(
            core.order(id).await.unwrap().status.as_str(),
            "success" | "failed" | "expired"
        )
    })
    .await;
    projections::OrderView::clone(&core.order(id).await.unwrap())
}

async fn stars_for_alice(core: &Core, amount: u32) -> projections::OrderView {
    projections::OrderView::clone(
        &core
            .create_order(Product::Stars { amount }, &alice(), None)
            .await
            .unwrap(),
    )
}

/// What the simulated chain charges a wallet for its first transfer of `messages` messages
/// (flat fees: compute, deploy, and a forward fee per message).
fn first_transfer_fee(w: &World, messages: u64) -> u64 {
    let fees = w.ton.config().fees;
    fees.compute + fees.deploy + fees.forward * messages
}

#[actix_web::test]
async fn a_no_kyc_purchase_runs_through_the_actors_to_the_nanoton() {
    let w = world().await;
    let p = payer();
    w.ton.fund(p.wallet.address(), Nanoton::from_ton(5));
    let (core, _) = w.core(Policy::default(), None).await;

    let order = stars_for_alice(&core, 50).await;
    let price = Prices::default().stars(50);
    assert_eq!(order.status, "created");
    assert_eq!(order.price_nanoton.as_u64(), price);
    // 1 %, rounded half away from zero.
    let commission = (price as u128 + 50) / 100;
    assert_eq!(u128::from(order.commission_nanoton.as_u64()), commission);

    let raw = p.wallet.raw_address();
    let receipt = core.pay_order(order.order_id, p, None, None).await.unwrap();
    assert!(receipt.new_request);
    core.drain().await.unwrap();

    let order = core.order(order.order_id).await.unwrap();
    assert_eq!(order.status, "success", "{order:?}");
    assert_eq!(order.delivery_confirmed, Some(true));
    let request = core.request(receipt.request.request_id).await.unwrap();
    let result = request.result.clone().unwrap();
    assert_eq!(result.cost_nanoton.as_u64(), price);
    assert_eq!(result.commission_balance_nanoton, order.commission_nanoton);
    assert_eq!(w.fragment.deliveries().len(), 1);
    assert_eq!(w.ton.balance(&w.fragment.payment_address()).as_u64(), price);
    let models = core.projections().snapshot().await.unwrap();
    assert_eq!(
        models.commission.wallet(&raw).debt_nanoton,
        order.commission_nanoton
    );
    assert_eq!(models.queue.stats().completed, 1);

    // Paying again from the same wallet is the same request, and moves nothing.
    let again = core
        .pay_order(order.order_id, payer(), None, None)
        .await
        .unwrap();
    assert!(!again.new_request);
    assert_eq!(again.request.request_id, receipt.request.request_id);
    core.drain().await.unwrap();
    assert_eq!(w.fragment.deliveries().len(), 1);

    // The seed never reached the store file (nor its WAL).
    core.shutdown(Duration::from_secs(1)).await;
    assert_no_seed_in(w.dir.path());
}

#[actix_web::test]
async fn collection_rides_along_with_a_purchase_once_the_debt_reaches_the_threshold() {
    let w = world().await;
    let p = payer();
    w.ton.fund(p.wallet.address(), Nanoton::from_ton(20));
    // A 0.1 TON threshold and a 10 % rate: the first order's commission alone reaches it.
    let policy = Policy {
        rate_no_kyc: "0.10".parse().unwrap(),
        collection_threshold_nanoton: Nanoton::new(100_000_000),
        ..Policy::default()
    };
    let (core, _) = w.core(policy, None).await;
    let order = stars_for_alice(&core, 500).await;
    let raw = p.wallet.raw_address();
    core.pay_order(order.order_id, p, None, None).await.unwrap();
    core.drain().await.unwrap();
    assert_eq!(core.order(order.order_id).await.unwrap().status, "success");
    let wallet = core
        .projections()
        .snapshot()
        .await
        .unwrap()
        .commission
        .wallet(&raw);
    assert_eq!(wallet.accrued_total_nanoton, order.commission_nanoton);
    assert_eq!(wallet.collected_total_nanoton, order.commission_nanoton);
    assert_eq!(wallet.debt_nanoton, Nanoton::new(0));
    assert_eq!(w.ton.balance(&w.fee.address), order.commission_nanoton);
}

#[actix_web::test]
async fn without_a_fee_address_a_payment_is_not_asked_for_a_collection_that_never_happens() {
    let w = world().await;
    let p = payer();
    let address = p.wallet.address().clone();
    let raw = p.wallet.raw_address();
    // A threshold the first order's commission alone reaches: with a fee address, this
    // payment would carry the commission too. Without one, nothing is ever collected, so
    // the wallet needs the price and the fee reserve only.
    let policy = Policy {
        collection_threshold_nanoton: Nanoton::new(1),
        ..Policy::default()
    };
    let price = Prices::default().stars(100);
    let needed = price + policy.network_fee_reserve_nanoton.as_u64();
    w.ton.fund(&address, Nanoton::new(needed));
    let services = Services {
        fee_address: None,
        ..w.services()
    };
    let (core, _) = w.core_with_services(config(policy), services, None).await;
    let order = stars_for_alice(&core, 100).await;
    assert!(!order.commission_nanoton.is_zero());
    let receipt = core.pay_order(order.order_id, p, None, None).await;
    assert!(receipt.is_ok(), "refused: {:?}", receipt.err());
    core.drain().await.unwrap();
    assert_eq!(core.order(order.order_id).await.unwrap().status, "success");
    let wallet = core
        .projections()
        .snapshot()
        .await
        .unwrap()
        .commission
        .wallet(&raw);
    assert_eq!(
        wallet.debt_nanoton, order.commission_nanoton,
        "accrued, not collected"
    );
    assert_eq!(w.ton.balance(&w.fee.address), Nanoton::ZERO);
    assert_eq!(w.ton.balance(&w.fragment.payment_address()).as_u64(), price);
}

/// Kills the core right after the `nth` event of `event_type`, restarts it on the same data
/// dir, and returns the final order status once everything settled.
async fn crash_after(event_type: &'static str) -> (World, String, usize, Option<bool>) {
    let w = world().await;
    let p = payer();
    w.ton.fund(p.wallet.address(), Nanoton::from_ton(5));
    let (core, _) = w.core(Policy::default(), Some((event_type, 1))).await;
    // A killed process never answers: its calls are given up after a while.
    let order = tokio::time::timeout(
        Duration::from_secs(5),
        core.create_order(Product::Stars { amount: 50 }, &alice(), None),
    )
    .await;
    let order_id = match order {
        Ok(Ok(o)) => o.order_id,
        _ => {
            // Killed at creation: nothing to finish.
            return (w, "none".into(), 0, None);
        }
    };
    let _ = tokio::time::timeout(
        Duration::from_secs(5),
        core.pay_order(order_id, p, None, None),
    )
    .await;
    // Let the dead process's in-flight work reach the point where it stops.
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(core);

    let (core, _) = w.core(Policy::default(), None).await;
    core.drain().await.unwrap();
    // Wait out any message that could still land (its validity is 20 s at most).
    let order = core.order(order_id).await.unwrap();
    let deliveries = w.fragment.deliveries().len();
    (
        w,
        order.status.clone(),
        deliveries,
        order.delivery_confirmed,
    )
}

#[actix_web::test]
async fn a_restart_between_any_two_events_ends_each_order_correctly_and_never_pays_twice() {
    let price = Prices::default().stars(50);
    for (event_type, expected) in [
        ("OrderPaid", "created"),
        ("OrderQueued", "created"),
        ("OrderProcessingStarted", "created"),
        ("PaymentSubmitted", "success"),
        ("CommissionAccrued", "success"),
        ("OrderFulfilled", "success"),
    ] {
        eprintln!("killing after {event_type}");
        let (w, status, deliveries, delivered) = crash_after(event_type).await;
        assert_eq!(status, expected, "killed after {event_type}");
        let paid = w.ton.balance(&w.fragment.payment_address()).as_u64();
        match expected {
            "success" => {
                assert_eq!(paid, price, "killed after {event_type}: paid exactly once");
                eventually("delivery", || w.fragment.deliveries().len() == 1).await;
                // The restarted service asked Fragment on the session that bought it: the
                // order is confirmed, not left for the operator to check by hand.
                assert_eq!(delivered, Some(true), "killed after {event_type}");
            }
            _ => {
                assert_eq!(paid, 0, "killed after {event_type}: no funds moved");
                assert_eq!(deliveries, 0);
            }
        }
    }
}

#[actix_web::test]
async fn a_kyc_purchase_runs_on_the_clients_own_session_with_no_commission() {
    let w = world().await;
    let p = payer();
    let funded = Nanoton::from_ton(5).as_u64();
    w.ton.fund(p.wallet.address(), Nanoton::new(funded));
    let raw = p.wallet.raw_address();
    let address = p.wallet.address().clone();
    // The client's own Fragment login; its wallet is connected (all three KYC cookies).
    let cookies = w.fragment.login("client", Some(&address)).unwrap();
    let (core, store) = w.core(Policy::default(), None).await;

    let order = core
        .create_order(
            Product::Stars { amount: 50 },
            &alice(),
            Some(cookies.clone()),
        )
        .await
        .unwrap();
    let price = Prices::default().stars(50);
    assert_eq!(order.mode, OrderMode::Kyc);
    assert_eq!(order.price_nanoton.as_u64(), price);
    assert_eq!(order.commission_rate, Decimal::ZERO);
    assert_eq!(order.commission_nanoton, Nanoton::new(0));
    assert_eq!(order.total_nanoton.as_u64(), price);

    // The cookies were never stored: a KYC order paid without them is refused, and nothing
    // is queued.
    let err = core
        .pay_order(order.order_id, payer(), None, None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, CoreError::Domain(DomainError::KycCookiesRequired)),
        "{err:?}"
    );
    assert_eq!(err.api_code(), ("VALIDATION_ERROR", 400));
    assert!(err.to_string().contains("fragment_cookies"), "{err}");
    let unpaid = core.order(order.order_id).await.unwrap();
    assert_eq!(unpaid.status, "created");
    assert_eq!(unpaid.request_id, None);
    assert_eq!(
        event_types(&*store, &order_stream(order.order_id)).await,
        ["OrderCreated"]
    );

    let receipt = core
        .pay_order(order.order_id, p, None, Some(cookies))
        .await
        .unwrap();
    assert!(receipt.new_request);
    core.drain().await.unwrap();

    let done = core.order(order.order_id).await.unwrap();
    assert_eq!(done.status, "success", "{done:?}");
    assert_eq!(done.delivery_confirmed, Some(true));
    let result = core
        .request(receipt.request.request_id)
        .await
        .unwrap()
        .result
        .clone()
        .unwrap();
    assert_eq!(result.cost_nanoton.as_u64(), price);
    assert_eq!(result.commission_nanoton, Nanoton::new(0));
    assert_eq!(result.collected_nanoton, Nanoton::new(0));
    assert_eq!(result.commission_balance_nanoton, Nanoton::new(0));

    let events = stream_events(&*store, &order_stream(order.order_id)).await;
    let started = events.iter().find_map(|e| match e {
        Event::OrderProcessingStarted(s) => Some(s.session.clone()),
        _ => None,
    });
    assert_eq!(
        started.as_deref(),
        Some("client"),
        "bought on the client's session"
    );
    let submitted: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::PaymentSubmitted(s) => Some(s),
            _ => None,
        })
        .collect();
    assert_eq!(submitted.len(), 1);
    assert_eq!(submitted[0].messages.len(), 1, "no commission message");
    assert_eq!(submitted[0].collection_nanoton, Nanoton::new(0));
    let fee = events
        .iter()
        .find_map(|e| match e {
            Event::OrderFulfilled(f) => Some(f.network_fee_nanoton.as_u64()),
            _ => None,
        })
        .unwrap();
    assert_eq!(fee, first_transfer_fee(&w, 1));

    // Fragment got exactly the price, once; the wallet paid that and the network fee only.
    assert_eq!(w.ton.balance(&w.fragment.payment_address()).as_u64(), price);
    assert_eq!(w.ton.balance(&address).as_u64(), funded - price - fee);
    assert_eq!(w.ton.balance(&w.fee.address).as_u64(), 0);
    let deliveries = w.fragment.deliveries();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].username, "alice");
    assert_eq!(deliveries[0].quantity, 50);
    // No commission anywhere: no wallet event, no debt.
    assert!(
        !event_types(&*store, &wallet_stream(&raw))
            .await
            .contains(&"CommissionAccrued"),
        "a KYC order accrues no commission"
    );
    let wallet = core
        .projections()
        .snapshot()
        .await
        .unwrap()
        .commission
        .wallet(&raw);
    assert_eq!(wallet.debt_nanoton, Nanoton::new(0));
    assert_eq!(wallet.accrued_total_nanoton, Nanoton::new(0));
}

#[actix_web::test]
async fn a_premium_gift_to_a_user_without_premium_is_bought_at_the_fragment_price() {
    let w = world().await;
    let p = payer();
    let funded = Nanoton::from_ton(5).as_u64();
    w.ton.fund(p.wallet.address(), Nanoton::new(funded));
    let raw = p.wallet.raw_address();
    let address = p.wallet.address().clone();
    let (core, store) = w.core(Policy::default(), None).await;

    let bob = Username::parse("@bob").unwrap();
    let order = core
        .create_order(Product::Premium { months: 3 }, &bob, None)
        .await
        .unwrap();
    let price = Prices::default().premium(3).unwrap();
    // 1 % of 3.996 TON is exactly 0.03996 TON.
    let commission = 39_960_000;
    assert_eq!(order.product, Product::Premium { months: 3 });
    assert_eq!(order.mode, OrderMode::NoKyc);
    assert_eq!(order.username, "bob");
    assert_eq!(order.price_nanoton.as_u64(), price);
    assert_eq!(order.commission_nanoton.as_u64(), commission);
    assert_eq!(order.total_nanoton.as_u64(), price + commission);

    let receipt = core.pay_order(order.order_id, p, None, None).await.unwrap();
    core.drain().await.unwrap();
    let done = core.order(order.order_id).await.unwrap();
    assert_eq!(done.status, "success", "{done:?}");
    assert_eq!(done.delivery_confirmed, Some(true));
    let result = core
        .request(receipt.request.request_id)
        .await
        .unwrap()
        .result
        .clone()
        .unwrap();
    assert_eq!(result.cost_nanoton.as_u64(), price);
    assert_eq!(result.commission_nanoton.as_u64(), commission);
    assert_eq!(
        result.collected_nanoton.as_u64(),
        0,
        "below the collection threshold"
    );
    assert_eq!(result.commission_balance_nanoton.as_u64(), commission);

    let deliveries = w.fragment.deliveries();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(
        deliveries[0].product,
        fragment_gateway::fragment::Product::Premium
    );
    assert_eq!(deliveries[0].username, "bob");
    assert_eq!(deliveries[0].quantity, 3);
    assert_eq!(w.ton.balance(&w.fragment.payment_address()).as_u64(), price);
    assert_eq!(
        w.ton.balance(&address).as_u64(),
        funded - price - first_transfer_fee(&w, 1)
    );
    assert_eq!(
        event_types(&*store, &wallet_stream(&raw)).await,
        ["CommissionAccrued"]
    );
    assert_eq!(
        core.projections()
            .snapshot()
            .await
            .unwrap()
            .commission
            .wallet(&raw)
            .debt_nanoton
            .as_u64(),
        commission
    );
}

fn short_ttl() -> Policy {
    Policy {
        order_ttl: chrono::Duration::seconds(2),
        ..Policy::default()
    }
}

#[actix_web::test]
async fn an_unpaid_order_expires_and_a_late_payment_is_refused() {
    let w = world().await;
    let p = payer();
    let funded = Nanoton::from_ton(5);
    w.ton.fund(p.wallet.address(), funded);
    let address = p.wallet.address().clone();
    let (core, store) = w.core(short_ttl(), None).await;
    let order = stars_for_alice(&core, 50).await;
    assert_eq!(
        order.expires_at - order.created_at,
        chrono::Duration::seconds(2)
    );

    let id = order.order_id;
    until("the order expires", || async {
        core.order(id).await.unwrap().status == "expired"
    })
    .await;
    let events = stream_events(&*store, &order_stream(id)).await;
    assert_eq!(events.len(), 2, "{events:?}");
    let Event::OrderExpired(expired) = &events[1] else {
        panic!("{events:?}")
    };
    assert!(
        expired.expired_at >= order.expires_at,
        "not before its time"
    );

    let err = core.pay_order(id, p, None, None).await.unwrap_err();
    assert!(
        matches!(err, CoreError::Domain(DomainError::OrderExpired)),
        "{err:?}"
    );
    assert_eq!(err.api_code(), ("ORDER_EXPIRED", 400));
    assert_eq!(core.order(id).await.unwrap().status, "expired");
    assert_eq!(
        event_types(&*store, &order_stream(id)).await,
        ["OrderCreated", "OrderExpired"]
    );
    assert_eq!(w.ton.balance(&address), funded);
    assert!(w.ton.broadcasts().is_empty());
}

#[actix_web::test]
async fn an_unpaid_order_still_expires_after_a_restart() {
    let w = world().await;
    let (core, store) = w.core_with(config(short_ttl()), None).await;
    let order = stars_for_alice(&core, 50).await;
    // The service stops before the order's time is up; its timers go with it.
    core.shutdown(Duration::from_millis(100)).await;
    store.kill();
    assert!(chrono::Utc::now() < order.expires_at);

    let (core, store) = w.core(short_ttl(), None).await;
    let id = order.order_id;
    until("the order expires after the restart", || async {
        core.order(id).await.unwrap().status == "expired"
    })
    .await;
    assert_eq!(
        event_types(&*store, &order_stream(id)).await,
        ["OrderCreated", "OrderExpired"]
    );
}

/// Fragment answers every call after `ms`, so that a payment holds the owner session for
/// seconds.
fn slow_fragment(w: &World, ms: u64) {
    w.fragment.faults().set_config(FaultConfig {
        latency: Duration::from_millis(ms),
        ..FaultConfig::default()
    });
}

/// Two orders (50 and 100 Stars), paid from two wallets funded with `FUNDED` each while
/// Fragment answers `fragment_latency_ms` late: on the only owner session, the first payment
/// runs for seconds and the second request (the other wallet) waits behind it.
struct Queued {
    core: Core,
    store: std::sync::Arc<dyn fragment_gateway::store::EventStore>,
    first: Uuid,
    second: Uuid,
    /// The second order's request, waiting.
    waiting: Uuid,
}

const FUNDED: u64 = 5_000_000_000;

async fn second_waits_behind_first(w: &World, policy: Policy, fragment_latency_ms: u64) -> Queued {
    let (first_payer, second_payer) = (payer(), payer_n(1));
    for p in [&first_payer, &second_payer] {
        w.ton.fund(p.wallet.address(), Nanoton::new(FUNDED));
    }
    let (core, store) = w.core(policy, None).await;
    let first = stars_for_alice(&core, 50).await;
    let second = stars_for_alice(&core, 100).await;
    slow_fragment(w, fragment_latency_ms);
    core.pay_order(first.order_id, first_payer, None, None)
        .await
        .unwrap();
    let waiting = core
        .pay_order(second.order_id, second_payer, None, None)
        .await
        .unwrap();
    Queued {
        core,
        store,
        first: first.order_id,
        second: second.order_id,
        waiting: waiting.request.request_id,
    }
}

#[actix_web::test]
async fn a_request_that_waits_past_the_queue_timeout_ends_and_moves_no_funds() {
    let w = world().await;
    let second_payer = payer_n(1);
    let second_address = second_payer.wallet.address().clone();
    let funded = Nanoton::new(FUNDED);
    let policy = Policy {
        queue_timeout: chrono::Duration::seconds(1),
        ..Policy::default()
    };
    let Queued {
        core,
        store,
        first,
        second,
        waiting: request_id,
    } = second_waits_behind_first(&w, policy, 400).await;
    until("the waiting request times out", || async {
        core.request(request_id)
            .await
            .is_ok_and(|r| r.status.as_str() == "timeout")
    })
    .await;
    let request = core.request(request_id).await.unwrap();
    assert_eq!(request.error_code.as_deref(), Some("QUEUE_TIMEOUT"));
    assert_eq!(request.started_at, None);
    assert!(request.error.clone().unwrap().contains("no funds moved"));
    let reopened = core.order(second).await.unwrap();
    assert_eq!(reopened.status, "created");
    assert_eq!(reopened.error_code.as_deref(), Some("QUEUE_TIMEOUT"));
    assert_eq!(
        event_types(&*store, &order_stream(second)).await,
        ["OrderCreated", "OrderPaid", "OrderQueued", "OrderTimedOut"]
    );
    assert_eq!(w.ton.balance(&second_address), funded, "no funds moved");
    assert_eq!(w.ton.seqno(&second_address), None, "nothing was ever sent");

    w.fragment.faults().set_config(FaultConfig::default());
    core.drain().await.unwrap();
    assert_eq!(core.order(first).await.unwrap().status, "success");
    assert_eq!(w.fragment.deliveries().len(), 1);
    assert_eq!(w.ton.balance(&second_address), funded, "no funds moved");
    assert_eq!(
        core.projections()
            .snapshot()
            .await
            .unwrap()
            .queue
            .stats()
            .timed_out,
        1
    );

    // The order can be paid again, and this time it goes through.
    let again = core
        .pay_order(second, second_payer, None, None)
        .await
        .unwrap();
    assert!(again.new_request);
    assert_ne!(again.request.request_id, request_id);
    core.drain().await.unwrap();
    assert_eq!(core.order(second).await.unwrap().status, "success");
    assert_eq!(w.fragment.deliveries().len(), 2);
    assert_eq!(
        w.ton.balance(&w.fragment.payment_address()).as_u64(),
        Prices::default().stars(50) + Prices::default().stars(100)
    );
}

#[actix_web::test]
async fn an_order_whose_time_ran_out_in_the_queue_expires_when_the_queue_gives_it_back() {
    let w = world().await;
    // The order's 1 s are up while it waits; the queue gives up on it a second later.
    let policy = Policy {
        order_ttl: chrono::Duration::seconds(1),
        queue_timeout: chrono::Duration::seconds(2),
        ..Policy::default()
    };
    let Queued {
        core,
        store,
        second: id,
        ..
    } = second_waits_behind_first(&w, policy, 700).await;
    until("the unpaid order expires", || async {
        core.order(id).await.unwrap().status == "expired"
    })
    .await;
    assert_eq!(
        event_types(&*store, &order_stream(id)).await,
        [
            "OrderCreated",
            "OrderPaid",
            "OrderQueued",
            "OrderTimedOut",
            "OrderExpired"
        ]
    );
    w.fragment.faults().set_config(FaultConfig::default());
    core.drain().await.unwrap();
}

#[actix_web::test]
async fn an_under_funded_wallet_is_refused_before_anything_is_queued() {
    let w = world().await;
    let p = payer();
    let address = p.wallet.address().clone();
    let policy = Policy::default();
    let price = Prices::default().stars(50);
    // Below the collection threshold no commission is due now: price + fee reserve.
    let needed = price + policy.network_fee_reserve_nanoton.as_u64();
    w.ton.fund(&address, Nanoton::new(needed - 1));
    let (core, store) = w.core(policy, None).await;
    let order = stars_for_alice(&core, 50).await;

    let err = core
        .pay_order(order.order_id, p, None, None)
        .await
        .unwrap_err();
    assert_eq!(err.api_code(), ("INSUFFICIENT_BALANCE", 400));
    assert!(
        matches!(
            err,
            CoreError::Domain(DomainError::InsufficientBalance {
                balance_nanoton,
                needed_nanoton,
            }) if balance_nanoton.as_u64() == needed - 1 && needed_nanoton.as_u64() == needed
        ),
        "{err:?}"
    );
    let unpaid = core.order(order.order_id).await.unwrap();
    assert_eq!(unpaid.status, "created");
    assert_eq!(unpaid.request_id, None);
    assert!(core
        .projections()
        .snapshot()
        .await
        .unwrap()
        .orders
        .requests
        .is_empty());
    assert_eq!(
        event_types(&*store, &order_stream(order.order_id)).await,
        ["OrderCreated"]
    );
    assert_eq!(w.ton.balance(&address).as_u64(), needed - 1);
    assert!(w.ton.broadcasts().is_empty());

    // One nanoton more and the same order goes through.
    w.ton.fund(&address, Nanoton::new(1));
    core.pay_order(order.order_id, payer(), None, None)
        .await
        .unwrap();
    core.drain().await.unwrap();
    assert_eq!(core.order(order.order_id).await.unwrap().status, "success");
    assert_eq!(w.ton.balance(&w.fragment.payment_address()).as_u64(), price);
    assert_eq!(
        w.ton.balance(&address).as_u64(),
        needed - price - first_transfer_fee(&w, 1)
    );
}

#[actix_web::test]
async fn a_wallet_over_its_debt_limit_cannot_pay_new_orders() {
    let w = world().await;
    let p = payer();
    let raw = p.wallet.raw_address();
    let address = p.wallet.address().clone();
    w.ton.fund(&address, Nanoton::from_ton(5));
    // A 50 % rate and a 0.1 TON limit: one 50-Star order (0.25 TON) leaves 0.125 TON of debt,
    // below the 10 TON collection threshold, so nothing collects it.
    let policy = Policy {
        rate_no_kyc: "0.5".parse().unwrap(),
        debt_limit_nanoton: Nanoton::new(100_000_000),
        collection_threshold_nanoton: Nanoton::new(10_000_000_000),
        ..Policy::default()
    };
    let (core, store) = w.core(policy, None).await;
    let first = stars_for_alice(&core, 50).await;
    assert_eq!(first.commission_nanoton, Nanoton::new(125_000_000));
    core.pay_order(first.order_id, p, None, None).await.unwrap();
    core.drain().await.unwrap();
    assert_eq!(core.order(first.order_id).await.unwrap().status, "success");
    assert_eq!(
        core.projections()
            .snapshot()
            .await
            .unwrap()
            .commission
            .wallet(&raw)
            .debt_nanoton,
        Nanoton::new(125_000_000)
    );
    let balance = w.ton.balance(&address);
    let sent = w.ton.broadcasts().len();

    let second = stars_for_alice(&core, 50).await;
    let err = core
        .pay_order(second.order_id, payer(), None, None)
        .await
        .unwrap_err();
    assert_eq!(err.api_code(), ("DEBT_LIMIT_EXCEEDED", 400));
    assert!(
        matches!(
            err,
            CoreError::Domain(DomainError::DebtLimitExceeded {
                debt_nanoton,
                limit_nanoton,
            }) if debt_nanoton == Nanoton::new(125_000_000)
                && limit_nanoton == Nanoton::new(100_000_000)
        ),
        "{err:?}"
    );
    let unpaid = core.order(second.order_id).await.unwrap();
    assert_eq!(unpaid.status, "created");
    assert_eq!(unpaid.request_id, None);
    assert_eq!(
        event_types(&*store, &order_stream(second.order_id)).await,
        ["OrderCreated"]
    );
    assert_eq!(w.ton.balance(&address), balance, "no funds moved");
    assert_eq!(w.ton.broadcasts().len(), sent, "nothing was signed");
    assert_eq!(w.fragment.deliveries().len(), 1);
}

/// The order's `PaymentSubmitted`, which must be the only one.
fn the_submission(events: &[Event]) -> &events::PaymentSubmitted {
    let submitted: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::PaymentSubmitted(s) => Some(s),
            _ => None,
        })
        .collect();
    assert_eq!(
        submitted.len(),
        1,
        "one signed message per request: {events:?}"
    );
    submitted[0]
}

#[actix_web::test]
async fn a_recorded_payment_that_never_landed_fails_after_a_restart_without_being_signed_again() {
    let w = world().await;
    let p = payer();
    let funded = Nanoton::from_ton(5);
    w.ton.fund(p.wallet.address(), funded);
    let raw = p.wallet.raw_address();
    let address = p.wallet.address().clone();
    // A short validity, so that "never landed" is known soon.
    let cfg = CoreConfig {
        sign_ttl_secs: 3,
        ..config(Policy::default())
    };
    // The network accepts the message and loses it; it loses the re-sent copy too.
    w.ton.drop_next(2);
    let (core, store) = w.core_with(cfg.clone(), None).await;
    let order = stars_for_alice(&core, 50).await;
    core.pay_order(order.order_id, p, None, None).await.unwrap();
    eventually("the payment is broadcast (and lost)", || {
        w.ton.stats().dropped.load(Ordering::SeqCst) == 1
    })
    .await;
    // The process dies while it waits for the chain.
    store.kill();

    let (core, store) = w.core_with(cfg, None).await;
    let id = order.order_id;
    let failed = order_outcome(&core, id).await;
    assert_eq!(failed.status, "failed", "{failed:?}");
    assert_eq!(failed.error_code.as_deref(), Some("SERVICE_UNAVAILABLE"));
    assert!(failed.error.clone().unwrap().contains("no funds moved"));
    let request = core.request(failed.request_id.unwrap()).await.unwrap();
    assert_eq!(request.status.as_str(), "failed");

    let events = stream_events(&*store, &order_stream(id)).await;
    let submitted = the_submission(&events);
    let Some(Event::OrderFailed(end)) = events.last() else {
        panic!("{events:?}")
    };
    assert!(!end.funds_moved);
    assert!(
        end.failed_at.timestamp() > i64::from(submitted.valid_until),
        "failed only after the message could no longer apply"
    );
    // Nothing was signed again: the chain saw the recorded message twice (the broadcast and
    // the re-broadcast after the restart) and nothing else.
    let hash = fragment_gateway::ton::client::parse_hash(&submitted.message_hash).unwrap();
    assert_eq!(w.ton.broadcasts(), vec![hash.clone(), hash]);
    assert_eq!(w.ton.balance(&address), funded, "no funds moved");
    assert_eq!(w.ton.seqno(&address), None);
    assert_eq!(w.ton.balance(&w.fragment.payment_address()).as_u64(), 0);
    assert!(w.fragment.deliveries().is_empty());
    assert!(event_types(&*store, &wallet_stream(&raw)).await.is_empty());
}

#[actix_web::test]
async fn a_restart_while_the_chain_is_down_completes_the_recorded_payment_once_it_is_back() {
    let w = world().await;
    let p = payer();
    let funded = Nanoton::from_ton(5).as_u64();
    w.ton.fund(p.wallet.address(), Nanoton::new(funded));
    let raw = p.wallet.raw_address();
    let address = p.wallet.address().clone();
    let price = Prices::default().stars(50);
    // The process dies right after recording the signed payment, before broadcasting it.
    let (core, dead) = w
        .core_with(config(Policy::default()), Some(("PaymentSubmitted", 1)))
        .await;
    let order = stars_for_alice(&core, 50).await;
    core.pay_order(order.order_id, p, None, None).await.unwrap();
    eventually("the process dies", || dead.is_dead()).await;
    assert!(w.ton.broadcasts().is_empty());

    // The TON API is down while the service restarts.
    w.ton.faults().set_config(FaultConfig {
        error_rate: 1.0,
        ..FaultConfig::default()
    });
    let (core, store) = w.core(Policy::default(), None).await;
    let id = order.order_id;
    // The restarted core re-sends the recorded message, and the outage outlasts a whole
    // round of the client's attempts (4 in the local configuration): a fifth request means
    // the core came back for more after every earlier one failed.
    eventually(
        "the restarted core keeps re-sending through the outage",
        || w.ton.requests_to("/api/v2/sendBocReturnHash") > 4,
    )
    .await;
    assert!(w.ton.broadcasts().is_empty(), "nothing got through");
    // Nothing is decided without the chain.
    assert_eq!(core.order(id).await.unwrap().status, "processing");

    w.ton.faults().set_config(FaultConfig::default());
    let done = order_outcome(&core, id).await;
    assert_eq!(done.status, "success", "{done:?}");
    eventually("Fragment delivers", || !w.fragment.deliveries().is_empty()).await;
    core.drain().await.unwrap();

    // Exactly once: one message, one transfer, one delivery, one accrual.
    let events = stream_events(&*store, &order_stream(id)).await;
    let submitted = the_submission(&events);
    let hash = fragment_gateway::ton::client::parse_hash(&submitted.message_hash).unwrap();
    let sent = w.ton.broadcasts();
    assert!(
        !sent.is_empty() && sent.iter().all(|h| *h == hash),
        "never signed again"
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, Event::OrderFulfilled(_)))
            .count(),
        1
    );
    assert_eq!(w.ton.seqno(&address), Some(1));
    assert_eq!(w.ton.balance(&w.fragment.payment_address()).as_u64(), price);
    assert_eq!(
        w.ton.balance(&address).as_u64(),
        funded - price - first_transfer_fee(&w, 1)
    );
    assert_eq!(w.fragment.deliveries().len(), 1);
    assert_eq!(
        event_types(&*store, &wallet_stream(&raw)).await,
        ["CommissionAccrued"]
    );
}

#[actix_web::test]
async fn a_new_order_is_priced_while_the_only_owner_session_waits_for_the_chain() {
    // The chain makes blocks only when the test says so: the first payment stays on chain
    // (signed and broadcast, not yet applied) for as long as the test needs.
    let w = world_with_blocks(Duration::ZERO).await;
    let p = payer();
    w.ton.fund(p.wallet.address(), Nanoton::from_ton(5));
    let (core, _) = w.core(Policy::default(), None).await;
    let first = stars_for_alice(&core, 50).await;
    let receipt = core.pay_order(first.order_id, p, None, None).await.unwrap();
    let request_id = receipt.request.request_id;
    until("the first payment is broadcast", || async {
        w.ton.pending() == 1 && core.request(request_id).await.unwrap().submitted
    })
    .await;

    // The one owner session is not held while the chain decides: a new order is priced now,
    // not after the first purchase completes.
    let second = tokio::time::timeout(
        Duration::from_secs(10),
        core.create_order(Product::Stars { amount: 100 }, &alice(), None),
    )
    .await
    .expect("creating an order waited for the running payment")
    .unwrap();
    assert_eq!(second.price_nanoton.as_u64(), Prices::default().stars(100));
    assert_eq!(
        core.order(first.order_id).await.unwrap().status,
        "processing"
    );

    // Then the chain moves, and both purchases complete on that session, in turn.
    let blocks = || {
        w.ton.produce_block();
        true
    };
    until("the first purchase is delivered", || async {
        blocks() && core.order(first.order_id).await.unwrap().delivery_confirmed == Some(true)
    })
    .await;
    core.pay_order(second.order_id, payer(), None, None)
        .await
        .unwrap();
    until("the second purchase is delivered", || async {
        blocks()
            && core
                .order(second.order_id)
                .await
                .unwrap()
                .delivery_confirmed
                == Some(true)
    })
    .await;
    assert_eq!(w.fragment.deliveries().len(), 2);
    assert_eq!(
        w.ton.balance(&w.fragment.payment_address()).as_u64(),
        Prices::default().stars(50) + Prices::default().stars(100)
    );
}

#[actix_web::test]
async fn a_new_order_does_not_wait_past_owner_wait_for_a_busy_owner_session() {
    let w = world().await;
    let p = payer();
    w.ton.fund(p.wallet.address(), Nanoton::from_ton(5));
    let cfg = CoreConfig {
        owner_wait: Duration::from_millis(300),
        ..config(Policy::default())
    };
    let (core, _) = w.core_with(cfg, None).await;
    let first = stars_for_alice(&core, 50).await;
    // Fragment answers slowly: the payment holds the only owner session for seconds.
    slow_fragment(&w, 1000);
    let receipt = core.pay_order(first.order_id, p, None, None).await.unwrap();
    let request_id = receipt.request.request_id;
    until("the payment runs", || async {
        core.request(request_id).await.unwrap().status.as_str() == "processing"
    })
    .await;
    // Processing starts a moment before the payment takes the session's turn: a new order
    // arriving in between would take it first. Fragment busy with a call means it is taken.
    eventually("the payment talks to Fragment", || {
        w.fragment.in_flight() > 0
    })
    .await;
    let refused = core
        .create_order(Product::Stars { amount: 100 }, &alice(), None)
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, CoreError::Unavailable(m) if m.contains("busy")),
        "{refused:?}"
    );
    assert_eq!(refused.api_code(), ("SERVICE_UNAVAILABLE", 503));
    // Once the payment is done, orders are priced again.
    w.fragment.faults().set_config(FaultConfig::default());
    core.drain().await.unwrap();
    assert_eq!(core.order(first.order_id).await.unwrap().status, "success");
    stars_for_alice(&core, 100).await;
}

#[actix_web::test]
async fn a_shutdown_ends_waiting_requests_and_leaves_a_broadcast_payment_to_the_next_start() {
    // Blocks only on demand: the first payment stays on its way to the chain.
    let w = world_with_blocks(Duration::ZERO).await;
    w.ton.fund(payer().wallet.address(), Nanoton::from_ton(5));
    let (core, store) = w.core_with(config(Policy::default()), None).await;
    let mut orders = vec![];
    for _ in 0..2 {
        let o = stars_for_alice(&core, 50).await;
        orders.push(o.order_id);
    }
    let first = core
        .pay_order(orders[0], payer(), None, None)
        .await
        .unwrap();
    eventually("the first payment is broadcast", || w.ton.pending() == 1).await;
    // The same wallet: the second waits for the first.
    let second = core
        .pay_order(orders[1], payer(), None, None)
        .await
        .unwrap();
    assert_eq!(second.position, Some(1));

    core.shutdown(Duration::from_millis(500)).await;
    // What the stopped service left in its read models, as the next start finds them.
    let stopped = w.open_store().await;
    let tables = stopped.read_models().unwrap();
    let waiting = tables
        .request(second.request.request_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(waiting.status.as_str(), "failed");
    assert_eq!(waiting.error_code.as_deref(), Some("SERVICE_UNAVAILABLE"));
    assert!(waiting.error.as_deref().unwrap().contains("no funds moved"));
    assert_eq!(
        tables.order(orders[1]).await.unwrap().unwrap().status,
        "created"
    );
    // The broadcast one is left as it is, recorded, for the next start.
    let running = tables
        .request(first.request.request_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(running.status.as_str(), "processing");
    assert!(running.submitted);
    stopped.close().await.unwrap();
    store.kill();

    let (core, _) = w.core_with(config(Policy::default()), None).await;
    let blocks = || {
        w.ton.produce_block();
        true
    };
    until(
        "the broadcast payment completes after the restart",
        || async { blocks() && core.order(orders[0]).await.unwrap().status == "success" },
    )
    .await;
    assert_eq!(
        w.ton.balance(&w.fragment.payment_address()).as_u64(),
        Prices::default().stars(50)
    );
}

/// Panics the first time a payment reaches `step`.
struct PanicAt {
    step: Step,
    fired: std::sync::atomic::AtomicBool,
}

impl PaymentHooks for PanicAt {
    fn at(&self, step: Step, _: Uuid) {
        if step == self.step && !self.fired.swap(true, Ordering::SeqCst) {
            panic!("injected panic at {step:?}");
        }
    }
}

/// A payment task that panics at `step`, then a second order paid from the same wallet.
/// Returns the core, the first request's final view and the second order's status.
async fn panic_at(step: Step) -> (World, projections::RequestView, String) {
    let w = world().await;
    w.ton.fund(payer().wallet.address(), Nanoton::from_ton(5));
    let config = CoreConfig {
        hooks: Hooks::new(PanicAt {
            step,
            fired: false.into(),
        }),
        ..config(Policy::default())
    };
    let (core, _) = w.core_with(config, None).await;
    let first = stars_for_alice(&core, 50).await;
    let second = stars_for_alice(&core, 100).await;
    let receipt = core
        .pay_order(first.order_id, payer(), None, None)
        .await
        .unwrap();
    core.pay_order(second.order_id, payer(), None, None)
        .await
        .unwrap();
    // Before, the panicked task never gave its wallet back: the second payment waited for
    // ever and so did this.
    tokio::time::timeout(Duration::from_secs(30), core.drain())
        .await
        .expect("the queue drains after a panic")
        .unwrap();
    let request =
        projections::RequestView::clone(&core.request(receipt.request.request_id).await.unwrap());
    let second = core.order(second.order_id).await.unwrap().status.clone();
    (w, request, second)
}

#[actix_web::test]
async fn a_panic_before_signing_ends_the_request_with_no_funds_moved_and_frees_the_wallet() {
    let (w, request, second) = panic_at(Step::Started).await;
    assert_eq!(request.status.as_str(), "failed");
    assert_eq!(request.error_code.as_deref(), Some("INTERNAL_ERROR"));
    assert!(
        request.error.as_deref().unwrap().contains("no funds moved"),
        "{request:?}"
    );
    // Nothing was sent for it, the order is payable again, and the wallet paid the next.
    assert_eq!(second, "success");
    assert_eq!(w.ton.broadcasts().len(), 1);
    assert_eq!(w.fragment.deliveries().len(), 1);
}

#[actix_web::test]
async fn a_panic_after_recording_leaves_the_payment_to_the_chain_never_to_no_funds_moved() {
    let (w, request, second) = panic_at(Step::Recorded).await;
    // The recorded message was finished from the chain: sent once, and it paid.
    assert_eq!(request.status.as_str(), "completed", "{request:?}");
    assert_eq!(second, "success");
    assert_eq!(w.fragment.deliveries().len(), 2);
    let sent = w.ton.broadcasts();
    let distinct: std::collections::HashSet<_> = sent.iter().collect();
    assert_eq!(distinct.len(), 2, "two messages, none signed twice");
}

#[actix_web::test]
async fn a_payment_whose_caller_went_away_mid_hand_off_still_ends() {
    let w = world().await;
    w.ton.fund(payer().wallet.address(), Nanoton::from_ton(5));
    let policy = Policy {
        queue_timeout: chrono::Duration::seconds(3),
        ..Policy::default()
    };
    let (core, store) = w.core_with(config(policy.clone()), None).await;
    let order = stars_for_alice(&core, 50).await;
    // The client hangs up while its payment is being recorded: the HTTP handler's future
    // is dropped there.
    store.slow_appends("OrderPaid", Duration::from_millis(500));
    let dropped = tokio::time::timeout(
        Duration::from_millis(200),
        core.pay_order(order.order_id, payer(), None, None),
    )
    .await;
    assert!(dropped.is_err(), "the call was cut short");
    store.slow_appends("OrderPaid", Duration::ZERO);
    // Whoever holds it, a recorded payment ends within the queue timeout: here it is paid.
    let deadline = std::time::Instant::now() + Duration::from_secs(3 + 10);
    loop {
        let status = core.order(order.order_id).await.unwrap().status.clone();
        if status == "success" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the order is still {status}: the payment was recorded and never run"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A payment recorded by someone who never queued it (here: the registry directly, as
    // the old hand-off did) is timed out at its deadline, no funds moved.
    let lost = stars_for_alice(&core, 100).await;
    let p = payer();
    let pay = OrderCommand::Pay {
        request_id: Uuid::now_v7(),
        payer: Payer {
            wallet_address: p.wallet.raw_address(),
            wallet_friendly: p.wallet.friendly_address(false),
            wallet_version: "v4r2".into(),
            account_index: None,
        },
        funds: WalletFunds {
            balance_nanoton: Nanoton::from_ton(5),
            debt_nanoton: Nanoton::ZERO,
            usdt: None,
        },
        has_cookies: false,
        now: chrono::Utc::now(),
    };
    let (_, position) = core
        .registry()
        .order(lost.order_id, pay, events::EventMetadata::default())
        .await
        .unwrap();
    core.projections().wait_for(position.unwrap()).await;
    assert_eq!(core.order(lost.order_id).await.unwrap().status, "queued");
    until("the unheld request times out", || async {
        core.order(lost.order_id).await.unwrap().status == "created"
    })
    .await;
    let request = core
        .request(core.order(lost.order_id).await.unwrap().request_id.unwrap())
        .await
        .unwrap();
    assert_eq!(request.status.as_str(), "timeout");
    assert_eq!(w.fragment.deliveries().len(), 1);
}

#[actix_web::test]
async fn two_wallets_paying_with_one_clients_cookies_take_turns_on_its_fragment_session() {
    let w = world().await;
    let (a, b) = (payer(), payer_n(1));
    for p in [&a, &b] {
        w.ton.fund(p.wallet.address(), Nanoton::from_ton(5));
    }
    // One Fragment login for both wallets (a shop paying from two wallets, say).
    let cookies = w
        .fragment
        .login("client", Some(a.wallet.address()))
        .unwrap();
    let (core, _) = w.core(Policy::default(), None).await;
    let bob = Username::parse("@bob").unwrap();
    let for_alice = core
        .create_order(
            Product::Stars { amount: 100 },
            &alice(),
            Some(cookies.clone()),
        )
        .await
        .unwrap();
    let for_bob = core
        .create_order(Product::Stars { amount: 100 }, &bob, Some(cookies.clone()))
        .await
        .unwrap();
    // A site that answers a link call with the session's latest request: two flows
    // overlapping on the session would pay each other's invoice (same size, same comment).
    w.fragment
        .set_link_answer(fragment_gateway::sim::fragment::state::LinkAnswer::LatestRequest);
    slow_fragment(&w, 40);
    let (ra, rb) = tokio::join!(
        core.pay_order(for_alice.order_id, a, None, Some(cookies.clone())),
        core.pay_order(for_bob.order_id, b, None, Some(cookies)),
    );
    ra.unwrap();
    rb.unwrap();
    core.drain().await.unwrap();
    assert_eq!(
        w.fragment.overlapping_flows(),
        0,
        "two flows overlapped on one session"
    );
    assert_eq!(w.fragment.max_in_flight_any(), 1);
    for id in [for_alice.order_id, for_bob.order_id] {
        assert_eq!(core.order(id).await.unwrap().status, "success");
    }
    let mut delivered: Vec<String> = w
        .fragment
        .deliveries()
        .into_iter()
        .map(|d| d.username)
        .collect();
    delivered.sort();
    assert_eq!(
        delivered,
        ["alice", "bob"],
        "each order paid its own invoice"
    );
    assert_eq!(
        w.ton.balance(&w.fragment.payment_address()).as_u64(),
        2 * Prices::default().stars(100)
    );
}

#[actix_web::test]
async fn a_payment_pushed_far_back_by_incoming_transfers_behind_a_lagging_indexer_is_found() {
    // Blocks only when the test makes them, so that the payment, then a burst of incoming
    // transfers, land before the gateway looks.
    let w = world_with_blocks(Duration::ZERO).await;
    let p = payer();
    let address = p.wallet.address().clone();
    w.ton.fund(&address, Nanoton::from_ton(5));
    let (core, _) = w.core(Policy::default(), None).await;
    let order = stars_for_alice(&core, 50).await;
    // The indexer (v3) sees nothing new from here on.
    w.ton.pause_indexer(true);
    core.pay_order(order.order_id, p, None, None).await.unwrap();
    eventually("the payment is broadcast", || w.ton.broadcasts().len() == 1).await;
    // While the API is down for the gateway, the payment lands and 120 customers pay the
    // wallet: the payment is no longer among the wallet's last 50 (or 100) transactions.
    w.ton.faults().set_config(FaultConfig {
        error_rate: 1.0,
        ..FaultConfig::default()
    });
    assert_eq!(w.ton.produce_block(), 1);
    w.ton.burst(&address, 120, Nanoton::new(1_000_000));
    w.ton.faults().set_config(FaultConfig::default());
    let done = order_outcome(&core, order.order_id).await;
    assert_eq!(done.status, "success", "{done:?}");
    // Fragment's own watcher reads the indexer too.
    w.ton.pause_indexer(false);
    core.drain().await.unwrap();
    assert_eq!(w.fragment.deliveries().len(), 1);
    assert_eq!(w.ton.broadcasts().len(), 1, "never signed again");
}

#[actix_web::test]
async fn a_passing_ton_api_failure_before_signing_reopens_the_order() {
    let w = world().await;
    w.ton.fund(payer().wallet.address(), Nanoton::from_ton(5));
    let (core, _) = w.core(Policy::default(), None).await;
    let order = stars_for_alice(&core, 50).await;
    // Fragment is slow, so the payment is still talking to it when the TON API goes down
    // for exactly the attempts of the wallet read that comes next (before signing).
    slow_fragment(&w, 150);
    let receipt = core
        .pay_order(order.order_id, payer(), None, None)
        .await
        .unwrap();
    let attempts = TonApiConfig::local(w.ton.url()).max_attempts;
    w.ton
        .fail_next_on("/api/v2/getAddressInformation", attempts);
    core.drain().await.unwrap();
    let request = core.request(receipt.request.request_id).await.unwrap();
    assert_eq!(request.status.as_str(), "failed");
    assert_eq!(request.error_code.as_deref(), Some("SERVICE_UNAVAILABLE"));
    let message = request.error.clone().unwrap();
    assert!(message.contains("no funds moved"), "{message}");
    assert!(message.contains("paid again"), "{message}");
    assert_eq!(w.ton.broadcasts().len(), 0);
    // The order is open again, and paying it again works.
    assert_eq!(core.order(order.order_id).await.unwrap().status, "created");
    slow_fragment(&w, 0);
    let again = core
        .pay_order(order.order_id, payer(), None, None)
        .await
        .unwrap();
    assert!(again.new_request);
    core.drain().await.unwrap();
    assert_eq!(core.order(order.order_id).await.unwrap().status, "success");
}

/// Spawns `n` balance reads on `chain` when a payment is signed, as clients polling their
/// balances would, and counts the reads the budget turned away.
struct FloodWhenSigned {
    chain: fragment_gateway::ton::client::TonCenterClient,
    address: fragment_gateway::ton::TonAddress,
    n: usize,
    busy: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl PaymentHooks for FloodWhenSigned {
    fn at(&self, step: Step, _: Uuid) {
        if step != Step::Signed {
            return;
        }
        for _ in 0..self.n {
            let (chain, address, busy) = (
                self.chain.clone(),
                self.address.clone(),
                std::sync::Arc::clone(&self.busy),
            );
            tokio::spawn(async move {
                if let Err(fragment_gateway::ton::client::TonApiError::Busy { .. }) =
                    chain.account_state(&address).await
                {
                    busy.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    }
}

#[actix_web::test]
async fn clients_polling_balances_cannot_push_a_payment_past_its_validity() {
    let w = world().await;
    let p = payer();
    let address = p.wallet.address().clone();
    w.ton.fund(&address, Nanoton::from_ton(5));
    // A paced API (4 requests/s), and a message valid for 5 s.
    let mut services = w.services();
    services.chain = fragment_gateway::ton::client::TonCenterClient::new(TonApiConfig {
        requests_per_second: Some(4.0),
        public_max_wait: Duration::from_secs(1),
        ..TonApiConfig::local(w.ton.url())
    })
    .unwrap();
    let busy = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let config = CoreConfig {
        sign_ttl_secs: 5,
        // 40 reads ahead of the broadcast would take 10 s of budget.
        hooks: Hooks::new(FloodWhenSigned {
            chain: services.chain.public(),
            address: address.clone(),
            n: 40,
            busy: std::sync::Arc::clone(&busy),
        }),
        ..config(Policy::default())
    };
    let (core, _) = w.core_with_services(config, services, None).await;
    let order = stars_for_alice(&core, 50).await;
    core.pay_order(order.order_id, p, None, None).await.unwrap();
    core.drain().await.unwrap();
    let done = core.order(order.order_id).await.unwrap();
    assert_eq!(done.status, "success", "{done:?}");
    // Reads over the bound are turned away (SERVICE_UNAVAILABLE with Retry-After at the
    // API), not queued for minutes.
    eventually("reads over the bound are turned away", || {
        busy.load(Ordering::SeqCst) > 0
    })
    .await;
}

#[actix_web::test]
async fn after_a_restart_a_kyc_payment_is_listed_unconfirmed_only_because_fragment_cannot_be_asked()
{
    let w = world().await;
    let p = payer();
    w.ton.fund(p.wallet.address(), Nanoton::from_ton(5));
    let cookies = w
        .fragment
        .login("client", Some(p.wallet.address()))
        .unwrap();
    let (core, _) = w
        .core(Policy::default(), Some(("PaymentSubmitted", 1)))
        .await;
    let order = core
        .create_order(
            Product::Stars { amount: 50 },
            &alice(),
            Some(cookies.clone()),
        )
        .await
        .unwrap();
    let _ = tokio::time::timeout(
        Duration::from_secs(5),
        core.pay_order(order.order_id, p, None, Some(cookies)),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(core);
    let (core, store) = w.core(Policy::default(), None).await;
    core.drain().await.unwrap();
    let done = core.order(order.order_id).await.unwrap();
    assert_eq!(done.status, "success");
    // The client's cookies went with the old process: Fragment cannot be asked on the
    // session that bought it, and the operator's list says why.
    assert_eq!(done.delivery_confirmed, Some(false));
    let events = stream_events(&*store, &order_stream(order.order_id)).await;
    let reason = events
        .iter()
        .find_map(|e| match e {
            Event::OrderDeliveryUnconfirmed(u) => Some(u.reason.clone()),
            _ => None,
        })
        .unwrap();
    assert!(reason.contains("client's own Fragment session"), "{reason}");
}

#[actix_web::test]
async fn an_unreadable_recorded_payment_stops_the_start_naming_its_stream_and_position() {
    let w = world().await;
    let p = payer();
    w.ton.fund(p.wallet.address(), Nanoton::from_ton(5));
    // A payment recorded, then the process died: its PaymentSubmitted is of a schema this
    // build does not know (a newer version wrote it, or it is damaged).
    let (core, store) = w
        .core(Policy::default(), Some(("PaymentSubmitted", 1)))
        .await;
    let order = stars_for_alice(&core, 50).await;
    let _ = tokio::time::timeout(
        Duration::from_secs(5),
        core.pay_order(order.order_id, p, None, None),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop((core, store));
    let stream = order_stream(order.order_id);
    assert_eq!(
        w.set_schema_version(&stream, "PaymentSubmitted", 99).await,
        1
    );
    let store = w.open_store().await;
    let position = fragment_gateway::store::read_stream_all(store.as_ref(), &stream)
        .await
        .unwrap()
        .iter()
        .find(|e| e.event_type == "PaymentSubmitted")
        .unwrap()
        .position;
    let started = Core::start(
        config(Policy::default()),
        w.services(),
        store,
        fragment_gateway::actors::Liveness::default(),
    )
    .await;
    let Err(e) = started else {
        panic!("started on a log it cannot read");
    };
    let message = e.to_string();
    assert!(message.contains(&stream), "{message}");
    assert!(message.contains(&format!("event {position} ")), "{message}");
    // Nothing was decided meanwhile: the process died before its broadcast, and the
    // refused start neither sent the recorded message nor gave the payment up.
    assert_eq!(w.ton.broadcasts().len(), 0);
}

#[actix_web::test]
async fn a_payment_past_the_queue_limit_is_refused_before_anything_is_recorded() {
    // Blocks only on demand: the first payment stays on its way to the chain.
    let w = world_with_blocks(Duration::ZERO).await;
    w.ton.fund(payer().wallet.address(), Nanoton::from_ton(5));
    let cfg = CoreConfig {
        queue_limit: 1,
        ..config(Policy::default())
    };
    let (core, store) = w.core_with(cfg, None).await;
    let mut orders = vec![];
    for _ in 0..3 {
        orders.push(stars_for_alice(&core, 50).await.order_id);
    }
    core.pay_order(orders[0], payer(), None, None)
        .await
        .unwrap();
    eventually("the first payment is broadcast", || w.ton.pending() == 1).await;
    // The same wallet: the second waits, and fills the queue.
    let second = core
        .pay_order(orders[1], payer(), None, None)
        .await
        .unwrap();
    assert_eq!(second.position, Some(1));
    let refused = core
        .pay_order(orders[2], payer(), None, None)
        .await
        .unwrap_err();
    assert!(
        matches!(refused, CoreError::QueueFull { waiting: 1 }),
        "{refused:?}"
    );
    assert_eq!(refused.api_code(), ("SERVICE_UNAVAILABLE", 503));
    assert!(refused.to_string().contains("no funds moved"), "{refused}");
    assert_eq!(core.order(orders[2]).await.unwrap().status, "created");
    assert_eq!(
        event_types(&*store, &order_stream(orders[2])).await,
        ["OrderCreated"]
    );
    // Once the queue moves, the same payment is taken.
    until("the queue moves", || async {
        w.ton.produce_block();
        core.request(second.request.request_id)
            .await
            .is_ok_and(|r| r.status.as_str() != "queued")
    })
    .await;
    let third = core
        .pay_order(orders[2], payer(), None, None)
        .await
        .unwrap();
    assert!(third.new_request);
    until("every payment completes", || async {
        w.ton.produce_block();
        core.order(orders[2]).await.unwrap().status == "success"
    })
    .await;
}

/// What the HTTP layer feeds for a keyed one-shot buy of 50 Stars (`api::routes::buy`).
fn keyed_buy(idem: &Idempotency) -> Keyed {
    let mut fingerprint = idem.fingerprint("stars.buy");
    fingerprint
        .field("username", "alice")
        .field("stars", "50")
        .field("wallet", payer().wallet.raw_address());
    Keyed {
        key: IdempotencyKey::parse("crash-after-broadcast").unwrap(),
        scope: Scope::Wallet(payer().wallet.raw_address()),
        operation: "stars.buy",
        fingerprint,
        creates_order: true,
    }
}

#[actix_web::test]
async fn a_keyed_buy_retried_after_a_crash_past_its_broadcast_finds_its_order_and_payment() {
    // Blocks only on demand: the payment stays on its way to the chain across the crash.
    let w = world_with_blocks(Duration::ZERO).await;
    w.ton.fund(payer().wallet.address(), Nanoton::from_ton(5));
    let lease = Duration::from_secs(5);
    let settings = IdempotencySettings {
        lease,
        wait: Duration::ZERO,
        ..IdempotencySettings::default()
    };
    let claimed_at = std::time::Instant::now();
    let (core, store) = w.core_with(config(Policy::default()), None).await;
    let idem = Idempotency::open(Arc::clone(&store) as Arc<dyn EventStore>, settings.clone())
        .await
        .unwrap();
    let Begin::Run(claim) = idem.begin(keyed_buy(&idem)).await.unwrap() else {
        panic!("a new key runs");
    };
    let order_id = claim.order_id.expect("a buy claims its order id");
    let order = core
        .place_order(
            Some(order_id),
            Product::Stars { amount: 50 },
            &alice(),
            None,
            None,
            events::PaymentMethod::Ton,
        )
        .await
        .unwrap();
    assert_eq!(order.order_id, order_id);
    let first = core.pay_order(order_id, payer(), None, None).await.unwrap();
    eventually("the payment is broadcast", || w.ton.broadcasts().len() == 1).await;
    // The process dies before the answer is recorded under the key.
    store.kill();
    drop(idem);

    let (core, store) = w.core_with(config(Policy::default()), None).await;
    let idem = Idempotency::open(Arc::clone(&store) as Arc<dyn EventStore>, settings)
        .await
        .unwrap();
    // Within the dead request's lease, the retry is told to come back…
    let early = idem.begin(keyed_buy(&idem)).await;
    assert!(
        matches!(early, Err(IdempotencyError::InProgress { .. })),
        "{early:?}"
    );
    // (The claim was made a moment after `claimed_at`.)
    let past_lease = claimed_at + lease + Duration::from_millis(500);
    tokio::time::sleep(past_lease.saturating_duration_since(std::time::Instant::now())).await;
    // …after it, the retry runs again: on the same order, which is paid already.
    let Begin::Run(retry) = idem.begin(keyed_buy(&idem)).await.unwrap() else {
        panic!("the dead request's key is taken over");
    };
    assert_eq!(retry.order_id, Some(order_id));
    // An order found made asks nothing of Fragment: with Fragment failing every call, it is
    // still found, and paying it again is the payment already made.
    w.fragment.faults().set_config(FaultConfig {
        error_rate: 1.0,
        ..FaultConfig::default()
    });
    let again = core
        .place_order(
            Some(order_id),
            Product::Stars { amount: 50 },
            &alice(),
            None,
            None,
            events::PaymentMethod::Ton,
        )
        .await
        .unwrap();
    assert_eq!(again.order_id, order_id);
    let receipt = core.pay_order(order_id, payer(), None, None).await.unwrap();
    w.fragment.faults().set_config(FaultConfig::default());
    assert!(!receipt.new_request, "the same payment");
    assert_eq!(receipt.request.request_id, first.request.request_id);
    assert_eq!(w.ton.produce_block(), 1);
    let done = order_outcome(&core, order_id).await;
    assert_eq!(done.status, "success", "{done:?}");
    // The restart may send the recorded message again; it is never signed again.
    let mut signed = w.ton.broadcasts();
    signed.dedup();
    assert_eq!(signed.len(), 1, "never signed again: {signed:?}");
    let orders = store.read_category("order", 0, 1000).await.unwrap();
    assert!(
        orders.iter().all(|e| e.stream == order_stream(order_id)),
        "no second order"
    );
}

/// Signs a checkout's transaction as the client's wallet app would: the messages as issued,
/// at the wallet's state on the simulator.
fn sign_checkout(
    w: &World,
    p: &fragment_gateway::actors::PayerKey,
    tx: &fragment_gateway::checkout::TonConnectRequest,
) -> String {
    use fragment_gateway::ton::transfer::{sign_transfer, TransferParams};
    use fragment_gateway::ton::{MessageBody, OutgoingMessage};
    let messages: Vec<OutgoingMessage> = tx
        .messages
        .iter()
        .map(|m| {
            OutgoingMessage::new(
                &m.address,
                Nanoton::new(m.amount.parse().unwrap()),
                MessageBody::from_boc_base64(&m.payload).unwrap(),
            )
            .unwrap()
        })
        .collect();
    let seqno = w.ton.seqno(p.wallet.address());
    let params = TransferParams {
        seqno: seqno.unwrap_or(0),
        valid_until: tx.valid_until,
        include_state_init: seqno.is_none(),
    };
    sign_transfer(&p.wallet, &p.key, &params, &messages)
        .unwrap()
        .boc
}

fn checkout_for_alice(
    p: &fragment_gateway::actors::PayerKey,
) -> fragment_gateway::actors::checkout::CheckoutRequest {
    fragment_gateway::actors::checkout::CheckoutRequest {
        product: Product::Stars { amount: 50 },
        username: alice(),
        wallet: p.wallet.address().clone(),
        hint: fragment_gateway::checkout::WalletHint {
            public_key: Some(p.wallet.public_key()),
            state_init: None,
        },
        cookies: None,
        webhook_url: None,
    }
}

/// A checkout's signed message is recorded before anything is sent: a process that dies
/// right after recording it leaves it to the next start, which sends the identical message
/// and completes the purchase, paid once; a checkout issued before a restart can still be
/// paid after it.
#[actix_web::test]
async fn a_checkout_recorded_when_the_process_dies_is_completed_by_the_next_start() {
    let price = Prices::default().stars(50);
    for kill_after in ["CheckoutIssued", "PaymentSubmitted"] {
        let w = world().await;
        let p = payer();
        w.ton.fund(p.wallet.address(), Nanoton::from_ton(5));
        until("funded", || async {
            w.ton.balance(p.wallet.address()) > Nanoton::ZERO
        })
        .await;
        let (core, _) = w.core(Policy::default(), Some((kill_after, 1))).await;
        let issued = tokio::time::timeout(
            Duration::from_secs(5),
            core.create_checkout(None, checkout_for_alice(&p)),
        )
        .await;
        let (id, tx) = match issued {
            Ok(Ok(c)) => (c.issued.order_id, c.transaction),
            // Killed after recording the checkout: it is read back after the restart.
            _ => (
                Uuid::nil(),
                fragment_gateway::checkout::TonConnectRequest {
                    valid_until: 0,
                    network: String::new(),
                    from: String::new(),
                    messages: vec![],
                },
            ),
        };
        if kill_after == "PaymentSubmitted" {
            let boc = sign_checkout(&w, &p, &tx);
            let _ = tokio::time::timeout(
                Duration::from_secs(5),
                core.submit_checkout(id, &boc, false, None),
            )
            .await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert_eq!(
                w.ton.seqno(p.wallet.address()),
                None,
                "never broadcast by the dead process"
            );
        }
        drop(core);

        let (core, store) = w.core(Policy::default(), None).await;
        let id = if kill_after == "CheckoutIssued" {
            // The checkout outlived the process: its order id is the one created.
            let orders = store.read_all(0, 100).await.unwrap();
            let created = orders
                .iter()
                .find(|e| e.event_type == "CheckoutIssued")
                .expect("the checkout was recorded");
            let id = Uuid::parse_str(created.data["order_id"].as_str().unwrap()).unwrap();
            let checkout = core.checkout(id).await.unwrap();
            let boc = sign_checkout(&w, &p, &checkout.transaction);
            core.submit_checkout(id, &boc, false, None).await.unwrap();
            id
        } else {
            id
        };
        let order = order_outcome(&core, id).await;
        assert_eq!(
            order.status, "success",
            "killed after {kill_after}: {order:?}"
        );
        core.drain().await.unwrap();
        let paid = w.ton.balance(&w.fragment.payment_address()).as_u64();
        assert_eq!(paid, price, "killed after {kill_after}: paid exactly once");
        eventually("delivery", || w.fragment.deliveries().len() == 1).await;
    }
}

/// A checkout whose message's time ran out before it was submitted, and that the wallet did
/// not apply, is CHECKOUT_EXPIRED and nothing is recorded or sent; one submitted in time but
/// signed for a seqno the wallet has passed is CHECKOUT_REJECTED (seqno used), no funds moved.
#[actix_web::test]
async fn a_checkout_submitted_after_its_time_is_expired_and_records_nothing() {
    let w = world().await;
    let p = payer();
    w.ton.fund(p.wallet.address(), Nanoton::from_ton(5));
    until("funded", || async {
        w.ton.balance(p.wallet.address()) > Nanoton::ZERO
    })
    .await;
    let config = CoreConfig {
        checkout_ttl_secs: 2,
        ..config(Policy::default())
    };
    let (core, store) = w.core_with(config, None).await;
    let issued = core
        .create_checkout(None, checkout_for_alice(&p))
        .await
        .unwrap();
    let id = issued.issued.order_id;
    let boc = sign_checkout(&w, &p, &issued.transaction);
    let head = store.head().await.unwrap();
    // Past its valid_until on the chain's clock too.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let refused = core
        .submit_checkout(id, &boc, false, None)
        .await
        .unwrap_err();
    assert!(
        matches!(refused, CoreError::CheckoutExpired(_)),
        "{refused:?}"
    );
    assert_eq!(refused.api_code(), ("CHECKOUT_EXPIRED", 400));
    assert!(refused.to_string().contains("no funds moved"), "{refused}");
    assert_eq!(store.head().await.unwrap(), head, "nothing recorded");
    assert_eq!(w.ton.seqno(p.wallet.address()), None, "nothing sent");
    assert_eq!(core.order(id).await.unwrap().status, "created");
}

/// A Stars order paid in USDT on TON: priced in USDT at the page's TON rate, paid by the
/// jetton transfer Fragment's link names (signed by the gateway as for TON), followed through
/// the wallet's USDT wallet, delivered; the commission accrues in TON on the TON price. A
/// wallet short of USDT is refused before anything is queued.
#[actix_web::test]
async fn a_purchase_paid_in_usdt_moves_exactly_the_invoiced_usdt() {
    use fragment_gateway::ton::jetton::JettonAmount;
    let w = world().await;
    let p = payer();
    let me = p.wallet.address().clone();
    w.ton.fund(&me, Nanoton::from_ton(1));
    until("funded", || async { w.ton.balance(&me) > Nanoton::ZERO }).await;
    w.ton.mint_usdt(&me, JettonAmount(5_000_000));
    let (core, _) = w.core(Policy::default(), None).await;
    let create = async || {
        core.place_order(
            None,
            Product::Stars { amount: 50 },
            &alice(),
            None,
            None,
            events::PaymentMethod::UsdtTon,
        )
        .await
        .unwrap()
    };
    let order = create().await;
    assert_eq!(order.payment_method, events::PaymentMethod::UsdtTon);
    // 0.25 TON at $3.00.
    assert_eq!(order.price_usdt, Some(JettonAmount(750_000)));
    assert_eq!(
        order.commission_nanoton,
        Nanoton::new(2_500_000),
        "1 % of the TON price"
    );
    core.pay_order(order.order_id, payer(), None, None)
        .await
        .unwrap();
    let done = order_outcome(&core, order.order_id).await;
    assert_eq!(done.status, "success", "{done:?}");
    let request = core.request(done.request_id.unwrap()).await.unwrap();
    let result = request.result.clone().unwrap();
    assert_eq!(result.cost_usdt, Some(JettonAmount(750_000)));
    assert_eq!(result.cost_nanoton, Nanoton::ZERO);
    assert_eq!(w.ton.usdt_balance(&me), JettonAmount(4_250_000));
    assert_eq!(
        w.ton.usdt_balance(&w.fragment.payment_address()),
        JettonAmount(750_000)
    );
    eventually("delivery", || w.fragment.deliveries().len() == 1).await;
    // The debt is in TON.
    let debt = core
        .registry()
        .wallet_state(&p.wallet.raw_address())
        .await
        .unwrap()
        .debt_nanoton;
    assert_eq!(debt, Nanoton::new(2_500_000));

    // Not enough USDT left for six more: refused before anything is recorded or sent.
    let big = core
        .place_order(
            None,
            Product::Stars { amount: 500 },
            &alice(),
            None,
            None,
            events::PaymentMethod::UsdtTon,
        )
        .await
        .unwrap();
    let refused = core
        .pay_order(big.order_id, payer(), None, None)
        .await
        .unwrap_err();
    assert_eq!(
        refused.api_code(),
        ("INSUFFICIENT_JETTON_BALANCE", 400),
        "{refused}"
    );
    assert!(refused.to_string().contains("USDT"), "{refused}");
}

/// A USDT payment whose USDT is gone by the time the chain applies it (spent elsewhere after
/// the checks): the wallet's message goes out, its USDT wallet refuses the transfer (706) and
/// bounces the TON back; the request fails with INSUFFICIENT_JETTON_BALANCE, no funds moved
/// but fees, and Fragment got nothing.
#[actix_web::test]
async fn a_usdt_transfer_the_usdt_wallet_refuses_fails_with_nothing_moved() {
    use fragment_gateway::ton::jetton::JettonAmount;
    let w = world_with_blocks(Duration::ZERO).await;
    let p = payer();
    let me = p.wallet.address().clone();
    w.ton.fund(&me, Nanoton::from_ton(1));
    w.ton.mint_usdt(&me, JettonAmount(5_000_000));
    let (core, _) = w.core(Policy::default(), None).await;
    let order = core
        .place_order(
            None,
            Product::Stars { amount: 50 },
            &alice(),
            None,
            None,
            events::PaymentMethod::UsdtTon,
        )
        .await
        .unwrap();
    let receipt = core
        .pay_order(order.order_id, payer(), None, None)
        .await
        .unwrap();
    eventually("the payment is broadcast", || w.ton.pending() == 1).await;
    assert_eq!(w.ton.take_usdt(&me), JettonAmount(5_000_000));
    w.ton.produce_block();
    let done = order_outcome(&core, order.order_id).await;
    assert_eq!(done.status, "failed", "{done:?}");
    let request = core.request(receipt.request.request_id).await.unwrap();
    assert_eq!(
        request.error_code.as_deref(),
        Some("INSUFFICIENT_JETTON_BALANCE")
    );
    let error = request.error.clone().unwrap();
    assert!(
        error.contains("no USDT moved") && error.contains("706"),
        "{error}"
    );
    assert_eq!(
        w.ton.usdt_balance(&w.fragment.payment_address()),
        JettonAmount::ZERO
    );
    // No commission for a purchase that did not happen.
    let debt = core
        .registry()
        .wallet_state(&p.wallet.raw_address())
        .await
        .unwrap()
        .debt_nanoton;
    assert_eq!(debt, Nanoton::ZERO);
}
