//! Throughput of the executor on an inline Map of three Pass states per item (no
//! tasks): prints state transitions per second for Maps of increasing size, and the
//! process's peak resident memory during each run (Linux `VmHWM`, reset before each run
//! through `/proc/self/clear_refs`), with its growth over the resident memory at the
//! run's start.
//! With `--distributed` the Map is a Distributed Map: each item runs as a child
//! execution with a history of its own. Then the pipeline's own definition
//! (`statemachine/pipeline.asl.json`) with instant tasks: executions of a clean image
//! (Receive, Inspect, Scan, Media, Promote and the Choices between), their task tokens
//! answered as soon as they are sent.
//!
//! `cargo run --release -p airlock-asl --example map_bench [--no-history] [--distributed]
//! [--pipeline=N,N...] [sizes...]`
//!
//! Sizes default to 1,000, 10,000 and 100,000 items, and `--pipeline` to 1,000 and 10,000
//! executions; `--pipeline=0` skips the pipeline and `0` as the only size skips the Maps.
//! Without history (`--no-history`) a pipeline execution counts the 8 states of the clean
//! path it takes.

use std::sync::Arc;
use std::time::Instant;

use airlock_asl::{
    Definition, ExecutionStatus, Executor, ExecutorOptions, TaskFailure, TaskHandler, TaskRequest,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let keep_history = !args.iter().any(|a| a == "--no-history");
    let distributed = args.iter().any(|a| a == "--distributed");
    let pipeline_runs: Vec<usize> = args
        .iter()
        .find_map(|a| a.strip_prefix("--pipeline="))
        .map_or_else(
            || vec![1_000, 10_000],
            |list| {
                list.split(',')
                    .map(|n| n.parse().expect("--pipeline takes execution counts"))
                    .filter(|&n| n > 0)
                    .collect()
            },
        );
    let sizes: Vec<usize> = args
        .iter()
        .filter(|a| !a.starts_with("--"))
        .map(|a| a.parse().expect("sizes are item counts"))
        .filter(|&n| n > 0)
        .collect();
    let skip_maps = args.iter().any(|a| a == "0");
    let sizes = if skip_maps {
        sizes
    } else if sizes.is_empty() {
        vec![1_000, 10_000, 100_000]
    } else {
        sizes
    };
    let mut machine = json!({"StartAt": "Each", "States": {
        "Each": {"Type": "Map", "ItemsPath": "$.items", "End": true, "ItemProcessor": {"StartAt": "A", "States": {
            "A": {"Type": "Pass", "Next": "B"},
            "B": {"Type": "Pass", "Parameters": {"v.$": "$"}, "Next": "C"},
            "C": {"Type": "Pass", "OutputPath": "$.v", "End": true}
        }}}
    }});
    if distributed {
        machine["States"]["Each"]["ItemProcessor"]["ProcessorConfig"] =
            json!({"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"});
    }
    let definition = Definition::from_value(&machine).expect("the benchmark definition is valid");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let executor = Executor::new(
        definition,
        ExecutorOptions {
            keep_history,
            ..ExecutorOptions::default()
        },
    );
    for size in sizes {
        // Zeros keep 100,000 items within the 256 KiB input and output quota.
        let items = vec![0; size];
        let memory = Memory::start();
        let started = Instant::now();
        let (execution, child_events) = runtime.block_on(async {
            let handle = executor
                .start_execution(&format!("bench-{size}"), json!({"items": items}))
                .expect("the execution starts");
            let execution = handle.wait().await;
            let child_events: usize = handle
                .map_runs()
                .iter()
                .flat_map(airlock_asl::MapRun::executions)
                .map(|child| child.describe().history.len())
                .sum();
            (execution, child_events)
        });
        let elapsed = started.elapsed();
        if execution.status != ExecutionStatus::Succeeded {
            println!(
                "{size:>7} items: {:?} {:?}: {:?}",
                execution.status, execution.error, execution.cause
            );
            continue;
        }
        // One transition per state visit: the Map and three Pass states per item.
        let transitions = 1 + 3 * size;
        #[allow(clippy::cast_precision_loss)]
        let rate = transitions as f64 / elapsed.as_secs_f64();
        println!(
            "{size:>7} items: {transitions:>7} transitions in {:>8.3} s = {rate:>9.0} transitions/s, {} history events (+{child_events} in child executions), {}",
            elapsed.as_secs_f64(),
            execution.history.len(),
            memory.report(),
        );
    }
    for executions in pipeline_runs {
        pipeline(&runtime, executions, keep_history);
    }
}

/// Answers every task at once through a channel the driver reads (the executor records
/// the token before it hands the request over).
struct InstantAnswers(mpsc::UnboundedSender<(String, String)>);

#[async_trait::async_trait]
impl TaskHandler for InstantAnswers {
    async fn invoke(&self, request: TaskRequest) -> Result<Value, TaskFailure> {
        let token = request
            .task_token
            .expect("the pipeline's tasks wait for a token");
        let stage = request.parameters["MessageBody"]["stage"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        self.0
            .send((token, stage))
            .map_err(|_| TaskFailure::new("Bench.Closed", "the driver is gone"))?;
        Ok(json!({"MessageId": "bench"}))
    }
}

/// `executions` runs of the pipeline's definition at once on one thread.
fn pipeline(runtime: &tokio::runtime::Runtime, executions: usize, keep_history: bool) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../statemachine/pipeline.asl.json"
    );
    let Ok(text) = std::fs::read_to_string(path) else {
        println!("pipeline: {path} not found (the bench runs from the airlock repository)");
        return;
    };
    let mut value: Value = serde_json::from_str(&text).expect("the pipeline is JSON");
    substitute(&mut value);
    let definition = Definition::from_value(&value).expect("the pipeline definition is valid");
    let (sender, mut tasks) = mpsc::unbounded_channel();
    let mut executor = Executor::new(
        definition,
        ExecutorOptions {
            keep_history,
            ..ExecutorOptions::default()
        },
    );
    executor.register(
        "arn:aws:states:::sqs:sendMessage",
        Arc::new(InstantAnswers(sender)),
    );
    let executor = Arc::new(executor);
    let memory = Memory::start();
    let started = Instant::now();
    let transitions = runtime.block_on(async {
        let answers = Arc::clone(&executor);
        let driver = tokio::spawn(async move {
            while let Some((token, stage)) = tasks.recv().await {
                let output = match stage.as_str() {
                    "inspect" => json!({"outcome": "pass", "media": true}),
                    _ => json!({"outcome": "pass"}),
                };
                answers
                    .send_task_success(&token, output)
                    .expect("the token is known once the task is sent");
            }
        });
        let handles: Vec<_> = (0..executions)
            .map(|i| {
                executor
                    .start_execution(
                        &format!("pipeline-{i}"),
                        json!({"object": {"bucket": "b", "key": format!("incoming/t/avatar/{i}")}}),
                    )
                    .expect("the execution starts")
            })
            .collect();
        let mut transitions = 0;
        for handle in handles {
            let execution = handle.wait().await;
            assert_eq!(
                execution.status,
                ExecutionStatus::Succeeded,
                "{:?}",
                execution.cause
            );
            transitions += if keep_history {
                execution
                    .history
                    .iter()
                    .filter(|e| e.event_type.is_state_entered())
                    .count()
            } else {
                CLEAN_PATH_STATES
            };
        }
        driver.abort();
        transitions
    });
    let elapsed = started.elapsed();
    #[allow(clippy::cast_precision_loss)]
    let rate = transitions as f64 / elapsed.as_secs_f64();
    println!(
        "pipeline: {executions} executions, {transitions} transitions in {:.3} s = {rate:.0} transitions/s, {}",
        elapsed.as_secs_f64(),
        memory.report(),
    );
}

/// `Receive`, `Inspect`, `AfterInspect`, `Scan`, `AfterScan`, `Media`, `AfterMedia` and `Promote`.
const CLEAN_PATH_STATES: usize = 8;

/// Fills the definition's `${...}` placeholders (the template's `DefinitionSubstitutions`).
fn substitute(value: &mut Value) {
    match value {
        Value::String(text) if text.starts_with("${") => {
            *text = format!("https://sqs.local/{}", text.trim_matches(['$', '{', '}']));
        }
        Value::Array(items) => items.iter_mut().for_each(substitute),
        Value::Object(fields) => fields.values_mut().for_each(substitute),
        _ => {}
    }
}

/// Resident memory over one run: the peak is reset at its start (Linux only).
struct Memory {
    at_start: Option<u64>,
}

impl Memory {
    fn start() -> Self {
        // Writing 5 resets the peak (`VmHWM`) to the current resident size.
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        Self {
            at_start: status_kb("VmRSS:"),
        }
    }

    fn report(&self) -> String {
        match (status_kb("VmHWM:"), self.at_start) {
            (Some(peak), Some(start)) => format!(
                "peak RSS {peak} kB (+{} kB over the run's start)",
                peak.saturating_sub(start)
            ),
            _ => "peak RSS unknown".to_owned(),
        }
    }
}

/// A `/proc/self/status` field in kB (Linux only).
fn status_kb(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
