//! The core stages over the AWS adapters on the emulator: a versioned bucket
//! (`S3Store`), the intents table (`DynamoIntentStore`) and an event bus
//! (`EventBridgeSink`, read back through a rule to a queue).

mod common;

use airlock_aws::{DynamoIntentStore, EventBridgeSink, S3Store};
use airlock_core::intent::{IntentState, UploadIntent};
use airlock_core::keys::{Purpose, TenantId, UploadId, UploadKey};
use airlock_core::object::ObjectRef;
use airlock_core::policy::Policies;
use airlock_core::ports::{
    IntentStore, ObjectReader, ObjectVersion, ObjectWriter, PipelineEvent, PipelineEventKind,
    SystemClock, WriteMode,
};
use airlock_core::stages::{
    InspectOutcome, PromoteFacts, QuarantineRecord, QuarantineRequest, Stage, inspect, promote,
    quarantine,
};
use airlock_core::verdict::ReasonCode;
use common::Moto;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const BUCKET: &str = "airlock-uploads";

struct World {
    moto: Moto,
    store: S3Store,
    intents: DynamoIntentStore,
    events: EventBridgeSink,
    queue: String,
    upload: UploadKey,
}

async fn world(state: IntentState, declared_type: &str) -> World {
    let moto = Moto::start().await;
    moto.bucket(BUCKET, true).await;
    let intents = DynamoIntentStore::new(moto.dynamodb(), "airlock-intents");
    intents.create_table().await.unwrap();
    let (queue, queue_arn) = moto.queue("products").await;
    let bus = moto.eventbridge();
    bus.create_event_bus().name("airlock").send().await.unwrap();
    bus.put_rule()
        .name("all")
        .event_bus_name("airlock")
        .event_pattern(json!({"source": ["airlock"]}).to_string())
        .send()
        .await
        .unwrap();
    bus.put_targets()
        .rule("all")
        .event_bus_name("airlock")
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("queue")
                .arn(queue_arn)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
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
            declared_type: declared_type.into(),
            declared_size: 5,
            sha256: None,
            filename: Some("notes.txt".into()),
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
        store: S3Store::new(moto.s3(), BUCKET),
        events: EventBridgeSink::new(moto.eventbridge(), "airlock"),
        intents,
        queue,
        upload,
        moto,
    }
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

async fn read(store: &S3Store, key: &str) -> Vec<u8> {
    let meta = store.head(key).await.unwrap().expect("object present");
    store.read_range(key, None, 0, meta.size).await.unwrap()
}

async fn put_upload(w: &World, bytes: &[u8]) -> ObjectVersion {
    w.store
        .put(
            &w.upload.incoming(),
            bytes.to_vec(),
            "text/plain",
            WriteMode::Overwrite,
        )
        .await
        .unwrap()
        .version
        .unwrap()
}

async fn inspect_upload(w: &World) -> InspectOutcome {
    inspect(
        &w.store,
        &w.intents,
        &Policies::builtin(),
        &SystemClock,
        &ObjectRef::new(BUCKET, w.upload.incoming()),
    )
    .await
    .unwrap()
}

/// Every version and delete marker left under `prefix`.
async fn versions_under(w: &World, prefix: &str) -> usize {
    let out = w
        .moto
        .s3()
        .list_object_versions()
        .bucket(BUCKET)
        .prefix(prefix)
        .send()
        .await
        .unwrap();
    out.versions().len() + out.delete_markers().len()
}

/// The pipeline events the bus delivered.
async fn published(w: &World, want: usize) -> Vec<PipelineEvent> {
    w.moto
        .receive(&w.queue, want, 20)
        .await
        .iter()
        .map(|body| {
            let envelope: Value = serde_json::from_str(body).unwrap();
            serde_json::from_value(envelope["detail"].clone()).unwrap()
        })
        .collect()
}

#[tokio::test]
async fn an_inspected_upload_is_promoted_to_trusted() {
    let w = world(IntentState::Pending, "text/plain").await;
    let written = put_upload(&w, b"hello").await;

    let InspectOutcome::Pass(report) = inspect_upload(&w).await else {
        panic!("inspect did not pass the upload");
    };
    // The version judged is the S3 VersionId written.
    assert_eq!(report.version.as_ref(), Some(&written));
    assert_eq!(
        w.intents
            .get(w.upload.upload_id)
            .await
            .unwrap()
            .unwrap()
            .state,
        IntentState::Processing
    );

    let promoted = promote(
        &w.store,
        &w.intents,
        &w.events,
        &SystemClock,
        &w.upload,
        PromoteFacts {
            sha256: &sha(b"hello"),
            size: 5,
            engine: "ClamAV 1.4.3/27500",
            version: report.version.as_ref(),
            media: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(promoted.trusted_key, w.upload.trusted());
    assert!(promoted.promoted_now);
    assert_eq!(read(&w.store, &w.upload.trusted()).await, b"hello");
    // The settled version is gone from incoming/ for good: no version, no delete marker.
    assert!(w.store.head(&w.upload.incoming()).await.unwrap().is_none());
    assert_eq!(versions_under(&w, "incoming/").await, 0);

    let intent = w.intents.get(w.upload.upload_id).await.unwrap().unwrap();
    assert_eq!(intent.state, IntentState::Ready);
    let outcome = intent.outcome.unwrap();
    assert_eq!(outcome.key, w.upload.trusted());
    assert_eq!(outcome.sha256, Some(sha(b"hello")));
    let trail: Vec<_> = w
        .intents
        .transitions(w.upload.upload_id)
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.from, t.to))
        .collect();
    assert_eq!(
        trail,
        vec![
            (IntentState::Pending, IntentState::Processing),
            (IntentState::Processing, IntentState::Ready)
        ]
    );

    let events = published(&w, 1).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, PipelineEventKind::Ready);
    assert_eq!(events[0].upload_id, w.upload.upload_id);
    assert_eq!(events[0].key, w.upload.trusted());
}

#[tokio::test]
async fn bytes_written_after_inspect_never_reach_trusted() {
    let w = world(IntentState::Pending, "text/plain").await;
    put_upload(&w, b"clean").await;
    let InspectOutcome::Pass(report) = inspect_upload(&w).await else {
        panic!("inspect did not pass the upload");
    };
    // The key is written again with other bytes of the same size after it was judged.
    let newer = put_upload(&w, b"EVIL!").await;

    promote(
        &w.store,
        &w.intents,
        &w.events,
        &SystemClock,
        &w.upload,
        PromoteFacts {
            sha256: &sha(b"clean"),
            size: 5,
            engine: "ClamAV 1.4.3/27500",
            version: report.version.as_ref(),
            media: None,
        },
    )
    .await
    .unwrap();
    // The judged version is what was promoted; the newer object is left in incoming/ for
    // its own event, untouched.
    assert_eq!(read(&w.store, &w.upload.trusted()).await, b"clean");
    let left = w.store.head(&w.upload.incoming()).await.unwrap().unwrap();
    assert_eq!(left.version, Some(newer));
    assert_eq!(read(&w.store, &w.upload.incoming()).await, b"EVIL!");
}

#[tokio::test]
async fn a_rejected_upload_is_quarantined_with_its_record() {
    let w = world(IntentState::Pending, "text/plain").await;
    // A PDF declared as text.
    let pdf = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n";
    let version = put_upload(&w, pdf).await;
    let InspectOutcome::Reject(rejection) = inspect_upload(&w).await else {
        panic!("inspect passed a PDF declared as text");
    };
    let reason = rejection.reason;
    let request = QuarantineRequest {
        object: ObjectRef::new(BUCKET, w.upload.incoming()),
        rejection,
        stage: Stage::Inspect,
        sha256: None,
        version: Some(version),
    };
    let report = quarantine(&w.store, &w.intents, &w.events, &SystemClock, &request)
        .await
        .unwrap();
    assert!(report.quarantined_now);
    assert!(
        report
            .quarantine_key
            .starts_with("quarantine/acme/document/"),
        "{}",
        report.quarantine_key
    );
    assert_eq!(read(&w.store, &report.quarantine_key).await, pdf);
    let record: QuarantineRecord =
        serde_json::from_slice(&read(&w.store, &report.record_key).await).unwrap();
    assert_eq!(record.reason, reason);
    assert_eq!(record.sha256, sha(pdf));
    assert!(w.store.head(&w.upload.incoming()).await.unwrap().is_none());
    assert_eq!(versions_under(&w, "incoming/").await, 0);
    assert!(w.store.head(&w.upload.trusted()).await.unwrap().is_none());

    let intent = w.intents.get(w.upload.upload_id).await.unwrap().unwrap();
    assert_eq!(intent.state, IntentState::Quarantined);
    assert_eq!(intent.outcome.unwrap().reason, Some(reason));
    let events = published(&w, 1).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, PipelineEventKind::Quarantined);
    assert_eq!(events[0].reason, Some(reason));

    // Other bytes sent later to the used key are quarantined beside the first, never over
    // its evidence (the place is claimed with create-only writes).
    let second = put_upload(&w, b"second").await;
    let again = QuarantineRequest {
        object: ObjectRef::new(BUCKET, w.upload.incoming()),
        rejection: airlock_core::verdict::Rejection::new(
            ReasonCode::IntentAlreadyUsed,
            "a second object",
        ),
        stage: Stage::Inspect,
        sha256: None,
        version: Some(second),
    };
    let report2 = quarantine(&w.store, &w.intents, &w.events, &SystemClock, &again)
        .await
        .unwrap();
    assert_ne!(report2.quarantine_key, report.quarantine_key);
    assert_eq!(read(&w.store, &report.quarantine_key).await, pdf);
    assert_eq!(read(&w.store, &report2.quarantine_key).await, b"second");
    let first_record: QuarantineRecord =
        serde_json::from_slice(&read(&w.store, &report.record_key).await).unwrap();
    assert_eq!(first_record.sha256, sha(pdf));
}
