//! Transaction history per wallet: a wallet's payment requests, newest first, each shown with
//! its order. The items are made from the order and request rows, so the two never disagree;
//! in memory an index from wallet to its requests keeps the pages cheap (the durable stores
//! index the request rows by wallet and `paid_position` instead).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use events::{Nanoton, Product};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::orders::{OrderBook, OrderView, RequestView};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionHistory {
    /// Raw wallet address → request ids in the order they were paid.
    by_wallet: BTreeMap<String, Vec<Uuid>>,
}

/// One line of `GET /transactions`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HistoryItem {
    pub order_id: Uuid,
    pub request_id: Uuid,
    pub product: Product,
    pub username: String,
    /// What the wallet paid Fragment (the quoted price until the payment is on chain).
    pub cost_nanoton: Nanoton,
    /// The same in USDT, for a USDT order (`cost_nanoton` is then zero once paid).
    pub cost_usdt: Option<events::JettonAmount>,
    pub commission_nanoton: Nanoton,
    /// The request's status: queued, processing, completed, failed, timeout.
    pub status: String,
    pub tx_hash: Option<String>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

impl HistoryItem {
    /// A request as its wallet's history shows it, with the order it paid for.
    pub fn new(order: &OrderView, request: &RequestView) -> HistoryItem {
        let result = request.result.as_ref();
        HistoryItem {
            order_id: order.order_id,
            request_id: request.request_id,
            product: order.product,
            username: order.username.clone(),
            cost_nanoton: result.map_or(order.price_nanoton, |r| r.cost_nanoton),
            cost_usdt: result.map_or(order.price_usdt, |r| r.cost_usdt),
            commission_nanoton: order.commission_nanoton,
            status: request.status.as_str().to_string(),
            tx_hash: result.map(|r| r.transaction_hash.clone()),
            created_at: request.created_at,
            completed_at: request.completed_at,
        }
    }
}

impl TransactionHistory {
    /// Notes a new request of `wallet_raw`: they arrive in the order they were paid.
    pub fn paid(&mut self, wallet_raw: &str, request_id: Uuid) {
        self.by_wallet
            .entry(wallet_raw.to_string())
            .or_default()
            .push(request_id);
    }

    pub fn count(&self, wallet_raw: &str) -> usize {
        self.by_wallet.get(wallet_raw).map_or(0, Vec::len)
    }

    /// A page of the wallet's history, newest first.
    pub fn page(
        &self,
        book: &OrderBook,
        wallet_raw: &str,
        offset: usize,
        limit: usize,
    ) -> Vec<HistoryItem> {
        let Some(ids) = self.by_wallet.get(wallet_raw) else {
            return vec![];
        };
        ids.iter()
            .rev()
            .skip(offset)
            .take(limit)
            .filter_map(|id| {
                let request = book.request(id)?;
                let order = book.order(&request.order_id)?;
                Some(HistoryItem::new(order, request))
            })
            .collect()
    }
}
