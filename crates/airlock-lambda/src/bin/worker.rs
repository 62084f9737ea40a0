//! The `worker` Lambda function: task messages for the inspect, media, promote and
//! quarantine stages -> stage runs -> answers to Step Functions.

use airlock_lambda::settings::{Env, WorkerSettings, process_env};
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    airlock_lambda::logging::init();
    let settings = WorkerSettings::from_env(&Env::new(&process_env))?;
    let sdk = airlock_aws::load_config().await;
    let (worker, answers) = airlock_lambda::wiring::worker(&settings, &sdk);
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let (worker, answers) = (&worker, &answers);
        async move {
            let (response, summary) = airlock_lambda::worker::handle_batch(
                worker,
                answers,
                event.payload,
                Some(&airlock_lambda::worker::emit_to_stdout),
            )
            .await;
            tracing::info!(
                answered = summary.answered,
                stale = summary.stale,
                failed = summary.failed,
                "batch done"
            );
            Ok::<SqsBatchResponse, lambda_runtime::Error>(response)
        }
    }))
    .await
}
