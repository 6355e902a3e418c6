//! Idempotent requests. A client that retries a POST after a timeout sends the same
//! `Idempotency-Key`; the key is bound to the first request (its operation and a keyed
//! fingerprint of what it asks), and every retry gets that request's answer, byte for byte,
//! instead of a second order or a second payment.
//!
//! Everything lives in the event log, one stream per key (`idempotency-<key id>`), so a
//! restart, a crash between the payment and the answer, or another instance on the same
//! database answers the retry the same way. The store's expected-version check is the lock:
//! exactly one request claims a key at a time. A claim holds a lease; a request that outlives
//! it (its process died) is taken over by the next retry, which finds what the first one did:
//! a create or buy claims its order id up front and the retry creates that same order (or
//! finds it made), and paying an order again from the same wallet is the same payment.
//!
//! Key ids and fingerprints are HMAC-SHA256 under a service key kept in the database beside
//! the read models, never in the log: a copy of the log cannot be tested against a guessed
//! request, seed or cookie offline.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use events::{
    Event, EventMetadata, ExpectedVersion, IdempotencyKeyClaimed, IdempotencyKeyReleased,
    IdempotentAnswerRecorded, StreamName,
};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

use crate::readmodel::ServiceKey;
use crate::store::{read_stream_all, EventStore, StoreError};

/// The name of the service key that keys ids and fingerprints.
pub const SERVICE_KEY: &str = "idempotency";

/// Longest key taken (as the hosted services that take one allow).
pub const MAX_KEY_LEN: usize = 255;

#[derive(Clone, Debug)]
pub struct IdempotencySettings {
    /// How long a key stays bound to its request (at least 24 h, as clients expect).
    pub retention: Duration,
    /// How long a claimed request is taken to be running; a retry after that takes over.
    /// Longer than any request takes (a buy waits for Fragment and the chain's balance).
    pub lease: Duration,
    /// How long a retry waits for a request still running before answering
    /// IDEMPOTENCY_KEY_IN_PROGRESS.
    pub wait: Duration,
}

impl Default for IdempotencySettings {
    fn default() -> Self {
        IdempotencySettings {
            retention: Duration::from_secs(24 * 3600),
            lease: Duration::from_secs(60),
            wait: Duration::from_secs(10),
        }
    }
}

/// A client's key: 1 to 255 visible ASCII characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(raw: &str) -> Result<IdempotencyKey, String> {
        if raw.is_empty() || raw.len() > MAX_KEY_LEN {
            return Err(format!("must be 1 to {MAX_KEY_LEN} characters"));
        }
        if !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(
                "must be visible ASCII characters (letters, digits, punctuation), without spaces"
                    .into(),
            );
        }
        Ok(IdempotencyKey(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whose keys a key is among: two clients sending the same key never meet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The paying wallet, raw.
    Wallet(String),
    /// The client's address, before any wallet is known (creating an order). Kept only in
    /// the key id, never in the log.
    Client(IpAddr),
    /// The admin API.
    Admin,
}

impl Scope {
    /// What the log says of the scope.
    fn stored(&self) -> String {
        match self {
            Scope::Wallet(raw) => format!("wallet:{raw}"),
            Scope::Client(_) => "client".into(),
            Scope::Admin => "admin".into(),
        }
    }

    fn hashed(&self) -> String {
        match self {
            Scope::Client(ip) => format!("client:{ip}"),
            other => other.stored(),
        }
    }
}

/// A keyed hash of a request's meaning, fed field by field (name, then value, each ended by a
/// zero byte, so no two requests feed the same bytes).
pub struct Fingerprint(Hmac<Sha256>);

impl Fingerprint {
    pub fn field(&mut self, name: &str, value: impl AsRef<[u8]>) -> &mut Fingerprint {
        self.0.update(name.as_bytes());
        self.0.update(&[0]);
        self.0.update(value.as_ref());
        self.0.update(&[0]);
        self
    }

    fn finish(self) -> String {
        hex::encode(self.0.finalize().into_bytes())
    }
}

/// A request under a key, ready to claim it.
pub struct Keyed {
    pub key: IdempotencyKey,
    pub scope: Scope,
    /// `stars.buy`, `order.pay`, …
    pub operation: &'static str,
    pub fingerprint: Fingerprint,
    /// Whether the request creates an order (its id is chosen with the first claim).
    pub creates_order: bool,
}

/// The answer a request under a key gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

/// What to do with a request under a key.
#[derive(Debug)]
pub enum Begin {
    /// Run it: this request holds the key.
    Run(Claim),
    /// Answer with the first request's answer.
    Replay(Answer),
}

/// A key this request holds.
#[derive(Debug)]
pub struct Claim {
    key_id: String,
    /// The stream's version with the claim.
    version: u64,
    /// The order the request creates (a create or buy): the same for every run under the key.
    pub order_id: Option<Uuid>,
}

#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError {
    #[error("the Idempotency-Key {key:?} was used for another request ({operation}) in the last {retention_hours} h; send a new key for a new request")]
    Reused {
        key: String,
        operation: String,
        retention_hours: u64,
    },
    #[error("the first request with the Idempotency-Key {key:?} is still running; retry in {retry_after} s to get its answer")]
    InProgress { key: String, retry_after: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a key's stream says now.
#[derive(Default)]
struct KeyState {
    version: u64,
    claim: Option<IdempotencyKeyClaimed>,
    outcome: Outcome,
}

#[derive(Default)]
enum Outcome {
    #[default]
    Running,
    Answered(Answer),
    Released,
}

impl KeyState {
    fn evolve(&mut self, event: Event) {
        match event {
            Event::IdempotencyKeyClaimed(c) => {
                self.claim = Some(c);
                self.outcome = Outcome::Running;
            }
            Event::IdempotentAnswerRecorded(a) => {
                self.outcome = Outcome::Answered(Answer {
                    status: a.status,
                    body: a.body,
                })
            }
            Event::IdempotencyKeyReleased(_) => self.outcome = Outcome::Released,
            _ => {}
        }
    }
}

/// Whether an answer is kept for retries. A client error or a success is what the request
/// gives however often it is sent; an error of the service or a dependency (5xx), a rate
/// limit and a conflict are passing, so the key is released for a retry to run again.
pub fn is_final(status: u16) -> bool {
    (200..500).contains(&status) && status != 409 && status != 429
}

pub struct Idempotency {
    store: Arc<dyn EventStore>,
    key: ServiceKey,
    settings: IdempotencySettings,
}

impl Idempotency {
    /// Reads (or makes, on first use) the service key from the store's database.
    pub async fn open(
        store: Arc<dyn EventStore>,
        settings: IdempotencySettings,
    ) -> Result<Idempotency, StoreError> {
        let key = store.read_models()?.service_key(SERVICE_KEY).await?;
        Ok(Idempotency {
            store,
            key,
            settings,
        })
    }

    fn mac(&self, purpose: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.key.as_ref()).expect("any key length");
        mac.update(purpose.as_bytes());
        mac.update(&[0]);
        mac
    }

    /// A fingerprint of a request of `operation`, to be fed its fields.
    pub fn fingerprint(&self, operation: &str) -> Fingerprint {
        let mut f = Fingerprint(self.mac("fingerprint"));
        f.field("operation", operation);
        f
    }

    fn key_id(&self, scope: &Scope, key: &IdempotencyKey) -> String {
        let mut mac = self.mac("key");
        mac.update(scope.hashed().as_bytes());
        mac.update(&[0]);
        mac.update(key.as_str().as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    async fn load(&self, stream: &str) -> Result<KeyState, StoreError> {
        let mut state = KeyState::default();
        for recorded in read_stream_all(self.store.as_ref(), stream).await? {
            state.version = recorded.version;
            let event = Event::from_recorded(&recorded)
                .map_err(|e| StoreError::undecodable(&recorded, e))?;
            state.evolve(event);
        }
        Ok(state)
    }

    /// Claims the key for this request, or says what the first request under it answered,
    /// waiting (at most `settings.wait`) for one still running.
    pub async fn begin(&self, keyed: Keyed) -> Result<Begin, IdempotencyError> {
        let key_id = self.key_id(&keyed.scope, &keyed.key);
        let stream = stream_of(&key_id);
        let fingerprint = keyed.fingerprint.finish();
        let deadline = tokio::time::Instant::now() + self.settings.wait;
        let mut pause = Duration::from_millis(20);
        loop {
            let state = self.load(&stream).await?;
            let now = Utc::now();
            // The claim to append, keeping the order id and the retention of a claim whose
            // request is retried.
            let (order_id, expires_at) = match &state.claim {
                Some(c) if now < c.expires_at => {
                    if c.fingerprint != fingerprint || c.operation != keyed.operation {
                        return Err(IdempotencyError::Reused {
                            key: keyed.key.as_str().to_string(),
                            operation: c.operation.clone(),
                            retention_hours: self.settings.retention.as_secs() / 3600,
                        });
                    }
                    match &state.outcome {
                        Outcome::Answered(answer) => return Ok(Begin::Replay(answer.clone())),
                        Outcome::Running if now < c.lease_until => {
                            let left = tokio::time::Instant::now();
                            if left >= deadline {
                                let retry_after = (c.lease_until - now).num_seconds().max(1);
                                return Err(IdempotencyError::InProgress {
                                    key: keyed.key.as_str().to_string(),
                                    retry_after: retry_after as u64,
                                });
                            }
                            tokio::time::sleep(pause.min(deadline - left)).await;
                            pause = (pause * 2).min(Duration::from_millis(250));
                            continue;
                        }
                        // Released, or running past its lease (its process died): run again.
                        Outcome::Released | Outcome::Running => (c.order_id, c.expires_at),
                    }
                }
                // A new key, or one whose binding ran out.
                _ => (
                    keyed.creates_order.then(Uuid::now_v7),
                    now + chrono::Duration::from_std(self.settings.retention)
                        .unwrap_or(chrono::Duration::MAX),
                ),
            };
            let claimed = IdempotencyKeyClaimed {
                key_id: key_id.clone(),
                idempotency_key: keyed.key.as_str().to_string(),
                scope: keyed.scope.stored(),
                operation: keyed.operation.to_string(),
                fingerprint: fingerprint.clone(),
                order_id,
                claimed_at: now,
                lease_until: now + lease(&self.settings),
                expires_at,
            };
            match self.append(&stream, state.version, claimed.into()).await {
                Ok(version) => {
                    return Ok(Begin::Run(Claim {
                        key_id,
                        version,
                        order_id,
                    }))
                }
                // Another request claimed or answered meanwhile: look again.
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Appends `event` to the key's stream if it is at `version` (0: no stream yet).
    async fn append(&self, stream: &str, version: u64, event: Event) -> Result<u64, StoreError> {
        let expected = ExpectedVersion::Exact(version);
        let new = event.to_new_event(EventMetadata::default());
        Ok(self
            .store
            .append(stream, expected, vec![new])
            .await?
            .version)
    }

    /// Records how the request that holds `claim` ended: a final answer for retries to
    /// replay, or the key released for a retry to run again (`is_final`). If another request
    /// took the key over and answered first, that answer is returned: it is the one every
    /// retry gets, so this request should give it too.
    pub async fn finish(
        &self,
        claim: Claim,
        answer: &Answer,
        error_code: Option<&str>,
    ) -> Result<Option<Answer>, StoreError> {
        let now = Utc::now();
        let event: Event = if is_final(answer.status) {
            IdempotentAnswerRecorded {
                key_id: claim.key_id.clone(),
                status: answer.status,
                body: answer.body.clone(),
                recorded_at: now,
            }
            .into()
        } else {
            IdempotencyKeyReleased {
                key_id: claim.key_id.clone(),
                status: answer.status,
                error_code: error_code.unwrap_or_default().to_string(),
                released_at: now,
            }
            .into()
        };
        let stream = stream_of(&claim.key_id);
        match self.append(&stream, claim.version, event).await {
            Ok(_) => Ok(None),
            Err(StoreError::Conflict { .. }) => match self.load(&stream).await?.outcome {
                Outcome::Answered(first) => Ok(Some(first)),
                _ => Ok(None),
            },
            Err(e) => Err(e),
        }
    }
}

/// The stream of the key `key_id`.
fn stream_of(key_id: &str) -> String {
    StreamName::Idempotency(key_id.to_string()).to_string()
}

fn lease(settings: &IdempotencySettings) -> chrono::Duration {
    chrono::Duration::from_std(settings.lease).unwrap_or(chrono::Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;

    struct Env {
        _dir: tempfile::TempDir,
        store: Arc<dyn EventStore>,
        idem: Idempotency,
    }

    async fn env(settings: IdempotencySettings) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn EventStore> =
            Arc::new(SqliteStore::open(dir.path().join("events.sqlite3")).unwrap());
        let idem = Idempotency::open(Arc::clone(&store), settings)
            .await
            .unwrap();
        Env {
            _dir: dir,
            store,
            idem,
        }
    }

    fn quick() -> IdempotencySettings {
        IdempotencySettings {
            wait: Duration::from_millis(200),
            ..IdempotencySettings::default()
        }
    }

    fn keyed(idem: &Idempotency, key: &str, wallet: &str, amount: &str) -> Keyed {
        let mut fingerprint = idem.fingerprint("stars.buy");
        fingerprint.field("amount", amount);
        Keyed {
            key: IdempotencyKey::parse(key).unwrap(),
            scope: Scope::Wallet(wallet.into()),
            operation: "stars.buy",
            fingerprint,
            creates_order: true,
        }
    }

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status,
            body: body.into(),
        }
    }

    async fn run(idem: &Idempotency, k: Keyed) -> Claim {
        match idem.begin(k).await.unwrap() {
            Begin::Run(claim) => claim,
            other => panic!("expected to run, got {other:?}"),
        }
    }

    #[test]
    fn keys_are_visible_ascii_of_bounded_length() {
        assert!(IdempotencyKey::parse("order-42:retry_1").is_ok());
        assert!(IdempotencyKey::parse(&"k".repeat(MAX_KEY_LEN)).is_ok());
        assert!(IdempotencyKey::parse("").is_err());
        assert!(IdempotencyKey::parse(&"k".repeat(MAX_KEY_LEN + 1)).is_err());
        assert!(IdempotencyKey::parse("with space").is_err());
        assert!(IdempotencyKey::parse("ключ").is_err());
    }

    #[test]
    fn only_client_errors_and_successes_are_final() {
        for status in [200, 400, 404] {
            assert!(is_final(status), "{status}");
        }
        for status in [409, 429, 500, 502, 503] {
            assert!(!is_final(status), "{status}");
        }
    }

    #[tokio::test]
    async fn a_retry_gets_the_first_answer_and_another_request_under_the_key_is_refused() {
        let e = env(quick()).await;
        let claim = run(&e.idem, keyed(&e.idem, "k1", "0:aa", "50")).await;
        let order = claim.order_id.expect("a buy claims its order id");
        let first = answer(200, r#"{"data":{"n":1},"success":true}"#);
        assert_eq!(e.idem.finish(claim, &first, None).await.unwrap(), None);
        match e
            .idem
            .begin(keyed(&e.idem, "k1", "0:aa", "50"))
            .await
            .unwrap()
        {
            Begin::Replay(a) => assert_eq!(a, first),
            other => panic!("{other:?}"),
        }
        let reused = e
            .idem
            .begin(keyed(&e.idem, "k1", "0:aa", "100"))
            .await
            .unwrap_err();
        assert!(
            matches!(&reused, IdempotencyError::Reused { key, operation, .. } if key == "k1" && operation == "stars.buy"),
            "{reused:?}"
        );
        // The same key of another wallet is another key.
        let other = run(&e.idem, keyed(&e.idem, "k1", "0:bb", "100")).await;
        assert_ne!(other.order_id, Some(order));
    }

    #[tokio::test]
    async fn a_retry_waits_for_the_first_request_or_says_it_is_in_progress() {
        let e = env(quick()).await;
        let claim = run(&e.idem, keyed(&e.idem, "k", "0:aa", "50")).await;
        let busy = e
            .idem
            .begin(keyed(&e.idem, "k", "0:aa", "50"))
            .await
            .unwrap_err();
        match busy {
            IdempotencyError::InProgress { key, retry_after } => {
                assert_eq!(key, "k");
                assert!((1..=60).contains(&retry_after), "{retry_after}");
            }
            other => panic!("{other:?}"),
        }
        // A retry that arrives while the first is running gets its answer once it is given.
        let waiting = tokio::spawn({
            let idem = Idempotency {
                store: Arc::clone(&e.store),
                key: e.idem.key.clone(),
                settings: IdempotencySettings {
                    wait: Duration::from_secs(30),
                    ..quick()
                },
            };
            async move { idem.begin(keyed(&idem, "k", "0:aa", "50")).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let first = answer(200, "{}");
        e.idem.finish(claim, &first, None).await.unwrap();
        match waiting.await.unwrap().unwrap() {
            Begin::Replay(a) => assert_eq!(a, first),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_passing_failure_releases_the_key_and_the_retry_keeps_the_order() {
        let e = env(quick()).await;
        let claim = run(&e.idem, keyed(&e.idem, "k", "0:aa", "50")).await;
        let order = claim.order_id;
        e.idem
            .finish(claim, &answer(503, "{}"), Some("SERVICE_UNAVAILABLE"))
            .await
            .unwrap();
        let again = run(&e.idem, keyed(&e.idem, "k", "0:aa", "50")).await;
        assert_eq!(again.order_id, order, "the retry makes the same order");
    }

    #[tokio::test]
    async fn a_request_past_its_lease_is_taken_over_and_answers_what_the_retry_recorded() {
        let e = env(IdempotencySettings {
            lease: Duration::from_millis(300),
            ..quick()
        })
        .await;
        let stale = run(&e.idem, keyed(&e.idem, "k", "0:aa", "50")).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        let retry = run(&e.idem, keyed(&e.idem, "k", "0:aa", "50")).await;
        assert_eq!(retry.order_id, stale.order_id);
        let recorded = answer(200, r#"{"by":"retry"}"#);
        e.idem.finish(retry, &recorded, None).await.unwrap();
        // The first request, still alive after all, answers what the retry recorded.
        let late = e
            .idem
            .finish(stale, &answer(200, r#"{"by":"first"}"#), None)
            .await
            .unwrap();
        assert_eq!(late, Some(recorded));
    }

    #[tokio::test]
    async fn of_requests_racing_for_a_new_key_exactly_one_runs() {
        let e = env(quick()).await;
        let idem = Arc::new(e.idem);
        let mut tasks = vec![];
        for _ in 0..8 {
            let idem = Arc::clone(&idem);
            tasks.push(tokio::spawn(async move {
                idem.begin(keyed(&idem, "race", "0:aa", "50")).await
            }));
        }
        let mut runs = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(Begin::Run(_)) => runs += 1,
                Err(IdempotencyError::InProgress { .. }) => {}
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(runs, 1);
    }

    #[tokio::test]
    async fn key_ids_and_fingerprints_are_keyed_and_the_key_is_not_in_the_log() {
        let a = env(quick()).await;
        let b = env(quick()).await;
        let scope = Scope::Wallet("0:aa".into());
        let key = IdempotencyKey::parse("k").unwrap();
        assert_ne!(a.idem.key_id(&scope, &key), b.idem.key_id(&scope, &key));
        let fp = |idem: &Idempotency| {
            let mut f = idem.fingerprint("stars.buy");
            f.field("amount", "50");
            f.finish()
        };
        assert_ne!(fp(&a.idem), fp(&b.idem));
        // The client's address scopes a key but is not stored.
        let mut f = a.idem.fingerprint("stars.create");
        f.field("amount", "50");
        let claim = match a
            .idem
            .begin(Keyed {
                key: key.clone(),
                scope: Scope::Client("203.0.113.7".parse().unwrap()),
                operation: "stars.create",
                fingerprint: f,
                creates_order: true,
            })
            .await
            .unwrap()
        {
            Begin::Run(c) => c,
            other => panic!("{other:?}"),
        };
        a.idem
            .finish(claim, &answer(200, "{}"), None)
            .await
            .unwrap();
        let log = a.store.read_all(0, 100).await.unwrap();
        let text = serde_json::to_string(&log.iter().map(|e| &e.data).collect::<Vec<_>>()).unwrap();
        assert!(!text.contains("203.0.113.7"), "{text}");
        assert!(!text.contains(&hex::encode(a.idem.key.as_ref())), "{text}");
    }
}
