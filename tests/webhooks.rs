//! Webhooks against a receiver in the test process that fails, times out and answers slowly:
//! every event of an order arrives, in order, at least once, signed (checked by Python's
//! `hmac`, an implementation not ours); the admin API shows the attempts and redelivers; a
//! restart in the middle of a delivery loses nothing.

mod sandbox;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use sandbox::{assert_error, spawn, TestApp};
use serde_json::{json, Value};

const ADMIN_KEY: &str = "admin-key-for-webhook-tests";
const SECRET: &str = "sandbox-webhook-secret";

/// What the receiver does with the next request.
#[derive(Clone, Copy, Debug)]
enum Behaviour {
    Status(u16),
    /// Answers only after the gateway gave up waiting.
    Hang,
    Slow(Duration),
}

#[derive(Clone, Debug)]
struct Received {
    id: String,
    kind: String,
    body: String,
    signature: String,
    status: u16,
}

#[derive(Default)]
struct Receiver {
    script: Mutex<VecDeque<Behaviour>>,
    got: Mutex<Vec<Received>>,
}

impl Receiver {
    fn then(&self, b: Behaviour) {
        self.script.lock().unwrap().push_back(b);
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// The events it accepted (2xx), deduplicated on their id as a receiver should, in the
    /// order they first arrived.
    fn accepted(&self) -> Vec<Received> {
        let mut seen = std::collections::HashSet::new();
        self.got()
            .into_iter()
            .filter(|r| r.status == 200 && seen.insert(r.id.clone()))
            .collect()
    }
}

async fn hook(state: web::Data<Receiver>, req: HttpRequest, body: String) -> HttpResponse {
    let behaviour = state.script.lock().unwrap().pop_front();
    let (status, wait) = match behaviour {
        None => (200, None),
        Some(Behaviour::Status(s)) => (s, None),
        // Its answer never reaches the gateway (which hangs up): not accepted.
        Some(Behaviour::Hang) => (599, Some(Duration::from_secs(3))),
        Some(Behaviour::Slow(d)) => (200, Some(d)),
    };
    let value: Value = serde_json::from_str(&body).unwrap();
    // Recorded on arrival: actix drops this handler when the gateway hangs up.
    state.got.lock().unwrap().push(Received {
        id: value["id"].as_str().unwrap().to_string(),
        kind: value["type"].as_str().unwrap().to_string(),
        body,
        signature: req
            .headers()
            .get("webhook-signature")
            .unwrap()
            .to_str()
            .unwrap()
            .to_string(),
        status,
    });
    if let Some(wait) = wait {
        tokio::time::sleep(wait).await;
    }
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status.min(599)).unwrap()).finish()
}

/// A receiver on a loopback port: its URL, and what it saw.
fn receiver() -> (String, Arc<Receiver>, actix_web::dev::ServerHandle) {
    let state = web::Data::new(Receiver::default());
    let shared = state.clone().into_inner();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/hook", web::post().to(hook))
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    (format!("http://127.0.0.1:{port}/hook"), shared, handle)
}

const FAST: [(&str, &str); 4] = [
    ("FG_WEBHOOKS__TIMEOUT_SECONDS", "1"),
    ("FG_WEBHOOKS__FIRST_RETRY_SECONDS", "1"),
    ("FG_WEBHOOKS__MAX_RETRY_SECONDS", "1"),
    ("FG_ADMIN__KEY", ADMIN_KEY),
];

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Checks a delivery's signature with Python's hmac module.
fn python_verifies(body: &str, header: &str, secret: &str) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let body_file = dir.path().join("body");
    std::fs::write(&body_file, body).unwrap();
    let script = r#"
import hmac, hashlib, sys
secret, header, path = sys.argv[1], sys.argv[2], sys.argv[3]
body = open(path, "rb").read()
parts = [p.split("=", 1) for p in header.split(",")]
t = [v for k, v in parts if k == "t"][0]
signatures = [v for k, v in parts if k == "v1"]
expected = hmac.new(secret.encode(), t.encode() + b"." + body, hashlib.sha256).hexdigest()
sys.exit(0 if any(hmac.compare_digest(expected, s) for s in signatures) else 1)
"#;
    std::process::Command::new("python3")
        .args(["-c", script, secret, header, body_file.to_str().unwrap()])
        .status()
        .expect("python3 runs")
        .success()
}

impl TestApp {
    async fn deliveries(&self, order_id: &str) -> Value {
        let (status, body) = self
            .send_with(
                "get",
                &format!("/admin/webhooks?order_id={order_id}"),
                &[("X-Admin-Key", ADMIN_KEY)],
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["data"].clone()
    }
}

#[actix_web::test]
async fn every_event_of_an_order_arrives_in_order_signed_through_failures_timeouts_and_slowness() {
    let (url, receiver, server) = receiver();
    let t = spawn(&FAST).await;
    // The first delivery fails, its retry times out, the next is slow; then all is well.
    receiver.then(Behaviour::Status(500));
    receiver.then(Behaviour::Hang);
    receiver.then(Behaviour::Slow(Duration::from_millis(300)));
    let (status, body) = t
        .post(
            "/api/v1/stars/buy",
            json!({"username": "@alice", "amount": 50, "seed": t.seed, "webhook_url": url}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let order_id = body["data"]["order_id"].as_str().unwrap().to_string();
    eventually("three events accepted", || receiver.accepted().len() >= 3).await;
    let accepted = receiver.accepted();
    let kinds: Vec<&str> = accepted.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(kinds, ["order.created", "order.paid", "order.completed"]);
    // Nothing of an order overtakes what came before it: every attempt at `order.paid`
    // came after `order.created` was accepted.
    let got = receiver.got();
    let first_ok = got.iter().position(|r| r.status == 200).unwrap();
    assert!(got[..first_ok].iter().all(|r| r.kind == "order.created"));
    // The failed attempts sent the very same event.
    let created: Vec<&Received> = got.iter().filter(|r| r.kind == "order.created").collect();
    assert!(created.len() >= 3, "{created:?}");
    assert!(created
        .iter()
        .all(|r| r.id == created[0].id && r.body == created[0].body));
    // The body: the order as it was then, plus the event's id, type and time.
    let completed: Value = serde_json::from_str(&accepted[2].body).unwrap();
    assert_eq!(completed["data"]["order_id"], order_id);
    assert_eq!(completed["data"]["status"], "success");
    assert!(completed["created_at"].is_string());
    let paid: Value = serde_json::from_str(&accepted[1].body).unwrap();
    assert_eq!(paid["data"]["status"], "queued");
    // Signed: Python's hmac agrees; a wrong secret does not.
    for r in &accepted {
        assert!(python_verifies(&r.body, &r.signature, SECRET), "{r:?}");
        assert!(!python_verifies(&r.body, &r.signature, "another secret"));
    }

    // The admin API shows the attempts, and redelivers.
    let list = t.deliveries(&order_id).await;
    assert_eq!(list["total"], 3, "{list}");
    let created_row = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["type"] == "order.created")
        .unwrap()
        .clone();
    assert_eq!(created_row["status"], "delivered");
    let log = created_row["attempt_log"].as_array().unwrap();
    assert_eq!(log[0]["status_code"], 500);
    assert!(
        log[1]["error"].as_str().unwrap().contains("no answer"),
        "{log:?}"
    );
    assert_eq!(log.last().unwrap()["status_code"], 200);
    let event_id = created_row["event_id"].as_str().unwrap();
    let before = receiver.got().len();
    let (status, again) = t
        .send_with(
            "post",
            &format!("/admin/webhooks/{event_id}/redeliver"),
            &[("X-Admin-Key", ADMIN_KEY)],
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 200, "{again}");
    eventually("the redelivery", || receiver.got().len() > before).await;
    assert_eq!(receiver.got().last().unwrap().id, event_id);
    let (status, body) = t
        .send_with(
            "post",
            &format!("/admin/webhooks/{}/redeliver", uuid::Uuid::now_v7()),
            &[("X-Admin-Key", ADMIN_KEY)],
            Some(json!({})),
        )
        .await;
    assert_error(status, &body, 404, "NOT_FOUND");

    // Rebuilding the read models (and replacing them) derives nothing again.
    let settled = receiver.got().len();
    for path in [
        "/admin/projections/rebuild",
        "/admin/projections/rebuild?replace=true",
    ] {
        let (status, body) = t
            .send_with("post", path, &[("X-Admin-Key", ADMIN_KEY)], Some(json!({})))
            .await;
        assert_eq!(status, 200, "{body}");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(t.deliveries(&order_id).await["total"], 3);
    assert_eq!(receiver.got().len(), settled, "nothing sent again");
    t.app.stop().await;
    server.stop(true).await;
}

#[actix_web::test]
async fn a_restart_in_the_middle_of_a_delivery_loses_nothing() {
    let (url, receiver, server) = receiver();
    let dir = tempfile::tempdir().unwrap();
    let started = sandbox::start(dir.path(), &FAST).await;
    receiver.then(Behaviour::Hang);
    let http = reqwest::Client::new();
    let created: Value = http
        .post(format!("{}/api/v1/stars/create", started.base))
        .json(&json!({"username": "@alice", "amount": 50, "webhook_url": url}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let order_id = created["data"]["order_id"].as_str().unwrap().to_string();
    eventually("the delivery is under way", || !receiver.got().is_empty()).await;
    // The gateway stops while the receiver holds the request.
    started.app.stop().await;
    let started = sandbox::start(dir.path(), &FAST).await;
    eventually("order.created is accepted after the restart", || {
        receiver
            .accepted()
            .iter()
            .any(|r| r.kind == "order.created")
    })
    .await;
    let accepted = receiver.accepted();
    assert_eq!(accepted.len(), 1, "{accepted:?}");
    // The cut attempt, then the restarted gateway's.
    assert!(receiver.got().len() >= 2);
    let body: Value = serde_json::from_str(&accepted[0].body).unwrap();
    assert_eq!(body["data"]["order_id"], order_id);
    started.app.stop().await;
    server.stop(true).await;
}

#[actix_web::test]
async fn private_targets_are_refused_unless_allowed_and_a_gateway_without_secrets_sends_none() {
    let t = spawn(&[("FG_WEBHOOKS__ALLOW_PRIVATE_TARGETS", "false")]).await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "ftp://shop.example/",
    ] {
        let (status, body) = t
            .post(
                "/api/v1/stars/create",
                json!({"username": "@alice", "amount": 50, "webhook_url": url}),
            )
            .await;
        assert_error(status, &body, 400, "VALIDATION_ERROR");
        assert_eq!(body["error"]["details"][0]["field"], "webhook_url", "{url}");
    }
    t.app.stop().await;
    let t = spawn(&[("FG_WEBHOOKS__SECRETS", "")]).await;
    let (status, body) = t
        .post(
            "/api/v1/stars/create",
            json!({"username": "@alice", "amount": 50, "webhook_url": "https://shop.example/hook"}),
        )
        .await;
    assert_error(status, &body, 400, "VALIDATION_ERROR");
    assert!(
        body["error"]["details"][0]["message"]
            .as_str()
            .unwrap()
            .contains("no webhooks"),
        "{body}"
    );
    t.app.stop().await;
}
