//! The object-key scheme.
//!
//! Keys are made by the server, never by the client: `incoming/{tenant}/{purpose}/{upload_id}`,
//! with `trusted/` and `quarantine/` counterparts under the same suffix. Derived objects sit
//! beside their original as `{key}.{suffix}` (for example the quarantine record
//! `quarantine/{tenant}/{purpose}/{upload_id}.json`), so the scheme works as well on a
//! filesystem, where a key cannot be both a file and a folder, as on S3.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Prefix of objects written by clients and not yet checked.
pub const INCOMING_PREFIX: &str = "incoming/";
/// Prefix of objects the pipeline has checked and promoted.
pub const TRUSTED_PREFIX: &str = "trusted/";
/// Prefix of rejected objects and their records.
pub const QUARANTINE_PREFIX: &str = "quarantine/";

/// Prefix of the media stage's outputs waiting for promotion. Outside `incoming/`, so writing
/// them triggers no pipeline event, and outside `trusted/`, so nothing unpromoted is readable.
pub const STAGING_PREFIX: &str = "staging/";

/// Longest tenant or purpose name accepted.
const MAX_SEGMENT_LEN: usize = 64;

/// Why a key or a key segment was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("key {key:?} is not under {INCOMING_PREFIX}")]
    NotIncoming { key: String },
    #[error("key {key:?} does not have the form incoming/{{tenant}}/{{purpose}}/{{upload_id}}")]
    Shape { key: String },
    #[error(
        "{what} {value:?} is invalid: use 1 to {MAX_SEGMENT_LEN} characters from a-z, 0-9, '-', '_', starting with a letter or digit"
    )]
    Segment { what: &'static str, value: String },
    #[error("upload id {value:?} is not a UUID")]
    UploadId { value: String },
}

fn validate_segment(what: &'static str, value: &str) -> Result<(), KeyError> {
    let valid = !value.is_empty()
        && value.len() <= MAX_SEGMENT_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && value.as_bytes()[0].is_ascii_alphanumeric();
    if valid {
        Ok(())
    } else {
        Err(KeyError::Segment {
            what,
            value: value.to_owned(),
        })
    }
}

macro_rules! segment_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn new(value: impl Into<String>) -> Result<Self, KeyError> {
                let value = value.into();
                validate_segment($what, &value)?;
                Ok(Self(value))
            }

            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = KeyError;
            fn try_from(value: String) -> Result<Self, KeyError> {
                Self::new(value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

segment_type!(
    /// A tenant: whose upload this is.
    TenantId,
    "tenant"
);
segment_type!(
    /// What the upload is for (`avatar`, `document`...): selects the upload policy.
    Purpose,
    "purpose"
);

/// Identity of one upload: a UUIDv7, so ids sort by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UploadId(Uuid);

impl UploadId {
    /// A fresh, time-ordered id.
    #[must_use]
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }

    #[must_use]
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl FromStr for UploadId {
    type Err = KeyError;
    fn from_str(value: &str) -> Result<Self, KeyError> {
        // Only the canonical lower-case hyphenated form, so one id has exactly one key.
        match Uuid::parse_str(value) {
            Ok(uuid) if uuid.hyphenated().to_string() == value => Ok(Self(uuid)),
            _ => Err(KeyError::UploadId {
                value: value.to_owned(),
            }),
        }
    }
}

impl TryFrom<String> for UploadId {
    type Error = KeyError;
    fn try_from(value: String) -> Result<Self, KeyError> {
        value.parse()
    }
}

impl From<UploadId> for String {
    fn from(value: UploadId) -> String {
        value.to_string()
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.hyphenated())
    }
}

/// The key an object under `incoming/` gets under another prefix (`trusted/`,
/// `quarantine/`): the same suffix, so a key that does not fit the scheme still has one
/// well-defined place to go.
#[must_use]
pub fn counterpart(incoming_key: &str, prefix: &str) -> Option<String> {
    incoming_key
        .strip_prefix(INCOMING_PREFIX)
        .filter(|rest| !rest.is_empty())
        .map(|rest| format!("{prefix}{rest}"))
}

/// The server-made identity of an upload's objects: tenant, purpose and id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct UploadKey {
    pub tenant: TenantId,
    pub purpose: Purpose,
    pub upload_id: UploadId,
}

impl UploadKey {
    #[must_use]
    pub fn new(tenant: TenantId, purpose: Purpose, upload_id: UploadId) -> Self {
        Self {
            tenant,
            purpose,
            upload_id,
        }
    }

    /// Parses `incoming/{tenant}/{purpose}/{upload_id}`.
    pub fn parse_incoming(key: &str) -> Result<Self, KeyError> {
        let rest = key
            .strip_prefix(INCOMING_PREFIX)
            .ok_or_else(|| KeyError::NotIncoming {
                key: key.to_owned(),
            })?;
        let parts: Vec<&str> = rest.split('/').collect();
        let [tenant, purpose, upload_id] = parts.as_slice() else {
            return Err(KeyError::Shape {
                key: key.to_owned(),
            });
        };
        Ok(Self {
            tenant: TenantId::new(*tenant)?,
            purpose: Purpose::new(*purpose)?,
            upload_id: upload_id.parse()?,
        })
    }

    fn suffix(&self) -> String {
        format!("{}/{}/{}", self.tenant, self.purpose, self.upload_id)
    }

    #[must_use]
    pub fn incoming(&self) -> String {
        format!("{INCOMING_PREFIX}{}", self.suffix())
    }

    #[must_use]
    pub fn trusted(&self) -> String {
        format!("{TRUSTED_PREFIX}{}", self.suffix())
    }

    #[must_use]
    pub fn quarantine(&self) -> String {
        format!("{QUARANTINE_PREFIX}{}", self.suffix())
    }

    /// A media output waiting for promotion, e.g. `staging/t/p/{id}/w1024.jpg`.
    #[must_use]
    pub fn staging(&self, file: &str) -> String {
        format!("{STAGING_PREFIX}{}/{file}", self.suffix())
    }

    /// A promoted derived object beside the original, e.g. `trusted/t/p/{id}.w1024.jpg`.
    #[must_use]
    pub fn trusted_derived(&self, suffix: &str) -> String {
        format!("{}.{suffix}", self.trusted())
    }

    /// The JSON record written beside a quarantined object.
    #[must_use]
    pub fn quarantine_record(&self) -> String {
        format!("{}.json", self.quarantine())
    }
}

impl fmt::Display for UploadKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.suffix())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "01936f6e-8c2a-7b3e-9a4b-2c1d0e9f8a7b";

    #[test]
    fn parses_and_rebuilds_every_prefix() {
        let key = UploadKey::parse_incoming(&format!("incoming/acme/avatar/{ID}")).unwrap();
        assert_eq!(key.tenant.as_str(), "acme");
        assert_eq!(key.purpose.as_str(), "avatar");
        assert_eq!(key.incoming(), format!("incoming/acme/avatar/{ID}"));
        assert_eq!(key.trusted(), format!("trusted/acme/avatar/{ID}"));
        assert_eq!(key.quarantine(), format!("quarantine/acme/avatar/{ID}"));
        assert_eq!(
            key.quarantine_record(),
            format!("quarantine/acme/avatar/{ID}.json")
        );
    }

    #[test]
    fn refuses_keys_outside_the_scheme() {
        for (key, expected) in [
            (format!("trusted/acme/avatar/{ID}"), "is not under"),
            ("incoming/acme/avatar".to_owned(), "does not have the form"),
            (
                format!("incoming/acme/avatar/x/{ID}"),
                "does not have the form",
            ),
            (format!("incoming/Acme/avatar/{ID}"), "tenant \"Acme\""),
            (format!("incoming/acme/../{ID}"), "purpose \"..\""),
            (format!("incoming/acme//{ID}"), "purpose \"\""),
            ("incoming/acme/avatar/cat.jpg".to_owned(), "not a UUID"),
            (
                format!("incoming/acme/avatar/{}", ID.to_uppercase()),
                "not a UUID",
            ),
        ] {
            let err = UploadKey::parse_incoming(&key).unwrap_err().to_string();
            assert!(err.contains(expected), "{key}: {err}");
        }
    }

    #[test]
    fn counterparts_keep_the_suffix() {
        assert_eq!(
            counterpart("incoming/a b.txt", QUARANTINE_PREFIX).as_deref(),
            Some("quarantine/a b.txt")
        );
        assert_eq!(counterpart("incoming/", TRUSTED_PREFIX), None);
        assert_eq!(counterpart("other/x", TRUSTED_PREFIX), None);
    }

    #[test]
    fn generated_ids_sort_by_creation() {
        let first = UploadId::generate();
        let second = UploadId::generate();
        assert!(first < second);
        assert_eq!(first.to_string().parse::<UploadId>().unwrap(), first);
    }
}
