//! Definitions the executor must refuse, each with an error naming the state and field.

use std::collections::BTreeMap;

use airlock_asl::{Definition, DefinitionError};
use serde_json::{Value, json};

fn refuse(definition: &Value) -> DefinitionError {
    match Definition::from_value(definition) {
        Ok(_) => panic!("definition should be refused: {definition:#}"),
        Err(e) => e,
    }
}

/// A one-state machine whose only state is `state`.
fn single(state: &Value) -> Value {
    json!({"StartAt": "S", "States": {"S": state}})
}

fn assert_refused(definition: &Value, state: Option<&str>, field: Option<&str>, fragment: &str) {
    let err = refuse(definition);
    assert_eq!(err.state(), state, "state of: {err}");
    assert_eq!(err.field(), field, "field of: {err}");
    assert!(
        err.to_string().contains(fragment),
        "'{err}' should mention '{fragment}'"
    );
    if let Some(state) = state {
        assert!(
            err.to_string().contains(state),
            "'{err}' should name the state"
        );
    }
    if let Some(field) = field {
        assert!(
            err.to_string().contains(field),
            "'{err}' should name the field"
        );
    }
}

const TOKEN_QUEUE: &str = "arn:aws:states:::sqs:sendMessage.waitForTaskToken";

fn pipeline() -> String {
    json!({"Comment":"x","StartAt":"Inspect","TimeoutSeconds":3600,"States":{
     "Inspect":{"Type":"Task","Resource":TOKEN_QUEUE,
       "Parameters":{"QueueUrl":"${InspectQueueUrl}","MessageBody":{"taskToken.$":"$$.Task.Token","stage":"inspect","object.$":"$.object","execution.$":"$$.Execution.Name"}},
       "TimeoutSeconds":300,"HeartbeatSeconds":60,"ResultPath":"$.inspect",
       "Retry":[{"ErrorEquals":["Airlock.Transient"],"IntervalSeconds":2,"MaxAttempts":3,"BackoffRate":2,"JitterStrategy":"FULL"},{"ErrorEquals":["States.Timeout"],"MaxAttempts":1}],
       "Catch":[{"ErrorEquals":["States.ALL"],"ResultPath":"$.inspectFailure","Next":"Quarantine"}],
       "Next":"AfterInspect"},
     "AfterInspect":{"Type":"Choice","Choices":[{"Variable":"$.inspect.outcome","StringEquals":"reject","Next":"Quarantine"}],"Default":"Done"},
     "Quarantine":{"Type":"Pass","End":true},"Done":{"Type":"Succeed"}}})
    .to_string()
}

#[test]
fn the_pipeline_shape_parses_with_substitutions() {
    let subs = BTreeMap::from([(
        "InspectQueueUrl".to_owned(),
        "http://queue/inspect".to_owned(),
    )]);
    let definition = Definition::parse_with_substitutions(&pipeline(), &subs).unwrap();
    assert_eq!(definition.start_at(), "Inspect");
    assert_eq!(definition.comment(), Some("x"));
    assert_eq!(definition.timeout_seconds(), Some(3600));
    let states: Vec<&str> = definition.states().collect();
    assert_eq!(
        states,
        vec!["AfterInspect", "Done", "Inspect", "Quarantine"]
    );
    let tasks = definition.task_resources();
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].state, "Inspect");
    assert_eq!(tasks[0].handler_key, "arn:aws:states:::sqs:sendMessage");
    assert!(tasks[0].wait_for_task_token);
}

#[test]
fn a_missing_substitution_is_named() {
    let err = Definition::parse_with_substitutions(&pipeline(), &BTreeMap::new()).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("${InspectQueueUrl}"), "{text}");
    assert!(text.contains("Inspect.Parameters.QueueUrl"), "{text}");
}

#[test]
fn substitution_replaces_every_occurrence_and_leaves_other_dollars_alone() {
    let subs = BTreeMap::from([
        ("A".to_owned(), "one".to_owned()),
        ("B".to_owned(), "two".to_owned()),
    ]);
    let text = json!({"StartAt": "P", "States": {"P": {
        "Type": "Pass", "Result": {"x": "${A}-${B}-${A}", "y": "${ not a name }", "z": "$.keep"}, "End": true
    }}})
    .to_string();
    assert!(Definition::parse_with_substitutions(&text, &subs).is_ok());
}

#[test]
fn malformed_documents_are_refused() {
    assert!(
        Definition::parse("{")
            .unwrap_err()
            .to_string()
            .contains("not valid JSON")
    );
    assert_refused(&json!([1]), None, None, "must be a JSON object");
    assert_refused(&json!({"States": {}}), None, Some("StartAt"), "required");
    assert_refused(
        &json!({"StartAt": "A", "States": {}}),
        None,
        Some("States"),
        "at least one state",
    );
    assert_refused(
        &json!({"StartAt": "A", "States": {"A": {"Type": "Succeed"}}, "Bogus": 1}),
        None,
        Some("Bogus"),
        "unknown",
    );
    assert_refused(
        &json!({"StartAt": "A", "States": {"A": {"Type": "Succeed"}}, "TimeoutSeconds": 0}),
        None,
        Some("TimeoutSeconds"),
        "positive integer",
    );
}

#[test]
fn fields_of_the_other_query_language_are_refused() {
    assert_refused(
        &json!({"QueryLanguage": "JSONata", "StartAt": "S", "States": {
            "S": {"Type": "Pass", "InputPath": "$.a", "End": true}}}),
        Some("S"),
        Some("InputPath"),
        "is a JSONPath field",
    );
    assert_refused(
        &single(&json!({"Type": "Pass", "Output": {}, "End": true})),
        Some("S"),
        Some("Output"),
        "is a JSONata field",
    );
    assert_refused(
        &single(
            &json!({"Type": "Pass", "QueryLanguage": "JSONata", "Output": "{% $states.input. %}", "End": true}),
        ),
        Some("S"),
        Some("Output"),
        "invalid JSONata expression",
    );
    assert_refused(
        &single(&json!({"Type": "Pass", "QueryLanguage": "JSONPaths", "End": true})),
        Some("S"),
        Some("QueryLanguage"),
        "must be",
    );
}

#[test]
fn unknown_types_and_fields_are_refused() {
    assert_refused(
        &single(&json!({"Type": "Tusk", "End": true})),
        Some("S"),
        Some("Type"),
        "unknown state type 'Tusk'",
    );
    assert_refused(
        &single(&json!({"End": true})),
        Some("S"),
        Some("Type"),
        "required",
    );
    assert_refused(
        &single(&json!({"Type": "Pass", "Resultpath": "$.x", "End": true})),
        Some("S"),
        Some("Resultpath"),
        "unknown field for a Pass state",
    );
    assert_refused(
        &single(&json!({"Type": "Pass", "Assign": {"1x": 1}, "End": true})),
        Some("S"),
        Some("Assign.1x"),
        "not a valid variable name",
    );
    assert_refused(
        &single(&json!({"Type": "Pass", "Assign": {"states.$": "$"}, "End": true})),
        Some("S"),
        Some("Assign.states.$"),
        "reserved",
    );
}

#[test]
fn transitions_are_checked() {
    assert_refused(
        &single(&json!({"Type": "Pass"})),
        Some("S"),
        Some("Next"),
        "one of 'Next' or '\"End\": true' is required",
    );
    assert_refused(
        &single(&json!({"Type": "Pass", "Next": "S", "End": true})),
        Some("S"),
        Some("End"),
        "cannot be combined",
    );
    assert_refused(
        &single(&json!({"Type": "Pass", "Next": "Nowhere"})),
        Some("S"),
        Some("Next"),
        "missing state 'Nowhere'",
    );
    assert_refused(
        &json!({"StartAt": "Nowhere", "States": {"A": {"Type": "Succeed"}}}),
        None,
        Some("StartAt"),
        "missing state 'Nowhere'",
    );
    assert_refused(
        &json!({"StartAt": "A", "States": {"A": {"Type": "Succeed"}, "Orphan": {"Type": "Succeed"}}}),
        Some("Orphan"),
        None,
        "not reachable",
    );
    assert_refused(
        &single(&json!({"Type": "Succeed", "Next": "S"})),
        Some("S"),
        Some("Next"),
        "a Succeed state cannot have 'Next'",
    );
    assert_refused(
        &single(
            &json!({"Type": "Choice", "Choices": [{"Variable": "$.a", "IsNull": true, "Next": "S"}], "End": true}),
        ),
        Some("S"),
        Some("End"),
        "a Choice state cannot have 'End'",
    );
}

#[test]
fn choice_rules_are_checked() {
    let choice = |choices: Value| {
        json!({"StartAt": "C", "States": {
            "C": {"Type": "Choice", "Choices": choices, "Default": "D"},
            "D": {"Type": "Succeed"}
        }})
    };
    assert_refused(
        &choice(json!([])),
        Some("C"),
        Some("Choices"),
        "must not be empty",
    );
    assert_refused(
        &choice(json!([{"Variable": "$.a", "StringEqual": "x", "Next": "D"}])),
        Some("C"),
        Some("Choices[0].StringEqual"),
        "unknown choice operator",
    );
    assert_refused(
        &choice(json!([{"Variable": "$.a", "StringEquals": "x"}])),
        Some("C"),
        Some("Choices[0].Next"),
        "required",
    );
    assert_refused(
        &choice(json!([{"Variable": "$.a", "NumericEquals": "7", "Next": "D"}])),
        Some("C"),
        Some("Choices[0].NumericEquals"),
        "must be a number",
    );
    assert_refused(
        &choice(json!([{"And": [{"Variable": "$.a", "IsNull": true, "Next": "D"}], "Next": "D"}])),
        Some("C"),
        Some("Choices[0].Next"),
        "only top-level",
    );
    assert_refused(
        &choice(json!([{"Variable": "$.a", "StringEquals": "x", "Next": "Nowhere"}])),
        Some("C"),
        Some("Choices[0].Next"),
        "missing state",
    );
    assert_refused(
        &json!({"StartAt": "C", "States": {
            "C": {"Type": "Choice", "Choices": [{"Variable": "$.a", "IsNull": true, "Next": "D"}], "Default": "Nope"},
            "D": {"Type": "Succeed"}
        }}),
        Some("C"),
        Some("Default"),
        "missing state 'Nope'",
    );
}

#[test]
fn paths_and_templates_are_checked() {
    assert_refused(
        &single(&json!({"Type": "Pass", "InputPath": "foo", "End": true})),
        Some("S"),
        Some("InputPath"),
        "must start with '$'",
    );
    assert_refused(
        &single(&json!({"Type": "Pass", "ResultPath": "$.a[*]", "End": true})),
        Some("S"),
        Some("ResultPath"),
        "not a reference path",
    );
    assert_refused(
        &single(&json!({"Type": "Pass", "OutputPath": "$.a[", "End": true})),
        Some("S"),
        Some("OutputPath"),
        "invalid path",
    );
    assert_refused(
        &single(&json!({"Type": "Pass", "Parameters": {"x": {"y.$": "$.["}}, "End": true})),
        Some("S"),
        Some("Parameters.x.y.$"),
        "invalid path",
    );
    assert_refused(
        &single(&json!({"Type": "Pass", "Parameters": {"x.$": "States.Nope($.a)"}, "End": true})),
        Some("S"),
        Some("Parameters.x.$"),
        "unknown intrinsic function 'States.Nope'",
    );
    assert_refused(
        &single(&json!({"Type": "Pass", "Parameters": {"x.$": 5}, "End": true})),
        Some("S"),
        Some("Parameters.x.$"),
        "string value",
    );
}

fn task(extra: &Value) -> Value {
    let mut state =
        json!({"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:1:function:f", "End": true});
    for (k, v) in extra.as_object().unwrap() {
        state[k] = v.clone();
    }
    single(&state)
}

#[test]
fn task_fields_are_checked() {
    assert_refused(
        &single(&json!({"Type": "Task", "End": true})),
        Some("S"),
        Some("Resource"),
        "required",
    );
    assert_refused(
        &task(&json!({"Resource": "arn:aws:states:::ecs:runTask.sync"})),
        Some("S"),
        Some("Resource"),
        "'.sync' integration pattern is not supported",
    );
    assert_refused(
        &task(&json!({"Resource": "arn:aws:states:::glue:startJobRun.sync:2"})),
        Some("S"),
        Some("Resource"),
        ".sync",
    );
    assert_refused(
        &task(&json!({"TimeoutSeconds": 10, "HeartbeatSeconds": 10})),
        Some("S"),
        Some("HeartbeatSeconds"),
        "smaller than TimeoutSeconds",
    );
    assert_refused(
        &task(&json!({"TimeoutSeconds": 10, "TimeoutSecondsPath": "$.t"})),
        Some("S"),
        Some("TimeoutSecondsPath"),
        "cannot be combined",
    );
    assert_refused(
        &task(&json!({"TimeoutSeconds": -1})),
        Some("S"),
        Some("TimeoutSeconds"),
        "positive integer",
    );
}

#[test]
fn retry_and_catch_are_checked() {
    assert_refused(
        &task(&json!({"Retry": [{"ErrorEquals": ["States.ALL"]}, {"ErrorEquals": ["X"]}]})),
        Some("S"),
        Some("Retry[0].ErrorEquals"),
        "last",
    );
    assert_refused(
        &task(&json!({"Retry": [{"ErrorEquals": ["States.ALL", "X"]}]})),
        Some("S"),
        Some("Retry[0].ErrorEquals"),
        "alone",
    );
    assert_refused(
        &task(&json!({"Retry": [{"ErrorEquals": []}]})),
        Some("S"),
        Some("Retry[0].ErrorEquals"),
        "must not be empty",
    );
    assert_refused(
        &task(&json!({"Retry": [{"ErrorEquals": ["X"], "BackoffRate": 0.5}]})),
        Some("S"),
        Some("Retry[0].BackoffRate"),
        ">= 1.0",
    );
    assert_refused(
        &task(&json!({"Retry": [{"ErrorEquals": ["X"], "JitterStrategy": "SOME"}]})),
        Some("S"),
        Some("Retry[0].JitterStrategy"),
        "FULL",
    );
    assert_refused(
        &task(&json!({"Retry": [{"ErrorEquals": ["X"], "MaxAttempts": -1}]})),
        Some("S"),
        Some("Retry[0].MaxAttempts"),
        "non-negative",
    );
    assert_refused(
        &task(&json!({"Retry": [{"ErrorEquals": ["X"], "Interval": 1}]})),
        Some("S"),
        Some("Retry[0].Interval"),
        "unknown",
    );
    assert_refused(
        &task(&json!({"Catch": [{"ErrorEquals": ["States.ALL"]}]})),
        Some("S"),
        Some("Catch[0].Next"),
        "required",
    );
    assert_refused(
        &task(&json!({"Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Gone"}]})),
        Some("S"),
        Some("Catch[0].Next"),
        "missing state 'Gone'",
    );
    assert_refused(
        &task(
            &json!({"Catch": [{"ErrorEquals": ["States.ALL"], "Next": "S"}, {"ErrorEquals": ["X"], "Next": "S"}]}),
        ),
        Some("S"),
        Some("Catch[0].ErrorEquals"),
        "last",
    );
}

#[test]
fn wait_and_fail_fields_are_checked() {
    assert_refused(
        &single(&json!({"Type": "Wait", "End": true})),
        Some("S"),
        Some("Seconds"),
        "exactly one",
    );
    assert_refused(
        &single(
            &json!({"Type": "Wait", "Seconds": 1, "Timestamp": "2024-01-01T00:00:00Z", "End": true}),
        ),
        Some("S"),
        Some("Timestamp"),
        "exactly one",
    );
    assert_refused(
        &single(&json!({"Type": "Wait", "Timestamp": "tomorrow", "End": true})),
        Some("S"),
        Some("Timestamp"),
        "RFC 3339",
    );
    assert_refused(
        &single(&json!({"Type": "Fail", "Error": "E", "ErrorPath": "$.e"})),
        Some("S"),
        Some("ErrorPath"),
        "cannot be combined",
    );
    assert_refused(
        &single(&json!({"Type": "Fail", "CausePath": "$.c[*]"})),
        Some("S"),
        Some("CausePath"),
        "single value",
    );
}

#[test]
fn nested_machines_are_checked_and_located() {
    assert_refused(
        &single(&json!({"Type": "Parallel", "Branches": [], "End": true})),
        Some("S"),
        Some("Branches"),
        "must not be empty",
    );
    assert_refused(
        &single(&json!({"Type": "Parallel", "End": true, "Branches": [
            {"StartAt": "A", "States": {"A": {"Type": "Succeed"}}},
            {"StartAt": "B", "States": {"B": {"Type": "Pass", "Next": "Outside"}}}
        ]})),
        Some("S > Branches[1] > B"),
        Some("Next"),
        "missing state 'Outside'",
    );
    assert_refused(
        &single(
            &json!({"Type": "Parallel", "End": true, "Branches": [{"States": {"A": {"Type": "Succeed"}}}]}),
        ),
        Some("S"),
        Some("Branches[0].StartAt"),
        "required",
    );
    assert_refused(
        &single(&json!({"Type": "Map", "End": true})),
        Some("S"),
        Some("ItemProcessor"),
        "required",
    );
    assert_refused(
        &single(&json!({"Type": "Map", "End": true, "ItemProcessor": {
            "ProcessorConfig": {"Mode": "DISTRIBUTED"},
            "StartAt": "A", "States": {"A": {"Type": "Succeed"}}
        }})),
        Some("S"),
        Some("ItemProcessor.ProcessorConfig.ExecutionType"),
        "required",
    );
    assert_refused(
        &single(&json!({"Type": "Map", "End": true, "ItemReader": {},
            "ItemProcessor": {"StartAt": "A", "States": {"A": {"Type": "Succeed"}}}})),
        Some("S"),
        Some("ItemReader"),
        "Distributed Map",
    );
    assert_refused(
        &single(
            &json!({"Type": "Map", "End": true, "ItemSelector": {}, "Parameters": {},
            "ItemProcessor": {"StartAt": "A", "States": {"A": {"Type": "Succeed"}}}}),
        ),
        Some("S"),
        Some("Parameters"),
        "cannot be combined",
    );
    assert_refused(
        &single(&json!({"Type": "Map", "End": true,
            "Iterator": {"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "", "End": true}}}})),
        Some("S > Iterator > A"),
        Some("Resource"),
        "required",
    );
}
