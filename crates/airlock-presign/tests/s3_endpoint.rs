//! Presigned requests sent to a real S3 endpoint that verifies `SigV4` (s3s with its
//! filesystem backend, served on 127.0.0.1): valid ones store or return the bytes, altered
//! ones are refused and store nothing.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use airlock_presign::{
    Addressing, Credentials, PostRequest, PresignConfig, PresignedRequest, Presigner, PutRequest,
    UploadPartRequest,
};
use base64::Engine as _;
use chrono::{TimeDelta, Utc};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use reqwest::StatusCode;
use sha2::{Digest as _, Sha256};

const ACCESS_KEY: &str = "airlock-test-access";
const SECRET_KEY: &str = "airlock-test-secret-0123456789";
const BUCKET: &str = "uploads";

struct Endpoint {
    addr: SocketAddr,
    root: tempfile::TempDir,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Endpoint {
    /// Serves s3s-fs over a fresh directory holding one empty bucket. With `virtual_domain`
    /// it also takes `bucket.localhost:PORT` hosts.
    async fn start(virtual_domain: bool) -> Self {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join(BUCKET)).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();

        let mut builder =
            s3s::service::S3ServiceBuilder::new(s3s_fs::FileSystem::new(root.path()).unwrap());
        builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        if virtual_domain {
            builder.set_host(
                s3s::host::SingleDomain::new(&format!("localhost:{}", addr.port())).unwrap(),
            );
        }
        let service = builder.build();

        let server = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let service = service.clone();
                tokio::spawn(async move {
                    let _ = ConnBuilder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(socket), service)
                        .await;
                });
            }
        });
        Self { addr, root, server }
    }

    fn signer(&self, addressing: Addressing, credentials: Credentials) -> Presigner {
        let endpoint = match addressing {
            Addressing::Path => format!("http://{}", self.addr),
            Addressing::VirtualHosted => format!("http://localhost:{}", self.addr.port()),
        };
        Presigner::new(
            PresignConfig::new(endpoint, "us-east-1", addressing),
            credentials,
        )
        .unwrap()
    }

    fn path_presigner(&self) -> Presigner {
        self.signer(Addressing::Path, Credentials::new(ACCESS_KEY, SECRET_KEY))
    }

    fn object_path(&self, key: &str) -> PathBuf {
        self.root.path().join(BUCKET).join(key)
    }

    fn stored(&self, key: &str) -> Option<Vec<u8>> {
        std::fs::read(self.object_path(key)).ok()
    }

    /// Every regular file under the bucket, relative names: what the endpoint stored.
    fn stored_keys(&self) -> Vec<String> {
        fn walk(dir: &std::path::Path, base: &std::path::Path, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, base, out);
                } else {
                    out.push(
                        path.strip_prefix(base)
                            .unwrap()
                            .to_string_lossy()
                            .into_owned(),
                    );
                }
            }
        }
        let mut out = Vec::new();
        let base = self.root.path().join(BUCKET);
        walk(&base, &base, &mut out);
        out.sort();
        out
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// Sends a presigned request with its headers. `content-length` is left to the client,
/// which sets it from the body, so a body of another size sends another length.
async fn send(
    client: &reqwest::Client,
    presigned: &PresignedRequest,
    skip_header: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, String) {
    let method = reqwest::Method::from_bytes(presigned.method.as_bytes()).unwrap();
    let mut request = client.request(method, &presigned.url);
    for (name, value) in &presigned.headers {
        if *name != "content-length" && Some(*name) != skip_header {
            request = request.header(*name, value);
        }
    }
    let response = request.body(body).send().await.unwrap();
    (response.status(), response.text().await.unwrap())
}

fn payload(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| u8::try_from(i * 7 % 251).unwrap())
        .collect()
}

#[tokio::test]
async fn valid_presigned_put_stores_the_bytes_and_presigned_get_returns_them() {
    let endpoint = Endpoint::start(false).await;
    let signer = endpoint.path_presigner();
    let body = payload(10_000);
    let key = "incoming/2026/a file ü+1.png";
    let put = signer
        .presign_put(
            &PutRequest::new(BUCKET, key, "image/png", 10_000),
            Utc::now(),
        )
        .unwrap();
    let (status, text) = send(&client(), &put, None, body.clone()).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(endpoint.stored(key).as_deref(), Some(body.as_slice()));

    let get = signer.presign_get(BUCKET, key, None, Utc::now()).unwrap();
    let response = client().get(&get.url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "image/png");
    assert_eq!(response.bytes().await.unwrap().as_ref(), body.as_slice());

    let mut tampered_get = get.clone();
    tampered_get.url = get
        .url
        .replace(key_path(key).as_str(), &key_path("incoming/2026/other.png"));
    assert_ne!(tampered_get.url, get.url);
    let (status, _) = send(&client(), &tampered_get, None, Vec::new()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

fn key_path(key: &str) -> String {
    key.replace(' ', "%20")
        .replace('ü', "%C3%BC")
        .replace('+', "%2B")
}

#[tokio::test]
async fn altered_presigned_puts_are_refused_and_store_nothing() {
    let endpoint = Endpoint::start(false).await;
    let signer = endpoint.path_presigner();
    let client = client();
    let key = "incoming/x.png";
    let body = payload(1000);
    let valid = signer
        .presign_put(&PutRequest::new(BUCKET, key, "image/png", 1000), Utc::now())
        .unwrap();

    // A changed signature.
    let mut tampered = valid.clone();
    let last = tampered.url.pop().unwrap();
    tampered.url.push(if last == '0' { '1' } else { '0' });
    // Signed ten minutes ago with the default five-minute validity.
    let expired = signer
        .presign_put(
            &PutRequest::new(BUCKET, key, "image/png", 1000),
            Utc::now() - TimeDelta::minutes(10),
        )
        .unwrap();
    // The URL sent to another key.
    let mut other_key = valid.clone();
    other_key.url = valid.url.replace("/incoming/x.png?", "/incoming/y.png?");
    // Another content type.
    let mut other_type = valid.clone();
    other_type.headers = vec![("content-type", "text/html".to_owned())];
    // Signed with a secret the endpoint does not know, and with an unknown access key.
    let wrong_secret = endpoint
        .signer(
            Addressing::Path,
            Credentials::new(ACCESS_KEY, "not-the-secret"),
        )
        .presign_put(&PutRequest::new(BUCKET, key, "image/png", 1000), Utc::now())
        .unwrap();
    let wrong_key_id = endpoint
        .signer(
            Addressing::Path,
            Credentials::new("someone-else", SECRET_KEY),
        )
        .presign_put(&PutRequest::new(BUCKET, key, "image/png", 1000), Utc::now())
        .unwrap();

    let cases = [
        ("tampered signature", &tampered, body.clone()),
        ("expired", &expired, body.clone()),
        ("other key", &other_key, body.clone()),
        ("other content type", &other_type, body.clone()),
        ("one byte more", &valid, payload(1001)),
        ("one byte less", &valid, payload(999)),
        ("wrong secret", &wrong_secret, body.clone()),
        ("unknown access key", &wrong_key_id, body.clone()),
    ];
    for (what, presigned, body) in cases {
        let (status, text) = send(&client, presigned, None, body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{what}: {text}");
        assert_eq!(
            endpoint.stored_keys(),
            Vec::<String>::new(),
            "{what} stored something"
        );
    }

    // Leaving out the signed If-None-Match header breaks the signature too.
    let (status, _) = send(&client, &valid, Some("if-none-match"), body.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(endpoint.stored_keys(), Vec::<String>::new());

    // The untouched request still works.
    let (status, text) = send(&client, &valid, None, body.clone()).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(endpoint.stored(key).as_deref(), Some(body.as_slice()));
}

#[tokio::test]
async fn create_only_put_cannot_replace_a_written_object() {
    let endpoint = Endpoint::start(false).await;
    let signer = endpoint.path_presigner();
    let client = client();
    let key = "incoming/once.bin";
    let first = signer
        .presign_put(
            &PutRequest::new(BUCKET, key, "application/octet-stream", 3),
            Utc::now(),
        )
        .unwrap();
    let (status, text) = send(&client, &first, None, b"one".to_vec()).await;
    assert_eq!(status, StatusCode::OK, "{text}");

    // The same URL used again (a leaked URL), and a fresh create-only URL: both refused.
    let (status, _) = send(&client, &first, None, b"two".to_vec()).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    let second = signer
        .presign_put(
            &PutRequest::new(BUCKET, key, "application/octet-stream", 3),
            Utc::now(),
        )
        .unwrap();
    let (status, _) = send(&client, &second, None, b"two".to_vec()).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(endpoint.stored(key).as_deref(), Some(b"one".as_slice()));

    // Only a URL signed without the condition may overwrite.
    let overwrite = signer
        .presign_put(
            &PutRequest::new(BUCKET, key, "application/octet-stream", 3).allow_overwrite(),
            Utc::now(),
        )
        .unwrap();
    let (status, _) = send(&client, &overwrite, None, b"two".to_vec()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(endpoint.stored(key).as_deref(), Some(b"two".as_slice()));
}

#[tokio::test]
async fn signed_checksum_is_enforced() {
    let endpoint = Endpoint::start(false).await;
    let signer = endpoint.path_presigner();
    let client = client();
    let body = payload(4096);
    let checksum = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&body));
    let req = PutRequest::new(BUCKET, "incoming/sum.bin", "application/octet-stream", 4096)
        .checksum_sha256(&checksum);
    let presigned = signer.presign_put(&req, Utc::now()).unwrap();
    assert!(presigned.url.contains("x-amz-checksum-sha256"));

    // Same size, other bytes: the digest does not match. (Another key: s3s-fs checks the
    // digest only after writing the file and leaves it there, unlike S3.)
    let mut other = body.clone();
    other[0] ^= 1;
    let other_key = PutRequest {
        key: "incoming/sum2.bin",
        ..req
    };
    let (status, text) = send(
        &client,
        &signer.presign_put(&other_key, Utc::now()).unwrap(),
        None,
        other,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("BadDigest"), "{text}");
    // Without the signed checksum header: refused before any check of the body.
    let (status, _) = send(
        &client,
        &presigned,
        Some("x-amz-checksum-sha256"),
        body.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (status, text) = send(&client, &presigned, None, body.clone()).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(
        endpoint.stored("incoming/sum.bin").as_deref(),
        Some(body.as_slice())
    );
}

#[tokio::test]
async fn session_token_is_signed_into_the_url() {
    let endpoint = Endpoint::start(false).await;
    let signer = endpoint.signer(
        Addressing::Path,
        Credentials::new(ACCESS_KEY, SECRET_KEY).with_session_token("tok/en+1=="),
    );
    let client = client();
    let presigned = signer
        .presign_put(
            &PutRequest::new(BUCKET, "incoming/t.txt", "text/plain", 2),
            Utc::now(),
        )
        .unwrap();
    assert!(
        presigned
            .url
            .contains("X-Amz-Security-Token=tok%2Fen%2B1%3D%3D")
    );
    let mut other_token = presigned.clone();
    other_token.url = presigned.url.replace("tok%2Fen%2B1", "tok%2Fen%2B2");
    let (status, _) = send(&client, &other_token, None, b"hi".to_vec()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(endpoint.stored_keys(), Vec::<String>::new());
    let (status, text) = send(&client, &presigned, None, b"hi".to_vec()).await;
    assert_eq!(status, StatusCode::OK, "{text}");
}

#[tokio::test]
async fn virtual_hosted_presigned_put_and_get() {
    let endpoint = Endpoint::start(true).await;
    let signer = endpoint.signer(
        Addressing::VirtualHosted,
        Credentials::new(ACCESS_KEY, SECRET_KEY),
    );
    let client = reqwest::Client::builder()
        .no_proxy()
        .resolve(&format!("{BUCKET}.localhost"), endpoint.addr)
        .build()
        .unwrap();
    let put = signer
        .presign_put(
            &PutRequest::new(BUCKET, "incoming/v.txt", "text/plain", 5),
            Utc::now(),
        )
        .unwrap();
    assert!(put.url.starts_with(&format!(
        "http://{BUCKET}.localhost:{}/incoming/v.txt?",
        endpoint.addr.port()
    )));
    let (status, text) = send(&client, &put, None, b"hello".to_vec()).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(
        endpoint.stored("incoming/v.txt").as_deref(),
        Some(b"hello".as_slice())
    );

    let get = signer
        .presign_get(BUCKET, "incoming/v.txt", None, Utc::now())
        .unwrap();
    let (status, text) = send(&client, &get, None, Vec::new()).await;
    assert_eq!((status, text.as_str()), (StatusCode::OK, "hello"));
}

async fn post_form(
    client: &reqwest::Client,
    url: &str,
    fields: &[(&'static str, String)],
    file: Vec<u8>,
) -> (StatusCode, String) {
    let mut form = reqwest::multipart::Form::new();
    for (name, value) in fields {
        form = form.text(*name, value.clone());
    }
    form = form.part(
        "file",
        reqwest::multipart::Part::bytes(file).file_name("upload.bin"),
    );
    let response = client.post(url).multipart(form).send().await.unwrap();
    (response.status(), response.text().await.unwrap())
}

#[tokio::test]
async fn post_policy_upload_is_accepted_within_its_conditions_only() {
    let endpoint = Endpoint::start(false).await;
    let signer = endpoint.path_presigner();
    let client = client();
    let key = "incoming/form.jpg";
    let post = signer
        .presign_post(
            &PostRequest::new(BUCKET, key, "image/jpeg", 10, 100),
            Utc::now(),
        )
        .unwrap();
    assert_eq!(post.url, format!("http://{}/{BUCKET}", endpoint.addr));

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
    let refused = [
        ("over the range", post.fields.clone(), payload(101)),
        ("under the range", post.fields.clone(), payload(9)),
        ("other key", with("key", "incoming/other.jpg"), payload(50)),
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
    ];
    for (what, fields, file) in refused {
        let (status, text) = post_form(&client, &post.url, &fields, file).await;
        assert!(status.is_client_error(), "{what}: {status} {text}");
        assert_eq!(
            endpoint.stored_keys(),
            Vec::<String>::new(),
            "{what} stored something"
        );
    }

    let expired = signer
        .presign_post(
            &PostRequest::new(BUCKET, key, "image/jpeg", 10, 100),
            Utc::now() - TimeDelta::minutes(10),
        )
        .unwrap();
    let (status, text) = post_form(&client, &expired.url, &expired.fields, payload(50)).await;
    assert!(status.is_client_error(), "expired: {status} {text}");
    assert_eq!(endpoint.stored_keys(), Vec::<String>::new());

    for size in [10, 100] {
        let (status, text) = post_form(&client, &post.url, &post.fields, payload(size)).await;
        assert!(status.is_success(), "{size} bytes: {status} {text}");
        assert_eq!(
            endpoint.stored(key).as_deref(),
            Some(payload(size).as_slice())
        );
    }
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

#[tokio::test]
async fn multipart_upload_through_presigned_requests() {
    let endpoint = Endpoint::start(false).await;
    let signer = endpoint.path_presigner();
    let client = client();
    let key = "incoming/big.bin";
    let now = Utc::now();

    let create = signer
        .presign_create_multipart_upload(BUCKET, key, "application/zip", None, now)
        .unwrap();
    let (status, xml) = send(&client, &create, None, Vec::new()).await;
    assert_eq!(status, StatusCode::OK, "{xml}");
    let upload_id = xml_value(&xml, "UploadId").to_owned();

    let parts = [payload(5 << 20), payload(1234)];
    let mut etags = Vec::new();
    for (number, part) in (1..).zip(&parts) {
        let req = UploadPartRequest {
            bucket: BUCKET,
            key,
            upload_id: &upload_id,
            part_number: number,
            content_length: part.len() as u64,
            expires_in: Some(Duration::from_mins(10)),
        };
        let presigned = signer.presign_upload_part(&req, now).unwrap();
        // A part of another size than signed is refused.
        let (status, _) = send(&client, &presigned, None, part[1..].to_vec()).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let method = reqwest::Method::from_bytes(presigned.method.as_bytes()).unwrap();
        let response = client
            .request(method, &presigned.url)
            .body(part.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        etags.push(response.headers()["etag"].to_str().unwrap().to_owned());
    }
    // A part number the URL was not signed for.
    let first = signer
        .presign_upload_part(
            &UploadPartRequest {
                bucket: BUCKET,
                key,
                upload_id: &upload_id,
                part_number: 1,
                content_length: 3,
                expires_in: None,
            },
            now,
        )
        .unwrap();
    let mut other_part = first.clone();
    other_part.url = first.url.replace("partNumber=1&", "partNumber=3&");
    let (status, _) = send(&client, &other_part, None, b"abc".to_vec()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let mut body = String::from("<CompleteMultipartUpload>");
    for (etag, n) in etags.iter().zip(1..) {
        write!(
            body,
            "<Part><PartNumber>{n}</PartNumber><ETag>{etag}</ETag></Part>"
        )
        .unwrap();
    }
    body.push_str("</CompleteMultipartUpload>");
    let complete = signer
        .presign_complete_multipart_upload(BUCKET, key, &upload_id, true, None, now)
        .unwrap();
    let (status, text) = send(&client, &complete, None, body.into_bytes()).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(endpoint.stored(key), Some(parts.concat()));
}
