//! A gate for tests that must prove a thread is *not* blocked: the code under test waits at
//! the gate (on some thread of its own) until the test opens it, and the test learns that it
//! arrived. A test whose opening never runs fails on the gate's timeout instead of hanging.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

/// How long a caller waits at a closed gate before giving up and recording the failure: far
/// past anything a test needs on a loaded machine, short enough to fail a broken run.
pub(crate) const LIMIT: Duration = Duration::from_secs(15);

#[derive(Default)]
pub(crate) struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
    arrived: Notify,
    timed_out: AtomicBool,
}

impl Gate {
    pub(crate) fn new() -> Arc<Gate> {
        Arc::new(Gate::default())
    }

    /// The blocking side: announces itself, then waits until the test opens the gate.
    pub(crate) fn pass(&self) {
        self.arrived.notify_one();
        let open = self.open.lock().expect("gate poisoned");
        let (mut open, waited) = self
            .opened
            .wait_timeout_while(open, LIMIT, |open| !*open)
            .expect("gate poisoned");
        if waited.timed_out() {
            // Whoever should have opened it could not run. Later callers pass straight away so
            // the test ends and reports this, rather than waiting once per caller.
            self.timed_out.store(true, Ordering::SeqCst);
            *open = true;
        }
    }

    /// Waits until a caller reached the gate (one that arrived earlier counts).
    pub(crate) async fn arrival(&self) {
        self.arrived.notified().await
    }

    pub(crate) fn open(&self) {
        *self.open.lock().expect("gate poisoned") = true;
        self.opened.notify_all();
    }

    /// Whether a caller gave up waiting: the test's side never got to open the gate in time.
    pub(crate) fn timed_out(&self) -> bool {
        self.timed_out.load(Ordering::SeqCst)
    }
}
