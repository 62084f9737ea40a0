//! Workflow variables in JSONPath states: `Assign` and `$name` references, with the
//! scoping and evaluation order the Step Functions documentation describes.

mod common;

use airlock_asl::{Definition, ExecutionStatus, TaskFailure};
use common::{handler, instant_executor};
use serde_json::{Value, json};

const WORK: &str = "arn:aws:states:::sqs:sendMessage";

async fn run(executor: &airlock_asl::Executor, input: Value) -> airlock_asl::Execution {
    executor.start_execution("run", input).unwrap().wait().await
}

#[tokio::test]
async fn assigned_variables_are_read_by_later_states() {
    let executor = instant_executor(&json!({"StartAt": "Remember", "States": {
        "Remember": {"Type": "Pass", "Assign": {"user.$": "$.user", "greeting": "hello", "n.$": "States.MathAdd($.n, 1)"}, "Next": "Forget"},
        "Forget": {"Type": "Pass", "Result": {}, "Next": "Use"},
        "Use": {"Type": "Pass", "Parameters": {
            "text.$": "States.Format('{} {}', $greeting, $user.name)",
            "n.$": "$n",
            "whole.$": "$user"
        }, "End": true}
    }}));
    let execution = run(&executor, json!({"user": {"name": "Ann"}, "n": 1})).await;
    assert_eq!(
        execution.status,
        ExecutionStatus::Succeeded,
        "{execution:?}"
    );
    assert_eq!(
        execution.output,
        Some(json!({"text": "hello Ann", "n": 2, "whole": {"name": "Ann"}}))
    );
}

#[tokio::test]
async fn assignments_see_the_values_from_before_the_state() {
    // Both fields of one Assign read the old value of x: assignments take effect
    // together, from the next state on.
    let executor = instant_executor(&json!({"StartAt": "A", "States": {
        "A": {"Type": "Pass", "Assign": {"x": 1}, "Next": "B"},
        "B": {"Type": "Pass", "Assign": {"x": 2, "old.$": "$x"}, "Parameters": {"during.$": "$x"}, "Next": "C"},
        "C": {"Type": "Pass", "Parameters": {"x.$": "$x", "old.$": "$old", "during.$": "$.during"}, "End": true}
    }}));
    let execution = run(&executor, json!({})).await;
    assert_eq!(
        execution.output,
        Some(json!({"x": 2, "old": 1, "during": 1}))
    );
}

#[tokio::test]
async fn task_assign_reads_the_selected_result_and_catch_assign_the_error() {
    let executor = instant_executor(&json!({"StartAt": "Ok", "States": {
        "Ok": {"Type": "Task", "Resource": WORK, "ResultSelector": {"id.$": "$.MessageId"},
            "Assign": {"sent.$": "$.id"}, "ResultPath": null, "Next": "Bad"},
        "Bad": {"Type": "Task", "Resource": format!("{WORK}:bad"), "End": true,
            "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Report", "Assign": {"failure.$": "$.Error"}}]},
        "Report": {"Type": "Pass", "Parameters": {"sent.$": "$sent", "failure.$": "$failure"}, "End": true}
    }}))
    .with_handler(WORK, handler(|_| Ok(json!({"MessageId": "m-1"}))))
    .with_handler(
        &format!("{WORK}:bad"),
        handler(|_| Err(TaskFailure::new("Queue.Down", "no"))),
    );
    let execution = run(&executor, json!({})).await;
    assert_eq!(
        execution.output,
        Some(json!({"sent": "m-1", "failure": "Queue.Down"}))
    );
}

#[tokio::test]
async fn choice_rules_read_variables_and_assign_on_the_way() {
    let executor = instant_executor(&json!({"StartAt": "Set", "States": {
        "Set": {"Type": "Pass", "Assign": {"limit": 10}, "Next": "Check"},
        "Check": {"Type": "Choice", "Assign": {"checked": true, "route": "default"},
            "Choices": [{"Variable": "$.n", "NumericGreaterThanPath": "$limit", "Next": "Big", "Assign": {"route": "big"}}],
            "Default": "Small"},
        "Big": {"Type": "Pass", "Parameters": {"route.$": "$route", "checked.$": "$checked"}, "End": true},
        "Small": {"Type": "Pass", "Parameters": {"route.$": "$route", "checked.$": "$checked"}, "End": true}
    }}));
    let execution = run(&executor, json!({"n": 11})).await;
    assert_eq!(
        execution.output,
        Some(json!({"route": "big", "checked": true}))
    );
    let executor = instant_executor(&json!({"StartAt": "Check", "States": {
        "Check": {"Type": "Choice", "Choices": [{"Variable": "$flag", "BooleanEquals": true, "Next": "Done"}], "Default": "Done"},
        "Done": {"Type": "Succeed"}
    }}));
    let execution = run(&executor, json!({})).await;
    assert_eq!(execution.error.as_deref(), Some("States.Runtime"));
    assert!(
        execution
            .cause
            .unwrap()
            .contains("The variable '$flag' referenced by '$flag' has not been assigned")
    );
}

#[tokio::test]
async fn map_iterations_read_outer_variables_and_keep_their_own() {
    let executor = instant_executor(&json!({"StartAt": "Set", "States": {
        "Set": {"Type": "Pass", "Assign": {"prefix": "item-"}, "Next": "Each"},
        "Each": {"Type": "Map", "Next": "After", "ItemProcessor": {"StartAt": "Name", "States": {
            "Name": {"Type": "Pass", "Assign": {"mine.$": "States.Format('{}{}', $prefix, $)"}, "Next": "Out"},
            "Out": {"Type": "Pass", "Parameters": {"name.$": "$mine"}, "End": true}
        }}},
        "After": {"Type": "Pass", "Parameters": {"prefix.$": "$prefix", "names.$": "$[*].name"}, "End": true}
    }}));
    let execution = run(&executor, json!([1, 2])).await;
    assert_eq!(
        execution.output,
        Some(json!({"prefix": "item-", "names": ["item-1", "item-2"]}))
    );
    // What an iteration assigned is gone after the Map.
    let executor = instant_executor(&json!({"StartAt": "Each", "States": {
        "Each": {"Type": "Map", "Next": "After", "ItemProcessor": {"StartAt": "Name", "States": {
            "Name": {"Type": "Pass", "Assign": {"inner": 1}, "End": true}
        }}},
        "After": {"Type": "Pass", "Parameters": {"x.$": "$inner"}, "End": true}
    }}));
    let execution = run(&executor, json!([1])).await;
    assert_eq!(execution.error.as_deref(), Some("States.Runtime"));
}

#[test]
fn inner_scopes_may_not_assign_outer_variables() {
    let err = Definition::from_value(&json!({"StartAt": "Set", "States": {
        "Set": {"Type": "Pass", "Assign": {"total": 0}, "Next": "Par"},
        "Par": {"Type": "Parallel", "End": true, "Branches": [
            {"StartAt": "Add", "States": {"Add": {"Type": "Pass", "Assign": {"total": 1}, "End": true}}}
        ]}
    }}))
    .unwrap_err();
    assert_eq!(err.state(), Some("Par > Branches[0] > Add"));
    assert_eq!(err.field(), Some("Assign"));
    assert!(err.message().contains("read-only"), "{err}");
}

#[test]
fn variables_cannot_be_written_through_result_path() {
    let err = Definition::from_value(&json!({"StartAt": "P", "States": {
        "P": {"Type": "Pass", "ResultPath": "$x", "End": true}
    }}))
    .unwrap_err();
    assert_eq!(err.field(), Some("ResultPath"));
}

#[tokio::test]
async fn a_variable_over_256_kib_is_refused() {
    let executor = instant_executor(&json!({"StartAt": "Big", "States": {
        "Big": {"Type": "Pass", "Assign": {"blob.$": "$.blob"}, "ResultPath": null, "End": true}
    }}));
    let execution = run(&executor, json!({"blob": "x".repeat(200 * 1024)})).await;
    assert_eq!(execution.status, ExecutionStatus::Succeeded);
    let executor = instant_executor(&json!({"StartAt": "Big", "States": {
        "Big": {"Type": "Pass", "Assign": {"a.$": "$.blob", "b.$": "$.blob"}, "ResultPath": null, "End": true}
    }}));
    let execution = run(&executor, json!({"blob": "x".repeat(200 * 1024)})).await;
    assert_eq!(execution.error.as_deref(), Some("States.DataLimitExceeded"));
}
