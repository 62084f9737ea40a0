//! `airlock replay` as a user runs it: the real binary, the bundled fixtures, a clamd it
//! starts itself.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn replay(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_airlock"))
        .current_dir(repo())
        .arg("replay")
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--delay-scale")
        .arg("0.001")
        .args(args)
        .env_remove("AIRLOCK_CLAMD")
        .env("NO_COLOR", "1")
        .output()
        .expect("airlock runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn replays_the_fixtures_as_a_table_then_changes_nothing_the_second_time() {
    let dir = tempfile::tempdir().unwrap();
    let first = replay(dir.path(), &["fixtures/cases", "fixtures/events"]);
    let (stdout, stderr) = (text(&first.stdout), text(&first.stderr));
    assert_eq!(first.status.code(), Some(0), "{stdout}\n{stderr}");
    let header = stdout.lines().next().unwrap();
    for column in [
        "SOURCE",
        "RESULT",
        "REASON",
        "INSPECT ms",
        "SCAN ms",
        "TOTAL ms",
    ] {
        assert!(header.contains(column), "{header}");
    }
    let row = |name: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no row for {name}:\n{stdout}"))
            .to_owned()
    };
    assert!(row("clean-jpeg").contains("trusted"));
    assert!(row("type-mismatch").contains("quarantine  type-mismatch"));
    assert!(row("eicar").contains("infected (Airlock.Test.EICAR.UNOFFICIAL)"));
    assert!(!stdout.contains("UNEXPECTED"), "{stdout}");
    // The malformed record is reported by name and field; its neighbour still ran.
    assert!(
        stdout.contains("Records[0].s3.object.key: missing"),
        "{stdout}"
    );
    assert!(stdout.contains("s3-malformed.json: Records[1]"), "{stdout}");
    let summary = stderr.lines().last().unwrap();
    assert!(summary.contains("9 trusted, 16 quarantined"), "{summary}");
    assert!(summary.contains("0 failed"), "{summary}");
    assert!(summary.contains("2 bad input"), "{summary}");

    let second = replay(dir.path(), &["--json", "fixtures/cases"]);
    assert_eq!(second.status.code(), Some(0), "{}", text(&second.stderr));
    let results: Value = serde_json::from_slice(&second.stdout).unwrap();
    let results = results.as_array().unwrap();
    assert_eq!(results.len(), 25);
    for result in results {
        assert_eq!(
            result.pointer("/result/settlement/destination"),
            Some(&Value::from("skipped")),
            "{result}"
        );
    }
}

#[test]
fn verbose_prints_each_step_of_the_execution_history() {
    let dir = tempfile::tempdir().unwrap();
    let output = replay(dir.path(), &["-v", "fixtures/cases/clean-png.json"]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    for step in [
        "ExecutionStarted",
        "TaskStateEntered",
        "TaskSubmitted",
        "TaskSucceeded",
        "ChoiceStateEntered",
        "ExecutionSucceeded",
    ] {
        assert!(stdout.contains(step), "{step} missing:\n{stdout}");
    }
    for state in ["name=Inspect", "name=Scan", "name=Promote"] {
        assert!(stdout.contains(state), "{state} missing:\n{stdout}");
    }
}

#[test]
fn an_unreachable_scanner_is_an_infrastructure_failure() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let output = replay(
        dir.path(),
        &["--clamd", &format!("127.0.0.1:{port}"), "fixtures/cases"],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("clamd does not answer PING"));
}

#[test]
fn a_case_that_ends_otherwise_than_expected_fails_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let cases = dir.path().join("cases");
    std::fs::create_dir(&cases).unwrap();
    let mut case: Value = serde_json::from_slice(
        &std::fs::read(repo().join("fixtures/cases/clean-jpeg.json")).unwrap(),
    )
    .unwrap();
    case["object"]["file"] = repo()
        .join("fixtures/objects/photo.jpg")
        .to_string_lossy()
        .into_owned()
        .into();
    case["expect"]["destination"] = "quarantine".into();
    std::fs::write(cases.join("wrong.json"), case.to_string()).unwrap();
    let output = replay(&dir.path().join("data"), &[cases.to_str().unwrap()]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(3), "{stdout}");
    assert!(
        stdout.contains("wrong: UNEXPECTED: went to trusted, expected quarantine"),
        "{stdout}"
    );
}

#[test]
fn an_invalid_case_names_the_file_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"description": "x", "key": "incoming/a/b/c", "object": {"file": "nope"}, "colour": 1}"#,
    )
    .unwrap();
    let output = replay(&dir.path().join("data"), &[bad.to_str().unwrap()]);
    let stdout = text(&output.stdout);
    assert!(stdout.contains("bad.json: not a valid case"), "{stdout}");
    assert!(stdout.contains("unknown field `colour`"), "{stdout}");
}

fn media(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_airlock"))
        .current_dir(repo())
        .arg("media")
        .arg("process")
        .args(args)
        .output()
        .expect("airlock runs")
}

#[test]
fn media_process_writes_the_sanitized_image_and_its_variants() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let output = media(&[
        "fixtures/objects/camera-photo.jpg",
        "--out",
        out.to_str().unwrap(),
        "--variant",
        "small:300:jpeg:80",
        "--variant",
        "tiny:64:png:100",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let printed: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(printed["metadata"]["orientation"], 6);
    for file in ["original.jpg", "small.jpg", "tiny.png", "metadata.json"] {
        assert!(out.join(file).is_file(), "{file} missing");
    }
    let small = std::fs::read(out.join("small.jpg")).unwrap();
    assert!(small.starts_with(&[0xFF, 0xD8]));
}

#[test]
fn media_process_refuses_what_is_not_an_image_and_bad_variants() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("x.svg");
    std::fs::write(
        &svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>"#,
    )
    .unwrap();
    let output = media(&[
        svg.to_str().unwrap(),
        "--out",
        dir.path().join("o").to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(4));
    let printed: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(printed["refused"], "image-unsupported");

    let output = media(&[
        "fixtures/objects/photo.jpg",
        "--out",
        "x",
        "--variant",
        "a:0:jpeg:80",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("is not a positive whole number"));
}

fn s3_record(bucket: &str, key: &str) -> Value {
    serde_json::json!({"eventName": "ObjectCreated:Put", "eventTime": "2025-03-14T10:11:43.755Z",
        "s3": {"bucket": {"name": bucket}, "object": {"key": key, "size": 5, "eTag": "abc"}}})
}

#[test]
fn hostile_input_is_bad_input_and_the_rest_of_the_folder_replays() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("capture");
    std::fs::create_dir(&input).unwrap();
    // A path that cannot be read even by root: a symlink to nothing.
    std::os::unix::fs::symlink(dir.path().join("gone"), input.join("a-broken.json")).unwrap();
    let events = serde_json::json!({"Records": [
        s3_record("airlock-uploads", "incoming/acme/avatar/%1B%5B2J%1B%5B31mred%0D"),
        s3_record("airlock-uploads", "incoming/acme/avatar/..%2F..%2F..%2Ftrusted%2Fx"),
        s3_record("airlock-uploads", "incoming/acme/avatar/nul%00byte"),
        s3_record("someone-elses-bucket", "incoming/acme/avatar/019593fa-55c5-7dff-8690-a9c144e7cf0f"),
        s3_record("airlock-uploads", "incoming/acme/avatar/019593fa-55c5-7dff-8690-a9c144e7cf0f"),
    ]});
    std::fs::write(input.join("b-events.json"), events.to_string()).unwrap();
    std::fs::write(
        input.join("c-trusted-case.json"),
        r#"{"description": "x", "key": "trusted/acme/avatar/x", "object": {"generate": "bytes", "size": 3}}"#,
    )
    .unwrap();
    std::fs::write(
        input.join("d-huge-case.json"),
        r#"{"description": "x", "key": "incoming/a/b/c", "object": {"generate": "bytes", "size": 1099511627776}}"#,
    )
    .unwrap();
    let output = replay(&dir.path().join("data"), &[input.to_str().unwrap()]);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    // Bad input does not change the status, as for a malformed record.
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("a-broken.json: error: cannot read")
            && stdout.contains("No such file or directory (os error 2)"),
        "{stdout}"
    );
    assert!(
        stdout.contains(r"refused key ") && stdout.contains(r"\u{1b}[2J\u{1b}[31mred\r"),
        "{stdout}"
    );
    assert!(stdout.contains(r"nul\0byte"), "{stdout}");
    assert!(stdout.contains("'..' path segment"), "{stdout}");
    assert!(
        stdout.contains(r#"bucket "someone-elses-bucket" is not the bucket replayed here"#),
        "{stdout}"
    );
    assert!(
        stdout
            .contains(r#"c-trusted-case.json: key "trusted/acme/avatar/x" is not under incoming/"#),
        "{stdout}"
    );
    assert!(
        stdout.contains("object.size: 1099511627776 bytes is more than a case may generate"),
        "{stdout}"
    );
    assert!(
        !stdout.contains('\u{1b}') && !stdout.contains('\0') && !stdout.contains('\r'),
        "control characters printed raw:\n{stdout:?}"
    );
    let summary = stderr.lines().last().unwrap();
    assert!(
        summary.starts_with("1 objects: 0 trusted, 0 quarantined, 1 skipped, 0 failed"),
        "{summary}"
    );
    assert!(summary.contains("7 bad input"), "{summary}");
}

#[test]
fn an_event_repeated_after_its_execution_finished_is_a_skipped_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let record = s3_record(
        "airlock-uploads",
        "incoming/acme/avatar/019593fa-55c5-7dff-8690-a9c144e7cf0f",
    );
    let capture = dir.path().join("twice.json");
    std::fs::write(
        &capture,
        serde_json::json!({"Records": [record, record]}).to_string(),
    )
    .unwrap();
    // One at a time, so the first execution has finished (and been forgotten but for its
    // name) when the second event arrives.
    let output = replay(
        &dir.path().join("data"),
        &["--concurrency", "1", "--json", capture.to_str().unwrap()],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let results: Value = serde_json::from_slice(&output.stdout).unwrap();
    let results = results.as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["result"]["duplicate"], false);
    assert!(results[0]["result"]["history"].is_array());
    assert_eq!(results[1]["result"]["duplicate"], true, "{}", results[1]);
    assert_eq!(
        results[1]["result"]["settlement"]["detail"],
        "a duplicate event: its execution already ran"
    );
    assert_eq!(
        results[0]["result"]["executionName"],
        results[1]["result"]["executionName"]
    );
}

#[test]
fn the_emulator_target_refuses_captured_events_by_name_before_starting_anything() {
    let data = tempfile::tempdir().unwrap();
    let out = replay(
        data.path(),
        &[
            "--target",
            "emulator",
            "fixtures/events/eventbridge-object-created.json",
        ],
    );
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("eventbridge-object-created.json is an event, not a case")
            && stderr.contains("--target local"),
        "{stderr}"
    );
}
