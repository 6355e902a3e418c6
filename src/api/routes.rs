//! The client endpoints of API.md. Each handler validates its input into domain values
//! (`input`), asks the core, and shapes the answer: the shared shapes (orders, requests,
//! history) come from `views`.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use events::Product;
use serde_json::{json, Value};

use super::error::{ApiError, FieldError};
use super::idempotent;
use super::input::{header_seed, resolve_wallet, Fields, ResolvedWallet, WalletChoice};
use super::openapi::{self as doc, errors, openapi_json};
use super::secret::{Body, SecretJson};
use super::{views, AppState};
use crate::actors::CoreError;
use crate::config::Secret;
use crate::domain::PremiumMonths;
use crate::fragment::FragmentCookies;
use crate::idempotency::{Fingerprint, IdempotencyKey, Keyed, Scope};
use crate::ton::client::AccountStatus;
use crate::ton::{Nanoton, ParsedAddress, TonAddress};

pub type Reply = Result<HttpResponse, ApiError>;

/// The envelope of a success, its keys in the order a `Value` map writes them.
#[derive(serde::Serialize)]
struct Success<T> {
    data: T,
    success: bool,
}

pub fn ok<T: serde::Serialize>(data: T) -> Reply {
    Ok(HttpResponse::Ok().json(Success {
        data,
        success: true,
    }))
}

/// A success's body, serialized.
fn success_bytes<T: serde::Serialize>(data: T) -> actix_web::web::Bytes {
    // Plain structs of strings and numbers: serializing cannot fail.
    serde_json::to_vec(&Success {
        data,
        success: true,
    })
    .unwrap_or_default()
    .into()
}

/// A success whose body is serialized already, as `HttpResponse::json` would send it.
fn json_body(body: actix_web::web::Bytes) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(actix_web::http::header::ContentType::json())
        .body(body)
}

/// One route of the server: its method (lowercase, as OpenAPI writes it), its path (actix and
/// OpenAPI share the `{name}` syntax) and the name of its handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub handler: &'static str,
}

/// Declares a route table once, so that what `register` adds to a service config and what the
/// OpenAPI document must describe (tests/openapi.rs) cannot drift apart. `prefix` is the scope
/// the table is registered under (the table holds full paths; `register` the scope's own).
macro_rules! route_table {
    ($(#[$doc:meta])* prefix $prefix:literal { $($method:ident $path:literal => $handler:ident,)+ }) => {
        $(#[$doc])*
        pub const ROUTES: &[$crate::api::routes::Route] = &[$($crate::api::routes::Route {
            method: stringify!($method),
            path: concat!($prefix, $path),
            handler: stringify!($handler),
        },)+];

        /// Registers `ROUTES` (paths relative to the scope of `prefix`). Each resource is
        /// guarded by its method, so a request with another method falls through to the next
        /// matching route or to the default service's 404 in the envelope, never to actix's
        /// bodiless 405.
        fn register(cfg: &mut actix_web::web::ServiceConfig) {
            $(cfg.service(
                actix_web::web::resource($path)
                    .guard($crate::api::routes::method_guard(stringify!($method)))
                    .to($handler),
            );)+
        }
    };
}
pub(crate) use route_table;

/// The guard of a route table's method name (`get`, `post`).
pub(crate) fn method_guard(method: &str) -> impl actix_web::guard::Guard {
    let method = actix_web::http::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
        .expect("route tables name HTTP methods");
    actix_web::guard::Method(method)
}

/// Registers the client routes. Requests that match none fall through to the app's default
/// service (404 NOT_FOUND in the envelope).
pub fn configure(cfg: &mut web::ServiceConfig) {
    register(cfg);
}

route_table! {
    /// Every client route, in matching order (`/queue/status` before `/queue/{request_id}`).
    /// Aliases are routes to the same handler. What clients and monitors poll comes first:
    /// actix tries the routes in turn, and every route with a `{segment}` tried on the way is
    /// a regex match.
    prefix "" {
        get "/health" => health,
        get "/api/v1/queue/status" => queue_status,
        get "/api/v1/queue/{request_id}" => get_request,
        get "/api/v1/orders/{order_id}" => get_order,
        get "/openapi.json" => openapi_json,
        post "/api/v1/stars/buy" => stars_buy,
        post "/api/v1/stars/create" => stars_create,
        post "/api/v1/orders/stars" => stars_create,
        post "/api/v1/premium/create" => premium_create,
        post "/api/v1/orders/premium" => premium_create,
        post "/api/v1/stars/pay" => pay_from_body,
        post "/api/v1/orders/{order_id}/pay" => pay_from_path,
        post "/api/v1/orders/{order_id}/cancel" => cancel_order,
        post "/api/v1/checkouts" => create_checkout,
        get "/api/v1/checkouts/{checkout_id}" => get_checkout,
        post "/api/v1/checkouts/{checkout_id}/submit" => submit_checkout,
        get "/api/v1/orders" => list_orders,
        get "/api/v1/queue" => queue_length,
        post "/api/v1/premium/check-eligibility" => premium_eligibility,
        post "/api/v1/premium/buy" => premium_buy,
        post "/api/v1/wallet/resolve" => wallet_resolve,
        get "/api/v1/wallet/balance" => wallet_balance,
        get "/api/v1/commission/balance" => commission_balance,
        get "/api/v1/commission/rates" => commission_rates,
        get "/api/v1/transactions" => transactions,
        get "/api/v1/prices" => prices,
    }
}

/// Health
///
/// Whether the service and its event store answer. Not rate-limited.
#[utoipa::path(get, path = "/health", tag = "health",
    responses((status = 200, description = "The service's status", body = doc::Envelope<doc::Health>), errors::Health))]
async fn health(state: web::Data<AppState>) -> Reply {
    /// Polled by load balancers and monitors: written without a `Value` tree, its keys in
    /// the order a `Value` map writes them.
    #[derive(serde::Serialize)]
    struct Health<'a> {
        network: &'a str,
        no_kyc_available: bool,
        queue_length: usize,
        status: &'static str,
        store: &'static str,
        uptime_seconds: u64,
        version: &'static str,
    }
    let store_ok = state.store_health.ok(state.core.store().as_ref()).await;
    ok(Health {
        network: &state.network_name,
        no_kyc_available: state.core.has_owner_sessions(),
        queue_length: state.core.projections().live().queue.len(),
        status: if store_ok { "ok" } else { "degraded" },
        store: state.core.store().backend(),
        uptime_seconds: state.started.elapsed().as_secs(),
        version: env!("CARGO_PKG_VERSION"),
    })
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

/// Which product a body orders, and how its quantity is read: `amount` of Stars; Premium
/// `months` under the endpoint's own name, or its alias (`duration` / `months`).
#[derive(Clone, Copy)]
enum Ordered {
    Stars,
    Premium {
        field: &'static str,
        alias: &'static str,
    },
}

impl Ordered {
    fn read(self, f: &mut Fields) -> Option<Product> {
        match self {
            Ordered::Stars => f
                .stars_amount("amount")
                .map(|a| Product::Stars { amount: a.get() }),
            Ordered::Premium { field, alias } => f
                .months_or_alias(field, alias, true)
                .map(|m| Product::Premium { months: m.get() }),
        }
    }
}

/// The request's `Idempotency-Key` (header or body field); an invalid one is a field error.
fn idempotency_key(req: &HttpRequest, f: &mut Fields) -> Option<IdempotencyKey> {
    let field = f.optional_string(idempotent::FIELD);
    match idempotent::key(req, field) {
        Ok(key) => key,
        Err(e) => {
            f.fail_with(e);
            None
        }
    }
}

/// The body's `webhook_url`, checked: an http(s) URL this gateway may post to (its host not
/// private unless the operator allows it, also once resolved), on a gateway with webhooks on.
async fn webhook_url(state: &AppState, f: &mut Fields) -> Option<String> {
    const FIELD: &str = "webhook_url";
    let raw = f.optional_string(FIELD)?;
    let settings = &state.webhooks.settings;
    if !settings.enabled() {
        f.fail_with(FieldError::new(
            FIELD,
            "this gateway sends no webhooks (its operator set no webhooks.secrets); poll the order instead",
        ));
        return None;
    }
    let checked = match crate::webhooks::target::parse(&raw, settings.allow_private_targets) {
        Ok(url) if settings.allow_private_targets => Ok(url),
        Ok(url) => {
            let host = url.host_str().unwrap_or_default().trim_matches(['[', ']']);
            crate::webhooks::target::resolve(host, false)
                .await
                .map(|_| url)
        }
        Err(e) => Err(e),
    };
    match checked {
        Ok(url) => Some(url.to_string()),
        Err(e) => {
            f.fail_with(FieldError::new(FIELD, e));
            None
        }
    }
}

/// What a create or a buy asks for, as its idempotency key binds it.
struct OrderRequest<'a> {
    product: Product,
    username: &'a crate::domain::Username,
    webhook: Option<&'a str>,
    cookies: Option<&'a FragmentCookies>,
    method: events::PaymentMethod,
}

impl OrderRequest<'_> {
    /// The request under `key`: a create (no `payer`: the key is the client address's) or a
    /// buy (the paying wallet's).
    fn keyed(
        &self,
        state: &AppState,
        req: &HttpRequest,
        key: IdempotencyKey,
        payer: Option<&ResolvedWallet>,
    ) -> Keyed {
        let operation = match (self.product, payer.is_some()) {
            (Product::Stars { .. }, false) => "stars.create",
            (Product::Premium { .. }, false) => "premium.create",
            (Product::Stars { .. }, true) => "stars.buy",
            (Product::Premium { .. }, true) => "premium.buy",
        };
        let mut fingerprint = state.idempotency.fingerprint(operation);
        fingerprint.field("username", self.username.as_str());
        match self.product {
            Product::Stars { amount } => fingerprint.field("stars", amount.to_string()),
            Product::Premium { months } => fingerprint.field("months", months.to_string()),
        };
        fingerprint.field("webhook_url", self.webhook.unwrap_or_default());
        // Only when not the default: a TON request's fingerprint stays what it was.
        if self.method != events::PaymentMethod::Ton {
            fingerprint.field("payment_method", self.method.as_str());
        }
        let scope = match payer {
            Some(resolved) => {
                feed_wallet(&mut fingerprint, resolved);
                Scope::Wallet(resolved.payer.wallet.raw_address())
            }
            None => Scope::Client(
                req.app_data::<web::Data<super::limit::ClientIps>>()
                    .and_then(|c| c.of_request(req))
                    .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
            ),
        };
        idempotent::feed_cookies(&mut fingerprint, self.cookies);
        Keyed {
            key,
            scope,
            operation,
            fingerprint,
            creates_order: true,
        }
    }
}

/// Step 1: validates the body and creates the order.
async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Body,
    ordered: Ordered,
) -> Reply {
    let mut f = Fields::new(body)?;
    let key = idempotency_key(&req, &mut f);
    let username = f.username("username")?;
    let product = ordered.read(&mut f);
    let method = f.payment_method().unwrap_or_default();
    let cookies = f.cookies()?;
    let webhook = webhook_url(&state, &mut f).await;
    let (Some(username), Some(product)) = (username, product) else {
        return Err(missing(f));
    };
    f.finish()?;
    let keyed = key.map(|key| {
        let order = OrderRequest {
            product,
            username: &username,
            webhook: webhook.as_deref(),
            cookies: cookies.as_ref(),
            method,
        };
        order.keyed(&state, &req, key, None)
    });
    let core = state.core.clone();
    idempotent::run(state, keyed, move |order_id| async move {
        let order = core
            .place_order(order_id, product, &username, cookies, webhook, method)
            .await?;
        ok(views::order(&order))
    })
    .await
}

/// Order Stars
///
/// Creates an order at Fragment's current price once Fragment found the recipient. It can be
/// paid until `expires_at` (10 minutes by default).
#[utoipa::path(post, path = "/api/v1/stars/create", tag = "orders",
    params(doc::IdempotencyKeyHeader),
    request_body = doc::StarsCreateBody,
    responses((status = 200, description = "The order, status `created`", body = doc::Envelope<doc::Order>, headers(("Idempotent-Replayed" = bool, description = "`true` on a retry's copy of the first answer"))), errors::StarsCreate))]
async fn stars_create(state: web::Data<AppState>, req: HttpRequest, body: SecretJson) -> Reply {
    create(state, req, body.0, Ordered::Stars).await
}

/// Order Premium
///
/// Creates an order for a Premium gift at Fragment's current price once Fragment found the
/// recipient. It can be paid until `expires_at` (10 minutes by default).
#[utoipa::path(post, path = "/api/v1/premium/create", tag = "premium",
    params(doc::IdempotencyKeyHeader),
    request_body = doc::PremiumCreateBody,
    responses((status = 200, description = "The order, status `created`", body = doc::Envelope<doc::Order>, headers(("Idempotent-Replayed" = bool, description = "`true` on a retry's copy of the first answer"))), errors::PremiumCreate))]
async fn premium_create(state: web::Data<AppState>, req: HttpRequest, body: SecretJson) -> Reply {
    create(
        state,
        req,
        body.0,
        Ordered::Premium {
            field: "months",
            alias: "duration",
        },
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
    seed: Secret,
    choice: WalletChoice,
    network: crate::ton::Network,
}

impl PayerInput {
    async fn resolve(self) -> Result<ResolvedWallet, ApiError> {
        web::block(move || resolve_wallet(self.seed.expose(), &self.choice, self.network))
            .await
            .map_err(|e| ApiError::internal(&e))?
    }
}

/// Feeds the paying wallet to a fingerprint (the wallet the seed derives, never the seed).
fn feed_wallet(fp: &mut Fingerprint, resolved: &ResolvedWallet) {
    fp.field("wallet", resolved.payer.wallet.raw_address());
    fp.field("wallet_version", resolved.payer.wallet.version().as_str());
    fp.field(
        "account_index",
        resolved
            .account_index
            .map(|i| i.to_string())
            .unwrap_or_default(),
    );
}

async fn pay(
    state: web::Data<AppState>,
    order_id: uuid::Uuid,
    mut f: Fields,
    key: Option<IdempotencyKey>,
    payer: Option<PayerInput>,
    cookies: Option<FragmentCookies>,
) -> Reply {
    // An order is paid in what it was created for; a payment may say so, not change it.
    if let Some(method) = f.payment_method() {
        if let Ok(order) = state.core.order(order_id).await {
            if order.payment_method != method {
                f.fail_with(FieldError::new(
                    "payment_method",
                    format!(
                        "this order is paid in {} (its payment_method when it was created)",
                        order.payment_method.as_str()
                    ),
                ));
            }
        }
    }
    let Some(payer) = payer else {
        return Err(missing(f));
    };
    f.finish()?;
    let resolved = payer.resolve().await?;
    let keyed = key.map(|key| {
        let mut fingerprint = state.idempotency.fingerprint("order.pay");
        fingerprint.field("order_id", order_id.to_string());
        feed_wallet(&mut fingerprint, &resolved);
        idempotent::feed_cookies(&mut fingerprint, cookies.as_ref());
        Keyed {
            key,
            scope: Scope::Wallet(resolved.payer.wallet.raw_address()),
            operation: "order.pay",
            fingerprint,
            creates_order: false,
        }
    });
    let core = state.core.clone();
    idempotent::run(state, keyed, move |_| async move {
        let receipt = core
            .pay_order(order_id, resolved.payer, resolved.account_index, cookies)
            .await?;
        ok(pay_answer(&receipt))
    })
    .await
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

/// Pay an order
///
/// Pays the order from the seed's wallet: checks the balance and the commission debt, then
/// queues the payment. Paying again from the same wallet returns the same request, never a
/// second payment. Poll `GET /api/v1/queue/{request_id}` for the outcome.
#[utoipa::path(post, path = "/api/v1/stars/pay", tag = "orders",
    params(doc::IdempotencyKeyHeader),
    request_body = doc::PayBody,
    responses((status = 200, description = "The payment, queued", body = doc::Envelope<doc::PayAnswer>, headers(("Idempotent-Replayed" = bool, description = "`true` on a retry's copy of the first answer"))), errors::Pay))]
async fn pay_from_body(state: web::Data<AppState>, req: HttpRequest, body: SecretJson) -> Reply {
    let mut f = Fields::new(body.0)?;
    let key = idempotency_key(&req, &mut f);
    let order_id = f.string("order_id");
    let payer = payer(&state, &mut f).await?;
    let cookies = f.cookies()?;
    // Every missing field is named before an id that cannot exist is looked up.
    let (Some(order_id), Some(_)) = (order_id, &payer) else {
        return Err(missing(f));
    };
    let order_id = parse_uuid(
        "order_id",
        &order_id,
        ("ORDER_NOT_FOUND", "Order not found"),
    )?;
    pay(state, order_id, f, key, payer, cookies).await
}

/// Pay an order
///
/// As `POST /api/v1/stars/pay`, with the order's id in the path.
#[utoipa::path(post, path = "/api/v1/orders/{order_id}/pay", tag = "orders",
    params(doc::IdempotencyKeyHeader, ("order_id" = uuid::Uuid, Path, description = "The order's id (one that is not a UUID is not found)")),
    request_body = doc::Payer,
    responses((status = 200, description = "The payment, queued", body = doc::Envelope<doc::PayAnswer>, headers(("Idempotent-Replayed" = bool, description = "`true` on a retry's copy of the first answer"))), errors::Pay))]
async fn pay_from_path(
    state: web::Data<AppState>,
    path: web::Path<String>,
    req: HttpRequest,
    body: SecretJson,
) -> Reply {
    let order_id = parse_uuid("order_id", &path, ("ORDER_NOT_FOUND", "Order not found"))?;
    let mut f = Fields::new(body.0)?;
    let key = idempotency_key(&req, &mut f);
    let payer = payer(&state, &mut f).await?;
    let cookies = f.cookies()?;
    pay(state, order_id, f, key, payer, cookies).await
}

/// One-shot buy: the seed is checked before the order exists, so a bad seed leaves nothing.
async fn buy(state: web::Data<AppState>, req: HttpRequest, body: Body, ordered: Ordered) -> Reply {
    let mut f = Fields::new(body)?;
    let key = idempotency_key(&req, &mut f);
    let username = f.username("username")?;
    let product = ordered.read(&mut f);
    let method = f.payment_method().unwrap_or_default();
    let payer = payer(&state, &mut f).await?;
    let cookies = f.cookies()?;
    let webhook = webhook_url(&state, &mut f).await;
    let (Some(username), Some(product), Some(payer)) = (username, product, payer) else {
        return Err(missing(f));
    };
    f.finish()?;
    let resolved = payer.resolve().await?;
    let keyed = key.map(|key| {
        let order = OrderRequest {
            product,
            username: &username,
            webhook: webhook.as_deref(),
            cookies: cookies.as_ref(),
            method,
        };
        order.keyed(&state, &req, key, Some(&resolved))
    });
    let core = state.core.clone();
    idempotent::run(state, keyed, move |order_id| async move {
        let order = core
            .place_order(
                order_id,
                product,
                &username,
                cookies.clone(),
                webhook,
                method,
            )
            .await?;
        let receipt = core
            .pay_order(
                order.order_id,
                resolved.payer,
                resolved.account_index,
                cookies,
            )
            .await?;
        ok(pay_answer(&receipt))
    })
    .await
}

/// Buy Stars in one call
///
/// Creates a Stars order and pays it from the seed's wallet (the seed is checked first, so a
/// bad seed leaves no order). Poll `GET /api/v1/queue/{request_id}` for the outcome.
#[utoipa::path(post, path = "/api/v1/stars/buy", tag = "orders",
    params(doc::IdempotencyKeyHeader),
    request_body = doc::StarsBuyBody,
    responses((status = 200, description = "The payment, queued", body = doc::Envelope<doc::PayAnswer>, headers(("Idempotent-Replayed" = bool, description = "`true` on a retry's copy of the first answer"))), errors::StarsBuy))]
async fn stars_buy(state: web::Data<AppState>, req: HttpRequest, body: SecretJson) -> Reply {
    buy(state, req, body.0, Ordered::Stars).await
}

/// Gift Premium in one call
///
/// Creates a Premium order and pays it from the seed's wallet (the seed is checked first, so a
/// bad seed leaves no order). Poll `GET /api/v1/queue/{request_id}` for the outcome.
#[utoipa::path(post, path = "/api/v1/premium/buy", tag = "premium",
    params(doc::IdempotencyKeyHeader),
    request_body = doc::PremiumBuyBody,
    responses((status = 200, description = "The payment, queued", body = doc::Envelope<doc::PayAnswer>, headers(("Idempotent-Replayed" = bool, description = "`true` on a retry's copy of the first answer"))), errors::PremiumBuy))]
async fn premium_buy(state: web::Data<AppState>, req: HttpRequest, body: SecretJson) -> Reply {
    buy(
        state,
        req,
        body.0,
        Ordered::Premium {
            field: "duration",
            alias: "months",
        },
    )
    .await
}

/// The answer to a checkout: the transaction to sign and the order it pays.
fn checkout_answer(c: &crate::actors::checkout::IssuedCheckout) -> Value {
    json!({
        "checkout_id": c.issued.order_id,
        "valid_until": c.issued.valid_until,
        "wallet_address": c.issued.wallet_friendly,
        "wallet_version": c.issued.wallet_version,
        "collection_ton": views::ton(c.issued.collection_nanoton),
        "transaction": c.transaction,
        "order": views::order(&c.order),
    })
}

/// Create a checkout
///
/// Pay without giving the gateway a seed. Orders Stars (`product: "stars"`, `amount`) or a
/// Premium gift (`product: "premium"`, `months`) and answers a TON Connect `sendTransaction`
/// request (`transaction`) for the client's own wallet to sign: Fragment's invoice, plus the
/// commission debt due as a second message. Name the wallet as TON Connect's `account` gives it:
/// `wallet_address`, and `public_key` or `wallet_state_init` (needed for a wallet not deployed
/// yet). Then send the signed message to `POST /api/v1/checkouts/{checkout_id}/submit` before
/// `valid_until`. The checkout's id is its order's.
#[utoipa::path(post, path = "/api/v1/checkouts", tag = "checkout",
    params(doc::IdempotencyKeyHeader),
    request_body = doc::CheckoutBody,
    responses((status = 200, description = "The checkout: the transaction to sign, and its order (status `created`)", body = doc::Envelope<doc::Checkout>, headers(("Idempotent-Replayed" = bool, description = "`true` on a retry's copy of the first answer"))), errors::CheckoutCreate))]
async fn create_checkout(state: web::Data<AppState>, req: HttpRequest, body: SecretJson) -> Reply {
    let mut f = Fields::new(body.0)?;
    let key = idempotency_key(&req, &mut f);
    let username = f.username("username")?;
    let product = match f.string("product").map(|p| p.to_ascii_lowercase()) {
        Some(p) if p == "stars" => Ordered::Stars.read(&mut f),
        Some(p) if p == "premium" => Ordered::Premium {
            field: "months",
            alias: "duration",
        }
        .read(&mut f),
        Some(_) => {
            f.fail_with(FieldError::new(
                "product",
                "must be \"stars\" or \"premium\"",
            ));
            None
        }
        None => None,
    };
    let address = match f.wallet_address() {
        Some(a) => Some(a),
        None if !f.has("wallet_address") => {
            f.fail_with(FieldError::new(
                "wallet_address",
                "is required: the paying wallet's address (TON Connect's account.address)",
            ));
            None
        }
        None => None,
    };
    let public_key =
        f.optional_string("public_key")
            .and_then(|k| match crate::checkout::parse_public_key(&k) {
                Ok(k) => Some(k),
                Err(e) => {
                    f.fail_with(FieldError::new("public_key", e));
                    None
                }
            });
    let state_init = f.optional_string("wallet_state_init");
    if f.payment_method() == Some(events::PaymentMethod::UsdtTon) {
        f.fail_with(FieldError::new(
            "payment_method",
            "checkouts are paid in TON; a USDT purchase is a create or buy with payment_method \"usdt_ton\"",
        ));
    }
    if let Some(chain) = f.optional_string("network") {
        let ours = state.wallet_network;
        let named = match chain.trim().to_ascii_lowercase().as_str() {
            "-239" | "mainnet" => Some(crate::ton::Network::Mainnet),
            "-3" | "testnet" => Some(crate::ton::Network::Testnet),
            _ => None,
        };
        if named != Some(ours) {
            f.fail_with(FieldError::new(
                "network",
                format!(
                    "this gateway pays on {} (TON Connect chain {}); connect a wallet of that network",
                    if ours.is_testnet() { "testnet" } else { "mainnet" },
                    ours.global_id()
                ),
            ));
        }
    }
    let cookies = f.cookies()?;
    let webhook = webhook_url(&state, &mut f).await;
    let (Some(username), Some(product), Some(address)) = (username, product, address) else {
        return Err(missing(f));
    };
    f.finish()?;
    let keyed = key.map(|key| {
        let mut fingerprint = state.idempotency.fingerprint("checkout.create");
        fingerprint.field("username", username.as_str());
        match product {
            Product::Stars { amount } => fingerprint.field("stars", amount.to_string()),
            Product::Premium { months } => fingerprint.field("months", months.to_string()),
        };
        fingerprint.field("webhook_url", webhook.as_deref().unwrap_or_default());
        fingerprint.field("wallet", crate::ton::address::raw(&address.address));
        fingerprint.field(
            "public_key",
            public_key.map(|k| k.to_hex()).unwrap_or_default(),
        );
        fingerprint.field(
            "wallet_state_init",
            state_init.as_deref().unwrap_or_default(),
        );
        idempotent::feed_cookies(&mut fingerprint, cookies.as_ref());
        Keyed {
            key,
            scope: Scope::Wallet(crate::ton::address::raw(&address.address)),
            operation: "checkout.create",
            fingerprint,
            creates_order: true,
        }
    });
    let request = crate::actors::checkout::CheckoutRequest {
        product,
        username,
        wallet: address.address,
        hint: crate::checkout::WalletHint {
            public_key,
            state_init,
        },
        cookies,
        webhook_url: webhook,
    };
    let core = state.core.clone();
    idempotent::run(state, keyed, move |order_id| async move {
        let checkout = core.create_checkout(order_id, request).await?;
        ok(checkout_answer(&checkout))
    })
    .await
}

/// A checkout
///
/// The checkout as it was issued (the transaction to sign), with its order as it is now.
#[utoipa::path(get, path = "/api/v1/checkouts/{checkout_id}", tag = "checkout",
    params(("checkout_id" = uuid::Uuid, Path, description = "The checkout's id (its order's)")),
    responses((status = 200, description = "The checkout", body = doc::Envelope<doc::Checkout>), errors::GetCheckout))]
async fn get_checkout(state: web::Data<AppState>, path: web::Path<String>) -> Reply {
    let id = parse_uuid(
        "checkout_id",
        &path,
        ("ORDER_NOT_FOUND", "Checkout not found"),
    )?;
    let checkout = state.core.checkout(id).await?;
    ok(checkout_answer(&checkout))
}

/// Submit a signed checkout
///
/// Takes the signed external message (`boc`, base64, as TON Connect's `sendTransaction`
/// returns it) and checks it before anything is sent: signed by the checkout's wallet, carrying
/// exactly the issued messages and no other, valid no longer than issued, and with a seqno the
/// wallet can still apply. Then it is recorded and broadcast (or only followed, with
/// `already_broadcast: true`, as when the wallet app sent it), and it ends like any payment:
/// poll `GET /api/v1/queue/{request_id}`. Submitting the same message again answers the same
/// request. A message that is not the checkout's is CHECKOUT_REJECTED, naming the failed check;
/// one whose time ran out unapplied is CHECKOUT_EXPIRED. A KYC checkout needs its
/// `fragment_cookies` again.
#[utoipa::path(post, path = "/api/v1/checkouts/{checkout_id}/submit", tag = "checkout",
    params(("checkout_id" = uuid::Uuid, Path, description = "The checkout's id (its order's)")),
    request_body = doc::CheckoutSubmitBody,
    responses((status = 200, description = "The payment, recorded and on its way", body = doc::Envelope<doc::PayAnswer>), errors::SubmitCheckout))]
async fn submit_checkout(
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: SecretJson,
) -> Reply {
    let id = parse_uuid(
        "checkout_id",
        &path,
        ("ORDER_NOT_FOUND", "Checkout not found"),
    )?;
    let mut f = Fields::new(body.0)?;
    let boc = f.string("boc");
    let already_broadcast = f.optional_bool("already_broadcast").unwrap_or(false);
    let cookies = f.cookies()?;
    let Some(boc) = boc else {
        return Err(missing(f));
    };
    f.finish()?;
    let receipt = state
        .core
        .submit_checkout(id, &boc, already_broadcast, cookies)
        .await?;
    ok(pay_answer(&receipt))
}

/// Cancel an order
///
/// Cancels an order that is not paid yet: it can no longer be paid. A paid, queued or
/// finished (or expired) order cannot be cancelled: ORDER_NOT_CANCELLABLE. Cancelling a
/// cancelled order again answers it as it is.
#[utoipa::path(post, path = "/api/v1/orders/{order_id}/cancel", tag = "orders",
    params(("order_id" = uuid::Uuid, Path, description = "The order's id (one that is not a UUID is not found)")),
    responses((status = 200, description = "The order, status `cancelled`", body = doc::Envelope<doc::Order>), errors::Cancel))]
async fn cancel_order(state: web::Data<AppState>, path: web::Path<String>) -> Reply {
    let id = parse_uuid("order_id", &path, ("ORDER_NOT_FOUND", "Order not found"))?;
    let order = state.core.cancel_order(id).await?;
    ok(views::order(&order))
}

/// A wallet's orders
///
/// The orders a wallet paid (or is paying), newest first, a page at a time: pass the answer's
/// `next_cursor` as `cursor` for the next page (null on the last). Orders not paid yet have no
/// wallet, so they are not listed.
#[utoipa::path(get, path = "/api/v1/orders", tag = "orders",
    params(
        ("wallet_address" = Option<String>, Query, description = "The wallet, in any TON address form; or send `X-Wallet-Seed`"),
        ("X-Wallet-Seed" = Option<String>, Header, description = "Base64 of the wallet's mnemonic, instead of `wallet_address`"),
        ("status" = Option<String>, Query, description = "Only orders in these statuses, comma-separated: created, queued, processing, success, failed, expired, cancelled"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "Page size, default 20"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the page before"),
    ),
    responses((status = 200, description = "A page of orders", body = doc::Envelope<doc::OrderList>), errors::WalletQuery))]
async fn list_orders(state: web::Data<AppState>, req: HttpRequest) -> Reply {
    const MAX_LIMIT: u64 = 100;
    let query = query_map(&req)?;
    // Checked before a seed in the header costs a key derivation.
    let mut errors = vec![];
    let limit = query_number(&query, "limit", 20, 1..=MAX_LIMIT, &mut errors);
    let statuses = query.get("status").map(|list| {
        list.split(',')
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
    });
    if let Some(list) = &statuses {
        let known = crate::domain::OrderStatus::NAMES;
        if list.is_empty() || list.iter().any(|s| !known.contains(&s.as_str())) {
            errors.push(FieldError::new(
                "status",
                format!(
                    "must be one or more of {}, comma-separated",
                    known.join(", ")
                ),
            ));
        }
    }
    let cursor = match query.get("cursor").map(|c| uuid::Uuid::parse_str(c.trim())) {
        None => None,
        Some(Ok(id)) => Some(id),
        Some(Err(_)) => {
            errors.push(FieldError::new(
                "cursor",
                "is not a cursor: pass the next_cursor of the page before, as it was",
            ));
            None
        }
    };
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let (address, _) = queried_wallet(&state, &req, &query).await?;
    let (friendly, raw) = address_forms(&address, state.wallet_network.is_testnet());
    let filter = crate::readmodel::OrderFilter {
        statuses,
        wallet: Some(raw),
        before: cursor,
        ..Default::default()
    };
    // One more than a page: whether there is a next one.
    let mut page = state
        .core
        .projections()
        .tables()
        .orders(filter, 0, limit + 1)
        .await
        .map_err(|e| ApiError::from(CoreError::Store(e)))?;
    let more = page.items.len() as u64 > limit;
    page.items.truncate(limit as usize);
    let next_cursor = page
        .items
        .last()
        .filter(|_| more)
        .map(|o| o.order_id.to_string());
    let items: Vec<_> = page.items.iter().map(views::order).collect();
    ok(json!({
        "wallet_address": friendly,
        "items": items,
        "total": page.total,
        "limit": limit,
        "next_cursor": next_cursor,
    }))
}

/// Read an order
#[utoipa::path(get, path = "/api/v1/orders/{order_id}", tag = "orders",
    params(("order_id" = uuid::Uuid, Path, description = "The order's id (one that is not a UUID is not found)")),
    responses((status = 200, description = "The order", body = doc::Envelope<doc::Order>), errors::GetOrder))]
async fn get_order(state: web::Data<AppState>, path: web::Path<String>) -> Reply {
    let id = parse_uuid("order_id", &path, ("ORDER_NOT_FOUND", "Order not found"))?;
    let order = state.core.order(id).await?;
    let body = state
        .bodies
        .get_or_make(id, (order.updated_at_position, None, 0), || {
            success_bytes(views::order(&order))
        });
    Ok(json_body(body))
}

/// Read a payment request
///
/// What a client polls while its payment waits and runs. Not rate-limited.
#[utoipa::path(get, path = "/api/v1/queue/{request_id}", tag = "queue",
    params(("request_id" = uuid::Uuid, Path, description = "The request's id (one that is not a UUID is not found)")),
    responses((status = 200, description = "The queue request", body = doc::Envelope<doc::QueueRequest>), errors::GetRequest))]
async fn get_request(state: web::Data<AppState>, path: web::Path<String>) -> Reply {
    let id = parse_uuid(
        "request_id",
        &path,
        ("REQUEST_NOT_FOUND", "Request not found"),
    )?;
    let request = state.core.request(id).await?;
    let (position, wait) = {
        let live = state.core.projections().live();
        let p = live.queue.position(&id);
        (p, p.map_or(0, |p| live.queue.estimated_wait_seconds(p)))
    };
    let body = state
        .bodies
        .get_or_make(id, (request.updated_at_position, position, wait), || {
            success_bytes(views::request(&request, position, wait))
        });
    Ok(json_body(body))
}

/// Queue statistics
#[utoipa::path(get, path = "/api/v1/queue/status", tag = "queue",
    responses((status = 200, description = "Queue statistics", body = doc::Envelope<doc::QueueStatus>), errors::Queue))]
async fn queue_status(state: web::Data<AppState>) -> Reply {
    let stats = state.core.projections().live().queue.stats();
    ok(views::queue_status(&stats))
}

/// Queue length
#[utoipa::path(get, path = "/api/v1/queue", tag = "queue",
    responses((status = 200, description = "Requests waiting or running", body = doc::Envelope<doc::QueueLength>), errors::Queue))]
async fn queue_length(state: web::Data<AppState>) -> Reply {
    let queue_length = state.core.projections().live().queue.len();
    ok(json!({"queue_length": queue_length}))
}

/// Check Premium eligibility
///
/// Whether Fragment would let the user be gifted Premium. A user Fragment does not know, or
/// one who already has Premium, is an answer (`eligible: false`), not an error.
#[utoipa::path(post, path = "/api/v1/premium/check-eligibility", tag = "premium",
    request_body = doc::EligibilityBody,
    responses((status = 200, description = "Eligible or not, and why", body = doc::EligibilityEnvelope), errors::Eligibility))]
async fn premium_eligibility(state: web::Data<AppState>, body: SecretJson) -> Reply {
    let mut f = Fields::new(body.0)?;
    let username = f.username("username")?;
    let months = f.months_or_alias("months", "duration", false);
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
                "PREMIUM_ALREADY_ACTIVE" | "USER_NOT_FOUND"
                    if matches!(e, CoreError::Fragment(_)) =>
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

/// Resolve a seed's wallet
///
/// The wallet a payment with this seed (and these options) would come from.
#[utoipa::path(post, path = "/api/v1/wallet/resolve", tag = "wallet",
    request_body = doc::WalletResolveBody,
    responses((status = 200, description = "The wallet", body = doc::Envelope<doc::WalletResolved>), errors::WalletResolve))]
async fn wallet_resolve(state: web::Data<AppState>, body: SecretJson) -> Reply {
    let mut f = Fields::new(body.0)?;
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

type QueryMap = std::collections::HashMap<String, String>;

fn query_map(req: &HttpRequest) -> Result<QueryMap, ApiError> {
    web::Query::<QueryMap>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .map_err(|_| ApiError::bad_request("the query string is malformed"))
}

/// A whole number in the query, `default` when absent; one outside `range` is a field error
/// (and `default` meanwhile).
fn query_number(
    query: &QueryMap,
    field: &str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
    errors: &mut Vec<FieldError>,
) -> u64 {
    match query.get(field).map(|s| s.trim().parse::<u64>()) {
        None => default,
        Some(Ok(n)) if range.contains(&n) => n,
        Some(_) => {
            errors.push(FieldError::new(
                field,
                format!(
                    "must be a whole number from {} to {}",
                    range.start(),
                    range.end()
                ),
            ));
            default
        }
    }
}

/// The wallet a read-only query is about: `?wallet_address=`, or the `X-Wallet-Seed` header
/// (never a seed in the URL); with its version when the seed told it.
async fn queried_wallet(
    state: &AppState,
    req: &HttpRequest,
    query: &QueryMap,
) -> Result<(TonAddress, Option<crate::ton::WalletVersion>), ApiError> {
    if let Some(raw) = query.get("wallet_address").filter(|s| !s.trim().is_empty()) {
        let parsed = ParsedAddress::parse(raw).map_err(|e| {
            ApiError::validation(vec![FieldError::new("wallet_address", e.to_string())])
        })?;
        return Ok((parsed.address, None));
    }
    if let Some(seed) = req.headers().get("X-Wallet-Seed") {
        let input = PayerInput {
            seed: header_seed(seed)?,
            choice: WalletChoice {
                address: None,
                version: None,
                account_index: None,
            },
            network: state.wallet_network,
        };
        let w = input.resolve().await?.payer.wallet;
        return Ok((w.address().clone(), Some(w.version())));
    }
    Err(ApiError::validation(vec![FieldError::new(
        "wallet_address",
        "is required (or send the X-Wallet-Seed header)",
    )]))
}

/// A wallet's non-bounceable and raw forms.
fn address_forms(a: &TonAddress, testnet: bool) -> (String, String) {
    (
        crate::ton::address::friendly(a, false, testnet),
        crate::ton::address::raw(a),
    )
}

/// Wallet balance
///
/// The wallet's balance on chain, by address or by seed (in a header, never in the URL).
#[utoipa::path(get, path = "/api/v1/wallet/balance", tag = "wallet",
    params(
        ("wallet_address" = Option<String>, Query, description = "The wallet, in any TON address form; or send `X-Wallet-Seed`"),
        ("X-Wallet-Seed" = Option<String>, Header, description = "Base64 of the wallet's mnemonic, instead of `wallet_address`"),
    ),
    responses((status = 200, description = "The balance", body = doc::Envelope<doc::WalletBalance>), errors::WalletBalance))]
async fn wallet_balance(state: web::Data<AppState>, req: HttpRequest) -> Reply {
    let (address, version) = queried_wallet(&state, &req, &query_map(&req)?).await?;
    let account = state
        .core
        .chain()
        .account_state(&address)
        .await
        .map_err(|e| ApiError::ton(&e))?;
    let version = version.or_else(|| account.wallet().ok().flatten().map(|(v, _)| v));
    let (friendly, raw) = address_forms(&address, state.wallet_network.is_testnet());
    ok(json!({
        "wallet_address": friendly,
        "wallet_address_raw": raw,
        "wallet_version": version.map(|v| v.as_str()),
        "balance_ton": views::ton(account.balance),
        "balance_nanoton": account.balance.as_u64().to_string(),
        "state": match account.status {
            AccountStatus::Active => "active",
            AccountStatus::Uninitialized => "uninitialized",
            AccountStatus::Frozen => "frozen",
        },
    }))
}

/// A wallet's commission debt
#[utoipa::path(get, path = "/api/v1/commission/balance", tag = "commission",
    params(
        ("wallet_address" = Option<String>, Query, description = "The wallet, in any TON address form; or send `X-Wallet-Seed`"),
        ("X-Wallet-Seed" = Option<String>, Header, description = "Base64 of the wallet's mnemonic, instead of `wallet_address`"),
    ),
    responses((status = 200, description = "The wallet's commission account", body = doc::Envelope<doc::CommissionBalance>), errors::WalletQuery))]
async fn commission_balance(state: web::Data<AppState>, req: HttpRequest) -> Reply {
    let (address, _) = queried_wallet(&state, &req, &query_map(&req)?).await?;
    let (friendly, raw) = address_forms(&address, state.wallet_network.is_testnet());
    let c = state
        .core
        .projections()
        .tables()
        .wallet(&raw)
        .await
        .map_err(|e| ApiError::from(CoreError::Store(e)))?
        .unwrap_or_default();
    let p = state.core.policy();
    let mut account = views::commission_account(Some(friendly), &raw, &c, p.debt_limit_nanoton);
    account.insert(
        "debt_limit_ton".into(),
        json!(views::ton(p.debt_limit_nanoton)),
    );
    account.insert(
        "collection_threshold_ton".into(),
        json!(views::ton(p.collection_threshold_nanoton)),
    );
    ok(Value::Object(account))
}

/// Commission rates
#[utoipa::path(get, path = "/api/v1/commission/rates", tag = "commission",
    responses((status = 200, description = "The configured rates and debt limits", body = doc::Envelope<doc::CommissionRates>), errors::Rates))]
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

/// A wallet's purchases
///
/// Newest first, a page at a time.
#[utoipa::path(get, path = "/api/v1/transactions", tag = "wallet",
    params(
        ("wallet_address" = Option<String>, Query, description = "The wallet, in any TON address form; or send `X-Wallet-Seed`"),
        ("X-Wallet-Seed" = Option<String>, Header, description = "Base64 of the wallet's mnemonic, instead of `wallet_address`"),
        ("limit" = Option<u32>, Query, minimum = 0, maximum = 100, description = "Page size, default 20"),
        ("offset" = Option<u32>, Query, minimum = 0, description = "Purchases to skip, default 0"),
    ),
    responses((status = 200, description = "A page of purchases", body = doc::Envelope<doc::Transactions>), errors::WalletQuery))]
async fn transactions(state: web::Data<AppState>, req: HttpRequest) -> Reply {
    const MAX_LIMIT: u64 = 100;
    let query = query_map(&req)?;
    // The page is checked before a seed in the header costs a key derivation.
    let mut errors = vec![];
    let limit = query_number(&query, "limit", 20, 0..=MAX_LIMIT, &mut errors);
    let offset = query_number(&query, "offset", 0, 0..=u64::from(u32::MAX), &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let (address, _) = queried_wallet(&state, &req, &query).await?;
    let (friendly, raw) = address_forms(&address, state.wallet_network.is_testnet());
    let page = state
        .core
        .projections()
        .tables()
        .history(&raw, offset, limit)
        .await
        .map_err(|e| ApiError::from(CoreError::Store(e)))?;
    let items: Vec<Value> = page.items.iter().map(views::history_item).collect();
    ok(json!({
        "wallet_address": friendly,
        "items": items,
        "total": page.total,
        "limit": limit,
        "offset": offset,
    }))
}

/// Prices
///
/// Fragment's current Stars and Premium prices (cached briefly).
#[utoipa::path(get, path = "/api/v1/prices", tag = "prices",
    responses((status = 200, description = "The prices", body = doc::PricesEnvelope), errors::Prices))]
async fn prices(state: web::Data<AppState>) -> Reply {
    let list = state.core.prices(None).await?;
    let usd = |p: &crate::fragment::Price| p.usd.map(|u| u.round_dp(2).to_string());
    let (min_count, min_price) = &list.stars_minimum;
    let per_star = Nanoton::new(min_price.ton.as_u64() / u64::from(*min_count));
    let packages: Vec<Value> = list
        .stars_packages
        .iter()
        .map(|(n, p)| json!({"amount": n, "price_ton": views::ton(p.ton), "price_usd": usd(p)}))
        .collect();
    let premium_list: Vec<Value> = list
        .premium
        .iter()
        .map(|(m, p)| json!({"months": m.get(), "price_ton": views::ton(p.ton), "price_usd": usd(p)}))
        .collect();
    // Keyed as the original service's documentation names them (`3_months.base_ton`).
    let mut premium_by_months = serde_json::Map::new();
    for (m, p) in &list.premium {
        premium_by_months.insert(
            format!("{}_months", m.get()),
            json!({"months": m.get(), "base_ton": views::ton(p.ton), "base_usd": usd(p)}),
        );
    }
    let stars = json!({
        "price_per_star_ton": views::ton(per_star),
        "price_per_star_usd": min_price.usd.map(|u| (u / rust_decimal::Decimal::from(*min_count)).round_dp(6).to_string()),
        "minimum_amount": min_count,
        "minimum_price_ton": views::ton(min_price.ton),
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
