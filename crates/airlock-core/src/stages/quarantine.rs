//! Quarantine: copy a rejected object to `quarantine/` with a JSON record beside it, mark its
//! intent QUARANTINED, then delete it from `incoming/`. Safe to repeat.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Stage, StageError};
use crate::intent::{IntentOutcome, IntentState, UploadIntent};
use crate::keys::{QUARANTINE_PREFIX, UploadKey, counterpart};
use crate::object::{ObjectMeta, ObjectRef};
use crate::ports::{
    Clock, EventSink, IntentStore, ObjectStore, PipelineEvent, PipelineEventKind, Retry,
    StoreError, Transition, TransitionResult,
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

/// Where a rejected object goes, and what is known about it.
struct Placement {
    upload: Option<UploadKey>,
    intent: Option<UploadIntent>,
    destination: String,
    record_key: String,
    now: DateTime<Utc>,
}

/// Quarantines `request.object`.
pub async fn quarantine(
    store: &dyn ObjectStore,
    intents: &dyn IntentStore,
    events: &dyn EventSink,
    clock: &dyn Clock,
    request: &QuarantineRequest,
) -> Result<QuarantineReport, StageError> {
    let store_err = |e: &StoreError| StageError::store(Stage::Quarantine, e);
    let incoming = request.object.key.as_str();
    let destination = counterpart(incoming, QUARANTINE_PREFIX).ok_or_else(|| {
        StageError::new(
            Stage::Quarantine,
            Retry::Permanent,
            format!("{incoming} is not an incoming key"),
        )
    })?;
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
    let mut placement = Placement {
        upload,
        intent,
        record_key: format!("{destination}.json"),
        destination,
        now: clock.now(),
    };

    let incoming_meta = store.head(incoming).await.map_err(|e| store_err(&e))?;
    let quarantined_now = incoming_meta.is_some();
    let facts = if let Some(meta) = &incoming_meta {
        Some(copy_with_record(store, request, &mut placement, meta).await?)
    } else {
        // A retry after the object left incoming/: it is at its place, or, when its hash
        // is known, at the place a taken key made it take.
        // The hashed place first: it exists only if the plain one was taken by another.
        let mut candidates = Vec::new();
        if let Some(sha) = &request.sha256 {
            let short = sha.get(..16).unwrap_or(sha);
            candidates.push(format!("{}.{short}", placement.destination));
        }
        candidates.push(placement.destination.clone());
        let mut already_there = false;
        for candidate in candidates {
            if store
                .head(&candidate)
                .await
                .map_err(|e| store_err(&e))?
                .is_some()
            {
                placement.record_key = format!("{candidate}.json");
                placement.destination = candidate;
                already_there = true;
                break;
            }
        }
        if !already_there {
            return Err(StageError::new(
                Stage::Quarantine,
                Retry::Permanent,
                format!("neither {incoming} nor {} exists", placement.destination),
            ));
        }
        None
    };

    let newly_quarantined = mark_quarantined(intents, request, &placement, facts).await?;

    store.delete(incoming).await.map_err(|e| store_err(&e))?;

    // Tell products about the upload at least once: when this call settled it, or when an
    // earlier attempt of this same quarantine did (a retry after a failed publish; the
    // intent's outcome names this place). Not for a second object sent to a used key: that
    // is for security review, not a new outcome.
    let settled_earlier_here = placement.intent.as_ref().is_some_and(|intent| {
        intent.state == IntentState::Quarantined
            && intent
                .outcome
                .as_ref()
                .is_some_and(|outcome| outcome.key == placement.destination)
    });
    let announce = newly_quarantined
        || settled_earlier_here
        || (placement.intent.is_none() && quarantined_now);
    if let (Some(upload), true) = (&placement.upload, announce) {
        events
            .publish(&PipelineEvent {
                kind: PipelineEventKind::Quarantined,
                upload_id: upload.upload_id,
                tenant: upload.tenant.clone(),
                purpose: upload.purpose.clone(),
                key: placement.destination.clone(),
                reason: Some(request.rejection.reason),
                at: placement.now,
            })
            .await
            .map_err(|e| StageError::events(Stage::Quarantine, &e))?;
    }
    Ok(QuarantineReport {
        quarantine_key: placement.destination,
        record_key: placement.record_key,
        reason: request.rejection.reason,
        quarantined_now,
    })
}

/// Copies the object to quarantine, confirms the copy, and writes the record beside it.
/// Returns the object's SHA-256 and size.
async fn copy_with_record(
    store: &dyn ObjectStore,
    request: &QuarantineRequest,
    placement: &mut Placement,
    meta: &ObjectMeta,
) -> Result<(String, u64), StageError> {
    let store_err = |e: &StoreError| StageError::store(Stage::Quarantine, e);
    let incoming = request.object.key.as_str();
    let (sha256, size) = match &request.sha256 {
        Some(sha) => (sha.clone(), meta.size),
        None => super::hash_object(store, incoming, Stage::Quarantine).await?,
    };
    choose_place(store, incoming, placement, &sha256).await?;
    let destination = placement.destination.as_str();
    super::copy_confirmed(Stage::Quarantine, store, incoming, destination, meta.size).await?;
    let upload = placement.upload.as_ref();
    let intent = placement.intent.as_ref();
    let record = QuarantineRecord {
        reason: request.rejection.reason,
        detail: request.rejection.detail.clone(),
        signature: request.rejection.signature.clone(),
        stage: request.stage,
        sha256: sha256.clone(),
        size,
        bucket: request.object.bucket.clone(),
        original_key: incoming.to_owned(),
        quarantine_key: destination.to_owned(),
        tenant: upload.map(|u| u.tenant.to_string()),
        purpose: upload.map(|u| u.purpose.to_string()),
        intent_id: intent.map(|i| i.id.to_string()),
        uploader: intent.and_then(|i| i.uploader.clone()),
        filename: intent.and_then(|i| i.filename.clone()),
        declared_type: intent.map(|i| i.declared_type.clone()),
        declared_size: intent.map(|i| i.declared_size),
        engine: request.rejection.engine.clone(),
        uploaded_at: meta.last_modified,
        quarantined_at: placement.now,
    };
    let json = serde_json::to_vec_pretty(&record)
        .map_err(|e| StageError::new(Stage::Quarantine, Retry::Permanent, e.to_string()))?;
    store
        .put(&placement.record_key, json, "application/json")
        .await
        .map_err(|e| store_err(&e))?;
    Ok((sha256, size))
}

/// Places at most this many objects under one quarantine key (the key, then the key with
/// the object's hash, then numbered).
const MAX_PLACES: usize = 8;

/// Picks where the object and its record go, never overwriting anything but this same
/// object's earlier quarantine (a retry): not another object's evidence (a second upload
/// to a used key), and, for keys outside the server's scheme where `x.json` is a possible
/// object name, neither another object's record nor an object where a record would go.
/// A taken key gets the object's hash appended.
async fn choose_place(
    store: &dyn ObjectStore,
    incoming: &str,
    placement: &mut Placement,
    sha256: &str,
) -> Result<(), StageError> {
    let base = placement.destination.clone();
    let short = sha256.get(..16).unwrap_or(sha256);
    for attempt in 0..MAX_PLACES {
        let destination = match attempt {
            0 => base.clone(),
            1 => format!("{base}.{short}"),
            n => format!("{base}.{short}-{n}"),
        };
        let record_key = format!("{destination}.json");
        if place_is_free_or_ours(store, incoming, &destination, &record_key, sha256).await? {
            placement.destination = destination;
            placement.record_key = record_key;
            return Ok(());
        }
    }
    Err(StageError::new(
        Stage::Quarantine,
        Retry::Permanent,
        format!("{MAX_PLACES} quarantine keys from {base} on are taken by other objects"),
    ))
}

/// Whether `destination` and `record_key` are free, or hold this object's own earlier
/// quarantine.
async fn place_is_free_or_ours(
    store: &dyn ObjectStore,
    incoming: &str,
    destination: &str,
    record_key: &str,
    sha256: &str,
) -> Result<bool, StageError> {
    let store_err = |e: &StoreError| StageError::store(Stage::Quarantine, e);
    if let Some(meta) = store.head(record_key).await.map_err(|e| store_err(&e))? {
        // Ours only if it is a record of this very object at this very place; anything
        // else there (another object's record, or an object) must stay untouched.
        return Ok(read_record(store, record_key, meta.size)
            .await?
            .is_some_and(|record| {
                record.sha256.eq_ignore_ascii_case(sha256)
                    && record.quarantine_key == destination
                    && record.original_key == incoming
            }));
    }
    if store
        .head(destination)
        .await
        .map_err(|e| store_err(&e))?
        .is_none()
    {
        return Ok(true);
    }
    // Something without a record: this object from a run interrupted before its record
    // was written, or another object's record or evidence. Only the bytes tell.
    let (existing, _) = super::hash_object(store, destination, Stage::Quarantine).await?;
    Ok(existing.eq_ignore_ascii_case(sha256))
}

/// The quarantine record at `record_key` (`size` bytes), if what is there is one.
async fn read_record(
    store: &dyn ObjectStore,
    record_key: &str,
    size: u64,
) -> Result<Option<QuarantineRecord>, StageError> {
    if size > MAX_RECORD_BYTES {
        return Ok(None);
    }
    let bytes = store
        .read_range(record_key, 0, size)
        .await
        .map_err(|e| StageError::store(Stage::Quarantine, &e))?;
    Ok(serde_json::from_slice::<QuarantineRecord>(&bytes).ok())
}

/// Records are a few hundred bytes; anything much larger is not one.
const MAX_RECORD_BYTES: u64 = 1 << 20;

/// Moves the intent (if there is one) to QUARANTINED; an intent already settled (a used key)
/// is left alone. Returns whether this call changed it.
async fn mark_quarantined(
    intents: &dyn IntentStore,
    request: &QuarantineRequest,
    placement: &Placement,
    facts: Option<(String, u64)>,
) -> Result<bool, StageError> {
    let Some(intent) = &placement.intent else {
        return Ok(false);
    };
    let (sha256, size) = facts.unzip();
    let result = intents
        .transition(
            intent.id,
            Transition {
                from: IntentState::sources_of(IntentState::Quarantined),
                to: IntentState::Quarantined,
                at: placement.now,
                outcome: Some(IntentOutcome {
                    key: placement.destination.clone(),
                    reason: Some(request.rejection.reason),
                    detail: Some(request.rejection.detail.clone()),
                    sha256,
                    size,
                    engine: request.rejection.engine.clone(),
                    media: None,
                }),
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
