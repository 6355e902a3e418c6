//! The admin API over loopback (`/admin/*`, docs/admin-api.md): the key check, each
//! endpoint's answer, replacing the operator's Fragment sessions while the gateway runs, and
//! settling a wallet's debt. A sandbox gateway on a random port with a fresh data directory
//! per test, as in tests/api.rs.

mod sandbox;

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use fragment_gateway::app::{self, App};
use fragment_gateway::fragment::FragmentCookies;
use fragment_gateway::sim::faults::FaultConfig;
use fragment_gateway::sim::fragment::state::Prices;
use fragment_gateway::ton::Nanoton;
use sandbox::assert_error;
use serde_json::{json, Value};

const KEY: &str = "test-admin-key-0123456789abcdef";

struct TestApp {
    app: App,
    base: String,
    http: reqwest::Client,
    seed: String,
    dir: tempfile::TempDir,
    /// Every response body seen, to check that no secret was ever sent back.
    seen: std::sync::Mutex<String>,
}

async fn spawn(overrides: &[(&str, &str)]) -> TestApp {
    spawn_in(tempfile::tempdir().unwrap(), overrides).await
}

/// A gateway on `dir`, which may hold the data of an earlier one.
async fn spawn_in(dir: tempfile::TempDir, overrides: &[(&str, &str)]) -> TestApp {
    let started = sandbox::start(dir.path(), overrides).await;
    TestApp {
        base: started.base,
        app: started.app,
        http: reqwest::Client::new(),
        seed: started.seed,
        dir,
        seen: Default::default(),
    }
}

impl TestApp {
    async fn send(&self, r: reqwest::RequestBuilder) -> (u16, Value) {
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        self.seen.lock().unwrap().push_str(&text);
        (status, serde_json::from_str(&text).unwrap())
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(self.http.post(format!("{}{path}", self.base)).json(&body))
            .await
    }

    async fn admin_get(&self, path: &str) -> (u16, Value) {
        self.send(
            self.http
                .get(format!("{}{path}", self.base))
                .header("X-Admin-Key", KEY),
        )
        .await
    }

    async fn admin_post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(
            self.http
                .post(format!("{}{path}", self.base))
                .header("X-Admin-Key", KEY)
                .json(&body),
        )
        .await
    }

    fn sandbox(&self) -> &app::Sandbox {
        self.app.sandbox.as_ref().unwrap()
    }

    /// Polls the queue request until it has ended.
    async fn wait_request(&self, request_id: &str) -> Value {
        self.wait_request_status(request_id, &["completed", "failed", "timeout"])
            .await
    }

    async fn wait_request_status(&self, request_id: &str, statuses: &[&str]) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, body) = self.get(&format!("/api/v1/queue/{request_id}")).await;
            assert_eq!(status, 200, "{body}");
            if statuses.contains(&body["data"]["status"].as_str().unwrap()) {
                return body["data"].clone();
            }
            assert!(
                Instant::now() < deadline,
                "request {request_id} never reached {statuses:?}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls the order until Fragment's answer about the delivery is recorded.
    async fn wait_delivery_known(&self, order_id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (_, body) = self.get(&format!("/api/v1/orders/{order_id}")).await;
            if !body["data"]["delivery_confirmed"].is_null() {
                return body["data"].clone();
            }
            assert!(Instant::now() < deadline, "delivery never known: {body}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A no-KYC one-shot Stars purchase from the demo wallet, to its end.
    async fn buy_stars(&self, amount: u32) -> Value {
        let (status, body) = self
            .post(
                "/api/v1/stars/buy",
                json!({"username": "@alice", "amount": amount, "seed": self.seed}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let request = self
            .wait_request(body["data"]["request_id"].as_str().unwrap())
            .await;
        assert_eq!(request["status"], "completed", "{request}");
        request
    }

    /// A fresh operator login on the simulated fragment.com, as `fragment_cookies`.
    fn owner_login(&self) -> (FragmentCookies, String) {
        sandbox::fragment_login(&self.app, "owner")
    }

    /// Stops the gateway and checks that none of these sessions' cookie values was ever in
    /// a response or reached the data directory.
    async fn assert_cookies_stayed_in_memory(self, sessions: &[&FragmentCookies]) {
        let cookie_values: Vec<String> = sessions.iter().flat_map(|c| secrets(c)).collect();
        let (seen, dir) = self.stop().await;
        assert_absent("the responses", seen.as_bytes(), &cookie_values);
        assert_not_in_dir(dir.path(), &cookie_values);
    }

    /// Stops the gateway and returns every response body seen and the data directory.
    async fn stop(self) -> (String, tempfile::TempDir) {
        self.app.stop().await;
        (self.seen.into_inner().unwrap(), self.dir)
    }
}

fn ton(nanoton: u64) -> String {
    Nanoton::new(nanoton).to_ton_string()
}

/// Every cookie value of `cookies` (the long ones: `stel_dt` is a timezone offset).
fn secrets(cookies: &FragmentCookies) -> Vec<String> {
    cookies
        .names()
        .filter(|n| *n != "stel_dt")
        .map(|n| cookies.get(n).unwrap().to_string())
        .collect()
}

fn assert_absent(what: &str, haystack: &[u8], secrets: &[String]) {
    let text = String::from_utf8_lossy(haystack);
    for s in secrets {
        assert!(s.len() >= 16, "too short to search for: {s}");
        assert!(
            !text.contains(s.as_str()),
            "a cookie value was found in {what}"
        );
    }
}

fn assert_not_in_dir(dir: &Path, secrets: &[String]) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            assert_not_in_dir(&path, secrets);
        } else {
            let bytes = std::fs::read(&path).unwrap();
            assert_absent(&path.display().to_string(), &bytes, secrets);
        }
    }
}

#[actix_web::test]
async fn without_a_configured_key_every_admin_route_answers_401() {
    let t = spawn(&[]).await;
    for path in ["/admin/orders", "/admin/commission", "/admin/no-such-route"] {
        let (status, body) = t.admin_get(path).await;
        assert_error(status, &body, 401, "UNAUTHORIZED");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("disabled"),
            "{body}"
        );
    }
    let (status, body) = t
        .admin_post("/admin/owner-cookies", json!({"fragment_cookies": []}))
        .await;
    assert_error(status, &body, 401, "UNAUTHORIZED");
    // An empty key is no key.
    let (status, body) = t
        .send(
            t.http
                .get(format!("{}/admin/orders", t.base))
                .header("X-Admin-Key", ""),
        )
        .await;
    assert_error(status, &body, 401, "UNAUTHORIZED");
    t.stop().await;
}

#[actix_web::test]
async fn wrong_keys_get_401_and_an_address_that_keeps_guessing_is_stopped() {
    let t = spawn(&[("FG_ADMIN__KEY", KEY)]).await;
    let (status, body) = t.get("/admin/orders").await;
    assert_error(status, &body, 401, "UNAUTHORIZED");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("X-Admin-Key"));
    // The right key works; an unknown admin route is then a 404 in the envelope.
    assert_eq!(t.admin_get("/admin/orders").await.0, 200);
    let (status, body) = t.admin_get("/admin/no-such-route").await;
    assert_error(status, &body, 404, "NOT_FOUND");

    let wrong = |key: &'static str| {
        t.http
            .get(format!("{}/admin/orders", t.base))
            .header("X-Admin-Key", key)
    };
    // A prefix of the key, the key with a byte more: both wrong.
    for key in [&KEY[..10], "test-admin-key-0123456789abcdefX"] {
        let (status, body) = t.send(wrong(key)).await;
        assert_error(status, &body, 401, "UNAUTHORIZED");
        assert!(!body.to_string().contains(KEY), "{body}");
    }
    // Ten wrong keys a minute per address, in a burst of ten; then even the right key
    // waits, so guessing cannot go faster.
    for _ in 2..10 {
        assert_eq!(t.send(wrong("nope")).await.0, 401);
    }
    let r = t
        .http
        .get(format!("{}/admin/orders", t.base))
        .header("X-Admin-Key", KEY)
        .send()
        .await
        .unwrap();
    sandbox::assert_rate_limited(r, 6).await;
    // The client API is not affected.
    assert_eq!(t.get("/api/v1/queue").await.0, 200);
    t.stop().await;
}

#[actix_web::test]
async fn lists_audit_commission_rebuild_and_settlement_after_a_purchase() {
    // Fragment is never waited for, so the delivery stays unconfirmed: the follow-up list.
    let t = spawn(&[
        ("FG_ADMIN__KEY", KEY),
        ("FG_FRAGMENT__DELIVERY_TIMEOUT_SECONDS", "0"),
    ])
    .await;
    let price = Prices::default().stars(100);
    let commission = price / 100;
    let request = t.buy_stars(100).await;
    let order_id = request["order_id"].as_str().unwrap().to_string();
    let request_id = request["request_id"].as_str().unwrap().to_string();
    let order = t.wait_delivery_known(&order_id).await;
    assert_eq!(order["delivery_confirmed"], false, "{order}");
    // And an order nobody paid.
    let (status, created) = t
        .post(
            "/api/v1/orders/stars",
            json!({"username": "@bob", "amount": 50}),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let unpaid_id = created["data"]["order_id"].as_str().unwrap().to_string();
    let demo = t.sandbox().demo_wallet.friendly_address(false);
    let demo_raw = t.sandbox().demo_wallet.raw_address();

    // Orders, newest first, with their filters.
    let (status, body) = t.admin_get("/admin/orders").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], true);
    let data = &body["data"];
    assert_eq!(
        (
            data["total"].clone(),
            data["limit"].clone(),
            data["offset"].clone()
        ),
        (json!(2), json!(50), json!(0))
    );
    assert_eq!(data["items"][0]["order_id"], unpaid_id.as_str());
    assert_eq!(data["items"][1]["order_id"], order_id.as_str());
    assert_eq!(data["items"][1]["status"], "success");
    assert_eq!(data["items"][1]["price_ton"], ton(price));
    assert_eq!(data["items"][1]["wallet_address"], demo.as_str());
    let by_wallet = format!("wallet_address={demo}");
    let by_raw_wallet = format!("wallet_address={demo_raw}&status=success");
    for (query, total) in [
        ("status=success", 1),
        ("status=created", 1),
        ("status=success,created", 2),
        ("status=failed", 0),
        ("mode=no_kyc", 2),
        ("mode=kyc", 0),
        (by_wallet.as_str(), 1),
        (by_raw_wallet.as_str(), 1),
        ("limit=1&offset=1", 2),
    ] {
        let (status, body) = t.admin_get(&format!("/admin/orders?{query}")).await;
        assert_eq!(status, 200, "{query}: {body}");
        assert_eq!(body["data"]["total"], total, "{query}: {body}");
    }
    let (_, body) = t.admin_get("/admin/orders?limit=1&offset=1").await;
    assert_eq!(body["data"]["items"].as_array().unwrap().len(), 1);
    assert_eq!(body["data"]["items"][0]["order_id"], order_id.as_str());
    let (status, body) = t
        .admin_get("/admin/orders?status=paid&limit=0&wallet_adress=x")
        .await;
    assert_error(status, &body, 400, "VALIDATION_ERROR");
    let fields: Vec<&str> = body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields.len(), 3, "{body}");
    for f in ["status", "limit", "wallet_adress"] {
        assert!(fields.contains(&f), "{body}");
    }

    // Queue requests.
    let (status, body) = t
        .admin_get(&format!(
            "/admin/requests?status=completed&wallet_address={demo}"
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["total"], 1);
    let item = &body["data"]["items"][0];
    assert_eq!(item["request_id"], request_id.as_str());
    assert_eq!(item["result"]["commission_ton"], ton(commission));
    assert_eq!(
        t.admin_get("/admin/requests?status=queued").await.1["data"]["total"],
        0
    );

    // The follow-up list.
    let (status, body) = t.admin_get("/admin/orders/unconfirmed").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["total"], 1);
    assert_eq!(body["data"]["items"][0]["order_id"], order_id.as_str());
    assert_eq!(body["data"]["items"][0]["delivery_confirmed"], false);

    // The audit of the order, by id and by stream name.
    let (status, body) = t.admin_get(&format!("/admin/audit/{order_id}")).await;
    assert_eq!(status, 200, "{body}");
    let events = body["data"]["events"].as_array().unwrap();
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(types[0], "OrderCreated", "{types:?}");
    assert!(types.contains(&"OrderFulfilled"), "{types:?}");
    assert!(types.contains(&"OrderDeliveryUnconfirmed"), "{types:?}");
    assert_eq!(body["data"]["stream"], format!("order-{order_id}"));
    assert!(events[0]["summary"].as_str().unwrap().contains("@alice"));
    assert_eq!(events[0]["version"], 1);
    let (status, by_stream) = t
        .admin_get(&format!("/admin/streams/order-{order_id}/events"))
        .await;
    assert_eq!(status, 200, "{by_stream}");
    assert_eq!(by_stream["data"]["events"], body["data"]["events"]);
    // The wallet: its commission account and its orders.
    let (status, body) = t.admin_get(&format!("/admin/audit/{demo}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["stream"], format!("wallet-{demo_raw}"));
    assert_eq!(body["data"]["commission"]["debt_ton"], ton(commission));
    assert_eq!(body["data"]["orders"].as_array().unwrap().len(), 1);
    assert_eq!(body["data"]["events"][0]["event_type"], "CommissionAccrued");
    let (status, body) = t
        .admin_get(&format!("/admin/audit/{}", uuid::Uuid::new_v4()))
        .await;
    assert_error(status, &body, 404, "ORDER_NOT_FOUND");
    let (status, body) = t.admin_get("/admin/audit/not-a-target").await;
    assert_error(status, &body, 400, "VALIDATION_ERROR");
    let (status, body) = t.admin_get("/admin/streams/orders-1/events").await;
    assert_error(status, &body, 400, "VALIDATION_ERROR");

    // The operator's totals and who owes.
    let (status, body) = t.admin_get("/admin/commission").await;
    assert_eq!(status, 200, "{body}");
    let data = &body["data"];
    assert_eq!(data["totals"]["accrued_ton"], ton(commission));
    assert_eq!(data["totals"]["outstanding_ton"], ton(commission));
    assert_eq!(data["totals"]["wallets_with_debt"], 1);
    assert_eq!(data["total"], 1);
    assert_eq!(data["items"][0]["wallet_address"], demo.as_str());
    assert_eq!(data["items"][0]["wallet_address_raw"], demo_raw.as_str());
    assert_eq!(data["items"][0]["debt_ton"], ton(commission));
    assert_eq!(data["debt_limit_ton"], "2");

    // The live read models equal a rebuild from the log.
    let (status, body) = t.admin_post("/admin/projections/rebuild", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["equal"], true, "{body}");
    assert_eq!(body["data"]["differing"], json!([]));
    assert_eq!(body["data"]["replaced"], false);
    assert!(body["data"]["position"].as_u64().unwrap() > 5);
    assert_eq!(body["data"]["counts"]["orders"], 2);

    // Settling: never more than the debt, then part of it.
    let settle = format!("/admin/wallets/{demo}/settle");
    let (status, body) = t
        .admin_post(
            &settle,
            json!({"amount_ton": ton(commission + 1), "reference": "bank transfer 42"}),
        )
        .await;
    assert_error(status, &body, 400, "VALIDATION_ERROR");
    assert_eq!(body["error"]["details"][0]["field"], "amount_ton", "{body}");
    let (status, body) = t
        .admin_post(&settle, json!({"amount_ton": "0", "reference": ""}))
        .await;
    assert_error(status, &body, 400, "VALIDATION_ERROR");
    assert_eq!(
        body["error"]["details"].as_array().unwrap().len(),
        2,
        "{body}"
    );
    let (status, body) = t
        .admin_post(
            "/admin/wallets/nonsense/settle",
            json!({"amount_ton": "0.001", "reference": "r"}),
        )
        .await;
    assert_error(status, &body, 400, "VALIDATION_ERROR");
    let part = commission / 2;
    let settlement = json!({"amount_ton": ton(part), "reference": "bank transfer 42"});
    let (status, body) = t.admin_post(&settle, settlement.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["settled_ton"], ton(part));
    assert_eq!(body["data"]["debt_ton"], ton(commission - part));
    assert_eq!(body["data"]["wallet_address"], demo.as_str());
    assert_eq!(body["data"]["already_recorded"], false);
    // The operator's retry (a timeout, a double click) settles nothing more; the same
    // reference with another amount is refused by name.
    let (status, body) = t.admin_post(&settle, settlement).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["already_recorded"], true, "{body}");
    assert_eq!(body["data"]["debt_ton"], ton(commission - part));
    assert_eq!(body["data"]["settled_total_ton"], ton(part));
    let (status, body) = t
        .admin_post(
            &settle,
            json!({"amount_ton": ton(part / 2), "reference": "bank transfer 42"}),
        )
        .await;
    assert_error(status, &body, 400, "VALIDATION_ERROR");
    assert_eq!(body["error"]["details"][0]["field"], "reference", "{body}");
    // Every view agrees at once.
    let (_, body) = t
        .get(&format!("/api/v1/commission/balance?wallet_address={demo}"))
        .await;
    assert_eq!(body["data"]["debt_ton"], ton(commission - part));
    assert_eq!(body["data"]["settled_total_ton"], ton(part));
    let (_, body) = t.admin_get("/admin/commission").await;
    assert_eq!(body["data"]["totals"]["settled_ton"], ton(part));
    assert_eq!(
        body["data"]["totals"]["outstanding_ton"],
        ton(commission - part)
    );
    let (_, body) = t.admin_get(&format!("/admin/audit/{demo_raw}")).await;
    let last = body["data"]["events"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["event_type"], "DebtSettled");
    assert_eq!(last["data"]["reference"], "bank transfer 42");
    let (_, body) = t.admin_post("/admin/projections/rebuild", json!({})).await;
    assert_eq!(body["data"]["equal"], true, "{body}");
    t.stop().await;
}

#[actix_web::test]
async fn new_owner_cookies_take_over_and_never_leave_memory() {
    let t = spawn(&[("FG_ADMIN__KEY", KEY)]).await;
    // An option this route does not have is refused before anything changes.
    let (_, first_encoded) = t.owner_login();
    let (status, body) = t
        .admin_post(
            "/admin/owner-cookies?dry_run=1",
            json!({"fragment_cookies": [first_encoded]}),
        )
        .await;
    assert_error(status, &body, 400, "VALIDATION_ERROR");
    assert_eq!(body["error"]["details"][0]["field"], "dry_run", "{body}");
    // Cookies that cannot be a session are refused, naming the entry; nothing changes.
    let (status, body) = t
        .admin_post(
            "/admin/owner-cookies",
            json!({"fragment_cookies": ["bm90IGpzb24=", 7]}),
        )
        .await;
    assert_error(status, &body, 400, "VALIDATION_ERROR");
    assert_eq!(body["error"]["details"][0]["field"], "fragment_cookies[1]");
    let half = base64::engine::general_purpose::STANDARD.encode(r#"{"stel_ssid": "abc"}"#);
    let (status, body) = t
        .admin_post("/admin/owner-cookies", json!({"fragment_cookies": [half]}))
        .await;
    assert_error(status, &body, 400, "INVALID_COOKIES");
    assert_eq!(body["error"]["details"][0]["field"], "fragment_cookies[0]");
    let (status, body) = t.admin_post("/admin/owner-cookies", json!({})).await;
    assert_error(status, &body, 400, "VALIDATION_ERROR");

    // The operator logs in again: one new session replaces the sandbox's.
    let (first, first_encoded) = t.owner_login();
    let (status, body) = t
        .admin_post(
            "/admin/owner-cookies",
            json!({"fragment_cookies": [first_encoded]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["sessions"], 1);
    assert_eq!(body["data"]["previous_sessions"], 1);
    assert_eq!(body["data"]["kept_sessions"], 0);
    // The same cookies again: the same session, kept.
    let (_, body) = t
        .admin_post("/admin/owner-cookies", json!(first_encoded))
        .await;
    assert_eq!(body["data"]["kept_sessions"], 1, "{body}");

    // Fragment drops that session: no-KYC orders say so, since the sandbox's own session
    // (still valid at Fragment) is out of the pool.
    assert!(t
        .sandbox()
        .fragment
        .expire_session(first.get("stel_ssid").unwrap()));
    let (status, body) = t
        .post(
            "/api/v1/orders/stars",
            json!({"username": "@alice", "amount": 50}),
        )
        .await;
    assert_error(status, &body, 500, "OWNER_COOKIES_EXPIRED");

    // A fresh login, sent as a single string: purchases work again.
    let (second, second_encoded) = t.owner_login();
    let (status, body) = t
        .admin_post(
            "/admin/owner-cookies",
            json!({"fragment_cookies": second_encoded}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["sessions"], 1);
    assert_eq!(body["data"]["no_kyc_available"], true);
    let request = t.buy_stars(50).await;
    assert_eq!(request["mode"], "no_kyc");
    assert_eq!(t.get("/health").await.1["data"]["no_kyc_available"], true);

    // An empty list turns no-KYC orders off.
    let (_, body) = t
        .admin_post("/admin/owner-cookies", json!({"fragment_cookies": []}))
        .await;
    assert_eq!(body["data"]["sessions"], 0, "{body}");
    let (status, body) = t
        .post(
            "/api/v1/orders/stars",
            json!({"username": "@alice", "amount": 50}),
        )
        .await;
    assert_error(status, &body, 500, "OWNER_COOKIES_NOT_CONFIGURED");

    t.assert_cookies_stayed_in_memory(&[&first, &second]).await;
}

#[actix_web::test]
async fn a_payment_running_on_a_replaced_session_finishes_on_it() {
    let t = spawn(&[("FG_ADMIN__KEY", KEY)]).await;
    let (first, first_encoded) = t.owner_login();
    let (status, body) = t
        .admin_post("/admin/owner-cookies", json!([first_encoded]))
        .await;
    assert_eq!(status, 200, "{body}");

    // A slow fragment.com keeps the payment on its session long enough to replace it.
    t.sandbox().fragment.faults().set_config(FaultConfig {
        latency: Duration::from_millis(150),
        ..Default::default()
    });
    let (status, body) = t
        .post(
            "/api/v1/stars/buy",
            json!({"username": "@alice", "amount": 50, "seed": t.seed}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let request_id = body["data"]["request_id"].as_str().unwrap().to_string();
    let running = t.wait_request_status(&request_id, &["processing"]).await;
    assert_eq!(running["status"], "processing");
    let (second, second_encoded) = t.owner_login();
    let (status, body) = t
        .admin_post("/admin/owner-cookies", json!([second_encoded]))
        .await;
    assert_eq!(status, 200, "{body}");
    let request = t.wait_request(&request_id).await;
    assert_eq!(request["status"], "completed", "{request}");
    // Delivery is confirmed on the session that bought, after the replacement.
    let order = t
        .wait_delivery_known(request["order_id"].as_str().unwrap())
        .await;
    assert_eq!(order["delivery_confirmed"], true, "{order}");
    t.sandbox()
        .fragment
        .faults()
        .set_config(FaultConfig::default());

    // The first session is gone; the next purchase runs on the second.
    assert!(t
        .sandbox()
        .fragment
        .expire_session(first.get("stel_ssid").unwrap()));
    let request = t.buy_stars(50).await;
    let order = t
        .wait_delivery_known(request["order_id"].as_str().unwrap())
        .await;
    assert_eq!(order["delivery_confirmed"], true, "{order}");
    assert_eq!(t.sandbox().fragment.deliveries().len(), 2);

    t.assert_cookies_stayed_in_memory(&[&first, &second]).await;
}

#[actix_web::test]
async fn a_rebuild_finds_live_read_models_that_differ_from_the_log_and_can_replace_them() {
    let t = spawn(&[("FG_ADMIN__KEY", KEY)]).await;
    let request = t.buy_stars(50).await;
    let order_id = request["order_id"].as_str().unwrap().to_string();
    let (_, body) = t
        .admin_post("/admin/projections/rebuild?replace=true", json!({}))
        .await;
    assert_eq!(
        (&body["data"]["equal"], &body["data"]["replaced"]),
        (&json!(true), &json!(false)),
        "{body}"
    );
    assert_eq!(body["data"]["counts"]["orders"], 1, "{body}");
    let (status, body) = t
        .admin_post("/admin/projections/rebuild?replace=maybe", json!({}))
        .await;
    assert_error(status, &body, 400, "VALIDATION_ERROR");

    // Tables that lie (a bug, a hand edit, a bad restore): an order's status and the
    // operator's totals.
    sandbox::run_sql(
        t.dir.path(),
        &format!(
            "UPDATE read_orders SET status = 'failed', doc = json_set(doc, '$.status', 'failed') \
             WHERE order_id = '{order_id}';
             UPDATE read_state SET doc = json_set(doc, '$.totals.accrued_nanoton', \
             json_extract(doc, '$.totals.accrued_nanoton') + 1);"
        ),
        &format!(
            "UPDATE read_orders SET status = 'failed', \
             doc = jsonb_set(doc::jsonb, '{{status}}', '\"failed\"')::json WHERE order_id = '{order_id}';
             UPDATE read_state SET doc = jsonb_set(doc::jsonb, '{{totals,accrued_nanoton}}', \
             to_jsonb((doc->'totals'->>'accrued_nanoton')::bigint + 1))::json;"
        ),
    )
    .await;
    let (status, body) = t.admin_post("/admin/projections/rebuild", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["equal"], false, "{body}");
    assert_eq!(
        body["data"]["differing"],
        json!(["orders", "summary"]),
        "{body}"
    );
    assert_eq!(body["data"]["replaced"], false);
    assert!(
        body["data"]["differences"][0]
            .as_str()
            .unwrap()
            .contains(&order_id),
        "{body}"
    );
    let (_, body) = t
        .admin_post("/admin/projections/rebuild?replace=true", json!({}))
        .await;
    assert_eq!(body["data"]["replaced"], true, "{body}");
    let (_, body) = t.admin_post("/admin/projections/rebuild", json!({})).await;
    assert_eq!(body["data"]["equal"], true, "{body}");
    let (_, order) = t.get(&format!("/api/v1/orders/{order_id}")).await;
    assert_eq!(order["data"]["status"], "success", "{order}");
    // The next purchase folds on from the replaced models.
    t.buy_stars(50).await;
    let (_, body) = t.admin_post("/admin/projections/rebuild", json!({})).await;
    assert_eq!(body["data"]["equal"], true, "{body}");
    assert_eq!(body["data"]["counts"]["orders"], 2, "{body}");
    t.stop().await;
}
