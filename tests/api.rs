//! The HTTP API over loopback, as a client sees it: a sandbox gateway (both simulators
//! in-process) on a random port with a fresh data directory per test.

mod sandbox;

use std::time::Duration;

use base64::Engine;
use fragment_gateway::sim::fragment::state::Prices;
use fragment_gateway::ton::{KeyPair, Nanoton, Network, WalletContract, WalletVersion};
use sandbox::{assert_error, assert_rate_limited, spawn, TestApp};
use serde_json::{json, Value};

impl TestApp {
    /// Polls the order until Fragment confirmed its delivery.
    async fn wait_delivered(&self, order_id: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let (_, body) = self.get(&format!("/api/v1/orders/{order_id}")).await;
            if body["data"]["delivery_confirmed"] == true {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "never delivered: {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn ton(nanoton: u64) -> String {
    Nanoton::new(nanoton).to_ton_string()
}

/// A valid seed of a wallet nobody funded.
fn unfunded_seed() -> (String, WalletContract) {
    // The BIP39 test mnemonic: valid, and not the sandbox's demo wallet.
    let words = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";
    let seed = base64::engine::general_purpose::STANDARD.encode(words);
    let key = fragment_gateway::ton::Seed::from_words(words)
        .unwrap()
        .derive_key(Some(0))
        .unwrap();
    (
        seed,
        WalletContract::new(WalletVersion::V5R1, Network::Mainnet, key.public_key()),
    )
}

#[actix_web::test]
async fn health_rates_prices_and_queue_answer_in_the_envelope() {
    let t = spawn(&[]).await;
    // The sandbox's demo wallet holds TON and USDT on the simulated chain.
    let demo = t.sandbox().demo_wallet.address().clone();
    assert_eq!(t.sandbox().ton.balance(&demo), Nanoton::from_ton(100));
    assert_eq!(
        t.sandbox().ton.usdt_balance(&demo),
        fragment_gateway::ton::jetton::JettonAmount(100_000_000)
    );
    let (status, body) = t.get("/health").await;
    assert_eq!(status, 200);
    let h = &body["data"];
    assert_eq!(body["success"], true);
    assert_eq!(h["status"], "ok");
    assert_eq!(h["network"], "sandbox");
    assert_eq!(
        h["store"],
        fragment_gateway::store::contract::test_backend()
    );
    assert_eq!(h["queue_length"], 0);
    assert!(h["version"].is_string() && h["uptime_seconds"].is_u64());

    let (_, body) = t.get("/api/v1/commission/rates").await;
    let r = &body["data"];
    assert_eq!(
        (&r["rate_no_kyc"], &r["rate_with_kyc"]),
        (&json!(1.0), &json!(0.0))
    );
    assert_eq!(r["rate_no_kyc_decimal"], json!(0.01));
    assert_eq!(r["rate_with_kyc_decimal"], json!(0.0));
    assert!(r["updated_at"].as_str().unwrap().ends_with('Z'));

    let prices = Prices::default();
    let (_, body) = t.get("/api/v1/prices").await;
    let p = &body["data"];
    assert_eq!(p["stars"]["price_per_star_ton"], ton(prices.star));
    assert_eq!(body["stars"], p["stars"], "mirrored at the top level");
    assert_eq!(p["premium"]["3_months"]["base_ton"], ton(prices.premium_3));
    assert_eq!(
        p["premium"]["12_months"]["base_ton"],
        ton(prices.premium_12)
    );
    assert_eq!(p["ton_usd"], "3");
    let packages = p["stars"]["packages"].as_array().unwrap();
    assert!(packages
        .iter()
        .any(|k| k["amount"] == 100 && k["price_ton"] == ton(prices.stars(100))));

    let (_, body) = t.get("/api/v1/queue/status").await;
    for key in [
        "queue_length",
        "pending",
        "processing",
        "total_processed",
        "completed",
        "failed",
        "estimated_wait_seconds",
        "average_processing_seconds",
    ] {
        assert!(body["data"][key].is_number(), "{key}: {body}");
    }
    assert_eq!(body["data"]["is_paused"], false);
    let (_, body) = t.get("/api/v1/queue").await;
    assert_eq!(body["data"]["queue_length"], 0);
    t.app.stop().await;
}

#[actix_web::test]
async fn a_two_step_stars_order_in_no_kyc_mode_is_right_to_the_nanoton() {
    let t = spawn(&[]).await;
    let price = Prices::default().stars(100);
    let commission = price / 100;
    let (status, body) = t
        .post(
            "/api/v1/orders/stars",
            json!({"username": "@alice", "amount": 100}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let order = &body["data"];
    assert_eq!(order["status"], "created");
    assert_eq!(order["type"], "stars");
    assert_eq!(order["amount"], 100);
    assert_eq!(order["mode"], "no_kyc");
    assert_eq!(order["username"], "@alice");
    assert_eq!(order["price_ton"], ton(price));
    assert_eq!(order["commission_rate"], json!(0.01));
    assert_eq!(order["commission_ton"], ton(commission));
    assert_eq!(order["total_ton"], ton(price + commission));
    let order_id = order["order_id"].as_str().unwrap().to_string();

    let (status, body) = t
        .post(
            &format!("/api/v1/orders/{order_id}/pay"),
            json!({"seed": t.seed}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let paid = &body["data"];
    assert_eq!(paid["order_id"], order_id.as_str());
    assert_eq!(paid["status"], "queued");
    // Queued behind others, or already taken by a free lane (then no position): both are
    // "queued" to the client, and the message says which.
    match paid["position"].as_u64() {
        Some(position) => {
            assert!(position >= 1, "{paid}");
            assert_eq!(
                paid["message"],
                format!("Payment queued at position {position}"),
                "{paid}"
            );
        }
        None => {
            assert!(paid["position"].is_null(), "{paid}");
            assert_eq!(paid["message"], "Payment is being processed", "{paid}");
        }
    }
    let request_id = paid["request_id"].as_str().unwrap().to_string();

    // Paying again with the same seed is the same request, through the other route too.
    let (status, again) = t
        .post(
            "/api/v1/stars/pay",
            json!({"order_id": order_id, "seed": t.seed}),
        )
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["data"]["request_id"], request_id.as_str());

    let request = t.wait_request(&request_id).await;
    assert_eq!(request["status"], "completed", "{request}");
    assert_eq!(request["id"], request_id.as_str());
    let result = &request["result"];
    assert_eq!(result["success"], true);
    assert_eq!(result["cost_ton"], ton(price));
    assert_eq!(result["commission_ton"], ton(commission));
    assert_eq!(result["commission_balance_ton"], ton(commission));
    assert_eq!(result["stars_amount"], 100);
    assert_eq!(result["mode"], "no_kyc");
    let tx = result["transaction_hash"].as_str().unwrap();
    assert_eq!(tx.len(), 64);

    let (_, body) = t.get(&format!("/api/v1/orders/{order_id}")).await;
    assert_eq!(body["data"]["status"], "success");
    assert_eq!(body["data"]["tx_hash"], tx);
    let demo = t.sandbox().demo_wallet.friendly_address(false);
    assert_eq!(body["data"]["wallet_address"], demo.as_str());

    // Fragment got the price, once; the wallet owes the commission.
    t.wait_delivered(&order_id).await;
    assert_eq!(
        t.sandbox()
            .ton
            .balance(&t.sandbox().fragment.payment_address())
            .as_u64(),
        price
    );
    assert_eq!(t.sandbox().fragment.deliveries().len(), 1);
    let (_, body) = t
        .get(&format!("/api/v1/commission/balance?wallet_address={demo}"))
        .await;
    assert_eq!(body["data"]["debt_ton"], ton(commission));
    assert_eq!(body["data"]["accrued_total_ton"], ton(commission));
    assert_eq!(body["data"]["debt_limit_ton"], "2");
    let (_, body) = t
        .get(&format!("/api/v1/transactions?wallet_address={demo}"))
        .await;
    assert_eq!(body["data"]["total"], 1);
    let item = &body["data"]["items"][0];
    assert_eq!(
        (&item["order_id"], &item["status"], &item["cost_ton"]),
        (&json!(order_id), &json!("completed"), &json!(ton(price)))
    );
    t.app.stop().await;
}

#[actix_web::test]
async fn a_one_shot_premium_gift_in_kyc_mode_costs_no_commission() {
    let t = spawn(&[]).await;
    let demo = t.sandbox().demo_wallet.clone();
    // The client's own fragment.com login, exported as a browser would.
    let (_, cookies_b64) = sandbox::fragment_login(&t.app, "client");
    let price = Prices::default().premium_3;
    let (status, body) = t
        .post(
            "/api/v1/premium/buy",
            json!({"username": "@bob", "duration": 3, "seed": t.seed, "fragment_cookies": cookies_b64}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let request = t
        .wait_request(body["data"]["request_id"].as_str().unwrap())
        .await;
    assert_eq!(request["status"], "completed", "{request}");
    let result = &request["result"];
    assert_eq!(result["mode"], "kyc");
    assert_eq!(result["cost_ton"], ton(price));
    assert_eq!(result["commission_ton"], "0");
    assert_eq!(result["duration_months"], 3);
    let (_, body) = t
        .get(&format!(
            "/api/v1/commission/balance?wallet_address={}",
            demo.friendly_address(true)
        ))
        .await;
    assert_eq!(body["data"]["debt_ton"], "0");
    t.wait_delivered(request["order_id"].as_str().unwrap())
        .await;
    assert_eq!(t.sandbox().fragment.deliveries().len(), 1);
    t.app.stop().await;
}

/// One purchase of the matrix below.
struct Purchase {
    product: Value,
    username: &'static str,
    kyc: bool,
    one_shot: bool,
    price: u64,
}

#[actix_web::test]
async fn stars_and_premium_in_both_modes_and_both_flows_are_right_to_the_nanoton() {
    let t = spawn(&[]).await;
    let prices = Prices::default();
    let demo = t.sandbox().demo_wallet.clone();
    let demo_friendly = demo.friendly_address(false);
    let start_balance = t.sandbox().ton.balance(demo.address()).as_u64();
    let (_, kyc_cookies) = sandbox::fragment_login(&t.app, "client");
    // Gifting Premium makes the recipient a Premium user, so each gift goes to another one.
    // The remaining combinations are elsewhere: two-step Stars without KYC and one-shot
    // Premium with KYC above, one-shot Premium without KYC in tests/openapi.rs and the SDK's.
    let purchases = [
        Purchase {
            product: json!({"amount": 100}),
            username: "@alice",
            kyc: false,
            one_shot: true,
            price: prices.stars(100),
        },
        Purchase {
            product: json!({"amount": 250}),
            username: "@bob",
            kyc: true,
            one_shot: false,
            price: prices.stars(250),
        },
        Purchase {
            product: json!({"amount": 50}),
            username: "@alice",
            kyc: true,
            one_shot: true,
            price: prices.stars(50),
        },
        Purchase {
            product: json!({"months": 6}),
            username: "@bob",
            kyc: false,
            one_shot: false,
            price: prices.premium_6,
        },
        Purchase {
            product: json!({"months": 12}),
            username: "@alice",
            kyc: true,
            one_shot: false,
            price: prices.premium_12,
        },
    ];
    let mut debt = 0u64;
    let mut paid_to_fragment = 0u64;
    for p in &purchases {
        let what = format!(
            "{} to {} ({}, {})",
            p.product,
            p.username,
            if p.kyc { "KYC" } else { "no KYC" },
            if p.one_shot { "one-shot" } else { "two-step" }
        );
        let stars = p.product.get("amount").is_some();
        let commission = if p.kyc { 0 } else { p.price / 100 };
        let mut body = p.product.clone();
        body["username"] = json!(p.username);
        if p.kyc {
            body["fragment_cookies"] = json!(kyc_cookies);
        }
        let (order_id, request_id) = if p.one_shot {
            body["seed"] = json!(t.seed);
            if !stars {
                // The one-shot Premium route names the months `duration`.
                body["duration"] = body["months"].take();
            }
            let path = if stars {
                "/api/v1/stars/buy"
            } else {
                "/api/v1/premium/buy"
            };
            let (status, answer) = t.post(path, body).await;
            assert_eq!(status, 200, "{what}: {answer}");
            let paid = &answer["data"];
            (
                paid["order_id"].as_str().unwrap().to_string(),
                paid["request_id"].as_str().unwrap().to_string(),
            )
        } else {
            let path = if stars {
                "/api/v1/stars/create"
            } else {
                "/api/v1/premium/create"
            };
            let (status, answer) = t.post(path, body).await;
            assert_eq!(status, 200, "{what}: {answer}");
            let order = &answer["data"];
            assert_eq!(order["status"], "created", "{what}");
            assert_eq!(
                order["mode"],
                if p.kyc { "kyc" } else { "no_kyc" },
                "{what}"
            );
            assert_eq!(order["price_ton"], ton(p.price), "{what}");
            assert_eq!(
                order["commission_rate"],
                json!(if p.kyc { 0.0 } else { 0.01 }),
                "{what}"
            );
            assert_eq!(order["commission_ton"], ton(commission), "{what}");
            assert_eq!(order["total_ton"], ton(p.price + commission), "{what}");
            let order_id = order["order_id"].as_str().unwrap().to_string();
            let mut pay = json!({"seed": t.seed});
            if p.kyc {
                // A KYC order is paid on the client's session: its cookies come again.
                pay["fragment_cookies"] = json!(kyc_cookies);
            }
            let (status, answer) = t.post(&format!("/api/v1/orders/{order_id}/pay"), pay).await;
            assert_eq!(status, 200, "{what}: {answer}");
            (
                order_id,
                answer["data"]["request_id"].as_str().unwrap().to_string(),
            )
        };
        let request = t.wait_request(&request_id).await;
        assert_eq!(request["status"], "completed", "{what}: {request}");
        debt += commission;
        paid_to_fragment += p.price;
        let result = &request["result"];
        assert_eq!(
            result["mode"],
            if p.kyc { "kyc" } else { "no_kyc" },
            "{what}"
        );
        assert_eq!(result["cost_ton"], ton(p.price), "{what}");
        assert_eq!(result["commission_ton"], ton(commission), "{what}");
        // The debt stays under the collection threshold (1 TON): nothing is collected.
        assert_eq!(result["collected_commission_ton"], "0", "{what}");
        assert_eq!(result["commission_balance_ton"], ton(debt), "{what}");
        if stars {
            assert_eq!(result["stars_amount"], p.product["amount"], "{what}");
        } else {
            assert_eq!(result["duration_months"], p.product["months"], "{what}");
        }
        t.wait_delivered(&order_id).await;
        let (_, order) = t.get(&format!("/api/v1/orders/{order_id}")).await;
        let order = &order["data"];
        assert_eq!(order["status"], "success", "{what}");
        assert_eq!(order["total_ton"], ton(p.price + commission), "{what}");
        assert_eq!(order["wallet_address"], demo_friendly.as_str(), "{what}");
        assert_eq!(order["tx_hash"], result["transaction_hash"], "{what}");
    }

    // Fragment got each price once and delivered each purchase once.
    let sandbox = t.sandbox();
    let fragment_balance = sandbox.ton.balance(&sandbox.fragment.payment_address());
    assert_eq!(fragment_balance.as_u64(), paid_to_fragment);
    assert_eq!(sandbox.fragment.deliveries().len(), purchases.len());
    // The wallet paid the prices and the network's fees; the commission is owed, not paid.
    let spent = start_balance - sandbox.ton.balance(demo.address()).as_u64();
    let fees = spent - paid_to_fragment;
    assert!(
        fees > 0 && fees < purchases.len() as u64 * 50_000_000,
        "network fees of {} TON for {} payments",
        ton(fees),
        purchases.len()
    );
    let (_, body) = t
        .get(&format!(
            "/api/v1/commission/balance?wallet_address={demo_friendly}"
        ))
        .await;
    assert_eq!(body["data"]["debt_ton"], ton(debt), "{body}");
    assert_eq!(body["data"]["accrued_total_ton"], ton(debt), "{body}");
    assert_eq!(body["data"]["collected_total_ton"], "0", "{body}");
    let (_, body) = t
        .get(&format!(
            "/api/v1/transactions?wallet_address={demo_friendly}"
        ))
        .await;
    assert_eq!(body["data"]["total"], purchases.len(), "{body}");
    let history_cost: u64 = body["data"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            Nanoton::parse_ton(i["cost_ton"].as_str().unwrap())
                .unwrap()
                .as_u64()
        })
        .sum();
    assert_eq!(history_cost, paid_to_fragment);
    t.app.stop().await;
}

#[actix_web::test]
async fn every_client_mistake_gets_its_code_and_says_what_to_fix() {
    let t = spawn(&[("FG_ORDERS__EXPIRY_SECONDS", "1")]).await;
    // Bodies.
    let r = t
        .http
        .post(format!("{}/api/v1/stars/create", t.base))
        .body(r#"{"username":"@alice","amount":100}"#)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    assert_error(status, &body, 400, "VALIDATION_ERROR");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Content-Type: application/json"));
    let r = t
        .http
        .post(format!("{}/api/v1/stars/create", t.base))
        .header("content-type", "application/json")
        .body("{\"username\": ")
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    assert_error(status, &r.json().await.unwrap(), 400, "VALIDATION_ERROR");
    let (status, body) = t
        .post(
            "/api/v1/stars/create",
            json!({"username": "@alice", "pad": "x".repeat(70_000)}),
        )
        .await;
    assert_error(status, &body, 400, "VALIDATION_ERROR");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("larger than"));
    let (status, body) = t.get("/api/v1/no/such/route").await;
    assert_error(status, &body, 404, "NOT_FOUND");
    // A route with another method is no route either: the envelope, never a bare 405.
    let (status, body) = t.get("/api/v1/stars/create").await;
    assert_error(status, &body, 404, "NOT_FOUND");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("GET /api/v1/stars/create"),
        "{body}"
    );
    let (status, body) = t
        .post(
            &format!("/api/v1/orders/{}", uuid::Uuid::new_v4()),
            json!({}),
        )
        .await;
    assert_error(status, &body, 404, "NOT_FOUND");
    // `stars` is not an order id: the GET alias of the order route answers.
    let (status, body) = t.get("/api/v1/orders/stars").await;
    assert_error(status, &body, 404, "ORDER_NOT_FOUND");

    // Fields, each named.
    let (status, body) = t
        .post("/api/v1/stars/create", json!({"amount": "lots"}))
        .await;
    assert_error(status, &body, 400, "VALIDATION_ERROR");
    let fields: Vec<&str> = body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["username", "amount"]);
    let (status, body) = t
        .post(
            "/api/v1/stars/create",
            json!({"username": "@alice", "amount": 49}),
        )
        .await;
    assert_error(status, &body, 400, "VALIDATION_ERROR");
    let (status, body) = t
        .post(
            "/api/v1/premium/create",
            json!({"username": "@bob", "months": 4}),
        )
        .await;
    assert_error(status, &body, 400, "VALIDATION_ERROR");
    // Missing months are named as each route documents them; the alias is read as well.
    for (path, named, alias) in [
        ("/api/v1/premium/create", "months", "duration"),
        ("/api/v1/premium/buy", "duration", "months"),
        ("/api/v1/premium/check-eligibility", "months", "duration"),
    ] {
        let (status, body) = t
            .post(
                path,
                json!({"username": "@bob", "seed": t.seed, "months": null}),
            )
            .await;
        if path.ends_with("eligibility") {
            // Optional there (3 by default).
            assert_eq!(status, 200, "{body}");
        } else {
            assert_error(status, &body, 400, "VALIDATION_ERROR");
            assert_eq!(
                body["error"]["details"][0]["field"], named,
                "{path}: {body}"
            );
        }
        let (status, body) = t
            .post(path, json!({"username": "@bob", "seed": t.seed, alias: 5}))
            .await;
        assert_error(status, &body, 400, "VALIDATION_ERROR");
        assert_eq!(
            body["error"]["details"][0]["field"], alias,
            "{path}: {body}"
        );
    }
    let (status, body) = t
        .post(
            "/api/v1/stars/create",
            json!({"username": "alice", "amount": 50}),
        )
        .await;
    assert_error(status, &body, 400, "INVALID_USERNAME_FORMAT");
    // A payment method the gateway does not take, and one that is not the order's own.
    let (status, body) = t
        .post("/api/v1/stars/buy", json!({"username": "@alice", "amount": 50, "seed": t.seed, "payment_method": "usdc_base"}))
        .await;
    assert_error(status, &body, 400, "VALIDATION_ERROR");
    assert_eq!(
        body["error"]["details"][0]["field"], "payment_method",
        "{body}"
    );
    let (_, order) = t
        .post(
            "/api/v1/stars/create",
            json!({"username": "@alice", "amount": 50}),
        )
        .await;
    let id = order["data"]["order_id"].as_str().unwrap();
    let (status, body) = t
        .post(
            &format!("/api/v1/orders/{id}/pay"),
            json!({"seed": t.seed, "payment_method": "usdt_ton"}),
        )
        .await;
    assert_error(status, &body, 400, "VALIDATION_ERROR");
    assert!(
        body["error"]["details"][0]["message"]
            .as_str()
            .unwrap()
            .contains("paid in ton"),
        "{body}"
    );

    // Fragment's answers.
    let (status, body) = t
        .post(
            "/api/v1/stars/create",
            json!({"username": "@ghost_user", "amount": 50}),
        )
        .await;
    assert_error(status, &body, 404, "USER_NOT_FOUND");
    let (status, body) = t
        .post(
            "/api/v1/premium/create",
            json!({"username": "@premium_pete", "months": 3}),
        )
        .await;
    assert_error(status, &body, 400, "PREMIUM_ALREADY_ACTIVE");
    let (_, body) = t
        .post(
            "/api/v1/premium/check-eligibility",
            json!({"username": "@premium_pete"}),
        )
        .await;
    assert_eq!(body["data"]["eligible"], false);
    assert_eq!(body["eligible"], false);
    assert_eq!(
        body["data"]["error"]["error_code"],
        "PREMIUM_ALREADY_ACTIVE"
    );
    let (_, body) = t
        .post(
            "/api/v1/premium/check-eligibility",
            json!({"username": "@bob"}),
        )
        .await;
    assert_eq!(body["data"]["eligible"], true);

    // Secrets.
    let bad_seed = base64::engine::general_purpose::STANDARD.encode("not a seed at all");
    let (status, body) = t
        .post(
            "/api/v1/stars/buy",
            json!({"username": "@alice", "amount": 50, "seed": bad_seed}),
        )
        .await;
    assert_error(status, &body, 400, "INVALID_SEED");
    assert_eq!(body["error"]["details"][0]["field"], "seed");
    assert!(!body.to_string().contains("not a seed at all"));
    let (status, body) = t
        .post(
            "/api/v1/stars/create",
            json!({"username": "@alice", "amount": 50, "fragment_cookies": "e30="}),
        )
        .await;
    assert_error(status, &body, 400, "INVALID_COOKIES");
    // Blank cookies are a mistake, not a request for no-KYC mode (which charges commission).
    let (status, body) = t
        .post(
            "/api/v1/stars/create",
            json!({"username": "@alice", "amount": 50, "fragment_cookies": "  "}),
        )
        .await;
    assert_error(status, &body, 400, "INVALID_COOKIES");
    let (status, body) = t
        .post(
            "/api/v1/stars/create",
            json!({"username": "@alice", "amount": 50, "fragment_cookies": 7}),
        )
        .await;
    assert_error(status, &body, 400, "VALIDATION_ERROR");
    assert_eq!(body["error"]["details"][0]["field"], "fragment_cookies");
    let (status, body) = t
        .get(&format!("/api/v1/wallet/balance?seed={}", t.seed))
        .await;
    assert_error(status, &body, 400, "VALIDATION_ERROR");
    assert_eq!(body["error"]["details"][0]["field"], "seed");

    // Unknown ids.
    let (status, body) = t
        .get(&format!("/api/v1/orders/{}", uuid::Uuid::new_v4()))
        .await;
    assert_error(status, &body, 404, "ORDER_NOT_FOUND");
    let (status, body) = t.get("/api/v1/orders/not-a-uuid").await;
    assert_error(status, &body, 404, "ORDER_NOT_FOUND");
    let (status, body) = t
        .get(&format!("/api/v1/queue/{}", uuid::Uuid::new_v4()))
        .await;
    assert_error(status, &body, 404, "REQUEST_NOT_FOUND");

    // Money: an empty wallet, and an order paid too late.
    let (poor_seed, poor) = unfunded_seed();
    let (status, body) = t
        .post(
            "/api/v1/stars/buy",
            json!({"username": "@alice", "amount": 50, "seed": poor_seed}),
        )
        .await;
    assert_error(status, &body, 400, "INSUFFICIENT_BALANCE");
    let (_, body) = t
        .get(&format!(
            "/api/v1/transactions?wallet_address={}",
            poor.friendly_address(false)
        ))
        .await;
    assert_eq!(
        body["data"]["total"], 0,
        "a refused payment leaves no request"
    );
    let (_, body) = t
        .post(
            "/api/v1/stars/create",
            json!({"username": "@alice", "amount": 50}),
        )
        .await;
    let order_id = body["data"]["order_id"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = t.get(&format!("/api/v1/orders/{order_id}")).await;
        if body["data"]["status"] == "expired" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never expired: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = t
        .post(
            &format!("/api/v1/orders/{order_id}/pay"),
            json!({"seed": t.seed}),
        )
        .await;
    assert_error(status, &body, 400, "ORDER_EXPIRED");
    t.app.stop().await;
}

#[actix_web::test]
async fn a_wallet_over_its_debt_limit_is_refused_new_payments() {
    // 50 % commission, a 0.1 TON limit and a threshold too high to collect.
    let t = spawn(&[
        ("FG_COMMISSION__RATE_NO_KYC", "0.5"),
        ("FG_COMMISSION__DEBT_LIMIT_TON", "0.1"),
        ("FG_COMMISSION__COLLECTION_THRESHOLD_TON", "10"),
    ])
    .await;
    let (_, body) = t
        .post(
            "/api/v1/stars/buy",
            json!({"username": "@alice", "amount": 50, "seed": t.seed}),
        )
        .await;
    let request = t
        .wait_request(body["data"]["request_id"].as_str().unwrap())
        .await;
    assert_eq!(request["status"], "completed", "{request}");
    assert_eq!(request["result"]["commission_balance_ton"], "0.125");
    let (status, body) = t
        .post(
            "/api/v1/stars/buy",
            json!({"username": "@alice", "amount": 50, "seed": t.seed}),
        )
        .await;
    assert_error(status, &body, 400, "DEBT_LIMIT_EXCEEDED");
    t.app.stop().await;
}

#[actix_web::test]
async fn a_client_over_its_rate_gets_429_with_retry_after_but_polling_is_never_throttled() {
    let t = spawn(&[
        ("FG_RATE_LIMIT__REQUESTS_PER_MINUTE", "6"),
        ("FG_RATE_LIMIT__BURST", "2"),
    ])
    .await;
    for _ in 0..2 {
        assert_eq!(t.get("/api/v1/queue").await.0, 200);
    }
    let r = t
        .http
        .get(format!("{}/api/v1/queue", t.base))
        .send()
        .await
        .unwrap();
    assert_rate_limited(r, 10).await;
    // A waiting client's polls and /health are not counted.
    for _ in 0..5 {
        let (status, _) = t
            .get(&format!("/api/v1/queue/{}", uuid::Uuid::new_v4()))
            .await;
        assert_eq!(status, 404);
        assert_eq!(t.get("/health").await.0, 200);
    }
    // The same routes spelt with percent-escapes count the same: the router decodes them.
    for path in [
        "/%61pi/v1/queue",
        "/api/v1/queue/%73tatus",
        "/api/v1/%71ueue",
    ] {
        assert_eq!(t.get(path).await.0, 429, "{path}");
    }
    t.app.stop().await;
}

#[actix_web::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_limit() {
    let limited = |t: &TestApp, forwarded_for: &'static str| {
        let request = t
            .http
            .get(format!("{}/api/v1/queue", t.base))
            .header("X-Forwarded-For", forwarded_for);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    let settings = [
        ("FG_RATE_LIMIT__REQUESTS_PER_MINUTE", "1"),
        ("FG_RATE_LIMIT__BURST", "1"),
    ];
    // Not behind a proxy: X-Forwarded-For is the client's own claim and changes nothing.
    let t = spawn(&settings).await;
    assert_eq!(limited(&t, "198.51.100.1").await, 200);
    assert_eq!(limited(&t, "198.51.100.2").await, 429);
    t.app.stop().await;
    // Behind a trusted proxy (loopback here): each forwarded client has its own bucket, and
    // what a client prepends to the header is not believed.
    let t = spawn(&[
        settings[0],
        settings[1],
        ("FG_SERVER__TRUSTED_PROXIES", "127.0.0.1"),
    ])
    .await;
    assert_eq!(limited(&t, "198.51.100.1").await, 200);
    assert_eq!(limited(&t, "198.51.100.1").await, 429);
    assert_eq!(limited(&t, "203.0.113.9, 198.51.100.1").await, 429);
    assert_eq!(limited(&t, "198.51.100.2").await, 200);
    t.app.stop().await;
}

#[actix_web::test]
async fn wallets_resolve_and_report_balances_without_a_seed_in_the_url() {
    let t = spawn(&[]).await;
    let demo = t.sandbox().demo_wallet.clone();
    let (status, body) = t
        .post("/api/v1/wallet/resolve", json!({"seed": t.seed}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["wallet_address"], demo.friendly_address(false));
    assert_eq!(body["data"]["wallet_version"], "v4r2");
    assert_eq!(body["data"]["seed_format"], "ton");
    let v5 = WalletContract::new(WalletVersion::V5R1, Network::Mainnet, demo.public_key());
    let (_, body) = t
        .post(
            "/api/v1/wallet/resolve",
            json!({"seed": t.seed, "wallet_address": v5.friendly_address(true)}),
        )
        .await;
    assert_eq!(body["data"]["wallet_version"], "v5r1");
    let stranger = WalletContract::new(
        WalletVersion::V4R2,
        Network::Mainnet,
        KeyPair::from_secret_seed(&zeroize::Zeroizing::new([9u8; 32])).public_key(),
    );
    let (status, body) = t
        .post(
            "/api/v1/wallet/resolve",
            json!({"seed": t.seed, "wallet_address": stranger.friendly_address(true)}),
        )
        .await;
    assert_error(status, &body, 400, "VALIDATION_ERROR");
    assert_eq!(body["error"]["details"][0]["field"], "wallet_address");
    // A TON mnemonic has one key: another account is the index's mistake, not the seed's.
    let (status, body) = t
        .post(
            "/api/v1/wallet/resolve",
            json!({"seed": t.seed, "account_index": 1}),
        )
        .await;
    assert_error(status, &body, 400, "VALIDATION_ERROR");
    assert_eq!(
        body["error"]["details"][0]["field"], "account_index",
        "{body}"
    );

    let r = t
        .http
        .get(format!("{}/api/v1/wallet/balance", t.base))
        .header("X-Wallet-Seed", &t.seed)
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["data"]["wallet_address"], demo.friendly_address(false));
    assert_eq!(body["data"]["balance_ton"], "100");
    assert_eq!(body["data"]["balance_nanoton"], "100000000000");
    let (_, body) = t
        .get(&format!(
            "/api/v1/wallet/balance?wallet_address={}",
            demo.raw_address()
        ))
        .await;
    assert_eq!(body["data"]["balance_ton"], "100");
    assert_eq!(body["data"]["state"], "uninitialized");
    let (status, body) = t.get("/api/v1/wallet/balance").await;
    assert_error(status, &body, 400, "VALIDATION_ERROR");
    t.app.stop().await;
}

/// `body` as it is, with Content-Type JSON; the answer's status and text.
async fn post_raw(t: &TestApp, path: &str, body: String) -> (u16, String) {
    let r = t
        .http
        .post(format!("{}{path}", t.base))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[actix_web::test]
async fn a_seed_is_read_in_every_json_spelling_and_never_comes_back() {
    let t = spawn(&[]).await;
    let demo = t.sandbox().demo_wallet.friendly_address(false);
    let shown = &t.seed[..24];
    // The seed's secret path unescapes JSON by itself: every character as a `\u` escape, or
    // the seed between escaped white space (trimmed as before), reads as the plain text.
    let escaped: String = t
        .seed
        .chars()
        .map(|c| format!("\\u{:04x}", c as u32))
        .collect();
    for seed in [escaped, format!("\\n{}\\t", t.seed)] {
        let (status, text) = post_raw(
            &t,
            "/api/v1/wallet/resolve",
            format!(r#"{{"seed": "{seed}"}}"#),
        )
        .await;
        assert_eq!(status, 200, "{text}");
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["data"]["wallet_address"], demo);
    }
    // Every refusal names the field, never its value.
    let answers = [
        (
            "/api/v1/stars/buy",
            json!({"username": "@no-dashes", "amount": 100, "seed": t.seed}).to_string(),
            400,
            "INVALID_USERNAME_FORMAT",
        ),
        (
            "/api/v1/wallet/resolve",
            json!({"seed": {"words": t.seed}}).to_string(),
            400,
            "VALIDATION_ERROR",
        ),
        (
            "/api/v1/wallet/resolve",
            json!([t.seed]).to_string(),
            400,
            "VALIDATION_ERROR",
        ),
        (
            "/api/v1/wallet/resolve",
            json!(t.seed).to_string(),
            400,
            "VALIDATION_ERROR",
        ),
        (
            "/api/v1/wallet/resolve",
            json!({"seed": format!("{}x", t.seed)}).to_string(),
            400,
            "INVALID_SEED",
        ),
        (
            "/api/v1/wallet/resolve",
            format!(r#"{{"seed": "{}"#, t.seed),
            400,
            "VALIDATION_ERROR",
        ),
        (
            "/api/v1/wallet/resolve",
            format!(r#"{{"seed": "{}\q"}}"#, t.seed),
            400,
            "VALIDATION_ERROR",
        ),
        (
            "/api/v1/stars/create",
            json!({"username": "@alice", "fragment_cookies": {"stel_ssid": t.seed}}).to_string(),
            400,
            "VALIDATION_ERROR",
        ),
    ];
    for (path, body, http, code) in answers {
        let (status, text) = post_raw(&t, path, body.clone()).await;
        assert_error(status, &serde_json::from_str(&text).unwrap(), http, code);
        assert!(
            !text.contains(shown),
            "{path} {body}: the seed came back: {text}"
        );
    }
    // The header: a seed it cannot carry, or one that is not a mnemonic, is INVALID_SEED.
    for seed in [format!("{}x", t.seed), format!("{}é", &t.seed[..30])] {
        let r = t
            .http
            .get(format!("{}/api/v1/wallet/balance", t.base))
            .header(
                "X-Wallet-Seed",
                reqwest::header::HeaderValue::from_bytes(seed.as_bytes()).unwrap(),
            )
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert_error(
            status,
            &serde_json::from_str(&text).unwrap(),
            400,
            "INVALID_SEED",
        );
        assert!(!text.contains(&seed[..24]), "the seed came back: {text}");
    }
    t.app.stop().await;
}

#[actix_web::test]
async fn a_dependency_down_is_a_502_or_503_and_the_api_stays_up() {
    let t = spawn(&[]).await;
    t.sandbox()
        .fragment
        .faults()
        .set_config(fragment_gateway::sim::faults::FaultConfig {
            latency: Duration::ZERO,
            error_rate: 1.0,
        });
    let (status, body) = t
        .post(
            "/api/v1/stars/create",
            json!({"username": "@alice", "amount": 50}),
        )
        .await;
    assert_error(status, &body, 502, "FRAGMENT_ERROR");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("fragment.com"),
        "{body}"
    );
    // Reads that do not need Fragment still answer.
    assert_eq!(t.get("/health").await.0, 200);
    assert_eq!(t.get("/api/v1/queue/status").await.0, 200);
    t.sandbox()
        .fragment
        .faults()
        .set_config(fragment_gateway::sim::faults::FaultConfig::default());
    let (status, body) = t
        .post(
            "/api/v1/stars/create",
            json!({"username": "@alice", "amount": 50}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let order_id = body["data"]["order_id"].as_str().unwrap().to_string();

    // The TON API down: 503 with Retry-After, and the internals stay inside.
    t.sandbox()
        .ton
        .faults()
        .set_config(fragment_gateway::sim::faults::FaultConfig {
            latency: Duration::ZERO,
            error_rate: 1.0,
        });
    let r = t
        .http
        .post(format!("{}/api/v1/orders/{order_id}/pay", t.base))
        .json(&json!({"seed": t.seed}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let body: Value = r.json().await.unwrap();
    assert_error(503, &body, 503, "SERVICE_UNAVAILABLE");
    assert!(!body.to_string().contains("127.0.0.1"), "{body}");
    let (_, order) = t.get(&format!("/api/v1/orders/{order_id}")).await;
    assert_eq!(order["data"]["status"], "created", "nothing was queued");
    t.app.stop().await;
}

#[actix_web::test]
async fn a_request_stuck_in_the_queue_times_out_with_no_funds_moved() {
    let t = spawn(&[("FG_ORDERS__QUEUE_TIMEOUT_SECONDS", "1")]).await;
    let (other_seed, other) = unfunded_seed();
    t.sandbox().ton.fund(other.address(), Nanoton::from_ton(5));
    let mut orders = vec![];
    for _ in 0..2 {
        let (_, body) = t
            .post(
                "/api/v1/stars/create",
                json!({"username": "@alice", "amount": 50}),
            )
            .await;
        orders.push(body["data"]["order_id"].as_str().unwrap().to_string());
    }
    // One owner session, and a slow Fragment: the first payment holds the session for
    // seconds, and the second (another wallet) waits past its second in the queue.
    t.sandbox()
        .fragment
        .faults()
        .set_config(fragment_gateway::sim::faults::FaultConfig {
            latency: Duration::from_millis(400),
            error_rate: 0.0,
        });
    let (_, first) = t
        .post(
            &format!("/api/v1/orders/{}/pay", orders[0]),
            json!({"seed": t.seed}),
        )
        .await;
    let (_, second) = t
        .post(
            &format!("/api/v1/orders/{}/pay", orders[1]),
            json!({"seed": other_seed}),
        )
        .await;
    let waited = t
        .wait_request(second["data"]["request_id"].as_str().unwrap())
        .await;
    assert_eq!(waited["status"], "timeout", "{waited}");
    assert_eq!(waited["error_code"], "QUEUE_TIMEOUT");
    assert!(
        waited["error"].as_str().unwrap().contains("no funds moved"),
        "{waited}"
    );
    assert_eq!(waited["started_at"], Value::Null);
    let (_, order) = t.get(&format!("/api/v1/orders/{}", orders[1])).await;
    assert_eq!(
        order["data"]["status"], "created",
        "the order can be paid again"
    );
    assert_eq!(
        t.sandbox().ton.balance(other.address()),
        Nanoton::from_ton(5),
        "the waiting wallet paid nothing"
    );
    let done = t
        .wait_request(first["data"]["request_id"].as_str().unwrap())
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    t.app.stop().await;
}

#[actix_web::test]
async fn a_wallets_orders_come_newest_first_by_cursor_and_an_unpaid_order_can_be_cancelled() {
    let t = spawn(&[("FG_RATE_LIMIT__REQUESTS_PER_MINUTE", "0")]).await;
    let wallet = t.sandbox().demo_wallet.friendly_address(false);
    let mut paid = vec![];
    for amount in [50, 60, 70] {
        let request = t.buy_stars(amount).await;
        paid.push(request["order_id"].as_str().unwrap().to_string());
    }

    // An unpaid order is cancelled, once; it cannot be paid then.
    let (_, created) = t
        .post(
            "/api/v1/stars/create",
            json!({"username": "@bob", "amount": 50}),
        )
        .await;
    let unpaid = created["data"]["order_id"].as_str().unwrap().to_string();
    let cancel = format!("/api/v1/orders/{unpaid}/cancel");
    let (status, body) = t.post(&cancel, json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["status"], "cancelled");
    let (status, again) = t.send("post", &cancel, None).await;
    assert_eq!(
        (status, &again["data"]),
        (200, &body["data"]),
        "again: the same"
    );
    let (status, body) = t
        .post(
            &format!("/api/v1/orders/{unpaid}/pay"),
            json!({"seed": t.seed}),
        )
        .await;
    assert_error(status, &body, 400, "VALIDATION_ERROR");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cancelled"),
        "{body}"
    );
    // A paid order cannot be cancelled; an unknown one is not found.
    let (status, body) = t
        .post(&format!("/api/v1/orders/{}/cancel", paid[0]), json!({}))
        .await;
    assert_error(status, &body, 400, "ORDER_NOT_CANCELLABLE");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("success"),
        "{body}"
    );
    let (status, body) = t
        .post(
            &format!("/api/v1/orders/{}/cancel", uuid::Uuid::now_v7()),
            json!({}),
        )
        .await;
    assert_error(status, &body, 404, "ORDER_NOT_FOUND");

    // The wallet's orders, newest first, two at a time.
    let list = format!("/api/v1/orders?wallet_address={wallet}");
    let ids = |body: &Value| -> Vec<String> {
        body["data"]["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["order_id"].as_str().unwrap().to_string())
            .collect()
    };
    let (status, first) = t.get(&format!("{list}&limit=2")).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(ids(&first), [paid[2].clone(), paid[1].clone()]);
    assert_eq!(first["data"]["total"], 3);
    let cursor = first["data"]["next_cursor"].as_str().unwrap().to_string();
    let (_, second) = t.get(&format!("{list}&limit=2&cursor={cursor}")).await;
    assert_eq!(ids(&second), [paid[0].clone()]);
    assert_eq!(second["data"]["next_cursor"], Value::Null);
    assert_eq!(second["data"]["total"], 3);
    let (_, done) = t.get(&format!("{list}&status=success,failed")).await;
    assert_eq!(done["data"]["total"], 3);
    let (_, none) = t.get(&format!("{list}&status=cancelled")).await;
    assert_eq!(none["data"]["total"], 0, "an unpaid order has no wallet");
    // By seed, in a header.
    let (status, by_seed) = t
        .send_with("get", "/api/v1/orders", &[("X-Wallet-Seed", &t.seed)], None)
        .await;
    assert_eq!(status, 200, "{by_seed}");
    assert_eq!(
        ids(&by_seed),
        [paid[2].clone(), paid[1].clone(), paid[0].clone()]
    );
    // Every mistake named at once.
    let (status, body) = t
        .get(&format!("{list}&limit=0&status=paid&cursor=page-2"))
        .await;
    assert_error(status, &body, 400, "VALIDATION_ERROR");
    let fields: Vec<&str> = body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["limit", "status", "cursor"]);
    let (status, body) = t.get("/api/v1/orders").await;
    assert_error(status, &body, 400, "VALIDATION_ERROR");
    t.app.stop().await;
}
