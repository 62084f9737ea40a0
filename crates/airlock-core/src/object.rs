//! References to stored objects, as events announce them and as stages pass them on.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ports::ObjectVersion;

/// An object a storage event announced. The key is already decoded (events carry it
/// form-URL-encoded). Fields other than bucket and key are what the event said, if anything:
/// stages check the store itself rather than trust them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    pub bucket: String,
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequencer: Option<String>,
    /// The S3 event name, e.g. `ObjectCreated:Put`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_time: Option<DateTime<Utc>>,
}

impl ObjectRef {
    #[must_use]
    pub fn new(bucket: impl Into<String>, key: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            key: key.into(),
            size: None,
            etag: None,
            version_id: None,
            sequencer: None,
            event_name: None,
            event_time: None,
        }
    }

    /// The input of this object's pipeline execution: `{"object": ...}` with the object's
    /// identity only (no event name or time), so every delivery of the same event gives the
    /// same input, as Step Functions requires of a repeated execution name.
    #[must_use]
    pub fn execution_input(&self) -> serde_json::Value {
        let identity = ObjectRef {
            event_name: None,
            event_time: None,
            ..self.clone()
        };
        serde_json::json!({ "object": identity })
    }

    /// A name for the pipeline execution of this object: the same event (object version and
    /// S3 sequencer) always gets the same name, so duplicate deliveries collapse into one
    /// execution; a new write of the key (new sequencer) gets its own. Step Functions allows
    /// 80 characters from `[0-9A-Za-z_-]`; a hash keeps it short and valid for any key.
    #[must_use]
    pub fn execution_name(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        for part in [
            self.bucket.as_str(),
            self.key.as_str(),
            self.etag.as_deref().unwrap_or(""),
            self.version_id.as_deref().unwrap_or(""),
            self.sequencer.as_deref().unwrap_or(""),
        ] {
            hasher.update(part.len().to_be_bytes());
            hasher.update(part.as_bytes());
        }
        let digest = hex::encode(hasher.finalize());
        // A readable tail (the upload id, when the key has one) helps people find it.
        let tail: String = self
            .key
            .rsplit('/')
            .next()
            .unwrap_or("")
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .take(36)
            .collect();
        format!("{}-{tail}", &digest[..40])
    }
}

/// What a HEAD request says about a stored object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    pub size: u64,
    /// Which version this is, where the store tells (see [`ObjectVersion`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<ObjectVersion>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execution_names_are_stable_valid_and_distinct() {
        let mut a = ObjectRef::new("b", "incoming/t/p/01936f6e-8c2a-7b3e-9a4b-2c1d0e9f8a7b");
        a.etag = Some("abc".into());
        let name = a.execution_name();
        assert_eq!(name, a.clone().execution_name());
        assert!(name.len() <= 80, "{name}");
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert!(name.ends_with("01936f6e-8c2a-7b3e-9a4b-2c1d0e9f8a7b"));
        let mut b = a.clone();
        b.etag = Some("abd".into());
        assert_ne!(name, b.execution_name());
        // The same bytes written again: a new sequencer, a new execution.
        let mut c = a.clone();
        c.sequencer = Some("0062E99A88DC407460".into());
        assert_ne!(name, c.execution_name());
        // A duplicate delivery differs only in event time and name: the same execution.
        let mut d = a.clone();
        d.event_name = Some("ObjectCreated:Put".into());
        assert_eq!(name, d.execution_name());
    }
}
