//! `ThumbHash` placeholders: a ~25-byte sketch of the image (with alpha and aspect ratio)
//! that a client can render while the real image loads.

use base64::Engine as _;

use crate::MediaError;
use crate::raster::Raster;
use crate::resize::Resampler;

/// The placeholder encoding, reported in [`crate::ImageMetadata::placeholder_kind`].
pub(crate) const KIND: &str = "thumbhash";

/// `ThumbHash` only accepts images up to 100x100.
const MAX_EDGE: u32 = 100;

/// Base64 (standard alphabet, padded) `ThumbHash` of an upright image.
pub(crate) fn thumbhash(image: &Raster, resampler: &mut Resampler) -> Result<String, MediaError> {
    let long_edge = image.width.max(image.height);
    let small;
    let image = if long_edge > MAX_EDGE {
        let scale = f64::from(MAX_EDGE) / f64::from(long_edge);
        let w = scaled(image.width, scale);
        let h = scaled(image.height, scale);
        small = resampler.resize(image, None, w, h)?;
        &small
    } else {
        image
    };
    let rgba = image.to_rgba();
    let hash = thumbhash::rgba_to_thumb_hash(image.width as usize, image.height as usize, &rgba);
    Ok(base64::engine::general_purpose::STANDARD.encode(hash))
}

#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn scaled(length: u32, scale: f64) -> u32 {
    ((f64::from(length) * scale).round() as u32).clamp(1, MAX_EDGE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raster::Channels;

    #[test]
    fn hashes_decode_to_the_average_colour() {
        let image = Raster::new(300, 150, Channels::Rgb, [200, 30, 30].repeat(300 * 150));
        let hash = thumbhash(&image, &mut Resampler::new()).unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(hash)
            .unwrap();
        let (r, g, b, a) = thumbhash::thumb_hash_to_average_rgba(&bytes).unwrap();
        assert!((r - 200.0 / 255.0).abs() < 0.05, "red {r}");
        assert!(g < 0.2 && b < 0.2 && a > 0.99);
        let ratio = thumbhash::thumb_hash_to_approximate_aspect_ratio(&bytes).unwrap();
        assert!((ratio - 2.0).abs() < 0.3, "ratio {ratio}");
    }
}
