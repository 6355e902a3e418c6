//! The running core: order and wallet actors behind a registry, the queue dispatcher that
//! runs payments, the expiry scheduler, and the projection runner, all over one event
//! store. `Core` is the handle the HTTP API (and the tests) use.
//!
//! On start the core folds the log, then recovers: a request whose wallet message was
//! recorded is finished from the chain (never signed again); a request that was still
//! waiting lost its seed with the old process, so it ends and its order reopens.

pub mod aggregate;
pub mod checkout;
pub mod dispatcher;
pub mod owners;
pub mod payment;
pub mod registry;
pub mod runner;
pub mod scheduler;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::Utc;
use events::{EventMetadata, OrderMode, PaymentMethod, Product};
use hmac::{Hmac, Mac};
use projections::{OrderView, RequestView};
use sha2::Sha256;
use uuid::Uuid;

use crate::domain::order::{Payer, WalletFunds};
use crate::domain::{DomainError, OrderCommand, OrderStatus, Policy, Username};
use crate::fragment::{
    Flow, FragmentClient, FragmentCookies, FragmentError, Purchase, SessionRole,
};
use crate::store::{EventStore, StoreError};
use crate::ton::client::{TonApiError, TonCenterClient};
use crate::ton::{Nanoton, ParsedAddress};

pub use payment::{Hooks, Job, PayerKey, PaymentHooks, Step};
pub use runner::ProjectionRunner;

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error(transparent)]
    Fragment(#[from] FragmentError),
    #[error("the TON network API is unavailable: {0}")]
    Ton(#[from] TonApiError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no-KYC purchases need the operator's Fragment cookies, and none are configured; send fragment_cookies to buy in KYC mode")]
    OwnerCookiesNotConfigured,
    #[error("{0}")]
    Unavailable(String),
    /// The queue holds `queue_limit` payments already: this one was not taken.
    #[error("the payment queue is full ({waiting} payments are waiting); nothing was recorded and no funds moved: pay again in a moment")]
    QueueFull { waiting: usize },
    /// A checkout's signed message is not the transaction issued (the text names the check).
    #[error("{0}")]
    CheckoutRejected(String),
    #[error("{0}")]
    CheckoutExpired(String),
    /// The client named a wallet the checkout cannot be issued for (the text says why).
    #[error("{0}")]
    InvalidWallet(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl CoreError {
    /// API.md code and HTTP status.
    pub fn api_code(&self) -> (&'static str, u16) {
        match self {
            CoreError::Domain(e) => (e.api_code(), e.http_status()),
            CoreError::Fragment(e) => e.api_code(),
            CoreError::Ton(_) | CoreError::Unavailable(_) | CoreError::QueueFull { .. } => {
                ("SERVICE_UNAVAILABLE", 503)
            }
            CoreError::Store(StoreError::Conflict { .. } | StoreError::Undecodable { .. })
            | CoreError::Internal(_) => ("INTERNAL_ERROR", 500),
            CoreError::Store(_) => ("SERVICE_UNAVAILABLE", 503),
            CoreError::OwnerCookiesNotConfigured => ("OWNER_COOKIES_NOT_CONFIGURED", 500),
            CoreError::CheckoutRejected(_) => ("CHECKOUT_REJECTED", 400),
            CoreError::CheckoutExpired(_) => ("CHECKOUT_EXPIRED", 400),
            CoreError::InvalidWallet(_) => ("VALIDATION_ERROR", 400),
        }
    }
}

/// Timings of the core's workers.
#[derive(Clone, Debug)]
pub struct CoreConfig {
    pub policy: Policy,
    /// Orders (and as many requests) the read models keep in memory for polls.
    pub cache_rows: std::num::NonZeroUsize,
    /// Most payments waiting in the queue; more are refused (`CoreError::QueueFull`).
    pub queue_limit: usize,
    /// Actors idle this long stop (and reload their stream when needed again).
    pub idle_after: Duration,
    /// How often the dispatcher and the scheduler look at their deadlines.
    pub tick: Duration,
    /// A wallet message is valid at most this long: a lost one is known lost soon after.
    pub sign_ttl_secs: u32,
    /// How long a checkout's transaction may be signed and sent (at most what Fragment's
    /// invoice allows, and always less than the order's lifetime).
    pub checkout_ttl_secs: u32,
    pub poll_interval: Duration,
    /// How long to wait for Fragment to report a paid purchase delivered.
    pub delivery_timeout: Duration,
    /// How long pricing, a new order or an eligibility check waits for an owner session
    /// when all of them are busy with payments; then SERVICE_UNAVAILABLE (retry shortly),
    /// rather than a request hanging past the client's own timeout.
    pub owner_wait: Duration,
    /// Called at each step of a payment (tests and the fault harness); none in production.
    pub hooks: Hooks,
}

impl Default for CoreConfig {
    fn default() -> CoreConfig {
        CoreConfig {
            policy: Policy::default(),
            cache_rows: std::num::NonZeroUsize::new(10_000).expect("not zero"),
            queue_limit: 10_000,
            idle_after: Duration::from_secs(300),
            tick: Duration::from_secs(1),
            sign_ttl_secs: 120,
            checkout_ttl_secs: 300,
            poll_interval: Duration::from_secs(2),
            delivery_timeout: Duration::from_secs(120),
            owner_wait: Duration::from_secs(20),
            hooks: Hooks::default(),
        }
    }
}

/// The outside world the core talks to.
pub struct Services {
    pub fragment: FragmentClient,
    pub chain: TonCenterClient,
    /// The operator's sessions for no-KYC purchases at start, used as a pool. `Core::start`
    /// moves them into the pool (`owners::OwnerPool`), which the admin API can replace.
    pub owner_cookies: Vec<FragmentCookies>,
    /// Where collected commission goes; `None` means debt accrues but is never collected.
    pub fee_address: Option<ParsedAddress>,
    /// USDT's jetton master (`ton.usdt_master`): whose jetton USDT payments move.
    pub usdt_master: crate::ton::TonAddress,
}

/// Whether this process may still act on the outside world. Cleared on shutdown (and by the
/// crash-simulating store in tests), after which no payment step starts a new side effect.
#[derive(Clone, Debug)]
pub struct Liveness(Arc<AtomicBool>);

impl Default for Liveness {
    fn default() -> Self {
        Liveness(Arc::new(AtomicBool::new(true)))
    }
}

impl Liveness {
    pub fn is_alive(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
    pub fn kill(&self) {
        self.0.store(false, Ordering::SeqCst)
    }
}

/// What every worker shares.
pub struct Shared {
    pub store: Arc<dyn EventStore>,
    pub registry: registry::Registry,
    pub config: CoreConfig,
    pub services: Services,
    pub runner: ProjectionRunner,
    /// The operator's Fragment sessions (the same pool the core and the dispatcher use):
    /// a restarted payment finds the session that bought it here.
    pub owners: Arc<owners::OwnerPool>,
    liveness: Liveness,
    fingerprint_key: [u8; 32],
}

impl Shared {
    pub fn alive(&self) -> bool {
        self.liveness.is_alive()
    }
}

/// Prices are read from Fragment at most this often (without the client's own session).
const PRICES_FRESH: Duration = Duration::from_secs(60);

/// Fragment's prices at one moment.
#[derive(Clone, Debug)]
pub struct PriceList {
    /// The smallest Stars purchase and its price.
    pub stars_minimum: (u32, crate::fragment::Price),
    /// The packages on the buy page: (Stars, price).
    pub stars_packages: Vec<(u32, crate::fragment::Price)>,
    pub premium: Vec<(crate::domain::PremiumMonths, crate::fragment::Price)>,
    pub ton_usd: Option<rust_decimal::Decimal>,
    pub updated_at: chrono::DateTime<Utc>,
}

#[derive(Clone)]
pub struct Core {
    sh: Arc<Shared>,
    dispatcher: Addr<dispatcher::Dispatcher>,
    scheduler: Addr<scheduler::ExpiryScheduler>,
    /// `services.chain` at public priority (see `chain`).
    public_chain: TonCenterClient,
    next_owner: Arc<AtomicUsize>,
    prices: Arc<std::sync::Mutex<Option<(Instant, PriceList)>>>,
}

/// What a payment request gets back.
#[derive(Clone, Debug)]
pub struct PayReceipt {
    pub request: Arc<RequestView>,
    pub position: Option<u64>,
    pub estimated_wait_seconds: u64,
    /// False when this payment had already been made (same order, same wallet).
    pub new_request: bool,
}

/// Longest a start waits for the read models to show what recovery recorded.
const RECOVERY_VISIBLE: std::time::Duration = std::time::Duration::from_secs(30);

impl Core {
    /// Starts the core on `store` (inside an actix system) and recovers what a previous run
    /// left unfinished.
    pub async fn start(
        mut config: CoreConfig,
        mut services: Services,
        store: Arc<dyn EventStore>,
        liveness: Liveness,
    ) -> Result<Core, CoreError> {
        // Debt is collected only into a fee address: the policy learns whether there is one
        // here, so the rule that says what a payment needs cannot disagree with the payment.
        config.policy.collection_enabled = services.fee_address.is_some();
        let runner = ProjectionRunner::start(Arc::clone(&store), config.cache_rows).await?;
        // Taken out of `services`, so that after a replacement no copy of the old cookies
        // outlives the sessions made from them.
        let owners = Arc::new(owners::OwnerPool::new(
            services.fragment.clone(),
            std::mem::take(&mut services.owner_cookies),
        ));
        let mut fingerprint_key = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut fingerprint_key);
        let sh = Arc::new(Shared {
            registry: registry::Registry::new(
                Arc::clone(&store),
                Arc::new(config.policy.clone()),
                config.idle_after,
            ),
            store,
            runner,
            owners,
            liveness,
            fingerprint_key,
            config: config.clone(),
            services,
        });
        let dispatcher = dispatcher::Dispatcher::new(Arc::clone(&sh), config.tick).start();
        let scheduler = scheduler::ExpiryScheduler::new(Arc::clone(&sh), config.tick).start();
        let core = Core {
            public_chain: sh.services.chain.public(),
            sh,
            dispatcher,
            scheduler,
            next_owner: Arc::new(AtomicUsize::new(0)),
            prices: Arc::new(std::sync::Mutex::new(None)),
        };
        core.recover().await?;
        Ok(core)
    }

    pub fn projections(&self) -> &ProjectionRunner {
        &self.sh.runner
    }

    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.sh.store
    }

    pub fn registry(&self) -> &registry::Registry {
        &self.sh.registry
    }

    /// Finishes what a previous run left, deciding each order from its own stream in the
    /// store (the projections only say which orders to look at; every stream was read
    /// strictly, so an unreadable event has already stopped the start by name):
    /// - queued, or processing with nothing signed: the seed went with the old process, so
    ///   the attempt ends (no funds moved) and the order reopens;
    /// - processing with a recorded message: finished from the chain, never signed again;
    /// - paid, with no word yet on its delivery: confirmed and polled with Fragment;
    /// - unpaid: its expiry is watched again (from the read model: the expiry re-reads the
    ///   order's state when it fires, so nothing is decided from the projection).
    async fn recover(&self) -> Result<(), CoreError> {
        use crate::readmodel::{OrderFilter, RequestFilter};
        use projections::RequestStatus;
        let tables = self.sh.runner.tables();
        // Each list is bounded by the work that was in flight (or unpaid orders, which expire),
        // never by the age of the log: they come from indexed reads, not a scan.
        let in_flight = tables
            .requests(
                RequestFilter {
                    statuses: Some(vec![RequestStatus::Queued, RequestStatus::Processing]),
                    wallet: None,
                },
                0,
                u64::MAX,
            )
            .await?
            .items;
        let awaiting = tables
            .orders(
                OrderFilter {
                    statuses: Some(vec!["success".into()]),
                    delivery_confirmed: Some(None),
                    ..OrderFilter::default()
                },
                0,
                u64::MAX,
            )
            .await?
            .items;
        let unpaid: Vec<_> = tables
            .orders(
                OrderFilter {
                    statuses: Some(vec!["created".into()]),
                    ..OrderFilter::default()
                },
                0,
                u64::MAX,
            )
            .await?
            .items
            .into_iter()
            .map(|o| (o.order_id, o.expires_at))
            .collect();
        let candidates: std::collections::BTreeSet<Uuid> = in_flight
            .iter()
            .filter(|r| r.unsigned_in_flight() || r.unresolved_submission())
            .map(|r| r.order_id)
            .chain(
                awaiting
                    .iter()
                    .filter(|o| o.awaits_delivery_verdict())
                    .map(|o| o.order_id),
            )
            .collect();
        for (order_id, expires_at) in unpaid {
            self.scheduler.do_send(scheduler::Track {
                order_id,
                expires_at,
            });
        }
        for order_id in candidates {
            // Read strictly from the stream itself (not through an actor, whose failed load
            // would only say it is unavailable): an event this build cannot read stops the
            // start, naming it, even when the read models folded it while it was readable.
            let stream = events::StreamName::order(order_id).to_string();
            let state =
                aggregate::load::<aggregate::OrderAggregate>(self.sh.store.as_ref(), &stream)
                    .await?;
            let Some(created) = state.created.clone() else {
                continue;
            };
            let submitted = state.request.as_ref().and_then(|r| r.submitted.clone());
            match (state.status, submitted) {
                _ if state.may_reopen() => {
                    let request_id =
                        state
                            .request
                            .as_ref()
                            .map(|r| r.request_id)
                            .ok_or_else(|| {
                                CoreError::Internal("a queued order without a request".into())
                            })?;
                    let cmd = OrderCommand::Abandon {
                        request_id,
                        error_code: "SERVICE_UNAVAILABLE".into(),
                        error: "the service restarted before the payment was made; no funds moved. The order can be paid again until it expires".into(),
                        now: Utc::now(),
                    };
                    self.sh
                        .registry
                        .order(order_id, cmd, EventMetadata::correlated(request_id))
                        .await?;
                    self.scheduler.do_send(scheduler::Track {
                        order_id,
                        expires_at: created.expires_at,
                    });
                }
                (Some(OrderStatus::Processing), Some(submitted)) => {
                    tracing::info!(%order_id, "reconciling a recorded payment with the chain");
                    self.dispatcher
                        .do_send(dispatcher::Submit(dispatcher::Work::Reconcile(
                            Box::new(created),
                            Box::new(submitted),
                        )));
                }
                (Some(OrderStatus::Success), Some(submitted))
                    if state.awaits_delivery_verdict() =>
                {
                    self.dispatcher
                        .do_send(dispatcher::Submit(dispatcher::Work::Deliver(
                            Box::new(created),
                            Box::new(submitted),
                        )));
                }
                _ => {}
            }
        }
        // Serve only once the read models show what recovery recorded: a client polling a
        // request right after the restart sees it ended, not the state the old process left.
        // Bounded: read models that cannot catch up (their tables failing) are said in the
        // log, and the service starts anyway rather than not at all.
        let head = self.sh.store.head().await?;
        if tokio::time::timeout(RECOVERY_VISIBLE, self.sh.runner.wait_for(head))
            .await
            .is_err()
        {
            tracing::warn!(
                head,
                reached = self.sh.runner.position(),
                "the read models have not caught up with recovery after {} s; serving anyway",
                RECOVERY_VISIBLE.as_secs()
            );
        }
        Ok(())
    }

    /// A flow on an owner session: the first free one, taking turns; if all are busy (with
    /// payments), the next in turn once it is free.
    async fn owner_flow(&self) -> Result<Flow, CoreError> {
        let owners = self.sh.owners.sessions();
        let count = owners.len();
        if count == 0 {
            return Err(CoreError::OwnerCookiesNotConfigured);
        }
        let first = self.next_owner.fetch_add(1, Ordering::Relaxed) % count;
        let turn = |i: usize| &owners[(first + i) % count].session;
        if let Some(flow) = (0..count).find_map(|i| turn(i).try_begin()) {
            return Ok(flow);
        }
        let wait = self.sh.config.owner_wait;
        tokio::time::timeout(wait, turn(0).begin())
            .await
            .map_err(|_| {
                CoreError::Unavailable(format!(
                    "every owner session stayed busy with payments for {} s",
                    wait.as_secs_f64()
                ))
            })
    }

    /// A flow on the client's own Fragment session, waiting at most `owner_wait` for it: a
    /// payment of another wallet may be using the same session (the same cookies).
    async fn client_flow(&self, cookies: FragmentCookies) -> Result<Flow, CoreError> {
        let session = self
            .sh
            .services
            .fragment
            .session(cookies, SessionRole::Client);
        let wait = self.sh.config.owner_wait;
        tokio::time::timeout(wait, session.begin())
            .await
            .map_err(|_| {
                CoreError::Unavailable(format!(
                    "this Fragment session stayed busy with a payment for {} s",
                    wait.as_secs_f64()
                ))
            })
    }

    fn fingerprint(&self, cookies: &FragmentCookies) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.sh.fingerprint_key).expect("any key length");
        for name in ["stel_ssid", "stel_token", "stel_ton_token"] {
            mac.update(name.as_bytes());
            mac.update(&[0]);
            mac.update(cookies.get(name).unwrap_or_default().as_bytes());
            mac.update(&[0]);
        }
        hex::encode(mac.finalize().into_bytes())
    }

    /// Creates an order at Fragment's current price, after Fragment found the recipient.
    pub async fn create_order(
        &self,
        product: Product,
        username: &Username,
        cookies: Option<FragmentCookies>,
    ) -> Result<Arc<OrderView>, CoreError> {
        self.create_new_order(
            Uuid::now_v7(),
            product,
            username,
            cookies,
            None,
            PaymentMethod::Ton,
        )
        .await
    }

    /// Creates an order (`create_order`), with webhooks to `webhook_url` (checked by the
    /// caller), under the id a request under an idempotency key chose (`reserved`, the same
    /// for all its runs): if an order with that id exists already, an earlier run made it, and
    /// it is returned as it is without asking Fragment anything.
    pub async fn place_order(
        &self,
        reserved: Option<Uuid>,
        product: Product,
        username: &Username,
        cookies: Option<FragmentCookies>,
        webhook_url: Option<String>,
        payment_method: PaymentMethod,
    ) -> Result<Arc<OrderView>, CoreError> {
        let order_id = match reserved {
            Some(id) => {
                if let Some(existing) = self.existing_order(id).await? {
                    return Ok(existing);
                }
                id
            }
            None => Uuid::now_v7(),
        };
        self.create_new_order(
            order_id,
            product,
            username,
            cookies,
            webhook_url,
            payment_method,
        )
        .await
    }

    async fn create_new_order(
        &self,
        order_id: Uuid,
        product: Product,
        username: &Username,
        cookies: Option<FragmentCookies>,
        webhook_url: Option<String>,
        payment_method: PaymentMethod,
    ) -> Result<Arc<OrderView>, CoreError> {
        let purchase =
            Purchase::from_order(product).map_err(|e| CoreError::Internal(e.to_string()))?;
        let (mode, fingerprint) = match &cookies {
            Some(c) => (OrderMode::Kyc, Some(self.fingerprint(c))),
            None => (OrderMode::NoKyc, None),
        };
        let (price, price_usdt) = {
            let mut flow = match cookies {
                Some(c) => self.client_flow(c).await?,
                None => self.owner_flow().await?,
            };
            flow.search_recipient(username, purchase).await?;
            let price = match purchase {
                Purchase::Stars(n) => flow.stars_price(n).await?.ton,
                Purchase::Premium(m) => flow
                    .premium_prices()
                    .await?
                    .into_iter()
                    .find(|(months, _)| *months == m)
                    .map(|(_, p)| p.ton)
                    .ok_or_else(|| {
                        FragmentError::BadResponse(format!("no price for {} months", m.get()))
                    })?,
            };
            // A USDT order is priced at the page's TON rate; Fragment's USDT invoice may not
            // ask for more.
            let price_usdt = match payment_method {
                PaymentMethod::Ton => None,
                PaymentMethod::UsdtTon => {
                    let rate = flow.ton_rate().ok_or_else(|| {
                        FragmentError::BadResponse(
                            "the page shows no TON rate to price a USDT order by".into(),
                        )
                    })?;
                    Some(crate::domain::policy::usdt_for(price, rate).ok_or_else(|| {
                        FragmentError::BadResponse(format!("a TON rate of {rate} prices nothing"))
                    })?)
                }
            };
            (price, price_usdt)
        };
        let cmd = OrderCommand::Create {
            order_id,
            product,
            username: username.as_str().to_string(),
            mode,
            cookie_fingerprint: fingerprint,
            price_nanoton: price,
            payment_method,
            price_usdt,
            webhook_url,
            now: Utc::now(),
        };
        let (state, position) = match self
            .sh
            .registry
            .order(order_id, cmd, EventMetadata::correlated(order_id))
            .await
        {
            // Another run under the same id made it meanwhile.
            Err(CoreError::Domain(DomainError::OrderExists(_))) => {
                if let Some(existing) = self.existing_order(order_id).await? {
                    return Ok(existing);
                }
                return Err(CoreError::Internal(format!(
                    "order {order_id} exists but cannot be read"
                )));
            }
            other => other?,
        };
        let created = state
            .created
            .ok_or_else(|| CoreError::Internal("order not created".into()))?;
        self.scheduler.do_send(scheduler::Track {
            order_id,
            expires_at: created.expires_at,
        });
        self.sh.runner.wait_for(position.unwrap_or(0)).await;
        self.order(order_id).await
    }

    /// Cancels an order that is not paid yet, so it can no longer be paid. Cancelling it again
    /// answers it as it is; a paid, queued or finished one is `DomainError::NotCancellable`.
    pub async fn cancel_order(&self, order_id: Uuid) -> Result<Arc<OrderView>, CoreError> {
        let command = OrderCommand::Cancel { now: Utc::now() };
        let (_, position) = self
            .sh
            .registry
            .order(order_id, command, EventMetadata::correlated(order_id))
            .await?;
        let caught_up = match position {
            Some(p) => p,
            // Cancelled before, maybe a moment ago: the read models show it once they
            // reach the log's head.
            None => self.sh.store.head().await?,
        };
        self.sh.runner.wait_for(caught_up).await;
        self.order(order_id).await
    }

    /// The order `order_id` if its stream holds one, as the read models have it once they
    /// caught up with the log.
    async fn existing_order(&self, order_id: Uuid) -> Result<Option<Arc<OrderView>>, CoreError> {
        let state = self.sh.registry.order_state(order_id).await?;
        if state.created.is_none() {
            return Ok(None);
        }
        let head = self.sh.store.head().await?;
        self.sh.runner.wait_for(head).await;
        self.order(order_id).await.map(Some)
    }

    /// An order as the read models have it.
    pub async fn order(&self, order_id: Uuid) -> Result<Arc<OrderView>, CoreError> {
        self.sh
            .runner
            .order(order_id)
            .await?
            .ok_or(CoreError::Domain(DomainError::OrderNotFound))
    }

    /// A payment request as the read models have it.
    pub async fn request(&self, request_id: Uuid) -> Result<Arc<RequestView>, CoreError> {
        self.sh
            .runner
            .request(request_id)
            .await?
            .ok_or(CoreError::Domain(DomainError::UnknownRequest(request_id)))
    }

    /// Pays an order from the wallet of `payer`: checks the balance and the debt, records
    /// the payment and queues it. Paying again from the same wallet returns the same request.
    pub async fn pay_order(
        &self,
        order_id: Uuid,
        payer: PayerKey,
        account_index: Option<u32>,
        cookies: Option<FragmentCookies>,
    ) -> Result<PayReceipt, CoreError> {
        let state = self.sh.registry.order_state(order_id).await?;
        let Some(order) = state.created.clone() else {
            return Err(DomainError::OrderNotFound.into());
        };
        let raw = payer.wallet.raw_address();
        // Only an unpaid order looks at the wallet's funds: a repeated payment or a refused
        // one needs no trip to the chain.
        let funds = if state.status == Some(crate::domain::OrderStatus::Created) {
            // A new payment's check is a client read: payments already accepted go first.
            let chain = self.public_chain.wallet_state(&payer.wallet).await?;
            let usdt = match order.payment_method {
                PaymentMethod::Ton => None,
                PaymentMethod::UsdtTon => Some(self.usdt_balance(payer.wallet.address()).await?),
            };
            WalletFunds {
                balance_nanoton: chain.balance,
                debt_nanoton: self.sh.registry.wallet_state(&raw).await?.debt_nanoton,
                usdt,
            }
        } else {
            WalletFunds {
                balance_nanoton: Nanoton::ZERO,
                debt_nanoton: Nanoton::ZERO,
                usdt: None,
            }
        };
        let request_id = Uuid::now_v7();
        let cmd = OrderCommand::Pay {
            request_id,
            payer: Payer {
                wallet_address: raw,
                wallet_friendly: payer.wallet.friendly_address(false),
                wallet_version: payer.wallet.version().as_str().to_string(),
                account_index,
            },
            funds,
            has_cookies: cookies.is_some(),
            now: Utc::now(),
        };
        let client_session = match order.mode {
            OrderMode::Kyc => {
                cookies.map(|c| self.sh.services.fragment.session(c, SessionRole::Client))
            }
            OrderMode::NoKyc => None,
        };
        // The dispatcher records the payment and queues it in one step of its own, so that
        // this future being dropped (the client hung up) cannot leave a queued order that
        // nobody runs.
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.dispatcher.do_send(dispatcher::Enqueue {
            order,
            request_id,
            command: cmd,
            payment: dispatcher::Payment::Key {
                payer: Box::new(payer),
                client_session,
            },
            reply,
        });
        let (state, position) = answer
            .await
            .map_err(|_| CoreError::Unavailable("the queue stopped".into()))??;
        let request = state
            .request
            .ok_or_else(|| CoreError::Internal("paid order without request".into()))?;
        if let Some(p) = position {
            self.sh.runner.wait_for(p).await;
        }
        self.receipt(request.request_id, position.is_some()).await
    }

    /// A payment's request as the read models have it, with its place in the queue.
    async fn receipt(&self, request_id: Uuid, new_request: bool) -> Result<PayReceipt, CoreError> {
        let request = self.request(request_id).await?;
        let (position, wait) = {
            let live = self.sh.runner.live();
            let p = live.queue.position(&request.request_id);
            (p, p.map_or(0, |p| live.queue.estimated_wait_seconds(p)))
        };
        Ok(PayReceipt {
            request,
            position,
            estimated_wait_seconds: wait,
            new_request,
        })
    }

    /// `owner`'s USDT: what its USDT jetton wallet holds (zero while it has none).
    pub async fn usdt_balance(
        &self,
        owner: &crate::ton::TonAddress,
    ) -> Result<events::JettonAmount, CoreError> {
        let wallet = self
            .public_chain
            .jetton_wallet_address(&self.sh.services.usdt_master, owner)
            .await?;
        Ok(self
            .public_chain
            .jetton_wallet_data(&wallet)
            .await?
            .map_or(events::JettonAmount::ZERO, |d| d.balance))
    }

    /// The TON API for reads on a client's behalf (balances): they yield the request
    /// budget to payments and wait for it at most `ton.public_read_max_wait_seconds`
    /// (`TonApiError::Busy` then, which the API answers with SERVICE_UNAVAILABLE and
    /// Retry-After).
    pub fn chain(&self) -> &crate::ton::client::TonCenterClient {
        &self.public_chain
    }

    pub fn policy(&self) -> &Policy {
        &self.sh.config.policy
    }

    /// Whether no-KYC orders can be taken (the operator configured Fragment sessions).
    pub fn has_owner_sessions(&self) -> bool {
        !self.sh.owners.is_empty()
    }

    /// Makes `cookies` the operator's Fragment sessions from now on. Payments already running
    /// on a previous session finish on it; new orders, prices and payments use the new ones.
    /// An empty list turns no-KYC orders off (OWNER_COOKIES_NOT_CONFIGURED).
    pub fn replace_owner_sessions(&self, cookies: Vec<FragmentCookies>) -> owners::Replaced {
        let replaced = self.sh.owners.replace(cookies);
        // Payments waiting for an owner session may start on a new one now, not at the next
        // tick.
        self.dispatcher.do_send(dispatcher::OwnersChanged);
        replaced
    }

    /// Fragment's current prices, read on an owner session (or `cookies`' session), kept for
    /// `PRICES_FRESH` so that a busy price page does not become a busy fragment.com.
    pub async fn prices(&self, cookies: Option<FragmentCookies>) -> Result<PriceList, CoreError> {
        if cookies.is_none() {
            if let Some(cached) = self.prices.lock().expect("poisoned").as_ref() {
                if cached.0.elapsed() < PRICES_FRESH {
                    return Ok(cached.1.clone());
                }
            }
        }
        let mut flow = match &cookies {
            Some(c) => self.client_flow(c.clone()).await?,
            None => self.owner_flow().await?,
        };
        let packages = flow.stars_packages().await?;
        let one = crate::domain::StarsAmount::new(u64::from(crate::domain::StarsAmount::MIN))
            .expect("the minimum is valid");
        let minimum = flow.stars_price(one).await?;
        let premium = flow.premium_prices().await?;
        let list = PriceList {
            stars_minimum: (one.get(), minimum),
            stars_packages: packages,
            premium,
            ton_usd: flow.ton_rate(),
            updated_at: Utc::now(),
        };
        drop(flow);
        if cookies.is_none() {
            *self.prices.lock().expect("poisoned") = Some((Instant::now(), list.clone()));
        }
        Ok(list)
    }

    /// Whether Fragment would let `username` be gifted `months` of Premium.
    pub async fn premium_eligibility(
        &self,
        username: &Username,
        months: crate::domain::PremiumMonths,
        cookies: Option<FragmentCookies>,
    ) -> Result<(), CoreError> {
        let mut flow = match cookies {
            Some(c) => self.client_flow(c).await?,
            None => self.owner_flow().await?,
        };
        Ok(flow.premium_eligibility(username, months).await?)
    }

    /// Waits until no payment waits or runs and the projections have caught up with the log.
    pub async fn drain(&self) -> Result<(), CoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.dispatcher
            .send(dispatcher::WhenIdle(tx))
            .await
            .map_err(|_| CoreError::Unavailable("dispatcher stopped".into()))?;
        let _ = rx.await;
        let head = self.sh.store.head().await?;
        self.sh.runner.wait_for(head).await;
        Ok(())
    }

    /// Ends the requests still waiting (their seeds go with the process; API.md "Restarts"),
    /// lets running payments reach a recorded state (within `grace`), then stops side
    /// effects and the projection runner (its last batch committed), and closes the store.
    pub async fn shutdown(&self, grace: Duration) {
        let _ = tokio::time::timeout(grace, self.dispatcher.send(dispatcher::Stop)).await;
        let _ = tokio::time::timeout(grace, self.drain()).await;
        self.sh.liveness.kill();
        self.sh.runner.stop().await;
        // Closed here rather than by the last handle's drop, which does not wait: what is
        // queued is committed and the file released before the process goes on (or exits).
        if let Err(e) = self.sh.store.close().await {
            tracing::error!(error = %e, "the event store did not close cleanly");
        }
    }
}
