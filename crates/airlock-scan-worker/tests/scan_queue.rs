//! The scan worker against the AWS emulator (`moto_server`: SQS, S3, DynamoDB, and Step
//! Functions executions of the pipeline's own Scan state waiting on task tokens) and a real
//! clamd whose databases are the project's test signatures, packed in a `daily.cud` so
//! clamd reports a definitions version and build time.

#[path = "../../airlock-aws/tests/common/mod.rs"]
mod common;

use std::io::Cursor;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use airlock_aws::{DynamoIntentStore, EventBridgeSink, S3Store, StepFunctionsAnswers};
use airlock_clamd::{ManagedClamd, canary, database};
use airlock_core::definitions::FreshnessRule;
use airlock_core::intent::{IntentState, UploadIntent};
use airlock_core::keys::{Purpose, TenantId, UploadId, UploadKey};
use airlock_core::object::ObjectRef;
use airlock_core::policy::Policies;
use airlock_core::ports::{IntentStore, ObjectWriter, Scanner, SystemClock, WriteMode};
use airlock_core::stages::inspect;
use airlock_core::verdict::ReasonCode;
use airlock_core::worker::{HEARTBEAT_EVERY, Worker, quarantine_request};
use airlock_emf::StageMetric;
use airlock_scan_worker::consumer::{NoMedia, ScanQueueConsumer};
use airlock_scan_worker::mirror::{DefinitionsMirror, STATE_FILE, refresh};
use aws_sdk_sfn::types::ExecutionStatus;
use chrono::{DateTime, Utc};
use common::Moto;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};

const BUCKET: &str = "airlock-uploads";
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/clamav");
const DEFINITION: &str = include_str!("../../../statemachine/pipeline.asl.json");

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(FIXTURES).join(name)).unwrap()
}

fn hours_ago(hours: i64) -> DateTime<Utc> {
    DateTime::from_timestamp((Utc::now() - chrono::Duration::hours(hours)).timestamp(), 0).unwrap()
}

/// `daily.cud` with the test signatures (and `extra` ones), as `version` built at `built_at`.
fn daily(version: u32, built_at: DateTime<Utc>, extra: &[u8]) -> Vec<u8> {
    let mut ndb = fixture("airlock-test.ndb");
    ndb.extend_from_slice(extra);
    database::unsigned_container("daily", version, built_at, &[("daily.ndb", ndb.as_slice())])
}

/// A clamd whose daily database was built at `built_at`.
fn clamd_with_daily(dir: &Path, built_at: DateTime<Utc>) -> ManagedClamd {
    std::fs::write(dir.join("daily.cud"), daily(27_001, built_at, b"")).unwrap();
    ManagedClamd::builder()
        .database_dir(dir)
        .start()
        .unwrap_or_else(|e| panic!("these tests need a real clamd: {e}"))
}

/// The pipeline's Scan state as Step Functions runs it (same parameters, timeouts and
/// Catch), alone: its Retry is dropped so a failure is caught at once, and the catch
/// ends in a Pass state instead of the Quarantine task.
fn scan_machine(queue_url: &str) -> String {
    let definition: Value =
        serde_json::from_str(&DEFINITION.replace("${ScanQueueUrl}", queue_url)).unwrap();
    let mut scan = definition["States"]["Scan"].clone();
    let scan = scan.as_object_mut().unwrap();
    scan.remove("Retry");
    scan.remove("Next");
    scan.insert("End".into(), true.into());
    scan["Catch"][0]["Next"] = "Quarantine".into();
    json!({
        "StartAt": "Scan",
        "States": {
            "Scan": scan,
            "Quarantine": {"Type": "Pass", "End": true}
        }
    })
    .to_string()
}

struct World {
    moto: Moto,
    queue: String,
    machine: String,
    store: S3Store,
    intents: DynamoIntentStore,
    metrics: Arc<Mutex<Vec<StageMetric>>>,
}

async fn world() -> World {
    let moto = Moto::start().await;
    moto.run_state_machines().await;
    moto.bucket(BUCKET, true).await;
    let intents = DynamoIntentStore::new(moto.dynamodb(), "airlock-intents");
    intents.create_table().await.unwrap();
    moto.eventbridge()
        .create_event_bus()
        .name("airlock")
        .send()
        .await
        .unwrap();
    let (queue, _) = moto.queue("airlock-scan").await;
    let machine = moto
        .sfn()
        .create_state_machine()
        .name("scan")
        .definition(scan_machine(&queue))
        .role_arn("arn:aws:iam::123456789012:role/airlock-pipeline")
        .send()
        .await
        .unwrap()
        .state_machine_arn;
    World {
        store: S3Store::new(moto.s3(), BUCKET),
        intents,
        queue,
        machine,
        metrics: Arc::default(),
        moto,
    }
}

impl World {
    fn consumer(&self, clamd: &ManagedClamd, freshness: FreshnessRule) -> ScanQueueConsumer {
        let scanner: Arc<dyn Scanner> = Arc::new(clamd.scanner());
        let intents = Arc::new(DynamoIntentStore::new(
            self.moto.dynamodb(),
            "airlock-intents",
        ));
        let worker = Arc::new(Worker {
            store: Arc::new(S3Store::new(self.moto.s3(), BUCKET)),
            intents: intents.clone(),
            scanner,
            events: Arc::new(EventBridgeSink::new(self.moto.eventbridge(), "airlock")),
            dead_letters: intents,
            clock: Arc::new(SystemClock),
            policies: Arc::new(Policies::builtin()),
            media: Arc::new(NoMedia),
            media_permits: Arc::new(Semaphore::new(1)),
            bucket: BUCKET.to_owned(),
            heartbeat_every: HEARTBEAT_EVERY,
            freshness,
        });
        let mut consumer = ScanQueueConsumer::new(
            self.moto.sqs(),
            &self.queue,
            worker,
            Arc::new(StepFunctionsAnswers::new(self.moto.sfn())),
        );
        consumer.wait_seconds = 1;
        let metrics = Arc::clone(&self.metrics);
        consumer.metrics = Arc::new(move |m| metrics.lock().unwrap().push(m));
        consumer
    }

    /// An upload of `bytes` with its intent, inspected: the Scan state's input.
    async fn inspected_upload(&self, bytes: &[u8]) -> Value {
        let upload = UploadKey::new(
            TenantId::new("acme").unwrap(),
            Purpose::new("document").unwrap(),
            UploadId::generate(),
        );
        let now = Utc::now();
        self.intents
            .create(&UploadIntent {
                id: upload.upload_id,
                tenant: upload.tenant.clone(),
                purpose: upload.purpose.clone(),
                declared_type: "text/plain".into(),
                declared_size: bytes.len() as u64,
                sha256: None,
                filename: Some("notes.txt".into()),
                uploader: None,
                state: IntentState::Pending,
                created_at: now,
                updated_at: now,
                expires_at: now + chrono::Duration::hours(1),
                outcome: None,
                multipart_upload_id: None,
            })
            .await
            .unwrap();
        self.store
            .put(
                &upload.incoming(),
                bytes.to_vec(),
                "text/plain",
                WriteMode::Overwrite,
            )
            .await
            .unwrap();
        let object = ObjectRef::new(BUCKET, upload.incoming());
        let inspected = inspect(
            &self.store,
            &self.intents,
            &Policies::builtin(),
            &SystemClock,
            &object,
        )
        .await
        .unwrap();
        json!({"object": object, "inspect": inspected})
    }

    /// Starts an execution of the Scan state, runs the worker until it ends, stops the
    /// worker; the execution's output.
    async fn scan(&self, consumer: ScanQueueConsumer, input: &Value) -> (ExecutionStatus, Value) {
        let execution = self
            .moto
            .sfn()
            .start_execution()
            .state_machine_arn(&self.machine)
            .name(uuid::Uuid::new_v4().to_string())
            .input(input.to_string())
            .send()
            .await
            .unwrap()
            .execution_arn;
        let (stop, stopped) = watch::channel(false);
        let polling = tokio::spawn(async move { consumer.run(stopped).await });
        let mut done = None;
        for _ in 0..600 {
            let out = self
                .moto
                .sfn()
                .describe_execution()
                .execution_arn(&execution)
                .send()
                .await
                .unwrap();
            if out.status != ExecutionStatus::Running {
                done = Some(out);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        stop.send(true).unwrap();
        polling.await.unwrap();
        let done = done.expect("the execution ended");
        let output = done
            .output()
            .map_or(Value::Null, |o| serde_json::from_str(o).unwrap());
        (done.status, output)
    }

    /// Messages still on the scan queue, visible or not.
    async fn messages_left(&self) -> u64 {
        use aws_sdk_sqs::types::QueueAttributeName as Name;
        let attributes = self
            .moto
            .sqs()
            .get_queue_attributes()
            .queue_url(&self.queue)
            .attribute_names(Name::ApproximateNumberOfMessages)
            .attribute_names(Name::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap();
        [
            Name::ApproximateNumberOfMessages,
            Name::ApproximateNumberOfMessagesNotVisible,
        ]
        .iter()
        .map(|name| attributes[name].parse::<u64>().unwrap())
        .sum()
    }

    fn metrics(&self) -> Vec<(String, String)> {
        self.metrics
            .lock()
            .unwrap()
            .iter()
            .map(|m| (m.stage.clone(), m.outcome.clone()))
            .collect()
    }
}

#[tokio::test]
async fn a_clean_upload_is_answered_with_its_engine_and_definitions_and_the_message_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let built = hours_ago(2);
    let clamd = clamd_with_daily(dir.path(), built);
    let w = world().await;
    let input = w.inspected_upload(b"quarterly notes\n").await;

    let (status, output) = w
        .scan(w.consumer(&clamd, FreshnessRule::default()), &input)
        .await;

    assert_eq!(status, ExecutionStatus::Succeeded, "{output}");
    let scan = &output["scan"];
    assert_eq!(scan["outcome"], "pass", "{output}");
    assert!(
        scan["engine"].as_str().unwrap().ends_with("/27001"),
        "{scan}"
    );
    assert_eq!(scan["definitions"]["version"], 27_001);
    assert_eq!(
        scan["definitions"]["builtAt"],
        json!(built.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    );
    let age = scan["definitions"]["ageSeconds"].as_u64().unwrap();
    assert!((7200..7200 + 600).contains(&age), "{age}");
    assert_eq!(
        w.messages_left().await,
        0,
        "the answered message is deleted"
    );
    assert_eq!(w.metrics(), [("scan".to_owned(), "pass".to_owned())]);
}

#[tokio::test]
async fn eicar_is_rejected_as_infected_with_its_signature() {
    let dir = tempfile::tempdir().unwrap();
    let clamd = clamd_with_daily(dir.path(), hours_ago(1));
    let w = world().await;
    let input = w.inspected_upload(&canary::eicar()).await;

    let (status, output) = w
        .scan(w.consumer(&clamd, FreshnessRule::default()), &input)
        .await;

    assert_eq!(status, ExecutionStatus::Succeeded, "{output}");
    let scan = &output["scan"];
    assert_eq!(scan["outcome"], "reject", "{output}");
    assert_eq!(scan["reason"], "infected");
    assert!(
        scan["signature"].as_str().unwrap().contains("EICAR"),
        "{scan}"
    );
    assert_eq!(scan["definitions"]["version"], 27_001);
    let request = quarantine_request(
        &serde_json::from_value(input["object"].clone()).unwrap(),
        &output,
    )
    .unwrap();
    assert_eq!(request.rejection.reason, ReasonCode::Infected);
    assert_eq!(w.messages_left().await, 0);
    assert_eq!(w.metrics(), [("scan".to_owned(), "reject".to_owned())]);
}

#[tokio::test]
async fn stale_definitions_fail_the_scan_and_the_object_is_quarantined_as_scan_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let clamd = clamd_with_daily(dir.path(), hours_ago(72));
    let w = world().await;
    let input = w.inspected_upload(b"quarterly notes\n").await;

    let (status, output) = w
        .scan(w.consumer(&clamd, FreshnessRule::default()), &input)
        .await;

    // Caught: the failure is kept and the object goes to quarantine, never to promotion.
    assert_eq!(status, ExecutionStatus::Succeeded, "{output}");
    assert!(output.get("scan").is_none(), "{output}");
    assert_eq!(
        output["scanFailure"]["Error"], "Airlock.Transient",
        "{output}"
    );
    let object: ObjectRef = serde_json::from_value(input["object"].clone()).unwrap();
    let request = quarantine_request(&object, &output).unwrap();
    assert_eq!(request.rejection.reason, ReasonCode::ScanUnavailable);
    assert_eq!(
        w.messages_left().await,
        0,
        "the answered message is deleted"
    );
    assert_eq!(
        w.metrics(),
        [("scan".to_owned(), "transient-error".to_owned())]
    );
}

/// Puts an object into the mirror bucket.
async fn put(moto: &Moto, key: &str, bytes: Vec<u8>) {
    moto.s3()
        .put_object()
        .bucket("airlock-definitions")
        .key(key)
        .body(bytes.into())
        .send()
        .await
        .unwrap();
}

/// An emulator whose mirror bucket holds, under `clamav/`, the test signatures as plain
/// files and in a daily database (version 27001), beside files a `cvdupdate` mirror also
/// holds that clamd does not load.
async fn mirror_bucket() -> Moto {
    let moto = Moto::start().await;
    moto.bucket("airlock-definitions", false).await;
    put(
        &moto,
        "clamav/airlock-test.ndb",
        fixture("airlock-test.ndb"),
    )
    .await;
    put(
        &moto,
        "clamav/airlock-test.hsb",
        fixture("airlock-test.hsb"),
    )
    .await;
    put(&moto, "clamav/daily.cud", daily(27_001, hours_ago(5), b"")).await;
    put(&moto, "clamav/daily-27000.cdiff", b"patch".to_vec()).await;
    put(&moto, "clamav/dns.txt", b"1.4.3:60:27001".to_vec()).await;
    put(&moto, "other/main.cvd", b"not this folder".to_vec()).await;
    moto
}

#[tokio::test]
async fn definitions_come_from_the_mirror_bucket_and_clamd_reloads_them() {
    let moto = mirror_bucket().await;
    let dir = tempfile::tempdir().unwrap();
    let mirror = DefinitionsMirror::new(moto.s3(), "airlock-definitions", "clamav", dir.path());
    let first = mirror.sync().await.unwrap();
    assert_eq!(
        first.downloaded,
        ["airlock-test.hsb", "airlock-test.ndb", "daily.cud"]
    );
    assert_eq!(first.daily.as_ref().map(|d| d.version), Some(27_001));
    let mut local: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    local.sort();
    assert_eq!(
        local,
        [
            STATE_FILE,
            "airlock-test.hsb",
            "airlock-test.ndb",
            "daily.cud"
        ]
    );
    assert_eq!(
        std::fs::read(dir.path().join("airlock-test.ndb")).unwrap(),
        fixture("airlock-test.ndb")
    );

    // clamd starts on what was copied.
    let clamd = ManagedClamd::builder()
        .database_dir(dir.path())
        .start()
        .unwrap_or_else(|e| panic!("this test needs a real clamd: {e}"));
    let scanner = clamd.scanner();
    let version = scanner.fetch_version().await.unwrap();
    assert_eq!(version.definitions.map(|d| d.version), Some(27_001));
    let payload = canary::unique_payload();
    let clean = scanner
        .scan(Box::new(Cursor::new(payload.clone())))
        .await
        .unwrap();
    assert_eq!(clean.verdict, airlock_core::ports::ScanVerdict::Clean);

    // Nothing changed: nothing downloaded, no reload.
    let again = refresh(&mirror, &scanner, Duration::from_mins(1))
        .await
        .unwrap();
    assert!(again.downloaded.is_empty() && !again.changed(), "{again:?}");
    assert_eq!(again.unchanged, 3);

    // A new daily database with a signature for the payload: synced, reloaded, in use.
    let signature = format!("Airlock.Test.Mirror:0:*:{}\n", hex::encode(&payload));
    put(
        &moto,
        "clamav/daily.cud",
        daily(27_002, hours_ago(1), signature.as_bytes()),
    )
    .await;
    let refreshed = refresh(&mirror, &scanner, Duration::from_mins(1))
        .await
        .unwrap();
    assert_eq!(refreshed.downloaded, ["daily.cud"]);
    let report = scanner.scan(Box::new(Cursor::new(payload))).await.unwrap();
    assert!(
        matches!(&report.verdict, airlock_core::ports::ScanVerdict::Infected { signature } if signature.contains("Airlock.Test.Mirror")),
        "{report:?}"
    );
    assert_eq!(report.definitions.map(|d| d.version), Some(27_002));
}

#[tokio::test]
async fn files_gone_from_the_mirror_are_removed_and_broken_containers_refused() {
    let moto = mirror_bucket().await;
    let dir = tempfile::tempdir().unwrap();
    let mirror = DefinitionsMirror::new(moto.s3(), "airlock-definitions", "clamav", dir.path());
    mirror.sync().await.unwrap();
    // A file gone from the mirror is removed; a broken container is refused, not installed.
    moto.s3()
        .delete_object()
        .bucket("airlock-definitions")
        .key("clamav/airlock-test.hsb")
        .send()
        .await
        .unwrap();
    put(&moto, "clamav/main.cvd", b"ClamAV-VDB:truncated".to_vec()).await;
    let err = mirror.sync().await.unwrap_err();
    assert!(err.to_string().contains("main.cvd"), "{err}");
    assert!(!dir.path().join("main.cvd").exists());
    assert!(
        std::fs::read_dir(dir.path()).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".partial")),
        "no partial file is left"
    );
    moto.s3()
        .delete_object()
        .bucket("airlock-definitions")
        .key("clamav/main.cvd")
        .send()
        .await
        .unwrap();
    let last = mirror.sync().await.unwrap();
    assert_eq!(last.removed, ["airlock-test.hsb"]);
    assert!(!dir.path().join("airlock-test.hsb").exists());
}

#[tokio::test]
async fn a_message_that_cannot_be_answered_is_left_for_redelivery() {
    let dir = tempfile::tempdir().unwrap();
    let clamd = clamd_with_daily(dir.path(), hours_ago(1));
    let w = world().await;
    w.moto
        .sqs()
        .send_message()
        .queue_url(&w.queue)
        .message_body("not a task, no token")
        .send()
        .await
        .unwrap();
    let consumer = w.consumer(&clamd, FreshnessRule::default());
    let (stop, stopped) = watch::channel(false);
    let polling = tokio::spawn(async move { consumer.run(stopped).await });
    for _ in 0..600 {
        if !w.metrics().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.send(true).unwrap();
    polling.await.unwrap();
    assert_eq!(w.metrics(), [("scan".to_owned(), "unanswered".to_owned())]);
    assert_eq!(w.messages_left().await, 1, "the message stays on the queue");
}
