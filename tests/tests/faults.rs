//! Fault injection: every write, copy, delete, intent transition and event publish of each
//! settling path fails in turn — as a crash (nothing after it happens) or as a full disk
//! (that one operation fails, the stage is retried) — and then the upload is run again with
//! nothing failing. After each, an invariant checker asserts what airlock promises: the
//! object is in exactly one of incoming/, trusted/ and quarantine/; nothing infected,
//! mismatched or unscanned is trusted; the intent agrees with the placement; products heard
//! at least once and never conflicting things; no staging/ or temporary leftovers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use airlock_clamd::ManagedClamd;
use airlock_core::intent::{IntentState, UploadIntent};
use airlock_core::keys::{Purpose, TenantId, UploadId, UploadKey};
use airlock_core::object::{ObjectMeta, ObjectRef};
use airlock_core::policy::Policies;
use airlock_core::ports::{
    ByteStream, CreateOutcome, DeadLetters, EventSink, EventSinkError, IdempotencyClaim,
    IntentStore, IntentStoreError, ObjectReader, ObjectVersion, ObjectWriter, PipelineEvent,
    PipelineEventKind, Retry, Scanner, StoreError, SystemClock, Transition, TransitionResult,
    WriteMode,
};
use airlock_core::stages::{QuarantineRecord, Stage, StageError};
use airlock_core::verdict::ReasonCode;
use airlock_core::worker::{TaskMessage, Worker};
use airlock_embedded::cases::eicar;
use airlock_local::{FsStore, JsonlEventSink, SqliteIntentStore};
use async_trait::async_trait;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// How the injected fault behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// The process dies at the operation: it and everything after it never happen.
    Crash,
    /// The operation fails once with a full disk; the stage is retried, as Step Functions
    /// retries `Airlock.Transient`.
    DiskFull,
}

/// Counts mutating operations and fails the chosen one.
#[derive(Debug)]
struct Faults {
    at: Option<usize>,
    fault: Fault,
    seen: AtomicUsize,
    crashed: AtomicBool,
}

impl Faults {
    fn new(at: Option<usize>, fault: Fault) -> Arc<Self> {
        Arc::new(Self {
            at,
            fault,
            seen: AtomicUsize::new(0),
            crashed: AtomicBool::new(false),
        })
    }

    /// Whether the operation about to happen must fail.
    fn strike(&self) -> bool {
        if self.crashed.load(Ordering::SeqCst) {
            return true;
        }
        let n = self.seen.fetch_add(1, Ordering::SeqCst) + 1;
        if Some(n) != self.at {
            return false;
        }
        if self.fault == Fault::Crash {
            self.crashed.store(true, Ordering::SeqCst);
        }
        true
    }

    fn io_error(&self) -> std::io::Error {
        match self.fault {
            Fault::Crash => std::io::Error::other("crashed"),
            Fault::DiskFull => std::io::Error::from(std::io::ErrorKind::StorageFull),
        }
    }

    fn retry(&self) -> Retry {
        match self.fault {
            Fault::Crash => Retry::Permanent,
            Fault::DiskFull => Retry::Transient,
        }
    }
}

struct FaultyStore {
    inner: FsStore,
    faults: Arc<Faults>,
    /// The trusted key whose bytes must be these (SHA-256) from the moment they appear:
    /// checked after every write to it, not only at the end.
    trusted: Option<(String, String)>,
}

impl FaultyStore {
    /// Asserts that what was just written to `key`, if it is the watched trusted key, has
    /// the verified hash.
    async fn watch(&self, key: &str) {
        let Some((trusted, sha256)) = &self.trusted else {
            return;
        };
        if key != trusted {
            return;
        }
        let meta = self.inner.head(key).await.unwrap().expect("just written");
        let bytes = self
            .inner
            .read_range(key, None, 0, meta.size)
            .await
            .unwrap();
        assert_eq!(
            &sha(&bytes),
            sha256,
            "unverified bytes became readable at {key}"
        );
    }

    fn check(&self, key: &str) -> Result<(), StoreError> {
        if self.faults.strike() {
            return Err(StoreError::backend(
                key,
                self.faults.retry(),
                self.faults.io_error(),
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl ObjectReader for FaultyStore {
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        self.inner.head(key).await
    }
    async fn read_range(
        &self,
        key: &str,
        version: Option<&ObjectVersion>,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, StoreError> {
        self.inner.read_range(key, version, offset, len).await
    }
    async fn open(
        &self,
        key: &str,
        version: Option<&ObjectVersion>,
    ) -> Result<ByteStream, StoreError> {
        self.inner.open(key, version).await
    }
}

#[async_trait]
impl ObjectWriter for FaultyStore {
    async fn copy(
        &self,
        from: &str,
        version: Option<&ObjectVersion>,
        to: &str,
        mode: WriteMode,
    ) -> Result<ObjectMeta, StoreError> {
        self.check(to)?;
        let copied = self.inner.copy(from, version, to, mode).await?;
        self.watch(to).await;
        Ok(copied)
    }
    async fn put(
        &self,
        key: &str,
        bytes: Vec<u8>,
        content_type: &str,
        mode: WriteMode,
    ) -> Result<ObjectMeta, StoreError> {
        self.check(key)?;
        let put = self.inner.put(key, bytes, content_type, mode).await?;
        self.watch(key).await;
        Ok(put)
    }
    async fn delete(&self, key: &str, version: Option<&ObjectVersion>) -> Result<(), StoreError> {
        self.check(key)?;
        self.inner.delete(key, version).await
    }
}

struct FaultyIntents {
    inner: SqliteIntentStore,
    faults: Arc<Faults>,
}

#[async_trait]
impl IntentStore for FaultyIntents {
    async fn create(&self, intent: &UploadIntent) -> Result<bool, IntentStoreError> {
        self.inner.create(intent).await
    }
    async fn create_idempotent(
        &self,
        intent: &UploadIntent,
        claim: &IdempotencyClaim,
    ) -> Result<CreateOutcome, IntentStoreError> {
        self.inner.create_idempotent(intent, claim).await
    }
    async fn get(&self, id: UploadId) -> Result<Option<UploadIntent>, IntentStoreError> {
        self.inner.get(id).await
    }
    async fn transition(
        &self,
        id: UploadId,
        transition: Transition,
    ) -> Result<TransitionResult, IntentStoreError> {
        if self.faults.strike() {
            return Err(IntentStoreError {
                message: self.faults.io_error().to_string(),
                retry: self.faults.retry(),
            });
        }
        self.inner.transition(id, transition).await
    }
}

struct FaultyEvents {
    inner: Arc<JsonlEventSink>,
    faults: Arc<Faults>,
}

#[async_trait]
impl EventSink for FaultyEvents {
    async fn publish(&self, event: &PipelineEvent) -> Result<(), EventSinkError> {
        if self.faults.strike() {
            return Err(EventSinkError {
                message: self.faults.io_error().to_string(),
                retry: self.faults.retry(),
            });
        }
        self.inner.publish(event).await
    }
}

/// One upload to run: its bytes, declared type and purpose, and where it must end.
#[derive(Debug, Clone)]
struct Path {
    name: &'static str,
    purpose: &'static str,
    declared_type: &'static str,
    bytes: Vec<u8>,
    /// `None`: trusted; otherwise the quarantine reason.
    expect: Option<ReasonCode>,
    /// Uploaded without an intent.
    no_intent: bool,
}

fn paths() -> Vec<Path> {
    let fixture = |name: &str| {
        std::fs::read(
            airlock_tests::repo_root()
                .join("fixtures/objects")
                .join(name),
        )
        .unwrap()
    };
    vec![
        Path {
            name: "clean text, promoted",
            purpose: "document",
            declared_type: "text/plain",
            bytes: b"quarterly numbers, nothing else\n".to_vec(),
            expect: None,
            no_intent: false,
        },
        Path {
            name: "image, sanitized with variants, promoted",
            purpose: "avatar",
            declared_type: "image/png",
            bytes: fixture("badge.png"),
            expect: None,
            no_intent: false,
        },
        Path {
            name: "EICAR, quarantined as infected",
            purpose: "document",
            declared_type: "text/plain",
            bytes: eicar(),
            expect: Some(ReasonCode::Infected),
            no_intent: false,
        },
        Path {
            name: "executable declared as PDF, quarantined by inspect",
            purpose: "document",
            declared_type: "application/pdf",
            bytes: fixture("tool.bin"),
            expect: Some(ReasonCode::TypeMismatch),
            no_intent: false,
        },
        Path {
            name: "no intent, quarantined",
            purpose: "document",
            declared_type: "text/plain",
            bytes: b"who sent this?\n".to_vec(),
            expect: Some(ReasonCode::NoIntent),
            no_intent: true,
        },
    ]
}

/// A data dir with one uploaded object (and its intent).
struct World {
    dir: tempfile::TempDir,
    store: FsStore,
    intents: SqliteIntentStore,
    events: Arc<JsonlEventSink>,
    upload: UploadKey,
    path: Path,
}

async fn world(path: &Path) -> World {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path().join("bucket")).unwrap();
    let intents = SqliteIntentStore::open(dir.path().join("intents.sqlite")).unwrap();
    let events = Arc::new(JsonlEventSink::open(dir.path().join("events.jsonl")).unwrap());
    let upload = UploadKey::new(
        TenantId::new("acme").unwrap(),
        Purpose::new(path.purpose).unwrap(),
        UploadId::generate(),
    );
    if !path.no_intent {
        let now = chrono::Utc::now();
        intents
            .create(&UploadIntent {
                id: upload.upload_id,
                tenant: upload.tenant.clone(),
                purpose: upload.purpose.clone(),
                declared_type: path.declared_type.into(),
                declared_size: path.bytes.len() as u64,
                sha256: None,
                filename: None,
                uploader: Some("user-1".into()),
                state: IntentState::Pending,
                created_at: now,
                updated_at: now,
                expires_at: now + chrono::Duration::hours(1),
                outcome: None,
                multipart_upload_id: None,
            })
            .await
            .unwrap();
    }
    store
        .put(
            &upload.incoming(),
            path.bytes.clone(),
            path.declared_type,
            WriteMode::Overwrite,
        )
        .await
        .unwrap();
    World {
        dir,
        store,
        intents,
        events,
        upload,
        path: path.clone(),
    }
}

fn worker(w: &World, scanner: &Arc<dyn Scanner>, faults: &Arc<Faults>) -> Worker {
    let intents = Arc::new(FaultyIntents {
        inner: w.intents.clone(),
        faults: Arc::clone(faults),
    });
    Worker {
        store: Arc::new(FaultyStore {
            inner: w.store.clone(),
            faults: Arc::clone(faults),
            // Uploads promoted as they are (not re-encoded images) must be the scanned bytes.
            trusted: (w.path.expect.is_none() && w.path.purpose == "document")
                .then(|| (w.upload.trusted(), sha(&w.path.bytes))),
        }),
        intents,
        scanner: Arc::clone(scanner),
        events: Arc::new(FaultyEvents {
            inner: Arc::clone(&w.events),
            faults: Arc::clone(faults),
        }),
        dead_letters: Arc::new(w.intents.clone()) as Arc<dyn DeadLetters>,
        clock: Arc::new(SystemClock),
        policies: Arc::new(Policies::builtin()),
        media: Arc::new(airlock_media::ImageProcessor),
        media_permits: Arc::new(tokio::sync::Semaphore::new(1)),
        bucket: "b".into(),
        heartbeat_every: airlock_core::worker::HEARTBEAT_EVERY,
        freshness: airlock_core::definitions::FreshnessRule::accepting_undated(None),
    }
}

/// The run stopped: the process "crashed".
#[derive(Debug)]
struct Crashed;

/// Runs one stage as the state machine would: retried on `Airlock.Transient`, an error
/// after the retries returned.
async fn stage(
    worker: &Worker,
    faults: &Faults,
    name: Stage,
    object: &ObjectRef,
    findings: &Value,
) -> Result<Result<Value, StageError>, Crashed> {
    let task = TaskMessage {
        task_token: "t".into(),
        stage: name,
        object: object.clone(),
        findings: findings.clone(),
    };
    let mut attempt = 0;
    loop {
        let result = worker.run(&task).await;
        if faults.crashed.load(Ordering::SeqCst) {
            return Err(Crashed);
        }
        match result {
            Err(e) if e.retry == Retry::Transient && attempt < 3 => attempt += 1,
            other => return Ok(other),
        }
    }
}

fn caught(e: &StageError) -> Value {
    json!({"Error": e.error_name(), "Cause": e.to_string()})
}

/// One execution of the pipeline, in the order of `statemachine/pipeline.asl.json`.
async fn execute(worker: &Worker, faults: &Faults, object: &ObjectRef) -> Result<(), Crashed> {
    let mut state = json!({"object": object, "scan": null, "media": null});
    let settle = async |state: &mut Value, to: Stage| -> Result<(), Crashed> {
        let result = stage(worker, faults, to, object, state).await?;
        if let Err(e) = result {
            let failure = if to == Stage::Promote {
                "promoteFailure"
            } else {
                "quarantineFailure"
            };
            state[failure] = caught(&e);
            stage(worker, faults, Stage::RecordFailure, object, state)
                .await?
                .ok();
        }
        Ok(())
    };
    match stage(worker, faults, Stage::Inspect, object, &state).await? {
        Err(e) => {
            state["inspectFailure"] = caught(&e);
            return settle(&mut state, Stage::Quarantine).await;
        }
        Ok(inspect) => {
            let outcome = inspect["outcome"].as_str().unwrap_or_default().to_owned();
            let settled_ready = inspect["state"] == "READY";
            state["inspect"] = inspect;
            match outcome.as_str() {
                "skip" => return Ok(()),
                "settled" if settled_ready => return settle(&mut state, Stage::Promote).await,
                "reject" | "settled" => return settle(&mut state, Stage::Quarantine).await,
                _ => {}
            }
        }
    }
    match stage(worker, faults, Stage::Scan, object, &state).await? {
        Err(e) => {
            state["scanFailure"] = caught(&e);
            return settle(&mut state, Stage::Quarantine).await;
        }
        Ok(scan) => {
            let pass = scan["outcome"] == "pass";
            state["scan"] = scan;
            if !pass {
                return settle(&mut state, Stage::Quarantine).await;
            }
        }
    }
    if state["inspect"]["media"] == true {
        match stage(worker, faults, Stage::Media, object, &state).await? {
            Err(e) => {
                state["mediaFailure"] = caught(&e);
                return settle(&mut state, Stage::Quarantine).await;
            }
            Ok(media) => {
                let pass = media["outcome"] == "pass";
                state["media"] = media;
                if !pass {
                    return settle(&mut state, Stage::Quarantine).await;
                }
            }
        }
    }
    settle(&mut state, Stage::Promote).await
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Every file below `dir`, relative.
fn files(dir: &std::path::Path) -> Vec<String> {
    airlock_tests::snapshot(dir).into_keys().collect()
}

/// What airlock promises, checked on a world after the rerun.
async fn check_invariants(w: &World, label: &str) {
    let bucket = w.store.root();
    let incoming = w.store.head(&w.upload.incoming()).await.unwrap();
    let trusted = w.store.head(&w.upload.trusted()).await.unwrap();
    let quarantined = w
        .store
        .head(&w.upload.incoming().replacen("incoming/", "quarantine/", 1))
        .await
        .unwrap();
    let events = JsonlEventSink::read_all(w.events.path()).unwrap();
    let ready = events
        .iter()
        .filter(|e| e.kind == PipelineEventKind::Ready)
        .count();
    let quarantine_events: Vec<_> = events
        .iter()
        .filter(|e| e.kind == PipelineEventKind::Quarantined)
        .collect();
    assert!(incoming.is_none(), "{label}: still in incoming/");
    let intent = w.intents.get(w.upload.upload_id).await.unwrap();
    match w.path.expect {
        None => {
            assert!(trusted.is_some(), "{label}: not in trusted/");
            assert!(quarantined.is_none(), "{label}: also quarantined");
            if w.path.purpose == "document" {
                let bytes = std::fs::read(bucket.join(w.upload.trusted())).unwrap();
                assert_eq!(sha(&bytes), sha(&w.path.bytes), "{label}: trusted bytes");
            }
            assert_eq!(intent.unwrap().state, IntentState::Ready, "{label}");
            assert!(ready >= 1, "{label}: upload.ready never published");
            assert!(quarantine_events.is_empty(), "{label}: conflicting events");
        }
        Some(reason) => {
            assert!(trusted.is_none(), "{label}: trusted!");
            let records: Vec<_> = files(bucket)
                .into_iter()
                .filter(|f| {
                    f.starts_with("quarantine/")
                        && std::path::Path::new(f)
                            .extension()
                            .is_some_and(|e| e == "json")
                })
                .collect();
            assert_eq!(records.len(), 1, "{label}: records {records:?}");
            let record: QuarantineRecord =
                serde_json::from_slice(&std::fs::read(bucket.join(&records[0])).unwrap()).unwrap();
            assert_eq!(record.reason, reason, "{label}: record");
            assert_eq!(record.sha256, sha(&w.path.bytes), "{label}: record hash");
            let placed = std::fs::read(bucket.join(&record.quarantine_key)).unwrap();
            assert_eq!(sha(&placed), record.sha256, "{label}: evidence bytes");
            assert_eq!(ready, 0, "{label}: conflicting events");
            if let Some(intent) = intent {
                assert_eq!(intent.state, IntentState::Quarantined, "{label}");
                assert_eq!(intent.outcome.unwrap().reason, Some(reason), "{label}");
            }
            if !w.path.no_intent {
                assert!(!quarantine_events.is_empty(), "{label}: never announced");
            }
            assert!(
                quarantine_events.iter().all(|e| e.reason == Some(reason)),
                "{label}: conflicting reasons {quarantine_events:?}"
            );
        }
    }
    let leftovers: Vec<_> = files(bucket)
        .into_iter()
        .filter(|f| f.starts_with("staging/") || f.starts_with(".airlock-tmp/"))
        .collect();
    assert!(leftovers.is_empty(), "{label}: leftovers {leftovers:?}");
}

/// Runs `path` with a fault at operation `at`, then again with none; checks the invariants.
async fn run_with_fault(
    path: &Path,
    scanner: &Arc<dyn Scanner>,
    fault: Fault,
    at: Option<usize>,
) -> usize {
    let w = world(path).await;
    let object = ObjectRef::new("b", w.upload.incoming());
    let faults = Faults::new(at, fault);
    let first = execute(&worker(&w, scanner, &faults), &faults, &object).await;
    let operations = faults.seen.load(Ordering::SeqCst);
    if first.is_err() || at.is_some() {
        // The rerun: the event is delivered again, to a process with nothing failing (and
        // the store opened anew, as a restarted process would: stale temporary files swept).
        let healthy = Faults::new(None, fault);
        let store = FsStore::open(w.store.root()).unwrap();
        store.sweep_temp(std::time::Duration::ZERO).unwrap();
        execute(&worker(&w, scanner, &healthy), &healthy, &object)
            .await
            .expect("nothing fails on the rerun");
        airlock_embedded::sweep::sweep_staging(w.store.root(), &w.intents)
            .await
            .unwrap();
    }
    let label = format!("{} / {fault:?} at {at:?}", path.name);
    check_invariants(&w, &label).await;
    drop(w.dir);
    operations
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_settling_path_survives_a_fault_at_every_operation() {
    let clamd = ManagedClamd::builder()
        .database_dir(airlock_tests::repo_root().join("fixtures/clamav"))
        .start()
        .expect("clamd starts (install clamav-daemon: scripts/setup.sh)");
    let scanner: Arc<dyn Scanner> = Arc::new(clamd.scanner());
    let mut covered = 0;
    for path in paths() {
        // A clean run counts the operations the path makes.
        let operations = run_with_fault(&path, &scanner, Fault::Crash, None).await;
        assert!(operations > 0, "{}: no operations", path.name);
        for fault in [Fault::Crash, Fault::DiskFull] {
            for at in 1..=operations {
                run_with_fault(&path, &scanner, fault, Some(at)).await;
                covered += 1;
            }
        }
        eprintln!(
            "{}: {operations} operations, each crashed and failed with a full disk",
            path.name
        );
    }
    eprintln!("fault injection: {covered} injection points covered, invariants held after each");
    assert!(covered >= 40, "only {covered} injection points");
}
