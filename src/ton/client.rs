//! HTTP client for toncenter's API (v2 for account state, sending and history; v3 to find a
//! transaction by message hash).
//!
//! - Pacing: toncenter allows about 1 request/s without a key and 10 with a free key, and
//!   answers 429 past that. Every client for the same endpoint and key shares one pacer, so
//!   the budget holds for the whole process however many callers there are.
//! - Retries with exponential backoff and jitter on 429, 5xx, timeouts and connection
//!   failures, honouring `Retry-After`.
//! - Broadcasts are special: a timeout or a 5xx after the BOC may have reached the network
//!   leaves the outcome unknown, and a retry that then reports "seqno mismatch" may only mean
//!   the first attempt landed. Such outcomes are `TonApiError::Unconfirmed`, never
//!   `Rejected`: the caller must look the message up by hash instead of signing again.
//!
//! Response shapes: docs/toncenter-api.md.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rand::Rng;
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::time::Instant;
use tonlib_core::cell::ArcCell;
use tonlib_core::{TonAddress, TonHash};

use super::address::{self, parse_address};
use super::amount::Nanoton;
use super::encoding::decode_base64;
use super::transfer::{decode_boc, SignedTransfer};
use super::wallet::{WalletContract, WalletVersion};
use crate::config::Secret;

/// How to reach a toncenter-compatible API.
#[derive(Clone)]
pub struct TonApiConfig {
    /// Scheme, host and port, without `/api/v2` (e.g. `https://toncenter.com`).
    pub base_url: String,
    /// Sent as `X-API-Key`. Never logged; wiped on drop, as the setting it comes from.
    pub api_key: Option<Secret>,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Attempts per call, including the first.
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt up to `backoff_max`.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Request budget shared by the whole process; `None` disables pacing (local simulator).
    pub requests_per_second: Option<f64>,
    /// How long after a message's `valid_until` it may still appear on chain: the network's
    /// finality (~1 s on mainnet) plus indexer lag. Only then is a missing message final.
    pub finality_margin: Duration,
    /// The longest a read on a client's behalf waits for the request budget (`public`).
    pub public_max_wait: Duration,
}

impl TonApiConfig {
    /// toncenter: it allows 1 request/s without a key and 10 with a free key; we pace at
    /// 80 % of that so network jitter never pushes two requests into one window (the
    /// toncenter SDKs leave the same margin: 1.2–1.3 s between keyless requests).
    pub fn toncenter(base_url: impl Into<String>, api_key: Option<Secret>) -> Self {
        let rps = if api_key.is_some() { 8.0 } else { 0.8 };
        TonApiConfig {
            base_url: base_url.into(),
            api_key,
            timeout: Duration::from_secs(10),
            max_attempts: 5,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(8),
            requests_per_second: Some(rps),
            finality_margin: Duration::from_secs(10),
            public_max_wait: Duration::from_secs(5),
        }
    }

    /// A local simulator: no pacing, short timeouts and backoff.
    pub fn local(base_url: impl Into<String>) -> Self {
        TonApiConfig {
            base_url: base_url.into(),
            api_key: None,
            timeout: Duration::from_secs(5),
            max_attempts: 4,
            backoff_base: Duration::from_millis(50),
            backoff_max: Duration::from_secs(1),
            requests_per_second: None,
            finality_margin: Duration::from_secs(2),
            public_max_wait: Duration::from_secs(5),
        }
    }
}

impl fmt::Debug for TonApiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TonApiConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .field("timeout", &self.timeout)
            .field("max_attempts", &self.max_attempts)
            .field("requests_per_second", &self.requests_per_second)
            .field("finality_margin", &self.finality_margin)
            .field("public_max_wait", &self.public_max_wait)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TonApiError {
    #[error("TON API did not answer within {0:?}")]
    Timeout(Duration),
    #[error("TON API is unreachable: {0}")]
    Unreachable(String),
    #[error("TON API rate limit exceeded (HTTP 429)")]
    RateLimited,
    #[error("TON API refused the API key (HTTP {0})")]
    Unauthorized(u16),
    #[error("TON API server error (HTTP {status}): {message}")]
    Server { status: u16, message: String },
    #[error("TON API refused the request (HTTP {status}): {message}")]
    BadRequest { status: u16, message: String },
    /// The network refused the external message; nothing was applied.
    #[error("the network rejected the message{}: {message}", exit_code.map(|c| format!(" (exit code {c})")).unwrap_or_default())]
    Rejected {
        exit_code: Option<i32>,
        message: String,
    },
    /// The broadcast may or may not have reached the network.
    #[error("the outcome of the broadcast is unknown ({0}); find the message by its hash before anything else")]
    Unconfirmed(String),
    #[error("unexpected TON API response: {0}")]
    BadResponse(String),
    /// The shared request budget is taken by payments for longer than a client read may
    /// wait; try again after `retry_after`.
    #[error("the TON API budget is taken by payments; try again in {} s", retry_after.as_secs().max(1))]
    Busy { retry_after: Duration },
    #[error("account {address} holds a contract that is not a {expected} wallet")]
    NotThisWallet {
        address: String,
        expected: WalletVersion,
    },
}

impl TonApiError {
    /// Worth retrying the same request.
    fn is_transient(&self) -> bool {
        matches!(
            self,
            TonApiError::Timeout(_)
                | TonApiError::Unreachable(_)
                | TonApiError::RateLimited
                | TonApiError::Server { .. }
        )
    }
}

/// Account status as v2 reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccountStatus {
    Active,
    /// Never deployed (it may hold a balance); also what v2 says of never-used addresses.
    Uninitialized,
    Frozen,
}

/// A transaction id: logical time and hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxId {
    pub lt: u64,
    pub hash: TonHash,
}

#[derive(Clone, Debug)]
pub struct AccountState {
    /// Chain time of the state (the last synced block), unix seconds.
    pub sync_utime: u64,
    pub balance: Nanoton,
    pub status: AccountStatus,
    pub code: Option<ArcCell>,
    pub data: Option<ArcCell>,
    pub last_transaction: Option<TxId>,
}

impl AccountState {
    /// The wallet deployed here and its seqno: `None` while undeployed, an error for a
    /// frozen account or a contract that is not a v4r2 or v5r1 wallet.
    pub fn wallet(&self) -> Result<Option<(WalletVersion, u32)>, &'static str> {
        match (&self.status, &self.code, &self.data) {
            (AccountStatus::Uninitialized, _, _) => Ok(None),
            (AccountStatus::Active, Some(code), Some(data)) => {
                let version = WalletVersion::from_code_hash(&code.as_ref().cell_hash())
                    .ok_or("the account is not a v4r2 or v5r1 wallet")?;
                let mut parser = data.parser();
                let seqno = match version {
                    WalletVersion::V4R2 => parser.load_u32(32),
                    WalletVersion::V5R1 => parser.load_bit().and_then(|_| parser.load_u32(32)),
                }
                .map_err(|_| "the wallet's data cell is malformed")?;
                Ok(Some((version, seqno)))
            }
            _ => Err("the account is frozen or holds no wallet"),
        }
    }
}

/// What a payer needs of `wallet`, from its account's state (read once for several uses).
pub fn wallet_state_of(
    account: &AccountState,
    wallet: &WalletContract,
) -> Result<WalletState, TonApiError> {
    let not_this = || TonApiError::NotThisWallet {
        address: wallet.raw_address(),
        expected: wallet.version(),
    };
    let last_lt = account.last_transaction.as_ref().map(|t| t.lt);
    match account.wallet().map_err(|_| not_this())? {
        None => Ok(WalletState {
            balance: account.balance,
            seqno: 0,
            deployed: false,
            last_lt,
        }),
        Some((version, seqno)) if version == wallet.version() => Ok(WalletState {
            balance: account.balance,
            seqno,
            deployed: true,
            last_lt,
        }),
        Some(_) => Err(not_this()),
    }
}

/// A jetton wallet's state (`get_wallet_data`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JettonWalletData {
    pub balance: super::jetton::JettonAmount,
    pub owner: TonAddress,
    pub master: TonAddress,
}

/// The address in a get-method's stack entry (`["cell", {"bytes": <BOC>}]`, or a slice).
fn stack_address(entry: Option<&Value>) -> Result<TonAddress, TonApiError> {
    let boc = entry
        .and_then(|e| e.get(1))
        .and_then(|c| c.get("bytes").or(Some(c)))
        .and_then(Value::as_str)
        .ok_or_else(|| bad("a get-method answered no cell where an address was expected"))?;
    decode_boc(boc)
        .map_err(bad)?
        .parser()
        .load_address()
        .map_err(bad)
}

/// What a payer needs to know about its wallet before signing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalletState {
    pub balance: Nanoton,
    /// The seqno the next transfer must carry (0 while undeployed).
    pub seqno: u32,
    /// False until the first transfer deploys the contract (with StateInit attached).
    pub deployed: bool,
    /// Logical time of the account's last transaction when this was read: a message signed
    /// after reading it lands in a later transaction (`SignedAfter`).
    pub last_lt: Option<u64>,
}

/// What bounds the search for a transfer's transaction in its wallet's history: the
/// transfer was signed after the wallet's transaction `lt` (read before signing) and at
/// unix time `unix`. Either is enough; with neither, the whole history is searched.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SignedAfter {
    pub lt: Option<u64>,
    pub unix: Option<u64>,
}

/// How far the chain's clock may be behind ours: a transaction is looked for back to this
/// long before the transfer was signed by our clock.
const CLOCK_SKEW_SECS: u64 = 300;

impl SignedAfter {
    /// Whether `tx`, and everything older, happened before the transfer was signed.
    fn is_before(&self, tx: &ChainTransaction) -> bool {
        self.lt.is_some_and(|lt| tx.lt <= lt)
            || self
                .unix
                .is_some_and(|t| tx.utime.saturating_add(CLOCK_SKEW_SECS) < t)
    }
}

/// What `sendBocReturnHash` answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendReceipt {
    pub hash: TonHash,
    pub hash_norm: Option<TonHash>,
}

/// A message as the indexer reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainMessage {
    pub hash: TonHash,
    /// Only external-in messages have it (v3).
    pub hash_norm: Option<TonHash>,
    pub source: Option<TonAddress>,
    pub destination: Option<TonAddress>,
    pub value: Nanoton,
    pub body_hash: Option<TonHash>,
    pub bounce: Option<bool>,
    pub bounced: Option<bool>,
    /// The body itself, where the API gives it (v3's `message_content.body`): what a jetton
    /// notification says is read from it.
    pub body: Option<ArcCell>,
}

/// A transaction as the indexer reports it. The phase details exist only in v3 answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainTransaction {
    pub hash: TonHash,
    pub lt: u64,
    pub utime: u64,
    pub account: TonAddress,
    pub total_fees: Nanoton,
    pub aborted: Option<bool>,
    pub compute_exit_code: Option<i32>,
    pub action_result_code: Option<i32>,
    pub in_msg: Option<ChainMessage>,
    pub out_msgs: Vec<ChainMessage>,
}

/// How a broadcast ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransferOutcome {
    /// The wallet processed the message and sent every message as signed.
    Confirmed(Box<ChainTransaction>),
    /// The wallet processed the message (its seqno is used and fees were paid) but did not
    /// send what was signed: the transaction aborted, or mode-3 sends were skipped for lack
    /// of funds. The payment did not happen.
    NotSent(Box<ChainTransaction>),
    /// The chain's clock passed `valid_until` while the wallet's seqno still waited for this
    /// message: the contract can no longer accept it. No funds moved.
    Expired,
    /// Another message used this seqno: this one can never apply. No funds moved.
    Superseded,
}

/// Requests-per-second budget shared by every client of one endpoint and key, with the
/// payment path first. Our own pacer, not a rate-limiting crate's: what is needed is not
/// the limit (a slot per interval is a few lines) but who gets the next slot, and the
/// crates we know of (governor, leaky-bucket) queue callers in arrival order only.
///
/// - `Priority::Payment` (broadcasts, outcome polls, the reads a payment signs with) claims
///   the next slot at once, in call order: nothing but other payments can push a signed
///   message past its validity.
/// - `Priority::Public` (a client's balance read, a new payment's balance check) takes a
///   slot only when one is free now, so it never holds a slot ahead of a payment; when the
///   budget stays taken for longer than its `max_wait`, it gives up with `Busy` and the
///   time after which to try again, rather than queue for minutes.
#[derive(Debug)]
struct Pacer {
    slots: Mutex<Slots>,
}

#[derive(Debug)]
struct Slots {
    interval: Duration,
    /// The first free slot (slots before it were claimed).
    next: Option<Instant>,
}

/// Who a request is for (see `Pacer`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    Payment,
    Public { max_wait: Duration },
}

impl Pacer {
    /// The process-wide pacer for this endpoint and key. The key is hashed so the map never
    /// holds it; a later client with a stricter budget tightens the shared one.
    fn shared(base_url: &str, api_key: Option<&str>, rps: f64) -> Arc<Pacer> {
        static PACERS: OnceLock<Mutex<HashMap<String, Arc<Pacer>>>> = OnceLock::new();
        let key_fp = api_key
            .map(|k| hex::encode(&Sha256::digest(k.as_bytes())[..8]))
            .unwrap_or_default();
        let id = format!("{}|{key_fp}", base_url.trim_end_matches('/'));
        let interval = Duration::from_secs_f64(1.0 / rps.max(0.001));
        let mut map = PACERS
            .get_or_init(Default::default)
            .lock()
            .expect("pacer map poisoned");
        let pacer = map.entry(id).or_insert_with(|| {
            Arc::new(Pacer {
                slots: Mutex::new(Slots {
                    interval,
                    next: None,
                }),
            })
        });
        {
            let mut slots = pacer.slots.lock().expect("pacer poisoned");
            slots.interval = slots.interval.max(interval);
        }
        Arc::clone(pacer)
    }

    /// Waits for this caller's slot; `Err(retry_after)` when a public caller would wait
    /// longer than its bound.
    async fn acquire(&self, priority: Priority) -> Result<(), Duration> {
        let max_wait = match priority {
            Priority::Payment => {
                let slot = {
                    let mut slots = self.slots.lock().expect("pacer poisoned");
                    let now = Instant::now();
                    let slot = slots.next.map_or(now, |n| n.max(now));
                    slots.next = Some(slot + slots.interval);
                    slot
                };
                tokio::time::sleep_until(slot).await;
                return Ok(());
            }
            Priority::Public { max_wait } => max_wait,
        };
        let give_up = Instant::now() + max_wait;
        loop {
            let free_at = {
                let mut slots = self.slots.lock().expect("pacer poisoned");
                let now = Instant::now();
                match slots.next {
                    Some(next) if next > now => next,
                    _ => {
                        slots.next = Some(now + slots.interval);
                        return Ok(());
                    }
                }
            };
            if free_at > give_up {
                return Err(free_at.saturating_duration_since(Instant::now()));
            }
            // Several public callers may wake for one free slot: one takes it, the others
            // look again (a payment that claimed it meanwhile goes first).
            tokio::time::sleep_until(free_at).await;
        }
    }
}

/// Client of a toncenter-compatible API. Cheap to clone; clones share the HTTP pool and the
/// pacer.
#[derive(Clone)]
pub struct TonCenterClient {
    http: reqwest::Client,
    config: Arc<TonApiConfig>,
    pacer: Option<Arc<Pacer>>,
    /// Whose requests these are; payments by default (`public` for client reads).
    priority: Priority,
}

impl fmt::Debug for TonCenterClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TonCenterClient")
            .field("config", &self.config)
            .finish()
    }
}

enum Method {
    Get(Vec<(&'static str, String)>),
    Post(Value),
}

impl TonCenterClient {
    pub fn new(config: TonApiConfig) -> Result<Self, TonApiError> {
        if config.api_key.is_some() && !key_transport_is_safe(&config.base_url) {
            return Err(TonApiError::BadRequest {
                status: 0,
                message:
                    "refusing to send the API key over plain http to a non-loopback host; use https"
                        .into(),
            });
        }
        let http = reqwest::Client::builder()
            // A redirect would carry X-API-Key to another host (reqwest strips only
            // Authorization and Cookie).
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("fragment-gateway/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| TonApiError::Unreachable(format!("HTTP client setup failed: {e}")))?;
        let pacer = config.requests_per_second.map(|rps| {
            Pacer::shared(
                &config.base_url,
                config.api_key.as_ref().map(Secret::expose),
                rps,
            )
        });
        Ok(TonCenterClient {
            http,
            config: Arc::new(config),
            pacer,
            priority: Priority::Payment,
        })
    }

    pub fn config(&self) -> &TonApiConfig {
        &self.config
    }

    /// The same client for reads on a client's behalf: they yield the shared budget to
    /// payments and wait at most `public_max_wait` for it, then fail with `Busy`.
    pub fn public(&self) -> TonCenterClient {
        TonCenterClient {
            priority: Priority::Public {
                max_wait: self.config.public_max_wait,
            },
            ..self.clone()
        }
    }

    /// `getAddressInformation`: balance, status, code and data.
    pub async fn account_state(&self, address: &TonAddress) -> Result<AccountState, TonApiError> {
        #[derive(Deserialize)]
        struct Raw {
            balance: Nanoton,
            #[serde(default)]
            code: String,
            #[serde(default)]
            data: String,
            state: String,
            last_transaction_id: Option<RawTxId>,
            #[serde(default)]
            sync_utime: u64,
        }
        let raw: Raw = self
            .v2(
                "getAddressInformation",
                Method::Get(vec![("address", address::raw(address))]),
            )
            .await?;
        let status = match raw.state.as_str() {
            "active" => AccountStatus::Active,
            "uninitialized" | "uninit" | "nonexist" => AccountStatus::Uninitialized,
            "frozen" => AccountStatus::Frozen,
            other => return Err(bad(format!("unknown account state {other:?}"))),
        };
        let cell = |s: &str| -> Result<Option<ArcCell>, TonApiError> {
            if s.is_empty() {
                Ok(None)
            } else {
                decode_boc(s).map(Some).map_err(bad)
            }
        };
        let last_transaction = match raw.last_transaction_id {
            Some(id) => {
                let id = id.parse()?;
                (id.lt != 0).then_some(id)
            }
            None => None,
        };
        Ok(AccountState {
            sync_utime: raw.sync_utime,
            balance: raw.balance,
            status,
            code: cell(&raw.code)?,
            data: cell(&raw.data)?,
            last_transaction,
        })
    }

    /// Balance, next seqno and deployment of `wallet`. The seqno is read from the contract's
    /// data cell, after checking that the code is the wallet version we are about to sign for.
    pub async fn wallet_state(&self, wallet: &WalletContract) -> Result<WalletState, TonApiError> {
        let account = self.account_state(wallet.address()).await?;
        wallet_state_of(&account, wallet)
    }

    /// v2 `runGetMethod` with one address argument (or none): the result's stack, once the
    /// method ran (exit code 0 or 1); `None` for an account with no code (exit code -13).
    async fn get_method(
        &self,
        address: &TonAddress,
        method: &str,
        arg: Option<&TonAddress>,
    ) -> Result<Option<Vec<Value>>, TonApiError> {
        #[derive(Deserialize)]
        struct Raw {
            exit_code: i32,
            #[serde(default)]
            stack: Vec<Value>,
        }
        let stack = match arg {
            Some(a) => {
                let mut b = tonlib_core::cell::CellBuilder::new();
                b.store_raw_address(a).map_err(bad)?;
                let cell = b.build().map_err(bad)?;
                vec![serde_json::json!([
                    "tvm.Slice",
                    super::boc::to_base64(&cell).map_err(bad)?
                ])]
            }
            None => vec![],
        };
        let body = serde_json::json!({
            "address": address::raw(address),
            "method": method,
            "stack": stack,
        });
        let raw: Raw = self.v2("runGetMethod", Method::Post(body)).await?;
        match raw.exit_code {
            0 | 1 => Ok(Some(raw.stack)),
            -13 => Ok(None),
            code => Err(bad(format!("{method} exited with code {code}"))),
        }
    }

    /// The jetton wallet of `owner` for the jetton `master` (`get_wallet_address`).
    pub async fn jetton_wallet_address(
        &self,
        master: &TonAddress,
        owner: &TonAddress,
    ) -> Result<TonAddress, TonApiError> {
        let stack = self
            .get_method(master, "get_wallet_address", Some(owner))
            .await?
            .ok_or_else(|| bad(format!("no jetton master at {}", address::raw(master))))?;
        stack_address(stack.first())
    }

    /// What a jetton wallet holds (`get_wallet_data`): its balance, owner and master; a
    /// wallet not deployed yet holds nothing (`None`).
    pub async fn jetton_wallet_data(
        &self,
        wallet: &TonAddress,
    ) -> Result<Option<JettonWalletData>, TonApiError> {
        let Some(stack) = self.get_method(wallet, "get_wallet_data", None).await? else {
            return Ok(None);
        };
        let balance = stack
            .first()
            .and_then(|e| e.get(1))
            .and_then(Value::as_str)
            .and_then(|n| n.strip_prefix("0x"))
            .and_then(|hex| u64::from_str_radix(hex, 16).ok())
            .ok_or_else(|| bad("get_wallet_data: no balance"))?;
        Ok(Some(JettonWalletData {
            balance: super::jetton::JettonAmount(balance),
            owner: stack_address(stack.get(1))?,
            master: stack_address(stack.get(2))?,
        }))
    }

    /// `sendBocReturnHash`. See the module notes on `Unconfirmed`.
    pub async fn send_boc(&self, boc: &str) -> Result<SendReceipt, TonApiError> {
        #[derive(Deserialize)]
        struct Raw {
            hash: String,
            hash_norm: Option<String>,
        }
        let body = serde_json::json!({ "boc": boc });
        let mut maybe_delivered: Option<String> = None;
        let mut last = (TonApiError::Unreachable("no attempt made".into()), None);
        for attempt in 0..self.config.max_attempts.max(1) {
            if attempt > 0 {
                tokio::time::sleep(self.backoff(attempt, &last.0, last.1)).await;
            }
            match self
                .request_once("/api/v2/sendBocReturnHash", &Method::Post(body.clone()))
                .await
            {
                Ok(value) => {
                    // The API took the message: an unreadable answer leaves the outcome open.
                    let receipt =
                        serde_json::from_value::<Raw>(value)
                            .map_err(bad)
                            .and_then(|raw| {
                                Ok(SendReceipt {
                                    hash: parse_hash(&raw.hash)?,
                                    hash_norm: raw
                                        .hash_norm
                                        .as_deref()
                                        .map(parse_hash)
                                        .transpose()?,
                                })
                            });
                    return receipt.map_err(|e| {
                        TonApiError::Unconfirmed(format!(
                            "the API accepted the message but its answer was unreadable: {e}"
                        ))
                    });
                }
                Err(RequestError {
                    error,
                    sent,
                    retry_after,
                }) => {
                    if !error.is_transient() {
                        // After an attempt that may have landed, even a refusal (say, of a
                        // seqno that attempt used) proves nothing about the payment.
                        return Err(match maybe_delivered {
                            Some(why) => TonApiError::Unconfirmed(format!(
                                "an earlier attempt ended with {why}, and a retry was then refused ({error})"
                            )),
                            None => error,
                        });
                    }
                    // A 429 or a refused connection means the BOC was not taken; anything
                    // else after sending may have been.
                    if sent && error != TonApiError::RateLimited {
                        maybe_delivered = Some(error.to_string());
                    }
                    tracing::warn!(attempt, %error, "sendBoc attempt failed");
                    last = (error, retry_after);
                }
            }
        }
        Err(match maybe_delivered {
            Some(why) => TonApiError::Unconfirmed(why),
            None => last.0,
        })
    }

    /// Broadcasts a signed transfer and checks that the API hashed it as we did.
    pub async fn send_transfer(
        &self,
        transfer: &SignedTransfer,
    ) -> Result<SendReceipt, TonApiError> {
        let receipt = self.send_boc(&transfer.boc).await?;
        if receipt.hash != transfer.message_hash
            || receipt
                .hash_norm
                .as_ref()
                .is_some_and(|h| h != &transfer.normalized_hash)
        {
            return Err(TonApiError::Unconfirmed(format!(
                "the API reports message hash {} but we sent {}",
                receipt.hash.to_hex(),
                transfer.message_hash.to_hex()
            )));
        }
        Ok(receipt)
    }

    /// The transaction that received the message with this hash (normalized or not), via v3
    /// `transactionsByMessage`.
    pub async fn transaction_by_message(
        &self,
        message_hash: &TonHash,
    ) -> Result<Option<ChainTransaction>, TonApiError> {
        #[derive(Deserialize)]
        struct Raw {
            transactions: Vec<V3Transaction>,
        }
        let raw: Raw = self
            .v3(
                "transactionsByMessage",
                vec![
                    ("msg_hash", message_hash.to_hex()),
                    ("direction", "in".into()),
                    ("limit", "1".into()),
                ],
            )
            .await?;
        raw.transactions
            .into_iter()
            .next()
            .map(V3Transaction::into_chain)
            .transpose()
    }

    /// Newest-first history of an account from the indexer (v3 `transactions`), with phase
    /// details (aborted, exit codes) that v2 leaves in the raw BOC; `offset` pages back.
    pub async fn indexed_transactions(
        &self,
        address: &TonAddress,
        limit: u32,
        offset: u32,
    ) -> Result<Vec<ChainTransaction>, TonApiError> {
        #[derive(Deserialize)]
        struct Raw {
            transactions: Vec<V3Transaction>,
        }
        let raw: Raw = self
            .v3(
                "transactions",
                vec![
                    ("account", address::raw(address)),
                    ("limit", limit.clamp(1, 1000).to_string()),
                    ("offset", offset.to_string()),
                    ("sort", "desc".into()),
                ],
            )
            .await?;
        raw.transactions
            .into_iter()
            .map(V3Transaction::into_chain)
            .collect()
    }

    /// Newest-first history of an account (v2 `getTransactions`), starting at `from`
    /// (inclusive, as toncenter does: a next page starts with the previous page's last
    /// transaction).
    pub async fn transactions(
        &self,
        address: &TonAddress,
        limit: u32,
        from: Option<&TxId>,
    ) -> Result<Vec<ChainTransaction>, TonApiError> {
        let mut query = vec![
            ("address", address::raw(address)),
            ("limit", limit.clamp(1, 1000).to_string()),
            ("archival", "true".into()),
        ];
        if let Some(id) = from {
            query.push(("lt", id.lt.to_string()));
            query.push(("hash", id.hash.to_hex()));
        }
        let raw: Vec<V2Transaction> = self.v2("getTransactions", Method::Get(query)).await?;
        raw.into_iter().map(V2Transaction::into_chain).collect()
    }

    /// Follows a broadcast transfer to its outcome. The indexer (v3) is asked first; while it
    /// has nothing, the chain itself (v2) decides: if the wallet's seqno moved, the wallet's
    /// recent transactions say whether this message used it; if the chain's clock passed
    /// `valid_until` (plus the finality margin) with the seqno still waiting, the message
    /// can never apply. The local clock is never trusted for this, and an indexer that lags
    /// cannot turn a payment into "no funds moved".
    ///
    /// Polls until one of those holds, so sign transfers with a short validity.
    ///
    /// Without a bound on when it was signed, a moved seqno sends the search through the
    /// wallet's whole history: see `wait_for_transfer_signed_after`.
    pub async fn wait_for_transfer(
        &self,
        transfer: &SignedTransfer,
        poll_interval: Duration,
    ) -> Result<TransferOutcome, TonApiError> {
        self.wait_for_transfer_signed_after(transfer, poll_interval, SignedAfter::default())
            .await
    }

    /// `wait_for_transfer` for a transfer signed after `after`, which bounds how far back
    /// its wallet's history is searched once the seqno has moved.
    pub async fn wait_for_transfer_signed_after(
        &self,
        transfer: &SignedTransfer,
        poll_interval: Duration,
        after: SignedAfter,
    ) -> Result<TransferOutcome, TonApiError> {
        loop {
            if let Some(tx) = self
                .transaction_by_message(&transfer.normalized_hash)
                .await?
            {
                return Ok(judge(transfer, tx));
            }
            let account = self.account_state(&transfer.wallet).await?;
            let seqno = account.wallet().map_err(bad)?.map_or(0, |(_, seqno)| seqno);
            if seqno > transfer.seqno {
                return Ok(match self.find_in_history(transfer, after).await? {
                    Some(tx) => judge(transfer, tx),
                    None => TransferOutcome::Superseded,
                });
            }
            let deadline = u64::from(transfer.valid_until) + self.config.finality_margin.as_secs();
            if account.sync_utime > deadline {
                return Ok(TransferOutcome::Expired);
            }
            tokio::time::sleep(poll_interval).await;
        }
    }

    /// The transaction that applied `transfer`, if the chain has it now: by its normalized
    /// hash from the indexer, else from the wallet's history back to `after`. One look, no
    /// waiting: for a message someone else may have broadcast already.
    pub async fn find_transfer(
        &self,
        transfer: &SignedTransfer,
        after: SignedAfter,
    ) -> Result<Option<ChainTransaction>, TonApiError> {
        if let Some(tx) = self
            .transaction_by_message(&transfer.normalized_hash)
            .await?
        {
            return Ok(Some(tx));
        }
        self.find_in_history(transfer, after).await
    }

    /// The wallet's transaction that processed this transfer, from its history (v2 reads the
    /// chain directly, without the indexer's lag), paging back until the history is older
    /// than the transfer's signing. Never from a fixed window: a wallet that receives many
    /// transfers after paying (a shop's does) pushes its payment far back, and "not found"
    /// here means "no funds moved" to the caller.
    async fn find_in_history(
        &self,
        transfer: &SignedTransfer,
        after: SignedAfter,
    ) -> Result<Option<ChainTransaction>, TonApiError> {
        const PAGE: u32 = 100;
        let ours = |tx: &ChainTransaction| {
            tx.in_msg.as_ref().is_some_and(|m| {
                m.source.is_none()
                    && (m.hash == transfer.message_hash
                        || m.body_hash.as_ref() == Some(&transfer.body_hash))
            })
        };
        let mut from: Option<TxId> = None;
        loop {
            let page = self
                .transactions(&transfer.wallet, PAGE, from.as_ref())
                .await?;
            let full = page.len() == PAGE as usize;
            // A next page starts with the previous page's last transaction (inclusive).
            let fresh = page.into_iter().skip(usize::from(from.is_some()));
            let mut oldest = None;
            for tx in fresh {
                if ours(&tx) {
                    return Ok(Some(tx));
                }
                if after.is_before(&tx) {
                    return Ok(None);
                }
                oldest = Some(TxId {
                    lt: tx.lt,
                    hash: tx.hash.clone(),
                });
            }
            match oldest {
                Some(id) if full => from = Some(id),
                // The start of the wallet's history.
                _ => return Ok(None),
            }
        }
    }

    async fn v2<T: DeserializeOwned>(&self, method: &str, m: Method) -> Result<T, TonApiError> {
        let value = self.request(&format!("/api/v2/{method}"), m).await?;
        serde_json::from_value(value).map_err(bad)
    }

    async fn v3<T: DeserializeOwned>(
        &self,
        method: &str,
        query: Vec<(&'static str, String)>,
    ) -> Result<T, TonApiError> {
        let value = self
            .request(&format!("/api/v3/{method}"), Method::Get(query))
            .await?;
        serde_json::from_value(value).map_err(bad)
    }

    /// A call with retries on transient failures.
    async fn request(&self, path: &str, method: Method) -> Result<Value, TonApiError> {
        let mut last = (TonApiError::Unreachable("no attempt made".into()), None);
        for attempt in 0..self.config.max_attempts.max(1) {
            if attempt > 0 {
                tokio::time::sleep(self.backoff(attempt, &last.0, last.1)).await;
            }
            match self.request_once(path, &method).await {
                Ok(v) => return Ok(v),
                Err(e) if e.error.is_transient() => {
                    tracing::debug!(attempt, path, error = %e.error, "TON API call failed, will retry");
                    last = (e.error, e.retry_after);
                }
                Err(e) => return Err(e.error),
            }
        }
        Err(last.0)
    }

    /// Delay before retry number `attempt`: exponential with jitter, at least the server's
    /// `Retry-After`, and at least a second after a 429 (toncenter's window is a second).
    fn backoff(&self, attempt: u32, last: &TonApiError, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .config
            .backoff_base
            .saturating_mul(1u32 << (attempt - 1).min(16))
            .min(self.config.backoff_max);
        let floor = match last {
            TonApiError::RateLimited => Duration::from_secs(1),
            _ => Duration::ZERO,
        };
        let base = exp
            .max(floor)
            .max(retry_after.unwrap_or_default().min(self.config.backoff_max));
        // Jitter on top of everything, so callers refused together do not retry together.
        let jitter = rand::thread_rng().gen_range(0..=base.as_millis() as u64 / 2);
        base + Duration::from_millis(jitter)
    }

    fn transport_error(&self, e: reqwest::Error) -> TonApiError {
        if e.is_timeout() {
            TonApiError::Timeout(self.config.timeout)
        } else {
            TonApiError::Unreachable(e.without_url().to_string())
        }
    }

    /// One HTTP exchange. `sent` tells whether the request may have reached the server.
    async fn request_once(&self, path: &str, method: &Method) -> Result<Value, RequestError> {
        if let Some(pacer) = &self.pacer {
            pacer
                .acquire(self.priority)
                .await
                .map_err(|retry_after| RequestError {
                    error: TonApiError::Busy { retry_after },
                    sent: false,
                    retry_after: None,
                })?;
        }
        let url = format!("{}{}", self.config.base_url.trim_end_matches('/'), path);
        let mut req = match method {
            Method::Get(query) => self.http.get(&url).query(query),
            Method::Post(body) => self.http.post(&url).json(body),
        };
        if let Some(value) = self.config.api_key.as_ref().and_then(key_header) {
            req = req.header("X-API-Key", value);
        }
        let resp = req.send().await.map_err(|e| RequestError {
            sent: !e.is_connect(),
            error: self.transport_error(e),
            retry_after: None,
        })?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = resp.text().await.map_err(|e| RequestError {
            error: self.transport_error(e),
            sent: true,
            retry_after: None,
        })?;
        classify(status, &text).map_err(|error| RequestError {
            error,
            sent: true,
            retry_after,
        })
    }
}

struct RequestError {
    error: TonApiError,
    /// Whether the request may have reached the server.
    sent: bool,
    /// The server's `Retry-After`, if it sent one.
    retry_after: Option<Duration>,
}

/// Whether the transaction sent what the transfer signed: not aborted, and every expected
/// message out with its destination, amount and body.
fn judge(transfer: &SignedTransfer, tx: ChainTransaction) -> TransferOutcome {
    let mut out: Vec<&ChainMessage> = tx.out_msgs.iter().collect();
    let all_sent = transfer.messages.iter().all(|expected| {
        let found = out.iter().position(|m| {
            m.destination.as_ref() == Some(&expected.destination)
                && m.value == expected.amount
                && m.body_hash
                    .as_ref()
                    .is_none_or(|h| h == &expected.body_hash)
        });
        found.map(|i| out.swap_remove(i)).is_some()
    });
    if tx.aborted == Some(true) || !all_sent {
        TransferOutcome::NotSent(Box::new(tx))
    } else {
        TransferOutcome::Confirmed(Box::new(tx))
    }
}

/// https anywhere, or http to a loopback host (a local simulator).
fn key_transport_is_safe(base_url: &str) -> bool {
    match reqwest::Url::parse(base_url) {
        Ok(url) if url.scheme() == "https" => true,
        Ok(url) if url.scheme() == "http" => match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(d)) => d == "localhost",
            None => false,
        },
        _ => false,
    }
}

/// The `X-API-Key` header of one request, marked sensitive. Its bytes are a copy of the key
/// wiped when the header's last reference drops (`HeaderValue::from_str` would copy it into a
/// plain buffer). hyper still encodes the header into its own write buffer: that copy is the
/// HTTP stack's, out of our reach. `None` for a key a header cannot carry (never sent).
fn key_header(key: &Secret) -> Option<reqwest::header::HeaderValue> {
    // actix-web's re-export of the `bytes` crate, the one `http` takes without copying.
    let wiped = actix_web::web::Bytes::from_owner(zeroize::Zeroizing::new(
        key.expose().as_bytes().to_vec(),
    ));
    let mut value = reqwest::header::HeaderValue::from_maybe_shared(wiped).ok()?;
    value.set_sensitive(true);
    Some(value)
}

fn bad(e: impl fmt::Display) -> TonApiError {
    TonApiError::BadResponse(e.to_string())
}

/// Turns an HTTP answer into the `result` (v2) or the body (v3), or a typed error.
fn classify(status: StatusCode, text: &str) -> Result<Value, TonApiError> {
    let json: Option<Value> = serde_json::from_str(text).ok();
    // v2 puts the text under `error`; the observed 429 puts it under `result`; v3 has
    // `error` only.
    let message = json
        .as_ref()
        .and_then(|v| {
            v.get("error")
                .or_else(|| v.get("result").filter(|r| r.is_string()))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| truncate(text, 200));
    let ok_false = json
        .as_ref()
        .and_then(|v| v.get("ok"))
        .and_then(Value::as_bool)
        == Some(false);

    if status.is_success() && !ok_false {
        let json = json.ok_or_else(|| bad("body is not JSON"))?;
        // v2 wraps in {ok, result}; v3 answers bare objects.
        return Ok(match json.get("ok") {
            Some(_) => json
                .get("result")
                .cloned()
                .ok_or_else(|| bad("v2 answer without result"))?,
            None => json,
        });
    }
    if is_external_rejection(&message) {
        return Err(TonApiError::Rejected {
            exit_code: parse_exit_code(&message),
            message,
        });
    }
    Err(match status.as_u16() {
        429 => TonApiError::RateLimited,
        401 | 403 => TonApiError::Unauthorized(status.as_u16()),
        s @ 500..=599 => TonApiError::Server { status: s, message },
        // A 200 with ok:false that is not a rejection: treat as a server-side failure.
        200..=299 => TonApiError::Server {
            status: 500,
            message,
        },
        s => TonApiError::BadRequest { status: s, message },
    })
}

/// The liteserver's ways of saying an external message was refused (docs/toncenter-api.md).
fn is_external_rejection(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("cannot apply external message")
        || m.contains("external message was not accepted")
        || m.contains("exitcode=")
}

fn parse_exit_code(message: &str) -> Option<i32> {
    let start = message.find("exitcode=")? + "exitcode=".len();
    let digits: String = message[start..]
        .chars()
        .enumerate()
        .take_while(|(i, c)| c.is_ascii_digit() || (*i == 0 && *c == '-'))
        .map(|(_, c)| c)
        .collect();
    digits.parse().ok()
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// Parses a hash given as 64 hex digits or base64 (either alphabet, padded or not).
pub fn parse_hash(s: &str) -> Result<TonHash, TonApiError> {
    let s = s.trim();
    let bytes = if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(s).map_err(bad)?
    } else {
        decode_base64(s)
            .ok_or_else(|| bad(format!("bad hash {s:?}")))?
            .to_vec()
    };
    TonHash::try_from(bytes).map_err(|_| bad(format!("hash {s:?} is not 32 bytes")))
}

fn opt_address(s: Option<&str>) -> Result<Option<TonAddress>, TonApiError> {
    match s {
        None | Some("") => Ok(None),
        Some(s) => parse_address(s)
            .map(Some)
            .map_err(|e| bad(format!("address {s:?}: {e}"))),
    }
}

#[derive(Deserialize)]
struct RawTxId {
    lt: String,
    hash: String,
}

impl RawTxId {
    fn parse(self) -> Result<TxId, TonApiError> {
        Ok(TxId {
            lt: self.lt.parse().map_err(bad)?,
            hash: parse_hash(&self.hash)?,
        })
    }
}

#[derive(Deserialize)]
struct V2Message {
    hash: String,
    #[serde(default)]
    source: String,
    #[serde(default)]
    destination: String,
    value: Nanoton,
    body_hash: Option<String>,
}

impl V2Message {
    fn into_chain(self) -> Result<ChainMessage, TonApiError> {
        Ok(ChainMessage {
            hash: parse_hash(&self.hash)?,
            hash_norm: None,
            source: opt_address(Some(&self.source))?,
            destination: opt_address(Some(&self.destination))?,
            value: self.value,
            body_hash: self.body_hash.as_deref().map(parse_hash).transpose()?,
            bounce: None,
            bounced: None,
            body: None,
        })
    }
}

#[derive(Deserialize)]
struct V2Transaction {
    address: V2AccountAddress,
    utime: u64,
    transaction_id: RawTxId,
    fee: Nanoton,
    in_msg: Option<V2Message>,
    #[serde(default)]
    out_msgs: Vec<V2Message>,
}

#[derive(Deserialize)]
struct V2AccountAddress {
    account_address: String,
}

impl V2Transaction {
    fn into_chain(self) -> Result<ChainTransaction, TonApiError> {
        let id = self.transaction_id.parse()?;
        Ok(ChainTransaction {
            hash: id.hash,
            lt: id.lt,
            utime: self.utime,
            account: parse_address(&self.address.account_address).map_err(bad)?,
            total_fees: self.fee,
            aborted: None,
            compute_exit_code: None,
            action_result_code: None,
            in_msg: self.in_msg.map(V2Message::into_chain).transpose()?,
            out_msgs: self
                .out_msgs
                .into_iter()
                .map(V2Message::into_chain)
                .collect::<Result<_, _>>()?,
        })
    }
}

#[derive(Deserialize)]
struct V3Message {
    hash: String,
    hash_norm: Option<String>,
    source: Option<String>,
    destination: Option<String>,
    value: Option<Nanoton>,
    bounce: Option<bool>,
    bounced: Option<bool>,
    message_content: Option<V3Content>,
}

#[derive(Deserialize)]
struct V3Content {
    hash: Option<String>,
    body: Option<String>,
}

impl V3Message {
    fn into_chain(self) -> Result<ChainMessage, TonApiError> {
        let (body_hash, body) = match self.message_content {
            Some(c) => (c.hash, c.body),
            None => (None, None),
        };
        Ok(ChainMessage {
            hash: parse_hash(&self.hash)?,
            hash_norm: self.hash_norm.as_deref().map(parse_hash).transpose()?,
            source: opt_address(self.source.as_deref())?,
            destination: opt_address(self.destination.as_deref())?,
            value: self.value.unwrap_or(Nanoton::ZERO),
            body_hash: body_hash.as_deref().map(parse_hash).transpose()?,
            bounce: self.bounce,
            bounced: self.bounced,
            // An unreadable body is only unknown: the hash still identifies it.
            body: body
                .filter(|b| !b.is_empty())
                .and_then(|b| decode_boc(&b).ok()),
        })
    }
}

#[derive(Deserialize)]
struct V3Transaction {
    account: String,
    hash: String,
    lt: String,
    now: u64,
    total_fees: Nanoton,
    description: Option<V3Description>,
    in_msg: Option<V3Message>,
    #[serde(default)]
    out_msgs: Vec<V3Message>,
}

#[derive(Deserialize)]
struct V3Description {
    aborted: Option<bool>,
    compute_ph: Option<V3Compute>,
    action: Option<V3Action>,
}

#[derive(Deserialize)]
struct V3Compute {
    exit_code: Option<i32>,
}

#[derive(Deserialize)]
struct V3Action {
    result_code: Option<i32>,
}

impl V3Transaction {
    fn into_chain(self) -> Result<ChainTransaction, TonApiError> {
        let (aborted, compute_exit_code, action_result_code) = match self.description {
            Some(d) => (
                d.aborted,
                d.compute_ph.and_then(|c| c.exit_code),
                d.action.and_then(|a| a.result_code),
            ),
            None => (None, None, None),
        };
        Ok(ChainTransaction {
            hash: parse_hash(&self.hash)?,
            lt: self.lt.parse().map_err(bad)?,
            utime: self.now,
            account: parse_address(&self.account).map_err(bad)?,
            total_fees: self.total_fees,
            aborted,
            compute_exit_code,
            action_result_code,
            in_msg: self.in_msg.map(V3Message::into_chain).transpose()?,
            out_msgs: self
                .out_msgs
                .into_iter()
                .map(V3Message::into_chain)
                .collect::<Result<_, _>>()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;

    use super::*;

    fn pacer(rps: f64) -> Pacer {
        Pacer {
            slots: Mutex::new(Slots {
                interval: Duration::from_secs_f64(1.0 / rps),
                next: None,
            }),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_payment_goes_before_public_reads_that_came_first() {
        let pacer = Arc::new(pacer(1.0));
        let order = Arc::new(Mutex::new(Vec::new()));
        let public = Priority::Public {
            max_wait: Duration::from_secs(60),
        };
        let mut tasks = Vec::new();
        for i in 0..10 {
            let (pacer, order) = (Arc::clone(&pacer), Arc::clone(&order));
            tasks.push(tokio::spawn(async move {
                pacer.acquire(public).await.unwrap();
                order.lock().unwrap().push(format!("public {i}"));
            }));
        }
        // The public reads are all waiting (one of them holds the first slot) before the
        // payment asks.
        tokio::time::sleep(Duration::from_millis(10)).await;
        let (p, o) = (Arc::clone(&pacer), Arc::clone(&order));
        tasks.push(tokio::spawn(async move {
            p.acquire(Priority::Payment).await.unwrap();
            o.lock().unwrap().push("payment".into());
        }));
        for t in tasks {
            t.await.unwrap();
        }
        let order = order.lock().unwrap();
        assert_eq!(order.len(), 11);
        // One public read had its slot already; the payment takes the very next one.
        assert_eq!(order[1], "payment", "{order:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_public_read_gives_up_with_the_wait_when_payments_hold_the_budget() {
        let pacer = pacer(2.0);
        let started = Instant::now();
        // Payments claimed the next two seconds.
        pacer.slots.lock().unwrap().next = Some(started + Duration::from_secs(2));
        let public = Priority::Public {
            max_wait: Duration::from_millis(500),
        };
        let retry_after = pacer.acquire(public).await.unwrap_err();
        assert_eq!(Instant::now(), started, "gave up at once, without waiting");
        assert_eq!(retry_after, Duration::from_secs(2));
        // With a long enough bound it waits for the first free slot and gets it.
        let patient = Priority::Public {
            max_wait: Duration::from_secs(3),
        };
        pacer.acquire(patient).await.unwrap();
        assert_eq!(Instant::now() - started, Duration::from_secs(2));
        // A payment is never refused.
        pacer.acquire(Priority::Payment).await.unwrap();
    }

    #[test]
    fn rejections_are_recognised_in_both_node_wordings() {
        let new = "LITE_SERVER_UNKNOWN: cannot apply external message to current state : External message was not accepted: cannot run message on account: inbound external message rejected by transaction AB:\nexitcode=33, steps=49, gas_used=0";
        let old = "LITE_SERVER_UNKNOWN: cannot apply external message to current state : External message was not accepted\nCannot run message on account: inbound external message rejected by transaction F1:\nexitcode=133, steps=49, gas_used=0\nVM Log";
        let body = |m: &str| serde_json::json!({"ok": false, "error": m, "code": 500}).to_string();
        for (m, code) in [(new, Some(33)), (old, Some(133))] {
            match classify(StatusCode::INTERNAL_SERVER_ERROR, &body(m)) {
                Err(TonApiError::Rejected { exit_code, .. }) => assert_eq!(exit_code, code),
                other => panic!("{other:?}"),
            }
        }
        let unpack = "LITE_SERVER_UNKNOWN: cannot apply external message to current state : Failed to unpack account state";
        assert!(matches!(
            classify(StatusCode::INTERNAL_SERVER_ERROR, &body(unpack)),
            Err(TonApiError::Rejected {
                exit_code: None,
                ..
            })
        ));
    }

    #[test]
    fn other_failures_are_classified() {
        let r = classify(
            StatusCode::TOO_MANY_REQUESTS,
            r#"{"ok":false,"result":"Ratelimit exceed","code":429}"#,
        );
        assert_eq!(r, Err(TonApiError::RateLimited));
        assert!(matches!(
            classify(StatusCode::BAD_GATEWAY, "<html>bad gateway</html>"),
            Err(TonApiError::Server { status: 502, .. })
        ));
        assert!(matches!(
            classify(
                StatusCode::UNAUTHORIZED,
                r#"{"ok":false,"code":401,"error":"API key does not exist"}"#
            ),
            Err(TonApiError::Unauthorized(401))
        ));
        assert!(matches!(
            classify(
                StatusCode::UNPROCESSABLE_ENTITY,
                r#"{"ok":false,"code":422,"error":"failed to parse address"}"#
            ),
            Err(TonApiError::BadRequest { status: 422, .. })
        ));
        assert_eq!(
            classify(StatusCode::OK, r#"{"ok":true,"result":"5"}"#),
            Ok(Value::String("5".into()))
        );
        assert_eq!(
            classify(StatusCode::OK, r#"{"transactions":[]}"#),
            Ok(serde_json::json!({"transactions": []}))
        );
    }

    #[test]
    fn hashes_parse_in_every_form() {
        let hex = "a39a7fa7dae06199804315ceec52868776ff0cb2474d4c6863f78cd5b5cbe11d";
        let h = parse_hash(hex).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(h.as_slice());
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(h.as_slice());
        assert_eq!(parse_hash(&b64).unwrap(), h);
        assert_eq!(parse_hash(&url).unwrap(), h);
        assert!(parse_hash("abcd").is_err());
    }

    #[test]
    fn the_api_key_travels_only_over_https_or_loopback() {
        assert!(key_transport_is_safe("https://toncenter.com"));
        assert!(key_transport_is_safe("http://127.0.0.1:8081"));
        assert!(key_transport_is_safe("http://[::1]:8081"));
        assert!(key_transport_is_safe("http://localhost:8081"));
        assert!(!key_transport_is_safe("http://toncenter.com"));
        assert!(!key_transport_is_safe("http://10.0.0.5:8081"));
        let mut cfg = TonApiConfig::local("http://example.com");
        cfg.api_key = Some("k".into());
        assert!(matches!(
            TonCenterClient::new(cfg),
            Err(TonApiError::BadRequest { .. })
        ));
    }

    #[test]
    fn the_api_key_and_its_headers_leave_no_plain_copy() {
        // The old `Option<String>` left the key in the freed config.
        use crate::api::secret::leak_check::freed_copies;
        let key = "toncenter-canary-key-0123456789";
        let (sent, copies) = freed_copies(key.as_bytes(), || {
            let client = TonCenterClient::new(TonApiConfig::toncenter(
                "https://toncenter.com",
                Some(key.into()),
            ))
            .unwrap();
            let api_key: &Option<Secret> = &client.config().api_key;
            let header = api_key.as_ref().and_then(key_header).unwrap();
            let sent = (header.as_bytes() == key.as_bytes(), header.is_sensitive());
            drop(header);
            drop(client);
            sent
        });
        assert_eq!(
            sent,
            (true, true),
            "the header carries the key, marked sensitive"
        );
        assert_eq!(copies, 0, "freed blocks still holding the key");
        // What the check catches: the header the old code built per request.
        let ((), plain) = freed_copies(key.as_bytes(), || {
            drop(reqwest::header::HeaderValue::from_str(key).unwrap())
        });
        assert_eq!(plain, 1, "HeaderValue::from_str frees a plain copy");
        assert!(key_header(&Secret::from("no\nnewlines")).is_none());
    }

    #[test]
    fn debug_hides_the_api_key() {
        let cfg = TonApiConfig::toncenter("https://toncenter.com", Some("sekret-key".into()));
        assert!(!format!("{cfg:?}").contains("sekret"));
    }
}
