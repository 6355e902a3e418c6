//! The OpenAPI 3.1 document of the API (`GET /openapi.json`), generated from the code:
//! `#[utoipa::path]` on each handler in `routes` (client) and `admin` says its method, path,
//! parameters, body and answers; this module holds the schemas those name, the error tables,
//! and assembles the document.
//!
//! Handlers read bodies as `Value` (to name every invalid field at once) and build answers as
//! `Value`, so the structs here describe JSON and are never serialized. tests/openapi.rs keeps
//! them honest: it checks that the document covers exactly `api::all_routes()` (the client
//! and admin route tables) and that real answers carry exactly the documented properties.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use actix_web::HttpResponse;
use utoipa::openapi::path::{HttpMethod, Operation, PathItem};
use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::{HeaderBuilder, OpenApi as Document, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{OpenApi, ToSchema};

use super::{admin, all_routes, routes};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "fragment-gateway",
        version = env!("CARGO_PKG_VERSION"),
        description = "Self-hostable gateway for buying Telegram Stars and gifting Telegram \
Premium through fragment.com, paid in TON from the client's own wallet.\n\n\
Every answer is an envelope: `{\"success\": true, \"data\": …}` or `{\"success\": false, \
\"error\": {\"code\", \"error_code\", \"message\", \"details\"}}` (`ErrorEnvelope`); each \
operation lists the `error_code`s it can answer with. Two answers also mirror fields at the top \
level for the original service's clients (prices, Premium eligibility); this document itself is \
served as is. Money is a decimal string of TON (up to 9 \
fraction digits), rates are JSON numbers, times are RFC 3339 UTC strings.\n\n\
Buying takes two steps (create an order at Fragment's price, then pay it with the wallet's \
`seed`) or one (`…/buy`). A payment is queued; poll `GET /api/v1/queue/{request_id}` until it is \
`completed`, `failed` or `timeout`. Requests under `/api/` are rate-limited per IP (429 with \
`Retry-After`), except polling a queue request. A seed is never accepted in a URL.",
        license(name = "MIT"),
    ),
    paths(
        routes::health,
        openapi_json,
        routes::stars_create,
        routes::premium_create,
        routes::pay_from_body,
        routes::pay_from_path,
        routes::cancel_order,
        routes::create_checkout,
        routes::get_checkout,
        routes::submit_checkout,
        routes::list_orders,
        routes::stars_buy,
        routes::premium_buy,
        routes::get_order,
        routes::queue_status,
        routes::get_request,
        routes::queue_length,
        routes::premium_eligibility,
        routes::wallet_resolve,
        routes::wallet_balance,
        routes::commission_balance,
        routes::commission_rates,
        routes::transactions,
        routes::prices,
        admin::orders,
        admin::unconfirmed,
        admin::requests,
        admin::audit,
        admin::stream_events,
        admin::commission,
        admin::owner_cookies,
        admin::rebuild,
        admin::settle,
        admin::webhooks,
        admin::redeliver,
    ),
    components(schemas(ErrorEnvelope, ErrorCode, Ton)),
    modifiers(&AdminKey),
    tags(
        (name = "orders", description = "Stars orders: create and pay in two steps, or buy in one; read an order"),
        (name = "premium", description = "Premium gifts: eligibility, orders, one-shot buys"),
        (name = "checkout", description = "Pay without a seed: a TON Connect transaction the client's own wallet signs, \
submitted back signed; the gateway checks it before it broadcasts it"),
        (name = "queue", description = "Payment requests waiting or running, and queue statistics"),
        (name = "wallet", description = "The client's wallet: which one a seed pays from, its balance, its purchases"),
        (name = "commission", description = "The operator's commission: rates and a wallet's debt"),
        (name = "prices", description = "Fragment's current prices"),
        (name = "health", description = "Service status and this document"),
        (name = "admin", description = "The operator's API: lists, audit, commission, owner cookies, read models. \
Every route needs the `X-Admin-Key` header; it is off (401) when no key is configured. Wrong keys \
are limited per IP address (429 with `Retry-After`, even with the right key). See docs/admin-api.md."),
    ),
)]
struct ApiDoc;

/// The admin API's `X-Admin-Key` header, as a security scheme its operations name.
struct AdminKey;

impl utoipa::Modify for AdminKey {
    fn modify(&self, doc: &mut Document) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Admin-Key",
                "The operator's admin key (`admin.key`, `FG_ADMIN__KEY`)",
            ))),
        );
    }
}

/// The document: the handlers' operations, plus each alias route of the route tables
/// (`api::all_routes`) as a copy of its handler's documented operation.
pub fn document() -> Document {
    let mut doc = ApiDoc::openapi();
    let documented: Vec<(String, HttpMethod, Operation)> = doc
        .paths
        .paths
        .iter()
        .flat_map(|(path, item)| {
            operations(item)
                .into_iter()
                .map(move |(method, op)| (path.clone(), method, op.clone()))
        })
        .collect();
    for route in all_routes() {
        let Some(method) = http_method(route.method) else {
            continue;
        };
        let present = doc
            .paths
            .paths
            .get(route.path)
            .is_some_and(|item| operations(item).iter().any(|(m, _)| *m == method));
        if present {
            continue;
        }
        // An alias: the route of a handler documented under another path. A route whose handler
        // is not documented at all stays out, for the test to name.
        let Some((canonical, _, op)) = documented
            .iter()
            .find(|(_, m, op)| *m == method && op.operation_id.as_deref() == Some(route.handler))
        else {
            continue;
        };
        let mut op = op.clone();
        op.operation_id = Some(format!("{}_{}", route.method, slug(route.path)));
        op.description = Some(format!(
            "Alias of `{} {canonical}`.\n\n{}",
            route.method.to_uppercase(),
            op.description.unwrap_or_default()
        ));
        let item = doc
            .paths
            .paths
            .entry(route.path.to_string())
            .or_insert_with(|| PathItem::new(method.clone(), Operation::new()));
        set_operation(item, &method, op);
    }
    doc
}

static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    document()
        .to_json()
        .expect("the OpenAPI document serializes")
});

/// The OpenAPI document
///
/// This document, as JSON (not in the envelope). It is not rate-limited.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "health",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json", body = Object),
        errors::Health,
    )
)]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(DOCUMENT.as_str())
}

fn http_method(method: &str) -> Option<HttpMethod> {
    match method {
        "get" => Some(HttpMethod::Get),
        "post" => Some(HttpMethod::Post),
        "put" => Some(HttpMethod::Put),
        "delete" => Some(HttpMethod::Delete),
        "patch" => Some(HttpMethod::Patch),
        _ => None,
    }
}

fn operations(item: &PathItem) -> Vec<(HttpMethod, &Operation)> {
    [
        (HttpMethod::Get, &item.get),
        (HttpMethod::Post, &item.post),
        (HttpMethod::Put, &item.put),
        (HttpMethod::Delete, &item.delete),
        (HttpMethod::Patch, &item.patch),
    ]
    .into_iter()
    .filter_map(|(m, op)| op.as_ref().map(|op| (m, op)))
    .collect()
}

fn set_operation(item: &mut PathItem, method: &HttpMethod, op: Operation) {
    let slot = match method {
        HttpMethod::Get => &mut item.get,
        HttpMethod::Post => &mut item.post,
        HttpMethod::Put => &mut item.put,
        HttpMethod::Delete => &mut item.delete,
        _ => &mut item.patch,
    };
    *slot = Some(op);
}

/// `/api/v1/orders/stars` → `orders_stars`: unique operation ids for aliases.
fn slug(path: &str) -> String {
    path.trim_start_matches("/api/v1/")
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("_")
}

// ---------------------------------------------------------------------------------------------
// Small schemas used through `schema_with`.

fn always(value: bool) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Boolean)
        .enum_values(Some([value]))
}

fn always_true() -> Schema {
    always(true).build().into()
}

fn always_false() -> Schema {
    always(false).build().into()
}

fn months() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .enum_values(Some([3, 6, 12]))
        .description(Some("Months of Premium: 3, 6 or 12"))
        .build()
        .into()
}

fn optional_months() -> Schema {
    ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
            Type::Integer,
            Type::Null,
        ]))
        .enum_values(Some([
            serde_json::json!(3),
            serde_json::json!(6),
            serde_json::json!(12),
            serde_json::Value::Null,
        ]))
        .description(Some("Months of Premium: 3, 6 or 12"))
        .build()
        .into()
}

// ---------------------------------------------------------------------------------------------
// The envelopes.

/// A successful answer.
#[derive(ToSchema)]
pub struct Envelope<T> {
    /// Always `true`.
    #[schema(schema_with = always_true)]
    pub success: bool,
    pub data: T,
}

/// A failed answer. `code` repeats the HTTP status; `details` names each invalid field (it may
/// be empty). 429, 502 (FRAGMENT_ERROR) and 503 carry a `Retry-After` header (seconds).
#[derive(ToSchema)]
pub struct ErrorEnvelope {
    /// Always `false`.
    #[schema(schema_with = always_false)]
    pub success: bool,
    pub error: ErrorBody,
}

#[derive(ToSchema)]
pub struct ErrorBody {
    /// The HTTP status.
    #[schema(example = 400)]
    pub code: u16,
    pub error_code: ErrorCode,
    /// What went wrong and what to do, for people; never a secret or an internal detail.
    pub message: String,
    pub details: Vec<FieldError>,
}

/// The `Idempotency-Key` header of every POST that creates, pays or buys.
#[derive(utoipa::IntoParams)]
#[into_params(names("Idempotency-Key"), parameter_in = Header)]
pub struct IdempotencyKeyHeader(
    /// Names this request (1 to 255 visible ASCII characters): a retry with the same key gets
    /// the first answer.
    pub Option<String>,
);

/// One invalid field.
#[derive(ToSchema)]
pub struct FieldError {
    #[schema(example = "amount")]
    pub field: String,
    #[schema(example = "must be between 50 and 1000000")]
    pub message: String,
}

/// Machine-readable error codes:
///
/// - `VALIDATION_ERROR` (400): a field is invalid (`details` names each), or the body is not a
///   JSON object, lacks `Content-Type: application/json`, is too large, or a seed was sent in
///   the URL; also a command that does not fit the order's status.
/// - `INVALID_USERNAME_FORMAT` (400): not `@` + 1–32 of `[A-Za-z0-9_]`.
/// - `INVALID_SEED` (400): the seed is not base64, not UTF-8, or not a valid mnemonic.
/// - `INVALID_COOKIES` (400): `fragment_cookies` is not base64 JSON, lacks a required cookie, or
///   fragment.com rejected it.
/// - `INSUFFICIENT_BALANCE` (400): the wallet holds less than price + commission due + fees
///   (for a USDT purchase: less TON than the transfer's gas + commission due + fees).
/// - `INSUFFICIENT_JETTON_BALANCE` (400): a USDT purchase with too little USDT.
/// - `DEBT_LIMIT_EXCEEDED` (400): the wallet's unpaid commission is over the limit.
/// - `PREMIUM_ALREADY_ACTIVE` (400): the recipient already has Premium.
/// - `ORDER_EXPIRED` (400): paying an order after its `expires_at`.
/// - `ORDER_NOT_CANCELLABLE` (400): cancelling an order that is paid, queued, finished or
///   expired, or whose checkout can still be signed.
/// - `CHECKOUT_REJECTED` (400): a submitted checkout message is not the transaction issued;
///   the message names the failed check (signer, destination, amount, payload, extra message,
///   seqno, validity).
/// - `CHECKOUT_EXPIRED` (400): a checkout submitted after its `valid_until`, which the wallet
///   did not apply (no funds moved).
/// - `UNAUTHORIZED` (401): admin API only.
/// - `USER_NOT_FOUND` (404): Fragment does not know the recipient (or it is a bot or channel).
/// - `ORDER_NOT_FOUND`, `REQUEST_NOT_FOUND` (404): unknown (or malformed) id.
/// - `NOT_FOUND` (404): no such route, or not with this method.
/// - `QUEUE_TIMEOUT` (408): only in a queue request's `error_code`: it waited too long, no
///   funds moved.
/// - `IDEMPOTENCY_KEY_REUSED` (409): the `Idempotency-Key` was used (in the last 24 h, by the
///   same wallet, client address or admin) for a different request; send a new key.
/// - `IDEMPOTENCY_KEY_IN_PROGRESS` (409): the first request under the key is still running;
///   retry after `Retry-After` seconds to get its answer.
/// - `RATE_LIMIT_EXCEEDED` (429): per-IP limit; see `Retry-After`.
/// - `INTERNAL_ERROR` (500): a bug; logged, never detailed.
/// - `OWNER_COOKIES_NOT_CONFIGURED`, `OWNER_COOKIES_EXPIRED` (500): no-KYC mode needs the
///   operator's fragment.com session, which is missing or expired.
/// - `FRAGMENT_ERROR` (502): fragment.com answered with an error or garbage.
/// - `SERVICE_UNAVAILABLE` (503): the store or the TON API is down, or the service is stopping.
#[derive(ToSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
pub enum ErrorCode {
    VALIDATION_ERROR,
    INVALID_USERNAME_FORMAT,
    UNAUTHORIZED,
    INVALID_SEED,
    INVALID_COOKIES,
    INSUFFICIENT_BALANCE,
    INSUFFICIENT_JETTON_BALANCE,
    DEBT_LIMIT_EXCEEDED,
    USER_NOT_FOUND,
    ORDER_NOT_FOUND,
    REQUEST_NOT_FOUND,
    QUEUE_TIMEOUT,
    PREMIUM_ALREADY_ACTIVE,
    ORDER_EXPIRED,
    RATE_LIMIT_EXCEEDED,
    INTERNAL_ERROR,
    FRAGMENT_ERROR,
    SERVICE_UNAVAILABLE,
    OWNER_COOKIES_NOT_CONFIGURED,
    OWNER_COOKIES_EXPIRED,
    NOT_FOUND,
    IDEMPOTENCY_KEY_REUSED,
    IDEMPOTENCY_KEY_IN_PROGRESS,
    ORDER_NOT_CANCELLABLE,
    CHECKOUT_REJECTED,
    CHECKOUT_EXPIRED,
}

/// The error answers of one operation: for each status, the `ErrorEnvelope` narrowed to the
/// `error_code`s that operation can answer with.
fn error_responses(
    spec: &[(u16, &[&str])],
) -> BTreeMap<String, RefOr<utoipa::openapi::response::Response>> {
    spec.iter()
        .map(|(status, codes)| {
            let narrowed = ObjectBuilder::new().schema_type(Type::Object).property(
                "error",
                ObjectBuilder::new()
                    .schema_type(Type::Object)
                    .property(
                        "code",
                        ObjectBuilder::new()
                            .schema_type(Type::Integer)
                            .enum_values(Some([*status])),
                    )
                    .property(
                        "error_code",
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .enum_values(Some(codes.iter().copied())),
                    ),
            );
            let schema = AllOfBuilder::new()
                .item(Ref::from_schema_name("ErrorEnvelope"))
                .item(narrowed)
                .build();
            let schema: RefOr<Schema> = Schema::AllOf(schema).into();
            let reason = actix_web::http::StatusCode::from_u16(*status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("Error");
            let list = codes
                .iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", ");
            let mut response = ResponseBuilder::new()
                .description(format!("{reason}: {list}"))
                .content(
                    "application/json",
                    utoipa::openapi::ContentBuilder::new()
                        .schema(Some(schema))
                        .build(),
                );
            let retry_after = if codes.contains(&"IDEMPOTENCY_KEY_IN_PROGRESS") {
                Some("IDEMPOTENCY_KEY_IN_PROGRESS: seconds until the first request's lease ends")
            } else if matches!(status, 429 | 502 | 503) {
                Some("Seconds to wait before trying again")
            } else {
                None
            };
            if let Some(description) = retry_after {
                response = response.header(
                    "Retry-After",
                    HeaderBuilder::new()
                        .schema(Some(
                            ObjectBuilder::new()
                                .schema_type(Type::Integer)
                                .minimum(Some(1)),
                        ))
                        .description(Some(description))
                        .build(),
                );
            }
            (status.to_string(), RefOr::T(response.build()))
        })
        .collect()
}

/// Declares the error answers of each operation as an `IntoResponses` type. Codes are
/// `ErrorCode` variants, so a misspelt one does not compile.
macro_rules! errors {
    ($($(#[$meta:meta])* $name:ident { $($status:literal => [$($code:ident),+ $(,)?]),+ $(,)? })+) => {
        /// The error answers of each operation (`responses(...)` of `#[utoipa::path]`).
        pub mod errors {
            use super::*;
            $(
                $(#[$meta])*
                pub struct $name;

                impl utoipa::IntoResponses for $name {
                    fn responses() -> BTreeMap<String, RefOr<Response>> {
                        error_responses(&[$(($status, &[$({
                            let _ = ErrorCode::$code;
                            stringify!($code)
                        }),+])),+])
                    }
                }
            )+
        }
    };
}

// Every route can answer 400 VALIDATION_ERROR: a seed in the query string is refused before
// routing. Routes under /api/ are rate-limited (429), except polling a queue request.
errors! {
    Health {
        400 => [VALIDATION_ERROR],
    }
    StarsCreate {
        400 => [VALIDATION_ERROR, INVALID_USERNAME_FORMAT, INVALID_COOKIES],
        404 => [USER_NOT_FOUND],
        409 => [IDEMPOTENCY_KEY_REUSED, IDEMPOTENCY_KEY_IN_PROGRESS],
        429 => [RATE_LIMIT_EXCEEDED],
        500 => [INTERNAL_ERROR, OWNER_COOKIES_NOT_CONFIGURED, OWNER_COOKIES_EXPIRED],
        502 => [FRAGMENT_ERROR],
        503 => [SERVICE_UNAVAILABLE],
    }
    PremiumCreate {
        400 => [VALIDATION_ERROR, INVALID_USERNAME_FORMAT, INVALID_COOKIES, PREMIUM_ALREADY_ACTIVE],
        404 => [USER_NOT_FOUND],
        409 => [IDEMPOTENCY_KEY_REUSED, IDEMPOTENCY_KEY_IN_PROGRESS],
        429 => [RATE_LIMIT_EXCEEDED],
        500 => [INTERNAL_ERROR, OWNER_COOKIES_NOT_CONFIGURED, OWNER_COOKIES_EXPIRED],
        502 => [FRAGMENT_ERROR],
        503 => [SERVICE_UNAVAILABLE],
    }
    Pay {
        400 => [VALIDATION_ERROR, INVALID_SEED, INVALID_COOKIES, INSUFFICIENT_BALANCE, DEBT_LIMIT_EXCEEDED, ORDER_EXPIRED, INSUFFICIENT_JETTON_BALANCE],
        404 => [ORDER_NOT_FOUND],
        409 => [IDEMPOTENCY_KEY_REUSED, IDEMPOTENCY_KEY_IN_PROGRESS],
        429 => [RATE_LIMIT_EXCEEDED],
        500 => [INTERNAL_ERROR],
        503 => [SERVICE_UNAVAILABLE],
    }
    StarsBuy {
        400 => [VALIDATION_ERROR, INVALID_USERNAME_FORMAT, INVALID_SEED, INVALID_COOKIES, INSUFFICIENT_BALANCE, DEBT_LIMIT_EXCEEDED, INSUFFICIENT_JETTON_BALANCE],
        404 => [USER_NOT_FOUND],
        409 => [IDEMPOTENCY_KEY_REUSED, IDEMPOTENCY_KEY_IN_PROGRESS],
        429 => [RATE_LIMIT_EXCEEDED],
        500 => [INTERNAL_ERROR, OWNER_COOKIES_NOT_CONFIGURED, OWNER_COOKIES_EXPIRED],
        502 => [FRAGMENT_ERROR],
        503 => [SERVICE_UNAVAILABLE],
    }
    PremiumBuy {
        400 => [VALIDATION_ERROR, INVALID_USERNAME_FORMAT, INVALID_SEED, INVALID_COOKIES, INSUFFICIENT_BALANCE, DEBT_LIMIT_EXCEEDED, PREMIUM_ALREADY_ACTIVE, INSUFFICIENT_JETTON_BALANCE],
        404 => [USER_NOT_FOUND],
        409 => [IDEMPOTENCY_KEY_REUSED, IDEMPOTENCY_KEY_IN_PROGRESS],
        429 => [RATE_LIMIT_EXCEEDED],
        500 => [INTERNAL_ERROR, OWNER_COOKIES_NOT_CONFIGURED, OWNER_COOKIES_EXPIRED],
        502 => [FRAGMENT_ERROR],
        503 => [SERVICE_UNAVAILABLE],
    }
    Cancel {
        400 => [VALIDATION_ERROR, ORDER_NOT_CANCELLABLE],
        404 => [ORDER_NOT_FOUND],
        429 => [RATE_LIMIT_EXCEEDED],
        500 => [INTERNAL_ERROR],
        503 => [SERVICE_UNAVAILABLE],
    }
    CheckoutCreate {
        400 => [VALIDATION_ERROR, INVALID_USERNAME_FORMAT, INVALID_COOKIES, INSUFFICIENT_BALANCE, DEBT_LIMIT_EXCEEDED, PREMIUM_ALREADY_ACTIVE],
        404 => [USER_NOT_FOUND],
        409 => [IDEMPOTENCY_KEY_REUSED, IDEMPOTENCY_KEY_IN_PROGRESS],
        429 => [RATE_LIMIT_EXCEEDED],
        500 => [INTERNAL_ERROR, OWNER_COOKIES_NOT_CONFIGURED, OWNER_COOKIES_EXPIRED],
        502 => [FRAGMENT_ERROR],
        503 => [SERVICE_UNAVAILABLE],
    }
    GetCheckout {
        400 => [VALIDATION_ERROR],
        404 => [ORDER_NOT_FOUND],
        429 => [RATE_LIMIT_EXCEEDED],
        503 => [SERVICE_UNAVAILABLE],
    }
    SubmitCheckout {
        400 => [VALIDATION_ERROR, INVALID_COOKIES, CHECKOUT_REJECTED, CHECKOUT_EXPIRED, ORDER_EXPIRED],
        404 => [ORDER_NOT_FOUND],
        429 => [RATE_LIMIT_EXCEEDED],
        500 => [INTERNAL_ERROR],
        503 => [SERVICE_UNAVAILABLE],
    }
    GetOrder {
        400 => [VALIDATION_ERROR],
        404 => [ORDER_NOT_FOUND],
        429 => [RATE_LIMIT_EXCEEDED],
    }
    GetRequest {
        400 => [VALIDATION_ERROR],
        404 => [REQUEST_NOT_FOUND],
    }
    Queue {
        400 => [VALIDATION_ERROR],
        429 => [RATE_LIMIT_EXCEEDED],
    }
    Eligibility {
        400 => [VALIDATION_ERROR, INVALID_USERNAME_FORMAT, INVALID_COOKIES],
        429 => [RATE_LIMIT_EXCEEDED],
        500 => [INTERNAL_ERROR, OWNER_COOKIES_NOT_CONFIGURED, OWNER_COOKIES_EXPIRED],
        502 => [FRAGMENT_ERROR],
    }
    WalletResolve {
        400 => [VALIDATION_ERROR, INVALID_SEED],
        429 => [RATE_LIMIT_EXCEEDED],
        500 => [INTERNAL_ERROR],
    }
    WalletBalance {
        400 => [VALIDATION_ERROR, INVALID_SEED],
        429 => [RATE_LIMIT_EXCEEDED],
        500 => [INTERNAL_ERROR],
        503 => [SERVICE_UNAVAILABLE],
    }
    WalletQuery {
        400 => [VALIDATION_ERROR, INVALID_SEED],
        429 => [RATE_LIMIT_EXCEEDED],
        500 => [INTERNAL_ERROR],
    }
    Rates {
        400 => [VALIDATION_ERROR],
        429 => [RATE_LIMIT_EXCEEDED],
    }
    Prices {
        400 => [VALIDATION_ERROR],
        429 => [RATE_LIMIT_EXCEEDED],
        500 => [INTERNAL_ERROR, OWNER_COOKIES_NOT_CONFIGURED, OWNER_COOKIES_EXPIRED],
        502 => [FRAGMENT_ERROR],
    }
    // Admin routes: 401 without the right key, 429 once an address sent too many wrong ones.
    AdminList {
        400 => [VALIDATION_ERROR],
        401 => [UNAUTHORIZED],
        429 => [RATE_LIMIT_EXCEEDED],
        500 => [INTERNAL_ERROR],
    }
    AdminAudit {
        400 => [VALIDATION_ERROR],
        401 => [UNAUTHORIZED],
        404 => [ORDER_NOT_FOUND, NOT_FOUND],
        429 => [RATE_LIMIT_EXCEEDED],
        500 => [INTERNAL_ERROR],
        503 => [SERVICE_UNAVAILABLE],
    }
    AdminStream {
        400 => [VALIDATION_ERROR],
        401 => [UNAUTHORIZED],
        404 => [NOT_FOUND],
        429 => [RATE_LIMIT_EXCEEDED],
        500 => [INTERNAL_ERROR],
        503 => [SERVICE_UNAVAILABLE],
    }
    AdminOwnerCookies {
        400 => [VALIDATION_ERROR, INVALID_COOKIES],
        401 => [UNAUTHORIZED],
        429 => [RATE_LIMIT_EXCEEDED],
        500 => [INTERNAL_ERROR],
    }
    AdminRebuild {
        400 => [VALIDATION_ERROR],
        401 => [UNAUTHORIZED],
        429 => [RATE_LIMIT_EXCEEDED],
        500 => [INTERNAL_ERROR],
        503 => [SERVICE_UNAVAILABLE],
    }
    AdminSettle {
        400 => [VALIDATION_ERROR],
        401 => [UNAUTHORIZED],
        409 => [IDEMPOTENCY_KEY_REUSED, IDEMPOTENCY_KEY_IN_PROGRESS],
        429 => [RATE_LIMIT_EXCEEDED],
        500 => [INTERNAL_ERROR],
        503 => [SERVICE_UNAVAILABLE],
    }
}

// ---------------------------------------------------------------------------------------------
// Values.

/// An amount of TON as a decimal string with up to 9 fraction digits (`"0.761234567"`, `"2"`).
#[derive(ToSchema)]
#[schema(value_type = String, pattern = r"^[0-9]+(\.[0-9]{1,9})?$", example = "0.505")]
pub struct Ton(pub String);

/// A Telegram username: `@` and 1–32 letters, digits or underscores.
#[derive(ToSchema)]
#[schema(value_type = String, pattern = r"^@[A-Za-z0-9_]{1,32}$", example = "@alice")]
pub struct Username(pub String);

#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProductType {
    Stars,
    Premium,
}

/// `kyc`: bought with the client's own fragment.com cookies, no commission. `no_kyc`: bought
/// on the operator's session, commission per the rates.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Kyc,
    NoKyc,
}

/// `created → queued → processing → success | failed`; `created → expired` when unpaid;
/// `created → cancelled` when the client cancels it; `queued → created` when a payment is
/// abandoned before anything was signed.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Created,
    Queued,
    Processing,
    Success,
    Failed,
    Expired,
    /// Only through `POST /api/v1/orders/{order_id}/cancel`.
    Cancelled,
}

#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    Queued,
    Processing,
    Completed,
    Failed,
    Timeout,
}

/// What an order is paid in: TON, or USDT on TON (a jetton transfer; the commission stays in
/// TON).
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentMethod {
    Ton,
    UsdtTon,
}

#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WalletVersion {
    V4r2,
    V5r1,
}

// ---------------------------------------------------------------------------------------------
// Request bodies. Unknown fields are ignored; whole numbers may also be sent as strings of
// digits.

#[derive(ToSchema)]
pub struct StarsCreateBody {
    /// The recipient.
    pub username: Username,
    /// Stars to buy.
    #[schema(minimum = 50, maximum = 1000000, example = 100)]
    pub amount: u32,
    /// Default `ton`. `usdt_ton`: priced and paid in USDT on TON (any case).
    pub payment_method: Option<PaymentMethod>,
    /// Base64 of the client's fragment.com cookies as JSON (an object of names to values, or a
    /// browser export array of `{"name", "value"}`), with `stel_ssid`, `stel_token` and
    /// `stel_ton_token`. Present: KYC mode, no commission. Absent: no-KYC mode on the operator's
    /// session, with commission.
    pub fragment_cookies: Option<String>,
    /// As the `Idempotency-Key` header, for clients that cannot set headers (send one or the
    /// other, or both the same).
    #[schema(min_length = 1, max_length = 255, example = "order-1042-attempt")]
    pub idempotency_key: Option<String>,
    /// Where to post webhooks about this order (`order.created`, `order.paid`,
    /// `order.completed`, `order.failed`, `order.expired`, `order.delivery_unconfirmed`): an
    /// http or https URL, not a private address.
    #[schema(max_length = 2048, example = "https://shop.example/hooks/fragment")]
    pub webhook_url: Option<String>,
}

#[derive(ToSchema)]
pub struct PremiumCreateBody {
    /// The recipient.
    pub username: Username,
    /// Default `ton`. `usdt_ton`: priced and paid in USDT on TON (any case).
    pub payment_method: Option<PaymentMethod>,
    /// Required, unless sent as `duration`.
    #[schema(schema_with = optional_months)]
    pub months: Option<u8>,
    /// Accepted instead of `months`.
    #[schema(schema_with = optional_months)]
    pub duration: Option<u8>,
    /// As in `StarsCreateBody`.
    pub fragment_cookies: Option<String>,
    /// As the `Idempotency-Key` header, for clients that cannot set headers (send one or the
    /// other, or both the same).
    #[schema(min_length = 1, max_length = 255, example = "order-1042-attempt")]
    pub idempotency_key: Option<String>,
    /// Where to post webhooks about this order (`order.created`, `order.paid`,
    /// `order.completed`, `order.failed`, `order.expired`, `order.delivery_unconfirmed`): an
    /// http or https URL, not a private address.
    #[schema(max_length = 2048, example = "https://shop.example/hooks/fragment")]
    pub webhook_url: Option<String>,
}

/// The wallet a payment comes from: the seed's default wallet (v4r2 for a 24-word TON
/// mnemonic, v5r1 for a BIP39 one) unless `wallet_address` or `wallet_version` picks another.
/// The body of `POST /api/v1/orders/{order_id}/pay`; part of every other paying body.
#[derive(ToSchema)]
pub struct Payer {
    /// Base64 of the wallet's mnemonic words (24 TON words, or 12/24 BIP39 words). Held in
    /// memory only while needed; never in a URL.
    pub seed: String,
    /// When given, it must be the order's own (`payment_method` at its creation).
    pub payment_method: Option<PaymentMethod>,
    /// The client's fragment.com cookies: a one-shot buy with them is in KYC mode, and
    /// paying an order created in KYC mode needs them again.
    pub fragment_cookies: Option<String>,
    /// One of this seed's wallets, in any TON address form.
    pub wallet_address: Option<String>,
    /// Which wallet contract of the seed (`v4`, `w5`, `v5` are accepted too).
    pub wallet_version: Option<WalletVersion>,
    /// BIP39 derivation account (default 0).
    #[schema(minimum = 0, maximum = 2147483647)]
    pub account_index: Option<u32>,
    /// As the `Idempotency-Key` header, for clients that cannot set headers (send one or the
    /// other, or both the same).
    #[schema(min_length = 1, max_length = 255, example = "order-1042-attempt")]
    pub idempotency_key: Option<String>,
}

/// A payment of the order `order_id`.
#[derive(ToSchema)]
pub struct PayBody {
    pub order_id: uuid::Uuid,
    #[serde(flatten)]
    pub payer: Payer,
}

#[derive(ToSchema)]
pub struct StarsBuyBody {
    pub username: Username,
    #[schema(minimum = 50, maximum = 1000000, example = 100)]
    pub amount: u32,
    /// Default `ton`. `usdt_ton`: paid in USDT on TON, from the wallet's USDT (any case).
    pub payment_method: Option<PaymentMethod>,
    /// Accepted for compatibility with the original service's clients; not used.
    pub fragment_local_storage: Option<String>,
    #[serde(flatten)]
    pub payer: Payer,
    /// Where to post webhooks about this order (`order.created`, `order.paid`,
    /// `order.completed`, `order.failed`, `order.expired`, `order.delivery_unconfirmed`): an
    /// http or https URL, not a private address.
    #[schema(max_length = 2048, example = "https://shop.example/hooks/fragment")]
    pub webhook_url: Option<String>,
}

#[derive(ToSchema)]
pub struct PremiumBuyBody {
    pub username: Username,
    /// Required, unless sent as `months`.
    #[schema(schema_with = optional_months)]
    pub duration: Option<u8>,
    /// Accepted instead of `duration`.
    #[schema(schema_with = optional_months)]
    pub months: Option<u8>,
    /// Default `ton`. `usdt_ton`: paid in USDT on TON, from the wallet's USDT (any case).
    pub payment_method: Option<PaymentMethod>,
    #[serde(flatten)]
    pub payer: Payer,
    /// Where to post webhooks about this order (`order.created`, `order.paid`,
    /// `order.completed`, `order.failed`, `order.expired`, `order.delivery_unconfirmed`): an
    /// http or https URL, not a private address.
    #[schema(max_length = 2048, example = "https://shop.example/hooks/fragment")]
    pub webhook_url: Option<String>,
}

#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CheckoutProduct {
    Stars,
    Premium,
}

/// A checkout: what to buy and the wallet that pays, as TON Connect's `account` names it.
#[derive(ToSchema)]
pub struct CheckoutBody {
    pub product: CheckoutProduct,
    /// The recipient.
    pub username: Username,
    /// Stars to buy (`product: "stars"` only).
    #[schema(minimum = 50, maximum = 1000000, example = 100)]
    pub amount: Option<u32>,
    /// Months of Premium (`product: "premium"` only; or as `duration`).
    #[schema(schema_with = optional_months)]
    pub months: Option<u8>,
    /// Accepted instead of `months`.
    #[schema(schema_with = optional_months)]
    pub duration: Option<u8>,
    /// The paying wallet in any TON address form (`account.address`).
    pub wallet_address: String,
    /// The wallet's ed25519 public key, 64 hex digits (`account.publicKey`). With
    /// `wallet_state_init`, or alone for a standard v4r2 or v5r1 wallet; neither is needed
    /// for a wallet already deployed, whose key is read from the chain.
    #[schema(pattern = "^[0-9a-fA-F]{64}$")]
    pub public_key: Option<String>,
    /// Base64 BOC of the wallet's StateInit (`account.walletStateInit`): needed for a wallet
    /// not deployed yet whose key is not given.
    pub wallet_state_init: Option<String>,
    /// Checkouts are paid in TON: `usdt_ton` is refused.
    pub payment_method: Option<PaymentMethod>,
    /// TON Connect's `account.chain` (`-239` mainnet, `-3` testnet): must be the gateway's
    /// network.
    #[schema(example = "-239")]
    pub network: Option<String>,
    /// KYC mode: the client's fragment.com cookies (as in `StarsCreateBody`), of a session
    /// whose account has this wallet connected on fragment.com already.
    pub fragment_cookies: Option<String>,
    /// As the `Idempotency-Key` header.
    #[schema(min_length = 1, max_length = 255, example = "checkout-1042")]
    pub idempotency_key: Option<String>,
    /// As in `StarsCreateBody`.
    #[schema(max_length = 2048, example = "https://shop.example/hooks/fragment")]
    pub webhook_url: Option<String>,
}

/// A checkout's signed message.
#[derive(ToSchema)]
pub struct CheckoutSubmitBody {
    /// The signed external message, a base64 BOC: what TON Connect's `sendTransaction`
    /// returns.
    pub boc: String,
    /// `true` when the wallet (or the client) broadcast it already: the gateway only follows
    /// it. Default `false`: the gateway broadcasts it.
    pub already_broadcast: Option<bool>,
    /// A KYC checkout's fragment.com cookies, again (they are never stored).
    pub fragment_cookies: Option<String>,
}

/// One message of a checkout's transaction.
#[derive(ToSchema)]
pub struct TonConnectMessage {
    /// The destination, in the form the wallet must use (its bounce flag follows it).
    pub address: String,
    /// Nanoton, as a decimal string.
    #[schema(pattern = "^[0-9]+$", example = "1525000000")]
    pub amount: String,
    /// The message body, a base64 BOC, to be sent exactly as given.
    pub payload: String,
}

/// A TON Connect `sendTransaction` request, in the wallet protocol's names (the JS SDK calls
/// `valid_until` `validUntil`).
#[derive(ToSchema)]
pub struct TonConnectTransaction {
    /// Unix seconds: the wallet must not send it later.
    pub valid_until: u32,
    /// `-239` (mainnet) or `-3` (testnet).
    #[schema(example = "-239")]
    pub network: String,
    /// The paying wallet, raw form.
    pub from: String,
    /// The purchase first, then the commission debt due, if any.
    #[schema(min_items = 1, max_items = 2)]
    pub messages: Vec<TonConnectMessage>,
}

// Mirrors `routes::checkout_answer`.
/// A checkout: the transaction for the client's wallet to sign, and the order it pays.
#[derive(ToSchema)]
pub struct Checkout {
    /// The order's id.
    pub checkout_id: uuid::Uuid,
    /// Submit the signed message before this (unix seconds).
    pub valid_until: u32,
    /// The paying wallet (non-bounceable form).
    pub wallet_address: String,
    pub wallet_version: WalletVersion,
    /// Commission debt the transaction collects (its second message), `"0"` when none.
    pub collection_ton: Ton,
    pub transaction: TonConnectTransaction,
    pub order: Order,
}

#[derive(ToSchema)]
pub struct EligibilityBody {
    pub username: Username,
    /// Default 3.
    #[schema(schema_with = optional_months)]
    pub months: Option<u8>,
    /// Accepted instead of `months`.
    #[schema(schema_with = optional_months)]
    pub duration: Option<u8>,
    /// Check on the client's own fragment.com session instead of the operator's.
    pub fragment_cookies: Option<String>,
}

#[derive(ToSchema)]
pub struct WalletResolveBody {
    pub seed: String,
    /// Check that this address is one of the seed's wallets, and pick it.
    pub wallet_address: Option<String>,
    pub wallet_version: Option<WalletVersion>,
    #[schema(minimum = 0, maximum = 2147483647)]
    pub account_index: Option<u32>,
}

// ---------------------------------------------------------------------------------------------
// Answers (`data`). Fields that are always present but may be null are `required`; fields
// present only for one product (`amount`, `months`, …) are not.

#[derive(ToSchema)]
pub struct Health {
    /// `degraded` when the event store does not answer.
    pub status: HealthStatus,
    #[schema(example = "0.1.0")]
    pub version: String,
    /// The event store backend, e.g. `sqlite`.
    pub store: String,
    pub network: NetworkName,
    pub queue_length: u64,
    pub uptime_seconds: u64,
    /// Whether no-KYC orders can be taken (the operator configured Fragment sessions).
    pub no_kyc_available: bool,
}

#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Ok,
    Degraded,
}

#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum NetworkName {
    Mainnet,
    Testnet,
    Sandbox,
}

// Mirrors `views::order` (tests/openapi.rs compares real answers).
/// An order of Stars or Premium.
#[derive(ToSchema)]
pub struct Order {
    pub order_id: uuid::Uuid,
    #[serde(rename = "type")]
    pub kind: ProductType,
    /// Stars orders only.
    #[schema(nullable = false, minimum = 50, maximum = 1000000)]
    pub amount: Option<u32>,
    /// Premium orders only.
    #[schema(schema_with = months)]
    pub months: Option<u8>,
    pub username: Username,
    pub mode: Mode,
    pub status: OrderStatus,
    /// Present for a USDT order only (`usdt_ton`).
    #[schema(nullable = false)]
    pub payment_method: Option<PaymentMethod>,
    /// Fragment's price.
    pub price_ton: Ton,
    /// A USDT order's price in USDT (decimal, 6 places at most); the commission is in TON, on
    /// `price_ton`.
    #[schema(
        nullable = false,
        pattern = r"^[0-9]+(\.[0-9]{1,6})?$",
        example = "0.75"
    )]
    pub price_usdt_ton: Option<String>,
    /// The commission as a fraction (`0.01` for 1 %).
    #[schema(example = 0.01)]
    pub commission_rate: f64,
    pub commission_ton: Ton,
    /// `price_ton + commission_ton`.
    pub total_ton: Ton,
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// Unpaid after this, the order expires.
    pub expires_at: chrono::DateTime<chrono::Utc>,
    /// The paying wallet, once paid.
    #[schema(required = true)]
    pub wallet_address: Option<String>,
    #[schema(required = true)]
    pub request_id: Option<uuid::Uuid>,
    /// The hash of the wallet's payment transaction.
    #[schema(required = true)]
    pub tx_hash: Option<String>,
    #[schema(required = true)]
    pub error_code: Option<ErrorCode>,
    #[schema(required = true)]
    pub error: Option<String>,
    #[schema(required = true)]
    pub completed_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Fragment's confirmation of the delivery: null until known.
    #[schema(required = true)]
    pub delivery_confirmed: Option<bool>,
}

/// The answer to a payment (and to a one-shot buy).
#[derive(ToSchema)]
pub struct PayAnswer {
    pub order_id: uuid::Uuid,
    pub request_id: uuid::Uuid,
    /// `queued` for a new payment; for a repeated one (same order, same wallet), the status
    /// of the existing request.
    pub status: RequestStatus,
    /// 1-based place in the queue; null once the request left it.
    #[schema(required = true)]
    pub position: Option<u64>,
    pub estimated_wait_seconds: u64,
    /// The paying wallet (non-bounceable form).
    pub wallet_address: String,
    pub message: String,
}

// Mirrors `views::request`.
/// A payment request: queued, running, or ended.
#[derive(ToSchema)]
pub struct QueueRequest {
    pub request_id: uuid::Uuid,
    /// The same as `request_id`.
    pub id: uuid::Uuid,
    pub status: RequestStatus,
    #[serde(rename = "type")]
    pub kind: ProductType,
    /// Stars requests only.
    #[schema(nullable = false, minimum = 50, maximum = 1000000)]
    pub amount: Option<u32>,
    /// Premium requests only.
    #[schema(schema_with = months)]
    pub months: Option<u8>,
    pub order_id: uuid::Uuid,
    pub username: Username,
    pub mode: Mode,
    /// 1-based, while queued.
    #[schema(required = true)]
    pub position: Option<u64>,
    pub estimated_wait_seconds: u64,
    pub created_at: chrono::DateTime<chrono::Utc>,
    #[schema(required = true)]
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    #[schema(required = true)]
    pub completed_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Still queued after this, the request times out (QUEUE_TIMEOUT, no funds moved).
    pub queue_deadline: chrono::DateTime<chrono::Utc>,
    /// The paying wallet (non-bounceable form).
    pub wallet_address: String,
    /// The paying wallet (raw `0:…` form).
    pub wallet_address_raw: String,
    pub wallet_version: WalletVersion,
    #[schema(required = true)]
    pub error: Option<String>,
    #[schema(required = true)]
    pub error_code: Option<ErrorCode>,
    /// Present when `status` is `completed`.
    #[schema(required = true)]
    pub result: Option<RequestResult>,
}

/// What a completed request did.
#[derive(ToSchema)]
pub struct RequestResult {
    /// Always `true`.
    #[schema(schema_with = always_true)]
    pub success: bool,
    /// The same as `transaction_hash`.
    pub transaction_id: String,
    /// The hash of the wallet's payment transaction (hex).
    pub transaction_hash: String,
    pub username: Username,
    /// Stars requests only.
    #[schema(nullable = false, minimum = 50, maximum = 1000000)]
    pub amount: Option<u32>,
    /// Stars requests only: the same as `amount`.
    #[schema(nullable = false, minimum = 50, maximum = 1000000)]
    pub stars_amount: Option<u32>,
    /// Premium requests only.
    #[schema(schema_with = months)]
    pub months: Option<u8>,
    /// Premium requests only: the same as `months`.
    #[schema(schema_with = months)]
    pub duration_months: Option<u8>,
    /// What the wallet paid Fragment in TON (`"0"` for a USDT purchase).
    pub cost_ton: Ton,
    /// A USDT purchase's price paid in USDT (decimal).
    #[schema(
        nullable = false,
        pattern = r"^[0-9]+(\.[0-9]{1,6})?$",
        example = "0.75"
    )]
    pub cost_usdt_ton: Option<String>,
    /// Present for a USDT purchase only.
    #[schema(nullable = false)]
    pub payment_method: Option<PaymentMethod>,
    /// The commission this purchase added to the wallet's debt.
    pub commission_ton: Ton,
    /// Debt collected by this payment's wallet message.
    pub collected_commission_ton: Ton,
    pub commission_rate: f64,
    pub mode: Mode,
    /// The wallet's commission debt after this purchase.
    pub commission_balance_ton: Ton,
    pub timestamp: chrono::DateTime<chrono::Utc>,
}

// Mirrors `views::queue_status` and the fields `routes::queue_status` adds.
/// Queue statistics.
#[derive(ToSchema)]
pub struct QueueStatus {
    /// Requests waiting or running.
    pub queue_length: u64,
    pub pending: u64,
    pub processing: u64,
    pub total_processed: u64,
    pub completed: u64,
    pub failed: u64,
    pub timed_out: u64,
    pub estimated_wait_seconds: u64,
    pub average_processing_seconds: f64,
    /// Always `false`: the queue never pauses.
    #[schema(schema_with = always_false)]
    pub is_paused: bool,
    /// Always null.
    #[schema(required = true)]
    pub pause_reason: Option<String>,
}

#[derive(ToSchema)]
pub struct QueueLength {
    pub queue_length: u64,
}

/// Whether Fragment would let the user be gifted Premium.
#[derive(ToSchema)]
pub struct Eligibility {
    pub eligible: bool,
    pub username: Username,
    #[schema(schema_with = months)]
    pub months: u8,
    /// When not eligible: why.
    #[schema(nullable = false)]
    pub reason: Option<String>,
    /// When not eligible.
    #[schema(nullable = false)]
    pub error_code: Option<IneligibleCode>,
    /// When not eligible: the same code and reason, as the original service's clients read
    /// them.
    #[schema(nullable = false)]
    pub error: Option<IneligibleError>,
}

#[derive(ToSchema)]
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
pub enum IneligibleCode {
    PREMIUM_ALREADY_ACTIVE,
    USER_NOT_FOUND,
}

#[derive(ToSchema)]
pub struct IneligibleError {
    pub error_code: IneligibleCode,
    pub message: String,
}

/// The eligibility answer: `eligible`, `username` and `reason` are also at the top level, as
/// the original service's clients read them.
#[derive(ToSchema)]
pub struct EligibilityEnvelope {
    /// Always `true`.
    #[schema(schema_with = always_true)]
    pub success: bool,
    pub data: Eligibility,
    pub eligible: bool,
    pub username: Username,
    /// When not eligible.
    #[schema(nullable = false)]
    pub reason: Option<String>,
}

#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SeedFormat {
    Ton,
    Bip39,
}

/// The wallet a seed pays from.
#[derive(ToSchema)]
pub struct WalletResolved {
    /// Non-bounceable form.
    pub wallet_address: String,
    pub wallet_address_bounceable: String,
    /// Raw `0:…` form.
    pub wallet_address_raw: String,
    pub wallet_version: WalletVersion,
    pub seed_format: SeedFormat,
    /// BIP39 seeds only; null for TON mnemonics.
    #[schema(required = true)]
    pub account_index: Option<u32>,
    pub network: NetworkName,
}

#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AccountState {
    Active,
    Uninitialized,
    Frozen,
}

#[derive(ToSchema)]
pub struct WalletBalance {
    pub wallet_address: String,
    pub wallet_address_raw: String,
    /// Known from the seed, or from the deployed contract; null otherwise.
    #[schema(required = true)]
    pub wallet_version: Option<WalletVersion>,
    pub balance_ton: Ton,
    /// The balance in nanoton, as a string of digits.
    #[schema(pattern = "^[0-9]+$", example = "100000000000")]
    pub balance_nanoton: String,
    pub state: AccountState,
}

/// A wallet's commission account.
#[derive(ToSchema)]
pub struct CommissionBalance {
    pub wallet_address: String,
    pub wallet_address_raw: String,
    /// Commission accrued and not yet collected.
    pub debt_ton: Ton,
    pub accrued_total_ton: Ton,
    pub collected_total_ton: Ton,
    /// Debt settled by the operator outside collection.
    pub settled_total_ton: Ton,
    /// Over this debt, new payments get DEBT_LIMIT_EXCEEDED.
    pub debt_limit_ton: Ton,
    /// From this debt on, the next payment collects it in the same wallet message.
    pub collection_threshold_ton: Ton,
    pub debt_limit_exceeded: bool,
}

#[derive(ToSchema)]
pub struct CommissionRates {
    /// No-KYC commission in percent (`1.0`).
    #[schema(example = 1.0)]
    pub rate_no_kyc: f64,
    /// KYC commission in percent (`0.0`).
    #[schema(example = 0.0)]
    pub rate_with_kyc: f64,
    /// No-KYC commission as a fraction (`0.01`).
    #[schema(example = 0.01)]
    pub rate_no_kyc_decimal: f64,
    #[schema(example = 0.0)]
    pub rate_with_kyc_decimal: f64,
    pub collection_threshold_ton: Ton,
    pub debt_limit_ton: Ton,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// A page of a wallet's orders, newest first.
#[derive(ToSchema)]
pub struct OrderList {
    pub wallet_address: String,
    pub items: Vec<Order>,
    /// All of the wallet's orders in the statuses asked for.
    pub total: u64,
    pub limit: u64,
    /// The `cursor` of the next page; null on the last.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// A page of a wallet's purchases, newest first.
#[derive(ToSchema)]
pub struct Transactions {
    pub wallet_address: String,
    pub items: Vec<HistoryItem>,
    /// All of the wallet's purchases.
    pub total: u64,
    pub limit: u64,
    pub offset: u64,
}

// Mirrors `views::history_item`.
/// One purchase.
#[derive(ToSchema)]
pub struct HistoryItem {
    pub order_id: uuid::Uuid,
    pub request_id: uuid::Uuid,
    #[serde(rename = "type")]
    pub kind: ProductType,
    /// Stars purchases only.
    #[schema(nullable = false, minimum = 50, maximum = 1000000)]
    pub amount: Option<u32>,
    /// Premium purchases only.
    #[schema(schema_with = months)]
    pub months: Option<u8>,
    pub username: Username,
    /// What the wallet paid Fragment (the quoted price until the payment is on chain; `"0"`
    /// once a USDT purchase is paid).
    pub cost_ton: Ton,
    /// A USDT purchase's cost in USDT (its quoted price until paid).
    #[schema(
        nullable = false,
        pattern = r"^[0-9]+(\.[0-9]{1,6})?$",
        example = "0.75"
    )]
    pub cost_usdt_ton: Option<String>,
    /// Present for a USDT purchase only.
    #[schema(nullable = false)]
    pub payment_method: Option<PaymentMethod>,
    pub commission_ton: Ton,
    /// The payment request's status.
    pub status: RequestStatus,
    #[schema(required = true)]
    pub tx_hash: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    #[schema(required = true)]
    pub completed_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Fragment's prices.
#[derive(ToSchema)]
pub struct Prices {
    pub stars: StarsPrices,
    pub premium: PremiumPrices,
    pub premium_list: Vec<PremiumPrice>,
    /// The TON/USD rate Fragment shows, as a decimal string; null when unknown.
    #[schema(required = true, example = "3.1")]
    pub ton_usd: Option<String>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
    /// Always `fragment.com`.
    #[schema(example = "fragment.com")]
    pub source: String,
    pub fetched_at: chrono::DateTime<chrono::Utc>,
}

/// USD amounts are decimal strings, null when Fragment shows none.
#[derive(ToSchema)]
pub struct StarsPrices {
    pub price_per_star_ton: Ton,
    #[schema(required = true)]
    pub price_per_star_usd: Option<String>,
    /// The smallest purchase (50).
    pub minimum_amount: u32,
    pub minimum_price_ton: Ton,
    pub packages: Vec<StarsPackage>,
}

#[derive(ToSchema)]
pub struct StarsPackage {
    pub amount: u32,
    pub price_ton: Ton,
    #[schema(required = true)]
    pub price_usd: Option<String>,
}

/// Premium prices keyed as the original service's documentation names them.
#[derive(ToSchema)]
pub struct PremiumPrices {
    #[serde(rename = "3_months")]
    #[schema(nullable = false)]
    pub three: Option<PremiumBasePrice>,
    #[serde(rename = "6_months")]
    #[schema(nullable = false)]
    pub six: Option<PremiumBasePrice>,
    #[serde(rename = "12_months")]
    #[schema(nullable = false)]
    pub twelve: Option<PremiumBasePrice>,
}

#[derive(ToSchema)]
pub struct PremiumBasePrice {
    #[schema(schema_with = months)]
    pub months: u8,
    pub base_ton: Ton,
    #[schema(required = true)]
    pub base_usd: Option<String>,
}

#[derive(ToSchema)]
pub struct PremiumPrice {
    #[schema(schema_with = months)]
    pub months: u8,
    pub price_ton: Ton,
    #[schema(required = true)]
    pub price_usd: Option<String>,
}

/// The prices answer: `stars` and `premium` are mirrored at the top level, as the original
/// service's clients read them.
#[derive(ToSchema)]
pub struct PricesEnvelope {
    /// Always `true`.
    #[schema(schema_with = always_true)]
    pub success: bool,
    pub data: Prices,
    pub stars: StarsPrices,
    pub premium: PremiumPrices,
}

// ---------------------------------------------------------------------------------------------
// The admin API (`admin`). Lists are pages: `items`, `total` (every match), `limit`, `offset`.

/// A page of orders, newest first.
#[derive(ToSchema)]
pub struct OrderPage {
    pub items: Vec<Order>,
    /// Every order that matches.
    pub total: u64,
    pub limit: u64,
    pub offset: u64,
}

/// A page of payment requests, newest first.
#[derive(ToSchema)]
pub struct RequestPage {
    pub items: Vec<QueueRequest>,
    /// Every request that matches.
    pub total: u64,
    pub limit: u64,
    pub offset: u64,
}

// Mirrors `admin::wallet_commission`.
/// One wallet's commission account.
#[derive(ToSchema)]
pub struct WalletCommission {
    /// Non-bounceable form.
    #[schema(required = true)]
    pub wallet_address: Option<String>,
    pub wallet_address_raw: String,
    /// Accrued and neither collected nor settled.
    pub debt_ton: Ton,
    pub accrued_total_ton: Ton,
    pub collected_total_ton: Ton,
    /// Paid outside purchases, as the operator recorded it.
    pub settled_total_ton: Ton,
    /// Collections whose wallet message failed on chain.
    pub failed_collections: u64,
    pub debt_limit_exceeded: bool,
    #[schema(required = true)]
    pub updated_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(ToSchema)]
pub struct CommissionTotals {
    pub accrued_ton: Ton,
    pub collected_ton: Ton,
    pub settled_ton: Ton,
    /// Accrued and neither collected nor settled, over all wallets.
    pub outstanding_ton: Ton,
    pub wallets_with_debt: u64,
    pub failed_collections: u64,
}

/// The operator's commission: totals, the rates in force, and a page of wallets, largest debt
/// first.
#[derive(ToSchema)]
pub struct CommissionReport {
    pub items: Vec<WalletCommission>,
    /// Every wallet that matches.
    pub total: u64,
    pub limit: u64,
    pub offset: u64,
    pub totals: CommissionTotals,
    #[schema(example = 0.01)]
    pub rate_no_kyc_decimal: f64,
    #[schema(example = 0.0)]
    pub rate_with_kyc_decimal: f64,
    pub collection_threshold_ton: Ton,
    pub debt_limit_ton: Ton,
}

// Mirrors `ops::AuditTarget`.
/// What was audited: an order, a wallet by its raw address, or an idempotency key's stream.
#[derive(ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AuditTarget {
    Order { order_id: uuid::Uuid },
    Wallet { address: String },
    IdempotencyKey { key_id: String },
}

// Mirrors `admin::audit_event`.
/// One stored event.
#[derive(ToSchema)]
pub struct AuditEvent {
    /// Its place in the whole log.
    pub position: u64,
    /// Its place in its stream, from 1.
    pub version: u64,
    pub recorded_at: chrono::DateTime<chrono::Utc>,
    #[schema(example = "OrderCreated")]
    pub event_type: String,
    pub schema_version: u16,
    /// The key fields in words, as `fragment-gateway audit` prints them.
    pub summary: String,
    #[schema(required = true)]
    pub correlation_id: Option<uuid::Uuid>,
    #[schema(required = true)]
    pub causation_id: Option<uuid::Uuid>,
    /// The stored event, upcast to the current schema; amounts in nanoton.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

/// An order's or a wallet's history.
#[derive(ToSchema)]
pub struct Audit {
    pub target: AuditTarget,
    /// The stream read, `order-<uuid>` or `wallet-<raw address>`.
    pub stream: String,
    pub events: Vec<AuditEvent>,
    /// A wallet's commission account; null for an order.
    #[schema(required = true)]
    pub commission: Option<WalletCommission>,
    /// What a wallet paid for (empty for an order).
    pub orders: Vec<HistoryItem>,
}

#[derive(ToSchema)]
pub struct StreamEvents {
    pub stream: String,
    /// The number of events in the stream.
    pub version: u64,
    pub events: Vec<AuditEvent>,
}

/// The operator's Fragment sessions, each the base64 of the cookies' JSON as in the client
/// API's `fragment_cookies` (with `stel_ssid`, `stel_token` and `stel_ton_token`).
#[derive(ToSchema)]
pub struct OwnerCookiesBody {
    pub fragment_cookies: Vec<String>,
}

#[derive(ToSchema)]
pub struct OwnerCookiesReplaced {
    /// Sessions in use now.
    pub sessions: u64,
    pub previous_sessions: u64,
    /// Sessions sent again unchanged, kept with their state.
    pub kept_sessions: u64,
    /// Entries with a `stel_ssid` already in the list.
    pub duplicates_ignored: u64,
    pub no_kyc_available: bool,
    pub message: String,
}

#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReadModel {
    /// The orders table.
    Orders,
    /// The payment requests table (the queue and the wallets' histories are made of it).
    Requests,
    /// The wallets' commission accounts.
    Wallets,
    /// The operator's totals and the queue's counters.
    Summary,
}

#[derive(ToSchema)]
pub struct RebuildCounts {
    pub orders: u64,
    pub requests: u64,
    pub wallets: u64,
    /// Live rows changed after `position` (new events arrived during the rebuild): not
    /// compared.
    pub skipped: u64,
}

/// A rebuild of the read models from the log, compared with the live ones.
#[derive(ToSchema)]
pub struct RebuildReport {
    /// The log position the rebuild folded up to.
    pub position: u64,
    /// The live read models' position.
    pub live_position: u64,
    pub equal: bool,
    /// The read models that differ.
    pub differing: Vec<ReadModel>,
    /// The first rows that differ, as `<kind> <key>: <how>`.
    pub differences: Vec<String>,
    pub replaced: bool,
    pub counts: RebuildCounts,
    pub elapsed_ms: u64,
    pub message: String,
}

#[derive(ToSchema)]
pub struct SettleBody {
    /// What the wallet paid, in TON: more than 0 and at most its debt.
    pub amount_ton: Ton,
    /// Where the payment came from (stored in the event: no secrets).
    #[schema(max_length = 200, example = "bank transfer 42")]
    pub reference: String,
    /// As the `Idempotency-Key` header, for clients that cannot set headers (send one or the
    /// other, or both the same).
    #[schema(min_length = 1, max_length = 255, example = "order-1042-attempt")]
    pub idempotency_key: Option<String>,
}

#[derive(ToSchema)]
pub struct Settled {
    #[schema(required = true)]
    pub wallet_address: Option<String>,
    pub wallet_address_raw: String,
    pub settled_ton: Ton,
    /// The debt after the settlement.
    pub debt_ton: Ton,
    pub settled_total_ton: Ton,
    pub debt_limit_exceeded: bool,
    /// True when this settlement had been recorded before under the same reference (a
    /// retry): nothing was settled again.
    pub already_recorded: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_copy_their_handlers_operation_under_a_unique_id() {
        let doc = document();
        let alias = doc.paths.paths["/api/v1/orders/stars"].post.as_ref();
        let canonical = doc.paths.paths["/api/v1/stars/create"].post.as_ref();
        let (alias, canonical) = (alias.unwrap(), canonical.unwrap());
        assert_eq!(alias.operation_id.as_deref(), Some("post_orders_stars"));
        assert_eq!(canonical.operation_id.as_deref(), Some("stars_create"));
        assert!(alias.request_body == canonical.request_body);
        assert!(alias.responses == canonical.responses);
        assert_eq!(slug("/api/v1/orders/{order_id}/pay"), "orders_order_id_pay");
    }
}

// Mirrors `admin::delivery_view`.
/// A webhook delivery: one event of one order, to one URL.
#[derive(ToSchema)]
pub struct Delivery {
    /// The event reported; the body's `id` (receivers deduplicate on it).
    pub event_id: uuid::Uuid,
    pub order_id: uuid::Uuid,
    /// `order.created`, `order.paid`, `order.completed`, `order.failed`, `order.expired`,
    /// `order.delivery_unconfirmed`.
    #[serde(rename = "type")]
    pub kind: String,
    pub url: String,
    /// `pending`, `delivered`, or `failed` (given up after the retry window).
    pub status: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub attempts: u32,
    /// While pending.
    #[schema(required = true)]
    pub next_attempt_at: Option<chrono::DateTime<chrono::Utc>>,
    #[schema(required = true)]
    pub last_error: Option<String>,
    #[schema(required = true)]
    pub delivered_at: Option<chrono::DateTime<chrono::Utc>>,
    pub attempt_log: Vec<DeliveryAttempt>,
}

/// One try of a delivery.
#[derive(ToSchema)]
pub struct DeliveryAttempt {
    pub attempt: u32,
    pub at: chrono::DateTime<chrono::Utc>,
    /// The receiver's HTTP status, if it answered.
    #[schema(required = true)]
    pub status_code: Option<u16>,
    /// Why it did not count (null: delivered).
    #[schema(required = true)]
    pub error: Option<String>,
    pub duration_ms: u64,
}

#[derive(ToSchema)]
pub struct DeliveryPage {
    pub items: Vec<Delivery>,
    pub total: u64,
    pub limit: u64,
    pub offset: u64,
}

/// No body is needed (an empty JSON object is fine).
#[derive(ToSchema)]
pub struct EmptyBody {}
