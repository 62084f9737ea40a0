//! The S3 operations, over the filesystem store. s3s has parsed and `SigV4`-verified each
//! request (signature, expiry, signed headers, POST policy) before it gets here; this module
//! decides what the request may do and does it.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use airlock_core::keys::{INCOMING_PREFIX, TRUSTED_PREFIX};
use airlock_core::object::ObjectMeta;
use airlock_core::ports::{ObjectReader as _, ObjectVersion, StoreError, WriteMode};
use airlock_local::FsStore;
use bytes::Bytes;
use futures_core::Stream;
use s3s::crypto::{Checksum as _, Md5};
use s3s::dto::{
    AbortMultipartUploadInput, AbortMultipartUploadOutput, CompleteMultipartUploadInput,
    CompleteMultipartUploadOutput, CreateMultipartUploadInput, CreateMultipartUploadOutput, ETag,
    ETagCondition, GetObjectInput, GetObjectOutput, HeadObjectInput, HeadObjectOutput,
    ListPartsInput, ListPartsOutput, Part, PostObjectInput, PostObjectOutput, PutObjectInput,
    PutObjectOutput, StreamingBlob, Timestamp, UploadPartInput, UploadPartOutput,
};
use s3s::{S3, S3Error, S3ErrorCode, S3Request, S3Response, S3Result};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::mpsc;

use crate::body::{Announced, Received, VerifiedBody};
use crate::event::{self, Created, Sequencer};
use crate::parts::{Concatenated, Parts, internal};

/// S3's largest single PUT, and largest part.
const MAX_PUT_SIZE: u64 = 5 << 30;
/// S3's smallest part, but for the last.
const MIN_PART_SIZE: u64 = 5 << 20;
const MAX_PART_NUMBER: i32 = 10_000;
/// How much of an object is looked at to name its content type.
const SNIFF_BYTES: u64 = 8192;
/// S3's content type for objects written without one.
const DEFAULT_CONTENT_TYPE: &str = "binary/octet-stream";
/// Chunks of a GET body in flight between the file and the connection.
const GET_CHANNEL_DEPTH: usize = 4;
const GET_CHUNK: usize = 256 * 1024;

fn err(code: S3ErrorCode, message: impl Into<String>) -> S3Error {
    S3Error::with_message(code, message.into())
}

pub(crate) struct Endpoint {
    pub(crate) store: Arc<FsStore>,
    pub(crate) bucket: String,
    pub(crate) region: String,
    pub(crate) events: mpsc::UnboundedSender<Value>,
    pub(crate) parts: Parts,
    pub(crate) sequencer: Sequencer,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("root", &self.store.root())
            .field("bucket", &self.bucket)
            .field("parts", &self.parts.dir())
            .finish_non_exhaustive()
    }
}

/// How a store failure reads to a client.
fn store_error(key: &str, error: StoreError) -> S3Error {
    match error {
        StoreError::NotFound { .. } => {
            err(S3ErrorCode::NoSuchKey, format!("no object at key {key:?}"))
        }
        StoreError::InvalidKey { reason, .. } => err(
            S3ErrorCode::InvalidArgument,
            format!("key {key:?} cannot be stored here: {reason}"),
        ),
        StoreError::AlreadyExists { .. } => err(
            S3ErrorCode::PreconditionFailed,
            format!(
                "an object already exists at {key:?} and If-None-Match: * forbids replacing it"
            ),
        ),
        StoreError::VersionMismatch { .. } => err(
            S3ErrorCode::NoSuchVersion,
            format!("the object at {key:?} is not the version asked for"),
        ),
        other @ StoreError::Backend { .. } => {
            tracing::error!(error = %other, "object store failed");
            err(S3ErrorCode::InternalError, other.to_string())
        }
    }
}

/// `If-None-Match: *` makes a write create-only; other conditions are not supported.
fn write_mode(
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
) -> S3Result<WriteMode> {
    if if_match.is_some() {
        return Err(err(
            S3ErrorCode::NotImplemented,
            "If-Match is not supported by this endpoint",
        ));
    }
    match if_none_match {
        None => Ok(WriteMode::Overwrite),
        Some(condition) if condition.is_any() => Ok(WriteMode::CreateOnly),
        Some(_) => Err(err(
            S3ErrorCode::NotImplemented,
            "If-None-Match on a write accepts only *",
        )),
    }
}

/// The declared body length: required, at most S3's limit.
fn declared_length(content_length: Option<i64>, limit: u64) -> S3Result<u64> {
    let declared = content_length.ok_or_else(|| {
        err(
            S3ErrorCode::MissingContentLength,
            "Content-Length is required: send the body with its length, not chunked",
        )
    })?;
    let declared = u64::try_from(declared).map_err(|_| {
        err(
            S3ErrorCode::InvalidArgument,
            format!("Content-Length {declared} is negative"),
        )
    })?;
    if declared > limit {
        return Err(err(
            S3ErrorCode::EntityTooLarge,
            format!("{declared} bytes is more than the {limit} bytes allowed"),
        ));
    }
    Ok(declared)
}

fn body_or_empty(body: Option<StreamingBlob>) -> StreamingBlob {
    body.unwrap_or_else(|| StreamingBlob::from(s3s::Body::empty()))
}

fn version_id(meta: &ObjectMeta) -> Option<String> {
    meta.version.as_ref().map(|v| v.0.clone())
}

/// Content type of a stored object: the store keeps none, so JSON records by their name and
/// anything else by its first bytes.
fn content_type_of(key: &str, head: &[u8]) -> String {
    if std::path::Path::new(key)
        .extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("json"))
    {
        return "application/json".to_owned();
    }
    infer::get(head).map_or_else(
        || "application/octet-stream".to_owned(),
        |kind| kind.mime_type().to_owned(),
    )
}

fn timestamp(time: Option<chrono::DateTime<chrono::Utc>>) -> Option<Timestamp> {
    time.map(|t| Timestamp::from(SystemTime::from(t)))
}

/// A GET body fed by a task reading the file, so a slow client holds one chunk per slot.
struct ChannelBody(mpsc::Receiver<std::io::Result<Bytes>>);

impl Stream for ChannelBody {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

impl Endpoint {
    fn check_bucket(&self, bucket: &str) -> S3Result<()> {
        if bucket == self.bucket {
            Ok(())
        } else {
            Err(err(
                S3ErrorCode::NoSuchBucket,
                format!(
                    "no bucket {bucket:?} here: this endpoint serves the bucket {:?} only",
                    self.bucket
                ),
            ))
        }
    }

    /// Clients write under `incoming/` only, as the bucket policy allows on AWS.
    fn check_writable(&self, bucket: &str, key: &str) -> S3Result<()> {
        self.check_bucket(bucket)?;
        if !key.starts_with(INCOMING_PREFIX) {
            return Err(err(
                S3ErrorCode::AccessDenied,
                format!("writes are allowed under {INCOMING_PREFIX} only, not to {key:?}"),
            ));
        }
        self.store
            .path_of(key)
            .map(drop)
            .map_err(|e| store_error(key, e))
    }

    /// Clients read under `trusted/` only: on AWS the bucket policy keeps `incoming/` and
    /// `quarantine/` to the pipeline.
    fn check_readable(&self, bucket: &str, key: &str) -> S3Result<()> {
        self.check_bucket(bucket)?;
        if !key.starts_with(TRUSTED_PREFIX) {
            return Err(err(
                S3ErrorCode::AccessDenied,
                format!("reads are allowed under {TRUSTED_PREFIX} only, not of {key:?}"),
            ));
        }
        Ok(())
    }

    /// Refuses a create-only write to a taken key before its body is read (the write
    /// itself decides, atomically; this only spares the upload).
    async fn refuse_taken(&self, key: &str, mode: WriteMode) -> S3Result<()> {
        if mode == WriteMode::CreateOnly
            && self
                .store
                .head(key)
                .await
                .map_err(|e| store_error(key, e))?
                .is_some()
        {
            return Err(store_error(
                key,
                StoreError::AlreadyExists {
                    key: key.to_owned(),
                },
            ));
        }
        Ok(())
    }

    /// Streams a body into the store, verified; nothing is stored unless it all checks out.
    async fn write_object(
        &self,
        key: &str,
        mut body: VerifiedBody,
        content_type: &str,
        mode: WriteMode,
    ) -> S3Result<(ObjectMeta, Received)> {
        match self
            .store
            .put_stream(key, &mut body, content_type, mode)
            .await
        {
            Ok(meta) => {
                let received = body.received().ok_or_else(|| {
                    err(
                        S3ErrorCode::InternalError,
                        "the body was not read to its end",
                    )
                })?;
                Ok((meta, received))
            }
            Err(error) => Err(body.failure().unwrap_or_else(|| store_error(key, error))),
        }
    }

    fn announce(
        &self,
        created: Created,
        key: &str,
        meta: &ObjectMeta,
        etag: &str,
        principal: Option<&str>,
    ) {
        let object = event::Object {
            key,
            size: meta.size,
            etag,
            version_id: meta.version.as_ref().map(|v| v.0.as_str()),
        };
        let record = event::object_created(
            &self.region,
            &self.bucket,
            created,
            &object,
            &self.sequencer.next(),
            principal,
        );
        if self.events.send(record).is_err() {
            tracing::warn!(key, "object written but nobody listens for its event");
        }
    }

    /// The current object at `key` (exactly `version`, when given) and a reader pinned to it.
    async fn open_readable(
        &self,
        key: &str,
        version: Option<&str>,
    ) -> S3Result<(ObjectMeta, ObjectVersion)> {
        let meta = self
            .store
            .head(key)
            .await
            .map_err(|e| store_error(key, e))?
            .ok_or_else(|| err(S3ErrorCode::NoSuchKey, format!("no object at key {key:?}")))?;
        let current = meta.version.clone().ok_or_else(|| {
            err(
                S3ErrorCode::InternalError,
                "the store reported no version for the object",
            )
        })?;
        if let Some(asked) = version
            && asked != current.0
        {
            return Err(err(
                S3ErrorCode::NoSuchVersion,
                format!("{key:?} has no version {asked:?}"),
            ));
        }
        Ok((meta, current))
    }

    async fn sniff(&self, key: &str, version: &ObjectVersion) -> S3Result<String> {
        let head = self
            .store
            .read_range(key, Some(version), 0, SNIFF_BYTES)
            .await
            .map_err(|e| store_error(key, e))?;
        Ok(content_type_of(key, &head))
    }
}

fn announced_of(
    crc32: Option<String>,
    crc32c: Option<String>,
    crc64nvme: Option<String>,
    sha1: Option<String>,
    sha256: Option<String>,
    algorithm: Option<s3s::dto::ChecksumAlgorithm>,
    content_md5: Option<String>,
) -> Announced {
    Announced {
        crc32,
        crc32c,
        crc64nvme,
        sha1,
        sha256,
        algorithm,
        content_md5,
    }
}

#[async_trait::async_trait]
impl S3 for Endpoint {
    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let principal = req.credentials.as_ref().map(|c| c.access_key.clone());
        let trailers = req.trailing_headers;
        let input = req.input;
        let key = input.key;
        self.check_writable(&input.bucket, &key)?;
        let mode = write_mode(input.if_match.as_ref(), input.if_none_match.as_ref())?;
        let declared = declared_length(input.content_length, MAX_PUT_SIZE)?;
        self.refuse_taken(&key, mode).await?;
        let announced = announced_of(
            input.checksum_crc32,
            input.checksum_crc32c,
            input.checksum_crc64nvme,
            input.checksum_sha1,
            input.checksum_sha256,
            input.checksum_algorithm,
            input.content_md5,
        );
        let body = VerifiedBody::new(body_or_empty(input.body), declared, announced, trailers)?;
        let content_type = input
            .content_type
            .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.to_owned());
        let (meta, received) = self.write_object(&key, body, &content_type, mode).await?;
        let etag = hex::encode(received.md5);
        self.announce(Created::Put, &key, &meta, &etag, principal.as_deref());
        let checksums = received.checksums;
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(ETag::Strong(etag)),
            version_id: version_id(&meta),
            checksum_crc32: checksums.checksum_crc32,
            checksum_crc32c: checksums.checksum_crc32c,
            checksum_crc64nvme: checksums.checksum_crc64nvme,
            checksum_sha1: checksums.checksum_sha1,
            checksum_sha256: checksums.checksum_sha256,
            ..Default::default()
        }))
    }

    /// A browser form upload. s3s has checked the policy's signature, expiry and every
    /// condition (key, content type, size range, that each form field is covered) and holds
    /// the file in memory, bounded by the policy's range and the configured maximum. As on S3,
    /// a POST cannot be made create-only.
    async fn post_object(
        &self,
        req: S3Request<PostObjectInput>,
    ) -> S3Result<S3Response<PostObjectOutput>> {
        let principal = req.credentials.as_ref().map(|c| c.access_key.clone());
        let input = req.input;
        let key = input.key;
        self.check_writable(&input.bucket, &key)?;
        let declared = declared_length(Some(input.content_length.unwrap_or(0)), MAX_PUT_SIZE)?;
        let announced = announced_of(
            input.checksum_crc32,
            input.checksum_crc32c,
            input.checksum_crc64nvme,
            input.checksum_sha1,
            input.checksum_sha256,
            input.checksum_algorithm,
            input.content_md5,
        );
        let body = VerifiedBody::new(body_or_empty(input.body), declared, announced, None)?;
        let content_type = input
            .content_type
            .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.to_owned());
        let (meta, received) = self
            .write_object(&key, body, &content_type, WriteMode::Overwrite)
            .await?;
        let etag = hex::encode(received.md5);
        self.announce(Created::Post, &key, &meta, &etag, principal.as_deref());
        let mut response = S3Response::new(PostObjectOutput {
            e_tag: Some(ETag::Strong(etag.clone())),
            version_id: version_id(&meta),
            ..Default::default()
        });
        // A 204 carries no body: the ETag and version go in headers, as S3 sends them.
        if let Ok(value) = http::HeaderValue::from_str(&format!("\"{etag}\"")) {
            response.headers.insert(http::header::ETAG, value);
        }
        if let Some(version) = version_id(&meta)
            && let Ok(value) = http::HeaderValue::from_str(&version)
        {
            response.headers.insert("x-amz-version-id", value);
        }
        Ok(response)
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let input = req.input;
        self.check_writable(&input.bucket, &input.key)?;
        let content_type = input
            .content_type
            .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.to_owned());
        let upload_id = self.parts.create(&input.key, &content_type).await?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(upload_id),
            ..Default::default()
        }))
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let trailers = req.trailing_headers;
        let input = req.input;
        self.check_writable(&input.bucket, &input.key)?;
        let number = u32::try_from(input.part_number)
            .ok()
            .filter(|n| (1..=MAX_PART_NUMBER.unsigned_abs()).contains(n))
            .ok_or_else(|| {
                err(
                    S3ErrorCode::InvalidArgument,
                    format!(
                        "part number {} is not between 1 and {MAX_PART_NUMBER}",
                        input.part_number
                    ),
                )
            })?;
        self.parts.get(&input.upload_id, &input.key).await?;
        let declared = declared_length(input.content_length, MAX_PUT_SIZE)?;
        let announced = announced_of(
            input.checksum_crc32,
            input.checksum_crc32c,
            input.checksum_crc64nvme,
            input.checksum_sha1,
            input.checksum_sha256,
            input.checksum_algorithm,
            input.content_md5,
        );
        let mut body = VerifiedBody::new(body_or_empty(input.body), declared, announced, trailers)?;

        let temp = self.parts.temp_path();
        let written: std::io::Result<()> = async {
            let file = tokio::fs::File::create(&temp).await?;
            let mut out = tokio::io::BufWriter::with_capacity(GET_CHUNK, file);
            tokio::io::copy(&mut body, &mut out).await?;
            out.flush().await?;
            out.into_inner().sync_all().await
        }
        .await;
        let received = match (written, body.received()) {
            (Ok(()), Some(received)) => received,
            (result, _) => {
                let _ = tokio::fs::remove_file(&temp).await;
                return Err(body.failure().unwrap_or_else(|| match result {
                    Err(e) => internal("cannot write the part", &e),
                    Ok(()) => err(
                        S3ErrorCode::InternalError,
                        "the part was not read to its end",
                    ),
                }));
            }
        };
        let md5 = hex::encode(received.md5);
        if let Err(error) = self
            .parts
            .install(&input.upload_id, number, &temp, &md5)
            .await
        {
            let _ = tokio::fs::remove_file(&temp).await;
            return Err(error);
        }
        let checksums = received.checksums;
        Ok(S3Response::new(UploadPartOutput {
            e_tag: Some(ETag::Strong(md5)),
            checksum_crc32: checksums.checksum_crc32,
            checksum_crc32c: checksums.checksum_crc32c,
            checksum_crc64nvme: checksums.checksum_crc64nvme,
            checksum_sha1: checksums.checksum_sha1,
            checksum_sha256: checksums.checksum_sha256,
            ..Default::default()
        }))
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let input = req.input;
        self.check_writable(&input.bucket, &input.key)?;
        self.parts.get(&input.upload_id, &input.key).await?;
        let marker = input.part_number_marker.unwrap_or(0);
        let max = usize::try_from(input.max_parts.unwrap_or(1000).clamp(0, 1000)).unwrap_or(1000);
        let after: Vec<_> = self
            .parts
            .list(&input.upload_id)
            .await?
            .into_iter()
            .filter(|p| i64::from(p.number) > i64::from(marker))
            .collect();
        let truncated = after.len() > max;
        let page: Vec<Part> = after
            .into_iter()
            .take(max)
            .map(|p| Part {
                e_tag: Some(ETag::Strong(p.md5)),
                part_number: i32::try_from(p.number).ok(),
                size: i64::try_from(p.size).ok(),
                last_modified: Some(Timestamp::from(p.modified)),
                ..Default::default()
            })
            .collect();
        let next = page.last().and_then(|p| p.part_number);
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(input.upload_id),
            part_number_marker: Some(marker),
            next_part_number_marker: if truncated { next } else { None },
            max_parts: i32::try_from(max).ok(),
            is_truncated: Some(truncated),
            parts: Some(page),
            ..Default::default()
        }))
    }

    #[allow(clippy::too_many_lines)]
    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let principal = req.credentials.as_ref().map(|c| c.access_key.clone());
        let input = req.input;
        let key = input.key;
        let upload_id = input.upload_id;
        self.check_writable(&input.bucket, &key)?;
        let mode = write_mode(input.if_match.as_ref(), input.if_none_match.as_ref())?;
        let upload = self.parts.get(&upload_id, &key).await?;
        let claim = self.parts.claim(&upload_id)?;

        let requested = input
            .multipart_upload
            .and_then(|m| m.parts)
            .unwrap_or_default();
        if requested.is_empty() {
            return Err(err(
                S3ErrorCode::MalformedXML,
                "the completion lists no parts: name at least one",
            ));
        }
        let stored = self.parts.list(&upload_id).await?;
        let mut chosen = Vec::with_capacity(requested.len());
        let mut previous = 0;
        for (i, part) in requested.iter().enumerate() {
            let number = part.part_number.unwrap_or(0);
            if number <= previous {
                return Err(err(
                    S3ErrorCode::InvalidPartOrder,
                    format!(
                        "part {number} (entry {}) does not follow part {previous}: list parts in ascending order, each once",
                        i + 1
                    ),
                ));
            }
            previous = number;
            let etag = part
                .e_tag
                .as_ref()
                .map(|e| e.value().trim_matches('"').to_ascii_lowercase())
                .unwrap_or_default();
            let found = stored
                .iter()
                .find(|p| i64::from(p.number) == i64::from(number) && p.md5 == etag)
                .ok_or_else(|| {
                    err(
                        S3ErrorCode::InvalidPart,
                        format!(
                            "no part {number} with ETag {etag:?} was uploaded (or it was replaced)"
                        ),
                    )
                })?;
            chosen.push(found.clone());
        }
        if let Some((_, all_but_last)) = chosen.split_last() {
            for part in all_but_last {
                if part.size < MIN_PART_SIZE {
                    return Err(err(
                        S3ErrorCode::EntityTooSmall,
                        format!(
                            "part {} has {} bytes: every part but the last must have at least {MIN_PART_SIZE}",
                            part.number, part.size
                        ),
                    ));
                }
            }
        }
        let total: u64 = chosen.iter().map(|p| p.size).sum();
        if let Some(expected) = input.mpu_object_size
            && i64::try_from(total).ok() != Some(expected)
        {
            return Err(err(
                S3ErrorCode::InvalidRequest,
                format!("the parts hold {total} bytes, x-amz-mp-object-size says {expected}"),
            ));
        }
        self.refuse_taken(&key, mode).await?;

        // The multipart ETag: MD5 of the parts' binary MD5s, and the part count.
        let mut md5_of_md5s = Md5::new();
        for part in &chosen {
            let digest = hex::decode(&part.md5)
                .map_err(|e| err(S3ErrorCode::InternalError, format!("bad part name: {e}")))?;
            md5_of_md5s.update(&digest);
        }
        let etag = format!("{}-{}", hex::encode(md5_of_md5s.finalize()), chosen.len());

        let mut reader = Concatenated::new(chosen.iter().map(|p| p.path.clone()).collect(), total);
        let meta = self
            .store
            .put_stream(&key, &mut reader, &upload.content_type, mode)
            .await
            .map_err(|e| store_error(&key, e))?;
        self.parts.remove(&upload_id, &claim).await?;
        drop(claim);
        self.announce(
            Created::CompleteMultipartUpload,
            &key,
            &meta,
            &etag,
            principal.as_deref(),
        );
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(input.bucket.clone()),
            key: Some(key.clone()),
            location: Some(format!("/{}/{}", input.bucket, key)),
            e_tag: Some(ETag::Strong(etag)),
            version_id: version_id(&meta),
            ..Default::default()
        }))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let input = req.input;
        self.check_writable(&input.bucket, &input.key)?;
        self.parts.get(&input.upload_id, &input.key).await?;
        let claim = self.parts.claim(&input.upload_id)?;
        self.parts.remove(&input.upload_id, &claim).await?;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let input = req.input;
        self.check_readable(&input.bucket, &input.key)?;
        let (meta, version) = self
            .open_readable(&input.key, input.version_id.as_deref())
            .await?;
        let content_type = self.sniff(&input.key, &version).await?;
        Ok(S3Response::new(HeadObjectOutput {
            content_length: i64::try_from(meta.size).ok(),
            content_type: Some(content_type),
            e_tag: Some(ETag::Strong(version.0.clone())),
            last_modified: timestamp(meta.last_modified),
            version_id: Some(version.0),
            accept_ranges: Some("bytes".to_owned()),
            ..Default::default()
        }))
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let input = req.input;
        let key = input.key;
        self.check_readable(&input.bucket, &key)?;
        let (meta, version) = self
            .open_readable(&key, input.version_id.as_deref())
            .await?;
        let content_type = self.sniff(&key, &version).await?;
        let range = match &input.range {
            Some(range) => Some(range.check(meta.size).map_err(|_| {
                err(
                    S3ErrorCode::InvalidRange,
                    format!("the range is outside the object's {} bytes", meta.size),
                )
            })?),
            None => None,
        };
        let (start, end) = range.as_ref().map_or((0, meta.size), |r| (r.start, r.end));
        let mut reader = self
            .store
            .open(&key, Some(&version))
            .await
            .map_err(|e| store_error(&key, e))?;

        let (tx, rx) = mpsc::channel(GET_CHANNEL_DEPTH);
        tokio::spawn(async move {
            // The store's reader does not seek: skip to the range's start.
            if start > 0
                && let Err(e) =
                    tokio::io::copy(&mut (&mut reader).take(start), &mut tokio::io::sink()).await
            {
                let _ = tx.send(Err(e)).await;
                return;
            }
            let mut rest = (&mut reader).take(end - start);
            loop {
                let mut chunk = vec![0; GET_CHUNK];
                match rest.read(&mut chunk).await {
                    Ok(0) => return,
                    Ok(n) => {
                        chunk.truncate(n);
                        if tx.send(Ok(Bytes::from(chunk))).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                }
            }
        });

        Ok(S3Response::new(GetObjectOutput {
            body: Some(StreamingBlob::wrap(ChannelBody(rx))),
            content_length: i64::try_from(end - start).ok(),
            content_range: range.map(|r| format!("bytes {}-{}/{}", r.start, r.end - 1, meta.size)),
            content_type: Some(content_type),
            e_tag: Some(ETag::Strong(version.0.clone())),
            last_modified: timestamp(meta.last_modified),
            version_id: Some(version.0),
            accept_ranges: Some("bytes".to_owned()),
            ..Default::default()
        }))
    }
}
