//! The quarantine as a queryable set on AWS: one item per quarantined object in the intent
//! table, indexed from the JSON records S3 holds beside the objects.
//!
//! The records stay the source of truth. [`DynamoQuarantineIndex::index_record`] indexes
//! one (what a function on the bucket's `ObjectCreated` events of `quarantine/*.json` calls)
//! and [`DynamoQuarantineIndex::rebuild`] indexes every record a listing of `quarantine/`
//! finds that the table does not hold yet. An indexed item keeps its status: the review
//! actions set it, and a record indexed late takes the status the bucket shows (a tombstone
//! beside it: purged; no object and no tombstone: released).
//!
//! | attribute                  | value                                                     |
//! |----------------------------|-----------------------------------------------------------|
//! | `pk`                       | `QUAR#{quarantine key}`                                   |
//! | `kind`                     | `quarantine`                                              |
//! | `record`                   | the record's JSON, as read                                |
//! | `recordKey`, `status`, `statusAt` | where the record is; the review status and its time |
//! | `tenant`, `purpose`, `reason`, `signature`, `uploader`, `quarantinedAt` | for filters |
//! | `gsi1pk`, `gsi1sk`         | `QUAR`, `{quarantinedAt}#{key}`: every item, newest first  |
//! | `gsi2pk`, `gsi2sk`         | `QUAR#{tenant}`, as `gsi1sk`: one tenant's items           |
//!
//! A listing is a `Query` of one of those timelines, newest first (`ScanIndexForward`
//! false): the tenant's when the filter names one, else all. The time range is the key
//! condition on the sort key (times are fixed-width RFC 3339, so text order is time
//! order); the other filters are a `FilterExpression`. The page cursor is the sort key of
//! the page's last item. Counts read the same query, projected to the counted attributes.
//! Index reads are eventually consistent; `get` is a consistent read of the item.

use std::collections::HashMap;

use airlock_core::keys::{QUARANTINE_PREFIX, UploadId};
use airlock_core::ports::{IntentStoreError, ObjectReader, Retry, StoreError};
use airlock_core::review::{
    Count, PageRequest, QuarantineCounts, QuarantineError, QuarantineFilter, QuarantineIndex,
    QuarantineItem, QuarantinePage, QuarantineStatus, StateChange, Tombstone, tombstone_key,
};
use airlock_core::stages::QuarantineRecord;
use async_trait::async_trait;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use chrono::{DateTime, Utc};
use futures_util::StreamExt as _;

use crate::dynamo_intents::{
    Fields, Item, OWNER_INDEX, TIMELINE_INDEX, is_condition_failure, key_of, s, time_text,
};
use crate::error::{describe, retry_of};
use crate::{DynamoIntentStore, S3Store};

/// The timeline of every quarantined item.
const QUARANTINE_TIMELINE: &str = "QUAR";
/// Records are a few hundred bytes; larger `.json` objects are not records.
const MAX_RECORD_BYTES: u64 = 1 << 20;
/// Records read and indexed at once by [`DynamoQuarantineIndex::rebuild`].
const REBUILD_CONCURRENCY: usize = 16;

/// The quarantine of one bucket, indexed in the intent table.
#[derive(Debug, Clone)]
pub struct DynamoQuarantineIndex {
    intents: DynamoIntentStore,
    store: S3Store,
}

/// What indexing one object of `quarantine/` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Indexed {
    /// A record, now in the index with this status.
    Added(QuarantineStatus),
    /// A record that was in the index already (its status unchanged).
    Known,
    /// Not a record (a quarantined object, a tombstone, a `.json` that does not name
    /// itself as a record), or gone since it was announced.
    NotARecord,
}

/// What [`DynamoQuarantineIndex::rebuild`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RebuildReport {
    /// Records listed under `quarantine/`.
    pub records: u64,
    /// Of those, indexed now.
    pub added: u64,
}

fn index_error<E>(operation: &str, table: &str, err: &SdkError<E, HttpResponse>) -> QuarantineError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    QuarantineError::new(
        format!(
            "DynamoDB {operation} on table {table} failed: {}",
            describe(err)
        ),
        retry_of(err),
    )
}

fn from_intents(err: IntentStoreError) -> QuarantineError {
    QuarantineError::new(err.message, err.retry)
}

fn from_store(err: StoreError) -> QuarantineError {
    QuarantineError {
        message: err.to_string(),
        retry: err.retry(),
        source: Some(Box::new(err)),
    }
}

fn quarantine_pk(quarantine_key: &str) -> String {
    format!("QUAR#{quarantine_key}")
}

/// The sort key of an item on its timelines.
fn timeline_sk(record: &QuarantineRecord) -> String {
    format!(
        "{}#{}",
        time_text(record.quarantined_at),
        record.quarantine_key
    )
}

/// Records are written as `{key}.json`; tombstones beside them are not records.
#[allow(clippy::case_sensitive_file_extension_comparisons)]
fn is_record_key(key: &str) -> bool {
    key.starts_with(QUARANTINE_PREFIX)
        && key.ends_with(".json")
        && !key.ends_with(".tombstone.json")
}

fn quarantine_item(
    record_key: &str,
    record: &QuarantineRecord,
    status: QuarantineStatus,
    status_at: Option<DateTime<Utc>>,
) -> Result<Item, QuarantineError> {
    let json = serde_json::to_string(record).map_err(|e| {
        QuarantineError::new(
            format!("record {record_key} is not serializable: {e}"),
            Retry::Permanent,
        )
    })?;
    let sk = timeline_sk(record);
    let mut item = key_of(quarantine_pk(&record.quarantine_key));
    item.extend([
        ("kind".to_owned(), s("quarantine")),
        ("recordKey".to_owned(), s(record_key)),
        ("record".to_owned(), s(json)),
        ("reason".to_owned(), s(record.reason.code())),
        (
            "quarantinedAt".to_owned(),
            s(time_text(record.quarantined_at)),
        ),
        ("status".to_owned(), s(status.as_str())),
        ("gsi1pk".to_owned(), s(QUARANTINE_TIMELINE)),
        ("gsi1sk".to_owned(), s(sk.clone())),
    ]);
    for (name, value) in [
        ("tenant", &record.tenant),
        ("purpose", &record.purpose),
        ("signature", &record.signature),
        ("uploader", &record.uploader),
    ] {
        if let Some(value) = value {
            item.insert(name.to_owned(), s(value));
        }
    }
    if let Some(tenant) = &record.tenant {
        item.insert("gsi2pk".to_owned(), s(format!("QUAR#{tenant}")));
        item.insert("gsi2sk".to_owned(), s(sk));
    }
    if let Some(at) = status_at {
        item.insert("statusAt".to_owned(), s(time_text(at)));
    }
    Ok(item)
}

fn read_item(item: &Item) -> Result<QuarantineItem, QuarantineError> {
    let f = Fields::new(item);
    let unreadable = |what: String| {
        QuarantineError::new(
            format!("quarantine item {} is not readable: {what}", f.pk),
            Retry::Permanent,
        )
    };
    let record: QuarantineRecord = serde_json::from_str(f.text("record").map_err(from_intents)?)
        .map_err(|e| unreadable(format!("record: {e}")))?;
    let status = f
        .text("status")
        .map_err(from_intents)?
        .parse::<QuarantineStatus>()
        .map_err(unreadable)?;
    let status_at = match f.opt("statusAt").map_err(from_intents)? {
        Some(_) => Some(f.time("statusAt").map_err(from_intents)?),
        None => None,
    };
    Ok(QuarantineItem {
        record_key: f.text("recordKey").map_err(from_intents)?.to_owned(),
        record,
        status,
        status_at,
    })
}

fn counted(map: HashMap<String, u64>) -> Vec<Count> {
    let mut counts: Vec<Count> = map
        .into_iter()
        .map(|(value, count)| Count { value, count })
        .collect();
    counts.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
    counts
}

/// A query of the timeline `filter` selects, its time range and other filters, newest
/// first; `before` (exclusive) is a page cursor. `None` when the range is empty.
fn timeline_query(
    base: QueryFluentBuilder,
    filter: &QuarantineFilter,
    before: Option<&str>,
) -> Option<QueryFluentBuilder> {
    let mut query = base.scan_index_forward(false);
    let (partition, sort, timeline) = match &filter.tenant {
        Some(tenant) => ("gsi2pk", "gsi2sk", format!("QUAR#{tenant}")),
        None => ("gsi1pk", "gsi1sk", QUARANTINE_TIMELINE.to_owned()),
    };
    query = query
        .index_name(if filter.tenant.is_some() {
            OWNER_INDEX
        } else {
            TIMELINE_INDEX
        })
        .expression_attribute_names("#pk", partition)
        .expression_attribute_values(":timeline", s(timeline));
    // Sort keys are `{time}#{key}`: `{since}` sorts before every key at or after it, and
    // `{until}` after every key before it. Both bounds are exclusive at the top.
    let lower = filter.since.map(time_text);
    let upper = match (filter.until.map(time_text), before) {
        (Some(until), Some(before)) => Some(until.min(before.to_owned())),
        (until, before) => until.or(before.map(str::to_owned)),
    };
    let key = match (lower, upper) {
        (None, None) => "#pk = :timeline".to_owned(),
        (Some(lower), None) => {
            query = query.expression_attribute_values(":lower", s(lower));
            "#pk = :timeline AND #sk >= :lower".to_owned()
        }
        (None, Some(upper)) => {
            query = query.expression_attribute_values(":upper", s(upper));
            "#pk = :timeline AND #sk < :upper".to_owned()
        }
        (Some(lower), Some(upper)) => {
            if lower >= upper {
                return None;
            }
            // BETWEEN includes its top; the one key equal to it (a cursor's) is dropped
            // by the caller.
            query = query
                .expression_attribute_values(":lower", s(lower))
                .expression_attribute_values(":upper", s(upper));
            "#pk = :timeline AND #sk BETWEEN :lower AND :upper".to_owned()
        }
    };
    if key.contains("#sk") {
        query = query.expression_attribute_names("#sk", sort);
    }
    query = query.key_condition_expression(key);
    let mut conditions = Vec::new();
    for (name, value) in [
        ("purpose", &filter.purpose),
        ("signature", &filter.signature),
        ("uploader", &filter.uploader),
        ("status", &filter.status.map(|s| s.as_str().to_owned())),
    ] {
        if let Some(value) = value {
            conditions.push(format!("#{name} = :{name}"));
            query = query
                .expression_attribute_names(format!("#{name}"), name)
                .expression_attribute_values(format!(":{name}"), s(value));
        }
    }
    if !filter.reasons.is_empty() {
        let mut any = Vec::new();
        for (i, reason) in filter.reasons.iter().enumerate() {
            any.push(format!(":reason{i}"));
            query = query.expression_attribute_values(format!(":reason{i}"), s(reason.code()));
        }
        conditions.push(format!("#reason IN ({})", any.join(", ")));
        query = query.expression_attribute_names("#reason", "reason");
    }
    if !conditions.is_empty() {
        query = query.filter_expression(conditions.join(" AND "));
    }
    Some(query)
}

/// The items' sort key on the timeline a query reads.
fn sort_key_of(item: &Item) -> Option<&str> {
    item.get("gsi1sk")
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

impl DynamoQuarantineIndex {
    /// The index in `intents`' table of the quarantine of `store`'s bucket.
    #[must_use]
    pub fn new(intents: DynamoIntentStore, store: S3Store) -> Self {
        Self { intents, store }
    }

    fn table(&self) -> &str {
        self.intents.table()
    }

    /// Indexes the object at `key` if it is a quarantine record (else
    /// [`Indexed::NotARecord`]): reads it, and the status the bucket shows for it, and adds
    /// its item unless there is one (whose status a review may have set).
    pub async fn index_record(&self, key: &str) -> Result<Indexed, QuarantineError> {
        if !is_record_key(key) {
            return Ok(Indexed::NotARecord);
        }
        let bytes = match self
            .store
            .read_range(key, None, 0, MAX_RECORD_BYTES + 1)
            .await
        {
            Ok(bytes) => bytes,
            Err(StoreError::NotFound { .. }) => return Ok(Indexed::NotARecord),
            Err(e) => return Err(from_store(e)),
        };
        if bytes.len() as u64 > MAX_RECORD_BYTES {
            return Ok(Indexed::NotARecord);
        }
        let Ok(record) = serde_json::from_slice::<QuarantineRecord>(&bytes) else {
            return Ok(Indexed::NotARecord);
        };
        if format!("{}.json", record.quarantine_key) != key {
            return Ok(Indexed::NotARecord);
        }
        let (status, status_at) = self.status_in_bucket(&record.quarantine_key).await?;
        if self.index(key, &record, status, status_at).await? {
            Ok(Indexed::Added(status))
        } else {
            Ok(Indexed::Known)
        }
    }

    /// What the bucket shows of a quarantined object: purged if a tombstone is beside it,
    /// released if the object is gone without one.
    async fn status_in_bucket(
        &self,
        quarantine_key: &str,
    ) -> Result<(QuarantineStatus, Option<DateTime<Utc>>), QuarantineError> {
        let tombstone = tombstone_key(quarantine_key);
        match self.store.read_range(&tombstone, None, 0, 1 << 16).await {
            Ok(bytes) => {
                if let Ok(tombstone) = serde_json::from_slice::<Tombstone>(&bytes) {
                    return Ok((QuarantineStatus::Purged, Some(tombstone.purged_at)));
                }
            }
            Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(from_store(e)),
        }
        match self.store.head(quarantine_key).await.map_err(from_store)? {
            Some(_) => Ok((QuarantineStatus::Quarantined, None)),
            None => Ok((QuarantineStatus::Released, None)),
        }
    }

    /// Adds the item of `record` (read from `record_key`) with `status`, unless the index
    /// holds it already; returns whether it was added.
    pub async fn index(
        &self,
        record_key: &str,
        record: &QuarantineRecord,
        status: QuarantineStatus,
        status_at: Option<DateTime<Utc>>,
    ) -> Result<bool, QuarantineError> {
        let item = quarantine_item(record_key, record, status, status_at)?;
        match self
            .intents
            .client()
            .put_item()
            .table_name(self.table())
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(index_error("PutItem", self.table(), &e)),
        }
    }

    /// Indexes every record under `quarantine/` the table does not hold yet: lists the
    /// prefix, asks the table which of each listed page it holds (`BatchGetItem`), and
    /// reads and indexes only the others, [`REBUILD_CONCURRENCY`] at a time.
    pub async fn rebuild(&self) -> Result<RebuildReport, QuarantineError> {
        let mut report = RebuildReport::default();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .store
                .client()
                .list_objects_v2()
                .bucket(self.store.bucket())
                .prefix(QUARANTINE_PREFIX)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| {
                    QuarantineError::new(
                        format!(
                            "S3 ListObjectsV2 of {}/{QUARANTINE_PREFIX} failed: {}",
                            self.store.bucket(),
                            describe(&e)
                        ),
                        retry_of(&e),
                    )
                })?;
            let records: Vec<String> = page
                .contents()
                .iter()
                .filter_map(|object| object.key())
                .filter(|key| is_record_key(key))
                .map(str::to_owned)
                .collect();
            report.records += records.len() as u64;
            let known = self.known(&records).await?;
            let new: Vec<String> = records
                .into_iter()
                .filter(|key| {
                    let quarantine_key = key.trim_end_matches(".json");
                    !known.contains(&quarantine_pk(quarantine_key))
                })
                .collect();
            let mut indexing = futures_util::stream::iter(new)
                .map(|key| async move { self.index_record(&key).await })
                .buffer_unordered(REBUILD_CONCURRENCY);
            while let Some(indexed) = indexing.next().await {
                if matches!(indexed?, Indexed::Added(_)) {
                    report.added += 1;
                }
            }
            match page.next_continuation_token {
                Some(next) if page.is_truncated == Some(true) => token = Some(next),
                _ => return Ok(report),
            }
        }
    }

    /// Which of the items of `record_keys` the table holds (their `pk`s).
    async fn known(
        &self,
        record_keys: &[String],
    ) -> Result<std::collections::HashSet<String>, QuarantineError> {
        let mut known = std::collections::HashSet::new();
        for chunk in record_keys.chunks(100) {
            let mut keys: Vec<Item> = chunk
                .iter()
                .map(|key| key_of(quarantine_pk(key.trim_end_matches(".json"))))
                .collect();
            keys.dedup();
            let mut pending = Some(keys);
            while let Some(keys) = pending.take().filter(|k| !k.is_empty()) {
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(keys))
                    .projection_expression("pk")
                    .build()
                    .map_err(|e| {
                        QuarantineError::new(format!("batch read: {e}"), Retry::Permanent)
                    })?;
                let out = self
                    .intents
                    .client()
                    .batch_get_item()
                    .request_items(self.table(), request)
                    .send()
                    .await
                    .map_err(|e| index_error("BatchGetItem", self.table(), &e))?;
                for item in out
                    .responses()
                    .and_then(|r| r.get(self.table()))
                    .into_iter()
                    .flatten()
                {
                    if let Some(AttributeValue::S(pk)) = item.get("pk") {
                        known.insert(pk.clone());
                    }
                }
                // Keys DynamoDB did not get to this time are asked again.
                pending = out
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(self.table()))
                    .map(|k| k.keys);
            }
        }
        Ok(known)
    }

    /// Runs `query` page by page, calling `each` with every item, until it returns false.
    async fn each_item(
        &self,
        query: QueryFluentBuilder,
        page_size: Option<i32>,
        mut each: impl FnMut(&Item) -> Result<bool, QuarantineError>,
    ) -> Result<(), QuarantineError> {
        let mut start: Option<Item> = None;
        loop {
            let page = query
                .clone()
                .set_limit(page_size)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| index_error("Query", self.table(), &e))?;
            for item in page.items() {
                if !each(item)? {
                    return Ok(());
                }
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(()),
            }
        }
    }
}

#[async_trait]
impl QuarantineIndex for DynamoQuarantineIndex {
    async fn list(
        &self,
        filter: &QuarantineFilter,
        page: &PageRequest,
    ) -> Result<QuarantinePage, QuarantineError> {
        if let Some(after) = &page.after {
            let valid = after.split_once('#').is_some_and(|(at, key)| {
                DateTime::parse_from_rfc3339(at).is_ok() && !key.is_empty()
            });
            if !valid {
                return Err(QuarantineError::new(
                    format!("not a page cursor: {after:?}"),
                    Retry::Permanent,
                ));
            }
        }
        let limit = page.limit.max(1);
        let base = self.intents.client().query().table_name(self.table());
        let Some(query) = timeline_query(base, filter, page.after.as_deref()) else {
            return Ok(QuarantinePage {
                items: Vec::new(),
                next: None,
            });
        };
        // A filter drops items after DynamoDB counted them against the page's limit: read
        // more than the page then.
        let filtered = filter.purpose.is_some()
            || filter.signature.is_some()
            || filter.uploader.is_some()
            || filter.status.is_some()
            || !filter.reasons.is_empty();
        let wanted = limit + 1;
        let page_size = if filtered { wanted.max(100) } else { wanted };
        let mut items = Vec::new();
        self.each_item(
            query,
            Some(i32::try_from(page_size.min(1000)).unwrap_or(1000)),
            |item| {
                if page
                    .after
                    .as_deref()
                    .is_some_and(|after| sort_key_of(item) == Some(after))
                {
                    return Ok(true);
                }
                items.push(read_item(item)?);
                Ok(items.len() < wanted)
            },
        )
        .await?;
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|item| timeline_sk(&item.record))
        } else {
            None
        };
        Ok(QuarantinePage { items, next })
    }

    async fn counts(&self, filter: &QuarantineFilter) -> Result<QuarantineCounts, QuarantineError> {
        let base = self.intents.client().query().table_name(self.table());
        let Some(query) = timeline_query(base, filter, None) else {
            return Ok(QuarantineCounts::default());
        };
        let query = query
            .projection_expression("#cReason, #cSignature, #cTenant, #cStatus")
            .expression_attribute_names("#cReason", "reason")
            .expression_attribute_names("#cSignature", "signature")
            .expression_attribute_names("#cTenant", "tenant")
            .expression_attribute_names("#cStatus", "status");
        let mut total = 0;
        let mut maps: [HashMap<String, u64>; 4] = Default::default();
        self.each_item(query, None, |item| {
            total += 1;
            for (map, name) in maps
                .iter_mut()
                .zip(["reason", "signature", "tenant", "status"])
            {
                let value = item
                    .get(name)
                    .and_then(|v| v.as_s().ok())
                    .map_or("-", String::as_str);
                *map.entry(value.to_owned()).or_insert(0) += 1;
            }
            Ok(true)
        })
        .await?;
        let [reasons, signatures, tenants, statuses] = maps;
        Ok(QuarantineCounts {
            total,
            by_reason: counted(reasons),
            by_signature: counted(signatures),
            by_tenant: counted(tenants),
            by_status: counted(statuses),
        })
    }

    async fn get(&self, quarantine_key: &str) -> Result<Option<QuarantineItem>, QuarantineError> {
        self.intents
            .item(quarantine_pk(quarantine_key))
            .await
            .map_err(from_intents)?
            .as_ref()
            .map(read_item)
            .transpose()
    }

    async fn set_status(
        &self,
        quarantine_key: &str,
        status: QuarantineStatus,
        at: DateTime<Utc>,
    ) -> Result<(), QuarantineError> {
        match self
            .intents
            .client()
            .update_item()
            .table_name(self.table())
            .set_key(Some(key_of(quarantine_pk(quarantine_key))))
            .condition_expression("attribute_exists(pk)")
            .update_expression("SET #status = :status, #statusAt = :at")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#statusAt", "statusAt")
            .expression_attribute_values(":status", s(status.as_str()))
            .expression_attribute_values(":at", s(time_text(at)))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Err(QuarantineError::new(
                format!("{quarantine_key} is not in the quarantine index"),
                Retry::Permanent,
            )),
            Err(e) => Err(index_error("UpdateItem", self.table(), &e)),
        }
    }

    async fn history(&self, upload_id: UploadId) -> Result<Vec<StateChange>, QuarantineError> {
        Ok(self
            .intents
            .transitions(upload_id)
            .await
            .map_err(from_intents)?
            .into_iter()
            .map(|t| StateChange {
                from: t.from,
                to: t.to,
                at: t.at,
            })
            .collect())
    }
}
