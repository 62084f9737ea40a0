//! Builds each function's parts from its settings and the AWS configuration, once per cold
//! start. The tests build the same parts against the AWS emulator.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use airlock_api::{Api, ApiConfig, SignedHttpMultipart};
use airlock_aws::{
    DynamoIntentStore, EventBridgeSink, S3Store, SdkConfig, StepFunctionsAnswers,
    StepFunctionsStarter,
};
use airlock_core::ports::{Clock, IntentStore, ScanError, ScanReport, Scanner, SystemClock};
use airlock_core::worker::{HEARTBEAT_EVERY, Worker};
use airlock_presign::{Addressing, PresignConfig, Presigner};
use async_trait::async_trait;
use tokio::sync::{RwLock, Semaphore};

use crate::settings::{IngestSettings, SignSettings, WorkerSettings};

/// Something a function could not be built from.
#[derive(Debug, thiserror::Error)]
pub enum WiringError {
    #[error(transparent)]
    Credentials(#[from] airlock_aws::CredentialsError),
    #[error("the AWS configuration has no region (set AWS_REGION)")]
    NoRegion,
    #[error("cannot build the presigner")]
    Presigner(#[source] airlock_presign::PresignError),
    #[error("cannot build the HTTP client (system root certificates)")]
    Http(#[source] std::io::Error),
    #[error(transparent)]
    Api(#[from] airlock_api::ConfigError),
}

/// An S3 client that reaches an emulator or S3-compatible endpoint path-style, AWS as usual.
#[must_use]
pub fn s3_client(sdk: &SdkConfig) -> aws_sdk_s3::Client {
    let path_style = sdk.endpoint_url().is_some();
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(path_style)
            .build(),
    )
}

/// Credentials this close to their expiry are replaced before signing: a URL signed with
/// them must stay usable for its whole validity.
const CREDENTIALS_MARGIN: Duration = Duration::from_mins(15);

/// The upload API with presigning credentials kept fresh: temporary credentials are
/// fetched again from the provider chain before they expire, and the API rebuilt with them.
pub struct SigningApi {
    settings: SignSettings,
    sdk: SdkConfig,
    intents: Arc<dyn IntentStore>,
    current: RwLock<(Arc<Api>, Option<SystemTime>)>,
}

impl std::fmt::Debug for SigningApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningApi")
            .field("bucket", &self.settings.bucket)
            .finish_non_exhaustive()
    }
}

impl SigningApi {
    pub async fn new(settings: SignSettings, sdk: SdkConfig) -> Result<Self, WiringError> {
        let intents: Arc<dyn IntentStore> = Arc::new(DynamoIntentStore::new(
            aws_sdk_dynamodb::Client::new(&sdk),
            &settings.table,
        ));
        let (api, expiry) = build_api(&settings, &sdk, &intents).await?;
        Ok(Self {
            settings,
            sdk,
            intents,
            current: RwLock::new((Arc::new(api), expiry)),
        })
    }

    /// The API, rebuilt first if its credentials are about to expire.
    pub async fn api(&self) -> Result<Arc<Api>, WiringError> {
        let fresh = |expiry: &Option<SystemTime>| {
            expiry.is_none_or(|at| SystemTime::now() + CREDENTIALS_MARGIN < at)
        };
        {
            let current = self.current.read().await;
            if fresh(&current.1) {
                return Ok(Arc::clone(&current.0));
            }
        }
        let mut current = self.current.write().await;
        if !fresh(&current.1) {
            let (api, expiry) = build_api(&self.settings, &self.sdk, &self.intents).await?;
            *current = (Arc::new(api), expiry);
        }
        Ok(Arc::clone(&current.0))
    }

    #[must_use]
    pub fn tenant_claim(&self) -> &str {
        &self.settings.tenant_claim
    }
}

async fn build_api(
    settings: &SignSettings,
    sdk: &SdkConfig,
    intents: &Arc<dyn IntentStore>,
) -> Result<(Api, Option<SystemTime>), WiringError> {
    let region = sdk.region().ok_or(WiringError::NoRegion)?.to_string();
    let credentials = airlock_aws::current_credentials(sdk).await?;
    let mut signing = airlock_presign::Credentials::new(
        credentials.access_key_id(),
        credentials.secret_access_key(),
    );
    if let Some(token) = credentials.session_token() {
        signing = signing.with_session_token(token);
    }
    let presign = match &settings.s3_endpoint {
        Some(endpoint) => {
            PresignConfig::new(endpoint.trim_end_matches('/'), &region, Addressing::Path)
        }
        None => PresignConfig::new(
            format!("https://s3.{region}.amazonaws.com"),
            &region,
            Addressing::VirtualHosted,
        ),
    };
    let presigner = Arc::new(Presigner::new(presign, signing).map_err(WiringError::Presigner)?);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let multipart = Arc::new(
        SignedHttpMultipart::new(Arc::clone(&presigner), &settings.bucket, Arc::clone(&clock))
            .map_err(WiringError::Http)?,
    );
    let mut config = ApiConfig::new(&settings.bucket);
    config.upload_url_validity = settings.upload_url_validity;
    config.download_url_validity = settings.download_url_validity;
    let api = Api::new(
        config,
        Arc::new(settings.policies.clone()),
        Arc::clone(intents),
        presigner,
        multipart,
        clock,
    )?;
    Ok((api, credentials.expiry()))
}

/// The ingest function's execution starter.
#[must_use]
pub fn starter(settings: &IngestSettings, sdk: &SdkConfig) -> StepFunctionsStarter {
    StepFunctionsStarter::new(aws_sdk_sfn::Client::new(sdk), &settings.state_machine_arn)
}

/// The worker function's stages and its task answers.
#[must_use]
pub fn worker(settings: &WorkerSettings, sdk: &SdkConfig) -> (Worker, StepFunctionsAnswers) {
    let intents = Arc::new(DynamoIntentStore::new(
        aws_sdk_dynamodb::Client::new(sdk),
        &settings.table,
    ));
    let worker = Worker {
        store: Arc::new(S3Store::new(s3_client(sdk), &settings.bucket)),
        intents: intents.clone(),
        scanner: Arc::new(ScansElsewhere),
        events: Arc::new(EventBridgeSink::new(
            aws_sdk_eventbridge::Client::new(sdk),
            &settings.event_bus,
        )),
        dead_letters: intents,
        clock: Arc::new(SystemClock),
        policies: Arc::new(settings.policies.clone()),
        media: Arc::new(airlock_media::ImageProcessor),
        media_permits: Arc::new(Semaphore::new(settings.media_concurrency)),
        bucket: settings.bucket.clone(),
        heartbeat_every: HEARTBEAT_EVERY,
        // Scans run in the scan workers, which hold the definitions to their age.
        freshness: airlock_core::definitions::FreshnessRule::default(),
    };
    (
        worker,
        StepFunctionsAnswers::new(aws_sdk_sfn::Client::new(sdk)),
    )
}

/// The worker function runs no scans: they go to the scan workers next to clamd, on their
/// own queue. A scan task that reached this function anyway (a miswired queue) fails as a
/// protocol error, so the state machine quarantines rather than waits.
struct ScansElsewhere;

#[async_trait]
impl Scanner for ScansElsewhere {
    async fn scan(
        &self,
        _stream: airlock_core::ports::ByteStream,
    ) -> Result<ScanReport, ScanError> {
        Err(ScanError::Protocol(
            "this worker does not scan: scan tasks belong on the scan queue".to_owned(),
        ))
    }
}
