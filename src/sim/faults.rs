//! Fault injection shared by the simulators: added latency, random failures at a configured
//! rate, and "fail the next N requests" for deterministic tests.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

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
    rng: Mutex<StdRng>,
    fail_next: AtomicU32,
    injected: AtomicU64,
}

impl Faults {
    /// `seed` makes random failures reproducible.
    pub fn new(config: FaultConfig, seed: u64) -> Self {
        Faults {
            config: Mutex::new(config),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            fail_next: AtomicU32::new(0),
            injected: AtomicU64::new(0),
        }
    }

    pub fn set_config(&self, config: FaultConfig) {
        *self.config.lock().expect("faults poisoned") = config;
    }

    /// The next `n` API requests fail (whatever the error rate).
    pub fn fail_next(&self, n: u32) {
        self.fail_next.store(n, Ordering::SeqCst);
    }

    /// How many failures were injected so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::SeqCst)
    }

    /// Waits the configured latency, then decides whether this request fails.
    pub async fn before_request(&self) -> bool {
        let config = self.config.lock().expect("faults poisoned").clone();
        if !config.latency.is_zero() {
            tokio::time::sleep(config.latency).await;
        }
        let forced = self
            .fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        let random = config.error_rate > 0.0
            && self
                .rng
                .lock()
                .expect("faults poisoned")
                .gen_bool(config.error_rate.clamp(0.0, 1.0));
        if forced || random {
            self.injected.fetch_add(1, Ordering::SeqCst);
            true
        } else {
            false
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fail_next_counts_down_and_rate_zero_never_fails() {
        let f = Faults::new(FaultConfig::default(), 1);
        f.fail_next(2);
        assert!(f.before_request().await);
        assert!(f.before_request().await);
        for _ in 0..100 {
            assert!(!f.before_request().await);
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
            failed += f.before_request().await as u32;
        }
        assert!((200..400).contains(&failed), "{failed}");
    }
}
