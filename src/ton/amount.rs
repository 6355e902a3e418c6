//! Toncoin amounts as integer nanoton.
//!
//! Money never goes through floating point: amounts are counted in nanoton (10⁻⁹ TON) in a
//! `u64`, which holds about 18.4 billion TON, far more than the total supply (~5.1 billion).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Nanoton per TON.
pub const NANOTON_PER_TON: u64 = 1_000_000_000;

/// An amount of Toncoin in nanoton.
///
/// Serialises as a decimal string of nanoton (`"1500000000"`), as toncenter and TON Connect
/// do; `to_ton_string` gives the human TON form (`"1.5"`).
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

    pub fn saturating_sub(self, other: Nanoton) -> Nanoton {
        Nanoton(self.0.saturating_sub(other.0))
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
        serializer.serialize_str(&self.0.to_string())
    }
}

impl<'de> Deserialize<'de> for Nanoton {
    /// Accepts the string form and, leniently, a JSON integer (some APIs send numbers).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Wire {
            Str(String),
            Int(u64),
        }
        match Wire::deserialize(deserializer)? {
            Wire::Str(s) => s.parse().map_err(serde::de::Error::custom),
            Wire::Int(n) => Ok(Nanoton(n)),
        }
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
    fn serde_uses_nanoton_strings() {
        let n: Nanoton = serde_json::from_str("\"2500000000\"").unwrap();
        assert_eq!(n, Nanoton(2_500_000_000));
        let n: Nanoton = serde_json::from_str("7").unwrap();
        assert_eq!(n, Nanoton(7));
        assert_eq!(serde_json::to_string(&n).unwrap(), "\"7\"");
        assert!(serde_json::from_str::<Nanoton>("\"-1\"").is_err());
    }
}
