//! A TON network simulator speaking toncenter's HTTP API (the v2 and v3 paths the gateway
//! and common wallets use), so that pointing a client's base URL at it is the only
//! difference from the real service.
//!
//! - `ledger`: accounts, wallet contracts, mempool, blocks and transactions.
//! - `contract`: the v4r2 and v5r1 wallet checks, with mainnet's exit codes.
//! - `http` / `json`: the toncenter paths and shapes, plus `/sim/*` control endpoints.
//!
//! Accepted messages apply when the next block is produced (every `block_time`; mainnet's
//! is about 0.4 s with about 1 s to finality). Latency, random errors, hanging requests,
//! rate limits, accepted-but-dropped messages, lost or hanging sendBoc answers and indexer
//! lag can be injected, and (but for the API key) switched at runtime, so that a test can
//! change them mid-run.

pub mod contract;
pub mod http;
pub mod jetton;
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

use self::ledger::{FeeSchedule, Ledger, Moment, SimTransaction, TxSummary};
use super::faults::{take_one, FaultConfig, Faults, HangConfig};
use super::server::Running;
use crate::ton::jetton::JettonAmount;
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
    /// Requests that hang (`Faults::set_hangs` changes it at runtime).
    pub hangs: HangConfig,
    /// Probability that an accepted message is silently lost (never applied). The start
    /// value; `TonSim::set_drop_rate` changes it.
    pub drop_rate: f64,
    /// If set, requests carrying another key get 401; requests carrying this key get
    /// `keyed_rps`.
    pub api_key: Option<String>,
    /// Requests per second allowed without a (valid) key; `None` = unlimited. toncenter: 1.
    /// The start value; `TonSim::set_keyless_rps` changes it.
    pub keyless_rps: Option<f64>,
    /// Requests per second allowed with the key; `None` = unlimited. toncenter: 10.
    /// The start value; `TonSim::set_keyed_rps` changes it.
    pub keyed_rps: Option<f64>,
    /// How many requests may come at once before the rate applies (bucket size); `None`:
    /// one second's worth.
    pub burst: Option<f64>,
    /// Refuse, at `sendBoc`, a message whose amounts plus fees exceed the balance, so that
    /// nothing changes (exit code 37). Off: behave like mainnet, which accepts it, charges
    /// gas, uses the seqno and skips the mode-3 sends.
    pub refuse_underfunded: bool,
    /// How far the v3 (indexer) endpoints trail the chain: they omit transactions whose
    /// block is younger than this. The start value; `TonSim::set_indexer_lag` changes it.
    #[serde(rename = "indexer_lag_ms", with = "super::faults::millis")]
    pub indexer_lag: Duration,
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
            hangs: HangConfig::default(),
            drop_rate: 0.0,
            api_key: None,
            keyless_rps: None,
            keyed_rps: None,
            burst: None,
            refuse_underfunded: true,
            indexer_lag: Duration::ZERO,
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
            .field("hangs", &self.hangs)
            .field("drop_rate", &self.drop_rate)
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .field("keyless_rps", &self.keyless_rps)
            .field("keyed_rps", &self.keyed_rps)
            .field("burst", &self.burst)
            .field("refuse_underfunded", &self.refuse_underfunded)
            .field("indexer_lag", &self.indexer_lag)
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
    /// Accepted messages whose answer was lost (504) or made to hang.
    pub answers_lost: AtomicU64,
    pub rate_limited: AtomicU64,
    pub unauthorized: AtomicU64,
}

/// Token buckets for the keyless and keyed budgets (`None`: unlimited).
#[derive(Debug)]
struct Limiter {
    keyless: Mutex<Option<Bucket>>,
    keyed: Mutex<Option<Bucket>>,
    burst: Option<f64>,
}

#[derive(Debug)]
struct Bucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: f64, burst: Option<f64>) -> Bucket {
        let capacity = burst.unwrap_or(rate).max(1.0);
        Bucket {
            rate,
            capacity,
            tokens: capacity,
            last: Instant::now(),
        }
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
    fn new(keyless: Option<f64>, keyed: Option<f64>, burst: Option<f64>) -> Limiter {
        Limiter {
            keyless: Mutex::new(keyless.map(|r| Bucket::new(r, burst))),
            keyed: Mutex::new(keyed.map(|r| Bucket::new(r, burst))),
            burst,
        }
    }

    fn bucket(&self, keyed: bool) -> &Mutex<Option<Bucket>> {
        if keyed {
            &self.keyed
        } else {
            &self.keyless
        }
    }

    fn admit(&self, keyed: bool) -> bool {
        self.bucket(keyed)
            .lock()
            .expect("limiter poisoned")
            .as_mut()
            .is_none_or(Bucket::take)
    }

    /// A new budget starts with a full bucket, as toncenter's window does for a client it
    /// has not seen lately.
    fn set(&self, keyed: bool, rps: Option<f64>) {
        if let Some(r) = rps {
            assert!(
                r.is_finite() && r >= 0.0,
                "requests per second must be 0 or more, not {r}"
            );
        }
        *self.bucket(keyed).lock().expect("limiter poisoned") =
            rps.map(|r| Bucket::new(r, self.burst));
    }
}

/// The faults switched at runtime that `FaultConfig` does not cover.
#[derive(Debug)]
struct Switches {
    drop_rate: f64,
    indexer_lag: Duration,
    /// Set while the indexer is paused: it shows nothing applied after this instant.
    indexer_paused_at: Option<Instant>,
}

/// Shared state behind the HTTP handlers and the block producer.
#[derive(Debug)]
pub struct SimState {
    ledger: Mutex<Ledger>,
    config: TonSimConfig,
    faults: Faults,
    drop_next: AtomicU32,
    lose_answers: AtomicU32,
    hang_answers: AtomicU32,
    switches: Mutex<Switches>,
    limiter: Limiter,
    stats: SimStats,
    /// Hash of every external message `sendBoc` could parse, in arrival order, whatever
    /// became of it (accepted, dropped, refused): tests read it to tell a re-sent message
    /// from a newly signed one.
    broadcasts: Mutex<Vec<TonHash>>,
    /// Requests per path, counted before any fault or limit applies: tests read it to see
    /// what a client was doing while the API was failing.
    by_path: Mutex<HashMap<String, u64>>,
    /// Requests to a path still to fail with a 503 (`fail_next_on`), for a fault that must
    /// hit one client's call and not the other clients of the same API (Fragment's watcher).
    fail_path: Mutex<HashMap<String, u32>>,
    /// The sandbox's webhook inbox (`/sim/webhooks`): the last deliveries it received, so
    /// that a newcomer sees the gateway's webhooks without running a server. Not TON; it
    /// lives here because the sandbox's simulators are what a sandbox user already has.
    pub(super) webhooks: Mutex<std::collections::VecDeque<serde_json::Value>>,
}

impl SimState {
    /// Whether this request to `path` is one `fail_next_on` asked to fail.
    fn take_path_failure(&self, path: &str) -> bool {
        let mut failing = self.fail_path.lock().expect("path faults poisoned");
        match failing.get_mut(path) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    }

    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().expect("ledger poisoned")
    }

    fn switches(&self) -> MutexGuard<'_, Switches> {
        self.switches.lock().expect("switches poisoned")
    }

    /// Whether the message being accepted now is to be lost.
    fn take_drop(&self) -> bool {
        let rate = self.switches().drop_rate;
        take_one(&self.drop_next) || self.faults.chance(rate)
    }

    /// Whether the answer to the message being accepted now is to be lost (504).
    fn take_lost_answer(&self) -> bool {
        take_one(&self.lose_answers)
    }

    /// Whether the answer to the message being accepted now is to hang.
    fn take_hung_answer(&self) -> bool {
        take_one(&self.hang_answers)
    }

    /// What the indexer (the v3 endpoints) shows: transactions applied at or before the
    /// instant returned, which is the lag ago, or the pause if earlier. `None`: nothing (a
    /// lag longer than the process has run).
    fn indexed_until(&self) -> Option<Instant> {
        let s = self.switches();
        let horizon = Instant::now().checked_sub(s.indexer_lag)?;
        Some(s.indexer_paused_at.map_or(horizon, |p| p.min(horizon)))
    }

    /// Keeps the transactions the indexer shows.
    fn indexed<'a>(&self, txs: Vec<&'a SimTransaction>) -> Vec<&'a SimTransaction> {
        match self.indexed_until() {
            Some(until) => txs.into_iter().filter(|t| t.applied_at <= until).collect(),
            None => vec![],
        }
    }
}

/// The USDT master's address (the one mainnet's USDT has).
pub fn usdt_master() -> TonAddress {
    crate::ton::address::parse_address(jetton::USDT_MASTER).expect("a valid address")
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
        let limiter = Limiter::new(config.keyless_rps, config.keyed_rps, config.burst);
        let mut ledger = Ledger::new(config.network, config.fees);
        // USDT's master, where mainnet has it: the simulator's USDT.
        ledger.install_jetton_master(&usdt_master(), jetton::USDT_DECIMALS, "USD₮");
        let state = Arc::new(SimState {
            ledger: Mutex::new(ledger),
            faults: Faults::new(config.faults.clone(), config.seed)
                .with_hangs(config.hangs.clone()),
            drop_next: AtomicU32::new(0),
            lose_answers: AtomicU32::new(0),
            hang_answers: AtomicU32::new(0),
            switches: Mutex::new(Switches {
                drop_rate: config.drop_rate,
                indexer_lag: config.indexer_lag,
                indexer_paused_at: None,
            }),
            limiter,
            stats: SimStats::default(),
            broadcasts: Mutex::new(Vec::new()),
            webhooks: Mutex::new(std::collections::VecDeque::new()),
            by_path: Mutex::new(HashMap::new()),
            fail_path: Mutex::new(HashMap::new()),
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
                    state.ledger().produce_block(Moment::now());
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

    /// The configuration the simulator started with (runtime switches do not change it).
    pub fn config(&self) -> &TonSimConfig {
        &self.state.config
    }

    /// Funds any address at once from the faucet; returns the recipient's transaction hash.
    pub fn fund(&self, address: &TonAddress, amount: Nanoton) -> TonHash {
        self.state
            .ledger()
            .fund(address, amount.as_u64(), Moment::now())
    }

    /// Credits `address` at once with `count` separate incoming transfers of `amount_each`,
    /// each from a different sender (see `Ledger::burst`): the wallet's recent history
    /// fills with incoming transactions, as a busy shop wallet's does. Returns the
    /// recipient's transaction hashes, oldest first.
    pub fn burst(&self, address: &TonAddress, count: u32, amount_each: Nanoton) -> Vec<TonHash> {
        self.state
            .ledger()
            .burst(address, count, amount_each.as_u64(), Moment::now())
    }

    /// Mints USDT (in units of 10⁻⁶) to `owner`'s USDT jetton wallet at once; returns the
    /// jetton wallet's transaction hash.
    pub fn mint_usdt(&self, owner: &TonAddress, amount: JettonAmount) -> TonHash {
        self.state
            .ledger()
            .mint_jetton(&usdt_master(), owner, amount, Moment::now())
    }

    /// Fault injection: takes all of `owner`'s USDT away at once (no transaction), as if the
    /// wallet had spent it elsewhere. Returns what it held.
    pub fn take_usdt(&self, owner: &TonAddress) -> JettonAmount {
        self.state.ledger().take_jettons(&usdt_master(), owner)
    }

    /// `owner`'s USDT balance (zero without a jetton wallet).
    pub fn usdt_balance(&self, owner: &TonAddress) -> JettonAmount {
        self.state.ledger().jetton_balance(&usdt_master(), owner)
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
        self.state.ledger().produce_block(Moment::now())
    }

    pub fn pending(&self) -> usize {
        self.state.ledger().pending()
    }

    /// Read access to the whole state.
    pub fn with_ledger<R>(&self, f: impl FnOnce(&Ledger) -> R) -> R {
        f(&self.state.ledger())
    }

    /// Every transaction of `address`, oldest first, with its in-message (hash, normalized
    /// hash, source, value), its out-messages (destination, value, body hash), fees and net
    /// balance change: what a harness needs to account for a wallet after a run.
    pub fn history(&self, address: &TonAddress) -> Vec<TxSummary> {
        self.state.ledger().history(address)
    }

    /// The sum of `address`'s balance changes over its transactions (nanoton). Equal to the
    /// balance change since the start, unless `install_wallet` gave it a genesis balance.
    pub fn net_change(&self, address: &TonAddress) -> i128 {
        self.history(address).iter().map(|t| t.balance_change).sum()
    }

    /// The transaction whose external message caused transaction `tx` (say, the payer's
    /// transfer behind a payment Fragment received, whose hash the Fragment simulator's
    /// deliveries carry); its `in_msg.hash` / `hash_norm` are the message's. `None` when
    /// `tx` is unknown or was caused from outside (faucet, burst).
    pub fn origin(&self, tx: &TonHash) -> Option<TxSummary> {
        self.state.ledger().origin(tx).map(SimTransaction::summary)
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

    /// The next `n` accepted messages are queued (and so applied with the next block) but
    /// their answer hangs for the faults' `HangConfig::duration`, then the connection drops
    /// or the answer comes late (its `then`): the realistic lost answer, where the client's
    /// own timeout fires and it cannot know the message went through. A pending
    /// `lose_next_answers` goes first.
    pub fn hang_next_answers(&self, n: u32) {
        self.state.hang_answers.store(n, Ordering::SeqCst);
    }

    /// Probability (0..=1) that an accepted message is silently lost from now on.
    pub fn set_drop_rate(&self, rate: f64) {
        assert!(
            (0.0..=1.0).contains(&rate),
            "drop rate {rate} is not in 0..=1"
        );
        self.state.switches().drop_rate = rate;
    }

    /// Requests per second allowed without a (valid) key from now on (`None`: unlimited);
    /// beyond it requests get toncenter's 429. The bucket starts full.
    pub fn set_keyless_rps(&self, rps: Option<f64>) {
        self.state.limiter.set(false, rps);
    }

    /// Requests per second allowed with the configured key from now on (`None`:
    /// unlimited). The bucket starts full.
    pub fn set_keyed_rps(&self, rps: Option<f64>) {
        self.state.limiter.set(true, rps);
    }

    /// From now on the v3 endpoints (`transactionsByMessage`, `transactions`), like
    /// toncenter's indexer, omit transactions whose block was produced less than `lag` ago;
    /// the v2 endpoints read the chain and stay current. Zero: no lag. A lag longer than the
    /// simulator has run hides every transaction.
    pub fn set_indexer_lag(&self, lag: Duration) {
        self.state.switches().indexer_lag = lag;
    }

    /// `true` freezes the indexer: the v3 endpoints show nothing applied from now on (what
    /// they showed stays) until `pause_indexer(false)`, when they catch up at once. Pausing
    /// a paused indexer keeps the first pause's point.
    pub fn pause_indexer(&self, paused: bool) {
        let mut s = self.state.switches();
        s.indexer_paused_at = match (paused, s.indexer_paused_at) {
            (true, Some(at)) => Some(at),
            (true, None) => Some(Instant::now()),
            (false, _) => None,
        };
    }

    pub fn stats(&self) -> &SimStats {
        &self.state.stats
    }

    /// The next `n` requests to `path` (say `/api/v2/getAddressInformation`) fail with a
    /// 503, whatever the other faults say; requests to other paths are not affected.
    pub fn fail_next_on(&self, path: &str, n: u32) {
        self.state
            .fail_path
            .lock()
            .expect("path faults poisoned")
            .insert(path.to_string(), n);
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

    /// A simulator, a client that tries each call once, and a wallet of key `[seed; 32]`.
    async fn without_retries(seed: u8) -> (TonSim, TonCenterClient, WalletContract) {
        let sim = TonSim::start(TonSimConfig::default(), "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let client = TonCenterClient::new(TonApiConfig {
            max_attempts: 1,
            ..TonApiConfig::local(sim.url())
        })
        .unwrap();
        let key = KeyPair::from_secret_seed(&zeroize::Zeroizing::new([seed; 32]));
        let wallet = WalletContract::new(WalletVersion::V4R2, Network::Mainnet, key.public_key());
        (sim, client, wallet)
    }

    #[tokio::test]
    async fn a_path_fault_fails_that_path_only_and_only_so_often() {
        let (sim, client, wallet) = without_retries(5).await;
        sim.fail_next_on("/api/v2/getAddressInformation", 2);
        // Another path is not affected.
        client
            .indexed_transactions(wallet.address(), 1, 0)
            .await
            .unwrap();
        assert!(client.wallet_state(&wallet).await.is_err());
        assert!(client.wallet_state(&wallet).await.is_err());
        client.wallet_state(&wallet).await.unwrap();
        assert_eq!(sim.faults().injected(), 2);
    }

    #[tokio::test]
    async fn requests_are_counted_by_path_even_when_a_fault_fails_them() {
        let (sim, client, wallet) = without_retries(4).await;
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
