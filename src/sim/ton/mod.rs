//! A TON network simulator speaking toncenter's HTTP API (the v2 and v3 paths the gateway
//! and common wallets use), so that pointing a client's base URL at it is the only
//! difference from the real service.
//!
//! - `ledger`: accounts, wallet contracts, mempool, blocks and transactions.
//! - `contract`: the v4r2 and v5r1 wallet checks, with mainnet's exit codes.
//! - `http` / `json`: the toncenter paths and shapes, plus `/sim/*` control endpoints.
//!
//! Accepted messages apply when the next block is produced (every `block_time`; mainnet's
//! is about 0.4 s with about 1 s to finality). Latency, random errors, rate limits and
//! accepted-but-dropped messages can be injected.

pub mod contract;
pub mod http;
pub mod json;
pub mod ledger;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::web;
use serde::Deserialize;
use tonlib_core::{TonAddress, TonHash};

use self::ledger::{FeeSchedule, Ledger};
use super::faults::{FaultConfig, Faults};
use super::server::Running;
use crate::ton::{Nanoton, Network, WalletContract};

/// Settings of the TON simulator.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TonSimConfig {
    pub network: Network,
    /// Time between blocks; zero means blocks only on demand (`produce_block`, `/sim/block`).
    #[serde(rename = "block_time_ms", with = "super::faults::millis")]
    pub block_time: Duration,
    pub fees: FeeSchedule,
    pub faults: FaultConfig,
    /// Probability that an accepted message is silently lost (never applied).
    pub drop_rate: f64,
    /// If set, requests carrying another key get 401; requests carrying this key get
    /// `keyed_rps`.
    pub api_key: Option<String>,
    /// Requests per second allowed without a (valid) key; `None` = unlimited. toncenter: 1.
    pub keyless_rps: Option<f64>,
    /// Requests per second allowed with the key; `None` = unlimited. toncenter: 10.
    pub keyed_rps: Option<f64>,
    /// How many requests may come at once before the rate applies (bucket size); `None`:
    /// one second's worth.
    pub burst: Option<f64>,
    /// Refuse, at `sendBoc`, a message whose amounts plus fees exceed the balance, so that
    /// nothing changes (exit code 37). Off: behave like mainnet, which accepts it, charges
    /// gas, uses the seqno and skips the mode-3 sends.
    pub refuse_underfunded: bool,
    /// Seed of the fault-injection random generator.
    pub seed: u64,
}

impl Default for TonSimConfig {
    fn default() -> Self {
        TonSimConfig {
            network: Network::Mainnet,
            block_time: Duration::from_millis(400),
            fees: FeeSchedule::default(),
            faults: FaultConfig::default(),
            drop_rate: 0.0,
            api_key: None,
            keyless_rps: None,
            keyed_rps: None,
            burst: None,
            refuse_underfunded: true,
            seed: 0,
        }
    }
}

impl std::fmt::Debug for TonSimConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TonSimConfig")
            .field("network", &self.network)
            .field("block_time", &self.block_time)
            .field("fees", &self.fees)
            .field("faults", &self.faults)
            .field("drop_rate", &self.drop_rate)
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .field("keyless_rps", &self.keyless_rps)
            .field("keyed_rps", &self.keyed_rps)
            .field("burst", &self.burst)
            .field("refuse_underfunded", &self.refuse_underfunded)
            .finish()
    }
}

/// Request counters, for tests and `/sim/status`.
#[derive(Debug, Default)]
pub struct SimStats {
    pub requests: AtomicU64,
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
    pub dropped: AtomicU64,
    pub rate_limited: AtomicU64,
    pub unauthorized: AtomicU64,
}

/// Token buckets for the keyless and keyed budgets.
#[derive(Debug)]
struct Limiter {
    keyless: Option<Mutex<Bucket>>,
    keyed: Option<Mutex<Bucket>>,
}

#[derive(Debug)]
struct Bucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: f64, burst: Option<f64>) -> Mutex<Bucket> {
        let capacity = burst.unwrap_or(rate).max(1.0);
        Mutex::new(Bucket {
            rate,
            capacity,
            tokens: capacity,
            last: Instant::now(),
        })
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        let capacity = self.capacity;
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(capacity);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl Limiter {
    fn admit(&self, keyed: bool) -> bool {
        let bucket = if keyed { &self.keyed } else { &self.keyless };
        bucket
            .as_ref()
            .is_none_or(|b| b.lock().expect("limiter poisoned").take())
    }
}

/// Shared state behind the HTTP handlers and the block producer.
#[derive(Debug)]
pub struct SimState {
    ledger: Mutex<Ledger>,
    config: TonSimConfig,
    faults: Faults,
    drop_next: AtomicU32,
    lose_answers: AtomicU32,
    limiter: Limiter,
    stats: SimStats,
    /// Hash of every external message `sendBoc` could parse, in arrival order, whatever
    /// became of it (accepted, dropped, refused): tests read it to tell a re-sent message
    /// from a newly signed one.
    broadcasts: Mutex<Vec<TonHash>>,
    /// Requests per path, counted before any fault or limit applies: tests read it to see
    /// what a client was doing while the API was failing.
    by_path: Mutex<HashMap<String, u64>>,
}

impl SimState {
    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().expect("ledger poisoned")
    }

    /// Whether the message being accepted now is to be lost.
    fn take_drop(&self) -> bool {
        self.drop_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
            || self.faults.chance(self.config.drop_rate)
    }

    /// Whether the answer to the message being accepted now is to be lost.
    fn take_lost_answer(&self) -> bool {
        self.lose_answers
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

pub(crate) fn unix_now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}

/// A running simulator. Dropping it stops the block producer and the HTTP server.
pub struct TonSim {
    state: Arc<SimState>,
    url: String,
    running: Running,
}

impl TonSim {
    /// Starts the HTTP server on `listen` (port 0 picks a free port) and the block producer.
    /// Must be called inside a Tokio runtime.
    pub async fn start(config: TonSimConfig, listen: SocketAddr) -> std::io::Result<TonSim> {
        let listener = TcpListener::bind(listen)?;
        let addr = listener.local_addr()?;
        let limiter = Limiter {
            keyless: config.keyless_rps.map(|r| Bucket::new(r, config.burst)),
            keyed: config.keyed_rps.map(|r| Bucket::new(r, config.burst)),
        };
        let state = Arc::new(SimState {
            ledger: Mutex::new(Ledger::new(config.network, config.fees)),
            faults: Faults::new(config.faults.clone(), config.seed),
            drop_next: AtomicU32::new(0),
            lose_answers: AtomicU32::new(0),
            limiter,
            stats: SimStats::default(),
            broadcasts: Mutex::new(Vec::new()),
            by_path: Mutex::new(HashMap::new()),
            config,
        });
        let data = web::Data::from(Arc::clone(&state));
        let running = Running::start(listener, move |cfg: &mut web::ServiceConfig| {
            cfg.app_data(data.clone())
                .app_data(web::JsonConfig::default().limit(1 << 20));
            http::routes(cfg);
        })?;

        let producer = (!state.config.block_time.is_zero()).then(|| {
            let state = Arc::clone(&state);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(state.config.block_time);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    state.ledger().produce_block(unix_now());
                }
            })
        });
        Ok(TonSim {
            url: format!("http://{addr}"),
            state,
            running: running.with_task(producer),
        })
    }

    /// Base URL to give a toncenter client.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn config(&self) -> &TonSimConfig {
        &self.state.config
    }

    /// Funds any address at once from the faucet; returns the recipient's transaction hash.
    pub fn fund(&self, address: &TonAddress, amount: Nanoton) -> TonHash {
        self.state
            .ledger()
            .fund(address, amount.as_u64(), unix_now())
    }

    /// Puts a deployed wallet with a balance into the state directly.
    pub fn install_wallet(&self, wallet: &WalletContract, balance: Nanoton) {
        self.state.ledger().install_wallet(wallet, balance.as_u64());
    }

    pub fn balance(&self, address: &TonAddress) -> Nanoton {
        Nanoton::new(self.state.ledger().balance(address))
    }

    /// The deployed wallet's seqno, or `None` while undeployed.
    pub fn seqno(&self, address: &TonAddress) -> Option<u32> {
        self.state
            .ledger()
            .account(address)
            .and_then(|a| a.wallet.as_ref().map(|w| w.seqno))
    }

    /// Applies the queued messages now; returns how many were applied.
    pub fn produce_block(&self) -> usize {
        self.state.ledger().produce_block(unix_now())
    }

    pub fn pending(&self) -> usize {
        self.state.ledger().pending()
    }

    /// Read access to the whole state.
    pub fn with_ledger<R>(&self, f: impl FnOnce(&Ledger) -> R) -> R {
        f(&self.state.ledger())
    }

    pub fn faults(&self) -> &Faults {
        &self.state.faults
    }

    /// The next `n` accepted messages are lost.
    pub fn drop_next(&self, n: u32) {
        self.state.drop_next.store(n, Ordering::SeqCst);
    }

    /// The next `n` accepted messages are processed normally but their answers are lost
    /// (the client gets a 504, as when a gateway times out after forwarding).
    pub fn lose_next_answers(&self, n: u32) {
        self.state.lose_answers.store(n, Ordering::SeqCst);
    }

    pub fn stats(&self) -> &SimStats {
        &self.state.stats
    }

    /// How many requests arrived for `path` (say `/api/v2/sendBocReturnHash`), whether they
    /// were answered, refused, limited or failed by an injected fault.
    pub fn requests_to(&self, path: &str) -> u64 {
        self.state
            .by_path
            .lock()
            .expect("path counters poisoned")
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    /// The hashes of the external messages `sendBoc` received so far, in arrival order,
    /// accepted, dropped or refused alike (a message sent twice appears twice).
    pub fn broadcasts(&self) -> Vec<TonHash> {
        self.state
            .broadcasts
            .lock()
            .expect("broadcast log poisoned")
            .clone()
    }

    pub async fn stop(self) {
        self.running.stop().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ton::client::{TonApiConfig, TonApiError, TonCenterClient};
    use crate::ton::transfer::{sign_transfer, TransferParams};
    use crate::ton::{KeyPair, MessageBody, OutgoingMessage, WalletVersion};

    #[tokio::test]
    async fn the_broadcast_log_lists_every_message_received_accepted_dropped_or_refused() {
        let sim = TonSim::start(
            TonSimConfig {
                block_time: Duration::ZERO,
                ..Default::default()
            },
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .unwrap();
        let client = TonCenterClient::new(TonApiConfig::local(sim.url())).unwrap();
        let key = KeyPair::from_secret_seed(&zeroize::Zeroizing::new([3u8; 32]));
        let wallet = WalletContract::new(WalletVersion::V4R2, Network::Mainnet, key.public_key());
        sim.fund(wallet.address(), Nanoton::from_ton(2));
        let sign = |seqno| {
            let params = TransferParams {
                seqno,
                valid_until: unix_now() + 60,
                include_state_init: true,
            };
            let to = OutgoingMessage::new(
                &wallet.friendly_address(false),
                Nanoton::from_ton(1),
                MessageBody::Empty,
            )
            .unwrap();
            sign_transfer(&wallet, &key, &params, &[to]).unwrap()
        };
        let (good, bad) = (sign(0), sign(5));
        assert!(sim.broadcasts().is_empty());

        sim.drop_next(1);
        client.send_boc(&good.boc).await.unwrap(); // accepted, then lost
        client.send_boc(&good.boc).await.unwrap(); // the same message again
        assert!(matches!(
            client.send_boc(&bad.boc).await,
            Err(TonApiError::Rejected { .. })
        ));
        // Not a message at all: nothing to log.
        assert!(client.send_boc("bm90IGEgYm9j").await.is_err());

        assert_eq!(
            sim.broadcasts(),
            vec![
                good.message_hash.clone(),
                good.message_hash.clone(),
                bad.message_hash.clone()
            ]
        );
        assert_eq!(sim.produce_block(), 1);
    }

    #[tokio::test]
    async fn requests_are_counted_by_path_even_when_a_fault_fails_them() {
        let sim = TonSim::start(TonSimConfig::default(), "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let client = TonCenterClient::new(TonApiConfig {
            max_attempts: 1,
            ..TonApiConfig::local(sim.url())
        })
        .unwrap();
        let key = KeyPair::from_secret_seed(&zeroize::Zeroizing::new([4u8; 32]));
        let wallet = WalletContract::new(WalletVersion::V4R2, Network::Mainnet, key.public_key());
        client.wallet_state(&wallet).await.unwrap();
        let path = "/api/v2/getAddressInformation";
        let answered = sim.requests_to(path);
        assert!(answered >= 1);
        sim.faults().set_config(FaultConfig {
            error_rate: 1.0,
            ..FaultConfig::default()
        });
        assert!(client.wallet_state(&wallet).await.is_err());
        assert_eq!(sim.requests_to(path), answered + 1);
        assert_eq!(sim.requests_to("/api/v2/sendBocReturnHash"), 0);
    }
}
