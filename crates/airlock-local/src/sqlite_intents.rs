//! Upload intents in SQLite, with conditional state changes and an audit trail of every
//! change. Writes of concurrent callers are committed together ([`crate::group_commit`]):
//! each caller is answered once its write is durable, and they share the fsync.

use std::path::Path;

use airlock_core::intent::{IntentOutcome, IntentState, UploadIntent};
use airlock_core::keys::UploadId;
use airlock_core::ports::{
    CreateOutcome, DeadLetter, DeadLetterError, DeadLetters, IdempotencyClaim, IntentStore,
    IntentStoreError, Retry, Transition, TransitionResult,
};
use airlock_core::review::{Checkpoints, TrustedFilter, TrustedUploads};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use crate::group_commit::GroupCommit;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS intents (
    id            TEXT PRIMARY KEY,
    tenant        TEXT NOT NULL,
    purpose       TEXT NOT NULL,
    declared_type TEXT NOT NULL,
    declared_size INTEGER NOT NULL,
    sha256        TEXT,
    filename      TEXT,
    uploader      TEXT,
    state         TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    expires_at    TEXT NOT NULL,
    outcome       TEXT,
    multipart_upload_id TEXT
);
CREATE INDEX IF NOT EXISTS intents_pending_expiry ON intents(expires_at) WHERE state = 'PENDING';
CREATE TABLE IF NOT EXISTS idempotency_keys (
    tenant       TEXT NOT NULL,
    key          TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    intent_id    TEXT NOT NULL REFERENCES intents(id),
    created_at   TEXT NOT NULL,
    PRIMARY KEY (tenant, key)
);
CREATE TABLE IF NOT EXISTS intent_transitions (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    intent_id  TEXT NOT NULL REFERENCES intents(id),
    from_state TEXT NOT NULL,
    to_state   TEXT NOT NULL,
    at         TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letters (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    bucket     TEXT NOT NULL,
    object_key TEXT NOT NULL,
    stage      TEXT NOT NULL,
    letter     TEXT NOT NULL,
    UNIQUE (bucket, object_key, stage)
);
CREATE TABLE IF NOT EXISTS checkpoints (
    job      TEXT PRIMARY KEY,
    position TEXT NOT NULL,
    at       TEXT NOT NULL
);
";

/// A dead letter as stored, with the id operators use to retry or drop it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDeadLetter {
    pub id: i64,
    pub letter: DeadLetter,
}

/// One recorded state change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransitionRecord {
    pub from: IntentState,
    pub to: IntentState,
    pub at: DateTime<Utc>,
}

/// Upload intents in a SQLite database file (or in memory). Clones share one connection,
/// owned by one thread.
#[derive(Debug, Clone)]
pub struct SqliteIntentStore {
    db: GroupCommit,
}

fn db_err(err: impl std::fmt::Display) -> IntentStoreError {
    IntentStoreError {
        message: err.to_string(),
        retry: Retry::Permanent,
    }
}

pub(crate) fn sqlite_err(err: &rusqlite::Error) -> IntentStoreError {
    let retry = match err.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            Retry::Transient
        }
        _ => Retry::Permanent,
    };
    IntentStoreError {
        message: err.to_string(),
        retry,
    }
}

pub(crate) fn time_text(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

pub(crate) fn parse_time(text: &str) -> rusqlite::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
        })
}

pub(crate) fn conversion(e: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
}

pub(crate) fn read_intent(row: &rusqlite::Row<'_>) -> rusqlite::Result<UploadIntent> {
    let outcome: Option<String> = row.get("outcome")?;
    let outcome: Option<IntentOutcome> = outcome
        .map(|text| serde_json::from_str(&text).map_err(conversion))
        .transpose()?;
    Ok(UploadIntent {
        id: row.get::<_, String>("id")?.parse().map_err(conversion)?,
        tenant: row
            .get::<_, String>("tenant")?
            .try_into()
            .map_err(conversion)?,
        purpose: row
            .get::<_, String>("purpose")?
            .try_into()
            .map_err(conversion)?,
        declared_type: row.get("declared_type")?,
        declared_size: row.get("declared_size")?,
        sha256: row.get("sha256")?,
        filename: row.get("filename")?,
        uploader: row.get("uploader")?,
        state: row.get::<_, String>("state")?.parse().map_err(conversion)?,
        created_at: parse_time(&row.get::<_, String>("created_at")?)?,
        updated_at: parse_time(&row.get::<_, String>("updated_at")?)?,
        expires_at: parse_time(&row.get::<_, String>("expires_at")?)?,
        outcome,
        multipart_upload_id: row.get("multipart_upload_id")?,
    })
}

/// Brings a database made by an earlier version up to [`SCHEMA`]: columns added since.
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let has_intents: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'intents')",
        [],
        |row| row.get(0),
    )?;
    if !has_intents {
        return Ok(());
    }
    let has_multipart: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM pragma_table_info('intents') WHERE name = 'multipart_upload_id')",
        [],
        |row| row.get(0),
    )?;
    if !has_multipart {
        conn.execute(
            "ALTER TABLE intents ADD COLUMN multipart_upload_id TEXT",
            [],
        )?;
    }
    Ok(())
}

fn insert_intent(conn: &Connection, intent: &UploadIntent) -> Result<bool, IntentStoreError> {
    let outcome = intent
        .outcome
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(db_err)?;
    let inserted = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO intents (id, tenant, purpose, declared_type, declared_size,
                sha256, filename, uploader, state, created_at, updated_at, expires_at, outcome,
                multipart_upload_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        )
        .and_then(|mut statement| {
            statement.execute(params![
                intent.id.to_string(),
                intent.tenant.as_str(),
                intent.purpose.as_str(),
                intent.declared_type,
                intent.declared_size,
                intent.sha256,
                intent.filename,
                intent.uploader,
                intent.state.as_str(),
                time_text(intent.created_at),
                time_text(intent.updated_at),
                time_text(intent.expires_at),
                outcome,
                intent.multipart_upload_id,
            ])
        })
        .map_err(|e| sqlite_err(&e))?;
    Ok(inserted == 1)
}

fn select_intent(conn: &Connection, id: &str) -> rusqlite::Result<Option<UploadIntent>> {
    conn.query_row("SELECT * FROM intents WHERE id = ?1", [id], read_intent)
        .optional()
}

impl SqliteIntentStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, IntentStoreError> {
        let conn = Connection::open(path.as_ref()).map_err(|e| sqlite_err(&e))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| sqlite_err(&e))?;
        // Every commit is flushed to disk before its callers are answered: an intent whose
        // URL was handed out survives a power cut. Group commit makes this affordable.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(|e| sqlite_err(&e))?;
        Self::init(conn)
    }

    /// A private in-memory database.
    pub fn in_memory() -> Result<Self, IntentStoreError> {
        Self::init(Connection::open_in_memory().map_err(|e| sqlite_err(&e))?)
    }

    fn init(conn: Connection) -> Result<Self, IntentStoreError> {
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|e| sqlite_err(&e))?;
        migrate(&conn).map_err(|e| sqlite_err(&e))?;
        conn.execute_batch(SCHEMA).map_err(|e| sqlite_err(&e))?;
        Ok(Self {
            db: GroupCommit::start(conn)?,
        })
    }

    /// The connection's thread, for the other stores kept in this database (the audit
    /// trail, the quarantine index).
    pub(crate) fn db(&self) -> GroupCommit {
        self.db.clone()
    }

    /// Write transactions committed so far; each may hold the writes of many callers.
    #[must_use]
    pub fn commits(&self) -> u64 {
        self.db.commits()
    }

    /// Every dead letter, oldest first.
    pub async fn dead_letters(&self) -> Result<Vec<StoredDeadLetter>, IntentStoreError> {
        self.db
            .read(|conn| {
                let mut stmt = conn
                    .prepare("SELECT id, letter FROM dead_letters ORDER BY id")
                    .map_err(|e| sqlite_err(&e))?;
                let rows = stmt
                    .query_map([], |row| {
                        let letter: String = row.get(1)?;
                        Ok(StoredDeadLetter {
                            id: row.get(0)?,
                            letter: serde_json::from_str(&letter).map_err(conversion)?,
                        })
                    })
                    .map_err(|e| sqlite_err(&e))?;
                rows.collect::<Result<Vec<_>, _>>()
                    .map_err(|e| sqlite_err(&e))
            })
            .await
    }

    /// Removes a dead letter (once its object is settled); returns whether it existed.
    pub async fn remove_dead_letter(&self, id: i64) -> Result<bool, IntentStoreError> {
        self.db
            .write(move |conn| {
                conn.execute("DELETE FROM dead_letters WHERE id = ?1", [id])
                    .map(|n| n > 0)
                    .map_err(|e| sqlite_err(&e))
            })
            .await
    }

    /// `PENDING` intents whose time ran out before `now`, oldest first, at most `limit`.
    pub async fn pending_overdue(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<UploadIntent>, IntentStoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.db
            .read(move |conn| {
                let mut statement = conn
                    .prepare(
                        "SELECT * FROM intents WHERE state = 'PENDING' AND expires_at < ?1
                     ORDER BY expires_at LIMIT ?2",
                    )
                    .map_err(|e| sqlite_err(&e))?;
                statement
                    .query_map(params![time_text(now), limit], read_intent)
                    .and_then(Iterator::collect)
                    .map_err(|e| sqlite_err(&e))
            })
            .await
    }

    /// Forgets idempotency keys claimed before `before`; returns how many.
    pub async fn forget_idempotency_keys(
        &self,
        before: DateTime<Utc>,
    ) -> Result<usize, IntentStoreError> {
        self.db
            .write(move |conn| {
                conn.execute(
                    "DELETE FROM idempotency_keys WHERE created_at < ?1",
                    [time_text(before)],
                )
                .map_err(|e| sqlite_err(&e))
            })
            .await
    }

    /// The recorded state changes of an intent, oldest first.
    pub async fn transitions(
        &self,
        id: UploadId,
    ) -> Result<Vec<TransitionRecord>, IntentStoreError> {
        self.db.read(move |conn| {
            let mut stmt = conn
                .prepare("SELECT from_state, to_state, at FROM intent_transitions WHERE intent_id = ?1 ORDER BY seq")
                .map_err(|e| sqlite_err(&e))?;
            let rows = stmt
                .query_map([id.to_string()], |row| {
                    Ok(TransitionRecord {
                        from: row.get::<_, String>(0)?.parse().map_err(conversion)?,
                        to: row.get::<_, String>(1)?.parse().map_err(conversion)?,
                        at: parse_time(&row.get::<_, String>(2)?)?,
                    })
                })
                .map_err(|e| sqlite_err(&e))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(|e| sqlite_err(&e))
        })
        .await
    }
}

#[async_trait]
impl TrustedUploads for SqliteIntentStore {
    async fn trusted(
        &self,
        filter: &TrustedFilter,
        after: Option<UploadId>,
        limit: usize,
    ) -> Result<Vec<UploadIntent>, IntentStoreError> {
        let filter = filter.clone();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.db
            .read(move |conn| {
                let mut statement = conn
                    .prepare_cached(
                        "SELECT * FROM intents WHERE state = 'READY'
                           AND (?1 IS NULL OR tenant = ?1) AND (?2 IS NULL OR purpose = ?2)
                           AND (?3 IS NULL OR updated_at >= ?3) AND (?4 IS NULL OR id > ?4)
                         ORDER BY id LIMIT ?5",
                    )
                    .map_err(|e| sqlite_err(&e))?;
                statement
                    .query_map(
                        params![
                            filter.tenant,
                            filter.purpose,
                            filter.since.map(time_text),
                            after.map(|id| id.to_string()),
                            limit
                        ],
                        read_intent,
                    )
                    .and_then(Iterator::collect)
                    .map_err(|e| sqlite_err(&e))
            })
            .await
    }
}

#[async_trait]
impl Checkpoints for SqliteIntentStore {
    async fn load(&self, job: &str) -> Result<Option<String>, IntentStoreError> {
        let job = job.to_owned();
        self.db
            .read(move |conn| {
                conn.query_row(
                    "SELECT position FROM checkpoints WHERE job = ?1",
                    [job],
                    |row| row.get(0),
                )
                .optional()
                .map_err(|e| sqlite_err(&e))
            })
            .await
    }

    async fn save(&self, job: &str, position: &str) -> Result<(), IntentStoreError> {
        let (job, position) = (job.to_owned(), position.to_owned());
        self.db
            .write(move |conn| {
                conn.execute(
                    "INSERT INTO checkpoints (job, position, at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (job) DO UPDATE SET position = excluded.position, at = excluded.at",
                    params![job, position, time_text(Utc::now())],
                )
                .map(drop)
                .map_err(|e| sqlite_err(&e))
            })
            .await
    }

    async fn clear(&self, job: &str) -> Result<(), IntentStoreError> {
        let job = job.to_owned();
        self.db
            .write(move |conn| {
                conn.execute("DELETE FROM checkpoints WHERE job = ?1", [job])
                    .map(drop)
                    .map_err(|e| sqlite_err(&e))
            })
            .await
    }
}

#[async_trait]
impl DeadLetters for SqliteIntentStore {
    async fn record(&self, letter: &DeadLetter) -> Result<(), DeadLetterError> {
        let letter = letter.clone();
        self.db.write(move |conn| {
            let text = serde_json::to_string(&letter).map_err(db_err)?;
            conn.execute(
                "INSERT INTO dead_letters (bucket, object_key, stage, letter) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (bucket, object_key, stage) DO UPDATE SET letter = excluded.letter",
                params![
                    letter.object.bucket,
                    letter.object.key,
                    letter.stage.as_str(),
                    text
                ],
            )
            .map(drop)
            .map_err(|e| sqlite_err(&e))
        })
        .await
        .map_err(|e| DeadLetterError {
            message: e.message,
            retry: e.retry,
        })
    }
}

#[async_trait]
impl IntentStore for SqliteIntentStore {
    async fn create(&self, intent: &UploadIntent) -> Result<bool, IntentStoreError> {
        let intent = intent.clone();
        self.db
            .write(move |conn| insert_intent(conn, &intent))
            .await
    }

    async fn create_idempotent(
        &self,
        intent: &UploadIntent,
        claim: &IdempotencyClaim,
    ) -> Result<CreateOutcome, IntentStoreError> {
        let intent = intent.clone();
        let claim = claim.clone();
        // Atomic: the batch runs each write in its own savepoint.
        self.db.write(move |tx| {
            let earlier: Option<(String, String)> = tx
                .query_row(
                    "SELECT request_hash, intent_id FROM idempotency_keys WHERE tenant = ?1 AND key = ?2",
                    params![intent.tenant.as_str(), claim.key],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()
                .map_err(|e| sqlite_err(&e))?;
            if let Some((request_hash, intent_id)) = earlier {
                if request_hash != claim.request_hash {
                    return Ok(CreateOutcome::KeyReused);
                }
                let made = select_intent(tx, &intent_id)
                    .map_err(|e| sqlite_err(&e))?
                    .ok_or_else(|| db_err(format!("idempotency key names missing intent {intent_id}")))?;
                return Ok(CreateOutcome::Replayed(Box::new(made)));
            }
            if !insert_intent(tx, &intent)? {
                return Err(db_err(format!("intent {} exists already", intent.id)));
            }
            tx.execute(
                "INSERT INTO idempotency_keys (tenant, key, request_hash, intent_id, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    intent.tenant.as_str(),
                    claim.key,
                    claim.request_hash,
                    intent.id.to_string(),
                    time_text(intent.created_at)
                ],
            )
            .map_err(|e| sqlite_err(&e))?;
            Ok(CreateOutcome::Created)
        })
        .await
    }

    async fn get(&self, id: UploadId) -> Result<Option<UploadIntent>, IntentStoreError> {
        self.db
            .read(move |conn| select_intent(conn, &id.to_string()).map_err(|e| sqlite_err(&e)))
            .await
    }

    async fn transition(
        &self,
        id: UploadId,
        transition: Transition,
    ) -> Result<TransitionResult, IntentStoreError> {
        self.db.write(move |tx| {
            let id_text = id.to_string();
            let Some(current) = select_intent(tx, &id_text).map_err(|e| sqlite_err(&e))? else {
                return Ok(TransitionResult::NotFound);
            };
            // Only legal changes from an expected state; anything else is refused unchanged.
            if !transition.is_legal_from(current.state) {
                return Ok(TransitionResult::Refused {
                    current: current.state,
                });
            }
            let outcome = transition
                .outcome
                .as_ref()
                .map(serde_json::to_string)
                .transpose()
                .map_err(db_err)?;
            let at = time_text(transition.at);
            tx.execute(
                "UPDATE intents SET state = ?1, updated_at = ?2, outcome = COALESCE(?3, outcome)
                 WHERE id = ?4 AND state = ?5",
                params![transition.to.as_str(), at, outcome, id_text, current.state.as_str()],
            )
            .map_err(|e| sqlite_err(&e))?;
            tx.execute(
                "INSERT INTO intent_transitions (intent_id, from_state, to_state, at) VALUES (?1, ?2, ?3, ?4)",
                params![id_text, current.state.as_str(), transition.to.as_str(), at],
            )
            .map_err(|e| sqlite_err(&e))?;
            let updated = select_intent(tx, &id_text)
                .map_err(|e| sqlite_err(&e))?
                .ok_or_else(|| db_err("intent vanished inside a transaction"))?;
            Ok(TransitionResult::Applied(Box::new(updated)))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_core::keys::{Purpose, TenantId};
    use chrono::Duration;

    fn intent() -> UploadIntent {
        let now = Utc::now();
        UploadIntent {
            id: UploadId::generate(),
            tenant: TenantId::new("acme").unwrap(),
            purpose: Purpose::new("avatar").unwrap(),
            declared_type: "image/png".into(),
            declared_size: 42,
            sha256: None,
            filename: Some("me.png".into()),
            uploader: Some("user-1".into()),
            state: IntentState::Pending,
            created_at: now,
            updated_at: now,
            expires_at: now + Duration::minutes(15),
            outcome: None,
            multipart_upload_id: None,
        }
    }

    fn to(state: IntentState, from: &[IntentState]) -> Transition {
        Transition {
            from: from.to_vec(),
            to: state,
            at: Utc::now(),
            outcome: None,
            review: false,
        }
    }

    #[tokio::test]
    async fn create_is_insert_if_absent() {
        let store = SqliteIntentStore::in_memory().unwrap();
        let intent = intent();
        assert!(store.create(&intent).await.unwrap());
        let mut changed = intent.clone();
        changed.declared_size = 7;
        assert!(!store.create(&changed).await.unwrap());
        let stored = store.get(intent.id).await.unwrap().unwrap();
        assert_eq!(stored.declared_size, 42);
        assert_eq!(stored.filename.as_deref(), Some("me.png"));
        assert!(store.get(UploadId::generate()).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn transitions_are_conditional_and_audited() {
        use IntentState::*;
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteIntentStore::open(dir.path().join("intents.db")).unwrap();
        let intent = intent();
        store.create(&intent).await.unwrap();

        let applied = store
            .transition(intent.id, to(Processing, &[Pending]))
            .await
            .unwrap();
        assert!(matches!(applied, TransitionResult::Applied(i) if i.state == Processing));
        // The same change again is refused, not applied twice.
        assert_eq!(
            store
                .transition(intent.id, to(Processing, &[Pending]))
                .await
                .unwrap(),
            TransitionResult::Refused {
                current: Processing
            }
        );
        // An illegal change is refused even if the caller lists the current state.
        assert_eq!(
            store
                .transition(intent.id, to(Pending, &[Processing]))
                .await
                .unwrap(),
            TransitionResult::Refused {
                current: Processing
            }
        );
        let mut ready = to(Ready, &[Processing]);
        ready.outcome = Some(IntentOutcome {
            key: "trusted/x".into(),
            reason: None,
            detail: None,
            sha256: Some("ab".into()),
            size: Some(42),
            engine: Some("ClamAV 1.4.6".into()),
            media: Some(serde_json::json!({"variants": []})),
        });
        store.transition(intent.id, ready).await.unwrap();
        let stored = store.get(intent.id).await.unwrap().unwrap();
        assert_eq!(stored.state, Ready);
        let outcome = stored.outcome.unwrap();
        assert_eq!(outcome.key, "trusted/x");
        assert_eq!(outcome.media, Some(serde_json::json!({"variants": []})));
        assert_eq!(
            store
                .transition(intent.id, to(Quarantined, &IntentState::ALL))
                .await
                .unwrap(),
            TransitionResult::Refused { current: Ready }
        );
        assert_eq!(
            store
                .transition(UploadId::generate(), to(Ready, &[Processing]))
                .await
                .unwrap(),
            TransitionResult::NotFound
        );
        let trail: Vec<_> = store
            .transitions(intent.id)
            .await
            .unwrap()
            .into_iter()
            .map(|t| (t.from, t.to))
            .collect();
        assert_eq!(trail, vec![(Pending, Processing), (Processing, Ready)]);

        // Survives reopening.
        drop(store);
        let reopened = SqliteIntentStore::open(dir.path().join("intents.db")).unwrap();
        assert_eq!(reopened.get(intent.id).await.unwrap().unwrap().state, Ready);
    }

    #[tokio::test]
    async fn only_a_review_moves_a_settled_intent_and_only_between_ready_and_quarantined() {
        use IntentState::*;
        let store = SqliteIntentStore::in_memory().unwrap();
        let intent = intent();
        store.create(&intent).await.unwrap();
        store
            .transition(intent.id, to(Processing, &[Pending]))
            .await
            .unwrap();
        store
            .transition(intent.id, to(Quarantined, &[Processing]))
            .await
            .unwrap();
        // The pipeline cannot release it...
        assert_eq!(
            store
                .transition(intent.id, to(Ready, &IntentState::ALL))
                .await
                .unwrap(),
            TransitionResult::Refused {
                current: Quarantined
            }
        );
        // ...a review can, and can revoke it again, but never reopen it.
        let review = |state, from: &[IntentState]| Transition {
            review: true,
            ..to(state, from)
        };
        assert!(matches!(
            store.transition(intent.id, review(Ready, &[Quarantined])).await.unwrap(),
            TransitionResult::Applied(i) if i.state == Ready
        ));
        assert_eq!(
            store
                .transition(intent.id, review(Processing, &IntentState::ALL))
                .await
                .unwrap(),
            TransitionResult::Refused { current: Ready }
        );
        assert!(matches!(
            store.transition(intent.id, review(Quarantined, &[Ready])).await.unwrap(),
            TransitionResult::Applied(i) if i.state == Quarantined
        ));
        let trail: Vec<_> = store
            .transitions(intent.id)
            .await
            .unwrap()
            .into_iter()
            .map(|t| (t.from, t.to))
            .collect();
        assert_eq!(
            trail,
            vec![
                (Pending, Processing),
                (Processing, Quarantined),
                (Quarantined, Ready),
                (Ready, Quarantined)
            ]
        );
    }

    #[tokio::test]
    async fn concurrent_changes_apply_once() {
        let store = SqliteIntentStore::in_memory().unwrap();
        let intent = intent();
        store.create(&intent).await.unwrap();
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .transition(
                        intent.id,
                        to(IntentState::Processing, &[IntentState::Pending]),
                    )
                    .await
                    .unwrap()
            }));
        }
        let mut applied = 0;
        for task in tasks {
            if matches!(task.await.unwrap(), TransitionResult::Applied(_)) {
                applied += 1;
            }
        }
        assert_eq!(applied, 1);
    }

    fn claim(key: &str, hash: &str) -> IdempotencyClaim {
        IdempotencyClaim {
            key: key.into(),
            request_hash: hash.into(),
        }
    }

    #[tokio::test]
    async fn an_idempotency_key_returns_the_first_intent_and_refuses_another_request() {
        let store = SqliteIntentStore::in_memory().unwrap();
        let first = intent();
        assert_eq!(
            store
                .create_idempotent(&first, &claim("k1", "h1"))
                .await
                .unwrap(),
            CreateOutcome::Created
        );
        let stored = store.get(first.id).await.unwrap().unwrap();

        let mut retry = intent();
        retry.id = UploadId::generate();
        assert_eq!(
            store
                .create_idempotent(&retry, &claim("k1", "h1"))
                .await
                .unwrap(),
            CreateOutcome::Replayed(Box::new(stored))
        );
        assert_eq!(
            store
                .create_idempotent(&retry, &claim("k1", "h2"))
                .await
                .unwrap(),
            CreateOutcome::KeyReused
        );
        // Neither the retry nor the refused request stored an intent.
        assert!(store.get(retry.id).await.unwrap().is_none());

        // Keys are per tenant: another tenant's same key is a new request.
        let mut other = intent();
        other.tenant = TenantId::new("globex").unwrap();
        assert_eq!(
            store
                .create_idempotent(&other, &claim("k1", "h2"))
                .await
                .unwrap(),
            CreateOutcome::Created
        );

        assert_eq!(
            store
                .forget_idempotency_keys(Utc::now() + Duration::seconds(1))
                .await
                .unwrap(),
            2
        );
        assert_eq!(
            store
                .create_idempotent(&retry, &claim("k1", "h2"))
                .await
                .unwrap(),
            CreateOutcome::Created
        );
    }

    #[tokio::test]
    async fn overdue_pending_intents_are_listed_oldest_first() {
        let store = SqliteIntentStore::in_memory().unwrap();
        let now = Utc::now();
        let mut ids = Vec::new();
        for minutes in [-5, -10, 10] {
            let mut made = intent();
            made.id = UploadId::generate();
            made.expires_at = now + Duration::minutes(minutes);
            store.create(&made).await.unwrap();
            ids.push(made.id);
        }
        let settled = {
            let mut made = intent();
            made.id = UploadId::generate();
            made.expires_at = now - Duration::minutes(20);
            store.create(&made).await.unwrap();
            store
                .transition(made.id, to(IntentState::Uploaded, &[IntentState::Pending]))
                .await
                .unwrap();
            made.id
        };
        let overdue: Vec<_> = store
            .pending_overdue(now, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|i| i.id)
            .collect();
        assert_eq!(overdue, vec![ids[1], ids[0]]);
        assert!(!overdue.contains(&settled));
        assert_eq!(store.pending_overdue(now, 1).await.unwrap().len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_creates_are_all_stored_and_each_is_visible_once_its_call_returns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("intents.db");
        let store = SqliteIntentStore::open(&path).unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..64u64 {
            let store = store.clone();
            tasks.spawn(async move {
                let mut made = intent();
                made.declared_size = n + 1;
                let created = if n % 2 == 0 {
                    store.create(&made).await.unwrap()
                } else {
                    let key = format!("key-{n}");
                    store
                        .create_idempotent(&made, &claim(&key, "h"))
                        .await
                        .unwrap()
                        == CreateOutcome::Created
                };
                assert!(created);
                // Answered means committed: a read right after sees it.
                let stored = store.get(made.id).await.unwrap().unwrap();
                assert_eq!(stored.declared_size, n + 1);
                made.id
            });
        }
        let mut ids = Vec::new();
        while let Some(id) = tasks.join_next().await {
            ids.push(id.unwrap());
        }
        drop(store);
        // Another connection to the file sees every one.
        let reopened = SqliteIntentStore::open(&path).unwrap();
        let listed = reopened
            .pending_overdue(Utc::now() + Duration::days(1), 1000)
            .await
            .unwrap();
        assert_eq!(listed.len(), 64);
        for id in ids {
            assert!(reopened.get(id).await.unwrap().is_some());
        }
    }

    /// Polls `future` once, so its job is queued, and checks it is still waiting.
    async fn queued<F: std::future::Future + Unpin>(mut future: F) -> F {
        std::future::poll_fn(|cx| {
            assert!(
                std::pin::Pin::new(&mut future).poll(cx).is_pending(),
                "answered while the database thread was held"
            );
            std::task::Poll::Ready(())
        })
        .await;
        future
    }

    #[tokio::test]
    async fn writes_waiting_together_commit_once_and_a_failed_one_is_rolled_back_alone() {
        use IntentState::{Pending, Processing};
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteIntentStore::open(dir.path().join("intents.db")).unwrap();
        let existing = intent();
        store.create(&existing).await.unwrap();

        // Hold the database thread until every write below is queued.
        let (entered, is_entered) = tokio::sync::oneshot::channel();
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let held = queued(Box::pin(store.db.read(move |_| {
            let _ = entered.send(());
            let _ = gate.recv();
            Ok(())
        })))
        .await;
        is_entered.await.unwrap();

        let (a, b) = (intent(), intent());
        let mut duplicate = intent();
        duplicate.id = existing.id;
        let (k, k2) = (claim("k", "h"), claim("k2", "h"));
        let create_a = queued(store.create(&a)).await;
        let failing = queued(store.create_idempotent(&duplicate, &k)).await;
        let create_b = queued(store.create_idempotent(&b, &k2)).await;
        let partial = intent();
        let inserted = partial.clone();
        let undone = queued(Box::pin(store.db.write(move |conn| {
            assert!(insert_intent(conn, &inserted)?);
            Err::<(), _>(db_err("fails after inserting"))
        })))
        .await;
        let change = queued(store.transition(existing.id, to(Processing, &[Pending]))).await;
        let commits = store.commits();
        release.send(()).unwrap();
        held.await.unwrap();

        assert!(create_a.await.unwrap());
        let refused = failing.await.unwrap_err();
        assert!(refused.message.contains("exists already"), "{refused}");
        assert_eq!(create_b.await.unwrap(), CreateOutcome::Created);
        assert!(undone.await.is_err());
        assert!(
            matches!(change.await.unwrap(), TransitionResult::Applied(i) if i.state == Processing)
        );
        assert_eq!(store.commits(), commits + 1, "the writes share one commit");

        // The failed writes left nothing: the insert before the failure is undone, and the
        // refused request's idempotency key is still free.
        assert!(store.get(partial.id).await.unwrap().is_none());
        let c = intent();
        assert_eq!(
            store.create_idempotent(&c, &claim("k", "h")).await.unwrap(),
            CreateOutcome::Created
        );
        for id in [a.id, b.id, c.id] {
            assert!(store.get(id).await.unwrap().is_some());
        }
        let stored = store.get(existing.id).await.unwrap().unwrap();
        assert_eq!((stored.state, stored.declared_size), (Processing, 42));
        assert_eq!(store.transitions(existing.id).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_database_from_before_multipart_ids_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("intents.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE intents (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, purpose TEXT NOT NULL,
                 declared_type TEXT NOT NULL, declared_size INTEGER NOT NULL, sha256 TEXT, filename TEXT,
                 uploader TEXT, state TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
                 expires_at TEXT NOT NULL, outcome TEXT);",
            )
            .unwrap();
        }
        let store = SqliteIntentStore::open(&path).unwrap();
        let mut made = intent();
        made.multipart_upload_id = Some("mpu-1".into());
        store.create(&made).await.unwrap();
        let stored = store.get(made.id).await.unwrap().unwrap();
        assert_eq!(stored.multipart_upload_id.as_deref(), Some("mpu-1"));
        assert_eq!(stored.filename, made.filename);
    }
}
