//! The JSON shapes of API.md, built from the read models. Money leaves here as decimal TON
//! strings (`"0.761234567"`); rates as JSON numbers; times as RFC 3339 UTC.

use chrono::{DateTime, SecondsFormat, Utc};
use events::{OrderMode, PaymentMethod, Product};
use projections::{HistoryItem, OrderView, QueueStats, RequestView, WalletCommission};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::ton::Nanoton;

pub fn ton(amount: Nanoton) -> String {
    amount.to_ton_string()
}

/// USDT units as a decimal string of USDT (`"0.75"`).
pub fn usdt(amount: events::JettonAmount) -> String {
    amount.to_decimal_string(crate::fragment::client::USDT_DECIMALS)
}

pub fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn opt_time(t: Option<DateTime<Utc>>) -> Value {
    t.map_or(Value::Null, |t| Value::String(time(t)))
}

/// A rate as a JSON number (`0.01`, `0.0`), from its exact decimal text; always with a
/// fraction, so that clients reading floats get floats.
pub fn rate(r: Decimal) -> Value {
    let r = r.normalize();
    let text = if r.scale() == 0 {
        format!("{r}.0")
    } else {
        r.to_string()
    };
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// A rate in percent (`1.0` for 0.01).
pub fn percent(r: Decimal) -> Value {
    let p = (r * Decimal::ONE_HUNDRED).normalize();
    let text = if p.scale() == 0 {
        format!("{p}.0")
    } else {
        p.to_string()
    };
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

fn mode(m: OrderMode) -> &'static str {
    m.as_str()
}

fn product_fields(out: &mut Map<String, Value>, product: &Product) {
    out.insert("type".into(), json!(product.kind()));
    match product {
        Product::Stars { amount } => {
            out.insert("amount".into(), json!(amount));
        }
        Product::Premium { months } => {
            out.insert("months".into(), json!(months));
        }
    }
}

// The order and the queue request are what clients poll, so they are serialized straight
// from the view, without building a `serde_json::Value` tree first (a map of twenty keys and
// as many strings per answer, which was most of the cost of a poll). Their fields are in
// alphabetical order, as a `Value` map writes its keys, so the bytes are what they were.

/// `"@" + username`, written without allocating.
struct At<'a>(&'a str);

impl Serialize for At<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("@{}", self.0))
    }
}

/// An amount as decimal TON text.
struct Ton(Nanoton);

impl Serialize for Ton {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_ton_string())
    }
}

/// A time as RFC 3339 UTC with milliseconds.
struct Time(DateTime<Utc>);

impl Serialize for Time {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&time(self.0))
    }
}

/// The order (API.md, "The order").
#[derive(Serialize)]
pub struct OrderJson<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    amount: Option<u32>,
    commission_rate: Value,
    commission_ton: Ton,
    completed_at: Option<Time>,
    created_at: Time,
    delivery_confirmed: Option<bool>,
    error: Option<&'a str>,
    error_code: Option<&'a str>,
    expires_at: Time,
    mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    months: Option<u8>,
    order_id: Uuid,
    /// Only for a USDT order (a TON order's answer stays as it always was).
    #[serde(skip_serializing_if = "Option::is_none")]
    payment_method: Option<&'static str>,
    price_ton: Ton,
    #[serde(skip_serializing_if = "Option::is_none")]
    price_usdt_ton: Option<String>,
    request_id: Option<Uuid>,
    status: &'a str,
    total_ton: Ton,
    tx_hash: Option<&'a str>,
    #[serde(rename = "type")]
    kind: &'static str,
    username: At<'a>,
    wallet_address: Option<&'a str>,
}

pub fn order(o: &OrderView) -> OrderJson<'_> {
    let (amount, months) = amounts(&o.product);
    OrderJson {
        amount,
        commission_rate: rate(o.commission_rate),
        commission_ton: Ton(o.commission_nanoton),
        completed_at: o.completed_at.map(Time),
        created_at: Time(o.created_at),
        delivery_confirmed: o.delivery_confirmed,
        error: o.error.as_deref(),
        error_code: o.error_code.as_deref(),
        expires_at: Time(o.expires_at),
        mode: mode(o.mode),
        months,
        order_id: o.order_id,
        payment_method: (o.payment_method != PaymentMethod::Ton).then(|| o.payment_method.as_str()),
        price_ton: Ton(o.price_nanoton),
        price_usdt_ton: o.price_usdt.map(usdt),
        request_id: o.request_id,
        status: &o.status,
        total_ton: Ton(o.total_nanoton),
        tx_hash: o.tx_hash.as_deref(),
        kind: o.product.kind(),
        username: At(&o.username),
        wallet_address: o.wallet_address.as_deref(),
    }
}

fn amounts(product: &Product) -> (Option<u32>, Option<u8>) {
    match *product {
        Product::Stars { amount } => (Some(amount), None),
        Product::Premium { months } => (None, Some(months)),
    }
}

/// The queue request (API.md, "The queue request").
#[derive(Serialize)]
pub struct RequestJson<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    amount: Option<u32>,
    completed_at: Option<Time>,
    created_at: Time,
    error: Option<&'a str>,
    error_code: Option<&'a str>,
    estimated_wait_seconds: u64,
    id: Uuid,
    mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    months: Option<u8>,
    order_id: Uuid,
    position: Option<u64>,
    queue_deadline: Time,
    request_id: Uuid,
    result: Option<ResultJson<'a>>,
    started_at: Option<Time>,
    status: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    username: At<'a>,
    wallet_address: &'a str,
    wallet_address_raw: &'a str,
    wallet_version: &'a str,
}

/// A completed request's result.
#[derive(Serialize)]
pub struct ResultJson<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    amount: Option<u32>,
    collected_commission_ton: Ton,
    commission_balance_ton: Ton,
    commission_rate: Value,
    commission_ton: Ton,
    cost_ton: Ton,
    /// What Fragment was paid in USDT, for a USDT purchase (the SDK's `cost_usdt_ton`).
    #[serde(skip_serializing_if = "Option::is_none")]
    cost_usdt_ton: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_months: Option<u8>,
    mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    months: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payment_method: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stars_amount: Option<u32>,
    success: bool,
    timestamp: Time,
    transaction_hash: &'a str,
    transaction_id: &'a str,
    username: At<'a>,
}

pub fn request(
    r: &RequestView,
    position: Option<u64>,
    estimated_wait_seconds: u64,
) -> RequestJson<'_> {
    let (amount, months) = amounts(&r.product);
    RequestJson {
        amount,
        completed_at: r.completed_at.map(Time),
        created_at: Time(r.created_at),
        error: r.error.as_deref(),
        error_code: r.error_code.as_deref(),
        estimated_wait_seconds,
        id: r.request_id,
        mode: mode(r.mode),
        months,
        order_id: r.order_id,
        position,
        queue_deadline: Time(r.queue_deadline),
        request_id: r.request_id,
        result: r.result.as_ref().map(|res| ResultJson {
            amount,
            collected_commission_ton: Ton(res.collected_nanoton),
            commission_balance_ton: Ton(res.commission_balance_nanoton),
            commission_rate: rate(r.commission_rate),
            commission_ton: Ton(res.commission_nanoton),
            cost_ton: Ton(res.cost_nanoton),
            cost_usdt_ton: res.cost_usdt.map(usdt),
            duration_months: months,
            mode: mode(r.mode),
            months,
            payment_method: res.cost_usdt.map(|_| PaymentMethod::UsdtTon.as_str()),
            stars_amount: amount,
            success: true,
            timestamp: Time(res.completed_at),
            transaction_hash: &res.transaction_hash,
            transaction_id: &res.transaction_hash,
            username: At(&r.username),
        }),
        started_at: r.started_at.map(Time),
        status: r.status.as_str(),
        kind: r.product.kind(),
        username: At(&r.username),
        wallet_address: &r.wallet_friendly,
        wallet_address_raw: &r.wallet_address,
        wallet_version: &r.wallet_version,
    }
}

/// A view as a `Value`, for answers that put it in a list or add to it.
pub fn value(view: impl Serialize) -> Value {
    serde_json::to_value(view).unwrap_or(Value::Null)
}

/// A wallet's commission account: the fields the client's balance and the admin's lists
/// share. `friendly` is the non-bounceable form of `raw`.
pub fn commission_account(
    friendly: Option<String>,
    raw: &str,
    c: &WalletCommission,
    debt_limit_nanoton: Nanoton,
) -> Map<String, Value> {
    let json = json!({
        "wallet_address": friendly,
        "wallet_address_raw": raw,
        "debt_ton": ton(c.debt_nanoton),
        "accrued_total_ton": ton(c.accrued_total_nanoton),
        "collected_total_ton": ton(c.collected_total_nanoton),
        "settled_total_ton": ton(c.settled_total_nanoton),
        "debt_limit_exceeded": c.debt_nanoton > debt_limit_nanoton,
    });
    match json {
        Value::Object(map) => map,
        _ => unreachable!("json! of an object literal"),
    }
}

/// `GET /queue/status`, its keys in the order a `Value` map writes them.
#[derive(Serialize)]
pub struct QueueStatusJson {
    average_processing_seconds: f64,
    completed: u64,
    estimated_wait_seconds: u64,
    failed: u64,
    /// The queue never pauses; version 2.0.0 of the original service's SDK requires the
    /// field.
    is_paused: bool,
    pause_reason: Option<()>,
    pending: u64,
    processing: u64,
    queue_length: u64,
    timed_out: u64,
    total_processed: u64,
}

pub fn queue_status(s: &QueueStats) -> QueueStatusJson {
    QueueStatusJson {
        average_processing_seconds: (s.average_processing_ms as f64 / 1000.0 * 10.0).round() / 10.0,
        completed: s.completed,
        estimated_wait_seconds: s.estimated_wait_seconds,
        failed: s.failed,
        is_paused: false,
        pause_reason: None,
        pending: s.pending,
        processing: s.processing,
        queue_length: s.queue_length,
        timed_out: s.timed_out,
        total_processed: s.total_processed,
    }
}

pub fn history_item(h: &HistoryItem) -> Value {
    let mut out = Map::new();
    out.insert("order_id".into(), json!(h.order_id));
    out.insert("request_id".into(), json!(h.request_id));
    product_fields(&mut out, &h.product);
    let rest = json!({
        "username": format!("@{}", h.username),
        "cost_ton": ton(h.cost_nanoton),
        "commission_ton": ton(h.commission_nanoton),
        "status": h.status,
        "tx_hash": h.tx_hash,
        "created_at": time(h.created_at),
        "completed_at": opt_time(h.completed_at),
    });
    if let Value::Object(rest) = rest {
        out.extend(rest);
    }
    // Only for a USDT order: a TON order's line stays as it always was.
    if let Some(cost) = h.cost_usdt {
        out.insert("cost_usdt_ton".into(), json!(usdt(cost)));
        out.insert(
            "payment_method".into(),
            json!(PaymentMethod::UsdtTon.as_str()),
        );
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the order's and the request's JSON were when built as `Value` maps: the typed
    /// views must write the very same bytes.
    fn order_as_map(o: &OrderView) -> Value {
        let mut out = Map::new();
        out.insert("order_id".into(), json!(o.order_id));
        product_fields(&mut out, &o.product);
        let rest = json!({
            "username": format!("@{}", o.username),
            "mode": mode(o.mode),
            "status": o.status,
            "price_ton": ton(o.price_nanoton),
            "commission_rate": rate(o.commission_rate),
            "commission_ton": ton(o.commission_nanoton),
            "total_ton": ton(o.total_nanoton),
            "created_at": time(o.created_at),
            "expires_at": time(o.expires_at),
            "wallet_address": o.wallet_address,
            "request_id": o.request_id,
            "tx_hash": o.tx_hash,
            "error_code": o.error_code,
            "error": o.error,
            "completed_at": opt_time(o.completed_at),
            "delivery_confirmed": o.delivery_confirmed,
        });
        if let Value::Object(rest) = rest {
            out.extend(rest);
        }
        Value::Object(out)
    }

    fn request_as_map(r: &RequestView, position: Option<u64>, wait: u64) -> Value {
        let mut out = Map::new();
        out.insert("request_id".into(), json!(r.request_id));
        out.insert("id".into(), json!(r.request_id));
        out.insert("status".into(), json!(r.status.as_str()));
        product_fields(&mut out, &r.product);
        let result = r.result.as_ref().map(|res| {
            let mut result = json!({
                "success": true,
                "transaction_id": res.transaction_hash,
                "transaction_hash": res.transaction_hash,
                "username": format!("@{}", r.username),
                "cost_ton": ton(res.cost_nanoton),
                "commission_ton": ton(res.commission_nanoton),
                "collected_commission_ton": ton(res.collected_nanoton),
                "commission_rate": rate(r.commission_rate),
                "mode": mode(r.mode),
                "commission_balance_ton": ton(res.commission_balance_nanoton),
                "timestamp": time(res.completed_at),
            });
            match r.product {
                Product::Stars { amount } => {
                    result["amount"] = json!(amount);
                    result["stars_amount"] = json!(amount);
                }
                Product::Premium { months } => {
                    result["months"] = json!(months);
                    result["duration_months"] = json!(months);
                }
            }
            result
        });
        let rest = json!({
            "order_id": r.order_id,
            "username": format!("@{}", r.username),
            "mode": mode(r.mode),
            "position": position,
            "estimated_wait_seconds": wait,
            "created_at": time(r.created_at),
            "started_at": opt_time(r.started_at),
            "completed_at": opt_time(r.completed_at),
            "queue_deadline": time(r.queue_deadline),
            "wallet_address": r.wallet_friendly,
            "wallet_address_raw": r.wallet_address,
            "wallet_version": r.wallet_version,
            "error": r.error,
            "error_code": r.error_code,
            "result": result,
        });
        if let Value::Object(rest) = rest {
            out.extend(rest);
        }
        Value::Object(out)
    }

    #[test]
    fn the_typed_views_write_the_bytes_the_maps_wrote() {
        let log = crate::readmodel::contract::synthetic_log(3, 60, 4);
        let mut models = projections::ReadModels::new();
        let mut position = 0;
        for (stream, events) in &log {
            for event in events {
                position += 1;
                let recorded = event
                    .to_new_event(events::EventMetadata::default())
                    .recorded(stream.clone(), position, 1, chrono::Utc::now());
                models.apply_recorded(&recorded).unwrap();
            }
        }
        let (mut stars, mut premium, mut results) = (0, 0, 0);
        for o in models.orders.orders.values() {
            match o.product {
                Product::Stars { .. } => stars += 1,
                Product::Premium { .. } => premium += 1,
            }
            assert_eq!(
                serde_json::to_string(&order(o)).unwrap(),
                serde_json::to_string(&order_as_map(o)).unwrap()
            );
        }
        for (i, r) in models.orders.requests.values().enumerate() {
            results += usize::from(r.result.is_some());
            let position = (i % 2 == 0).then_some(i as u64);
            assert_eq!(
                serde_json::to_string(&request(r, position, 7)).unwrap(),
                serde_json::to_string(&request_as_map(r, position, 7)).unwrap()
            );
        }
        assert!(stars > 0 && premium > 0 && results > 0);
    }

    #[test]
    fn rates_are_numbers_and_money_is_exact_text() {
        assert_eq!(rate(Decimal::new(1, 2)), json!(0.01));
        assert_eq!(rate(Decimal::ZERO), json!(0.0));
        assert_eq!(percent(Decimal::new(1, 2)), json!(1.0));
        assert_eq!(percent(Decimal::new(25, 3)), json!(2.5));
        assert_eq!(ton(Nanoton::new(761_234_567)), "0.761234567");
        assert_eq!(ton(Nanoton::from_ton(2)), "2");
    }
}
