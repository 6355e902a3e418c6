//! Orders and their payment requests as the API shows them (`GET /orders/{id}`,
//! `GET /queue/{request_id}`, the admin lists).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use events::{Event, JettonAmount, Nanoton, OrderMode, PaymentMethod, Product};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{EventContext, Rows};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderView {
    pub order_id: Uuid,
    pub product: Product,
    pub username: String,
    pub mode: OrderMode,
    /// `created`, `queued`, `processing`, `success`, `failed`, `expired`.
    pub status: String,
    pub price_nanoton: Nanoton,
    pub commission_rate: Decimal,
    pub commission_nanoton: Nanoton,
    pub total_nanoton: Nanoton,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// The paying wallet (of the latest request), user-friendly form, as the API shows it.
    pub wallet_address: Option<String>,
    /// The same wallet's raw form (`0:…`): what lists filter on.
    #[serde(default)]
    pub wallet_raw: Option<String>,
    pub request_id: Option<Uuid>,
    pub tx_hash: Option<String>,
    pub error_code: Option<String>,
    pub error: Option<String>,
    pub completed_at: Option<DateTime<Utc>>,
    /// Fragment's confirmation: `None` until known, then confirmed or not.
    pub delivery_confirmed: Option<bool>,
    /// Position of the last event that changed this view.
    pub updated_at_position: u64,
    /// What it is paid in (rows folded before USDT: TON).
    #[serde(default)]
    pub payment_method: PaymentMethod,
    /// A USDT order's price in USDT units.
    #[serde(default)]
    pub price_usdt: Option<JettonAmount>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    Queued,
    Processing,
    Completed,
    Failed,
    Timeout,
}

impl RequestStatus {
    pub const ALL: [RequestStatus; 5] = [
        RequestStatus::Queued,
        RequestStatus::Processing,
        RequestStatus::Completed,
        RequestStatus::Failed,
        RequestStatus::Timeout,
    ];

    pub fn parse(s: &str) -> Option<RequestStatus> {
        RequestStatus::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Queued => "queued",
            RequestStatus::Processing => "processing",
            RequestStatus::Completed => "completed",
            RequestStatus::Failed => "failed",
            RequestStatus::Timeout => "timeout",
        }
    }
}

/// What a completed request reports (API.md, "The queue request").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestResult {
    pub transaction_hash: String,
    pub cost_nanoton: Nanoton,
    pub commission_nanoton: Nanoton,
    pub collected_nanoton: Nanoton,
    /// The wallet's debt after this order.
    pub commission_balance_nanoton: Nanoton,
    pub completed_at: DateTime<Utc>,
    /// Paid to Fragment in USDT (a USDT order).
    #[serde(default)]
    pub cost_usdt: Option<JettonAmount>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestView {
    pub request_id: Uuid,
    pub order_id: Uuid,
    pub status: RequestStatus,
    pub product: Product,
    pub username: String,
    pub mode: OrderMode,
    pub commission_rate: Decimal,
    pub wallet_address: String,
    pub wallet_friendly: String,
    pub wallet_version: String,
    pub created_at: DateTime<Utc>,
    pub queue_deadline: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    /// Signed and broadcast (or about to be): the seed is no longer needed to finish it.
    pub submitted: bool,
    pub error_code: Option<String>,
    pub error: Option<String>,
    pub result: Option<RequestResult>,
    /// Global position of its `OrderPaid`: a wallet's history is in this order.
    pub paid_position: u64,
    /// Global position of its `OrderQueued`: the queue is first in, first out by it.
    pub queued_position: Option<u64>,
    /// Position of the last event that changed this view.
    pub updated_at_position: u64,
}

/// Every order and request, in memory: `ReadModels`' rows, and the offline tools' (`replay`).
/// Keyed by id; ids are UUIDv7, so key order is creation order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OrderBook {
    pub orders: BTreeMap<Uuid, OrderView>,
    pub requests: BTreeMap<Uuid, RequestView>,
}

impl OrderBook {
    pub fn order(&self, id: &Uuid) -> Option<&OrderView> {
        self.orders.get(id)
    }

    pub fn request(&self, id: &Uuid) -> Option<&RequestView> {
        self.requests.get(id)
    }

    /// Orders whose wallet message was signed but whose outcome is not recorded: what a
    /// restart must reconcile against the chain.
    pub fn unresolved_submissions(&self) -> impl Iterator<Item = &RequestView> {
        self.requests.values().filter(|r| r.unresolved_submission())
    }

    /// Requests queued or processing with nothing signed yet: they need the client's seed,
    /// which only the process that took the payment had.
    pub fn unsigned_in_flight(&self) -> impl Iterator<Item = &RequestView> {
        self.requests.values().filter(|r| r.unsigned_in_flight())
    }

    /// Orders nobody has paid yet.
    pub fn unpaid(&self) -> impl Iterator<Item = &OrderView> {
        self.orders.values().filter(|o| o.status == "created")
    }

    /// Paid orders with no word yet on their delivery.
    pub fn awaiting_delivery_verdict(&self) -> impl Iterator<Item = &OrderView> {
        self.orders.values().filter(|o| o.awaits_delivery_verdict())
    }
}

impl OrderView {
    /// Paid, with no word yet from Fragment on its delivery.
    pub fn awaits_delivery_verdict(&self) -> bool {
        self.status == "success" && self.delivery_confirmed.is_none()
    }
}

impl RequestView {
    /// Signed, with no outcome recorded: a restart reconciles it with the chain.
    pub fn unresolved_submission(&self) -> bool {
        self.submitted && self.status == RequestStatus::Processing
    }

    /// Waiting or running with nothing signed: it needs the seed of the process that took it.
    pub fn unsigned_in_flight(&self) -> bool {
        self.status == RequestStatus::Queued
            || (self.status == RequestStatus::Processing && !self.submitted)
    }

    /// In the queue: taken and waiting for its turn.
    pub fn is_waiting(&self) -> bool {
        self.status == RequestStatus::Queued && self.queued_position.is_some()
    }
}

/// Folds one event into the order and request rows it names.
pub fn apply(rows: &mut impl Rows, ctx: EventContext, event: &Event) {
    match event {
        Event::OrderCreated(e) => rows.put_order(OrderView {
            order_id: e.order_id,
            product: e.product,
            username: e.username.clone(),
            mode: e.mode,
            status: "created".into(),
            price_nanoton: e.price_nanoton,
            commission_rate: e.commission_rate,
            commission_nanoton: e.commission_nanoton,
            total_nanoton: e.total_nanoton,
            created_at: e.created_at,
            expires_at: e.expires_at,
            wallet_address: None,
            wallet_raw: None,
            request_id: None,
            tx_hash: None,
            error_code: None,
            error: None,
            completed_at: None,
            delivery_confirmed: None,
            updated_at_position: ctx.position,
            payment_method: e.payment_method,
            price_usdt: e.price_usdt,
        }),
        Event::OrderPaid(e) => {
            let Some(order) = rows.order_mut(&e.order_id) else {
                return;
            };
            order.wallet_address = Some(e.wallet_friendly.clone());
            order.wallet_raw = Some(e.wallet_address.clone());
            order.request_id = Some(e.request_id);
            order.error = None;
            order.error_code = None;
            order.updated_at_position = ctx.position;
            let request = RequestView {
                request_id: e.request_id,
                order_id: e.order_id,
                status: RequestStatus::Queued,
                product: order.product,
                username: order.username.clone(),
                mode: order.mode,
                commission_rate: order.commission_rate,
                wallet_address: e.wallet_address.clone(),
                wallet_friendly: e.wallet_friendly.clone(),
                wallet_version: e.wallet_version.clone(),
                created_at: e.paid_at,
                queue_deadline: e.paid_at,
                started_at: None,
                completed_at: None,
                submitted: false,
                error_code: None,
                error: None,
                result: None,
                paid_position: ctx.position,
                queued_position: None,
                updated_at_position: ctx.position,
            };
            rows.put_request(request);
        }
        Event::OrderQueued(e) => {
            set_order_status(rows, &e.order_id, "queued", ctx);
            if let Some(r) = request_mut(rows, &e.request_id, ctx) {
                r.created_at = e.queued_at;
                r.queue_deadline = e.queue_deadline;
                r.queued_position = Some(ctx.position);
            }
        }
        Event::OrderProcessingStarted(e) => {
            set_order_status(rows, &e.order_id, "processing", ctx);
            if let Some(r) = request_mut(rows, &e.request_id, ctx) {
                r.status = RequestStatus::Processing;
                r.started_at = Some(e.started_at);
            }
        }
        Event::PaymentSubmitted(e) => {
            if let Some(r) = request_mut(rows, &e.request_id, ctx) {
                r.submitted = true;
            }
        }
        Event::OrderFulfilled(e) => {
            if let Some(o) = rows.order_mut(&e.order_id) {
                o.status = "success".into();
                o.tx_hash = Some(e.tx_hash.clone());
                o.completed_at = Some(e.completed_at);
                o.updated_at_position = ctx.position;
            }
            if let Some(r) = request_mut(rows, &e.request_id, ctx) {
                r.status = RequestStatus::Completed;
                r.completed_at = Some(e.completed_at);
                r.result = Some(RequestResult {
                    transaction_hash: e.tx_hash.clone(),
                    cost_nanoton: e.cost_nanoton,
                    commission_nanoton: e.commission_nanoton,
                    collected_nanoton: e.collected_nanoton,
                    commission_balance_nanoton: e.debt_after_nanoton,
                    completed_at: e.completed_at,
                    cost_usdt: e.cost_usdt,
                });
            }
        }
        Event::OrderDeliveryConfirmed(e) => {
            if let Some(o) = rows.order_mut(&e.order_id) {
                o.delivery_confirmed = Some(true);
                o.updated_at_position = ctx.position;
            }
        }
        Event::OrderDeliveryUnconfirmed(e) => {
            if let Some(o) = rows.order_mut(&e.order_id) {
                o.delivery_confirmed = Some(false);
                o.updated_at_position = ctx.position;
            }
        }
        Event::OrderFailed(e) => {
            if let Some(o) = rows.order_mut(&e.order_id) {
                o.status = "failed".into();
                o.error_code = Some(e.error_code.clone());
                o.error = Some(e.error.clone());
                o.completed_at = Some(e.failed_at);
                o.updated_at_position = ctx.position;
            }
            end_request(
                rows,
                &e.request_id,
                RequestStatus::Failed,
                &e.error_code,
                &e.error,
                e.failed_at,
                ctx,
            );
        }
        Event::OrderTimedOut(e) => {
            let message = format!(
                "the request waited {} s in the queue, longer than allowed; no funds moved, and the order can be paid again until it expires",
                e.waited_seconds
            );
            reopen(rows, &e.order_id, "QUEUE_TIMEOUT", &message, ctx);
            end_request(
                rows,
                &e.request_id,
                RequestStatus::Timeout,
                "QUEUE_TIMEOUT",
                &message,
                e.timed_out_at,
                ctx,
            );
        }
        Event::OrderPaymentAbandoned(e) => {
            reopen(rows, &e.order_id, &e.error_code, &e.error, ctx);
            end_request(
                rows,
                &e.request_id,
                RequestStatus::Failed,
                &e.error_code,
                &e.error,
                e.abandoned_at,
                ctx,
            );
        }
        Event::OrderExpired(e) => set_order_status(rows, &e.order_id, "expired", ctx),
        Event::OrderCancelled(e) => set_order_status(rows, &e.order_id, "cancelled", ctx),
        _ => {}
    }
}

/// The request row, stamped as changed at this event.
fn request_mut<'a>(
    rows: &'a mut impl Rows,
    id: &Uuid,
    ctx: EventContext,
) -> Option<&'a mut RequestView> {
    let r = rows.request_mut(id)?;
    r.updated_at_position = ctx.position;
    Some(r)
}

fn set_order_status(rows: &mut impl Rows, id: &Uuid, status: &str, ctx: EventContext) {
    if let Some(o) = rows.order_mut(id) {
        o.status = status.into();
        o.updated_at_position = ctx.position;
    }
}

/// The attempt ended without a payment: the order is `created` again and says why.
fn reopen(rows: &mut impl Rows, id: &Uuid, code: &str, error: &str, ctx: EventContext) {
    if let Some(o) = rows.order_mut(id) {
        o.status = "created".into();
        o.error_code = Some(code.into());
        o.error = Some(error.into());
        o.updated_at_position = ctx.position;
    }
}

fn end_request(
    rows: &mut impl Rows,
    id: &Uuid,
    status: RequestStatus,
    code: &str,
    error: &str,
    at: DateTime<Utc>,
    ctx: EventContext,
) {
    if let Some(r) = request_mut(rows, id, ctx) {
        r.status = status;
        r.error_code = Some(code.into());
        r.error = Some(error.into());
        r.completed_at = Some(at);
    }
}
