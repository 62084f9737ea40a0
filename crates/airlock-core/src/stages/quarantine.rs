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
        let already_there = store
            .head(&placement.destination)
            .await
            .map_err(|e| store_err(&e))?
            .is_some();
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

    // Tell products once per upload: not again for an upload already settled (a second
    // object sent to a used key is for security review, not a new outcome).
    let announce = newly_quarantined || (placement.intent.is_none() && quarantined_now);
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
    // Never overwrite another object's evidence (a second upload to a used key): a
    // different object goes beside it, under its own hash.
    if let Some(existing) = recorded_sha256(store, &placement.record_key).await?
        && !existing.eq_ignore_ascii_case(&sha256)
    {
        let short = sha256.get(..16).unwrap_or(&sha256);
        placement.destination = format!("{}.{short}", placement.destination);
        placement.record_key = format!("{}.json", placement.destination);
    }
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

/// The SHA-256 in an existing quarantine record, if there is one.
async fn recorded_sha256(
    store: &dyn ObjectStore,
    record_key: &str,
) -> Result<Option<String>, StageError> {
    if store
        .head(record_key)
        .await
        .map_err(|e| StageError::store(Stage::Quarantine, &e))?
        .is_none()
    {
        return Ok(None);
    }
    let bytes = store
        .read_range(record_key, 0, 1 << 20)
        .await
        .map_err(|e| StageError::store(Stage::Quarantine, &e))?;
    Ok(serde_json::from_slice::<QuarantineRecord>(&bytes)
        .ok()
        .map(|record| record.sha256))
}

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
