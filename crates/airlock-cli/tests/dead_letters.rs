//! `airlock dead-letters` as an operator runs it: an upload whose promotion fails for good
//! (trusted/ cannot be written) stays in incoming/ with a dead letter; once the cause is
//! fixed, a retry settles it and it leaves the list.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn airlock(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_airlock"))
        .current_dir(repo())
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("AIRLOCK_CLAMD")
        .env("NO_COLOR", "1")
        .output()
        .expect("airlock runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_failed_promotion_is_listed_then_retried_once_fixed() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = dir.path().join("buckets/airlock-uploads");
    std::fs::create_dir_all(&bucket).unwrap();
    // GIVEN the upload's trusted/ key cannot be written: a folder stands in its place (root
    // ignores permissions, not this)
    let blocker = bucket.join("trusted/globex/document/01937a3b-4370-70de-a013-1a2b3c4e179a");
    std::fs::create_dir_all(blocker.join("in-the-way")).unwrap();
    let replay = airlock(
        dir.path(),
        &[
            "replay",
            "--delay-scale",
            "0.001",
            "fixtures/cases/clean-text.json",
        ],
    );
    let stdout = text(&replay.stdout);
    assert!(
        stdout.contains("failed"),
        "{stdout}\n{}",
        text(&replay.stderr)
    );

    // WHEN the operator lists failed uploads
    let list = airlock(dir.path(), &["dead-letters", "list"]);
    let listed = text(&list.stdout);
    assert_eq!(
        list.status.code(),
        Some(0),
        "{listed}{}",
        text(&list.stderr)
    );
    let row = listed
        .lines()
        .find(|l| l.contains("incoming/"))
        .unwrap_or_else(|| panic!("no failed upload listed:\n{listed}"));
    assert!(row.contains("promote"), "{row}");
    assert!(row.contains("Airlock."), "{row}");
    let id = row.split_whitespace().next().unwrap().to_owned();
    let key = row
        .split_whitespace()
        .find(|w| w.starts_with("incoming/"))
        .unwrap()
        .to_owned();
    // THEN the object waits in incoming/, nothing was lost
    assert!(bucket.join(&key).is_file());

    // WHEN the cause is fixed and the upload retried
    std::fs::remove_dir_all(&blocker).unwrap();
    let retry = airlock(dir.path(), &["dead-letters", "retry", &id]);
    let retried = text(&retry.stdout);
    assert_eq!(
        retry.status.code(),
        Some(0),
        "{retried}{}",
        text(&retry.stderr)
    );
    assert!(retried.contains("trusted"), "{retried}");
    // THEN it is promoted and leaves the list
    assert!(
        bucket
            .join(key.replacen("incoming/", "trusted/", 1))
            .is_file()
    );
    assert!(!bucket.join(&key).exists());
    let list = airlock(dir.path(), &["dead-letters", "list"]);
    assert!(text(&list.stdout).contains("no failed uploads"));
}
