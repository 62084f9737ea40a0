//! Distributed Map states: item readers over a filesystem object store, batching,
//! tolerated failures, result export, Map Runs and their child executions.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use airlock_asl::{
    Definition, EventDetails, Execution, ExecutionStatus, Executor, ExecutorOptions, FsObjectStore,
    HistoryEventType, MapRunStatus, ObjectStore, StartError, TaskFailure, TaskHandler, TaskRequest,
};
use common::{definition, event_types, handler};
use serde_json::{Value, json};

const DISTRIBUTED: &str = "DISTRIBUTED";

/// A one-state machine whose Distributed Map runs `processor` with `fields` added.
fn map_machine(fields: &Value, processor: &Value) -> Value {
    let mut map = json!({
        "Type": "Map",
        "End": true,
        "ItemProcessor": processor,
    });
    map["ItemProcessor"]["ProcessorConfig"] =
        json!({"Mode": DISTRIBUTED, "ExecutionType": "STANDARD"});
    for (key, value) in fields.as_object().expect("fields are an object") {
        map[key] = value.clone();
    }
    json!({"StartAt": "Fan", "States": {"Fan": map}})
}

/// A processor that passes its input through.
fn pass_through() -> Value {
    json!({"StartAt": "Echo", "States": {"Echo": {"Type": "Pass", "End": true}}})
}

/// A processor running the `work` task on its input.
fn work() -> Value {
    json!({"StartAt": "Work", "States": {"Work": {"Type": "Task", "Resource": "work", "End": true}}})
}

/// Fails items whose `fail` field is true; returns the item's `id` doubled otherwise.
fn worker() -> Arc<dyn TaskHandler> {
    handler(|request: TaskRequest| {
        if request.parameters["fail"] == json!(true) {
            return Err(TaskFailure::new(
                "Item.Bad",
                format!("item {} is bad", request.parameters["id"]),
            ));
        }
        Ok(json!(
            request.parameters["id"].as_i64().unwrap_or_default() * 2
        ))
    })
}

fn executor(machine: &Value, store: Option<&Path>) -> Executor {
    let mut executor = Executor::new(
        definition(machine),
        ExecutorOptions {
            delay_scale: 0.0,
            state_machine_name: "orders".into(),
            ..ExecutorOptions::default()
        },
    )
    .with_handler("work", worker());
    if let Some(root) = store {
        executor.set_object_store(Arc::new(FsObjectStore::new(root)));
    }
    executor
}

async fn run(executor: &Executor, input: Value) -> (Execution, airlock_asl::ExecutionHandle) {
    let handle = executor
        .start_execution("parent", input)
        .unwrap_or_else(|e| panic!("{e}"));
    (handle.wait().await, handle)
}

/// A store root with one bucket, `data`, holding `files`.
fn store_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("a temporary directory");
    std::fs::create_dir(root.path().join("data")).expect("the bucket directory");
    for (key, content) in files {
        let path = root.path().join("data").join(key);
        std::fs::create_dir_all(path.parent().expect("keys have a parent")).expect("folders");
        std::fs::write(path, content).expect("an object");
    }
    root
}

fn reader(resource: &str, config: &Value, parameters: &Value) -> Value {
    json!({"Resource": resource, "ReaderConfig": config, "Parameters": parameters})
}

#[tokio::test]
async fn inline_items_run_as_child_executions_of_a_map_run() {
    let machine = map_machine(
        &json!({"ItemsPath": "$.items", "Label": "Fan"}),
        &json!({"StartAt": "Name", "States": {"Name": {"Type": "Pass", "End": true,
            "Parameters": {"value.$": "$", "execution.$": "$$.Execution.Name", "id.$": "$$.Execution.Id"}}}}),
    );
    let (execution, handle) = run(&executor(&machine, None), json!({"items": [1, 2, 3]})).await;
    assert_eq!(
        execution.status,
        ExecutionStatus::Succeeded,
        "{:?}",
        execution.cause
    );
    let output = execution.output.clone().expect("an output");
    let values: Vec<&Value> = output
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["value"])
        .collect();
    assert_eq!(values, [&json!(1), &json!(2), &json!(3)]);

    let types = event_types(&execution);
    let started = types
        .iter()
        .position(|t| *t == HistoryEventType::MapRunStarted)
        .unwrap();
    let succeeded = types
        .iter()
        .position(|t| *t == HistoryEventType::MapRunSucceeded)
        .unwrap();
    assert_eq!(types[started - 1], HistoryEventType::MapStateStarted);
    assert_eq!(types[succeeded + 1], HistoryEventType::MapStateSucceeded);
    assert!(!types.contains(&HistoryEventType::MapIterationStarted));

    let runs = handle.map_runs();
    assert_eq!(runs.len(), 1);
    let map_run = &runs[0];
    assert_eq!(map_run.status(), MapRunStatus::Succeeded);
    assert_eq!(map_run.label(), "Fan");
    assert_eq!(map_run.execution_type(), "STANDARD");
    assert!(
        map_run
            .arn()
            .starts_with("arn:aws:states:local:000000000000:mapRun:orders/Fan:")
    );
    let details = &execution.history[started].details;
    assert_eq!(
        details,
        &EventDetails::MapRunStarted {
            map_run_arn: map_run.arn().to_owned()
        }
    );
    assert_eq!(map_run.item_counts().total, 3);
    assert_eq!(map_run.item_counts().succeeded, 3);

    let children = map_run.executions();
    assert_eq!(children.len(), 3);
    for (child, result) in children.iter().zip(output.as_array().unwrap()) {
        let child = child.describe();
        assert_eq!(child.status, ExecutionStatus::Succeeded);
        assert!(uuid::Uuid::parse_str(&child.name).is_ok(), "{}", child.name);
        assert_eq!(result["execution"], json!(child.name));
        assert_eq!(result["id"], json!(map_run.execution_arn(&child.name)));
        assert_eq!(
            event_types(&child),
            [
                HistoryEventType::ExecutionStarted,
                HistoryEventType::PassStateEntered,
                HistoryEventType::PassStateExited,
                HistoryEventType::ExecutionSucceeded,
            ]
        );
        assert!(map_run.execution(&child.name).is_some());
    }
}

#[tokio::test]
async fn json_objects_are_read_through_the_object_store() {
    let root = store_with(&[("in/items.json", r#"[{"id": 1}, {"id": 2}, {"id": 3}]"#)]);
    let machine = map_machine(
        &json!({
            "ItemReader": reader("arn:aws:states:::s3:getObject",
                &json!({"InputType": "JSON", "MaxItemsPath": "$.max"}),
                &json!({"Bucket": "data", "Key.$": "$.key"})),
            "ItemSelector": {"id.$": "$$.Map.Item.Value.id", "index.$": "$$.Map.Item.Index", "tag.$": "$.tag"}
        }),
        &work(),
    );
    let (execution, _) = run(
        &executor(&machine, Some(root.path())),
        json!({"key": "in/items.json", "max": 2, "tag": "t"}),
    )
    .await;
    assert_eq!(
        execution.status,
        ExecutionStatus::Succeeded,
        "{:?}",
        execution.cause
    );
    assert_eq!(execution.output, Some(json!([2, 4])));
    let started = execution
        .history
        .iter()
        .find(|e| e.event_type == HistoryEventType::MapStateStarted)
        .unwrap();
    // Like the service, the length is 0 when an ItemReader supplies the items.
    assert_eq!(started.details, EventDetails::MapStarted { length: 0 });
}

#[tokio::test]
async fn json_lines_and_csv_objects_become_items() {
    let root = store_with(&[
        ("lines.jsonl", "{\"id\": 1}\n\n{\"id\": 2}\n"),
        ("first.csv", "id|name\n1|\"a|b\"\n2\n3|c|extra\n"),
        ("given.csv", "7,x\n8,y\n"),
    ]);
    let cases = [
        (
            json!({"InputType": "JSONL"}),
            "lines.jsonl",
            json!([{"id": 1}, {"id": 2}]),
        ),
        (
            json!({"InputType": "CSV", "CSVHeaderLocation": "FIRST_ROW", "CSVDelimiter": "PIPE"}),
            "first.csv",
            json!([{"id": "1", "name": "a|b"}, {"id": "2", "name": ""}, {"id": "3", "name": "c"}]),
        ),
        (
            json!({"InputType": "CSV", "CSVHeaderLocation": "GIVEN", "CSVHeaders": ["n", "s"], "MaxItems": 1}),
            "given.csv",
            json!([{"n": "7", "s": "x"}]),
        ),
    ];
    for (config, key, expected) in cases {
        let machine = map_machine(
            &json!({"ItemReader": reader("arn:aws:states:::s3:getObject", &config, &json!({"Bucket": "data", "Key": key}))}),
            &pass_through(),
        );
        let (execution, _) = run(&executor(&machine, Some(root.path())), json!({})).await;
        assert_eq!(
            execution.status,
            ExecutionStatus::Succeeded,
            "{key}: {:?}",
            execution.cause
        );
        assert_eq!(execution.output, Some(expected), "{key}");
    }
}

#[tokio::test]
async fn object_listings_describe_each_object_like_list_objects_v2() {
    let root = store_with(&[
        ("logs/b.txt", "hello"),
        ("logs/a/deep.txt", ""),
        ("other/c.txt", "x"),
    ]);
    let machine = map_machine(
        &json!({"ItemReader": {"Resource": "arn:aws:states:::s3:listObjectsV2",
            "Parameters": {"Bucket": "data", "Prefix": "logs/"}}}),
        &pass_through(),
    );
    let (execution, _) = run(&executor(&machine, Some(root.path())), json!({})).await;
    assert_eq!(
        execution.status,
        ExecutionStatus::Succeeded,
        "{:?}",
        execution.cause
    );
    let items = execution.output.unwrap();
    let items = items.as_array().unwrap();
    let keys: Vec<&str> = items.iter().map(|i| i["Key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["logs/a/deep.txt", "logs/b.txt"]);
    let hello = &items[1];
    assert_eq!(hello["Size"], json!(5));
    // The MD5 of "hello", quoted as S3 quotes ETags.
    assert_eq!(hello["Etag"], json!("\"5d41402abc4b2a76b9719d911017c592\""));
    assert_eq!(hello["StorageClass"], json!("STANDARD"));
    assert!(hello["LastModified"].as_i64().unwrap() > 1_600_000_000);
}

#[tokio::test]
async fn listed_objects_can_be_loaded_and_flattened() {
    let root = store_with(&[("parts/1.json", "[1, 2]"), ("parts/2.json", "[3]")]);
    let machine = map_machine(
        &json!({"ItemReader": reader("arn:aws:states:::s3:listObjectsV2",
            &json!({"InputType": "JSON", "Transformation": "LOAD_AND_FLATTEN"}),
            &json!({"Bucket": "data", "Prefix": "parts/"}))}),
        &pass_through(),
    );
    let (execution, _) = run(&executor(&machine, Some(root.path())), json!({})).await;
    assert_eq!(
        execution.output,
        Some(json!([1, 2, 3])),
        "{:?}",
        execution.cause
    );
}

#[tokio::test]
async fn batches_carry_their_items_and_the_batch_input() {
    let machine = map_machine(
        &json!({"ItemsPath": "$.items",
            "ItemBatcher": {"MaxItemsPerBatch": 2, "BatchInput": {"run.$": "$.run"}}}),
        &pass_through(),
    );
    let (execution, handle) = run(
        &executor(&machine, None),
        json!({"items": [1, 2, 3, 4, 5], "run": "r1"}),
    )
    .await;
    assert_eq!(
        execution.output,
        Some(json!([
            {"Items": [1, 2], "BatchInput": {"run": "r1"}},
            {"Items": [3, 4], "BatchInput": {"run": "r1"}},
            {"Items": [5], "BatchInput": {"run": "r1"}},
        ]))
    );
    let map_run = &handle.map_runs()[0];
    assert_eq!(map_run.executions().len(), 3);
    assert_eq!(map_run.item_counts().total, 5);
    assert_eq!(map_run.item_counts().succeeded, 5);

    // A byte limit: {"Items":[]} is 12 bytes and each item "xxxx" 6, plus a comma.
    let machine = map_machine(
        &json!({"ItemsPath": "$.items", "ItemBatcher": {"MaxInputBytesPerBatch": 25}}),
        &pass_through(),
    );
    let (execution, _) = run(
        &executor(&machine, None),
        json!({"items": ["xxxx", "xxxx", "xxxx"]}),
    )
    .await;
    assert_eq!(
        execution.output,
        Some(json!([{"Items": ["xxxx", "xxxx"]}, {"Items": ["xxxx"]}]))
    );
}

fn items(failing: &[i64], count: i64) -> Value {
    json!({"items": (1..=count).map(|id| json!({"id": id, "fail": failing.contains(&id)})).collect::<Vec<_>>()})
}

#[tokio::test]
async fn failures_within_the_tolerance_leave_the_map_succeeding() {
    let machine = map_machine(
        &json!({"ItemsPath": "$.items", "ToleratedFailureCount": 1}),
        &work(),
    );
    let (execution, handle) = run(&executor(&machine, None), items(&[2], 3)).await;
    assert_eq!(
        execution.status,
        ExecutionStatus::Succeeded,
        "{:?}",
        execution.cause
    );
    let output = execution.output.unwrap();
    assert_eq!(output[0], json!(2));
    assert_eq!(output[2], json!(6));
    // A failed child appears as its full record.
    assert_eq!(output[1]["Status"], json!("FAILED"));
    assert_eq!(output[1]["Error"], json!("Item.Bad"));
    assert_eq!(output[1]["Input"], json!(r#"{"fail":true,"id":2}"#));
    let counts = handle.map_runs()[0].item_counts();
    assert_eq!((counts.succeeded, counts.failed), (2, 1));
}

#[tokio::test]
async fn failures_over_the_tolerance_fail_the_map() {
    for (tolerance, failing) in [
        (json!({}), vec![3]),
        (json!({"ToleratedFailureCount": 1}), vec![2, 4]),
        (json!({"ToleratedFailurePercentage": 20}), vec![1, 5]),
        (
            json!({"ToleratedFailurePercentagePath": "$.pct"}),
            vec![1, 5],
        ),
    ] {
        let mut fields = json!({"ItemsPath": "$.items", "MaxConcurrency": 1});
        for (k, v) in tolerance.as_object().unwrap() {
            fields[k] = v.clone();
        }
        let machine = map_machine(&fields, &work());
        let mut input = items(&failing, 5);
        input["pct"] = json!(20);
        let (execution, handle) = run(&executor(&machine, None), input).await;
        assert_eq!(execution.status, ExecutionStatus::Failed, "{tolerance}");
        assert_eq!(
            execution.error.as_deref(),
            Some("States.ExceedToleratedFailureThreshold"),
            "{tolerance}"
        );
        let types = event_types(&execution);
        let failed = types
            .iter()
            .position(|t| *t == HistoryEventType::MapRunFailed)
            .unwrap();
        assert_eq!(types[failed + 1], HistoryEventType::MapStateFailed);
        let map_run = &handle.map_runs()[0];
        assert_eq!(map_run.status(), MapRunStatus::Failed);
        // With one child at a time, no item starts after the failure that crossed the line.
        let last_failing = u64::try_from(*failing.last().unwrap()).unwrap();
        assert_eq!(
            map_run.item_counts().pending,
            5 - last_failing,
            "{tolerance}"
        );
    }

    // The same percentage tolerates one failure in five.
    let machine = map_machine(
        &json!({"ItemsPath": "$.items", "ToleratedFailurePercentage": 20}),
        &work(),
    );
    let (execution, _) = run(&executor(&machine, None), items(&[3], 5)).await;
    assert_eq!(
        execution.status,
        ExecutionStatus::Succeeded,
        "{:?}",
        execution.cause
    );
}

#[tokio::test]
async fn the_threshold_error_can_be_caught() {
    let mut machine = map_machine(&json!({"ItemsPath": "$.items"}), &work());
    machine["States"]["Fan"]["Catch"] =
        json!([{"ErrorEquals": ["States.ExceedToleratedFailureThreshold"], "Next": "Handled"}]);
    machine["States"]["Fan"]
        .as_object_mut()
        .unwrap()
        .remove("End");
    machine["States"]["Fan"]["Next"] = json!("Handled");
    machine["States"]["Handled"] = json!({"Type": "Pass", "End": true});
    let (execution, _) = run(&executor(&machine, None), items(&[1], 2)).await;
    assert_eq!(execution.status, ExecutionStatus::Succeeded);
    assert_eq!(
        execution.output.unwrap()["Error"],
        json!("States.ExceedToleratedFailureThreshold")
    );
}

#[tokio::test]
async fn max_concurrency_bounds_the_children_running_at_once() {
    struct Gauge {
        active: AtomicUsize,
        peak: AtomicUsize,
    }
    #[async_trait::async_trait]
    impl TaskHandler for Gauge {
        async fn invoke(&self, _: TaskRequest) -> Result<Value, TaskFailure> {
            let now = self.active.fetch_add(1, Ordering::SeqCst) + 1;
            self.peak.fetch_max(now, Ordering::SeqCst);
            for _ in 0..20 {
                tokio::task::yield_now().await;
            }
            self.active.fetch_sub(1, Ordering::SeqCst);
            Ok(Value::Null)
        }
    }
    let gauge = Arc::new(Gauge {
        active: AtomicUsize::new(0),
        peak: AtomicUsize::new(0),
    });
    let machine = map_machine(
        &json!({"ItemsPath": "$.items", "MaxConcurrency": 2}),
        &work(),
    );
    let executor = executor(&machine, None).with_handler("work", gauge.clone());
    let (execution, _) = run(&executor, json!({"items": [1, 2, 3, 4, 5, 6]})).await;
    assert_eq!(execution.status, ExecutionStatus::Succeeded);
    assert_eq!(gauge.peak.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn result_writer_exports_files_and_returns_the_manifest_location() {
    let root = store_with(&[]);
    let machine = map_machine(
        &json!({"ItemsPath": "$.items", "ToleratedFailureCount": 1,
            "ResultWriter": {"Resource": "arn:aws:states:::s3:putObject",
                "Parameters": {"Bucket": "data", "Prefix": "results"}}}),
        &work(),
    );
    let (execution, handle) = run(&executor(&machine, Some(root.path())), items(&[2], 3)).await;
    assert_eq!(
        execution.status,
        ExecutionStatus::Succeeded,
        "{:?}",
        execution.cause
    );
    let map_run = &handle.map_runs()[0];
    let folder = format!("results/{}/", map_run.id());
    let output = execution.output.unwrap();
    assert_eq!(
        output,
        json!({"MapRunArn": map_run.arn(),
            "ResultWriterDetails": {"Bucket": "data", "Key": format!("{folder}manifest.json")}})
    );
    let read = |key: &str| -> Value {
        serde_json::from_slice(&std::fs::read(root.path().join("data").join(key)).unwrap()).unwrap()
    };
    let manifest = read(&format!("{folder}manifest.json"));
    assert_eq!(manifest["DestinationBucket"], json!("data"));
    assert_eq!(manifest["MapRunArn"], json!(map_run.arn()));
    assert_eq!(manifest["ResultFiles"]["PENDING"], json!([]));
    let succeeded_key = format!("{folder}SUCCEEDED_0.json");
    let size = std::fs::metadata(root.path().join("data").join(&succeeded_key))
        .unwrap()
        .len();
    assert_eq!(
        manifest["ResultFiles"]["SUCCEEDED"],
        json!([{"Key": succeeded_key, "Size": size}])
    );

    let succeeded = read(&succeeded_key);
    let succeeded = succeeded.as_array().unwrap();
    assert_eq!(succeeded.len(), 2);
    let first = &succeeded[0];
    let child = &map_run.executions()[0];
    assert_eq!(
        first["ExecutionArn"],
        json!(map_run.execution_arn(child.name()))
    );
    assert_eq!(first["Name"], json!(child.name()));
    assert_eq!(first["Status"], json!("SUCCEEDED"));
    assert_eq!(first["Input"], json!(r#"{"fail":false,"id":1}"#));
    assert_eq!(first["Output"], json!("2"));
    assert_eq!(first["StateMachineArn"], json!(map_run.state_machine_arn()));
    let failed = read(&format!("{folder}FAILED_0.json"));
    assert_eq!(failed[0]["Status"], json!("FAILED"));
    assert_eq!(failed[0]["Error"], json!("Item.Bad"));
    assert_eq!(failed[0]["Cause"], json!("item 2 is bad"));
    assert_eq!(map_run.item_counts().results_written, 3);
}

#[tokio::test]
async fn a_failed_map_run_still_exports_pending_items() {
    let root = store_with(&[]);
    let machine = map_machine(
        &json!({"ItemsPath": "$.items", "MaxConcurrency": 1,
            "ResultWriter": {"Resource": "arn:aws:states:::s3:putObject",
                "Parameters": {"Bucket": "data", "Prefix": ""},
                "WriterConfig": {"Transformation": "COMPACT", "OutputType": "JSONL"}}}),
        &work(),
    );
    let (execution, handle) = run(&executor(&machine, Some(root.path())), items(&[2], 4)).await;
    assert_eq!(
        execution.error.as_deref(),
        Some("States.ExceedToleratedFailureThreshold")
    );
    let folder = root.path().join("data").join(handle.map_runs()[0].id());
    assert_eq!(
        std::fs::read_to_string(folder.join("SUCCEEDED_0.json")).unwrap(),
        "2\n"
    );
    let pending = std::fs::read_to_string(folder.join("PENDING_0.json")).unwrap();
    assert_eq!(pending.lines().count(), 2);
    assert!(pending.contains("\"Status\":\"PENDING\""), "{pending}");
    assert!(folder.join("FAILED_0.json").is_file());
    assert!(folder.join("manifest.json").is_file());
}

#[tokio::test]
async fn writer_config_alone_shapes_the_state_output() {
    let machine = map_machine(
        &json!({"ItemsPath": "$.items", "ResultWriter": {"WriterConfig": {"Transformation": "FLATTEN"}}}),
        &pass_through(),
    );
    let (execution, _) = run(
        &executor(&machine, None),
        json!({"items": [[1, 2], 3, [4]]}),
    )
    .await;
    assert_eq!(execution.output, Some(json!([1, 2, 3, 4])));
}

#[tokio::test]
async fn jsonata_maps_read_and_batch_with_expressions() {
    let root = store_with(&[("n.json", "[1, 2, 3]")]);
    let machine = json!({"QueryLanguage": "JSONata", "StartAt": "Fan", "States": {"Fan": {
        "Type": "Map", "End": true,
        "ItemReader": {"Resource": "arn:aws:states:::s3:getObject",
            "ReaderConfig": {"InputType": "JSON", "MaxItems": "{% $states.input.max %}"},
            "Arguments": {"Bucket": "data", "Key": "{% $states.input.key %}"}},
        "ItemSelector": "{% $states.context.Map.Item.Value * 10 %}",
        "ItemBatcher": {"MaxItemsPerBatch": 2, "BatchInput": {"key": "{% $states.input.key %}"}},
        "ToleratedFailurePercentage": "{% 0 %}",
        "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"},
            "StartAt": "Sum", "States": {"Sum": {"Type": "Pass", "End": true,
                "Output": "{% $sum($states.input.Items) & '@' & $states.input.BatchInput.key %}"}}}
    }}});
    let (execution, handle) = run(
        &executor(&machine, Some(root.path())),
        json!({"key": "n.json", "max": 3}),
    )
    .await;
    assert_eq!(
        execution.status,
        ExecutionStatus::Succeeded,
        "{:?}",
        execution.cause
    );
    assert_eq!(execution.output, Some(json!(["30@n.json", "30@n.json"])));
    assert_eq!(handle.map_runs()[0].execution_type(), "EXPRESS");
}

#[tokio::test]
async fn reader_failures_are_item_reader_failed() {
    let root = store_with(&[
        ("object.json", r#"{"not": "an array"}"#),
        ("dup.csv", "a,a\n1,2\n"),
    ]);
    let cases = [
        (json!({"InputType": "JSON"}), "object.json", "non-iterable"),
        (
            json!({"InputType": "JSON"}),
            "missing.json",
            "does not exist",
        ),
        (
            json!({"InputType": "CSV", "CSVHeaderLocation": "FIRST_ROW"}),
            "dup.csv",
            "duplicates",
        ),
        // The filesystem store keeps keys inside their bucket.
        (
            json!({"InputType": "JSON"}),
            "../escape.json",
            "invalid key",
        ),
        (json!({"InputType": "JSON"}), "/etc/passwd", "invalid key"),
    ];
    std::fs::write(root.path().join("escape.json"), "[1]").unwrap();
    for (config, key, fragment) in cases {
        let machine = map_machine(
            &json!({"ItemReader": reader("arn:aws:states:::s3:getObject", &config, &json!({"Bucket": "data", "Key": key}))}),
            &pass_through(),
        );
        let (execution, _) = run(&executor(&machine, Some(root.path())), json!({})).await;
        assert_eq!(
            execution.error.as_deref(),
            Some("States.ItemReaderFailed"),
            "{key}"
        );
        let cause = execution.cause.clone().unwrap_or_default();
        assert!(cause.contains(fragment), "{key}: {cause}");
        assert!(event_types(&execution).contains(&HistoryEventType::MapRunFailed));
    }
}

#[tokio::test]
async fn the_filesystem_store_stays_inside_its_root() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), "s").unwrap();
    let root = store_with(&[("ok.txt", "fine")]);
    std::os::unix::fs::symlink(outside.path(), root.path().join("data").join("link")).unwrap();
    std::os::unix::fs::symlink(outside.path(), root.path().join("linked-bucket")).unwrap();
    let store = FsObjectStore::new(root.path());
    assert_eq!(store.get_object("data", "ok.txt").await.unwrap(), b"fine");
    for (bucket, key) in [
        ("data", "../data/ok.txt"),
        ("data", "a/../../x"),
        ("data", "/etc/passwd"),
        ("data", "./ok.txt"),
        ("data", "a//b"),
        ("data", "link/secret"),
        ("..", "x"),
        ("a/b", "x"),
        ("linked-bucket", "secret"),
    ] {
        assert!(
            store.get_object(bucket, key).await.is_err(),
            "{bucket}/{key}"
        );
        assert!(
            store.put_object(bucket, key, b"x".to_vec()).await.is_err(),
            "{bucket}/{key}"
        );
    }
    assert!(store.list_objects("linked-bucket", "").await.is_err());
    // Listings do not follow links out of the bucket.
    let keys: Vec<String> = store
        .list_objects("data", "")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(keys, ["ok.txt"]);
    assert_eq!(
        std::fs::read_to_string(outside.path().join("secret")).unwrap(),
        "s"
    );
    store
        .put_object("data", "new/deep/file.json", b"[]".to_vec())
        .await
        .unwrap();
    assert_eq!(
        store
            .get_object("data", "new/deep/file.json")
            .await
            .unwrap(),
        b"[]"
    );
}

#[tokio::test]
async fn a_map_reading_objects_needs_an_object_store() {
    let machine = map_machine(
        &json!({"ItemReader": {"Resource": "arn:aws:states:::s3:listObjectsV2", "Parameters": {"Bucket": "data"}}}),
        &pass_through(),
    );
    let err = executor(&machine, None)
        .start_execution("x", json!({}))
        .unwrap_err();
    let StartError::MissingHandler(missing) = err else {
        panic!("{err}");
    };
    assert_eq!(missing.state, "Fan");
    assert_eq!(missing.resource, "arn:aws:states:::s3:listObjectsV2");
}

fn refused(machine: &Value) -> airlock_asl::DefinitionError {
    Definition::from_value(machine).expect_err("the definition should be refused")
}

#[test]
fn malformed_distributed_maps_are_refused_naming_the_field() {
    let get = |config: Value| {
        json!({"ItemReader": {"Resource": "arn:aws:states:::s3:getObject", "ReaderConfig": config,
            "Parameters": {"Bucket": "b", "Key": "k"}}})
    };
    let cases = [
        (json!({"Label": "has space"}), "Label", "character"),
        (json!({"Label": "x".repeat(41)}), "Label", "40"),
        (
            get(json!({})),
            "ItemReader.ReaderConfig.InputType",
            "required",
        ),
        (
            get(json!({"InputType": "PARQUET"})),
            "ItemReader.ReaderConfig.InputType",
            "not supported",
        ),
        (
            get(json!({"InputType": "CSV"})),
            "ItemReader.ReaderConfig.CSVHeaderLocation",
            "required",
        ),
        (
            get(json!({"InputType": "CSV", "CSVHeaderLocation": "GIVEN"})),
            "ItemReader.ReaderConfig.CSVHeaders",
            "required",
        ),
        (
            get(
                json!({"InputType": "CSV", "CSVHeaderLocation": "FIRST_ROW", "CSVDelimiter": "COLON"}),
            ),
            "ItemReader.ReaderConfig.CSVDelimiter",
            "must be one of",
        ),
        (
            get(json!({"InputType": "JSON", "MaxItems": -1})),
            "ItemReader.ReaderConfig.MaxItems",
            "non-negative",
        ),
        (
            json!({"ItemReader": {"Resource": "arn:aws:states:::s3:getObject", "ReaderConfig": {"InputType": "JSON"}}}),
            "ItemReader.Parameters",
            "required",
        ),
        (
            json!({"ItemReader": {"Resource": "arn:aws:states:::s3:deleteObject", "Parameters": {}}}),
            "ItemReader.Resource",
            "not an item reader",
        ),
        (
            {
                let mut m = get(json!({"InputType": "JSON"}));
                m["ItemsPath"] = json!("$.x");
                m
            },
            "ItemsPath",
            "cannot be combined",
        ),
        (
            json!({"ItemBatcher": {"BatchInput": {}}}),
            "ItemBatcher.MaxItemsPerBatch",
            "needs",
        ),
        (
            json!({"ItemBatcher": {"MaxInputBytesPerBatch": 300_000}}),
            "ItemBatcher.MaxInputBytesPerBatch",
            "256 KiB",
        ),
    ];
    assert_each_refused(&cases);
}

#[test]
fn malformed_writers_and_tolerances_are_refused_naming_the_field() {
    let cases = [
        (
            json!({"ResultWriter": {}}),
            "ResultWriter",
            "must not be empty",
        ),
        (
            json!({"ResultWriter": {"Resource": "arn:aws:states:::s3:getObject", "Parameters": {"Bucket": "b"}}}),
            "ResultWriter.Resource",
            "not a result writer",
        ),
        (
            json!({"ResultWriter": {"Resource": "arn:aws:states:::s3:putObject"}}),
            "ResultWriter.Parameters",
            "required",
        ),
        (
            json!({"ResultWriter": {"WriterConfig": {"Transformation": "SQUASH"}}}),
            "ResultWriter.WriterConfig.Transformation",
            "must be one of",
        ),
        (
            json!({"ToleratedFailurePercentage": 101}),
            "ToleratedFailurePercentage",
            "0 to 100",
        ),
        (
            json!({"ToleratedFailureCount": 1.5}),
            "ToleratedFailureCount",
            "non-negative integer",
        ),
    ];
    assert_each_refused(&cases);
}

/// Each Map state with `fields` is refused, naming the state, `field` and `fragment`.
fn assert_each_refused(cases: &[(Value, &str, &str)]) {
    for (fields, field, fragment) in cases {
        let err = refused(&map_machine(fields, &pass_through()));
        assert_eq!(err.state(), Some("Fan"), "{fields}: {err}");
        assert_eq!(err.field(), Some(*field), "{fields}: {err}");
        assert!(err.to_string().contains(fragment), "{fields}: {err}");
    }
}

#[test]
fn processor_config_labels_and_express_children_are_checked_at_load() {
    let mut no_type = map_machine(&json!({}), &pass_through());
    no_type["States"]["Fan"]["ItemProcessor"]["ProcessorConfig"] = json!({"Mode": "DISTRIBUTED"});
    assert_eq!(
        refused(&no_type).field(),
        Some("ItemProcessor.ProcessorConfig.ExecutionType")
    );

    let mut inline = map_machine(&json!({"ToleratedFailureCount": 1}), &pass_through());
    inline["States"]["Fan"]["ItemProcessor"]
        .as_object_mut()
        .unwrap()
        .remove("ProcessorConfig");
    let err = refused(&inline);
    assert_eq!(err.field(), Some("ToleratedFailureCount"));
    assert!(err.to_string().contains("Distributed Map field"), "{err}");

    let twice = json!({"StartAt": "A", "States": {
        "A": map_machine(&json!({"Label": "Same", "Next": "B"}), &pass_through())["States"]["Fan"].clone(),
        "B": map_machine(&json!({"Label": "Same"}), &pass_through())["States"]["Fan"].clone(),
    }});
    let mut twice = twice;
    twice["States"]["A"].as_object_mut().unwrap().remove("End");
    let err = refused(&twice);
    assert_eq!(err.field(), Some("Label"));
    assert!(err.to_string().contains("unique"), "{err}");

    let mut express = map_machine(
        &json!({}),
        &json!({"StartAt": "Wait", "States": {"Wait": {
        "Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken", "End": true}}}),
    );
    express["States"]["Fan"]["ItemProcessor"]["ProcessorConfig"]["ExecutionType"] =
        json!("EXPRESS");
    let err = refused(&express);
    assert_eq!(err.state(), Some("Fan > ItemProcessor > Wait"));
    assert!(err.to_string().contains("EXPRESS"), "{err}");
}

#[tokio::test]
async fn stopping_the_parent_aborts_its_child_executions() {
    let machine = map_machine(
        &json!({"ItemsPath": "$.items"}),
        &json!({"StartAt": "Wait", "States": {"Wait": {"Type": "Task",
            "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
            "Parameters": {"token.$": "$$.Task.Token"}, "End": true}}}),
    );
    let (queue, mut requests) = common::queue();
    let executor = executor(&machine, None).with_handler("arn:aws:states:::sqs:sendMessage", queue);
    let handle = executor
        .start_execution("parent", json!({"items": [1, 2]}))
        .unwrap();
    // Both children are waiting for their tokens once both requests arrived.
    requests.recv().await.unwrap();
    requests.recv().await.unwrap();
    assert!(handle.stop(Some("Stopped"), None));
    assert_eq!(handle.wait().await.status, ExecutionStatus::Aborted);
    let map_run = &handle.map_runs()[0];
    assert_eq!(map_run.status(), MapRunStatus::Aborted);
    for child in map_run.executions() {
        assert_eq!(child.wait().await.status, ExecutionStatus::Aborted);
    }
}
