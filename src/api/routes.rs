//! The client endpoints of API.md. Each handler validates its input into domain values, asks
//! the core, and shapes the answer with `views`.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use events::Product;
use serde_json::{json, Value};

use super::error::{ApiError, FieldError};
use super::input::{resolve_wallet, Fields, ResolvedWallet, WalletChoice};
use super::{views, AppState};
use crate::domain::{PremiumMonths, Username};
use crate::fragment::FragmentCookies;
use crate::ton::client::AccountStatus;
use crate::ton::ParsedAddress;

pub type Reply = Result<HttpResponse, ApiError>;

pub fn ok(data: Value) -> Reply {
    Ok(HttpResponse::Ok().json(json!({"success": true, "data": data})))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/health", web::get().to(health)).service(
        web::scope("/api/v1")
            .route("/stars/buy", web::post().to(stars_buy))
            .route("/stars/create", web::post().to(stars_create))
            .route("/orders/stars", web::post().to(stars_create))
            .route("/premium/create", web::post().to(premium_create))
            .route("/orders/premium", web::post().to(premium_create))
            .route("/stars/pay", web::post().to(pay_from_body))
            .route("/orders/{order_id}/pay", web::post().to(pay_from_path))
            .route("/orders/{order_id}", web::get().to(get_order))
            .route("/queue/status", web::get().to(queue_status))
            .route("/queue/{request_id}", web::get().to(get_request))
            .route("/queue", web::get().to(queue_length))
            .route(
                "/premium/check-eligibility",
                web::post().to(premium_eligibility),
            )
            .route("/premium/buy", web::post().to(premium_buy))
            .route("/wallet/resolve", web::post().to(wallet_resolve))
            .route("/wallet/balance", web::get().to(wallet_balance))
            .route("/commission/balance", web::get().to(commission_balance))
            .route("/commission/rates", web::get().to(commission_rates))
            .route("/transactions", web::get().to(transactions))
            .route("/prices", web::get().to(prices)),
    );
}

async fn health(state: web::Data<AppState>) -> Reply {
    let store_ok = state.core.store().head().await.is_ok();
    let queue_length = state.core.projections().read().queue.stats().queue_length;
    ok(json!({
        "status": if store_ok { "ok" } else { "degraded" },
        "version": env!("CARGO_PKG_VERSION"),
        "store": state.core.store().backend(),
        "network": state.network_name,
        "queue_length": queue_length,
        "uptime_seconds": state.started.elapsed().as_secs(),
        "no_kyc_available": state.core.has_owner_sessions(),
    }))
}

fn parse_uuid(
    field: &str,
    raw: &str,
    not_found: (&'static str, &'static str),
) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(raw.trim()).map_err(|_| {
        // An id that cannot exist is not found, as the API's clients expect; `details` says
        // why.
        ApiError {
            details: vec![FieldError::new(field, "is not a UUID")],
            ..ApiError::new(404, not_found.0, not_found.1)
        }
    })
}

async fn create(
    state: &AppState,
    product: Product,
    username: &Username,
    cookies: Option<FragmentCookies>,
) -> Reply {
    let order = state.core.create_order(product, username, cookies).await?;
    ok(views::order(&order))
}

async fn stars_create(state: web::Data<AppState>, body: web::Json<Value>) -> Reply {
    let mut f = Fields::new(body.into_inner())?;
    let username = f.username("username")?;
    let amount = f.stars_amount("amount");
    let cookies = f.cookies()?;
    let (Some(username), Some(amount)) = (username, amount) else {
        return Err(missing(f));
    };
    f.finish()?;
    create(
        &state,
        Product::Stars {
            amount: amount.get(),
        },
        &username,
        cookies,
    )
    .await
}

async fn premium_create(state: web::Data<AppState>, body: web::Json<Value>) -> Reply {
    let mut f = Fields::new(body.into_inner())?;
    let username = f.username("username")?;
    let field = if f.has("months") {
        "months"
    } else {
        "duration"
    };
    let months = f.months(field, true);
    let cookies = f.cookies()?;
    let (Some(username), Some(months)) = (username, months) else {
        return Err(missing(f));
    };
    f.finish()?;
    create(
        &state,
        Product::Premium {
            months: months.get(),
        },
        &username,
        cookies,
    )
    .await
}

/// The error of a body with a required field missing (`Fields` recorded it).
fn missing(f: Fields) -> ApiError {
    f.finish()
        .err()
        .unwrap_or_else(|| ApiError::internal(&"a required field was neither read nor reported"))
}

/// The seed and wallet fields of a payment, checked; the key derived off the async threads.
async fn payer(state: &AppState, f: &mut Fields) -> Result<Option<PayerInput>, ApiError> {
    let seed = f.take_seed();
    let choice = WalletChoice {
        address: f.wallet_address(),
        version: f.wallet_version(),
        account_index: f.account_index(),
    };
    let Some(seed) = seed else {
        return Ok(None);
    };
    Ok(Some(PayerInput {
        seed,
        choice,
        network: state.wallet_network,
    }))
}

struct PayerInput {
    seed: zeroize::Zeroizing<String>,
    choice: WalletChoice,
    network: crate::ton::Network,
}

impl PayerInput {
    async fn resolve(self) -> Result<ResolvedWallet, ApiError> {
        web::block(move || resolve_wallet(&self.seed, &self.choice, self.network))
            .await
            .map_err(|e| ApiError::internal(&e))?
    }
}

async fn pay(
    state: &AppState,
    order_id: uuid::Uuid,
    f: Fields,
    payer: Option<PayerInput>,
    cookies: Option<FragmentCookies>,
) -> Reply {
    let Some(payer) = payer else {
        return Err(missing(f));
    };
    f.finish()?;
    let resolved = payer.resolve().await?;
    let receipt = state
        .core
        .pay_order(order_id, resolved.payer, resolved.account_index, cookies)
        .await?;
    ok(pay_answer(&receipt))
}

fn pay_answer(receipt: &crate::actors::PayReceipt) -> Value {
    let r = &receipt.request;
    let message = if receipt.new_request {
        match receipt.position {
            Some(p) => format!("Payment queued at position {p}"),
            None => "Payment is being processed".to_string(),
        }
    } else {
        "This order was already paid from this wallet; this is its request".to_string()
    };
    json!({
        "order_id": r.order_id,
        "request_id": r.request_id,
        // A new payment is reported as accepted into the queue (API.md), even if a free lane
        // already took it; a repeated one reports where its request is now.
        "status": if receipt.new_request { "queued" } else { r.status.as_str() },
        "position": receipt.position,
        "estimated_wait_seconds": receipt.estimated_wait_seconds,
        "wallet_address": r.wallet_friendly,
        "message": message,
    })
}

async fn pay_from_body(state: web::Data<AppState>, body: web::Json<Value>) -> Reply {
    let mut f = Fields::new(body.into_inner())?;
    let order_id = f.string("order_id");
    let payer = payer(&state, &mut f).await?;
    let cookies = f.cookies()?;
    let Some(order_id) = order_id else {
        return Err(missing(f));
    };
    let order_id = parse_uuid(
        "order_id",
        &order_id,
        ("ORDER_NOT_FOUND", "Order not found"),
    )?;
    pay(&state, order_id, f, payer, cookies).await
}

async fn pay_from_path(
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<Value>,
) -> Reply {
    let order_id = parse_uuid("order_id", &path, ("ORDER_NOT_FOUND", "Order not found"))?;
    let mut f = Fields::new(body.into_inner())?;
    let payer = payer(&state, &mut f).await?;
    let cookies = f.cookies()?;
    pay(&state, order_id, f, payer, cookies).await
}

/// One-shot buy: the seed is checked before the order exists, so a bad seed leaves nothing.
async fn buy(
    state: &AppState,
    product: Product,
    username: Username,
    f: Fields,
    payer: Option<PayerInput>,
    cookies: Option<FragmentCookies>,
) -> Reply {
    let Some(payer) = payer else {
        return Err(missing(f));
    };
    f.finish()?;
    let resolved = payer.resolve().await?;
    let order = state
        .core
        .create_order(product, &username, cookies.clone())
        .await?;
    let receipt = state
        .core
        .pay_order(
            order.order_id,
            resolved.payer,
            resolved.account_index,
            cookies,
        )
        .await?;
    ok(pay_answer(&receipt))
}

async fn stars_buy(state: web::Data<AppState>, body: web::Json<Value>) -> Reply {
    let mut f = Fields::new(body.into_inner())?;
    let username = f.username("username")?;
    let amount = f.stars_amount("amount");
    f.payment_method();
    let payer = payer(&state, &mut f).await?;
    let cookies = f.cookies()?;
    let (Some(username), Some(amount)) = (username, amount) else {
        return Err(missing(f));
    };
    buy(
        &state,
        Product::Stars {
            amount: amount.get(),
        },
        username,
        f,
        payer,
        cookies,
    )
    .await
}

async fn premium_buy(state: web::Data<AppState>, body: web::Json<Value>) -> Reply {
    let mut f = Fields::new(body.into_inner())?;
    let username = f.username("username")?;
    let field = if f.has("duration") {
        "duration"
    } else {
        "months"
    };
    let months = f.months(field, true);
    f.payment_method();
    let payer = payer(&state, &mut f).await?;
    let cookies = f.cookies()?;
    let (Some(username), Some(months)) = (username, months) else {
        return Err(missing(f));
    };
    buy(
        &state,
        Product::Premium {
            months: months.get(),
        },
        username,
        f,
        payer,
        cookies,
    )
    .await
}

async fn get_order(state: web::Data<AppState>, path: web::Path<String>) -> Reply {
    let id = parse_uuid("order_id", &path, ("ORDER_NOT_FOUND", "Order not found"))?;
    let order = state.core.order(id)?;
    ok(views::order(&order))
}

async fn get_request(state: web::Data<AppState>, path: web::Path<String>) -> Reply {
    let id = parse_uuid(
        "request_id",
        &path,
        ("REQUEST_NOT_FOUND", "Request not found"),
    )?;
    let request = state.core.request(id)?;
    let (position, wait) = {
        let m = state.core.projections().read();
        let p = m.queue.position(&id);
        (p, p.map_or(0, |p| m.queue.estimated_wait_seconds(p)))
    };
    ok(views::request(&request, position, wait, true))
}

async fn queue_status(state: web::Data<AppState>) -> Reply {
    let stats = state.core.projections().read().queue.stats();
    let mut data = views::queue_status(&stats);
    // The queue never pauses; version 2.0.0 of the original service's SDK requires the field.
    data["is_paused"] = json!(false);
    data["pause_reason"] = Value::Null;
    ok(data)
}

async fn queue_length(state: web::Data<AppState>) -> Reply {
    let stats = state.core.projections().read().queue.stats();
    ok(json!({"queue_length": stats.queue_length}))
}

async fn premium_eligibility(state: web::Data<AppState>, body: web::Json<Value>) -> Reply {
    let mut f = Fields::new(body.into_inner())?;
    let username = f.username("username")?;
    let field = if f.has("duration") {
        "duration"
    } else {
        "months"
    };
    let months = f.months(field, false);
    let cookies = f.cookies()?;
    let Some(username) = username else {
        return Err(missing(f));
    };
    f.finish()?;
    let months = months.unwrap_or(PremiumMonths::ALL[0]);
    let shown = username.to_string();
    // The original service's SDK reads `eligible` and `username` at the top level (2.0.0)
    // or in `data`, and the reason from an `error` object.
    let answer = |data: Value| -> Reply {
        let mut body = json!({"success": true, "data": data.clone()});
        for key in ["eligible", "username", "reason"] {
            if let Some(v) = data.get(key) {
                body[key] = v.clone();
            }
        }
        Ok(HttpResponse::Ok().json(body))
    };
    match state
        .core
        .premium_eligibility(&username, months, cookies)
        .await
    {
        Ok(()) => answer(json!({"eligible": true, "username": shown, "months": months.get()})),
        Err(e) => {
            let (code, _) = e.api_code();
            match code {
                // What Fragment says about the recipient is the answer, not a failure.
                "PREMIUM_ALREADY_ACTIVE" | "USER_NOT_FOUND" | "NOT_A_USER" | "VALIDATION_ERROR"
                    if matches!(e, crate::actors::CoreError::Fragment(_)) =>
                {
                    answer(json!({
                        "eligible": false,
                        "username": shown,
                        "months": months.get(),
                        "reason": e.to_string(),
                        "error_code": code,
                        "error": {"error_code": code, "message": e.to_string()},
                    }))
                }
                _ => Err(e.into()),
            }
        }
    }
}

async fn wallet_resolve(state: web::Data<AppState>, body: web::Json<Value>) -> Reply {
    let mut f = Fields::new(body.into_inner())?;
    let payer = payer(&state, &mut f).await?;
    let Some(payer) = payer else {
        return Err(missing(f));
    };
    f.finish()?;
    let resolved = payer.resolve().await?;
    let w = &resolved.payer.wallet;
    ok(json!({
        "wallet_address": w.friendly_address(false),
        "wallet_address_bounceable": w.friendly_address(true),
        "wallet_address_raw": w.raw_address(),
        "wallet_version": w.version().as_str(),
        "seed_format": resolved.seed_format,
        "account_index": resolved.account_index,
        "network": state.network_name,
    }))
}

/// The wallet a read-only query is about: `?wallet_address=`, or the `X-Wallet-Seed` header
/// (never a seed in the URL).
async fn queried_wallet(
    state: &AppState,
    req: &HttpRequest,
) -> Result<(ParsedAddress, Option<crate::ton::WalletVersion>), ApiError> {
    let query =
        web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
            .map_err(|_| ApiError::bad_request("the query string is malformed"))?;
    if let Some(raw) = query.get("wallet_address").filter(|s| !s.trim().is_empty()) {
        let address = ParsedAddress::parse(raw).map_err(|e| {
            ApiError::validation(vec![FieldError::new("wallet_address", e.to_string())])
        })?;
        return Ok((address, None));
    }
    if let Some(seed) = req.headers().get("X-Wallet-Seed") {
        let seed = seed
            .to_str()
            .map_err(|_| ApiError::from(crate::ton::SeedError::NotBase64))?
            .to_string();
        let input = PayerInput {
            seed: zeroize::Zeroizing::new(seed),
            choice: WalletChoice {
                address: None,
                version: None,
                account_index: None,
            },
            network: state.wallet_network,
        };
        let w = input.resolve().await?.payer.wallet;
        let address =
            ParsedAddress::parse(&w.friendly_address(false)).map_err(|e| ApiError::internal(&e))?;
        return Ok((address, Some(w.version())));
    }
    Err(ApiError::validation(vec![FieldError::new(
        "wallet_address",
        "is required (or send the X-Wallet-Seed header)",
    )]))
}

fn address_forms(a: &ParsedAddress, testnet: bool) -> (String, String) {
    (
        crate::ton::address::friendly(&a.address, false, testnet),
        crate::ton::address::raw(&a.address),
    )
}

async fn wallet_balance(state: web::Data<AppState>, req: HttpRequest) -> Reply {
    let (address, version) = queried_wallet(&state, &req).await?;
    let account = state
        .core
        .chain()
        .account_state(&address.address)
        .await
        .map_err(|e| ApiError::unavailable(&e))?;
    let version = version.or_else(|| account.wallet().ok().flatten().map(|(v, _)| v));
    let (friendly, raw) = address_forms(&address, state.wallet_network.is_testnet());
    ok(json!({
        "wallet_address": friendly,
        "wallet_address_raw": raw,
        "wallet_version": version.map(|v| v.as_str()),
        "balance_ton": views::ton(account.balance.as_u64()),
        "balance_nanoton": account.balance.as_u64().to_string(),
        "state": match account.status {
            AccountStatus::Active => "active",
            AccountStatus::Uninitialized => "uninitialized",
            AccountStatus::Frozen => "frozen",
        },
    }))
}

async fn commission_balance(state: web::Data<AppState>, req: HttpRequest) -> Reply {
    let (address, _) = queried_wallet(&state, &req).await?;
    let (friendly, raw) = address_forms(&address, state.wallet_network.is_testnet());
    let c = state.core.projections().read().commission.wallet(&raw);
    let p = state.core.policy();
    ok(json!({
        "wallet_address": friendly,
        "wallet_address_raw": raw,
        "debt_ton": views::ton(c.debt_nanoton),
        "accrued_total_ton": views::ton(c.accrued_total_nanoton),
        "collected_total_ton": views::ton(c.collected_total_nanoton),
        "settled_total_ton": views::ton(c.settled_total_nanoton),
        "debt_limit_ton": views::ton(p.debt_limit_nanoton),
        "collection_threshold_ton": views::ton(p.collection_threshold_nanoton),
        "debt_limit_exceeded": c.debt_nanoton > p.debt_limit_nanoton,
    }))
}

async fn commission_rates(state: web::Data<AppState>) -> Reply {
    let p = state.core.policy();
    ok(json!({
        "rate_no_kyc": views::percent(p.rate_no_kyc),
        "rate_with_kyc": views::percent(p.rate_kyc),
        "rate_no_kyc_decimal": views::rate(p.rate_no_kyc),
        "rate_with_kyc_decimal": views::rate(p.rate_kyc),
        "collection_threshold_ton": views::ton(p.collection_threshold_nanoton),
        "debt_limit_ton": views::ton(p.debt_limit_nanoton),
        "updated_at": views::time(state.rates_updated_at),
    }))
}

async fn transactions(state: web::Data<AppState>, req: HttpRequest) -> Reply {
    const MAX_LIMIT: u64 = 100;
    let (address, _) = queried_wallet(&state, &req).await?;
    let query =
        web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
            .map_err(|_| ApiError::bad_request("the query string is malformed"))?;
    let mut errors = vec![];
    let mut number = |field: &str, default: u64, max: u64| match query.get(field) {
        None => default,
        Some(s) => match s.trim().parse::<u64>() {
            Ok(n) if n <= max => n,
            _ => {
                errors.push(FieldError::new(
                    field,
                    format!("must be a whole number from 0 to {max}"),
                ));
                default
            }
        },
    };
    let limit = number("limit", 20, MAX_LIMIT);
    let offset = number("offset", 0, u64::from(u32::MAX));
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let (friendly, raw) = address_forms(&address, state.wallet_network.is_testnet());
    let m = state.core.projections().read();
    let items: Vec<Value> = m
        .history
        .page(&m.orders, &raw, offset as usize, limit as usize)
        .iter()
        .map(views::history_item)
        .collect();
    ok(json!({
        "wallet_address": friendly,
        "items": items,
        "total": m.history.count(&raw),
        "limit": limit,
        "offset": offset,
    }))
}

async fn prices(state: web::Data<AppState>) -> Reply {
    let list = state.core.prices(None).await?;
    let usd = |p: &crate::fragment::Price| p.usd.map(|u| u.round_dp(2).to_string());
    let (min_count, min_price) = &list.stars_minimum;
    let per_star_nanoton = min_price.ton.as_u64() / u64::from(*min_count);
    let packages: Vec<Value> = list
        .stars_packages
        .iter()
        .map(|(n, p)| json!({"amount": n, "price_ton": views::ton(p.ton.as_u64()), "price_usd": usd(p)}))
        .collect();
    let premium_list: Vec<Value> = list
        .premium
        .iter()
        .map(|(m, p)| json!({"months": m.get(), "price_ton": views::ton(p.ton.as_u64()), "price_usd": usd(p)}))
        .collect();
    // Keyed as the original service's documentation names them (`3_months.base_ton`).
    let mut premium_by_months = serde_json::Map::new();
    for (m, p) in &list.premium {
        premium_by_months.insert(
            format!("{}_months", m.get()),
            json!({"months": m.get(), "base_ton": views::ton(p.ton.as_u64()), "base_usd": usd(p)}),
        );
    }
    let stars = json!({
        "price_per_star_ton": views::ton(per_star_nanoton),
        "price_per_star_usd": min_price.usd.map(|u| (u / rust_decimal::Decimal::from(*min_count)).round_dp(6).to_string()),
        "minimum_amount": min_count,
        "minimum_price_ton": views::ton(min_price.ton.as_u64()),
        "packages": packages,
    });
    let premium = json!(premium_by_months);
    let data = json!({
        "stars": stars,
        "premium": premium,
        "premium_list": premium_list,
        "ton_usd": list.ton_usd.map(|r| r.to_string()),
        "updated_at": views::time(list.updated_at),
        "source": "fragment.com",
        "fetched_at": views::time(Utc::now()),
    });
    // The original service's SDK returns the whole envelope and its examples read
    // `prices["stars"]`: the two tables are mirrored at the top level.
    Ok(HttpResponse::Ok().json(json!({
        "success": true,
        "data": data,
        "stars": stars,
        "premium": premium,
    })))
}
