//! Resampling with `fast_image_resize` (SIMD convolution), the step that dominates variant
//! generation after decoding.
//!
//! Lanczos3 is the filter libvips uses for downsizing, so variants match its sharpness;
//! alpha is premultiplied during the convolution so transparent pixels do not bleed colour.

use fast_image_resize::images::{Image, ImageRef};
use std::sync::LazyLock;

use fast_image_resize::{Filter, FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

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

/// Samples of the Lanczos3 kernel per unit of distance.
const LANCZOS3_STEPS: usize = 1024;

/// The Lanczos3 kernel on `0..=3`, sampled every `1 / LANCZOS3_STEPS`.
///
/// `fast_image_resize` evaluates the kernel for every tap of every output pixel again on
/// each call, and a strip is one call, so two `sin` per tap added up to a tenth of a
/// variant's time. Interpolating this table instead differs from the exact kernel by less
/// than 5e-7, far below the 1/16384 step of the fixed-point weights the convolution uses.
static LANCZOS3_TABLE: LazyLock<Vec<f64>> = LazyLock::new(|| {
    (0..=3 * LANCZOS3_STEPS + 1)
        .map(|i| {
            #[allow(clippy::cast_precision_loss)]
            let x = i as f64 / LANCZOS3_STEPS as f64;
            lanczos3_exact(x)
        })
        .collect()
});

/// sinc(x) sinc(x / 3) on `-3..3`, zero outside.
fn lanczos3_exact(x: f64) -> f64 {
    use std::f64::consts::PI;
    if x == 0.0 {
        return 1.0;
    }
    if x.abs() >= 3.0 {
        return 0.0;
    }
    let a = PI * x;
    let b = a / 3.0;
    (a.sin() / a) * (b.sin() / b)
}

#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss
)]
fn lanczos3_tabled(x: f64) -> f64 {
    let x = x.abs();
    if x >= 3.0 || x.is_nan() {
        return 0.0;
    }
    let position = x * LANCZOS3_STEPS as f64;
    let index = position as usize;
    let fraction = position - index as f64;
    let table = &*LANCZOS3_TABLE;
    table[index] + (table[index + 1] - table[index]) * fraction
}

/// Lanczos3, the filter libvips uses for downsizing, with a tabled kernel.
fn lanczos3() -> FilterType {
    FilterType::Custom(
        Filter::new("Lanczos3", lanczos3_tabled, 3.0).expect("a finite, positive support"),
    )
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
        Channels::Rgb | Channels::YCbCr => PixelType::U8x3,
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
    ///
    /// Works in horizontal strips of the output. The resampler reads source pixels outside
    /// a strip's crop box for its kernel, so strips join seamlessly, and its intermediate
    /// buffer stays a strip high instead of the whole image (12 MB for a 2048-wide variant
    /// of a 3000x2000 decode).
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
        let crop = crop.unwrap_or(Crop {
            left: 0.0,
            top: 0.0,
            width: f64::from(source.width),
            height: f64::from(source.height),
        });
        let options = ResizeOptions::new()
            .resize_alg(ResizeAlg::Convolution(lanczos3()))
            .use_alpha(source.channels == Channels::Rgba);
        let row_len = width as usize * source.channels.count();
        let mut pixels = vec![0u8; row_len * height as usize];
        let source_rows_per_row = crop.height / f64::from(height);
        let mut first_row = 0u32;
        for rows in pixels.chunks_mut(row_len * STRIP_ROWS as usize) {
            let strip_rows = u32::try_from(rows.len() / row_len).unwrap_or(STRIP_ROWS);
            let mut dst =
                Image::from_slice_u8(width, strip_rows, rows, kind).map_err(|e| failed(&e))?;
            let strip_options = options.crop(
                crop.left,
                crop.top + f64::from(first_row) * source_rows_per_row,
                crop.width,
                f64::from(strip_rows) * source_rows_per_row,
            );
            self.resizer
                .resize(&src, &mut dst, &strip_options)
                .map_err(|e| failed(&e))?;
            first_row += strip_rows;
        }
        Ok(Raster::new(width, height, source.channels, pixels))
    }
}

/// Output rows per strip.
const STRIP_ROWS: u32 = 256;

/// Output rows per strip when streaming: fewer than [`STRIP_ROWS`], since the window of
/// source rows held for a strip is what streaming keeps in memory.
const STREAM_STRIP_ROWS: u32 = 64;

/// Lanczos3 reaches three source pixels either side of an output pixel's centre, scaled
/// by the shrink factor.
const LANCZOS3_SUPPORT: f64 = 3.0;

/// Source rows `first..last` that output rows `start..end` of a whole-image resize of a
/// `source_height` rows tall image, `scale` source rows to an output row, can read (with
/// two rows to spare).
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn strip_source_rows(source_height: u32, scale: f64, start: u32, end: u32) -> (u32, u32) {
    let support = LANCZOS3_SUPPORT * scale.max(1.0) + 2.0;
    let top = f64::from(start) * scale - support;
    let bottom = f64::from(end) * scale + support;
    let first = top.floor().max(0.0) as u32;
    let last = (bottom.ceil().max(0.0) as u32).min(source_height);
    (first.min(last), last)
}

impl Resampler {
    /// Resizes the whole of `source` to `width x height`, writing each finished strip of
    /// output over source rows no later strip reads, so the result reuses the source's
    /// memory instead of being allocated next to it; the buffer is then shrunk to fit.
    /// Falls back to [`Resampler::resize`] when the output is not small enough for that.
    pub(crate) fn shrink_in_place(
        &mut self,
        source: Raster,
        width: u32,
        height: u32,
    ) -> Result<Raster, MediaError> {
        let channels = source.channels;
        let (src_w, src_h) = (source.width, source.height);
        let out_row = width as usize * channels.count();
        let in_row = src_w as usize * channels.count();
        let strips: Vec<(u32, u32)> = (0..height)
            .step_by(STREAM_STRIP_ROWS as usize)
            .map(|start| (start, start.saturating_add(STREAM_STRIP_ROWS).min(height)))
            .collect();
        // Strip k lands where the source rows strip k + 1 reads no longer are.
        let fits = strips.iter().all(|&(_, end)| {
            end == height
                || end as usize * out_row
                    <= strip_source_rows(src_h, f64::from(src_h) / f64::from(height), end, height).0
                        as usize
                        * in_row
        });
        if !fits {
            return self.resize(&source, None, width, height);
        }
        let kind = pixel_type(channels);
        let failed = |error: &dyn std::fmt::Display| {
            MediaError::Invalid(format!("resampling failed: {error}"))
        };
        let options = ResizeOptions::new()
            .resize_alg(ResizeAlg::Convolution(lanczos3()))
            .use_alpha(channels == Channels::Rgba);
        let scale = f64::from(src_h) / f64::from(height);
        let mut pixels = source.pixels;
        let mut strip = vec![0u8; out_row * STREAM_STRIP_ROWS as usize];
        for (start, end) in strips {
            let rows = end - start;
            let out = &mut strip[..rows as usize * out_row];
            {
                let src = ImageRef::new(src_w, src_h, &pixels, kind).map_err(|e| failed(&e))?;
                let mut dst =
                    Image::from_slice_u8(width, rows, out, kind).map_err(|e| failed(&e))?;
                let top = f64::from(start) * scale;
                let mut strip_height = f64::from(rows) * scale;
                while top + strip_height > f64::from(src_h) {
                    strip_height = strip_height.next_down();
                }
                let strip_options = options.crop(0.0, top, f64::from(src_w), strip_height);
                self.resizer
                    .resize(&src, &mut dst, &strip_options)
                    .map_err(|e| failed(&e))?;
            }
            pixels[start as usize * out_row..end as usize * out_row].copy_from_slice(out);
        }
        pixels.truncate(height as usize * out_row);
        pixels.shrink_to_fit();
        Ok(Raster::new(width, height, channels, pixels))
    }
}

/// Resamples an image whose rows arrive one at a time, top to bottom, keeping only the
/// window of source rows the next output strip reads: the whole source never exists in
/// memory, only that window (about [`STREAM_STRIP_ROWS`] x shrink + 16 rows) and the output.
///
/// Each output strip is the same `fast_image_resize` call as in [`Resampler::resize`],
/// made on the window with the crop shifted to the window's first row, so the result
/// matches a resize of the whole image.
pub(crate) struct RowResizer<'r> {
    resampler: &'r mut Resampler,
    channels: Channels,
    source: (u32, u32),
    /// Width and height of the source region resized, in source pixels: the whole source,
    /// or a little less when the source's last column or row reaches past the image it
    /// stands for (a JPEG's subsampled chroma plane of an odd-sized image).
    extent: (f64, f64),
    width: u32,
    height: u32,
    /// Output rows resampled per call.
    strip_rows: u32,
    /// Source rows `window_top..window_top + rows`, packed.
    window: Vec<u8>,
    window_top: u32,
    received: u32,
    done_rows: u32,
    pixels: Vec<u8>,
}

impl std::fmt::Debug for RowResizer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowResizer")
            .field("source", &self.source)
            .field("width", &self.width)
            .field("height", &self.height)
            .finish_non_exhaustive()
    }
}

impl<'r> RowResizer<'r> {
    /// A resize of a `source` sized image of `channels` to `width x height`.
    pub(crate) fn new(
        resampler: &'r mut Resampler,
        source: (u32, u32),
        channels: Channels,
        width: u32,
        height: u32,
    ) -> Self {
        let extent = (f64::from(source.0), f64::from(source.1));
        Self::with_extent(resampler, source, extent, channels, width, height)
    }

    /// A resize of the top left `extent` (at most `source`) of a `source` sized image.
    pub(crate) fn with_extent(
        resampler: &'r mut Resampler,
        source: (u32, u32),
        extent: (f64, f64),
        channels: Channels,
        width: u32,
        height: u32,
    ) -> Self {
        let extent = (
            extent.0.min(f64::from(source.0)),
            extent.1.min(f64::from(source.1)),
        );
        let mut resizer = Self {
            resampler,
            channels,
            source,
            extent,
            width,
            height,
            strip_rows: STREAM_STRIP_ROWS,
            window: Vec::new(),
            window_top: 0,
            received: 0,
            done_rows: 0,
            pixels: vec![0u8; width as usize * height as usize * channels.count()],
        };
        let (first, last) = resizer.rows_for(0);
        let rows = (last - first) as usize + 1;
        resizer.window = Vec::with_capacity(rows * resizer.row_len());
        resizer
    }

    /// Resamples `rows` output rows per call instead of [`STREAM_STRIP_ROWS`]: fewer calls
    /// (each computes its filter weights again) for a window of source rows that many
    /// times larger.
    pub(crate) fn with_strip_rows(mut self, rows: u32) -> Self {
        self.strip_rows = rows.max(1);
        let (first, last) = self.rows_for(0);
        let rows = (last - first) as usize + 1;
        self.window.reserve(rows * self.row_len());
        self
    }

    fn row_len(&self) -> usize {
        self.source.0 as usize * self.channels.count()
    }

    /// Output rows of the strip starting at output row `start`.
    fn strip_end(&self, start: u32) -> u32 {
        start.saturating_add(self.strip_rows).min(self.height)
    }

    /// Source rows `first..last` the output strip starting at `start` can read.
    fn rows_for(&self, start: u32) -> (u32, u32) {
        let scale = self.extent.1 / f64::from(self.height);
        strip_source_rows(self.source.1, scale, start, self.strip_end(start))
    }

    /// Appends the next source row (`source.0` pixels of `channels`), resampling every
    /// output strip that has all its rows.
    pub(crate) fn push_row(&mut self, row: &[u8]) -> Result<(), MediaError> {
        if row.len() != self.row_len() || self.received >= self.source.1 {
            return Err(MediaError::Invalid(
                "streamed row does not fit the image".into(),
            ));
        }
        self.window.extend_from_slice(row);
        self.received += 1;
        while self.done_rows < self.height && self.rows_for(self.done_rows).1 <= self.received {
            self.resize_strip()?;
        }
        Ok(())
    }

    fn resize_strip(&mut self) -> Result<(), MediaError> {
        let kind = pixel_type(self.channels);
        let failed = |error: &dyn std::fmt::Display| {
            MediaError::Invalid(format!("resampling failed: {error}"))
        };
        let row_len = self.row_len();
        let window_rows = u32::try_from(self.window.len() / row_len)
            .map_err(|_| MediaError::TooLarge("resampling window too large".into()))?;
        let start = self.done_rows;
        let end = self.strip_end(start);
        let scale = self.extent.1 / f64::from(self.height);
        let src = ImageRef::new(self.source.0, window_rows, &self.window, kind)
            .map_err(|e| failed(&e))?;
        let out_len = self.width as usize * self.channels.count();
        let rows = &mut self.pixels[start as usize * out_len..end as usize * out_len];
        let mut dst =
            Image::from_slice_u8(self.width, end - start, rows, kind).map_err(|e| failed(&e))?;
        // The last strip's bottom edge may round past the image; the resizer rejects that.
        let top = f64::from(start) * scale - f64::from(self.window_top);
        let mut height = f64::from(end - start) * scale;
        while top + height > f64::from(window_rows) {
            height = height.next_down();
        }
        let options = ResizeOptions::new()
            .resize_alg(ResizeAlg::Convolution(lanczos3()))
            .use_alpha(self.channels == Channels::Rgba)
            .crop(0.0, top, self.extent.0, height);
        self.resampler
            .resizer
            .resize(&src, &mut dst, &options)
            .map_err(|e| failed(&e))?;
        self.done_rows = end;
        if end < self.height {
            let keep_from = self.rows_for(end).0.max(self.window_top);
            let drop = (keep_from - self.window_top) as usize * row_len;
            self.window.drain(..drop.min(self.window.len()));
            self.window_top = keep_from;
        }
        Ok(())
    }

    /// The resampled image, once every source row was pushed.
    pub(crate) fn finish(self) -> Result<Raster, MediaError> {
        if self.done_rows < self.height || self.received < self.source.1 {
            return Err(MediaError::Invalid("image data ends early".into()));
        }
        Ok(Raster::new(
            self.width,
            self.height,
            self.channels,
            self.pixels,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A detailed test pattern of `channels`.
    fn pattern(w: u32, h: u32, channels: Channels) -> Raster {
        let n = u32::try_from(channels.count()).unwrap();
        let pixels = (0..w * h * n)
            .map(|i| u8::try_from((i * 7 + i / 900 * 13 + i / 5000) % 256).unwrap())
            .collect();
        Raster::new(w, h, channels, pixels)
    }

    /// The largest difference between two equally long sample runs.
    fn worst_difference(a: &[u8], b: &[u8]) -> u8 {
        a.iter().zip(b).map(|(x, y)| x.abs_diff(*y)).max().unwrap()
    }

    #[test]
    fn tabled_kernel_matches_the_exact_lanczos3() {
        let mut worst = 0.0f64;
        for i in -40_000..=40_000 {
            let x = f64::from(i) * 0.000_077;
            worst = worst.max((lanczos3_tabled(x) - lanczos3_exact(x)).abs());
        }
        assert!(worst < 5e-7, "off by {worst}");
        assert!((lanczos3_tabled(0.0) - 1.0).abs() < 1e-12);
        assert!(lanczos3_tabled(1.0).abs() < 1e-12 && lanczos3_tabled(2.0).abs() < 1e-12);
        assert_eq!(lanczos3_tabled(3.0).to_bits(), 0f64.to_bits());
        assert_eq!(lanczos3_tabled(-7.5).to_bits(), 0f64.to_bits());
        assert_eq!(lanczos3_tabled(f64::NAN).to_bits(), 0f64.to_bits());
    }

    #[test]
    fn flat_colour_stays_flat() {
        let source = Raster::new(40, 20, Channels::Rgb, [10, 120, 240].repeat(800));
        let out = Resampler::new().resize(&source, None, 10, 5).unwrap();
        assert_eq!((out.width, out.height), (10, 5));
        assert!(out.pixels.chunks_exact(3).all(|p| p == [10, 120, 240]));
    }

    #[test]
    fn strips_join_seamlessly() {
        // A detailed image resized in strips equals one resize of the whole (to rounding).
        let (w, h) = (300u32, 700u32);
        let pixels: Vec<u8> = (0..w * h * 3)
            .map(|i| u8::try_from((i * 7 + i / 900 * 13) % 256).unwrap())
            .collect();
        let source = Raster::new(w, h, Channels::Rgb, pixels);
        let (dw, dh) = (120u32, 280u32);
        let striped = Resampler::new().resize(&source, None, dw, dh).unwrap();
        let src = ImageRef::new(w, h, &source.pixels, PixelType::U8x3).unwrap();
        let mut whole = Image::new(dw, dh, PixelType::U8x3);
        Resizer::new()
            .resize(
                &src,
                &mut whole,
                &ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3)),
            )
            .unwrap();
        let worst = worst_difference(&striped.pixels, whole.buffer());
        assert!(worst <= 1, "strips differ by up to {worst}");
    }

    #[test]
    fn streamed_rows_match_the_whole_image_resize() {
        for (channels, (w, h), (dw, dh)) in [
            (Channels::Rgb, (300u32, 1700u32), (120u32, 700u32)),
            (Channels::Rgba, (257, 900), (100, 350)),
            (Channels::Gray, (64, 600), (64, 599)),
        ] {
            let n = channels.count();
            let source = pattern(w, h, channels);
            let whole = Resampler::new().resize(&source, None, dw, dh).unwrap();
            let mut resampler = Resampler::new();
            let mut rows = RowResizer::new(&mut resampler, (w, h), channels, dw, dh);
            let mut peak_window = 0;
            for row in source.pixels.chunks_exact(w as usize * n) {
                rows.push_row(row).unwrap();
                peak_window = peak_window.max(rows.window.len());
            }
            assert!(
                peak_window < source.pixels.len() / 2,
                "the window held {peak_window} of {} bytes",
                source.pixels.len()
            );
            let streamed = rows.finish().unwrap();
            assert_eq!((streamed.width, streamed.height), (dw, dh));
            let worst = worst_difference(&streamed.pixels, &whole.pixels);
            assert!(
                worst <= 1,
                "{channels:?}: streamed differs by up to {worst}"
            );
        }
    }

    #[test]
    fn shrinking_in_place_matches_the_resize() {
        for (channels, (w, h), (dw, dh)) in [
            (Channels::Rgb, (400u32, 1300u32), (190u32, 617u32)),
            (Channels::Rgba, (300, 700), (100, 233)),
            // Too little shrink to write over the source: resized the ordinary way.
            (Channels::Gray, (64, 600), (64, 599)),
        ] {
            let source = pattern(w, h, channels);
            let whole = Resampler::new().resize(&source, None, dw, dh).unwrap();
            let shrunk = Resampler::new().shrink_in_place(source, dw, dh).unwrap();
            assert_eq!((shrunk.width, shrunk.height), (dw, dh));
            assert_eq!(shrunk.pixels.len(), whole.pixels.len());
            let worst = worst_difference(&shrunk.pixels, &whole.pixels);
            assert!(worst <= 1, "{channels:?}: differs by up to {worst}");
        }
    }

    #[test]
    fn streaming_rejects_short_and_extra_rows() {
        let mut resampler = Resampler::new();
        let mut rows = RowResizer::new(&mut resampler, (4, 3), Channels::Gray, 2, 2);
        assert!(rows.push_row(&[0; 3]).is_err());
        rows.push_row(&[0; 4]).unwrap();
        rows.push_row(&[0; 4]).unwrap();
        assert!(rows.finish().is_err());
        let mut rows = RowResizer::new(&mut resampler, (4, 1), Channels::Gray, 2, 1);
        rows.push_row(&[9; 4]).unwrap();
        assert!(rows.push_row(&[9; 4]).is_err());
        assert_eq!(rows.finish().unwrap().pixels, vec![9, 9]);
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
