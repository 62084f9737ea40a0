//! Every captured event under `fixtures/events/` parses to the items listed here.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::*;
use crate::keys::UploadKey;

#[derive(Debug)]
enum Expect {
    /// An object with this key, which must be a valid upload key.
    Upload(&'static str),
    /// An object with this key, deliberately not a valid upload key.
    OddKey(&'static str),
    Skip(&'static str),
    /// An error about this field, with a problem starting so.
    Error(&'static str, &'static str),
}

use Expect::{Error, OddKey, Skip, Upload};

const SQS_A: &str =
    "batch: Records[0] (SQS message a2addd16-c26c-4881-a5fa-4fd97d78b2a6) > Records[0]";

/// Per file, the items it yields: source (relative to the file) and what.
const EXPECTATIONS: &[(&str, &[(&str, Expect)])] = &[
    (
        "capture-array.json",
        &[
            ("[0]", Skip("test-event")),
            (
                "[1].Records[0]",
                Upload("incoming/acme/avatar/019594d7-01f8-718d-855d-6d77758d9e26"),
            ),
            ("[2]", Skip("not-object-created")),
        ],
    ),
    (
        "eventbridge-object-created.json",
        &[(
            "",
            Upload("incoming/acme/avatar/0195946d-66cd-7327-bdb9-7a0121a44d24"),
        )],
    ),
    (
        "s3-key-special.json",
        &[
            (
                "Records[0]",
                OddKey("incoming/acme/document/quarterly report (2025).pdf"),
            ),
            ("Records[1]", OddKey("incoming/acme/document/c++ notes.txt")),
            (
                "Records[2]",
                OddKey("incoming/acme/document/summer notes.txt"),
            ),
            ("Records[3]", OddKey("incoming/acme/document/été ☀.jpg")),
        ],
    ),
    (
        "s3-malformed.json",
        &[
            ("Records[0]", Error("Records[0].s3.object.key", "missing")),
            (
                "Records[1]",
                Upload("incoming/initech/avatar/01959423-69a7-7515-aae2-02fcac0c59cc"),
            ),
        ],
    ),
    (
        "s3-multipart-complete.json",
        &[(
            "Records[0]",
            Upload("incoming/acme/document/019593ff-8376-7c0e-a70f-7520afddd3ea"),
        )],
    ),
    (
        "s3-object-removed.json",
        &[("Records[0]", Skip("not-object-created"))],
    ),
    (
        "s3-other-prefix.json",
        &[
            ("Records[0]", Skip("outside-incoming")),
            ("Records[1]", Skip("outside-incoming")),
        ],
    ),
    (
        "s3-put-moto.json",
        &[(
            "Records[0]",
            Upload("incoming/globex/document/01959434-1d3c-7781-a95c-4ae92a1f20a0"),
        )],
    ),
    (
        "s3-put.json",
        &[(
            "Records[0]",
            Upload("incoming/acme/avatar/019593fa-55c5-7dff-8690-a9c144e7cf0f"),
        )],
    ),
    ("s3-test-event.json", &[("", Skip("test-event"))]),
    (
        "sqs-batch.json",
        &[
            (
                SQS_A,
                Upload("incoming/acme/avatar/019594aa-366b-7b44-a578-c1f1b5c83958"),
            ),
            (
                "batch: Records[1] (SQS message 6581fd08-91d6-4cb2-a243-9841add0d3ee) (SNS message 20c6be60-92de-41d5-a7cc-c135fcab2986) > Records[0]",
                Upload("incoming/globex/document/019594aa-460b-7492-94bb-a621c1976cee"),
            ),
            (
                "batch: Records[2] (SQS message 20d39526-b076-4f3f-934f-f46f0fe8c085)",
                Skip("test-event"),
            ),
            (
                "batch: Records[3] (SQS message ce115144-a12a-4637-af96-75be1d7ca721)",
                Error("Records[3].body", "not JSON: EOF while parsing a string"),
            ),
            (
                "batch: Records[4] (SQS message a78b95b7-255a-4dd8-8d9b-2812d93fadac)",
                Upload("incoming/acme/document/019594aa-55ab-7d9c-9599-4c65fa291d20"),
            ),
        ],
    ),
];

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/events")
}

/// The expected source: sources in `sqs-batch.json` are written with `batch` for the origin.
fn expected_source(file: &str, source: &str) -> String {
    if let Some(rest) = source.strip_prefix("batch") {
        format!("{file}{rest}")
    } else if source.is_empty() {
        file.to_owned()
    } else {
        format!("{file}: {source}")
    }
}

#[test]
fn every_fixture_parses_as_expected() {
    let mut expectations: BTreeMap<&str, &[(&str, Expect)]> =
        EXPECTATIONS.iter().copied().collect();
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures/events exists")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 11, "{files:?}");
    for path in files {
        let file = path.file_name().unwrap().to_str().unwrap().to_owned();
        let expected = expectations
            .remove(file.as_str())
            .unwrap_or_else(|| panic!("{file} has no expectations in fixture_tests.rs"));
        let text = std::fs::read_to_string(&path).unwrap();
        let items = parse_event_str(&file, &text);
        assert_eq!(
            items.len(),
            expected.len(),
            "{file}: {:#?}",
            items.iter().map(ToString::to_string).collect::<Vec<_>>()
        );
        for (item, (source, expect)) in items.iter().zip(expected) {
            assert_eq!(item.source, expected_source(&file, source), "{file}");
            check(&file, item, expect);
        }
    }
    assert!(
        expectations.is_empty(),
        "fixtures missing: {:?}",
        expectations.keys()
    );
}

fn check(file: &str, item: &IntakeItem, expect: &Expect) {
    match expect {
        Upload(key) | OddKey(key) => {
            let object = item
                .object()
                .unwrap_or_else(|| panic!("{file}: expected an object: {item}"));
            assert_eq!(object.bucket, "airlock-uploads", "{item}");
            assert_eq!(object.key, *key, "{item}");
            assert!(
                object.etag.as_ref().is_some_and(|etag| !etag.contains('"')),
                "{item}"
            );
            assert!(object.event_time.is_some(), "{item}");
            assert!(
                object
                    .event_name
                    .as_ref()
                    .is_some_and(|name| name.starts_with("ObjectCreated:")),
                "{item}"
            );
            let valid = UploadKey::parse_incoming(key);
            if matches!(expect, Upload(_)) {
                let parsed = valid.unwrap_or_else(|err| panic!("{file}: {err}"));
                // The fixtures use time-ordered ids, as the server makes them.
                assert_eq!(parsed.upload_id.as_uuid().get_version_num(), 7, "{key}");
            } else {
                assert!(valid.is_err(), "{key} is an odd key but valid");
            }
        }
        Skip(code) => {
            let reason = item
                .skipped()
                .unwrap_or_else(|| panic!("{file}: expected a skip: {item}"));
            assert_eq!(reason.code(), *code, "{item}");
        }
        Error(field, problem) => {
            let err = item
                .error()
                .unwrap_or_else(|| panic!("{file}: expected an error: {item}"));
            assert_eq!(err.field, *field, "{item}");
            assert!(err.problem.to_string().starts_with(problem), "{item}");
        }
    }
}

#[test]
fn fixture_details() {
    let read = |name: &str| {
        let text = std::fs::read_to_string(fixtures_dir().join(name)).unwrap();
        parse_event_str(name, &text)
    };
    let multipart = read("s3-multipart-complete.json");
    let object = multipart[0].object().unwrap();
    assert_eq!(
        object.event_name.as_deref(),
        Some("ObjectCreated:CompleteMultipartUpload")
    );
    assert!(object.etag.as_ref().unwrap().ends_with("-6"));
    assert!(object.version_id.is_some() && object.sequencer.is_some());

    let moto = read("s3-put-moto.json");
    let object = moto[0].object().unwrap();
    assert_eq!(
        (object.version_id.as_ref(), object.sequencer.as_ref()),
        (None, None)
    );
    assert_eq!(
        object.event_time.unwrap().to_rfc3339(),
        "2025-03-14T10:29:58.204116+00:00"
    );

    let other = read("s3-other-prefix.json");
    assert_eq!(
        other[0].skipped(),
        Some(&SkipReason::OutsideIncoming {
            key: "trusted/acme/avatar/019593fa-55c5-7dff-8690-a9c144e7cf0f".into()
        })
    );

    let malformed = read("s3-malformed.json");
    assert_eq!(
        malformed[0].error().unwrap().to_string(),
        "s3-malformed.json: Records[0].s3.object.key: missing"
    );
}
