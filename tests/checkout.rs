//! Checkouts over HTTP against a sandbox: what a client gets wrong is named field by field,
//! a KYC checkout is bought and delivered on the client's own Fragment session without its
//! cookies or any key reaching the disk, an open checkout cannot be cancelled, and a wallet
//! too poor for the purchase gets no transaction to sign. (Signing by an independent wallet
//! implementation is in tests/python_clients.rs.)

mod common;
mod sandbox;

use std::time::Duration;

use serde_json::{json, Value};

use sandbox::{assert_error, spawn};

#[actix_web::test]
async fn every_bad_field_of_a_checkout_is_named_at_once() {
    let t = spawn(&[]).await;
    let (status, body) = t
        .post(
            "/api/v1/checkouts",
            json!({"product": "gold", "username": "alice", "public_key": "xyz", "network": "-3"}),
        )
        .await;
    // The username's format is reported on its own, as on every create.
    assert_error(status, &body, 400, "INVALID_USERNAME_FORMAT");
    let (status, body) = t
        .post(
            "/api/v1/checkouts",
            json!({"product": "gold", "username": "@alice", "public_key": "xyz", "network": "-3",
                "payment_method": "usdt_ton"}),
        )
        .await;
    assert_error(status, &body, 400, "VALIDATION_ERROR");
    let fields: Vec<&str> = body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    for field in [
        "product",
        "wallet_address",
        "public_key",
        "network",
        "payment_method",
    ] {
        assert!(fields.contains(&field), "{field} not named: {body}");
    }
    // A Stars checkout without its amount, and a wallet that is not an address.
    let (status, body) = t
        .post(
            "/api/v1/checkouts",
            json!({"product": "stars", "username": "@alice", "wallet_address": "nope"}),
        )
        .await;
    assert_error(status, &body, 400, "VALIDATION_ERROR");
    let text = body.to_string();
    assert!(
        text.contains("amount") && text.contains("wallet_address"),
        "{text}"
    );

    // A wallet never deployed, named without its key: told what to send.
    let stranger = fragment_gateway::ton::WalletContract::new(
        fragment_gateway::ton::WalletVersion::V4R2,
        fragment_gateway::ton::Network::Mainnet,
        fragment_gateway::ton::PublicKey([7; 32]),
    );
    let (status, body) = t
        .post(
            "/api/v1/checkouts",
            json!({"product": "stars", "username": "@alice", "amount": 50,
                "wallet_address": stranger.friendly_address(false)}),
        )
        .await;
    assert_error(status, &body, 400, "VALIDATION_ERROR");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("wallet_state_init"),
        "{body}"
    );
    // With its key it is known, and holds nothing: no transaction to sign.
    let (status, body) = t
        .post(
            "/api/v1/checkouts",
            json!({"product": "stars", "username": "@alice", "amount": 50,
                "wallet_address": stranger.friendly_address(false),
                "public_key": stranger.public_key().to_hex()}),
        )
        .await;
    assert_error(status, &body, 400, "INSUFFICIENT_BALANCE");

    // Unknown checkouts, and orders that are not checkouts.
    let (status, body) = t
        .get(&format!("/api/v1/checkouts/{}", uuid::Uuid::now_v7()))
        .await;
    assert_error(status, &body, 404, "ORDER_NOT_FOUND");
    let (_, order) = t
        .post(
            "/api/v1/stars/create",
            json!({"username": "@alice", "amount": 50}),
        )
        .await;
    let plain = order["data"]["order_id"].as_str().unwrap();
    let (status, body) = t.get(&format!("/api/v1/checkouts/{plain}")).await;
    assert_error(status, &body, 404, "ORDER_NOT_FOUND");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no checkout"));
    let (status, body) = t
        .post(
            &format!("/api/v1/checkouts/{plain}/submit"),
            json!({"boc": "te6cc"}),
        )
        .await;
    assert_error(status, &body, 404, "ORDER_NOT_FOUND");
}

#[actix_web::test]
async fn an_open_checkout_cannot_be_cancelled_and_garbage_is_no_payment() {
    let t = spawn(&[]).await;
    let wallet = t.sandbox().demo_wallet.clone();
    let (status, body) = t
        .post(
            "/api/v1/checkouts",
            json!({"product": "stars", "username": "@alice", "amount": 50,
                "wallet_address": wallet.raw_address(),
                "wallet_state_init": wallet.state_init_boc()}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let id = body["data"]["checkout_id"].as_str().unwrap().to_string();
    assert_eq!(body["data"]["wallet_version"], "v4r2");
    let valid_until = body["data"]["valid_until"].as_u64().unwrap();
    let (status, refusal) = t
        .post(&format!("/api/v1/orders/{id}/cancel"), json!({}))
        .await;
    assert_error(status, &refusal, 400, "ORDER_NOT_CANCELLABLE");
    assert!(
        refusal["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&valid_until.to_string()),
        "{refusal}"
    );
    for (boc, code) in [
        (json!("not base64 at all"), "CHECKOUT_REJECTED"),
        (json!("te6ccgEBAQEAAgAAAA=="), "CHECKOUT_REJECTED"),
    ] {
        let (status, body) = t
            .post(
                &format!("/api/v1/checkouts/{id}/submit"),
                json!({"boc": boc}),
            )
            .await;
        assert_error(status, &body, 400, code);
    }
    let (status, body) = t
        .post(&format!("/api/v1/checkouts/{id}/submit"), json!({}))
        .await;
    assert_error(status, &body, 400, "VALIDATION_ERROR");
    let (status, body) = t
        .post(
            &format!("/api/v1/checkouts/{id}/submit"),
            json!({"boc": "x", "already_broadcast": "yes"}),
        )
        .await;
    assert_error(status, &body, 400, "VALIDATION_ERROR");
    assert!(body.to_string().contains("already_broadcast"), "{body}");
    let (_, order) = t.get(&format!("/api/v1/orders/{id}")).await;
    assert_eq!(order["data"]["status"], "created", "{order}");
}

#[actix_web::test]
async fn a_kyc_checkout_is_delivered_on_the_clients_session_and_leaves_no_cookie_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let started = sandbox::start(dir.path(), &[]).await;
    let t = sandbox::TestApp::adopt(started);
    let (cookies, cookies_b64) = sandbox::fragment_login(&t.app, "client");
    let wallet = t.sandbox().demo_wallet.clone();
    let (status, body) = t
        .post(
            "/api/v1/checkouts",
            json!({"product": "premium", "username": "@alice", "duration": 6,
                "wallet_address": wallet.friendly_address(true),
                "public_key": wallet.public_key().to_hex(),
                "fragment_cookies": cookies_b64}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let checkout = &body["data"];
    assert_eq!(checkout["order"]["mode"], "kyc");
    assert_eq!(checkout["order"]["commission_ton"], "0");
    assert_eq!(
        checkout["transaction"]["messages"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let id = checkout["checkout_id"].as_str().unwrap().to_string();
    let boc = t.sign_checkout(&checkout["transaction"], |_| {});
    // The cookies are never kept, so the payment brings them again.
    let (status, body) = t
        .post(
            &format!("/api/v1/checkouts/{id}/submit"),
            json!({"boc": boc}),
        )
        .await;
    assert_error(status, &body, 400, "VALIDATION_ERROR");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("fragment_cookies"));
    let (status, body) = t
        .post(
            &format!("/api/v1/checkouts/{id}/submit"),
            json!({"boc": boc, "fragment_cookies": cookies_b64}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let request = t
        .wait_request(body["data"]["request_id"].as_str().unwrap())
        .await;
    assert_eq!(request["status"], "completed", "{request}");
    assert_eq!(request["result"]["commission_ton"], "0");
    let order = until_delivered(&t, &id).await;
    assert_eq!(order["delivery_confirmed"], true, "{order}");

    t.app.stop().await;
    common::assert_no_seed_in(dir.path());
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            continue;
        }
        let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
        for name in fragment_gateway::fragment::cookies::REQUIRED_FOR_KYC {
            let value = cookies.get(name).unwrap();
            assert!(!text.contains(value), "{name} is in {}", path.display());
        }
        assert!(!text.contains(&cookies_b64[..40]), "{}", path.display());
    }
}

/// The order once Fragment's delivery verdict is in (30 s at most).
async fn until_delivered(t: &sandbox::TestApp, id: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, order) = t.get(&format!("/api/v1/orders/{id}")).await;
        if !order["data"]["delivery_confirmed"].is_null() {
            return order["data"].clone();
        }
        assert!(std::time::Instant::now() < deadline, "no verdict: {order}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A checkout created under an `Idempotency-Key` is issued once: the retry gets the same
/// checkout, marked replayed; another request under the key is 409.
#[actix_web::test]
async fn a_keyed_checkout_is_issued_once() {
    let t = spawn(&[]).await;
    let wallet = t.sandbox().demo_wallet.clone();
    let body = |amount: u32| {
        json!({"product": "stars", "username": "@alice", "amount": amount,
            "wallet_address": wallet.raw_address(), "public_key": wallet.public_key().to_hex()})
    };
    let send = async |amount: u32| {
        let r = t
            .http
            .post(format!("{}/api/v1/checkouts", t.base))
            .header("Idempotency-Key", "checkout-1")
            .json(&body(amount))
            .send()
            .await
            .unwrap();
        let replayed = r.headers().get("idempotent-replayed").is_some();
        let status = r.status().as_u16();
        (status, replayed, r.json::<Value>().await.unwrap())
    };
    let (status, replayed, first) = send(50).await;
    assert_eq!((status, replayed), (200, false), "{first}");
    let (status, replayed, again) = send(50).await;
    assert_eq!((status, replayed), (200, true), "{again}");
    assert_eq!(again, first);
    let (status, _, other) = send(60).await;
    assert_error(status, &other, 409, "IDEMPOTENCY_KEY_REUSED");
    // One order only.
    let (_, orders) = t
        .get(&format!(
            "/api/v1/checkouts/{}",
            first["data"]["checkout_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(orders["data"]["checkout_id"], first["data"]["checkout_id"]);
}
