//! Execution results and their event history, shaped like Step Functions'
//! `DescribeExecution` and `GetExecutionHistory`.

use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};
use serde_json::{Value, json};

/// Lifecycle of an execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExecutionStatus {
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Aborted,
}

/// A snapshot of one execution.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Execution {
    pub name: String,
    pub status: ExecutionStatus,
    pub input: Value,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub cause: Option<String>,
    #[serde(rename = "startDate")]
    pub started_at: DateTime<Utc>,
    #[serde(rename = "stopDate")]
    pub stopped_at: Option<DateTime<Utc>>,
    #[serde(skip)]
    pub history: History,
}

/// An execution's events, oldest first. Shared rather than copied: the record of a
/// finished execution hands the same events to every reader, and a snapshot of a
/// running one costs the executor one copy only when it records its next event.
/// Reads as a slice of [`HistoryEvent`]s, and serializes as a JSON array of events in
/// the AWS shape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History(Arc<Vec<HistoryEvent>>);

impl History {
    /// Appends an event, copying the events first if a snapshot still shares them.
    pub(crate) fn push(&mut self, event: HistoryEvent) {
        Arc::make_mut(&mut self.0).push(event);
    }

    /// The events as a vector of their own (a copy if another reader shares them).
    #[must_use]
    pub fn into_vec(self) -> Vec<HistoryEvent> {
        Arc::unwrap_or_clone(self.0)
    }
}

impl std::ops::Deref for History {
    type Target = [HistoryEvent];

    fn deref(&self) -> &[HistoryEvent] {
        &self.0
    }
}

impl From<Vec<HistoryEvent>> for History {
    fn from(events: Vec<HistoryEvent>) -> Self {
        Self(Arc::new(events))
    }
}

impl<'a> IntoIterator for &'a History {
    type Item = &'a HistoryEvent;
    type IntoIter = std::slice::Iter<'a, HistoryEvent>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl Serialize for History {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.as_slice().serialize(serializer)
    }
}

/// How long one visit of a state took (a state visited twice, e.g. in a loop or in
/// several Map iterations, appears once per visit).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StateDuration {
    pub name: String,
    /// The state's `Type` (Task, Choice…).
    pub state_type: String,
    pub entered_at: DateTime<Utc>,
    /// `None` while the state runs, or when it failed without being caught.
    pub exited_at: Option<DateTime<Utc>>,
}

impl StateDuration {
    /// Time between entering and leaving the state, if it left.
    #[must_use]
    pub fn duration(&self) -> Option<TimeDelta> {
        self.exited_at.map(|exit| exit - self.entered_at)
    }
}

impl Execution {
    /// Per-visit state timings, in the order states were entered. Pairs each
    /// `…StateExited` event with its `…StateEntered` by following each event's link to
    /// the one before it in the same flow (the execution, a Parallel branch or a Map
    /// iteration), which stays within one state visit.
    #[must_use]
    pub fn state_durations(&self) -> Vec<StateDuration> {
        let by_id = |id: u64| {
            usize::try_from(id)
                .ok()
                .and_then(|i| i.checked_sub(1))
                .and_then(|i| self.history.get(i))
        };
        let mut exits = std::collections::HashMap::new();
        for event in &self.history {
            if !event.event_type.is_state_exited() {
                continue;
            }
            let mut cursor = by_id(event.link);
            while let Some(candidate) = cursor {
                if candidate.event_type.is_state_entered() {
                    exits.insert(candidate.id, event.timestamp);
                    break;
                }
                cursor = by_id(candidate.link);
            }
        }
        self.history
            .iter()
            .filter(|e| e.event_type.is_state_entered())
            .map(|e| StateDuration {
                name: e.details.state_name().unwrap_or_default().to_owned(),
                state_type: e.event_type.state_type().unwrap_or_default().to_owned(),
                entered_at: e.timestamp,
                exited_at: exits.get(&e.id).copied(),
            })
            .collect()
    }

    /// The history as `GetExecutionHistory` returns it: `{"events": [...]}`.
    #[must_use]
    pub fn history_json(&self) -> Value {
        json!({ "events": self.history })
    }
}

macro_rules! event_types {
    ($($name:ident),* $(,)?) => {
        /// The `type` of a history event, named as in Step Functions.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum HistoryEventType { $($name),* }

        impl HistoryEventType {
            /// The name Step Functions uses, e.g. `TaskStateEntered`.
            #[must_use]
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$name => stringify!($name)),* }
            }
        }
    };
}

event_types!(
    ExecutionStarted,
    ExecutionSucceeded,
    ExecutionFailed,
    ExecutionTimedOut,
    ExecutionAborted,
    TaskStateEntered,
    TaskStateExited,
    TaskScheduled,
    TaskStarted,
    TaskSubmitted,
    TaskSucceeded,
    TaskFailed,
    TaskTimedOut,
    LambdaFunctionScheduled,
    LambdaFunctionStarted,
    LambdaFunctionSucceeded,
    LambdaFunctionFailed,
    LambdaFunctionTimedOut,
    ChoiceStateEntered,
    ChoiceStateExited,
    PassStateEntered,
    PassStateExited,
    WaitStateEntered,
    WaitStateExited,
    SucceedStateEntered,
    SucceedStateExited,
    FailStateEntered,
    ParallelStateEntered,
    ParallelStateStarted,
    ParallelStateSucceeded,
    ParallelStateFailed,
    ParallelStateExited,
    MapStateEntered,
    MapStateStarted,
    MapStateSucceeded,
    MapStateFailed,
    MapStateExited,
    MapIterationStarted,
    MapIterationSucceeded,
    MapIterationFailed,
    MapRunStarted,
    MapRunSucceeded,
    MapRunFailed,
);

impl HistoryEventType {
    pub(crate) fn entered(state_type: &str) -> Self {
        match state_type {
            "Task" => Self::TaskStateEntered,
            "Choice" => Self::ChoiceStateEntered,
            "Pass" => Self::PassStateEntered,
            "Wait" => Self::WaitStateEntered,
            "Succeed" => Self::SucceedStateEntered,
            "Fail" => Self::FailStateEntered,
            "Parallel" => Self::ParallelStateEntered,
            _ => Self::MapStateEntered,
        }
    }

    /// `None` for Fail states, which never exit.
    pub(crate) fn exited(state_type: &str) -> Option<Self> {
        Some(match state_type {
            "Task" => Self::TaskStateExited,
            "Choice" => Self::ChoiceStateExited,
            "Pass" => Self::PassStateExited,
            "Wait" => Self::WaitStateExited,
            "Succeed" => Self::SucceedStateExited,
            "Parallel" => Self::ParallelStateExited,
            "Map" => Self::MapStateExited,
            _ => return None,
        })
    }

    /// Whether this is a `<Type>StateEntered` event.
    #[must_use]
    pub fn is_state_entered(self) -> bool {
        self.as_str().ends_with("StateEntered")
    }

    /// Whether this is a `<Type>StateExited` event.
    #[must_use]
    pub fn is_state_exited(self) -> bool {
        self.as_str().ends_with("StateExited")
    }

    /// For state entered/exited events, the state type (`Task`, `Map`…).
    #[must_use]
    pub fn state_type(self) -> Option<&'static str> {
        let name = self.as_str();
        name.strip_suffix("StateEntered")
            .or_else(|| name.strip_suffix("StateExited"))
    }

    /// The key AWS puts the details under, e.g. `stateEnteredEventDetails`.
    fn details_key(self) -> String {
        if self.is_state_entered() {
            return "stateEnteredEventDetails".into();
        }
        if self.is_state_exited() {
            return "stateExitedEventDetails".into();
        }
        let name = self.as_str();
        let mut key = String::with_capacity(name.len() + 12);
        let mut chars = name.chars();
        if let Some(first) = chars.next() {
            key.push(first.to_ascii_lowercase());
        }
        key.extend(chars);
        key.push_str("EventDetails");
        key
    }
}

impl Serialize for HistoryEventType {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// A JSON payload of a history event (a state's input or output, a task's parameters
/// or result), kept as the JSON text AWS puts in the event: compact, written once, and
/// shared rather than copied by every clone of the event.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct JsonText(Arc<str>);

impl JsonText {
    /// The JSON text of `value`.
    #[must_use]
    pub fn new(value: &Value) -> Self {
        thread_local! {
            // Reused so that writing a payload allocates only the text it keeps.
            static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        BUFFER.with_borrow_mut(|buffer| {
            buffer.clear();
            // Writing a `Value` to memory cannot fail, and serde_json writes UTF-8.
            let _ = serde_json::to_writer(&mut *buffer, value);
            Self(std::str::from_utf8(buffer).unwrap_or_default().into())
        })
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The payload as a JSON value.
    #[must_use]
    pub fn to_value(&self) -> Value {
        // The text was written from a value, so it always parses.
        serde_json::from_str(&self.0).unwrap_or(Value::Null)
    }

    /// Length of the JSON text in bytes (what Step Functions' payload quota counts).
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always `false`: the shortest JSON text has one character.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<&Value> for JsonText {
    fn from(value: &Value) -> Self {
        Self::new(value)
    }
}

impl From<Value> for JsonText {
    fn from(value: Value) -> Self {
        Self::new(&value)
    }
}

impl PartialEq<Value> for JsonText {
    fn eq(&self, other: &Value) -> bool {
        self.to_value() == *other
    }
}

impl std::fmt::Debug for JsonText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Display for JsonText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What an event is about. JSON payloads are kept as [`JsonText`], the JSON strings
/// AWS reports them as.
#[derive(Debug, Clone, PartialEq)]
pub enum EventDetails {
    None,
    ExecutionStarted {
        input: JsonText,
    },
    ExecutionSucceeded {
        output: JsonText,
    },
    /// Failed, timed out or aborted executions.
    ExecutionError {
        error: Option<String>,
        cause: Option<String>,
    },
    StateEntered {
        name: Arc<str>,
        input: JsonText,
    },
    StateExited {
        name: Arc<str>,
        output: JsonText,
    },
    TaskScheduled {
        resource_type: Arc<str>,
        resource: Arc<str>,
        parameters: JsonText,
        timeout_seconds: Option<u64>,
        heartbeat_seconds: Option<u64>,
    },
    TaskStarted {
        resource_type: Arc<str>,
        resource: Arc<str>,
    },
    /// `TaskSubmitted` and `TaskSucceeded`.
    TaskOutput {
        resource_type: Arc<str>,
        resource: Arc<str>,
        output: JsonText,
    },
    /// `TaskFailed` and `TaskTimedOut`.
    TaskError {
        resource_type: Arc<str>,
        resource: Arc<str>,
        error: String,
        cause: String,
    },
    /// `LambdaFunctionScheduled`: a Task whose resource is a Lambda function ARN.
    LambdaScheduled {
        resource: Arc<str>,
        input: JsonText,
        timeout_seconds: Option<u64>,
    },
    /// `LambdaFunctionSucceeded`.
    LambdaOutput {
        output: JsonText,
    },
    /// `LambdaFunctionFailed` and `LambdaFunctionTimedOut`.
    LambdaError {
        error: String,
        cause: String,
    },
    MapStarted {
        length: usize,
    },
    MapIteration {
        name: Arc<str>,
        index: usize,
    },
    /// `MapRunStarted`: a Distributed Map state's Map Run.
    MapRunStarted {
        map_run_arn: String,
    },
}

impl EventDetails {
    /// The state a state entered/exited event is about.
    #[must_use]
    pub fn state_name(&self) -> Option<&str> {
        match self {
            Self::StateEntered { name, .. } | Self::StateExited { name, .. } => Some(name),
            _ => None,
        }
    }
}

/// One entry of an execution's history.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEvent {
    /// 1-based position in the history.
    pub id: u64,
    /// The event recorded just before this one, as Step Functions reports it (0 for
    /// the first event and for the first state's entry).
    pub previous_event_id: u64,
    pub timestamp: DateTime<Utc>,
    pub event_type: HistoryEventType,
    pub details: EventDetails,
    /// The event before this one in its own flow (the execution, one Parallel branch
    /// or one Map iteration); not part of the AWS shape.
    pub(crate) link: u64,
}

impl Serialize for HistoryEvent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry(
            "timestamp",
            &self.timestamp.to_rfc3339_opts(SecondsFormat::Millis, true),
        )?;
        map.serialize_entry("type", &self.event_type)?;
        map.serialize_entry("id", &self.id)?;
        map.serialize_entry("previousEventId", &self.previous_event_id)?;
        let not_truncated = json!({"truncated": false});
        let details = match &self.details {
            EventDetails::None => None,
            EventDetails::ExecutionStarted { input } => Some(json!({
                "input": input.as_str(), "inputDetails": not_truncated,
            })),
            EventDetails::ExecutionSucceeded { output } | EventDetails::LambdaOutput { output } => {
                Some(json!({ "output": output.as_str(), "outputDetails": not_truncated }))
            }
            EventDetails::ExecutionError { error, cause } => {
                let mut d = serde_json::Map::new();
                if let Some(error) = error {
                    d.insert("error".into(), json!(error));
                }
                if let Some(cause) = cause {
                    d.insert("cause".into(), json!(cause));
                }
                Some(Value::Object(d))
            }
            EventDetails::StateEntered { name, input } => Some(json!({
                "name": &**name, "input": input.as_str(), "inputDetails": not_truncated,
            })),
            EventDetails::StateExited { name, output } => Some(json!({
                "name": &**name, "output": output.as_str(), "outputDetails": not_truncated,
            })),
            EventDetails::TaskScheduled {
                resource_type,
                resource,
                parameters,
                timeout_seconds,
                heartbeat_seconds,
            } => {
                let mut d = json!({
                    "resourceType": &**resource_type, "resource": &**resource,
                    "region": "local", "parameters": parameters.as_str(),
                });
                if let Some(t) = timeout_seconds {
                    d["timeoutInSeconds"] = json!(t);
                }
                if let Some(h) = heartbeat_seconds {
                    d["heartbeatInSeconds"] = json!(h);
                }
                Some(d)
            }
            EventDetails::TaskStarted {
                resource_type,
                resource,
            } => Some(json!({
                "resourceType": &**resource_type, "resource": &**resource,
            })),
            EventDetails::TaskOutput {
                resource_type,
                resource,
                output,
            } => Some(json!({
                "resourceType": &**resource_type, "resource": &**resource,
                "output": output.as_str(), "outputDetails": not_truncated,
            })),
            EventDetails::TaskError {
                resource_type,
                resource,
                error,
                cause,
            } => Some(json!({
                "resourceType": &**resource_type, "resource": &**resource, "error": error, "cause": cause,
            })),
            EventDetails::LambdaScheduled {
                resource,
                input,
                timeout_seconds,
            } => {
                let mut d = json!({
                    "resource": &**resource, "input": input.as_str(), "inputDetails": not_truncated,
                });
                if let Some(t) = timeout_seconds {
                    d["timeoutInSeconds"] = json!(t);
                }
                Some(d)
            }
            EventDetails::LambdaError { error, cause } => {
                Some(json!({ "error": error, "cause": cause }))
            }
            map => map_details(map),
        };
        if let Some(details) = details {
            map.serialize_entry(&self.event_type.details_key(), &details)?;
        }
        map.end()
    }
}

/// The details of the Map events (`MapStateStarted`, `MapIteration*`, `MapRunStarted`).
fn map_details(details: &EventDetails) -> Option<Value> {
    match details {
        EventDetails::MapStarted { length } => Some(json!({ "length": length })),
        EventDetails::MapIteration { name, index } => {
            Some(json!({ "name": &**name, "index": index }))
        }
        EventDetails::MapRunStarted { map_run_arn } => Some(json!({ "mapRunArn": map_run_arn })),
        _ => None,
    }
}

/// Splits a resource into AWS's `resourceType`/`resource` pair for task events:
/// `arn:aws:states:::sqs:sendMessage.waitForTaskToken` → (`sqs`, `sendMessage.waitForTaskToken`).
pub(crate) fn split_resource(resource: &str) -> (Arc<str>, Arc<str>) {
    if let Some(rest) = resource.strip_prefix("arn:aws:states:::")
        && let Some((service, action)) = rest.split_once(':')
    {
        return (service.into(), action.into());
    }
    let mut parts = resource.split(':');
    if parts.next() == Some("arn")
        && let (Some(_partition), Some(service)) = (parts.next(), parts.next())
    {
        return (service.into(), resource.into());
    }
    ("".into(), resource.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(
        id: u64,
        prev: u64,
        event_type: HistoryEventType,
        details: EventDetails,
    ) -> HistoryEvent {
        HistoryEvent {
            id,
            previous_event_id: id - 1,
            link: prev,
            timestamp: DateTime::from_timestamp(1_700_000_000 + i64::try_from(id).unwrap(), 0)
                .unwrap(),
            event_type,
            details,
        }
    }

    #[test]
    fn events_serialize_in_the_aws_shape() {
        let e = event(
            2,
            1,
            HistoryEventType::TaskStateEntered,
            EventDetails::StateEntered {
                name: "Inspect".into(),
                input: JsonText::new(&json!({"a": 1})),
            },
        );
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({
                "timestamp": "2023-11-14T22:13:22.000Z",
                "type": "TaskStateEntered",
                "id": 2,
                "previousEventId": 1,
                "stateEnteredEventDetails": {"name": "Inspect", "input": "{\"a\":1}", "inputDetails": {"truncated": false}}
            })
        );
        let e = event(
            5,
            4,
            HistoryEventType::TaskTimedOut,
            EventDetails::TaskError {
                resource_type: "sqs".into(),
                resource: "sendMessage.waitForTaskToken".into(),
                error: "States.Timeout".into(),
                cause: "late".into(),
            },
        );
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(
            v["taskTimedOutEventDetails"]["error"],
            json!("States.Timeout")
        );
        assert_eq!(v["taskTimedOutEventDetails"]["resourceType"], json!("sqs"));
        let e = event(
            3,
            2,
            HistoryEventType::ParallelStateStarted,
            EventDetails::None,
        );
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v.as_object().unwrap().len(), 4);
        let e = event(
            3,
            2,
            HistoryEventType::MapIterationStarted,
            EventDetails::MapIteration {
                name: "M".into(),
                index: 1,
            },
        );
        assert_eq!(
            serde_json::to_value(&e).unwrap()["mapIterationStartedEventDetails"],
            json!({"name": "M", "index": 1})
        );
    }

    #[test]
    fn resources_split_like_aws() {
        assert_eq!(
            split_resource("arn:aws:states:::sqs:sendMessage.waitForTaskToken"),
            ("sqs".into(), "sendMessage.waitForTaskToken".into())
        );
        assert_eq!(
            split_resource("arn:aws:lambda:us-east-1:1:function:f"),
            (
                "lambda".into(),
                "arn:aws:lambda:us-east-1:1:function:f".into()
            )
        );
        assert_eq!(
            split_resource("local-thing"),
            ("".into(), "local-thing".into())
        );
    }

    #[test]
    fn durations_pair_entered_and_exited_per_visit() {
        use HistoryEventType as T;
        let entered = |name: &str| EventDetails::StateEntered {
            name: name.into(),
            input: JsonText::new(&json!({})),
        };
        let exited = |name: &str| EventDetails::StateExited {
            name: name.into(),
            output: JsonText::new(&json!({})),
        };
        // A Parallel whose two branches interleave, then a failing Task.
        let history = vec![
            event(
                1,
                0,
                T::ExecutionStarted,
                EventDetails::ExecutionStarted {
                    input: JsonText::new(&json!({})),
                },
            ),
            event(2, 1, T::ParallelStateEntered, entered("P")),
            event(3, 2, T::ParallelStateStarted, EventDetails::None),
            event(4, 3, T::PassStateEntered, entered("A")),
            event(5, 3, T::PassStateEntered, entered("B")),
            event(6, 5, T::PassStateExited, exited("B")),
            event(7, 4, T::PassStateExited, exited("A")),
            event(8, 3, T::ParallelStateSucceeded, EventDetails::None),
            event(9, 8, T::ParallelStateExited, exited("P")),
            event(10, 9, T::TaskStateEntered, entered("T")),
            event(
                11,
                10,
                T::ExecutionFailed,
                EventDetails::ExecutionError {
                    error: None,
                    cause: None,
                },
            ),
        ];
        let execution = Execution {
            name: "x".into(),
            status: ExecutionStatus::Failed,
            input: json!({}),
            output: None,
            error: None,
            cause: None,
            started_at: history[0].timestamp,
            stopped_at: None,
            history: history.into(),
        };
        let durations = execution.state_durations();
        let summary: Vec<(&str, &str, Option<i64>)> = durations
            .iter()
            .map(|d| {
                (
                    d.name.as_str(),
                    d.state_type.as_str(),
                    d.duration().map(|t| t.num_seconds()),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("P", "Parallel", Some(7)),
                ("A", "Pass", Some(3)),
                ("B", "Pass", Some(1)),
                ("T", "Task", None),
            ]
        );
    }
}
