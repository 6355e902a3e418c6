//! Read models of fragment-gateway: pure folds from events to what the API shows. No I/O:
//! the same fold serves live updates, full replays and rebuilds.
//!
//! The models are rows (orders, payment requests, wallets' commission accounts, each keyed
//! by its id) plus a few singletons (the operator's totals, the queue's counters). A fold of
//! one event touches only the rows the event names (`Keys`), through the `Rows` trait: the
//! service keeps the rows in database tables and hands the fold just those rows, while
//! `ReadModels` keeps every row in memory for the offline tools and tests. Both run the same
//! `fold`, so they cannot disagree.
//!
//! Projections never do business arithmetic: the events carry the derived values (costs,
//! debts after), so a projection only copies and indexes them.

pub mod commission;
pub mod history;
pub mod orders;
pub mod queue;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use events::{Event, RecordedEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use commission::{CommissionBalances, OperatorTotals, WalletCommission};
pub use history::{HistoryItem, TransactionHistory};
pub use orders::{OrderBook, OrderView, RequestResult, RequestStatus, RequestView};
pub use queue::{QueueCounters, QueueStats, QueueView};

/// Bumped whenever a projection's shape or meaning changes: stored read models of another
/// version are discarded and rebuilt from the log.
/// (2: checkpoints from builds that skipped unreadable events at start are not trusted.
/// 3: rows in tables, with the positions that order history and the queue.)
pub const PROJECTIONS_VERSION: u32 = 3;

/// What each projection needs of an event besides its data.
#[derive(Clone, Copy, Debug)]
pub struct EventContext {
    pub position: u64,
    pub recorded_at: DateTime<Utc>,
}

impl From<&RecordedEvent> for EventContext {
    fn from(e: &RecordedEvent) -> EventContext {
        EventContext {
            position: e.position,
            recorded_at: e.recorded_at,
        }
    }
}

impl From<&events::DecodedEvent> for EventContext {
    fn from(e: &events::DecodedEvent) -> EventContext {
        EventContext {
            position: e.position,
            recorded_at: e.recorded_at,
        }
    }
}

/// The rows a fold reads and changes. `*_mut` and `put_*` mark a row changed.
pub trait Rows {
    fn order(&self, id: &Uuid) -> Option<&OrderView>;
    fn order_mut(&mut self, id: &Uuid) -> Option<&mut OrderView>;
    fn put_order(&mut self, order: OrderView);
    fn request(&self, id: &Uuid) -> Option<&RequestView>;
    fn request_mut(&mut self, id: &Uuid) -> Option<&mut RequestView>;
    fn put_request(&mut self, request: RequestView);
    /// The wallet's account, created empty if the wallet has none.
    fn wallet_mut(&mut self, raw: &str) -> &mut WalletCommission;
}

/// The rows one event reads or writes: what a store must load before folding it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Keys {
    pub order: Option<Uuid>,
    pub request: Option<Uuid>,
    pub wallet: Option<String>,
}

impl Keys {
    pub fn of(event: &Event) -> Keys {
        let (order, request) = match event {
            Event::OrderCreated(e) => (Some(e.order_id), None),
            Event::OrderPaid(e) => (Some(e.order_id), Some(e.request_id)),
            Event::OrderQueued(e) => (Some(e.order_id), Some(e.request_id)),
            Event::OrderProcessingStarted(e) => (Some(e.order_id), Some(e.request_id)),
            Event::PaymentSubmitted(e) => (None, Some(e.request_id)),
            Event::OrderFulfilled(e) => (Some(e.order_id), Some(e.request_id)),
            Event::OrderDeliveryConfirmed(e) => (Some(e.order_id), None),
            Event::OrderDeliveryUnconfirmed(e) => (Some(e.order_id), None),
            Event::OrderFailed(e) => (Some(e.order_id), Some(e.request_id)),
            Event::OrderTimedOut(e) => (Some(e.order_id), Some(e.request_id)),
            Event::OrderPaymentAbandoned(e) => (Some(e.order_id), Some(e.request_id)),
            Event::OrderExpired(e) => (Some(e.order_id), None),
            Event::OrderCancelled(e) => (Some(e.order_id), None),
            // Listed, not `_`: a new order event must be given its rows here.
            Event::OrderWebhookSet(_)
            | Event::CheckoutIssued(_)
            | Event::CommissionAccrued(_)
            | Event::CommissionCollected(_)
            | Event::CommissionCollectionFailed(_)
            | Event::DebtLimitReached(_)
            | Event::DebtSettled(_)
            | Event::IdempotencyKeyClaimed(_)
            | Event::IdempotentAnswerRecorded(_)
            | Event::IdempotencyKeyReleased(_) => (None, None),
        };
        Keys {
            order,
            request,
            wallet: commission::wallet_of(event).map(str::to_string),
        }
    }
}

/// The singletons stored beside the rows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub totals: OperatorTotals,
    pub queue: QueueCounters,
}

/// Folds one decoded event into `rows`, the queue and the operator's totals.
pub fn fold(
    rows: &mut impl Rows,
    queue: &mut QueueView,
    totals: &mut OperatorTotals,
    ctx: EventContext,
    event: &Event,
) {
    let keys = Keys::of(event);
    let started = keys
        .request
        .and_then(|id| rows.request(&id))
        .filter(|r| r.status == RequestStatus::Processing)
        .and_then(|r| r.started_at);
    orders::apply(rows, ctx, event);
    if let Some(r) = keys.request.and_then(|id| rows.request(&id)) {
        queue.track(r);
    }
    queue.count(event, started);
    commission::apply(rows, totals, ctx, event);
}

/// All read models in memory, folded up to `position`: for the offline tools (`replay`,
/// `audit` of a copy) and tests. The service keeps the same rows in tables instead.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReadModels {
    /// The global position of the last event folded.
    pub position: u64,
    pub orders: OrderBook,
    pub queue: QueueView,
    pub commission: CommissionBalances,
    pub history: TransactionHistory,
}

/// `ReadModels`' rows, borrowed for one fold.
struct MemoryRows<'a> {
    book: &'a mut OrderBook,
    wallets: &'a mut BTreeMap<String, WalletCommission>,
    history: &'a mut TransactionHistory,
}

impl Rows for MemoryRows<'_> {
    fn order(&self, id: &Uuid) -> Option<&OrderView> {
        self.book.orders.get(id)
    }
    fn order_mut(&mut self, id: &Uuid) -> Option<&mut OrderView> {
        self.book.orders.get_mut(id)
    }
    fn put_order(&mut self, order: OrderView) {
        self.book.orders.insert(order.order_id, order);
    }
    fn request(&self, id: &Uuid) -> Option<&RequestView> {
        self.book.requests.get(id)
    }
    fn request_mut(&mut self, id: &Uuid) -> Option<&mut RequestView> {
        self.book.requests.get_mut(id)
    }
    fn put_request(&mut self, request: RequestView) {
        if !self.book.requests.contains_key(&request.request_id) {
            self.history
                .paid(&request.wallet_address, request.request_id);
        }
        self.book.requests.insert(request.request_id, request);
    }
    fn wallet_mut(&mut self, raw: &str) -> &mut WalletCommission {
        self.wallets.entry(raw.to_string()).or_default()
    }
}

impl ReadModels {
    pub fn new() -> ReadModels {
        ReadModels::default()
    }

    /// Folds one decoded event. Events at or before `position` are ignored, so replaying
    /// an overlap cannot count anything twice.
    pub fn apply(&mut self, recorded: &RecordedEvent, event: &Event) {
        self.apply_at(recorded.into(), event);
    }

    /// `apply`, given where the event is.
    pub fn apply_at(&mut self, ctx: EventContext, event: &Event) {
        if ctx.position <= self.position {
            return;
        }
        let mut rows = MemoryRows {
            book: &mut self.orders,
            wallets: &mut self.commission.wallets,
            history: &mut self.history,
        };
        fold(
            &mut rows,
            &mut self.queue,
            &mut self.commission.totals,
            ctx,
            event,
        );
        self.position = ctx.position;
    }

    /// Folds a stored event, decoding (and upcasting) it first.
    pub fn apply_recorded(&mut self, recorded: &RecordedEvent) -> Result<(), events::DecodeError> {
        let event = Event::from_recorded(recorded)?;
        self.apply(recorded, &event);
        Ok(())
    }

    /// The singletons, as a store keeps them.
    pub fn summary(&self) -> Summary {
        Summary {
            totals: self.commission.totals.clone(),
            queue: self.queue.counters.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};
    use events::*;
    use rust_decimal::Decimal;
    use uuid::Uuid;

    struct Log {
        models: ReadModels,
        position: u64,
        t0: DateTime<Utc>,
    }

    impl Log {
        fn new() -> Log {
            Log {
                models: ReadModels::new(),
                position: 0,
                t0: Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap(),
            }
        }

        fn at(&self, secs: i64) -> DateTime<Utc> {
            self.t0 + Duration::seconds(secs)
        }

        fn push(&mut self, event: impl Into<Event>) {
            let event = event.into();
            self.position += 1;
            let recorded = event.to_new_event(EventMetadata::default()).recorded(
                event.stream().to_string(),
                self.position,
                1,
                self.t0,
            );
            self.models.apply_recorded(&recorded).unwrap();
        }

        fn order(&mut self, n: u128, mode: OrderMode) -> Uuid {
            let id = Uuid::from_u128(n);
            let commission = Nanoton::new(if mode == OrderMode::NoKyc {
                10_000_000
            } else {
                0
            });
            self.push(OrderCreated {
                order_id: id,
                product: Product::Stars { amount: 100 },
                username: "alice".into(),
                mode,
                cookie_fingerprint: None,
                price_nanoton: Nanoton::new(1_000_000_000),
                commission_rate: Decimal::new(1, 2),
                commission_nanoton: commission,
                total_nanoton: Nanoton::new(1_000_000_000).checked_add(commission).unwrap(),
                created_at: self.t0,
                expires_at: self.at(600),
                payment_method: events::PaymentMethod::Ton,
                price_usdt: None,
            });
            id
        }

        fn queue(&mut self, order: Uuid, request: u128, wallet: &str, at: i64) -> Uuid {
            let request_id = Uuid::from_u128(request);
            self.push(OrderPaid {
                order_id: order,
                request_id,
                wallet_address: wallet.into(),
                wallet_friendly: format!("friendly-{wallet}"),
                wallet_version: "v4r2".into(),
                account_index: None,
                balance_nanoton: Nanoton::new(9),
                debt_nanoton: Nanoton::new(0),
                paid_at: self.at(at),
            });
            self.push(OrderQueued {
                order_id: order,
                request_id,
                queued_at: self.at(at),
                queue_deadline: self.at(at + 300),
            });
            request_id
        }
    }

    const A: &str = "0:aa";
    const B: &str = "0:bb";

    #[test]
    fn positions_are_fifo_and_move_up_as_requests_start() {
        let mut log = Log::new();
        let mut requests = vec![];
        for n in 1..=3 {
            let o = log.order(n, OrderMode::NoKyc);
            requests.push(log.queue(o, 100 + n, A, n as i64));
        }
        let q = &log.models.queue;
        let positions: Vec<_> = requests.iter().map(|r| q.position(r).unwrap()).collect();
        assert_eq!(positions, [1, 2, 3]);
        log.push(OrderProcessingStarted {
            order_id: Uuid::from_u128(1),
            request_id: requests[0],
            session: "owner:0".into(),
            started_at: log.at(10),
        });
        let q = &log.models.queue;
        assert_eq!(q.position(&requests[0]), None);
        assert_eq!(q.position(&requests[2]), Some(2));
        let stats = q.stats();
        assert_eq!(
            (stats.pending, stats.processing, stats.queue_length),
            (2, 1, 3)
        );
        assert_eq!(
            log.models.orders.request(&requests[0]).unwrap().status,
            RequestStatus::Processing
        );
    }

    #[test]
    fn a_fulfilled_request_feeds_the_average_and_the_result() {
        let mut log = Log::new();
        let o = log.order(1, OrderMode::NoKyc);
        let r = log.queue(o, 2, A, 0);
        log.push(OrderProcessingStarted {
            order_id: o,
            request_id: r,
            session: "owner:0".into(),
            started_at: log.at(10),
        });
        log.push(OrderFulfilled {
            order_id: o,
            request_id: r,
            tx_hash: "ff".into(),
            tx_lt: 1,
            cost_nanoton: Nanoton::new(999_000_000),
            commission_nanoton: Nanoton::new(10_000_000),
            collected_nanoton: Nanoton::new(0),
            debt_after_nanoton: Nanoton::new(10_000_000),
            network_fee_nanoton: Nanoton::new(5),
            completed_at: log.at(22),
            cost_usdt: None,
        });
        let q = log.models.queue.stats();
        assert_eq!(
            (q.completed, q.total_processed, q.average_processing_ms),
            (1, 1, 12_000)
        );
        let order = log.models.orders.order(&o).unwrap();
        assert_eq!(
            (order.status.as_str(), order.tx_hash.as_deref()),
            ("success", Some("ff"))
        );
        let result = log
            .models
            .orders
            .request(&r)
            .unwrap()
            .result
            .clone()
            .unwrap();
        assert_eq!(result.commission_balance_nanoton, Nanoton::new(10_000_000));
        let page = log.models.history.page(&log.models.orders, A, 0, 10);
        assert_eq!(page.len(), 1);
        assert_eq!(
            (page[0].cost_nanoton, page[0].status.as_str()),
            (Nanoton::new(999_000_000), "completed")
        );
        assert!(log
            .models
            .history
            .page(&log.models.orders, B, 0, 10)
            .is_empty());
    }

    #[test]
    fn a_timeout_reopens_the_order_and_ends_the_request() {
        let mut log = Log::new();
        let o = log.order(1, OrderMode::Kyc);
        let r = log.queue(o, 2, A, 0);
        log.push(OrderTimedOut {
            order_id: o,
            request_id: r,
            waited_seconds: 300,
            timed_out_at: log.at(300),
        });
        let order = log.models.orders.order(&o).unwrap();
        assert_eq!(order.status, "created");
        assert_eq!(order.error_code.as_deref(), Some("QUEUE_TIMEOUT"));
        let request = log.models.orders.request(&r).unwrap();
        assert_eq!(request.status, RequestStatus::Timeout);
        assert_eq!(log.models.queue.stats().queue_length, 0);
        assert_eq!(log.models.queue.stats().timed_out, 1);
    }

    #[test]
    fn commission_totals_follow_the_wallet_events() {
        let mut log = Log::new();
        let t = log.at(0);
        log.push(CommissionAccrued {
            wallet_address: A.into(),
            order_id: Uuid::from_u128(1),
            amount_nanoton: Nanoton::new(600),
            debt_after_nanoton: Nanoton::new(600),
            accrued_total_after_nanoton: Nanoton::new(600),
            at: t,
        });
        log.push(CommissionAccrued {
            wallet_address: B.into(),
            order_id: Uuid::from_u128(2),
            amount_nanoton: Nanoton::new(50),
            debt_after_nanoton: Nanoton::new(50),
            accrued_total_after_nanoton: Nanoton::new(50),
            at: t,
        });
        log.push(CommissionCollected {
            wallet_address: A.into(),
            order_id: Uuid::from_u128(3),
            amount_nanoton: Nanoton::new(600),
            debt_after_nanoton: Nanoton::new(0),
            collected_total_after_nanoton: Nanoton::new(600),
            tx_hash: "t".into(),
            at: t,
        });
        let c = &log.models.commission;
        assert_eq!(c.wallet(A).debt_nanoton, Nanoton::new(0));
        assert_eq!(c.wallet(A).collected_total_nanoton, Nanoton::new(600));
        assert_eq!(c.totals.outstanding_nanoton, Nanoton::new(50));
        assert_eq!(c.totals.wallets_with_debt, 1);
        assert_eq!(
            (c.totals.accrued_nanoton, c.totals.collected_nanoton),
            (Nanoton::new(650), Nanoton::new(600))
        );
    }

    #[test]
    fn events_at_or_before_the_checkpoint_are_not_folded_twice() {
        let mut log = Log::new();
        log.order(1, OrderMode::NoKyc);
        let snapshot = log.models.clone();
        // Replaying position 1 again (an overlap after a restart) changes nothing.
        log.position = 0;
        log.order(1, OrderMode::Kyc);
        assert_eq!(log.models, snapshot);
    }
}
