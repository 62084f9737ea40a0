//! Scan: stream the whole object through the virus scanner, hashing it on the way, so memory
//! stays flat whatever the object's size.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, ReadBuf};

use super::{Stage, StageError};
use crate::ports::{ByteStream, ObjectReader, ScanVerdict, Scanner};
use crate::verdict::{ReasonCode, Rejection};

/// What scanning found in a clean object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScanPass {
    /// Hex SHA-256 of the bytes scanned.
    pub sha256: String,
    /// Bytes scanned.
    pub size: u64,
    /// Engine and definitions version.
    pub engine: String,
}

/// The result of scanning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum ScanOutcome {
    Pass(ScanPass),
    Reject(Rejection),
}

/// Hashes and counts what passes through it.
struct HashingReader {
    inner: ByteStream,
    state: Arc<Mutex<(Sha256, u64)>>,
}

impl AsyncRead for HashingReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &poll {
            let new = &buf.filled()[before..];
            if !new.is_empty() {
                let mut state = self.state.lock().expect("hash state lock");
                state.0.update(new);
                state.1 += new.len() as u64;
            }
        }
        poll
    }
}

/// Scans the object at `key`. A clean object whose hash differs from `expected_sha256` (when
/// the client declared one) is rejected as `checksum-mismatch`.
pub async fn scan(
    store: &dyn ObjectReader,
    scanner: &dyn Scanner,
    key: &str,
    expected_sha256: Option<&str>,
) -> Result<ScanOutcome, StageError> {
    let stream = store
        .open(key)
        .await
        .map_err(|e| StageError::store(Stage::Scan, &e))?;
    let state = Arc::new(Mutex::new((Sha256::new(), 0u64)));
    let reader = HashingReader {
        inner: stream,
        state: Arc::clone(&state),
    };
    let report = scanner
        .scan(Box::new(reader))
        .await
        .map_err(|e| StageError::scan(Stage::Scan, &e))?;
    let (hasher, size) = {
        let state = state.lock().expect("hash state lock");
        (state.0.clone(), state.1)
    };
    let sha256 = hex::encode(hasher.finalize());
    let outcome = match report.verdict {
        ScanVerdict::Clean => match expected_sha256 {
            Some(expected) if !expected.eq_ignore_ascii_case(&sha256) => {
                let mut rejection = Rejection::new(
                    ReasonCode::ChecksumMismatch,
                    format!("declared sha256 {expected}, object has {sha256}"),
                );
                rejection.engine = Some(report.engine);
                ScanOutcome::Reject(rejection)
            }
            _ => ScanOutcome::Pass(ScanPass {
                sha256,
                size,
                engine: report.engine,
            }),
        },
        ScanVerdict::Infected { signature } => {
            let mut rejection =
                Rejection::new(ReasonCode::Infected, format!("signature {signature} found"));
            rejection.signature = Some(signature);
            rejection.engine = Some(report.engine);
            ScanOutcome::Reject(rejection)
        }
        ScanVerdict::LimitExceeded { detail } => {
            let mut rejection = Rejection::new(
                ReasonCode::TooLargeToScan,
                format!("not fully scanned: {detail}"),
            );
            // A limit heuristic is reported like a signature; keep it for reviewers.
            if detail.starts_with("Heuristics.") {
                rejection.signature = Some(detail);
            }
            rejection.engine = Some(report.engine);
            ScanOutcome::Reject(rejection)
        }
    };
    Ok(outcome)
}
