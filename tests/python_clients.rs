//! Public Python clients from PyPI, run against our code: a Fragment client against our
//! fragment.com simulator (proof that it speaks the protocol real clients speak, not just our
//! own reading of it), and the original service's own SDK against the gateway (proof that
//! API.md's compatibility promise holds for the real thing).
//!
//! The first run creates a virtualenv per requirements file under target/ (PyPI must be
//! reachable then; `FG_PYTHON` overrides the `python3` used to create it).

mod pyenv;
mod sandbox;
mod spawned;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fragment_gateway::sim::fragment::state::{InvoiceStatus, Prices};
use fragment_gateway::sim::fragment::{default_payment_wallet, FragmentSim, FragmentSimConfig};
use fragment_gateway::sim::ton::{TonSim, TonSimConfig};
use fragment_gateway::ton::address::parse_address;
use fragment_gateway::ton::{Nanoton, Network, Seed, WalletContract, WalletVersion};
use serde_json::{json, Value};

const TON_WORDS: &str = "art hockey victory skill bubble stool heart gas debris april column knife gadget envelope donkey base nature dynamic artefact leg edge aisle retreat fatigue";

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragment_api_py_buys_from_the_fragment_simulator() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = tokio::task::spawn_blocking(move || {
        pyenv::virtualenv(
            "fragmentapi",
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/requirements.txt"),
        )
    })
    .await
    .unwrap();

    let ton = TonSim::start(TonSimConfig::default(), loopback())
        .await
        .unwrap();
    ton.install_wallet(&default_payment_wallet(Network::Mainnet), Nanoton::ZERO);
    let fragment = FragmentSim::start(
        FragmentSimConfig {
            ton_api_url: ton.url().to_string(),
            ..Default::default()
        },
        loopback(),
    )
    .await
    .unwrap();
    // A verified login without a wallet: the client connects its own with ton_proof, signed
    // by its own code, which our simulator must accept.
    let cookies = fragment.login("client", None).unwrap();
    let cookie_json: serde_json::Map<String, Value> = cookies
        .names()
        .map(|n| {
            (
                n.to_string(),
                Value::String(cookies.get(n).unwrap().to_string()),
            )
        })
        .collect();

    let out = tokio::process::Command::new(&python)
        .arg(root.join("tests/python/fragmentapi_driver.py"))
        .arg(fragment.url())
        .arg("--cookies")
        .arg(Value::Object(cookie_json).to_string())
        .arg("--mnemonic")
        .arg(TON_WORDS)
        .args([
            "--ton-proof",
            "--prices",
            "--error-cases",
            "--timeout",
            "20",
        ])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(180), out)
        .await
        .expect("the driver finishes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let summary: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("driver output is not JSON ({e}):\n{stdout}\n{stderr}"));
    assert!(out.status.success(), "driver failed:\n{stdout}\n{stderr}");

    // Its ton_proof, for the v5r1 wallet of the mnemonic, was accepted.
    let key = Seed::from_words(TON_WORDS)
        .unwrap()
        .derive_key(None)
        .unwrap();
    let wallet = WalletContract::new(WalletVersion::V5R1, Network::Mainnet, key.public_key());
    assert_eq!(summary["ton_proof"]["verified"], true, "{summary:#}");
    assert_eq!(summary["ton_proof"]["got_stel_ton_token"], true);
    assert_eq!(
        parse_address(summary["ton_proof"]["account_address"].as_str().unwrap()).unwrap(),
        *wallet.address()
    );

    let prices = Prices::default();
    for (flow, nanoton, comment) in [
        ("stars", prices.stars(50), "50 Telegram Stars \n\nRef#"),
        (
            "premium",
            prices.premium_3,
            "Telegram Premium for 3 months \n\nRef#",
        ),
    ] {
        let f = &summary[flow];
        assert_eq!(f["ok"], true, "{flow}: {f:#}");
        assert_eq!(f["payment_nanoton"].as_u64(), Some(nanoton), "{flow}");
        let messages = f["link_messages"].as_array().unwrap();
        assert_eq!(messages.len(), 1);
        assert_eq!(
            parse_address(messages[0]["address"].as_str().unwrap()).unwrap(),
            fragment.payment_address()
        );
        assert!(
            messages[0]["comment"]
                .as_str()
                .unwrap()
                .starts_with(comment),
            "{flow}: {:?}",
            messages[0]["comment"]
        );
        // The request exists at the simulator, with its link issued to this wallet.
        let req_id = f["req_id"].as_str().unwrap();
        assert_eq!(fragment.invoice_status(req_id), Some(InvoiceStatus::Linked));
        let methods: Vec<&str> = f["api_methods"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_str().unwrap())
            .collect();
        assert!(
            methods.iter().any(|m| m.starts_with("search")),
            "{methods:?}"
        );
        assert!(methods.iter().any(|m| m.starts_with("init")), "{methods:?}");
        assert!(methods.iter().any(|m| m.starts_with("get")), "{methods:?}");
    }

    // Its price parsers read our pages.
    let p = &summary["prices"];
    let packages = p["stars_packages"].to_string();
    assert!(
        packages.contains("\"stars\":50") || packages.contains("\"stars\": 50"),
        "{p:#}"
    );
    assert!(p["premium_options"].to_string().contains("3.996"), "{p:#}");
    assert!(p["stars_quote"].to_string().contains("0.25"), "{p:#}");

    // Its error classes for our refusals are the ones the real site's refusals give.
    for case in summary["error_cases"].as_array().unwrap() {
        assert_eq!(case["pass"], true, "{case:#}");
    }
}

fn tail(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// The mnemonic of a seed from the independent vectors (tests/vectors/ton_vectors.json).
fn vector_words(name: &str) -> String {
    let vectors: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/ton_vectors.json"),
        )
        .unwrap(),
    )
    .unwrap();
    vectors["seeds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no vector {name}"))["mnemonic"]
        .as_str()
        .unwrap()
        .to_string()
}

/// examples/tonconnect_wallet.py: a TON Connect wallet on tonutils.
struct PythonWallet {
    python: PathBuf,
    version: &'static str,
    words: String,
}

impl PythonWallet {
    async fn run(&self, args: &[&str]) -> Value {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/tonconnect_wallet.py");
        let out = tokio::process::Command::new(&self.python)
            .arg(script)
            .args(args)
            .args(["--version", self.version, "--mnemonic", &self.words])
            .kill_on_drop(true)
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "tonconnect_wallet.py {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// TON Connect's `account`.
    async fn account(&self) -> Value {
        self.run(&["account"]).await
    }

    /// The signed external message for `request`, at the wallet's state on the simulator,
    /// tampered with as `tamper` says.
    async fn sign(&self, request: &Value, seqno: Option<u32>, tamper: Option<&str>) -> String {
        let request = request.to_string();
        let seqno_text = seqno.unwrap_or(0).to_string();
        let deployed = if seqno.is_some() { "1" } else { "0" };
        let mut args = vec![
            "sign",
            "--request",
            &request,
            "--seqno",
            &seqno_text,
            "--deployed",
            deployed,
        ];
        if let Some(t) = tamper {
            args.extend(["--tamper", t]);
        }
        self.run(&args).await["boc"].as_str().unwrap().to_string()
    }
}

/// A checkout signed by an independent wallet (tonutils, for v4r2 and v5r1) completes a
/// purchase against the simulators without the gateway ever seeing a seed; tampered
/// signatures of it are refused, naming the check, and move nothing; a message the wallet
/// broadcast itself is followed; a stale seqno is refused.
#[actix_web::test]
async fn a_checkout_signed_by_an_independent_wallet_pays_and_tampered_ones_are_refused() {
    let python = tokio::task::spawn_blocking(move || {
        pyenv::virtualenv(
            "fragmentapi",
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/requirements.txt"),
        )
    })
    .await
    .unwrap();
    // Commission debt is collected from the first purchase on, so the transaction carries
    // its second message.
    let app = sandbox::spawn(&[("FG_COMMISSION__COLLECTION_THRESHOLD_TON", "0.000000001")]).await;
    let ton = &app.sandbox().ton;
    let fee_wallet = app.sandbox().fee_wallet.address().clone();
    for (version, seed) in [
        ("v4r2", "ton_food_brand"),
        ("v5r1", "bip39_24_virus_debate"),
    ] {
        let wallet = PythonWallet {
            python: python.clone(),
            version,
            words: vector_words(seed),
        };
        let account = wallet.account().await;
        let address = parse_address(account["address"].as_str().unwrap()).unwrap();
        ton.fund(&address, Nanoton::from_ton(20));
        // `fund` lands with the next block.
        wait_for(|| ton.balance(&address) == Nanoton::from_ton(20)).await;

        let create = |stars: u32| {
            json!({
                "product": "stars",
                "username": "@alice",
                "amount": stars,
                "wallet_address": account["address"],
                "public_key": account["publicKey"],
                "wallet_state_init": account["walletStateInit"],
                "network": account["chain"],
            })
        };
        let (status, body) = app.post("/api/v1/checkouts", create(100)).await;
        assert_eq!(status, 200, "{body}");
        let checkout = &body["data"];
        let id = checkout["checkout_id"].as_str().unwrap().to_string();
        let tx = &checkout["transaction"];
        assert_eq!(tx["from"], account["address"]);
        assert_eq!(tx["network"], "-239");
        let messages = tx["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 2, "purchase and commission: {tx}");
        let price = Nanoton::parse_ton(checkout["order"]["price_ton"].as_str().unwrap()).unwrap();
        assert_eq!(messages[0]["amount"], price.as_u64().to_string());
        assert_eq!(
            parse_address(messages[1]["address"].as_str().unwrap()).unwrap(),
            fee_wallet
        );
        assert_eq!(checkout["order"]["status"], "created");

        // Tampered signatures: refused before anything is sent, the check named.
        for (tamper, named) in [
            ("amount", "tampered amount"),
            ("destination", "tampered destination"),
            ("payload", "tampered payload"),
            ("extra", "extra message"),
            ("key", "wrong signer"),
        ] {
            let boc = wallet.sign(tx, None, Some(tamper)).await;
            let (status, body) = app
                .post(
                    &format!("/api/v1/checkouts/{id}/submit"),
                    json!({"boc": boc}),
                )
                .await;
            sandbox::assert_error(status, &body, 400, "CHECKOUT_REJECTED");
            let message = body["error"]["message"].as_str().unwrap();
            assert!(message.contains(named), "{tamper}: {message}");
        }
        assert!(ton.seqno(&address).is_none(), "nothing reached the wallet");
        assert_eq!(ton.balance(&address), Nanoton::from_ton(20));

        // The honest signature pays.
        let boc = wallet.sign(tx, None, None).await;
        let submit = json!({"boc": boc});
        let (status, body) = app
            .post(&format!("/api/v1/checkouts/{id}/submit"), submit.clone())
            .await;
        assert_eq!(status, 200, "{body}");
        let request_id = body["data"]["request_id"].as_str().unwrap().to_string();
        let request = app.wait_request(&request_id).await;
        assert_eq!(request["status"], "completed", "{request}");
        assert_eq!(
            request["result"]["cost_ton"],
            checkout["order"]["price_ton"]
        );
        assert_eq!(ton.seqno(&address), Some(1));
        // Fragment was told and delivered, on the operator's session that issued the invoice.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let (_, order) = app.get(&format!("/api/v1/orders/{id}")).await;
            if order["data"]["delivery_confirmed"] == true {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "never delivered: {order}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Submitting it again is the same payment.
        let (status, again) = app
            .post(&format!("/api/v1/checkouts/{id}/submit"), submit)
            .await;
        assert_eq!(status, 200, "{again}");
        assert_eq!(again["data"]["request_id"], request_id.as_str());

        // A second checkout, which the wallet broadcasts itself before handing it over.
        let (status, body) = app.post("/api/v1/checkouts", create(50)).await;
        assert_eq!(status, 200, "{body}");
        let id = body["data"]["checkout_id"].as_str().unwrap().to_string();
        let tx = body["data"]["transaction"].clone();
        // A seqno the wallet has passed, or one it has not reached, can never apply.
        for (seqno, named) in [(0, "seqno used"), (2, "seqno")] {
            let stale = wallet.sign(&tx, Some(seqno), None).await;
            let (status, body) = app
                .post(
                    &format!("/api/v1/checkouts/{id}/submit"),
                    json!({"boc": stale}),
                )
                .await;
            sandbox::assert_error(status, &body, 400, "CHECKOUT_REJECTED");
            assert!(
                body["error"]["message"].as_str().unwrap().contains(named),
                "{body}"
            );
        }
        let boc = wallet.sign(&tx, Some(1), None).await;
        let sent = reqwest::Client::new()
            .post(format!("{}/api/v2/sendBoc", ton.url()))
            .json(&json!({"boc": boc}))
            .send()
            .await
            .unwrap();
        assert!(sent.status().is_success(), "{}", sent.text().await.unwrap());
        wait_for(|| ton.seqno(&address) == Some(2)).await;
        let (status, body) = app
            .post(
                &format!("/api/v1/checkouts/{id}/submit"),
                json!({"boc": boc, "already_broadcast": true}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let request = app
            .wait_request(body["data"]["request_id"].as_str().unwrap())
            .await;
        assert_eq!(request["status"], "completed", "{request}");
    }
    app.app.stop().await;
}

/// Polls `done` every 50 ms for up to 20 s.
async fn wait_for(mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The base64 seed of a valid TON mnemonic other than the sandbox's demo one: a wallet that
/// holds nothing on the simulated chain.
fn unfunded_seed() -> String {
    let vectors: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/ton_vectors.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let words = vectors["seeds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "ton_food_brand")
        .expect("the ton_food_brand vector")["mnemonic"]
        .as_str()
        .unwrap()
        .to_string();
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, words)
}

/// Runs tests/python/sdk_check.py with the SDK release pinned in `requirements` against a
/// fresh sandbox; the script checks every public method and the exceptions our error codes
/// become, and reports each failed check.
async fn sdk_works_against_the_sandbox(venv: &'static str, requirements: &'static str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let requirements = root.join(requirements);
    let pinned = std::fs::read_to_string(&requirements)
        .unwrap()
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("fragment-stars-api==")
                .map(str::to_string)
        })
        .expect("fragment-stars-api is pinned");
    let python = tokio::task::spawn_blocking(move || pyenv::virtualenv(venv, &requirements))
        .await
        .unwrap();
    let sandbox = tokio::task::spawn_blocking(spawned::Sandbox::start)
        .await
        .unwrap();
    let unfunded = unfunded_seed();
    assert_ne!(
        unfunded, sandbox.seed,
        "the unfunded wallet must not be the sandbox's demo wallet"
    );

    let out = tokio::process::Command::new(&python)
        .arg(root.join("tests/python/sdk_check.py"))
        .arg(&sandbox.url)
        .args(["--seed", &sandbox.seed])
        .args(["--wallet-address", &sandbox.wallet_address])
        .args(["--unfunded-seed", &unfunded])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), out)
        .await
        .unwrap_or_else(|_| panic!("sdk_check.py did not finish:\n{}", sandbox.log()))
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let summary: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "sdk_check.py output is not JSON ({e}):\n{stdout}\n{stderr}\nserver log:\n{}",
            sandbox.log()
        )
    });
    assert_eq!(summary["sdk_version"], pinned.as_str(), "{summary:#}");
    assert_eq!(
        summary["failures"],
        serde_json::json!([]),
        "the SDK found problems:\n{:#}\nwhat it saw:\n{:#}\nend of the server log:\n{}",
        summary["failures"],
        summary["seen"],
        tail(&sandbox.log(), 6000)
    );
    assert!(
        out.status.success(),
        "sdk_check.py failed:\n{stdout}\n{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_2_1_buys_and_reads_through_the_sandbox() {
    sdk_works_against_the_sandbox("sdk-2.1", "tests/python/requirements-sdk-2.1.txt").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_2_0_buys_and_reads_through_the_sandbox() {
    sdk_works_against_the_sandbox("sdk-2.0", "tests/python/requirements-sdk-2.0.txt").await;
}
