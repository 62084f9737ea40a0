//! Media: for images, decode with limits, auto-orient, strip metadata, re-encode, and make the
//! variants — off the async threads, a bounded number at a time — then stage the outputs
//! for promotion.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use super::{Stage, StageError};
use crate::keys::UploadKey;
use crate::media::{MediaFileFailure, MediaOutput, MediaPolicy, MediaProcessor};
use crate::ports::{ObjectStore, ObjectVersion, Retry, StoreError, WriteMode};
use crate::verdict::Rejection;

/// One staged output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StagedOutput {
    /// `original` or the variant's name.
    pub name: String,
    /// Where it waits under `staging/`.
    pub staging_key: String,
    pub content_type: String,
    pub extension: String,
    pub width: u32,
    pub height: u32,
    pub size: u64,
    pub sha256: String,
    /// The staged version: promotion copies exactly it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<ObjectVersion>,
}

/// What the media stage made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaReport {
    /// The sanitized original: this, not the upload, is what `trusted/` gets.
    pub original: StagedOutput,
    pub variants: Vec<StagedOutput>,
    /// Keep the untouched upload too (the policy's `keep_original`).
    pub keep_original: bool,
    pub metadata: serde_json::Value,
}

/// The result of the media stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum MediaOutcome {
    Pass(Box<MediaReport>),
    Reject(Rejection),
}

async fn stage_output(
    store: &dyn ObjectStore,
    upload: &UploadKey,
    output: MediaOutput,
) -> Result<StagedOutput, StageError> {
    let staging_key = upload.staging(&format!("{}.{}", output.name, output.extension));
    let size = output.bytes.len() as u64;
    // A retry rewrites its own earlier outputs: staging/ is never readable.
    let staged = store
        .put(
            &staging_key,
            output.bytes,
            &output.content_type,
            WriteMode::Overwrite,
        )
        .await
        .map_err(|e: StoreError| StageError::store(Stage::Media, &e))?;
    Ok(StagedOutput {
        name: output.name,
        staging_key,
        content_type: output.content_type,
        extension: output.extension,
        width: output.width,
        height: output.height,
        size,
        sha256: output.sha256,
        version: staged.version,
    })
}

/// One image to process: which upload, what it is, and what the scan saw.
#[derive(Debug, Clone, Copy)]
pub struct MediaJob<'a> {
    pub upload: &'a UploadKey,
    /// The type inspect detected.
    pub content_type: &'a str,
    pub size: u64,
    /// The scanned bytes' SHA-256: only those bytes may be processed.
    pub scanned_sha256: &'a str,
    /// The version scanned.
    pub version: Option<&'a ObjectVersion>,
    pub policy: &'a MediaPolicy,
}

/// PNGs at least this large are spooled to a temporary file and decoded from it, so the
/// worker never holds the upload in memory next to its decoded pixels (a 12-megapixel PNG
/// is over 30 MB). Other formats are read whole: their decoders want the bytes at hand,
/// and their files are compressed.
pub const SPOOL_FROM_BYTES: u64 = 4 << 20;

/// Where the bytes the library works on are.
enum Source {
    Bytes(Vec<u8>),
    /// A temporary file, deleted when dropped.
    Spooled(tempfile::TempPath),
}

/// The object's bytes, if they are the ones the scan saw.
async fn read_scanned(
    store: &dyn ObjectStore,
    (key, version): (&str, Option<&ObjectVersion>),
    size: u64,
    scanned_sha256: &str,
) -> Result<Vec<u8>, StageError> {
    let bytes = store
        .read_range(key, version, 0, size)
        .await
        .map_err(|e| StageError::store(Stage::Media, &e))?;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let read = bytes.len() as u64;
    if read != size || !sha256.eq_ignore_ascii_case(scanned_sha256) {
        return Err(super::not_scanned(
            Stage::Media,
            key,
            size,
            &sha256,
            read,
            scanned_sha256,
        ));
    }
    Ok(bytes)
}

/// Processes the image of `job.upload`. `permits` caps how many images are decoded at once.
pub async fn media(
    store: &dyn ObjectStore,
    processor: Arc<dyn MediaProcessor>,
    permits: Arc<Semaphore>,
    job: MediaJob<'_>,
) -> Result<MediaOutcome, StageError> {
    let key = job.upload.incoming();
    media_from(store, processor, permits, job, &key).await
}

/// Processes the image at `key` (the upload's `incoming/` object, or a quarantined one a
/// reviewer releases) for `job.upload`; the outputs are staged under the upload's
/// `staging/` folder either way.
pub(crate) async fn media_from(
    store: &dyn ObjectStore,
    processor: Arc<dyn MediaProcessor>,
    permits: Arc<Semaphore>,
    job: MediaJob<'_>,
    key: &str,
) -> Result<MediaOutcome, StageError> {
    let MediaJob {
        upload,
        content_type,
        size,
        scanned_sha256,
        version,
        policy,
    } = job;
    let source = if content_type == "image/png" && size >= SPOOL_FROM_BYTES {
        super::spool_scanned(Stage::Media, store, (key, version), size, scanned_sha256)
            .await
            .map(Source::Spooled)
    } else {
        read_scanned(store, (key, version), size, scanned_sha256)
            .await
            .map(Source::Bytes)
    };
    let source = match source {
        Ok(source) => source,
        Err(err) => return err.replaced_to_rejection().map(MediaOutcome::Reject),
    };
    // Owned by the decode itself: if the backstop below gives up on it, the slot stays
    // taken until the decode really ends.
    let permit = permits
        .acquire_owned()
        .await
        .map_err(|_| StageError::new(Stage::Media, Retry::Transient, "media workers shut down"))?;
    let job_policy = policy.clone();
    let job_type = content_type.to_owned();
    // The task's span (stage, key, upload id) follows the work onto the blocking thread.
    let span = tracing::Span::current();
    let job = tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        let result = match &source {
            Source::Bytes(bytes) => processor
                .process(bytes, &job_type, &job_policy)
                .map_err(MediaFileFailure::Rejected),
            Source::Spooled(path) => processor.process_file(path, &job_type, &job_policy),
        };
        drop(permit);
        // The spooled file goes with `source`, here, once the library is done with it.
        drop(source);
        result
    });
    // The library bounds its own decode time; this is the backstop if it ever does not.
    let limit = Duration::from_secs(policy.decode_timeout_seconds.saturating_mul(3) + 10);
    let result = match tokio::time::timeout(limit, job).await {
        Err(_) => {
            return Err(StageError::new(
                Stage::Media,
                Retry::Permanent,
                format!("processing did not finish within {limit:?}"),
            ));
        }
        Ok(Err(join)) => {
            return Err(StageError::new(
                Stage::Media,
                Retry::Permanent,
                format!("processing crashed: {join}"),
            ));
        }
        Ok(Ok(result)) => result,
    };
    let product = match result {
        Ok(product) => product,
        Err(MediaFileFailure::Rejected(rejection)) => {
            return Ok(MediaOutcome::Reject(Rejection::new(
                rejection.reason,
                rejection.detail,
            )));
        }
        Err(MediaFileFailure::Unreadable(detail)) => {
            return Err(StageError::new(
                Stage::Media,
                Retry::Transient,
                format!("the spooled copy of {key} could not be read: {detail}"),
            ));
        }
    };
    let mut staged = Vec::with_capacity(product.variants.len() + 1);
    for output in std::iter::once(product.original).chain(product.variants) {
        match stage_output(store, upload, output).await {
            Ok(output) => staged.push(output),
            Err(err) => {
                // Leave nothing half staged: what was staged is removed (best effort: a
                // leftover is also swept once the upload is settled).
                for output in &staged {
                    let _ = store.delete(&output.staging_key, None).await;
                }
                return Err(err);
            }
        }
    }
    let mut staged = staged.into_iter();
    let original = staged.next().expect("the original is staged first");
    Ok(MediaOutcome::Pass(Box::new(MediaReport {
        original,
        variants: staged.collect(),
        keep_original: policy.keep_original,
        metadata: product.metadata,
    })))
}
