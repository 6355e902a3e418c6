//! A fragment.com simulator: the pages and `/api` methods of the Stars and Premium flows,
//! as strict as the real site (FRAGMENT_PROTOCOL.md §8), paid through the TON simulator.
//!
//! - `state`: sessions, recipients, requests, invoices, deliveries (pure).
//! - `pages` / `payload`: the HTML and the invoice payloads, built like the real site's.
//! - `http`: pages, `/api`, and `/sim/*` controls.
//! - `concurrency`: counts clients running two purchase flows on one session at once.
//!
//! A watcher reads the payment address's transactions from a toncenter-compatible API (the
//! TON simulator) like any merchant would, and fulfils the invoice a payment matches exactly.

pub mod concurrency;
pub mod http;
pub mod pages;
pub mod payload;
pub mod state;

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::web;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tonlib_core::TonAddress;
use zeroize::Zeroizing;

use self::concurrency::ConcurrencyWatch;
use self::state::{
    default_accounts, default_users, Delivery, FixtureAccount, FixtureUser, FragmentState,
    IncomingPayment, IncomingUsdt, InvoiceStatus, LinkAnswer, PresetSession, Prices, Rules,
};
use super::faults::{FaultConfig, Faults, HangConfig};
use super::server::Running;
use crate::fragment::FragmentCookies;
use crate::ton::address::{self, parse_address};
use crate::ton::client::{ChainTransaction, TonApiConfig, TonApiError, TonCenterClient};
use crate::ton::jetton::TransferNotification;
use crate::ton::{KeyPair, Network, WalletContract, WalletVersion};

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FragmentSimConfig {
    /// The toncenter-compatible API payments are read from (the TON simulator's URL).
    pub ton_api_url: String,
    pub network: Network,
    pub users: Vec<FixtureUser>,
    pub accounts: Vec<FixtureAccount>,
    pub sessions: Vec<PresetSession>,
    pub prices: Prices,
    pub rules: Rules,
    pub faults: FaultConfig,
    /// Requests that hang (`Faults::set_hangs` changes it at runtime).
    pub hangs: HangConfig,
    /// Where invoices are paid; by default a wallet derived from a fixed simulator key.
    pub payment_address: Option<String>,
    /// How often the watcher reads the payment address's transactions (0: only on demand).
    pub poll_ms: u64,
    pub seed: u64,
}

impl Default for FragmentSimConfig {
    fn default() -> Self {
        FragmentSimConfig {
            ton_api_url: String::new(),
            network: Network::Mainnet,
            users: default_users(),
            accounts: default_accounts(),
            sessions: vec![],
            prices: Prices::default(),
            rules: Rules::default(),
            faults: FaultConfig::default(),
            hangs: HangConfig::default(),
            payment_address: None,
            poll_ms: 200,
            seed: 0,
        }
    }
}

/// The simulator's own payment wallet (v4r2 of a fixed key). Like Fragment's real addresses
/// it should be deployed on the chain: `TonSim::install_wallet` it next to the simulator
/// (the `sim` command and the tests do); undeployed, bounceable payments to it come back.
pub fn default_payment_wallet(network: Network) -> WalletContract {
    let seed = Zeroizing::new(<[u8; 32]>::from(Sha256::digest(
        b"fragment-gateway sim fragment.com payment wallet",
    )));
    let key = KeyPair::from_secret_seed(&seed);
    WalletContract::new(WalletVersion::V4R2, network, key.public_key())
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// State shared by the handlers and the watcher.
pub struct FragmentSimShared {
    state: Mutex<FragmentState>,
    faults: Faults,
    network: Network,
    ton_api_url: String,
    ton: TonCenterClient,
    /// Logical time of the newest payment-address transaction read so far.
    last_lt: AtomicU64,
    concurrency: Mutex<ConcurrencyWatch>,
}

impl FragmentSimShared {
    fn state(&self) -> MutexGuard<'_, FragmentState> {
        self.state.lock().expect("fragment sim state poisoned")
    }

    fn concurrency(&self) -> MutexGuard<'_, ConcurrencyWatch> {
        self.concurrency.lock().expect("concurrency watch poisoned")
    }

    fn expire_session(&self, ssid: &str) -> bool {
        self.concurrency().session_ended(ssid);
        self.state().expire_session(ssid)
    }

    /// Reads the payments that arrived since the last read (paging back as far as needed)
    /// and delivers what is due.
    async fn process(&self) -> Result<(), TonApiError> {
        const PAGE: u32 = 100;
        let address = self.state().payment_address().clone();
        let known = self.last_lt.load(Ordering::SeqCst);
        let mut fresh: Vec<ChainTransaction> = Vec::new();
        // Newest first; transactions arriving meanwhile only push older ones further back,
        // so nothing is skipped (a transaction seen twice is recognised by its hash).
        let mut offset = 0;
        'pages: loop {
            let page = self
                .ton
                .indexed_transactions(&address, PAGE, offset)
                .await?;
            let full = page.len() == PAGE as usize;
            for tx in page {
                if tx.lt <= known {
                    break 'pages;
                }
                fresh.push(tx);
            }
            if !full {
                break;
            }
            offset += PAGE;
        }
        let now = now_ms();
        let mut state = self.state();
        // Oldest first: if two payments could match one invoice, the first one wins.
        for tx in fresh.iter().rev() {
            self.last_lt.fetch_max(tx.lt, Ordering::SeqCst);
            // An aborted transaction (a payment that bounced back) or a bounced message
            // pays nothing.
            if tx.aborted != Some(false) {
                continue;
            }
            let Some(msg) = &tx.in_msg else { continue };
            if msg.bounced == Some(true) {
                continue;
            }
            // USDT: a notification from the payment address's own USDT jetton wallet (anyone
            // can send a message that looks like one; only that wallet's is money).
            let notification = msg
                .body
                .as_ref()
                .and_then(|b| TransferNotification::parse(b).ok());
            if let Some(n) = notification {
                let ours = crate::sim::ton::jetton::wallet_address(
                    &crate::sim::ton::usdt_master(),
                    &address,
                );
                if msg.source.as_ref() != Some(&ours) {
                    continue;
                }
                let Some(sender) = n.sender else { continue };
                let paid = IncomingUsdt {
                    tx_hash: tx.hash.clone(),
                    sender,
                    amount: n.amount,
                    payload_hash: n.forward_payload.cell().cell_hash(),
                    utime: tx.utime,
                };
                if let Some(req_id) = state.on_usdt_payment(&paid, now) {
                    tracing::info!(req_id, "simulated Fragment: USDT invoice paid");
                }
                continue;
            }
            let (Some(source), Some(body_hash)) = (&msg.source, &msg.body_hash) else {
                continue;
            };
            let payment = IncomingPayment {
                tx_hash: tx.hash.clone(),
                source: source.clone(),
                value: msg.value,
                body_hash: body_hash.clone(),
                utime: tx.utime,
            };
            if let Some(req_id) = state.on_payment(&payment, now) {
                tracing::info!(req_id, "simulated Fragment: invoice paid");
            }
        }
        for d in state.advance(now) {
            tracing::info!(
                req_id = d.req_id,
                username = d.username,
                "simulated Fragment: delivered"
            );
        }
        Ok(())
    }
}

/// A running fragment.com simulator.
pub struct FragmentSim {
    shared: Arc<FragmentSimShared>,
    url: String,
    running: Running,
}

impl FragmentSim {
    /// Starts the HTTP server on `listen` (port 0: any free port) and the payment watcher.
    pub async fn start(
        config: FragmentSimConfig,
        listen: SocketAddr,
    ) -> std::io::Result<FragmentSim> {
        let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
        let payment_address = match &config.payment_address {
            Some(a) => parse_address(a).map_err(|e| invalid(format!("payment_address: {e}")))?,
            None => default_payment_wallet(config.network).address().clone(),
        };
        let state = FragmentState::new(
            config.network,
            config.users.clone(),
            config.accounts.clone(),
            config.sessions.clone(),
            config.prices.clone(),
            config.rules.clone(),
            payment_address,
            config.seed,
        )
        .map_err(invalid)?;
        let ton = TonCenterClient::new(TonApiConfig::local(config.ton_api_url.clone()))
            .map_err(|e| invalid(e.to_string()))?;
        let shared = Arc::new(FragmentSimShared {
            state: Mutex::new(state),
            faults: Faults::new(config.faults.clone(), config.seed)
                .with_hangs(config.hangs.clone()),
            network: config.network,
            ton_api_url: config.ton_api_url.clone(),
            ton,
            last_lt: AtomicU64::new(0),
            concurrency: Mutex::new(ConcurrencyWatch::default()),
        });
        let listener = TcpListener::bind(listen)?;
        let addr = listener.local_addr()?;
        let data = web::Data::from(Arc::clone(&shared));
        let running = Running::start(listener, move |cfg: &mut web::ServiceConfig| {
            cfg.app_data(data.clone())
                .app_data(web::JsonConfig::default().limit(64 << 10))
                .app_data(web::PayloadConfig::new(256 << 10));
            http::routes(cfg);
        })?;
        let watcher = (config.poll_ms > 0 && !config.ton_api_url.is_empty()).then(|| {
            let shared = Arc::clone(&shared);
            let every = Duration::from_millis(config.poll_ms);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    if let Err(e) = shared.process().await {
                        tracing::debug!(error = %e, "simulated Fragment could not read payments");
                    }
                }
            })
        });
        Ok(FragmentSim {
            shared,
            url: format!("http://{addr}"),
            running: running.with_task(watcher),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn payment_address(&self) -> TonAddress {
        self.shared.state().payment_address().clone()
    }

    /// The payment address as invoices show it (non-bounceable).
    pub fn payment_address_friendly(&self) -> String {
        address::friendly(
            &self.payment_address(),
            false,
            self.shared.network.is_testnet(),
        )
    }

    /// A fresh logged-in session for `account`, with `wallet` connected if given.
    pub fn login(
        &self,
        account: &str,
        wallet: Option<&TonAddress>,
    ) -> Result<FragmentCookies, String> {
        let pairs = self.shared.state().login(account, wallet)?;
        let mut cookies = FragmentCookies::default();
        for (k, v) in pairs {
            cookies
                .set(&k, Zeroizing::new(v))
                .map_err(|e| e.to_string())?;
        }
        Ok(cookies)
    }

    /// Ends session `ssid` at the site, as when its login expires: from then on its
    /// cookies get `{"error":"Bad request"}` (HTTP 200) from `/api`, and a page load starts
    /// a new anonymous session. Its requests stay payable. Whether it existed.
    pub fn expire_session(&self, ssid: &str) -> bool {
        self.shared.expire_session(ssid)
    }

    /// How many times a search or init arrived on a session whose previous flow had an
    /// init but no link request yet: two purchase flows overlapping on one session
    /// (`concurrency` has the details). The site answers them all; a correct client keeps
    /// this at zero.
    pub fn overlapping_flows(&self) -> u64 {
        self.shared.concurrency().overlaps()
    }

    /// The most `/api` requests carrying `stel_ssid` = `ssid` that were in flight at once.
    pub fn max_in_flight(&self, ssid: &str) -> u32 {
        self.shared.concurrency().max_in_flight(ssid)
    }

    /// `/api` requests being answered right now, on every session.
    pub fn in_flight(&self) -> u32 {
        self.shared.concurrency().in_flight()
    }

    /// `max_in_flight` of the busiest session.
    pub fn max_in_flight_any(&self) -> u32 {
        self.shared.concurrency().max_in_flight_any()
    }

    /// How the payment-link methods answer from now on (honest by default).
    pub fn set_link_answer(&self, answer: LinkAnswer) {
        self.shared.state().set_link_answer(answer);
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared.state().deliveries().to_vec()
    }

    pub fn invoice_status(&self, req_id: &str) -> Option<InvoiceStatus> {
        self.shared.state().invoice_status(req_id)
    }

    pub fn change_price_next(&self, n: u32) {
        self.shared.state().change_price_next(n);
    }

    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    /// How many paid invoices are still being delivered (`rules.processing_ms` after the
    /// payment was seen).
    pub fn delivering(&self) -> usize {
        self.shared.state().delivering()
    }

    /// Reads the chain and delivers what is due, now (tests use this instead of waiting for
    /// the watcher).
    pub async fn process_now(&self) -> Result<(), TonApiError> {
        self.shared.process().await
    }

    pub async fn stop(self) {
        self.running.stop().await;
    }
}
