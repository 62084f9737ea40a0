//! Requests signed by airlock's own presigner, sent over HTTP to the endpoint on
//! 127.0.0.1: what is valid is stored and announced once; what is altered, expired, signed by
//! another identity or fails its checks is refused, and then nothing is stored or replaced
//! and nothing is announced.

mod common;

use std::fmt::Write as _;
use std::time::Duration;

use airlock_core::ports::{ObjectWriter as _, WriteMode};
use airlock_presign::{Credentials, PostRequest, PresignedRequest, PutRequest, UploadPartRequest};
use base64::Engine as _;
use chrono::{TimeDelta, Utc};
use common::{BUCKET, Harness, ORIGIN, md5_hex, multipart_etag, parsed, payload};
use reqwest::StatusCode;
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// Sends a presigned request with its headers (`content-length` comes from the body, so
/// another body sends another length), leaving out `skip_header`.
async fn send(
    presigned: &PresignedRequest,
    skip_header: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let method = reqwest::Method::from_bytes(presigned.method.as_bytes()).unwrap();
    let mut request = client().request(method, &presigned.url);
    for (name, value) in &presigned.headers {
        if *name != "content-length" && Some(*name) != skip_header {
            request = request.header(*name, value);
        }
    }
    let response = request.body(body).send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap())
}

fn xml_value<'a>(xml: &'a str, tag: &str) -> &'a str {
    let open = format!("<{tag}>");
    let start = xml
        .find(&open)
        .unwrap_or_else(|| panic!("no <{tag}> in {xml}"))
        + open.len();
    let end = xml[start..].find(&format!("</{tag}>")).unwrap() + start;
    &xml[start..end]
}

fn sha256_b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(data))
}

#[tokio::test]
async fn a_valid_put_is_stored_and_announced_once() {
    let mut h = Harness::start().await;
    let key = "incoming/acme/avatar/a file ü+1.png";
    let body = payload(10_000);
    let checksum = sha256_b64(&body);
    let put = h
        .presigner()
        .presign_put(
            &PutRequest::new(BUCKET, key, "image/png", 10_000).checksum_sha256(&checksum),
            Utc::now(),
        )
        .unwrap();
    let (status, headers, text) = send(&put, None, body.clone()).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(h.bytes(key).await.as_deref(), Some(body.as_slice()));
    let version = h.version(key).await.unwrap();
    assert_eq!(headers["etag"], format!("\"{}\"", md5_hex(&body)).as_str());
    assert_eq!(headers["x-amz-version-id"], version.0.as_str());

    let event = h.one_event();
    let record = &event["Records"][0];
    assert_eq!(record["eventName"], "ObjectCreated:Put");
    assert_eq!(record["eventSource"], "aws:s3");
    assert_eq!(record["awsRegion"], "us-east-1");
    assert_eq!(record["s3"]["bucket"]["arn"], "arn:aws:s3:::uploads");
    assert_eq!(
        record["s3"]["object"]["key"],
        "incoming/acme/avatar/a+file+%C3%BC%2B1.png"
    );
    let object = parsed(&event);
    assert_eq!(object.bucket, BUCKET);
    assert_eq!(object.key, key);
    assert_eq!(object.size, Some(10_000));
    assert_eq!(object.etag, Some(md5_hex(&body)));
    assert_eq!(object.version_id, Some(version.0));
    assert_eq!(object.event_name.as_deref(), Some("ObjectCreated:Put"));
    assert!(object.sequencer.is_some());
    assert!(object.event_time.is_some());
    // Nothing is left aside: the one object, no temporary file.
    assert_eq!(h.stored_files(), vec![key.to_owned()]);
}

#[tokio::test]
async fn altered_presigned_puts_are_refused_and_store_nothing() {
    let mut h = Harness::start().await;
    let signer = h.presigner();
    let key = "incoming/acme/avatar/x";
    let body = payload(1000);
    let request = PutRequest::new(BUCKET, key, "image/png", 1000);
    let valid = signer.presign_put(&request, Utc::now()).unwrap();

    let mut tampered = valid.clone();
    let last = tampered.url.pop().unwrap();
    tampered.url.push(if last == '0' { '1' } else { '0' });
    // Signed ten minutes ago, valid for five.
    let expired = signer
        .presign_put(&request, Utc::now() - TimeDelta::minutes(10))
        .unwrap();
    let mut other_key = valid.clone();
    other_key.url = valid
        .url
        .replace("/incoming/acme/avatar/x?", "/incoming/acme/avatar/y?");
    let mut other_type = valid.clone();
    other_type.headers = vec![
        ("content-type", "text/html".to_owned()),
        ("if-none-match", "*".to_owned()),
    ];
    let wrong_secret = h
        .presigner_as(Credentials::new(common::ACCESS_KEY, "not-the-secret"))
        .presign_put(&request, Utc::now())
        .unwrap();
    let other_identity = h
        .presigner_as(Credentials::new("someone-else", common::SECRET_KEY))
        .presign_put(&request, Utc::now())
        .unwrap();

    let cases = [
        ("tampered signature", &tampered, None, body.clone()),
        ("expired", &expired, None, body.clone()),
        ("other key", &other_key, None, body.clone()),
        ("other content type", &other_type, None, body.clone()),
        ("one byte more", &valid, None, payload(1001)),
        ("one byte less", &valid, None, payload(999)),
        ("wrong secret", &wrong_secret, None, body.clone()),
        ("unknown access key", &other_identity, None, body.clone()),
        (
            "signed If-None-Match left out",
            &valid,
            Some("if-none-match"),
            body.clone(),
        ),
    ];
    for (what, presigned, skip, body) in cases {
        let (status, _, text) = send(presigned, skip, body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{what}: {text}");
        assert_eq!(h.stored_files(), Vec::<String>::new(), "{what} stored");
        h.no_event();
    }

    let (status, _, text) = send(&valid, None, body.clone()).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(h.bytes(key).await, Some(body));
    h.one_event();
}

#[tokio::test]
async fn a_second_create_only_put_replaces_nothing() {
    let mut h = Harness::start().await;
    let signer = h.presigner();
    let key = "incoming/acme/doc/once";
    let first = signer
        .presign_put(
            &PutRequest::new(BUCKET, key, "application/pdf", 3),
            Utc::now(),
        )
        .unwrap();
    let (status, _, text) = send(&first, None, b"one".to_vec()).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    h.one_event();
    let version = h.version(key).await.unwrap();

    // The same (leaked) URL again, and a fresh create-only URL.
    let second = signer
        .presign_put(
            &PutRequest::new(BUCKET, key, "application/pdf", 3),
            Utc::now(),
        )
        .unwrap();
    for presigned in [&first, &second] {
        let (status, _, text) = send(presigned, None, b"two".to_vec()).await;
        assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{text}");
        assert!(text.contains("PreconditionFailed"), "{text}");
        assert_eq!(h.version(key).await, Some(version.clone()));
        assert_eq!(h.bytes(key).await.as_deref(), Some(b"one".as_slice()));
        h.no_event();
    }
    assert_eq!(h.stored_files(), vec![key.to_owned()]);
}

#[tokio::test]
async fn a_bad_checksum_stores_nothing_at_the_key() {
    let mut h = Harness::start().await;
    let signer = h.presigner();
    let key = "incoming/acme/avatar/sum";
    let body = payload(4096);
    let presigned = signer
        .presign_put(
            &PutRequest::new(BUCKET, key, "image/png", 4096).checksum_sha256(&sha256_b64(&body)),
            Utc::now(),
        )
        .unwrap();
    let mut other = body.clone();
    other[4000] ^= 1;
    let (status, _, text) = send(&presigned, None, other).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("BadDigest"), "{text}");
    assert_eq!(h.stored_files(), Vec::<String>::new());
    h.no_event();

    // Create-only still finds the key free, and the right bytes go in.
    let (status, _, text) = send(&presigned, None, body.clone()).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(h.bytes(key).await, Some(body));
    h.one_event();
}

#[tokio::test]
async fn a_body_cut_short_stores_nothing() {
    let mut h = Harness::start().await;
    let key = "incoming/acme/avatar/cut";
    let presigned = h
        .presigner()
        .presign_put(&PutRequest::new(BUCKET, key, "image/png", 1000), Utc::now())
        .unwrap();
    // The signed headers, Content-Length 1000 included, then 999 bytes and the end.
    let path = presigned
        .url
        .strip_prefix(&h.handle.url())
        .unwrap()
        .to_owned();
    let mut request = format!("PUT {path} HTTP/1.1\r\nhost: {}\r\n", h.handle.local_addr());
    for (name, value) in &presigned.headers {
        write!(request, "{name}: {value}\r\n").unwrap();
    }
    request.push_str("\r\n");
    let mut socket = tokio::net::TcpStream::connect(h.handle.local_addr())
        .await
        .unwrap();
    socket.write_all(request.as_bytes()).await.unwrap();
    socket.write_all(&payload(999)).await.unwrap();
    socket.shutdown().await.unwrap();
    // The server closes the connection once it has dealt with the request.
    let mut answer = Vec::new();
    let _ = socket.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(!answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(h.stored_files(), Vec::<String>::new());
    h.no_event();
}

#[tokio::test]
async fn writes_outside_incoming_reads_outside_trusted_and_other_buckets_are_refused() {
    let mut h = Harness::start().await;
    let signer = h.presigner();
    h.store
        .put(
            "incoming/acme/avatar/secret",
            b"s".to_vec(),
            "text/plain",
            WriteMode::Overwrite,
        )
        .await
        .unwrap();
    h.store
        .put(
            "quarantine/acme/avatar/bad",
            b"q".to_vec(),
            "text/plain",
            WriteMode::Overwrite,
        )
        .await
        .unwrap();
    for key in ["incoming/acme/avatar/secret", "quarantine/acme/avatar/bad"] {
        let get = signer.presign_get(BUCKET, key, None, Utc::now()).unwrap();
        let (status, _, text) = send(&get, None, Vec::new()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{key}: {text}");
        assert!(
            text.contains("AccessDenied") && text.contains(key),
            "{text}"
        );
    }
    for key in ["trusted/acme/avatar/x", "quarantine/acme/avatar/x", "x"] {
        let put = signer
            .presign_put(&PutRequest::new(BUCKET, key, "text/plain", 1), Utc::now())
            .unwrap();
        let (status, _, text) = send(&put, None, b"x".to_vec()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{key}: {text}");
        assert!(h.version(key).await.is_none());
    }
    let put = signer
        .presign_put(
            &PutRequest::new("other-bucket", "incoming/a/b/c", "text/plain", 1),
            Utc::now(),
        )
        .unwrap();
    let (status, _, text) = send(&put, None, b"x".to_vec()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{text}");
    assert!(text.contains("NoSuchBucket"), "{text}");
    h.no_event();
}

#[tokio::test]
async fn a_presigned_get_reads_a_trusted_object() {
    let h = Harness::start().await;
    let key = "trusted/acme/avatar/0193";
    // A PNG signature, then anything: the store keeps no content type, the endpoint sniffs.
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(payload(5000));
    h.store
        .put(key, png.clone(), "image/png", WriteMode::Overwrite)
        .await
        .unwrap();
    let get = h
        .presigner()
        .presign_get(BUCKET, key, None, Utc::now())
        .unwrap();
    let response = client().get(&get.url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "image/png");
    assert_eq!(
        response.headers()["x-amz-version-id"],
        h.version(key).await.unwrap().0.as_str()
    );
    assert_eq!(response.bytes().await.unwrap().as_ref(), png.as_slice());

    let ranged = client()
        .get(&get.url)
        .header("range", "bytes=8-17")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        ranged.headers()["content-range"],
        format!("bytes 8-17/{}", png.len()).as_str()
    );
    assert_eq!(ranged.bytes().await.unwrap().as_ref(), &png[8..18]);

    let missing = h
        .presigner()
        .presign_get(BUCKET, "trusted/acme/avatar/none", None, Utc::now())
        .unwrap();
    let (status, _, text) = send(&missing, None, Vec::new()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{text}");
    assert!(text.contains("NoSuchKey"), "{text}");
}

async fn post_form(
    url: &str,
    fields: &[(&'static str, String)],
    file: Vec<u8>,
) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let mut form = reqwest::multipart::Form::new();
    for (name, value) in fields {
        form = form.text(*name, value.clone());
    }
    form = form.part(
        "file",
        reqwest::multipart::Part::bytes(file).file_name("upload.jpg"),
    );
    let response = client().post(url).multipart(form).send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap())
}

#[tokio::test]
async fn a_post_form_is_accepted_within_its_policy_only() {
    let mut h = Harness::start().await;
    let signer = h.presigner();
    let key = "incoming/acme/avatar/form";
    let post = signer
        .presign_post(
            &PostRequest::new(BUCKET, key, "image/jpeg", 10, 100),
            Utc::now(),
        )
        .unwrap();
    let with = |name: &str, value: &str| -> Vec<(&'static str, String)> {
        post.fields
            .iter()
            .map(|(n, v)| {
                (
                    *n,
                    if *n == name {
                        value.to_owned()
                    } else {
                        v.clone()
                    },
                )
            })
            .collect()
    };
    let expired = signer
        .presign_post(
            &PostRequest::new(BUCKET, key, "image/jpeg", 10, 100),
            Utc::now() - TimeDelta::minutes(10),
        )
        .unwrap();
    let other_identity = h
        .presigner_as(Credentials::new("someone-else", common::SECRET_KEY))
        .presign_post(
            &PostRequest::new(BUCKET, key, "image/jpeg", 10, 100),
            Utc::now(),
        )
        .unwrap();
    let refused = [
        ("over the range", post.fields.clone(), payload(101)),
        ("under the range", post.fields.clone(), payload(9)),
        (
            "other key",
            with("key", "incoming/acme/avatar/other"),
            payload(50),
        ),
        (
            "other content type",
            with("Content-Type", "text/html"),
            payload(50),
        ),
        (
            "tampered signature",
            with("x-amz-signature", &"0".repeat(64)),
            payload(50),
        ),
        ("expired", expired.fields.clone(), payload(50)),
        ("other identity", other_identity.fields.clone(), payload(50)),
    ];
    for (what, fields, file) in refused {
        let (status, _, text) = post_form(&post.url, &fields, file).await;
        assert!(status.is_client_error(), "{what}: {status} {text}");
        assert_eq!(h.stored_files(), Vec::<String>::new(), "{what} stored");
        h.no_event();
    }

    let file = payload(100);
    let (status, headers, text) = post_form(&post.url, &post.fields, file.clone()).await;
    assert!(status.is_success(), "{status} {text}");
    assert_eq!(headers["etag"], format!("\"{}\"", md5_hex(&file)).as_str());
    assert_eq!(h.bytes(key).await, Some(file.clone()));
    let object = parsed(&h.one_event());
    assert_eq!(object.key, key);
    assert_eq!(object.size, Some(100));
    assert_eq!(object.etag, Some(md5_hex(&file)));
    assert_eq!(object.event_name.as_deref(), Some("ObjectCreated:Post"));
    assert_eq!(object.version_id, h.version(key).await.map(|v| v.0));
}

async fn create_upload(h: &Harness, key: &str) -> String {
    let create = h
        .presigner()
        .presign_create_multipart_upload(BUCKET, key, "application/zip", None, Utc::now())
        .unwrap();
    let (status, _, xml) = send(&create, None, Vec::new()).await;
    assert_eq!(status, StatusCode::OK, "{xml}");
    xml_value(&xml, "UploadId").to_owned()
}

async fn upload_part(h: &Harness, key: &str, upload_id: &str, number: u32, part: &[u8]) -> String {
    let presigned = h
        .presigner()
        .presign_upload_part(
            &UploadPartRequest {
                bucket: BUCKET,
                key,
                upload_id,
                part_number: number,
                content_length: part.len() as u64,
                expires_in: Some(Duration::from_mins(10)),
            },
            Utc::now(),
        )
        .unwrap();
    let (status, headers, text) = send(&presigned, None, part.to_vec()).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    headers["etag"].to_str().unwrap().to_owned()
}

async fn complete(
    h: &Harness,
    key: &str,
    upload_id: &str,
    parts: &[(u32, &str)],
    create_only: bool,
) -> (StatusCode, String) {
    let mut body = String::from("<CompleteMultipartUpload>");
    for (n, etag) in parts {
        write!(
            body,
            "<Part><PartNumber>{n}</PartNumber><ETag>{etag}</ETag></Part>"
        )
        .unwrap();
    }
    body.push_str("</CompleteMultipartUpload>");
    let presigned = h
        .presigner()
        .presign_complete_multipart_upload(BUCKET, key, upload_id, create_only, None, Utc::now())
        .unwrap();
    let (status, _, text) = send(&presigned, None, body.into_bytes()).await;
    (status, text)
}

#[tokio::test]
async fn a_multipart_upload_is_checked_joined_and_announced() {
    let mut h = Harness::start().await;
    let key = "incoming/acme/video/big";
    let upload_id = create_upload(&h, key).await;
    let parts = [payload(5 << 20), payload((5 << 20) + 3), payload(1234)];

    // A part of another size than signed is refused.
    let presigned = h
        .presigner()
        .presign_upload_part(
            &UploadPartRequest {
                bucket: BUCKET,
                key,
                upload_id: &upload_id,
                part_number: 1,
                content_length: 10,
                expires_in: None,
            },
            Utc::now(),
        )
        .unwrap();
    let (status, _, _) = send(&presigned, None, payload(11)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let mut etags = Vec::new();
    for (number, part) in (1..).zip(&parts) {
        etags.push(upload_part(&h, key, &upload_id, number, part).await);
    }
    assert_eq!(etags[0], format!("\"{}\"", md5_hex(&parts[0])));
    // Parts are not objects.
    assert_eq!(h.stored_files(), Vec::<String>::new());
    assert_eq!(h.part_files().len(), 4, "{:?}", h.part_files());

    let refused = [
        (
            "descending",
            vec![(2, etags[1].as_str()), (1, etags[0].as_str())],
            "InvalidPartOrder",
        ),
        (
            "repeated",
            vec![(1, etags[0].as_str()), (1, etags[0].as_str())],
            "InvalidPartOrder",
        ),
        (
            "wrong ETag",
            vec![(1, etags[1].as_str()), (2, etags[1].as_str())],
            "InvalidPart",
        ),
        (
            "never uploaded",
            vec![(1, etags[0].as_str()), (4, etags[1].as_str())],
            "InvalidPart",
        ),
    ];
    for (what, list, code) in refused {
        let (status, text) = complete(&h, key, &upload_id, &list, true).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {text}");
        assert!(text.contains(code), "{what}: {text}");
        assert_eq!(h.stored_files(), Vec::<String>::new(), "{what}");
        h.no_event();
    }

    let (status, text) = complete(
        &h,
        key,
        &upload_id,
        &[(1, &etags[0]), (2, &etags[1]), (3, &etags[2])],
        true,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let expected_etag = multipart_etag(&[&parts[0], &parts[1], &parts[2]]);
    assert!(text.contains(&expected_etag), "{text}");
    assert_eq!(h.bytes(key).await, Some(parts.concat()));
    // The parts are gone with the upload.
    assert_eq!(h.part_files(), Vec::<String>::new());
    let object = parsed(&h.one_event());
    assert_eq!(object.key, key);
    assert_eq!(object.size, Some(parts.concat().len() as u64));
    assert_eq!(object.etag, Some(expected_etag));
    assert_eq!(
        object.event_name.as_deref(),
        Some("ObjectCreated:CompleteMultipartUpload")
    );
    assert_eq!(object.version_id, h.version(key).await.map(|v| v.0));

    // Completing again: the upload no longer exists.
    let (status, text) = complete(&h, key, &upload_id, &[(1, &etags[0])], true).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{text}");
    assert!(text.contains("NoSuchUpload"), "{text}");
}

#[tokio::test]
async fn a_small_part_before_the_last_is_refused() {
    let mut h = Harness::start().await;
    let key = "incoming/acme/video/small";
    let upload_id = create_upload(&h, key).await;
    let small = payload(1000);
    let last = payload(10);
    let first_etag = upload_part(&h, key, &upload_id, 1, &small).await;
    let last_etag = upload_part(&h, key, &upload_id, 2, &last).await;
    let (status, text) = complete(
        &h,
        key,
        &upload_id,
        &[(1, &first_etag), (2, &last_etag)],
        true,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("EntityTooSmall"), "{text}");
    assert_eq!(h.stored_files(), Vec::<String>::new());
    h.no_event();
    // A single part may be small.
    let (status, text) = complete(&h, key, &upload_id, &[(1, &first_etag)], true).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(h.bytes(key).await, Some(small));
    h.one_event();
}

#[tokio::test]
async fn a_create_only_completion_replaces_nothing() {
    let mut h = Harness::start().await;
    let key = "incoming/acme/video/taken";
    h.store
        .put(key, b"first".to_vec(), "video/mp4", WriteMode::CreateOnly)
        .await
        .unwrap();
    let version = h.version(key).await.unwrap();
    let upload_id = create_upload(&h, key).await;
    let etag = upload_part(&h, key, &upload_id, 1, b"second").await;
    let (status, text) = complete(&h, key, &upload_id, &[(1, &etag)], true).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{text}");
    assert_eq!(h.version(key).await, Some(version));
    assert_eq!(h.bytes(key).await.as_deref(), Some(b"first".as_slice()));
    h.no_event();

    // The upload is still there, to be completed without the condition or aborted.
    assert_eq!(h.part_files().len(), 2, "{:?}", h.part_files());
}

#[tokio::test]
async fn cors_preflights_are_answered_for_configured_origins_only() {
    let h = Harness::start().await;
    let url = format!("{}/{BUCKET}/incoming/acme/avatar/x", h.handle.url());
    let preflight = |origin: &'static str, method: &'static str| {
        let url = url.clone();
        async move {
            client()
                .request(reqwest::Method::OPTIONS, &url)
                .header("origin", origin)
                .header("access-control-request-method", method)
                .header(
                    "access-control-request-headers",
                    "content-type,if-none-match,x-amz-checksum-sha256",
                )
                .send()
                .await
                .unwrap()
        }
    };
    let allowed = preflight(ORIGIN, "PUT").await;
    assert_eq!(allowed.status(), StatusCode::OK);
    let headers = allowed.headers();
    assert_eq!(headers["access-control-allow-origin"], ORIGIN);
    assert!(
        headers["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("PUT")
    );
    assert_eq!(
        headers["access-control-allow-headers"],
        "content-type,if-none-match,x-amz-checksum-sha256"
    );
    assert!(
        headers["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .contains("ETag")
    );

    let other = preflight("http://evil.example", "PUT").await;
    assert_eq!(other.status(), StatusCode::FORBIDDEN);
    assert!(!other.headers().contains_key("access-control-allow-origin"));
    let other_method = preflight(ORIGIN, "PATCH").await;
    assert_eq!(other_method.status(), StatusCode::FORBIDDEN);

    // The upload itself, from the browser's origin: ETag readable by the script.
    let put = h
        .presigner()
        .presign_put(
            &PutRequest::new(BUCKET, "incoming/acme/avatar/x", "image/png", 2),
            Utc::now(),
        )
        .unwrap();
    let mut request = client().put(&put.url).header("origin", ORIGIN);
    for (name, value) in &put.headers {
        if *name != "content-length" {
            request = request.header(*name, value);
        }
    }
    let response = request.body(b"hi".to_vec()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["access-control-allow-origin"], ORIGIN);
    assert!(
        response.headers()["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .contains("ETag")
    );
    assert!(response.headers().contains_key("etag"));
}

#[tokio::test]
async fn shutdown_waits_and_stops_listening() {
    let h = Harness::start().await;
    let addr = h.handle.local_addr();
    h.handle.shutdown().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
