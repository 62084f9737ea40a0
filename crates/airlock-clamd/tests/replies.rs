//! `parse_reply` against replies captured from a real clamd (`tests/replies/*.txt`).

use std::collections::BTreeSet;
use std::path::PathBuf;

use airlock_clamd::{ReplyError, parse_reply};
use airlock_core::ports::ScanVerdict;

fn replies_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/replies")
}

fn infected(signature: &str) -> ScanVerdict {
    ScanVerdict::Infected {
        signature: signature.to_owned(),
    }
}

fn limit(detail: &str) -> ScanVerdict {
    ScanVerdict::LimitExceeded {
        detail: detail.to_owned(),
    }
}

fn expectations() -> Vec<(&'static str, Result<ScanVerdict, ReplyError>)> {
    vec![
        ("clean.txt", Ok(ScanVerdict::Clean)),
        ("eicar.txt", Ok(infected("Airlock.Test.EICAR.UNOFFICIAL"))),
        (
            "hash-fixture.txt",
            Ok(infected("Airlock.Test.HashFixture.UNOFFICIAL")),
        ),
        (
            "clamav-testfile.txt",
            Ok(infected("Airlock.Test.ClamMessageBoxA.UNOFFICIAL")),
        ),
        (
            "max-file-size.txt",
            Ok(limit("Heuristics.Limits.Exceeded.MaxFileSize")),
        ),
        (
            "max-scan-size.txt",
            Ok(limit("Heuristics.Limits.Exceeded.MaxScanSize")),
        ),
        (
            "stream-max-length.txt",
            Ok(limit(
                "clamd StreamMaxLength: INSTREAM size limit exceeded.",
            )),
        ),
        ("read-timed-out.txt", Err(ReplyError::ReadTimedOut)),
        (
            "unknown-command.txt",
            Err(ReplyError::Unexpected("UNKNOWN COMMAND".to_owned())),
        ),
        (
            "scan-path-error.txt",
            Err(ReplyError::Server(
                "/nonexistent/airlock: File path check failure: No such file or directory."
                    .to_owned(),
            )),
        ),
        ("closed-without-reply.txt", Err(ReplyError::Empty)),
    ]
}

#[test]
fn every_captured_reply_parses_as_expected() {
    for (file, expected) in expectations() {
        let bytes = std::fs::read(replies_dir().join(file))
            .unwrap_or_else(|e| panic!("reading tests/replies/{file}: {e}"));
        assert_eq!(parse_reply(&bytes), expected, "tests/replies/{file}");
    }
}

#[test]
fn every_captured_reply_has_an_expectation() {
    let on_disk: BTreeSet<String> = std::fs::read_dir(replies_dir())
        .expect("tests/replies exists")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "txt"))
        .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let expected: BTreeSet<String> = expectations()
        .into_iter()
        .map(|(file, _)| file.to_owned())
        .collect();
    assert_eq!(on_disk, expected);
}

#[test]
fn verdict_replies_are_nul_terminated_single_lines() {
    for (file, expected) in expectations() {
        if expected.is_err() {
            continue;
        }
        let bytes = std::fs::read(replies_dir().join(file)).unwrap();
        assert_eq!(bytes.last(), Some(&0), "{file} ends with NUL");
        assert_eq!(
            bytes.iter().filter(|&&b| b == 0 || b == b'\n').count(),
            1,
            "{file} is one line"
        );
    }
}

#[test]
fn truncated_replies_are_not_verdicts() {
    // A reply cut anywhere before its last word must never read as clean or infected.
    for (file, expected) in expectations() {
        let bytes = std::fs::read(replies_dir().join(file)).unwrap();
        let Some(text_len) = bytes.len().checked_sub(1) else {
            continue;
        };
        for cut in 1..text_len.saturating_sub(2) {
            let parsed = parse_reply(&bytes[..cut]);
            assert!(
                parsed.is_err() || parsed == expected,
                "{file} cut at {cut}: {parsed:?}"
            );
        }
    }
}
