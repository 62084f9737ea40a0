//! airlock's AWS adapters: the core ports over S3 ([`S3Store`]), DynamoDB
//! ([`DynamoIntentStore`], which also keeps the dead letters, the trusted uploads a rescan
//! walks and its checkpoints; [`DynamoQuarantineIndex`] and [`DynamoAuditTrail`] for
//! quarantine review, in the same table), Step Functions ([`StepFunctionsAnswers`],
//! [`StepFunctionsStarter`]) and EventBridge ([`EventBridgeSink`]).
//!
//! Each adapter takes an SDK client the caller built once (a Lambda builds its clients at
//! cold start and keeps them across invocations). [`load_config`] loads the usual AWS
//! configuration (environment, profile, container or instance credentials) with
//! [`https_client`], the SDK's hyper client with rustls.

mod audit;
mod dynamo_intents;
mod error;
mod eventbridge_sink;
mod quarantine_index;
mod s3_store;
mod sfn_answers;
mod sfn_start;

pub use audit::DynamoAuditTrail;
pub use dynamo_intents::{
    DynamoIntentStore, OWNER_INDEX, StoredDeadLetter, TIMELINE_INDEX, TransitionRecord,
};
pub use eventbridge_sink::{DEFAULT_SOURCE, EventBridgeSink};
pub use quarantine_index::{DynamoQuarantineIndex, Indexed, RebuildReport};
pub use s3_store::S3Store;
pub use sfn_answers::StepFunctionsAnswers;
pub use sfn_start::StepFunctionsStarter;

pub use aws_config::SdkConfig;

/// The HTTP client every AWS client should use: the SDK's hyper client with rustls over
/// ring (the SDK's default TLS provider, aws-lc, is a long C build). It speaks plain HTTP
/// too, for emulators on a local endpoint.
#[must_use]
pub fn https_client() -> aws_sdk_s3::config::SharedHttpClient {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// The AWS configuration from the environment (region, credentials chain), using
/// [`https_client`].
pub async fn load_config() -> SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(https_client())
        .load()
        .await
}

/// The credentials `config`'s provider chain gives now, for signing outside the SDK (the
/// presigner). Temporary credentials carry their expiry: sign with fresh ones before then.
pub async fn current_credentials(
    config: &SdkConfig,
) -> Result<aws_sdk_s3::config::Credentials, CredentialsError> {
    use aws_sdk_s3::config::ProvideCredentials as _;
    let provider = config.credentials_provider().ok_or_else(|| {
        CredentialsError("the AWS configuration has no credentials provider".into())
    })?;
    provider
        .provide_credentials()
        .await
        .map_err(|e| CredentialsError(aws_sdk_s3::error::DisplayErrorContext(e).to_string()))
}

/// No credentials could be had.
#[derive(Debug, thiserror::Error)]
#[error("no AWS credentials: {0}")]
pub struct CredentialsError(String);
