//! The `sign` entry point driven by API Gateway HTTP API (payload 2.0) events, the shapes
//! `lambda_http` takes, over a real SQLite intent store and the real presigner.

use std::sync::Arc;

use airlock_api::{Api, ApiConfig, SignedHttpMultipart};
use airlock_core::intent::IntentState;
use airlock_core::keys::UploadId;
use airlock_core::policy::Policies;
use airlock_core::ports::{Clock, IntentStore as _, SystemClock};
use airlock_local::SqliteIntentStore;
use airlock_presign::{Addressing, Credentials, PresignConfig, Presigner};
use lambda_http::Body;
use serde_json::Value;

fn api(intents: Arc<SqliteIntentStore>) -> Api {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let presigner = Arc::new(
        Presigner::new(
            PresignConfig::new(
                "https://s3.eu-west-1.amazonaws.com",
                "eu-west-1",
                Addressing::VirtualHosted,
            ),
            Credentials::new("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
                .with_session_token("session-token"),
        )
        .unwrap(),
    );
    // Only multipart uploads call the store; none of these requests is one.
    let multipart = Arc::new(
        SignedHttpMultipart::new(Arc::clone(&presigner), "uploads-bucket", Arc::clone(&clock))
            .unwrap(),
    );
    Api::new(
        ApiConfig::new("uploads-bucket"),
        Arc::new(Policies::builtin()),
        intents,
        presigner,
        multipart,
        clock,
    )
    .unwrap()
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

async fn call(api: &Api, event: &str) -> (u16, Value, lambda_http::http::HeaderMap) {
    let request = lambda_http::request::from_str(event).expect("a valid API Gateway v2 event");
    let response = airlock_lambda::sign::handle(api, "tenant", request).await;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = match response.body() {
        Body::Text(text) => serde_json::from_str(text).unwrap(),
        Body::Empty => Value::Null,
        other => panic!("unexpected body {other:?}"),
    };
    (status, body, headers)
}

#[test]
fn the_fixtures_are_events_lambda_http_takes_and_survive_a_round_trip() {
    for name in [
        "create-upload.json",
        "create-upload-base64.json",
        "get-upload.json",
        "get-upload-other-tenant.json",
        "create-upload-no-authorizer.json",
        "create-upload-no-tenant-claim.json",
    ] {
        let text = fixture(name);
        let parsed: Value = serde_json::from_str(&text).unwrap();
        let event: lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequest =
            serde_json::from_value(parsed.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let again: lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequest =
            serde_json::from_value(serde_json::to_value(&event).unwrap()).unwrap();
        assert_eq!(
            serde_json::to_value(&event).unwrap(),
            serde_json::to_value(&again).unwrap(),
            "{name}"
        );
        lambda_http::request::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[tokio::test]
async fn an_authorized_create_stores_the_intent_for_the_tokens_tenant_and_signs_a_put() {
    let intents = Arc::new(SqliteIntentStore::in_memory().unwrap());
    let api = api(Arc::clone(&intents));
    let (status, body, headers) = call(&api, &fixture("create-upload.json")).await;
    assert_eq!(status, 201, "{body}");
    let id: UploadId = body["uploadId"].as_str().unwrap().parse().unwrap();
    assert_eq!(headers["location"], format!("/uploads/{id}"));
    let url = body["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!(
            "https://uploads-bucket.s3.eu-west-1.amazonaws.com/incoming/acme/avatar/{id}?"
        )),
        "{url}"
    );
    assert!(url.contains("X-Amz-Security-Token=session-token"), "{url}");
    let intent = intents.get(id).await.unwrap().unwrap();
    assert_eq!(intent.state, IntentState::Pending);
    assert_eq!(intent.tenant.as_str(), "acme");
    assert_eq!(intent.uploader.as_deref(), Some("alice"));

    // The retried request (same Idempotency-Key) gets the same upload.
    let (status, again, _) = call(&api, &fixture("create-upload.json")).await;
    assert_eq!(status, 201);
    assert_eq!(again["uploadId"], body["uploadId"]);

    // A base64 body (API Gateway's encoding of binary bodies) works the same.
    let (status, other, _) = call(&api, &fixture("create-upload-base64.json")).await;
    assert_eq!(status, 201, "{other}");
    assert_ne!(other["uploadId"], body["uploadId"]);

    let get = fixture("get-upload.json").replace("UPLOAD_ID", &id.to_string());
    let (status, state, _) = call(&api, &get).await;
    assert_eq!(status, 200, "{state}");
    assert_eq!(state["state"], "PENDING");
    let theirs = fixture("get-upload-other-tenant.json").replace("UPLOAD_ID", &id.to_string());
    let (status, problem, _) = call(&api, &theirs).await;
    assert_eq!(status, 404, "{problem}");
    assert_eq!(problem["code"], "not-found");
}

#[tokio::test]
async fn requests_without_verified_claims_or_tenant_are_refused_and_store_nothing() {
    let intents = Arc::new(SqliteIntentStore::in_memory().unwrap());
    let api = api(Arc::clone(&intents));
    let (status, problem, headers) = call(&api, &fixture("create-upload-no-authorizer.json")).await;
    assert_eq!(status, 401, "{problem}");
    assert_eq!(headers["content-type"], "application/problem+json");
    let (status, problem, _) = call(&api, &fixture("create-upload-no-tenant-claim.json")).await;
    assert_eq!(status, 403, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("tenant"));
    let far = chrono::Utc::now() + chrono::Duration::days(365);
    assert!(intents.pending_overdue(far, 10).await.unwrap().is_empty());
}
