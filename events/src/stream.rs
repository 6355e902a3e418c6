//! Stream names: `category-id`, as message-db spells them. An order's stream is
//! `order-<uuid>`; a wallet's is `wallet-<raw address>` (`0:<64 hex>`), the one form of an
//! address that every other form maps to; an idempotency key's is `idempotency-<64 hex>`
//! (a keyed hash of the key and its scope, see `idempotency`).

use std::fmt;

use uuid::Uuid;

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StreamName {
    Order(Uuid),
    /// Raw address `workchain:hex`, lowercase.
    Wallet(String),
    /// 64 lowercase hex digits.
    Idempotency(String),
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StreamNameError {
    #[error("stream name must be `order-<uuid>`, `wallet-<workchain>:<64 hex digits>` or `idempotency-<64 hex digits>`")]
    Unknown,
}

impl StreamName {
    pub const ORDER: &'static str = "order";
    pub const WALLET: &'static str = "wallet";
    pub const IDEMPOTENCY: &'static str = "idempotency";

    pub fn order(id: Uuid) -> StreamName {
        StreamName::Order(id)
    }

    /// `raw` must already be the raw form; anything else is refused rather than normalised
    /// here, so one wallet can never end up with two streams.
    pub fn wallet(raw: &str) -> Result<StreamName, StreamNameError> {
        let (wc, hash) = raw.split_once(':').ok_or(StreamNameError::Unknown)?;
        let wc_ok = wc.parse::<i32>().is_ok();
        if wc_ok && is_hex64(hash) {
            Ok(StreamName::Wallet(raw.to_string()))
        } else {
            Err(StreamNameError::Unknown)
        }
    }

    /// `id` must be 64 lowercase hex digits.
    pub fn idempotency(id: &str) -> Result<StreamName, StreamNameError> {
        if is_hex64(id) {
            Ok(StreamName::Idempotency(id.to_string()))
        } else {
            Err(StreamNameError::Unknown)
        }
    }

    pub fn parse(s: &str) -> Result<StreamName, StreamNameError> {
        let (category, id) = s.split_once('-').ok_or(StreamNameError::Unknown)?;
        match category {
            Self::ORDER => Uuid::parse_str(id)
                .map(StreamName::Order)
                .map_err(|_| StreamNameError::Unknown),
            Self::WALLET => StreamName::wallet(id),
            Self::IDEMPOTENCY => StreamName::idempotency(id),
            _ => Err(StreamNameError::Unknown),
        }
    }

    pub fn category(&self) -> &'static str {
        match self {
            StreamName::Order(_) => Self::ORDER,
            StreamName::Wallet(_) => Self::WALLET,
            StreamName::Idempotency(_) => Self::IDEMPOTENCY,
        }
    }
}

impl fmt::Display for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamName::Order(id) => write!(f, "order-{id}"),
            StreamName::Wallet(raw) => write!(f, "wallet-{raw}"),
            StreamName::Idempotency(id) => write!(f, "idempotency-{id}"),
        }
    }
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let id = Uuid::now_v7();
        let order = StreamName::order(id);
        assert_eq!(StreamName::parse(&order.to_string()).unwrap(), order);
        let raw = format!("0:{}", "ab".repeat(32));
        let wallet = StreamName::wallet(&raw).unwrap();
        assert_eq!(wallet.to_string(), format!("wallet-{raw}"));
        assert_eq!(StreamName::parse(&wallet.to_string()).unwrap(), wallet);
        assert_eq!(wallet.category(), "wallet");
        let key = StreamName::idempotency(&"0f".repeat(32)).unwrap();
        assert_eq!(StreamName::parse(&key.to_string()).unwrap(), key);
        assert_eq!(key.category(), "idempotency");
        assert!(StreamName::idempotency(&"0F".repeat(32)).is_err());
        assert!(StreamName::idempotency("0f").is_err());
    }

    #[test]
    fn friendly_or_uppercase_addresses_are_not_stream_ids() {
        assert!(StreamName::wallet("EQDrnUhzufQP2o10Kcp8ifltoNxarQvkx2KIHpHXN18D07_R").is_err());
        assert!(StreamName::wallet(&format!("0:{}", "AB".repeat(32))).is_err());
        assert!(StreamName::parse("order-nope").is_err());
        assert!(StreamName::parse("invoice-1").is_err());
    }
}
