//! Restarts as an operator sees them (API.md, "Restarts"): the simulators run as their own
//! process (`fragment-gateway sim`, the chain making blocks only when told), the gateway as
//! another (`fragment-gateway serve` against them), and the gateway is SIGKILLed while one
//! payment is on its way to the chain and another waits in the queue. The first payment is a
//! one-shot buy under an `Idempotency-Key`, retried after the kill.

mod spawned;

use std::time::{Duration, Instant};

use base64::Engine;
use fragment_gateway::store::contract;
use fragment_gateway::ton::{KeyPair, Network, Seed, WalletContract, WalletVersion};
use serde_json::{json, Value};

use spawned::Proc;

/// The `[store]` lines of a gateway's settings: the data directory, and on PostgreSQL
/// (`FG_TEST_BACKEND=postgres`) a fresh schema, dropped with the returned guard.
fn store_settings(data: &std::path::Path) -> (String, Option<contract::SchemaGuard>) {
    let mut lines = format!("data_dir = \"{}\"\n", data.display());
    if contract::test_backend() != "postgres" {
        return (lines, None);
    }
    let schema = contract::TestSchema::new();
    lines.push_str(&format!(
        "backend = \"postgres\"\nurl = \"{}\"\nschema = \"{}\"\n",
        contract::test_postgres_url(),
        schema.config.schema
    ));
    (lines, Some(contract::SchemaGuard(schema)))
}
const WORDS: &str = "art hockey victory skill bubble stool heart gas debris april column knife gadget envelope donkey base nature dynamic artefact leg edge aisle retreat fatigue";

struct Client(reqwest::Client);

impl Client {
    async fn get(&self, url: &str) -> Value {
        self.0.get(url).send().await.unwrap().json().await.unwrap()
    }
    async fn post(&self, url: &str, body: Value) -> Value {
        self.0
            .post(url)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn serve(config: &std::path::Path) -> (Proc, String) {
    serve_logging(config, None)
}

fn serve_logging(config: &std::path::Path, log: Option<&std::path::Path>) -> (Proc, String) {
    let p = Proc::spawn_logging(&["serve", "--config", config.to_str().unwrap()], log);
    let url = p.line("fragment-gateway serving on ");
    let url = url.split_whitespace().next().unwrap().to_string();
    (p, format!("{url}/api/v1"))
}

#[tokio::test]
async fn after_a_kill_a_broadcast_payment_completes_and_a_queued_one_ends_with_no_funds_moved() {
    let sim = Proc::spawn(&[
        "sim",
        "--ton-listen",
        "127.0.0.1:0",
        "--fragment-listen",
        "127.0.0.1:0",
        "--block-time-ms",
        "0",
    ]);
    let fragment = sim.line("fragment.com simulator:");
    let ton = sim.line("TON simulator (toncenter API v2/v3):");
    let http = Client(reqwest::Client::new());

    // The client's wallet, funded; the operator's login with its wallet connected.
    let key = Seed::from_words(WORDS).unwrap().derive_key(None).unwrap();
    let wallet = WalletContract::new(WalletVersion::V4R2, Network::Mainnet, key.public_key());
    let seed = base64::engine::general_purpose::STANDARD.encode(WORDS);
    http.post(
        &format!("{ton}/sim/faucet"),
        json!({"address": wallet.friendly_address(false), "amount": "5000000000"}),
    )
    .await;
    let owner = WalletContract::new(
        WalletVersion::V4R2,
        Network::Mainnet,
        KeyPair::from_secret_seed(&zeroize::Zeroizing::new([5u8; 32])).public_key(),
    );
    let login = http
        .post(
            &format!("{fragment}/sim/login"),
            json!({"account": "owner", "wallet": owner.friendly_address(false)}),
        )
        .await;
    let status = http.get(&format!("{fragment}/sim/status")).await;
    let pay_to = status["payment_address"].as_str().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let cookies_file = dir.path().join("owner-cookies");
    std::fs::write(&cookies_file, login["fragment_cookies"].as_str().unwrap()).unwrap();
    let config = dir.path().join("gateway.toml");
    let (store, _schema) = store_settings(&dir.path().join("data"));
    std::fs::write(
        &config,
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
shutdown_grace_seconds = 2
[store]
{store}
[ton]
api_url = "{ton}"
requests_per_second = "unlimited"
sign_ttl_seconds = 120
[fragment]
base_url = "{fragment}"
owner_cookies_file = "{cookies}"
payment_addresses = ["{pay_to}"]
timeout_seconds = 5
delivery_timeout_seconds = 20
[rate_limit]
requests_per_minute = 0
"#,
            cookies = cookies_file.display(),
        ),
    )
    .unwrap();

    let log = dir.path().join("gateway.log");
    let (gateway, api) = serve_logging(&config, Some(&log));
    let create = async |api: &str| {
        let o = http
            .post(
                &format!("{api}/stars/create"),
                json!({"username": "@alice", "amount": 50}),
            )
            .await;
        o["data"]["order_id"].as_str().unwrap().to_string()
    };
    // The first purchase is a one-shot buy under an Idempotency-Key: its retry after the
    // kill gets the first answer, and pays nothing more.
    let buy = async |api: &str| {
        let r = http
            .0
            .post(format!("{api}/stars/buy"))
            .header("Idempotency-Key", "first-buy")
            .json(&json!({"username": "@alice", "amount": 50, "seed": seed}))
            .send()
            .await
            .unwrap();
        let replayed = r.headers().get("idempotent-replayed").is_some();
        (r.status().as_u16(), replayed, r.text().await.unwrap())
    };
    let second = create(&api).await;
    let (status, replayed, bought) = buy(&api).await;
    assert_eq!((status, replayed), (200, false), "{bought}");
    let paid: Value = serde_json::from_str(&bought).unwrap();
    let first = paid["data"]["order_id"].as_str().unwrap().to_string();
    let first_request = paid["data"]["request_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{paid}"))
        .to_string();
    // The chain makes no block: the first payment stays broadcast, not applied.
    until("the first payment is broadcast", async || {
        let r = http.get(&format!("{api}/queue/{first_request}")).await;
        assert_ne!(r["data"]["status"], "failed", "{r}");
        http.get(&format!("{ton}/sim/status")).await["result"]["pending"] == 1
    })
    .await;
    // Same wallet: the second payment waits for the first (one transfer per wallet).
    let queued = http
        .post(&format!("{api}/orders/{second}/pay"), json!({"seed": seed}))
        .await;
    let second_request = queued["data"]["request_id"].as_str().unwrap().to_string();
    let r = http.get(&format!("{api}/queue/{second_request}")).await;
    assert_eq!(r["data"]["status"], "queued", "{r}");

    gateway.kill();
    let (_gateway, api) = serve_logging(&config, Some(&log));
    let (status, replayed, again) = buy(&api).await;
    assert_eq!((status, replayed), (200, true), "{again}");
    assert_eq!(again, bought, "the first answer, byte for byte");

    // The waiting request lost its seed with the process: it ends, no funds moved, and its
    // order can be paid again.
    let r = http.get(&format!("{api}/queue/{second_request}")).await;
    assert_eq!(r["data"]["status"], "failed", "{r}");
    assert_eq!(r["data"]["error_code"], "SERVICE_UNAVAILABLE");
    assert!(
        r["data"]["error"]
            .as_str()
            .unwrap()
            .contains("no funds moved"),
        "{r}"
    );
    let o = http.get(&format!("{api}/orders/{second}")).await;
    assert_eq!(o["data"]["status"], "created", "{o}");

    // The broadcast one is finished from the chain, without the seed, once blocks come.
    until("the first order succeeds", async || {
        http.post(&format!("{ton}/sim/block"), json!({})).await;
        http.get(&format!("{api}/orders/{first}")).await["data"]["status"] == "success"
    })
    .await;
    let r = http.get(&format!("{api}/queue/{first_request}")).await;
    assert_eq!(r["data"]["status"], "completed", "{r}");
    until("Fragment delivers", async || {
        http.post(&format!("{ton}/sim/block"), json!({})).await;
        http.get(&format!("{fragment}/sim/deliveries")).await["deliveries"]
            .as_array()
            .unwrap()
            .len()
            == 1
    })
    .await;

    // The reopened order is paid again and completes; Fragment got exactly two payments.
    let again = http
        .post(&format!("{api}/orders/{second}/pay"), json!({"seed": seed}))
        .await;
    assert_eq!(again["success"], true, "{again}");
    until("the second order succeeds", async || {
        http.post(&format!("{ton}/sim/block"), json!({})).await;
        http.get(&format!("{api}/orders/{second}")).await["data"]["status"] == "success"
    })
    .await;
    let balance = http
        .get(&format!("{ton}/api/v2/getAddressBalance?address={pay_to}"))
        .await;
    assert_eq!(
        balance["result"], "500000000",
        "two orders of 50 Stars at 0.25 TON"
    );

    // Neither the seed nor the operator's cookies reached the logs (at debug level) or the
    // data directory.
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(logs.contains("DEBUG"), "the gateway logged at debug level");
    let mut secrets: Vec<String> = login["cookies"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(name, _)| name.as_str() != "stel_dt")
        .map(|(_, v)| v.as_str().unwrap().to_string())
        .collect();
    secrets.push(seed[..40].to_string());
    let words: Vec<&str> = WORDS.split(' ').collect();
    secrets.extend(words.windows(3).map(|w| w.join(" ")));
    let mut places = vec![("the gateway's log".to_string(), logs)];
    for entry in std::fs::read_dir(dir.path().join("data")).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        places.push((
            path.display().to_string(),
            String::from_utf8_lossy(&bytes).into_owned(),
        ));
    }
    for (place, text) in &places {
        for secret in &secrets {
            assert!(!text.contains(secret.as_str()), "a secret is in {place}");
        }
    }
}

#[tokio::test]
async fn serve_names_what_is_missing_and_no_kyc_needs_owner_cookies() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.toml");
    let run = |text: &str| {
        std::fs::write(&config, text).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_fragment-gateway"))
            .args(["serve", "--config", config.to_str().unwrap()])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, err) = run("[ton]\napi_url = \"\"\n");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("missing setting ton.api_url"), "{err}");
    let (code, err) = run("[network]\nname = \"moonnet\"\n");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("network.name"), "{err}");
    let (code, err) = run("[commission]\nrate_no_kyc = \"2\"\n");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("commission.rate_no_kyc"), "{err}");
    let (code, err) = run("[fragment]\nowner_cookies_file = \"/nonexistent/cookies\"\n");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("fragment.owner_cookies_file"), "{err}");

    // Without owner cookies the service runs, KYC only; a no-KYC order says why not.
    let sim = Proc::spawn(&[
        "sim",
        "--ton-listen",
        "127.0.0.1:0",
        "--fragment-listen",
        "127.0.0.1:0",
    ]);
    let fragment = sim.line("fragment.com simulator:");
    let ton = sim.line("TON simulator (toncenter API v2/v3):");
    let (store, _schema) = store_settings(&dir.path().join("data"));
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[store]\n{store}[ton]\napi_url = \"{ton}\"\nrequests_per_second = \"unlimited\"\n[fragment]\nbase_url = \"{fragment}\"\n",
        ),
    )
    .unwrap();
    let (_gateway, api) = serve(&config);
    let r = reqwest::Client::new()
        .post(format!("{api}/stars/create"))
        .json(&json!({"username": "@alice", "amount": 50}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 500);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["error"]["error_code"], "OWNER_COOKIES_NOT_CONFIGURED",
        "{body}"
    );
    let health: Value = reqwest::get(format!("{}/health", api.trim_end_matches("/api/v1")))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["data"]["network"], "mainnet");
    assert_eq!(health["data"]["no_kyc_available"], false);
}
