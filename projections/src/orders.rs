//! Orders and their payment requests as the API shows them (`GET /orders/{id}`,
//! `GET /queue/{request_id}`, the admin lists).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use events::{Event, Nanoton, OrderMode, Product};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::EventContext;

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
    pub wallet_address: Option<String>,
    pub request_id: Option<Uuid>,
    pub tx_hash: Option<String>,
    pub error_code: Option<String>,
    pub error: Option<String>,
    pub completed_at: Option<DateTime<Utc>>,
    /// Fragment's confirmation: `None` until known, then confirmed or not.
    pub delivery_confirmed: Option<bool>,
    /// Position of the last event that changed this view.
    pub updated_at_position: u64,
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
}

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
        self.requests
            .values()
            .filter(|r| r.submitted && r.status == RequestStatus::Processing)
    }

    /// Requests queued or processing with nothing signed yet: they need the client's seed,
    /// which only the process that took the payment had.
    pub fn unsigned_in_flight(&self) -> impl Iterator<Item = &RequestView> {
        self.requests.values().filter(|r| {
            r.status == RequestStatus::Queued
                || (r.status == RequestStatus::Processing && !r.submitted)
        })
    }

    /// Orders nobody has paid yet.
    pub fn unpaid(&self) -> impl Iterator<Item = &OrderView> {
        self.orders.values().filter(|o| o.status == "created")
    }

    /// Paid orders with no word yet on their delivery.
    pub fn awaiting_delivery_verdict(&self) -> impl Iterator<Item = &OrderView> {
        self.orders
            .values()
            .filter(|o| o.status == "success" && o.delivery_confirmed.is_none())
    }

    pub fn apply(&mut self, ctx: EventContext, event: &Event) {
        match event {
            Event::OrderCreated(e) => {
                self.orders.insert(
                    e.order_id,
                    OrderView {
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
                        request_id: None,
                        tx_hash: None,
                        error_code: None,
                        error: None,
                        completed_at: None,
                        delivery_confirmed: None,
                        updated_at_position: ctx.position,
                    },
                );
            }
            Event::OrderPaid(e) => {
                let Some(order) = self.orders.get_mut(&e.order_id) else {
                    return;
                };
                order.wallet_address = Some(e.wallet_friendly.clone());
                order.request_id = Some(e.request_id);
                order.error = None;
                order.error_code = None;
                order.updated_at_position = ctx.position;
                self.requests.insert(
                    e.request_id,
                    RequestView {
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
                    },
                );
            }
            Event::OrderQueued(e) => {
                self.set_order_status(&e.order_id, "queued", ctx);
                if let Some(r) = self.requests.get_mut(&e.request_id) {
                    r.created_at = e.queued_at;
                    r.queue_deadline = e.queue_deadline;
                }
            }
            Event::OrderProcessingStarted(e) => {
                self.set_order_status(&e.order_id, "processing", ctx);
                if let Some(r) = self.requests.get_mut(&e.request_id) {
                    r.status = RequestStatus::Processing;
                    r.started_at = Some(e.started_at);
                }
            }
            Event::PaymentSubmitted(e) => {
                if let Some(r) = self.requests.get_mut(&e.request_id) {
                    r.submitted = true;
                }
            }
            Event::OrderFulfilled(e) => {
                if let Some(o) = self.orders.get_mut(&e.order_id) {
                    o.status = "success".into();
                    o.tx_hash = Some(e.tx_hash.clone());
                    o.completed_at = Some(e.completed_at);
                    o.updated_at_position = ctx.position;
                }
                if let Some(r) = self.requests.get_mut(&e.request_id) {
                    r.status = RequestStatus::Completed;
                    r.completed_at = Some(e.completed_at);
                    r.result = Some(RequestResult {
                        transaction_hash: e.tx_hash.clone(),
                        cost_nanoton: e.cost_nanoton,
                        commission_nanoton: e.commission_nanoton,
                        collected_nanoton: e.collected_nanoton,
                        commission_balance_nanoton: e.debt_after_nanoton,
                        completed_at: e.completed_at,
                    });
                }
            }
            Event::OrderDeliveryConfirmed(e) => {
                if let Some(o) = self.orders.get_mut(&e.order_id) {
                    o.delivery_confirmed = Some(true);
                    o.updated_at_position = ctx.position;
                }
            }
            Event::OrderDeliveryUnconfirmed(e) => {
                if let Some(o) = self.orders.get_mut(&e.order_id) {
                    o.delivery_confirmed = Some(false);
                    o.updated_at_position = ctx.position;
                }
            }
            Event::OrderFailed(e) => {
                if let Some(o) = self.orders.get_mut(&e.order_id) {
                    o.status = "failed".into();
                    o.error_code = Some(e.error_code.clone());
                    o.error = Some(e.error.clone());
                    o.completed_at = Some(e.failed_at);
                    o.updated_at_position = ctx.position;
                }
                self.end_request(
                    &e.request_id,
                    RequestStatus::Failed,
                    &e.error_code,
                    &e.error,
                    e.failed_at,
                );
            }
            Event::OrderTimedOut(e) => {
                let message = format!(
                    "the request waited {} s in the queue, longer than allowed; no funds moved, and the order can be paid again until it expires",
                    e.waited_seconds
                );
                self.reopen(&e.order_id, "QUEUE_TIMEOUT", &message, ctx);
                self.end_request(
                    &e.request_id,
                    RequestStatus::Timeout,
                    "QUEUE_TIMEOUT",
                    &message,
                    e.timed_out_at,
                );
            }
            Event::OrderPaymentAbandoned(e) => {
                self.reopen(&e.order_id, &e.error_code, &e.error, ctx);
                self.end_request(
                    &e.request_id,
                    RequestStatus::Failed,
                    &e.error_code,
                    &e.error,
                    e.abandoned_at,
                );
            }
            Event::OrderExpired(e) => self.set_order_status(&e.order_id, "expired", ctx),
            _ => {}
        }
    }

    fn set_order_status(&mut self, id: &Uuid, status: &str, ctx: EventContext) {
        if let Some(o) = self.orders.get_mut(id) {
            o.status = status.into();
            o.updated_at_position = ctx.position;
        }
    }

    /// The attempt ended without a payment: the order is `created` again and says why.
    fn reopen(&mut self, id: &Uuid, code: &str, error: &str, ctx: EventContext) {
        if let Some(o) = self.orders.get_mut(id) {
            o.status = "created".into();
            o.error_code = Some(code.into());
            o.error = Some(error.into());
            o.updated_at_position = ctx.position;
        }
    }

    fn end_request(
        &mut self,
        id: &Uuid,
        status: RequestStatus,
        code: &str,
        error: &str,
        at: DateTime<Utc>,
    ) {
        if let Some(r) = self.requests.get_mut(id) {
            r.status = status;
            r.error_code = Some(code.into());
            r.error = Some(error.into());
            r.completed_at = Some(at);
        }
    }
}
