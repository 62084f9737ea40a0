//! The endpoint driven by the AWS SDK for Rust (plain HTTP): header-signed calls, the SDK's
//! own presigned URLs, multipart with `ListParts` and abort.

mod common;

use std::time::Duration;

use airlock_core::ports::{ObjectWriter as _, WriteMode};
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use base64::Engine as _;
use common::{
    ACCESS_KEY, BUCKET, Harness, REGION, SECRET_KEY, md5_hex, multipart_etag, parsed, payload,
};
use sha2::{Digest as _, Sha256};

fn sdk(h: &Harness, secret: &str) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(h.handle.url())
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new(ACCESS_KEY, secret, None, None, "test"))
        .force_path_style(true)
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

fn code<E: aws_sdk_s3::error::ProvideErrorMetadata + std::fmt::Debug>(
    result: Result<impl std::fmt::Debug, aws_sdk_s3::error::SdkError<E>>,
) -> String {
    let err = result.expect_err("the call succeeded");
    err.as_service_error()
        .and_then(|e| e.code())
        .map_or_else(|| format!("not a service error: {err:?}"), str::to_owned)
}

#[tokio::test]
async fn sdk_put_is_stored_and_announced_and_get_reads_trusted_only() {
    let mut h = Harness::start().await;
    let s3 = sdk(&h, SECRET_KEY);
    let key = "incoming/acme/doc/sdk put.pdf";
    let body = payload(70_000);
    let put = s3
        .put_object()
        .bucket(BUCKET)
        .key(key)
        .content_type("application/pdf")
        .if_none_match("*")
        .body(ByteStream::from(body.clone()))
        .send()
        .await
        .unwrap();
    let version = h.version(key).await.unwrap();
    assert_eq!(put.version_id(), Some(version.0.as_str()));
    assert_eq!(
        put.e_tag(),
        Some(format!("\"{}\"", md5_hex(&body)).as_str())
    );
    assert_eq!(h.bytes(key).await, Some(body.clone()));
    let object = parsed(&h.one_event());
    assert_eq!(object.key, key);
    assert_eq!(object.size, Some(70_000));
    assert_eq!(object.etag, Some(md5_hex(&body)));

    // Create-only again: refused, the object kept.
    let again = s3
        .put_object()
        .bucket(BUCKET)
        .key(key)
        .if_none_match("*")
        .body(ByteStream::from(b"other".to_vec()))
        .send()
        .await;
    assert_eq!(code(again), "PreconditionFailed");
    assert_eq!(h.version(key).await, Some(version));
    h.no_event();

    // A wrong SHA-256: BadDigest, nothing at the key.
    let wrong = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(b"other"));
    let bad = s3
        .put_object()
        .bucket(BUCKET)
        .key("incoming/acme/doc/bad")
        .checksum_sha256(wrong)
        .body(ByteStream::from(body.clone()))
        .send()
        .await;
    assert_eq!(code(bad), "BadDigest");
    assert!(h.version("incoming/acme/doc/bad").await.is_none());
    h.no_event();

    // Reads: not of incoming/, yes of trusted/.
    let denied = s3.get_object().bucket(BUCKET).key(key).send().await;
    assert_eq!(code(denied), "AccessDenied");
    h.store
        .put(
            "trusted/acme/doc/out.json",
            br#"{"ok":true}"#.to_vec(),
            "application/json",
            WriteMode::Overwrite,
        )
        .await
        .unwrap();
    let got = s3
        .get_object()
        .bucket(BUCKET)
        .key("trusted/acme/doc/out.json")
        .send()
        .await
        .unwrap();
    assert_eq!(got.content_type(), Some("application/json"));
    let bytes = got.body.collect().await.unwrap().into_bytes();
    assert_eq!(bytes.as_ref(), br#"{"ok":true}"#);

    // Another secret, another bucket.
    let forged = sdk(&h, "not-the-secret")
        .put_object()
        .bucket(BUCKET)
        .key("incoming/acme/doc/forged")
        .body(ByteStream::from(b"x".to_vec()))
        .send()
        .await;
    assert_eq!(code(forged), "SignatureDoesNotMatch");
    let other_bucket = s3
        .put_object()
        .bucket("other-bucket")
        .key("incoming/acme/doc/x")
        .body(ByteStream::from(b"x".to_vec()))
        .send()
        .await;
    assert_eq!(code(other_bucket), "NoSuchBucket");
    assert!(h.version("incoming/acme/doc/forged").await.is_none());
    h.no_event();
}

/// The URL with the first digit of its signature changed.
fn flip_signature(url: &str) -> String {
    let at = url.find("X-Amz-Signature=").unwrap() + "X-Amz-Signature=".len();
    let digit = if &url[at..=at] == "0" { "1" } else { "0" };
    format!("{}{digit}{}", &url[..at], &url[at + 1..])
}

#[tokio::test]
async fn the_sdks_presigned_put_is_verified() {
    let mut h = Harness::start().await;
    let s3 = sdk(&h, SECRET_KEY);
    let key = "incoming/acme/avatar/sdk-presigned";
    let body = payload(2048);
    let presigned = s3
        .put_object()
        .bucket(BUCKET)
        .key(key)
        .content_type("image/png")
        .content_length(2048)
        .presigned(PresigningConfig::expires_in(Duration::from_mins(5)).unwrap())
        .await
        .unwrap();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let send = |url: String, content_type: &'static str, body: Vec<u8>| {
        let client = client.clone();
        let headers: Vec<(String, String)> = presigned
            .headers()
            .filter(|(name, _)| !name.eq_ignore_ascii_case("content-length"))
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect();
        async move {
            let mut request = client.put(url);
            for (name, value) in headers {
                if name.eq_ignore_ascii_case("content-type") {
                    request = request.header(name, content_type);
                } else {
                    request = request.header(name, value);
                }
            }
            request.body(body).send().await.unwrap().status()
        }
    };
    let url = presigned.uri().to_owned();
    // Signed ten minutes ago for five: the same headers, an expired URL.
    let expired = s3
        .put_object()
        .bucket(BUCKET)
        .key(key)
        .content_type("image/png")
        .content_length(2048)
        .presigned(
            PresigningConfig::builder()
                .start_time(std::time::SystemTime::now() - Duration::from_mins(10))
                .expires_in(Duration::from_mins(5))
                .build()
                .unwrap(),
        )
        .await
        .unwrap()
        .uri()
        .to_owned();
    assert!(url.contains("X-Amz-Signature="), "{url}");
    let refused = [
        ("expired", expired, "image/png", body.clone()),
        ("other content type", url.clone(), "text/html", body.clone()),
        ("one byte more", url.clone(), "image/png", payload(2049)),
        (
            "other key",
            url.replace("sdk-presigned?", "sdk-other?"),
            "image/png",
            body.clone(),
        ),
        (
            "tampered signature",
            flip_signature(&url),
            "image/png",
            body.clone(),
        ),
    ];
    for (what, url, content_type, body) in refused {
        let status = send(url, content_type, body).await;
        assert_eq!(status, reqwest::StatusCode::FORBIDDEN, "{what}");
        assert_eq!(h.stored_files(), Vec::<String>::new(), "{what} stored");
        h.no_event();
    }
    let status = send(url, "image/png", body.clone()).await;
    assert_eq!(status, reqwest::StatusCode::OK);
    assert_eq!(h.bytes(key).await, Some(body.clone()));
    assert_eq!(parsed(&h.one_event()).etag, Some(md5_hex(&body)));
}

#[tokio::test]
async fn sdk_multipart_lists_parts_and_completes_create_only() {
    let mut h = Harness::start().await;
    let s3 = sdk(&h, SECRET_KEY);
    let key = "incoming/acme/video/sdk-multipart";
    let created = s3
        .create_multipart_upload()
        .bucket(BUCKET)
        .key(key)
        .content_type("video/mp4")
        .send()
        .await
        .unwrap();
    let upload_id = created.upload_id().unwrap().to_owned();
    let parts = [payload(5 << 20), payload(5 << 20), payload(777)];
    let mut completed = Vec::new();
    for (number, part) in (1..).zip(&parts) {
        let out = s3
            .upload_part()
            .bucket(BUCKET)
            .key(key)
            .upload_id(&upload_id)
            .part_number(number)
            .body(ByteStream::from(part.clone()))
            .send()
            .await
            .unwrap();
        assert_eq!(out.e_tag(), Some(format!("\"{}\"", md5_hex(part)).as_str()));
        completed.push(
            CompletedPart::builder()
                .part_number(number)
                .e_tag(out.e_tag().unwrap())
                .build(),
        );
    }
    let listed = s3
        .list_parts()
        .bucket(BUCKET)
        .key(key)
        .upload_id(&upload_id)
        .send()
        .await
        .unwrap();
    let listed: Vec<(i32, i64)> = listed
        .parts()
        .iter()
        .map(|p| (p.part_number().unwrap(), p.size().unwrap()))
        .collect();
    assert_eq!(listed, vec![(1, 5 << 20), (2, 5 << 20), (3, 777)]);
    assert_eq!(h.stored_files(), Vec::<String>::new());

    let done = s3
        .complete_multipart_upload()
        .bucket(BUCKET)
        .key(key)
        .upload_id(&upload_id)
        .if_none_match("*")
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(completed))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let expected = multipart_etag(&[&parts[0], &parts[1], &parts[2]]);
    assert_eq!(done.e_tag(), Some(format!("\"{expected}\"").as_str()));
    assert_eq!(h.bytes(key).await, Some(parts.concat()));
    let object = parsed(&h.one_event());
    assert_eq!(object.etag, Some(expected));
    assert_eq!(object.size, Some(parts.concat().len() as u64));
    assert_eq!(h.part_files(), Vec::<String>::new());

    h.no_event();
}

#[tokio::test]
async fn sdk_abort_removes_the_parts() {
    let mut h = Harness::start().await;
    let s3 = sdk(&h, SECRET_KEY);
    // An upload given up: its parts go, and it is gone.
    let other = s3
        .create_multipart_upload()
        .bucket(BUCKET)
        .key("incoming/acme/video/given-up")
        .send()
        .await
        .unwrap();
    let other_id = other.upload_id().unwrap();
    s3.upload_part()
        .bucket(BUCKET)
        .key("incoming/acme/video/given-up")
        .upload_id(other_id)
        .part_number(1)
        .body(ByteStream::from(payload(100)))
        .send()
        .await
        .unwrap();
    assert!(!h.part_files().is_empty());
    s3.abort_multipart_upload()
        .bucket(BUCKET)
        .key("incoming/acme/video/given-up")
        .upload_id(other_id)
        .send()
        .await
        .unwrap();
    assert_eq!(h.part_files(), Vec::<String>::new());
    let again = s3
        .abort_multipart_upload()
        .bucket(BUCKET)
        .key("incoming/acme/video/given-up")
        .upload_id(other_id)
        .send()
        .await;
    assert_eq!(code(again), "NoSuchUpload");
    assert_eq!(h.stored_files(), Vec::<String>::new());
    h.no_event();
}
