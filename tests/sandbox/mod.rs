//! A sandbox gateway for the HTTP tests: both simulators in-process, every listener on a
//! random loopback port, fast blocks, and the caller's data directory.

use std::path::Path;
use std::time::Duration;

use fragment_gateway::app::{self, App};
use fragment_gateway::config::{Settings, SANDBOX_TOML};

pub struct Started {
    pub app: App,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// The funded demo wallet's seed, as the API takes it.
    pub seed: String,
}

/// Starts a gateway on `dir` (which may hold an earlier one's data); `overrides` are
/// `FG_SECTION__KEY` settings.
pub async fn start(dir: &Path, overrides: &[(&str, &str)]) -> Started {
    let data_dir = dir.display().to_string();
    // On PostgreSQL (`FG_TEST_BACKEND=postgres`) the directory names its schema, so that a
    // restart on the same directory finds the same log. The test database's `t_` schemas are
    // dropped by `.ci/run` before a run.
    let url = fragment_gateway::store::contract::test_postgres_url();
    let schema = fragment_gateway::store::contract::test_schema_for(dir);
    let postgres = [
        ("FG_STORE__BACKEND", "postgres"),
        ("FG_STORE__URL", url.as_str()),
        ("FG_STORE__SCHEMA", schema.as_str()),
        // Tests run side by side on one server (100 connections by default).
        ("FG_STORE__POOL_SIZE", "2"),
    ];
    let backend: &[(&str, &str)] =
        if fragment_gateway::store::contract::test_backend() == "postgres" {
            &postgres
        } else {
            &[]
        };
    let env = [
        ("FG_SERVER__LISTEN", "127.0.0.1:0"),
        ("FG_SANDBOX__TON_LISTEN", "127.0.0.1:0"),
        ("FG_SANDBOX__FRAGMENT_LISTEN", "127.0.0.1:0"),
        ("FG_SANDBOX__BLOCK_TIME_MS", "50"),
        ("FG_SERVER__SHUTDOWN_GRACE_SECONDS", "5"),
        ("FG_STORE__DATA_DIR", data_dir.as_str()),
    ]
    .iter()
    .chain(backend)
    .chain(overrides)
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect::<Vec<_>>();
    let settings = Settings::load(&[("config/sandbox.toml", SANDBOX_TOML)], env).unwrap();
    let app = app::start_sandbox(&settings).await.unwrap();
    let seed = app
        .sandbox
        .as_ref()
        .unwrap()
        .demo_seed_base64
        .as_str()
        .to_string();
    Started {
        base: format!("http://{}", app.addr),
        app,
        seed,
    }
}

/// A fresh login of `who` on the sandbox's fragment.com with the demo wallet connected, and
/// its cookies as the API takes `fragment_cookies`: base64 of a browser's cookie export.
#[allow(dead_code)] // not every test binary logs in
pub fn fragment_login(
    app: &App,
    who: &str,
) -> (fragment_gateway::fragment::FragmentCookies, String) {
    use base64::Engine;
    let sandbox = app.sandbox.as_ref().unwrap();
    let cookies = sandbox
        .fragment
        .login(who, Some(sandbox.demo_wallet.address()))
        .unwrap();
    let export: Vec<serde_json::Value> = cookies
        .names()
        .map(|n| serde_json::json!({"name": n, "value": cookies.get(n).unwrap(), "domain": ".fragment.com"}))
        .collect();
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(serde_json::to_string(&export).unwrap());
    (cookies, encoded)
}

/// Runs SQL on the database of the gateway whose data directory is `dir`, as an operator (or
/// a bug) could: `sqlite` on the embedded store's file, `postgres` in the gateway's schema.
#[allow(dead_code)] // not every test binary doctors a store
pub async fn run_sql(dir: &Path, sqlite: &str, postgres: &str) {
    if fragment_gateway::store::contract::test_backend() == "postgres" {
        use sqlx::Connection;
        let mut conn =
            sqlx::PgConnection::connect(&fragment_gateway::store::contract::test_postgres_url())
                .await
                .unwrap();
        let schema = fragment_gateway::store::contract::test_schema_for(dir);
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "SET search_path TO {schema}; {postgres}"
        )))
        .execute(&mut conn)
        .await
        .unwrap();
    } else {
        let db = rusqlite::Connection::open(dir.join("events.sqlite3")).unwrap();
        db.busy_timeout(Duration::from_secs(10)).unwrap();
        db.execute_batch(sqlite).unwrap();
    }
}

/// A sandbox gateway on a fresh data directory, with an HTTP client for it.
#[allow(dead_code)] // each test binary uses its part
pub struct TestApp {
    pub app: App,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    pub http: reqwest::Client,
    /// The demo wallet's seed, as the API takes it.
    pub seed: String,
    _dir: Option<tempfile::TempDir>,
}

/// `start` on a fresh temporary directory, removed when the `TestApp` is dropped.
#[allow(dead_code)]
pub async fn spawn(overrides: &[(&str, &str)]) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let started = start(dir.path(), overrides).await;
    TestApp {
        _dir: Some(dir),
        ..TestApp::adopt(started)
    }
}

#[allow(dead_code)]
impl TestApp {
    /// A client of a gateway `start`ed on the caller's directory.
    pub fn adopt(started: Started) -> TestApp {
        TestApp {
            app: started.app,
            base: started.base,
            http: reqwest::Client::new(),
            seed: started.seed,
            _dir: None,
        }
    }

    /// `method` (lowercase, as OpenAPI writes it) `path`, with a JSON body when given.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        self.send_with(method, path, &[], body).await
    }

    /// `send` with extra headers.
    pub async fn send_with(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let r = request.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }

    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        self.send("get", path, None).await
    }

    pub async fn post(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        self.send("post", path, Some(body)).await
    }

    pub fn sandbox(&self) -> &app::Sandbox {
        self.app.sandbox.as_ref().unwrap()
    }

    /// Polls the queue request until it has ended (60 s at most): the whole answer.
    pub async fn wait_request_answer(&self, request_id: &str) -> serde_json::Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let (status, body) = self.get(&format!("/api/v1/queue/{request_id}")).await;
            assert_eq!(status, 200, "{body}");
            let s = body["data"]["status"].as_str().unwrap().to_string();
            if ["completed", "failed", "timeout"].contains(&s.as_str()) {
                return body;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "request {request_id} never ended: {body}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// A no-KYC one-shot Stars purchase from the demo wallet, to its end: its request.
    pub async fn buy_stars(&self, amount: u32) -> serde_json::Value {
        let (status, body) = self
            .post(
                "/api/v1/stars/buy",
                serde_json::json!({"username": "@alice", "amount": amount, "seed": self.seed}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let request = self
            .wait_request(body["data"]["request_id"].as_str().unwrap())
            .await;
        assert_eq!(request["status"], "completed", "{request}");
        request
    }

    /// Polls the queue request until it has ended: the request (`data`).
    pub async fn wait_request(&self, request_id: &str) -> serde_json::Value {
        self.wait_request_answer(request_id).await["data"].clone()
    }
}

#[allow(dead_code)]
impl TestApp {
    /// The demo wallet's key, as its owner's wallet app holds it (the gateway never sees it
    /// in a checkout).
    pub fn demo_key(&self) -> fragment_gateway::ton::KeyPair {
        fragment_gateway::ton::Seed::from_base64(&self.seed)
            .unwrap()
            .derive_key(None)
            .unwrap()
    }

    /// Signs a checkout's TON Connect transaction (`transaction` of its answer) as the demo
    /// wallet's app would, at its state on the simulator; `amend` may change the messages
    /// first (a tampering client). The signed external message, base64.
    pub fn sign_checkout(
        &self,
        transaction: &serde_json::Value,
        amend: impl FnOnce(&mut Vec<fragment_gateway::ton::OutgoingMessage>),
    ) -> String {
        use fragment_gateway::ton::transfer::{sign_transfer, TransferParams};
        use fragment_gateway::ton::{MessageBody, Nanoton, OutgoingMessage};
        let wallet = &self.sandbox().demo_wallet;
        let mut messages: Vec<OutgoingMessage> = transaction["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                OutgoingMessage::new(
                    m["address"].as_str().unwrap(),
                    Nanoton::new(m["amount"].as_str().unwrap().parse().unwrap()),
                    MessageBody::from_boc_base64(m["payload"].as_str().unwrap()).unwrap(),
                )
                .unwrap()
            })
            .collect();
        amend(&mut messages);
        let seqno = self.sandbox().ton.seqno(wallet.address());
        let params = TransferParams {
            seqno: seqno.unwrap_or(0),
            valid_until: transaction["valid_until"].as_u64().unwrap() as u32,
            include_state_init: seqno.is_none(),
        };
        sign_transfer(wallet, &self.demo_key(), &params, &messages)
            .unwrap()
            .boc
    }
}

/// An error answer in the envelope: the status, its code, `details`, a message.
#[allow(dead_code)]
pub fn assert_error(status: u16, body: &serde_json::Value, http: u16, code: &str) {
    assert_eq!(status, http, "{body}");
    assert_eq!(body["success"], false, "{body}");
    assert_eq!(body["error"]["code"], http, "{body}");
    assert_eq!(body["error"]["error_code"], code, "{body}");
    assert!(body["error"]["details"].is_array(), "{body}");
    assert!(!body["error"]["message"].as_str().unwrap().is_empty());
}

/// A 429 RATE_LIMIT_EXCEEDED in the envelope, with `Retry-After` from 1 to `max_retry` s.
#[allow(dead_code)]
pub async fn assert_rate_limited(r: reqwest::Response, max_retry: u64) {
    assert_eq!(r.status().as_u16(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=max_retry).contains(&retry), "{retry}");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_error(429, &body, 429, "RATE_LIMIT_EXCEEDED");
}
