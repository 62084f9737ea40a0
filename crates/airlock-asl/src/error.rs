//! Error types: definition refusals, start/token API errors, and runtime state errors.

use std::fmt;

/// Error names the interpreter itself raises (ASL appendix A).
pub mod names {
    /// Wildcard matching every catchable error.
    pub const ALL: &str = "States.ALL";
    /// A task or a heartbeat ran out of time.
    pub const TIMEOUT: &str = "States.Timeout";
    /// Matches any error except `States.Timeout`; also what a panicking handler raises.
    pub const TASK_FAILED: &str = "States.TaskFailed";
    /// Only in `ErrorEquals`: matches a `States.Timeout` raised by a missed heartbeat.
    pub const HEARTBEAT_TIMEOUT: &str = "States.HeartbeatTimeout";
    /// A Choice state found no matching rule and has no Default.
    pub const NO_CHOICE_MATCHED: &str = "States.NoChoiceMatched";
    /// A path in a payload template (`Parameters`, `ResultSelector`…) found nothing.
    pub const PARAMETER_PATH_FAILURE: &str = "States.ParameterPathFailure";
    /// `ResultPath` could not be applied to the state's input.
    pub const RESULT_PATH_MATCH_FAILURE: &str = "States.ResultPathMatchFailure";
    /// An intrinsic function failed.
    pub const INTRINSIC_FAILURE: &str = "States.IntrinsicFailure";
    /// An unrecoverable runtime problem; never retried or caught.
    pub const RUNTIME: &str = "States.Runtime";
    /// A state's input, result or output is over the 256 KiB payload quota. Only a
    /// Retrier or Catcher naming it matches it: `States.ALL` and `States.TaskFailed` do not.
    pub const DATA_LIMIT_EXCEEDED: &str = "States.DataLimitExceeded";
    /// A JSONata expression failed or produced no value where one is needed.
    pub const QUERY_EVALUATION_ERROR: &str = "States.QueryEvaluationError";
    /// A Distributed Map's failed items exceeded `ToleratedFailureCount` or
    /// `ToleratedFailurePercentage` (zero when neither is given).
    pub const EXCEED_TOLERATED_FAILURE_THRESHOLD: &str = "States.ExceedToleratedFailureThreshold";
    /// A Distributed Map's `ItemReader` could not read or decode its items.
    pub const ITEM_READER_FAILED: &str = "States.ItemReaderFailed";
    /// A Distributed Map's `ResultWriter` could not write its results.
    pub const RESULT_WRITER_FAILED: &str = "States.ResultWriterFailed";
}

/// Why a definition was refused. Names the state (a `>`-separated path for states
/// nested in Parallel branches or Map processors) and the field when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefinitionError {
    state: Option<String>,
    field: Option<String>,
    message: String,
}

impl DefinitionError {
    pub(crate) fn new(
        state: Option<&str>,
        field: Option<&str>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            state: state.map(str::to_owned),
            field: field.map(str::to_owned),
            message: message.into(),
        }
    }

    /// The same error with its field placed inside `outer` (e.g. `MaxItems` →
    /// `ItemReader.ReaderConfig.MaxItems`).
    pub(crate) fn within(mut self, outer: &str) -> Self {
        self.field = Some(match self.field.take() {
            Some(field) if field.is_empty() => outer.to_owned(),
            Some(field) if field.starts_with('[') => format!("{outer}{field}"),
            Some(field) => format!("{outer}.{field}"),
            None => outer.to_owned(),
        });
        self
    }

    /// The state the problem is in, if it is inside one.
    #[must_use]
    pub fn state(&self) -> Option<&str> {
        self.state.as_deref()
    }

    /// The offending field, if one is to blame.
    #[must_use]
    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }

    /// What is wrong, without the location.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for DefinitionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.state, &self.field) {
            (Some(state), Some(field)) => {
                write!(f, "state '{state}', field '{field}': {}", self.message)
            }
            (Some(state), None) => write!(f, "state '{state}': {}", self.message),
            (None, Some(field)) => write!(f, "field '{field}': {}", self.message),
            (None, None) => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for DefinitionError {}

/// A Task resource that no handler was registered for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("state '{state}': no handler registered for resource '{resource}'")]
pub struct MissingHandler {
    /// The Task state (`>`-separated path when nested).
    pub state: String,
    /// The resource with any `.waitForTaskToken` suffix removed: the registration key.
    pub resource: String,
}

/// Why `start_execution` refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    /// An execution with this name exists and was started with a different input.
    #[error("execution '{0}' already exists with a different input")]
    ExecutionAlreadyExists(String),
    /// Names must be 1–80 characters without blanks, brackets, wildcards or URL-special characters.
    #[error("invalid execution name '{0}': {1}")]
    InvalidName(String, &'static str),
    /// A Task resource has no handler.
    #[error(transparent)]
    MissingHandler(#[from] MissingHandler),
    /// Executions run as tokio tasks, so a runtime must be current.
    #[error("start_execution must be called from within a tokio runtime")]
    NoRuntime,
}

/// Why a `send_task_*` call was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskTokenError {
    /// No task was ever given this token.
    #[error("task token does not exist")]
    TaskDoesNotExist,
    /// The task has already completed, failed or timed out (or its execution ended).
    #[error("task timed out or has already been completed")]
    TaskTimedOut,
}

/// An error raised while running a state: what Retry and Catch match on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StateError {
    pub(crate) error: String,
    pub(crate) cause: String,
    /// Set when a `States.Timeout` came from a missed heartbeat.
    pub(crate) heartbeat: bool,
    /// Set once a `States.Runtime` cause names the state it happened in.
    pub(crate) located: bool,
}

impl StateError {
    pub(crate) fn new(error: impl Into<String>, cause: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            cause: cause.into(),
            heartbeat: false,
            located: false,
        }
    }

    /// Prefixes a `States.Runtime` cause the way Step Functions words it, naming the
    /// state and the id of the event that entered it (once: outer states leave it be).
    pub(crate) fn locate(mut self, state: &str, entered_event_id: u64) -> Self {
        if self.error == names::RUNTIME && !self.located {
            self.cause = format!(
                "An error occurred while executing the state '{state}' (entered at the event id #{entered_event_id}). {}",
                self.cause
            );
            self.located = true;
        }
        self
    }

    /// Whether an `ErrorEquals` entry matches this error.
    pub(crate) fn matches(&self, pattern: &str) -> bool {
        if self.error == names::RUNTIME {
            return false;
        }
        let terminal = self.error == names::DATA_LIMIT_EXCEEDED;
        match pattern {
            names::ALL => !terminal,
            names::TASK_FAILED => self.error != names::TIMEOUT && !terminal,
            names::HEARTBEAT_TIMEOUT => self.heartbeat,
            _ => pattern == self.error,
        }
    }

    /// The `{"Error", "Cause"}` object a Catcher passes on.
    pub(crate) fn to_output(&self) -> serde_json::Value {
        serde_json::json!({"Error": self.error, "Cause": self.cause})
    }
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.error, self.cause)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_as_documented() {
        let custom = StateError::new("Airlock.Transient", "x");
        assert!(custom.matches("Airlock.Transient"));
        assert!(custom.matches(names::ALL));
        assert!(custom.matches(names::TASK_FAILED));
        assert!(!custom.matches("Airlock.Other"));

        let timeout = StateError::new(names::TIMEOUT, "x");
        assert!(timeout.matches(names::TIMEOUT));
        assert!(timeout.matches(names::ALL));
        assert!(!timeout.matches(names::TASK_FAILED));
        assert!(!timeout.matches(names::HEARTBEAT_TIMEOUT));

        let heartbeat = StateError {
            heartbeat: true,
            ..StateError::new(names::TIMEOUT, "x")
        };
        assert!(heartbeat.matches(names::HEARTBEAT_TIMEOUT));
        assert!(heartbeat.matches(names::TIMEOUT));

        let runtime = StateError::new(names::RUNTIME, "x");
        assert!(!runtime.matches(names::ALL));
        assert!(!runtime.matches(names::RUNTIME));

        let too_big = StateError::new(names::DATA_LIMIT_EXCEEDED, "x");
        assert!(too_big.matches(names::DATA_LIMIT_EXCEEDED));
        assert!(!too_big.matches(names::ALL));
        assert!(!too_big.matches(names::TASK_FAILED));
    }

    #[test]
    fn runtime_causes_name_the_state_and_its_entered_event_once() {
        let e = StateError::new(
            names::RUNTIME,
            "Invalid path '$.a' : No results for path: $['a']",
        )
        .locate("Inner", 5)
        .locate("Outer", 2);
        assert_eq!(
            e.cause,
            "An error occurred while executing the state 'Inner' (entered at the event id #5). Invalid path '$.a' : No results for path: $['a']"
        );
        let other = StateError::new("Custom", "c").locate("S", 2);
        assert_eq!(other.cause, "c");
    }

    #[test]
    fn definition_errors_name_state_and_field() {
        let e = DefinitionError::new(
            Some("Inspect"),
            Some("Next"),
            "names a missing state 'Nope'",
        );
        assert_eq!(
            e.to_string(),
            "state 'Inspect', field 'Next': names a missing state 'Nope'"
        );
        assert_eq!(e.state(), Some("Inspect"));
        assert_eq!(e.field(), Some("Next"));
    }
}
