//! The operator's business settings the decisions depend on, and the arithmetic of
//! commission and collection. Integer nanoton and `Decimal` only.

use chrono::Duration;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};

use events::OrderMode;

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
    pub collection_threshold_nanoton: u64,
    /// A wallet owing more than this may not pay new orders.
    pub debt_limit_nanoton: u64,
    /// Kept free on top of the amounts sent, for the network fees of the transfer.
    pub network_fee_reserve_nanoton: u64,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            order_ttl: Duration::minutes(10),
            queue_timeout: Duration::minutes(5),
            rate_no_kyc: Decimal::new(1, 2),
            rate_kyc: Decimal::ZERO,
            collection_threshold_nanoton: 1_000_000_000,
            debt_limit_nanoton: 2_000_000_000,
            network_fee_reserve_nanoton: 50_000_000,
        }
    }
}

impl Policy {
    pub fn rate(&self, mode: OrderMode) -> Decimal {
        match mode {
            OrderMode::Kyc => self.rate_kyc,
            OrderMode::NoKyc => self.rate_no_kyc,
        }
    }
}

/// `price × rate`, rounded half away from zero to the nanoton. `None` when the rate is
/// negative or the result does not fit (a configuration error, refused at startup).
pub fn commission_for(price_nanoton: u64, rate: Decimal) -> Option<u64> {
    if rate.is_sign_negative() {
        return None;
    }
    Decimal::from(price_nanoton)
        .checked_mul(rate)?
        .round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero)
        .to_u64()
}

/// How much debt a purchase's transfer collects. Once the wallet's debt, counting this
/// order's commission, reaches the threshold, the transfer pays all of it to the operator
/// in the same signed message, so collection never costs the client an extra transaction and
/// a large order cannot leave its wallet over the debt limit. Below the threshold, nothing.
pub fn collection_due(debt_nanoton: u64, commission_nanoton: u64, threshold_nanoton: u64) -> u64 {
    let owed = debt_nanoton.saturating_add(commission_nanoton);
    if owed > 0 && owed >= threshold_nanoton {
        owed
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commission_rounds_half_away_from_zero_to_the_nanoton() {
        let one_percent = Decimal::new(1, 2);
        assert_eq!(commission_for(1_000_000_000, one_percent), Some(10_000_000));
        assert_eq!(commission_for(150, one_percent), Some(2)); // 1.5 → 2
        assert_eq!(commission_for(149, one_percent), Some(1)); // 1.49 → 1
        assert_eq!(commission_for(761_234_567, one_percent), Some(7_612_346));
        assert_eq!(commission_for(761_234_567, Decimal::ZERO), Some(0));
        assert_eq!(commission_for(u64::MAX, Decimal::ONE), Some(u64::MAX));
        assert_eq!(commission_for(u64::MAX, Decimal::TWO), None);
        assert_eq!(commission_for(5, Decimal::new(-1, 2)), None);
    }

    #[test]
    fn collection_starts_when_debt_with_this_commission_reaches_the_threshold() {
        let t = 1_000_000_000;
        assert_eq!(collection_due(0, 0, t), 0);
        assert_eq!(collection_due(500_000_000, 10_000_000, t), 0);
        assert_eq!(collection_due(990_000_000, 10_000_000, t), 1_000_000_000);
        assert_eq!(collection_due(1_500_000_000, 0, t), 1_500_000_000);
        // A single large order pays its own commission up front.
        assert_eq!(collection_due(0, 3_000_000_000, t), 3_000_000_000);
        // A zero threshold collects any debt, but never a zero transfer.
        assert_eq!(collection_due(0, 0, 0), 0);
        assert_eq!(collection_due(1, 0, 0), 1);
    }
}
