//! Mutation fuzzing of the media stage: valid files of every accepted format (the corpus
//! in `tests/corpus/` and the fixtures) are mutated — bit flips, special bytes, length
//! fields set to extremes, slices duplicated or deleted, truncation, splices of two files
//! — and processed, in a child process whose peak memory is checked at the end.
//!
//! Each input must end in `Ok` or `Err`: a panic in this crate's code is a failure even
//! though the library would turn it into an error, and so is an input that takes past
//! twice the decode deadline. The mutations come from a fixed seed, so a run is
//! repeatable; the run lasts `AIRLOCK_MEDIA_FUZZ_SECONDS` (60 under CI, else 8), and
//! `AIRLOCK_MEDIA_FUZZ_SEED` picks another seed. A failing input is written to the
//! temporary directory and its path printed.
//!
//! The corpus is made by `cargo test -p airlock-media --test fuzz -- --ignored
//! write_corpus`.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use airlock_media::{
    Limits, MediaOptions, VariantSpec, probe, process, process_file, process_variants_only,
};

/// Most the fuzzing process may hold at its peak.
const MEMORY_BOUND: u64 = 100 * 1024 * 1024;
/// The largest image a mutated input may declare: its pixels and their copies stay well
/// inside [`MEMORY_BOUND`].
const MAX_PIXELS: u64 = 1_000_000;
const DECODE_TIMEOUT: Duration = Duration::from_secs(5);

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

fn seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds = Vec::new();
    for dir in [
        corpus_dir(),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures"),
    ] {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            seeds.push((name, std::fs::read(&path).unwrap()));
        }
    }
    seeds
}

/// xorshift64*: small, fast, and the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n.max(1) as u64).unwrap()
    }
}

/// One mutation of `input` (never left empty).
fn mutate(input: &mut Vec<u8>, other: &[u8], rng: &mut Rng) {
    let len = input.len();
    match rng.below(8) {
        0 => {
            for _ in 0..=rng.below(4) {
                let at = rng.below(len);
                input[at] ^= 1 << rng.below(8);
            }
        }
        1 => {
            let at = rng.below(len);
            input[at] = [0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF][rng.below(6)];
        }
        2 | 3 => {
            // A length or size field: 2 or 4 bytes, either byte order, set to an extreme
            // or nudged by one.
            let width = if rng.below(2) == 0 { 2 } else { 4 };
            if len < width {
                return;
            }
            let at = rng.below(len - width + 1);
            let field = &mut input[at..at + width];
            let old = field.iter().fold(0u64, |acc, &b| acc << 8 | u64::from(b));
            let value = match rng.below(7) {
                0 => 0,
                1 => 1,
                2 => u64::MAX,
                3 => 0x7FFF_FFFF,
                4 => old.wrapping_add(1),
                5 => old.wrapping_sub(1),
                _ => rng.next(),
            };
            let bytes = value.to_be_bytes();
            field.copy_from_slice(&bytes[8 - width..]);
            if rng.below(2) == 0 {
                field.reverse();
            }
        }
        4 => {
            // Duplicate a slice (a chunk, a segment, a frame) somewhere else.
            let start = rng.below(len);
            let end = (start + 1 + rng.below(512)).min(len);
            let copy = input[start..end].to_vec();
            let at = rng.below(len + 1);
            input.splice(at..at, copy);
        }
        5 => {
            let start = rng.below(len);
            let end = (start + 1 + rng.below(256)).min(len);
            if end - start < len {
                input.drain(start..end);
            }
        }
        6 => input.truncate(1 + rng.below(len)),
        _ => {
            // Splice: the head of this input, the tail of another.
            let cut = rng.below(len);
            let from = rng.below(other.len());
            input.truncate(cut.max(1));
            input.extend_from_slice(&other[from..]);
        }
    }
}

fn options() -> MediaOptions {
    MediaOptions {
        limits: Limits {
            max_pixels: MAX_PIXELS,
            max_memory: Limits::memory_for_pixels(MAX_PIXELS),
            decode_timeout: DECODE_TIMEOUT,
            ..Limits::default()
        },
        variants: vec![
            VariantSpec::jpeg_contain(64, 70),
            VariantSpec {
                name: "webp".into(),
                format: airlock_media::OutputFormat::WebP,
                ..VariantSpec::jpeg_contain(24, 70)
            },
        ],
        ..MediaOptions::default()
    }
}

/// Set by the panic hook when a panic starts in this crate's own code.
static OUR_PANIC: AtomicBool = AtomicBool::new(false);

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// The fuzzing loop; returns how long it ran.
fn fuzz() -> Duration {
    let seconds =
        env_number("AIRLOCK_MEDIA_FUZZ_SECONDS").unwrap_or(if std::env::var_os("CI").is_some() {
            60
        } else {
            8
        });
    let seed = env_number("AIRLOCK_MEDIA_FUZZ_SEED").unwrap_or(0x5EED_A1B2_C3D4_E5F6);
    let seeds = seeds();
    assert!(seeds.len() >= 10, "corpus too small: {}", seeds.len());
    for (name, bytes) in &seeds {
        assert!(
            bytes.len() < 300 * 1024,
            "{name} is too large for the corpus"
        );
    }
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info
            .location()
            .is_some_and(|l| l.file().contains("airlock-media/src"))
        {
            OUR_PANIC.store(true, Ordering::SeqCst);
            default_hook(info);
        }
    }));
    let options = options();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("input");
    let mut rng = Rng(seed | 1);
    let start = Instant::now();
    let (mut inputs, mut accepted, mut slowest) = (0u64, 0u64, Duration::ZERO);
    while start.elapsed() < Duration::from_secs(seconds) {
        let (name, seed_bytes) = &seeds[rng.below(seeds.len())];
        let other = &seeds[rng.below(seeds.len())].1;
        let mut input = seed_bytes.clone();
        for _ in 0..=rng.below(3) {
            mutate(&mut input, other, &mut rng);
        }
        let began = Instant::now();
        let result = process(&input, &options);
        accepted += u64::from(result.is_ok());
        let _ = process_variants_only(&input, &options);
        let _ = probe(&input);
        if input.starts_with(b"\x89PNG") {
            std::fs::write(&file, &input).unwrap();
            let _ = process_file(&file, &options);
        }
        let took = began.elapsed();
        slowest = slowest.max(took);
        inputs += 1;
        let failure = if OUR_PANIC.load(Ordering::SeqCst) {
            Some("panicked in airlock-media")
        } else if took > 2 * DECODE_TIMEOUT {
            Some("ran past twice the decode deadline")
        } else {
            None
        };
        if let Some(failure) = failure {
            let saved = std::env::temp_dir().join(format!("airlock-media-fuzz-{seed:x}-{inputs}"));
            std::fs::write(&saved, &input).unwrap();
            panic!(
                "input {inputs} (from {name}) {failure} ({took:?}); saved to {}",
                saved.display()
            );
        }
    }
    println!(
        "fuzz: {inputs} inputs from {} seeds in {:?} (seed {seed:#x}), {accepted} processed, \
         the rest refused; slowest {slowest:?}",
        seeds.len(),
        start.elapsed()
    );
    start.elapsed()
}

#[test]
fn mutated_inputs_never_escape_the_bounds() {
    if let Some(run) = common::in_child("mutated_inputs_never_escape_the_bounds", fuzz) {
        let summary = run
            .output
            .lines()
            .find_map(|line| line.split("fuzz: ").nth(1))
            .unwrap_or_default();
        // Straight to stderr, past the test harness's capture: the count belongs in every
        // test log.
        let line = format!("fuzz: {summary}; peak RSS {} KiB\n", run.peak_rss / 1024);
        let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
        assert!(
            run.peak_rss < MEMORY_BOUND,
            "peak RSS {} bytes\n{}",
            run.peak_rss,
            run.output
        );
    }
}

/// Writes the corpus: small valid files of each format and feature the decoders branch on.
#[test]
#[ignore = "regenerates tests/corpus"]
#[allow(clippy::too_many_lines, reason = "one flat list of corpus files")]
fn write_corpus() {
    let (w, h) = (48u32, 40u32);
    let rgb = common::photo_like(w, h);
    let rgba: Vec<u8> = rgb
        .chunks_exact(3)
        .enumerate()
        .flat_map(|(i, p)| [p[0], p[1], p[2], u8::try_from(i * 5 % 256).unwrap()])
        .collect();
    let gray: Vec<u8> = rgb.chunks_exact(3).map(|p| p[1]).collect();
    let rgb16: Vec<u8> = rgb.iter().flat_map(|&v| [v, v ^ 0x5A]).collect();
    let p3 = moxcms::ColorProfile::new_display_p3().encode().unwrap();
    let mut app2 = b"ICC_PROFILE\0\x01\x01".to_vec();
    app2.extend_from_slice(&p3);
    let mut iccp = b"Display P3\0\0".to_vec();
    iccp.extend_from_slice(&common::zlib_stored(&p3));
    let mut exif_bomb = b"Exif\0\0".to_vec();
    exif_bomb.extend_from_slice(&common::exif_bomb_tiff(6, 40, 4096));
    let plain_png = common::png(w, h, png::ColorType::Rgb, png::BitDepth::Eight, &rgb, None);
    let palette: Vec<u8> = (0..16u8)
        .flat_map(|i| [i * 16, 255 - i * 16, i * 7])
        .collect();
    let indices: Vec<u8> = (0..w * h).map(|i| u8::try_from(i % 16).unwrap()).collect();
    let frame = |left: u16, delay: u16| common::GifFrame {
        width: 16,
        height: 16,
        left,
        top: 8,
        indices: (0..256u16).map(|i| u8::try_from(i % 7).unwrap()).collect(),
        delay,
        transparent: Some(0),
    };
    let files: Vec<(&str, Vec<u8>)> = vec![
        (
            "baseline-exif.jpg",
            common::with_segments_after_soi(
                &common::jpeg(w, h, &rgb, false),
                &[common::exif_segment(6)],
            ),
        ),
        ("progressive.jpg", common::jpeg(w, h, &rgb, true)),
        (
            "gray.jpg",
            common::jpeg_typed(w, h, &gray, jpeg_encoder::ColorType::Luma, false),
        ),
        (
            "cmyk.jpg",
            common::jpeg_typed(w, h, &rgba, jpeg_encoder::ColorType::Cmyk, false),
        ),
        (
            "icc.jpg",
            common::with_segments_after_soi(
                &common::jpeg(w, h, &rgb, false),
                &[common::segment(0xE2, &app2)],
            ),
        ),
        (
            "exif-bomb.jpg",
            common::with_segments_after_soi(
                &common::jpeg(16, 16, &common::photo_like(16, 16), false),
                &[common::segment(0xE1, &exif_bomb)],
            ),
        ),
        ("rgb.png", plain_png.clone()),
        (
            "rgba.png",
            common::png(
                w,
                h,
                png::ColorType::Rgba,
                png::BitDepth::Eight,
                &rgba,
                None,
            ),
        ),
        (
            "rgb16.png",
            common::png(
                w,
                h,
                png::ColorType::Rgb,
                png::BitDepth::Sixteen,
                &rgb16,
                None,
            ),
        ),
        (
            "palette-trns.png",
            common::png(
                w,
                h,
                png::ColorType::Indexed,
                png::BitDepth::Eight,
                &indices,
                Some((&palette, Some(&[0, 128]))),
            ),
        ),
        (
            "iccp-exif.png",
            common::png_with_chunk(
                &common::png_with_chunk(&plain_png, *b"iCCP", &iccp),
                *b"eXIf",
                &common::exif_tiff(3),
            ),
        ),
        (
            "animated.gif",
            common::gif(48, 40, &palette, &[frame(0, 5), frame(20, 7), frame(30, 9)]),
        ),
        ("lossless.webp", common::webp_lossless(w, h, &rgb, false)),
        (
            "lossless-alpha.webp",
            common::webp_lossless(w, h, &rgba, true),
        ),
        (
            "animated-canvas.webp",
            common::animated_lossy_webp(128, 96, 3),
        ),
        // Past the fuzzing budget: four frames of a 2000x500 canvas.
        (
            "animated-past-budget.webp",
            common::animated_lossy_webp(2000, 500, 4),
        ),
        ("iccp-bomb.png", {
            let mut bomb = b"bomb\0\0".to_vec();
            bomb.extend_from_slice(&common::zlib_zeros(8 << 20));
            let small = common::photo_like(16, 16);
            let png = common::png(
                16,
                16,
                png::ColorType::Rgb,
                png::BitDepth::Eight,
                &small,
                None,
            );
            common::png_with_chunk(&png, *b"iCCP", &bomb)
        }),
    ];
    let dir = corpus_dir();
    std::fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}
