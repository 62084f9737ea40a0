//! The crate's error types: [`MediaError`], why an image was refused, with stable codes for
//! callers to branch on; and [`FileError`], which adds "the file could not be read" for the
//! functions that take a path.

use std::path::PathBuf;
use std::time::Duration;

/// Why an image was refused. Each variant maps to a stable code via [`MediaError::code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    /// The file or the image it declares exceeds a [`crate::Limits`] bound.
    #[error("image too large: {0}")]
    TooLarge(String),
    /// The bytes claim a supported format but are corrupt, truncated or inconsistent.
    #[error("invalid image: {0}")]
    Invalid(String),
    /// A format (or a feature of one) this crate refuses to decode, e.g. SVG, TIFF, HEIC.
    #[error("unsupported image: {0}")]
    Unsupported(String),
    /// Decoding took longer than [`crate::Limits::decode_timeout`].
    #[error("image decoding timed out after {0:?}")]
    TimedOut(Duration),
}

impl MediaError {
    /// Stable machine-readable code.
    ///
    /// `TimedOut` has its own code, `"image-timeout"`, rather than folding into
    /// `"image-invalid"`: a timeout says "too expensive to decode", which a caller may
    /// want to report or retry differently from "corrupt".
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooLarge(_) => "image-too-large",
            Self::Invalid(_) => "image-invalid",
            Self::Unsupported(_) => "image-unsupported",
            Self::TimedOut(_) => "image-timeout",
        }
    }
}

/// Why processing an image file failed: the file could not be read, or the image in it was
/// refused.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file could not be opened or read. An I/O problem, not a verdict on the image.
    #[error("cannot read {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// The image was refused, exactly as [`crate::process`] refuses the same bytes.
    #[error(transparent)]
    Media(#[from] MediaError),
}
