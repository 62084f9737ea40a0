//! Header-only parsing: the format, dimensions, frame count and embedded metadata of an
//! image, read by walking its container structure without decoding any pixel data.
//!
//! Every limit is checked against what these walkers find, so a file declaring a huge
//! canvas or thousands of frames is refused before a decoder allocates anything.

use std::borrow::Cow;
use std::io::{self, Read, Seek, SeekFrom};

use crate::color::MAX_ICC_BYTES;
use crate::exif::MAX_EXIF_BYTES;
use crate::vp8;
use crate::{Limits, MediaError};

/// The input formats this crate decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageFormat {
    /// JPEG/JFIF/EXIF (baseline, extended, progressive, lossless Huffman-coded).
    Jpeg,
    /// PNG (APNG files decode as their default image).
    Png,
    /// GIF87a/GIF89a, static or animated.
    Gif,
    /// WebP: lossy, lossless, with alpha, animated.
    WebP,
}

impl ImageFormat {
    /// Lower-case name, as reported in [`crate::ImageMetadata::format`].
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Jpeg => "jpeg",
            Self::Png => "png",
            Self::Gif => "gif",
            Self::WebP => "webp",
        }
    }
}

/// What a header says about an image, without decoding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// Container format.
    pub format: ImageFormat,
    /// Width as stored, before any EXIF orientation.
    pub width: u32,
    /// Height as stored, before any EXIF orientation.
    pub height: u32,
    /// Frames in the file (1 for a still image).
    pub frame_count: u32,
    /// The file is an animation (more than one frame, or declared as animated).
    pub animated: bool,
    /// The image may have transparent pixels.
    pub has_alpha: bool,
    /// Colour model as stored: `gray`, `gray-alpha`, `rgb`, `rgba`, `palette`, `ycbcr`,
    /// `cmyk` or `ycck`.
    pub color_type: &'static str,
    /// Bits per sample as stored.
    pub bit_depth: u8,
}

/// JPEG facts the decoder choice depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct JpegLayout {
    pub progressive: bool,
    pub precision: u8,
}

/// Everything learned from the header walk.
#[derive(Debug, Clone)]
pub(crate) struct Header<'a> {
    pub info: ImageInfo,
    /// Raw TIFF structure of the EXIF block, if any: borrowed from the bytes read, or
    /// copied out of a file.
    pub exif: Option<Cow<'a, [u8]>>,
    /// Embedded ICC profile (JPEG, PNG, WebP; a GIF's is read by its decoder), at most
    /// [`MAX_ICC_BYTES`]. A larger one, or a PNG profile that inflates past that, is
    /// kept as an empty profile: reported as dropped, never copied or parsed.
    pub icc: Option<Vec<u8>>,
    pub jpeg: Option<JpegLayout>,
    /// Largest single frame, in pixels.
    pub largest_frame_pixels: u64,
    /// Sum of the frame areas of an animation.
    pub total_frame_pixels: u64,
    /// A WebP with lossy (VP8) frames: the libwebp quality estimated from their
    /// quantizers (see the `vp8` module), averaged over the lossy frames. `None` for a
    /// lossless WebP and every other format.
    pub webp_quality: Option<WebpQuality>,
    /// A PNG's colour chunks other than `iCCP`.
    pub png_color: PngColor,
}

/// How a lossy WebP was compressed, as libwebp qualities (see the `vp8` module).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WebpQuality {
    /// The quality to re-encode at.
    pub estimate: u8,
    /// From the coarsest segment's quantizer: at most `estimate`, the fallback when
    /// re-encoding at `estimate` would grow the file.
    pub coarsest: u8,
}

/// What a PNG says about its colours besides an ICC profile: the `gAMA`, `cHRM` and
/// `sRGB` chunks before its image data (the first of each, as decoders use them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PngColor {
    /// `gAMA`: the encoding gamma times 100000 (45455 for 1/2.2).
    pub gamma: Option<u32>,
    /// `cHRM`: white x, y, red x, y, green x, y, blue x, y, each times 100000.
    pub chromaticities: Option<[u32; 8]>,
    /// An `sRGB` chunk: the pixels are sRGB whatever `gAMA` and `cHRM` say.
    pub srgb: bool,
}

/// Most scans a progressive JPEG may have. Real encoders use about ten; each scan costs a
/// pass over the coefficients, so thousands of tiny scans are a denial-of-service pattern.
const MAX_PROGRESSIVE_SCANS: u32 = 256;

/// Identifies the format and walks its header.
pub(crate) fn read(bytes: &[u8]) -> Result<Header<'_>, MediaError> {
    match sniff(bytes)? {
        ImageFormat::Jpeg => jpeg(bytes),
        ImageFormat::Png => png(bytes),
        ImageFormat::Gif => gif(bytes),
        ImageFormat::WebP => webp(bytes),
    }
}

/// Refuses an image whose header exceeds a limit. Runs before any decoder is built.
pub(crate) fn check_limits(header: &Header<'_>, limits: &Limits) -> Result<(), MediaError> {
    let info = &header.info;
    if info.width > limits.max_width || info.height > limits.max_height {
        return Err(MediaError::TooLarge(format!(
            "{}x{} exceeds the {}x{} limit",
            info.width, info.height, limits.max_width, limits.max_height
        )));
    }
    let pixels = u64::from(info.width) * u64::from(info.height);
    if pixels > limits.max_pixels || header.largest_frame_pixels > limits.max_pixels {
        return Err(MediaError::TooLarge(format!(
            "{} pixels exceed the {} pixel limit",
            pixels.max(header.largest_frame_pixels),
            limits.max_pixels
        )));
    }
    // Every decode holds the image at up to four bytes a pixel, in the budget.
    let decoded = pixels.max(header.largest_frame_pixels).saturating_mul(4);
    if decoded > limits.max_memory {
        return Err(MediaError::TooLarge(format!(
            "{decoded} bytes of decoded pixels exceed the {}-byte memory budget",
            limits.max_memory
        )));
    }
    if info.frame_count > limits.max_frames {
        return Err(MediaError::TooLarge(format!(
            "{} frames exceed the {} frame limit",
            info.frame_count, limits.max_frames
        )));
    }
    if header.total_frame_pixels > limits.max_animation_pixels {
        return Err(MediaError::TooLarge(format!(
            "the animation's {} pixels exceed the {} pixel limit",
            header.total_frame_pixels, limits.max_animation_pixels
        )));
    }
    Ok(())
}

fn sniff(bytes: &[u8]) -> Result<ImageFormat, MediaError> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Ok(ImageFormat::Jpeg);
    }
    if bytes.starts_with(PNG_SIGNATURE) {
        return Ok(ImageFormat::Png);
    }
    if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        return Ok(ImageFormat::Gif);
    }
    if bytes.len() >= 12 && bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WEBP" {
        return Ok(ImageFormat::WebP);
    }
    Err(MediaError::Unsupported(
        describe_unsupported(bytes).to_owned(),
    ))
}

/// Names a refused format, for the error message only.
fn describe_unsupported(bytes: &[u8]) -> &'static str {
    let text_start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace() && *b != 0xEF && *b != 0xBB && *b != 0xBF)
        .map_or(&[][..], |i| &bytes[i..]);
    let starts_text = |prefix: &str| {
        text_start.len() >= prefix.len()
            && text_start[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
    };
    if bytes.starts_with(b"II*\0") || bytes.starts_with(b"MM\0*") {
        "TIFF is not accepted"
    } else if bytes.starts_with(b"BM") {
        "BMP is not accepted"
    } else if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
        "HEIF/AVIF/ISO-BMFF files are not accepted"
    } else if starts_text("<svg") || starts_text("<?xml") || starts_text("<!doctype svg") {
        "SVG/XML is never rasterized"
    } else if bytes.starts_with(&[0, 0, 1, 0]) {
        "ICO is not accepted"
    } else if bytes.starts_with(b"%PDF") {
        "PDF is not accepted"
    } else if bytes.starts_with(b"8BPS") {
        "PSD is not accepted"
    } else {
        "not a JPEG, PNG, GIF or WebP image"
    }
}

fn truncated(what: &str) -> MediaError {
    MediaError::Invalid(format!("truncated {what}"))
}

fn be16(bytes: &[u8], at: usize) -> Option<u16> {
    bytes
        .get(at..at + 2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
}

fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    bytes
        .get(at..at + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn le16(bytes: &[u8], at: usize) -> Option<u16> {
    bytes
        .get(at..at + 2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
}

fn le24(bytes: &[u8], at: usize) -> Option<u32> {
    bytes
        .get(at..at + 3)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], 0]))
}

fn le32(bytes: &[u8], at: usize) -> Option<u32> {
    bytes
        .get(at..at + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

// ---------------------------------------------------------------- JPEG

struct JpegFrame {
    marker: u8,
    precision: u8,
    width: u16,
    height: u16,
    components: u8,
    component_ids: [u8; 4],
}

/// What the JPEG marker walk has collected so far.
#[derive(Default)]
struct JpegWalk<'a> {
    frame: Option<JpegFrame>,
    scans: u32,
    exif: Option<&'a [u8]>,
    icc_chunks: Vec<(u8, u8, &'a [u8])>,
    /// More APP2 profile segments than one profile can have (255).
    icc_overflow: bool,
    adobe_transform: Option<u8>,
    jfif: bool,
}

impl<'a> JpegWalk<'a> {
    /// Takes in one marker segment (for SOS: its header; the caller skips the data).
    fn segment(&mut self, marker: u8, body: &'a [u8]) -> Result<(), MediaError> {
        match marker {
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                if self.frame.is_some() {
                    return Err(MediaError::Unsupported(
                        "hierarchical JPEG (several frames)".into(),
                    ));
                }
                self.frame = Some(jpeg_frame(marker, body)?);
            }
            0xDA => {
                let Some(frame) = &self.frame else {
                    return Err(MediaError::Invalid(
                        "JPEG scan before its frame header".into(),
                    ));
                };
                self.scans += 1;
                let limit = if frame.marker == 0xC2 {
                    MAX_PROGRESSIVE_SCANS
                } else {
                    u32::from(frame.components)
                };
                if self.scans > limit {
                    return Err(MediaError::Invalid(format!(
                        "JPEG has more than {limit} scans"
                    )));
                }
            }
            0xE0 if body.starts_with(b"JFIF\0") => self.jfif = true,
            0xE1 if self.exif.is_none() && body.starts_with(b"Exif\0\0") => {
                self.exif = Some(&body[6..]);
            }
            0xE2 if body.len() > 14 && body.starts_with(b"ICC_PROFILE\0") => {
                if self.icc_chunks.len() < 255 {
                    self.icc_chunks.push((body[12], body[13], &body[14..]));
                } else {
                    self.icc_overflow = true;
                }
            }
            0xEE if body.len() >= 12 && body.starts_with(b"Adobe") => {
                self.adobe_transform = Some(body[11]);
            }
            _ => {}
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Header<'a>, MediaError> {
        let frame = self
            .frame
            .ok_or_else(|| MediaError::Invalid("JPEG has no frame header".into()))?;
        if self.scans == 0 {
            return Err(MediaError::Invalid("JPEG has no image data".into()));
        }
        let color_type = match frame.components {
            1 => "gray",
            3 if self.adobe_transform == Some(0)
                || (!self.jfif && frame.component_ids[..3] == *b"RGB") =>
            {
                "rgb"
            }
            3 => "ycbcr",
            _ if self.adobe_transform == Some(2) => "ycck",
            _ => "cmyk",
        };
        let pixels = u64::from(frame.width) * u64::from(frame.height);
        Ok(Header {
            info: ImageInfo {
                format: ImageFormat::Jpeg,
                width: u32::from(frame.width),
                height: u32::from(frame.height),
                frame_count: 1,
                animated: false,
                has_alpha: false,
                color_type,
                bit_depth: frame.precision,
            },
            exif: self.exif.map(Cow::Borrowed),
            icc: if self.icc_overflow {
                None
            } else {
                assemble_icc(&mut self.icc_chunks)
            },
            jpeg: Some(JpegLayout {
                progressive: frame.marker == 0xC2,
                precision: frame.precision,
            }),
            largest_frame_pixels: pixels,
            total_frame_pixels: pixels,
            webp_quality: None,
            png_color: PngColor::default(),
        })
    }
}

fn jpeg(bytes: &[u8]) -> Result<Header<'_>, MediaError> {
    let mut walk = JpegWalk::default();
    let mut pos = 2;
    while pos < bytes.len() {
        // Markers start with 0xFF; tolerate stray bytes before one, as libjpeg does.
        let Some(skip) = memchr::memchr(0xFF, &bytes[pos..]) else {
            break;
        };
        pos += skip;
        while bytes.get(pos) == Some(&0xFF) {
            pos += 1;
        }
        let Some(&marker) = bytes.get(pos) else {
            break;
        };
        pos += 1;
        match marker {
            0xD9 => break,
            0x00 | 0x01 | 0xD0..=0xD8 => continue,
            _ => {}
        }
        let Some(length) = be16(bytes, pos) else {
            return Err(truncated("JPEG marker segment"));
        };
        let length = usize::from(length);
        if length < 2 {
            return Err(MediaError::Invalid(format!(
                "JPEG marker 0x{marker:02X} has length {length}"
            )));
        }
        let body = bytes
            .get(pos + 2..pos + length)
            .ok_or_else(|| truncated("JPEG marker segment"))?;
        pos += length;
        walk.segment(marker, body)?;
        if marker == 0xDA {
            pos = skip_entropy_coded_data(bytes, pos);
        }
    }
    walk.finish()
}

fn jpeg_frame(marker: u8, body: &[u8]) -> Result<JpegFrame, MediaError> {
    match marker {
        0xC0..=0xC3 => {}
        0xC5..=0xC7 => return Err(MediaError::Unsupported("hierarchical JPEG".into())),
        _ => return Err(MediaError::Unsupported("arithmetic-coded JPEG".into())),
    }
    if body.len() < 6 {
        return Err(truncated("JPEG frame header"));
    }
    let precision = body[0];
    let height = be16(body, 1).unwrap_or(0);
    let width = be16(body, 3).unwrap_or(0);
    let components = body[5];
    if height == 0 {
        return Err(MediaError::Unsupported(
            "JPEG whose height is set later by a DNL marker".into(),
        ));
    }
    if width == 0 {
        return Err(MediaError::Invalid("JPEG width is zero".into()));
    }
    if !matches!(components, 1 | 3 | 4) {
        return Err(MediaError::Unsupported(format!(
            "JPEG with {components} colour components"
        )));
    }
    if body.len() < 6 + 3 * usize::from(components) {
        return Err(truncated("JPEG frame header"));
    }
    // More than 8 bits a sample is only lossless (anything else is refused by the decoder
    // as unsupported too), and its decoder gives such samples for grayscale alone.
    if precision != 8 && components != 1 {
        return Err(MediaError::Unsupported(format!(
            "{precision}-bit JPEG with {components} colour components"
        )));
    }
    let mut component_ids = [0; 4];
    for (i, id) in component_ids
        .iter_mut()
        .enumerate()
        .take(usize::from(components))
    {
        *id = body[6 + 3 * i];
    }
    Ok(JpegFrame {
        marker,
        precision,
        width,
        height,
        components,
        component_ids,
    })
}

/// Skips a scan's entropy-coded bytes: returns the position of the next real marker
/// (0xFF not followed by a stuffed zero, a restart marker or fill).
pub(crate) fn skip_entropy_coded_data(bytes: &[u8], mut pos: usize) -> usize {
    loop {
        let Some(skip) = memchr::memchr(0xFF, &bytes[pos..]) else {
            return bytes.len();
        };
        pos += skip;
        match bytes.get(pos + 1) {
            None => return bytes.len(),
            Some(0x00 | 0xD0..=0xD7) => pos += 2,
            Some(0xFF) => pos += 1,
            Some(_) => return pos,
        }
    }
}

/// Reassembles an ICC profile split over APP2 segments; `None` when the set is incomplete
/// or inconsistent (the profile is then ignored, as browsers do).
fn assemble_icc(chunks: &mut [(u8, u8, &[u8])]) -> Option<Vec<u8>> {
    let total = chunks.first()?.1;
    if total == 0 || chunks.len() != usize::from(total) {
        return None;
    }
    chunks.sort_by_key(|chunk| chunk.0);
    if chunks.iter().map(|chunk| chunk.2.len()).sum::<usize>() > MAX_ICC_BYTES {
        return Some(Vec::new());
    }
    let mut profile = Vec::new();
    for (expected, (seq, count, data)) in (1..=total).zip(chunks.iter()) {
        if *seq != expected || *count != total {
            return None;
        }
        profile.extend_from_slice(data);
    }
    Some(profile)
}

// ---------------------------------------------------------------- PNG

pub(crate) const PNG_SIGNATURE: &[u8] = &[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];

/// What IHDR says.
struct Ihdr {
    width: u32,
    height: u32,
    bit_depth: u8,
    color: u8,
}

/// Reads IHDR from the start of a PNG (only `bytes[..29]` is looked at).
fn png_ihdr(bytes: &[u8]) -> Result<Ihdr, MediaError> {
    let ihdr_len = be32(bytes, 8).ok_or_else(|| truncated("PNG header"))?;
    if ihdr_len != 13 || bytes.get(12..16) != Some(b"IHDR") {
        return Err(MediaError::Invalid(
            "PNG does not start with an IHDR chunk".into(),
        ));
    }
    let ihdr = bytes.get(16..29).ok_or_else(|| truncated("PNG header"))?;
    let width = be32(ihdr, 0).unwrap_or(0);
    let height = be32(ihdr, 4).unwrap_or(0);
    let (bit_depth, color) = (ihdr[8], ihdr[9]);
    if width == 0 || height == 0 || width > 0x7FFF_FFFF || height > 0x7FFF_FFFF {
        return Err(MediaError::Invalid(format!(
            "PNG dimensions {width}x{height} are out of range"
        )));
    }
    let depth_ok = match color {
        0 => matches!(bit_depth, 1 | 2 | 4 | 8 | 16),
        3 => matches!(bit_depth, 1 | 2 | 4 | 8),
        2 | 4 | 6 => matches!(bit_depth, 8 | 16),
        _ => false,
    };
    if !depth_ok {
        return Err(MediaError::Invalid(format!(
            "PNG colour type {color} with bit depth {bit_depth}"
        )));
    }
    Ok(Ihdr {
        width,
        height,
        bit_depth,
        color,
    })
}

/// What the PNG chunk walk collects: the animation control, transparency, EXIF and the
/// compressed ICC profile.
struct PngChunks<'a> {
    frame_count: u32,
    animated: bool,
    transparency: bool,
    exif: Option<Cow<'a, [u8]>>,
    /// The first `iCCP` before the image data, as stored (name, method, zlib stream);
    /// `Some(empty)` when it is larger than any profile we use.
    iccp: Option<Cow<'a, [u8]>>,
    color: PngColor,
    seen_idat: bool,
}

impl<'a> PngChunks<'a> {
    fn new() -> Self {
        Self {
            frame_count: 1,
            animated: false,
            transparency: false,
            exif: None,
            iccp: None,
            color: PngColor::default(),
            seen_idat: false,
        }
    }

    /// How many leading bytes of a chunk's data [`Self::chunk`] looks at; a walk over a
    /// file reads only those.
    fn wanted(&self, kind: &[u8], length: u32) -> u32 {
        match kind {
            b"acTL" if length >= 8 => 4,
            // Only the part of the block the EXIF reader looks at.
            b"eXIf" if self.exif.is_none() => {
                length.min(u32::try_from(MAX_EXIF_BYTES).unwrap_or(u32::MAX))
            }
            b"iCCP" if self.wants_iccp() && length as usize <= MAX_ICC_BYTES => length,
            b"gAMA" | b"cHRM" if !self.seen_idat => length.min(32),
            _ => 0,
        }
    }

    /// Takes in one complete chunk of `length` bytes, given (at least) the [`Self::wanted`]
    /// bytes of its data. Returns false at IEND.
    fn chunk(&mut self, kind: &[u8], length: u32, data: Cow<'a, [u8]>) -> bool {
        match kind {
            b"acTL" if length >= 8 => {
                self.frame_count = be32(&data, 0).unwrap_or(1).max(1);
                self.animated = self.frame_count > 1;
            }
            b"tRNS" => self.transparency = true,
            b"eXIf" if self.exif.is_none() => self.exif = Some(data),
            b"iCCP" if self.wants_iccp() && length > 0 => {
                // A stored profile is never smaller than its compressed form.
                self.iccp = Some(if length as usize <= MAX_ICC_BYTES {
                    data
                } else {
                    Cow::Borrowed(&[])
                });
            }
            b"gAMA" if !self.seen_idat && self.color.gamma.is_none() && length == 4 => {
                self.color.gamma = be32(&data, 0).filter(|&gamma| gamma > 0);
            }
            b"cHRM" if !self.seen_idat && self.color.chromaticities.is_none() && length == 32 => {
                let mut values = [0u32; 8];
                for (i, value) in values.iter_mut().enumerate() {
                    *value = be32(&data, i * 4).unwrap_or(0);
                }
                self.color.chromaticities = Some(values);
            }
            b"sRGB" if !self.seen_idat => self.color.srgb = true,
            b"IDAT" => self.seen_idat = true,
            b"IEND" => return false,
            _ => {}
        }
        true
    }

    /// The decoder uses the first `iCCP` before the image data and no other.
    fn wants_iccp(&self) -> bool {
        self.iccp.is_none() && !self.seen_idat
    }

    fn finish(self, ihdr: &Ihdr) -> Header<'a> {
        let icc = self.iccp.as_deref().and_then(inflate_iccp);
        let Ihdr {
            width,
            height,
            bit_depth,
            color,
        } = *ihdr;
        let pixels = u64::from(width) * u64::from(height);
        Header {
            info: ImageInfo {
                format: ImageFormat::Png,
                width,
                height,
                frame_count: self.frame_count,
                animated: self.animated,
                has_alpha: matches!(color, 4 | 6) || self.transparency,
                color_type: match color {
                    0 => "gray",
                    2 => "rgb",
                    3 => "palette",
                    4 => "gray-alpha",
                    _ => "rgba",
                },
                bit_depth,
            },
            exif: self.exif,
            icc,
            jpeg: None,
            largest_frame_pixels: pixels,
            // Only the default image is decoded (APNG frames are not), so it alone counts.
            total_frame_pixels: pixels,
            webp_quality: None,
            png_color: self.color,
        }
    }
}

/// The profile in an `iCCP` chunk's data: inflated with a bound of [`MAX_ICC_BYTES`]
/// (a zlib bomb stops there), empty when larger, `None` when the chunk is malformed (the
/// decoder ignores such a chunk too).
fn inflate_iccp(data: &[u8]) -> Option<Vec<u8>> {
    if data.is_empty() {
        return Some(Vec::new());
    }
    let name_end = memchr::memchr(0, &data[..data.len().min(80)])?;
    if name_end == 0 || data.get(name_end + 1) != Some(&0) {
        return None;
    }
    match fdeflate::decompress_to_vec_bounded(&data[name_end + 2..], MAX_ICC_BYTES) {
        Ok(profile) => Some(profile),
        Err(fdeflate::BoundedDecompressionError::OutputTooLarge { .. }) => Some(Vec::new()),
        Err(fdeflate::BoundedDecompressionError::DecompressionError { .. }) => None,
    }
}

fn png(bytes: &[u8]) -> Result<Header<'_>, MediaError> {
    let ihdr = png_ihdr(bytes)?;
    let mut chunks = PngChunks::new();
    // Walk the chunk list (lengths only) for the animation control, transparency and EXIF.
    let mut pos = 8;
    while let (Some(length), Some(kind)) = (be32(bytes, pos), bytes.get(pos + 4..pos + 8)) {
        let Some(data) = usize::try_from(length)
            .ok()
            .and_then(|length| bytes.get(pos + 8..pos + 8 + length))
        else {
            break;
        };
        if !chunks.chunk(kind, length, Cow::Borrowed(data)) {
            break;
        }
        pos += 12 + data.len();
    }
    Ok(chunks.finish(&ihdr))
}

/// Chunks a file walk reads with exact reads (two system calls each) before it switches to
/// reading through a buffer. Real PNGs have far fewer (a 100 MB file in the common 8 KiB
/// IDAT chunks has about 12,800), so they are walked without reading any image data; a
/// file of millions of tiny chunks is walked in large reads instead of millions of calls.
const EXACT_READ_CHUNKS: u32 = 32_768;

/// The buffer of a file walk past [`EXACT_READ_CHUNKS`].
const WALK_BUFFER: usize = 64 * 1024;

/// The header of a PNG read from `reader`, whose first `len` bytes are taken as the file
/// (the signature is assumed checked): what [`read`] says of the same bytes, without
/// holding them. Reads IHDR, the 8-byte header of each chunk and the data of the few
/// chunks used (`acTL`, the first `eXIf`); everything else, image data above all, is
/// seeked over unread (but see [`EXACT_READ_CHUNKS`]).
///
/// An input that ends early ends the walk exactly where the bytes would end it. A read
/// error other than that is [`MediaError::Invalid`]; callers that can tell an I/O failure
/// from a bad image keep the original error themselves.
pub(crate) fn png_from_reader<R: Read + Seek>(
    reader: &mut R,
    len: u64,
) -> Result<Header<'static>, MediaError> {
    let mut window = Window {
        reader,
        len,
        buf: Vec::new(),
        start: 0,
        read_ahead: 0,
    };
    let mut start = [0u8; 29];
    let got = window.read(0, &mut start)?;
    let ihdr = png_ihdr(&start[..got])?;
    let mut chunks = PngChunks::new();
    let mut pos = 8u64;
    for count in 0u32.. {
        if count == EXACT_READ_CHUNKS {
            window.read_ahead = WALK_BUFFER;
        }
        let mut head = [0u8; 8];
        if window.read(pos, &mut head)? < head.len() {
            break;
        }
        let length = be32(&head, 0).unwrap_or(0);
        let kind = &head[4..8];
        let end = pos + 8 + u64::from(length);
        if end > len {
            break;
        }
        let wanted = chunks.wanted(kind, length);
        let mut data = vec![0u8; usize::try_from(wanted).unwrap_or(usize::MAX)];
        if window.read(pos + 8, &mut data)? < data.len() {
            // The file ended before `len` after all: it shrank under us.
            break;
        }
        if !chunks.chunk(kind, length, Cow::Owned(data)) {
            break;
        }
        pos = end + 4;
    }
    Ok(chunks.finish(&ihdr))
}

/// Positioned reads of the first `len` bytes of a reader, exact or through a buffer.
struct Window<'r, R> {
    reader: &'r mut R,
    len: u64,
    /// Bytes from `start` on, kept from the last buffered read.
    buf: Vec<u8>,
    start: u64,
    /// Bytes a short read fetches at once (0: read exactly what is asked).
    read_ahead: usize,
}

impl<R: Read + Seek> Window<'_, R> {
    /// Fills `out` from `pos` on; returns how much was filled, short only at the end of
    /// the input.
    fn read(&mut self, pos: u64, out: &mut [u8]) -> Result<usize, MediaError> {
        let left = usize::try_from(self.len.saturating_sub(pos)).unwrap_or(usize::MAX);
        let want = out.len().min(left);
        if want == 0 {
            return Ok(0);
        }
        if let Some(offset) = pos
            .checked_sub(self.start)
            .and_then(|offset| usize::try_from(offset).ok())
            && offset.saturating_add(want) <= self.buf.len()
        {
            out[..want].copy_from_slice(&self.buf[offset..offset + want]);
            return Ok(want);
        }
        if want >= self.read_ahead {
            return read_at(self.reader, pos, &mut out[..want]);
        }
        self.buf.resize(self.read_ahead.min(left), 0);
        let got = read_at(self.reader, pos, &mut self.buf)?;
        self.buf.truncate(got);
        self.start = pos;
        let filled = want.min(got);
        out[..filled].copy_from_slice(&self.buf[..filled]);
        Ok(filled)
    }
}

/// Fills `buf` from `pos` on, short only at the end of the input.
fn read_at<R: Read + Seek>(reader: &mut R, pos: u64, buf: &mut [u8]) -> Result<usize, MediaError> {
    let failed = |error: io::Error| MediaError::Invalid(format!("reading the PNG failed: {error}"));
    reader.seek(SeekFrom::Start(pos)).map_err(failed)?;
    crate::input::read_up_to(reader, buf).map_err(failed)
}

// ---------------------------------------------------------------- GIF

fn gif(bytes: &[u8]) -> Result<Header<'_>, MediaError> {
    let width = le16(bytes, 6).ok_or_else(|| truncated("GIF header"))?;
    let height = le16(bytes, 8).ok_or_else(|| truncated("GIF header"))?;
    let flags = *bytes.get(10).ok_or_else(|| truncated("GIF header"))?;
    if width == 0 || height == 0 {
        return Err(MediaError::Invalid(format!(
            "GIF canvas {width}x{height} is empty"
        )));
    }
    let mut pos = 13 + color_table_len(flags);
    let mut frames = 0u32;
    let mut largest = 0u64;
    let mut total = 0u64;
    let mut has_alpha = false;

    // Count frames by walking blocks; sub-block lengths let us skip the LZW data unread.
    while let Some(&block) = bytes.get(pos) {
        match block {
            0x3B => break,
            0x21 => {
                let Some(&label) = bytes.get(pos + 1) else {
                    break;
                };
                // A graphic control extension with the transparency flag set.
                if label == 0xF9 && bytes.get(pos + 2) == Some(&4) {
                    has_alpha |= bytes.get(pos + 3).is_some_and(|flags| flags & 1 == 1);
                }
                pos = skip_sub_blocks(bytes, pos + 2);
            }
            0x2C => {
                let (Some(frame_width), Some(frame_height), Some(&frame_flags)) = (
                    le16(bytes, pos + 5),
                    le16(bytes, pos + 7),
                    bytes.get(pos + 9),
                ) else {
                    break;
                };
                let area = u64::from(frame_width) * u64::from(frame_height);
                largest = largest.max(area);
                total += area;
                frames += 1;
                // Descriptor, local colour table, LZW minimum code size, then data sub-blocks.
                pos = skip_sub_blocks(bytes, pos + 10 + color_table_len(frame_flags) + 1);
            }
            other => {
                if frames == 0 {
                    return Err(MediaError::Invalid(format!(
                        "GIF has an unknown block 0x{other:02X}"
                    )));
                }
                // Decoders stop at garbage after the last frame; so do we.
                break;
            }
        }
    }
    if frames == 0 {
        return Err(MediaError::Invalid("GIF has no image".into()));
    }
    let canvas = u64::from(width) * u64::from(height);
    Ok(Header {
        info: ImageInfo {
            format: ImageFormat::Gif,
            width: u32::from(width),
            height: u32::from(height),
            frame_count: frames,
            animated: frames > 1,
            has_alpha,
            color_type: "palette",
            bit_depth: 8,
        },
        exif: None,
        icc: None,
        jpeg: None,
        largest_frame_pixels: largest.max(canvas),
        webp_quality: None,
        png_color: PngColor::default(),
        total_frame_pixels: total.max(canvas),
    })
}

fn color_table_len(flags: u8) -> usize {
    if flags & 0x80 == 0 {
        0
    } else {
        3 << ((flags & 7) + 1)
    }
}

/// Returns the position after a sequence of GIF data sub-blocks (or the end of input).
fn skip_sub_blocks(bytes: &[u8], mut pos: usize) -> usize {
    while let Some(&length) = bytes.get(pos) {
        pos += 1 + usize::from(length);
        if length == 0 {
            return pos;
        }
    }
    bytes.len()
}

// ---------------------------------------------------------------- WebP

fn webp(bytes: &[u8]) -> Result<Header<'_>, MediaError> {
    let riff_size = le32(bytes, 4).unwrap_or(0);
    let end = usize::try_from(riff_size)
        .map_or(bytes.len(), |size| size.saturating_add(8))
        .min(bytes.len());
    let mut pos = 12;
    let mut canvas: Option<(u32, u32)> = None;
    let mut extended = false;
    let mut has_alpha = false;
    let mut animated = false;
    let mut frames = 0u32;
    let mut largest = 0u64;
    let mut icc = None;
    let mut exif = None;
    let mut lossy = LossyFrames::default();

    while pos + 8 <= end {
        let kind = &bytes[pos..pos + 4];
        let size = le32(bytes, pos + 4).unwrap_or(0);
        let data = usize::try_from(size)
            .ok()
            .and_then(|size| bytes.get(pos + 8..pos + 8 + size))
            .ok_or_else(|| truncated("WebP chunk"))?;
        match kind {
            b"VP8X" if data.len() >= 10 => {
                extended = true;
                has_alpha = data[0] & 0x10 != 0;
                animated = data[0] & 0x02 != 0;
                let w = le24(data, 4).unwrap_or(0) + 1;
                let h = le24(data, 7).unwrap_or(0) + 1;
                canvas = Some((w, h));
            }
            b"VP8 " if !extended => {
                canvas = Some(vp8_canvas(data)?);
                frames = 1;
                lossy.add(data);
            }
            b"VP8L" if !extended => {
                if data.len() < 5 || data[0] != 0x2F {
                    return Err(MediaError::Invalid("WebP VP8L header is malformed".into()));
                }
                let bits = le32(data, 1).unwrap_or(0);
                canvas = Some(((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1));
                has_alpha = (bits >> 28) & 1 == 1;
                frames = 1;
            }
            b"VP8 " | b"VP8L" => {
                frames = frames.max(1);
                if kind == b"VP8 " {
                    lossy.add(data);
                }
            }
            b"ANMF" => {
                let (Some(w), Some(h)) = (le24(data, 6), le24(data, 9)) else {
                    return Err(truncated("WebP animation frame"));
                };
                let area = u64::from(w + 1) * u64::from(h + 1);
                largest = largest.max(area);
                frames += 1;
                if let Some(bitstream) = anmf_vp8(data) {
                    lossy.add(bitstream);
                }
            }
            b"ICCP" if icc.is_none() => {
                icc = Some(if data.len() <= MAX_ICC_BYTES {
                    data.to_vec()
                } else {
                    Vec::new()
                });
            }
            b"EXIF" if exif.is_none() => {
                exif = Some(data.strip_prefix(b"Exif\0\0").unwrap_or(data));
            }
            _ => {}
        }
        pos += 8 + data.len() + (data.len() & 1);
    }

    let (width, height) =
        canvas.ok_or_else(|| MediaError::Invalid("WebP has no image chunk".into()))?;
    if width == 0 || height == 0 || frames == 0 {
        return Err(MediaError::Invalid("WebP has no image".into()));
    }
    let canvas_pixels = u64::from(width) * u64::from(height);
    Ok(Header {
        info: ImageInfo {
            format: ImageFormat::WebP,
            width,
            height,
            frame_count: frames,
            animated: animated && frames > 1,
            has_alpha,
            color_type: if has_alpha { "rgba" } else { "rgb" },
            bit_depth: 8,
        },
        exif: exif.map(Cow::Borrowed),
        icc,
        jpeg: None,
        largest_frame_pixels: largest.max(canvas_pixels),
        // Every animation frame is composited onto a full canvas.
        total_frame_pixels: canvas_pixels * u64::from(frames),
        webp_quality: lossy.quality(),
        png_color: PngColor::default(),
    })
}

/// The canvas of a simple lossy WebP, from its VP8 frame header.
fn vp8_canvas(data: &[u8]) -> Result<(u32, u32), MediaError> {
    if data.len() < 10 || data[3..6] != [0x9D, 0x01, 0x2A] {
        return Err(MediaError::Invalid(
            "WebP VP8 frame header is malformed".into(),
        ));
    }
    let w = u32::from(le16(data, 6).unwrap_or(0) & 0x3FFF);
    let h = u32::from(le16(data, 8).unwrap_or(0) & 0x3FFF);
    Ok((w, h))
}

/// The lossy frames of a WebP seen so far, for [`Header::webp_quality`].
#[derive(Default)]
struct LossyFrames {
    frames: u32,
    mean_sum: f64,
    coarsest_sum: f64,
}

impl LossyFrames {
    /// Counts a VP8 bitstream; one whose header cannot be read counts as lossy at a
    /// middling quantizer (the decoder will refuse it if it is really broken).
    fn add(&mut self, vp8: &[u8]) {
        self.frames += 1;
        self.mean_sum += vp8::mean_quantizer(vp8).unwrap_or(MIDDLING_QUANTIZER);
        self.coarsest_sum += vp8::coarsest_quantizer(vp8).unwrap_or(MIDDLING_QUANTIZER);
    }

    fn quality(&self) -> Option<WebpQuality> {
        let frames = f64::from(self.frames);
        (self.frames > 0).then(|| vp8::estimate(self.mean_sum / frames, self.coarsest_sum / frames))
    }
}

/// libwebp's quantizer index at its default quality, 75.
const MIDDLING_QUANTIZER: f64 = 26.0;

/// The VP8 bitstream of an animation frame (`ANMF` data: a 16-byte frame header, then an
/// optional `ALPH` chunk and one `VP8 ` or `VP8L` chunk); `None` for a lossless frame.
fn anmf_vp8(data: &[u8]) -> Option<&[u8]> {
    let mut pos = 16;
    while let (Some(kind), Some(size)) = (data.get(pos..pos + 4), le32(data, pos + 4)) {
        let size = usize::try_from(size).ok()?;
        let body = data.get(pos + 8..pos + 8 + size)?;
        match kind {
            b"VP8 " => return Some(body),
            b"VP8L" => return None,
            _ => pos += 8 + size + (size & 1),
        }
    }
    None
}
