//! The `worker` function: an SQS batch of task messages (inspect, media, promote,
//! quarantine) -> each stage run and its task token answered. The messages of a batch run
//! at once (the media stage bounds its own decoding); one that could not be answered is
//! reported in `batchItemFailures` and redelivered, the others are done.

use airlock_core::ports::TaskAnswers;
use airlock_core::worker::{HandleError, Worker};
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

/// Handles one SQS batch of task messages.
pub async fn handle_batch(
    worker: &Worker,
    answers: &dyn TaskAnswers,
    event: SqsEvent,
) -> (SqsBatchResponse, WorkerSummary) {
    let runs = event.records.into_iter().map(|message| async move {
        let id = message.message_id.unwrap_or_default();
        let outcome = match message.body.as_deref() {
            Some(body) => worker.handle(body, answers).await,
            None => Err(HandleError::Unanswerable(
                "the message has no body".to_owned(),
            )),
        };
        (id, outcome)
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
