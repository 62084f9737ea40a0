//! An object store on the filesystem, one folder per bucket.
//!
//! Keys map to paths below the root and can never leave it: `.` and `..` segments, empty
//! segments, absolute keys, backslashes and NUL are refused, and a path that resolves through
//! a symlink to somewhere outside the root is refused too. Writes go to a temporary file that
//! is renamed into place, so a reader never sees half an object.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use airlock_core::object::ObjectMeta;
use airlock_core::ports::{ByteStream, ObjectReader, ObjectWriter, Retry, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// Where temporary files go; no key may start with it.
const TMP_DIR: &str = ".airlock-tmp";
/// Read buffer for streamed objects.
const STREAM_BUFFER: usize = 256 * 1024;

/// A filesystem object store confined to `root`.
#[derive(Debug, Clone)]
pub struct FsStore {
    root: PathBuf,
}

fn backend(key: &str, err: &std::io::Error) -> StoreError {
    let retry = match err.kind() {
        ErrorKind::Interrupted | ErrorKind::WouldBlock | ErrorKind::TimedOut => Retry::Transient,
        _ => Retry::Permanent,
    };
    StoreError::Backend {
        key: key.to_owned(),
        message: err.to_string(),
        retry,
    }
}

fn invalid(key: &str, reason: &str) -> StoreError {
    StoreError::InvalidKey {
        key: key.to_owned(),
        reason: reason.to_owned(),
    }
}

impl FsStore {
    /// Opens (creating if needed) a store rooted at `root`.
    pub fn open(root: impl AsRef<Path>) -> std::io::Result<Self> {
        std::fs::create_dir_all(root.as_ref())?;
        let root = std::fs::canonicalize(root.as_ref())?;
        std::fs::create_dir_all(root.join(TMP_DIR))?;
        Ok(Self { root })
    }

    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path of `key`, checked lexically (symlinks are checked when the path is used).
    pub fn path_of(&self, key: &str) -> Result<PathBuf, StoreError> {
        if key.is_empty() {
            return Err(invalid(key, "empty key"));
        }
        if key.starts_with('/') {
            return Err(invalid(key, "absolute keys are not allowed"));
        }
        if key.contains('\\') || key.contains('\0') {
            return Err(invalid(key, "backslash and NUL are not allowed"));
        }
        let mut path = self.root.clone();
        for (i, segment) in key.split('/').enumerate() {
            match segment {
                "" => return Err(invalid(key, "empty path segment")),
                "." | ".." => return Err(invalid(key, "'.' and '..' segments are not allowed")),
                TMP_DIR if i == 0 => return Err(invalid(key, "reserved prefix")),
                _ => path.push(segment),
            }
        }
        Ok(path)
    }

    /// Refuses a path whose existing part resolves (through symlinks) outside the root.
    fn confine(&self, key: &str, path: &Path) -> Result<(), StoreError> {
        // Walk up to the deepest existing ancestor and resolve it.
        let mut probe = path.to_path_buf();
        loop {
            match std::fs::canonicalize(&probe) {
                Ok(real) => {
                    return if real.starts_with(&self.root) {
                        Ok(())
                    } else {
                        Err(invalid(key, "resolves outside the store's root"))
                    };
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    match std::fs::symlink_metadata(&probe) {
                        // A dangling symlink is not "missing": refuse it.
                        Ok(meta) if meta.file_type().is_symlink() => {
                            return Err(invalid(key, "dangling symlink"));
                        }
                        // Created by a concurrent writer since: resolve it again.
                        Ok(_) => {}
                        Err(_) => {
                            if !probe.pop() {
                                return Ok(());
                            }
                        }
                    }
                }
                Err(e) => return Err(backend(key, &e)),
            }
        }
    }

    fn checked_path(&self, key: &str) -> Result<PathBuf, StoreError> {
        let path = self.path_of(key)?;
        self.confine(key, &path)?;
        Ok(path)
    }

    fn temp_path(&self) -> PathBuf {
        self.root
            .join(TMP_DIR)
            .join(uuid::Uuid::new_v4().simple().to_string())
    }

    async fn prepare_parent(&self, key: &str, path: &Path) -> Result<(), StoreError> {
        // Refuse before creating anything: a symlinked folder must not get us to create
        // folders outside the root.
        self.confine(key, path)?;
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| backend(key, &e))?;
        }
        // Check again now the folders exist: one of them may be a symlink.
        self.confine(key, path)
    }

    async fn install(&self, key: &str, temp: &Path, path: &Path) -> Result<(), StoreError> {
        self.prepare_parent(key, path).await?;
        if let Err(e) = tokio::fs::rename(temp, path).await {
            let _ = tokio::fs::remove_file(temp).await;
            return Err(backend(key, &e));
        }
        // The rename is durable only once its folder is synced: callers delete the source
        // of a copy right after, so the copy must survive a crash.
        if let Some(parent) = path.parent() {
            let parent = parent.to_path_buf();
            tokio::task::spawn_blocking(move || std::fs::File::open(&parent)?.sync_all())
                .await
                .map_err(|e| backend(key, &std::io::Error::other(e)))?
                .map_err(|e| backend(key, &e))?;
        }
        Ok(())
    }
}

#[async_trait]
impl ObjectReader for FsStore {
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        let path = self.checked_path(key)?;
        match tokio::fs::metadata(&path).await {
            Ok(meta) if meta.is_file() => Ok(Some(ObjectMeta {
                size: meta.len(),
                etag: None,
                content_type: None,
                last_modified: meta.modified().ok().map(DateTime::<Utc>::from),
            })),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(backend(key, &e)),
        }
    }

    async fn read_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>, StoreError> {
        let mut file = self.open_file(key).await?;
        file.seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(|e| backend(key, &e))?;
        let mut bytes = Vec::with_capacity(usize::try_from(len.min(1 << 20)).unwrap_or(0));
        file.take(len)
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| backend(key, &e))?;
        Ok(bytes)
    }

    async fn open(&self, key: &str) -> Result<ByteStream, StoreError> {
        let file = self.open_file(key).await?;
        Ok(Box::new(tokio::io::BufReader::with_capacity(
            STREAM_BUFFER,
            file,
        )))
    }
}

impl FsStore {
    async fn open_file(&self, key: &str) -> Result<tokio::fs::File, StoreError> {
        let path = self.checked_path(key)?;
        match tokio::fs::File::open(&path).await {
            Ok(file) => {
                let meta = file.metadata().await.map_err(|e| backend(key, &e))?;
                if meta.is_file() {
                    Ok(file)
                } else {
                    Err(StoreError::NotFound {
                        key: key.to_owned(),
                    })
                }
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Err(StoreError::NotFound {
                key: key.to_owned(),
            }),
            Err(e) => Err(backend(key, &e)),
        }
    }
}

#[async_trait]
impl ObjectWriter for FsStore {
    async fn copy(&self, from: &str, to: &str) -> Result<(), StoreError> {
        let source = self.checked_path(from)?;
        let destination = self.path_of(to)?;
        let temp = self.temp_path();
        match tokio::fs::copy(&source, &temp).await {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(StoreError::NotFound {
                    key: from.to_owned(),
                });
            }
            Err(e) => return Err(backend(from, &e)),
        }
        let synced = async {
            tokio::fs::OpenOptions::new()
                .write(true)
                .open(&temp)
                .await?
                .sync_all()
                .await
        };
        if let Err(e) = synced.await {
            let _ = tokio::fs::remove_file(&temp).await;
            return Err(backend(to, &e));
        }
        self.install(to, &temp, &destination).await
    }

    async fn put(&self, key: &str, bytes: Vec<u8>, _content_type: &str) -> Result<(), StoreError> {
        let destination = self.path_of(key)?;
        let temp = self.temp_path();
        let mut file = tokio::fs::File::create(&temp)
            .await
            .map_err(|e| backend(key, &e))?;
        file.write_all(&bytes).await.map_err(|e| backend(key, &e))?;
        file.sync_all().await.map_err(|e| backend(key, &e))?;
        drop(file);
        self.install(key, &temp, &destination).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.checked_path(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(backend(key, &e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, FsStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path().join("bucket")).unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn put_head_read_copy_delete() {
        let (_dir, store) = store();
        store
            .put("incoming/a/b/c", b"hello world".to_vec(), "text/plain")
            .await
            .unwrap();
        let meta = store.head("incoming/a/b/c").await.unwrap().unwrap();
        assert_eq!(meta.size, 11);
        assert_eq!(
            store.read_range("incoming/a/b/c", 6, 100).await.unwrap(),
            b"world"
        );
        assert_eq!(
            store.read_range("incoming/a/b/c", 0, 5).await.unwrap(),
            b"hello"
        );
        store.copy("incoming/a/b/c", "trusted/a/b/c").await.unwrap();
        let mut text = String::new();
        store
            .open("trusted/a/b/c")
            .await
            .unwrap()
            .read_to_string(&mut text)
            .await
            .unwrap();
        assert_eq!(text, "hello world");
        store.delete("incoming/a/b/c").await.unwrap();
        store.delete("incoming/a/b/c").await.unwrap();
        assert!(store.head("incoming/a/b/c").await.unwrap().is_none());
        assert!(matches!(
            store.open("incoming/a/b/c").await,
            Err(StoreError::NotFound { .. })
        ));
        assert!(matches!(
            store.copy("incoming/a/b/c", "x").await,
            Err(StoreError::NotFound { .. })
        ));
        // A folder is not an object.
        assert!(store.head("trusted/a").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn keys_cannot_escape_the_root() {
        let (dir, store) = store();
        std::fs::write(dir.path().join("secret"), b"s").unwrap();
        for key in [
            "../secret",
            "a/../../secret",
            "/etc/passwd",
            "a//b",
            "./a",
            "a\\..\\secret",
            "",
            ".airlock-tmp/x",
            "a\0b",
        ] {
            assert!(
                matches!(store.head(key).await, Err(StoreError::InvalidKey { .. })),
                "{key:?} was accepted"
            );
            assert!(
                store.put(key, b"x".to_vec(), "text/plain").await.is_err(),
                "{key:?} was written"
            );
        }
        assert_eq!(std::fs::read(dir.path().join("secret")).unwrap(), b"s");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writers_in_new_folders_do_not_trip_each_other() {
        let (_dir, store) = store();
        let store = std::sync::Arc::new(store);
        let mut tasks = Vec::new();
        for i in 0..64 {
            let store = std::sync::Arc::clone(&store);
            tasks.push(tokio::spawn(async move {
                let key = format!("incoming/t{}/p/{i}", i % 4);
                store.head(&key).await?;
                store.put(&key, vec![1; 10], "text/plain").await?;
                store.head(&key).await
            }));
        }
        for task in tasks {
            assert!(task.await.unwrap().unwrap().is_some());
        }
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn symlinks_cannot_escape_the_root() {
        let (dir, store) = store();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("file"), b"secret").unwrap();
        std::os::unix::fs::symlink(&outside, store.root().join("link")).unwrap();
        std::os::unix::fs::symlink(outside.join("file"), store.root().join("file-link")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("nowhere"), store.root().join("dangling"))
            .unwrap();
        for key in ["link/file", "file-link"] {
            assert!(
                matches!(store.head(key).await, Err(StoreError::InvalidKey { .. })),
                "{key}"
            );
            assert!(store.open(key).await.is_err(), "{key}");
            assert!(store.read_range(key, 0, 10).await.is_err(), "{key}");
            assert!(store.delete(key).await.is_err(), "{key}");
        }
        assert!(
            store
                .put("link/new", b"x".to_vec(), "text/plain")
                .await
                .is_err()
        );
        assert!(!outside.join("new").exists());
        // Not even a folder is created through the link.
        assert!(
            store
                .put("link/deeper/new", b"x".to_vec(), "text/plain")
                .await
                .is_err()
        );
        assert!(!outside.join("deeper").exists());
        assert!(
            store
                .put("dangling/new", b"x".to_vec(), "text/plain")
                .await
                .is_err()
        );
        assert!(store.copy("file-link", "stolen").await.is_err());
        assert!(store.head("stolen").await.unwrap().is_none());
        // A symlink that stays inside the root is fine.
        store
            .put("real/obj", b"ok".to_vec(), "text/plain")
            .await
            .unwrap();
        std::os::unix::fs::symlink(store.root().join("real"), store.root().join("alias")).unwrap();
        assert_eq!(store.head("alias/obj").await.unwrap().unwrap().size, 2);
    }
}
