//! The JSONata version of the state machine (`statemachine/pipeline.jsonata.asl.json`)
//! against the JSONPath one: every fixture case replayed through each, with a real clamd,
//! must land the same way (trusted or quarantined, with the same reason and signature),
//! through the same states, with the same fields in the execution's output.

use std::path::Path;
use std::sync::Arc;

use airlock_clamd::ManagedClamd;
use airlock_core::ports::Scanner;
use airlock_embedded::cases::Case;
use airlock_embedded::pipeline::PIPELINE_DEFINITION;
use airlock_embedded::{EmbeddedPipeline, PipelineConfig, PipelineRun, Settlement};
use airlock_tests::{load_cases, repo_root, run_case, start_clamd};
use serde_json::Value;

fn pipeline_with(data_dir: &Path, scanner: Arc<dyn Scanner>, definition: &str) -> EmbeddedPipeline {
    let mut config = PipelineConfig::new(
        data_dir,
        "airlock-uploads",
        scanner,
        Arc::new(airlock_media::ImageProcessor),
    );
    definition.clone_into(&mut config.definition);
    // Retries as written would wait seconds; the schedule is tested in airlock-asl.
    config.delay_scale = 0.001;
    EmbeddedPipeline::start(config).unwrap()
}

/// What must be the same whichever definition ran: where the object went and why, the
/// states it went through, and the top-level fields of the execution's output.
#[derive(Debug, PartialEq)]
struct Outcome {
    label: &'static str,
    reason: Option<String>,
    signature: Option<String>,
    states: Vec<String>,
    output_fields: Vec<String>,
}

fn outcome(run: &PipelineRun) -> Outcome {
    let (reason, signature) = match &run.settlement {
        Settlement::Quarantine {
            reason, signature, ..
        } => (Some(reason.to_string()), signature.clone()),
        Settlement::Failed { error, .. } => (Some(error.clone()), None),
        _ => (None, None),
    };
    // The history as `GetExecutionHistory` lists it; the output is JSON text.
    let output = run
        .history
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|event| event.get("executionSucceededEventDetails"))
        .and_then(|details| details["output"].as_str())
        .and_then(|text| serde_json::from_str::<Value>(text).ok());
    let mut output_fields: Vec<String> = output
        .as_ref()
        .and_then(Value::as_object)
        .map(|fields| fields.keys().cloned().collect())
        .unwrap_or_default();
    output_fields.sort();
    Outcome {
        label: run.settlement.label(),
        reason,
        signature,
        states: run.states.iter().map(|s| s.state.clone()).collect(),
        output_fields,
    }
}

async fn replay(definition: &str, clamd: &ManagedClamd, cases: &[Case]) -> Vec<Outcome> {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = pipeline_with(dir.path(), Arc::new(clamd.scanner()), definition);
    let mut outcomes = Vec::new();
    for case in cases {
        outcomes.push(outcome(&run_case(&pipeline, case).await));
    }
    pipeline.shutdown().await;
    outcomes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jsonata_definition_settles_every_fixture_as_the_jsonpath_one() {
    let jsonata =
        std::fs::read_to_string(repo_root().join("statemachine/pipeline.jsonata.asl.json"))
            .expect("statemachine/pipeline.jsonata.asl.json");
    assert!(jsonata.contains("\"QueryLanguage\": \"JSONata\""));
    let clamd = start_clamd();
    let cases = load_cases();
    assert!(cases.len() >= 20, "found {} cases", cases.len());

    let by_jsonpath = replay(PIPELINE_DEFINITION, &clamd, &cases).await;
    let by_jsonata = replay(&jsonata, &clamd, &cases).await;

    for ((case, jsonpath), jsonata) in cases.iter().zip(&by_jsonpath).zip(&by_jsonata) {
        assert_eq!(
            jsonata, jsonpath,
            "{}: JSONata (left) vs JSONPath (right)",
            case.name
        );
        assert!(
            matches!(jsonpath.label, "trusted" | "quarantine"),
            "{}: {jsonpath:?}",
            case.name
        );
        assert!(
            !jsonpath.output_fields.is_empty(),
            "{}: no output read",
            case.name
        );
    }
    // Both outcomes occur, so the comparison covers promotion and quarantine alike.
    assert!(by_jsonata.iter().any(|o| o.label == "trusted"));
    assert!(by_jsonata.iter().any(|o| o.label == "quarantine"));
}
