//! Webhooks: what happens to an order, posted to the shop that asked (`webhook_url`) or to
//! the operator's default URL, signed, retried, in order per order, at least once.

pub mod outbox;
