//! Scan: stream the whole object through the virus scanner, hashing it on the way, so memory
//! stays flat whatever the object's size.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use airlock_archive::{ArchivePolicy, Judgement, ScannerLimits};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, ReadBuf};

use super::inspect::{check_type, sniff_type};
use super::{InspectReport, SNIFF_LEN, Stage, StageError};
use crate::definitions::{DefinitionsRecord, FreshnessRule};
use crate::ports::{
    ByteStream, Clock, ObjectReader, ObjectVersion, Retry, ScanVerdict, Scanner, StoreError,
};
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
    /// The version scanned (the one inspect judged): promotion copies exactly it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<ObjectVersion>,
    /// The definitions that passed it: version, build time and age at the scan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub definitions: Option<DefinitionsRecord>,
}

/// The result of scanning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum ScanOutcome {
    Pass(ScanPass),
    Reject(Rejection),
}

/// What passed through the scanner: hash, count, and the first bytes (to sniff the type
/// of the very bytes scanned).
struct Streamed {
    hasher: Sha256,
    size: u64,
    head: Vec<u8>,
}

/// Hashes, counts and keeps the head of what passes through it.
struct HashingReader {
    inner: ByteStream,
    state: Arc<Mutex<Streamed>>,
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
                state.hasher.update(new);
                state.size += new.len() as u64;
                let room = usize::try_from(SNIFF_LEN)
                    .unwrap_or(usize::MAX)
                    .saturating_sub(state.head.len());
                state.head.extend_from_slice(&new[..room.min(new.len())]);
            }
        }
        poll
    }
}

/// Scans exactly the object `inspected` judged at `key`, and checks that the bytes scanned
/// are those bytes: the same size and the same detected type. A clean object whose hash
/// differs from the SHA-256 the client declared is rejected as `checksum-mismatch`.
///
/// An archive or container that the scanner passed is then judged by airlock itself
/// against `archives` and the scanner's limits: a clean answer only covers what the scanner
/// could read, and clamd reads neither ZIP64 nor encrypted members, and trims members past
/// its limits without saying so.
///
/// A verdict counts only if the definitions behind it pass `freshness` at `clock`'s now;
/// otherwise the stage fails as a transient error (retried, then `scan-unavailable`). The
/// definitions' version and age are recorded in the outcome.
pub async fn scan(
    store: &dyn ObjectReader,
    scanner: &dyn Scanner,
    key: &str,
    inspected: &InspectReport,
    archives: &ArchivePolicy,
    freshness: &FreshnessRule,
    clock: &dyn Clock,
) -> Result<ScanOutcome, StageError> {
    let version = inspected.version.as_ref();
    let stream = match store.open(key, version).await {
        Ok(stream) => stream,
        Err(StoreError::VersionMismatch {
            expected, found, ..
        }) => {
            return Ok(ScanOutcome::Reject(Rejection::new(
                ReasonCode::ObjectReplaced,
                format!(
                    "{key} was replaced after inspection (inspected version {expected}, now {})",
                    found.map_or("none".to_owned(), |v| v.to_string())
                ),
            )));
        }
        Err(e) => return Err(StageError::store(Stage::Scan, &e)),
    };
    let state = Arc::new(Mutex::new(Streamed {
        hasher: Sha256::new(),
        size: 0,
        head: Vec::new(),
    }));
    let reader = HashingReader {
        inner: stream,
        state: Arc::clone(&state),
    };
    let report = scanner
        .scan(Box::new(reader))
        .await
        .map_err(|e| StageError::scan(Stage::Scan, &e))?;
    // Stale definitions make any verdict worthless as a judgement of today's threats.
    let definitions = freshness
        .check(report.definitions.as_ref(), clock)
        .map_err(|e| {
            StageError::new(
                Stage::Scan,
                Retry::Transient,
                format!("refusing the verdict of {}: {e}", report.engine),
            )
        })?;
    let Streamed { hasher, size, head } = {
        let mut state = state.lock().expect("hash state lock");
        std::mem::replace(
            &mut *state,
            Streamed {
                hasher: Sha256::new(),
                size: 0,
                head: Vec::new(),
            },
        )
    };
    let sha256 = hex::encode(hasher.finalize());
    let outcome = match report.verdict {
        ScanVerdict::Clean => {
            match judge_clean(key, inspected, report.engine, sha256, size, &head)? {
                ScanOutcome::Pass(pass) if inspected.archive.is_some() => {
                    judge_archive(store, key, pass, archives, &scanner.limits()).await?
                }
                ScanOutcome::Pass(pass) => hidden_archive(store, key, pass).await?,
                rejected @ ScanOutcome::Reject(_) => rejected,
            }
        }
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
    Ok(match outcome {
        ScanOutcome::Pass(pass) => ScanOutcome::Pass(ScanPass {
            definitions,
            ..pass
        }),
        ScanOutcome::Reject(rejection) => ScanOutcome::Reject(Rejection {
            definitions,
            ..rejection
        }),
    })
}

/// A clean verdict counts only for the whole object, as inspected: every byte was sent to
/// the scanner, and the bytes sent are of the type inspect saw.
fn judge_clean(
    key: &str,
    inspected: &InspectReport,
    engine: String,
    sha256: String,
    size: u64,
    head: &[u8],
) -> Result<ScanOutcome, StageError> {
    if size < inspected.size {
        // The scanner answered before it had the whole object: no verdict at all.
        return Err(StageError::new(
            Stage::Scan,
            Retry::Transient,
            format!(
                "the scanner answered clean after {size} of {} bytes of {key}: a verdict must cover the whole object",
                inspected.size
            ),
        ));
    }
    let reject = |reason: ReasonCode, detail: String| {
        let mut rejection = Rejection::new(reason, detail);
        rejection.engine = Some(engine.clone());
        Ok(ScanOutcome::Reject(rejection))
    };
    if size > inspected.size {
        return reject(
            ReasonCode::ObjectReplaced,
            format!(
                "{key} had {} bytes when inspected, {size} when scanned",
                inspected.size
            ),
        );
    }
    let archive = airlock_archive::detect(head);
    if archive != inspected.archive {
        return reject(
            ReasonCode::ObjectReplaced,
            format!(
                "the bytes scanned are {}, the bytes inspected were {}",
                archive.map_or("no archive", |f| f.name()),
                inspected.archive.map_or("no archive", |f| f.name()),
            ),
        );
    }
    let sniffed = sniff_type(head, size <= SNIFF_LEN);
    match check_type(&inspected.declared_type, sniffed) {
        Ok(detected) if detected == inspected.detected_type => {}
        Ok(detected) => {
            return reject(
                ReasonCode::ObjectReplaced,
                format!(
                    "the bytes scanned are {detected}, the bytes inspected were {}",
                    inspected.detected_type
                ),
            );
        }
        Err(detail) => {
            return reject(
                ReasonCode::TypeMismatch,
                format!("the bytes scanned do not match the declared type: {detail}"),
            );
        }
    }
    if let Some(expected) = inspected
        .expected_sha256
        .as_ref()
        .filter(|expected| !expected.eq_ignore_ascii_case(&sha256))
    {
        return reject(
            ReasonCode::ChecksumMismatch,
            format!("declared sha256 {expected}, object has {sha256}"),
        );
    }
    Ok(ScanOutcome::Pass(ScanPass {
        sha256,
        size,
        engine,
        version: inspected.version.clone(),
        definitions: None,
    }))
}

/// Judges the archive that passed the scan: its members, sizes, ratio, depth, encryption
/// and the features the scanner cannot read, from a spooled copy of the scanned bytes.
async fn judge_archive(
    store: &dyn ObjectReader,
    key: &str,
    pass: ScanPass,
    policy: &ArchivePolicy,
    limits: &ScannerLimits,
) -> Result<ScanOutcome, StageError> {
    let spooled = match super::spool_scanned(
        Stage::Scan,
        store,
        (key, pass.version.as_ref()),
        pass.size,
        &pass.sha256,
    )
    .await
    {
        Ok(spooled) => spooled,
        Err(err) => return err.replaced_to_rejection().map(ScanOutcome::Reject),
    };
    let (policy, limits) = (policy.clone(), *limits);
    let span = tracing::Span::current();
    let judged = tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        let judged = airlock_archive::judge_file(&spooled, &policy, &limits);
        drop(spooled);
        judged
    })
    .await
    .map_err(|e| {
        StageError::new(
            Stage::Scan,
            Retry::Permanent,
            format!("judging the archive crashed: {e}"),
        )
    })?
    .map_err(|e| StageError::new(Stage::Scan, Retry::Transient, e.to_string()))?;
    Ok(match judged {
        Judgement::NotArchive | Judgement::Accepted(_) => ScanOutcome::Pass(pass),
        Judgement::Rejected(finding) => {
            let mut rejection = Rejection::new(finding.finding.into(), finding.detail);
            rejection.engine = Some(pass.engine);
            ScanOutcome::Reject(rejection)
        }
    })
}

/// How far from the end a zip's end-of-central-directory record can be: its 22 bytes plus a
/// comment of at most 65,535.
const EOCD_SEARCH: u64 = 22 + 0xFFFF;

/// Where a zip archive's end record sits at the very end of `tail` (the last bytes of an
/// object): a `PK\x05\x06` whose comment length reaches exactly the end, as zip readers
/// (and clamd) find it.
#[must_use]
pub fn zip_end_record(tail: &[u8]) -> Option<usize> {
    let mut end = tail.len();
    while let Some(at) = memchr_last(&tail[..end]) {
        if let Some(len) = tail.get(at + 20..at + 22) {
            let comment = usize::from(u16::from_le_bytes([len[0], len[1]]));
            if at + 22 + comment == tail.len() {
                return Some(at);
            }
        }
        end = at;
    }
    None
}

/// The last `PK\x05\x06` in `bytes`.
fn memchr_last(bytes: &[u8]) -> Option<usize> {
    bytes.windows(4).rposition(|w| w == b"PK\x05\x06")
}

/// A clean object that is not an archive by its first bytes may still end with one: a zip
/// appended to a PDF, an image or text (a polyglot, or a self-extractor). Zip readers, and
/// clamd, find a zip by its end record, so such a file is an archive airlock has not
/// judged, and not what was declared: rejected as `archive-hidden`.
async fn hidden_archive(
    store: &dyn ObjectReader,
    key: &str,
    pass: ScanPass,
) -> Result<ScanOutcome, StageError> {
    let from = pass.size.saturating_sub(EOCD_SEARCH);
    let tail = match store
        .read_range(key, pass.version.as_ref(), from, pass.size - from)
        .await
    {
        Ok(tail) => tail,
        Err(e) => {
            return StageError::store(Stage::Scan, &e)
                .replaced_to_rejection()
                .map(ScanOutcome::Reject);
        }
    };
    let Some(at) = zip_end_record(&tail) else {
        return Ok(ScanOutcome::Pass(pass));
    };
    let mut rejection = Rejection::new(
        ReasonCode::ArchiveHidden,
        format!(
            "a zip archive's end record is at byte {} of this {}-byte object: an archive appended to it (a polyglot or self-extractor), not judged as one",
            from + at as u64,
            pass.size
        ),
    );
    rejection.engine = Some(pass.engine);
    Ok(ScanOutcome::Reject(rejection))
}

#[cfg(test)]
mod tests {
    use super::zip_end_record;

    /// An empty zip's end record, with `comment` after it.
    fn end_record(comment: &[u8]) -> Vec<u8> {
        let mut record = b"PK\x05\x06".to_vec();
        record.extend_from_slice(&[0; 16]);
        record.extend_from_slice(&u16::try_from(comment.len()).unwrap().to_le_bytes());
        record.extend_from_slice(comment);
        record
    }

    #[test]
    fn a_zip_end_record_is_found_only_where_it_reaches_the_end() {
        let mut file = b"%PDF-1.7 ... %%EOF\n".to_vec();
        assert_eq!(zip_end_record(&file), None);
        let at = file.len();
        file.extend_from_slice(&end_record(b"a comment"));
        assert_eq!(zip_end_record(&file), Some(at));
        // The signature alone, or with a comment length that does not reach the end, is
        // just bytes.
        let mut text = b"the bytes PK\x05\x06 in a sentence, and more text after them".to_vec();
        assert_eq!(zip_end_record(&text), None);
        text.extend_from_slice(b"PK\x05\x06");
        assert_eq!(zip_end_record(&text), None);
        // The last valid record wins over an earlier signature in the comment's way.
        let mut tricky = end_record(b"");
        tricky.extend_from_slice(&end_record(b"PK\x05\x06"));
        assert_eq!(zip_end_record(&tricky), Some(22));
    }
}
