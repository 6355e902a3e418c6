//! Checkouts on the core: issuing a TON Connect transaction for the client's own wallet
//! (`Core::create_checkout`) and taking the signed message back (`Core::submit_checkout`).
//! The gateway never holds a key for these: it checks the message (`crate::checkout::verify`),
//! asks the chain whether its seqno can still apply, records it, and from there it is a
//! recorded payment like any other (followed to its outcome, reconciled after a restart,
//! never signed by us).

use std::sync::Arc;

use base64::Engine;
use chrono::Utc;
use events::{
    CheckoutIssued, CheckoutMessage, CheckoutSubmission, DeliveryConfirmation, EventMetadata,
    OrderMode, PaymentSubmitted, Product, SubmittedMessage,
};
use projections::OrderView;
use uuid::Uuid;

use super::dispatcher::{self, Payment};
use super::payment::{rebuild_transfer, signed_after};
use super::{scheduler, Core, CoreError, PayReceipt};
use crate::checkout::{self, TonConnectRequest, WalletHint};
use crate::domain::order::{Payer, WalletFunds};
use crate::domain::policy::commission_for;
use crate::domain::{DomainError, OrderCommand, OrderStatus, Username};
use crate::fragment::{FragmentCookies, FragmentError, LinkExpectations, Purchase, SessionRole};
use crate::ton::encoding::decode_base64;
use crate::ton::{address, MessageBody, Nanoton, OutgoingMessage, TonAddress};

/// Seconds a client needs at least to sign and send a checkout: a link Fragment gives with
/// less left is refused before anything is issued.
const MIN_SIGNING_WINDOW: u32 = 30;

/// A checkout's message expires at least this long (seconds) before its order: the chain's
/// clock may trail ours.
const EXPIRY_MARGIN: i64 = crate::domain::order::CHECKOUT_CLOCK_MARGIN;

/// What a client asks a checkout for.
pub struct CheckoutRequest {
    pub product: Product,
    pub username: Username,
    /// The paying wallet, as TON Connect's `account.address` gives it.
    pub wallet: TonAddress,
    pub hint: WalletHint,
    /// The client's own Fragment session (KYC mode): its wallet must be connected on
    /// fragment.com already (the gateway has no key to connect it with).
    pub cookies: Option<FragmentCookies>,
    pub webhook_url: Option<String>,
}

/// An issued checkout: its order and the transaction to sign.
#[derive(Clone, Debug)]
pub struct IssuedCheckout {
    pub order: Arc<OrderView>,
    pub issued: CheckoutIssued,
    pub transaction: TonConnectRequest,
}

impl Core {
    fn network(&self) -> crate::ton::Network {
        self.sh.services.fragment.config().network
    }

    /// Issues a checkout: a new order at the amount Fragment invoices, and the TON Connect
    /// transaction that pays it (the invoice, plus the commission debt due as a second
    /// message) for the client's wallet to sign. Under an idempotency key's reserved id
    /// (`reserved`), a checkout issued by an earlier run is returned as it is.
    pub async fn create_checkout(
        &self,
        reserved: Option<Uuid>,
        request: CheckoutRequest,
    ) -> Result<IssuedCheckout, CoreError> {
        let order_id = match reserved {
            Some(id) => {
                if let Ok(existing) = self.checkout(id).await {
                    return Ok(existing);
                }
                id
            }
            None => Uuid::now_v7(),
        };
        let network = self.network();
        let on_chain = self.public_chain.account_state(&request.wallet).await?;
        let wallet = checkout::resolve_wallet(
            &request.wallet,
            network,
            &request.hint,
            on_chain.code.as_ref().zip(on_chain.data.as_ref()),
        )
        .map_err(CoreError::InvalidWallet)?;
        let purchase = Purchase::from_order(request.product)
            .map_err(|e| CoreError::Internal(e.to_string()))?;
        let (mode, fingerprint) = match &request.cookies {
            Some(c) => (OrderMode::Kyc, Some(self.fingerprint(c))),
            None => (OrderMode::NoKyc, None),
        };
        let session_role = if request.cookies.is_some() {
            SessionRole::Client
        } else {
            SessionRole::Owner
        };

        // Fragment's invoice and payment link, in one turn on the session.
        let (invoice, link, session_id) = {
            let mut flow = match request.cookies {
                Some(c) => self.client_flow(c).await?,
                None => self.owner_flow().await?,
            };
            let recipient = flow.search_recipient(&request.username, purchase).await?;
            let invoice = flow.init_purchase(&recipient, purchase).await?;
            let link = flow.payment_link(&invoice, &wallet, false).await?;
            (invoice, link, flow.session_id())
        };
        let now = Utc::now();
        let unix_now = now.timestamp() as u32;
        let checked = link
            .check(&LinkExpectations {
                req_id: &invoice.req_id,
                purchase,
                recipient: request.username.as_str(),
                invoice_amount: invoice.amount,
                max_amount: invoice.amount,
                fragment_addresses: self.sh.services.fragment.payment_addresses(),
                payer: wallet.address(),
                now: unix_now,
                min_validity: MIN_SIGNING_WINDOW,
            })
            .map_err(|e| {
                CoreError::Fragment(FragmentError::BadResponse(format!(
                    "Fragment's payment request failed our checks ({e}); nothing was issued"
                )))
            })?;

        // The one balance rule, at the invoiced amount.
        let policy = &self.sh.config.policy;
        let commission = commission_for(invoice.amount, policy.rate(mode))
            .ok_or(DomainError::Misconfigured("commission rate"))?;
        // The account as read to tell the wallet (a moment ago): one read for both.
        let state = crate::ton::client::wallet_state_of(&on_chain, &wallet)?;
        let raw = wallet.raw_address();
        let debt = self.sh.registry.wallet_state(&raw).await?.debt_nanoton;
        if debt > policy.debt_limit_nanoton {
            return Err(DomainError::DebtLimitExceeded {
                debt_nanoton: debt,
                limit_nanoton: policy.debt_limit_nanoton,
            }
            .into());
        }
        let needs = policy.payment_needs(invoice.amount, commission, debt)?;
        if state.balance < needs.total {
            return Err(DomainError::InsufficientBalance {
                balance_nanoton: state.balance,
                needed_nanoton: needs.total,
            }
            .into());
        }
        let mut messages = vec![checkout_message(&checked.message, "purchase", network)?];
        let collection = match &self.sh.services.fee_address {
            Some(fee) if !needs.collection.is_zero() => {
                let comment =
                    MessageBody::comment(format!("fragment-gateway commission, order {order_id}"));
                let fee = OutgoingMessage::to(fee.clone(), needs.collection, comment);
                messages.push(checkout_message(&fee, "commission", network)?);
                needs.collection
            }
            _ => Nanoton::ZERO,
        };

        let create = OrderCommand::Create {
            order_id,
            product: request.product,
            username: request.username.as_str().to_string(),
            mode,
            cookie_fingerprint: fingerprint,
            price_nanoton: invoice.amount,
            payment_method: events::PaymentMethod::Ton,
            price_usdt: None,
            webhook_url: request.webhook_url,
            now,
        };
        let meta = EventMetadata::correlated(order_id);
        let created = match self.sh.registry.order(order_id, create, meta).await {
            // Another run under the same id made it: its checkout if it issued one, else
            // this run issues it on that order, at the same price (an earlier run that died
            // between the two appends).
            Err(CoreError::Domain(DomainError::OrderExists(_))) => {
                let state = self.sh.registry.order_state(order_id).await?;
                if state.checkout.is_some() {
                    return self.checkout(order_id).await;
                }
                match state.created {
                    Some(c) if c.price_nanoton == invoice.amount => Some(c),
                    _ => {
                        return Err(CoreError::Unavailable(
                            "an earlier attempt under this key left an order at another price; retry under a new key".into(),
                        ))
                    }
                }
            }
            other => other?.0.created,
        }
        .ok_or_else(|| CoreError::Internal("order not created".into()))?;
        // Dead before its order can expire: an order expired while its message could still
        // be sent would leave a payment nobody follows.
        let expiry_bound = (created.expires_at.timestamp() - EXPIRY_MARGIN).max(0) as u32;
        let valid_until = checked
            .sign_until(unix_now, self.sh.config.checkout_ttl_secs)
            .min(expiry_bound);
        // (The configured time is checked at start, and Fragment's link by its check.)
        if expiry_bound < unix_now.saturating_add(MIN_SIGNING_WINDOW) {
            return Err(CoreError::Internal(
                "orders.expiry_seconds leaves a checkout no time to be signed".into(),
            ));
        }
        let issued = CheckoutIssued {
            order_id,
            wallet_address: raw,
            wallet_friendly: wallet.friendly_address(false),
            wallet_version: wallet.version().as_str().to_string(),
            wallet_public_key: wallet.public_key().to_hex(),
            wallet_id: wallet.wallet_id(),
            valid_until,
            messages,
            fragment_request_id: invoice.req_id.clone(),
            purchase_nanoton: invoice.amount,
            collection_nanoton: collection,
            wallet_last_lt: state.last_lt,
            confirmation: DeliveryConfirmation {
                wallet_public_key: wallet.public_key().to_hex(),
                confirm_method: link.confirm_method.clone(),
                confirm_params: link.confirm_params.clone(),
                session_role: match session_role {
                    SessionRole::Owner => "owner",
                    SessionRole::Client => "client",
                }
                .into(),
                session_id: session_id.to_hex(),
                wallet_id: Some(wallet.wallet_id()),
            },
            issued_at: now,
        };
        let issue = OrderCommand::IssueCheckout(Box::new(issued));
        let (_, position) = self.sh.registry.order(order_id, issue, meta).await?;
        self.scheduler.do_send(scheduler::Track {
            order_id,
            expires_at: created.expires_at,
        });
        self.sh.runner.wait_for(position.unwrap_or(0)).await;
        self.checkout(order_id).await
    }

    /// A checkout as issued, with its order as the read models have it.
    pub async fn checkout(&self, order_id: Uuid) -> Result<IssuedCheckout, CoreError> {
        let state = self.sh.registry.order_state(order_id).await?;
        let Some(issued) = state.checkout else {
            return Err(if state.created.is_none() {
                DomainError::OrderNotFound.into()
            } else {
                DomainError::NoCheckout.into()
            });
        };
        let head = self.sh.store.head().await?;
        self.sh.runner.wait_for(head).await;
        let order = self.order(order_id).await?;
        let transaction = checkout::request(&issued, self.network());
        Ok(IssuedCheckout {
            order,
            issued,
            transaction,
        })
    }

    /// Takes a checkout's signed external message (`boc`, as TON Connect returns it), checks
    /// it against what was issued and against the wallet's seqno on chain, records it as the
    /// order's payment and follows it to its outcome: broadcast by the gateway, unless the
    /// client says it broadcast it itself (`broadcast_by_client`). A KYC checkout's
    /// `cookies` (the same Fragment session) let the delivery be confirmed.
    pub async fn submit_checkout(
        &self,
        order_id: Uuid,
        boc: &str,
        broadcast_by_client: bool,
        cookies: Option<FragmentCookies>,
    ) -> Result<PayReceipt, CoreError> {
        let state = self.sh.registry.order_state(order_id).await?;
        let (Some(order), Some(issued)) = (state.created.clone(), state.checkout.clone()) else {
            return Err(if state.created.is_none() {
                DomainError::OrderNotFound.into()
            } else {
                DomainError::NoCheckout.into()
            });
        };
        let wallet =
            checkout::issued_wallet(&issued, self.network()).map_err(CoreError::Internal)?;
        let verified = checkout::verify(&issued, &wallet, boc)
            .map_err(|e| CoreError::CheckoutRejected(e.to_string()))?;
        let normalized = verified.external.hash_norm.to_hex();
        // The same message again: the payment already made.
        if let Some(request) = state.request.as_ref() {
            if let Some(s) = request.submitted.as_ref() {
                if s.normalized_hash == normalized {
                    return self.receipt(request.request_id, false).await;
                }
                return Err(DomainError::CheckoutSubmittedOtherwise.into());
            }
        }
        match state.status {
            Some(OrderStatus::Created) => {}
            Some(OrderStatus::Expired) => return Err(DomainError::OrderExpired.into()),
            Some(status) => {
                return Err(DomainError::WrongStatus {
                    action: "paid",
                    status,
                }
                .into())
            }
            None => return Err(DomainError::OrderNotFound.into()),
        }

        let request_id = Uuid::now_v7();
        let now = Utc::now();
        let raw = wallet.raw_address();
        let boc = base64::engine::general_purpose::STANDARD.encode(
            decode_base64(boc.trim())
                .ok_or_else(|| CoreError::Internal("a verified BOC is base64".into()))?,
        );
        let submitted = PaymentSubmitted {
            order_id,
            request_id,
            wallet_address: raw.clone(),
            wallet_version: issued.wallet_version.clone(),
            seqno: verified.request.seqno,
            valid_until: verified.request.valid_until,
            message_hash: verified.external.hash.to_hex(),
            normalized_hash: normalized,
            body_hash: verified.external.body.as_ref().cell_hash().to_hex(),
            boc,
            messages: issued
                .messages
                .iter()
                .map(|m| SubmittedMessage {
                    destination: m.destination.clone(),
                    amount_nanoton: m.amount_nanoton,
                    body_hash: m.body_hash.clone(),
                    purpose: m.purpose.clone(),
                })
                .collect(),
            fragment_request_id: issued.fragment_request_id.clone(),
            purchase_nanoton: issued.purchase_nanoton,
            collection_nanoton: issued.collection_nanoton,
            submitted_at: now,
            wallet_last_lt: issued.wallet_last_lt,
            confirmation: Some(Box::new(issued.confirmation.clone())),
            checkout: Some(CheckoutSubmission {
                issued_at: issued.issued_at,
                broadcast_by_client,
            }),
            usdt: None,
        };

        // Can the seqno still apply? The chain says: a message whose seqno the wallet has
        // passed, or whose time is up on chain, is paid only if the chain applied it.
        let chain = &self.sh.services.chain;
        let account = chain.account_state(wallet.address()).await?;
        let (deployed, seqno) = match account.wallet() {
            Ok(Some((_, seqno))) => (true, seqno),
            Ok(None) => (false, 0),
            Err(why) => {
                return Err(CoreError::CheckoutRejected(format!(
                    "the wallet on chain cannot pay: {why}"
                )))
            }
        };
        let signed = verified.request.seqno;
        let applies_later =
            signed == seqno && account.sync_utime < u64::from(verified.request.valid_until);
        let mut broadcast = !broadcast_by_client;
        if signed > seqno {
            return Err(CoreError::CheckoutRejected(format!(
                "seqno: the message has seqno {signed}, but the wallet's next is {seqno}; sign the checkout again"
            )));
        }
        if !applies_later {
            let transfer = rebuild_transfer(&submitted)?;
            match chain.find_transfer(&transfer, signed_after(&submitted)).await? {
                // On chain already (the wallet broadcast it): follow it, nothing to send.
                Some(_) => broadcast = false,
                None if signed < seqno => {
                    return Err(CoreError::CheckoutRejected(format!(
                        "seqno used: the wallet's seqno is {seqno} now, so this message (seqno {signed}) can never apply and no funds moved with it; sign the checkout again while it is valid"
                    )))
                }
                None => {
                    return Err(CoreError::CheckoutExpired(format!(
                        "the checkout's message expired at {} and the wallet did not apply it, so no funds moved; create a new checkout",
                        submitted.valid_until
                    )))
                }
            }
        } else if !deployed && verified.external.state_init.is_none() {
            return Err(CoreError::CheckoutRejected(
                "the wallet is not deployed yet, so the message must carry its StateInit (wallets add it to their first transfer)".into(),
            ));
        }

        let funds = WalletFunds {
            balance_nanoton: account.balance,
            debt_nanoton: self.sh.registry.wallet_state(&raw).await?.debt_nanoton,
            usdt: None,
        };
        let command = OrderCommand::SubmitCheckout {
            request_id,
            payer: Payer {
                wallet_address: raw,
                wallet_friendly: wallet.friendly_address(false),
                wallet_version: issued.wallet_version.clone(),
                account_index: None,
            },
            funds,
            submitted: Box::new(submitted),
            has_cookies: cookies.is_some(),
            now,
        };
        let client_session = match order.mode {
            OrderMode::Kyc => {
                cookies.map(|c| self.sh.services.fragment.session(c, SessionRole::Client))
            }
            OrderMode::NoKyc => None,
        };
        // Recorded and queued in one step of the dispatcher's, like a seed payment: a client
        // that hangs up now cannot leave a recorded message that nobody follows.
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.dispatcher.do_send(dispatcher::Enqueue {
            order,
            request_id,
            command,
            payment: Payment::Signed {
                broadcast,
                client_session,
            },
            reply,
        });
        let (state, position) = answer
            .await
            .map_err(|_| CoreError::Unavailable("the queue stopped".into()))??;
        let request = state
            .request
            .ok_or_else(|| CoreError::Internal("submitted checkout without request".into()))?;
        if let Some(p) = position {
            self.sh.runner.wait_for(p).await;
        }
        self.receipt(request.request_id, position.is_some()).await
    }
}

/// The issued form of one message.
fn checkout_message(
    m: &OutgoingMessage,
    purpose: &str,
    network: crate::ton::Network,
) -> Result<CheckoutMessage, CoreError> {
    let body = m
        .body
        .to_cell()
        .map_err(|e| CoreError::Internal(e.to_string()))?;
    let payload =
        crate::ton::boc::to_base64(&body).map_err(|e| CoreError::Internal(e.to_string()))?;
    Ok(CheckoutMessage {
        address: address::friendly(&m.destination, m.bounce, network.is_testnet()),
        destination: address::raw(&m.destination),
        amount_nanoton: m.amount,
        payload,
        body_hash: body.as_ref().cell_hash().to_hex(),
        purpose: purpose.to_string(),
    })
}
