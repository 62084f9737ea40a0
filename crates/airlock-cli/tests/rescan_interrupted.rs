//! A rescan of trusted uploads killed midway (SIGKILL, three times, at different points)
//! and run again finishes the job with every upload handled once: each upload the new
//! signature detects is revoked exactly once in the audit trail, its trusted object removed
//! and its quarantined copy and record in place; the clean ones stay trusted; and a further
//! run changes nothing. A real clamd (started by each run) and the real binary.

mod common;

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use airlock_core::intent::{IntentOutcome, IntentState, UploadIntent};
use airlock_core::keys::{Purpose, TenantId, UploadId};
use airlock_core::ports::{IntentStore, Transition, TransitionResult};
use airlock_local::SqliteIntentStore;
use common::{command, ok, repo, snapshot, text};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// Trusted uploads: four checkpoints' worth.
const UPLOADS: usize = 400;
/// Every this many uploads holds the text the new signature detects.
const INFECTED_EVERY: usize = 8;
const DETECTED: &[u8] = b"ship the pipeline";

fn json(data_dir: &Path, args: &[&str]) -> Value {
    serde_json::from_str(&ok(&command(data_dir, args).output().unwrap())).unwrap()
}

/// `UPLOADS` READY intents with their objects in `trusted/`, as the pipeline leaves them;
/// returns the keys of those holding [`DETECTED`].
async fn seed(data_dir: &Path) -> Vec<String> {
    let bucket = data_dir.join("buckets/airlock-uploads");
    std::fs::create_dir_all(&bucket).unwrap();
    let intents = SqliteIntentStore::open(data_dir.join("intents.sqlite")).unwrap();
    let now = chrono::Utc::now();
    let mut infected = Vec::new();
    for n in 0..UPLOADS {
        let bytes = if n % INFECTED_EVERY == 3 {
            format!("minutes {n}: {}\n", text(DETECTED))
        } else {
            format!("minutes {n}: nothing to report\n")
        };
        let intent = UploadIntent {
            id: UploadId::generate(),
            tenant: TenantId::new("acme").unwrap(),
            purpose: Purpose::new("document").unwrap(),
            declared_type: "text/plain".into(),
            declared_size: bytes.len() as u64,
            sha256: None,
            filename: Some(format!("minutes-{n}.txt")),
            uploader: Some("user-1".into()),
            state: IntentState::Pending,
            created_at: now,
            updated_at: now,
            expires_at: now + chrono::Duration::minutes(15),
            outcome: None,
            multipart_upload_id: None,
        };
        assert!(intents.create(&intent).await.unwrap());
        let key = intent.key().trusted();
        let path = bucket.join(&key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &bytes).unwrap();
        for (from, to, outcome) in [
            (IntentState::Pending, IntentState::Processing, None),
            (
                IntentState::Processing,
                IntentState::Ready,
                Some(IntentOutcome {
                    key: key.clone(),
                    reason: None,
                    detail: None,
                    sha256: Some(hex::encode(Sha256::digest(bytes.as_bytes()))),
                    size: Some(bytes.len() as u64),
                    engine: Some("ClamAV".into()),
                    media: None,
                }),
            ),
        ] {
            let applied = intents
                .transition(
                    intent.id,
                    Transition {
                        from: vec![from],
                        to,
                        at: now,
                        outcome,
                        review: false,
                    },
                )
                .await
                .unwrap();
            assert!(matches!(applied, TransitionResult::Applied(_)));
        }
        if n % INFECTED_EVERY == 3 {
            infected.push(key);
        }
    }
    infected
}

/// The signatures of `fixtures/clamav` and one more that detects [`DETECTED`].
fn new_signatures(dir: &Path) -> PathBuf {
    let signatures = dir.join("signatures");
    std::fs::create_dir(&signatures).unwrap();
    for file in ["airlock-test.ndb", "airlock-test.hsb"] {
        std::fs::copy(
            repo().join("fixtures/clamav").join(file),
            signatures.join(file),
        )
        .unwrap();
    }
    std::fs::write(
        signatures.join("airlock-new.ndb"),
        format!("Airlock.Test.Minutes:0:*:{}\n", hex::encode(DETECTED)),
    )
    .unwrap();
    signatures
}

/// Starts the rescan and kills it (SIGKILL) once it has reported `after` more uploads done.
fn run_and_kill(data_dir: &Path, args: &[&str], after: usize) {
    let mut child = command(data_dir, args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut reported = 0;
    let mut seen = Vec::new();
    for line in stderr.lines() {
        let line = line.unwrap();
        if line.starts_with('[') {
            reported += 1;
        }
        seen.push(line);
        if reported == after {
            child.kill().unwrap();
            break;
        }
    }
    let status = child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "the rescan was not killed midway ({status}); it reported {reported}:\n{}",
        seen.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines)] // Reason: one job, killed, resumed, checked, rerun, in order.
async fn a_rescan_killed_midway_and_rerun_handles_every_upload_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let infected = seed(&data).await;
    assert_eq!(infected.len(), UPLOADS / INFECTED_EVERY);
    let bucket = data.join("buckets/airlock-uploads");
    let signatures = new_signatures(dir.path());
    let args = [
        "quarantine",
        "rescan",
        "--trusted",
        "--reviewer",
        "dave",
        "--why",
        "signatures updated",
        "--signatures",
        signatures.to_str().unwrap(),
    ];

    // Killed three times, each run resuming where the one before stopped.
    for after in [70, 130, 90] {
        run_and_kill(&data, &args, after);
    }
    let conn = rusqlite::Connection::open(data.join("intents.sqlite")).unwrap();
    let checkpoints: i64 = conn
        .query_row("SELECT count(*) FROM checkpoints", [], |row| row.get(0))
        .unwrap();
    assert_eq!(checkpoints, 1, "the killed runs left no checkpoint");

    // Run to the end.
    let finished = command(&data, &args).output().unwrap();
    let summary = ok(&finished);
    assert!(summary.contains("resumed after upload"), "{summary}");
    let checkpoints: i64 = conn
        .query_row("SELECT count(*) FROM checkpoints", [], |row| row.get(0))
        .unwrap();
    assert_eq!(checkpoints, 0, "a finished rescan keeps its checkpoint");

    // Every detected upload revoked once: in quarantine, out of trusted/, one audit entry.
    let revokes = json(
        &data,
        &[
            "audit", "list", "--action", "revoke", "--limit", "10000", "--json",
        ],
    );
    let revokes = revokes.as_array().unwrap();
    let mut subjects: Vec<&str> = revokes
        .iter()
        .map(|e| e["subject"].as_str().unwrap())
        .collect();
    subjects.sort_unstable();
    let distinct = subjects.len();
    subjects.dedup();
    assert_eq!(distinct, subjects.len(), "an upload was revoked twice");
    assert_eq!(subjects.len(), infected.len(), "{subjects:?}");
    let quarantined = json(
        &data,
        &[
            "quarantine",
            "list",
            "--reason",
            "infected-on-rescan",
            "--limit",
            "10000",
            "--json",
        ],
    );
    let mut originals: Vec<String> = quarantined["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            let record = &item["record"];
            assert_eq!(item["status"], "quarantined");
            assert_eq!(record["signature"], "Airlock.Test.Minutes.UNOFFICIAL");
            let key = record["quarantineKey"].as_str().unwrap();
            assert!(bucket.join(key).is_file(), "{key} is not in quarantine");
            assert!(subjects.contains(&key), "{key} has no revoke entry");
            record["originalKey"].as_str().unwrap().to_owned()
        })
        .collect();
    originals.sort();
    let mut expected = infected.clone();
    expected.sort();
    assert_eq!(originals, expected);
    for key in &infected {
        assert!(!bucket.join(key).exists(), "{key} is still trusted");
    }
    let trusted_left = snapshot(&bucket.join("trusted")).len();
    assert_eq!(trusted_left, UPLOADS - infected.len());
    let verified = ok(&command(&data, &["audit", "verify"]).output().unwrap());
    assert!(
        verified.contains(&format!("intact: {} entries", infected.len())),
        "{verified}"
    );

    // Again: nothing changes.
    let before = snapshot(&bucket);
    let again = ok(&command(&data, &args).output().unwrap());
    assert!(
        again.contains(&format!(
            "{} trusted uploads rescanned",
            UPLOADS - infected.len()
        )) && again.contains("0 revoked")
            && !again.contains("resumed"),
        "{again}"
    );
    assert_eq!(snapshot(&bucket), before);
    let verified = ok(&command(&data, &["audit", "verify"]).output().unwrap());
    assert!(
        verified.contains(&format!("intact: {} entries", infected.len())),
        "{verified}"
    );
}
