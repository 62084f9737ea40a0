//! Stages against the real local adapters, for the races a replay cannot stage on cue.

use airlock_core::definitions::FreshnessRule;
use airlock_core::intent::{IntentState, UploadIntent};
use airlock_core::keys::{Purpose, TenantId, UploadId, UploadKey};
use airlock_core::object::ObjectRef;
use airlock_core::policy::Policies;
use airlock_core::ports::{
    EventSink, EventSinkError, IntentStore, ObjectReader, ObjectVersion, ObjectWriter,
    PipelineEvent, PipelineEventKind, Retry, SystemClock, WriteMode,
};
use airlock_core::stages::{
    InspectOutcome, PromoteFacts, PromoteReport, QuarantineRecord, QuarantineReport,
    QuarantineRequest, ScanOutcome, Stage, StageError, inspect, promote, quarantine, scan,
};
use airlock_core::verdict::{ReasonCode, Rejection};
use airlock_local::{FsStore, JsonlEventSink, SqliteIntentStore};
use sha2::{Digest, Sha256};

struct World {
    _dir: tempfile::TempDir,
    store: FsStore,
    intents: SqliteIntentStore,
    events: JsonlEventSink,
    upload: UploadKey,
}

async fn world(state: IntentState) -> World {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path().join("bucket")).unwrap();
    let intents = SqliteIntentStore::in_memory().unwrap();
    let events = JsonlEventSink::open(dir.path().join("events.jsonl")).unwrap();
    let upload = UploadKey::new(
        TenantId::new("acme").unwrap(),
        Purpose::new("document").unwrap(),
        UploadId::generate(),
    );
    let now = chrono::Utc::now();
    intents
        .create(&UploadIntent {
            id: upload.upload_id,
            tenant: upload.tenant.clone(),
            purpose: upload.purpose.clone(),
            declared_type: "text/plain".into(),
            declared_size: 5,
            sha256: None,
            filename: None,
            uploader: None,
            state,
            created_at: now,
            updated_at: now,
            expires_at: now + chrono::Duration::hours(1),
            outcome: None,
            multipart_upload_id: None,
        })
        .await
        .unwrap();
    World {
        _dir: dir,
        store,
        intents,
        events,
        upload,
    }
}

async fn read(store: &FsStore, key: &str) -> Vec<u8> {
    let meta = store.head(key).await.unwrap().unwrap();
    store.read_range(key, None, 0, meta.size).await.unwrap()
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Writes `bytes` as the world's upload in incoming/; the version written.
async fn put_upload(w: &World, bytes: &[u8], content_type: &str) -> Option<ObjectVersion> {
    w.store
        .put(
            &w.upload.incoming(),
            bytes.to_vec(),
            content_type,
            WriteMode::Overwrite,
        )
        .await
        .unwrap()
        .version
}

/// Inspects the world's upload with the built-in policies.
async fn inspect_upload(w: &World) -> InspectOutcome {
    let object = ObjectRef::new("b", w.upload.incoming());
    inspect(
        &w.store,
        &w.intents,
        &Policies::builtin(),
        &SystemClock,
        &object,
    )
    .await
    .unwrap()
}

/// Promotes the world's 5-byte upload as the scan of `sha256` found it.
async fn promote_scanned(w: &World, sha256: &str) -> Result<PromoteReport, StageError> {
    promote_version(w, sha256, None).await
}

/// Promotes exactly `version` of the world's 5-byte upload as the scan of `sha256` found it.
async fn promote_version(
    w: &World,
    sha256: &str,
    version: Option<&ObjectVersion>,
) -> Result<PromoteReport, StageError> {
    promote(
        &w.store,
        &w.intents,
        &w.events,
        &SystemClock,
        &w.upload,
        PromoteFacts {
            sha256,
            size: 5,
            engine: "ClamAV 1.4.6",
            version,
            media: None,
        },
    )
    .await
}

#[tokio::test]
async fn bytes_replaced_after_the_scan_are_never_promoted() {
    let w = world(IntentState::Processing).await;
    // GIVEN clean bytes were scanned, then the key was overwritten with other bytes
    let scanned = sha(b"clean");
    let version = w
        .store
        .put(
            &w.upload.incoming(),
            b"clean".to_vec(),
            "text/plain",
            WriteMode::Overwrite,
        )
        .await
        .unwrap()
        .version;
    put_upload(&w, b"EVIL!", "text/plain").await;
    // WHEN promote runs with the scan's facts
    let result = promote_version(&w, &scanned, version.as_ref()).await;
    // THEN it fails, nothing is in trusted/, the object waits in incoming/, the intent is unsettled
    let err = result.unwrap_err();
    assert!(err.to_string().contains("not the object that was"), "{err}");
    assert!(w.store.head(&w.upload.trusted()).await.unwrap().is_none());
    assert!(w.store.head(&w.upload.incoming()).await.unwrap().is_some());
    let intent = w.intents.get(w.upload.upload_id).await.unwrap().unwrap();
    assert_eq!(intent.state, IntentState::Processing);
}

#[tokio::test]
async fn a_copy_left_in_incoming_by_a_promotion_is_finished_not_quarantined() {
    let w = world(IntentState::Processing).await;
    // GIVEN an upload that was promoted
    put_upload(&w, b"hello", "text/plain").await;
    promote_scanned(&w, &sha(b"hello")).await.unwrap();
    let object = ObjectRef::new("b", w.upload.incoming());
    let policies = Policies::builtin();
    let inspect_now = || inspect(&w.store, &w.intents, &policies, &SystemClock, &object);

    // WHEN the same bytes are found in incoming/ again (promote's delete had failed) and
    // the event is replayed
    put_upload(&w, b"hello", "text/plain").await;
    // THEN inspect finds the settled upload, to be finished: no quarantine for security
    // to chase
    match inspect_now().await.unwrap() {
        InspectOutcome::Settled(leftover) => {
            assert_eq!(leftover.state, IntentState::Ready);
            assert_eq!(leftover.settled_key, w.upload.trusted());
            assert!(
                leftover.detail.contains("leftover copy"),
                "{}",
                leftover.detail
            );
        }
        other => panic!("expected a settled leftover, got {other:?}"),
    }
    assert_eq!(read(&w.store, &w.upload.trusted()).await, b"hello");

    // AND other bytes of the same size under the used key are still rejected for review
    put_upload(&w, b"HELLO", "text/plain").await;
    match inspect_now().await.unwrap() {
        InspectOutcome::Reject(rejection) => {
            assert_eq!(rejection.reason, ReasonCode::IntentAlreadyUsed);
        }
        other => panic!("expected a rejection, got {other:?}"),
    }

    // AND once the promoted object is gone from trusted/, nothing vouches for the copy
    w.store.delete(&w.upload.trusted(), None).await.unwrap();
    put_upload(&w, b"hello", "text/plain").await;
    assert!(matches!(
        inspect_now().await.unwrap(),
        InspectOutcome::Reject(Rejection {
            reason: ReasonCode::IntentAlreadyUsed,
            ..
        })
    ));
}

/// Uploads `bytes` to the key, then quarantines them for `reason`.
async fn upload_and_quarantine(w: &World, bytes: &[u8], reason: ReasonCode) -> QuarantineReport {
    w.store
        .put(
            &w.upload.incoming(),
            bytes.to_vec(),
            "text/plain",
            WriteMode::Overwrite,
        )
        .await
        .unwrap();
    let request = QuarantineRequest {
        object: ObjectRef::new("b", w.upload.incoming()),
        rejection: Rejection::new(reason, String::from_utf8_lossy(bytes)),
        stage: Stage::Scan,
        sha256: None,
        version: None,
    };
    quarantine(&w.store, &w.intents, &w.events, &SystemClock, &request)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_second_object_for_a_used_key_does_not_overwrite_the_first_ones_evidence() {
    let w = world(IntentState::Processing).await;
    let first = upload_and_quarantine(&w, b"first", ReasonCode::Infected).await;
    // The client sends other bytes to the same key.
    let second = upload_and_quarantine(&w, b"second", ReasonCode::IntentAlreadyUsed).await;
    assert_ne!(first.quarantine_key, second.quarantine_key);
    assert_eq!(read(&w.store, &first.quarantine_key).await, b"first");
    assert_eq!(read(&w.store, &second.quarantine_key).await, b"second");
    let record: QuarantineRecord =
        serde_json::from_slice(&read(&w.store, &first.record_key).await).unwrap();
    assert_eq!(record.sha256, sha(b"first"));
    assert_eq!(record.reason, ReasonCode::Infected);
    // Products heard about the upload once.
    assert_eq!(JsonlEventSink::read_all(w.events.path()).unwrap().len(), 1);
    // A retry of the second quarantine reuses its place.
    let retried = upload_and_quarantine(&w, b"second", ReasonCode::IntentAlreadyUsed).await;
    assert_eq!(retried.quarantine_key, second.quarantine_key);
}

/// Puts `bytes` at `key` (outside the server's scheme: no intent), then quarantines it.
async fn quarantine_stray(w: &World, key: &str, bytes: &[u8]) -> QuarantineReport {
    w.store
        .put(
            key,
            bytes.to_vec(),
            "application/octet-stream",
            WriteMode::Overwrite,
        )
        .await
        .unwrap();
    let request = QuarantineRequest {
        object: ObjectRef::new("b", key),
        rejection: Rejection::new(ReasonCode::NoIntent, "not a key the server made"),
        stage: Stage::Inspect,
        sha256: None,
        version: None,
    };
    quarantine(&w.store, &w.intents, &w.events, &SystemClock, &request)
        .await
        .unwrap()
}

/// Each report's object holds its bytes and its record describes exactly it.
async fn assert_evidence(w: &World, placed: &[(&QuarantineReport, &str, &[u8])]) {
    for (report, original, bytes) in placed {
        assert_eq!(read(&w.store, &report.quarantine_key).await, *bytes);
        let record: QuarantineRecord =
            serde_json::from_slice(&read(&w.store, &report.record_key).await).unwrap();
        assert_eq!(record.sha256, sha(bytes));
        assert_eq!(record.original_key, *original);
        assert_eq!(record.quarantine_key, report.quarantine_key);
    }
}

#[tokio::test]
async fn stray_keys_ending_in_json_never_overwrite_a_record_or_an_object() {
    let w = world(IntentState::Processing).await;
    // GIVEN a stray object x was quarantined (its record is quarantine/stray/x.json)
    let x = quarantine_stray(&w, "incoming/stray/x", b"x bytes").await;
    assert_eq!(x.record_key, "quarantine/stray/x.json");
    // WHEN an object named x.json is quarantined: its natural place is x's record
    let x_json = quarantine_stray(&w, "incoming/stray/x.json", b"{\"not\": \"a record\"}").await;
    // THEN it goes elsewhere and both objects and both records are intact
    assert_ne!(x_json.quarantine_key, "quarantine/stray/x.json");
    assert_evidence(
        &w,
        &[
            (&x, "incoming/stray/x", b"x bytes"),
            (&x_json, "incoming/stray/x.json", b"{\"not\": \"a record\"}"),
        ],
    )
    .await;

    // AND the other way round: y.json first, then y, whose record's place is y.json
    let y_json = quarantine_stray(&w, "incoming/stray/y.json", b"y json bytes").await;
    let y = quarantine_stray(&w, "incoming/stray/y", b"y bytes").await;
    assert_ne!(y.record_key, "quarantine/stray/y.json");
    assert_evidence(
        &w,
        &[
            (&y_json, "incoming/stray/y.json", b"y json bytes"),
            (&y, "incoming/stray/y", b"y bytes"),
        ],
    )
    .await;

    // AND a retry of a quarantine lands on its own earlier place
    let again = quarantine_stray(&w, "incoming/stray/y", b"y bytes").await;
    assert_eq!(again.quarantine_key, y.quarantine_key);
}

/// The real event log, refusing the first `failures` publishes as a broker outage would.
struct FlakyEvents<'a> {
    inner: &'a JsonlEventSink,
    failures: std::sync::atomic::AtomicUsize,
}

impl<'a> FlakyEvents<'a> {
    fn failing_once(inner: &'a JsonlEventSink) -> Self {
        Self {
            inner,
            failures: std::sync::atomic::AtomicUsize::new(1),
        }
    }
}

#[async_trait::async_trait]
impl EventSink for FlakyEvents<'_> {
    async fn publish(&self, event: &PipelineEvent) -> Result<(), EventSinkError> {
        use std::sync::atomic::Ordering;
        if self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(EventSinkError {
                message: "event bus unavailable".into(),
                retry: Retry::Transient,
            });
        }
        self.inner.publish(event).await
    }
}

fn published(w: &World) -> Vec<PipelineEventKind> {
    JsonlEventSink::read_all(w.events.path())
        .unwrap()
        .into_iter()
        .map(|event| event.kind)
        .collect()
}

#[tokio::test]
async fn a_promotion_retried_after_a_failed_publish_still_announces_the_upload() {
    let w = world(IntentState::Processing).await;
    put_upload(&w, b"hello", "text/plain").await;
    let events = FlakyEvents::failing_once(&w.events);
    let hello = sha(b"hello");
    let promote_once = || {
        promote(
            &w.store,
            &w.intents,
            &events,
            &SystemClock,
            &w.upload,
            PromoteFacts {
                sha256: &hello,
                size: 5,
                engine: "ClamAV 1.4.6",
                version: None,
                media: None,
            },
        )
    };
    // GIVEN the promotion settled the upload but could not publish
    let failed = promote_once().await.unwrap_err();
    assert_eq!(failed.retry, Retry::Transient, "{failed}");
    assert!(published(&w).is_empty());
    // AND the object stays in incoming/ until products were told: a crash here would
    // bring it back to be finished
    assert!(w.store.head(&w.upload.incoming()).await.unwrap().is_some());
    // WHEN the orchestrator retries it
    promote_once().await.unwrap();
    // THEN the retry publishes: products hear about the upload, once
    assert_eq!(published(&w), [PipelineEventKind::Ready]);
    assert!(w.store.head(&w.upload.incoming()).await.unwrap().is_none());
}

#[tokio::test]
async fn a_quarantine_retried_after_a_failed_publish_still_announces_the_upload() {
    let w = world(IntentState::Processing).await;
    put_upload(&w, b"EICAR", "text/plain").await;
    let events = FlakyEvents::failing_once(&w.events);
    let request = QuarantineRequest {
        object: ObjectRef::new("b", w.upload.incoming()),
        rejection: Rejection::new(ReasonCode::Infected, "test signature"),
        stage: Stage::Scan,
        sha256: Some(sha(b"EICAR")),
        version: None,
    };
    let quarantine_once = || quarantine(&w.store, &w.intents, &events, &SystemClock, &request);
    let failed = quarantine_once().await.unwrap_err();
    assert_eq!(failed.retry, Retry::Transient, "{failed}");
    assert!(published(&w).is_empty());
    assert!(w.store.head(&w.upload.incoming()).await.unwrap().is_some());
    let retried = quarantine_once().await.unwrap();
    assert_eq!(retried.reason, ReasonCode::Infected);
    assert_eq!(published(&w), [PipelineEventKind::Quarantined]);
    assert!(w.store.head(&w.upload.incoming()).await.unwrap().is_none());
}

#[tokio::test]
async fn an_object_overwritten_between_inspect_and_scan_is_quarantined_not_scanned() {
    let w = world(IntentState::Pending).await;
    let clamd = airlock_clamd::ManagedClamd::builder()
        .database_dir(airlock_tests::repo_root().join("fixtures/clamav"))
        .start()
        .expect("clamd starts (install clamav-daemon: scripts/setup.sh)");
    let scanner = clamd.scanner();
    // GIVEN text that passes inspection
    put_upload(&w, b"hello", "text/plain").await;
    let object = ObjectRef::new("b", w.upload.incoming());
    let InspectOutcome::Pass(inspected) = inspect_upload(&w).await else {
        panic!("inspect did not pass");
    };
    assert!(inspected.version.is_some());
    // WHEN the key is overwritten with other bytes of the same size and another type
    let evil = b"\x7fELF\x02".to_vec();
    w.store
        .put(
            &w.upload.incoming(),
            evil.clone(),
            "text/plain",
            WriteMode::Overwrite,
        )
        .await
        .unwrap();
    let archives = airlock_archive::ArchivePolicy::default();
    let outcome = scan(
        &w.store,
        &scanner,
        &w.upload.incoming(),
        &inspected,
        &archives,
        &FreshnessRule::accepting_undated(None),
        &SystemClock,
    )
    .await
    .unwrap();
    // THEN the scan judges nothing: the object is rejected as replaced
    let ScanOutcome::Reject(rejection) = outcome else {
        panic!("replaced bytes passed the scan: {outcome:?}");
    };
    assert_eq!(rejection.reason, ReasonCode::ObjectReplaced);
    // AND quarantine keeps what is there now, with its own hash in the record
    let report = quarantine(
        &w.store,
        &w.intents,
        &w.events,
        &SystemClock,
        &QuarantineRequest {
            object,
            rejection,
            stage: Stage::Scan,
            sha256: None,
            version: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(read(&w.store, &report.quarantine_key).await, evil);
    let record: QuarantineRecord =
        serde_json::from_slice(&read(&w.store, &report.record_key).await).unwrap();
    assert_eq!(record.sha256, sha(&evil));
    assert_eq!(record.reason, ReasonCode::ObjectReplaced);
    assert!(w.store.head(&w.upload.trusted()).await.unwrap().is_none());
    assert!(w.store.head(&w.upload.incoming()).await.unwrap().is_none());
}

#[tokio::test]
async fn an_interrupted_quarantine_keeps_its_first_verdict_on_rerun() {
    let w = world(IntentState::Processing).await;
    // GIVEN an infected upload was quarantined but the run died before it left incoming/
    let first = upload_and_quarantine(&w, b"virus", ReasonCode::Infected).await;
    put_upload(&w, b"virus", "text/plain").await;
    // WHEN the event is replayed: inspect finds the settled upload's own bytes
    let InspectOutcome::Settled(leftover) = inspect_upload(&w).await else {
        panic!("expected a settled leftover");
    };
    assert_eq!(leftover.state, IntentState::Quarantined);
    assert_eq!(leftover.reason, Some(ReasonCode::Infected));
    // AND even a quarantine asked to record another reason keeps the first record
    let rerun = upload_and_quarantine(&w, b"virus", ReasonCode::IntentAlreadyUsed).await;
    assert_eq!(rerun.quarantine_key, first.quarantine_key);
    assert_eq!(rerun.reason, ReasonCode::Infected);
    let record: QuarantineRecord =
        serde_json::from_slice(&read(&w.store, &first.record_key).await).unwrap();
    assert_eq!(record.reason, ReasonCode::Infected);
    assert!(w.store.head(&w.upload.incoming()).await.unwrap().is_none());
    // AND every event published says the first reason
    let events = JsonlEventSink::read_all(w.events.path()).unwrap();
    assert!(!events.is_empty());
    assert!(
        events
            .iter()
            .all(|e| e.reason == Some(ReasonCode::Infected))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_stray_pairs_never_share_a_place() {
    // GIVEN 300 no-intent pairs K and K.json, quarantined 8 at a time, each pair's two
    // objects at the same moment (K's record and K.json's object want one key)
    let w = std::sync::Arc::new(world(IntentState::Processing).await);
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(8));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..300 {
        for (key, bytes) in [
            (format!("incoming/stray/k{i}"), format!("object {i}")),
            (
                format!("incoming/stray/k{i}.json"),
                format!("{{\"json\": {i}}}"),
            ),
        ] {
            let (w, permits) = (std::sync::Arc::clone(&w), std::sync::Arc::clone(&permits));
            tasks.spawn(async move {
                let _permit = permits.acquire().await.unwrap();
                let report = quarantine_stray(&w, &key, bytes.as_bytes()).await;
                (report, key, bytes)
            });
        }
    }
    let mut placed = Vec::new();
    while let Some(done) = tasks.join_next().await {
        placed.push(done.unwrap());
    }
    // THEN every object is at its own place with its own record, intact
    let mut keys: Vec<_> = placed.iter().map(|(r, _, _)| &r.quarantine_key).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 600);
    let evidence: Vec<_> = placed
        .iter()
        .map(|(r, key, bytes)| (r, key.as_str(), bytes.as_bytes()))
        .collect();
    assert_evidence(&w, &evidence).await;
}

#[tokio::test]
async fn an_image_replaced_after_its_scan_is_rejected_by_the_media_stage() {
    use airlock_core::stages::{MediaJob, MediaOutcome, media};
    let w = world(IntentState::Processing).await;
    let png = std::fs::read(airlock_tests::repo_root().join("fixtures/objects/badge.png")).unwrap();
    // GIVEN an image that was inspected and scanned as version v1
    let v1 = w
        .store
        .put(
            &w.upload.incoming(),
            png.clone(),
            "image/png",
            WriteMode::Overwrite,
        )
        .await
        .unwrap()
        .version;
    // WHEN the key is overwritten before the media stage reads it
    w.store
        .put(
            &w.upload.incoming(),
            png.clone(),
            "image/png",
            WriteMode::Overwrite,
        )
        .await
        .unwrap();
    let policy = airlock_core::media::MediaPolicy::default();
    let outcome = media(
        &w.store,
        std::sync::Arc::new(airlock_media::ImageProcessor),
        std::sync::Arc::new(tokio::sync::Semaphore::new(1)),
        MediaJob {
            upload: &w.upload,
            content_type: "image/png",
            size: png.len() as u64,
            scanned_sha256: &sha(&png),
            version: v1.as_ref(),
            policy: &policy,
        },
    )
    .await
    .unwrap();
    // THEN it is rejected as replaced (even with the same bytes: they were not the ones
    // judged), and nothing is staged
    match outcome {
        MediaOutcome::Reject(rejection) => {
            assert_eq!(
                rejection.reason,
                ReasonCode::ObjectReplaced,
                "{rejection:?}"
            );
        }
        MediaOutcome::Pass(_) => panic!("a replaced object was processed"),
    }
    assert!(
        !w.store.root().join("staging").exists(),
        "something was staged"
    );
}
