//! The whole job, in order: limits from the header, one decode (as small as the outputs
//! allow), the sanitized original, the variants by cascade, the placeholder, the metadata.

use std::borrow::Cow;

use sha2::{Digest, Sha256};

use crate::decode::{self, Deadline, Request};
use crate::encode;
use crate::exif::{self, ExifSummary};
use crate::header::{self, Header, ImageFormat};
use crate::input::{self, Input};
use crate::options::{Fit, Limits, MediaOptions, OutputFormat, VariantSpec};
use crate::placeholder;
use crate::raster::{self, Raster};
use crate::resize::{Crop, Resampler};
use crate::{Encoded, ImageMetadata, MediaError, OutputInfo};

/// Everything one run produced.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub original: Option<Encoded>,
    pub variants: Vec<(String, Encoded)>,
    pub metadata: ImageMetadata,
}

/// How one variant is cut from the source, in stored (not yet oriented) coordinates.
#[derive(Debug, Clone, Copy)]
struct Plan {
    width: u32,
    height: u32,
    /// Region of the full-resolution source; `None` for the whole image.
    crop: Option<Crop>,
}

#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn round_to_pixels(value: f64) -> u32 {
    value.round().clamp(1.0, f64::from(u32::MAX)) as u32
}

impl Plan {
    fn new(spec: &VariantSpec, stored: (u32, u32), orientation: u16) -> Self {
        let transposed = raster::transposes(orientation);
        let (dw, dh) = if transposed {
            (stored.1, stored.0)
        } else {
            stored
        };
        let (width, height, crop) = match spec.fit {
            Fit::Contain => {
                let size = spec.size.max(1);
                let long = dw.max(dh);
                if size >= long {
                    (dw, dh, None)
                } else if dw >= dh {
                    let h = round_to_pixels(f64::from(dh) * f64::from(size) / f64::from(dw));
                    (size, h.min(dh), None)
                } else {
                    let w = round_to_pixels(f64::from(dw) * f64::from(size) / f64::from(dh));
                    (w.min(dw), size, None)
                }
            }
            Fit::Cover { width, height } => {
                let (tw, th) = (f64::from(width.max(1)), f64::from(height.max(1)));
                let (fw, fh) = (f64::from(dw), f64::from(dh));
                // Never upscale: shrink the box until the source can fill it.
                let fit = (fw / tw).min(fh / th).min(1.0);
                let ow = round_to_pixels(tw * fit).min(dw);
                let oh = round_to_pixels(th * fit).min(dh);
                let crop_w = fw.min(fh * f64::from(ow) / f64::from(oh));
                let crop_h = fh.min(fw * f64::from(oh) / f64::from(ow));
                let crop = (crop_w < fw - 1e-6 || crop_h < fh - 1e-6).then(|| Crop {
                    left: (fw - crop_w) / 2.0,
                    top: (fh - crop_h) / 2.0,
                    width: crop_w,
                    height: crop_h,
                });
                (ow, oh, crop)
            }
        };
        // Centred crops are symmetric, so orientation only swaps the axes.
        if transposed {
            Self {
                width: height,
                height: width,
                crop: crop.map(|c| Crop {
                    left: c.top,
                    top: c.left,
                    width: c.height,
                    height: c.width,
                }),
            }
        } else {
            Self {
                width,
                height,
                crop,
            }
        }
    }

    /// The smallest decoded size (stored orientation) this plan can be made from without
    /// upscaling.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    fn min_source(&self, full: (u32, u32)) -> (u32, u32) {
        match self.crop {
            None => (self.width, self.height),
            Some(crop) => {
                let need = |out: u32, cropped: f64, full: u32| {
                    let scale = (f64::from(out) / cropped).min(1.0);
                    ((f64::from(full) * scale - 1e-6).ceil().max(1.0) as u32).min(full)
                };
                (
                    need(self.width, crop.width, full.0),
                    need(self.height, crop.height, full.1),
                )
            }
        }
    }
}

fn encoded(
    bytes: Vec<u8>,
    content_type: &'static str,
    extension: &'static str,
    width: u32,
    height: u32,
) -> Encoded {
    let sha256 = hex::encode(Sha256::digest(&bytes));
    Encoded {
        bytes,
        content_type,
        extension,
        width,
        height,
        sha256,
    }
}

pub(crate) fn run(
    input: Input<'_>,
    options: &MediaOptions,
    with_original: bool,
) -> Result<Outcome, MediaError> {
    let limits = &options.limits;
    let deadline = Deadline::new(limits.decode_timeout);
    input::check_size(input.len(), limits)?;
    let input_len = input.len();
    let header = input.header()?;
    header::check_limits(&header, limits)?;
    if with_original {
        check_animation_budget(&header, limits)?;
    }
    let exif = header.exif.as_deref().map_or(
        ExifSummary {
            orientation: 1,
            ..ExifSummary::default()
        },
        exif::summarize,
    );
    let orientation = exif.orientation;
    let stored = (header.info.width, header.info.height);
    let plans: Vec<Plan> = options
        .variants
        .iter()
        .map(|spec| Plan::new(spec, stored, orientation))
        .collect();
    let min_size = if with_original {
        stored
    } else {
        plans.iter().fold((1, 1), |acc, plan| {
            let need = plan.min_source(stored);
            (acc.0.max(need.0), acc.1.max(need.1))
        })
    };

    let request = Request {
        header: &header,
        limits,
        deadline,
        color_profile: options.color_profile,
        min_size,
        transcode: with_original,
        orientation,
    };
    let mut resampler = Resampler::new();
    let target = shrink_target(&plans, stored, with_original);
    let decode::Decoded {
        base,
        icc,
        animation,
    } = decode_shrunk(input, &request, target, &mut resampler)?;

    let original = if with_original {
        Some(encode_original(
            &header,
            &base,
            animation,
            orientation,
            options.original_quality,
            input_len,
        )?)
    } else {
        None
    };

    let (variants, smallest) =
        make_variants(&plans, options, &base, stored, orientation, &mut resampler)?;

    let placeholder = if options.placeholder {
        let source = match smallest {
            Some(raster) => raster,
            None => raster::orient(&base, orientation).unwrap_or(base),
        };
        Some(placeholder::thumbhash(&source, &mut resampler)?)
    } else {
        None
    };
    let metadata = describe(
        &header,
        exif,
        icc.map(|outcome| outcome.as_str().to_owned()),
        placeholder,
        original.as_ref(),
        &variants,
    );
    Ok(Outcome {
        original,
        variants,
        metadata,
    })
}

/// Refuses an animation whose re-encoded original could outgrow the memory budget. A
/// WebP animation is re-encoded as full-canvas lossless frames, so a small lossy file can
/// become a very large lossless one: frames times canvas pixels at four bytes each may
/// take at most half the budget (the other half is room for the growing buffer's
/// reallocation). A GIF keeps its frames as they are and is checked as it is written.
fn check_animation_budget(header: &Header<'_>, limits: &Limits) -> Result<(), MediaError> {
    if header.info.format != ImageFormat::WebP || !header.info.animated {
        return Ok(());
    }
    let canvas = u64::from(header.info.width) * u64::from(header.info.height);
    let estimate = canvas
        .saturating_mul(u64::from(header.info.frame_count))
        .saturating_mul(4);
    if estimate > limits.max_memory / 2 {
        return Err(MediaError::TooLarge(format!(
            "the animation's {} frames of {}x{} could re-encode to {estimate} bytes, over \
             half the {}-byte memory budget",
            header.info.frame_count, header.info.width, header.info.height, limits.max_memory
        )));
    }
    Ok(())
}

/// Decodes, shrinking to `target` on the way when given (see [`shrink_target`]).
fn decode_shrunk(
    input: Input<'_>,
    request: &Request<'_>,
    target: Option<(u32, u32)>,
    resampler: &mut Resampler,
) -> Result<decode::Decoded, MediaError> {
    let streamed = match target {
        Some(size) if request.header.info.format == ImageFormat::Png => {
            input.png_resized(request, size, resampler)?
        }
        Some(size) if request.header.info.format == ImageFormat::Jpeg => {
            input.jpeg_resized(request, size, resampler)?
        }
        _ => None,
    };
    let decoded = match streamed {
        Some(streamed) => {
            request.deadline.check()?;
            decode::Decoded {
                base: streamed.raster,
                icc: streamed.icc,
                animation: None,
            }
        }
        None => input.decode(request)?,
    };
    let base = match target {
        // Only the largest variant and what cascades from it are needed: make it over
        // the decoded pixels' own memory.
        Some((width, height))
            if decoded.animation.is_none()
                && decoded.base.width >= width
                && decoded.base.height >= height
                && (decoded.base.width, decoded.base.height) != (width, height) =>
        {
            resampler.shrink_in_place(decoded.base, width, height)?
        }
        _ => decoded.base,
    };
    Ok(decode::Decoded { base, ..decoded })
}

/// The size the decoded image can be shrunk to at once, when the full-size image is not
/// needed at all: no original is made, and the largest whole-frame variant is smaller
/// than the source and has enough pixels for every other variant. That variant is then
/// made first, straight out of a PNG decoder row by row, or over the decoded pixels'
/// memory, and the others cascade from it as usual.
fn shrink_target(plans: &[Plan], stored: (u32, u32), with_original: bool) -> Option<(u32, u32)> {
    if with_original {
        return None;
    }
    let largest = plans
        .iter()
        .filter(|plan| plan.crop.is_none())
        .max_by_key(|plan| u64::from(plan.width) * u64::from(plan.height))?;
    let size = (largest.width, largest.height);
    let smaller = size.0 <= stored.0 && size.1 <= stored.1 && size != stored;
    let enough = plans.iter().all(|plan| {
        let need = plan.min_source(stored);
        need.0 <= size.0 && need.1 <= size.1
    });
    (smaller && enough).then_some(size)
}

/// Variants as `(name, image)`, in the order they were asked for.
type NamedOutputs = Vec<(String, Encoded)>;

/// Makes every variant, largest first so each can be cut from the nearest larger one.
/// Also returns the smallest upright variant, the cheapest source for the placeholder.
fn make_variants(
    plans: &[Plan],
    options: &MediaOptions,
    base: &Raster,
    stored: (u32, u32),
    orientation: u16,
    resampler: &mut Resampler,
) -> Result<(NamedOutputs, Option<Raster>), MediaError> {
    let area = |w: u32, h: u32| u64::from(w) * u64::from(h);
    let mut order: Vec<usize> = (0..plans.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(area(plans[i].width, plans[i].height)));
    let mut cascade: Vec<Raster> = Vec::new();
    let mut made: Vec<Option<Encoded>> = vec![None; plans.len()];
    let mut smallest: Option<Raster> = None;
    for index in order {
        let (plan, spec) = (&plans[index], &options.variants[index]);
        let resized = make_variant(plan, base, &cascade, stored, resampler)?;
        let upright_owned = raster::orient(&resized, orientation);
        let upright = upright_owned.as_ref().unwrap_or(&resized);
        let (content_type, extension) = encode::content_type(spec.format);
        made[index] = Some(encoded(
            encode::encode(upright, spec.format, spec.quality)?,
            content_type,
            extension,
            upright.width,
            upright.height,
        ));
        let smaller = smallest
            .as_ref()
            .is_none_or(|s| area(s.width, s.height) > area(upright.width, upright.height));
        if options.placeholder && smaller {
            smallest = Some(upright_owned.unwrap_or_else(|| resized.clone().into_owned()));
        }
        if plan.crop.is_none()
            && let Cow::Owned(raster) = resized
        {
            cascade.push(raster);
        }
    }
    let variants = options
        .variants
        .iter()
        .zip(made)
        .filter_map(|(spec, made)| made.map(|made| (spec.name.clone(), made)))
        .collect();
    Ok((variants, smallest))
}

fn describe(
    header: &Header<'_>,
    exif: ExifSummary,
    icc_profile: Option<String>,
    placeholder: Option<String>,
    original: Option<&Encoded>,
    variants: &[(String, Encoded)],
) -> ImageMetadata {
    let info = &header.info;
    let orientation = exif.orientation;
    let (width, height) = if raster::transposes(orientation) {
        (info.height, info.width)
    } else {
        (info.width, info.height)
    };
    let output_info = |name: &str, output: &Encoded| OutputInfo {
        name: name.to_owned(),
        content_type: output.content_type.to_owned(),
        width: output.width,
        height: output.height,
        bytes: u64::try_from(output.bytes.len()).unwrap_or(u64::MAX),
        sha256: output.sha256.clone(),
    };
    let outputs = original
        .map(|original| output_info("original", original))
        .into_iter()
        .chain(
            variants
                .iter()
                .map(|(name, output)| output_info(name, output)),
        )
        .collect();
    ImageMetadata {
        format: info.format.as_str().to_owned(),
        width,
        height,
        orientation,
        orientation_applied: orientation != 1,
        has_alpha: info.has_alpha,
        frame_count: info.frame_count,
        animated: info.animated,
        color_type: info.color_type.to_owned(),
        bit_depth: info.bit_depth,
        icc_profile,
        camera_make: exif.camera_make,
        camera_model: exif.camera_model,
        captured_at: exif.captured_at,
        gps_present: exif.gps_present,
        placeholder_kind: placeholder.as_ref().map(|_| placeholder::KIND.to_owned()),
        placeholder,
        outputs,
    }
}

/// Resamples one variant from the smallest available image that still has enough pixels:
/// the decoded base or a larger whole-frame variant made before it.
fn make_variant<'a>(
    plan: &Plan,
    base: &'a Raster,
    cascade: &'a [Raster],
    full: (u32, u32),
    resampler: &mut Resampler,
) -> Result<Cow<'a, Raster>, MediaError> {
    let need = plan.min_source(full);
    let source = cascade
        .iter()
        .filter(|r| r.width >= need.0 && r.height >= need.1)
        .min_by_key(|r| u64::from(r.width) * u64::from(r.height))
        .unwrap_or(base);
    if plan.crop.is_none() && (source.width, source.height) == (plan.width, plan.height) {
        return Ok(Cow::Borrowed(source));
    }
    let crop = plan.crop.map(|c| {
        let sx = f64::from(source.width) / f64::from(full.0);
        let sy = f64::from(source.height) / f64::from(full.1);
        Crop {
            left: c.left * sx,
            top: c.top * sy,
            width: c.width * sx,
            height: c.height * sy,
        }
    });
    resampler
        .resize(source, crop, plan.width, plan.height)
        .map(Cow::Owned)
}

/// The sanitized original: same family as the source, upright, no metadata.
fn encode_original(
    header: &Header<'_>,
    base: &Raster,
    animation: Option<Vec<u8>>,
    orientation: u16,
    quality: u8,
    input_len: u64,
) -> Result<Encoded, MediaError> {
    let upright_owned = raster::orient(base, orientation);
    let upright = upright_owned.as_ref().unwrap_or(base);
    let (width, height) = (upright.width, upright.height);
    Ok(match (header.info.format, animation) {
        (ImageFormat::Gif, Some(gif)) => encoded(gif, "image/gif", "gif", width, height),
        (ImageFormat::WebP, Some(webp)) => encoded(webp, "image/webp", "webp", width, height),
        (ImageFormat::Jpeg, _) => {
            let (content_type, extension) = encode::content_type(OutputFormat::Jpeg);
            encoded(
                encode::jpeg(upright, quality)?,
                content_type,
                extension,
                width,
                height,
            )
        }
        (ImageFormat::WebP, None) => {
            let (content_type, extension) = encode::content_type(OutputFormat::WebP);
            // A lossy source stays lossy, at about its own quality.
            let bytes = match header.webp_quality {
                Some(quality) => encode::webp_lossy_within(upright, quality, input_len)?,
                None => encode::webp(upright)?,
            };
            encoded(bytes, content_type, extension, width, height)
        }
        (ImageFormat::Png | ImageFormat::Gif, _) => {
            let (content_type, extension) = encode::content_type(OutputFormat::Png);
            // A palette image stays one: as RGB(A) it would take several times the bytes.
            let bytes = if header.info.color_type == "palette" {
                encode::png_indexed(upright)?
            } else {
                encode::png(upright)?
            };
            encoded(bytes, content_type, extension, width, height)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(fit: Fit, size: u32) -> VariantSpec {
        VariantSpec {
            name: "v".into(),
            size,
            fit,
            format: OutputFormat::Jpeg,
            quality: 80,
        }
    }

    fn png_file(width: u32, height: u32, color: png::ColorType, samples: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, width, height);
        encoder.set_color(color);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().unwrap();
        writer.write_image_data(samples).unwrap();
        writer.finish().unwrap();
        out
    }

    #[test]
    fn streamed_png_matches_the_whole_decode() {
        let (w, h) = (611u32, 1203u32);
        let detail = |n: u32| -> Vec<u8> {
            (0..w * h * n)
                .map(|i| u8::try_from((i * 7 + i / 1800 * 13 + (i / 611) % 97) % 256).unwrap())
                .collect()
        };
        for (color, samples) in [
            (png::ColorType::Rgb, detail(3)),
            (png::ColorType::GrayscaleAlpha, detail(2)),
            (png::ColorType::Grayscale, detail(1)),
        ] {
            let bytes = png_file(w, h, color, &samples);
            let header = header::read(&bytes).unwrap();
            let options = MediaOptions::default();
            let plans: Vec<Plan> = [300, 100]
                .iter()
                .map(|&size| Plan::new(&spec(Fit::Contain, size), (w, h), 1))
                .collect();
            assert_eq!(header.info.format, ImageFormat::Png);
            let size = shrink_target(&plans, (w, h), false).unwrap();
            assert_eq!(size, (152, 300));
            assert_eq!(shrink_target(&plans, (w, h), true), None);
            let request = Request {
                header: &header,
                limits: &options.limits,
                deadline: Deadline::new(options.limits.decode_timeout),
                color_profile: options.color_profile,
                min_size: (w, h),
                transcode: false,
                orientation: 1,
            };
            let mut resampler = Resampler::new();
            let streamed = decode::png_resized(&bytes, &request, size, &mut resampler)
                .unwrap()
                .unwrap();
            let whole = decode::decode(&bytes, &request).unwrap().base;
            let expected = resampler.resize(&whole, None, size.0, size.1).unwrap();
            assert_eq!(streamed.raster.channels, expected.channels, "{color:?}");
            // Colour under little alpha is unpremultiplied by a large factor, so compare
            // what is displayed: colour weighted by its alpha.
            let n = expected.channels.count();
            let worst = streamed
                .raster
                .pixels
                .chunks_exact(n)
                .zip(expected.pixels.chunks_exact(n))
                .flat_map(|(a, b)| {
                    let alpha = if n == 4 {
                        u32::from(a[3].max(b[3]))
                    } else {
                        255
                    };
                    (0..n).map(move |c| {
                        let weight = if c == 3 { 255 } else { alpha };
                        (u32::from(a[c].abs_diff(b[c])) * weight).div_ceil(255)
                    })
                })
                .max()
                .unwrap();
            // One level, plus one for the rounding of unpremultiplying each side.
            let allowed = if n == 4 { 2 } else { 1 };
            assert!(
                worst <= allowed,
                "{color:?}: streamed differs by up to {worst}"
            );
        }
    }

    #[test]
    fn shrinking_needs_a_variant_that_feeds_every_other() {
        let contain = Plan::new(&spec(Fit::Contain, 200), (600, 400), 1);
        assert_eq!(
            shrink_target(&[contain], (600, 400), false),
            Some((200, 133))
        );
        // A 300x300 cover crop needs 450 source columns: more than the 200-wide variant has.
        let cover = Plan::new(
            &spec(
                Fit::Cover {
                    width: 300,
                    height: 300,
                },
                0,
            ),
            (600, 400),
            1,
        );
        assert_eq!(shrink_target(&[contain, cover], (600, 400), false), None);
        // A variant as large as the source gains nothing from streaming.
        let full = Plan::new(&spec(Fit::Contain, 600), (600, 400), 1);
        assert_eq!(shrink_target(&[full], (600, 400), false), None);
    }

    #[test]
    fn contain_fixes_the_long_edge_and_never_upscales() {
        let plan = Plan::new(&spec(Fit::Contain, 1024), (6000, 4000), 1);
        assert_eq!((plan.width, plan.height), (1024, 683));
        let plan = Plan::new(&spec(Fit::Contain, 4096), (300, 200), 1);
        assert_eq!((plan.width, plan.height), (300, 200));
        // Orientation 6: displayed 4000x6000, so the stored output is 1024 wide... rotated.
        let plan = Plan::new(&spec(Fit::Contain, 1024), (6000, 4000), 6);
        assert_eq!((plan.width, plan.height), (1024, 683));
        assert_eq!(plan.min_source((6000, 4000)), (1024, 683));
    }

    #[test]
    fn cover_crops_the_centre_to_the_box() {
        let fit = Fit::Cover {
            width: 200,
            height: 200,
        };
        let plan = Plan::new(&spec(fit, 0), (600, 400), 1);
        assert_eq!((plan.width, plan.height), (200, 200));
        let crop = plan.crop.unwrap();
        assert!((crop.left - 100.0).abs() < 1e-9 && (crop.width - 400.0).abs() < 1e-9);
        assert_eq!(plan.min_source((600, 400)), (300, 200));

        // A box larger than the source keeps its shape at the largest size that fits.
        let fit = Fit::Cover {
            width: 800,
            height: 400,
        };
        let plan = Plan::new(&spec(fit, 0), (300, 300), 1);
        assert_eq!((plan.width, plan.height), (300, 150));

        // Transposed orientation: the box is 200 wide when displayed, so 200 tall stored.
        let fit = Fit::Cover {
            width: 200,
            height: 100,
        };
        let plan = Plan::new(&spec(fit, 0), (600, 400), 8);
        assert_eq!((plan.width, plan.height), (100, 200));
    }
}
