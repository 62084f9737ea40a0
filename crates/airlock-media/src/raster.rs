//! Decoded pixels and the pixel-level operations on them: EXIF orientation, alpha
//! flattening and channel conversions.

/// Interleaved 8-bit samples per pixel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Channels {
    Gray,
    Rgb,
    Rgba,
    /// JFIF Y, Cb, Cr (BT.601, full range), as a JPEG stores colour: a JPEG decoded this
    /// way skips the conversion to RGB, and so does its re-encoding as JPEG. Only made
    /// by the JPEG decoder when no colour profile has to be applied; [`Raster::to_rgb`]
    /// converts it wherever RGB is needed.
    YCbCr,
}

impl Channels {
    pub(crate) fn count(self) -> usize {
        match self {
            Self::Gray => 1,
            Self::Rgb | Self::YCbCr => 3,
            Self::Rgba => 4,
        }
    }
}

/// JFIF YCbCr to RGB of one pixel.
fn ycbcr_to_rgb(y: u8, cb: u8, cr: u8) -> [u8; 3] {
    let y = f32::from(y);
    let cb = f32::from(cb) - 128.0;
    let cr = f32::from(cr) - 128.0;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let channel = |v: f32| (v + 0.5).clamp(0.0, 255.0) as u8;
    [
        channel(y + 1.402 * cr),
        channel(y - 0.344_136 * cb - 0.714_136 * cr),
        channel(y + 1.772 * cb),
    ]
}

/// An 8-bit image in memory, rows top to bottom without padding.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Raster {
    pub width: u32,
    pub height: u32,
    pub channels: Channels,
    pub pixels: Vec<u8>,
}

impl std::fmt::Debug for Raster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Raster")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("channels", &self.channels)
            .finish_non_exhaustive()
    }
}

impl Raster {
    pub(crate) fn new(width: u32, height: u32, channels: Channels, pixels: Vec<u8>) -> Self {
        debug_assert_eq!(
            pixels.len(),
            width as usize * height as usize * channels.count()
        );
        Self {
            width,
            height,
            channels,
            pixels,
        }
    }

    /// The same image as RGB when it is YCbCr; `None` for every other layout (they are
    /// RGB-based already).
    pub(crate) fn to_rgb(&self) -> Option<Self> {
        if self.channels != Channels::YCbCr {
            return None;
        }
        let pixels = self
            .pixels
            .chunks_exact(3)
            .flat_map(|p| ycbcr_to_rgb(p[0], p[1], p[2]))
            .collect();
        Some(Self::new(self.width, self.height, Channels::Rgb, pixels))
    }

    /// The same pixels as RGBA (a copy unless already RGBA).
    pub(crate) fn to_rgba(&self) -> Vec<u8> {
        match self.channels {
            Channels::Rgba => self.pixels.clone(),
            Channels::YCbCr => self
                .pixels
                .chunks_exact(3)
                .flat_map(|p| {
                    let [r, g, b] = ycbcr_to_rgb(p[0], p[1], p[2]);
                    [r, g, b, 255]
                })
                .collect(),
            Channels::Rgb => self
                .pixels
                .chunks_exact(3)
                .flat_map(|p| [p[0], p[1], p[2], 255])
                .collect(),
            Channels::Gray => self.pixels.iter().flat_map(|&v| [v, v, v, 255]).collect(),
        }
    }

    /// Drops alpha by compositing onto white, the usual page background, so that
    /// transparent regions do not turn black in formats without alpha.
    pub(crate) fn flatten_onto_white(&self) -> Option<Self> {
        if self.channels != Channels::Rgba {
            return None;
        }
        let pixels = self
            .pixels
            .chunks_exact(4)
            .flat_map(|p| {
                let alpha = u32::from(p[3]);
                let blend = |c: u8| {
                    let value = (u32::from(c) * alpha + 255 * (255 - alpha) + 127) / 255;
                    u8::try_from(value).unwrap_or(u8::MAX)
                };
                [blend(p[0]), blend(p[1]), blend(p[2])]
            })
            .collect();
        Some(Self::new(self.width, self.height, Channels::Rgb, pixels))
    }

    /// Whether any pixel is not fully opaque.
    pub(crate) fn uses_alpha(&self) -> bool {
        self.channels == Channels::Rgba && self.pixels.chunks_exact(4).any(|p| p[3] != 255)
    }

    /// A copy with the colour of every fully transparent pixel set to zero; `None` when no
    /// such pixel has any colour. That colour is never shown, so in an output it could
    /// only carry data nobody sees.
    pub(crate) fn without_hidden_colour(&self) -> Option<Raster> {
        let hidden = |p: &[u8]| p[3] == 0 && p[..3] != [0, 0, 0];
        if self.channels != Channels::Rgba || !self.pixels.chunks_exact(4).any(hidden) {
            return None;
        }
        let mut pixels = self.pixels.clone();
        for pixel in pixels.chunks_exact_mut(4).filter(|p| p[3] == 0) {
            pixel[..3].fill(0);
        }
        Some(Raster::new(self.width, self.height, Channels::Rgba, pixels))
    }
}

/// Expands gray+alpha samples to RGBA.
pub(crate) fn gray_alpha_to_rgba(samples: &[u8]) -> Vec<u8> {
    samples
        .chunks_exact(2)
        .flat_map(|p| [p[0], p[0], p[0], p[1]])
        .collect()
}

/// Whether an EXIF orientation swaps width and height.
pub(crate) fn transposes(orientation: u16) -> bool {
    matches!(orientation, 5..=8)
}

/// Applies an EXIF orientation (1..=8) so the result displays upright; returns `None`
/// for orientation 1 (nothing to do).
pub(crate) fn orient(raster: &Raster, orientation: u16) -> Option<Raster> {
    if !(2..=8).contains(&orientation) {
        return None;
    }
    let pixels = match raster.channels {
        Channels::Gray => orient_samples::<1>(raster, orientation),
        Channels::Rgb | Channels::YCbCr => orient_samples::<3>(raster, orientation),
        Channels::Rgba => orient_samples::<4>(raster, orientation),
    };
    let (width, height) = if transposes(orientation) {
        (raster.height, raster.width)
    } else {
        (raster.width, raster.height)
    };
    Some(Raster::new(width, height, raster.channels, pixels))
}

/// Side of the square tiles walked when transposing, so reads and writes both stay
/// within a few cache lines.
const TILE: usize = 64;

fn orient_samples<const N: usize>(raster: &Raster, orientation: u16) -> Vec<u8> {
    let (w, h) = (raster.width as usize, raster.height as usize);
    let src = &raster.pixels;
    let mut dst = vec![0u8; src.len()];
    if !transposes(orientation) {
        let row_len = w * N;
        for y in 0..h {
            let dy = if matches!(orientation, 3 | 4) {
                h - 1 - y
            } else {
                y
            };
            let src_row = &src[y * row_len..(y + 1) * row_len];
            let dst_row = &mut dst[dy * row_len..(dy + 1) * row_len];
            if matches!(orientation, 2 | 3) {
                for (d, s) in dst_row
                    .chunks_exact_mut(N)
                    .zip(src_row.chunks_exact(N).rev())
                {
                    d.copy_from_slice(s);
                }
            } else {
                dst_row.copy_from_slice(src_row);
            }
        }
        return dst;
    }
    // Transposing orientations: the destination is h wide and w tall.
    let dst_w = h;
    for tile_y in (0..h).step_by(TILE) {
        for tile_x in (0..w).step_by(TILE) {
            for y in tile_y..(tile_y + TILE).min(h) {
                for x in tile_x..(tile_x + TILE).min(w) {
                    let (dx, dy) = match orientation {
                        5 => (y, x),
                        6 => (h - 1 - y, x),
                        7 => (h - 1 - y, w - 1 - x),
                        _ => (y, w - 1 - x),
                    };
                    let s = (y * w + x) * N;
                    let d = (dy * dst_w + dx) * N;
                    dst[d..d + N].copy_from_slice(&src[s..s + N]);
                }
            }
        }
    }
    dst
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 3x2 gray image whose samples are their own row-major index.
    fn numbered() -> Raster {
        Raster::new(3, 2, Channels::Gray, vec![0, 1, 2, 3, 4, 5])
    }

    #[test]
    fn orientations_match_the_exif_definitions() {
        // Source:  0 1 2
        //          3 4 5
        let expected: [(u16, u32, &[u8]); 7] = [
            (2, 3, &[2, 1, 0, 5, 4, 3]),
            (3, 3, &[5, 4, 3, 2, 1, 0]),
            (4, 3, &[3, 4, 5, 0, 1, 2]),
            (5, 2, &[0, 3, 1, 4, 2, 5]),
            (6, 2, &[3, 0, 4, 1, 5, 2]),
            (7, 2, &[5, 2, 4, 1, 3, 0]),
            (8, 2, &[2, 5, 1, 4, 0, 3]),
        ];
        for (orientation, width, pixels) in expected {
            let out = orient(&numbered(), orientation).expect("transform");
            assert_eq!(out.width, width, "orientation {orientation}");
            assert_eq!(out.pixels, pixels, "orientation {orientation}");
        }
        assert!(orient(&numbered(), 1).is_none());
        assert!(orient(&numbered(), 9).is_none());
    }

    #[test]
    fn transposes_across_tile_boundaries() {
        let (w, h) = (130u32, 70u32);
        let pixels: Vec<u8> = (0..w * h * 3)
            .map(|i| u8::try_from(i % 251).unwrap())
            .collect();
        let raster = Raster::new(w, h, Channels::Rgb, pixels);
        let back = orient(&orient(&raster, 6).unwrap(), 8).unwrap();
        assert_eq!(back, raster);
        let twice = orient(&orient(&raster, 5).unwrap(), 5).unwrap();
        assert_eq!(twice, raster);
    }

    #[test]
    fn flattening_blends_onto_white() {
        let raster = Raster::new(2, 1, Channels::Rgba, vec![0, 0, 0, 0, 10, 20, 30, 255]);
        let flat = raster.flatten_onto_white().unwrap();
        assert_eq!(flat.pixels, vec![255, 255, 255, 10, 20, 30]);
        assert!(raster.uses_alpha());
    }
}
