//! Colour handling: embedded ICC profiles to sRGB (through moxcms, plus gray profiles with
//! a Lab PCS and black-point compensation for CMYK, which it lacks), and CMYK to RGB.
//!
//! Outputs never embed a profile, so whatever is not converted here is shown as sRGB.

use std::sync::Arc;

use moxcms::{
    ColorProfile, DataColorSpace, Layout, RenderingIntent, ToneReprCurve, Transform8BitExecutor,
    TransformOptions,
};

use crate::header::PngColor;
use crate::raster::{Channels, Raster};

/// What became of an embedded profile; reported as [`crate::ImageMetadata::icc_profile`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IccOutcome {
    Converted,
    Dropped,
}

impl IccOutcome {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Converted => "srgb-converted",
            Self::Dropped => "dropped",
        }
    }
}

/// A ready transform from an embedded profile to sRGB for one pixel layout.
pub(crate) struct SrgbTransform {
    conversion: Conversion,
    channels: Channels,
}

enum Conversion {
    /// Through moxcms.
    Cms(Arc<Transform8BitExecutor>),
    /// Each gray sample to its sRGB gray (see [`gray_lab_table`]).
    Gray(Box<[u8; 256]>),
}

impl std::fmt::Debug for SrgbTransform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrgbTransform")
            .field("channels", &self.channels)
            .finish_non_exhaustive()
    }
}

/// Largest ICC profile used. Display and camera profiles are a few KiB, the largest
/// common print profiles well under 1 MiB; a larger one is dropped unparsed, and the
/// header readers never copy or inflate more than this (a profile's size is input-controlled
/// and, in a PNG, compressed).
pub(crate) const MAX_ICC_BYTES: usize = 4 * 1024 * 1024;

/// Rows converted per call: bounds the scratch buffer to a few hundred KiB.
const ROWS_PER_BATCH: usize = 32;

impl SrgbTransform {
    /// Builds the transform for pixels laid out as `channels`; `None` if the profile cannot
    /// be parsed or does not describe that kind of pixel (the profile is then dropped).
    pub(crate) fn new(icc: &[u8], channels: Channels) -> Option<Self> {
        if icc.len() > MAX_ICC_BYTES {
            return None;
        }
        let profile = ColorProfile::new_from_slice(icc).ok()?;
        let (layout, expected_space) = match channels {
            Channels::Gray => (Layout::Gray, DataColorSpace::Gray),
            Channels::Rgb => (Layout::Rgb, DataColorSpace::Rgb),
            Channels::Rgba => (Layout::Rgba, DataColorSpace::Rgb),
            // Never made when a profile is to be applied; see `Channels::YCbCr`.
            Channels::YCbCr => return None,
        };
        if profile.color_space != expected_space {
            return None;
        }
        if profile.color_space == DataColorSpace::Gray && profile.pcs == DataColorSpace::Lab {
            // moxcms 0.9 builds no transform for this (it needs an XYZ PCS for gray).
            return Some(Self {
                conversion: Conversion::Gray(gray_lab_table(&profile)?),
                channels,
            });
        }
        let srgb = ColorProfile::new_srgb();
        let executor = profile
            .create_transform_8bit(layout, &srgb, layout, TransformOptions::default())
            .ok()?;
        Some(Self {
            conversion: Conversion::Cms(executor),
            channels,
        })
    }

    /// Converts the raster in place, a batch of rows at a time.
    pub(crate) fn apply(&self, raster: &mut Raster) -> bool {
        if raster.channels != self.channels {
            return false;
        }
        self.apply_samples(&mut raster.pixels, raster.width as usize)
    }

    /// Converts interleaved samples in place (rows of `width` pixels, or a palette).
    pub(crate) fn apply_samples(&self, samples: &mut [u8], width: usize) -> bool {
        let executor = match &self.conversion {
            Conversion::Cms(executor) => executor,
            Conversion::Gray(table) => {
                for sample in samples {
                    *sample = table[usize::from(*sample)];
                }
                return true;
            }
        };
        let batch = (width * self.channels.count() * ROWS_PER_BATCH).max(1);
        let mut scratch = vec![0u8; batch.min(samples.len())];
        for chunk in samples.chunks_mut(batch) {
            let out = &mut scratch[..chunk.len()];
            if executor.transform(chunk, out).is_err() {
                return false;
            }
            chunk.copy_from_slice(out);
        }
        true
    }
}

/// CIE L* (0-100) to relative luminance Y (0-1, white = 1).
fn lightness_to_y(lightness: f64) -> f64 {
    let f = (lightness + 16.0) / 116.0;
    if f > 6.0 / 29.0 {
        f * f * f
    } else {
        // Below the cube's joint (L* = 8) the curve is linear: Y = L* / kappa.
        lightness * 27.0 / 24_389.0
    }
}

/// Relative luminance Y to CIE L*.
fn y_to_lightness(y: f64) -> f64 {
    if y > 216.0 / 24_389.0 {
        116.0 * y.cbrt() - 16.0
    } else {
        y * 24_389.0 / 27.0
    }
}

/// The sRGB gray of every 8-bit sample of a gray profile whose PCS is Lab. The ICC
/// specification has such a profile's `grayTRC` give L* / 100 (a* = b* = 0): the sample
/// goes through the curve to L*, L* to luminance relative to the media white (relative
/// colorimetric, so the profile's white is sRGB white), and that luminance is encoded with
/// the sRGB curve (a neutral stays neutral, so one gray sample carries it).
fn gray_lab_table(profile: &ColorProfile) -> Option<Box<[u8; 256]>> {
    let curve = profile.build_8bit_lin_table(&profile.gray_trc).ok()?;
    let mut table = Box::new([0u8; 256]);
    for (out, value) in table.iter_mut().zip(curve.iter()) {
        let lightness = f64::from(*value).clamp(0.0, 1.0) * 100.0;
        *out = srgb_encode(lightness_to_y(lightness));
    }
    Some(table)
}

/// Converts the raster's colours to sRGB from `icc`; `Dropped` when the profile is unusable.
pub(crate) fn convert_to_srgb(raster: &mut Raster, icc: &[u8]) -> IccOutcome {
    if let Some(rgb) = raster.to_rgb() {
        *raster = rgb;
    }
    match SrgbTransform::new(icc, raster.channels) {
        Some(transform) if transform.apply(raster) => IccOutcome::Converted,
        _ => IccOutcome::Dropped,
    }
}

/// Converts ink amounts (C, M, Y, K; 0 = no ink) to RGB: through `icc` when it is a usable
/// CMYK profile, else with the simple subtractive formula viewers fall back on.
pub(crate) fn cmyk_to_rgb(
    width: u32,
    height: u32,
    cmyk: &[u8],
    icc: Option<&[u8]>,
) -> (Raster, Option<IccOutcome>) {
    if let Some(icc) = icc
        && let Some(pixels) = cmyk_through_profile(cmyk, icc)
    {
        return (
            Raster::new(width, height, Channels::Rgb, pixels),
            Some(IccOutcome::Converted),
        );
    }
    let pixels = cmyk
        .chunks_exact(4)
        .flat_map(|p| {
            let white = 255 - u32::from(p[3]);
            let channel = |ink: u8| {
                let value = ((255 - u32::from(ink)) * white + 127) / 255;
                u8::try_from(value).unwrap_or(u8::MAX)
            };
            [channel(p[0]), channel(p[1]), channel(p[2])]
        })
        .collect();
    (
        Raster::new(width, height, Channels::Rgb, pixels),
        icc.map(|_| IccOutcome::Dropped),
    )
}

/// Pixels converted per call of the CMYK transform.
const CMYK_BATCH: usize = 4096;

/// CMYK through its profile to sRGB: relative colorimetric with black-point compensation,
/// as Little CMS and Photoshop convert print CMYK for screens. Without it the paper's
/// white becomes sRGB white but the darkest ink mix stays a dark gray (a printer's black
/// is far lighter than a screen's), and every shadow looks washed out.
///
/// moxcms 0.9 has no black-point compensation for CMYK, so it is done here: moxcms
/// converts to linear-light sRGB (floating point, unclipped), each pixel is scaled so the
/// source black lands on sRGB black (see [`black_point_compensation`]), then encoded with
/// the sRGB curve.
fn cmyk_through_profile(cmyk: &[u8], icc: &[u8]) -> Option<Vec<u8>> {
    if icc.len() > MAX_ICC_BYTES {
        return None;
    }
    let profile = ColorProfile::new_from_slice(icc).ok()?;
    if profile.color_space != DataColorSpace::Cmyk {
        return None;
    }
    let options = TransformOptions {
        rendering_intent: RenderingIntent::RelativeColorimetric,
        // Linear output is the point; never take sRGB's transfer from its CICP tag.
        allow_use_cicp_transfer: false,
        ..TransformOptions::default()
    };
    // moxcms reads CMYK through the four-channel RGBA layout.
    let executor = profile
        .create_transform_f32(Layout::Rgba, &linear_srgb(), Layout::Rgb, options)
        .ok()?;
    let mut black = [0f32; 3];
    executor.transform(&[1.0; 4], &mut black).ok()?;
    let (offset, scale) = black_point_compensation(black);
    let encode = SrgbEncodeTable::new();

    let mut rgb = vec![0u8; cmyk.len() / 4 * 3];
    let mut inks = vec![0f32; CMYK_BATCH * 4];
    let mut light = vec![0f32; CMYK_BATCH * 3];
    for (src, dst) in cmyk
        .chunks(4 * CMYK_BATCH)
        .zip(rgb.chunks_mut(3 * CMYK_BATCH))
    {
        let inks = &mut inks[..src.len()];
        for (ink, &value) in inks.iter_mut().zip(src) {
            *ink = f32::from(value) / 255.0;
        }
        let light = &mut light[..dst.len()];
        executor.transform(inks, light).ok()?;
        for (out, &value) in dst.iter_mut().zip(light.iter()) {
            *out = encode.sample((value - offset) * scale);
        }
    }
    Some(rgb)
}

/// sRGB's primaries and white with linear-light curves.
fn linear_srgb() -> ColorProfile {
    let mut profile = ColorProfile::new_srgb();
    // An empty table is the identity curve.
    let linear = ToneReprCurve::Lut(Vec::new());
    profile.red_trc = Some(linear.clone());
    profile.green_trc = Some(linear.clone());
    profile.blue_trc = Some(linear);
    profile.cicp = None;
    profile
}

/// Lightness above which a detected black point is not believed (Little CMS's clip).
const MAX_BLACK_LIGHTNESS: f64 = 50.0;

/// The `(offset, scale)` of black-point compensation to sRGB, for linear sRGB values
/// `(v - offset) * scale`, given the linear sRGB of the source profile's black.
///
/// As Little CMS's `cmsDetectBlackPoint` and `ComputeBlackPointCompensation`: the black is
/// taken as the darkest colorant (all four inks at 100 %) through the relative
/// colorimetric table, its L* clipped to at most 50 and its a* and b* set to 0 (a neutral
/// black of luminance `Yb`), and XYZ relative to the white is scaled linearly so that
/// black maps to the destination's black (sRGB's is 0) and white stays white:
/// `Y' = (Y - Yb) / (1 - Yb)`, the same for X and Z. A neutral black is the same fraction
/// of each white component, and linear sRGB is a linear map of XYZ taking white to (1, 1,
/// 1), so the same scaling applies to each linear sRGB channel, which is where it is done.
///
/// One simplification: for an output (printer) CMYK profile Little CMS finds the black
/// through a perceptual round trip (Lab black to CMYK through `B2A0`, back through the
/// colorimetric table), which lands on the darkest mix the profile's ink limit allows;
/// here it is always 100 % of all inks, which Little CMS uses for the other profile classes.
/// With a heavily ink-limited profile this black can be a little darker than the darkest
/// printable one, so the image's blacks may stay a few levels above 0.
fn black_point_compensation(black: [f32; 3]) -> (f32, f32) {
    // Luminance row of linear sRGB to XYZ (D65, white Y = 1).
    let y = 0.212_639 * f64::from(black[0])
        + 0.715_169 * f64::from(black[1])
        + 0.072_192 * f64::from(black[2]);
    if !y.is_finite() || y <= 0.0 {
        return (0.0, 1.0);
    }
    let black_y = lightness_to_y(y_to_lightness(y).min(MAX_BLACK_LIGHTNESS));
    #[allow(clippy::cast_possible_truncation)]
    (black_y as f32, (1.0 / (1.0 - black_y)) as f32)
}

/// Linear light (0-1) to 8-bit sRGB samples, by table.
struct SrgbEncodeTable(Vec<u8>);

impl SrgbEncodeTable {
    fn new() -> Self {
        Self(
            (0..=ENCODE_STEPS)
                .map(|step| {
                    #[allow(clippy::cast_precision_loss)]
                    let linear = step as f64 / ENCODE_STEPS as f64;
                    srgb_encode(linear)
                })
                .collect(),
        )
    }

    fn sample(&self, linear: f32) -> u8 {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let step = (linear.clamp(0.0, 1.0) * ENCODE_STEPS as f32).round() as usize;
        self.0[step.min(ENCODE_STEPS)]
    }
}

/// A PNG's `gAMA` (and `cHRM`) applied as browsers and libpng apply them when the file has
/// no `iCCP` and no `sRGB` chunk: samples decoded with the exponent `100000 / gAMA` (the
/// sRGB curve when only `cHRM` is given), primaries and white point from `cHRM` mapped to
/// sRGB's (Bradford adaptation to D65, relative colorimetric: the file's white becomes
/// sRGB white), then encoded with the sRGB curve. A `gAMA` of 1/2.2 (45455, within 1 %)
/// without `cHRM` is what almost every PNG writer stamps on sRGB pixels and is taken as
/// sRGB, as browsers take it. Alpha is never changed.
pub(crate) struct PngGamma {
    /// Sample value to linear light.
    decode: [f32; 256],
    /// Linear source RGB to linear sRGB, when `cHRM` says the primaries differ.
    matrix: Option<[[f32; 3]; 3]>,
    /// Per-sample result when there is no matrix.
    direct: [u8; 256],
    /// Linear light in [`ENCODE_STEPS`] steps to sRGB samples, for the matrix path.
    encode: Vec<u8>,
}

/// Steps of the linear-to-sRGB table: fine enough that no step moves a sample by more
/// than one level.
const ENCODE_STEPS: usize = 8192;

/// Linear light (0-1) to an 8-bit sRGB sample.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn srgb_encode(linear: f64) -> u8 {
    let linear = linear.clamp(0.0, 1.0);
    let encoded = if linear <= 0.003_130_8 {
        linear * 12.92
    } else {
        1.055 * linear.powf(1.0 / 2.4) - 0.055
    };
    (encoded * 255.0).round().clamp(0.0, 255.0) as u8
}

fn srgb_decode(encoded: f64) -> f64 {
    if encoded <= 0.040_45 {
        encoded / 12.92
    } else {
        ((encoded + 0.055) / 1.055).powf(2.4)
    }
}

type Matrix = [[f64; 3]; 3];

fn multiply(a: &Matrix, b: &Matrix) -> Matrix {
    let mut out = [[0.0; 3]; 3];
    for (i, row) in out.iter_mut().enumerate() {
        for (j, value) in row.iter_mut().enumerate() {
            *value = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    out
}

fn invert(m: &Matrix) -> Option<Matrix> {
    let det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
    if det.abs() < 1e-12 || !det.is_finite() {
        return None;
    }
    let cofactor =
        |r0: usize, r1: usize, c0: usize, c1: usize| m[r0][c0] * m[r1][c1] - m[r0][c1] * m[r1][c0];
    Some([
        [
            cofactor(1, 2, 1, 2) / det,
            -cofactor(0, 2, 1, 2) / det,
            cofactor(0, 1, 1, 2) / det,
        ],
        [
            -cofactor(1, 2, 0, 2) / det,
            cofactor(0, 2, 0, 2) / det,
            -cofactor(0, 1, 0, 2) / det,
        ],
        [
            cofactor(1, 2, 0, 1) / det,
            -cofactor(0, 2, 0, 1) / det,
            cofactor(0, 1, 0, 1) / det,
        ],
    ])
}

fn apply(m: &Matrix, v: [f64; 3]) -> [f64; 3] {
    [0, 1, 2].map(|i| m[i][0] * v[0] + m[i][1] * v[1] + m[i][2] * v[2])
}

/// XYZ of a chromaticity at Y = 1.
fn xyz(x: f64, y: f64) -> [f64; 3] {
    [x / y, 1.0, (1.0 - x - y) / y]
}

/// Linear RGB to XYZ for primaries and white point given as (x, y) pairs.
fn rgb_to_xyz(white: (f64, f64), primaries: [(f64, f64); 3]) -> Option<Matrix> {
    let columns = primaries.map(|(x, y)| xyz(x, y));
    let m: Matrix = [0, 1, 2].map(|i| [columns[0][i], columns[1][i], columns[2][i]]);
    let scale = apply(&invert(&m)?, xyz(white.0, white.1));
    Some([0, 1, 2].map(|i| [0, 1, 2].map(|j| m[i][j] * scale[j])))
}

const SRGB_WHITE: (f64, f64) = (0.3127, 0.3290);
const SRGB_PRIMARIES: [(f64, f64); 3] = [(0.64, 0.33), (0.30, 0.60), (0.15, 0.06)];

/// Bradford adaptation from one white point to another, in XYZ.
fn bradford(from: (f64, f64), to: (f64, f64)) -> Option<Matrix> {
    const B: Matrix = [
        [0.8951, 0.2664, -0.1614],
        [-0.7502, 1.7135, 0.0367],
        [0.0389, -0.0685, 1.0296],
    ];
    let source = apply(&B, xyz(from.0, from.1));
    let target = apply(&B, xyz(to.0, to.1));
    let mut scale = [[0.0; 3]; 3];
    for i in 0..3 {
        scale[i][i] = target[i] / source[i];
    }
    Some(multiply(&invert(&B)?, &multiply(&scale, &B)))
}

/// Linear RGB of the `cHRM` primaries to linear sRGB; `None` when they are sRGB's (within
/// rounding) or unusable.
fn chrm_matrix(values: [u32; 8]) -> Option<Matrix> {
    let v = values.map(|v| f64::from(v) / 100_000.0);
    let white = (v[0], v[1]);
    let primaries = [(v[2], v[3]), (v[4], v[5]), (v[6], v[7])];
    let close =
        |a: (f64, f64), b: (f64, f64)| (a.0 - b.0).abs() < 0.001 && (a.1 - b.1).abs() < 0.001;
    if close(white, SRGB_WHITE) && (0..3).all(|i| close(primaries[i], SRGB_PRIMARIES[i])) {
        return None;
    }
    if [white, primaries[0], primaries[1], primaries[2]]
        .iter()
        .any(|&(x, y)| !(0.0..=1.0).contains(&x) || !(0.001..=1.0).contains(&y))
    {
        return None;
    }
    let source = rgb_to_xyz(white, primaries)?;
    let to_srgb = invert(&rgb_to_xyz(SRGB_WHITE, SRGB_PRIMARIES)?)?;
    Some(multiply(
        &to_srgb,
        &multiply(&bradford(white, SRGB_WHITE)?, &source),
    ))
}

impl PngGamma {
    /// The transform a PNG's colour chunks call for; `None` when its pixels are sRGB
    /// already (or the chunks are unusable, which decoders ignore too).
    pub(crate) fn new(color: &PngColor) -> Option<Self> {
        if color.srgb {
            return None;
        }
        let matrix = color.chromaticities.and_then(chrm_matrix);
        let exponent = match color.gamma {
            // Outside 0.01-10 as a decoding exponent: ignored, as libpng ignores it.
            Some(gamma) if (10_000..=10_000_000).contains(&gamma) => {
                Some(100_000.0 / f64::from(gamma))
            }
            _ => None,
        };
        let near_srgb = exponent.is_none_or(|e| (e - 2.2).abs() < 0.022);
        if matrix.is_none() && near_srgb {
            return None;
        }
        let mut decode = [0f32; 256];
        let mut direct = [0u8; 256];
        for (value, (linear, out)) in decode.iter_mut().zip(direct.iter_mut()).enumerate() {
            let encoded = f64::from(u8::try_from(value).unwrap_or(u8::MAX)) / 255.0;
            let light = match exponent {
                Some(exponent) => encoded.powf(exponent),
                None => srgb_decode(encoded),
            };
            #[allow(clippy::cast_possible_truncation)]
            {
                *linear = light as f32;
            }
            *out = srgb_encode(light);
        }
        #[allow(clippy::cast_possible_truncation)]
        let matrix = matrix.map(|m| m.map(|row| row.map(|v| v as f32)));
        let encode = if matrix.is_some() {
            (0..=ENCODE_STEPS)
                .map(|step| {
                    #[allow(clippy::cast_precision_loss)]
                    let linear = step as f64 / ENCODE_STEPS as f64;
                    srgb_encode(linear)
                })
                .collect()
        } else {
            Vec::new()
        };
        Some(Self {
            decode,
            matrix,
            direct,
            encode,
        })
    }

    /// Converts interleaved samples of `channels` in place.
    pub(crate) fn apply_samples(&self, samples: &mut [u8], channels: Channels) {
        let colour = if channels == Channels::Gray { 1 } else { 3 };
        let step = channels.count();
        match (&self.matrix, colour) {
            (Some(m), 3) => {
                for pixel in samples.chunks_exact_mut(step) {
                    let lin = [0, 1, 2].map(|i| self.decode[usize::from(pixel[i])]);
                    for (i, row) in m.iter().enumerate() {
                        let value = row[0] * lin[0] + row[1] * lin[1] + row[2] * lin[2];
                        #[allow(
                            clippy::cast_possible_truncation,
                            clippy::cast_sign_loss,
                            clippy::cast_precision_loss
                        )]
                        let step = (value.clamp(0.0, 1.0) * ENCODE_STEPS as f32).round() as usize;
                        pixel[i] = self.encode[step.min(ENCODE_STEPS)];
                    }
                }
            }
            _ => {
                for pixel in samples.chunks_exact_mut(step) {
                    for sample in &mut pixel[..colour] {
                        *sample = self.direct[usize::from(*sample)];
                    }
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "../tests/common/icc.rs"]
mod icc;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gray_profile_with_a_lab_pcs_is_converted_through_lightness() {
        // Gamma 563/256 (2.2 as u8Fixed8) from sample to L* / 100.
        let profile = icc::gray_lab(0x0233);
        assert!(SrgbTransform::new(&profile, Channels::Rgb).is_none());
        let transform = SrgbTransform::new(&profile, Channels::Gray).expect("converted");
        let mut samples: Vec<u8> = (0..=255).collect();
        assert!(transform.apply_samples(&mut samples, 256));
        for (value, out) in samples.iter().enumerate() {
            let sample = f64::from(u8::try_from(value).unwrap()) / 255.0;
            let lightness = sample.powf(563.0 / 256.0) * 100.0;
            let expected = icc::srgb_sample(icc::lightness_to_y(lightness));
            assert!(
                (f64::from(*out) - expected).abs() < 0.6,
                "{value} -> {out}, expected {expected:.2}"
            );
        }
        // Not the identity, and not the curve read as luminance (an XYZ PCS).
        assert_eq!((samples[0], samples[255]), (0, 255));
        let as_luminance = icc::srgb_sample((128.0f64 / 255.0).powf(563.0 / 256.0));
        assert!(
            f64::from(samples[128]) < as_luminance - 20.0,
            "{}",
            samples[128]
        );
    }

    /// The sRGB sample the test CMYK profile gives at `lightness` with black-point
    /// compensation.
    fn compensated(lightness: f64) -> f64 {
        let black = icc::lightness_to_y(icc::cmyk_corner_lightness([true; 4]));
        icc::srgb_sample((icc::lightness_to_y(lightness) - black) / (1.0 - black))
    }

    #[test]
    fn cmyk_profile_black_maps_to_srgb_black() {
        let profile = icc::cmyk_lab();
        let mut cmyk = Vec::new();
        let mut expected = Vec::new();
        // Black ink alone: L* falls linearly from 100 to the K corner's.
        let k_only = icc::cmyk_corner_lightness([false, false, false, true]);
        for k in (0..=255u8).step_by(15) {
            cmyk.extend_from_slice(&[0, 0, 0, k]);
            expected.push(compensated(100.0 - (100.0 - k_only) * f64::from(k) / 255.0));
        }
        // Cyan alone, and every ink at 100 %: the source black.
        let cyan = icc::cmyk_corner_lightness([true, false, false, false]);
        cmyk.extend_from_slice(&[255, 0, 0, 0, 255, 255, 255, 255]);
        expected.extend([compensated(cyan), 0.0]);

        let (raster, outcome) = cmyk_to_rgb(
            u32::try_from(expected.len()).unwrap(),
            1,
            &cmyk,
            Some(&profile),
        );
        assert_eq!(outcome, Some(IccOutcome::Converted));
        for (pixel, expected) in raster.pixels.chunks_exact(3).zip(&expected) {
            for &sample in pixel {
                assert!(
                    (f64::from(sample) - expected).abs() <= 1.0,
                    "{pixel:?}, expected {expected:.2}"
                );
            }
        }
        assert_eq!(raster.pixels[..3], [255, 255, 255]);
        assert_eq!(raster.pixels[raster.pixels.len() - 3..], [0, 0, 0]);

        // Without compensation the same black is a dark gray.
        let srgb = ColorProfile::new_srgb();
        let plain = ColorProfile::new_from_slice(&profile)
            .unwrap()
            .create_transform_8bit(
                Layout::Rgba,
                &srgb,
                Layout::Rgb,
                TransformOptions {
                    rendering_intent: RenderingIntent::RelativeColorimetric,
                    ..TransformOptions::default()
                },
            )
            .unwrap();
        let mut black = [0u8; 3];
        plain.transform(&[255; 4], &mut black).unwrap();
        let uncompensated =
            icc::srgb_sample(icc::lightness_to_y(icc::cmyk_corner_lightness([true; 4])));
        assert!(
            (f64::from(black[0]) - uncompensated).abs() <= 1.0,
            "{black:?}"
        );
        assert!(black[0] > 25, "{black:?}");
    }

    #[test]
    fn black_point_compensation_scales_linear_light() {
        assert_eq!(black_point_compensation([0.0; 3]), (0.0, 1.0));
        let (offset, scale) = black_point_compensation([0.01; 3]);
        assert!((offset - 0.01).abs() < 1e-6, "{offset}");
        assert!((scale - 1.0 / 0.99).abs() < 1e-6, "{scale}");
        // A black lighter than L* 50 is clipped to L* 50 (Y = 0.1842).
        let (offset, scale) = black_point_compensation([0.5; 3]);
        assert!((offset - 0.184_187).abs() < 1e-5, "{offset}");
        assert!((scale - 1.0 / (1.0 - 0.184_187)).abs() < 1e-4, "{scale}");
        // Luminance, not one channel: a dark red black counts by its Y.
        let (offset, _) = black_point_compensation([0.1, 0.0, 0.0]);
        assert!((offset - 0.021_264).abs() < 1e-5, "{offset}");
    }

    #[test]
    fn naive_cmyk_conversion() {
        let (raster, outcome) = cmyk_to_rgb(3, 1, &[0, 0, 0, 0, 255, 0, 0, 0, 0, 0, 0, 255], None);
        assert_eq!(raster.pixels, vec![255, 255, 255, 0, 255, 255, 0, 0, 0]);
        assert_eq!(outcome, None);
    }

    #[test]
    fn garbage_profile_is_dropped() {
        let mut raster = Raster::new(1, 1, Channels::Rgb, vec![1, 2, 3]);
        assert_eq!(
            convert_to_srgb(&mut raster, b"not a profile"),
            IccOutcome::Dropped
        );
        assert_eq!(raster.pixels, vec![1, 2, 3]);
    }
}
