//! The `sign` Lambda function: the upload API behind API Gateway's JWT authorizer.

use std::convert::Infallible;
use std::sync::Arc;

use airlock_api::Problem;
use airlock_lambda::settings::{Env, SignSettings, process_env};
use airlock_lambda::wiring::SigningApi;
use lambda_http::{Body, Request, Response, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    airlock_lambda::logging::init();
    let settings = SignSettings::from_env(&Env::new(&process_env))?;
    let sdk = airlock_aws::load_config().await;
    let signing = Arc::new(SigningApi::new(settings, sdk).await?);
    lambda_http::run(service_fn(move |request: Request| {
        let signing = Arc::clone(&signing);
        async move { Ok::<Response<Body>, Infallible>(answer(&signing, request).await) }
    }))
    .await
}

async fn answer(signing: &SigningApi, request: Request) -> Response<Body> {
    match signing.api().await {
        Ok(api) => airlock_lambda::sign::handle(&api, signing.tenant_claim(), request).await,
        Err(err) => {
            tracing::error!(error = %airlock_core::stages::error_chain(&err), "cannot sign");
            airlock_lambda::sign::lambda_response(
                Problem::unavailable("the signing credentials could not be renewed")
                    .into_response(),
            )
        }
    }
}
