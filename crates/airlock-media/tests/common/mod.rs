//! Test inputs built at test time, and independent checks of outputs.
#![allow(dead_code, reason = "each test binary uses a different subset")]
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    clippy::cast_possible_wrap,
    reason = "test-pattern arithmetic on small, known values"
)]

pub mod icc;

use airlock_media::{Encoded, MediaOptions};
use sha2::{Digest, Sha256};

/// Options that make the sanitized original only: no variants, no placeholder.
pub fn original_only() -> MediaOptions {
    MediaOptions {
        variants: Vec::new(),
        placeholder: false,
        ..MediaOptions::default()
    }
}

/// Mean absolute difference per sample.
pub fn mean_error(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    let total: u64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| u64::from(x.abs_diff(*y)))
        .sum();
    total as f64 / a.len() as f64
}

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

/// A zlib stream that inflates to `len` zero bytes: fixed-Huffman blocks of one literal
/// and then back-references of 258 bytes at distance 1, 13 bits per 258 bytes.
pub fn zlib_zeros(len: u64) -> Vec<u8> {
    struct Bits {
        out: Vec<u8>,
        acc: u64,
        count: u32,
    }
    impl Bits {
        fn put(&mut self, value: u32, bits: u32) {
            self.acc |= u64::from(value) << self.count;
            self.count += bits;
            while self.count >= 8 {
                self.out.push((self.acc & 0xFF) as u8);
                self.acc >>= 8;
                self.count -= 8;
            }
        }
        /// Huffman codes are sent most significant bit first.
        fn code(&mut self, code: u32, bits: u32) {
            let reversed = code.reverse_bits() >> (32 - bits);
            self.put(reversed, bits);
        }
    }
    let mut bits = Bits {
        out: vec![0x78, 0x01],
        acc: 0,
        count: 0,
    };
    bits.put(1, 1); // final block
    bits.put(1, 2); // fixed Huffman
    bits.code(0x30, 8); // literal 0
    let mut remaining = len - 1;
    while remaining >= 258 {
        bits.code(0b1100_0101, 8); // length 258 (symbol 285)
        bits.code(0, 5); // distance 1
        remaining -= 258;
    }
    for _ in 0..remaining {
        bits.code(0x30, 8);
    }
    bits.code(0, 7); // end of block (symbol 256)
    if bits.count > 0 {
        bits.put(0, 8 - bits.count);
    }
    let mut out = bits.out;
    // Adler-32 of zeros: a stays 1, b gains 1 per byte.
    let adler = ((len % 65_521) << 16) | 1;
    out.extend_from_slice(&u32::try_from(adler).unwrap().to_be_bytes());
    out
}

/// A big-endian EXIF block of `total_len` bytes built to cost a general EXIF parser
/// memory: `entries` ASCII entries in IFD0 all point at the same run of zero bytes that
/// fills the rest of the block, and each zero byte ends a string, so a parser that splits
/// values into strings makes `entries` times that many. Real Orientation, Make, Model,
/// EXIF IFD (`DateTimeOriginal`) and GPS IFD entries come first, their values within the
/// first few hundred bytes, so a careful reader still finds them.
pub fn exif_bomb_tiff(orientation: u16, entries: u16, total_len: usize) -> Vec<u8> {
    let entry = |t: &mut Vec<u8>, tag: u16, kind: u16, count: u32, value: [u8; 4]| {
        t.extend_from_slice(&tag.to_be_bytes());
        t.extend_from_slice(&kind.to_be_bytes());
        t.extend_from_slice(&count.to_be_bytes());
        t.extend_from_slice(&value);
    };
    let make = format!("{MAKE}\0");
    let model = format!("{MODEL}\0");
    let taken = format!("{DATE_TIME}\0");
    // Layout: header | EXIF IFD | GPS IFD | strings | IFD0 | zeros.
    let exif_ifd = 8u32;
    let gps_ifd = exif_ifd + 18;
    let make_at = gps_ifd + 18;
    let model_at = make_at + make.len() as u32;
    let taken_at = model_at + model.len() as u32;
    let ifd0 = (taken_at + taken.len() as u32 + 1) & !1;
    let zeros_at = ifd0 + 2 + (5 + u32::from(entries)) * 12 + 4;
    assert!((zeros_at as usize) < total_len, "EXIF bomb too small");
    let zeros = total_len as u32 - zeros_at;

    let mut t = b"MM\0\x2A".to_vec();
    t.extend_from_slice(&ifd0.to_be_bytes());
    t.extend_from_slice(&1u16.to_be_bytes());
    entry(
        &mut t,
        0x9003,
        2,
        taken.len() as u32,
        taken_at.to_be_bytes(),
    );
    t.extend_from_slice(&0u32.to_be_bytes());
    t.extend_from_slice(&1u16.to_be_bytes());
    entry(&mut t, 0x0001, 2, 2, *b"N\0\0\0");
    t.extend_from_slice(&0u32.to_be_bytes());
    t.extend_from_slice(make.as_bytes());
    t.extend_from_slice(model.as_bytes());
    t.extend_from_slice(taken.as_bytes());
    t.resize(ifd0 as usize, 0);
    t.extend_from_slice(&(5 + entries).to_be_bytes());
    entry(&mut t, 0x010F, 2, make.len() as u32, make_at.to_be_bytes());
    entry(
        &mut t,
        0x0110,
        2,
        model.len() as u32,
        model_at.to_be_bytes(),
    );
    let [a, b] = orientation.to_be_bytes();
    entry(&mut t, 0x0112, 3, 1, [a, b, 0, 0]);
    entry(&mut t, 0x8769, 4, 1, exif_ifd.to_be_bytes());
    entry(&mut t, 0x8825, 4, 1, gps_ifd.to_be_bytes());
    for i in 0..entries {
        entry(&mut t, 0xC000 + i, 2, zeros, zeros_at.to_be_bytes());
    }
    t.extend_from_slice(&0u32.to_be_bytes());
    assert_eq!(t.len(), zeros_at as usize);
    t.resize(total_len, 0);
    t
}

/// A PNG with one more chunk right after IHDR.
pub fn png_with_chunk(png: &[u8], kind: [u8; 4], data: &[u8]) -> Vec<u8> {
    let ihdr_end = 8 + 12 + 13;
    let mut out = png[..ihdr_end].to_vec();
    out.extend_from_slice(&png_chunk(kind, data));
    out.extend_from_slice(&png[ihdr_end..]);
    out
}

/// The chunks of a WebP file, in order.
pub fn webp_chunks(webp: &[u8]) -> Vec<([u8; 4], Vec<u8>)> {
    let mut chunks = Vec::new();
    let mut pos = 12;
    while pos + 8 <= webp.len() {
        let kind: [u8; 4] = webp[pos..pos + 4].try_into().unwrap();
        let len = u32::from_le_bytes(webp[pos + 4..pos + 8].try_into().unwrap()) as usize;
        chunks.push((kind, webp[pos + 8..pos + 8 + len].to_vec()));
        pos += 8 + len + (len & 1);
    }
    chunks
}

/// A WebP file of these chunks.
pub fn webp_file(chunks: &[([u8; 4], Vec<u8>)]) -> Vec<u8> {
    let mut body = b"WEBP".to_vec();
    for (kind, data) in chunks {
        body.extend_from_slice(kind);
        body.extend_from_slice(&u32::try_from(data.len()).unwrap().to_le_bytes());
        body.extend_from_slice(data);
        if data.len() % 2 == 1 {
            body.push(0);
        }
    }
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&u32::try_from(body.len()).unwrap().to_le_bytes());
    out.extend_from_slice(&body);
    out
}

fn le24(value: u32) -> [u8; 3] {
    let [a, b, c, _] = value.to_le_bytes();
    [a, b, c]
}

/// A VP8X chunk's data: `flags` and the canvas size.
pub fn vp8x(flags: u8, width: u32, height: u32) -> Vec<u8> {
    let mut data = vec![flags, 0, 0, 0];
    data.extend_from_slice(&le24(width - 1));
    data.extend_from_slice(&le24(height - 1));
    data
}

/// The fixture `lossy.webp`: a 96x64 lossy still with an EXIF chunk.
pub fn lossy_webp_fixture() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/lossy.webp"
    ))
    .unwrap()
}

/// An animated lossy WebP: `frames` copies of the 96x64 lossy frame of `lossy.webp`, at
/// the canvas origin of a `width x height` canvas, 100 ms each.
pub fn animated_lossy_webp(width: u32, height: u32, frames: u32) -> Vec<u8> {
    let vp8 = webp_chunks(&lossy_webp_fixture())
        .into_iter()
        .find(|(kind, _)| kind == b"VP8 ")
        .expect("VP8 chunk")
        .1;
    let mut chunks = vec![(*b"VP8X", vp8x(0x02, width, height))];
    chunks.push((*b"ANIM", vec![0, 0, 0, 0, 0, 0]));
    let mut anmf = vec![0u8; 6];
    anmf.extend_from_slice(&le24(95));
    anmf.extend_from_slice(&le24(63));
    anmf.extend_from_slice(&le24(100));
    anmf.push(0b10);
    anmf.extend_from_slice(b"VP8 ");
    anmf.extend_from_slice(&u32::try_from(vp8.len()).unwrap().to_le_bytes());
    anmf.extend_from_slice(&vp8);
    if vp8.len() % 2 == 1 {
        anmf.push(0);
    }
    for _ in 0..frames {
        chunks.push((*b"ANMF", anmf.clone()));
    }
    webp_file(&chunks)
}

/// Environment variable naming the test a child run performs; see [`in_child`].
const CHILD_TEST: &str = "AIRLOCK_MEDIA_CHILD_TEST";

/// What a child run reported.
#[derive(Debug)]
pub struct ChildRun {
    /// Peak resident set of the child process (Linux `VmHWM`), in bytes.
    pub peak_rss: u64,
    /// What `body` returned: how long the part of it that it measured took.
    pub elapsed: std::time::Duration,
    /// Everything the child printed.
    pub output: String,
}

/// The peak resident set of this process so far (Linux `VmHWM`), in bytes.
pub fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/self/status");
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

/// Runs `body` in a fresh process, so that its peak memory is its own: the test binary
/// runs again for test `name` alone, where this same call runs `body`, prints its peak
/// resident set and the time `body` says its work took, and returns `None`. In the
/// parent, returns what the child reported once it has succeeded (a failed assertion, a
/// panic or an abort in `body` fails the parent too, with the child's output).
pub fn in_child(name: &str, body: impl FnOnce() -> std::time::Duration) -> Option<ChildRun> {
    if std::env::var(CHILD_TEST).as_deref() == Ok(name) {
        let elapsed = body();
        println!(
            "child-report peak_rss={} elapsed_us={}",
            peak_rss(),
            elapsed.as_micros()
        );
        return None;
    }
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_TEST, name)
        .output()
        .expect("the test binary runs again");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "{name}: child failed ({}):\n{text}",
        output.status
    );
    let report = text
        .lines()
        .find_map(|line| line.split("child-report ").nth(1))
        .unwrap_or_else(|| panic!("{name}: child reported nothing:\n{text}"));
    let field = |key: &str| -> u64 {
        report
            .split_whitespace()
            .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("{name}: no {key} in {report}"))
    };
    Some(ChildRun {
        peak_rss: field("peak_rss"),
        elapsed: std::time::Duration::from_micros(field("elapsed_us")),
        output: text,
    })
}
