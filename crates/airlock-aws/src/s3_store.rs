//! The object store ports over one S3 bucket.
//!
//! Versions: an [`ObjectVersion`] is the object's `VersionId` when the bucket is versioned,
//! else its ETag as S3 sends it, quoted (`"9b2cf535..."`). A `VersionId` never holds a
//! quote, so the store tells the two apart by the leading `"`, whatever the bucket's
//! versioning was when the version was taken. A pinned version is then checked by S3 itself,
//! in the same request:
//!
//! | operation | `VersionId`                         | ETag                                 |
//! |-----------|-------------------------------------|--------------------------------------|
//! | read      | `GetObject?versionId=` (the old bytes, while the version exists) | `If-Match` (412 once replaced) |
//! | copy      | `x-amz-copy-source: ...?versionId=` | `x-amz-copy-source-if-match`         |
//! | delete    | `DeleteObject?versionId=` (only that version) | `If-Match` (a conditional delete) |
//!
//! A versioned bucket is the one to deploy: an old version stays readable until it is
//! deleted, and deleting a version never touches a newer object at the key. With ETags,
//! S3 evaluates `If-Match` on `DeleteObject` (conditional deletes) and
//! `x-amz-copy-source-if-match` on `CopyObject`; a store that ignores those headers (some
//! S3 emulators do) would copy or delete a newer object, so there only a versioned bucket
//! keeps the guarantee.
//!
//! A delete without a version in a versioned bucket adds a delete marker and keeps the
//! object's versions as noncurrent: expiring those is the bucket's lifecycle rule's job.
//!
//! Create-only writes send `If-None-Match: *` (`PutObject` and `CopyObject`), which S3
//! checks atomically. A create-only copy also looks for the destination first, so a store
//! that ignores the header on copies still refuses an occupied key when nothing races it.
//!
//! Errors: 404 (`NoSuchKey`, `NoSuchVersion`) is [`StoreError::NotFound`], or
//! [`StoreError::VersionMismatch`] when a version was named; 412 is `VersionMismatch` on a
//! pinned read or copy and [`StoreError::AlreadyExists`] on a create-only write; throttling,
//! 5xx, timeouts and lost connections are transient [`StoreError::Backend`] errors, the rest
//! (access denied, a missing bucket) permanent, with the SDK's error as the source.

use airlock_core::object::ObjectMeta;
use airlock_core::ports::{
    ByteStream, ObjectReader, ObjectVersion, ObjectWriter, Retry, StoreError, WriteMode,
};
use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use chrono::{DateTime, Utc};

use crate::error::{code_of, retry_of, status_of};

/// One S3 bucket as airlock's object store.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
}

/// How a version is named to S3.
#[derive(Debug, Clone, Copy)]
enum Pin<'a> {
    VersionId(&'a str),
    ETag(&'a str),
}

impl<'a> Pin<'a> {
    fn of(version: &'a ObjectVersion) -> Self {
        let text = version.as_str();
        if text.starts_with('"') {
            Self::ETag(text)
        } else {
            Self::VersionId(text)
        }
    }
}

/// The version a response names: its `VersionId` (a versioned bucket), else its ETag.
fn version_from(version_id: Option<&str>, etag: Option<&str>) -> Option<ObjectVersion> {
    version_id
        .filter(|v| !v.is_empty() && *v != "null")
        .or(etag)
        .map(|v| ObjectVersion(v.to_owned()))
}

fn time_of(at: Option<&aws_sdk_s3::primitives::DateTime>) -> Option<DateTime<Utc>> {
    at.and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
}

/// Percent-encodes a key for `x-amz-copy-source`, keeping `/` between segments.
fn encode_key(key: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(key.len());
    for byte in key.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

fn backend<E>(key: &str, err: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let retry = retry_of(&err);
    StoreError::backend(key, retry, err)
}

/// What a failed request means for the object it named.
enum Failure {
    /// 404: no such key, or no such version.
    Missing,
    /// 412: a condition (`If-Match`, `If-None-Match`, copy-source-if-match) did not hold.
    Precondition,
    /// 416: the range starts past the end.
    Range,
    Other,
}

fn failure_of<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> Failure {
    match (status_of(err), code_of(err)) {
        // A missing bucket is a configuration error, not a missing object.
        (_, Some("NoSuchBucket")) => Failure::Other,
        (Some(404), _) | (_, Some("NoSuchKey" | "NoSuchVersion" | "NotFound")) => Failure::Missing,
        (Some(412), _) | (_, Some("PreconditionFailed")) => Failure::Precondition,
        (Some(416), _) | (_, Some("InvalidRange")) => Failure::Range,
        _ => Failure::Other,
    }
}

impl S3Store {
    /// The store over `bucket`, using `client` (built once by the caller; against an
    /// emulator or a custom endpoint, with path-style addressing).
    #[must_use]
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
        }
    }

    #[must_use]
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    #[must_use]
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Checks the bucket exists and may be reached (`HeadBucket`): for a check at start,
    /// since a HEAD of an object in a missing bucket looks like a missing object. A bucket
    /// that does not exist or may not be read is a permanent error.
    pub async fn check_bucket(&self) -> Result<(), StoreError> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map(drop)
            .map_err(|e| backend(&self.bucket, e))
    }

    /// The error for a pinned version that is not what `key` holds: the current version, if
    /// any, goes into the error (a HEAD, on this failure path only).
    async fn mismatch(&self, key: &str, expected: &ObjectVersion) -> StoreError {
        let found = self.head(key).await.ok().flatten().and_then(|m| m.version);
        StoreError::VersionMismatch {
            key: key.to_owned(),
            expected: expected.clone(),
            found,
        }
    }

    /// The error for a read or copy source that failed as `failure`.
    async fn source_error<E>(
        &self,
        key: &str,
        version: Option<&ObjectVersion>,
        err: SdkError<E, HttpResponse>,
    ) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        match (failure_of(&err), version) {
            (Failure::Missing | Failure::Precondition, Some(expected)) => {
                self.mismatch(key, expected).await
            }
            (Failure::Missing, None) => StoreError::NotFound {
                key: key.to_owned(),
            },
            _ => backend(key, err),
        }
    }

    /// HEAD of exactly `version` of `key` (the current object when `None`).
    async fn head_pinned(
        &self,
        key: &str,
        version: Option<&ObjectVersion>,
    ) -> Result<ObjectMeta, StoreError> {
        let mut request = self.client.head_object().bucket(&self.bucket).key(key);
        match version.map(Pin::of) {
            Some(Pin::VersionId(id)) => request = request.version_id(id),
            Some(Pin::ETag(etag)) => request = request.if_match(etag),
            None => {}
        }
        match request.send().await {
            Ok(out) => Ok(ObjectMeta {
                size: out
                    .content_length()
                    .and_then(|n| u64::try_from(n).ok())
                    .unwrap_or(0),
                version: version_from(out.version_id(), out.e_tag()),
                etag: out.e_tag().map(str::to_owned),
                content_type: out.content_type().map(str::to_owned),
                last_modified: time_of(out.last_modified()),
            }),
            Err(err) => Err(self.source_error(key, version, err).await),
        }
    }

    /// `GetObject` of exactly `version`, optionally of a byte range.
    async fn get(
        &self,
        key: &str,
        version: Option<&ObjectVersion>,
        range: Option<String>,
    ) -> Result<Option<aws_sdk_s3::operation::get_object::GetObjectOutput>, StoreError> {
        let mut request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .set_range(range);
        match version.map(Pin::of) {
            Some(Pin::VersionId(id)) => request = request.version_id(id),
            Some(Pin::ETag(etag)) => request = request.if_match(etag),
            None => {}
        }
        match request.send().await {
            Ok(out) => Ok(Some(out)),
            // The range starts at or past the end (S3 checks the version first).
            Err(err) if matches!(failure_of(&err), Failure::Range) => Ok(None),
            Err(err) => Err(self.source_error(key, version, err).await),
        }
    }
}

#[async_trait]
impl ObjectReader for S3Store {
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        match self.head_pinned(key, None).await {
            Ok(meta) => Ok(Some(meta)),
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn read_range(
        &self,
        key: &str,
        version: Option<&ObjectVersion>,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, StoreError> {
        if len == 0 {
            // No range can say "nothing"; the version is still checked.
            self.head_pinned(key, version).await?;
            return Ok(Vec::new());
        }
        let last = offset.saturating_add(len - 1);
        let Some(out) = self
            .get(key, version, Some(format!("bytes={offset}-{last}")))
            .await?
        else {
            return Ok(Vec::new());
        };
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| StoreError::backend(key, Retry::Transient, e))?
            .into_bytes();
        // Never more than asked for, whatever the server sent.
        let keep = usize::try_from(len).unwrap_or(usize::MAX).min(bytes.len());
        Ok(bytes[..keep].to_vec())
    }

    async fn open(
        &self,
        key: &str,
        version: Option<&ObjectVersion>,
    ) -> Result<ByteStream, StoreError> {
        let Some(out) = self.get(key, version, None).await? else {
            return Err(StoreError::Backend {
                key: key.to_owned(),
                message: "S3 refused a read with no range as out of range".to_owned(),
                retry: Retry::Permanent,
                source: None,
            });
        };
        // The body is read from the connection as the caller reads: nothing is buffered
        // beyond the SDK's chunks.
        Ok(Box::new(Box::pin(out.body.into_async_read())))
    }
}

#[async_trait]
impl ObjectWriter for S3Store {
    async fn copy(
        &self,
        from: &str,
        version: Option<&ObjectVersion>,
        to: &str,
        mode: WriteMode,
    ) -> Result<ObjectMeta, StoreError> {
        if mode == WriteMode::CreateOnly && self.head(to).await?.is_some() {
            return Err(StoreError::AlreadyExists { key: to.to_owned() });
        }
        let mut source = format!("{}/{}", self.bucket, encode_key(from));
        let mut request = self.client.copy_object().bucket(&self.bucket).key(to);
        match version.map(Pin::of) {
            Some(Pin::VersionId(id)) => {
                source.push_str("?versionId=");
                source.push_str(&encode_key(id));
            }
            Some(Pin::ETag(etag)) => request = request.copy_source_if_match(etag),
            None => {}
        }
        if mode == WriteMode::CreateOnly {
            request = request.if_none_match("*");
        }
        let out = match request.copy_source(source).send().await {
            Ok(out) => out,
            Err(err) => {
                // A 412 is the destination's `If-None-Match` or the source's ETag: the
                // destination tells which.
                if matches!(failure_of(&err), Failure::Precondition)
                    && mode == WriteMode::CreateOnly
                    && self.head(to).await?.is_some()
                {
                    return Err(StoreError::AlreadyExists { key: to.to_owned() });
                }
                return Err(self.source_error(from, version, err).await);
            }
        };
        let written = version_from(
            out.version_id(),
            out.copy_object_result().and_then(|r| r.e_tag()),
        );
        // CopyObject does not say the size: confirm the copy by a HEAD of exactly it.
        self.head_pinned(to, written.as_ref())
            .await
            .map_err(|e| StoreError::Backend {
                key: to.to_owned(),
                message: "copy not confirmed: its HEAD failed".to_owned(),
                retry: Retry::Transient,
                source: Some(Box::new(e)),
            })
    }

    async fn put(
        &self,
        key: &str,
        bytes: Vec<u8>,
        content_type: &str,
        mode: WriteMode,
    ) -> Result<ObjectMeta, StoreError> {
        let size = bytes.len() as u64;
        let mut request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .content_length(i64::try_from(size).unwrap_or(i64::MAX))
            .body(bytes.into());
        if mode == WriteMode::CreateOnly {
            request = request.if_none_match("*");
        }
        match request.send().await {
            Ok(out) => Ok(ObjectMeta {
                size,
                version: version_from(out.version_id(), out.e_tag()),
                etag: out.e_tag().map(str::to_owned),
                content_type: Some(content_type.to_owned()),
                last_modified: None,
            }),
            Err(err)
                if mode == WriteMode::CreateOnly
                    && matches!(failure_of(&err), Failure::Precondition) =>
            {
                Err(StoreError::AlreadyExists {
                    key: key.to_owned(),
                })
            }
            Err(err) => Err(backend(key, err)),
        }
    }

    async fn delete(&self, key: &str, version: Option<&ObjectVersion>) -> Result<(), StoreError> {
        let mut request = self.client.delete_object().bucket(&self.bucket).key(key);
        match version.map(Pin::of) {
            // Removes that version for good; a newer one stays the current object.
            Some(Pin::VersionId(id)) => request = request.version_id(id),
            Some(Pin::ETag(etag)) => request = request.if_match(etag),
            None => {}
        }
        match request.send().await {
            Ok(_) => Ok(()),
            Err(err) => match failure_of(&err) {
                // Gone already, or the key holds another object, which is not ours to delete.
                Failure::Missing | Failure::Precondition => Ok(()),
                Failure::Range | Failure::Other => Err(backend(key, err)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_tell_version_ids_from_etags() {
        let etag = ObjectVersion("\"9b2cf535f27731c974343645a3985328\"".into());
        assert!(matches!(Pin::of(&etag), Pin::ETag(e) if e == etag.as_str()));
        let id = ObjectVersion("3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY".into());
        assert!(matches!(Pin::of(&id), Pin::VersionId(v) if v == id.as_str()));
        assert_eq!(
            version_from(Some("null"), Some("\"e\"")),
            Some(ObjectVersion("\"e\"".into()))
        );
        assert_eq!(
            version_from(Some("v1"), Some("\"e\"")),
            Some(ObjectVersion("v1".into()))
        );
        assert_eq!(version_from(None, None), None);
    }

    #[test]
    fn copy_sources_are_percent_encoded_but_keep_slashes() {
        assert_eq!(
            encode_key("incoming/acme/docs/a b+c%d?é"),
            "incoming/acme/docs/a%20b%2Bc%25d%3F%C3%A9"
        );
    }
}
