//! The pipeline running on one machine.
//!
//! The local executor runs the pipeline's state machine; its worker tasks
//! (`sqs:sendMessage.waitForTaskToken`) put messages on in-process queues, where workers —
//! the same `Worker` that runs on AWS — take them, run their stage, and answer the executor
//! with the task token.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use airlock_asl::{
    Definition, Execution, ExecutionStatus, Executor, ExecutorOptions, StartError, TaskFailure,
    TaskHandler, TaskRequest,
};
use airlock_core::definitions::{DEFAULT_MAX_AGE, FreshnessRule};
use airlock_core::media::MediaProcessor;
use airlock_core::object::ObjectRef;
use airlock_core::policy::Policies;
use airlock_core::ports::{Clock, Retry, Scanner, SystemClock, TaskAnswerError, TaskAnswers};
use airlock_core::stages::{Stage, error_names};
use airlock_core::verdict::ReasonCode;
use airlock_core::worker::{HandleError, Worker};
use airlock_local::{FsStore, InProcessQueue, JsonlEventSink, SqliteIntentStore};
use anyhow::Context as _;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// The pipeline's state machine, as built into this binary.
pub const PIPELINE_DEFINITION: &str = include_str!("../../../statemachine/pipeline.asl.json");

/// The stages that have their own worker queue, with the substitution naming its URL.
const QUEUES: [(Stage, &str); 5] = [
    (Stage::Inspect, "InspectQueueUrl"),
    (Stage::Scan, "ScanQueueUrl"),
    (Stage::Media, "MediaQueueUrl"),
    (Stage::Promote, "PromoteQueueUrl"),
    (Stage::Quarantine, "QuarantineQueueUrl"),
];

fn queue_url(stage: Stage) -> String {
    format!("local://queues/airlock-{stage}")
}

/// How to run the pipeline.
#[derive(Clone)]
pub struct PipelineConfig {
    /// Holds the object store (`buckets/{bucket}/`), `intents.sqlite` and `events.jsonl`.
    pub data_dir: PathBuf,
    pub bucket: String,
    /// The state machine (Amazon States Language, JSON).
    pub definition: String,
    pub policies: Arc<Policies>,
    pub scanner: Arc<dyn Scanner>,
    /// The image library of the media stage.
    pub media: Arc<dyn MediaProcessor>,
    /// Images decoded at once (CPU- and memory-heavy): by default one per core.
    pub media_concurrency: usize,
    /// Multiplies Retry and Wait delays (1.0 = as written).
    pub delay_scale: f64,
    /// Workers per stage queue.
    pub workers_per_stage: usize,
    /// How often a running task sends a heartbeat (see `Worker::heartbeat_every`).
    pub heartbeat_every: std::time::Duration,
    /// How old clamd's definitions may be. By default 48 h for a clamd that reports a
    /// daily database, and any signature files without one (the project's test
    /// signatures carry no build time) are accepted.
    pub freshness: FreshnessRule,
}

impl std::fmt::Debug for PipelineConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineConfig")
            .field("data_dir", &self.data_dir)
            .field("bucket", &self.bucket)
            .field("delay_scale", &self.delay_scale)
            .field("workers_per_stage", &self.workers_per_stage)
            .finish_non_exhaustive()
    }
}

impl PipelineConfig {
    /// The built-in state machine and policies, one worker set per stage, delays as written.
    pub fn new(
        data_dir: impl Into<PathBuf>,
        bucket: impl Into<String>,
        scanner: Arc<dyn Scanner>,
        media: Arc<dyn MediaProcessor>,
    ) -> Self {
        Self {
            data_dir: data_dir.into(),
            bucket: bucket.into(),
            definition: PIPELINE_DEFINITION.to_owned(),
            policies: Arc::new(Policies::builtin()),
            scanner,
            media,
            media_concurrency: std::thread::available_parallelism().map_or(1, usize::from),
            delay_scale: 1.0,
            workers_per_stage: 4,
            heartbeat_every: airlock_core::worker::HEARTBEAT_EVERY,
            freshness: FreshnessRule::accepting_undated(Some(DEFAULT_MAX_AGE)),
        }
    }

    #[must_use]
    pub fn bucket_root(&self) -> PathBuf {
        self.data_dir.join("buckets").join(&self.bucket)
    }

    #[must_use]
    pub fn intents_path(&self) -> PathBuf {
        self.data_dir.join("intents.sqlite")
    }

    #[must_use]
    pub fn events_path(&self) -> PathBuf {
        self.data_dir.join("events.jsonl")
    }
}

/// Sends a task's message to the in-process queue its `QueueUrl` names.
struct LocalSqs {
    queues: BTreeMap<String, Arc<InProcessQueue>>,
}

#[async_trait]
impl TaskHandler for LocalSqs {
    async fn invoke(&self, request: TaskRequest) -> Result<Value, TaskFailure> {
        let failure = |error: &str, cause: String| TaskFailure {
            error: error.to_owned(),
            cause,
        };
        let url = request
            .parameters
            .get("QueueUrl")
            .and_then(Value::as_str)
            .ok_or_else(|| failure("SQS.MissingParameter", "QueueUrl is missing".to_owned()))?;
        let queue = self
            .queues
            .get(url)
            .ok_or_else(|| failure("SQS.QueueDoesNotExist", format!("no queue {url}")))?;
        let body = match request.parameters.get("MessageBody") {
            Some(Value::String(text)) => text.clone(),
            Some(other) => other.to_string(),
            None => {
                return Err(failure(
                    "SQS.MissingParameter",
                    "MessageBody is missing".to_owned(),
                ));
            }
        };
        let id = queue
            .send(body)
            .ok_or_else(|| failure("SQS.QueueClosed", format!("queue {url} is shut down")))?;
        Ok(json!({ "MessageId": id.to_string() }))
    }
}

/// Workers answer the local executor.
struct ExecutorAnswers(Arc<Executor>);

#[async_trait]
impl TaskAnswers for ExecutorAnswers {
    async fn succeed(&self, token: &str, output: Value) -> Result<(), TaskAnswerError> {
        self.0
            .send_task_success(token, output)
            .map_err(|e| TaskAnswerError {
                message: e.to_string(),
                retry: Retry::Permanent,
            })
    }

    async fn fail(&self, token: &str, error: &str, cause: &str) -> Result<(), TaskAnswerError> {
        self.0
            .send_task_failure(token, error, cause)
            .map_err(|e| TaskAnswerError {
                message: e.to_string(),
                retry: Retry::Permanent,
            })
    }

    async fn heartbeat(&self, token: &str) -> Result<(), TaskAnswerError> {
        self.0
            .send_task_heartbeat(token)
            .map_err(|e| TaskAnswerError {
                message: e.to_string(),
                retry: Retry::Permanent,
            })
    }
}

/// Where an object ended up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "destination", rename_all = "kebab-case")]
pub enum Settlement {
    Trusted {
        key: String,
    },
    Quarantine {
        key: String,
        reason: ReasonCode,
        detail: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
    },
    /// Nothing was done: the object was already settled or is gone.
    Skipped {
        detail: String,
    },
    /// The execution failed: the object stays in `incoming/`.
    Failed {
        error: String,
        cause: String,
    },
}

impl Settlement {
    #[must_use]
    pub fn label(&self) -> &'static str {
        match self {
            Self::Trusted { .. } => "trusted",
            Self::Quarantine { .. } => "quarantine",
            Self::Skipped { .. } => "skipped",
            Self::Failed { .. } => "failed",
        }
    }
}

/// Time spent in one state of an execution.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StateTime {
    pub state: String,
    #[serde(rename = "millis")]
    pub duration_ms: f64,
}

/// One object's trip through the pipeline.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineRun {
    pub object: ObjectRef,
    pub execution_name: String,
    /// The event was a duplicate: it joined an execution already started for the object.
    pub duplicate: bool,
    pub settlement: Settlement,
    /// For images: what the media stage made (outputs, metadata).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media: Option<Value>,
    pub states: Vec<StateTime>,
    pub total_ms: f64,
    /// The execution history, in the shape of Step Functions' `GetExecutionHistory`.
    pub history: Value,
}

fn settlement_of(execution: &Execution) -> Settlement {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_owned();
    if execution.status != ExecutionStatus::Succeeded {
        return Settlement::Failed {
            error: execution
                .error
                .clone()
                .unwrap_or_else(|| format!("{:?}", execution.status)),
            cause: execution.cause.clone().unwrap_or_default(),
        };
    }
    let output = execution.output.clone().unwrap_or(Value::Null);
    if let Some(promote) = output.get("promote") {
        return Settlement::Trusted {
            key: text(promote.get("trustedKey")),
        };
    }
    if let Some(quarantine) = output.get("quarantine") {
        let reason = quarantine
            .get("reason")
            .and_then(|r| serde_json::from_value(r.clone()).ok());
        let rejection = ["inspect", "scan", "media"]
            .iter()
            .filter_map(|stage| output.get(*stage))
            .find(|o| o.get("outcome").and_then(Value::as_str) == Some("reject"));
        let failure = ["mediaFailure", "scanFailure", "inspectFailure"]
            .iter()
            .find_map(|f| output.get(*f));
        let detail = rejection
            .map(|r| text(r.get("detail")))
            .or_else(|| {
                failure.map(|f| format!("{}: {}", text(f.get("Error")), text(f.get("Cause"))))
            })
            .unwrap_or_default();
        return match reason {
            Some(reason) => Settlement::Quarantine {
                key: text(quarantine.get("quarantineKey")),
                reason,
                detail,
                signature: rejection
                    .and_then(|r| r.get("signature"))
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            },
            None => Settlement::Failed {
                error: "Airlock.BadOutput".to_owned(),
                cause: format!("quarantine output has no reason: {quarantine}"),
            },
        };
    }
    if let Some(inspect) = output
        .get("inspect")
        .filter(|i| i.get("outcome").and_then(Value::as_str) == Some("skip"))
    {
        return Settlement::Skipped {
            detail: text(inspect.get("detail")),
        };
    }
    Settlement::Failed {
        error: "Airlock.BadOutput".to_owned(),
        cause: format!("execution succeeded without promoting or quarantining: {output}"),
    }
}

/// A stage's consumer: takes messages off `queue` and has the worker handle each, until the
/// queue closes. Each message runs in its own task: a panic fails that task's token and
/// dead-letters its message, and this consumer lives on.
async fn consume(queue: Arc<InProcessQueue>, worker: Arc<Worker>, answers: Arc<dyn TaskAnswers>) {
    while let Some(message) = queue.receive().await {
        let handled = {
            let worker = Arc::clone(&worker);
            let answers = Arc::clone(&answers);
            let body = message.body.clone();
            tokio::spawn(async move { worker.handle(&body, answers.as_ref()).await }).await
        };
        let failure = match handled {
            Ok(Ok(())) => continue,
            Ok(Err(HandleError::Stale(detail))) => {
                // The orchestrator gave up on this attempt and moved on.
                message_span(&message.body).in_scope(|| {
                    tracing::info!(queue = queue.name(), %detail, "stale task dropped");
                });
                continue;
            }
            Ok(Err(err)) => err.to_string(),
            Err(join) => {
                let cause = format!("worker crashed: {join}");
                if let Some(token) = task_token(&message.body) {
                    let _ = answers.fail(&token, error_names::PERMANENT, &cause).await;
                }
                cause
            }
        };
        message_span(&message.body).in_scope(|| {
            tracing::error!(queue = queue.name(), error = %failure, "message moved to the dead-letter list");
        });
        queue.dead_letter(message, failure);
    }
}

/// The task span of a worker message (stage, key, upload id, execution), when it is one.
fn message_span(body: &str) -> tracing::Span {
    serde_json::from_str::<airlock_core::worker::TaskMessage>(body).map_or_else(
        |_| tracing::Span::none(),
        |task| airlock_core::worker::task_span(&task),
    )
}

/// The task token of a worker message, if it has one.
fn task_token(body: &str) -> Option<String> {
    serde_json::from_str::<Value>(body)
        .ok()?
        .get("taskToken")?
        .as_str()
        .map(str::to_owned)
}

fn parse_time(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// Time per state, from Entered/Exited pairs of the history (a retried Task counts once, with
/// its retries).
fn state_times(history: &Value) -> Vec<StateTime> {
    let mut times: Vec<StateTime> = Vec::new();
    let mut entered: Option<(String, DateTime<Utc>)> = None;
    for event in history.as_array().into_iter().flatten() {
        let kind = event
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let Some(at) = event.get("timestamp").and_then(parse_time) else {
            continue;
        };
        if kind.ends_with("StateEntered") {
            let name = event
                .pointer("/stateEnteredEventDetails/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            entered = Some((name, at));
        } else if kind.ends_with("StateExited")
            && let Some((name, start)) = entered.take()
        {
            {
                let micros = (at - start).num_microseconds().unwrap_or(0);
                #[allow(clippy::cast_precision_loss, reason = "durations in ms for display")]
                times.push(StateTime {
                    state: name,
                    duration_ms: micros as f64 / 1000.0,
                });
            }
        }
    }
    times
}

/// A running pipeline.
pub struct EmbeddedPipeline {
    config: PipelineConfig,
    executor: Arc<Executor>,
    queues: Vec<Arc<InProcessQueue>>,
    workers: JoinSet<()>,
    store: Arc<FsStore>,
    intents: Arc<SqliteIntentStore>,
    /// Held while the pipeline lives: one process per data dir.
    _lock: crate::lock::DataDirLock,
}

impl std::fmt::Debug for EmbeddedPipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedPipeline")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The data dir's lock and its stores, opened.
#[allow(clippy::type_complexity)] // Reason: one call site, destructured at once.
fn open_stores(
    config: &PipelineConfig,
) -> anyhow::Result<(
    crate::lock::DataDirLock,
    Arc<FsStore>,
    Arc<SqliteIntentStore>,
    Arc<JsonlEventSink>,
)> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    let lock = crate::lock::DataDirLock::acquire(&config.data_dir)?;
    let store = Arc::new(
        FsStore::open(config.bucket_root())
            .with_context(|| format!("opening object store {}", config.bucket_root().display()))?,
    );
    let intents = Arc::new(
        SqliteIntentStore::open(config.intents_path())
            .with_context(|| format!("opening intent store {}", config.intents_path().display()))?,
    );
    let events = Arc::new(
        JsonlEventSink::open(config.events_path())
            .with_context(|| format!("opening event log {}", config.events_path().display()))?,
    );

    Ok((lock, store, intents, events))
}

impl EmbeddedPipeline {
    /// Opens the stores, loads the state machine and starts the workers. Must be called
    /// inside a Tokio runtime.
    pub fn start(config: PipelineConfig) -> anyhow::Result<Self> {
        let (lock, store, intents, events) = open_stores(&config)?;

        let mut substitutions = BTreeMap::new();
        let mut by_url = BTreeMap::new();
        let mut by_stage = Vec::new();
        for (stage, variable) in QUEUES {
            let url = queue_url(stage);
            let queue = Arc::new(InProcessQueue::new(url.clone()));
            substitutions.insert(variable.to_owned(), url.clone());
            by_url.insert(url, Arc::clone(&queue));
            by_stage.push(queue);
        }
        let definition = Definition::parse_with_substitutions(&config.definition, &substitutions)
            .context("loading the pipeline state machine")?;
        let mut executor = Executor::new(
            definition,
            ExecutorOptions {
                delay_scale: config.delay_scale,
                ..ExecutorOptions::default()
            },
        );
        executor.register(
            "arn:aws:states:::sqs:sendMessage",
            Arc::new(LocalSqs { queues: by_url }),
        );
        executor
            .validate()
            .context("checking the pipeline state machine")?;
        let executor = Arc::new(executor);

        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let worker = Arc::new(Worker {
            store: store.clone(),
            intents: intents.clone(),
            scanner: Arc::clone(&config.scanner),
            events,
            dead_letters: intents.clone(),
            clock,
            policies: Arc::clone(&config.policies),
            media: Arc::clone(&config.media),
            media_permits: Arc::new(Semaphore::new(config.media_concurrency.max(1))),
            bucket: config.bucket.clone(),
            heartbeat_every: config.heartbeat_every,
            freshness: config.freshness,
        });
        let answers: Arc<dyn TaskAnswers> = Arc::new(ExecutorAnswers(Arc::clone(&executor)));
        let mut workers = JoinSet::new();
        // Staging leftovers of settled uploads (a crash between staging and promotion).
        let (bucket_root, sweep_intents) = (config.bucket_root(), Arc::clone(&intents));
        workers.spawn(async move {
            if let Err(err) =
                crate::sweep::sweep_staging(&bucket_root, sweep_intents.as_ref()).await
            {
                tracing::warn!(error = %err, "sweeping staging/ failed");
            }
        });
        for queue in &by_stage {
            for _ in 0..config.workers_per_stage.max(1) {
                let queue = Arc::clone(queue);
                let worker = Arc::clone(&worker);
                let answers = Arc::clone(&answers);
                workers.spawn(consume(queue, worker, answers));
            }
        }
        Ok(Self {
            config,
            executor,
            queues: by_stage,
            workers,
            store,
            intents,
            _lock: lock,
        })
    }

    #[must_use]
    pub fn config(&self) -> &PipelineConfig {
        &self.config
    }

    #[must_use]
    pub fn store(&self) -> &Arc<FsStore> {
        &self.store
    }

    #[must_use]
    pub fn intents(&self) -> &Arc<SqliteIntentStore> {
        &self.intents
    }

    /// Runs one object through the state machine and waits for it to settle.
    ///
    /// The execution is named after the object version and its input holds only the
    /// object's identity, so a duplicate or replayed event joins the execution already
    /// started for it (as Step Functions does for a repeated name) instead of starting
    /// another.
    pub async fn process(&self, object: &ObjectRef) -> anyhow::Result<PipelineRun> {
        let name = object.execution_name();
        let input = object.execution_input();
        let (handle, duplicate) = match self.executor.start_execution(&name, input) {
            Ok(handle) => (handle, false),
            Err(StartError::ExecutionAlreadyExists(_)) => match self.executor.execution(&name) {
                Some(handle) => (handle, true),
                // Finished earlier in this process: the executor keeps only its name, and
                // the object was settled (or left alone) then.
                None if self.executor.has_finished(&name) => {
                    return Ok(PipelineRun {
                        object: object.clone(),
                        execution_name: name,
                        duplicate: true,
                        settlement: Settlement::Skipped {
                            detail: "a duplicate event: its execution already ran".to_owned(),
                        },
                        media: None,
                        states: Vec::new(),
                        total_ms: 0.0,
                        history: Value::Null,
                    });
                }
                None => anyhow::bail!("execution {name} exists but cannot be found"),
            },
            Err(err) => return Err(err).with_context(|| format!("starting execution {name}")),
        };
        let execution = handle.wait().await;
        let history = serde_json::to_value(&execution.history).context("serializing history")?;
        let total = execution.stopped_at.map_or(Duration::ZERO, |end| {
            (end - execution.started_at).to_std().unwrap_or_default()
        });
        Ok(PipelineRun {
            object: object.clone(),
            execution_name: name,
            duplicate,
            settlement: settlement_of(&execution),
            media: execution
                .output
                .as_ref()
                .and_then(|o| o.get("media"))
                .filter(|m| m.get("outcome").and_then(Value::as_str) == Some("pass"))
                .cloned(),
            states: state_times(&history),
            total_ms: total.as_secs_f64() * 1000.0,
            history,
        })
    }

    /// Messages the workers could not handle, per queue.
    #[must_use]
    pub fn dead_letters(&self) -> Vec<(String, airlock_local::DeadLetter)> {
        self.queues
            .iter()
            .flat_map(|q| {
                q.dead_letters()
                    .into_iter()
                    .map(|d| (q.name().to_owned(), d))
            })
            .collect()
    }

    /// Stops the workers after the queued messages are handled.
    pub async fn shutdown(mut self) {
        for queue in &self.queues {
            queue.close();
        }
        while self.workers.join_next().await.is_some() {}
    }

    /// The folder layout, for messages.
    #[must_use]
    pub fn describe(&self) -> String {
        describe_layout(&self.config)
    }
}

fn describe_layout(config: &PipelineConfig) -> String {
    let root = |p: &Path| p.display().to_string();
    format!(
        "objects in {}, intents in {}, events in {}",
        root(&config.bucket_root()),
        root(&config.intents_path()),
        root(&config.events_path())
    )
}
