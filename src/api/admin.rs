//! The operator's API, `/admin/*` (API.md, "Admin API"; docs/admin-api.md): lists from the
//! read models, the audit of a stream, commission totals and settlements, the owner's
//! Fragment sessions, and a check of the read models against the log.
//!
//! Every route needs `X-Admin-Key`, compared in constant time with `admin.key`; without a
//! configured key the whole API answers 401. Wrong keys are counted per IP address, and an
//! address that spent its small budget is refused before its key is even compared, so the
//! key cannot be guessed faster than that budget. The key is never logged.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::{web, HttpRequest, ResponseError};
use chrono::Utc;
use events::{EventMetadata, OrderMode, StreamName};
use hmac::{Hmac, Mac};
use projections::{RequestStatus, RequestView, WalletCommission};
use serde_json::{json, Value};
use sha2::Sha256;
use uuid::Uuid;

use super::error::{ApiError, FieldError};
use super::limit::Limiter;
use super::openapi::{self as doc, errors};
use super::routes::{ok, route_table, Reply};
use super::secret::{Body, SecretJson, SecretValue};
use super::{views, AppState};
use crate::actors::CoreError;
use crate::config::Secret;
use crate::domain::{DomainError, WalletCommand};
use crate::fragment::FragmentCookies;
use crate::ops::{self, AuditLine, AuditTarget, OpsError};
use crate::readmodel::{self, OrderFilter, RequestFilter};
use crate::store::read_stream_all;
use crate::ton::{address, Nanoton, ParsedAddress};

/// Wrong keys an address may send: a burst of this many, then this many a minute.
const FAILED_LOGINS_PER_MINUTE: u32 = 10;
const FAILED_LOGINS_BURST: u32 = 10;
/// Addresses whose wrong keys are counted apart. Past it, new addresses share one budget
/// (`Limiter`): a flood of addresses cannot grow memory, at the price of slowing the
/// operator down if they arrive from a new address during such a flood (reach the admin API
/// from a private network, not the internet, to avoid that).
const FAILED_LOGIN_CLIENTS: usize = 100_000;

/// Page sizes of the lists.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;

/// A shorter key is accepted, with a warning at start.
const SHORT_KEY: usize = 16;

/// Checks `X-Admin-Key`.
pub struct AdminAuth {
    /// HMAC-SHA256 of the configured key under `mac_key`; `None`: the admin API is off.
    /// Why a MAC and not the key: comparing two fixed-length digests in constant time
    /// reveals neither the key's bytes nor its length, and the key itself is not kept.
    expected: Option<[u8; 32]>,
    /// Random per process.
    mac_key: [u8; 32],
    failures: Limiter,
}

impl AdminAuth {
    pub fn new(key: &Secret) -> AdminAuth {
        let mut mac_key = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut mac_key);
        let mut auth = AdminAuth {
            expected: None,
            mac_key,
            failures: Limiter::new(
                FAILED_LOGINS_PER_MINUTE,
                FAILED_LOGINS_BURST,
                FAILED_LOGIN_CLIENTS,
            ),
        };
        let key = key.expose().trim();
        if key.is_empty() {
            tracing::info!("admin.key is not set: the admin API is disabled");
        } else {
            if key.chars().count() < SHORT_KEY {
                tracing::warn!(
                    "admin.key is shorter than {SHORT_KEY} characters; use a long random key"
                );
            }
            auth.expected = Some(auth.mac(key.as_bytes()).finalize().into_bytes().into());
        }
        auth
    }

    fn mac(&self, bytes: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.mac_key).expect("any key length");
        mac.update(bytes);
        mac
    }

    pub fn enabled(&self) -> bool {
        self.expected.is_some()
    }

    /// Constant time: `verify_slice` compares the digests without an early exit.
    fn accepts(&self, given: &[u8]) -> bool {
        match &self.expected {
            Some(expected) => self.mac(given.trim_ascii()).verify_slice(expected).is_ok(),
            None => false,
        }
    }
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(401, "UNAUTHORIZED", message)
}

/// The guard in front of every `/admin` route (unknown ones too).
pub async fn guard(
    req: ServiceRequest,
    next: actix_web::middleware::Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::EitherBody<impl MessageBody>>, actix_web::Error> {
    let refused = match req.app_data::<web::Data<AdminAuth>>() {
        None => Some(ApiError::internal(
            &"the admin API's key check is not configured",
        )),
        Some(auth) => check(auth, &req),
    };
    if let Some(error) = refused {
        return Ok(req
            .into_response(error.error_response())
            .map_into_right_body());
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}

fn check(auth: &AdminAuth, req: &ServiceRequest) -> Option<ApiError> {
    if !auth.enabled() {
        return Some(unauthorized(
            "the admin API is disabled: set admin.key (FG_ADMIN__KEY) to enable it",
        ));
    }
    // Behind a trusted proxy, the client it names: otherwise one stranger's wrong keys
    // would lock the operator out too.
    let ip = match req.app_data::<web::Data<super::limit::ClientIps>>() {
        Some(clients) => clients.of(req),
        None => req.peer_addr().map(|a| a.ip()),
    };
    let now = Instant::now();
    if let Some(ip) = ip {
        if let Err(wait) = auth.failures.peek(ip, now) {
            return Some(
                ApiError::new(
                    429,
                    "RATE_LIMIT_EXCEEDED",
                    format!("too many wrong admin keys from this address; retry in {wait} s"),
                )
                .with_retry_after(wait),
            );
        }
    }
    let Some(given) = req.headers().get("X-Admin-Key") else {
        return Some(unauthorized("the X-Admin-Key header is required"));
    };
    if auth.accepts(given.as_bytes()) {
        return None;
    }
    if let Some(ip) = ip {
        let _ = auth.failures.check(ip, now);
    }
    // The address, never the key.
    tracing::warn!(peer = ?ip, path = %req.path(), "wrong admin key");
    Some(unauthorized("the X-Admin-Key is not valid"))
}

route_table! {
    /// Every admin route (full paths).
    prefix "/admin" {
        get "/orders" => orders,
        get "/orders/unconfirmed" => unconfirmed,
        get "/requests" => requests,
        get "/audit/{target}" => audit,
        get "/streams/{stream}/events" => stream_events,
        get "/commission" => commission,
        post "/owner-cookies" => owner_cookies,
        post "/projections/rebuild" => rebuild,
        post "/wallets/{address}/settle" => settle,
        get "/webhooks" => webhooks,
        post "/webhooks/{event_id}/redeliver" => redeliver,
    }
}

/// Registers the admin routes under `/admin`, behind the key check (which also answers
/// unknown `/admin/` paths, so that they reveal nothing without the key).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/admin")
            .wrap(actix_web::middleware::from_fn(guard))
            .configure(register),
    );
}

/// A query string checked against the parameters a route knows: a misspelt filter is an
/// error, not a silently unfiltered list.
struct Query {
    params: HashMap<String, String>,
    errors: Vec<FieldError>,
}

impl Query {
    fn parse(req: &HttpRequest, known: &[&str]) -> Query {
        let mut params = HashMap::new();
        let mut errors = vec![];
        for (k, v) in url::form_urlencoded::parse(req.query_string().as_bytes()) {
            if !known.contains(&k.as_ref()) {
                let message = if known.is_empty() {
                    "is not a parameter: this route takes none".to_string()
                } else {
                    format!("is not a parameter of this route ({})", known.join(", "))
                };
                errors.push(FieldError::new(k.as_ref(), message));
            }
            params.insert(k.into_owned(), v.trim().to_string());
        }
        Query { params, errors }
    }

    fn get(&self, field: &str) -> Option<&str> {
        self.params
            .get(field)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    fn fail(&mut self, field: &str, message: impl Into<String>) {
        self.errors.push(FieldError::new(field, message));
    }

    /// Comma-separated values, each one of `allowed`; `None` when absent.
    fn any_of(&mut self, field: &str, allowed: &[&str]) -> Option<HashSet<String>> {
        let raw = self.get(field)?.to_string();
        let values: HashSet<String> = raw.split(',').map(|s| s.trim().to_string()).collect();
        if values.iter().any(|v| !allowed.contains(&v.as_str())) {
            self.fail(
                field,
                format!(
                    "must be one or more of {}, separated by commas",
                    allowed.join(", ")
                ),
            );
            return None;
        }
        Some(values)
    }

    /// A wallet address in any form, as the raw form the read models key wallets by.
    fn wallet(&mut self, field: &str) -> Option<String> {
        let raw = self.get(field)?.to_string();
        match ParsedAddress::parse(&raw) {
            Ok(a) => Some(address::raw(&a.address)),
            Err(e) => {
                self.fail(field, e.to_string());
                None
            }
        }
    }

    fn flag(&mut self, field: &str) -> bool {
        match self.get(field) {
            None | Some("false") | Some("0") => false,
            Some("true") | Some("1") => true,
            Some(_) => {
                self.fail(field, "must be true or false");
                false
            }
        }
    }

    fn number(&mut self, field: &str, default: usize, min: usize, max: usize) -> usize {
        let Some(raw) = self.get(field) else {
            return default;
        };
        match raw.parse::<usize>() {
            Ok(n) if (min..=max).contains(&n) => n,
            _ => {
                self.fail(field, format!("must be a whole number from {min} to {max}"));
                default
            }
        }
    }

    /// `limit` and `offset`.
    fn page(&mut self) -> Page {
        Page {
            limit: self.number("limit", DEFAULT_LIMIT, 1, MAX_LIMIT),
            offset: self.number("offset", 0, 0, u32::MAX as usize),
        }
    }

    fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::validation(self.errors))
        }
    }
}

#[derive(Clone, Copy)]
struct Page {
    limit: usize,
    offset: usize,
}

impl Page {
    /// A page the read models answered, with the total.
    fn answer<T>(self, page: readmodel::Page<T>, view: impl Fn(&T) -> Value) -> Value {
        let items: Vec<Value> = page.items.iter().map(view).collect();
        json!({"items": items, "total": page.total, "limit": self.limit, "offset": self.offset})
    }

    fn offset(&self) -> u64 {
        self.offset as u64
    }

    fn limit(&self) -> u64 {
        self.limit as u64
    }
}

fn store_error(e: crate::store::StoreError) -> ApiError {
    ApiError::from(CoreError::Store(e))
}

const ORDER_STATUSES: [&str; 7] = crate::domain::OrderStatus::NAMES;
const REQUEST_STATUSES: [&str; 5] = ["queued", "processing", "completed", "failed", "timeout"];

/// Orders
///
/// Orders, newest first, filtered by status, mode and paying wallet. A misspelt parameter is
/// refused rather than ignored.
#[utoipa::path(get, path = "/admin/orders", tag = "admin", operation_id = "admin_orders",
    security(("admin_key" = [])),
    params(
        ("status" = Option<String>, Query, description = "`created`, `queued`, `processing`, `success`, `failed`, `expired`, `cancelled`, or several separated by commas"),
        ("mode" = Option<String>, Query, description = "`kyc`, `no_kyc`, or both separated by a comma"),
        ("wallet_address" = Option<String>, Query, description = "The wallet that paid, in any TON address form"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "Page size, default 50"),
        ("offset" = Option<u32>, Query, minimum = 0, description = "Items to skip, default 0"),
    ),
    responses((status = 200, description = "A page of orders", body = doc::Envelope<doc::OrderPage>), errors::AdminList))]
// Order ids are UUIDv7, so key order is creation order.
async fn orders(state: web::Data<AppState>, req: HttpRequest) -> Reply {
    let mut q = Query::parse(
        &req,
        &["status", "mode", "wallet_address", "limit", "offset"],
    );
    let statuses = q.any_of("status", &ORDER_STATUSES);
    let modes = q.any_of("mode", &["kyc", "no_kyc"]);
    let wallet = q.wallet("wallet_address");
    let page = q.page();
    q.finish()?;
    let filter = OrderFilter {
        statuses: statuses.map(|s| s.into_iter().collect()),
        modes: modes.map(|m| {
            m.iter()
                .map(|m| match m.as_str() {
                    "kyc" => OrderMode::Kyc,
                    _ => OrderMode::NoKyc,
                })
                .collect()
        }),
        wallet,
        delivery_confirmed: None,
        before: None,
    };
    let orders = state
        .core
        .projections()
        .tables()
        .orders(filter, page.offset(), page.limit())
        .await
        .map_err(store_error)?;
    ok(page.answer(orders, |o| views::value(views::order(o))))
}

/// Unconfirmed deliveries
///
/// Orders paid for whose delivery Fragment never confirmed (`delivery_confirmed: false`): the
/// operator's list to follow up with Fragment.
#[utoipa::path(get, path = "/admin/orders/unconfirmed", tag = "admin", operation_id = "admin_unconfirmed",
    security(("admin_key" = [])),
    params(
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "Page size, default 50"),
        ("offset" = Option<u32>, Query, minimum = 0, description = "Items to skip, default 0"),
    ),
    responses((status = 200, description = "A page of orders", body = doc::Envelope<doc::OrderPage>), errors::AdminList))]
async fn unconfirmed(state: web::Data<AppState>, req: HttpRequest) -> Reply {
    let mut q = Query::parse(&req, &["limit", "offset"]);
    let page = q.page();
    q.finish()?;
    let filter = OrderFilter {
        delivery_confirmed: Some(Some(false)),
        ..OrderFilter::default()
    };
    let orders = state
        .core
        .projections()
        .tables()
        .orders(filter, page.offset(), page.limit())
        .await
        .map_err(store_error)?;
    ok(page.answer(orders, |o| views::value(views::order(o))))
}

/// Payment requests
///
/// Queue requests, newest first, filtered by status and paying wallet; `position` while
/// queued.
#[utoipa::path(get, path = "/admin/requests", tag = "admin", operation_id = "admin_requests",
    security(("admin_key" = [])),
    params(
        ("status" = Option<String>, Query, description = "`queued`, `processing`, `completed`, `failed`, `timeout`, or several separated by commas"),
        ("wallet_address" = Option<String>, Query, description = "The paying wallet, in any TON address form"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "Page size, default 50"),
        ("offset" = Option<u32>, Query, minimum = 0, description = "Items to skip, default 0"),
    ),
    responses((status = 200, description = "A page of requests", body = doc::Envelope<doc::RequestPage>), errors::AdminList))]
// Request ids are UUIDv7: key order is creation order.
async fn requests(state: web::Data<AppState>, req: HttpRequest) -> Reply {
    let mut q = Query::parse(&req, &["status", "wallet_address", "limit", "offset"]);
    let statuses = q.any_of("status", &REQUEST_STATUSES);
    let wallet = q.wallet("wallet_address");
    let page = q.page();
    q.finish()?;
    let filter = RequestFilter {
        statuses: statuses.map(|s| s.iter().filter_map(|s| RequestStatus::parse(s)).collect()),
        wallet,
    };
    let runner = state.core.projections();
    let requests = runner
        .tables()
        .requests(filter, page.offset(), page.limit())
        .await
        .map_err(store_error)?;
    let live = runner.live();
    ok(page.answer(requests, |r: &RequestView| {
        let position = live.queue.position(&r.request_id);
        let wait = position.map_or(0, |p| live.queue.estimated_wait_seconds(p));
        views::value(views::request(r, position, wait))
    }))
}

fn friendly(state: &AppState, raw: &str) -> Option<String> {
    ParsedAddress::parse(raw)
        .ok()
        .map(|a| address::friendly(&a.address, false, state.wallet_network.is_testnet()))
}

fn wallet_commission(state: &AppState, raw: &str, c: &WalletCommission) -> Value {
    let debt_limit = state.core.policy().debt_limit_nanoton;
    let mut account = views::commission_account(friendly(state, raw), raw, c, debt_limit);
    account.insert("failed_collections".into(), json!(c.failed_collections));
    account.insert("updated_at".into(), json!(c.updated_at.map(views::time)));
    Value::Object(account)
}

/// Commission
///
/// The operator's commission totals and the wallets that owe (with `all=true`, every wallet
/// ever charged), largest debt first.
#[utoipa::path(get, path = "/admin/commission", tag = "admin", operation_id = "admin_commission",
    security(("admin_key" = [])),
    params(
        ("all" = Option<bool>, Query, description = "`true`: every wallet ever charged, not only those that owe now"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "Page size, default 50"),
        ("offset" = Option<u32>, Query, minimum = 0, description = "Items to skip, default 0"),
    ),
    responses((status = 200, description = "Totals, rates and a page of wallets", body = doc::Envelope<doc::CommissionReport>), errors::AdminList))]
async fn commission(state: web::Data<AppState>, req: HttpRequest) -> Reply {
    let mut q = Query::parse(&req, &["all", "limit", "offset"]);
    let all = q.flag("all");
    let page = q.page();
    q.finish()?;
    let runner = state.core.projections();
    let wallets = runner
        .tables()
        .wallets(!all, page.offset(), page.limit())
        .await
        .map_err(store_error)?;
    let live = runner.live();
    let t = &live.totals;
    let mut data = page.answer(wallets, |(raw, c)| wallet_commission(&state, raw, c));
    let p = state.core.policy();
    data["totals"] = json!({
        "accrued_ton": views::ton(t.accrued_nanoton),
        "collected_ton": views::ton(t.collected_nanoton),
        "settled_ton": views::ton(t.settled_nanoton),
        "outstanding_ton": views::ton(t.outstanding_nanoton),
        "wallets_with_debt": t.wallets_with_debt,
        "failed_collections": t.failed_collections,
    });
    data["rate_no_kyc_decimal"] = views::rate(p.rate_no_kyc);
    data["rate_with_kyc_decimal"] = views::rate(p.rate_kyc);
    data["collection_threshold_ton"] = json!(views::ton(p.collection_threshold_nanoton));
    data["debt_limit_ton"] = json!(views::ton(p.debt_limit_nanoton));
    ok(data)
}

fn audit_event(line: &AuditLine) -> Value {
    json!({
        "position": line.position,
        "version": line.version,
        "recorded_at": views::time(line.recorded_at),
        "event_type": line.event_type,
        "schema_version": line.schema_version,
        "summary": line.summary,
        "correlation_id": line.correlation_id,
        "causation_id": line.causation_id,
        "data": line.data,
    })
}

fn ops_error(e: OpsError, target: &AuditTarget) -> ApiError {
    match e {
        OpsError::NotFound(what) => match target {
            AuditTarget::Order { .. } => {
                ApiError::new(404, "ORDER_NOT_FOUND", format!("no events for {what}"))
            }
            AuditTarget::Wallet { .. } | AuditTarget::IdempotencyKey { .. } => {
                ApiError::not_found(format!("no events for {what}"))
            }
        },
        OpsError::BadTarget(_) => {
            ApiError::validation(vec![FieldError::new("target", e.to_string())])
        }
        OpsError::Store(e) => CoreError::Store(e).into(),
        other => ApiError::internal(&other),
    }
}

/// Audit
///
/// The history of an order id, a wallet address (any form) or a stream name: its events, and
/// for a wallet its commission account and the orders it paid for.
#[utoipa::path(get, path = "/admin/audit/{target}", tag = "admin", operation_id = "admin_audit",
    security(("admin_key" = [])),
    params(("target" = String, Path, description = "An order id, a wallet address (raw or URL-safe friendly form), or a stream name")),
    responses((status = 200, description = "The target's events", body = doc::Envelope<doc::Audit>), errors::AdminAudit))]
async fn audit(state: web::Data<AppState>, path: web::Path<String>, req: HttpRequest) -> Reply {
    Query::parse(&req, &[]).finish()?;
    let target = AuditTarget::parse(&path)
        .map_err(|e| ApiError::validation(vec![FieldError::new("target", e.to_string())]))?;
    let report = ops::audit(
        state.core.store(),
        state.core.projections().tables().as_ref(),
        target.clone(),
        true,
    )
    .await
    .map_err(|e| ops_error(e, &target))?;
    let commission = match (&report.target, &report.commission) {
        (AuditTarget::Wallet { address }, Some(c)) => wallet_commission(&state, address, c),
        _ => Value::Null,
    };
    ok(json!({
        "target": report.target,
        "stream": report.stream,
        "events": report.events.iter().map(audit_event).collect::<Vec<_>>(),
        "commission": commission,
        "orders": report.orders.iter().map(views::history_item).collect::<Vec<_>>(),
    }))
}

/// A stream's events
///
/// One stream's events, by its name (`order-<uuid>`, `wallet-<workchain>:<hex>`).
#[utoipa::path(get, path = "/admin/streams/{stream}/events", tag = "admin", operation_id = "admin_stream_events",
    security(("admin_key" = [])),
    params(("stream" = String, Path, description = "`order-<uuid>` or `wallet-<workchain>:<64 hex digits>`")),
    responses((status = 200, description = "The stream's events", body = doc::Envelope<doc::StreamEvents>), errors::AdminStream))]
async fn stream_events(
    state: web::Data<AppState>,
    path: web::Path<String>,
    req: HttpRequest,
) -> Reply {
    Query::parse(&req, &[]).finish()?;
    let stream = StreamName::parse(path.trim()).map_err(|_| {
        ApiError::validation(vec![FieldError::new(
            "stream",
            "must be a stream name: order-<uuid> or wallet-<workchain>:<64 hex digits>",
        )])
    })?;
    let name = stream.to_string();
    let recorded = read_stream_all(state.core.store().as_ref(), &name)
        .await
        .map_err(|e| ApiError::from(CoreError::Store(e)))?;
    if recorded.is_empty() {
        return Err(ApiError::not_found(format!("no events in stream {name}")));
    }
    let events: Vec<Value> = recorded
        .iter()
        .map(|r| audit_event(&ops::audit_line(r)))
        .collect();
    ok(json!({"stream": name, "version": recorded.len(), "events": events}))
}

/// Replace the owner's cookies
///
/// Replaces the operator's Fragment sessions used for no-KYC orders, at once and in memory
/// only. Body: `{"fragment_cookies": [<base64>, …]}`; one string instead of the list, or the
/// string or list alone, also works. An empty list turns no-KYC orders off.
#[utoipa::path(post, path = "/admin/owner-cookies", tag = "admin", operation_id = "admin_owner_cookies",
    security(("admin_key" = [])),
    request_body = doc::OwnerCookiesBody,
    responses((status = 200, description = "The sessions now in use", body = doc::Envelope<doc::OwnerCookiesReplaced>), errors::AdminOwnerCookies))]
async fn owner_cookies(state: web::Data<AppState>, body: SecretJson, req: HttpRequest) -> Reply {
    // A misspelt option (`?dry_run=1`) must not replace the sessions for real.
    Query::parse(&req, &[]).finish()?;
    let given = match body.0 {
        Body::Object { mut secrets, .. } => secrets
            .take("fragment_cookies")
            .unwrap_or(SecretValue::Null),
        Body::Other(value) => value,
    };
    // Each value was parsed from the body straight into a buffer wiped on drop (`secret`).
    let encoded: Vec<Secret> = match given {
        SecretValue::Text(s) => vec![s],
        SecretValue::List(items) => {
            let mut out = Vec::with_capacity(items.len());
            let mut errors = vec![];
            for (i, item) in items.into_iter().enumerate() {
                match item {
                    SecretValue::Text(s) => out.push(s),
                    _ => errors.push(FieldError::new(
                        format!("fragment_cookies[{i}]"),
                        "must be a string: the base64 of the cookies' JSON",
                    )),
                }
            }
            if !errors.is_empty() {
                return Err(ApiError::validation(errors));
            }
            out
        }
        SecretValue::Null => {
            return Err(ApiError::validation(vec![FieldError::new(
                "fragment_cookies",
                "is required: a list of the operator's fragment_cookies (base64 of the cookies' JSON), one per session",
            )]))
        }
        SecretValue::Other => {
            return Err(ApiError::validation(vec![FieldError::new(
                "fragment_cookies",
                "must be a base64 string or a list of them",
            )]))
        }
    };
    let mut cookies = Vec::with_capacity(encoded.len());
    let mut errors = vec![];
    for (i, e) in encoded.iter().enumerate() {
        match FragmentCookies::parse_kyc(e.expose().trim()) {
            Ok(c) => cookies.push(c),
            // Cookie errors name cookies, never values.
            Err(err) => errors.push(FieldError::new(
                format!("fragment_cookies[{i}]"),
                err.to_string(),
            )),
        }
    }
    drop(encoded);
    if !errors.is_empty() {
        return Err(ApiError {
            details: errors,
            ..ApiError::new(
                400,
                "INVALID_COOKIES",
                "Invalid cookies: every session needs stel_ssid, stel_token and stel_ton_token; the sessions were not replaced",
            )
        });
    }
    let r = state.core.replace_owner_sessions(cookies);
    tracing::info!(
        sessions = r.sessions,
        previous = r.previous,
        kept = r.kept,
        "the operator's Fragment sessions were replaced"
    );
    ok(json!({
        "sessions": r.sessions,
        "previous_sessions": r.previous,
        "kept_sessions": r.kept,
        "duplicates_ignored": r.duplicates,
        "no_kyc_available": r.sessions > 0,
        "message": "the operator's Fragment sessions were replaced; payments already running finish on the sessions they started with",
    }))
}

/// Rebuild the read models
///
/// Folds the log from position 0 up to where the live read models are and compares; with
/// `replace=true`, a rebuild that differs takes the live models' place.
#[utoipa::path(post, path = "/admin/projections/rebuild", tag = "admin", operation_id = "admin_rebuild",
    security(("admin_key" = [])),
    params(("replace" = Option<bool>, Query, description = "`true`: replace the live read models when they differ")),
    responses((status = 200, description = "The comparison", body = doc::Envelope<doc::RebuildReport>), errors::AdminRebuild))]
async fn rebuild(state: web::Data<AppState>, req: HttpRequest) -> Reply {
    let mut q = Query::parse(&req, &["replace"]);
    let replace = q.flag("replace");
    q.finish()?;
    let runner = state.core.projections();
    let rebuilt = runner.rebuild(replace).await.map_err(store_error)?;
    let c = &rebuilt.comparison;
    let equal = c.equal();
    let differing: Vec<&str> = [
        ("orders", "order "),
        ("requests", "request "),
        ("wallets", "wallet "),
        ("summary", "summary:"),
    ]
    .into_iter()
    .filter(|(_, prefix)| c.differences.iter().any(|d| d.starts_with(prefix)))
    .map(|(name, _)| name)
    .collect();
    if !equal {
        tracing::warn!(
            position = rebuilt.position,
            differing = ?differing,
            rows = c.differing,
            replaced = rebuilt.replaced,
            "the live read models differ from a rebuild from the log"
        );
    }
    let message = match (equal, replace, rebuilt.replaced) {
        (true, _, _) => "the live read models equal a rebuild from the log",
        (false, false, _) => "the live read models DIFFER from a rebuild from the log; ?replace=true puts the rebuild in their place",
        (false, true, _) => "the live read models differed from a rebuild from the log and were replaced by it",
    };
    ok(json!({
        "position": rebuilt.position,
        "live_position": runner.position(),
        "equal": equal,
        "differing": differing,
        "differences": c.differences,
        "replaced": rebuilt.replaced,
        "counts": {
            "orders": c.orders,
            "requests": c.requests,
            "wallets": c.wallets,
            "skipped": c.skipped,
        },
        "elapsed_ms": rebuilt.elapsed_ms,
        "message": message,
    }))
}

/// Longest settlement reference kept (it is stored in the event).
const MAX_REFERENCE: usize = 200;

/// Settle a debt
///
/// Records that a wallet paid (part of) its commission debt outside a purchase (a
/// `DebtSettled` event). The reference is stored in the event: no secrets in it.
#[utoipa::path(post, path = "/admin/wallets/{address}/settle", tag = "admin", operation_id = "admin_settle",
    security(("admin_key" = [])),
    params(doc::IdempotencyKeyHeader, ("address" = String, Path, description = "The wallet, in any TON address form")),
    request_body = doc::SettleBody,
    responses((status = 200, description = "The wallet's account after the settlement", body = doc::Envelope<doc::Settled>, headers(("Idempotent-Replayed" = bool, description = "`true` on a retry's copy of the first answer"))), errors::AdminSettle))]
async fn settle(
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<Value>,
    req: HttpRequest,
) -> Reply {
    Query::parse(&req, &[]).finish()?;
    let mut errors = vec![];
    let wallet = match ParsedAddress::parse(&path) {
        Ok(a) => Some(a),
        Err(e) => {
            errors.push(FieldError::new("address", e.to_string()));
            None
        }
    };
    let Value::Object(body) = body.into_inner() else {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    };
    let text = |field: &str, errors: &mut Vec<FieldError>| match body.get(field) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
        None | Some(Value::Null) => {
            errors.push(FieldError::new(field, "is required"));
            None
        }
        Some(Value::String(_)) => {
            errors.push(FieldError::new(field, "must not be empty"));
            None
        }
        Some(_) => {
            errors.push(FieldError::new(field, "must be a string"));
            None
        }
    };
    let amount = text("amount_ton", &mut errors).and_then(|s| match Nanoton::parse_ton(&s) {
        Ok(n) if !n.is_zero() => Some(n),
        Ok(_) => {
            errors.push(FieldError::new("amount_ton", "must be more than 0"));
            None
        }
        Err(e) => {
            errors.push(FieldError::new("amount_ton", e.to_string()));
            None
        }
    });
    let reference = text("reference", &mut errors).and_then(|r| {
        if r.chars().count() > MAX_REFERENCE || r.chars().any(char::is_control) {
            errors.push(FieldError::new(
                "reference",
                format!("must be at most {MAX_REFERENCE} characters, without control characters"),
            ));
            None
        } else {
            Some(r)
        }
    });
    let key = match body.get(super::idempotent::FIELD) {
        None | Some(Value::Null) => super::idempotent::key(&req, None),
        Some(Value::String(s)) => super::idempotent::key(&req, Some(s.clone())),
        Some(_) => Err(FieldError::new(
            super::idempotent::FIELD,
            "must be a string",
        )),
    }
    .unwrap_or_else(|e| {
        errors.push(e);
        None
    });
    let (Some(wallet), Some(amount), Some(reference)) = (wallet, amount, reference) else {
        return Err(ApiError::validation(errors));
    };
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let raw = address::raw(&wallet.address);
    let keyed = key.map(|key| {
        let mut fingerprint = state.idempotency.fingerprint("admin.settle");
        fingerprint
            .field("wallet", &raw)
            .field("amount_nanoton", amount.as_u64().to_string())
            .field("reference", &reference);
        crate::idempotency::Keyed {
            key,
            scope: crate::idempotency::Scope::Admin,
            operation: "admin.settle",
            fingerprint,
            creates_order: false,
        }
    });
    let work_state = state.clone();
    super::idempotent::run(state, keyed, move |_| async move {
        settle_debt(work_state, wallet, raw, amount, reference).await
    })
    .await
}

/// Records a settlement `settle` validated.
async fn settle_debt(
    state: web::Data<AppState>,
    wallet: ParsedAddress,
    raw: String,
    amount: Nanoton,
    reference: String,
) -> Reply {
    let command = WalletCommand::SettleDebt {
        amount_nanoton: amount,
        reference,
        now: Utc::now(),
    };
    let (after, position) = state
        .core
        .registry()
        .wallet(&raw, command, EventMetadata::correlated(Uuid::now_v7()))
        .await
        .map_err(|e| match e {
            CoreError::Domain(DomainError::SettlementExceedsDebt { debt_nanoton, .. }) => {
                ApiError::validation(vec![FieldError::new(
                    "amount_ton",
                    format!(
                        "is more than the wallet's debt of {} TON",
                        views::ton(debt_nanoton)
                    ),
                )])
            }
            CoreError::Domain(e @ DomainError::SettlementReferenceReused { .. }) => {
                ApiError::validation(vec![FieldError::new("reference", e.to_string())])
            }
            other => other.into(),
        })?;
    // The lists and balances read right after this answer show the settlement.
    state
        .core
        .projections()
        .wait_for(position.unwrap_or(0))
        .await;
    let policy = state.core.policy();
    let testnet = state.wallet_network.is_testnet();
    ok(json!({
        "wallet_address": address::friendly(&wallet.address, false, testnet),
        "wallet_address_raw": raw,
        "settled_ton": views::ton(amount),
        "debt_ton": views::ton(after.debt_nanoton),
        "settled_total_ton": views::ton(after.settled_total_nanoton),
        "debt_limit_exceeded": after.debt_nanoton > policy.debt_limit_nanoton,
        // A retry of a settlement already recorded under this reference changed nothing.
        "already_recorded": position.is_none(),
    }))
}

/// A webhook delivery and its attempts (those of `attempts` that are its), as the admin API
/// shows it.
fn delivery_view(
    d: &crate::webhooks::outbox::Delivery,
    attempts: &[crate::webhooks::outbox::Attempt],
) -> Value {
    json!({
        "event_id": d.event_id,
        "order_id": d.order_id,
        "type": d.kind,
        "url": d.url,
        "status": d.status,
        "created_at": d.created_at,
        "attempts": d.attempts,
        "next_attempt_at": (d.status == "pending").then_some(d.next_attempt_at),
        "last_error": d.last_error,
        "delivered_at": d.delivered_at,
        "attempt_log": attempts.iter().filter(|a| a.event_id == d.event_id).map(|a| json!({
            "attempt": a.attempt,
            "at": a.at,
            "status_code": a.status_code,
            "error": a.error,
            "duration_ms": a.duration_ms,
        })).collect::<Vec<_>>(),
    })
}

/// Webhook deliveries
///
/// Deliveries owed to receivers, newest first, each with its attempts (status code or
/// error, duration).
#[utoipa::path(get, path = "/admin/webhooks", tag = "admin", operation_id = "admin_webhooks",
    security(("admin_key" = [])),
    params(
        ("status" = Option<String>, Query, description = "`pending`, `delivered` or `failed` (given up after the retry window)"),
        ("order_id" = Option<uuid::Uuid>, Query, description = "Only this order's"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "Page size, default 50"),
        ("offset" = Option<u32>, Query, minimum = 0, description = "Items to skip, default 0"),
    ),
    responses((status = 200, description = "A page of deliveries", body = doc::Envelope<doc::DeliveryPage>), errors::AdminList))]
async fn webhooks(state: web::Data<AppState>, req: HttpRequest) -> Reply {
    let mut q = Query::parse(&req, &["status", "order_id", "limit", "offset"]);
    let status = q.get("status").map(str::to_string);
    if let Some(s) = &status {
        if !["pending", "delivered", "failed"].contains(&s.as_str()) {
            q.fail("status", "must be pending, delivered or failed");
        }
    }
    let order_id = match q.get("order_id").map(uuid::Uuid::parse_str) {
        None => None,
        Some(Ok(id)) => Some(id),
        Some(Err(_)) => {
            q.fail("order_id", "is not a UUID");
            None
        }
    };
    let page = q.page();
    q.finish()?;
    let outbox = &state.webhooks.outbox;
    let list = outbox
        .list(status, order_id, page.offset(), page.limit())
        .await
        .map_err(store_error)?;
    let ids = list.items.iter().map(|d| d.event_id).collect();
    let attempts = outbox.attempts(ids).await.map_err(store_error)?;
    let items: Vec<Value> = list
        .items
        .iter()
        .map(|d| delivery_view(d, &attempts))
        .collect();
    ok(json!({"items": items, "total": list.total, "limit": page.limit, "offset": page.offset}))
}

/// Redeliver a webhook
///
/// Sends a delivery again now (delivered, given up or pending alike); its attempts so far
/// stay in its log.
#[utoipa::path(post, path = "/admin/webhooks/{event_id}/redeliver", tag = "admin", operation_id = "admin_redeliver",
    security(("admin_key" = [])),
    params(("event_id" = uuid::Uuid, Path, description = "The delivery's event id")),
    request_body = doc::EmptyBody,
    responses((status = 200, description = "The delivery, pending", body = doc::Envelope<doc::Delivery>), errors::AdminStream))]
async fn redeliver(state: web::Data<AppState>, path: web::Path<String>, req: HttpRequest) -> Reply {
    Query::parse(&req, &[]).finish()?;
    let Ok(event_id) = uuid::Uuid::parse_str(path.trim()) else {
        return Err(ApiError::not_found(
            "no webhook delivery has this id (not a UUID)",
        ));
    };
    let outbox = &state.webhooks.outbox;
    if !outbox
        .redeliver(event_id, Utc::now())
        .await
        .map_err(store_error)?
    {
        return Err(ApiError::not_found(format!(
            "no webhook delivery of event {event_id}"
        )));
    }
    state.webhooks.wake.notify_one();
    let d = outbox
        .get(event_id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::not_found(format!("no webhook delivery of event {event_id}")))?;
    let attempts = outbox.attempts(vec![event_id]).await.map_err(store_error)?;
    ok(delivery_view(&d, &attempts))
}
