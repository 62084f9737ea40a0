//! The `ingest` function: an SQS batch of S3 event notifications -> one pipeline execution
//! per object, named after the object's version, so duplicate events collapse into one.
//! Step Functions answers a repeated name with the running execution, or with
//! `ExecutionAlreadyExists` once it has closed: both mean "already handled". Each message
//! stands alone: one that fails is reported in `batchItemFailures` and redelivered (then
//! dead-lettered), the others are done. Each object's start is one metric (stage `ingest`,
//! outcome `started`, `duplicate`, `skipped` or `failed`).

use std::time::Instant;

use airlock_core::intake::parse_event_str;
use airlock_core::ports::{ExecutionStarter, StartOutcome};
use airlock_emf::StageMetric;
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};

use crate::worker::MetricSink;

/// The stage name of the ingest function's metrics.
pub const METRIC_STAGE: &str = "ingest";

/// What one batch did, for logs and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IngestSummary {
    pub started: usize,
    pub duplicates: usize,
    /// Records that name nothing to process (test events, other prefixes, other buckets).
    pub skipped: usize,
    /// Messages reported failed (redelivered, then dead-lettered).
    pub failed: usize,
}

/// Handles one SQS batch; `bucket` is the only bucket whose events are processed.
pub async fn handle_batch(
    starter: &dyn ExecutionStarter,
    bucket: &str,
    event: SqsEvent,
    metrics: MetricSink<'_>,
) -> (SqsBatchResponse, IngestSummary) {
    let record = |outcome: &str, began: Instant| {
        if let Some(sink) = metrics {
            sink(&StageMetric::new(METRIC_STAGE, outcome, began.elapsed()));
        }
    };
    let mut response = SqsBatchResponse::default();
    let mut summary = IngestSummary::default();
    for message in event.records {
        let id = message.message_id.clone().unwrap_or_default();
        let Some(body) = message.body.as_deref() else {
            tracing::error!(message_id = %id, "SQS message without a body");
            record("failed", Instant::now());
            fail(&mut response, &mut summary, id);
            continue;
        };
        if let Err(why) = handle_message(starter, bucket, &id, body, &mut summary, &record).await {
            tracing::error!(message_id = %id, error = %why, "message failed; it will be redelivered");
            fail(&mut response, &mut summary, id);
        }
    }
    (response, summary)
}

fn fail(response: &mut SqsBatchResponse, summary: &mut IngestSummary, id: String) {
    let mut failure = BatchItemFailure::default();
    failure.item_identifier = id;
    response.batch_item_failures.push(failure);
    summary.failed += 1;
}

/// One message: every object it announces gets its execution. An unreadable message fails
/// (so it ends in the dead-letter queue, not silently dropped).
async fn handle_message(
    starter: &dyn ExecutionStarter,
    bucket: &str,
    id: &str,
    body: &str,
    summary: &mut IngestSummary,
    record: &(dyn Fn(&str, Instant) + Sync),
) -> Result<(), String> {
    let mut first_error = None;
    for item in parse_event_str(&format!("sqs message {id}"), body) {
        let began = Instant::now();
        if let Some(error) = item.error() {
            first_error.get_or_insert_with(|| format!("{}: {error}", item.source));
            record("failed", began);
            continue;
        }
        let Some(object) = item.object() else {
            summary.skipped += 1;
            record("skipped", began);
            continue;
        };
        if object.bucket != bucket {
            tracing::warn!(bucket = %object.bucket, key = %object.key, "event for another bucket ignored");
            summary.skipped += 1;
            record("skipped", began);
            continue;
        }
        let name = object.execution_name();
        let input = object.execution_input().to_string();
        match starter.start(&name, &input).await {
            Ok(StartOutcome::Started) => {
                summary.started += 1;
                record("started", began);
            }
            Ok(StartOutcome::AlreadyExists) => {
                summary.duplicates += 1;
                record("duplicate", began);
            }
            Err(err) => {
                first_error.get_or_insert_with(|| airlock_core::stages::error_chain(&err));
                record("failed", began);
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}
