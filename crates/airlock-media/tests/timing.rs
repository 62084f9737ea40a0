//! Single-threaded timing of the three default variants on a 24-megapixel JPEG.
//!
//! Ignored by default (it is slow in debug builds and its numbers only mean something in
//! release): `cargo test --release -p airlock-media --test timing -- --ignored --nocapture`.
//! Set `AIRLOCK_MEDIA_TIMING_INPUT` to a JPEG to time a real photograph instead of the
//! generated one.

mod common;

use std::time::{Duration, Instant};

use airlock_media::{MediaOptions, process, process_variants_only};

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

#[test]
#[ignore = "timing; run in release with --ignored --nocapture"]
fn three_variants_of_a_24_megapixel_jpeg() {
    let input = match std::env::var_os("AIRLOCK_MEDIA_TIMING_INPUT") {
        Some(path) => std::fs::read(path).expect("timing input"),
        None => common::jpeg(6000, 4000, &common::photo_like(6000, 4000), false),
    };
    let info = airlock_media::probe(&input).unwrap();
    let options = MediaOptions {
        placeholder: false,
        ..MediaOptions::default()
    };
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..5 {
        let start = Instant::now();
        last = Some(process_variants_only(&input, &options).unwrap());
        times.push(start.elapsed());
    }
    let variants = last.unwrap().variants;
    let long = info.width.max(info.height);
    for ((name, encoded), size) in variants.iter().zip([2048u32, 1024, 256]) {
        assert_eq!(encoded.width.max(encoded.height), size.min(long), "{name}");
    }
    eprintln!(
        "{}x{} JPEG, {} bytes: variants only, median of 5: {:?} (runs {times:?})",
        info.width,
        info.height,
        input.len(),
        median(times.clone())
    );

    let start = Instant::now();
    let full = process(&input, &MediaOptions::default()).unwrap();
    eprintln!(
        "full process (sanitized original {} bytes + variants + placeholder): {:?}",
        full.original.bytes.len(),
        start.elapsed()
    );
    assert_eq!(
        (full.original.width, full.original.height),
        (info.width, info.height)
    );
}
