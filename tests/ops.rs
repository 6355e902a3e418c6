//! The operator's view of the log: projections rebuilt from position 0 equal the live ones
//! after a randomized run of many orders (across a restart from a checkpoint); `replay`
//! adds the money up and checks it; `audit`, `replay` and `projections rebuild` work as
//! commands on a copy of the data directory, and refuse clearly what they cannot do.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use events::{
    Event, EventMetadata, ExpectedVersion, OrderCreated, OrderFulfilled, OrderMode, OrderPaid,
    Product, StreamName,
};
use fragment_gateway::actors::{Core, CoreConfig, Liveness, PayerKey};
use fragment_gateway::domain::{Policy, Username};
use fragment_gateway::ops::{self, DataDir};
use fragment_gateway::store::contract;
use fragment_gateway::store::{EventStore, SqliteStore};
use fragment_gateway::ton::{KeyPair, Nanoton, Network, WalletContract, WalletVersion};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use uuid::Uuid;

const BIN: &str = env!("CARGO_BIN_EXE_fragment-gateway");

fn command(args: &[&str], data_dir: &Path) -> (i32, String, String) {
    command_on(args, data_dir, None)
}

/// A tool run on a data directory, or on the world's PostgreSQL schema when it has one.
fn command_on(
    args: &[&str],
    data_dir: &Path,
    schema: Option<&contract::SchemaGuard>,
) -> (i32, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    // migrate-store names both its stores itself.
    if args.first() != Some(&"migrate-store") {
        cmd.arg("--data-dir").arg(data_dir);
    }
    cmd.env_remove("FG_DATA_DIR")
        .env_remove("FG_STORE__BACKEND")
        .env_remove("FG_STORE__URL")
        .env_remove("FG_STORE__SCHEMA");
    if let Some(schema) = schema {
        cmd.env("FG_STORE__BACKEND", "postgres")
            .env("FG_STORE__URL", contract::test_postgres_url())
            .env("FG_STORE__SCHEMA", &schema.0.config.schema);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// A payer of its own: wallet `n` of the run.
fn wallet_payer(n: u8) -> PayerKey {
    let key = KeyPair::from_secret_seed(&zeroize::Zeroizing::new([100 + n; 32]));
    let version = if n.is_multiple_of(2) {
        WalletVersion::V4R2
    } else {
        WalletVersion::V5R1
    };
    let wallet = WalletContract::new(version, Network::Mainnet, key.public_key());
    PayerKey { key, wallet }
}

const WALLETS: u8 = 4;
/// Wallet 3 can afford a few Stars orders and nothing more.
const POOR: u8 = 3;

fn random_product(rng: &mut StdRng) -> Product {
    if rng.gen_bool(0.2) {
        Product::Premium {
            months: [3, 6, 12][rng.gen_range(0..3)],
        }
    } else {
        Product::Stars {
            amount: rng.gen_range(50..=400),
        }
    }
}

struct Run {
    store: Arc<Halting>,
}

impl Run {
    async fn start(w: &World, config: &CoreConfig) -> (Core, Run) {
        let store = Arc::new(Halting::closable(w.open_store().await));
        let mut services = w.services();
        // Two owner sessions (the operator logged in twice, the same wallet connected): the
        // pool takes turns.
        let owner_key = KeyPair::from_secret_seed(&zeroize::Zeroizing::new([42u8; 32]));
        let owner_wallet = WalletContract::new(
            WalletVersion::V4R2,
            Network::Mainnet,
            owner_key.public_key(),
        );
        services.owner_cookies.push(
            w.fragment
                .login("owner", Some(owner_wallet.address()))
                .unwrap(),
        );
        let core = Core::start(
            config.clone(),
            services,
            Arc::clone(&store) as Arc<dyn EventStore>,
            Liveness::default(),
        )
        .await
        .unwrap();
        (core, Run { store })
    }

    /// Stops the core as the service stops (checkpoint written), then closes the file.
    async fn stop(self, core: Core) {
        core.shutdown(Duration::from_secs(30)).await;
        self.store.kill();
    }
}

/// Creates and pays `n` random orders at once, then waits until every one has ended:
/// fulfilled, failed, or expired unpaid (also after a queue timeout).
async fn random_orders(w: &World, core: &Core, rng: &mut StdRng, n: usize) -> Vec<Uuid> {
    let kyc_payer = 0;
    let kyc_cookies = w.fragment.login("client", None).unwrap();
    let mut created = vec![];
    for i in 0..n {
        let product = random_product(rng);
        let user = ["@alice", "@bob"][rng.gen_range(0..2)];
        // The first order of each batch is a KYC one, so that every run has one.
        let kyc = i == 0 || rng.gen_bool(0.15);
        let cookies = kyc.then(|| kyc_cookies.clone());
        let order = match core
            .create_order(product, &Username::parse(user).unwrap(), cookies.clone())
            .await
        {
            Ok(order) => order,
            // An earlier order of the run gave this user Premium.
            Err(e) if e.api_code().0 == "PREMIUM_ALREADY_ACTIVE" => continue,
            Err(e) => panic!("creating an order of {product:?} for {user}: {e}"),
        };
        created.push((order.order_id, kyc, cookies));
    }
    let mut payments = vec![];
    for (i, (order_id, kyc, cookies)) in created.iter().enumerate() {
        // One in six is never paid and expires.
        if i > 0 && rng.gen_range(0..6) == 0 {
            continue;
        }
        let wallet = if *kyc {
            kyc_payer
        } else {
            rng.gen_range(0..WALLETS)
        };
        let twice = rng.gen_bool(0.2);
        let (core, cookies, order_id) = (core.clone(), cookies.clone(), *order_id);
        payments.push(async move {
            for _ in 0..if twice { 2 } else { 1 } {
                match core
                    .pay_order(order_id, wallet_payer(wallet), None, cookies.clone())
                    .await
                {
                    Ok(_) => {}
                    Err(e) => {
                        let code = e.api_code().0;
                        assert!(
                            ["INSUFFICIENT_BALANCE", "DEBT_LIMIT_EXCEEDED"].contains(&code),
                            "paying {order_id} from wallet {wallet}: {e}"
                        );
                    }
                }
            }
        });
    }
    futures_util::future::join_all(payments).await;
    core.drain().await.unwrap();
    let ids: Vec<Uuid> = created.iter().map(|c| c.0).collect();
    until("every order ended", || async {
        for id in &ids {
            let s = &core.order(*id).await.unwrap().status;
            if !["success", "failed", "expired"].contains(&s.as_str()) {
                return false;
            }
        }
        true
    })
    .await;
    ids
}

#[actix_web::test]
async fn projections_rebuilt_from_the_log_equal_the_live_ones_after_a_randomized_run() {
    let seed: u64 = std::env::var("FG_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("randomized run with FG_TEST_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);

    let w = world().await;
    for n in 0..WALLETS {
        let amount = if n == POOR {
            Nanoton::new(1_500_000_000)
        } else {
            Nanoton::from_ton(60)
        };
        w.ton.fund(wallet_payer(n).wallet.address(), amount);
    }
    let policy = Policy {
        order_ttl: chrono::Duration::seconds(5),
        rate_no_kyc: "0.02".parse().unwrap(),
        collection_threshold_nanoton: Nanoton::new(150_000_000),
        debt_limit_nanoton: Nanoton::new(2_000_000_000),
        ..Policy::default()
    };
    let config = config(policy);

    // First run, then a stop.
    let (core, run) = Run::start(&w, &config).await;
    let mut orders = random_orders(&w, &core, &mut rng, 24).await;
    let at_stop = core.projections().snapshot().await.unwrap();
    run.stop(core).await;

    // Second run: starts from the tables where the first left them, then goes on.
    let (core, run) = Run::start(&w, &config).await;
    assert_eq!(
        core.projections().snapshot().await.unwrap(),
        at_stop,
        "a restart finds the read models as they were at the stop"
    );
    orders.extend(random_orders(&w, &core, &mut rng, 16).await);
    let head = core.store().head().await.unwrap();
    core.projections().wait_for(head).await;
    let live = core.projections().snapshot().await.unwrap();
    let store: Arc<dyn EventStore> = Arc::clone(core.store());

    let rebuilt = ops::rebuild_in_memory(&store).await.unwrap();
    assert_eq!(rebuilt.position, head);
    assert_eq!(
        live, rebuilt,
        "live read models (tables across a restart, batch by batch) equal a fold from position 0"
    );

    // The money adds up: Fragment got exactly what the fulfilled orders cost, the operator
    // exactly what was collected, and each fulfilled order was delivered once.
    let report = ops::replay(&store).await.unwrap();
    eprintln!("{}", report.render_text());
    for r in live.orders.requests.values() {
        if let Some(e) = &r.error {
            eprintln!(
                "{} {:?} {}: {e}",
                r.wallet_address,
                r.mode,
                r.status.as_str()
            );
        }
    }
    assert!(report.consistent(), "{}", report.render_text());
    assert_eq!(report.models, rebuilt);
    assert_eq!(report.events, head);
    let successes = orders
        .iter()
        .filter(|id| live.orders.order(id).unwrap().status == "success")
        .count();
    assert!(successes > 0, "the run fulfilled nothing");
    let fulfilled_costs = Nanoton::checked_sum(
        live.orders
            .requests
            .values()
            .filter_map(|r| r.result.as_ref())
            .map(|r| r.cost_nanoton),
    )
    .unwrap();
    assert_eq!(report.totals.purchases_nanoton, fulfilled_costs);
    assert_eq!(
        w.ton.balance(&w.fragment.payment_address()),
        fulfilled_costs
    );
    assert_eq!(
        w.ton.balance(&w.fee.address),
        report.totals.commission_collected_nanoton
    );
    assert_eq!(w.fragment.deliveries().len(), successes);
    assert_eq!(
        report.orders_by_status.values().sum::<u64>(),
        orders.len() as u64
    );

    // The commands, on a copy of the stopped service's data directory (or its schema).
    run.stop(core).await;
    let copy = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(w.dir.path()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.path().join(entry.file_name())).unwrap();
    }
    let command = |args: &[&str], dir: &Path| command_on(args, dir, w.schema.as_ref());

    let (code, out, err) = command(&["replay", "--json"], copy.path());
    assert_eq!(code, 0, "{err}");
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["events"], head);
    assert_eq!(
        json["totals"]["purchases_nanoton"],
        fulfilled_costs.as_u64()
    );
    assert_eq!(
        json["totals"]["commission_outstanding_nanoton"],
        live.commission.totals.outstanding_nanoton.as_u64()
    );
    assert!(json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["ok"] == true));

    // The tables the service left at its stop are exactly what a rebuild computes.
    let (code, out, err) = command(&["projections", "rebuild", "--json"], copy.path());
    assert_eq!(code, 0, "{err}");
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["position"], head, "{out}");
    assert_eq!(json["head"], head, "{out}");
    assert_eq!(json["comparison"]["differing"], 0, "{out}");
    assert_eq!(json["comparison"]["summary_compared"], true, "{out}");
    assert_eq!(json["replaced"], false, "{out}");
    assert_eq!(json["orders"], rebuilt.orders.orders.len(), "{out}");

    // One fulfilled order's history, in the order it happened.
    let done = live
        .orders
        .orders
        .values()
        .find(|o| o.mode == OrderMode::NoKyc && o.delivery_confirmed == Some(true))
        .unwrap();
    let (code, out, err) = command(&["audit", &done.order_id.to_string()], copy.path());
    assert_eq!(code, 0, "{err}");
    let expected = [
        "OrderCreated",
        "OrderPaid",
        "OrderQueued",
        "OrderProcessingStarted",
        "PaymentSubmitted",
        "OrderFulfilled",
        "OrderDeliveryConfirmed",
    ];
    let types: Vec<&str> = out
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().nth(2).unwrap())
        .collect();
    eprintln!("{out}");
    assert_eq!(types, expected, "{out}");
    assert!(out.contains(done.tx_hash.as_deref().unwrap()), "{out}");
    assert!(out.contains(&format!("@{}", done.username)), "{out}");

    // A wallet by its user-friendly address: its commission account and the orders it paid.
    let payer = (0..WALLETS)
        .map(|n| wallet_payer(n).wallet)
        .max_by_key(|w| live.history.count(&w.raw_address()))
        .unwrap();
    let raw = payer.raw_address();
    let (code, out, err) = command(
        &["audit", &payer.friendly_address(true), "--json"],
        copy.path(),
    );
    assert_eq!(code, 0, "{err}");
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["stream"], format!("wallet-{raw}"));
    assert_eq!(
        json["orders"].as_array().unwrap().len(),
        live.history.count(&raw)
    );
    assert_eq!(
        json["commission"]["debt_nanoton"],
        live.commission.wallet(&raw).debt_nanoton.as_u64()
    );
    for event in json["events"].as_array().unwrap() {
        assert!(
            [
                "CommissionAccrued",
                "CommissionCollected",
                "DebtLimitReached"
            ]
            .contains(&event["event_type"].as_str().unwrap()),
            "{event}"
        );
    }
    assert_no_seed_in(copy.path());

    // The whole log moved to the other backend: the copy replays the same, and its read
    // models, rebuilt from the copy, are what a rebuild there computes.
    let (_, replayed, _) = command(&["replay", "--json"], copy.path());
    let other = contract::SchemaGuard(contract::TestSchema::new());
    let moved = tempfile::tempdir().unwrap();
    let (from, from_schema, to, to_schema) = match &w.schema {
        None => (
            format!("sqlite:{}", copy.path().display()),
            "public".to_string(),
            format!("postgres:{}", contract::test_postgres_url()),
            other.0.config.schema.clone(),
        ),
        Some(schema) => (
            format!("postgres:{}", contract::test_postgres_url()),
            schema.0.config.schema.clone(),
            format!("sqlite:{}", moved.path().display()),
            "public".to_string(),
        ),
    };
    // The source's outbox reached the head and still owes one delivery.
    let owed = {
        let source = source_store(&w, copy.path()).await;
        let outbox = source.read_models().unwrap().outbox();
        let at = outbox.position().await.unwrap();
        let owed = fragment_gateway::webhooks::outbox::NewDelivery {
            event_id: Uuid::now_v7(),
            position: head,
            order_id: Uuid::now_v7(),
            kind: "order.created".into(),
            url: "https://shop.example/hook".into(),
            body: "{}".into(),
            created_at: chrono::Utc::now(),
        };
        outbox.add(at, head, vec![owed.clone()]).await.unwrap();
        source.close().await.unwrap();
        owed
    };
    let (code, out, err) = command_on(
        &[
            "migrate-store",
            "--from",
            &from,
            "--from-schema",
            &from_schema,
            "--to",
            &to,
            "--to-schema",
            &to_schema,
            "--json",
        ],
        copy.path(),
        None,
    );
    assert_eq!(code, 0, "{out}{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["events"], head, "{out}");
    assert_eq!(report["replay_matches"], true, "{out}");
    assert_eq!(report["orders"], rebuilt.orders.orders.len(), "{out}");
    let target = if w.schema.is_some() {
        (moved.path(), None)
    } else {
        (copy.path(), Some(&other))
    };
    let (code, out, err) = command_on(&["replay", "--json"], target.0, target.1);
    assert_eq!(code, 0, "{err}");
    let strip = |text: &str| {
        let mut json: Value = serde_json::from_str(text).unwrap();
        json.as_object_mut().unwrap().remove("elapsed_ms");
        json
    };
    assert_eq!(
        strip(&out),
        strip(&replayed),
        "replay differs after the move"
    );
    let (code, out, err) = command_on(&["projections", "rebuild", "--json"], target.0, target.1);
    assert_eq!(code, 0, "{err}");
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["comparison"]["differing"], 0, "{out}");
    assert_eq!(json["replaced"], false, "{out}");
    // The idempotency key and the outbox's place moved with the log.
    let moved_store: Arc<dyn EventStore> = match &w.schema {
        None => Arc::new(
            fragment_gateway::store::PostgresStore::open(other.0.config.clone())
                .await
                .unwrap(),
        ),
        Some(_) => Arc::new(SqliteStore::open(moved.path().join("events.sqlite3")).unwrap()),
    };
    let source_store = source_store(&w, copy.path()).await;
    let (old, new) = (
        source_store.read_models().unwrap(),
        moved_store.read_models().unwrap(),
    );
    let name = fragment_gateway::idempotency::SERVICE_KEY;
    assert_eq!(
        *new.service_key(name).await.unwrap(),
        *old.service_key(name).await.unwrap()
    );
    assert_eq!(new.outbox().position().await.unwrap(), head);
    let carried = new.outbox().list(None, None, 0, 10).await.unwrap();
    assert_eq!(carried.total, 1);
    assert_eq!(
        (carried.items[0].event_id, carried.items[0].status.as_str()),
        (owed.event_id, "pending")
    );
    moved_store.close().await.unwrap();
    source_store.close().await.unwrap();
    // Into a store that holds events already: refused, nothing changed.
    let (code, _, err) = command_on(
        &[
            "migrate-store",
            "--from",
            &from,
            "--from-schema",
            &from_schema,
            "--to",
            &to,
            "--to-schema",
            &to_schema,
        ],
        copy.path(),
        None,
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("already holds"), "{err}");
}

/// The store a migration copies from: the copy's file, or the world's schema.
async fn source_store(w: &World, copy: &Path) -> Arc<dyn EventStore> {
    match &w.schema {
        None => Arc::new(SqliteStore::open(copy.join("events.sqlite3")).unwrap()),
        Some(schema) => Arc::new(
            fragment_gateway::store::PostgresStore::open(schema.0.config.clone())
                .await
                .unwrap(),
        ),
    }
}

fn order_created(order_id: Uuid, commission: u64) -> OrderCreated {
    let commission = Nanoton::new(commission);
    let now = chrono::Utc::now();
    OrderCreated {
        order_id,
        product: Product::Stars { amount: 100 },
        username: "alice".into(),
        mode: OrderMode::NoKyc,
        cookie_fingerprint: None,
        price_nanoton: Nanoton::new(500_000_000),
        commission_rate: "0.01".parse().unwrap(),
        commission_nanoton: commission,
        total_nanoton: Nanoton::new(500_000_000).checked_add(commission).unwrap(),
        created_at: now,
        expires_at: now + chrono::Duration::minutes(10),
        payment_method: events::PaymentMethod::Ton,
        price_usdt: None,
    }
}

async fn append(store: &SqliteStore, events: Vec<Event>) {
    let stream = events[0].stream().to_string();
    let new = events
        .iter()
        .map(|e| e.to_new_event(EventMetadata::default()))
        .collect();
    store
        .append(&stream, ExpectedVersion::Any, new)
        .await
        .unwrap();
}

#[tokio::test]
async fn replay_names_an_order_whose_commission_was_never_accrued_and_an_unreadable_event() {
    let dir = tempfile::tempdir().unwrap();
    let order_id = Uuid::new_v4();
    {
        let store = SqliteStore::open(dir.path().join(DataDir::EVENTS_FILE)).unwrap();
        let now = chrono::Utc::now();
        let request_id = Uuid::new_v4();
        append(
            &store,
            vec![
                order_created(order_id, 5_000_000).into(),
                OrderPaid {
                    order_id,
                    request_id,
                    wallet_address: format!("0:{}", "ab".repeat(32)),
                    wallet_friendly: "UQ...".into(),
                    wallet_version: "v4r2".into(),
                    account_index: None,
                    balance_nanoton: Nanoton::new(1_000_000_000),
                    debt_nanoton: Nanoton::new(0),
                    paid_at: now,
                }
                .into(),
                // Fulfilled with a commission, but the wallet never accrued it.
                OrderFulfilled {
                    order_id,
                    request_id,
                    tx_hash: "aa".repeat(32),
                    tx_lt: 7,
                    cost_nanoton: Nanoton::new(500_000_000),
                    commission_nanoton: Nanoton::new(5_000_000),
                    collected_nanoton: Nanoton::new(0),
                    debt_after_nanoton: Nanoton::new(5_000_000),
                    network_fee_nanoton: Nanoton::new(1),
                    completed_at: now,
                    cost_usdt: None,
                }
                .into(),
            ],
        )
        .await;
        // An event type a later version wrote.
        let mut future =
            Event::from(order_created(Uuid::new_v4(), 0)).to_new_event(EventMetadata::default());
        future.event_type = "OrderTeleported".into();
        store
            .append(
                &StreamName::order(Uuid::new_v4()).to_string(),
                ExpectedVersion::NoStream,
                vec![future],
            )
            .await
            .unwrap();
        // Closed before the tool opens the file: a dropped store lets go of it a moment later.
        EventStore::close(&store).await.unwrap();
    }
    let (code, out, err) = command(&["replay"], dir.path());
    assert_eq!(code, 1, "{out}");
    assert!(err.contains("not consistent"), "{err}");
    assert!(
        out.contains("check every fulfilled order accrued its commission, once: FAILED"),
        "{out}"
    );
    assert!(out.contains(&order_id.to_string()), "{out}");
    assert!(
        out.contains("UNDECODABLE position 4 (OrderTeleported"),
        "{out}"
    );
    assert!(
        out.contains("check each order paid at most once: ok"),
        "{out}"
    );

    // The same order audited: its three events, with the key figures in TON.
    let (code, out, err) = command(&["audit", &format!("order-{order_id}")], dir.path());
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with(&format!("stream order-{order_id} (3 events)")));
    assert!(
        out.contains("100 Stars for @alice, no_kyc mode: price 0.5 TON, commission 0.005 TON"),
        "{out}"
    );
    assert!(out.contains("cost 0.5 TON"), "{out}");
}

#[tokio::test]
async fn the_commands_refuse_what_they_cannot_do_and_say_why() {
    let empty = tempfile::tempdir().unwrap();
    let missing = empty.path().join("no-such-dir");

    // A wrong path is an error, and creates nothing.
    for args in [
        &["audit", &Uuid::new_v4().to_string()][..],
        &["replay"][..],
        &["projections", "rebuild"][..],
    ] {
        let (code, _, err) = command(args, &missing);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains("no event store in"), "{args:?}: {err}");
        assert!(err.contains("--data-dir"), "{err}");
        assert!(!missing.exists());
    }

    let dir = tempfile::tempdir().unwrap();
    let order_id = Uuid::new_v4();
    {
        let store = SqliteStore::open(dir.path().join(DataDir::EVENTS_FILE)).unwrap();
        append(&store, vec![order_created(order_id, 0).into()]).await;

        // While a gateway holds the store, the commands say so instead of waiting or
        // reading under it.
        let (code, _, err) = command(&["replay"], dir.path());
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("in use by a running gateway"), "{err}");
        EventStore::close(&store).await.unwrap();
    }

    let (code, _, err) = command(&["audit", "not-an-order"], dir.path());
    assert_eq!(code, 2);
    assert!(
        err.contains("`not-an-order` is neither an order id (UUID) nor a TON wallet address"),
        "{err}"
    );

    let unknown = Uuid::new_v4();
    let (code, _, err) = command(&["audit", &unknown.to_string()], dir.path());
    assert_eq!(code, 2);
    assert!(
        err.contains(&format!("no events for order {unknown}")),
        "{err}"
    );

    let stranger = wallet_payer(9).wallet.friendly_address(false);
    let (code, _, err) = command(&["audit", &stranger], dir.path());
    assert_eq!(code, 2);
    assert!(err.contains("no events for wallet 0:"), "{err}");

    // No service ever folded this log: a rebuild says the live tables were never built, and
    // puts its own in their place, where the next start (or tool) finds them.
    let (code, out, err) = command(&["projections", "rebuild"], dir.path());
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("from position 0 to 1: 1 orders"), "{out}");
    assert!(out.contains("never built"), "{out}");
    assert!(
        out.contains("the rebuilt read models are now the live ones"),
        "{out}"
    );
    let (code, out, err) = command(&["projections", "rebuild", "--json"], dir.path());
    assert_eq!(code, 0, "{err}");
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (json["position"].as_u64(), json["replaced"].as_bool()),
        (Some(1), Some(false)),
        "{out}"
    );
    let store = SqliteStore::open(dir.path().join(DataDir::EVENTS_FILE)).unwrap();
    let tables = store.read_models().unwrap();
    assert_eq!(tables.state().await.unwrap().position, 1);
    assert_eq!(
        tables.order(order_id).await.unwrap().unwrap().status,
        "created"
    );
    EventStore::close(&store).await.unwrap();
}
