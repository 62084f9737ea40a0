//! Every accepted input kind decodes and yields consistent, correctly sized outputs.
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    clippy::cast_possible_wrap,
    reason = "test-pattern arithmetic on small, known values"
)]

mod common;

use airlock_media::{
    ColorProfile, ImageFormat, MediaError, MediaOptions, OutputFormat, Processed, VariantSpec,
    probe, process, process_variants_only,
};
use common::{
    BOTTOM_RIGHT, GifFrame, TOP_LEFT, assert_consistent, decode, distance, options_with_cover,
};
use image::GenericImageView;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}")).expect("fixture")
}

/// Checks sizes (long edge clamped to the source, aspect within a pixel, Cover exact),
/// decodability, hashes and the placeholder.
fn check(processed: &Processed, width: u32, height: u32) {
    let meta = &processed.metadata;
    assert_eq!((meta.width, meta.height), (width, height));
    assert_consistent("original", &processed.original);
    assert_eq!(
        (processed.original.width, processed.original.height),
        (width, height)
    );
    let long = width.max(height);
    for (name, encoded) in &processed.variants {
        assert_consistent(name, encoded);
        if name == "square" {
            let side = 96.min(width).min(height);
            assert_eq!((encoded.width, encoded.height), (side, side), "{name}");
            continue;
        }
        let size: u32 = name[1..].parse().unwrap();
        let expected_long = size.min(long);
        assert_eq!(encoded.width.max(encoded.height), expected_long, "{name}");
        // Aspect ratio kept to within a pixel.
        let exact_short = f64::from(width.min(height)) * f64::from(expected_long) / f64::from(long);
        let short = encoded.width.min(encoded.height);
        assert!(
            (f64::from(short) - exact_short).abs() <= 1.0,
            "{name}: short edge {short}"
        );
        assert_eq!(
            width >= height,
            encoded.width >= encoded.height,
            "{name}: orientation"
        );
    }
    assert_eq!(meta.placeholder_kind.as_deref(), Some("thumbhash"));
    assert!(meta.placeholder.as_ref().is_some_and(|p| p.len() > 10));
    assert_eq!(meta.outputs.len(), 1 + processed.variants.len());
    assert_eq!(meta.outputs[0].name, "original");
    assert_eq!(meta.outputs[0].sha256, processed.original.sha256);
    for (info, (name, encoded)) in meta.outputs[1..].iter().zip(&processed.variants) {
        assert_eq!(&info.name, name);
        assert_eq!(info.sha256, encoded.sha256);
        assert_eq!(info.bytes, encoded.bytes.len() as u64);
        assert_eq!(info.content_type, encoded.content_type);
    }
}

/// The colour at a fraction of the way across an output.
fn colour_at(image: &image::DynamicImage, fx: f64, fy: f64) -> [u8; 3] {
    let x = (f64::from(image.width()) * fx) as u32;
    let y = (f64::from(image.height()) * fy) as u32;
    let p = image.get_pixel(x, y);
    [p[0], p[1], p[2]]
}

#[test]
fn baseline_jpeg_makes_every_variant() {
    let (w, h) = (2100, 1400);
    let input = common::jpeg(w, h, &common::photo_like(w, h), false);
    let processed = process(&input, &options_with_cover()).unwrap();
    check(&processed, w, h);
    let meta = &processed.metadata;
    assert_eq!(meta.format, "jpeg");
    assert_eq!(meta.color_type, "ycbcr");
    assert_eq!(
        (meta.frame_count, meta.animated, meta.has_alpha),
        (1, false, false)
    );
    assert_eq!(processed.original.content_type, "image/jpeg");
    let sizes: Vec<_> = processed
        .variants
        .iter()
        .map(|(_, e)| (e.width, e.height))
        .collect();
    assert_eq!(sizes, [(2048, 1365), (1024, 683), (256, 171), (96, 96)]);
}

#[test]
fn variants_only_matches_the_full_run_in_shape() {
    // 1/2-scale decoding is possible for the largest variant (400 < 1200/2).
    let (w, h) = (1200, 800);
    let input = common::jpeg(w, h, &common::photo_like(w, h), false);
    let mut options = options_with_cover();
    for (variant, size) in options.variants.iter_mut().zip([400, 200, 64]) {
        variant.size = size;
        variant.name = format!("w{size}");
    }
    let full = process(&input, &options).unwrap();
    let light = process_variants_only(&input, &options).unwrap();
    assert_eq!(light.variants.len(), full.variants.len());
    for ((name, a), (_, b)) in light.variants.iter().zip(&full.variants) {
        assert_consistent(name, a);
        assert_eq!((a.width, a.height), (b.width, b.height), "{name}");
        // Reduced-scale decoding changes pixels only slightly.
        let (da, db) = (decode(a).to_rgb8(), decode(b).to_rgb8());
        let mean: f64 = da
            .as_raw()
            .iter()
            .zip(db.as_raw())
            .map(|(x, y)| f64::from(x.abs_diff(*y)))
            .sum::<f64>()
            / da.as_raw().len() as f64;
        assert!(mean < 4.0, "{name}: mean difference {mean}");
    }
    assert_eq!(light.metadata.outputs.len(), light.variants.len());
}

#[test]
fn small_images_are_never_upscaled() {
    let input = common::jpeg(300, 200, &common::quadrants(300, 200), false);
    let processed = process(&input, &options_with_cover()).unwrap();
    check(&processed, 300, 200);
    let sizes: Vec<_> = processed
        .variants
        .iter()
        .map(|(_, e)| (e.width, e.height))
        .collect();
    assert_eq!(sizes, [(300, 200), (300, 200), (256, 171), (96, 96)]);
}

#[test]
fn progressive_and_grayscale_jpegs_decode() {
    let (w, h) = (640, 480);
    let progressive = common::jpeg(w, h, &common::quadrants(w, h), true);
    let processed = process(&progressive, &options_with_cover()).unwrap();
    check(&processed, w, h);
    let image = decode(&processed.variants[1].1);
    assert!(distance(colour_at(&image, 0.25, 0.25), TOP_LEFT) < 12);

    let gray: Vec<u8> = (0..w * h).map(|i| (i % w * 255 / w) as u8).collect();
    let gray_jpeg = common::jpeg_typed(w, h, &gray, jpeg_encoder::ColorType::Luma, false);
    let processed = process(&gray_jpeg, &options_with_cover()).unwrap();
    check(&processed, w, h);
    assert_eq!(processed.metadata.color_type, "gray");
    assert_eq!(decode(&processed.original).color(), image::ColorType::L8);
}

#[test]
fn cmyk_and_ycck_jpegs_become_rgb() {
    let (w, h) = (64, 48);
    // Magenta + yellow ink prints red; no ink is white.
    let cmyk: Vec<u8> = (0..w * h)
        .flat_map(|i| {
            if i % w < w / 2 {
                [0, 255, 255, 0]
            } else {
                [0, 0, 0, 0]
            }
        })
        .collect();
    for (color, name) in [
        (jpeg_encoder::ColorType::Cmyk, "cmyk"),
        (jpeg_encoder::ColorType::CmykAsYcck, "ycck"),
    ] {
        let input = common::jpeg_typed(w, h, &cmyk, color, false);
        let processed = process(&input, &options_with_cover()).unwrap();
        check(&processed, w, h);
        assert_eq!(processed.metadata.color_type, name);
        let image = decode(&processed.original);
        assert_eq!(image.color(), image::ColorType::Rgb8, "{name}");
        assert!(
            distance(colour_at(&image, 0.2, 0.5), [255, 0, 0]) < 16,
            "{name}"
        );
        assert!(
            distance(colour_at(&image, 0.8, 0.5), [255, 255, 255]) < 8,
            "{name}"
        );
    }
}

#[test]
fn png_colour_types_and_depths_decode() {
    use png::{BitDepth, ColorType};
    let (w, h) = (50u32, 30u32);
    let rgb = common::quadrants(w, h);
    let rgba: Vec<u8> = rgb
        .chunks(3)
        .enumerate()
        .flat_map(|(i, p)| [p[0], p[1], p[2], if i as u32 % w < w / 2 { 255 } else { 0 }])
        .collect();
    let rgb16: Vec<u8> = rgb.iter().flat_map(|&v| [v, v]).collect();
    let gray: Vec<u8> = (0..w * h).map(|i| (i * 5) as u8).collect();
    let gray_alpha: Vec<u8> = gray.iter().flat_map(|&v| [v, 128]).collect();
    let indices: Vec<u8> = (0..w * h).map(|i| u8::from(i % w >= w / 2)).collect();
    let palette = [255, 0, 0, 0, 0, 255];
    let trns = [255, 0];

    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        (
            "rgb",
            common::png(w, h, ColorType::Rgb, BitDepth::Eight, &rgb, None),
            false,
        ),
        (
            "rgba",
            common::png(w, h, ColorType::Rgba, BitDepth::Eight, &rgba, None),
            true,
        ),
        (
            "rgb",
            common::png(w, h, ColorType::Rgb, BitDepth::Sixteen, &rgb16, None),
            false,
        ),
        (
            "gray",
            common::png(w, h, ColorType::Grayscale, BitDepth::Eight, &gray, None),
            false,
        ),
        (
            "gray-alpha",
            common::png(
                w,
                h,
                ColorType::GrayscaleAlpha,
                BitDepth::Eight,
                &gray_alpha,
                None,
            ),
            true,
        ),
        (
            "palette",
            common::png(
                w,
                h,
                ColorType::Indexed,
                BitDepth::Eight,
                &indices,
                Some((&palette, Some(&trns))),
            ),
            true,
        ),
    ];
    for (color_type, input, alpha) in cases {
        let processed = process(&input, &options_with_cover()).unwrap();
        check(&processed, w, h);
        let meta = &processed.metadata;
        assert_eq!(
            (meta.format.as_str(), meta.color_type.as_str()),
            ("png", color_type)
        );
        assert_eq!(meta.has_alpha, alpha, "{color_type}");
        assert_eq!(processed.original.content_type, "image/png");
        let original = decode(&processed.original);
        assert_eq!(original.color().has_alpha(), alpha, "{color_type}");
        if color_type == "palette" {
            let pixel = original.get_pixel(2, 2);
            assert_eq!(pixel.0, [255, 0, 0, 255]);
            assert_eq!(original.get_pixel(w - 2, 2)[3], 0);
        }
    }
}

#[test]
fn sixteen_bit_png_keeps_its_colours() {
    let (w, h) = (40u32, 40u32);
    let rgb16: Vec<u8> = common::quadrants(w, h)
        .iter()
        .flat_map(|&v| [v, 0x80])
        .collect();
    let input = common::png(
        w,
        h,
        png::ColorType::Rgb,
        png::BitDepth::Sixteen,
        &rgb16,
        None,
    );
    let processed = process(&input, &MediaOptions::default()).unwrap();
    assert_eq!(processed.metadata.bit_depth, 16);
    let original = decode(&processed.original).to_rgb8();
    assert_eq!(original.get_pixel(1, 1).0, TOP_LEFT);
    assert_eq!(original.get_pixel(w - 1, h - 1).0, BOTTOM_RIGHT);
}

#[test]
fn sixteen_bit_png_samples_are_rounded_to_eight_bits() {
    // (16-bit sample, nearest 8-bit value): truncating to the high byte would give 18, 0
    // and 0 for the first three.
    let cases: [(u16, u8); 5] = [
        (0x12FF, 19),
        (0x0081, 1),
        (0x00FF, 1),
        (0x1280, 18),
        (0xFFFF, 255),
    ];
    // Runs of 16 pixels, so that a half-size variant has runs of 8 whose middles are
    // untouched by the resampling filter.
    let run = 16u32;
    let (w, h) = (cases.len() as u32 * run, 8u32);
    let row: Vec<u8> = cases
        .iter()
        .flat_map(|(v, _)| v.to_be_bytes().repeat(run as usize))
        .collect();
    let input = common::png(
        w,
        h,
        png::ColorType::Grayscale,
        png::BitDepth::Sixteen,
        &row.repeat(h as usize),
        None,
    );
    let options = MediaOptions {
        variants: vec![VariantSpec {
            format: OutputFormat::Png,
            ..VariantSpec::jpeg_contain(w / 2, 90)
        }],
        ..MediaOptions::default()
    };
    // The original comes from the whole decode, the variant (made without an original)
    // from the decode streamed into its resize.
    let original = decode(&process(&input, &options).unwrap().original).to_luma8();
    let variant = process_variants_only(&input, &options).unwrap().variants[0]
        .1
        .clone();
    let variant = decode(&variant).to_luma8();
    for (i, (sample, expected)) in cases.iter().enumerate() {
        let x = i as u32 * run + run / 2;
        assert_eq!(original.get_pixel(x, 1).0[0], *expected, "{sample:#06x}");
        assert_eq!(
            variant.get_pixel(x / 2, 1).0[0],
            *expected,
            "{sample:#06x}, streamed"
        );
    }
}

fn gif_palette() -> Vec<u8> {
    let mut palette = vec![0u8; 4 * 3];
    palette[..3].copy_from_slice(&TOP_LEFT);
    palette[3..6].copy_from_slice(&common::TOP_RIGHT);
    palette[6..9].copy_from_slice(&common::BOTTOM_LEFT);
    palette[9..12].copy_from_slice(&BOTTOM_RIGHT);
    palette
}

#[test]
fn static_gif_stays_gif() {
    let (w, h) = (60u16, 40u16);
    let indices: Vec<u8> = (0..u32::from(w) * u32::from(h))
        .map(|i| u8::from(i % u32::from(w) >= u32::from(w) / 2))
        .collect();
    let frame = GifFrame {
        width: w,
        height: h,
        left: 0,
        top: 0,
        indices,
        delay: 0,
        transparent: None,
    };
    let input = common::gif(w, h, &gif_palette(), &[frame]);
    let processed = process(&input, &options_with_cover()).unwrap();
    check(&processed, 60, 40);
    assert_eq!(processed.original.content_type, "image/gif");
    assert_eq!(processed.metadata.color_type, "palette");
    let original = decode(&processed.original).to_rgb8();
    assert_eq!(original.get_pixel(5, 5).0, TOP_LEFT);
    assert_eq!(original.get_pixel(55, 5).0, common::TOP_RIGHT);
}

#[test]
fn animated_gif_keeps_its_frames_and_timing() {
    let (w, h) = (32u16, 24u16);
    let frames: Vec<GifFrame> = (0..4u8)
        .map(|n| GifFrame {
            width: 16,
            height: 12,
            left: u16::from(n % 2) * 16,
            top: u16::from(n / 2) * 12,
            indices: vec![n; 16 * 12],
            delay: 10 + u16::from(n),
            transparent: None,
        })
        .collect();
    let input = common::gif(w, h, &gif_palette(), &frames);
    let info = probe(&input).unwrap();
    assert_eq!(
        (info.format, info.frame_count, info.animated),
        (ImageFormat::Gif, 4, true)
    );

    let processed = process(&input, &options_with_cover()).unwrap();
    check(&processed, 32, 24);
    assert!(processed.metadata.animated);
    assert_eq!(processed.metadata.frame_count, 4);

    let mut decoder = gif::DecodeOptions::new()
        .read_info(processed.original.bytes.as_slice())
        .unwrap();
    let mut delays = Vec::new();
    while let Some(frame) = decoder.read_next_frame().unwrap() {
        delays.push(frame.delay);
    }
    assert_eq!(delays, [10, 11, 12, 13]);
    assert_eq!(decoder.repeat(), gif::Repeat::Infinite);

    // Variants show the first frame: only its quarter is opaque, flattened onto white.
    let variant = decode(&processed.variants[0].1);
    assert!(distance(colour_at(&variant, 0.2, 0.2), TOP_LEFT) < 16);
    assert!(distance(colour_at(&variant, 0.8, 0.8), [255, 255, 255]) < 8);
}

#[test]
fn lossless_webp_with_alpha_stays_webp() {
    let (w, h) = (48u32, 32u32);
    let rgba: Vec<u8> = common::quadrants(w, h)
        .chunks(3)
        .enumerate()
        .flat_map(|(i, p)| {
            [
                p[0],
                p[1],
                p[2],
                if (i as u32) < w * h / 2 { 255 } else { 64 },
            ]
        })
        .collect();
    let input = common::webp_lossless(w, h, &rgba, true);
    let processed = process(&input, &options_with_cover()).unwrap();
    check(&processed, w, h);
    assert_eq!(processed.original.content_type, "image/webp");
    assert!(processed.metadata.has_alpha);
    let original = decode(&processed.original).to_rgba8();
    // Lossless: the pixels survive exactly.
    assert_eq!(original.as_raw(), &rgba);
}

#[test]
fn lossy_webp_fixtures_decode() {
    for (name, alpha) in [("lossy.webp", false), ("lossy-alpha.webp", true)] {
        let processed = process(&fixture(name), &options_with_cover()).unwrap();
        check(&processed, 96, 64);
        assert_eq!(processed.metadata.has_alpha, alpha, "{name}");
        let original = decode(&processed.original);
        assert!(
            distance(colour_at(&original, 0.2, 0.2), TOP_LEFT) < 20,
            "{name}"
        );
    }
}

#[test]
fn animated_webp_stays_animated() {
    let processed = process(&fixture("animated-lossy.webp"), &options_with_cover()).unwrap();
    check(&processed, 96, 64);
    assert!(processed.metadata.animated);
    assert_eq!(processed.metadata.frame_count, 3);
    let mut decoder =
        image_webp::WebPDecoder::new(std::io::Cursor::new(&processed.original.bytes)).unwrap();
    assert!(decoder.is_animated());
    assert_eq!(decoder.num_frames(), 3);
    let mut buffer = vec![0u8; decoder.output_buffer_size().unwrap()];
    let durations: Vec<u32> = (0..3)
        .map(|_| decoder.read_frame(&mut buffer).unwrap())
        .collect();
    assert_eq!(durations, [100, 150, 200]);
}

#[test]
fn variant_formats_are_honoured() {
    let (w, h) = (120u32, 80u32);
    let input = common::jpeg(w, h, &common::quadrants(w, h), false);
    let spec = |name: &str, format| VariantSpec {
        name: name.into(),
        size: 60,
        fit: airlock_media::Fit::Contain,
        format,
        quality: 70,
    };
    let options = MediaOptions {
        variants: vec![
            spec("png", OutputFormat::Png),
            spec("webp", OutputFormat::WebP),
            spec("jpeg", OutputFormat::Jpeg),
        ],
        ..MediaOptions::default()
    };
    let processed = process(&input, &options).unwrap();
    let types: Vec<_> = processed
        .variants
        .iter()
        .map(|(name, e)| {
            assert_consistent(name, e);
            (e.content_type, e.extension, e.width, e.height)
        })
        .collect();
    assert_eq!(
        types,
        [
            ("image/png", "png", 60, 40),
            ("image/webp", "webp", 60, 40),
            ("image/jpeg", "jpg", 60, 40)
        ]
    );
}

#[test]
fn icc_profiles_are_converted_or_dropped() {
    let p3 = moxcms::ColorProfile::new_display_p3().encode().unwrap();
    let (w, h) = (16u32, 16u32);
    let rgb = [40u8, 200, 90].repeat((w * h) as usize);
    let plain = common::png(w, h, png::ColorType::Rgb, png::BitDepth::Eight, &rgb, None);
    // iCCP goes right after IHDR (8-byte signature + 25-byte IHDR chunk).
    let mut iccp = b"Display P3\0\0".to_vec();
    iccp.extend_from_slice(&common::zlib_stored(&p3));
    let mut input = plain[..33].to_vec();
    input.extend_from_slice(&common::png_chunk(*b"iCCP", &iccp));
    input.extend_from_slice(&plain[33..]);
    let converted = process(&input, &MediaOptions::default()).unwrap();
    assert_eq!(
        converted.metadata.icc_profile.as_deref(),
        Some("srgb-converted")
    );
    let pixel = decode(&converted.original).to_rgb8().get_pixel(3, 3).0;
    // Display P3 green is more saturated than sRGB's: converted, it leaves the sRGB gamut
    // edge, so red drops and green rises or stays.
    assert_ne!(pixel, [40, 200, 90]);
    assert!(pixel[0] < 40 && pixel[1] >= 200, "converted {pixel:?}");

    let options = MediaOptions {
        color_profile: ColorProfile::Drop,
        ..MediaOptions::default()
    };
    let dropped = process(&input, &options).unwrap();
    assert_eq!(dropped.metadata.icc_profile.as_deref(), Some("dropped"));
    assert_eq!(
        decode(&dropped.original).to_rgb8().get_pixel(3, 3).0,
        [40, 200, 90]
    );

    // A JPEG profile split into APP2 segments is found too, and never copied out.
    let mut app2 = b"ICC_PROFILE\0\x01\x01".to_vec();
    app2.extend_from_slice(&p3);
    let jpeg = common::with_segments_after_soi(
        &common::jpeg(w, h, &rgb, false),
        &[common::segment(0xE2, &app2)],
    );
    let processed = process(&jpeg, &MediaOptions::default()).unwrap();
    assert_eq!(
        processed.metadata.icc_profile.as_deref(),
        Some("srgb-converted")
    );
    for (name, output) in common::all_outputs(&processed) {
        assert!(!common::contains(&output.bytes, b"ICC_PROFILE"), "{name}");
    }
}

#[test]
fn probe_reads_headers_only() {
    let input = common::jpeg(320, 240, &common::quadrants(320, 240), true);
    let info = probe(&input).unwrap();
    assert_eq!(
        (info.format, info.width, info.height),
        (ImageFormat::Jpeg, 320, 240)
    );
    assert_eq!((info.frame_count, info.bit_depth), (1, 8));
    let webp = probe(&fixture("lossy-alpha.webp")).unwrap();
    assert_eq!(
        (webp.format, webp.width, webp.height, webp.has_alpha),
        (ImageFormat::WebP, 96, 64, true)
    );
    assert!(matches!(probe(b"hello"), Err(MediaError::Unsupported(_))));
}

#[test]
fn metadata_serializes_in_camel_case() {
    let input = common::jpeg(64, 64, &common::quadrants(64, 64), false);
    let processed = process(&input, &MediaOptions::default()).unwrap();
    let json = serde_json::to_value(&processed.metadata).unwrap();
    for key in [
        "format",
        "orientationApplied",
        "hasAlpha",
        "frameCount",
        "colorType",
        "bitDepth",
        "iccProfile",
        "cameraMake",
        "capturedAt",
        "gpsPresent",
        "placeholder",
        "placeholderKind",
        "outputs",
    ] {
        assert!(json.get(key).is_some(), "missing {key}");
    }
    assert_eq!(json["outputs"][0]["contentType"], "image/jpeg");
}

#[test]
fn processing_is_deterministic() {
    let (w, h) = (300u32, 200u32);
    let rgba: Vec<u8> = common::photo_like(w, h)
        .chunks(3)
        .enumerate()
        .flat_map(|(i, p)| [p[0], p[1], p[2], (i % 251) as u8])
        .collect();
    let inputs = [
        common::jpeg(w, h, &common::photo_like(w, h), false),
        common::png(
            w,
            h,
            png::ColorType::Rgba,
            png::BitDepth::Eight,
            &rgba,
            None,
        ),
        fixture("animated-lossy.webp"),
        fixture("lossy.webp"),
    ];
    for input in &inputs {
        let first = process(input, &options_with_cover()).unwrap();
        let second = process(input, &options_with_cover()).unwrap();
        assert_eq!(first, second);
        let light = process_variants_only(input, &options_with_cover()).unwrap();
        assert_eq!(
            light,
            process_variants_only(input, &options_with_cover()).unwrap()
        );
    }
}

/// A lossless (SOF3) 8x8 JPEG of `components` components at `precision` bits, every
/// sample at the predictor's start value (half the range): one 1-bit Huffman code, "no
/// difference", per sample.
fn lossless_jpeg(precision: u8, components: u8) -> Vec<u8> {
    let mut sof = vec![precision, 0, 8, 0, 8, components];
    for id in 1..=components {
        sof.extend_from_slice(&[id, 0x11, 0]);
    }
    let mut dht = vec![0x00, 1];
    dht.extend_from_slice(&[0; 15]);
    dht.push(0);
    let mut sos = vec![components];
    for id in 1..=components {
        sos.extend_from_slice(&[id, 0x00]);
    }
    sos.extend_from_slice(&[1, 0, 0]); // predictor 1, no point transform
    let mut out = vec![0xFF, 0xD8];
    out.extend_from_slice(&common::segment(0xC3, &sof));
    out.extend_from_slice(&common::segment(0xC4, &dht));
    out.extend_from_slice(&common::segment(0xDA, &sos));
    out.extend_from_slice(&vec![0; 8 * usize::from(components)]);
    out.extend_from_slice(&[0xFF, 0xD9]);
    out
}

#[test]
fn deep_lossless_jpegs_decode_in_gray_and_are_unsupported_in_colour() {
    let gray = process(&lossless_jpeg(16, 1), &MediaOptions::default()).unwrap();
    assert_eq!(gray.metadata.bit_depth, 16);
    assert_eq!(gray.metadata.color_type, "gray");
    let pixel = decode(&gray.original).to_luma8().get_pixel(3, 3).0[0];
    assert!(pixel.abs_diff(128) <= 1, "{pixel}");
    for precision in [12, 16] {
        let error = process(&lossless_jpeg(precision, 3), &MediaOptions::default()).unwrap_err();
        assert_eq!(
            error.code(),
            "image-unsupported",
            "{precision} bits: {error}"
        );
        assert_eq!(
            probe(&lossless_jpeg(precision, 3)).unwrap_err().code(),
            "image-unsupported"
        );
    }
}

#[test]
fn colour_under_full_transparency_is_zeroed_in_every_output() {
    let (w, h) = (16u32, 16u32);
    // Left half opaque, right half fully transparent but coloured (or not).
    let image = |hidden: [u8; 4]| {
        let rgba: Vec<u8> = (0..w * h)
            .flat_map(|i| {
                if i % w < w / 2 {
                    [220, 30, 30, 255]
                } else {
                    hidden
                }
            })
            .collect();
        common::png(
            w,
            h,
            png::ColorType::Rgba,
            png::BitDepth::Eight,
            &rgba,
            None,
        )
    };
    let variant = |name: &str, size: u32, format: OutputFormat| VariantSpec {
        name: name.into(),
        format,
        ..VariantSpec::jpeg_contain(size, 80)
    };
    let options = MediaOptions {
        variants: vec![
            variant("png", 8, OutputFormat::Png),
            variant("webp", 8, OutputFormat::WebP),
            variant("webp-full", 16, OutputFormat::WebP),
        ],
        ..MediaOptions::default()
    };
    let processed = process(&image([12, 34, 56, 0]), &options).unwrap();
    let clean = process(&image([0; 4]), &options).unwrap();
    for ((name, output), (_, clean)) in common::all_outputs(&processed)
        .into_iter()
        .zip(common::all_outputs(&clean))
    {
        // Lossy WebP variants may ring into transparent pixels from their visible
        // neighbours: the hidden colour is gone when the file is the same as without it.
        assert_eq!(output.bytes, clean.bytes, "{name}");
        let image = decode(output).to_rgba8();
        let transparent: Vec<[u8; 4]> = image.pixels().map(|p| p.0).filter(|p| p[3] == 0).collect();
        assert!(!transparent.is_empty(), "{name}");
        if output.content_type != "image/webp" {
            assert!(transparent.iter().all(|p| *p == [0; 4]), "{name}");
        }
    }

    // A GIF: the transparent index's palette colour is zeroed in the frames' palettes.
    let palette = [TOP_LEFT, [9, 8, 7]].concat();
    let frame = |delay: u16| GifFrame {
        width: 8,
        height: 8,
        left: 0,
        top: 0,
        indices: (0..64).map(|i| u8::from(i % 8 >= 4)).collect(),
        delay,
        transparent: Some(1),
    };
    let gif = common::gif(8, 8, &palette, &[frame(5), frame(7)]);
    let processed = process(&gif, &MediaOptions::default()).unwrap();
    assert_eq!(processed.original.content_type, "image/gif");
    let mut options = gif::DecodeOptions::new();
    options.set_color_output(gif::ColorOutput::Indexed);
    let mut decoder = options
        .read_info(processed.original.bytes.as_slice())
        .unwrap();
    let global = decoder.global_palette().map(<[u8]>::to_vec);
    let mut frames = 0;
    while let Some(frame) = decoder.read_next_frame().unwrap() {
        frames += 1;
        let index = usize::from(frame.transparent.expect("transparency kept"));
        let palette = frame.palette.clone().or_else(|| global.clone()).unwrap();
        assert_eq!(
            palette[index * 3..index * 3 + 3],
            [0, 0, 0],
            "frame {frames}"
        );
        assert_eq!(palette[..3], TOP_LEFT, "frame {frames}");
    }
    assert_eq!(frames, 2);
}
