//! Order and wallet decision logic, and the validated values it works with. Everything here
//! is pure: `decide(&state, command) -> events | DomainError` holds the business rules,
//! `evolve` folds events without judging them. No I/O, no actors, no clock (the time is part
//! of each command).

pub mod order;
pub mod policy;
pub mod values;
pub mod wallet;

pub use order::{OrderCommand, OrderState, OrderStatus};
pub use policy::Policy;
pub use values::{PremiumMonths, StarsAmount, Username, ValueError};
pub use wallet::{WalletCommand, WalletState};

use uuid::Uuid;

use events::Nanoton;

/// Why a command was refused. `api_code` maps each to API.md's codes; the messages tell the
/// client what to do.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("order not found")]
    OrderNotFound,
    #[error("order {0} already exists")]
    OrderExists(Uuid),
    #[error("the order has expired; create a new order")]
    OrderExpired,
    #[error("the order is {}; it cannot be {action}", status.as_str())]
    WrongStatus {
        action: &'static str,
        status: OrderStatus,
    },
    #[error("the order is {}: only an order that is not paid yet (status created) can be cancelled", status.as_str())]
    NotCancellable { status: OrderStatus },
    #[error("the order is already {} with a payment from another wallet", status.as_str())]
    PaidByAnotherWallet { status: OrderStatus },
    #[error("this order was created with fragment_cookies (KYC mode); send the same account's fragment_cookies with the payment")]
    KycCookiesRequired,
    #[error("the wallet's unpaid commission ({} TON) is over the limit of {} TON; settle it before paying new orders",
        debt_nanoton.to_ton_string(), limit_nanoton.to_ton_string())]
    DebtLimitExceeded {
        debt_nanoton: Nanoton,
        limit_nanoton: Nanoton,
    },
    #[error("the wallet holds {} TON; this payment needs {} TON (price, commission due and network fees)",
        balance_nanoton.to_ton_string(), needed_nanoton.to_ton_string())]
    InsufficientBalance {
        balance_nanoton: Nanoton,
        needed_nanoton: Nanoton,
    },
    #[error("no checkout was issued for this order; create one with POST /api/v1/checkouts")]
    NoCheckout,
    #[error("a checkout was already issued for this order")]
    CheckoutExists,
    #[error("this checkout was already submitted with another signed message; a checkout is paid by one message only")]
    CheckoutSubmittedOtherwise,
    #[error("the order's checkout can still be signed and sent until {valid_until} (unix time): it cannot be cancelled before then")]
    CheckoutOutstanding { valid_until: u32 },
    #[error("the wallet holds {} USDT; this order costs {} USDT", balance.to_decimal_string(6), needed.to_decimal_string(6))]
    InsufficientJettonBalance {
        balance: events::JettonAmount,
        needed: events::JettonAmount,
    },
    #[error("payment request {0} not found")]
    UnknownRequest(Uuid),
    #[error("a different wallet message was already signed for this request")]
    AlreadySubmitted,
    #[error("no wallet message was signed for this request")]
    NotSubmitted,
    #[error("not due yet")]
    TooEarly,
    #[error(
        "a settlement of {} TON does not fit the debt of {} TON",
        amount_nanoton.to_ton_string(), debt_nanoton.to_ton_string()
    )]
    SettlementExceedsDebt {
        amount_nanoton: Nanoton,
        debt_nanoton: Nanoton,
    },
    #[error(
        "the reference {reference:?} already recorded a settlement of {} TON; a new settlement needs its own reference",
        recorded_nanoton.to_ton_string()
    )]
    SettlementReferenceReused {
        reference: String,
        recorded_nanoton: Nanoton,
    },
    #[error("invalid configuration: {0}")]
    Misconfigured(&'static str),
    /// An amount of money that does not fit: only an absurd configuration or a corrupted
    /// log can get here, so it is an internal error, never a wrapped number.
    #[error("the {0} amount does not fit in nanoton")]
    AmountOverflow(&'static str),
}

impl DomainError {
    /// The API.md error code a client sees.
    pub fn api_code(&self) -> &'static str {
        match self {
            DomainError::OrderNotFound => "ORDER_NOT_FOUND",
            DomainError::OrderExpired => "ORDER_EXPIRED",
            DomainError::DebtLimitExceeded { .. } => "DEBT_LIMIT_EXCEEDED",
            DomainError::InsufficientBalance { .. } => "INSUFFICIENT_BALANCE",
            DomainError::InsufficientJettonBalance { .. } => "INSUFFICIENT_JETTON_BALANCE",
            DomainError::UnknownRequest(_) => "REQUEST_NOT_FOUND",
            DomainError::NotCancellable { .. } | DomainError::CheckoutOutstanding { .. } => {
                "ORDER_NOT_CANCELLABLE"
            }
            DomainError::NoCheckout => "ORDER_NOT_FOUND",
            DomainError::CheckoutSubmittedOtherwise => "CHECKOUT_REJECTED",
            DomainError::WrongStatus { .. }
            | DomainError::PaidByAnotherWallet { .. }
            | DomainError::KycCookiesRequired
            | DomainError::SettlementExceedsDebt { .. }
            | DomainError::SettlementReferenceReused { .. } => "VALIDATION_ERROR",
            DomainError::OrderExists(_)
            | DomainError::CheckoutExists
            | DomainError::AlreadySubmitted
            | DomainError::NotSubmitted
            | DomainError::TooEarly
            | DomainError::Misconfigured(_)
            | DomainError::AmountOverflow(_) => "INTERNAL_ERROR",
        }
    }

    /// The HTTP status that goes with `api_code` (API.md's table).
    pub fn http_status(&self) -> u16 {
        match self {
            DomainError::OrderNotFound
            | DomainError::UnknownRequest(_)
            | DomainError::NoCheckout => 404,
            DomainError::OrderExists(_)
            | DomainError::CheckoutExists
            | DomainError::AlreadySubmitted
            | DomainError::NotSubmitted
            | DomainError::TooEarly
            | DomainError::Misconfigured(_)
            | DomainError::AmountOverflow(_) => 500,
            DomainError::OrderExpired
            | DomainError::NotCancellable { .. }
            | DomainError::CheckoutOutstanding { .. }
            | DomainError::CheckoutSubmittedOtherwise
            | DomainError::WrongStatus { .. }
            | DomainError::PaidByAnotherWallet { .. }
            | DomainError::KycCookiesRequired
            | DomainError::DebtLimitExceeded { .. }
            | DomainError::InsufficientBalance { .. }
            | DomainError::InsufficientJettonBalance { .. }
            | DomainError::SettlementExceedsDebt { .. }
            | DomainError::SettlementReferenceReused { .. } => 400,
        }
    }
}
