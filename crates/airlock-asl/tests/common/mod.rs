//! Helpers shared by the executor tests: fake handlers and history inspection.

#![allow(dead_code)]

use std::sync::Arc;

use airlock_asl::{
    Definition, Execution, Executor, ExecutorOptions, HistoryEventType, TaskFailure, TaskHandler,
    TaskRequest,
};
use serde_json::Value;
use tokio::sync::mpsc;

/// A handler answering synchronously from a closure.
pub struct FnHandler<F>(pub F);

#[async_trait::async_trait]
impl<F> TaskHandler for FnHandler<F>
where
    F: Fn(TaskRequest) -> Result<Value, TaskFailure> + Send + Sync,
{
    async fn invoke(&self, request: TaskRequest) -> Result<Value, TaskFailure> {
        (self.0)(request)
    }
}

pub fn handler<F>(f: F) -> Arc<dyn TaskHandler>
where
    F: Fn(TaskRequest) -> Result<Value, TaskFailure> + Send + Sync + 'static,
{
    Arc::new(FnHandler(f))
}

/// Plays a message queue: each request is forwarded to the returned receiver,
/// where a test's "worker" picks it up.
struct QueueHandler(mpsc::UnboundedSender<TaskRequest>);

#[async_trait::async_trait]
impl TaskHandler for QueueHandler {
    async fn invoke(&self, request: TaskRequest) -> Result<Value, TaskFailure> {
        let attempt = request.attempt;
        self.0
            .send(request)
            .map_err(|_| TaskFailure::new("Queue.Closed", "the test worker is gone"))?;
        Ok(serde_json::json!({"MessageId": format!("message-{attempt}")}))
    }
}

pub fn queue() -> (Arc<dyn TaskHandler>, mpsc::UnboundedReceiver<TaskRequest>) {
    let (sender, receiver) = mpsc::unbounded_channel();
    (Arc::new(QueueHandler(sender)), receiver)
}

pub fn definition(value: &Value) -> Definition {
    Definition::from_value(value).unwrap_or_else(|e| panic!("{e}"))
}

/// An executor without delays (Wait and Retry intervals scaled to zero).
pub fn instant_executor(value: &Value) -> Executor {
    Executor::new(
        definition(value),
        ExecutorOptions {
            delay_scale: 0.0,
            jitter_seed: Some(7),
            ..ExecutorOptions::default()
        },
    )
}

pub fn event_types(execution: &Execution) -> Vec<HistoryEventType> {
    execution.history.iter().map(|e| e.event_type).collect()
}

pub fn count(execution: &Execution, event_type: HistoryEventType) -> usize {
    execution
        .history
        .iter()
        .filter(|e| e.event_type == event_type)
        .count()
}
