//! Events of a wallet's stream, `wallet-<raw address>`: commission accounting. Every event
//! carries the debt it leaves, so readers never add anything up to know a balance.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A no-KYC order paid from this wallet succeeded: its commission is now owed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommissionAccrued {
    pub wallet_address: String,
    pub order_id: Uuid,
    pub amount_nanoton: u64,
    pub debt_after_nanoton: u64,
    pub accrued_total_after_nanoton: u64,
    pub at: DateTime<Utc>,
}

/// Debt was paid to the operator's fee address inside the wallet message of a purchase.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommissionCollected {
    pub wallet_address: String,
    /// The order whose transfer carried the collection.
    pub order_id: Uuid,
    pub amount_nanoton: u64,
    pub debt_after_nanoton: u64,
    pub collected_total_after_nanoton: u64,
    pub tx_hash: String,
    pub at: DateTime<Utc>,
}

/// A collection that was signed did not reach the operator (the purchase went out, the fee
/// message was skipped): the debt stays.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommissionCollectionFailed {
    pub wallet_address: String,
    pub order_id: Uuid,
    pub amount_nanoton: u64,
    pub tx_hash: String,
    pub at: DateTime<Utc>,
}

/// The wallet's debt went over the configured limit: new payments are refused
/// (DEBT_LIMIT_EXCEEDED) until it is settled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DebtLimitReached {
    pub wallet_address: String,
    pub debt_nanoton: u64,
    pub limit_nanoton: u64,
    pub at: DateTime<Utc>,
}

/// The operator recorded a settlement made outside a purchase (admin action).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DebtSettled {
    pub wallet_address: String,
    pub amount_nanoton: u64,
    pub debt_after_nanoton: u64,
    /// Free text from the operator: a transaction hash, a ticket.
    pub reference: String,
    pub at: DateTime<Utc>,
}
