//! The executor against the examples of the public documentation: the Amazon States
//! Language specification and the Step Functions developer guide. Each case in
//! `tests/conformance/*.json` is a documented example (a definition or one state, an
//! input) with the result the documentation gives for it. Cases that fail for a known
//! reason are listed in `tests/conformance/known-differences.json`; any other failure
//! fails this test, and so does a listed case that passes (so the list stays honest).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use airlock_asl::{
    Definition, Execution, ExecutionStatus, Executor, ExecutorOptions, TaskFailure, TaskHandler,
    TaskRequest,
};
use serde_json::{Value, json};

/// Every case of this file is a known difference, with this reason.
const WHOLE_FILE_DIFFERENCES: &[(&str, &str)] = &[];

fn conformance_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance")
}

/// What a Task resource does when called: the documented result, an error, or (when the
/// documentation says nothing of the result) its input back.
#[derive(Debug, Clone)]
enum Behaviour {
    Results(Vec<Value>),
    Errors(Vec<(String, String)>),
    Echo,
}

impl Behaviour {
    fn from_case(value: &Value) -> Self {
        if let Some(result) = value.get("result") {
            return Self::Results(vec![result.clone()]);
        }
        if let Some(Value::Array(results)) = value.get("results") {
            return Self::Results(results.clone());
        }
        if let Some(error) = value.get("error").and_then(Value::as_str) {
            let cause = value.get("cause").and_then(Value::as_str).unwrap_or("");
            return Self::Errors(vec![(error.to_owned(), cause.to_owned())]);
        }
        if let Some(Value::Array(errors)) = value.get("errors") {
            return Self::Errors(
                errors
                    .iter()
                    .map(|e| (e.as_str().unwrap_or_default().to_owned(), String::new()))
                    .collect(),
            );
        }
        Self::Echo
    }
}

/// Answers every Task resource of a case and records what each was sent.
struct ScriptedTasks {
    behaviours: HashMap<String, Behaviour>,
    calls: Mutex<Vec<(String, Value)>>,
}

#[async_trait::async_trait]
impl TaskHandler for ScriptedTasks {
    async fn invoke(&self, request: TaskRequest) -> Result<Value, TaskFailure> {
        let index = {
            let mut calls = self.calls.lock().unwrap();
            let index = calls
                .iter()
                .filter(|(resource, _)| *resource == request.resource)
                .count();
            calls.push((request.resource.clone(), request.parameters.clone()));
            index
        };
        match self.behaviours.get(&request.resource) {
            Some(Behaviour::Results(results)) => Ok(results[index.min(results.len() - 1)].clone()),
            Some(Behaviour::Errors(errors)) => {
                let (error, cause) = &errors[index.min(errors.len() - 1)];
                Err(TaskFailure::new(error, cause))
            }
            Some(Behaviour::Echo) | None => Ok(request.parameters),
        }
    }
}

/// The definition a case runs: its own, or one built around its single state, expression
/// or intrinsic function.
fn case_definition(case: &Value) -> Value {
    let mut definition = if let Some(definition) = case.get("definition") {
        definition.clone()
    } else if let Some(state) = case.get("state") {
        let mut state = state.clone();
        let fields = state.as_object_mut().expect("a state is an object");
        let terminal = matches!(
            fields.get("Type").and_then(Value::as_str),
            Some("Choice" | "Succeed" | "Fail")
        );
        if !terminal {
            fields.remove("Next");
            fields.insert("End".to_owned(), json!(true));
        }
        let name = case
            .get("stateName")
            .and_then(Value::as_str)
            .unwrap_or("Example");
        json!({"StartAt": name, "States": {name: state}})
    } else if let Some(intrinsic) = case.get("intrinsic").and_then(Value::as_str) {
        json!({"StartAt": "Intrinsic", "States": {"Intrinsic": {
            "Type": "Pass", "Parameters": {"value.$": intrinsic}, "OutputPath": "$.value", "End": true
        }}})
    } else if let Some(expression) = case.get("jsonata").and_then(Value::as_str) {
        json!({"QueryLanguage": "JSONata", "StartAt": "Expression", "States": {"Expression": {
            "Type": "Pass", "Output": format!("{{% {expression} %}}"), "End": true
        }}})
    } else {
        panic!(
            "case {} has no definition, state, intrinsic or jsonata",
            case["id"]
        );
    };
    if let Some(language) = case.get("queryLanguage") {
        definition["QueryLanguage"] = language.clone();
    }
    definition
}

fn task_resources(definition: &Value, found: &mut Vec<String>) {
    match definition {
        Value::Object(fields) => {
            if fields.get("Type").and_then(Value::as_str) == Some("Task")
                && let Some(resource) = fields.get("Resource").and_then(Value::as_str)
            {
                found.push(resource.to_owned());
            }
            fields.values().for_each(|v| task_resources(v, found));
        }
        Value::Array(items) => items.iter().for_each(|v| task_resources(v, found)),
        _ => {}
    }
}

/// Whether `actual` has `property` (for documented examples whose value is random).
fn has_property(property: &Value, actual: &Value) -> Result<(), String> {
    let kind = property["kind"].as_str().unwrap_or_default();
    let ok = match kind {
        "integer-between" => actual.as_i64().is_some_and(|n| {
            n >= property["min"].as_i64().unwrap() && n <= property["max"].as_i64().unwrap()
        }),
        "number-in-unit-interval" => actual.as_f64().is_some_and(|n| (0.0..1.0).contains(&n)),
        "uuid-v4" => actual.as_str().is_some_and(|s| {
            uuid::Uuid::parse_str(s).is_ok_and(|u| u.get_version_num() == 4) && s.len() == 36
        }),
        "hex-of-length" => actual.as_str().is_some_and(|s| {
            s.len() as u64 == property["length"].as_u64().unwrap()
                && s.chars().all(|c| c.is_ascii_hexdigit())
        }),
        other => return Err(format!("unknown property kind {other:?}")),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{actual} is not {property}"))
    }
}

fn entered_states(execution: &Execution) -> Vec<String> {
    execution
        .history
        .iter()
        .filter(|event| event.event_type.is_state_entered())
        .filter_map(|event| event.details.state_name().map(str::to_owned))
        .collect()
}

/// Runs one case; `Err` says how the result differs from the documented one.
async fn run_case(case: &Value) -> Result<(), String> {
    let definition_value = case_definition(case);
    let definition = Definition::from_value(&definition_value);
    let expect = &case["expect"];
    // `rejected`: the documentation says the interpreter raises an error without naming
    // it, so refusing the definition and failing the execution both count.
    let rejected = expect.get("rejected") == Some(&Value::Bool(true));
    let definition = match definition {
        Err(_) if rejected => return Ok(()),
        Err(error) => return Err(format!("definition refused: {error}")),
        Ok(definition) => definition,
    };
    let mut resources = Vec::new();
    task_resources(&definition_value, &mut resources);
    let behaviours: HashMap<String, Behaviour> = case
        .get("tasks")
        .and_then(Value::as_object)
        .map(|tasks| {
            tasks
                .iter()
                .map(|(resource, behaviour)| (resource.clone(), Behaviour::from_case(behaviour)))
                .collect()
        })
        .unwrap_or_default();
    let tasks = Arc::new(ScriptedTasks {
        behaviours,
        calls: Mutex::new(Vec::new()),
    });
    let mut executor = Executor::new(
        definition,
        ExecutorOptions {
            delay_scale: 0.0,
            jitter_seed: Some(1),
            ..ExecutorOptions::default()
        },
    );
    for resource in &resources {
        let base = resource
            .strip_suffix(".waitForTaskToken")
            .unwrap_or(resource);
        executor.register(base, Arc::clone(&tasks) as Arc<dyn TaskHandler>);
    }
    let input = case.get("input").cloned().unwrap_or_else(|| json!({}));
    let handle = executor
        .start_execution("conformance", input)
        .map_err(|e| format!("start: {e}"))?;
    let execution = tokio::time::timeout(Duration::from_secs(20), handle.wait())
        .await
        .map_err(|_| "the execution did not end within 20 s".to_owned())?;
    let mut problems = check_outcome(expect, &execution, rejected);
    let calls = tasks.calls.lock().unwrap().clone();
    problems.extend(check_tasks(expect, &calls));
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// How the execution's end differs from the documented one.
fn check_outcome(expect: &Value, execution: &Execution, rejected: bool) -> Vec<String> {
    let mut problems = Vec::new();
    let failed = execution.status == ExecutionStatus::Failed;
    if rejected {
        if !failed {
            problems.push(format!("expected an error, got {:?}", execution.status));
        }
    } else if let Some(want_failure) = expect.get("failed").and_then(Value::as_bool) {
        if failed != want_failure {
            problems.push(format!(
                "expected failed = {want_failure}, got {:?} {:?}",
                execution.status, execution.error
            ));
        }
    } else if let Some(error) = expect.get("error").and_then(Value::as_str) {
        if execution.status != ExecutionStatus::Failed || execution.error.as_deref() != Some(error)
        {
            problems.push(format!(
                "expected failure {error}, got {:?} {:?} ({:?}) output {:?}",
                execution.status, execution.error, execution.cause, execution.output
            ));
        }
    } else if execution.status != ExecutionStatus::Succeeded {
        problems.push(format!(
            "expected success, got {:?} {:?}: {:?}",
            execution.status, execution.error, execution.cause
        ));
    }
    if let Some(cause) = expect.get("cause").and_then(Value::as_str)
        && execution.cause.as_deref() != Some(cause)
    {
        problems.push(format!(
            "expected cause {cause:?}, got {:?}",
            execution.cause
        ));
    }
    let output = execution.output.clone().unwrap_or(Value::Null);
    if let Some(want) = expect.get("output")
        && &output != want
    {
        problems.push(format!(
            "output {output} differs from the documented {want}"
        ));
    }
    if let Some(property) = expect.get("property")
        && let Err(why) = has_property(property, &output)
    {
        problems.push(why);
    }
    if let Some(fields) = expect.get("outputFields").and_then(Value::as_object) {
        for (field, want) in fields {
            let got = output.get(field).cloned().unwrap_or(Value::Null);
            if &got != want {
                problems.push(format!("output field {field} is {got}, documented {want}"));
            }
        }
    }
    if let Some(properties) = expect
        .get("outputFieldProperties")
        .and_then(Value::as_object)
    {
        for (field, property) in properties {
            let got = output.get(field).cloned().unwrap_or(Value::Null);
            if let Err(why) = has_property(property, &got) {
                problems.push(format!("output field {field}: {why}"));
            }
        }
    }
    if let Some(Value::Array(want)) = expect.get("states") {
        let got = entered_states(execution);
        let want: Vec<String> = want
            .iter()
            .map(|s| s.as_str().unwrap_or_default().to_owned())
            .collect();
        if got != want {
            problems.push(format!("states entered {got:?}, documented {want:?}"));
        }
    }
    problems
}

/// How the calls the tasks received differ from the documented ones.
fn check_tasks(expect: &Value, calls: &[(String, Value)]) -> Vec<String> {
    let mut problems = Vec::new();
    let sent: Vec<Value> = calls
        .iter()
        .map(|(_, parameters)| parameters.clone())
        .collect();
    if let Some(Value::Array(want)) = expect.get("taskInputs")
        && &sent != want
    {
        problems.push(format!("tasks were sent {sent:?}, documented {want:?}"));
    }
    if let Some(Value::Array(want)) = expect.get("taskInputsInclude") {
        for item in want {
            if !sent.contains(item) {
                problems.push(format!("no task was sent {item}; sent {sent:?}"));
            }
        }
    }
    if let Some(count) = expect.get("taskCalls").and_then(Value::as_u64)
        && calls.len() as u64 != count
    {
        problems.push(format!("{} task calls, documented {count}", calls.len()));
    }
    problems
}

#[derive(Default)]
struct Tally {
    passed: usize,
    total: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documented_examples_behave_as_documented() {
    let dir = conformance_dir();
    let known: BTreeMap<String, String> = serde_json::from_slice(
        &std::fs::read(dir.join("known-differences.json")).expect("known-differences.json"),
    )
    .expect("known-differences.json is an object of case id -> reason");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "json")
                && p.file_name().is_some_and(|n| n != "known-differences.json")
        })
        .collect();
    files.sort();

    let mut by_source: BTreeMap<String, Tally> = BTreeMap::new();
    let mut unexpected = Vec::new();
    let mut stale = Vec::new();
    let mut seen_ids = Vec::new();
    let (mut passed, mut total) = (0, 0);
    for file in &files {
        let file_name = file.file_name().unwrap().to_string_lossy().into_owned();
        let whole_file_reason = WHOLE_FILE_DIFFERENCES
            .iter()
            .find(|(name, _)| *name == file_name)
            .map(|(_, reason)| *reason);
        let doc: Value = serde_json::from_slice(&std::fs::read(file).unwrap())
            .unwrap_or_else(|e| panic!("{file_name}: {e}"));
        let cases = doc["cases"]
            .as_array()
            .unwrap_or_else(|| panic!("{file_name}: no cases"));
        for case in cases {
            let id = case["id"]
                .as_str()
                .unwrap_or_else(|| panic!("{file_name}: a case without an id"))
                .to_owned();
            assert!(!seen_ids.contains(&id), "case id {id} is used twice");
            seen_ids.push(id.clone());
            let source = case
                .get("source")
                .or_else(|| doc.get("source"))
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("{id}: no source URL"))
                .to_owned();
            assert!(
                case.get("section").and_then(Value::as_str).is_some(),
                "{id}: no section title"
            );
            let result = run_case(case).await;
            let tally = by_source.entry(source).or_default();
            tally.total += 1;
            total += 1;
            let reason = whole_file_reason.or_else(|| known.get(&id).map(String::as_str));
            match (&result, reason) {
                (Ok(()), None) => {
                    tally.passed += 1;
                    passed += 1;
                }
                (Ok(()), Some(reason)) => {
                    tally.passed += 1;
                    passed += 1;
                    // A whole file's reason covers cases that may already pass.
                    if whole_file_reason.is_none() {
                        stale.push(format!("{id} passes but is listed ({reason})"));
                    }
                }
                (Err(why), None) => unexpected.push(format!("{id}: {why}")),
                (Err(why), Some(reason)) => {
                    println!("known difference {id}: {reason}\n    {why}");
                }
            }
        }
    }
    for id in known.keys() {
        if !seen_ids.contains(id) {
            stale.push(format!("{id} is listed but no case has that id"));
        }
    }
    println!("\nDocumentation examples, by source:");
    for (source, tally) in &by_source {
        println!("  {} of {} pass  {source}", tally.passed, tally.total);
    }
    println!("  {passed} of {total} pass in all\n");
    assert!(
        unexpected.is_empty() && stale.is_empty(),
        "unexpected failures:\n  {}\nknown differences to remove from the list:\n  {}",
        unexpected.join("\n  "),
        stale.join("\n  ")
    );
    // The suite is meant to be broad; a file that fails to load would shrink it silently.
    assert!(total >= 100, "only {total} cases were found");
}
