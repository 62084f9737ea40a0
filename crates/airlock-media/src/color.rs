//! Colour handling: embedded ICC profiles to sRGB, and CMYK to RGB.
//!
//! Outputs never embed a profile, so whatever is not converted here is shown as sRGB.

use std::sync::Arc;

use moxcms::{ColorProfile, DataColorSpace, Layout, Transform8BitExecutor, TransformOptions};

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
    executor: Arc<Transform8BitExecutor>,
    channels: Channels,
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
        let srgb = ColorProfile::new_srgb();
        let executor = profile
            .create_transform_8bit(layout, &srgb, layout, TransformOptions::default())
            .ok()?;
        Some(Self { executor, channels })
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
        let batch = (width * self.channels.count() * ROWS_PER_BATCH).max(1);
        let mut scratch = vec![0u8; batch.min(samples.len())];
        for chunk in samples.chunks_mut(batch) {
            let out = &mut scratch[..chunk.len()];
            if self.executor.transform(chunk, out).is_err() {
                return false;
            }
            chunk.copy_from_slice(out);
        }
        true
    }
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

fn cmyk_through_profile(cmyk: &[u8], icc: &[u8]) -> Option<Vec<u8>> {
    if icc.len() > MAX_ICC_BYTES {
        return None;
    }
    let profile = ColorProfile::new_from_slice(icc).ok()?;
    if profile.color_space != DataColorSpace::Cmyk {
        return None;
    }
    let srgb = ColorProfile::new_srgb();
    // moxcms reads 8-bit CMYK through the four-channel RGBA layout.
    let executor = profile
        .create_transform_8bit(
            Layout::Rgba,
            &srgb,
            Layout::Rgb,
            TransformOptions::default(),
        )
        .ok()?;
    let mut rgb = vec![0u8; cmyk.len() / 4 * 3];
    for (src, dst) in cmyk.chunks(4 * 4096).zip(rgb.chunks_mut(3 * 4096)) {
        executor.transform(src, dst).ok()?;
    }
    Some(rgb)
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
mod tests {
    use super::*;

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
