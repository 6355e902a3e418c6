//! The simulated fragment.com: sessions, logins and wallet connections, recipients, purchase
//! requests and their invoices, and deliveries. Pure state machine: the HTTP layer passes
//! requests and the clock in; the payment watcher passes the payments it sees on chain.
//!
//! What it enforces (FRAGMENT_PROTOCOL.md §8): an API hash issued to this very session and
//! not expired; form encoding and a `method`; the login (`stel_token`, and a verified
//! account) for payment links; a connected wallet (`stel_ton_token`) for purchases; a
//! single-use, fresh, correctly signed ton_proof; recipient tokens and request ids that belong
//! to the session and the product; quantities and months in range; an `account` whose
//! StateInit and key match its address; a `boc` that is an external message from the payer.

use std::collections::{HashMap, HashSet};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tonlib_core::cell::ArcCell;
use tonlib_core::tlb_types::block::state_init::StateInit;
use tonlib_core::tlb_types::tlb::TLB;
use tonlib_core::{TonAddress, TonHash};

use super::payload;
use crate::fragment::client::Product;
use crate::fragment::cookies;
use crate::fragment::proof;
use crate::sim::ton::ledger::ExternalMessage;
use crate::ton::address::{self, parse_address};
use crate::ton::jetton::{ForwardPayload, JettonAmount, JettonTransfer};
use crate::ton::transfer::decode_boc;
use crate::ton::{Nanoton, Network, PublicKey, WalletVersion};

/// A Telegram account the simulator knows as a recipient.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureUser {
    pub username: String,
    pub name: String,
    #[serde(default)]
    pub kind: UserKind,
    /// Already has Premium.
    #[serde(default)]
    pub premium: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserKind {
    #[default]
    User,
    Bot,
    Channel,
}

/// A fragment.com login (a Telegram account buying on Fragment).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureAccount {
    pub name: String,
    /// Passed Fragment's identity verification: may get payment links.
    #[serde(default = "yes")]
    pub verified: bool,
}

fn yes() -> bool {
    true
}

/// A session that exists from the start, with fixed cookie values (e.g. the operator's
/// session in sandbox mode).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresetSession {
    pub account: String,
    pub stel_ssid: String,
    pub stel_token: String,
    /// With `wallet`: a wallet already connected to the session.
    pub stel_ton_token: Option<String>,
    pub wallet: Option<String>,
}

/// Prices in nanoton.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Prices {
    pub star: u64,
    pub premium_3: u64,
    pub premium_6: u64,
    pub premium_12: u64,
    /// USD per TON, for the USD figures on the pages.
    pub ton_usd: Decimal,
}

impl Default for Prices {
    fn default() -> Self {
        // About $0.015 a Star and $11.99 / $15.99 / $28.99 of Premium at $3.00 a TON.
        Prices {
            star: 5_000_000,
            premium_3: 3_996_000_000,
            premium_6: 5_329_000_000,
            premium_12: 9_663_000_000,
            ton_usd: Decimal::new(300, 2),
        }
    }
}

impl Prices {
    pub fn stars(&self, quantity: u32) -> u64 {
        self.star.saturating_mul(u64::from(quantity))
    }

    pub fn premium(&self, months: u8) -> Option<u64> {
        match months {
            3 => Some(self.premium_3),
            6 => Some(self.premium_6),
            12 => Some(self.premium_12),
            _ => None,
        }
    }
}

/// The simulator's rules that the real site's sources leave open (FRAGMENT_PROTOCOL.md),
/// as switches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Rules {
    /// Seconds an invoice stays payable after its link was issued.
    pub invoice_ttl_secs: u64,
    /// Seconds an API hash stays valid.
    pub hash_ttl_secs: u64,
    /// Fulfil only after `confirmReq` (afragment and fragment_sdk never call it).
    pub require_confirm: bool,
    /// The paying `account` must be the wallet connected to the session.
    pub payer_must_be_connected_wallet: bool,
    /// Require `X-Requested-With` and a matching `Origin`/`Referer` on API calls.
    pub strict_headers: bool,
    /// Milliseconds between a payment being seen and the purchase being delivered.
    pub processing_ms: u64,
    /// How the payment-link methods answer: honestly, or as a hostile or changed site might
    /// (`FragmentSim::set_link_answer` switches it at runtime).
    pub link_answer: LinkAnswer,
    /// The state methods with an `id` answer on any session logged into the account that
    /// created the request, not only on that session. Off: only that session, as the sources
    /// suggest (FRAGMENT_PROTOCOL.md binds requests to the session).
    pub poll_from_any_session_of_account: bool,
}

/// How `getBuyStarsLink` / `getGiftPremiumLink` answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkAnswer {
    /// The link of the request asked for, with its id in `confirm_params`.
    #[default]
    Honest,
    /// As honest, but `confirm_params` lacks the `id`: a client cannot tell which request
    /// the invoice is for.
    OmitConfirmId,
    /// The link of the session's latest request of the product instead of the one asked for,
    /// with that request's id in `confirm_params` (and that request is the one linked to the
    /// payer): a client that trusts the answer signs another order's invoice. When the
    /// request asked for is the latest, the answer is honest.
    LatestRequest,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            invoice_ttl_secs: 600,
            hash_ttl_secs: 3600,
            require_confirm: false,
            payer_must_be_connected_wallet: false,
            strict_headers: false,
            processing_ms: 500,
            link_answer: LinkAnswer::Honest,
            poll_from_any_session_of_account: false,
        }
    }
}

/// The fixture users every simulator has unless configured otherwise.
pub fn default_users() -> Vec<FixtureUser> {
    let user = |u: &str, n: &str, kind, premium| FixtureUser {
        username: u.into(),
        name: n.into(),
        kind,
        premium,
    };
    vec![
        user("alice", "Alice", UserKind::User, false),
        user("bob", "Bob", UserKind::User, false),
        user("premium_pete", "Pete", UserKind::User, true),
        user("stars_shop_bot", "Stars Shop", UserKind::Bot, false),
    ]
}

/// The logins every simulator has unless configured otherwise.
pub fn default_accounts() -> Vec<FixtureAccount> {
    vec![
        FixtureAccount {
            name: "owner".into(),
            verified: true,
        },
        FixtureAccount {
            name: "client".into(),
            verified: true,
        },
        FixtureAccount {
            name: "unverified".into(),
            verified: false,
        },
    ]
}

#[derive(Clone, Debug)]
struct Session {
    account: Option<String>,
    token: Option<String>,
    ton_token: Option<String>,
    wallet: Option<TonAddress>,
    /// Issued API hashes and when they expire (ms).
    hashes: Vec<(String, u64)>,
    /// Outstanding ton_proof challenges, newest last; each is single-use. Several stay valid
    /// because clients load more than one page before proving (FragmentAPI takes the
    /// challenge from one GET of `/` and the hash from the next).
    challenges: Vec<String>,
    /// Recipient token → (username key, product).
    recipients: HashMap<String, (String, Product)>,
    /// The latest request per product (what the state methods report).
    latest: HashMap<Product, String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InvoiceStatus {
    /// Created by init; no link yet.
    Created,
    /// Link issued: payable until `valid_until`.
    Linked,
    /// Paid on chain; being delivered.
    Processing,
    Done,
    /// `validUntil` passed unpaid.
    Expired,
}

#[derive(Clone, Debug)]
struct Invoice {
    ssid: String,
    /// The login of the session that created it, if any.
    account: Option<String>,
    product: Product,
    username: String,
    quantity: u32,
    amount: u64,
    /// A USDT invoice (`payment_method=usdt_ton`): its amount in USDT units, paid by a jetton
    /// transfer whose forward payload is `payload`. `None`: a TON invoice of `amount`.
    usdt: Option<JettonAmount>,
    payload: ArcCell,
    payload_b64: String,
    payer: Option<TonAddress>,
    valid_until: Option<u64>,
    confirmed: bool,
    status: InvoiceStatus,
    paid_at_ms: Option<u64>,
    tx_hash: Option<TonHash>,
}

/// A completed purchase, for tests and the `/sim/deliveries` endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Delivery {
    pub req_id: String,
    pub product: Product,
    pub username: String,
    /// Stars, or months of Premium.
    pub quantity: u32,
    pub amount_nanoton: String,
    pub tx_hash: String,
}

/// A USDT payment the watcher saw arrive at the payment address: a `transfer_notification`
/// from the payment address's own USDT jetton wallet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncomingUsdt {
    pub tx_hash: TonHash,
    /// Who sent the jettons (the notification's sender).
    pub sender: TonAddress,
    pub amount: JettonAmount,
    /// Hash of the forward payload cell.
    pub payload_hash: TonHash,
    pub utime: u64,
}

/// TON a USDT invoice's message carries to pay for the jetton transfer (fragment_api_lib
/// allows at most 0.3).
pub const USDT_GAS_NANOTON: u64 = 50_000_000;
/// TON forwarded to Fragment with the USDT, for the notification it recognises a payment by.
pub const USDT_FORWARD_NANOTON: u64 = 1;

/// USDT units (10⁻⁶) for a TON price at `ton_usd`, rounded half up.
pub fn usdt_units(nanoton: u64, ton_usd: Decimal) -> JettonAmount {
    let units = (Decimal::from(nanoton) * ton_usd / Decimal::from(1000u64))
        .round_dp_with_strategy(0, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
    JettonAmount(units.try_into().unwrap_or(u64::MAX))
}

/// A payment the watcher saw arrive at the payment address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncomingPayment {
    pub tx_hash: TonHash,
    pub source: TonAddress,
    pub value: Nanoton,
    pub body_hash: TonHash,
    /// Chain time of the transaction.
    pub utime: u64,
}

/// An API request as the HTTP layer hands it over.
#[derive(Debug, Default)]
pub struct ApiRequest {
    pub cookies: HashMap<String, String>,
    pub hash: Option<String>,
    pub form: Option<HashMap<String, String>>,
    /// `X-Requested-With` and `Origin`/`Referer` as a browser sends them.
    pub browser_headers: bool,
}

/// What the HTTP layer sends back: JSON and cookies to set.
#[derive(Debug, Default)]
pub struct Reply {
    pub body: String,
    pub set_cookies: Vec<(String, String)>,
    /// The request an init created.
    pub initiated: Option<String>,
}

pub struct FragmentState {
    network: Network,
    users: HashMap<String, FixtureUser>,
    accounts: HashMap<String, FixtureAccount>,
    prices: Prices,
    rules: Rules,
    payment_address: TonAddress,
    sessions: HashMap<String, Session>,
    invoices: HashMap<String, Invoice>,
    deliveries: Vec<Delivery>,
    seen_payments: HashSet<TonHash>,
    /// Payments that matched no invoice (yet).
    unmatched: Vec<IncomingPayment>,
    price_changes: u32,
    rng: StdRng,
}

fn err(text: &str) -> Value {
    json!({ "error": text })
}

impl FragmentState {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        network: Network,
        users: Vec<FixtureUser>,
        accounts: Vec<FixtureAccount>,
        presets: Vec<PresetSession>,
        prices: Prices,
        rules: Rules,
        payment_address: TonAddress,
        seed: u64,
    ) -> Result<FragmentState, String> {
        let mut state = FragmentState {
            network,
            users: users
                .into_iter()
                .map(|u| (u.username.to_ascii_lowercase(), u))
                .collect(),
            accounts: accounts.into_iter().map(|a| (a.name.clone(), a)).collect(),
            prices,
            rules,
            payment_address,
            sessions: HashMap::new(),
            invoices: HashMap::new(),
            deliveries: Vec::new(),
            seen_payments: HashSet::new(),
            unmatched: Vec::new(),
            price_changes: 0,
            rng: StdRng::seed_from_u64(seed),
        };
        for p in presets {
            if !state.accounts.contains_key(&p.account) {
                return Err(format!(
                    "preset session for unknown account {:?}",
                    p.account
                ));
            }
            let wallet = match &p.wallet {
                Some(w) => Some(parse_address(w).map_err(|e| format!("preset wallet: {e}"))?),
                None => None,
            };
            if wallet.is_some() != p.stel_ton_token.is_some() {
                return Err(
                    "a preset session needs both stel_ton_token and wallet, or neither".into(),
                );
            }
            state.sessions.insert(
                p.stel_ssid.clone(),
                Session {
                    account: Some(p.account),
                    token: Some(p.stel_token),
                    ton_token: p.stel_ton_token,
                    wallet,
                    hashes: vec![],
                    challenges: vec![],
                    recipients: HashMap::new(),
                    latest: HashMap::new(),
                },
            );
        }
        Ok(state)
    }

    pub fn payment_address(&self) -> &TonAddress {
        &self.payment_address
    }

    pub fn prices(&self) -> &Prices {
        &self.prices
    }

    pub fn deliveries(&self) -> &[Delivery] {
        &self.deliveries
    }

    /// The next `n` purchase inits answer "Price was changed".
    pub fn change_price_next(&mut self, n: u32) {
        self.price_changes = n;
    }

    pub fn set_link_answer(&mut self, answer: LinkAnswer) {
        self.rules.link_answer = answer;
    }

    fn random_hex(&mut self, bytes: usize) -> String {
        let v: Vec<u8> = (0..bytes).map(|_| self.rng.gen()).collect();
        hex::encode(v)
    }

    fn random_alnum(&mut self, n: usize) -> String {
        const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        (0..n)
            .map(|_| CHARS[self.rng.gen_range(0..CHARS.len())] as char)
            .collect()
    }

    fn new_session(&mut self) -> String {
        let ssid = format!(
            "{}_{}",
            self.random_hex(9),
            self.rng
                .gen_range(1_000_000_000_000_000_000u64..10_000_000_000_000_000_000)
        );
        self.sessions.insert(
            ssid.clone(),
            Session {
                account: None,
                token: None,
                ton_token: None,
                wallet: None,
                hashes: vec![],
                challenges: vec![],
                recipients: HashMap::new(),
                latest: HashMap::new(),
            },
        );
        ssid
    }

    /// Logs `account` in on a new session (and connects `wallet` if given), as a person
    /// would on fragment.com; returns the cookies a browser would then hold.
    pub fn login(
        &mut self,
        account: &str,
        wallet: Option<&TonAddress>,
    ) -> Result<Vec<(String, String)>, String> {
        if !self.accounts.contains_key(account) {
            return Err(format!("unknown account {account:?}"));
        }
        let ssid = self.new_session();
        let token = self.random_hex(24);
        let ton_token = wallet.map(|_| self.random_hex(24));
        let s = self.sessions.get_mut(&ssid).expect("just created");
        s.account = Some(account.to_string());
        s.token = Some(token.clone());
        s.ton_token = ton_token.clone();
        s.wallet = wallet.cloned();
        let mut cookies = vec![
            (cookies::SSID.to_string(), ssid),
            (cookies::DT.to_string(), "-180".to_string()),
            (cookies::TOKEN.to_string(), token),
        ];
        if let Some(t) = ton_token {
            cookies.push((cookies::TON_TOKEN.to_string(), t));
        }
        Ok(cookies)
    }

    /// Ends a session, as when a login expires.
    pub fn expire_session(&mut self, ssid: &str) -> bool {
        self.sessions.remove(ssid).is_some()
    }

    /// Whether the cookies resume session `ssid`: it exists, and a login cookie presented with
    /// it is that session's. A login that is not the session's (expired, from elsewhere)
    /// makes the site start over with a new anonymous session, as for an unknown session.
    fn recognises(&self, ssid: &str, cookies: &HashMap<String, String>) -> bool {
        self.sessions.get(ssid).is_some_and(|s| {
            cookies
                .get(cookies::TOKEN)
                .is_none_or(|t| s.token.as_ref() == Some(t))
        })
    }

    /// A page GET: resumes the session of `stel_ssid` or starts a new one, issues a fresh
    /// API hash and ton_proof challenge, and renders the page.
    pub fn page(
        &mut self,
        cookies: &HashMap<String, String>,
        path: &str,
        now_ms: u64,
    ) -> (String, Vec<(String, String)>) {
        let mut set = vec![];
        let ssid = match cookies.get(cookies::SSID) {
            Some(s) if self.recognises(s, cookies) => s.clone(),
            _ => {
                let s = self.new_session();
                set.push((cookies::SSID.to_string(), s.clone()));
                s
            }
        };
        if !cookies.contains_key(cookies::DT) {
            set.push((cookies::DT.to_string(), "-180".to_string()));
        }
        let hash = self.random_hex(9);
        let challenge = self.random_hex(32);
        let ttl = self.rules.hash_ttl_secs * 1000;
        let wallet_shown = {
            let s = self.sessions.get_mut(&ssid).expect("resumed or created");
            s.hashes.retain(|(_, exp)| *exp > now_ms);
            s.hashes.push((hash.clone(), now_ms + ttl));
            if s.hashes.len() > 16 {
                s.hashes.remove(0);
            }
            s.challenges.push(challenge.clone());
            if s.challenges.len() > 8 {
                s.challenges.remove(0);
            }
            let connected =
                s.ton_token.is_some() && cookies.get(cookies::TON_TOKEN) == s.ton_token.as_ref();
            s.wallet.as_ref().filter(|_| connected).map(address::raw)
        };
        let html = super::pages::render(
            path,
            &hash,
            &challenge,
            wallet_shown.as_deref(),
            &self.prices,
        );
        (html, set)
    }

    /// One `/api` call.
    pub fn api(&mut self, req: ApiRequest, now_ms: u64) -> Reply {
        let mut reply = Reply::default();
        let value = self.dispatch(&req, now_ms, &mut reply.set_cookies);
        let method = req.form.as_ref().and_then(|f| f.get("method"));
        if method.is_some_and(|m| super::concurrency::is_init(m)) {
            reply.initiated = value
                .get("req_id")
                .and_then(Value::as_str)
                .map(str::to_string);
        }
        reply.body = value.to_string();
        reply
    }

    /// Marks linked invoices whose `validUntil` has passed as expired.
    fn expire_due(&mut self, now: u64) {
        for i in self.invoices.values_mut() {
            if i.status == InvoiceStatus::Linked && i.valid_until.is_some_and(|v| v <= now) {
                i.status = InvoiceStatus::Expired;
            }
        }
    }

    fn dispatch(
        &mut self,
        req: &ApiRequest,
        now_ms: u64,
        set: &mut Vec<(String, String)>,
    ) -> Value {
        self.expire_due(now_ms / 1000);
        // The hash must have been issued to this very session and still be valid.
        let Some(ssid) = req
            .cookies
            .get(cookies::SSID)
            .filter(|s| self.recognises(s, &req.cookies))
            .cloned()
        else {
            return err("Bad request");
        };
        let hash_ok = req.hash.as_ref().is_some_and(|h| {
            self.sessions[&ssid]
                .hashes
                .iter()
                .any(|(issued, exp)| issued == h && *exp > now_ms)
        });
        if !hash_ok {
            return err("Bad request");
        }
        if self.rules.strict_headers && !req.browser_headers {
            return err("Bad request");
        }
        let Some(form) = &req.form else {
            return err("Bad request");
        };
        let Some(method) = form.get("method") else {
            return err("Invalid method");
        };
        let f = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
        let logged_in = {
            let s = &self.sessions[&ssid];
            s.token.is_some() && req.cookies.get(cookies::TOKEN) == s.token.as_ref()
        };
        let wallet_connected = {
            let s = &self.sessions[&ssid];
            s.ton_token.is_some() && req.cookies.get(cookies::TON_TOKEN) == s.ton_token.as_ref()
        };
        let now = now_ms / 1000;
        match method.as_str() {
            "checkTonProofAuth" => self.check_ton_proof(&ssid, f("account"), f("proof"), now, set),
            "searchStarsRecipient" => self.search(&ssid, Product::Stars, f("query"), None),
            "searchPremiumGiftRecipient" => {
                self.search(&ssid, Product::Premium, f("query"), Some(f("months")))
            }
            "updateStarsBuyState" => self.state_reply(&ssid, Product::Stars, form.get("id")),
            "updatePremiumState" => self.state_reply(&ssid, Product::Premium, form.get("id")),
            "updateStarsPrices" => match parse_quantity(f("quantity")) {
                Ok(q) => json!({
                    "ok": true,
                    "cur_price": super::pages::price_html(self.prices.stars(q), &self.prices),
                }),
                Err(e) => e,
            },
            "initBuyStarsRequest" | "initGiftPremiumRequest" => {
                if !wallet_connected {
                    return json!({"need_ton": true});
                }
                let product = if method == "initBuyStarsRequest" {
                    Product::Stars
                } else {
                    Product::Premium
                };
                self.init(&ssid, product, form)
            }
            "getBuyStarsLink" | "getGiftPremiumLink" => {
                let verified = logged_in
                    && self.sessions[&ssid]
                        .account
                        .as_ref()
                        .and_then(|a| self.accounts.get(a))
                        .is_some_and(|a| a.verified);
                if !verified {
                    return json!({"need_verify": true, "error": "Unknown error"});
                }
                let product = if method == "getBuyStarsLink" {
                    Product::Stars
                } else {
                    Product::Premium
                };
                self.link(&ssid, product, form, wallet_connected, now)
            }
            "confirmReq" => self.confirm(&ssid, form),
            _ => err("Invalid method"),
        }
    }

    fn check_ton_proof(
        &mut self,
        ssid: &str,
        account: &str,
        proof_json: &str,
        now: u64,
        set: &mut Vec<(String, String)>,
    ) -> Value {
        let Ok(account) = TonConnectAccount::parse(account, self.network) else {
            return err("Invalid account");
        };
        let Ok(proof_value) = serde_json::from_str::<Value>(proof_json) else {
            return err("Invalid proof");
        };
        // The proof must answer one of this session's outstanding challenges, which it then
        // spends, whatever the outcome.
        let payload = proof_value
            .get("payload")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let session = self.sessions.get_mut(ssid).expect("checked");
        let Some(at) = session.challenges.iter().position(|c| *c == payload) else {
            return err("Invalid proof");
        };
        let challenge = session.challenges.remove(at);
        let timestamp = match proof::verify(
            &proof_value,
            &account.public_key,
            &account.address,
            &challenge,
        ) {
            Ok(t) => t,
            Err(_) => return err("Invalid proof"),
        };
        if timestamp.abs_diff(now) > 900 {
            return err("Proof expired");
        }
        let token = self.random_hex(24);
        let s = self.sessions.get_mut(ssid).expect("checked");
        s.ton_token = Some(token.clone());
        s.wallet = Some(account.address);
        set.push((cookies::TON_TOKEN.to_string(), token));
        json!({"verified": true})
    }

    fn search(&mut self, ssid: &str, product: Product, query: &str, months: Option<&str>) -> Value {
        if let Some(m) = months {
            if !m.is_empty() && !matches!(m, "3" | "6" | "12") {
                return err("Invalid duration");
            }
        }
        let key = query
            .trim()
            .trim_start_matches('@')
            .trim_start_matches("https://t.me/")
            .to_ascii_lowercase();
        let Some(user) = self.users.get(&key).cloned() else {
            return err("No Telegram users found.");
        };
        if user.kind != UserKind::User {
            return err("Please enter a username assigned to a user.");
        }
        if product == Product::Premium && user.premium {
            return err("This account is already subscribed to Telegram Premium.");
        }
        let token = self.random_alnum(32);
        self.sessions
            .get_mut(ssid)
            .expect("checked")
            .recipients
            .insert(token.clone(), (key, product));
        json!({
            "ok": true,
            "found": {
                "recipient": token,
                "name": user.name,
                "photo": "<img src=\"https://cdn4.telesco.pe/file/sim.jpg\">",
                "myself": false,
            }
        })
    }

    fn init(&mut self, ssid: &str, product: Product, form: &HashMap<String, String>) -> Value {
        let f = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
        let Some((username, recipient_product)) =
            self.sessions[ssid].recipients.get(f("recipient")).cloned()
        else {
            return err("Recipient not found. Please search again.");
        };
        if recipient_product != product {
            return err("Recipient not found. Please search again.");
        }
        let usdt = match f("payment_method") {
            "" | "ton" => false,
            "usdt_ton" => true,
            _ => return err("This payment method is not available."),
        };
        let (quantity, amount) = match product {
            Product::Stars => match parse_quantity(f("quantity")) {
                Ok(q) => (q, self.prices.stars(q)),
                Err(e) => return e,
            },
            Product::Premium => {
                let Some((m, price)) = f("months")
                    .parse::<u8>()
                    .ok()
                    .and_then(|m| self.prices.premium(m).map(|p| (m, p)))
                else {
                    return err("Invalid duration");
                };
                if self.users.get(&username).is_some_and(|u| u.premium) {
                    return err("This account is already subscribed to Telegram Premium.");
                }
                (u32::from(m), price)
            }
        };
        if self.price_changes > 0 {
            self.price_changes -= 1;
            return err("Price was changed. Please try again.");
        }
        let req_id = self.random_alnum(12);
        let reference = self.random_alnum(9);
        let text = match product {
            Product::Stars => payload::stars_text(quantity, &reference),
            Product::Premium => payload::premium_text(quantity as u8, &reference),
        };
        let cell = payload::cell(&text).expect("a comment fits in cells");
        let payload_b64 = payload::encode(&cell).expect("a small BOC serialises");
        let account = self.sessions[ssid].account.clone();
        self.invoices.insert(
            req_id.clone(),
            Invoice {
                ssid: ssid.to_string(),
                account,
                product,
                username,
                quantity,
                amount,
                usdt: usdt.then(|| usdt_units(amount, self.prices.ton_usd)),
                payload: cell,
                payload_b64,
                payer: None,
                valid_until: None,
                confirmed: false,
                status: InvoiceStatus::Created,
                paid_at_ms: None,
                tx_hash: None,
            },
        );
        self.sessions
            .get_mut(ssid)
            .expect("checked")
            .latest
            .insert(product, req_id.clone());
        let amount = match self.invoices[&req_id].usdt {
            Some(units) => units.to_decimal_string(crate::sim::ton::jetton::USDT_DECIMALS),
            None => Nanoton::new(amount).to_ton_string(),
        };
        json!({
            "req_id": req_id,
            "myself": false,
            "to_bot": false,
            "amount": amount,
        })
    }

    /// The request `id` if it belongs to this session and product.
    fn own_invoice(&self, ssid: &str, product: Product, id: &str) -> Option<&Invoice> {
        self.invoices
            .get(id)
            .filter(|i| i.ssid == ssid && i.product == product)
    }

    fn link(
        &mut self,
        ssid: &str,
        product: Product,
        form: &HashMap<String, String>,
        wallet_connected: bool,
        now: u64,
    ) -> Value {
        let f = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
        let asked = f("id").to_string();
        if self.own_invoice(ssid, product, &asked).is_none() {
            return err("Request not found.");
        }
        // A hostile or changed site links the session's latest request instead, if it is
        // another payable one.
        let id = match self.rules.link_answer {
            LinkAnswer::LatestRequest => self.sessions[ssid]
                .latest
                .get(&product)
                .filter(|latest| {
                    self.invoices.get(*latest).is_some_and(|i| {
                        matches!(i.status, InvoiceStatus::Created | InvoiceStatus::Linked)
                    })
                })
                .cloned()
                .unwrap_or(asked),
            LinkAnswer::Honest | LinkAnswer::OmitConfirmId => asked,
        };
        let invoice = &self.invoices[&id];
        match invoice.status {
            InvoiceStatus::Created | InvoiceStatus::Linked => {}
            InvoiceStatus::Expired => {
                return err("This request has expired. Please start a new purchase.")
            }
            InvoiceStatus::Processing | InvoiceStatus::Done => {
                return err("This request has already been paid.")
            }
        }
        if f("transaction") != "1" {
            return err("Please use a wallet app to pay.");
        }
        let account = match TonConnectAccount::parse(f("account"), self.network) {
            Ok(a) => a,
            Err(why) => return err(why),
        };
        if serde_json::from_str::<Value>(f("device"))
            .map(|d| !d.is_object())
            .unwrap_or(true)
        {
            return err("Invalid device");
        }
        if self.rules.payer_must_be_connected_wallet {
            let connected = self.sessions[ssid].wallet.as_ref();
            if !wallet_connected || connected != Some(&account.address) {
                return err("Please pay from the wallet connected to your account.");
            }
        }
        let valid_until = now + self.rules.invoice_ttl_secs;
        // Drawn for USDT invoices only, so a TON flow's random ids stay what they were.
        let query_id = if self.invoices[&id].usdt.is_some() {
            self.rng.gen::<u64>()
        } else {
            0
        };
        let invoice = self.invoices.get_mut(&id).expect("found above");
        invoice.payer = Some(account.address.clone());
        invoice.valid_until = Some(valid_until);
        invoice.status = InvoiceStatus::Linked;
        let confirm_params = match self.rules.link_answer {
            LinkAnswer::OmitConfirmId => json!({}),
            LinkAnswer::Honest | LinkAnswer::LatestRequest => json!({"id": id}),
        };
        let testnet = self.network.is_testnet();
        let message = match invoice.usdt {
            None => json!({
                "address": address::friendly(&self.payment_address, false, testnet),
                "amount": invoice.amount.to_string(),
                "payload": invoice.payload_b64,
            }),
            // A jetton transfer to the payer's own USDT wallet: the USDT to Fragment, the
            // gas left back to the payer, the reference in the forward payload.
            Some(units) => {
                let master = crate::sim::ton::usdt_master();
                let transfer = JettonTransfer {
                    query_id,
                    amount: units,
                    destination: self.payment_address.clone(),
                    response_destination: Some(account.address.clone()),
                    custom_payload: None,
                    forward_ton_amount: Nanoton::new(USDT_FORWARD_NANOTON),
                    forward_payload: ForwardPayload::Ref(invoice.payload.clone()),
                }
                .to_cell()
                .expect("a jetton transfer fits");
                json!({
                    "address": address::friendly(
                        &crate::sim::ton::jetton::wallet_address(&master, &account.address),
                        true,
                        testnet,
                    ),
                    "amount": USDT_GAS_NANOTON.to_string(),
                    "payload": payload::encode(&transfer.to_arc()).expect("a small BOC serialises"),
                })
            }
        };
        json!({
            "ok": true,
            "transaction": {
                "validUntil": valid_until,
                "from": address::raw(&account.address),
                "messages": [message],
            },
            "confirm_method": "confirmReq",
            "confirm_params": confirm_params,
        })
    }

    fn confirm(&mut self, ssid: &str, form: &HashMap<String, String>) -> Value {
        let f = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
        let id = f("id");
        let Some(invoice) = self.invoices.get(id).filter(|i| i.ssid == ssid) else {
            return err("Request not found.");
        };
        let Some(payer) = invoice.payer.clone() else {
            return err("Request not found.");
        };
        if !f("account").is_empty() {
            match TonConnectAccount::parse(f("account"), self.network) {
                Ok(a) if a.address == payer => {}
                _ => return err("Invalid account"),
            }
        }
        // The boc must be the signed external message to the paying wallet.
        let is_payers_external = decode_boc(f("boc"))
            .ok()
            .and_then(|root| ExternalMessage::parse(root).ok())
            .is_some_and(|m| m.destination == payer);
        if !is_payers_external {
            return err("Invalid transaction");
        }
        self.invoices.get_mut(id).expect("found above").confirmed = true;
        json!({"ok": true})
    }

    fn state_reply(&self, ssid: &str, product: Product, id: Option<&String>) -> Value {
        let id = match id {
            Some(id) => id.clone(),
            None => match self.sessions[ssid].latest.get(&product) {
                Some(id) => id.clone(),
                None => return json!({"mode": "new", "need_update": false}),
            },
        };
        let account = self.sessions[ssid].account.as_ref();
        let Some(invoice) = self.own_invoice(ssid, product, &id).or_else(|| {
            // Leniently, another session of the same login may ask too.
            let lenient = self.rules.poll_from_any_session_of_account && account.is_some();
            self.invoices
                .get(&id)
                .filter(|i| lenient && i.product == product && i.account.as_ref() == account)
        }) else {
            return err("Request not found.");
        };
        match invoice.status {
            InvoiceStatus::Created | InvoiceStatus::Linked => {
                json!({"mode": "new", "need_update": true})
            }
            InvoiceStatus::Processing => json!({"mode": "processing", "need_update": true}),
            InvoiceStatus::Done => json!({"mode": "done", "need_update": false, "req_id": id}),
            InvoiceStatus::Expired => json!({"mode": "expired", "need_update": false}),
        }
    }

    /// A payment arrived at the payment address. It fulfils the invoice it pays exactly:
    /// from the payer named in the link, the invoiced amount to the nanoton, the payload cell
    /// (by hash), before `validUntil`, once. Anything else is kept and ignored, as a real
    /// merchant would: the money is gone.
    pub fn on_payment(&mut self, p: &IncomingPayment, now_ms: u64) -> Option<String> {
        if !self.seen_payments.insert(p.tx_hash.clone()) {
            return None;
        }
        let matched = self.match_payment(p, now_ms);
        if matched.is_none() {
            // Kept: with `require_confirm`, an exact payment counts once confirmReq comes.
            self.unmatched.push(p.clone());
            if self.unmatched.len() > 10_000 {
                self.unmatched.remove(0);
            }
        }
        matched
    }

    /// USDT arrived at the payment address (the watcher checked it came from the payment
    /// address's own jetton wallet). It fulfils the USDT invoice it pays exactly: from the
    /// payer named in the link, the invoiced units, the invoice's payload, before
    /// `validUntil`, once.
    pub fn on_usdt_payment(&mut self, p: &IncomingUsdt, now_ms: u64) -> Option<String> {
        if !self.seen_payments.insert(p.tx_hash.clone()) {
            return None;
        }
        let require_confirm = self.rules.require_confirm;
        let (id, invoice) = self.invoices.iter_mut().find(|(_, i)| {
            matches!(i.status, InvoiceStatus::Linked | InvoiceStatus::Expired)
                && i.usdt == Some(p.amount)
                && i.payer.as_ref() == Some(&p.sender)
                && i.payload.as_ref().cell_hash() == p.payload_hash
                && i.valid_until.is_some_and(|v| p.utime < v)
                && (i.confirmed || !require_confirm)
        })?;
        invoice.status = InvoiceStatus::Processing;
        invoice.paid_at_ms = Some(now_ms);
        invoice.tx_hash = Some(p.tx_hash.clone());
        Some(id.clone())
    }

    fn match_payment(&mut self, p: &IncomingPayment, now_ms: u64) -> Option<String> {
        let require_confirm = self.rules.require_confirm;
        let (id, invoice) = self.invoices.iter_mut().find(|(_, i)| {
            // An invoice already marked expired is still paid by a transaction made before
            // its validUntil (the chain's time decides, not when we looked).
            matches!(i.status, InvoiceStatus::Linked | InvoiceStatus::Expired)
                && i.usdt.is_none()
                && i.payer.as_ref() == Some(&p.source)
                && i.amount == p.value.as_u64()
                && i.payload.as_ref().cell_hash() == p.body_hash
                && i.valid_until.is_some_and(|v| p.utime < v)
                && (i.confirmed || !require_confirm)
        })?;
        invoice.status = InvoiceStatus::Processing;
        invoice.paid_at_ms = Some(now_ms);
        invoice.tx_hash = Some(p.tx_hash.clone());
        Some(id.clone())
    }

    /// Delivers what has been processing long enough, and expires what was not paid in
    /// time. Returns the new deliveries.
    pub fn advance(&mut self, now_ms: u64) -> Vec<Delivery> {
        if self.rules.require_confirm {
            // Payments that came before their confirmReq.
            let waiting = std::mem::take(&mut self.unmatched);
            for p in waiting {
                if self.match_payment(&p, now_ms).is_none() {
                    self.unmatched.push(p);
                }
            }
        }
        self.expire_due(now_ms / 1000);
        let ready: Vec<String> = self
            .invoices
            .iter()
            .filter(|(_, i)| {
                i.status == InvoiceStatus::Processing
                    && i.paid_at_ms
                        .is_some_and(|t| now_ms >= t + self.rules.processing_ms)
            })
            .map(|(id, _)| id.clone())
            .collect();
        let mut done = vec![];
        for id in ready {
            let invoice = self.invoices.get_mut(&id).expect("listed");
            invoice.status = InvoiceStatus::Done;
            if invoice.product == Product::Premium {
                if let Some(u) = self.users.get_mut(&invoice.username) {
                    u.premium = true;
                }
            }
            let d = Delivery {
                req_id: id.clone(),
                product: invoice.product,
                username: invoice.username.clone(),
                quantity: invoice.quantity,
                amount_nanoton: invoice.amount.to_string(),
                tx_hash: invoice
                    .tx_hash
                    .as_ref()
                    .map(TonHash::to_hex)
                    .unwrap_or_default(),
            };
            self.deliveries.push(d.clone());
            done.push(d);
        }
        done
    }

    /// How many paid invoices are still being delivered.
    pub fn delivering(&self) -> usize {
        self.invoices
            .values()
            .filter(|i| i.status == InvoiceStatus::Processing)
            .count()
    }

    /// The status of a request, for tests.
    pub fn invoice_status(&self, req_id: &str) -> Option<InvoiceStatus> {
        self.invoices.get(req_id).map(|i| i.status)
    }
}

/// Quantity of Stars: an integer from 50 to 10 000 000.
fn parse_quantity(s: &str) -> Result<u32, Value> {
    match s.trim().parse::<u64>() {
        Ok(q) if (50..=10_000_000).contains(&q) => Ok(q as u32),
        Ok(q) if q < 50 => Err(err("The minimum number of stars you can buy is 50.")),
        _ => Err(err(
            "Please enter a number of stars between 50 and 10,000,000.",
        )),
    }
}

/// A TON Connect `account` whose StateInit and key agree with its address.
struct TonConnectAccount {
    address: TonAddress,
    public_key: PublicKey,
}

impl TonConnectAccount {
    fn parse(text: &str, network: Network) -> Result<TonConnectAccount, &'static str> {
        let v: Value = serde_json::from_str(text).map_err(|_| "Invalid account")?;
        let field = |k: &str| v.get(k).and_then(Value::as_str);
        if field("chain") != Some(&network.global_id().to_string()) {
            return Err("Invalid account network");
        }
        let address = field("address")
            .and_then(|a| parse_address(a).ok())
            .ok_or("Invalid account")?;
        let public_key: [u8; 32] = field("publicKey")
            .and_then(|k| hex::decode(k).ok())
            .and_then(|k| k.try_into().ok())
            .ok_or("Invalid account")?;
        let init = field("walletStateInit")
            .and_then(|s| decode_boc(s).ok())
            .ok_or("Invalid account")?;
        if init.as_ref().cell_hash() != address.hash_part {
            return Err("Invalid account");
        }
        // The key must be the one in the wallet's data cell.
        let state_init = StateInit::from_cell(&init).map_err(|_| "Invalid account")?;
        let (Some(code), Some(data)) = (&state_init.code, &state_init.data) else {
            return Err("Invalid account");
        };
        let version = WalletVersion::from_code_hash(&code.0.as_ref().cell_hash())
            .ok_or("Unsupported wallet")?;
        let wallet = crate::sim::ton::contract::WalletData::parse(version, &data.0)
            .map_err(|_| "Invalid account")?;
        if wallet.public_key.0 != public_key {
            return Err("Invalid account");
        }
        Ok(TonConnectAccount {
            address,
            public_key: PublicKey(public_key),
        })
    }
}
