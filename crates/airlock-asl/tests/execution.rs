//! Running definitions end to end: data flow, state types, Retry/Catch, Parallel, Map.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use airlock_asl::{
    EventDetails, ExecutionStatus, Executor, ExecutorOptions, HistoryEventType as T, StartError,
    TaskFailure, TaskHandler, TaskRequest,
};
use common::{count, definition, event_types, handler, instant_executor};
use serde_json::{Value, json};

const ADD: &str = "arn:aws:lambda:us-east-1:123456789012:function:Add";

fn add_handler() -> Arc<dyn TaskHandler> {
    handler(|request| {
        let p = &request.parameters;
        Ok(json!(
            p["val1"].as_i64().unwrap() + p["val2"].as_i64().unwrap()
        ))
    })
}

/// A single Task state calling [`ADD`], with extra fields merged in.
fn add_task(fields: &Value) -> Value {
    let mut state = json!({"Type": "Task", "Resource": ADD, "End": true});
    for (k, v) in fields.as_object().unwrap() {
        state[k] = v.clone();
    }
    json!({"StartAt": "Add", "States": {"Add": state}})
}

async fn run(executor: &Executor, input: Value) -> airlock_asl::Execution {
    executor.start_execution("run", input).unwrap().wait().await
}

#[tokio::test]
async fn spec_result_path_example_adds_the_sum_to_the_input() {
    let executor = instant_executor(&add_task(
        &json!({"InputPath": "$.numbers", "ResultPath": "$.sum"}),
    ))
    .with_handler(ADD, add_handler());
    let execution = run(
        &executor,
        json!({"title": "Numbers to add", "numbers": {"val1": 3, "val2": 4}}),
    )
    .await;
    assert_eq!(execution.status, ExecutionStatus::Succeeded);
    assert_eq!(
        execution.output,
        Some(json!({"title": "Numbers to add", "numbers": {"val1": 3, "val2": 4}, "sum": 7}))
    );
}

#[tokio::test]
async fn spec_result_path_builds_nested_objects_and_replaces_nodes() {
    let greet = "arn:aws:lambda:us-east-1:1:function:Greet";
    let hi = || handler(|_| Ok(json!("Hi!")));
    let six = || handler(|_| Ok(json!(6)));
    let case = |result_path: &str| json!({"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": greet, "ResultPath": result_path, "End": true}}});

    let executor = instant_executor(&case("$.b.greeting")).with_handler(greet, hi());
    let out = run(&executor, json!({"a": 1})).await.output;
    assert_eq!(out, Some(json!({"a": 1, "b": {"greeting": "Hi!"}})));

    let executor = instant_executor(&case("$.master.detail")).with_handler(greet, six());
    let out = run(&executor, json!({"master": {"detail": [1, 2, 3]}}))
        .await
        .output;
    assert_eq!(out, Some(json!({"master": {"detail": 6}})));

    let executor = instant_executor(&case("$.master.result.sum")).with_handler(greet, six());
    let out = run(&executor, json!({"master": {"detail": [1, 2, 3]}}))
        .await
        .output;
    assert_eq!(
        out,
        Some(json!({"master": {"detail": [1, 2, 3], "result": {"sum": 6}}}))
    );
}

#[tokio::test]
async fn null_paths_discard_as_specified() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let recorder = {
        let seen = Arc::clone(&seen);
        handler(move |request| {
            seen.lock().unwrap().push(request.parameters);
            Ok(json!("result"))
        })
    };
    // InputPath null: the task sees {}. ResultPath null: the output is the raw input.
    let executor = instant_executor(&add_task(&json!({"InputPath": null, "ResultPath": null})))
        .with_handler(ADD, recorder.clone());
    let out = run(&executor, json!({"keep": true})).await.output;
    assert_eq!(out, Some(json!({"keep": true})));
    assert_eq!(seen.lock().unwrap()[0], json!({}));
    // OutputPath null: the output is {}.
    let executor =
        instant_executor(&add_task(&json!({"OutputPath": null}))).with_handler(ADD, recorder);
    assert_eq!(
        run(&executor, json!({"keep": true})).await.output,
        Some(json!({}))
    );
}

#[tokio::test]
async fn processing_happens_in_aws_order() {
    // InputPath → Parameters → task → ResultSelector → ResultPath → OutputPath.
    let echo = handler(|request| Ok(json!({"echo": request.parameters, "meta": {"status": 200}})));
    let executor = instant_executor(&add_task(&json!({
        "InputPath": "$.job",
        "Parameters": {"id.$": "$.id", "fixed": "x", "upper.$": "States.Format('job-{}', $.id)"},
        "ResultSelector": {"sent.$": "$.echo", "status.$": "$.meta.status"},
        "ResultPath": "$.job.result",
        "OutputPath": "$.job"
    })))
    .with_handler(ADD, echo);
    let out = run(&executor, json!({"job": {"id": 42}, "other": true}))
        .await
        .output;
    assert_eq!(
        out,
        Some(json!({
            "id": 42,
            "result": {"sent": {"id": 42, "fixed": "x", "upper": "job-42"}, "status": 200}
        }))
    );
}

#[tokio::test]
async fn indefinite_input_paths_produce_arrays() {
    let echo = handler(|request| Ok(request.parameters));
    let executor =
        instant_executor(&add_task(&json!({"InputPath": "$.a[0,1]"}))).with_handler(ADD, echo);
    assert_eq!(
        run(&executor, json!({"a": [1, 2, 3, 4]})).await.output,
        Some(json!([1, 2]))
    );
}

#[tokio::test]
async fn pass_state_spec_example_and_parameters() {
    let executor = instant_executor(&json!({"StartAt": "No-op", "States": {
        "No-op": {
            "Type": "Pass",
            "Result": {"x-datum": 0.381_018, "y-datum": 622.226_992_639_735_5},
            "ResultPath": "$.coords",
            "Next": "Shape"
        },
        "Shape": {
            "Type": "Pass",
            "Parameters": {"where.$": "$.georefOf", "x.$": "$.coords.x-datum", "state.$": "$$.State.Name"},
            "ResultPath": "$.shaped",
            "End": true
        }
    }}));
    let out = run(&executor, json!({"georefOf": "Home"}))
        .await
        .output
        .unwrap();
    assert_eq!(
        out,
        json!({
            "georefOf": "Home",
            "coords": {"x-datum": 0.381_018, "y-datum": 622.226_992_639_735_5},
            "shaped": {"where": "Home", "x": 0.381_018, "state": "Shape"}
        })
    );
}

#[tokio::test]
async fn context_object_is_available_to_parameters() {
    let echo = handler(|request| Ok(request.parameters));
    let executor = Executor::new(
        definition(&add_task(&json!({"Parameters": {
            "name.$": "$$.Execution.Name",
            "id.$": "$$.Execution.Id",
            "input.$": "$$.Execution.Input",
            "start.$": "$$.Execution.StartTime",
            "machine.$": "$$.StateMachine.Name",
            "state.$": "$$.State.Name",
            "entered.$": "$$.State.EnteredTime",
            "retries.$": "$$.State.RetryCount"
        }}))),
        ExecutorOptions {
            state_machine_name: "airlock-pipeline".into(),
            ..ExecutorOptions::default()
        },
    )
    .with_handler(ADD, echo);
    let execution = executor
        .start_execution("upload-1", json!({"k": "v"}))
        .unwrap()
        .wait()
        .await;
    let out = execution.output.unwrap();
    assert_eq!(out["name"], json!("upload-1"));
    assert_eq!(
        out["id"],
        json!("arn:aws:states:local:000000000000:execution:airlock-pipeline:upload-1")
    );
    assert_eq!(out["input"], json!({"k": "v"}));
    assert_eq!(out["machine"], json!("airlock-pipeline"));
    assert_eq!(out["state"], json!("Add"));
    assert_eq!(out["retries"], json!(0));
    for field in ["start", "entered"] {
        let text = out[field].as_str().unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(text).is_ok(),
            "{field}: {text}"
        );
    }
}

#[tokio::test]
async fn choice_routes_and_reports_no_match() {
    let machine = json!({"StartAt": "C", "States": {
        "C": {"Type": "Choice", "Choices": [
            {"Not": {"Variable": "$.type", "StringEquals": "Private"}, "Next": "Public"},
            {"And": [
                {"Variable": "$.value", "NumericGreaterThanEquals": 20},
                {"Variable": "$.value", "NumericLessThan": 30}
            ], "Next": "ValueInTwenties"}
        ], "OutputPath": "$.value"},
        "Public": {"Type": "Pass", "Result": "public", "End": true},
        "ValueInTwenties": {"Type": "Pass", "Parameters": {"v.$": "$"}, "End": true}
    }});
    let executor = instant_executor(&machine);
    let execution = run(&executor, json!({"type": "Private", "value": 22})).await;
    assert_eq!(execution.output, Some(json!({"v": 22})));
    assert_eq!(
        event_types(&execution),
        vec![
            T::ExecutionStarted,
            T::ChoiceStateEntered,
            T::ChoiceStateExited,
            T::PassStateEntered,
            T::PassStateExited,
            T::ExecutionSucceeded
        ]
    );

    let executor = instant_executor(&machine);
    let execution = run(&executor, json!({"type": "Private", "value": 40})).await;
    assert_eq!(execution.status, ExecutionStatus::Failed);
    assert_eq!(execution.error.as_deref(), Some("States.NoChoiceMatched"));
}

#[tokio::test]
async fn choice_on_a_missing_variable_is_a_runtime_failure() {
    let executor = instant_executor(&json!({"StartAt": "C", "States": {
        "C": {"Type": "Choice", "Choices": [{"Variable": "$.nope", "StringEquals": "x", "Next": "D"}], "Default": "D"},
        "D": {"Type": "Succeed"}
    }}));
    let execution = run(&executor, json!({})).await;
    assert_eq!(execution.status, ExecutionStatus::Failed);
    assert_eq!(execution.error.as_deref(), Some("States.Runtime"));
    assert!(execution.cause.unwrap().contains("$.nope"));
}

#[tokio::test(start_paused = true)]
async fn wait_states_honour_every_form_and_the_delay_scale() {
    let machine = json!({"StartAt": "Fixed", "States": {
        "Fixed": {"Type": "Wait", "Seconds": 10, "Next": "FromPath"},
        "FromPath": {"Type": "Wait", "SecondsPath": "$.delay", "Next": "Past"},
        "Past": {"Type": "Wait", "Timestamp": "2000-01-01T00:00:00Z", "Next": "PastPath"},
        "PastPath": {"Type": "Wait", "TimestampPath": "$.when", "End": true}
    }});
    let input = json!({"delay": 20, "when": "2001-01-01T00:00:00+02:00"});
    for (scale, expected) in [(1.0, 30), (0.5, 15), (0.0, 0)] {
        let executor = Executor::new(
            definition(&machine),
            ExecutorOptions {
                delay_scale: scale,
                ..ExecutorOptions::default()
            },
        );
        let started = tokio::time::Instant::now();
        let execution = run(&executor, input.clone()).await;
        assert_eq!(execution.status, ExecutionStatus::Succeeded);
        assert_eq!(execution.output, Some(input.clone()));
        assert_eq!(started.elapsed().as_secs(), expected, "scale {scale}");
        assert_eq!(count(&execution, T::WaitStateExited), 4);
    }
}

#[tokio::test]
async fn fail_states_report_error_and_cause() {
    let executor = instant_executor(&json!({"StartAt": "F", "States": {
        "F": {"Type": "Fail", "Error": "ErrorA", "Cause": "Kaiju attack"}
    }}));
    let execution = run(&executor, json!({})).await;
    assert_eq!(execution.status, ExecutionStatus::Failed);
    assert_eq!(execution.error.as_deref(), Some("ErrorA"));
    assert_eq!(execution.cause.as_deref(), Some("Kaiju attack"));
    assert_eq!(
        event_types(&execution),
        vec![T::ExecutionStarted, T::FailStateEntered, T::ExecutionFailed]
    );

    let executor = instant_executor(&json!({"StartAt": "F", "States": {
        "F": {"Type": "Fail", "ErrorPath": "$.code", "CausePath": "States.Format('upload {} rejected', $.id)"}
    }}));
    let execution = run(&executor, json!({"code": "Airlock.Rejected", "id": 7})).await;
    assert_eq!(execution.error.as_deref(), Some("Airlock.Rejected"));
    assert_eq!(execution.cause.as_deref(), Some("upload 7 rejected"));
}

/// Fails with `errors[n]` on attempt n+1, then succeeds with the attempt number.
fn flaky(errors: &'static [&'static str], calls: Arc<AtomicU32>) -> Arc<dyn TaskHandler> {
    handler(move |request| {
        calls.fetch_add(1, Ordering::SeqCst);
        let index = usize::try_from(request.attempt - 1).unwrap();
        match errors.get(index) {
            Some(error) => Err(TaskFailure::new(
                *error,
                format!("attempt {}", request.attempt),
            )),
            None => Ok(json!({"attempt": request.attempt})),
        }
    })
}

#[tokio::test]
async fn retriers_count_separately_and_then_catch() {
    // The ASL spec's complex retry scenario: A, B, C, B; the last exhausts retrier 0.
    let calls = Arc::new(AtomicU32::new(0));
    let executor = instant_executor(&json!({"StartAt": "X", "States": {
        "X": {"Type": "Task", "Resource": ADD, "Next": "Y",
            "Retry": [
                {"ErrorEquals": ["ErrorA", "ErrorB"], "IntervalSeconds": 1, "BackoffRate": 2, "MaxAttempts": 2},
                {"ErrorEquals": ["ErrorC"], "IntervalSeconds": 5}
            ],
            "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Z", "ResultPath": "$.error"}]},
        "Y": {"Type": "Succeed"},
        "Z": {"Type": "Pass", "End": true}
    }}))
    .with_handler(ADD, flaky(&["ErrorA", "ErrorB", "ErrorC", "ErrorB"], Arc::clone(&calls)));
    let execution = run(&executor, json!({"in": 1})).await;
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert_eq!(execution.status, ExecutionStatus::Succeeded);
    assert_eq!(
        execution.output,
        Some(json!({"in": 1, "error": {"Error": "ErrorB", "Cause": "attempt 4"}}))
    );
    // A Lambda function ARN as the resource logs LambdaFunction* events, as on AWS.
    assert_eq!(count(&execution, T::LambdaFunctionFailed), 4);
    assert_eq!(count(&execution, T::LambdaFunctionScheduled), 4);
    assert_eq!(count(&execution, T::TaskScheduled), 0);
    assert_eq!(count(&execution, T::TaskStateExited), 1);
}

#[tokio::test]
async fn retry_succeeds_and_exposes_the_retry_count() {
    let calls = Arc::new(AtomicU32::new(0));
    let executor = instant_executor(&add_task(&json!({
        "Parameters": {"retries.$": "$$.State.RetryCount"},
        "ResultSelector": {"attempt.$": "$.attempt"},
        "Retry": [{"ErrorEquals": ["States.TaskFailed"], "MaxAttempts": 5}]
    })))
    .with_handler(ADD, {
        let calls = Arc::clone(&calls);
        handler(move |request| {
            calls.fetch_add(1, Ordering::SeqCst);
            assert_eq!(request.parameters["retries"], json!(request.attempt - 1));
            if request.attempt < 3 {
                Err(TaskFailure::new("Flaky", "not yet"))
            } else {
                Ok(json!({"attempt": request.attempt}))
            }
        })
    });
    let execution = run(&executor, json!({})).await;
    assert_eq!(execution.output, Some(json!({"attempt": 3})));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn zero_max_attempts_and_unmatched_errors_fail_at_once() {
    let calls = Arc::new(AtomicU32::new(0));
    let executor = instant_executor(&add_task(&json!({
        "Retry": [{"ErrorEquals": ["Boom"], "MaxAttempts": 0}, {"ErrorEquals": ["Other"]}]
    })))
    .with_handler(ADD, flaky(&["Boom", "Boom"], Arc::clone(&calls)));
    let execution = run(&executor, json!({})).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(execution.status, ExecutionStatus::Failed);
    assert_eq!(execution.error.as_deref(), Some("Boom"));
    assert_eq!(execution.cause.as_deref(), Some("attempt 1"));
}

#[tokio::test]
async fn backoff_intervals_show_in_history_timestamps() {
    let calls = Arc::new(AtomicU32::new(0));
    let executor = Executor::new(
        definition(&add_task(&json!({
            "Retry": [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 1, "BackoffRate": 2, "MaxAttempts": 3}]
        }))),
        ExecutorOptions {
            delay_scale: 0.05,
            ..ExecutorOptions::default()
        },
    )
    .with_handler(ADD, flaky(&["E", "E", "E"], Arc::clone(&calls)));
    let execution = run(&executor, json!({})).await;
    assert_eq!(execution.status, ExecutionStatus::Succeeded);
    let scheduled: Vec<_> = execution
        .history
        .iter()
        .filter(|e| e.event_type == T::LambdaFunctionScheduled)
        .map(|e| e.timestamp)
        .collect();
    assert_eq!(scheduled.len(), 4);
    // 1s, 2s, 4s scaled by 0.05: at least 50, 100 and 200 ms apart.
    for (gap, minimum_ms) in scheduled.windows(2).zip([50, 100, 200]) {
        let elapsed = (gap[1] - gap[0]).num_milliseconds();
        assert!(elapsed >= minimum_ms, "{elapsed}ms < {minimum_ms}ms");
    }
    // Unscaled, the retries would take 7 s; the generous bound tolerates a busy machine.
    let total = (scheduled[3] - scheduled[0]).num_milliseconds();
    assert!(
        total < 3000,
        "retries took {total}ms; delay_scale was not applied"
    );
}

#[tokio::test]
async fn panicking_handlers_raise_task_failed() {
    let executor = instant_executor(&json!({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": ADD, "End": true,
            "Catch": [{"ErrorEquals": ["States.TaskFailed"], "Next": "Recovered"}]},
        "Recovered": {"Type": "Pass", "End": true}
    }}))
    .with_handler(ADD, handler(|_| panic!("handler bug")));
    let execution = run(&executor, json!({})).await;
    assert_eq!(execution.status, ExecutionStatus::Succeeded);
    let out = execution.output.unwrap();
    assert_eq!(out["Error"], json!("States.TaskFailed"));
    assert!(out["Cause"].as_str().unwrap().contains("handler bug"));
}

#[tokio::test]
async fn result_path_mismatch_is_catchable_but_runtime_errors_are_not() {
    let machine = |result_path: &str, output_path: &str| {
        json!({"StartAt": "T", "States": {
            "T": {"Type": "Task", "Resource": ADD, "ResultPath": result_path, "OutputPath": output_path, "End": true,
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}]},
            "Caught": {"Type": "Pass", "End": true}
        }})
    };
    let executor =
        instant_executor(&machine("$.x", "$")).with_handler(ADD, handler(|_| Ok(json!(1))));
    let execution = run(&executor, json!("foo")).await;
    assert_eq!(execution.status, ExecutionStatus::Succeeded);
    assert_eq!(
        execution.output.unwrap()["Error"],
        json!("States.ResultPathMatchFailure")
    );

    let executor =
        instant_executor(&machine("$.x", "$.missing")).with_handler(ADD, handler(|_| Ok(json!(1))));
    let execution = run(&executor, json!({})).await;
    assert_eq!(execution.status, ExecutionStatus::Failed);
    assert_eq!(execution.error.as_deref(), Some("States.Runtime"));
}

#[tokio::test]
async fn a_missing_parameters_path_is_an_uncatchable_runtime_error() {
    // Step Functions raises States.Runtime (not the catchable
    // States.ParameterPathFailure), so neither Catch runs.
    let executor = instant_executor(&json!({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": ADD, "Parameters": {"v.$": "$.missing"}, "End": true,
            "Catch": [
                {"ErrorEquals": ["States.ParameterPathFailure"], "Next": "Caught", "ResultPath": "$.err"},
                {"ErrorEquals": ["States.ALL"], "Next": "Caught", "ResultPath": "$.err"}
            ]},
        "Caught": {"Type": "Pass", "End": true}
    }}))
    .with_handler(ADD, handler(|_| Ok(json!(1))));
    let execution = run(&executor, json!({"a": 1})).await;
    assert_eq!(execution.status, ExecutionStatus::Failed);
    assert_eq!(execution.error.as_deref(), Some("States.Runtime"));
    assert_eq!(
        execution.cause.as_deref(),
        Some(
            "An error occurred while executing the state 'T' (entered at the event id #2). \
             The JSONPath '$.missing' specified for the field 'v.$' could not be found in the input '{\"a\":1}'"
        )
    );
    assert_eq!(count(&execution, T::PassStateEntered), 0);

    let executor = instant_executor(&json!({"StartAt": "P", "States": {
        "P": {"Type": "Pass", "Parameters": {"v.$": "States.ArrayGetItem($.list, 9)"}, "End": true}
    }}));
    let execution = run(&executor, json!({"list": [1]})).await;
    assert_eq!(execution.error.as_deref(), Some("States.IntrinsicFailure"));
}

#[tokio::test(start_paused = true)]
async fn parallel_branches_run_concurrently_and_keep_order() {
    let executor = Executor::new(
        definition(&json!({"StartAt": "FunWithMath", "States": {
            "FunWithMath": {"Type": "Parallel", "Next": "Done", "ResultPath": "$.results",
                "ResultSelector": {"sum.$": "$[0]", "difference.$": "$[1]"},
                "Branches": [
                    {"StartAt": "Slow", "States": {
                        "Slow": {"Type": "Wait", "Seconds": 10, "Next": "Add"},
                        "Add": {"Type": "Task", "Resource": ADD, "InputPath": "$.numbers", "End": true}
                    }},
                    {"StartAt": "Subtract", "States": {
                        "Subtract": {"Type": "Pass", "Parameters": {"d.$": "States.MathAdd($.numbers.val1, -2)"}, "OutputPath": "$.d", "End": true}
                    }}
                ]},
            "Done": {"Type": "Succeed"}
        }})),
        ExecutorOptions::default(),
    )
    .with_handler(ADD, add_handler());
    let started = tokio::time::Instant::now();
    let execution = run(&executor, json!({"numbers": {"val1": 3, "val2": 2}})).await;
    assert_eq!(started.elapsed().as_secs(), 10);
    assert_eq!(
        execution.output,
        Some(json!({"numbers": {"val1": 3, "val2": 2}, "results": {"sum": 5, "difference": 1}}))
    );
    let types = event_types(&execution);
    assert_eq!(
        types[1..3],
        [T::ParallelStateEntered, T::ParallelStateStarted]
    );
    // The quick branch finishes while the slow one waits.
    let subtract_exit = types.iter().position(|t| *t == T::PassStateExited).unwrap();
    let add_entered = types
        .iter()
        .position(|t| *t == T::TaskStateEntered)
        .unwrap();
    assert!(subtract_exit < add_entered, "{types:?}");
    // Step Functions records no ParallelStateSucceeded.
    assert_eq!(count(&execution, T::ParallelStateSucceeded), 0);
}

#[tokio::test(start_paused = true)]
async fn a_failing_branch_fails_the_parallel_and_cancels_the_rest() {
    let mut executor = instant_executor(&json!({"StartAt": "P", "States": {
        "P": {"Type": "Parallel", "End": true,
            "Catch": [{"ErrorEquals": ["BranchBroke"], "Next": "Recovered", "ResultPath": "$.failure"}],
            "Branches": [
                {"StartAt": "Forever", "States": {"Forever": {"Type": "Task", "Resource": ADD, "End": true, "TimeoutSeconds": 1000}}},
                {"StartAt": "Choose", "States": {
                    "Choose": {"Type": "Choice", "Choices": [{"Variable": "$.go", "BooleanEquals": true, "Next": "Broke"}]},
                    "Broke": {"Type": "Fail", "Error": "BranchBroke", "Cause": "on purpose"}
                }}
            ]},
        "Recovered": {"Type": "Pass", "End": true}
    }}));
    // A handler that never answers proves the surviving branch is cancelled.
    let never = Arc::new(NeverReturns::default());
    executor.register(ADD, Arc::clone(&never) as Arc<dyn TaskHandler>);
    let execution = run(&executor, json!({"go": true})).await;
    assert_eq!(execution.status, ExecutionStatus::Succeeded);
    assert_eq!(
        execution.output,
        Some(json!({"go": true, "failure": {"Error": "BranchBroke", "Cause": "on purpose"}}))
    );
    assert_eq!(count(&execution, T::ParallelStateFailed), 1);
    assert_eq!(never.started.load(Ordering::SeqCst), 1);
    never.assert_cancelled(1).await;
}

/// A handler that never answers; counts calls started and calls cancelled.
#[derive(Default)]
struct NeverReturns {
    started: Arc<AtomicUsize>,
    cancelled: Arc<AtomicUsize>,
}

struct CountOnDrop(Arc<AtomicUsize>);

impl Drop for CountOnDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[async_trait::async_trait]
impl TaskHandler for NeverReturns {
    async fn invoke(&self, _request: TaskRequest) -> Result<Value, TaskFailure> {
        self.started.fetch_add(1, Ordering::SeqCst);
        let _cancelled = CountOnDrop(Arc::clone(&self.cancelled));
        std::future::pending().await
    }
}

impl NeverReturns {
    /// Waits (in paused test time) until the executor has cancelled `n` calls.
    async fn assert_cancelled(&self, n: usize) {
        for _ in 0..100 {
            if self.cancelled.load(Ordering::SeqCst) == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "expected {n} cancelled calls, saw {}",
            self.cancelled.load(Ordering::SeqCst)
        );
    }
}

/// Records the highest number of concurrent calls.
struct ConcurrencyProbe {
    running: AtomicUsize,
    peak: AtomicUsize,
}

#[async_trait::async_trait]
impl TaskHandler for ConcurrencyProbe {
    async fn invoke(&self, request: TaskRequest) -> Result<Value, TaskFailure> {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(1)).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        Ok(json!({"doubled": request.parameters["value"].as_i64().unwrap() * 2}))
    }
}

#[tokio::test(start_paused = true)]
async fn map_processes_items_with_selector_and_concurrency_limit() {
    let probe = Arc::new(ConcurrencyProbe {
        running: AtomicUsize::new(0),
        peak: AtomicUsize::new(0),
    });
    let executor = instant_executor(&json!({"StartAt": "M", "States": {
        "M": {"Type": "Map", "ItemsPath": "$.detail.items", "MaxConcurrency": 2, "ResultPath": "$.results",
            "ItemSelector": {"index.$": "$$.Map.Item.Index", "value.$": "$$.Map.Item.Value", "owner.$": "$.owner"},
            "ItemProcessor": {
                "ProcessorConfig": {"Mode": "INLINE"},
                "StartAt": "Double",
                "States": {"Double": {"Type": "Task", "Resource": ADD, "ResultPath": "$.out", "End": true}}
            },
            "End": true}
    }}))
    .with_handler(ADD, Arc::clone(&probe) as Arc<dyn TaskHandler>);
    let started = tokio::time::Instant::now();
    let execution = run(
        &executor,
        json!({"owner": "ann", "detail": {"items": [1, 2, 3, 4, 5]}}),
    )
    .await;
    assert_eq!(execution.status, ExecutionStatus::Succeeded);
    assert_eq!(probe.peak.load(Ordering::SeqCst), 2);
    // Five one-second items, two at a time.
    assert_eq!(started.elapsed().as_secs(), 3);
    let results = &execution.output.as_ref().unwrap()["results"];
    for (i, result) in results.as_array().unwrap().iter().enumerate() {
        let value = i64::try_from(i).unwrap() + 1;
        assert_eq!(
            result,
            &json!({"index": i, "value": value, "owner": "ann", "out": {"doubled": value * 2}})
        );
    }
    assert_eq!(count(&execution, T::MapIterationStarted), 5);
    assert_eq!(count(&execution, T::MapIterationSucceeded), 5);
    let started_event = execution
        .history
        .iter()
        .find(|e| e.event_type == T::MapStateStarted)
        .unwrap();
    assert_eq!(
        started_event.details,
        EventDetails::MapStarted { length: 5 }
    );
}

#[tokio::test]
async fn legacy_map_fields_and_unlimited_concurrency() {
    let executor = instant_executor(&json!({"StartAt": "M", "States": {
        "M": {"Type": "Map", "ItemsPath": "$.xs", "MaxConcurrency": 0,
            "Parameters": {"x.$": "$$.Map.Item.Value", "n.$": "$.n"},
            "Iterator": {"StartAt": "Sum", "States": {
                "Sum": {"Type": "Pass", "Parameters": {"s.$": "States.MathAdd($.x, $.n)"}, "OutputPath": "$.s", "End": true}
            }},
            "End": true}
    }}));
    let execution = run(&executor, json!({"xs": [1, 2, 3], "n": 10})).await;
    assert_eq!(execution.output, Some(json!([11, 12, 13])));
}

#[tokio::test]
async fn failing_iterations_fail_the_map_and_it_can_retry() {
    let calls = Arc::new(AtomicU32::new(0));
    let executor = instant_executor(&json!({"StartAt": "M", "States": {
        "M": {"Type": "Map", "End": true,
            "Retry": [{"ErrorEquals": ["Item.Bad"], "MaxAttempts": 1}],
            "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Failed"}],
            "ItemProcessor": {"StartAt": "Check", "States": {
                "Check": {"Type": "Task", "Resource": ADD, "End": true}
            }}},
        "Failed": {"Type": "Pass", "End": true}
    }}))
    .with_handler(ADD, {
        let calls = Arc::clone(&calls);
        handler(move |request| {
            calls.fetch_add(1, Ordering::SeqCst);
            if request.parameters == json!("bad") {
                Err(TaskFailure::new("Item.Bad", "bad item"))
            } else {
                Ok(request.parameters)
            }
        })
    });
    let execution = run(&executor, json!(["bad"])).await;
    assert_eq!(execution.status, ExecutionStatus::Succeeded);
    assert_eq!(
        execution.output,
        Some(json!({"Error": "Item.Bad", "Cause": "bad item"}))
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2, "one try plus one retry");
    // One MapStateFailed for the state, not one per attempt.
    assert_eq!(count(&execution, T::MapStateFailed), 1);
    assert_eq!(count(&execution, T::MapIterationFailed), 2);
}

#[tokio::test]
async fn map_items_path_must_be_an_array() {
    let executor = instant_executor(&json!({"StartAt": "M", "States": {
        "M": {"Type": "Map", "ItemsPath": "$.xs", "End": true,
            "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}}
    }}));
    let execution = run(&executor, json!({"xs": {"not": "array"}})).await;
    assert_eq!(execution.error.as_deref(), Some("States.Runtime"));
}

#[tokio::test]
async fn start_execution_is_idempotent_for_the_same_input() {
    let calls = Arc::new(AtomicU32::new(0));
    let executor = instant_executor(&add_task(&json!({}))).with_handler(ADD, {
        let calls = Arc::clone(&calls);
        handler(move |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(json!("done"))
        })
    });
    let first = executor
        .start_execution("upload-9", json!({"a": 1}))
        .unwrap();
    let again = executor
        .start_execution("upload-9", json!({"a": 1}))
        .unwrap();
    assert_eq!(first.wait().await.output, Some(json!("done")));
    assert_eq!(first.wait().await.history, again.wait().await.history);
    assert_eq!(
        executor
            .start_execution("upload-9", json!({"a": 2}))
            .unwrap_err(),
        StartError::ExecutionAlreadyExists("upload-9".into())
    );
    // Once finished, the record is dropped but the name stays taken, as on Step Functions.
    assert!(executor.has_finished("upload-9"));
    assert!(executor.execution("upload-9").is_none());
    while !executor.executions().is_empty() {
        tokio::task::yield_now().await;
    }
    assert!(executor.has_finished("upload-9"));
    assert_eq!(
        executor
            .start_execution("upload-9", json!({"a": 1}))
            .unwrap_err(),
        StartError::ExecutionAlreadyExists("upload-9".into())
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(executor.execution("other").is_none());
}

#[tokio::test]
async fn missing_handlers_and_bad_names_are_refused_before_running() {
    let executor = instant_executor(&json!({"StartAt": "P", "States": {
        "P": {"Type": "Parallel", "End": true, "Branches": [
            {"StartAt": "Scan", "States": {"Scan": {"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                "Parameters": {"t.$": "$$.Task.Token"}, "End": true}}}
        ]}
    }}));
    let missing = executor.validate().unwrap_err();
    assert_eq!(missing.state, "P > Branches[0] > Scan");
    assert_eq!(missing.resource, "arn:aws:states:::sqs:sendMessage");
    let err = executor.start_execution("x", json!({})).unwrap_err();
    assert!(err.to_string().contains("P > Branches[0] > Scan"), "{err}");
    assert!(
        err.to_string().contains("arn:aws:states:::sqs:sendMessage"),
        "{err}"
    );
    assert!(matches!(
        executor.start_execution("bad name", json!({})),
        Err(StartError::InvalidName(..))
    ));
}

#[test]
fn start_execution_needs_a_runtime() {
    let executor = instant_executor(&json!({"StartAt": "S", "States": {"S": {"Type": "Succeed"}}}));
    assert_eq!(
        executor.start_execution("x", json!({})).unwrap_err(),
        StartError::NoRuntime
    );
}

#[tokio::test]
async fn history_serializes_like_get_execution_history() {
    let executor = instant_executor(&add_task(&json!({"Parameters": {"val1": 1, "val2": 2}})))
        .with_handler(ADD, add_handler());
    let execution = run(&executor, json!({"x": 1})).await;
    let json = execution.history_json();
    let events = json["events"].as_array().unwrap();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "ExecutionStarted",
            "TaskStateEntered",
            "LambdaFunctionScheduled",
            "LambdaFunctionStarted",
            "LambdaFunctionSucceeded",
            "TaskStateExited",
            "ExecutionSucceeded"
        ]
    );
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event["id"], json!(i + 1));
        // The first state's entry has no previous event, as on AWS.
        let previous = if i == 1 { 0 } else { i };
        assert_eq!(event["previousEventId"], json!(previous), "event {}", i + 1);
    }
    assert_eq!(
        events[0]["executionStartedEventDetails"]["input"],
        json!("{\"x\":1}")
    );
    assert_eq!(
        events[2]["lambdaFunctionScheduledEventDetails"],
        json!({
            "resource": ADD, "input": "{\"val1\":1,\"val2\":2}",
            "inputDetails": {"truncated": false}, "timeoutInSeconds": 60
        })
    );
    assert_eq!(events[3].as_object().unwrap().len(), 4);
    assert_eq!(
        events[4]["lambdaFunctionSucceededEventDetails"]["output"],
        json!("3")
    );
    assert_eq!(events[5]["stateExitedEventDetails"]["name"], json!("Add"));
    assert_eq!(
        events[6]["executionSucceededEventDetails"]["output"],
        json!("3")
    );
    let described = serde_json::to_value(&execution).unwrap();
    assert_eq!(described["status"], json!("SUCCEEDED"));
    assert_eq!(described["name"], json!("run"));
    assert!(described["startDate"].is_string());
}

#[tokio::test]
async fn state_durations_measure_each_visit() {
    let executor = Executor::new(
        definition(&json!({"StartAt": "Pause", "States": {
            "Pause": {"Type": "Wait", "Seconds": 2, "Next": "Twice"},
            "Twice": {"Type": "Map", "End": true, "ItemProcessor": {"StartAt": "Item", "States": {
                "Item": {"Type": "Pass", "End": true}
            }}}
        }})),
        ExecutorOptions {
            delay_scale: 0.05,
            ..ExecutorOptions::default()
        },
    );
    let execution = run(&executor, json!([1, 2])).await;
    let durations = execution.state_durations();
    let names: Vec<&str> = durations.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["Pause", "Twice", "Item", "Item"]);
    let pause = durations[0].duration().unwrap().num_milliseconds();
    assert!(
        (100..2000).contains(&pause),
        "Wait of 2s × 0.05 took {pause}ms"
    );
    assert_eq!(durations[1].state_type, "Map");
    assert!(durations.iter().all(|d| d.exited_at.is_some()));
}

#[tokio::test(start_paused = true)]
async fn definition_timeout_times_the_execution_out() {
    let mut executor =
        instant_executor(&json!({"StartAt": "Hang", "TimeoutSeconds": 5, "States": {
            "Hang": {"Type": "Task", "Resource": ADD, "TimeoutSeconds": 100, "End": true}
        }}));
    let never = Arc::new(NeverReturns::default());
    executor.register(ADD, Arc::clone(&never) as Arc<dyn TaskHandler>);
    let started = tokio::time::Instant::now();
    let execution = run(&executor, json!({})).await;
    assert_eq!(started.elapsed().as_secs(), 5);
    assert_eq!(execution.status, ExecutionStatus::TimedOut);
    assert_eq!(execution.error.as_deref(), Some("States.Timeout"));
    assert_eq!(event_types(&execution).last(), Some(&T::ExecutionTimedOut));
    assert!(execution.stopped_at.is_some());
    assert_eq!(never.started.load(Ordering::SeqCst), 1);
    never.assert_cancelled(1).await;
}

#[tokio::test(start_paused = true)]
async fn task_timeout_raises_states_timeout() {
    let mut executor = instant_executor(&json!({"StartAt": "Hang", "States": {
        "Hang": {"Type": "Task", "Resource": ADD, "TimeoutSecondsPath": "$.limit", "End": true,
            "Retry": [{"ErrorEquals": ["States.TaskFailed"]}],
            "Catch": [{"ErrorEquals": ["States.Timeout"], "Next": "TimedOut"}]},
        "TimedOut": {"Type": "Pass", "End": true}
    }}));
    executor.register(ADD, Arc::new(NeverReturns::default()));
    let started = tokio::time::Instant::now();
    let execution = run(&executor, json!({"limit": 7})).await;
    // States.TaskFailed does not match States.Timeout, so no retry happened.
    assert_eq!(started.elapsed().as_secs(), 7);
    assert_eq!(
        execution.output.as_ref().unwrap()["Error"],
        json!("States.Timeout")
    );
    assert_eq!(count(&execution, T::LambdaFunctionTimedOut), 1);
}

#[tokio::test(start_paused = true)]
async fn stopping_an_execution_aborts_it() {
    let mut executor = instant_executor(&add_task(&json!({"TimeoutSeconds": 1000})));
    executor.register(ADD, Arc::new(NeverReturns::default()));
    let handle = executor.start_execution("stop-me", json!({})).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(handle.describe().status, ExecutionStatus::Running);
    assert!(handle.stop(Some("User.Cancelled"), Some("changed my mind")));
    let execution = handle.wait().await;
    assert_eq!(execution.status, ExecutionStatus::Aborted);
    assert_eq!(execution.error.as_deref(), Some("User.Cancelled"));
    assert_eq!(event_types(&execution).last(), Some(&T::ExecutionAborted));
    assert!(!handle.stop(None, None));
}

#[test]
fn an_execution_cut_short_by_runtime_shutdown_is_marked_failed() {
    let mut executor = instant_executor(&add_task(&json!({"TimeoutSeconds": 1000})));
    executor.register(ADD, Arc::new(NeverReturns::default()));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let handle = runtime.block_on(async {
        let handle = executor.start_execution("cut-short", json!({})).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        handle
    });
    assert_eq!(handle.describe().status, ExecutionStatus::Running);
    drop(runtime);
    let execution = handle.describe();
    assert_eq!(execution.status, ExecutionStatus::Failed);
    assert_eq!(execution.error.as_deref(), Some("States.Runtime"));
}

#[tokio::test]
async fn executions_can_keep_no_history() {
    let executor = Executor::new(
        definition(&json!({"StartAt": "Each", "States": {
            "Each": {"Type": "Map", "End": true, "ItemProcessor": {"StartAt": "P", "States": {
                "P": {"Type": "Pass", "End": true}
            }}}
        }})),
        ExecutorOptions {
            keep_history: false,
            delay_scale: 0.0,
            ..ExecutorOptions::default()
        },
    );
    let execution = run(&executor, json!([1, 2, 3])).await;
    assert_eq!(execution.status, ExecutionStatus::Succeeded);
    assert_eq!(execution.output, Some(json!([1, 2, 3])));
    assert!(execution.history.is_empty());
}
