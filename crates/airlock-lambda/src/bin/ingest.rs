//! The `ingest` Lambda function: S3 events from the ingest queue -> pipeline executions.

use airlock_lambda::settings::{Env, IngestSettings, process_env};
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    airlock_lambda::logging::init();
    let settings = IngestSettings::from_env(&Env::new(&process_env))?;
    let sdk = airlock_aws::load_config().await;
    let starter = airlock_lambda::wiring::starter(&settings, &sdk);
    let bucket = settings.bucket;
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let (starter, bucket) = (&starter, &bucket);
        async move {
            let (response, summary) = airlock_lambda::ingest::handle_batch(
                starter,
                bucket,
                event.payload,
                Some(&airlock_lambda::worker::emit_to_stdout),
            )
            .await;
            tracing::info!(
                started = summary.started,
                duplicates = summary.duplicates,
                skipped = summary.skipped,
                failed = summary.failed,
                "batch done"
            );
            Ok::<SqsBatchResponse, lambda_runtime::Error>(response)
        }
    }))
    .await
}
