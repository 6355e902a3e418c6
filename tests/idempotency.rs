//! `Idempotency-Key` over HTTP: every POST that creates, pays or buys (and admin settle)
//! answers a retry with its first answer, byte for byte, marked `Idempotent-Replayed`; a key
//! reused for another request is refused; a retry of a request still running waits for it
//! or is told to come back; and none of it is lost in a restart.

mod common;
mod sandbox;

use std::time::Duration;

use fragment_gateway::sim::faults::FaultConfig;
use sandbox::{assert_error, spawn, TestApp};
use serde_json::{json, Value};

const ADMIN_KEY: &str = "admin-key-for-idempotency-tests";

/// An answer as the client got it.
#[derive(Debug)]
struct Raw {
    status: u16,
    replayed: bool,
    retry_after: Option<String>,
    body: String,
}

impl Raw {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    key: Option<&str>,
    headers: &[(&str, &str)],
    body: &Value,
) -> Raw {
    let mut request = http.post(url).json(body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let r = request.send().await.unwrap();
    let header = |name: &str| {
        r.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    let replayed = match header("idempotent-replayed").as_deref() {
        None => false,
        Some("true") => true,
        Some(other) => panic!("Idempotent-Replayed: {other}"),
    };
    Raw {
        status: r.status().as_u16(),
        replayed,
        retry_after: header("retry-after"),
        body: r.text().await.unwrap(),
    }
}

impl TestApp {
    async fn keyed(&self, path: &str, key: &str, body: &Value) -> Raw {
        post(
            &self.http,
            &format!("{}{path}", self.base),
            Some(key),
            &[],
            body,
        )
        .await
    }

    async fn keyed_admin(&self, path: &str, key: &str, body: &Value) -> Raw {
        let url = format!("{}{path}", self.base);
        post(
            &self.http,
            &url,
            Some(key),
            &[("X-Admin-Key", ADMIN_KEY)],
            body,
        )
        .await
    }

    /// How many orders the gateway has.
    async fn order_count(&self) -> u64 {
        let (status, body) = self
            .send_with(
                "get",
                "/admin/orders?limit=1",
                &[("X-Admin-Key", ADMIN_KEY)],
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["data"]["total"].as_u64().unwrap()
    }
}

/// Sends `body` to `path` twice under `key`: the second answer is the first, replayed.
async fn twice(t: &TestApp, path: &str, key: &str, body: &Value) -> Value {
    let first = t.keyed(path, key, body).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert!(!first.replayed, "a first answer is not a replay");
    let again = t.keyed(path, key, body).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert!(again.replayed, "{path}: the retry is marked");
    assert_eq!(again.body, first.body, "{path}: byte for byte");
    first.json()
}

#[actix_web::test]
async fn a_retried_buy_is_answered_once_byte_for_byte_and_pays_once() {
    let t = spawn(&[("FG_ADMIN__KEY", ADMIN_KEY)]).await;
    let path = "/api/v1/stars/buy";
    let body = json!({"username": "@alice", "amount": 100, "seed": t.seed});
    let first = twice(&t, path, "buy-1", &body).await;
    let request_id = first["data"]["request_id"].as_str().unwrap().to_string();

    // The key as a body field, for clients that cannot set headers: the same key.
    let mut in_body = body.clone();
    in_body["idempotency_key"] = json!("buy-1");
    let url = format!("{}{path}", t.base);
    let field = post(&t.http, &url, None, &[], &in_body).await;
    assert!(field.replayed);
    assert_eq!(field.json(), first);

    // The same key with another request is refused, naming the key.
    let mut other = body.clone();
    other["amount"] = json!(150);
    let reused = t.keyed(path, "buy-1", &other).await;
    assert_error(reused.status, &reused.json(), 409, "IDEMPOTENCY_KEY_REUSED");
    let message = reused.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.contains("buy-1"), "{message}");
    assert!(!reused.replayed);

    // Header and field disagreeing, or a key that is not one: said before anything runs.
    let mut both = body.clone();
    both["idempotency_key"] = json!("buy-2");
    let conflict = t.keyed(path, "buy-1", &both).await;
    assert_error(conflict.status, &conflict.json(), 400, "VALIDATION_ERROR");
    assert_eq!(
        conflict.json()["error"]["details"][0]["field"],
        "idempotency_key"
    );
    let bad = t.keyed(path, &"k".repeat(256), &body).await;
    assert_error(bad.status, &bad.json(), 400, "VALIDATION_ERROR");
    assert_eq!(
        bad.json()["error"]["details"][0]["field"],
        "Idempotency-Key"
    );

    let request = t.wait_request(&request_id).await;
    assert_eq!(request["status"], "completed", "{request}");
    assert_eq!(t.order_count().await, 1, "one order");
    assert_eq!(t.sandbox().ton.broadcasts().len(), 1, "one payment");

    // After the purchase, the retry still gets the first answer (queued, position …).
    let late = t.keyed(path, "buy-1", &body).await;
    assert!(late.replayed);
    assert_eq!(late.json(), first);
    // A new key is a new purchase.
    let second = t.keyed(path, "buy-2", &body).await;
    assert_eq!(second.status, 200);
    assert!(!second.replayed);
    assert_ne!(second.json()["data"]["order_id"], first["data"]["order_id"]);
    t.wait_request(second.json()["data"]["request_id"].as_str().unwrap())
        .await;
    assert_eq!(t.order_count().await, 2);
    assert_eq!(t.sandbox().ton.broadcasts().len(), 2);
    t.app.stop().await;
}

#[actix_web::test]
async fn every_post_that_creates_pays_or_buys_replays_its_first_answer() {
    let t = spawn(&[("FG_ADMIN__KEY", ADMIN_KEY)]).await;
    let stars = twice(
        &t,
        "/api/v1/stars/create",
        "create-stars",
        &json!({"username": "@alice", "amount": 50}),
    )
    .await;
    let premium = twice(
        &t,
        "/api/v1/orders/premium",
        "create-premium",
        &json!({"username": "@bob", "months": 3}),
    )
    .await;
    assert_eq!(t.order_count().await, 2);
    let stars_id = stars["data"]["order_id"].as_str().unwrap();
    let premium_id = premium["data"]["order_id"].as_str().unwrap();
    let paid = twice(
        &t,
        &format!("/api/v1/orders/{stars_id}/pay"),
        "pay-stars",
        &json!({"seed": t.seed}),
    )
    .await;
    let premium_paid = twice(
        &t,
        "/api/v1/stars/pay",
        "pay-premium",
        &json!({"order_id": premium_id, "seed": t.seed}),
    )
    .await;
    let gift = twice(
        &t,
        "/api/v1/premium/buy",
        "gift",
        &json!({"username": "@alice", "duration": 6, "seed": t.seed}),
    )
    .await;
    for answer in [&paid, &premium_paid, &gift] {
        let request = t
            .wait_request(answer["data"]["request_id"].as_str().unwrap())
            .await;
        assert_eq!(request["status"], "completed", "{request}");
    }
    assert_eq!(t.order_count().await, 3);
    assert_eq!(t.sandbox().ton.broadcasts().len(), 3);

    // The same key of the same wallet on another route is another request: refused. (Keys
    // are the paying wallet's, or the client's address's before there is a wallet.)
    let reused = t
        .keyed(
            "/api/v1/stars/buy",
            "gift",
            &json!({"username": "@alice", "amount": 50, "seed": t.seed}),
        )
        .await;
    assert_error(reused.status, &reused.json(), 409, "IDEMPOTENCY_KEY_REUSED");

    // Admin settle, on the commission debt the no-KYC purchases left.
    let demo = t.sandbox().demo_wallet.friendly_address(false);
    let settle = format!("/admin/wallets/{demo}/settle");
    let body = json!({"amount_ton": "0.000000001", "reference": "bank transfer 17"});
    let first = t.keyed_admin(&settle, "settle-17", &body).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let again = t.keyed_admin(&settle, "settle-17", &body).await;
    assert!(again.replayed);
    assert_eq!(again.body, first.body);
    assert_eq!(first.json()["data"]["already_recorded"], false);
    let other = t
        .keyed_admin(
            &settle,
            "settle-17",
            &json!({"amount_ton": "0.000000002", "reference": "bank transfer 17"}),
        )
        .await;
    assert_error(other.status, &other.json(), 409, "IDEMPOTENCY_KEY_REUSED");
    t.app.stop().await;
}

#[actix_web::test]
async fn a_client_error_is_replayed_and_a_passing_failure_runs_again() {
    let t = spawn(&[("FG_ADMIN__KEY", ADMIN_KEY)]).await;
    // A final answer (the recipient does not exist) is what every retry gets.
    let body = json!({"username": "@ghost_user", "amount": 50});
    let first = t.keyed("/api/v1/stars/create", "unknown", &body).await;
    assert_error(first.status, &first.json(), 404, "USER_NOT_FOUND");
    let again = t.keyed("/api/v1/stars/create", "unknown", &body).await;
    assert!(again.replayed);
    assert_eq!(again.body, first.body);

    // Fragment down: a 502 releases the key, and the retry, with Fragment back, creates the
    // order (one order: the failed run made none).
    let body = json!({"username": "@alice", "amount": 50});
    t.sandbox().fragment.faults().set_config(FaultConfig {
        error_rate: 1.0,
        ..FaultConfig::default()
    });
    let failed = t.keyed("/api/v1/stars/create", "flaky", &body).await;
    assert!(failed.status >= 500, "{}", failed.body);
    assert!(!failed.replayed);
    t.sandbox()
        .fragment
        .faults()
        .set_config(FaultConfig::default());
    let retried = t.keyed("/api/v1/stars/create", "flaky", &body).await;
    assert_eq!(retried.status, 200, "{}", retried.body);
    assert!(!retried.replayed, "the failure was not kept");
    let replay = t.keyed("/api/v1/stars/create", "flaky", &body).await;
    assert!(replay.replayed);
    assert_eq!(replay.body, retried.body);
    assert_eq!(t.order_count().await, 1);
    t.app.stop().await;
}

#[actix_web::test]
async fn a_retry_of_a_request_still_running_waits_for_its_answer_or_is_told_when_to_come_back() {
    let t = spawn(&[("FG_IDEMPOTENCY__WAIT_SECONDS", "0")]).await;
    // Fragment answers slowly: the first create runs for seconds.
    t.sandbox().fragment.faults().set_config(FaultConfig {
        latency: Duration::from_millis(700),
        ..FaultConfig::default()
    });
    let body = json!({"username": "@alice", "amount": 50});
    let url = format!("{}/api/v1/stars/create", t.base);
    let first = {
        let (http, url, body) = (t.http.clone(), url.clone(), body.clone());
        actix_web::rt::spawn(async move { post(&http, &url, Some("slow"), &[], &body).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let busy = post(&t.http, &url, Some("slow"), &[], &body).await;
    assert_error(
        busy.status,
        &busy.json(),
        409,
        "IDEMPOTENCY_KEY_IN_PROGRESS",
    );
    let retry_after: u64 = busy.retry_after.as_deref().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let first = first.await.unwrap();
    assert_eq!(first.status, 200, "{}", first.body);
    t.app.stop().await;

    // With a wait, the retry gets the first answer as soon as there is one.
    let t = spawn(&[]).await;
    t.sandbox().fragment.faults().set_config(FaultConfig {
        latency: Duration::from_millis(500),
        ..FaultConfig::default()
    });
    let url = format!("{}/api/v1/stars/create", t.base);
    let first = {
        let (http, url, body) = (t.http.clone(), url.clone(), body.clone());
        actix_web::rt::spawn(async move { post(&http, &url, Some("slow"), &[], &body).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let waited = post(&t.http, &url, Some("slow"), &[], &body).await;
    let first = first.await.unwrap();
    assert_eq!(first.status, 200, "{}", first.body);
    assert!(waited.replayed);
    assert_eq!(waited.body, first.body);
    t.app.stop().await;
}

#[actix_web::test]
async fn a_client_that_hangs_up_still_gets_the_answer_on_its_retry() {
    let t = spawn(&[("FG_ADMIN__KEY", ADMIN_KEY)]).await;
    t.sandbox().fragment.faults().set_config(FaultConfig {
        latency: Duration::from_millis(400),
        ..FaultConfig::default()
    });
    let body = json!({"username": "@alice", "amount": 100, "seed": t.seed});
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let url = format!("{}/api/v1/stars/buy", t.base);
    let gave_up = impatient
        .post(&url)
        .header("Idempotency-Key", "hung-up")
        .json(&body)
        .send()
        .await;
    assert!(gave_up.is_err(), "the client timed out");
    // The retry waits for the request the client left, and gets its answer.
    let retry = t.keyed("/api/v1/stars/buy", "hung-up", &body).await;
    assert_eq!(retry.status, 200, "{}", retry.body);
    assert!(retry.replayed);
    let request = t
        .wait_request(retry.json()["data"]["request_id"].as_str().unwrap())
        .await;
    assert_eq!(request["status"], "completed");
    assert_eq!(t.order_count().await, 1);
    assert_eq!(t.sandbox().ton.broadcasts().len(), 1);
    t.app.stop().await;
}

#[actix_web::test]
async fn a_retry_of_each_post_after_a_restart_gets_the_first_answer() {
    let dir = tempfile::tempdir().unwrap();
    let admin = [("FG_ADMIN__KEY", ADMIN_KEY)];
    let started = sandbox::start(dir.path(), &admin).await;
    let http = reqwest::Client::new();
    let seed = started.seed.clone();
    let send = async |base: &str, (path, key, body): &(String, &str, Value)| {
        let headers: &[(&str, &str)] = if path.starts_with("/admin/") {
            &[("X-Admin-Key", ADMIN_KEY)]
        } else {
            &[]
        };
        post(&http, &format!("{base}{path}"), Some(key), headers, body).await
    };
    let base = started.base.clone();
    let mut sent = vec![];
    let mut answers = vec![];
    let mut step = async |path: String, key: &'static str, body: Value| {
        let request = (path, key, body);
        let answer = send(&base, &request).await;
        assert_eq!(answer.status, 200, "{}: {}", request.0, answer.body);
        sent.push(request);
        answers.push(answer.body.clone());
        answer.json()
    };
    let stars = step(
        "/api/v1/stars/create".into(),
        "r-create-stars",
        json!({"username": "@alice", "amount": 50}),
    )
    .await;
    let premium = step(
        "/api/v1/premium/create".into(),
        "r-create-premium",
        json!({"username": "@bob", "months": 3}),
    )
    .await;
    let stars_id = stars["data"]["order_id"].as_str().unwrap().to_string();
    let premium_id = premium["data"]["order_id"].as_str().unwrap().to_string();
    let paid = step(
        format!("/api/v1/orders/{stars_id}/pay"),
        "r-pay-path",
        json!({"seed": seed}),
    )
    .await;
    step(
        "/api/v1/stars/pay".into(),
        "r-pay-body",
        json!({"order_id": premium_id, "seed": seed}),
    )
    .await;
    step(
        "/api/v1/stars/buy".into(),
        "r-buy-stars",
        json!({"username": "@alice", "amount": 100, "seed": seed}),
    )
    .await;
    step(
        "/api/v1/premium/buy".into(),
        "r-buy-premium",
        json!({"username": "@alice", "duration": 3, "seed": seed}),
    )
    .await;
    // Settling needs the debt a no-KYC purchase leaves once it succeeded.
    let request = paid["data"]["request_id"].as_str().unwrap();
    let status_url = format!("{base}/api/v1/queue/{request}");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while http
        .get(&status_url)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["data"]["status"]
        != "completed"
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the payment never completed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let demo = started
        .app
        .sandbox
        .as_ref()
        .unwrap()
        .demo_wallet
        .friendly_address(false);
    step(
        format!("/admin/wallets/{demo}/settle"),
        "r-settle",
        json!({"amount_ton": "0.000000001", "reference": "restart"}),
    )
    .await;
    started.app.stop().await;

    let started = sandbox::start(dir.path(), &admin).await;
    for (request, first) in sent.iter().zip(&answers) {
        // The demo seed is the same in every sandbox: the same request.
        let again = send(&started.base, request).await;
        assert!(again.replayed, "{}: {}", request.0, again.body);
        assert_eq!(&again.body, first, "{}", request.0);
    }
    let url = format!("{}/api/v1/stars/buy", started.base);
    let other = json!({"username": "@alice", "amount": 200, "seed": started.seed});
    let reused = post(&http, &url, Some("r-buy-stars"), &[], &other).await;
    assert_error(reused.status, &reused.json(), 409, "IDEMPOTENCY_KEY_REUSED");
    started.app.stop().await;
    // Nothing in the data directory holds the seed, in words or in base64.
    assert_eq!(started.seed.as_str(), base64_words(common::TON_WORDS));
    common::assert_no_seed_in(dir.path());
}

fn base64_words(words: &str) -> String {
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, words)
}

#[actix_web::test]
async fn a_keyed_kyc_buy_leaves_no_cookie_and_no_seed_in_the_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let started = sandbox::start(dir.path(), &[]).await;
    let (cookies, cookies_b64) = sandbox::fragment_login(&started.app, "client");
    let http = reqwest::Client::new();
    let url = format!("{}/api/v1/premium/buy", started.base);
    let body = json!({"username": "@bob", "duration": 3, "seed": started.seed,
        "fragment_cookies": cookies_b64});
    for _ in 0..2 {
        let answer = post(&http, &url, Some("kyc-key"), &[], &body).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
    started.app.stop().await;
    common::assert_no_seed_in(dir.path());
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
        for name in fragment_gateway::fragment::cookies::REQUIRED_FOR_KYC {
            let value = cookies.get(name).unwrap();
            assert!(!text.contains(value), "{name} is in {}", path.display());
        }
        assert!(!text.contains(&cookies_b64[..40]), "{}", path.display());
    }
}
