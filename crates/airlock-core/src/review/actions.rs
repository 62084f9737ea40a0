//! The reviewer's actions, each recorded in the audit trail: release, purge, rescan (of
//! quarantined uploads whose reason was an outage, and of trusted uploads when signatures
//! change), export. Plain async functions over ports, like the stages, whose code they
//! reuse: a release rescans with the scan stage and promotes with the promote stage (and
//! runs the media stage first for images), so it promotes nothing the pipeline would not.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use super::audit::{AuditAction, AuditEntry, AuditError, AuditFilter, AuditRecord, AuditTrail};
use super::index::{
    Checkpoints, PageRequest, QuarantineError, QuarantineFilter, QuarantineIndex, QuarantineItem,
    QuarantineStatus, SampleSink, StateChange, TrustedFilter, TrustedUploads,
};
use crate::definitions::FreshnessRule;
use crate::intent::{IntentOutcome, IntentState, UploadIntent};
use crate::keys::{QUARANTINE_PREFIX, UploadId, UploadKey, counterpart};
use crate::media::MediaProcessor;
use crate::object::{ObjectMeta, ObjectRef};
use crate::policy::{Policies, normalize_type};
use crate::ports::{
    Clock, EventSink, EventSinkError, IntentStore, IntentStoreError, ObjectStore, PipelineEvent,
    PipelineEventKind, ScanError, ScanVerdict, Scanner, StoreError, Transition, TransitionResult,
    WriteMode,
};
use crate::stages::{
    InspectReport, MediaJob, MediaOutcome, MediaReport, PromoteFacts, PromoteSource,
    QuarantineRecord, QuarantineRequest, SNIFF_LEN, ScanOutcome, ScanPass, Sniffed, Stage,
    StageError, check_type, hash_object, media_from, place_elsewhere, promote_from, scan,
    sniff_type,
};
use crate::verdict::{ReasonCode, Rejection};

/// The ports every action uses.
#[derive(Clone, Copy)]
pub struct Review<'a> {
    pub store: &'a dyn ObjectStore,
    /// The bucket `store` holds (named in the records of revoked uploads).
    pub bucket: &'a str,
    pub intents: &'a dyn IntentStore,
    pub quarantine: &'a dyn QuarantineIndex,
    pub audit: &'a dyn AuditTrail,
    pub events: &'a dyn EventSink,
    pub clock: &'a dyn Clock,
}

impl std::fmt::Debug for Review<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Review")
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

/// What judging bytes again takes: the current scanner and policies, and the media stage's
/// library (a released image is sanitized, never promoted raw).
#[derive(Clone)]
pub struct Rescanning<'a> {
    pub scanner: &'a dyn Scanner,
    /// How old the scanner's definitions may be for its verdict to count (as in the scan
    /// stage: a release on stale signatures fails, and nothing is promoted).
    pub freshness: FreshnessRule,
    pub policies: &'a Policies,
    pub media: Arc<dyn MediaProcessor>,
    /// Caps images decoded at once.
    pub media_permits: Arc<Semaphore>,
}

impl std::fmt::Debug for Rescanning<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rescanning").finish_non_exhaustive()
    }
}

/// Why an action did not happen, or failed. The first group are refusals (the action is not
/// allowed for this item: nothing was changed); the rest are infrastructure failures.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("a written reason is required (why is this done?)")]
    ReasonRequired,
    #[error("no quarantined upload {0:?}")]
    NotFound(String),
    #[error("{key} is {status}: {detail}")]
    WrongStatus {
        key: String,
        status: QuarantineStatus,
        detail: &'static str,
    },
    #[error(
        "{key} is quarantined as {reason}, which a release cannot fix (it describes the upload itself, not the scanner's verdict); only a forced release can override it"
    )]
    NotReleasable { key: String, reason: ReasonCode },
    #[error("{key} cannot be released: {detail}")]
    CannotRelease { key: String, detail: String },
    #[error(
        "{key} is quarantined as {reason}: a rescan is for uploads quarantined for an outage (scan-unavailable, inspect-unavailable, media-unavailable); a release judges it again"
    )]
    NotRescannable { key: String, reason: ReasonCode },
    #[error("{key}")]
    Stage {
        key: String,
        #[source]
        source: StageError,
    },
    #[error("object store failed on {key}")]
    Store {
        key: String,
        #[source]
        source: StoreError,
    },
    #[error("scanning {key} failed")]
    Scan {
        key: String,
        #[source]
        source: ScanError,
    },
    #[error("writing the export of {key} failed")]
    Export {
        key: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Index(#[from] QuarantineError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Intents(#[from] IntentStoreError),
    #[error(transparent)]
    Events(#[from] EventSinkError),
}

impl ReviewError {
    /// A refusal (nothing was changed; the request is not allowed), not a failure.
    #[must_use]
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Self::ReasonRequired
                | Self::WrongStatus { .. }
                | Self::NotReleasable { .. }
                | Self::CannotRelease { .. }
                | Self::NotRescannable { .. }
        )
    }

    fn stage(key: &str, source: StageError) -> Self {
        Self::Stage {
            key: key.to_owned(),
            source,
        }
    }

    fn store(key: &str, source: StoreError) -> Self {
        Self::Store {
            key: key.to_owned(),
            source,
        }
    }
}

fn required(why: &str) -> Result<&str, ReviewError> {
    let why = why.trim();
    if why.is_empty() {
        Err(ReviewError::ReasonRequired)
    } else {
        Ok(why)
    }
}

async fn item(review: &Review<'_>, key: &str) -> Result<QuarantineItem, ReviewError> {
    review
        .quarantine
        .get(key)
        .await?
        .ok_or_else(|| ReviewError::NotFound(key.to_owned()))
}

struct Audited<'a> {
    action: AuditAction,
    subject: &'a str,
    upload_id: Option<String>,
    before: &'a str,
    after: &'a str,
    sha256: Option<&'a str>,
    detail: Option<String>,
}

async fn audit(
    review: &Review<'_>,
    actor: &str,
    why: &str,
    entry: Audited<'_>,
) -> Result<AuditEntry, ReviewError> {
    Ok(review
        .audit
        .append(AuditRecord {
            at: review.clock.now(),
            actor: actor.to_owned(),
            action: entry.action,
            subject: entry.subject.to_owned(),
            upload_id: entry.upload_id,
            why: why.to_owned(),
            before: entry.before.to_owned(),
            after: entry.after.to_owned(),
            sha256: entry.sha256.map(str::to_owned),
            detail: entry.detail,
        })
        .await?)
}

/// What a release (or a rescan of a quarantined upload) did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum ReleaseOutcome {
    /// Rescanned clean and promoted.
    Released {
        #[serde(rename = "trustedKey")]
        trusted_key: String,
        /// Image variants promoted with it.
        variants: usize,
    },
    /// The rescan (or the media stage) rejected the bytes again: they stay in quarantine.
    Rejected(Rejection),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseReport {
    pub key: String,
    #[serde(flatten)]
    pub outcome: ReleaseOutcome,
    /// False when an earlier release had already promoted it.
    pub released_now: bool,
    /// The audit entry recording it.
    pub audit_seq: u64,
}

/// The upload a quarantined item belongs to, and its intent (which must exist: nothing is
/// promoted without one).
async fn owner(
    review: &Review<'_>,
    record: &QuarantineRecord,
) -> Result<(UploadKey, UploadIntent), ReviewError> {
    let key = &record.quarantine_key;
    let cannot = |detail: String| ReviewError::CannotRelease {
        key: key.clone(),
        detail,
    };
    let id: UploadId = record
        .intent_id
        .as_deref()
        .ok_or_else(|| {
            cannot("it has no upload intent, so there is no upload to promote it as".to_owned())
        })?
        .parse()
        .map_err(|e| cannot(format!("its record names an invalid upload id: {e}")))?;
    let intent = review
        .intents
        .get(id)
        .await?
        .ok_or_else(|| cannot(format!("its upload intent {id} no longer exists")))?;
    if Some(intent.tenant.as_str()) != record.tenant.as_deref()
        || Some(intent.purpose.as_str()) != record.purpose.as_deref()
    {
        return Err(cannot(format!(
            "its upload intent {id} is for {}/{}, not this object's tenant and purpose",
            intent.tenant, intent.purpose
        )));
    }
    Ok((intent.key(), intent))
}

/// Inspect's checks, again, on the quarantined object: against the intent and the purpose's
/// policy (a forced release accepts another size, and the type the bytes have if the policy
/// allows it).
async fn inspect_again<'p>(
    review: &Review<'_>,
    rescanning: &Rescanning<'p>,
    key: &str,
    intent: &UploadIntent,
    force: bool,
) -> Result<Result<(InspectReport, &'p crate::policy::UploadPolicy), Rejection>, ReviewError> {
    let store = review.store;
    let reject = |reason: ReasonCode, detail: String| Ok(Err(Rejection::new(reason, detail)));
    let Some(policy) = rescanning.policies.get(&intent.purpose) else {
        return reject(
            ReasonCode::PurposeUnknown,
            format!("no upload policy for purpose {:?}", intent.purpose.as_str()),
        );
    };
    let meta = store
        .head(key)
        .await
        .map_err(|e| ReviewError::store(key, e))?
        .ok_or_else(|| ReviewError::CannotRelease {
            key: key.to_owned(),
            detail: "the quarantined object is gone".to_owned(),
        })?;
    if meta.size == 0 {
        return reject(ReasonCode::EmptyFile, "object has no bytes".to_owned());
    }
    if meta.size > policy.max_size {
        return reject(
            ReasonCode::TooLarge,
            format!(
                "{} bytes, purpose {} allows at most {}",
                meta.size, intent.purpose, policy.max_size
            ),
        );
    }
    if meta.size != intent.declared_size && !force {
        return reject(
            ReasonCode::SizeMismatch,
            format!(
                "declared {} bytes, object has {}",
                intent.declared_size, meta.size
            ),
        );
    }
    let head = store
        .read_range(key, meta.version.as_ref(), 0, SNIFF_LEN)
        .await
        .map_err(|e| ReviewError::store(key, e))?;
    let sniffed = sniff_type(&head, head.len() as u64 >= meta.size);
    let declared = normalize_type(&intent.declared_type);
    let (declared, detected) = match check_type(&declared, sniffed) {
        Ok(detected) => (declared, detected),
        Err(detail) => match sniffed {
            // The reviewer vouches for the bytes: judged as what they are.
            Sniffed::Binary(mime) if force && policy.allows(mime) => {
                (mime.to_owned(), mime.to_owned())
            }
            _ => return reject(ReasonCode::TypeMismatch, detail),
        },
    };
    if !policy.allows(&declared) {
        return reject(
            ReasonCode::TypeNotAllowed,
            format!("{declared} is not allowed for purpose {}", intent.purpose),
        );
    }
    let inspected = InspectReport {
        upload_id: intent.id,
        tenant: intent.tenant.clone(),
        purpose: intent.purpose.clone(),
        size: meta.size,
        declared_type: declared,
        media: policy.media.is_some() && detected.starts_with("image/"),
        detected_type: detected,
        expected_sha256: if force { None } else { intent.sha256.clone() },
        bytes_read: head.len() as u64,
        version: meta.version.clone(),
        archive: airlock_archive::detect(&head),
    };
    Ok(Ok((inspected, policy)))
}

/// What judging a quarantined object again found.
enum Judged {
    Pass {
        pass: ScanPass,
        media: Option<Box<MediaReport>>,
    },
    Rejected(Rejection),
}

/// Judges the quarantined object again as the pipeline would: [`inspect_again`], the scan
/// stage with the current scanner (archives judged, hidden archives found), and for images
/// the media stage.
async fn judge_again(
    review: &Review<'_>,
    rescanning: &Rescanning<'_>,
    record: &QuarantineRecord,
    (upload, intent): (&UploadKey, &UploadIntent),
    force: bool,
) -> Result<Judged, ReviewError> {
    let key = record.quarantine_key.as_str();
    let store = review.store;
    let (inspected, policy) = match inspect_again(review, rescanning, key, intent, force).await? {
        Ok(inspected) => inspected,
        Err(rejection) => return Ok(Judged::Rejected(rejection)),
    };
    let detected = inspected.detected_type.clone();
    let media_policy = policy.media.as_ref().filter(|_| inspected.media);

    let pass = match scan(
        store,
        rescanning.scanner,
        key,
        &inspected,
        &policy.archives,
        &rescanning.freshness,
        review.clock,
    )
    .await
    .map_err(|e| ReviewError::stage(key, e))?
    {
        ScanOutcome::Pass(pass) => pass,
        ScanOutcome::Reject(rejection) => return Ok(Judged::Rejected(rejection)),
    };
    if !pass.sha256.eq_ignore_ascii_case(&record.sha256) {
        return Err(ReviewError::CannotRelease {
            key: key.to_owned(),
            detail: format!(
                "its bytes (sha256 {}) are not the ones its record names ({})",
                pass.sha256, record.sha256
            ),
        });
    }
    let media = match media_policy {
        None => None,
        Some(media_policy) => {
            let job = MediaJob {
                upload,
                content_type: &detected,
                size: pass.size,
                scanned_sha256: &pass.sha256,
                version: pass.version.as_ref(),
                policy: media_policy,
            };
            match media_from(
                store,
                Arc::clone(&rescanning.media),
                Arc::clone(&rescanning.media_permits),
                job,
                key,
            )
            .await
            .map_err(|e| ReviewError::stage(key, e))?
            {
                MediaOutcome::Pass(report) => Some(report),
                MediaOutcome::Reject(rejection) => return Ok(Judged::Rejected(rejection)),
            }
        }
    };
    Ok(Judged::Pass { pass, media })
}

/// Releases a quarantined upload: requires a written reason; refuses reasons a release
/// cannot fix unless `force` (see [`ReasonCode::release_can_fix`]); rescans the bytes with
/// the current scanner, runs the media stage for images, and promotes through the promote
/// stage (intent QUARANTINED -> READY, `upload.ready` published, the quarantined object
/// removed; its record stays). Bytes the rescan rejects stay quarantined
/// ([`ReleaseOutcome::Rejected`], audited as `release-refused`).
///
/// Safe to repeat: a release interrupted after the promotion is finished, not redone.
pub async fn release(
    review: &Review<'_>,
    rescanning: &Rescanning<'_>,
    key: &str,
    actor: &str,
    why: &str,
    force: bool,
) -> Result<ReleaseReport, ReviewError> {
    let why = required(why)?;
    let item = item(review, key).await?;
    if !force && !item.record.reason.release_can_fix() {
        return Err(ReviewError::NotReleasable {
            key: key.to_owned(),
            reason: item.record.reason,
        });
    }
    release_item(
        review,
        rescanning,
        &item,
        actor,
        why,
        force,
        AuditAction::Release,
    )
    .await
}

async fn release_item(
    review: &Review<'_>,
    rescanning: &Rescanning<'_>,
    item: &QuarantineItem,
    actor: &str,
    why: &str,
    force: bool,
    action: AuditAction,
) -> Result<ReleaseReport, ReviewError> {
    let key = item.key();
    let record = &item.record;
    if item.status == QuarantineStatus::Purged {
        return Err(ReviewError::WrongStatus {
            key: key.to_owned(),
            status: item.status,
            detail: "its bytes were deleted",
        });
    }
    let (upload, intent) = owner(review, record).await?;
    let trusted = upload.trusted();
    let outcome = intent.outcome.as_ref();
    let released_by_this = intent.state == IntentState::Ready
        && outcome.is_some_and(|o| {
            o.key == trusted
                && o.sha256
                    .as_ref()
                    .is_some_and(|sha| sha.eq_ignore_ascii_case(&record.sha256))
        });
    if released_by_this {
        return finish_release(review, item, &upload, actor, why, action).await;
    }
    if intent.state != IntentState::Quarantined || outcome.is_none_or(|o| o.key != key) {
        return Err(ReviewError::CannotRelease {
            key: key.to_owned(),
            detail: format!(
                "its upload {} is {} by another object ({}): releasing this one would replace it",
                upload.upload_id,
                intent.state,
                outcome.map_or("-", |o| o.key.as_str())
            ),
        });
    }
    match judge_again(review, rescanning, record, (&upload, &intent), force).await? {
        Judged::Pass { pass, media } => {
            promote_released(
                review,
                item,
                &upload,
                (&pass, media.as_deref()),
                actor,
                why,
                action,
            )
            .await
        }
        Judged::Rejected(rejection) => refused(review, item, actor, why, action, rejection).await,
    }
}

/// Promotes a quarantined object that was judged clean again, through the promote stage.
async fn promote_released(
    review: &Review<'_>,
    item: &QuarantineItem,
    upload: &UploadKey,
    (pass, media): (&ScanPass, Option<&MediaReport>),
    actor: &str,
    why: &str,
    action: AuditAction,
) -> Result<ReleaseReport, ReviewError> {
    let key = item.key();
    let source = PromoteSource {
        key,
        from: vec![IntentState::Quarantined],
        review: true,
    };
    let facts = PromoteFacts {
        sha256: &pass.sha256,
        size: pass.size,
        engine: &pass.engine,
        version: pass.version.as_ref(),
        media,
    };
    let promoted = promote_from(
        review.store,
        review.intents,
        review.events,
        review.clock,
        upload,
        &source,
        facts,
    )
    .await
    .map_err(|e| ReviewError::stage(key, e))?;
    review
        .quarantine
        .set_status(key, QuarantineStatus::Released, review.clock.now())
        .await?;
    let variants = media.map_or(0, |m| m.variants.len());
    let sanitized = if media.is_some() {
        format!(" (sanitized image, {variants} variants)")
    } else {
        String::new()
    };
    let entry = audit(
        review,
        actor,
        why,
        Audited {
            action,
            subject: key,
            upload_id: Some(upload.upload_id.to_string()),
            before: "quarantined",
            after: "released",
            sha256: Some(&item.record.sha256),
            detail: Some(format!(
                "rescanned clean by {}; promoted to {}{sanitized}",
                pass.engine, promoted.trusted_key
            )),
        },
    )
    .await?;
    Ok(ReleaseReport {
        key: key.to_owned(),
        outcome: ReleaseOutcome::Released {
            trusted_key: promoted.trusted_key,
            variants,
        },
        released_now: true,
        audit_seq: entry.seq,
    })
}

/// A release that already promoted the upload (perhaps a run interrupted before it recorded
/// so): removes the quarantined copy, records the status, and audits, once.
async fn finish_release(
    review: &Review<'_>,
    item: &QuarantineItem,
    upload: &UploadKey,
    actor: &str,
    why: &str,
    action: AuditAction,
) -> Result<ReleaseReport, ReviewError> {
    let key = item.key();
    let trusted = upload.trusted();
    let mut seq = 0;
    if item.status != QuarantineStatus::Released {
        review
            .store
            .delete(key, None)
            .await
            .map_err(|e| ReviewError::store(key, e))?;
        review
            .quarantine
            .set_status(key, QuarantineStatus::Released, review.clock.now())
            .await?;
        seq = audit(
            review,
            actor,
            why,
            Audited {
                action,
                subject: key,
                upload_id: Some(upload.upload_id.to_string()),
                before: "quarantined",
                after: "released",
                sha256: Some(&item.record.sha256),
                detail: Some(format!("finished an interrupted release to {trusted}")),
            },
        )
        .await?
        .seq;
    }
    Ok(ReleaseReport {
        key: key.to_owned(),
        outcome: ReleaseOutcome::Released {
            trusted_key: trusted,
            variants: 0,
        },
        released_now: false,
        audit_seq: seq,
    })
}

/// Records a release (or rescan) whose judgement rejected the bytes again: they stay.
async fn refused(
    review: &Review<'_>,
    item: &QuarantineItem,
    actor: &str,
    why: &str,
    action: AuditAction,
    rejection: Rejection,
) -> Result<ReleaseReport, ReviewError> {
    let key = item.key();
    let entry = audit(
        review,
        actor,
        why,
        Audited {
            action: if action == AuditAction::Release {
                AuditAction::ReleaseRefused
            } else {
                action
            },
            subject: key,
            upload_id: item.record.intent_id.clone(),
            before: "quarantined",
            after: "quarantined",
            sha256: Some(&item.record.sha256),
            detail: Some(format!(
                "judged again: {} ({})",
                rejection.reason, rejection.detail
            )),
        },
    )
    .await?;
    Ok(ReleaseReport {
        key: key.to_owned(),
        outcome: ReleaseOutcome::Rejected(rejection),
        released_now: false,
        audit_seq: entry.seq,
    })
}

/// What remains of a purged object: written beside its record, never replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tombstone {
    pub quarantine_key: String,
    pub sha256: String,
    pub size: u64,
    pub reason: ReasonCode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    pub purged_by: String,
    pub why: String,
    pub purged_at: DateTime<Utc>,
}

/// Where a purged object's tombstone is.
#[must_use]
pub fn tombstone_key(quarantine_key: &str) -> String {
    format!("{quarantine_key}.tombstone.json")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PurgeReport {
    pub key: String,
    pub tombstone_key: String,
    /// False when it was purged before.
    pub purged_now: bool,
}

/// Deletes a quarantined object, keeping its record and writing a tombstone beside it
/// (SHA-256, size, reason, who, why). A released upload is refused (its bytes are trusted
/// now); purging a purged one changes nothing.
pub async fn purge(
    review: &Review<'_>,
    key: &str,
    actor: &str,
    why: &str,
) -> Result<PurgeReport, ReviewError> {
    let why = required(why)?;
    let item = item(review, key).await?;
    purge_item(review, &item, actor, why).await
}

async fn purge_item(
    review: &Review<'_>,
    item: &QuarantineItem,
    actor: &str,
    why: &str,
) -> Result<PurgeReport, ReviewError> {
    let key = item.key();
    let tombstone_key = tombstone_key(key);
    match item.status {
        QuarantineStatus::Released => {
            return Err(ReviewError::WrongStatus {
                key: key.to_owned(),
                status: item.status,
                detail: "it was released: its bytes are trusted, not in quarantine",
            });
        }
        QuarantineStatus::Purged => {
            return Ok(PurgeReport {
                key: key.to_owned(),
                tombstone_key,
                purged_now: false,
            });
        }
        QuarantineStatus::Quarantined => {}
    }
    let record = &item.record;
    let now = review.clock.now();
    let tombstone = Tombstone {
        quarantine_key: key.to_owned(),
        sha256: record.sha256.clone(),
        size: record.size,
        reason: record.reason,
        signature: record.signature.clone(),
        purged_by: actor.to_owned(),
        why: why.to_owned(),
        purged_at: now,
    };
    let json = serde_json::to_vec_pretty(&tombstone).expect("a tombstone serializes");
    match review
        .store
        .put(
            &tombstone_key,
            json,
            "application/json",
            WriteMode::CreateOnly,
        )
        .await
    {
        // An interrupted earlier purge wrote it: the first tombstone stands.
        Ok(_) | Err(StoreError::AlreadyExists { .. }) => {}
        Err(e) => return Err(ReviewError::store(&tombstone_key, e)),
    }
    review
        .store
        .delete(key, None)
        .await
        .map_err(|e| ReviewError::store(key, e))?;
    review
        .quarantine
        .set_status(key, QuarantineStatus::Purged, now)
        .await?;
    audit(
        review,
        actor,
        why,
        Audited {
            action: AuditAction::Purge,
            subject: key,
            upload_id: record.intent_id.clone(),
            before: "quarantined",
            after: "purged",
            sha256: Some(&record.sha256),
            detail: Some(format!("tombstone {tombstone_key}")),
        },
    )
    .await?;
    Ok(PurgeReport {
        key: key.to_owned(),
        tombstone_key,
        purged_now: true,
    })
}

/// Purges every quarantined object `filter` selects that was quarantined before
/// `older_than` ago (the local counterpart of a lifecycle rule), each audited.
pub async fn purge_older_than(
    review: &Review<'_>,
    filter: &QuarantineFilter,
    older_than: chrono::Duration,
    actor: &str,
    why: &str,
) -> Result<Vec<PurgeReport>, ReviewError> {
    let why = required(why)?;
    let cutoff = review.clock.now() - older_than;
    let mut filter = filter.clone();
    filter.until = Some(filter.until.map_or(cutoff, |until| until.min(cutoff)));
    filter.status = Some(QuarantineStatus::Quarantined);
    let mut page = PageRequest::first(200);
    let mut reports = Vec::new();
    loop {
        let listed = review.quarantine.list(&filter, &page).await?;
        for item in &listed.items {
            reports.push(purge_item(review, item, actor, why).await?);
        }
        match listed.next {
            Some(next) if !listed.items.is_empty() => page.after = Some(next),
            _ => return Ok(reports),
        }
    }
}

/// One object of a rescan, as it is done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RescanProgress {
    /// Objects done so far in this run.
    pub done: u64,
    pub key: String,
    /// `clean`, `released`, `still-rejected (reason)`, `revoked (signature)`, ...
    pub result: String,
}

/// What a rescan did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RescanSummary {
    /// Objects rescanned.
    pub scanned: u64,
    /// Bytes rescanned.
    pub bytes: u64,
    /// Quarantined uploads rescanned clean and promoted.
    pub released: u64,
    /// Quarantined uploads rejected again (they stay).
    pub still_rejected: u64,
    /// Trusted uploads found clean.
    pub clean: u64,
    /// Trusted uploads found infected and moved to quarantine.
    pub revoked: u64,
    /// Trusted uploads the scanner could not fully read (left in place, listed).
    pub not_fully_scanned: u64,
    /// Trusted uploads whose object was missing.
    pub missing: u64,
    /// Revocations an interrupted run left unfinished, finished now.
    pub finished: u64,
    /// Where an interrupted run had stopped, if this run resumed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed_after: Option<String>,
}

/// The reasons a rescan of quarantined uploads looks at: outages, not judgements.
const TRANSIENT: [ReasonCode; 3] = [
    ReasonCode::ScanUnavailable,
    ReasonCode::InspectUnavailable,
    ReasonCode::MediaUnavailable,
];

/// Rescans the quarantined uploads `filter` selects whose reason was an outage
/// (`scan-unavailable`, `inspect-unavailable`, `media-unavailable`) and promotes those now
/// clean, as a release would. Items done leave the set (released) or stay rejected; a rerun
/// looks at what is still quarantined, so it resumes an interrupted run and is safe to
/// repeat.
pub async fn rescan_quarantined(
    review: &Review<'_>,
    rescanning: &Rescanning<'_>,
    filter: &QuarantineFilter,
    actor: &str,
    why: &str,
    progress: &mut (dyn FnMut(&RescanProgress) + Send),
) -> Result<RescanSummary, ReviewError> {
    let why = required(why)?;
    let mut filter = filter.clone();
    filter.reasons = if filter.reasons.is_empty() {
        TRANSIENT.to_vec()
    } else {
        filter
            .reasons
            .into_iter()
            .filter(|r| r.is_transient())
            .collect()
    };
    if filter.reasons.is_empty() {
        return Ok(RescanSummary::default());
    }
    filter.status = Some(QuarantineStatus::Quarantined);
    let mut summary = RescanSummary::default();
    let mut page = PageRequest::first(100);
    loop {
        let listed = review.quarantine.list(&filter, &page).await?;
        for item in &listed.items {
            let report = release_item(
                review,
                rescanning,
                item,
                actor,
                why,
                false,
                AuditAction::Rescan,
            )
            .await?;
            summary.scanned += 1;
            summary.bytes += item.record.size;
            let result = match &report.outcome {
                ReleaseOutcome::Released { .. } => {
                    summary.released += 1;
                    "released".to_owned()
                }
                ReleaseOutcome::Rejected(rejection) => {
                    summary.still_rejected += 1;
                    format!("still rejected ({})", rejection.reason)
                }
            };
            progress(&RescanProgress {
                done: summary.scanned,
                key: item.key().to_owned(),
                result,
            });
        }
        match listed.next {
            Some(next) if !listed.items.is_empty() => page.after = Some(next),
            _ => return Ok(summary),
        }
    }
}

/// Rescans one upload quarantined for an outage (see [`rescan_quarantined`]) and promotes
/// it if it is clean now, audited as `rescan`. Refuses items quarantined for any other
/// reason ([`ReviewError::NotRescannable`]) and items no longer quarantined.
pub async fn rescan_item(
    review: &Review<'_>,
    rescanning: &Rescanning<'_>,
    key: &str,
    actor: &str,
    why: &str,
) -> Result<ReleaseReport, ReviewError> {
    let why = required(why)?;
    let item = item(review, key).await?;
    if !item.record.reason.is_transient() {
        return Err(ReviewError::NotRescannable {
            key: key.to_owned(),
            reason: item.record.reason,
        });
    }
    if item.status != QuarantineStatus::Quarantined {
        return Err(ReviewError::WrongStatus {
            key: key.to_owned(),
            status: item.status,
            detail: "only a quarantined upload is rescanned",
        });
    }
    release_item(
        review,
        rescanning,
        &item,
        actor,
        why,
        false,
        AuditAction::Rescan,
    )
    .await
}

/// Trusted uploads rescanned between two checkpoints.
const RESCAN_BATCH: usize = 100;

/// The checkpoint name of a trusted rescan: runs over the same uploads share it.
fn rescan_job(filter: &TrustedFilter) -> String {
    format!(
        "rescan-trusted tenant={} purpose={} since={}",
        filter.tenant.as_deref().unwrap_or("*"),
        filter.purpose.as_deref().unwrap_or("*"),
        filter
            .since
            .map_or_else(|| "*".to_owned(), |t| t.to_rfc3339())
    )
}

/// Rescans trusted uploads (READY, settled since `filter.since`, by tenant and purpose) with
/// the current scanner, e.g. after new signatures: one the scanner now detects is moved to
/// quarantine with reason `infected-on-rescan` (its `trusted/` objects removed, its intent
/// QUARANTINED by review) and `upload.revoked` is published.
///
/// Resumable: the position is checkpointed every [`RESCAN_BATCH`] uploads, and a rerun
/// after an interruption continues from there, after first finishing any revocation the
/// interruption cut short. A finished run clears its checkpoint; running it again rescans
/// everything and changes nothing (revoked uploads are no longer trusted).
#[allow(clippy::too_many_arguments)]
pub async fn rescan_trusted(
    review: &Review<'_>,
    scanner: &dyn Scanner,
    trusted: &dyn TrustedUploads,
    checkpoints: &dyn Checkpoints,
    filter: &TrustedFilter,
    actor: &str,
    why: &str,
    progress: &mut (dyn FnMut(&RescanProgress) + Send),
) -> Result<RescanSummary, ReviewError> {
    let why = required(why)?;
    let mut summary = RescanSummary {
        finished: finish_revocations(review, actor, why).await?,
        ..RescanSummary::default()
    };
    let job = rescan_job(filter);
    let mut after: Option<UploadId> = checkpoints.load(&job).await?.and_then(|p| p.parse().ok());
    summary.resumed_after = after.map(|id| id.to_string());
    loop {
        let batch = trusted.trusted(filter, after, RESCAN_BATCH).await?;
        let Some(last) = batch.last() else { break };
        let last = last.id;
        for intent in batch {
            let key = intent.outcome.as_ref().map(|o| o.key.clone());
            let result = match key {
                Some(key) => {
                    rescan_one(review, scanner, &intent, &key, actor, why, &mut summary).await?
                }
                None => "no trusted key".to_owned(),
            };
            progress(&RescanProgress {
                done: summary.scanned + summary.missing,
                key: intent
                    .outcome
                    .as_ref()
                    .map_or_else(|| intent.id.to_string(), |o| o.key.clone()),
                result,
            });
        }
        after = Some(last);
        checkpoints.save(&job, &last.to_string()).await?;
    }
    checkpoints.clear(&job).await?;
    Ok(summary)
}

async fn rescan_one(
    review: &Review<'_>,
    scanner: &dyn Scanner,
    intent: &UploadIntent,
    key: &str,
    actor: &str,
    why: &str,
    summary: &mut RescanSummary,
) -> Result<String, ReviewError> {
    let store = review.store;
    let Some(meta) = store
        .head(key)
        .await
        .map_err(|e| ReviewError::store(key, e))?
    else {
        summary.missing += 1;
        return Ok("missing".to_owned());
    };
    let stream = store
        .open(key, meta.version.as_ref())
        .await
        .map_err(|e| ReviewError::store(key, e))?;
    let report = scanner
        .scan(stream)
        .await
        .map_err(|source| ReviewError::Scan {
            key: key.to_owned(),
            source,
        })?;
    summary.scanned += 1;
    summary.bytes += meta.size;
    Ok(match report.verdict {
        ScanVerdict::Clean => {
            summary.clean += 1;
            "clean".to_owned()
        }
        ScanVerdict::LimitExceeded { detail } => {
            summary.not_fully_scanned += 1;
            format!("not fully scanned ({detail}); left trusted")
        }
        ScanVerdict::Infected { signature } => {
            let placed = revoke(
                review,
                intent,
                key,
                &meta,
                (&signature, &report.engine),
                actor,
                why,
            )
            .await?;
            summary.revoked += 1;
            format!("revoked ({signature}) -> {placed}")
        }
    })
}

/// Moves a trusted upload the scanner now detects to quarantine: the object and a record
/// (create-only, as quarantine places them), the intent READY -> QUARANTINED (a review
/// change; the outcome keeps the promoted media's keys), `upload.revoked`, then the
/// `trusted/` objects are removed. Returns the quarantine key.
async fn revoke(
    review: &Review<'_>,
    intent: &UploadIntent,
    key: &str,
    meta: &ObjectMeta,
    (signature, engine): (&str, &str),
    actor: &str,
    why: &str,
) -> Result<String, ReviewError> {
    let upload = intent.key();
    let stage_err = |e| ReviewError::stage(key, e);
    let (sha256, size) = hash_object(review.store, key, meta.version.as_ref(), Stage::Scan)
        .await
        .map_err(stage_err)?;
    let mut rejection = Rejection::new(
        ReasonCode::InfectedOnRescan,
        format!("signature {signature} found when the trusted object {key} was rescanned"),
    );
    rejection.signature = Some(signature.to_owned());
    rejection.engine = Some(engine.to_owned());
    let request = QuarantineRequest {
        object: ObjectRef {
            bucket: review.bucket.to_owned(),
            key: key.to_owned(),
            size: Some(size),
            etag: None,
            version_id: None,
            sequencer: None,
            event_name: None,
            event_time: None,
        },
        rejection,
        stage: Stage::Scan,
        sha256: Some(sha256.clone()),
        version: meta.version.clone(),
    };
    let base =
        counterpart(&upload.incoming(), QUARANTINE_PREFIX).expect("an upload's incoming key");
    let now = review.clock.now();
    let (destination, _record_key, record) =
        place_elsewhere(review.store, &request, (&upload, intent), &base, meta, now)
            .await
            .map_err(stage_err)?;
    let promoted_media = intent.outcome.as_ref().and_then(|o| o.media.clone());
    let result = review
        .intents
        .transition(
            intent.id,
            Transition {
                from: vec![IntentState::Ready],
                to: IntentState::Quarantined,
                at: now,
                outcome: Some(IntentOutcome {
                    key: destination.clone(),
                    reason: Some(record.reason),
                    detail: Some(record.detail.clone()),
                    sha256: Some(record.sha256.clone()),
                    size: Some(record.size),
                    engine: record.engine.clone(),
                    // The keys of what was promoted with it, removed below (and by a rerun
                    // that finishes an interrupted revocation).
                    media: promoted_media,
                }),
                review: true,
            },
        )
        .await?;
    match result {
        TransitionResult::Applied(_) => {}
        TransitionResult::Refused { current } => {
            return Err(ReviewError::CannotRelease {
                key: key.to_owned(),
                detail: format!(
                    "its upload {} changed to {current} during the rescan",
                    intent.id
                ),
            });
        }
        TransitionResult::NotFound => {
            return Err(ReviewError::CannotRelease {
                key: key.to_owned(),
                detail: format!(
                    "its upload intent {} disappeared during the rescan",
                    intent.id
                ),
            });
        }
    }
    let revoked = review
        .intents
        .get(intent.id)
        .await?
        .unwrap_or_else(|| intent.clone());
    // Audited before the trusted objects are removed: a run killed in between leaves the
    // trusted object, and the rerun finishes the removal without a second entry.
    audit(review, actor, why, Audited {
        action: AuditAction::Revoke,
        subject: &destination,
        upload_id: Some(intent.id.to_string()),
        before: "trusted",
        after: "quarantined",
        sha256: Some(&record.sha256),
        detail: Some(format!(
            "{key} rescanned by {engine}: signature {signature}; moved to quarantine as infected-on-rescan"
        )),
    })
    .await?;
    finish_revocation(review, &upload, &revoked, key, &destination).await?;
    Ok(destination)
}

/// Publishes `upload.revoked` (at least once) and removes the upload's `trusted/` objects:
/// the object, and for images the variants, metadata and kept original the promotion made.
async fn finish_revocation(
    review: &Review<'_>,
    upload: &UploadKey,
    intent: &UploadIntent,
    trusted_key: &str,
    quarantine_key: &str,
) -> Result<(), ReviewError> {
    review
        .events
        .publish(&PipelineEvent {
            kind: PipelineEventKind::Revoked,
            upload_id: upload.upload_id,
            tenant: upload.tenant.clone(),
            purpose: upload.purpose.clone(),
            key: quarantine_key.to_owned(),
            reason: Some(ReasonCode::InfectedOnRescan),
            at: review.clock.now(),
        })
        .await?;
    let mut keys = vec![upload.trusted_derived("original")];
    if let Some(media) = intent.outcome.as_ref().and_then(|o| o.media.as_ref()) {
        if let Some(variants) = media.get("variants").and_then(|v| v.as_array()) {
            keys.extend(
                variants
                    .iter()
                    .filter_map(|v| v.get("key").and_then(|k| k.as_str()).map(str::to_owned)),
            );
        }
        if let Some(metadata) = media.get("metadataKey").and_then(|k| k.as_str()) {
            keys.push(metadata.to_owned());
        }
    }
    // The main object last: while it exists, a rerun finds the revocation unfinished.
    keys.push(trusted_key.to_owned());
    for key in keys
        .iter()
        .filter(|k| k.starts_with(crate::keys::TRUSTED_PREFIX))
    {
        review
            .store
            .delete(key, None)
            .await
            .map_err(|e| ReviewError::store(key, e))?;
    }
    Ok(())
}

/// Finishes revocations an interrupted rescan left: the intent is QUARANTINED by review as
/// `infected-on-rescan`, but the trusted object is still there. Returns how many.
async fn finish_revocations(
    review: &Review<'_>,
    actor: &str,
    why: &str,
) -> Result<u64, ReviewError> {
    let filter = QuarantineFilter {
        reasons: vec![ReasonCode::InfectedOnRescan],
        status: Some(QuarantineStatus::Quarantined),
        ..QuarantineFilter::default()
    };
    let mut page = PageRequest::first(200);
    let mut finished = 0;
    loop {
        let listed = review.quarantine.list(&filter, &page).await?;
        for item in &listed.items {
            let trusted_key = &item.record.original_key;
            if review
                .store
                .head(trusted_key)
                .await
                .map_err(|e| ReviewError::store(trusted_key, e))?
                .is_none()
            {
                continue;
            }
            let Ok((upload, intent)) = owner(review, &item.record).await else {
                continue;
            };
            let ours = intent.state == IntentState::Quarantined
                && intent.outcome.as_ref().is_some_and(|o| o.key == item.key());
            if !ours {
                continue;
            }
            finish_revocation(review, &upload, &intent, trusted_key, item.key()).await?;
            // A run killed after its audit entry (before the removal) has audited it.
            let audited = !review
                .audit
                .list(&AuditFilter {
                    subject: Some(item.key().to_owned()),
                    action: Some(AuditAction::Revoke),
                    limit: 1,
                    ..AuditFilter::default()
                })
                .await?
                .is_empty();
            if audited {
                finished += 1;
                continue;
            }
            audit(
                review,
                actor,
                why,
                Audited {
                    action: AuditAction::Revoke,
                    subject: item.key(),
                    upload_id: Some(upload.upload_id.to_string()),
                    before: "trusted",
                    after: "quarantined",
                    sha256: Some(&item.record.sha256),
                    detail: Some(format!(
                        "finished an interrupted revocation of {trusted_key}"
                    )),
                },
            )
            .await?;
            finished += 1;
        }
        match listed.next {
            Some(next) if !listed.items.is_empty() => page.after = Some(next),
            _ => return Ok(finished),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportReport {
    pub key: String,
    /// Where the encrypted archive was written.
    pub written_to: String,
    pub sha256: String,
    pub audit_seq: u64,
}

/// Exports a quarantined object and its record through `sink` (an encrypted archive: the
/// only way the bytes leave quarantine), audited.
pub async fn export(
    review: &Review<'_>,
    key: &str,
    actor: &str,
    why: &str,
    sink: &dyn SampleSink,
) -> Result<ExportReport, ReviewError> {
    let why = required(why)?;
    let item = item(review, key).await?;
    if item.status != QuarantineStatus::Quarantined {
        return Err(ReviewError::WrongStatus {
            key: key.to_owned(),
            status: item.status,
            detail: "its bytes are no longer in quarantine",
        });
    }
    let stream = review
        .store
        .open(key, None)
        .await
        .map_err(|e| ReviewError::store(key, e))?;
    let written_to = sink
        .write_sample(&item.record, stream)
        .await
        .map_err(|source| ReviewError::Export {
            key: key.to_owned(),
            source,
        })?;
    let entry = audit(
        review,
        actor,
        why,
        Audited {
            action: AuditAction::Export,
            subject: key,
            upload_id: item.record.intent_id.clone(),
            before: "quarantined",
            after: "quarantined",
            sha256: Some(&item.record.sha256),
            detail: Some(format!("exported to {written_to}")),
        },
    )
    .await?;
    Ok(ExportReport {
        key: key.to_owned(),
        written_to,
        sha256: item.record.sha256,
        audit_seq: entry.seq,
    })
}

/// Bytes of the object shown as a hex dump.
pub const HEAD_BYTES: u64 = 512;

/// Everything known about one quarantined upload, for a reviewer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemDetail {
    pub item: QuarantineItem,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<UploadIntent>,
    /// The intent's state changes, oldest first.
    pub history: Vec<StateChange>,
    /// Audit entries about it, newest first.
    pub audit: Vec<AuditEntry>,
    /// Whether the quarantined bytes are still there.
    pub object_present: bool,
    /// The first bytes (at most [`HEAD_BYTES`]), to be shown as a hex dump, never as the
    /// type they claim.
    #[serde(with = "hex_bytes")]
    pub head: Vec<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tombstone: Option<Tombstone>,
}

mod hex_bytes {
    pub fn serialize<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text: String = serde::Deserialize::deserialize(d)?;
        hex::decode(text).map_err(serde::de::Error::custom)
    }
}

/// One item with its record, intent, history, audit entries, first bytes and tombstone.
pub async fn describe(review: &Review<'_>, key: &str) -> Result<ItemDetail, ReviewError> {
    let item = item(review, key).await?;
    let intent = match item
        .record
        .intent_id
        .as_deref()
        .and_then(|id| id.parse::<UploadId>().ok())
    {
        Some(id) => review.intents.get(id).await?,
        None => None,
    };
    let history = match &intent {
        Some(intent) => review.quarantine.history(intent.id).await?,
        None => Vec::new(),
    };
    let audit = review
        .audit
        .list(&AuditFilter {
            subject: Some(key.to_owned()),
            limit: 100,
            ..AuditFilter::default()
        })
        .await?;
    let meta = review
        .store
        .head(key)
        .await
        .map_err(|e| ReviewError::store(key, e))?;
    let head = match &meta {
        Some(meta) => match review
            .store
            .read_range(key, meta.version.as_ref(), 0, HEAD_BYTES)
            .await
        {
            Ok(bytes) => bytes,
            // Purged or released meanwhile.
            Err(StoreError::NotFound { .. } | StoreError::VersionMismatch { .. }) => Vec::new(),
            Err(e) => return Err(ReviewError::store(key, e)),
        },
        None => Vec::new(),
    };
    let tombstone_key = tombstone_key(key);
    let tombstone = match review
        .store
        .read_range(&tombstone_key, None, 0, 1 << 16)
        .await
    {
        Ok(bytes) => serde_json::from_slice(&bytes).ok(),
        Err(StoreError::NotFound { .. }) => None,
        Err(e) => return Err(ReviewError::store(&tombstone_key, e)),
    };
    Ok(ItemDetail {
        item,
        intent,
        history,
        audit,
        object_present: meta.is_some(),
        head,
        tombstone,
    })
}
