//! Pipeline events to an EventBridge bus with `PutEvents`.

use airlock_core::ports::{EventSink, EventSinkError, PipelineEvent, PipelineEventKind, Retry};
use async_trait::async_trait;
use aws_sdk_eventbridge::Client;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;

use crate::error::{describe, retry_of};

/// The events' `source` unless told otherwise.
pub const DEFAULT_SOURCE: &str = "airlock";

/// Publishes each event as one entry on a bus: `source` (`airlock` by default),
/// `detail-type` the event's type (`upload.ready`, `upload.quarantined`), `detail` the
/// event's JSON, `time` its time.
#[derive(Debug, Clone)]
pub struct EventBridgeSink {
    client: Client,
    bus: String,
    source: String,
}

impl EventBridgeSink {
    /// Publishes on the bus named `bus` (a name or an ARN) through `client`.
    #[must_use]
    pub fn new(client: Client, bus: impl Into<String>) -> Self {
        Self {
            client,
            bus: bus.into(),
            source: DEFAULT_SOURCE.to_owned(),
        }
    }

    /// Sets the entries' `source`.
    #[must_use]
    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        self.source = source.into();
        self
    }

    #[must_use]
    pub fn bus(&self) -> &str {
        &self.bus
    }
}

fn detail_type(kind: PipelineEventKind) -> &'static str {
    kind.as_str()
}

#[async_trait]
impl EventSink for EventBridgeSink {
    async fn publish(&self, event: &PipelineEvent) -> Result<(), EventSinkError> {
        let detail = serde_json::to_string(event).map_err(|e| EventSinkError {
            message: format!("event for upload {} not serializable: {e}", event.upload_id),
            retry: Retry::Permanent,
        })?;
        let at = aws_sdk_eventbridge::primitives::DateTime::from_secs(event.at.timestamp());
        let entry = PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus)
            .source(&self.source)
            .detail_type(detail_type(event.kind))
            .detail(detail)
            .time(at)
            .build();
        let out = self
            .client
            .put_events()
            .entries(entry)
            .send()
            .await
            .map_err(|e| EventSinkError {
                message: format!(
                    "EventBridge PutEvents on bus {} failed: {}",
                    self.bus,
                    describe(&e)
                ),
                retry: retry_of(&e),
            })?;
        // PutEvents answers 200 even when an entry was refused: each entry says.
        if out.failed_entry_count() == 0 {
            return Ok(());
        }
        let failed = out.entries().iter().find(|e| e.error_code().is_some());
        let code = failed.and_then(|e| e.error_code()).unwrap_or("unknown");
        let message = failed.and_then(|e| e.error_message()).unwrap_or("");
        let retry = match code {
            "ThrottlingException" | "InternalFailure" | "InternalException" => Retry::Transient,
            _ => Retry::Permanent,
        };
        Err(EventSinkError {
            message: format!(
                "EventBridge refused the {} event of upload {} on bus {}: {code} {message}",
                detail_type(event.kind),
                event.upload_id,
                self.bus
            ),
            retry,
        })
    }
}
