//! The `worker` function: an SQS batch of task messages (inspect, media, promote,
//! quarantine) -> each stage run and its task token answered. The messages of a batch run
//! at once (the media stage bounds its own decoding); one that could not be answered is
//! reported in `batchItemFailures` and redelivered, the others are done.

use std::time::Instant;

use airlock_core::ports::TaskAnswers;
use airlock_core::worker::{HandleError, Worker};
use airlock_emf::StageMetric;
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};

/// What one batch did, for logs and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WorkerSummary {
    /// Tasks run and answered (success or failure).
    pub answered: usize,
    /// Tasks nobody waits for any more (timed out or answered before): dropped.
    pub stale: usize,
    /// Messages reported failed (redelivered, then dead-lettered).
    pub failed: usize,
}

/// Where each task's duration and outcome go: CloudWatch metrics through the Embedded
/// Metric Format on stdout in the function, nowhere in tests.
pub type MetricSink<'a> = Option<&'a (dyn Fn(&StageMetric) + Sync)>;

/// Writes a metric line to stdout (the function's log, which CloudWatch reads EMF from).
pub fn emit_to_stdout(metric: &StageMetric) {
    if let Err(err) = metric.emit() {
        tracing::warn!(error = %err, "writing a metric failed");
    }
}

/// Handles one SQS batch of task messages.
pub async fn handle_batch(
    worker: &Worker,
    answers: &dyn TaskAnswers,
    event: SqsEvent,
    metrics: MetricSink<'_>,
) -> (SqsBatchResponse, WorkerSummary) {
    let runs = event.records.into_iter().map(|message| async move {
        let id = message.message_id.unwrap_or_default();
        let started = Instant::now();
        let outcome = match message.body.as_deref() {
            Some(body) => worker.handle_reported(body, answers).await,
            None => Err(HandleError::Unanswerable(
                "the message has no body".to_owned(),
            )),
        };
        if let (Some(sink), Ok(answered)) = (metrics, &outcome) {
            let stage = answered.stage.map_or("unknown", |s| s.as_str());
            sink(&StageMetric::new(
                stage,
                answered.outcome,
                started.elapsed(),
            ));
        }
        (id, outcome.map(|_| ()))
    });
    let mut response = SqsBatchResponse::default();
    let mut summary = WorkerSummary::default();
    for (id, outcome) in futures_util::future::join_all(runs).await {
        match outcome {
            Ok(()) => summary.answered += 1,
            Err(HandleError::Stale(why)) => {
                tracing::warn!(message_id = %id, %why, "task dropped: nobody waits for its answer");
                summary.stale += 1;
            }
            Err(err) => {
                tracing::error!(message_id = %id, error = %err, "task message failed; it will be redelivered");
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id;
                response.batch_item_failures.push(failure);
                summary.failed += 1;
            }
        }
    }
    (response, summary)
}
