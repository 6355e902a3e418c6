//! Events of an idempotency key's stream, `idempotency-<key id>`: which request a client's
//! `Idempotency-Key` is bound to, and the answer a retry gets. The key id is a keyed hash of
//! the key and its scope (the paying wallet, the client's address, the admin API), so one
//! client's key never meets another's, and the log never holds a value that could be tested
//! against a guessed secret offline: the fingerprint of the request is keyed the same way.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A request began under the key: the key is bound to it (its operation and fingerprint)
/// until `expires_at`. Appended on a new stream, or after the stream's last claim expired,
/// was released, or outlived its lease; the store's expected-version check lets exactly one
/// request (of any instance) claim the key at a time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyKeyClaimed {
    /// The stream's id: hex of the keyed hash of scope and key.
    pub key_id: String,
    /// The key as the client sent it (shown back in the errors about it).
    pub idempotency_key: String,
    /// `wallet:<raw address>`, `client` (the client's address, kept only in the key id) or
    /// `admin`.
    pub scope: String,
    /// What the request does: `stars.create`, `stars.buy`, `order.pay`, `admin.settle`, …
    pub operation: String,
    /// Hex of the keyed hash of the request's meaning (its validated fields).
    pub fingerprint: String,
    /// The order a create or buy under this key creates: chosen by the first claim and kept
    /// by every later one, so a retry after a crash finds the order instead of making another.
    pub order_id: Option<Uuid>,
    pub claimed_at: DateTime<Utc>,
    /// Until then the request is taken to be running; after it, a retry takes over (it finds
    /// what the first one did: the same order, the same payment).
    pub lease_until: DateTime<Utc>,
    /// After this the key is free for a new request.
    pub expires_at: DateTime<Utc>,
}

/// The request under the key was answered: a retry gets this answer, byte for byte.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotentAnswerRecorded {
    pub key_id: String,
    /// The HTTP status.
    pub status: u16,
    /// The body as sent (JSON text; answers never carry a secret).
    pub body: String,
    pub recorded_at: DateTime<Utc>,
}

/// The request under the key ended with an error a retry may not meet (the service or a
/// dependency was unavailable): the next request under the key runs again, on the same order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyKeyReleased {
    pub key_id: String,
    pub status: u16,
    pub error_code: String,
    pub released_at: DateTime<Utc>,
}
