//! A baseline JPEG encoder for the outputs: 8-bit, quantized with the Annex K tables of
//! ITU T.81 scaled by quality as libjpeg does (so a given quality means what it means to
//! libjpeg and libvips), colour as 4:2:0 with chroma averaged over each 2x2 block below
//! quality 90 and as 4:4:4 from 90 up (as libvips does), grey as one component.
//!
//! Huffman tables are optimized for each image by default (T.81 Annex K.2, as libjpeg's
//! `optimize_coding`): a first pass transforms and quantizes every block, counts the
//! symbols of each table, and records them compactly (a symbol byte and its magnitude
//! bits, about a third of the size of the coefficients it stands for); the tables are
//! built from the counts, and a second pass writes the recorded symbols with them. The
//! recording costs memory in proportion to the compressed size, never a full-size
//! coefficient buffer. The standard tables of Annex K.3 remain available.
//!
//! It exists for speed: encoding the variants and the re-encoded original is a large share
//! of the media stage's time. The work is organised around that: each strip of 8 or 16 rows
//! is converted to planes once, the DCT is the AAN float transform with its scale folded
//! into the quantizer and its column pass vectorised over eight lanes, and the entropy
//! coder walks only a block's non-zero coefficients (found through a 64-bit mask) and
//! writes 32 bits at a time. No metadata of any kind is written: the file is SOI, a JFIF
//! APP0 with no thumbnail, the tables, the frame, one scan and EOI.

use std::ops::{Add, Mul, Sub};

/// Sample layout of the pixels to encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JpegInput {
    /// One byte per pixel.
    Gray,
    /// Three bytes per pixel, R G B.
    Rgb,
    /// Three bytes per pixel, JFIF Y Cb Cr: stored as they are, no conversion.
    YCbCr,
}

/// Why an image cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum JpegError {
    /// Zero, or more than 65535, pixels wide or high.
    Dimensions { width: u32, height: u32 },
    /// Fewer bytes than `width x height` pixels of the layout.
    ShortPixels { expected: usize, actual: usize },
}

impl std::fmt::Display for JpegError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Dimensions { width, height } => {
                write!(f, "{width}x{height} cannot be stored in a JPEG")
            }
            Self::ShortPixels { expected, actual } => {
                write!(f, "{actual} bytes of pixels where {expected} are needed")
            }
        }
    }
}

/// How the chroma of a colour image is sampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chroma {
    /// 4:4:4 from quality 90 up, 4:2:0 below: libvips' choice.
    Auto,
    /// 4:2:0, chroma averaged over each 2x2 block.
    #[cfg_attr(
        not(test),
        expect(dead_code, reason = "outputs use Auto; tests compare")
    )]
    Subsampled,
    /// 4:4:4, chroma at full resolution.
    #[cfg_attr(
        not(test),
        expect(dead_code, reason = "outputs use Auto; tests compare")
    )]
    Full,
}

/// Which Huffman tables code the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Huffman {
    /// Tables built from the image's own symbol counts (two passes).
    Optimized,
    /// The example tables of T.81 Annex K.3 (one pass).
    #[cfg_attr(
        not(test),
        expect(dead_code, reason = "outputs use Optimized; tests compare")
    )]
    Standard,
}

/// Encoding choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Settings {
    /// 1-100 (clamped), as libjpeg's quality.
    pub quality: u8,
    pub chroma: Chroma,
    pub huffman: Huffman,
}

impl Settings {
    /// The defaults at `quality`: chroma as libvips samples it, optimized tables.
    pub(crate) fn new(quality: u8) -> Self {
        Self {
            quality,
            chroma: Chroma::Auto,
            huffman: Huffman::Optimized,
        }
    }
}

/// Lowest quality encoded 4:4:4 by [`Chroma::Auto`].
const FULL_CHROMA_FROM: u8 = 90;

/// Encodes `pixels` (rows top to bottom, no padding) as a baseline JPEG at `quality`
/// (1-100, clamped) with the default [`Settings`].
pub(crate) fn encode(
    pixels: &[u8],
    width: u32,
    height: u32,
    input: JpegInput,
    quality: u8,
) -> Result<Vec<u8>, JpegError> {
    encode_with(pixels, width, height, input, Settings::new(quality))
}

/// Block layout of a scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    Gray,
    /// 4:2:0: four Y blocks, one Cb, one Cr per 16x16 MCU.
    Subsampled,
    /// 4:4:4: one Y, one Cb, one Cr block per 8x8 MCU.
    Full,
}

impl Layout {
    /// The component (0 Y, 1 Cb, 2 Cr) of each block of an MCU, in order.
    fn blocks(self) -> &'static [usize] {
        match self {
            Self::Gray => &[0],
            Self::Subsampled => &[0, 0, 0, 0, 1, 2],
            Self::Full => &[0, 1, 2],
        }
    }
}

/// [`encode`] with explicit settings.
pub(crate) fn encode_with(
    pixels: &[u8],
    width: u32,
    height: u32,
    input: JpegInput,
    settings: Settings,
) -> Result<Vec<u8>, JpegError> {
    let (Ok(w16), Ok(h16)) = (u16::try_from(width), u16::try_from(height)) else {
        return Err(JpegError::Dimensions { width, height });
    };
    if w16 == 0 || h16 == 0 {
        return Err(JpegError::Dimensions { width, height });
    }
    let samples = match input {
        JpegInput::Gray => 1,
        JpegInput::Rgb | JpegInput::YCbCr => 3,
    };
    let expected = width as usize * height as usize * samples;
    if pixels.len() < expected {
        return Err(JpegError::ShortPixels {
            expected,
            actual: pixels.len(),
        });
    }
    let quality = settings.quality.clamp(1, 100);
    let luma = scaled_table(&LUMA_QUANT, quality);
    let chroma = scaled_table(&CHROMA_QUANT, quality);
    let layout = match (input, settings.chroma) {
        (JpegInput::Gray, _) => Layout::Gray,
        (_, Chroma::Full) => Layout::Full,
        (_, Chroma::Auto) if quality >= FULL_CHROMA_FROM => Layout::Full,
        _ => Layout::Subsampled,
    };

    let mut out = BitWriter::with_capacity(expected / 8 + 1024);
    write_frame_headers(&mut out.bytes, w16, h16, layout, &luma, &chroma);
    let quantizers = Quantizers {
        luma: divisors(&luma),
        chroma: divisors(&chroma),
    };
    let image = Image {
        pixels,
        width: width as usize,
        height: height as usize,
    };
    match settings.huffman {
        Huffman::Standard => {
            let tables: [HuffmanTable; 4] = [
                HuffmanTable::from_standard(&LUMA_DC_BITS, &LUMA_DC_VALUES),
                HuffmanTable::from_standard(&LUMA_AC_BITS, &LUMA_AC_VALUES),
                HuffmanTable::from_standard(&CHROMA_DC_BITS, &CHROMA_DC_VALUES),
                HuffmanTable::from_standard(&CHROMA_AC_BITS, &CHROMA_AC_VALUES),
            ];
            write_scan_headers(&mut out.bytes, layout, &tables);
            let codes = tables.each_ref().map(HuffmanTable::codes);
            let mut direct = Direct {
                codes: &codes,
                out: &mut out,
                prev_dc: [0; 3],
            };
            transform_image(&image, input, layout, &quantizers, &mut direct);
        }
        Huffman::Optimized => {
            // The recording is a fraction of the image's raw size at any sane quality;
            // start at that and let it grow for noise.
            let mut recorder = Recorder::with_capacity(expected / 6 + 256);
            transform_image(&image, input, layout, &quantizers, &mut recorder);
            let tables = recorder.counts.each_ref().map(HuffmanTable::optimal);
            write_scan_headers(&mut out.bytes, layout, &tables);
            let codes = tables.each_ref().map(HuffmanTable::codes);
            replay(recorder.recording(), layout, &codes, &mut out);
        }
    }
    out.finish();
    out.bytes.extend_from_slice(&[0xFF, 0xD9]);
    Ok(out.bytes)
}

struct Image<'a> {
    pixels: &'a [u8],
    width: usize,
    height: usize,
}

/// Per-coefficient factors of the luma and chroma quantization (see [`divisors`]).
struct Quantizers {
    luma: [f32; 64],
    chroma: [f32; 64],
}

/// Takes the quantized blocks of a scan, in scan order.
trait BlockCoder {
    /// One block of `component` (0 Y, 1 Cb, 2 Cr), in zigzag order.
    fn block(&mut self, zigzag: &[i16; 64], component: usize);
}

/// Transforms every block of the image in scan order and hands it to `coder`.
fn transform_image<C: BlockCoder>(
    image: &Image<'_>,
    input: JpegInput,
    layout: Layout,
    quantizers: &Quantizers,
    coder: &mut C,
) {
    match (layout, input) {
        (Layout::Subsampled, JpegInput::Rgb) => encode_color::<Rgb, C>(image, quantizers, coder),
        (Layout::Subsampled, JpegInput::YCbCr) => {
            encode_color::<YCbCr, C>(image, quantizers, coder);
        }
        (Layout::Full, JpegInput::Rgb) => encode_full::<Rgb, C>(image, quantizers, coder),
        (Layout::Full, JpegInput::YCbCr) => encode_full::<YCbCr, C>(image, quantizers, coder),
        // Grey input always has the grey layout.
        _ => encode_gray(image, quantizers, coder),
    }
}

// ------------------------------------------------------------------ strips and blocks

/// 4:2:0: per 16-row strip, a Y plane and 2x2-averaged Cb and Cr planes (level-shifted,
/// edges replicated to whole MCUs), then per 16x16 MCU four Y blocks, one Cb, one Cr.
#[allow(clippy::similar_names, reason = "Cb and Cr planes")]
fn encode_color<P: PixelModel, C: BlockCoder>(
    image: &Image<'_>,
    quantizers: &Quantizers,
    coder: &mut C,
) {
    let mcus_across = image.width.div_ceil(16);
    let stride = mcus_across * 16;
    let half = stride / 2;
    let mut y_plane = vec![0f32; 16 * stride];
    let mut cb_plane = vec![0f32; 8 * half];
    let mut cr_plane = vec![0f32; 8 * half];
    let row_bytes = image.width * 3;
    let row = |y: usize| &image.pixels[y * row_bytes..(y + 1) * row_bytes];
    for strip_top in (0..image.height).step_by(16) {
        for pair_row in 0..8 {
            // The two source rows that make one chroma row (the last row repeats).
            let top = (strip_top + 2 * pair_row).min(image.height - 1);
            let bottom = (top + 1).min(image.height - 1);
            let (upper, lower) = (row(top), row(bottom));
            let (luma_upper, luma_lower) =
                y_plane[2 * pair_row * stride..(2 * pair_row + 2) * stride].split_at_mut(stride);
            let cb = &mut cb_plane[pair_row * half..][..half];
            let cr = &mut cr_plane[pair_row * half..][..half];
            // Two columns at a time: four luma samples and their averaged chroma.
            let quads = upper
                .chunks_exact(6)
                .zip(lower.chunks_exact(6))
                .zip(
                    luma_upper
                        .chunks_exact_mut(2)
                        .zip(luma_lower.chunks_exact_mut(2)),
                )
                .zip(cb.iter_mut().zip(cr.iter_mut()));
            for (((a, b), (la, lb)), (cb, cr)) in quads {
                la[0] = P::luma(a[0], a[1], a[2]);
                la[1] = P::luma(a[3], a[4], a[5]);
                lb[0] = P::luma(b[0], b[1], b[2]);
                lb[1] = P::luma(b[3], b[4], b[5]);
                let sum = |i: usize| {
                    f32::from(
                        u16::from(a[i])
                            + u16::from(a[i + 3])
                            + u16::from(b[i])
                            + u16::from(b[i + 3]),
                    )
                };
                (*cb, *cr) = P::chroma(sum(0), sum(1), sum(2), 0.25);
            }
            // Past the right edge the last column repeats (an odd width's last pair too).
            let last = image.width - 1;
            let (a, b) = (&upper[last * 3..], &lower[last * 3..]);
            let edge_luma = (P::luma(a[0], a[1], a[2]), P::luma(b[0], b[1], b[2]));
            luma_upper[last..].fill(edge_luma.0);
            luma_lower[last..].fill(edge_luma.1);
            let sum = |i: usize| f32::from(u16::from(a[i]) + u16::from(b[i]));
            let edge_chroma = P::chroma(sum(0), sum(1), sum(2), 0.5);
            cb[image.width / 2..].fill(edge_chroma.0);
            cr[image.width / 2..].fill(edge_chroma.1);
        }
        for mcu in 0..mcus_across {
            let x = mcu * 16;
            for (dy, dx) in [(0, 0), (0, 8), (8, 0), (8, 8)] {
                let block = load_block(&y_plane, stride, dy * stride + x + dx);
                coder.block(&transform(&block, &quantizers.luma), 0);
            }
            let block = load_block(&cb_plane, half, mcu * 8);
            coder.block(&transform(&block, &quantizers.chroma), 1);
            let block = load_block(&cr_plane, half, mcu * 8);
            coder.block(&transform(&block, &quantizers.chroma), 2);
        }
    }
}

/// 4:4:4: per 8-row strip, full-resolution Y, Cb and Cr planes (level-shifted, edges
/// replicated to whole blocks), then per 8x8 MCU one block of each.
#[allow(clippy::similar_names, reason = "Cb and Cr planes")]
fn encode_full<P: PixelModel, C: BlockCoder>(
    image: &Image<'_>,
    quantizers: &Quantizers,
    coder: &mut C,
) {
    let blocks_across = image.width.div_ceil(8);
    let stride = blocks_across * 8;
    let mut y_plane = vec![0f32; 8 * stride];
    let mut cb_plane = vec![0f32; 8 * stride];
    let mut cr_plane = vec![0f32; 8 * stride];
    let row_bytes = image.width * 3;
    for strip_top in (0..image.height).step_by(8) {
        for r in 0..8 {
            let y = (strip_top + r).min(image.height - 1);
            let src = &image.pixels[y * row_bytes..(y + 1) * row_bytes];
            let luma = &mut y_plane[r * stride..][..stride];
            let cb = &mut cb_plane[r * stride..][..stride];
            let cr = &mut cr_plane[r * stride..][..stride];
            let samples = src
                .chunks_exact(3)
                .zip(luma.iter_mut().zip(cb.iter_mut().zip(cr.iter_mut())));
            for (p, (l, (cb, cr))) in samples {
                *l = P::luma(p[0], p[1], p[2]);
                (*cb, *cr) = P::chroma(f32::from(p[0]), f32::from(p[1]), f32::from(p[2]), 1.0);
            }
            let last = image.width - 1;
            let edge = (luma[last], cb[last], cr[last]);
            luma[image.width..].fill(edge.0);
            cb[image.width..].fill(edge.1);
            cr[image.width..].fill(edge.2);
        }
        for block_x in 0..blocks_across {
            let at = block_x * 8;
            coder.block(
                &transform(&load_block(&y_plane, stride, at), &quantizers.luma),
                0,
            );
            coder.block(
                &transform(&load_block(&cb_plane, stride, at), &quantizers.chroma),
                1,
            );
            coder.block(
                &transform(&load_block(&cr_plane, stride, at), &quantizers.chroma),
                2,
            );
        }
    }
}

/// How a colour input's three samples become level-shifted Y, Cb and Cr.
trait PixelModel {
    /// Y of one pixel.
    fn luma(a: u8, b: u8, c: u8) -> f32;
    /// Cb and Cr of the mean of pixels whose samples sum to `a`, `b`, `c`, with
    /// `scale` = 1 / their count.
    fn chroma(a: f32, b: f32, c: f32, scale: f32) -> (f32, f32);
}

/// R G B, converted as JFIF does.
struct Rgb;

impl PixelModel for Rgb {
    #[inline]
    fn luma(r: u8, g: u8, b: u8) -> f32 {
        0.299 * f32::from(r) + 0.587 * f32::from(g) + 0.114 * f32::from(b) - 128.0
    }

    #[inline]
    fn chroma(r: f32, g: f32, b: f32, scale: f32) -> (f32, f32) {
        let (r, g, b) = (r * scale, g * scale, b * scale);
        (
            -0.168_736 * r - 0.331_264 * g + 0.5 * b,
            0.5 * r - 0.418_688 * g - 0.081_312 * b,
        )
    }
}

/// Y Cb Cr already.
struct YCbCr;

impl PixelModel for YCbCr {
    #[inline]
    fn luma(y: u8, _: u8, _: u8) -> f32 {
        f32::from(y) - 128.0
    }

    #[inline]
    fn chroma(_: f32, cb: f32, cr: f32, scale: f32) -> (f32, f32) {
        (cb * scale - 128.0, cr * scale - 128.0)
    }
}

/// One component, 8x8 MCUs.
fn encode_gray<C: BlockCoder>(image: &Image<'_>, quantizers: &Quantizers, coder: &mut C) {
    let blocks_across = image.width.div_ceil(8);
    let stride = blocks_across * 8;
    let mut plane = vec![0f32; 8 * stride];
    for strip_top in (0..image.height).step_by(8) {
        for row in 0..8 {
            let y = (strip_top + row).min(image.height - 1);
            let src = &image.pixels[y * image.width..(y + 1) * image.width];
            let dst = &mut plane[row * stride..][..stride];
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = f32::from(s) - 128.0;
            }
            let last = dst[image.width - 1];
            dst[image.width..].fill(last);
        }
        for block_x in 0..blocks_across {
            let block = load_block(&plane, stride, block_x * 8);
            coder.block(&transform(&block, &quantizers.luma), 0);
        }
    }
}

fn load_block(plane: &[f32], stride: usize, at: usize) -> [Lanes; 8] {
    std::array::from_fn(|row| {
        let start = at + row * stride;
        Lanes(plane[start..start + 8].try_into().unwrap_or([0.0; 8]))
    })
}

// ------------------------------------------------------------------ DCT and quantization

/// Eight `f32`s operated on together, so the DCT's column pass compiles to vector code.
#[derive(Debug, Clone, Copy)]
struct Lanes([f32; 8]);

impl Add for Lanes {
    type Output = Self;
    #[inline]
    fn add(self, other: Self) -> Self {
        Self(std::array::from_fn(|i| self.0[i] + other.0[i]))
    }
}

impl Sub for Lanes {
    type Output = Self;
    #[inline]
    fn sub(self, other: Self) -> Self {
        Self(std::array::from_fn(|i| self.0[i] - other.0[i]))
    }
}

impl Mul<f32> for Lanes {
    type Output = Self;
    #[inline]
    fn mul(self, factor: f32) -> Self {
        Self(self.0.map(|v| v * factor))
    }
}

/// The AAN (Arai, Agui, Nakajima) 8-point forward DCT, unnormalised: output `k` is the
/// true coefficient times `8 * AAN_SCALE[k]` / ... as in libjpeg's float DCT; the scale
/// is removed by [`divisors`].
#[inline]
#[allow(clippy::similar_names, reason = "the names of the published algorithm")]
fn aan_dct<T: Copy + Add<Output = T> + Sub<Output = T> + Mul<f32, Output = T>>(
    d: [T; 8],
) -> [T; 8] {
    let tmp0 = d[0] + d[7];
    let tmp7 = d[0] - d[7];
    let tmp1 = d[1] + d[6];
    let tmp6 = d[1] - d[6];
    let tmp2 = d[2] + d[5];
    let tmp5 = d[2] - d[5];
    let tmp3 = d[3] + d[4];
    let tmp4 = d[3] - d[4];

    let tmp10 = tmp0 + tmp3;
    let tmp13 = tmp0 - tmp3;
    let tmp11 = tmp1 + tmp2;
    let tmp12 = tmp1 - tmp2;
    let out0 = tmp10 + tmp11;
    let out4 = tmp10 - tmp11;
    let z1 = (tmp12 + tmp13) * std::f32::consts::FRAC_1_SQRT_2;
    let out2 = tmp13 + z1;
    let out6 = tmp13 - z1;

    let tmp10 = tmp4 + tmp5;
    let tmp11 = tmp5 + tmp6;
    let tmp12 = tmp6 + tmp7;
    let z5 = (tmp10 - tmp12) * 0.382_683_43;
    let z2 = tmp10 * 0.541_196_1 + z5;
    let z4 = tmp12 * 1.306_563 + z5;
    let z3 = tmp11 * std::f32::consts::FRAC_1_SQRT_2;
    let z11 = tmp7 + z3;
    let z13 = tmp7 - z3;
    [
        out0,
        z11 + z4,
        out2,
        z13 - z2,
        out4,
        z13 + z2,
        out6,
        z11 - z4,
    ]
}

/// DCT of a level-shifted block, quantized with `divisors` (natural order), returned in
/// zigzag order.
#[inline]
fn transform(block: &[Lanes; 8], divisors: &[f32; 64]) -> [i16; 64] {
    // Rows, one at a time; then the columns, all eight at once.
    let rows: [Lanes; 8] = std::array::from_fn(|r| Lanes(aan_dct(block[r].0)));
    let columns = aan_dct(rows);
    let mut natural = [0f32; 64];
    for (v, row) in columns.iter().enumerate() {
        natural[v * 8..v * 8 + 8].copy_from_slice(&row.0);
    }
    let mut quantized = [0i32; 64];
    for (q, (&c, &d)) in quantized.iter_mut().zip(natural.iter().zip(divisors)) {
        // Eight-bit baseline coefficients fit 11 bits; the AC Huffman tables have no
        // longer category, so rounding error must not push one past it.
        let scaled = (c * d).clamp(-1023.0, 1023.0);
        // Round to nearest by adding 1.5 * 2^23: the sum's low mantissa bits are then the
        // integer. Unlike `round()` or `as`, this compiles to vector code.
        #[allow(clippy::cast_possible_wrap)]
        {
            *q = (scaled + ROUNDING_BIAS).to_bits() as i32 - ROUNDING_BIAS_BITS;
        }
    }
    let mut zigzag = [0i16; 64];
    for (z, &n) in ZIGZAG_TO_NATURAL.iter().enumerate() {
        #[allow(clippy::cast_possible_truncation)]
        {
            zigzag[z] = quantized[n as usize] as i16;
        }
    }
    zigzag
}

/// 1.5 * 2^23, and its bit pattern: see [`transform`].
const ROUNDING_BIAS: f32 = 12_582_912.0;
#[allow(clippy::cast_possible_wrap)]
const ROUNDING_BIAS_BITS: i32 = ROUNDING_BIAS.to_bits() as i32;

/// `cos(k pi / 16) sqrt 2` (1 for k = 0): the AAN transform's output scale.
const AAN_SCALE: [f64; 8] = [
    1.0,
    1.387_039_845,
    1.306_562_965,
    1.175_875_602,
    1.0,
    0.785_694_958,
    0.541_196_100,
    0.275_899_379,
];

/// Per natural-order coefficient: the factor that removes the AAN scale and the DCT's
/// factor 8, and divides by the quantizer.
fn divisors(table: &[u16; 64]) -> [f32; 64] {
    std::array::from_fn(|n| {
        let scale = AAN_SCALE[n / 8] * AAN_SCALE[n % 8] * 8.0;
        #[allow(clippy::cast_possible_truncation)]
        {
            (1.0 / (f64::from(table[n]) * scale)) as f32
        }
    })
}

/// libjpeg's `jpeg_quality_scaling` and `jpeg_add_quant_table` with `force_baseline`.
fn scaled_table(base: &[u16; 64], quality: u8) -> [u16; 64] {
    let quality = u32::from(quality.clamp(1, 100));
    let scale = if quality < 50 {
        5000 / quality
    } else {
        200 - quality * 2
    };
    base.map(|q| {
        let value = (u32::from(q) * scale + 50) / 100;
        u16::try_from(value.clamp(1, 255)).unwrap_or(255)
    })
}

// ------------------------------------------------------------------ entropy coding

/// One Huffman table as DHT stores it: code counts per length 1-16, then the symbols in
/// code order.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HuffmanTable {
    bits: [u8; 16],
    values: Vec<u8>,
}

/// Longest code a baseline table may hold.
const MAX_CODE_LENGTH: usize = 16;
/// Longest code the unconstrained Huffman construction can make over 257 symbols before
/// it is limited (libjpeg's `MAX_CLEN`).
const MAX_UNLIMITED_LENGTH: usize = 32;

impl HuffmanTable {
    fn from_standard(bits: &[u8; 16], values: &[u8]) -> Self {
        Self {
            bits: *bits,
            values: values.to_vec(),
        }
    }

    /// The optimal table for these symbol counts with codes of at most 16 bits and no
    /// code of all ones (T.81 Annex K.2; libjpeg's `jpeg_gen_optimal_table`). A table of
    /// no symbols at all still gets one, so every table written is valid.
    fn optimal(counts: &[u32; 256]) -> Self {
        // Index 256 is a reserved symbol that takes the all-ones code, removed below.
        let mut freq = [0u64; 257];
        for (f, &c) in freq.iter_mut().zip(counts) {
            *f = u64::from(c);
        }
        if freq[..256].iter().all(|&f| f == 0) {
            freq[0] = 1;
        }
        freq[256] = 1;
        let mut code_size = [0usize; 257];
        let mut others = [usize::MAX; 257];
        // Only the symbols still in play are searched: a table uses a fraction of 256.
        let mut live: Vec<usize> = (0..257).filter(|&i| freq[i] != 0).collect();
        // The least frequent live symbol; on ties the higher index, as libjpeg picks.
        let least = |live: &[usize], freq: &[u64; 257], except: usize| {
            live.iter()
                .enumerate()
                .filter(|&(_, &i)| i != except)
                .min_by(|&(_, &a), &(_, &b)| freq[a].cmp(&freq[b]).then(b.cmp(&a)))
                .map(|(at, &i)| (at, i))
        };
        while live.len() > 1 {
            let Some((_, c1)) = least(&live, &freq, usize::MAX) else {
                break;
            };
            let Some((at2, c2)) = least(&live, &freq, c1) else {
                break;
            };
            freq[c1] += freq[c2];
            freq[c2] = 0;
            live.swap_remove(at2);
            // Every symbol of both subtrees gets one bit longer; join the chains.
            let mut c = c1;
            code_size[c] += 1;
            while others[c] != usize::MAX {
                c = others[c];
                code_size[c] += 1;
            }
            others[c] = c2;
            let mut c = c2;
            code_size[c] += 1;
            while others[c] != usize::MAX {
                c = others[c];
                code_size[c] += 1;
            }
        }
        let mut bits = [0u32; MAX_UNLIMITED_LENGTH + 1];
        for &size in code_size.iter().filter(|&&s| s > 0) {
            bits[size.min(MAX_UNLIMITED_LENGTH)] += 1;
        }
        // Limit to 16 bits (Annex K.3 figure K.3): a pair of the longest codes becomes one
        // code a bit shorter and a prefix one bit longer than a shorter code it replaces.
        for i in (MAX_CODE_LENGTH + 1..=MAX_UNLIMITED_LENGTH).rev() {
            while bits[i] > 0 {
                let mut j = i - 2;
                while bits[j] == 0 {
                    j -= 1;
                }
                bits[i] -= 2;
                bits[i - 1] += 1;
                bits[j + 1] += 2;
                bits[j] -= 1;
            }
        }
        // Drop the reserved symbol: it has one of the longest codes.
        if let Some(longest) = (1..=MAX_CODE_LENGTH).rev().find(|&i| bits[i] > 0) {
            bits[longest] -= 1;
        }
        let mut values = Vec::with_capacity(256);
        for length in 1..=MAX_UNLIMITED_LENGTH {
            values.extend((0u8..=255).filter(|&symbol| code_size[usize::from(symbol)] == length));
        }
        // The limiting moved codes between lengths, never between symbols: the symbols
        // sorted by their unlimited length take the limited lengths in the same order.
        let mut table_bits = [0u8; 16];
        for (b, &count) in table_bits.iter_mut().zip(&bits[1..=MAX_CODE_LENGTH]) {
            *b = u8::try_from(count).unwrap_or(u8::MAX);
        }
        Self {
            bits: table_bits,
            values,
        }
    }

    fn codes(&self) -> HuffmanCodes {
        HuffmanCodes::new(&self.bits, &self.values)
    }
}

/// Code and length of every symbol of one Huffman table.
struct HuffmanCodes {
    code: [u32; 256],
    length: [u32; 256],
}

impl HuffmanCodes {
    /// The canonical codes of a table given as code counts per length and symbols
    /// (T.81 Annex C).
    fn new(bits: &[u8; 16], values: &[u8]) -> Self {
        let mut table = Self {
            code: [0; 256],
            length: [0; 256],
        };
        let mut code = 0u32;
        let mut symbols = values.iter();
        for (index, &count) in bits.iter().enumerate() {
            for _ in 0..count {
                if let Some(&symbol) = symbols.next() {
                    table.code[usize::from(symbol)] = code;
                    table.length[usize::from(symbol)] = u32::try_from(index + 1).unwrap_or(16);
                }
                code += 1;
            }
            code <<= 1;
        }
        table
    }
}

/// Bits needed for the magnitude of `value` (its JPEG "size" category).
#[inline]
fn category(value: i32) -> u32 {
    32 - value.unsigned_abs().leading_zeros()
}

/// The `size` low bits JPEG appends for `value`: itself if positive, else value - 1.
#[inline]
#[allow(clippy::cast_sign_loss)]
fn magnitude_bits(value: i32, size: u32) -> u32 {
    let adjusted = if value < 0 { value - 1 } else { value };
    (adjusted as u32) & ((1u32 << size) - 1)
}

/// Appends the low `length` (at most 32) bits of `bits` to a block's bit state held in
/// locals (registers): every full 32 bits go to the byte buffer, 0xFF bytes stuffed.
macro_rules! put_bits {
    ($accumulator:ident, $pending:ident, $buffer:ident, $len:ident; $bits:expr, $length:expr $(,)?) => {{
        let (bits, length): (u32, u32) = ($bits, $length);
        $accumulator = ($accumulator << length) | u64::from(bits);
        $pending += length;
        if $pending >= 32 {
            $pending -= 32;
            #[allow(clippy::cast_possible_truncation)]
            let word = ($accumulator >> $pending) as u32;
            // Does any byte equal 0xFF? (The zero-byte test on the complement.)
            if (!word).wrapping_sub(0x0101_0101) & word & 0x8080_8080 == 0 {
                if let Some(slot) = $buffer.get_mut($len..$len + 4) {
                    slot.copy_from_slice(&word.to_be_bytes());
                }
                $len += 4;
            } else {
                for byte in word.to_be_bytes() {
                    if let Some(slot) = $buffer.get_mut($len) {
                        *slot = byte;
                    }
                    $len += 1;
                    if byte == 0xFF {
                        if let Some(slot) = $buffer.get_mut($len) {
                            *slot = 0;
                        }
                        $len += 1;
                    }
                }
            }
        }
    }};
}

/// Codes each block as it comes, with fixed tables: luma DC, luma AC, chroma DC, chroma AC.
struct Direct<'a> {
    codes: &'a [HuffmanCodes; 4],
    out: &'a mut BitWriter,
    prev_dc: [i32; 3],
}

impl BlockCoder for Direct<'_> {
    #[inline]
    fn block(&mut self, zigzag: &[i16; 64], component: usize) {
        let class = 2 * component.min(1);
        let (dc, ac) = (&self.codes[class], &self.codes[class + 1]);
        // The bit state lives in locals for the block, and its bytes go to a stack buffer
        // appended once: a worst-case block is under 420 bytes with stuffing.
        let mut accumulator = self.out.accumulator;
        let mut pending = self.out.pending;
        let mut buffer = [0u8; 512];
        let mut len = 0usize;
        let value = i32::from(zigzag[0]);
        let diff = value - self.prev_dc[component];
        self.prev_dc[component] = value;
        let size = category(diff);
        let symbol = size as usize;
        put_bits!(accumulator, pending, buffer, len;
            (dc.code[symbol] << size) | magnitude_bits(diff, size),
            dc.length[symbol] + size,
        );

        let mut nonzero = nonzero_mask(zigzag);
        let mut last = 0u32;
        while nonzero != 0 {
            let z = nonzero.trailing_zeros();
            nonzero &= nonzero - 1;
            let mut run = z - last - 1;
            while run >= 16 {
                put_bits!(accumulator, pending, buffer, len; ac.code[0xF0], ac.length[0xF0]);
                run -= 16;
            }
            let value = i32::from(zigzag[z as usize]);
            let size = category(value);
            let symbol = ((run << 4) | size) as usize;
            put_bits!(accumulator, pending, buffer, len;
                (ac.code[symbol] << size) | magnitude_bits(value, size),
                ac.length[symbol] + size,
            );
            last = z;
        }
        if last != 63 {
            put_bits!(accumulator, pending, buffer, len; ac.code[0], ac.length[0]);
        }
        self.out.bytes.extend_from_slice(&buffer[..len]);
        self.out.accumulator = accumulator;
        self.out.pending = pending;
    }
}

/// Bit `z` set for every non-zero AC coefficient `z` of a zigzag block.
#[inline]
fn nonzero_mask(zigzag: &[i16; 64]) -> u64 {
    let mut nonzero = 0u64;
    for (z, &c) in zigzag.iter().enumerate().skip(1) {
        nonzero |= u64::from(c != 0) << z;
    }
    nonzero
}

/// In a recording, ends a block whose last coefficient is non-zero (so no EOB is coded).
/// As a symbol it would mean a run of one zero then nothing, which no coder emits.
const END_WITHOUT_EOB: u8 = 0x10;

/// The first pass of optimized coding: counts every table's symbols and records them.
///
/// Per block: the DC size category, then each AC symbol (run << 4 | size, or ZRL 0xF0),
/// each followed by its magnitude bits in one byte (size <= 8) or two (big-endian); then
/// EOB (0x00) or [`END_WITHOUT_EOB`].
struct Recorder {
    /// The recording so far is `stream[..len]`; the rest is room, kept initialised so
    /// blocks are written in place.
    stream: Vec<u8>,
    len: usize,
    /// Symbol counts of luma DC, luma AC, chroma DC, chroma AC.
    counts: [[u32; 256]; 4],
    prev_dc: [i32; 3],
}

/// Most bytes one block takes in a recording: 3 for the DC, 3 for each of 63 AC
/// symbols, and the end.
const MAX_RECORDED_BLOCK: usize = 193;

impl Recorder {
    fn with_capacity(capacity: usize) -> Self {
        Self {
            stream: vec![0; capacity.max(MAX_RECORDED_BLOCK)],
            len: 0,
            counts: [[0; 256]; 4],
            prev_dc: [0; 3],
        }
    }

    /// The recorded bytes.
    fn recording(&self) -> &[u8] {
        &self.stream[..self.len]
    }
}

/// Appends a symbol and its magnitude bits to a recording buffer.
macro_rules! record {
    ($buffer:ident, $len:ident; $symbol:expr, $size:expr, $bits:expr) => {{
        let (symbol, size, bits): (u32, u32, u32) = ($symbol, $size, $bits);
        #[allow(clippy::cast_possible_truncation)]
        {
            $buffer[$len] = symbol as u8;
            if size > 8 {
                $buffer[$len + 1] = (bits >> 8) as u8;
                $buffer[$len + 2] = bits as u8;
                $len += 3;
            } else if size > 0 {
                $buffer[$len + 1] = bits as u8;
                $len += 2;
            } else {
                $len += 1;
            }
        }
    }};
}

impl BlockCoder for Recorder {
    #[inline]
    fn block(&mut self, zigzag: &[i16; 64], component: usize) {
        if self.stream.len() - self.len < MAX_RECORDED_BLOCK {
            self.stream.resize(self.stream.len() * 2, 0);
        }
        let class = 2 * component.min(1);
        let buffer = &mut self.stream[self.len..self.len + MAX_RECORDED_BLOCK];
        let mut len = 0usize;
        let value = i32::from(zigzag[0]);
        let diff = value - self.prev_dc[component];
        self.prev_dc[component] = value;
        let size = category(diff);
        self.counts[class][size as usize] += 1;
        record!(buffer, len; size, size, magnitude_bits(diff, size));

        let mut nonzero = nonzero_mask(zigzag);
        let mut last = 0u32;
        let ac = &mut self.counts[class + 1];
        while nonzero != 0 {
            let z = nonzero.trailing_zeros();
            nonzero &= nonzero - 1;
            let mut run = z - last - 1;
            while run >= 16 {
                ac[0xF0] += 1;
                record!(buffer, len; 0xF0, 0, 0);
                run -= 16;
            }
            let value = i32::from(zigzag[z as usize]);
            let size = category(value);
            let symbol = (run << 4) | size;
            ac[symbol as usize] += 1;
            record!(buffer, len; symbol, size, magnitude_bits(value, size));
            last = z;
        }
        if last == 63 {
            record!(buffer, len; u32::from(END_WITHOUT_EOB), 0, 0);
        } else {
            ac[0] += 1;
            record!(buffer, len; 0, 0, 0);
        }
        self.len += len;
    }
}

/// The second pass of optimized coding: writes a [`Recorder`]'s stream with `codes`
/// (luma DC, luma AC, chroma DC, chroma AC).
fn replay(stream: &[u8], layout: Layout, codes: &[HuffmanCodes; 4], out: &mut BitWriter) {
    let mut accumulator = out.accumulator;
    let mut pending = out.pending;
    let mut pos = 0usize;
    // Reads the magnitude bits that follow a symbol of this size.
    let magnitude = |pos: &mut usize, size: u32| -> u32 {
        if size > 8 {
            let bits = u32::from(stream[*pos]) << 8 | u32::from(stream[*pos + 1]);
            *pos += 2;
            bits
        } else if size > 0 {
            let bits = u32::from(stream[*pos]);
            *pos += 1;
            bits
        } else {
            0
        }
    };
    // Coded bytes gather here and go out in large pieces; a block takes under 512.
    let mut buffer = vec![0u8; 1 << 16];
    let mut len = 0usize;
    for &component in layout.blocks().iter().cycle() {
        if pos >= stream.len() {
            break;
        }
        if len > buffer.len() - 512 {
            out.bytes.extend_from_slice(&buffer[..len]);
            len = 0;
        }
        let class = 2 * component.min(1);
        let (dc, ac) = (&codes[class], &codes[class + 1]);
        let size = u32::from(stream[pos]);
        pos += 1;
        let bits = magnitude(&mut pos, size);
        let symbol = size as usize;
        put_bits!(accumulator, pending, buffer, len;
            (dc.code[symbol] << size) | bits,
            dc.length[symbol] + size,
        );
        loop {
            let symbol = stream[pos];
            pos += 1;
            if symbol == END_WITHOUT_EOB {
                break;
            }
            let size = u32::from(symbol & 0x0F);
            let bits = magnitude(&mut pos, size);
            let symbol = usize::from(symbol);
            put_bits!(accumulator, pending, buffer, len;
                (ac.code[symbol] << size) | bits,
                ac.length[symbol] + size,
            );
            if symbol == 0 {
                break;
            }
        }
    }
    out.bytes.extend_from_slice(&buffer[..len]);
    out.accumulator = accumulator;
    out.pending = pending;
}

/// The entropy-coded segment: bytes so far, and the bits not yet making a full word.
struct BitWriter {
    bytes: Vec<u8>,
    /// Pending bits in the low `pending` bits.
    accumulator: u64,
    pending: u32,
}

impl BitWriter {
    fn with_capacity(capacity: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(capacity),
            accumulator: 0,
            pending: 0,
        }
    }

    /// Pads the last byte with one bits (T.81 F.1.2.3) and writes what is pending.
    fn finish(&mut self) {
        let pad = (8 - self.pending % 8) % 8;
        self.accumulator = (self.accumulator << pad) | ((1u64 << pad) - 1);
        self.pending += pad;
        while self.pending >= 8 {
            self.pending -= 8;
            #[allow(clippy::cast_possible_truncation)]
            let byte = (self.accumulator >> self.pending) as u8;
            self.bytes.push(byte);
            if byte == 0xFF {
                self.bytes.push(0);
            }
        }
    }
}

// ------------------------------------------------------------------ headers

fn segment(out: &mut Vec<u8>, marker: u8, body: &[u8]) {
    out.extend_from_slice(&[0xFF, marker]);
    let length = u16::try_from(body.len() + 2).unwrap_or(u16::MAX);
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(body);
}

/// SOI, APP0, DQT and SOF.
fn write_frame_headers(
    out: &mut Vec<u8>,
    width: u16,
    height: u16,
    layout: Layout,
    luma: &[u16; 64],
    chroma: &[u16; 64],
) {
    out.extend_from_slice(&[0xFF, 0xD8]);
    // JFIF 1.01, aspect ratio 1:1, no thumbnail.
    segment(out, 0xE0, b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0");

    let color = layout != Layout::Gray;
    let mut dqt = Vec::with_capacity(130);
    let tables: &[&[u16; 64]] = if color { &[luma, chroma] } else { &[luma] };
    for (id, table) in (0u8..).zip(tables) {
        dqt.push(id);
        dqt.extend(
            ZIGZAG_TO_NATURAL
                .iter()
                .map(|&n| u8::try_from(table[n as usize]).unwrap_or(255)),
        );
    }
    segment(out, 0xDB, &dqt);

    let mut sof = vec![8];
    sof.extend_from_slice(&height.to_be_bytes());
    sof.extend_from_slice(&width.to_be_bytes());
    // Per component: id, horizontal and vertical sampling factors, quantization table.
    match layout {
        Layout::Gray => sof.extend_from_slice(&[1, 1, 0x11, 0]),
        Layout::Subsampled => sof.extend_from_slice(&[3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]),
        Layout::Full => sof.extend_from_slice(&[3, 1, 0x11, 0, 2, 0x11, 1, 3, 0x11, 1]),
    }
    segment(out, 0xC0, &sof);
}

/// DHT with `tables` (luma DC, luma AC, chroma DC, chroma AC; the chroma ones only for
/// colour), then SOS.
fn write_scan_headers(out: &mut Vec<u8>, layout: Layout, tables: &[HuffmanTable; 4]) {
    let color = layout != Layout::Gray;
    let mut dht = Vec::with_capacity(432);
    let classes: &[u8] = if color {
        &[0x00, 0x10, 0x01, 0x11]
    } else {
        &[0x00, 0x10]
    };
    for (&class_and_id, table) in classes.iter().zip(tables) {
        dht.push(class_and_id);
        dht.extend_from_slice(&table.bits);
        dht.extend_from_slice(&table.values);
    }
    segment(out, 0xC4, &dht);

    if color {
        segment(out, 0xDA, &[3, 1, 0x00, 2, 0x11, 3, 0x11, 0, 63, 0]);
    } else {
        segment(out, 0xDA, &[1, 1, 0x00, 0, 63, 0]);
    }
}

// ------------------------------------------------------------------ standard tables

/// Natural (row-major) index of each zigzag position.
const ZIGZAG_TO_NATURAL: [u8; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20,
    13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59,
    52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
];

/// T.81 Table K.1, natural order.
const LUMA_QUANT: [u16; 64] = [
    16, 11, 10, 16, 24, 40, 51, 61, //
    12, 12, 14, 19, 26, 58, 60, 55, //
    14, 13, 16, 24, 40, 57, 69, 56, //
    14, 17, 22, 29, 51, 87, 80, 62, //
    18, 22, 37, 56, 68, 109, 103, 77, //
    24, 35, 55, 64, 81, 104, 113, 92, //
    49, 64, 78, 87, 103, 121, 120, 101, //
    72, 92, 95, 98, 112, 100, 103, 99,
];

/// T.81 Table K.2, natural order.
const CHROMA_QUANT: [u16; 64] = [
    17, 18, 24, 47, 99, 99, 99, 99, //
    18, 21, 26, 66, 99, 99, 99, 99, //
    24, 26, 56, 99, 99, 99, 99, 99, //
    47, 66, 99, 99, 99, 99, 99, 99, //
    99, 99, 99, 99, 99, 99, 99, 99, //
    99, 99, 99, 99, 99, 99, 99, 99, //
    99, 99, 99, 99, 99, 99, 99, 99, //
    99, 99, 99, 99, 99, 99, 99, 99,
];

// T.81 Tables K.3 to K.6: code counts per length 1-16, then the symbols.
const LUMA_DC_BITS: [u8; 16] = [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0];
const LUMA_DC_VALUES: [u8; 12] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
const CHROMA_DC_BITS: [u8; 16] = [0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0];
const CHROMA_DC_VALUES: [u8; 12] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];

const LUMA_AC_BITS: [u8; 16] = [0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7D];
const LUMA_AC_VALUES: [u8; 162] = [
    0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61, 0x07,
    0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xA1, 0x08, 0x23, 0x42, 0xB1, 0xC1, 0x15, 0x52, 0xD1, 0xF0,
    0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0A, 0x16, 0x17, 0x18, 0x19, 0x1A, 0x25, 0x26, 0x27, 0x28,
    0x29, 0x2A, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3A, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49,
    0x4A, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5A, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69,
    0x6A, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7A, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89,
    0x8A, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7,
    0xA8, 0xA9, 0xAA, 0xB2, 0xB3, 0xB4, 0xB5, 0xB6, 0xB7, 0xB8, 0xB9, 0xBA, 0xC2, 0xC3, 0xC4, 0xC5,
    0xC6, 0xC7, 0xC8, 0xC9, 0xCA, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8, 0xD9, 0xDA, 0xE1, 0xE2,
    0xE3, 0xE4, 0xE5, 0xE6, 0xE7, 0xE8, 0xE9, 0xEA, 0xF1, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8,
    0xF9, 0xFA,
];

const CHROMA_AC_BITS: [u8; 16] = [0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77];
const CHROMA_AC_VALUES: [u8; 162] = [
    0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07, 0x61, 0x71,
    0x13, 0x22, 0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xA1, 0xB1, 0xC1, 0x09, 0x23, 0x33, 0x52, 0xF0,
    0x15, 0x62, 0x72, 0xD1, 0x0A, 0x16, 0x24, 0x34, 0xE1, 0x25, 0xF1, 0x17, 0x18, 0x19, 0x1A, 0x26,
    0x27, 0x28, 0x29, 0x2A, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3A, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48,
    0x49, 0x4A, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5A, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68,
    0x69, 0x6A, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7A, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87,
    0x88, 0x89, 0x8A, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0xA2, 0xA3, 0xA4, 0xA5,
    0xA6, 0xA7, 0xA8, 0xA9, 0xAA, 0xB2, 0xB3, 0xB4, 0xB5, 0xB6, 0xB7, 0xB8, 0xB9, 0xBA, 0xC2, 0xC3,
    0xC4, 0xC5, 0xC6, 0xC7, 0xC8, 0xC9, 0xCA, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8, 0xD9, 0xDA,
    0xE2, 0xE3, 0xE4, 0xE5, 0xE6, 0xE7, 0xE8, 0xE9, 0xEA, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8,
    0xF9, 0xFA,
];

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A smooth gradient with some texture, deterministic.
    fn picture(width: usize, height: usize, samples: usize) -> Vec<u8> {
        let mut pixels = Vec::with_capacity(width * height * samples);
        for y in 0..height {
            for x in 0..width {
                for c in 0..samples {
                    let value = (x * 255 / width.max(2)) * (c + 1) / 3
                        + (y * 200 / height.max(2)) * (3 - c) / 3
                        + ((x * 7 + y * 13 + c * 5) % 11);
                    pixels.push(u8::try_from(value.min(255)).unwrap());
                }
            }
        }
        pixels
    }

    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut state = seed;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_le_bytes()[3]
            })
            .collect()
    }

    fn decode(jpeg: &[u8]) -> (u16, u16, jpeg_decoder::PixelFormat, Vec<u8>) {
        let mut decoder = jpeg_decoder::Decoder::new(jpeg);
        let pixels = decoder.decode().expect("our JPEG decodes");
        let info = decoder.info().unwrap();
        (info.width, info.height, info.pixel_format, pixels)
    }

    /// Mean absolute difference per sample (also used by the DC decoder's tests).
    pub(crate) fn mean_error(a: &[u8], b: &[u8]) -> f64 {
        assert_eq!(a.len(), b.len());
        let total: u64 = a
            .iter()
            .zip(b)
            .map(|(x, y)| u64::from(x.abs_diff(*y)))
            .sum();
        #[allow(clippy::cast_precision_loss)]
        {
            total as f64 / a.len() as f64
        }
    }

    /// jpeg-encoder at the same quality, 4:2:0 with averaged chroma: the same tables.
    fn reference(
        pixels: &[u8],
        width: usize,
        height: usize,
        input: JpegInput,
        quality: u8,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        let mut encoder = jpeg_encoder::Encoder::new(&mut out, quality);
        encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_2);
        encoder.set_chroma_subsampling_method(jpeg_encoder::ChromaSubsamplingMethod::Average);
        let color = match input {
            JpegInput::Rgb => jpeg_encoder::ColorType::Rgb,
            JpegInput::Gray => jpeg_encoder::ColorType::Luma,
            JpegInput::YCbCr => jpeg_encoder::ColorType::Ycbcr,
        };
        let (w, h) = (
            u16::try_from(width).unwrap(),
            u16::try_from(height).unwrap(),
        );
        encoder.encode(pixels, w, h, color).unwrap();
        out
    }

    #[test]
    fn every_size_decodes_back_to_the_picture() {
        for (width, height) in [
            (1, 1),
            (2, 3),
            (8, 8),
            (16, 16),
            (17, 9),
            (33, 31),
            (301, 47),
        ] {
            for (input, samples, format) in [
                (JpegInput::Rgb, 3, jpeg_decoder::PixelFormat::RGB24),
                (JpegInput::Gray, 1, jpeg_decoder::PixelFormat::L8),
            ] {
                let pixels = picture(width, height, samples);
                let (w, h) = (
                    u32::try_from(width).unwrap(),
                    u32::try_from(height).unwrap(),
                );
                let jpeg = encode(&pixels, w, h, input, 95).unwrap();
                let (dw, dh, format_out, decoded) = decode(&jpeg);
                assert_eq!(
                    (usize::from(dw), usize::from(dh), format_out),
                    (width, height, format)
                );
                // Held to the reference encoder's error: tiny, textured pictures lose
                // detail to any JPEG encoder (and, in colour, to 4:2:0).
                let error = mean_error(&pixels, &decoded);
                let reference = reference(&pixels, width, height, input, 95);
                let bound = mean_error(&pixels, &decode(&reference).3) * 1.05 + 0.1;
                assert!(
                    error < bound,
                    "{width}x{height} {input:?}: mean error {error} (bound {bound})"
                );
            }
        }
    }

    #[test]
    fn quality_trades_size_for_error() {
        let pixels = picture(256, 192, 1);
        let mut last = (0usize, f64::MAX);
        for quality in [20, 50, 82, 95] {
            let jpeg = encode(&pixels, 256, 192, JpegInput::Gray, quality).unwrap();
            let error = mean_error(&pixels, &decode(&jpeg).3);
            assert!(
                jpeg.len() > last.0,
                "q{quality} is not larger than the last"
            );
            assert!(
                error < last.1,
                "q{quality} is not more faithful than the last"
            );
            last = (jpeg.len(), error);
        }
    }

    #[test]
    fn matches_the_reference_encoder_in_size_and_error() {
        let pixels = picture(320, 240, 3);
        // jpeg-encoder codes with the standard tables, 4:2:0.
        let settings = Settings {
            quality: 82,
            chroma: Chroma::Subsampled,
            huffman: Huffman::Standard,
        };
        let ours = encode_with(&pixels, 320, 240, JpegInput::Rgb, settings).unwrap();
        let reference = reference(&pixels, 320, 240, JpegInput::Rgb, 82);
        let our_error = mean_error(&pixels, &decode(&ours).3);
        let reference_error = mean_error(&pixels, &decode(&reference).3);
        #[allow(clippy::cast_precision_loss)]
        let size_ratio = ours.len() as f64 / reference.len() as f64;
        assert!((0.9..1.1).contains(&size_ratio), "size ratio {size_ratio}");
        assert!(
            our_error <= reference_error * 1.05,
            "error {our_error} vs {reference_error}"
        );
        // The default (optimized tables) is the same image in fewer bytes.
        let optimized = encode(&pixels, 320, 240, JpegInput::Rgb, 82).unwrap();
        assert!(optimized.len() < ours.len());
        assert_eq!(decode(&optimized).3, decode(&ours).3);
    }

    fn zune_decode(jpeg: &[u8]) -> Vec<u8> {
        let mut zune =
            zune_jpeg::JpegDecoder::new(zune_jpeg::zune_core::bytestream::ZCursor::new(jpeg));
        zune.decode().expect("zune-jpeg decodes it")
    }

    /// The segments before the scan, as (marker, body).
    fn segments(jpeg: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut found = Vec::new();
        let mut pos = 2;
        loop {
            assert_eq!(jpeg[pos], 0xFF);
            let marker = jpeg[pos + 1];
            let length = usize::from(u16::from_be_bytes([jpeg[pos + 2], jpeg[pos + 3]]));
            found.push((marker, jpeg[pos + 4..pos + 2 + length].to_vec()));
            if marker == 0xDA {
                return found;
            }
            pos += 2 + length;
        }
    }

    /// Per component of the frame: (id, sampling factors byte, quantization table).
    fn frame_components(jpeg: &[u8]) -> Vec<(u8, u8, u8)> {
        let (_, sof) = segments(jpeg)
            .into_iter()
            .find(|(marker, _)| *marker == 0xC0)
            .expect("a baseline SOF");
        sof[6..]
            .chunks_exact(3)
            .map(|c| (c[0], c[1], c[2]))
            .collect()
    }

    #[test]
    fn optimized_tables_change_only_the_entropy_coding() {
        let cases = [
            (picture(320, 240, 3), 320, 240, JpegInput::Rgb),
            (picture(97, 61, 3), 97, 61, JpegInput::YCbCr),
            (picture(203, 117, 1), 203, 117, JpegInput::Gray),
            (noise(75 * 41 * 3, 11), 75, 41, JpegInput::Rgb),
        ];
        for (pixels, width, height, input) in &cases {
            for quality in [10, 50, 82, 90, 100] {
                let standard = Settings {
                    quality,
                    chroma: Chroma::Auto,
                    huffman: Huffman::Standard,
                };
                let optimized = Settings {
                    huffman: Huffman::Optimized,
                    ..standard
                };
                let a = encode_with(pixels, *width, *height, *input, standard).unwrap();
                let b = encode_with(pixels, *width, *height, *input, optimized).unwrap();
                let what = format!("{width}x{height} {input:?} q{quality}");
                // The same frame and quantization; other Huffman tables.
                let (sa, sb) = (segments(&a), segments(&b));
                let without_dht = |s: &[(u8, Vec<u8>)]| {
                    s.iter()
                        .filter(|(m, _)| *m != 0xC4)
                        .cloned()
                        .collect::<Vec<_>>()
                };
                assert_eq!(without_dht(&sa), without_dht(&sb), "{what}");
                assert_ne!(a, b, "{what}");
                // Every decoder sees the same coefficients: the same pixels, exactly.
                let (aw, ah, af, ap) = decode(&a);
                let (bw, bh, bf, bp) = decode(&b);
                assert_eq!((aw, ah, af), (bw, bh, bf), "{what}");
                assert!(ap == bp, "{what}: jpeg-decoder pixels differ");
                assert!(
                    zune_decode(&a) == zune_decode(&b),
                    "{what}: zune-jpeg pixels differ"
                );
                // Optimal tables never code the scan longer; their DHT may be a little
                // longer only when the standard one omits symbols the image uses.
                if *width >= 200 {
                    assert!(b.len() < a.len(), "{what}: {} >= {}", b.len(), a.len());
                }
            }
        }
    }

    /// (length of each counted symbol's code, table) for symbol counts.
    fn code_lengths(counts: &[u32; 256]) -> ([u32; 256], HuffmanTable) {
        let table = HuffmanTable::optimal(counts);
        let codes = table.codes();
        (codes.length, table)
    }

    #[test]
    fn optimal_tables_are_complete_limited_prefix_codes() {
        let mut skewed = [0u32; 256];
        // Fibonacci counts: an unlimited Huffman code would need 40-bit codes.
        let (mut a, mut b) = (1u32, 1u32);
        for count in skewed.iter_mut().take(40) {
            *count = a;
            (a, b) = (b, a.saturating_add(b));
        }
        let mut single = [0u32; 256];
        single[0x31] = 1000;
        let flat = [7u32; 256];
        let empty = [0u32; 256];
        let mut random = [0u32; 256];
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        for count in &mut random {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *count = u32::try_from(state % 5000).unwrap() * u32::from(!state.is_multiple_of(3));
        }
        for (counts, limited) in [
            (skewed, true),
            (single, false),
            (flat, false),
            (empty, false),
            (random, false),
        ] {
            let (lengths, table) = code_lengths(&counts);
            let total: usize = table.bits.iter().map(|&b| usize::from(b)).sum();
            assert_eq!(total, table.values.len());
            let mut seen = [false; 256];
            for &v in &table.values {
                assert!(!seen[usize::from(v)], "symbol {v} listed twice");
                seen[usize::from(v)] = true;
            }
            // Every counted symbol has a code of 1 to 16 bits.
            for (symbol, &count) in counts.iter().enumerate() {
                if count > 0 {
                    assert!(seen[symbol], "symbol {symbol} has no code");
                    assert!((1..=16).contains(&lengths[symbol]));
                }
            }
            // Kraft: strictly below 1, since the all-ones code stays unused.
            let kraft: f64 = (1..=16)
                .map(|l| f64::from(table.bits[l - 1]) / f64::from(1u32 << l))
                .sum();
            assert!(kraft < 1.0, "Kraft sum {kraft}");
            // A more frequent symbol never has a longer code (limiting to 16 bits
            // shortens codes in symbol order within one length, so not there).
            for x in (0..256).filter(|_| !limited) {
                for y in 0..256 {
                    if counts[x] > counts[y] && counts[y] > 0 {
                        assert!(lengths[x] <= lengths[y], "{x} vs {y}");
                    }
                }
            }
        }
        // Two symbols, equal counts: one bit each would leave no room for the reserved
        // all-ones code, so one gets two bits.
        let mut two = [0u32; 256];
        two[0] = 5;
        two[1] = 5;
        let (lengths, _) = code_lengths(&two);
        let mut pair = [lengths[0], lengths[1]];
        pair.sort_unstable();
        assert_eq!(pair, [1, 2]);
        // The skewed counts were limited: exactly 16 bits at the long end.
        let (lengths, _) = code_lengths(&skewed);
        assert_eq!(lengths.iter().max(), Some(&16));
    }

    #[test]
    fn chroma_is_full_from_quality_90_and_subsampled_below() {
        let pixels = picture(41, 23, 3);
        for (quality, chroma, factors) in [
            (1, Chroma::Auto, 0x22),
            (82, Chroma::Auto, 0x22),
            (89, Chroma::Auto, 0x22),
            (90, Chroma::Auto, 0x11),
            (100, Chroma::Auto, 0x11),
            (50, Chroma::Full, 0x11),
            (95, Chroma::Subsampled, 0x22),
        ] {
            for input in [JpegInput::Rgb, JpegInput::YCbCr] {
                let settings = Settings {
                    quality,
                    chroma,
                    huffman: Huffman::Optimized,
                };
                let jpeg = encode_with(&pixels, 41, 23, input, settings).unwrap();
                assert_eq!(
                    frame_components(&jpeg),
                    [(1, factors, 0), (2, 0x11, 1), (3, 0x11, 1)],
                    "q{quality} {chroma:?} {input:?}"
                );
                let (w, h, _, decoded) = decode(&jpeg);
                assert_eq!((w, h, decoded.len()), (41, 23, 41 * 23 * 3));
                assert_eq!(zune_decode(&jpeg).len(), 41 * 23 * 3);
            }
        }
        let gray = encode(&picture(41, 23, 1), 41, 23, JpegInput::Gray, 95).unwrap();
        assert_eq!(frame_components(&gray), [(1, 0x11, 0)]);
    }

    #[test]
    fn full_chroma_keeps_colour_detail_that_subsampling_loses() {
        // One-pixel red/blue stripes: 4:2:0 averages them into purple.
        let (width, height) = (64usize, 48usize);
        let pixels: Vec<u8> = (0..width * height)
            .flat_map(|i| {
                if (i % width) % 2 == 0 {
                    [200, 40, 40]
                } else {
                    [40, 40, 200]
                }
            })
            .collect();
        let error = |chroma| {
            let settings = Settings {
                quality: 95,
                chroma,
                huffman: Huffman::Optimized,
            };
            let jpeg = encode_with(&pixels, 64, 48, JpegInput::Rgb, settings).unwrap();
            mean_error(&pixels, &decode(&jpeg).3)
        };
        let (full, subsampled) = (error(Chroma::Full), error(Chroma::Subsampled));
        assert!(full * 4.0 < subsampled, "4:4:4 {full}, 4:2:0 {subsampled}");
    }

    #[test]
    fn noise_at_full_quality_uses_every_category_and_stays_valid() {
        for (input, samples) in [(JpegInput::Rgb, 3), (JpegInput::Gray, 1)] {
            let pixels = noise(97 * 61 * samples, 7);
            let jpeg = encode(&pixels, 97, 61, input, 100).unwrap();
            let error = mean_error(&pixels, &decode(&jpeg).3);
            let reference = reference(&pixels, 97, 61, input, 100);
            let bound = mean_error(&pixels, &decode(&reference).3) * 1.03 + 0.05;
            assert!(
                error < bound,
                "{input:?}: mean error {error} (bound {bound})"
            );
            // zune-jpeg is stricter about the entropy-coded data than jpeg-decoder.
            let mut zune =
                zune_jpeg::JpegDecoder::new(zune_jpeg::zune_core::bytestream::ZCursor::new(&jpeg));
            zune.decode().expect("zune-jpeg decodes it");
            let info = zune.info().unwrap();
            assert_eq!((info.width, info.height), (97, 61));
        }
    }

    #[test]
    fn ycbcr_input_is_stored_as_the_rgb_it_stands_for() {
        let (width, height) = (67usize, 45usize);
        let rgb = picture(width, height, 3);
        let ycbcr: Vec<u8> = rgb
            .chunks_exact(3)
            .flat_map(|p| {
                let (r, g, b) = (f32::from(p[0]), f32::from(p[1]), f32::from(p[2]));
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let sample = |v: f32| (v + 0.5).clamp(0.0, 255.0) as u8;
                [
                    sample(0.299 * r + 0.587 * g + 0.114 * b),
                    sample(-0.168_736 * r - 0.331_264 * g + 0.5 * b + 128.0),
                    sample(0.5 * r - 0.418_688 * g - 0.081_312 * b + 128.0),
                ]
            })
            .collect();
        let (w, h) = (
            u32::try_from(width).unwrap(),
            u32::try_from(height).unwrap(),
        );
        let from_rgb = encode(&rgb, w, h, JpegInput::Rgb, 90).unwrap();
        let from_ycbcr = encode(&ycbcr, w, h, JpegInput::YCbCr, 90).unwrap();
        let (_, _, format, decoded) = decode(&from_ycbcr);
        assert_eq!(format, jpeg_decoder::PixelFormat::RGB24);
        let rgb_error = mean_error(&rgb, &decode(&from_rgb).3);
        let ycbcr_error = mean_error(&rgb, &decoded);
        assert!(
            (ycbcr_error - rgb_error).abs() < 0.25,
            "from YCbCr {ycbcr_error}, from RGB {rgb_error}"
        );
    }

    #[test]
    fn random_sizes_qualities_and_layouts_always_decode() {
        // Every MCU-edge case (widths and heights around multiples of 8 and 16) with
        // random content, qualities and layouts: both decoders accept every file.
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = |bound: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % bound
        };
        for _ in 0..120 {
            let width = usize::try_from(1 + next(40)).unwrap();
            let height = usize::try_from(1 + next(40)).unwrap();
            let quality = u8::try_from(1 + next(100)).unwrap();
            let (input, samples) = match next(3) {
                0 => (JpegInput::Gray, 1),
                1 => (JpegInput::Rgb, 3),
                _ => (JpegInput::YCbCr, 3),
            };
            let pixels = noise(width * height * samples, next(u64::MAX));
            let (w, h) = (
                u32::try_from(width).unwrap(),
                u32::try_from(height).unwrap(),
            );
            let jpeg = encode(&pixels, w, h, input, quality).unwrap();
            let (dw, dh, _, decoded) = decode(&jpeg);
            assert_eq!((usize::from(dw), usize::from(dh)), (width, height));
            assert_eq!(decoded.len(), width * height * samples);
            let mut zune =
                zune_jpeg::JpegDecoder::new(zune_jpeg::zune_core::bytestream::ZCursor::new(&jpeg));
            zune.decode()
                .unwrap_or_else(|e| panic!("{width}x{height} q{quality} {input:?}: {e:?}"));
        }
    }

    #[test]
    fn extremes_stay_within_the_tables() {
        // Black-white checkerboards give the largest coefficients there are.
        let mut pixels = Vec::new();
        for y in 0..64 {
            for x in 0..64 {
                let on = (x + y) % 2 == 0 || (x / 8 + y / 8) % 3 == 0;
                pixels.extend_from_slice(&if on { [255, 255, 255] } else { [0, 0, 0] });
            }
        }
        for quality in [1, 100] {
            let jpeg = encode(&pixels, 64, 64, JpegInput::Rgb, quality).unwrap();
            assert_eq!(decode(&jpeg).3.len(), pixels.len());
        }
    }

    #[test]
    fn writes_no_metadata() {
        let jpeg = encode(&picture(40, 30, 3), 40, 30, JpegInput::Rgb, 82).unwrap();
        let mut markers = Vec::new();
        let mut pos = 2;
        while jpeg[pos] == 0xFF && jpeg[pos + 1] != 0xDA {
            markers.push(jpeg[pos + 1]);
            pos += 2 + usize::from(u16::from_be_bytes([jpeg[pos + 2], jpeg[pos + 3]]));
        }
        assert_eq!(markers, [0xE0, 0xDB, 0xC0, 0xC4]);
        assert_eq!(&jpeg[..2], &[0xFF, 0xD8]);
        assert_eq!(&jpeg[jpeg.len() - 2..], &[0xFF, 0xD9]);
    }

    #[test]
    fn refuses_what_a_jpeg_cannot_hold() {
        assert_eq!(
            encode(&[], 0, 5, JpegInput::Gray, 80),
            Err(JpegError::Dimensions {
                width: 0,
                height: 5
            })
        );
        assert!(matches!(
            encode(&[0; 10], 70_000, 1, JpegInput::Gray, 80),
            Err(JpegError::Dimensions { .. })
        ));
        assert_eq!(
            encode(&[0; 10], 2, 2, JpegInput::Rgb, 80),
            Err(JpegError::ShortPixels {
                expected: 12,
                actual: 10
            })
        );
    }

    #[test]
    fn huffman_codes_are_canonical() {
        let dc = HuffmanCodes::new(&LUMA_DC_BITS, &LUMA_DC_VALUES);
        // T.81 Table K.3: category 0 is 00, 1 is 010, 11 is 111111110.
        assert_eq!((dc.code[0], dc.length[0]), (0b00, 2));
        assert_eq!((dc.code[1], dc.length[1]), (0b010, 3));
        assert_eq!((dc.code[11], dc.length[11]), (0b1_1111_1110, 9));
        let ac = HuffmanCodes::new(&LUMA_AC_BITS, &LUMA_AC_VALUES);
        // Table K.5: EOB is 1010, ZRL is 11111111001.
        assert_eq!((ac.code[0x00], ac.length[0x00]), (0b1010, 4));
        assert_eq!((ac.code[0xF0], ac.length[0xF0]), (0b111_1111_1001, 11));
        assert_eq!(
            LUMA_AC_BITS.iter().map(|&b| usize::from(b)).sum::<usize>(),
            162
        );
        assert_eq!(
            CHROMA_AC_BITS
                .iter()
                .map(|&b| usize::from(b))
                .sum::<usize>(),
            162
        );
    }
}
