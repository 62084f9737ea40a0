//! Behaviours where a naive reading of the States Language differs from what Step
//! Functions does; each test asserts what the service does.

mod common;

use std::sync::{Arc, Mutex};

use airlock_asl::{ExecutionStatus, HistoryEventType as T, TaskFailure};
use common::{count, definition, handler, instant_executor, queue};
use serde_json::{Value, json};

const WORK: &str = "arn:aws:states:::sqs:sendMessage";

async fn run(executor: &airlock_asl::Executor, input: Value) -> airlock_asl::Execution {
    executor.start_execution("run", input).unwrap().wait().await
}

#[tokio::test]
async fn context_paths_work_in_input_and_output_paths() {
    let executor = instant_executor(&json!({"StartAt": "P", "States": {
        "P": {"Type": "Pass", "InputPath": "$$.Execution.Input.inner", "Next": "Q"},
        "Q": {"Type": "Pass", "OutputPath": "$$.State.Name", "End": true}
    }}));
    let execution = run(&executor, json!({"inner": {"a": 1}})).await;
    assert_eq!(execution.status, ExecutionStatus::Succeeded);
    assert_eq!(execution.output, Some(json!("Q")));
}

#[tokio::test]
async fn fail_error_path_may_name_the_state_from_the_context_object() {
    let executor = instant_executor(&json!({"StartAt": "Broken", "States": {
        "Broken": {"Type": "Fail", "ErrorPath": "$$.State.Name", "CausePath": "$.why"}
    }}));
    let execution = run(&executor, json!({"why": "because"})).await;
    assert_eq!(execution.error.as_deref(), Some("Broken"));
    assert_eq!(execution.cause.as_deref(), Some("because"));
}

#[tokio::test(start_paused = true)]
async fn a_callback_task_without_the_token_in_its_parameters_is_accepted() {
    let wait = format!("{WORK}.waitForTaskToken");
    let (submit, mut requests) = queue();
    let executor = instant_executor(&json!({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": wait, "TimeoutSeconds": 5,
            "Parameters": {"MessageBody": "no token here"}, "End": true}
    }}))
    .with_handler(WORK, submit);
    let execution = run(&executor, json!({})).await;
    assert_eq!(
        requests.recv().await.unwrap().parameters,
        json!({"MessageBody": "no token here"})
    );
    // Nobody can answer without the token, so it times out, as on AWS.
    assert_eq!(execution.error.as_deref(), Some("States.Timeout"));
}

#[tokio::test]
async fn retry_count_is_only_in_the_context_of_states_that_retry() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorder = {
        let seen = Arc::clone(&seen);
        handler(move |request| {
            seen.lock().unwrap().push(request.parameters);
            Ok(json!(null))
        })
    };
    let executor = instant_executor(&json!({"StartAt": "P", "States": {
        "P": {"Type": "Pass", "Parameters": {"state.$": "$$.State"}, "ResultPath": "$.pass", "Next": "T"},
        "T": {"Type": "Task", "Resource": WORK, "Parameters": {"state.$": "$$.State"}, "ResultPath": null, "End": true}
    }}))
    .with_handler(WORK, recorder);
    let execution = run(&executor, json!({})).await;
    let pass_state = &execution.output.unwrap()["pass"]["state"];
    assert_eq!(pass_state["Name"], json!("P"));
    assert!(pass_state.get("RetryCount").is_none(), "{pass_state}");
    let task_state = &seen.lock().unwrap()[0]["state"];
    assert_eq!(task_state["RetryCount"], json!(0));
}

#[tokio::test]
async fn runtime_causes_name_the_state_and_its_entered_event() {
    let executor = instant_executor(&json!({"StartAt": "First", "States": {
        "First": {"Type": "Pass", "Next": "Second"},
        "Second": {"Type": "Pass", "InputPath": "$.nope.deeper", "End": true}
    }}));
    let execution = run(&executor, json!({})).await;
    assert_eq!(execution.error.as_deref(), Some("States.Runtime"));
    assert_eq!(
        execution.cause.as_deref(),
        Some(
            "An error occurred while executing the state 'Second' (entered at the event id #4). \
             Invalid path '$.nope.deeper' : No results for path: $['nope']['deeper']"
        )
    );
}

#[tokio::test]
async fn a_runtime_error_inside_a_map_names_the_inner_state() {
    let executor = instant_executor(&json!({"StartAt": "M", "States": {
        "M": {"Type": "Map", "End": true,
            "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Never"}],
            "ItemProcessor": {"StartAt": "Inner", "States": {
                "Inner": {"Type": "Pass", "Parameters": {"x.$": "$.missing"}, "End": true}
            }}},
        "Never": {"Type": "Succeed"}
    }}));
    let execution = run(&executor, json!([{}])).await;
    assert_eq!(execution.status, ExecutionStatus::Failed);
    assert_eq!(execution.error.as_deref(), Some("States.Runtime"));
    let cause = execution.cause.unwrap();
    assert!(
        cause.starts_with(
            "An error occurred while executing the state 'Inner' (entered at the event id #5)."
        ),
        "{cause}"
    );
}

fn big_string() -> String {
    "x".repeat(256 * 1024)
}

#[tokio::test]
async fn an_output_over_256_kib_raises_data_limit_exceeded() {
    let executor = instant_executor(&json!({"StartAt": "Grow", "States": {
        "Grow": {"Type": "Pass", "Result": big_string(), "End": true}
    }}));
    let execution = run(&executor, json!({})).await;
    assert_eq!(execution.status, ExecutionStatus::Failed);
    assert_eq!(execution.error.as_deref(), Some("States.DataLimitExceeded"));

    // Just under the limit passes: the JSON text of the output counts, quotes included.
    let executor = instant_executor(&json!({"StartAt": "Fits", "States": {
        "Fits": {"Type": "Pass", "Result": "x".repeat(256 * 1024 - 2), "End": true}
    }}));
    assert_eq!(
        run(&executor, json!({})).await.status,
        ExecutionStatus::Succeeded
    );
}

#[tokio::test]
async fn data_limit_exceeded_is_caught_by_name_but_not_by_states_all() {
    let huge = || handler(|_| Ok(json!({"blob": big_string()})));
    let machine = |error: &str| {
        json!({"StartAt": "T", "States": {
            "T": {"Type": "Task", "Resource": WORK, "End": true,
                "Catch": [{"ErrorEquals": [error], "Next": "Caught"}]},
            "Caught": {"Type": "Pass", "End": true}
        }})
    };
    let executor =
        instant_executor(&machine("States.DataLimitExceeded")).with_handler(WORK, huge());
    let execution = run(&executor, json!({})).await;
    assert_eq!(execution.status, ExecutionStatus::Succeeded);
    assert_eq!(
        execution.output.unwrap()["Error"],
        json!("States.DataLimitExceeded")
    );

    let executor = instant_executor(&machine("States.ALL")).with_handler(WORK, huge());
    let execution = run(&executor, json!({})).await;
    assert_eq!(execution.status, ExecutionStatus::Failed);
    assert_eq!(execution.error.as_deref(), Some("States.DataLimitExceeded"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn map_with_max_concurrency_one_runs_in_index_order_and_stops_at_a_failure() {
    for round in 0..20 {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorder = {
            let seen = Arc::clone(&seen);
            handler(move |request| {
                let item = request.parameters.as_i64().unwrap();
                seen.lock().unwrap().push(item);
                if item == 5 {
                    Err(TaskFailure::new("Item.Bad", "five"))
                } else {
                    Ok(json!(item))
                }
            })
        };
        let executor = instant_executor(&json!({"StartAt": "M", "States": {
            "M": {"Type": "Map", "MaxConcurrency": 1, "End": true,
                "ItemProcessor": {"StartAt": "T", "States": {
                    "T": {"Type": "Task", "Resource": WORK, "End": true}
                }}}
        }}))
        .with_handler(WORK, recorder);
        let items: Vec<i64> = (0..12).collect();
        let execution = run(&executor, json!(items)).await;
        assert_eq!(
            execution.error.as_deref(),
            Some("Item.Bad"),
            "round {round}"
        );
        assert_eq!(*seen.lock().unwrap(), [0, 1, 2, 3, 4, 5], "round {round}");
        assert_eq!(count(&execution, T::MapIterationStarted), 6);
    }
}

#[tokio::test(start_paused = true)]
async fn a_wait_beyond_a_year_fails_at_once() {
    let started = tokio::time::Instant::now();
    let executor = instant_executor(&json!({"StartAt": "Later", "States": {
        "Later": {"Type": "Wait", "Timestamp": "2999-01-01T00:00:00Z", "End": true}
    }}));
    let execution = run(&executor, json!({})).await;
    assert_eq!(execution.error.as_deref(), Some("States.Runtime"));
    assert!(
        execution
            .cause
            .as_deref()
            .unwrap()
            .contains("Wait state delay is too long"),
        "{:?}",
        execution.cause
    );
    assert_eq!(started.elapsed().as_secs(), 0);

    let executor = instant_executor(&json!({"StartAt": "Later", "States": {
        "Later": {"Type": "Wait", "SecondsPath": "$.s", "End": true}
    }}));
    let execution = run(&executor, json!({"s": 40_000_000})).await;
    assert_eq!(execution.error.as_deref(), Some("States.Runtime"));
}

#[tokio::test]
async fn history_chains_every_event_to_the_one_before() {
    let executor = instant_executor(&json!({"StartAt": "Par", "States": {
        "Par": {"Type": "Parallel", "Next": "M", "Branches": [
            {"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true}}},
            {"StartAt": "B", "States": {"B": {"Type": "Pass", "End": true}}}
        ]},
        "M": {"Type": "Map", "End": true, "ItemsPath": "$[0]",
            "ItemProcessor": {"StartAt": "I", "States": {"I": {"Type": "Pass", "End": true}}}}
    }}));
    let execution = run(&executor, json!([1, 2, 3])).await;
    assert_eq!(execution.status, ExecutionStatus::Succeeded);
    for event in &execution.history {
        let expected = if event.id == 2 { 0 } else { event.id - 1 };
        assert_eq!(event.previous_event_id, expected, "{event:?}");
    }
    assert_eq!(count(&execution, T::ParallelStateSucceeded), 0);
    assert_eq!(count(&execution, T::MapStateSucceeded), 1);
    // Durations still pair each state's entry and exit per branch and iteration.
    let durations = execution.state_durations();
    assert_eq!(durations.len(), 7);
    assert!(durations.iter().all(|d| d.exited_at.is_some()));
}

#[tokio::test]
async fn a_retried_map_records_one_failure_at_the_end() {
    let executor = instant_executor(&json!({"StartAt": "M", "States": {
        "M": {"Type": "Map", "End": true,
            "Retry": [{"ErrorEquals": ["Bad"], "MaxAttempts": 2}],
            "ItemProcessor": {"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "Bad"}}}}
    }}));
    let execution = run(&executor, json!([1])).await;
    assert_eq!(execution.error.as_deref(), Some("Bad"));
    assert_eq!(count(&execution, T::MapStateStarted), 3);
    assert_eq!(count(&execution, T::MapStateFailed), 1);
    let last_state_event = execution
        .history
        .iter()
        .rev()
        .find(|e| e.event_type != T::ExecutionFailed)
        .unwrap();
    assert_eq!(last_state_event.event_type, T::MapStateFailed);
}

#[test]
fn intrinsic_literals_with_escaped_double_quotes_are_refused() {
    let err = airlock_asl::Definition::from_value(&json!({"StartAt": "P", "States": {
        "P": {"Type": "Pass", "Parameters": {"x.$": "States.Format('say \\\"hi\\\"')"}, "End": true}
    }}))
    .unwrap_err();
    assert_eq!(err.field(), Some("Parameters.x.$"));
    // The same text with single-quote escapes is fine.
    definition(&json!({"StartAt": "P", "States": {
        "P": {"Type": "Pass", "Parameters": {"x.$": "States.Format('it\\'s')"}, "End": true}
    }}));
}
