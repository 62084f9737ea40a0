//! An object store on the filesystem, one folder per bucket.
//!
//! Keys map to paths below the root and can never leave it: `.` and `..` segments, empty
//! segments, absolute keys, backslashes and NUL are refused, and a path that resolves through
//! a symlink to somewhere outside the root is refused too. Writes go to a temporary file that
//! is flushed, synced and then renamed (or, for create-only writes, hard-linked) into place,
//! so a reader never sees half an object and an object is never changed in place.
//!
//! Versions: because objects are only ever replaced whole, an object's inode, modification
//! time and size identify its bytes. That is the version token ([`ObjectVersion`]) this store
//! reports and checks; a read of a pinned version checks it on the opened file, so the read
//! is of exactly that object even if the key is replaced meanwhile.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use airlock_core::object::ObjectMeta;
use airlock_core::ports::{
    ByteStream, ObjectReader, ObjectVersion, ObjectWriter, Retry, StoreError, WriteMode,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// Where temporary files go; no key may start with it.
const TMP_DIR: &str = ".airlock-tmp";
/// Read buffer for streamed objects.
const STREAM_BUFFER: usize = 256 * 1024;
/// Temporary files older than this, found when the store is opened, were left by a process
/// that died mid-write; younger ones may belong to a live writer.
const STALE_TEMP_AGE: Duration = Duration::from_mins(15);

/// A filesystem object store confined to `root`.
#[derive(Debug, Clone)]
pub struct FsStore {
    root: PathBuf,
}

/// Whether an I/O failure may go away: a full disk or quota may be freed, an interrupted or
/// timed-out call may succeed next time.
fn io_retry(err: &std::io::Error) -> Retry {
    match err.kind() {
        ErrorKind::Interrupted
        | ErrorKind::WouldBlock
        | ErrorKind::TimedOut
        | ErrorKind::StorageFull
        | ErrorKind::QuotaExceeded
        | ErrorKind::ResourceBusy => Retry::Transient,
        _ => Retry::Permanent,
    }
}

fn backend(key: &str, err: std::io::Error) -> StoreError {
    let retry = io_retry(&err);
    StoreError::backend(key, retry, err)
}

fn invalid(key: &str, reason: &str) -> StoreError {
    StoreError::InvalidKey {
        key: key.to_owned(),
        reason: reason.to_owned(),
    }
}

/// The version token of a file: inode, modification time and size.
fn version_of(meta: &std::fs::Metadata) -> ObjectVersion {
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(meta);
    #[cfg(not(unix))]
    let inode = 0u64;
    ObjectVersion(format!("{inode:x}-{modified:x}-{:x}", meta.len()))
}

fn meta_of(meta: &std::fs::Metadata) -> ObjectMeta {
    ObjectMeta {
        size: meta.len(),
        version: Some(version_of(meta)),
        etag: None,
        content_type: None,
        last_modified: meta.modified().ok().map(DateTime::<Utc>::from),
    }
}

/// A temporary file that is removed when dropped, unless it was installed.
struct TempFile {
    path: PathBuf,
    installed: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.installed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl FsStore {
    /// Opens (creating if needed) a store rooted at `root`, removing temporary files that a
    /// process which died mid-write left behind.
    pub fn open(root: impl AsRef<Path>) -> std::io::Result<Self> {
        std::fs::create_dir_all(root.as_ref())?;
        let root = std::fs::canonicalize(root.as_ref())?;
        let tmp = root.join(TMP_DIR);
        std::fs::create_dir_all(&tmp)?;
        let store = Self { root };
        store.sweep_temp(STALE_TEMP_AGE)?;
        Ok(store)
    }

    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Removes temporary files older than `age`; returns how many.
    pub fn sweep_temp(&self, age: Duration) -> std::io::Result<usize> {
        let now = SystemTime::now();
        let mut removed = 0;
        for entry in std::fs::read_dir(self.root.join(TMP_DIR))? {
            let entry = entry?;
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|modified| now.duration_since(modified).unwrap_or_default() >= age);
            if stale && std::fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
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
                Err(e) => return Err(backend(key, e)),
            }
        }
    }

    fn checked_path(&self, key: &str) -> Result<PathBuf, StoreError> {
        let path = self.path_of(key)?;
        self.confine(key, &path)?;
        Ok(path)
    }

    fn temp_file(&self) -> TempFile {
        TempFile {
            path: self
                .root
                .join(TMP_DIR)
                .join(uuid::Uuid::new_v4().simple().to_string()),
            installed: false,
        }
    }

    async fn prepare_parent(&self, key: &str, path: &Path) -> Result<(), StoreError> {
        // Refuse before creating anything: a symlinked folder must not get us to create
        // folders outside the root.
        self.confine(key, path)?;
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| backend(key, e))?;
        }
        // Check again now the folders exist: one of them may be a symlink.
        self.confine(key, path)
    }

    /// Writes `file`'s pending bytes and syncs it: a write error (a full disk) surfaces
    /// here, before anything is put in place.
    async fn finish_temp(key: &str, mut file: tokio::fs::File) -> Result<ObjectMeta, StoreError> {
        file.flush().await.map_err(|e| backend(key, e))?;
        file.sync_all().await.map_err(|e| backend(key, e))?;
        let meta = file.metadata().await.map_err(|e| backend(key, e))?;
        Ok(meta_of(&meta))
    }

    /// Moves a finished temporary file to `key`: replacing what is there, or only if
    /// nothing is (a hard link fails atomically on an existing name).
    async fn install(
        &self,
        key: &str,
        mut temp: TempFile,
        mode: WriteMode,
    ) -> Result<(), StoreError> {
        let path = self.path_of(key)?;
        self.prepare_parent(key, &path).await?;
        match mode {
            WriteMode::Overwrite => {
                tokio::fs::rename(&temp.path, &path)
                    .await
                    .map_err(|e| backend(key, e))?;
                temp.installed = true;
            }
            WriteMode::CreateOnly => match tokio::fs::hard_link(&temp.path, &path).await {
                // The temporary name goes with `temp`; the object keeps the inode.
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    return Err(StoreError::AlreadyExists {
                        key: key.to_owned(),
                    });
                }
                Err(e) => return Err(backend(key, e)),
            },
        }
        // The new name is durable only once its folder is synced: callers delete the source
        // of a copy right after, so the copy must survive a crash.
        if let Some(parent) = path.parent() {
            let parent = parent.to_path_buf();
            tokio::task::spawn_blocking(move || std::fs::File::open(&parent)?.sync_all())
                .await
                .map_err(|e| backend(key, std::io::Error::other(e)))?
                .map_err(|e| backend(key, e))?;
        }
        Ok(())
    }

    /// Writes an object from a stream, however large, in memory bounded by a buffer: the
    /// bytes go to a temporary file that is flushed and synced, then put in place as
    /// [`ObjectWriter::put`] does (renamed, or hard-linked for [`WriteMode::CreateOnly`]).
    ///
    /// The object is put in place only once `reader` reached its end without error, so a
    /// reader that fails, at any point up to and including its end (a body cut short, a
    /// checksum found wrong after the last byte), leaves nothing behind and replaces
    /// nothing. Its error is the `source` of the [`StoreError::Backend`] returned.
    ///
    /// `content_type` is accepted for symmetry with `put`: this store keeps no content
    /// types.
    pub async fn put_stream<R>(
        &self,
        key: &str,
        reader: &mut R,
        _content_type: &str,
        mode: WriteMode,
    ) -> Result<ObjectMeta, StoreError>
    where
        R: AsyncRead + Unpin + ?Sized,
    {
        self.path_of(key)?;
        let temp = self.temp_file();
        let file = tokio::fs::File::create(&temp.path)
            .await
            .map_err(|e| backend(key, e))?;
        let mut out = tokio::io::BufWriter::with_capacity(STREAM_BUFFER, file);
        tokio::io::copy(reader, &mut out)
            .await
            .map_err(|e| backend(key, e))?;
        out.flush().await.map_err(|e| backend(key, e))?;
        let meta = Self::finish_temp(key, out.into_inner()).await?;
        self.install(key, temp, mode).await?;
        Ok(meta)
    }

    /// Opens the object at `key`, checking it is `version` when one is given. The check is
    /// made on the opened file, so what is read is that version whatever happens to the key.
    async fn open_file(
        &self,
        key: &str,
        version: Option<&ObjectVersion>,
    ) -> Result<(tokio::fs::File, std::fs::Metadata), StoreError> {
        let path = self.checked_path(key)?;
        let not_found = || match version {
            Some(expected) => StoreError::VersionMismatch {
                key: key.to_owned(),
                expected: expected.clone(),
                found: None,
            },
            None => StoreError::NotFound {
                key: key.to_owned(),
            },
        };
        let file = match tokio::fs::File::open(&path).await {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(not_found()),
            Err(e) => return Err(backend(key, e)),
        };
        let meta = file.metadata().await.map_err(|e| backend(key, e))?;
        if !meta.is_file() {
            return Err(not_found());
        }
        if let Some(expected) = version {
            let found = version_of(&meta);
            if &found != expected {
                return Err(StoreError::VersionMismatch {
                    key: key.to_owned(),
                    expected: expected.clone(),
                    found: Some(found),
                });
            }
        }
        Ok((file, meta))
    }
}

#[async_trait]
impl ObjectReader for FsStore {
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        let path = self.checked_path(key)?;
        match tokio::fs::metadata(&path).await {
            Ok(meta) if meta.is_file() => Ok(Some(meta_of(&meta))),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(backend(key, e)),
        }
    }

    async fn read_range(
        &self,
        key: &str,
        version: Option<&ObjectVersion>,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, StoreError> {
        let (mut file, meta) = self.open_file(key, version).await?;
        file.seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(|e| backend(key, e))?;
        // Never more than the object holds, whatever `len` says.
        let want = len.min(meta.len().saturating_sub(offset));
        let mut bytes = Vec::with_capacity(usize::try_from(want.min(1 << 20)).unwrap_or(0));
        file.take(want)
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| backend(key, e))?;
        Ok(bytes)
    }

    async fn open(
        &self,
        key: &str,
        version: Option<&ObjectVersion>,
    ) -> Result<ByteStream, StoreError> {
        let (file, _) = self.open_file(key, version).await?;
        Ok(Box::new(tokio::io::BufReader::with_capacity(
            STREAM_BUFFER,
            file,
        )))
    }
}

#[async_trait]
impl ObjectWriter for FsStore {
    async fn copy(
        &self,
        from: &str,
        version: Option<&ObjectVersion>,
        to: &str,
        mode: WriteMode,
    ) -> Result<ObjectMeta, StoreError> {
        self.path_of(to)?;
        // Copy from the opened (and checked) file, not from the path: the bytes copied are
        // the version asked for even if the key is replaced meanwhile.
        let (mut source, _) = self.open_file(from, version).await?;
        let temp = self.temp_file();
        let mut out = tokio::fs::File::create(&temp.path)
            .await
            .map_err(|e| backend(to, e))?;
        tokio::io::copy(&mut source, &mut out)
            .await
            .map_err(|e| backend(to, e))?;
        let meta = Self::finish_temp(to, out).await?;
        self.install(to, temp, mode).await?;
        Ok(meta)
    }

    async fn put(
        &self,
        key: &str,
        bytes: Vec<u8>,
        _content_type: &str,
        mode: WriteMode,
    ) -> Result<ObjectMeta, StoreError> {
        self.path_of(key)?;
        let temp = self.temp_file();
        let mut file = tokio::fs::File::create(&temp.path)
            .await
            .map_err(|e| backend(key, e))?;
        file.write_all(&bytes).await.map_err(|e| backend(key, e))?;
        let meta = Self::finish_temp(key, file).await?;
        self.install(key, temp, mode).await?;
        Ok(meta)
    }

    async fn delete(&self, key: &str, version: Option<&ObjectVersion>) -> Result<(), StoreError> {
        let path = self.checked_path(key)?;
        if let Some(expected) = version {
            // Only that version: a newer object at the key is not ours to delete.
            match tokio::fs::metadata(&path).await {
                Ok(meta) if meta.is_file() && &version_of(&meta) == expected => {}
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(backend(key, e)),
            }
        }
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(backend(key, e)),
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
            .put(
                "incoming/a/b/c",
                b"hello world".to_vec(),
                "text/plain",
                WriteMode::Overwrite,
            )
            .await
            .unwrap();
        let meta = store.head("incoming/a/b/c").await.unwrap().unwrap();
        assert_eq!(meta.size, 11);
        assert_eq!(
            store
                .read_range("incoming/a/b/c", None, 6, 100)
                .await
                .unwrap(),
            b"world"
        );
        assert_eq!(
            store
                .read_range("incoming/a/b/c", None, 0, 5)
                .await
                .unwrap(),
            b"hello"
        );
        store
            .copy(
                "incoming/a/b/c",
                None,
                "trusted/a/b/c",
                WriteMode::Overwrite,
            )
            .await
            .unwrap();
        let mut text = String::new();
        store
            .open("trusted/a/b/c", None)
            .await
            .unwrap()
            .read_to_string(&mut text)
            .await
            .unwrap();
        assert_eq!(text, "hello world");
        store.delete("incoming/a/b/c", None).await.unwrap();
        store.delete("incoming/a/b/c", None).await.unwrap();
        assert!(store.head("incoming/a/b/c").await.unwrap().is_none());
        assert!(matches!(
            store.open("incoming/a/b/c", None).await,
            Err(StoreError::NotFound { .. })
        ));
        assert!(matches!(
            store
                .copy("incoming/a/b/c", None, "x", WriteMode::Overwrite)
                .await,
            Err(StoreError::NotFound { .. })
        ));
        // A folder is not an object.
        assert!(store.head("trusted/a").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn versions_name_exactly_one_object() {
        let (_dir, store) = store();
        let key = "incoming/a/b/c";
        let first = store
            .put(key, b"first".to_vec(), "text/plain", WriteMode::Overwrite)
            .await
            .unwrap();
        let v1 = first.version.clone().unwrap();
        assert_eq!(
            store.head(key).await.unwrap().unwrap().version,
            Some(v1.clone())
        );
        // A stream opened on v1 reads v1 even after the key is replaced.
        let mut pinned = store.open(key, Some(&v1)).await.unwrap();
        let second = store
            .put(key, b"other".to_vec(), "text/plain", WriteMode::Overwrite)
            .await
            .unwrap();
        let v2 = second.version.unwrap();
        assert_ne!(v1, v2);
        let mut text = String::new();
        pinned.read_to_string(&mut text).await.unwrap();
        assert_eq!(text, "first");
        // New reads, copies and deletes of v1 find it gone.
        for result in [
            store.read_range(key, Some(&v1), 0, 5).await.map(drop),
            store.open(key, Some(&v1)).await.map(drop),
            store
                .copy(key, Some(&v1), "trusted/x", WriteMode::Overwrite)
                .await
                .map(drop),
        ] {
            match result {
                Err(StoreError::VersionMismatch {
                    expected, found, ..
                }) => {
                    assert_eq!(expected, v1);
                    assert_eq!(found, Some(v2.clone()));
                }
                other => panic!("expected a version mismatch, got {other:?}"),
            }
        }
        assert!(store.head("trusted/x").await.unwrap().is_none());
        store.delete(key, Some(&v1)).await.unwrap();
        assert_eq!(
            store.head(key).await.unwrap().unwrap().version,
            Some(v2.clone())
        );
        // A copy keeps the version's bytes, and reports its own version.
        let copy = store
            .copy(key, Some(&v2), "trusted/x", WriteMode::Overwrite)
            .await
            .unwrap();
        assert_eq!(
            store.head("trusted/x").await.unwrap().unwrap().version,
            copy.version
        );
        store.delete(key, Some(&v2)).await.unwrap();
        assert!(store.head(key).await.unwrap().is_none());
        assert!(matches!(
            store.open(key, Some(&v2)).await,
            Err(StoreError::VersionMismatch { found: None, .. })
        ));
    }

    #[tokio::test]
    async fn create_only_never_replaces_and_leaves_no_temporary_file() {
        let (_dir, store) = store();
        store
            .put(
                "q/x",
                b"evidence".to_vec(),
                "text/plain",
                WriteMode::CreateOnly,
            )
            .await
            .unwrap();
        let err = store
            .put(
                "q/x",
                b"other".to_vec(),
                "text/plain",
                WriteMode::CreateOnly,
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::AlreadyExists { .. }), "{err}");
        store
            .put("src", b"bytes".to_vec(), "text/plain", WriteMode::Overwrite)
            .await
            .unwrap();
        let err = store
            .copy("src", None, "q/x", WriteMode::CreateOnly)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::AlreadyExists { .. }), "{err}");
        assert_eq!(
            store.read_range("q/x", None, 0, 100).await.unwrap(),
            b"evidence"
        );
        let temps = std::fs::read_dir(store.root().join(TMP_DIR))
            .unwrap()
            .count();
        assert_eq!(temps, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_create_only_writes_have_exactly_one_winner() {
        let (_dir, store) = store();
        let store = std::sync::Arc::new(store);
        let mut tasks = Vec::new();
        for i in 0..32u8 {
            let store = std::sync::Arc::clone(&store);
            tasks.push(tokio::spawn(async move {
                store
                    .put(
                        "q/contended",
                        vec![i; 64],
                        "text/plain",
                        WriteMode::CreateOnly,
                    )
                    .await
                    .map(|_| i)
            }));
        }
        let mut winners = Vec::new();
        for task in tasks {
            match task.await.unwrap() {
                Ok(i) => winners.push(i),
                Err(StoreError::AlreadyExists { .. }) => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(winners.len(), 1);
        let bytes = store.read_range("q/contended", None, 0, 100).await.unwrap();
        assert_eq!(bytes, vec![winners[0]; 64]);
    }

    /// A reader that yields `data`, then fails instead of ending (as a body whose checksum
    /// turns out wrong after its last byte does).
    struct FailsAtEnd {
        data: std::io::Cursor<Vec<u8>>,
    }

    impl AsyncRead for FailsAtEnd {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            let before = buf.filled().len();
            match std::pin::Pin::new(&mut self.data).poll_read(cx, buf) {
                std::task::Poll::Ready(Ok(())) if buf.filled().len() == before => {
                    std::task::Poll::Ready(Err(std::io::Error::other("bad digest")))
                }
                other => other,
            }
        }
    }

    fn temp_count(store: &FsStore) -> usize {
        std::fs::read_dir(store.root().join(TMP_DIR))
            .unwrap()
            .count()
    }

    #[tokio::test]
    async fn put_stream_installs_only_a_stream_that_ends_cleanly() {
        let (_dir, store) = store();
        let big: Vec<u8> = (0..3 * STREAM_BUFFER + 17)
            .map(|i| u8::try_from(i % 251).unwrap())
            .collect();
        let meta = store
            .put_stream(
                "incoming/big",
                &mut big.as_slice(),
                "application/octet-stream",
                WriteMode::CreateOnly,
            )
            .await
            .unwrap();
        assert_eq!(meta.size, big.len() as u64);
        assert_eq!(
            store.head("incoming/big").await.unwrap().unwrap().version,
            meta.version
        );
        assert_eq!(
            store
                .read_range("incoming/big", None, 0, u64::MAX)
                .await
                .unwrap(),
            big
        );

        // A failing reader leaves no object and no temporary file.
        let mut failing = FailsAtEnd {
            data: std::io::Cursor::new(b"almost".to_vec()),
        };
        let err = store
            .put_stream(
                "incoming/new",
                &mut failing,
                "text/plain",
                WriteMode::Overwrite,
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Backend { .. }), "{err}");
        assert!(store.head("incoming/new").await.unwrap().is_none());
        // ... nor replaces an existing one.
        let mut failing = FailsAtEnd {
            data: std::io::Cursor::new(b"other".to_vec()),
        };
        store
            .put_stream(
                "incoming/big",
                &mut failing,
                "text/plain",
                WriteMode::Overwrite,
            )
            .await
            .unwrap_err();
        assert_eq!(
            store.head("incoming/big").await.unwrap().unwrap().version,
            meta.version
        );
        assert_eq!(temp_count(&store), 0);

        // Create-only refuses a taken key, keeping the object.
        let err = store
            .put_stream(
                "incoming/big",
                &mut b"x".as_slice(),
                "text/plain",
                WriteMode::CreateOnly,
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::AlreadyExists { .. }), "{err}");
        assert_eq!(
            store.head("incoming/big").await.unwrap().unwrap().version,
            meta.version
        );
        assert_eq!(temp_count(&store), 0);
        assert!(matches!(
            store
                .put_stream(
                    "../x",
                    &mut b"x".as_slice(),
                    "text/plain",
                    WriteMode::Overwrite
                )
                .await,
            Err(StoreError::InvalidKey { .. })
        ));
    }

    #[test]
    fn stale_temporary_files_are_swept_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("bucket");
        FsStore::open(&root).unwrap();
        let stale = root.join(TMP_DIR).join("left-by-a-crash");
        std::fs::write(&stale, b"half").unwrap();
        let store = FsStore::open(&root).unwrap();
        // Young: it may belong to a live writer.
        assert!(stale.exists());
        assert_eq!(store.sweep_temp(Duration::ZERO).unwrap(), 1);
        assert!(!stale.exists());
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
                store
                    .put(key, b"x".to_vec(), "text/plain", WriteMode::Overwrite)
                    .await
                    .is_err(),
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
                store
                    .put(&key, vec![1; 10], "text/plain", WriteMode::Overwrite)
                    .await?;
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
            assert!(store.open(key, None).await.is_err(), "{key}");
            assert!(store.read_range(key, None, 0, 10).await.is_err(), "{key}");
            assert!(store.delete(key, None).await.is_err(), "{key}");
        }
        assert!(
            store
                .put(
                    "link/new",
                    b"x".to_vec(),
                    "text/plain",
                    WriteMode::Overwrite
                )
                .await
                .is_err()
        );
        assert!(!outside.join("new").exists());
        // Not even a folder is created through the link.
        assert!(
            store
                .put(
                    "link/deeper/new",
                    b"x".to_vec(),
                    "text/plain",
                    WriteMode::Overwrite
                )
                .await
                .is_err()
        );
        assert!(!outside.join("deeper").exists());
        assert!(
            store
                .put(
                    "dangling/new",
                    b"x".to_vec(),
                    "text/plain",
                    WriteMode::Overwrite
                )
                .await
                .is_err()
        );
        assert!(
            store
                .copy("file-link", None, "stolen", WriteMode::Overwrite)
                .await
                .is_err()
        );
        assert!(store.head("stolen").await.unwrap().is_none());
        // A symlink that stays inside the root is fine.
        store
            .put(
                "real/obj",
                b"ok".to_vec(),
                "text/plain",
                WriteMode::Overwrite,
            )
            .await
            .unwrap();
        std::os::unix::fs::symlink(store.root().join("real"), store.root().join("alias")).unwrap();
        assert_eq!(store.head("alias/obj").await.unwrap().unwrap().size, 2);
    }
}
