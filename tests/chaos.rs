//! The fault harness: seeded, randomized runs of the whole core against both simulators,
//! with the simulators' faults switched on and off while payments run and the core killed
//! and started again on the same store. After each schedule has settled, it checks what
//! must hold whatever happened:
//!
//! - no order is paid more than once on the simulated chain, and every payment Fragment
//!   received was signed for the order whose invoice it paid;
//! - every order a client was given exists, and every paid order ended in exactly one final
//!   state (a successful one with a delivery verdict: confirmed, or on the operator's list);
//! - no request is left queued or processing;
//! - each wallet's spending on chain equals what the log says it paid (prices, collected
//!   commission, network fees), the fee address got what the log says was collected, and
//!   `replay`'s consistency checks pass;
//! - no seed or cookie value is in the store file or in the captured logs.
//!
//! `FG_CHAOS_SEED=S` runs the schedule of seed S alone (the same draws: wallets, orders,
//! faults, crash point; real time still decides the exact interleaving), and
//! `FG_CHAOS_SCHEDULES=N` runs N schedules (default 200, CI's budget) from seed
//! `FG_CHAOS_FIRST_SEED` (default 3298840576, CI's): pick another first seed to explore
//! schedules CI does not run. A failing schedule is reported with its seed.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::*;
use events::{Event, Nanoton, Product};
use fragment_gateway::actors::{Core, CoreConfig, CoreError, Services};
use fragment_gateway::domain::{Policy, Username};
use fragment_gateway::fragment::{FragmentClient, FragmentConfig, FragmentCookies};
use fragment_gateway::sim::faults::{FaultConfig, HangConfig};
use fragment_gateway::sim::fragment::default_payment_wallet;
use fragment_gateway::store::EventStore;
use fragment_gateway::ton::client::{TonApiConfig, TonCenterClient};
use fragment_gateway::ton::{KeyPair, Network, TonAddress, WalletContract, WalletVersion};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

/// Schedules run when `FG_CHAOS_SCHEDULES` is not set: CI's budget.
const DEFAULT_SCHEDULES: u64 = 200;
/// The seed of the first schedule; schedule `i` has seed `FIRST_SEED + i`.
const FIRST_SEED: u64 = 0xC4A0_5000;
/// Schedules run at once (each on its own thread and actix system): most of a schedule is
/// waiting on the simulated network, so more than the machine's cores keeps them busy.
const PARALLEL: usize = 8;

// ---------------------------------------------------------------------------------------
// Captured logs.

fn log_buffer() -> &'static Mutex<Vec<u8>> {
    static LOGS: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();
    LOGS.get_or_init(Default::default)
}

struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        log_buffer().lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Everything the service logs, down to debug, goes to the buffer: a secret logged at any
/// level is a leak.
fn capture_logs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter("fragment_gateway=debug,warn")
            .with_writer(|| Capture)
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one subscriber");
    });
}

// ---------------------------------------------------------------------------------------
// The schedule.

#[derive(Clone, Copy, Debug)]
enum Pattern {
    Never,
    Once,
    /// The same wallet pays twice (a client retrying): the same request, one payment.
    Twice,
    /// Two wallets pay at once: one of them pays.
    TwoWallets,
}

#[derive(Clone, Debug)]
struct OrderPlan {
    product: Product,
    username: &'static str,
    /// The KYC cookie set it is bought with, if any.
    kyc: Option<usize>,
    wallet: usize,
    other_wallet: usize,
    pattern: Pattern,
    /// Create and pay in one go (the one-shot buy), or create, wait, then pay.
    one_shot: bool,
    start_after: Duration,
}

#[derive(Clone, Copy, Debug)]
enum Crash {
    None,
    /// Right after the `nth` append of an event of this type.
    AfterEvent(&'static str, usize),
    /// At a moment of the run.
    After(Duration),
}

#[derive(Clone, Debug)]
struct Plan {
    block_ms: u64,
    owners: usize,
    wallets: Vec<u64>,
    kyc_sets: usize,
    orders: Vec<OrderPlan>,
    crash: Crash,
    /// Faults drawn again every this often while payments run.
    monkey_every: Duration,
    expire_an_owner: bool,
}

fn pick<T: Copy>(rng: &mut StdRng, items: &[T]) -> T {
    items[rng.gen_range(0..items.len())]
}

impl Plan {
    fn draw(rng: &mut StdRng) -> Plan {
        let wallets: Vec<u64> = (0..rng.gen_range(1..=8))
            .map(|_| {
                if rng.gen_bool(0.2) {
                    // Too poor for most orders.
                    rng.gen_range(100_000_000..600_000_000)
                } else {
                    rng.gen_range(3..20) * 1_000_000_000
                }
            })
            .collect();
        let kyc_sets = rng.gen_range(0..=2);
        let orders = (0..rng.gen_range(1..=8))
            .map(|_| {
                let product = if rng.gen_bool(0.2) {
                    Product::Premium {
                        months: pick(rng, &[3u8, 6, 12]),
                    }
                } else {
                    Product::Stars {
                        amount: pick(rng, &[50u32, 100, 250, 500, 1000]),
                    }
                };
                let pattern = match rng.gen_range(0..10) {
                    0 => Pattern::Never,
                    1..=5 => Pattern::Once,
                    6 | 7 => Pattern::Twice,
                    _ => Pattern::TwoWallets,
                };
                OrderPlan {
                    product,
                    username: pick(rng, &["@alice", "@bob"]),
                    kyc: (kyc_sets > 0 && rng.gen_bool(0.35)).then(|| rng.gen_range(0..kyc_sets)),
                    wallet: rng.gen_range(0..wallets.len()),
                    other_wallet: rng.gen_range(0..wallets.len()),
                    pattern,
                    one_shot: rng.gen_bool(0.5),
                    start_after: Duration::from_millis(rng.gen_range(0..400)),
                }
            })
            .collect();
        let crash = match rng.gen_range(0..10) {
            0..=5 => Crash::None,
            6..=8 => Crash::AfterEvent(
                pick(
                    rng,
                    &[
                        "OrderPaid",
                        "OrderProcessingStarted",
                        "PaymentSubmitted",
                        "CommissionAccrued",
                        "OrderFulfilled",
                        "OrderDeliveryConfirmed",
                    ],
                ),
                rng.gen_range(1..=2),
            ),
            _ => Crash::After(Duration::from_millis(rng.gen_range(200..2500))),
        };
        Plan {
            block_ms: rng.gen_range(15..60),
            owners: rng.gen_range(1..=3),
            wallets,
            kyc_sets,
            orders,
            crash,
            monkey_every: Duration::from_millis(rng.gen_range(100..400)),
            expire_an_owner: rng.gen_bool(0.1),
        }
    }
}

/// What a wallet key is: the mnemonic payer for wallet 0 (so that a seed leak would show
/// as its words), raw keys for the others.
fn wallet_key(i: usize) -> fragment_gateway::actors::PayerKey {
    if i == 0 {
        payer()
    } else {
        payer_n(i as u8)
    }
}

fn wallet_address(i: usize) -> TonAddress {
    wallet_key(i).wallet.address().clone()
}

/// The simulators' faults, drawn at random (`calm` clears them all).
fn draw_faults(w: &World, rng: &mut StdRng, calm: bool) {
    let chance = |rng: &mut StdRng, p: f64| !calm && rng.gen_bool(p);
    w.ton.faults().set_config(FaultConfig {
        latency: Duration::from_millis(if chance(rng, 0.3) {
            rng.gen_range(5..60)
        } else {
            0
        }),
        error_rate: if chance(rng, 0.4) {
            pick(rng, &[0.05, 0.2, 0.5])
        } else {
            0.0
        },
    });
    w.ton.faults().set_hangs(HangConfig {
        rate: if chance(rng, 0.2) { 0.05 } else { 0.0 },
        duration: Duration::from_millis(1500),
        ..HangConfig::default()
    });
    w.ton
        .set_keyless_rps(if chance(rng, 0.15) { Some(30.0) } else { None });
    w.ton
        .set_drop_rate(if chance(rng, 0.15) { 0.2 } else { 0.0 });
    if chance(rng, 0.15) {
        w.ton.lose_next_answers(rng.gen_range(1..3));
    }
    if chance(rng, 0.1) {
        w.ton.hang_next_answers(1);
    }
    w.ton.set_indexer_lag(if chance(rng, 0.3) {
        Duration::from_millis(pick(rng, &[300, 1000, 3000]))
    } else {
        Duration::ZERO
    });
    w.ton.pause_indexer(chance(rng, 0.05));
    w.fragment.faults().set_config(FaultConfig {
        latency: Duration::from_millis(if chance(rng, 0.3) {
            rng.gen_range(5..50)
        } else {
            0
        }),
        error_rate: if chance(rng, 0.3) {
            pick(rng, &[0.05, 0.2])
        } else {
            0.0
        },
    });
    w.fragment.faults().set_hangs(HangConfig {
        rate: if chance(rng, 0.1) { 0.05 } else { 0.0 },
        duration: Duration::from_millis(1500),
        ..HangConfig::default()
    });
}

fn core_config() -> CoreConfig {
    CoreConfig {
        policy: Policy {
            order_ttl: chrono::Duration::seconds(30),
            queue_timeout: chrono::Duration::seconds(8),
            // A low threshold, so that collections ride along often.
            collection_threshold_nanoton: Nanoton::new(20_000_000),
            rate_no_kyc: "0.02".parse().unwrap(),
            ..Policy::default()
        },
        idle_after: Duration::from_secs(1),
        tick: Duration::from_millis(20),
        sign_ttl_secs: 4,
        poll_interval: Duration::from_millis(30),
        delivery_timeout: Duration::from_secs(3),
        owner_wait: Duration::from_secs(3),
        ..CoreConfig::default()
    }
}

fn services(w: &World, owners: &[FragmentCookies]) -> Services {
    Services {
        fragment: FragmentClient::new(FragmentConfig {
            base_url: w.fragment.url().to_string(),
            timeout: Duration::from_secs(1),
            backoff: Duration::from_millis(20),
            call_budget: Duration::from_secs(4),
            payment_addresses: vec![w.fragment.payment_address_friendly()],
            ..FragmentConfig::fragment_com()
        })
        .unwrap()
        .with_session_key(SESSION_KEY),
        chain: TonCenterClient::new(TonApiConfig {
            timeout: Duration::from_secs(1),
            max_attempts: 3,
            backoff_base: Duration::from_millis(20),
            backoff_max: Duration::from_millis(300),
            finality_margin: Duration::from_secs(1),
            ..TonApiConfig::local(w.ton.url())
        })
        .unwrap(),
        owner_cookies: owners.to_vec(),
        fee_address: Some(w.fee.clone()),
        usdt_master: fragment_gateway::sim::ton::usdt_master(),
    }
}

/// Whether a failure is one a client would retry after.
fn transient(e: &CoreError) -> bool {
    matches!(e.api_code().0, "SERVICE_UNAVAILABLE" | "FRAGMENT_ERROR")
}

/// What the clients were told and did.
#[derive(Default)]
struct Given {
    /// Orders created: the KYC cookie set they were made with, and the wallets that tried
    /// to pay them.
    orders: BTreeMap<Uuid, (Option<usize>, Vec<usize>)>,
}

/// Drives one order on `core`: create (retrying what a client would), then pay as planned.
async fn drive(core: &Core, plan: &OrderPlan, kyc: &[FragmentCookies], given: &Mutex<Given>) {
    const CALL: Duration = Duration::from_secs(6);
    tokio::time::sleep(plan.start_after).await;
    let username = Username::parse(plan.username).unwrap();
    let cookies = plan.kyc.map(|k| kyc[k].clone());
    let mut order = None;
    for _ in 0..3 {
        match tokio::time::timeout(
            CALL,
            core.create_order(plan.product, &username, cookies.clone()),
        )
        .await
        {
            Ok(Ok(o)) => {
                order = Some(o.order_id);
                break;
            }
            Ok(Err(e)) if transient(&e) => tokio::time::sleep(Duration::from_millis(200)).await,
            _ => break,
        }
    }
    let Some(order_id) = order else { return };
    given
        .lock()
        .unwrap()
        .orders
        .insert(order_id, (plan.kyc, vec![]));
    if !plan.one_shot {
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let pay = |wallet: usize| {
        let cookies = cookies.clone();
        async move {
            given
                .lock()
                .unwrap()
                .orders
                .get_mut(&order_id)
                .unwrap()
                .1
                .push(wallet);
            for _ in 0..3 {
                let r = tokio::time::timeout(
                    CALL,
                    core.pay_order(order_id, wallet_key(wallet), None, cookies.clone()),
                )
                .await;
                match r {
                    Ok(Err(e)) if transient(&e) => {
                        tokio::time::sleep(Duration::from_millis(200)).await
                    }
                    _ => return,
                }
            }
        }
    };
    match plan.pattern {
        Pattern::Never => {}
        Pattern::Once => pay(plan.wallet).await,
        Pattern::Twice => {
            pay(plan.wallet).await;
            pay(plan.wallet).await;
        }
        Pattern::TwoWallets => {
            futures_util::future::join(pay(plan.wallet), pay(plan.other_wallet)).await;
        }
    }
}

/// The outcome of a schedule that held.
struct Ran {
    orders: usize,
    paid: usize,
    failed: usize,
    unconfirmed: usize,
    crashed: bool,
    /// The seed and cookie values of the schedule, to look for in the logs once all ran.
    secrets: Vec<String>,
}

macro_rules! check {
    ($problems:expr, $cond:expr, $($arg:tt)+) => {
        if !$cond {
            $problems.push(format!($($arg)+));
        }
    };
}

async fn schedule(seed: u64) -> Result<Ran, String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let plan = Plan::draw(&mut rng);
    let w = world_with_blocks(Duration::from_millis(plan.block_ms)).await;
    w.ton
        .install_wallet(&default_payment_wallet(Network::Mainnet), Nanoton::ZERO);
    // The operator's sessions, and the clients' own logins.
    let owner_key = KeyPair::from_secret_seed(&zeroize::Zeroizing::new([42u8; 32]));
    let owner_wallet = WalletContract::new(
        WalletVersion::V4R2,
        Network::Mainnet,
        owner_key.public_key(),
    );
    let mut owners = vec![w.owner.clone()];
    for _ in 1..plan.owners {
        owners.push(
            w.fragment
                .login("owner", Some(owner_wallet.address()))
                .unwrap(),
        );
    }
    let kyc: Vec<FragmentCookies> = (0..plan.kyc_sets)
        .map(|i| {
            w.fragment
                .login("client", Some(&wallet_address(i % plan.wallets.len())))
                .unwrap()
        })
        .collect();
    let mut secrets: Vec<String> = owners
        .iter()
        .chain(&kyc)
        .flat_map(|c| {
            ["stel_ssid", "stel_token", "stel_ton_token"]
                .into_iter()
                .filter_map(|n| c.get(n).map(str::to_string))
        })
        .collect();
    secrets.extend(
        TON_WORDS
            .split(' ')
            .collect::<Vec<_>>()
            .windows(3)
            .map(|w| w.join(" ")),
    );
    for (i, amount) in plan.wallets.iter().enumerate() {
        w.ton.fund(&wallet_address(i), Nanoton::new(*amount));
    }

    let crash_on = match plan.crash {
        Crash::AfterEvent(event, nth) => Some((event, nth)),
        _ => None,
    };
    let (mut core, mut store) = w
        .core_with_services(core_config(), services(&w, &owners), crash_on)
        .await;
    let given = Mutex::new(Given::default());

    // Faults, drawn again and again while the clients drive their orders.
    {
        let killer = Arc::clone(&store);
        let driving = async {
            futures_util::future::join_all(
                plan.orders.iter().map(|o| drive(&core, o, &kyc, &given)),
            )
            .await;
        };
        let monkey = async {
            let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
            let started = Instant::now();
            loop {
                draw_faults(&w, &mut rng, false);
                if rng.gen_bool(0.2) {
                    let wallet = rng.gen_range(0..plan.wallets.len());
                    w.ton.burst(
                        &wallet_address(wallet),
                        rng.gen_range(10..80),
                        Nanoton::new(1_000),
                    );
                }
                if plan.expire_an_owner && rng.gen_bool(0.1) {
                    let owner = &owners[rng.gen_range(0..owners.len())];
                    w.fragment.expire_session(owner.get("stel_ssid").unwrap());
                }
                if let Crash::After(at) = plan.crash {
                    if started.elapsed() >= at && !killer.is_dead() {
                        killer.kill();
                    }
                }
                tokio::time::sleep(plan.monkey_every).await;
            }
        };
        futures_util::pin_mut!(monkey);
        futures_util::future::select(Box::pin(driving), monkey).await;
    }

    // A crash: a new process on the same data, and the clients whose calls were cut short
    // pay again.
    let crashed = store.disarm();
    if crashed {
        draw_faults(&w, &mut rng, true);
        drop(core);
        (core, store) = w
            .core_with_services(core_config(), services(&w, &owners), None)
            .await;
        let retry: Vec<(Uuid, usize, Option<usize>)> = {
            let g = given.lock().unwrap();
            g.orders
                .iter()
                .filter_map(|(id, (set, wallets))| wallets.first().map(|w| (*id, *w, *set)))
                .collect()
        };
        for (order_id, wallet, set) in retry {
            if core
                .order(order_id)
                .await
                .is_ok_and(|o| o.status == "created")
            {
                let _ = tokio::time::timeout(
                    Duration::from_secs(6),
                    core.pay_order(
                        order_id,
                        wallet_key(wallet),
                        None,
                        set.map(|k| kyc[k].clone()),
                    ),
                )
                .await;
            }
        }
    }

    // Calm: everything in flight must now settle.
    draw_faults(&w, &mut rng, true);
    w.ton.pause_indexer(false);
    if tokio::time::timeout(Duration::from_secs(90), core.drain())
        .await
        .is_err()
    {
        return Err("the core did not settle within 90 s of the faults ending".into());
    }
    // Fragment delivers what it was paid (its watcher reads the now-current indexer): the
    // core may have finished without asking (a delivery it lists as unconfirmed).
    let delivered_by = Instant::now() + Duration::from_secs(10);
    loop {
        let _ = w.fragment.process_now().await;
        if w.fragment.delivering() == 0 || Instant::now() > delivered_by {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Every client call has returned: what they were given is final.
    let given = std::mem::take(&mut *given.lock().unwrap());
    let problems = verify(&w, &core, &store, &given).await?;
    if !problems.is_empty() {
        return Err(format!("{plan:?}\n  - {}", problems.join("\n  - ")));
    }
    let models = core.projections().snapshot().await.unwrap();
    let orders: Vec<_> = given
        .orders
        .keys()
        .filter_map(|id| models.orders.order(id))
        .collect();
    let ran = Ran {
        orders: orders.len(),
        paid: orders.iter().filter(|o| o.status == "success").count(),
        failed: orders.iter().filter(|o| o.status == "failed").count(),
        unconfirmed: orders
            .iter()
            .filter(|o| o.delivery_confirmed == Some(false))
            .count(),
        crashed,
        secrets,
    };
    core.shutdown(Duration::from_secs(2)).await;
    drop((core, store));
    // The store file (and its WAL) never held a secret.
    for entry in std::fs::read_dir(w.dir.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        if ran.secrets.iter().any(|s| text.contains(s.as_str())) {
            return Err("a seed or cookie value is in the data directory".into());
        }
    }
    Ok(ran)
}

/// Everything that must hold once a schedule settled.
async fn verify(
    w: &World,
    core: &Core,
    store: &Arc<Halting>,
    given: &Given,
) -> Result<Vec<String>, String> {
    let mut problems = Vec::new();
    let models = core.projections().snapshot().await.unwrap();
    let mut log = Vec::new();
    loop {
        let after = log.last().map_or(0, |e: &events::RecordedEvent| e.position);
        let page = store
            .read_all(after, 1000)
            .await
            .map_err(|e| format!("cannot read the log: {e}"))?;
        if page.is_empty() {
            break;
        }
        log.extend(page);
    }
    let mut by_order: HashMap<Uuid, Vec<Event>> = HashMap::new();
    for recorded in &log {
        let event = Event::from_recorded(recorded).map_err(|e| e.to_string())?;
        if let events::StreamName::Order(id) = event.stream() {
            by_order.entry(id).or_default().push(event);
        }
    }

    // Every order a client was given exists, and ended well.
    for order_id in given.orders.keys() {
        let Some(order) = models.orders.order(order_id) else {
            problems.push(format!(
                "order {order_id} was given to a client and does not exist"
            ));
            continue;
        };
        check!(
            problems,
            ["created", "expired", "success", "failed"].contains(&order.status.as_str()),
            "order {order_id} is still {}",
            order.status
        );
        let events = by_order.get(order_id).map(Vec::as_slice).unwrap_or(&[]);
        let count = |t: &str| events.iter().filter(|e| e.event_type() == t).count();
        let finals = count("OrderFulfilled") + count("OrderFailed") + count("OrderExpired");
        check!(
            problems,
            finals <= 1,
            "order {order_id} has {finals} final events"
        );
        if order.status == "success" {
            check!(
                problems,
                count("OrderFulfilled") == 1,
                "order {order_id} succeeded without exactly one OrderFulfilled"
            );
            check!(
                problems,
                order.delivery_confirmed.is_some(),
                "order {order_id} was paid and has no delivery verdict"
            );
        }
        check!(
            problems,
            count("PaymentSubmitted") <= count("OrderPaid"),
            "order {order_id} signed more messages than it had requests"
        );
    }
    for request in models.orders.requests.values() {
        check!(
            problems,
            !["queued", "processing"].contains(&request.status.as_str()),
            "request {} of order {} is still {}",
            request.request_id,
            request.order_id,
            request.status.as_str()
        );
    }

    // What was signed, by the hash of the external message.
    let mut signed: HashMap<String, &events::PaymentSubmitted> = HashMap::new();
    for events in by_order.values() {
        for e in events {
            if let Event::PaymentSubmitted(s) = e {
                signed.insert(s.message_hash.clone(), s);
                signed.insert(s.normalized_hash.clone(), s);
            }
        }
    }
    // Every payment Fragment received: signed by us for one order, which paid once, for the
    // invoice Fragment matched it to.
    let deliveries: HashMap<String, String> = w
        .fragment
        .deliveries()
        .into_iter()
        .map(|d| (d.tx_hash, d.req_id))
        .collect();
    let fragment_address = w.fragment.payment_address();
    let mut paid_orders: HashMap<Uuid, usize> = HashMap::new();
    for tx in w.ton.history(&fragment_address) {
        let Some(source) = tx.in_msg.source.as_ref() else {
            continue;
        };
        let Some(origin) = w.ton.origin(&tx.hash) else {
            problems.push(format!("a payment to Fragment from {source} has no origin"));
            continue;
        };
        let Some(submission) = signed.get(&origin.in_msg.hash.to_hex()) else {
            problems.push(format!(
                "Fragment was paid by a message no order recorded ({})",
                origin.in_msg.hash.to_hex()
            ));
            continue;
        };
        *paid_orders.entry(submission.order_id).or_default() += 1;
        match deliveries.get(&tx.hash.to_hex()) {
            Some(req_id) => check!(
                problems,
                *req_id == submission.fragment_request_id,
                "order {} signed for invoice {} but its payment settled invoice {req_id}",
                submission.order_id,
                submission.fragment_request_id
            ),
            None => problems.push(format!(
                "order {}'s payment reached Fragment and paid no invoice (tx {} lt {} utime {}, value {:?}, bounced-out {}; invoice {} is {:?}, signed valid until {})",
                submission.order_id, tx.hash.to_hex(), tx.lt, tx.utime, tx.in_msg, tx.out_msgs.len(),
                submission.fragment_request_id, w.fragment.invoice_status(&submission.fragment_request_id), submission.valid_until
            )),
        }
    }
    for (order, n) in &paid_orders {
        check!(
            problems,
            *n == 1,
            "order {order} was paid {n} times on chain"
        );
        let status = models.orders.order(order).map(|o| o.status.clone());
        check!(
            problems,
            status.as_deref() == Some("success"),
            "order {order} was paid on chain but is {status:?}"
        );
    }

    // Each wallet spent on chain exactly what the log says it paid.
    let mut spent_log: HashMap<String, i128> = HashMap::new();
    for events in by_order.values() {
        let wallet = events.iter().find_map(|e| match e {
            Event::PaymentSubmitted(s) => Some(s.wallet_address.clone()),
            _ => None,
        });
        for e in events {
            let (wallet, amount) = match (e, &wallet) {
                (Event::OrderFulfilled(f), Some(w)) => (
                    w,
                    i128::from(f.cost_nanoton.as_u64())
                        + i128::from(f.collected_nanoton.as_u64())
                        + i128::from(f.network_fee_nanoton.as_u64()),
                ),
                (Event::OrderFailed(f), Some(w)) => (w, i128::from(f.network_fee_nanoton.as_u64())),
                _ => continue,
            };
            *spent_log.entry(wallet.clone()).or_default() += amount;
        }
    }
    let mut wallets: HashSet<String> = spent_log.keys().cloned().collect();
    for i in 0..8 {
        wallets.insert(wallet_key(i).wallet.raw_address());
    }
    for raw in wallets {
        let address = fragment_gateway::ton::address::parse_address(&raw).unwrap();
        let spent_chain: i128 = w
            .ton
            .history(&address)
            .iter()
            .filter(|t| t.in_msg.source.is_none())
            .map(|t| -t.balance_change)
            .sum();
        let logged = spent_log.get(&raw).copied().unwrap_or(0);
        check!(
            problems,
            spent_chain == logged,
            "wallet {raw} spent {spent_chain} nanoton on chain, the log says {logged}"
        );
    }

    let report = fragment_gateway::ops::replay(&(Arc::clone(store) as Arc<dyn EventStore>))
        .await
        .map_err(|e| format!("replay failed: {e}"))?;
    for c in &report.checks {
        check!(
            problems,
            c.ok,
            "replay check {:?} failed: {:?}",
            c.name,
            c.problems
        );
    }
    check!(
        problems,
        report.undecodable.is_empty(),
        "replay found undecodable events: {:?}",
        report.undecodable
    );
    // The read models' tables, written batch by batch across crashes and restarts, equal a
    // fold of the whole log.
    let head = log.last().map_or(0, |e| e.position);
    core.projections().wait_for(head).await;
    let live = core
        .projections()
        .snapshot()
        .await
        .map_err(|e| format!("cannot read the read models: {e}"))?;
    let rebuilt = &report.models;
    for (part, equal) in [
        ("position", live.position == rebuilt.position),
        ("orders", live.orders.orders == rebuilt.orders.orders),
        ("requests", live.orders.requests == rebuilt.orders.requests),
        ("queue", live.queue == rebuilt.queue),
        ("commission", live.commission == rebuilt.commission),
        ("history", live.history == rebuilt.history),
    ] {
        check!(
            problems,
            equal,
            "the read models' {part} differ from a fold of the log"
        );
    }
    let fee_received: i128 = w.ton.net_change(&w.fee.address);
    check!(
        problems,
        fee_received == i128::from(report.totals.commission_collected_nanoton.as_u64()),
        "the fee address received {fee_received} nanoton, the log says {} was collected",
        report.totals.commission_collected_nanoton.as_u64()
    );
    Ok(problems)
}

/// Runs one schedule in an actix system of its own, catching a panic as a failure.
fn run_one(seed: u64) -> Result<Ran, String> {
    let run = std::panic::catch_unwind(AssertUnwindSafe(|| {
        actix_web::rt::System::new().block_on(schedule(seed))
    }));
    match run {
        Ok(result) => result,
        Err(panic) => Err(format!(
            "panicked: {}",
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        )),
    }
}

fn seeds() -> Vec<u64> {
    if let Ok(seed) = std::env::var("FG_CHAOS_SEED") {
        return vec![seed.trim().parse().expect("FG_CHAOS_SEED is a number")];
    }
    let n = std::env::var("FG_CHAOS_SCHEDULES")
        .ok()
        .map(|n| n.trim().parse().expect("FG_CHAOS_SCHEDULES is a number"))
        .unwrap_or(DEFAULT_SCHEDULES);
    let first = std::env::var("FG_CHAOS_FIRST_SEED")
        .ok()
        .map(|s| s.trim().parse().expect("FG_CHAOS_FIRST_SEED is a number"))
        .unwrap_or(FIRST_SEED);
    (0..n).map(|i| first + i).collect()
}

#[test]
fn randomized_fault_schedules_never_double_pay_strand_or_lose_money() {
    capture_logs();
    let seeds = seeds();
    let next = AtomicU64::new(0);
    let results: Mutex<Vec<(u64, Result<Ran, String>)>> = Mutex::new(Vec::new());
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..PARALLEL.min(seeds.len()) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst) as usize;
                let Some(&seed) = seeds.get(i) else { break };
                let result = run_one(seed);
                if let Err(e) = &result {
                    eprintln!("schedule {seed} FAILED (replay: FG_CHAOS_SEED={seed}): {e}");
                }
                results.lock().unwrap().push((seed, result));
            });
        }
    });
    let results = results.into_inner().unwrap();
    let logs = String::from_utf8_lossy(&log_buffer().lock().unwrap()).into_owned();
    let mut failures: Vec<String> = Vec::new();
    let (mut orders, mut paid, mut failed, mut unconfirmed, mut crashed) = (0, 0, 0, 0, 0);
    for (seed, result) in &results {
        match result {
            Ok(ran) => {
                orders += ran.orders;
                paid += ran.paid;
                failed += ran.failed;
                unconfirmed += ran.unconfirmed;
                crashed += usize::from(ran.crashed);
                if ran.secrets.iter().any(|s| logs.contains(s.as_str())) {
                    failures.push(format!(
                        "schedule {seed}: a seed or cookie value is in the logs"
                    ));
                }
            }
            Err(e) => failures.push(format!("schedule {seed} (FG_CHAOS_SEED={seed}): {e}")),
        }
    }
    eprintln!(
        "chaos: {} schedules in {:.1} s: {orders} orders, {paid} paid, {failed} failed, {unconfirmed} with an unconfirmed delivery, {crashed} schedules crashed and restarted; {} failing",
        results.len(),
        started.elapsed().as_secs_f64(),
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
