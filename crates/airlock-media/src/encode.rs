//! Encoders for every output. None of them is given any metadata to write, so outputs
//! carry pixels (and, for animations, timing) only.

use std::borrow::Cow;

use image_webp::{ColorType as WebpColor, WebPEncoder};

use crate::MediaError;
use crate::header::WebpQuality;
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
        OutputFormat::WebP => webp_lossy(raster, quality),
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

/// Lossy WebP at libwebp `quality` (1-100, clamped), for variants and for originals that
/// came in lossy: storing a lossy image losslessly multiplies its size for nothing, and a
/// variant is a resampled copy anyway. Alpha, if any, is stored
/// losslessly (libwebp's default), and colour under fully transparent pixels is zeroed
/// first.
pub(crate) fn webp_lossy(raster: &Raster, quality: u8) -> Result<Vec<u8>, MediaError> {
    let raster = rgb_based(raster);
    let (width, height) = (raster.width, raster.height);
    let quality = f32::from(quality.clamp(1, 100));
    let encoded = match raster.channels {
        Channels::Rgba => {
            libwebp::WebPEncodeRGBA(&raster.pixels, width, height, width * 4, quality)
        }
        Channels::Gray => {
            let rgb: Vec<u8> = raster.pixels.iter().flat_map(|&v| [v, v, v]).collect();
            libwebp::WebPEncodeRGB(&rgb, width, height, width * 3, quality)
        }
        // YCbCr was converted above.
        Channels::Rgb | Channels::YCbCr => {
            libwebp::WebPEncodeRGB(&raster.pixels, width, height, width * 3, quality)
        }
    }
    .map_err(|e| failed("WebP", &e))?;
    Ok(encoded.to_vec())
}

/// [`webp_lossy`] at the source's estimated quality, and again at its coarsest segment's
/// quality when that first file is over 1.2 times the source's `input_len` bytes (the
/// estimate can err high on some images, see the `vp8` module); the smaller file wins.
pub(crate) fn webp_lossy_within(
    raster: &Raster,
    quality: WebpQuality,
    input_len: u64,
) -> Result<Vec<u8>, MediaError> {
    let first = webp_lossy(raster, quality.estimate)?;
    let limit = input_len.saturating_mul(6) / 5;
    if u64::try_from(first.len()).unwrap_or(u64::MAX) <= limit
        || quality.coarsest >= quality.estimate
    {
        return Ok(first);
    }
    let second = webp_lossy(raster, quality.coarsest)?;
    Ok(if second.len() < first.len() {
        second
    } else {
        first
    })
}

/// A re-encoded WebP animation: lossy through libwebp's animation encoder when the
/// source had lossy frames, else lossless full-canvas frames ([`AnimatedWebp`]).
pub(crate) enum WebpAnimation {
    Lossless(AnimatedWebp),
    Lossy(Box<LossyAnimatedWebp>),
}

impl std::fmt::Debug for WebpAnimation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Lossless(animation) => animation.fmt(f),
            Self::Lossy(animation) => animation.fmt(f),
        }
    }
}

impl WebpAnimation {
    /// An empty animation of `width x height` that may take at most `max_bytes`; lossy at
    /// `quality` when given. `alpha`: the frames are RGBA.
    pub(crate) fn new(
        width: u32,
        height: u32,
        loop_count: u16,
        quality: Option<u8>,
        alpha: bool,
        max_bytes: u64,
    ) -> Result<Self, MediaError> {
        Ok(match quality {
            Some(quality) => Self::Lossy(Box::new(LossyAnimatedWebp::new(
                width, height, loop_count, quality, alpha, max_bytes,
            )?)),
            None => Self::Lossless(AnimatedWebp::new(width, height, loop_count, max_bytes)),
        })
    }

    /// Appends one full-canvas frame shown for `duration_ms`.
    pub(crate) fn push(&mut self, frame: &Raster, duration_ms: u32) -> Result<(), MediaError> {
        match self {
            Self::Lossless(animation) => animation.push(frame, duration_ms),
            Self::Lossy(animation) => animation.push(frame, duration_ms),
        }
    }

    /// The finished file.
    pub(crate) fn finish(self) -> Result<Vec<u8>, MediaError> {
        match self {
            Self::Lossless(animation) => animation.finish(),
            Self::Lossy(animation) => animation.finish(),
        }
    }
}

/// A lossy WebP animation built by libwebp's `WebPAnimEncoder`, which encodes each frame
/// as it is added (only the changed rectangle of each frame after the first), so frames
/// are never all held at once. Consecutive identical frames are merged into one longer
/// frame, which displays the same.
pub(crate) struct LossyAnimatedWebp {
    encoder: webp_animation::Encoder,
    alpha: bool,
    /// Start of the next frame, in milliseconds from the first.
    elapsed_ms: i32,
    max_bytes: u64,
}

impl std::fmt::Debug for LossyAnimatedWebp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LossyAnimatedWebp")
            .field("alpha", &self.alpha)
            .field("elapsed_ms", &self.elapsed_ms)
            .finish_non_exhaustive()
    }
}

fn animation_failed(error: &webp_animation::Error) -> MediaError {
    MediaError::Invalid(format!("WebP animation encoding failed: {error:?}"))
}

impl LossyAnimatedWebp {
    fn new(
        width: u32,
        height: u32,
        loop_count: u16,
        quality: u8,
        alpha: bool,
        max_bytes: u64,
    ) -> Result<Self, MediaError> {
        let options = webp_animation::EncoderOptions {
            anim_params: webp_animation::AnimParams {
                loop_count: i32::from(loop_count),
            },
            color_mode: if alpha {
                webp_animation::ColorMode::Rgba
            } else {
                webp_animation::ColorMode::Rgb
            },
            encoding_config: Some(webp_animation::EncodingConfig::new_lossy(f32::from(
                quality.clamp(1, 100),
            ))),
            ..webp_animation::EncoderOptions::default()
        };
        let encoder = webp_animation::Encoder::new_with_options((width, height), options)
            .map_err(|e| animation_failed(&e))?;
        Ok(Self {
            encoder,
            alpha,
            elapsed_ms: 0,
            max_bytes,
        })
    }

    fn push(&mut self, frame: &Raster, duration_ms: u32) -> Result<(), MediaError> {
        let frame = rgb_based(frame);
        let pixels: Cow<'_, [u8]> = match (self.alpha, frame.channels) {
            (true, Channels::Rgba) | (false, Channels::Rgb) => Cow::Borrowed(&frame.pixels),
            (true, _) => Cow::Owned(frame.to_rgba()),
            (false, _) => Cow::Owned(
                frame
                    .to_rgba()
                    .chunks_exact(4)
                    .flat_map(|p| [p[0], p[1], p[2]])
                    .collect(),
            ),
        };
        self.encoder
            .add_frame(&pixels, self.elapsed_ms)
            .map_err(|e| animation_failed(&e))?;
        // libwebp wants strictly increasing timestamps: a zero-length frame gets 1 ms.
        let duration = i32::try_from(duration_ms.clamp(1, MAX_WEBP_FRAME_MS)).unwrap_or(1);
        self.elapsed_ms = self.elapsed_ms.checked_add(duration).ok_or_else(|| {
            MediaError::Invalid("WebP animation runs longer than its encoder can time".into())
        })?;
        Ok(())
    }

    fn finish(self) -> Result<Vec<u8>, MediaError> {
        let data = self
            .encoder
            .finalize(self.elapsed_ms)
            .map_err(|e| animation_failed(&e))?;
        if u64::try_from(data.len()).unwrap_or(u64::MAX) > self.max_bytes {
            return Err(MediaError::TooLarge(format!(
                "the re-encoded animation outgrows its {}-byte share of the memory budget",
                self.max_bytes
            )));
        }
        Ok(data.to_vec())
    }
}

/// The PNG of an image that came in indexed: indexed again (a palette of at most 256
/// colours, `tRNS` for the translucent ones, 1, 2, 4 or 8 bits a pixel), since storing it
/// as RGB or RGBA multiplies its size. Every transparent pixel's colour is zeroed first,
/// so all of them share one palette entry. Sanitizing a palette image never adds colours
/// (colour conversion maps each entry to one colour), but should the pixels have more than
/// 256 this falls back to [`png`].
pub(crate) fn png_indexed(raster: &Raster) -> Result<Vec<u8>, MediaError> {
    let raster = rgb_based(raster);
    let channels = raster.channels.count();
    let colour = |p: &[u8]| -> [u8; 4] {
        match p.len() {
            1 => [p[0], p[0], p[0], 255],
            3 => [p[0], p[1], p[2], 255],
            _ => [p[0], p[1], p[2], p[3]],
        }
    };
    // Colours in order of first appearance.
    let mut seen: std::collections::HashMap<[u8; 4], u8> = std::collections::HashMap::new();
    let mut order: Vec<[u8; 4]> = Vec::new();
    let mut last: Option<[u8; 4]> = None;
    for pixel in raster.pixels.chunks_exact(channels) {
        let c = colour(pixel);
        if last == Some(c) {
            continue;
        }
        last = Some(c);
        if let std::collections::hash_map::Entry::Vacant(entry) = seen.entry(c) {
            if order.len() == 256 {
                return png(&raster);
            }
            entry.insert(0);
            order.push(c);
        }
    }
    // Translucent entries first, so `tRNS` stops at the last of them.
    order.sort_by_key(|c| c[3] == 255);
    for (index, c) in order.iter().enumerate() {
        seen.insert(*c, u8::try_from(index).unwrap_or(u8::MAX));
    }
    let (depth, bits) = match order.len() {
        0..=2 => (png::BitDepth::One, 1),
        3..=4 => (png::BitDepth::Two, 2),
        5..=16 => (png::BitDepth::Four, 4),
        _ => (png::BitDepth::Eight, 8),
    };
    let width = raster.width as usize;
    let stride = (width * bits).div_ceil(8);
    let mut indices = vec![0u8; stride * raster.height as usize];
    let per_byte = 8 / bits;
    for (row, out) in raster
        .pixels
        .chunks_exact(width * channels)
        .zip(indices.chunks_exact_mut(stride))
    {
        for (x, pixel) in row.chunks_exact(channels).enumerate() {
            let index = seen.get(&colour(pixel)).copied().unwrap_or(0);
            let shift = 8 - bits * (x % per_byte + 1);
            out[x / per_byte] |= index << shift;
        }
    }
    let palette: Vec<u8> = order.iter().flat_map(|c| [c[0], c[1], c[2]]).collect();
    let translucent = order.iter().take_while(|c| c[3] != 255).count();
    let trns: Vec<u8> = order[..translucent].iter().map(|c| c[3]).collect();

    let mut out = Vec::with_capacity(indices.len() / 2);
    let mut encoder = png::Encoder::new(&mut out, raster.width, raster.height);
    encoder.set_color(png::ColorType::Indexed);
    encoder.set_depth(depth);
    encoder.set_palette(palette);
    if !trns.is_empty() {
        encoder.set_trns(trns);
    }
    // Indices are not magnitudes: filtering them rarely helps (libpng does not either),
    // and at a quarter of RGBA's bytes the stronger deflate costs little.
    encoder.set_filter(png::Filter::NoFilter);
    encoder.set_compression(png::Compression::Balanced);
    let mut writer = encoder.write_header().map_err(|e| failed("PNG", &e))?;
    writer
        .write_image_data(&indices)
        .map_err(|e| failed("PNG", &e))?;
    writer.finish().map_err(|e| failed("PNG", &e))?;
    Ok(out)
}
