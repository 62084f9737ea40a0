//! Inspect: is this object what its intent promised? Size from a HEAD, type from the first
//! bytes of a range read (never the whole object), both checked against the intent and the
//! purpose's policy.

use airlock_archive::ArchiveFormat;
use serde::{Deserialize, Serialize};

use super::{Stage, StageError};
use crate::intent::{IntentState, UploadIntent};
use crate::keys::{Purpose, TenantId, UploadId, UploadKey};
use crate::object::ObjectMeta;
use crate::object::ObjectRef;
use crate::policy::{Policies, UploadPolicy, normalize_type};
use crate::ports::{
    Clock, IntentStore, ObjectReader, ObjectVersion, Retry, StoreError, Transition,
};
use crate::verdict::{ReasonCode, Rejection};

/// How many leading bytes inspect reads to recognise a type.
pub const SNIFF_LEN: u64 = 8 * 1024;

/// What inspect found in an object that passed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InspectReport {
    pub upload_id: UploadId,
    pub tenant: TenantId,
    pub purpose: Purpose,
    pub size: u64,
    pub declared_type: String,
    pub detected_type: String,
    /// Whether the media stage applies: an image, for a purpose whose policy asks for it.
    pub media: bool,
    /// The SHA-256 the client declared, for the scan stage to check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_sha256: Option<String>,
    /// Bytes read from the object's content (not counting the HEAD).
    pub bytes_read: u64,
    /// The version judged: every later stage reads exactly this object, or stops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<ObjectVersion>,
    /// The archive or container format its first bytes show (zip, also for OOXML/ODF;
    /// gzip, tar, 7z, ...): after a clean scan, airlock judges what it holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<ArchiveFormat>,
}

/// The result of inspect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum InspectOutcome {
    Pass(InspectReport),
    Reject(Rejection),
    /// Nothing to do: the object is no longer in `incoming/` (a duplicate or replayed event
    /// for an upload that was already settled).
    Skip {
        detail: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        state: Option<IntentState>,
    },
    /// The object is this upload's own bytes, left in `incoming/` by a run interrupted
    /// after it settled the intent (READY or QUARANTINED, by an object with this SHA-256)
    /// and before it removed the object: the settling stage runs again to finish the job
    /// (remove this copy, announce the upload at least once), never judging it anew.
    Settled(SettledLeftover),
}

/// A leftover of an upload already settled by these same bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SettledLeftover {
    /// READY or QUARANTINED.
    pub state: IntentState,
    /// Where the settled object is.
    pub settled_key: String,
    pub sha256: String,
    pub size: u64,
    /// The quarantine reason, when quarantined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<ReasonCode>,
    /// The leftover's version: only it is removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<ObjectVersion>,
    pub detail: String,
}

/// What the first bytes of an object say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    /// A recognised binary format, by magic bytes.
    Binary(&'static str),
    /// UTF-8 text without NUL bytes.
    Text,
    /// Neither.
    Unknown,
}

/// Recognises a type from an object's first bytes. `complete` says whether `head` is the
/// whole object (if not, a UTF-8 sequence cut at the end is not an error).
#[must_use]
pub fn sniff_type(head: &[u8], complete: bool) -> Sniffed {
    if let Some(kind) = infer::get(head) {
        return Sniffed::Binary(kind.mime_type());
    }
    if head.contains(&0) {
        return Sniffed::Unknown;
    }
    match std::str::from_utf8(head) {
        Ok(_) => Sniffed::Text,
        // `error_len() == None`: the input ends inside a character, fine if we cut it.
        Err(e) if !complete && e.error_len().is_none() => Sniffed::Text,
        Err(_) => Sniffed::Unknown,
    }
}

/// Types checked as text rather than by magic bytes.
fn is_text_type(content_type: &str) -> bool {
    content_type.starts_with("text/")
        || matches!(
            content_type,
            "application/json" | "application/xml" | "application/x-ndjson"
        )
}

/// Checks an object against its intent and policy.
///
/// Passing moves the intent to PROCESSING; a reject leaves it for quarantine to settle.
pub async fn inspect(
    store: &dyn ObjectReader,
    intents: &dyn IntentStore,
    policies: &Policies,
    clock: &dyn Clock,
    object: &ObjectRef,
) -> Result<InspectOutcome, StageError> {
    let store_err = |e: &StoreError| StageError::store(Stage::Inspect, e);
    let head = store.head(&object.key).await.map_err(|e| store_err(&e))?;

    let upload = match UploadKey::parse_incoming(&object.key) {
        Ok(upload) => upload,
        Err(err) => {
            return Ok(match head {
                None => skip(format!("object {} no longer exists", object.key), None),
                Some(_) => InspectOutcome::Reject(Rejection::new(
                    ReasonCode::NoIntent,
                    format!("not a key the server made: {err}"),
                )),
            });
        }
    };
    let intent = intents
        .get(upload.upload_id)
        .await
        .map_err(|e| StageError::intents(Stage::Inspect, &e))?;

    let Some(meta) = head else {
        let state = intent.as_ref().map(|i| i.state);
        let detail = match state {
            Some(state) => format!("object {} no longer exists; upload is {state}", object.key),
            None => format!("object {} no longer exists; no intent", object.key),
        };
        // With no intent the object was quarantined earlier (as no-intent), or never existed.
        if state.is_some_and(|s| !s.is_final()) {
            tracing::warn!(key = %object.key, ?state, "object gone before it was settled");
        }
        return Ok(skip(detail, state));
    };

    if let Some(leftover) = settled_leftover(store, &upload, intent.as_ref(), &meta).await? {
        return Ok(InspectOutcome::Settled(leftover));
    }

    let (intent, policy) = match check_intent(&upload, intent, &meta, policies, clock) {
        Ok(checked) => checked,
        Err(rejection) => return Ok(InspectOutcome::Reject(rejection)),
    };
    let declared = normalize_type(&intent.declared_type);

    let want = meta.size.min(SNIFF_LEN);
    let bytes = store
        .read_range(&object.key, meta.version.as_ref(), 0, want)
        .await
        .map_err(|e| match e {
            // It was there (or was another version) a moment ago: let a retry judge what is
            // there now, or see that it was settled meanwhile.
            StoreError::NotFound { .. } | StoreError::VersionMismatch { .. } => {
                StageError::new(Stage::Inspect, Retry::Transient, e.to_string())
            }
            other => store_err(&other),
        })?;
    let complete = bytes.len() as u64 >= meta.size;
    let sniffed = sniff_type(&bytes, complete);
    let detected = match check_type(&declared, sniffed) {
        Ok(detected) => detected,
        Err(detail) => return Ok(reject(ReasonCode::TypeMismatch, detail)),
    };

    mark_processing(intents, &intent, clock).await?;
    let media = policy.media.is_some() && detected.starts_with("image/");
    Ok(InspectOutcome::Pass(InspectReport {
        upload_id: intent.id,
        tenant: intent.tenant,
        purpose: intent.purpose,
        size: meta.size,
        declared_type: declared,
        detected_type: detected,
        media,
        expected_sha256: intent.sha256,
        bytes_read: bytes.len() as u64,
        version: meta.version,
        archive: airlock_archive::detect(&bytes),
    }))
}

/// Recognises the copy a settling stage leaves in `incoming/` when it was interrupted (or
/// its final delete kept failing) after it settled the intent: the intent is READY or
/// QUARANTINED, what it settled is still in place, and this object has the settled size
/// and SHA-256. That is the settled upload itself, not a second object sent to a used key,
/// so it is finished rather than quarantined as `intent-already-used` (which would show the
/// security team a false alarm, and leave an image both trusted and quarantined).
///
/// Costs a HEAD and, only when size and state match, a read of the whole object.
async fn settled_leftover(
    store: &dyn ObjectReader,
    upload: &UploadKey,
    intent: Option<&UploadIntent>,
    meta: &ObjectMeta,
) -> Result<Option<SettledLeftover>, StageError> {
    let Some(intent) = intent.filter(|i| {
        matches!(i.state, IntentState::Ready | IntentState::Quarantined)
            && i.tenant == upload.tenant
            && i.purpose == upload.purpose
    }) else {
        return Ok(None);
    };
    let Some(outcome) = &intent.outcome else {
        return Ok(None);
    };
    let (Some(settled_sha256), Some(size)) = (&outcome.sha256, outcome.size) else {
        return Ok(None);
    };
    if size != meta.size {
        return Ok(None);
    }
    // For images trusted/ holds the sanitized original, of another size: its presence is
    // what counts.
    let settled = store
        .head(&outcome.key)
        .await
        .map_err(|e| StageError::store(Stage::Inspect, &e))?;
    if settled.is_none() {
        return Ok(None);
    }
    let key = upload.incoming();
    let (sha256, read) =
        super::hash_object(store, &key, meta.version.as_ref(), Stage::Inspect).await?;
    if read != size || !sha256.eq_ignore_ascii_case(settled_sha256) {
        return Ok(None);
    }
    Ok(Some(SettledLeftover {
        state: intent.state,
        settled_key: outcome.key.clone(),
        detail: format!(
            "object {key} is a leftover copy of the upload settled as {} ({} bytes, sha256 {sha256}); finishing the settlement",
            outcome.key, size
        ),
        sha256,
        size,
        reason: outcome.reason,
        version: meta.version.clone(),
    }))
}

/// Checks the intent, the object's size and the declared type against the purpose's policy:
/// a pure function over what the HEAD and the intent store said.
fn check_intent<'p>(
    upload: &UploadKey,
    intent: Option<UploadIntent>,
    meta: &ObjectMeta,
    policies: &'p Policies,
    clock: &dyn Clock,
) -> Result<(UploadIntent, &'p UploadPolicy), Rejection> {
    let Some(intent) = intent else {
        return Err(Rejection::new(
            ReasonCode::NoIntent,
            format!("no upload intent with id {}", upload.upload_id),
        ));
    };
    if intent.tenant != upload.tenant || intent.purpose != upload.purpose {
        return Err(Rejection::new(
            ReasonCode::NoIntent,
            format!(
                "intent {} is for {}/{}, not {}/{}",
                intent.id, intent.tenant, intent.purpose, upload.tenant, upload.purpose
            ),
        ));
    }
    match intent.state {
        IntentState::Expired => {
            return Err(Rejection::new(
                ReasonCode::IntentExpired,
                format!("intent expired at {}", intent.expires_at.to_rfc3339()),
            ));
        }
        IntentState::Ready | IntentState::Quarantined => {
            return Err(Rejection::new(
                ReasonCode::IntentAlreadyUsed,
                format!("intent was already settled as {}", intent.state),
            ));
        }
        _ => {}
    }
    let arrived = meta.last_modified.unwrap_or_else(|| clock.now());
    if arrived > intent.expires_at {
        return Err(Rejection::new(
            ReasonCode::IntentExpired,
            format!(
                "object arrived at {}, intent expired at {}",
                arrived.to_rfc3339(),
                intent.expires_at.to_rfc3339()
            ),
        ));
    }
    let Some(policy) = policies.get(&intent.purpose) else {
        return Err(Rejection::new(
            ReasonCode::PurposeUnknown,
            format!("no upload policy for purpose {:?}", intent.purpose.as_str()),
        ));
    };

    if meta.size == 0 {
        return Err(Rejection::new(ReasonCode::EmptyFile, "object has no bytes"));
    }
    if meta.size > policy.max_size {
        return Err(Rejection::new(
            ReasonCode::TooLarge,
            format!(
                "object has {} bytes, purpose {} allows at most {}",
                meta.size, intent.purpose, policy.max_size
            ),
        ));
    }
    if meta.size != intent.declared_size {
        return Err(Rejection::new(
            ReasonCode::SizeMismatch,
            format!(
                "declared {} bytes, object has {}",
                intent.declared_size, meta.size
            ),
        ));
    }
    let declared = normalize_type(&intent.declared_type);
    if !policy.allows(&declared) {
        return Err(Rejection::new(
            ReasonCode::TypeNotAllowed,
            format!(
                "{declared} is not allowed for purpose {} (allowed: {})",
                intent.purpose,
                policy.allowed_types.join(", ")
            ),
        ));
    }

    Ok((intent, policy))
}

/// Checks sniffed content against a declared type; returns the detected type.
pub(crate) fn check_type(declared: &str, sniffed: Sniffed) -> Result<String, String> {
    match sniffed {
        Sniffed::Binary(mime) if mime == declared => Ok(mime.to_owned()),
        Sniffed::Binary(mime) => Err(format!("declared {declared}, content is {mime}")),
        Sniffed::Text if is_text_type(declared) => Ok(declared.to_owned()),
        Sniffed::Text => Err(format!("declared {declared}, content is text")),
        Sniffed::Unknown if is_text_type(declared) => Err(format!(
            "declared {declared}, content is not UTF-8 text without NUL bytes"
        )),
        Sniffed::Unknown => Err(format!(
            "declared {declared}, content has no recognisable signature"
        )),
    }
}

async fn mark_processing(
    intents: &dyn IntentStore,
    intent: &UploadIntent,
    clock: &dyn Clock,
) -> Result<(), StageError> {
    if intent.state == IntentState::Processing {
        // A retried or duplicate run: already marked.
        return Ok(());
    }
    let result = intents
        .transition(
            intent.id,
            Transition {
                from: IntentState::sources_of(IntentState::Processing),
                to: IntentState::Processing,
                at: clock.now(),
                outcome: None,
                review: false,
            },
        )
        .await
        .map_err(|e| StageError::intents(Stage::Inspect, &e))?;
    match result {
        crate::ports::TransitionResult::Applied(_)
        | crate::ports::TransitionResult::Refused {
            current: IntentState::Processing,
        } => Ok(()),
        crate::ports::TransitionResult::Refused { current } => Err(StageError::new(
            Stage::Inspect,
            // Another run settled it meanwhile; a retry will see that and skip.
            Retry::Transient,
            format!(
                "intent {} changed to {current} during inspection",
                intent.id
            ),
        )),
        crate::ports::TransitionResult::NotFound => Err(StageError::new(
            Stage::Inspect,
            Retry::Transient,
            format!("intent {} disappeared during inspection", intent.id),
        )),
    }
}

fn reject(reason: ReasonCode, detail: impl Into<String>) -> InspectOutcome {
    InspectOutcome::Reject(Rejection::new(reason, detail))
}

fn skip(detail: String, state: Option<IntentState>) -> InspectOutcome {
    InspectOutcome::Skip { detail, state }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_binary_text_and_unknown() {
        assert_eq!(
            sniff_type(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", true),
            Sniffed::Binary("image/png")
        );
        assert_eq!(sniff_type("héllo\n".as_bytes(), true), Sniffed::Text);
        assert_eq!(sniff_type(b"a\0b", true), Sniffed::Unknown);
        // "é" cut in half: fine when the head was cut, not when it is the whole object.
        let cut = &"é".as_bytes()[..1];
        assert_eq!(sniff_type(cut, false), Sniffed::Text);
        assert_eq!(sniff_type(cut, true), Sniffed::Unknown);
        assert_eq!(sniff_type(b"\xff\xfe\xfd", false), Sniffed::Unknown);
    }

    #[test]
    fn types_must_match_what_was_declared() {
        assert_eq!(
            check_type("image/png", Sniffed::Binary("image/png")).unwrap(),
            "image/png"
        );
        assert!(
            check_type("image/png", Sniffed::Binary("image/jpeg"))
                .unwrap_err()
                .contains("content is image/jpeg")
        );
        assert!(check_type("image/png", Sniffed::Text).is_err());
        assert_eq!(check_type("text/csv", Sniffed::Text).unwrap(), "text/csv");
        assert!(check_type("text/plain", Sniffed::Unknown).is_err());
        assert!(check_type("text/plain", Sniffed::Binary("application/pdf")).is_err());
        assert!(check_type("application/zip", Sniffed::Unknown).is_err());
    }
}
