//! Ports of quarantine review: the quarantine as a queryable set, the trusted uploads a
//! rescan walks, its checkpoints, and where an exported sample goes.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::intent::{IntentState, UploadIntent};
use crate::keys::UploadId;
use crate::ports::{ByteStream, IntentStoreError, Retry};
use crate::stages::QuarantineRecord;
use crate::verdict::ReasonCode;

/// Where a quarantined upload stands after review.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QuarantineStatus {
    /// In quarantine, bytes and record.
    Quarantined,
    /// A reviewer released it: its bytes were rescanned and promoted to `trusted/`; the
    /// record stays.
    Released,
    /// A reviewer purged it: its bytes are deleted; the record and a tombstone stay.
    Purged,
}

impl QuarantineStatus {
    pub const ALL: [QuarantineStatus; 3] = [Self::Quarantined, Self::Released, Self::Purged];

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Quarantined => "quarantined",
            Self::Released => "released",
            Self::Purged => "purged",
        }
    }
}

impl std::fmt::Display for QuarantineStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for QuarantineStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| format!("unknown status {s:?} (quarantined, released or purged)"))
    }
}

/// One quarantined upload: its record (where it is, why, what), and its review status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QuarantineItem {
    /// The key of the JSON record beside the object.
    pub record_key: String,
    pub record: QuarantineRecord,
    pub status: QuarantineStatus,
    /// When a review last changed the status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_at: Option<DateTime<Utc>>,
}

impl QuarantineItem {
    /// The quarantined object's key: the item's name.
    #[must_use]
    pub fn key(&self) -> &str {
        &self.record.quarantine_key
    }
}

/// Which quarantined uploads: every field given must match (text fields exactly; `reasons`
/// any of them); times are the quarantine time, `since` inclusive, `until` exclusive.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QuarantineFilter {
    pub tenant: Option<String>,
    pub purpose: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<ReasonCode>,
    pub signature: Option<String>,
    pub uploader: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub status: Option<QuarantineStatus>,
}

impl QuarantineFilter {
    /// Whether `item` is one this filter selects (for adapters that filter in memory, and
    /// as the reference for those that do not).
    #[must_use]
    pub fn matches(&self, item: &QuarantineItem) -> bool {
        let record = &item.record;
        let same = |want: &Option<String>, have: &Option<String>| {
            want.as_ref().is_none_or(|want| have.as_ref() == Some(want))
        };
        same(&self.tenant, &record.tenant)
            && same(&self.purpose, &record.purpose)
            && (self.reasons.is_empty() || self.reasons.contains(&record.reason))
            && same(&self.signature, &record.signature)
            && same(&self.uploader, &record.uploader)
            && self
                .since
                .is_none_or(|since| record.quarantined_at >= since)
            && self.until.is_none_or(|until| record.quarantined_at < until)
            && self.status.is_none_or(|status| item.status == status)
    }
}

/// A page of a listing: at most `limit` items after the cursor a previous page returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageRequest {
    pub limit: usize,
    /// `next` of the previous page; `None` for the first page.
    pub after: Option<String>,
}

impl PageRequest {
    #[must_use]
    pub fn first(limit: usize) -> Self {
        Self { limit, after: None }
    }
}

/// Items newest first (by quarantine time, then key), and the cursor of the next page when
/// there may be one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantinePage {
    pub items: Vec<QuarantineItem>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// How many items share one value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Count {
    /// The value (a reason code, a signature name, a tenant; `-` for none).
    pub value: String,
    pub count: u64,
}

/// Counts of the items a filter selects, most frequent first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QuarantineCounts {
    pub total: u64,
    pub by_reason: Vec<Count>,
    pub by_signature: Vec<Count>,
    pub by_tenant: Vec<Count>,
    pub by_status: Vec<Count>,
}

/// A failure of the quarantine index.
#[derive(Debug, thiserror::Error)]
#[error("quarantine index failed: {message}")]
pub struct QuarantineError {
    pub message: String,
    pub retry: Retry,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl QuarantineError {
    pub fn new(message: impl Into<String>, retry: Retry) -> Self {
        Self {
            message: message.into(),
            retry,
            source: None,
        }
    }
}

/// One recorded state change of an upload's intent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateChange {
    pub from: IntentState,
    pub to: IntentState,
    pub at: DateTime<Utc>,
}

/// The quarantine as a queryable set. The records written beside quarantined objects are
/// the source of truth; an index over them answers queries (locally SQLite synced from the
/// records, on AWS a table fed by the records' creation events).
#[async_trait]
pub trait QuarantineIndex: Send + Sync {
    /// The items `filter` selects, newest first, one page.
    async fn list(
        &self,
        filter: &QuarantineFilter,
        page: &PageRequest,
    ) -> Result<QuarantinePage, QuarantineError>;
    /// Counts by reason, signature, tenant and status of the items `filter` selects.
    async fn counts(&self, filter: &QuarantineFilter) -> Result<QuarantineCounts, QuarantineError>;
    /// One item by its quarantine key.
    async fn get(&self, quarantine_key: &str) -> Result<Option<QuarantineItem>, QuarantineError>;
    /// Records a review's change of an item's status (after the change was made in the
    /// store, which the index can be rebuilt from).
    async fn set_status(
        &self,
        quarantine_key: &str,
        status: QuarantineStatus,
        at: DateTime<Utc>,
    ) -> Result<(), QuarantineError>;
    /// The state changes of an upload's intent, oldest first.
    async fn history(&self, upload_id: UploadId) -> Result<Vec<StateChange>, QuarantineError>;
}

/// Which trusted uploads a rescan walks: settled READY at or after `since`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustedFilter {
    pub tenant: Option<String>,
    pub purpose: Option<String>,
    pub since: Option<DateTime<Utc>>,
}

/// The uploads now trusted (intents READY, with the key their outcome names), in a stable
/// order a rescan can resume from.
#[async_trait]
pub trait TrustedUploads: Send + Sync {
    /// At most `limit` READY intents `filter` selects, by upload id, after `after`.
    async fn trusted(
        &self,
        filter: &TrustedFilter,
        after: Option<UploadId>,
        limit: usize,
    ) -> Result<Vec<UploadIntent>, IntentStoreError>;
}

/// Named positions of long jobs, so an interrupted job resumes where it stopped.
#[async_trait]
pub trait Checkpoints: Send + Sync {
    async fn load(&self, job: &str) -> Result<Option<String>, IntentStoreError>;
    async fn save(&self, job: &str, position: &str) -> Result<(), IntentStoreError>;
    /// Forgets the job's position (it finished: the next run starts afresh).
    async fn clear(&self, job: &str) -> Result<(), IntentStoreError>;
}

/// Where an exported sample goes (an encrypted archive, the only form in which the bytes
/// leave quarantine).
#[async_trait]
pub trait SampleSink: Send + Sync {
    /// Writes the sample's bytes and its record; returns where it was written.
    async fn write_sample(
        &self,
        record: &QuarantineRecord,
        bytes: ByteStream,
    ) -> Result<String, std::io::Error>;
}
