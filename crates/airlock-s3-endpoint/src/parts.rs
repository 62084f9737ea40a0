//! Multipart uploads in progress, kept in their own folder outside the store's root so a
//! part is never an object.
//!
//! Layout: `{parts_dir}/{upload_id}/upload.json` (key, content type, start) and one file per
//! part, `part-{number:05}-{md5 hex}`: the name carries the part's ETag, so completing checks
//! an ETag by looking a name up, and a part sent again replaces the earlier one by rename.
//! Part bodies are written under `{parts_dir}/.tmp/` first and renamed in once verified.

use std::collections::HashSet;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::SystemTime;

use s3s::{S3Error, S3ErrorCode};
use serde_json::json;
use tokio::io::{AsyncRead, ReadBuf};

const META: &str = "upload.json";
const TMP: &str = ".tmp";

/// An upload's record.
#[derive(Debug, Clone)]
pub(crate) struct Upload {
    pub content_type: String,
}

/// One stored part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredPart {
    pub number: u32,
    /// Lowercase hex MD5 of the part: its ETag without quotes.
    pub md5: String,
    pub size: u64,
    pub modified: SystemTime,
    pub path: PathBuf,
}

pub(crate) fn no_such_upload(upload_id: &str) -> S3Error {
    S3Error::with_message(
        S3ErrorCode::NoSuchUpload,
        format!(
            "multipart upload {upload_id:?} does not exist for this key: it was never started, or was completed or aborted"
        ),
    )
}

pub(crate) fn internal(what: &str, err: &std::io::Error) -> S3Error {
    tracing::error!(%err, "{what}");
    S3Error::with_message(S3ErrorCode::InternalError, format!("{what}: {err}"))
}

/// The multipart folder, and which uploads are being completed or aborted right now.
#[derive(Debug)]
pub(crate) struct Parts {
    dir: PathBuf,
    busy: Arc<Mutex<HashSet<String>>>,
}

/// Held while an upload is completed or aborted: a second such request waits its turn by
/// being refused.
#[derive(Debug)]
pub(crate) struct Claim {
    id: String,
    busy: Arc<Mutex<HashSet<String>>>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.busy
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

fn valid_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn parse_part_name(name: &str) -> Option<(u32, &str)> {
    let rest = name.strip_prefix("part-")?;
    let (number, md5) = rest.split_once('-')?;
    let number: u32 = number.parse().ok()?;
    (md5.len() == 32 && md5.bytes().all(|b| b.is_ascii_hexdigit())).then_some((number, md5))
}

impl Parts {
    /// Opens (creating) the folder and removes part bodies a stopped process left half
    /// written.
    pub(crate) fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir.join(TMP))?;
        let dir = std::fs::canonicalize(dir)?;
        for entry in std::fs::read_dir(dir.join(TMP))? {
            let _ = std::fs::remove_file(entry?.path());
        }
        Ok(Self {
            dir,
            busy: Arc::default(),
        })
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    fn upload_dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// A fresh path for a part body being received.
    pub(crate) fn temp_path(&self) -> PathBuf {
        self.dir
            .join(TMP)
            .join(uuid::Uuid::new_v4().simple().to_string())
    }

    pub(crate) async fn create(&self, key: &str, content_type: &str) -> Result<String, S3Error> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let dir = self.upload_dir(&id);
        tokio::fs::create_dir(&dir)
            .await
            .map_err(|e| internal("cannot create the multipart upload's folder", &e))?;
        let initiated = chrono::Utc::now();
        let meta =
            json!({"key": key, "contentType": content_type, "initiated": initiated.to_rfc3339()});
        // Written aside and renamed, so a reader never sees half a record.
        let temp = self.temp_path();
        tokio::fs::write(&temp, meta.to_string())
            .await
            .map_err(|e| internal("cannot record the multipart upload", &e))?;
        tokio::fs::rename(&temp, dir.join(META))
            .await
            .map_err(|e| internal("cannot record the multipart upload", &e))?;
        Ok(id)
    }

    /// The upload `id` of `key`, or `NoSuchUpload`.
    pub(crate) async fn get(&self, id: &str, key: &str) -> Result<Upload, S3Error> {
        if !valid_id(id) {
            return Err(no_such_upload(id));
        }
        let text = match tokio::fs::read_to_string(self.upload_dir(id).join(META)).await {
            Ok(text) => text,
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(no_such_upload(id)),
            Err(e) => return Err(internal("cannot read the multipart upload's record", &e)),
        };
        let meta: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            internal(
                "the multipart upload's record is not JSON",
                &std::io::Error::other(e),
            )
        })?;
        let field = |name: &str| meta.get(name).and_then(serde_json::Value::as_str);
        if field("key") != Some(key) {
            return Err(no_such_upload(id));
        }
        Ok(Upload {
            content_type: field("contentType").unwrap_or_default().to_owned(),
        })
    }

    /// Puts a verified part body in place as part `number`, replacing an earlier one.
    pub(crate) async fn install(
        &self,
        id: &str,
        number: u32,
        temp: &Path,
        md5: &str,
    ) -> Result<(), S3Error> {
        let dir = self.upload_dir(id);
        let name = format!("part-{number:05}-{md5}");
        match tokio::fs::rename(temp, dir.join(&name)).await {
            Ok(()) => {}
            // Aborted or completed meanwhile.
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(no_such_upload(id)),
            Err(e) => return Err(internal("cannot keep the part", &e)),
        }
        for part in self.list(id).await? {
            if part.number == number && part.md5 != md5 {
                let _ = tokio::fs::remove_file(&part.path).await;
            }
        }
        Ok(())
    }

    /// The parts received, by part number (the newest when a number was sent twice at once).
    pub(crate) async fn list(&self, id: &str) -> Result<Vec<StoredPart>, S3Error> {
        let mut entries = match tokio::fs::read_dir(self.upload_dir(id)).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(no_such_upload(id)),
            Err(e) => return Err(internal("cannot list the parts", &e)),
        };
        let mut parts: Vec<StoredPart> = Vec::new();
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(|e| internal("cannot list the parts", &e))?
        {
            let name = entry.file_name();
            let Some((number, md5)) = name.to_str().and_then(parse_part_name) else {
                continue;
            };
            let Ok(meta) = entry.metadata().await else {
                continue;
            };
            parts.push(StoredPart {
                number,
                md5: md5.to_ascii_lowercase(),
                size: meta.len(),
                modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                path: entry.path(),
            });
        }
        parts.sort_by(|a, b| a.number.cmp(&b.number).then(b.modified.cmp(&a.modified)));
        parts.dedup_by_key(|p| p.number);
        Ok(parts)
    }

    /// Claims `id` for a completion or an abort.
    pub(crate) fn claim(&self, id: &str) -> Result<Claim, S3Error> {
        let mut busy = self.busy.lock().unwrap_or_else(PoisonError::into_inner);
        if !busy.insert(id.to_owned()) {
            return Err(S3Error::with_message(
                S3ErrorCode::OperationAborted,
                format!("multipart upload {id:?} is being completed or aborted by another request"),
            ));
        }
        Ok(Claim {
            id: id.to_owned(),
            busy: Arc::clone(&self.busy),
        })
    }

    /// Removes the upload and its parts.
    pub(crate) async fn remove(&self, id: &str, _claim: &Claim) -> Result<(), S3Error> {
        let dir = self.upload_dir(id);
        // A part renamed in while the folder is emptied makes removal fail once: try again.
        for attempt in 0..3 {
            match tokio::fs::remove_dir_all(&dir).await {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
                Err(e) if attempt == 2 => {
                    return Err(internal("cannot remove the multipart upload's parts", &e));
                }
                Err(_) => {}
            }
        }
        Ok(())
    }
}

type Opening = Pin<Box<dyn Future<Output = std::io::Result<tokio::fs::File>> + Send>>;

/// The parts' bytes in order, one file open at a time, failing unless they add up to
/// exactly the size the parts had when they were checked.
pub(crate) struct Concatenated {
    paths: std::collections::VecDeque<PathBuf>,
    opening: Option<Opening>,
    current: Option<tokio::fs::File>,
    expected: u64,
    count: u64,
}

impl Concatenated {
    pub(crate) fn new(paths: Vec<PathBuf>, expected: u64) -> Self {
        Self {
            paths: paths.into(),
            opening: None,
            current: None,
            expected,
            count: 0,
        }
    }
}

fn changed(count: u64, expected: u64) -> std::io::Error {
    std::io::Error::other(format!(
        "the parts changed while being joined: {count} bytes read, {expected} expected"
    ))
}

impl AsyncRead for Concatenated {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        loop {
            if let Some(file) = &mut this.current {
                let before = buf.filled().len();
                ready!(Pin::new(file).poll_read(cx, buf))?;
                let read = buf.filled().len() - before;
                if read > 0 || buf.remaining() == 0 {
                    this.count += read as u64;
                    if this.count > this.expected {
                        return Poll::Ready(Err(changed(this.count, this.expected)));
                    }
                    return Poll::Ready(Ok(()));
                }
                this.current = None;
            }
            if let Some(opening) = &mut this.opening {
                let file = ready!(opening.as_mut().poll(cx))?;
                this.opening = None;
                this.current = Some(file);
                continue;
            }
            match this.paths.pop_front() {
                Some(path) => this.opening = Some(Box::pin(tokio::fs::File::open(path))),
                None if this.count == this.expected => return Poll::Ready(Ok(())),
                None => return Poll::Ready(Err(changed(this.count, this.expected))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_names_carry_number_and_etag() {
        assert_eq!(
            parse_part_name("part-00012-0123456789abcdef0123456789abcdef"),
            Some((12, "0123456789abcdef0123456789abcdef"))
        );
        assert_eq!(parse_part_name("part-1-short"), None);
        assert_eq!(parse_part_name("upload.json"), None);
        assert!(valid_id(&uuid::Uuid::new_v4().simple().to_string()));
        assert!(!valid_id("../../etc/passwd0000000000000000"));
    }

    #[tokio::test]
    async fn concatenation_reads_every_part_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut paths = Vec::new();
        for (i, content) in [b"abc".as_slice(), b"", b"defg"].iter().enumerate() {
            let path = dir.path().join(i.to_string());
            std::fs::write(&path, content).unwrap();
            paths.push(path);
        }
        let mut out = Vec::new();
        tokio::io::copy(&mut Concatenated::new(paths.clone(), 7), &mut out)
            .await
            .unwrap();
        assert_eq!(out, b"abcdefg");
        for wrong in [6, 8] {
            let mut out = Vec::new();
            let result =
                tokio::io::copy(&mut Concatenated::new(paths.clone(), wrong), &mut out).await;
            assert!(result.is_err(), "{wrong}");
        }
        let missing = Concatenated::new(vec![dir.path().join("nope")], 0);
        let mut out = Vec::new();
        assert!(tokio::io::copy(&mut { missing }, &mut out).await.is_err());
    }
}
