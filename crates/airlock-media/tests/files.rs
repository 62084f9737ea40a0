//! Processing from a path gives exactly what processing the file's bytes gives: the same
//! outputs, the same metadata, the same refusals. Unreadable files are I/O errors.
#![allow(
    clippy::cast_possible_truncation,
    reason = "test-pattern arithmetic on small, known values"
)]

mod common;

use std::path::{Path, PathBuf};

use airlock_media::{
    FileError, Fit, Limits, MediaError, MediaOptions, OutputFormat, VariantSpec, process,
    process_file, process_variants_only, process_variants_only_file,
};
use common::GifFrame;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// Variants smaller than the test images, so the variants-only path streams a PNG into its
/// largest variant, plus a cover crop.
fn small_variants() -> MediaOptions {
    MediaOptions {
        variants: vec![
            VariantSpec::jpeg_contain(200, 82),
            VariantSpec {
                name: "thumb".into(),
                size: 64,
                fit: Fit::Contain,
                format: OutputFormat::Png,
                quality: 0,
            },
            VariantSpec {
                name: "square".into(),
                size: 0,
                fit: Fit::Cover {
                    width: 96,
                    height: 96,
                },
                format: OutputFormat::WebP,
                quality: 0,
            },
        ],
        ..MediaOptions::default()
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Both entry points, with two sets of options, from the file and from its bytes.
fn assert_same_as_bytes(name: &str, path: &Path) {
    let bytes = std::fs::read(path).unwrap();
    for options in [MediaOptions::default(), small_variants()] {
        let from_bytes = process(&bytes, &options).unwrap_or_else(|e| panic!("{name}: {e}"));
        let from_file = process_file(path, &options).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(from_file, from_bytes, "{name}: process_file");
        let from_bytes = process_variants_only(&bytes, &options).unwrap();
        let from_file = process_variants_only_file(path, &options).unwrap();
        assert_eq!(from_file, from_bytes, "{name}: process_variants_only_file");
    }
}

/// An Adam7-interlaced 8-bit RGB PNG, its rows stored (uncompressed) without filtering.
fn interlaced_png(width: u32, height: u32, rgb: &[u8]) -> Vec<u8> {
    const PASSES: [(u32, u32, u32, u32); 7] = [
        (0, 0, 8, 8),
        (4, 0, 8, 8),
        (0, 4, 4, 8),
        (2, 0, 4, 4),
        (0, 2, 2, 4),
        (1, 0, 2, 2),
        (0, 1, 1, 2),
    ];
    let mut raw = Vec::new();
    for (x0, y0, dx, dy) in PASSES {
        if x0 >= width || y0 >= height {
            continue;
        }
        for y in (y0..height).step_by(dy as usize) {
            raw.push(0);
            for x in (x0..width).step_by(dx as usize) {
                let at = ((y * width + x) * 3) as usize;
                raw.extend_from_slice(&rgb[at..at + 3]);
            }
        }
    }
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 1]);
    let mut out = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
    out.extend(common::png_chunk(*b"IHDR", &ihdr));
    out.extend(common::png_chunk(*b"IDAT", &common::zlib_stored(&raw)));
    out.extend(common::png_chunk(*b"IEND", &[]));
    out
}

/// `png` with `chunk` inserted before the first chunk of kind `before`.
fn insert_chunk(png: &[u8], before: [u8; 4], chunk: &[u8]) -> Vec<u8> {
    let mut pos = 8;
    while png[pos + 4..pos + 8] != before {
        pos += 12 + u32::from_be_bytes(png[pos..pos + 4].try_into().unwrap()) as usize;
    }
    [&png[..pos], chunk, &png[pos..]].concat()
}

fn photo_png(width: u32, height: u32) -> Vec<u8> {
    common::png(
        width,
        height,
        png::ColorType::Rgb,
        png::BitDepth::Eight,
        &common::photo_like(width, height),
        None,
    )
}

#[test]
fn png_files_give_the_same_outputs_as_their_bytes() {
    use png::{BitDepth, ColorType};
    let dir = tempfile::tempdir().unwrap();
    let (w, h) = (320u32, 240u32);
    let rgb = common::photo_like(w, h);
    let rgba: Vec<u8> = rgb
        .chunks(3)
        .enumerate()
        .flat_map(|(i, p)| [p[0], p[1], p[2], (i % 256) as u8])
        .collect();
    let rgb16: Vec<u8> = rgb.iter().flat_map(|&v| [v, v ^ 0x5A]).collect();
    let gray: Vec<u8> = rgb.chunks(3).map(|p| p[1]).collect();
    let gray_alpha: Vec<u8> = gray.iter().flat_map(|&v| [v, 255 - v]).collect();
    let indices: Vec<u8> = gray.iter().map(|&v| v / 64).collect();
    let palette = [255, 0, 0, 0, 255, 0, 0, 0, 255, 250, 250, 250];
    let trns = [255, 128];

    let cases = [
        (
            "rgb",
            common::png(w, h, ColorType::Rgb, BitDepth::Eight, &rgb, None),
        ),
        (
            "rgba",
            common::png(w, h, ColorType::Rgba, BitDepth::Eight, &rgba, None),
        ),
        (
            "rgb16",
            common::png(w, h, ColorType::Rgb, BitDepth::Sixteen, &rgb16, None),
        ),
        (
            "gray",
            common::png(w, h, ColorType::Grayscale, BitDepth::Eight, &gray, None),
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
        ),
        ("interlaced", interlaced_png(w, h, &rgb)),
    ];
    for (name, bytes) in cases {
        let path = write(dir.path(), &format!("{name}.png"), &bytes);
        assert_same_as_bytes(name, &path);
    }
    let interlaced = process_file(&dir.path().join("interlaced.png"), &small_variants()).unwrap();
    let plain = process_file(&dir.path().join("rgb.png"), &small_variants()).unwrap();
    assert_eq!(
        interlaced.variants, plain.variants,
        "same pixels, same variants"
    );
}

#[test]
fn png_exif_before_or_after_the_image_data_is_read_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let plain = photo_png(320, 240);
    let text = common::png_chunk(*b"tEXt", b"Comment\0comment-secret");
    for (orientation, before) in [(6u16, *b"IDAT"), (8, *b"IEND")] {
        let exif = common::png_chunk(*b"eXIf", &common::exif_tiff(orientation));
        let bytes = insert_chunk(&insert_chunk(&plain, *b"IDAT", &text), before, &exif);
        let path = write(dir.path(), "exif.png", &bytes);
        assert_same_as_bytes(
            &format!("eXIf before {}", String::from_utf8_lossy(&before)),
            &path,
        );
        let processed = process_file(&path, &small_variants()).unwrap();
        let metadata = &processed.metadata;
        assert_eq!(metadata.orientation, orientation);
        assert_eq!((metadata.width, metadata.height), (240, 320));
        assert_eq!(metadata.camera_make.as_deref(), Some(common::MAKE));
        assert!(metadata.gps_present);
        for (name, output) in common::all_outputs(&processed) {
            assert!(
                !common::contains(&output.bytes, b"comment-secret"),
                "{name}"
            );
            assert!(
                !common::contains(&output.bytes, common::MAKE.as_bytes()),
                "{name}"
            );
        }
    }
}

#[test]
fn jpeg_gif_and_webp_files_give_the_same_outputs_as_their_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (w, h) = (320u32, 240u32);
    let jpeg = common::with_segments_after_soi(
        &common::jpeg(w, h, &common::photo_like(w, h), false),
        &[common::exif_segment(6)],
    );
    let frames: Vec<GifFrame> = (0..3u8)
        .map(|n| GifFrame {
            width: 200,
            height: 150,
            left: u16::from(n) * 100,
            top: u16::from(n) * 50,
            indices: (0..200 * 150)
                .map(|i| ((i / 7 + u32::from(n)) % 4) as u8)
                .collect(),
            delay: 10,
            transparent: Some(3),
        })
        .collect();
    let palette = [200, 30, 30, 30, 200, 30, 30, 30, 200, 240, 240, 240];
    let gif = common::gif(400, 300, &palette, &frames);
    assert_same_as_bytes("jpeg", &write(dir.path(), "photo.jpg", &jpeg));
    assert_same_as_bytes("gif", &write(dir.path(), "animated.gif", &gif));
    assert_same_as_bytes("webp", &Path::new(FIXTURES).join("lossy-alpha.webp"));
    assert_same_as_bytes(
        "animated webp",
        &Path::new(FIXTURES).join("animated-lossy.webp"),
    );
}

fn media_error(error: FileError) -> MediaError {
    match error {
        FileError::Media(error) => error,
        FileError::Io { path, source } => {
            panic!(
                "expected a refusal, got an I/O error on {}: {source}",
                path.display()
            )
        }
    }
}

#[test]
fn damaged_files_are_refused_or_accepted_as_their_bytes_are() {
    let dir = tempfile::tempdir().unwrap();
    let png = photo_png(320, 240);
    let idat = 33 + 8;
    let mut cases: Vec<(String, Vec<u8>)> = [0, 5, 8, 20, 33, idat, idat + 100, png.len() / 2]
        .into_iter()
        .chain([png.len() - 12, png.len() - 1])
        .map(|cut| (format!("PNG cut at {cut}"), png[..cut].to_vec()))
        .collect();
    let mut corrupt = png.clone();
    corrupt[png.len() / 2] ^= 0xFF;
    cases.push(("corrupt image data".into(), corrupt));
    let mut huge = png[..33].to_vec();
    huge[16..24].copy_from_slice(&[0, 1, 0, 0, 0, 1, 0, 0]);
    cases.push(("65536 squared".into(), huge));
    cases.push((
        "svg".into(),
        b"<svg xmlns='http://www.w3.org/2000/svg'/>".to_vec(),
    ));
    let jpeg = common::jpeg(64, 48, &common::quadrants(64, 48), false);
    cases.push(("truncated jpeg".into(), jpeg[..jpeg.len() / 2].to_vec()));

    let mut refused = 0;
    for (name, bytes) in cases {
        let path = write(dir.path(), "damaged", &bytes);
        for options in [MediaOptions::default(), small_variants()] {
            let expected = process(&bytes, &options);
            let outcome = process_file(&path, &options).map_err(media_error);
            assert_eq!(outcome, expected, "{name}");
            if let (Err(error), Err(expected)) = (&outcome, &expected) {
                refused += 1;
                assert_eq!(
                    airlock_media::reason_for(error),
                    airlock_media::reason_for(expected)
                );
            }
            let expected = process_variants_only(&bytes, &options);
            let outcome = process_variants_only_file(&path, &options).map_err(media_error);
            assert_eq!(outcome, expected, "{name}: variants only");
        }
    }
    // Only a PNG missing its IEND (or part of it) is still decoded.
    assert_eq!(refused, 2 * 12);
}

#[test]
fn a_file_over_the_byte_limit_is_refused_before_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let options = MediaOptions {
        limits: Limits {
            max_bytes: 1000,
            ..Limits::default()
        },
        ..MediaOptions::default()
    };
    // Not an image at all: anything that looked at the contents would say unsupported.
    let garbage = write(dir.path(), "garbage", &[0x42; 5000]);
    let png = photo_png(100, 100);
    let png_path = write(dir.path(), "big.png", &png);
    for (path, len) in [(&garbage, 5000), (&png_path, png.len())] {
        let expected = MediaError::TooLarge(format!("{len} bytes exceed the 1000 byte limit"));
        let error = media_error(process_file(path, &options).unwrap_err());
        assert_eq!(error, expected);
        let error = media_error(process_variants_only_file(path, &options).unwrap_err());
        assert_eq!(error, expected);
        let bytes = std::fs::read(path).unwrap();
        assert_eq!(process(&bytes, &options).unwrap_err(), expected);
    }
}

#[test]
fn an_unreadable_file_is_an_io_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.png");
    for path in [&missing, &dir.path().to_path_buf()] {
        for error in [
            process_file(path, &MediaOptions::default()).unwrap_err(),
            process_variants_only_file(path, &MediaOptions::default())
                .map(|_| ())
                .unwrap_err(),
        ] {
            let text = error.to_string();
            let FileError::Io {
                path: reported,
                source,
            } = error
            else {
                panic!("{}: not an I/O error: {text}", path.display());
            };
            assert_eq!(&reported, path);
            assert!(text.contains(&path.display().to_string()), "{text}");
            if path == &missing {
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            }
        }
    }
}
