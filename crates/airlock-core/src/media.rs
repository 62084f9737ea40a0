//! The media stage's domain: what a purpose asks of images (limits, variants, colour), the
//! port an image library implements, and what it hands back.

use serde::{Deserialize, Serialize};

use crate::verdict::ReasonCode;

/// How a variant fills its box.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "mode")]
pub enum VariantFit {
    /// The long edge becomes `size`; aspect ratio kept.
    Contain,
    /// Exactly `width` x `height`, cropped to fill.
    Cover { width: u32, height: u32 },
}

/// Encodings a variant can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImageFormat {
    Jpeg,
    Webp,
    Png,
}

/// One derived size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariantPolicy {
    /// Names the output: `trusted/.../{id}.{name}.{ext}`.
    pub name: String,
    /// Long edge for `contain`.
    pub size: u32,
    pub fit: VariantFit,
    pub format: ImageFormat,
    pub quality: u8,
}

/// What to do with an embedded colour profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ColorHandling {
    /// Convert the pixels to sRGB, then drop the profile.
    ConvertToSrgb,
    /// Drop the profile as is.
    Drop,
}

/// What a purpose asks of its images.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaPolicy {
    pub max_pixels: u64,
    pub max_width: u32,
    pub max_height: u32,
    pub max_frames: u32,
    pub decode_timeout_seconds: u64,
    /// Re-encode quality of the sanitized original (lossy formats).
    pub original_quality: u8,
    /// Keep the untouched upload beside the sanitized one (`{id}.original`).
    pub keep_original: bool,
    pub color: ColorHandling,
    pub variants: Vec<VariantPolicy>,
}

impl Default for MediaPolicy {
    fn default() -> Self {
        let variant = |name: &str, size| VariantPolicy {
            name: name.to_owned(),
            size,
            fit: VariantFit::Contain,
            format: ImageFormat::Jpeg,
            quality: 82,
        };
        Self {
            max_pixels: 50_000_000,
            max_width: 30_000,
            max_height: 30_000,
            max_frames: 500,
            decode_timeout_seconds: 20,
            original_quality: 90,
            keep_original: false,
            color: ColorHandling::ConvertToSrgb,
            variants: vec![
                variant("w2048", 2048),
                variant("w1024", 1024),
                variant("w256", 256),
            ],
        }
    }
}

/// One encoded output of the media stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaOutput {
    /// `original` for the sanitized original, else the variant's name.
    pub name: String,
    pub bytes: Vec<u8>,
    pub content_type: String,
    pub extension: String,
    pub width: u32,
    pub height: u32,
    pub sha256: String,
}

/// What the image library made of an upload.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaProduct {
    pub original: MediaOutput,
    pub variants: Vec<MediaOutput>,
    /// Format, dimensions, orientation applied, EXIF fields of interest, placeholder...
    pub metadata: serde_json::Value,
}

/// Why an image was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRejection {
    pub reason: ReasonCode,
    pub detail: String,
}

/// Why an image in a file produced nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaFileFailure {
    /// The image was refused, as [`MediaProcessor::process`] refuses.
    Rejected(MediaRejection),
    /// The file could not be read: an infrastructure failure, not a verdict on the image.
    Unreadable(String),
}

/// An image library: synchronous and CPU-bound (the stage runs it off the async threads).
pub trait MediaProcessor: Send + Sync {
    /// Sanitizes `bytes` (declared and sniffed as `content_type`) and makes the variants.
    fn process(
        &self,
        bytes: &[u8],
        content_type: &str,
        policy: &MediaPolicy,
    ) -> Result<MediaProduct, MediaRejection>;

    /// [`Self::process`] for an image the stage spooled to a file. A library that can
    /// decode some format from a reader (PNG) then never holds such a file in memory; by
    /// default the file is read whole.
    fn process_file(
        &self,
        path: &std::path::Path,
        content_type: &str,
        policy: &MediaPolicy,
    ) -> Result<MediaProduct, MediaFileFailure> {
        let bytes = std::fs::read(path)
            .map_err(|e| MediaFileFailure::Unreadable(format!("{}: {e}", path.display())))?;
        self.process(&bytes, content_type, policy)
            .map_err(MediaFileFailure::Rejected)
    }
}
