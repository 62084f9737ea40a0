//! The API's routes over a real SQLite intent store and the real presigner; the multipart
//! calls go to a recording double here (the local S3 endpoint's own tests and `airlock dev`'s
//! cover them for real).

use std::sync::{Arc, Mutex};

use airlock_api::{
    Api, ApiConfig, ApiRequest, Caller, CompletedPart, MultipartError, MultipartUploads, Problem,
};
use airlock_core::intent::{IntentOutcome, IntentState};
use airlock_core::keys::{TenantId, UploadId};
use airlock_core::policy::Policies;
use airlock_core::ports::{Clock, IntentStore, Transition};
use airlock_core::verdict::ReasonCode;
use airlock_local::SqliteIntentStore;
use airlock_presign::{Addressing, Credentials, PresignConfig, Presigner};
use async_trait::async_trait;
use chrono::{DateTime, TimeZone as _, Utc};
use http::{HeaderMap, Method, StatusCode};
use serde_json::{Value, json};

const MIB: u64 = 1024 * 1024;

struct FixedClock(Mutex<DateTime<Utc>>);

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

#[derive(Default)]
struct RecordedMultipart {
    calls: Mutex<Vec<String>>,
}

#[async_trait]
impl MultipartUploads for RecordedMultipart {
    async fn create(&self, key: &str, content_type: &str) -> Result<String, MultipartError> {
        let mut calls = self.calls.lock().unwrap();
        calls.push(format!("create {key} {content_type}"));
        Ok(format!("mpu-{}", calls.len()))
    }
    async fn complete(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> Result<(), MultipartError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("complete {key} {upload_id} {}", parts.len()));
        Ok(())
    }
    async fn abort(&self, key: &str, upload_id: &str) -> Result<(), MultipartError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("abort {key} {upload_id}"));
        Ok(())
    }
}

struct Harness {
    api: Api,
    intents: Arc<SqliteIntentStore>,
    multipart: Arc<RecordedMultipart>,
    clock: Arc<FixedClock>,
}

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 2, 9, 0, 0).unwrap()
}

fn harness() -> Harness {
    harness_with(Policies::builtin())
}

fn harness_with(policies: Policies) -> Harness {
    let intents = Arc::new(SqliteIntentStore::in_memory().unwrap());
    let multipart = Arc::new(RecordedMultipart::default());
    let clock = Arc::new(FixedClock(Mutex::new(start())));
    let presigner = Presigner::new(
        PresignConfig::new("http://127.0.0.1:9000", "us-east-1", Addressing::Path),
        Credentials::new("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
    )
    .unwrap();
    let api = Api::new(
        ApiConfig::new("uploads"),
        Arc::new(policies),
        intents.clone(),
        Arc::new(presigner),
        multipart.clone(),
        clock.clone(),
    )
    .unwrap();
    Harness {
        api,
        intents,
        multipart,
        clock,
    }
}

fn caller(tenant: &str) -> Caller {
    Caller {
        tenant: TenantId::new(tenant).unwrap(),
        subject: "alice".into(),
    }
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Harness {
    async fn call_as(
        &self,
        who: Result<Caller, Problem>,
        method: Method,
        path: &str,
        headers: &[(&'static str, &str)],
        body: &[u8],
    ) -> Reply {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, value.parse().unwrap());
        }
        let response = self
            .api
            .handle(
                ApiRequest {
                    method: &method,
                    path,
                    headers: &map,
                    body,
                },
                || who,
            )
            .await;
        let body = if response.body().is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(response.body()).unwrap()
        };
        Reply {
            status: response.status(),
            headers: response.headers().clone(),
            body,
        }
    }

    async fn call(&self, method: Method, path: &str, body: &Value) -> Reply {
        let bytes = if body.is_null() {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        };
        self.call_as(Ok(caller("acme")), method, path, &[], &bytes)
            .await
    }

    async fn create(&self, body: &Value) -> Reply {
        self.call(Method::POST, "/uploads", body).await
    }

    /// Every intent in the store (none expire before the year 3000).
    async fn stored(&self) -> usize {
        let far = Utc.with_ymd_and_hms(3000, 1, 1, 0, 0, 0).unwrap();
        self.intents.pending_overdue(far, 1000).await.unwrap().len()
    }
}

fn photo() -> Value {
    json!({"purpose": "avatar", "contentType": "image/jpeg", "size": 48213, "filename": "../../me.jpg"})
}

#[tokio::test]
async fn a_put_upload_is_recorded_before_it_is_signed_under_a_server_made_key() {
    let h = harness();
    let reply = h.create(&photo()).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let id: UploadId = reply.body["uploadId"].as_str().unwrap().parse().unwrap();
    assert_eq!(reply.headers["location"], format!("/uploads/{id}"));
    assert_eq!(reply.body["method"], "put");
    assert_eq!(reply.body["key"], format!("incoming/acme/avatar/{id}"));
    let url = reply.body["url"].as_str().unwrap();
    assert!(url.starts_with(&format!(
        "http://127.0.0.1:9000/uploads/incoming/acme/avatar/{id}?"
    )));
    assert!(!url.contains("me.jpg"), "client input in the URL: {url}");
    assert_eq!(
        reply.body["headers"],
        json!({"content-type": "image/jpeg", "if-none-match": "*"})
    );
    assert!(
        url.contains("content-length%3Bcontent-type%3Bhost%3Bif-none-match"),
        "{url}"
    );
    assert_eq!(reply.body["expiresAt"], "2026-12-02T09:05:00Z");

    let intent = h.intents.get(id).await.unwrap().unwrap();
    assert_eq!(intent.state, IntentState::Pending);
    assert_eq!(intent.declared_size, 48213);
    assert_eq!(intent.filename.as_deref(), Some("../../me.jpg"));
    assert_eq!(intent.uploader.as_deref(), Some("alice"));
    assert_eq!(intent.expires_at, start() + chrono::Duration::minutes(15));
}

#[tokio::test]
async fn a_declared_sha256_is_signed_into_the_put() {
    let h = harness();
    let digest = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    let mut body = photo();
    body["sha256"] = json!(digest.to_uppercase());
    let reply = h.create(&body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert_eq!(
        reply.body["headers"]["x-amz-checksum-sha256"],
        "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
    );
    let id: UploadId = reply.body["uploadId"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        h.intents.get(id).await.unwrap().unwrap().sha256.as_deref(),
        Some(digest)
    );
}

#[tokio::test]
async fn a_post_upload_gets_a_form_with_the_exact_size() {
    let h = harness();
    let mut body = photo();
    body["method"] = json!("post");
    let reply = h.create(&body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert_eq!(reply.body["url"], "http://127.0.0.1:9000/uploads");
    let fields = &reply.body["fields"];
    assert_eq!(fields["key"], reply.body["key"]);
    assert_eq!(fields["Content-Type"], "image/jpeg");
    let policy = base64_json(fields["policy"].as_str().unwrap());
    assert!(
        policy["conditions"].as_array().unwrap().contains(&json!([
            "content-length-range",
            48213,
            48213
        ])),
        "{policy}"
    );
}

fn base64_json(text: &str) -> Value {
    use base64::Engine as _;
    serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn large_files_go_in_signed_parts_that_can_be_signed_again_completed_and_aborted() {
    let h = harness();
    let size = 200 * MIB + 5;
    let reply = h
        .create(&json!({"purpose": "attachment", "contentType": "text/plain", "size": size}))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert_eq!(reply.body["method"], "multipart");
    assert_eq!(reply.body["partSize"], 8 * MIB);
    let parts = reply.body["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 26);
    assert_eq!(reply.body["partCount"], 26);
    assert_eq!(parts[25]["size"], 5);
    let id = reply.body["uploadId"].as_str().unwrap().to_owned();
    let url = parts[3]["url"].as_str().unwrap();
    assert!(
        url.contains("partNumber=4") && url.contains("uploadId=mpu-1"),
        "{url}"
    );
    assert!(
        url.contains("content-length%3Bhost"),
        "the part size is signed: {url}"
    );

    // Later, a part is signed again.
    *h.clock.0.lock().unwrap() += chrono::Duration::minutes(7);
    let again = h
        .call(
            Method::GET,
            &format!("/uploads/{id}/parts/26"),
            &Value::Null,
        )
        .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(again.body["size"], 5);
    assert_eq!(again.body["expiresAt"], "2026-12-02T09:12:00Z");
    let missing = h
        .call(
            Method::GET,
            &format!("/uploads/{id}/parts/27"),
            &Value::Null,
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    // Completing checks the list first.
    let listed = |numbers: Vec<u32>| json!({"parts": numbers.into_iter().map(|n| json!({"partNumber": n, "etag": format!("\"e{n}\"")})).collect::<Vec<_>>()});
    let short = h
        .call(
            Method::POST,
            &format!("/uploads/{id}/complete"),
            &listed((1..=25).collect()),
        )
        .await;
    assert_eq!(
        short.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        short.body
    );
    let mut order: Vec<u32> = (1..=26).collect();
    order.swap(0, 1);
    let unordered = h
        .call(
            Method::POST,
            &format!("/uploads/{id}/complete"),
            &listed(order),
        )
        .await;
    assert_eq!(
        unordered.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        unordered.body
    );
    let done = h
        .call(
            Method::POST,
            &format!("/uploads/{id}/complete"),
            &listed((1..=26).collect()),
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert_eq!(done.body["state"], "PENDING");
    let calls = h.multipart.calls.lock().unwrap().clone();
    assert_eq!(
        calls,
        vec![
            format!("create incoming/acme/attachment/{id} text/plain"),
            format!("complete incoming/acme/attachment/{id} mpu-1 26"),
        ]
    );

    // Aborting gives the intent up: a late object for it is quarantined as expired.
    let aborted = h
        .call(Method::DELETE, &format!("/uploads/{id}"), &Value::Null)
        .await;
    assert_eq!(aborted.status, StatusCode::NO_CONTENT);
    let status = h
        .call(Method::GET, &format!("/uploads/{id}"), &Value::Null)
        .await;
    assert_eq!(status.body["state"], "EXPIRED");
    let twice = h
        .call(Method::DELETE, &format!("/uploads/{id}"), &Value::Null)
        .await;
    assert_eq!(twice.status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn refused_requests_get_the_right_status_and_store_nothing() {
    let h = harness();
    let cases: Vec<(Value, StatusCode, &str)> = vec![
        (
            json!({"purpose": "avatar", "contentType": "image/jpeg"}),
            StatusCode::BAD_REQUEST,
            "size",
        ),
        (
            json!({"purpose": "avatar", "contentType": "image/jpeg", "size": 1, "tenant": "globex"}),
            StatusCode::BAD_REQUEST,
            "tenant",
        ),
        (
            json!({"purpose": "avatar", "contentType": "image/jpeg", "size": -1}),
            StatusCode::BAD_REQUEST,
            "size",
        ),
        (
            json!({"purpose": "avatar", "contentType": "jpeg", "size": 1}),
            StatusCode::BAD_REQUEST,
            "media type",
        ),
        (
            json!({"purpose": "avatar", "contentType": "text/html", "size": 1}),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "text/html",
        ),
        (
            json!({"purpose": "avatar", "contentType": "image/png", "size": 10 * MIB + 1}),
            StatusCode::PAYLOAD_TOO_LARGE,
            "maximum",
        ),
        (
            json!({"purpose": "avatar", "contentType": "image/png", "size": 0}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "at least 1 byte",
        ),
        (
            json!({"purpose": "nope", "contentType": "image/png", "size": 1}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown purpose",
        ),
        (
            json!({"purpose": "avatar", "contentType": "image/png", "size": 1, "sha256": "abc"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "sha256",
        ),
        (
            json!({"purpose": "avatar", "contentType": "image/png", "size": 1, "filename": "a\nb"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "filename",
        ),
        (
            json!({"purpose": "avatar", "contentType": "image/png", "size": 1, "method": "ftp"}),
            StatusCode::BAD_REQUEST,
            "method",
        ),
    ];
    for (body, status, mentions) in cases {
        let reply = h.create(&body).await;
        assert_eq!(reply.status, status, "{body}: {}", reply.body);
        assert_eq!(reply.headers["content-type"], "application/problem+json");
        assert_eq!(reply.body["status"], status.as_u16());
        assert!(
            reply.body["detail"].as_str().unwrap().contains(mentions),
            "{body}: {}",
            reply.body
        );
    }
    assert_eq!(h.stored().await, 0);
    assert!(h.multipart.calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn refused_callers_and_headers_get_the_right_status_and_store_nothing() {
    let h = harness();
    let not_json = h
        .call_as(Ok(caller("acme")), Method::POST, "/uploads", &[], b"{")
        .await;
    assert_eq!(not_json.status, StatusCode::BAD_REQUEST);
    let bad_key = h
        .call_as(
            Ok(caller("acme")),
            Method::POST,
            "/uploads",
            &[("idempotency-key", "")],
            photo().to_string().as_bytes(),
        )
        .await;
    assert_eq!(bad_key.status, StatusCode::BAD_REQUEST);
    let anonymous = h
        .call_as(
            Err(Problem::unauthorized("no token")),
            Method::POST,
            "/uploads",
            &[],
            photo().to_string().as_bytes(),
        )
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.headers["www-authenticate"], "Bearer");
    let tenantless = h
        .call_as(
            Err(Problem::forbidden("no tenant")),
            Method::POST,
            "/uploads",
            &[],
            photo().to_string().as_bytes(),
        )
        .await;
    assert_eq!(tenantless.status, StatusCode::FORBIDDEN);
    assert_eq!(h.stored().await, 0);
    assert!(h.multipart.calls.lock().unwrap().is_empty());

    let wrong_method = h.call(Method::PUT, "/uploads", &Value::Null).await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    let nowhere = h.call(Method::GET, "/elsewhere", &Value::Null).await;
    assert_eq!(nowhere.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn another_tenants_upload_is_not_found() {
    let h = harness();
    let reply = h.create(&photo()).await;
    let id = reply.body["uploadId"].as_str().unwrap().to_owned();
    for (method, path) in [
        (Method::GET, format!("/uploads/{id}")),
        (Method::DELETE, format!("/uploads/{id}")),
        (Method::POST, format!("/uploads/{id}/complete")),
        (Method::GET, format!("/uploads/{id}/parts/1")),
    ] {
        let body = json!({"parts": []}).to_string();
        let other = h
            .call_as(
                Ok(caller("globex")),
                method.clone(),
                &path,
                &[],
                body.as_bytes(),
            )
            .await;
        assert_eq!(
            other.status,
            StatusCode::NOT_FOUND,
            "{method} {path}: {}",
            other.body
        );
    }
    let unknown = h
        .call(
            Method::GET,
            &format!("/uploads/{}", UploadId::generate()),
            &Value::Null,
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let own = h
        .call(Method::GET, &format!("/uploads/{id}"), &Value::Null)
        .await;
    assert_eq!(own.status, StatusCode::OK);
    assert_eq!(own.body["state"], "PENDING");
}

#[tokio::test]
async fn an_idempotency_key_returns_the_same_upload() {
    let h = harness();
    let body = photo().to_string();
    let send = |key: &'static str, body: String| {
        let h = &h;
        async move {
            h.call_as(
                Ok(caller("acme")),
                Method::POST,
                "/uploads",
                &[("idempotency-key", key)],
                body.as_bytes(),
            )
            .await
        }
    };
    let first = send("retry-1", body.clone()).await;
    assert_eq!(first.status, StatusCode::CREATED);
    let second = send("retry-1", body.clone()).await;
    assert_eq!(second.status, StatusCode::CREATED);
    assert_eq!(second.body["uploadId"], first.body["uploadId"]);
    assert_eq!(second.headers["idempotent-replayed"], "true");
    let mut other = photo();
    other["size"] = json!(48214);
    let reused = send("retry-1", other.to_string()).await;
    assert_eq!(
        reused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reused.body
    );
    assert_eq!(h.stored().await, 1);

    // Once the upload moved on, a retry says where it stands instead of signing again.
    let id: UploadId = first.body["uploadId"].as_str().unwrap().parse().unwrap();
    h.intents
        .transition(
            id,
            Transition {
                from: vec![IntentState::Pending],
                to: IntentState::Uploaded,
                at: start(),
                outcome: None,
                review: false,
            },
        )
        .await
        .unwrap();
    let late = send("retry-1", body).await;
    assert_eq!(late.status, StatusCode::CONFLICT, "{}", late.body);
}

#[tokio::test]
async fn a_multipart_upload_abandoned_by_an_idempotent_retry_is_aborted() {
    let h = harness();
    let body = json!({"purpose": "attachment", "contentType": "text/plain", "size": 120 * MIB})
        .to_string();
    for _ in 0..2 {
        let reply = h
            .call_as(
                Ok(caller("acme")),
                Method::POST,
                "/uploads",
                &[("idempotency-key", "k")],
                body.as_bytes(),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED);
        assert!(
            reply.body["parts"][0]["url"]
                .as_str()
                .unwrap()
                .contains("uploadId=mpu-1")
        );
    }
    let calls = h.multipart.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert!(
        calls[2].starts_with("abort ") && calls[2].ends_with(" mpu-2"),
        "{calls:?}"
    );
}

#[tokio::test]
async fn a_ready_upload_lists_download_urls_for_trusted_objects_only() {
    let h = harness();
    let reply = h.create(&photo()).await;
    let id: UploadId = reply.body["uploadId"].as_str().unwrap().parse().unwrap();
    let trusted = format!("trusted/acme/avatar/{id}");
    let media = json!({
        "original": {"name": "original", "key": trusted, "contentType": "image/jpeg", "width": 640, "height": 480},
        "variants": [
            {"name": "thumb", "key": format!("{trusted}.thumb.webp"), "contentType": "image/webp", "width": 256, "height": 192},
            {"name": "sneaky", "key": format!("quarantine/acme/avatar/{id}"), "contentType": "image/webp"},
        ],
        "metadata": {"width": 640, "height": 480},
    });
    for (from, to) in [
        (IntentState::Pending, IntentState::Processing),
        (IntentState::Processing, IntentState::Ready),
    ] {
        let outcome = (to == IntentState::Ready).then(|| IntentOutcome {
            key: trusted.clone(),
            reason: None,
            detail: None,
            sha256: Some("ab".repeat(32)),
            size: Some(48213),
            engine: None,
            media: Some(media.clone()),
        });
        h.intents
            .transition(
                id,
                Transition {
                    from: vec![from],
                    to,
                    at: start(),
                    outcome,
                    review: false,
                },
            )
            .await
            .unwrap();
    }
    let status = h
        .call(Method::GET, &format!("/uploads/{id}"), &Value::Null)
        .await;
    assert_eq!(status.body["state"], "READY", "{}", status.body);
    assert_eq!(status.body["metadata"]["width"], 640);
    assert!(
        status.body["original"]["url"]
            .as_str()
            .unwrap()
            .contains(&format!("/uploads/{trusted}?"))
    );
    let variants = status.body["variants"].as_array().unwrap();
    assert_eq!(
        variants.len(),
        1,
        "nothing outside trusted/ is signed: {variants:?}"
    );
    assert_eq!(variants[0]["name"], "thumb");
    assert_eq!(variants[0]["width"], 256);
}

#[tokio::test]
async fn a_quarantined_upload_reports_its_reason() {
    let h = harness();
    let reply = h.create(&photo()).await;
    let id: UploadId = reply.body["uploadId"].as_str().unwrap().parse().unwrap();
    let outcome = IntentOutcome {
        key: format!("quarantine/acme/avatar/{id}"),
        reason: Some(ReasonCode::Infected),
        detail: Some("Eicar-Signature".into()),
        sha256: None,
        size: None,
        engine: None,
        media: None,
    };
    h.intents
        .transition(
            id,
            Transition {
                from: vec![IntentState::Pending],
                to: IntentState::Quarantined,
                at: start(),
                outcome: Some(outcome),
                review: false,
            },
        )
        .await
        .unwrap();
    let status = h
        .call(Method::GET, &format!("/uploads/{id}"), &Value::Null)
        .await;
    assert_eq!(status.body["state"], "QUARANTINED");
    assert_eq!(status.body["reason"], "infected");
    assert!(status.body.get("original").is_none());
}

#[tokio::test]
async fn the_config_route_needs_no_token() {
    let h = harness();
    let reply = h
        .call_as(
            Err(Problem::unauthorized("no token")),
            Method::GET,
            "/config",
            &[],
            b"",
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["purposes"]["avatar"]["maxSize"], 10 * MIB);
    assert_eq!(reply.body["multipartThreshold"], 100 * MIB);
}

#[tokio::test]
async fn a_huge_upload_gets_larger_parts_and_its_later_part_urls_on_request() {
    let h = harness_with(
        Policies::from_toml(
            "[purposes.archive]\nallowed_types = [\"application/zip\"]\nmax_size = \"100 GiB\"\n",
        )
        .unwrap(),
    );
    let size = 100 * 1024 * MIB;
    let reply = h
        .create(&json!({"purpose": "archive", "contentType": "application/zip", "size": size}))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    // 10,000 parts at most: 100 GiB needs parts of 11 MiB (10.24 rounded up).
    assert_eq!(reply.body["partSize"], 11 * MIB);
    let count = size.div_ceil(11 * MIB);
    assert_eq!(reply.body["partCount"], count);
    assert_eq!(reply.body["parts"].as_array().unwrap().len(), 1000);
    let id = reply.body["uploadId"].as_str().unwrap();
    let last = h
        .call(
            Method::GET,
            &format!("/uploads/{id}/parts/{count}"),
            &Value::Null,
        )
        .await;
    assert_eq!(last.status, StatusCode::OK, "{}", last.body);
    assert_eq!(last.body["size"], size - (count - 1) * 11 * MIB);
}
