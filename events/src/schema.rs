//! The closed set of event types, their stable stored names and schema versions, and the
//! upcasters that turn an older stored shape into the current one.
//!
//! A stored event is never rewritten. When the meaning of an event changes, it gets a new
//! type; when only its shape changes, its schema version goes up and an upcaster below turns
//! the old shape into the new one on read, so every reader sees the current shape only.

use rust_decimal::Decimal;
use serde_json::Value;
use uuid::Uuid;

use crate::envelope::{EventMetadata, NewEvent, RecordedEvent};
use crate::idempotency::*;
use crate::order::*;
use crate::stream::StreamName;
use crate::wallet::*;

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown event type `{0}`")]
    UnknownType(String),
    #[error(
        "event type `{event_type}` has schema version {found}; this build reads up to {current}"
    )]
    NewerSchema {
        event_type: String,
        found: u16,
        current: u16,
    },
    #[error("no upcaster from schema version {version} of `{event_type}`")]
    NoUpcaster { event_type: String, version: u16 },
    #[error("event `{event_type}` does not have the expected shape: {source}")]
    Shape {
        event_type: String,
        #[source]
        source: serde_json::Error,
    },
}

macro_rules! event_set {
    ($($name:ident = $version:literal),+ $(,)?) => {
        /// Every event the system writes.
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub enum Event {
            $($name($name)),+
        }

        impl Event {
            /// Stored name and current schema version of every event type.
            pub const TYPES: &'static [(&'static str, u16)] = &[$((stringify!($name), $version)),+];

            /// The stable stored name (never rename: add an alias in `decode` instead).
            pub fn event_type(&self) -> &'static str {
                match self {
                    $(Event::$name(_) => stringify!($name)),+
                }
            }

            pub fn schema_version(&self) -> u16 {
                match self {
                    $(Event::$name(_) => $version),+
                }
            }

            pub fn data(&self) -> Value {
                match self {
                    // Plain structs of strings and integers: serializing cannot fail.
                    $(Event::$name(e) => serde_json::to_value(e).expect("event serializes")),+
                }
            }

            fn current_version(event_type: &str) -> Option<u16> {
                match event_type {
                    $(stringify!($name) => Some($version),)+
                    _ => None,
                }
            }

            fn decode_current(event_type: &str, data: Value) -> Result<Event, DecodeError> {
                let shape = |source| DecodeError::Shape { event_type: event_type.to_string(), source };
                match event_type {
                    $(stringify!($name) => serde_json::from_value(data).map(Event::$name).map_err(shape),)+
                    other => Err(DecodeError::UnknownType(other.to_string())),
                }
            }

            /// `decode_current` from the stored text: no `Value` tree at all.
            fn decode_current_str(event_type: &str, text: &str) -> Result<Event, DecodeError> {
                let shape = |source| DecodeError::Shape { event_type: event_type.to_string(), source };
                match event_type {
                    $(stringify!($name) => serde_json::from_str::<$name>(text).map(Event::$name).map_err(shape),)+
                    other => Err(DecodeError::UnknownType(other.to_string())),
                }
            }

            /// `decode_current` from a borrowed value: no copy of the tree.
            fn decode_current_ref(event_type: &str, data: &Value) -> Result<Event, DecodeError> {
                use serde::Deserialize;
                let shape = |source| DecodeError::Shape { event_type: event_type.to_string(), source };
                match event_type {
                    $(stringify!($name) => $name::deserialize(data).map(Event::$name).map_err(shape),)+
                    other => Err(DecodeError::UnknownType(other.to_string())),
                }
            }
        }

        $(impl From<$name> for Event {
            fn from(e: $name) -> Event {
                Event::$name(e)
            }
        })+
    };
}

event_set! {
    OrderCreated = 3,
    OrderPaid = 1,
    OrderQueued = 1,
    OrderProcessingStarted = 1,
    PaymentSubmitted = 4,
    OrderFulfilled = 2,
    OrderDeliveryConfirmed = 1,
    OrderDeliveryUnconfirmed = 1,
    OrderFailed = 2,
    OrderTimedOut = 1,
    OrderPaymentAbandoned = 1,
    OrderExpired = 1,
    OrderCancelled = 1,
    OrderWebhookSet = 1,
    CheckoutIssued = 1,
    CommissionAccrued = 1,
    CommissionCollected = 1,
    CommissionCollectionFailed = 1,
    DebtLimitReached = 1,
    DebtSettled = 1,
    IdempotencyKeyClaimed = 1,
    IdempotentAnswerRecorded = 1,
    IdempotencyKeyReleased = 1,
}

impl Event {
    /// The stream this event belongs to.
    pub fn stream(&self) -> StreamName {
        let wallet = |raw: &str| StreamName::Wallet(raw.to_string());
        match self {
            Event::OrderCreated(e) => StreamName::Order(e.order_id),
            Event::OrderPaid(e) => StreamName::Order(e.order_id),
            Event::OrderQueued(e) => StreamName::Order(e.order_id),
            Event::OrderProcessingStarted(e) => StreamName::Order(e.order_id),
            Event::PaymentSubmitted(e) => StreamName::Order(e.order_id),
            Event::OrderFulfilled(e) => StreamName::Order(e.order_id),
            Event::OrderDeliveryConfirmed(e) => StreamName::Order(e.order_id),
            Event::OrderDeliveryUnconfirmed(e) => StreamName::Order(e.order_id),
            Event::OrderFailed(e) => StreamName::Order(e.order_id),
            Event::OrderTimedOut(e) => StreamName::Order(e.order_id),
            Event::OrderPaymentAbandoned(e) => StreamName::Order(e.order_id),
            Event::OrderExpired(e) => StreamName::Order(e.order_id),
            Event::OrderCancelled(e) => StreamName::Order(e.order_id),
            Event::OrderWebhookSet(e) => StreamName::Order(e.order_id),
            Event::CheckoutIssued(e) => StreamName::Order(e.order_id),
            Event::CommissionAccrued(e) => wallet(&e.wallet_address),
            Event::CommissionCollected(e) => wallet(&e.wallet_address),
            Event::CommissionCollectionFailed(e) => wallet(&e.wallet_address),
            Event::DebtLimitReached(e) => wallet(&e.wallet_address),
            Event::DebtSettled(e) => wallet(&e.wallet_address),
            Event::IdempotencyKeyClaimed(e) => StreamName::Idempotency(e.key_id.clone()),
            Event::IdempotentAnswerRecorded(e) => StreamName::Idempotency(e.key_id.clone()),
            Event::IdempotencyKeyReleased(e) => StreamName::Idempotency(e.key_id.clone()),
        }
    }

    /// Wraps the event for the store with a fresh, time-ordered id.
    pub fn to_new_event(&self, metadata: EventMetadata) -> NewEvent {
        NewEvent {
            event_id: Uuid::now_v7(),
            event_type: self.event_type().to_string(),
            schema_version: self.schema_version(),
            data: self.data(),
            metadata,
        }
    }

    /// Reads a stored event of any schema version this build knows, upcasting old shapes.
    pub fn decode(
        event_type: &str,
        schema_version: u16,
        data: Value,
    ) -> Result<Event, DecodeError> {
        let current = Event::current_version(event_type)
            .ok_or_else(|| DecodeError::UnknownType(event_type.to_string()))?;
        if schema_version > current {
            return Err(DecodeError::NewerSchema {
                event_type: event_type.to_string(),
                found: schema_version,
                current,
            });
        }
        let mut data = data;
        let mut version = schema_version;
        while version < current {
            data = upcast(event_type, version, data)?;
            version += 1;
        }
        Event::decode_current(event_type, data)
    }

    /// `decode`, from the stored JSON text: an event of the current shape is read straight
    /// into its type; an old one goes through `decode` and its upcasters.
    pub fn decode_str(
        event_type: &str,
        schema_version: u16,
        text: &str,
    ) -> Result<Event, DecodeError> {
        if Event::current_version(event_type) == Some(schema_version) {
            return Event::decode_current_str(event_type, text);
        }
        let data: Value = serde_json::from_str(text).map_err(|source| DecodeError::Shape {
            event_type: event_type.to_string(),
            source,
        })?;
        Event::decode(event_type, schema_version, data)
    }

    pub fn from_recorded(recorded: &RecordedEvent) -> Result<Event, DecodeError> {
        // The current shape (nearly every stored event) is read in place; only an old shape
        // is copied, to be upcast.
        if Event::current_version(&recorded.event_type) == Some(recorded.schema_version) {
            return Event::decode_current_ref(&recorded.event_type, &recorded.data);
        }
        Event::decode(
            &recorded.event_type,
            recorded.schema_version,
            recorded.data.clone(),
        )
    }
}

/// Turns schema version `from` of `event_type` into version `from + 1`.
fn upcast(event_type: &str, from: u16, data: Value) -> Result<Value, DecodeError> {
    match (event_type, from) {
        ("OrderCreated", 1) => order_created_v1_to_v2(data),
        ("PaymentSubmitted", 1) => payment_submitted_v1_to_v2(data),
        ("PaymentSubmitted", 2) => payment_submitted_v2_to_v3(data),
        ("PaymentSubmitted", 3) => with_fields("PaymentSubmitted", data, [("usdt", Value::Null)]),
        ("OrderCreated", 2) => with_fields(
            "OrderCreated",
            data,
            [
                ("payment_method", "ton".into()),
                ("price_usdt", Value::Null),
            ],
        ),
        ("OrderFulfilled", 1) => with_fields("OrderFulfilled", data, [("cost_usdt", Value::Null)]),
        ("OrderFailed", 1) => order_failed_v1_to_v2(data),
        _ => Err(DecodeError::NoUpcaster {
            event_type: event_type.to_string(),
            version: from,
        }),
    }
}

/// Version 1 of OrderCreated (the first prototype's log) held TON amounts as decimal strings
/// (`price_ton`, `commission_ton`) and no total. Version 2 holds integer nanoton and the
/// total. The conversion is exact: a v1 amount had at most 9 fraction digits.
fn order_created_v1_to_v2(mut data: Value) -> Result<Value, DecodeError> {
    let shape = |msg: &str| DecodeError::Shape {
        event_type: "OrderCreated".into(),
        source: serde::de::Error::custom(msg),
    };
    let obj = data
        .as_object_mut()
        .ok_or_else(|| shape("v1 OrderCreated is not an object"))?;
    let mut nano = |field: &str| -> Result<u64, DecodeError> {
        let text = obj
            .remove(field)
            .and_then(|v| v.as_str().map(str::to_string))
            .ok_or_else(|| shape(&format!("v1 OrderCreated has no string `{field}`")))?;
        let ton: Decimal = text
            .parse()
            .map_err(|_| shape(&format!("v1 `{field}` is not a decimal")))?;
        let nanos = ton * Decimal::from(1_000_000_000u64);
        if nanos.fract() != Decimal::ZERO || nanos.is_sign_negative() {
            return Err(shape(&format!(
                "v1 `{field}` is not a whole number of nanoton"
            )));
        }
        u64::try_from(nanos).map_err(|_| shape(&format!("v1 `{field}` is out of range")))
    };
    let price = nano("price_ton")?;
    let commission = nano("commission_ton")?;
    obj.insert("price_nanoton".into(), price.into());
    obj.insert("commission_nanoton".into(), commission.into());
    let total = price
        .checked_add(commission)
        .ok_or_else(|| shape("v1 amounts overflow"))?;
    obj.insert("total_nanoton".into(), total.into());
    Ok(data)
}

/// Version 2 of PaymentSubmitted added what a restart needs to find the payment on chain
/// and to confirm its delivery (`wallet_last_lt`, `confirmation`). Version 1 events did not
/// record them: both are absent, which readers take as "unknown".
fn payment_submitted_v1_to_v2(data: Value) -> Result<Value, DecodeError> {
    with_fields(
        "PaymentSubmitted",
        data,
        [
            ("wallet_last_lt", Value::Null),
            ("confirmation", Value::Null),
        ],
    )
}

/// Version 3 of PaymentSubmitted tells a message the client's wallet signed (a checkout)
/// from one the gateway signed, and names a wallet id that is not the standard one. Before
/// it, the gateway signed every message, for standard wallets only.
fn payment_submitted_v2_to_v3(data: Value) -> Result<Value, DecodeError> {
    let mut data = with_fields("PaymentSubmitted", data, [("checkout", Value::Null)])?;
    if let Some(confirmation) = data.get_mut("confirmation").and_then(Value::as_object_mut) {
        confirmation.insert("wallet_id".into(), Value::Null);
    }
    Ok(data)
}

/// Version 2 of OrderFailed records the network fees of a message the wallet processed
/// without sending the payment. Version 1 did not: zero, which is what it implied.
fn order_failed_v1_to_v2(data: Value) -> Result<Value, DecodeError> {
    with_fields("OrderFailed", data, [("network_fee_nanoton", 0.into())])
}

/// A v1 event that lacked `fields`, each added with the value v1 implied.
fn with_fields<const N: usize>(
    event_type: &str,
    mut data: Value,
    fields: [(&str, Value); N],
) -> Result<Value, DecodeError> {
    let obj = data.as_object_mut().ok_or_else(|| DecodeError::Shape {
        event_type: event_type.into(),
        source: serde::de::Error::custom(format!("v1 {event_type} is not an object")),
    })?;
    for (name, value) in fields {
        obj.insert(name.into(), value);
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::ExpectedVersion;
    use crate::money::Nanoton;
    use chrono::{TimeZone, Utc};
    use serde_json::json;

    /// One instance of every event type, filled the way the actors fill them.
    fn samples() -> Vec<Event> {
        let t = Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap();
        let order_id = Uuid::now_v7();
        let request_id = Uuid::now_v7();
        let wallet = format!("0:{}", "ab".repeat(32));
        vec![
            OrderCreated {
                order_id,
                product: Product::Stars { amount: 500 },
                username: "alice".into(),
                mode: OrderMode::Kyc,
                cookie_fingerprint: Some("9f2c".repeat(16)),
                price_nanoton: Nanoton::new(1_234_567_890),
                commission_rate: Decimal::ZERO,
                commission_nanoton: Nanoton::new(0),
                total_nanoton: Nanoton::new(1_234_567_890),
                created_at: t,
                expires_at: t + chrono::Duration::minutes(10),
                payment_method: PaymentMethod::UsdtTon,
                price_usdt: Some(crate::money::JettonAmount(3_703_704)),
            }
            .into(),
            OrderPaid {
                order_id,
                request_id,
                wallet_address: wallet.clone(),
                wallet_friendly: "UQCrq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq9Zx".into(),
                wallet_version: "v4r2".into(),
                account_index: None,
                balance_nanoton: Nanoton::new(5_000_000_000),
                debt_nanoton: Nanoton::new(0),
                paid_at: t,
            }
            .into(),
            OrderQueued {
                order_id,
                request_id,
                queued_at: t,
                queue_deadline: t + chrono::Duration::minutes(5),
            }
            .into(),
            OrderProcessingStarted {
                order_id,
                request_id,
                session: "client".into(),
                started_at: t,
            }
            .into(),
            PaymentSubmitted {
                order_id,
                request_id,
                wallet_address: wallet.clone(),
                wallet_version: "v4r2".into(),
                seqno: 7,
                valid_until: 1_790_000_000,
                message_hash: "11".repeat(32),
                normalized_hash: "22".repeat(32),
                body_hash: "33".repeat(32),
                boc: "te6cckEBAQEAAgAAAEysuc0=".into(),
                messages: vec![SubmittedMessage {
                    destination: format!("0:{}", "cd".repeat(32)),
                    amount_nanoton: Nanoton::new(1_234_567_890),
                    body_hash: "44".repeat(32),
                    purpose: "purchase".into(),
                }],
                fragment_request_id: "abc123".into(),
                purchase_nanoton: Nanoton::new(1_234_567_890),
                collection_nanoton: Nanoton::new(0),
                submitted_at: t,
                wallet_last_lt: Some(41),
                confirmation: Some(Box::new(DeliveryConfirmation {
                    wallet_public_key: "66".repeat(32),
                    confirm_method: "confirmReq".into(),
                    confirm_params: [("id".to_string(), json!("abc123"))].into_iter().collect(),
                    session_role: "owner".into(),
                    session_id: "77".repeat(16),
                    wallet_id: None,
                })),
                checkout: Some(CheckoutSubmission {
                    issued_at: t,
                    broadcast_by_client: true,
                }),
                usdt: Some(UsdtTransfer {
                    jetton_wallet: format!("0:{}", "ef".repeat(32)),
                    amount: crate::money::JettonAmount(3_703_704),
                }),
            }
            .into(),
            OrderFulfilled {
                order_id,
                request_id,
                tx_hash: "55".repeat(32),
                tx_lt: 42,
                cost_nanoton: Nanoton::new(1_234_567_890),
                commission_nanoton: Nanoton::new(0),
                collected_nanoton: Nanoton::new(0),
                debt_after_nanoton: Nanoton::new(0),
                network_fee_nanoton: Nanoton::new(3_000_000),
                completed_at: t,
                cost_usdt: Some(crate::money::JettonAmount(3_703_704)),
            }
            .into(),
            OrderDeliveryConfirmed {
                order_id,
                request_id,
                confirmed_at: t,
            }
            .into(),
            OrderDeliveryUnconfirmed {
                order_id,
                request_id,
                reason: "Fragment did not confirm within 120 s".into(),
                at: t,
            }
            .into(),
            OrderFailed {
                order_id,
                request_id,
                error_code: "FRAGMENT_ERROR".into(),
                error: "Fragment refused the purchase".into(),
                funds_moved: false,
                network_fee_nanoton: Nanoton::new(0),
                failed_at: t,
            }
            .into(),
            OrderTimedOut {
                order_id,
                request_id,
                waited_seconds: 300,
                timed_out_at: t,
            }
            .into(),
            OrderPaymentAbandoned {
                order_id,
                request_id,
                error_code: "SERVICE_UNAVAILABLE".into(),
                error: "the service restarted before the payment was made; no funds moved".into(),
                abandoned_at: t,
            }
            .into(),
            OrderExpired {
                order_id,
                expired_at: t,
            }
            .into(),
            OrderCancelled {
                order_id,
                cancelled_at: t,
            }
            .into(),
            OrderWebhookSet {
                order_id,
                url: "https://shop.example/hooks/fragment".into(),
            }
            .into(),
            CheckoutIssued {
                order_id,
                wallet_address: wallet.clone(),
                wallet_friendly: "UQ".to_string() + &"A".repeat(46),
                wallet_version: "v5r1".into(),
                wallet_public_key: "66".repeat(32),
                wallet_id: 2_147_483_409,
                valid_until: 1_790_000_000,
                messages: vec![CheckoutMessage {
                    address: "UQ".to_string() + &"B".repeat(46),
                    destination: format!("0:{}", "cd".repeat(32)),
                    amount_nanoton: Nanoton::new(1_234_567_890),
                    payload: "te6cckEBAQEAAgAAAEysuc0=".into(),
                    body_hash: "44".repeat(32),
                    purpose: "purchase".into(),
                }],
                fragment_request_id: "abc123".into(),
                purchase_nanoton: Nanoton::new(1_234_567_890),
                collection_nanoton: Nanoton::new(0),
                wallet_last_lt: None,
                confirmation: DeliveryConfirmation {
                    wallet_public_key: "66".repeat(32),
                    confirm_method: "confirmReq".into(),
                    confirm_params: [("id".to_string(), json!("abc123"))].into_iter().collect(),
                    session_role: "client".into(),
                    session_id: "77".repeat(16),
                    wallet_id: Some(2_147_483_409),
                },
                issued_at: t,
            }
            .into(),
            CommissionAccrued {
                wallet_address: wallet.clone(),
                order_id,
                amount_nanoton: Nanoton::new(12_345_679),
                debt_after_nanoton: Nanoton::new(12_345_679),
                accrued_total_after_nanoton: Nanoton::new(12_345_679),
                at: t,
            }
            .into(),
            CommissionCollected {
                wallet_address: wallet.clone(),
                order_id,
                amount_nanoton: Nanoton::new(1_000_000_000),
                debt_after_nanoton: Nanoton::new(0),
                collected_total_after_nanoton: Nanoton::new(1_000_000_000),
                tx_hash: "55".repeat(32),
                at: t,
            }
            .into(),
            CommissionCollectionFailed {
                wallet_address: wallet.clone(),
                order_id,
                amount_nanoton: Nanoton::new(1_000_000_000),
                tx_hash: "55".repeat(32),
                at: t,
            }
            .into(),
            DebtLimitReached {
                wallet_address: wallet.clone(),
                debt_nanoton: Nanoton::new(2_100_000_000),
                limit_nanoton: Nanoton::new(2_000_000_000),
                at: t,
            }
            .into(),
            DebtSettled {
                wallet_address: wallet,
                amount_nanoton: Nanoton::new(2_100_000_000),
                debt_after_nanoton: Nanoton::new(0),
                reference: "ticket 17".into(),
                at: t,
            }
            .into(),
            IdempotencyKeyClaimed {
                key_id: "ab".repeat(32),
                idempotency_key: "order-1042".into(),
                scope: "wallet:0:".to_string() + &"11".repeat(32),
                operation: "stars.buy".into(),
                fingerprint: "cd".repeat(32),
                order_id: Some(order_id),
                claimed_at: t,
                lease_until: t,
                expires_at: t,
            }
            .into(),
            IdempotentAnswerRecorded {
                key_id: "ab".repeat(32),
                status: 200,
                body: "{\"success\":true}".into(),
                recorded_at: t,
            }
            .into(),
            IdempotencyKeyReleased {
                key_id: "ab".repeat(32),
                status: 503,
                error_code: "SERVICE_UNAVAILABLE".into(),
                released_at: t,
            }
            .into(),
        ]
    }

    #[test]
    fn every_type_round_trips_under_its_stored_name() {
        let samples = samples();
        let names: Vec<&str> = samples.iter().map(Event::event_type).collect();
        let all: Vec<&str> = Event::TYPES.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, all, "the samples must cover every event type");
        for event in samples {
            let new = event.to_new_event(EventMetadata::default());
            assert_eq!(new.schema_version, event.schema_version());
            let back = Event::decode(&new.event_type, new.schema_version, new.data).unwrap();
            assert_eq!(back, event);
        }
    }

    #[test]
    fn no_event_has_a_field_that_could_hold_a_secret() {
        // A field named after a secret is the way one would leak into the log; the seed and
        // cookie values themselves are searched for in the store file by the actor tests.
        const FORBIDDEN: [&str; 8] = [
            "seed", "mnemonic", "secret", "private", "cookie", "password", "token", "key",
        ];
        fn walk(value: &Value, path: &str, found: &mut Vec<String>) {
            match value {
                Value::Object(map) => {
                    for (k, v) in map {
                        let lower = k.to_ascii_lowercase();
                        // A keyed fingerprint is the one allowed trace of a cookie set, and
                        // a wallet's public key is public (it is on chain). An idempotency
                        // key names a request (the client sends it in the clear, and is told
                        // not to put secrets in it); its id is a keyed hash.
                        const ALLOWED: [&str; 4] = [
                            "cookie_fingerprint",
                            "wallet_public_key",
                            "idempotency_key",
                            "key_id",
                        ];
                        if !ALLOWED.contains(&lower.as_str())
                            && FORBIDDEN.iter().any(|f| lower.contains(f))
                        {
                            found.push(format!("{path}.{k}"));
                        }
                        walk(v, &format!("{path}.{k}"), found);
                    }
                }
                Value::Array(items) => items.iter().for_each(|v| walk(v, path, found)),
                _ => {}
            }
        }
        let mut found = Vec::new();
        for event in samples() {
            walk(&event.data(), event.event_type(), &mut found);
        }
        assert!(
            found.is_empty(),
            "fields that could hold secrets: {found:?}"
        );
    }

    #[test]
    fn an_order_created_of_schema_1_reads_as_the_current_shape() {
        let id = Uuid::now_v7();
        let v1 = json!({
            "order_id": id,
            "product": {"type": "premium", "months": 6},
            "username": "bob",
            "mode": "no_kyc",
            "cookie_fingerprint": null,
            "price_ton": "12.5",
            "commission_rate": "0.01",
            "commission_ton": "0.125",
            "created_at": "2026-01-02T03:04:05Z",
            "expires_at": "2026-01-02T03:14:05Z",
        });
        let Event::OrderCreated(e) = Event::decode("OrderCreated", 1, v1).unwrap() else {
            panic!("wrong type");
        };
        assert_eq!(e.order_id, id);
        assert_eq!(e.product, Product::Premium { months: 6 });
        assert_eq!(e.price_nanoton, Nanoton::new(12_500_000_000));
        assert_eq!(e.commission_nanoton, Nanoton::new(125_000_000));
        assert_eq!(e.total_nanoton, Nanoton::new(12_625_000_000));
        assert_eq!(e.commission_rate, "0.01".parse::<Decimal>().unwrap());
    }

    #[test]
    fn a_payment_submitted_of_schema_1_reads_with_nothing_known_of_its_confirmation() {
        let Some(Event::PaymentSubmitted(v2)) = samples()
            .into_iter()
            .find(|e| e.event_type() == "PaymentSubmitted")
        else {
            panic!("no sample");
        };
        let mut v1 = serde_json::to_value(&v2).unwrap();
        let obj = v1.as_object_mut().unwrap();
        obj.remove("wallet_last_lt");
        obj.remove("confirmation");
        let Event::PaymentSubmitted(read) = Event::decode("PaymentSubmitted", 1, v1).unwrap()
        else {
            panic!("wrong type");
        };
        assert_eq!(read.wallet_last_lt, None);
        assert_eq!(read.confirmation, None);
        assert_eq!(read.message_hash, v2.message_hash);
    }

    #[test]
    fn a_payment_submitted_of_schema_2_reads_as_signed_by_the_gateway_for_a_standard_wallet() {
        let Some(Event::PaymentSubmitted(v3)) = samples()
            .into_iter()
            .find(|e| e.event_type() == "PaymentSubmitted")
        else {
            panic!("no sample");
        };
        let mut v2 = serde_json::to_value(&v3).unwrap();
        let obj = v2.as_object_mut().unwrap();
        obj.remove("checkout");
        obj["confirmation"]
            .as_object_mut()
            .unwrap()
            .remove("wallet_id");
        let Event::PaymentSubmitted(read) = Event::decode("PaymentSubmitted", 2, v2).unwrap()
        else {
            panic!("wrong type");
        };
        assert_eq!(read.checkout, None);
        assert_eq!(read.confirmation.unwrap().wallet_id, None);
    }

    #[test]
    fn orders_and_payments_before_usdt_read_as_paid_in_ton() {
        for (event_type, version, dropped, check) in [
            (
                "OrderCreated",
                2u16,
                vec!["payment_method", "price_usdt"],
                0,
            ),
            ("PaymentSubmitted", 3, vec!["usdt"], 1),
            ("OrderFulfilled", 1, vec!["cost_usdt"], 2),
        ] {
            let sample = samples()
                .into_iter()
                .find(|e| e.event_type() == event_type)
                .unwrap();
            let mut old = sample.data();
            for field in dropped {
                old.as_object_mut().unwrap().remove(field);
            }
            match (check, Event::decode(event_type, version, old).unwrap()) {
                (0, Event::OrderCreated(e)) => {
                    assert_eq!(e.payment_method, PaymentMethod::Ton);
                    assert_eq!(e.price_usdt, None);
                }
                (1, Event::PaymentSubmitted(e)) => assert_eq!(e.usdt, None),
                (2, Event::OrderFulfilled(e)) => assert_eq!(e.cost_usdt, None),
                (_, other) => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn an_order_failed_of_schema_1_reads_as_having_cost_no_fees() {
        let v1 = json!({
            "order_id": Uuid::now_v7(), "request_id": Uuid::now_v7(),
            "error_code": "FRAGMENT_ERROR", "error": "no", "funds_moved": false,
            "failed_at": "2026-01-02T03:04:05Z",
        });
        let Event::OrderFailed(e) = Event::decode("OrderFailed", 1, v1).unwrap() else {
            panic!("wrong type");
        };
        assert_eq!(e.network_fee_nanoton, Nanoton::ZERO);
    }

    #[test]
    fn a_v1_amount_finer_than_a_nanoton_is_refused_not_rounded() {
        let v1 = json!({
            "order_id": Uuid::now_v7(), "product": {"type": "stars", "amount": 50},
            "username": "bob", "mode": "no_kyc", "cookie_fingerprint": null,
            "price_ton": "0.0000000001", "commission_rate": "0", "commission_ton": "0",
            "created_at": "2026-01-02T03:04:05Z", "expires_at": "2026-01-02T03:14:05Z",
        });
        assert!(matches!(
            Event::decode("OrderCreated", 1, v1),
            Err(DecodeError::Shape { .. })
        ));
    }

    #[test]
    fn unknown_types_and_newer_schemas_are_errors() {
        assert!(matches!(
            Event::decode("OrderTeleported", 1, json!({})),
            Err(DecodeError::UnknownType(_))
        ));
        assert!(matches!(
            Event::decode("OrderPaid", 9, json!({})),
            Err(DecodeError::NewerSchema {
                found: 9,
                current: 1,
                ..
            })
        ));
    }

    #[test]
    fn events_name_their_stream() {
        for event in samples() {
            let stream = event.stream();
            assert_eq!(StreamName::parse(&stream.to_string()).unwrap(), stream);
        }
        assert!(ExpectedVersion::NoStream.matches(0));
        assert!(!ExpectedVersion::Exact(2).matches(3));
    }
}
