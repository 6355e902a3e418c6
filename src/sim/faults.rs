//! Fault injection shared by the simulators: added latency, random failures at a configured
//! rate, requests that hang past a client's timeout (at a rate), and "fail (or hang) the
//! next N requests" for deterministic tests. Everything can be switched at runtime.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use actix_web::HttpResponse;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultConfig {
    /// Added before every API request is handled.
    #[serde(with = "millis")]
    pub latency: Duration,
    /// Probability (0..=1) that an API request fails with a 503 before being handled.
    pub error_rate: f64,
}

/// Requests that hang past a client's timeout: what a client sees when a proxy or backend
/// stalls. Unlike `FaultConfig::latency` it hits only some requests, and for longer than a
/// client should wait. (A struct apart from `FaultConfig` so that code naming every field
/// of that one keeps compiling.)
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HangConfig {
    /// Probability (0..=1) that an API request hangs before anything else happens to it.
    pub rate: f64,
    /// How long a hanging request hangs. The default (60 s) outlasts any sane client
    /// timeout, so the client gives up first.
    #[serde(rename = "duration_ms", with = "millis")]
    pub duration: Duration,
    /// What a hanging request does once `duration` is over.
    pub then: AfterTimeout,
}

impl Default for HangConfig {
    fn default() -> Self {
        HangConfig {
            rate: 0.0,
            duration: Duration::from_secs(60),
            then: AfterTimeout::Close,
        }
    }
}

/// The end of a hang.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AfterTimeout {
    /// The connection is dropped without an answer and the request is never handled: it was
    /// lost in a stalled proxy.
    #[default]
    Close,
    /// The request is then handled and answered normally, late: a slow backend. The server
    /// does not notice a client that gave up meanwhile (actix keeps running the handler),
    /// so the request takes effect whether anyone still listens or not, as a real backend's
    /// would.
    Answer,
}

/// What the fault injection decided for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Handle it normally.
    None,
    /// Answer it with the simulator's 5xx.
    Fail,
    /// Hang for the duration, then close or answer.
    Hang(Duration, AfterTimeout),
}

impl Fault {
    /// Waits out a hang. `Some(response)` when the request ends there (the caller returns
    /// it: a dropped connection); `None` when it is to be handled now.
    pub async fn hang(self) -> Option<HttpResponse> {
        let Fault::Hang(duration, after) = self else {
            return None;
        };
        tokio::time::sleep(duration).await;
        match after {
            AfterTimeout::Answer => None,
            AfterTimeout::Close => Some(dropped_connection()),
        }
    }
}

/// A response that never arrives: its body fails before any byte is written, so actix drops
/// the connection and the client sees it closed before a status line (reqwest: "connection
/// closed before message completed"), as when a proxy gives up on a stalled request.
fn dropped_connection() -> HttpResponse {
    HttpResponse::Ok().streaming(futures_util::stream::once(async {
        Err::<actix_web::web::Bytes, _>(std::io::Error::other(
            "simulated fault: connection dropped",
        ))
    }))
}

pub(crate) mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// Runtime fault state of one simulator.
#[derive(Debug)]
pub struct Faults {
    config: Mutex<FaultConfig>,
    hangs: Mutex<HangConfig>,
    rng: Mutex<StdRng>,
    fail_next: AtomicU32,
    hang_next: AtomicU32,
    injected: AtomicU64,
    hung: AtomicU64,
}

impl Faults {
    /// `seed` makes random failures reproducible.
    pub fn new(config: FaultConfig, seed: u64) -> Self {
        Faults {
            config: Mutex::new(config),
            hangs: Mutex::new(HangConfig::default()),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            fail_next: AtomicU32::new(0),
            hang_next: AtomicU32::new(0),
            injected: AtomicU64::new(0),
            hung: AtomicU64::new(0),
        }
    }

    pub fn with_hangs(self, hangs: HangConfig) -> Self {
        self.set_hangs(hangs);
        self
    }

    pub fn set_config(&self, config: FaultConfig) {
        *self.config.lock().expect("faults poisoned") = config;
    }

    pub fn config(&self) -> FaultConfig {
        self.config.lock().expect("faults poisoned").clone()
    }

    pub fn set_hangs(&self, hangs: HangConfig) {
        *self.hangs.lock().expect("faults poisoned") = hangs;
    }

    pub fn hangs(&self) -> HangConfig {
        self.hangs.lock().expect("faults poisoned").clone()
    }

    /// The next `n` API requests fail (whatever the error rate).
    pub fn fail_next(&self, n: u32) {
        self.fail_next.store(n, Ordering::SeqCst);
    }

    /// The next `n` API requests hang for the configured `HangConfig::duration`, then end
    /// as its `then` says (whatever its rate). A pending `fail_next` goes first.
    pub fn hang_next(&self, n: u32) {
        self.hang_next.store(n, Ordering::SeqCst);
    }

    /// Counts a failure injected by a simulator's own switch (a per-path fault).
    pub fn count_injected(&self) {
        self.injected.fetch_add(1, Ordering::SeqCst);
    }

    /// How many failures were injected so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::SeqCst)
    }

    /// How many requests were made to hang so far (by this and by `count_hang`).
    pub fn hung(&self) -> u64 {
        self.hung.load(Ordering::SeqCst)
    }

    /// Counts a hang decided elsewhere (a simulator's own switch, such as the TON
    /// simulator's hanging sendBoc answers).
    pub(crate) fn count_hang(&self) {
        self.hung.fetch_add(1, Ordering::SeqCst);
    }

    /// Waits the configured latency, then decides what happens to this request. Forced
    /// faults come before random ones, failures before hangs. The random draws are made
    /// whether or not a forced fault applies, so that a seed replays the same sequence.
    pub async fn before_request(&self) -> Fault {
        let config = self.config();
        let hangs = self.hangs();
        if !config.latency.is_zero() {
            tokio::time::sleep(config.latency).await;
        }
        let forced_fail = take_one(&self.fail_next);
        let forced_hang = !forced_fail && take_one(&self.hang_next);
        let random_fail = self.chance(config.error_rate);
        let random_hang = self.chance(hangs.rate);
        if forced_fail || (!forced_hang && random_fail) {
            self.injected.fetch_add(1, Ordering::SeqCst);
            Fault::Fail
        } else if forced_hang || random_hang {
            self.count_hang();
            Fault::Hang(hangs.duration, hangs.then)
        } else {
            Fault::None
        }
    }

    /// A draw at `rate`, from the same reproducible generator.
    pub fn chance(&self, rate: f64) -> bool {
        rate > 0.0
            && self
                .rng
                .lock()
                .expect("faults poisoned")
                .gen_bool(rate.clamp(0.0, 1.0))
    }
}

/// Takes one from a "the next n" counter: whether there was one left.
pub(crate) fn take_one(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fail_next_counts_down_and_rate_zero_never_fails() {
        let f = Faults::new(FaultConfig::default(), 1);
        f.fail_next(2);
        assert_eq!(f.before_request().await, Fault::Fail);
        assert_eq!(f.before_request().await, Fault::Fail);
        for _ in 0..100 {
            assert_eq!(f.before_request().await, Fault::None);
        }
        assert_eq!(f.injected(), 2);
    }

    #[tokio::test]
    async fn error_rate_fails_about_that_often() {
        let f = Faults::new(
            FaultConfig {
                error_rate: 0.3,
                ..Default::default()
            },
            7,
        );
        let mut failed = 0;
        for _ in 0..1000 {
            failed += (f.before_request().await == Fault::Fail) as u32;
        }
        assert!((200..400).contains(&failed), "{failed}");
    }

    #[tokio::test]
    async fn hangs_are_forced_or_drawn_at_their_rate_and_counted() {
        let f = Faults::new(FaultConfig::default(), 3);
        // Default: nothing hangs, and a forced hang lasts the default 60 s, then closes.
        assert_eq!(f.before_request().await, Fault::None);
        f.hang_next(1);
        f.fail_next(1);
        // A pending failure goes first; the hang waits its turn.
        assert_eq!(f.before_request().await, Fault::Fail);
        assert_eq!(
            f.before_request().await,
            Fault::Hang(Duration::from_secs(60), AfterTimeout::Close)
        );
        assert_eq!(f.before_request().await, Fault::None);
        assert_eq!((f.injected(), f.hung()), (1, 1));

        f.set_hangs(HangConfig {
            rate: 0.25,
            duration: Duration::from_millis(5),
            then: AfterTimeout::Answer,
        });
        let mut hung = 0;
        for _ in 0..1000 {
            match f.before_request().await {
                Fault::Hang(d, AfterTimeout::Answer) if d == Duration::from_millis(5) => hung += 1,
                Fault::None => {}
                other => panic!("{other:?}"),
            }
        }
        assert!((150..350).contains(&hung), "{hung}");
        assert_eq!(f.hung(), 1 + hung);
    }

    #[tokio::test]
    async fn a_hang_waits_then_answers_or_drops_the_connection() {
        let started = std::time::Instant::now();
        let d = Duration::from_millis(30);
        assert!(Fault::Hang(d, AfterTimeout::Answer).hang().await.is_none());
        assert!(started.elapsed() >= d);
        assert!(Fault::Hang(d, AfterTimeout::Close).hang().await.is_some());
        assert!(started.elapsed() >= 2 * d);
        assert!(Fault::None.hang().await.is_none());
        assert!(Fault::Fail.hang().await.is_none());
    }

    #[test]
    fn the_hang_keys_parse_in_milliseconds() {
        let c: HangConfig =
            toml::from_str("rate = 0.1\nduration_ms = 2500\nthen = \"answer\"").unwrap();
        assert_eq!(c.rate, 0.1);
        assert_eq!(c.duration, Duration::from_millis(2500));
        assert_eq!(c.then, AfterTimeout::Answer);
        assert_eq!(
            toml::from_str::<HangConfig>("").unwrap(),
            HangConfig::default()
        );
    }
}
