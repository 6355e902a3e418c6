//! The operator's business settings the decisions depend on, and the arithmetic of
//! commission and collection. Integer nanoton and `Decimal` only.

use chrono::Duration;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};

use events::{Nanoton, OrderMode};

use super::DomainError;

#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// An unpaid order expires after this (API.md: 10 minutes).
    pub order_ttl: Duration,
    /// A queued request times out after waiting this long (API.md: 5 minutes).
    pub queue_timeout: Duration,
    /// Commission as a fraction of the price (0.01 = 1 %).
    pub rate_no_kyc: Decimal,
    pub rate_kyc: Decimal,
    /// A wallet's debt is collected with its next purchase once it reaches this.
    pub collection_threshold_nanoton: Nanoton,
    /// Whether debt is collected at all: only when the operator named a fee address
    /// (`commission.fee_address`). Without one, debt accrues (the operator settles it by
    /// hand) and no payment is asked to carry money that would never be sent.
    pub collection_enabled: bool,
    /// A wallet owing more than this may not pay new orders.
    pub debt_limit_nanoton: Nanoton,
    /// Kept free on top of the amounts sent, for the network fees of the transfer.
    pub network_fee_reserve_nanoton: Nanoton,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            order_ttl: Duration::minutes(10),
            queue_timeout: Duration::minutes(5),
            rate_no_kyc: Decimal::new(1, 2),
            rate_kyc: Decimal::ZERO,
            collection_threshold_nanoton: Nanoton::from_ton(1),
            collection_enabled: true,
            debt_limit_nanoton: Nanoton::from_ton(2),
            network_fee_reserve_nanoton: Nanoton::new(50_000_000),
        }
    }
}

/// What one payment's wallet message must carry, and what the wallet must hold for it: the
/// one balance rule, used when a payment is accepted (at the order's price) and again when
/// its message is built (at the invoice Fragment issued).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PaymentNeeds {
    /// To Fragment.
    pub purchase: Nanoton,
    /// Debt the same message pays to the fee address (zero when none is due).
    pub collection: Nanoton,
    /// Left free for the network fees.
    pub reserve: Nanoton,
    /// `purchase + collection + reserve`: the balance the wallet needs.
    pub total: Nanoton,
}

impl Policy {
    pub fn rate(&self, mode: OrderMode) -> Decimal {
        match mode {
            OrderMode::Kyc => self.rate_kyc,
            OrderMode::NoKyc => self.rate_no_kyc,
        }
    }

    /// How much debt a purchase's transfer collects. Once the wallet's debt, counting this
    /// order's commission, reaches the threshold, the transfer pays all of it to the operator
    /// in the same signed message, so collection never costs the client an extra transaction
    /// and a large order cannot leave its wallet over the debt limit. Below the threshold, or
    /// when collection is off, nothing.
    pub fn collection_due(
        &self,
        debt: Nanoton,
        commission: Nanoton,
    ) -> Result<Nanoton, DomainError> {
        if !self.collection_enabled {
            return Ok(Nanoton::ZERO);
        }
        let owed = debt
            .checked_add(commission)
            .ok_or(DomainError::AmountOverflow("debt"))?;
        Ok(
            if !owed.is_zero() && owed >= self.collection_threshold_nanoton {
                owed
            } else {
                Nanoton::ZERO
            },
        )
    }

    /// What a payment of `purchase` to Fragment needs, for an order of `commission` paid from
    /// a wallet owing `debt`.
    pub fn payment_needs(
        &self,
        purchase: Nanoton,
        commission: Nanoton,
        debt: Nanoton,
    ) -> Result<PaymentNeeds, DomainError> {
        let collection = self.collection_due(debt, commission)?;
        let reserve = self.network_fee_reserve_nanoton;
        let total = Nanoton::checked_sum([purchase, collection, reserve])
            .ok_or(DomainError::AmountOverflow("payment"))?;
        Ok(PaymentNeeds {
            purchase,
            collection,
            reserve,
            total,
        })
    }
}

/// What `price` is in USDT units (10⁻⁶) at `ton_usd` dollars a TON, rounded up to the unit:
/// a quote that Fragment's own rounding of the same rate cannot exceed. `None` for a rate
/// that is not positive or a result that does not fit.
pub fn usdt_for(price: Nanoton, ton_usd: Decimal) -> Option<events::JettonAmount> {
    if ton_usd <= Decimal::ZERO {
        return None;
    }
    // nanoton × USD/TON ÷ 10⁹ × 10⁶ = nanoton × rate ÷ 1000.
    Decimal::from(price.as_u64())
        .checked_mul(ton_usd)?
        .checked_div(Decimal::from(1000u64))?
        .ceil()
        .to_u64()
        .map(events::JettonAmount)
}

/// `price × rate`, rounded half away from zero to the nanoton. `None` when the rate is
/// negative or the result does not fit (a configuration error, refused at startup).
pub fn commission_for(price: Nanoton, rate: Decimal) -> Option<Nanoton> {
    if rate.is_sign_negative() {
        return None;
    }
    Decimal::from(price.as_u64())
        .checked_mul(rate)?
        .round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero)
        .to_u64()
        .map(Nanoton::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(v: u64) -> Nanoton {
        Nanoton::new(v)
    }

    #[test]
    fn a_usdt_quote_is_the_ton_price_at_the_rate_rounded_up() {
        let rate = Decimal::new(300, 2);
        assert_eq!(
            usdt_for(n(250_000_000), rate),
            Some(events::JettonAmount(750_000))
        );
        // 1 nanoton at $3: 0.003 units, a whole unit.
        assert_eq!(usdt_for(n(1), rate), Some(events::JettonAmount(1)));
        assert_eq!(usdt_for(n(0), rate), Some(events::JettonAmount(0)));
        assert_eq!(usdt_for(n(1), Decimal::ZERO), None);
        assert_eq!(usdt_for(n(1), Decimal::new(-3, 0)), None);
    }

    #[test]
    fn commission_rounds_half_away_from_zero_to_the_nanoton() {
        let one_percent = Decimal::new(1, 2);
        assert_eq!(
            commission_for(n(1_000_000_000), one_percent),
            Some(n(10_000_000))
        );
        assert_eq!(commission_for(n(150), one_percent), Some(n(2))); // 1.5 → 2
        assert_eq!(commission_for(n(149), one_percent), Some(n(1))); // 1.49 → 1
        assert_eq!(
            commission_for(n(761_234_567), one_percent),
            Some(n(7_612_346))
        );
        assert_eq!(commission_for(n(761_234_567), Decimal::ZERO), Some(n(0)));
        assert_eq!(commission_for(n(u64::MAX), Decimal::ONE), Some(n(u64::MAX)));
        assert_eq!(commission_for(n(u64::MAX), Decimal::TWO), None);
        assert_eq!(commission_for(n(5), Decimal::new(-1, 2)), None);
    }

    fn threshold(t: u64) -> Policy {
        Policy {
            collection_threshold_nanoton: n(t),
            ..Policy::default()
        }
    }

    #[test]
    fn collection_starts_when_debt_with_this_commission_reaches_the_threshold() {
        let p = threshold(1_000_000_000);
        let due = |debt, commission| p.collection_due(n(debt), n(commission)).unwrap();
        assert_eq!(due(0, 0), n(0));
        assert_eq!(due(500_000_000, 10_000_000), n(0));
        assert_eq!(due(990_000_000, 10_000_000), n(1_000_000_000));
        assert_eq!(due(1_500_000_000, 0), n(1_500_000_000));
        // A single large order pays its own commission up front.
        assert_eq!(due(0, 3_000_000_000), n(3_000_000_000));
        // A zero threshold collects any debt, but never a zero transfer.
        let zero = threshold(0);
        assert_eq!(zero.collection_due(n(0), n(0)).unwrap(), n(0));
        assert_eq!(zero.collection_due(n(1), n(0)).unwrap(), n(1));
        assert!(matches!(
            p.collection_due(n(u64::MAX), n(1)),
            Err(DomainError::AmountOverflow(_))
        ));
    }

    #[test]
    fn without_a_fee_address_nothing_is_collected_or_asked_for() {
        let off = Policy {
            collection_enabled: false,
            ..threshold(1_000_000_000)
        };
        assert_eq!(
            off.collection_due(n(990_000_000), n(10_000_000)).unwrap(),
            n(0)
        );
        let needs = off
            .payment_needs(n(500_000_000), n(10_000_000), n(990_000_000))
            .unwrap();
        assert_eq!(needs.collection, n(0));
        assert_eq!(needs.total, n(550_000_000), "price and fee reserve only");
    }

    #[test]
    fn a_payment_needs_the_price_the_collection_due_and_the_fee_reserve() {
        let p = threshold(1_000_000_000);
        let needs = p
            .payment_needs(n(500_000_000), n(10_000_000), n(990_000_000))
            .unwrap();
        assert_eq!(
            needs,
            PaymentNeeds {
                purchase: n(500_000_000),
                collection: n(1_000_000_000),
                reserve: n(50_000_000),
                total: n(1_550_000_000),
            }
        );
        assert!(matches!(
            p.payment_needs(n(u64::MAX), n(0), n(0)),
            Err(DomainError::AmountOverflow(_))
        ));
    }
}
