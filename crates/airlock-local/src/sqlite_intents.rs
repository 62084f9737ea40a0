//! Upload intents in SQLite, with conditional state changes and an audit trail of every
//! change.

use std::path::Path;
use std::sync::{Arc, Mutex};

use airlock_core::intent::{IntentOutcome, IntentState, UploadIntent};
use airlock_core::keys::UploadId;
use airlock_core::ports::{
    DeadLetter, DeadLetterError, DeadLetters, IntentStore, IntentStoreError, Retry, Transition,
    TransitionResult,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

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
    outcome       TEXT
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

/// Upload intents in a SQLite database file (or in memory).
#[derive(Debug, Clone)]
pub struct SqliteIntentStore {
    conn: Arc<Mutex<Connection>>,
}

fn db_err(err: impl std::fmt::Display) -> IntentStoreError {
    IntentStoreError {
        message: err.to_string(),
        retry: Retry::Permanent,
    }
}

fn sqlite_err(err: &rusqlite::Error) -> IntentStoreError {
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

fn time_text(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn parse_time(text: &str) -> rusqlite::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
        })
}

fn conversion(e: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
}

fn read_intent(row: &rusqlite::Row<'_>) -> rusqlite::Result<UploadIntent> {
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
    })
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
        Self::init(conn)
    }

    /// A private in-memory database.
    pub fn in_memory() -> Result<Self, IntentStoreError> {
        Self::init(Connection::open_in_memory().map_err(|e| sqlite_err(&e))?)
    }

    fn init(conn: Connection) -> Result<Self, IntentStoreError> {
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|e| sqlite_err(&e))?;
        conn.execute_batch(SCHEMA).map_err(|e| sqlite_err(&e))?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    async fn with_conn<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, IntentStoreError> + Send + 'static,
    ) -> Result<T, IntentStoreError> {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut conn = conn
                .lock()
                .map_err(|_| db_err("connection lock poisoned"))?;
            work(&mut conn)
        })
        .await
        .map_err(db_err)?
    }

    /// Every dead letter, oldest first.
    pub async fn dead_letters(&self) -> Result<Vec<StoredDeadLetter>, IntentStoreError> {
        self.with_conn(|conn| {
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
        self.with_conn(move |conn| {
            conn.execute("DELETE FROM dead_letters WHERE id = ?1", [id])
                .map(|n| n > 0)
                .map_err(|e| sqlite_err(&e))
        })
        .await
    }

    /// The recorded state changes of an intent, oldest first.
    pub async fn transitions(
        &self,
        id: UploadId,
    ) -> Result<Vec<TransitionRecord>, IntentStoreError> {
        self.with_conn(move |conn| {
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
impl DeadLetters for SqliteIntentStore {
    async fn record(&self, letter: &DeadLetter) -> Result<(), DeadLetterError> {
        let letter = letter.clone();
        self.with_conn(move |conn| {
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
        self.with_conn(move |conn| {
            let outcome = intent
                .outcome
                .as_ref()
                .map(serde_json::to_string)
                .transpose()
                .map_err(db_err)?;
            let inserted = conn
                .execute(
                    "INSERT OR IGNORE INTO intents (id, tenant, purpose, declared_type, declared_size,
                        sha256, filename, uploader, state, created_at, updated_at, expires_at, outcome)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                    params![
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
                    ],
                )
                .map_err(|e| sqlite_err(&e))?;
            Ok(inserted == 1)
        })
        .await
    }

    async fn get(&self, id: UploadId) -> Result<Option<UploadIntent>, IntentStoreError> {
        self.with_conn(move |conn| select_intent(conn, &id.to_string()).map_err(|e| sqlite_err(&e)))
            .await
    }

    async fn transition(
        &self,
        id: UploadId,
        transition: Transition,
    ) -> Result<TransitionResult, IntentStoreError> {
        self.with_conn(move |conn| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(|e| sqlite_err(&e))?;
            let id_text = id.to_string();
            let Some(current) = select_intent(&tx, &id_text).map_err(|e| sqlite_err(&e))? else {
                return Ok(TransitionResult::NotFound);
            };
            // Only legal changes from an expected state; anything else is refused unchanged.
            if !transition.from.contains(&current.state)
                || !current.state.can_become(transition.to)
            {
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
            let updated = select_intent(&tx, &id_text)
                .map_err(|e| sqlite_err(&e))?
                .ok_or_else(|| db_err("intent vanished inside a transaction"))?;
            tx.commit().map_err(|e| sqlite_err(&e))?;
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
        }
    }

    fn to(state: IntentState, from: &[IntentState]) -> Transition {
        Transition {
            from: from.to_vec(),
            to: state,
            at: Utc::now(),
            outcome: None,
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
}
