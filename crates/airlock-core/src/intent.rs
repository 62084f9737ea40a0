//! Upload intents: what the signing endpoint agreed to accept, and where the upload stands.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::keys::{Purpose, TenantId, UploadId, UploadKey};
use crate::verdict::ReasonCode;

/// Where an upload stands.
///
/// ```text
/// PENDING -> UPLOADED -> PROCESSING -> READY | QUARANTINED
///    |           |            |
///    +-> EXPIRED +------------+-> FAILED -> PROCESSING (retried)
/// ```
/// A rejected upload may go to QUARANTINED from any non-final state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum IntentState {
    Pending,
    Uploaded,
    Processing,
    Ready,
    Quarantined,
    Expired,
    Failed,
}

impl IntentState {
    pub const ALL: [IntentState; 7] = [
        Self::Pending,
        Self::Uploaded,
        Self::Processing,
        Self::Ready,
        Self::Quarantined,
        Self::Expired,
        Self::Failed,
    ];

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Uploaded => "UPLOADED",
            Self::Processing => "PROCESSING",
            Self::Ready => "READY",
            Self::Quarantined => "QUARANTINED",
            Self::Expired => "EXPIRED",
            Self::Failed => "FAILED",
        }
    }

    /// Final states never change again.
    #[must_use]
    pub fn is_final(self) -> bool {
        matches!(self, Self::Ready | Self::Quarantined | Self::Expired)
    }

    /// Whether `self -> next` is a legal change.
    #[must_use]
    pub fn can_become(self, next: IntentState) -> bool {
        use IntentState::{Expired, Failed, Pending, Processing, Quarantined, Ready, Uploaded};
        matches!(
            (self, next),
            (
                Pending,
                Uploaded | Processing | Expired | Quarantined | Failed
            ) | (Uploaded, Processing | Quarantined | Failed)
                | (Processing, Ready | Quarantined | Failed)
                | (Failed, Processing | Quarantined)
        )
    }

    /// Whether a reviewer may change `self -> next`: a release (QUARANTINED -> READY) or the
    /// revocation of a trusted upload a rescan found infected (READY -> QUARANTINED). The
    /// pipeline never makes these changes: for it, both states are final.
    #[must_use]
    pub fn can_be_reviewed_to(self, next: IntentState) -> bool {
        matches!(
            (self, next),
            (Self::Quarantined, Self::Ready) | (Self::Ready, Self::Quarantined)
        )
    }

    /// The states from which `next` may be reached.
    #[must_use]
    pub fn sources_of(next: IntentState) -> Vec<IntentState> {
        Self::ALL
            .into_iter()
            .filter(|s| s.can_become(next))
            .collect()
    }
}

impl fmt::Display for IntentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown state name.
#[derive(Debug, thiserror::Error)]
#[error("unknown intent state {0:?}")]
pub struct UnknownState(pub String);

impl FromStr for IntentState {
    type Err = UnknownState;
    fn from_str(s: &str) -> Result<Self, UnknownState> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_owned()))
    }
}

/// Where a settled upload went, recorded with the final state change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IntentOutcome {
    /// The object's key under `trusted/` or `quarantine/`.
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<ReasonCode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// The scanner engine and definitions that judged the object, when it was scanned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    /// For images: the promoted variants and the image's metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<serde_json::Value>,
}

/// What the signing endpoint agreed to accept for one upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadIntent {
    pub id: UploadId,
    pub tenant: TenantId,
    pub purpose: Purpose,
    pub declared_type: String,
    pub declared_size: u64,
    /// Hex SHA-256 the client declared, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The client's file name: metadata only, never part of a key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// Who asked for the upload URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uploader: Option<String>,
    pub state: IntentState,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// After this, an object arriving for the intent is rejected.
    pub expires_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<IntentOutcome>,
    /// The store's id of the multipart upload made for this intent, when it is uploaded in
    /// parts (S3's `UploadId`): completing or aborting names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multipart_upload_id: Option<String>,
}

impl UploadIntent {
    #[must_use]
    pub fn key(&self) -> UploadKey {
        UploadKey::new(self.tenant.clone(), self.purpose.clone(), self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_states_go_nowhere() {
        for state in IntentState::ALL.into_iter().filter(|s| s.is_final()) {
            for next in IntentState::ALL {
                assert!(!state.can_become(next), "{state} -> {next}");
            }
        }
    }

    #[test]
    fn the_happy_path_and_rejects_are_legal() {
        use IntentState::*;
        for (a, b) in [
            (Pending, Uploaded),
            (Uploaded, Processing),
            (Processing, Ready),
            (Processing, Quarantined),
            (Pending, Quarantined),
            (Failed, Processing),
        ] {
            assert!(a.can_become(b), "{a} -> {b}");
        }
        assert!(!Pending.can_become(Ready));
        assert!(!Processing.can_become(Processing));
        assert_eq!(IntentState::sources_of(Ready), vec![Processing]);
    }

    #[test]
    fn only_reviews_change_final_states_and_only_between_ready_and_quarantined() {
        use IntentState::*;
        assert!(Quarantined.can_be_reviewed_to(Ready));
        assert!(Ready.can_be_reviewed_to(Quarantined));
        for a in IntentState::ALL {
            for b in IntentState::ALL {
                if a.can_be_reviewed_to(b) {
                    assert!(!a.can_become(b), "{a} -> {b} is a pipeline change too");
                }
            }
        }
        assert!(!Expired.can_be_reviewed_to(Ready));
        assert!(!Processing.can_be_reviewed_to(Ready));
    }

    #[test]
    fn names_round_trip() {
        for state in IntentState::ALL {
            assert_eq!(state.as_str().parse::<IntentState>().unwrap(), state);
            assert_eq!(serde_json::to_value(state).unwrap(), state.as_str());
        }
        assert!("ready".parse::<IntentState>().is_err());
    }
}
