//! Decoding, with every decoder bounded in memory (limits checked from the header first)
//! and in time.
//!
//! Time is bounded cooperatively where the decoder can be driven piecewise: PNG row by
//! row, GIF and animated WebP frame by frame. A baseline JPEG or a still WebP decodes in
//! one call, but its work is linear in the pixel count (already limited) and the scan
//! count (a baseline JPEG may have at most one scan per component). A progressive JPEG is
//! the exception — each of its scans walks every coefficient again — so it decodes on a
//! worker thread that is abandoned at the deadline. The trade-off: the input is copied
//! for that thread, and an abandoned thread keeps its CPU and memory until it finishes on
//! its own (bounded by the scan limit and the pixel limit), since Rust threads cannot be
//! killed.

use std::borrow::Cow;
use std::io::{BufRead, Cursor, Seek};
use std::num::NonZeroU64;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use image_webp::{LoopCount, WebPDecoder};

use crate::MediaError;
use crate::color::{self, IccOutcome, PngGamma, SrgbTransform};
use crate::encode::WebpAnimation;
use crate::header::{Header, ImageFormat};
use crate::jpeg_dc;
use crate::jpeg_strips;
use crate::options::{ColorProfile, Limits};
use crate::raster::{self, Channels, Raster};
use crate::resize::{Resampler, RowResizer};

/// The wall-clock budget of one decode.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline {
    start: Instant,
    budget: Duration,
}

impl Deadline {
    pub(crate) fn new(budget: Duration) -> Self {
        Self {
            start: Instant::now(),
            budget,
        }
    }

    pub(crate) fn check(&self) -> Result<(), MediaError> {
        if self.start.elapsed() > self.budget {
            Err(MediaError::TimedOut(self.budget))
        } else {
            Ok(())
        }
    }

    fn remaining(&self) -> Duration {
        self.budget.saturating_sub(self.start.elapsed())
    }
}

/// What a decode is asked to do.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Request<'a> {
    pub header: &'a Header<'a>,
    pub limits: &'a Limits,
    pub deadline: Deadline,
    pub color_profile: ColorProfile,
    /// Smallest acceptable size of the decoded image (in stored orientation): a JPEG may
    /// be decoded at 1/2, 1/4 or 1/8 scale as long as it stays at least this large.
    pub min_size: (u32, u32),
    /// Also re-encode the original frame by frame: every GIF (to GIF), and animated
    /// WebP (to animated WebP).
    pub transcode: bool,
    /// EXIF orientation, applied to re-encoded animation frames.
    pub orientation: u16,
}

/// A decoded image.
#[derive(Debug)]
pub(crate) struct Decoded {
    /// The still image, or an animation's first frame, in stored orientation, colours
    /// already in sRGB when conversion was asked for.
    pub base: Raster,
    /// What became of an embedded ICC profile (`None`: there was none).
    pub icc: Option<IccOutcome>,
    /// The re-encoded original, when transcoding was asked for and applies.
    pub animation: Option<Vec<u8>>,
}

pub(crate) fn decode(bytes: &[u8], request: &Request<'_>) -> Result<Decoded, MediaError> {
    let decoded = match request.header.info.format {
        ImageFormat::Jpeg => jpeg(bytes, request),
        ImageFormat::Png => png(Cursor::new(bytes), request),
        ImageFormat::Gif => gif(bytes, request),
        ImageFormat::WebP => webp(bytes, request),
    }?;
    request.deadline.check()?;
    Ok(decoded)
}

/// Applies the colour-profile option to a decoded still image.
fn manage_color(
    raster: &mut Raster,
    icc: Option<&[u8]>,
    option: ColorProfile,
) -> Option<IccOutcome> {
    let icc = icc?;
    Some(match option {
        ColorProfile::ConvertToSrgb => color::convert_to_srgb(raster, icc),
        ColorProfile::Drop => IccOutcome::Dropped,
    })
}

/// Bytes a decoder may allocate for its output and working buffers: the job's memory
/// budget.
fn decoder_memory_budget(limits: &Limits) -> usize {
    usize::try_from(limits.max_memory).unwrap_or(usize::MAX)
}

// ---------------------------------------------------------------- JPEG

/// Picks the IDCT scale (in eighths: 1, 2, 4 or 8) giving the smallest decoded image that
/// is still at least `min_size` in both dimensions.
fn jpeg_scale(width: u32, height: u32, min_size: (u32, u32)) -> u32 {
    let scaled = |len: u32, eighths: u32| (len * eighths).div_ceil(8);
    [1, 2, 4]
        .into_iter()
        .find(|&eighths| {
            scaled(width, eighths) >= min_size.0 && scaled(height, eighths) >= min_size.1
        })
        .unwrap_or(8)
}

fn jpeg_error(error: jpeg_decoder::Error) -> MediaError {
    match error {
        jpeg_decoder::Error::Unsupported(feature) => {
            MediaError::Unsupported(format!("JPEG feature: {feature:?}"))
        }
        other => MediaError::Invalid(format!("JPEG: {other}")),
    }
}

fn jpeg_decode_pixels(
    bytes: &[u8],
    eighths: u32,
    memory_budget: usize,
) -> Result<(Vec<u8>, jpeg_decoder::ImageInfo), MediaError> {
    let mut decoder = jpeg_decoder::Decoder::new(bytes);
    decoder.set_max_decoding_buffer_size(memory_budget);
    decoder.read_info().map_err(jpeg_error)?;
    let info = decoder
        .info()
        .ok_or_else(|| MediaError::Invalid("JPEG has no frame header".into()))?;
    if eighths < 8 {
        let scaled =
            |len: u16| u16::try_from((u32::from(len) * eighths).div_ceil(8)).unwrap_or(len);
        decoder
            .scale(scaled(info.width), scaled(info.height))
            .map_err(jpeg_error)?;
    }
    let pixels = decoder.decode().map_err(jpeg_error)?;
    let info = decoder
        .info()
        .ok_or_else(|| MediaError::Invalid("JPEG has no frame header".into()))?;
    Ok((pixels, info))
}

fn jpeg(bytes: &[u8], request: &Request<'_>) -> Result<Decoded, MediaError> {
    let header = request.header;
    let layout = header
        .jpeg
        .ok_or_else(|| MediaError::Invalid("JPEG header missing".into()))?;
    let eighths = jpeg_scale(header.info.width, header.info.height, request.min_size);
    if eighths == 8
        && !layout.progressive
        && layout.precision == 8
        && let Some(mut base) = jpeg_full_scale(
            bytes,
            header.info.width,
            header.info.height,
            header.icc.is_none() || request.color_profile == ColorProfile::Drop,
        )
    {
        request.deadline.check()?;
        let icc = manage_color(&mut base, header.icc.as_deref(), request.color_profile);
        return Ok(Decoded {
            base,
            icc,
            animation: None,
        });
    }
    // A progressive file at 1/8 scale needs only its DC scans.
    if eighths == 1
        && layout.progressive
        && layout.precision == 8
        && let Some(mut base) = jpeg_dc::decode_eighth(
            bytes,
            header.icc.is_none() || request.color_profile == ColorProfile::Drop,
            &request.deadline,
        )?
    {
        let icc = manage_color(&mut base, header.icc.as_deref(), request.color_profile);
        return Ok(Decoded {
            base,
            icc,
            animation: None,
        });
    }
    let budget = decoder_memory_budget(request.limits);
    let (pixels, info) = if layout.progressive {
        let owned = bytes.to_vec();
        run_until(request.deadline, move || {
            jpeg_decode_pixels(&owned, eighths, budget)
        })??
    } else {
        jpeg_decode_pixels(bytes, eighths, budget)?
    };
    request.deadline.check()?;

    let (width, height) = (u32::from(info.width), u32::from(info.height));
    let expected = width as usize * height as usize * info.pixel_format.pixel_bytes();
    if pixels.len() != expected {
        return Err(MediaError::Invalid(
            "JPEG decoder returned a short buffer".into(),
        ));
    }
    let icc = header.icc.as_deref();
    let (base, icc) = match info.pixel_format {
        jpeg_decoder::PixelFormat::L8 => {
            let mut raster = Raster::new(width, height, Channels::Gray, pixels);
            let outcome = manage_color(&mut raster, icc, request.color_profile);
            (raster, outcome)
        }
        jpeg_decoder::PixelFormat::L16 => {
            // Samples are native-endian and hold `precision` significant bits.
            let shift = u32::from(layout.precision.clamp(8, 16) - 8);
            let gray = pixels
                .chunks_exact(2)
                .map(|s| u8::try_from(u16::from_ne_bytes([s[0], s[1]]) >> shift).unwrap_or(u8::MAX))
                .collect();
            let mut raster = Raster::new(width, height, Channels::Gray, gray);
            let outcome = manage_color(&mut raster, icc, request.color_profile);
            (raster, outcome)
        }
        jpeg_decoder::PixelFormat::RGB24 => {
            let mut raster = Raster::new(width, height, Channels::Rgb, pixels);
            let outcome = manage_color(&mut raster, icc, request.color_profile);
            (raster, outcome)
        }
        jpeg_decoder::PixelFormat::CMYK32 => {
            let profile = match request.color_profile {
                ColorProfile::ConvertToSrgb => icc,
                ColorProfile::Drop => None,
            };
            let (raster, outcome) = color::cmyk_to_rgb(width, height, &pixels, profile);
            (raster, outcome.or(icc.map(|_| IccOutcome::Dropped)))
        }
    };
    Ok(Decoded {
        base,
        icc,
        animation: None,
    })
}

/// Decodes a baseline 8-bit YCbCr or grayscale JPEG at full scale with `zune-jpeg`, which
/// is about twice as fast as `jpeg-decoder` and converts colours straight into the output
/// (no full-size planes next to it). `None` for anything else — other colour models,
/// anything its strict mode rejects — which then goes to `jpeg-decoder`, the reference
/// for every JPEG feature and error.
///
/// With `keep_ycbcr` (no colour profile is to be applied), colour comes out as YCbCr,
/// the JPEG's own samples: converting them to RGB and back for JPEG outputs would cost
/// two passes over every pixel for nothing.
fn jpeg_full_scale(bytes: &[u8], width: u32, height: u32, keep_ycbcr: bool) -> Option<Raster> {
    use zune_jpeg::zune_core::bytestream::ZCursor;
    use zune_jpeg::zune_core::colorspace::ColorSpace;
    use zune_jpeg::zune_core::options::DecoderOptions;

    let options = |colorspace| {
        DecoderOptions::default()
            .set_strict_mode(true)
            .set_max_width(width as usize)
            .set_max_height(height as usize)
            .jpeg_set_out_colorspace(colorspace)
    };
    let mut decoder =
        zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options(ColorSpace::RGB));
    decoder.decode_headers().ok()?;
    let channels = match decoder.input_colorspace()? {
        ColorSpace::YCbCr if keep_ycbcr => {
            decoder = zune_jpeg::JpegDecoder::new_with_options(
                ZCursor::new(bytes),
                options(ColorSpace::YCbCr),
            );
            decoder.decode_headers().ok()?;
            Channels::YCbCr
        }
        ColorSpace::YCbCr => Channels::Rgb,
        ColorSpace::Luma => {
            decoder = zune_jpeg::JpegDecoder::new_with_options(
                ZCursor::new(bytes),
                options(ColorSpace::Luma),
            );
            decoder.decode_headers().ok()?;
            Channels::Gray
        }
        _ => return None,
    };
    let (w, h) = decoder.dimensions()?;
    if (w, h) != (width as usize, height as usize) {
        return None;
    }
    let len = w * h * channels.count();
    if decoder.output_buffer_size()? != len {
        return None;
    }
    let mut pixels = vec![0u8; len];
    decoder.decode_into(&mut pixels).ok()?;
    Some(Raster::new(width, height, channels, pixels))
}

/// Decodes a baseline JPEG that must be decoded at full scale straight into a resize to
/// `size`, MCU row by MCU row (see [`jpeg_strips`]), when no colour profile has to be
/// applied. `Ok(None)` when the file is not one that module decodes, or no such decode
/// applies; decode it whole instead.
pub(crate) fn jpeg_resized(
    bytes: &[u8],
    request: &Request<'_>,
    size: (u32, u32),
    resampler: &mut Resampler,
) -> Result<Option<Streamed>, MediaError> {
    let header = request.header;
    let Some(layout) = header.jpeg else {
        return Ok(None);
    };
    let full_scale = jpeg_scale(header.info.width, header.info.height, request.min_size) == 8;
    let keep_ycbcr = header.icc.is_none() || request.color_profile == ColorProfile::Drop;
    if layout.progressive || layout.precision != 8 || !full_scale || !keep_ycbcr {
        return Ok(None);
    }
    let Some(raster) = jpeg_strips::decode_resized(bytes, size, resampler, &request.deadline)?
    else {
        return Ok(None);
    };
    Ok(Some(Streamed {
        raster,
        icc: header.icc.as_ref().map(|_| IccOutcome::Dropped),
    }))
}

/// Runs `job` on its own thread and waits for it until the deadline.
fn run_until<T: Send + 'static>(
    deadline: Deadline,
    job: impl FnOnce() -> T + Send + 'static,
) -> Result<T, MediaError> {
    let (sender, receiver) = mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("airlock-media-decode".into())
        .spawn(move || {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            // The receiver is gone if the caller gave up waiting; the result is then moot.
            let _ = sender.send(outcome);
        })
        .map_err(|e| MediaError::Invalid(format!("cannot start a decoder thread: {e}")))?;
    match receiver.recv_timeout(deadline.remaining()) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(_)) => Err(MediaError::Invalid("the decoder panicked".into())),
        Err(mpsc::RecvTimeoutError::Timeout) => Err(MediaError::TimedOut(deadline.budget)),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(MediaError::Invalid(
            "the decoder thread ended without a result".into(),
        )),
    }
}

// ---------------------------------------------------------------- PNG

fn png_error(error: png::DecodingError) -> MediaError {
    match error {
        png::DecodingError::LimitsExceeded => {
            MediaError::TooLarge("PNG needs more memory than the limits allow".into())
        }
        other => MediaError::Invalid(format!("PNG: {other}")),
    }
}

/// Rows decoded between deadline checks.
const ROWS_PER_CHECK: usize = 64;

/// Starts a PNG decode: reads up to the image data and checks that the file still says
/// what the header walk read (a file may change between the two).
fn png_reader<R: BufRead + Seek>(
    source: R,
    request: &Request<'_>,
) -> Result<png::Reader<R>, MediaError> {
    let limits = png::Limits {
        bytes: decoder_memory_budget(request.limits),
    };
    let mut decoder = png::Decoder::new_with_limits(source, limits);
    // 16-bit samples come out whole and are rounded by `read_png_row`; the decoder's own
    // reduction truncates.
    decoder.set_transformations(png::Transformations::EXPAND);
    decoder.set_ignore_text_chunk(true);
    // The header walk has the profile already, inflated with a much smaller bound than
    // the decoder's (which is the whole memory budget).
    decoder.set_ignore_iccp_chunk(true);
    let reader = decoder.read_info().map_err(png_error)?;
    let info = reader.info();
    let expected = &request.header.info;
    if (
        info.width,
        info.height,
        info.bit_depth as u8,
        info.color_type as u8,
    ) != (
        expected.width,
        expected.height,
        expected.bit_depth,
        png_color_code(expected.color_type),
    ) {
        return Err(MediaError::Invalid(
            "PNG header changed between reads".into(),
        ));
    }
    Ok(reader)
}

/// A buffer for one row of 16-bit samples when the PNG has them (`stride` 8-bit samples
/// a row), else empty.
fn wide_row_buffer<R: BufRead + Seek>(reader: &png::Reader<R>, stride: usize) -> Vec<u8> {
    if reader.output_color_type().1 == png::BitDepth::Sixteen {
        vec![0u8; stride * 2]
    } else {
        Vec::new()
    }
}

/// Reads the next row as 8-bit samples into `row`, through `wide` when that is not empty
/// (see [`wide_row_buffer`]). False when the image data ended.
fn read_png_row<R: BufRead + Seek>(
    reader: &mut png::Reader<R>,
    wide: &mut [u8],
    row: &mut [u8],
) -> Result<bool, MediaError> {
    if wide.is_empty() {
        return Ok(reader.read_row(row).map_err(png_error)?.is_some());
    }
    if reader.read_row(wide).map_err(png_error)?.is_none() {
        return Ok(false);
    }
    narrow_16(wide, row);
    Ok(true)
}

/// Big-endian 16-bit samples to the nearest 8-bit value, `round(v * 255 / 65535)`.
fn narrow_16(wide: &[u8], out: &mut [u8]) {
    for (out, sample) in out.iter_mut().zip(wide.chunks_exact(2)) {
        let value = u32::from(u16::from_be_bytes([sample[0], sample[1]]));
        *out = u8::try_from((value * 255 + 32_767) / 65_535).unwrap_or(u8::MAX);
    }
}

/// The IHDR colour type behind a [`crate::ImageInfo::color_type`] name.
fn png_color_code(name: &str) -> u8 {
    match name {
        "gray" => 0,
        "rgb" => 2,
        "palette" => 3,
        "gray-alpha" => 4,
        _ => 6,
    }
}

/// Decodes a whole PNG from a reader (a file): [`decode`] of its bytes.
pub(crate) fn png_from<R: BufRead + Seek>(
    source: R,
    request: &Request<'_>,
) -> Result<Decoded, MediaError> {
    let decoded = png(source, request)?;
    request.deadline.check()?;
    Ok(decoded)
}

fn png<R: BufRead + Seek>(source: R, request: &Request<'_>) -> Result<Decoded, MediaError> {
    let mut reader = png_reader(source, request)?;
    let info = reader.info();
    let (width, height) = (info.width, info.height);
    let icc = request.header.icc.clone();
    let interlaced = info.interlaced;
    let samples = match reader.output_color_type().0 {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Indexed => {
            return Err(MediaError::Invalid("PNG palette was not expanded".into()));
        }
    };
    let stride = width as usize * samples;
    let mut wide = wide_row_buffer(&reader, stride);
    let mut pixels = vec![0u8; stride * height as usize];
    if interlaced {
        let bits_per_pixel = u8::try_from(samples * 8).unwrap_or(32);
        let mut rows = 0usize;
        let mut narrowed = Vec::new();
        while let Some(row) = reader.next_interlaced_row().map_err(png_error)? {
            if let png::InterlaceInfo::Adam7(pass) = row.interlace() {
                let data = if wide.is_empty() {
                    row.data()
                } else {
                    narrowed.resize(row.data().len() / 2, 0);
                    narrow_16(row.data(), &mut narrowed);
                    &narrowed
                };
                png::expand_interlaced_row(&mut pixels, stride, data, pass, bits_per_pixel);
            }
            rows += 1;
            if rows.is_multiple_of(ROWS_PER_CHECK) {
                request.deadline.check()?;
            }
        }
    } else {
        for (index, row) in pixels.chunks_exact_mut(stride).enumerate() {
            if index.is_multiple_of(ROWS_PER_CHECK) {
                request.deadline.check()?;
            }
            if !read_png_row(&mut reader, &mut wide, row)? {
                return Err(MediaError::Invalid("PNG image data ends early".into()));
            }
        }
    }

    let mut base = match samples {
        1 => Raster::new(width, height, Channels::Gray, pixels),
        2 => Raster::new(
            width,
            height,
            Channels::Rgba,
            raster::gray_alpha_to_rgba(&pixels),
        ),
        3 => Raster::new(width, height, Channels::Rgb, pixels),
        _ => Raster::new(width, height, Channels::Rgba, pixels),
    };
    if icc.is_none()
        && request.color_profile == ColorProfile::ConvertToSrgb
        && let Some(gamma) = PngGamma::new(&request.header.png_color)
    {
        gamma.apply_samples(&mut base.pixels, base.channels);
    }
    let icc = manage_color(&mut base, icc.as_deref(), request.color_profile);
    Ok(Decoded {
        base,
        icc,
        animation: None,
    })
}

/// A decode straight into a resize: the decoded image, never held whole.
#[derive(Debug)]
pub(crate) struct Streamed {
    /// The resized image, in stored orientation, colours already managed.
    pub raster: Raster,
    /// What became of an embedded ICC profile (`None`: there was none).
    pub icc: Option<IccOutcome>,
}

/// Decodes a non-interlaced PNG row by row into a resize to `size`, so only a window of
/// source rows is ever in memory. `Ok(None)` when the image cannot be streamed (Adam7
/// interlacing delivers rows out of order); decode it whole instead.
pub(crate) fn png_resized(
    bytes: &[u8],
    request: &Request<'_>,
    size: (u32, u32),
    resampler: &mut Resampler,
) -> Result<Option<Streamed>, MediaError> {
    png_resized_from(Cursor::new(bytes), request, size, resampler)
}

/// [`png_resized`] reading from a reader (a file).
pub(crate) fn png_resized_from<R: BufRead + Seek>(
    source: R,
    request: &Request<'_>,
    size: (u32, u32),
    resampler: &mut Resampler,
) -> Result<Option<Streamed>, MediaError> {
    let mut reader = png_reader(source, request)?;
    let info = reader.info();
    if info.interlaced {
        return Ok(None);
    }
    let (width, height) = (info.width, info.height);
    let icc = request.header.icc.clone();
    let (samples, channels) = match reader.output_color_type().0 {
        png::ColorType::Grayscale => (1, Channels::Gray),
        png::ColorType::GrayscaleAlpha => (2, Channels::Rgba),
        png::ColorType::Rgb => (3, Channels::Rgb),
        png::ColorType::Rgba => (4, Channels::Rgba),
        png::ColorType::Indexed => {
            return Err(MediaError::Invalid("PNG palette was not expanded".into()));
        }
    };
    let transform = match (request.color_profile, &icc) {
        (ColorProfile::ConvertToSrgb, Some(icc)) => SrgbTransform::new(icc, channels),
        _ => None,
    };
    let mut converted = transform.is_some();
    // Without a profile, `gAMA` and `cHRM` say what the samples mean.
    let gamma = match (request.color_profile, &icc) {
        (ColorProfile::ConvertToSrgb, None) => PngGamma::new(&request.header.png_color),
        _ => None,
    };
    let mut resizer = RowResizer::new(resampler, (width, height), channels, size.0, size.1);
    let mut raw_row = vec![0u8; width as usize * samples];
    let mut wide = wide_row_buffer(&reader, raw_row.len());
    let mut expanded = Vec::new();
    for index in 0..height as usize {
        if index.is_multiple_of(ROWS_PER_CHECK) {
            request.deadline.check()?;
        }
        if !read_png_row(&mut reader, &mut wide, &mut raw_row)? {
            return Err(MediaError::Invalid("PNG image data ends early".into()));
        }
        let row = if samples == 2 {
            expanded.clear();
            expanded.extend(
                raw_row
                    .chunks_exact(2)
                    .flat_map(|p| [p[0], p[0], p[0], p[1]]),
            );
            &mut expanded
        } else {
            &mut raw_row
        };
        if let Some(transform) = &transform {
            converted &= transform.apply_samples(row, width as usize);
        }
        if let Some(gamma) = &gamma {
            gamma.apply_samples(row, channels);
        }
        resizer.push_row(row)?;
    }
    let icc = icc.map(|_| {
        if converted {
            IccOutcome::Converted
        } else {
            IccOutcome::Dropped
        }
    });
    Ok(Some(Streamed {
        raster: resizer.finish()?,
        icc,
    }))
}

// ---------------------------------------------------------------- GIF

fn gif_error(error: gif::DecodingError) -> MediaError {
    match error {
        gif::DecodingError::MemoryLimit | gif::DecodingError::OutOfMemory => {
            MediaError::TooLarge("GIF frame needs more memory than the limits allow".into())
        }
        other => MediaError::Invalid(format!("GIF: {other}")),
    }
}

fn gif(bytes: &[u8], request: &Request<'_>) -> Result<Decoded, MediaError> {
    let limits = request.limits;
    let mut options = gif::DecodeOptions::new();
    options.set_color_output(gif::ColorOutput::Indexed);
    options.set_memory_limit(gif::MemoryLimit::Bytes(
        NonZeroU64::new(limits.max_pixels).unwrap_or(NonZeroU64::MIN),
    ));
    let mut decoder = options.read_info(bytes).map_err(gif_error)?;
    let (canvas_w, canvas_h) = (decoder.width(), decoder.height());

    let (transform, icc_outcome) = palette_transform(decoder.icc_profile(), request);
    // Palettes are colours, so converting them converts the whole image.
    let convert_palette = |palette: &[u8]| -> Vec<u8> {
        let mut palette = palette.to_vec();
        if let Some(transform) = &transform {
            let colours = palette.len() / 3;
            transform.apply_samples(&mut palette, colours);
        }
        palette
    };
    let global_palette = decoder.global_palette().map(&convert_palette);
    let animated = request.header.info.frame_count > 1;

    let mut encoder = if request.transcode {
        let mut encoder = gif::Encoder::new(
            Vec::new(),
            canvas_w,
            canvas_h,
            global_palette.as_deref().unwrap_or(&[]),
        )
        .map_err(|e| MediaError::Invalid(format!("GIF encoding failed: {e}")))?;
        if animated {
            encoder
                .set_repeat(decoder.repeat())
                .map_err(|e| MediaError::Invalid(format!("GIF encoding failed: {e}")))?;
        }
        Some(encoder)
    } else {
        None
    };

    let mut base = None;
    let mut frames = 0u32;
    let mut frame_pixels = 0u64;
    while let Some(frame) = decoder.read_next_frame().map_err(gif_error)? {
        frames += 1;
        frame_pixels += u64::from(frame.width) * u64::from(frame.height);
        if frames > limits.max_frames || frame_pixels > limits.max_animation_pixels {
            return Err(MediaError::TooLarge(
                "GIF animation exceeds the limits".into(),
            ));
        }
        request.deadline.check()?;
        let local_palette = frame.palette.as_deref().map(&convert_palette);
        let palette = local_palette
            .as_deref()
            .or(global_palette.as_deref())
            .ok_or_else(|| MediaError::Invalid("GIF frame has no colour table".into()))?;
        if base.is_none() {
            base = Some(compose_gif_frame(frame, palette, canvas_w, canvas_h));
        }
        let Some(encoder) = encoder.as_mut() else {
            break;
        };
        // Copy only what draws the frame; extensions, comments and trailing bytes are gone.
        let clean = gif::Frame {
            delay: frame.delay,
            dispose: frame.dispose,
            transparent: frame.transparent,
            needs_user_input: false,
            top: frame.top,
            left: frame.left,
            width: frame.width,
            height: frame.height,
            interlaced: false,
            palette: frame_palette(local_palette, global_palette.as_deref(), frame.transparent),
            buffer: Cow::Borrowed(&frame.buffer),
        };
        encoder
            .write_frame(&clean)
            .map_err(|e| MediaError::Invalid(format!("GIF encoding failed: {e}")))?;
        check_gif_growth(encoder.get_ref(), limits)?;
    }
    let base = base.ok_or_else(|| MediaError::Invalid("GIF has no frames".into()))?;
    let animation = encoder
        .map(|encoder| {
            encoder
                .into_inner()
                .map_err(|e| MediaError::Invalid(format!("GIF encoding failed: {e}")))
        })
        .transpose()?;
    Ok(Decoded {
        base,
        icc: icc_outcome,
        animation,
    })
}

/// The transform a GIF's palettes go through, and what that makes of its profile.
fn palette_transform(
    icc: Option<&[u8]>,
    request: &Request<'_>,
) -> (Option<SrgbTransform>, Option<IccOutcome>) {
    let transform = match (request.color_profile, icc) {
        (ColorProfile::ConvertToSrgb, Some(icc)) => SrgbTransform::new(icc, Channels::Rgb),
        _ => None,
    };
    let outcome = icc.map(|_| {
        if transform.is_some() {
            IccOutcome::Converted
        } else {
            IccOutcome::Dropped
        }
    });
    (transform, outcome)
}

/// The palette a re-encoded GIF frame carries: its own, with the colour of its transparent
/// index zeroed (never shown, it could only carry hidden data). A frame drawn with the
/// global palette gets a copy with that entry zeroed, unless it is black already.
fn frame_palette(
    local: Option<Vec<u8>>,
    global: Option<&[u8]>,
    transparent: Option<u8>,
) -> Option<Vec<u8>> {
    let Some(index) = transparent.map(usize::from) else {
        return local;
    };
    let entry = index * 3..index * 3 + 3;
    let mut palette = match local {
        Some(palette) => palette,
        None => match global {
            Some(global) if global.get(entry.clone()).is_some_and(|c| c != [0, 0, 0]) => {
                global.to_vec()
            }
            _ => return None,
        },
    };
    if let Some(colour) = palette.get_mut(entry) {
        colour.fill(0);
    }
    Some(palette)
}

/// The re-encoded GIF grows by about a frame's compressed size at a time; it may take half
/// the memory budget, leaving room for the buffer's reallocation.
fn check_gif_growth(written: &[u8], limits: &Limits) -> Result<(), MediaError> {
    if u64::try_from(written.len()).unwrap_or(u64::MAX) > limits.max_memory / 2 {
        return Err(MediaError::TooLarge(format!(
            "the re-encoded GIF outgrows half the {}-byte memory budget",
            limits.max_memory
        )));
    }
    Ok(())
}

/// Draws a frame onto a transparent canvas; RGB when nothing ends up transparent.
fn compose_gif_frame(
    frame: &gif::Frame<'_>,
    palette: &[u8],
    canvas_w: u16,
    canvas_h: u16,
) -> Raster {
    let (cw, ch) = (usize::from(canvas_w), usize::from(canvas_h));
    let (fw, fh) = (usize::from(frame.width), usize::from(frame.height));
    let (left, top) = (usize::from(frame.left), usize::from(frame.top));
    let mut canvas = vec![0u8; cw * ch * 4];
    for (fy, row) in frame.buffer.chunks_exact(fw.max(1)).take(fh).enumerate() {
        let y = top + fy;
        if y >= ch {
            break;
        }
        for (fx, &index) in row.iter().enumerate() {
            let x = left + fx;
            if x >= cw {
                break;
            }
            if frame.transparent == Some(index) {
                continue;
            }
            let at = usize::from(index) * 3;
            if let Some(rgb) = palette.get(at..at + 3) {
                let out = (y * cw + x) * 4;
                canvas[out..out + 3].copy_from_slice(rgb);
                canvas[out + 3] = 255;
            }
        }
    }
    let raster = Raster::new(
        u32::from(canvas_w),
        u32::from(canvas_h),
        Channels::Rgba,
        canvas,
    );
    if raster.uses_alpha() {
        raster
    } else {
        let rgb = raster
            .pixels
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect();
        Raster::new(raster.width, raster.height, Channels::Rgb, rgb)
    }
}

// ---------------------------------------------------------------- WebP

fn webp_error(error: image_webp::DecodingError) -> MediaError {
    match error {
        image_webp::DecodingError::MemoryLimitExceeded
        | image_webp::DecodingError::ImageTooLarge => {
            MediaError::TooLarge("WebP needs more memory than the limits allow".into())
        }
        other => MediaError::Invalid(format!("WebP: {other}")),
    }
}

fn webp(bytes: &[u8], request: &Request<'_>) -> Result<Decoded, MediaError> {
    let mut decoder = WebPDecoder::new(Cursor::new(bytes)).map_err(webp_error)?;
    decoder.set_memory_limit(decoder_memory_budget(request.limits));
    let (width, height) = decoder.dimensions();
    if (width, height) != (request.header.info.width, request.header.info.height) {
        return Err(MediaError::Invalid(
            "WebP header changed between reads".into(),
        ));
    }
    let size = decoder
        .output_buffer_size()
        .ok_or_else(|| MediaError::TooLarge("WebP canvas is too large".into()))?;
    let channels = if size == width as usize * height as usize * 4 {
        Channels::Rgba
    } else {
        Channels::Rgb
    };
    let icc = request.header.icc.as_deref();
    let mut pixels = vec![0u8; size];

    if !decoder.is_animated() {
        decoder.read_image(&mut pixels).map_err(webp_error)?;
        let mut base = Raster::new(width, height, channels, pixels);
        let icc = manage_color(&mut base, icc, request.color_profile);
        return Ok(Decoded {
            base,
            icc,
            animation: None,
        });
    }

    let frames = decoder.num_frames();
    if frames > request.limits.max_frames {
        return Err(MediaError::TooLarge(format!(
            "{frames} WebP frames exceed the limit"
        )));
    }
    let transform = match (request.color_profile, icc) {
        (ColorProfile::ConvertToSrgb, Some(icc)) => SrgbTransform::new(icc, channels),
        _ => None,
    };
    let icc_outcome = icc.map(|_| {
        if transform.is_some() {
            IccOutcome::Converted
        } else {
            IccOutcome::Dropped
        }
    });
    let animation = request.transcode.then(|| {
        let loop_count = match decoder.loop_count() {
            LoopCount::Forever => 0,
            LoopCount::Times(times) => times.get(),
        };
        let (w, h) = if raster::transposes(request.orientation) {
            (height, width)
        } else {
            (width, height)
        };
        // A lossy source stays lossy: stored losslessly, it would grow many times over.
        WebpAnimation::new(
            w,
            h,
            loop_count,
            request.header.webp_quality.map(|quality| quality.estimate),
            channels == Channels::Rgba,
            request.limits.max_memory / 2,
        )
    });
    let mut animation = animation.transpose()?;
    let mut base = None;
    for _ in 0..frames {
        request.deadline.check()?;
        let duration = decoder.read_frame(&mut pixels).map_err(webp_error)?;
        let mut frame = Raster::new(width, height, channels, pixels.clone());
        if let Some(transform) = &transform {
            transform.apply(&mut frame);
        }
        if let Some(animation) = animation.as_mut() {
            let upright = raster::orient(&frame, request.orientation);
            animation.push(upright.as_ref().unwrap_or(&frame), duration)?;
        }
        if base.is_none() {
            base = Some(frame);
            if animation.is_none() {
                break;
            }
        }
    }
    let base = base.ok_or_else(|| MediaError::Invalid("WebP animation has no frames".into()))?;
    Ok(Decoded {
        base,
        icc: icc_outcome,
        animation: animation.map(WebpAnimation::finish).transpose()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jpeg_scale_keeps_the_decoded_image_large_enough() {
        assert_eq!(jpeg_scale(6000, 4000, (2048, 1366)), 4);
        assert_eq!(jpeg_scale(6000, 4000, (3001, 10)), 8);
        assert_eq!(jpeg_scale(6000, 4000, (750, 500)), 1);
        assert_eq!(jpeg_scale(6000, 4000, (751, 500)), 2);
        assert_eq!(jpeg_scale(100, 100, (0, 0)), 1);
    }

    fn encoded_jpeg(width: u16, height: u16, color: jpeg_encoder::ColorType) -> Vec<u8> {
        let samples = match color {
            jpeg_encoder::ColorType::Luma => 1,
            jpeg_encoder::ColorType::Cmyk => 4,
            _ => 3,
        };
        let data: Vec<u8> = (0..usize::from(width) * usize::from(height) * samples)
            .map(|i| {
                let (x, y) = (
                    (i / samples) % usize::from(width),
                    i / samples / usize::from(width),
                );
                u8::try_from((x * 3 + y * 2 + (i % samples) * 60 + (x / 7 + y / 5) % 2 * 40) % 256)
                    .unwrap()
            })
            .collect();
        let mut out = Vec::new();
        let mut encoder = jpeg_encoder::Encoder::new(&mut out, 90);
        encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_2);
        encoder.encode(&data, width, height, color).unwrap();
        out
    }

    #[test]
    fn full_scale_fast_path_matches_the_reference_decoder() {
        for (color, keep_ycbcr, channels) in [
            (jpeg_encoder::ColorType::Rgb, false, Channels::Rgb),
            (jpeg_encoder::ColorType::Rgb, true, Channels::YCbCr),
            (jpeg_encoder::ColorType::Luma, false, Channels::Gray),
            (jpeg_encoder::ColorType::Luma, true, Channels::Gray),
        ] {
            let bytes = encoded_jpeg(203, 117, color);
            let fast = jpeg_full_scale(&bytes, 203, 117, keep_ycbcr).expect("fast path");
            assert_eq!(
                (fast.width, fast.height, fast.channels),
                (203, 117, channels)
            );
            // YCbCr samples, converted as any consumer needing RGB converts them.
            let fast = fast.to_rgb().unwrap_or(fast);
            let (reference, _) = jpeg_decode_pixels(&bytes, 8, 1 << 26).unwrap();
            assert_eq!(fast.pixels.len(), reference.len());
            let total: u64 = fast
                .pixels
                .iter()
                .zip(&reference)
                .map(|(a, b)| u64::from(a.abs_diff(*b)))
                .sum();
            let len = u64::try_from(reference.len()).unwrap();
            assert!(
                total < len,
                "{channels:?}: mean difference {total}/{len} of a level"
            );
        }
        // Other colour models, wrong sizes and damaged data go to jpeg-decoder.
        let cmyk = encoded_jpeg(40, 30, jpeg_encoder::ColorType::Cmyk);
        assert!(jpeg_full_scale(&cmyk, 40, 30, true).is_none());
        let rgb = encoded_jpeg(40, 30, jpeg_encoder::ColorType::Rgb);
        assert!(jpeg_full_scale(&rgb, 41, 30, true).is_none());
        assert!(jpeg_full_scale(&rgb[..rgb.len() / 2], 40, 30, true).is_none());
    }

    #[test]
    fn deadline_reports_its_budget() {
        let deadline = Deadline::new(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(1));
        assert_eq!(deadline.check(), Err(MediaError::TimedOut(Duration::ZERO)));
        let slow = run_until(deadline, || std::thread::sleep(Duration::from_millis(200)));
        assert_eq!(slow, Err(MediaError::TimedOut(Duration::ZERO)));
    }

    #[test]
    fn worker_panics_become_errors() {
        let deadline = Deadline::new(Duration::from_secs(5));
        let outcome: Result<(), _> = run_until(deadline, || panic!("decoder bug"));
        assert!(matches!(outcome, Err(MediaError::Invalid(_))));
    }
}
