//! The bundled fixture cases through the AWS deployment on the emulator (`moto_server`
//! from the project's `.venv`, made by `scripts/venv.sh`): the real state machine on the
//! emulator's executor, the functions' handlers, a real clamd. Every case lands where it
//! expects, and where the local replay puts it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use airlock_core::definitions::{DEFAULT_MAX_AGE, FreshnessRule};
use airlock_core::policy::Policies;
use airlock_embedded::cases::Case;
use airlock_embedded::replay::{ReplayArgs, ReplayOutcome, replay};
use airlock_emulator::replay::{EmulatorReplay, replay_on_emulator};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn load_cases() -> Vec<Case> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(root().join("fixtures/cases"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|path| {
            let value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
            Case::from_value(path, value).unwrap()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fixture_cases_land_on_the_emulator_as_they_expect_and_as_locally() {
    // RUST_LOG=warn shows the functions' failures (printed if the test fails).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let cases = load_cases();
    let policies = Policies::builtin();
    let definition =
        std::fs::read_to_string(root().join("statemachine/pipeline.asl.json")).unwrap();
    let (scanner, mut clamd) =
        airlock_embedded::replay::scanner_for(None, &root().join("fixtures/clamav"), None)
            .await
            .unwrap();
    let outcomes = replay_on_emulator(
        EmulatorReplay {
            cases: &cases,
            policies: &policies,
            definition: &definition,
            scanner: Arc::clone(&scanner),
            // The project's test signatures carry no build date.
            freshness: FreshnessRule::accepting_undated(Some(DEFAULT_MAX_AGE)),
            settle_timeout: Duration::from_mins(3),
        },
        None,
        &root().join(".venv/bin/moto_server"),
    )
    .await
    .unwrap();
    assert_eq!(outcomes.len(), cases.len());
    let mut failures = Vec::new();
    for outcome in &outcomes {
        match &outcome.expectation {
            Some(Ok(())) => {}
            // Debian's ClamAV test files may be absent; the case says so.
            _ if outcome.destination == "unavailable" => {}
            Some(Err(why)) => failures.push(format!("{}: {why}", outcome.name)),
            None => failures.push(format!("{}: the case has no expectation", outcome.name)),
        }
    }
    assert!(
        failures.is_empty(),
        "on the emulator:\n{}",
        failures.join("\n")
    );

    // The same cases through the local pipeline land in the same places.
    let data = tempfile::tempdir().unwrap();
    let local = replay(&ReplayArgs {
        inputs: vec![root().join("fixtures/cases")],
        data_dir: data.path().to_owned(),
        bucket: "airlock-uploads".to_owned(),
        policies: None,
        definition: None,
        clamd: Some(clamd.as_ref().unwrap().address().to_string()),
        signatures: root().join("fixtures/clamav"),
        max_definitions_age_hours: airlock_core::definitions::MaxAge(Some(DEFAULT_MAX_AGE)),
        target: airlock_embedded::replay::ReplayTarget::Local,
        emulator_endpoint: None,
        delay_scale: 0.05,
        concurrency: 4,
        verbose: false,
        json: false,
    })
    .await
    .unwrap();
    for outcome in outcomes.iter().filter(|o| o.destination != "unavailable") {
        let result = local
            .results
            .iter()
            .find(|r| r.source == outcome.name)
            .unwrap_or_else(|| panic!("{} is missing from the local replay", outcome.name));
        let ReplayOutcome::Run(run) = &result.result else {
            panic!(
                "{}: the local replay did not run it: {:?}",
                outcome.name, result.result
            );
        };
        let (destination, reason) = match &run.settlement {
            airlock_embedded::Settlement::Quarantine { reason, .. } => {
                ("quarantine", Some(*reason))
            }
            other => (other.label(), None),
        };
        assert_eq!(
            (outcome.destination.as_str(), outcome.reason),
            (destination, reason),
            "{} lands differently on the emulator and locally",
            outcome.name
        );
    }
    if let Some(clamd) = clamd.as_mut() {
        clamd.stop().ok();
    }
}
