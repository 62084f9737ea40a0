//! Fixture cases through the deployment on the emulator: each case's intent is stored and
//! its object uploaded to the emulator's S3; from there on, everything happens as on AWS
//! (the bucket's event on the ingest queue, the ingest function starting an execution of
//! the real definition, the workers answering its tasks), and the case is judged by where
//! its object ends up and what its intent says, as the local replay judges it.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock_aws::{DynamoIntentStore, S3Store};
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
    );
    let outcomes = run_cases(&sdk, &deployment, &replay).await;
    functions.stop().await;
    drop(server);
    outcomes
}

/// Runs the cases one at a time: prepares one, waits until it has settled and its
/// execution has closed, then the next. One at a time because the emulator's executor
/// cannot start an execution while another is waiting for a task token (it copies the state
/// machine with its running executions, and their locks cannot be copied: an HTTP 500).
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
