//! airlock's archive judge: decides whether an archive or other container may be promoted
//! after the virus scanner found nothing in it, by listing and inflating it itself with caps.
//!
//! A virus scanner's "clean" only covers what it could read. clamd 1.4 answers `OK` for a
//! known signature inside a ZIP64 zip (it cannot read ZIP64 central directories), inside an
//! encrypted zip member (reported only with `AlertEncrypted`), inside a zip member larger
//! than its `MaxFileSize` (the member is trimmed and scanned partly, with no alert), and in
//! members past its `MaxFiles`. So a file the scanner passed is judged here too, against the
//! purpose's [`ArchivePolicy`] and the scanner's [`ScannerLimits`], and anything the scanner
//! cannot have read completely is rejected as a [`Finding::Unscannable`].
//!
//! What is judged:
//! - the format, from the first bytes ([`detect`]), against the purpose's allowed formats;
//! - zip: the central directory, read here rather than through a zip library because the
//!   judgement needs the raw records (ZIP64 end records and extra fields, flag bits, the AES
//!   extra field 0x9901, disk numbers). Every local header is cross-checked (signature,
//!   method, name, encryption, ZIP64 extra) and members whose data overlap (the overlapping
//!   "zip bomb" layout) are rejected. Members are inflated (stored, deflate, bzip2) with the
//!   bytes counted and capped, since declared sizes can lie; other methods are unscannable;
//! - gzip (multi-member), bzip2, xz and zstd (one frame): decompressed as a stream with the
//!   bytes counted and capped, and the content judged (often a tar);
//! - tar: headers and member sizes (pax and GNU long names read), members read through;
//! - 7z: listed and decompressed, with encrypted headers or members rejected;
//! - rar: members cannot be listed here (no maintained reader without native code), so a
//!   rar is unscannable when its format is allowed at all;
//! - nesting: a member whose first bytes are an archive is judged the same way one level
//!   deeper, streaming where the format allows and spooling to a temporary file capped at
//!   the scanner's `max_file_size` where it needs seeking (zip and 7z);
//! - totals over every level: members, uncompressed bytes, compression ratio, depth.
//!
//! Memory and time are bounded by the policy and limits, never by the input: nothing is
//! inflated past the caps, and decompressor windows are capped ([`DECODER_MEMORY_LIMIT`]).
//! A bad archive is an `Ok(`[`Judgement::Rejected`]`)`; [`ArchiveError`] only means the
//! file could not be read (an infrastructure failure).

mod detect;
mod judge;
mod policy;
mod sevenz;
mod zip;

use std::fs::File;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use detect::{ArchiveFormat, DETECT_LEN, detect};
pub use policy::{ArchivePolicy, ScannerLimits, size};

/// Most memory a decompressor may claim for its window or dictionary (xz, zstd, 7z).
/// Larger windows are unscannable rather than allocated.
pub const DECODER_MEMORY_LIMIT: u64 = 64 << 20;

/// The outcome of judging a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judgement {
    /// The file is not an archive this crate recognises; nothing was judged.
    NotArchive,
    /// The archive is within the policy and the scanner could read all of it.
    Accepted(ArchiveReport),
    /// The archive must not be promoted.
    Rejected(ArchiveFinding),
}

/// What an accepted archive holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveReport {
    /// The outermost format.
    pub format: ArchiveFormat,
    /// Members over all nesting levels (files, directories, links; a compressed stream's
    /// content counts as one member).
    pub members: u64,
    /// Uncompressed bytes over all members at all levels, as actually inflated.
    pub total_uncompressed: u64,
    /// Archive layers: 1 for a plain zip, 2 for a `.tar.gz` or a zip in a zip.
    pub depth: u32,
    /// Highest compression ratio (rounded down) among members that reached the policy's
    /// `ratio_min_size`, and of the whole archive (total uncompressed / file size).
    pub max_ratio: u64,
}

/// Why an archive was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Finding {
    /// Archives, or this format, are not allowed for the purpose.
    NotAllowed,
    /// An encrypted member or encrypted headers: nobody can scan them.
    Encrypted,
    /// The scanner cannot have read all of it: ZIP64, a member past its `max_file_size`,
    /// more members than its `max_files`, more bytes than its `max_scan_size`, nesting past
    /// its `max_recursion`, a format airlock cannot list (rar), a corrupt or truncated
    /// structure, overlapping members, several disks, an unsupported compression method, a
    /// member inflating to other than its declared size, or a decompressor window past
    /// [`DECODER_MEMORY_LIMIT`].
    Unscannable,
    /// More members or uncompressed bytes than the policy allows.
    TooLarge,
    /// A compression ratio above the policy's `max_ratio` (a compression bomb).
    Ratio,
    /// More archive layers than the policy's `max_depth`.
    TooDeep,
}

impl Finding {
    /// Stable kebab-case code for records and reason codes.
    #[must_use]
    pub fn code(self) -> &'static str {
        match self {
            Self::NotAllowed => "archive-not-allowed",
            Self::Encrypted => "archive-encrypted",
            Self::Unscannable => "archive-unscannable",
            Self::TooLarge => "archive-too-large",
            Self::Ratio => "archive-ratio",
            Self::TooDeep => "archive-too-deep",
        }
    }
}

/// A judged reason to reject an archive, with a human detail naming the member and numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArchiveFinding {
    pub finding: Finding,
    pub detail: String,
}

impl ArchiveFinding {
    #[must_use]
    pub fn new(finding: Finding, detail: impl Into<String>) -> Self {
        Self {
            finding,
            detail: detail.into(),
        }
    }

    /// The finding's stable code, e.g. `archive-encrypted`.
    #[must_use]
    pub fn code(&self) -> &'static str {
        self.finding.code()
    }
}

impl std::fmt::Display for ArchiveFinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code(), self.detail)
    }
}

/// The file could not be read: not a judgement on the archive.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("cannot read {}: {source}", path.as_ref().map_or_else(|| "the archive".to_owned(), |p| p.display().to_string()))]
    Io {
        path: Option<PathBuf>,
        source: std::io::Error,
    },
}

/// Judges the file at `path`.
pub fn judge_file(
    path: &Path,
    policy: &ArchivePolicy,
    limits: &ScannerLimits,
) -> Result<Judgement, ArchiveError> {
    let file = File::open(path).map_err(|source| ArchiveError::Io {
        path: Some(path.to_owned()),
        source,
    })?;
    judge_reader(file, policy, limits).map_err(|ArchiveError::Io { source, .. }| ArchiveError::Io {
        path: Some(path.to_owned()),
        source,
    })
}

/// Judges a whole file given as a reader (read from its start).
pub fn judge_reader<R: Read + Seek>(
    reader: R,
    policy: &ArchivePolicy,
    limits: &ScannerLimits,
) -> Result<Judgement, ArchiveError> {
    judge::judge_top(reader, policy, limits)
}
