//! Embedded profiles that take more than a library call: a gray profile with a Lab
//! connection space, and CMYK profiles converted with black-point compensation. The
//! profiles are built in the tests (`common::icc`), and outputs checked against the
//! formulas.
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    reason = "test-pattern arithmetic on small, known values"
)]

mod common;

use airlock_media::process;
use common::{icc, original_only};

#[test]
fn gray_png_with_a_lab_profile_is_converted() {
    let (width, height) = (16u32, 16u32);
    let ramp: Vec<u8> = (0..=255).collect();
    let plain = common::png(
        width,
        height,
        png::ColorType::Grayscale,
        png::BitDepth::Eight,
        &ramp,
        None,
    );
    let mut iccp = b"Gray Lab\0\0".to_vec();
    iccp.extend_from_slice(&common::zlib_stored(&icc::gray_lab(0x0233)));
    let input = common::png_with_chunk(&plain, *b"iCCP", &iccp);
    let processed = process(&input, &original_only()).unwrap();
    assert_eq!(
        processed.metadata.icc_profile.as_deref(),
        Some("srgb-converted")
    );
    let image = common::decode(&processed.original);
    assert_eq!(image.color(), image::ColorType::L8);
    let gray = image.to_luma8().into_raw();
    for (value, out) in gray.iter().enumerate() {
        let lightness = (value as f64 / 255.0).powf(563.0 / 256.0) * 100.0;
        let expected = icc::srgb_sample(icc::lightness_to_y(lightness));
        assert!(
            (f64::from(*out) - expected).abs() < 0.6,
            "{value} -> {out}, expected {expected:.2}"
        );
    }
}

#[test]
fn cmyk_jpeg_black_becomes_srgb_black() {
    // Four bands: no ink, half black, full black, every ink at 100 %.
    let bands: [[u8; 4]; 4] = [[0, 0, 0, 0], [0, 0, 0, 128], [0, 0, 0, 255], [255; 4]];
    let (width, height) = (64u32, 16u32);
    let cmyk: Vec<u8> = (0..width * height)
        .flat_map(|i| bands[(i % width / 16) as usize])
        .collect();
    let mut app2 = b"ICC_PROFILE\0\x01\x01".to_vec();
    app2.extend_from_slice(&icc::cmyk_lab());
    let input = common::with_segments_after_soi(
        &common::jpeg_typed(width, height, &cmyk, jpeg_encoder::ColorType::Cmyk, false),
        &[common::segment(0xE2, &app2)],
    );
    let processed = process(&input, &original_only()).unwrap();
    assert_eq!(
        processed.metadata.icc_profile.as_deref(),
        Some("srgb-converted")
    );
    let image = common::decode(&processed.original).to_rgb8();

    // L* along the black ink's edge of the profile's table, then Y, then the
    // compensation that takes the all-ink black to 0.
    let k_only = icc::cmyk_corner_lightness([false, false, false, true]);
    let black = icc::lightness_to_y(icc::cmyk_corner_lightness([true; 4]));
    let compensated =
        |lightness: f64| icc::srgb_sample((icc::lightness_to_y(lightness) - black) / (1.0 - black));
    let expected = [
        255.0,
        compensated(100.0 - (100.0 - k_only) * 128.0 / 255.0),
        compensated(k_only),
        0.0,
    ];
    for (band, expected) in expected.iter().enumerate() {
        let pixel = image.get_pixel(band as u32 * 16 + 8, 8).0;
        for sample in pixel {
            assert!(
                (f64::from(sample) - expected).abs() <= 3.0,
                "band {band}: {pixel:?}, expected {expected:.1}"
            );
        }
    }
    // Uncompensated, the all-ink black would be this far from 0.
    assert!(icc::srgb_sample(black) > 25.0);
}
