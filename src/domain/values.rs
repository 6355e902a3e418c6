//! Values validated at the boundary: once one of these exists, it is valid.

use std::fmt;

use serde::{Serialize, Serializer};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("username must be @ followed by 1 to 32 letters, digits or underscores")]
    Username,
    #[error("amount must be a whole number of Stars between {min} and {max}")]
    StarsAmount { min: u32, max: u32 },
    #[error("months must be 3, 6 or 12")]
    PremiumMonths,
}

/// A Telegram username, stored without the `@`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Username(String);

impl Username {
    /// Accepts the API's form only: `@` and 1 to 32 letters, digits or underscores.
    pub fn parse(s: &str) -> Result<Username, ValueError> {
        let name = s.strip_prefix('@').ok_or(ValueError::Username)?;
        let valid = (1..=32).contains(&name.len())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if valid {
            Ok(Username(name.to_string()))
        } else {
            Err(ValueError::Username)
        }
    }

    /// Without the `@`, as Fragment's search takes it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Case-insensitive key: Telegram usernames are.
    pub fn key(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "@{}", self.0)
    }
}

impl fmt::Debug for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Username(@{})", self.0)
    }
}

impl Serialize for Username {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A number of Stars the service sells: 50 to 1 000 000 (API.md; Fragment itself allows up
/// to 10 000 000).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct StarsAmount(u32);

impl StarsAmount {
    pub const MIN: u32 = 50;
    pub const MAX: u32 = 1_000_000;

    pub fn new(n: u64) -> Result<StarsAmount, ValueError> {
        if (u64::from(Self::MIN)..=u64::from(Self::MAX)).contains(&n) {
            Ok(StarsAmount(n as u32))
        } else {
            Err(ValueError::StarsAmount {
                min: Self::MIN,
                max: Self::MAX,
            })
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

/// Premium gift duration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct PremiumMonths(u8);

impl PremiumMonths {
    pub const ALL: [PremiumMonths; 3] = [PremiumMonths(3), PremiumMonths(6), PremiumMonths(12)];

    pub fn new(n: u64) -> Result<PremiumMonths, ValueError> {
        match n {
            3 | 6 | 12 => Ok(PremiumMonths(n as u8)),
            _ => Err(ValueError::PremiumMonths),
        }
    }

    pub fn get(self) -> u8 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert_eq!(Username::parse("@alice").unwrap().as_str(), "alice");
        assert_eq!(Username::parse("@bob_99").unwrap().to_string(), "@bob_99");
        assert_eq!(Username::parse("bob"), Err(ValueError::Username));
        assert_eq!(Username::parse("@Alice").unwrap().key(), "alice");
        for bad in [
            "",
            "@",
            "@al ice",
            "@alice!",
            "@ёжик",
            &format!("@{}", "a".repeat(33)),
        ] {
            assert_eq!(Username::parse(bad), Err(ValueError::Username), "{bad}");
        }
        assert!(Username::parse(&format!("@{}", "a".repeat(32))).is_ok());
    }

    #[test]
    fn stars_and_months() {
        assert!(StarsAmount::new(49).is_err());
        assert_eq!(StarsAmount::new(50).unwrap().get(), 50);
        assert!(StarsAmount::new(1_000_000).is_ok());
        assert!(StarsAmount::new(1_000_001).is_err());
        assert_eq!(PremiumMonths::new(6).unwrap().get(), 6);
        assert!(PremiumMonths::new(4).is_err());
    }
}
