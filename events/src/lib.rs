//! The event vocabulary of fragment-gateway: what can happen to an order and to a wallet, the
//! names streams and event types carry in the store, and the envelope around each stored
//! event. No I/O: the store, the actors and the projections all speak these types.
//!
//! Events are facts in past tense. They carry the derived values a reader needs (the cost,
//! the new debt) so that projections never redo business arithmetic, and they never carry a
//! secret: no seed, no key, no cookie value (a keyed fingerprint of a cookie set at most).

pub mod envelope;
pub mod idempotency;
pub mod money;
pub mod order;
pub mod schema;
pub mod stream;
pub mod wallet;

pub use envelope::{DecodedEvent, EventMetadata, ExpectedVersion, NewEvent, RecordedEvent};
pub use idempotency::*;
pub use money::{JettonAmount, Nanoton};
pub use order::*;
pub use schema::{DecodeError, Event};
pub use stream::{StreamName, StreamNameError};
pub use wallet::*;
