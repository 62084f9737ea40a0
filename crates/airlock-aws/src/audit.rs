//! The audit trail in the intent table: one item per entry, each field its own attribute
//! (so what a listing shows is what `verify` hashes), and a hint of the last entry.
//!
//! | `pk`                   | item                                                          |
//! |------------------------|---------------------------------------------------------------|
//! | `AUDIT#{seq:020}`      | `seq`, `prevHash`, `hash`, the record's fields (`at`, `actor`, `action`, `subject`, `uploadId`, `why`, `before`, `after`, `sha256`, `detail`); `gsi1pk` = `AUDIT`, `gsi2pk` = `AUDIT#{subject}`, both sort keys `{seq:020}` |
//! | `AUDIT#HEAD`           | `seq`, `hash` of an entry at or before the last                |
//!
//! Appending reads the hint, reads forward from the entry it names (consistent `GetItem`s)
//! to the last entry, and puts the next one on `attribute_not_exists(pk)`: of concurrent
//! appenders exactly one gets each number, and the others read on and try the next, so the
//! chain never forks. The hint is then raised (never lowered); an appender that died
//! before raising it leaves it behind, which the next one reads past.
//!
//! Listing is a `Query` of the trail's timeline (or one subject's), newest first, with the
//! actor and action as a filter; index reads are eventually consistent, so an entry
//! appended a moment ago may not be listed yet. `verify` reads every entry by its key
//! (`BatchGetItem`, consistent) up to the hint and on until none follows, and checks the
//! chain with the core's [`verify_chain`]; an entry the hint names that is gone is a cut
//! tail.

use std::collections::HashMap;

use airlock_core::ports::Retry;
use airlock_core::review::{
    AuditCheck, AuditEntry, AuditError, AuditFilter, AuditRecord, AuditTrail, GENESIS_HASH,
    verify_chain,
};
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use chrono::{DateTime, Utc};

use crate::dynamo_intents::{
    Item, OWNER_INDEX, TIMELINE_INDEX, is_condition_failure, key_of, n, s,
};
use crate::error::{describe, retry_of};

/// The timeline of every entry.
const AUDIT_TIMELINE: &str = "AUDIT";
/// The item naming the last entry (or one before it).
const HEAD_PK: &str = "AUDIT#HEAD";
/// How often an append reads on and tries the next number after losing a race.
const APPEND_ATTEMPTS: usize = 64;
/// Entries read at once by `verify` (`BatchGetItem` takes 100 keys).
const VERIFY_BATCH: u64 = 100;

/// The audit trail, kept in the intent table.
#[derive(Debug, Clone)]
pub struct DynamoAuditTrail {
    client: Client,
    table: String,
}

fn audit_error<E>(operation: &str, table: &str, err: &SdkError<E, HttpResponse>) -> AuditError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    AuditError {
        message: format!(
            "DynamoDB {operation} on table {table} failed: {}",
            describe(err)
        ),
        retry: retry_of(err),
    }
}

fn entry_pk(seq: u64) -> String {
    format!("AUDIT#{seq:020}")
}

fn seq_sk(seq: u64) -> String {
    format!("{seq:020}")
}

fn at_text(at: DateTime<Utc>) -> String {
    // Every digit the time has: read back, it is the same time, and hashes the same.
    at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

fn entry_item(entry: &AuditEntry) -> Item {
    let record = &entry.record;
    let mut item = key_of(entry_pk(entry.seq));
    item.extend([
        ("kind".to_owned(), s("audit")),
        ("seq".to_owned(), n(entry.seq)),
        ("prevHash".to_owned(), s(&entry.prev_hash)),
        ("hash".to_owned(), s(&entry.hash)),
        ("at".to_owned(), s(at_text(record.at))),
        ("actor".to_owned(), s(&record.actor)),
        ("action".to_owned(), s(record.action.as_str())),
        ("subject".to_owned(), s(&record.subject)),
        ("why".to_owned(), s(&record.why)),
        ("before".to_owned(), s(&record.before)),
        ("after".to_owned(), s(&record.after)),
        ("gsi1pk".to_owned(), s(AUDIT_TIMELINE)),
        ("gsi1sk".to_owned(), s(seq_sk(entry.seq))),
        ("gsi2pk".to_owned(), s(format!("AUDIT#{}", record.subject))),
        ("gsi2sk".to_owned(), s(seq_sk(entry.seq))),
    ]);
    for (name, value) in [
        ("uploadId", &record.upload_id),
        ("sha256", &record.sha256),
        ("detail", &record.detail),
    ] {
        if let Some(value) = value {
            item.insert(name.to_owned(), s(value));
        }
    }
    item
}

/// The entry an item holds, or what is wrong with it.
fn read_entry(item: &Item) -> Result<AuditEntry, String> {
    let opt = |name: &str| -> Result<Option<String>, String> {
        match item.get(name) {
            None => Ok(None),
            Some(AttributeValue::S(text)) => Ok(Some(text.clone())),
            Some(_) => Err(format!("{name} is not a string")),
        }
    };
    let text = |name: &str| opt(name)?.ok_or_else(|| format!("{name} is missing"));
    let seq = item
        .get("seq")
        .and_then(|v| v.as_n().ok())
        .ok_or("seq is not a number")?
        .parse::<u64>()
        .map_err(|e| format!("seq: {e}"))?;
    let at = DateTime::parse_from_rfc3339(&text("at")?)
        .map_err(|e| format!("at: {e}"))?
        .with_timezone(&Utc);
    Ok(AuditEntry {
        seq,
        prev_hash: text("prevHash")?,
        hash: text("hash")?,
        record: AuditRecord {
            at,
            actor: text("actor")?,
            action: text("action")?.parse()?,
            subject: text("subject")?,
            upload_id: opt("uploadId")?,
            why: text("why")?,
            before: text("before")?,
            after: text("after")?,
            sha256: opt("sha256")?,
            detail: opt("detail")?,
        },
    })
}

/// The sequence number a `pk` names.
fn seq_of_pk(pk: &str) -> Option<u64> {
    pk.strip_prefix("AUDIT#")?.parse().ok()
}

impl DynamoAuditTrail {
    /// The trail in `table` (the intent table), using `client`.
    #[must_use]
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    async fn item(&self, pk: String) -> Result<Option<Item>, AuditError> {
        self.client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key_of(pk)))
            .consistent_read(true)
            .send()
            .await
            .map(|out| out.item)
            .map_err(|e| audit_error("GetItem", &self.table, &e))
    }

    /// The number of the last entry as the hint names it (0 for none).
    async fn hint(&self) -> Result<u64, AuditError> {
        let Some(item) = self.item(HEAD_PK.to_owned()).await? else {
            return Ok(0);
        };
        item.get("seq")
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| AuditError {
                message: format!("{HEAD_PK} in table {} has no number seq", self.table),
                retry: Retry::Permanent,
            })
    }

    /// The entry at `seq`, read consistently; an unreadable one is an error naming it.
    async fn entry(&self, seq: u64) -> Result<Option<AuditEntry>, AuditError> {
        self.item(entry_pk(seq))
            .await?
            .map(|item| {
                read_entry(&item).map_err(|problem| AuditError {
                    message: format!(
                        "audit entry {seq} is unreadable ({problem}): run a verify of the trail"
                    ),
                    retry: Retry::Permanent,
                })
            })
            .transpose()
    }

    /// The last entry's number and hash, read forward from the hint.
    async fn last(&self) -> Result<(u64, String), AuditError> {
        let hint = self.hint().await?;
        let (mut seq, mut hash) = if hint == 0 {
            (0, GENESIS_HASH.to_owned())
        } else {
            let entry = self.entry(hint).await?.ok_or_else(|| AuditError {
                message: format!(
                    "audit entry {hint}, the last one appended, is missing: the trail was cut (run a verify)"
                ),
                retry: Retry::Permanent,
            })?;
            (entry.seq, entry.hash)
        };
        while let Some(entry) = self.entry(seq + 1).await? {
            seq = entry.seq;
            hash = entry.hash;
        }
        Ok((seq, hash))
    }

    /// Raises the hint to `entry` (a later entry's appender may have raised it further).
    async fn raise_hint(&self, entry: &AuditEntry) -> Result<(), AuditError> {
        match self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key_of(HEAD_PK.to_owned())))
            .update_expression("SET #seq = :seq, #hash = :hash, #kind = :kind")
            .condition_expression("attribute_not_exists(#seq) OR #seq < :seq")
            .expression_attribute_names("#seq", "seq")
            .expression_attribute_names("#hash", "hash")
            .expression_attribute_names("#kind", "kind")
            .expression_attribute_values(":seq", n(entry.seq))
            .expression_attribute_values(":hash", s(&entry.hash))
            .expression_attribute_values(":kind", s("audit-head"))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Ok(()),
            Err(e) => Err(audit_error("UpdateItem", &self.table, &e)),
        }
    }

    /// The items at `seqs`, read consistently, by number.
    async fn batch(&self, seqs: std::ops::Range<u64>) -> Result<HashMap<u64, Item>, AuditError> {
        let mut found = HashMap::new();
        let mut pending: Option<Vec<Item>> = Some(seqs.map(|seq| key_of(entry_pk(seq))).collect());
        while let Some(keys) = pending.take().filter(|k| !k.is_empty()) {
            let request = KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .consistent_read(true)
                .build()
                .map_err(|e| AuditError {
                    message: format!("batch read: {e}"),
                    retry: Retry::Permanent,
                })?;
            let out = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await
                .map_err(|e| audit_error("BatchGetItem", &self.table, &e))?;
            for item in out
                .responses()
                .and_then(|r| r.get(&self.table))
                .into_iter()
                .flatten()
            {
                if let Some(seq) = item
                    .get("pk")
                    .and_then(|v| v.as_s().ok())
                    .and_then(|pk| seq_of_pk(pk))
                {
                    found.insert(seq, item.clone());
                }
            }
            // Keys DynamoDB did not get to this time are asked again.
            pending = out
                .unprocessed_keys
                .and_then(|mut u| u.remove(&self.table))
                .map(|k| k.keys);
        }
        Ok(found)
    }
}

/// The verdict on `entries` (read in order) when the entry after them, at `seq`, cannot be
/// taken as it is: a break before it is the first; else it is.
fn broken_at(entries: Vec<AuditEntry>, seq: u64, problem: String) -> AuditCheck {
    let before = verify_chain(entries.into_iter().map(Ok::<_, std::convert::Infallible>))
        .unwrap_or_else(|never| match never {});
    if matches!(before, AuditCheck::Broken { .. }) {
        return before;
    }
    AuditCheck::Broken { seq, problem }
}

#[async_trait]
impl AuditTrail for DynamoAuditTrail {
    async fn append(&self, record: AuditRecord) -> Result<AuditEntry, AuditError> {
        let (mut seq, mut prev) = self.last().await?;
        for _ in 0..APPEND_ATTEMPTS {
            let entry = AuditEntry::chain(seq + 1, &prev, record.clone());
            match self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(entry_item(&entry)))
                .condition_expression("attribute_not_exists(pk)")
                .send()
                .await
            {
                Ok(_) => {
                    self.raise_hint(&entry).await?;
                    return Ok(entry);
                }
                // Another appender took the number: chain after what it wrote.
                Err(e) if is_condition_failure(&e) => {
                    while let Some(next) = self.entry(seq + 1).await? {
                        seq = next.seq;
                        prev = next.hash;
                    }
                }
                Err(e) => return Err(audit_error("PutItem", &self.table, &e)),
            }
        }
        Err(AuditError {
            message: format!(
                "appending to the audit trail in {} lost the race {APPEND_ATTEMPTS} times",
                self.table
            ),
            retry: Retry::Transient,
        })
    }

    async fn list(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, AuditError> {
        if filter.limit == 0 {
            return Ok(Vec::new());
        }
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .scan_index_forward(false);
        query = match &filter.subject {
            Some(subject) => query
                .index_name(OWNER_INDEX)
                .expression_attribute_names("#pk", "gsi2pk")
                .expression_attribute_names("#sk", "gsi2sk")
                .expression_attribute_values(":timeline", s(format!("AUDIT#{subject}"))),
            None => query
                .index_name(TIMELINE_INDEX)
                .expression_attribute_names("#pk", "gsi1pk")
                .expression_attribute_names("#sk", "gsi1sk")
                .expression_attribute_values(":timeline", s(AUDIT_TIMELINE)),
        };
        query = match filter.before_seq {
            Some(before) => query
                .key_condition_expression("#pk = :timeline AND #sk < :before")
                .expression_attribute_values(":before", s(seq_sk(before))),
            // `#sk` must be used when named.
            None => query
                .key_condition_expression("#pk = :timeline AND #sk >= :first")
                .expression_attribute_values(":first", s(seq_sk(0))),
        };
        let mut conditions = Vec::new();
        if let Some(actor) = &filter.actor {
            conditions.push("#actor = :actor");
            query = query
                .expression_attribute_names("#actor", "actor")
                .expression_attribute_values(":actor", s(actor));
        }
        if let Some(action) = filter.action {
            conditions.push("#action = :action");
            query = query
                .expression_attribute_names("#action", "action")
                .expression_attribute_values(":action", s(action.as_str()));
        }
        if !conditions.is_empty() {
            query = query.filter_expression(conditions.join(" AND "));
        }
        let page_size = if conditions.is_empty() {
            filter.limit
        } else {
            filter.limit.max(100)
        };
        let query = query.limit(i32::try_from(page_size.min(1000)).unwrap_or(1000));
        let mut entries = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = query
                .clone()
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| audit_error("Query", &self.table, &e))?;
            for item in page.items() {
                let entry = read_entry(item).map_err(|problem| AuditError {
                    message: format!(
                        "audit item {} is unreadable: {problem}",
                        item.get("pk")
                            .and_then(|v| v.as_s().ok())
                            .map_or("?", |v| v)
                    ),
                    retry: Retry::Permanent,
                })?;
                entries.push(entry);
                if entries.len() >= filter.limit {
                    return Ok(entries);
                }
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(entries),
            }
        }
    }

    async fn verify(&self) -> Result<AuditCheck, AuditError> {
        let hint = self.hint().await?;
        let mut entries: Vec<AuditEntry> = Vec::new();
        let mut first = 1;
        loop {
            let mut found = self.batch(first..first + VERIFY_BATCH).await?;
            if found.is_empty() && first > hint {
                break;
            }
            let mut seqs: Vec<u64> = found.keys().copied().collect();
            seqs.sort_unstable();
            for seq in seqs {
                let item = found.remove(&seq).expect("a found item");
                match read_entry(&item) {
                    // The item's number is the entry's: an entry moved to another item is
                    // as wrong as an edited one.
                    Ok(entry) if entry.seq == seq => entries.push(entry),
                    Ok(entry) => {
                        return Ok(broken_at(
                            entries,
                            seq,
                            format!("item {} holds entry {}", entry_pk(seq), entry.seq),
                        ));
                    }
                    Err(problem) => {
                        return Ok(broken_at(
                            entries,
                            seq,
                            format!("it is unreadable: {problem}"),
                        ));
                    }
                }
            }
            first += VERIFY_BATCH;
        }
        let check = verify_chain(entries.into_iter().map(Ok::<_, std::convert::Infallible>))
            .unwrap_or_else(|never| match never {});
        Ok(match check {
            AuditCheck::Intact { entries, .. } if entries < hint => AuditCheck::Broken {
                seq: hint,
                problem: format!(
                    "entries {} to {hint} are missing: the trail was appended to up to {hint}, and ends at {entries}",
                    entries + 1
                ),
            },
            check => check,
        })
    }
}
