//! The event-sourced core end to end: purchases through the actors against the TON and
//! fragment.com simulators over loopback, with the embedded store on disk; restarts in the
//! middle of every step; and the seed never reaching the store file.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use events::{ExpectedVersion, NewEvent, Product, RecordedEvent};
use fragment_gateway::actors::{Core, CoreConfig, Liveness, PayerKey, Services};
use fragment_gateway::domain::{Policy, Username};
use fragment_gateway::fragment::{FragmentClient, FragmentConfig, FragmentCookies};
use fragment_gateway::sim::fragment::state::{Prices, Rules};
use fragment_gateway::sim::fragment::{default_payment_wallet, FragmentSim, FragmentSimConfig};
use fragment_gateway::sim::ton::{TonSim, TonSimConfig};
use fragment_gateway::store::{AppendResult, EventStore, SqliteStore, StoreError};
use fragment_gateway::ton::client::{TonApiConfig, TonCenterClient};
use fragment_gateway::ton::{
    KeyPair, Nanoton, Network, ParsedAddress, Seed, WalletContract, WalletVersion,
};
use tokio::sync::watch;

const TON_WORDS: &str = "art hockey victory skill bubble stool heart gas debris april column knife gadget envelope donkey base nature dynamic artefact leg edge aisle retreat fatigue";

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

struct World {
    ton: TonSim,
    fragment: FragmentSim,
    owner: FragmentCookies,
    dir: tempfile::TempDir,
    fee: ParsedAddress,
}

async fn world() -> World {
    let ton = TonSim::start(
        TonSimConfig {
            block_time: Duration::from_millis(50),
            ..Default::default()
        },
        loopback(),
    )
    .await
    .unwrap();
    let fragment = FragmentSim::start(
        FragmentSimConfig {
            ton_api_url: ton.url().to_string(),
            poll_ms: 50,
            rules: Rules {
                processing_ms: 50,
                ..Default::default()
            },
            ..Default::default()
        },
        loopback(),
    )
    .await
    .unwrap();
    ton.install_wallet(&default_payment_wallet(Network::Mainnet), Nanoton::ZERO);
    let owner_key = KeyPair::from_secret_seed(&zeroize::Zeroizing::new([42u8; 32]));
    let owner_wallet = WalletContract::new(
        WalletVersion::V4R2,
        Network::Mainnet,
        owner_key.public_key(),
    );
    let owner = fragment
        .login("owner", Some(owner_wallet.address()))
        .unwrap();
    let fee_key = KeyPair::from_secret_seed(&zeroize::Zeroizing::new([7u8; 32]));
    let fee_wallet =
        WalletContract::new(WalletVersion::V4R2, Network::Mainnet, fee_key.public_key());
    let fee = ParsedAddress::parse(&fee_wallet.friendly_address(false)).unwrap();
    World {
        ton,
        fragment,
        owner,
        dir: tempfile::tempdir().unwrap(),
        fee,
    }
}

fn payer() -> PayerKey {
    let key = Seed::from_words(TON_WORDS)
        .unwrap()
        .derive_key(None)
        .unwrap();
    let wallet = WalletContract::new(WalletVersion::V4R2, Network::Mainnet, key.public_key());
    PayerKey { key, wallet }
}

fn config(policy: Policy) -> CoreConfig {
    CoreConfig {
        policy,
        idle_after: Duration::from_secs(2),
        tick: Duration::from_millis(50),
        sign_ttl_secs: 20,
        poll_interval: Duration::from_millis(50),
        delivery_timeout: Duration::from_secs(10),
        checkpoint: None,
    }
}

impl World {
    fn services(&self) -> Services {
        Services {
            fragment: FragmentClient::new(FragmentConfig {
                base_url: self.fragment.url().to_string(),
                timeout: Duration::from_secs(5),
                backoff: Duration::from_millis(20),
                payment_addresses: vec![self.fragment.payment_address_friendly()],
                ..FragmentConfig::fragment_com()
            })
            .unwrap(),
            chain: TonCenterClient::new(TonApiConfig::local(self.ton.url())).unwrap(),
            owner_cookies: vec![self.owner.clone()],
            fee_address: Some(self.fee.clone()),
        }
    }

    fn store_path(&self) -> std::path::PathBuf {
        self.dir.path().join("events.sqlite3")
    }

    async fn core(
        &self,
        policy: Policy,
        halt: Option<(&'static str, usize)>,
    ) -> (Core, Arc<dyn EventStore>) {
        let liveness = Liveness::default();
        let sqlite: Arc<dyn EventStore> = Arc::new(SqliteStore::open(self.store_path()).unwrap());
        let store: Arc<dyn EventStore> = match halt {
            Some((event_type, nth)) => {
                Arc::new(Halting::new(sqlite, event_type, nth, liveness.clone()))
            }
            None => sqlite,
        };
        let core = Core::start(
            config(policy),
            self.services(),
            Arc::clone(&store),
            liveness,
        )
        .await
        .unwrap();
        (core, store)
    }
}

/// A store that "kills the process" right after the `nth` append of an event of one type:
/// that append succeeds, every later one fails, and the liveness flag drops so no payment
/// step acts on the outside world any more — what a SIGKILL between two events leaves.
struct Halting {
    /// Taken out when the process "dies", closing the file as the OS would.
    inner: Mutex<Option<Arc<dyn EventStore>>>,
    head: watch::Receiver<u64>,
    event_type: &'static str,
    remaining: Mutex<usize>,
    halted: Mutex<bool>,
    liveness: Liveness,
}

impl Halting {
    fn new(
        inner: Arc<dyn EventStore>,
        event_type: &'static str,
        nth: usize,
        liveness: Liveness,
    ) -> Halting {
        Halting {
            head: inner.head_watch(),
            inner: Mutex::new(Some(inner)),
            event_type,
            remaining: Mutex::new(nth),
            halted: Mutex::new(false),
            liveness,
        }
    }

    fn inner(&self) -> Result<Arc<dyn EventStore>, StoreError> {
        self.inner
            .lock()
            .unwrap()
            .clone()
            .ok_or_else(|| StoreError::Unavailable("process killed".into()))
    }
}

#[async_trait]
impl EventStore for Halting {
    fn backend(&self) -> &'static str {
        "halting"
    }
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        if *self.halted.lock().unwrap() {
            return Err(StoreError::Unavailable("process killed".into()));
        }
        let trips = events.iter().any(|e| e.event_type == self.event_type) && {
            let mut r = self.remaining.lock().unwrap();
            *r -= 1;
            *r == 0
        };
        let result = self.inner()?.append(stream, expected, events).await;
        if trips {
            *self.halted.lock().unwrap() = true;
            self.liveness.kill();
            self.inner.lock().unwrap().take();
        }
        result
    }
    async fn read_stream(
        &self,
        stream: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner()?.read_stream(stream, from, limit).await
    }
    async fn read_all(&self, after: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner()?.read_all(after, limit).await
    }
    async fn head(&self) -> Result<u64, StoreError> {
        self.inner()?.head().await
    }
    async fn stream_version(&self, stream: &str) -> Result<u64, StoreError> {
        self.inner()?.stream_version(stream).await
    }
    fn head_watch(&self) -> watch::Receiver<u64> {
        self.head.clone()
    }
}

fn alice() -> Username {
    Username::parse("@alice").unwrap()
}

/// Polls `check` until it holds (the core works in the background).
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn a_no_kyc_purchase_runs_through_the_actors_to_the_nanoton() {
    let w = world().await;
    let p = payer();
    w.ton.fund(p.wallet.address(), Nanoton::from_ton(5));
    let (core, _) = w.core(Policy::default(), None).await;

    let order = core
        .create_order(Product::Stars { amount: 50 }, &alice(), None)
        .await
        .unwrap();
    let price = Prices::default().stars(50);
    assert_eq!(order.status, "created");
    assert_eq!(order.price_nanoton, price);
    // 1 %, rounded half away from zero.
    let commission = (price as u128 + 50) / 100;
    assert_eq!(order.commission_nanoton as u128, commission);

    let raw = p.wallet.raw_address();
    let receipt = core.pay_order(order.order_id, p, None, None).await.unwrap();
    assert!(receipt.new_request);
    core.drain().await.unwrap();

    let order = core.order(order.order_id).unwrap();
    assert_eq!(order.status, "success", "{order:?}");
    assert_eq!(order.delivery_confirmed, Some(true));
    let request = core.request(receipt.request.request_id).unwrap();
    let result = request.result.unwrap();
    assert_eq!(result.cost_nanoton, price);
    assert_eq!(result.commission_balance_nanoton, order.commission_nanoton);
    assert_eq!(w.fragment.deliveries().len(), 1);
    assert_eq!(w.ton.balance(&w.fragment.payment_address()).as_u64(), price);
    let models = core.projections().snapshot();
    assert_eq!(
        models.commission.wallet(&raw).debt_nanoton,
        order.commission_nanoton
    );
    assert_eq!(models.queue.stats().completed, 1);

    // Paying again from the same wallet is the same request, and moves nothing.
    let again = core
        .pay_order(order.order_id, payer(), None, None)
        .await
        .unwrap();
    assert!(!again.new_request);
    assert_eq!(again.request.request_id, receipt.request.request_id);
    core.drain().await.unwrap();
    assert_eq!(w.fragment.deliveries().len(), 1);

    // The seed never reached the store file (nor its WAL).
    core.shutdown(Duration::from_secs(1)).await;
    assert_no_seed_in(w.dir.path());
}

fn assert_no_seed_in(dir: &Path) {
    let words: Vec<&str> = TON_WORDS.split(' ').collect();
    for entry in std::fs::read_dir(dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        // Any run of three consecutive seed words would be the seed leaking.
        for three in words.windows(3) {
            assert!(
                !text.contains(&three.join(" ")),
                "seed words found in the data dir"
            );
        }
        let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, TON_WORDS);
        assert!(
            !text.contains(&b64[..40]),
            "base64 seed found in the data dir"
        );
    }
}

#[actix_web::test]
async fn collection_rides_along_with_a_purchase_once_the_debt_reaches_the_threshold() {
    let w = world().await;
    let p = payer();
    w.ton.fund(p.wallet.address(), Nanoton::from_ton(20));
    // A 0.1 TON threshold and a 10 % rate: the first order's commission alone reaches it.
    let policy = Policy {
        rate_no_kyc: "0.10".parse().unwrap(),
        collection_threshold_nanoton: 100_000_000,
        ..Policy::default()
    };
    let (core, _) = w.core(policy, None).await;
    let order = core
        .create_order(Product::Stars { amount: 500 }, &alice(), None)
        .await
        .unwrap();
    let raw = p.wallet.raw_address();
    core.pay_order(order.order_id, p, None, None).await.unwrap();
    core.drain().await.unwrap();
    assert_eq!(core.order(order.order_id).unwrap().status, "success");
    let wallet = core.projections().snapshot().commission.wallet(&raw);
    assert_eq!(wallet.accrued_total_nanoton, order.commission_nanoton);
    assert_eq!(wallet.collected_total_nanoton, order.commission_nanoton);
    assert_eq!(wallet.debt_nanoton, 0);
    assert_eq!(
        w.ton.balance(&w.fee.address).as_u64(),
        order.commission_nanoton
    );
}

/// Kills the core right after the `nth` event of `event_type`, restarts it on the same data
/// dir, and returns the final order status once everything settled.
async fn crash_after(event_type: &'static str) -> (World, String, usize) {
    let w = world().await;
    let p = payer();
    w.ton.fund(p.wallet.address(), Nanoton::from_ton(5));
    let (core, _) = w.core(Policy::default(), Some((event_type, 1))).await;
    // A killed process never answers: its calls are given up after a while.
    let order = tokio::time::timeout(
        Duration::from_secs(5),
        core.create_order(Product::Stars { amount: 50 }, &alice(), None),
    )
    .await;
    let order_id = match order {
        Ok(Ok(o)) => o.order_id,
        _ => {
            // Killed at creation: nothing to finish.
            return (w, "none".into(), 0);
        }
    };
    let _ = tokio::time::timeout(
        Duration::from_secs(5),
        core.pay_order(order_id, p, None, None),
    )
    .await;
    // Let the dead process's in-flight work reach the point where it stops.
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(core);

    let (core, _) = w.core(Policy::default(), None).await;
    core.drain().await.unwrap();
    // Wait out any message that could still land (its validity is 20 s at most).
    let status = core.order(order_id).unwrap().status;
    let deliveries = w.fragment.deliveries().len();
    (w, status, deliveries)
}

#[actix_web::test]
async fn a_restart_between_any_two_events_ends_each_order_correctly_and_never_pays_twice() {
    let price = Prices::default().stars(50);
    for (event_type, expected) in [
        ("OrderPaid", "created"),
        ("OrderQueued", "created"),
        ("OrderProcessingStarted", "created"),
        ("PaymentSubmitted", "success"),
        ("CommissionAccrued", "success"),
        ("OrderFulfilled", "success"),
    ] {
        eprintln!("killing after {event_type}");
        let (w, status, deliveries) = crash_after(event_type).await;
        assert_eq!(status, expected, "killed after {event_type}");
        let paid = w.ton.balance(&w.fragment.payment_address()).as_u64();
        match expected {
            "success" => {
                assert_eq!(paid, price, "killed after {event_type}: paid exactly once");
                eventually("delivery", || w.fragment.deliveries().len() == 1).await;
            }
            _ => {
                assert_eq!(paid, 0, "killed after {event_type}: no funds moved");
                assert_eq!(deliveries, 0);
            }
        }
    }
}
