//! Webhooks: what happens to an order, posted to the shop that asked (`webhook_url` on create
//! and buy) or to the operator's `webhooks.default_url`: `order.created`, `order.paid`,
//! `order.completed`, `order.failed`, `order.expired`, `order.delivery_unconfirmed`.
//!
//! Two workers. The deriver follows the event log from the outbox's own position and adds a
//! delivery per such event, in one transaction with the new position (`outbox`): a restart or
//! a crash loses none, and nothing derived is derived again. The sender claims due
//! deliveries, the oldest pending one of each order only (so an order's events arrive in
//! order), posts them signed, and records each attempt: a 2xx is delivered, anything else is
//! retried with exponential backoff and jitter until the retry window (24 h by default) ends.
//! At least once: a receiver deduplicates on the event id.

pub mod outbox;
pub mod target;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use events::{Event, RecordedEvent, StreamName};
use futures_util::StreamExt;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::Secret;
use crate::store::{read_stream_all, EventStore, StoreError};
use outbox::{Attempt, Delivery, NewDelivery, Outbox, Outcome};

#[derive(Clone, Debug)]
pub struct WebhookSettings {
    /// Where events of orders without a `webhook_url` go; none: nowhere.
    pub default_url: Option<String>,
    /// Each delivery carries one signature per secret (two while rotating).
    pub secrets: Vec<Arc<Secret>>,
    pub allow_private_targets: bool,
    /// How long a delivery is retried.
    pub retry_window: Duration,
    pub timeout: Duration,
    pub first_retry: Duration,
    pub max_retry: Duration,
    /// Deliveries in flight at once.
    pub concurrency: usize,
}

impl WebhookSettings {
    pub fn enabled(&self) -> bool {
        !self.secrets.is_empty()
    }
}

/// The webhook type of an order event, if it has one.
pub fn kind(event: &Event) -> Option<&'static str> {
    Some(match event {
        Event::OrderCreated(_) => "order.created",
        // Recorded with `OrderPaid`, right after it: the order as the client sees it once
        // its payment was accepted (queued, with its wallet and request).
        Event::OrderQueued(_) => "order.paid",
        Event::OrderFulfilled(_) => "order.completed",
        Event::OrderFailed(_) => "order.failed",
        Event::OrderExpired(_) => "order.expired",
        Event::OrderDeliveryUnconfirmed(_) => "order.delivery_unconfirmed",
        _ => return None,
    })
}

/// `Webhook-Signature`: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">`, one `v1` per
/// secret.
pub fn signature(secrets: &[Arc<Secret>], t: i64, body: &str) -> String {
    let mut header = format!("t={t}");
    for secret in secrets {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()).expect("any key length");
        mac.update(t.to_string().as_bytes());
        mac.update(b".");
        mac.update(body.as_bytes());
        header.push_str(",v1=");
        header.push_str(&hex::encode(mac.finalize().into_bytes()));
    }
    header
}

/// The wait before attempt `attempts + 1`: doubling from `first`, at most `max`, with jitter
/// (a random half to all of it) so that receivers coming back are not hit all at once.
pub fn backoff(settings: &WebhookSettings, attempts: u32) -> Duration {
    let doubled = settings
        .first_retry
        .saturating_mul(1u32 << attempts.saturating_sub(1).min(20));
    let capped = doubled.min(settings.max_retry);
    let jitter = 0.5 + rand::random::<f64>() / 2.0;
    capped.mul_f64(jitter)
}

/// The running workers.
pub struct Webhooks {
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Wakes the sender (new deliveries, a redelivery).
    pub wake: Arc<tokio::sync::Notify>,
    pub settings: WebhookSettings,
    pub outbox: Arc<dyn Outbox>,
}

impl Drop for Webhooks {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Webhooks {
    /// Stops both workers where they are: what was derived is in the outbox, and a delivery
    /// cut short is claimed for its lease only, then sent again (at least once).
    pub fn stop(&self) {
        for t in self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            t.abort();
        }
    }

    /// Starts the deriver and the sender on `store`'s database.
    pub fn start(
        store: Arc<dyn EventStore>,
        settings: WebhookSettings,
    ) -> Result<Webhooks, StoreError> {
        let outbox = store.read_models()?.outbox();
        let wake = Arc::new(tokio::sync::Notify::new());
        let deriver = Deriver {
            store: Arc::clone(&store),
            outbox: Arc::clone(&outbox),
            settings: settings.clone(),
            wake: Arc::clone(&wake),
        };
        let sender = Sender {
            outbox: Arc::clone(&outbox),
            client: target::client(settings.timeout, settings.allow_private_targets),
            settings: settings.clone(),
            wake: Arc::clone(&wake),
        };
        Ok(Webhooks {
            tasks: std::sync::Mutex::new(vec![
                tokio::spawn(deriver.run()),
                tokio::spawn(sender.run()),
            ]),
            wake,
            settings,
            outbox,
        })
    }
}

struct Deriver {
    store: Arc<dyn EventStore>,
    outbox: Arc<dyn Outbox>,
    settings: WebhookSettings,
    wake: Arc<tokio::sync::Notify>,
}

impl Deriver {
    const PAGE: usize = 256;

    async fn run(self) {
        let mut head = self.store.head_watch();
        loop {
            match self.step().await {
                Ok(true) => continue,
                Ok(false) => {
                    // Caught up: wait for the log to move (or look again in a while, should a
                    // notification be missed).
                    let _ = tokio::time::timeout(Duration::from_secs(1), head.changed()).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "webhooks: deriving deliveries failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Derives one page; whether there may be more.
    async fn step(&self) -> Result<bool, StoreError> {
        let from = self.outbox.position().await?;
        let page = self.store.read_all(from, Self::PAGE).await?;
        let Some(last) = page.last().map(|e| e.position) else {
            return Ok(false);
        };
        let mut rows = vec![];
        // An order's events tend to come together: its stream is read once per page.
        let mut streams = HashMap::new();
        for recorded in &page {
            if let Some(row) = self.delivery(recorded, &mut streams).await? {
                rows.push(row);
            }
        }
        let added = !rows.is_empty();
        match self.outbox.add(from, last, rows).await {
            // Another instance derived this page first: the same rows.
            Ok(()) | Err(StoreError::ReadModelsMoved { .. }) => {}
            Err(e) => return Err(e),
        }
        if added {
            self.wake.notify_one();
        }
        Ok(page.len() == Self::PAGE)
    }

    /// The delivery an event owes, if any: an order event with a webhook type, of an order
    /// with a URL (its own, or the default).
    async fn delivery(
        &self,
        recorded: &RecordedEvent,
        streams: &mut HashMap<String, Vec<RecordedEvent>>,
    ) -> Result<Option<NewDelivery>, StoreError> {
        if !self.settings.enabled() || !recorded.stream.starts_with("order-") {
            return Ok(None);
        }
        let event =
            Event::from_recorded(recorded).map_err(|e| StoreError::undecodable(recorded, e))?;
        let Some(kind) = kind(&event) else {
            return Ok(None);
        };
        let Ok(StreamName::Order(order_id)) = StreamName::parse(&recorded.stream) else {
            return Ok(None);
        };
        if !streams.contains_key(&recorded.stream) {
            let events = read_stream_all(self.store.as_ref(), &recorded.stream).await?;
            streams.insert(recorded.stream.clone(), events);
        }
        let stream = &streams[&recorded.stream];
        let own = stream.iter().find_map(|e| match Event::from_recorded(e) {
            Ok(Event::OrderWebhookSet(w)) => Some(w.url),
            _ => None,
        });
        let Some(url) = own.or_else(|| self.settings.default_url.clone()) else {
            return Ok(None);
        };
        // The order as it was right after the event.
        let mut models = projections::ReadModels::new();
        for e in stream.iter().filter(|e| e.version <= recorded.version) {
            models
                .apply_recorded(e)
                .map_err(|err| StoreError::undecodable(e, err))?;
        }
        let Some(order) = models.orders.order(&order_id) else {
            return Ok(None);
        };
        let body = serde_json::json!({
            "id": recorded.event_id,
            "type": kind,
            "created_at": recorded.recorded_at,
            "data": crate::api::views::order(order),
        });
        Ok(Some(NewDelivery {
            event_id: recorded.event_id,
            position: recorded.position,
            order_id,
            kind: kind.to_string(),
            url,
            body: body.to_string(),
            created_at: recorded.recorded_at,
        }))
    }
}

struct Sender {
    outbox: Arc<dyn Outbox>,
    client: reqwest::Client,
    settings: WebhookSettings,
    wake: Arc<tokio::sync::Notify>,
}

impl Sender {
    async fn run(self) {
        loop {
            let sent = match self.round().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "webhooks: sending failed; retrying");
                    0
                }
            };
            if sent == 0 {
                // Nothing due: until new deliveries come, or the next retry may be due.
                let _ =
                    tokio::time::timeout(Duration::from_millis(500), self.wake.notified()).await;
            }
        }
    }

    /// Sends what is due; how many.
    async fn round(&self) -> Result<usize, StoreError> {
        let lease = self.settings.timeout + Duration::from_secs(5);
        let limit = (self.settings.concurrency * 4) as u64;
        let due = self.outbox.claim(Utc::now(), lease, limit).await?;
        let n = due.len();
        let results: Vec<Result<(), StoreError>> = futures_util::stream::iter(due)
            .map(|d| self.deliver(d))
            .buffer_unordered(self.settings.concurrency.max(1))
            .collect()
            .await;
        for r in results {
            r?;
        }
        Ok(n)
    }

    async fn deliver(&self, d: Delivery) -> Result<(), StoreError> {
        let started = Instant::now();
        let at = Utc::now();
        let (status_code, error) = self.post(&d).await;
        let attempt = Attempt {
            event_id: d.event_id,
            attempt: d.attempts + 1,
            at,
            status_code,
            error: error.clone(),
            duration_ms: started.elapsed().as_millis() as u64,
        };
        let outcome = if error.is_none() {
            Outcome::Delivered
        } else {
            let next = at
                + chrono::Duration::from_std(backoff(&self.settings, attempt.attempt))
                    .unwrap_or(chrono::Duration::MAX);
            let window = chrono::Duration::from_std(self.settings.retry_window)
                .unwrap_or(chrono::Duration::MAX);
            if next >= d.created_at + window {
                Outcome::GaveUp
            } else {
                Outcome::RetryAt(next)
            }
        };
        if let Outcome::GaveUp = outcome {
            tracing::warn!(event_id = %d.event_id, kind = %d.kind, "webhooks: a delivery was given up after its retry window");
        }
        self.outbox.record(attempt, outcome).await
    }

    /// One POST; the receiver's status and, unless it was a 2xx, why it failed.
    async fn post(&self, d: &Delivery) -> (Option<u16>, Option<String>) {
        if let Err(e) = target::parse(&d.url, self.settings.allow_private_targets) {
            return (None, Some(format!("the URL {e}")));
        }
        let t = Utc::now().timestamp();
        let request = self
            .client
            .post(&d.url)
            .header("content-type", "application/json")
            .header("webhook-id", d.event_id.to_string())
            .header(
                "webhook-signature",
                signature(&self.settings.secrets, t, &d.body),
            )
            .body(d.body.clone());
        match request.send().await {
            Ok(r) if r.status().is_success() => (Some(r.status().as_u16()), None),
            Ok(r) => (
                Some(r.status().as_u16()),
                Some(format!("the receiver answered {}", r.status())),
            ),
            // Without the URL: it may hold a token of the shop's.
            Err(e) if e.is_timeout() => (
                None,
                Some(format!(
                    "no answer within {} s",
                    self.settings.timeout.as_secs_f64()
                )),
            ),
            Err(e) => (None, Some(error_chain(&e.without_url()))),
        }
    }
}

/// An error and its causes, on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> WebhookSettings {
        WebhookSettings {
            default_url: None,
            secrets: vec![Arc::new(Secret::from("new")), Arc::new(Secret::from("old"))],
            allow_private_targets: false,
            retry_window: Duration::from_secs(24 * 3600),
            timeout: Duration::from_secs(10),
            first_retry: Duration::from_secs(5),
            max_retry: Duration::from_secs(3600),
            concurrency: 8,
        }
    }

    #[test]
    fn a_delivery_is_signed_once_per_secret_over_the_time_and_the_body() {
        let s = settings();
        let header = signature(&s.secrets, 1_796_676_550, r#"{"id":"x"}"#);
        let parts: Vec<&str> = header.split(',').collect();
        assert_eq!(parts[0], "t=1796676550");
        assert_eq!(parts.len(), 3, "{header}");
        for (secret, part) in ["new", "old"].iter().zip(&parts[1..]) {
            let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
            mac.update(br#"1796676550.{"id":"x"}"#);
            assert_eq!(
                *part,
                format!("v1={}", hex::encode(mac.finalize().into_bytes()))
            );
        }
        assert_ne!(parts[1], parts[2]);
    }

    #[test]
    fn retries_double_up_to_the_cap_with_jitter() {
        let s = settings();
        for attempts in 1..=30 {
            let full = s
                .first_retry
                .saturating_mul(1 << (attempts - 1).min(20))
                .min(s.max_retry);
            let wait = backoff(&s, attempts);
            assert!(
                wait >= full / 2 && wait <= full,
                "{attempts}: {wait:?} of {full:?}"
            );
        }
        assert!(backoff(&s, 30) <= s.max_retry);
    }
}
