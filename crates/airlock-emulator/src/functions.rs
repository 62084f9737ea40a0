//! The functions of the deployment, run in process against the emulator: each polls its
//! queue as the Lambda service's SQS event source does (a batch in, the messages not
//! reported failed deleted, the failed ones left to come back), and the scan worker polls
//! the scan queue as the ECS task does, with a real clamd.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use airlock_aws::StepFunctionsAnswers;
use airlock_core::definitions::FreshnessRule;
use airlock_core::policy::Policies;
use airlock_core::ports::{Scanner, TaskAnswerError, TaskAnswers};
use airlock_lambda::ingest::IngestSummary;
use airlock_lambda::settings::{IngestSettings, WorkerSettings};
use airlock_lambda::wiring;
use airlock_scan_worker::consumer::ScanQueueConsumer;
use async_trait::async_trait;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::Deployment;

/// How long one receive waits for messages (SQS long polling).
const WAIT_SECONDS: i32 = 1;
/// How long a received task stays hidden before it comes back: longer than any task.
const TASK_VISIBILITY_SECONDS: i32 = 300;
/// How long a received S3 event stays hidden: starting an execution is quick, and one that
/// failed should be tried again soon.
const INGEST_VISIBILITY_SECONDS: i32 = 10;

/// The running pollers; [`Functions::stop`] ends them.
#[derive(Debug)]
pub struct Functions {
    stop: watch::Sender<bool>,
    pollers: JoinSet<()>,
    ingested: Arc<Mutex<Vec<IngestedBatch>>>,
}

/// One batch the ingest function handled: its messages' bodies (S3 event notifications)
/// and what it did with them.
#[derive(Debug, Clone)]
pub struct IngestedBatch {
    pub bodies: Vec<String>,
    pub summary: IngestSummary,
}

impl Functions {
    /// Starts the ingest function on the ingest queue, the worker function on the inspect,
    /// media, promote and quarantine queues, and the scan worker's consumer with `scanner`
    /// (its definitions held to `freshness`) on the scan queue.
    pub fn start(
        sdk: &aws_config::SdkConfig,
        deployment: &Deployment,
        policies: &Policies,
        scanner: Arc<dyn Scanner>,
        freshness: FreshnessRule,
    ) -> Self {
        let (stop, stopped) = watch::channel(false);
        let mut pollers = JoinSet::new();
        let sqs = aws_sdk_sqs::Client::new(sdk);

        let starter = Arc::new(wiring::starter(
            &IngestSettings {
                bucket: deployment.bucket.clone(),
                state_machine_arn: deployment.state_machine_arn.clone(),
            },
            sdk,
        ));
        let bucket = deployment.bucket.clone();
        let ingested = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&ingested);
        pollers.spawn(poll(
            sqs.clone(),
            deployment.ingest_queue_url.clone(),
            INGEST_VISIBILITY_SECONDS,
            stopped.clone(),
            move |event| {
                let (starter, bucket, log) =
                    (Arc::clone(&starter), bucket.clone(), Arc::clone(&log));
                async move {
                    let bodies = event
                        .records
                        .iter()
                        .filter_map(|record| record.body.clone())
                        .collect();
                    let (response, summary) = airlock_lambda::ingest::handle_batch(
                        starter.as_ref(),
                        &bucket,
                        event,
                        None,
                    )
                    .await;
                    log.lock()
                        .expect("ingest log lock")
                        .push(IngestedBatch { bodies, summary });
                    response
                }
            },
        ));

        let settings = WorkerSettings {
            bucket: deployment.bucket.clone(),
            table: deployment.table.clone(),
            event_bus: deployment.event_bus.clone(),
            media_concurrency: 1,
            policies: policies.clone(),
        };
        let (worker, answers) = wiring::worker(&settings, sdk);
        let answers = Arc::new(TokensSettle(answers));
        for (logical_id, _) in crate::deployment::WORK_QUEUES {
            if logical_id == "ScanQueue" {
                continue;
            }
            let worker = Arc::new(worker.clone());
            let answers = Arc::clone(&answers);
            pollers.spawn(poll(
                sqs.clone(),
                deployment.queue_url(logical_id).to_owned(),
                TASK_VISIBILITY_SECONDS,
                stopped.clone(),
                move |event| {
                    let (worker, answers) = (Arc::clone(&worker), Arc::clone(&answers));
                    async move {
                        airlock_lambda::worker::handle_batch(&worker, answers.as_ref(), event, None)
                            .await
                            .0
                    }
                },
            ));
        }

        // The scan worker as the ECS task runs it, with its own consumer of the scan queue.
        let mut scan_worker = worker;
        scan_worker.scanner = scanner;
        scan_worker.freshness = freshness;
        let mut consumer = ScanQueueConsumer::new(
            sqs,
            deployment.queue_url("ScanQueue"),
            Arc::new(scan_worker),
            answers,
        );
        consumer.wait_seconds = WAIT_SECONDS;
        consumer.metrics = Arc::new(|_| {});
        let stopped_scans = stopped.clone();
        pollers.spawn(async move { consumer.run(stopped_scans).await });
        Self {
            stop,
            pollers,
            ingested,
        }
    }

    /// Every batch the ingest function has handled so far, oldest first.
    #[must_use]
    pub fn ingested(&self) -> Vec<IngestedBatch> {
        self.ingested.lock().expect("ingest log lock").clone()
    }

    /// Stops polling and waits for the batches in hand to finish.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        while self.pollers.join_next().await.is_some() {}
    }
}

/// Task answers to the emulator, which sends a task's message before it records the task's
/// token: a worker that receives the message at once may be told the token is invalid. A
/// heartbeat refused that way is tried again for a few seconds before the refusal stands
/// (on AWS the token is valid once the message is out, and the first answer is kept).
struct TokensSettle(StepFunctionsAnswers);

/// How long a token may take to become known to the emulator.
const TOKEN_SETTLE: Duration = Duration::from_secs(5);

#[async_trait]
impl TaskAnswers for TokensSettle {
    async fn succeed(&self, token: &str, output: serde_json::Value) -> Result<(), TaskAnswerError> {
        self.0.succeed(token, output).await
    }

    async fn fail(&self, token: &str, error: &str, cause: &str) -> Result<(), TaskAnswerError> {
        self.0.fail(token, error, cause).await
    }

    async fn heartbeat(&self, token: &str) -> Result<(), TaskAnswerError> {
        let deadline = tokio::time::Instant::now() + TOKEN_SETTLE;
        loop {
            match self.0.heartbeat(token).await {
                Err(err)
                    if err.message.contains("InvalidToken")
                        && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                answered => return answered,
            }
        }
    }
}

/// Receives batches from `queue_url` until told to stop, hands each to `handle`, and
/// deletes the messages it did not report failed.
async fn poll<H, F>(
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    visibility_seconds: i32,
    mut stopped: watch::Receiver<bool>,
    handle: H,
) where
    H: Fn(SqsEvent) -> F + Send + 'static,
    F: Future<Output = SqsBatchResponse> + Send,
{
    loop {
        if *stopped.borrow() {
            return;
        }
        let received = tokio::select! {
            _ = stopped.changed() => return,
            received = sqs
                .receive_message()
                .queue_url(&queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(WAIT_SECONDS)
                .visibility_timeout(visibility_seconds)
                .send() => received,
        };
        let messages = match received {
            Ok(out) => out.messages.unwrap_or_default(),
            Err(err) => {
                tracing::warn!(queue = %queue_url, error = %aws_sdk_sqs::error::DisplayErrorContext(&err), "receive failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if messages.is_empty() {
            continue;
        }
        let mut event = SqsEvent::default();
        let mut receipts = Vec::new();
        for message in messages {
            let mut record = SqsMessage::default();
            record.message_id.clone_from(&message.message_id);
            record.receipt_handle.clone_from(&message.receipt_handle);
            record.body.clone_from(&message.body);
            receipts.push((
                message.message_id.unwrap_or_default(),
                message.receipt_handle.unwrap_or_default(),
            ));
            event.records.push(record);
        }
        let response = handle(event).await;
        let failed: HashSet<String> = response
            .batch_item_failures
            .into_iter()
            .map(|f| f.item_identifier)
            .collect();
        for (id, receipt) in receipts {
            if failed.contains(&id) {
                continue;
            }
            if let Err(err) = sqs
                .delete_message()
                .queue_url(&queue_url)
                .receipt_handle(receipt)
                .send()
                .await
            {
                tracing::warn!(queue = %queue_url, error = %aws_sdk_sqs::error::DisplayErrorContext(&err), "delete failed");
            }
        }
    }
}
