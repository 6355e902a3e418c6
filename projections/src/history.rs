//! Transaction history per wallet: an index from wallet to its payment requests, newest
//! first. The items themselves are read from the order book, so the two never disagree.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use events::{Event, Nanoton, Product};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::orders::OrderBook;
use crate::EventContext;

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
    pub commission_nanoton: Nanoton,
    /// The request's status: queued, processing, completed, failed, timeout.
    pub status: String,
    pub tx_hash: Option<String>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

impl TransactionHistory {
    pub fn apply(&mut self, _ctx: EventContext, event: &Event) {
        if let Event::OrderPaid(e) = event {
            self.by_wallet
                .entry(e.wallet_address.clone())
                .or_default()
                .push(e.request_id);
        }
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
                let result = request.result.as_ref();
                Some(HistoryItem {
                    order_id: order.order_id,
                    request_id: request.request_id,
                    product: order.product,
                    username: order.username.clone(),
                    cost_nanoton: result.map_or(order.price_nanoton, |r| r.cost_nanoton),
                    commission_nanoton: order.commission_nanoton,
                    status: request.status.as_str().to_string(),
                    tx_hash: result.map(|r| r.transaction_hash.clone()),
                    created_at: request.created_at,
                    completed_at: request.completed_at,
                })
            })
            .collect()
    }
}
