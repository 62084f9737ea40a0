//! The audit trail in SQLite: one row per entry, the entry's JSON (sequence number, previous
//! hash, hash and record) as written. Appends run on the intent store's database thread, so
//! each one reads the last entry and writes the next in one transaction: the chain never
//! forks.

use airlock_core::ports::{IntentStoreError, Retry};
use airlock_core::review::{
    AuditAction, AuditCheck, AuditEntry, AuditError, AuditFilter, AuditRecord, AuditTrail,
    GENESIS_HASH, verify_chain,
};
use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use crate::SqliteIntentStore;
use crate::group_commit::GroupCommit;
use crate::sqlite_intents::sqlite_err;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS audit_trail (
    seq  INTEGER PRIMARY KEY,
    body TEXT NOT NULL
);
";

/// The audit trail, kept in the intent store's database.
#[derive(Debug, Clone)]
pub struct SqliteAuditTrail {
    db: GroupCommit,
}

fn audit_err(err: IntentStoreError) -> AuditError {
    AuditError {
        message: err.message,
        retry: err.retry,
    }
}

fn unreadable(seq: i64, err: &serde_json::Error) -> IntentStoreError {
    IntentStoreError {
        message: format!("audit entry {seq} is unreadable: {err}"),
        retry: Retry::Permanent,
    }
}

impl SqliteAuditTrail {
    /// The trail in `intents`' database (its table is made if missing).
    pub async fn open(intents: &SqliteIntentStore) -> Result<Self, AuditError> {
        let db = intents.db();
        db.write(|conn| conn.execute_batch(SCHEMA).map_err(|e| sqlite_err(&e)))
            .await
            .map_err(audit_err)?;
        Ok(Self { db })
    }
}

#[async_trait]
impl AuditTrail for SqliteAuditTrail {
    async fn append(&self, record: AuditRecord) -> Result<AuditEntry, AuditError> {
        self.db
            .write(move |conn| {
                let last: Option<(i64, String)> = conn
                    .query_row(
                        "SELECT seq, body FROM audit_trail ORDER BY seq DESC LIMIT 1",
                        [],
                        |row| Ok((row.get(0)?, row.get(1)?)),
                    )
                    .optional()
                    .map_err(|e| sqlite_err(&e))?;
                let (seq, prev) = match last {
                    None => (1, GENESIS_HASH.to_owned()),
                    Some((seq, body)) => {
                        let last: AuditEntry =
                            serde_json::from_str(&body).map_err(|e| unreadable(seq, &e))?;
                        (last.seq + 1, last.hash)
                    }
                };
                let entry = AuditEntry::chain(seq, &prev, record);
                let body = serde_json::to_string(&entry).map_err(|e| unreadable(0, &e))?;
                conn.execute(
                    "INSERT INTO audit_trail (seq, body) VALUES (?1, ?2)",
                    params![i64::try_from(seq).unwrap_or(i64::MAX), body],
                )
                .map_err(|e| sqlite_err(&e))?;
                Ok(entry)
            })
            .await
            .map_err(audit_err)
    }

    async fn list(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, AuditError> {
        let filter = filter.clone();
        self.db
            .read(move |conn| {
                let mut statement = conn
                    .prepare_cached(
                        "SELECT seq, body FROM audit_trail
                         WHERE (?1 IS NULL OR json_extract(body, '$.subject') = ?1)
                           AND (?2 IS NULL OR json_extract(body, '$.actor') = ?2)
                           AND (?3 IS NULL OR json_extract(body, '$.action') = ?3)
                           AND (?4 IS NULL OR seq < ?4)
                         ORDER BY seq DESC LIMIT ?5",
                    )
                    .map_err(|e| sqlite_err(&e))?;
                let rows = statement
                    .query_map(
                        params![
                            filter.subject,
                            filter.actor,
                            filter.action.map(AuditAction::as_str),
                            filter.before_seq.and_then(|s| i64::try_from(s).ok()),
                            i64::try_from(filter.limit).unwrap_or(i64::MAX)
                        ],
                        |row| Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?)),
                    )
                    .map_err(|e| sqlite_err(&e))?;
                let mut entries = Vec::new();
                for row in rows {
                    let (seq, body) = row.map_err(|e| sqlite_err(&e))?;
                    entries.push(serde_json::from_str(&body).map_err(|e| unreadable(seq, &e))?);
                }
                Ok(entries)
            })
            .await
            .map_err(audit_err)
    }

    async fn verify(&self) -> Result<AuditCheck, AuditError> {
        self.db
            .read(|conn| {
                let mut statement = conn
                    .prepare("SELECT seq, body FROM audit_trail ORDER BY seq")
                    .map_err(|e| sqlite_err(&e))?;
                let rows = statement
                    .query_map([], |row| {
                        Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
                    })
                    .map_err(|e| sqlite_err(&e))?;
                let mut entries = Vec::new();
                for row in rows {
                    let (seq, body) = row.map_err(|e| sqlite_err(&e))?;
                    match serde_json::from_str::<AuditEntry>(&body) {
                        // The row's number is the entry's: a body moved to another row is
                        // as wrong as an edited one.
                        Ok(entry) if i64::try_from(entry.seq).ok() == Some(seq) => {
                            entries.push(entry);
                        }
                        parsed => {
                            // Anything wrong before it is the first bad entry.
                            let before = verify_chain(
                                entries.drain(..).map(Ok::<_, std::convert::Infallible>),
                            )
                            .unwrap_or_else(|never| match never {});
                            if matches!(before, AuditCheck::Broken { .. }) {
                                return Ok(before);
                            }
                            return Ok(AuditCheck::Broken {
                                seq: u64::try_from(seq).unwrap_or(0),
                                problem: match parsed {
                                    Ok(entry) => {
                                        format!("row {seq} holds entry {}", entry.seq)
                                    }
                                    Err(e) => format!("it is unreadable: {e}"),
                                },
                            });
                        }
                    }
                }
                Ok(
                    verify_chain(entries.into_iter().map(Ok::<_, std::convert::Infallible>))
                        .unwrap_or_else(|never| match never {}),
                )
            })
            .await
            .map_err(audit_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: u32) -> AuditRecord {
        AuditRecord {
            at: chrono::Utc::now(),
            actor: format!("reviewer-{}", n % 2),
            action: if n.is_multiple_of(2) {
                AuditAction::Purge
            } else {
                AuditAction::Release
            },
            subject: format!("quarantine/acme/doc/{n}"),
            upload_id: None,
            why: format!("reason {n}"),
            before: "quarantined".into(),
            after: "purged".into(),
            sha256: Some("00".repeat(32)),
            detail: None,
        }
    }

    async fn trail_with(n: u32) -> (tempfile::TempDir, std::path::PathBuf, SqliteAuditTrail) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("intents.sqlite");
        let intents = SqliteIntentStore::open(&path).unwrap();
        let trail = SqliteAuditTrail::open(&intents).await.unwrap();
        for i in 1..=n {
            let entry = trail.append(record(i)).await.unwrap();
            assert_eq!(entry.seq, u64::from(i));
        }
        (dir, path, trail)
    }

    fn tamper(path: &std::path::Path, sql: &str) {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.execute_batch(sql).unwrap();
    }

    #[tokio::test]
    async fn appends_chain_and_concurrent_appends_never_fork() {
        let (_dir, _path, trail) = trail_with(0).await;
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..32 {
            let trail = trail.clone();
            tasks.spawn(async move { trail.append(record(i)).await.unwrap() });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
        let AuditCheck::Intact { entries, .. } = trail.verify().await.unwrap() else {
            panic!("a fresh trail is broken");
        };
        assert_eq!(entries, 32);
        let listed = trail
            .list(&AuditFilter {
                actor: Some("reviewer-1".into()),
                action: Some(AuditAction::Release),
                limit: 100,
                ..AuditFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(listed.len(), 16);
        assert!(
            listed.windows(2).all(|w| w[0].seq > w[1].seq),
            "newest first"
        );
        let one = trail
            .list(&AuditFilter {
                subject: Some("quarantine/acme/doc/7".into()),
                limit: 10,
                ..AuditFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].record.why, "reason 7");
    }

    #[tokio::test]
    async fn an_edited_entry_is_named() {
        let (_dir, path, trail) = trail_with(6).await;
        tamper(
            &path,
            "UPDATE audit_trail SET body = replace(body, 'reason 4', 'reason 4 (approved)') WHERE seq = 4",
        );
        let AuditCheck::Broken { seq, problem } = trail.verify().await.unwrap() else {
            panic!("an edited entry verified");
        };
        assert_eq!(seq, 4, "{problem}");
        assert!(problem.contains("does not match its hash"), "{problem}");
    }

    #[tokio::test]
    async fn a_deleted_entry_is_named_by_the_gap() {
        let (_dir, path, trail) = trail_with(6).await;
        tamper(&path, "DELETE FROM audit_trail WHERE seq = 3");
        let AuditCheck::Broken { seq, problem } = trail.verify().await.unwrap() else {
            panic!("a deleted entry went unnoticed");
        };
        assert_eq!(seq, 4, "{problem}");
        assert!(problem.contains("entries 3 to 3 are missing"), "{problem}");
    }

    #[tokio::test]
    async fn a_deletion_hidden_by_renumbering_breaks_the_link() {
        let (_dir, path, trail) = trail_with(5).await;
        // Delete entry 2 and renumber the rest, bodies included.
        tamper(
            &path,
            "DELETE FROM audit_trail WHERE seq = 2;
             UPDATE audit_trail SET body = json_set(body, '$.seq', seq - 1) WHERE seq > 2;
             UPDATE audit_trail SET seq = seq - 1 WHERE seq > 2;",
        );
        let AuditCheck::Broken { seq, .. } = trail.verify().await.unwrap() else {
            panic!("a renumbered chain verified");
        };
        assert_eq!(seq, 2);
    }

    #[tokio::test]
    async fn an_unreadable_entry_is_named_and_appends_after_it_are_refused() {
        let (_dir, path, trail) = trail_with(3).await;
        tamper(
            &path,
            "UPDATE audit_trail SET body = 'garbage' WHERE seq = 3",
        );
        let AuditCheck::Broken { seq, problem } = trail.verify().await.unwrap() else {
            panic!("garbage verified");
        };
        assert_eq!(seq, 3);
        assert!(problem.contains("unreadable"), "{problem}");
        assert!(trail.append(record(4)).await.is_err());
    }
}
