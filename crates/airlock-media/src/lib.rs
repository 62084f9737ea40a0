//! Image sanitization for airlock: bytes of an untrusted upload in, clean re-encoded images
//! and a metadata summary out.
//!
//! [`process`] checks [`Limits`] from the file header before decoding anything, decodes
//! once (a JPEG at 1/2, 1/4 or 1/8 scale when no output needs more), applies the EXIF
//! orientation, converts or drops the ICC profile, re-encodes a sanitized original in the
//! source's family, resamples each [`VariantSpec`] from the nearest larger image already
//! made, and reports [`ImageMetadata`]. Outputs are encoded from pixels alone, so no EXIF,
//! GPS, XMP, IPTC, ICC, comment, text chunk or appended payload of the input survives;
//! nor does colour under fully transparent pixels (zeroed before every PNG and WebP
//! encoding, so a lossy WebP's decoder shows there at most ringing from visible
//! neighbours, and in the transparent entry of each re-encoded GIF frame's palette).
//! [`process_variants_only`] skips the full-size original, which lets large JPEGs decode
//! at reduced scale, and a PNG decode row by row straight into the largest variant's
//! resize without ever holding the full-size image: the fast, low-memory path for thumbnails.
//!
//! [`process_file`] and [`process_variants_only_file`] do the same from a path without
//! holding a PNG file in memory: the header walk reads only chunk headers and the few small
//! chunks it uses, and the decoder reads rows through a buffer. Other formats are read
//! whole. Their errors are [`FileError`]: an unreadable file is [`FileError::Io`], never a
//! verdict on the image.
//!
//! Accepted: JPEG (baseline, progressive, grayscale, CMYK/YCCK), PNG (all bit depths and
//! colour types; APNG as its default image), GIF (static and animated), WebP (lossy,
//! lossless, alpha, animated). Everything else — SVG, TIFF, BMP, HEIC/AVIF, ICO, PDF,
//! arithmetic-coded or hierarchical JPEG — is [`MediaError::Unsupported`] and never
//! rasterized.
//!
//! Sanitized originals: JPEG to JPEG at [`MediaOptions::original_quality`], PNG to 8-bit
//! PNG (16-bit samples are rounded to 8 bits; a palette PNG is written back indexed, with
//! its transparent entries' colour zeroed), GIF to GIF (frames, palettes, timing and
//! looping kept; every extension dropped), WebP to WebP in its own kind: a lossy one
//! (still or animated) to lossy WebP through libwebp at the quality estimated from its
//! VP8 quantizers, a lossless one to lossless WebP (animations stay animated). Variants
//! are encoded as their [`VariantSpec`] says: JPEG, lossy WebP at its quality, or PNG.
//!
//! Colour: embedded ICC profiles are converted to sRGB through moxcms, and a few cases it
//! lacks are done here: a gray profile with a Lab connection space (its curve gives L*),
//! and CMYK profiles, converted relative colorimetric with black-point compensation as
//! Little CMS does it (the profile's black becomes sRGB black). A PNG's `gAMA` / `cHRM`
//! without an ICC profile or `sRGB` chunk is converted to sRGB. All pixel work is
//! single-threaded and deterministic: the same input and options always give the same
//! bytes.
//!
//! Decoders run behind `catch_unwind`, and decoding is bounded in time (see
//! [`Limits::decode_timeout`] and the `decode` module notes): hostile input ends in a
//! [`MediaError`], never a crash or a hang. Memory is bounded the same way: every
//! allocation whose size the input controls is checked first against
//! [`Limits::max_memory`] or a fixed cap (64 KiB of EXIF, read in place; 4 MiB of ICC
//! profile), so a hostile file is refused as [`MediaError::TooLarge`] instead of
//! exhausting memory.

mod color;
mod decode;
mod encode;
mod error;
mod exif;
mod header;
mod input;
mod jpeg_baseline;
mod jpeg_dc;
mod jpeg_strips;
mod options;
mod pipeline;
mod placeholder;
mod port;
mod raster;
mod resize;
mod vp8;

use std::path::Path;

use serde::Serialize;

pub use error::{FileError, MediaError};
pub use header::{ImageFormat, ImageInfo};
pub use options::{ColorProfile, Fit, Limits, MediaOptions, OutputFormat, VariantSpec};
pub use port::{ImageProcessor, options_for, reason_for};

/// One encoded output image.
#[derive(Clone, PartialEq, Eq)]
pub struct Encoded {
    /// The file.
    pub bytes: Vec<u8>,
    /// MIME type, e.g. `image/jpeg`.
    pub content_type: &'static str,
    /// File extension without the dot, e.g. `jpg`.
    pub extension: &'static str,
    /// Width in pixels, as displayed.
    pub width: u32,
    /// Height in pixels, as displayed.
    pub height: u32,
    /// Lower-case hex SHA-256 of `bytes`.
    pub sha256: String,
}

impl std::fmt::Debug for Encoded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoded")
            .field("bytes", &self.bytes.len())
            .field("content_type", &self.content_type)
            .field("width", &self.width)
            .field("height", &self.height)
            .field("sha256", &self.sha256)
            .finish_non_exhaustive()
    }
}

/// One output as listed in [`ImageMetadata::outputs`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputInfo {
    /// `"original"` or the variant's name.
    pub name: String,
    /// MIME type.
    pub content_type: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Size of the encoded file.
    pub bytes: u64,
    /// Lower-case hex SHA-256 of the file.
    pub sha256: String,
}

/// What is known about an image after processing. Safe to show: free-text EXIF values are
/// trimmed and stripped of control characters, and GPS data is reported only as present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[allow(
    clippy::struct_excessive_bools,
    reason = "independent facts of a serialized record, not a state machine"
)]
pub struct ImageMetadata {
    /// Source format: `jpeg`, `png`, `gif` or `webp`.
    pub format: String,
    /// Width as displayed (after EXIF orientation).
    pub width: u32,
    /// Height as displayed (after EXIF orientation).
    pub height: u32,
    /// EXIF orientation of the source, 1 when it had none.
    pub orientation: u16,
    /// The pixels were rotated or flipped to apply `orientation`.
    pub orientation_applied: bool,
    /// The source may have transparent pixels.
    pub has_alpha: bool,
    /// Frames in the source.
    pub frame_count: u32,
    /// The source is an animation.
    pub animated: bool,
    /// Colour model of the source, see [`ImageInfo::color_type`].
    pub color_type: String,
    /// Bits per sample in the source.
    pub bit_depth: u8,
    /// `"srgb-converted"` or `"dropped"` when the source embedded an ICC profile.
    pub icc_profile: Option<String>,
    /// EXIF `Make`.
    pub camera_make: Option<String>,
    /// EXIF `Model`.
    pub camera_model: Option<String>,
    /// EXIF `DateTimeOriginal`, as `YYYY-MM-DDTHH:MM:SS` (camera local time).
    pub captured_at: Option<String>,
    /// The source had GPS EXIF fields (which are never copied anywhere).
    pub gps_present: bool,
    /// A small blurred preview, base64; see `placeholder_kind`.
    pub placeholder: Option<String>,
    /// Encoding of `placeholder`: `"thumbhash"`.
    pub placeholder_kind: Option<String>,
    /// Every produced output, the original first.
    pub outputs: Vec<OutputInfo>,
}

/// Result of [`process`] and [`process_file`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Processed {
    /// The sanitized full-size original.
    pub original: Encoded,
    /// `(name, image)` per [`MediaOptions::variants`] entry, in that order.
    pub variants: Vec<(String, Encoded)>,
    /// What was learned about the image.
    pub metadata: ImageMetadata,
}

/// Result of [`process_variants_only`] and [`process_variants_only_file`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessedVariants {
    /// `(name, image)` per [`MediaOptions::variants`] entry, in that order.
    pub variants: Vec<(String, Encoded)>,
    /// What was learned about the image; `outputs` lists the variants only.
    pub metadata: ImageMetadata,
}

/// Header-only look: format, dimensions, frame count where cheap. Never decodes pixels.
pub fn probe(bytes: &[u8]) -> Result<ImageInfo, MediaError> {
    guarded(|| header::read(bytes).map(|header| header.info))
}

/// The whole job: check limits from the header before decoding, decode once, auto-orient
/// from EXIF, strip all metadata, re-encode the sanitized original, make the variants and
/// build the metadata.
///
/// The original must be re-encoded at full size, so this decodes at full size and derives
/// the variants from that decode; use [`process_variants_only`] when no original is needed.
pub fn process(bytes: &[u8], options: &MediaOptions) -> Result<Processed, MediaError> {
    let outcome = guarded(|| pipeline::run(input::Input::Bytes(bytes), options, true))?;
    with_original(outcome)
}

/// [`process`] on the image in a file, with the same outputs and the same refusals as for
/// the file's bytes.
///
/// The file's size is checked against [`Limits::max_bytes`] before anything is read. A PNG
/// is never held whole: the header walk reads chunk headers and the few small chunks it
/// uses (seeking over the image data), and the decoder reads through a buffer. A JPEG, GIF
/// or WebP file, or anything that is not a regular file, is read into memory and processed
/// as bytes. A file that cannot be opened or read is [`FileError::Io`], naming the path; a
/// PNG that changes while it is read is refused (its header is checked again before
/// decoding).
pub fn process_file(path: &Path, options: &MediaOptions) -> Result<Processed, FileError> {
    let outcome = input::with_file(path, &options.limits, |input| {
        guarded(|| pipeline::run(input, options, true))
    })?;
    Ok(with_original(outcome)?)
}

fn with_original(outcome: pipeline::Outcome) -> Result<Processed, MediaError> {
    let original = outcome
        .original
        .ok_or_else(|| MediaError::Invalid("no original was produced".into()))?;
    Ok(Processed {
        original,
        variants: outcome.variants,
        metadata: outcome.metadata,
    })
}

/// Like [`process`] without the sanitized original: the decoder only has to produce as
/// many pixels as the largest variant needs, so a large JPEG decodes at reduced scale,
/// which is several times faster and uses a fraction of the memory.
pub fn process_variants_only(
    bytes: &[u8],
    options: &MediaOptions,
) -> Result<ProcessedVariants, MediaError> {
    let outcome = guarded(|| pipeline::run(input::Input::Bytes(bytes), options, false))?;
    Ok(variants_only(outcome))
}

/// [`process_variants_only`] on the image in a file, reading it as [`process_file`] does:
/// a large PNG goes from the file, row by row, straight into its largest variant, so
/// neither the file nor the full-size image is ever held in memory.
pub fn process_variants_only_file(
    path: &Path,
    options: &MediaOptions,
) -> Result<ProcessedVariants, FileError> {
    let outcome = input::with_file(path, &options.limits, |input| {
        guarded(|| pipeline::run(input, options, false))
    })?;
    Ok(variants_only(outcome))
}

fn variants_only(outcome: pipeline::Outcome) -> ProcessedVariants {
    ProcessedVariants {
        variants: outcome.variants,
        metadata: outcome.metadata,
    }
}

/// Turns a panic anywhere in decoding or encoding into an error: a decoder bug triggered
/// by a hostile file must not take the worker down.
fn guarded<T>(job: impl FnOnce() -> Result<T, MediaError>) -> Result<T, MediaError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(job))
        .unwrap_or_else(|_| Err(MediaError::Invalid("the image crashed a decoder".into())))
}
