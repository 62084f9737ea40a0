//! The upload flow on AWS, end to end on the emulator (`moto_server` from the project's
//! `.venv`): the `sign` function's handler answers API Gateway requests and presigns; the
//! client PUTs straight to the emulator's S3; the bucket's event reaches the ingest queue;
//! the `ingest` handler starts an execution of the real definition; the workers and a scan
//! worker with a real clamd answer its tasks; the client reads the outcome through the
//! `sign` handler again. Also: a multipart upload's events start one execution, and an
//! event delivered again after its execution closed is acknowledged, not failed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock_core::definitions::{DEFAULT_MAX_AGE, FreshnessRule};
use airlock_core::policy::Policies;
use airlock_emulator::{Deployment, Functions, MotoServer, Names};
use airlock_lambda::settings::SignSettings;
use airlock_lambda::wiring::SigningApi;
use lambda_http::Body;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A client of the deployment: API Gateway requests to the `sign` handler, bytes straight
/// to the emulator's S3.
struct Client {
    signing: SigningApi,
    http: reqwest::Client,
}

impl Client {
    /// One request through the `sign` handler, as API Gateway (HTTP API, payload 2.0, JWT
    /// authorizer) delivers it.
    async fn api(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let event = json!({
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": path,
            "rawQueryString": "",
            "headers": {"content-type": "application/json", "host": "api.example.com"},
            "requestContext": {
                "routeKey": "$default",
                "accountId": "123456789012",
                "stage": "$default",
                "requestId": "req",
                "authorizer": {"jwt": {"claims": {"sub": "alice", "tenant": "acme"}, "scopes": null}},
                "apiId": "api-id",
                "domainName": "api.example.com",
                "domainPrefix": "api",
                "time": "02/Dec/2026:09:00:00 +0000",
                "timeEpoch": 1_796_202_000_000_u64,
                "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                         "sourceIp": "203.0.113.9", "userAgent": "test"}
            },
            "body": body.map(Value::to_string),
            "isBase64Encoded": false
        });
        let request = lambda_http::request::from_str(&event.to_string()).unwrap();
        let api = self.signing.api().await.unwrap();
        let response =
            airlock_lambda::sign::handle(&api, self.signing.tenant_claim(), request).await;
        let status = response.status().as_u16();
        let body = match response.body() {
            Body::Text(text) => serde_json::from_str(text).unwrap(),
            Body::Empty => Value::Null,
            other => panic!("unexpected body {other:?}"),
        };
        (status, body)
    }

    /// `POST /uploads`, then the presigned PUT with exactly the headers it names.
    async fn upload(&self, purpose: &str, content_type: &str, bytes: &[u8]) -> String {
        let (status, created) = self
            .api(
                "POST",
                "/uploads",
                Some(&json!({"purpose": purpose, "contentType": content_type,
                             "size": bytes.len(), "filename": "f", "method": "put"})),
            )
            .await;
        assert_eq!(status, 201, "{created}");
        let mut put = self.http.put(created["url"].as_str().unwrap());
        for (name, value) in created["headers"].as_object().unwrap() {
            put = put.header(name, value.as_str().unwrap());
        }
        let response = put.body(bytes.to_vec()).send().await.unwrap();
        assert!(
            response.status().is_success(),
            "presigned PUT: {}",
            response.text().await.unwrap()
        );
        created["uploadId"].as_str().unwrap().to_owned()
    }

    /// `GET /uploads/{id}` until the upload is READY or QUARANTINED.
    async fn settled(&self, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_mins(2);
        loop {
            let (status, upload) = self.api("GET", &format!("/uploads/{id}"), None).await;
            assert_eq!(status, 200, "{upload}");
            let state = upload["state"].as_str().unwrap_or_default();
            if matches!(state, "READY" | "QUARANTINED" | "FAILED") {
                return upload;
            }
            assert!(
                Instant::now() < deadline,
                "upload {id} never settled: {upload}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn download(&self, url: &str) -> Vec<u8> {
        let response = self.http.get(url).send().await.unwrap();
        assert!(response.status().is_success(), "GET {url}");
        response.bytes().await.unwrap().to_vec()
    }
}

/// The executions whose name ends with the upload id (names end with the key's last
/// segment, which is the id).
async fn executions_of(sfn: &aws_sdk_sfn::Client, state_machine: &str, id: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut token = None;
    loop {
        let page = sfn
            .list_executions()
            .state_machine_arn(state_machine)
            .set_next_token(token)
            .send()
            .await
            .unwrap();
        names.extend(
            page.executions()
                .iter()
                .map(|e| e.name().to_owned())
                .filter(|name| name.ends_with(id)),
        );
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            return names;
        }
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The deployment on a fresh emulator, its functions running, and a client.
struct Stack {
    server: MotoServer,
    sdk: aws_config::SdkConfig,
    deployment: Deployment,
    functions: Functions,
    clamd: Option<airlock_clamd::ManagedClamd>,
    client: Client,
    sfn: aws_sdk_sfn::Client,
}

impl Stack {
    async fn start() -> Self {
        let server = MotoServer::start(&root().join(".venv/bin/moto_server"))
            .await
            .unwrap();
        let sdk = airlock_emulator::sdk_config(&server.endpoint).await;
        let definition =
            std::fs::read_to_string(root().join("statemachine/pipeline.asl.json")).unwrap();
        let deployment = Deployment::create(&sdk, Names::new("airlock-upload"), &definition)
            .await
            .unwrap();
        let (scanner, clamd) =
            airlock_embedded::replay::scanner_for(None, &root().join("fixtures/clamav"), None)
                .await
                .unwrap();
        let policies = Policies::builtin();
        let functions = Functions::start(
            &sdk,
            &deployment,
            &policies,
            Arc::clone(&scanner),
            FreshnessRule::accepting_undated(Some(DEFAULT_MAX_AGE)),
        );
        let signing = SigningApi::new(
            SignSettings {
                bucket: deployment.bucket.clone(),
                table: deployment.table.clone(),
                tenant_claim: "tenant".to_owned(),
                s3_endpoint: Some(server.endpoint.clone()),
                upload_url_validity: Duration::from_mins(5),
                download_url_validity: Duration::from_mins(5),
                policies,
            },
            sdk.clone(),
        )
        .await
        .unwrap();
        let sfn = aws_sdk_sfn::Client::new(&sdk);
        Self {
            server,
            sdk,
            deployment,
            functions,
            clamd,
            client: Client {
                signing,
                http: reqwest::Client::new(),
            },
            sfn,
        }
    }

    async fn executions_of(&self, id: &str) -> usize {
        executions_of(&self.sfn, &self.deployment.state_machine_arn, id)
            .await
            .len()
    }

    async fn stop(mut self) {
        self.functions.stop().await;
        if let Some(clamd) = self.clamd.as_mut() {
            clamd.stop().ok();
        }
        drop(self.server);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn uploads_signed_by_the_sign_function_go_through_the_deployment() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let stack = Stack::start().await;
    let photo_id = a_photo_is_ready_with_its_variants(&stack.client).await;
    eicar_is_quarantined(&stack.client).await;
    a_multipart_upload_starts_one_execution(&stack).await;
    an_event_delivered_again_after_its_execution_closed_is_acknowledged(&stack, &photo_id).await;
    stack.stop().await;
}

/// A photo: presigned PUT, READY with its variants, readable through the signed URLs.
async fn a_photo_is_ready_with_its_variants(client: &Client) -> String {
    let photo = std::fs::read(root().join("fixtures/objects/camera-photo.jpg")).unwrap();
    let id = client.upload("photo", "image/jpeg", &photo).await;
    let ready = client.settled(&id).await;
    assert_eq!(ready["state"], "READY", "{ready}");
    assert_eq!(ready["sha256"], sha256_hex(&photo));
    let original = client
        .download(ready["original"]["url"].as_str().unwrap())
        .await;
    assert!(
        original.starts_with(&[0xFF, 0xD8]),
        "the original is a JPEG"
    );
    let variants = ready["variants"].as_array().unwrap();
    assert!(!variants.is_empty(), "{ready}");
    for variant in variants {
        let bytes = client.download(variant["url"].as_str().unwrap()).await;
        assert!(!bytes.is_empty());
    }
    id
}

/// EICAR, built here: QUARANTINED with its reason, and no URL to read it.
async fn eicar_is_quarantined(client: &Client) {
    let eicar = format!(
        "X5O!P%@AP[4\\PZX54(P^)7CC)7}}{}-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*",
        "$EICAR"
    );
    let id = client
        .upload("document", "text/plain", eicar.as_bytes())
        .await;
    let quarantined = client.settled(&id).await;
    assert_eq!(quarantined["state"], "QUARANTINED", "{quarantined}");
    assert_eq!(quarantined["reason"], "infected", "{quarantined}");
    assert!(quarantined["original"].is_null(), "{quarantined}");
}

/// A multipart upload of two parts, completed through the sign function: however many
/// events its object causes, one execution.
async fn a_multipart_upload_starts_one_execution(stack: &Stack) {
    let client = &stack.client;
    let big: Vec<u8> = (0..12 * 1024 * 1024u32)
        .map(|i| b"airlock\n"[(i % 8) as usize])
        .collect();
    let (status, created) = client
        .api(
            "POST",
            "/uploads",
            Some(
                &json!({"purpose": "attachment", "contentType": "text/plain",
                         "size": big.len(), "method": "multipart"}),
            ),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["uploadId"].as_str().unwrap().to_owned();
    let mut parts = Vec::new();
    let mut offset = 0;
    for part in created["parts"].as_array().unwrap() {
        let size = usize::try_from(part["size"].as_u64().unwrap()).unwrap();
        let response = client
            .http
            .put(part["url"].as_str().unwrap())
            .body(big[offset..offset + size].to_vec())
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "part upload");
        let etag = response.headers()["etag"].to_str().unwrap().to_owned();
        parts.push(json!({"partNumber": part["partNumber"], "etag": etag}));
        offset += size;
    }
    assert_eq!(parts.len(), 2);
    let (status, completed) = client
        .api(
            "POST",
            &format!("/uploads/{id}/complete"),
            Some(&json!({"parts": parts})),
        )
        .await;
    assert_eq!(status, 200, "{completed}");
    let ready = client.settled(&id).await;
    assert_eq!(ready["state"], "READY", "{ready}");
    assert_eq!(
        ready["sha256"],
        sha256_hex(&big),
        "the object arrived whole"
    );
    let events = events_for(&stack.functions, &id);
    assert!(!events.is_empty());
    assert_eq!(
        stack.executions_of(&id).await,
        1,
        "{} event(s) for the multipart upload, one execution",
        events.len()
    );
}

/// The photo's event delivered again after its execution closed: acknowledged (nothing
/// fails, so it leaves the queue), and no second execution.
async fn an_event_delivered_again_after_its_execution_closed_is_acknowledged(
    stack: &Stack,
    photo_id: &str,
) {
    let event = events_for(&stack.functions, photo_id)
        .into_iter()
        .next()
        .expect("the photo's event was ingested");
    let batches_before = stack.functions.ingested().len();
    aws_sdk_sqs::Client::new(&stack.sdk)
        .send_message()
        .queue_url(&stack.deployment.ingest_queue_url)
        .message_body(&event)
        .send()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_mins(1);
    let redelivered = loop {
        let batches = stack.functions.ingested();
        if let Some(batch) = batches[batches_before..]
            .iter()
            .find(|b| b.bodies.contains(&event))
        {
            break batch.clone();
        }
        assert!(Instant::now() < deadline, "the event never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(redelivered.summary.failed, 0, "{redelivered:?}");
    assert_eq!(redelivered.summary.started, 0, "{redelivered:?}");
    assert_eq!(redelivered.summary.duplicates, 1, "{redelivered:?}");
    assert_eq!(stack.executions_of(photo_id).await, 1);
    assert_eq!(stack.client.settled(photo_id).await["state"], "READY");
}

/// The bodies of the S3 event notifications the ingest function received for `id`.
fn events_for(functions: &Functions, id: &str) -> Vec<String> {
    functions
        .ingested()
        .into_iter()
        .flat_map(|batch| batch.bodies)
        .filter(|body| body.contains(id))
        .collect()
}
