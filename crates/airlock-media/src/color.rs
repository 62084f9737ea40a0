//! Colour handling: embedded ICC profiles to sRGB, and CMYK to RGB.
//!
//! Outputs never embed a profile, so whatever is not converted here is shown as sRGB.

use std::sync::Arc;

use moxcms::{ColorProfile, DataColorSpace, Layout, Transform8BitExecutor, TransformOptions};

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
