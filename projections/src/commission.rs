//! Commission balances per wallet and the operator's totals, copied from the wallet events
//! (which carry the debt they leave). The totals add events' amounts up with saturating
//! sums: a fold must go on whatever the log holds, and no real total nears 18 billion TON.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use events::{Event, Nanoton};
use serde::{Deserialize, Serialize};

use crate::{EventContext, Rows};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalletCommission {
    pub debt_nanoton: Nanoton,
    pub accrued_total_nanoton: Nanoton,
    pub collected_total_nanoton: Nanoton,
    pub settled_total_nanoton: Nanoton,
    pub failed_collections: u64,
    pub updated_at: Option<DateTime<Utc>>,
    /// Position of the last event that changed this account.
    #[serde(default)]
    pub updated_at_position: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorTotals {
    pub accrued_nanoton: Nanoton,
    pub collected_nanoton: Nanoton,
    pub settled_nanoton: Nanoton,
    /// Sum of every wallet's current debt.
    pub outstanding_nanoton: Nanoton,
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
}

/// The wallet an event charges or credits, if any.
pub fn wallet_of(event: &Event) -> Option<&str> {
    match event {
        Event::CommissionAccrued(e) => Some(&e.wallet_address),
        Event::CommissionCollected(e) => Some(&e.wallet_address),
        Event::CommissionCollectionFailed(e) => Some(&e.wallet_address),
        Event::DebtSettled(e) => Some(&e.wallet_address),
        _ => None,
    }
}

/// Folds one wallet event into its account row and the operator's totals.
pub fn apply(rows: &mut impl Rows, totals: &mut OperatorTotals, ctx: EventContext, event: &Event) {
    let at = match event {
        Event::CommissionAccrued(e) => e.at,
        Event::CommissionCollected(e) => e.at,
        Event::CommissionCollectionFailed(e) => e.at,
        Event::DebtSettled(e) => e.at,
        _ => return,
    };
    let Some(raw) = wallet_of(event) else {
        return;
    };
    let wallet = rows.wallet_mut(raw);
    let debt_before = wallet.debt_nanoton;
    match event {
        Event::CommissionAccrued(e) => {
            wallet.debt_nanoton = e.debt_after_nanoton;
            wallet.accrued_total_nanoton = e.accrued_total_after_nanoton;
            totals.accrued_nanoton = totals.accrued_nanoton.saturating_add(e.amount_nanoton);
        }
        Event::CommissionCollected(e) => {
            wallet.debt_nanoton = e.debt_after_nanoton;
            wallet.collected_total_nanoton = e.collected_total_after_nanoton;
            totals.collected_nanoton = totals.collected_nanoton.saturating_add(e.amount_nanoton);
        }
        Event::CommissionCollectionFailed(_) => {
            wallet.failed_collections += 1;
            totals.failed_collections += 1;
        }
        Event::DebtSettled(e) => {
            wallet.debt_nanoton = e.debt_after_nanoton;
            wallet.settled_total_nanoton = wallet
                .settled_total_nanoton
                .saturating_add(e.amount_nanoton);
            totals.settled_nanoton = totals.settled_nanoton.saturating_add(e.amount_nanoton);
        }
        _ => {}
    }
    wallet.updated_at = Some(at);
    wallet.updated_at_position = ctx.position;
    let debt_after = wallet.debt_nanoton;
    // The outstanding total includes `debt_before`, so taking it out cannot go below zero.
    totals.outstanding_nanoton = totals
        .outstanding_nanoton
        .saturating_sub(debt_before)
        .saturating_add(debt_after);
    match (!debt_before.is_zero(), !debt_after.is_zero()) {
        (false, true) => totals.wallets_with_debt += 1,
        (true, false) => totals.wallets_with_debt = totals.wallets_with_debt.saturating_sub(1),
        _ => {}
    }
}
