//! The fragment.com web-API client: sessions (cookies, API hash), one flow at a time per
//! session, and the calls of the Stars and Premium purchase flows.
//!
//! Protocol (as fragment.com's web app speaks it). A page GET gives the API hash (bound to the
//! session) and the ton_proof challenge; calls are form-encoded POSTs to `/api?hash=…`. A
//! stale hash is answered `{"error":"Bad request"}`: the page is reloaded and the call
//! retried once. Timeouts, 429 and 5xx are retried a bounded number of times, all within one
//! budget per call. A retried `init…Request` whose first answer was lost may leave an extra
//! request at Fragment; that is harmless (unpaid requests expire), and the flow goes on with
//! the one it got.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use rand::Rng;
use reqwest::header::{HeaderMap, HeaderValue};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use tokio::sync::{Mutex, OwnedMutexGuard};
use tonlib_core::TonAddress;
use zeroize::Zeroizing;

use super::cookies::{self, FragmentCookies};
use super::error::{FragmentError, SessionRole};
use super::html::{self, Price};
use super::link::PaymentLink;
use super::proof;
use crate::domain::{PremiumMonths, StarsAmount, Username};
use crate::ton::address::parse_address;
use crate::ton::jetton::JettonAmount;
use crate::ton::{KeyPair, Nanoton, Network, WalletContract, WalletVersion};

/// Where fragment.com takes TON payments (pinned by fragment_api_lib; FRAGMENT_PROTOCOL.md §3).
pub const FRAGMENT_PAYMENT_ADDRESSES: [&str; 2] = [
    "UQBAjaOyi2wGWlk-EDkSabqqnF-MrrwMadnwqrurKpkla4QB",
    "UQBeab7D38RIwypegbN7YZgQzwDbb8QfMMwY8ouJc3qPl4CJ",
];

#[derive(Clone, Debug)]
pub struct FragmentConfig {
    /// `https://fragment.com`, or a simulator.
    pub base_url: String,
    pub timeout: Duration,
    /// Attempts per request on timeouts, 429 and 5xx.
    pub max_attempts: u32,
    /// First retry delay, doubled per attempt.
    pub backoff: Duration,
    /// How long a page's API hash is reused before the page is loaded again.
    pub hash_ttl: Duration,
    /// The most one call may take, retries and a page reload included.
    pub call_budget: Duration,
    pub user_agent: String,
    /// Network of the paying wallets (TON Connect `chain`).
    pub network: Network,
    /// Addresses Fragment takes payments at; a link paying elsewhere is refused.
    pub payment_addresses: Vec<String>,
}

impl FragmentConfig {
    pub fn fragment_com() -> FragmentConfig {
        FragmentConfig {
            base_url: "https://fragment.com".into(),
            timeout: Duration::from_secs(30),
            max_attempts: 3,
            backoff: Duration::from_millis(500),
            hash_ttl: Duration::from_secs(120),
            call_budget: Duration::from_secs(90),
            user_agent: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
                         Chrome/130.0.0.0 Safari/537.36"
                .into(),
            network: Network::Mainnet,
            payment_addresses: FRAGMENT_PAYMENT_ADDRESSES.map(String::from).to_vec(),
        }
    }
}

/// Which purchase flow a call belongs to: each has its page and method names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Product {
    Stars,
    Premium,
}

impl Product {
    pub fn page(self) -> &'static str {
        match self {
            Product::Stars => "/stars/buy",
            Product::Premium => "/premium/gift",
        }
    }
    fn search_method(self) -> &'static str {
        match self {
            Product::Stars => "searchStarsRecipient",
            Product::Premium => "searchPremiumGiftRecipient",
        }
    }
    fn init_method(self) -> &'static str {
        match self {
            Product::Stars => "initBuyStarsRequest",
            Product::Premium => "initGiftPremiumRequest",
        }
    }
    fn link_method(self) -> &'static str {
        match self {
            Product::Stars => "getBuyStarsLink",
            Product::Premium => "getGiftPremiumLink",
        }
    }
    fn state_method(self) -> &'static str {
        match self {
            Product::Stars => "updateStarsBuyState",
            Product::Premium => "updatePremiumState",
        }
    }
}

/// What is being bought.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purchase {
    Stars(StarsAmount),
    Premium(PremiumMonths),
}

impl Purchase {
    /// The purchase an order's product names. Orders are only created from validated values,
    /// so an error here means a corrupted or foreign log.
    pub fn from_order(product: events::Product) -> Result<Purchase, crate::domain::ValueError> {
        Ok(match product {
            events::Product::Stars { amount } => Purchase::Stars(StarsAmount::new(amount.into())?),
            events::Product::Premium { months } => {
                Purchase::Premium(PremiumMonths::new(months.into())?)
            }
        })
    }

    pub fn product(self) -> Product {
        match self {
            Purchase::Stars(_) => Product::Stars,
            Purchase::Premium(_) => Product::Premium,
        }
    }
}

/// A recipient Fragment found; the token is opaque and bound to the session and product.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recipient {
    pub username: Username,
    pub token: String,
    pub name: String,
}

/// A purchase request Fragment created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invoice {
    pub purchase: Purchase,
    pub req_id: String,
    /// What Fragment quoted, in nanoton.
    pub amount: Nanoton,
}

/// A purchase request Fragment created to be paid in USDT on TON.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsdtInvoice {
    pub purchase: Purchase,
    pub req_id: String,
    /// What Fragment quoted, in USDT units (10⁻⁶).
    pub amount: JettonAmount,
}

/// USDT's decimals: amounts are in units of 10⁻⁶ USDT.
pub const USDT_DECIMALS: u32 = 6;

/// What became of a paid purchase.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fulfilment {
    /// Fragment reports it done.
    Done,
    /// Fragment answered, but has not reported it done yet.
    NotYet,
    /// Fragment could not be asked (the last error); the purchase may well be done.
    Unknown(FragmentError),
}

/// An answer of the state methods.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateReply {
    pub mode: String,
    pub need_update: bool,
    pub req_id: Option<String>,
}

/// Shared HTTP client and settings. Cheap to clone.
#[derive(Clone)]
pub struct FragmentClient {
    http: reqwest::Client,
    config: Arc<FragmentConfig>,
    payment_addresses: Arc<[TonAddress]>,
    sessions: Arc<SessionTurns>,
}

/// Who may use each Fragment session now. Fragment keeps a session's purchase state under
/// its `stel_ssid`, so two flows on one `stel_ssid` must never overlap, whoever started
/// them: the operator's pool, two wallets paying with the same client cookies, a price
/// lookup. Every `FragmentSession` made for the same `stel_ssid` shares one turn lock from
/// here, however many session objects the callers made.
///
/// Sessions are known by a keyed digest of their `stel_ssid` (`SessionId`), never by the
/// cookie itself, so neither this map nor anything that records an id (a lane in the
/// dispatcher, an event naming the session that bought an order) holds a secret. With a
/// persistent key (`FragmentClient::with_session_key`) the id stays the same across
/// restarts, which lets a restarted service find the session that bought an order.
struct SessionTurns {
    key: [u8; 32],
    /// Weak: a session nobody uses any more leaves nothing behind but a dead entry, swept as
    /// new sessions come.
    turns: std::sync::Mutex<HashMap<SessionId, Weak<Mutex<()>>>>,
}

/// A Fragment session's identity: a keyed digest of its `stel_ssid` (of the whole cookie
/// set when it has none). Says nothing about the cookies to anyone without the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId([u8; 16]);

impl SessionId {
    /// Hex, for events and logs.
    pub fn to_hex(self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Option<SessionId> {
        let bytes = hex::decode(s).ok()?;
        Some(SessionId(bytes.try_into().ok()?))
    }
}

impl SessionTurns {
    fn new(key: [u8; 32]) -> SessionTurns {
        SessionTurns {
            key,
            turns: std::sync::Mutex::new(HashMap::new()),
        }
    }

    fn id(&self, cookies: &FragmentCookies) -> SessionId {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        match cookies.get(cookies::SSID) {
            Some(ssid) => {
                mac.update(b"stel_ssid\0");
                mac.update(ssid.as_bytes());
            }
            None => {
                mac.update(b"cookies\0");
                mac.update(cookies.header().as_bytes());
            }
        }
        let digest = mac.finalize().into_bytes();
        SessionId(digest[..16].try_into().expect("16 bytes"))
    }

    fn turn(&self, id: SessionId) -> Arc<Mutex<()>> {
        let mut turns = self.turns.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(turn) = turns.get(&id).and_then(Weak::upgrade) {
            return turn;
        }
        turns.retain(|_, t| t.strong_count() > 0);
        let turn = Arc::new(Mutex::new(()));
        turns.insert(id, Arc::downgrade(&turn));
        turn
    }
}

impl FragmentClient {
    pub fn new(config: FragmentConfig) -> Result<FragmentClient, FragmentError> {
        let payment_addresses = config
            .payment_addresses
            .iter()
            .map(|a| parse_address(a))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| FragmentError::Misconfigured(format!("payment address: {e}")))?;
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(config.user_agent.clone())
            .build()
            .map_err(|e| FragmentError::Misconfigured(format!("HTTP client setup: {e}")))?;
        let mut key = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut key);
        Ok(FragmentClient {
            http,
            config: Arc::new(config),
            payment_addresses: payment_addresses.into(),
            sessions: Arc::new(SessionTurns::new(key)),
        })
    }

    /// The same client, naming sessions with `key` (kept by the operator across restarts)
    /// instead of a key random to this process. Sessions made before keep their turns.
    pub fn with_session_key(mut self, key: [u8; 32]) -> FragmentClient {
        self.sessions = Arc::new(SessionTurns::new(key));
        self
    }

    /// The identity `cookies`' session has in this client (see `SessionId`).
    pub fn session_id(&self, cookies: &FragmentCookies) -> SessionId {
        self.sessions.id(cookies)
    }

    pub fn config(&self) -> &FragmentConfig {
        &self.config
    }

    pub fn payment_addresses(&self) -> &[TonAddress] {
        &self.payment_addresses
    }

    /// A session on these cookies. Flows on one Fragment session run one at a time, also
    /// across session objects made from cookies of the same `stel_ssid`.
    pub fn session(&self, cookies: FragmentCookies, role: SessionRole) -> FragmentSession {
        let id = self.sessions.id(&cookies);
        FragmentSession {
            client: self.clone(),
            role,
            id,
            turn: self.sessions.turn(id),
            state: Arc::new(Mutex::new(SessionState {
                cookies,
                hash: None,
                ton_proof: None,
                ton_rate: None,
            })),
        }
    }
}

struct ApiHash {
    value: String,
    page_url: String,
    fetched: Instant,
}

struct SessionState {
    cookies: FragmentCookies,
    hash: Option<ApiHash>,
    ton_proof: Option<String>,
    ton_rate: Option<Decimal>,
}

/// One Fragment session. Fragment keeps per-session state (the current purchase), so a
/// session runs one flow at a time; different sessions run in parallel.
#[derive(Clone)]
pub struct FragmentSession {
    client: FragmentClient,
    role: SessionRole,
    id: SessionId,
    /// Shared by every session object of this `stel_ssid` (see `SessionTurns`).
    turn: Arc<Mutex<()>>,
    state: Arc<Mutex<SessionState>>,
}

impl FragmentSession {
    pub fn role(&self) -> SessionRole {
        self.role
    }

    /// Which Fragment session this is (the same for every object of one `stel_ssid`).
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// Exclusive use of the Fragment session until the returned flow is dropped. The turn
    /// comes first: with it held, this object's own state is free (whoever else held it
    /// held the turn too).
    pub async fn begin(&self) -> Flow {
        let turn = Arc::clone(&self.turn).lock_owned().await;
        Flow {
            client: self.client.clone(),
            role: self.role,
            state: Arc::clone(&self.state).lock_owned().await,
            _turn: turn,
        }
    }

    /// Exclusive use of the session if nobody has it now.
    pub fn try_begin(&self) -> Option<Flow> {
        let turn = Arc::clone(&self.turn).try_lock_owned().ok()?;
        Some(Flow {
            client: self.client.clone(),
            role: self.role,
            state: Arc::clone(&self.state).try_lock_owned().ok()?,
            _turn: turn,
        })
    }
}

/// A flow holding its Fragment session exclusively.
pub struct Flow {
    client: FragmentClient,
    role: SessionRole,
    state: OwnedMutexGuard<SessionState>,
    /// Held for the flow's life: no other flow on this `stel_ssid` runs meanwhile.
    _turn: OwnedMutexGuard<()>,
}

/// TON Connect `account` of a wallet.
pub fn ton_connect_account(wallet: &WalletContract) -> String {
    json!({
        "address": wallet.raw_address(),
        "chain": wallet.network().global_id().to_string(),
        "walletStateInit": wallet.state_init_boc(),
        "publicKey": wallet.public_key().to_hex(),
    })
    .to_string()
}

/// TON Connect `device`: what FragmentAPI sends (a Tonkeeper profile), with the wallet's real
/// message limit.
pub fn ton_connect_device(version: WalletVersion) -> String {
    json!({
        "platform": "android",
        "appName": "Tonkeeper",
        "appVersion": "26.07.1",
        "maxProtocolVersion": 2,
        "features": [
            "SendTransaction",
            {"name": "SignData", "types": ["text", "binary", "cell"]},
            {"name": "SendTransaction", "maxMessages": version.max_messages()}
        ]
    })
    .to_string()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Turns Fragment's refusals into errors and passes everything else through. The wording is
/// matched loosely (case, surrounding text), as every client library does.
fn classify(
    role: SessionRole,
    v: Value,
    username: Option<&Username>,
) -> Result<Value, FragmentError> {
    let who = || username.map(Username::to_string).unwrap_or_default();
    if v.get("need_verify").and_then(Value::as_bool) == Some(true) {
        return Err(match role {
            SessionRole::Client => FragmentError::KycRequired,
            SessionRole::Owner => FragmentError::OwnerCookiesExpired(
                "fragment.com asks the operator's account to log in or verify".into(),
            ),
        });
    }
    if v.get("need_ton").and_then(Value::as_bool) == Some(true) {
        return Err(FragmentError::WalletNotConnected);
    }
    let Some(error) = v.get("error") else {
        return Ok(v);
    };
    let text = error
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| error.to_string());
    let lower = text.to_ascii_lowercase();
    Err(if lower.contains("no telegram users found") {
        FragmentError::UserNotFound { username: who() }
    } else if lower.contains("username assigned to a user") {
        FragmentError::NotAUser { username: who() }
    } else if lower.contains("already subscribed to telegram premium") {
        FragmentError::PremiumAlreadyActive { username: who() }
    } else if lower.contains("price was changed") {
        FragmentError::PriceChanged
    } else if lower.contains("session expired") || lower.contains("unauthorized") {
        FragmentError::session_rejected(role, text)
    } else {
        FragmentError::Refused(text)
    })
}

impl Flow {
    pub fn role(&self) -> SessionRole {
        self.role
    }

    /// The identity of the session this flow runs on (`FragmentSession::id`).
    pub fn session_id(&self) -> SessionId {
        self.client.session_id(&self.state.cookies)
    }

    /// USD per TON, from the last page loaded.
    pub fn ton_rate(&self) -> Option<Decimal> {
        self.state.ton_rate
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}{}",
            self.client.config.base_url.trim_end_matches('/'),
            path
        )
    }

    fn cookie_header(&self) -> Result<HeaderValue, FragmentError> {
        let header: Zeroizing<String> = self.state.cookies.header();
        let mut value = HeaderValue::from_str(&header)
            .map_err(|_| FragmentError::session_rejected(self.role, "cookies cannot be sent"))?;
        value.set_sensitive(true);
        Ok(value)
    }

    /// Sends with bounded retries on timeouts, connection failures, 429 and 5xx.
    async fn send(
        &self,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, FragmentError> {
        let cfg = &self.client.config;
        let mut last = String::new();
        for attempt in 0..cfg.max_attempts.max(1) {
            if attempt > 0 {
                let delay = cfg.backoff.saturating_mul(1 << (attempt - 1).min(8));
                let jitter = rand::thread_rng().gen_range(0..=delay.as_millis() as u64 / 2);
                tokio::time::sleep(delay + Duration::from_millis(jitter)).await;
            }
            match build().send().await {
                Ok(r) if r.status().as_u16() == 429 || r.status().is_server_error() => {
                    last = format!("HTTP {}", r.status().as_u16());
                }
                Ok(r) => return Ok(r),
                Err(e) if e.is_timeout() => last = format!("no answer within {:?}", cfg.timeout),
                Err(e) => last = e.without_url().to_string(),
            }
            tracing::debug!(attempt, %last, "fragment.com request failed");
        }
        Err(FragmentError::Unavailable(format!(
            "{last} after {} attempts",
            cfg.max_attempts.max(1)
        )))
    }

    /// Takes the cookies a response sets. A new `stel_ssid` replacing ours on a session with
    /// a login or a wallet connection means the site did not recognise the session.
    fn absorb_cookies(&mut self, headers: &HeaderMap) -> Result<(), FragmentError> {
        for raw in headers.get_all(reqwest::header::SET_COOKIE) {
            let Ok(raw) = raw.to_str() else { continue };
            let pair = raw.split(';').next().unwrap_or("");
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            let (name, value) = (name.trim(), value.trim());
            if value.is_empty() || value == "deleted" {
                self.state.cookies.remove(name);
                continue;
            }
            if name == cookies::SSID {
                let replaced = self
                    .state
                    .cookies
                    .get(cookies::SSID)
                    .is_some_and(|old| old != value);
                let logged_in = self.state.cookies.get(cookies::TOKEN).is_some()
                    || self.state.cookies.get(cookies::TON_TOKEN).is_some();
                if replaced && logged_in {
                    return Err(FragmentError::session_rejected(
                        self.role,
                        "fragment.com started a new session instead of resuming this one",
                    ));
                }
            }
            let _ = self
                .state
                .cookies
                .set(name, Zeroizing::new(value.to_string()));
        }
        Ok(())
    }

    /// Loads a page: the API hash, the ton_proof challenge and the TON rate come with it.
    pub async fn load_page(&mut self, path: &str) -> Result<String, FragmentError> {
        if self.state.cookies.get(cookies::DT).is_none() {
            let _ = self
                .state
                .cookies
                .set(cookies::DT, Zeroizing::new("-180".into()));
        }
        let url = self.url(path);
        let cookie = self.cookie_header()?;
        let base = self.url("");
        let resp = self
            .send(|| {
                self.client
                    .http
                    .get(&url)
                    .header(
                        "Accept",
                        "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
                    )
                    .header("Referer", &base)
                    .header(reqwest::header::COOKIE, cookie.clone())
            })
            .await?;
        let status = resp.status();
        self.absorb_cookies(resp.headers())?;
        if status.is_redirection() {
            return Err(FragmentError::BadResponse(format!(
                "page {path} redirected (HTTP {})",
                status.as_u16()
            )));
        }
        if !status.is_success() {
            return Err(FragmentError::Refused(format!(
                "page {path}: HTTP {}",
                status.as_u16()
            )));
        }
        let body = resp
            .text()
            .await
            .map_err(|e| FragmentError::Unavailable(e.without_url().to_string()))?;
        let hash = html::api_hash(&body)
            .ok_or_else(|| FragmentError::BadResponse(format!("no API hash in page {path}")))?;
        self.state.hash = Some(ApiHash {
            value: hash,
            page_url: url,
            fetched: Instant::now(),
        });
        self.state.ton_proof = html::ton_proof(&body);
        if let Some(rate) = html::ton_rate(&body) {
            self.state.ton_rate = Some(rate);
        }
        Ok(body)
    }

    /// Calls an API method of `product`'s page and returns its JSON, reloading the page once
    /// if the hash was refused; all within the configured call budget.
    async fn call(
        &mut self,
        product: Product,
        method: &str,
        fields: &[(&str, String)],
    ) -> Result<Value, FragmentError> {
        let budget = self.client.config.call_budget;
        tokio::time::timeout(budget, self.call_unbounded(product, method, fields))
            .await
            .unwrap_or_else(|_| {
                Err(FragmentError::Unavailable(format!(
                    "{method}: no answer within {budget:?}"
                )))
            })
    }

    async fn call_unbounded(
        &mut self,
        product: Product,
        method: &str,
        fields: &[(&str, String)],
    ) -> Result<Value, FragmentError> {
        let page_url = self.url(product.page());
        for refreshed in [false, true] {
            let fresh = self.state.hash.as_ref().is_some_and(|h| {
                h.page_url == page_url && h.fetched.elapsed() < self.client.config.hash_ttl
            });
            if refreshed || !fresh {
                self.load_page(product.page()).await?;
            }
            let hash = self
                .state
                .hash
                .as_ref()
                .map(|h| h.value.clone())
                .expect("loaded above");
            let value = self.post(&hash, &page_url, method, fields).await?;
            if value.get("error").and_then(Value::as_str) == Some("Bad request") && !refreshed {
                tracing::debug!(
                    method,
                    "fragment.com refused the API hash; reloading the page"
                );
                continue;
            }
            return Ok(value);
        }
        unreachable!("the loop returns on its second pass")
    }

    async fn post(
        &mut self,
        hash: &str,
        page_url: &str,
        method: &str,
        fields: &[(&str, String)],
    ) -> Result<Value, FragmentError> {
        let url = self.url("/api");
        let cookie = self.cookie_header()?;
        let origin = self.url("");
        let mut form: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        form.push(("method", method));
        let resp = self
            .send(|| {
                self.client
                    .http
                    .post(&url)
                    .query(&[("hash", hash)])
                    .header("X-Requested-With", "XMLHttpRequest")
                    .header("Accept", "application/json, text/javascript, */*; q=0.01")
                    .header("Origin", &origin)
                    .header("Referer", page_url)
                    .header("X-Aj-Referer", page_url)
                    .header(reqwest::header::COOKIE, cookie.clone())
                    .form(&form)
            })
            .await?;
        self.absorb_cookies(resp.headers())?;
        let status = resp.status();
        let body = resp
            .text()
            .await
            .map_err(|e| FragmentError::Unavailable(e.without_url().to_string()))?;
        if !status.is_success() {
            return Err(FragmentError::Refused(format!(
                "{method}: HTTP {}",
                status.as_u16()
            )));
        }
        serde_json::from_str(&body).map_err(|_| {
            FragmentError::BadResponse(format!("{method} answered something that is not JSON"))
        })
    }

    fn check(&self, v: Value, username: Option<&Username>) -> Result<Value, FragmentError> {
        classify(self.role, v, username)
    }

    /// Connects a wallet to the session with a signed ton_proof (`checkTonProofAuth`), as a
    /// wallet app would; Fragment then sets `stel_ton_token`.
    pub async fn connect_wallet(
        &mut self,
        wallet: &WalletContract,
        key: &KeyPair,
    ) -> Result<(), FragmentError> {
        // The challenge is single-use: take a fresh one.
        self.load_page(Product::Stars.page()).await?;
        let challenge =
            self.state.ton_proof.clone().ok_or_else(|| {
                FragmentError::BadResponse("no ton_proof challenge in page".into())
            })?;
        let proof = proof::sign(key, wallet.address(), unix_now(), &challenge);
        let fields = [
            ("account", ton_connect_account(wallet)),
            ("device", ton_connect_device(wallet.version())),
            ("proof", proof.to_string()),
        ];
        let v = self
            .call(Product::Stars, "checkTonProofAuth", &fields)
            .await?;
        let v = self.check(v, None)?;
        if v.get("verified").and_then(Value::as_bool) != Some(true) {
            return Err(FragmentError::Refused(
                "the wallet's ton_proof was not accepted".into(),
            ));
        }
        Ok(())
    }

    /// Resets the session's purchase state, as the site's page does before a purchase.
    pub async fn reset(&mut self, product: Product) -> Result<StateReply, FragmentError> {
        self.state_call(product, "new", None).await
    }

    /// Finds a recipient. For Premium this is also the eligibility check: Fragment refuses
    /// users who already have it.
    pub async fn search_recipient(
        &mut self,
        username: &Username,
        purchase: Purchase,
    ) -> Result<Recipient, FragmentError> {
        let product = purchase.product();
        let mut fields = vec![("query", username.as_str().to_string())];
        match purchase {
            Purchase::Stars(_) => fields.push(("quantity", String::new())),
            Purchase::Premium(m) => fields.push(("months", m.get().to_string())),
        }
        let v = self.call(product, product.search_method(), &fields).await?;
        let v = self.check(v, Some(username))?;
        let found = v
            .get("found")
            .filter(|f| f.is_object())
            .ok_or_else(|| FragmentError::BadResponse("search answer without `found`".into()))?;
        let token = found
            .get("recipient")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| FragmentError::BadResponse("search answer without recipient".into()))?;
        Ok(Recipient {
            username: username.clone(),
            token: token.to_string(),
            name: found
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        })
    }

    /// Whether `username` can be gifted Premium: Ok, or why not (`PremiumAlreadyActive`,
    /// `UserNotFound`, `NotAUser`, ...). Fragment's recipient search is the check.
    pub async fn premium_eligibility(
        &mut self,
        username: &Username,
        months: PremiumMonths,
    ) -> Result<(), FragmentError> {
        self.search_recipient(username, Purchase::Premium(months))
            .await
            .map(|_| ())
    }

    /// Creates the purchase request; Fragment quotes its price.
    pub async fn init_purchase(
        &mut self,
        recipient: &Recipient,
        purchase: Purchase,
    ) -> Result<Invoice, FragmentError> {
        let (req_id, amount) = self.init_request(recipient, purchase, "ton").await?;
        let amount = match &amount {
            Value::String(s) => html::parse_ton(s),
            Value::Number(n) => html::parse_ton(&n.to_string()),
            _ => None,
        }
        .ok_or_else(|| FragmentError::BadResponse("init answer without a TON amount".into()))?;
        Ok(Invoice {
            purchase,
            req_id,
            amount,
        })
    }

    /// Creates a purchase request paid in USDT on TON (`payment_method=usdt_ton`);
    /// Fragment quotes its price in USDT.
    pub async fn init_usdt_purchase(
        &mut self,
        recipient: &Recipient,
        purchase: Purchase,
    ) -> Result<UsdtInvoice, FragmentError> {
        let (req_id, amount) = self.init_request(recipient, purchase, "usdt_ton").await?;
        let amount = match &amount {
            Value::String(s) => Some(s.replace(',', "")),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
        .and_then(|a| JettonAmount::parse_decimal(&a, USDT_DECIMALS))
        .ok_or_else(|| FragmentError::BadResponse("init answer without a USDT amount".into()))?;
        Ok(UsdtInvoice {
            purchase,
            req_id,
            amount,
        })
    }

    /// `init…Request` paid by `payment_method`: the request id and the quoted amount as
    /// Fragment wrote it.
    async fn init_request(
        &mut self,
        recipient: &Recipient,
        purchase: Purchase,
        payment_method: &str,
    ) -> Result<(String, Value), FragmentError> {
        let product = purchase.product();
        let mut fields = vec![("recipient", recipient.token.clone())];
        match purchase {
            Purchase::Stars(n) => fields.push(("quantity", n.get().to_string())),
            Purchase::Premium(m) => fields.push(("months", m.get().to_string())),
        }
        fields.push(("payment_method", payment_method.to_string()));
        let v = self.call(product, product.init_method(), &fields).await?;
        let mut v = self.check(v, Some(&recipient.username))?;
        let req_id = v
            .get("req_id")
            .and_then(Value::as_str)
            .filter(|r| !r.is_empty())
            .ok_or_else(|| FragmentError::BadResponse("init answer without req_id".into()))?
            .to_string();
        Ok((
            req_id,
            v.get_mut("amount").map(Value::take).unwrap_or_default(),
        ))
    }

    /// Asks for the TON Connect transaction that pays `invoice` from `payer`.
    pub async fn payment_link(
        &mut self,
        invoice: &Invoice,
        payer: &WalletContract,
        show_sender: bool,
    ) -> Result<PaymentLink, FragmentError> {
        self.payment_link_for(&invoice.req_id, invoice.purchase, payer, show_sender)
            .await
    }

    /// Asks for the TON Connect transaction that pays the request `req_id` (of either
    /// currency) from `payer`.
    pub async fn payment_link_for(
        &mut self,
        req_id: &str,
        purchase: Purchase,
        payer: &WalletContract,
        show_sender: bool,
    ) -> Result<PaymentLink, FragmentError> {
        let product = purchase.product();
        let fields = [
            ("id", req_id.to_string()),
            (
                "show_sender",
                if show_sender { "1" } else { "0" }.to_string(),
            ),
            ("transaction", "1".to_string()),
            ("account", ton_connect_account(payer)),
            ("device", ton_connect_device(payer.version())),
        ];
        let v = self.call(product, product.link_method(), &fields).await?;
        let v = self.check(v, None)?;
        PaymentLink::from_response(&v)
    }

    /// Tells Fragment the payment was broadcast, with the signed external message. A refusal
    /// here is not a failed payment (the transfer is on chain): follow up with
    /// `wait_until_done`.
    pub async fn confirm(
        &mut self,
        product: Product,
        link: &PaymentLink,
        payer: &WalletContract,
        boc: &str,
    ) -> Result<(), FragmentError> {
        let mut fields: Vec<(&str, String)> = link
            .confirm_params
            .iter()
            .map(|(k, v)| {
                let v = v
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string());
                (k.as_str(), v)
            })
            .collect();
        fields.push(("account", ton_connect_account(payer)));
        fields.push(("device", ton_connect_device(payer.version())));
        fields.push(("boc", boc.to_string()));
        let method = link.confirm_method.clone();
        let v = self.call(product, &method, &fields).await?;
        self.check(v, None).map(|_| ())
    }

    async fn state_call(
        &mut self,
        product: Product,
        mode: &str,
        req_id: Option<&str>,
    ) -> Result<StateReply, FragmentError> {
        let mut fields = vec![
            ("mode", mode.to_string()),
            ("lv", "false".to_string()),
            (
                "dh",
                rand::thread_rng()
                    .gen_range(100_000_000u64..10_000_000_000)
                    .to_string(),
            ),
        ];
        if let Some(id) = req_id {
            fields.push(("id", id.to_string()));
        }
        let v = self.call(product, product.state_method(), &fields).await?;
        let v = self.check(v, None)?;
        Ok(StateReply {
            mode: v
                .get("mode")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            need_update: v
                .get("need_update")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            req_id: v
                .get("req_id")
                .or_else(|| v.get("id"))
                .and_then(Value::as_str)
                .map(str::to_string),
        })
    }

    /// Polls the purchase state until Fragment reports this request done (mode `done`, no
    /// update pending, our req_id echoed: the strict reading, FRAGMENT_PROTOCOL.md §5), or
    /// until `timeout` has passed.
    ///
    /// This runs after the payment is on chain, so nothing it meets makes the purchase
    /// "failed": errors are retried until the deadline and then reported as `Unknown`, for
    /// the caller to follow up, never as a refusal.
    pub async fn wait_until_done(
        &mut self,
        invoice: &Invoice,
        timeout: Duration,
        interval: Duration,
    ) -> Fulfilment {
        let product = invoice.purchase.product();
        let deadline = Instant::now() + timeout;
        let mut mode = "new".to_string();
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let last_error = match tokio::time::timeout(
                remaining,
                self.state_call(product, &mode, Some(&invoice.req_id)),
            )
            .await
            {
                Ok(Ok(reply)) => {
                    if reply.mode == "done"
                        && !reply.need_update
                        && reply.req_id.as_deref() == Some(invoice.req_id.as_str())
                    {
                        return Fulfilment::Done;
                    }
                    if !reply.mode.is_empty() {
                        mode = reply.mode;
                    }
                    None
                }
                Ok(Err(e)) => {
                    tracing::warn!(req_id = invoice.req_id, error = %e, "Fragment state poll failed");
                    Some(e)
                }
                Err(_) => Some(FragmentError::Unavailable(
                    "no answer to the state poll before the deadline".into(),
                )),
            };
            if Instant::now() + interval >= deadline {
                return match last_error {
                    Some(e) => Fulfilment::Unknown(e),
                    None => Fulfilment::NotYet,
                };
            }
            tokio::time::sleep(interval).await;
        }
    }

    /// Fragment's price for `amount` Stars (`updateStarsPrices`).
    pub async fn stars_price(&mut self, amount: StarsAmount) -> Result<Price, FragmentError> {
        let fields = [
            ("stars", "0".to_string()),
            ("quantity", amount.get().to_string()),
        ];
        let v = self
            .call(Product::Stars, "updateStarsPrices", &fields)
            .await?;
        let v = self.check(v, None)?;
        v.get("cur_price")
            .and_then(Value::as_str)
            .and_then(html::price)
            .ok_or_else(|| FragmentError::BadResponse("updateStarsPrices without a price".into()))
    }

    /// The Premium price table from the gift page.
    pub async fn premium_prices(&mut self) -> Result<Vec<(PremiumMonths, Price)>, FragmentError> {
        let page = self.load_page(Product::Premium.page()).await?;
        let prices: Vec<_> = html::options(&page, "months")
            .into_iter()
            .filter_map(|(m, p)| PremiumMonths::new(u64::from(m)).ok().map(|m| (m, p)))
            .collect();
        if prices.is_empty() {
            return Err(FragmentError::BadResponse(
                "no Premium prices on the gift page".into(),
            ));
        }
        Ok(prices)
    }

    /// The Stars packages from the buy page.
    pub async fn stars_packages(&mut self) -> Result<Vec<(u32, Price)>, FragmentError> {
        let page = self.load_page(Product::Stars.page()).await?;
        let packages = html::options(&page, "stars");
        if packages.is_empty() {
            return Err(FragmentError::BadResponse(
                "no Stars packages on the buy page".into(),
            ));
        }
        Ok(packages)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn codes(role: SessionRole, v: Value) -> (&'static str, u16) {
        let alice = Username::parse("@alice").unwrap();
        classify(role, v, Some(&alice)).unwrap_err().api_code()
    }

    #[test]
    fn every_refusal_has_its_code() {
        use SessionRole::{Client, Owner};
        let e = |t: &str| json!({ "error": t });
        assert_eq!(
            codes(Client, e("No Telegram users found.")),
            ("USER_NOT_FOUND", 404)
        );
        assert_eq!(
            codes(Client, e("Please enter a username assigned to a user.")),
            ("USER_NOT_FOUND", 404)
        );
        assert_eq!(
            codes(
                Owner,
                e("This account is already subscribed to Telegram Premium.")
            ),
            ("PREMIUM_ALREADY_ACTIVE", 400)
        );
        for t in [
            "Session expired. Please reconnect your wallet",
            "Unauthorized",
        ] {
            assert_eq!(codes(Client, e(t)), ("INVALID_COOKIES", 400), "{t}");
            assert_eq!(codes(Owner, e(t)), ("OWNER_COOKIES_EXPIRED", 500), "{t}");
        }
        let kyc = json!({"need_verify": true, "error": "Unknown error"});
        assert_eq!(codes(Client, kyc.clone()), ("FRAGMENT_ERROR", 502));
        assert_eq!(codes(Owner, kyc), ("OWNER_COOKIES_EXPIRED", 500));
        assert_eq!(
            codes(Client, json!({"need_ton": true})),
            ("FRAGMENT_ERROR", 502)
        );
        assert_eq!(
            codes(Client, e("Price was changed")),
            ("FRAGMENT_ERROR", 502)
        );
        assert_eq!(codes(Client, e("Access denied")), ("FRAGMENT_ERROR", 502));
        let alice = Username::parse("@alice").unwrap();
        let err = classify(Client, e("No Telegram users found."), Some(&alice)).unwrap_err();
        assert!(err.to_string().contains("@alice"), "{err}");
        let ok = json!({"ok": true, "found": {}});
        assert_eq!(classify(Client, ok.clone(), None), Ok(ok));
    }
}
