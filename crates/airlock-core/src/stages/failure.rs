//! Record failure: the end of an execution whose promote or quarantine failed after every
//! retry. The object stays in `incoming/` (nothing is lost); the intent becomes FAILED, so
//! the status says so, and a dead letter names the object for an operator to retry.

use serde::{Deserialize, Serialize};

use super::{Stage, StageError};
use crate::intent::IntentState;
use crate::keys::UploadKey;
use crate::object::ObjectRef;
use crate::ports::{Clock, DeadLetter, DeadLetters, IntentStore, Transition, TransitionResult};

/// What was recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailureReport {
    /// The intent's state now, when the object has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent_state: Option<IntentState>,
    pub dead_letter: bool,
}

/// Marks the upload of `object` FAILED (unless it was settled meanwhile) and records a
/// dead letter for the stage that failed.
pub async fn record_failure(
    intents: &dyn IntentStore,
    dead_letters: &dyn DeadLetters,
    clock: &dyn Clock,
    object: &ObjectRef,
    failed: (Stage, &str, &str),
) -> Result<FailureReport, StageError> {
    let (stage, error, cause) = failed;
    let now = clock.now();
    let mut intent_state = None;
    if let Ok(upload) = UploadKey::parse_incoming(&object.key) {
        let owned = intents
            .get(upload.upload_id)
            .await
            .map_err(|e| StageError::intents(Stage::RecordFailure, &e))?
            .filter(|i| i.tenant == upload.tenant && i.purpose == upload.purpose);
        if owned.is_some() {
            let result = intents
                .transition(
                    upload.upload_id,
                    Transition {
                        from: IntentState::sources_of(IntentState::Failed),
                        to: IntentState::Failed,
                        at: now,
                        outcome: None,
                        review: false,
                    },
                )
                .await
                .map_err(|e| StageError::intents(Stage::RecordFailure, &e))?;
            intent_state = match result {
                TransitionResult::Applied(intent) => Some(intent.state),
                TransitionResult::Refused { current } => Some(current),
                TransitionResult::NotFound => None,
            };
        }
    }
    dead_letters
        .record(&DeadLetter {
            object: object.clone(),
            stage,
            error: error.to_owned(),
            cause: cause.to_owned(),
            at: now,
        })
        .await
        .map_err(|e| StageError::new(Stage::RecordFailure, e.retry, e.to_string()))?;
    Ok(FailureReport {
        intent_state,
        dead_letter: true,
    })
}
