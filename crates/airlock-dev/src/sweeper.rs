//! Intent expiry on one machine (DynamoDB's TTL does it on AWS): `PENDING` intents whose
//! time ran out with no object become `EXPIRED`; an object that still arrives for one is
//! quarantined by the pipeline as `intent-expired`.

use airlock_core::intent::IntentState;
use airlock_core::ports::{Clock, IntentStore as _, ObjectReader, Transition, TransitionResult};
use airlock_local::SqliteIntentStore;
use chrono::Duration;

/// Idempotency keys are remembered this long.
pub const IDEMPOTENCY_WINDOW: Duration = Duration::hours(24);

const BATCH: usize = 500;

/// What one sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    /// Intents that became `EXPIRED`.
    pub expired: usize,
    /// Overdue intents left alone because their object is there (the pipeline judges it).
    pub arrived: usize,
    pub idempotency_keys_forgotten: usize,
}

/// Expires every overdue `PENDING` intent that has no object, and forgets old idempotency
/// keys.
pub async fn sweep(
    intents: &SqliteIntentStore,
    store: &dyn ObjectReader,
    clock: &dyn Clock,
) -> anyhow::Result<Swept> {
    let now = clock.now();
    let mut swept = Swept::default();
    let mut seen = std::collections::HashSet::new();
    loop {
        let overdue = intents.pending_overdue(now, BATCH).await?;
        let fresh: Vec<_> = overdue
            .into_iter()
            .filter(|intent| seen.insert(intent.id))
            .collect();
        if fresh.is_empty() {
            break;
        }
        for intent in fresh {
            // An object that arrived is the pipeline's to judge (it may have arrived in
            // time and not been inspected yet).
            if store.head(&intent.key().incoming()).await?.is_some() {
                swept.arrived += 1;
                continue;
            }
            let transition = Transition {
                from: vec![IntentState::Pending],
                to: IntentState::Expired,
                at: now,
                outcome: None,
                review: false,
            };
            if let TransitionResult::Applied(_) = intents.transition(intent.id, transition).await? {
                swept.expired += 1;
            }
        }
    }
    swept.idempotency_keys_forgotten = intents
        .forget_idempotency_keys(now - IDEMPOTENCY_WINDOW)
        .await?;
    Ok(swept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_core::intent::UploadIntent;
    use airlock_core::keys::{Purpose, TenantId, UploadId};
    use airlock_core::ports::{IntentStore, ObjectWriter as _, WriteMode};
    use airlock_local::FsStore;
    use chrono::{DateTime, TimeZone as _, Utc};

    struct At(DateTime<Utc>);
    impl Clock for At {
        fn now(&self) -> DateTime<Utc> {
            self.0
        }
    }

    fn intent(expires_at: DateTime<Utc>) -> UploadIntent {
        UploadIntent {
            id: UploadId::generate(),
            tenant: TenantId::new("acme").unwrap(),
            purpose: Purpose::new("avatar").unwrap(),
            declared_type: "image/png".into(),
            declared_size: 3,
            sha256: None,
            filename: None,
            uploader: None,
            state: IntentState::Pending,
            created_at: expires_at - Duration::minutes(15),
            updated_at: expires_at - Duration::minutes(15),
            expires_at,
            outcome: None,
            multipart_upload_id: None,
        }
    }

    #[tokio::test]
    async fn overdue_intents_without_an_object_expire_and_others_stay() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path()).unwrap();
        let intents = SqliteIntentStore::in_memory().unwrap();
        let now = Utc.with_ymd_and_hms(2026, 12, 2, 12, 0, 0).unwrap();
        let overdue = intent(now - Duration::minutes(1));
        let arrived = intent(now - Duration::minutes(2));
        let current = intent(now + Duration::minutes(1));
        for made in [&overdue, &arrived, &current] {
            intents.create(made).await.unwrap();
        }
        store
            .put(
                &arrived.key().incoming(),
                b"abc".to_vec(),
                "image/png",
                WriteMode::CreateOnly,
            )
            .await
            .unwrap();

        let swept = sweep(&intents, &store, &At(now)).await.unwrap();
        assert_eq!(swept.expired, 1);
        assert_eq!(swept.arrived, 1);
        let state = |id| {
            let intents = &intents;
            async move { intents.get(id).await.unwrap().unwrap().state }
        };
        assert_eq!(state(overdue.id).await, IntentState::Expired);
        assert_eq!(state(arrived.id).await, IntentState::Pending);
        assert_eq!(state(current.id).await, IntentState::Pending);

        // Running it again changes nothing.
        let again = sweep(&intents, &store, &At(now)).await.unwrap();
        assert_eq!(again.expired, 0);
    }
}
