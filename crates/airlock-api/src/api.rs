//! The routes: create an upload intent and sign its upload, complete or abort a multipart
//! upload, re-sign a part, report status. One function per route; [`Api::handle`] routes.

use std::sync::Arc;
use std::time::Duration;

use airlock_core::intent::{IntentState, UploadIntent};
use airlock_core::keys::{Purpose, TRUSTED_PREFIX, UploadId, UploadKey};
use airlock_core::policy::{Policies, UploadPolicy, normalize_type};
use airlock_core::ports::{
    Clock, CreateOutcome, IdempotencyClaim, IntentStore, IntentStoreError, Retry, Transition,
    TransitionResult,
};
use airlock_core::stages::error_chain;
use airlock_presign::{PostRequest, Presigner, PutRequest, UploadPartRequest};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use http::{HeaderMap, Method, StatusCode};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::identity::Caller;
use crate::multipart::{CompletedPart, MultipartError, MultipartUploads};
use crate::problem::Problem;

/// S3's limits on one PUT / POST, on part sizes and on the number of parts.
const MAX_SINGLE_UPLOAD: u64 = 5 * 1024 * 1024 * 1024;
const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;
const MAX_PARTS: u64 = 10_000;
const MIB: u64 = 1024 * 1024;
const MAX_FILENAME_CHARS: usize = 255;
const MAX_IDEMPOTENCY_KEY: usize = 255;
const MAX_ETAG: usize = 1024;
/// Part URLs signed into a create answer; the rest come from `GET /uploads/{id}/parts/{n}`.
const MAX_INLINE_PARTS: u64 = 1000;

/// How the API signs and sizes uploads.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// The bucket uploads go to.
    pub bucket: String,
    /// From this size up, an upload without an explicit method goes in parts.
    pub multipart_threshold: u64,
    /// The smallest part size used (grown when a file would need more than 10,000 parts).
    pub part_size: u64,
    /// How long an upload URL or form is valid (never past the intent's expiry).
    pub upload_url_validity: Duration,
    /// How long a status response's download URLs are valid.
    pub download_url_validity: Duration,
}

impl ApiConfig {
    /// 100 MiB multipart threshold, 8 MiB parts, 5 minute upload and download URLs.
    #[must_use]
    pub fn new(bucket: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            multipart_threshold: 100 * MIB,
            part_size: 8 * MIB,
            upload_url_validity: Duration::from_mins(5),
            download_url_validity: Duration::from_mins(5),
        }
    }
}

/// A configuration the API cannot run with.
#[derive(Debug, thiserror::Error)]
#[error("invalid API configuration: {0}")]
pub struct ConfigError(String);

/// One HTTP request, as the entry point (Lambda or local server) received it.
#[derive(Debug, Clone, Copy)]
pub struct ApiRequest<'a> {
    pub method: &'a Method,
    /// The path without query string, e.g. `/uploads/0193.../complete`.
    pub path: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// The upload API over its ports.
pub struct Api {
    config: ApiConfig,
    policies: Arc<Policies>,
    intents: Arc<dyn IntentStore>,
    presigner: Arc<Presigner>,
    multipart: Arc<dyn MultipartUploads>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// How the bytes go to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UploadMethod {
    Put,
    Post,
    Multipart,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateRequest {
    purpose: String,
    content_type: String,
    size: u64,
    #[serde(default)]
    filename: Option<String>,
    #[serde(default)]
    sha256: Option<String>,
    #[serde(default)]
    method: Option<UploadMethod>,
}

/// A request that passed every check, ready to become an intent.
#[derive(Debug, Serialize)]
struct ValidCreate {
    purpose: Purpose,
    content_type: String,
    size: u64,
    filename: Option<String>,
    sha256: Option<String>,
    method: UploadMethod,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CompleteRequest {
    parts: Vec<CompletedPart>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PartUrl {
    part_number: u32,
    size: u64,
    url: String,
    expires_at: DateTime<Utc>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct CreateResponse {
    upload_id: UploadId,
    key: String,
    method: UploadMethod,
    url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    headers: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fields: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    part_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    part_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parts: Option<Vec<PartUrl>>,
    expires_at: DateTime<Utc>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Download {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    width: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    height: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_type: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<serde_json::Value>,
    url: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusResponse {
    upload_id: UploadId,
    state: IntentState,
    purpose: Purpose,
    content_type: String,
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    filename: Option<String>,
    method: UploadMethod,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    original: Option<Download>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    variants: Vec<Download>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PurposeConfig<'a> {
    allowed_types: &'a [String],
    max_size: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ConfigResponse<'a> {
    purposes: std::collections::BTreeMap<&'a str, PurposeConfig<'a>>,
    multipart_threshold: u64,
    part_size: u64,
}

fn json_response<T: Serialize>(status: StatusCode, body: &T) -> http::Response<Vec<u8>> {
    match serde_json::to_vec(body) {
        Ok(bytes) => {
            let mut response = http::Response::new(bytes);
            *response.status_mut() = status;
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            response.headers_mut().insert(
                http::header::CACHE_CONTROL,
                http::HeaderValue::from_static("no-store"),
            );
            response
        }
        Err(e) => Problem::internal(format!("cannot encode the response: {e}")).into_response(),
    }
}

fn store_problem(err: &IntentStoreError) -> Problem {
    tracing::error!(error = %err, "intent store failed");
    match err.retry {
        Retry::Transient => Problem::unavailable("the intent store is busy: retry shortly"),
        Retry::Permanent => Problem::internal("the intent store failed"),
    }
}

fn multipart_problem(err: MultipartError) -> Problem {
    match err {
        MultipartError::InvalidParts { code, message } => {
            Problem::unprocessable(format!("the store refused the parts: {code}: {message}"))
        }
        MultipartError::AlreadyExists { .. } => {
            Problem::conflict("an object was already written for this upload")
        }
        MultipartError::NoSuchUpload { .. } => {
            Problem::conflict("the multipart upload was already completed or aborted")
        }
        MultipartError::Backend { retry, .. } => {
            tracing::error!(error = %error_chain(&err), "object store failed");
            match retry {
                Retry::Transient => {
                    Problem::unavailable("the object store is unavailable: retry shortly")
                }
                Retry::Permanent => Problem::internal("the object store refused the request"),
            }
        }
    }
}

/// The parts a file of `size` bytes is cut into: the part size and the number of parts.
fn part_layout(size: u64, min_part_size: u64) -> (u64, u64) {
    let needed = size.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB;
    let part_size = needed.max(min_part_size);
    (part_size, size.div_ceil(part_size).max(1))
}

fn part_size_of(part_number: u64, part_size: u64, size: u64) -> u64 {
    let start = (part_number - 1) * part_size;
    part_size.min(size - start)
}

fn valid_content_type(content_type: &str) -> bool {
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    content_type
        .split_once('/')
        .is_some_and(|(family, sub)| token(family) && token(sub))
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .ok()
        .filter(|t| {
            !t.is_empty() && t.len() <= MAX_IDEMPOTENCY_KEY && t.bytes().all(|b| b.is_ascii_graphic())
        })
        .ok_or_else(|| {
            Problem::bad_request(format!(
                "the Idempotency-Key header must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"
            ))
        })?;
    Ok(Some(text.to_owned()))
}

fn parse_json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, Problem> {
    if body.is_empty() {
        return Err(Problem::bad_request("the request has no JSON body"));
    }
    let mut reader = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut reader).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            Problem::bad_request(format!("the request body is not valid: {inner}"))
        } else {
            Problem::bad_request(format!("field {path}: {inner}"))
        }
    })?;
    reader
        .end()
        .map_err(|e| Problem::bad_request(format!("the request body is not valid: {e}")))?;
    Ok(value)
}

fn method_of(intent: &UploadIntent) -> UploadMethod {
    // A POST and a PUT upload look the same once stored; only multipart leaves a trace.
    if intent.multipart_upload_id.is_some() {
        UploadMethod::Multipart
    } else {
        UploadMethod::Put
    }
}

impl Api {
    pub fn new(
        config: ApiConfig,
        policies: Arc<Policies>,
        intents: Arc<dyn IntentStore>,
        presigner: Arc<Presigner>,
        multipart: Arc<dyn MultipartUploads>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ConfigError> {
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&config.part_size) {
            return Err(ConfigError(format!(
                "part size {} must be between 5 MiB and 5 GiB",
                config.part_size
            )));
        }
        if config.multipart_threshold == 0 || config.multipart_threshold > MAX_SINGLE_UPLOAD {
            return Err(ConfigError(format!(
                "multipart threshold {} must be between 1 byte and 5 GiB",
                config.multipart_threshold
            )));
        }
        if config.upload_url_validity.as_secs() == 0 || config.download_url_validity.as_secs() == 0
        {
            return Err(ConfigError(
                "URL validities must be at least 1 s".to_owned(),
            ));
        }
        Ok(Self {
            config,
            policies,
            intents,
            presigner,
            multipart,
            clock,
        })
    }

    /// Answers one request. `caller` verifies who is calling; it is asked only on routes
    /// that need it, so a bad token on `GET /config` does not matter.
    pub async fn handle(
        &self,
        request: ApiRequest<'_>,
        caller: impl FnOnce() -> Result<Caller, Problem>,
    ) -> http::Response<Vec<u8>> {
        match self.route(request, caller).await {
            Ok(response) => response,
            Err(problem) => {
                tracing::info!(status = problem.status.as_u16(), code = problem.code, detail = %problem.detail, "request refused");
                problem.into_response()
            }
        }
    }

    async fn route(
        &self,
        request: ApiRequest<'_>,
        caller: impl FnOnce() -> Result<Caller, Problem>,
    ) -> Result<http::Response<Vec<u8>>, Problem> {
        let path = request.path.trim_end_matches('/');
        let segments: Vec<&str> = path.split('/').skip(1).collect();
        let method = request.method;
        let allow = |allowed: &str| {
            Problem::method_not_allowed(format!("{method} is not allowed on {path}: use {allowed}"))
        };
        match segments.as_slice() {
            ["config"] => {
                if method != Method::GET {
                    return Err(allow("GET"));
                }
                Ok(self.config_route())
            }
            ["uploads"] => {
                if method != Method::POST {
                    return Err(allow("POST"));
                }
                let caller = caller()?;
                self.create(&caller, request.headers, request.body).await
            }
            ["uploads", id] => {
                let id = parse_id(id)?;
                match *method {
                    Method::GET => self.status(&caller()?, id).await,
                    Method::DELETE => self.abort(&caller()?, id).await,
                    _ => Err(allow("GET or DELETE")),
                }
            }
            ["uploads", id, "complete"] => {
                if method != Method::POST {
                    return Err(allow("POST"));
                }
                let id = parse_id(id)?;
                self.complete(&caller()?, id, request.body).await
            }
            ["uploads", id, "parts", number] => {
                if method != Method::GET {
                    return Err(allow("GET"));
                }
                let id = parse_id(id)?;
                let number: u64 = number
                    .parse()
                    .map_err(|_| Problem::not_found(format!("no part {number:?}")))?;
                self.part(&caller()?, id, number).await
            }
            _ => Err(Problem::not_found(format!("no route {path}"))),
        }
    }

    fn config_route(&self) -> http::Response<Vec<u8>> {
        let purposes = self
            .policies
            .purposes()
            .map(|(name, policy)| {
                (
                    name,
                    PurposeConfig {
                        allowed_types: &policy.allowed_types,
                        max_size: policy.max_size,
                    },
                )
            })
            .collect();
        json_response(
            StatusCode::OK,
            &ConfigResponse {
                purposes,
                multipart_threshold: self.config.multipart_threshold,
                part_size: self.config.part_size,
            },
        )
    }

    /// Checks a create request against the purpose's policy, in the order a client can fix
    /// things: the purpose, the type, the size, the optional fields, the method.
    fn validate(&self, request: CreateRequest) -> Result<(ValidCreate, &UploadPolicy), Problem> {
        let purpose = Purpose::new(&request.purpose)
            .ok()
            .and_then(|p| self.policies.get(&p).map(|policy| (p, policy)));
        let Some((purpose, policy)) = purpose else {
            return Err(Problem::unprocessable(format!(
                "unknown purpose {:?}: GET /config lists the purposes",
                request.purpose
            )));
        };
        let content_type = normalize_type(&request.content_type);
        if !valid_content_type(&content_type) {
            return Err(Problem::bad_request(format!(
                "contentType {:?} is not a media type (type/subtype)",
                request.content_type
            )));
        }
        if !policy.allows(&content_type) {
            return Err(Problem::type_not_allowed(format!(
                "purpose {purpose} does not accept {content_type}; it accepts {}",
                policy.allowed_types.join(", ")
            )));
        }
        if request.size == 0 {
            return Err(Problem::unprocessable("size must be at least 1 byte"));
        }
        if request.size > policy.max_size {
            return Err(Problem::too_large(format!(
                "size {} is above purpose {purpose}'s maximum of {} bytes",
                request.size, policy.max_size
            )));
        }
        if let Some(filename) = &request.filename
            && (filename.is_empty()
                || filename.chars().count() > MAX_FILENAME_CHARS
                || filename.chars().any(char::is_control))
        {
            return Err(Problem::unprocessable(format!(
                "filename must be 1 to {MAX_FILENAME_CHARS} characters without control characters"
            )));
        }
        let sha256 = match request.sha256 {
            Some(hex_digest) => {
                let lower = hex_digest.to_ascii_lowercase();
                if lower.len() != 64 || !lower.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(Problem::unprocessable(
                        "sha256 must be the 64 hex digits of the file's SHA-256",
                    ));
                }
                Some(lower)
            }
            None => None,
        };
        let method = request
            .method
            .unwrap_or(if request.size >= self.config.multipart_threshold {
                UploadMethod::Multipart
            } else {
                UploadMethod::Put
            });
        if method != UploadMethod::Multipart && request.size > MAX_SINGLE_UPLOAD {
            return Err(Problem::unprocessable(format!(
                "a single {method:?} upload can carry at most 5 GiB; use multipart"
            )));
        }
        if method == UploadMethod::Multipart {
            let (part_size, _) = part_layout(request.size, self.config.part_size);
            if part_size > MAX_PART_SIZE {
                return Err(Problem::unprocessable(
                    "the file is too large for 10,000 parts of at most 5 GiB",
                ));
            }
        }
        Ok((
            ValidCreate {
                purpose,
                content_type,
                size: request.size,
                filename: request.filename,
                sha256,
                method,
            },
            policy,
        ))
    }

    async fn create(
        &self,
        caller: &Caller,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<http::Response<Vec<u8>>, Problem> {
        let idempotency_key = idempotency_key(headers)?;
        let request: CreateRequest = parse_json(body)?;
        let (valid, policy) = self.validate(request)?;

        let now = self.clock.now();
        let ttl = chrono::Duration::seconds(
            i64::try_from(policy.intent_ttl_seconds).unwrap_or(i64::MAX / 1000),
        );
        let id = UploadId::generate();
        let upload = UploadKey::new(caller.tenant.clone(), valid.purpose.clone(), id);
        let multipart_upload_id = if valid.method == UploadMethod::Multipart {
            Some(
                self.multipart
                    .create(&upload.incoming(), &valid.content_type)
                    .await
                    .map_err(multipart_problem)?,
            )
        } else {
            None
        };
        let intent = UploadIntent {
            id,
            tenant: caller.tenant.clone(),
            purpose: valid.purpose.clone(),
            declared_type: valid.content_type.clone(),
            declared_size: valid.size,
            sha256: valid.sha256.clone(),
            filename: valid.filename.clone(),
            uploader: Some(caller.subject.clone()),
            state: IntentState::Pending,
            created_at: now,
            updated_at: now,
            expires_at: now + ttl,
            outcome: None,
            multipart_upload_id,
        };

        // The intent is stored before anything is signed: an object can only ever arrive
        // for an intent that exists.
        let (intent, replayed) = self
            .store_intent(intent, idempotency_key.as_deref(), &valid)
            .await?;
        if replayed && (intent.state != IntentState::Pending || intent.expires_at <= now) {
            return Err(Problem::conflict(format!(
                "the upload made for this Idempotency-Key is {} now (expires {}): GET /uploads/{}",
                intent.state,
                intent.expires_at.to_rfc3339(),
                intent.id
            )));
        }
        let response = self.sign_upload(&intent, valid.method, now)?;
        let mut response = json_response(StatusCode::CREATED, &response);
        if let Ok(location) = http::HeaderValue::from_str(&format!("/uploads/{}", intent.id)) {
            response
                .headers_mut()
                .insert(http::header::LOCATION, location);
        }
        if replayed {
            response.headers_mut().insert(
                "idempotent-replayed",
                http::HeaderValue::from_static("true"),
            );
        }
        Ok(response)
    }

    /// Stores a new intent, or finds the one an earlier request with the same idempotency
    /// key made (then the multipart upload opened for this request is aborted). Returns the
    /// intent to sign for and whether it is the earlier one.
    async fn store_intent(
        &self,
        intent: UploadIntent,
        idempotency_key: Option<&str>,
        valid: &ValidCreate,
    ) -> Result<(UploadIntent, bool), Problem> {
        let stored = match idempotency_key {
            Some(key) => {
                let request_hash = hex::encode(Sha256::digest(
                    serde_json::to_vec(valid).unwrap_or_default(),
                ));
                let claim = IdempotencyClaim {
                    key: key.to_owned(),
                    request_hash,
                };
                self.intents.create_idempotent(&intent, &claim).await
            }
            None => self.intents.create(&intent).await.map(|inserted| {
                if inserted {
                    CreateOutcome::Created
                } else {
                    CreateOutcome::KeyReused
                }
            }),
        };
        let outcome = match stored {
            Ok(outcome) => outcome,
            Err(err) => {
                self.abandon_multipart(&intent).await;
                return Err(store_problem(&err));
            }
        };
        match outcome {
            CreateOutcome::Created => Ok((intent, false)),
            CreateOutcome::Replayed(earlier) => {
                self.abandon_multipart(&intent).await;
                Ok((*earlier, true))
            }
            CreateOutcome::KeyReused => {
                self.abandon_multipart(&intent).await;
                Err(if idempotency_key.is_some() {
                    Problem::unprocessable(
                        "this Idempotency-Key was used for another request: use a new key",
                    )
                } else {
                    Problem::internal("a fresh upload id collided with an existing one")
                })
            }
        }
    }

    /// Aborts a multipart upload opened for an intent that will not be used; a failure only
    /// leaves an upload the bucket's lifecycle rule aborts.
    async fn abandon_multipart(&self, intent: &UploadIntent) {
        if let Some(upload_id) = &intent.multipart_upload_id
            && let Err(err) = self
                .multipart
                .abort(&intent.key().incoming(), upload_id)
                .await
        {
            tracing::warn!(error = %error_chain(&err), upload_id, "could not abort an unused multipart upload");
        }
    }

    /// How long a URL signed now for this intent may be valid: the configured validity,
    /// never past the intent's expiry.
    fn validity(&self, intent: &UploadIntent, now: DateTime<Utc>) -> Duration {
        let left = (intent.expires_at - now).to_std().unwrap_or_default();
        self.config
            .upload_url_validity
            .min(left)
            .max(Duration::from_secs(1))
    }

    fn sign_upload(
        &self,
        intent: &UploadIntent,
        method: UploadMethod,
        now: DateTime<Utc>,
    ) -> Result<CreateResponse, Problem> {
        let key = intent.key().incoming();
        let validity = self.validity(intent, now);
        let signing = |e: airlock_presign::PresignError| {
            Problem::internal(format!("cannot sign the upload: {e}"))
        };
        let mut response = CreateResponse {
            upload_id: intent.id,
            key: key.clone(),
            method,
            url: String::new(),
            headers: None,
            fields: None,
            part_size: None,
            part_count: None,
            parts: None,
            expires_at: now,
        };
        match (method, &intent.multipart_upload_id) {
            (UploadMethod::Multipart, Some(_)) => {
                let (part_size, count) = part_layout(intent.declared_size, self.config.part_size);
                // A Lambda answer holds at most 6 MB: later parts are signed on request.
                let parts = (1..=count.min(MAX_INLINE_PARTS))
                    .map(|n| self.sign_part(intent, n, now))
                    .collect::<Result<Vec<_>, _>>()?;
                response.expires_at = parts.first().map_or(now, |p| p.expires_at);
                response.url = format!("/uploads/{}/complete", intent.id);
                response.part_size = Some(part_size);
                response.part_count = Some(count);
                response.parts = Some(parts);
            }
            (UploadMethod::Post, _) => {
                let post = self
                    .presigner
                    .presign_post(
                        &PostRequest::new(
                            &self.config.bucket,
                            &key,
                            &intent.declared_type,
                            intent.declared_size,
                            intent.declared_size,
                        )
                        .expires_in(validity),
                        now,
                    )
                    .map_err(signing)?;
                response.url = post.url;
                response.fields = Some(
                    post.fields
                        .into_iter()
                        .map(|(name, value)| (name.to_owned(), value.into()))
                        .collect(),
                );
                response.expires_at = post.expires_at;
            }
            _ => {
                let checksum = intent
                    .sha256
                    .as_deref()
                    .and_then(|h| hex::decode(h).ok())
                    .map(|digest| base64::engine::general_purpose::STANDARD.encode(digest));
                let mut put = PutRequest::new(
                    &self.config.bucket,
                    &key,
                    &intent.declared_type,
                    intent.declared_size,
                )
                .expires_in(validity);
                if let Some(checksum) = checksum.as_deref() {
                    put = put.checksum_sha256(checksum);
                }
                let signed = self.presigner.presign_put(&put, now).map_err(signing)?;
                response.url = signed.url;
                // Content-Length is signed too, but browsers and HTTP clients set it
                // themselves from the body (and refuse to be told).
                response.headers = Some(
                    signed
                        .headers
                        .into_iter()
                        .filter(|(name, _)| *name != "content-length")
                        .map(|(name, value)| (name.to_owned(), value.into()))
                        .collect(),
                );
                response.expires_at = signed.expires_at;
            }
        }
        Ok(response)
    }

    fn sign_part(
        &self,
        intent: &UploadIntent,
        part_number: u64,
        now: DateTime<Utc>,
    ) -> Result<PartUrl, Problem> {
        let (part_size, count) = part_layout(intent.declared_size, self.config.part_size);
        let upload_id = intent
            .multipart_upload_id
            .as_deref()
            .ok_or_else(|| Problem::conflict("this upload is not a multipart upload"))?;
        if !(1..=count).contains(&part_number) {
            return Err(Problem::not_found(format!(
                "no part {part_number}: this upload has parts 1 to {count}"
            )));
        }
        let size = part_size_of(part_number, part_size, intent.declared_size);
        let key = intent.key().incoming();
        let signed = self
            .presigner
            .presign_upload_part(
                &UploadPartRequest {
                    bucket: &self.config.bucket,
                    key: &key,
                    upload_id,
                    part_number: u32::try_from(part_number).unwrap_or(u32::MAX),
                    content_length: size,
                    expires_in: Some(self.validity(intent, now)),
                },
                now,
            )
            .map_err(|e| Problem::internal(format!("cannot sign part {part_number}: {e}")))?;
        Ok(PartUrl {
            part_number: u32::try_from(part_number).unwrap_or(u32::MAX),
            size,
            url: signed.url,
            expires_at: signed.expires_at,
        })
    }

    /// The caller's intent with this id: another tenant's is "not found", like a missing one.
    async fn own_intent(&self, caller: &Caller, id: UploadId) -> Result<UploadIntent, Problem> {
        match self.intents.get(id).await {
            Ok(Some(intent)) if intent.tenant == caller.tenant => Ok(intent),
            Ok(_) => Err(Problem::not_found(format!("no upload {id}"))),
            Err(err) => Err(store_problem(&err)),
        }
    }

    /// The intent, if it still accepts its upload; else why not (409).
    async fn open_intent(&self, caller: &Caller, id: UploadId) -> Result<UploadIntent, Problem> {
        let intent = self.own_intent(caller, id).await?;
        if intent.state != IntentState::Pending {
            return Err(Problem::conflict(format!(
                "upload {id} is {}, not PENDING",
                intent.state
            )));
        }
        if intent.expires_at <= self.clock.now() {
            return Err(Problem::conflict(format!(
                "upload {id} expired at {}",
                intent.expires_at.to_rfc3339()
            )));
        }
        Ok(intent)
    }

    async fn part(
        &self,
        caller: &Caller,
        id: UploadId,
        part_number: u64,
    ) -> Result<http::Response<Vec<u8>>, Problem> {
        let intent = self.open_intent(caller, id).await?;
        let part = self.sign_part(&intent, part_number, self.clock.now())?;
        Ok(json_response(StatusCode::OK, &part))
    }

    async fn complete(
        &self,
        caller: &Caller,
        id: UploadId,
        body: &[u8],
    ) -> Result<http::Response<Vec<u8>>, Problem> {
        let request: CompleteRequest = parse_json(body)?;
        let intent = self.open_intent(caller, id).await?;
        let Some(upload_id) = intent.multipart_upload_id.as_deref() else {
            return Err(Problem::conflict(format!(
                "upload {id} is not a multipart upload: nothing to complete"
            )));
        };
        let (_, count) = part_layout(intent.declared_size, self.config.part_size);
        if request.parts.len() as u64 != count {
            return Err(Problem::unprocessable(format!(
                "upload {id} has {count} parts; the request lists {}",
                request.parts.len()
            )));
        }
        for (index, part) in request.parts.iter().enumerate() {
            if u64::from(part.part_number) != index as u64 + 1 {
                return Err(Problem::unprocessable(format!(
                    "parts must be listed in order 1 to {count}; position {} has part {}",
                    index + 1,
                    part.part_number
                )));
            }
            if part.etag.is_empty() || part.etag.len() > MAX_ETAG {
                return Err(Problem::unprocessable(format!(
                    "part {} has no valid ETag",
                    part.part_number
                )));
            }
        }
        self.multipart
            .complete(&intent.key().incoming(), upload_id, &request.parts)
            .await
            .map_err(multipart_problem)?;
        let intent = self.own_intent(caller, id).await?;
        Ok(json_response(StatusCode::OK, &self.status_of(&intent)))
    }

    async fn abort(
        &self,
        caller: &Caller,
        id: UploadId,
    ) -> Result<http::Response<Vec<u8>>, Problem> {
        let intent = self.own_intent(caller, id).await?;
        if intent.state != IntentState::Pending {
            return Err(Problem::conflict(format!(
                "upload {id} is {}: only a PENDING upload can be aborted",
                intent.state
            )));
        }
        if let Some(upload_id) = &intent.multipart_upload_id {
            match self
                .multipart
                .abort(&intent.key().incoming(), upload_id)
                .await
            {
                Ok(()) | Err(MultipartError::NoSuchUpload { .. }) => {}
                Err(err) => return Err(multipart_problem(err)),
            }
        }
        let transition = Transition {
            from: vec![IntentState::Pending],
            to: IntentState::Expired,
            at: self.clock.now(),
            outcome: None,
            review: false,
        };
        match self.intents.transition(id, transition).await {
            Ok(TransitionResult::Applied(_)) => {
                let mut response = http::Response::new(Vec::new());
                *response.status_mut() = StatusCode::NO_CONTENT;
                Ok(response)
            }
            Ok(TransitionResult::Refused { current }) => Err(Problem::conflict(format!(
                "upload {id} became {current} meanwhile"
            ))),
            Ok(TransitionResult::NotFound) => Err(Problem::not_found(format!("no upload {id}"))),
            Err(err) => Err(store_problem(&err)),
        }
    }

    async fn status(
        &self,
        caller: &Caller,
        id: UploadId,
    ) -> Result<http::Response<Vec<u8>>, Problem> {
        let intent = self.own_intent(caller, id).await?;
        Ok(json_response(StatusCode::OK, &self.status_of(&intent)))
    }

    /// A download of a trusted object; nothing outside `trusted/` is ever signed.
    fn download(&self, key: &str, facts: Option<&serde_json::Value>) -> Option<Download> {
        if !key.starts_with(TRUSTED_PREFIX) {
            return None;
        }
        let signed = self
            .presigner
            .presign_get(
                &self.config.bucket,
                key,
                Some(self.config.download_url_validity),
                self.clock.now(),
            )
            .ok()?;
        let field = |name: &str| facts.and_then(|f| f.get(name)).cloned();
        Some(Download {
            name: field("name"),
            width: field("width"),
            height: field("height"),
            content_type: field("contentType"),
            size: field("size"),
            url: signed.url,
        })
    }

    fn status_of(&self, intent: &UploadIntent) -> StatusResponse {
        let outcome = intent.outcome.as_ref();
        let mut status = StatusResponse {
            upload_id: intent.id,
            state: intent.state,
            purpose: intent.purpose.clone(),
            content_type: intent.declared_type.clone(),
            size: intent.declared_size,
            filename: intent.filename.clone(),
            method: method_of(intent),
            created_at: intent.created_at,
            updated_at: intent.updated_at,
            expires_at: intent.expires_at,
            reason: outcome
                .and_then(|o| o.reason.as_ref())
                .map(|r| r.code().to_owned()),
            sha256: outcome.and_then(|o| o.sha256.clone()),
            metadata: None,
            original: None,
            variants: Vec::new(),
        };
        if intent.state != IntentState::Ready {
            return status;
        }
        let Some(outcome) = outcome else {
            return status;
        };
        match &outcome.media {
            Some(media) => {
                status.metadata = media.get("metadata").cloned();
                let original = media.get("original");
                status.original = original
                    .and_then(|o| o.get("key"))
                    .and_then(serde_json::Value::as_str)
                    .and_then(|key| self.download(key, original));
                status.variants = media
                    .get("variants")
                    .and_then(serde_json::Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|variant| {
                        let key = variant.get("key")?.as_str()?;
                        self.download(key, Some(variant))
                    })
                    .collect();
            }
            None => status.original = self.download(&outcome.key, None),
        }
        status
    }
}

fn parse_id(text: &str) -> Result<UploadId, Problem> {
    text.parse()
        .map_err(|_| Problem::not_found(format!("no upload {text:?}")))
}
