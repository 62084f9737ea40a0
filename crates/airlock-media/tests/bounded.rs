//! Crafted inputs that once took gigabytes — EXIF blocks whose values a general parser
//! multiplies, an ICC profile that is a zlib bomb, an animated lossy WebP that re-encodes
//! to a huge lossless one — are processed or refused in little memory.
//!
//! Each case runs in a child process (this test binary run again for that test alone), so
//! the peak resident set it reports is the case's own, start-up and building the input
//! included. The time printed is that of processing alone.

mod common;

use std::time::Instant;

use airlock_media::{Limits, MediaError, MediaOptions, Processed, process, process_file};

/// Most a case's whole process may hold at its peak.
const MEMORY_BOUND: u64 = 100 * 1024 * 1024;

/// Builds an input and runs `case` on it in a child process, and checks the child's peak
/// memory.
fn bounded(name: &str, input: impl FnOnce() -> Vec<u8>, case: impl FnOnce(&[u8])) {
    let body = || {
        let input = input();
        let start = Instant::now();
        case(&input);
        start.elapsed()
    };
    if let Some(run) = common::in_child(name, body) {
        println!(
            "{name}: peak RSS {} KiB, processed in {:?}",
            run.peak_rss / 1024,
            run.elapsed
        );
        assert!(
            run.peak_rss < MEMORY_BOUND,
            "{name}: peak RSS {} bytes\n{}",
            run.peak_rss,
            run.output
        );
    }
}

/// The metadata every EXIF bomb carries next to its bomb entries.
fn assert_camera_metadata(processed: &Processed) {
    let metadata = &processed.metadata;
    assert_eq!(metadata.orientation, 6);
    assert!(metadata.orientation_applied);
    assert_eq!(metadata.camera_make.as_deref(), Some(common::MAKE));
    assert_eq!(metadata.camera_model.as_deref(), Some(common::MODEL));
    assert_eq!(metadata.captured_at.as_deref(), Some("2023-07-14T09:26:53"));
    assert!(metadata.gps_present);
}

fn expect_refusal(result: Result<Processed, MediaError>, code: &str) -> MediaError {
    match result {
        Err(error) => {
            assert_eq!(error.code(), code, "{error}");
            error
        }
        Ok(processed) => panic!("accepted: {:?}", processed.metadata),
    }
}

fn exif_jpeg() -> Vec<u8> {
    let mut payload = b"Exif\0\0".to_vec();
    payload.extend_from_slice(&common::exif_bomb_tiff(6, 2000, 65_000));
    common::with_segments_after_soi(
        &common::jpeg(64, 48, &common::quadrants(64, 48), false),
        &[common::segment(0xE1, &payload)],
    )
}

fn plain_png() -> Vec<u8> {
    common::png(
        64,
        48,
        png::ColorType::Rgb,
        png::BitDepth::Eight,
        &common::quadrants(64, 48),
        None,
    )
}

#[test]
fn exif_bomb_in_a_jpeg() {
    bounded("exif_bomb_in_a_jpeg", exif_jpeg, |jpeg| {
        assert!(jpeg.len() < 70_000);
        let processed = process(jpeg, &MediaOptions::default()).unwrap();
        assert_camera_metadata(&processed);
        // Orientation 6 turns the 64x48 image upright: 48 wide.
        assert_eq!(
            (processed.original.width, processed.original.height),
            (48, 64)
        );
    });
}

#[test]
fn exif_bomb_in_a_png() {
    let input = || {
        let bomb = common::exif_bomb_tiff(6, 8000, 400_000);
        common::png_with_chunk(&plain_png(), *b"eXIf", &bomb)
    };
    bounded("exif_bomb_in_a_png", input, |png| {
        let processed = process(png, &MediaOptions::default()).unwrap();
        assert_camera_metadata(&processed);
        assert_eq!(processed.metadata.format, "png");
    });
}

#[test]
fn exif_bomb_in_a_webp() {
    let input = || {
        let mut chunks = common::webp_chunks(&common::lossy_webp_fixture());
        let exif = chunks
            .iter_mut()
            .find(|(kind, _)| kind == b"EXIF")
            .expect("the fixture has an EXIF chunk");
        exif.1 = common::exif_bomb_tiff(6, 8000, 400_000);
        common::webp_file(&chunks)
    };
    bounded("exif_bomb_in_a_webp", input, |webp| {
        let processed = process(webp, &MediaOptions::default()).unwrap();
        assert_camera_metadata(&processed);
        assert_eq!(
            (processed.original.width, processed.original.height),
            (64, 96)
        );
    });
}

/// A PNG whose `iCCP` profile inflates to 400 MB of zeros.
fn iccp_bomb() -> Vec<u8> {
    let mut iccp = b"bomb\0\0".to_vec();
    iccp.extend_from_slice(&common::zlib_zeros(400_000_000));
    common::png_with_chunk(&plain_png(), *b"iCCP", &iccp)
}

#[test]
fn iccp_zlib_bomb_is_dropped_without_inflating_it() {
    bounded(
        "iccp_zlib_bomb_is_dropped_without_inflating_it",
        iccp_bomb,
        |png| {
            let processed = process(png, &MediaOptions::default()).unwrap();
            assert_eq!(processed.metadata.icc_profile.as_deref(), Some("dropped"));
            assert_eq!(
                (processed.original.width, processed.original.height),
                (64, 48)
            );
            let image = common::decode(&processed.original).to_rgb8();
            assert!(common::distance(image.get_pixel(2, 2).0, common::TOP_LEFT) < 8);
        },
    );
}

#[test]
fn iccp_zlib_bomb_in_a_file_is_dropped_without_inflating_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bomb.png");
    let input = || {
        std::fs::write(&path, iccp_bomb()).unwrap();
        Vec::new()
    };
    bounded(
        "iccp_zlib_bomb_in_a_file_is_dropped_without_inflating_it",
        input,
        |_| {
            let processed = process_file(&path, &MediaOptions::default()).unwrap();
            assert_eq!(processed.metadata.icc_profile.as_deref(), Some("dropped"));
        },
    );
}

/// Options whose memory budget lets an animation re-encode to at most 2 MiB: eight full
/// frames of a 256x256 canvas.
fn small_budget() -> MediaOptions {
    MediaOptions {
        limits: Limits {
            max_memory: 4 * 1024 * 1024,
            ..Limits::default()
        },
        ..MediaOptions::default()
    }
}

#[test]
fn animated_lossy_webp_at_the_budget_is_processed() {
    bounded(
        "animated_lossy_webp_at_the_budget_is_processed",
        || common::animated_lossy_webp(256, 256, 8),
        |webp| {
            let processed = process(webp, &small_budget()).unwrap();
            assert_eq!(processed.metadata.frame_count, 8);
            assert!(processed.metadata.animated);
            assert_eq!(processed.original.content_type, "image/webp");
            let decoder = image::codecs::webp::WebPDecoder::new(std::io::Cursor::new(
                processed.original.bytes.as_slice(),
            ))
            .unwrap();
            assert_eq!(image::ImageDecoder::dimensions(&decoder), (256, 256));
            // The eight frames are identical, so libwebp's animation encoder shows the one
            // frame for their whole duration; a lossy source stays lossy.
            let bytes = &processed.original.bytes;
            assert!(bytes.windows(4).any(|w| w == b"VP8 "));
            assert!(!bytes.windows(4).any(|w| w == b"VP8L"));
        },
    );
}

#[test]
fn animated_lossy_webp_past_the_budget_is_too_large() {
    bounded(
        "animated_lossy_webp_past_the_budget_is_too_large",
        || common::animated_lossy_webp(256, 256, 9),
        |webp| {
            let error = expect_refusal(process(webp, &small_budget()), "image-too-large");
            assert!(error.to_string().contains("memory budget"), "{error}");
        },
    );
}

#[test]
fn animated_lossy_webp_past_the_default_budget_is_too_large() {
    // Four 4096x4096 frames: 256 MiB of lossless frames, in a file of 1 KiB.
    bounded(
        "animated_lossy_webp_past_the_default_budget_is_too_large",
        || common::animated_lossy_webp(4096, 4096, 4),
        |webp| {
            assert!(webp.len() < 2048);
            let error = expect_refusal(process(webp, &MediaOptions::default()), "image-too-large");
            assert!(error.to_string().contains("memory budget"), "{error}");
        },
    );
}
