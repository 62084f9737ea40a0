//! Serving: the accept loop with graceful shutdown, and the CORS layer in front of s3s.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use airlock_local::FsStore;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use hyper_util::server::graceful::GracefulShutdown;
use s3s::auth::SimpleAuth;
use s3s::config::{S3Config, StaticConfigProvider};
use s3s::service::{S3Service, S3ServiceBuilder};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::config::EndpointConfig;
use crate::event::Sequencer;
use crate::parts::Parts;
use crate::service::Endpoint;

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("invalid endpoint configuration: {0}")]
    Config(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// A running endpoint. Dropping it stops accepting connections (requests in flight finish
/// on their own); [`EndpointHandle::shutdown`] also waits for them.
#[derive(Debug)]
pub struct EndpointHandle {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl EndpointHandle {
    /// The address the endpoint listens on.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://{address}`: the endpoint URL for clients and presigners (path-style).
    #[must_use]
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting connections, closes idle ones and waits until the requests in
    /// flight are answered.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for EndpointHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Serves the S3 endpoint on `listener` until the returned handle is shut down or
/// dropped. Each object written (PUT, POST, completed multipart upload) is announced on
/// `events` as an S3 event notification, after it is in place and before the client gets
/// its answer.
pub async fn serve(
    listener: TcpListener,
    store: Arc<FsStore>,
    config: EndpointConfig,
    events: mpsc::UnboundedSender<Value>,
) -> Result<EndpointHandle, EndpointError> {
    if let Some(problem) = config.problem() {
        return Err(EndpointError::Config(problem));
    }
    let parts = Parts::open(&config.parts_dir).map_err(|source| EndpointError::Io {
        what: format!(
            "cannot open the multipart folder {}",
            config.parts_dir.display()
        ),
        source,
    })?;
    if parts.dir().starts_with(store.root()) {
        return Err(EndpointError::Config(format!(
            "the multipart folder {} is inside the store's root {}: parts would be keys",
            parts.dir().display(),
            store.root().display()
        )));
    }
    let addr = listener.local_addr().map_err(|source| EndpointError::Io {
        what: "cannot read the listener's address".to_owned(),
        source,
    })?;

    let endpoint = Endpoint {
        store,
        bucket: config.bucket.clone(),
        region: config.region.clone(),
        events,
        parts,
        sequencer: Sequencer::default(),
    };
    let mut builder = S3ServiceBuilder::new(endpoint);
    builder.set_auth(SimpleAuth::from_single(
        config.credentials.access_key_id.clone(),
        config.credentials.secret_access_key.clone(),
    ));
    let mut s3_config = S3Config::default();
    s3_config.post_object_max_file_size = config.max_post_size;
    builder.set_config(Arc::new(StaticConfigProvider::new(Arc::new(s3_config))));
    let service = Frontend {
        s3: builder.build(),
        cors: Arc::new(Cors {
            origins: config.cors_origins.clone(),
        }),
    };

    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        let graceful = GracefulShutdown::new();
        let connections = ConnBuilder::new(TokioExecutor::new());
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let socket = match accepted {
                        Ok((socket, _)) => socket,
                        Err(error) => {
                            // Out of descriptors, say: wait a little rather than spin.
                            tracing::warn!(%error, "accepting a connection failed");
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let connection = connections
                        .serve_connection(TokioIo::new(socket), service.clone())
                        .into_owned();
                    let connection = graceful.watch(connection);
                    tokio::spawn(async move {
                        if let Err(error) = connection.await {
                            tracing::debug!(%error, "connection ended with an error");
                        }
                    });
                }
                _ = stopped.changed() => break,
            }
        }
        drop(listener);
        graceful.shutdown().await;
    });
    Ok(EndpointHandle {
        addr,
        stop,
        task: Some(task),
    })
}

/// The browser origins allowed, and the CORS headers for them.
#[derive(Debug)]
struct Cors {
    origins: Vec<String>,
}

const ALLOWED_METHODS: &str = "GET, HEAD, PUT, POST, DELETE";
/// What a browser script may read of a response: the ETag of each part is needed to complete
/// a multipart upload.
const EXPOSED_HEADERS: &str = "ETag, x-amz-version-id, x-amz-checksum-sha256";

impl Cors {
    fn allows(&self, origin: &str) -> bool {
        self.origins.iter().any(|o| o == "*" || o == origin)
    }

    fn decorate(&self, origin: Option<&HeaderValue>, headers: &mut http::HeaderMap) {
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
        let Some(origin) = origin else { return };
        if !origin.to_str().is_ok_and(|o| self.allows(o)) {
            return;
        }
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(ALLOWED_METHODS),
        );
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSED_HEADERS),
        );
    }

    /// Answers an `OPTIONS` preflight as S3 does: 200 with the CORS headers for an allowed
    /// origin and method, 403 otherwise.
    fn preflight(&self, req: &Request<Incoming>) -> Response<s3s::Body> {
        let headers = req.headers();
        let origin = headers.get(header::ORIGIN);
        let method = headers.get(header::ACCESS_CONTROL_REQUEST_METHOD);
        let (Some(origin), Some(method)) = (origin, method) else {
            return plain(
                StatusCode::BAD_REQUEST,
                "a CORS preflight needs the Origin and Access-Control-Request-Method headers",
            );
        };
        let method_allowed = method
            .to_str()
            .is_ok_and(|m| ALLOWED_METHODS.split(", ").any(|allowed| allowed == m));
        if !origin.to_str().is_ok_and(|o| self.allows(o)) || !method_allowed {
            return plain(
                StatusCode::FORBIDDEN,
                "CORS request not allowed: the origin is not configured, or the method is not one of GET, HEAD, PUT, POST, DELETE",
            );
        }
        let mut response = Response::new(s3s::Body::empty());
        let out = response.headers_mut();
        self.decorate(Some(origin), out);
        // Any header may be sent: the signature, not CORS, decides what is accepted.
        if let Some(requested) = headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
            out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, requested.clone());
        }
        out.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        response
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<s3s::Body> {
    let mut response = Response::new(s3s::Body::from(text.to_owned()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// s3s behind the CORS layer.
#[derive(Clone)]
struct Frontend {
    s3: S3Service,
    cors: Arc<Cors>,
}

type BoxResponse =
    Pin<Box<dyn Future<Output = Result<Response<s3s::Body>, s3s::HttpError>> + Send>>;

impl hyper::service::Service<Request<Incoming>> for Frontend {
    type Response = Response<s3s::Body>;
    type Error = s3s::HttpError;
    type Future = BoxResponse;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        if req.method() == Method::OPTIONS {
            let response = self.cors.preflight(&req);
            return Box::pin(async move { Ok(response) });
        }
        let origin = req.headers().get(header::ORIGIN).cloned();
        let cors = Arc::clone(&self.cors);
        let call = hyper::service::Service::call(&self.s3, req);
        Box::pin(async move {
            let mut response = call.await?;
            cors.decorate(origin.as_ref(), response.headers_mut());
            Ok(response)
        })
    }
}
