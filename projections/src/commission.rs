//! Commission balances per wallet and the operator's totals, copied from the wallet events
//! (which carry the debt they leave).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use events::Event;
use serde::{Deserialize, Serialize};

use crate::EventContext;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalletCommission {
    pub debt_nanoton: u64,
    pub accrued_total_nanoton: u64,
    pub collected_total_nanoton: u64,
    pub settled_total_nanoton: u64,
    pub failed_collections: u64,
    pub updated_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorTotals {
    pub accrued_nanoton: u64,
    pub collected_nanoton: u64,
    pub settled_nanoton: u64,
    /// Sum of every wallet's current debt.
    pub outstanding_nanoton: u64,
    pub wallets_with_debt: u64,
    pub failed_collections: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommissionBalances {
    pub wallets: BTreeMap<String, WalletCommission>,
    pub totals: OperatorTotals,
}

impl CommissionBalances {
    /// By raw address; a wallet never charged has a zero balance.
    pub fn wallet(&self, raw: &str) -> WalletCommission {
        self.wallets.get(raw).cloned().unwrap_or_default()
    }

    pub fn apply(&mut self, _ctx: EventContext, event: &Event) {
        let (raw, at) = match event {
            Event::CommissionAccrued(e) => (&e.wallet_address, e.at),
            Event::CommissionCollected(e) => (&e.wallet_address, e.at),
            Event::CommissionCollectionFailed(e) => (&e.wallet_address, e.at),
            Event::DebtSettled(e) => (&e.wallet_address, e.at),
            _ => return,
        };
        let wallet = self.wallets.entry(raw.clone()).or_default();
        let debt_before = wallet.debt_nanoton;
        match event {
            Event::CommissionAccrued(e) => {
                wallet.debt_nanoton = e.debt_after_nanoton;
                wallet.accrued_total_nanoton = e.accrued_total_after_nanoton;
                self.totals.accrued_nanoton += e.amount_nanoton;
            }
            Event::CommissionCollected(e) => {
                wallet.debt_nanoton = e.debt_after_nanoton;
                wallet.collected_total_nanoton = e.collected_total_after_nanoton;
                self.totals.collected_nanoton += e.amount_nanoton;
            }
            Event::CommissionCollectionFailed(_) => {
                wallet.failed_collections += 1;
                self.totals.failed_collections += 1;
            }
            Event::DebtSettled(e) => {
                wallet.debt_nanoton = e.debt_after_nanoton;
                wallet.settled_total_nanoton += e.amount_nanoton;
                self.totals.settled_nanoton += e.amount_nanoton;
            }
            _ => {}
        }
        wallet.updated_at = Some(at);
        let debt_after = wallet.debt_nanoton;
        self.totals.outstanding_nanoton =
            self.totals.outstanding_nanoton - debt_before + debt_after;
        match (debt_before > 0, debt_after > 0) {
            (false, true) => self.totals.wallets_with_debt += 1,
            (true, false) => self.totals.wallets_with_debt -= 1,
            _ => {}
        }
    }
}
