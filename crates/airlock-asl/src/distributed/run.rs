//! Running a Map Run: reading and batching the items, running one child execution per
//! item or batch within `MaxConcurrency`, applying the tolerated failure threshold and
//! exporting the results.

use std::sync::Arc;

use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use super::config::{
    Arguments, Distributed, ItemBatcher, ItemReader, OutputType, Percentage, ReaderSource,
    Transformation,
};
use super::{MapRun, MapRunStatus, reader};
use crate::definition::{Amount, MapState, StateMachine};
use crate::engine::{
    Extra, FailIfUnfinished, MAX_PAYLOAD_BYTES, Run, Visit, json_size, map_items, resolve_amount,
    run_machine, runtime_error, select_items, states, timestamp,
};
use crate::error::{StateError, names};
use crate::executor::{ExecutionHandle, ExecutionShared, ExecutorOptions, lock};
use crate::history::{EventDetails, ExecutionStatus, HistoryEventType, JsonText};
use crate::path::Scope;
use crate::variables::Variables;

/// Step Functions runs at most this many child executions of a Map Run at once.
const MAX_CHILD_CONCURRENCY: usize = 10_000;
const THRESHOLD_EXCEEDED: &str = "The specified tolerated failure threshold was exceeded";

/// Runs one attempt of a Distributed Map state and returns its result.
pub(crate) async fn run_map_run(
    run: &Arc<Run>,
    visit: &Visit<'_>,
    map: &MapState,
    config: &Distributed,
    effective: &Value,
    cursor: &mut u64,
) -> Result<Value, StateError> {
    let state = visit.state;
    let inline_items = match config.reader {
        None => Some(map_items(run, visit, map, effective)?),
        Some(_) => None,
    };
    let max_concurrency = resolve_amount(
        run,
        visit,
        &map.max_concurrency,
        "MaxConcurrency",
        effective,
    )?;
    run.emit(cursor, HistoryEventType::MapStateStarted, || {
        EventDetails::MapStarted {
            // The service reports 0 when the items come from an ItemReader.
            length: inline_items.as_ref().map_or(0, Vec::len),
        }
    });
    let tolerance = Tolerance::resolve(run, visit, config, effective)?;
    let label = config.label.as_deref().unwrap_or(&state.name);
    let map_run = MapRun::new(
        &run.options.state_machine_name,
        &state.name,
        label,
        config.execution_type,
    );
    lock(&run.execution.map_runs).push(map_run.clone());
    run.emit(cursor, HistoryEventType::MapRunStarted, || {
        EventDetails::MapRunStarted {
            map_run_arn: map_run.arn().to_owned(),
        }
    });
    let guard = StopOnDrop(map_run.clone());
    let limit = match usize::try_from(max_concurrency) {
        Ok(0) | Err(_) => MAX_CHILD_CONCURRENCY,
        Ok(n) => n.min(MAX_CHILD_CONCURRENCY),
    };
    let body = MapRunBody {
        run,
        visit,
        map,
        config,
        effective,
        map_run: &map_run,
        tolerance,
        limit,
    };
    let outcome = body.run(inline_items).await;
    map_run.finish(if outcome.is_ok() {
        MapRunStatus::Succeeded
    } else {
        MapRunStatus::Failed
    });
    drop(guard);
    match &outcome {
        Ok(_) => {
            run.emit(cursor, HistoryEventType::MapRunSucceeded, || {
                EventDetails::None
            });
            run.emit(cursor, HistoryEventType::MapStateSucceeded, || {
                EventDetails::None
            });
        }
        Err(error) => {
            run.emit(cursor, HistoryEventType::MapRunFailed, || {
                EventDetails::ExecutionError {
                    error: Some(error.error.clone()),
                    cause: Some(error.cause.clone()),
                }
            });
        }
    }
    outcome
}

/// Stops the child executions when the Map Run ends early: the parent execution was
/// stopped or timed out while the Map Run ran, so its future was dropped.
struct StopOnDrop(MapRun);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if self.0.status() == MapRunStatus::Running {
            self.0.finish(MapRunStatus::Aborted);
            self.0
                .stop_executions("The parent execution of this Map Run stopped");
        }
    }
}

/// `ToleratedFailureCount` / `ToleratedFailurePercentage`, resolved.
#[derive(Debug, Clone, Copy)]
struct Tolerance {
    count: Option<u64>,
    percentage: Option<f64>,
}

impl Tolerance {
    fn resolve(
        run: &Run,
        visit: &Visit<'_>,
        config: &Distributed,
        effective: &Value,
    ) -> Result<Self, StateError> {
        let count = match &config.tolerated_count {
            Some(amount) => Some(resolve_amount(
                run,
                visit,
                amount,
                "ToleratedFailureCount",
                effective,
            )?),
            None => None,
        };
        let percentage = match &config.tolerated_percentage {
            None => None,
            Some(Percentage::Fixed(p)) => Some(*p),
            Some(Percentage::Path(path)) => {
                let value = path
                    .select_in(&Scope::new(effective, &Value::Null, visit.variables))?
                    .ok_or_else(|| {
                        runtime_error(format!(
                            "Invalid path '{path}' : The field 'ToleratedFailurePercentage' could not be found in the input '{effective}'"
                        ))
                    })?;
                Some(percentage(&value).ok_or_else(|| {
                    runtime_error(format!(
                        "The value of 'ToleratedFailurePercentage' ({path}) must be a number from 0 to 100, not {value}"
                    ))
                })?)
            }
            Some(Percentage::Expr(template)) => {
                let context = run.context(visit, None, None);
                let value = template.evaluate(
                    &states(effective, &context, Extra::Nothing),
                    visit.variables,
                )?;
                Some(percentage(&value).ok_or_else(|| {
                    StateError::new(
                        names::QUERY_EVALUATION_ERROR,
                        format!(
                            "The value of 'ToleratedFailurePercentage' must be a number from 0 to 100, not {value}"
                        ),
                    )
                })?)
            }
        };
        Ok(Self { count, percentage })
    }

    /// Whether `failed` of `total` items is over the threshold (with neither field,
    /// no failure is tolerated).
    fn exceeded(self, failed: u64, total: u64) -> bool {
        match (self.count, self.percentage) {
            (None, None) => failed > 0,
            (count, percentage) => {
                #[allow(clippy::cast_precision_loss)]
                let over_percentage =
                    percentage.is_some_and(|p| failed as f64 * 100.0 > p * total as f64);
                count.is_some_and(|c| failed > c) || over_percentage
            }
        }
    }
}

fn percentage(value: &Value) -> Option<f64> {
    value.as_f64().filter(|p| (0.0..=100.0).contains(p))
}

/// One child execution's slot: its input until it starts, then the execution.
enum Child {
    Pending(Value),
    Started(Arc<ExecutionShared>),
}

/// Where `ResultWriter` exports to.
struct Destination {
    bucket: String,
    /// The prefix with a trailing `/` (empty for the bucket's top).
    prefix: String,
}

struct MapRunBody<'a, 'v> {
    run: &'a Arc<Run>,
    visit: &'a Visit<'v>,
    map: &'a MapState,
    config: &'a Distributed,
    effective: &'a Value,
    map_run: &'a MapRun,
    tolerance: Tolerance,
    limit: usize,
}

impl MapRunBody<'_, '_> {
    async fn run(&self, inline_items: Option<Vec<Value>>) -> Result<Value, StateError> {
        let items = match (&self.config.reader, inline_items) {
            (Some(reader), _) => self.read_items(reader).await?,
            (None, Some(items)) => items,
            (None, None) => Vec::new(),
        };
        let inputs = select_items(self.run, self.visit, self.map, self.effective, items)?;
        let total = inputs.len() as u64;
        self.map_run.update(|c| c.total = total);
        let (children, sizes) = if let Some(batcher) = &self.config.batcher {
            self.batch(batcher, inputs)?
        } else {
            let sizes = vec![1; inputs.len()];
            (inputs, sizes)
        };
        let destination = match self.config.writer.as_ref().and_then(|w| w.target.as_ref()) {
            Some(target) => Some(self.destination(target)?),
            None => None,
        };
        let (children, exceeded) = self.run_children(children, &sizes, total).await;
        if let Some(destination) = &destination {
            let output = self.export(destination, &children, &sizes).await?;
            if !exceeded {
                return Ok(output);
            }
        }
        if exceeded {
            return Err(StateError::new(
                names::EXCEED_TOLERATED_FAILURE_THRESHOLD,
                THRESHOLD_EXCEEDED,
            ));
        }
        let transformation = self
            .config
            .writer
            .as_ref()
            .map_or(Transformation::Compact, |w| w.transformation);
        let mut results = Vec::with_capacity(children.len());
        for child in &children {
            if let Child::Started(execution) = child {
                self.push_result(&mut results, execution, transformation);
            }
        }
        Ok(Value::Array(results))
    }

    /// Evaluates `Parameters` (JSONPath) or `Arguments` (JSONata) against the state input.
    fn arguments(&self, arguments: &Arguments) -> Result<Value, StateError> {
        let context = self.run.context(self.visit, None, None);
        match arguments {
            Arguments::JsonPath(template) => {
                template.render(&Scope::new(self.effective, &context, self.visit.variables))
            }
            Arguments::Jsonata(template) => template.evaluate(
                &states(self.effective, &context, Extra::Nothing),
                self.visit.variables,
            ),
        }
    }

    async fn read_items(&self, reader: &ItemReader) -> Result<Vec<Value>, StateError> {
        let failed = |cause: String| StateError::new(names::ITEM_READER_FAILED, cause);
        let arguments = self.arguments(&reader.arguments)?;
        let limit = match &reader.max_items {
            None => usize::MAX,
            Some(amount) => {
                match resolve_amount(self.run, self.visit, amount, "MaxItems", self.effective)? {
                    0 => usize::MAX,
                    n => usize::try_from(n).unwrap_or(usize::MAX),
                }
            }
        };
        let store = self.run.object_store.as_ref().ok_or_else(|| {
            failed("no object store is set on the executor to read items from".into())
        })?;
        let bucket = string_argument(&arguments, "Bucket", true)
            .map_err(failed)?
            .unwrap_or_default();
        match reader.source {
            ReaderSource::GetObject => {
                let key = string_argument(&arguments, "Key", true)
                    .map_err(failed)?
                    .unwrap_or_default();
                let content = store
                    .get_object(bucket, key)
                    .await
                    .map_err(|e| failed(format!("s3:getObject s3://{bucket}/{key}: {e}")))?;
                let format = reader.format.as_ref().expect("getObject has an InputType");
                reader::decode(&content, format, limit, &format!("s3://{bucket}/{key}"))
                    .map_err(failed)
            }
            ReaderSource::ListObjects { load_and_flatten } => {
                let prefix = string_argument(&arguments, "Prefix", false)
                    .map_err(failed)?
                    .unwrap_or_default();
                let objects = store
                    .list_objects(bucket, prefix)
                    .await
                    .map_err(|e| failed(format!("s3:listObjectsV2 s3://{bucket}/{prefix}: {e}")))?;
                if !load_and_flatten {
                    return Ok(objects
                        .into_iter()
                        .take(limit)
                        .map(|o| {
                            json!({
                                "Etag": o.etag,
                                "Key": o.key,
                                "LastModified": o.last_modified.timestamp(),
                                "Size": o.size,
                                "StorageClass": "STANDARD",
                            })
                        })
                        .collect());
                }
                let format = reader
                    .format
                    .as_ref()
                    .expect("LOAD_AND_FLATTEN has an InputType");
                let mut items = Vec::new();
                for object in objects {
                    if items.len() >= limit {
                        break;
                    }
                    let content = store.get_object(bucket, &object.key).await.map_err(|e| {
                        failed(format!("s3:getObject s3://{bucket}/{}: {e}", object.key))
                    })?;
                    let source = format!("s3://{bucket}/{}", object.key);
                    items.extend(
                        reader::decode(&content, format, limit - items.len(), &source)
                            .map_err(failed)?,
                    );
                }
                Ok(items)
            }
        }
    }

    /// Groups the inputs into `{"Items": [...], "BatchInput": ...}` child inputs; also
    /// returns how many items each batch holds.
    fn batch(
        &self,
        batcher: &ItemBatcher,
        inputs: Vec<Value>,
    ) -> Result<(Vec<Value>, Vec<usize>), StateError> {
        let resolve = |amount: &Option<Amount>, field| -> Result<Option<usize>, StateError> {
            match amount {
                None => Ok(None),
                Some(amount) => {
                    let n = resolve_amount(self.run, self.visit, amount, field, self.effective)?;
                    if n == 0 {
                        return Err(runtime_error(format!(
                            "The value of '{field}' must be a positive integer, not 0"
                        )));
                    }
                    Ok(Some(usize::try_from(n).unwrap_or(usize::MAX)))
                }
            }
        };
        let max_items = resolve(&batcher.max_items, "MaxItemsPerBatch")?.unwrap_or(usize::MAX);
        let max_bytes = resolve(&batcher.max_bytes, "MaxInputBytesPerBatch")?
            .map_or(MAX_PAYLOAD_BYTES, |n| n.min(MAX_PAYLOAD_BYTES));
        let batch_input = match &batcher.batch_input {
            Some(arguments) => Some(self.arguments(arguments)?),
            None => None,
        };
        let wrap = |items: Vec<Value>| {
            let mut input = Map::new();
            input.insert("Items".into(), Value::Array(items));
            if let Some(batch_input) = &batch_input {
                input.insert("BatchInput".into(), batch_input.clone());
            }
            Value::Object(input)
        };
        // The size of a batch's input: the wrapper, the items and the commas between them.
        let empty_size = json_size(&wrap(Vec::new()));
        let mut grouped = Vec::new();
        let mut sizes = Vec::new();
        let mut current = Vec::new();
        let mut current_bytes = empty_size;
        for (index, item) in inputs.into_iter().enumerate() {
            let item_bytes = json_size(&item);
            if empty_size + item_bytes > max_bytes {
                return Err(StateError::new(
                    names::DATA_LIMIT_EXCEEDED,
                    format!(
                        "Item {index} takes {item_bytes} bytes, too many for a batch of at most {max_bytes} bytes (MaxInputBytesPerBatch)"
                    ),
                ));
            }
            let separator = usize::from(!current.is_empty());
            if !current.is_empty()
                && (current.len() >= max_items
                    || current_bytes + separator + item_bytes > max_bytes)
            {
                sizes.push(current.len());
                grouped.push(wrap(std::mem::take(&mut current)));
                current_bytes = empty_size;
            }
            current_bytes += usize::from(!current.is_empty()) + item_bytes;
            current.push(item);
        }
        if !current.is_empty() {
            sizes.push(current.len());
            grouped.push(wrap(current));
        }
        Ok((grouped, sizes))
    }

    fn destination(&self, target: &Arguments) -> Result<Destination, StateError> {
        let failed = |cause: String| StateError::new(names::RESULT_WRITER_FAILED, cause);
        let arguments = self.arguments(target)?;
        let bucket = string_argument(&arguments, "Bucket", true)
            .map_err(failed)?
            .unwrap_or_default()
            .to_owned();
        let mut prefix = string_argument(&arguments, "Prefix", false)
            .map_err(failed)?
            .unwrap_or_default()
            .to_owned();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        Ok(Destination { bucket, prefix })
    }

    /// Runs the child executions in order, at most `limit` at a time, until all have run
    /// or the failures exceed the threshold; then no further child starts and those
    /// running are stopped. Returns the children and whether the threshold was exceeded.
    async fn run_children(
        &self,
        inputs: Vec<Value>,
        sizes: &[usize],
        total: u64,
    ) -> (Vec<Child>, bool) {
        let mut children: Vec<Child> = inputs.into_iter().map(Child::Pending).collect();
        let options = Arc::new(ExecutorOptions {
            state_machine_name: format!(
                "{}/{}",
                self.run.options.state_machine_name,
                self.map_run.label()
            ),
            ..(*self.run.options).clone()
        });
        let (sender, mut finished) = mpsc::unbounded_channel::<(usize, bool)>();
        let mut next = 0;
        let mut running = 0;
        let mut failed_items = 0;
        let mut exceeded = false;
        loop {
            while !exceeded && running < self.limit && next < children.len() {
                let Child::Pending(input) =
                    std::mem::replace(&mut children[next], Child::Pending(Value::Null))
                else {
                    unreachable!("children start once, in order");
                };
                let execution = self.start_child(next, input, &options, &sender);
                children[next] = Child::Started(execution);
                next += 1;
                running += 1;
            }
            if running == 0 {
                break;
            }
            let Some((index, succeeded)) = finished.recv().await else {
                break;
            };
            running -= 1;
            let items = sizes[index] as u64;
            if succeeded {
                self.map_run.update(|c| c.succeeded += items);
            } else {
                failed_items += items;
                self.map_run.update(|c| c.failed += items);
                if !exceeded && self.tolerance.exceeded(failed_items, total) {
                    exceeded = true;
                    self.map_run.stop_executions(
                        "The Map Run failed: its tolerated failure threshold was exceeded",
                    );
                }
            }
        }
        let pending: u64 = sizes[next..].iter().map(|s| *s as u64).sum();
        self.map_run.update(|c| c.pending = pending);
        (children, exceeded)
    }

    fn start_child(
        &self,
        index: usize,
        input: Value,
        options: &Arc<ExecutorOptions>,
        finished: &mpsc::UnboundedSender<(usize, bool)>,
    ) -> Arc<ExecutionShared> {
        let execution = Arc::new(ExecutionShared::new(
            uuid::Uuid::new_v4().to_string(),
            input,
            options.keep_history,
        ));
        self.map_run
            .add_execution(ExecutionHandle::new(Arc::clone(&execution)));
        let child = Arc::new(Run {
            definition: Arc::clone(&self.run.definition),
            handlers: Arc::clone(&self.run.handlers),
            options: Arc::clone(options),
            registry: Arc::clone(&self.run.registry),
            object_store: self.run.object_store.clone(),
            execution: Arc::clone(&execution),
        });
        let processor = Arc::clone(&self.map.processor);
        let finished = finished.clone();
        // Detached: a child is an execution of its own, which a stopped parent stops
        // through `StopOnDrop` rather than by dropping it mid-state.
        tokio::spawn(async move {
            let succeeded = run_child(child, processor).await;
            let _ = finished.send((index, succeeded));
        });
        execution
    }

    /// A child execution's entry in the output or an exported file.
    fn push_result(
        &self,
        results: &mut Vec<Value>,
        execution: &ExecutionShared,
        transformation: Transformation,
    ) {
        let summary = execution.summary();
        // A failed child's result is always its full record.
        match (summary.output, transformation) {
            (Some(Value::Array(items)), Transformation::Flatten) => results.extend(items),
            (Some(output), Transformation::Compact | Transformation::Flatten) => {
                results.push(output);
            }
            _ => results.push(self.record(execution)),
        }
    }

    /// A child execution as `ResultWriter` records it (the `NONE` transformation).
    fn record(&self, execution: &ExecutionShared) -> Value {
        let summary = execution.summary();
        let mut record = json!({
            "ExecutionArn": self.map_run.execution_arn(&summary.name),
            "Input": execution.input.to_string(),
            "InputDetails": {"Included": true},
            "Name": summary.name,
            "RedriveCount": 0,
            "StartDate": timestamp(summary.started_at),
            "StateMachineArn": self.map_run.state_machine_arn(),
            "Status": summary.status,
        });
        if let Some(stopped_at) = summary.stopped_at {
            record["StopDate"] = json!(timestamp(stopped_at));
        }
        if let Some(output) = summary.output {
            record["Output"] = json!(output.to_string());
            record["OutputDetails"] = json!({"Included": true});
        } else {
            if let Some(error) = summary.error {
                record["Error"] = json!(error);
            }
            if let Some(cause) = summary.cause {
                record["Cause"] = json!(cause);
            }
        }
        record
    }

    /// Writes `SUCCEEDED_0.json`, `FAILED_0.json` and `PENDING_0.json` (those with any
    /// entries) and then `manifest.json` under `<prefix><map run id>/`, and returns the
    /// state's result pointing at the manifest.
    async fn export(
        &self,
        destination: &Destination,
        children: &[Child],
        sizes: &[usize],
    ) -> Result<Value, StateError> {
        let failed = |cause: String| StateError::new(names::RESULT_WRITER_FAILED, cause);
        let writer = self
            .config
            .writer
            .as_ref()
            .expect("exporting needs a ResultWriter");
        let store = self.run.object_store.as_ref().ok_or_else(|| {
            failed("no object store is set on the executor to write results to".into())
        })?;
        let mut succeeded = Vec::new();
        let mut failed_records = Vec::new();
        let mut pending = Vec::new();
        let mut written = 0;
        for (child, size) in children.iter().zip(sizes) {
            match child {
                Child::Started(execution) => {
                    if execution.summary().status == ExecutionStatus::Succeeded {
                        self.push_result(&mut succeeded, execution, writer.transformation);
                    } else {
                        failed_records.push(self.record(execution));
                    }
                    written += *size as u64;
                }
                Child::Pending(input) => pending.push(json!({
                    "Input": input.to_string(),
                    "InputDetails": {"Included": true},
                    "Status": "PENDING",
                })),
            }
        }
        let folder = format!("{}{}/", destination.prefix, self.map_run.id());
        let mut files = Map::new();
        for (status, records) in [
            ("FAILED", failed_records),
            ("PENDING", pending),
            ("SUCCEEDED", succeeded),
        ] {
            let mut listed = Vec::new();
            if !records.is_empty() {
                let key = format!("{folder}{status}_0.json");
                let body = encode(&records, writer.output_type);
                let size = body.len();
                store
                    .put_object(&destination.bucket, &key, body)
                    .await
                    .map_err(|e| {
                        failed(format!(
                            "s3:putObject s3://{}/{key}: {e}",
                            destination.bucket
                        ))
                    })?;
                listed.push(json!({"Key": key, "Size": size}));
            }
            files.insert(status.to_owned(), Value::Array(listed));
        }
        let manifest_key = format!("{folder}manifest.json");
        let manifest = json!({
            "DestinationBucket": destination.bucket,
            "MapRunArn": self.map_run.arn(),
            "ResultFiles": files,
        });
        store
            .put_object(
                &destination.bucket,
                &manifest_key,
                serde_json::to_vec(&manifest).expect("a JSON value serializes"),
            )
            .await
            .map_err(|e| {
                failed(format!(
                    "s3:putObject s3://{}/{manifest_key}: {e}",
                    destination.bucket
                ))
            })?;
        self.map_run.update(|c| c.results_written = written);
        Ok(json!({
            "MapRunArn": self.map_run.arn(),
            "ResultWriterDetails": {"Bucket": destination.bucket, "Key": manifest_key},
        }))
    }
}

fn encode(records: &[Value], output_type: OutputType) -> Vec<u8> {
    match output_type {
        OutputType::Json => serde_json::to_vec(records).expect("a JSON value serializes"),
        OutputType::Jsonl => {
            let mut out = Vec::new();
            for record in records {
                serde_json::to_writer(&mut out, record).expect("a JSON value serializes");
                out.push(b'\n');
            }
            out
        }
    }
}

/// A string field of evaluated `Parameters`/`Arguments`.
fn string_argument<'v>(
    arguments: &'v Value,
    field: &str,
    required: bool,
) -> Result<Option<&'v str>, String> {
    match arguments.get(field) {
        Some(Value::String(s)) => Ok(Some(s)),
        None if !required => Ok(None),
        None => Err(format!("the field '{field}' is required in {arguments}")),
        Some(other) => Err(format!("the field '{field}' must be a string, not {other}")),
    }
}

/// Runs a child execution to its end and records it; returns whether it succeeded.
async fn run_child(run: Arc<Run>, machine: Arc<StateMachine>) -> bool {
    let execution = Arc::clone(&run.execution);
    let _unfinished = FailIfUnfinished(Arc::clone(&execution));
    let started = execution.emit(0, HistoryEventType::ExecutionStarted, || {
        EventDetails::ExecutionStarted {
            input: JsonText::new(&execution.input),
        }
    });
    if json_size(&execution.input) > MAX_PAYLOAD_BYTES {
        execution.finish(
            ExecutionStatus::Failed,
            None,
            Some(names::DATA_LIMIT_EXCEEDED.to_owned()),
            Some(format!(
                "The child execution input exceeds the maximum number of bytes service limit ({MAX_PAYLOAD_BYTES} bytes)."
            )),
        );
        return false;
    }
    let body = run_machine(
        Arc::clone(&run),
        machine,
        execution.input.clone(),
        Variables::default(),
        started,
    );
    let mut stop = execution.stop.subscribe();
    tokio::select! {
        (outcome, _) = body => match outcome {
            Ok(output) => execution.finish(ExecutionStatus::Succeeded, Some(output), None, None),
            Err(e) => {
                let error = (!e.error.is_empty()).then_some(e.error);
                let cause = (!e.cause.is_empty()).then_some(e.cause);
                execution.finish(ExecutionStatus::Failed, None, error, cause);
            }
        },
        reason = stop.wait_for(Option::is_some) => {
            let (error, cause) = reason.ok().and_then(|r| r.clone()).unwrap_or_default();
            execution.finish(ExecutionStatus::Aborted, None, error, cause);
        }
    }
    execution.summary().status == ExecutionStatus::Succeeded
}
