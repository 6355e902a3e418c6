//! fragment-gateway: a self-hostable service that buys Telegram Stars and gifts Telegram
//! Premium through Fragment, paid in TON from the client's own wallet.
//!
//! The binary (`src/main.rs`) only parses the command line; everything lives here so that
//! tests and benchmarks use the same code.

pub mod actors;
pub mod api;
pub mod app;
pub mod checkout;
pub mod cli;
pub mod config;
pub mod domain;
pub mod fragment;
pub mod idempotency;
pub mod ops;
pub mod readmodel;
pub mod sim;
pub mod store;
pub mod ton;
pub mod webhooks;

/// The text of a caught panic's payload (`panic!` with a literal or a formatted message).
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}
