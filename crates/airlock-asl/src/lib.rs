//! Runs Amazon States Language state machines locally.
//!
//! airlock deploys its upload-scanning pipeline as AWS Step Functions state machines
//! (`statemachine/*.asl.json`). This crate executes the same definitions in-process
//! so the pipeline can run on a laptop or in CI: [`Definition`] parses and validates
//! a definition (JSONPath query language), refusing anything it could not run the way
//! Step Functions would; [`Executor`] runs executions of it on tokio, calling a
//! [`TaskHandler`] for each Task state and accepting `send_task_success` /
//! `send_task_failure` / `send_task_heartbeat` for `.waitForTaskToken` tasks. Each
//! [`Execution`] keeps a history shaped like `GetExecutionHistory`.
//!
//! Supported: every state type (inline Map only), `InputPath` / `Parameters` /
//! `ResultSelector` / `ResultPath` / `OutputPath`, the context object, all JSONPath
//! intrinsic functions, Retry (with backoff, `MaxDelaySeconds` and jitter) and
//! Catch, task and heartbeat timeouts, and the definition's `TimeoutSeconds`.
//! Not supported (refused when parsing): `JSONata`, workflow variables (`Assign`),
//! Distributed Map, and the `.sync` integration pattern.

mod choice;
mod definition;
mod engine;
mod error;
mod executor;
mod history;
mod intrinsic;
mod jsonata;
mod path;
mod retry;
mod template;
mod variables;

pub use definition::{Definition, TaskResource};
pub use error::{
    DefinitionError, MissingHandler, StartError, TaskTokenError, names as error_names,
};
pub use executor::{
    ExecutionHandle, Executor, ExecutorOptions, TaskFailure, TaskHandler, TaskRequest,
};
pub use history::{
    EventDetails, Execution, ExecutionStatus, HistoryEvent, HistoryEventType, StateDuration,
};
