//! The pipeline stages, as plain async functions over ports.
//!
//! Each stage returns `Ok` with an outcome (a file that passes, a file rejected with a reason,
//! or nothing left to do) or `Err(StageError)` for an infrastructure failure, which the state
//! machine may retry. A rejected file is never an `Err`.

mod failure;
mod inspect;
mod media;
mod promote;
mod quarantine;
mod scan;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use failure::{FailureReport, record_failure};
pub(crate) use inspect::check_type;
pub use inspect::{
    InspectOutcome, InspectReport, SNIFF_LEN, SettledLeftover, Sniffed, inspect, sniff_type,
};
pub(crate) use media::media_from;
pub use media::{MediaJob, MediaOutcome, MediaReport, SPOOL_FROM_BYTES, StagedOutput, media};
pub use promote::{PromoteFacts, PromoteReport, finish_promotion, promote};
pub(crate) use promote::{PromoteSource, promote_from};
pub(crate) use quarantine::place_elsewhere;
pub use quarantine::{QuarantineRecord, QuarantineReport, QuarantineRequest, quarantine};
pub use scan::{ScanOutcome, ScanPass, scan};

use crate::object::ObjectMeta;
use crate::ports::{
    EventSinkError, IntentStoreError, ObjectVersion, Retry, ScanError, StoreError, WriteMode,
};

/// The stages, as named in worker messages and in the state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    Inspect,
    Scan,
    Media,
    Promote,
    Quarantine,
    /// After promote or quarantine failed for good: the intent becomes FAILED and a dead
    /// letter is recorded.
    RecordFailure,
}

impl Stage {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inspect => "inspect",
            Self::Scan => "scan",
            Self::Media => "media",
            Self::Promote => "promote",
            Self::Quarantine => "quarantine",
            Self::RecordFailure => "record-failure",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error names the state machine's Retry and Catch match on.
pub mod error_names {
    /// Worth retrying (the state machine retries with backoff).
    pub const TRANSIENT: &str = "Airlock.Transient";
    /// Retrying will not help.
    pub const PERMANENT: &str = "Airlock.Permanent";
    /// The worker could not understand its message.
    pub const BAD_MESSAGE: &str = "Airlock.BadMessage";
}

/// An infrastructure failure in a stage.
#[derive(Debug, thiserror::Error)]
#[error("{stage}: {message}")]
pub struct StageError {
    pub stage: Stage,
    pub message: String,
    pub retry: Retry,
    /// The object was replaced after it was judged (a read or copy of the judged version
    /// found another): not a failure to retry but a reason to quarantine
    /// (`object-replaced`).
    pub replaced: bool,
}

impl StageError {
    #[must_use]
    pub fn new(stage: Stage, retry: Retry, message: impl Into<String>) -> Self {
        Self {
            stage,
            message: message.into(),
            retry,
            replaced: false,
        }
    }

    pub(crate) fn store(stage: Stage, err: &StoreError) -> Self {
        let mut error = Self::new(stage, err.retry(), error_chain(err));
        error.replaced = matches!(err, StoreError::VersionMismatch { .. });
        error
    }

    /// For a stage that reads the judged object: a replaced object is a rejection, any
    /// other failure stays one.
    pub(crate) fn replaced_to_rejection(self) -> Result<crate::verdict::Rejection, Self> {
        if self.replaced {
            Ok(crate::verdict::Rejection::new(
                crate::verdict::ReasonCode::ObjectReplaced,
                self.message,
            ))
        } else {
            Err(self)
        }
    }

    pub(crate) fn intents(stage: Stage, err: &IntentStoreError) -> Self {
        Self::new(stage, err.retry, err.to_string())
    }

    pub(crate) fn events(stage: Stage, err: &EventSinkError) -> Self {
        Self::new(stage, err.retry, err.to_string())
    }

    pub(crate) fn scan(stage: Stage, err: &ScanError) -> Self {
        Self::new(stage, err.retry(), err.to_string())
    }

    /// The error name reported to the orchestrator.
    #[must_use]
    pub fn error_name(&self) -> &'static str {
        match self.retry {
            Retry::Transient => error_names::TRANSIENT,
            Retry::Permanent => error_names::PERMANENT,
        }
    }
}

/// An error and its causes, as one line: `outer: cause: root cause`.
#[must_use]
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// SHA-256 and size of a stored object (exactly `version`, when given), read as a stream.
pub(crate) async fn hash_object(
    store: &dyn crate::ports::ObjectReader,
    key: &str,
    version: Option<&ObjectVersion>,
    stage: Stage,
) -> Result<(String, u64), StageError> {
    let stream = store
        .open(key, version)
        .await
        .map_err(|e| StageError::store(stage, &e))?;
    read_hashed(stage, key, stream, None, u64::MAX).await
}

/// Reads `stream` to its end (or just past `limit` bytes), hashing it and writing it to
/// `sink` if given; the SHA-256 of what was read and how many bytes.
async fn read_hashed(
    stage: Stage,
    key: &str,
    mut stream: crate::ports::ByteStream,
    mut sink: Option<&mut tokio::fs::File>,
    limit: u64,
) -> Result<(String, u64), StageError> {
    use sha2::{Digest, Sha256};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut read = 0u64;
    loop {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| StageError::new(stage, Retry::Transient, format!("reading {key}: {e}")))?;
        if n == 0 {
            break;
        }
        read += n as u64;
        if read > limit {
            break;
        }
        hasher.update(&buf[..n]);
        if let Some(out) = sink.as_deref_mut() {
            out.write_all(&buf[..n]).await.map_err(|e| {
                StageError::new(
                    stage,
                    Retry::Transient,
                    format!("spooling {key} to a temporary file: {e}"),
                )
            })?;
        }
    }
    Ok((hex::encode(hasher.finalize()), read))
}

/// Copies exactly `version` of `from` to `to` and confirms the copy has `size` bytes: a
/// source is never deleted before its copy is confirmed.
pub(crate) async fn copy_confirmed(
    stage: Stage,
    store: &dyn crate::ports::ObjectStore,
    from: (&str, Option<&ObjectVersion>),
    to: &str,
    mode: WriteMode,
    size: u64,
) -> Result<ObjectMeta, StageError> {
    let copy = store
        .copy(from.0, from.1, to, mode)
        .await
        .map_err(|e| match e {
            StoreError::VersionMismatch { .. } => StageError::new(
                stage,
                Retry::Permanent,
                format!("{} is not the object that was judged: {e}", from.0),
            ),
            other => StageError::store(stage, &other),
        })?;
    if copy.size == size {
        Ok(copy)
    } else {
        Err(StageError::new(
            stage,
            Retry::Transient,
            format!(
                "copy to {to} not confirmed: expected {size} bytes, found {}",
                copy.size
            ),
        ))
    }
}

/// A scanned object's bytes that differ from what was scanned: never used.
fn not_scanned(
    stage: Stage,
    key: &str,
    size: u64,
    sha256: &str,
    read: u64,
    scanned_sha256: &str,
) -> StageError {
    StageError::new(
        stage,
        Retry::Permanent,
        format!(
            "{key} is not the object that was scanned ({read} bytes, sha256 {sha256}; scanned {size} bytes, sha256 {scanned_sha256})"
        ),
    )
}

/// Streams exactly `version` of the object into a temporary file (deleted when the path is
/// dropped), hashing on the way; the file if its bytes are the ones the scan saw.
pub(crate) async fn spool_scanned(
    stage: Stage,
    store: &dyn crate::ports::ObjectReader,
    (key, version): (&str, Option<&ObjectVersion>),
    size: u64,
    scanned_sha256: &str,
) -> Result<tempfile::TempPath, StageError> {
    use tokio::io::AsyncWriteExt;
    let local = |what: &str, e: std::io::Error| {
        StageError::new(
            stage,
            Retry::Transient,
            format!("spooling {key} to a temporary file: {what}: {e}"),
        )
    };
    let file = tempfile::Builder::new()
        .prefix("airlock-spool-")
        .tempfile()
        .map_err(|e| local("create", e))?;
    let (file, path) = file.into_parts();
    let mut out = tokio::fs::File::from_std(file);
    let stream = store
        .open(key, version)
        .await
        .map_err(|e| StageError::store(stage, &e))?;
    let (sha256, read) = read_hashed(stage, key, stream, Some(&mut out), size).await?;
    out.flush().await.map_err(|e| local("flush", e))?;
    out.sync_all().await.map_err(|e| local("sync", e))?;
    drop(out);
    if read != size || !sha256.eq_ignore_ascii_case(scanned_sha256) {
        return Err(not_scanned(stage, key, size, &sha256, read, scanned_sha256));
    }
    Ok(path)
}
