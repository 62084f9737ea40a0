//! Event intake: turns storage events, as received or captured, into object references.
//!
//! [`parse_event`] accepts, and tells apart by their shape:
//!
//! - S3 event notifications (`{"Records":[{"eventName":"ObjectCreated:Put","s3":{...}}]}`) as
//!   AWS sends them, or as the moto emulator does (without `userIdentity`, `sequencer`,
//!   `versionId`..., with zone-less times and `/` encoded as `%2F` in keys);
//! - the `s3:TestEvent` S3 sends when notifications are configured;
//! - Lambda's SQS batches, whose bodies are any of these shapes, and SNS notifications (as a
//!   Lambda SNS record or as the envelope SNS puts in an SQS body) wrapping them;
//! - EventBridge events from `aws.s3` (`"detail-type": "Object Created"`);
//! - a JSON array of any of the above, as a capture file may hold.
//!
//! [`read_events`] reads a file of such events as a stream (one record at a time, however
//! long the batch) and hands each item over as it is parsed.
//!
//! Every record becomes one [`IntakeItem`], so one malformed record or message costs only
//! itself: the item says where it came from and either the object it announced, why it was
//! skipped (a test event, a key outside `incoming/`, an event other than an object creation),
//! or an error naming the field at fault, such as `put.json: Records[0].s3.object.key: missing`.
//!
//! Keys in S3 notifications are form-URL-encoded and are decoded here ([`decode_key`]). Keys
//! in EventBridge events are taken as they are: AWS documents the encoding for notifications
//! only, users of EventBridge report keys with `+`, spaces and `%` arriving verbatim, and the
//! emulator sends them unencoded too. (Upload keys made by airlock contain none of the
//! characters concerned, so either reading gives the same key for them.)
//!
//! The parser does no I/O and trusts nothing it reads: the stages check the store itself.

mod envelope;
mod eventbridge;
mod json;
mod key;
mod notification;
mod stream;

#[cfg(test)]
mod fixture_tests;
#[cfg(test)]
mod tests;

use std::fmt;

use serde_json::Value;

use crate::keys::INCOMING_PREFIX;
use crate::object::ObjectRef;

pub use key::decode_key;

/// Why a (decoded) key is refused wherever airlock reads one from input, if it is: control
/// characters, a leading `/`, empty, `.` or `..` segments.
#[must_use]
pub fn unsafe_key_reason(key: &str) -> Option<&'static str> {
    key::hostile(key)
}
pub use stream::{Streamed, read_events};

use json::{Doc, Fault, MAX_NESTING, Obj, Parsed, index, join, kind};

/// One item of an event batch: where it came from and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntakeItem {
    /// The file or message and the record in it, e.g. `put.json: Records[2]` or
    /// `batch.json: Records[1] (SQS message 059f36b4-...) > Records[0]`.
    pub source: String,
    pub outcome: Result<Intake, IntakeError>,
}

impl IntakeItem {
    /// The object announced, if the item is one to process.
    #[must_use]
    pub fn object(&self) -> Option<&ObjectRef> {
        match &self.outcome {
            Ok(Intake::Object(object)) => Some(object),
            _ => None,
        }
    }

    /// Why the item was skipped, if it was.
    #[must_use]
    pub fn skipped(&self) -> Option<&SkipReason> {
        match &self.outcome {
            Ok(Intake::Skipped(reason)) => Some(reason),
            _ => None,
        }
    }

    #[must_use]
    pub fn error(&self) -> Option<&IntakeError> {
        self.outcome.as_ref().err()
    }
}

impl fmt::Display for IntakeItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.outcome {
            Ok(intake) => write!(f, "{}: {intake}", self.source),
            Err(err) if err.field.is_empty() => {
                write!(f, "{}: error: {}", self.source, err.problem)
            }
            Err(err) => write!(f, "{}: error: {}: {}", self.source, err.field, err.problem),
        }
    }
}

/// What a well-formed record announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intake {
    /// A new object under `incoming/`, to process.
    Object(ObjectRef),
    /// Nothing to do, and nothing wrong.
    Skipped(SkipReason),
}

impl fmt::Display for Intake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Object(object) => {
                write!(f, "object s3://{}/{}", object.bucket, object.key)?;
                match (&object.event_name, object.size) {
                    (Some(name), Some(size)) => write!(f, " ({name}, {size} bytes)"),
                    (Some(name), None) => write!(f, " ({name})"),
                    (None, Some(size)) => write!(f, " ({size} bytes)"),
                    (None, None) => Ok(()),
                }
            }
            Self::Skipped(reason) => write!(f, "skipped: {reason}"),
        }
    }
}

/// Why a well-formed record needs no processing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// The `s3:TestEvent` S3 sends when notifications are configured.
    TestEvent,
    /// An object outside `incoming/`: the pipeline's own writes to `trusted/` and
    /// `quarantine/`, or anything else in the bucket.
    OutsideIncoming { key: String },
    /// An event other than an object creation, e.g. `ObjectRemoved:Delete` or, from
    /// EventBridge, `Object Deleted`.
    NotObjectCreated { event_name: String },
    /// An event or message that is not from S3 (an EventBridge event from another source, an
    /// SNS subscription confirmation).
    NotS3 { source: String },
}

impl SkipReason {
    /// A short, stable name for tables, logs and metrics.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::TestEvent => "test-event",
            Self::OutsideIncoming { .. } => "outside-incoming",
            Self::NotObjectCreated { .. } => "not-object-created",
            Self::NotS3 { .. } => "not-s3",
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TestEvent => f.write_str("s3:TestEvent"),
            Self::OutsideIncoming { key } => {
                write!(f, "key {key:?} is not under {INCOMING_PREFIX}")
            }
            Self::NotObjectCreated { event_name } => {
                write!(f, "{event_name} is not an object creation")
            }
            Self::NotS3 { source } => write!(f, "not an S3 event ({source})"),
        }
    }
}

/// A record that could not be read, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{at}: {problem}")]
pub struct IntakeError {
    /// Where, for people: origin and JSON path, e.g. `put.json: Records[0].s3.object.key`.
    pub at: String,
    /// The JSON path of the field at fault within its document, e.g.
    /// `Records[0].s3.object.key` (empty for the document as a whole).
    pub field: String,
    pub problem: IntakeProblem,
}

/// What was wrong with a field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntakeProblem {
    Missing,
    Empty,
    WrongType {
        expected: &'static str,
        found: &'static str,
    },
    /// A document or embedded JSON text (an SQS body, an SNS message) that does not parse.
    NotJson(String),
    BadKey {
        raw: String,
        reason: String,
    },
    /// A key that decodes but could name something other than an upload (see
    /// [`decode_key`]'s caller in this module: control characters, `..`, empty segments).
    UnsafeKey {
        key: String,
        reason: &'static str,
    },
    BadTime {
        value: String,
        reason: String,
    },
    /// JSON of a shape this module does not know; the text says what was expected.
    Unrecognized(&'static str),
    /// JSON texts embedded in one another (SQS body, SNS message...) more than four levels deep.
    TooDeep,
}

impl fmt::Display for IntakeProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing => f.write_str("missing"),
            Self::Empty => f.write_str("empty"),
            Self::WrongType { expected, found } => write!(f, "expected {expected}, found {found}"),
            Self::NotJson(reason) => write!(f, "not JSON: {reason}"),
            Self::BadKey { raw, reason } => write!(f, "cannot decode key {raw:?}: {reason}"),
            Self::UnsafeKey { key, reason } => write!(f, "refused key {key:?}: {reason}"),
            Self::BadTime { value, reason } => write!(f, "invalid time {value:?}: {reason}"),
            Self::Unrecognized(expected) => write!(f, "unrecognised event: {expected}"),
            Self::TooDeep => write!(f, "events embedded more than {MAX_NESTING} levels deep"),
        }
    }
}

/// Reads one received or captured event. `origin` names the file or message, for sources and
/// error messages.
#[must_use]
pub fn parse_event(origin: &str, event: &Value) -> Vec<IntakeItem> {
    let mut items = Vec::new();
    parse_value(&Doc::top(origin), event, "", &mut items);
    items
}

/// Reads one event from its JSON text; text that is not JSON yields a single error item.
#[must_use]
pub fn parse_event_str(origin: &str, text: &str) -> Vec<IntakeItem> {
    match serde_json::from_str::<Value>(text) {
        Ok(event) => parse_event(origin, &event),
        Err(err) => vec![IntakeItem {
            source: origin.to_owned(),
            outcome: Err(IntakeError {
                at: origin.to_owned(),
                field: String::new(),
                problem: IntakeProblem::NotJson(err.to_string()),
            }),
        }],
    }
}

const UNRECOGNIZED_EVENT: &str = "expected S3 notification Records, an s3:TestEvent, an EventBridge event, an SNS notification or an array of those";
const UNRECOGNIZED_RECORD: &str =
    "expected an S3 notification record, an SQS message or an SNS record";

fn parse_value(doc: &Doc, value: &Value, path: &str, items: &mut Vec<IntakeItem>) {
    match value {
        Value::Array(events) => {
            for (i, event) in events.iter().enumerate() {
                parse_value(doc, event, &index(path, i), items);
            }
        }
        Value::Object(_) => match Obj::new(value, path) {
            Ok(event) => parse_object(doc, &event, items),
            Err(fault) => items.push(doc.item(path, Err(fault))),
        },
        other => items.push(doc.item(
            path,
            Err(Fault {
                field: path.to_owned(),
                problem: IntakeProblem::WrongType {
                    expected: "an event object or an array of events",
                    found: kind(other),
                },
            }),
        )),
    }
}

fn parse_object(doc: &Doc, event: &Obj<'_>, items: &mut Vec<IntakeItem>) {
    let path = event.path();
    if event.has("Records") {
        let records = match event.array("Records") {
            Ok(records) => records,
            Err(fault) => return items.push(doc.item(path, Err(fault))),
        };
        let records_path = join(path, "Records");
        for (i, record) in records.iter().enumerate() {
            let record_path = index(&records_path, i);
            match Obj::new(record, &record_path) {
                Ok(record) => parse_record(doc, &record, items),
                Err(fault) => items.push(doc.item(&record_path, Err(fault))),
            }
        }
    } else if event.peek_str("Event") == Some("s3:TestEvent") {
        items.push(doc.item(path, Ok(Intake::Skipped(SkipReason::TestEvent))));
    } else if event.has("detail-type") {
        items.push(doc.item(path, eventbridge::event(event)));
    } else if event.has("Type") && event.has("Message") {
        envelope::sns(doc, event, path, items);
    } else {
        items.push(doc.item(
            path,
            Err(Fault {
                field: path.to_owned(),
                problem: IntakeProblem::Unrecognized(UNRECOGNIZED_EVENT),
            }),
        ));
    }
}

/// One element of `Records`: told apart by the member that holds its content.
fn parse_record(doc: &Doc, record: &Obj<'_>, items: &mut Vec<IntakeItem>) {
    let path = record.path();
    if record.has("s3") {
        items.push(doc.item(path, notification::record(record)));
    } else if record.has("body") {
        envelope::sqs(doc, record, items);
    } else if record.has("Sns") {
        match record.obj("Sns") {
            Ok(sns) => envelope::sns(doc, &sns, path, items),
            Err(fault) => items.push(doc.item(path, Err(fault))),
        }
    } else {
        items.push(doc.item(
            path,
            Err(Fault {
                field: path.to_owned(),
                problem: IntakeProblem::Unrecognized(UNRECOGNIZED_RECORD),
            }),
        ));
    }
}

/// Parses JSON text embedded in a document (an SQS body, an SNS message) as a document of its
/// own: the text is member `field` of `container`, the message is at `message_path` (the
/// record, for Lambda's SNS records) and `what` names it for people.
fn parse_embedded(
    doc: &Doc,
    message_path: &str,
    container: &Obj<'_>,
    field: &str,
    what: Option<String>,
    items: &mut Vec<IntakeItem>,
) {
    let inner = doc.embedded(message_path, what);
    let refuse = |items: &mut Vec<IntakeItem>, fault: Fault| {
        items.push(IntakeItem {
            source: inner.label().to_owned(),
            outcome: Err(IntakeError {
                at: format!("{}: {field}", inner.label()),
                field: fault.field,
                problem: fault.problem,
            }),
        });
    };
    if inner.depth > MAX_NESTING {
        return refuse(items, container.fault(field, IntakeProblem::TooDeep));
    }
    let text = match container.string(field) {
        Ok(text) => text,
        Err(fault) => return refuse(items, fault),
    };
    match serde_json::from_str::<Value>(text) {
        Ok(value) => parse_value(&inner, &value, "", items),
        Err(err) => refuse(
            items,
            container.fault(field, IntakeProblem::NotJson(err.to_string())),
        ),
    }
}

/// Builds the reference for a decoded key, or skips it if it is not an upload. A hostile key
/// is an error of the field `key_fault` names, wherever it points.
fn admit(
    bucket: &str,
    key: String,
    key_fault: impl FnOnce(IntakeProblem) -> Fault,
    fill: impl FnOnce(&mut ObjectRef) -> Parsed<()>,
) -> Parsed<Intake> {
    if let Some(reason) = key::hostile(&key) {
        return Err(key_fault(IntakeProblem::UnsafeKey { key, reason }));
    }
    if !key.starts_with(INCOMING_PREFIX) {
        return Ok(Intake::Skipped(SkipReason::OutsideIncoming { key }));
    }
    let mut object = ObjectRef::new(bucket, key);
    fill(&mut object)?;
    Ok(Intake::Object(object))
}

/// ETags arrive bare in events, but quoted from some tools; references hold them bare.
fn bare_etag(etag: &str) -> String {
    etag.strip_prefix('"')
        .and_then(|inner| inner.strip_suffix('"'))
        .unwrap_or(etag)
        .to_owned()
}
