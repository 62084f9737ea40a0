//! `airlock dev` over HTTP: the upload API, the S3 endpoint that verifies signatures, the
//! pipeline and a real clamd, driven the way a client drives them (curl-like requests with
//! the returned URLs and forms).

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use airlock_dev::{DevInfo, ServeArgs};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tokio::sync::oneshot;

struct Dev {
    info: DevInfo,
    http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl Dev {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let args = ServeArgs {
            data_dir: dir.path().join("data"),
            bucket: "airlock-dev".into(),
            policies: None,
            clamd: None,
            signatures: airlock_tests::repo_root().join("fixtures/clamav"),
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            api_port: 0,
            s3_port: 0,
            web_dir: dir.path().join("no-web"),
            ready_file: None,
            cors_origins: Vec::new(),
            tenant: "acme".into(),
            subject: "alice".into(),
            jwt_public_key: None,
            jwt_algorithm: "RS256".into(),
            tenant_claim: "tenant".into(),
            console_tokens_file: None,
            console_tokens: None,
        };
        let (ready_tx, ready_rx) = oneshot::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            airlock_dev::serve(
                &args,
                |info| {
                    let _ = ready_tx.send(info.clone());
                },
                async {
                    let _ = stopped.await;
                },
            )
            .await
        });
        let info = tokio::time::timeout(Duration::from_mins(1), ready_rx)
            .await
            .expect("airlock dev starts within a minute")
            .expect("airlock dev started");
        Self {
            info,
            http: reqwest::Client::new(),
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        }
    }

    fn token_for(&self, tenant: &str) -> String {
        let secret = airlock_dev::credentials::DevCredentials::load(&self.info.data_dir)
            .unwrap()
            .token_secret_bytes()
            .unwrap();
        airlock_api::mint_hs256(
            &secret,
            &airlock_core::keys::TenantId::new(tenant).unwrap(),
            "someone",
            chrono::Utc::now(),
            chrono::Duration::minutes(10),
        )
        .unwrap()
    }

    async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.info.api));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, body)
    }

    async fn create(&self, body: &Value) -> Value {
        let (status, created) = self
            .api(
                reqwest::Method::POST,
                "/uploads",
                Some(&self.info.token),
                Some(body),
                &[],
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        created
    }

    async fn put(&self, created: &Value, bytes: Vec<u8>) -> StatusCode {
        let mut request = self.http.put(created["url"].as_str().unwrap()).body(bytes);
        for (name, value) in created["headers"].as_object().unwrap() {
            request = request.header(name, value.as_str().unwrap());
        }
        request.send().await.unwrap().status()
    }

    /// Polls the upload until its state is final (or FAILED).
    async fn settled(&self, id: &str) -> Value {
        for _ in 0..600 {
            let (status, body) = self
                .api(
                    reqwest::Method::GET,
                    &format!("/uploads/{id}"),
                    Some(&self.info.token),
                    None,
                    &[],
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            if ["READY", "QUARANTINED", "EXPIRED", "FAILED"]
                .contains(&body["state"].as_str().unwrap())
            {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("upload {id} did not settle within a minute");
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A PUT upload with its SHA-256 signed in is promoted and downloadable.
async fn put_with_a_checksum_reaches_trusted(dev: &Dev) {
    // PUT, with the declared SHA-256 signed in.
    let text = b"quarterly numbers, nothing else\n".to_vec();
    let created = dev
        .create(
            &json!({"purpose": "document", "contentType": "text/plain", "size": text.len(),
            "filename": "../../numbers.txt", "sha256": sha256_hex(&text)}),
        )
        .await;
    let id = created["uploadId"].as_str().unwrap();
    let key = created["key"].as_str().unwrap();
    assert_eq!(
        key,
        format!("incoming/acme/document/{id}"),
        "the key holds no client input"
    );
    assert_eq!(dev.put(&created, text.clone()).await, StatusCode::OK);
    let ready = dev.settled(id).await;
    assert_eq!(ready["state"], "READY", "{ready}");
    assert_eq!(ready["sha256"], sha256_hex(&text));
    let download = dev
        .http
        .get(ready["original"]["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(download.status(), StatusCode::OK);
    assert_eq!(download.bytes().await.unwrap().to_vec(), text);
}

/// A POST form upload of a photo gets its variants.
async fn a_post_form_photo_gets_variants(dev: &Dev) {
    // POST form (a browser's way), with a photo: variants come back.
    let photo =
        std::fs::read(airlock_tests::repo_root().join("fixtures/objects/photo.jpg")).unwrap();
    let created = dev
        .create(&json!({"purpose": "avatar", "contentType": "image/jpeg", "size": photo.len(), "method": "post"}))
        .await;
    let mut form = reqwest::multipart::Form::new();
    for (name, value) in created["fields"].as_object().unwrap() {
        form = form.text(name.clone(), value.as_str().unwrap().to_owned());
    }
    form = form.part(
        "file",
        reqwest::multipart::Part::bytes(photo.clone()).file_name("photo.jpg"),
    );
    let posted = dev
        .http
        .post(created["url"].as_str().unwrap())
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert!(
        posted.status().is_success(),
        "{}",
        posted.text().await.unwrap()
    );
    let ready = dev.settled(created["uploadId"].as_str().unwrap()).await;
    assert_eq!(ready["state"], "READY", "{ready}");
    let variants = ready["variants"].as_array().unwrap();
    assert!(!variants.is_empty(), "{ready}");
    for variant in variants {
        let image = dev
            .http
            .get(variant["url"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(image.status(), StatusCode::OK);
        assert!(!image.bytes().await.unwrap().is_empty());
    }
}

/// A multipart upload completed through the API arrives whole.
async fn a_multipart_upload_arrives_whole(dev: &Dev) {
    // Multipart: two signed parts, completed through the API.
    let big: Vec<u8> = (0..12 * 1024 * 1024u32)
        .map(|i| b"airlock\n"[(i % 8) as usize])
        .collect();
    let created = dev
        .create(&json!({"purpose": "attachment", "contentType": "text/plain", "size": big.len(), "method": "multipart"}))
        .await;
    let id = created["uploadId"].as_str().unwrap().to_owned();
    let mut done = Vec::new();
    let mut offset = 0;
    for part in created["parts"].as_array().unwrap() {
        let size = usize::try_from(part["size"].as_u64().unwrap()).unwrap();
        let response = dev
            .http
            .put(part["url"].as_str().unwrap())
            .body(big[offset..offset + size].to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let etag = response.headers()["etag"].to_str().unwrap().to_owned();
        done.push(json!({"partNumber": part["partNumber"], "etag": etag}));
        offset += size;
    }
    assert_eq!(offset, big.len());
    let (status, completed) = dev
        .api(
            reqwest::Method::POST,
            &format!("/uploads/{id}/complete"),
            Some(&dev.info.token),
            Some(&json!({"parts": done})),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{completed}");
    let ready = dev.settled(&id).await;
    assert_eq!(ready["state"], "READY", "{ready}");
    assert_eq!(
        ready["sha256"],
        sha256_hex(&big),
        "the object arrived whole"
    );
}

/// EICAR is quarantined with its reason.
async fn eicar_is_quarantined(dev: &Dev) {
    // EICAR, built here, is quarantined with its reason.
    let eicar = airlock_clamd::canary::eicar();
    let created = dev
        .create(&json!({"purpose": "document", "contentType": "text/plain", "size": eicar.len()}))
        .await;
    assert_eq!(dev.put(&created, eicar).await, StatusCode::OK);
    let rejected = dev.settled(created["uploadId"].as_str().unwrap()).await;
    assert_eq!(rejected["state"], "QUARANTINED", "{rejected}");
    assert_eq!(rejected["reason"], "infected");
    assert!(rejected.get("original").is_none());
}

/// Refused callers and requests, idempotency and tenancy over HTTP.
async fn callers_and_requests_are_refused_with_the_right_status(dev: &Dev) {
    let token = dev.info.token.clone();
    let post = reqwest::Method::POST;
    let photo = json!({"purpose": "avatar", "contentType": "image/png", "size": 1000});

    // Who is calling.
    let (status, _) = dev
        .api(post.clone(), "/uploads", None, Some(&photo), &[])
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let forged = format!("{}x", &token[..token.len() - 1]);
    let (status, _) = dev
        .api(post.clone(), "/uploads", Some(&forged), Some(&photo), &[])
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // What is asked.
    for (body, expected) in [
        (
            json!({"purpose": "avatar", "contentType": "text/html", "size": 10}),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            json!({"purpose": "avatar", "contentType": "image/png", "size": 1u64 << 40}),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            json!({"purpose": "nope", "contentType": "image/png", "size": 10}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"purpose": "avatar", "contentType": "image/png"}),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (status, problem) = dev
            .api(post.clone(), "/uploads", Some(&token), Some(&body), &[])
            .await;
        assert_eq!(status, expected, "{body}: {problem}");
        assert!(problem["detail"].is_string(), "{problem}");
    }

    // Idempotency.
    let key = [("idempotency-key", "order-42")];
    let (_, first) = dev
        .api(post.clone(), "/uploads", Some(&token), Some(&photo), &key)
        .await;
    let (_, again) = dev
        .api(post.clone(), "/uploads", Some(&token), Some(&photo), &key)
        .await;
    assert_eq!(first["uploadId"], again["uploadId"]);
    let mut changed = photo.clone();
    changed["size"] = json!(1001);
    let (status, _) = dev
        .api(post.clone(), "/uploads", Some(&token), Some(&changed), &key)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // Another tenant sees nothing.
    let id = first["uploadId"].as_str().unwrap();
    let theirs = dev.token_for("globex");
    let (status, _) = dev
        .api(
            reqwest::Method::GET,
            &format!("/uploads/{id}"),
            Some(&theirs),
            None,
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = dev
        .api(
            reqwest::Method::DELETE,
            &format!("/uploads/{id}"),
            Some(&theirs),
            None,
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A PUT upload has nothing to complete.
    let (status, _) = dev
        .api(
            post.clone(),
            &format!("/uploads/{id}/complete"),
            Some(&token),
            Some(&json!({"parts": []})),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
}

/// A signed URL binds size and type, and cannot outlive its intent.
async fn signed_urls_bind_the_intent(dev: &Dev) {
    let token = dev.info.token.clone();
    // The signed URL binds size and type: other bytes are refused by the endpoint.
    let created = dev
        .create(&json!({"purpose": "document", "contentType": "text/plain", "size": 5}))
        .await;
    assert_eq!(
        dev.put(&created, b"12345!".to_vec()).await,
        StatusCode::FORBIDDEN
    );
    let mut wrong_type = created.clone();
    wrong_type["headers"]["content-type"] = json!("text/csv");
    assert_eq!(
        dev.put(&wrong_type, b"12345".to_vec()).await,
        StatusCode::FORBIDDEN
    );

    // A given-up intent: its still-valid URL lands the object in quarantine.
    let id = created["uploadId"].as_str().unwrap();
    let (status, _) = dev
        .api(
            reqwest::Method::DELETE,
            &format!("/uploads/{id}"),
            Some(&token),
            None,
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(dev.put(&created, b"12345".to_vec()).await, StatusCode::OK);
    let quarantine_record = dev.info.data_dir.join(format!(
        "buckets/airlock-dev/quarantine/acme/document/{id}.json"
    ));
    for _ in 0..300 {
        if quarantine_record.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let record: Value =
        serde_json::from_slice(&std::fs::read(&quarantine_record).unwrap()).unwrap();
    assert_eq!(record["reason"], "intent-expired", "{record}");
    let (_, status) = dev
        .api(
            reqwest::Method::GET,
            &format!("/uploads/{id}"),
            Some(&token),
            None,
            &[],
        )
        .await;
    assert_eq!(status["state"], "EXPIRED");
}

/// The upload page and its security headers.
async fn the_page_is_served_with_its_security_headers(dev: &Dev) {
    // The page is served with its security headers.
    let page = dev
        .http
        .get(format!("{}/", dev.info.api))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains(&dev.info.s3), "{csp}");
    let (status, _) = dev
        .api(
            reqwest::Method::GET,
            "/../dev-credentials.json",
            None,
            None,
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_post_and_multipart_uploads_reach_trusted_and_eicar_is_quarantined() {
    let dev = Dev::start().await;
    put_with_a_checksum_reaches_trusted(&dev).await;
    a_post_form_photo_gets_variants(&dev).await;
    a_multipart_upload_arrives_whole(&dev).await;
    eicar_is_quarantined(&dev).await;
    dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_over_http_store_nothing_and_leaked_urls_cannot_bypass_the_intent() {
    let dev = Dev::start().await;
    callers_and_requests_are_refused_with_the_right_status(&dev).await;
    signed_urls_bind_the_intent(&dev).await;
    the_page_is_served_with_its_security_headers(&dev).await;
    dev.stop().await;
}
