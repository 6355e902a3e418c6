//! The gateway's own CPU per purchase paid through a checkout (the client's wallet signs; the
//! gateway checks, records, broadcasts and follows), against a purchase paid with a seed (the
//! gateway derives the key: PBKDF2, then signs) in the same run.
//!
//! The simulators run as their own process (`fragment-gateway sim`), the gateway as another
//! (`fragment-gateway serve` against them, rate limit off), so the CPU measured is the
//! gateway's alone: its process's user + system time (`/proc/<pid>/stat`, every thread,
//! those that ended included) over each phase. First the gateway idles for a while, to
//! measure what its timers cost per second; then `CHECKOUTS` checkout purchases (no-KYC
//! Stars, `WALLETS` wallets buying side by side, each wallet signing with its own key in this
//! process, as a wallet app would); then `SEEDS` seed purchases (one-shot buys, one wallet,
//! one after another). Each purchase is followed to `completed`, polled once a second.
//! Reported per purchase: the CPU over the phase divided by the purchases, and the same less
//! the idle rate over the phase's wall time. A table goes to stderr and
//! `target/bench-checkout.json`.
//!
//! Run: `cargo bench --bench checkout` (`FG_BENCH_CHECKOUTS`, `FG_BENCH_SEEDS` change the
//! counts). Under `cargo test` it runs one purchase of each kind, as a smoke test.

#[path = "../tests/spawned/mod.rs"]
mod spawned;

use std::time::{Duration, Instant};

use fragment_gateway::ton::transfer::{sign_transfer, TransferParams};
use fragment_gateway::ton::{
    KeyPair, MessageBody, Nanoton, Network, OutgoingMessage, WalletContract, WalletVersion,
};
use serde_json::{json, Value};
use spawned::Proc;

const WORDS: &str = "art hockey victory skill bubble stool heart gas debris april column knife gadget envelope donkey base nature dynamic artefact leg edge aisle retreat fatigue";

#[derive(Debug, serde::Serialize)]
struct Phase {
    kind: &'static str,
    purchases: u64,
    wall_seconds: f64,
    cpu_ms: f64,
    cpu_ms_per_purchase: f64,
    cpu_ms_per_purchase_less_idle: f64,
}

#[derive(Debug, serde::Serialize)]
struct Report {
    idle_cpu_ms_per_second: f64,
    phases: Vec<Phase>,
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// User + system CPU of the process, every thread included, in milliseconds.
fn cpu_ms(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the gateway runs");
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')').expect("a stat line") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name and state.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 * 1000.0 / clock_ticks_per_second()
}

/// The unit of `/proc/<pid>/stat`'s times (`getconf CLK_TCK`, 100 on Linux).
fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

struct Http(reqwest::Client);

impl Http {
    async fn get(&self, url: &str) -> Value {
        self.0.get(url).send().await.unwrap().json().await.unwrap()
    }
    async fn post(&self, url: &str, body: Value) -> Value {
        let r = self.0.post(url).json(&body).send().await.unwrap();
        r.json().await.unwrap()
    }

    /// Polls a queue request once a second, as a client reasonably does, until it has ended;
    /// panics unless it completed. (Polling ten times a second instead costs the gateway a
    /// few milliseconds of CPU per purchase more, which is the client's doing, not the
    /// purchase's.)
    async fn completed(&self, api: &str, request_id: &str) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let r = self.get(&format!("{api}/queue/{request_id}")).await;
            match r["data"]["status"].as_str() {
                Some("completed") => return,
                Some("failed" | "timeout") => panic!("a purchase failed: {r}"),
                _ => {}
            }
            assert!(Instant::now() < deadline, "a purchase never ended: {r}");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// One checkout purchase by `key`'s wallet, signed here as its wallet app would.
async fn checkout_purchase(
    http: &Http,
    api: &str,
    ton: &str,
    wallet: &WalletContract,
    key: &KeyPair,
) {
    let c = http
        .post(
            &format!("{api}/checkouts"),
            json!({"product": "stars", "username": "@alice", "amount": 50,
                "wallet_address": wallet.raw_address(),
                "public_key": wallet.public_key().to_hex()}),
        )
        .await;
    let tx = &c["data"]["transaction"];
    assert!(tx.is_object(), "{c}");
    let messages: Vec<OutgoingMessage> = tx["messages"]
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
    let state = http
        .get(&format!(
            "{ton}/api/v2/getWalletInformation?address={}",
            wallet.raw_address()
        ))
        .await;
    let seqno = state["result"]["seqno"].as_u64();
    let params = TransferParams {
        seqno: seqno.unwrap_or(0) as u32,
        valid_until: tx["valid_until"].as_u64().unwrap() as u32,
        include_state_init: seqno.is_none(),
    };
    let boc = sign_transfer(wallet, key, &params, &messages).unwrap().boc;
    let id = c["data"]["checkout_id"].as_str().unwrap();
    let paid = http
        .post(&format!("{api}/checkouts/{id}/submit"), json!({"boc": boc}))
        .await;
    let request = paid["data"]["request_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{paid}"));
    http.completed(api, request).await;
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let (checkouts, wallets, seeds, idle) = if bench {
        (
            env_u64("FG_BENCH_CHECKOUTS", 100),
            10,
            env_u64("FG_BENCH_SEEDS", 20),
            Duration::from_secs(20),
        )
    } else {
        (1, 1, 1, Duration::from_secs(1))
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let report = rt.block_on(run(checkouts, wallets, seeds, idle));
    eprintln!(
        "\nidle: {:.3} ms of CPU per second\n{:<10} {:>9} {:>8} {:>9} {:>12} {:>16}",
        report.idle_cpu_ms_per_second,
        "kind",
        "purchases",
        "wall s",
        "cpu ms",
        "ms/purchase",
        "less idle"
    );
    for p in &report.phases {
        eprintln!(
            "{:<10} {:>9} {:>8.1} {:>9.0} {:>12.2} {:>16.2}",
            p.kind,
            p.purchases,
            p.wall_seconds,
            p.cpu_ms,
            p.cpu_ms_per_purchase,
            p.cpu_ms_per_purchase_less_idle
        );
    }
    if bench {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-checkout.json");
        std::fs::write(&path, serde_json::to_string_pretty(&report).unwrap()).unwrap();
        eprintln!("written to {}", path.display());
    }
}

async fn run(checkouts: u64, wallets: u64, seeds: u64, idle: Duration) -> Report {
    let http = Http(reqwest::Client::new());
    let sim = Proc::spawn(&[
        "sim",
        "--ton-listen",
        "127.0.0.1:0",
        "--fragment-listen",
        "127.0.0.1:0",
        "--block-time-ms",
        "100",
    ]);
    let fragment = sim.line("fragment.com simulator:");
    let ton = sim.line("TON simulator (toncenter API v2/v3):");
    let owner = KeyPair::from_secret_seed(&zeroize::Zeroizing::new([5u8; 32]));
    let owner = WalletContract::new(WalletVersion::V4R2, Network::Mainnet, owner.public_key());
    let login = http
        .post(
            &format!("{fragment}/sim/login"),
            json!({"account": "owner", "wallet": owner.friendly_address(false)}),
        )
        .await;
    let status = http.get(&format!("{fragment}/sim/status")).await;
    let pay_to = status["payment_address"].as_str().unwrap().to_string();

    // The paying wallets: one from a seed (the gateway derives its key), the others' keys
    // only here.
    let seed_key = fragment_gateway::ton::Seed::from_words(WORDS)
        .unwrap()
        .derive_key(None)
        .unwrap();
    let seed_wallet =
        WalletContract::new(WalletVersion::V4R2, Network::Mainnet, seed_key.public_key());
    let keys: Vec<(WalletContract, KeyPair)> = (0..wallets)
        .map(|i| {
            let mut secret = [0u8; 32];
            secret[..8].copy_from_slice(&(i + 1000).to_le_bytes());
            let key = KeyPair::from_secret_seed(&zeroize::Zeroizing::new(secret));
            let wallet =
                WalletContract::new(WalletVersion::V5R1, Network::Mainnet, key.public_key());
            (wallet, key)
        })
        .collect();
    for address in keys
        .iter()
        .map(|(w, _)| w.friendly_address(false))
        .chain([seed_wallet.friendly_address(false)])
    {
        http.post(
            &format!("{ton}/sim/faucet"),
            json!({"address": address, "amount": "1000000000000"}),
        )
        .await;
    }

    let dir = tempfile::tempdir().unwrap();
    let cookies = dir.path().join("owner-cookies");
    std::fs::write(&cookies, login["fragment_cookies"].as_str().unwrap()).unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
[store]
data_dir = "{data}"
[ton]
api_url = "{ton}"
requests_per_second = "unlimited"
[fragment]
base_url = "{fragment}"
owner_cookies_file = "{cookies}"
payment_addresses = ["{pay_to}"]
[rate_limit]
requests_per_minute = 0
"#,
            data = dir.path().join("data").display(),
            cookies = cookies.display(),
        ),
    )
    .unwrap();
    let gateway = Proc::spawn(&["serve", "--config", config.to_str().unwrap()]);
    let url = gateway.line("fragment-gateway serving on ");
    let api = format!("{}/api/v1", url.split_whitespace().next().unwrap());
    let pid = gateway.pid();
    // Until the faucet's transfers are on chain.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let started = Instant::now();
    let before = cpu_ms(pid);
    tokio::time::sleep(idle).await;
    let idle_rate = (cpu_ms(pid) - before) / started.elapsed().as_secs_f64();

    let mut phases = vec![];
    let phase = |kind, purchases, started: Instant, before: f64| {
        let wall = started.elapsed().as_secs_f64();
        let cpu = cpu_ms(pid) - before;
        Phase {
            kind,
            purchases,
            wall_seconds: wall,
            cpu_ms: cpu,
            cpu_ms_per_purchase: cpu / purchases as f64,
            cpu_ms_per_purchase_less_idle: (cpu - idle_rate * wall) / purchases as f64,
        }
    };

    let started = Instant::now();
    let before = cpu_ms(pid);
    let per_wallet = checkouts.div_ceil(wallets);
    let buyers = keys.iter().map(|(wallet, key)| {
        let (http, api, ton) = (&http, api.as_str(), ton.as_str());
        async move {
            for _ in 0..per_wallet {
                checkout_purchase(http, api, ton, wallet, key).await;
            }
        }
    });
    futures_util::future::join_all(buyers).await;
    phases.push(phase("checkout", per_wallet * wallets, started, before));

    let seed = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, WORDS);
    let started = Instant::now();
    let before = cpu_ms(pid);
    for _ in 0..seeds {
        let r = http
            .post(
                &format!("{api}/stars/buy"),
                json!({"username": "@alice", "amount": 50, "seed": seed}),
            )
            .await;
        let request = r["data"]["request_id"]
            .as_str()
            .unwrap_or_else(|| panic!("{r}"));
        http.completed(&api, request).await;
    }
    phases.push(phase("seed", seeds, started, before));
    drop(gateway);
    drop(sim);
    Report {
        idle_cpu_ms_per_second: idle_rate,
        phases,
    }
}
