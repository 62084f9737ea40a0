//! What the endpoint serves and who may sign for it.

use std::fmt;
use std::path::PathBuf;

/// Largest POST-form file accepted when [`EndpointConfig::max_post_size`] is left as is:
/// s3s holds a POST file in memory (a signed policy's `content-length-range` bounds it
/// further).
pub const DEFAULT_MAX_POST_SIZE: u64 = 1 << 30;

/// The one identity whose `SigV4` signatures the endpoint accepts.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl Credentials {
    #[must_use]
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// The endpoint's bucket, region, identity, browser origins and working folder.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// The one bucket served, path-style (`http://host:port/{bucket}/{key}`); requests for
    /// any other bucket are answered `NoSuchBucket`.
    pub bucket: String,
    /// The region in event notifications; signatures may name any region, as they are
    /// checked against the region they name.
    pub region: String,
    pub credentials: Credentials,
    /// Origins browsers may upload from, exactly as they send them in `Origin`
    /// (`http://localhost:5173`, no trailing slash); `*` allows every origin.
    pub cors_origins: Vec<String>,
    /// Where multipart uploads keep their parts until they are completed or aborted. It must
    /// lie outside the store's root, so parts are never keys.
    pub parts_dir: PathBuf,
    /// Largest file a POST form may carry (see [`DEFAULT_MAX_POST_SIZE`]).
    pub max_post_size: u64,
}

impl EndpointConfig {
    /// A configuration with no CORS origin and the default POST size limit.
    #[must_use]
    pub fn new(
        bucket: impl Into<String>,
        region: impl Into<String>,
        credentials: Credentials,
        parts_dir: impl Into<PathBuf>,
    ) -> Self {
        Self {
            bucket: bucket.into(),
            region: region.into(),
            credentials,
            cors_origins: Vec::new(),
            parts_dir: parts_dir.into(),
            max_post_size: DEFAULT_MAX_POST_SIZE,
        }
    }

    /// Why the configuration cannot be served, if it cannot.
    pub(crate) fn problem(&self) -> Option<String> {
        let bucket = &self.bucket;
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
            && bucket.as_bytes()[0].is_ascii_alphanumeric()
            && bucket.as_bytes()[bucket.len() - 1].is_ascii_alphanumeric()
            && !bucket.contains("..");
        if !bucket_ok {
            return Some(format!(
                "bucket {bucket:?} is not a valid S3 bucket name (3 to 63 of a-z, 0-9, '.', '-', starting and ending with a letter or digit)"
            ));
        }
        if self.region.is_empty()
            || !self
                .region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Some(format!(
                "region {:?} must be lowercase letters, digits and '-'",
                self.region
            ));
        }
        let id = &self.credentials.access_key_id;
        if id.is_empty() || id.contains('/') || !id.bytes().all(|b| b.is_ascii_graphic()) {
            return Some(format!(
                "access key id {id:?} must be non-empty visible ASCII without '/'"
            ));
        }
        if self.credentials.secret_access_key.is_empty() {
            return Some("the secret access key is empty".to_owned());
        }
        for origin in &self.cors_origins {
            if origin != "*" && !is_origin(origin) {
                return Some(format!(
                    "CORS origin {origin:?} must be \"*\" or scheme://host[:port] without a path"
                ));
            }
        }
        if self.max_post_size == 0 {
            return Some("max_post_size must be at least 1 byte".to_owned());
        }
        None
    }
}

fn is_origin(origin: &str) -> bool {
    let Some((scheme, rest)) = origin.split_once("://") else {
        return false;
    };
    !scheme.is_empty()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.')
        && !rest.is_empty()
        && !rest.contains('/')
        && rest.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> EndpointConfig {
        EndpointConfig::new(
            "uploads",
            "us-east-1",
            Credentials::new("ak", "sk"),
            "/tmp/p",
        )
    }

    #[test]
    fn problems_are_named() {
        assert_eq!(config().problem(), None);
        let mut c = config();
        c.bucket = "Bad_Bucket".to_owned();
        assert!(c.problem().unwrap().contains("Bad_Bucket"));
        let mut c = config();
        c.cors_origins = vec!["http://localhost:5173/".to_owned()];
        assert!(c.problem().unwrap().contains("localhost:5173/"));
        let mut c = config();
        c.cors_origins = vec!["*".to_owned(), "https://app.example".to_owned()];
        assert_eq!(c.problem(), None);
        let mut c = config();
        c.credentials = Credentials::new("a/b", "sk");
        assert!(c.problem().unwrap().contains("a/b"));
        let debug = format!("{:?}", Credentials::new("ak", "s3cr3t"));
        assert!(!debug.contains("s3cr3t"), "{debug}");
    }
}
