//! Test inputs built at test time, and independent checks of outputs.
#![allow(dead_code, reason = "each test binary uses a different subset")]
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    clippy::cast_possible_wrap,
    reason = "test-pattern arithmetic on small, known values"
)]

use airlock_media::{Encoded, MediaOptions};
use sha2::{Digest, Sha256};

/// Recognisable, asymmetric colours for the four quadrants of a test pattern.
pub const TOP_LEFT: [u8; 3] = [220, 30, 30];
pub const TOP_RIGHT: [u8; 3] = [30, 200, 30];
pub const BOTTOM_LEFT: [u8; 3] = [30, 30, 220];
pub const BOTTOM_RIGHT: [u8; 3] = [240, 240, 240];

/// An RGB image whose quadrants have the colours above.
pub fn quadrants(width: u32, height: u32) -> Vec<u8> {
    let mut pixels = Vec::with_capacity((width * height * 3) as usize);
    for y in 0..height {
        for x in 0..width {
            let colour = match (x < width / 2, y < height / 2) {
                (true, true) => TOP_LEFT,
                (false, true) => TOP_RIGHT,
                (true, false) => BOTTOM_LEFT,
                (false, false) => BOTTOM_RIGHT,
            };
            pixels.extend_from_slice(&colour);
        }
    }
    pixels
}

/// A smooth, textured RGB image (photo-like enough for codecs to work normally).
pub fn photo_like(width: u32, height: u32) -> Vec<u8> {
    let mut pixels = Vec::with_capacity((width * height * 3) as usize);
    let mut noise = 0x2545_F491_u32;
    for y in 0..height {
        for x in 0..width {
            noise ^= noise << 13;
            noise ^= noise >> 17;
            noise ^= noise << 5;
            let grain = (noise % 17) as i32 - 8;
            let fx = f64::from(x) / f64::from(width);
            let fy = f64::from(y) / f64::from(height);
            let wave = ((fx * 23.0).sin() * (fy * 17.0).cos() * 40.0) as i32;
            let r = (fx * 200.0) as i32 + wave + grain;
            let g = (fy * 180.0) as i32 + 30 - wave / 2 + grain;
            let b = ((1.0 - fx) * 150.0) as i32 + 50 + grain;
            pixels.extend([r, g, b].map(|v| v.clamp(0, 255) as u8));
        }
    }
    pixels
}

/// Baseline (or progressive) JPEG from the crate's own encoder dependency.
pub fn jpeg(width: u32, height: u32, rgb: &[u8], progressive: bool) -> Vec<u8> {
    jpeg_typed(
        width,
        height,
        rgb,
        jpeg_encoder::ColorType::Rgb,
        progressive,
    )
}

pub fn jpeg_typed(
    width: u32,
    height: u32,
    samples: &[u8],
    color: jpeg_encoder::ColorType,
    progressive: bool,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, 92);
    encoder.set_progressive(progressive);
    encoder
        .encode(samples, width as u16, height as u16, color)
        .expect("encode test JPEG");
    out
}

/// Inserts marker segments (each complete, with marker and length) right after SOI.
pub fn with_segments_after_soi(jpeg: &[u8], segments: &[Vec<u8>]) -> Vec<u8> {
    let mut out = jpeg[..2].to_vec();
    for segment in segments {
        out.extend_from_slice(segment);
    }
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// A JPEG marker segment: `FF marker`, length, payload.
pub fn segment(marker: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0xFF, marker];
    out.extend_from_slice(&u16::try_from(payload.len() + 2).unwrap().to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Camera facts written into test EXIF blocks.
pub const MAKE: &str = "Airlock Optics Ltd";
pub const MODEL: &str = "Pinhole 9000";
pub const DATE_TIME: &str = "2023:07:14 09:26:53";

/// A big-endian TIFF structure holding Orientation, Make, Model, an EXIF IFD with
/// `DateTimeOriginal`, and a GPS IFD with latitude and longitude.
pub fn exif_tiff(orientation: u16) -> Vec<u8> {
    // Layout: header (8) | IFD0 (2 + 5*12 + 4) | EXIF IFD (2 + 12 + 4) | GPS IFD
    // (2 + 4*12 + 4) | data area.
    let ifd0 = 8u32;
    let exif_ifd = ifd0 + 2 + 5 * 12 + 4;
    let gps_ifd = exif_ifd + 2 + 12 + 4;
    let data = gps_ifd + 2 + 4 * 12 + 4;
    let make = format!("{MAKE}\0");
    let model = format!("{MODEL}\0");
    let taken = format!("{DATE_TIME}\0");
    let make_at = data;
    let model_at = make_at + make.len() as u32;
    let taken_at = model_at + model.len() as u32;
    let lat_at = taken_at + taken.len() as u32;
    let lon_at = lat_at + 24;

    let mut t = b"MM\0\x2A".to_vec();
    t.extend_from_slice(&ifd0.to_be_bytes());
    let entry = |t: &mut Vec<u8>, tag: u16, kind: u16, count: u32, value: [u8; 4]| {
        t.extend_from_slice(&tag.to_be_bytes());
        t.extend_from_slice(&kind.to_be_bytes());
        t.extend_from_slice(&count.to_be_bytes());
        t.extend_from_slice(&value);
    };
    let short = |v: u16| {
        let [a, b] = v.to_be_bytes();
        [a, b, 0, 0]
    };
    // IFD0, tags in ascending order.
    t.extend_from_slice(&5u16.to_be_bytes());
    entry(&mut t, 0x010F, 2, make.len() as u32, make_at.to_be_bytes());
    entry(
        &mut t,
        0x0110,
        2,
        model.len() as u32,
        model_at.to_be_bytes(),
    );
    entry(&mut t, 0x0112, 3, 1, short(orientation));
    entry(&mut t, 0x8769, 4, 1, exif_ifd.to_be_bytes());
    entry(&mut t, 0x8825, 4, 1, gps_ifd.to_be_bytes());
    t.extend_from_slice(&0u32.to_be_bytes());
    // EXIF IFD: DateTimeOriginal.
    t.extend_from_slice(&1u16.to_be_bytes());
    entry(
        &mut t,
        0x9003,
        2,
        taken.len() as u32,
        taken_at.to_be_bytes(),
    );
    t.extend_from_slice(&0u32.to_be_bytes());
    // GPS IFD: LatitudeRef, Latitude, LongitudeRef, Longitude.
    t.extend_from_slice(&4u16.to_be_bytes());
    entry(&mut t, 0x0001, 2, 2, *b"N\0\0\0");
    entry(&mut t, 0x0002, 5, 3, lat_at.to_be_bytes());
    entry(&mut t, 0x0003, 2, 2, *b"E\0\0\0");
    entry(&mut t, 0x0004, 5, 3, lon_at.to_be_bytes());
    t.extend_from_slice(&0u32.to_be_bytes());
    assert_eq!(t.len() as u32, data);
    t.extend_from_slice(make.as_bytes());
    t.extend_from_slice(model.as_bytes());
    t.extend_from_slice(taken.as_bytes());
    for (degrees, minutes, seconds) in [(51u32, 30u32, 2612u32), (7, 27, 4711)] {
        for (num, den) in [(degrees, 1u32), (minutes, 1), (seconds, 100)] {
            t.extend_from_slice(&num.to_be_bytes());
            t.extend_from_slice(&den.to_be_bytes());
        }
    }
    t
}

/// An APP1 EXIF segment.
pub fn exif_segment(orientation: u16) -> Vec<u8> {
    let mut payload = b"Exif\0\0".to_vec();
    payload.extend_from_slice(&exif_tiff(orientation));
    segment(0xE1, &payload)
}

/// An APP1 XMP segment.
pub fn xmp_segment() -> Vec<u8> {
    let mut payload = b"http://ns.adobe.com/xap/1.0/\0".to_vec();
    payload.extend_from_slice(
        br#"<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description dc:creator="xmp-author-secret"/></rdf:RDF></x:xmpmeta>"#,
    );
    segment(0xE1, &payload)
}

/// PNG built with the `png` crate.
pub fn png(
    width: u32,
    height: u32,
    color: png::ColorType,
    depth: png::BitDepth,
    data: &[u8],
    palette: Option<(&[u8], Option<&[u8]>)>,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(color);
    encoder.set_depth(depth);
    if let Some((palette, trns)) = palette {
        encoder.set_palette(palette.to_vec());
        if let Some(trns) = trns {
            encoder.set_trns(trns.to_vec());
        }
    }
    let mut writer = encoder.write_header().expect("png header");
    writer.write_image_data(data).expect("png data");
    writer.finish().expect("png finish");
    out
}

pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A PNG chunk with a correct CRC.
pub fn png_chunk(kind: [u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = u32::try_from(data.len()).unwrap().to_be_bytes().to_vec();
    out.extend_from_slice(&kind);
    out.extend_from_slice(data);
    let mut crc_input = kind.to_vec();
    crc_input.extend_from_slice(data);
    out.extend_from_slice(&crc32(&crc_input).to_be_bytes());
    out
}

/// A zlib stream of stored (uncompressed) blocks.
pub fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    let chunks: Vec<&[u8]> = data.chunks(65_535).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        out.push(u8::from(i + 1 == chunks.len()));
        let len = u16::try_from(chunk.len()).unwrap();
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    if data.is_empty() {
        out.extend_from_slice(&[1, 0, 0, 0xFF, 0xFF]);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in data {
        a = (a + u32::from(byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    out.extend_from_slice(&((b << 16) | a).to_be_bytes());
    out
}

/// GIF frames: (width, height, left, top, indices, delay).
pub struct GifFrame {
    pub width: u16,
    pub height: u16,
    pub left: u16,
    pub top: u16,
    pub indices: Vec<u8>,
    pub delay: u16,
    pub transparent: Option<u8>,
}

/// A GIF with a global palette, built with the `gif` crate.
pub fn gif(width: u16, height: u16, palette: &[u8], frames: &[GifFrame]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut encoder = gif::Encoder::new(&mut out, width, height, palette).expect("gif");
        if frames.len() > 1 {
            encoder.set_repeat(gif::Repeat::Infinite).expect("repeat");
        }
        for frame in frames {
            let gif_frame = gif::Frame {
                width: frame.width,
                height: frame.height,
                left: frame.left,
                top: frame.top,
                delay: frame.delay,
                transparent: frame.transparent,
                buffer: std::borrow::Cow::Borrowed(&frame.indices),
                ..gif::Frame::default()
            };
            encoder.write_frame(&gif_frame).expect("gif frame");
        }
    }
    out
}

/// Lossless WebP from `image-webp`.
pub fn webp_lossless(width: u32, height: u32, data: &[u8], alpha: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let color = if alpha {
        image_webp::ColorType::Rgba8
    } else {
        image_webp::ColorType::Rgb8
    };
    image_webp::WebPEncoder::new(&mut out)
        .encode(data, width, height, color)
        .expect("webp");
    out
}

/// Decodes an output with the `image` crate: an implementation independent of ours.
pub fn decode(encoded: &Encoded) -> image::DynamicImage {
    image::load_from_memory(&encoded.bytes)
        .unwrap_or_else(|e| panic!("{} output does not decode: {e}", encoded.content_type))
}

/// Asserts the declared size, content type and hash of an output match its bytes.
pub fn assert_consistent(name: &str, encoded: &Encoded) {
    let image = decode(encoded);
    assert_eq!(
        (image.width(), image.height()),
        (encoded.width, encoded.height),
        "{name}: declared size differs from the decoded size"
    );
    assert_eq!(
        encoded.sha256,
        hex::encode(Sha256::digest(&encoded.bytes)),
        "{name}: sha256"
    );
    let format = image::guess_format(&encoded.bytes).expect("known format");
    let expected = match format {
        image::ImageFormat::Jpeg => "image/jpeg",
        image::ImageFormat::Png => "image/png",
        image::ImageFormat::Gif => "image/gif",
        image::ImageFormat::WebP => "image/webp",
        other => panic!("{name}: unexpected output format {other:?}"),
    };
    assert_eq!(encoded.content_type, expected, "{name}: content type");
}

/// Default options with a `Cover` variant added.
pub fn options_with_cover() -> MediaOptions {
    let mut options = MediaOptions::default();
    options.variants.push(airlock_media::VariantSpec {
        name: "square".into(),
        size: 0,
        fit: airlock_media::Fit::Cover {
            width: 96,
            height: 96,
        },
        format: airlock_media::OutputFormat::Jpeg,
        quality: 80,
    });
    options
}

/// Mean absolute difference between an RGB pixel and a colour.
pub fn distance(pixel: [u8; 3], colour: [u8; 3]) -> u32 {
    pixel
        .iter()
        .zip(colour)
        .map(|(a, b)| u32::from(a.abs_diff(b)))
        .sum::<u32>()
        / 3
}

/// Every output of a run, with names.
pub fn all_outputs(processed: &airlock_media::Processed) -> Vec<(String, &Encoded)> {
    std::iter::once(("original".to_owned(), &processed.original))
        .chain(processed.variants.iter().map(|(name, e)| (name.clone(), e)))
        .collect()
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}
