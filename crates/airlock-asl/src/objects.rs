//! The object store a Distributed Map reads its items from (`ItemReader`) and writes its
//! results to (`ResultWriter`): Amazon S3 on AWS, whatever the host provides here.

use std::fmt;
use std::io::{ErrorKind, Read};
use std::path::{Component, Path, PathBuf};

use chrono::{DateTime, Utc};
use md5::{Digest, Md5};

/// One object of a listing, as `ListObjectsV2` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectSummary {
    pub key: String,
    pub size: u64,
    /// The entity tag, quoted as S3 returns it (`"\"<md5 hex>\""` for simple uploads).
    pub etag: String,
    pub last_modified: DateTime<Utc>,
}

/// Why an object store call failed; becomes the cause of `States.ItemReaderFailed` or
/// `States.ResultWriterFailed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectStoreError {
    message: String,
}

impl ObjectStoreError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ObjectStoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ObjectStoreError {}

/// Serves the `arn:aws:states:::s3:getObject`, `s3:listObjectsV2` and `s3:putObject`
/// calls of Distributed Map states. Register one with
/// [`Executor::with_object_store`](crate::Executor::with_object_store).
#[async_trait::async_trait]
pub trait ObjectStore: Send + Sync {
    /// The whole content of one object.
    async fn get_object(&self, bucket: &str, key: &str) -> Result<Vec<u8>, ObjectStoreError>;

    /// Every object whose key starts with `prefix`, in ascending key order (as S3 lists
    /// them; the executor reads every page, so there is no paging here).
    async fn list_objects(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> Result<Vec<ObjectSummary>, ObjectStoreError>;

    /// Creates or replaces one object.
    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
    ) -> Result<(), ObjectStoreError>;
}

/// An [`ObjectStore`] on the local filesystem: bucket `b` is the directory `<root>/b` and
/// key `k` the file at the relative path `k` inside it. Keys and bucket names that could
/// leave the root (`..`, absolute paths, empty segments) are refused, and so is a path that
/// resolves outside the root through a symbolic link.
#[derive(Debug, Clone)]
pub struct FsObjectStore {
    root: PathBuf,
}

impl FsObjectStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn bucket_dir(&self, bucket: &str) -> Result<PathBuf, ObjectStoreError> {
        if bucket.is_empty()
            || bucket == "."
            || bucket == ".."
            || bucket.contains(['/', '\\', '\0'])
        {
            return Err(ObjectStoreError::new(format!(
                "invalid bucket name '{bucket}'"
            )));
        }
        Ok(self.root.join(bucket))
    }

    /// The file of `key` in `bucket`, refusing keys that could leave the bucket.
    fn object_path(&self, bucket: &str, key: &str) -> Result<PathBuf, ObjectStoreError> {
        let dir = self.bucket_dir(bucket)?;
        let refuse = |why: &str| Err(ObjectStoreError::new(format!("invalid key '{key}': {why}")));
        if key.is_empty() {
            return refuse("it is empty");
        }
        if key.starts_with('/') || key.contains(['\\', '\0']) || Path::new(key).is_absolute() {
            return refuse("it must be a relative path without backslashes");
        }
        for segment in key.split('/') {
            if segment.is_empty() || segment == "." || segment == ".." {
                return refuse("it must not contain empty, '.' or '..' segments");
            }
        }
        let path = dir.join(key);
        if !path
            .components()
            .skip(dir.components().count())
            .all(|c| matches!(c, Component::Normal(_)))
        {
            return refuse("it must stay inside its bucket");
        }
        Ok(path)
    }

    /// Refuses `path` when, with links resolved, it is not inside the root.
    fn confined(&self, path: &Path) -> Result<(), ObjectStoreError> {
        let root = self.root.canonicalize().map_err(|e| {
            ObjectStoreError::new(format!("root {} is not usable: {e}", self.root.display()))
        })?;
        let resolved = path
            .canonicalize()
            .map_err(|e| ObjectStoreError::new(format!("{}: {e}", path.display())))?;
        if resolved.starts_with(&root) {
            Ok(())
        } else {
            Err(ObjectStoreError::new(format!(
                "{} resolves outside the store's root",
                path.display()
            )))
        }
    }

    fn get_blocking(&self, bucket: &str, key: &str) -> Result<Vec<u8>, ObjectStoreError> {
        let path = self.object_path(bucket, key)?;
        if !path.is_file() {
            return Err(ObjectStoreError::new(format!(
                "NoSuchKey: the object s3://{bucket}/{key} does not exist"
            )));
        }
        self.confined(&path)?;
        std::fs::read(&path).map_err(|e| ObjectStoreError::new(format!("s3://{bucket}/{key}: {e}")))
    }

    fn list_blocking(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> Result<Vec<ObjectSummary>, ObjectStoreError> {
        let dir = self.bucket_dir(bucket)?;
        if !dir.is_dir() {
            return Err(ObjectStoreError::new(format!(
                "NoSuchBucket: the bucket '{bucket}' does not exist"
            )));
        }
        self.confined(&dir)?;
        let mut out = Vec::new();
        let mut pending = vec![(dir, String::new())];
        while let Some((at, key_prefix)) = pending.pop() {
            let entries = std::fs::read_dir(&at)
                .map_err(|e| ObjectStoreError::new(format!("{}: {e}", at.display())))?;
            for entry in entries {
                let entry =
                    entry.map_err(|e| ObjectStoreError::new(format!("{}: {e}", at.display())))?;
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                let key = format!("{key_prefix}{name}");
                // Symbolic links are not followed: a listing stays inside the bucket.
                let file_type = entry
                    .file_type()
                    .map_err(|e| ObjectStoreError::new(format!("{key}: {e}")))?;
                if file_type.is_dir() {
                    let folder = format!("{key}/");
                    if folder.starts_with(prefix) || prefix.starts_with(&folder) {
                        pending.push((entry.path(), folder));
                    }
                } else if file_type.is_file() && key.starts_with(prefix) {
                    out.push(summarize(&entry.path(), key)?);
                }
            }
        }
        // S3 lists keys in ascending UTF-8 byte order.
        out.sort_by(|a, b| a.key.as_bytes().cmp(b.key.as_bytes()));
        Ok(out)
    }

    fn put_blocking(&self, bucket: &str, key: &str, body: &[u8]) -> Result<(), ObjectStoreError> {
        let dir = self.bucket_dir(bucket)?;
        let path = self.object_path(bucket, key)?;
        if !dir.is_dir() {
            return Err(ObjectStoreError::new(format!(
                "NoSuchBucket: the bucket '{bucket}' does not exist"
            )));
        }
        let parent = path.parent().unwrap_or(&dir);
        std::fs::create_dir_all(parent)
            .map_err(|e| ObjectStoreError::new(format!("{}: {e}", parent.display())))?;
        self.confined(parent)?;
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(ObjectStoreError::new(format!(
                    "s3://{bucket}/{key} is a symbolic link; refusing to write through it"
                )));
            }
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(ObjectStoreError::new(format!("{}: {e}", path.display()))),
        }
        std::fs::write(&path, body)
            .map_err(|e| ObjectStoreError::new(format!("s3://{bucket}/{key}: {e}")))
    }
}

fn summarize(path: &Path, key: String) -> Result<ObjectSummary, ObjectStoreError> {
    let failed = |e: std::io::Error| ObjectStoreError::new(format!("{key}: {e}"));
    let meta = std::fs::metadata(path).map_err(failed)?;
    let mut file = std::fs::File::open(path).map_err(failed)?;
    let mut hasher = Md5::new();
    let mut buffer = vec![0; 64 * 1024];
    loop {
        let read = file.read(&mut buffer).map_err(failed)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    let last_modified = meta
        .modified()
        .map_or_else(|_| Utc::now(), DateTime::<Utc>::from);
    Ok(ObjectSummary {
        etag: format!("\"{}\"", hex::encode(hasher.finalize())),
        size: meta.len(),
        last_modified,
        key,
    })
}

fn joined<T>(
    outcome: Result<Result<T, ObjectStoreError>, tokio::task::JoinError>,
) -> Result<T, ObjectStoreError> {
    outcome.unwrap_or_else(|e| Err(ObjectStoreError::new(format!("the file task failed: {e}"))))
}

#[async_trait::async_trait]
impl ObjectStore for FsObjectStore {
    async fn get_object(&self, bucket: &str, key: &str) -> Result<Vec<u8>, ObjectStoreError> {
        let (store, bucket, key) = (self.clone(), bucket.to_owned(), key.to_owned());
        joined(tokio::task::spawn_blocking(move || store.get_blocking(&bucket, &key)).await)
    }

    async fn list_objects(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> Result<Vec<ObjectSummary>, ObjectStoreError> {
        let (store, bucket, prefix) = (self.clone(), bucket.to_owned(), prefix.to_owned());
        joined(tokio::task::spawn_blocking(move || store.list_blocking(&bucket, &prefix)).await)
    }

    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
    ) -> Result<(), ObjectStoreError> {
        let (store, bucket, key) = (self.clone(), bucket.to_owned(), key.to_owned());
        joined(tokio::task::spawn_blocking(move || store.put_blocking(&bucket, &key, &body)).await)
    }
}
