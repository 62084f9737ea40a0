//! Fixture cases: an upload intent, the object the client then uploaded, and the event that
//! announced it — with what should happen.
//!
//! ```json
//! {
//!   "description": "JPEG bytes declared as a PNG",
//!   "intent": { "id": "01937a3b-…", "tenant": "acme", "purpose": "avatar",
//!               "declaredType": "image/png", "filename": "innocent.png", "uploader": "user-8" },
//!   "object": { "file": "../objects/disguised-as-png.png" },
//!   "event": "s3-put",
//!   "expect": { "destination": "quarantine", "reason": "type-mismatch", "intentState": "QUARANTINED" }
//! }
//! ```
//! `object` is `{"file": relative path}`, `{"path": absolute path, "optional": true}` (e.g. a
//! file from Debian's `clamav-testfiles`), or generated: `{"generate": "eicar",
//! "paddingBefore": n}` (the EICAR test string, built at run time and never stored in the
//! repository) or `{"generate": "bytes", "size": n, "byte": b}`. Without `intent`, `key`
//! names the object's key. `event` picks the shape of the announcing event: `s3-put`,
//! `s3-multipart`, `s3-moto` (the AWS emulator's), `sqs`, `eventbridge`.
//!
//! A case is input like any other: a `key` must be under `incoming/` (a case cannot write
//! `trusted/` or anything else), and an object may be at most [`MAX_OBJECT_SIZE`] (1 GiB),
//! generated or read — both refused when the case is loaded, before anything is allocated.
//!
//! Preparing a case is idempotent: the intent is created only if absent, and the object is
//! uploaded only while its intent is still PENDING and no copy of it exists anywhere, so a
//! second replay changes nothing.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use airlock_core::intake::{self, IntakeItem};
use airlock_core::intent::{IntentState, UploadIntent};
use airlock_core::keys::{
    INCOMING_PREFIX, Purpose, QUARANTINE_PREFIX, TRUSTED_PREFIX, TenantId, UploadId, counterpart,
};
use airlock_core::policy::Policies;
use airlock_core::ports::{IntentStore, ObjectReader, ObjectWriter, WriteMode};
use airlock_core::verdict::ReasonCode;
use anyhow::{Context as _, bail};
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

/// The largest object a case may generate or read: objects are held in memory while a case
/// is prepared.
pub const MAX_OBJECT_SIZE: u64 = 1 << 30;

/// A case as written in its file.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CaseFile {
    pub description: String,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub intent: Option<CaseIntent>,
    pub object: CaseObject,
    #[serde(default)]
    pub event: EventShape,
    #[serde(default)]
    pub expect: Option<Expectation>,
}

/// The intent the signing endpoint would have recorded.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CaseIntent {
    pub id: UploadId,
    pub tenant: TenantId,
    pub purpose: Purpose,
    pub declared_type: String,
    /// Defaults to the object's size.
    #[serde(default)]
    pub declared_size: Option<u64>,
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default)]
    pub filename: Option<String>,
    #[serde(default)]
    pub uploader: Option<String>,
    /// Defaults to now plus the purpose's intent lifetime.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

/// Where a case's bytes come from.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum CaseObject {
    File {
        file: PathBuf,
    },
    Path {
        path: PathBuf,
        #[serde(default)]
        optional: bool,
    },
    Generate {
        generate: Generator,
        #[serde(default)]
        size: Option<u64>,
        #[serde(default)]
        byte: Option<u8>,
        #[serde(default, rename = "paddingBefore")]
        padding_before: Option<u64>,
    },
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Generator {
    Eicar,
    Bytes,
}

/// The shape of the event announcing the object.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum EventShape {
    #[default]
    S3Put,
    S3Multipart,
    S3Moto,
    Sqs,
    Eventbridge,
}

/// What should happen.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Expectation {
    /// `trusted`, `quarantine` or `skipped`.
    pub destination: String,
    #[serde(default)]
    pub reason: Option<ReasonCode>,
    #[serde(default)]
    pub intent_state: Option<IntentState>,
}

/// A loaded case.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub path: PathBuf,
    pub file: CaseFile,
}

/// Whether a JSON document is a case (rather than an event).
#[must_use]
pub fn is_case(value: &Value) -> bool {
    value.get("object").is_some() && (value.get("intent").is_some() || value.get("key").is_some())
}

impl Case {
    pub fn from_value(path: &Path, value: Value) -> anyhow::Result<Self> {
        let file: CaseFile = serde_json::from_value(value)
            .with_context(|| format!("{}: not a valid case", path.display()))?;
        if file.intent.is_none() && file.key.is_none() {
            bail!(
                "{}: a case needs an \"intent\" or a \"key\"",
                path.display()
            );
        }
        if let (None, Some(key)) = (&file.intent, &file.key) {
            if let Some(reason) = intake::unsafe_key_reason(key) {
                bail!("{}: key {key:?} is refused: {reason}", path.display());
            }
            if !key.starts_with(INCOMING_PREFIX) {
                bail!(
                    "{}: key {key:?} is not under {INCOMING_PREFIX}: a case only places objects there",
                    path.display()
                );
            }
        }
        if let CaseObject::Generate {
            generate,
            size,
            padding_before,
            ..
        } = &file.object
        {
            let (field, total) = match generate {
                Generator::Bytes => ("size", size.unwrap_or(0)),
                Generator::Eicar => (
                    "paddingBefore",
                    padding_before
                        .unwrap_or(0)
                        .saturating_add(eicar().len() as u64),
                ),
            };
            if total > MAX_OBJECT_SIZE {
                bail!(
                    "{}: object.{field}: {total} bytes is more than a case may generate ({MAX_OBJECT_SIZE} bytes, 1 GiB)",
                    path.display()
                );
            }
        }
        let name = path.file_stem().map_or_else(
            || path.display().to_string(),
            |s| s.to_string_lossy().into_owned(),
        );
        Ok(Self {
            name,
            path: path.to_path_buf(),
            file,
        })
    }

    /// The object's key under `incoming/`.
    #[must_use]
    pub fn key(&self) -> String {
        match (&self.file.intent, &self.file.key) {
            (Some(intent), _) => format!(
                "incoming/{}/{}/{}",
                intent.tenant, intent.purpose, intent.id
            ),
            (None, Some(key)) => key.clone(),
            (None, None) => unreachable!("checked when loaded"),
        }
    }
}

/// The EICAR test string, assembled so that it never appears whole in the repository.
#[must_use]
pub fn eicar() -> Vec<u8> {
    let parts = [
        "X5O!P%@AP[4\\PZX54(P^)7CC)7}$",
        "EICAR-STANDARD-ANTIVIRUS",
        "-TEST-FILE!$H+H*",
    ];
    parts.concat().into_bytes()
}

/// The case's bytes, or `None` when an optional file is not on this machine.
pub fn materialize(case: &Case) -> anyhow::Result<Option<Vec<u8>>> {
    let base = case.path.parent().unwrap_or(Path::new("."));
    match &case.file.object {
        CaseObject::File { file } => {
            let path = base.join(file);
            read_capped(&path)
                .map(Some)
                .with_context(|| format!("{}: reading {}", case.path.display(), path.display()))
        }
        CaseObject::Path { path, optional } => match read_capped(path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if *optional && e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e)
                .with_context(|| format!("{}: reading {}", case.path.display(), path.display())),
        },
        CaseObject::Generate {
            generate,
            size,
            byte,
            padding_before,
        } => {
            let mut bytes = Vec::new();
            match generate {
                Generator::Eicar => {
                    // Printable padding, so the file stays text.
                    let padding = usize::try_from(padding_before.unwrap_or(0))?;
                    bytes.extend(
                        std::iter::repeat_n(
                            b"airlock padding line\n".iter().copied(),
                            padding / 21 + 1,
                        )
                        .flatten()
                        .take(padding),
                    );
                    bytes.extend(eicar());
                }
                Generator::Bytes => {
                    let size = size.with_context(|| {
                        format!(
                            "{}: \"generate\": \"bytes\" needs \"size\"",
                            case.path.display()
                        )
                    })?;
                    bytes.resize(usize::try_from(size)?, byte.unwrap_or(0));
                }
            }
            Ok(Some(bytes))
        }
    }
}

/// Reads a case's object file, refusing one over [`MAX_OBJECT_SIZE`] before reading it.
fn read_capped(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    if size > MAX_OBJECT_SIZE {
        return Err(std::io::Error::other(format!(
            "{size} bytes is more than a case may use ({MAX_OBJECT_SIZE} bytes, 1 GiB)"
        )));
    }
    let mut bytes = Vec::new();
    // `take` too: the file may grow after the size was read.
    file.take(MAX_OBJECT_SIZE + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_OBJECT_SIZE {
        return Err(std::io::Error::other(format!(
            "more than a case may use ({MAX_OBJECT_SIZE} bytes, 1 GiB)"
        )));
    }
    Ok(bytes)
}

/// Form-URL-encodes a key the way S3 does in event notifications (`/` kept, or encoded as
/// `%2F` by the AWS emulator).
fn encode_key(key: &str, encode_slash: bool) -> String {
    let mut out = String::new();
    for byte in key.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                out.push(char::from(byte));
            }
            b'/' if !encode_slash => out.push('/'),
            b' ' => out.push('+'),
            _ => {
                let _ = write!(out, "%{byte:02X}");
            }
        }
    }
    out
}

fn notification_record(
    bucket: &str,
    key: &str,
    size: u64,
    etag: &str,
    event_name: &str,
    moto: bool,
    at: DateTime<Utc>,
) -> Value {
    let time = at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    if moto {
        return json!({
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "awsRegion": "us-east-1",
            "eventTime": time,
            "eventName": event_name,
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": "airlock-incoming",
                "bucket": {"name": bucket, "arn": format!("arn:aws:s3:::{bucket}")},
                "object": {"key": encode_key(key, true), "size": size, "eTag": etag}
            }
        });
    }
    json!({
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "eu-west-1",
        "eventTime": time,
        "eventName": event_name,
        "userIdentity": {"principalId": "AWS:AROA3XFRBF23EXAMPLE:signer"},
        "requestParameters": {"sourceIPAddress": "203.0.113.17"},
        "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810", "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD"},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "airlock-incoming",
            "bucket": {"name": bucket, "ownerIdentity": {"principalId": "A3NL1KOZZKExample"}, "arn": format!("arn:aws:s3:::{bucket}")},
            "object": {"key": encode_key(key, false), "size": size, "eTag": etag, "sequencer": format!("{:018X}", at.timestamp_micros())}
        }
    })
}

/// Builds the event that would have announced the case's object.
#[must_use]
pub fn synthesize_event(
    shape: EventShape,
    bucket: &str,
    key: &str,
    bytes: &[u8],
    at: DateTime<Utc>,
) -> Value {
    use md5::{Digest, Md5};
    let etag = hex::encode(Md5::digest(bytes));
    let size = bytes.len() as u64;
    let record =
        |name: &str, moto: bool| notification_record(bucket, key, size, &etag, name, moto, at);
    match shape {
        EventShape::S3Put => json!({"Records": [record("ObjectCreated:Put", false)]}),
        EventShape::S3Multipart => {
            json!({"Records": [record("ObjectCreated:CompleteMultipartUpload", false)]})
        }
        EventShape::S3Moto => json!({"Records": [record("ObjectCreated:Put", true)]}),
        EventShape::Sqs => {
            let body = json!({"Records": [record("ObjectCreated:Put", false)]}).to_string();
            json!({"Records": [{
                "messageId": uuid::Uuid::new_v4().to_string(),
                "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a",
                "body": body,
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": at.timestamp_millis().to_string()},
                "messageAttributes": {},
                "md5OfBody": hex::encode(Md5::digest(body.as_bytes())),
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:airlock-ingest",
                "awsRegion": "eu-west-1"
            }]})
        }
        EventShape::Eventbridge => json!({
            "version": "0",
            "id": uuid::Uuid::new_v4().to_string(),
            "detail-type": "Object Created",
            "source": "aws.s3",
            "account": "123456789012",
            "time": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "region": "eu-west-1",
            "resources": [format!("arn:aws:s3:::{bucket}")],
            "detail": {
                "version": "0",
                "bucket": {"name": bucket},
                "object": {"key": key, "size": size, "etag": etag, "sequencer": format!("{:018X}", at.timestamp_micros())},
                "request-id": "57H08PA84AB1JZW0",
                "requester": "123456789012",
                "source-ip-address": "203.0.113.17",
                "reason": "PutObject"
            }
        }),
    }
}

/// A case made ready to replay.
#[derive(Debug)]
pub enum Prepared {
    /// The event items to run (usually one object).
    Ready(Vec<IntakeItem>),
    /// The case's optional object is not on this machine.
    Unavailable(String),
}

/// Creates the intent and uploads the object (each only if not done before), and returns
/// the parsed event.
pub async fn prepare(
    case: &Case,
    store: &(impl ObjectReader + ObjectWriter),
    intents: &dyn IntentStore,
    policies: &Policies,
    bucket: &str,
) -> anyhow::Result<Prepared> {
    let Some(bytes) = materialize(case)? else {
        return Ok(Prepared::Unavailable(format!(
            "{} not found on this machine",
            match &case.file.object {
                CaseObject::Path { path, .. } => path.display().to_string(),
                _ => "object".to_owned(),
            }
        )));
    };
    let key = case.key();
    let now = Utc::now();
    let mut pending = true;
    if let Some(spec) = &case.file.intent {
        let ttl = policies
            .get(&spec.purpose)
            .map_or(15 * 60, |p| p.intent_ttl_seconds);
        let intent = UploadIntent {
            id: spec.id,
            tenant: spec.tenant.clone(),
            purpose: spec.purpose.clone(),
            declared_type: spec.declared_type.clone(),
            declared_size: spec.declared_size.unwrap_or(bytes.len() as u64),
            sha256: spec.sha256.clone(),
            filename: spec.filename.clone(),
            uploader: spec.uploader.clone(),
            state: IntentState::Pending,
            created_at: now,
            updated_at: now,
            expires_at: spec
                .expires_at
                .unwrap_or(now + Duration::seconds(i64::try_from(ttl).unwrap_or(i64::MAX / 1000))),
            outcome: None,
            multipart_upload_id: None,
        };
        intents
            .create(&intent)
            .await
            .context("creating the intent")?;
        let stored = intents
            .get(spec.id)
            .await
            .context("reading the intent")?
            .context("intent vanished after creation")?;
        pending = stored.state == IntentState::Pending;
    }
    let mut copies = vec![key.clone()];
    copies.extend(counterpart(&key, TRUSTED_PREFIX));
    copies.extend(counterpart(&key, QUARANTINE_PREFIX));
    let mut exists = false;
    for copy in &copies {
        exists |= store
            .head(copy)
            .await
            .with_context(|| format!("checking {copy}"))?
            .is_some();
    }
    if pending && !exists {
        let content_type = case
            .file
            .intent
            .as_ref()
            .map_or("application/octet-stream", |i| i.declared_type.as_str());
        store
            .put(&key, bytes.clone(), content_type, WriteMode::Overwrite)
            .await
            .with_context(|| format!("uploading {key}"))?;
    }
    let event = synthesize_event(case.file.event, bucket, &key, &bytes, now);
    Ok(Prepared::Ready(intake::parse_event(
        &case.path.display().to_string(),
        &event,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_shape_parses_back_to_the_same_key() {
        let key = "incoming/acme/avatar/01937a3b-2fe8-7025-9003-1a2b3c4d7cef";
        for shape in [
            EventShape::S3Put,
            EventShape::S3Multipart,
            EventShape::S3Moto,
            EventShape::Sqs,
            EventShape::Eventbridge,
        ] {
            let event = synthesize_event(shape, "bucket", key, b"hello", Utc::now());
            let items = intake::parse_event("test", &event);
            assert_eq!(items.len(), 1, "{shape:?}: {items:?}");
            let object = items[0]
                .object()
                .unwrap_or_else(|| panic!("{shape:?}: {:?}", items[0]));
            assert_eq!(object.key, key, "{shape:?}");
            assert_eq!(object.bucket, "bucket");
            assert_eq!(object.size, Some(5));
        }
    }

    #[test]
    fn keys_are_form_url_encoded() {
        assert_eq!(
            encode_key("incoming/a b/é+x", false),
            "incoming/a+b/%C3%A9%2Bx"
        );
        assert_eq!(encode_key("incoming/a", true), "incoming%2Fa");
    }

    fn load(value: &Value) -> anyhow::Result<Case> {
        Case::from_value(Path::new("c/hostile.json"), value.clone())
    }

    #[test]
    fn keys_outside_incoming_are_refused() {
        for key in [
            "trusted/acme/avatar/x",
            "quarantine/x",
            "incoming/../trusted/x",
            "x",
        ] {
            let err = load(&json!({"description": "d", "key": key,
                "object": {"generate": "bytes", "size": 1}}))
            .unwrap_err()
            .to_string();
            assert!(err.starts_with("c/hostile.json: key "), "{err}");
            assert!(err.contains(&format!("{key:?}")), "{err}");
        }
        assert!(
            load(&json!({"description": "d", "key": "incoming/t/p/x",
            "object": {"generate": "bytes", "size": 1}}))
            .is_ok()
        );
    }

    #[test]
    fn oversized_generated_objects_are_refused_when_loaded() {
        // 1 TiB: allocating it would abort the process, so this passing shows nothing was.
        for object in [
            json!({"generate": "bytes", "size": 1_u64 << 40}),
            json!({"generate": "eicar", "paddingBefore": u64::MAX}),
            json!({"generate": "bytes", "size": MAX_OBJECT_SIZE + 1}),
        ] {
            let err = load(&json!({"description": "d", "key": "incoming/t/p/x", "object": object}))
                .unwrap_err()
                .to_string();
            assert!(err.contains("is more than a case may generate"), "{err}");
            assert!(
                err.contains("object.size") || err.contains("object.paddingBefore"),
                "{err}"
            );
        }
        assert!(
            load(&json!({"description": "d", "key": "incoming/t/p/x",
            "object": {"generate": "bytes", "size": MAX_OBJECT_SIZE}}))
            .is_ok()
        );
    }

    #[test]
    fn eicar_is_built_whole() {
        let e = eicar();
        assert_eq!(e.len(), 68);
        assert!(e.starts_with(b"X5O!"));
    }
}
