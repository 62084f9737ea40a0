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
    pub fn open(path: impl AsRef<Path>) -> std::io::Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
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
        // One write per line, so concurrent writers never interleave within a line.
        file.write_all(&line).map_err(|e| EventSinkError {
            message: format!("{}: {e}", self.path.display()),
            retry: Retry::Transient,
        })
    }
}
