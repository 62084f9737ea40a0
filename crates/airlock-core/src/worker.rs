//! The worker side of the state machine: a task message in, a stage run, an answer out.
//!
//! The state machine sends `{taskToken, stage, object, findings}` (through SQS on AWS, through
//! the in-process queue locally); the worker runs the stage and answers with the token. The
//! same code answers Step Functions, the local executor, or the emulator's executor.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::Instrument;

use crate::definitions::FreshnessRule;
use crate::keys::UploadKey;
use crate::media::MediaProcessor;
use crate::object::ObjectRef;
use crate::policy::Policies;
use crate::ports::{
    Clock, DeadLetters, EventSink, IntentStore, ObjectStore, Retry, Scanner, TaskAnswers,
};
use crate::stages::{
    self, InspectOutcome, MediaJob, MediaOutcome, PromoteFacts, PromoteReport, QuarantineReport,
    QuarantineRequest, ScanOutcome, Stage, StageError, error_names,
};
use crate::verdict::{ReasonCode, Rejection};
use tokio::sync::Semaphore;

/// A task for a worker, as the state machine sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskMessage {
    pub task_token: String,
    pub stage: Stage,
    pub object: ObjectRef,
    /// The state so far: the outputs of earlier stages (`inspect`, `scan`) and any caught
    /// failures (`inspectFailure`, `scanFailure`).
    #[serde(default)]
    pub findings: Value,
}

/// Findings of earlier stages, as the state machine accumulates them.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Findings {
    inspect: Option<InspectOutcome>,
    scan: Option<ScanOutcome>,
    media: Option<MediaOutcome>,
    inspect_failure: Option<CaughtError>,
    scan_failure: Option<CaughtError>,
    media_failure: Option<CaughtError>,
}

/// An error caught by a Catch clause (`{"Error": ..., "Cause": ...}`). Either may be
/// missing or null (a task failed without a cause; the AWS emulator keeps no cause).
#[derive(Debug, Deserialize)]
struct CaughtError {
    #[serde(rename = "Error", default, deserialize_with = "null_as_empty")]
    error: String,
    #[serde(rename = "Cause", default, deserialize_with = "null_as_empty")]
    cause: String,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(deserializer)?.unwrap_or_default())
}

impl CaughtError {
    /// A stage that failed after retries: quarantined for `reason`, the error as detail.
    fn rejection(&self, reason: ReasonCode) -> Rejection {
        Rejection::new(reason, format!("{}: {}", self.error, self.cause))
    }
}

fn bad_message(stage: Stage, message: impl Into<String>) -> StageError {
    StageError::new(stage, Retry::Permanent, message)
}

/// Why the object is being quarantined, from the findings; the first reject or failure wins.
pub fn quarantine_request(
    object: &ObjectRef,
    findings: &Value,
) -> Result<QuarantineRequest, StageError> {
    let findings: Findings = serde_json::from_value(findings.clone())
        .map_err(|e| bad_message(Stage::Quarantine, format!("findings are malformed: {e}")))?;
    let (mut sha256, mut version) = match &findings.scan {
        Some(ScanOutcome::Pass(pass)) => (Some(pass.sha256.clone()), pass.version.clone()),
        _ => (None, None),
    };
    let (stage, rejection) = if let Some(InspectOutcome::Reject(r)) = findings.inspect {
        (Stage::Inspect, r)
    } else if let Some(InspectOutcome::Settled(leftover)) = findings.inspect {
        // Finishing an interrupted quarantine: its record, already written, keeps its
        // verdict; this reason only stands in for it.
        let reason = leftover.reason.ok_or_else(|| {
            bad_message(
                Stage::Quarantine,
                "a settled leftover to quarantine has no recorded reason",
            )
        })?;
        sha256 = Some(leftover.sha256);
        version = leftover.version;
        (Stage::Inspect, Rejection::new(reason, leftover.detail))
    } else if let Some(ScanOutcome::Reject(r)) = findings.scan {
        (Stage::Scan, r)
    } else if let Some(MediaOutcome::Reject(r)) = findings.media {
        (Stage::Media, r)
    } else if let Some(failure) = findings.media_failure {
        (
            Stage::Media,
            failure.rejection(ReasonCode::MediaUnavailable),
        )
    } else if let Some(failure) = findings.scan_failure {
        (Stage::Scan, failure.rejection(ReasonCode::ScanUnavailable))
    } else if let Some(failure) = findings.inspect_failure {
        (
            Stage::Inspect,
            failure.rejection(ReasonCode::InspectUnavailable),
        )
    } else {
        return Err(bad_message(
            Stage::Quarantine,
            "findings hold no reject and no failure: nothing says why to quarantine",
        ));
    };
    Ok(QuarantineRequest {
        object: object.clone(),
        rejection,
        stage,
        sha256,
        version,
    })
}

/// The span a task runs in: its stage, key, upload id (when the key is in the scheme) and
/// execution name, so every log line of the task, the stages' own included, carries them.
///
/// At ERROR level so that it is enabled whenever any event is: a warning needs its task as
/// much as an info line does.
#[must_use]
pub fn task_span(task: &TaskMessage) -> tracing::Span {
    let upload = UploadKey::parse_incoming(&task.object.key).ok();
    tracing::error_span!(
        "task",
        stage = %task.stage,
        key = %LogKey(&task.object.key),
        upload_id = upload.as_ref().map(|u| tracing::field::display(&u.upload_id)),
        execution = %task.object.execution_name(),
    )
}

/// A key as logs show it: as is, or quoted and escaped when it holds control characters,
/// so a newline in an uploaded key cannot start a forged log line.
struct LogKey<'a>(&'a str);

impl fmt::Display for LogKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.chars().any(char::is_control) {
            write!(f, "{:?}", self.0)
        } else {
            f.write_str(self.0)
        }
    }
}

/// The one info event of a promotion.
fn log_promoted(upload: &UploadKey, report: &PromoteReport) {
    tracing::info!(
        upload_id = %upload.upload_id,
        trusted_key = %LogKey(&report.trusted_key),
        settled_now = report.promoted_now,
        "upload promoted"
    );
}

/// The one info event of a quarantine.
fn log_quarantined(request: &QuarantineRequest, report: &QuarantineReport) {
    let upload = UploadKey::parse_incoming(&request.object.key).ok();
    tracing::info!(
        upload_id = upload.as_ref().map(|u| tracing::field::display(&u.upload_id)),
        reason = %report.reason,
        rejected_by = %request.stage,
        quarantine_key = %LogKey(&report.quarantine_key),
        record_key = %LogKey(&report.record_key),
        settled_now = report.quarantined_now,
        "upload quarantined"
    );
}

/// Everything the stages need, built once.
#[derive(Clone)]
pub struct Worker {
    pub store: Arc<dyn ObjectStore>,
    pub intents: Arc<dyn IntentStore>,
    pub scanner: Arc<dyn Scanner>,
    pub events: Arc<dyn EventSink>,
    /// Where uploads whose settling failed for good are recorded.
    pub dead_letters: Arc<dyn DeadLetters>,
    pub clock: Arc<dyn Clock>,
    pub policies: Arc<Policies>,
    /// The image library for the media stage.
    pub media: Arc<dyn MediaProcessor>,
    /// Caps how many images are decoded at once (decoding is CPU- and memory-heavy).
    pub media_permits: Arc<Semaphore>,
    /// The bucket this worker's store serves; tasks for another bucket are refused.
    pub bucket: String,
    /// How often a running task tells the orchestrator it is alive: well under the
    /// state machine's smallest `HeartbeatSeconds` (see [`HEARTBEAT_EVERY`]).
    pub heartbeat_every: Duration,
    /// How old the scanner's definitions may be for its verdicts to count.
    pub freshness: FreshnessRule,
}

/// The default for [`Worker::heartbeat_every`]: a quarter of the pipeline's shortest
/// `HeartbeatSeconds` (120).
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(30);

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

/// An earlier stage's output that must be in the findings and well-formed.
fn required<T: serde::de::DeserializeOwned>(
    task: &TaskMessage,
    name: &str,
    stage: Stage,
) -> Result<T, StageError> {
    optional(task, name, stage)?
        .ok_or_else(|| bad_message(stage, format!("findings have no {name:?}")))
}

/// An earlier stage's output: `None` if absent or null; an error if present but malformed
/// (never read as absent: that could skip a check).
fn optional<T: serde::de::DeserializeOwned>(
    task: &TaskMessage,
    name: &str,
    stage: Stage,
) -> Result<Option<T>, StageError> {
    match task.findings.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => serde_json::from_value(value.clone())
            .map(Some)
            .map_err(|e| bad_message(stage, format!("findings {name:?} are malformed: {e}"))),
    }
}

fn to_value<T: Serialize>(stage: Stage, value: &T) -> Result<Value, StageError> {
    serde_json::to_value(value).map_err(|e| StageError::new(stage, Retry::Permanent, e.to_string()))
}

impl Worker {
    /// Runs one stage; the output is what the state machine stores for it.
    pub async fn run(&self, task: &TaskMessage) -> Result<Value, StageError> {
        if task.object.bucket != self.bucket {
            return Err(bad_message(
                task.stage,
                format!(
                    "object is in bucket {:?}, this worker serves {:?}",
                    task.object.bucket, self.bucket
                ),
            ));
        }
        match task.stage {
            Stage::Inspect => {
                let outcome = stages::inspect(
                    self.store.as_ref(),
                    self.intents.as_ref(),
                    &self.policies,
                    self.clock.as_ref(),
                    &task.object,
                )
                .await?;
                to_value(Stage::Inspect, &outcome)
            }
            Stage::Scan => {
                let InspectOutcome::Pass(inspected) =
                    required::<InspectOutcome>(task, "inspect", Stage::Scan)?
                else {
                    return Err(bad_message(
                        Stage::Scan,
                        "findings hold no passing inspection",
                    ));
                };
                let policy = self.policies.get(&inspected.purpose).ok_or_else(|| {
                    bad_message(
                        Stage::Scan,
                        format!("purpose {} has no policy", inspected.purpose),
                    )
                })?;
                let outcome = stages::scan(
                    self.store.as_ref(),
                    self.scanner.as_ref(),
                    &task.object.key,
                    &inspected,
                    &policy.archives,
                    &self.freshness,
                    self.clock.as_ref(),
                )
                .await?;
                to_value(Stage::Scan, &outcome)
            }
            Stage::Media => self.run_media(task).await,
            Stage::Promote => self.run_promote(task).await,
            Stage::Quarantine => {
                let request = quarantine_request(&task.object, &task.findings)?;
                let report = stages::quarantine(
                    self.store.as_ref(),
                    self.intents.as_ref(),
                    self.events.as_ref(),
                    self.clock.as_ref(),
                    &request,
                )
                .await?;
                log_quarantined(&request, &report);
                to_value(Stage::Quarantine, &report)
            }
            Stage::RecordFailure => self.run_record_failure(task).await,
        }
    }

    async fn run_record_failure(&self, task: &TaskMessage) -> Result<Value, StageError> {
        let (stage, failure) = if let Some(f) =
            optional::<CaughtError>(task, "quarantineFailure", Stage::RecordFailure)?
        {
            (Stage::Quarantine, f)
        } else if let Some(f) =
            optional::<CaughtError>(task, "promoteFailure", Stage::RecordFailure)?
        {
            (Stage::Promote, f)
        } else {
            return Err(bad_message(
                Stage::RecordFailure,
                "findings hold no promoteFailure or quarantineFailure",
            ));
        };
        let report = stages::record_failure(
            self.intents.as_ref(),
            self.dead_letters.as_ref(),
            self.clock.as_ref(),
            &task.object,
            (stage, &failure.error, &failure.cause),
        )
        .await?;
        to_value(Stage::RecordFailure, &report)
    }

    async fn run_media(&self, task: &TaskMessage) -> Result<Value, StageError> {
        let upload = UploadKey::parse_incoming(&task.object.key)
            .map_err(|e| bad_message(Stage::Media, e.to_string()))?;
        let InspectOutcome::Pass(inspect) =
            required::<InspectOutcome>(task, "inspect", Stage::Media)?
        else {
            return Err(bad_message(
                Stage::Media,
                "findings hold no passing inspection",
            ));
        };
        let ScanOutcome::Pass(scan) = required::<ScanOutcome>(task, "scan", Stage::Media)? else {
            return Err(bad_message(Stage::Media, "findings hold no passing scan"));
        };
        let Some(policy) = self
            .policies
            .get(&inspect.purpose)
            .and_then(|p| p.media.as_ref())
        else {
            return Err(bad_message(
                Stage::Media,
                format!("purpose {} has no media policy", inspect.purpose),
            ));
        };
        let outcome = stages::media(
            self.store.as_ref(),
            Arc::clone(&self.media),
            Arc::clone(&self.media_permits),
            MediaJob {
                upload: &upload,
                content_type: &inspect.detected_type,
                size: inspect.size,
                scanned_sha256: &scan.sha256,
                version: scan.version.as_ref(),
                policy,
            },
        )
        .await?;
        to_value(Stage::Media, &outcome)
    }

    async fn run_promote(&self, task: &TaskMessage) -> Result<Value, StageError> {
        let upload = UploadKey::parse_incoming(&task.object.key)
            .map_err(|e| bad_message(Stage::Promote, e.to_string()))?;
        let refuse = |why: &str| bad_message(Stage::Promote, format!("{why}: refusing to promote"));
        let inspect = match required::<InspectOutcome>(task, "inspect", Stage::Promote)? {
            InspectOutcome::Pass(inspect) => inspect,
            // A promotion an interrupted run left half done: finish it, judge nothing anew.
            InspectOutcome::Settled(leftover) => {
                let report = stages::finish_promotion(
                    self.store.as_ref(),
                    self.events.as_ref(),
                    self.clock.as_ref(),
                    &upload,
                    &leftover,
                )
                .await?;
                log_promoted(&upload, &report);
                return to_value(Stage::Promote, &report);
            }
            _ => return Err(refuse("findings hold no passing inspection")),
        };
        let ScanOutcome::Pass(scan) = required::<ScanOutcome>(task, "scan", Stage::Promote)? else {
            return Err(refuse("findings hold no passing scan"));
        };
        // Whether the image must be sanitized is decided here again, from the policy and the
        // detected type, not taken from a flag: an image that needs it is never promoted raw.
        let needs_media = inspect.detected_type.starts_with("image/")
            && self
                .policies
                .get(&inspect.purpose)
                .is_some_and(|p| p.media.is_some());
        let media = match optional::<MediaOutcome>(task, "media", Stage::Promote)? {
            Some(MediaOutcome::Pass(report)) => Some(report),
            Some(MediaOutcome::Reject(_)) => {
                return Err(refuse("the media stage rejected this object"));
            }
            None if needs_media => {
                return Err(refuse(
                    "findings hold no media result for an image that needs one",
                ));
            }
            None => None,
        };
        let report = stages::promote(
            self.store.as_ref(),
            self.intents.as_ref(),
            self.events.as_ref(),
            self.clock.as_ref(),
            &upload,
            PromoteFacts {
                sha256: &scan.sha256,
                size: scan.size,
                engine: &scan.engine,
                version: scan.version.as_ref(),
                media: media.as_deref(),
            },
        )
        .await?;
        log_promoted(&upload, &report);
        to_value(Stage::Promote, &report)
    }

    /// Handles one queue message body: parse, run, answer. An `Err` means the answer could
    /// not be given (or the body has no token to answer with): the message should stay on
    /// the queue for redelivery and, in the end, the dead-letter queue.
    pub async fn handle(&self, body: &str, answers: &dyn TaskAnswers) -> Result<(), HandleError> {
        self.handle_reported(body, answers).await.map(drop)
    }

    /// [`Worker::handle`], saying which stage ran and how it ended (for metrics).
    pub async fn handle_reported(
        &self,
        body: &str,
        answers: &dyn TaskAnswers,
    ) -> Result<Answered, HandleError> {
        let task: TaskMessage = match serde_json::from_str(body) {
            Ok(task) => task,
            Err(parse_error) => {
                // Answer with the token if there is one, so the execution need not time out.
                let token = serde_json::from_str::<Value>(body)
                    .ok()
                    .and_then(|v| v.get("taskToken")?.as_str().map(str::to_owned));
                let Some(token) = token else {
                    return Err(HandleError::Unanswerable(format!(
                        "message is not a task: {parse_error}"
                    )));
                };
                tracing::error!(
                    error_name = error_names::BAD_MESSAGE,
                    error = %parse_error,
                    "message is not a task"
                );
                answers
                    .fail(
                        &token,
                        error_names::BAD_MESSAGE,
                        &format!("message is not a task: {parse_error}"),
                    )
                    .await
                    .map_err(|e| HandleError::Answer(e.to_string()))?;
                return Ok(Answered {
                    stage: None,
                    outcome: BAD_MESSAGE_OUTCOME,
                });
            }
        };
        let span = task_span(&task);
        self.handle_task(&task, answers).instrument(span).await
    }

    /// [`Worker::handle`] for a parsed task, inside its span.
    async fn handle_task(
        &self,
        task: &TaskMessage,
        answers: &dyn TaskAnswers,
    ) -> Result<Answered, HandleError> {
        // Alive at once: a message that waited in the queue past its heartbeat, or that
        // belongs to an attempt that already timed out, is dropped here unrun.
        if let Err(err) = answers.heartbeat(&task.task_token).await {
            if err.retry == Retry::Permanent {
                return Err(HandleError::Stale(format!(
                    "{} of {}: {}",
                    task.stage, task.object.key, err.message
                )));
            }
            tracing::warn!(stage = %task.stage, error = %err.message, "heartbeat failed");
        }
        // Inspect, Scan and Media only read or stage, so an attempt nobody waits for any
        // more is stopped. Promote and Quarantine finish what they started (their steps
        // are ordered so that finishing, or a repeat, leaves a consistent state; stopping
        // halfway could leave copies in trusted/ behind an unsettled intent).
        let stoppable = matches!(task.stage, Stage::Inspect | Stage::Scan | Stage::Media);
        let stopper = async {
            let stale = self.keep_alive(&task.task_token, answers).await;
            if !stoppable {
                std::future::pending::<()>().await;
            }
            stale
        };
        let outcome = tokio::select! {
            outcome = self.run(task) => outcome,
            stale = stopper => {
                // Nobody waits for this attempt any more (a retry may run it again): stop.
                return Err(HandleError::Stale(format!(
                    "{} of {} stopped: {stale}",
                    task.stage, task.object.key
                )));
            }
        };
        let answer = Answered {
            stage: Some(task.stage),
            outcome: outcome_name(&outcome),
        };
        let answered = match outcome {
            Ok(output) => answers.succeed(&task.task_token, output).await,
            Err(err) => {
                // Transient failures are retried by the state machine; permanent ones end
                // in a quarantine or a failed execution.
                if err.retry == Retry::Transient {
                    tracing::warn!(error_name = err.error_name(), error = %err.message, "stage failed");
                } else {
                    tracing::error!(error_name = err.error_name(), error = %err.message, "stage failed");
                }
                answers
                    .fail(&task.task_token, err.error_name(), &err.to_string())
                    .await
            }
        };
        answered.map_err(|e| HandleError::Answer(e.to_string()))?;
        Ok(answer)
    }
}

/// The outcome of a message answered with a failure because it was not a task.
pub const BAD_MESSAGE_OUTCOME: &str = "bad-message";

/// A message the worker answered: the stage it ran (`None` for a message that was not a
/// task) and how it ended, as a short kebab-case word fit for a metric dimension: the
/// stage output's `outcome` (`pass`, `reject`, `skip`, `settled`), `done` for an output
/// without one (promote, quarantine), `transient-error` / `permanent-error` for a failed
/// stage, or [`BAD_MESSAGE_OUTCOME`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answered {
    pub stage: Option<Stage>,
    pub outcome: &'static str,
}

fn outcome_name(outcome: &Result<Value, StageError>) -> &'static str {
    match outcome {
        Ok(output) => match output.get("outcome").and_then(Value::as_str) {
            Some("pass") => "pass",
            Some("reject") => "reject",
            Some("skip") => "skip",
            Some("settled") => "settled",
            Some(_) => "other",
            None => "done",
        },
        Err(err) if err.retry == Retry::Transient => "transient-error",
        Err(_) => "permanent-error",
    }
}

impl Worker {
    /// Sends a heartbeat every [`Worker::heartbeat_every`]; returns only when the
    /// orchestrator says nobody waits for the token any more.
    async fn keep_alive(&self, token: &str, answers: &dyn TaskAnswers) -> String {
        loop {
            tokio::time::sleep(self.heartbeat_every).await;
            match answers.heartbeat(token).await {
                Ok(()) => {}
                Err(err) if err.retry == Retry::Permanent => return err.message,
                Err(err) => tracing::warn!(error = %err.message, "heartbeat failed"),
            }
        }
    }
}

/// A message the worker could not answer.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// The task timed out or was answered before or while it ran: nobody waits for the
    /// answer, so the message is dropped.
    #[error("stale task: {0}")]
    Stale(String),
    #[error("cannot answer: {0}")]
    Unanswerable(String),
    #[error("answering failed: {0}")]
    Answer(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object() -> ObjectRef {
        ObjectRef::new("b", "incoming/t/p/01936f6e-8c2a-7b3e-9a4b-2c1d0e9f8a7b")
    }

    #[test]
    fn the_first_reject_or_failure_is_the_reason() {
        let cases = [
            (
                json!({"inspect": {"outcome": "reject", "reason": "type-mismatch", "detail": "d"}}),
                ReasonCode::TypeMismatch,
                Stage::Inspect,
            ),
            (
                json!({"inspect": {"outcome": "pass", "uploadId": "01936f6e-8c2a-7b3e-9a4b-2c1d0e9f8a7b", "tenant": "t", "purpose": "p", "size": 1, "declaredType": "text/plain", "detectedType": "text/plain", "media": false, "bytesRead": 1},
                       "scan": {"outcome": "reject", "reason": "infected", "detail": "d", "signature": "Eicar"}}),
                ReasonCode::Infected,
                Stage::Scan,
            ),
            (
                json!({"inspect": {"outcome": "pass", "uploadId": "01936f6e-8c2a-7b3e-9a4b-2c1d0e9f8a7b", "tenant": "t", "purpose": "p", "size": 1, "declaredType": "text/plain", "detectedType": "text/plain", "media": false, "bytesRead": 1},
                       "scanFailure": {"Error": "Airlock.Transient", "Cause": "scanner unavailable"}}),
                ReasonCode::ScanUnavailable,
                Stage::Scan,
            ),
            (
                json!({"inspectFailure": {"Error": "States.Timeout", "Cause": ""}}),
                ReasonCode::InspectUnavailable,
                Stage::Inspect,
            ),
        ];
        for (findings, reason, stage) in cases {
            let request = quarantine_request(&object(), &findings).unwrap();
            assert_eq!(request.rejection.reason, reason, "{findings}");
            assert_eq!(request.stage, stage);
        }
    }

    #[test]
    fn keys_with_control_characters_are_escaped_in_logs() {
        let plain = "incoming/t/p/a b\\c\"d";
        assert_eq!(LogKey(plain).to_string(), plain);
        let forged = "incoming/t/p/x\nERROR forged line\u{1b}[31m";
        let shown = LogKey(forged).to_string();
        assert!(!shown.chars().any(char::is_control), "{shown}");
        assert_eq!(shown, r#""incoming/t/p/x\nERROR forged line\u{1b}[31m""#);
    }

    #[test]
    fn a_caught_failure_without_a_cause_still_names_the_reason() {
        let findings = json!({"scanFailure": {"Error": "Airlock.Transient", "Cause": null}});
        let request = quarantine_request(&object(), &findings).unwrap();
        assert_eq!(request.rejection.reason, ReasonCode::ScanUnavailable);
        assert_eq!(request.rejection.detail, "Airlock.Transient: ");
    }

    #[test]
    fn no_reason_no_quarantine() {
        let err = quarantine_request(&object(), &json!({})).unwrap_err();
        assert!(err.to_string().contains("nothing says why"), "{err}");
        let err = quarantine_request(&object(), &json!({"inspect": 3})).unwrap_err();
        assert!(err.to_string().contains("malformed"), "{err}");
    }
}
