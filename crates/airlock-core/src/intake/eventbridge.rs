//! EventBridge events from S3 (`"source": "aws.s3"`).

use super::json::{Obj, Parsed};
use super::{Intake, SkipReason, admit, bare_etag};

/// Reads one EventBridge event. Events from other sources, and S3 events other than
/// `Object Created`, are skipped.
///
/// The key is taken verbatim: unlike notifications, EventBridge events do not URL-encode it.
pub(super) fn event(event: &Obj<'_>) -> Parsed<Intake> {
    let source = event.string("source")?;
    if source != "aws.s3" {
        return Ok(Intake::Skipped(SkipReason::NotS3 {
            source: source.to_owned(),
        }));
    }
    let detail_type = event.string("detail-type")?;
    if detail_type != "Object Created" {
        return Ok(Intake::Skipped(SkipReason::NotObjectCreated {
            event_name: detail_type.to_owned(),
        }));
    }
    let detail = event.obj("detail")?;
    let bucket = detail.obj("bucket")?.string("name")?;
    let object = detail.obj("object")?;
    let key = object.string("key")?.to_owned();
    admit(
        bucket,
        key,
        |problem| object.fault("key", problem),
        |found| {
            found.size = object.opt_u64("size")?;
            // AWS writes `etag`; the moto emulator writes `eTag`, as in notifications.
            let etag = match object.opt_string("etag")? {
                Some(etag) => Some(etag),
                None => object.opt_string("eTag")?,
            };
            found.etag = etag.map(bare_etag);
            found.version_id = object.opt_string("version-id")?.map(str::to_owned);
            found.sequencer = object.opt_string("sequencer")?.map(str::to_owned);
            found.event_name = Some(event_name(detail.opt_string("reason")?));
            found.event_time = event.opt_time("time")?;
            Ok(())
        },
    )
}

/// The notification event name for an `Object Created` reason, so references read the same
/// whichever way the event came.
fn event_name(reason: Option<&str>) -> String {
    match reason {
        Some("PutObject") => "ObjectCreated:Put".to_owned(),
        Some("PostObject") => "ObjectCreated:Post".to_owned(),
        Some("CopyObject") => "ObjectCreated:Copy".to_owned(),
        Some("CompleteMultipartUpload") => "ObjectCreated:CompleteMultipartUpload".to_owned(),
        Some(other) if other.starts_with("ObjectCreated") => other.to_owned(),
        Some(other) => format!("ObjectCreated:{other}"),
        None => "ObjectCreated".to_owned(),
    }
}
