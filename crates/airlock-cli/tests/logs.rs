//! `airlock --log-format`: JSON log lines on stderr for log collectors, each task's lines
//! carrying its stage, key, upload id and execution; text (and quiet) by default.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

const CASES: [&str; 2] = ["fixtures/cases/eicar.json", "fixtures/cases/clean-csv.json"];

/// `airlock replay` of [`CASES`] with a clamd it starts itself, under exactly these log
/// settings (none inherited from the environment running the tests).
fn replay(args: &[&str], env: &[(&str, &str)]) -> Output {
    let data = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_airlock"));
    command
        .current_dir(repo())
        .arg("replay")
        .arg("--data-dir")
        .arg(data.path())
        .args(["--delay-scale", "0.001"])
        .args(args)
        .args(CASES)
        .env_remove("AIRLOCK_CLAMD")
        .env_remove("AIRLOCK_LOG")
        .env_remove("RUST_LOG")
        .env_remove("AIRLOCK_LOG_FORMAT")
        .env("NO_COLOR", "1");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("airlock runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The upload id a case file's key ends in (its intent id).
fn upload_id(case: &str) -> String {
    let value: Value = serde_json::from_slice(&std::fs::read(repo().join(case)).unwrap()).unwrap();
    value["intent"]["id"].as_str().unwrap().to_owned()
}

/// Checks a JSON run: every stderr line but the closing summary is a JSON object; returns them.
fn json_lines(output: &Output) -> Vec<Value> {
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    // The table on stdout is unchanged by the log format.
    assert!(stdout.lines().any(|l| l.starts_with("eicar ")), "{stdout}");
    let lines: Vec<&str> = stderr.lines().collect();
    let (summary, logs) = lines.split_last().expect("stderr has a summary");
    assert!(summary.contains("1 trusted, 1 quarantined"), "{summary}");
    logs.iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

fn assert_task_events(events: &[Value]) {
    let eicar = upload_id(CASES[0]);
    let task_events: Vec<&Value> = events
        .iter()
        .filter(|e| e["span"]["upload_id"] == eicar.as_str())
        .collect();
    let stages: Vec<&str> = task_events
        .iter()
        .filter_map(|e| e["span"]["stage"].as_str())
        .collect();
    for stage in ["scan", "quarantine"] {
        assert!(
            stages.contains(&stage),
            "no {stage} event in {task_events:?}"
        );
    }
    for event in &task_events {
        let span = &event["span"];
        assert_eq!(span["name"], "task", "{event}");
        let key = span["key"].as_str().unwrap();
        assert!(key.starts_with("incoming/umbrella/attachment/"), "{event}");
        assert!(key.ends_with(&eicar), "{event}");
        let execution = span["execution"].as_str().unwrap();
        assert!(execution.ends_with(&eicar), "{event}");
    }
    let settled: Vec<&&Value> = task_events
        .iter()
        .filter(|e| e["fields"]["message"] == "upload quarantined")
        .collect();
    assert_eq!(settled.len(), 1, "{task_events:?}");
    assert_eq!(
        settled[0]["fields"]["reason"], "infected",
        "{:?}",
        settled[0]
    );
    assert_eq!(settled[0]["level"], "INFO");
}

#[test]
fn log_format_json_writes_json_lines_carrying_each_tasks_fields() {
    let output = replay(
        &["--log-format", "json"],
        &[("RUST_LOG", "info,airlock_clamd=debug")],
    );
    assert_task_events(&json_lines(&output));
}

#[test]
fn the_log_format_can_come_from_the_environment() {
    let output = replay(
        &[],
        &[
            ("AIRLOCK_LOG_FORMAT", "json"),
            ("RUST_LOG", "info,airlock_clamd=debug"),
        ],
    );
    assert_task_events(&json_lines(&output));
}

#[test]
fn by_default_only_warnings_are_logged_so_stderr_is_the_summary() {
    let output = replay(&[], &[]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("1 trusted, 1 quarantined"), "{stderr}");
}

#[test]
fn an_unknown_log_format_or_level_is_named() {
    let output = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["--log-format", "yaml", "replay", "x"])
        .output()
        .expect("airlock runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("'yaml'"), "{stderr}");
    assert!(
        stderr.contains("text") && stderr.contains("json"),
        "{stderr}"
    );

    let output = replay(&[], &[("RUST_LOG", "airlock=loud")]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("ignoring RUST_LOG=\"airlock=loud\""),
        "{stderr}"
    );
}
