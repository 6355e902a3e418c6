//! The read endpoints under load, against a bare actix-web handler answering the same bytes:
//! requests per second and latency percentiles from `wrk` (2 threads; 64 connections, and 16
//! for the latency of a lighter load), on each store backend.
//!
//! For each backend a `fragment-gateway sandbox` process (rate limit off) is started and one
//! purchase is made through it, so the order and its request exist. Then, one endpoint at a
//! time: the gateway is loaded with `wrk`, and a bare actix-web server in this process
//! (as many workers as the gateway has) answering the very same body, status and content type
//! is loaded the same way, alternately, three rounds of 5 s each; the median round of each
//! is reported, and the ratio is gateway/bare of those. A table goes to stderr and
//! `target/bench-http.json`.
//!
//! Run: `cargo bench --bench http` (needs `wrk` on the PATH; PostgreSQL is measured when the
//! server at `FG_TEST_POSTGRES_URL` answers). Under `cargo test` it only checks that each
//! endpoint answers, without `wrk`.

#[path = "../tests/spawned/mod.rs"]
mod spawned;

use std::process::Command;
use std::time::{Duration, Instant};

use fragment_gateway::store::contract::{test_postgres_url, TestSchema};
use serde_json::{json, Value};

/// Seconds of load per round, and rounds per measurement (gateway and bare alternate; the
/// median round of each is reported).
const SECONDS: u64 = 5;
const ROUNDS: usize = 3;

#[derive(Clone, Debug, serde::Serialize)]
struct Load {
    requests_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

#[derive(Debug, serde::Serialize)]
struct Row {
    backend: &'static str,
    endpoint: String,
    body_bytes: usize,
    connections: u32,
    gateway: Load,
    bare: Load,
    ratio: f64,
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut rows = vec![];
    let schema = TestSchema::new();
    let postgres_reachable = rt
        .block_on(schema.open())
        .map(|s| rt.block_on(s.close()))
        .is_ok();
    let url = test_postgres_url();
    let mut backends: Vec<(&'static str, Vec<(&str, &str)>)> = vec![("sqlite", vec![])];
    if postgres_reachable {
        backends.push((
            "postgres",
            vec![
                ("FG_STORE__BACKEND", "postgres"),
                ("FG_STORE__URL", url.as_str()),
                ("FG_STORE__SCHEMA", schema.config.schema.as_str()),
            ],
        ));
    } else {
        eprintln!("postgres: not measured (no server at FG_TEST_POSTGRES_URL)");
    }
    for (backend, env) in backends {
        let mut env = env.clone();
        env.push(("FG_RATE_LIMIT__REQUESTS_PER_MINUTE", "0"));
        env.push(("FG_SERVER__LOG_FORMAT", "json"));
        env.push(("RUST_LOG", "warn"));
        let sandbox = spawned::Sandbox::start_with(&env);
        let (order_id, request_id) = rt.block_on(purchase(&sandbox));
        let endpoints = [
            "/health".to_string(),
            format!("/api/v1/queue/{request_id}"),
            format!("/api/v1/orders/{order_id}"),
            "/api/v1/queue/status".to_string(),
        ];
        for endpoint in endpoints {
            let target = format!("{}{endpoint}", sandbox.url);
            let (status, content_type, body) = rt.block_on(fetch(&target));
            assert_eq!(status, 200, "{endpoint}: {body}");
            if !bench {
                continue;
            }
            let bare = BareServer::start(&endpoint, status, &content_type, &body);
            for connections in [64, 16] {
                // Alternated, so that what else the shared machine runs weighs on both alike.
                let (mut gateways, mut bares) = (vec![], vec![]);
                for _ in 0..ROUNDS {
                    gateways.push(wrk(&target, connections));
                    bares.push(wrk(&bare.url, connections));
                }
                let (gateway, bare) = (median(gateways), median(bares));
                let ratio = gateway.requests_per_second / bare.requests_per_second;
                eprintln!(
                    "{backend:<8} {:<28} {:>5} B c{connections:<3} gateway {:>7.0} req/s p50 {:>5.2} ms p99 {:>5.2} ms | bare {:>7.0} req/s p99 {:>5.2} ms | {:>5.1} %",
                    endpoint.replace(&order_id, "{id}").replace(&request_id, "{id}"),
                    body.len(),
                    gateway.requests_per_second,
                    gateway.p50_ms,
                    gateway.p99_ms,
                    bare.requests_per_second,
                    bare.p99_ms,
                    ratio * 100.0
                );
                rows.push(Row {
                    backend,
                    endpoint: endpoint
                        .replace(&order_id, "{id}")
                        .replace(&request_id, "{id}"),
                    body_bytes: body.len(),
                    connections,
                    gateway,
                    bare,
                    ratio,
                });
            }
            rt.block_on(bare.stop());
        }
        drop(sandbox);
    }
    if postgres_reachable {
        rt.block_on(schema.remove());
    }
    if bench {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-http.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&rows).expect("json")).expect("report");
        eprintln!("report: {}", path.display());
    }
}

/// One Stars purchase through the sandbox, waited for: (order id, request id).
async fn purchase(sandbox: &spawned::Sandbox) -> (String, String) {
    let http = reqwest::Client::new();
    let body: Value = http
        .post(format!("{}/api/v1/stars/buy", sandbox.url))
        .json(&json!({"username": "@alice", "amount": 50, "seed": sandbox.seed}))
        .send()
        .await
        .expect("buy")
        .json()
        .await
        .expect("buy answer");
    let request_id = body["data"]["request_id"]
        .as_str()
        .expect("request id")
        .to_string();
    let order_id = body["data"]["order_id"]
        .as_str()
        .expect("order id")
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, _, text) = fetch(&format!("{}/api/v1/queue/{request_id}", sandbox.url)).await;
        let body: Value = serde_json::from_str(&text).expect("json");
        if body["data"]["status"] == "completed" {
            return (order_id, request_id);
        }
        assert!(
            Instant::now() < deadline,
            "the purchase did not complete: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn fetch(url: &str) -> (u16, String, String) {
    let response = reqwest::get(url).await.expect("get");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (status, content_type, response.text().await.expect("body"))
}

/// A bare actix-web server answering `body` on `path`, as cheaply as actix-web can (the body
/// and content type are shared, not copied, per request), with as many workers as the
/// gateway.
struct BareServer {
    url: String,
    handle: actix_web::dev::ServerHandle,
    running: std::thread::JoinHandle<std::io::Result<()>>,
}

impl BareServer {
    fn start(path: &str, status: u16, content_type: &str, body: &str) -> BareServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let body = actix_web::web::Bytes::from(body.to_string());
        let content_type =
            actix_web::http::header::HeaderValue::from_str(content_type).expect("content type");
        let status = actix_web::http::StatusCode::from_u16(status).expect("status");
        let route = path.to_string();
        let server = actix_web::HttpServer::new(move || {
            let (body, content_type) = (body.clone(), content_type.clone());
            actix_web::App::new().route(
                &route,
                actix_web::web::get().to(move || {
                    let (body, content_type) = (body.clone(), content_type.clone());
                    async move {
                        actix_web::HttpResponse::build(status)
                            .insert_header((actix_web::http::header::CONTENT_TYPE, content_type))
                            .body(body)
                    }
                }),
            )
        })
        .workers(2)
        .listen(listener)
        .expect("listen")
        .disable_signals()
        .run();
        let handle = server.handle();
        let running = std::thread::spawn(move || actix_web::rt::System::new().block_on(server));
        BareServer {
            url: format!("http://{addr}{path}"),
            handle,
            running,
        }
    }

    async fn stop(self) {
        self.handle.stop(true).await;
        self.running.join().expect("server thread").expect("server");
    }
}

/// The middle round by requests per second (its latencies go with it).
fn median(mut rounds: Vec<Load>) -> Load {
    rounds.sort_by(|a, b| a.requests_per_second.total_cmp(&b.requests_per_second));
    rounds.swap_remove(rounds.len() / 2)
}

/// `wrk -t2 -c<connections> -d<SECONDS>s --latency <url>`, parsed.
fn wrk(url: &str, connections: u32) -> Load {
    let out = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{connections}"),
            &format!("-d{SECONDS}s"),
            "--latency",
            url,
        ])
        .output()
        .expect("wrk on the PATH (Debian: apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let number = |prefix: &str| -> Option<f64> {
        text.lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .and_then(|l| l.trim_start()[prefix.len()..].split_whitespace().next())
            .map(str::to_string)
            .and_then(|v| parse_ms(&v).or_else(|| v.parse().ok()))
    };
    let errors = text
        .lines()
        .find(|l| l.contains("Non-2xx"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    Load {
        requests_per_second: number("Requests/sec:").unwrap_or_else(|| panic!("wrk: {text}")),
        p50_ms: number("50%").unwrap_or(f64::NAN),
        p99_ms: number("99%").unwrap_or(f64::NAN),
        errors,
    }
}

/// wrk's durations: `812.00us`, `1.23ms`, `2.01s`.
fn parse_ms(v: &str) -> Option<f64> {
    for (unit, scale) in [("us", 0.001), ("ms", 1.0), ("s", 1000.0)] {
        if let Some(n) = v.strip_suffix(unit) {
            return n.parse::<f64>().ok().map(|n| n * scale);
        }
    }
    None
}
