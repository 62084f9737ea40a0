//! Resampling with `fast_image_resize` (SIMD convolution), the step that dominates variant
//! generation after decoding.
//!
//! Lanczos3 is the filter libvips uses for downsizing, so variants match its sharpness;
//! alpha is premultiplied during the convolution so transparent pixels do not bleed colour.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use crate::MediaError;
use crate::raster::{Channels, Raster};

/// A source rectangle, in source pixels (fractional edges allowed).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Crop {
    pub left: f64,
    pub top: f64,
    pub width: f64,
    pub height: f64,
}

/// Reusable resampler: keeps its scratch buffers between calls.
pub(crate) struct Resampler {
    resizer: Resizer,
}

impl std::fmt::Debug for Resampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resampler").finish_non_exhaustive()
    }
}

fn pixel_type(channels: Channels) -> PixelType {
    match channels {
        Channels::Gray => PixelType::U8,
        Channels::Rgb => PixelType::U8x3,
        Channels::Rgba => PixelType::U8x4,
    }
}

impl Resampler {
    pub(crate) fn new() -> Self {
        Self {
            resizer: Resizer::new(),
        }
    }

    /// Resamples `crop` of `source` (the whole image when `None`) to `width x height`.
    pub(crate) fn resize(
        &mut self,
        source: &Raster,
        crop: Option<Crop>,
        width: u32,
        height: u32,
    ) -> Result<Raster, MediaError> {
        let kind = pixel_type(source.channels);
        let failed = |error: &dyn std::fmt::Display| {
            MediaError::Invalid(format!("resampling failed: {error}"))
        };
        let src = ImageRef::new(source.width, source.height, &source.pixels, kind)
            .map_err(|e| failed(&e))?;
        let mut dst = Image::new(width, height, kind);
        let mut options = ResizeOptions::new()
            .resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3))
            .use_alpha(source.channels == Channels::Rgba);
        if let Some(crop) = crop {
            options = options.crop(crop.left, crop.top, crop.width, crop.height);
        }
        self.resizer
            .resize(&src, &mut dst, &options)
            .map_err(|e| failed(&e))?;
        Ok(Raster::new(width, height, source.channels, dst.into_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_colour_stays_flat() {
        let source = Raster::new(40, 20, Channels::Rgb, [10, 120, 240].repeat(800));
        let out = Resampler::new().resize(&source, None, 10, 5).unwrap();
        assert_eq!((out.width, out.height), (10, 5));
        assert!(out.pixels.chunks_exact(3).all(|p| p == [10, 120, 240]));
    }

    #[test]
    fn crop_selects_the_region() {
        // Left quarter black, the rest white; the kernel of a crop well inside the white
        // part never reaches the black.
        let pixels: Vec<u8> = (0..40 * 10)
            .map(|i| if i % 40 < 10 { 0 } else { 255 })
            .collect();
        let source = Raster::new(40, 10, Channels::Gray, pixels);
        let crop = Crop {
            left: 20.0,
            top: 0.0,
            width: 20.0,
            height: 10.0,
        };
        let out = Resampler::new().resize(&source, Some(crop), 10, 5).unwrap();
        assert!(out.pixels.iter().all(|&v| v == 255));
    }
}
