//! Upload intents, idempotency keys and dead letters in one DynamoDB table.
//!
//! The table has a string partition key `pk` and no sort key; the pipeline reaches every
//! item by its key alone, so each of its reads is a consistent `GetItem`:
//!
//! | `pk`                               | item                                              |
//! |------------------------------------|---------------------------------------------------|
//! | `INTENT#{upload_id}`               | the intent, its audit trail, `ttl`                 |
//! | `IDEM#{tenant}#{idempotency_key}`  | `requestHash`, `intentId`, `createdAt`, `ttl`      |
//! | `DEAD#{bucket}#{stage}#{key}`      | one dead letter (`letter`, JSON) per object and stage |
//! | `CHECKPOINT#{job}`                 | a long job's `position` (`Checkpoints`)            |
//!
//! Quarantine review keeps its items in the same table (`QUAR#...` in
//! [`crate::DynamoQuarantineIndex`], `AUDIT#...` in [`crate::DynamoAuditTrail`]) and
//! reads them through two sparse global secondary indexes: [`TIMELINE_INDEX`] and
//! [`OWNER_INDEX`].
//!
//! Every item has a `kind` (`intent`, `idempotency`, `dead-letter`). Intent attributes
//! are the intent's fields in camelCase (`declaredSize` a number, times RFC 3339 strings,
//! `outcome` the outcome's JSON) plus:
//! - `transitions`: the audit trail, a list of `{from, to, at}` maps appended by the same
//!   conditional `UpdateItem` that changes the state, so a change and its record are one
//!   write. A trail is a few entries (the state graph is short), far from the 400 KB item
//!   limit.
//! - `ttl`: epoch seconds, `expires_at` plus a day, for the table's TTL: an intent
//!   disappears a day after its upload window closed (a pending one that got no object
//!   with it; a rejected one's outcome stays in its event) unless it settled READY or
//!   QUARANTINED: that transition removes `ttl`, since a review needs those intents (a
//!   release promotes through the intent; a trusted rescan walks the READY ones).
//! - `gsi1pk` = `READY`, `gsi1sk` = the id while the intent is READY (set and removed by
//!   the transitions): the READY timeline `TrustedUploads` queries, by id.
//!
//! Idempotency items live a day (`ttl` = creation plus a day); TTL deletes within days of
//! that, so a key is remembered at least a day, as the port asks.
//!
//! Writes: `create` is a `PutItem` on `attribute_not_exists(pk)`. `create_idempotent` is a
//! `TransactWriteItems` of the intent and the idempotency item, both on
//! `attribute_not_exists(pk)`; when it is cancelled the idempotency item is read to answer
//! `Replayed` (same request hash) or `KeyReused`. `transition` reads the intent, checks
//! the change is allowed, and updates on `state = <the state read>`: the audit entry's
//! `from` is then exact, and of concurrent changes exactly one applies (the others find
//! the new state and are refused). Conditional-check failures are answers, never errors;
//! throttling and conflicts are transient errors.

use std::collections::HashMap;

use airlock_core::intent::{IntentOutcome, IntentState, UploadIntent};
use airlock_core::keys::{Purpose, TenantId, UploadId};
use airlock_core::ports::{
    CreateOutcome, DeadLetter, DeadLetterError, DeadLetters, IdempotencyClaim, IntentStore,
    IntentStoreError, Retry, Transition, TransitionResult,
};
use airlock_core::review::{Checkpoints, TrustedFilter, TrustedUploads};
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, Put, ReturnValue, TransactWriteItem};
use chrono::{DateTime, Utc};

use crate::error::{code_of, describe, retry_of};

pub(crate) type Item = HashMap<String, AttributeValue>;

/// How often `transition` re-reads when the state changed between its read and its write.
const TRANSITION_ATTEMPTS: usize = 8;

/// The global secondary index of timelines: `gsi1pk` names one (`READY`, `QUAR`,
/// `AUDIT`), `gsi1sk` orders it (upload id, quarantine time and key, sequence number).
pub const TIMELINE_INDEX: &str = "gsi1";
/// The global secondary index of timelines per owner: `gsi2pk` is `QUAR#{tenant}` or
/// `AUDIT#{subject}`, `gsi2sk` as in [`TIMELINE_INDEX`].
pub const OWNER_INDEX: &str = "gsi2";
/// The timeline of READY intents.
const READY_TIMELINE: &str = "READY";

/// A dead letter as stored, with the id operators use to remove it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDeadLetter {
    /// The item's key (`DEAD#...`).
    pub id: String,
    pub letter: DeadLetter,
}

/// One recorded state change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransitionRecord {
    pub from: IntentState,
    pub to: IntentState,
    pub at: DateTime<Utc>,
}

/// Upload intents (and dead letters) in one DynamoDB table; see the module doc for the
/// items.
#[derive(Debug, Clone)]
pub struct DynamoIntentStore {
    client: Client,
    table: String,
}

pub(crate) fn store_error<E>(
    operation: &str,
    table: &str,
    err: &SdkError<E, HttpResponse>,
) -> IntentStoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    IntentStoreError {
        message: format!(
            "DynamoDB {operation} on table {table} failed: {}",
            describe(err)
        ),
        retry: retry_of(err),
    }
}

pub(crate) fn corrupt(pk: &str, what: impl std::fmt::Display) -> IntentStoreError {
    IntentStoreError {
        message: format!("item {pk} is not readable: {what}"),
        retry: Retry::Permanent,
    }
}

pub(crate) fn is_condition_failure<E: ProvideErrorMetadata>(
    err: &SdkError<E, HttpResponse>,
) -> bool {
    code_of(err) == Some("ConditionalCheckFailedException")
}

fn intent_pk(id: UploadId) -> String {
    format!("INTENT#{id}")
}

fn idempotency_pk(tenant: &str, key: &str) -> String {
    format!("IDEM#{tenant}#{key}")
}

/// Bucket names and stage names hold no `#`, so the key, last, may hold anything.
fn dead_letter_pk(letter: &DeadLetter) -> String {
    format!(
        "DEAD#{}#{}#{}",
        letter.object.bucket,
        letter.stage.as_str(),
        letter.object.key
    )
}

pub(crate) fn time_text(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

pub(crate) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(crate) fn n(value: impl std::fmt::Display) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// Epoch seconds a day after `at`, for DynamoDB TTL.
fn ttl_after_a_day(at: DateTime<Utc>) -> AttributeValue {
    n((at + chrono::Duration::days(1)).timestamp())
}

pub(crate) fn key_of(pk: String) -> Item {
    HashMap::from([("pk".to_owned(), s(pk))])
}

fn intent_item(intent: &UploadIntent) -> Result<Item, IntentStoreError> {
    let mut item = key_of(intent_pk(intent.id));
    let mut put = |name: &str, value: AttributeValue| {
        item.insert(name.to_owned(), value);
    };
    put("kind", s("intent"));
    put("id", s(intent.id.to_string()));
    put("tenant", s(intent.tenant.as_str()));
    put("purpose", s(intent.purpose.as_str()));
    put("declaredType", s(&intent.declared_type));
    put("declaredSize", n(intent.declared_size));
    for (name, value) in [
        ("sha256", &intent.sha256),
        ("filename", &intent.filename),
        ("uploader", &intent.uploader),
        ("multipartUploadId", &intent.multipart_upload_id),
    ] {
        if let Some(value) = value {
            put(name, s(value));
        }
    }
    put("state", s(intent.state.as_str()));
    put("createdAt", s(time_text(intent.created_at)));
    put("updatedAt", s(time_text(intent.updated_at)));
    put("expiresAt", s(time_text(intent.expires_at)));
    if let Some(outcome) = &intent.outcome {
        let json = serde_json::to_string(outcome).map_err(|e| IntentStoreError {
            message: format!("intent {}: outcome not serializable: {e}", intent.id),
            retry: Retry::Permanent,
        })?;
        put("outcome", s(json));
    }
    put("ttl", ttl_after_a_day(intent.expires_at));
    put("transitions", AttributeValue::L(Vec::new()));
    Ok(item)
}

/// Reads attributes of one item, naming the item in every error.
pub(crate) struct Fields<'a> {
    pub(crate) pk: &'a str,
    item: &'a Item,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(item: &'a Item) -> Self {
        let pk = item
            .get("pk")
            .and_then(|v| v.as_s().ok())
            .map_or("?", String::as_str);
        Self { pk, item }
    }

    pub(crate) fn opt(&self, name: &str) -> Result<Option<&'a str>, IntentStoreError> {
        match self.item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::S(text)) => Ok(Some(text)),
            Some(_) => Err(corrupt(self.pk, format!("{name} is not a string"))),
        }
    }

    pub(crate) fn text(&self, name: &str) -> Result<&'a str, IntentStoreError> {
        self.opt(name)?
            .ok_or_else(|| corrupt(self.pk, format!("{name} is missing")))
    }

    pub(crate) fn number(&self, name: &str) -> Result<u64, IntentStoreError> {
        self.item
            .get(name)
            .and_then(|v| v.as_n().ok())
            .ok_or_else(|| corrupt(self.pk, format!("{name} is not a number")))?
            .parse()
            .map_err(|e| corrupt(self.pk, format!("{name}: {e}")))
    }

    pub(crate) fn time(&self, name: &str) -> Result<DateTime<Utc>, IntentStoreError> {
        parse_time(self.pk, name, self.text(name)?)
    }

    pub(crate) fn parsed<T: std::str::FromStr>(&self, name: &str) -> Result<T, IntentStoreError>
    where
        T::Err: std::fmt::Display,
    {
        self.text(name)?
            .parse()
            .map_err(|e| corrupt(self.pk, format!("{name}: {e}")))
    }
}

fn parse_time(pk: &str, name: &str, text: &str) -> Result<DateTime<Utc>, IntentStoreError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| corrupt(pk, format!("{name}: {e}")))
}

pub(crate) fn read_intent(item: &Item) -> Result<UploadIntent, IntentStoreError> {
    let f = Fields::new(item);
    let outcome: Option<IntentOutcome> = f
        .opt("outcome")?
        .map(|json| serde_json::from_str(json).map_err(|e| corrupt(f.pk, format!("outcome: {e}"))))
        .transpose()?;
    Ok(UploadIntent {
        id: f.parsed("id")?,
        tenant: TenantId::new(f.text("tenant")?)
            .map_err(|e| corrupt(f.pk, format!("tenant: {e}")))?,
        purpose: Purpose::new(f.text("purpose")?)
            .map_err(|e| corrupt(f.pk, format!("purpose: {e}")))?,
        declared_type: f.text("declaredType")?.to_owned(),
        declared_size: f.number("declaredSize")?,
        sha256: f.opt("sha256")?.map(str::to_owned),
        filename: f.opt("filename")?.map(str::to_owned),
        uploader: f.opt("uploader")?.map(str::to_owned),
        state: f.parsed("state")?,
        created_at: f.time("createdAt")?,
        updated_at: f.time("updatedAt")?,
        expires_at: f.time("expiresAt")?,
        outcome,
        multipart_upload_id: f.opt("multipartUploadId")?.map(str::to_owned),
    })
}

fn read_transitions(item: &Item) -> Result<Vec<TransitionRecord>, IntentStoreError> {
    let f = Fields::new(item);
    let Some(list) = item.get("transitions") else {
        return Ok(Vec::new());
    };
    let list = list
        .as_l()
        .map_err(|_| corrupt(f.pk, "transitions is not a list"))?;
    list.iter()
        .map(|entry| {
            let entry = entry
                .as_m()
                .map_err(|_| corrupt(f.pk, "a transition is not a map"))?;
            let g = Fields {
                pk: f.pk,
                item: entry,
            };
            Ok(TransitionRecord {
                from: g.parsed("from")?,
                to: g.parsed("to")?,
                at: g.time("at")?,
            })
        })
        .collect()
}

fn dead_letter_error(e: IntentStoreError) -> DeadLetterError {
    DeadLetterError {
        message: e.message,
        retry: e.retry,
    }
}

impl DynamoIntentStore {
    /// The store in `table`, using `client` (built once by the caller).
    #[must_use]
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    #[must_use]
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The client it uses.
    #[must_use]
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Creates the table as the deployment template declares it (partition key `pk`,
    /// the two global secondary indexes [`TIMELINE_INDEX`] and [`OWNER_INDEX`], on-demand
    /// capacity, TTL on `ttl`) and waits until it is active: for tests and development
    /// stacks.
    pub async fn create_table(&self) -> Result<(), IntentStoreError> {
        use aws_sdk_dynamodb::types::{
            AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
            Projection, ProjectionType, ScalarAttributeType, TableStatus, TimeToLiveSpecification,
        };
        let invalid = |e: aws_sdk_dynamodb::error::BuildError| IntentStoreError {
            message: format!("table definition: {e}"),
            retry: Retry::Permanent,
        };
        let key = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .map_err(invalid)
        };
        let mut request = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(key("pk", KeyType::Hash)?);
        for name in ["pk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk"] {
            request = request.attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(name)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(invalid)?,
            );
        }
        for (index, partition, sort) in [
            (TIMELINE_INDEX, "gsi1pk", "gsi1sk"),
            (OWNER_INDEX, "gsi2pk", "gsi2sk"),
        ] {
            request = request.global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(index)
                    .key_schema(key(partition, KeyType::Hash)?)
                    .key_schema(key(sort, KeyType::Range)?)
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::All)
                            .build(),
                    )
                    .build()
                    .map_err(invalid)?,
            );
        }
        request
            .send()
            .await
            .map_err(|e| store_error("CreateTable", &self.table, &e))?;
        loop {
            let described = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
                .map_err(|e| store_error("DescribeTable", &self.table, &e))?;
            if described.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        self.client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name("ttl")
                    .build()
                    .map_err(invalid)?,
            )
            .send()
            .await
            .map_err(|e| store_error("UpdateTimeToLive", &self.table, &e))?;
        Ok(())
    }

    /// A consistent read of the item at `pk`.
    pub(crate) async fn item(&self, pk: String) -> Result<Option<Item>, IntentStoreError> {
        self.client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key_of(pk)))
            .consistent_read(true)
            .send()
            .await
            .map(|out| out.item)
            .map_err(|e| store_error("GetItem", &self.table, &e))
    }

    /// The recorded state changes of an intent, oldest first (none for an unknown intent).
    pub async fn transitions(
        &self,
        id: UploadId,
    ) -> Result<Vec<TransitionRecord>, IntentStoreError> {
        match self.item(intent_pk(id)).await? {
            Some(item) => read_transitions(&item),
            None => Ok(Vec::new()),
        }
    }

    /// Every dead letter, oldest first. A filtered `Scan` of the whole table: an operator's
    /// tool, not a request path.
    pub async fn dead_letters(&self) -> Result<Vec<StoredDeadLetter>, IntentStoreError> {
        let mut letters = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("#kind = :dead")
                .expression_attribute_names("#kind", "kind")
                .expression_attribute_values(":dead", s("dead-letter"))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| store_error("Scan", &self.table, &e))?;
            for item in page.items() {
                let f = Fields::new(item);
                let letter = serde_json::from_str(f.text("letter")?)
                    .map_err(|e| corrupt(f.pk, format!("letter: {e}")))?;
                letters.push(StoredDeadLetter {
                    id: f.pk.to_owned(),
                    letter,
                });
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        letters.sort_by_key(|l| l.letter.at);
        Ok(letters)
    }

    /// Removes a dead letter (once its object is settled); returns whether it existed.
    pub async fn remove_dead_letter(&self, id: &str) -> Result<bool, IntentStoreError> {
        if !id.starts_with("DEAD#") {
            return Ok(false);
        }
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key_of(id.to_owned())))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map(|out| out.attributes.is_some_and(|a| !a.is_empty()))
            .map_err(|e| store_error("DeleteItem", &self.table, &e))
    }

    /// What a cancelled idempotent create means, read from the idempotency item.
    async fn claimed_before(
        &self,
        intent: &UploadIntent,
        claim: &IdempotencyClaim,
    ) -> Result<CreateOutcome, IntentStoreError> {
        let pk = idempotency_pk(intent.tenant.as_str(), &claim.key);
        let Some(earlier) = self.item(pk.clone()).await? else {
            // The key is free, so the intent's own condition failed (or the transaction
            // conflicted with another and either may now pass).
            return if self.item(intent_pk(intent.id)).await?.is_some() {
                Err(IntentStoreError {
                    message: format!("intent {} exists already", intent.id),
                    retry: Retry::Permanent,
                })
            } else {
                Err(IntentStoreError {
                    message: format!(
                        "idempotent create of intent {} was cancelled by a concurrent write",
                        intent.id
                    ),
                    retry: Retry::Transient,
                })
            };
        };
        let f = Fields::new(&earlier);
        if f.text("requestHash")? != claim.request_hash {
            return Ok(CreateOutcome::KeyReused);
        }
        let made: UploadId = f.parsed("intentId")?;
        match self.get(made).await? {
            Some(intent) => Ok(CreateOutcome::Replayed(Box::new(intent))),
            None => Err(IntentStoreError {
                message: format!("idempotency key {pk} names missing intent {made}"),
                retry: Retry::Permanent,
            }),
        }
    }
}

#[async_trait]
impl IntentStore for DynamoIntentStore {
    async fn create(&self, intent: &UploadIntent) -> Result<bool, IntentStoreError> {
        match self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(intent_item(intent)?))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(store_error("PutItem", &self.table, &e)),
        }
    }

    async fn create_idempotent(
        &self,
        intent: &UploadIntent,
        claim: &IdempotencyClaim,
    ) -> Result<CreateOutcome, IntentStoreError> {
        let mut claim_item = key_of(idempotency_pk(intent.tenant.as_str(), &claim.key));
        claim_item.extend([
            ("kind".to_owned(), s("idempotency")),
            ("tenant".to_owned(), s(intent.tenant.as_str())),
            ("idempotencyKey".to_owned(), s(&claim.key)),
            ("requestHash".to_owned(), s(&claim.request_hash)),
            ("intentId".to_owned(), s(intent.id.to_string())),
            ("createdAt".to_owned(), s(time_text(intent.created_at))),
            ("ttl".to_owned(), ttl_after_a_day(intent.created_at)),
        ]);
        let put = |item: Item| -> Result<TransactWriteItem, IntentStoreError> {
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(|e| IntentStoreError {
                    message: format!("transaction item: {e}"),
                    retry: Retry::Permanent,
                })?;
            Ok(TransactWriteItem::builder().put(put).build())
        };
        match self
            .client
            .transact_write_items()
            .transact_items(put(intent_item(intent)?)?)
            .transact_items(put(claim_item)?)
            .send()
            .await
        {
            Ok(_) => Ok(CreateOutcome::Created),
            Err(e) if code_of(&e) == Some("TransactionCanceledException") => {
                self.claimed_before(intent, claim).await
            }
            Err(e) => Err(store_error("TransactWriteItems", &self.table, &e)),
        }
    }

    async fn get(&self, id: UploadId) -> Result<Option<UploadIntent>, IntentStoreError> {
        self.item(intent_pk(id))
            .await?
            .as_ref()
            .map(read_intent)
            .transpose()
    }

    async fn transition(
        &self,
        id: UploadId,
        transition: Transition,
    ) -> Result<TransitionResult, IntentStoreError> {
        let outcome = transition
            .outcome
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| IntentStoreError {
                message: format!("intent {id}: outcome not serializable: {e}"),
                retry: Retry::Permanent,
            })?;
        for _ in 0..TRANSITION_ATTEMPTS {
            let Some(current) = self.get(id).await? else {
                return Ok(TransitionResult::NotFound);
            };
            // Only legal changes from an expected state; anything else is refused unchanged.
            if !transition.is_legal_from(current.state) {
                return Ok(TransitionResult::Refused {
                    current: current.state,
                });
            }
            let at = time_text(transition.at);
            let entry = AttributeValue::M(HashMap::from([
                ("from".to_owned(), s(current.state.as_str())),
                ("to".to_owned(), s(transition.to.as_str())),
                ("at".to_owned(), s(&at)),
            ]));
            let mut update = String::from(
                "SET #state = :to, #updatedAt = :at, \
                 #transitions = list_append(if_not_exists(#transitions, :empty), :entry)",
            );
            let mut request = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key_of(intent_pk(id))))
                .condition_expression("attribute_exists(pk) AND #state = :current")
                .expression_attribute_names("#state", "state")
                .expression_attribute_names("#updatedAt", "updatedAt")
                .expression_attribute_names("#transitions", "transitions")
                .expression_attribute_values(":to", s(transition.to.as_str()))
                .expression_attribute_values(":at", s(at))
                .expression_attribute_values(":current", s(current.state.as_str()))
                .expression_attribute_values(":empty", AttributeValue::L(Vec::new()))
                .expression_attribute_values(":entry", AttributeValue::L(vec![entry]))
                .return_values(ReturnValue::AllNew);
            if let Some(outcome) = &outcome {
                update.push_str(", #outcome = :outcome");
                request = request
                    .expression_attribute_names("#outcome", "outcome")
                    .expression_attribute_values(":outcome", s(outcome));
            }
            // A READY intent is on the timeline index (by id, for trusted rescans); no other
            // is. Settled READY or QUARANTINED, it is kept: a review needs it.
            request = request
                .expression_attribute_names("#g1pk", "gsi1pk")
                .expression_attribute_names("#g1sk", "gsi1sk");
            match transition.to {
                IntentState::Ready => {
                    update.push_str(", #g1pk = :ready, #g1sk = :id REMOVE #ttl");
                    request = request
                        .expression_attribute_names("#ttl", "ttl")
                        .expression_attribute_values(":ready", s(READY_TIMELINE))
                        .expression_attribute_values(":id", s(id.to_string()));
                }
                IntentState::Quarantined => {
                    update.push_str(" REMOVE #g1pk, #g1sk, #ttl");
                    request = request.expression_attribute_names("#ttl", "ttl");
                }
                _ => update.push_str(" REMOVE #g1pk, #g1sk"),
            }
            match request.update_expression(update).send().await {
                Ok(out) => {
                    let item = out.attributes.unwrap_or_default();
                    return Ok(TransitionResult::Applied(Box::new(read_intent(&item)?)));
                }
                // The state changed since it was read: read it again.
                Err(e) if is_condition_failure(&e) => {}
                Err(e) => return Err(store_error("UpdateItem", &self.table, &e)),
            }
        }
        Err(IntentStoreError {
            message: format!(
                "intent {id} kept changing: {TRANSITION_ATTEMPTS} attempts to make it {} lost the race",
                transition.to
            ),
            retry: Retry::Transient,
        })
    }
}

#[async_trait]
impl DeadLetters for DynamoIntentStore {
    async fn record(&self, letter: &DeadLetter) -> Result<(), DeadLetterError> {
        let json = serde_json::to_string(letter).map_err(|e| DeadLetterError {
            message: format!("dead letter not serializable: {e}"),
            retry: Retry::Permanent,
        })?;
        let mut item = key_of(dead_letter_pk(letter));
        item.extend([
            ("kind".to_owned(), s("dead-letter")),
            ("bucket".to_owned(), s(&letter.object.bucket)),
            ("objectKey".to_owned(), s(&letter.object.key)),
            ("stage".to_owned(), s(letter.stage.as_str())),
            ("at".to_owned(), s(time_text(letter.at))),
            ("letter".to_owned(), s(json)),
        ]);
        // A later failure of the same object and stage replaces the entry.
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map(drop)
            .map_err(|e| dead_letter_error(store_error("PutItem", &self.table, &e)))
    }
}

fn checkpoint_pk(job: &str) -> String {
    format!("CHECKPOINT#{job}")
}

#[async_trait]
impl TrustedUploads for DynamoIntentStore {
    /// A `Query` of the READY timeline by upload id, after `after`; tenant, purpose and
    /// `since` filter what it reads. Index reads are eventually consistent: an intent
    /// settled a moment ago may be missed, one changed a moment ago may still be listed
    /// (a rescan's revocation changes it only from READY).
    async fn trusted(
        &self,
        filter: &TrustedFilter,
        after: Option<UploadId>,
        limit: usize,
    ) -> Result<Vec<UploadIntent>, IntentStoreError> {
        let mut intents = Vec::new();
        let mut start: Option<Item> = None;
        let mut conditions = Vec::new();
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(TIMELINE_INDEX)
            .expression_attribute_names("#pk", "gsi1pk")
            .expression_attribute_values(":ready", s(READY_TIMELINE))
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":readyState", s(IntentState::Ready.as_str()));
        let mut key = "#pk = :ready".to_owned();
        if let Some(after) = after {
            key.push_str(" AND #sk > :after");
            query = query
                .expression_attribute_names("#sk", "gsi1sk")
                .expression_attribute_values(":after", s(after.to_string()));
        }
        conditions.push("#state = :readyState");
        for (name, value, condition) in [
            ("tenant", filter.tenant.as_deref(), "#tenant = :tenant"),
            ("purpose", filter.purpose.as_deref(), "#purpose = :purpose"),
        ] {
            if let Some(value) = value {
                conditions.push(condition);
                query = query
                    .expression_attribute_names(format!("#{name}"), name)
                    .expression_attribute_values(format!(":{name}"), s(value));
            }
        }
        if let Some(since) = filter.since {
            conditions.push("#updatedAt >= :since");
            query = query
                .expression_attribute_names("#updatedAt", "updatedAt")
                .expression_attribute_values(":since", s(time_text(since)));
        }
        let query = query
            .key_condition_expression(key)
            .filter_expression(conditions.join(" AND "));
        while intents.len() < limit {
            let page = query
                .clone()
                .limit(
                    i32::try_from(limit - intents.len())
                        .unwrap_or(i32::MAX)
                        .max(1),
                )
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| store_error("Query", &self.table, &e))?;
            for item in page.items() {
                intents.push(read_intent(item)?);
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        intents.truncate(limit);
        Ok(intents)
    }
}

#[async_trait]
impl Checkpoints for DynamoIntentStore {
    async fn load(&self, job: &str) -> Result<Option<String>, IntentStoreError> {
        self.item(checkpoint_pk(job))
            .await?
            .map(|item| Fields::new(&item).text("position").map(str::to_owned))
            .transpose()
    }

    async fn save(&self, job: &str, position: &str) -> Result<(), IntentStoreError> {
        let mut item = key_of(checkpoint_pk(job));
        item.extend([
            ("kind".to_owned(), s("checkpoint")),
            ("job".to_owned(), s(job)),
            ("position".to_owned(), s(position)),
            ("at".to_owned(), s(time_text(Utc::now()))),
        ]);
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map(drop)
            .map_err(|e| store_error("PutItem", &self.table, &e))
    }

    async fn clear(&self, job: &str) -> Result<(), IntentStoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key_of(checkpoint_pk(job))))
            .send()
            .await
            .map(drop)
            .map_err(|e| store_error("DeleteItem", &self.table, &e))
    }
}
