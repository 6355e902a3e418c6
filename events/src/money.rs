//! Money: Toncoin amounts as a typed integer count of nanoton.
//!
//! Money never goes through floating point or a bare `u64`: amounts are `Nanoton` (10⁻⁹ TON
//! in a `u64`, about 18.4 billion TON, far more than the total supply of ~5.1 billion), and
//! sums are checked (`checked_add`, `checked_sum`), so an overflow is an error a caller must
//! handle, never a silent wrap. Saturating operations exist only where a rule says so (a
//! debt floors at zero) and say why where they are used.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Nanoton per TON.
pub const NANOTON_PER_TON: u64 = 1_000_000_000;

/// An amount of Toncoin in nanoton.
///
/// Serialises as a JSON integer of nanoton, the shape every stored event has always had (a
/// stored `*_nanoton` field reads the same before and after the type). Deserialises from an
/// integer or a decimal string of nanoton (`"1500000000"`), as toncenter and TON Connect send
/// it. `to_ton_string` gives the human TON form (`"1.5"`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Nanoton(u64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("amount must be a non-negative decimal number of TON with at most 9 fraction digits")]
    Malformed,
    #[error("amount is too large")]
    Overflow,
}

impl Nanoton {
    pub const ZERO: Nanoton = Nanoton(0);

    pub const fn new(nanoton: u64) -> Self {
        Nanoton(nanoton)
    }

    /// Whole TON, for fixtures and tests. Panics on overflow, so it is for constants only.
    pub const fn from_ton(ton: u64) -> Self {
        match ton.checked_mul(NANOTON_PER_TON) {
            Some(n) => Nanoton(n),
            None => panic!("TON amount overflows u64 nanoton"),
        }
    }

    pub const fn as_u64(self) -> u64 {
        self.0
    }

    pub fn checked_add(self, other: Nanoton) -> Option<Nanoton> {
        self.0.checked_add(other.0).map(Nanoton)
    }

    pub fn checked_sub(self, other: Nanoton) -> Option<Nanoton> {
        self.0.checked_sub(other.0).map(Nanoton)
    }

    /// `self - other`, or zero when `other` is larger: for rules that floor at zero.
    pub fn saturating_sub(self, other: Nanoton) -> Nanoton {
        Nanoton(self.0.saturating_sub(other.0))
    }

    /// `self + other`, or the largest amount: for running totals in read models, which must
    /// keep folding whatever the log holds (no real total comes near 18 billion TON).
    pub fn saturating_add(self, other: Nanoton) -> Nanoton {
        Nanoton(self.0.saturating_add(other.0))
    }

    /// The sum of `amounts`, or `None` when it does not fit.
    pub fn checked_sum(amounts: impl IntoIterator<Item = Nanoton>) -> Option<Nanoton> {
        amounts
            .into_iter()
            .try_fold(Nanoton::ZERO, |total, a| total.checked_add(a))
    }

    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// Parses a TON decimal such as `"1.5"`, `"0.000000001"` or `"12"`.
    pub fn parse_ton(s: &str) -> Result<Nanoton, AmountError> {
        let s = s.trim();
        let (whole, frac) = match s.split_once('.') {
            Some((w, f)) => (w, f),
            None => (s, ""),
        };
        let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() && frac.is_empty()
            || !digits(whole)
            || !digits(frac)
            || frac.len() > 9
            || (s.contains('.') && frac.is_empty())
        {
            return Err(AmountError::Malformed);
        }
        let whole: u64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| AmountError::Overflow)?
        };
        let frac_nano: u64 = if frac.is_empty() {
            0
        } else {
            format!("{frac:0<9}")
                .parse()
                .map_err(|_| AmountError::Malformed)?
        };
        whole
            .checked_mul(NANOTON_PER_TON)
            .and_then(|n| n.checked_add(frac_nano))
            .map(Nanoton)
            .ok_or(AmountError::Overflow)
    }

    /// TON as a decimal string without trailing zeros: `1.5`, `0.000000001`, `12`.
    pub fn to_ton_string(self) -> String {
        let whole = self.0 / NANOTON_PER_TON;
        let frac = self.0 % NANOTON_PER_TON;
        if frac == 0 {
            whole.to_string()
        } else {
            let frac = format!("{frac:09}");
            format!("{whole}.{}", frac.trim_end_matches('0'))
        }
    }
}

impl fmt::Display for Nanoton {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} TON", self.to_ton_string())
    }
}

impl FromStr for Nanoton {
    type Err = AmountError;

    /// Parses an integer count of nanoton (`"1500000000"`), the wire form.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(AmountError::Malformed);
        }
        s.parse().map(Nanoton).map_err(|_| AmountError::Overflow)
    }
}

impl Serialize for Nanoton {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for Nanoton {
    /// Accepts a JSON integer (stored events) or the decimal string form (toncenter).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // A visitor, not an untagged enum: an untagged enum buffers the value and builds an
        // error for every shape it tries first, which made amounts the costliest part of
        // reading an event.
        struct Amount;
        impl serde::de::Visitor<'_> for Amount {
            type Value = Nanoton;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an amount in nanoton (integer) or TON (decimal string)")
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Nanoton, E> {
                Ok(Nanoton(n))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Nanoton, E> {
                u64::try_from(n)
                    .map(Nanoton)
                    .map_err(|_| E::custom("an amount cannot be negative"))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Nanoton, E> {
                s.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Amount)
    }
}

/// An amount of a jetton (USDT) in its smallest units (USDT: 10⁻⁶), integer like `Nanoton`.
/// Serialises as a JSON integer; reads an integer or a decimal string of units.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JettonAmount(pub u64);

impl JettonAmount {
    pub const ZERO: JettonAmount = JettonAmount(0);

    pub fn units(self) -> u64 {
        self.0
    }

    pub fn checked_add(self, other: JettonAmount) -> Option<JettonAmount> {
        self.0.checked_add(other.0).map(JettonAmount)
    }

    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// As a decimal string of whole tokens with `decimals` digits after the point, trailing
    /// zeros dropped (`1500000` with 6 decimals is `"1.5"`).
    pub fn to_decimal_string(self, decimals: u32) -> String {
        let scale = 10u64.pow(decimals);
        let (whole, fraction) = (self.0 / scale, self.0 % scale);
        if fraction == 0 {
            return whole.to_string();
        }
        let digits = format!("{fraction:0width$}", width = decimals as usize);
        format!("{whole}.{}", digits.trim_end_matches('0'))
    }

    /// A decimal string of whole tokens (`"1.5"`) with at most `decimals` digits after the
    /// point, exactly; `None` for anything else.
    pub fn parse_decimal(text: &str, decimals: u32) -> Option<JettonAmount> {
        let text = text.trim();
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !digits(whole) || !digits(fraction) {
            return None;
        }
        if fraction.len() > decimals as usize || (text.contains('.') && fraction.is_empty()) {
            return None;
        }
        let scale = 10u64.checked_pow(decimals)?;
        let padded = format!("{fraction:0<width$}", width = decimals as usize);
        let fraction: u64 = if padded.is_empty() {
            0
        } else {
            padded.parse().ok()?
        };
        whole
            .parse::<u64>()
            .ok()?
            .checked_mul(scale)?
            .checked_add(fraction)
            .map(JettonAmount)
    }
}

impl fmt::Display for JettonAmount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} units", self.0)
    }
}

impl Serialize for JettonAmount {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for JettonAmount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // The same shapes as a `Nanoton`: an integer, or a string of digits.
        Nanoton::deserialize(deserializer).map(|n| JettonAmount(n.as_u64()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ton_strings_round_trip_exactly() {
        for (s, n) in [
            ("1.5", 1_500_000_000),
            ("0.000000001", 1),
            ("12", 12_000_000_000),
            ("0", 0),
            ("0.761234567", 761_234_567),
        ] {
            assert_eq!(Nanoton::parse_ton(s).unwrap(), Nanoton(n));
            assert_eq!(Nanoton(n).to_ton_string(), s);
        }
        assert_eq!(Nanoton::parse_ton(".5").unwrap(), Nanoton(500_000_000));
    }

    #[test]
    fn malformed_ton_strings_are_rejected() {
        for s in [
            "",
            ".",
            "1.",
            "-1",
            "1.0000000001",
            "1e9",
            "abc",
            "1,5",
            "1.2.3",
        ] {
            assert_eq!(Nanoton::parse_ton(s), Err(AmountError::Malformed), "{s}");
        }
        assert_eq!(
            Nanoton::parse_ton("99999999999999999999"),
            Err(AmountError::Overflow)
        );
    }

    #[test]
    fn serde_writes_integers_and_reads_integers_or_strings() {
        let n: Nanoton = serde_json::from_str("\"2500000000\"").unwrap();
        assert_eq!(n, Nanoton(2_500_000_000));
        let n: Nanoton = serde_json::from_str("7").unwrap();
        assert_eq!(n, Nanoton(7));
        // Stored events hold integers: the typed field must write what a `u64` wrote.
        assert_eq!(serde_json::to_string(&n).unwrap(), "7");
        assert_eq!(
            serde_json::to_string(&Nanoton(u64::MAX)).unwrap(),
            u64::MAX.to_string()
        );
        assert!(serde_json::from_str::<Nanoton>("\"-1\"").is_err());
        assert!(serde_json::from_str::<Nanoton>("-1").is_err());
        assert!(serde_json::from_str::<Nanoton>("1.5").is_err());
    }

    #[test]
    fn sums_are_checked() {
        assert_eq!(
            Nanoton::checked_sum([Nanoton(1), Nanoton(2), Nanoton(3)]),
            Some(Nanoton(6))
        );
        assert_eq!(Nanoton::checked_sum([]), Some(Nanoton::ZERO));
        assert_eq!(Nanoton::checked_sum([Nanoton(u64::MAX), Nanoton(1)]), None);
        assert_eq!(Nanoton(u64::MAX).checked_add(Nanoton(1)), None);
        assert_eq!(Nanoton(1).checked_sub(Nanoton(2)), None);
        assert_eq!(Nanoton(1).saturating_sub(Nanoton(2)), Nanoton::ZERO);
        assert_eq!(
            Nanoton(u64::MAX).saturating_add(Nanoton(1)),
            Nanoton(u64::MAX)
        );
    }
}
