//! The local HTTP server: the upload API (same handler as the Lambda) and the upload page.

use std::path::PathBuf;
use std::sync::Arc;

use airlock_api::{Api, ApiRequest, JwtVerifier, Problem};
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use tokio::net::TcpListener;

use airlock_embedded::console::Console;
pub use airlock_embedded::console::DEV_PREFIX as CONSOLE_PREFIX;

/// Largest API request body read (API bodies are small JSON documents).
const MAX_BODY: usize = 1 << 20;

/// What the server answers with.
pub struct AppState {
    pub api: Api,
    pub verifier: JwtVerifier,
    /// The built upload page (`index.html` and its assets); a page saying how to build it
    /// when it has none.
    pub web_dir: Option<PathBuf>,
    /// Browser origins, besides the server's own, that may call the API.
    pub cors_origins: Vec<String>,
    /// The S3 endpoint's origin: the page uploads to it and shows images from it.
    pub s3_origin: String,
    /// The quarantine review console, under [`CONSOLE_PREFIX`].
    pub console: Option<Arc<Console>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("web_dir", &self.web_dir)
            .field("cors_origins", &self.cors_origins)
            .finish_non_exhaustive()
    }
}

pub use airlock_embedded::http_server::ServerHandle;

/// Serves `state` on `listener` until the handle is shut down: the console's paths (under
/// [`CONSOLE_PREFIX`]) to the console when there is one, the rest to the API and the page.
pub fn serve(listener: TcpListener, state: Arc<AppState>) -> std::io::Result<ServerHandle> {
    airlock_embedded::http_server::serve(listener, move |request| {
        let state = Arc::clone(&state);
        async move { answer(&state, request).await }
    })
}

fn is_api_path(path: &str) -> bool {
    path == "/config" || path == "/uploads" || path.starts_with("/uploads/")
}

async fn answer(state: &AppState, request: Request<Incoming>) -> Response<Full<Bytes>> {
    if let Some(console) = state
        .console
        .as_ref()
        .filter(|console| console.owns(request.uri().path()))
    {
        return console.answer(request).await;
    }
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let origin = parts
        .headers
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .filter(|o| {
            state
                .cors_origins
                .iter()
                .any(|allowed| allowed == o || allowed == "*")
        })
        .map(str::to_owned);
    let mut response = if !is_api_path(&path) {
        static_file(state, &parts.method, &path).await
    } else if parts.method == Method::OPTIONS {
        let mut preflight = Response::new(Vec::new());
        *preflight.status_mut() = StatusCode::NO_CONTENT;
        preflight
    } else {
        match Limited::new(body, MAX_BODY).collect().await {
            Ok(collected) => {
                let bytes = collected.to_bytes();
                let request = ApiRequest {
                    method: &parts.method,
                    path: &path,
                    headers: &parts.headers,
                    body: &bytes,
                };
                let authorization = parts
                    .headers
                    .get(header::AUTHORIZATION)
                    .and_then(|h| h.to_str().ok());
                state
                    .api
                    .handle(request, || state.verifier.verify(authorization))
                    .await
            }
            Err(e) => Problem::too_large(format!(
                "the request body could not be read within {MAX_BODY} bytes: {e}"
            ))
            .into_response(),
        }
    };
    if let (Some(origin), true) = (origin, is_api_path(&path)) {
        let headers = response.headers_mut();
        if let Ok(value) = HeaderValue::from_str(&origin) {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        }
        headers.insert(header::VARY, HeaderValue::from_static("Origin"));
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, DELETE, OPTIONS"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type, idempotency-key"),
        );
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("location, idempotent-replayed"),
        );
    }
    response.map(Bytes::from).map(Full::new)
}

const FALLBACK_PAGE: &str = "<!doctype html><meta charset=utf-8><title>airlock dev</title>\
<h1>airlock dev</h1><p>The upload page is not built. Run <code>scripts/build-web.sh</code> \
and restart with <code>--web-dir web/dist</code>. The API is at <code>/uploads</code>: see \
docs/api.md.</p>";

fn content_type_of(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        _ => "application/octet-stream",
    }
}

/// A file of the page: only plain names under the web folder (no dot-files, no `..`).
async fn static_file(state: &AppState, method: &Method, path: &str) -> Response<Vec<u8>> {
    if method != Method::GET && method != Method::HEAD {
        return Problem::method_not_allowed(format!("{method} is not allowed on {path}"))
            .into_response();
    }
    let relative = if path == "/" {
        "index.html"
    } else {
        &path[1..]
    };
    let safe = relative.split('/').all(|segment| {
        !segment.is_empty()
            && !segment.starts_with('.')
            && segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    });
    let not_found = || Problem::not_found(format!("no file {path}")).into_response();
    if !safe {
        return not_found();
    }
    let body = match &state.web_dir {
        Some(dir) => match tokio::fs::read(dir.join(relative)).await {
            Ok(bytes) => bytes,
            Err(_) if relative == "index.html" => FALLBACK_PAGE.as_bytes().to_vec(),
            Err(_) => return not_found(),
        },
        None if relative == "index.html" => FALLBACK_PAGE.as_bytes().to_vec(),
        None => return not_found(),
    };
    let mut response = Response::new(if method == Method::HEAD {
        Vec::new()
    } else {
        body
    });
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type_of(relative)),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    // The page talks to this server and the S3 endpoint, and shows images from the latter.
    let policy = format!(
        "default-src 'self'; connect-src 'self' {s3}; img-src 'self' {s3} blob: data:; \
         style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
        s3 = state.s3_origin
    );
    if let Ok(value) = HeaderValue::from_str(&policy) {
        headers.insert("content-security-policy", value);
    }
    response
}
