//! The local quarantine index over records written as the quarantine stage writes them.

use airlock_core::ports::{ObjectReader, ObjectWriter, WriteMode};
use airlock_core::review::{
    PageRequest, QuarantineFilter, QuarantineIndex, QuarantineStatus, SampleSink,
};
use airlock_core::stages::{QuarantineRecord, Stage};
use airlock_core::verdict::ReasonCode;
use airlock_local::{EncryptedZipFile, FsStore, LocalQuarantine, SqliteIntentStore};
use chrono::{DateTime, Duration, Utc};

struct Fixture {
    dir: tempfile::TempDir,
    store: FsStore,
    index: LocalQuarantine,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path().join("bucket")).unwrap();
    let intents = SqliteIntentStore::open(dir.path().join("intents.sqlite")).unwrap();
    let index = LocalQuarantine::open(&intents, &store).await.unwrap();
    Fixture { dir, store, index }
}

fn at(minutes: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_225_600, 0).unwrap() + Duration::minutes(minutes)
}

/// Quarantines `bytes` as the stage does: object, then its record beside it.
async fn quarantined(
    store: &FsStore,
    (tenant, purpose, n): (&str, &str, u32),
    reason: ReasonCode,
    signature: Option<&str>,
    minutes: i64,
) -> QuarantineRecord {
    let key = format!("quarantine/{tenant}/{purpose}/0193{n:04}");
    let bytes = format!("object {n}").into_bytes();
    store
        .put(
            &key,
            bytes.clone(),
            "application/octet-stream",
            WriteMode::CreateOnly,
        )
        .await
        .unwrap();
    let record = QuarantineRecord {
        reason,
        detail: format!("detail {n}"),
        signature: signature.map(str::to_owned),
        stage: Stage::Scan,
        sha256: format!("{n:064x}"),
        size: bytes.len() as u64,
        bucket: "airlock-uploads".into(),
        original_key: key.replacen("quarantine/", "incoming/", 1),
        quarantine_key: key.clone(),
        tenant: Some(tenant.into()),
        purpose: Some(purpose.into()),
        intent_id: None,
        uploader: Some(format!("user-{}", n % 3)),
        filename: Some("<img src=x onerror=alert(1)>.png".into()),
        declared_type: Some("image/png".into()),
        declared_size: Some(bytes.len() as u64),
        engine: None,
        definitions: None,
        uploaded_at: None,
        quarantined_at: at(minutes),
    };
    store
        .put(
            &format!("{key}.json"),
            serde_json::to_vec_pretty(&record).unwrap(),
            "application/json",
            WriteMode::CreateOnly,
        )
        .await
        .unwrap();
    record
}

const EICAR: Option<&str> = Some("Airlock.Test.EICAR.UNOFFICIAL");

#[tokio::test]
async fn lists_newest_first_with_filters_and_pages() {
    let f = fixture().await;
    for n in 0..10u32 {
        let (tenant, reason, signature) = match n % 3 {
            0 => ("acme", ReasonCode::Infected, EICAR),
            1 => ("acme", ReasonCode::ScanUnavailable, None),
            _ => ("globex", ReasonCode::TypeMismatch, None),
        };
        quarantined(
            &f.store,
            (tenant, "document", n),
            reason,
            signature,
            i64::from(n),
        )
        .await;
    }
    let all = f
        .index
        .list(&QuarantineFilter::default(), &PageRequest::first(100))
        .await
        .unwrap();
    assert_eq!(all.items.len(), 10);
    assert!(all.next.is_none());
    let times: Vec<_> = all.items.iter().map(|i| i.record.quarantined_at).collect();
    assert!(times.windows(2).all(|w| w[0] > w[1]), "newest first");
    assert!(
        all.items
            .iter()
            .all(|i| i.status == QuarantineStatus::Quarantined)
    );

    // Pages of 3 cover everything once, in order.
    let mut page = PageRequest::first(3);
    let mut paged = Vec::new();
    loop {
        let listed = f
            .index
            .list(&QuarantineFilter::default(), &page)
            .await
            .unwrap();
        paged.extend(listed.items.iter().map(|i| i.key().to_owned()));
        match listed.next {
            Some(next) => page.after = Some(next),
            None => break,
        }
    }
    let keys: Vec<_> = all.items.iter().map(|i| i.key().to_owned()).collect();
    assert_eq!(paged, keys);

    let acme_infected = QuarantineFilter {
        tenant: Some("acme".into()),
        reasons: vec![ReasonCode::Infected],
        ..QuarantineFilter::default()
    };
    let listed = f
        .index
        .list(&acme_infected, &PageRequest::first(100))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 4);
    assert!(listed.items.iter().all(|i| acme_infected.matches(i)));
    let by_signature = QuarantineFilter {
        signature: EICAR.map(str::to_owned),
        since: Some(at(3)),
        until: Some(at(9)),
        ..QuarantineFilter::default()
    };
    let listed = f
        .index
        .list(&by_signature, &PageRequest::first(100))
        .await
        .unwrap();
    let numbers: Vec<_> = listed
        .items
        .iter()
        .map(|i| i.record.detail.clone())
        .collect();
    assert_eq!(numbers, ["detail 6", "detail 3"]);
    let by_uploader = QuarantineFilter {
        uploader: Some("user-1".into()),
        ..QuarantineFilter::default()
    };
    assert_eq!(
        f.index
            .list(&by_uploader, &PageRequest::first(100))
            .await
            .unwrap()
            .items
            .len(),
        3
    );
}

#[tokio::test]
async fn counts_by_reason_signature_and_tenant() {
    let f = fixture().await;
    for n in 0..10u32 {
        let (tenant, reason, signature) = match n % 3 {
            0 => ("acme", ReasonCode::Infected, EICAR),
            1 => ("acme", ReasonCode::ScanUnavailable, None),
            _ => ("globex", ReasonCode::TypeMismatch, None),
        };
        quarantined(
            &f.store,
            (tenant, "document", n),
            reason,
            signature,
            i64::from(n),
        )
        .await;
    }
    let counts = f.index.counts(&QuarantineFilter::default()).await.unwrap();
    assert_eq!(counts.total, 10);
    let reasons: Vec<_> = counts
        .by_reason
        .iter()
        .map(|c| (c.value.as_str(), c.count))
        .collect();
    assert_eq!(
        reasons,
        [
            ("infected", 4),
            ("scan-unavailable", 3),
            ("type-mismatch", 3)
        ]
    );
    let tenants: Vec<_> = counts
        .by_tenant
        .iter()
        .map(|c| (c.value.as_str(), c.count))
        .collect();
    assert_eq!(tenants, [("acme", 7), ("globex", 3)]);
    assert_eq!(counts.by_signature[0].value, "-");
    assert_eq!(counts.by_signature[1].count, 4);
    let acme = f
        .index
        .counts(&QuarantineFilter {
            tenant: Some("globex".into()),
            ..QuarantineFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(acme.total, 3);
}

#[tokio::test]
async fn records_added_later_are_found_and_statuses_kept() {
    let f = fixture().await;
    let first = quarantined(
        &f.store,
        ("acme", "avatar", 1),
        ReasonCode::Infected,
        EICAR,
        1,
    )
    .await;
    assert_eq!(f.index.sync().await.unwrap(), 1);
    assert_eq!(f.index.sync().await.unwrap(), 0, "nothing new");
    // Age the folders, so the index takes them as read and skips them next time.
    let folder = f.dir.path().join("bucket/quarantine/acme/avatar");
    for path in [folder.clone(), folder.parent().unwrap().to_path_buf()] {
        std::fs::File::open(&path)
            .unwrap()
            .set_modified(std::time::SystemTime::now() - std::time::Duration::from_hours(1))
            .unwrap();
    }
    assert_eq!(f.index.sync().await.unwrap(), 0);
    assert_eq!(f.index.sync().await.unwrap(), 0);
    // A new record in an old folder, and one in a new folder.
    quarantined(
        &f.store,
        ("acme", "avatar", 2),
        ReasonCode::TooLarge,
        None,
        2,
    )
    .await;
    quarantined(
        &f.store,
        ("initech", "avatar", 3),
        ReasonCode::TooLarge,
        None,
        3,
    )
    .await;
    let listed = f
        .index
        .list(&QuarantineFilter::default(), &PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 3);

    f.index
        .set_status(&first.quarantine_key, QuarantineStatus::Purged, at(5))
        .await
        .unwrap();
    let item = f.index.get(&first.quarantine_key).await.unwrap().unwrap();
    assert_eq!(
        (item.status, item.status_at),
        (QuarantineStatus::Purged, Some(at(5)))
    );
    assert_eq!(item.record, first);
    assert!(
        f.index
            .get("quarantine/acme/avatar/nope")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        f.index
            .set_status(
                "quarantine/acme/avatar/nope",
                QuarantineStatus::Purged,
                at(5)
            )
            .await
            .is_err()
    );
    // Tombstones and other JSON beside the records are not records.
    f.store
        .put(
            &format!("{}.tombstone.json", first.quarantine_key),
            b"{}".to_vec(),
            "application/json",
            WriteMode::CreateOnly,
        )
        .await
        .unwrap();
    f.store
        .put(
            "quarantine/acme/avatar/stray.json",
            b"{\"not\":1}".to_vec(),
            "application/json",
            WriteMode::CreateOnly,
        )
        .await
        .unwrap();
    assert_eq!(f.index.sync().await.unwrap(), 0);
}

#[tokio::test]
async fn a_rebuilt_index_reads_statuses_from_the_store() {
    let f = fixture().await;
    let purged = quarantined(
        &f.store,
        ("acme", "avatar", 1),
        ReasonCode::Infected,
        EICAR,
        1,
    )
    .await;
    let released = quarantined(
        &f.store,
        ("acme", "avatar", 2),
        ReasonCode::ScanUnavailable,
        None,
        2,
    )
    .await;
    f.store
        .put(
            &format!("{}.tombstone.json", purged.quarantine_key),
            serde_json::to_vec(&airlock_core::review::Tombstone {
                quarantine_key: purged.quarantine_key.clone(),
                sha256: purged.sha256.clone(),
                size: purged.size,
                reason: purged.reason,
                signature: purged.signature.clone(),
                purged_by: "alice".into(),
                why: "retention".into(),
                purged_at: at(10),
            })
            .unwrap(),
            "application/json",
            WriteMode::CreateOnly,
        )
        .await
        .unwrap();
    f.store.delete(&purged.quarantine_key, None).await.unwrap();
    f.store
        .delete(&released.quarantine_key, None)
        .await
        .unwrap();
    let statuses = f
        .index
        .counts(&QuarantineFilter::default())
        .await
        .unwrap()
        .by_status;
    let statuses: Vec<_> = statuses
        .iter()
        .map(|c| (c.value.as_str(), c.count))
        .collect();
    assert_eq!(statuses, [("purged", 1), ("released", 1)]);
    let item = f.index.get(&purged.quarantine_key).await.unwrap().unwrap();
    assert_eq!(item.status_at, Some(at(10)));
}

#[tokio::test]
async fn an_exported_sample_is_an_encrypted_zip_with_its_record() {
    let f = fixture().await;
    let record = quarantined(
        &f.store,
        ("acme", "avatar", 7),
        ReasonCode::Infected,
        EICAR,
        1,
    )
    .await;
    let path = f.dir.path().join("sample.zip");
    let sink = EncryptedZipFile { path: path.clone() };
    let stream = f.store.open(&record.quarantine_key, None).await.unwrap();
    let written = sink.write_sample(&record, stream).await.unwrap();
    assert_eq!(written, path.display().to_string());
    // Never over an existing file.
    let again = f.store.open(&record.quarantine_key, None).await.unwrap();
    assert!(sink.write_sample(&record, again).await.is_err());

    let zip_bytes = std::fs::read(&path).unwrap();
    assert!(
        !zip_bytes.windows(8).any(|w| w == b"object 7"),
        "the sample is stored in the clear"
    );
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip_bytes)).unwrap();
    let name = format!("{}.bin", record.sha256);
    assert!(
        archive.by_name(&name).is_err(),
        "readable without the password"
    );
    let mut sample = String::new();
    std::io::Read::read_to_string(
        &mut archive.by_name_decrypt(&name, b"infected").unwrap(),
        &mut sample,
    )
    .unwrap();
    assert_eq!(sample, "object 7");
    let inside: QuarantineRecord =
        serde_json::from_reader(archive.by_name_decrypt("record.json", b"infected").unwrap())
            .unwrap();
    assert_eq!(inside, record);

    // Debian's unzip, the analysts' tool, opens it with the conventional password.
    if let Ok(output) = std::process::Command::new("unzip")
        .args(["-P", "infected", "-p"])
        .arg(&path)
        .arg(&name)
        .output()
    {
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(output.stdout, b"object 7");
    }
}

/// Sets a folder's modification time (to make it old enough to count as read).
fn set_mtime(path: &std::path::Path, at: std::time::SystemTime) {
    std::fs::File::open(path).unwrap().set_modified(at).unwrap();
}

#[tokio::test]
async fn a_new_folder_still_changing_is_listed_again_though_its_parent_is_not() {
    let Fixture { dir, store, index } = fixture().await;
    let root = dir.path().join("bucket");
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_hours(1);
    quarantined(
        &store,
        ("acme", "avatar", 1),
        ReasonCode::Infected,
        EICAR,
        1,
    )
    .await;
    for folder in ["quarantine", "quarantine/acme", "quarantine/acme/avatar"] {
        set_mtime(&root.join(folder), hour_ago);
    }
    assert_eq!(index.sync().await.unwrap(), 1);

    // A new folder: its parent changes (and, here, is old again at once); the new folder
    // itself is too recent to count as read.
    quarantined(
        &store,
        ("acme", "document", 2),
        ReasonCode::Infected,
        EICAR,
        2,
    )
    .await;
    set_mtime(
        &root.join("quarantine/acme"),
        hour_ago + std::time::Duration::from_secs(1),
    );
    assert_eq!(index.sync().await.unwrap(), 1);

    // Another record in it: its parent does not change, and it is still found.
    quarantined(
        &store,
        ("acme", "document", 3),
        ReasonCode::Infected,
        EICAR,
        3,
    )
    .await;
    assert_eq!(index.sync().await.unwrap(), 1);
    let all = index
        .list(&QuarantineFilter::default(), &PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(all.items.len(), 3);
}
