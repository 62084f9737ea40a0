//! `airlock quarantine` and `airlock audit` as a reviewer runs them, against a real local
//! store and a real clamd: fixtures are quarantined, listed, counted, released (an upload
//! quarantined while the scanner was down, once it is back), refused (infected, a type
//! mismatch), purged, exported; a rescan with a new signature revokes a trusted upload; the
//! audit trail records it all, and an edit to it is found.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use airlock_embedded::cases::{self, Case, Prepared};
use airlock_embedded::{EmbeddedPipeline, PipelineConfig, Settlement};
use common::{ok, repo, snapshot, text};
use serde_json::Value;

fn airlock(data_dir: &Path, args: &[&str]) -> Output {
    common::command(data_dir, args)
        .output()
        .expect("airlock runs")
}

fn json(output: &Output) -> Value {
    serde_json::from_str(&ok(output)).expect("JSON output")
}

fn events(data_dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(data_dir.join("events.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// Quarantines the PNG of `fixtures/cases/clean-png.json` as `scan-unavailable`: the
/// pipeline runs with a clamd that is down (nothing listens on its port).
fn quarantine_while_the_scanner_is_down(data_dir: &Path) -> String {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let down = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = down.local_addr().unwrap().to_string();
        drop(down);
        let scanner = airlock_clamd::ClamdScanner::new(airlock_clamd::ClamdConfig::new(
            address.parse().unwrap(),
        ));
        let mut config = PipelineConfig::new(
            data_dir,
            "airlock-uploads",
            Arc::new(scanner),
            Arc::new(airlock_media::ImageProcessor),
        );
        config.delay_scale = 0.0001;
        let pipeline = EmbeddedPipeline::start(config).unwrap();
        let path = repo().join("fixtures/cases/clean-png.json");
        let value: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let case = Case::from_value(&path, value).unwrap();
        let Prepared::Ready(items) = cases::prepare(
            &case,
            pipeline.store().as_ref(),
            pipeline.intents().as_ref(),
            &pipeline.config().policies,
            "airlock-uploads",
        )
        .await
        .unwrap() else {
            panic!("the case was not prepared");
        };
        let run = pipeline.process(items[0].object().unwrap()).await.unwrap();
        pipeline.shutdown().await;
        match run.settlement {
            Settlement::Quarantine { key, reason, .. } => {
                assert_eq!(reason.code(), "scan-unavailable");
                key
            }
            other => panic!("not quarantined: {other:?}"),
        }
    })
}

fn key_of(list: &Value, reason: &str) -> String {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item["record"]["reason"] == reason)
        .unwrap_or_else(|| panic!("no {reason} item in {list:#}"))["record"]["quarantineKey"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
#[allow(clippy::too_many_lines)] // Reason: one reviewer's session, in order.
fn a_reviewer_lists_releases_refuses_purges_exports_and_rescans() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let png_key = quarantine_while_the_scanner_is_down(&data);
    let replay = airlock(
        &data,
        &[
            "replay",
            "--delay-scale",
            "0.001",
            "fixtures/cases/eicar.json",
            "fixtures/cases/type-mismatch.json",
            "fixtures/cases/clean-text.json",
        ],
    );
    ok(&replay);
    let bucket = data.join("buckets/airlock-uploads");

    // The list, filters and counts.
    let list = json(&airlock(&data, &["quarantine", "list", "--json"]));
    assert_eq!(list["items"].as_array().unwrap().len(), 3, "{list:#}");
    let eicar_key = key_of(&list, "infected");
    let mismatch_key = key_of(&list, "type-mismatch");
    assert_eq!(key_of(&list, "scan-unavailable"), png_key);
    let infected = json(&airlock(
        &data,
        &[
            "quarantine",
            "list",
            "--reason",
            "infected",
            "--tenant",
            "umbrella",
            "--json",
        ],
    ));
    let infected: Vec<_> = infected["items"].as_array().unwrap().iter().collect();
    assert_eq!(infected.len(), 1);
    assert_eq!(
        infected[0]["record"]["signature"],
        "Airlock.Test.EICAR.UNOFFICIAL"
    );
    let paged = json(&airlock(
        &data,
        &["quarantine", "list", "--limit", "2", "--json"],
    ));
    let cursor = paged["next"].as_str().expect("a second page").to_owned();
    let rest = json(&airlock(
        &data,
        &["quarantine", "list", "--after", &cursor, "--json"],
    ));
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    let stats = json(&airlock(&data, &["quarantine", "stats", "--json"]));
    assert_eq!(stats["total"], 3);
    assert_eq!(stats["byReason"].as_array().unwrap().len(), 3);
    let table = ok(&airlock(&data, &["quarantine", "list"]));
    assert!(
        table.contains("QUARANTINED") && table.contains(&eicar_key),
        "{table}"
    );
    assert_eq!(
        airlock(&data, &["quarantine", "list", "--reason", "no-such-reason"])
            .status
            .code(),
        Some(2)
    );

    // One item, its bytes as a hex dump.
    let show = ok(&airlock(&data, &["quarantine", "show", &eicar_key]));
    assert!(
        show.contains("infected") && show.contains("FIRST"),
        "{show}"
    );
    assert!(show.contains("|X5O!P%@AP[4"), "{show}");
    assert_eq!(
        airlock(&data, &["quarantine", "show", "quarantine/nope"])
            .status
            .code(),
        Some(4)
    );

    // Releases that must be refused, and why.
    let no_reason = airlock(
        &data,
        &["quarantine", "release", &png_key, "--reviewer", "alice"],
    );
    assert_eq!(
        no_reason.status.code(),
        Some(3),
        "{}",
        text(&no_reason.stderr)
    );
    assert!(text(&no_reason.stderr).contains("--why"));
    let nobody = airlock(
        &data,
        &["quarantine", "release", &png_key, "--why", "scanner back"],
    );
    assert_eq!(nobody.status.code(), Some(3));
    assert!(text(&nobody.stderr).contains("AIRLOCK_REVIEWER"));
    let mismatch = airlock(
        &data,
        &[
            "quarantine",
            "release",
            &mismatch_key,
            "--reviewer",
            "alice",
            "--why",
            "looks fine",
        ],
    );
    assert_eq!(
        mismatch.status.code(),
        Some(3),
        "{}",
        text(&mismatch.stderr)
    );
    assert!(
        text(&mismatch.stderr).contains("type-mismatch"),
        "{}",
        text(&mismatch.stderr)
    );
    let eicar = airlock(
        &data,
        &[
            "quarantine",
            "release",
            &eicar_key,
            "--reviewer",
            "alice",
            "--why",
            "false positive?",
        ],
    );
    assert_eq!(eicar.status.code(), Some(3), "{}", text(&eicar.stderr));
    assert!(
        text(&eicar.stderr).contains("judged again as infected"),
        "{}",
        text(&eicar.stderr)
    );
    assert!(
        bucket.join(&eicar_key).is_file(),
        "a refused release moved nothing"
    );

    // The scanner is back: the upload quarantined while it was down is released, sanitized.
    let released = ok(&airlock(
        &data,
        &[
            "quarantine",
            "release",
            &png_key,
            "--reviewer",
            "alice",
            "--why",
            "clamd was down",
        ],
    ));
    assert!(
        released.contains("released to trusted/acme/avatar/"),
        "{released}"
    );
    let trusted = png_key.replacen("quarantine/", "trusted/", 1);
    assert!(bucket.join(&trusted).is_file());
    assert!(
        bucket.join(format!("{trusted}.json")).is_file(),
        "image metadata promoted"
    );
    assert!(!bucket.join(&png_key).exists(), "left quarantine");
    assert!(
        bucket.join(format!("{png_key}.json")).is_file(),
        "the record stays"
    );
    let original = std::fs::read(repo().join("fixtures/objects/badge.png")).unwrap();
    assert_ne!(
        std::fs::read(bucket.join(&trusted)).unwrap(),
        original,
        "never promoted raw"
    );
    let id = png_key.rsplit('/').next().unwrap();
    assert!(
        events(&data)
            .iter()
            .any(|e| e["type"] == "upload.ready" && e["uploadId"] == id),
        "upload.ready published"
    );
    let show = json(&airlock(&data, &["quarantine", "show", &png_key, "--json"]));
    assert_eq!(show["item"]["status"], "released");
    assert_eq!(show["intent"]["state"], "READY");
    let history: Vec<_> = show["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["to"].as_str().unwrap())
        .collect();
    assert_eq!(history.last(), Some(&"READY"));
    assert_eq!(show["audit"][0]["action"], "release");
    assert_eq!(show["audit"][0]["actor"], "alice");

    // Purge keeps the record and a tombstone; purging again changes nothing.
    let purged = ok(&airlock(
        &data,
        &[
            "quarantine",
            "purge",
            &eicar_key,
            "--reviewer",
            "bob",
            "--why",
            "known test file",
        ],
    ));
    assert!(purged.contains("purged;"), "{purged}");
    assert!(!bucket.join(&eicar_key).exists());
    assert!(bucket.join(format!("{eicar_key}.json")).is_file());
    let tombstone: Value = serde_json::from_slice(
        &std::fs::read(bucket.join(format!("{eicar_key}.tombstone.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(tombstone["purgedBy"], "bob");
    assert_eq!(tombstone["reason"], "infected");
    let again = ok(&airlock(
        &data,
        &[
            "quarantine",
            "purge",
            &eicar_key,
            "--reviewer",
            "bob",
            "--why",
            "again",
        ],
    ));
    assert!(again.contains("purged before"), "{again}");
    let release_purged = airlock(
        &data,
        &[
            "quarantine",
            "release",
            &eicar_key,
            "--reviewer",
            "alice",
            "--why",
            "x",
        ],
    );
    assert_eq!(release_purged.status.code(), Some(3));

    // Export: an encrypted zip, readable with the conventional password.
    let zip = dir.path().join("sample.zip");
    ok(&airlock(
        &data,
        &[
            "quarantine",
            "export",
            &mismatch_key,
            "--out",
            zip.to_str().unwrap(),
            "--reviewer",
            "carol",
            "--why",
            "for the malware lab",
        ],
    ));
    if let Ok(listing) = Command::new("unzip")
        .args(["-P", "infected", "-t"])
        .arg(&zip)
        .output()
    {
        assert!(listing.status.success(), "{}", text(&listing.stdout));
        assert!(text(&listing.stdout).contains("record.json"));
    }

    // New signatures: a trusted upload they detect is revoked.
    let signatures = dir.path().join("signatures");
    std::fs::create_dir(&signatures).unwrap();
    for file in ["airlock-test.ndb", "airlock-test.hsb"] {
        std::fs::copy(
            repo().join("fixtures/clamav").join(file),
            signatures.join(file),
        )
        .unwrap();
    }
    let meeting = hex_of(b"ship the pipeline");
    std::fs::write(
        signatures.join("airlock-new.ndb"),
        format!("Airlock.Test.NewNotes:0:*:{meeting}\n"),
    )
    .unwrap();
    let rescan_args = [
        "quarantine",
        "rescan",
        "--trusted",
        "--since",
        "2020-01-01",
        "--reviewer",
        "dave",
        "--why",
        "signatures updated",
        "--signatures",
        signatures.to_str().unwrap(),
    ];
    let rescan = airlock(&data, &rescan_args);
    let summary = ok(&rescan);
    assert!(
        summary.contains("2 trusted uploads rescanned"),
        "{summary}{}",
        text(&rescan.stderr)
    );
    assert!(summary.contains("1 revoked"), "{summary}");
    let notes = "globex/document/01937a3b-4370-70de-a013-1a2b3c4e179a";
    assert!(!bucket.join(format!("trusted/{notes}")).exists());
    let revoked = json(&airlock(
        &data,
        &[
            "quarantine",
            "list",
            "--reason",
            "infected-on-rescan",
            "--json",
        ],
    ));
    let revoked = &revoked["items"][0]["record"];
    assert_eq!(revoked["signature"], "Airlock.Test.NewNotes.UNOFFICIAL");
    assert_eq!(revoked["originalKey"], format!("trusted/{notes}"));
    assert!(
        bucket
            .join(revoked["quarantineKey"].as_str().unwrap())
            .is_file()
    );
    assert!(events(&data).iter().any(|e| e["type"] == "upload.revoked"
        && e["uploadId"] == "01937a3b-4370-70de-a013-1a2b3c4e179a"));

    // Again: nothing changes.
    let before = (snapshot(&bucket), events(&data).len());
    let second = ok(&airlock(&data, &rescan_args));
    assert!(second.contains("0 revoked"), "{second}");
    assert_eq!((snapshot(&bucket), events(&data).len()), before);

    // The audit trail has every action, and verifies; an edit is named.
    let audit = json(&airlock(&data, &["audit", "list", "--json"]));
    let actions: Vec<_> = audit
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["release-refused", "release", "purge", "export", "revoke"]
    );
    let verified = ok(&airlock(&data, &["audit", "verify"]));
    assert!(verified.contains("intact: 5 entries"), "{verified}");
    let conn = rusqlite::Connection::open(data.join("intents.sqlite")).unwrap();
    conn.execute(
        "UPDATE audit_trail SET body = replace(body, '\"bob\"', '\"mallory\"') WHERE seq = 3",
        [],
    )
    .unwrap();
    drop(conn);
    let broken = airlock(&data, &["audit", "verify"]);
    assert_eq!(broken.status.code(), Some(5), "{}", text(&broken.stdout));
    assert!(
        text(&broken.stdout).contains("broken at entry 3"),
        "{}",
        text(&broken.stdout)
    );
}

fn hex_of(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut hex, b| {
        let _ = write!(hex, "{b:02x}");
        hex
    })
}
