//! The one error type of the crate, with stable codes for callers to branch on.

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
