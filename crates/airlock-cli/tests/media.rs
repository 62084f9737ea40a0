//! `airlock media process` as a user runs it: the real binary on an image file on disk.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn media_process(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["media", "process"])
        .args(args)
        .output()
        .expect("airlock runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn crc32(bytes: &[u8]) -> u32 {
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

fn chunk(out: &mut Vec<u8>, kind: [u8; 4], data: &[u8]) {
    out.extend_from_slice(&u32::try_from(data.len()).unwrap().to_be_bytes());
    let start = out.len();
    out.extend_from_slice(&kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// An 8-bit RGB PNG of a colour gradient, its image data stored without compression.
fn gradient_png(width: u32, height: u32) -> Vec<u8> {
    let mut raw = Vec::new();
    for y in 0..height {
        raw.push(0);
        for x in 0..width {
            let level = |value: u32, range: u32| u8::try_from(value * 255 / range).unwrap();
            raw.extend_from_slice(&[level(x, width), level(y, height), 128]);
        }
    }
    let mut zlib = vec![0x78, 0x01];
    let pieces: Vec<&[u8]> = raw.chunks(65_535).collect();
    for (i, piece) in pieces.iter().enumerate() {
        zlib.push(u8::from(i + 1 == pieces.len()));
        let len = u16::try_from(piece.len()).unwrap();
        zlib.extend_from_slice(&len.to_le_bytes());
        zlib.extend_from_slice(&(!len).to_le_bytes());
        zlib.extend_from_slice(piece);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in &raw {
        a = (a + u32::from(byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    zlib.extend_from_slice(&((b << 16) | a).to_be_bytes());

    let mut png = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut png, *b"IHDR", &ihdr);
    // Image data in several chunks, as encoders write it.
    for piece in zlib.chunks(8192) {
        chunk(&mut png, *b"IDAT", piece);
    }
    chunk(&mut png, *b"IEND", &[]);
    png
}

fn listed_files(report: &Value) -> Vec<String> {
    report["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|file| {
            let path = Path::new(file.as_str().unwrap());
            path.file_name().unwrap().to_string_lossy().into_owned()
        })
        .collect()
}

#[test]
fn a_png_file_becomes_its_sanitized_original_variants_and_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("gradient.png");
    std::fs::write(&input, gradient_png(600, 400)).unwrap();
    let out = dir.path().join("out");
    let output = media_process(&[
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--variant",
        "w200:200:jpeg:80",
        "--variant",
        "w50:50:png:1",
    ]);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let metadata = &report["metadata"];
    assert_eq!(metadata["format"], "png");
    assert_eq!(
        (&metadata["width"], &metadata["height"]),
        (&600.into(), &400.into())
    );
    let outputs: Vec<(&str, u64, u64)> = metadata["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["name"].as_str().unwrap(),
                o["width"].as_u64().unwrap(),
                o["height"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        outputs,
        [("original", 600, 400), ("w200", 200, 133), ("w50", 50, 33)]
    );
    assert_eq!(
        listed_files(&report),
        ["original.png", "w200.jpg", "w50.png"]
    );
    assert!(
        std::fs::read(out.join("w200.jpg"))
            .unwrap()
            .starts_with(&[0xFF, 0xD8, 0xFF])
    );
    assert!(
        std::fs::read(out.join("w50.png"))
            .unwrap()
            .starts_with(b"\x89PNG")
    );
    let written: Value =
        serde_json::from_slice(&std::fs::read(out.join("metadata.json")).unwrap()).unwrap();
    assert_eq!(&written, metadata);

    // The thumbnailing path: variants only, streamed from the file.
    let thumbs = dir.path().join("thumbs");
    let output = media_process(&[
        input.to_str().unwrap(),
        "--out",
        thumbs.to_str().unwrap(),
        "--variants-only",
        "--no-placeholder",
        "--variant",
        "w200:200:jpeg:80",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(listed_files(&report), ["w200.jpg"]);
    assert_eq!(report["metadata"]["placeholder"], Value::Null);
    assert!(
        std::fs::read(thumbs.join("w200.jpg"))
            .unwrap()
            .starts_with(&[0xFF, 0xD8, 0xFF])
    );
}

#[test]
fn an_unreadable_input_is_an_error_and_a_damaged_image_a_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let missing = dir.path().join("missing.png");
    let output = media_process(&[missing.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(output.stdout.is_empty(), "{}", text(&output.stdout));
    assert!(
        stderr.contains(&format!("cannot read {}", missing.display())),
        "{stderr}"
    );
    assert!(!out.exists());

    let truncated = dir.path().join("truncated.png");
    let png = gradient_png(300, 200);
    std::fs::write(&truncated, &png[..png.len() / 2]).unwrap();
    let output = media_process(&[truncated.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(4), "{}", text(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["refused"], "image-invalid");
}
