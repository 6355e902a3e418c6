//! The fragment.com client: cookies, sessions and the calls of the Stars and Premium flows,
//! payment-link checks, and the mapping of every failure to the API's error codes.
//!
//! - `cookies`: parsing `fragment_cookies` (secrets, zeroized).
//! - `client`: sessions (API hash, one flow at a time) and the flow calls.
//! - `link`: the payment link and the checks before anything is signed.
//! - `proof`: TON Connect ton_proof (connecting a wallet to a session).
//! - `html`: reading pages (hash, challenge, prices).
//! - `error`: `FragmentError` and its API codes.

pub mod client;
pub mod cookies;
pub mod error;
pub mod html;
pub mod link;
pub mod proof;

pub use client::{
    Flow, FragmentClient, FragmentConfig, FragmentSession, Fulfilment, Invoice, Product, Purchase,
    Recipient, StateReply, UsdtInvoice,
};
pub use cookies::{CookieError, FragmentCookies};
pub use error::{FragmentError, SessionRole};
pub use html::Price;
pub use link::{
    CheckedPayment, CheckedUsdtPayment, LinkError, LinkExpectations, PaymentLink, UsdtExpectations,
};
