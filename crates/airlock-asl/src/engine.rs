//! The interpreter: runs states, applies input/output processing, retries and catches.

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use futures_util::FutureExt;
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::definition::{
    Amount, Catcher, ContextReads, Definition, FailText, MapState, ParallelState, PassState,
    ResultPath, Retrier, State, StateKind, StateMachine, TaskState, WaitState,
};
use crate::error::{StateError, names};
use crate::executor::{
    ExecutionShared, ExecutorOptions, IssuedToken, Lapse, Registry, TaskHandler, TaskRequest,
    TokenAnswer, TokenGuard, lock,
};
use crate::history::{EventDetails, ExecutionStatus, HistoryEventType, JsonText};
use crate::jsonata::{States as JsonataStates, Template as JsonataTemplate};
use crate::objects::ObjectStore;
use crate::path::{JsonPath, Root, Scope};
use crate::retry::RetryBudget;
use crate::template::Template;
use crate::variables::{Assign, Variables};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Everything one execution needs while it runs.
pub(crate) struct Run {
    pub(crate) definition: Arc<Definition>,
    pub(crate) handlers: Arc<HashMap<String, Arc<dyn TaskHandler>>>,
    pub(crate) options: Arc<ExecutorOptions>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) object_store: Option<Arc<dyn ObjectStore>>,
    pub(crate) execution: Arc<ExecutionShared>,
}

/// Where a state sends the execution next, with its output and, when the history is
/// kept, the output's JSON text (the next state's entry records the same text).
enum Transition {
    Next(String, Value, Option<JsonText>),
    End(Value),
}

/// Identifies the state being run, for the context object and messages.
pub(crate) struct Visit<'a> {
    pub(crate) state: &'a State,
    entered_at: DateTime<Utc>,
    retry_count: u32,
    /// The variables as they were when the state was entered.
    pub(crate) variables: &'a Variables,
}

/// What `$states` holds besides the input and the context object.
#[derive(Clone, Copy)]
pub(crate) enum Extra<'a> {
    Nothing,
    /// `$states.result`: a Task, Parallel or Map result.
    Result(&'a Value),
    /// `$states.errorOutput`: in a Catcher.
    Error(&'a Value),
}

pub(crate) fn states<'v>(
    raw: &'v Value,
    context: &'v Value,
    extra: Extra<'v>,
) -> JsonataStates<'v> {
    JsonataStates {
        input: raw,
        context,
        result: match extra {
            Extra::Result(result) => Some(result),
            _ => None,
        },
        error_output: match extra {
            Extra::Error(error) => Some(error),
            _ => None,
        },
    }
}

impl Visit<'_> {
    /// Evaluates an `Assign` field: JSONPath with `$` bound to `dollar`, JSONata with
    /// `$states` made of the raw input and `extra`.
    fn assign(
        &self,
        run: &Run,
        assign: Option<&Assign>,
        dollar: &Value,
        raw: &Value,
        extra: Extra<'_>,
    ) -> Result<Vec<(String, Value)>, StateError> {
        let Some(assign) = assign else {
            return Ok(Vec::new());
        };
        let context = run.context(self, None, None);
        assign.evaluate(
            &Scope::new(dollar, &context, self.variables),
            &states(raw, &context, extra),
        )
    }

    /// A JSONata state's output: `template` (the matched rule's or catcher's
    /// `Output`, else the state's), or `default` when there is none.
    fn jsonata_output(
        &self,
        run: &Run,
        template: Option<&JsonataTemplate>,
        default: Value,
        raw: &Value,
        extra: Extra<'_>,
    ) -> Result<Value, StateError> {
        let template =
            template.or_else(|| self.state.jsonata.as_ref().and_then(|j| j.output.as_ref()));
        match template {
            None => Ok(default),
            Some(template) => {
                let context = run.context(self, None, None);
                template.evaluate(&states(raw, &context, extra), self.variables)
            }
        }
    }

    fn render(
        &self,
        template: Option<&Template>,
        input: Value,
        context: &Value,
    ) -> Result<Value, StateError> {
        match template {
            Some(template) => template.render(&Scope::new(&input, context, self.variables)),
            None => Ok(input),
        }
    }
}

/// How a state ends when it does not fail: its output, where it goes (`None`: its
/// `Next`, or the end) and the variables it assigns.
struct Exit {
    output: Value,
    /// The output's JSON text, written by the payload check when the history is kept.
    text: Option<JsonText>,
    next: Option<String>,
    assigned: Vec<(String, Value)>,
}

impl Exit {
    fn new(output: Value, text: Option<JsonText>, assigned: Vec<(String, Value)>) -> Self {
        Self {
            output,
            text,
            next: None,
            assigned,
        }
    }
}

/// Runs a whole execution and records how it ended.
pub(crate) async fn run_execution(run: Arc<Run>) {
    let execution = Arc::clone(&run.execution);
    // Dropped last, after `_unfinished` has recorded the end in every case.
    let _retire = Retire(Arc::clone(&run));
    let _unfinished = FailIfUnfinished(Arc::clone(&execution));
    let started = execution.emit(0, HistoryEventType::ExecutionStarted, || {
        EventDetails::ExecutionStarted {
            input: JsonText::new(&execution.input),
        }
    });
    let machine = Arc::clone(&run.definition.machine);
    let body = run_machine(
        Arc::clone(&run),
        machine,
        execution.input.clone(),
        Variables::default(),
        started,
    );
    let limit = run.definition.timeout_seconds().map(Duration::from_secs);
    let mut stop = execution.stop.subscribe();
    tokio::select! {
        outcome = async {
            match limit {
                Some(limit) => tokio::time::timeout(limit, body).await.ok(),
                None => Some(body.await),
            }
        } => match outcome {
            Some((Ok(output), _)) => execution.finish(ExecutionStatus::Succeeded, Some(output), None, None),
            Some((Err(e), _)) => {
                let error = (!e.error.is_empty()).then_some(e.error);
                let cause = (!e.cause.is_empty()).then_some(e.cause);
                execution.finish(ExecutionStatus::Failed, None, error, cause);
            }
            None => execution.finish(
                ExecutionStatus::TimedOut,
                None,
                Some(names::TIMEOUT.to_owned()),
                Some(format!(
                    "The execution exceeded the state machine's TimeoutSeconds ({}s)",
                    limit.map_or(0, |l| l.as_secs())
                )),
            ),
        },
        reason = stop.wait_for(Option::is_some) => {
            let (error, cause) = reason.ok().and_then(|r| r.clone()).unwrap_or_default();
            execution.finish(ExecutionStatus::Aborted, None, error, cause);
        }
    }
}

/// Ends the execution as failed if its task stops without recording an outcome (a
/// bug in the interpreter panicked, or the runtime shut down), so that nobody
/// waiting on it hangs.
pub(crate) struct FailIfUnfinished(pub(crate) Arc<ExecutionShared>);

impl Drop for FailIfUnfinished {
    fn drop(&mut self) {
        if !self.0.is_finished() {
            self.0.finish(
                ExecutionStatus::Failed,
                None,
                Some(names::RUNTIME.to_owned()),
                Some("The executor stopped running this execution unexpectedly".to_owned()),
            );
        }
    }
}

/// Moves the execution from the executor's running set to its finished names once its task
/// ends, however it ends.
struct Retire(Arc<Run>);

impl Drop for Retire {
    fn drop(&mut self) {
        self.0.registry.retire(&self.0.execution.name);
    }
}

/// Runs a `StartAt`/`States` block from its start state to an end. Returns the
/// output (or error) and the id of the last event it emitted.
pub(crate) fn run_machine(
    run: Arc<Run>,
    machine: Arc<StateMachine>,
    input: Value,
    variables: Variables,
    previous_event: u64,
) -> BoxFuture<(Result<Value, StateError>, u64)> {
    Box::pin(async move {
        let mut cursor = previous_event;
        let mut current = machine.start_at.clone();
        let mut input = input;
        let mut input_text = None;
        let mut variables = variables;
        loop {
            let state = &machine.states[&current];
            match run_state(&run, state, input, input_text, &mut variables, &mut cursor).await {
                Ok(Transition::Next(next, output, text)) => {
                    current = next;
                    input = output;
                    input_text = text;
                }
                Ok(Transition::End(output)) => return (Ok(output), cursor),
                Err(e) => return (Err(e), cursor),
            }
        }
    })
}

impl Run {
    pub(crate) fn emit(
        &self,
        cursor: &mut u64,
        event_type: HistoryEventType,
        details: impl FnOnce() -> EventDetails,
    ) {
        *cursor = self.execution.emit(*cursor, event_type, details);
    }

    pub(crate) fn context(
        &self,
        visit: &Visit<'_>,
        task_token: Option<&str>,
        item: Option<(usize, &Value)>,
    ) -> Value {
        match (visit.state.context_reads, task_token) {
            (ContextReads::Nothing, _) => return Value::Null,
            (ContextReads::TaskToken, Some(token)) => {
                return json!({ "Task": { "Token": token } });
            }
            _ => {}
        }
        let machine_name = &self.options.state_machine_name;
        let mut context = json!({
            "Execution": {
                "Id": format!("arn:aws:states:local:000000000000:execution:{machine_name}:{}", self.execution.name),
                "Name": self.execution.name,
                "RoleArn": "arn:aws:iam::000000000000:role/local",
                "StartTime": timestamp(self.execution.started_at),
                "RedriveCount": 0,
            },
            "StateMachine": {
                "Id": format!("arn:aws:states:local:000000000000:stateMachine:{machine_name}"),
                "Name": machine_name,
            },
            "State": {
                "Name": &*visit.state.name,
                "EnteredTime": timestamp(visit.entered_at),
            },
        });
        if self.definition.reads_execution_input {
            context["Execution"]["Input"] = self.execution.input.clone();
        }
        // Only states that can retry (Task, Parallel, Map) count their retries.
        if matches!(
            visit.state.kind,
            StateKind::Task(_) | StateKind::Parallel(_) | StateKind::Map(_)
        ) {
            context["State"]["RetryCount"] = json!(visit.retry_count);
        }
        if let Some(token) = task_token {
            context["Task"] = json!({ "Token": token });
        }
        if let Some((index, value)) = item {
            context["Map"] = json!({ "Item": { "Index": index, "Value": value } });
        }
        context
    }

    fn random_jitter_source(&self) -> fastrand::Rng {
        // Forking keeps the shared generator's lock out of any await point.
        lock(&self.registry.rng).fork()
    }
}

pub(crate) fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A `States.Runtime` error; [`run_state`] adds the state and its entered event to the cause.
pub(crate) fn runtime_error(message: impl std::fmt::Display) -> StateError {
    StateError::new(names::RUNTIME, message.to_string())
}

/// Step Functions' payload quota for state inputs, results and outputs.
pub(crate) const MAX_PAYLOAD_BYTES: usize = 256 * 1024;

/// Counts the bytes of a value's JSON text without building it.
pub(crate) fn json_size(value: &Value) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Writing to a counter cannot fail, and a `Value` always serializes.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

/// `States.DataLimitExceeded` when `value` is over the payload quota.
pub(crate) fn check_size(value: &Value, what: impl FnOnce() -> String) -> Result<(), StateError> {
    size_error(json_size(value), what)
}

fn size_error(size: usize, what: impl FnOnce() -> String) -> Result<(), StateError> {
    if size > MAX_PAYLOAD_BYTES {
        return Err(StateError::new(
            names::DATA_LIMIT_EXCEEDED,
            format!(
                "{} with a size exceeding the maximum number of bytes service limit ({MAX_PAYLOAD_BYTES} bytes).",
                what()
            ),
        ));
    }
    Ok(())
}

/// [`check_size`] for a payload the history records: when it is kept, the JSON text
/// is written once, measured, and returned for the events.
fn checked_text(
    run: &Run,
    value: &Value,
    what: impl FnOnce() -> String,
) -> Result<Option<JsonText>, StateError> {
    if !run.execution.keeps_history() {
        return check_size(value, what).map(|()| None);
    }
    let text = JsonText::new(value);
    size_error(text.len(), what)?;
    Ok(Some(text))
}

fn check_output(run: &Run, state: &State, output: &Value) -> Result<Option<JsonText>, StateError> {
    checked_text(run, output, || {
        format!("The state '{}' produced an output", state.name)
    })
}

/// Selects an `InputPath`/`OutputPath` from `document`, the context object (`$$…`)
/// or a variable (`$name…`).
fn select_io(
    run: &Run,
    visit: &Visit<'_>,
    path: &JsonPath,
    document: &Value,
) -> Result<Value, StateError> {
    let context = if path.root() == Root::Context {
        run.context(visit, None, None)
    } else {
        Value::Null
    };
    let found = path.select_in(&Scope::new(document, &context, visit.variables))?;
    found.ok_or_else(|| {
        runtime_error(format!(
            "Invalid path '{path}' : No results for path: {}",
            path.normalized()
        ))
    })
}

/// The effective input when `InputPath` selects something other than the whole input;
/// `None` for `$` (the default), so the raw input serves without being copied.
fn select_input(run: &Run, visit: &Visit<'_>, raw: &Value) -> Result<Option<Value>, StateError> {
    match &visit.state.input_path {
        None => Ok(Some(json!({}))),
        Some(path) if path.is_identity() => Ok(None),
        Some(path) => select_io(run, visit, path, raw).map(Some),
    }
}

fn apply_output_path(run: &Run, visit: &Visit<'_>, value: Value) -> Result<Value, StateError> {
    match &visit.state.output_path {
        None => Ok(json!({})),
        Some(path) if path.is_identity() => Ok(value),
        Some(path) => {
            let mut value = value;
            // The state's output is not needed any more: move the selection out of it.
            match path.take_definite(&mut value) {
                Some(found) => Ok(found),
                None => select_io(run, visit, path, &value),
            }
        }
    }
}

fn apply_result_path(
    state: &State,
    result_path: &ResultPath,
    raw: Value,
    result: Value,
) -> Result<Value, StateError> {
    let Some(path) = result_path else {
        return Ok(raw);
    };
    let mut output = raw;
    path.assign(&mut output, result).map_err(|()| {
        StateError::new(
            names::RESULT_PATH_MATCH_FAILURE,
            format!(
                "State '{}': unable to apply ResultPath '{path}' to input '{output}'",
                state.name
            ),
        )
    })?;
    Ok(output)
}

/// Resolves a literal, path or JSONata amount of seconds against the effective input.
pub(crate) fn resolve_amount(
    run: &Run,
    visit: &Visit<'_>,
    amount: &Amount,
    field: &str,
    input: &Value,
) -> Result<u64, StateError> {
    match amount {
        Amount::Fixed(n) => Ok(*n),
        Amount::Expr(template) => {
            let context = run.context(visit, None, None);
            let value =
                template.evaluate(&states(input, &context, Extra::Nothing), visit.variables)?;
            value.as_u64().ok_or_else(|| {
                StateError::new(
                    names::QUERY_EVALUATION_ERROR,
                    format!("The value of '{field}' must be a non-negative integer, not {value}"),
                )
            })
        }
        Amount::Path(path) => match path.select_in(&Scope::new(
            input,
            &Value::Null,
            visit.variables,
        ))? {
            Some(value) => value.as_u64().ok_or_else(|| {
                runtime_error(format!(
                    "The value of '{field}' ({path}) must be a non-negative integer, not {value}"
                ))
            }),
            None => Err(runtime_error(format!(
                "Invalid path '{path}' : The field '{field}' could not be found in the input '{input}'"
            ))),
        },
    }
}

/// Stores the state's assignments, records its exit and picks the next state.
fn exit(
    run: &Run,
    state: &State,
    cursor: &mut u64,
    variables: &mut Variables,
    exit: Exit,
) -> Result<Transition, StateError> {
    // Callers have checked the output against the payload quota.
    variables.assign(exit.assigned)?;
    if let Some(exited) = HistoryEventType::exited(state.kind.type_name()) {
        run.emit(cursor, exited, || EventDetails::StateExited {
            name: state.name.clone(),
            output: exit
                .text
                .clone()
                .unwrap_or_else(|| JsonText::new(&exit.output)),
        });
    }
    Ok(match exit.next.as_ref().or(state.next.as_ref()) {
        Some(next) => Transition::Next(next.clone(), exit.output, exit.text),
        None => Transition::End(exit.output),
    })
}

async fn run_state(
    run: &Arc<Run>,
    state: &State,
    raw: Value,
    raw_text: Option<JsonText>,
    variables: &mut Variables,
    cursor: &mut u64,
) -> Result<Transition, StateError> {
    let type_name = state.kind.type_name();
    run.emit(cursor, HistoryEventType::entered(type_name), || {
        EventDetails::StateEntered {
            name: state.name.clone(),
            input: raw_text.unwrap_or_else(|| JsonText::new(&raw)),
        }
    });
    let entered_event_id = *cursor;
    let visit = Visit {
        state,
        entered_at: Utc::now(),
        retry_count: 0,
        variables,
    };
    let outcome = run_state_body(run, visit, raw, cursor).await;
    outcome
        .and_then(|done| exit(run, state, cursor, variables, done))
        .map_err(|e| e.locate(&state.name, entered_event_id))
}

async fn run_state_body(
    run: &Arc<Run>,
    visit: Visit<'_>,
    raw: Value,
    cursor: &mut u64,
) -> Result<Exit, StateError> {
    let state = visit.state;
    if let StateKind::Fail(fail) = &state.kind {
        let context = run.context(&visit, None, None);
        let scope = Scope::new(&raw, &context, visit.variables);
        return Err(StateError::new(
            fail_text(fail.error.as_ref(), "ErrorPath", &scope)?,
            fail_text(fail.cause.as_ref(), "CausePath", &scope)?,
        ));
    }
    let selected = select_input(run, &visit, &raw)?;
    let jsonata = state.jsonata.is_some();
    match &state.kind {
        StateKind::Pass(_) | StateKind::Succeed | StateKind::Wait(_) if jsonata => {
            if let StateKind::Wait(wait) = &state.kind {
                let delay = wait_duration(run, &visit, wait, &raw)?;
                tokio::time::sleep(run.options.scale(delay)).await;
            }
            let assigned = visit.assign(run, state.assign.as_ref(), &raw, &raw, Extra::Nothing)?;
            let output = visit.jsonata_output(run, None, raw.clone(), &raw, Extra::Nothing)?;
            let text = check_output(run, state, &output)?;
            Ok(Exit::new(output, text, assigned))
        }
        StateKind::Pass(pass) => run_pass(run, &visit, pass, raw, selected),
        StateKind::Succeed => {
            let output = apply_output_path(run, &visit, selected.unwrap_or(raw))?;
            let text = check_output(run, state, &output)?;
            Ok(Exit::new(output, text, Vec::new()))
        }
        StateKind::Choice(choice) => {
            let context = run.context(&visit, None, None);
            let effective = selected.as_ref().unwrap_or(&raw);
            let scope = Scope::new(effective, &context, visit.variables);
            let mut target = None;
            for branch in &choice.choices {
                if branch.rule.evaluate(&scope)? {
                    target = Some((&branch.next, branch.assign.as_ref(), branch.output.as_ref()));
                    break;
                }
            }
            let (target, rule_assign, rule_output) = target
                .or(choice.default.as_ref().map(|d| (d, None, None)))
                .ok_or_else(|| {
                    StateError::new(
                        names::NO_CHOICE_MATCHED,
                        format!(
                            "No Matches! No choice rule of state '{}' matched and it has no Default",
                            state.name
                        ),
                    )
                })?;
            // The state's Assign, then the matched rule's, whose values win.
            let mut assigned =
                visit.assign(run, state.assign.as_ref(), effective, &raw, Extra::Nothing)?;
            assigned.extend(visit.assign(run, rule_assign, effective, &raw, Extra::Nothing)?);
            let output = if jsonata {
                visit.jsonata_output(run, rule_output, raw.clone(), &raw, Extra::Nothing)?
            } else {
                apply_output_path(run, &visit, selected.unwrap_or(raw))?
            };
            let text = check_output(run, state, &output)?;
            Ok(Exit {
                output,
                text,
                next: Some(target.clone()),
                assigned,
            })
        }
        StateKind::Wait(wait) => {
            let effective = selected.as_ref().unwrap_or(&raw);
            let delay = wait_duration(run, &visit, wait, effective)?;
            tokio::time::sleep(run.options.scale(delay)).await;
            let assigned =
                visit.assign(run, state.assign.as_ref(), effective, &raw, Extra::Nothing)?;
            let output = apply_output_path(run, &visit, selected.unwrap_or(raw))?;
            let text = check_output(run, state, &output)?;
            Ok(Exit::new(output, text, assigned))
        }
        StateKind::Task(_) | StateKind::Parallel(_) | StateKind::Map(_) => {
            run_fallible(run, visit, raw, selected, cursor).await
        }
        StateKind::Fail(_) => unreachable!("Fail states return above"),
    }
}

/// A JSONPath Pass state: `Parameters` or `Result`, then `ResultPath` and `OutputPath`.
fn run_pass(
    run: &Run,
    visit: &Visit<'_>,
    pass: &PassState,
    raw: Value,
    selected: Option<Value>,
) -> Result<Exit, StateError> {
    let state = visit.state;
    let rendered = match &pass.parameters {
        Some(parameters) => {
            let context = run.context(visit, None, None);
            let effective = selected.as_ref().unwrap_or(&raw);
            Some(parameters.render(&Scope::new(effective, &context, visit.variables))?)
        }
        None => None,
    };
    let result = match (&pass.result, rendered) {
        (Some(result), _) => result.clone(),
        (None, Some(rendered)) => rendered,
        (None, None) => selected.unwrap_or_else(|| raw.clone()),
    };
    let assigned = visit.assign(run, state.assign.as_ref(), &result, &raw, Extra::Nothing)?;
    let output = apply_result_path(state, &pass.result_path, raw, result)?;
    let output = apply_output_path(run, visit, output)?;
    let text = check_output(run, state, &output)?;
    Ok(Exit::new(output, text, assigned))
}

fn fail_text(
    text: Option<&FailText>,
    field: &str,
    scope: &Scope<'_>,
) -> Result<String, StateError> {
    let value = match text {
        None => return Ok(String::new()),
        Some(FailText::Literal(s)) => return Ok(s.clone()),
        Some(FailText::Path(path)) => path.select_in(scope)?.ok_or_else(|| {
            runtime_error(format!(
                "Invalid path '{path}' : The field '{field}' could not be found in the input '{}'",
                scope.input
            ))
        })?,
        Some(FailText::Intrinsic(call)) => call.evaluate(scope)?,
        Some(FailText::Expr(template)) => template.evaluate(
            &states(scope.input, scope.context, Extra::Nothing),
            scope.variables,
        )?,
    };
    match value {
        Value::String(s) => Ok(s),
        other => Err(runtime_error(format!(
            "The value of '{field}' must be a string, not {other}"
        ))),
    }
}

/// The longest a Wait may last: a standard workflow runs for a year at most, so a
/// later end is refused at once rather than waited for.
const MAX_WAIT: chrono::TimeDelta = chrono::TimeDelta::days(365);

fn wait_duration(
    run: &Run,
    visit: &Visit<'_>,
    wait: &WaitState,
    input: &Value,
) -> Result<Duration, StateError> {
    let now = Utc::now();
    let until = match wait {
        WaitState::Seconds(amount) => {
            let seconds = resolve_amount(run, visit, amount, "Seconds", input)?;
            let delay = i64::try_from(seconds)
                .ok()
                .and_then(chrono::TimeDelta::try_seconds)
                .unwrap_or(chrono::TimeDelta::MAX);
            now.checked_add_signed(delay)
                .unwrap_or(DateTime::<Utc>::MAX_UTC)
        }
        WaitState::Timestamp(at) => at.with_timezone(&Utc),
        WaitState::TimestampExpr(template) => {
            let context = run.context(visit, None, None);
            let value =
                template.evaluate(&states(input, &context, Extra::Nothing), visit.variables)?;
            value
                .as_str()
                .and_then(crate::choice::parse_timestamp)
                .ok_or_else(|| {
                    StateError::new(
                        names::QUERY_EVALUATION_ERROR,
                        format!("The Timestamp expression evaluated to {value}, not a timestamp"),
                    )
                })?
                .with_timezone(&Utc)
        }
        WaitState::TimestampPath(path) => {
            let value = path
                .select_in(&Scope::new(input, &Value::Null, visit.variables))?
                .ok_or_else(|| {
                    runtime_error(format!("Invalid path '{path}' : The field 'TimestampPath' could not be found in the input '{input}'"))
                })?;
            value
                .as_str()
                .and_then(crate::choice::parse_timestamp)
                .ok_or_else(|| {
                    runtime_error(format!(
                        "The value of 'TimestampPath' ({path}) is not a timestamp: {value}"
                    ))
                })?
                .with_timezone(&Utc)
        }
    };
    let latest = run.execution.started_at + MAX_WAIT;
    if until > latest {
        return Err(runtime_error(format!(
            "Wait state delay is too long: it would end at {}, after {} (one year from the execution's start)",
            timestamp(until),
            timestamp(latest)
        )));
    }
    Ok((until - now).to_std().unwrap_or(Duration::ZERO))
}

/// Task, Parallel and Map: attempts with Retry, then ResultSelector/ResultPath/
/// `OutputPath`, or Catch.
async fn run_fallible(
    run: &Arc<Run>,
    mut visit: Visit<'_>,
    raw: Value,
    selected: Option<Value>,
    cursor: &mut u64,
) -> Result<Exit, StateError> {
    let state = visit.state;
    let effective = selected.as_ref().unwrap_or(&raw);
    let (retriers, catchers, result_selector, result_path): (&[Retrier], &[Catcher], _, _) =
        match &state.kind {
            StateKind::Task(t) => (
                &t.retry,
                &t.catch,
                t.result_selector.as_ref(),
                &t.result_path,
            ),
            StateKind::Parallel(p) => (
                &p.retry,
                &p.catch,
                p.result_selector.as_ref(),
                &p.result_path,
            ),
            StateKind::Map(m) => (
                &m.retry,
                &m.catch,
                m.result_selector.as_ref(),
                &m.result_path,
            ),
            _ => unreachable!("only Task, Parallel and Map states are fallible"),
        };
    let mut budget = RetryBudget::new(retriers);
    let mut jitter = run.random_jitter_source();
    let attempt = loop {
        let outcome = match &state.kind {
            StateKind::Task(task) => run_task_attempt(run, &visit, task, effective, cursor).await,
            StateKind::Parallel(parallel) => {
                run_parallel_attempt(run, &visit, parallel, effective, cursor).await
            }
            StateKind::Map(map) => run_map_attempt(run, &visit, map, effective, cursor).await,
            _ => unreachable!("only Task, Parallel and Map states are fallible"),
        };
        match outcome {
            Ok(result) => break Ok(result),
            Err(error) => {
                if let Some(delay) = budget.next_delay(&error, &mut jitter) {
                    tracing::debug!(state = %state.display, error = %error, ?delay, "retrying");
                    tokio::time::sleep(run.options.scale(delay)).await;
                    visit.retry_count += 1;
                    continue;
                }
                // One failure event for the state, after its last attempt.
                let failed = match &state.kind {
                    StateKind::Parallel(_) => Some(HistoryEventType::ParallelStateFailed),
                    StateKind::Map(_) => Some(HistoryEventType::MapStateFailed),
                    _ => None,
                };
                if let Some(failed) = failed {
                    run.emit(cursor, failed, || EventDetails::None);
                }
                break Err(error);
            }
        }
    };
    let processed = attempt.and_then(|result| {
        if state.jsonata.is_some() {
            let extra = Extra::Result(&result);
            let assigned = visit.assign(run, state.assign.as_ref(), &result, &raw, extra)?;
            let output = visit.jsonata_output(run, None, result.clone(), &raw, extra)?;
            let text = check_output(run, state, &output)?;
            return Ok(Exit::new(output, text, assigned));
        }
        let result = match result_selector {
            Some(selector) => {
                let context = run.context(&visit, None, None);
                visit.render(Some(selector), result, &context)?
            }
            None => result,
        };
        let assigned = visit.assign(
            run,
            state.assign.as_ref(),
            &result,
            &raw,
            Extra::Result(&result),
        )?;
        let output = apply_result_path(state, result_path, raw.clone(), result)?;
        let output = apply_output_path(run, &visit, output)?;
        let text = check_output(run, state, &output)?;
        Ok(Exit::new(output, text, assigned))
    });
    match processed {
        Ok(done) => Ok(done),
        Err(error) => catch(run, &visit, catchers, error, raw),
    }
}

/// Hands an error to the first Catcher that matches it, or returns it.
fn catch(
    run: &Run,
    visit: &Visit<'_>,
    catchers: &[Catcher],
    error: StateError,
    raw: Value,
) -> Result<Exit, StateError> {
    let state = visit.state;
    let Some(catcher) = catchers
        .iter()
        .find(|c| c.error_equals.iter().any(|pattern| error.matches(pattern)))
    else {
        return Err(error);
    };
    tracing::debug!(state = %state.display, error = %error, next = %catcher.next, "caught");
    let error_output = error.to_output();
    let extra = Extra::Error(&error_output);
    let assigned = visit.assign(run, catcher.assign.as_ref(), &error_output, &raw, extra)?;
    let output = if state.jsonata.is_some() {
        match &catcher.output {
            Some(template) => {
                let context = run.context(visit, None, None);
                template.evaluate(&states(&raw, &context, extra), visit.variables)?
            }
            None => error_output,
        }
    } else {
        apply_result_path(state, &catcher.result_path, raw, error_output)?
    };
    let text = check_output(run, state, &output)?;
    Ok(Exit {
        output,
        text,
        next: Some(catcher.next.clone()),
        assigned,
    })
}

/// What a Task or the branches of a Parallel receive: JSONata `Arguments`, or the
/// JSONPath `Parameters` applied to the effective input.
fn arguments(
    visit: &Visit<'_>,
    parameters: Option<&Template>,
    effective: &Value,
    context: &Value,
) -> Result<Value, StateError> {
    match visit
        .state
        .jsonata
        .as_ref()
        .and_then(|j| j.arguments.as_ref())
    {
        Some(arguments) => {
            arguments.evaluate(&states(effective, context, Extra::Nothing), visit.variables)
        }
        None => match parameters {
            // The template reads the input in place: no copy of it is made.
            Some(template) => template.render(&Scope::new(effective, context, visit.variables)),
            None => Ok(effective.clone()),
        },
    }
}

/// Calls the handler in place, catching a panic so that it becomes a `States.TaskFailed`
/// error; dropping the call (a timeout, the execution stopping) cancels the handler.
async fn invoke(handler: &dyn TaskHandler, request: TaskRequest) -> Result<Value, StateError> {
    match AssertUnwindSafe(handler.invoke(request))
        .catch_unwind()
        .await
    {
        Ok(Ok(output)) => Ok(output),
        Ok(Err(failure)) => {
            let error = if failure.error.is_empty() {
                names::TASK_FAILED.to_owned()
            } else {
                failure.error
            };
            Err(StateError::new(error, failure.cause))
        }
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a non-string panic payload".to_owned());
            Err(StateError::new(
                names::TASK_FAILED,
                format!("The task handler panicked: {message}"),
            ))
        }
    }
}

fn timeout_error(state: &State, what: &str, seconds: u64, heartbeat: bool) -> StateError {
    StateError {
        heartbeat,
        ..StateError::new(
            names::TIMEOUT,
            format!("State '{}' exceeded its {what} of {seconds}s", state.name),
        )
    }
}

async fn run_task_attempt(
    run: &Arc<Run>,
    visit: &Visit<'_>,
    task: &TaskState,
    effective: &Value,
    cursor: &mut u64,
) -> Result<Value, StateError> {
    let state = visit.state;
    let token = task.wait_for_task_token.then(|| run.registry.new_token());
    let context = run.context(visit, token.as_ref().map(|t| t.text.as_str()), None);
    let parameters = arguments(visit, task.parameters.as_ref(), effective, &context)?;
    let parameters_text = checked_text(run, &parameters, || {
        format!("The input of the state '{}'", state.name)
    })?;
    let timeout = resolve_amount(run, visit, &task.timeout, "TimeoutSeconds", effective)?;
    let heartbeat = match &task.heartbeat {
        Some(amount) => Some(resolve_amount(
            run,
            visit,
            amount,
            "HeartbeatSeconds",
            effective,
        )?),
        None => None,
    };
    // A Lambda function ARN as the resource (not the `lambda:invoke` integration) is
    // logged with Step Functions' `LambdaFunction*` events.
    let lambda = !task.wait_for_task_token && task.resource.starts_with("arn:aws:lambda:");
    emit_scheduled(
        run,
        cursor,
        task,
        lambda,
        || parameters_text.unwrap_or_else(|| JsonText::new(&parameters)),
        (timeout, heartbeat),
    );
    let handler = run
        .handlers
        .get(&task.handler_key)
        .map(AsRef::as_ref)
        .ok_or_else(|| {
            runtime_error(format!(
                "no handler is registered for resource '{}'",
                task.handler_key
            ))
        })?;
    if lambda {
        run.emit(cursor, HistoryEventType::LambdaFunctionStarted, || {
            EventDetails::None
        });
    } else {
        run.emit(cursor, HistoryEventType::TaskStarted, || {
            EventDetails::TaskStarted {
                resource_type: Arc::clone(&task.event_resource.0),
                resource: Arc::clone(&task.event_resource.1),
            }
        });
    }
    let request = TaskRequest {
        resource: task.resource.clone(),
        state_name: state.name.to_string(),
        execution_name: run.execution.name.clone(),
        parameters,
        task_token: token.as_ref().map(|t| t.text.clone()),
        attempt: visit.retry_count + 1,
    };
    let limits = TaskLimits {
        deadline: Instant::now() + Duration::from_secs(timeout),
        timeout,
        heartbeat,
    };
    let outcome = match token {
        None => match tokio::time::timeout_at(limits.deadline, invoke(handler, request)).await {
            Ok(result) => result,
            Err(_) => Err(timeout_error(state, "TimeoutSeconds", timeout, false)),
        },
        Some(token) => {
            run_callback(
                run,
                state,
                handler,
                request,
                &token,
                &limits,
                &task.event_resource,
                cursor,
            )
            .await
        }
    };
    let outcome = outcome.and_then(|result| {
        let text = checked_text(run, &result, || {
            format!("The state/task '{}' returned a result", task.resource)
        })?;
        Ok((result, text))
    });
    if lambda {
        let (event_type, details) = lambda_outcome_event(&outcome);
        run.emit(cursor, event_type, details);
    } else {
        let (event_type, details) = task_outcome_event(&outcome, &task.event_resource);
        run.emit(cursor, event_type, details);
    }
    outcome.map(|(result, _)| result)
}

/// The `TaskScheduled` (or `LambdaFunctionScheduled`) event opening an attempt.
fn emit_scheduled(
    run: &Run,
    cursor: &mut u64,
    task: &TaskState,
    lambda: bool,
    parameters: impl FnOnce() -> JsonText,
    (timeout, heartbeat): (u64, Option<u64>),
) {
    let (resource_type, resource) = &task.event_resource;
    if lambda {
        run.emit(cursor, HistoryEventType::LambdaFunctionScheduled, || {
            EventDetails::LambdaScheduled {
                // A Lambda function's ARN whole.
                resource: Arc::clone(resource),
                input: parameters(),
                timeout_seconds: Some(timeout),
            }
        });
    } else {
        run.emit(cursor, HistoryEventType::TaskScheduled, || {
            EventDetails::TaskScheduled {
                resource_type: Arc::clone(resource_type),
                resource: Arc::clone(resource),
                parameters: parameters(),
                timeout_seconds: Some(timeout),
                heartbeat_seconds: heartbeat,
            }
        });
    }
}

/// A task's result with its JSON text when the history is kept.
type TaskOutcome = Result<(Value, Option<JsonText>), StateError>;

fn result_text((output, text): &(Value, Option<JsonText>)) -> JsonText {
    text.clone().unwrap_or_else(|| JsonText::new(output))
}

/// The `LambdaFunctionSucceeded` / `Failed` / `TimedOut` event closing an attempt.
fn lambda_outcome_event(
    outcome: &TaskOutcome,
) -> (HistoryEventType, impl FnOnce() -> EventDetails + '_) {
    let event_type = match outcome {
        Ok(_) => HistoryEventType::LambdaFunctionSucceeded,
        Err(error) if error.error == names::TIMEOUT => HistoryEventType::LambdaFunctionTimedOut,
        Err(_) => HistoryEventType::LambdaFunctionFailed,
    };
    (event_type, move || match outcome {
        Ok(result) => EventDetails::LambdaOutput {
            output: result_text(result),
        },
        Err(error) => EventDetails::LambdaError {
            error: error.error.clone(),
            cause: error.cause.clone(),
        },
    })
}

/// The `TaskSucceeded` / `TaskFailed` / `TaskTimedOut` event closing an attempt.
fn task_outcome_event<'a>(
    outcome: &'a TaskOutcome,
    (resource_type, resource): &'a (Arc<str>, Arc<str>),
) -> (HistoryEventType, impl FnOnce() -> EventDetails + 'a) {
    let event_type = match outcome {
        Ok(_) => HistoryEventType::TaskSucceeded,
        Err(error) if error.error == names::TIMEOUT => HistoryEventType::TaskTimedOut,
        Err(_) => HistoryEventType::TaskFailed,
    };
    (event_type, move || match outcome {
        Ok(result) => EventDetails::TaskOutput {
            resource_type: Arc::clone(resource_type),
            resource: Arc::clone(resource),
            output: result_text(result),
        },
        Err(error) => EventDetails::TaskError {
            resource_type: Arc::clone(resource_type),
            resource: Arc::clone(resource),
            error: error.error.clone(),
            cause: error.cause.clone(),
        },
    })
}

/// When a task attempt runs out of time.
#[derive(Clone, Copy)]
struct TaskLimits {
    deadline: Instant,
    timeout: u64,
    heartbeat: Option<u64>,
}

/// `.waitForTaskToken`: submits the work, then waits for a worker to answer.
#[allow(clippy::too_many_arguments)]
async fn run_callback(
    run: &Run,
    state: &State,
    handler: &dyn TaskHandler,
    request: TaskRequest,
    token: &IssuedToken,
    limits: &TaskLimits,
    (resource_type, resource): &(Arc<str>, Arc<str>),
    cursor: &mut u64,
) -> Result<Value, StateError> {
    // Open before submitting: a fast worker may answer before the handler returns.
    let mut answer = run.registry.open_token(token);
    let _guard = TokenGuard {
        registry: &run.registry,
        id: token.id,
    };
    // One timer serves the whole attempt: the task deadline while submitting, then the
    // nearer of it and the heartbeat deadline.
    let timer = tokio::time::sleep_until(limits.deadline);
    tokio::pin!(timer);
    let submitted = tokio::select! {
        biased;
        submitted = invoke(handler, request) => Some(submitted),
        () = &mut timer => None,
    };
    match submitted {
        Some(Err(error)) => return Err(error),
        Some(Ok(submit_output)) => run.emit(cursor, HistoryEventType::TaskSubmitted, || {
            EventDetails::TaskOutput {
                resource_type: Arc::clone(resource_type),
                resource: Arc::clone(resource),
                output: JsonText::new(&submit_output),
            }
        }),
        // Out of time while submitting: a worker may still have answered first,
        // which `await_token` sorts out.
        None => {}
    }
    await_token(run, state, token.id, &mut answer, timer, limits).await
}

/// Waits for `send_task_success`/`failure` on the token numbered `id`, enforcing the
/// task and heartbeat deadlines. A deadline only wins if it closes the token before a
/// worker's answer does; otherwise the answer is taken. Heartbeats are only looked at
/// when the heartbeat deadline comes.
async fn await_token(
    run: &Run,
    state: &State,
    id: u64,
    answer: &mut tokio::sync::oneshot::Receiver<TokenAnswer>,
    mut timer: Pin<&mut tokio::time::Sleep>,
    limits: &TaskLimits,
) -> Result<Value, StateError> {
    let TaskLimits {
        deadline,
        timeout,
        heartbeat,
    } = *limits;
    let interval = heartbeat.map(Duration::from_secs);
    let mut heartbeat_deadline = interval.map(|h| Instant::now() + h);
    loop {
        let (wake, by_heartbeat) = match heartbeat_deadline {
            Some(h) if h < deadline => (h, true),
            _ => (deadline, false),
        };
        if timer.deadline() != wake {
            timer.as_mut().reset(wake);
        }
        tokio::select! {
            biased;
            received = &mut *answer => return match received {
                Ok(TokenAnswer::Success(output)) => Ok(output),
                Ok(TokenAnswer::Failure { error, cause }) => {
                    let error = if error.is_empty() { names::TASK_FAILED.to_owned() } else { error };
                    Err(StateError::new(error, cause))
                }
                Err(_) => Err(runtime_error("the task token channel closed unexpectedly")),
            },
            () = timer.as_mut() => {
                match run.registry.lapse(id, interval.filter(|_| by_heartbeat), Instant::now()) {
                    Lapse::Expired => {
                        return Err(if by_heartbeat {
                            timeout_error(state, "HeartbeatSeconds", heartbeat.unwrap_or_default(), true)
                        } else {
                            timeout_error(state, "TimeoutSeconds", timeout, false)
                        });
                    }
                    Lapse::Extended(until) => heartbeat_deadline = Some(until),
                    // Closed already: the answer is in `answer`; the biased select reads it next.
                    Lapse::Answered => {}
                }
            }
        }
    }
}

async fn run_parallel_attempt(
    run: &Arc<Run>,
    visit: &Visit<'_>,
    parallel: &ParallelState,
    effective: &Value,
    cursor: &mut u64,
) -> Result<Value, StateError> {
    let context = run.context(visit, None, None);
    let input = arguments(visit, parallel.parameters.as_ref(), effective, &context)?;
    run.emit(cursor, HistoryEventType::ParallelStateStarted, || {
        EventDetails::None
    });
    let started = *cursor;
    let mut branches = JoinSet::new();
    let outer = Arc::new(visit.variables.clone());
    for (index, branch) in parallel.branches.iter().enumerate() {
        let body = run_machine(
            Arc::clone(run),
            Arc::clone(branch),
            input.clone(),
            outer.child(),
            started,
        );
        branches.spawn(async move { (index, body.await.0) });
    }
    let outcome = collect_ordered(&mut branches, parallel.branches.len()).await;
    // Dropping the set cancels branches still running after a failure.
    drop(branches);
    // Step Functions records no `ParallelStateSucceeded`; a failure is recorded once the
    // state has no retry left.
    outcome.map(Value::Array)
}

/// Gathers `count` indexed results, stopping at the first error.
async fn collect_ordered(
    set: &mut JoinSet<(usize, Result<Value, StateError>)>,
    count: usize,
) -> Result<Vec<Value>, StateError> {
    let mut results = vec![Value::Null; count];
    while let Some(joined) = set.join_next().await {
        store_joined(joined, &mut results)?;
    }
    Ok(results)
}

fn store_joined(
    joined: Result<(usize, Result<Value, StateError>), tokio::task::JoinError>,
    results: &mut [Value],
) -> Result<(), StateError> {
    match joined {
        Ok((index, Ok(value))) => {
            results[index] = value;
            Ok(())
        }
        Ok((_, Err(error))) => Err(error),
        Err(join_error) => Err(StateError::new(
            names::RUNTIME,
            format!("a branch stopped unexpectedly: {join_error}"),
        )),
    }
}

/// The Map's iteration inputs: its items, each through `ItemSelector` if there is one.
fn map_inputs(
    run: &Run,
    visit: &Visit<'_>,
    map: &MapState,
    effective: &Value,
) -> Result<Vec<Value>, StateError> {
    let items = map_items(run, visit, map, effective)?;
    select_items(run, visit, map, effective, items)
}

/// The Map's items: `Items` (JSONata) or what `ItemsPath` selects, which must be an array.
pub(crate) fn map_items(
    run: &Run,
    visit: &Visit<'_>,
    map: &MapState,
    effective: &Value,
) -> Result<Vec<Value>, StateError> {
    let selected = match &map.items {
        Some(items) => {
            let context = run.context(visit, None, None);
            Some(items.evaluate(
                &states(effective, &context, Extra::Nothing),
                visit.variables,
            )?)
        }
        None => map
            .items_path
            .select_in(&Scope::new(effective, &Value::Null, visit.variables))?,
    };
    let items = match selected {
        Some(Value::Array(items)) => items,
        Some(other) if map.items.is_some() => {
            return Err(StateError::new(
                names::QUERY_EVALUATION_ERROR,
                format!("The field 'Items' must be an array, not {other}"),
            ));
        }
        Some(other) => {
            return Err(runtime_error(format!(
                "The field 'ItemsPath' ({}) must point to an array, not {other}",
                map.items_path
            )));
        }
        None => {
            return Err(runtime_error(format!(
                "Invalid path '{}' : No results for path: {}",
                map.items_path,
                map.items_path.normalized()
            )));
        }
    };
    Ok(items)
}

/// Each item through `ItemSelector` (evaluated with `$$.Map.Item`), if there is one.
pub(crate) fn select_items(
    run: &Run,
    visit: &Visit<'_>,
    map: &MapState,
    effective: &Value,
    items: Vec<Value>,
) -> Result<Vec<Value>, StateError> {
    if map.item_selector.is_none() && map.jsonata_item_selector.is_none() {
        return Ok(items);
    }
    let mut inputs = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let context = run.context(visit, None, Some((index, item)));
        inputs.push(match (&map.item_selector, &map.jsonata_item_selector) {
            (Some(selector), _) => {
                selector.render(&Scope::new(effective, &context, visit.variables))?
            }
            (None, Some(selector)) => selector.evaluate(
                &states(effective, &context, Extra::Nothing),
                visit.variables,
            )?,
            (None, None) => item.clone(),
        });
    }
    Ok(inputs)
}

async fn run_map_attempt(
    run: &Arc<Run>,
    visit: &Visit<'_>,
    map: &MapState,
    effective: &Value,
    cursor: &mut u64,
) -> Result<Value, StateError> {
    if let Some(distributed) = &map.distributed {
        return crate::distributed::run_map_run(run, visit, map, distributed, effective, cursor)
            .await;
    }
    let state = visit.state;
    let inputs = map_inputs(run, visit, map, effective)?;
    let max_concurrency = resolve_amount(
        run,
        visit,
        &map.max_concurrency,
        "MaxConcurrency",
        effective,
    )?;
    run.emit(cursor, HistoryEventType::MapStateStarted, || {
        EventDetails::MapStarted {
            length: inputs.len(),
        }
    });
    let started = *cursor;
    let limit = match usize::try_from(max_concurrency) {
        Ok(0) | Err(_) => usize::MAX,
        Ok(n) => n,
    };
    let count = inputs.len();
    let mut results = vec![Value::Null; count];
    let mut iterations = JoinSet::new();
    // Iterations start in index order, at most `limit` at a time; after a failure no
    // further iteration starts and those running are cancelled.
    let mut outcome = Ok(());
    let outer = Arc::new(visit.variables.clone());
    for (index, input) in inputs.into_iter().enumerate() {
        while iterations.len() >= limit {
            let Some(joined) = iterations.join_next().await else {
                break;
            };
            outcome = store_joined(joined, &mut results);
            if outcome.is_err() {
                break;
            }
        }
        if outcome.is_err() {
            break;
        }
        let mut at = started;
        run.emit(&mut at, HistoryEventType::MapIterationStarted, || {
            EventDetails::MapIteration {
                name: state.name.clone(),
                index,
            }
        });
        let run = Arc::clone(run);
        let processor = Arc::clone(&map.processor);
        let name = state.name.clone();
        let variables = outer.child();
        iterations.spawn(async move {
            let (result, last) =
                run_machine(Arc::clone(&run), processor, input, variables, at).await;
            let mut at = last;
            let event_type = if result.is_ok() {
                HistoryEventType::MapIterationSucceeded
            } else {
                HistoryEventType::MapIterationFailed
            };
            run.emit(&mut at, event_type, || EventDetails::MapIteration {
                name,
                index,
            });
            (index, result)
        });
    }
    while outcome.is_ok()
        && let Some(joined) = iterations.join_next().await
    {
        outcome = store_joined(joined, &mut results);
    }
    // Dropping the set cancels iterations still running after a failure.
    drop(iterations);
    outcome?;
    let mut after = started;
    run.emit(&mut after, HistoryEventType::MapStateSucceeded, || {
        EventDetails::None
    });
    *cursor = after;
    Ok(Value::Array(results))
}
