//! What every client request passes before its route: seeds are refused in URLs, and the
//! per-client rate limit (`limit`) is spent.
//!
//! Written as a `Transform` rather than with `middleware::from_fn`: both checks are
//! synchronous, and `from_fn` boxes the inner service's future and this one's for every
//! request and clones the handles into each; here a passed request costs no allocation and
//! goes on as the inner service's own future. The polled read endpoints are where that shows.

use std::future::{ready, Ready};
use std::sync::Arc;
use std::time::Instant;

use actix_web::body::EitherBody;
use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::ResponseError;
use futures_util::future::{Either, MapOk, TryFutureExt};

use super::limit::{ClientIps, Limiter};
use super::{ApiError, FieldError};

/// The gate, shared by every worker's app.
#[derive(Clone)]
pub struct Gate {
    pub limiter: Arc<Limiter>,
    pub clients: Arc<ClientIps>,
}

impl<S, B> Transform<S, ServiceRequest> for Gate
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = GateService<S>;
    type InitError = ();
    type Future = Ready<Result<GateService<S>, ()>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(GateService {
            service,
            gate: self.clone(),
        }))
    }
}

pub struct GateService<S> {
    service: S,
    gate: Gate,
}

type Passed<B> = fn(ServiceResponse<B>) -> ServiceResponse<EitherBody<B>>;

impl<S, B> Service<ServiceRequest> for GateService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = Either<Ready<Result<Self::Response, Self::Error>>, MapOk<S::Future, Passed<B>>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        match self.refusal(&req) {
            Some(error) => Either::Left(ready(Ok(req
                .into_response(error.error_response())
                .map_into_right_body()))),
            None => Either::Right(
                self.service
                    .call(req)
                    .map_ok(ServiceResponse::map_into_left_body as Passed<B>),
            ),
        }
    }
}

impl<S> GateService<S> {
    /// Why `req` goes no further, if it does not. The budget is spent first: a refused
    /// request counts like any other.
    fn refusal(&self, req: &ServiceRequest) -> Option<ApiError> {
        if let Err(wait) = self.spend(req) {
            return Some(
                ApiError::new(
                    429,
                    "RATE_LIMIT_EXCEEDED",
                    format!(
                        "Rate limit exceeded: too many requests from this address; retry in {wait} s"
                    ),
                )
                .with_retry_after(wait),
            );
        }
        if has_seed_in_url(req) {
            return Some(ApiError::validation(vec![FieldError::new(
                "seed",
                "must not be sent in the URL (URLs are logged): send it in the JSON body, or in the X-Wallet-Seed header for reads",
            )]));
        }
        None
    }

    /// Takes a token from the client's bucket, or says how many seconds until one is back.
    fn spend(&self, req: &ServiceRequest) -> Result<(), u64> {
        if !rate_limited(req) {
            return Ok(());
        }
        match self.gate.clients.of(req) {
            Some(client) => self.gate.limiter.check(client, Instant::now()),
            None => Ok(()),
        }
    }
}

/// Seeds never travel in URLs: proxies and access logs keep URLs.
fn has_seed_in_url(req: &ServiceRequest) -> bool {
    url::form_urlencoded::parse(req.query_string().as_bytes())
        .any(|(k, _)| k.eq_ignore_ascii_case("seed") || k.eq_ignore_ascii_case("mnemonic"))
}

/// Whether `req` spends from its client's budget. Decided on the decoded path the router
/// matches, not the raw one: `/%61pi/…` reaches the same handlers as `/api/…` and must count
/// the same.
fn rate_limited(req: &ServiceRequest) -> bool {
    let path = req.match_info().as_str();
    // Reading a queue request is what a client's wait loop does every couple of seconds (the
    // original SDK: every 2 s for 5 minutes); counting it would throttle a waiting buyer
    // into thinking the purchase failed. It only reads a projection.
    let polling = req.method() == actix_web::http::Method::GET
        && path.starts_with("/api/v1/queue/")
        && path != "/api/v1/queue/status";
    // Everything counts except polling, health checks, this API's document, and the admin
    // API (which limits wrong keys itself).
    let exempt =
        polling || path == "/health" || path == "/openapi.json" || path.starts_with("/admin/");
    !exempt
}
