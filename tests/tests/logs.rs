//! What the pipeline logs, as JSON: every task runs in a span naming its stage, key, upload
//! id and execution, which the stages' own events carry; each settlement is one info event;
//! a failed task is a warning with its error name.

use std::io::Write;
use std::sync::{Arc, Mutex};

use airlock_clamd::{ClamdAddress, ClamdConfig, ClamdScanner, ManagedClamd};
use airlock_core::ports::Scanner;
use airlock_embedded::cases::Case;
use airlock_embedded::{EmbeddedPipeline, PipelineConfig, PipelineRun};
use airlock_tests::{repo_root, run_case};
use serde_json::Value;
use tracing_subscriber::fmt::MakeWriter;

/// Log output collected in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Self;

    fn make_writer(&'a self) -> Self {
        self.clone()
    }
}

impl Captured {
    /// Every line, parsed: a line that is not JSON fails the test.
    fn events(&self) -> Vec<Value> {
        let bytes = self.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect()
    }
}

/// Runs `work` on a single-threaded runtime with a JSON subscriber that writes into the
/// returned buffer (tasks spawned on that runtime run on this thread, so they log into it).
fn logged<T, F: Future<Output = T>>(filter: &str, work: F) -> (Captured, T) {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(captured.clone())
        .finish();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let output = tracing::subscriber::with_default(subscriber, || runtime.block_on(work));
    (captured, output)
}

fn case(name: &str) -> Case {
    let path = repo_root().join(format!("fixtures/cases/{name}.json"));
    let value: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    Case::from_value(&path, value).unwrap()
}

fn pipeline_at(data_dir: &std::path::Path, scanner: Arc<dyn Scanner>) -> EmbeddedPipeline {
    let mut config = PipelineConfig::new(
        data_dir,
        "airlock-uploads",
        scanner,
        Arc::new(airlock_media::ImageProcessor),
    );
    config.delay_scale = 0.001;
    EmbeddedPipeline::start(config).unwrap()
}

/// The upload id a case's key ends in.
fn upload_id(case: &Case) -> String {
    case.key().rsplit('/').next().unwrap().to_owned()
}

fn message(event: &Value) -> &str {
    event["fields"]["message"].as_str().unwrap_or("")
}

/// Events with this message from a task of this upload.
fn from_upload<'a>(events: &'a [Value], message_is: &str, id: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| message(e) == message_is && e["span"]["upload_id"] == id)
        .collect()
}

/// The span fields of a task event are those of the task it belongs to.
fn assert_task_span(event: &Value, stage: &str, case: &Case, run: &PipelineRun) {
    let span = &event["span"];
    assert_eq!(span["name"], "task", "{event}");
    assert_eq!(span["stage"], stage, "{event}");
    assert_eq!(span["key"], case.key().as_str(), "{event}");
    assert_eq!(span["upload_id"], upload_id(case).as_str(), "{event}");
    assert_eq!(span["execution"], run.execution_name.as_str(), "{event}");
}

#[test]
fn task_events_carry_their_task_and_each_settlement_is_one_info_event() {
    let clamd = ManagedClamd::builder()
        .database_dir(repo_root().join("fixtures/clamav"))
        .start()
        .expect("clamd starts (install clamav-daemon: scripts/setup.sh)");
    let dir = tempfile::tempdir().unwrap();
    let (eicar, csv) = (case("eicar"), case("clean-csv"));
    let (captured, (first, clean)) = logged("info,airlock_clamd=debug", async {
        let pipeline = pipeline_at(dir.path(), Arc::new(clamd.scanner()));
        let first = run_case(&pipeline, &eicar).await;
        // The same upload again: it is settled already, and says nothing new.
        run_case(&pipeline, &eicar).await;
        let clean = run_case(&pipeline, &csv).await;
        pipeline.shutdown().await;
        (first, clean)
    });
    let events = captured.events();
    let (first, clean) = (&first, &clean);
    assert_eq!(
        first.settlement.label(),
        "quarantine",
        "{:?}",
        first.settlement
    );
    assert_eq!(
        clean.settlement.label(),
        "trusted",
        "{:?}",
        clean.settlement
    );

    // An event from inside the scan stage (the scanner's own) carries the task's fields.
    for (case, run) in [(&eicar, first), (&csv, clean)] {
        let scans = from_upload(&events, "clamd scan", &upload_id(case));
        assert!(!scans.is_empty(), "no scan event for {}", case.name);
        for scan in scans {
            assert_eq!(scan["target"], "airlock_clamd::scanner", "{scan}");
            assert_task_span(scan, "scan", case, run);
        }
    }

    let eicar_id = upload_id(&eicar);
    let quarantined: Vec<_> = events
        .iter()
        .filter(|e| message(e) == "upload quarantined")
        .collect();
    assert_eq!(quarantined.len(), 1, "{quarantined:?}");
    let settled = quarantined[0];
    assert_eq!(settled["level"], "INFO", "{settled}");
    assert_eq!(
        settled["fields"]["upload_id"],
        eicar_id.as_str(),
        "{settled}"
    );
    assert_eq!(settled["fields"]["reason"], "infected", "{settled}");
    assert_eq!(settled["fields"]["rejected_by"], "scan", "{settled}");
    assert_eq!(settled["fields"]["settled_now"], true, "{settled}");
    assert_eq!(
        settled["fields"]["quarantine_key"],
        eicar.key().replacen("incoming/", "quarantine/", 1).as_str(),
        "{settled}"
    );
    assert_task_span(settled, "quarantine", &eicar, first);

    let promoted: Vec<_> = events
        .iter()
        .filter(|e| message(e) == "upload promoted")
        .collect();
    assert_eq!(promoted.len(), 1, "{promoted:?}");
    let settled = promoted[0];
    assert_eq!(settled["level"], "INFO", "{settled}");
    assert_eq!(settled["fields"]["upload_id"], upload_id(&csv).as_str());
    assert_eq!(
        settled["fields"]["trusted_key"],
        csv.key().replacen("incoming/", "trusted/", 1).as_str(),
        "{settled}"
    );
    assert_eq!(settled["fields"]["settled_now"], true, "{settled}");
    assert_task_span(settled, "promote", &csv, clean);
}

#[test]
fn a_failed_task_is_a_warning_with_its_error_name_in_its_task() {
    // A port nothing listens on: every scan attempt fails, transiently.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let scanner = Arc::new(ClamdScanner::new(ClamdConfig::new(ClamdAddress::Tcp(
        format!("127.0.0.1:{port}"),
    ))));
    let dir = tempfile::tempdir().unwrap();
    let csv = case("clean-csv");
    let (captured, run) = logged("info", async {
        let pipeline = pipeline_at(dir.path(), scanner);
        let run = run_case(&pipeline, &csv).await;
        pipeline.shutdown().await;
        run
    });
    let events = captured.events();
    let run = &run;
    let failures = from_upload(&events, "stage failed", &upload_id(&csv));
    assert!(!failures.is_empty(), "no failure logged");
    for failure in &failures {
        assert_eq!(failure["level"], "WARN", "{failure}");
        assert_eq!(failure["fields"]["error_name"], "Airlock.Transient");
        let error = failure["fields"]["error"].as_str().unwrap();
        assert!(error.contains(&port.to_string()), "{failure}");
        assert_task_span(failure, "scan", &csv, run);
    }
    // Retried, then quarantined as scan-unavailable: one settlement event, with that reason.
    let quarantined = from_upload(&events, "upload quarantined", &upload_id(&csv));
    assert_eq!(quarantined.len(), 1, "{quarantined:?}");
    assert_eq!(quarantined[0]["fields"]["reason"], "scan-unavailable");
}
