//! Toncoin amounts: the typed integer nanoton of the event vocabulary (`events::money`),
//! re-exported where the TON layer has always had it.

pub use events::money::{AmountError, Nanoton, NANOTON_PER_TON};
