//! What the caller controls: resource limits, the variants to produce, and encoding choices.

use std::time::Duration;

/// Resource bounds, all checked from the file header before any pixel is decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest `width * height` of the image (and of any single animation frame).
    pub max_pixels: u64,
    /// Largest width, in pixels.
    pub max_width: u32,
    /// Largest height, in pixels.
    pub max_height: u32,
    /// Most animation frames.
    pub max_frames: u32,
    /// Largest input, in bytes.
    pub max_bytes: u64,
    /// Most pixels decoded across all frames of an animation (sum of frame areas); bounds the
    /// work of a many-frame animation whose frames are each small enough on their own.
    pub max_animation_pixels: u64,
    /// Wall-clock budget for decoding.
    pub decode_timeout: Duration,
    /// Memory budget of one job, in bytes, checked before the allocations it bounds: the
    /// decoded image at four bytes a pixel must fit in it (checked from the header), any
    /// one decoder may allocate up to it, and a re-encoded animation may take half of it
    /// (its frames times its canvas at four bytes a pixel is checked before decoding, and
    /// its encoded size as it grows; the other half is room for the growing buffer). What
    /// else the input sizes is bounded far below it: EXIF is read in place, at most 64 KiB
    /// of it; ICC profiles are never copied or inflated past 4 MiB. Exceeding it is
    /// [`crate::MediaError::TooLarge`]. See [`Limits::memory_for_pixels`] for the budget
    /// that matches `max_pixels`.
    pub max_memory: u64,
}

impl Limits {
    /// The memory budget that fits an image of `max_pixels`: four 16-bit samples per
    /// pixel, plus 16 MiB for tables and small buffers.
    #[must_use]
    pub fn memory_for_pixels(max_pixels: u64) -> u64 {
        max_pixels
            .saturating_mul(8)
            .saturating_add(16 * 1024 * 1024)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_pixels: 50_000_000,
            max_width: 30_000,
            max_height: 30_000,
            max_frames: 500,
            max_bytes: 100 * 1024 * 1024,
            max_animation_pixels: 200_000_000,
            decode_timeout: Duration::from_secs(20),
            max_memory: Self::memory_for_pixels(50_000_000),
        }
    }
}

/// Encoding of a variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// Baseline JPEG with optimized Huffman tables, 4:2:0 below quality 90 and 4:4:4 from
    /// 90 up (as libvips); transparent pixels are flattened onto white.
    Jpeg,
    /// Lossy WebP (libwebp) at `quality`; alpha, if any, is kept losslessly.
    WebP,
    /// 8-bit PNG; `quality` is ignored.
    Png,
}

/// How a variant's size is derived from the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// Keep the aspect ratio; the long edge becomes [`VariantSpec::size`].
    Contain,
    /// Crop the centre to the box's aspect ratio, then scale to exactly `width x height`.
    Cover {
        /// Output width.
        width: u32,
        /// Output height.
        height: u32,
    },
}

/// One derived image to produce. Variants never upscale: a box larger than the source
/// yields the largest image of the requested shape that the source can fill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariantSpec {
    /// Name reported in the outputs, e.g. `"w1024"`.
    pub name: String,
    /// Long edge for [`Fit::Contain`]; ignored for [`Fit::Cover`].
    pub size: u32,
    /// Sizing rule.
    pub fit: Fit,
    /// Encoding.
    pub format: OutputFormat,
    /// JPEG or WebP quality, 1..=100 (WebP clamps anything outside to it).
    pub quality: u8,
}

impl VariantSpec {
    /// A JPEG whose long edge is `size`, named `w{size}`.
    #[must_use]
    pub fn jpeg_contain(size: u32, quality: u8) -> Self {
        Self {
            name: format!("w{size}"),
            size,
            fit: Fit::Contain,
            format: OutputFormat::Jpeg,
            quality,
        }
    }
}

/// What to do with an embedded ICC colour profile. Outputs never carry one: they are sRGB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColorProfile {
    /// Transform the pixels from the embedded profile to sRGB.
    ConvertToSrgb,
    /// Ignore the profile (the pixels are taken as sRGB).
    Drop,
}

/// Everything [`crate::process`] needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaOptions {
    /// Resource bounds.
    pub limits: Limits,
    /// Variants to make, in any order.
    pub variants: Vec<VariantSpec>,
    /// JPEG quality of the re-encoded original (JPEG sources only).
    pub original_quality: u8,
    /// ICC handling.
    pub color_profile: ColorProfile,
    /// Compute a `ThumbHash` placeholder.
    pub placeholder: bool,
}

impl Default for MediaOptions {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            variants: vec![
                VariantSpec::jpeg_contain(2048, 82),
                VariantSpec::jpeg_contain(1024, 82),
                VariantSpec::jpeg_contain(256, 82),
            ],
            original_quality: 90,
            color_profile: ColorProfile::ConvertToSrgb,
            placeholder: true,
        }
    }
}
