//! The `ingest` batch handler over an SQS event fixture (the shape Lambda delivers): each
//! message stands alone, duplicates collapse, bad messages fail alone.

use std::collections::HashSet;
use std::sync::Mutex;

use airlock_core::ports::{ExecutionStarter, Retry, StartError, StartOutcome};
use airlock_lambda::ingest::{IngestSummary, handle_batch};
use async_trait::async_trait;
use aws_lambda_events::event::sqs::SqsEvent;

/// Names executions as Step Functions does: a repeated name is "already exists". Names in
/// `failing` fail transiently.
#[derive(Default)]
struct Names {
    seen: Mutex<HashSet<String>>,
    inputs: Mutex<Vec<serde_json::Value>>,
    failing: Vec<String>,
}

#[async_trait]
impl ExecutionStarter for Names {
    async fn start(&self, name: &str, input: &str) -> Result<StartOutcome, StartError> {
        if self.failing.iter().any(|f| name.ends_with(f.as_str())) {
            return Err(StartError {
                name: name.to_owned(),
                message: "ThrottlingException: rate exceeded".into(),
                retry: Retry::Transient,
                source: None,
            });
        }
        self.inputs
            .lock()
            .unwrap()
            .push(serde_json::from_str(input).unwrap());
        if self.seen.lock().unwrap().insert(name.to_owned()) {
            Ok(StartOutcome::Started)
        } else {
            Ok(StartOutcome::AlreadyExists)
        }
    }
}

fn batch() -> SqsEvent {
    let text = std::fs::read_to_string(format!(
        "{}/tests/fixtures/sqs-s3-batch.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn failed_ids(response: &aws_lambda_events::event::sqs::SqsBatchResponse) -> Vec<String> {
    response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect()
}

#[tokio::test]
async fn a_batch_starts_each_object_once_and_fails_only_the_bad_message() {
    let names = Names::default();
    let metrics = Mutex::new(Vec::new());
    let sink = |metric: &airlock_emf::StageMetric| {
        metrics
            .lock()
            .unwrap()
            .push((metric.stage.clone(), metric.outcome.clone()));
    };
    let (response, summary) = handle_batch(&names, "uploads-bucket", batch(), Some(&sink)).await;
    assert_eq!(
        summary,
        IngestSummary {
            started: 2,
            duplicates: 1,
            skipped: 2,
            failed: 1
        }
    );
    assert_eq!(failed_ids(&response), vec!["m4"]);
    // One metric per object the batch announced, under the ingest stage.
    let mut outcomes: Vec<String> = metrics
        .lock()
        .unwrap()
        .iter()
        .map(|(stage, outcome)| {
            assert_eq!(stage, "ingest");
            outcome.clone()
        })
        .collect();
    outcomes.sort();
    assert_eq!(
        outcomes,
        [
            "duplicate",
            "failed",
            "skipped",
            "skipped",
            "started",
            "started"
        ]
    );
    let inputs = names.inputs.lock().unwrap().clone();
    assert_eq!(
        inputs[0]["object"]["key"],
        "incoming/acme/avatar/01a235b4-e24b-7545-9cfd-41c4a7845f97"
    );
    assert_eq!(inputs[0]["object"]["versionId"], "v1");
    assert!(
        inputs[0]["object"].get("eventTime").is_none(),
        "the input is the same for every delivery"
    );
    assert_eq!(inputs[0], inputs[1]);

    // Redelivered after the executions closed: acknowledged, not failed.
    let (response, summary) = handle_batch(&names, "uploads-bucket", batch(), None).await;
    assert_eq!(summary.started, 0);
    assert_eq!(summary.duplicates, 3);
    assert_eq!(failed_ids(&response), vec!["m4"]);
}

#[tokio::test]
async fn a_failed_start_fails_its_message_only() {
    let names = Names {
        failing: vec!["01a235b4-e24b-7545-9cfd-41c4a7845f98".into()],
        ..Names::default()
    };
    let (response, summary) = handle_batch(&names, "uploads-bucket", batch(), None).await;
    assert_eq!(failed_ids(&response), vec!["m4", "m6"]);
    assert_eq!(summary.started, 1);
}

#[test]
fn the_fixture_survives_a_round_trip() {
    let event = batch();
    let again: SqsEvent = serde_json::from_value(serde_json::to_value(&event).unwrap()).unwrap();
    assert_eq!(
        serde_json::to_value(&event).unwrap(),
        serde_json::to_value(&again).unwrap()
    );
}
