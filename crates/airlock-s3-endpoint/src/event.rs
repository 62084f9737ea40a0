//! S3 event notifications for the objects the endpoint writes, in the shape S3 sends them.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

/// The event names the endpoint sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Created {
    Put,
    Post,
    CompleteMultipartUpload,
}

impl Created {
    fn name(self) -> &'static str {
        match self {
            Self::Put => "ObjectCreated:Put",
            Self::Post => "ObjectCreated:Post",
            Self::CompleteMultipartUpload => "ObjectCreated:CompleteMultipartUpload",
        }
    }
}

/// The object a notification announces.
#[derive(Debug)]
pub(crate) struct Object<'a> {
    pub key: &'a str,
    pub size: u64,
    /// Without quotes, as S3 puts it in notifications.
    pub etag: &'a str,
    pub version_id: Option<&'a str>,
}

/// Encodes a key as S3 does in notifications: form-URL encoding (a space is `+`), with `/`
/// kept.
pub(crate) fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for byte in key.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' | b'/' => {
                out.push(char::from(byte));
            }
            b' ' => out.push('+'),
            other => {
                let _ = write!(out, "%{other:02X}");
            }
        }
    }
    out
}

/// Sequencers increase for the events of a key, as S3's do: nanoseconds since the epoch,
/// never repeating, as fixed-width uppercase hex.
#[derive(Debug, Default)]
pub(crate) struct Sequencer(AtomicU64);

impl Sequencer {
    pub(crate) fn next(&self) -> String {
        let now = chrono::Utc::now()
            .timestamp_nanos_opt()
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0);
        let previous = self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
                Some(now.max(last + 1))
            })
            .unwrap_or_else(|last| last);
        format!("{:016X}", now.max(previous + 1))
    }
}

/// One `ObjectCreated` notification of one record.
pub(crate) fn object_created(
    region: &str,
    bucket: &str,
    created: Created,
    object: &Object<'_>,
    sequencer: &str,
    principal: Option<&str>,
) -> Value {
    let mut s3_object = json!({
        "key": encode_key(object.key),
        "size": object.size,
        "eTag": object.etag,
        "sequencer": sequencer,
    });
    if let Some(version) = object.version_id {
        s3_object["versionId"] = Value::from(version);
    }
    json!({"Records": [{
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": region,
        "eventTime": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        "eventName": created.name(),
        "userIdentity": {"principalId": principal.unwrap_or("anonymous")},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "airlock-local",
            "bucket": {
                "name": bucket,
                "ownerIdentity": {"principalId": principal.unwrap_or("anonymous")},
                "arn": format!("arn:aws:s3:::{bucket}"),
            },
            "object": s3_object,
        },
    }]})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_encoded_as_s3_encodes_them() {
        assert_eq!(
            encode_key("incoming/a b+c/ü=1.png"),
            "incoming/a+b%2Bc/%C3%BC%3D1.png"
        );
        let decoded =
            airlock_core::intake::decode_key(&encode_key("incoming/a b+c/ü=1%.png")).unwrap();
        assert_eq!(decoded, "incoming/a b+c/ü=1%.png");
    }

    #[test]
    fn sequencers_increase() {
        let sequencer = Sequencer::default();
        let first = sequencer.next();
        let second = sequencer.next();
        assert_eq!(first.len(), 16);
        assert!(second > first, "{second} <= {first}");
    }
}
