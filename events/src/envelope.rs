//! The envelope: what the store records around an event's data, and what a writer hands it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What the writer believes the stream's version is. Versions count events: a stream with
/// three events is at version 3, and its first event has version 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpectedVersion {
    /// No check (audit tooling and tests only; actors always name a version).
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream must be at exactly this version (0 = no stream).
    Exact(u64),
}

impl ExpectedVersion {
    /// Whether a stream currently at `actual` satisfies this expectation.
    pub fn matches(self, actual: u64) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual == 0,
            ExpectedVersion::Exact(v) => v == actual,
        }
    }
}

/// Why an event was written: the request that started the chain (correlation) and the event
/// or command that directly caused it (causation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMetadata {
    pub correlation_id: Option<Uuid>,
    pub causation_id: Option<Uuid>,
}

impl EventMetadata {
    /// Metadata of an event caused by `cause`, keeping its correlation.
    pub fn caused_by(cause: &RecordedEvent) -> EventMetadata {
        EventMetadata {
            correlation_id: cause.metadata.correlation_id.or(Some(cause.event_id)),
            causation_id: Some(cause.event_id),
        }
    }

    pub fn correlated(correlation_id: Uuid) -> EventMetadata {
        EventMetadata {
            correlation_id: Some(correlation_id),
            causation_id: None,
        }
    }
}

/// An event on its way into the store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    /// Unique per event; the store refuses a second event with the same id, so a retried
    /// append cannot store an event twice.
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: u16,
    pub data: serde_json::Value,
    pub metadata: EventMetadata,
}

impl NewEvent {
    /// The event as a store records it at `position`, version `version` of `stream`: for
    /// logs built without a store (tools' imports, tests, benchmarks).
    pub fn recorded(
        self,
        stream: impl Into<String>,
        position: u64,
        version: u64,
        recorded_at: DateTime<Utc>,
    ) -> RecordedEvent {
        RecordedEvent {
            position,
            stream: stream.into(),
            version,
            event_id: self.event_id,
            event_type: self.event_type,
            schema_version: self.schema_version,
            data: self.data,
            metadata: self.metadata,
            recorded_at,
        }
    }
}

/// An event as stored, with the place the store gave it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordedEvent {
    /// Global position: 1, 2, 3, … in commit order, with no gaps.
    pub position: u64,
    pub stream: String,
    /// Version within its stream: 1, 2, 3, …
    pub version: u64,
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: u16,
    pub data: serde_json::Value,
    pub metadata: EventMetadata,
    pub recorded_at: DateTime<Utc>,
}

/// An event read for a fold over the log: where it is and what it says, decoded straight
/// from the stored text (`EventStore::read_all_decoded`).
#[derive(Debug)]
pub struct DecodedEvent {
    pub position: u64,
    pub stream: String,
    pub event_type: String,
    pub recorded_at: DateTime<Utc>,
    /// The event, or why this build cannot read it.
    pub event: Result<crate::Event, crate::DecodeError>,
}

impl DecodedEvent {
    /// A stored event, decoded (and upcast).
    pub fn of(recorded: &RecordedEvent) -> DecodedEvent {
        DecodedEvent {
            position: recorded.position,
            stream: recorded.stream.clone(),
            event_type: recorded.event_type.clone(),
            recorded_at: recorded.recorded_at,
            event: crate::Event::from_recorded(recorded),
        }
    }
}
