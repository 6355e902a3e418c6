//! The fragment.com client against the fragment.com simulator, paid through the TON
//! simulator, all over real HTTP on loopback: full Stars and Premium purchases, every error
//! mapping, multi-cell payloads, and what the simulator refuses.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fragment_gateway::domain::{PremiumMonths, StarsAmount, Username};
use fragment_gateway::fragment::{
    CheckedPayment, Flow, FragmentClient, FragmentConfig, FragmentCookies, FragmentError,
    Fulfilment, Invoice, LinkExpectations, PaymentLink, Purchase, SessionRole,
};
use fragment_gateway::sim::fragment::state::{InvoiceStatus, Prices, Rules};
use fragment_gateway::sim::fragment::{default_payment_wallet, FragmentSim, FragmentSimConfig};
use fragment_gateway::sim::ton::{TonSim, TonSimConfig};
use fragment_gateway::ton::client::{TonApiConfig, TonCenterClient, TransferOutcome};
use fragment_gateway::ton::transfer::{sign_transfer, TransferParams};
use fragment_gateway::ton::{
    KeyPair, MessageBody, Nanoton, Network, OutgoingMessage, Seed, SignedTransfer, WalletContract,
    WalletVersion,
};
use tonlib_core::cell::CellBuilder;

const TON_WORDS: &str = "art hockey victory skill bubble stool heart gas debris april column knife gadget envelope donkey base nature dynamic artefact leg edge aisle retreat fatigue";
const BIP39_WORDS: &str =
    "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32
}

struct World {
    ton: TonSim,
    fragment: FragmentSim,
    chain: TonCenterClient,
    client: FragmentClient,
}

async fn world_with(rules: Rules) -> World {
    world_polling(rules, 100).await
}

/// `poll_ms` 0: the simulator reads the chain only when the test calls `process_now`.
async fn world_polling(rules: Rules, poll_ms: u64) -> World {
    world_deployed(rules, poll_ms, true).await
}

/// `deployed`: whether the simulator's payment wallet exists on the chain (it does on
/// mainnet).
async fn world_deployed(rules: Rules, poll_ms: u64, deployed: bool) -> World {
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
            poll_ms,
            rules,
            ..Default::default()
        },
        loopback(),
    )
    .await
    .unwrap();
    if deployed {
        ton.install_wallet(&default_payment_wallet(Network::Mainnet), Nanoton::ZERO);
    }
    let chain = TonCenterClient::new(TonApiConfig::local(ton.url())).unwrap();
    let client = FragmentClient::new(FragmentConfig {
        base_url: fragment.url().to_string(),
        timeout: Duration::from_secs(5),
        backoff: Duration::from_millis(20),
        payment_addresses: vec![fragment.payment_address_friendly()],
        ..FragmentConfig::fragment_com()
    })
    .unwrap();
    World {
        ton,
        fragment,
        chain,
        client,
    }
}

async fn world() -> World {
    world_with(Rules {
        processing_ms: 100,
        ..Default::default()
    })
    .await
}

struct Payer {
    key: KeyPair,
    wallet: WalletContract,
}

fn payer(words: &str, version: WalletVersion) -> Payer {
    let key = Seed::from_words(words).unwrap().derive_key(None).unwrap();
    let wallet = WalletContract::new(version, Network::Mainnet, key.public_key());
    Payer { key, wallet }
}

fn user(name: &str) -> Username {
    Username::parse(name).unwrap()
}

fn stars(n: u64) -> Purchase {
    Purchase::Stars(StarsAmount::new(n).unwrap())
}

fn months(n: u64) -> Purchase {
    Purchase::Premium(PremiumMonths::new(n).unwrap())
}

impl World {
    /// The operator's session: a verified account with its own wallet connected.
    fn owner_cookies(&self) -> FragmentCookies {
        let owner_key = KeyPair::from_secret_seed(&zeroize::Zeroizing::new([42u8; 32]));
        let owner_wallet = WalletContract::new(
            WalletVersion::V4R2,
            Network::Mainnet,
            owner_key.public_key(),
        );
        self.fragment
            .login("owner", Some(owner_wallet.address()))
            .unwrap()
    }

    /// The payment step's checks of a link, with the quoted amount as the order's limit (and
    /// one second of validity needed, so that invoices with a short life can be tested).
    fn check_link(
        &self,
        link: &PaymentLink,
        invoice: &Invoice,
        p: &Payer,
        recipient: &str,
    ) -> CheckedPayment {
        link.check(&LinkExpectations {
            req_id: &invoice.req_id,
            purchase: invoice.purchase,
            recipient: recipient.trim_start_matches('@'),
            invoice_amount: invoice.amount,
            max_amount: invoice.amount,
            fragment_addresses: self.client.payment_addresses(),
            payer: p.wallet.address(),
            now: now(),
            min_validity: 1,
        })
        .unwrap()
    }

    /// The rest of a purchase, as the payment step does it: sign (never outliving the
    /// invoice), broadcast, confirm, and wait until Fragment reports it done.
    async fn pay_confirm_and_wait(
        &self,
        flow: &mut Flow,
        p: &Payer,
        invoice: &Invoice,
        link: &PaymentLink,
        checked: CheckedPayment,
    ) {
        let until = checked.sign_until(now(), 120);
        let signed = self.send(p, checked.message, until).await;
        flow.confirm(invoice.purchase.product(), link, &p.wallet, &signed.boc)
            .await
            .unwrap();
        assert_eq!(
            flow.wait_until_done(invoice, Duration::from_secs(10), Duration::from_millis(50))
                .await,
            Fulfilment::Done
        );
    }

    /// Search, init and link for `p` to pay, on `flow`.
    async fn order(
        &self,
        flow: &mut Flow,
        p: &Payer,
        name: &str,
        purchase: Purchase,
    ) -> (Invoice, PaymentLink, CheckedPayment) {
        let r = flow.search_recipient(&user(name), purchase).await.unwrap();
        let invoice = flow.init_purchase(&r, purchase).await.unwrap();
        let link = flow.payment_link(&invoice, &p.wallet, false).await.unwrap();
        let checked = self.check_link(&link, &invoice, p, name);
        (invoice, link, checked)
    }

    /// Signs and broadcasts `body` for `amount` to the payment address from `p`, as the
    /// payment step does, and waits for the transaction.
    async fn pay(&self, p: &Payer, amount: Nanoton, body: MessageBody) -> SignedTransfer {
        let dest = self.fragment.payment_address_friendly();
        let msg = OutgoingMessage::new(&dest, amount, body).unwrap();
        self.send(p, msg, now() + 120).await
    }

    async fn send(&self, p: &Payer, msg: OutgoingMessage, valid_until: u32) -> SignedTransfer {
        let state = self.chain.wallet_state(&p.wallet).await.unwrap();
        let params = TransferParams {
            seqno: state.seqno,
            valid_until,
            include_state_init: !state.deployed,
        };
        let signed = sign_transfer(&p.wallet, &p.key, &params, &[msg]).unwrap();
        self.chain.send_transfer(&signed).await.unwrap();
        let outcome = self
            .chain
            .wait_for_transfer(&signed, Duration::from_millis(50))
            .await
            .unwrap();
        assert!(
            matches!(outcome, TransferOutcome::Confirmed(_)),
            "{outcome:?}"
        );
        signed
    }

    async fn wait_status(&self, invoice: &Invoice, status: InvoiceStatus) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            self.fragment.process_now().await.unwrap();
            if self.fragment.invoice_status(&invoice.req_id) == Some(status) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "never reached {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn a_stars_purchase_on_the_operators_session_is_delivered() {
    // The strictest reading of the site: browser headers checked, and nothing delivered
    // without confirmReq.
    let w = world_with(Rules {
        require_confirm: true,
        strict_headers: true,
        processing_ms: 100,
        ..Default::default()
    })
    .await;
    let fees = w.ton.config().fees;
    let p = payer(TON_WORDS, WalletVersion::V4R2);
    w.ton.fund(p.wallet.address(), Nanoton::from_ton(5));
    let session = w.client.session(w.owner_cookies(), SessionRole::Owner);
    let mut flow = session.begin().await;

    // Prices first, as a shop shows them.
    let price = flow
        .stars_price(StarsAmount::new(50).unwrap())
        .await
        .unwrap();
    let expected = Nanoton::new(Prices::default().stars(50));
    assert_eq!(price.ton, expected);
    assert!(price.usd.is_some());
    assert!(flow.ton_rate().is_some());

    flow.reset(fragment_gateway::fragment::Product::Stars)
        .await
        .unwrap();
    let recipient = flow
        .search_recipient(&user("@alice"), stars(50))
        .await
        .unwrap();
    assert_eq!(recipient.name, "Alice");
    let invoice = flow.init_purchase(&recipient, stars(50)).await.unwrap();
    assert_eq!(invoice.amount, expected);
    let link = flow.payment_link(&invoice, &p.wallet, false).await.unwrap();
    let checked = w.check_link(&link, &invoice, &p, "alice");
    w.pay_confirm_and_wait(&mut flow, &p, &invoice, &link, checked)
        .await;

    let deliveries = w.fragment.deliveries();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].username, "alice");
    assert_eq!(deliveries[0].quantity, 50);
    // To the nanoton: the payer paid the price plus network fees (deploy included); Fragment
    // received exactly the price.
    assert_eq!(
        w.ton.balance(p.wallet.address()).as_u64(),
        5_000_000_000 - expected.as_u64() - fees.compute - fees.deploy - fees.forward
    );
    assert_eq!(w.ton.balance(&w.fragment.payment_address()), expected);
}

#[tokio::test]
async fn a_premium_gift_on_the_clients_own_session_is_delivered() {
    let w = world().await;
    let prices = Prices::default();
    let p = payer(BIP39_WORDS, WalletVersion::V5R1);
    w.ton.fund(p.wallet.address(), Nanoton::from_ton(10));
    // KYC mode: the client's own login; its wallet is connected with a ton_proof.
    let cookies = w.fragment.login("client", None).unwrap();
    let session = w.client.session(cookies, SessionRole::Client);
    let mut flow = session.begin().await;
    let bob = flow_recipient(&mut flow, "@bob", months(3)).await;
    assert!(matches!(
        flow.init_purchase(&bob, months(3)).await,
        Err(FragmentError::WalletNotConnected)
    ));
    flow.connect_wallet(&p.wallet, &p.key).await.unwrap();

    let table = flow.premium_prices().await.unwrap();
    assert_eq!(table.len(), 3);
    assert_eq!(table[0].1.ton, Nanoton::new(prices.premium_3));

    let recipient = flow_recipient(&mut flow, "@bob", months(3)).await;
    let invoice = flow.init_purchase(&recipient, months(3)).await.unwrap();
    assert_eq!(invoice.amount, Nanoton::new(prices.premium_3));
    let link = flow.payment_link(&invoice, &p.wallet, true).await.unwrap();
    let checked = w.check_link(&link, &invoice, &p, "bob");
    w.pay_confirm_and_wait(&mut flow, &p, &invoice, &link, checked)
        .await;
    assert_eq!(w.fragment.deliveries()[0].quantity, 3);
    assert_eq!(
        w.ton.balance(&w.fragment.payment_address()),
        Nanoton::new(prices.premium_3)
    );
    let fees = w.ton.config().fees;
    assert_eq!(
        w.ton.balance(p.wallet.address()).as_u64(),
        10_000_000_000 - prices.premium_3 - fees.compute - fees.deploy - fees.forward
    );
    // Bob has Premium now: the next gift is refused as the real site refuses it.
    assert!(matches!(
        flow.premium_eligibility(&user("@bob"), PremiumMonths::new(6).unwrap())
            .await,
        Err(FragmentError::PremiumAlreadyActive { .. })
    ));
    flow.premium_eligibility(&user("@alice"), PremiumMonths::new(6).unwrap())
        .await
        .unwrap();
}

async fn flow_recipient(
    flow: &mut fragment_gateway::fragment::Flow,
    name: &str,
    purchase: Purchase,
) -> fragment_gateway::fragment::Recipient {
    flow.search_recipient(&user(name), purchase).await.unwrap()
}

#[tokio::test]
async fn every_refusal_maps_to_its_error_code() {
    let w = world().await;
    let session = w.client.session(w.owner_cookies(), SessionRole::Owner);
    let mut flow = session.begin().await;
    let code = |r: Result<_, FragmentError>| {
        r.map(|_: fragment_gateway::fragment::Recipient| ())
            .unwrap_err()
            .api_code()
            .0
    };

    assert_eq!(
        code(flow.search_recipient(&user("@ghost_user"), stars(50)).await),
        "USER_NOT_FOUND"
    );
    assert_eq!(
        code(
            flow.search_recipient(&user("@stars_shop_bot"), stars(50))
                .await
        ),
        "USER_NOT_FOUND"
    );
    assert_eq!(
        code(
            flow.search_recipient(&user("@premium_pete"), months(3))
                .await
        ),
        "PREMIUM_ALREADY_ACTIVE"
    );
    // Stars for someone with Premium are fine.
    flow.search_recipient(&user("@premium_pete"), stars(50))
        .await
        .unwrap();

    // A price change while ordering is a (retryable) Fragment error.
    w.fragment.change_price_next(1);
    let r = flow
        .search_recipient(&user("@alice"), stars(100))
        .await
        .unwrap();
    let err = flow.init_purchase(&r, stars(100)).await.unwrap_err();
    assert_eq!(err, FragmentError::PriceChanged);
    assert_eq!(err.api_code(), ("FRAGMENT_ERROR", 502));
    assert!(err.is_transient());
    flow.init_purchase(&r, stars(100)).await.unwrap();
    drop(flow);

    // An unverified account gets no payment link: KYC is Fragment's to ask.
    let p = payer(TON_WORDS, WalletVersion::V4R2);
    let cookies = w
        .fragment
        .login("unverified", Some(p.wallet.address()))
        .unwrap();
    let mut flow = w.client.session(cookies, SessionRole::Client).begin().await;
    let r = flow
        .search_recipient(&user("@alice"), stars(50))
        .await
        .unwrap();
    let invoice = flow.init_purchase(&r, stars(50)).await.unwrap();
    let err = flow
        .payment_link(&invoice, &p.wallet, false)
        .await
        .unwrap_err();
    assert_eq!(err, FragmentError::KycRequired);
    assert_eq!(err.api_code(), ("FRAGMENT_ERROR", 502));
    drop(flow);

    // No wallet connected: no purchase.
    let cookies = w.fragment.login("client", None).unwrap();
    let mut flow = w.client.session(cookies, SessionRole::Client).begin().await;
    let r = flow
        .search_recipient(&user("@alice"), stars(50))
        .await
        .unwrap();
    let err = flow.init_purchase(&r, stars(50)).await.unwrap_err();
    assert_eq!(err, FragmentError::WalletNotConnected);
    assert_eq!(err.api_code().0, "FRAGMENT_ERROR");
}

#[tokio::test]
async fn a_session_the_site_rejects_is_the_client_s_or_the_operator_s_problem() {
    let w = world().await;
    // Cookies of a session fragment.com does not know (forged, or long expired).
    let mut stale = FragmentCookies::default();
    for (k, v) in [
        ("stel_ssid", "0123456789abcdef01_1234567890123456789"),
        ("stel_dt", "-180"),
        ("stel_token", "deadbeef"),
        ("stel_ton_token", "cafebabe"),
    ] {
        stale
            .set(k, zeroize::Zeroizing::new(v.to_string()))
            .unwrap();
    }
    let mut flow = w
        .client
        .session(stale.clone(), SessionRole::Client)
        .begin()
        .await;
    let err = flow
        .search_recipient(&user("@alice"), stars(50))
        .await
        .unwrap_err();
    assert!(matches!(err, FragmentError::InvalidCookies(_)), "{err:?}");
    assert_eq!(err.api_code(), ("INVALID_COOKIES", 400));
    drop(flow);
    let mut flow = w.client.session(stale, SessionRole::Owner).begin().await;
    let err = flow
        .search_recipient(&user("@alice"), stars(50))
        .await
        .unwrap_err();
    assert!(
        matches!(err, FragmentError::OwnerCookiesExpired(_)),
        "{err:?}"
    );
    assert_eq!(err.api_code(), ("OWNER_COOKIES_EXPIRED", 500));
    drop(flow);

    // A real session, but with a login cookie that is not its own (expired, or copied from
    // another session): not recognised either.
    let mut mixed = w.fragment.login("client", None).unwrap();
    mixed
        .set(
            "stel_token",
            zeroize::Zeroizing::new("0badc0de".to_string()),
        )
        .unwrap();
    let mut flow = w.client.session(mixed, SessionRole::Client).begin().await;
    let err = flow
        .search_recipient(&user("@alice"), stars(50))
        .await
        .unwrap_err();
    assert_eq!(err.api_code(), ("INVALID_COOKIES", 400), "{err:?}");
    drop(flow);

    // The operator's session working, then expiring under it.
    let cookies = w.owner_cookies();
    let ssid = cookies.get("stel_ssid").unwrap().to_string();
    let session = w.client.session(cookies, SessionRole::Owner);
    let mut flow = session.begin().await;
    flow.search_recipient(&user("@alice"), stars(50))
        .await
        .unwrap();
    assert!(w.fragment.expire_session(&ssid));
    let err = flow
        .search_recipient(&user("@alice"), stars(50))
        .await
        .unwrap_err();
    assert!(
        matches!(err, FragmentError::OwnerCookiesExpired(_)),
        "{err:?}"
    );
}

#[tokio::test]
async fn outages_are_retried_then_reported() {
    let w = world().await;
    let session = w.client.session(w.owner_cookies(), SessionRole::Owner);
    let mut flow = session.begin().await;
    // Two failures, three attempts: recovered.
    w.fragment.faults().fail_next(2);
    flow.search_recipient(&user("@alice"), stars(50))
        .await
        .unwrap();
    // Down for good: a Fragment error after the bounded attempts.
    w.fragment.faults().fail_next(100);
    let err = flow
        .search_recipient(&user("@alice"), stars(50))
        .await
        .unwrap_err();
    assert!(matches!(err, FragmentError::Unavailable(_)), "{err:?}");
    assert_eq!(err.api_code(), ("FRAGMENT_ERROR", 502));
}

#[tokio::test]
async fn a_stale_api_hash_is_refreshed_once() {
    let w = world_with(Rules {
        hash_ttl_secs: 1,
        ..Default::default()
    })
    .await;
    let session = w.client.session(w.owner_cookies(), SessionRole::Owner);
    let mut flow = session.begin().await;
    flow.search_recipient(&user("@alice"), stars(50))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // The hash the client still holds has expired at the site: "Bad request", page reload,
    // retry.
    flow.search_recipient(&user("@bob"), stars(50))
        .await
        .unwrap();
}

#[tokio::test]
async fn one_flow_at_a_time_per_session_many_sessions_at_once() {
    let w = world().await;
    let a = w.client.session(w.owner_cookies(), SessionRole::Owner);
    let b = w.client.session(w.owner_cookies(), SessionRole::Owner);
    let first = a.begin().await;
    // The same session waits...
    assert!(tokio::time::timeout(Duration::from_millis(200), a.begin())
        .await
        .is_err());
    // ...another one does not.
    let mut other = tokio::time::timeout(Duration::from_millis(200), b.begin())
        .await
        .expect("another session is free");
    other
        .search_recipient(&user("@alice"), stars(50))
        .await
        .unwrap();
    drop(first);
    tokio::time::timeout(Duration::from_secs(1), a.begin())
        .await
        .expect("free again once the flow ends");
}

/// Sets up an invoice for `n` Stars on a fresh owner session and returns what it takes to
/// pay it.
async fn invoice_for(
    w: &World,
    p: &Payer,
    n: u64,
) -> (Invoice, fragment_gateway::fragment::CheckedPayment) {
    let session = w.client.session(w.owner_cookies(), SessionRole::Owner);
    let mut flow = session.begin().await;
    let (invoice, _, checked) = w.order(&mut flow, p, "@alice", stars(n)).await;
    (invoice, checked)
}

#[tokio::test]
async fn a_large_purchase_needs_its_whole_multi_cell_payload() {
    let w = world().await;
    let p = payer(TON_WORDS, WalletVersion::V4R2);
    w.ton.fund(p.wallet.address(), Nanoton::from_ton(200));
    let (invoice, checked) = invoice_for(&w, &p, 10_000).await;
    let MessageBody::Cell(payload) = &checked.message.body else {
        panic!("payload is a cell")
    };
    assert_eq!(
        payload.references().len(),
        1,
        "10 000 Stars: a two-cell comment"
    );

    // The payload with its second cell lost (what a library that re-encoded the comment
    // sent): the money arrives, the purchase does not.
    let mut truncated = CellBuilder::new();
    truncated
        .store_bits(payload.bit_len(), payload.data())
        .unwrap();
    let truncated = truncated.build().unwrap().to_arc();
    w.pay(&p, invoice.amount, MessageBody::Cell(truncated))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    w.fragment.process_now().await.unwrap();
    assert_eq!(
        w.fragment.invoice_status(&invoice.req_id),
        Some(InvoiceStatus::Linked)
    );

    // The payload exactly as Fragment sent it: delivered.
    w.pay(&p, invoice.amount, checked.message.body.clone())
        .await;
    w.wait_status(&invoice, InvoiceStatus::Done).await;
    assert_eq!(w.fragment.deliveries()[0].quantity, 10_000);
}

#[tokio::test]
async fn only_an_exact_payment_from_the_payer_fulfils() {
    let w = world_with(Rules {
        processing_ms: 50,
        ..Default::default()
    })
    .await;
    let p = payer(TON_WORDS, WalletVersion::V4R2);
    let stranger = payer(BIP39_WORDS, WalletVersion::V5R1);
    w.ton.fund(p.wallet.address(), Nanoton::from_ton(20));
    w.ton.fund(stranger.wallet.address(), Nanoton::from_ton(20));

    let (invoice, checked) = invoice_for(&w, &p, 50).await;
    let body = checked.message.body.clone();
    let amount = invoice.amount;

    // Underpaid, overpaid, another comment, another payer: none delivers.
    w.pay(&p, Nanoton::new(amount.as_u64() - 1), body.clone())
        .await;
    w.pay(&p, Nanoton::new(amount.as_u64() + 1), body.clone())
        .await;
    w.pay(
        &p,
        amount,
        MessageBody::comment("50 Telegram Stars \n\nRef#wrongref1"),
    )
    .await;
    w.pay(&stranger, amount, body.clone()).await;
    w.fragment.process_now().await.unwrap();
    assert_eq!(
        w.fragment.invoice_status(&invoice.req_id),
        Some(InvoiceStatus::Linked)
    );
    assert!(w.fragment.deliveries().is_empty());

    // The exact payment is delivered, once, however often it is paid.
    w.pay(&p, amount, body.clone()).await;
    w.wait_status(&invoice, InvoiceStatus::Done).await;
    w.pay(&p, amount, body).await;
    w.fragment.process_now().await.unwrap();
    assert_eq!(w.fragment.deliveries().len(), 1);
}

#[tokio::test]
async fn a_payment_after_valid_until_does_not_fulfil() {
    let w = world_with(Rules {
        invoice_ttl_secs: 2,
        processing_ms: 50,
        ..Default::default()
    })
    .await;
    let p = payer(TON_WORDS, WalletVersion::V4R2);
    w.ton.fund(p.wallet.address(), Nanoton::from_ton(20));
    let (invoice, checked) = invoice_for(&w, &p, 50).await;
    w.wait_status(&invoice, InvoiceStatus::Expired).await;
    // Paid late: the money arrives, the purchase does not.
    w.pay(&p, invoice.amount, checked.message.body.clone())
        .await;
    w.fragment.process_now().await.unwrap();
    assert_eq!(
        w.fragment.invoice_status(&invoice.req_id),
        Some(InvoiceStatus::Expired)
    );
    assert!(w.fragment.deliveries().is_empty());
}

#[tokio::test]
async fn requests_belong_to_their_session() {
    let w = world().await;
    let p = payer(TON_WORDS, WalletVersion::V4R2);
    let (invoice, _) = invoice_for(&w, &p, 50).await;
    // Another session presents this req_id.
    let session = w.client.session(w.owner_cookies(), SessionRole::Owner);
    let mut flow = session.begin().await;
    let err = flow
        .payment_link(&invoice, &p.wallet, false)
        .await
        .unwrap_err();
    assert!(
        matches!(err, FragmentError::Refused(ref m) if m.contains("not found")),
        "{err:?}"
    );
    // A Stars request on the Premium method is not found either.
    let wrong_product = Invoice {
        purchase: months(3),
        ..invoice
    };
    let mut own = w
        .client
        .session(w.owner_cookies(), SessionRole::Owner)
        .begin()
        .await;
    assert!(matches!(
        own.payment_link(&wrong_product, &p.wallet, false).await,
        Err(FragmentError::Refused(_))
    ));
}

#[tokio::test]
async fn the_api_refuses_what_the_site_refuses() {
    let w = world().await;
    // A page GET issues the hash bound to this session.
    let Raw {
        http,
        cookie: cookie_header,
        hash,
        ..
    } = Raw::open(&w, &w.owner_cookies()).await;
    let call = |hash: Option<String>, form: Vec<(&'static str, &'static str)>, cookie: String| {
        let http = http.clone();
        let url = format!("{}/api", w.fragment.url());
        async move {
            let mut req = http.post(url).header("Cookie", cookie).form(&form);
            if let Some(h) = hash {
                req = req.query(&[("hash", h)]);
            }
            req.send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    let search = vec![
        ("method", "searchStarsRecipient"),
        ("query", "alice"),
        ("quantity", ""),
    ];
    assert_eq!(
        call(None, search.clone(), cookie_header.clone()).await["error"],
        "Bad request"
    );
    assert_eq!(
        call(
            Some("0123abcd".into()),
            search.clone(),
            cookie_header.clone()
        )
        .await["error"],
        "Bad request"
    );
    // The hash belongs to this session: another session cannot use it.
    let other = w.owner_cookies().header().to_string();
    assert_eq!(
        call(Some(hash.clone()), search.clone(), other).await["error"],
        "Bad request"
    );
    assert_eq!(
        call(
            Some(hash.clone()),
            vec![("method", "dropTables")],
            cookie_header.clone()
        )
        .await["error"],
        "Invalid method"
    );
    assert_eq!(
        call(
            Some(hash.clone()),
            vec![("query", "alice")],
            cookie_header.clone()
        )
        .await["error"],
        "Invalid method"
    );
    let found = call(Some(hash.clone()), search, cookie_header.clone()).await;
    assert_eq!(found["ok"], true);
    let token = found["found"]["recipient"].as_str().unwrap().to_string();
    // Quantity out of range.
    let url = format!("{}/api", w.fragment.url());
    let init = |q: &str| {
        http.post(&url)
            .query(&[("hash", &hash)])
            .header("Cookie", &cookie_header)
            .form(&[
                ("method", "initBuyStarsRequest"),
                ("recipient", token.as_str()),
                ("quantity", q),
                ("payment_method", "ton"),
            ])
            .send()
    };
    let low: serde_json::Value = init("49").await.unwrap().json().await.unwrap();
    assert!(low["error"].as_str().unwrap().contains("minimum"), "{low}");
    let high: serde_json::Value = init("10000001").await.unwrap().json().await.unwrap();
    assert!(high["error"].is_string());
    let ok: serde_json::Value = init("50").await.unwrap().json().await.unwrap();
    assert!(ok["req_id"].is_string(), "{ok}");
}

/// A simulator that reads the chain only when asked, and a linked 50-Stars invoice for a
/// funded payer.
async fn unwatched_invoice() -> (World, Payer, Invoice, CheckedPayment) {
    let w = world_polling(
        Rules {
            processing_ms: 0,
            ..Default::default()
        },
        0,
    )
    .await;
    let p = payer(TON_WORDS, WalletVersion::V4R2);
    w.ton.fund(p.wallet.address(), Nanoton::from_ton(5));
    let (invoice, checked) = invoice_for(&w, &p, 50).await;
    (w, p, invoice, checked)
}

#[tokio::test]
async fn a_payment_buried_under_many_later_transactions_is_still_found() {
    let (w, p, invoice, checked) = unwatched_invoice().await;
    w.pay(&p, invoice.amount, checked.message.body.clone())
        .await;
    // 250 more transactions arrive at the payment address before the simulator looks: more
    // than two pages of history.
    for _ in 0..250 {
        w.ton.fund(&w.fragment.payment_address(), Nanoton::new(1));
    }
    w.fragment.process_now().await.unwrap();
    w.fragment.process_now().await.unwrap();
    assert_eq!(
        w.fragment.invoice_status(&invoice.req_id),
        Some(InvoiceStatus::Done)
    );
    assert_eq!(w.fragment.deliveries().len(), 1);
}

#[tokio::test]
async fn a_payment_that_bounced_back_is_not_a_payment() {
    // A Fragment address with no contract deployed on this chain.
    let w = world_deployed(Rules::default(), 0, false).await;
    let fees = w.ton.config().fees;
    let p = payer(TON_WORDS, WalletVersion::V4R2);
    w.ton.fund(p.wallet.address(), Nanoton::from_ton(5));
    let (invoice, checked) = invoice_for(&w, &p, 50).await;
    // Sent bounceable (the mistake this guards against): the coins come back.
    let bounceable =
        fragment_gateway::ton::address::friendly(&w.fragment.payment_address(), true, false);
    let msg =
        OutgoingMessage::new(&bounceable, invoice.amount, checked.message.body.clone()).unwrap();
    w.send(&p, msg, now() + 120).await;
    w.fragment.process_now().await.unwrap();
    assert_eq!(
        w.fragment.invoice_status(&invoice.req_id),
        Some(InvoiceStatus::Linked),
        "a bounced payment delivers nothing"
    );
    assert_eq!(w.ton.balance(&w.fragment.payment_address()), Nanoton::ZERO);
    // Only fees are gone: deploy + two forwards (there and back) + compute.
    assert_eq!(
        w.ton.balance(p.wallet.address()).as_u64(),
        5_000_000_000 - fees.compute - fees.deploy - 2 * fees.forward
    );
}

#[tokio::test]
async fn an_outage_after_payment_leaves_the_purchase_unknown_not_failed() {
    let w = world().await;
    let p = payer(TON_WORDS, WalletVersion::V4R2);
    w.ton.fund(p.wallet.address(), Nanoton::from_ton(5));
    let session = w.client.session(w.owner_cookies(), SessionRole::Owner);
    let mut flow = session.begin().await;
    let (invoice, _, checked) = w.order(&mut flow, &p, "@alice", stars(50)).await;
    let until = checked.sign_until(now(), 120);
    w.send(&p, checked.message, until).await;
    // fragment.com goes down right after the payment.
    w.fragment.faults().fail_next(1_000);
    let outcome = flow
        .wait_until_done(
            &invoice,
            Duration::from_millis(600),
            Duration::from_millis(50),
        )
        .await;
    assert!(
        matches!(outcome, Fulfilment::Unknown(FragmentError::Unavailable(_))),
        "{outcome:?}"
    );
    // It was delivered all along; once the site answers again, that is what we learn.
    w.fragment.faults().fail_next(0);
    w.wait_status(&invoice, InvoiceStatus::Done).await;
    assert_eq!(
        flow.wait_until_done(&invoice, Duration::from_secs(5), Duration::from_millis(50))
            .await,
        Fulfilment::Done
    );
}

#[tokio::test]
async fn a_site_too_slow_to_answer_is_unavailable_within_the_budget() {
    let w = world().await;
    let slow = FragmentClient::new(FragmentConfig {
        base_url: w.fragment.url().to_string(),
        timeout: Duration::from_millis(200),
        max_attempts: 2,
        backoff: Duration::from_millis(10),
        call_budget: Duration::from_secs(2),
        payment_addresses: vec![w.fragment.payment_address_friendly()],
        ..FragmentConfig::fragment_com()
    })
    .unwrap();
    let session = slow.session(w.owner_cookies(), SessionRole::Owner);
    let mut flow = session.begin().await;
    w.fragment
        .faults()
        .set_config(fragment_gateway::sim::faults::FaultConfig {
            latency: Duration::from_millis(500),
            ..Default::default()
        });
    // Each attempt times out; after the bounded attempts the call gives up.
    let err = flow
        .search_recipient(&user("@alice"), stars(50))
        .await
        .unwrap_err();
    assert!(
        matches!(err, FragmentError::Unavailable(ref m) if m.contains("no answer")),
        "{err:?}"
    );
    assert_eq!(err.api_code(), ("FRAGMENT_ERROR", 502));
}

#[tokio::test]
async fn with_confirmation_required_a_payment_waits_for_confirm_req() {
    let w = world_with(Rules {
        require_confirm: true,
        processing_ms: 0,
        ..Default::default()
    })
    .await;
    let p = payer(TON_WORDS, WalletVersion::V4R2);
    w.ton.fund(p.wallet.address(), Nanoton::from_ton(5));
    let session = w.client.session(w.owner_cookies(), SessionRole::Owner);
    let mut flow = session.begin().await;
    let (invoice, link, checked) = w.order(&mut flow, &p, "@bob", stars(75)).await;
    let until = checked.sign_until(now(), 120);
    let signed = w.send(&p, checked.message, until).await;
    w.fragment.process_now().await.unwrap();
    assert_eq!(
        w.fragment.invoice_status(&invoice.req_id),
        Some(InvoiceStatus::Linked),
        "paid but not confirmed"
    );
    // A junk boc is refused; the signed message is accepted, and the purchase goes through.
    let junk = flow
        .confirm(
            invoice.purchase.product(),
            &link,
            &p.wallet,
            "sent-via-liteserver",
        )
        .await;
    assert!(matches!(junk, Err(FragmentError::Refused(_))), "{junk:?}");
    flow.confirm(invoice.purchase.product(), &link, &p.wallet, &signed.boc)
        .await
        .unwrap();
    w.wait_status(&invoice, InvoiceStatus::Done).await;
}

#[tokio::test]
async fn a_payment_at_a_page_boundary_after_an_earlier_read_is_found() {
    let (w, p, invoice, checked) = unwatched_invoice().await;
    // History the simulator has already read...
    for _ in 0..30 {
        w.ton.fund(&w.fragment.payment_address(), Nanoton::new(1));
    }
    w.fragment.process_now().await.unwrap();
    // ...then the payment and 99 more transactions before the next look: the payment is the
    // last of a full page of 100, and the next page holds only what was read before.
    w.pay(&p, invoice.amount, checked.message.body.clone())
        .await;
    for _ in 0..99 {
        w.ton.fund(&w.fragment.payment_address(), Nanoton::new(1));
    }
    w.fragment.process_now().await.unwrap();
    assert_eq!(
        w.fragment.invoice_status(&invoice.req_id),
        Some(InvoiceStatus::Done)
    );
}

#[tokio::test]
async fn when_the_site_wants_the_connected_wallet_to_pay_the_refusal_is_clear() {
    let w = world_with(Rules {
        payer_must_be_connected_wallet: true,
        ..Default::default()
    })
    .await;
    let p = payer(TON_WORDS, WalletVersion::V4R2);
    // The operator's session has the operator's wallet connected; the client pays from its
    // own: a site enforcing this refuses, and says why.
    let mut flow = w
        .client
        .session(w.owner_cookies(), SessionRole::Owner)
        .begin()
        .await;
    let r = flow
        .search_recipient(&user("@alice"), stars(50))
        .await
        .unwrap();
    let invoice = flow.init_purchase(&r, stars(50)).await.unwrap();
    let err = flow
        .payment_link(&invoice, &p.wallet, false)
        .await
        .unwrap_err();
    assert!(
        matches!(err, FragmentError::Refused(ref m) if m.contains("wallet connected")),
        "{err:?}"
    );
    assert_eq!(err.api_code().0, "FRAGMENT_ERROR");
    drop(flow);
    // The client's own session with its own wallet connected: accepted.
    let cookies = w
        .fragment
        .login("client", Some(p.wallet.address()))
        .unwrap();
    let mut flow = w.client.session(cookies, SessionRole::Client).begin().await;
    let r = flow
        .search_recipient(&user("@alice"), stars(50))
        .await
        .unwrap();
    let invoice = flow.init_purchase(&r, stars(50)).await.unwrap();
    flow.payment_link(&invoice, &p.wallet, false).await.unwrap();
}

/// The site as a browser's page script talks to it, on one session's cookies: every answer
/// exactly as sent.
struct Raw {
    http: reqwest::Client,
    base: String,
    cookie: String,
    hash: String,
}

impl Raw {
    async fn open(w: &World, cookies: &FragmentCookies) -> Raw {
        let http = reqwest::Client::new();
        let base = w.fragment.url().to_string();
        let cookie = cookies.header().to_string();
        let page = http
            .get(format!("{base}/stars/buy"))
            .header("Cookie", &cookie)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let hash = fragment_gateway::fragment::html::api_hash(&page).unwrap();
        Raw {
            http,
            base,
            cookie,
            hash,
        }
    }

    async fn send(&self, form: &[(&str, &str)]) -> reqwest::Result<reqwest::Response> {
        self.http
            .post(format!("{}/api", self.base))
            .query(&[("hash", &self.hash)])
            .header("Cookie", &self.cookie)
            .form(form)
            .send()
            .await
    }

    async fn call(&self, form: &[(&str, &str)]) -> serde_json::Value {
        let resp = self.send(form).await.unwrap();
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }

    async fn search(&self, username: &str) -> String {
        let found = self
            .call(&[
                ("method", "searchStarsRecipient"),
                ("query", username),
                ("quantity", ""),
            ])
            .await;
        found["found"]["recipient"].as_str().unwrap().to_string()
    }

    async fn init(&self, recipient: &str, quantity: u32) -> String {
        let q = quantity.to_string();
        let v = self
            .call(&[
                ("method", "initBuyStarsRequest"),
                ("recipient", recipient),
                ("quantity", &q),
                ("payment_method", "ton"),
            ])
            .await;
        v["req_id"]
            .as_str()
            .unwrap_or_else(|| panic!("{v}"))
            .to_string()
    }

    async fn link(&self, id: &str, p: &Payer) -> serde_json::Value {
        let account = fragment_gateway::fragment::client::ton_connect_account(&p.wallet);
        let device = fragment_gateway::fragment::client::ton_connect_device(p.wallet.version());
        self.call(&[
            ("method", "getBuyStarsLink"),
            ("id", id),
            ("show_sender", "0"),
            ("transaction", "1"),
            ("account", &account),
            ("device", &device),
        ])
        .await
    }

    async fn poll(&self, id: &str) -> serde_json::Value {
        self.call(&[
            ("method", "updateStarsBuyState"),
            ("mode", "new"),
            ("lv", "false"),
            ("dh", "123456789"),
            ("id", id),
        ])
        .await
    }
}

fn ssid(cookies: &FragmentCookies) -> String {
    cookies.get("stel_ssid").unwrap().to_string()
}

#[tokio::test]
async fn an_expired_session_is_a_bad_request_and_its_page_starts_a_new_session() {
    let w = world().await;
    let cookies = w.owner_cookies();
    let raw = Raw::open(&w, &cookies).await;
    // Positive control: the session works.
    raw.search("alice").await;
    assert!(w.fragment.expire_session(&ssid(&cookies)));
    assert!(!w.fragment.expire_session(&ssid(&cookies)), "already gone");
    // As for any session the site does not know: HTTP 200 and "Bad request", for every
    // method, polling included.
    let search = raw
        .call(&[
            ("method", "searchStarsRecipient"),
            ("query", "alice"),
            ("quantity", ""),
        ])
        .await;
    assert_eq!(search, serde_json::json!({"error": "Bad request"}));
    assert_eq!(raw.poll("anything").await["error"], "Bad request");
    // A page load does not resume it: a new anonymous session, under a new stel_ssid.
    let page = raw
        .http
        .get(format!("{}/stars/buy", raw.base))
        .header("Cookie", &raw.cookie)
        .send()
        .await
        .unwrap();
    let new_ssid = page
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("stel_ssid="))
        .map(|v| v.split(';').next().unwrap().to_string())
        .expect("a new session");
    assert_ne!(new_ssid, ssid(&cookies));
    // A fresh login works again.
    Raw::open(&w, &w.owner_cookies())
        .await
        .search("alice")
        .await;
}

#[tokio::test]
async fn two_flows_overlapping_on_one_session_are_counted_not_refused() {
    let w = world().await;
    let p = payer(TON_WORDS, WalletVersion::V4R2);
    // Positive control: the client's flows, one after another on one session, and one on
    // another session meanwhile, never overlap.
    let cookies = w.owner_cookies();
    let session = w.client.session(cookies.clone(), SessionRole::Owner);
    for name in ["@alice", "@bob"] {
        let mut flow = session.begin().await;
        w.order(&mut flow, &p, name, stars(50)).await;
    }
    let mut other = w
        .client
        .session(w.owner_cookies(), SessionRole::Owner)
        .begin()
        .await;
    w.order(&mut other, &p, "@alice", stars(50)).await;
    assert_eq!(w.fragment.overlapping_flows(), 0);
    assert_eq!(w.fragment.max_in_flight(&ssid(&cookies)), 1);
    assert_eq!(w.fragment.max_in_flight_any(), 1);

    // Two flows interleaved on one session: the site answers everything, and counts.
    let raw = Raw::open(&w, &w.owner_cookies()).await;
    let alice = raw.search("alice").await;
    let first = raw.init(&alice, 50).await;
    let bob = raw.search("bob").await; // overlaps the first flow
    let second = raw.init(&bob, 60).await; // so does this
    assert_eq!(w.fragment.overlapping_flows(), 2);
    assert_eq!(raw.link(&first, &p).await["ok"], true);
    assert_eq!(raw.link(&second, &p).await["ok"], true);
    // Both links asked for: the next flow starts clean.
    raw.search("alice").await;
    assert_eq!(w.fragment.overlapping_flows(), 2);

    // Requests of one session in flight at once (each held up by latency).
    w.fragment
        .faults()
        .set_config(fragment_gateway::sim::faults::FaultConfig {
            latency: Duration::from_millis(300),
            ..Default::default()
        });
    let cookies = w.owner_cookies();
    let busy = Raw::open(&w, &cookies).await;
    let (a, b) = tokio::join!(busy.poll(&first), busy.poll(&second));
    assert!(a["error"].is_string() && b["error"].is_string(), "{a} {b}");
    assert_eq!(w.fragment.max_in_flight(&ssid(&cookies)), 2);
    assert_eq!(w.fragment.max_in_flight_any(), 2);
}

#[tokio::test]
async fn a_hostile_link_answer_names_another_request_or_none() {
    use fragment_gateway::sim::fragment::state::LinkAnswer;
    let w = world().await;
    let p = payer(TON_WORDS, WalletVersion::V4R2);
    let raw = Raw::open(&w, &w.owner_cookies()).await;
    let alice = raw.search("alice").await;
    let older = raw.init(&alice, 50).await;
    let latest = raw.init(&alice, 70).await;
    let amount = |link: &serde_json::Value| link["transaction"]["messages"][0]["amount"].clone();
    let price = |n| serde_json::json!(Prices::default().stars(n).to_string());

    // Asked for the older request, the site links the latest one, and says so.
    w.fragment.set_link_answer(LinkAnswer::LatestRequest);
    let link = raw.link(&older, &p).await;
    assert_eq!(link["ok"], true, "{link}");
    assert_eq!(link["confirm_params"]["id"], latest.as_str());
    assert_eq!(amount(&link), price(70));
    assert_eq!(
        w.fragment.invoice_status(&latest),
        Some(InvoiceStatus::Linked)
    );
    assert_eq!(
        w.fragment.invoice_status(&older),
        Some(InvoiceStatus::Created)
    );
    // Asked for the latest, it cannot do otherwise.
    let link = raw.link(&latest, &p).await;
    assert_eq!(link["confirm_params"]["id"], latest.as_str());

    // Or it links the request asked for without saying which it is.
    w.fragment.set_link_answer(LinkAnswer::OmitConfirmId);
    let link = raw.link(&older, &p).await;
    assert_eq!(link["ok"], true, "{link}");
    assert_eq!(link["confirm_params"], serde_json::json!({}));
    assert_eq!(amount(&link), price(50));
    assert_eq!(
        w.fragment.invoice_status(&older),
        Some(InvoiceStatus::Linked)
    );

    // Positive control: honest again.
    w.fragment.set_link_answer(LinkAnswer::Honest);
    let link = raw.link(&older, &p).await;
    assert_eq!(link["confirm_params"]["id"], older.as_str());
    assert_eq!(amount(&link), price(50));
}

#[tokio::test]
async fn a_request_s_state_answers_on_its_own_session_only_unless_lenient() {
    let client_login = |w: &World| {
        let key = KeyPair::from_secret_seed(&zeroize::Zeroizing::new([7u8; 32]));
        let wallet = WalletContract::new(WalletVersion::V4R2, Network::Mainnet, key.public_key());
        w.fragment.login("client", Some(wallet.address())).unwrap()
    };
    for lenient in [false, true] {
        let w = world_with(Rules {
            poll_from_any_session_of_account: lenient,
            ..Default::default()
        })
        .await;
        let own = Raw::open(&w, &w.owner_cookies()).await;
        let alice = own.search("alice").await;
        let req = own.init(&alice, 50).await;
        assert_eq!(own.poll(&req).await["mode"], "new");
        // Another session of the same account.
        let sibling = Raw::open(&w, &w.owner_cookies()).await.poll(&req).await;
        if lenient {
            assert_eq!(sibling["mode"], "new", "{sibling}");
        } else {
            assert_eq!(sibling["error"], "Request not found.", "{sibling}");
        }
        // Another account's session, never.
        let stranger = Raw::open(&w, &client_login(&w)).await.poll(&req).await;
        assert_eq!(stranger["error"], "Request not found.", "{stranger}");
    }
}

#[tokio::test]
async fn a_hanging_site_drops_the_request_or_answers_it_late() {
    use fragment_gateway::sim::faults::{AfterTimeout, HangConfig};
    let w = world().await;
    let raw = Raw::open(&w, &w.owner_cookies()).await;
    let alice = raw.search("alice").await;
    let init = [
        ("method", "initBuyStarsRequest"),
        ("recipient", alice.as_str()),
        ("quantity", "50"),
        ("payment_method", "ton"),
    ];
    let hang = |then| HangConfig {
        duration: Duration::from_millis(300),
        then,
        ..HangConfig::default()
    };
    // Dropped: no answer, and the site never saw the init (no flow was opened).
    w.fragment.faults().set_hangs(hang(AfterTimeout::Close));
    w.fragment.faults().hang_next(1);
    let started = std::time::Instant::now();
    let err = raw.send(&init).await.unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(err.status().is_none(), "{err:?}");
    raw.search("alice").await;
    assert_eq!(w.fragment.overlapping_flows(), 0);
    // Answered late: a normal answer.
    w.fragment.faults().set_hangs(hang(AfterTimeout::Answer));
    w.fragment.faults().hang_next(1);
    let started = std::time::Instant::now();
    let v: serde_json::Value = raw.send(&init).await.unwrap().json().await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(v["req_id"].is_string(), "{v}");
    assert_eq!(w.fragment.faults().hung(), 2);
}

/// A USDT invoice (`payment_method=usdt_ton`) as the simulated site issues it: priced in
/// USDT at its TON rate, paid by a jetton transfer to the payer's own USDT wallet carrying the
/// reference as its forward payload. The exact transfer is delivered; one unit short is kept
/// and ignored, like any payment that is not the invoice's.
#[tokio::test]
async fn a_usdt_invoice_is_paid_by_the_jetton_transfer_it_names_and_nothing_else() {
    use fragment_gateway::ton::jetton::{JettonAmount, JettonTransfer};
    use fragment_gateway::ton::transfer::decode_boc;
    let w = world().await;
    let p = payer(TON_WORDS, WalletVersion::V4R2);
    w.ton.fund(p.wallet.address(), Nanoton::from_ton(5));
    w.ton
        .mint_usdt(p.wallet.address(), JettonAmount(100_000_000));
    let session = w.client.session(w.owner_cookies(), SessionRole::Owner);
    let order = async |stars_count: u64| {
        let mut flow = session.begin().await;
        let r = flow
            .search_recipient(&user("@alice"), stars(stars_count))
            .await
            .unwrap();
        let invoice = flow
            .init_usdt_purchase(&r, stars(stars_count))
            .await
            .unwrap();
        let link = flow
            .payment_link_for(&invoice.req_id, invoice.purchase, &p.wallet, false)
            .await
            .unwrap();
        (invoice, link)
    };

    // 50 Stars at 0.25 TON and $3 a TON: 0.75 USDT.
    let (invoice, link) = order(50).await;
    assert_eq!(invoice.amount, JettonAmount(750_000));
    assert_eq!(link.messages.len(), 1);
    let m = &link.messages[0];
    let master = fragment_gateway::sim::ton::usdt_master();
    let my_jettons = w
        .chain
        .jetton_wallet_address(&master, p.wallet.address())
        .await
        .unwrap();
    assert_eq!(
        fragment_gateway::ton::address::parse_address(&m.address).unwrap(),
        my_jettons,
        "to the payer's own USDT wallet"
    );
    let body = decode_boc(m.payload.as_deref().unwrap()).unwrap();
    let transfer = JettonTransfer::parse(&body).unwrap();
    assert_eq!(transfer.amount, invoice.amount);
    assert_eq!(&transfer.destination, &w.fragment.payment_address());
    assert_eq!(
        transfer.response_destination.as_ref(),
        Some(p.wallet.address())
    );
    assert!(
        m.amount <= Nanoton::new(300_000_000),
        "at most 0.3 TON attached: {}",
        m.amount
    );

    // One unit short, with the invoice's own reference: not this invoice's payment.
    let short = JettonTransfer {
        amount: JettonAmount(invoice.amount.units() - 1),
        ..transfer.clone()
    };
    let msg = OutgoingMessage::new(
        &m.address,
        m.amount,
        MessageBody::Cell(short.to_cell().unwrap().to_arc()),
    )
    .unwrap();
    w.send(&p, msg, now() + 60).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    w.fragment.process_now().await.unwrap();
    assert_eq!(
        w.fragment.invoice_status(&invoice.req_id),
        Some(InvoiceStatus::Linked)
    );

    // The transfer the link names pays it.
    let msg = OutgoingMessage::new(
        &m.address,
        m.amount,
        MessageBody::from_boc_base64(m.payload.as_deref().unwrap()).unwrap(),
    )
    .unwrap();
    w.send(&p, msg, now() + 60).await;
    let stand_in = Invoice {
        purchase: invoice.purchase,
        req_id: invoice.req_id.clone(),
        amount: Nanoton::ZERO,
    };
    w.wait_status(&stand_in, InvoiceStatus::Done).await;
    assert_eq!(
        w.ton.usdt_balance(&w.fragment.payment_address()),
        JettonAmount(750_000 + 749_999)
    );
    assert_eq!(
        w.ton.usdt_balance(p.wallet.address()),
        JettonAmount(100_000_000 - 1_499_999)
    );
}
