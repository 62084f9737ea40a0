//! `airlock replay --clamd` refuses, at start, a clamd that fails airlock's self-test, and
//! names the `clamd.conf` setting to fix.

use std::path::{Path, PathBuf};
use std::process::Command;

use airlock_clamd::ManagedClamd;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn replay_with(clamd: &ManagedClamd) -> (Option<i32>, String, String) {
    let data = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .current_dir(repo())
        .args(["replay", "--data-dir"])
        .arg(data.path())
        .args(["--delay-scale", "0.001", "--clamd"])
        .arg(clamd.address().to_string())
        .arg("fixtures/cases")
        .env_remove("AIRLOCK_CLAMD")
        .env("NO_COLOR", "1")
        .output()
        .expect("airlock runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_clamd_without_alert_encrypted_is_refused_at_start() {
    let clamd = ManagedClamd::builder()
        .omit_option("AlertEncrypted")
        .omit_option("AlertEncryptedArchive")
        .omit_option("AlertEncryptedDoc")
        .start()
        .expect("these tests need a real clamd");
    let (code, stdout, stderr) = replay_with(&clamd);
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("`AlertEncrypted yes`"), "{stderr}");
    // Refused before any case ran.
    assert!(!stdout.contains("clean-jpeg"), "{stdout}");
}

#[test]
fn a_well_configured_clamd_is_used() {
    let clamd = ManagedClamd::start().expect("these tests need a real clamd");
    let (code, stdout, stderr) = replay_with(&clamd);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("clean-jpeg"), "{stdout}");
}
