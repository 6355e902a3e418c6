//! The simulator's HTTP face: fragment.com's pages and `/api`, plus `/sim/*` control
//! endpoints (log in, expire a session, list deliveries, inject a price change).

use std::collections::HashMap;

use actix_web::cookie::Cookie;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine;
use serde::Deserialize;
use serde_json::json;

use super::state::ApiRequest;
use super::{now_ms, FragmentSimShared};
use crate::fragment::cookies;
use crate::sim::faults::Fault;
use crate::ton::address::{self, parse_address};

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    for path in ["/", "/stars", "/stars/buy", "/premium", "/premium/gift"] {
        cfg.route(path, web::get().to(page));
    }
    cfg.route("/api", web::post().to(api))
        .route("/sim/login", web::post().to(login))
        .route("/sim/sessions/expire", web::post().to(expire))
        .route("/sim/deliveries", web::get().to(deliveries))
        .route("/sim/price-change", web::post().to(price_change))
        .route("/sim/status", web::get().to(status))
        .default_service(web::to(|| async {
            HttpResponse::NotFound()
                .content_type("text/html; charset=utf-8")
                .body("<html><body>Page not found</body></html>")
        }));
}

fn request_cookies(req: &HttpRequest) -> HashMap<String, String> {
    req.cookies()
        .map(|jar| {
            jar.iter()
                .map(|c| (c.name().to_string(), c.value().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

fn with_cookies(
    mut resp: actix_web::HttpResponseBuilder,
    set: Vec<(String, String)>,
) -> actix_web::HttpResponseBuilder {
    for (name, value) in set {
        resp.cookie(
            Cookie::build(name, value)
                .path("/")
                .http_only(true)
                .finish(),
        );
    }
    resp
}

async fn faulted(shared: &FragmentSimShared) -> Option<HttpResponse> {
    match shared.faults.before_request().await {
        Fault::Fail => Some(
            HttpResponse::ServiceUnavailable()
                .content_type("text/html; charset=utf-8")
                .body("<html><body>simulated fault: service temporarily unavailable</body></html>"),
        ),
        // Before the site looks at the request: dropped here, it never took effect.
        hang @ Fault::Hang(..) => hang.hang().await,
        Fault::None => None,
    }
}

/// Keeps an `/api` request counted as in flight for its session until it is answered, or
/// dropped half-way (a client that gave up).
struct InFlight<'a> {
    shared: &'a FragmentSimShared,
    ssid: Option<String>,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(ssid) = &self.ssid {
            self.shared.concurrency().finished(ssid);
        }
    }
}

async fn page(shared: web::Data<FragmentSimShared>, req: HttpRequest) -> HttpResponse {
    if let Some(resp) = faulted(&shared).await {
        return resp;
    }
    let (html, set) = shared
        .state()
        .page(&request_cookies(&req), req.path(), now_ms());
    with_cookies(HttpResponse::Ok(), set)
        .content_type("text/html; charset=utf-8")
        .body(html)
}

/// `X-Requested-With: XMLHttpRequest` and an `Origin` or `Referer` on this host, as the
/// site's own pages send.
fn browser_headers(req: &HttpRequest) -> bool {
    let h = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let host = h("host").unwrap_or_default();
    let same_site = |v: Option<&str>| {
        v.is_some_and(|v| {
            v.split("://")
                .nth(1)
                .is_some_and(|rest| rest.split('/').next() == Some(host))
        })
    };
    h("x-requested-with") == Some("XMLHttpRequest")
        && (same_site(h("origin")) || same_site(h("referer")))
}

async fn api(
    shared: web::Data<FragmentSimShared>,
    req: HttpRequest,
    query: web::Query<HashMap<String, String>>,
    body: web::Bytes,
) -> HttpResponse {
    let form_encoded = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    let form = form_encoded
        .then(|| serde_urlencoded::from_bytes::<HashMap<String, String>>(&body).ok())
        .flatten();
    let request = ApiRequest {
        cookies: request_cookies(&req),
        hash: query.get("hash").cloned(),
        form,
        browser_headers: browser_headers(&req),
    };
    // Counted from arrival, before faults: a request an injected fault fails was still
    // made, and still overlapped whatever it overlapped.
    let ssid = request.cookies.get(cookies::SSID).cloned();
    let _in_flight = InFlight {
        shared: &shared,
        ssid: ssid.clone(),
    };
    if let Some(ssid) = &ssid {
        let field = |k: &str| request.form.as_ref().and_then(|f| f.get(k));
        shared.concurrency().arrived(
            ssid,
            field("method").map(String::as_str),
            field("id").map(String::as_str),
        );
    }
    if let Some(resp) = faulted(&shared).await {
        return resp;
    }
    let reply = shared.state().api(request, now_ms());
    if let (Some(ssid), Some(req_id)) = (&ssid, &reply.initiated) {
        shared.concurrency().initiated(ssid, req_id);
    }
    with_cookies(HttpResponse::Ok(), reply.set_cookies)
        .content_type("application/json")
        .body(reply.body)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    account: String,
    /// A wallet (any address form) to connect to the session, as after a ton_proof login.
    wallet: Option<String>,
}

/// `POST /sim/login {"account": "client", "wallet": "<address>"}`: the cookies of a fresh
/// logged-in session, as an object and as the API's `fragment_cookies` (base64 JSON).
async fn login(shared: web::Data<FragmentSimShared>, body: web::Json<LoginBody>) -> HttpResponse {
    let wallet = match body.wallet.as_deref().map(parse_address).transpose() {
        Ok(w) => w,
        Err(e) => return HttpResponse::BadRequest().json(json!({"error": format!("wallet: {e}")})),
    };
    match shared.state().login(&body.account, wallet.as_ref()) {
        Ok(cookies) => {
            let object: serde_json::Map<String, serde_json::Value> = cookies
                .into_iter()
                .map(|(k, v)| (k, serde_json::Value::String(v)))
                .collect();
            let encoded = base64::engine::general_purpose::STANDARD
                .encode(serde_json::Value::Object(object.clone()).to_string());
            HttpResponse::Ok().json(json!({"cookies": object, "fragment_cookies": encoded}))
        }
        Err(e) => HttpResponse::BadRequest().json(json!({"error": e})),
    }
}

#[derive(Deserialize)]
struct ExpireBody {
    stel_ssid: String,
}

async fn expire(shared: web::Data<FragmentSimShared>, body: web::Json<ExpireBody>) -> HttpResponse {
    let existed = shared.expire_session(&body.stel_ssid);
    HttpResponse::Ok().json(json!({"expired": existed}))
}

async fn deliveries(shared: web::Data<FragmentSimShared>) -> HttpResponse {
    HttpResponse::Ok().json(json!({"deliveries": shared.state().deliveries()}))
}

#[derive(Deserialize)]
struct PriceChangeBody {
    count: u32,
}

/// `POST /sim/price-change {"count": n}`: the next n purchase inits answer "Price was changed".
async fn price_change(
    shared: web::Data<FragmentSimShared>,
    body: web::Json<PriceChangeBody>,
) -> HttpResponse {
    shared.state().change_price_next(body.count);
    HttpResponse::Ok().json(json!({"ok": true}))
}

async fn status(shared: web::Data<FragmentSimShared>) -> HttpResponse {
    let state = shared.state();
    HttpResponse::Ok().json(json!({
        "payment_address": address::friendly(state.payment_address(), false, shared.network.is_testnet()),
        "payment_address_raw": address::raw(state.payment_address()),
        "deliveries": state.deliveries().len(),
        "ton_api_url": shared.ton_api_url,
    }))
}
