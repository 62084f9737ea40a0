//! The definitions clamd reports (version and build time of its daily database) and
//! `RELOAD`, against a real clamd whose database is the project's test signatures in an
//! unsigned `daily.cud` container.

use std::io::Cursor;
use std::path::Path;
use std::time::Duration;

use airlock_clamd::{ManagedClamd, canary, database};
use airlock_core::definitions::Definitions;
use airlock_core::ports::{ScanVerdict, Scanner};
use chrono::{DateTime, Utc};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/clamav");

/// Writes `daily.cud` holding the test signatures, as version `version` built at `built_at`.
fn write_daily(dir: &Path, version: u32, built_at: DateTime<Utc>) {
    let ndb = std::fs::read(Path::new(FIXTURES).join("airlock-test.ndb")).unwrap();
    let container =
        database::unsigned_container("daily", version, built_at, &[("daily.ndb", ndb.as_slice())]);
    // Replaced whole, as a mirror download is: clamd never sees half a file.
    let partial = dir.join("daily.cud.partial");
    std::fs::write(&partial, container).unwrap();
    std::fs::rename(partial, dir.join("daily.cud")).unwrap();
}

fn seconds(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(at.timestamp(), 0).unwrap()
}

#[tokio::test]
async fn verdicts_carry_the_daily_database_version_and_reload_loads_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let built = seconds(Utc::now() - chrono::Duration::hours(30));
    write_daily(dir.path(), 27_001, built);
    let clamd = ManagedClamd::builder()
        .database_dir(dir.path())
        .start()
        .unwrap_or_else(|e| panic!("this test needs a real clamd: {e}"));
    let scanner = clamd.scanner();

    let report = scanner
        .scan(Box::new(Cursor::new(canary::eicar())))
        .await
        .unwrap();
    assert!(
        matches!(report.verdict, ScanVerdict::Infected { .. }),
        "{report:?}"
    );
    assert!(report.engine.ends_with("/27001"), "{}", report.engine);
    assert_eq!(
        report.definitions,
        Some(Definitions {
            version: 27_001,
            built_at: built,
        })
    );

    // A newer daily database, then RELOAD: clamd loads it in the background.
    let newer = seconds(Utc::now() - chrono::Duration::hours(1));
    write_daily(dir.path(), 27_002, newer);
    scanner.reload().await.unwrap();
    let mut loaded = None;
    for _ in 0..300 {
        let version = scanner.fetch_version().await.unwrap();
        if version.definitions.map(|d| d.version) == Some(27_002) {
            loaded = version.definitions;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        loaded,
        Some(Definitions {
            version: 27_002,
            built_at: newer,
        }),
        "clamd did not load the new daily database after RELOAD"
    );
    let report = scanner
        .scan(Box::new(Cursor::new(canary::eicar())))
        .await
        .unwrap();
    assert_eq!(report.definitions.map(|d| d.version), Some(27_002));
}

#[tokio::test]
async fn plain_signature_files_report_no_definitions() {
    let clamd = ManagedClamd::start().unwrap_or_else(|e| panic!("this test needs clamd: {e}"));
    let version = clamd.scanner().fetch_version().await.unwrap();
    assert!(version.engine.starts_with("ClamAV "), "{}", version.engine);
    assert_eq!(version.definitions, None);
}
