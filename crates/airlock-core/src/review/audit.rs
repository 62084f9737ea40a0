//! The audit trail: every reviewer action, append-only, each entry carrying the hash of the
//! one before, so an edited, inserted or deleted entry breaks the chain where it happened.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ports::Retry;

/// The `prevHash` of the first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What a reviewer did. Names are stable kebab-case, like reason codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditAction {
    /// Rescanned and promoted a quarantined upload.
    Release,
    /// Tried to release, and the rescan (or the media stage) rejected the bytes again.
    ReleaseRefused,
    /// Deleted a quarantined object, keeping its record and a tombstone.
    Purge,
    /// Rescanned a quarantined upload whose reason was an outage.
    Rescan,
    /// Moved a trusted upload that a rescan found infected to quarantine.
    Revoke,
    /// Exported a sample as an encrypted archive.
    Export,
}

impl AuditAction {
    pub const ALL: [AuditAction; 6] = [
        Self::Release,
        Self::ReleaseRefused,
        Self::Purge,
        Self::Rescan,
        Self::Revoke,
        Self::Export,
    ];

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Release => "release",
            Self::ReleaseRefused => "release-refused",
            Self::Purge => "purge",
            Self::Rescan => "rescan",
            Self::Revoke => "revoke",
            Self::Export => "export",
        }
    }
}

impl std::fmt::Display for AuditAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for AuditAction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| format!("unknown audit action {s:?}"))
    }
}

/// What happened: who did what to which object, when, why, and what changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    pub at: DateTime<Utc>,
    /// The reviewer (from `--reviewer`, `AIRLOCK_REVIEWER`, or the console's sign-in).
    pub actor: String,
    pub action: AuditAction,
    /// The object acted on: a quarantine key (or, for a revocation, the trusted key).
    pub subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_id: Option<String>,
    /// The reviewer's written reason.
    pub why: String,
    /// The state before and after, e.g. `quarantined` -> `released`.
    pub before: String,
    pub after: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// What else is worth keeping (where it went, what the rescan found).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A stored entry: its place in the chain, the hash of the entry before, and its own hash
/// over both and the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub seq: u64,
    pub prev_hash: String,
    pub hash: String,
    #[serde(flatten)]
    pub record: AuditRecord,
}

/// What the hash covers, in a fixed field order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Chained<'a> {
    seq: u64,
    prev_hash: &'a str,
    record: &'a AuditRecord,
}

impl AuditEntry {
    /// The entry that follows `prev_hash` at `seq`, with its hash.
    #[must_use]
    pub fn chain(seq: u64, prev_hash: &str, record: AuditRecord) -> Self {
        let hash = Self::hash_of(seq, prev_hash, &record);
        Self {
            seq,
            prev_hash: prev_hash.to_owned(),
            hash,
            record,
        }
    }

    /// SHA-256 (hex) of the entry's canonical JSON: its sequence number, the previous hash
    /// and the record, fields in declaration order.
    #[must_use]
    pub fn hash_of(seq: u64, prev_hash: &str, record: &AuditRecord) -> String {
        let json = serde_json::to_vec(&Chained {
            seq,
            prev_hash,
            record,
        })
        .expect("an audit record serializes");
        hex::encode(Sha256::digest(json))
    }
}

/// What checking the chain found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum AuditCheck {
    /// Every entry is in place and unchanged.
    Intact {
        entries: u64,
        /// The last entry's hash (keep it elsewhere to detect a cut tail later).
        head: String,
    },
    /// The first entry that is not what the chain says, and why.
    Broken { seq: u64, problem: String },
}

/// Checks entries read in order: numbered 1, 2, 3 ... without gaps, each linked to the one
/// before, each hash matching its content. Names the first entry that fails.
pub fn verify_chain<E>(
    entries: impl IntoIterator<Item = Result<AuditEntry, E>>,
) -> Result<AuditCheck, E> {
    let mut expected_seq = 1u64;
    let mut prev = GENESIS_HASH.to_owned();
    for entry in entries {
        let entry = entry?;
        if entry.seq != expected_seq {
            return Ok(AuditCheck::Broken {
                seq: entry.seq,
                problem: if entry.seq > expected_seq {
                    format!("entries {expected_seq} to {} are missing", entry.seq - 1)
                } else {
                    format!("out of order: expected entry {expected_seq}")
                },
            });
        }
        if entry.prev_hash != prev {
            return Ok(AuditCheck::Broken {
                seq: entry.seq,
                problem: format!(
                    "its previous hash {} is not the hash of entry {} ({prev})",
                    entry.prev_hash,
                    entry.seq - 1
                ),
            });
        }
        let hash = AuditEntry::hash_of(entry.seq, &entry.prev_hash, &entry.record);
        if hash != entry.hash {
            return Ok(AuditCheck::Broken {
                seq: entry.seq,
                problem: format!(
                    "its content does not match its hash (recorded {}, content hashes to {hash})",
                    entry.hash
                ),
            });
        }
        prev = entry.hash;
        expected_seq += 1;
    }
    Ok(AuditCheck::Intact {
        entries: expected_seq - 1,
        head: prev,
    })
}

/// Which entries to list: newest first, at most `limit`, before `before_seq` if given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub subject: Option<String>,
    pub actor: Option<String>,
    pub action: Option<AuditAction>,
    pub before_seq: Option<u64>,
    pub limit: usize,
}

/// A failure of the audit trail's storage.
#[derive(Debug, thiserror::Error)]
#[error("audit trail failed: {message}")]
pub struct AuditError {
    pub message: String,
    pub retry: Retry,
}

/// The append-only audit trail.
#[async_trait]
pub trait AuditTrail: Send + Sync {
    /// Appends `record` after the last entry, atomically (concurrent appends are chained
    /// one after the other).
    async fn append(&self, record: AuditRecord) -> Result<AuditEntry, AuditError>;
    /// Entries `filter` selects, newest first.
    async fn list(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, AuditError>;
    /// Checks the whole chain.
    async fn verify(&self) -> Result<AuditCheck, AuditError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: u32) -> AuditRecord {
        AuditRecord {
            at: DateTime::from_timestamp(1_700_000_000 + i64::from(n), 0).unwrap(),
            actor: "alice".into(),
            action: AuditAction::Purge,
            subject: format!("quarantine/acme/avatar/{n}"),
            upload_id: None,
            why: "retention".into(),
            before: "quarantined".into(),
            after: "purged".into(),
            sha256: Some("ab".repeat(32)),
            detail: None,
        }
    }

    fn chain(n: u32) -> Vec<AuditEntry> {
        let mut prev = GENESIS_HASH.to_owned();
        (1..=n)
            .map(|i| {
                let entry = AuditEntry::chain(u64::from(i), &prev, record(i));
                prev.clone_from(&entry.hash);
                entry
            })
            .collect()
    }

    fn check(entries: Vec<AuditEntry>) -> AuditCheck {
        verify_chain(entries.into_iter().map(Ok::<_, ()>)).unwrap()
    }

    #[test]
    fn an_intact_chain_verifies_and_any_change_names_the_entry() {
        let entries = chain(5);
        assert_eq!(
            check(entries.clone()),
            AuditCheck::Intact {
                entries: 5,
                head: entries[4].hash.clone()
            }
        );
        // An edited record.
        let mut edited = entries.clone();
        edited[2].record.actor = "mallory".into();
        assert!(matches!(check(edited), AuditCheck::Broken { seq: 3, .. }));
        // An edited record whose hash was recomputed: the next entry's link breaks.
        let mut rehashed = entries.clone();
        rehashed[2].record.why = "nothing to see".into();
        rehashed[2].hash = AuditEntry::hash_of(3, &rehashed[2].prev_hash, &rehashed[2].record);
        assert!(matches!(check(rehashed), AuditCheck::Broken { seq: 4, .. }));
        // A deleted entry.
        let mut deleted = entries.clone();
        deleted.remove(1);
        let AuditCheck::Broken { seq, problem } = check(deleted) else {
            panic!("a gap verified");
        };
        assert_eq!(seq, 3);
        assert!(problem.contains("entries 2 to 2 are missing"), "{problem}");
        // Renumbered after a deletion: the link breaks.
        let mut renumbered = entries;
        renumbered.remove(1);
        for (i, entry) in renumbered.iter_mut().enumerate() {
            entry.seq = i as u64 + 1;
        }
        assert!(matches!(
            check(renumbered),
            AuditCheck::Broken { seq: 2, .. }
        ));
        assert_eq!(
            check(Vec::new()),
            AuditCheck::Intact {
                entries: 0,
                head: GENESIS_HASH.into()
            }
        );
    }
}
