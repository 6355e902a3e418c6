//! The JSON shapes of API.md, built from the read models. Money leaves here as decimal TON
//! strings (`"0.761234567"`); rates as JSON numbers; times as RFC 3339 UTC.

use chrono::{DateTime, SecondsFormat, Utc};
use events::{OrderMode, Product};
use projections::{HistoryItem, OrderView, QueueStats, RequestView, WalletCommission};
use rust_decimal::Decimal;
use serde_json::{json, Map, Value};

use crate::ton::Nanoton;

pub fn ton(amount: Nanoton) -> String {
    amount.to_ton_string()
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

/// The order (API.md, "The order").
pub fn order(o: &OrderView) -> Value {
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

/// The queue request (API.md, "The queue request").
pub fn request(r: &RequestView, position: Option<u64>, estimated_wait_seconds: u64) -> Value {
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
        "estimated_wait_seconds": estimated_wait_seconds,
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

pub fn queue_status(s: &QueueStats) -> Value {
    json!({
        "queue_length": s.queue_length,
        "pending": s.pending,
        "processing": s.processing,
        "total_processed": s.total_processed,
        "completed": s.completed,
        "failed": s.failed,
        "timed_out": s.timed_out,
        "estimated_wait_seconds": s.estimated_wait_seconds,
        "average_processing_seconds": (s.average_processing_ms as f64 / 1000.0 * 10.0).round() / 10.0,
    })
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
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

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
