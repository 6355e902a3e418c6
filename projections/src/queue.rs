//! The processing queue as clients see it: FIFO positions, lengths, counters, the average
//! processing time of recent requests and the wait it predicts.

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, Utc};
use events::Event;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::EventContext;

/// Recent processing times kept for the average: enough to smooth one slow request, few
/// enough to follow a change in Fragment's or the chain's speed.
const RECENT: usize = 50;
/// The estimate per request before any request was processed.
const DEFAULT_PROCESSING_MS: u64 = 30_000;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueView {
    /// Waiting requests by the global position of their `OrderQueued`: FIFO order.
    queued: BTreeMap<u64, Uuid>,
    queued_at: BTreeMap<Uuid, u64>,
    /// Requests being processed, with their start time.
    processing: BTreeMap<Uuid, DateTime<Utc>>,
    pub completed: u64,
    pub failed: u64,
    pub timed_out: u64,
    pub abandoned: u64,
    recent_ms: VecDeque<u64>,
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
    /// 1-based FIFO position of a waiting request.
    pub fn position(&self, request_id: &Uuid) -> Option<u64> {
        let key = self.queued_at.get(request_id)?;
        Some(self.queued.range(..=key).count() as u64)
    }

    /// Waiting requests in FIFO order.
    pub fn waiting(&self) -> impl Iterator<Item = Uuid> + '_ {
        self.queued.values().copied()
    }

    pub fn average_processing_ms(&self) -> u64 {
        if self.recent_ms.is_empty() {
            return DEFAULT_PROCESSING_MS;
        }
        self.recent_ms.iter().sum::<u64>() / self.recent_ms.len() as u64
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
        QueueStats {
            queue_length: pending + processing,
            pending,
            processing,
            total_processed: self.completed + self.failed + self.timed_out + self.abandoned,
            completed: self.completed,
            failed: self.failed + self.abandoned,
            timed_out: self.timed_out,
            average_processing_ms: self.average_processing_ms(),
            estimated_wait_seconds: self.estimated_wait_seconds(pending + 1),
        }
    }

    pub fn apply(&mut self, ctx: EventContext, event: &Event) {
        match event {
            Event::OrderQueued(e) => {
                self.queued.insert(ctx.position, e.request_id);
                self.queued_at.insert(e.request_id, ctx.position);
            }
            Event::OrderProcessingStarted(e) => {
                self.dequeue(&e.request_id);
                self.processing.insert(e.request_id, e.started_at);
            }
            Event::OrderFulfilled(e) => {
                self.finish(&e.request_id, e.completed_at);
                self.completed += 1;
            }
            Event::OrderFailed(e) => {
                self.dequeue(&e.request_id);
                self.finish(&e.request_id, e.failed_at);
                self.failed += 1;
            }
            Event::OrderTimedOut(e) => {
                self.dequeue(&e.request_id);
                self.timed_out += 1;
            }
            Event::OrderPaymentAbandoned(e) => {
                self.dequeue(&e.request_id);
                self.processing.remove(&e.request_id);
                self.abandoned += 1;
            }
            _ => {}
        }
    }

    fn dequeue(&mut self, request_id: &Uuid) {
        if let Some(key) = self.queued_at.remove(request_id) {
            self.queued.remove(&key);
        }
    }

    fn finish(&mut self, request_id: &Uuid, at: DateTime<Utc>) {
        if let Some(started) = self.processing.remove(request_id) {
            let ms = (at - started).num_milliseconds().max(0) as u64;
            if self.recent_ms.len() == RECENT {
                self.recent_ms.pop_front();
            }
            self.recent_ms.push_back(ms);
        }
    }
}
