//! Pipeline events appended to a JSON-lines file: what EventBridge is on AWS.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use airlock_core::ports::{EventSink, EventSinkError, PipelineEvent, Retry};
use async_trait::async_trait;

/// Appends each event as one JSON line.
#[derive(Debug)]
pub struct JsonlEventSink {
    path: PathBuf,
    file: Mutex<std::fs::File>,
}

impl JsonlEventSink {
    /// Opens (creating if needed) the log at `path`. A torn last line (a write cut short by a
    /// crash or a full disk: an event that was never acknowledged) is cut off, so the next
    /// event starts on a line of its own.
    pub fn open(path: impl AsRef<Path>) -> std::io::Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)?;
        cut_torn_tail(&file)?;
        Ok(Self {
            path,
            file: Mutex::new(file),
        })
    }

    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads every event written so far.
    pub fn read_all(path: impl AsRef<Path>) -> std::io::Result<Vec<PipelineEvent>> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).map_err(std::io::Error::other))
            .collect()
    }
}

/// Truncates `file` after its last newline.
fn cut_torn_tail(mut file: &std::fs::File) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let len = file.metadata()?.len();
    let mut end = len;
    let mut buf = [0u8; 4096];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..usize::try_from(end - start).unwrap_or(0)];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            end = start + i as u64 + 1;
            break;
        }
        end = start;
    }
    if end < len {
        file.set_len(end)?;
        file.sync_all()?;
    }
    Ok(())
}

#[async_trait]
impl EventSink for JsonlEventSink {
    async fn publish(&self, event: &PipelineEvent) -> Result<(), EventSinkError> {
        let mut line = serde_json::to_vec(event).map_err(|e| EventSinkError {
            message: e.to_string(),
            retry: Retry::Permanent,
        })?;
        line.push(b'\n');
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let failed = |e: std::io::Error| EventSinkError {
            message: format!("{}: {e}", self.path.display()),
            retry: Retry::Transient,
        };
        let before = file.metadata().map_err(failed)?.len();
        // One write per line, so concurrent writers never interleave within a line; synced,
        // so an acknowledged event survives a crash.
        let written = file.write_all(&line).and_then(|()| file.sync_data());
        if let Err(e) = written {
            // A short write (a full disk) must not leave a torn line for the next event
            // to be glued to.
            let _ = file.set_len(before);
            return Err(failed(e));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_core::keys::{Purpose, TenantId, UploadId};
    use airlock_core::ports::PipelineEventKind;

    fn event() -> PipelineEvent {
        PipelineEvent {
            kind: PipelineEventKind::Ready,
            upload_id: UploadId::generate(),
            tenant: TenantId::new("acme").unwrap(),
            purpose: Purpose::new("avatar").unwrap(),
            key: "trusted/acme/avatar/x".into(),
            reason: None,
            at: chrono::Utc::now(),
        }
    }

    #[tokio::test]
    async fn a_torn_last_line_is_cut_and_later_events_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let first = event();
        JsonlEventSink::open(&path)
            .unwrap()
            .publish(&first)
            .await
            .unwrap();
        // A crash mid-write left half a line.
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(br#"{"type":"upload.ready","uploadId":"01"#)
            .unwrap();
        drop(file);
        let second = event();
        JsonlEventSink::open(&path)
            .unwrap()
            .publish(&second)
            .await
            .unwrap();
        assert_eq!(JsonlEventSink::read_all(&path).unwrap(), [first, second]);
    }
}
