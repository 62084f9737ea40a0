//! S3 event notification records (`Records[].s3`), as AWS and the moto emulator send them.

use super::json::{Obj, Parsed};
use super::{Intake, SkipReason, admit, bare_etag, key};

/// Reads one notification record. Only the event name, bucket name and key are required; the
/// emulator leaves out `sequencer` and `versionId`, and deletions carry no size or ETag.
pub(super) fn record(record: &Obj<'_>) -> Parsed<Intake> {
    let event_name = record.string("eventName")?;
    // MinIO and some emulators prefix the name as in the notification configuration.
    let event_name = event_name.strip_prefix("s3:").unwrap_or(event_name);
    if !is_object_created(event_name) {
        return Ok(Intake::Skipped(SkipReason::NotObjectCreated {
            event_name: event_name.to_owned(),
        }));
    }
    let s3 = record.obj("s3")?;
    let bucket = s3.obj("bucket")?.string("name")?;
    let object = s3.obj("object")?;
    let key = key::decode(object.string("key")?).map_err(|problem| object.fault("key", problem))?;
    admit(
        bucket,
        key,
        |problem| object.fault("key", problem),
        |found| {
            found.size = object.opt_u64("size")?;
            found.etag = object.opt_string("eTag")?.map(bare_etag);
            found.version_id = object.opt_string("versionId")?.map(str::to_owned);
            found.sequencer = object.opt_string("sequencer")?.map(str::to_owned);
            found.event_name = Some(event_name.to_owned());
            found.event_time = record.opt_time("eventTime")?;
            Ok(())
        },
    )
}

fn is_object_created(event_name: &str) -> bool {
    event_name == "ObjectCreated" || event_name.starts_with("ObjectCreated:")
}
