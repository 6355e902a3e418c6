//! The simulator's HTTP face: toncenter's v2 and v3 paths used by TON wallets and indexer
//! clients, plus `/sim/*` control endpoints (faucet, status, block).
//!
//! Every toncenter path first passes the gate: API key (401 for an unknown key), rate limit
//! (429 in toncenter's observed shape) and fault injection (503, or a hang), in that order.
//!
//! The v3 paths are toncenter's indexer, which trails the chain: with an indexer lag (or a
//! paused indexer) they leave out transactions too recent for it. The v2 paths read the
//! chain through a liteserver and are always current.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tonlib_core::{TonAddress, TonHash};

use super::json;
use super::ledger::{ExternalMessage, Moment, Rejection};
use super::{unix_now, SimState};
use crate::sim::faults::Fault;
use crate::ton::address::parse_address;
use crate::ton::client::parse_hash;
use crate::ton::Nanoton;

type Query = web::Query<HashMap<String, String>>;

/// An error answer: HTTP status and toncenter's text.
type Refusal = (u16, String);

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v2/{method}", web::get().to(v2))
        .route("/api/v2/{method}", web::post().to(v2))
        .service(
            web::scope("/api/v3")
                .route(
                    "/transactionsByMessage",
                    web::get().to(v3_transactions_by_message),
                )
                .route("/transactions", web::get().to(v3_transactions)),
        )
        .service(
            web::scope("/sim")
                .route("/faucet", web::post().to(faucet))
                .route("/usdt", web::post().to(usdt_faucet))
                .route("/status", web::get().to(status))
                .route("/block", web::post().to(block))
                .route("/webhooks", web::post().to(webhook_in))
                .route("/webhooks", web::get().to(webhook_inbox)),
        )
        .default_service(web::to(|| async {
            HttpResponse::NotFound().json(json!({"ok": false, "error": "Not Found", "code": 404}))
        }));
}

fn v2_ok(result: Value) -> HttpResponse {
    HttpResponse::Ok()
        .json(json!({"ok": true, "result": result, "@extra": format!("{}:0", unix_now())}))
}

fn with_status(status: u16, body: Value) -> HttpResponse {
    let code = actix_web::http::StatusCode::from_u16(status)
        .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
    HttpResponse::build(code).json(body)
}

/// v2's error envelope, with the HTTP status equal to `code` as toncenter sends it.
fn v2_err(status: u16, message: impl Into<String>) -> HttpResponse {
    with_status(
        status,
        json!({"ok": false, "error": message.into(), "code": status}),
    )
}

/// v3's error body.
fn v3_err(status: u16, message: impl Into<String>) -> HttpResponse {
    with_status(status, json!({"error": message.into()}))
}

/// Key, rate limit and faults. `None` lets the request through.
async fn gate(state: &SimState, req: &HttpRequest) -> Option<HttpResponse> {
    state.stats.requests.fetch_add(1, Ordering::Relaxed);
    *state
        .by_path
        .lock()
        .expect("path counters poisoned")
        .entry(req.path().to_string())
        .or_default() += 1;
    let key = req
        .headers()
        .get("X-API-Key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| {
            web::Query::<HashMap<String, String>>::from_query(req.query_string())
                .ok()
                .and_then(|q| q.get("api_key").cloned())
        });
    let keyed = match (&key, &state.config.api_key) {
        (Some(given), Some(expected)) if given == expected => true,
        (Some(_), Some(_)) => {
            state.stats.unauthorized.fetch_add(1, Ordering::Relaxed);
            return Some(v2_err(401, "API key does not exist"));
        }
        // No key configured: any key is as good as none.
        (_, None) | (None, _) => false,
    };
    if !state.limiter.admit(keyed) {
        state.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
        return Some(
            HttpResponse::TooManyRequests()
                .json(json!({"ok": false, "result": "Ratelimit exceed", "code": 429})),
        );
    }
    let fault = if state.take_path_failure(req.path()) {
        state.faults.count_injected();
        Fault::Fail
    } else {
        state.faults.before_request().await
    };
    match fault {
        Fault::Fail => Some(v2_err(
            503,
            "simulated fault: service temporarily unavailable",
        )),
        // Before anything is handled: a request dropped here never took effect.
        hang @ Fault::Hang(..) => hang.hang().await,
        Fault::None => None,
    }
}

macro_rules! gate {
    ($state:expr, $req:expr) => {
        if let Some(resp) = gate(&$state, &$req).await {
            return resp;
        }
    };
}

/// A v2 call's parameters: the query string, merged with a JSON object body (toncenter
/// takes either for its methods).
fn v2_params(req: &HttpRequest, body: &[u8]) -> Result<HashMap<String, String>, Refusal> {
    let mut params = web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .map_err(|e| (422, format!("failed to parse request: {e}")))?;
    if !body.is_empty() {
        let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) else {
            return Err((
                422,
                "failed to parse request: body is not a JSON object".into(),
            ));
        };
        for (k, v) in fields {
            let v = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            params.insert(k, v);
        }
    }
    Ok(params)
}

fn address_param(q: &HashMap<String, String>) -> Result<TonAddress, Refusal> {
    let s = q
        .get("address")
        .ok_or_else(|| (422, "failed to parse request: missing address".to_string()))?;
    parse_address(s).map_err(|e| {
        (
            422,
            format!("failed to parse request: failed to parse address: {e}"),
        )
    })
}

/// `GET|POST /api/v2/{method}`.
async fn v2(
    state: web::Data<SimState>,
    req: HttpRequest,
    method: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    gate!(state, req);
    let mut hang = false;
    let result = v2_params(&req, &body).and_then(|q| {
        let post = req.method() == actix_web::http::Method::POST;
        match (method.as_str(), post) {
            ("getAddressInformation", _) => {
                let a = address_param(&q)?;
                Ok(json::address_information(&state.ledger(), &a, unix_now()))
            }
            ("getWalletInformation", _) => {
                let a = address_param(&q)?;
                Ok(json::wallet_information(&state.ledger(), &a))
            }
            ("getAddressBalance", _) => {
                let a = address_param(&q)?;
                Ok(json!(state.ledger().balance(&a).to_string()))
            }
            ("runGetMethod", _) => {
                let a = address_param(&q)?;
                let m = q
                    .get("method")
                    .ok_or_else(|| (422, "failed to parse request: missing method".to_string()))?;
                // POST bodies carry the stack as JSON (`v2_params` keeps it as its text).
                let args: Vec<Value> = match q.get("stack") {
                    Some(text) => serde_json::from_str(text).map_err(|_| {
                        (
                            422,
                            "failed to parse request: stack is not a JSON array".to_string(),
                        )
                    })?,
                    None => vec![],
                };
                Ok(json::run_get_method(&state.ledger(), &a, m, &args))
            }
            ("getTransactions", _) => get_transactions(&state, &q),
            ("sendBoc", true) => {
                (_, _, hang) = submit(&state, q.get("boc").map_or("", String::as_str))?;
                Ok(json!({"@type": "ok"}))
            }
            ("sendBocReturnHash", true) => {
                let (hash, norm, hung) = submit(&state, q.get("boc").map_or("", String::as_str))?;
                hang = hung;
                Ok(json!({
                    "@type": "raw.extMessageInfo",
                    "hash": json::b64(&hash),
                    "hash_norm": json::b64(&norm),
                }))
            }
            _ => Err((404, "Not Found".to_string())),
        }
    });
    if hang {
        // The message is queued already: whatever the client makes of the silence, it will
        // be applied.
        let hangs = state.faults.hangs();
        if let Some(dropped) = Fault::Hang(hangs.duration, hangs.then).hang().await {
            return dropped;
        }
    }
    match result {
        Ok(value) => v2_ok(value),
        Err((status, message)) => v2_err(status, message),
    }
}

/// Checks and queues an external message, refusing as toncenter does. The flag says that
/// the answer is to hang (`TonSim::hang_next_answers`).
fn submit(state: &SimState, boc_b64: &str) -> Result<(TonHash, TonHash, bool), Refusal> {
    if boc_b64.trim().is_empty() {
        return Err((422, "failed to validate request: empty boc".into()));
    }
    // toncenter takes standard, padded base64 here; be as strict.
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(boc_b64.trim())
        .map_err(|_| {
            (
                422,
                "failed to validate request: boc is not standard base64".to_string(),
            )
        })?;
    let root = crate::ton::boc::parse_single_root(&bytes)
        .map_err(|e| (422, format!("failed to validate request: invalid boc: {e}")))?;
    let refused = |state: &SimState, rejection: Rejection, account: Option<&TonAddress>| {
        state.stats.rejected.fetch_add(1, Ordering::Relaxed);
        (500, rejection_text(&rejection, account))
    };
    let ext =
        ExternalMessage::parse(root).map_err(|m| refused(state, Rejection::Malformed(m), None))?;
    state
        .broadcasts
        .lock()
        .expect("broadcast log poisoned")
        .push(ext.hash.clone());
    let account = ext.destination.clone();
    let mut dropped = false;
    let result = state
        .ledger()
        .submit(ext, unix_now(), state.config.refuse_underfunded, || {
            dropped = state.take_drop();
            dropped
        });
    match result {
        Ok(ext) => {
            state.stats.accepted.fetch_add(1, Ordering::Relaxed);
            if dropped {
                state.stats.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::info!(hash = %ext.hash_norm.to_hex(), "simulated fault: accepted message dropped");
            }
            if state.take_lost_answer() {
                state.stats.answers_lost.fetch_add(1, Ordering::Relaxed);
                return Err((504, "LITE_SERVER_NETWORK timeout".into()));
            }
            let hang = state.take_hung_answer();
            if hang {
                state.stats.answers_lost.fetch_add(1, Ordering::Relaxed);
                state.faults.count_hang();
            }
            Ok((ext.hash, ext.hash_norm, hang))
        }
        Err(rejection) => Err(refused(state, rejection, Some(&account))),
    }
}

/// toncenter's wording for each refusal (docs/toncenter-api.md, "Rejection error").
fn rejection_text(r: &Rejection, account: Option<&TonAddress>) -> String {
    const PREFIX: &str = "LITE_SERVER_UNKNOWN: cannot apply external message to current state : ";
    let hex = account
        .map(|a| a.hash_part.to_hex().to_ascii_uppercase())
        .unwrap_or_default();
    let by_tx = format!(
        "External message was not accepted: cannot run message on account: inbound external message rejected by transaction {hex}:\n"
    );
    let reason = match r {
        Rejection::Malformed(m) => format!("failed to parse external message: {m}"),
        Rejection::AccountMissing => "Failed to unpack account state".to_string(),
        Rejection::NoState => format!("{by_tx}exitcode=0, steps=0, gas_used=0"),
        Rejection::UnsupportedContract => {
            "External message was not accepted: the simulator runs only wallet v4r2 and v5r1 contracts".to_string()
        }
        Rejection::CannotPayGas => format!(
            "External message was not accepted: cannot run message on account: inbound external message rejected by account {hex} before smart-contract execution"
        ),
        Rejection::Contract(code) => format!(
            "{by_tx}exitcode={code}, steps=49, gas_used=0\nVM Log (truncated):\n...execute THROWIFNOT {code}\ndefault exception handler, terminating vm with exit code {code}\n"
        ),
        Rejection::InsufficientFunds { balance, required } => format!(
            "{by_tx}exitcode=37, steps=0, gas_used=0\n(simulator) balance {balance} nanoton does not cover the messages plus fees ({required} nanoton)"
        ),
    };
    format!("{PREFIX}{reason}")
}

fn get_transactions(state: &SimState, q: &HashMap<String, String>) -> Result<Value, Refusal> {
    let addr = address_param(q)?;
    let limit = match q.get("limit").map(|l| l.parse::<usize>()) {
        None => 10,
        Some(Ok(l)) if (1..=1000).contains(&l) => l,
        _ => {
            return Err((
                422,
                "failed to validate request: limit must be 1..1000".into(),
            ))
        }
    };
    let lt = q
        .get("lt")
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|&l| l != 0);
    if lt.is_some() != q.contains_key("hash") {
        return Err((
            422,
            "failed to validate request: lt and hash should be used together".into(),
        ));
    }
    let to_lt = q.get("to_lt").and_then(|s| s.parse().ok()).unwrap_or(0);
    let ledger = state.ledger();
    if let (Some(lt), Some(hash)) = (lt, q.get("hash")) {
        let hash = parse_hash(hash).map_err(|_| {
            (
                422,
                "failed to parse request: failed to parse hash".to_string(),
            )
        })?;
        match ledger.transaction(&hash) {
            Some(t) if t.lt == lt && t.account == addr => {}
            _ => return Err((500, "LITE_SERVER_UNKNOWN: cannot find transaction".into())),
        }
    }
    let txs: Vec<Value> = ledger
        .account_transactions(&addr, lt, to_lt, limit)
        .into_iter()
        .map(|t| json::v2_transaction(t, ledger.network()))
        .collect();
    Ok(Value::Array(txs))
}

fn v3_limit(q: &HashMap<String, String>) -> Result<(usize, usize), Refusal> {
    let limit = match q.get("limit").map(|l| l.parse::<usize>()) {
        None => 10,
        Some(Ok(l)) if (1..=1000).contains(&l) => l,
        Some(Ok(l)) => return Err((422, format!("limit is not allowed: {l} > 1000"))),
        Some(Err(_)) => return Err((422, "failed to decode: limit".into())),
    };
    let offset = match q.get("offset").map(|o| o.parse::<usize>()) {
        None => 0,
        Some(Ok(o)) => o,
        Some(Err(_)) => return Err((422, "failed to decode: offset".into())),
    };
    Ok((limit, offset))
}

async fn v3_transactions_by_message(
    state: web::Data<SimState>,
    req: HttpRequest,
    q: Query,
) -> HttpResponse {
    gate!(state, req);
    let Some(hash) = q.get("msg_hash") else {
        return v3_err(
            422,
            "at least one of msg_hash, body_hash, opcode should be specified",
        );
    };
    let Ok(hash) = parse_hash(hash) else {
        return v3_err(
            422,
            "failed to decode: schema: error converting value for \"msg_hash\"",
        );
    };
    let (inbound, outbound) = match q.get("direction").map(String::as_str) {
        None => (true, true),
        Some("in") => (true, false),
        Some("out") => (false, true),
        Some(_) => return v3_err(422, "direction should be one of: in, out"),
    };
    let (limit, offset) = match v3_limit(&q) {
        Ok(v) => v,
        Err((status, message)) => return v3_err(status, message),
    };
    let ledger = state.ledger();
    let txs = state.indexed(ledger.transactions_by_message(&hash, inbound, outbound));
    v3_page(&ledger, txs, limit, offset)
}

/// A v3 list of transactions with its address book.
fn v3_page(
    ledger: &super::ledger::Ledger,
    txs: Vec<&super::ledger::SimTransaction>,
    limit: usize,
    offset: usize,
) -> HttpResponse {
    let mut book = Map::new();
    let txs: Vec<Value> = txs
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|t| json::v3_transaction(t, &mut book, ledger))
        .collect();
    HttpResponse::Ok().json(json!({"transactions": txs, "address_book": book}))
}

async fn v3_transactions(state: web::Data<SimState>, req: HttpRequest, q: Query) -> HttpResponse {
    gate!(state, req);
    let Some(account) = q.get("account") else {
        return v3_err(422, "account is required");
    };
    let Ok(addr) = parse_address(account) else {
        return v3_err(
            422,
            "failed to decode: schema: error converting value for \"account\"",
        );
    };
    let (limit, offset) = match v3_limit(&q) {
        Ok(v) => v,
        Err((status, message)) => return v3_err(status, message),
    };
    let ledger = state.ledger();
    let mut txs = state.indexed(ledger.account_transactions(&addr, None, 0, usize::MAX));
    if q.get("sort").map(String::as_str) == Some("asc") {
        txs.reverse();
    }
    v3_page(&ledger, txs, limit, offset)
}

#[derive(Deserialize)]
struct FaucetBody {
    address: String,
    /// Nanoton, as a string or a number.
    amount: Nanoton,
}

/// Deliveries the inbox keeps.
const INBOX: usize = 100;

/// `POST /sim/webhooks`: keeps a webhook delivery (its body and signature headers).
async fn webhook_in(
    state: web::Data<SimState>,
    req: actix_web::HttpRequest,
    body: String,
) -> HttpResponse {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let mut inbox = state.webhooks.lock().unwrap_or_else(|p| p.into_inner());
    if inbox.len() == INBOX {
        inbox.pop_front();
    }
    inbox.push_back(json!({
        "id": header("webhook-id"),
        "signature": header("webhook-signature"),
        "body": body,
    }));
    HttpResponse::Ok().finish()
}

/// `GET /sim/webhooks`: the last deliveries the inbox got, oldest first.
async fn webhook_inbox(state: web::Data<SimState>) -> HttpResponse {
    let inbox = state.webhooks.lock().unwrap_or_else(|p| p.into_inner());
    HttpResponse::Ok().json(json!({"deliveries": inbox.iter().collect::<Vec<_>>()}))
}

/// `POST /sim/faucet {"address": "...", "amount": "<nanoton>"}`: funds any address at once.
async fn faucet(state: web::Data<SimState>, body: web::Json<FaucetBody>) -> HttpResponse {
    let addr = match parse_address(&body.address) {
        Ok(a) => a,
        Err(e) => return v2_err(422, format!("address: {e}")),
    };
    if body.amount == Nanoton::ZERO {
        return v2_err(422, "amount must be positive (nanoton)");
    }
    let tx = state
        .ledger()
        .fund(&addr, body.amount.as_u64(), Moment::now());
    let balance = state.ledger().balance(&addr);
    v2_ok(json!({
        "transaction_hash": json::b64(&tx),
        "address": json::raw_upper(&addr),
        "balance": balance.to_string(),
    }))
}

#[derive(Deserialize)]
struct UsdtFaucetBody {
    address: String,
    /// USDT units (10⁻⁶), a number or a string of digits.
    units: Nanoton,
}

/// `POST /sim/usdt {"address", "units"}`: mints USDT to the owner's jetton wallet at once.
async fn usdt_faucet(state: web::Data<SimState>, body: web::Json<UsdtFaucetBody>) -> HttpResponse {
    let owner = match parse_address(&body.address) {
        Ok(a) => a,
        Err(e) => return v2_err(422, format!("address: {e}")),
    };
    if body.units == Nanoton::ZERO {
        return v2_err(422, "units must be positive (USDT units of 10^-6)");
    }
    let master = super::usdt_master();
    let units = crate::ton::jetton::JettonAmount(body.units.as_u64());
    let tx = state
        .ledger()
        .mint_jetton(&master, &owner, units, Moment::now());
    let balance = state.ledger().jetton_balance(&master, &owner);
    v2_ok(json!({
        "transaction_hash": json::b64(&tx),
        "jetton_wallet": json::raw_upper(&super::jetton::wallet_address(&master, &owner)),
        "balance_units": balance.units().to_string(),
    }))
}

async fn status(state: web::Data<SimState>) -> HttpResponse {
    let ledger = state.ledger();
    let s = &state.stats;
    v2_ok(json!({
        "network": ledger.network(),
        "mc_seqno": ledger.mc_seqno(),
        "pending": ledger.pending(),
        "block_time_ms": state.config.block_time.as_millis() as u64,
        "faucet": json::raw_upper(ledger.faucet_address()),
        "requests": s.requests.load(Ordering::Relaxed),
        "accepted": s.accepted.load(Ordering::Relaxed),
        "rejected": s.rejected.load(Ordering::Relaxed),
        "dropped": s.dropped.load(Ordering::Relaxed),
        "answers_lost": s.answers_lost.load(Ordering::Relaxed),
        "rate_limited": s.rate_limited.load(Ordering::Relaxed),
    }))
}

/// `POST /sim/block`: applies the queued messages now (useful with a long block time).
async fn block(state: web::Data<SimState>) -> HttpResponse {
    let applied = state.ledger().produce_block(Moment::now());
    v2_ok(json!({"applied": applied}))
}
