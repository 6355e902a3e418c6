//! Events of an order's stream, `order-<uuid>`, in the order they usually happen.
//!
//! Money is integer nanoton (`*_nanoton`, JSON integers); rates are decimal strings. Every
//! event repeats `order_id` so that a projection or an auditor reading the log needs nothing
//! but the event itself.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::money::{JettonAmount, Nanoton};

/// What is bought.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Product {
    Stars { amount: u32 },
    Premium { months: u8 },
}

impl Product {
    pub fn kind(&self) -> &'static str {
        match self {
            Product::Stars { .. } => "stars",
            Product::Premium { .. } => "premium",
        }
    }
}

/// Whose Fragment session buys: the client's own (KYC, no commission) or the operator's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderMode {
    Kyc,
    NoKyc,
}

impl OrderMode {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderMode::Kyc => "kyc",
            OrderMode::NoKyc => "no_kyc",
        }
    }
}

/// What an order is paid in (the original SDK's `payment_method`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentMethod {
    #[default]
    Ton,
    /// USDT on TON: a jetton transfer to Fragment.
    UsdtTon,
}

impl PaymentMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentMethod::Ton => "ton",
            PaymentMethod::UsdtTon => "usdt_ton",
        }
    }
}

/// An order was accepted at the price Fragment quoted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCreated {
    pub order_id: Uuid,
    pub product: Product,
    /// Without `@`.
    pub username: String,
    pub mode: OrderMode,
    /// HMAC of the client's cookie set (KYC only): lets a later payment check that it comes
    /// with the same Fragment account without the log ever holding a cookie.
    pub cookie_fingerprint: Option<String>,
    /// Fragment's price when the order was created.
    pub price_nanoton: Nanoton,
    pub commission_rate: Decimal,
    /// `price × rate`, rounded half away from zero to the nanoton.
    pub commission_nanoton: Nanoton,
    pub total_nanoton: Nanoton,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// What it is paid in (v3; earlier orders: TON).
    pub payment_method: PaymentMethod,
    /// A USDT order's price: Fragment's TON price at its USD rate then, rounded up to the
    /// unit; Fragment's USDT invoice may not ask for more (v3). The commission stays in TON,
    /// on `price_nanoton`: a wallet's debt is in one currency.
    pub price_usdt: Option<JettonAmount>,
}

/// A client asked to pay the order from a wallet whose balance and debt passed the checks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPaid {
    pub order_id: Uuid,
    pub request_id: Uuid,
    /// Raw form `0:<hex>`: the wallet's identity.
    pub wallet_address: String,
    /// The form shown to clients (non-bounceable, as wallets display it).
    pub wallet_friendly: String,
    pub wallet_version: String,
    pub account_index: Option<u32>,
    /// Balance and debt seen by the checks.
    pub balance_nanoton: Nanoton,
    pub debt_nanoton: Nanoton,
    pub paid_at: DateTime<Utc>,
}

/// The payment request joined the processing queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderQueued {
    pub order_id: Uuid,
    pub request_id: Uuid,
    pub queued_at: DateTime<Utc>,
    /// After this the request times out (QUEUE_TIMEOUT) if it has not started.
    pub queue_deadline: DateTime<Utc>,
}

/// The dispatcher gave the request its wallet and its Fragment session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderProcessingStarted {
    pub order_id: Uuid,
    pub request_id: Uuid,
    /// Which Fragment session buys: `owner:<n>` or `client`.
    pub session: String,
    pub started_at: DateTime<Utc>,
}

/// One message inside the signed wallet transfer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmittedMessage {
    /// Raw form.
    pub destination: String,
    pub amount_nanoton: Nanoton,
    pub body_hash: String,
    /// `purchase` (to Fragment) or `commission` (to the operator's fee address).
    pub purpose: String,
}

/// A wallet message was signed and is about to be broadcast. Written **before** the
/// broadcast: after a crash, this is what lets the order be finished by looking the message
/// up on chain instead of ever signing again. The BOC is the signed message itself, public
/// once broadcast and useless for anything but this one seqno; it lets a restart re-send the
/// identical message when the first broadcast may never have left.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentSubmitted {
    pub order_id: Uuid,
    pub request_id: Uuid,
    pub wallet_address: String,
    pub wallet_version: String,
    pub seqno: u32,
    /// Unix time after which the wallet contract refuses the message.
    pub valid_until: u32,
    pub message_hash: String,
    pub normalized_hash: String,
    pub body_hash: String,
    pub boc: String,
    pub messages: Vec<SubmittedMessage>,
    /// Fragment's request id for the invoice being paid.
    pub fragment_request_id: String,
    pub purchase_nanoton: Nanoton,
    /// Commission debt collected by this transfer (0 when none is due).
    pub collection_nanoton: Nanoton,
    pub submitted_at: DateTime<Utc>,
    /// Logical time of the wallet's last transaction when the message was signed: the
    /// transaction that applies it comes later, which bounds the search for it (v2).
    pub wallet_last_lt: Option<u64>,
    /// What Fragment's confirmation step needs after a restart, when the purchase flow is
    /// gone: the paying wallet's public key (for the TON Connect account), Fragment's
    /// confirm method and parameters, and which Fragment session bought (v2; `None` in
    /// events recorded before).
    /// Boxed: most events are far smaller, and the event enum is as large as its largest.
    pub confirmation: Option<Box<DeliveryConfirmation>>,
    /// Set when the client's own wallet signed the message (a checkout), `None` when the
    /// gateway signed it with the client's seed (v3; earlier events: `None`).
    pub checkout: Option<CheckoutSubmission>,
    /// A USDT payment: the first message goes to the wallet's USDT jetton wallet, which is to
    /// send this many units to Fragment (v4; earlier events: `None`, a TON payment).
    pub usdt: Option<UsdtTransfer>,
}

/// The jetton side of a USDT payment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsdtTransfer {
    /// The paying wallet's USDT jetton wallet, raw form.
    pub jetton_wallet: String,
    /// Fragment's invoice, in USDT units.
    pub amount: JettonAmount,
}

/// How to confirm a paid purchase with Fragment and poll its delivery, without the flow that
/// bought it. Holds no secret: the session is named by a keyed digest, never by a cookie.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryConfirmation {
    /// Hex ed25519 public key of the paying wallet (public: it is in the wallet's state on
    /// chain).
    pub wallet_public_key: String,
    pub confirm_method: String,
    pub confirm_params: serde_json::Map<String, serde_json::Value>,
    /// `owner` (the operator's pool) or `client` (the client's own cookies).
    pub session_role: String,
    /// The session's identity (a keyed digest of its `stel_ssid`).
    pub session_id: String,
    /// The paying wallet's id, when it is not its version's standard one on the network
    /// (v3 of PaymentSubmitted; earlier events: `None`, the standard id).
    pub wallet_id: Option<i32>,
}

/// The transfer is on chain: Fragment was paid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderFulfilled {
    pub order_id: Uuid,
    pub request_id: Uuid,
    pub tx_hash: String,
    pub tx_lt: u64,
    /// Paid to Fragment.
    pub cost_nanoton: Nanoton,
    pub commission_nanoton: Nanoton,
    pub collected_nanoton: Nanoton,
    /// The wallet's commission debt once this order was accounted.
    pub debt_after_nanoton: Nanoton,
    /// Network fees the wallet paid for the transaction.
    pub network_fee_nanoton: Nanoton,
    pub completed_at: DateTime<Utc>,
    /// Paid to Fragment in USDT, for a USDT order (v2; earlier events: `None`).
    pub cost_usdt: Option<JettonAmount>,
}

/// Fragment confirmed the delivery to the recipient.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderDeliveryConfirmed {
    pub order_id: Uuid,
    pub request_id: Uuid,
    pub confirmed_at: DateTime<Utc>,
}

/// The money moved but Fragment did not confirm the delivery in time: a case for the
/// operator to follow up (the admin API lists these). The order stays successful.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderDeliveryUnconfirmed {
    pub order_id: Uuid,
    pub request_id: Uuid,
    pub reason: String,
    pub at: DateTime<Utc>,
}

/// The payment failed. `funds_moved` is false for every failure before a transfer reached
/// the chain, and for transfers the chain refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderFailed {
    pub order_id: Uuid,
    pub request_id: Uuid,
    /// An API.md error code.
    pub error_code: String,
    pub error: String,
    pub funds_moved: bool,
    /// What the wallet paid in network fees for a message it processed without sending
    /// the payment (the chain charges for that too); zero otherwise (v2; v1 events: zero,
    /// as the only failures then recorded with fees were also recorded without them).
    pub network_fee_nanoton: Nanoton,
    pub failed_at: DateTime<Utc>,
}

/// The request waited in the queue past its deadline; no funds moved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderTimedOut {
    pub order_id: Uuid,
    pub request_id: Uuid,
    pub waited_seconds: u64,
    pub timed_out_at: DateTime<Utc>,
}

/// A payment attempt ended before anything was signed (the service restarted and the seed,
/// held only in memory, is gone): the request failed, and the order is `created` again and
/// may be paid until it expires.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPaymentAbandoned {
    pub order_id: Uuid,
    pub request_id: Uuid,
    pub error_code: String,
    pub error: String,
    pub abandoned_at: DateTime<Utc>,
}

/// Nobody paid the order before it expired.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderExpired {
    pub order_id: Uuid,
    pub expired_at: DateTime<Utc>,
}

/// The client asked for webhooks about the order at this URL (checked when it was given:
/// http or https, and not a private address unless the operator allows them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderWebhookSet {
    pub order_id: Uuid,
    pub url: String,
}

/// The client cancelled the order before paying it: it can no longer be paid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCancelled {
    pub order_id: Uuid,
    pub cancelled_at: DateTime<Utc>,
}

/// One message of a checkout's transaction, as the client's wallet is asked to send it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckoutMessage {
    /// The address as given to the wallet (its form sets the bounce flag).
    pub address: String,
    /// Raw form, to compare with what the wallet signed.
    pub destination: String,
    pub amount_nanoton: Nanoton,
    /// Standard base64 BOC of the message body, exactly as the wallet must send it.
    pub payload: String,
    pub body_hash: String,
    /// `purchase` (to Fragment) or `commission` (to the operator's fee address).
    pub purpose: String,
}

/// A TON Connect transaction paying the order was issued for the client's own wallet to sign
/// (a checkout): the gateway never sees a key. The order is paid when the signed message
/// comes back and passes the checks against this record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckoutIssued {
    pub order_id: Uuid,
    /// Raw form.
    pub wallet_address: String,
    pub wallet_friendly: String,
    pub wallet_version: String,
    /// Hex ed25519 public key the signature must verify with (public: it is in the
    /// wallet's state on chain, or in the StateInit the wallet gave).
    pub wallet_public_key: String,
    pub wallet_id: i32,
    /// The message must expire no later than this (unix seconds).
    pub valid_until: u32,
    pub messages: Vec<CheckoutMessage>,
    /// Fragment's request id for the invoice being paid.
    pub fragment_request_id: String,
    pub purchase_nanoton: Nanoton,
    /// Commission debt collected by the second message (0 when none is due).
    pub collection_nanoton: Nanoton,
    /// The wallet's last transaction when the checkout was issued: the message, signed
    /// later, lands after it.
    pub wallet_last_lt: Option<u64>,
    /// How to confirm the purchase with Fragment once paid (`wallet_public_key` in it is the
    /// same key).
    pub confirmation: DeliveryConfirmation,
    pub issued_at: DateTime<Utc>,
}

/// What a submission of a checkout adds to its `PaymentSubmitted`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckoutSubmission {
    /// When the checkout was issued: the client's wallet signed the message after it, so its
    /// transaction is searched for back to then (the submission may come well after the
    /// wallet broadcast it).
    pub issued_at: DateTime<Utc>,
    /// The client said it broadcast the message itself: the gateway only follows it.
    pub broadcast_by_client: bool,
}
