//! Promote: copy a checked object to `trusted/`, mark its intent READY, and only then delete it
//! from `incoming/`. Every step is safe to repeat, so a retried or duplicate run finishes
//! whatever an interrupted one left.

use serde::{Deserialize, Serialize};

use super::{Stage, StageError};
use crate::intent::{IntentOutcome, IntentState};
use crate::keys::UploadKey;
use crate::ports::{
    Clock, EventSink, IntentStore, ObjectStore, PipelineEvent, PipelineEventKind, Retry,
    Transition, TransitionResult,
};

/// What promote did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PromoteReport {
    pub trusted_key: String,
    /// False when an earlier run had already promoted it.
    pub promoted_now: bool,
}

/// Promotes the object of `upload` with the facts the earlier stages established.
pub async fn promote(
    store: &dyn ObjectStore,
    intents: &dyn IntentStore,
    events: &dyn EventSink,
    clock: &dyn Clock,
    upload: &UploadKey,
    sha256: &str,
    size: u64,
) -> Result<PromoteReport, StageError> {
    let store_err = |e: &crate::ports::StoreError| StageError::store(Stage::Promote, e);
    let incoming = upload.incoming();
    let trusted = upload.trusted();

    let incoming_meta = store.head(&incoming).await.map_err(|e| store_err(&e))?;
    let promoted_now = incoming_meta.is_some();
    if let Some(meta) = incoming_meta {
        store
            .copy(&incoming, &trusted)
            .await
            .map_err(|e| store_err(&e))?;
        // Never delete the source before the copy is confirmed.
        match store.head(&trusted).await.map_err(|e| store_err(&e))? {
            Some(copy) if copy.size == meta.size => {}
            other => {
                return Err(StageError::new(
                    Stage::Promote,
                    Retry::Transient,
                    format!(
                        "copy to {trusted} not confirmed: expected {} bytes, found {:?}",
                        meta.size,
                        other.map(|m| m.size)
                    ),
                ));
            }
        }
    } else if store
        .head(&trusted)
        .await
        .map_err(|e| store_err(&e))?
        .is_none()
    {
        return Err(StageError::new(
            Stage::Promote,
            Retry::Permanent,
            format!("neither {incoming} nor {trusted} exists"),
        ));
    }

    let now = clock.now();
    let outcome = IntentOutcome {
        key: trusted.clone(),
        reason: None,
        detail: None,
        sha256: Some(sha256.to_owned()),
        size: Some(size),
    };
    let result = intents
        .transition(
            upload.upload_id,
            Transition {
                from: IntentState::sources_of(IntentState::Ready),
                to: IntentState::Ready,
                at: now,
                outcome: Some(outcome),
            },
        )
        .await
        .map_err(|e| StageError::intents(Stage::Promote, &e))?;
    let newly_ready = match result {
        TransitionResult::Applied(_) => true,
        TransitionResult::Refused {
            current: IntentState::Ready,
        } => false,
        TransitionResult::Refused { current } => {
            return Err(StageError::new(
                Stage::Promote,
                Retry::Permanent,
                format!(
                    "intent {} is {current}, cannot become READY",
                    upload.upload_id
                ),
            ));
        }
        TransitionResult::NotFound => {
            return Err(StageError::new(
                Stage::Promote,
                Retry::Permanent,
                format!("intent {} not found", upload.upload_id),
            ));
        }
    };

    store.delete(&incoming).await.map_err(|e| store_err(&e))?;

    if newly_ready {
        events
            .publish(&PipelineEvent {
                kind: PipelineEventKind::Ready,
                upload_id: upload.upload_id,
                tenant: upload.tenant.clone(),
                purpose: upload.purpose.clone(),
                key: trusted.clone(),
                reason: None,
                at: now,
            })
            .await
            .map_err(|e| StageError::events(Stage::Promote, &e))?;
    }
    Ok(PromoteReport {
        trusted_key: trusted,
        promoted_now,
    })
}
