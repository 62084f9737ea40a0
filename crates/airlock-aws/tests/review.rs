//! Quarantine review on the AWS adapters against the emulator: the quarantine index fed
//! from the records in the bucket (`DynamoQuarantineIndex`), the audit trail
//! (`DynamoAuditTrail`), the trusted uploads and checkpoints of `DynamoIntentStore`, and
//! a core review action (purge) through them.

mod common;

use std::collections::HashMap;

use airlock_aws::{
    DynamoAuditTrail, DynamoIntentStore, DynamoQuarantineIndex, EventBridgeSink, Indexed,
    RebuildReport, S3Store,
};
use airlock_core::intent::{IntentState, UploadIntent};
use airlock_core::keys::{Purpose, TenantId, UploadId, UploadKey};
use airlock_core::object::ObjectRef;
use airlock_core::ports::{
    IntentStore, ObjectReader, ObjectWriter, SystemClock, Transition, TransitionResult, WriteMode,
};
use airlock_core::review::{
    AuditAction, AuditCheck, AuditFilter, AuditRecord, AuditTrail, Checkpoints, GENESIS_HASH,
    PageRequest, QuarantineFilter, QuarantineIndex, QuarantineItem, QuarantineStatus, Review,
    TrustedFilter, TrustedUploads, describe, purge, tombstone_key,
};
use airlock_core::stages::{QuarantineRecord, QuarantineRequest, Stage, quarantine};
use airlock_core::verdict::{ReasonCode, Rejection};
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Duration, DurationRound, Utc};
use common::Moto;

const BUCKET: &str = "airlock-uploads";
const TABLE: &str = "airlock-intents";

struct World {
    moto: Moto,
    store: S3Store,
    intents: DynamoIntentStore,
    index: DynamoQuarantineIndex,
    audit: DynamoAuditTrail,
}

async fn world_on(moto: Moto) -> World {
    moto.bucket(BUCKET, true).await;
    let intents = DynamoIntentStore::new(moto.dynamodb(), TABLE);
    intents.create_table().await.unwrap();
    let store = S3Store::new(moto.s3(), BUCKET);
    World {
        index: DynamoQuarantineIndex::new(intents.clone(), store.clone()),
        audit: DynamoAuditTrail::new(moto.dynamodb(), TABLE),
        store,
        intents,
        moto,
    }
}

async fn world() -> World {
    world_on(Moto::start().await).await
}

fn base_time() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2025-03-01T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

struct Spec {
    tenant: &'static str,
    purpose: &'static str,
    reason: ReasonCode,
    signature: Option<&'static str>,
    uploader: &'static str,
    minutes: i64,
}

fn record_of(spec: &Spec) -> QuarantineRecord {
    let upload = UploadKey::new(
        TenantId::new(spec.tenant).unwrap(),
        Purpose::new(spec.purpose).unwrap(),
        UploadId::generate(),
    );
    QuarantineRecord {
        reason: spec.reason,
        detail: format!("{} found", spec.reason),
        signature: spec.signature.map(str::to_owned),
        stage: Stage::Scan,
        sha256: "ab".repeat(32),
        size: 5,
        bucket: BUCKET.into(),
        original_key: upload.incoming(),
        quarantine_key: upload.quarantine(),
        tenant: Some(spec.tenant.into()),
        purpose: Some(spec.purpose.into()),
        intent_id: Some(upload.upload_id.to_string()),
        uploader: Some(spec.uploader.into()),
        filename: Some("file.bin".into()),
        declared_type: Some("application/pdf".into()),
        declared_size: Some(5),
        engine: Some("ClamAV".into()),
        definitions: None,
        uploaded_at: None,
        quarantined_at: base_time() + Duration::minutes(spec.minutes),
    }
}

/// Writes the object and its record as the quarantine stage places them; the record's key.
async fn place(store: &S3Store, record: &QuarantineRecord) -> String {
    store
        .put(
            &record.quarantine_key,
            b"bytes".to_vec(),
            "application/octet-stream",
            WriteMode::CreateOnly,
        )
        .await
        .unwrap();
    let record_key = format!("{}.json", record.quarantine_key);
    store
        .put(
            &record_key,
            serde_json::to_vec(record).unwrap(),
            "application/json",
            WriteMode::CreateOnly,
        )
        .await
        .unwrap();
    record_key
}

fn specs() -> Vec<Spec> {
    use ReasonCode::{Infected, ScanUnavailable, TypeMismatch};
    let spec = |tenant, purpose, reason, signature, uploader, minutes| Spec {
        tenant,
        purpose,
        reason,
        signature,
        uploader,
        minutes,
    };
    vec![
        spec(
            "acme",
            "avatar",
            Infected,
            Some("Eicar-Test-Signature"),
            "u1",
            0,
        ),
        spec("acme", "document", TypeMismatch, None, "u2", 5),
        spec("globex", "avatar", Infected, Some("Win.Trojan.X"), "u1", 10),
        spec("acme", "avatar", ScanUnavailable, None, "u3", 15),
        spec(
            "globex",
            "document",
            Infected,
            Some("Eicar-Test-Signature"),
            "u2",
            20,
        ),
        spec(
            "acme",
            "document",
            Infected,
            Some("Eicar-Test-Signature"),
            "u1",
            25,
        ),
        spec("globex", "avatar", TypeMismatch, None, "u3", 30),
        spec("acme", "avatar", Infected, Some("Win.Trojan.X"), "u2", 35),
        // Two at the same time: the key orders them.
        spec("acme", "document", ScanUnavailable, None, "u1", 40),
        spec("globex", "document", ScanUnavailable, None, "u1", 40),
        spec("acme", "avatar", TypeMismatch, None, "u2", 45),
        spec(
            "globex",
            "avatar",
            Infected,
            Some("Eicar-Test-Signature"),
            "u3",
            50,
        ),
    ]
}

/// Every page of `filter`, `limit` at a time; each page's keys.
async fn pages(
    index: &DynamoQuarantineIndex,
    filter: &QuarantineFilter,
    limit: usize,
) -> Vec<Vec<String>> {
    let mut page = PageRequest::first(limit);
    let mut pages = Vec::new();
    loop {
        let listed = index.list(filter, &page).await.unwrap();
        assert!(listed.items.len() <= limit, "a page longer than its limit");
        pages.push(listed.items.iter().map(|i| i.key().to_owned()).collect());
        match listed.next {
            Some(next) => page.after = Some(next),
            None => return pages,
        }
        assert!(pages.len() < 100, "paging does not end");
    }
}

/// Newest first, by time then key, as the port promises.
fn newest_first(items: &[QuarantineItem], filter: &QuarantineFilter) -> Vec<String> {
    let mut chosen: Vec<&QuarantineItem> = items.iter().filter(|i| filter.matches(i)).collect();
    chosen.sort_by(|a, b| {
        (b.record.quarantined_at, b.key()).cmp(&(a.record.quarantined_at, a.key()))
    });
    chosen.iter().map(|i| i.key().to_owned()).collect()
}

#[tokio::test]
#[allow(
    clippy::too_many_lines,
    reason = "one index, filled once, queried every way"
)]
async fn records_are_indexed_and_listed_newest_first_with_every_filter_and_page() {
    let w = world().await;
    let records: Vec<QuarantineRecord> = specs().iter().map(record_of).collect();
    let mut record_keys = Vec::new();
    for record in &records {
        record_keys.push(place(&w.store, record).await);
    }
    // Half arrive through the records' creation events, the rest by a rebuild.
    for key in &record_keys[..6] {
        assert_eq!(
            w.index.index_record(key).await.unwrap(),
            Indexed::Added(QuarantineStatus::Quarantined)
        );
    }
    assert_eq!(
        w.index.index_record(&record_keys[0]).await.unwrap(),
        Indexed::Known
    );
    // What is not a record: the object, a tombstone, a JSON that names another key.
    assert_eq!(
        w.index
            .index_record(&records[0].quarantine_key)
            .await
            .unwrap(),
        Indexed::NotARecord
    );
    let stray = "quarantine/acme/avatar/stray.json";
    w.store
        .put(
            stray,
            serde_json::to_vec(&records[1]).unwrap(),
            "application/json",
            WriteMode::CreateOnly,
        )
        .await
        .unwrap();
    assert_eq!(
        w.index.index_record(stray).await.unwrap(),
        Indexed::NotARecord
    );
    assert_eq!(
        w.index
            .index_record("quarantine/acme/avatar/gone.json")
            .await
            .unwrap(),
        Indexed::NotARecord
    );
    let report = w.index.rebuild().await.unwrap();
    // The stray JSON is listed as a record name, and not indexed.
    assert_eq!(
        report,
        RebuildReport {
            records: 13,
            added: 6
        }
    );
    assert_eq!(w.index.rebuild().await.unwrap().added, 0);

    let mut all = Vec::new();
    for record in &records {
        let item = w.index.get(&record.quarantine_key).await.unwrap().unwrap();
        assert_eq!(&item.record, record);
        assert_eq!(item.status, QuarantineStatus::Quarantined);
        all.push(item);
    }
    assert!(
        w.index
            .get("quarantine/acme/avatar/none")
            .await
            .unwrap()
            .is_none()
    );

    let at = |minutes| Some(base_time() + Duration::minutes(minutes));
    let filters = [
        QuarantineFilter::default(),
        QuarantineFilter {
            tenant: Some("acme".into()),
            ..Default::default()
        },
        QuarantineFilter {
            tenant: Some("initech".into()),
            ..Default::default()
        },
        QuarantineFilter {
            purpose: Some("document".into()),
            ..Default::default()
        },
        QuarantineFilter {
            reasons: vec![ReasonCode::Infected],
            ..Default::default()
        },
        QuarantineFilter {
            reasons: vec![ReasonCode::TypeMismatch, ReasonCode::ScanUnavailable],
            ..Default::default()
        },
        QuarantineFilter {
            signature: Some("Eicar-Test-Signature".into()),
            ..Default::default()
        },
        QuarantineFilter {
            uploader: Some("u1".into()),
            ..Default::default()
        },
        // Since inclusive, until exclusive.
        QuarantineFilter {
            since: at(10),
            until: at(40),
            ..Default::default()
        },
        QuarantineFilter {
            since: at(40),
            ..Default::default()
        },
        QuarantineFilter {
            until: at(10),
            ..Default::default()
        },
        QuarantineFilter {
            since: at(20),
            until: at(20),
            ..Default::default()
        },
        QuarantineFilter {
            tenant: Some("globex".into()),
            reasons: vec![ReasonCode::Infected],
            since: at(10),
            until: at(50),
            ..Default::default()
        },
        QuarantineFilter {
            tenant: Some("acme".into()),
            purpose: Some("avatar".into()),
            uploader: Some("u2".into()),
            ..Default::default()
        },
    ];
    for filter in &filters {
        let expected = newest_first(&all, filter);
        for limit in [1, 2, 5, 50] {
            let pages = pages(&w.index, filter, limit).await;
            let listed: Vec<String> = pages.concat();
            assert_eq!(listed, expected, "filter {filter:?}, limit {limit}");
            // Only the last page may be short, and it is never empty unless all are.
            for page in &pages[..pages.len() - 1] {
                assert_eq!(page.len(), limit, "filter {filter:?}, limit {limit}");
            }
        }
    }
    // Nothing shared on the way: the full listing is all twelve.
    assert_eq!(newest_first(&all, &QuarantineFilter::default()).len(), 12);
    let first = w
        .index
        .list(&QuarantineFilter::default(), &PageRequest::first(3))
        .await
        .unwrap();
    assert_eq!(
        first.items[0].record.quarantined_at,
        base_time() + Duration::minutes(50)
    );
    let bad = PageRequest {
        limit: 3,
        after: Some("not a cursor".into()),
    };
    assert!(
        w.index
            .list(&QuarantineFilter::default(), &bad)
            .await
            .is_err()
    );

    // Counts: of everything, and of what a filter selects.
    let counts = w.index.counts(&QuarantineFilter::default()).await.unwrap();
    assert_eq!(counts.total, 12);
    let count_of = |counts: &[airlock_core::review::Count], value: &str| {
        counts
            .iter()
            .find(|c| c.value == value)
            .map_or(0, |c| c.count)
    };
    assert_eq!(count_of(&counts.by_reason, "infected"), 6);
    assert_eq!(count_of(&counts.by_reason, "type-mismatch"), 3);
    assert_eq!(count_of(&counts.by_reason, "scan-unavailable"), 3);
    assert_eq!(counts.by_reason[0].value, "infected");
    assert_eq!(count_of(&counts.by_signature, "-"), 6);
    assert_eq!(count_of(&counts.by_signature, "Eicar-Test-Signature"), 4);
    assert_eq!(count_of(&counts.by_tenant, "acme"), 7);
    assert_eq!(count_of(&counts.by_tenant, "globex"), 5);
    assert_eq!(count_of(&counts.by_status, "quarantined"), 12);
    let globex_infected = QuarantineFilter {
        tenant: Some("globex".into()),
        reasons: vec![ReasonCode::Infected],
        ..Default::default()
    };
    let counts = w.index.counts(&globex_infected).await.unwrap();
    assert_eq!(counts.total, 3);
    assert_eq!(count_of(&counts.by_signature, "Eicar-Test-Signature"), 2);
    assert_eq!(count_of(&counts.by_signature, "Win.Trojan.X"), 1);

    // A review's status change: filtered and counted by it.
    let purged = &records[4].quarantine_key;
    let when = Utc::now()
        .duration_trunc(Duration::microseconds(1))
        .unwrap();
    w.index
        .set_status(purged, QuarantineStatus::Purged, when)
        .await
        .unwrap();
    let item = w.index.get(purged).await.unwrap().unwrap();
    assert_eq!(
        (item.status, item.status_at),
        (QuarantineStatus::Purged, Some(when))
    );
    let only_purged = QuarantineFilter {
        status: Some(QuarantineStatus::Purged),
        ..Default::default()
    };
    assert_eq!(
        pages(&w.index, &only_purged, 5).await.concat(),
        std::slice::from_ref(purged)
    );
    let counts = w.index.counts(&QuarantineFilter::default()).await.unwrap();
    assert_eq!(count_of(&counts.by_status, "quarantined"), 11);
    assert_eq!(count_of(&counts.by_status, "purged"), 1);
    // Indexed again (a redelivered event), it keeps the review's status.
    assert_eq!(
        w.index.index_record(&record_keys[4]).await.unwrap(),
        Indexed::Known
    );
    assert_eq!(
        w.index.get(purged).await.unwrap().unwrap().status,
        QuarantineStatus::Purged
    );
    let err = w
        .index
        .set_status(
            "quarantine/acme/avatar/none",
            QuarantineStatus::Purged,
            when,
        )
        .await
        .unwrap_err();
    assert!(
        err.message.contains("not in the quarantine index"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn a_record_indexed_late_takes_the_status_the_bucket_shows() {
    let w = world().await;
    let specs = specs();
    let released = record_of(&specs[0]);
    let purged = record_of(&specs[1]);
    let released_key = place(&w.store, &released).await;
    let purged_key = place(&w.store, &purged).await;
    w.store
        .delete(&released.quarantine_key, None)
        .await
        .unwrap();
    w.store.delete(&purged.quarantine_key, None).await.unwrap();
    let purged_at = base_time() + Duration::days(3);
    let tombstone = airlock_core::review::Tombstone {
        quarantine_key: purged.quarantine_key.clone(),
        sha256: purged.sha256.clone(),
        size: purged.size,
        reason: purged.reason,
        signature: None,
        purged_by: "alice".into(),
        why: "retention".into(),
        purged_at,
    };
    w.store
        .put(
            &tombstone_key(&purged.quarantine_key),
            serde_json::to_vec(&tombstone).unwrap(),
            "application/json",
            WriteMode::CreateOnly,
        )
        .await
        .unwrap();
    // The tombstone's own creation event is not a record.
    assert_eq!(
        w.index
            .index_record(&tombstone_key(&purged.quarantine_key))
            .await
            .unwrap(),
        Indexed::NotARecord
    );
    assert_eq!(
        w.index.index_record(&released_key).await.unwrap(),
        Indexed::Added(QuarantineStatus::Released)
    );
    assert_eq!(
        w.index.rebuild().await.unwrap(),
        RebuildReport {
            records: 2,
            added: 1
        }
    );
    let item = w.index.get(&purged.quarantine_key).await.unwrap().unwrap();
    assert_eq!(item.record_key, purged_key);
    assert_eq!(
        (item.status, item.status_at),
        (QuarantineStatus::Purged, Some(purged_at))
    );
}

/// An intent for `tenant`/`purpose`, created PENDING.
async fn create_intent(intents: &DynamoIntentStore, tenant: &str, purpose: &str) -> UploadIntent {
    let now = Utc::now()
        .duration_trunc(Duration::microseconds(1))
        .unwrap();
    let intent = UploadIntent {
        id: UploadId::generate(),
        tenant: TenantId::new(tenant).unwrap(),
        purpose: Purpose::new(purpose).unwrap(),
        declared_type: "text/plain".into(),
        declared_size: 5,
        sha256: None,
        filename: Some("notes.txt".into()),
        uploader: Some("u1".into()),
        state: IntentState::Pending,
        created_at: now,
        updated_at: now,
        expires_at: now + Duration::hours(1),
        outcome: None,
        multipart_upload_id: None,
    };
    assert!(intents.create(&intent).await.unwrap());
    intent
}

async fn change(
    intents: &DynamoIntentStore,
    id: UploadId,
    from: IntentState,
    to: IntentState,
    review: bool,
) {
    let result = intents
        .transition(
            id,
            Transition {
                from: vec![from],
                to,
                at: Utc::now(),
                outcome: None,
                review,
            },
        )
        .await
        .unwrap();
    assert!(
        matches!(result, TransitionResult::Applied(_)),
        "{from} -> {to}: {result:?}"
    );
}

#[tokio::test]
#[allow(
    clippy::too_many_lines,
    reason = "one upload from quarantine to purge, in order"
)]
async fn a_purge_goes_through_the_aws_ports_and_is_audited() {
    let w = world().await;
    let events = EventBridgeSink::new(w.moto.eventbridge(), "airlock");
    w.moto
        .eventbridge()
        .create_event_bus()
        .name("airlock")
        .send()
        .await
        .unwrap();
    let intent = create_intent(&w.intents, "acme", "document").await;
    let upload = intent.key();
    let version = w
        .store
        .put(
            &upload.incoming(),
            b"EVIL!".to_vec(),
            "text/plain",
            WriteMode::Overwrite,
        )
        .await
        .unwrap()
        .version;
    let mut rejection = Rejection::new(ReasonCode::Infected, "signature found");
    rejection.signature = Some("Eicar-Test-Signature".into());
    let placed = quarantine(
        &w.store,
        &w.intents,
        &events,
        &SystemClock,
        &QuarantineRequest {
            object: ObjectRef::new(BUCKET, upload.incoming()),
            rejection,
            stage: Stage::Scan,
            sha256: None,
            version,
        },
    )
    .await
    .unwrap();
    // What the function on the record's creation event does.
    assert_eq!(
        w.index.index_record(&placed.record_key).await.unwrap(),
        Indexed::Added(QuarantineStatus::Quarantined)
    );
    let key = placed.quarantine_key.as_str();
    let review = Review {
        store: &w.store,
        bucket: BUCKET,
        intents: &w.intents,
        quarantine: &w.index,
        audit: &w.audit,
        events: &events,
        clock: &SystemClock,
    };
    let report = purge(&review, key, "alice", "malware, no use keeping it")
        .await
        .unwrap();
    assert!(report.purged_now);
    assert!(w.store.head(key).await.unwrap().is_none());
    assert!(w.store.head(&report.tombstone_key).await.unwrap().is_some());
    assert!(w.store.head(&placed.record_key).await.unwrap().is_some());
    assert_eq!(
        w.index.get(key).await.unwrap().unwrap().status,
        QuarantineStatus::Purged
    );
    // Again: nothing changes, nothing more is audited.
    assert!(
        !purge(&review, key, "alice", "again")
            .await
            .unwrap()
            .purged_now
    );

    let detail = describe(&review, key).await.unwrap();
    assert_eq!(detail.item.status, QuarantineStatus::Purged);
    assert_eq!(
        detail.intent.as_ref().unwrap().state,
        IntentState::Quarantined
    );
    assert_eq!(
        detail
            .history
            .iter()
            .map(|c| (c.from, c.to))
            .collect::<Vec<_>>(),
        [(IntentState::Pending, IntentState::Quarantined)]
    );
    assert_eq!(detail.audit.len(), 1);
    let entry = &detail.audit[0];
    assert_eq!(
        (
            entry.seq,
            entry.record.action,
            entry.record.actor.as_str(),
            entry.record.subject.as_str()
        ),
        (1, AuditAction::Purge, "alice", key)
    );
    assert_eq!(entry.record.why, "malware, no use keeping it");
    assert_eq!(detail.tombstone.unwrap().purged_by, "alice");
    assert!(!detail.object_present);
    assert!(matches!(
        w.audit.verify().await.unwrap(),
        AuditCheck::Intact { entries: 1, .. }
    ));

    // An index rebuilt from the bucket alone finds it purged.
    let other = DynamoIntentStore::new(w.moto.dynamodb(), "rebuilt");
    other.create_table().await.unwrap();
    let rebuilt = DynamoQuarantineIndex::new(other, w.store.clone());
    assert_eq!(
        rebuilt.rebuild().await.unwrap(),
        RebuildReport {
            records: 1,
            added: 1
        }
    );
    assert_eq!(
        rebuilt.get(key).await.unwrap().unwrap().status,
        QuarantineStatus::Purged
    );
}

fn audit_record(n: u32) -> AuditRecord {
    AuditRecord {
        at: Utc::now(),
        actor: if n.is_multiple_of(2) { "alice" } else { "bob" }.into(),
        action: if n.is_multiple_of(3) {
            AuditAction::Release
        } else {
            AuditAction::Purge
        },
        subject: format!("quarantine/acme/doc/{}", n % 2),
        upload_id: (n.is_multiple_of(2)).then(|| UploadId::generate().to_string()),
        why: format!("reason {n}"),
        before: "quarantined".into(),
        after: "purged".into(),
        sha256: Some("cd".repeat(32)),
        detail: (n == 3).then(|| "with a detail".to_owned()),
    }
}

/// The raw item at `pk`, as the table holds it.
async fn raw(moto: &Moto, pk: &str) -> Option<std::collections::HashMap<String, AttributeValue>> {
    moto.raw_item(TABLE, pk).await
}

#[tokio::test]
#[allow(
    clippy::too_many_lines,
    reason = "one trail, tampered with and restored in turn"
)]
async fn the_audit_trail_chains_lists_verifies_and_names_a_tampered_entry() {
    let w = world().await;
    assert_eq!(
        w.audit.verify().await.unwrap(),
        AuditCheck::Intact {
            entries: 0,
            head: GENESIS_HASH.into()
        }
    );
    let mut appended = Vec::new();
    for n in 1..=6 {
        let entry = w.audit.append(audit_record(n)).await.unwrap();
        assert_eq!(entry.seq, u64::from(n));
        assert_eq!(entry.record, audit_record_like(&entry.record, n));
        appended.push(entry);
    }
    assert_eq!(appended[0].prev_hash, GENESIS_HASH);
    for pair in appended.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash);
    }
    assert_eq!(
        w.audit.verify().await.unwrap(),
        AuditCheck::Intact {
            entries: 6,
            head: appended[5].hash.clone()
        }
    );

    // Listings: newest first, filtered, before a number, limited; entries as appended.
    let seqs = |entries: Vec<airlock_core::review::AuditEntry>| {
        entries.iter().map(|e| e.seq).collect::<Vec<_>>()
    };
    let audit = &w.audit;
    let list = |filter: AuditFilter| async move { audit.list(&filter).await.unwrap() };
    let all = list(AuditFilter {
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(all, appended.iter().rev().cloned().collect::<Vec<_>>());
    assert_eq!(
        seqs(
            list(AuditFilter {
                limit: 2,
                ..Default::default()
            })
            .await
        ),
        [6, 5]
    );
    assert_eq!(
        seqs(
            list(AuditFilter {
                subject: Some("quarantine/acme/doc/1".into()),
                limit: 100,
                ..Default::default()
            })
            .await
        ),
        [5, 3, 1]
    );
    assert_eq!(
        seqs(
            list(AuditFilter {
                actor: Some("alice".into()),
                limit: 100,
                ..Default::default()
            })
            .await
        ),
        [6, 4, 2]
    );
    assert_eq!(
        seqs(
            list(AuditFilter {
                action: Some(AuditAction::Release),
                limit: 100,
                ..Default::default()
            })
            .await
        ),
        [6, 3]
    );
    assert_eq!(
        seqs(
            list(AuditFilter {
                before_seq: Some(5),
                actor: Some("bob".into()),
                limit: 1,
                ..Default::default()
            })
            .await
        ),
        [3]
    );
    assert_eq!(
        seqs(
            list(AuditFilter {
                subject: Some("quarantine/acme/doc/0".into()),
                before_seq: Some(6),
                limit: 100,
                ..Default::default()
            })
            .await
        ),
        [4, 2]
    );
    assert!(
        list(AuditFilter {
            limit: 0,
            ..Default::default()
        })
        .await
        .is_empty()
    );

    // An edited entry: its content no longer matches its hash.
    let third = raw(&w.moto, "AUDIT#00000000000000000003").await.unwrap();
    let mut edited = third.clone();
    edited.insert("why".into(), AttributeValue::S("nothing to see".into()));
    put_raw(&w.moto, edited).await;
    let AuditCheck::Broken { seq, problem } = w.audit.verify().await.unwrap() else {
        panic!("an edited entry verified");
    };
    assert_eq!(seq, 3);
    assert!(problem.contains("does not match its hash"), "{problem}");
    put_raw(&w.moto, third).await;
    assert!(matches!(
        w.audit.verify().await.unwrap(),
        AuditCheck::Intact { entries: 6, .. }
    ));

    // Edited and re-hashed: the next entry's link breaks.
    let fourth = raw(&w.moto, "AUDIT#00000000000000000004").await.unwrap();
    let mut forged = appended[3].clone();
    forged.record.actor = "mallory".into();
    forged.hash = airlock_core::review::AuditEntry::hash_of(4, &forged.prev_hash, &forged.record);
    let mut rehashed = fourth.clone();
    rehashed.insert("actor".into(), AttributeValue::S("mallory".into()));
    rehashed.insert("hash".into(), AttributeValue::S(forged.hash));
    put_raw(&w.moto, rehashed).await;
    assert!(matches!(
        w.audit.verify().await.unwrap(),
        AuditCheck::Broken { seq: 5, .. }
    ));
    put_raw(&w.moto, fourth).await;

    // An unreadable entry is named.
    let second = raw(&w.moto, "AUDIT#00000000000000000002").await.unwrap();
    let mut garbled = second.clone();
    garbled.insert("action".into(), AttributeValue::S("erase".into()));
    put_raw(&w.moto, garbled).await;
    let AuditCheck::Broken { seq, problem } = w.audit.verify().await.unwrap() else {
        panic!("an unreadable entry verified");
    };
    assert_eq!(seq, 2);
    assert!(problem.contains("unreadable"), "{problem}");
    put_raw(&w.moto, second.clone()).await;

    // A deleted entry: the gap is named.
    delete_raw(&w.moto, "AUDIT#00000000000000000002").await;
    let AuditCheck::Broken { seq, problem } = w.audit.verify().await.unwrap() else {
        panic!("a gap verified");
    };
    assert_eq!(seq, 3);
    assert!(problem.contains("entries 2 to 2 are missing"), "{problem}");
    put_raw(&w.moto, second).await;

    // A cut tail: the head names an entry that is gone; appending refuses to chain past it.
    let sixth = raw(&w.moto, "AUDIT#00000000000000000006").await.unwrap();
    delete_raw(&w.moto, "AUDIT#00000000000000000006").await;
    let AuditCheck::Broken { seq, problem } = w.audit.verify().await.unwrap() else {
        panic!("a cut tail verified");
    };
    assert_eq!(seq, 6);
    assert!(problem.contains("entries 6 to 6 are missing"), "{problem}");
    let err = w.audit.append(audit_record(7)).await.unwrap_err();
    assert!(err.message.contains("audit entry 6"), "{}", err.message);
    put_raw(&w.moto, sixth).await;
    assert_eq!(w.audit.append(audit_record(7)).await.unwrap().seq, 7);
    assert!(matches!(
        w.audit.verify().await.unwrap(),
        AuditCheck::Intact { entries: 7, .. }
    ));
}

/// The record as the trail gave it back must be the one appended (same `n`).
fn audit_record_like(got: &AuditRecord, n: u32) -> AuditRecord {
    AuditRecord {
        at: got.at,
        upload_id: got.upload_id.clone(),
        ..audit_record(n)
    }
}

async fn put_raw(moto: &Moto, item: HashMap<String, AttributeValue>) {
    moto.dynamodb()
        .put_item()
        .table_name(TABLE)
        .set_item(Some(item))
        .send()
        .await
        .unwrap();
}

async fn delete_raw(moto: &Moto, pk: &str) {
    moto.dynamodb()
        .delete_item()
        .table_name(TABLE)
        .key("pk", AttributeValue::S(pk.to_owned()))
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn concurrent_appends_make_one_chain() {
    // One request at a time, as DynamoDB applies each conditional write atomically.
    let w = world_on(Moto::start_serial().await).await;
    let mut tasks = Vec::new();
    for writer in 0..6u32 {
        let audit = w.audit.clone();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for n in 0..5u32 {
                seqs.push(
                    audit
                        .append(audit_record(writer * 10 + n))
                        .await
                        .unwrap()
                        .seq,
                );
            }
            seqs
        }));
    }
    let mut seqs = Vec::new();
    for task in tasks {
        seqs.extend(task.await.unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=30).collect::<Vec<u64>>());
    let AuditCheck::Intact { entries, head } = w.audit.verify().await.unwrap() else {
        panic!("concurrent appends forked the chain");
    };
    assert_eq!(entries, 30);
    let newest = w
        .audit
        .list(&AuditFilter {
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(newest[0].hash, head);
}

#[tokio::test]
#[allow(
    clippy::too_many_lines,
    reason = "one set of intents, listed every way"
)]
async fn trusted_uploads_are_listed_by_id_and_a_listing_resumes_after_a_position() {
    let w = world().await;
    let mut ready = Vec::new();
    for (tenant, purpose) in [
        ("acme", "avatar"),
        ("acme", "document"),
        ("globex", "avatar"),
        ("acme", "avatar"),
        ("globex", "document"),
    ] {
        let intent = create_intent(&w.intents, tenant, purpose).await;
        change(
            &w.intents,
            intent.id,
            IntentState::Pending,
            IntentState::Processing,
            false,
        )
        .await;
        change(
            &w.intents,
            intent.id,
            IntentState::Processing,
            IntentState::Ready,
            false,
        )
        .await;
        ready.push(intent);
    }
    // Not trusted: pending, quarantined.
    let pending = create_intent(&w.intents, "acme", "avatar").await;
    let quarantined = create_intent(&w.intents, "acme", "avatar").await;
    change(
        &w.intents,
        quarantined.id,
        IntentState::Pending,
        IntentState::Quarantined,
        false,
    )
    .await;

    let ids = |intents: &[UploadIntent]| intents.iter().map(|i| i.id).collect::<Vec<_>>();
    let all = TrustedFilter::default();
    let mut expected = ids(&ready);
    expected.sort();
    let listed = w.intents.trusted(&all, None, 100).await.unwrap();
    assert_eq!(ids(&listed), expected);
    assert!(listed.iter().all(|i| i.state == IntentState::Ready));
    assert!(!ids(&listed).contains(&pending.id) && !ids(&listed).contains(&quarantined.id));

    // Two at a time, each batch after the last one's id: what a rescan does.
    let mut walked = Vec::new();
    let mut after = None;
    loop {
        let batch = w.intents.trusted(&all, after, 2).await.unwrap();
        let Some(last) = batch.last() else { break };
        assert!(batch.len() <= 2);
        after = Some(last.id);
        walked.extend(ids(&batch));
    }
    assert_eq!(walked, expected);
    assert_eq!(
        ids(&w
            .intents
            .trusted(&all, Some(expected[2]), 100)
            .await
            .unwrap()),
        expected[3..]
    );

    let acme_avatars = TrustedFilter {
        tenant: Some("acme".into()),
        purpose: Some("avatar".into()),
        since: None,
    };
    let mut acme_avatar_ids = vec![ready[0].id, ready[3].id];
    acme_avatar_ids.sort();
    assert_eq!(
        ids(&w.intents.trusted(&acme_avatars, None, 1).await.unwrap()),
        acme_avatar_ids[..1]
    );
    assert_eq!(
        ids(&w.intents.trusted(&acme_avatars, None, 10).await.unwrap()),
        acme_avatar_ids
    );
    let future = TrustedFilter {
        since: Some(Utc::now() + Duration::hours(1)),
        ..Default::default()
    };
    assert!(
        w.intents
            .trusted(&future, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let past = TrustedFilter {
        since: Some(Utc::now() - Duration::hours(1)),
        ..Default::default()
    };
    assert_eq!(w.intents.trusted(&past, None, 10).await.unwrap().len(), 5);

    // Settled intents are kept for review (no TTL); a revoked one is no longer trusted.
    let item = raw(&w.moto, &format!("INTENT#{}", ready[1].id))
        .await
        .unwrap();
    assert!(
        !item.contains_key("ttl"),
        "a READY intent expires: {item:?}"
    );
    assert!(
        !raw(&w.moto, &format!("INTENT#{}", quarantined.id))
            .await
            .unwrap()
            .contains_key("ttl")
    );
    assert!(
        raw(&w.moto, &format!("INTENT#{}", pending.id))
            .await
            .unwrap()
            .contains_key("ttl")
    );
    change(
        &w.intents,
        ready[1].id,
        IntentState::Ready,
        IntentState::Quarantined,
        true,
    )
    .await;
    let listed = w.intents.trusted(&all, None, 100).await.unwrap();
    assert!(!ids(&listed).contains(&ready[1].id));
    assert_eq!(listed.len(), 4);
    change(
        &w.intents,
        ready[1].id,
        IntentState::Quarantined,
        IntentState::Ready,
        true,
    )
    .await;
    assert_eq!(w.intents.trusted(&all, None, 100).await.unwrap().len(), 5);
}

#[tokio::test]
async fn checkpoints_are_saved_replaced_and_cleared_per_job() {
    let w = world().await;
    let job = "rescan-trusted tenant=* purpose=* since=*";
    assert_eq!(w.intents.load(job).await.unwrap(), None);
    w.intents.save(job, "0190-first").await.unwrap();
    w.intents.save("other job", "elsewhere").await.unwrap();
    assert_eq!(
        w.intents.load(job).await.unwrap().as_deref(),
        Some("0190-first")
    );
    w.intents.save(job, "0190-second").await.unwrap();
    assert_eq!(
        w.intents.load(job).await.unwrap().as_deref(),
        Some("0190-second")
    );
    w.intents.clear(job).await.unwrap();
    assert_eq!(w.intents.load(job).await.unwrap(), None);
    assert_eq!(
        w.intents.load("other job").await.unwrap().as_deref(),
        Some("elsewhere")
    );
    // Clearing what is not there is fine.
    w.intents.clear(job).await.unwrap();
}
