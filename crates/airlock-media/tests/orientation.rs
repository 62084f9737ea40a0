//! EXIF orientation is applied to the pixels, and no metadata survives into any output.
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    clippy::cast_possible_wrap,
    reason = "test-pattern arithmetic on small, known values"
)]

mod common;

use airlock_media::{MediaOptions, Processed, process};
use common::{BOTTOM_LEFT, BOTTOM_RIGHT, MAKE, MODEL, TOP_LEFT, TOP_RIGHT, distance};
use image::GenericImageView;
use image::metadata::Orientation;

/// The upright picture every test file should come out as.
const WIDTH: u32 = 48;
const HEIGHT: u32 = 32;

/// The stored pixels that display as the upright picture under `orientation`.
fn stored_for(orientation: u8) -> image::RgbImage {
    let upright =
        image::RgbImage::from_raw(WIDTH, HEIGHT, common::quadrants(WIDTH, HEIGHT)).unwrap();
    // Undo what the viewer will do: 6 and 8 are each other's inverse, the rest self-inverse.
    let inverse = match orientation {
        6 => 8,
        8 => 6,
        other => other,
    };
    let mut image = image::DynamicImage::ImageRgb8(upright);
    image.apply_orientation(Orientation::from_exif(inverse).unwrap());
    image.to_rgb8()
}

fn assert_upright(name: &str, image: &image::DynamicImage) {
    assert_eq!(
        u64::from(image.width()) * u64::from(HEIGHT),
        u64::from(image.height()) * u64::from(WIDTH),
        "{name}: aspect ratio"
    );
    let (w, h) = (image.width(), image.height());
    for (fx, fy, colour) in [
        (1, 1, TOP_LEFT),
        (3, 1, TOP_RIGHT),
        (1, 3, BOTTOM_LEFT),
        (3, 3, BOTTOM_RIGHT),
    ] {
        let p = image.get_pixel(w * fx / 4, h * fy / 4);
        assert!(
            distance([p[0], p[1], p[2]], colour) < 16,
            "{name}: quadrant ({fx},{fy}) is {p:?}, expected {colour:?}"
        );
    }
}

/// Asserts no output carries EXIF, XMP, comments or the camera strings.
fn assert_no_metadata(processed: &Processed) {
    for (name, output) in common::all_outputs(processed) {
        let bytes = &output.bytes;
        for needle in [
            &b"Exif\0\0"[..],
            b"http://ns.adobe.com/xap",
            MAKE.as_bytes(),
            MODEL.as_bytes(),
            b"xmp-author-secret",
            b"comment-secret",
        ] {
            assert!(
                !common::contains(bytes, needle),
                "{name} contains {:?}",
                String::from_utf8_lossy(needle)
            );
        }
        let parsed =
            exif::Reader::new().read_from_container(&mut std::io::Cursor::new(bytes.as_slice()));
        assert!(parsed.is_err(), "{name}: EXIF parser found a block");
    }
}

#[test]
fn all_eight_jpeg_orientations_come_out_upright() {
    for orientation in 1..=8u8 {
        let stored = stored_for(orientation);
        let (sw, sh) = stored.dimensions();
        let jpeg = common::jpeg(sw, sh, stored.as_raw(), false);
        let input = common::with_segments_after_soi(
            &jpeg,
            &[
                common::exif_segment(u16::from(orientation)),
                common::xmp_segment(),
                common::segment(0xFE, b"comment-secret"),
            ],
        );
        let processed = process(&input, &MediaOptions::default()).unwrap();
        let meta = &processed.metadata;
        let name = format!("orientation {orientation}");
        assert_eq!(meta.orientation, u16::from(orientation), "{name}");
        assert_eq!(meta.orientation_applied, orientation != 1, "{name}");
        assert_eq!((meta.width, meta.height), (WIDTH, HEIGHT), "{name}");
        if orientation >= 5 {
            assert_eq!((sw, sh), (HEIGHT, WIDTH), "{name}: stored transposed");
        }
        assert_eq!(meta.camera_make.as_deref(), Some(MAKE));
        assert_eq!(meta.camera_model.as_deref(), Some(MODEL));
        assert_eq!(meta.captured_at.as_deref(), Some("2023-07-14T09:26:53"));
        assert!(meta.gps_present);

        for (output_name, output) in common::all_outputs(&processed) {
            assert_eq!(
                (output.width, output.height),
                (WIDTH, HEIGHT),
                "{name} {output_name}"
            );
            assert_upright(&format!("{name} {output_name}"), &common::decode(output));
        }
        assert_no_metadata(&processed);
    }
}

#[test]
fn variants_of_a_rotated_photo_are_rotated_too() {
    // Stored 64x96 with orientation 6: displayed 96 wide; the variant's long edge is its width.
    let (w, h) = (96u32, 64u32);
    let upright = image::RgbImage::from_raw(w, h, common::quadrants(w, h)).unwrap();
    let mut stored = image::DynamicImage::ImageRgb8(upright);
    stored.apply_orientation(Orientation::Rotate270);
    let stored = stored.to_rgb8();
    let input = common::with_segments_after_soi(
        &common::jpeg(64, 96, stored.as_raw(), true),
        &[common::exif_segment(6)],
    );
    let options = MediaOptions {
        variants: vec![airlock_media::VariantSpec::jpeg_contain(48, 85)],
        ..MediaOptions::default()
    };
    let processed = airlock_media::process_variants_only(&input, &options).unwrap();
    let (_, variant) = &processed.variants[0];
    assert_eq!((variant.width, variant.height), (48, 32));
    let image = common::decode(variant);
    let p = image.get_pixel(6, 4);
    assert!(distance([p[0], p[1], p[2]], TOP_LEFT) < 20, "{p:?}");
}

#[test]
fn metadata_reports_gps_presence_but_never_coordinates() {
    let stored = stored_for(1);
    let input = common::with_segments_after_soi(
        &common::jpeg(WIDTH, HEIGHT, stored.as_raw(), false),
        &[common::exif_segment(1)],
    );
    let processed = process(&input, &MediaOptions::default()).unwrap();
    let mut metadata = serde_json::to_value(&processed.metadata).unwrap();
    assert_eq!(metadata["gpsPresent"], true);
    // Hashes and the placeholder are opaque strings that may contain any digits.
    metadata["outputs"] = serde_json::Value::Null;
    metadata["placeholder"] = serde_json::Value::Null;
    let json = metadata.to_string();
    for coordinate in ["51", "2612", "4711", "\"N\"", "\"E\""] {
        assert!(
            !json.contains(coordinate),
            "metadata mentions {coordinate}: {json}"
        );
    }
}

#[test]
fn png_exif_orientation_is_applied_and_stripped() {
    let stored = stored_for(8);
    let plain = common::png(
        HEIGHT,
        WIDTH,
        png::ColorType::Rgb,
        png::BitDepth::Eight,
        stored.as_raw(),
        None,
    );
    // eXIf right after IHDR, plus a text chunk that must not survive either.
    let mut input = plain[..33].to_vec();
    input.extend_from_slice(&common::png_chunk(*b"eXIf", &common::exif_tiff(8)));
    input.extend_from_slice(&common::png_chunk(*b"tEXt", b"Comment\0comment-secret"));
    input.extend_from_slice(&plain[33..]);
    let processed = process(&input, &MediaOptions::default()).unwrap();
    assert_eq!(processed.metadata.orientation, 8);
    assert_eq!(processed.metadata.camera_make.as_deref(), Some(MAKE));
    for (name, output) in common::all_outputs(&processed) {
        assert_upright(&name, &common::decode(output));
    }
    assert_no_metadata(&processed);
}
