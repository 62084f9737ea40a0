//! The media stage's port, [`airlock_core::media::MediaProcessor`], over this library: maps a
//! purpose's media policy to [`MediaOptions`] and the library's errors to reason codes.

use std::path::Path;

use airlock_core::media::{
    ColorHandling, ImageFormat, MediaFileFailure, MediaOutput, MediaPolicy, MediaProcessor,
    MediaProduct, MediaRejection, VariantFit,
};
use airlock_core::verdict::ReasonCode;

use crate::{
    ColorProfile, Encoded, FileError, Fit, Limits, MediaError, MediaOptions, OutputFormat,
    VariantSpec,
};

/// The image library as the media stage sees it.
#[derive(Debug, Clone, Copy, Default)]
pub struct ImageProcessor;

/// The library's options for a purpose's media policy.
#[must_use]
pub fn options_for(policy: &MediaPolicy) -> MediaOptions {
    let defaults = Limits::default();
    MediaOptions {
        limits: Limits {
            max_pixels: policy.max_pixels,
            max_width: policy.max_width,
            max_height: policy.max_height,
            max_frames: policy.max_frames,
            decode_timeout: std::time::Duration::from_secs(policy.decode_timeout_seconds),
            max_memory: Limits::memory_for_pixels(policy.max_pixels),
            ..defaults
        },
        variants: policy
            .variants
            .iter()
            .map(|v| VariantSpec {
                name: v.name.clone(),
                size: v.size,
                fit: match v.fit {
                    VariantFit::Contain => Fit::Contain,
                    VariantFit::Cover { width, height } => Fit::Cover { width, height },
                },
                format: match v.format {
                    ImageFormat::Jpeg => OutputFormat::Jpeg,
                    ImageFormat::Webp => OutputFormat::WebP,
                    ImageFormat::Png => OutputFormat::Png,
                },
                quality: v.quality,
            })
            .collect(),
        original_quality: policy.original_quality,
        color_profile: match policy.color {
            ColorHandling::ConvertToSrgb => ColorProfile::ConvertToSrgb,
            ColorHandling::Drop => ColorProfile::Drop,
        },
        placeholder: true,
    }
}

fn output(name: &str, encoded: Encoded) -> MediaOutput {
    MediaOutput {
        name: name.to_owned(),
        bytes: encoded.bytes,
        content_type: encoded.content_type.to_owned(),
        extension: encoded.extension.to_owned(),
        width: encoded.width,
        height: encoded.height,
        sha256: encoded.sha256,
    }
}

/// The reason code a library error quarantines with.
#[must_use]
pub fn reason_for(error: &MediaError) -> ReasonCode {
    match error {
        MediaError::TooLarge(_) => ReasonCode::ImageTooLarge,
        // Too expensive to decode in time is treated like undecodable: never promoted.
        MediaError::Invalid(_) | MediaError::TimedOut(_) => ReasonCode::ImageInvalid,
        MediaError::Unsupported(_) => ReasonCode::ImageUnsupported,
    }
}

fn rejection(error: &MediaError) -> MediaRejection {
    MediaRejection {
        reason: reason_for(error),
        detail: error.to_string(),
    }
}

impl MediaProcessor for ImageProcessor {
    fn process(
        &self,
        bytes: &[u8],
        _content_type: &str,
        policy: &MediaPolicy,
    ) -> Result<MediaProduct, MediaRejection> {
        let processed = crate::process(bytes, &options_for(policy)).map_err(|e| rejection(&e))?;
        product(processed)
    }

    /// Reads a PNG from the file as it decodes ([`crate::process_file`]).
    fn process_file(
        &self,
        path: &Path,
        _content_type: &str,
        policy: &MediaPolicy,
    ) -> Result<MediaProduct, MediaFileFailure> {
        let processed =
            crate::process_file(path, &options_for(policy)).map_err(|error| match error {
                FileError::Io { .. } => MediaFileFailure::Unreadable(error.to_string()),
                FileError::Media(e) => MediaFileFailure::Rejected(rejection(&e)),
            })?;
        product(processed).map_err(MediaFileFailure::Rejected)
    }
}

/// The port's view of what the library made.
fn product(processed: crate::Processed) -> Result<MediaProduct, MediaRejection> {
    let metadata = serde_json::to_value(&processed.metadata).map_err(|e| MediaRejection {
        reason: ReasonCode::ImageInvalid,
        detail: format!("metadata could not be recorded: {e}"),
    })?;
    Ok(MediaProduct {
        original: output("original", processed.original),
        variants: processed
            .variants
            .into_iter()
            .map(|(name, encoded)| output(&name, encoded))
            .collect(),
        metadata,
    })
}
