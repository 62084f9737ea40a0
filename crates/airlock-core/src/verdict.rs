//! Verdicts: why a file was rejected, with stable reason codes.
//!
//! A rejected file is a normal outcome, not an error. Its reason code is kebab-case and
//! stable: products and security teams match on it, so codes are never renamed.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a file was quarantined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReasonCode {
    /// No upload intent exists for the key (or the key is not one the server made).
    NoIntent,
    /// The intent expired before the object arrived.
    IntentExpired,
    /// The intent was already used by an earlier object.
    IntentAlreadyUsed,
    /// The purpose has no upload policy.
    PurposeUnknown,
    /// The object has no bytes.
    EmptyFile,
    /// The object's size differs from the size declared in the intent.
    SizeMismatch,
    /// The object is larger than its purpose allows.
    TooLarge,
    /// The declared content type is not allowed for the purpose.
    TypeNotAllowed,
    /// The bytes are not of the declared content type.
    TypeMismatch,
    /// The object's SHA-256 differs from the one declared in the intent.
    ChecksumMismatch,
    /// The virus scanner found a signature.
    Infected,
    /// The object exceeds a limit of the scanner, so it could not be fully scanned.
    TooLargeToScan,
    /// The scanner could not be reached or failed, after retries.
    ScanUnavailable,
    /// The object could not be inspected, after retries.
    InspectUnavailable,
    /// The image exceeds the purpose's limits (pixels, dimensions, frames), judged from its
    /// header before decoding.
    ImageTooLarge,
    /// The image is corrupt, truncated, or could not be decoded in time.
    ImageInvalid,
    /// Not an image format the media stage processes (SVG, TIFF, ...).
    ImageUnsupported,
    /// The media stage failed, after retries.
    MediaUnavailable,
    /// The object at the key was replaced (or changed) after it was inspected: the bytes
    /// that would be scanned or promoted are not the bytes that were judged.
    ObjectReplaced,
    /// An archive or container, for a purpose (or of a format) that does not allow one.
    ArchiveNotAllowed,
    /// An archive with an encrypted member or header: its content cannot be scanned.
    ArchiveEncrypted,
    /// An archive the scanner cannot fully have read (ZIP64, a member past its limits,
    /// too deep for it, a format airlock cannot list, a corrupt structure), so its clean
    /// answer does not cover all of it.
    ArchiveUnscannable,
    /// More members or more uncompressed bytes than the purpose allows.
    ArchiveTooLarge,
    /// A compression ratio past the purpose's limit (a decompression bomb).
    ArchiveRatio,
    /// Archives nested deeper than the purpose allows.
    ArchiveTooDeep,
    /// A zip archive appended to a file of another type (a polyglot or self-extractor): an
    /// archive that was neither declared nor judged.
    ArchiveHidden,
    /// A trusted object that a later rescan (with newer signatures) found infected: it was
    /// moved from `trusted/` to quarantine and products were told (`upload.revoked`).
    InfectedOnRescan,
}

impl ReasonCode {
    /// Every code, in a stable order (for docs and tests).
    pub const ALL: [ReasonCode; 27] = [
        Self::NoIntent,
        Self::IntentExpired,
        Self::IntentAlreadyUsed,
        Self::PurposeUnknown,
        Self::EmptyFile,
        Self::SizeMismatch,
        Self::TooLarge,
        Self::TypeNotAllowed,
        Self::TypeMismatch,
        Self::ChecksumMismatch,
        Self::Infected,
        Self::TooLargeToScan,
        Self::ScanUnavailable,
        Self::InspectUnavailable,
        Self::ImageTooLarge,
        Self::ImageInvalid,
        Self::ImageUnsupported,
        Self::MediaUnavailable,
        Self::ObjectReplaced,
        Self::ArchiveNotAllowed,
        Self::ArchiveEncrypted,
        Self::ArchiveUnscannable,
        Self::ArchiveTooLarge,
        Self::ArchiveRatio,
        Self::ArchiveTooDeep,
        Self::ArchiveHidden,
        Self::InfectedOnRescan,
    ];

    #[must_use]
    pub fn code(self) -> &'static str {
        match self {
            Self::NoIntent => "no-intent",
            Self::IntentExpired => "intent-expired",
            Self::IntentAlreadyUsed => "intent-already-used",
            Self::PurposeUnknown => "purpose-unknown",
            Self::EmptyFile => "empty-file",
            Self::SizeMismatch => "size-mismatch",
            Self::TooLarge => "too-large",
            Self::TypeNotAllowed => "type-not-allowed",
            Self::TypeMismatch => "type-mismatch",
            Self::ChecksumMismatch => "checksum-mismatch",
            Self::Infected => "infected",
            Self::TooLargeToScan => "too-large-to-scan",
            Self::ScanUnavailable => "scan-unavailable",
            Self::InspectUnavailable => "inspect-unavailable",
            Self::ImageTooLarge => "image-too-large",
            Self::ImageInvalid => "image-invalid",
            Self::ImageUnsupported => "image-unsupported",
            Self::MediaUnavailable => "media-unavailable",
            Self::ObjectReplaced => "object-replaced",
            Self::ArchiveNotAllowed => "archive-not-allowed",
            Self::ArchiveEncrypted => "archive-encrypted",
            Self::ArchiveUnscannable => "archive-unscannable",
            Self::ArchiveTooLarge => "archive-too-large",
            Self::ArchiveRatio => "archive-ratio",
            Self::ArchiveTooDeep => "archive-too-deep",
            Self::ArchiveHidden => "archive-hidden",
            Self::InfectedOnRescan => "infected-on-rescan",
        }
    }

    /// The code for a kebab-case name, as [`ReasonCode::code`] gives it.
    #[must_use]
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|reason| reason.code() == code)
    }

    /// An outage rather than a judgement of the bytes (the scanner, inspect or the media
    /// stage failed after retries): worth judging again once the cause is gone.
    #[must_use]
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            Self::ScanUnavailable | Self::InspectUnavailable | Self::MediaUnavailable
        )
    }

    /// Whether a reviewer's release can overturn this reason: reasons that come from the
    /// scanner's verdict (a false positive, an archive judged by limits or policy that may
    /// have changed) or from an outage. The release rescans the bytes and judges them again,
    /// so it promotes nothing the current scanner and policy refuse.
    ///
    /// The others describe the upload itself (no intent, an expired or used intent, a size,
    /// type or checksum other than declared, an image that cannot be decoded): no rescan
    /// changes them, and a release of one needs `force`.
    #[must_use]
    pub fn release_can_fix(self) -> bool {
        matches!(
            self,
            Self::Infected
                | Self::InfectedOnRescan
                | Self::TooLargeToScan
                | Self::ScanUnavailable
                | Self::InspectUnavailable
                | Self::MediaUnavailable
                | Self::ArchiveNotAllowed
                | Self::ArchiveEncrypted
                | Self::ArchiveUnscannable
                | Self::ArchiveTooLarge
                | Self::ArchiveRatio
                | Self::ArchiveTooDeep
                | Self::ArchiveHidden
        )
    }
}

/// An unknown reason code.
#[derive(Debug, thiserror::Error)]
#[error("unknown reason code {0:?} (codes are kebab-case, e.g. scan-unavailable)")]
pub struct UnknownReason(pub String);

impl std::str::FromStr for ReasonCode {
    type Err = UnknownReason;
    fn from_str(s: &str) -> Result<Self, UnknownReason> {
        Self::from_code(s).ok_or_else(|| UnknownReason(s.to_owned()))
    }
}

impl From<airlock_archive::Finding> for ReasonCode {
    fn from(finding: airlock_archive::Finding) -> Self {
        use airlock_archive::Finding;
        match finding {
            Finding::NotAllowed => Self::ArchiveNotAllowed,
            Finding::Encrypted => Self::ArchiveEncrypted,
            Finding::Unscannable => Self::ArchiveUnscannable,
            Finding::TooLarge => Self::ArchiveTooLarge,
            Finding::Ratio => Self::ArchiveRatio,
            Finding::TooDeep => Self::ArchiveTooDeep,
        }
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A decision to quarantine, with what a reviewer needs to understand it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    pub reason: ReasonCode,
    /// Human-readable detail, e.g. "declared image/png, content is image/jpeg".
    pub detail: String,
    /// The scanner's signature name, for `infected`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// The scanner engine and definitions that gave the verdict, for scan rejects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    /// The definitions that gave the verdict (version, build time, age), for scan rejects
    /// when the scanner reports them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub definitions: Option<crate::definitions::DefinitionsRecord>,
}

impl Rejection {
    #[must_use]
    pub fn new(reason: ReasonCode, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
            signature: None,
            engine: None,
            definitions: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_kebab_case_and_match_serde() {
        for code in ReasonCode::ALL {
            let text = code.code();
            assert!(
                text.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
                "{text}"
            );
            assert_eq!(serde_json::to_value(code).unwrap(), text);
            let back: ReasonCode = serde_json::from_value(text.into()).unwrap();
            assert_eq!(back, code);
            assert_eq!(text.parse::<ReasonCode>().unwrap(), code);
        }
    }
}
