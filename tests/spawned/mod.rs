//! `fragment-gateway` processes, started as a user starts them: a sandbox (the README's run
//! command, on free ports), or any command (`sim`, `serve`): for the tests and benchmarks
//! that drive the binary from outside.
#![allow(dead_code)] // each test binary and benchmark uses its part

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A `fragment-gateway sandbox` process on free ports with a fresh data directory, as a user
/// starts it. Dropping it kills and reaps the process, so a failing test leaves nothing running.
pub struct Sandbox {
    process: std::process::Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// The demo wallet's base64 seed and address, as the sandbox prints them.
    pub seed: String,
    pub wallet_address: String,
    /// The TON simulator's faucet, `http://127.0.0.1:<port>/sim/faucet`.
    pub faucet: String,
    stderr_log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Sandbox {
    /// Blocking: waits (30 s at most) for the banner with the URL and the demo wallet.
    pub fn start() -> Sandbox {
        Sandbox::start_with(&[])
    }

    /// `start`, with more `FG_*` settings in its environment.
    pub fn start_with(env: &[(&str, &str)]) -> Sandbox {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        Sandbox::start_in(dir, &data, env)
    }

    /// `start_with`, on the data directory `data` (which may hold a store already); `dir`
    /// holds the process's log and lives as long as the sandbox.
    pub fn start_in(
        dir: tempfile::TempDir,
        data: &std::path::Path,
        env: &[(&str, &str)],
    ) -> Sandbox {
        let stderr_log = dir.path().join("stderr.log");
        let mut process = Command::new(env!("CARGO_BIN_EXE_fragment-gateway"))
            .arg("sandbox")
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .env("FG_SANDBOX__TON_LISTEN", "127.0.0.1:0")
            .env("FG_SANDBOX__FRAGMENT_LISTEN", "127.0.0.1:0")
            .env("FG_SANDBOX__BLOCK_TIME_MS", "100")
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(&stderr_log).expect("stderr log"))
            .spawn()
            .expect("the fragment-gateway binary starts");
        // A thread reads stdout to its end, so the process never blocks on a full pipe, and
        // hands over the lines while someone listens.
        let stdout = BufReader::new(process.stdout.take().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let mut sandbox = Sandbox {
            process,
            url: String::new(),
            seed: String::new(),
            wallet_address: String::new(),
            faucet: String::new(),
            stderr_log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut after_warning = false;
        while sandbox.seed.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).unwrap_or_else(|e| {
                panic!(
                    "the sandbox did not print its URL, demo wallet and seed ({e}):\n{}",
                    sandbox.log()
                )
            });
            if let Some(url) = line.strip_prefix("fragment-gateway sandbox: ") {
                sandbox.url = url.trim().to_string();
            } else if let Some((_, rest)) = line.split_once("(faucet: POST ") {
                sandbox.faucet = rest.split_whitespace().next().unwrap_or("").into();
            } else if let Some(rest) = line.trim().strip_prefix("demo wallet ") {
                sandbox.wallet_address = rest.split_whitespace().next().unwrap_or("").into();
            } else if after_warning {
                sandbox.seed = line.trim().to_string();
            }
            after_warning = line.trim_start().starts_with("WARNING");
        }
        assert!(
            !sandbox.url.is_empty()
                && !sandbox.wallet_address.is_empty()
                && !sandbox.faucet.is_empty(),
            "the sandbox's banner lacks its URL, demo wallet or faucet"
        );
        sandbox
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// What the process wrote to stderr (its log).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// A `fragment-gateway` process run with any arguments (`sim`, `serve`), whose stdout lines
/// arrive on a channel; killed when dropped.
pub struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Proc {
    pub fn spawn(args: &[&str]) -> Proc {
        Proc::spawn_logging(args, None)
    }

    /// With `log`, the process logs everything (debug) to that file.
    pub fn spawn_logging(args: &[&str], log: Option<&std::path::Path>) -> Proc {
        let mut command = Command::new(env!("CARGO_BIN_EXE_fragment-gateway"));
        command.args(args).stdout(Stdio::piped());
        match log {
            Some(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .unwrap();
                command.env("RUST_LOG", "debug").stderr(file)
            }
            None => command.env("RUST_LOG", "warn").stderr(Stdio::inherit()),
        };
        let mut child = command.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc { child, lines }
    }

    /// The rest of the first line starting with `prefix`.
    pub fn line(&self, prefix: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no line starting {prefix:?}"));
            if let Some(rest) = line.strip_prefix(prefix) {
                return rest.trim().to_string();
            }
        }
    }

    /// SIGKILL: no shutdown, no checkpoint, nothing flushed but what was already durable.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}
