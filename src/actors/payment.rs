//! The payment step: Fragment invoice → checked link → signed wallet message →
//! `PaymentSubmitted` appended **before** the broadcast → broadcast → the transaction found
//! on chain → wallet accounted, order fulfilled (or failed, saying whether funds moved) →
//! delivery confirmed with Fragment. And its restart half, `reconcile`: finish a recorded
//! submission from the chain alone, re-sending the identical signed message, never signing.

use std::time::Duration;

use chrono::Utc;
use events::{
    DeliveryConfirmation, EventMetadata, JettonAmount, OrderCreated, PaymentMethod,
    PaymentSubmitted, SubmittedMessage, UsdtTransfer,
};
use uuid::Uuid;

use super::{CoreError, Shared};
use crate::domain::wallet::PurchaseSettlement;
use crate::domain::{OrderCommand, Username, WalletCommand};
use crate::fragment::client::USDT_DECIMALS;
use crate::fragment::{
    Flow, FragmentSession, Fulfilment, LinkExpectations, Purchase, SessionRole, UsdtExpectations,
};
use crate::ton::client::{parse_hash, SignedAfter, TonApiError, TransferOutcome};
use crate::ton::transfer::{sign_transfer, ExpectedMessage, TransferParams};
use crate::ton::{
    address, KeyPair, MessageBody, Nanoton, OutgoingMessage, SignedTransfer, WalletContract,
};

/// The points of a payment where a test, or the fault harness, can step in (`PaymentHooks`):
/// to stop the process there, to fault a simulator, or to panic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// Processing started; nothing asked of Fragment yet.
    Started,
    /// The wallet message is signed, not yet recorded.
    Signed,
    /// The signed message is recorded, not yet broadcast.
    Recorded,
    /// The message was broadcast (or the broadcast's answer was lost); the chain decides.
    Broadcast,
    /// The order is fulfilled; Fragment's delivery is not confirmed yet.
    Fulfilled,
    /// A recorded submission is being finished from the chain.
    Reconciling,
}

/// Called at each `Step`, with the order it concerns. The default does nothing.
pub trait PaymentHooks: Send + Sync + 'static {
    fn at(&self, step: Step, order_id: Uuid);
}

/// The configured hooks, if any.
#[derive(Clone, Default)]
pub struct Hooks(Option<std::sync::Arc<dyn PaymentHooks>>);

impl Hooks {
    pub fn new(hooks: impl PaymentHooks) -> Hooks {
        Hooks(Some(std::sync::Arc::new(hooks)))
    }

    pub(crate) fn at(&self, step: Step, order_id: Uuid) {
        if let Some(h) = &self.0 {
            h.at(step, order_id);
        }
    }
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Hooks(set)"
        } else {
            "Hooks(none)"
        })
    }
}

/// The client's wallet key, held in memory only while its request waits or is processed.
pub struct PayerKey {
    pub key: KeyPair,
    pub wallet: WalletContract,
}

/// A paid order waiting for its turn.
pub struct Job {
    pub order: OrderCreated,
    pub request_id: Uuid,
    pub deadline: chrono::DateTime<Utc>,
    pub payer: PayerKey,
    /// The client's own Fragment session (KYC); `None` buys on an owner session.
    pub client_session: Option<FragmentSession>,
}

/// Why a payment ended before any money could move.
struct Refusal {
    code: &'static str,
    message: String,
    /// A passing failure (an API down for a moment): the order stays payable, as it would
    /// after a restart at the same point, rather than end for good.
    transient: bool,
}

impl Refusal {
    fn new(code: &'static str, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            message: message.into(),
            transient: false,
        }
    }

    fn transient(code: &'static str, message: impl Into<String>) -> Refusal {
        Refusal {
            transient: true,
            ..Refusal::new(code, message)
        }
    }
}

fn fragment_refusal(e: crate::fragment::FragmentError) -> Refusal {
    let (code, _) = e.api_code();
    let message = format!("{e}; no funds moved");
    match e {
        crate::fragment::FragmentError::Unavailable(_) => Refusal::transient(code, message),
        _ => Refusal::new(code, message),
    }
}

struct Prepared {
    signed: SignedTransfer,
    submitted: PaymentSubmitted,
    invoice: crate::fragment::Invoice,
    link: crate::fragment::PaymentLink,
}

/// Everything up to a signed message; nothing here moves money.
async fn prepare(
    sh: &Shared,
    job: &Job,
    session: &FragmentSession,
    flow: &mut Flow,
) -> Result<Prepared, Refusal> {
    let order = &job.order;
    let wallet = &job.payer.wallet;
    let purchase = Purchase::from_order(order.product)
        .map_err(|_| Refusal::new("INTERNAL_ERROR", "the order holds an invalid product"))?;
    let username = Username::parse(&format!("@{}", order.username))
        .map_err(|_| Refusal::new("INTERNAL_ERROR", "the order holds an invalid username"))?;
    if flow.role() == SessionRole::Client {
        flow.connect_wallet(wallet, &job.payer.key)
            .await
            .map_err(fragment_refusal)?;
    }
    let recipient = flow
        .search_recipient(&username, purchase)
        .await
        .map_err(fragment_refusal)?;
    let now = Utc::now().timestamp() as u32;
    let failed_checks = |e: crate::fragment::LinkError| {
        Refusal::new(
            "FRAGMENT_ERROR",
            format!("Fragment's payment request failed our checks ({e}); no funds moved"),
        )
    };
    let chain_down = |e: TonApiError| {
        tracing::warn!(error = %e, "TON API unavailable while preparing a payment");
        Refusal::transient(
            "SERVICE_UNAVAILABLE",
            "the TON network API is unavailable; no funds moved",
        )
    };
    // The invoice and the one message that pays it: TON to Fragment, or a jetton transfer
    // of USDT to Fragment through the wallet's own USDT wallet, with TON for its gas.
    let (invoice, link, checked, usdt) = match order.payment_method {
        PaymentMethod::Ton => {
            let invoice = flow
                .init_purchase(&recipient, purchase)
                .await
                .map_err(fragment_refusal)?;
            let link = flow
                .payment_link(&invoice, wallet, false)
                .await
                .map_err(fragment_refusal)?;
            let checked = link
                .check(&LinkExpectations {
                    req_id: &invoice.req_id,
                    purchase,
                    recipient: &order.username,
                    invoice_amount: invoice.amount,
                    max_amount: order.price_nanoton,
                    fragment_addresses: sh.services.fragment.payment_addresses(),
                    payer: wallet.address(),
                    now,
                    min_validity: 10,
                })
                .map_err(failed_checks)?;
            (invoice, link, checked, None)
        }
        PaymentMethod::UsdtTon => {
            let invoice = flow
                .init_usdt_purchase(&recipient, purchase)
                .await
                .map_err(fragment_refusal)?;
            let link = flow
                .payment_link_for(&invoice.req_id, purchase, wallet, false)
                .await
                .map_err(fragment_refusal)?;
            let chain = &sh.services.chain;
            let jetton_wallet = chain
                .jetton_wallet_address(&sh.services.usdt_master, wallet.address())
                .await
                .map_err(chain_down)?;
            let max_amount = order.price_usdt.unwrap_or(invoice.amount);
            let checked = link
                .check_usdt(&UsdtExpectations {
                    req_id: &invoice.req_id,
                    purchase,
                    recipient: &order.username,
                    invoice_amount: invoice.amount,
                    max_amount,
                    fragment_addresses: sh.services.fragment.payment_addresses(),
                    payer: wallet.address(),
                    jetton_wallet: &jetton_wallet,
                    now,
                    min_validity: 10,
                })
                .map_err(failed_checks)?;
            let held = chain
                .jetton_wallet_data(&jetton_wallet)
                .await
                .map_err(chain_down)?
                .map_or(JettonAmount::ZERO, |d| d.balance);
            if held < checked.amount {
                return Err(Refusal::new(
                    "INSUFFICIENT_JETTON_BALANCE",
                    format!(
                        "the wallet holds {} USDT; this purchase costs {} USDT; no funds moved",
                        held.to_decimal_string(USDT_DECIMALS),
                        checked.amount.to_decimal_string(USDT_DECIMALS)
                    ),
                ));
            }
            let usdt = UsdtTransfer {
                jetton_wallet: address::raw(&jetton_wallet),
                amount: checked.amount,
            };
            let stand_in = crate::fragment::Invoice {
                purchase,
                req_id: invoice.req_id,
                // Paid in USDT: the TON the message carries is gas, not the price.
                amount: Nanoton::ZERO,
            };
            let checked = crate::fragment::CheckedPayment {
                message: checked.message,
                valid_until: checked.valid_until,
            };
            (stand_in, link, checked, Some(usdt))
        }
    };

    let state = sh
        .services
        .chain
        .wallet_state(wallet)
        .await
        .map_err(chain_down)?;
    let raw = wallet.raw_address();
    let debt = sh
        .registry
        .wallet_state(&raw)
        .await
        .map_err(|_| {
            Refusal::transient(
                "SERVICE_UNAVAILABLE",
                "the service is unavailable; no funds moved",
            )
        })?
        .debt_nanoton;
    // The one balance rule (`Policy::payment_needs`), now at the amount Fragment invoiced.
    // TON to Fragment, or the TON a USDT transfer carries for its gas.
    let ton_sent = checked.message.amount;
    let needs = sh
        .config
        .policy
        .payment_needs(ton_sent, order.commission_nanoton, debt)
        .map_err(|e| Refusal::new("INTERNAL_ERROR", format!("{e}; no funds moved")))?;
    if state.balance < needs.total {
        return Err(Refusal::new(
            "INSUFFICIENT_BALANCE",
            format!(
                "the wallet holds {} TON; this payment needs {} TON (price, commission due and network fees); no funds moved",
                state.balance.to_ton_string(),
                needs.total.to_ton_string()
            ),
        ));
    }
    let mut messages = vec![checked.message.clone()];
    // `collection_due` is zero unless a fee address is configured (the core sets the
    // policy's `collection_enabled` from it), so a due collection always has somewhere to go.
    let collection = match &sh.services.fee_address {
        Some(fee) if !needs.collection.is_zero() => {
            messages.push(OutgoingMessage::to(
                fee.clone(),
                needs.collection,
                MessageBody::comment(format!(
                    "fragment-gateway commission, order {}",
                    order.order_id
                )),
            ));
            needs.collection
        }
        _ => Nanoton::ZERO,
    };
    let params = TransferParams {
        seqno: state.seqno,
        valid_until: checked.sign_until(now, sh.config.sign_ttl_secs),
        include_state_init: !state.deployed,
    };
    let signed = sign_transfer(wallet, &job.payer.key, &params, &messages).map_err(|e| {
        Refusal::new(
            "INTERNAL_ERROR",
            format!("the payment could not be signed ({e}); no funds moved"),
        )
    })?;
    let submitted = PaymentSubmitted {
        order_id: order.order_id,
        request_id: job.request_id,
        wallet_address: raw,
        wallet_version: wallet.version().as_str().to_string(),
        seqno: signed.seqno,
        valid_until: signed.valid_until,
        message_hash: signed.message_hash.to_hex(),
        normalized_hash: signed.normalized_hash.to_hex(),
        body_hash: signed.body_hash.to_hex(),
        boc: signed.boc.clone(),
        messages: signed
            .messages
            .iter()
            .enumerate()
            .map(|(i, m)| SubmittedMessage {
                destination: address::raw(&m.destination),
                amount_nanoton: m.amount,
                body_hash: m.body_hash.to_hex(),
                purpose: if i == 0 { "purchase" } else { "commission" }.into(),
            })
            .collect(),
        fragment_request_id: invoice.req_id.clone(),
        purchase_nanoton: invoice.amount,
        usdt,
        collection_nanoton: collection,
        submitted_at: Utc::now(),
        wallet_last_lt: state.last_lt,
        confirmation: Some(Box::new(DeliveryConfirmation {
            wallet_public_key: wallet.public_key().to_hex(),
            confirm_method: link.confirm_method.clone(),
            confirm_params: link.confirm_params.clone(),
            session_role: match session.role() {
                SessionRole::Owner => "owner",
                SessionRole::Client => "client",
            }
            .into(),
            session_id: session.id().to_hex(),
            wallet_id: None,
        })),
        checkout: None,
    };
    Ok(Prepared {
        signed,
        submitted,
        invoice,
        link,
    })
}

/// Runs one payment on `session` (already reserved for it by the dispatcher).
pub(crate) async fn pay(sh: &Shared, job: Job, session: FragmentSession, lane: String) {
    let order_id = job.order.order_id;
    let request_id = job.request_id;
    let meta = EventMetadata::correlated(request_id);
    if !sh.alive() {
        return;
    }
    let start = OrderCommand::StartProcessing {
        request_id,
        session: lane,
        now: Utc::now(),
    };
    if let Err(e) = sh.registry.order(order_id, start, meta).await {
        tracing::warn!(%order_id, error = %e, "cannot start processing");
        return;
    }
    sh.config.hooks.at(Step::Started, order_id);
    let mut flow = session.begin().await;
    let prepared = match prepare(sh, &job, &session, &mut flow).await {
        Ok(p) => p,
        Err(refusal) if refusal.transient => {
            if sh.alive() {
                let abandon = OrderCommand::Abandon {
                    request_id,
                    error_code: refusal.code.into(),
                    error: format!(
                        "{}. The order can be paid again until it expires",
                        refusal.message
                    ),
                    now: Utc::now(),
                };
                if let Err(e) = sh.registry.order(order_id, abandon, meta).await {
                    tracing::error!(%order_id, error = %e, "cannot reopen an order after a passing failure");
                }
            }
            return;
        }
        Err(refusal) => {
            if sh.alive() {
                fail(
                    sh,
                    order_id,
                    request_id,
                    refusal.code,
                    refusal.message,
                    Nanoton::ZERO,
                )
                .await;
            }
            return;
        }
    };
    let Job { payer, order, .. } = job;
    let PayerKey { key, wallet } = payer;
    // Signed: the key has done its work and leaves memory now.
    drop(key);
    sh.config.hooks.at(Step::Signed, order_id);
    // Fragment is not needed while the chain decides, so the session is free meanwhile for
    // pricing new orders (the dispatcher still starts no other payment on it).
    drop(flow);
    if !sh.alive() {
        return;
    }
    let submit = OrderCommand::SubmitPayment(Box::new(prepared.submitted.clone()));
    if let Err(e) = sh.registry.order(order_id, submit, meta).await {
        // Not recorded means never broadcast: the message dies unsent with its seqno free.
        tracing::error!(%order_id, error = %e, "cannot record the signed payment; not broadcasting");
        if sh.alive() {
            let abandon = OrderCommand::Abandon {
                request_id,
                error_code: "SERVICE_UNAVAILABLE".into(),
                error: "the service could not record the payment before sending it; no funds moved"
                    .into(),
                now: Utc::now(),
            };
            let _ = sh.registry.order(order_id, abandon, meta).await;
        }
        return;
    }
    sh.config.hooks.at(Step::Recorded, order_id);
    if !sh.alive() {
        return;
    }
    let heard = broadcast(sh, &prepared.signed).await;
    sh.config.hooks.at(Step::Broadcast, order_id);
    let after = signed_after(&prepared.submitted);
    let Some(outcome) = wait_outcome(sh, &prepared.signed, heard, after).await else {
        return;
    };
    let fulfilled = settle(sh, &order, &prepared.submitted, outcome).await;
    if !fulfilled || !sh.alive() {
        return;
    }
    sh.config.hooks.at(Step::Fulfilled, order_id);
    // The money moved; now make sure Fragment delivers.
    let delivered = confirm_delivery(
        sh,
        &session,
        &prepared.invoice,
        &prepared.link,
        &wallet,
        &prepared.signed.boc,
    )
    .await;
    record_delivery(sh, order_id, request_id, delivered).await;
}

/// Tells Fragment the payment was sent and polls until it reports the purchase delivered
/// (or the delivery timeout passes).
async fn confirm_delivery(
    sh: &Shared,
    session: &FragmentSession,
    invoice: &crate::fragment::Invoice,
    link: &crate::fragment::PaymentLink,
    wallet: &WalletContract,
    boc: &str,
) -> Fulfilment {
    let product = invoice.purchase.product();
    let mut flow = session.begin().await;
    match flow.confirm(product, link, wallet, boc).await {
        Ok(()) => {
            flow.wait_until_done(invoice, sh.config.delivery_timeout, sh.config.poll_interval)
                .await
        }
        Err(e) => Fulfilment::Unknown(e),
    }
}

async fn record_delivery(sh: &Shared, order_id: Uuid, request_id: Uuid, delivered: Fulfilment) {
    let reason = match delivered {
        Fulfilment::Done => None,
        Fulfilment::NotYet => Some(format!(
            "Fragment had not confirmed the delivery after {:?}",
            sh.config.delivery_timeout
        )),
        Fulfilment::Unknown(e) => Some(format!(
            "Fragment could not be asked about the delivery: {e}"
        )),
    };
    unconfirmed_or_confirmed(sh, order_id, request_id, reason).await;
}

/// Records the delivery verdict: confirmed when `reason` is `None`, else on the operator's
/// list with `reason`.
async fn unconfirmed_or_confirmed(
    sh: &Shared,
    order_id: Uuid,
    request_id: Uuid,
    reason: Option<String>,
) {
    let now = Utc::now();
    let command = match reason {
        None => OrderCommand::ConfirmDelivery { request_id, now },
        Some(reason) => OrderCommand::DeliveryUnconfirmed {
            request_id,
            reason,
            now,
        },
    };
    if let Err(e) = sh
        .registry
        .order(order_id, command, EventMetadata::correlated(request_id))
        .await
    {
        tracing::warn!(%order_id, error = %e, "cannot record the delivery state");
    }
}

/// Confirms and polls the delivery of a paid order whose purchase flow is gone (a restart),
/// from what its `PaymentSubmitted` recorded, on the Fragment session that bought it: an
/// owner session is found in the pool by its identity. The order goes on the operator's
/// unconfirmed list only when Fragment cannot be asked: the client's own session (its
/// cookies are never kept), an owner session no longer configured, or a record from before
/// this was recorded.
pub(crate) async fn deliver_recorded(
    sh: &Shared,
    order: &OrderCreated,
    submitted: &PaymentSubmitted,
    client: Option<&FragmentSession>,
) {
    let (order_id, request_id) = (order.order_id, submitted.request_id);
    let unconfirmed =
        |reason: &str| Some(format!("{reason}; check with Fragment that it delivered"));
    let Some(c) = &submitted.confirmation else {
        let reason = unconfirmed(
            "the payment was recorded by an earlier version, without what confirming it needs",
        );
        return unconfirmed_or_confirmed(sh, order_id, request_id, reason).await;
    };
    let recorded = crate::fragment::client::SessionId::from_hex(&c.session_id)
        .filter(|_| c.session_role == "owner");
    let session = match client {
        // The client's own session, brought again with a checkout's submission.
        Some(own) if c.session_role == "client" && own.id().to_hex() == c.session_id => {
            Some(own.clone())
        }
        _ => recorded.and_then(|id| {
            sh.owners
                .sessions()
                .iter()
                .find(|o| o.lane == id)
                .map(|o| o.session.clone())
        }),
    };
    let Some(session) = session else {
        let reason = if c.session_role == "owner" {
            unconfirmed("the operator's Fragment session that bought it is no longer configured")
        } else {
            unconfirmed("it was bought on the client's own Fragment session, whose cookies the service does not keep across a restart")
        };
        return unconfirmed_or_confirmed(sh, order_id, request_id, reason).await;
    };
    let (Ok(purchase), Ok(version), Some(key)) = (
        Purchase::from_order(order.product),
        submitted
            .wallet_version
            .parse::<crate::ton::WalletVersion>(),
        hex::decode(&c.wallet_public_key)
            .ok()
            .and_then(|k| <[u8; 32]>::try_from(k).ok()),
    ) else {
        let reason = unconfirmed("the recorded payment cannot be read back");
        return unconfirmed_or_confirmed(sh, order_id, request_id, reason).await;
    };
    let network = sh.services.fragment.config().network;
    let wallet = WalletContract::with_wallet_id(
        version,
        network,
        crate::ton::PublicKey(key),
        c.wallet_id
            .unwrap_or_else(|| crate::ton::wallet::default_wallet_id(version, network)),
    );
    if wallet.raw_address() != submitted.wallet_address {
        let reason = unconfirmed("the recorded wallet key does not give the paying wallet");
        return unconfirmed_or_confirmed(sh, order_id, request_id, reason).await;
    }
    let invoice = crate::fragment::Invoice {
        purchase,
        req_id: submitted.fragment_request_id.clone(),
        amount: submitted.purchase_nanoton,
    };
    let link = crate::fragment::PaymentLink {
        valid_until: submitted.valid_until,
        from: Some(submitted.wallet_address.clone()),
        messages: vec![],
        confirm_method: c.confirm_method.clone(),
        confirm_params: c.confirm_params.clone(),
    };
    tracing::info!(%order_id, "confirming the delivery of a payment made before the restart");
    let delivered = confirm_delivery(sh, &session, &invoice, &link, &wallet, &submitted.boc).await;
    record_delivery(sh, order_id, request_id, delivered).await;
}

/// Finishes a submission recorded before a restart, from the chain alone.
pub(crate) async fn reconcile(sh: &Shared, order: OrderCreated, submitted: PaymentSubmitted) {
    sh.config.hooks.at(Step::Reconciling, order.order_id);
    // The first broadcast may never have left (a crash right after recording it): sending
    // the identical message again is harmless, as the chain applies one seqno once.
    finish_recorded(sh, &order, &submitted, true, None, false).await;
}

/// Follows a message the client's own wallet signed (a checkout), just recorded as
/// submitted: broadcast (unless the client did), its outcome from the chain, then the
/// delivery, on the client's own Fragment session for a KYC order (`client`).
pub(crate) async fn follow(
    sh: &Shared,
    order: OrderCreated,
    submitted: PaymentSubmitted,
    broadcast: bool,
    client: Option<FragmentSession>,
) {
    sh.config.hooks.at(Step::Recorded, order.order_id);
    finish_recorded(sh, &order, &submitted, broadcast, client.as_ref(), true).await;
}

/// A recorded submission to its end: broadcast (when `send`), outcome, settlement, delivery.
/// A first run (`steps`) passes the payment's `Step`s on to the hooks; a reconciliation has
/// its own step.
async fn finish_recorded(
    sh: &Shared,
    order: &OrderCreated,
    submitted: &PaymentSubmitted,
    send: bool,
    client: Option<&FragmentSession>,
    steps: bool,
) {
    let step = |s: Step| {
        if steps {
            sh.config.hooks.at(s, order.order_id);
        }
    };
    let signed = match rebuild_transfer(submitted) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(order_id = %order.order_id, error = %e, "cannot read a recorded submission");
            return;
        }
    };
    if !sh.alive() {
        return;
    }
    // A message the client broadcast itself counts as heard: if the network lost it, it is
    // the client's to send again, and the chain says when it can no longer apply.
    let heard = if send {
        broadcast(sh, &signed).await
    } else {
        true
    };
    step(Step::Broadcast);
    let Some(outcome) = wait_outcome(sh, &signed, heard, signed_after(submitted)).await else {
        return;
    };
    if settle(sh, order, submitted, outcome).await && sh.alive() {
        step(Step::Fulfilled);
        deliver_recorded(sh, order, submitted, client).await;
    }
}

/// What bounds the search for a recorded transfer in its wallet's history: it was signed
/// after the wallet's last transaction then (when recorded) and before it was recorded. A
/// client's wallet signed it after the checkout was issued, which may be well before the
/// submission (the wallet broadcasts first).
pub(crate) fn signed_after(s: &PaymentSubmitted) -> SignedAfter {
    let since = s.checkout.as_ref().map_or(s.submitted_at, |c| c.issued_at);
    SignedAfter {
        lt: s.wallet_last_lt,
        unix: u64::try_from(since.timestamp()).ok(),
    }
}

pub(crate) fn rebuild_transfer(s: &PaymentSubmitted) -> Result<SignedTransfer, CoreError> {
    let hash = |h: &str| parse_hash(h).map_err(|e| CoreError::Internal(e.to_string()));
    let addr = |a: &str| address::parse_address(a).map_err(|e| CoreError::Internal(e.to_string()));
    Ok(SignedTransfer {
        wallet: addr(&s.wallet_address)?,
        seqno: s.seqno,
        valid_until: s.valid_until,
        boc: s.boc.clone(),
        message_hash: hash(&s.message_hash)?,
        normalized_hash: hash(&s.normalized_hash)?,
        body_hash: hash(&s.body_hash)?,
        messages: s
            .messages
            .iter()
            .map(|m| {
                Ok(ExpectedMessage {
                    destination: addr(&m.destination)?,
                    amount: m.amount_nanoton,
                    body_hash: hash(&m.body_hash)?,
                })
            })
            .collect::<Result<_, CoreError>>()?,
    })
}

/// Sends the signed message; says whether the network heard it (took it, or refused it).
/// Refused or not, the chain decides: a refused message can still become valid before it
/// expires (the wallet gets funded), so only its outcome ends the order.
async fn broadcast(sh: &Shared, signed: &SignedTransfer) -> bool {
    match sh.services.chain.send_transfer(signed).await {
        Ok(_) => true,
        Err(e @ (TonApiError::Rejected { .. } | TonApiError::BadRequest { .. })) => {
            tracing::info!(error = %e, "broadcast refused; waiting for the chain's verdict");
            true
        }
        Err(e) => {
            tracing::info!(error = %e, "broadcast not confirmed; waiting for the chain's verdict");
            false
        }
    }
}

/// Polls the chain until the transfer has an outcome. Never gives up while the service
/// runs: the money may be moving, so "unknown" is not an answer. Until the network has
/// heard the message, each round sends it again: otherwise an API outage during the
/// broadcast (or a restart's re-broadcast) would let a message it never received expire.
async fn wait_outcome(
    sh: &Shared,
    signed: &SignedTransfer,
    mut heard: bool,
    after: SignedAfter,
) -> Option<TransferOutcome> {
    let mut backoff = Duration::from_millis(200);
    loop {
        if !sh.alive() {
            return None;
        }
        if !heard {
            heard = broadcast(sh, signed).await;
        }
        match sh
            .services
            .chain
            .wait_for_transfer_signed_after(signed, sh.config.poll_interval, after)
            .await
        {
            Ok(outcome) => return Some(outcome),
            Err(e) => {
                tracing::warn!(error = %e, "TON API error while waiting for a transfer; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// Records the outcome: wallet account first (idempotent per order), then the order. A crash
/// between the two is finished by `reconcile`, which settles the wallet again (no-op) and
/// then the order. Returns whether the order is fulfilled.
async fn settle(
    sh: &Shared,
    order: &OrderCreated,
    submitted: &PaymentSubmitted,
    outcome: TransferOutcome,
) -> bool {
    let order_id = order.order_id;
    let request_id = submitted.request_id;
    let (tx, collection_sent) = match outcome {
        TransferOutcome::Confirmed(tx) => (tx, true),
        TransferOutcome::NotSent(tx) => {
            // Mode 3 skips a message it cannot pay for: the purchase may have gone out with
            // only the commission message skipped, and then Fragment was paid.
            let purchase = &submitted.messages[0];
            let paid = tx.out_msgs.iter().any(|m| {
                m.destination.as_ref().map(address::raw).as_deref()
                    == Some(purchase.destination.as_str())
                    && m.value == purchase.amount_nanoton
                    && m.body_hash.as_ref().map(|h| h.to_hex()).as_deref()
                        == Some(purchase.body_hash.as_str())
            });
            if !paid {
                fail(sh, order_id, request_id, "INSUFFICIENT_BALANCE",
                    "the wallet processed the message but could not send the payment (check its balance); no funds moved except network fees".into(), tx.total_fees).await;
                return false;
            }
            (tx, false)
        }
        TransferOutcome::Expired => {
            fail(
                sh,
                order_id,
                request_id,
                "SERVICE_UNAVAILABLE",
                "the network did not accept the payment before it expired; no funds moved".into(),
                Nanoton::ZERO,
            )
            .await;
            return false;
        }
        TransferOutcome::Superseded => {
            fail(sh, order_id, request_id, "VALIDATION_ERROR",
                "another transfer from this wallet used the same sequence number, so this payment was not made; no funds moved. Use the wallet for one payment at a time".into(), Nanoton::ZERO).await;
            return false;
        }
    };
    // A USDT payment moved money only if the wallet's USDT wallet passed the jettons on.
    if let Some(usdt) = &submitted.usdt {
        let Some(jetton_tx) = jetton_outcome(sh, &tx, usdt).await else {
            return false;
        };
        let refused =
            jetton_tx.aborted == Some(true) || jetton_tx.compute_exit_code.is_some_and(|c| c != 0);
        if refused {
            let exit = jetton_tx.compute_exit_code.unwrap_or(-1);
            let (code, why) = match exit {
                706 => ("INSUFFICIENT_JETTON_BALANCE", "its USDT balance was short"),
                709 => (
                    "INSUFFICIENT_BALANCE",
                    "the TON attached could not pay the transfer's gas",
                ),
                _ => (
                    "FRAGMENT_ERROR",
                    "it refused the transfer Fragment asked for",
                ),
            };
            let fees = tx
                .total_fees
                .checked_add(jetton_tx.total_fees)
                .unwrap_or(tx.total_fees);
            fail(sh, order_id, request_id, code,
                format!("the wallet's USDT wallet did not send the USDT (exit code {exit}: {why}); no USDT moved, and the TON for the gas came back less the network fees"),
                fees).await;
            return false;
        }
    }
    let meta = EventMetadata::correlated(request_id);
    let tx_hash = tx.hash.to_hex();
    let settlement = WalletCommand::SettlePurchase(PurchaseSettlement {
        order_id,
        commission_nanoton: order.commission_nanoton,
        collection_nanoton: submitted.collection_nanoton,
        collection_sent,
        tx_hash: tx_hash.clone(),
        now: Utc::now(),
    });
    let debt_after = match sh
        .registry
        .wallet(&submitted.wallet_address, settlement, meta)
        .await
    {
        Ok((state, _)) => state.debt_nanoton,
        Err(e) => {
            tracing::error!(%order_id, error = %e, "cannot account the payment; a restart will finish it");
            return false;
        }
    };
    let fulfil = OrderCommand::Fulfil(Box::new(events::OrderFulfilled {
        order_id,
        request_id,
        tx_hash,
        tx_lt: tx.lt,
        cost_nanoton: submitted.purchase_nanoton,
        commission_nanoton: order.commission_nanoton,
        collected_nanoton: if collection_sent {
            submitted.collection_nanoton
        } else {
            Nanoton::ZERO
        },
        debt_after_nanoton: debt_after,
        network_fee_nanoton: tx.total_fees,
        completed_at: Utc::now(),
        cost_usdt: submitted.usdt.as_ref().map(|u| u.amount),
    }));
    match sh.registry.order(order_id, fulfil, meta).await {
        Ok(_) => true,
        Err(e) => {
            tracing::error!(%order_id, error = %e, "cannot record the fulfilment; a restart will finish it");
            false
        }
    }
}

/// The USDT wallet's transaction for the message the wallet's transaction `tx` sent it:
/// polled until the chain has it (it follows the wallet's within a block or two). `None` when
/// the service stops meanwhile, or when `tx` sent nothing there (then nothing can be judged).
async fn jetton_outcome(
    sh: &Shared,
    tx: &crate::ton::client::ChainTransaction,
    usdt: &UsdtTransfer,
) -> Option<crate::ton::client::ChainTransaction> {
    let jetton_wallet = address::parse_address(&usdt.jetton_wallet).ok()?;
    let Some(sent) = tx
        .out_msgs
        .iter()
        .find(|m| m.destination.as_ref() == Some(&jetton_wallet))
    else {
        tracing::error!(tx = %tx.hash.to_hex(), "a USDT payment's transaction sent nothing to the USDT wallet");
        return None;
    };
    let mut backoff = Duration::from_millis(200);
    loop {
        if !sh.alive() {
            return None;
        }
        match sh.services.chain.transaction_by_message(&sent.hash).await {
            Ok(Some(jetton_tx)) => return Some(jetton_tx),
            Ok(None) => tokio::time::sleep(sh.config.poll_interval).await,
            Err(e) => {
                tracing::warn!(error = %e, "TON API error while following a USDT transfer; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// Ends a payment that moved no funds but, perhaps, the network fees of a message the
/// wallet processed without sending what it was signed to (`network_fee`).
async fn fail(
    sh: &Shared,
    order_id: Uuid,
    request_id: Uuid,
    code: &str,
    message: String,
    network_fee: Nanoton,
) {
    let command = OrderCommand::Fail {
        request_id,
        error_code: code.to_string(),
        error: message,
        funds_moved: false,
        network_fee_nanoton: network_fee,
        now: Utc::now(),
    };
    if let Err(e) = sh
        .registry
        .order(order_id, command, EventMetadata::correlated(request_id))
        .await
    {
        tracing::error!(%order_id, error = %e, "cannot record a failed payment");
    }
}
