//! The HTTP API (API.md) on actix-web: routes, the error envelope for everything a client can
//! get wrong (bodies, content types, sizes, unknown routes), a seed-in-URL guard, and per-IP
//! rate limiting.
//!
//! - `routes`: the client endpoints.
//! - `input`: request bodies into validated values; the payer's wallet from its seed.
//! - `secret`: the body extractor that keeps seeds and cookies in wiped buffers only.
//! - `views`: the JSON shapes of orders, requests, history.
//! - `error`: `ApiError`, the one mapping from failures to codes.
//! - `limit`: the per-IP token bucket.
//! - `gate`: the middleware that spends it and refuses seeds in URLs.
//! - `admin`: the operator's API (`/admin/*`) and its key check.

pub mod admin;
pub mod bodies;
pub mod error;
pub mod gate;
pub mod idempotent;
pub mod input;
pub mod limit;
pub mod openapi;
pub mod routes;
pub mod secret;
pub mod views;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Instant;

use actix_web::dev::Server;
use actix_web::{web, App, HttpServer, ResponseError};
use chrono::{DateTime, Utc};

use crate::actors::Core;
use crate::ton::Network;
pub use error::{ApiError, FieldError};

/// Every route the server answers: the client API's, then the admin API's.
pub fn all_routes() -> impl Iterator<Item = &'static routes::Route> {
    routes::ROUTES.iter().chain(admin::ROUTES)
}

/// What every handler shares.
pub struct AppState {
    pub core: Core,
    /// `mainnet`, `testnet` or `sandbox`, as `/health` reports it.
    pub network_name: String,
    /// The network the clients' wallets live on.
    pub wallet_network: Network,
    pub started: Instant,
    /// When the commission rates were configured (this start).
    pub rates_updated_at: DateTime<Utc>,
    /// What `/health` says of the store.
    pub store_health: StoreHealth,
    /// The polled answers, serialized.
    pub bodies: bodies::Bodies,
    /// Requests under an `Idempotency-Key`.
    pub idempotency: std::sync::Arc<crate::idempotency::Idempotency>,
    /// The webhook workers, their settings and outbox.
    pub webhooks: std::sync::Arc<crate::webhooks::Webhooks>,
}

/// The store's health as `/health` reports it: asked at most once per `StoreHealth::FRESH`,
/// so that load balancers and monitors polling `/health` cost the store one query a second,
/// not one per poll. One caller asks while the others answer with the last word.
#[derive(Default)]
pub struct StoreHealth {
    last: std::sync::Mutex<Option<(Instant, bool)>>,
    asking: std::sync::atomic::AtomicBool,
}

impl StoreHealth {
    const FRESH: std::time::Duration = std::time::Duration::from_secs(1);

    pub async fn ok(&self, store: &dyn crate::store::EventStore) -> bool {
        use std::sync::atomic::Ordering;
        let last = *self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, ok)) = last {
            if at.elapsed() < Self::FRESH || self.asking.swap(true, Ordering::AcqRel) {
                return ok;
            }
        } else {
            self.asking.store(true, Ordering::Release);
        }
        /// Lets the next caller ask, however this one ends (answered, or dropped mid-way).
        struct Asked<'a>(&'a std::sync::atomic::AtomicBool);
        impl Drop for Asked<'_> {
            fn drop(&mut self) {
                self.0.store(false, std::sync::atomic::Ordering::Release);
            }
        }
        let _asked = Asked(&self.asking);
        let ok = store.head().await.is_ok();
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), ok));
        ok
    }
}

/// How the HTTP layer behaves.
#[derive(Clone, Debug)]
pub struct HttpSettings {
    pub body_limit_bytes: usize,
    pub requests_per_minute: u32,
    pub burst: u32,
    /// Most clients the rate limiter tracks at once.
    pub max_clients: usize,
    /// Seconds actix waits for in-flight requests when stopping.
    pub shutdown_timeout: u64,
    /// `X-Admin-Key` for `/admin/*`; empty disables the admin API.
    pub admin_key: crate::config::Secret,
    /// Proxies whose `X-Forwarded-For` names the client (rate limits, admin lockout).
    pub trusted_proxies: Vec<limit::IpNet>,
}

/// Starts serving on `listener` (bind port 0 for tests and read the port from the listener).
pub fn serve(
    listener: TcpListener,
    state: AppState,
    http: HttpSettings,
) -> std::io::Result<Server> {
    let state = web::Data::new(state);
    let limiter = Arc::new(limit::Limiter::new(
        http.requests_per_minute,
        http.burst,
        http.max_clients,
    ));
    let clients = web::Data::new(limit::ClientIps::new(http.trusted_proxies.clone()));
    let gate = gate::Gate {
        limiter,
        clients: clients.clone().into_inner(),
    };
    let admin = web::Data::new(admin::AdminAuth::new(&http.admin_key));
    let body_limit = http.body_limit_bytes;
    let server =
        HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(admin.clone())
                .app_data(clients.clone())
                .app_data(
                    web::JsonConfig::default()
                        .limit(body_limit)
                        .error_handler(|e, _| json_error(e).into()),
                )
                .app_data(web::PayloadConfig::default().limit(body_limit))
                .app_data(secret::BodyLimit(body_limit))
                .app_data(web::PathConfig::default().error_handler(|e, _| {
                    ApiError::bad_request(format!("invalid path: {e}")).into()
                }))
                .wrap(gate.clone())
                .configure(routes::configure)
                .configure(admin::configure)
                .default_service(web::to(|req: actix_web::HttpRequest| async move {
                    ApiError::not_found(format!(
                        "no route {} {}; see the API documentation for the endpoints",
                        req.method(),
                        req.path()
                    ))
                    .error_response()
                }))
        })
        .listen(listener)?
        .shutdown_timeout(http.shutdown_timeout)
        .disable_signals()
        .run();
    Ok(server)
}

/// The answer to a body that cannot be read (for `web::Json` and `secret::SecretJson` alike).
fn json_error(e: actix_web::error::JsonPayloadError) -> ApiError {
    use actix_web::error::JsonPayloadError as E;
    match e {
        E::ContentType => ApiError::bad_request(
            "the request body must be JSON: send it with Content-Type: application/json",
        ),
        E::Overflow { limit } | E::OverflowKnownLength { limit, .. } => {
            ApiError::bad_request(format!("the request body is larger than {limit} bytes"))
        }
        E::Deserialize(e) => ApiError::bad_request(format!(
            "the request body is not valid JSON: {}",
            // serde_json's messages name the line and column, never echo the input.
            e
        )),
        other => ApiError::bad_request(format!("the request body could not be read: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{EventStore, SqliteStore};

    /// `/health` asks the store once per second at most, and sees it go down at the next ask.
    #[tokio::test]
    async fn store_health_is_asked_at_most_once_a_second_and_follows_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("events.sqlite3")).unwrap();
        let health = StoreHealth::default();
        assert!(health.ok(&store).await);
        EventStore::close(&store).await.unwrap();
        assert!(
            store.head().await.is_err(),
            "a closed store no longer answers"
        );
        assert!(
            health.ok(&store).await,
            "the answer of a moment ago is reused"
        );
        tokio::time::sleep(StoreHealth::FRESH + std::time::Duration::from_millis(100)).await;
        assert!(!health.ok(&store).await, "the store went down");
    }
}
