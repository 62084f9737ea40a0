//! States in the JSONata query language: `Arguments`, `Output`, `Assign`, `Condition`,
//! `Items`, `$states` and Step Functions' added functions.

mod common;

use std::sync::{Arc, Mutex};

use airlock_asl::{ExecutionStatus, TaskFailure};
use common::{handler, instant_executor, queue};
use serde_json::{Value, json};

const WORK: &str = "arn:aws:states:::sqs:sendMessage";

async fn run(executor: &airlock_asl::Executor, input: Value) -> airlock_asl::Execution {
    executor.start_execution("run", input).unwrap().wait().await
}

fn jsonata(states: &Value, start: &str) -> Value {
    json!({"QueryLanguage": "JSONata", "StartAt": start, "States": states})
}

#[tokio::test]
async fn pass_output_and_assign_use_states_input() {
    let executor = instant_executor(&jsonata(
        &json!({
            "Total": {"Type": "Pass", "Next": "Report",
                "Assign": {"howMany": "{% $count($states.input.items) %}"},
                "Output": {"total": "{% $sum($states.input.items.price) %}", "fixed": "yes"}},
            "Report": {"Type": "Pass", "End": true,
                "Output": "{% $states.input.total & ' for ' & $howMany & ' items in ' & $states.context.Execution.Name %}"}
        }),
        "Total",
    ));
    let execution = run(&executor, json!({"items": [{"price": 2}, {"price": 3.5}]})).await;
    assert_eq!(
        execution.status,
        ExecutionStatus::Succeeded,
        "{execution:?}"
    );
    assert_eq!(execution.output, Some(json!("5.5 for 2 items in run")));
}

#[tokio::test]
async fn task_arguments_output_and_catch() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorder = {
        let seen = Arc::clone(&seen);
        handler(move |request| {
            seen.lock().unwrap().push(request.parameters.clone());
            Ok(json!({"Payload": {"doubled": request.parameters["n"].as_i64().unwrap() * 2}}))
        })
    };
    let failing = handler(|_| Err(TaskFailure::new("Queue.Down", "no queue")));
    let executor = instant_executor(&jsonata(
        &json!({
            "Call": {"Type": "Task", "Resource": WORK, "Next": "Broken",
                "Arguments": {"n": "{% $states.input.value + 1 %}", "state": "{% $states.context.State.Name %}"},
                "Assign": {"doubled": "{% $states.result.Payload.doubled %}"},
                "Output": "{% $states.result.Payload %}"},
            "Broken": {"Type": "Task", "Resource": format!("{WORK}:broken"), "End": true,
                "Catch": [{"ErrorEquals": ["Queue.Down"], "Next": "Recovered",
                    "Output": {"error": "{% $states.errorOutput.Error %}", "before": "{% $states.input %}"},
                    "Assign": {"why": "{% $states.errorOutput.Cause %}"}}]},
            "Recovered": {"Type": "Pass", "End": true,
                "Output": {"caught.$": "ignored", "result": "{% $states.input %}", "doubled": "{% $doubled %}", "why": "{% $why %}"}}
        }),
        "Call",
    ))
    .with_handler(WORK, recorder)
    .with_handler(&format!("{WORK}:broken"), failing);
    let execution = run(&executor, json!({"value": 20})).await;
    assert_eq!(
        execution.status,
        ExecutionStatus::Succeeded,
        "{execution:?}"
    );
    assert_eq!(*seen.lock().unwrap(), [json!({"n": 21, "state": "Call"})]);
    assert_eq!(
        execution.output,
        Some(json!({
            "caught.$": "ignored",
            "result": {"error": "Queue.Down", "before": {"doubled": 42}},
            "doubled": 42,
            "why": "no queue"
        }))
    );
}

#[tokio::test]
async fn choice_conditions_pick_the_branch_and_its_output() {
    let executor = instant_executor(&jsonata(
        &json!({
            "Route": {"Type": "Choice", "Default": "Small",
                "Choices": [
                    {"Condition": "{% $states.input.size > 100 %}", "Next": "Big", "Output": {"route": "big"}},
                    {"Condition": false, "Next": "Small"}
                ]},
            "Big": {"Type": "Succeed"},
            "Small": {"Type": "Succeed", "Output": {"route": "small", "size": "{% $states.input.size %}"}}
        }),
        "Route",
    ));
    assert_eq!(
        run(&executor, json!({"size": 500})).await.output,
        Some(json!({"route": "big"}))
    );
    let executor = instant_executor(&jsonata(
        &json!({
            "Route": {"Type": "Choice", "Default": "Small",
                "Choices": [{"Condition": "{% $states.input.size > 100 %}", "Next": "Big"}]},
            "Big": {"Type": "Succeed"},
            "Small": {"Type": "Succeed", "Output": {"route": "small", "size": "{% $states.input.size %}"}}
        }),
        "Route",
    ));
    assert_eq!(
        run(&executor, json!({"size": 5})).await.output,
        Some(json!({"route": "small", "size": 5}))
    );
}

#[tokio::test]
async fn a_condition_that_is_not_boolean_is_a_query_evaluation_error() {
    let executor = instant_executor(&jsonata(
        &json!({
            "Route": {"Type": "Choice", "Default": "Done",
                "Choices": [{"Condition": "{% $states.input.size %}", "Next": "Done"}]},
            "Done": {"Type": "Succeed"}
        }),
        "Route",
    ));
    let execution = run(&executor, json!({"size": 5})).await;
    assert_eq!(
        execution.error.as_deref(),
        Some("States.QueryEvaluationError")
    );
}

#[tokio::test]
async fn map_items_item_selector_and_output() {
    let executor = instant_executor(&jsonata(
        &json!({
            "Each": {"Type": "Map", "End": true, "MaxConcurrency": "{% 2 %}",
                "Items": "{% $states.input.orders[qty > 0] %}",
                "ItemSelector": {"id": "{% $states.context.Map.Item.Value.id %}", "index": "{% $states.context.Map.Item.Index %}", "customer": "{% $states.input.customer %}"},
                "ItemProcessor": {"StartAt": "Label", "States": {
                    "Label": {"Type": "Pass", "End": true, "Output": "{% $states.input.customer & '-' & $states.input.id & '@' & $states.input.index %}"}
                }},
                "Output": {"labels": "{% $states.result %}", "n": "{% $count($states.result) %}"}}
        }),
        "Each",
    ));
    let execution = run(
        &executor,
        json!({"customer": "c1", "orders": [{"id": "a", "qty": 1}, {"id": "b", "qty": 0}, {"id": "c", "qty": 2}]}),
    )
    .await;
    assert_eq!(
        execution.status,
        ExecutionStatus::Succeeded,
        "{execution:?}"
    );
    assert_eq!(
        execution.output,
        Some(json!({"labels": ["c1-a@0", "c1-c@1"], "n": 2}))
    );
}

#[tokio::test]
async fn parallel_arguments_and_output() {
    let executor = instant_executor(&jsonata(
        &json!({
            "Both": {"Type": "Parallel", "End": true,
                "Arguments": {"x": "{% $states.input.x * 10 %}"},
                "Branches": [
                    {"StartAt": "Plus", "States": {"Plus": {"Type": "Pass", "End": true, "Output": "{% $states.input.x + 1 %}"}}},
                    {"StartAt": "Minus", "States": {"Minus": {"Type": "Pass", "End": true, "Output": "{% $states.input.x - 1 %}"}}}
                ],
                "Output": "{% $sum($states.result) %}"}
        }),
        "Both",
    ));
    assert_eq!(
        run(&executor, json!({"x": 2})).await.output,
        Some(json!(40))
    );
}

#[tokio::test(start_paused = true)]
async fn wait_seconds_from_an_expression() {
    let executor = airlock_asl::Executor::new(
        common::definition(&jsonata(
            &json!({"Pause": {"Type": "Wait", "Seconds": "{% $states.input.delay * 2 %}", "End": true}}),
            "Pause",
        )),
        airlock_asl::ExecutorOptions::default(),
    );
    let started = tokio::time::Instant::now();
    let execution = run(&executor, json!({"delay": 3})).await;
    assert_eq!(execution.status, ExecutionStatus::Succeeded);
    assert_eq!(started.elapsed().as_secs(), 6);
}

#[tokio::test]
async fn fail_error_and_cause_from_expressions() {
    let executor = instant_executor(&jsonata(
        &json!({"Stop": {"Type": "Fail", "Error": "{% 'Order.' & $states.input.kind %}", "Cause": "{% $string($states.input.id) %}"}}),
        "Stop",
    ));
    let execution = run(&executor, json!({"kind": "Invalid", "id": 7})).await;
    assert_eq!(execution.error.as_deref(), Some("Order.Invalid"));
    assert_eq!(execution.cause.as_deref(), Some("7"));
}

#[tokio::test]
async fn expression_errors_are_catchable_query_evaluation_errors() {
    let executor = instant_executor(&jsonata(
        &json!({
            "Call": {"Type": "Task", "Resource": WORK, "End": true,
                "Output": "{% $error('bad result') %}",
                "Catch": [{"ErrorEquals": ["States.QueryEvaluationError"], "Next": "Caught"}]},
            "Caught": {"Type": "Pass", "End": true}
        }),
        "Call",
    ))
    .with_handler(WORK, handler(|_| Ok(json!({}))));
    let execution = run(&executor, json!({})).await;
    assert_eq!(execution.status, ExecutionStatus::Succeeded);
    let output = execution.output.unwrap();
    assert_eq!(output["Error"], json!("States.QueryEvaluationError"));
    assert!(
        output["Cause"].as_str().unwrap().contains("bad result"),
        "{output}"
    );
}

#[tokio::test]
async fn one_jsonata_state_in_a_jsonpath_machine() {
    let executor = instant_executor(&json!({"StartAt": "Path", "States": {
        "Path": {"Type": "Pass", "Parameters": {"v.$": "$.a"}, "Assign": {"kept.$": "$.v"}, "Next": "Ata"},
        "Ata": {"Type": "Pass", "QueryLanguage": "JSONata", "End": true,
            "Output": {"v": "{% $states.input.v %}", "kept": "{% $kept %}", "id": "{% $uuid() %}",
                "parts": "{% $partition([1,2,3], 2) %}", "r": "{% $range(1, 3, 1) %}",
                "h": "{% $hash('abc', 'MD5') %}", "p": "{% $parse('[1]') %}"}}
    }}));
    let execution = run(&executor, json!({"a": 5})).await;
    assert_eq!(
        execution.status,
        ExecutionStatus::Succeeded,
        "{execution:?}"
    );
    let output = execution.output.unwrap();
    assert_eq!(output["v"], json!(5));
    assert_eq!(output["kept"], json!(5));
    assert_eq!(output["parts"], json!([[1, 2], [3]]));
    assert_eq!(output["r"], json!([1, 2, 3]));
    assert_eq!(output["h"], json!("900150983cd24fb0d6963f7d28e17f72"));
    assert_eq!(output["p"], json!([1]));
    assert_eq!(output["id"].as_str().unwrap().len(), 36);
}

#[tokio::test]
async fn callback_arguments_carry_the_task_token() {
    let wait = format!("{WORK}.waitForTaskToken");
    let (submit, mut requests) = queue();
    let executor = Arc::new(
        instant_executor(&jsonata(
            &json!({"Ask": {"Type": "Task", "Resource": wait, "End": true,
                "Arguments": {"MessageBody": {"token": "{% $states.context.Task.Token %}", "q": "{% $states.input.q %}"}},
                "Output": {"answer": "{% $states.result.a %}"}}}),
            "Ask",
        ))
        .with_handler(WORK, submit),
    );
    let handle = executor.start_execution("run", json!({"q": "?"})).unwrap();
    let request = requests.recv().await.unwrap();
    let body = &request.parameters["MessageBody"];
    assert_eq!(body["q"], json!("?"));
    assert_eq!(body["token"].as_str(), request.task_token.as_deref());
    executor
        .send_task_success(body["token"].as_str().unwrap(), json!({"a": 42}))
        .unwrap();
    assert_eq!(handle.wait().await.output, Some(json!({"answer": 42})));
}

#[tokio::test]
async fn map_items_must_be_an_array() {
    let executor = instant_executor(&jsonata(
        &json!({"Each": {"Type": "Map", "End": true, "Items": "{% $states.input.one %}",
            "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}}}),
        "Each",
    ));
    let execution = run(&executor, json!({"one": {"a": 1}})).await;
    assert_eq!(
        execution.error.as_deref(),
        Some("States.QueryEvaluationError")
    );
}
