//! Fixture cases through the deployment on the emulator: each case's intent is stored and
//! its object uploaded to the emulator's S3; from there on, everything happens as on AWS
//! (the bucket's event on the ingest queue, the ingest function starting an execution of
//! the real definition, the workers answering its tasks), and the case is judged by where
//! its object ends up and what its intent says, as the local replay judges it.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock_aws::{DynamoIntentStore, S3Store};
use airlock_core::definitions::FreshnessRule;
use airlock_core::policy::Policies;
use airlock_core::ports::{IntentStore as _, Scanner};
use airlock_core::verdict::ReasonCode;
use airlock_embedded::cases::{self, Case, Prepared};
use airlock_embedded::replay::{check_expectation, locate};
use anyhow::Context as _;

use crate::{Deployment, Functions, MotoServer, Names};

/// Where one case ended up on the emulator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseOutcome {
    pub name: String,
    /// `trusted`, `quarantine`, `unsettled` (nothing came of it in time) or `unavailable`
    /// (its optional object is not on this machine).
    pub destination: String,
    pub reason: Option<ReasonCode>,
    pub intent_state: Option<String>,
    /// Whether it landed as the case expects; `None` without an expectation.
    pub expectation: Option<Result<(), String>>,
}

/// A replay against an emulator: the one at `endpoint`, or one started from
/// `moto_server` for the run.
#[derive(Clone)]
pub struct EmulatorReplay<'a> {
    pub cases: &'a [Case],
    pub policies: &'a Policies,
    pub definition: &'a str,
    pub scanner: Arc<dyn Scanner>,
    /// The definitions' age rule the scan worker applies.
    pub freshness: FreshnessRule,
    /// How long a case may take to settle.
    pub settle_timeout: Duration,
}

impl std::fmt::Debug for EmulatorReplay<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatorReplay")
            .field("cases", &self.cases.len())
            .field("settle_timeout", &self.settle_timeout)
            .finish_non_exhaustive()
    }
}

/// Starts an emulator from `moto_server` (unless `endpoint` is given), deploys, runs the
/// cases and stops everything.
pub async fn replay_on_emulator(
    replay: EmulatorReplay<'_>,
    endpoint: Option<&str>,
    moto_server: &Path,
) -> anyhow::Result<Vec<CaseOutcome>> {
    let (server, endpoint) = if let Some(endpoint) = endpoint {
        crate::configure_executor(endpoint).await?;
        (None, endpoint.to_owned())
    } else {
        let server = MotoServer::start(moto_server).await?;
        let endpoint = server.endpoint.clone();
        (Some(server), endpoint)
    };
    let sdk = crate::sdk_config(&endpoint).await;
    // A fresh stack name per run: a reused emulator keeps earlier runs' resources.
    let stack = format!("airlock-{}", std::process::id());
    let deployment = Deployment::create(&sdk, Names::new(stack), replay.definition).await?;
    let functions = Functions::start(
        &sdk,
        &deployment,
        replay.policies,
        Arc::clone(&replay.scanner),
        replay.freshness,
    );
    let outcomes = run_cases(&sdk, &deployment, &replay).await;
    functions.stop().await;
    drop(server);
    outcomes
}

/// Runs the cases one at a time: prepares one, waits until it has settled and its
/// execution has closed, then the next (so a case that goes wrong cannot be confused with
/// another's effects).
pub async fn run_cases(
    sdk: &aws_config::SdkConfig,
    deployment: &Deployment,
    replay: &EmulatorReplay<'_>,
) -> anyhow::Result<Vec<CaseOutcome>> {
    let store = S3Store::new(airlock_lambda::wiring::s3_client(sdk), &deployment.bucket);
    let intents = DynamoIntentStore::new(aws_sdk_dynamodb::Client::new(sdk), &deployment.table);
    let sfn = aws_sdk_sfn::Client::new(sdk);
    let mut outcomes = Vec::new();
    for case in replay.cases {
        let prepared = cases::prepare(case, &store, &intents, replay.policies, &deployment.bucket)
            .await
            .with_context(|| format!("preparing case {}", case.name))?;
        if let Prepared::Unavailable(why) = prepared {
            outcomes.push(CaseOutcome {
                name: case.name.clone(),
                destination: "unavailable".to_owned(),
                reason: None,
                intent_state: None,
                expectation: Some(Err(why)),
            });
            continue;
        }
        let deadline = Instant::now() + replay.settle_timeout;
        let located = loop {
            if let Some(found) = locate(&store, case).await {
                break Some(found);
            }
            if Instant::now() > deadline {
                break None;
            }
            tokio::time::sleep(POLL_EVERY).await;
        };
        let (destination, reason) = located.unwrap_or(("unsettled", None));
        let intent_state = match &case.file.intent {
            Some(spec) => settled_state(&intents, spec.id, deadline).await?,
            None => None,
        };
        wait_until_idle(&sfn, &deployment.state_machine_arn, deadline).await?;
        let expectation = check_expectation(case, destination, reason, intent_state.clone());
        outcomes.push(CaseOutcome {
            name: case.name.clone(),
            destination: destination.to_owned(),
            reason,
            intent_state,
            expectation,
        });
    }
    Ok(outcomes)
}

const POLL_EVERY: Duration = Duration::from_millis(100);

/// Waits until no execution of the state machine is running (or the deadline passes).
async fn wait_until_idle(
    sfn: &aws_sdk_sfn::Client,
    state_machine_arn: &str,
    deadline: Instant,
) -> anyhow::Result<()> {
    loop {
        let running = sfn
            .list_executions()
            .state_machine_arn(state_machine_arn)
            .status_filter(aws_sdk_sfn::types::ExecutionStatus::Running)
            .send()
            .await
            .context("listing running executions")?;
        if running.executions().is_empty() || Instant::now() > deadline {
            return Ok(());
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// The intent's state once it has left the states the pipeline passes through (the object
/// is placed before the intent is settled, so it may lag a moment).
async fn settled_state(
    intents: &DynamoIntentStore,
    id: airlock_core::keys::UploadId,
    deadline: Instant,
) -> anyhow::Result<Option<String>> {
    loop {
        let intent = intents.get(id).await.context("reading an intent")?;
        let state = intent.map(|i| i.state);
        let settled =
            state.is_none_or(|s| s.is_final() || s == airlock_core::intent::IntentState::Failed);
        if settled || Instant::now() > deadline {
            return Ok(state.map(|s| s.as_str().to_owned()));
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// The cases in `inputs` (files or folders, read recursively, `*.json`), in path order. On
/// the emulator only cases can be replayed: a captured event names an object that is not
/// there.
pub fn load_cases(inputs: &[std::path::PathBuf]) -> anyhow::Result<Vec<Case>> {
    let mut files = Vec::new();
    for input in inputs {
        collect_json(input, &mut files)?;
    }
    files.sort();
    let mut loaded = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        anyhow::ensure!(
            cases::is_case(&value),
            "{} is an event, not a case: captured events replay locally only (--target local)",
            path.display()
        );
        loaded.push(Case::from_value(&path, value)?);
    }
    anyhow::ensure!(!loaded.is_empty(), "no cases found in {inputs:?}");
    Ok(loaded)
}

fn collect_json(path: &Path, out: &mut Vec<std::path::PathBuf>) -> anyhow::Result<()> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if meta.is_dir() {
        for entry in
            std::fs::read_dir(path).with_context(|| format!("listing {}", path.display()))?
        {
            let entry = entry?.path();
            if entry.is_dir() || entry.extension().is_some_and(|e| e == "json") {
                collect_json(&entry, out)?;
            }
        }
    } else {
        out.push(path.to_owned());
    }
    Ok(())
}

/// `airlock replay --target emulator`: deploys to the emulator, replays the cases, prints
/// one line per case (or JSON with `--json`); exit status 0 when every case landed as it
/// expects, 1 otherwise.
pub async fn run(args: &airlock_embedded::replay::ReplayArgs) -> anyhow::Result<u8> {
    let cases = load_cases(&args.inputs)?;
    let policies = match &args.policies {
        Some(path) => Policies::load(path)?,
        None => Policies::builtin(),
    };
    let definition_path = args
        .definition
        .clone()
        .unwrap_or_else(|| "statemachine/pipeline.asl.json".into());
    let definition = std::fs::read_to_string(&definition_path)
        .with_context(|| format!("reading {}", definition_path.display()))?;
    let (scanner, mut managed) =
        airlock_embedded::replay::scanner_for(args.clamd.as_deref(), &args.signatures, None)
            .await?;
    let started = Instant::now();
    let outcomes = replay_on_emulator(
        EmulatorReplay {
            cases: &cases,
            policies: &policies,
            definition: &definition,
            scanner,
            freshness: FreshnessRule::accepting_undated(args.max_definitions_age_hours.0),
            settle_timeout: Duration::from_mins(3),
        },
        args.emulator_endpoint.as_deref(),
        Path::new(".venv/bin/moto_server"),
    )
    .await;
    if let Some(clamd) = managed.as_mut() {
        clamd.stop().ok();
    }
    let outcomes = outcomes?;
    let unmet = outcomes
        .iter()
        .filter(|o| matches!(o.expectation, Some(Err(_))) && o.destination != "unavailable")
        .count();
    if args.json {
        let lines: Vec<serde_json::Value> = outcomes
            .iter()
            .map(|o| {
                serde_json::json!({
                    "case": o.name,
                    "destination": o.destination,
                    "reason": o.reason.map(|r| r.to_string()),
                    "intentState": o.intent_state,
                    "expectation": match &o.expectation {
                        None => serde_json::Value::Null,
                        Some(Ok(())) => "met".into(),
                        Some(Err(why)) => why.clone().into(),
                    },
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&lines)?);
    } else {
        println!(
            "{:<28} {:<12} {:<20} {:<12} EXPECTATION",
            "CASE", "DESTINATION", "REASON", "INTENT"
        );
        for o in &outcomes {
            println!(
                "{:<28} {:<12} {:<20} {:<12} {}",
                o.name,
                o.destination,
                o.reason.map_or_else(|| "-".to_owned(), |r| r.to_string()),
                o.intent_state.as_deref().unwrap_or("-"),
                match &o.expectation {
                    None => "-".to_owned(),
                    Some(Ok(())) => "met".to_owned(),
                    Some(Err(why)) => format!("NOT MET: {why}"),
                }
            );
        }
    }
    eprintln!(
        "{} cases on the emulator in {:.1} s: {} as expected, {unmet} not",
        outcomes.len(),
        started.elapsed().as_secs_f64(),
        outcomes.len() - unmet
    );
    Ok(u8::from(unmet > 0))
}
