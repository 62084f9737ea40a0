//! Runs Amazon States Language state machines locally.
//!
//! airlock deploys its upload-scanning pipeline as AWS Step Functions state machines
//! (`statemachine/*.asl.json`). This crate executes the same definitions in-process
//! so the pipeline can run on a laptop or in CI. It depends on nothing else in airlock
//! and can serve as a local Step Functions runner for any definition: [`Definition`]
//! parses and validates a definition, refusing anything it could not run the way Step
//! Functions would; [`Executor`] runs executions of it on tokio, calling a
//! [`TaskHandler`] for each Task state and accepting `send_task_success` /
//! `send_task_failure` / `send_task_heartbeat` for `.waitForTaskToken` tasks. Each
//! [`Execution`] keeps a history shaped like `GetExecutionHistory`.
//!
//! Supported:
//! - every state type, Retry (backoff, `MaxDelaySeconds`, jitter) and
//!   Catch, task and heartbeat timeouts, the definition's `TimeoutSeconds`;
//! - Distributed Map (`ProcessorConfig.Mode: DISTRIBUTED`, `STANDARD` or `EXPRESS`): each
//!   item (or `ItemBatcher` batch) runs as a child execution of a [`MapRun`], listed by
//!   [`ExecutionHandle::map_runs`] with its own history; `MapRunStarted`/`Succeeded`/`Failed`
//!   events on the parent; `ToleratedFailureCount`/`Percentage` (and `…Path`) failing the
//!   state with `States.ExceedToleratedFailureThreshold`; `Label`; an `ItemReader`
//!   (`s3:getObject` with JSON, JSONL and CSV, `s3:listObjectsV2`, `LOAD_AND_FLATTEN`,
//!   `MaxItems`) and a `ResultWriter` (`manifest.json` and `SUCCEEDED_0.json` /
//!   `FAILED_0.json` / `PENDING_0.json`, `WriterConfig`) served by the host's
//!   [`ObjectStore`] ([`FsObjectStore`] keeps buckets as folders under a root);
//! - JSONPath states: `InputPath` / `Parameters` / `ResultSelector` / `ResultPath` /
//!   `OutputPath`, the context object (also in `InputPath`, `OutputPath`, `ErrorPath`
//!   and `CausePath`), all intrinsic functions;
//! - JSONata states (`"QueryLanguage": "JSONata"` for the definition or one state):
//!   `Arguments`, `Output`, `Condition`, `Items`, `ItemSelector`, `{% %}` expressions
//!   in the numeric and text fields, `$states.input` / `.result` / `.errorOutput` /
//!   `.context`, and Step Functions' `$partition`, `$range`, `$hash`, `$random`,
//!   `$uuid` and `$parse`. Expressions run on the `jsonata-rs` crate, which passes
//!   73 % of the JSONata project's test suite (see the `jsonata` module);
//! - workflow variables: `Assign` on states, choice rules and catchers, `$name`
//!   references, read-only outer scopes in Parallel branches and Map iterations, and
//!   the documented size limits;
//! - Step Functions' runtime behaviour where it differs from a literal reading of the
//!   specification: uncatchable `States.Runtime` for a missing `Parameters` path, with
//!   the service's cause wording (state name and entered event id);
//!   `States.DataLimitExceeded` past 256 KiB, matched only by name; Map iterations
//!   started in index order within `MaxConcurrency` and none after a failure; a Wait
//!   more than a year away failing at once; history events chained as the service
//!   chains them, with `LambdaFunction*` events for Lambda function ARNs.
//!
//! Not supported (refused when parsing, naming the field): the `.sync` integration
//! pattern, and `ItemReader` inputs of type `PARQUET` and `MANIFEST` (S3 inventories,
//! Athena manifests).
//!
//! Performance (`examples/map_bench`, one thread of a shared 2-core machine; details in
//! the repository's `docs/benchmarks-asl.md`):
//!
//! | workload | transitions/s | memory with history |
//! | --- | ---: | ---: |
//! | inline Map, 1,000 / 10,000 / 100,000 items of three Pass states | 670k-1,080k / 950k-990k / 560k-820k | about 250 bytes per event |
//! | Distributed Map, 10,000 items | about 130k | |
//! | pipeline definition, instant tasks, 1,000 / 10,000 executions at once | 88k-167k / 80k-137k | about 16 KB per execution |
//!
//! A finished execution's [`History`] is shared by every reader rather than copied, its
//! payloads are [`JsonText`] written once per state and its state and resource names
//! shared with the definition, and with [`ExecutorOptions::keep_history`] off no event is
//! built at all. A `.waitForTaskToken` task costs one keyed hash for its token (a
//! sequence number and a 128-bit tag), a one-shot channel for the answer and one timer;
//! its handler runs in the execution's own task, a panic caught as `States.TaskFailed`.

mod choice;
mod definition;
mod distributed;
mod engine;
mod error;
mod executor;
mod history;
mod intrinsic;
mod jsonata;
mod objects;
mod path;
mod retry;
mod template;
mod variables;

pub use definition::{Definition, TaskResource};
pub use distributed::{MapRun, MapRunItemCounts, MapRunStatus};
pub use error::{
    DefinitionError, MissingHandler, StartError, TaskTokenError, names as error_names,
};
pub use executor::{
    ExecutionHandle, Executor, ExecutorOptions, TaskFailure, TaskHandler, TaskRequest,
};
pub use history::{
    EventDetails, Execution, ExecutionStatus, History, HistoryEvent, HistoryEventType, JsonText,
    StateDuration,
};
pub use objects::{FsObjectStore, ObjectStore, ObjectStoreError, ObjectSummary};
