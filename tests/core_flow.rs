//! The event-sourced core end to end: purchases through the actors against the TON and
//! fragment.com simulators over loopback, with the embedded store on disk; restarts in the
//! middle of every step; and the seed never reaching the store file.

mod common;

use std::time::Duration;

use common::*;
use events::Product;
use fragment_gateway::domain::Policy;
use fragment_gateway::sim::fragment::state::Prices;
use fragment_gateway::ton::Nanoton;

#[actix_web::test]
async fn a_no_kyc_purchase_runs_through_the_actors_to_the_nanoton() {
    let w = world().await;
    let p = payer();
    w.ton.fund(p.wallet.address(), Nanoton::from_ton(5));
    let (core, _) = w.core(Policy::default(), None).await;

    let order = core
        .create_order(Product::Stars { amount: 50 }, &alice(), None)
        .await
        .unwrap();
    let price = Prices::default().stars(50);
    assert_eq!(order.status, "created");
    assert_eq!(order.price_nanoton, price);
    // 1 %, rounded half away from zero.
    let commission = (price as u128 + 50) / 100;
    assert_eq!(order.commission_nanoton as u128, commission);

    let raw = p.wallet.raw_address();
    let receipt = core.pay_order(order.order_id, p, None, None).await.unwrap();
    assert!(receipt.new_request);
    core.drain().await.unwrap();

    let order = core.order(order.order_id).unwrap();
    assert_eq!(order.status, "success", "{order:?}");
    assert_eq!(order.delivery_confirmed, Some(true));
    let request = core.request(receipt.request.request_id).unwrap();
    let result = request.result.unwrap();
    assert_eq!(result.cost_nanoton, price);
    assert_eq!(result.commission_balance_nanoton, order.commission_nanoton);
    assert_eq!(w.fragment.deliveries().len(), 1);
    assert_eq!(w.ton.balance(&w.fragment.payment_address()).as_u64(), price);
    let models = core.projections().snapshot();
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
        collection_threshold_nanoton: 100_000_000,
        ..Policy::default()
    };
    let (core, _) = w.core(policy, None).await;
    let order = core
        .create_order(Product::Stars { amount: 500 }, &alice(), None)
        .await
        .unwrap();
    let raw = p.wallet.raw_address();
    core.pay_order(order.order_id, p, None, None).await.unwrap();
    core.drain().await.unwrap();
    assert_eq!(core.order(order.order_id).unwrap().status, "success");
    let wallet = core.projections().snapshot().commission.wallet(&raw);
    assert_eq!(wallet.accrued_total_nanoton, order.commission_nanoton);
    assert_eq!(wallet.collected_total_nanoton, order.commission_nanoton);
    assert_eq!(wallet.debt_nanoton, 0);
    assert_eq!(
        w.ton.balance(&w.fee.address).as_u64(),
        order.commission_nanoton
    );
}

/// Kills the core right after the `nth` event of `event_type`, restarts it on the same data
/// dir, and returns the final order status once everything settled.
async fn crash_after(event_type: &'static str) -> (World, String, usize) {
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
            return (w, "none".into(), 0);
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
    let status = core.order(order_id).unwrap().status;
    let deliveries = w.fragment.deliveries().len();
    (w, status, deliveries)
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
        let (w, status, deliveries) = crash_after(event_type).await;
        assert_eq!(status, expected, "killed after {event_type}");
        let paid = w.ton.balance(&w.fragment.payment_address()).as_u64();
        match expected {
            "success" => {
                assert_eq!(paid, price, "killed after {event_type}: paid exactly once");
                eventually("delivery", || w.fragment.deliveries().len() == 1).await;
            }
            _ => {
                assert_eq!(paid, 0, "killed after {event_type}: no funds moved");
                assert_eq!(deliveries, 0);
            }
        }
    }
}
