//! Virus definitions from the private mirror bucket into clamd's database directory.
//!
//! The mirror is a bucket (or a folder of one) that a scheduled task fills with ClamAV's
//! `cvdupdate`: `daily.cvd`, `main.cvd`, `bytecode.cvd` (and whatever else it keeps, such
//! as `.cdiff` patches, which are not needed here). A sync lists it, downloads each database
//! file whose ETag changed into a hidden temporary file beside its place (clamd loads files
//! by their extension, so it never sees a partial one), checks a container's header, and
//! renames it into place. Files this worker put there and the mirror no longer has are
//! removed. The ETags are kept in `airlock-mirror.json` in the directory (clamd ignores
//! it), so a restarted worker downloads only what changed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use airlock_clamd::ClamdScanner;
use airlock_clamd::database::{ContainerHeader, HEADER_LEN, read_header};
use aws_sdk_s3::Client;
use tokio::io::AsyncWriteExt;

/// The file, in the database directory, that remembers the mirror's ETags.
pub const STATE_FILE: &str = "airlock-mirror.json";

/// Extensions of the files clamd loads as databases: containers (`cvd` official and
/// signed, `cld` as freshclam leaves them, `cud` unsigned) and plain signature files.
const DATABASE_EXTENSIONS: &[&str] = &[
    "cvd", "cld", "cud", "ndb", "ndu", "hdb", "hdu", "hsb", "hsu", "mdb", "mdu", "msb", "msu",
    "ldb", "ldu", "cdb", "idb", "ign", "ign2", "fp", "sfp", "pdb", "gdb", "wdb", "ftm", "cbc",
    "crb", "yar", "yara",
];

/// Whether `name` (a file name, no folder) is a database clamd would load.
#[must_use]
pub fn is_database_file(name: &str) -> bool {
    !name.starts_with('.')
        && !name.contains('/')
        && name
            .rsplit_once('.')
            .is_some_and(|(stem, ext)| !stem.is_empty() && DATABASE_EXTENSIONS.contains(&ext))
}

/// A failed sync. Nothing half-written is left in the database directory.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error("listing the definitions mirror s3://{bucket}/{prefix}: {message}")]
    List {
        bucket: String,
        prefix: String,
        message: String,
    },
    #[error("the definitions mirror s3://{bucket}/{prefix} holds no database files")]
    Empty { bucket: String, prefix: String },
    #[error("downloading s3://{bucket}/{key}: {message}")]
    Download {
        bucket: String,
        key: String,
        message: String,
    },
    #[error("s3://{bucket}/{key} is not a usable database: {source}")]
    BadContainer {
        bucket: String,
        key: String,
        #[source]
        source: airlock_clamd::database::BadContainer,
    },
    #[error("writing {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What a sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Files downloaded (new or changed), by name.
    pub downloaded: Vec<String>,
    /// Files removed because the mirror no longer has them.
    pub removed: Vec<String>,
    /// Files already up to date.
    pub unchanged: usize,
    /// The daily database now in the directory (newest of `daily.cvd`, `.cld`, `.cud`).
    pub daily: Option<ContainerHeader>,
}

impl SyncReport {
    #[must_use]
    pub fn changed(&self) -> bool {
        !self.downloaded.is_empty() || !self.removed.is_empty()
    }
}

/// The mirror bucket and the directory it is copied to.
#[derive(Debug, Clone)]
pub struct DefinitionsMirror {
    s3: Client,
    bucket: String,
    prefix: String,
    database_dir: PathBuf,
}

impl DefinitionsMirror {
    /// `prefix` is the mirror's folder in `bucket` (empty for its root, else ending in `/`
    /// or completed with one).
    #[must_use]
    pub fn new(
        s3: Client,
        bucket: impl Into<String>,
        prefix: &str,
        database_dir: impl Into<PathBuf>,
    ) -> Self {
        let prefix = if prefix.is_empty() || prefix.ends_with('/') {
            prefix.to_owned()
        } else {
            format!("{prefix}/")
        };
        Self {
            s3,
            bucket: bucket.into(),
            prefix,
            database_dir: database_dir.into(),
        }
    }

    #[must_use]
    pub fn database_dir(&self) -> &Path {
        &self.database_dir
    }

    /// Brings the database directory up to the mirror's content.
    pub async fn sync(&self) -> Result<SyncReport, MirrorError> {
        let listed = self.list().await?;
        if listed.is_empty() {
            return Err(MirrorError::Empty {
                bucket: self.bucket.clone(),
                prefix: self.prefix.clone(),
            });
        }
        tokio::fs::create_dir_all(&self.database_dir)
            .await
            .map_err(|source| io_error(&self.database_dir, source))?;
        let mut known = self.load_state().await;
        let mut report = SyncReport::default();
        for (name, etag) in &listed {
            let path = self.database_dir.join(name);
            let present = tokio::fs::try_exists(&path).await.unwrap_or(false);
            if present && known.get(name) == Some(etag) {
                report.unchanged += 1;
                continue;
            }
            self.download(name, &path).await?;
            known.insert(name.clone(), etag.clone());
            // Remembered after each file, so an interrupted sync does not repeat it.
            self.save_state(&known).await?;
            report.downloaded.push(name.clone());
        }
        let gone: Vec<String> = known
            .keys()
            .filter(|name| !listed.contains_key(*name))
            .cloned()
            .collect();
        for name in gone {
            let path = self.database_dir.join(&name);
            match tokio::fs::remove_file(&path).await {
                Ok(()) => report.removed.push(name.clone()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(io_error(&path, source)),
            }
            known.remove(&name);
            self.save_state(&known).await?;
        }
        report.daily = self.daily_header().await;
        Ok(report)
    }

    /// Database files in the mirror, by name, with their ETags.
    async fn list(&self) -> Result<BTreeMap<String, String>, MirrorError> {
        let mut files = BTreeMap::new();
        let mut pages = self
            .s3
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&self.prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| MirrorError::List {
                bucket: self.bucket.clone(),
                prefix: self.prefix.clone(),
                message: airlock_core::stages::error_chain(&e),
            })?;
            for object in page.contents() {
                let Some(name) = object.key().and_then(|k| k.strip_prefix(&self.prefix)) else {
                    continue;
                };
                if is_database_file(name) {
                    let etag = object.e_tag().unwrap_or_default().to_owned();
                    files.insert(name.to_owned(), etag);
                }
            }
        }
        Ok(files)
    }

    /// Downloads one file beside its place, checks it, and renames it into place.
    async fn download(&self, name: &str, path: &Path) -> Result<(), MirrorError> {
        let key = format!("{}{name}", self.prefix);
        let failed = |message: String| MirrorError::Download {
            bucket: self.bucket.clone(),
            key: key.clone(),
            message,
        };
        let object = self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| failed(airlock_core::stages::error_chain(&e)))?;
        let partial = self.database_dir.join(format!(".{name}.partial"));
        let result = async {
            let mut file = tokio::fs::File::create(&partial)
                .await
                .map_err(|source| io_error(&partial, source))?;
            let mut body = object.body;
            let mut first = Vec::with_capacity(HEADER_LEN);
            while let Some(chunk) = body
                .try_next()
                .await
                .map_err(|e| failed(airlock_core::stages::error_chain(&e)))?
            {
                if first.len() < HEADER_LEN {
                    let take = (HEADER_LEN - first.len()).min(chunk.len());
                    first.extend_from_slice(&chunk[..take]);
                }
                file.write_all(&chunk)
                    .await
                    .map_err(|source| io_error(&partial, source))?;
            }
            file.sync_all()
                .await
                .map_err(|source| io_error(&partial, source))?;
            if is_container(name) {
                read_header(&first).map_err(|source| MirrorError::BadContainer {
                    bucket: self.bucket.clone(),
                    key: key.clone(),
                    source,
                })?;
            }
            tokio::fs::rename(&partial, path)
                .await
                .map_err(|source| io_error(path, source))
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&partial).await;
        }
        result
    }

    /// The newest daily container in the directory.
    async fn daily_header(&self) -> Option<ContainerHeader> {
        let mut newest: Option<ContainerHeader> = None;
        for ext in ["cvd", "cld", "cud"] {
            let path = self.database_dir.join(format!("daily.{ext}"));
            let Ok(mut file) = tokio::fs::File::open(&path).await else {
                continue;
            };
            let mut first = vec![0_u8; HEADER_LEN];
            if tokio::io::AsyncReadExt::read_exact(&mut file, &mut first)
                .await
                .is_err()
            {
                continue;
            }
            if let Ok(header) = read_header(&first)
                && newest.as_ref().is_none_or(|n| header.version > n.version)
            {
                newest = Some(header);
            }
        }
        newest
    }

    async fn load_state(&self) -> BTreeMap<String, String> {
        let path = self.database_dir.join(STATE_FILE);
        match tokio::fs::read(&path).await {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
            Err(_) => BTreeMap::new(),
        }
    }

    async fn save_state(&self, known: &BTreeMap<String, String>) -> Result<(), MirrorError> {
        let path = self.database_dir.join(STATE_FILE);
        let partial = self.database_dir.join(format!(".{STATE_FILE}.partial"));
        let bytes = serde_json::to_vec_pretty(known).expect("a map of strings serializes");
        tokio::fs::write(&partial, bytes)
            .await
            .map_err(|source| io_error(&partial, source))?;
        tokio::fs::rename(&partial, &path)
            .await
            .map_err(|source| io_error(&path, source))
    }
}

fn io_error(path: &Path, source: std::io::Error) -> MirrorError {
    MirrorError::Io {
        path: path.to_owned(),
        source,
    }
}

fn is_container(name: &str) -> bool {
    [".cvd", ".cld", ".cud"]
        .iter()
        .any(|ext| name.ends_with(ext))
}

/// A failed refresh.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error(transparent)]
    Mirror(#[from] MirrorError),
    #[error("clamd did not reload: {0}")]
    Reload(#[source] airlock_core::ports::ScanError),
    #[error(
        "clamd still reports definitions {reported:?} {waited:?} after RELOAD, not the \
         mirror's daily {expected}"
    )]
    NotLoaded {
        expected: u32,
        reported: Option<u32>,
        waited: Duration,
    },
}

/// Syncs the mirror and, when anything changed, has clamd `RELOAD` and waits (at most
/// `wait`) until it reports the mirror's daily version.
pub async fn refresh(
    mirror: &DefinitionsMirror,
    scanner: &ClamdScanner,
    wait: Duration,
) -> Result<SyncReport, RefreshError> {
    let report = mirror.sync().await?;
    if !report.changed() {
        return Ok(report);
    }
    scanner.reload().await.map_err(RefreshError::Reload)?;
    let Some(expected) = report.daily.as_ref().map(|d| d.version) else {
        return Ok(report);
    };
    let started = tokio::time::Instant::now();
    loop {
        let reported = match scanner.fetch_version().await {
            Ok(version) => version.definitions.map(|d| d.version),
            // clamd may be busy swapping databases; asked again below.
            Err(error) => {
                tracing::debug!(%error, "VERSION during a reload");
                None
            }
        };
        if reported.is_some_and(|v| v >= expected) {
            return Ok(report);
        }
        if started.elapsed() >= wait {
            return Err(RefreshError::NotLoaded {
                expected,
                reported,
                waited: wait,
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_database_files_are_copied() {
        for name in [
            "daily.cvd",
            "main.cvd",
            "bytecode.cvd",
            "daily.cld",
            "daily.cud",
            "airlock-test.ndb",
            "airlock-test.hsb",
        ] {
            assert!(is_database_file(name), "{name}");
        }
        for name in [
            "daily-27500.cdiff",
            "dns.txt",
            "README.md",
            STATE_FILE,
            ".daily.cvd.partial",
            "sub/daily.cvd",
            ".cvd",
            "daily",
        ] {
            assert!(!is_database_file(name), "{name}");
        }
    }
}
