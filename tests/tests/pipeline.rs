//! The pipeline end to end on one machine: the real state machine file, the local executor,
//! the workers, the filesystem store, SQLite, and a real clamd with the project's signatures.

use std::path::Path;
use std::sync::Arc;

use airlock_clamd::{ClamdAddress, ClamdConfig, ClamdScanner};
use airlock_core::intent::IntentState;
use airlock_core::ports::{IntentStore, ObjectReader, Scanner};
use airlock_core::stages::QuarantineRecord;
use airlock_core::verdict::ReasonCode;
use airlock_embedded::cases::Case;
use airlock_embedded::pipeline::PIPELINE_DEFINITION;
use airlock_embedded::{EmbeddedPipeline, PipelineConfig, Settlement};
use airlock_local::JsonlEventSink;
use airlock_tests::{load_cases, repo_root, run_case, snapshot, start_clamd};
use serde_json::{Value, json};

fn pipeline_at(data_dir: &Path, scanner: Arc<dyn Scanner>) -> EmbeddedPipeline {
    let mut config = PipelineConfig::new(
        data_dir,
        "airlock-uploads",
        scanner,
        Arc::new(airlock_media::ImageProcessor),
    );
    // Retries as written would wait seconds; the schedule is tested in airlock-asl.
    config.delay_scale = 0.001;
    EmbeddedPipeline::start(config).unwrap()
}

/// Where each case must land, stated here independently of the case files.
fn expected(name: &str) -> (&'static str, Option<ReasonCode>) {
    use ReasonCode::*;
    match name {
        n if n.starts_with("clean-") => ("trusted", None),
        "type-mismatch" | "executable-as-pdf" => ("quarantine", Some(TypeMismatch)),
        "empty-file" => ("quarantine", Some(EmptyFile)),
        "type-not-allowed" => ("quarantine", Some(TypeNotAllowed)),
        "size-mismatch" => ("quarantine", Some(SizeMismatch)),
        "too-large" => ("quarantine", Some(TooLarge)),
        "checksum-mismatch" => ("quarantine", Some(ChecksumMismatch)),
        "intent-expired" => ("quarantine", Some(IntentExpired)),
        "purpose-unknown" => ("quarantine", Some(PurposeUnknown)),
        "no-intent" => ("quarantine", Some(NoIntent)),
        "image-truncated" => ("quarantine", Some(ImageInvalid)),
        "image-pixel-bomb" => ("quarantine", Some(ImageTooLarge)),
        "eicar" | "eicar-in-noise" | "clamav-testfile-pdf" | "clamav-testfile-zip" => {
            ("quarantine", Some(Infected))
        }
        other => panic!("case {other} has no expectation in this test"),
    }
}

async fn replay_all(pipeline: &EmbeddedPipeline, cases: &[Case]) -> Vec<(String, Settlement)> {
    let mut out = Vec::new();
    for case in cases {
        let run = run_case(pipeline, case).await;
        out.push((case.name.clone(), run.settlement));
    }
    out
}

/// Asserts that a case's object is in exactly the place it should be, with its record and
/// intent state.
async fn assert_settled(
    pipeline: &EmbeddedPipeline,
    case: &Case,
    name: &str,
    settlement: &Settlement,
) {
    let bucket = pipeline.config().bucket_root();
    let (destination, reason) = expected(name);
    assert_eq!(settlement.label(), destination, "{name}: {settlement:?}");
    let key = case.key();
    let incoming = pipeline.store().head(&key).await.unwrap();
    assert!(incoming.is_none(), "{name}: still in incoming/");
    let trusted_key = key.replacen("incoming/", "trusted/", 1);
    let quarantine_key = key.replacen("incoming/", "quarantine/", 1);
    let in_trusted = pipeline.store().head(&trusted_key).await.unwrap().is_some();
    let in_quarantine = pipeline
        .store()
        .head(&quarantine_key)
        .await
        .unwrap()
        .is_some();
    match settlement {
        Settlement::Trusted { key } => {
            assert_eq!(key, &trusted_key);
            assert!(in_trusted && !in_quarantine, "{name}: exactly one copy");
            // Images are promoted re-encoded: nothing appended to the upload survives.
            let promoted = std::fs::read(bucket.join(&trusted_key)).unwrap();
            let payload = b"payload from a GIF";
            assert!(
                !promoted.windows(payload.len()).any(|w| w == payload),
                "{name}: payload promoted"
            );
        }
        Settlement::Quarantine {
            key,
            reason: got,
            signature,
            ..
        } => {
            assert_eq!(key, &quarantine_key);
            assert_eq!(Some(*got), reason, "{name}");
            assert!(in_quarantine && !in_trusted, "{name}: exactly one copy");
            let record: QuarantineRecord = serde_json::from_slice(
                &std::fs::read(bucket.join(format!("{quarantine_key}.json"))).unwrap(),
            )
            .unwrap();
            assert_eq!(record.reason, *got);
            assert_eq!(record.original_key, case.key());
            assert_eq!(record.sha256.len(), 64);
            let bytes = std::fs::read(bucket.join(&quarantine_key)).unwrap();
            assert_eq!(record.size, bytes.len() as u64, "{name}");
            if *got == ReasonCode::Infected {
                let signature = signature.as_deref().unwrap_or_default();
                assert!(signature.ends_with(".UNOFFICIAL"), "{name}: {signature}");
                assert_eq!(record.signature.as_deref(), Some(signature));
                assert!(
                    record
                        .engine
                        .as_deref()
                        .unwrap_or_default()
                        .starts_with("ClamAV ")
                );
            }
            if let Some(intent) = &case.file.intent {
                assert_eq!(record.intent_id, Some(intent.id.to_string()));
                assert_eq!(record.uploader, intent.uploader);
                assert_eq!(record.tenant.as_deref(), Some(intent.tenant.as_str()));
            }
        }
        other => panic!("{name}: {other:?}"),
    }
    if let Some(intent) = &case.file.intent {
        let stored = pipeline.intents().get(intent.id).await.unwrap().unwrap();
        let want = if destination == "trusted" {
            IntentState::Ready
        } else {
            IntentState::Quarantined
        };
        assert_eq!(stored.state, want, "{name}");
        let outcome = stored.outcome.expect("outcome recorded");
        assert_eq!(outcome.reason, reason, "{name}");
        if destination == "trusted" || reason == Some(ReasonCode::Infected) {
            let engine = outcome.engine.unwrap_or_default();
            assert!(engine.starts_with("ClamAV "), "{name}: engine {engine:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_lands_where_it_should_and_a_second_replay_changes_nothing() {
    let clamd = start_clamd();
    let dir = tempfile::tempdir().unwrap();
    let cases = load_cases();
    assert!(cases.len() >= 20, "found {} cases", cases.len());
    let pipeline = pipeline_at(dir.path(), Arc::new(clamd.scanner()));
    let bucket = pipeline.config().bucket_root();

    let first = replay_all(&pipeline, &cases).await;
    for ((name, settlement), case) in first.iter().zip(&cases) {
        assert_settled(&pipeline, case, name, settlement).await;
    }
    let events_before = JsonlEventSink::read_all(pipeline.config().events_path()).unwrap();
    // One event per upload, saying where it went.
    assert_eq!(events_before.len(), cases.len());
    for (case, (name, settlement)) in cases.iter().zip(&first) {
        let key = case.key();
        let id = key.rsplit('/').next().unwrap();
        let matching: Vec<_> = events_before
            .iter()
            .filter(|e| e.upload_id.to_string() == id)
            .collect();
        assert_eq!(matching.len(), 1, "{name}");
        let kind = serde_json::to_value(matching[0].kind).unwrap();
        let want = if settlement.label() == "trusted" {
            "upload.ready"
        } else {
            "upload.quarantined"
        };
        assert_eq!(kind, want, "{name}");
    }
    let store_before = snapshot(&bucket);

    // The same cases again in this process: an event with a new sequencer finds its object
    // settled; one without a sequencer (the emulator's shape) joins the first execution.
    // Either way nothing changes.
    let again = replay_all(&pipeline, &cases).await;
    for ((name, settlement), (_, before)) in again.iter().zip(&first) {
        assert!(
            matches!(settlement, Settlement::Skipped { .. }) || settlement == before,
            "{name}: replay in the same process did {settlement:?}"
        );
    }
    assert_eq!(snapshot(&bucket), store_before);
    pipeline.shutdown().await;

    // And from a new process over the same data: every object is found settled.
    let pipeline = pipeline_at(dir.path(), Arc::new(clamd.scanner()));
    let second = replay_all(&pipeline, &cases).await;
    for (name, settlement) in &second {
        assert!(
            matches!(settlement, Settlement::Skipped { .. }),
            "{name}: second run did {settlement:?}"
        );
    }
    assert_eq!(snapshot(&bucket), store_before);
    assert_eq!(
        JsonlEventSink::read_all(pipeline.config().events_path()).unwrap(),
        events_before
    );
    for case in &cases {
        if let Some(intent) = &case.file.intent {
            let trail = pipeline.intents().transitions(intent.id).await.unwrap();
            assert!(trail.len() <= 2, "{}: {trail:?}", case.name);
        }
    }
    pipeline.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scanner_that_stays_down_quarantines_as_scan_unavailable() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let scanner = ClamdScanner::new(ClamdConfig::new(ClamdAddress::Tcp(format!(
        "127.0.0.1:{port}"
    ))));
    let dir = tempfile::tempdir().unwrap();
    let pipeline = pipeline_at(dir.path(), Arc::new(scanner));
    let cases: Vec<Case> = load_cases()
        .into_iter()
        .filter(|c| c.name == "clean-jpeg")
        .collect();
    let results = replay_all(&pipeline, &cases).await;
    let (_, settlement) = &results[0];
    let Settlement::Quarantine { reason, detail, .. } = settlement else {
        panic!("{settlement:?}");
    };
    assert_eq!(*reason, ReasonCode::ScanUnavailable);
    assert!(detail.contains("Airlock.Transient"), "{detail}");
    let intent = cases[0].file.intent.as_ref().unwrap();
    let stored = pipeline.intents().get(intent.id).await.unwrap().unwrap();
    assert_eq!(stored.state, IntentState::Quarantined);
    let trusted = cases[0].key().replacen("incoming/", "trusted/", 1);
    assert!(pipeline.store().head(&trusted).await.unwrap().is_none());
    pipeline.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_camera_photo_is_promoted_sanitized_oriented_and_with_variants() {
    let clamd = start_clamd();
    let dir = tempfile::tempdir().unwrap();
    let pipeline = pipeline_at(dir.path(), Arc::new(clamd.scanner()));
    let cases: Vec<Case> = load_cases()
        .into_iter()
        .filter(|c| c.name == "clean-camera-photo")
        .collect();
    let results = replay_all(&pipeline, &cases).await;
    assert_eq!(results[0].1.label(), "trusted", "{:?}", results[0].1);

    let bucket = pipeline.config().bucket_root();
    let trusted_key = cases[0].key().replacen("incoming/", "trusted/", 1);
    let raw = std::fs::read(repo_root().join("fixtures/objects/camera-photo.jpg")).unwrap();
    let sanitized = std::fs::read(bucket.join(&trusted_key)).unwrap();
    assert_ne!(sanitized, raw, "the upload itself must not be promoted");
    let info = airlock_media::probe(&sanitized).unwrap();
    // Stored 1600x1200 with orientation 6: upright it is 1200x1600.
    assert_eq!((info.width, info.height), (1200, 1600));

    let expected = [
        ("w2048", 1200, 1600),
        ("w1024", 768, 1024),
        ("w256", 192, 256),
    ];
    for (name, width, height) in expected {
        let bytes = std::fs::read(bucket.join(format!("{trusted_key}.{name}.jpg"))).unwrap();
        let info = airlock_media::probe(&bytes).unwrap();
        assert_eq!((info.width, info.height), (width, height), "{name}");
    }
    let mut outputs = vec![sanitized];
    for (name, ..) in expected {
        outputs.push(std::fs::read(bucket.join(format!("{trusted_key}.{name}.jpg"))).unwrap());
    }
    for bytes in &outputs {
        for needle in [
            &b"Exif\0\0"[..],
            b"Airlock Test Camera",
            b"secret comment",
            b"airlock fixture generator",
        ] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{} left in an output",
                String::from_utf8_lossy(needle)
            );
        }
    }

    let record: Value =
        serde_json::from_slice(&std::fs::read(bucket.join(format!("{trusted_key}.json"))).unwrap())
            .unwrap();
    let metadata = &record["metadata"];
    assert_eq!(metadata["orientation"], 6);
    assert_eq!(metadata["orientationApplied"], true);
    assert_eq!(metadata["gpsPresent"], true);
    assert_eq!(metadata["cameraMake"], "Airlock Test Camera Co.");
    assert!(
        metadata["placeholder"]
            .as_str()
            .is_some_and(|p| !p.is_empty())
    );
    let text = record.to_string().to_lowercase();
    assert!(
        !text.contains("latitude") && !text.contains("longitude"),
        "GPS coordinates must not be recorded: {record}"
    );

    let intent = cases[0].file.intent.as_ref().unwrap();
    let stored = pipeline.intents().get(intent.id).await.unwrap().unwrap();
    let media = stored
        .outcome
        .unwrap()
        .media
        .expect("media recorded with the intent");
    assert_eq!(media["variants"].as_array().unwrap().len(), 3);
    assert_eq!(media["original"]["key"], trusted_key);

    // Nothing is left waiting in staging/.
    assert!(snapshot(&bucket).keys().all(|k| !k.starts_with("staging/")));
    pipeline.shutdown().await;
}

/// The pipeline with Scan given one attempt of at most 3 s that must show signs of life
/// every second, against a clamd that accepts connections and never answers; `heartbeat_every`
/// is how often the worker says it is alive. Returns why the Scan attempt timed out.
async fn scan_against_a_hung_clamd(heartbeat_every: std::time::Duration) -> (String, Settlement) {
    // A real socket that accepts and then says nothing, as a wedged clamd would.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let hung = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    // It gives up reading after 4 s, after the 3 s the task may take: the task's limit,
    // not the scanner's, ends a run that keeps its heartbeats.
    let scanner = ClamdScanner::new(
        ClamdConfig::new(ClamdAddress::Tcp(address.to_string()))
            .io_timeout(std::time::Duration::from_secs(4)),
    );

    let mut definition: Value = serde_json::from_str(PIPELINE_DEFINITION).unwrap();
    let scan = &mut definition["States"]["Scan"];
    scan["TimeoutSeconds"] = json!(3);
    scan["HeartbeatSeconds"] = json!(1);
    scan["Retry"] = json!([]);
    let dir = tempfile::tempdir().unwrap();
    let mut config = PipelineConfig::new(
        dir.path(),
        "airlock-uploads",
        Arc::new(scanner),
        Arc::new(airlock_media::ImageProcessor),
    );
    config.definition = definition.to_string();
    config.delay_scale = 0.001;
    config.heartbeat_every = heartbeat_every;
    let pipeline = EmbeddedPipeline::start(config).unwrap();
    let case = load_cases()
        .into_iter()
        .find(|c| c.name == "clean-pdf")
        .expect("the clean-pdf case");
    let run = run_case(&pipeline, &case).await;
    pipeline.shutdown().await;
    hung.abort();
    (
        timed_out_with(&run.history).unwrap_or_default(),
        run.settlement,
    )
}

/// The cause of the first `TaskTimedOut` event in an execution history.
fn timed_out_with(history: &Value) -> Option<String> {
    match history {
        Value::Object(map) => map
            .get("taskTimedOutEventDetails")
            .and_then(|details| details["cause"].as_str().map(str::to_owned))
            .or_else(|| map.values().find_map(timed_out_with)),
        Value::Array(items) => items.iter().find_map(timed_out_with),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_stage_keeps_its_task_alive_with_heartbeats() {
    // WHEN the worker says it is alive every 200 ms while the scan hangs
    let (failed, settlement) =
        scan_against_a_hung_clamd(std::time::Duration::from_millis(200)).await;
    // THEN the task lives until its own time limit, not the heartbeat limit, and the
    // object is quarantined as unscannable, never promoted
    assert!(failed.contains("TimeoutSeconds of 3s"), "{failed}");
    assert!(
        matches!(
            settlement,
            Settlement::Quarantine {
                reason: ReasonCode::ScanUnavailable,
                ..
            }
        ),
        "{settlement:?}"
    );

    // AND without heartbeats in time the same task dies of silence after one second
    let (failed, _) = scan_against_a_hung_clamd(std::time::Duration::from_mins(1)).await;
    assert!(failed.contains("HeartbeatSeconds of 1s"), "{failed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_png_is_processed_from_a_spooled_file_with_the_same_result() {
    // GIVEN a photo PNG over the spooling threshold (noise does not compress)
    let (width, height) = (1400u32, 1100u32);
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let pixels: Vec<u8> = (0..width * height * 3)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[5]
        })
        .collect();
    let mut png_bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut png_bytes, width, height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().unwrap();
        writer.write_image_data(&pixels).unwrap();
    }
    assert!(png_bytes.len() as u64 >= airlock_core::stages::SPOOL_FROM_BYTES);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("big.png"), &png_bytes).unwrap();
    let case_path = dir.path().join("big-png.json");
    let case = Case::from_value(
        &case_path,
        json!({
            "description": "a PNG large enough to be spooled",
            "intent": {
                "id": "01937a3b-33d0-704a-a006-1a2b3c4d9f01",
                "tenant": "acme",
                "purpose": "photo",
                "declaredType": "image/png",
                "filename": "big.png"
            },
            "object": { "file": "big.png" },
            "event": "s3-put",
            "expect": { "destination": "trusted", "intentState": "READY" }
        }),
    )
    .unwrap();

    // WHEN it goes through the pipeline
    let clamd = start_clamd();
    let pipeline = pipeline_at(&dir.path().join("data"), Arc::new(clamd.scanner()));
    let results = replay_all(&pipeline, std::slice::from_ref(&case)).await;

    // THEN it is promoted, and its sanitized original is exactly what the library makes
    // of the bytes in memory
    assert_eq!(results[0].1.label(), "trusted", "{:?}", results[0].1);
    let trusted_key = case.key().replacen("incoming/", "trusted/", 1);
    let promoted = std::fs::read(pipeline.config().bucket_root().join(&trusted_key)).unwrap();
    let policies = &pipeline.config().policies;
    let policy = policies
        .get(&airlock_core::keys::Purpose::new("photo").unwrap())
        .and_then(|p| p.media.clone())
        .expect("photo has a media policy");
    let in_memory = airlock_core::media::MediaProcessor::process(
        &airlock_media::ImageProcessor,
        &png_bytes,
        "image/png",
        &policy,
    )
    .unwrap();
    assert_eq!(promoted, in_memory.original.bytes);
    pipeline.shutdown().await;
}
