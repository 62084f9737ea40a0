//! Parsing and validating a state machine definition into something the executor can run.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use chrono::{DateTime, FixedOffset};
use serde_json::{Map, Value};

use crate::choice::{self, Rule};
use crate::distributed::{self, Distributed};
use crate::error::{DefinitionError, names};
use crate::intrinsic::{self, Call};
use crate::jsonata::{self, Template as JsonataTemplate};
use crate::path::JsonPath;
use crate::template::Template;
use crate::variables::Assign;

/// Step Functions' upper bound for every seconds/attempts field.
const MAX_SECONDS: u64 = 99_999_999;
/// Default `TimeoutSeconds` of a Task state, per the ASL specification.
const DEFAULT_TASK_TIMEOUT_SECONDS: u64 = 60;
const WAIT_FOR_TASK_TOKEN: &str = ".waitForTaskToken";

/// The query language of a state: `JSONPath` unless the definition or the state says
/// `"QueryLanguage": "JSONata"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Language {
    #[default]
    JsonPath,
    Jsonata,
}

/// The fields a JSONata state has instead of the JSONPath ones.
#[derive(Debug, Default)]
pub(crate) struct JsonataFields {
    /// Task and Parallel: what the task or the branches receive (default: the input).
    pub(crate) arguments: Option<JsonataTemplate>,
    /// The state's output (default: the result, or the input for states without one).
    pub(crate) output: Option<JsonataTemplate>,
}

/// A parsed, validated state machine definition.
#[derive(Debug, Clone)]
pub struct Definition {
    comment: Option<String>,
    timeout_seconds: Option<u64>,
    pub(crate) machine: Arc<StateMachine>,
    /// Whether any field may read `$$.Execution.Input`: the context object then carries
    /// a copy of the execution input, which is costly to build for every state of a
    /// large Map, so it is left out when nothing can read it.
    pub(crate) reads_execution_input: bool,
}

/// A Task state's resource, as found in the definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskResource {
    /// The Task state (`>`-separated path when nested in a Parallel or Map).
    pub state: String,
    /// The `Resource` field as written.
    pub resource: String,
    /// The key a handler is registered under: the resource without `.waitForTaskToken`.
    pub handler_key: String,
    /// Whether the task waits for `send_task_success`/`send_task_failure`.
    pub wait_for_task_token: bool,
}

/// A `StartAt` + `States` block: the whole machine, a Parallel branch or a Map processor.
#[derive(Debug)]
pub(crate) struct StateMachine {
    pub(crate) start_at: String,
    pub(crate) states: BTreeMap<String, State>,
}

#[derive(Debug)]
pub(crate) struct State {
    /// Shared with the history events that name the state.
    pub(crate) name: Arc<str>,
    /// `>`-separated location for messages, e.g. `Fan > Branches[0] > Step`.
    pub(crate) display: String,
    /// `None` when the field is `null` (the state then sees `{}`).
    pub(crate) input_path: Option<JsonPath>,
    /// `None` when the field is `null` (the state then outputs `{}`).
    pub(crate) output_path: Option<JsonPath>,
    /// `None` for End states and for states that never transition by `Next`.
    pub(crate) next: Option<String>,
    /// Variables the state assigns when it succeeds.
    pub(crate) assign: Option<Assign>,
    /// Set for JSONata states; their JSONPath fields then hold pass-through values.
    pub(crate) jsonata: Option<Box<JsonataFields>>,
    pub(crate) kind: StateKind,
    /// What the state's fields may read of the context object (`$$`, `$states.context`
    /// or the whole `$states`); states that read nothing run without building it.
    pub(crate) context_reads: ContextReads,
}

/// How much of the context object a state may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ContextReads {
    Nothing,
    /// Only `$$.Task.Token` (or `$states.context.Task.Token`), as a `.waitForTaskToken`
    /// task passes it to its worker: the context it renders with holds just the token.
    TaskToken,
    Everything,
}

#[derive(Debug)]
pub(crate) enum StateKind {
    Pass(PassState),
    Task(Box<TaskState>),
    Choice(ChoiceState),
    Wait(WaitState),
    Succeed,
    Fail(FailState),
    Parallel(ParallelState),
    Map(Box<MapState>),
}

impl StateKind {
    /// The `Type` name, used for history event names.
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Self::Pass(_) => "Pass",
            Self::Task(_) => "Task",
            Self::Choice(_) => "Choice",
            Self::Wait(_) => "Wait",
            Self::Succeed => "Succeed",
            Self::Fail(_) => "Fail",
            Self::Parallel(_) => "Parallel",
            Self::Map(_) => "Map",
        }
    }
}

/// `ResultPath`: `None` discards the result (field set to `null`).
pub(crate) type ResultPath = Option<JsonPath>;

#[derive(Debug)]
pub(crate) struct PassState {
    pub(crate) result: Option<Value>,
    pub(crate) parameters: Option<Template>,
    pub(crate) result_path: ResultPath,
}

/// A number of seconds (or a count) given literally or by a reference path.
#[derive(Debug, Clone)]
pub(crate) enum Amount {
    Fixed(u64),
    Path(JsonPath),
    /// A JSONata expression (`{% … %}`).
    Expr(JsonataTemplate),
}

#[derive(Debug)]
pub(crate) struct TaskState {
    pub(crate) resource: String,
    /// The resource as task events name it: AWS's `resourceType` and `resource` pair,
    /// made once for every event of every attempt.
    pub(crate) event_resource: (Arc<str>, Arc<str>),
    pub(crate) handler_key: String,
    pub(crate) wait_for_task_token: bool,
    pub(crate) parameters: Option<Template>,
    pub(crate) result_selector: Option<Template>,
    pub(crate) result_path: ResultPath,
    pub(crate) timeout: Amount,
    pub(crate) heartbeat: Option<Amount>,
    pub(crate) retry: Vec<Retrier>,
    pub(crate) catch: Vec<Catcher>,
}

#[derive(Debug)]
pub(crate) struct ChoiceState {
    pub(crate) choices: Vec<ChoiceBranch>,
    pub(crate) default: Option<String>,
}

/// A top-level choice rule with where it leads and what it assigns and outputs.
#[derive(Debug)]
pub(crate) struct ChoiceBranch {
    pub(crate) rule: Rule,
    pub(crate) next: String,
    pub(crate) assign: Option<Assign>,
    /// JSONata only: the state's output when this rule matches.
    pub(crate) output: Option<JsonataTemplate>,
}

#[derive(Debug)]
pub(crate) enum WaitState {
    Seconds(Amount),
    Timestamp(DateTime<FixedOffset>),
    TimestampPath(JsonPath),
    /// JSONata `Timestamp` expression.
    TimestampExpr(JsonataTemplate),
}

/// `Error`/`Cause` of a Fail state: literal, or computed from the state input.
#[derive(Debug)]
pub(crate) enum FailText {
    Literal(String),
    Path(JsonPath),
    Intrinsic(Call),
    Expr(JsonataTemplate),
}

#[derive(Debug)]
pub(crate) struct FailState {
    pub(crate) error: Option<FailText>,
    pub(crate) cause: Option<FailText>,
}

#[derive(Debug)]
pub(crate) struct ParallelState {
    pub(crate) branches: Vec<Arc<StateMachine>>,
    pub(crate) parameters: Option<Template>,
    pub(crate) result_selector: Option<Template>,
    pub(crate) result_path: ResultPath,
    pub(crate) retry: Vec<Retrier>,
    pub(crate) catch: Vec<Catcher>,
}

#[derive(Debug)]
pub(crate) struct MapState {
    pub(crate) items_path: JsonPath,
    pub(crate) item_selector: Option<Template>,
    /// JSONata: the items (default: the input, which must then be an array).
    pub(crate) items: Option<JsonataTemplate>,
    /// JSONata: each iteration's input, with `$states.context.Map.Item`.
    pub(crate) jsonata_item_selector: Option<JsonataTemplate>,
    pub(crate) processor: Arc<StateMachine>,
    /// `0` means no limit.
    pub(crate) max_concurrency: Amount,
    pub(crate) result_selector: Option<Template>,
    pub(crate) result_path: ResultPath,
    pub(crate) retry: Vec<Retrier>,
    pub(crate) catch: Vec<Catcher>,
    /// Set for `ProcessorConfig.Mode: DISTRIBUTED`: each item runs as a child execution.
    pub(crate) distributed: Option<Box<Distributed>>,
}

#[derive(Debug, Clone)]
pub(crate) struct Retrier {
    pub(crate) error_equals: Vec<String>,
    pub(crate) interval_seconds: u64,
    pub(crate) max_attempts: u32,
    pub(crate) backoff_rate: f64,
    pub(crate) max_delay_seconds: Option<u64>,
    pub(crate) full_jitter: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Catcher {
    pub(crate) error_equals: Vec<String>,
    pub(crate) next: String,
    pub(crate) result_path: ResultPath,
    pub(crate) assign: Option<Assign>,
    /// JSONata: the output when caught (default: the error output).
    pub(crate) output: Option<JsonataTemplate>,
}

impl Definition {
    /// Parses and validates a definition.
    pub fn parse(json: &str) -> Result<Self, DefinitionError> {
        let value: Value = serde_json::from_str(json).map_err(|e| {
            DefinitionError::new(None, None, format!("definition is not valid JSON: {e}"))
        })?;
        Self::from_value(&value)
    }

    /// Replaces `${Name}` inside string values with `subs[Name]` (like SAM's
    /// `DefinitionSubstitutions`), then parses. A `${Name}` without a substitution is
    /// an error naming it.
    pub fn parse_with_substitutions(
        json: &str,
        subs: &BTreeMap<String, String>,
    ) -> Result<Self, DefinitionError> {
        let mut value: Value = serde_json::from_str(json).map_err(|e| {
            DefinitionError::new(None, None, format!("definition is not valid JSON: {e}"))
        })?;
        substitute(&mut value, subs, "$")?;
        Self::from_value(&value)
    }

    /// Parses and validates an already-decoded definition.
    pub fn from_value(value: &Value) -> Result<Self, DefinitionError> {
        let Value::Object(top) = value else {
            return Err(DefinitionError::new(
                None,
                None,
                "definition must be a JSON object",
            ));
        };
        for key in top.keys() {
            match key.as_str() {
                "Comment" | "StartAt" | "States" | "TimeoutSeconds" | "Version"
                | "QueryLanguage" => {}
                other => {
                    return Err(DefinitionError::new(
                        None,
                        Some(other),
                        "unknown or unsupported top-level field",
                    ));
                }
            }
        }
        let language = check_query_language(top, None)?.unwrap_or_default();
        let comment = match top.get("Comment") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                return Err(DefinitionError::new(
                    None,
                    Some("Comment"),
                    "must be a string",
                ));
            }
        };
        if let Some(version) = top.get("Version")
            && !version.is_string()
        {
            return Err(DefinitionError::new(
                None,
                Some("Version"),
                "must be a string",
            ));
        }
        let timeout_seconds = positive_seconds(top, "TimeoutSeconds")
            .map_err(|m| DefinitionError::new(None, Some("TimeoutSeconds"), m))?;
        let machine = parse_machine(top, "", None, "", language)?;
        check_variable_scopes(&machine, &BTreeSet::new())?;
        distributed::check_labels(&machine, &mut BTreeMap::new())?;
        Ok(Self {
            comment,
            timeout_seconds,
            machine: Arc::new(machine),
            reads_execution_input: any_string(value, &may_read_execution_input),
        })
    }

    /// Names of the top-level states, in name order.
    pub fn states(&self) -> impl Iterator<Item = &str> {
        self.machine.states.keys().map(String::as_str)
    }

    /// The first state to run.
    #[must_use]
    pub fn start_at(&self) -> &str {
        &self.machine.start_at
    }

    /// The definition's `Comment`, if any.
    #[must_use]
    pub fn comment(&self) -> Option<&str> {
        self.comment.as_deref()
    }

    /// The definition-level `TimeoutSeconds`, if any.
    #[must_use]
    pub fn timeout_seconds(&self) -> Option<u64> {
        self.timeout_seconds
    }

    /// Every Task state's resource, including those nested in Parallel and Map states.
    #[must_use]
    pub fn task_resources(&self) -> Vec<TaskResource> {
        let mut out = Vec::new();
        collect_tasks(&self.machine, &mut out);
        out
    }
}

fn any_string(value: &Value, test: &impl Fn(&str) -> bool) -> bool {
    match value {
        Value::String(s) => test(s),
        Value::Array(items) => items.iter().any(|v| any_string(v, test)),
        Value::Object(map) => map.values().any(|v| any_string(v, test)),
        _ => false,
    }
}

/// Whether a field's text may read `Execution.Input` from the context object: it names
/// it, or it reads the context object (`$$`, `$states.context`) other than through a
/// member known not to hold it.
fn may_read_execution_input(text: &str) -> bool {
    const SAFE_MEMBERS: &[&str] = &[
        ".State",
        ".Task",
        ".Map",
        ".StateMachine",
        ".Execution.Name",
        ".Execution.Id",
        ".Execution.StartTime",
        ".Execution.RoleArn",
        ".Execution.RedriveCount",
    ];
    if text.contains("Input") && text.contains("Execution") {
        return true;
    }
    ["$$", "$states.context"].iter().any(|root| {
        text.match_indices(root).any(|(at, _)| {
            let rest = &text[at + root.len()..];
            !SAFE_MEMBERS.iter().any(|member| {
                rest.strip_prefix(member).is_some_and(|after| {
                    !after.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
                })
            })
        })
    })
}

/// The members of `$states` that hold no context.
const STATES_MEMBERS_WITHOUT_CONTEXT: &[&str] = &[".input", ".result", ".errorOutput"];

/// Whether a field's text may read the context object: `$$`, or `$states` other than
/// through the members that hold no context (`input`, `result`, `errorOutput`).
fn may_read_context(text: &str) -> bool {
    text.contains("$$")
        || text.match_indices("$states").any(|(at, root)| {
            let rest = &text[at + root.len()..];
            !STATES_MEMBERS_WITHOUT_CONTEXT.iter().any(|member| {
                rest.strip_prefix(member).is_some_and(|after| {
                    !after.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
                })
            })
        })
}

/// Every variable a state assigns: its own `Assign`, its catchers' and its choice rules'.
fn assigned_names(state: &State) -> Vec<&str> {
    let mut assigns: Vec<&Assign> = state.assign.iter().collect();
    let catchers: &[Catcher] = match &state.kind {
        StateKind::Task(t) => &t.catch,
        StateKind::Parallel(p) => &p.catch,
        StateKind::Map(m) => &m.catch,
        StateKind::Choice(c) => {
            assigns.extend(c.choices.iter().filter_map(|b| b.assign.as_ref()));
            &[]
        }
        _ => &[],
    };
    assigns.extend(catchers.iter().filter_map(|c| c.assign.as_ref()));
    assigns
        .into_iter()
        .flat_map(|a| a.names().iter().map(String::as_str))
        .collect()
}

/// Parallel branches and Map iterations read the enclosing scopes' variables but may
/// not assign them: Step Functions refuses such a definition, and so does this.
fn check_variable_scopes(
    machine: &StateMachine,
    outer: &BTreeSet<String>,
) -> Result<(), DefinitionError> {
    let mut visible = outer.clone();
    for state in machine.states.values() {
        for name in assigned_names(state) {
            if outer.contains(name) {
                return Err(DefinitionError::new(
                    Some(&state.display),
                    Some("Assign"),
                    format!(
                        "assigns '{name}', a variable of an enclosing scope, which is read-only inside a Parallel branch or Map iteration"
                    ),
                ));
            }
            visible.insert(name.to_owned());
        }
    }
    for state in machine.states.values() {
        match &state.kind {
            StateKind::Parallel(p) => {
                for branch in &p.branches {
                    check_variable_scopes(branch, &visible)?;
                }
            }
            // A Distributed Map's iterations are child executions, with scopes of their own.
            StateKind::Map(m) if m.distributed.is_some() => {
                check_variable_scopes(&m.processor, &BTreeSet::new())?;
            }
            StateKind::Map(m) => check_variable_scopes(&m.processor, &visible)?,
            _ => {}
        }
    }
    Ok(())
}

fn collect_tasks(machine: &StateMachine, out: &mut Vec<TaskResource>) {
    for state in machine.states.values() {
        match &state.kind {
            StateKind::Task(task) => out.push(TaskResource {
                state: state.display.clone(),
                resource: task.resource.clone(),
                handler_key: task.handler_key.clone(),
                wait_for_task_token: task.wait_for_task_token,
            }),
            StateKind::Parallel(p) => p.branches.iter().for_each(|b| collect_tasks(b, out)),
            StateKind::Map(m) => collect_tasks(&m.processor, out),
            _ => {}
        }
    }
}

fn substitute(
    value: &mut Value,
    subs: &BTreeMap<String, String>,
    at: &str,
) -> Result<(), DefinitionError> {
    match value {
        Value::String(text) if text.contains("${") => {
            *text = substitute_text(text, subs).map_err(|name| {
                DefinitionError::new(
                    None,
                    Some(at),
                    format!("no substitution given for '${{{name}}}'"),
                )
            })?;
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                substitute(item, subs, &format!("{at}[{i}]"))?;
            }
        }
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                substitute(item, subs, &format!("{at}.{key}"))?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Replaces `${Name}` (Name: letters, digits, `_`); other `${…}` text is left alone.
fn substitute_text(text: &str, subs: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let name_len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        if name_len > 0 && after[name_len..].starts_with('}') {
            let name = &after[..name_len];
            out.push_str(subs.get(name).ok_or_else(|| name.to_owned())?);
            rest = &after[name_len + 1..];
        } else {
            out.push_str("${");
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn check_query_language(
    map: &Map<String, Value>,
    state: Option<&str>,
) -> Result<Option<Language>, DefinitionError> {
    match map.get("QueryLanguage") {
        None => Ok(None),
        Some(Value::String(s)) if s == "JSONPath" => Ok(Some(Language::JsonPath)),
        Some(Value::String(s)) if s == "JSONata" => Ok(Some(Language::Jsonata)),
        Some(other) => Err(DefinitionError::new(
            state,
            Some("QueryLanguage"),
            format!("must be \"JSONPath\" or \"JSONata\", not {other}"),
        )),
    }
}

fn positive_seconds(map: &Map<String, Value>, key: &str) -> Result<Option<u64>, String> {
    match map.get(key) {
        None => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if (1..=MAX_SECONDS).contains(&n) => Ok(Some(n)),
            _ => Err(format!(
                "must be a positive integer up to {MAX_SECONDS}, not {v}"
            )),
        },
    }
}

fn non_negative_int(map: &Map<String, Value>, key: &str) -> Result<Option<u64>, String> {
    match map.get(key) {
        None => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if n <= MAX_SECONDS => Ok(Some(n)),
            _ => Err(format!(
                "must be a non-negative integer up to {MAX_SECONDS}, not {v}"
            )),
        },
    }
}

/// Parses a `StartAt` + `States` object. `prefix` is prepended to state names for
/// messages; `owner`/`owner_field` locate machine-level errors of nested machines.
fn parse_machine(
    map: &Map<String, Value>,
    prefix: &str,
    owner: Option<&str>,
    owner_field: &str,
    language: Language,
) -> Result<StateMachine, DefinitionError> {
    let field = |name: &str| format!("{owner_field}{name}");
    let start_at = match map.get("StartAt") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => {
            return Err(DefinitionError::new(
                owner,
                Some(&field("StartAt")),
                "must be a string",
            ));
        }
        None => {
            return Err(DefinitionError::new(
                owner,
                Some(&field("StartAt")),
                "is required",
            ));
        }
    };
    let raw_states = match map.get("States") {
        Some(Value::Object(states)) if !states.is_empty() => states,
        Some(Value::Object(_)) => {
            return Err(DefinitionError::new(
                owner,
                Some(&field("States")),
                "must contain at least one state",
            ));
        }
        Some(_) => {
            return Err(DefinitionError::new(
                owner,
                Some(&field("States")),
                "must be an object",
            ));
        }
        None => {
            return Err(DefinitionError::new(
                owner,
                Some(&field("States")),
                "is required",
            ));
        }
    };
    let mut states = BTreeMap::new();
    for (name, raw) in raw_states {
        let display = format!("{prefix}{name}");
        if name.is_empty() || name.chars().count() > 80 {
            return Err(DefinitionError::new(
                Some(&display),
                None,
                "state names must be 1 to 80 characters long",
            ));
        }
        states.insert(name.clone(), parse_state(name, &display, raw, language)?);
    }
    if !states.contains_key(&start_at) {
        return Err(DefinitionError::new(
            owner,
            Some(&field("StartAt")),
            format!("names a missing state '{start_at}'"),
        ));
    }
    let machine = StateMachine { start_at, states };
    check_transitions(&machine)?;
    Ok(machine)
}

/// Every state another one can move to, with the field that names it.
fn transitions(state: &State) -> Vec<(String, &str)> {
    let mut out = Vec::new();
    if let Some(next) = &state.next {
        out.push(("Next".to_owned(), next.as_str()));
    }
    let catch = match &state.kind {
        StateKind::Choice(choice) => {
            for (i, branch) in choice.choices.iter().enumerate() {
                out.push((format!("Choices[{i}].Next"), branch.next.as_str()));
            }
            if let Some(default) = &choice.default {
                out.push(("Default".to_owned(), default.as_str()));
            }
            &[][..]
        }
        StateKind::Task(t) => &t.catch[..],
        StateKind::Parallel(p) => &p.catch[..],
        StateKind::Map(m) => &m.catch[..],
        _ => &[][..],
    };
    for (i, catcher) in catch.iter().enumerate() {
        out.push((format!("Catch[{i}].Next"), catcher.next.as_str()));
    }
    out
}

fn check_transitions(machine: &StateMachine) -> Result<(), DefinitionError> {
    for state in machine.states.values() {
        for (field, target) in transitions(state) {
            if !machine.states.contains_key(target) {
                return Err(DefinitionError::new(
                    Some(&state.display),
                    Some(&field),
                    format!("names a missing state '{target}'"),
                ));
            }
        }
    }
    let mut reached = BTreeSet::new();
    let mut queue = VecDeque::from([machine.start_at.as_str()]);
    while let Some(name) = queue.pop_front() {
        if reached.insert(name) {
            for (_, target) in transitions(&machine.states[name]) {
                queue.push_back(target);
            }
        }
    }
    if let Some(state) = machine
        .states
        .values()
        .find(|s| !reached.contains(&*s.name))
    {
        return Err(DefinitionError::new(
            Some(&state.display),
            None,
            "is not reachable from StartAt",
        ));
    }
    Ok(())
}

/// Fields each state type accepts besides `Type`, `Comment` and `QueryLanguage`.
fn allowed_fields(type_name: &str) -> &'static [&'static str] {
    match type_name {
        "Pass" => &[
            "Assign",
            "Next",
            "End",
            "InputPath",
            "OutputPath",
            "Parameters",
            "Result",
            "ResultPath",
        ],
        "Task" => &[
            "Assign",
            "Next",
            "End",
            "InputPath",
            "OutputPath",
            "Parameters",
            "ResultSelector",
            "ResultPath",
            "Resource",
            "TimeoutSeconds",
            "TimeoutSecondsPath",
            "HeartbeatSeconds",
            "HeartbeatSecondsPath",
            "Retry",
            "Catch",
            // Role assumption has no meaning locally; accepted and ignored.
            "Credentials",
        ],
        "Choice" => &["InputPath", "OutputPath", "Choices", "Default", "Assign"],
        "Wait" => &[
            "Assign",
            "Next",
            "End",
            "InputPath",
            "OutputPath",
            "Seconds",
            "SecondsPath",
            "Timestamp",
            "TimestampPath",
        ],
        "Succeed" => &["InputPath", "OutputPath"],
        "Fail" => &["Error", "ErrorPath", "Cause", "CausePath"],
        "Parallel" => &[
            "Assign",
            "Next",
            "End",
            "InputPath",
            "OutputPath",
            "Parameters",
            "ResultSelector",
            "ResultPath",
            "Retry",
            "Catch",
            "Branches",
        ],
        "Map" => &[
            "Assign",
            "Next",
            "End",
            "InputPath",
            "OutputPath",
            "ItemsPath",
            "ItemSelector",
            "Parameters",
            "ItemProcessor",
            "Iterator",
            "MaxConcurrency",
            "MaxConcurrencyPath",
            "ResultSelector",
            "ResultPath",
            "Retry",
            "Catch",
            "Label",
            "ItemReader",
            "ItemBatcher",
            "ResultWriter",
            "ToleratedFailurePercentage",
            "ToleratedFailurePercentagePath",
            "ToleratedFailureCount",
            "ToleratedFailureCountPath",
        ],
        _ => &[],
    }
}

/// Fields each state type accepts in a JSONata state besides `Type`, `Comment` and
/// `QueryLanguage`.
fn allowed_jsonata_fields(type_name: &str) -> &'static [&'static str] {
    match type_name {
        "Pass" => &["Assign", "Next", "End", "Output"],
        "Task" => &[
            "Assign",
            "Next",
            "End",
            "Output",
            "Arguments",
            "Resource",
            "TimeoutSeconds",
            "HeartbeatSeconds",
            "Retry",
            "Catch",
            "Credentials",
        ],
        "Choice" => &["Choices", "Default", "Output", "Assign"],
        "Wait" => &["Assign", "Next", "End", "Output", "Seconds", "Timestamp"],
        "Succeed" => &["Output"],
        "Fail" => &["Error", "Cause"],
        "Parallel" => &[
            "Assign",
            "Next",
            "End",
            "Output",
            "Arguments",
            "Retry",
            "Catch",
            "Branches",
        ],
        "Map" => &[
            "Assign",
            "Next",
            "End",
            "Output",
            "Items",
            "ItemSelector",
            "ItemProcessor",
            "Iterator",
            "MaxConcurrency",
            "Retry",
            "Catch",
            "Label",
            "ItemReader",
            "ItemBatcher",
            "ResultWriter",
            "ToleratedFailurePercentage",
            "ToleratedFailureCount",
        ],
        _ => &[],
    }
}

/// Why a field of the other query language is refused.
fn language_mismatch(language: Language, field: &str) -> Option<&'static str> {
    const JSONPATH_ONLY: &[&str] = &[
        "InputPath",
        "OutputPath",
        "Parameters",
        "ResultSelector",
        "ResultPath",
        "ItemsPath",
        "Result",
        "TimeoutSecondsPath",
        "HeartbeatSecondsPath",
        "SecondsPath",
        "TimestampPath",
        "MaxConcurrencyPath",
        "ErrorPath",
        "CausePath",
        "ToleratedFailurePercentagePath",
        "ToleratedFailureCountPath",
    ];
    const JSONATA_ONLY: &[&str] = &["Arguments", "Output", "Items"];
    match language {
        Language::Jsonata if JSONPATH_ONLY.contains(&field) => Some(
            "is a JSONPath field; a JSONata state uses 'Arguments', 'Output' and {% %} expressions",
        ),
        Language::JsonPath if JSONATA_ONLY.contains(&field) => {
            Some("is a JSONata field; set \"QueryLanguage\": \"JSONata\" to use it")
        }
        _ => None,
    }
}

pub(crate) struct StateParser<'a> {
    pub(crate) display: &'a str,
    pub(crate) map: &'a Map<String, Value>,
    /// The state's query language.
    pub(crate) language: Language,
    /// The language of the definition, which nested machines' states default to.
    pub(crate) default_language: Language,
}

/// `field.inner`, or `field` alone when `inner` is empty.
fn join_field(field: &str, inner: &str) -> String {
    if inner.is_empty() {
        field.to_owned()
    } else if inner.starts_with('[') {
        format!("{field}{inner}")
    } else {
        format!("{field}.{inner}")
    }
}

impl<'a> StateParser<'a> {
    pub(crate) fn err(&self, field: &str, message: impl Into<String>) -> DefinitionError {
        DefinitionError::new(Some(self.display), Some(field), message)
    }

    /// Whether the field is a `{% … %}` JSONata expression (in a JSONata state).
    pub(crate) fn is_expression(&self, key: &str) -> bool {
        self.language == Language::Jsonata
            && self
                .map
                .get(key)
                .and_then(Value::as_str)
                .is_some_and(jsonata::is_expression)
    }

    /// A JSONata field value (any JSON, with `{% … %}` expressions anywhere).
    pub(crate) fn jsonata(&self, key: &str) -> Result<Option<JsonataTemplate>, DefinitionError> {
        match self.map.get(key) {
            None => Ok(None),
            Some(value) => JsonataTemplate::compile(value)
                .map(Some)
                .map_err(|(at, message)| self.err(&join_field(key, &at), message)),
        }
    }

    /// An `Assign` field of `map` (the state, a catcher or a choice rule), located at `field`.
    fn assign_at(
        &self,
        map: &Map<String, Value>,
        field: &str,
    ) -> Result<Option<Assign>, DefinitionError> {
        let compiled = match self.language {
            Language::JsonPath => map.get("Assign").map(Assign::compile),
            Language::Jsonata => map.get("Assign").map(Assign::compile_jsonata),
        };
        match compiled {
            None => Ok(None),
            Some(compiled) => compiled.map(Some).map_err(|(key, message)| {
                let at = if key.is_empty() {
                    field.to_owned()
                } else {
                    format!("{field}.{key}")
                };
                self.err(&at, message)
            }),
        }
    }

    pub(crate) fn string(&self, key: &str) -> Result<Option<&'a str>, DefinitionError> {
        match self.map.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.err(key, "must be a string")),
        }
    }

    /// `InputPath`/`OutputPath`: default `$`; `null` yields `None`.
    fn selection_path(&self, key: &str) -> Result<Option<JsonPath>, DefinitionError> {
        match self.map.get(key) {
            None => Ok(Some(JsonPath::parse("$").expect("'$' is a valid path"))),
            Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => JsonPath::parse(s).map(Some).map_err(|e| self.err(key, e.0)),
            Some(_) => Err(self.err(key, "must be a path string or null")),
        }
    }

    /// A definite path read from the input or a variable (`ItemsPath`, `…SecondsPath`…).
    pub(crate) fn reference_path(&self, key: &str) -> Result<Option<JsonPath>, DefinitionError> {
        match self.map.get(key) {
            None => Ok(None),
            Some(Value::String(s)) if s.starts_with("$$") => Err(self.err(
                key,
                format!("reference path '{s}' cannot refer to the context object"),
            )),
            Some(Value::String(s)) => JsonPath::parse_definite(s)
                .map(Some)
                .map_err(|e| self.err(key, e.0)),
            Some(_) => Err(self.err(key, "must be a reference path string")),
        }
    }

    fn result_path(&self) -> Result<ResultPath, DefinitionError> {
        result_path_of(self.map, "ResultPath").map_err(|m| self.err("ResultPath", m))
    }

    pub(crate) fn template(&self, key: &str) -> Result<Option<Template>, DefinitionError> {
        match self.map.get(key) {
            None => Ok(None),
            Some(value @ Value::Object(_)) => Template::compile(value)
                .map(Some)
                .map_err(|(at, message)| self.err(&format!("{key}.{at}"), message)),
            Some(_) => Err(self.err(key, "must be an object")),
        }
    }

    pub(crate) fn amount(
        &self,
        key: &str,
        path_key: &str,
        allow_zero: bool,
    ) -> Result<Option<Amount>, DefinitionError> {
        if self.is_expression(key) {
            return Ok(self.jsonata(key)?.map(Amount::Expr));
        }
        let fixed = if allow_zero {
            non_negative_int(self.map, key)
        } else {
            positive_seconds(self.map, key)
        }
        .map_err(|m| self.err(key, m))?;
        let path = self.reference_path(path_key)?;
        match (fixed, path) {
            (Some(_), Some(_)) => {
                Err(self.err(path_key, format!("cannot be combined with '{key}'")))
            }
            (Some(n), None) => Ok(Some(Amount::Fixed(n))),
            (None, Some(p)) => Ok(Some(Amount::Path(p))),
            (None, None) => Ok(None),
        }
    }

    fn retriers(&self) -> Result<Vec<Retrier>, DefinitionError> {
        let Some(raw) = self.map.get("Retry") else {
            return Ok(Vec::new());
        };
        let Value::Array(items) = raw else {
            return Err(self.err("Retry", "must be an array of retriers"));
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let at = |field: &str| format!("Retry[{i}].{field}");
            let Value::Object(map) = item else {
                return Err(self.err(&format!("Retry[{i}]"), "must be an object"));
            };
            for key in map.keys() {
                if !matches!(
                    key.as_str(),
                    "ErrorEquals"
                        | "IntervalSeconds"
                        | "MaxAttempts"
                        | "BackoffRate"
                        | "MaxDelaySeconds"
                        | "JitterStrategy"
                        | "Comment"
                ) {
                    return Err(self.err(&at(key), "unknown retrier field"));
                }
            }
            let error_equals = self.error_equals(map, &at("ErrorEquals"), i + 1 == items.len())?;
            let interval_seconds = positive_seconds(map, "IntervalSeconds")
                .map_err(|m| self.err(&at("IntervalSeconds"), m))?
                .unwrap_or(1);
            let max_attempts = non_negative_int(map, "MaxAttempts")
                .map_err(|m| self.err(&at("MaxAttempts"), m))?
                .map_or(3, |n| u32::try_from(n).unwrap_or(u32::MAX));
            let backoff_rate = match map.get("BackoffRate") {
                None => 2.0,
                Some(v) => match v.as_f64() {
                    Some(rate) if rate >= 1.0 => rate,
                    _ => {
                        return Err(self.err(
                            &at("BackoffRate"),
                            format!("must be a number >= 1.0, not {v}"),
                        ));
                    }
                },
            };
            let max_delay_seconds = positive_seconds(map, "MaxDelaySeconds")
                .map_err(|m| self.err(&at("MaxDelaySeconds"), m))?;
            let full_jitter = match map.get("JitterStrategy") {
                None => false,
                Some(Value::String(s)) if s == "NONE" => false,
                Some(Value::String(s)) if s == "FULL" => true,
                Some(v) => {
                    return Err(self.err(
                        &at("JitterStrategy"),
                        format!("must be \"FULL\" or \"NONE\", not {v}"),
                    ));
                }
            };
            out.push(Retrier {
                error_equals,
                interval_seconds,
                max_attempts,
                backoff_rate,
                max_delay_seconds,
                full_jitter,
            });
        }
        Ok(out)
    }

    fn catchers(&self) -> Result<Vec<Catcher>, DefinitionError> {
        let Some(raw) = self.map.get("Catch") else {
            return Ok(Vec::new());
        };
        let Value::Array(items) = raw else {
            return Err(self.err("Catch", "must be an array of catchers"));
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let at = |field: &str| format!("Catch[{i}].{field}");
            let Value::Object(map) = item else {
                return Err(self.err(&format!("Catch[{i}]"), "must be an object"));
            };
            for key in map.keys() {
                let allowed = match self.language {
                    Language::JsonPath => "ResultPath",
                    Language::Jsonata => "Output",
                };
                if !matches!(key.as_str(), "ErrorEquals" | "Next" | "Comment" | "Assign")
                    && key != allowed
                {
                    return Err(self.err(&at(key), "unknown catcher field"));
                }
            }
            let error_equals = self.error_equals(map, &at("ErrorEquals"), i + 1 == items.len())?;
            let next = match map.get("Next") {
                Some(Value::String(s)) => s.clone(),
                Some(_) => return Err(self.err(&at("Next"), "must be a string")),
                None => return Err(self.err(&at("Next"), "is required")),
            };
            let result_path =
                result_path_of(map, "ResultPath").map_err(|m| self.err(&at("ResultPath"), m))?;
            let assign = self.assign_at(map, &at("Assign"))?;
            let output = match map.get("Output") {
                Some(value) => Some(
                    JsonataTemplate::compile(value)
                        .map_err(|(inner, m)| self.err(&join_field(&at("Output"), &inner), m))?,
                ),
                None => None,
            };
            out.push(Catcher {
                error_equals,
                next,
                result_path,
                assign,
                output,
            });
        }
        Ok(out)
    }

    fn error_equals(
        &self,
        map: &Map<String, Value>,
        field: &str,
        is_last: bool,
    ) -> Result<Vec<String>, DefinitionError> {
        let Some(Value::Array(items)) = map.get("ErrorEquals") else {
            return Err(self.err(
                field,
                "is required and must be a non-empty array of error names",
            ));
        };
        let mut names_out = Vec::with_capacity(items.len());
        for item in items {
            match item {
                Value::String(s) if !s.is_empty() => names_out.push(s.clone()),
                _ => return Err(self.err(field, "must contain only non-empty strings")),
            }
        }
        if names_out.is_empty() {
            return Err(self.err(field, "must not be empty"));
        }
        if names_out.iter().any(|n| n == names::ALL) {
            if names_out.len() > 1 {
                return Err(self.err(field, "'States.ALL' must appear alone"));
            }
            if !is_last {
                return Err(self.err(field, "'States.ALL' must be in the last entry"));
            }
        }
        Ok(names_out)
    }
}

fn result_path_of(map: &Map<String, Value>, key: &str) -> Result<ResultPath, String> {
    match map.get(key) {
        None => Ok(Some(JsonPath::parse("$").expect("'$' is a valid path"))),
        Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => JsonPath::parse_reference(s).map(Some).map_err(|e| e.0),
        Some(_) => Err("must be a reference path string or null".into()),
    }
}

fn parse_state(
    name: &str,
    display: &str,
    raw: &Value,
    default_language: Language,
) -> Result<State, DefinitionError> {
    let Value::Object(map) = raw else {
        return Err(DefinitionError::new(
            Some(display),
            None,
            "a state must be an object",
        ));
    };
    let language = check_query_language(map, Some(display))?.unwrap_or(default_language);
    let p = StateParser {
        display,
        map,
        language,
        default_language,
    };
    let type_name = match map.get("Type") {
        Some(Value::String(t)) => t.as_str(),
        Some(_) => return Err(p.err("Type", "must be a string")),
        None => return Err(p.err("Type", "is required")),
    };
    let allowed = match language {
        Language::JsonPath => allowed_fields(type_name),
        Language::Jsonata => allowed_jsonata_fields(type_name),
    };
    if allowed.is_empty() {
        return Err(p.err("Type", format!("unknown state type '{type_name}'")));
    }
    for key in map.keys() {
        if matches!(key.as_str(), "Type" | "Comment" | "QueryLanguage")
            || allowed.contains(&key.as_str())
        {
            continue;
        }
        if let Some(why) = language_mismatch(language, key) {
            return Err(p.err(key, why));
        }
        if matches!(key.as_str(), "Next" | "End") {
            return Err(p.err(key, format!("a {type_name} state cannot have '{key}'")));
        }
        return Err(p.err(key, format!("unknown field for a {type_name} state")));
    }

    let transitions_by_next = !matches!(type_name, "Choice" | "Succeed" | "Fail");
    let next = if transitions_by_next {
        let next = p.string("Next")?;
        let end = match map.get("End") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(p.err("End", "must be a boolean")),
        };
        match (next, end) {
            (Some(_), true) => return Err(p.err("End", "cannot be combined with 'Next'")),
            (None, false) => {
                return Err(p.err("Next", "one of 'Next' or '\"End\": true' is required"));
            }
            (next, _) => next.map(str::to_owned),
        }
    } else {
        None
    };

    let assign = p.assign_at(map, "Assign")?;
    let input_path = p.selection_path("InputPath")?;
    let output_path = p.selection_path("OutputPath")?;
    let jsonata = match language {
        Language::JsonPath => None,
        Language::Jsonata => Some(Box::new(JsonataFields {
            arguments: p.jsonata("Arguments")?,
            output: p.jsonata("Output")?,
        })),
    };
    let kind = match type_name {
        "Pass" => StateKind::Pass(PassState {
            result: map.get("Result").cloned(),
            parameters: p.template("Parameters")?,
            result_path: p.result_path()?,
        }),
        "Task" => StateKind::Task(Box::new(parse_task(&p)?)),
        "Choice" => StateKind::Choice(parse_choice(&p)?),
        "Wait" => StateKind::Wait(parse_wait(&p)?),
        "Succeed" => StateKind::Succeed,
        "Fail" => StateKind::Fail(FailState {
            error: fail_text(&p, "Error", "ErrorPath")?,
            cause: fail_text(&p, "Cause", "CausePath")?,
        }),
        "Parallel" => StateKind::Parallel(parse_parallel(&p)?),
        "Map" => StateKind::Map(Box::new(parse_map(&p)?)),
        _ => unreachable!("type names were checked against allowed_fields"),
    };
    Ok(State {
        name: name.into(),
        display: display.to_owned(),
        input_path,
        output_path,
        next,
        assign,
        jsonata,
        kind,
        context_reads: context_reads(raw),
    })
}

/// What a state's fields (`raw`) may read of the context object.
fn context_reads(raw: &Value) -> ContextReads {
    if !any_string(raw, &may_read_context) {
        ContextReads::Nothing
    } else if any_string(raw, &reads_context_beyond_task_token) {
        ContextReads::Everything
    } else {
        ContextReads::TaskToken
    }
}

/// Whether a field's text may read anything of the context object but its task token,
/// as a whole member: `$$.Task.Token` or `$states.context.Task.Token` followed by neither
/// a name character nor a deeper step.
fn reads_context_beyond_task_token(text: &str) -> bool {
    const TOKEN: &str = ".Task.Token";
    let exactly_token = |rest: &str| {
        rest.strip_prefix(TOKEN).is_some_and(|after| {
            !after.starts_with(|c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '['))
        })
    };
    let beyond_dollars = text
        .match_indices("$$")
        .any(|(at, root)| !exactly_token(&text[at + root.len()..]));
    let beyond_states = text.match_indices("$states").any(|(at, root)| {
        let rest = &text[at + root.len()..];
        match rest.strip_prefix(".context") {
            Some(after) => !exactly_token(after),
            None => !STATES_MEMBERS_WITHOUT_CONTEXT.iter().any(|member| {
                rest.strip_prefix(member).is_some_and(|after| {
                    !after.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
                })
            }),
        }
    });
    beyond_dollars || beyond_states
}

fn parse_task(p: &StateParser<'_>) -> Result<TaskState, DefinitionError> {
    let resource = p
        .string("Resource")?
        .filter(|r| !r.is_empty())
        .ok_or_else(|| p.err("Resource", "is required"))?;
    let integration_suffix = resource.rsplit_once('.').map(|(_, suffix)| suffix);
    if integration_suffix.is_some_and(|s| s == "sync" || s.starts_with("sync:")) {
        return Err(p.err(
            "Resource",
            format!("'{resource}': the '.sync' integration pattern is not supported"),
        ));
    }
    let (handler_key, wait_for_task_token) = match resource.strip_suffix(WAIT_FOR_TASK_TOKEN) {
        Some(base) => (base.to_owned(), true),
        None => (resource.to_owned(), false),
    };
    // Step Functions accepts a `.waitForTaskToken` task that passes no `$$.Task.Token`
    // (it then waits until its timeout), so this does too.
    let parameters = p.template("Parameters")?;
    let timeout = p
        .amount("TimeoutSeconds", "TimeoutSecondsPath", false)?
        .unwrap_or(Amount::Fixed(DEFAULT_TASK_TIMEOUT_SECONDS));
    let heartbeat = p.amount("HeartbeatSeconds", "HeartbeatSecondsPath", false)?;
    if let (Amount::Fixed(t), Some(Amount::Fixed(h))) = (&timeout, &heartbeat)
        && h >= t
    {
        return Err(p.err(
            "HeartbeatSeconds",
            format!("must be smaller than TimeoutSeconds ({h} >= {t})"),
        ));
    }
    Ok(TaskState {
        resource: resource.to_owned(),
        event_resource: crate::history::split_resource(resource),
        handler_key,
        wait_for_task_token,
        parameters,
        result_selector: p.template("ResultSelector")?,
        result_path: p.result_path()?,
        timeout,
        heartbeat,
        retry: p.retriers()?,
        catch: p.catchers()?,
    })
}

fn parse_choice(p: &StateParser<'_>) -> Result<ChoiceState, DefinitionError> {
    let Some(Value::Array(items)) = p.map.get("Choices") else {
        return Err(p.err("Choices", "is required and must be a non-empty array"));
    };
    if items.is_empty() {
        return Err(p.err("Choices", "must not be empty"));
    }
    let mut choices = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let parsed = match p.language {
            Language::JsonPath => Rule::parse(item, true),
            Language::Jsonata => Rule::parse_condition(item),
        };
        let rule = parsed.map_err(|(field, message)| {
            let field = if field == "Choices" {
                format!("Choices[{i}]")
            } else {
                format!("Choices[{i}].{field}")
            };
            p.err(&field, message)
        })?;
        let next = match item.get("Next") {
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(p.err(&format!("Choices[{i}].Next"), "must be a string")),
            None => {
                return Err(p.err(
                    &format!("Choices[{i}].Next"),
                    "is required on top-level choice rules",
                ));
            }
        };
        let (assign, output) = match item {
            Value::Object(rule_map) => (
                p.assign_at(rule_map, &format!("Choices[{i}].Assign"))?,
                match rule_map.get("Output") {
                    Some(value) => Some(JsonataTemplate::compile(value).map_err(|(at, m)| {
                        p.err(&join_field(&format!("Choices[{i}].Output"), &at), m)
                    })?),
                    None => None,
                },
            ),
            _ => (None, None),
        };
        choices.push(ChoiceBranch {
            rule,
            next,
            assign,
            output,
        });
    }
    Ok(ChoiceState {
        choices,
        default: p.string("Default")?.map(str::to_owned),
    })
}

fn parse_wait(p: &StateParser<'_>) -> Result<WaitState, DefinitionError> {
    let given: Vec<&str> = ["Seconds", "SecondsPath", "Timestamp", "TimestampPath"]
        .into_iter()
        .filter(|k| p.map.contains_key(*k))
        .collect();
    if given.len() != 1 {
        let field = given.get(1).copied().unwrap_or("Seconds");
        return Err(p.err(
            field,
            "exactly one of Seconds, SecondsPath, Timestamp or TimestampPath is required",
        ));
    }
    Ok(match given[0] {
        "Seconds" | "SecondsPath" => WaitState::Seconds(
            p.amount("Seconds", "SecondsPath", true)?
                .expect("one of the two fields is present"),
        ),
        "Timestamp" if p.is_expression("Timestamp") => {
            WaitState::TimestampExpr(p.jsonata("Timestamp")?.expect("the field is present"))
        }
        "Timestamp" => {
            let text = p.string("Timestamp")?.unwrap_or_default();
            WaitState::Timestamp(choice::parse_timestamp(text).ok_or_else(|| {
                p.err(
                    "Timestamp",
                    format!("'{text}' is not an RFC 3339 timestamp"),
                )
            })?)
        }
        _ => WaitState::TimestampPath(
            p.reference_path("TimestampPath")?
                .expect("the field is present"),
        ),
    })
}

fn fail_text(
    p: &StateParser<'_>,
    key: &str,
    path_key: &str,
) -> Result<Option<FailText>, DefinitionError> {
    if p.is_expression(key) {
        return Ok(Some(FailText::Expr(
            p.jsonata(key)?.expect("the field is present"),
        )));
    }
    let literal = p.string(key)?;
    let computed = p.string(path_key)?;
    match (literal, computed) {
        (Some(_), Some(_)) => Err(p.err(path_key, format!("cannot be combined with '{key}'"))),
        (Some(text), None) => Ok(Some(FailText::Literal(text.to_owned()))),
        (None, Some(text)) if intrinsic::looks_like_call(text) => Call::parse(text)
            .map(|c| Some(FailText::Intrinsic(c)))
            .map_err(|e| p.err(path_key, e)),
        // A definite path into the input or (`$$…`) the context object.
        (None, Some(text)) => match JsonPath::parse(text) {
            Ok(path) if path.is_definite() => Ok(Some(FailText::Path(path))),
            Ok(_) => Err(p.err(
                path_key,
                format!("'{text}' must be a path naming a single value"),
            )),
            Err(e) => Err(p.err(path_key, e.0)),
        },
        (None, None) => Ok(None),
    }
}

fn parse_parallel(p: &StateParser<'_>) -> Result<ParallelState, DefinitionError> {
    let Some(Value::Array(items)) = p.map.get("Branches") else {
        return Err(p.err("Branches", "is required and must be a non-empty array"));
    };
    if items.is_empty() {
        return Err(p.err("Branches", "must not be empty"));
    }
    let mut branches = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Value::Object(map) = item else {
            return Err(p.err(&format!("Branches[{i}]"), "must be an object"));
        };
        nested_machine_fields(
            p,
            map,
            &format!("Branches[{i}]"),
            &["StartAt", "States", "Comment"],
        )?;
        let prefix = format!("{} > Branches[{i}] > ", p.display);
        branches.push(Arc::new(parse_machine(
            map,
            &prefix,
            Some(p.display),
            &format!("Branches[{i}]."),
            p.default_language,
        )?));
    }
    Ok(ParallelState {
        branches,
        parameters: p.template("Parameters")?,
        result_selector: p.template("ResultSelector")?,
        result_path: p.result_path()?,
        retry: p.retriers()?,
        catch: p.catchers()?,
    })
}

fn nested_machine_fields(
    p: &StateParser<'_>,
    map: &Map<String, Value>,
    at: &str,
    allowed: &[&str],
) -> Result<(), DefinitionError> {
    for key in map.keys() {
        if !allowed.contains(&key.as_str()) {
            return Err(p.err(&format!("{at}.{key}"), "unknown or unsupported field"));
        }
    }
    Ok(())
}

fn parse_map(p: &StateParser<'_>) -> Result<MapState, DefinitionError> {
    let (field, processor) = match (p.map.get("ItemProcessor"), p.map.get("Iterator")) {
        (Some(_), Some(_)) => {
            return Err(p.err("Iterator", "cannot be combined with 'ItemProcessor'"));
        }
        (Some(v), None) => ("ItemProcessor", v),
        (None, Some(v)) => ("Iterator", v),
        (None, None) => return Err(p.err("ItemProcessor", "is required")),
    };
    let Value::Object(processor) = processor else {
        return Err(p.err(field, "must be an object"));
    };
    nested_machine_fields(
        p,
        processor,
        field,
        &["StartAt", "States", "Comment", "ProcessorConfig"],
    )?;
    let execution_type = distributed::processor_config(p, field, processor)?;
    let prefix = format!("{} > {field} > ", p.display);
    let processor = parse_machine(
        processor,
        &prefix,
        Some(p.display),
        &format!("{field}."),
        p.default_language,
    )?;
    let (item_selector, jsonata_item_selector) = if p.language == Language::Jsonata {
        (None, p.jsonata("ItemSelector")?)
    } else {
        let item_selector = match (p.template("ItemSelector")?, p.template("Parameters")?) {
            (Some(_), Some(_)) => {
                return Err(p.err("Parameters", "cannot be combined with 'ItemSelector'"));
            }
            (a, b) => a.or(b),
        };
        (item_selector, None)
    };
    let distributed = if let Some(execution_type) = execution_type {
        Some(Box::new(distributed::parse(
            p,
            field,
            execution_type,
            &processor,
        )?))
    } else {
        distributed::refuse_in_inline_map(p, field)?;
        None
    };
    Ok(MapState {
        distributed,
        items_path: p
            .reference_path("ItemsPath")?
            .unwrap_or_else(|| JsonPath::parse("$").expect("'$' is a valid path")),
        item_selector,
        items: p.jsonata("Items")?,
        jsonata_item_selector,
        processor: Arc::new(processor),
        max_concurrency: p
            .amount("MaxConcurrency", "MaxConcurrencyPath", true)?
            .unwrap_or(Amount::Fixed(0)),
        result_selector: p.template("ResultSelector")?,
        result_path: p.result_path()?,
        retry: p.retriers()?,
        catch: p.catchers()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execution_input_is_kept_in_the_context_only_when_it_may_be_read() {
        for reads in [
            "$$.Execution.Input.x",
            "$$",
            "$$.Execution",
            "States.Format('{}', $$)",
            "{% $states.context %}",
            "{% $states.context.Execution.Input %}",
            "{% $keys($states.context.Execution) %}",
        ] {
            assert!(may_read_execution_input(reads), "{reads}");
        }
        for does_not in [
            "$.x",
            "$$.State.Name",
            "$$.Map.Item.Value",
            "$$.Task.Token",
            "$$.Execution.Name",
            "{% $states.context.State.EnteredTime %}",
            "{% $states.input.Execution %}",
        ] {
            assert!(!may_read_execution_input(does_not), "{does_not}");
        }
    }

    #[test]
    fn the_context_is_built_only_for_states_that_may_read_it() {
        for reads in [
            "$$.Task.Token",
            "States.Format('{}', $$.Map.Item.Index)",
            "{% $states.context.State.Name %}",
            "{% $states %}",
            "{% $keys($states) %}",
            "{% $states.inputs %}",
        ] {
            assert!(may_read_context(reads), "{reads}");
        }
        for does_not in [
            "$.x",
            "$var.x",
            "{% $states.input.x %}",
            "{% $states.result %}",
            "{% $states.errorOutput.Error %}",
        ] {
            assert!(!may_read_context(does_not), "{does_not}");
        }
    }

    #[test]
    fn a_task_token_alone_is_told_apart_from_other_context_reads() {
        for token_only in [
            "$$.Task.Token",
            "{% $states.context.Task.Token %}",
            "{% $states.input.x & $states.context.Task.Token %}",
        ] {
            assert!(!reads_context_beyond_task_token(token_only), "{token_only}");
        }
        for beyond in [
            "$$",
            "$$.Task",
            "$$.Task.Token.x",
            "$$.Task.Token[0]",
            "$$.Task.TokenX",
            "$$.State.Name",
            "States.Format('{} {}', $$.Task.Token, $$.Execution.Id)",
            "{% $states.context %}",
            "{% $states %}",
            "{% $states.context.Execution.Input %}",
        ] {
            assert!(reads_context_beyond_task_token(beyond), "{beyond}");
        }
    }
}
