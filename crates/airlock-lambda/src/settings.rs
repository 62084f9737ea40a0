//! The functions' settings, from their environment (set by the template). A missing or
//! malformed variable stops the function at cold start with its name, never at the first
//! request.

use std::time::Duration;

use airlock_core::policy::Policies;

/// A setting the function cannot start without, or cannot read.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// Reads settings through `lookup` (the process environment in a function, a map in tests).
pub struct Env<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl std::fmt::Debug for Env<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env").finish_non_exhaustive()
    }
}

impl<'a> Env<'a> {
    pub fn new(lookup: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Self { lookup }
    }

    /// A set, non-empty variable.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name).filter(|value| !value.trim().is_empty())
    }

    pub fn required(&self, name: &'static str) -> Result<String, SettingsError> {
        self.get(name).ok_or(SettingsError::Missing(name))
    }

    /// A whole number of seconds, `default` when unset.
    pub fn seconds(
        &self,
        name: &'static str,
        default: Duration,
    ) -> Result<Duration, SettingsError> {
        match self.get(name) {
            None => Ok(default),
            Some(text) => text
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|&s| s > 0)
                .map(Duration::from_secs)
                .ok_or_else(|| SettingsError::Invalid {
                    name,
                    reason: format!("{text:?} is not a positive whole number of seconds"),
                }),
        }
    }

    /// A positive count, `default` when unset.
    pub fn count(&self, name: &'static str, default: usize) -> Result<usize, SettingsError> {
        match self.get(name) {
            None => Ok(default),
            Some(text) => text
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| SettingsError::Invalid {
                    name,
                    reason: format!("{text:?} is not a positive whole number"),
                }),
        }
    }

    /// The upload policies: `AIRLOCK_POLICIES` (TOML text) or the built-in ones.
    pub fn policies(&self) -> Result<Policies, SettingsError> {
        match self.get("AIRLOCK_POLICIES") {
            None => Ok(Policies::builtin()),
            Some(text) => Policies::from_toml(&text).map_err(|e| SettingsError::Invalid {
                name: "AIRLOCK_POLICIES",
                reason: e.to_string(),
            }),
        }
    }
}

/// The process environment.
#[must_use]
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The sign function's settings.
#[derive(Debug, Clone)]
pub struct SignSettings {
    pub bucket: String,
    pub table: String,
    /// The JWT claim that carries the tenant (`AIRLOCK_TENANT_CLAIM`, default `tenant`).
    pub tenant_claim: String,
    /// Where presigned URLs point: `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL` (an emulator or
    /// an S3-compatible store, path-style), else the region's S3 endpoint, virtual-hosted.
    pub s3_endpoint: Option<String>,
    pub upload_url_validity: Duration,
    pub download_url_validity: Duration,
    pub policies: Policies,
}

impl SignSettings {
    pub fn from_env(env: &Env<'_>) -> Result<Self, SettingsError> {
        Ok(Self {
            bucket: env.required("AIRLOCK_BUCKET")?,
            table: env.required("AIRLOCK_TABLE")?,
            tenant_claim: env
                .get("AIRLOCK_TENANT_CLAIM")
                .unwrap_or_else(|| "tenant".to_owned()),
            s3_endpoint: env
                .get("AWS_ENDPOINT_URL_S3")
                .or_else(|| env.get("AWS_ENDPOINT_URL")),
            upload_url_validity: env
                .seconds("AIRLOCK_UPLOAD_URL_SECONDS", Duration::from_mins(5))?,
            download_url_validity: env
                .seconds("AIRLOCK_DOWNLOAD_URL_SECONDS", Duration::from_mins(5))?,
            policies: env.policies()?,
        })
    }
}

/// The ingest function's settings.
#[derive(Debug, Clone)]
pub struct IngestSettings {
    pub bucket: String,
    pub state_machine_arn: String,
}

impl IngestSettings {
    pub fn from_env(env: &Env<'_>) -> Result<Self, SettingsError> {
        Ok(Self {
            bucket: env.required("AIRLOCK_BUCKET")?,
            state_machine_arn: env.required("AIRLOCK_STATE_MACHINE_ARN")?,
        })
    }
}

/// The worker function's settings (the inspect, media, promote and quarantine stages).
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub bucket: String,
    pub table: String,
    pub event_bus: String,
    /// How many images one instance decodes at once (`AIRLOCK_MEDIA_CONCURRENCY`, default 1:
    /// decoding is memory-heavy and a function's memory is fixed).
    pub media_concurrency: usize,
    pub policies: Policies,
}

impl WorkerSettings {
    pub fn from_env(env: &Env<'_>) -> Result<Self, SettingsError> {
        Ok(Self {
            bucket: env.required("AIRLOCK_BUCKET")?,
            table: env.required("AIRLOCK_TABLE")?,
            event_bus: env.required("AIRLOCK_EVENT_BUS")?,
            media_concurrency: env.count("AIRLOCK_MEDIA_CONCURRENCY", 1)?,
            policies: env.policies()?,
        })
    }
}
