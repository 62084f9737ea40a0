//! Quarantine: copy a rejected object to `quarantine/` with a JSON record beside it, mark its
//! intent QUARANTINED, then delete it from `incoming/`. Safe to repeat.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use super::{Stage, StageError};
use crate::intent::{IntentOutcome, IntentState};
use crate::keys::{QUARANTINE_PREFIX, UploadKey, counterpart};
use crate::object::ObjectRef;
use crate::ports::{
    Clock, EventSink, IntentStore, ObjectReader, ObjectStore, PipelineEvent, PipelineEventKind,
    Retry, StoreError, Transition, TransitionResult,
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

async fn sha256_of(store: &dyn ObjectReader, key: &str) -> Result<(String, u64), StageError> {
    let mut stream = store
        .open(key)
        .await
        .map_err(|e| StageError::store(Stage::Quarantine, &e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = stream.read(&mut buf).await.map_err(|e| {
            StageError::new(
                Stage::Quarantine,
                Retry::Transient,
                format!("reading {key}: {e}"),
            )
        })?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), size))
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
    let record_key = format!("{destination}.json");
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
    let now = clock.now();

    let incoming_meta = store.head(incoming).await.map_err(|e| store_err(&e))?;
    let quarantined_now = incoming_meta.is_some();
    if let Some(meta) = &incoming_meta {
        let (sha256, size) = match &request.sha256 {
            Some(sha) => (sha.clone(), meta.size),
            None => sha256_of(store, incoming).await?,
        };
        store
            .copy(incoming, &destination)
            .await
            .map_err(|e| store_err(&e))?;
        match store.head(&destination).await.map_err(|e| store_err(&e))? {
            Some(copy) if copy.size == meta.size => {}
            other => {
                return Err(StageError::new(
                    Stage::Quarantine,
                    Retry::Transient,
                    format!(
                        "copy to {destination} not confirmed: expected {} bytes, found {:?}",
                        meta.size,
                        other.map(|m| m.size)
                    ),
                ));
            }
        }
        let record = QuarantineRecord {
            reason: request.rejection.reason,
            detail: request.rejection.detail.clone(),
            signature: request.rejection.signature.clone(),
            stage: request.stage,
            sha256,
            size,
            bucket: request.object.bucket.clone(),
            original_key: incoming.to_owned(),
            quarantine_key: destination.clone(),
            tenant: upload.as_ref().map(|u| u.tenant.to_string()),
            purpose: upload.as_ref().map(|u| u.purpose.to_string()),
            intent_id: intent.as_ref().map(|i| i.id.to_string()),
            uploader: intent.as_ref().and_then(|i| i.uploader.clone()),
            filename: intent.as_ref().and_then(|i| i.filename.clone()),
            declared_type: intent.as_ref().map(|i| i.declared_type.clone()),
            declared_size: intent.as_ref().map(|i| i.declared_size),
            engine: request.rejection.engine.clone(),
            uploaded_at: meta.last_modified,
            quarantined_at: now,
        };
        let json = serde_json::to_vec_pretty(&record).map_err(|e| {
            StageError::new(Stage::Quarantine, Retry::Permanent, e.to_string())
        })?;
        store
            .put(&record_key, json, "application/json")
            .await
            .map_err(|e| store_err(&e))?;
    } else if store
        .head(&destination)
        .await
        .map_err(|e| store_err(&e))?
        .is_none()
    {
        return Err(StageError::new(
            Stage::Quarantine,
            Retry::Permanent,
            format!("neither {incoming} nor {destination} exists"),
        ));
    }

    // The intent follows the object; an already-settled intent (a used key) is left alone.
    let mut newly_quarantined = false;
    if let Some(intent) = &intent {
        let result = intents
            .transition(
                intent.id,
                Transition {
                    from: IntentState::sources_of(IntentState::Quarantined),
                    to: IntentState::Quarantined,
                    at: now,
                    outcome: Some(IntentOutcome {
                        key: destination.clone(),
                        reason: Some(request.rejection.reason),
                        detail: Some(request.rejection.detail.clone()),
                        sha256: request.sha256.clone(),
                        size: incoming_meta.as_ref().map(|m| m.size),
                    }),
                },
            )
            .await
            .map_err(|e| StageError::intents(Stage::Quarantine, &e))?;
        match result {
            TransitionResult::Applied(_) => newly_quarantined = true,
            TransitionResult::Refused { current } => {
                tracing::info!(intent = %intent.id, %current, "intent already settled; left as is");
            }
            TransitionResult::NotFound => {}
        }
    }

    store.delete(incoming).await.map_err(|e| store_err(&e))?;

    if let (Some(upload), true) = (&upload, quarantined_now || newly_quarantined) {
        events
            .publish(&PipelineEvent {
                kind: PipelineEventKind::Quarantined,
                upload_id: upload.upload_id,
                tenant: upload.tenant.clone(),
                purpose: upload.purpose.clone(),
                key: destination.clone(),
                reason: Some(request.rejection.reason),
                at: now,
            })
            .await
            .map_err(|e| StageError::events(Stage::Quarantine, &e))?;
    }
    Ok(QuarantineReport {
        quarantine_key: destination,
        record_key,
        reason: request.rejection.reason,
        quarantined_now,
    })
}
