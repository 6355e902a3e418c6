//! An order's decisions: `decide(&state, command) -> events | DomainError`, and
//! `OrderState::evolve`, which folds an event into the state without judging it.
//!
//! Status transitions (API.md): `created → queued → processing → success | failed`,
//! `created → expired`, and `queued | processing → created` only when a payment attempt ends
//! before anything was signed (restart, queue timeout). A wallet message, once signed, has
//! exactly one outcome: fulfilled or failed, found on chain.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use events::{
    CheckoutIssued, Event, OrderCancelled, OrderCreated, OrderDeliveryConfirmed,
    OrderDeliveryUnconfirmed, OrderExpired, OrderFailed, OrderFulfilled, OrderMode, OrderPaid,
    OrderPaymentAbandoned, OrderProcessingStarted, OrderQueued, OrderTimedOut, OrderWebhookSet,
    PaymentSubmitted, Product,
};
use events::{JettonAmount, Nanoton, PaymentMethod};

use super::policy::{commission_for, Policy};
use super::DomainError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OrderStatus {
    Created,
    Queued,
    Processing,
    Success,
    Failed,
    Expired,
    Cancelled,
}

impl OrderStatus {
    /// Every status's name, for filters that take them.
    pub const NAMES: [&'static str; 7] = [
        OrderStatus::Created.as_str(),
        OrderStatus::Queued.as_str(),
        OrderStatus::Processing.as_str(),
        OrderStatus::Success.as_str(),
        OrderStatus::Failed.as_str(),
        OrderStatus::Expired.as_str(),
        OrderStatus::Cancelled.as_str(),
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Created => "created",
            OrderStatus::Queued => "queued",
            OrderStatus::Processing => "processing",
            OrderStatus::Success => "success",
            OrderStatus::Failed => "failed",
            OrderStatus::Expired => "expired",
            OrderStatus::Cancelled => "cancelled",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            OrderStatus::Success
                | OrderStatus::Failed
                | OrderStatus::Expired
                | OrderStatus::Cancelled
        )
    }
}

/// The payment attempt in progress (or the last one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentRequest {
    pub request_id: Uuid,
    pub wallet_address: String,
    pub wallet_friendly: String,
    pub wallet_version: String,
    pub queued_at: DateTime<Utc>,
    pub queue_deadline: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub submitted: Option<PaymentSubmitted>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OrderState {
    /// `None` until the order exists.
    pub created: Option<OrderCreated>,
    pub status: Option<OrderStatus>,
    pub request: Option<PaymentRequest>,
    pub fulfilled: Option<OrderFulfilled>,
    pub failed: Option<OrderFailed>,
    pub delivery_confirmed: bool,
    /// Fragment could not confirm the delivery: the order is on the operator's list.
    pub delivery_unconfirmed: bool,
    /// The TON Connect transaction issued for the client's wallet to sign, if this order is
    /// paid through a checkout.
    pub checkout: Option<CheckoutIssued>,
    /// Stream version: the number of events folded.
    pub version: u64,
}

/// The wallet a payment comes from, as derived from the client's seed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payer {
    pub wallet_address: String,
    pub wallet_friendly: String,
    pub wallet_version: String,
    pub account_index: Option<u32>,
}

/// What the payment checks see of the paying wallet: its balance on chain and its
/// commission debt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalletFunds {
    pub balance_nanoton: Nanoton,
    pub debt_nanoton: Nanoton,
    /// Its USDT, for a USDT order (`None` for a TON order).
    pub usdt: Option<JettonAmount>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum OrderCommand {
    Create {
        order_id: Uuid,
        product: Product,
        username: String,
        mode: OrderMode,
        cookie_fingerprint: Option<String>,
        price_nanoton: Nanoton,
        /// What it is paid in, and for USDT its price (`OrderCreated::price_usdt`).
        payment_method: PaymentMethod,
        price_usdt: Option<JettonAmount>,
        /// Where the client wants webhooks about the order (checked by the caller).
        webhook_url: Option<String>,
        now: DateTime<Utc>,
    },
    Pay {
        request_id: Uuid,
        payer: Payer,
        funds: WalletFunds,
        /// KYC orders are bought with the client's own session, so the payment must bring
        /// the cookies again (they were never stored).
        has_cookies: bool,
        now: DateTime<Utc>,
    },
    StartProcessing {
        request_id: Uuid,
        session: String,
        now: DateTime<Utc>,
    },
    SubmitPayment(Box<PaymentSubmitted>),
    /// A checkout's transaction was issued for the client's wallet to sign.
    IssueCheckout(Box<CheckoutIssued>),
    /// The client's wallet signed the checkout and the message passed the checks: the
    /// payment is recorded as submitted at once (the client holds the signed message and
    /// may have broadcast it already, so from here only the chain can end it).
    SubmitCheckout {
        request_id: Uuid,
        payer: Payer,
        funds: WalletFunds,
        submitted: Box<PaymentSubmitted>,
        has_cookies: bool,
        now: DateTime<Utc>,
    },
    Fulfil(Box<OrderFulfilled>),
    Fail {
        request_id: Uuid,
        error_code: String,
        error: String,
        funds_moved: bool,
        /// Fees the wallet paid for a message it processed without sending the payment.
        network_fee_nanoton: Nanoton,
        now: DateTime<Utc>,
    },
    /// The attempt ended before anything was signed; the order can be paid again.
    Abandon {
        request_id: Uuid,
        error_code: String,
        error: String,
        now: DateTime<Utc>,
    },
    TimeOut {
        request_id: Uuid,
        now: DateTime<Utc>,
    },
    Expire {
        now: DateTime<Utc>,
    },
    /// The client gives up an order it has not paid.
    Cancel {
        now: DateTime<Utc>,
    },
    ConfirmDelivery {
        request_id: Uuid,
        now: DateTime<Utc>,
    },
    DeliveryUnconfirmed {
        request_id: Uuid,
        reason: String,
        now: DateTime<Utc>,
    },
}

impl OrderState {
    pub fn order_id(&self) -> Option<Uuid> {
        self.created.as_ref().map(|c| c.order_id)
    }

    /// Folds one event. No rules here: events are facts that already happened.
    pub fn evolve(&mut self, event: &Event) {
        self.version += 1;
        match event {
            Event::OrderCreated(e) => {
                self.created = Some(e.clone());
                self.status = Some(OrderStatus::Created);
            }
            Event::OrderPaid(e) => {
                self.request = Some(PaymentRequest {
                    request_id: e.request_id,
                    wallet_address: e.wallet_address.clone(),
                    wallet_friendly: e.wallet_friendly.clone(),
                    wallet_version: e.wallet_version.clone(),
                    queued_at: e.paid_at,
                    queue_deadline: e.paid_at,
                    started_at: None,
                    submitted: None,
                });
                self.failed = None;
            }
            Event::OrderQueued(e) => {
                if let Some(r) = self.request.as_mut() {
                    r.queued_at = e.queued_at;
                    r.queue_deadline = e.queue_deadline;
                }
                self.status = Some(OrderStatus::Queued);
            }
            Event::OrderProcessingStarted(e) => {
                if let Some(r) = self.request.as_mut() {
                    r.started_at = Some(e.started_at);
                }
                self.status = Some(OrderStatus::Processing);
            }
            Event::PaymentSubmitted(e) => {
                if let Some(r) = self.request.as_mut() {
                    r.submitted = Some(e.clone());
                }
            }
            Event::OrderFulfilled(e) => {
                self.fulfilled = Some(e.clone());
                self.status = Some(OrderStatus::Success);
            }
            Event::OrderFailed(e) => {
                self.failed = Some(e.clone());
                self.status = Some(OrderStatus::Failed);
            }
            Event::OrderTimedOut(_) | Event::OrderPaymentAbandoned(_) => {
                self.status = Some(OrderStatus::Created);
            }
            Event::OrderExpired(_) => self.status = Some(OrderStatus::Expired),
            Event::OrderCancelled(_) => self.status = Some(OrderStatus::Cancelled),
            Event::CheckoutIssued(e) => self.checkout = Some(e.clone()),
            // Read by the webhook deriver, not by decisions.
            Event::OrderWebhookSet(_) => {}
            Event::OrderDeliveryConfirmed(_) => self.delivery_confirmed = true,
            Event::OrderDeliveryUnconfirmed(_) => self.delivery_unconfirmed = true,
            // Wallet and idempotency key events never reach an order's stream.
            Event::CommissionAccrued(_)
            | Event::CommissionCollected(_)
            | Event::CommissionCollectionFailed(_)
            | Event::DebtLimitReached(_)
            | Event::DebtSettled(_)
            | Event::IdempotencyKeyClaimed(_)
            | Event::IdempotentAnswerRecorded(_)
            | Event::IdempotencyKeyReleased(_) => {}
        }
    }

    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a Event>) -> OrderState {
        let mut state = OrderState::default();
        for e in events {
            state.evolve(e);
        }
        state
    }

    /// Whether a payment attempt is under way that may still end before anything is
    /// signed, leaving the order `created` again (a queue timeout, a restart).
    pub fn may_reopen(&self) -> bool {
        match self.status {
            Some(OrderStatus::Queued) => true,
            Some(OrderStatus::Processing) => {
                self.request.as_ref().is_some_and(|r| r.submitted.is_none())
            }
            _ => false,
        }
    }

    /// Whether the order was paid and nobody has said yet what became of its delivery: a
    /// check a restart cut short, to be resumed.
    pub fn awaits_delivery_verdict(&self) -> bool {
        self.status == Some(OrderStatus::Success)
            && !self.delivery_confirmed
            && !self.delivery_unconfirmed
    }

    /// The request `request_id` if it is the current one.
    fn current_request(&self, request_id: Uuid) -> Result<&PaymentRequest, DomainError> {
        match &self.request {
            Some(r) if r.request_id == request_id => Ok(r),
            _ => Err(DomainError::UnknownRequest(request_id)),
        }
    }
}

/// What a USDT payment is expected to carry in TON for the jetton transfer's gas when it is
/// accepted (Fragment's link names the exact amount, checked again before signing).
pub const USDT_TRANSFER_GAS: Nanoton = Nanoton::new(50_000_000);

/// Seconds the chain's clock may trail ours: a checkout's message is taken as dead this long
/// after its `valid_until` (orders expire later still).
pub const CHECKOUT_CLOCK_MARGIN: i64 = 30;

/// A payment accepted into the queue: `OrderPaid` then `OrderQueued`.
fn paid_and_queued(
    order_id: Uuid,
    request_id: Uuid,
    payer: Payer,
    funds: WalletFunds,
    now: DateTime<Utc>,
    policy: &Policy,
) -> [Event; 2] {
    [
        OrderPaid {
            order_id,
            request_id,
            wallet_address: payer.wallet_address,
            wallet_friendly: payer.wallet_friendly,
            wallet_version: payer.wallet_version,
            account_index: payer.account_index,
            balance_nanoton: funds.balance_nanoton,
            debt_nanoton: funds.debt_nanoton,
            paid_at: now,
        }
        .into(),
        OrderQueued {
            order_id,
            request_id,
            queued_at: now,
            queue_deadline: now + policy.queue_timeout,
        }
        .into(),
    ]
}

/// Decides what a command means for the order. An empty list means the command was already
/// carried out (a repeated payment by the same wallet, say) and nothing new happens.
pub fn decide(
    state: &OrderState,
    command: OrderCommand,
    policy: &Policy,
) -> Result<Vec<Event>, DomainError> {
    let Some(order) = &state.created else {
        return match command {
            OrderCommand::Create {
                order_id,
                product,
                username,
                mode,
                cookie_fingerprint,
                price_nanoton,
                payment_method,
                price_usdt,
                webhook_url,
                now,
            } => {
                let rate = policy.rate(mode);
                let commission = commission_for(price_nanoton, rate)
                    .ok_or(DomainError::Misconfigured("commission rate"))?;
                let total = price_nanoton
                    .checked_add(commission)
                    .ok_or(DomainError::AmountOverflow("order total"))?;
                let created = OrderCreated {
                    order_id,
                    product,
                    username,
                    mode,
                    cookie_fingerprint,
                    price_nanoton,
                    commission_rate: rate,
                    commission_nanoton: commission,
                    total_nanoton: total,
                    created_at: now,
                    expires_at: now + policy.order_ttl,
                    payment_method,
                    price_usdt,
                };
                let webhook = webhook_url.map(|url| OrderWebhookSet { order_id, url }.into());
                Ok(std::iter::once(created.into()).chain(webhook).collect())
            }
            _ => Err(DomainError::OrderNotFound),
        };
    };
    let status = state.status.unwrap_or(OrderStatus::Created);
    let order_id = order.order_id;
    let wrong_status = |action: &'static str| DomainError::WrongStatus { action, status };

    match command {
        OrderCommand::Create { .. } => Err(DomainError::OrderExists(order_id)),

        OrderCommand::Pay {
            request_id,
            payer,
            funds,
            has_cookies,
            now,
        } => {
            match status {
                OrderStatus::Created => {}
                OrderStatus::Expired => return Err(DomainError::OrderExpired),
                OrderStatus::Queued | OrderStatus::Processing | OrderStatus::Success => {
                    // Paying twice from the same wallet is the same payment.
                    return match &state.request {
                        Some(r) if r.wallet_address == payer.wallet_address => Ok(vec![]),
                        _ => Err(DomainError::PaidByAnotherWallet { status }),
                    };
                }
                OrderStatus::Failed | OrderStatus::Cancelled => return Err(wrong_status("paid")),
            }
            if now >= order.expires_at {
                return Err(DomainError::OrderExpired);
            }
            if order.mode == OrderMode::Kyc && !has_cookies {
                return Err(DomainError::KycCookiesRequired);
            }
            if funds.debt_nanoton > policy.debt_limit_nanoton {
                return Err(DomainError::DebtLimitExceeded {
                    debt_nanoton: funds.debt_nanoton,
                    limit_nanoton: policy.debt_limit_nanoton,
                });
            }
            // A USDT order needs its USDT, and TON only for the transfer's gas.
            let ton_sent = match order.payment_method {
                PaymentMethod::Ton => order.price_nanoton,
                PaymentMethod::UsdtTon => {
                    let price = order.price_usdt.unwrap_or_default();
                    let held = funds.usdt.unwrap_or_default();
                    if held < price {
                        return Err(DomainError::InsufficientJettonBalance {
                            balance: held,
                            needed: price,
                        });
                    }
                    USDT_TRANSFER_GAS
                }
            };
            let needed = policy
                .payment_needs(ton_sent, order.commission_nanoton, funds.debt_nanoton)?
                .total;
            if funds.balance_nanoton < needed {
                return Err(DomainError::InsufficientBalance {
                    balance_nanoton: funds.balance_nanoton,
                    needed_nanoton: needed,
                });
            }
            Ok(paid_and_queued(order_id, request_id, payer, funds, now, policy).to_vec())
        }

        OrderCommand::IssueCheckout(issued) => {
            if state.checkout.is_some() {
                return Err(DomainError::CheckoutExists);
            }
            match status {
                OrderStatus::Created if issued.issued_at < order.expires_at => {}
                OrderStatus::Created | OrderStatus::Expired => {
                    return Err(DomainError::OrderExpired)
                }
                _ => return Err(wrong_status("given a checkout")),
            }
            // The message must be dead before the order can expire: an order that expired
            // while its message could still be sent would leave a payment nobody follows.
            if i64::from(issued.valid_until) >= order.expires_at.timestamp() {
                return Err(DomainError::Misconfigured(
                    "a checkout must expire before its order",
                ));
            }
            Ok(vec![Event::CheckoutIssued(*issued)])
        }

        OrderCommand::SubmitCheckout {
            request_id,
            payer,
            funds,
            submitted,
            has_cookies,
            now,
        } => {
            let Some(checkout) = &state.checkout else {
                return Err(DomainError::NoCheckout);
            };
            match status {
                OrderStatus::Created => {}
                OrderStatus::Queued
                | OrderStatus::Processing
                | OrderStatus::Success
                | OrderStatus::Failed => {
                    // Submitting the same message again is the same payment.
                    return match state.request.as_ref().and_then(|r| r.submitted.as_ref()) {
                        Some(s) if s.normalized_hash == submitted.normalized_hash => Ok(vec![]),
                        _ => Err(DomainError::CheckoutSubmittedOtherwise),
                    };
                }
                OrderStatus::Expired => return Err(DomainError::OrderExpired),
                OrderStatus::Cancelled => return Err(wrong_status("paid")),
            }
            if now >= order.expires_at {
                return Err(DomainError::OrderExpired);
            }
            if order.mode == OrderMode::Kyc && !has_cookies {
                return Err(DomainError::KycCookiesRequired);
            }
            if payer.wallet_address != checkout.wallet_address
                || submitted.wallet_address != checkout.wallet_address
                || submitted.request_id != request_id
                || submitted.order_id != order_id
            {
                return Err(DomainError::Misconfigured(
                    "a checkout submission for another wallet or request",
                ));
            }
            let mut events =
                paid_and_queued(order_id, request_id, payer, funds, now, policy).to_vec();
            events.push(
                OrderProcessingStarted {
                    order_id,
                    request_id,
                    session: "checkout".to_string(),
                    started_at: now,
                }
                .into(),
            );
            events.push(Event::PaymentSubmitted(*submitted));
            Ok(events)
        }

        OrderCommand::StartProcessing {
            request_id,
            session,
            now,
        } => {
            state.current_request(request_id)?;
            match status {
                OrderStatus::Queued => Ok(vec![OrderProcessingStarted {
                    order_id,
                    request_id,
                    session,
                    started_at: now,
                }
                .into()]),
                OrderStatus::Processing => Ok(vec![]),
                _ => Err(wrong_status("started")),
            }
        }

        OrderCommand::SubmitPayment(submitted) => {
            let request = state.current_request(submitted.request_id)?;
            if status != OrderStatus::Processing {
                return Err(wrong_status("submitted"));
            }
            match &request.submitted {
                None => Ok(vec![Event::PaymentSubmitted(*submitted)]),
                // One signed message per request, ever: a second one could pay twice.
                Some(existing) if existing.message_hash == submitted.message_hash => Ok(vec![]),
                Some(_) => Err(DomainError::AlreadySubmitted),
            }
        }

        OrderCommand::Fulfil(fulfilled) => {
            let request = state.current_request(fulfilled.request_id)?;
            match status {
                OrderStatus::Success => Ok(vec![]),
                OrderStatus::Processing if request.submitted.is_some() => {
                    Ok(vec![Event::OrderFulfilled(*fulfilled)])
                }
                OrderStatus::Processing => Err(DomainError::NotSubmitted),
                _ => Err(wrong_status("fulfilled")),
            }
        }

        OrderCommand::Fail {
            request_id,
            error_code,
            error,
            funds_moved,
            network_fee_nanoton,
            now,
        } => {
            state.current_request(request_id)?;
            match status {
                OrderStatus::Failed => Ok(vec![]),
                OrderStatus::Queued | OrderStatus::Processing => Ok(vec![OrderFailed {
                    order_id,
                    request_id,
                    error_code,
                    error,
                    funds_moved,
                    network_fee_nanoton,
                    failed_at: now,
                }
                .into()]),
                _ => Err(wrong_status("failed")),
            }
        }

        OrderCommand::Abandon {
            request_id,
            error_code,
            error,
            now,
        } => {
            let request = state.current_request(request_id)?;
            match status {
                OrderStatus::Queued | OrderStatus::Processing => {
                    if request.submitted.is_some() {
                        // Signed means it may be on chain: only the chain can end it.
                        return Err(DomainError::AlreadySubmitted);
                    }
                    Ok(vec![OrderPaymentAbandoned {
                        order_id,
                        request_id,
                        error_code,
                        error,
                        abandoned_at: now,
                    }
                    .into()])
                }
                _ => Ok(vec![]),
            }
        }

        OrderCommand::TimeOut { request_id, now } => {
            let request = state.current_request(request_id)?;
            if status != OrderStatus::Queued {
                // Started in time (or already ended): the timer is stale.
                return Ok(vec![]);
            }
            if now < request.queue_deadline {
                return Err(DomainError::TooEarly);
            }
            let waited = (now - request.queued_at).num_seconds().max(0) as u64;
            Ok(vec![OrderTimedOut {
                order_id,
                request_id,
                waited_seconds: waited,
                timed_out_at: now,
            }
            .into()])
        }

        OrderCommand::Expire { now } => match status {
            OrderStatus::Created if now >= order.expires_at => Ok(vec![OrderExpired {
                order_id,
                expired_at: now,
            }
            .into()]),
            OrderStatus::Created => Err(DomainError::TooEarly),
            // Paid in time, or already ended: nothing expires.
            _ => Ok(vec![]),
        },

        OrderCommand::Cancel { now } => match status {
            // Past its time it is expired, whether or not the expiry is recorded yet.
            OrderStatus::Created if now >= order.expires_at => Err(DomainError::NotCancellable {
                status: OrderStatus::Expired,
            }),
            OrderStatus::Created => match &state.checkout {
                // Until the chain's clock has surely passed the message's validity too.
                Some(c) if now.timestamp() <= i64::from(c.valid_until) + CHECKOUT_CLOCK_MARGIN => {
                    Err(DomainError::CheckoutOutstanding {
                        valid_until: c.valid_until,
                    })
                }
                _ => Ok(vec![OrderCancelled {
                    order_id,
                    cancelled_at: now,
                }
                .into()]),
            },
            // Cancelling again is the cancellation already made.
            OrderStatus::Cancelled => Ok(vec![]),
            other => Err(DomainError::NotCancellable { status: other }),
        },

        OrderCommand::ConfirmDelivery { request_id, now } => {
            state.current_request(request_id)?;
            match status {
                OrderStatus::Success if state.delivery_confirmed => Ok(vec![]),
                OrderStatus::Success => Ok(vec![OrderDeliveryConfirmed {
                    order_id,
                    request_id,
                    confirmed_at: now,
                }
                .into()]),
                _ => Err(wrong_status("confirmed as delivered")),
            }
        }

        OrderCommand::DeliveryUnconfirmed {
            request_id,
            reason,
            now,
        } => {
            state.current_request(request_id)?;
            match status {
                OrderStatus::Success if state.delivery_confirmed || state.delivery_unconfirmed => {
                    Ok(vec![])
                }
                OrderStatus::Success => Ok(vec![OrderDeliveryUnconfirmed {
                    order_id,
                    request_id,
                    reason,
                    at: now,
                }
                .into()]),
                _ => Err(wrong_status("flagged as undelivered")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap()
    }

    const WALLET: &str = "0:1111111111111111111111111111111111111111111111111111111111111111";
    const OTHER: &str = "0:2222222222222222222222222222222222222222222222222222222222222222";

    fn payer(addr: &str) -> Payer {
        Payer {
            wallet_address: addr.into(),
            wallet_friendly: "UQ…".into(),
            wallet_version: "v4r2".into(),
            account_index: None,
        }
    }

    /// given `events`, when `command`, then the result.
    fn given(events: &[Event], command: OrderCommand) -> Result<Vec<Event>, DomainError> {
        decide(
            &OrderState::from_events(events),
            command,
            &Policy::default(),
        )
    }

    fn created(mode: OrderMode, price: u64) -> Event {
        let cmd = OrderCommand::Create {
            order_id: Uuid::nil(),
            product: Product::Stars { amount: 100 },
            username: "alice".into(),
            mode,
            cookie_fingerprint: None,
            price_nanoton: Nanoton::new(price),
            payment_method: PaymentMethod::Ton,
            price_usdt: None,
            webhook_url: None,
            now: t0(),
        };
        given(&[], cmd).unwrap().remove(0)
    }

    fn pay(addr: &str, balance: u64, debt: u64, at: DateTime<Utc>) -> OrderCommand {
        OrderCommand::Pay {
            request_id: Uuid::from_u128(7),
            payer: payer(addr),
            funds: WalletFunds {
                balance_nanoton: Nanoton::new(balance),
                debt_nanoton: Nanoton::new(debt),
                usdt: None,
            },
            has_cookies: false,
            now: at,
        }
    }

    /// An order created, paid and queued at t0 + 1 min from WALLET.
    fn queued() -> Vec<Event> {
        let mut events = vec![created(OrderMode::NoKyc, 1_000_000_000)];
        let paid = given(
            &events,
            pay(WALLET, 5_000_000_000, 0, t0() + Duration::minutes(1)),
        );
        events.extend(paid.unwrap());
        events
    }

    fn processing() -> Vec<Event> {
        let mut events = queued();
        let start = OrderCommand::StartProcessing {
            request_id: Uuid::from_u128(7),
            session: "owner:0".into(),
            now: t0() + Duration::minutes(2),
        };
        events.extend(given(&events, start).unwrap());
        events
    }

    fn submitted_payment(hash: &str) -> PaymentSubmitted {
        PaymentSubmitted {
            order_id: Uuid::nil(),
            request_id: Uuid::from_u128(7),
            wallet_address: WALLET.into(),
            wallet_version: "v4r2".into(),
            seqno: 3,
            valid_until: 1,
            message_hash: hash.into(),
            normalized_hash: hash.into(),
            body_hash: hash.into(),
            boc: String::new(),
            messages: vec![],
            fragment_request_id: "r".into(),
            purchase_nanoton: Nanoton::new(1_000_000_000),
            collection_nanoton: Nanoton::new(0),
            submitted_at: t0() + Duration::minutes(2),
            wallet_last_lt: None,
            confirmation: None,
            checkout: None,
            usdt: None,
        }
    }

    fn submitted() -> Vec<Event> {
        let mut events = processing();
        let cmd = OrderCommand::SubmitPayment(Box::new(submitted_payment("aa")));
        events.extend(given(&events, cmd).unwrap());
        events
    }

    fn status(events: &[Event]) -> OrderStatus {
        OrderState::from_events(events).status.unwrap()
    }

    #[test]
    fn creation_prices_the_commission_by_mode() {
        let Event::OrderCreated(no_kyc) = created(OrderMode::NoKyc, 761_234_567) else {
            panic!()
        };
        assert_eq!(no_kyc.commission_nanoton, Nanoton::new(7_612_346));
        assert_eq!(no_kyc.total_nanoton, Nanoton::new(761_234_567 + 7_612_346));
        assert_eq!(no_kyc.expires_at, t0() + Duration::minutes(10));
        let Event::OrderCreated(kyc) = created(OrderMode::Kyc, 761_234_567) else {
            panic!()
        };
        assert_eq!(
            (kyc.commission_nanoton, kyc.total_nanoton),
            (Nanoton::ZERO, Nanoton::new(761_234_567))
        );
        let again = given(
            &[created(OrderMode::Kyc, 1)],
            OrderCommand::Expire { now: t0() },
        );
        assert_eq!(again, Err(DomainError::TooEarly));
    }

    #[test]
    fn commands_on_a_missing_order_are_not_found() {
        assert_eq!(
            given(&[], pay(WALLET, 1, 0, t0())),
            Err(DomainError::OrderNotFound)
        );
        assert_eq!(
            given(&[], OrderCommand::Expire { now: t0() }),
            Err(DomainError::OrderNotFound)
        );
    }

    #[test]
    fn only_an_unpaid_order_in_time_is_cancelled_and_then_cannot_be_paid() {
        let cancel = |minutes| OrderCommand::Cancel {
            now: t0() + Duration::minutes(minutes),
        };
        let mut events = vec![created(OrderMode::NoKyc, 1_000_000_000)];
        let cancelled = given(&events, cancel(3)).unwrap();
        assert!(matches!(cancelled[..], [Event::OrderCancelled(_)]));
        events.extend(cancelled);
        assert_eq!(status(&events), OrderStatus::Cancelled);
        assert!(OrderStatus::Cancelled.is_terminal());
        assert_eq!(given(&events, cancel(4)), Ok(vec![]), "again: the same");
        assert!(matches!(
            given(&events, pay(WALLET, 5_000_000_000, 0, t0())),
            Err(DomainError::WrongStatus {
                status: OrderStatus::Cancelled,
                ..
            })
        ));
        assert_eq!(
            given(
                &events,
                OrderCommand::Expire {
                    now: t0() + Duration::minutes(11)
                }
            ),
            Ok(vec![]),
            "a cancelled order does not expire"
        );
        // Past its time an unpaid order is expired, recorded or not.
        let late = given(&[created(OrderMode::NoKyc, 1)], cancel(10));
        assert_eq!(
            late,
            Err(DomainError::NotCancellable {
                status: OrderStatus::Expired
            })
        );
        for paid in [queued(), processing(), submitted()] {
            let refused = given(&paid, cancel(3)).unwrap_err();
            assert!(matches!(refused, DomainError::NotCancellable { .. }));
            assert_eq!(refused.api_code(), "ORDER_NOT_CANCELLABLE");
            assert_eq!(refused.http_status(), 400);
        }
        assert_eq!(given(&[], cancel(0)), Err(DomainError::OrderNotFound));
    }

    #[test]
    fn paying_queues_the_order_with_a_deadline() {
        let events = queued();
        assert_eq!(events.len(), 3);
        let Event::OrderQueued(q) = &events[2] else {
            panic!()
        };
        assert_eq!(q.queue_deadline, t0() + Duration::minutes(6));
        assert_eq!(status(&events), OrderStatus::Queued);
    }

    #[test]
    fn paying_twice_from_the_same_wallet_changes_nothing() {
        for events in [queued(), processing(), submitted()] {
            let again = given(&events, pay(WALLET, 0, 0, t0() + Duration::minutes(3)));
            assert_eq!(again, Ok(vec![]));
            let other = given(&events, pay(OTHER, 9_000_000_000, 0, t0()));
            assert!(matches!(
                other,
                Err(DomainError::PaidByAnotherWallet { .. })
            ));
        }
    }

    #[test]
    fn a_late_payment_is_order_expired() {
        let events = [created(OrderMode::NoKyc, 1_000_000_000)];
        let late = pay(WALLET, 5_000_000_000, 0, t0() + Duration::minutes(10));
        assert_eq!(given(&events, late), Err(DomainError::OrderExpired));
        let mut expired = events.to_vec();
        expired.extend(
            given(
                &expired,
                OrderCommand::Expire {
                    now: t0() + Duration::minutes(10),
                },
            )
            .unwrap(),
        );
        assert_eq!(status(&expired), OrderStatus::Expired);
        let after = pay(WALLET, 5_000_000_000, 0, t0() + Duration::minutes(11));
        assert_eq!(
            given(&expired, after.clone()),
            Err(DomainError::OrderExpired)
        );
        assert_eq!(err_code(given(&expired, after)), "ORDER_EXPIRED");
    }

    fn err_code(r: Result<Vec<Event>, DomainError>) -> &'static str {
        r.unwrap_err().api_code()
    }

    #[test]
    fn the_balance_must_cover_price_collection_and_fees() {
        let events = [created(OrderMode::NoKyc, 1_000_000_000)];
        let fees = Policy::default().network_fee_reserve_nanoton.as_u64();
        // No debt due: price + fee reserve.
        let exact = 1_000_000_000 + fees;
        assert!(given(&events, pay(WALLET, exact, 0, t0())).is_ok());
        assert_eq!(
            given(&events, pay(WALLET, exact - 1, 0, t0())),
            Err(DomainError::InsufficientBalance {
                balance_nanoton: Nanoton::new(exact - 1),
                needed_nanoton: Nanoton::new(exact)
            })
        );
        // Debt 0.995 + this order's commission 0.01 reaches the 1 TON threshold: the
        // transfer collects 1.005 TON, so the wallet needs that too.
        let needed = 1_000_000_000 + 1_005_000_000 + fees;
        let short = given(&events, pay(WALLET, needed - 1, 995_000_000, t0()));
        assert_eq!(err_code(short), "INSUFFICIENT_BALANCE");
        assert!(given(&events, pay(WALLET, needed, 995_000_000, t0())).is_ok());
    }

    #[test]
    fn a_wallet_over_the_debt_limit_cannot_pay() {
        let events = [created(OrderMode::NoKyc, 1_000_000_000)];
        let limit = Policy::default().debt_limit_nanoton.as_u64();
        let rich = 100_000_000_000;
        assert!(given(&events, pay(WALLET, rich, limit, t0())).is_ok());
        let over = given(&events, pay(WALLET, rich, limit + 1, t0()));
        assert_eq!(err_code(over), "DEBT_LIMIT_EXCEEDED");
    }

    #[test]
    fn kyc_orders_need_the_cookies_again_at_payment() {
        let events = [created(OrderMode::Kyc, 1_000_000_000)];
        let mut cmd = pay(WALLET, 5_000_000_000, 0, t0());
        assert_eq!(
            given(&events, cmd.clone()),
            Err(DomainError::KycCookiesRequired)
        );
        if let OrderCommand::Pay { has_cookies, .. } = &mut cmd {
            *has_cookies = true;
        }
        assert!(given(&events, cmd).is_ok());
    }

    #[test]
    fn a_queued_request_times_out_only_after_its_deadline_and_reopens_the_order() {
        let events = queued();
        let early = OrderCommand::TimeOut {
            request_id: Uuid::from_u128(7),
            now: t0() + Duration::minutes(5),
        };
        assert_eq!(given(&events, early), Err(DomainError::TooEarly));
        let due = OrderCommand::TimeOut {
            request_id: Uuid::from_u128(7),
            now: t0() + Duration::minutes(6),
        };
        let mut after = events.clone();
        let out = given(&events, due.clone()).unwrap();
        let Event::OrderTimedOut(t) = &out[0] else {
            panic!()
        };
        assert_eq!(t.waited_seconds, 300);
        after.extend(out);
        assert_eq!(status(&after), OrderStatus::Created);
        // A processing request no longer times out.
        assert_eq!(given(&processing(), due), Ok(vec![]));
        // The reopened order can be paid again (new request) until it expires.
        let again = pay(WALLET, 5_000_000_000, 0, t0() + Duration::minutes(7));
        assert_eq!(given(&after, again).unwrap().len(), 2);
    }

    #[test]
    fn an_attempt_abandoned_before_signing_reopens_the_order_but_a_signed_one_cannot_be() {
        for events in [queued(), processing()] {
            let abandon = OrderCommand::Abandon {
                request_id: Uuid::from_u128(7),
                error_code: "SERVICE_UNAVAILABLE".into(),
                error: "restart".into(),
                now: t0() + Duration::minutes(3),
            };
            let mut after = events.clone();
            after.extend(given(&events, abandon.clone()).unwrap());
            assert_eq!(status(&after), OrderStatus::Created);
            assert_eq!(
                given(&submitted(), abandon),
                Err(DomainError::AlreadySubmitted)
            );
        }
    }

    #[test]
    fn one_signed_message_per_request() {
        let events = submitted();
        let same = OrderCommand::SubmitPayment(Box::new(submitted_payment("aa")));
        assert_eq!(given(&events, same), Ok(vec![]));
        let other = OrderCommand::SubmitPayment(Box::new(submitted_payment("bb")));
        assert_eq!(given(&events, other), Err(DomainError::AlreadySubmitted));
        // Not before processing started.
        let early = OrderCommand::SubmitPayment(Box::new(submitted_payment("aa")));
        assert!(matches!(
            given(&queued(), early),
            Err(DomainError::WrongStatus { .. })
        ));
    }

    fn fulfilled() -> OrderFulfilled {
        OrderFulfilled {
            order_id: Uuid::nil(),
            request_id: Uuid::from_u128(7),
            tx_hash: "cc".into(),
            tx_lt: 1,
            cost_nanoton: Nanoton::new(1_000_000_000),
            commission_nanoton: Nanoton::new(10_000_000),
            collected_nanoton: Nanoton::new(0),
            debt_after_nanoton: Nanoton::new(10_000_000),
            network_fee_nanoton: Nanoton::new(1),
            completed_at: t0() + Duration::minutes(3),
            cost_usdt: None,
        }
    }

    #[test]
    fn only_a_submitted_payment_is_fulfilled_and_only_once() {
        let fulfil = || OrderCommand::Fulfil(Box::new(fulfilled()));
        assert_eq!(
            given(&processing(), fulfil()),
            Err(DomainError::NotSubmitted)
        );
        let mut events = submitted();
        events.extend(given(&events, fulfil()).unwrap());
        assert_eq!(status(&events), OrderStatus::Success);
        assert_eq!(given(&events, fulfil()), Ok(vec![]));
        // Success is final: no failure, no expiry, no abandonment after it.
        let fail = OrderCommand::Fail {
            request_id: Uuid::from_u128(7),
            error_code: "X".into(),
            error: "x".into(),
            funds_moved: false,
            network_fee_nanoton: Nanoton::ZERO,
            now: t0(),
        };
        assert!(matches!(
            given(&events, fail),
            Err(DomainError::WrongStatus { .. })
        ));
        let expire = OrderCommand::Expire {
            now: t0() + Duration::hours(1),
        };
        assert_eq!(given(&events, expire), Ok(vec![]));
    }

    #[test]
    fn a_failed_order_is_final_and_says_so_when_paid_again() {
        let mut events = submitted();
        let fail = OrderCommand::Fail {
            request_id: Uuid::from_u128(7),
            error_code: "FRAGMENT_ERROR".into(),
            error: "no".into(),
            funds_moved: false,
            network_fee_nanoton: Nanoton::ZERO,
            now: t0() + Duration::minutes(3),
        };
        events.extend(given(&events, fail.clone()).unwrap());
        assert_eq!(status(&events), OrderStatus::Failed);
        assert_eq!(given(&events, fail), Ok(vec![]));
        let again = given(&events, pay(OTHER, 9_000_000_000, 0, t0()));
        let err = again.unwrap_err();
        assert_eq!(err.api_code(), "VALIDATION_ERROR");
        assert!(err.to_string().contains("failed"), "{err}");
    }

    #[test]
    fn only_an_attempt_with_nothing_signed_may_reopen_the_order() {
        let state = |events: &[Event]| OrderState::from_events(events);
        assert!(!state(&[created(OrderMode::NoKyc, 1)]).may_reopen());
        assert!(state(&queued()).may_reopen());
        assert!(state(&processing()).may_reopen());
        assert!(!state(&submitted()).may_reopen());
        // Expiring a queued order is a no-op; if its queue time then runs out, the order is
        // `created` again, past its time, and the next Expire ends it.
        let mut events = queued();
        let late = t0() + Duration::minutes(11);
        assert_eq!(
            given(&events, OrderCommand::Expire { now: late }),
            Ok(vec![])
        );
        let timeout = OrderCommand::TimeOut {
            request_id: Uuid::from_u128(7),
            now: late,
        };
        events.extend(given(&events, timeout).unwrap());
        assert!(!state(&events).may_reopen());
        let expired = given(&events, OrderCommand::Expire { now: late }).unwrap();
        assert!(matches!(expired[..], [Event::OrderExpired(_)]));
    }

    #[test]
    fn commands_for_an_old_request_are_refused() {
        let stale = OrderCommand::StartProcessing {
            request_id: Uuid::from_u128(8),
            session: "client".into(),
            now: t0(),
        };
        let err = given(&queued(), stale).unwrap_err();
        assert_eq!(err.api_code(), "REQUEST_NOT_FOUND");
    }

    #[test]
    fn delivery_is_confirmed_once_and_only_for_a_success() {
        let confirm = || OrderCommand::ConfirmDelivery {
            request_id: Uuid::from_u128(7),
            now: t0(),
        };
        assert!(given(&submitted(), confirm()).is_err());
        let mut events = submitted();
        events.extend(given(&events, OrderCommand::Fulfil(Box::new(fulfilled()))).unwrap());
        events.extend(given(&events, confirm()).unwrap());
        assert!(OrderState::from_events(&events).delivery_confirmed);
        assert_eq!(given(&events, confirm()), Ok(vec![]));
    }

    fn checkout_issued(valid_until: DateTime<Utc>) -> CheckoutIssued {
        CheckoutIssued {
            order_id: Uuid::nil(),
            wallet_address: WALLET.into(),
            wallet_friendly: "UQ…".into(),
            wallet_version: "v4r2".into(),
            wallet_public_key: "11".repeat(32),
            wallet_id: 698_983_191,
            valid_until: valid_until.timestamp() as u32,
            messages: vec![],
            fragment_request_id: "r".into(),
            purchase_nanoton: Nanoton::new(1_000_000_000),
            collection_nanoton: Nanoton::ZERO,
            wallet_last_lt: None,
            confirmation: events::DeliveryConfirmation {
                wallet_public_key: "11".repeat(32),
                confirm_method: "confirmReq".into(),
                confirm_params: Default::default(),
                session_role: "owner".into(),
                session_id: "00".into(),
                wallet_id: None,
            },
            issued_at: t0(),
        }
    }

    fn submit_checkout(hash: &str, has_cookies: bool, at: DateTime<Utc>) -> OrderCommand {
        OrderCommand::SubmitCheckout {
            request_id: Uuid::from_u128(7),
            payer: payer(WALLET),
            funds: WalletFunds {
                balance_nanoton: Nanoton::ZERO,
                debt_nanoton: Nanoton::ZERO,
                usdt: None,
            },
            submitted: Box::new(submitted_payment(hash)),
            has_cookies,
            now: at,
        }
    }

    #[test]
    fn a_checkout_is_issued_once_and_must_die_before_its_order() {
        let mut events = vec![created(OrderMode::NoKyc, 1_000_000_000)];
        let issue = |minutes| {
            OrderCommand::IssueCheckout(Box::new(checkout_issued(
                t0() + Duration::minutes(minutes),
            )))
        };
        // The order expires at t0 + 10 min: a message valid that long would outlive it.
        assert!(matches!(
            given(&events, issue(10)),
            Err(DomainError::Misconfigured(_))
        ));
        events.extend(given(&events, issue(5)).unwrap());
        assert!(OrderState::from_events(&events).checkout.is_some());
        assert_eq!(given(&events, issue(5)), Err(DomainError::CheckoutExists));
        // A plain order cannot be submitted to as a checkout.
        assert_eq!(
            given(
                &[created(OrderMode::NoKyc, 1)],
                submit_checkout("aa", false, t0())
            ),
            Err(DomainError::NoCheckout)
        );
    }

    #[test]
    fn a_submitted_checkout_is_recorded_as_submitted_at_once_and_only_the_chain_ends_it() {
        let mut events = vec![created(OrderMode::NoKyc, 1_000_000_000)];
        let issued =
            OrderCommand::IssueCheckout(Box::new(checkout_issued(t0() + Duration::minutes(5))));
        events.extend(given(&events, issued).unwrap());
        // Cancelling while the message can still be signed and sent is refused.
        let cancel = |m| OrderCommand::Cancel {
            now: t0() + Duration::minutes(m),
        };
        let refused = given(&events, cancel(1)).unwrap_err();
        assert_eq!(refused.api_code(), "ORDER_NOT_CANCELLABLE");
        assert!(matches!(
            given(&events, cancel(6)).unwrap()[..],
            [Event::OrderCancelled(_)]
        ));

        let recorded = given(&events, submit_checkout("aa", false, t0())).unwrap();
        let kinds: Vec<_> = recorded.iter().map(Event::event_type).collect();
        assert_eq!(
            kinds,
            [
                "OrderPaid",
                "OrderQueued",
                "OrderProcessingStarted",
                "PaymentSubmitted"
            ]
        );
        events.extend(recorded);
        let state = OrderState::from_events(&events);
        assert_eq!(state.status, Some(OrderStatus::Processing));
        assert!(!state.may_reopen(), "a signed message only the chain ends");
        assert_eq!(
            given(&events, submit_checkout("aa", false, t0())),
            Ok(vec![])
        );
        assert_eq!(
            given(&events, submit_checkout("bb", false, t0())),
            Err(DomainError::CheckoutSubmittedOtherwise)
        );
        let abandon = OrderCommand::Abandon {
            request_id: Uuid::from_u128(7),
            error_code: "SERVICE_UNAVAILABLE".into(),
            error: "restart".into(),
            now: t0(),
        };
        assert_eq!(given(&events, abandon), Err(DomainError::AlreadySubmitted));
    }

    #[test]
    fn a_kyc_checkout_needs_its_cookies_again_and_an_expired_order_takes_none() {
        let mut events = vec![created(OrderMode::Kyc, 1_000_000_000)];
        let issued =
            OrderCommand::IssueCheckout(Box::new(checkout_issued(t0() + Duration::minutes(5))));
        events.extend(given(&events, issued).unwrap());
        assert_eq!(
            given(&events, submit_checkout("aa", false, t0())),
            Err(DomainError::KycCookiesRequired)
        );
        assert!(given(&events, submit_checkout("aa", true, t0())).is_ok());
        assert_eq!(
            given(
                &events,
                submit_checkout("aa", true, t0() + Duration::minutes(10))
            ),
            Err(DomainError::OrderExpired)
        );
    }
}
