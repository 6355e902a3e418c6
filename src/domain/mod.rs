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

use crate::ton::amount::Nanoton;

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
    #[error("the order is already {} with a payment from another wallet", status.as_str())]
    PaidByAnotherWallet { status: OrderStatus },
    #[error("this order was created with fragment_cookies (KYC mode); send the same account's fragment_cookies with the payment")]
    KycCookiesRequired,
    #[error("the wallet's unpaid commission ({} TON) is over the limit of {} TON; settle it before paying new orders",
        Nanoton::new(*debt_nanoton).to_ton_string(), Nanoton::new(*limit_nanoton).to_ton_string())]
    DebtLimitExceeded {
        debt_nanoton: u64,
        limit_nanoton: u64,
    },
    #[error("the wallet holds {} TON; this payment needs {} TON (price, commission due and network fees)",
        Nanoton::new(*balance_nanoton).to_ton_string(), Nanoton::new(*needed_nanoton).to_ton_string())]
    InsufficientBalance {
        balance_nanoton: u64,
        needed_nanoton: u64,
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
        "a settlement of {amount_nanoton} nanoton does not fit the debt of {debt_nanoton} nanoton"
    )]
    SettlementExceedsDebt {
        amount_nanoton: u64,
        debt_nanoton: u64,
    },
    #[error("invalid configuration: {0}")]
    Misconfigured(&'static str),
}

impl DomainError {
    /// The API.md error code a client sees.
    pub fn api_code(&self) -> &'static str {
        match self {
            DomainError::OrderNotFound => "ORDER_NOT_FOUND",
            DomainError::OrderExpired => "ORDER_EXPIRED",
            DomainError::DebtLimitExceeded { .. } => "DEBT_LIMIT_EXCEEDED",
            DomainError::InsufficientBalance { .. } => "INSUFFICIENT_BALANCE",
            DomainError::UnknownRequest(_) => "REQUEST_NOT_FOUND",
            DomainError::WrongStatus { .. }
            | DomainError::PaidByAnotherWallet { .. }
            | DomainError::KycCookiesRequired
            | DomainError::SettlementExceedsDebt { .. } => "VALIDATION_ERROR",
            DomainError::OrderExists(_)
            | DomainError::AlreadySubmitted
            | DomainError::NotSubmitted
            | DomainError::TooEarly
            | DomainError::Misconfigured(_) => "INTERNAL_ERROR",
        }
    }

    /// The HTTP status that goes with `api_code` (API.md's table).
    pub fn http_status(&self) -> u16 {
        match self {
            DomainError::OrderNotFound | DomainError::UnknownRequest(_) => 404,
            DomainError::OrderExists(_)
            | DomainError::AlreadySubmitted
            | DomainError::NotSubmitted
            | DomainError::TooEarly
            | DomainError::Misconfigured(_) => 500,
            DomainError::OrderExpired
            | DomainError::WrongStatus { .. }
            | DomainError::PaidByAnotherWallet { .. }
            | DomainError::KycCookiesRequired
            | DomainError::DebtLimitExceeded { .. }
            | DomainError::InsufficientBalance { .. }
            | DomainError::SettlementExceedsDebt { .. } => 400,
        }
    }
}
