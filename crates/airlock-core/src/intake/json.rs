//! Reading JSON with the path of every field at hand, so errors can name it.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::{Map, Value};

use super::{Intake, IntakeError, IntakeItem, IntakeProblem, SkipReason};

/// Embedded documents (an SQS body holding an SNS envelope holding a notification...) deeper
/// than this are refused rather than followed.
pub(super) const MAX_NESTING: usize = 4;

/// A problem with one field, before it is placed in its document.
#[derive(Debug)]
pub(super) struct Fault {
    pub field: String,
    pub problem: IntakeProblem,
}

pub(super) type Parsed<T> = Result<T, Fault>;

pub(super) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

pub(super) fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// How a JSON value is described in "expected ..., found ..." messages.
pub(super) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A document being read: a file or message named by the caller, or a JSON text embedded in
/// another document (an SQS body, an SNS message).
#[derive(Debug)]
pub(super) struct Doc {
    label: String,
    nested: bool,
    pub depth: usize,
}

impl Doc {
    pub fn top(origin: &str) -> Self {
        Self {
            label: origin.to_owned(),
            nested: false,
            depth: 0,
        }
    }

    /// The document embedded in this one's field, inside the container at `container` (an SQS
    /// message, an SNS record), described as `what` (e.g. `SQS message 059f...`).
    pub fn embedded(&self, container: &str, what: Option<String>) -> Self {
        let mut label = self.at(container);
        if let Some(what) = what {
            label = format!("{label} ({what})");
        }
        Self {
            label,
            nested: true,
            depth: self.depth + 1,
        }
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// Where `path` is, for people: `put.json: Records[0]`, or
    /// `batch.json: Records[1] (SQS message ...) > Records[0]` inside an embedded document.
    pub fn at(&self, path: &str) -> String {
        match (path.is_empty(), self.nested) {
            (true, _) => self.label.clone(),
            (false, false) => format!("{}: {path}", self.label),
            (false, true) => format!("{} > {path}", self.label),
        }
    }

    pub fn error(&self, fault: Fault) -> IntakeError {
        IntakeError {
            at: self.at(&fault.field),
            field: fault.field,
            problem: fault.problem,
        }
    }

    /// The item for the event or record at `path`.
    pub fn item(&self, path: &str, outcome: Parsed<Intake>) -> IntakeItem {
        let source = self.at(path);
        if let Ok(Intake::Skipped(SkipReason::OutsideIncoming { key })) = &outcome {
            tracing::info!(source = ?source, key = ?key, "skipping an object outside incoming/");
        }
        IntakeItem {
            source,
            outcome: outcome.map_err(|fault| self.error(fault)),
        }
    }
}

/// A JSON object and its path in its document.
#[derive(Debug, Clone)]
pub(super) struct Obj<'v> {
    map: &'v Map<String, Value>,
    path: String,
}

impl<'v> Obj<'v> {
    pub fn new(value: &'v Value, path: &str) -> Parsed<Self> {
        match value {
            Value::Object(map) => Ok(Self {
                map,
                path: path.to_owned(),
            }),
            other => Err(Fault {
                field: path.to_owned(),
                problem: IntakeProblem::WrongType {
                    expected: "an object",
                    found: kind(other),
                },
            }),
        }
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn field_path(&self, key: &str) -> String {
        join(&self.path, key)
    }

    pub fn fault(&self, key: &str, problem: IntakeProblem) -> Fault {
        Fault {
            field: self.field_path(key),
            problem,
        }
    }

    fn wrong_type(&self, key: &str, expected: &'static str, found: &Value) -> Fault {
        self.fault(
            key,
            IntakeProblem::WrongType {
                expected,
                found: kind(found),
            },
        )
    }

    /// The value of `key`; `null` counts as absent (AWS documents `"versionId": null`).
    pub fn get(&self, key: &str) -> Option<&'v Value> {
        self.map.get(key).filter(|value| !value.is_null())
    }

    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The string at `key` if it is one, without complaint otherwise.
    pub fn peek_str(&self, key: &str) -> Option<&'v str> {
        self.get(key).and_then(Value::as_str)
    }

    fn required(&self, key: &str) -> Parsed<&'v Value> {
        self.get(key)
            .ok_or_else(|| self.fault(key, IntakeProblem::Missing))
    }

    pub fn obj(&self, key: &str) -> Parsed<Obj<'v>> {
        Obj::new(self.required(key)?, &self.field_path(key))
    }

    pub fn array(&self, key: &str) -> Parsed<&'v [Value]> {
        match self.required(key)? {
            Value::Array(items) => Ok(items),
            other => Err(self.wrong_type(key, "an array", other)),
        }
    }

    /// A required, non-empty string.
    pub fn string(&self, key: &str) -> Parsed<&'v str> {
        match self.opt_string(key)? {
            Some(text) => Ok(text),
            None if self.has(key) => Err(self.fault(key, IntakeProblem::Empty)),
            None => Err(self.fault(key, IntakeProblem::Missing)),
        }
    }

    /// An optional string; an empty one counts as absent.
    pub fn opt_string(&self, key: &str) -> Parsed<Option<&'v str>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.as_str()).filter(|text| !text.is_empty())),
            Some(other) => Err(self.wrong_type(key, "a string", other)),
        }
    }

    pub fn opt_u64(&self, key: &str) -> Parsed<Option<u64>> {
        match self.get(key) {
            None => Ok(None),
            Some(value) => value
                .as_u64()
                .map(Some)
                .ok_or_else(|| self.wrong_type(key, "a non-negative integer", value)),
        }
    }

    /// An optional time: an RFC 3339 string, a zone-less ISO 8601 string (the emulator writes
    /// those; they are UTC), or a number of seconds since the Unix epoch (the emulator's
    /// EventBridge events).
    pub fn opt_time(&self, key: &str) -> Parsed<Option<DateTime<Utc>>> {
        let bad = |value: String, reason: String| {
            self.fault(key, IntakeProblem::BadTime { value, reason })
        };
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(text)) => parse_time(text)
                .map(Some)
                .map_err(|reason| bad(text.clone(), reason)),
            Some(Value::Number(number)) => epoch_seconds(number.as_f64())
                .map(Some)
                .ok_or_else(|| bad(number.to_string(), "out of range".to_owned())),
            Some(other) => Err(self.wrong_type(key, "a string", other)),
        }
    }
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    match DateTime::parse_from_rfc3339(text) {
        Ok(time) => Ok(time.with_timezone(&Utc)),
        Err(err) => NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
            .map(|naive| naive.and_utc())
            .map_err(|_| err.to_string()),
    }
}

fn epoch_seconds(seconds: Option<f64>) -> Option<DateTime<Utc>> {
    let millis = (seconds? * 1000.0).round();
    // Beyond ±2^53 ms (some 285,000 years) f64 loses whole milliseconds; chrono's own range
    // is far smaller, so checking against it first makes the cast exact.
    if !millis.is_finite() || millis.abs() > 9.0e15 {
        return None;
    }
    #[allow(clippy::cast_possible_truncation)] // range checked above; the value is integral
    let millis = millis as i64;
    DateTime::from_timestamp_millis(millis)
}
