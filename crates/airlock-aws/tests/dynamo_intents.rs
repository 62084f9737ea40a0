//! `DynamoIntentStore` against the emulator: create-if-absent, conditional audited
//! transitions, idempotent creates, dead letters.

mod common;

use airlock_aws::{DynamoIntentStore, TransitionRecord};
use airlock_core::intent::{IntentOutcome, IntentState, UploadIntent};
use airlock_core::keys::{Purpose, TenantId, UploadId};
use airlock_core::object::ObjectRef;
use airlock_core::ports::{
    CreateOutcome, DeadLetter, DeadLetters, IdempotencyClaim, IntentStore, Transition,
    TransitionResult,
};
use airlock_core::stages::Stage;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{Duration, DurationRound, Utc};
use common::Moto;

const TABLE: &str = "airlock-intents";

async fn store(moto: &Moto) -> DynamoIntentStore {
    let store = DynamoIntentStore::new(moto.dynamodb(), TABLE);
    store.create_table().await.unwrap();
    store
}

fn intent() -> UploadIntent {
    // Microseconds: what the store keeps.
    let now = Utc::now()
        .duration_trunc(Duration::microseconds(1))
        .unwrap();
    UploadIntent {
        id: UploadId::generate(),
        tenant: TenantId::new("acme").unwrap(),
        purpose: Purpose::new("avatar").unwrap(),
        declared_type: "image/png".into(),
        declared_size: 42,
        sha256: Some("ab".repeat(32)),
        filename: Some("me.png".into()),
        uploader: Some("user-1".into()),
        state: IntentState::Pending,
        created_at: now,
        updated_at: now,
        expires_at: now + Duration::minutes(15),
        outcome: None,
        multipart_upload_id: Some("mpu-1".into()),
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

/// The raw item at `pk`, as the table holds it.
async fn raw(moto: &Moto, pk: &str) -> Option<std::collections::HashMap<String, AttributeValue>> {
    moto.raw_item(TABLE, pk).await
}

#[tokio::test]
async fn create_is_insert_if_absent_and_reads_back_every_field() {
    let moto = Moto::start().await;
    let store = store(&moto).await;
    let intent = intent();
    assert!(store.create(&intent).await.unwrap());
    let mut changed = intent.clone();
    changed.declared_size = 7;
    assert!(!store.create(&changed).await.unwrap());
    assert_eq!(store.get(intent.id).await.unwrap().unwrap(), intent);
    assert!(store.get(UploadId::generate()).await.unwrap().is_none());

    // Optional fields absent stay absent.
    let mut bare = self::intent();
    bare.sha256 = None;
    bare.filename = None;
    bare.uploader = None;
    bare.multipart_upload_id = None;
    store.create(&bare).await.unwrap();
    assert_eq!(store.get(bare.id).await.unwrap().unwrap(), bare);

    // The TTL attribute: a day after the upload window closes, in epoch seconds.
    let item = raw(&moto, &format!("INTENT#{}", intent.id)).await.unwrap();
    let ttl: i64 = item["ttl"].as_n().unwrap().parse().unwrap();
    assert_eq!(ttl, (intent.expires_at + Duration::days(1)).timestamp());
    assert_eq!(item["kind"].as_s().unwrap(), "intent");
}

#[tokio::test]
async fn transitions_are_conditional_and_audited() {
    use IntentState::{Pending, Processing, Quarantined, Ready};
    let moto = Moto::start().await;
    let store = store(&moto).await;
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
    let ready_at = ready.at;
    let TransitionResult::Applied(applied) = store.transition(intent.id, ready).await.unwrap()
    else {
        panic!("READY was refused");
    };
    let stored = store.get(intent.id).await.unwrap().unwrap();
    assert_eq!(&stored, applied.as_ref());
    assert_eq!(stored.state, Ready);
    assert_eq!(
        stored.updated_at,
        ready_at.duration_trunc(Duration::microseconds(1)).unwrap()
    );
    let outcome = stored.outcome.unwrap();
    assert_eq!(outcome.key, "trusted/x");
    assert_eq!(outcome.media, Some(serde_json::json!({"variants": []})));
    // Everything else is as created.
    assert_eq!(stored.declared_size, intent.declared_size);
    assert_eq!(stored.created_at, intent.created_at);
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
        .map(|TransitionRecord { from, to, .. }| (from, to))
        .collect();
    assert_eq!(trail, vec![(Pending, Processing), (Processing, Ready)]);
}

#[tokio::test]
async fn concurrent_changes_apply_once() {
    let moto = Moto::start_serial().await;
    let store = store(&moto).await;
    let intent = intent();
    store.create(&intent).await.unwrap();
    let mut tasks = Vec::new();
    for target in [
        IntentState::Processing,
        IntentState::Uploaded,
        IntentState::Expired,
    ]
    .into_iter()
    .cycle()
    .take(9)
    {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .transition(intent.id, to(target, &[IntentState::Pending]))
                .await
                .unwrap()
        }));
    }
    let mut applied = Vec::new();
    for task in tasks {
        if let TransitionResult::Applied(i) = task.await.unwrap() {
            applied.push(i.state);
        }
    }
    assert_eq!(applied.len(), 1, "{applied:?}");
    let trail = store.transitions(intent.id).await.unwrap();
    assert_eq!(trail.len(), 1);
    assert_eq!(trail[0].from, IntentState::Pending);
    assert_eq!(trail[0].to, applied[0]);
    assert_eq!(
        store.get(intent.id).await.unwrap().unwrap().state,
        applied[0]
    );
}

fn claim(key: &str, hash: &str) -> IdempotencyClaim {
    IdempotencyClaim {
        key: key.into(),
        request_hash: hash.into(),
    }
}

#[tokio::test]
async fn an_idempotency_key_returns_the_first_intent_and_refuses_another_request() {
    let moto = Moto::start().await;
    let store = store(&moto).await;
    let first = intent();
    assert_eq!(
        store
            .create_idempotent(&first, &claim("k1", "h1"))
            .await
            .unwrap(),
        CreateOutcome::Created
    );
    let stored = store.get(first.id).await.unwrap().unwrap();
    assert_eq!(stored, first);

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
    assert!(raw(&moto, &format!("INTENT#{}", retry.id)).await.is_none());

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
    let item = raw(&moto, "IDEM#globex#k1").await.unwrap();
    assert_eq!(item["intentId"].as_s().unwrap(), &other.id.to_string());
    let ttl: i64 = item["ttl"].as_n().unwrap().parse().unwrap();
    assert_eq!(ttl, (other.created_at + Duration::days(1)).timestamp());

    // A new key for an intent id that exists: nothing is claimed.
    let err = store
        .create_idempotent(&first, &claim("k2", "h1"))
        .await
        .unwrap_err();
    assert!(err.message.contains("exists already"), "{}", err.message);
    assert!(raw(&moto, "IDEM#acme#k2").await.is_none());
}

fn letter(key: &str, stage: Stage, cause: &str, minutes_ago: i64) -> DeadLetter {
    DeadLetter {
        object: ObjectRef::new("uploads", key),
        stage,
        error: "Airlock.Permanent".into(),
        cause: cause.into(),
        at: Utc::now() - Duration::minutes(minutes_ago),
    }
}

#[tokio::test]
async fn dead_letters_keep_one_entry_per_object_and_stage() {
    let moto = Moto::start().await;
    let store = store(&moto).await;
    // Intents in the same table are not dead letters.
    store.create(&intent()).await.unwrap();
    let key = "incoming/acme/avatar/0193a7d2-5b1c-7e4f-8a9b-0c1d2e3f4a5b";
    store
        .record(&letter(key, Stage::Promote, "first failure", 10))
        .await
        .unwrap();
    let latest = letter(key, Stage::Promote, "second failure", 5);
    store.record(&latest).await.unwrap();
    let other = letter(
        "incoming/acme/avatar/#odd key",
        Stage::Quarantine,
        "disk",
        20,
    );
    store.record(&other).await.unwrap();

    let listed = store.dead_letters().await.unwrap();
    let letters: Vec<_> = listed.iter().map(|l| l.letter.clone()).collect();
    assert_eq!(letters, vec![other.clone(), latest.clone()]);

    assert!(store.remove_dead_letter(&listed[1].id).await.unwrap());
    assert!(!store.remove_dead_letter(&listed[1].id).await.unwrap());
    let rest: Vec<_> = store
        .dead_letters()
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.letter)
        .collect();
    assert_eq!(rest, vec![other]);
}

#[tokio::test]
async fn concurrent_retries_of_one_request_create_one_intent() {
    let moto = Moto::start_serial().await;
    let store = store(&moto).await;
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let store = store.clone();
        let mut attempt = intent();
        attempt.id = UploadId::generate();
        tasks.push(tokio::spawn(async move {
            let outcome = store
                .create_idempotent(&attempt, &claim("retry-key", "same-request"))
                .await
                .unwrap();
            (attempt.id, outcome)
        }));
    }
    let mut created = Vec::new();
    let mut replayed = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            (id, CreateOutcome::Created) => created.push(id),
            (id, CreateOutcome::Replayed(first)) => replayed.push((id, first.id)),
            (id, CreateOutcome::KeyReused) => panic!("{id}: the same request was refused"),
        }
    }
    assert_eq!(created.len(), 1, "{created:?}");
    assert_eq!(replayed.len(), 5);
    for (id, first) in replayed {
        assert_eq!(first, created[0]);
        assert!(store.get(id).await.unwrap().is_none());
    }
}
