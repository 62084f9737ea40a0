//! [`ScanQueueConsumer`]: long-polls the scan queue and answers each task.

use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock_core::ports::TaskAnswers;
use airlock_core::stages::{Stage, error_names};
use airlock_core::worker::{Answered, HandleError, Worker};
use airlock_emf::StageMetric;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::Message;
use serde_json::Value;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

/// Where each task's metric goes (standard output as EMF in the service; a list in tests).
pub type MetricSink = Arc<dyn Fn(StageMetric) + Send + Sync>;

/// The sink the service uses: EMF lines on standard output.
#[must_use]
pub fn emf_stdout() -> MetricSink {
    Arc::new(|metric: StageMetric| {
        if let Err(error) = metric.emit() {
            tracing::warn!(%error, "writing a metric failed");
        }
    })
}

/// Long SQS polls: the longest SQS allows, so an idle worker costs a request per 20 s.
const LONG_POLL_SECONDS: i32 = 20;

/// Pause after a failed receive, so an outage is not hammered.
const RECEIVE_BACKOFF: Duration = Duration::from_secs(2);

/// Polls one queue and runs its scan tasks, `concurrency` at a time.
#[derive(Clone)]
pub struct ScanQueueConsumer {
    pub sqs: Client,
    pub queue_url: String,
    pub worker: Arc<Worker>,
    pub answers: Arc<dyn TaskAnswers>,
    pub concurrency: usize,
    /// How long a received message stays invisible; renewed every half of it while its
    /// task runs.
    pub visibility: Duration,
    /// Seconds each receive waits for a message (SQS allows 0 to 20).
    pub wait_seconds: i32,
    pub metrics: MetricSink,
}

impl std::fmt::Debug for ScanQueueConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScanQueueConsumer")
            .field("queue_url", &self.queue_url)
            .field("concurrency", &self.concurrency)
            .field("visibility", &self.visibility)
            .finish_non_exhaustive()
    }
}

/// What became of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Answered (or nobody waits for its token any more): deleted from the queue.
    Deleted,
    /// Not answered: left for redelivery (and in the end the dead-letter queue).
    Left,
}

impl ScanQueueConsumer {
    /// A consumer with the service's defaults: long polls, EMF metrics on stdout.
    #[must_use]
    pub fn new(
        sqs: Client,
        queue_url: impl Into<String>,
        worker: Arc<Worker>,
        answers: Arc<dyn TaskAnswers>,
    ) -> Self {
        Self {
            sqs,
            queue_url: queue_url.into(),
            worker,
            answers,
            concurrency: 4,
            visibility: Duration::from_mins(2),
            wait_seconds: LONG_POLL_SECONDS,
            metrics: emf_stdout(),
        }
    }

    /// Polls until `shutdown` turns true (or its sender is dropped), then stops polling and returns once the tasks in
    /// flight are done (their messages deleted or left as usual).
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) {
        let permits = Arc::new(Semaphore::new(self.concurrency.max(1)));
        let mut running = JoinSet::new();
        loop {
            if *shutdown.borrow() {
                break;
            }
            // Receive only as many messages as can start now: a message held while waiting
            // for a slot would count against its task's heartbeat.
            let first = tokio::select! {
                permit = Arc::clone(&permits).acquire_owned() => permit.expect("never closed"),
                _ = shutdown.wait_for(|stop| *stop) => break,
            };
            let free = 1 + permits.available_permits();
            let received = tokio::select! {
                received = self.receive(free) => received,
                _ = shutdown.wait_for(|stop| *stop) => break,
            };
            let messages = match received {
                Ok(messages) => messages,
                Err(error) => {
                    tracing::warn!(%error, queue = %self.queue_url, "receiving from the scan queue failed");
                    drop(first);
                    tokio::select! {
                        () = tokio::time::sleep(RECEIVE_BACKOFF) => {}
                        _ = shutdown.wait_for(|stop| *stop) => break,
                    }
                    continue;
                }
            };
            let mut first = Some(first);
            for message in messages {
                let permit = match first.take() {
                    Some(permit) => permit,
                    None => Arc::clone(&permits)
                        .acquire_owned()
                        .await
                        .expect("never closed"),
                };
                let consumer = self.clone();
                running.spawn(async move {
                    let disposition = consumer.process(message).await;
                    drop(permit);
                    disposition
                });
            }
            // Reap finished tasks so the set does not grow.
            while running.try_join_next().is_some() {}
        }
        tracing::info!(
            in_flight = running.len(),
            "scan worker stopping: finishing the tasks in flight"
        );
        while running.join_next().await.is_some() {}
    }

    async fn receive(&self, max: usize) -> Result<Vec<Message>, String> {
        let max = i32::try_from(max.clamp(1, 10)).unwrap_or(10);
        let out = self
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(max)
            .wait_time_seconds(self.wait_seconds)
            .visibility_timeout(self.visibility_secs())
            .send()
            .await
            .map_err(|e| airlock_core::stages::error_chain(&e))?;
        Ok(out.messages.unwrap_or_default())
    }

    fn visibility_secs(&self) -> i32 {
        i32::try_from(self.visibility.as_secs().max(2)).unwrap_or(43_200)
    }

    /// Runs one message's task, keeping the message invisible meanwhile; deletes it when
    /// answered.
    pub async fn process(&self, message: Message) -> Disposition {
        let started = Instant::now();
        let body = message.body().unwrap_or_default();
        let Some(receipt) = message.receipt_handle() else {
            tracing::error!("a received message has no receipt handle");
            return Disposition::Left;
        };
        let handled = tokio::select! {
            biased;
            handled = self.handle(body) => handled,
            () = self.keep_invisible(receipt) => unreachable!("keeps going until the task ends"),
        };
        let (stage, outcome, delete) = match &handled {
            Ok(Answered { stage, outcome }) => (stage.unwrap_or(Stage::Scan), *outcome, true),
            Err(HandleError::Stale(why)) => {
                tracing::info!(why, "dropping a task nobody waits for");
                (Stage::Scan, "stale", true)
            }
            Err(error) => {
                tracing::error!(%error, "task not answered: left for redelivery");
                (Stage::Scan, "unanswered", false)
            }
        };
        (self.metrics)(StageMetric::new(stage.as_str(), outcome, started.elapsed()));
        if !delete {
            return Disposition::Left;
        }
        match self
            .sqs
            .delete_message()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt)
            .send()
            .await
        {
            Ok(_) => Disposition::Deleted,
            Err(error) => {
                // The task is answered; a redelivery finds its token answered and is
                // dropped as stale.
                tracing::warn!(error = %airlock_core::stages::error_chain(&error), "deleting an answered message failed");
                Disposition::Left
            }
        }
    }

    /// The worker runs scan tasks only: anything else on this queue is answered as a bad
    /// message, never run (this process has no media library, and promote and quarantine
    /// belong to other workers).
    async fn handle(&self, body: &str) -> Result<Answered, HandleError> {
        if let Ok(value) = serde_json::from_str::<Value>(body)
            && let Some(stage) = value.get("stage").and_then(Value::as_str)
            && stage != Stage::Scan.as_str()
            && let Some(token) = value.get("taskToken").and_then(Value::as_str)
        {
            tracing::error!(stage, "a task for another stage on the scan queue");
            self.answers
                .fail(
                    token,
                    error_names::BAD_MESSAGE,
                    &format!("the scan worker runs scan tasks only, not {stage:?}"),
                )
                .await
                .map_err(|e| HandleError::Answer(e.to_string()))?;
            return Ok(Answered {
                stage: None,
                outcome: airlock_core::worker::BAD_MESSAGE_OUTCOME,
            });
        }
        self.worker
            .handle_reported(body, self.answers.as_ref())
            .await
    }

    /// Renews the message's invisibility every half of it, for as long as it is polled.
    async fn keep_invisible(&self, receipt: &str) {
        let every = self.visibility / 2;
        loop {
            tokio::time::sleep(every).await;
            if let Err(error) = self
                .sqs
                .change_message_visibility()
                .queue_url(&self.queue_url)
                .receipt_handle(receipt)
                .visibility_timeout(self.visibility_secs())
                .send()
                .await
            {
                tracing::warn!(error = %airlock_core::stages::error_chain(&error), "extending a message's visibility failed");
            }
        }
    }
}

/// The media port of a process that runs no media stage: every image is refused as
/// `media-unavailable`. The scan worker never reaches it (it answers tasks of other
/// stages as bad messages before running anything), but a `Worker` needs one.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoMedia;

impl airlock_core::media::MediaProcessor for NoMedia {
    fn process(
        &self,
        _bytes: &[u8],
        _content_type: &str,
        _policy: &airlock_core::media::MediaPolicy,
    ) -> Result<airlock_core::media::MediaProduct, airlock_core::media::MediaRejection> {
        Err(airlock_core::media::MediaRejection {
            reason: airlock_core::verdict::ReasonCode::MediaUnavailable,
            detail: "the scan worker has no media library".to_owned(),
        })
    }
}
