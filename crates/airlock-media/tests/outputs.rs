//! Sanitized originals keep their input's kind of encoding: a lossy WebP stays lossy (still
//! or animated) at about its own size, a lossless one stays lossless, and a palette PNG
//! stays a palette PNG. WebP variants are lossy at their quality. And a PNG's `gAMA` /
//! `cHRM` without a profile is converted to sRGB.
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    clippy::cast_possible_wrap,
    reason = "test-pattern arithmetic on small, known values"
)]

mod common;

use airlock_media::{Fit, MediaOptions, OutputFormat, VariantSpec, process};
use common::{mean_error, original_only, photo_like, webp_chunks};

fn rgb8(bytes: &[u8]) -> Vec<u8> {
    image::load_from_memory(bytes).unwrap().to_rgb8().into_raw()
}

fn kinds(webp: &[u8]) -> Vec<[u8; 4]> {
    webp_chunks(webp)
        .into_iter()
        .map(|(kind, _)| kind)
        .collect()
}

#[test]
fn lossy_webp_stays_lossy_at_about_its_size() {
    let (width, height) = (640, 480);
    let pixels = photo_like(width, height);
    for quality in [50.0, 80.0, 92.0] {
        let input = libwebp::WebPEncodeRGB(&pixels, width, height, width * 3, quality)
            .unwrap()
            .to_vec();
        let processed = process(&input, &original_only()).unwrap();
        let output = &processed.original.bytes;
        assert_eq!(processed.original.content_type, "image/webp");
        assert!(kinds(output).contains(b"VP8 "), "{quality}: lossy out");
        assert!(!kinds(output).contains(b"VP8L"), "{quality}: no lossless");
        let ratio = output.len() as f64 / input.len() as f64;
        assert!(
            ratio <= 1.2,
            "quality {quality}: {} -> {} bytes ({ratio:.2}x)",
            input.len(),
            output.len()
        );
        let error = mean_error(&rgb8(output), &rgb8(&input));
        assert!(error < 3.0, "quality {quality}: mean error {error:.2}");
    }
}

#[test]
fn lossy_webp_with_alpha_stays_lossy_with_alpha() {
    let (width, height) = (200, 150);
    let rgb = photo_like(width, height);
    let rgba: Vec<u8> = rgb
        .chunks_exact(3)
        .enumerate()
        .flat_map(|(i, p)| {
            let alpha = if (i as u32 % width) < 50 { 0 } else { 255 };
            [p[0], p[1], p[2], alpha]
        })
        .collect();
    let input = libwebp::WebPEncodeRGBA(&rgba, width, height, width * 4, 80.0)
        .unwrap()
        .to_vec();
    let processed = process(&input, &original_only()).unwrap();
    let output = &processed.original.bytes;
    let chunks = kinds(output);
    assert!(
        chunks.contains(b"VP8 ") && chunks.contains(b"ALPH"),
        "{chunks:?}"
    );
    let decoded = image::load_from_memory(output).unwrap().to_rgba8();
    assert_eq!(decoded.get_pixel(10, 10).0[3], 0);
    assert_eq!(decoded.get_pixel(150, 10).0[3], 255);
}

#[test]
fn lossless_webp_stays_lossless() {
    let (width, height) = (64, 48);
    let pixels = photo_like(width, height);
    let input = libwebp::WebPEncodeLosslessRGB(&pixels, width, height, width * 3)
        .unwrap()
        .to_vec();
    let processed = process(&input, &original_only()).unwrap();
    let output = &processed.original.bytes;
    assert!(kinds(output).contains(b"VP8L"));
    assert_eq!(rgb8(output), pixels);
}

#[test]
fn webp_variants_are_lossy_at_their_quality() {
    let (width, height) = (640, 480);
    let pixels = photo_like(width, height);
    let input = common::png(
        width,
        height,
        png::ColorType::Rgb,
        png::BitDepth::Eight,
        &pixels,
        None,
    );
    let variant = |name: &str, format, quality| VariantSpec {
        name: name.into(),
        size: 320,
        fit: Fit::Contain,
        format,
        quality,
    };
    let options = MediaOptions {
        variants: vec![
            variant("lossless", OutputFormat::Png, 0),
            variant("q90", OutputFormat::WebP, 90),
            variant("q30", OutputFormat::WebP, 30),
        ],
        placeholder: false,
        ..MediaOptions::default()
    };
    let processed = process(&input, &options).unwrap();
    let [(_, lossless), (_, q90), (_, q30)] = processed.variants.as_slice() else {
        panic!("three variants expected");
    };
    let reference = rgb8(&lossless.bytes);
    let mut errors = Vec::new();
    for webp in [q90, q30] {
        assert_eq!(webp.content_type, "image/webp");
        assert_eq!((webp.width, webp.height), (320, 240));
        let chunks = kinds(&webp.bytes);
        assert!(chunks.contains(b"VP8 "), "lossy out: {chunks:?}");
        assert!(!chunks.contains(b"VP8L"), "no lossless: {chunks:?}");
        let error = mean_error(&rgb8(&webp.bytes), &reference);
        assert!(
            error < 6.0,
            "mean error {error:.2} against the lossless resize"
        );
        errors.push(error);
    }
    // The quality is the policy's: the coarser file is smaller and further off.
    assert!(q30.bytes.len() < q90.bytes.len() * 3 / 4);
    assert!(errors[0] < 2.5, "q90 mean error {:.2}", errors[0]);
    assert!(errors[1] > errors[0], "{errors:?}");
}

/// An animated lossy WebP of `frames` distinct frames, 100 ms each, made by libwebp.
fn animated_lossy(width: u32, height: u32, frames: u32) -> (Vec<u8>, Vec<Vec<u8>>) {
    let base = photo_like(width, height);
    let mut encoder = webp_animation::Encoder::new_with_options(
        (width, height),
        webp_animation::EncoderOptions {
            color_mode: webp_animation::ColorMode::Rgb,
            encoding_config: Some(webp_animation::EncodingConfig::new_lossy(75.0)),
            ..webp_animation::EncoderOptions::default()
        },
    )
    .unwrap();
    let mut shown = Vec::new();
    for frame in 0..frames {
        // A bright square moves across the picture.
        let mut pixels = base.clone();
        for y in 20..60 {
            for x in 0..40 {
                let at = ((y * width + x + frame * 50) * 3) as usize;
                pixels[at..at + 3].copy_from_slice(&[250, 250, 40]);
            }
        }
        encoder.add_frame(&pixels, (frame * 100) as i32).unwrap();
        shown.push(pixels);
    }
    let file = encoder.finalize((frames * 100) as i32).unwrap().to_vec();
    (file, shown)
}

#[test]
fn animated_lossy_webp_stays_animated_and_lossy() {
    let (width, height, frames) = (320, 240, 5);
    let (input, shown) = animated_lossy(width, height, frames);
    let processed = process(&input, &original_only()).unwrap();
    assert_eq!(processed.metadata.frame_count, frames);
    let output = &processed.original.bytes;
    let chunks = webp_chunks(output);
    let anmf: Vec<&Vec<u8>> = chunks
        .iter()
        .filter(|(kind, _)| kind == b"ANMF")
        .map(|(_, data)| data)
        .collect();
    assert_eq!(anmf.len(), frames as usize, "frame count kept");
    for frame in &anmf {
        assert!(common::contains(frame, b"VP8 "), "every frame lossy");
        assert!(!common::contains(frame, b"VP8L"));
    }
    let ratio = output.len() as f64 / input.len() as f64;
    assert!(ratio <= 1.2, "{} -> {} bytes", input.len(), output.len());

    // Every frame shows what the source showed, within lossy error.
    let decoder =
        image::codecs::webp::WebPDecoder::new(std::io::Cursor::new(output.as_slice())).unwrap();
    let frames_out: Vec<image::Frame> = image::AnimationDecoder::into_frames(decoder)
        .collect_frames()
        .unwrap();
    assert_eq!(frames_out.len(), frames as usize);
    for (index, (frame, source)) in frames_out.iter().zip(&shown).enumerate() {
        let rgb = image::DynamicImage::ImageRgba8(frame.buffer().clone())
            .to_rgb8()
            .into_raw();
        let error = mean_error(&rgb, source);
        assert!(error < 6.0, "frame {index}: mean error {error:.2}");
        let (numerator, denominator) = frame.delay().numer_denom_ms();
        assert_eq!(numerator / denominator, 100);
    }
}

/// A palette PNG of `colours` entries, the first of them fully transparent with colour.
fn palette_png(width: u32, height: u32, colours: usize, depth: png::BitDepth) -> Vec<u8> {
    let palette: Vec<u8> = (0..colours)
        .flat_map(|i| {
            [
                (i * 37 % 256) as u8,
                (i * 91 % 256) as u8,
                (i * 13 % 256) as u8,
            ]
        })
        .collect();
    let trns = [0u8, 128];
    let bits = depth as usize;
    let stride = (width as usize * bits).div_ceil(8);
    let mut data = vec![0u8; stride * height as usize];
    for y in 0..height as usize {
        for x in 0..width as usize {
            let index = (x / 8 + y / 8 * 3) % colours;
            let shift = 8 - bits * (x % (8 / bits) + 1);
            data[y * stride + x * bits / 8] |= (index << shift) as u8;
        }
    }
    common::png(
        width,
        height,
        png::ColorType::Indexed,
        depth,
        &data,
        Some((&palette, Some(&trns))),
    )
}

#[test]
fn palette_png_stays_palette() {
    for (colours, depth) in [(200, png::BitDepth::Eight), (12, png::BitDepth::Four)] {
        let input = palette_png(300, 200, colours, depth);
        let processed = process(&input, &original_only()).unwrap();
        let output = &processed.original.bytes;
        let decoder = png::Decoder::new(std::io::Cursor::new(output.as_slice()));
        let reader = decoder.read_info().unwrap();
        let info = reader.info();
        assert_eq!(
            info.color_type,
            png::ColorType::Indexed,
            "{colours} colours"
        );
        assert!(info.palette.as_ref().unwrap().len() <= colours * 3);
        let ratio = output.len() as f64 / input.len() as f64;
        assert!(
            ratio <= 1.2,
            "{colours} colours: {} -> {} bytes",
            input.len(),
            output.len()
        );
        // Same pixels, except that transparent ones lose their colour.
        let expected = image::load_from_memory(&input).unwrap().to_rgba8();
        let got = image::load_from_memory(output).unwrap().to_rgba8();
        for (a, b) in expected.pixels().zip(got.pixels()) {
            if a.0[3] == 0 {
                assert_eq!(b.0, [0, 0, 0, 0]);
            } else {
                assert_eq!(a, b);
            }
        }
    }
}

/// An 8-bit PNG with the given colour chunks placed before its image data.
fn png_with_color_chunks(
    width: u32,
    height: u32,
    color: png::ColorType,
    data: &[u8],
    chunks: &[([u8; 4], Vec<u8>)],
) -> Vec<u8> {
    let mut file = common::png(width, height, color, png::BitDepth::Eight, data, None);
    for (kind, body) in chunks.iter().rev() {
        file = common::png_with_chunk(&file, *kind, body);
    }
    file
}

/// sRGB encoding of linear light, to 8 bits (IEC 61966-2-1).
fn srgb(linear: f64) -> u8 {
    let v = if linear <= 0.003_130_8 {
        linear * 12.92
    } else {
        1.055 * linear.powf(1.0 / 2.4) - 0.055
    };
    (v * 255.0).round() as u8
}

fn decoded_png(bytes: &[u8]) -> image::RgbImage {
    let processed = process(bytes, &original_only()).unwrap();
    image::load_from_memory(&processed.original.bytes)
        .unwrap()
        .to_rgb8()
}

#[test]
fn gama_without_a_profile_is_converted_to_srgb() {
    // gAMA 1/1.8 (55556): a sample v means linear light v^1.8.
    let values: Vec<u8> = vec![0, 32, 64, 128, 192, 255];
    let gray: Vec<u8> = values.clone();
    let rgb: Vec<u8> = values.iter().flat_map(|&v| [v, v / 2, 255 - v]).collect();
    let gama = (*b"gAMA", 55_556u32.to_be_bytes().to_vec());
    let expected = |v: u8| srgb((f64::from(v) / 255.0).powf(100_000.0 / 55_556.0));
    assert_eq!(expected(128), 146, "the formula's own mid-grey");

    let out = decoded_png(&png_with_color_chunks(
        6,
        1,
        png::ColorType::Grayscale,
        &gray,
        std::slice::from_ref(&gama),
    ));
    for (x, &v) in values.iter().enumerate() {
        let got = out.get_pixel(x as u32, 0).0;
        assert!(got[0].abs_diff(expected(v)) <= 1, "grey {v}: {got:?}");
        assert_eq!(got[0], got[1]);
    }
    let out = decoded_png(&png_with_color_chunks(
        6,
        1,
        png::ColorType::Rgb,
        &rgb,
        &[gama],
    ));
    for (x, &v) in values.iter().enumerate() {
        let got = out.get_pixel(x as u32, 0).0;
        let want = [v, v / 2, 255 - v].map(expected);
        for c in 0..3 {
            assert!(got[c].abs_diff(want[c]) <= 1, "{v}: {got:?} vs {want:?}");
        }
    }
}

#[test]
fn srgb_chunk_or_a_gama_of_one_over_2_2_leaves_pixels_alone() {
    let rgb: Vec<u8> = (0..30u8).map(|i| i * 8).collect();
    let cases = [
        vec![(*b"gAMA", 45_455u32.to_be_bytes().to_vec())],
        vec![
            (*b"sRGB", vec![0]),
            (*b"gAMA", 100_000u32.to_be_bytes().to_vec()),
        ],
    ];
    for chunks in cases {
        let out = decoded_png(&png_with_color_chunks(
            10,
            1,
            png::ColorType::Rgb,
            &rgb,
            &chunks,
        ));
        assert_eq!(out.into_raw(), rgb);
    }
}

fn chrm(values: [u32; 8]) -> ([u8; 4], Vec<u8>) {
    (
        *b"cHRM",
        values.iter().flat_map(|v| v.to_be_bytes()).collect(),
    )
}

#[test]
fn chrm_primaries_are_mapped_to_srgb() {
    // Adobe RGB (1998) primaries, D65 white, gamma 1/2.2 (563/256 in the standard; close).
    let adobe = chrm([
        31_270, 32_900, 64_000, 33_000, 21_000, 71_000, 15_000, 6_000,
    ]);
    let gama = (*b"gAMA", 45_455u32.to_be_bytes().to_vec());
    let colours: [[u8; 3]; 4] = [[255, 255, 255], [128, 128, 128], [0, 0, 0], [200, 120, 60]];
    let rgb: Vec<u8> = colours.iter().flatten().copied().collect();
    let out = decoded_png(&png_with_color_chunks(
        4,
        1,
        png::ColorType::Rgb,
        &rgb,
        &[gama, adobe],
    ));
    // White, grey and black stay neutral and in place (same white point, same curve).
    for (x, colour) in colours[..3].iter().enumerate() {
        let got = out.get_pixel(x as u32, 0).0;
        for c in 0..3 {
            assert!(got[c].abs_diff(colour[c]) <= 1, "{colour:?} -> {got:?}");
        }
    }
    // Adobe RGB's wider green: this orange's red and green move apart in sRGB. Reference:
    // linear Adobe RGB through its published XYZ matrix, then sRGB's inverse matrix.
    let lin = [200.0f64, 120.0, 60.0].map(|v| (v / 255.0).powf(2.2));
    let adobe_to_xyz = [
        [0.576_669, 0.185_558, 0.188_229],
        [0.297_345, 0.627_364, 0.075_291],
        [0.027_031, 0.070_689, 0.991_338],
    ];
    let xyz_to_srgb = [
        [3.240_970, -1.537_383, -0.498_611],
        [-0.969_244, 1.875_968, 0.041_555],
        [0.055_630, -0.203_977, 1.056_972],
    ];
    let mul = |m: [[f64; 3]; 3], v: [f64; 3]| {
        [0, 1, 2].map(|i| m[i][0] * v[0] + m[i][1] * v[1] + m[i][2] * v[2])
    };
    let want = mul(xyz_to_srgb, mul(adobe_to_xyz, lin)).map(|v| srgb(v.clamp(0.0, 1.0)));
    let got = out.get_pixel(3, 0).0;
    for c in 0..3 {
        assert!(got[c].abs_diff(want[c]) <= 2, "{got:?} vs {want:?}");
    }
    assert_ne!(got, [200, 120, 60], "the colour was converted");
}
