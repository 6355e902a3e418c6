//! A wallet's commission account: debt accrues when a no-KYC order it paid succeeds, and is
//! collected inside the wallet message of a later purchase (see `policy::collection_due`).

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use events::{
    CommissionAccrued, CommissionCollected, CommissionCollectionFailed, DebtLimitReached,
    DebtSettled, Event, Nanoton,
};

use super::policy::Policy;
use super::DomainError;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WalletState {
    pub debt_nanoton: Nanoton,
    pub accrued_total_nanoton: Nanoton,
    pub collected_total_nanoton: Nanoton,
    pub settled_total_nanoton: Nanoton,
    /// The last orders accounted: settling an order's outcome twice (a retry after a crash
    /// between the wallet's and the order's append) must not charge twice.
    ///
    /// Only the last `REMEMBERED` are kept, which is enough: a wallet signs one transfer at a
    /// time, and signs the next only once the previous one's outcome is recorded in its
    /// order's stream, so a repeated settlement can only be of one of its latest orders. Any
    /// order further back was finished long ago and is never settled again. Keeping them all
    /// would grow a busy wallet's actor with every purchase it ever made.
    pub accounted_orders: Recent<Uuid, ()>,
    /// The last settlements recorded, by their reference: the operator's retry of a
    /// settlement (a timeout, a double click) must not settle twice, so a reference names one
    /// settlement of one wallet. A retry comes within seconds; the last `REMEMBERED`
    /// references of a wallet cover years of manual settlements.
    pub settlements: Recent<String, Nanoton>,
    pub version: u64,
}

/// How many accounted orders and settlement references a wallet keeps.
pub const REMEMBERED: usize = 1024;

/// The last `REMEMBERED` keys inserted, with their values: a window, not a history.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recent<K: std::hash::Hash + Eq, V> {
    order: VecDeque<K>,
    values: HashMap<K, V>,
}

impl<K: std::hash::Hash + Eq + Clone, V> Recent<K, V> {
    pub fn get(&self, key: &K) -> Option<&V> {
        self.values.get(key)
    }

    pub fn contains(&self, key: &K) -> bool {
        self.values.contains_key(key)
    }

    /// Remembers `key` (again, as the newest), forgetting the oldest past `REMEMBERED`.
    pub fn insert(&mut self, key: K, value: V) {
        if self.values.insert(key.clone(), value).is_some() {
            self.order.retain(|k| k != &key);
        }
        self.order.push_back(key);
        while self.order.len() > REMEMBERED {
            if let Some(oldest) = self.order.pop_front() {
                self.values.remove(&oldest);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// The money outcome of one confirmed purchase transfer, for the wallet's account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PurchaseSettlement {
    pub order_id: Uuid,
    /// The order's commission (0 in KYC mode).
    pub commission_nanoton: Nanoton,
    /// Debt the transfer was signed to collect.
    pub collection_nanoton: Nanoton,
    /// Whether the chain shows the collection message sent as signed.
    pub collection_sent: bool,
    pub tx_hash: String,
    pub now: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WalletCommand {
    SettlePurchase(PurchaseSettlement),
    /// The operator records a payment of debt made outside a purchase. Its `reference`
    /// identifies it: the same settlement sent again changes nothing.
    SettleDebt {
        amount_nanoton: Nanoton,
        reference: String,
        now: DateTime<Utc>,
    },
}

impl WalletState {
    pub fn evolve(&mut self, event: &Event) {
        self.version += 1;
        match event {
            Event::CommissionAccrued(e) => {
                self.debt_nanoton = e.debt_after_nanoton;
                self.accrued_total_nanoton = e.accrued_total_after_nanoton;
                self.accounted_orders.insert(e.order_id, ());
            }
            Event::CommissionCollected(e) => {
                self.debt_nanoton = e.debt_after_nanoton;
                self.collected_total_nanoton = e.collected_total_after_nanoton;
                self.accounted_orders.insert(e.order_id, ());
            }
            Event::CommissionCollectionFailed(e) => {
                self.accounted_orders.insert(e.order_id, ());
            }
            Event::DebtSettled(e) => {
                self.debt_nanoton = e.debt_after_nanoton;
                // A fold records what happened; the decision that wrote the event checked
                // this sum, so it cannot overflow on a log this build wrote.
                self.settled_total_nanoton =
                    self.settled_total_nanoton.saturating_add(e.amount_nanoton);
                self.settlements
                    .insert(e.reference.clone(), e.amount_nanoton);
            }
            _ => {}
        }
    }

    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a Event>) -> WalletState {
        let mut state = WalletState::default();
        for e in events {
            state.evolve(e);
        }
        state
    }
}

pub fn decide(
    state: &WalletState,
    wallet_address: &str,
    command: WalletCommand,
    policy: &Policy,
) -> Result<Vec<Event>, DomainError> {
    let mut events = Vec::new();
    let mut debt = state.debt_nanoton;
    let now = match command {
        WalletCommand::SettlePurchase(s) => {
            if state.accounted_orders.contains(&s.order_id) {
                return Ok(vec![]);
            }
            if !s.commission_nanoton.is_zero() {
                debt = debt
                    .checked_add(s.commission_nanoton)
                    .ok_or(DomainError::AmountOverflow("debt"))?;
                events.push(
                    CommissionAccrued {
                        wallet_address: wallet_address.to_string(),
                        order_id: s.order_id,
                        amount_nanoton: s.commission_nanoton,
                        debt_after_nanoton: debt,
                        accrued_total_after_nanoton: state
                            .accrued_total_nanoton
                            .checked_add(s.commission_nanoton)
                            .ok_or(DomainError::AmountOverflow("accrued total"))?,
                        at: s.now,
                    }
                    .into(),
                );
            }
            if !s.collection_nanoton.is_zero() && s.collection_sent {
                // The transfer may collect more than is owed now only if a settlement
                // landed between signing and confirmation; the debt floors at zero and the
                // event records exactly what was paid.
                debt = debt.saturating_sub(s.collection_nanoton);
                events.push(
                    CommissionCollected {
                        wallet_address: wallet_address.to_string(),
                        order_id: s.order_id,
                        amount_nanoton: s.collection_nanoton,
                        debt_after_nanoton: debt,
                        collected_total_after_nanoton: state
                            .collected_total_nanoton
                            .checked_add(s.collection_nanoton)
                            .ok_or(DomainError::AmountOverflow("collected total"))?,
                        tx_hash: s.tx_hash.clone(),
                        at: s.now,
                    }
                    .into(),
                );
            } else if !s.collection_nanoton.is_zero() {
                events.push(
                    CommissionCollectionFailed {
                        wallet_address: wallet_address.to_string(),
                        order_id: s.order_id,
                        amount_nanoton: s.collection_nanoton,
                        tx_hash: s.tx_hash.clone(),
                        at: s.now,
                    }
                    .into(),
                );
            }
            s.now
        }
        WalletCommand::SettleDebt {
            amount_nanoton,
            reference,
            now,
        } => {
            match state.settlements.get(&reference) {
                Some(recorded) if *recorded == amount_nanoton => return Ok(vec![]),
                Some(recorded) => {
                    return Err(DomainError::SettlementReferenceReused {
                        reference,
                        recorded_nanoton: *recorded,
                    })
                }
                None => {}
            }
            debt = match state.debt_nanoton.checked_sub(amount_nanoton) {
                Some(after) if !amount_nanoton.is_zero() => after,
                _ => {
                    return Err(DomainError::SettlementExceedsDebt {
                        amount_nanoton,
                        debt_nanoton: state.debt_nanoton,
                    })
                }
            };
            events.push(
                DebtSettled {
                    wallet_address: wallet_address.to_string(),
                    amount_nanoton,
                    debt_after_nanoton: debt,
                    reference,
                    at: now,
                }
                .into(),
            );
            now
        }
    };
    // Every change that leaves the wallet over the limit says so, for the operator's follow-up.
    if debt > policy.debt_limit_nanoton && !events.is_empty() {
        events.push(
            DebtLimitReached {
                wallet_address: wallet_address.to_string(),
                debt_nanoton: debt,
                limit_nanoton: policy.debt_limit_nanoton,
                at: now,
            }
            .into(),
        );
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const W: &str = "0:1111111111111111111111111111111111111111111111111111111111111111";

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap()
    }

    fn settle(order: u128, commission: u64, collection: u64, sent: bool) -> WalletCommand {
        WalletCommand::SettlePurchase(PurchaseSettlement {
            order_id: Uuid::from_u128(order),
            commission_nanoton: Nanoton::new(commission),
            collection_nanoton: Nanoton::new(collection),
            collection_sent: sent,
            tx_hash: "tx".into(),
            now: now(),
        })
    }

    fn run(commands: Vec<WalletCommand>) -> (WalletState, Vec<Event>) {
        let policy = Policy::default();
        let mut state = WalletState::default();
        let mut all = Vec::new();
        for c in commands {
            for e in decide(&state, W, c, &policy).unwrap() {
                state.evolve(&e);
                all.push(e);
            }
        }
        (state, all)
    }

    #[test]
    fn commission_accrues_as_debt_with_running_totals() {
        let (state, events) = run(vec![
            settle(1, 10_000_000, 0, false),
            settle(2, 5, 0, false),
        ]);
        assert_eq!(state.debt_nanoton, Nanoton::new(10_000_005));
        assert_eq!(state.accrued_total_nanoton, Nanoton::new(10_000_005));
        let Event::CommissionAccrued(last) = events.last().unwrap() else {
            panic!()
        };
        assert_eq!(last.debt_after_nanoton, Nanoton::new(10_000_005));
    }

    #[test]
    fn a_kyc_purchase_without_collection_changes_nothing() {
        let (state, events) = run(vec![settle(1, 0, 0, false)]);
        assert!(events.is_empty());
        assert_eq!(state, WalletState::default());
    }

    #[test]
    fn collection_pays_the_debt_including_this_orders_commission() {
        let (state, events) = run(vec![
            settle(1, 995_000_000, 0, false),
            settle(2, 10_000_000, 1_005_000_000, true),
        ]);
        assert_eq!(state.debt_nanoton, Nanoton::new(0));
        assert_eq!(state.collected_total_nanoton, Nanoton::new(1_005_000_000));
        assert_eq!(state.accrued_total_nanoton, Nanoton::new(1_005_000_000));
        assert!(matches!(events[2], Event::CommissionCollected(_)));
    }

    #[test]
    fn settling_the_same_order_twice_charges_once() {
        let (state, events) = run(vec![
            settle(1, 10_000_000, 0, false),
            settle(1, 10_000_000, 0, false),
        ]);
        assert_eq!(events.len(), 1);
        assert_eq!(state.debt_nanoton, Nanoton::new(10_000_000));
    }

    #[test]
    fn a_failed_collection_keeps_the_debt_and_flags_the_limit() {
        let (state, events) = run(vec![
            settle(1, 1_500_000_000, 0, false),
            settle(2, 600_000_000, 2_100_000_000, false),
        ]);
        assert_eq!(state.debt_nanoton, Nanoton::new(2_100_000_000));
        let kinds: Vec<_> = events.iter().map(Event::event_type).collect();
        assert_eq!(
            kinds,
            [
                "CommissionAccrued",
                "CommissionAccrued",
                "CommissionCollectionFailed",
                "DebtLimitReached"
            ]
        );
    }

    #[test]
    fn the_operator_can_settle_debt_but_not_more_than_is_owed() {
        let policy = Policy::default();
        let (state, _) = run(vec![settle(1, 2_500_000_000, 0, false)]);
        let too_much = WalletCommand::SettleDebt {
            amount_nanoton: Nanoton::new(2_500_000_001),
            reference: "r".into(),
            now: now(),
        };
        assert!(decide(&state, W, too_much, &policy).is_err());
        let ok = WalletCommand::SettleDebt {
            amount_nanoton: Nanoton::new(2_000_000_000),
            reference: "r".into(),
            now: now(),
        };
        let events = decide(&state, W, ok, &policy).unwrap();
        let Event::DebtSettled(s) = &events[0] else {
            panic!()
        };
        assert_eq!(s.debt_after_nanoton, Nanoton::new(500_000_000));
        assert_eq!(events.len(), 1, "within the limit now: no DebtLimitReached");
    }

    #[test]
    fn a_settlement_sent_again_under_its_reference_is_recorded_once() {
        let policy = Policy::default();
        let (mut state, _) = run(vec![settle(1, 1_500_000_000, 0, false)]);
        let settle_debt = |amount: u64, reference: &str| WalletCommand::SettleDebt {
            amount_nanoton: Nanoton::new(amount),
            reference: reference.into(),
            now: now(),
        };
        let first = decide(&state, W, settle_debt(500_000_000, "bank 42"), &policy).unwrap();
        assert_eq!(first.len(), 1);
        for e in &first {
            state.evolve(e);
        }
        // A retry: nothing new, the debt is settled once.
        assert_eq!(
            decide(&state, W, settle_debt(500_000_000, "bank 42"), &policy),
            Ok(vec![])
        );
        assert_eq!(state.debt_nanoton, Nanoton::new(1_000_000_000));
        // The same reference for another amount is a mistake, not a second settlement.
        assert_eq!(
            decide(&state, W, settle_debt(400_000_000, "bank 42"), &policy),
            Err(DomainError::SettlementReferenceReused {
                reference: "bank 42".into(),
                recorded_nanoton: Nanoton::new(500_000_000),
            })
        );
        // Another reference is another settlement.
        assert_eq!(
            decide(&state, W, settle_debt(500_000_000, "bank 43"), &policy)
                .unwrap()
                .len(),
            1
        );
    }

    /// A wallet of many purchases keeps a window of them, not its history, and still
    /// refuses to account its latest orders twice.
    #[test]
    fn a_busy_wallet_remembers_a_window_of_orders_and_still_refuses_a_repeat() {
        let orders = 3 * REMEMBERED as u128;
        let (state, events) = run((1..=orders).map(|n| settle(n, 1, 0, false)).collect());
        assert_eq!(events.len() as u128, orders);
        assert_eq!(state.accounted_orders.len(), REMEMBERED);
        assert_eq!(state.debt_nanoton, Nanoton::new(orders as u64));
        let policy = Policy::default();
        for recent in [orders, orders - 1, orders - REMEMBERED as u128 + 1] {
            assert_eq!(
                decide(&state, W, settle(recent, 1, 0, false), &policy).unwrap(),
                vec![],
                "order {recent} accounted twice"
            );
        }
        let refs = 2 * REMEMBERED;
        let mut state = WalletState {
            debt_nanoton: Nanoton::new(u64::MAX / 2),
            ..WalletState::default()
        };
        for n in 0..refs {
            let command = WalletCommand::SettleDebt {
                amount_nanoton: Nanoton::new(1),
                reference: format!("bank {n}"),
                now: now(),
            };
            for e in decide(&state, W, command, &policy).unwrap() {
                state.evolve(&e);
            }
        }
        assert_eq!(state.settlements.len(), REMEMBERED);
        let retry = WalletCommand::SettleDebt {
            amount_nanoton: Nanoton::new(1),
            reference: format!("bank {}", refs - 1),
            now: now(),
        };
        assert_eq!(decide(&state, W, retry, &policy).unwrap(), vec![]);
    }
}
