//! Throughput of the executor on an inline Map of three Pass states per item (no
//! tasks): prints state transitions per second for Maps of increasing size, and the
//! process's peak resident memory so far (Linux `VmHWM`; the whole history is kept).
//! With `--distributed` the Map is a Distributed Map: each item runs as a child
//! execution with a history of its own.
//!
//! `cargo run --release -p airlock-asl --example map_bench [--no-history] [--distributed] [sizes...]`

use std::time::Instant;

use airlock_asl::{Definition, ExecutionStatus, Executor, ExecutorOptions};
use serde_json::json;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let keep_history = !args.iter().any(|a| a == "--no-history");
    let distributed = args.iter().any(|a| a == "--distributed");
    let sizes: Vec<usize> = args
        .iter()
        .filter(|a| !a.starts_with("--"))
        .map(|a| a.parse().expect("sizes are item counts"))
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1_000, 10_000]
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
            "{size:>7} items: {transitions:>7} transitions in {:>8.3} s = {rate:>9.0} transitions/s, {} history events (+{child_events} in child executions), peak RSS {}",
            elapsed.as_secs_f64(),
            execution.history.len(),
            peak_rss().unwrap_or_else(|| "unknown".into())
        );
    }
}

/// The process's peak resident set size, from `/proc/self/status` (Linux only).
fn peak_rss() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .map(|v| v.trim().to_owned())
}
