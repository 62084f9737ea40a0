//! The quarantine as a queryable set on one machine: an index in the intent store's
//! database over the JSON records `FsStore` holds beside quarantined objects.
//!
//! The records stay the source of truth. Before answering, the index catches up with them:
//! it remembers each folder under `quarantine/` with its modification time, reads again only
//! the folders that changed (adding a file changes its folder's time), and parses only the
//! records it has not indexed. A folder changed within the last [`RACY_WINDOW`] is never
//! taken as read, since another file may land in it within the same clock tick: it is
//! remembered as unread and listed again at the next catch-up.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use airlock_core::keys::{QUARANTINE_PREFIX, UploadId};
use airlock_core::ports::{IntentStoreError, Retry};
use airlock_core::review::{
    Count, PageRequest, QuarantineCounts, QuarantineError, QuarantineFilter, QuarantineIndex,
    QuarantineItem, QuarantinePage, QuarantineStatus, StateChange, Tombstone, tombstone_key,
};
use airlock_core::stages::QuarantineRecord;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params};

use crate::group_commit::GroupCommit;
use crate::sqlite_intents::{conversion, parse_time, sqlite_err, time_text};
use crate::{FsStore, SqliteIntentStore};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS quarantine_items (
    quarantine_key TEXT PRIMARY KEY,
    record_key     TEXT NOT NULL UNIQUE,
    tenant         TEXT,
    purpose        TEXT,
    reason         TEXT NOT NULL,
    signature      TEXT,
    uploader       TEXT,
    quarantined_at TEXT NOT NULL,
    status         TEXT NOT NULL,
    status_at      TEXT,
    record         TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS quarantine_items_newest
    ON quarantine_items(quarantined_at DESC, quarantine_key DESC);
CREATE INDEX IF NOT EXISTS quarantine_items_tenant
    ON quarantine_items(tenant, quarantined_at DESC);
CREATE INDEX IF NOT EXISTS quarantine_items_reason
    ON quarantine_items(reason, quarantined_at DESC);
CREATE INDEX IF NOT EXISTS quarantine_items_uploader
    ON quarantine_items(uploader, quarantined_at DESC, quarantine_key DESC);
CREATE INDEX IF NOT EXISTS quarantine_items_signature
    ON quarantine_items(signature, quarantined_at DESC, quarantine_key DESC);
CREATE INDEX IF NOT EXISTS quarantine_items_status
    ON quarantine_items(status, quarantined_at DESC, quarantine_key DESC);
CREATE INDEX IF NOT EXISTS quarantine_items_purpose
    ON quarantine_items(purpose, quarantined_at DESC, quarantine_key DESC);
-- Covers counts under any filter: they read this index, never the records, grouped in
-- its order.
CREATE INDEX IF NOT EXISTS quarantine_items_facets
    ON quarantine_items(reason, tenant, status, signature, purpose, uploader, quarantined_at);
CREATE TABLE IF NOT EXISTS quarantine_folders (
    path  TEXT PRIMARY KEY,
    mtime TEXT NOT NULL
);
";

/// Folders changed this recently are read again next time.
pub const RACY_WINDOW: Duration = Duration::from_secs(2);
/// Records are a few hundred bytes; larger `.json` files are not records.
const MAX_RECORD_BYTES: u64 = 1 << 20;

/// The quarantine of one local bucket, indexed in the intent store's database.
#[derive(Debug, Clone)]
pub struct LocalQuarantine {
    db: GroupCommit,
    /// The bucket's root folder.
    root: PathBuf,
}

fn index_err(err: IntentStoreError) -> QuarantineError {
    QuarantineError::new(err.message, err.retry)
}

fn io_err(what: &str, path: &Path, err: std::io::Error) -> QuarantineError {
    QuarantineError {
        message: format!("{what} {}", path.display()),
        retry: Retry::Transient,
        source: Some(Box::new(err)),
    }
}

/// A folder's modification time, to the nanosecond, as text.
fn mtime_text(modified: SystemTime) -> String {
    modified
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
        .to_string()
}

/// One record found on disk and not yet indexed.
struct Found {
    record_key: String,
    record: QuarantineRecord,
    status: QuarantineStatus,
    status_at: Option<DateTime<Utc>>,
}

/// What one catching-up pass read from disk.
#[derive(Default)]
struct Scanned {
    /// Folders to remember (path relative to the root, mtime as read; empty for one
    /// changed too recently to count as read, which is then listed again next time).
    settled: Vec<(String, String)>,
    /// Folders that are gone.
    gone: Vec<String>,
    /// `.json` keys in changed folders.
    candidates: Vec<String>,
}

impl LocalQuarantine {
    /// The index of `store`'s quarantine, in `intents`' database (tables made if missing).
    pub async fn open(
        intents: &SqliteIntentStore,
        store: &FsStore,
    ) -> Result<Self, QuarantineError> {
        let db = intents.db();
        db.write(|conn| conn.execute_batch(SCHEMA).map_err(|e| sqlite_err(&e)))
            .await
            .map_err(index_err)?;
        Ok(Self {
            db,
            root: store.root().to_path_buf(),
        })
    }

    /// Catches up with the records on disk; returns how many were added.
    pub async fn sync(&self) -> Result<usize, QuarantineError> {
        let known: Vec<(String, String)> = self
            .db
            .read(|conn| {
                let mut statement = conn
                    .prepare_cached("SELECT path, mtime FROM quarantine_folders")
                    .map_err(|e| sqlite_err(&e))?;
                statement
                    .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
                    .and_then(Iterator::collect)
                    .map_err(|e| sqlite_err(&e))
            })
            .await
            .map_err(index_err)?;
        let root = self.root.clone();
        let scanned = tokio::task::spawn_blocking(move || scan_folders(&root, known))
            .await
            .map_err(|e| {
                QuarantineError::new(format!("indexing crashed: {e}"), Retry::Permanent)
            })??;
        let Scanned {
            settled,
            gone,
            candidates,
        } = scanned;
        let new: Vec<String> = if candidates.is_empty() {
            Vec::new()
        } else {
            self.db
                .read(move |conn| {
                    let mut statement = conn
                        .prepare_cached("SELECT 1 FROM quarantine_items WHERE record_key = ?1")
                        .map_err(|e| sqlite_err(&e))?;
                    let mut new = Vec::new();
                    for key in candidates {
                        let known = statement.exists([&key]).map_err(|e| sqlite_err(&e))?;
                        if !known {
                            new.push(key);
                        }
                    }
                    Ok(new)
                })
                .await
                .map_err(index_err)?
        };
        let root = self.root.clone();
        let found = tokio::task::spawn_blocking(move || {
            new.into_iter()
                .filter_map(|key| read_found(&root, key))
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| QuarantineError::new(format!("indexing crashed: {e}"), Retry::Permanent))?;
        if found.is_empty() && settled.is_empty() && gone.is_empty() {
            return Ok(0);
        }
        self.db
            .write(move |conn| {
                let mut added = 0;
                for item in &found {
                    added += insert_item(conn, item)?;
                }
                for (path, mtime) in &settled {
                    conn.execute(
                        "INSERT INTO quarantine_folders (path, mtime) VALUES (?1, ?2)
                         ON CONFLICT (path) DO UPDATE SET mtime = excluded.mtime",
                        params![path, mtime],
                    )
                    .map_err(|e| sqlite_err(&e))?;
                }
                for path in &gone {
                    conn.execute("DELETE FROM quarantine_folders WHERE path = ?1", [path])
                        .map_err(|e| sqlite_err(&e))?;
                }
                Ok(added)
            })
            .await
            .map_err(index_err)
    }
}

/// Walks the folders under `quarantine/`: reads those whose time changed since `known` (and
/// those not known), skips the others, and lists the `.json` files of the ones read.
fn scan_folders(root: &Path, known: Vec<(String, String)>) -> Result<Scanned, QuarantineError> {
    let known: HashMap<String, String> = known.into_iter().collect();
    let top = QUARANTINE_PREFIX.trim_end_matches('/').to_owned();
    let mut queue: Vec<String> = known.keys().cloned().collect();
    if !known.contains_key(&top) {
        queue.push(top);
    }
    let mut seen: HashSet<String> = queue.iter().cloned().collect();
    let racy_before = SystemTime::now()
        .checked_sub(RACY_WINDOW)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut scanned = Scanned::default();
    while let Some(folder) = queue.pop() {
        let path = root.join(&folder);
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => meta,
            Ok(_) => {
                scanned.gone.push(folder);
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if known.contains_key(&folder) {
                    scanned.gone.push(folder);
                }
                continue;
            }
            Err(e) => return Err(io_err("cannot read", &path, e)),
        };
        let modified = meta
            .modified()
            .map_err(|e| io_err("cannot read", &path, e))?;
        let mtime = mtime_text(modified);
        if known.get(&folder) == Some(&mtime) && modified < racy_before {
            continue;
        }
        for entry in std::fs::read_dir(&path).map_err(|e| io_err("cannot list", &path, e))? {
            let entry = entry.map_err(|e| io_err("cannot list", &path, e))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let key = format!("{folder}/{name}");
            let kind = entry
                .file_type()
                .map_err(|e| io_err("cannot read", &entry.path(), e))?;
            if kind.is_dir() {
                if seen.insert(key.clone()) {
                    queue.push(key);
                }
            } else if kind.is_file() && is_record_name(&name) {
                scanned.candidates.push(key);
            }
        }
        // A folder changed too recently is remembered too, with no time: next time it is
        // listed again even if its parent, unchanged, is not (a new file in it does not
        // change its parent's time).
        let settled = if modified < racy_before {
            mtime
        } else {
            String::new()
        };
        scanned.settled.push((folder, settled));
    }
    Ok(scanned)
}

/// Records are written as `{key}.json`, exactly that case; tombstones beside them are not
/// records.
#[allow(clippy::case_sensitive_file_extension_comparisons)]
fn is_record_name(name: &str) -> bool {
    name.ends_with(".json") && !name.ends_with(".tombstone.json")
}

/// The record at `record_key`, if it is one (its own key is `record_key` without `.json`),
/// with the status the store shows: purged if a tombstone is beside it, released if its
/// object is gone without one.
fn read_found(root: &Path, record_key: String) -> Option<Found> {
    let path = root.join(&record_key);
    let meta = std::fs::metadata(&path).ok()?;
    if meta.len() > MAX_RECORD_BYTES {
        return None;
    }
    let record: QuarantineRecord = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
    if format!("{}.json", record.quarantine_key) != record_key {
        return None;
    }
    let tombstone = std::fs::read(root.join(tombstone_key(&record.quarantine_key)))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Tombstone>(&bytes).ok());
    let (status, status_at) = match tombstone {
        Some(tombstone) => (QuarantineStatus::Purged, Some(tombstone.purged_at)),
        None if !root.join(&record.quarantine_key).is_file() => (QuarantineStatus::Released, None),
        None => (QuarantineStatus::Quarantined, None),
    };
    Some(Found {
        record_key,
        record,
        status,
        status_at,
    })
}

fn insert_item(conn: &Connection, found: &Found) -> Result<usize, IntentStoreError> {
    let record = &found.record;
    let json = serde_json::to_string(record).map_err(|e| IntentStoreError {
        message: e.to_string(),
        retry: Retry::Permanent,
    })?;
    conn.prepare_cached(
        "INSERT OR IGNORE INTO quarantine_items (quarantine_key, record_key, tenant, purpose,
            reason, signature, uploader, quarantined_at, status, status_at, record)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )
    .and_then(|mut statement| {
        statement.execute(params![
            record.quarantine_key,
            found.record_key,
            record.tenant,
            record.purpose,
            record.reason.code(),
            record.signature,
            record.uploader,
            time_text(record.quarantined_at),
            found.status.as_str(),
            found.status_at.map(time_text),
            json,
        ])
    })
    .map_err(|e| sqlite_err(&e))
}

fn read_item(row: &rusqlite::Row<'_>) -> rusqlite::Result<QuarantineItem> {
    let record: QuarantineRecord =
        serde_json::from_str(&row.get::<_, String>("record")?).map_err(conversion)?;
    let status = row
        .get::<_, String>("status")?
        .parse::<QuarantineStatus>()
        .map_err(|e| conversion(std::io::Error::other(e)))?;
    let status_at = row
        .get::<_, Option<String>>("status_at")?
        .map(|t| parse_time(&t))
        .transpose()?;
    Ok(QuarantineItem {
        record_key: row.get("record_key")?,
        record,
        status,
        status_at,
    })
}

/// The WHERE clause of `filter`, and its parameters.
fn where_clause(filter: &QuarantineFilter) -> (String, Vec<Value>) {
    let mut clauses = Vec::new();
    let mut values = Vec::new();
    let mut text = |column: &str, value: &Option<String>| {
        if let Some(value) = value {
            values.push(Value::Text(value.clone()));
            clauses.push(format!("{column} = ?{}", values.len()));
        }
    };
    text("tenant", &filter.tenant);
    text("purpose", &filter.purpose);
    text("signature", &filter.signature);
    text("uploader", &filter.uploader);
    text("status", &filter.status.map(|s| s.as_str().to_owned()));
    if let Some(since) = filter.since {
        values.push(Value::Text(time_text(since)));
        clauses.push(format!("quarantined_at >= ?{}", values.len()));
    }
    if let Some(until) = filter.until {
        values.push(Value::Text(time_text(until)));
        clauses.push(format!("quarantined_at < ?{}", values.len()));
    }
    if !filter.reasons.is_empty() {
        let mut any = Vec::new();
        for reason in &filter.reasons {
            values.push(Value::Text(reason.code().to_owned()));
            any.push(format!("?{}", values.len()));
        }
        clauses.push(format!("reason IN ({})", any.join(", ")));
    }
    let clause = if clauses.is_empty() {
        "1".to_owned()
    } else {
        clauses.join(" AND ")
    };
    (clause, values)
}

fn cursor_of(item: &QuarantineItem) -> String {
    format!(
        "{}|{}",
        time_text(item.record.quarantined_at),
        item.record.quarantine_key
    )
}

fn counted(map: HashMap<String, u64>) -> Vec<Count> {
    let mut counts: Vec<Count> = map
        .into_iter()
        .map(|(value, count)| Count { value, count })
        .collect();
    counts.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
    counts
}

#[async_trait]
impl QuarantineIndex for LocalQuarantine {
    async fn list(
        &self,
        filter: &QuarantineFilter,
        page: &PageRequest,
    ) -> Result<QuarantinePage, QuarantineError> {
        self.sync().await?;
        let (mut clause, mut values) = where_clause(filter);
        if let Some(after) = &page.after {
            let (at, key) = after.split_once('|').ok_or_else(|| {
                QuarantineError::new(format!("not a page cursor: {after:?}"), Retry::Permanent)
            })?;
            values.push(Value::Text(at.to_owned()));
            values.push(Value::Text(key.to_owned()));
            let n = values.len();
            let _ = write!(
                clause,
                " AND (quarantined_at, quarantine_key) < (?{}, ?{n})",
                n - 1
            );
        }
        let limit = page.limit.max(1);
        values.push(Value::Integer(i64::try_from(limit + 1).unwrap_or(i64::MAX)));
        let sql = format!(
            "SELECT * FROM quarantine_items WHERE {clause}
             ORDER BY quarantined_at DESC, quarantine_key DESC LIMIT ?{}",
            values.len()
        );
        let mut items: Vec<QuarantineItem> = self
            .db
            .read(move |conn| {
                let mut statement = conn.prepare_cached(&sql).map_err(|e| sqlite_err(&e))?;
                statement
                    .query_map(rusqlite::params_from_iter(values), read_item)
                    .and_then(Iterator::collect)
                    .map_err(|e| sqlite_err(&e))
            })
            .await
            .map_err(index_err)?;
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(cursor_of)
        } else {
            None
        };
        Ok(QuarantinePage { items, next })
    }

    async fn counts(&self, filter: &QuarantineFilter) -> Result<QuarantineCounts, QuarantineError> {
        self.sync().await?;
        let (clause, values) = where_clause(filter);
        let sql = format!(
            "SELECT reason, tenant, status, signature, count(*) FROM quarantine_items
             WHERE {clause} GROUP BY reason, tenant, status, signature"
        );
        self.db
            .read(move |conn| {
                let mut statement = conn.prepare_cached(&sql).map_err(|e| sqlite_err(&e))?;
                let mut rows = statement
                    .query(rusqlite::params_from_iter(values))
                    .map_err(|e| sqlite_err(&e))?;
                let mut total = 0;
                let mut reasons = HashMap::new();
                let mut signatures = HashMap::new();
                let mut tenants = HashMap::new();
                let mut statuses = HashMap::new();
                let add = |map: &mut HashMap<String, u64>, value: Option<String>, n: u64| {
                    *map.entry(value.unwrap_or_else(|| "-".to_owned()))
                        .or_insert(0) += n;
                };
                while let Some(row) = rows.next().map_err(|e| sqlite_err(&e))? {
                    let text = |i| row.get::<_, Option<String>>(i).map_err(|e| sqlite_err(&e));
                    let n = u64::try_from(row.get::<_, i64>(4).map_err(|e| sqlite_err(&e))?)
                        .unwrap_or(0);
                    total += n;
                    add(&mut reasons, text(0)?, n);
                    add(&mut tenants, text(1)?, n);
                    add(&mut statuses, text(2)?, n);
                    add(&mut signatures, text(3)?, n);
                }
                Ok(QuarantineCounts {
                    total,
                    by_reason: counted(reasons),
                    by_signature: counted(signatures),
                    by_tenant: counted(tenants),
                    by_status: counted(statuses),
                })
            })
            .await
            .map_err(index_err)
    }

    async fn get(&self, quarantine_key: &str) -> Result<Option<QuarantineItem>, QuarantineError> {
        self.sync().await?;
        let key = quarantine_key.to_owned();
        self.db
            .read(move |conn| {
                conn.query_row(
                    "SELECT * FROM quarantine_items WHERE quarantine_key = ?1",
                    [key],
                    read_item,
                )
                .optional()
                .map_err(|e| sqlite_err(&e))
            })
            .await
            .map_err(index_err)
    }

    async fn set_status(
        &self,
        quarantine_key: &str,
        status: QuarantineStatus,
        at: DateTime<Utc>,
    ) -> Result<(), QuarantineError> {
        self.sync().await?;
        let key = quarantine_key.to_owned();
        let changed = self
            .db
            .write(move |conn| {
                conn.execute(
                    "UPDATE quarantine_items SET status = ?1, status_at = ?2 WHERE quarantine_key = ?3",
                    params![status.as_str(), time_text(at), key],
                )
                .map_err(|e| sqlite_err(&e))
            })
            .await
            .map_err(index_err)?;
        if changed == 0 {
            return Err(QuarantineError::new(
                format!("{quarantine_key} is not in the quarantine index"),
                Retry::Permanent,
            ));
        }
        Ok(())
    }

    async fn history(&self, upload_id: UploadId) -> Result<Vec<StateChange>, QuarantineError> {
        self.db
            .read(move |conn| {
                let mut statement = conn
                    .prepare_cached(
                        "SELECT from_state, to_state, at FROM intent_transitions
                         WHERE intent_id = ?1 ORDER BY seq",
                    )
                    .map_err(|e| sqlite_err(&e))?;
                statement
                    .query_map([upload_id.to_string()], |row| {
                        Ok(StateChange {
                            from: row.get::<_, String>(0)?.parse().map_err(conversion)?,
                            to: row.get::<_, String>(1)?.parse().map_err(conversion)?,
                            at: parse_time(&row.get::<_, String>(2)?)?,
                        })
                    })
                    .and_then(Iterator::collect)
                    .map_err(|e| sqlite_err(&e))
            })
            .await
            .map_err(index_err)
    }
}
