//! The processing queue as clients see it: FIFO positions, lengths, counters, the average
//! processing time of recent requests and the wait it predicts.
//!
//! Which requests wait and which run is an index over the request rows (a request waits
//! while its status is `queued` after its `OrderQueued`, and runs while it is `processing`),
//! so it is rebuilt from the rows at start and never stored twice. Only the counters and the
//! recent processing times, which no row holds, are stored (`QueueCounters`).

use std::collections::{BTreeMap, HashMap, VecDeque};

use chrono::{DateTime, Utc};
use events::Event;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::orders::{RequestStatus, RequestView};

/// Recent processing times kept for the average: enough to smooth one slow request, few
/// enough to follow a change in Fragment's or the chain's speed.
const RECENT: usize = 50;
/// The estimate per request before any request was processed.
const DEFAULT_PROCESSING_MS: u64 = 30_000;

/// What the queue remembers beyond its rows: how many requests ended each way, and how long
/// the last ones took.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueCounters {
    pub completed: u64,
    pub failed: u64,
    pub timed_out: u64,
    pub abandoned: u64,
    pub recent_ms: VecDeque<u64>,
}

/// The live queue: waiting and running requests (bounded by what is in flight, never by the
/// age of the log) and the counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueView {
    /// Waiting requests by the global position of their `OrderQueued`: FIFO order.
    queued: BTreeMap<u64, Uuid>,
    /// A waiting request's FIFO key and the time it must have started by.
    queued_at: HashMap<Uuid, (u64, DateTime<Utc>)>,
    /// Requests being processed, with their start time.
    processing: HashMap<Uuid, DateTime<Utc>>,
    pub counters: QueueCounters,
}

/// `GET /queue/status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStats {
    pub queue_length: u64,
    pub pending: u64,
    pub processing: u64,
    pub total_processed: u64,
    pub completed: u64,
    pub failed: u64,
    pub timed_out: u64,
    pub average_processing_ms: u64,
    pub estimated_wait_seconds: u64,
}

impl QueueView {
    /// The queue of `counters` with these requests in it (those waiting or running; others
    /// are ignored).
    pub fn from_rows<'a>(
        counters: QueueCounters,
        requests: impl IntoIterator<Item = &'a RequestView>,
    ) -> QueueView {
        let mut queue = QueueView {
            counters,
            ..QueueView::default()
        };
        for r in requests {
            queue.track(r);
        }
        queue
    }

    /// 1-based FIFO position of a waiting request.
    pub fn position(&self, request_id: &Uuid) -> Option<u64> {
        let (key, _) = self.queued_at.get(request_id)?;
        Some(self.queued.range(..=key).count() as u64)
    }

    /// Waiting requests in FIFO order, with the time each must have started by.
    pub fn waiting(&self) -> impl Iterator<Item = (Uuid, DateTime<Utc>)> + '_ {
        self.queued.values().map(|id| {
            (
                *id,
                self.queued_at.get(id).map(|(_, d)| *d).unwrap_or_default(),
            )
        })
    }

    pub fn len(&self) -> usize {
        self.queued.len() + self.processing.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn average_processing_ms(&self) -> u64 {
        let recent = &self.counters.recent_ms;
        if recent.is_empty() {
            return DEFAULT_PROCESSING_MS;
        }
        recent.iter().sum::<u64>() / recent.len() as u64
    }

    /// The wait before a request at `position` starts, assuming one request at a time (the
    /// conservative case: with several Fragment sessions the queue moves faster).
    pub fn estimated_wait_seconds(&self, position: u64) -> u64 {
        let ahead = position.saturating_sub(1) + self.processing.len() as u64;
        (ahead * self.average_processing_ms()).div_ceil(1000)
    }

    pub fn stats(&self) -> QueueStats {
        let pending = self.queued.len() as u64;
        let processing = self.processing.len() as u64;
        let c = &self.counters;
        QueueStats {
            queue_length: pending + processing,
            pending,
            processing,
            total_processed: c.completed + c.failed + c.timed_out + c.abandoned,
            completed: c.completed,
            failed: c.failed + c.abandoned,
            timed_out: c.timed_out,
            average_processing_ms: self.average_processing_ms(),
            estimated_wait_seconds: self.estimated_wait_seconds(pending + 1),
        }
    }

    /// Puts a request where its row says it is: waiting, running, or out of the queue.
    pub fn track(&mut self, r: &RequestView) {
        if let Some((key, _)) = self.queued_at.remove(&r.request_id) {
            self.queued.remove(&key);
        }
        self.processing.remove(&r.request_id);
        match (r.status, r.queued_position, r.started_at) {
            (RequestStatus::Queued, Some(key), _) => {
                self.queued.insert(key, r.request_id);
                self.queued_at.insert(r.request_id, (key, r.queue_deadline));
            }
            (RequestStatus::Processing, _, Some(started)) => {
                self.processing.insert(r.request_id, started);
            }
            _ => {}
        }
    }

    /// Counts a request's end. `started` is when it began processing, if it had.
    pub fn count(&mut self, event: &Event, started: Option<DateTime<Utc>>) {
        let c = &mut self.counters;
        let finished = |c: &mut QueueCounters, at: DateTime<Utc>| {
            if let Some(started) = started {
                let ms = (at - started).num_milliseconds().max(0) as u64;
                if c.recent_ms.len() == RECENT {
                    c.recent_ms.pop_front();
                }
                c.recent_ms.push_back(ms);
            }
        };
        match event {
            Event::OrderFulfilled(e) => {
                finished(c, e.completed_at);
                c.completed += 1;
            }
            Event::OrderFailed(e) => {
                finished(c, e.failed_at);
                c.failed += 1;
            }
            Event::OrderTimedOut(_) => c.timed_out += 1,
            Event::OrderPaymentAbandoned(_) => c.abandoned += 1,
            _ => {}
        }
    }
}
