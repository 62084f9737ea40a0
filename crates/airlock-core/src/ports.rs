//! Ports: the traits adapters implement (object store, intent store, scanner, clock, event
//! sink, task answers). Each trait is narrow, so a function takes only what it needs.

use std::time::Duration;

use airlock_archive::ScannerLimits;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncRead;

use crate::intent::{IntentOutcome, IntentState, UploadIntent};
use crate::keys::{Purpose, TenantId, UploadId};
use crate::object::ObjectMeta;
use crate::verdict::ReasonCode;

/// A boxed byte stream, read in chunks so memory does not grow with the object.
pub type ByteStream = Box<dyn AsyncRead + Send + Unpin>;

/// Whether an infrastructure failure may go away if the operation is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Retry {
    /// Worth retrying: a timeout, a refused connection, throttling.
    Transient,
    /// Retrying will not help: a bad configuration, a refused permission, corrupt data.
    Permanent,
}

/// Which stored version of a key: what the store says identifies exactly these bytes (on S3
/// the `VersionId` of a versioned bucket, else the ETag; the local store's own version
/// token). Opaque: stages only keep it and hand it back, so every stage after Inspect
/// reads, copies and deletes exactly the object Inspect judged.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ObjectVersion(pub String);

impl ObjectVersion {
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ObjectVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether a write may replace an existing object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Replace whatever is there.
    Overwrite,
    /// Only if nothing is at the key (S3 `If-None-Match: *`): the write that finds the key
    /// taken fails with [`StoreError::AlreadyExists`], atomically.
    CreateOnly,
}

/// A failure of the object store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object {key:?} not found")]
    NotFound { key: String },
    #[error("key {key:?} is not allowed: {reason}")]
    InvalidKey { key: String, reason: String },
    /// The object at the key is not the version asked for (it was replaced or deleted):
    /// S3's 412 Precondition Failed on `If-Match`, or a `VersionId` that no longer exists.
    #[error("object {key:?} is no longer version {expected} (now {})", found.as_ref().map_or("absent".to_owned(), ToString::to_string))]
    VersionMismatch {
        key: String,
        expected: ObjectVersion,
        found: Option<ObjectVersion>,
    },
    /// A [`WriteMode::CreateOnly`] write found the key taken.
    #[error("object {key:?} already exists")]
    AlreadyExists { key: String },
    /// The store failed; the cause is `source` when there is one (then `message` is empty
    /// or adds context), else `message`.
    #[error("object store failed on {key:?}{}", if message.is_empty() { String::new() } else { format!(": {message}") })]
    Backend {
        key: String,
        message: String,
        retry: Retry,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl StoreError {
    #[must_use]
    pub fn retry(&self) -> Retry {
        match self {
            Self::Backend { retry, .. } => *retry,
            Self::NotFound { .. }
            | Self::InvalidKey { .. }
            | Self::VersionMismatch { .. }
            | Self::AlreadyExists { .. } => Retry::Permanent,
        }
    }

    /// A backend failure with its cause kept as the error's source.
    pub fn backend(
        key: &str,
        retry: Retry,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Backend {
            key: key.to_owned(),
            message: String::new(),
            retry,
            source: Some(Box::new(source)),
        }
    }
}

/// Reading objects. `version`, when given, names the exact object meant: a read of a key
/// that now holds another version fails with [`StoreError::VersionMismatch`] (or, where
/// the store keeps old versions, reads the version asked for).
#[async_trait]
pub trait ObjectReader: Send + Sync {
    /// HEAD of the current object: `None` when there is none.
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError>;
    /// At most `len` bytes from `offset` (fewer at the end of the object).
    async fn read_range(
        &self,
        key: &str,
        version: Option<&ObjectVersion>,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, StoreError>;
    /// The whole object as a stream.
    async fn open(
        &self,
        key: &str,
        version: Option<&ObjectVersion>,
    ) -> Result<ByteStream, StoreError>;
}

/// Writing objects. Writes return what was written, so a later step can name it exactly.
#[async_trait]
pub trait ObjectWriter: Send + Sync {
    /// Server-side copy of `from` (exactly `version`, when given: S3's
    /// `x-amz-copy-source-if-match` / `versionId`) to `to`.
    async fn copy(
        &self,
        from: &str,
        version: Option<&ObjectVersion>,
        to: &str,
        mode: WriteMode,
    ) -> Result<ObjectMeta, StoreError>;
    /// Writes a small object (records, metadata, media outputs).
    async fn put(
        &self,
        key: &str,
        bytes: Vec<u8>,
        content_type: &str,
        mode: WriteMode,
    ) -> Result<ObjectMeta, StoreError>;
    /// Deletes the object (only `version` of it, when given: a newer object at the key is
    /// left alone); deleting a missing object is not an error.
    async fn delete(&self, key: &str, version: Option<&ObjectVersion>) -> Result<(), StoreError>;
}

/// Both halves, for the stages that move objects.
pub trait ObjectStore: ObjectReader + ObjectWriter {}
impl<T: ObjectReader + ObjectWriter + ?Sized> ObjectStore for T {}

/// A failure of the intent store.
#[derive(Debug, thiserror::Error)]
#[error("intent store failed: {message}")]
pub struct IntentStoreError {
    pub message: String,
    pub retry: Retry,
}

/// A conditional state change of an intent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// Applied only if the intent is in one of these states.
    pub from: Vec<IntentState>,
    pub to: IntentState,
    pub at: DateTime<Utc>,
    /// Recorded with the change (where the object went and why), if given.
    pub outcome: Option<IntentOutcome>,
    /// A reviewer's change between the final states READY and QUARANTINED (a release, a
    /// revocation after a rescan; [`IntentState::can_be_reviewed_to`]), which the pipeline
    /// itself never makes. False for every pipeline change.
    pub review: bool,
}

impl Transition {
    /// Whether this change is legal from `current`: the pipeline's graph, or for a
    /// reviewer's change the review edges.
    #[must_use]
    pub fn is_legal_from(&self, current: IntentState) -> bool {
        self.from.contains(&current)
            && if self.review {
                current.can_be_reviewed_to(self.to)
            } else {
                current.can_become(self.to)
            }
    }
}

/// What a conditional state change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransitionResult {
    Applied(Box<UploadIntent>),
    /// The intent was in another state; nothing was changed.
    Refused {
        current: IntentState,
    },
    NotFound,
}

/// A client's retry key on a create request (the `Idempotency-Key` header), scoped to the
/// intent's tenant: the same key with the same request returns the intent made the first
/// time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyClaim {
    pub key: String,
    /// A digest of the request, telling a retry from another request that reuses the key.
    pub request_hash: String,
}

/// What an idempotent create did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateOutcome {
    /// The intent was stored and the key claimed for it.
    Created,
    /// The key was claimed before by the same request: the intent it made (unchanged).
    Replayed(Box<UploadIntent>),
    /// The key was claimed before by another request; nothing was stored.
    KeyReused,
}

/// Upload intents, keyed by upload id.
#[async_trait]
pub trait IntentStore: Send + Sync {
    /// Inserts the intent unless one with its id exists; returns whether it was inserted.
    async fn create(&self, intent: &UploadIntent) -> Result<bool, IntentStoreError>;
    /// Inserts the intent and claims the idempotency key for its tenant, atomically: both or
    /// neither. A key is remembered at least a day.
    async fn create_idempotent(
        &self,
        intent: &UploadIntent,
        claim: &IdempotencyClaim,
    ) -> Result<CreateOutcome, IntentStoreError>;
    async fn get(&self, id: UploadId) -> Result<Option<UploadIntent>, IntentStoreError>;
    /// Changes the state only if the current state is in `transition.from`.
    async fn transition(
        &self,
        id: UploadId,
        transition: Transition,
    ) -> Result<TransitionResult, IntentStoreError>;
}

/// What the scanner concluded about a stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "kebab-case")]
pub enum ScanVerdict {
    Clean,
    Infected {
        signature: String,
    },
    /// The stream exceeds a scanner limit and was not fully scanned.
    LimitExceeded {
        detail: String,
    },
}

/// A scanner's answer, with the engine that gave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanReport {
    #[serde(flatten)]
    pub verdict: ScanVerdict,
    /// Engine and definitions version, e.g. `ClamAV 1.4.3/27500`.
    pub engine: String,
    /// The definitions' version and build time, when the scanner reports them (clamd does
    /// when a daily database is loaded); checked by the scan stage's freshness rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub definitions: Option<crate::definitions::Definitions>,
}

/// A failure to scan (not a verdict).
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("scanner unavailable: {0}")]
    Unavailable(String),
    #[error("scanner timed out after {0:?}")]
    Timeout(Duration),
    #[error("scanner protocol error: {0}")]
    Protocol(String),
    #[error("reading the object failed: {0}")]
    Source(std::io::Error),
}

impl ScanError {
    #[must_use]
    pub fn retry(&self) -> Retry {
        match self {
            Self::Unavailable(_) | Self::Timeout(_) | Self::Source(_) => Retry::Transient,
            Self::Protocol(_) => Retry::Permanent,
        }
    }
}

/// A virus scanner.
#[async_trait]
pub trait Scanner: Send + Sync {
    /// Scans the stream to its end (or until the scanner stops it).
    async fn scan(&self, stream: ByteStream) -> Result<ScanReport, ScanError>;

    /// The limits past which this scanner does not read an archive's content (clamd's
    /// `MaxFileSize`, `MaxScanSize`, `MaxFiles`, `MaxRecursion`): an archive reaching one
    /// is judged unscannable, since a clean answer would not cover all of it.
    fn limits(&self) -> ScannerLimits {
        ScannerLimits::default()
    }
}

/// The current time (a port so tests and replays can fix it).
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// What products are told when an upload is settled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineEvent {
    /// `upload.ready`, `upload.quarantined` or `upload.revoked`.
    #[serde(rename = "type")]
    pub kind: PipelineEventKind,
    pub upload_id: UploadId,
    pub tenant: TenantId,
    pub purpose: Purpose,
    /// Where the object now is.
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<ReasonCode>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PipelineEventKind {
    #[serde(rename = "upload.ready")]
    Ready,
    #[serde(rename = "upload.quarantined")]
    Quarantined,
    /// A trusted upload that a rescan found infected was moved back to quarantine: products
    /// must stop using it (its `trusted/` objects are gone).
    #[serde(rename = "upload.revoked")]
    Revoked,
}

impl PipelineEventKind {
    /// The event's type name, as products see it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "upload.ready",
            Self::Quarantined => "upload.quarantined",
            Self::Revoked => "upload.revoked",
        }
    }
}

/// A failure to publish an event.
#[derive(Debug, thiserror::Error)]
#[error("event sink failed: {message}")]
pub struct EventSinkError {
    pub message: String,
    pub retry: Retry,
}

/// Where pipeline events go (EventBridge on AWS, a file locally).
#[async_trait]
pub trait EventSink: Send + Sync {
    async fn publish(&self, event: &PipelineEvent) -> Result<(), EventSinkError>;
}

/// A failure to answer the orchestrator.
#[derive(Debug, thiserror::Error)]
#[error("answering task failed: {message}")]
pub struct TaskAnswerError {
    pub message: String,
    pub retry: Retry,
}

/// Where a worker sends the result of a task it was given with a token (Step Functions on
/// AWS, the local executor on one machine).
#[async_trait]
pub trait TaskAnswers: Send + Sync {
    async fn succeed(&self, token: &str, output: serde_json::Value) -> Result<(), TaskAnswerError>;
    async fn fail(&self, token: &str, error: &str, cause: &str) -> Result<(), TaskAnswerError>;
    /// Tells the orchestrator the task is still being worked on. A permanent error means
    /// nobody waits for this token any more (the task timed out or was answered): the
    /// work should stop.
    async fn heartbeat(&self, token: &str) -> Result<(), TaskAnswerError>;
}

/// An upload whose settling (promote or quarantine) failed after every retry: it stays in
/// `incoming/`, its intent is FAILED, and this entry waits for an operator to look and
/// retry (`airlock dead-letters` locally; on AWS the failed execution and this record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    pub object: crate::object::ObjectRef,
    /// The stage that failed.
    pub stage: crate::stages::Stage,
    /// The error name the state machine caught, e.g. `Airlock.Permanent`.
    pub error: String,
    pub cause: String,
    pub at: DateTime<Utc>,
}

/// A failure to record a dead letter.
#[derive(Debug, thiserror::Error)]
#[error("dead-letter store failed: {message}")]
pub struct DeadLetterError {
    pub message: String,
    pub retry: Retry,
}

/// Where failed uploads are recorded for operators.
#[async_trait]
pub trait DeadLetters: Send + Sync {
    /// Records `letter`; a second failure of the same object and stage replaces the first
    /// entry (one entry per stuck object, with its latest failure).
    async fn record(&self, letter: &DeadLetter) -> Result<(), DeadLetterError>;
}

/// What starting a pipeline execution did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOutcome {
    Started,
    /// An execution with this name exists (running or closed): the object was handled.
    AlreadyExists,
}

/// Starting an execution failed.
#[derive(Debug, thiserror::Error)]
#[error("starting execution {name} failed: {message}")]
pub struct StartError {
    pub name: String,
    pub message: String,
    pub retry: Retry,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// Starts pipeline executions by name (Step Functions `StartExecution` on AWS), so that a
/// repeated event for the same object version collapses into the first execution.
#[async_trait]
pub trait ExecutionStarter: Send + Sync {
    async fn start(&self, name: &str, input: &str) -> Result<StartOutcome, StartError>;
}
