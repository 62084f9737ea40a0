//! The presigner: configuration, credentials, request shapes and the `SigV4` signing itself.

use std::fmt::{self, Write as _};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, Datelike as _, TimeDelta, Timelike as _, Utc};
use hmac::{Hmac, Mac as _};
use sha2::{Digest as _, Sha256};

use crate::encode::{hex_into, uri_encode, uri_encode_into};

type HmacSha256 = Hmac<Sha256>;

/// The longest validity `SigV4` allows for a presigned URL (7 days).
pub const MAX_EXPIRY: Duration = Duration::from_hours(7 * 24);

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
const SERVICE: &str = "s3";
// Presigned URLs cannot commit to a body hash: S3 takes this literal instead.
const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
const MAX_KEY_BYTES: usize = 1024;
const MAX_CONTENT_TYPE_BYTES: usize = 256;

/// How the bucket is addressed on the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addressing {
    /// `https://endpoint/bucket/key` (emulators, most S3-compatible servers).
    Path,
    /// `https://bucket.endpoint/key` (AWS's default).
    VirtualHosted,
}

/// The identity that signs. With a session token (temporary credentials) the token is
/// part of every presigned URL (`X-Amz-Security-Token`) and POST form.
#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl Credentials {
    #[must_use]
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token: None,
        }
    }

    #[must_use]
    pub fn with_session_token(mut self, token: impl Into<String>) -> Self {
        self.session_token = Some(token.into());
        self
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Where and how long presigned requests go.
#[derive(Debug, Clone)]
pub struct PresignConfig {
    /// `http://host[:port]` or `https://host[:port]`, no path: `https://s3.us-east-1.amazonaws.com`,
    /// `http://127.0.0.1:9000`.
    pub endpoint: String,
    /// The signing region (`us-east-1`, ...).
    pub region: String,
    pub addressing: Addressing,
    /// Validity when a request names none.
    pub default_expiry: Duration,
    /// Longer requested validities are cut to this; at most [`MAX_EXPIRY`].
    pub max_expiry: Duration,
}

impl PresignConfig {
    /// A configuration with a 5 minute default validity and a 1 hour cap.
    #[must_use]
    pub fn new(
        endpoint: impl Into<String>,
        region: impl Into<String>,
        addressing: Addressing,
    ) -> Self {
        Self {
            endpoint: endpoint.into(),
            region: region.into(),
            addressing,
            default_expiry: Duration::from_mins(5),
            max_expiry: Duration::from_hours(1),
        }
    }
}

/// What was wrong with a configuration or a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PresignError {
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    Endpoint {
        endpoint: String,
        reason: &'static str,
    },
    #[error("invalid region {0:?}: expected lowercase letters, digits and '-'")]
    Region(String),
    #[error("invalid credentials: {0}")]
    Credentials(&'static str),
    #[error("invalid bucket name {bucket:?}: {reason}")]
    Bucket {
        bucket: String,
        reason: &'static str,
    },
    #[error("invalid object key {key:?}: {reason}")]
    Key { key: String, reason: &'static str },
    #[error("invalid content type {content_type:?}: {reason}")]
    ContentType {
        content_type: String,
        reason: &'static str,
    },
    #[error(
        "invalid x-amz-checksum-sha256 {0:?}: expected the standard base64 of a 32-byte SHA-256 digest"
    )]
    ChecksumSha256(String),
    #[error("invalid expiry: {0}")]
    Expiry(String),
    #[error("invalid part number {0}: S3 accepts 1 to 10000")]
    PartNumber(u32),
    #[error("invalid upload id: it must not be empty")]
    UploadId,
    #[error("invalid content-length-range {min}..={max}: the minimum is above the maximum")]
    LengthRange { min: u64, max: u64 },
    #[error("invalid signing time {0}: SigV4 dates have four-digit years")]
    Time(DateTime<Utc>),
}

/// A presigned `PutObject`. Built with [`PutRequest::new`]; create-only by default.
#[derive(Debug, Clone, Copy)]
pub struct PutRequest<'a> {
    pub bucket: &'a str,
    pub key: &'a str,
    /// Signed: the client must send exactly this `Content-Type`.
    pub content_type: &'a str,
    /// Signed: the client must send a body of exactly this many bytes.
    pub content_length: u64,
    /// Standard base64 of the body's SHA-256: signed as `x-amz-checksum-sha256`, and S3
    /// rejects a body that does not hash to it.
    pub checksum_sha256: Option<&'a str>,
    /// Signs `If-None-Match: *`: S3 then refuses to replace an existing object, so a
    /// leaked URL cannot overwrite the upload once it is written.
    pub create_only: bool,
    /// Requested validity; `None` takes the configured default.
    pub expires_in: Option<Duration>,
}

impl<'a> PutRequest<'a> {
    #[must_use]
    pub fn new(bucket: &'a str, key: &'a str, content_type: &'a str, content_length: u64) -> Self {
        Self {
            bucket,
            key,
            content_type,
            content_length,
            checksum_sha256: None,
            create_only: true,
            expires_in: None,
        }
    }

    #[must_use]
    pub fn checksum_sha256(mut self, base64_digest: &'a str) -> Self {
        self.checksum_sha256 = Some(base64_digest);
        self
    }

    /// Drops `If-None-Match: *` from the signed headers.
    #[must_use]
    pub fn allow_overwrite(mut self) -> Self {
        self.create_only = false;
        self
    }

    #[must_use]
    pub fn expires_in(mut self, validity: Duration) -> Self {
        self.expires_in = Some(validity);
        self
    }
}

/// A presigned `UploadPart` of a multipart upload.
#[derive(Debug, Clone, Copy)]
pub struct UploadPartRequest<'a> {
    pub bucket: &'a str,
    pub key: &'a str,
    pub upload_id: &'a str,
    /// 1 to 10000.
    pub part_number: u32,
    /// Signed: the part must be exactly this many bytes.
    pub content_length: u64,
    pub expires_in: Option<Duration>,
}

/// A POST policy for a browser form upload of one exact key and content type.
#[derive(Debug, Clone, Copy)]
pub struct PostRequest<'a> {
    pub bucket: &'a str,
    pub key: &'a str,
    pub content_type: &'a str,
    /// The file's size must lie in `min_length..=max_length` (`content-length-range`).
    pub min_length: u64,
    pub max_length: u64,
    pub expires_in: Option<Duration>,
}

impl<'a> PostRequest<'a> {
    #[must_use]
    pub fn new(
        bucket: &'a str,
        key: &'a str,
        content_type: &'a str,
        min_length: u64,
        max_length: u64,
    ) -> Self {
        Self {
            bucket,
            key,
            content_type,
            min_length,
            max_length,
            expires_in: None,
        }
    }

    #[must_use]
    pub fn expires_in(mut self, validity: Duration) -> Self {
        self.expires_in = Some(validity);
        self
    }
}

/// A presigned request: send `method` to `url` with exactly `headers` (the `Host` header is
/// the URL's authority, which HTTP clients send on their own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresignedRequest {
    pub method: &'static str,
    pub url: String,
    /// Lowercase names, in signing order; every one is signed, so each must be sent as is.
    pub headers: Vec<(&'static str, String)>,
    /// The end of validity (signing time, truncated to the second, plus the validity).
    pub expires_at: DateTime<Utc>,
}

/// A signed POST form: `multipart/form-data` to `url` with `fields` in order, then the
/// file as the last part (named `file`), as S3 requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresignedPost {
    pub url: String,
    pub fields: Vec<(&'static str, String)>,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
struct Endpoint {
    scheme: &'static str,
    /// Lowercase host, with the port unless it is the scheme's default.
    authority: String,
}

/// The signing key of one UTC day, already keyed into an HMAC (its inner and outer pads
/// are hashed once), so a presign clones it instead of re-deriving.
struct DayKey {
    date: [u8; 8],
    mac: HmacSha256,
}

/// Signs S3 requests for one endpoint, region and identity. Shareable across threads.
pub struct Presigner {
    endpoint: Endpoint,
    region: String,
    addressing: Addressing,
    default_expiry: u64,
    max_expiry: u64,
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
    day_key: Mutex<Option<DayKey>>,
}

impl fmt::Debug for Presigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Presigner")
            .field(
                "endpoint",
                &format_args!("{}://{}", self.endpoint.scheme, self.endpoint.authority),
            )
            .field("region", &self.region)
            .field("addressing", &self.addressing)
            .field("default_expiry", &self.default_expiry)
            .field("max_expiry", &self.max_expiry)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// The two time forms for one instant: `20130524T000000Z` and its first 8 bytes.
struct Stamp {
    amz_date: String,
    expires_at: DateTime<Utc>,
    expires_secs: u64,
}

impl Stamp {
    fn date(&self) -> &str {
        &self.amz_date[..8]
    }
}

impl Presigner {
    pub fn new(config: PresignConfig, credentials: Credentials) -> Result<Self, PresignError> {
        let endpoint = parse_endpoint(&config.endpoint)?;
        if config.region.is_empty()
            || !config
                .region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(PresignError::Region(config.region));
        }
        if credentials.access_key_id.is_empty()
            || !credentials
                .access_key_id
                .bytes()
                .all(|b| b.is_ascii_graphic())
        {
            return Err(PresignError::Credentials(
                "the access key id must be non-empty visible ASCII",
            ));
        }
        if credentials.access_key_id.contains('/') {
            // It is the first element of the '/'-separated credential scope.
            return Err(PresignError::Credentials(
                "the access key id must not contain '/'",
            ));
        }
        if credentials.secret_access_key.is_empty() {
            return Err(PresignError::Credentials("the secret access key is empty"));
        }
        if credentials.session_token.as_deref() == Some("") {
            return Err(PresignError::Credentials(
                "the session token is empty (leave it out instead)",
            ));
        }
        if config.max_expiry > MAX_EXPIRY || config.max_expiry.as_secs() == 0 {
            return Err(PresignError::Expiry(format!(
                "the maximum validity {:?} must be at least 1 s and at most 7 days",
                config.max_expiry
            )));
        }
        if config.default_expiry.as_secs() == 0 || config.default_expiry > config.max_expiry {
            return Err(PresignError::Expiry(format!(
                "the default validity {:?} must be at least 1 s and at most the maximum {:?}",
                config.default_expiry, config.max_expiry
            )));
        }
        Ok(Self {
            endpoint,
            region: config.region,
            addressing: config.addressing,
            default_expiry: config.default_expiry.as_secs(),
            max_expiry: config.max_expiry.as_secs(),
            access_key_id: credentials.access_key_id,
            secret_access_key: credentials.secret_access_key,
            session_token: credentials.session_token,
            day_key: Mutex::new(None),
        })
    }

    /// A presigned `PutObject`: signed headers `host`, `content-length`, `content-type`, and
    /// `if-none-match: *` (unless overwrite is allowed) and `x-amz-checksum-sha256` (when given).
    pub fn presign_put(
        &self,
        req: &PutRequest<'_>,
        now: DateTime<Utc>,
    ) -> Result<PresignedRequest, PresignError> {
        validate_content_type(req.content_type)?;
        let mut headers = Vec::with_capacity(4);
        headers.push(("content-length", req.content_length.to_string()));
        headers.push(("content-type", req.content_type.to_owned()));
        if req.create_only {
            headers.push(("if-none-match", "*".to_owned()));
        }
        if let Some(checksum) = req.checksum_sha256 {
            validate_checksum_sha256(checksum)?;
            headers.push(("x-amz-checksum-sha256", checksum.to_owned()));
        }
        self.presign(
            "PUT",
            req.bucket,
            Some(req.key),
            &[],
            headers,
            req.expires_in,
            now,
        )
    }

    /// A presigned `UploadPart` (`PUT ?partNumber=N&uploadId=...`) with its size signed.
    pub fn presign_upload_part(
        &self,
        req: &UploadPartRequest<'_>,
        now: DateTime<Utc>,
    ) -> Result<PresignedRequest, PresignError> {
        if !(1..=10_000).contains(&req.part_number) {
            return Err(PresignError::PartNumber(req.part_number));
        }
        if req.upload_id.is_empty() {
            return Err(PresignError::UploadId);
        }
        let query = [
            ("partNumber", req.part_number.to_string()),
            ("uploadId", uri_encode(req.upload_id, false)),
        ];
        let headers = vec![("content-length", req.content_length.to_string())];
        self.presign(
            "PUT",
            req.bucket,
            Some(req.key),
            &query,
            headers,
            req.expires_in,
            now,
        )
    }

    /// A presigned `CreateMultipartUpload` (`POST ?uploads`) with the object's content type signed.
    pub fn presign_create_multipart_upload(
        &self,
        bucket: &str,
        key: &str,
        content_type: &str,
        expires_in: Option<Duration>,
        now: DateTime<Utc>,
    ) -> Result<PresignedRequest, PresignError> {
        validate_content_type(content_type)?;
        let headers = vec![("content-type", content_type.to_owned())];
        self.presign(
            "POST",
            bucket,
            Some(key),
            &[("uploads", String::new())],
            headers,
            expires_in,
            now,
        )
    }

    /// A presigned `CompleteMultipartUpload` (`POST ?uploadId=...`); the XML body listing
    /// the parts is not signed (presigned URLs cannot sign a body). With `create_only`,
    /// `If-None-Match: *` is signed, so completing cannot replace an existing object.
    pub fn presign_complete_multipart_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        create_only: bool,
        expires_in: Option<Duration>,
        now: DateTime<Utc>,
    ) -> Result<PresignedRequest, PresignError> {
        if upload_id.is_empty() {
            return Err(PresignError::UploadId);
        }
        let headers = if create_only {
            vec![("if-none-match", "*".to_owned())]
        } else {
            Vec::new()
        };
        let query = [("uploadId", uri_encode(upload_id, false))];
        self.presign("POST", bucket, Some(key), &query, headers, expires_in, now)
    }

    /// A presigned `AbortMultipartUpload` (`DELETE ?uploadId=...`).
    pub fn presign_abort_multipart_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        expires_in: Option<Duration>,
        now: DateTime<Utc>,
    ) -> Result<PresignedRequest, PresignError> {
        if upload_id.is_empty() {
            return Err(PresignError::UploadId);
        }
        let query = [("uploadId", uri_encode(upload_id, false))];
        self.presign(
            "DELETE",
            bucket,
            Some(key),
            &query,
            Vec::new(),
            expires_in,
            now,
        )
    }

    /// A presigned `GetObject` (signed header `host` only).
    pub fn presign_get(
        &self,
        bucket: &str,
        key: &str,
        expires_in: Option<Duration>,
        now: DateTime<Utc>,
    ) -> Result<PresignedRequest, PresignError> {
        self.presign("GET", bucket, Some(key), &[], Vec::new(), expires_in, now)
    }

    /// A `SigV4` POST policy for one exact key and `Content-Type` and a size range, with the
    /// form fields that carry it. The policy's conditions: `bucket`, `key`, `Content-Type`
    /// (exact), `content-length-range`, `x-amz-algorithm`, `x-amz-credential`,
    /// `x-amz-date`, and `x-amz-security-token` with temporary credentials.
    pub fn presign_post(
        &self,
        req: &PostRequest<'_>,
        now: DateTime<Utc>,
    ) -> Result<PresignedPost, PresignError> {
        validate_bucket(req.bucket)?;
        validate_key(req.key)?;
        validate_content_type(req.content_type)?;
        if req.min_length > req.max_length {
            return Err(PresignError::LengthRange {
                min: req.min_length,
                max: req.max_length,
            });
        }
        let stamp = self.stamp(req.expires_in, now)?;
        let credential = format!(
            "{}/{}/{}/{SERVICE}/aws4_request",
            self.access_key_id,
            stamp.date(),
            self.region
        );
        let mut conditions = vec![
            serde_json::json!({ "bucket": req.bucket }),
            serde_json::json!({ "key": req.key }),
            serde_json::json!({ "Content-Type": req.content_type }),
            serde_json::json!(["content-length-range", req.min_length, req.max_length]),
            serde_json::json!({ "x-amz-algorithm": ALGORITHM }),
            serde_json::json!({ "x-amz-credential": credential }),
            serde_json::json!({ "x-amz-date": stamp.amz_date }),
        ];
        if let Some(token) = &self.session_token {
            conditions.push(serde_json::json!({ "x-amz-security-token": token }));
        }
        let policy = serde_json::json!({
            "expiration": stamp.expires_at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
            "conditions": conditions,
        });
        let policy_base64 = base64::engine::general_purpose::STANDARD.encode(policy.to_string());
        let signature = self.sign(stamp.date(), policy_base64.as_bytes());

        let mut fields = vec![
            ("key", req.key.to_owned()),
            ("Content-Type", req.content_type.to_owned()),
            ("x-amz-algorithm", ALGORITHM.to_owned()),
            ("x-amz-credential", credential),
            ("x-amz-date", stamp.amz_date.clone()),
        ];
        if let Some(token) = &self.session_token {
            fields.push(("x-amz-security-token", token.clone()));
        }
        fields.push(("policy", policy_base64));
        fields.push(("x-amz-signature", signature));

        let url = match self.addressing {
            Addressing::Path => {
                format!(
                    "{}://{}/{}",
                    self.endpoint.scheme,
                    self.endpoint.authority,
                    uri_encode(req.bucket, false)
                )
            }
            Addressing::VirtualHosted => format!(
                "{}://{}.{}/",
                self.endpoint.scheme, req.bucket, self.endpoint.authority
            ),
        };
        Ok(PresignedPost {
            url,
            fields,
            expires_at: stamp.expires_at,
        })
    }

    /// The `SigV4` signature of an already base64-encoded POST policy, with the signing key of
    /// `now`'s UTC day (which must be the day of the policy's `x-amz-date`). For policies
    /// built elsewhere; [`Presigner::presign_post`] builds and signs its own.
    #[must_use]
    pub fn sign_post_policy(&self, policy_base64: &str, now: DateTime<Utc>) -> String {
        let date = format!("{:04}{:02}{:02}", now.year(), now.month(), now.day());
        self.sign(&date, policy_base64.as_bytes())
    }

    /// Lowercase hex HMAC-SHA256 of `message` with the day's signing key.
    fn sign(&self, date: &str, message: &[u8]) -> String {
        let mut mac = self.day_mac(date);
        mac.update(message);
        let mut out = String::with_capacity(64);
        hex_into(&mut out, &mac.finalize().into_bytes());
        out
    }

    /// The keyed HMAC of `date`'s signing key, derived on the first use of each day.
    fn day_mac(&self, date: &str) -> HmacSha256 {
        let mut cached = self.day_key.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(day) = cached.as_ref()
            && day.date.as_slice() == date.as_bytes()
        {
            return day.mac.clone();
        }
        let key = derive_signing_key(&self.secret_access_key, date, &self.region);
        let mac = HmacSha256::new_from_slice(&key).expect("HMAC takes keys of any length");
        let mut day = [0_u8; 8];
        day.copy_from_slice(&date.as_bytes()[..8]);
        *cached = Some(DayKey {
            date: day,
            mac: mac.clone(),
        });
        mac
    }

    fn stamp(
        &self,
        expires_in: Option<Duration>,
        now: DateTime<Utc>,
    ) -> Result<Stamp, PresignError> {
        let expires_secs = match expires_in {
            None => self.default_expiry,
            Some(d) if d.as_secs() == 0 => {
                return Err(PresignError::Expiry(format!(
                    "the validity {d:?} is under one second"
                )));
            }
            Some(d) => d.as_secs().min(self.max_expiry),
        };
        if !(0..=9999).contains(&now.year()) {
            return Err(PresignError::Time(now));
        }
        let mut amz_date = String::with_capacity(16);
        write!(
            amz_date,
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
            now.year(),
            now.month(),
            now.day(),
            now.hour(),
            now.minute(),
            now.second()
        )
        .expect("writing to a String cannot fail");
        // X-Amz-Date has whole seconds: validity counts from there.
        let signed_at = now.with_nanosecond(0).ok_or(PresignError::Time(now))?;
        let expires_at = i64::try_from(expires_secs)
            .ok()
            .and_then(TimeDelta::try_seconds)
            .and_then(|d| signed_at.checked_add_signed(d))
            .ok_or(PresignError::Time(now))?;
        Ok(Stamp {
            amz_date,
            expires_at,
            expires_secs,
        })
    }

    /// Query-string `SigV4` for any S3 request. `query` holds extra parameters, values
    /// already URI-encoded; `headers` the signed headers besides `host`, lowercase names.
    #[allow(clippy::too_many_arguments)]
    fn presign(
        &self,
        method: &'static str,
        bucket: &str,
        key: Option<&str>,
        query: &[(&'static str, String)],
        mut headers: Vec<(&'static str, String)>,
        expires_in: Option<Duration>,
        now: DateTime<Utc>,
    ) -> Result<PresignedRequest, PresignError> {
        validate_bucket(bucket)?;
        if let Some(key) = key {
            validate_key(key)?;
        }
        let stamp = self.stamp(expires_in, now)?;
        let scheme = self.endpoint.scheme;
        let authority = &self.endpoint.authority;

        let mut path = String::with_capacity(bucket.len() + key.map_or(0, str::len) * 3 / 2 + 2);
        let host = match self.addressing {
            Addressing::Path => {
                path.push('/');
                uri_encode_into(&mut path, bucket, false);
                if key.is_some() {
                    path.push('/');
                }
                authority.clone()
            }
            Addressing::VirtualHosted => {
                path.push('/');
                format!("{bucket}.{authority}")
            }
        };
        if let Some(key) = key {
            uri_encode_into(&mut path, key, true);
        }

        headers.push(("host", host.clone()));
        headers.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut signed_headers = String::with_capacity(96);
        for (i, (name, _)) in headers.iter().enumerate() {
            if i > 0 {
                signed_headers.push(';');
            }
            signed_headers.push_str(name);
        }

        let canonical_query = self.canonical_query(&stamp, &signed_headers, query);

        let mut canonical = String::with_capacity(512);
        canonical.push_str(method);
        canonical.push('\n');
        canonical.push_str(&path);
        canonical.push('\n');
        canonical.push_str(&canonical_query);
        canonical.push('\n');
        for (name, value) in &headers {
            canonical.push_str(name);
            canonical.push(':');
            canonical.push_str(value);
            canonical.push('\n');
        }
        canonical.push('\n');
        canonical.push_str(&signed_headers);
        canonical.push('\n');
        canonical.push_str(UNSIGNED_PAYLOAD);

        let mut string_to_sign = String::with_capacity(160);
        write!(
            string_to_sign,
            "{ALGORITHM}\n{}\n{}/{}/{SERVICE}/aws4_request\n",
            stamp.amz_date,
            stamp.date(),
            self.region
        )
        .expect("writing to a String cannot fail");
        hex_into(&mut string_to_sign, &Sha256::digest(canonical.as_bytes()));
        let signature = self.sign(stamp.date(), string_to_sign.as_bytes());

        let mut url = String::with_capacity(
            scheme.len() + 3 + host.len() + path.len() + canonical_query.len() + 90,
        );
        write!(
            url,
            "{scheme}://{host}{path}?{canonical_query}&X-Amz-Signature={signature}"
        )
        .expect("writing to a String cannot fail");

        headers.retain(|(name, _)| *name != "host");
        Ok(PresignedRequest {
            method,
            url,
            headers,
            expires_at: stamp.expires_at,
        })
    }

    /// The canonical query: parameters sorted by encoded name (every `X-Amz-*` name sorts
    /// before S3's lowercase subresource names), values URI-encoded with uppercase hex.
    fn canonical_query(
        &self,
        stamp: &Stamp,
        signed_headers: &str,
        query: &[(&'static str, String)],
    ) -> String {
        let mut params: Vec<(&str, String)> = Vec::with_capacity(6 + query.len());
        params.push(("X-Amz-Algorithm", ALGORITHM.to_owned()));
        let mut credential = String::with_capacity(self.access_key_id.len() + 48);
        uri_encode_into(&mut credential, &self.access_key_id, false);
        write!(
            credential,
            "%2F{}%2F{}%2F{SERVICE}%2Faws4_request",
            stamp.date(),
            self.region
        )
        .expect("writing to a String cannot fail");
        params.push(("X-Amz-Credential", credential));
        params.push(("X-Amz-Date", stamp.amz_date.clone()));
        params.push(("X-Amz-Expires", stamp.expires_secs.to_string()));
        if let Some(token) = &self.session_token {
            params.push(("X-Amz-Security-Token", uri_encode(token, false)));
        }
        params.push(("X-Amz-SignedHeaders", uri_encode(signed_headers, false)));
        for (name, value) in query {
            params.push((name, value.clone()));
        }
        params.sort_unstable();
        let mut canonical_query = String::with_capacity(256);
        for (i, (name, value)) in params.iter().enumerate() {
            if i > 0 {
                canonical_query.push('&');
            }
            canonical_query.push_str(name);
            canonical_query.push('=');
            canonical_query.push_str(value);
        }
        canonical_query
    }
}

/// The day's signing key: `HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), "s3"), "aws4_request")`.
fn derive_signing_key(secret: &str, date: &str, region: &str) -> [u8; 32] {
    let hmac = |key: &[u8], data: &[u8]| -> [u8; 32] {
        let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
        mac.update(data);
        mac.finalize().into_bytes().into()
    };
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, SERVICE.as_bytes());
    hmac(&k_service, b"aws4_request")
}

fn parse_endpoint(endpoint: &str) -> Result<Endpoint, PresignError> {
    let err = |reason| PresignError::Endpoint {
        endpoint: endpoint.to_owned(),
        reason,
    };
    let lower = endpoint.to_ascii_lowercase();
    let (scheme, rest, default_port) = if let Some(rest) = lower.strip_prefix("https://") {
        ("https", rest, ":443")
    } else if let Some(rest) = lower.strip_prefix("http://") {
        ("http", rest, ":80")
    } else {
        return Err(err("it must start with http:// or https://"));
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() {
        return Err(err("it has no host"));
    }
    if rest.contains(['/', '?', '#']) {
        return Err(err("it must have no path, query or fragment"));
    }
    if rest.contains('@') {
        return Err(err("it must have no user info"));
    }
    if !rest
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
    {
        return Err(err(
            "the host has characters outside letters, digits, '.', '-', ':' and IPv6 brackets",
        ));
    }
    // Clients leave the default port out of the Host header, and Host is signed.
    let authority = rest.strip_suffix(default_port).unwrap_or(rest).to_owned();
    Ok(Endpoint { scheme, authority })
}

fn validate_bucket(bucket: &str) -> Result<(), PresignError> {
    let err = |reason| {
        Err(PresignError::Bucket {
            bucket: bucket.to_owned(),
            reason,
        })
    };
    if !(3..=63).contains(&bucket.len()) {
        return err("it must be 3 to 63 characters long");
    }
    if !bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return err("only lowercase letters, digits, '.' and '-' are allowed");
    }
    let first = bucket.as_bytes()[0];
    let last = bucket.as_bytes()[bucket.len() - 1];
    if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
        return err("it must begin and end with a letter or digit");
    }
    if bucket.contains("..") {
        return err("it must not contain '..'");
    }
    Ok(())
}

fn validate_key(key: &str) -> Result<(), PresignError> {
    let err = |reason| {
        Err(PresignError::Key {
            key: key.to_owned(),
            reason,
        })
    };
    if key.is_empty() {
        return err("it is empty");
    }
    if key.len() > MAX_KEY_BYTES {
        return err("it is longer than 1024 bytes");
    }
    if key.chars().any(char::is_control) {
        return err("it contains control characters");
    }
    // HTTP clients resolve "." and ".." path segments before sending, so the path S3
    // sees would differ from the signed one.
    if key
        .split('/')
        .any(|segment| segment == "." || segment == "..")
    {
        return err("it has a '.' or '..' path segment");
    }
    Ok(())
}

fn validate_content_type(content_type: &str) -> Result<(), PresignError> {
    let err = |reason| {
        Err(PresignError::ContentType {
            content_type: content_type.to_owned(),
            reason,
        })
    };
    if content_type.is_empty() {
        return err("it is empty");
    }
    if content_type.len() > MAX_CONTENT_TYPE_BYTES {
        return err("it is longer than 256 bytes");
    }
    if !content_type
        .bytes()
        .all(|b| b == b' ' || b.is_ascii_graphic())
    {
        return err("only visible ASCII and spaces are allowed");
    }
    // SigV4 trims header values and folds runs of spaces; S3 compares the folded value,
    // so the header a client sends must already be in that form.
    if content_type.starts_with(' ') || content_type.ends_with(' ') || content_type.contains("  ") {
        return err("it has leading, trailing or repeated spaces");
    }
    Ok(())
}

fn validate_checksum_sha256(value: &str) -> Result<(), PresignError> {
    match base64::engine::general_purpose::STANDARD.decode(value) {
        Ok(digest) if digest.len() == 32 => Ok(()),
        _ => Err(PresignError::ChecksumSha256(value.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;

    use super::*;

    const AKID: &str = "AKIAIOSFODNN7EXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    fn aws_example_presigner() -> Presigner {
        let mut config = PresignConfig::new(
            "https://s3.amazonaws.com",
            "us-east-1",
            Addressing::VirtualHosted,
        );
        config.max_expiry = Duration::from_hours(24);
        Presigner::new(config, Credentials::new(AKID, SECRET)).unwrap()
    }

    fn local(addressing: Addressing) -> Presigner {
        Presigner::new(
            PresignConfig::new("http://127.0.0.1:9000", "us-east-1", addressing),
            Credentials::new("ak", "sk"),
        )
        .unwrap()
    }

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    /// AWS's published example ("Authenticating Requests: Using Query Parameters"): GET
    /// examplebucket/test.txt, 20130524T000000Z, 86400 s, us-east-1.
    #[test]
    fn reproduces_the_published_presigned_get_example() {
        let presigned = aws_example_presigner()
            .presign_get(
                "examplebucket",
                "test.txt",
                Some(Duration::from_hours(24)),
                at(2013, 5, 24, 0, 0, 0),
            )
            .unwrap();
        assert_eq!(
            presigned.url,
            "https://examplebucket.s3.amazonaws.com/test.txt\
             ?X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
             &X-Amz-Date=20130524T000000Z\
             &X-Amz-Expires=86400\
             &X-Amz-SignedHeaders=host\
             &X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
        );
        assert_eq!(presigned.method, "GET");
        assert!(presigned.headers.is_empty());
        assert_eq!(presigned.expires_at, at(2013, 5, 25, 0, 0, 0));
    }

    /// AWS's published POST example ("Example: Browser-Based Upload using HTTP POST (Using
    /// AWS Signature Version 4)"): its base64 policy (CRLF line ends) and signature.
    #[test]
    fn reproduces_the_published_post_policy_signature() {
        let policy = "eyAiZXhwaXJhdGlvbiI6ICIyMDE1LTEyLTMwVDEyOjAwOjAwLjAwMFoiLA0KICAiY29uZGl0aW9ucyI6IFsNCiAgICB7ImJ1Y2tldCI6ICJzaWd2NGV4YW1wbGVidWNrZXQifSwNCiAgICBbInN0YXJ0cy13aXRoIiwgIiRrZXkiLCAidXNlci91c2VyMS8iXSwNCiAgICB7ImFjbCI6ICJwdWJsaWMtcmVhZCJ9LA0KICAgIHsic3VjY2Vzc19hY3Rpb25fcmVkaXJlY3QiOiAiaHR0cDovL3NpZ3Y0ZXhhbXBsZWJ1Y2tldC5zMy5hbWF6b25hd3MuY29tL3N1Y2Nlc3NmdWxfdXBsb2FkLmh0bWwifSwNCiAgICBbInN0YXJ0cy13aXRoIiwgIiRDb250ZW50LVR5cGUiLCAiaW1hZ2UvIl0sDQogICAgeyJ4LWFtei1tZXRhLXV1aWQiOiAiMTQzNjUxMjM2NTEyNzQifSwNCiAgICB7IngtYW16LXNlcnZlci1zaWRlLWVuY3J5cHRpb24iOiAiQUVTMjU2In0sDQogICAgWyJzdGFydHMtd2l0aCIsICIkeC1hbXotbWV0YS10YWciLCAiIl0sDQoNCiAgICB7IngtYW16LWNyZWRlbnRpYWwiOiAiQUtJQUlPU0ZPRE5ON0VYQU1QTEUvMjAxNTEyMjkvdXMtZWFzdC0xL3MzL2F3czRfcmVxdWVzdCJ9LA0KICAgIHsieC1hbXotYWxnb3JpdGhtIjogIkFXUzQtSE1BQy1TSEEyNTYifSwNCiAgICB7IngtYW16LWRhdGUiOiAiMjAxNTEyMjlUMDAwMDAwWiIgfQ0KICBdDQp9";
        let signature = aws_example_presigner().sign_post_policy(policy, at(2015, 12, 29, 0, 0, 0));
        assert_eq!(
            signature,
            "8afdbf4008c03f22c2cd3cdb72e4afbb1f6a588f3255ac628749a66d7f09699e"
        );
    }

    #[test]
    fn the_cached_day_key_is_replaced_when_the_day_changes() {
        let signer = aws_example_presigner();
        let day1 = signer.sign_post_policy("x", at(2013, 5, 24, 23, 59, 59));
        let day2 = signer.sign_post_policy("x", at(2013, 5, 25, 0, 0, 0));
        let day1_again = signer.sign_post_policy("x", at(2013, 5, 24, 12, 0, 0));
        assert_ne!(day1, day2);
        assert_eq!(day1, day1_again);
        let mut mac =
            HmacSha256::new_from_slice(&derive_signing_key(SECRET, "20130525", "us-east-1"))
                .unwrap();
        mac.update(b"x");
        assert_eq!(day2, hex::encode(mac.finalize().into_bytes()));
    }

    #[test]
    fn put_signs_size_type_create_only_and_checksum() {
        let checksum = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
        let req = PutRequest::new("uploads", "incoming/a b/ü.png", "image/png", 1234)
            .checksum_sha256(checksum);
        let presigned = local(Addressing::Path)
            .presign_put(&req, at(2026, 1, 2, 3, 4, 5))
            .unwrap();
        assert!(
            presigned
                .url
                .starts_with("http://127.0.0.1:9000/uploads/incoming/a%20b/%C3%BC.png?"),
            "{}",
            presigned.url
        );
        assert!(
            presigned.url.contains(
                "&X-Amz-SignedHeaders=content-length%3Bcontent-type%3Bhost%3Bif-none-match%3Bx-amz-checksum-sha256&"
            ),
            "{}",
            presigned.url
        );
        assert!(presigned.url.contains("&X-Amz-Expires=300&"));
        assert_eq!(
            presigned.headers,
            vec![
                ("content-length", "1234".to_owned()),
                ("content-type", "image/png".to_owned()),
                ("if-none-match", "*".to_owned()),
                ("x-amz-checksum-sha256", checksum.to_owned()),
            ]
        );
        assert_eq!(presigned.expires_at, at(2026, 1, 2, 3, 9, 5));

        let overwrite = local(Addressing::Path)
            .presign_put(&req.allow_overwrite(), at(2026, 1, 2, 3, 4, 5))
            .unwrap();
        assert!(
            overwrite
                .headers
                .iter()
                .all(|(name, _)| *name != "if-none-match")
        );
        assert_ne!(overwrite.url, presigned.url);
    }

    #[test]
    fn virtual_hosted_urls_put_the_bucket_in_the_host() {
        let presigned = local(Addressing::VirtualHosted)
            .presign_get("my-bucket", "k/v.txt", None, at(2026, 1, 2, 3, 4, 5))
            .unwrap();
        assert!(
            presigned
                .url
                .starts_with("http://my-bucket.127.0.0.1:9000/k/v.txt?"),
            "{}",
            presigned.url
        );
    }

    #[test]
    fn upload_part_query_parameters_sort_after_the_x_amz_ones() {
        let req = UploadPartRequest {
            bucket: "uploads",
            key: "big.bin",
            upload_id: "abc/def+ghi",
            part_number: 2,
            content_length: 5 << 20,
            expires_in: None,
        };
        let presigned = local(Addressing::Path)
            .presign_upload_part(&req, at(2026, 1, 2, 3, 4, 5))
            .unwrap();
        assert!(
            presigned.url.contains("&X-Amz-SignedHeaders=content-length%3Bhost&partNumber=2&uploadId=abc%2Fdef%2Bghi&X-Amz-Signature="),
            "{}",
            presigned.url
        );
        let bad = UploadPartRequest {
            part_number: 10_001,
            ..req
        };
        assert_eq!(
            local(Addressing::Path).presign_upload_part(&bad, Utc::now()),
            Err(PresignError::PartNumber(10_001))
        );
    }

    #[test]
    fn session_token_is_in_the_query_and_the_post_fields() {
        let signer = Presigner::new(
            PresignConfig::new(
                "https://s3.eu-west-1.amazonaws.com:443/",
                "eu-west-1",
                Addressing::VirtualHosted,
            ),
            Credentials::new("ak", "sk").with_session_token("tok/en+=="),
        )
        .unwrap();
        let presigned = signer
            .presign_get("bucket", "key", None, at(2026, 1, 2, 3, 4, 5))
            .unwrap();
        assert!(
            presigned
                .url
                .starts_with("https://bucket.s3.eu-west-1.amazonaws.com/key?"),
            "{}",
            presigned.url
        );
        assert!(
            presigned
                .url
                .contains("&X-Amz-Security-Token=tok%2Fen%2B%3D%3D&X-Amz-SignedHeaders=host&")
        );

        let form = signer
            .presign_post(
                &PostRequest::new("bucket", "key", "image/png", 1, 10),
                at(2026, 1, 2, 3, 4, 5),
            )
            .unwrap();
        assert!(
            form.fields
                .contains(&("x-amz-security-token", "tok/en+==".to_owned()))
        );
        let policy = form
            .fields
            .iter()
            .find(|(name, _)| *name == "policy")
            .unwrap();
        let policy: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::STANDARD
                .decode(&policy.1)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            policy,
            serde_json::json!({
                "expiration": "2026-01-02T03:09:05.000Z",
                "conditions": [
                    {"bucket": "bucket"},
                    {"key": "key"},
                    {"Content-Type": "image/png"},
                    ["content-length-range", 1, 10],
                    {"x-amz-algorithm": "AWS4-HMAC-SHA256"},
                    {"x-amz-credential": "ak/20260102/eu-west-1/s3/aws4_request"},
                    {"x-amz-date": "20260102T030405Z"},
                    {"x-amz-security-token": "tok/en+=="},
                ]
            })
        );
    }

    #[test]
    fn expiry_takes_the_default_and_is_cut_to_the_maximum() {
        let signer = local(Addressing::Path);
        let now = at(2026, 1, 2, 3, 4, 5);
        let long = signer
            .presign_get("bucket", "key", Some(Duration::from_hours(24)), now)
            .unwrap();
        assert!(long.url.contains("&X-Amz-Expires=3600&"));
        assert_eq!(long.expires_at, at(2026, 1, 2, 4, 4, 5));
        assert!(matches!(
            signer.presign_get("bucket", "key", Some(Duration::ZERO), now),
            Err(PresignError::Expiry(_))
        ));

        let mut config = PresignConfig::new("http://localhost", "us-east-1", Addressing::Path);
        config.max_expiry = MAX_EXPIRY + Duration::from_secs(1);
        assert!(matches!(
            Presigner::new(config, Credentials::new("a", "b")),
            Err(PresignError::Expiry(_))
        ));
    }

    #[test]
    fn invalid_input_is_named() {
        let signer = local(Addressing::Path);
        let now = at(2026, 1, 2, 3, 4, 5);
        let put = |bucket, key, content_type| {
            signer.presign_put(&PutRequest::new(bucket, key, content_type, 1), now)
        };
        assert!(matches!(
            put("Bad_Bucket", "k", "a/b"),
            Err(PresignError::Bucket { .. })
        ));
        assert!(matches!(
            put("bucket", "", "a/b"),
            Err(PresignError::Key { .. })
        ));
        assert!(matches!(
            put("bucket", "a/../b", "a/b"),
            Err(PresignError::Key { .. })
        ));
        assert!(matches!(
            put("bucket", "a\nb", "a/b"),
            Err(PresignError::Key { .. })
        ));
        assert!(matches!(
            put("bucket", "k", "image/png\r\nx-evil: 1"),
            Err(PresignError::ContentType { .. })
        ));
        assert!(matches!(
            put("bucket", "k", " image/png"),
            Err(PresignError::ContentType { .. })
        ));
        let bad_checksum = PutRequest::new("bucket", "k", "a/b", 1).checksum_sha256("AAAA");
        assert_eq!(
            signer.presign_put(&bad_checksum, now),
            Err(PresignError::ChecksumSha256("AAAA".to_owned()))
        );
        assert_eq!(
            signer.presign_post(&PostRequest::new("bucket", "k", "a/b", 10, 9), now),
            Err(PresignError::LengthRange { min: 10, max: 9 })
        );
        for endpoint in [
            "s3.amazonaws.com",
            "https://host/path",
            "https://user@host",
            "https://",
        ] {
            let config = PresignConfig::new(endpoint, "us-east-1", Addressing::Path);
            assert!(
                matches!(
                    Presigner::new(config, Credentials::new("a", "b")),
                    Err(PresignError::Endpoint { .. })
                ),
                "{endpoint}"
            );
        }
        let message = put("Bad_Bucket", "k", "a/b").unwrap_err().to_string();
        assert!(message.contains("Bad_Bucket"), "{message}");
    }
}
