//! Quarantine: copy a rejected object to `quarantine/` with a JSON record beside it, mark its
//! intent QUARANTINED, then delete it from `incoming/`. Safe to repeat.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Stage, StageError};
use crate::intent::{IntentOutcome, IntentState, UploadIntent};
use crate::keys::{QUARANTINE_PREFIX, UploadKey, counterpart};
use crate::object::{ObjectMeta, ObjectRef};
use crate::ports::{
    Clock, EventSink, IntentStore, ObjectStore, ObjectVersion, PipelineEvent, PipelineEventKind,
    Retry, StoreError, Transition, TransitionResult, WriteMode,
};
use crate::verdict::{ReasonCode, Rejection};

/// What to quarantine and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QuarantineRequest {
    pub object: ObjectRef,
    pub rejection: Rejection,
    /// The stage that rejected it (or failed on it).
    pub stage: Stage,
    /// Known from the scan, if it ran; otherwise quarantine hashes the object itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The version `sha256` belongs to (the one inspected and scanned), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<ObjectVersion>,
}

/// The JSON record written beside a quarantined object, for security review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QuarantineRecord {
    pub reason: ReasonCode,
    pub detail: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    pub stage: Stage,
    pub sha256: String,
    pub size: u64,
    pub bucket: String,
    pub original_key: String,
    pub quarantine_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uploader: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declared_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declared_size: Option<u64>,
    /// Scanner engine and definitions version, when the scanner ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    /// The definitions behind the scanner's verdict (version, build time, age then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub definitions: Option<crate::definitions::DefinitionsRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uploaded_at: Option<DateTime<Utc>>,
    pub quarantined_at: DateTime<Utc>,
}

/// What quarantine did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QuarantineReport {
    pub quarantine_key: String,
    pub record_key: String,
    pub reason: ReasonCode,
    /// False when an earlier run had already quarantined it.
    pub quarantined_now: bool,
}

/// Where the object and its record are, and the record there: the one this run wrote, or
/// an earlier run's (which stands: evidence is never rewritten).
struct Placed {
    destination: String,
    record_key: String,
    record: QuarantineRecord,
}

/// What is known about the upload an object belongs to.
struct Owner {
    upload: Option<UploadKey>,
    intent: Option<UploadIntent>,
}

/// Quarantines `request.object`: the object and a record of why go to a place in
/// `quarantine/` that nothing else holds, the intent becomes QUARANTINED, the object
/// leaves `incoming/`, and products are told.
///
/// Safe to repeat, and after a crash at any point a rerun finishes the job with the first
/// verdict: a record, once written, is never replaced.
pub async fn quarantine(
    store: &dyn ObjectStore,
    intents: &dyn IntentStore,
    events: &dyn EventSink,
    clock: &dyn Clock,
    request: &QuarantineRequest,
) -> Result<QuarantineReport, StageError> {
    let incoming = request.object.key.as_str();
    let base = counterpart(incoming, QUARANTINE_PREFIX).ok_or_else(|| {
        StageError::new(
            Stage::Quarantine,
            Retry::Permanent,
            format!("{incoming} is not an incoming key"),
        )
    })?;
    let owner = owner_of(intents, incoming).await?;
    let now = clock.now();

    let incoming_meta = store
        .head(incoming)
        .await
        .map_err(|e| StageError::store(Stage::Quarantine, &e))?;
    let quarantined_now = incoming_meta.is_some();
    let placed = match &incoming_meta {
        Some(meta) => place(store, request, &owner, &base, meta, now).await?,
        None => find_placed(store, request, &owner, &base).await?,
    };

    let newly_quarantined = mark_quarantined(intents, &owner, &placed).await?;

    // Tell products about the upload at least once: when this call settled it, or when an
    // earlier attempt of this same quarantine did (a retry after a failed publish; the
    // intent's outcome names this place). Not for a second object sent to a used key: that
    // is for security review, not a new outcome.
    let settled_earlier_here = owner.intent.as_ref().is_some_and(|intent| {
        intent.state == IntentState::Quarantined
            && intent
                .outcome
                .as_ref()
                .is_some_and(|outcome| outcome.key == placed.destination)
    });
    let announce =
        newly_quarantined || settled_earlier_here || (owner.intent.is_none() && quarantined_now);
    if let (Some(upload), true) = (&owner.upload, announce) {
        events
            .publish(&PipelineEvent {
                kind: PipelineEventKind::Quarantined,
                upload_id: upload.upload_id,
                tenant: upload.tenant.clone(),
                purpose: upload.purpose.clone(),
                key: placed.destination.clone(),
                // The first verdict, as recorded: never a conflicting second reason.
                reason: Some(placed.record.reason),
                at: now,
            })
            .await
            .map_err(|e| StageError::events(Stage::Quarantine, &e))?;
    }
    // After the publish: if the run dies in between, the object left in incoming/ brings
    // the upload back to be finished, publish included.
    // Only the version quarantined: a newer object at the key is left for its own run.
    store
        .delete(
            incoming,
            incoming_meta.as_ref().and_then(|m| m.version.as_ref()),
        )
        .await
        .map_err(|e| StageError::store(Stage::Quarantine, &e))?;

    Ok(QuarantineReport {
        quarantine_key: placed.destination,
        record_key: placed.record_key,
        reason: placed.record.reason,
        quarantined_now,
    })
}

/// Places `request.object` — any key, e.g. a trusted object that a rescan found infected —
/// and its record in quarantine from `base` on, exactly as [`quarantine`] places an
/// `incoming/` object: create-only, never over another object's evidence, finding its own
/// earlier placement on a repeat. Returns the object's key, the record's key and the record
/// (this run's, or the earlier one that stands).
pub(crate) async fn place_elsewhere(
    store: &dyn ObjectStore,
    request: &QuarantineRequest,
    (upload, intent): (&UploadKey, &UploadIntent),
    base: &str,
    meta: &ObjectMeta,
    now: DateTime<Utc>,
) -> Result<(String, String, QuarantineRecord), StageError> {
    let owner = Owner {
        upload: Some(upload.clone()),
        intent: Some(intent.clone()),
    };
    let placed = place(store, request, &owner, base, meta, now).await?;
    Ok((placed.destination, placed.record_key, placed.record))
}

async fn owner_of(intents: &dyn IntentStore, incoming: &str) -> Result<Owner, StageError> {
    let upload = UploadKey::parse_incoming(incoming).ok();
    let intent = match &upload {
        Some(upload) => intents
            .get(upload.upload_id)
            .await
            .map_err(|e| StageError::intents(Stage::Quarantine, &e))?
            // An intent for another tenant or purpose is not this object's intent.
            .filter(|i| i.tenant == upload.tenant && i.purpose == upload.purpose),
        None => None,
    };
    Ok(Owner { upload, intent })
}

/// The SHA-256 and size of the object now in `incoming/` (`meta`): from the scan when it is
/// still the version scanned, else read.
async fn facts_of(
    store: &dyn ObjectStore,
    request: &QuarantineRequest,
    meta: &ObjectMeta,
) -> Result<(String, u64), StageError> {
    match (&request.sha256, &request.version, &meta.version) {
        (Some(sha), Some(scanned), Some(now)) if scanned == now => Ok((sha.clone(), meta.size)),
        (Some(sha), None, _) => Ok((sha.clone(), meta.size)),
        _ => {
            super::hash_object(
                store,
                &request.object.key,
                meta.version.as_ref(),
                Stage::Quarantine,
            )
            .await
        }
    }
}

/// The place names for a base key, in order: the key, then with the object's hash, then
/// numbered.
fn place_names(base: &str, sha256: &str) -> impl Iterator<Item = String> {
    let short = sha256.get(..16).unwrap_or(sha256).to_owned();
    let base = base.to_owned();
    (0..MAX_PLACES).map(move |attempt| match attempt {
        0 => base.clone(),
        1 => format!("{base}.{short}"),
        n => format!("{base}.{short}-{n}"),
    })
}

/// Puts the object and its record at the first place that is free or holds this object's
/// own earlier quarantine. Both writes are create-only, so two objects can never take one
/// place, whatever runs at the same time: not another object's evidence (a second upload
/// to a used key), and, for keys outside the server's scheme where `x.json` is a possible
/// object name, neither another object's record nor an object where a record would go.
async fn place(
    store: &dyn ObjectStore,
    request: &QuarantineRequest,
    owner: &Owner,
    base: &str,
    meta: &ObjectMeta,
    now: DateTime<Utc>,
) -> Result<Placed, StageError> {
    let (sha256, size) = facts_of(store, request, meta).await?;
    let incoming = request.object.key.as_str();
    for destination in place_names(base, &sha256) {
        let record_key = format!("{destination}.json");
        let ours = |r: &QuarantineRecord| describes(r, incoming, &destination, &sha256);
        // 1. The object.
        let copied = match store
            .copy(
                incoming,
                meta.version.as_ref(),
                &destination,
                WriteMode::CreateOnly,
            )
            .await
        {
            Ok(copy) if copy.size == size => Some(copy),
            Ok(copy) => {
                return Err(StageError::new(
                    Stage::Quarantine,
                    Retry::Transient,
                    format!(
                        "copy to {destination} not confirmed: expected {size} bytes, found {}",
                        copy.size
                    ),
                ));
            }
            Err(StoreError::AlreadyExists { .. }) => {
                if let Some(record) = read_record(store, &record_key).await? {
                    if ours(&record) {
                        // Both already there: an earlier run of this same quarantine.
                        return Ok(Placed {
                            destination,
                            record_key,
                            record,
                        });
                    }
                    continue;
                }
                // No record: this object from a run interrupted before its record was
                // written, or something else. Only the bytes tell.
                let (existing, _) =
                    super::hash_object(store, &destination, None, Stage::Quarantine).await?;
                if !existing.eq_ignore_ascii_case(&sha256) {
                    continue;
                }
                None
            }
            Err(e @ StoreError::VersionMismatch { .. }) => {
                // Replaced since its HEAD: a retry quarantines what is there then.
                return Err(StageError::new(
                    Stage::Quarantine,
                    Retry::Transient,
                    e.to_string(),
                ));
            }
            Err(e) => return Err(StageError::store(Stage::Quarantine, &e)),
        };
        // 2. The record, beside it.
        let record = new_record(request, owner, meta, (&sha256, size), &destination, now);
        let json = serde_json::to_vec_pretty(&record)
            .map_err(|e| StageError::new(Stage::Quarantine, Retry::Permanent, e.to_string()))?;
        match store
            .put(&record_key, json, "application/json", WriteMode::CreateOnly)
            .await
        {
            Ok(_) => {
                return Ok(Placed {
                    destination,
                    record_key,
                    record,
                });
            }
            Err(StoreError::AlreadyExists { .. }) => {
                if let Some(existing) = read_record(store, &record_key)
                    .await?
                    .filter(|existing| ours(existing))
                {
                    return Ok(Placed {
                        destination,
                        record_key,
                        record: existing,
                    });
                }
                // The record's place is another object's: this place is not ours after all.
                // Take back the copy (only this run's version of it) and try the next.
                let version = copied.as_ref().and_then(|c| c.version.as_ref());
                if copied.is_some() {
                    store
                        .delete(&destination, version)
                        .await
                        .map_err(|e| StageError::store(Stage::Quarantine, &e))?;
                }
            }
            Err(e) => return Err(StageError::store(Stage::Quarantine, &e)),
        }
    }
    Err(StageError::new(
        Stage::Quarantine,
        Retry::Permanent,
        format!("{MAX_PLACES} quarantine keys from {base} on are taken by other objects"),
    ))
}

/// After the object left `incoming/` (a retry of a quarantine that got past its delete):
/// where an earlier run placed it, by its record.
async fn find_placed(
    store: &dyn ObjectStore,
    request: &QuarantineRequest,
    owner: &Owner,
    base: &str,
) -> Result<Placed, StageError> {
    let incoming = request.object.key.as_str();
    let mut candidates = Vec::new();
    if let Some(outcome) = owner
        .intent
        .as_ref()
        .filter(|i| i.state == IntentState::Quarantined)
        .and_then(|i| i.outcome.as_ref())
    {
        candidates.push(outcome.key.clone());
    }
    match &request.sha256 {
        Some(sha) => candidates.extend(place_names(base, sha)),
        None => candidates.push(base.to_owned()),
    }
    for destination in candidates {
        let record_key = format!("{destination}.json");
        let Some(record) = read_record(store, &record_key).await? else {
            continue;
        };
        let same_object = request
            .sha256
            .as_ref()
            .is_none_or(|sha| record.sha256.eq_ignore_ascii_case(sha));
        if record.original_key == incoming && record.quarantine_key == destination && same_object {
            return Ok(Placed {
                destination,
                record_key,
                record,
            });
        }
    }
    Err(StageError::new(
        Stage::Quarantine,
        Retry::Permanent,
        format!("{incoming} is gone and no quarantine record from {base} on describes it"),
    ))
}

/// Whether `record` is the record of this object at this place.
fn describes(record: &QuarantineRecord, incoming: &str, destination: &str, sha256: &str) -> bool {
    record.sha256.eq_ignore_ascii_case(sha256)
        && record.quarantine_key == destination
        && record.original_key == incoming
}

fn new_record(
    request: &QuarantineRequest,
    owner: &Owner,
    meta: &ObjectMeta,
    (sha256, size): (&str, u64),
    destination: &str,
    now: DateTime<Utc>,
) -> QuarantineRecord {
    let upload = owner.upload.as_ref();
    let intent = owner.intent.as_ref();
    QuarantineRecord {
        reason: request.rejection.reason,
        detail: request.rejection.detail.clone(),
        signature: request.rejection.signature.clone(),
        stage: request.stage,
        sha256: sha256.to_owned(),
        size,
        bucket: request.object.bucket.clone(),
        original_key: request.object.key.clone(),
        quarantine_key: destination.to_owned(),
        tenant: upload.map(|u| u.tenant.to_string()),
        purpose: upload.map(|u| u.purpose.to_string()),
        intent_id: intent.map(|i| i.id.to_string()),
        uploader: intent.and_then(|i| i.uploader.clone()),
        filename: intent.and_then(|i| i.filename.clone()),
        declared_type: intent.map(|i| i.declared_type.clone()),
        declared_size: intent.map(|i| i.declared_size),
        engine: request.rejection.engine.clone(),
        definitions: request.rejection.definitions,
        uploaded_at: meta.last_modified,
        quarantined_at: now,
    }
}

/// Places at most this many objects under one quarantine key (the key, then the key with
/// the object's hash, then numbered).
const MAX_PLACES: usize = 8;

/// The quarantine record at `record_key`, if there is one there.
async fn read_record(
    store: &dyn ObjectStore,
    record_key: &str,
) -> Result<Option<QuarantineRecord>, StageError> {
    let Some(meta) = store
        .head(record_key)
        .await
        .map_err(|e| StageError::store(Stage::Quarantine, &e))?
    else {
        return Ok(None);
    };
    if meta.size > MAX_RECORD_BYTES {
        return Ok(None);
    }
    let bytes = match store
        .read_range(record_key, meta.version.as_ref(), 0, meta.size)
        .await
    {
        Ok(bytes) => bytes,
        Err(StoreError::NotFound { .. } | StoreError::VersionMismatch { .. }) => {
            return Err(StageError::new(
                Stage::Quarantine,
                Retry::Transient,
                format!("{record_key} changed while it was read"),
            ));
        }
        Err(e) => return Err(StageError::store(Stage::Quarantine, &e)),
    };
    Ok(serde_json::from_slice::<QuarantineRecord>(&bytes).ok())
}

/// Records are a few hundred bytes; anything much larger is not one.
const MAX_RECORD_BYTES: u64 = 1 << 20;

/// Moves the intent (if there is one) to QUARANTINED with what the record says; an intent
/// already settled (a used key) is left alone. Returns whether this call changed it.
async fn mark_quarantined(
    intents: &dyn IntentStore,
    owner: &Owner,
    placed: &Placed,
) -> Result<bool, StageError> {
    let Some(intent) = &owner.intent else {
        return Ok(false);
    };
    let record = &placed.record;
    let result = intents
        .transition(
            intent.id,
            Transition {
                from: IntentState::sources_of(IntentState::Quarantined),
                to: IntentState::Quarantined,
                at: record.quarantined_at,
                outcome: Some(IntentOutcome {
                    key: placed.destination.clone(),
                    reason: Some(record.reason),
                    detail: Some(record.detail.clone()),
                    sha256: Some(record.sha256.clone()),
                    size: Some(record.size),
                    engine: record.engine.clone(),
                    media: None,
                }),
                review: false,
            },
        )
        .await
        .map_err(|e| StageError::intents(Stage::Quarantine, &e))?;
    Ok(match result {
        TransitionResult::Applied(_) => true,
        TransitionResult::Refused { current } => {
            tracing::info!(intent = %intent.id, %current, "intent already settled; left as is");
            false
        }
        TransitionResult::NotFound => false,
    })
}
