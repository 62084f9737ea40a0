//! Promote: copy a checked object to `trusted/`, mark its intent READY, and only then delete it
//! from `incoming/`. Every step is safe to repeat, so a retried or duplicate run finishes
//! whatever an interrupted one left.

use serde::{Deserialize, Serialize};

use super::{Stage, StageError, copy_confirmed};
use crate::intent::{IntentOutcome, IntentState};
use crate::keys::UploadKey;
use crate::ports::{
    Clock, EventSink, IntentStore, ObjectStore, PipelineEvent, PipelineEventKind, Retry,
    Transition, TransitionResult,
};
use crate::ports::{ObjectVersion, WriteMode};
use crate::stages::{MediaReport, SettledLeftover, StagedOutput};

/// What promote did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PromoteReport {
    pub trusted_key: String,
    /// False when an earlier run had already promoted it.
    pub promoted_now: bool,
}

/// What the earlier stages established about an object to promote.
#[derive(Debug, Clone, Copy)]
pub struct PromoteFacts<'a> {
    /// SHA-256 of the uploaded bytes, from the scan.
    pub sha256: &'a str,
    pub size: u64,
    /// The scanner engine and definitions that passed it.
    pub engine: &'a str,
    /// The version inspected and scanned: exactly it is copied, so the bytes in `trusted/`
    /// are the scanned bytes from the moment they appear there (no copy-then-check window).
    pub version: Option<&'a ObjectVersion>,
    /// For images: the sanitized original and variants waiting under `staging/`.
    pub media: Option<&'a MediaReport>,
}

/// Removes what this run wrote to `trusted/` (when it may not promote after all).
async fn remove_trusted(
    store: &dyn ObjectStore,
    upload: &UploadKey,
    media: Option<&(&MediaReport, serde_json::Value)>,
) -> Result<(), StageError> {
    let mut keys = vec![upload.trusted()];
    if let Some((report, _)) = media {
        keys.extend(report.variants.iter().map(|v| variant_key(upload, v)));
        keys.push(upload.trusted_derived("json"));
        keys.push(upload.trusted_derived("original"));
    }
    for key in keys {
        store
            .delete(&key, None)
            .await
            .map_err(|e| StageError::store(Stage::Promote, &e))?;
    }
    Ok(())
}

/// The promoted keys of a media report: the sanitized original takes the upload's key,
/// variants and metadata sit beside it.
fn media_summary(upload: &UploadKey, report: &MediaReport) -> serde_json::Value {
    let output = |o: &StagedOutput, key: String| {
        serde_json::json!({
            "name": o.name,
            "key": key,
            "contentType": o.content_type,
            "width": o.width,
            "height": o.height,
            "size": o.size,
            "sha256": o.sha256,
        })
    };
    let variants: Vec<_> = report
        .variants
        .iter()
        .map(|v| output(v, variant_key(upload, v)))
        .collect();
    serde_json::json!({
        "original": output(&report.original, upload.trusted()),
        "variants": variants,
        "metadataKey": upload.trusted_derived("json"),
        "metadata": report.metadata,
    })
}

fn variant_key(upload: &UploadKey, variant: &StagedOutput) -> String {
    upload.trusted_derived(&format!("{}.{}", variant.name, variant.extension))
}

/// Copies what trusted/ gets: the upload itself, or for images the sanitized original,
/// variants and metadata (and the upload too if the policy keeps it). Every copy names the
/// exact version it copies; a source that was replaced fails the copy.
async fn copy_to_trusted(
    store: &dyn ObjectStore,
    upload: &UploadKey,
    source: &str,
    facts: &PromoteFacts<'_>,
    media: Option<&(&MediaReport, serde_json::Value)>,
) -> Result<(), StageError> {
    let trusted = upload.trusted();
    let copy = async |from: (&str, Option<&ObjectVersion>), to: &str, size: u64| {
        copy_confirmed(Stage::Promote, store, from, to, WriteMode::Overwrite, size).await
    };
    let Some((report, summary)) = media else {
        copy((source, facts.version), &trusted, facts.size).await?;
        return Ok(());
    };
    // Variants and metadata first, the original last: once `trusted/{id}` exists,
    // everything beside it does too.
    for variant in &report.variants {
        let from = (variant.staging_key.as_str(), variant.version.as_ref());
        copy(from, &variant_key(upload, variant), variant.size).await?;
    }
    let json = serde_json::to_vec_pretty(summary)
        .map_err(|e| StageError::new(Stage::Promote, Retry::Permanent, e.to_string()))?;
    store
        .put(
            &upload.trusted_derived("json"),
            json,
            "application/json",
            WriteMode::Overwrite,
        )
        .await
        .map_err(|e| StageError::store(Stage::Promote, &e))?;
    if report.keep_original {
        let original = upload.trusted_derived("original");
        copy((source, facts.version), &original, facts.size).await?;
    }
    let from = (
        report.original.staging_key.as_str(),
        report.original.version.as_ref(),
    );
    copy(from, &trusted, report.original.size).await?;
    Ok(())
}

/// Whether the READY intent was settled by this object (an earlier attempt of this
/// promotion): its outcome names this trusted key and the scanned SHA-256.
async fn settled_by_this_object(
    intents: &dyn IntentStore,
    upload: &UploadKey,
    trusted: &str,
    sha256: &str,
) -> Result<bool, StageError> {
    let intent = intents
        .get(upload.upload_id)
        .await
        .map_err(|e| StageError::intents(Stage::Promote, &e))?;
    Ok(intent.and_then(|i| i.outcome).is_some_and(|outcome| {
        outcome.key == trusted
            && outcome
                .sha256
                .is_some_and(|recorded| recorded.eq_ignore_ascii_case(sha256))
    }))
}

/// Promotes the object of `upload` with the facts the earlier stages established.
pub async fn promote(
    store: &dyn ObjectStore,
    intents: &dyn IntentStore,
    events: &dyn EventSink,
    clock: &dyn Clock,
    upload: &UploadKey,
    facts: PromoteFacts<'_>,
) -> Result<PromoteReport, StageError> {
    let incoming = upload.incoming();
    let source = PromoteSource {
        key: &incoming,
        from: IntentState::sources_of(IntentState::Ready),
        review: false,
    };
    promote_from(store, intents, events, clock, upload, &source, facts).await
}

/// Where the bytes to promote are, and from which intent states they may be promoted: the
/// pipeline's `incoming/` object (from PROCESSING), or a reviewer's release of a
/// quarantined one (from QUARANTINED, a review change).
pub(crate) struct PromoteSource<'a> {
    pub key: &'a str,
    pub from: Vec<IntentState>,
    pub review: bool,
}

/// Promotes the bytes at `source.key` (exactly `facts.version`) as the upload's trusted
/// object; the source is deleted last.
pub(crate) async fn promote_from(
    store: &dyn ObjectStore,
    intents: &dyn IntentStore,
    events: &dyn EventSink,
    clock: &dyn Clock,
    upload: &UploadKey,
    source: &PromoteSource<'_>,
    facts: PromoteFacts<'_>,
) -> Result<PromoteReport, StageError> {
    let store_err = |e: &crate::ports::StoreError| StageError::store(Stage::Promote, e);
    let incoming = source.key;
    let trusted = upload.trusted();
    let media = facts
        .media
        .map(|report| (report, media_summary(upload, report)));

    let incoming_meta = store.head(incoming).await.map_err(|e| store_err(&e))?;
    let promoted_now = incoming_meta.is_some();
    if incoming_meta.is_some() {
        copy_to_trusted(store, upload, incoming, &facts, media.as_ref()).await?;
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
        sha256: Some(facts.sha256.to_owned()),
        size: Some(facts.size),
        engine: Some(facts.engine.to_owned()),
        media: media.as_ref().map(|(_, summary)| summary.clone()),
    };
    let result = intents
        .transition(
            upload.upload_id,
            Transition {
                from: source.from.clone(),
                to: IntentState::Ready,
                at: now,
                outcome: Some(outcome),
                review: source.review,
            },
        )
        .await
        .map_err(|e| StageError::intents(Stage::Promote, &e))?;
    let announce = match result {
        TransitionResult::Applied(_) => true,
        TransitionResult::Refused {
            current: IntentState::Ready,
        } => settled_by_this_object(intents, upload, &trusted, facts.sha256).await?,
        TransitionResult::Refused { current } => {
            // Settled otherwise meanwhile (e.g. quarantined by another run): what this run
            // put in trusted/ must not stay there.
            if promoted_now {
                remove_trusted(store, upload, media.as_ref()).await?;
            }
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

    // At least once: a retry after a failed publish finds the intent READY already, by
    // this same object, and publishes again (consumers deduplicate on the upload id).
    // Before the delete: if the run dies in between, the copy left in incoming/ brings the
    // upload back to be finished, publish included.
    if announce {
        publish_ready(events, upload, &trusted, now).await?;
    }
    // Only the version promoted: a newer object at the key is left for its own run.
    store
        .delete(incoming, facts.version)
        .await
        .map_err(|e| store_err(&e))?;
    if let Some((report, _)) = &media {
        for staged in std::iter::once(&report.original).chain(&report.variants) {
            store
                .delete(&staged.staging_key, None)
                .await
                .map_err(|e| store_err(&e))?;
        }
    }
    Ok(PromoteReport {
        trusted_key: trusted,
        promoted_now,
    })
}

async fn publish_ready(
    events: &dyn EventSink,
    upload: &UploadKey,
    trusted: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<(), StageError> {
    events
        .publish(&PipelineEvent {
            kind: PipelineEventKind::Ready,
            upload_id: upload.upload_id,
            tenant: upload.tenant.clone(),
            purpose: upload.purpose.clone(),
            key: trusted.to_owned(),
            reason: None,
            at,
        })
        .await
        .map_err(|e| StageError::events(Stage::Promote, &e))
}

/// Finishes a promotion that an interrupted run left half done: the intent is READY by
/// these bytes and `trusted/` holds them, but the copy in `incoming/` (exactly
/// `leftover.version`) was not removed, and `upload.ready` may not have been published.
/// Removes the copy and publishes (at least once; consumers deduplicate on the upload id).
pub async fn finish_promotion(
    store: &dyn ObjectStore,
    events: &dyn EventSink,
    clock: &dyn Clock,
    upload: &UploadKey,
    leftover: &SettledLeftover,
) -> Result<PromoteReport, StageError> {
    if leftover.state != IntentState::Ready {
        return Err(StageError::new(
            Stage::Promote,
            Retry::Permanent,
            format!(
                "upload {} was settled as {}, not READY: refusing to promote",
                upload.upload_id, leftover.state
            ),
        ));
    }
    publish_ready(events, upload, &leftover.settled_key, clock.now()).await?;
    store
        .delete(&upload.incoming(), leftover.version.as_ref())
        .await
        .map_err(|e| StageError::store(Stage::Promote, &e))?;
    Ok(PromoteReport {
        trusted_key: leftover.settled_key.clone(),
        promoted_now: false,
    })
}
