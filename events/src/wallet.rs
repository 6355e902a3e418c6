//! Events of a wallet's stream, `wallet-<raw address>`: commission accounting. Every event
//! carries the debt it leaves, so readers never add anything up to know a balance.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::money::Nanoton;

/// A no-KYC order paid from this wallet succeeded: its commission is now owed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommissionAccrued {
    pub wallet_address: String,
    pub order_id: Uuid,
    pub amount_nanoton: Nanoton,
    pub debt_after_nanoton: Nanoton,
    pub accrued_total_after_nanoton: Nanoton,
    pub at: DateTime<Utc>,
}

/// Debt was paid to the operator's fee address inside the wallet message of a purchase.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommissionCollected {
    pub wallet_address: String,
    /// The order whose transfer carried the collection.
    pub order_id: Uuid,
    pub amount_nanoton: Nanoton,
    pub debt_after_nanoton: Nanoton,
    pub collected_total_after_nanoton: Nanoton,
    pub tx_hash: String,
    pub at: DateTime<Utc>,
}

/// A collection that was signed did not reach the operator (the purchase went out, the fee
/// message was skipped): the debt stays.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommissionCollectionFailed {
    pub wallet_address: String,
    pub order_id: Uuid,
    pub amount_nanoton: Nanoton,
    pub tx_hash: String,
    pub at: DateTime<Utc>,
}

/// The wallet's debt went over the configured limit: new payments are refused
/// (DEBT_LIMIT_EXCEEDED) until it is settled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DebtLimitReached {
    pub wallet_address: String,
    pub debt_nanoton: Nanoton,
    pub limit_nanoton: Nanoton,
    pub at: DateTime<Utc>,
}

/// The operator recorded a settlement made outside a purchase (admin action).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DebtSettled {
    pub wallet_address: String,
    pub amount_nanoton: Nanoton,
    pub debt_after_nanoton: Nanoton,
    /// Free text from the operator: a transaction hash, a ticket.
    pub reference: String,
    pub at: DateTime<Utc>,
}
