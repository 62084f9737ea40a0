//! Multipart uploads the API opens, completes and aborts on the client's behalf: a port, and
//! an adapter that sends signed requests to any S3 endpoint over HTTP.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use airlock_core::ports::{Clock, Retry};
use airlock_presign::{PresignedRequest, Presigner};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// One uploaded part, as the client reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompletedPart {
    pub part_number: u32,
    pub etag: String,
}

/// Why a multipart call failed.
#[derive(Debug, thiserror::Error)]
pub enum MultipartError {
    /// The store refused the part list (a part missing, out of order, too small, or with
    /// another ETag).
    #[error("the store refused the parts: {code}: {message}")]
    InvalidParts { code: String, message: String },
    /// Completing would replace an object (the completion is create-only).
    #[error("an object exists at {key:?} already")]
    AlreadyExists { key: String },
    #[error("no multipart upload {upload_id:?} (completed or aborted already)")]
    NoSuchUpload { upload_id: String },
    #[error("the object store failed: {message}")]
    Backend {
        message: String,
        retry: Retry,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

/// Opening, completing and aborting multipart uploads.
#[async_trait]
pub trait MultipartUploads: Send + Sync {
    /// Opens a multipart upload of `key`; returns the store's upload id.
    async fn create(&self, key: &str, content_type: &str) -> Result<String, MultipartError>;
    /// Completes it, only if nothing is at `key` yet (`If-None-Match: *`).
    async fn complete(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> Result<(), MultipartError>;
    async fn abort(&self, key: &str, upload_id: &str) -> Result<(), MultipartError>;
}

/// The HTTPS (and plain HTTP, for local endpoints) client the adapter sends with: hyper
/// with rustls over ring and the system's root certificates, as the AWS SDK's own client.
type HttpClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    http_body_util::Full<bytes::Bytes>,
>;

/// [`MultipartUploads`] over HTTP: each call is a request signed by the presigner and sent
/// with hyper, so it works against AWS, the local endpoint or an emulator alike and needs
/// no AWS SDK.
pub struct SignedHttpMultipart {
    presigner: Arc<Presigner>,
    bucket: String,
    client: HttpClient,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for SignedHttpMultipart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedHttpMultipart")
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

// The request is sent at once: a short validity is enough and limits replay.
const CALL_VALIDITY: Duration = Duration::from_mins(1);

/// How long one call to the object store may take, answer included.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

impl SignedHttpMultipart {
    /// An adapter for `bucket`; fails only if the system's root certificates cannot be read.
    pub fn new(
        presigner: Arc<Presigner>,
        bucket: impl Into<String>,
        clock: Arc<dyn Clock>,
    ) -> std::io::Result<Self> {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(rustls::crypto::ring::default_provider())?
            .https_or_http()
            .enable_http1()
            .build();
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(connector);
        Ok(Self {
            presigner,
            bucket: bucket.into(),
            client,
            clock,
        })
    }

    async fn send(
        &self,
        signed: Result<PresignedRequest, airlock_presign::PresignError>,
        body: Option<String>,
    ) -> Result<(http::StatusCode, String), MultipartError> {
        let signed = signed.map_err(|e| MultipartError::Backend {
            message: format!("cannot sign the request: {e}"),
            retry: Retry::Permanent,
            source: Some(Box::new(e)),
        })?;
        let mut request = http::Request::builder()
            .method(signed.method.as_bytes())
            .uri(&signed.url);
        for (name, value) in &signed.headers {
            // The HTTP client sets the length of the body it sends.
            if *name != "content-length" {
                request = request.header(*name, value);
            }
        }
        let request = request
            .body(http_body_util::Full::new(bytes::Bytes::from(
                body.unwrap_or_default(),
            )))
            .map_err(|e| MultipartError::Backend {
                message: format!("cannot build the request to {}: {e}", signed.url),
                retry: Retry::Permanent,
                source: Some(Box::new(e)),
            })?;
        let exchange = async {
            let response =
                self.client
                    .request(request)
                    .await
                    .map_err(|e| MultipartError::Backend {
                        message: format!("request to the object store failed: {e}"),
                        retry: Retry::Transient,
                        source: Some(Box::new(e)),
                    })?;
            let status = response.status();
            let bytes = http_body_util::BodyExt::collect(response.into_body())
                .await
                .map_err(|e| MultipartError::Backend {
                    message: format!("reading the object store's answer failed: {e}"),
                    retry: Retry::Transient,
                    source: Some(Box::new(e)),
                })?
                .to_bytes();
            Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
        };
        tokio::time::timeout(CALL_TIMEOUT, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(MultipartError::Backend {
                    message: format!("the object store did not answer within {CALL_TIMEOUT:?}"),
                    retry: Retry::Transient,
                    source: None,
                })
            })
    }
}

/// The text of the first `<tag>` element, XML entities decoded.
fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&close)?;
    Some(
        xml[start..end]
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Maps an S3 error answer (status and `<Error>` body) to a [`MultipartError`].
fn s3_error(status: http::StatusCode, body: &str, key: &str, upload_id: &str) -> MultipartError {
    let code = xml_text(body, "Code").unwrap_or_default();
    let message = xml_text(body, "Message").unwrap_or_default();
    match (status.as_u16(), code.as_str()) {
        (412, _) | (_, "PreconditionFailed") => MultipartError::AlreadyExists {
            key: key.to_owned(),
        },
        (_, "NoSuchUpload") => MultipartError::NoSuchUpload {
            upload_id: upload_id.to_owned(),
        },
        (_, "InvalidPart" | "InvalidPartOrder" | "EntityTooSmall" | "MalformedXML") => {
            MultipartError::InvalidParts { code, message }
        }
        (status, _) => MultipartError::Backend {
            message: format!("the object store answered {status} {code}: {message}"),
            retry: if status >= 500 || code == "SlowDown" || status == 429 {
                Retry::Transient
            } else {
                Retry::Permanent
            },
            source: None,
        },
    }
}

#[async_trait]
impl MultipartUploads for SignedHttpMultipart {
    async fn create(&self, key: &str, content_type: &str) -> Result<String, MultipartError> {
        let signed = self.presigner.presign_create_multipart_upload(
            &self.bucket,
            key,
            content_type,
            Some(CALL_VALIDITY),
            self.clock.now(),
        );
        let (status, body) = self.send(signed, None).await?;
        if !status.is_success() {
            return Err(s3_error(status, &body, key, ""));
        }
        xml_text(&body, "UploadId")
            .filter(|id| !id.is_empty())
            .ok_or_else(|| MultipartError::Backend {
                message: "the object store's answer to CreateMultipartUpload has no UploadId"
                    .to_owned(),
                retry: Retry::Permanent,
                source: None,
            })
    }

    async fn complete(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> Result<(), MultipartError> {
        let signed = self.presigner.presign_complete_multipart_upload(
            &self.bucket,
            key,
            upload_id,
            true,
            Some(CALL_VALIDITY),
            self.clock.now(),
        );
        let mut xml = String::from("<CompleteMultipartUpload>");
        for part in parts {
            let _ = write!(
                xml,
                "<Part><PartNumber>{}</PartNumber><ETag>{}</ETag></Part>",
                part.part_number,
                xml_escape(&part.etag)
            );
        }
        xml.push_str("</CompleteMultipartUpload>");
        let (status, body) = self.send(signed, Some(xml)).await?;
        // S3 may answer 200 and still report an error in the body.
        if !status.is_success() || body.contains("<Error>") {
            return Err(s3_error(status, &body, key, upload_id));
        }
        Ok(())
    }

    async fn abort(&self, key: &str, upload_id: &str) -> Result<(), MultipartError> {
        let signed = self.presigner.presign_abort_multipart_upload(
            &self.bucket,
            key,
            upload_id,
            Some(CALL_VALIDITY),
            self.clock.now(),
        );
        let (status, body) = self.send(signed, None).await?;
        if !status.is_success() {
            return Err(s3_error(status, &body, key, upload_id));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_errors_map_to_what_the_api_can_say() {
        let body =
            |code: &str| format!("<Error><Code>{code}</Code><Message>m &amp; n</Message></Error>");
        let bad = http::StatusCode::BAD_REQUEST;
        assert!(matches!(
            s3_error(bad, &body("InvalidPart"), "k", "u"),
            MultipartError::InvalidParts { code, message } if code == "InvalidPart" && message == "m & n"
        ));
        assert!(matches!(
            s3_error(http::StatusCode::PRECONDITION_FAILED, "", "k", "u"),
            MultipartError::AlreadyExists { .. }
        ));
        assert!(matches!(
            s3_error(http::StatusCode::NOT_FOUND, &body("NoSuchUpload"), "k", "u"),
            MultipartError::NoSuchUpload { .. }
        ));
        assert!(matches!(
            s3_error(
                http::StatusCode::SERVICE_UNAVAILABLE,
                &body("SlowDown"),
                "k",
                "u"
            ),
            MultipartError::Backend {
                retry: Retry::Transient,
                ..
            }
        ));
        assert!(matches!(
            s3_error(http::StatusCode::FORBIDDEN, &body("AccessDenied"), "k", "u"),
            MultipartError::Backend {
                retry: Retry::Permanent,
                ..
            }
        ));
    }

    #[test]
    fn etags_are_escaped_in_the_part_list() {
        assert_eq!(xml_escape("\"a&b\""), "&quot;a&amp;b&quot;");
        assert_eq!(
            xml_text("<R><UploadId>a&amp;b</UploadId></R>", "UploadId").as_deref(),
            Some("a&b")
        );
    }
}
