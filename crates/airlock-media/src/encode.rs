//! Encoders for every output. None of them is given any metadata to write, so outputs
//! carry pixels (and, for animations, timing) only.

use std::borrow::Cow;

use image_webp::{ColorType as WebpColor, WebPEncoder};

use crate::MediaError;
use crate::jpeg_baseline::{self, JpegError, JpegInput};
use crate::options::OutputFormat;
use crate::raster::{Channels, Raster};

fn failed(format: &str, error: &dyn std::fmt::Display) -> MediaError {
    MediaError::Invalid(format!("{format} encoding failed: {error}"))
}

/// Encodes a raster in the requested format.
pub(crate) fn encode(
    raster: &Raster,
    format: OutputFormat,
    quality: u8,
) -> Result<Vec<u8>, MediaError> {
    match format {
        OutputFormat::Jpeg => jpeg(raster, quality),
        OutputFormat::Png => png(raster),
        OutputFormat::WebP => webp(raster),
    }
}

/// MIME type and file extension of an output format.
pub(crate) fn content_type(format: OutputFormat) -> (&'static str, &'static str) {
    match format {
        OutputFormat::Jpeg => ("image/jpeg", "jpg"),
        OutputFormat::Png => ("image/png", "png"),
        OutputFormat::WebP => ("image/webp", "webp"),
    }
}

/// The raster in an RGB-based layout (YCbCr converted, any other layout as it is), with
/// no colour left under fully transparent pixels.
fn rgb_based(raster: &Raster) -> Cow<'_, Raster> {
    let raster = raster.to_rgb().map_or(Cow::Borrowed(raster), Cow::Owned);
    raster.without_hidden_colour().map_or(raster, Cow::Owned)
}

/// Baseline JPEG with optimized Huffman tables; 4:4:4 from quality 90 up, else 4:2:0 with
/// chroma averaged (not point-sampled) before subsampling, which keeps small variants'
/// colour edges as clean as libvips' output. Alpha is flattened onto white first.
pub(crate) fn jpeg(raster: &Raster, quality: u8) -> Result<Vec<u8>, MediaError> {
    let raster = raster
        .flatten_onto_white()
        .map_or(Cow::Borrowed(raster), Cow::Owned);
    let input = match raster.channels {
        Channels::Gray => JpegInput::Gray,
        Channels::Rgb => JpegInput::Rgb,
        Channels::YCbCr => JpegInput::YCbCr,
        Channels::Rgba => {
            return Err(MediaError::Invalid(
                "JPEG encoding failed: alpha was not flattened".into(),
            ));
        }
    };
    jpeg_baseline::encode(&raster.pixels, raster.width, raster.height, input, quality).map_err(
        |error| match error {
            JpegError::Dimensions { .. } => MediaError::TooLarge(format!(
                "{}x{} cannot be encoded as JPEG",
                raster.width, raster.height
            )),
            JpegError::ShortPixels { .. } => failed("JPEG", &error),
        },
    )
}

/// 8-bit PNG with adaptive filtering and a fast deflate: sanitized originals can be large,
/// and the fast compressor costs a fraction of zlib's time for a few percent in size.
pub(crate) fn png(raster: &Raster) -> Result<Vec<u8>, MediaError> {
    let raster = rgb_based(raster);
    let mut out = Vec::with_capacity(raster.pixels.len() / 2);
    let mut encoder = png::Encoder::new(&mut out, raster.width, raster.height);
    encoder.set_color(match raster.channels {
        Channels::Gray => png::ColorType::Grayscale,
        // YCbCr was converted above.
        Channels::Rgb | Channels::YCbCr => png::ColorType::Rgb,
        Channels::Rgba => png::ColorType::Rgba,
    });
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Fast);
    let mut writer = encoder.write_header().map_err(|e| failed("PNG", &e))?;
    writer
        .write_image_data(&raster.pixels)
        .map_err(|e| failed("PNG", &e))?;
    writer.finish().map_err(|e| failed("PNG", &e))?;
    Ok(out)
}

fn webp_color(channels: Channels) -> WebpColor {
    match channels {
        Channels::Gray => WebpColor::L8,
        // YCbCr is converted before encoding.
        Channels::Rgb | Channels::YCbCr => WebpColor::Rgb8,
        Channels::Rgba => WebpColor::Rgba8,
    }
}

/// Lossless WebP.
pub(crate) fn webp(raster: &Raster) -> Result<Vec<u8>, MediaError> {
    let raster = rgb_based(raster);
    let mut out = Vec::new();
    WebPEncoder::new(&mut out)
        .encode(
            &raster.pixels,
            raster.width,
            raster.height,
            webp_color(raster.channels),
        )
        .map_err(|e| failed("WebP", &e))?;
    Ok(out)
}

/// Builds an animated WebP from full-canvas frames, each stored losslessly and drawn
/// without blending, so every frame shows exactly the composited source frame.
#[derive(Debug)]
pub(crate) struct AnimatedWebp {
    width: u32,
    height: u32,
    loop_count: u16,
    has_alpha: bool,
    frames: Vec<u8>,
    /// Most bytes the frames may take.
    max_bytes: u64,
}

/// Longest frame duration a WebP animation frame can hold (24 bits of milliseconds).
const MAX_WEBP_FRAME_MS: u32 = 0xFF_FFFF;

impl AnimatedWebp {
    /// An empty animation whose frames may take at most `max_bytes`.
    pub(crate) fn new(width: u32, height: u32, loop_count: u16, max_bytes: u64) -> Self {
        Self {
            width,
            height,
            loop_count,
            has_alpha: false,
            frames: Vec::new(),
            max_bytes,
        }
    }

    /// Appends one full-canvas frame shown for `duration_ms`.
    pub(crate) fn push(&mut self, frame: &Raster, duration_ms: u32) -> Result<(), MediaError> {
        let still = webp(frame)?;
        // A plain lossless file is RIFF header (12 bytes) then exactly one VP8L chunk.
        let bitstream = still
            .get(12..)
            .filter(|chunk| chunk.starts_with(b"VP8L"))
            .ok_or_else(|| MediaError::Invalid("unexpected WebP encoder output".into()))?;
        self.has_alpha |= frame.uses_alpha();
        // RIFF chunks are padded to even length; the sub-chunk must be too.
        let padding = bitstream.len() % 2;
        let payload_len = 16 + bitstream.len() + padding;
        let total = self.frames.len().saturating_add(8 + payload_len);
        if u64::try_from(total).unwrap_or(u64::MAX) > self.max_bytes {
            return Err(MediaError::TooLarge(format!(
                "the re-encoded animation outgrows its {}-byte share of the memory budget",
                self.max_bytes
            )));
        }
        self.frames.extend_from_slice(b"ANMF");
        self.frames
            .extend_from_slice(&u32_len(payload_len)?.to_le_bytes());
        self.frames.extend_from_slice(&[0; 6]); // frame offset x/2, y/2: the canvas origin
        self.frames.extend_from_slice(&le24(self.width - 1));
        self.frames.extend_from_slice(&le24(self.height - 1));
        self.frames
            .extend_from_slice(&le24(duration_ms.min(MAX_WEBP_FRAME_MS)));
        // Bit 1: do not blend with the previous frame; bit 0 clear: no disposal.
        self.frames.push(0b10);
        self.frames.extend_from_slice(bitstream);
        self.frames.resize(self.frames.len() + padding, 0);
        Ok(())
    }

    /// The finished file.
    pub(crate) fn finish(self) -> Result<Vec<u8>, MediaError> {
        let mut vp8x = [0u8; 10];
        vp8x[0] = 0b10 | if self.has_alpha { 0b1_0000 } else { 0 };
        vp8x[4..7].copy_from_slice(&le24(self.width - 1));
        vp8x[7..10].copy_from_slice(&le24(self.height - 1));
        let mut anim = [0u8; 6];
        anim[4..6].copy_from_slice(&self.loop_count.to_le_bytes());

        let body_len = 4 + (8 + vp8x.len()) + (8 + anim.len()) + self.frames.len();
        let mut out = Vec::with_capacity(8 + body_len);
        out.extend_from_slice(b"RIFF");
        out.extend_from_slice(&u32_len(body_len)?.to_le_bytes());
        out.extend_from_slice(b"WEBP");
        out.extend_from_slice(b"VP8X");
        out.extend_from_slice(&10u32.to_le_bytes());
        out.extend_from_slice(&vp8x);
        out.extend_from_slice(b"ANIM");
        out.extend_from_slice(&6u32.to_le_bytes());
        out.extend_from_slice(&anim);
        out.extend_from_slice(&self.frames);
        Ok(out)
    }
}

fn le24(value: u32) -> [u8; 3] {
    let [a, b, c, _] = value.to_le_bytes();
    [a, b, c]
}

fn u32_len(len: usize) -> Result<u32, MediaError> {
    u32::try_from(len).map_err(|_| MediaError::TooLarge("animation exceeds 4 GiB".into()))
}
