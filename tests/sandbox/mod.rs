//! A sandbox gateway for the HTTP tests: both simulators in-process, every listener on a
//! random loopback port, fast blocks, and the caller's data directory.

use std::path::Path;

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
    let env = [
        ("FG_SERVER__LISTEN", "127.0.0.1:0"),
        ("FG_SANDBOX__TON_LISTEN", "127.0.0.1:0"),
        ("FG_SANDBOX__FRAGMENT_LISTEN", "127.0.0.1:0"),
        ("FG_SANDBOX__BLOCK_TIME_MS", "50"),
        ("FG_SERVER__SHUTDOWN_GRACE_SECONDS", "5"),
        ("FG_STORE__DATA_DIR", data_dir.as_str()),
    ]
    .iter()
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
