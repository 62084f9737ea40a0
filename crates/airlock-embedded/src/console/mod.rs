//! `airlock console`: quarantine review as server-rendered web pages on this machine.
//!
//! The same actions as `airlock quarantine` over the same local stores: a filtered list with
//! counts by reason, an item page (record, intent transitions, audit entries, the first bytes
//! as an escaped hex dump), release (forced by admins), rescan, purge (admins) and export
//! forms that need a written reason, and the audit trail with the result of checking its
//! hash chain. Served by `airlock console`, and by `airlock dev` under `/console/`.
//!
//! The console defends itself: it listens only on a loopback address and answers only to
//! the `Host` names of that address (a DNS-rebinding page gets nothing); every page but the
//! sign-in needs a session, opened by signing in with a configured token (roles `reviewer`
//! and `admin`, see [`access`]); actions are POST only and need both the session's random
//! token in a hidden field and an `Origin` of the console itself (CSRF); every page carries
//! a Content-Security-Policy that allows no script at all; every value, above all those from
//! an upload (filenames, uploaders, signature names, the bytes), is HTML-escaped, with
//! control and bidirectional-override characters shown as escapes. Uploaded bytes are never
//! served, except as an export: a zip encrypted with the password `infected`, as an
//! attachment.

pub mod access;

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use airlock_clamd::ManagedClamd;
use airlock_core::policy::Policies;
use airlock_core::ports::Scanner;
use airlock_core::review::{
    self, AuditAction, AuditCheck, AuditEntry, AuditFilter, AuditTrail, Count, ItemDetail,
    PageRequest, QuarantineFilter, QuarantineIndex, QuarantineItem, QuarantineStatus,
    ReleaseOutcome, ReleaseReport, Rescanning, ReviewError, hex_dump,
};
use airlock_core::verdict::ReasonCode;
use anyhow::Context as _;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::sync::OnceCell;

use self::access::{Role, Session, Sessions, Tokens};
use crate::http_server::ServerHandle;
use crate::review_cli::{LocalReview, ReviewDataArgs, ScannerArgs, parse_when};

/// The policy of every response: no script, no plugins, no frames, styles and forms from the
/// console only.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; \
     img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Where `airlock dev` serves the console.
pub const DEV_PREFIX: &str = "/console";

/// Largest form body read (a key, a reason and the token).
const MAX_FORM: usize = 64 << 10;
/// Items on a list page.
const PAGE_SIZE: usize = 50;
/// Entries on an audit page.
const AUDIT_PAGE: usize = 200;
/// The name of the admin whose token is generated when none are configured.
pub const GENERATED_ADMIN: &str = "admin";

/// Who may sign in, and for how long.
#[derive(Debug, Clone, clap::Args)]
pub struct AccessArgs {
    /// Sign-in tokens, one a line: `ROLE NAME TOKEN`, ROLE `reviewer` or `admin`, TOKEN the
    /// token (16 characters or more) or `sha256:` and its hex SHA-256. Without tokens here
    /// or in `AIRLOCK_CONSOLE_TOKENS`, one admin token is generated and printed at start.
    #[arg(long, env = "AIRLOCK_CONSOLE_TOKENS_FILE")]
    pub tokens_file: Option<PathBuf>,
    /// Tokens as in --tokens-file, entries separated by newlines or `;` (best given in the
    /// environment, not on a command line others can see).
    #[arg(long, env = "AIRLOCK_CONSOLE_TOKENS", hide_env_values = true)]
    pub tokens: Option<String>,
    /// How long a sign-in lasts, in hours.
    #[arg(long, default_value_t = 8)]
    pub session_hours: u32,
}

impl AccessArgs {
    /// The configured tokens, or one generated admin token (returned, to be shown once).
    pub fn tokens(&self) -> anyhow::Result<(Tokens, Option<String>)> {
        let tokens = Tokens::load(self.tokens_file.as_deref(), self.tokens.as_deref())?;
        if tokens.is_empty() {
            let (tokens, secret) = Tokens::generated_admin(GENERATED_ADMIN)?;
            return Ok((tokens, Some(secret)));
        }
        Ok((tokens, None))
    }

    /// How long a session lasts.
    #[must_use]
    pub fn lifetime(&self) -> Duration {
        Duration::from_hours(u64::from(self.session_hours))
    }
}

/// `airlock console`.
#[derive(Debug, Clone, clap::Args)]
pub struct ConsoleArgs {
    #[command(flatten)]
    pub data: ReviewDataArgs,
    /// Where to listen: a loopback address only.
    #[arg(long, default_value = "127.0.0.1:8740", env = "AIRLOCK_CONSOLE_LISTEN")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub access: AccessArgs,
    #[command(flatten)]
    pub scanner: ScannerArgs,
}

/// The scanner and policies a release judges bytes with.
struct Judge {
    scanner: Arc<dyn Scanner>,
    /// Stopped when the console is dropped.
    _managed: Mutex<Option<ManagedClamd>>,
    policies: Policies,
    media_permits: Arc<tokio::sync::Semaphore>,
}

/// What releases and rescans judge bytes with.
pub enum ConsoleScanner {
    /// Started on the first release, stopped with the console (`--clamd`, or a private
    /// clamd from `--signatures`).
    OnFirstUse(ScannerArgs),
    /// One already running (the pipeline's, in `airlock dev`).
    Running {
        scanner: Arc<dyn Scanner>,
        policies: Policies,
    },
}

impl fmt::Debug for ConsoleScanner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OnFirstUse(args) => f.debug_tuple("OnFirstUse").field(args).finish(),
            Self::Running { .. } => f.write_str("Running"),
        }
    }
}

/// Everything a console is made of.
#[derive(Debug)]
pub struct ConsoleConfig {
    pub data: ReviewDataArgs,
    pub tokens: Tokens,
    pub session_lifetime: Duration,
    pub scanner: ConsoleScanner,
    /// Where its pages are: `""` for the root, or e.g. [`DEV_PREFIX`].
    pub prefix: String,
    /// The address its server listens on (for the `Host` and `Origin` checks).
    pub addr: SocketAddr,
}

/// The console's state: the stores, who may sign in, the open sessions.
pub struct Console {
    local: LocalReview,
    tokens: Tokens,
    sessions: Sessions,
    /// `""` or a path prefix such as `/console` (no trailing slash).
    prefix: String,
    /// The session cookie's name (with the port: cookies do not tell ports apart).
    cookie_name: String,
    /// `Host` values the console answers to (its own address, and `localhost`).
    hosts: Vec<String>,
    /// `Origin` values an action is accepted from.
    origins: Vec<String>,
    scanner: Option<ScannerArgs>,
    judge: OnceCell<Judge>,
}

impl fmt::Debug for Console {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Console")
            .field("prefix", &self.prefix)
            .field("hosts", &self.hosts)
            .field("tokens", &self.tokens)
            .finish_non_exhaustive()
    }
}

/// A running `airlock console`.
#[derive(Debug)]
pub struct ConsoleHandle {
    pub server: ServerHandle,
    /// The admin token generated because none was configured (shown once, at start).
    pub generated_token: Option<String>,
}

impl ConsoleHandle {
    /// The console's URL.
    #[must_use]
    pub fn url(&self) -> String {
        self.server.url()
    }

    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// Stops accepting connections and waits for the requests in flight.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

impl Console {
    /// Opens the data dir's stores for a console served at `config.addr`.
    pub async fn open(config: ConsoleConfig) -> anyhow::Result<Self> {
        anyhow::ensure!(
            config.prefix.is_empty()
                || (config.prefix.starts_with('/') && !config.prefix.ends_with('/')),
            "a console prefix starts with / and does not end with one: {:?}",
            config.prefix
        );
        let local = LocalReview::open(&config.data).await?;
        let addr = config.addr;
        let hosts = vec![addr.to_string(), format!("localhost:{}", addr.port())];
        let origins = hosts.iter().map(|host| format!("http://{host}")).collect();
        let judge = OnceCell::new();
        let scanner = match config.scanner {
            ConsoleScanner::OnFirstUse(args) => Some(args),
            ConsoleScanner::Running { scanner, policies } => {
                let _ = judge.set(Judge {
                    scanner,
                    _managed: Mutex::new(None),
                    policies,
                    media_permits: crate::review_cli::media_permits(),
                });
                None
            }
        };
        Ok(Self {
            local,
            tokens: config.tokens,
            sessions: Sessions::new(config.session_lifetime),
            prefix: config.prefix,
            cookie_name: format!("airlock-console-{}", addr.port()),
            hosts,
            origins,
            scanner,
            judge,
        })
    }

    /// Whether `path` is one of the console's (under its prefix).
    #[must_use]
    pub fn owns(&self, path: &str) -> bool {
        path.strip_prefix(&self.prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }

    /// The console's home page.
    #[must_use]
    pub fn home(&self) -> String {
        format!("{}/", self.prefix)
    }
}

/// Opens the data dir's stores and serves the console on `args.listen` (a loopback address;
/// port 0 picks a free one).
pub async fn start(args: &ConsoleArgs) -> anyhow::Result<ConsoleHandle> {
    anyhow::ensure!(
        args.listen.ip().is_loopback(),
        "--listen {}: the console serves this machine only; give a loopback address such as 127.0.0.1:8740",
        args.listen
    );
    let (tokens, generated_token) = args.access.tokens()?;
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let console = Arc::new(
        Console::open(ConsoleConfig {
            data: args.data.clone(),
            tokens,
            session_lifetime: args.access.lifetime(),
            scanner: ConsoleScanner::OnFirstUse(args.scanner.clone()),
            prefix: String::new(),
            addr,
        })
        .await?,
    );
    let server = crate::http_server::serve(listener, move |request| {
        let console = Arc::clone(&console);
        async move { console.answer(request).await }
    })?;
    Ok(ConsoleHandle {
        server,
        generated_token,
    })
}

/// `airlock console`: serves until interrupted.
pub async fn run(args: ConsoleArgs) -> anyhow::Result<u8> {
    let handle = start(&args).await?;
    println!("airlock console on {}/ ; Ctrl-C stops it", handle.url());
    match &handle.generated_token {
        Some(token) => println!(
            "no tokens configured (--tokens-file, AIRLOCK_CONSOLE_TOKENS): sign in as {GENERATED_ADMIN} (admin) with this token, valid until the console stops:\n    {token}"
        ),
        None => println!("sign in with your console token"),
    }
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    handle.shutdown().await;
    Ok(crate::review_cli::EXIT_OK)
}

/// The console as one request sees it: who is signed in, if anyone.
struct Cx<'a> {
    console: &'a Console,
    session: Option<Session>,
}

impl std::ops::Deref for Cx<'_> {
    type Target = Console;
    fn deref(&self) -> &Console {
        self.console
    }
}

/// A page, a redirect or a download, before the common headers.
struct Answer {
    status: StatusCode,
    body: Bytes,
    content_type: &'static str,
    location: Option<String>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Answer {
    fn page(status: StatusCode, title: &str, console: &Cx<'_>, body: &str) -> Self {
        Self {
            status,
            body: Bytes::from(layout(title, console, body)),
            content_type: "text/html; charset=utf-8",
            location: None,
            headers: Vec::new(),
        }
    }

    fn problem(status: StatusCode, console: &Cx<'_>, message: &str, back: Option<&str>) -> Self {
        let mut body = format!(
            "<h1>{}</h1><p class=\"problem\">{}</p>",
            Text(status.canonical_reason().unwrap_or("Refused")),
            Text(message)
        );
        if let Some(key) = back {
            let _ = write!(
                body,
                "<p><a href=\"item?key={}\">Back to the item</a></p>",
                Text(&url_encode(key))
            );
        }
        Self::page(status, status.as_str(), console, &body)
    }

    fn redirect(location: String) -> Self {
        Self {
            status: StatusCode::SEE_OTHER,
            body: Bytes::new(),
            content_type: "text/plain; charset=utf-8",
            location: Some(location),
            headers: Vec::new(),
        }
    }

    fn with_header(mut self, name: HeaderName, value: &str) -> Self {
        if let Ok(value) = HeaderValue::from_str(value) {
            self.headers.push((name, value));
        }
        self
    }
}

/// The console's pages, relative to its prefix.
const PAGES: [&str; 10] = [
    "/",
    "/item",
    "/audit",
    "/console.css",
    "/signin",
    "/signout",
    "/release",
    "/rescan",
    "/purge",
    "/export",
];

impl Console {
    /// Answers one request for a path under the console's prefix.
    pub async fn answer(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let (parts, body) = request.into_parts();
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok());
        let session = self.session_of(&parts.headers);
        let cx = Cx {
            console: self,
            session,
        };
        let answer = if host.is_some_and(|host| self.hosts.iter().any(|h| h == host)) {
            let path = parts.uri.path();
            let page = path.strip_prefix(&self.prefix).unwrap_or(path);
            self.route(&cx, &parts, page, body).await
        } else {
            // A page on another site whose name resolves here (DNS rebinding) reads nothing.
            Answer::problem(
                StatusCode::MISDIRECTED_REQUEST,
                &cx,
                "this console answers only to its own address (the Host header names another)",
                None,
            )
        };
        respond(&parts.method, answer)
    }

    async fn route(
        &self,
        cx: &Cx<'_>,
        parts: &http::request::Parts,
        page: &str,
        body: Incoming,
    ) -> Answer {
        let query = parts.uri.query().unwrap_or("");
        let method = &parts.method;
        let reading = method == Method::GET || method == Method::HEAD;
        match (reading, method == Method::POST, page) {
            (_, _, "") => Answer::redirect(self.home()),
            (true, _, "/console.css") => Answer {
                status: StatusCode::OK,
                body: Bytes::from_static(STYLE.as_bytes()),
                content_type: "text/css; charset=utf-8",
                location: None,
                headers: Vec::new(),
            },
            (true, _, "/signin") => signin_page(cx, StatusCode::OK, None),
            (_, true, "/signin") => sign_in(cx, &parts.headers, body).await,
            (_, _, page) if !PAGES.contains(&page) => Answer::problem(
                StatusCode::NOT_FOUND,
                cx,
                &format!("no page {}", parts.uri.path()),
                None,
            ),
            (true, _, "/" | "/item" | "/audit") if cx.session.is_none() => {
                Answer::redirect(format!("{}/signin", self.prefix))
            }
            (true, _, "/") => list_page(cx, query).await,
            (true, _, "/item") => item_page(cx, query).await,
            (true, _, "/audit") => audit_page(cx, query).await,
            (_, true, "/signout" | "/release" | "/rescan" | "/purge" | "/export") => {
                action(cx, page, &parts.headers, body).await
            }
            _ => Answer::problem(
                StatusCode::METHOD_NOT_ALLOWED,
                cx,
                &format!("{method} is not allowed here"),
                None,
            ),
        }
    }

    fn session_of(&self, headers: &http::HeaderMap) -> Option<Session> {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .find_map(|value| access::cookie(value, &self.cookie_name))
            .and_then(|id| self.sessions.get(id))
    }

    fn session_id<'h>(&self, headers: &'h http::HeaderMap) -> Option<&'h str> {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .find_map(|value| access::cookie(value, &self.cookie_name))
    }

    /// The `Set-Cookie` value that holds session `id` (or, `None`, that ends it).
    fn cookie(&self, id: Option<&str>) -> String {
        let path = self.home();
        match id {
            Some(id) => format!(
                "{}={id}; HttpOnly; SameSite=Strict; Path={path}; Max-Age={}",
                self.cookie_name,
                self.sessions.lifetime.as_secs()
            ),
            None => format!(
                "{}=; HttpOnly; SameSite=Strict; Path={path}; Max-Age=0",
                self.cookie_name
            ),
        }
    }
}

/// The response, with the headers every answer carries.
fn respond(method: &Method, answer: Answer) -> Response<Full<Bytes>> {
    let mut response = Response::new(if method == Method::HEAD {
        Full::new(Bytes::new())
    } else {
        Full::new(answer.body)
    });
    *response.status_mut() = answer.status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(answer.content_type),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // `same-origin`, not `no-referrer`: with the latter a browser sends `Origin: null` on a
    // form's POST, and the CSRF check needs the real origin.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if answer.status == StatusCode::METHOD_NOT_ALLOWED {
        headers.insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, POST"));
    }
    if let Some(location) = answer.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        headers.insert(header::LOCATION, location);
    }
    for (name, value) in answer.headers {
        headers.append(name, value);
    }
    response
}

// ---------------------------------------------------------------------------------------
// Escaping and forms

/// Text for HTML (element content or a quoted attribute): `& < > " '` as character
/// references, and characters that hide or reorder text (controls, bidirectional
/// overrides, zero-width marks) as visible `\u{…}` escapes.
struct Text<'a>(&'a str);

impl fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            match c {
                '&' => f.write_str("&amp;")?,
                '<' => f.write_str("&lt;")?,
                '>' => f.write_str("&gt;")?,
                '"' => f.write_str("&quot;")?,
                '\'' => f.write_str("&#39;")?,
                '\n' => f.write_char('\n')?,
                c if is_hiding(c) => write!(f, "\\u{{{:04x}}}", u32::from(c))?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// Characters a reviewer would not see, or that change how the text around them reads.
fn is_hiding(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}'
            | '\u{feff}' | '\u{fff9}'..='\u{fffb}')
}

/// Escapes `text` for HTML (see [`Text`]).
#[must_use]
pub fn escape_html(text: &str) -> String {
    Text(text).to_string()
}

/// Percent-encodes everything but unreserved characters.
fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// Decodes one `application/x-www-form-urlencoded` value (`+` is a space).
fn form_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("a bad percent escape in {text:?}"))?;
                out.push(hex);
                i += 2;
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| format!("{text:?} is not UTF-8 once decoded"))
}

/// The fields of a query string or form body, decoded, in order.
fn form_fields(text: &str) -> Result<Vec<(String, String)>, String> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((form_decode(name)?, form_decode(value)?))
        })
        .collect()
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// Equal, in time that does not depend on where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    access::same_bytes(a.as_bytes(), b.as_bytes())
}

// ---------------------------------------------------------------------------------------
// Pages

fn layout(title: &str, console: &Cx<'_>, body: &str) -> String {
    // Links are relative: the same pages work under any prefix.
    let who = match &console.session {
        Some(session) => format!(
            "<span class=\"who\"><strong>{}</strong> ({})</span>\
             <form class=\"signout\" method=\"post\" action=\"signout\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <button type=\"submit\">Sign out</button></form>",
            Text(&session.name),
            session.role,
            Text(&session.csrf)
        ),
        None => "<span class=\"who\">not signed in</span>".to_owned(),
    };
    let nav = if console.session.is_some() {
        "<nav><a href=\"./\">Quarantine</a><a href=\"audit\">Audit trail</a></nav>"
    } else {
        "<nav></nav>"
    };
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · airlock console</title><link rel=\"stylesheet\" href=\"console.css\">\
         </head><body><header><a class=\"brand\" href=\"./\">airlock console</a>\
         {nav}{who}</header><main>{body}</main></body></html>\n",
        Text(title)
    )
}

fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn or_dash(value: Option<&str>) -> &str {
    value.unwrap_or("-")
}

/// The list's filters as given in the query, and the index filter they make.
#[derive(Debug, Default)]
struct ListQuery {
    fields: Vec<(String, String)>,
    filter: QuarantineFilter,
    after: Option<String>,
}

const FILTER_FIELDS: [&str; 8] = [
    "tenant",
    "purpose",
    "reason",
    "status",
    "signature",
    "uploader",
    "since",
    "until",
];

fn list_query(query: &str) -> Result<ListQuery, String> {
    let fields = form_fields(query)?;
    let text = |name: &str| field(&fields, name).map(str::to_owned);
    let when = |name: &str| {
        field(&fields, name)
            .map(|value| parse_when(value).map_err(|e| format!("{name}: {e}")))
            .transpose()
    };
    let reasons = fields
        .iter()
        .filter(|(name, value)| name == "reason" && !value.trim().is_empty())
        .map(|(_, value)| {
            value
                .trim()
                .parse::<ReasonCode>()
                .map_err(|_| format!("reason: {value:?} is not a reason code"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let filter = QuarantineFilter {
        tenant: text("tenant"),
        purpose: text("purpose"),
        reasons,
        signature: text("signature"),
        uploader: text("uploader"),
        since: when("since")?,
        until: when("until")?,
        status: field(&fields, "status")
            .map(|s| {
                s.parse::<QuarantineStatus>()
                    .map_err(|e| format!("status: {e}"))
            })
            .transpose()?,
    };
    let after = text("after");
    Ok(ListQuery {
        fields,
        filter,
        after,
    })
}

/// The query string of the list with these filters (and `extra` appended).
fn list_href(fields: &[(String, String)], extra: &[(&str, &str)]) -> String {
    let mut pairs: Vec<String> = fields
        .iter()
        .filter(|(name, value)| FILTER_FIELDS.contains(&name.as_str()) && !value.is_empty())
        .filter(|(name, _)| !extra.iter().any(|(n, _)| n == name))
        .map(|(name, value)| format!("{}={}", url_encode(name), url_encode(value)))
        .collect();
    pairs.extend(
        extra
            .iter()
            .map(|(name, value)| format!("{}={}", url_encode(name), url_encode(value))),
    );
    format!("./?{}", pairs.join("&"))
}

async fn list_page(console: &Cx<'_>, query: &str) -> Answer {
    let query = match list_query(query) {
        Ok(query) => query,
        Err(problem) => {
            return Answer::problem(StatusCode::BAD_REQUEST, console, &problem, None);
        }
    };
    let index = console.local.quarantine.as_ref();
    let page = index
        .list(
            &query.filter,
            &PageRequest {
                limit: PAGE_SIZE,
                after: query.after.clone(),
            },
        )
        .await;
    let counts = index.counts(&query.filter).await;
    let (page, counts) = match (page, counts) {
        (Ok(page), Ok(counts)) => (page, counts),
        (Err(e), _) | (_, Err(e)) => return failure(console, &e, None),
    };
    let mut body = String::from("<h1>Quarantine</h1>");
    filter_form(&mut body, &query);
    let _ = write!(
        body,
        "<section class=\"counts\"><h2>{} matching</h2>",
        counts.total
    );
    count_links(&mut body, "By reason", "reason", &counts.by_reason, &query);
    count_links(&mut body, "By status", "status", &counts.by_status, &query);
    body.push_str("</section>");
    if page.items.is_empty() {
        body.push_str("<p class=\"empty\">No quarantined uploads match.</p>");
    } else {
        body.push_str(
            "<table class=\"items\"><thead><tr><th>Quarantined</th><th>Status</th>\
             <th>Reason</th><th>Tenant</th><th>Purpose</th><th>Filename</th>\
             <th>Signature</th><th class=\"num\">Size</th></tr></thead><tbody>",
        );
        for item in &page.items {
            list_row(&mut body, item);
        }
        body.push_str("</tbody></table>");
    }
    if let Some(next) = &page.next {
        let _ = write!(
            body,
            "<p class=\"more\"><a href=\"{}\">Older uploads →</a></p>",
            Text(&list_href(&query.fields, &[("after", next)]))
        );
    }
    Answer::page(StatusCode::OK, "Quarantine", console, &body)
}

fn filter_form(body: &mut String, query: &ListQuery) {
    let value = |name: &str| field(&query.fields, name).unwrap_or("");
    body.push_str("<form class=\"filters\" method=\"get\" action=\"./\">");
    for (name, label, hint) in [
        ("tenant", "Tenant", ""),
        ("purpose", "Purpose", ""),
        ("signature", "Signature", ""),
        ("uploader", "Uploader", ""),
        ("since", "Since", "2026-03-01 or RFC 3339"),
        ("until", "Until", "2026-03-31 or RFC 3339"),
    ] {
        let _ = write!(
            body,
            "<label>{label}<input name=\"{name}\" value=\"{}\" placeholder=\"{hint}\"></label>",
            Text(value(name))
        );
    }
    let chosen = value("reason");
    body.push_str("<label>Reason<select name=\"reason\"><option value=\"\">any</option>");
    for reason in ReasonCode::ALL {
        let code = reason.code();
        let _ = write!(
            body,
            "<option{}>{code}</option>",
            if code == chosen { " selected" } else { "" }
        );
    }
    body.push_str("</select></label>");
    let chosen = value("status");
    body.push_str("<label>Status<select name=\"status\"><option value=\"\">any</option>");
    for status in QuarantineStatus::ALL {
        let _ = write!(
            body,
            "<option{}>{status}</option>",
            if status.as_str() == chosen {
                " selected"
            } else {
                ""
            }
        );
    }
    body.push_str(
        "</select></label><button type=\"submit\">Filter</button>\
         <a class=\"clear\" href=\"./\">Clear</a></form>",
    );
}

fn count_links(body: &mut String, title: &str, name: &str, counts: &[Count], query: &ListQuery) {
    let _ = write!(body, "<div class=\"count-group\"><h3>{title}</h3><ul>");
    for count in counts {
        let _ = write!(
            body,
            "<li><a href=\"{}\"><span class=\"code\">{}</span> <span class=\"n\">{}</span></a></li>",
            Text(&list_href(&query.fields, &[(name, &count.value)])),
            Text(&count.value),
            count.count
        );
    }
    body.push_str("</ul></div>");
}

fn list_row(body: &mut String, item: &QuarantineItem) {
    let record = &item.record;
    let _ = write!(
        body,
        "<tr><td><a href=\"item?key={}\">{}</a></td><td class=\"status {status}\">{status}</td>\
         <td class=\"code\">{}</td><td>{}</td><td>{}</td><td class=\"name\">{}</td>\
         <td>{}</td><td class=\"num\">{}</td></tr>",
        Text(&url_encode(item.key())),
        time(record.quarantined_at),
        record.reason.code(),
        Text(or_dash(record.tenant.as_deref())),
        Text(or_dash(record.purpose.as_deref())),
        Text(or_dash(record.filename.as_deref())),
        Text(or_dash(record.signature.as_deref())),
        record.size,
        status = item.status,
    );
}

async fn item_page(console: &Cx<'_>, query: &str) -> Answer {
    let fields = match form_fields(query) {
        Ok(fields) => fields,
        Err(problem) => return Answer::problem(StatusCode::BAD_REQUEST, console, &problem, None),
    };
    let Some(key) = field(&fields, "key") else {
        return Answer::problem(
            StatusCode::BAD_REQUEST,
            console,
            "which item? give ?key=<quarantine key>",
            None,
        );
    };
    let detail = match review::describe(&console.local.review(), key).await {
        Ok(detail) => detail,
        Err(err) => return review_problem(console, &err, None),
    };
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1>{}</h1>",
        Text(or_dash(detail.item.record.filename.as_deref()))
    );
    match field(&fields, "done") {
        Some("released") => body.push_str("<p class=\"done\">Released.</p>"),
        Some("rescanned") => body.push_str("<p class=\"done\">Rescanned clean and released.</p>"),
        Some("purged") => body.push_str("<p class=\"done\">Purged; a tombstone was kept.</p>"),
        _ => {}
    }
    record_section(&mut body, &detail);
    actions_section(&mut body, console, &detail);
    history_section(&mut body, &detail);
    audit_table(&mut body, &detail.audit, false);
    let _ = write!(body, "<section><h2>First {} bytes</h2>", detail.head.len());
    if detail.object_present {
        let _ = write!(
            body,
            "<p class=\"note\">A hex dump: the bytes are never shown as the type they claim.</p>\
             <pre class=\"hex\">{}</pre>",
            Text(&hex_dump(&detail.head))
        );
    } else {
        body.push_str("<p class=\"note\">The object is no longer in quarantine.</p>");
    }
    body.push_str("</section>");
    let _ = write!(
        body,
        "<section><details><summary>The quarantine record (JSON)</summary><pre>{}</pre>\
         </details></section>",
        Text(&serde_json::to_string_pretty(&detail.item.record).unwrap_or_default())
    );
    Answer::page(StatusCode::OK, detail.item.key(), console, &body)
}

fn record_section(body: &mut String, detail: &ItemDetail) {
    let item = &detail.item;
    let record = &item.record;
    let declared = format!(
        "{} ({} bytes)",
        or_dash(record.declared_type.as_deref()),
        record
            .declared_size
            .map_or_else(|| "-".to_owned(), |s| s.to_string())
    );
    let mut rows: Vec<(&str, Cow<'_, str>)> = vec![
        ("Key", Cow::Borrowed(record.quarantine_key.as_str())),
        ("Status", Cow::Borrowed(item.status.as_str())),
        ("Reason", Cow::Borrowed(record.reason.code())),
        ("Detail", Cow::Borrowed(record.detail.as_str())),
        (
            "Signature",
            Cow::Borrowed(or_dash(record.signature.as_deref())),
        ),
        ("Engine", Cow::Borrowed(or_dash(record.engine.as_deref()))),
        ("Stage", Cow::Borrowed(record.stage.as_str())),
        ("SHA-256", Cow::Borrowed(record.sha256.as_str())),
        ("Size", Cow::Owned(record.size.to_string())),
        ("Tenant", Cow::Borrowed(or_dash(record.tenant.as_deref()))),
        ("Purpose", Cow::Borrowed(or_dash(record.purpose.as_deref()))),
        (
            "Upload",
            Cow::Borrowed(or_dash(record.intent_id.as_deref())),
        ),
        (
            "Uploader",
            Cow::Borrowed(or_dash(record.uploader.as_deref())),
        ),
        (
            "Filename",
            Cow::Borrowed(or_dash(record.filename.as_deref())),
        ),
        ("Declared", Cow::Owned(declared)),
        ("Original key", Cow::Borrowed(record.original_key.as_str())),
        ("Quarantined", Cow::Owned(time(record.quarantined_at))),
    ];
    if let Some(intent) = &detail.intent {
        rows.push(("Intent", Cow::Borrowed(intent.state.as_str())));
    }
    if let Some(tombstone) = &detail.tombstone {
        rows.push((
            "Purged",
            Cow::Owned(format!(
                "{} by {}: {}",
                time(tombstone.purged_at),
                tombstone.purged_by,
                tombstone.why
            )),
        ));
    }
    body.push_str("<section><h2>Record</h2><table class=\"record\"><tbody>");
    for (name, value) in rows {
        let _ = write!(body, "<tr><th>{name}</th><td>{}</td></tr>", Text(&value));
    }
    body.push_str("</tbody></table></section>");
}

fn actions_section(body: &mut String, console: &Cx<'_>, detail: &ItemDetail) {
    if detail.item.status != QuarantineStatus::Quarantined {
        return;
    }
    let Some(session) = &console.session else {
        return;
    };
    let admin = session.role == Role::Admin;
    let reason = detail.item.record.reason;
    body.push_str("<section class=\"actions\"><h2>Actions</h2>");
    let key = Text(detail.item.key());
    let token = Text(&session.csrf);
    let why = "<label>Why (recorded in the audit trail)\
               <textarea name=\"why\" required minlength=\"3\" rows=\"2\"></textarea></label>";
    let form = |body: &mut String, path: &str, help: &str, extra: &str, button: &str| {
        let _ = write!(
            body,
            "<form class=\"action {path}\" method=\"post\" action=\"{path}\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{token}\">\
             <input type=\"hidden\" name=\"key\" value=\"{key}\">\
             <p>{help}</p>{why}{extra}<button type=\"submit\">{button}</button></form>"
        );
    };
    let release_help = if reason.release_can_fix() {
        "Rescans the bytes with the current scanner and promotes them if clean \
         (images are sanitized by the media stage first)."
    } else {
        "Its reason describes the upload itself, not a verdict: only an admin's forced \
         release can override it (the bytes are still scanned, images still sanitized)."
    };
    let force = if admin {
        "<label class=\"force\"><input type=\"checkbox\" name=\"force\" value=\"1\"> \
         Force: accept another size, the type the bytes have, no declared checksum</label>"
    } else {
        ""
    };
    form(body, "release", release_help, force, "Release");
    if reason.is_transient() {
        form(
            body,
            "rescan",
            "Quarantined for an outage: rescans the bytes now and promotes them if clean.",
            "",
            "Rescan",
        );
    }
    form(
        body,
        "export",
        "Downloads the object and its record as a zip encrypted with the password \
         <code>infected</code>, named by its SHA-256.",
        "",
        "Export",
    );
    if admin {
        form(
            body,
            "purge",
            "Deletes the quarantined object; its record and a tombstone stay.",
            "",
            "Purge",
        );
    } else {
        body.push_str("<p class=\"note\">Purging and forced releases need the admin role.</p>");
    }
    body.push_str("</section>");
}

fn history_section(body: &mut String, detail: &ItemDetail) {
    body.push_str("<section><h2>Intent transitions</h2>");
    if detail.history.is_empty() {
        body.push_str("<p class=\"note\">No recorded transitions.</p></section>");
        return;
    }
    body.push_str("<table><thead><tr><th>At</th><th>From</th><th>To</th></tr></thead><tbody>");
    for change in &detail.history {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            time(change.at),
            change.from.as_str(),
            change.to.as_str()
        );
    }
    body.push_str("</tbody></table></section>");
}

fn audit_table(body: &mut String, entries: &[AuditEntry], with_subject: bool) {
    body.push_str("<section><h2>Audit entries</h2>");
    if entries.is_empty() {
        body.push_str("<p class=\"note\">None.</p></section>");
        return;
    }
    body.push_str(
        "<table class=\"audit\"><thead><tr><th class=\"num\">#</th><th>At</th><th>Reviewer</th>\
         <th>Action</th><th>Change</th>",
    );
    if with_subject {
        body.push_str("<th>Subject</th>");
    }
    body.push_str("<th>Why</th><th>Detail</th></tr></thead><tbody>");
    for entry in entries {
        let record = &entry.record;
        let _ = write!(
            body,
            "<tr><td class=\"num\">{}</td><td>{}</td><td>{}</td><td class=\"code\">{}</td>\
             <td>{} → {}</td>",
            entry.seq,
            time(record.at),
            Text(&record.actor),
            record.action.as_str(),
            Text(&record.before),
            Text(&record.after),
        );
        if with_subject {
            let _ = write!(
                body,
                "<td><a href=\"item?key={}\">{}</a></td>",
                Text(&url_encode(&record.subject)),
                Text(&record.subject)
            );
        }
        let _ = write!(
            body,
            "<td>{}</td><td>{}</td></tr>",
            Text(&record.why),
            Text(or_dash(record.detail.as_deref()))
        );
    }
    body.push_str("</tbody></table></section>");
}

async fn audit_page(console: &Cx<'_>, query: &str) -> Answer {
    let fields = match form_fields(query) {
        Ok(fields) => fields,
        Err(problem) => return Answer::problem(StatusCode::BAD_REQUEST, console, &problem, None),
    };
    let action = match field(&fields, "action").map(str::parse::<AuditAction>) {
        None => None,
        Some(Ok(action)) => Some(action),
        Some(Err(problem)) => {
            return Answer::problem(StatusCode::BAD_REQUEST, console, &problem, None);
        }
    };
    let before_seq = match field(&fields, "before").map(str::parse::<u64>) {
        None => None,
        Some(Ok(seq)) => Some(seq),
        Some(Err(_)) => {
            return Answer::problem(
                StatusCode::BAD_REQUEST,
                console,
                "before: not an entry number",
                None,
            );
        }
    };
    let audit = console.local.audit.as_ref();
    let check = match audit.verify().await {
        Ok(check) => check,
        Err(e) => return failure(console, &e, None),
    };
    let entries = match audit
        .list(&AuditFilter {
            subject: field(&fields, "subject").map(str::to_owned),
            actor: field(&fields, "actor").map(str::to_owned),
            action,
            before_seq,
            limit: AUDIT_PAGE,
        })
        .await
    {
        Ok(entries) => entries,
        Err(e) => return failure(console, &e, None),
    };
    let mut body = String::from("<h1>Audit trail</h1>");
    match &check {
        AuditCheck::Intact { entries, head } => {
            let _ = write!(
                body,
                "<p class=\"verify intact\">Chain intact: {entries} entries, head <code>{}</code>.</p>",
                Text(head)
            );
        }
        AuditCheck::Broken { seq, problem } => {
            let _ = write!(
                body,
                "<p class=\"verify broken\">Chain broken at entry {seq}: {}</p>",
                Text(problem)
            );
        }
    }
    let value = |name: &str| field(&fields, name).unwrap_or("");
    let _ = write!(
        body,
        "<form class=\"filters\" method=\"get\" action=\"audit\">\
         <label>Reviewer<input name=\"actor\" value=\"{}\"></label>\
         <label>Subject<input name=\"subject\" value=\"{}\"></label>\
         <label>Action<select name=\"action\"><option value=\"\">any</option>",
        Text(value("actor")),
        Text(value("subject"))
    );
    for action in AuditAction::ALL {
        let _ = write!(
            body,
            "<option{}>{action}</option>",
            if action.as_str() == value("action") {
                " selected"
            } else {
                ""
            }
        );
    }
    body.push_str(
        "</select></label><button type=\"submit\">Filter</button>\
         <a class=\"clear\" href=\"audit\">Clear</a></form>",
    );
    audit_table(&mut body, &entries, true);
    if let (true, Some(last)) = (entries.len() == AUDIT_PAGE, entries.last()) {
        let mut pairs: Vec<String> = ["actor", "subject", "action"]
            .iter()
            .filter_map(|name| field(&fields, name).map(|v| format!("{name}={}", url_encode(v))))
            .collect();
        pairs.push(format!("before={}", last.seq));
        let _ = write!(
            body,
            "<p class=\"more\"><a href=\"audit?{}\">Older entries →</a></p>",
            Text(&pairs.join("&"))
        );
    }
    Answer::page(StatusCode::OK, "Audit trail", console, &body)
}

// ---------------------------------------------------------------------------------------
// Actions

fn failure(console: &Cx<'_>, error: &dyn std::error::Error, back: Option<&str>) -> Answer {
    tracing::error!(error = %airlock_core::stages::error_chain(error), "console request failed");
    Answer::problem(
        StatusCode::INTERNAL_SERVER_ERROR,
        console,
        &airlock_core::stages::error_chain(error),
        back,
    )
}

fn review_problem(console: &Cx<'_>, err: &ReviewError, back: Option<&str>) -> Answer {
    match err {
        ReviewError::NotFound(_) => {
            Answer::problem(StatusCode::NOT_FOUND, console, &err.to_string(), None)
        }
        ReviewError::ReasonRequired => {
            Answer::problem(StatusCode::BAD_REQUEST, console, &err.to_string(), back)
        }
        err if err.is_refusal() => {
            Answer::problem(StatusCode::CONFLICT, console, &err.to_string(), back)
        }
        err => failure(console, err, back),
    }
}

/// The fields of a form posted to the console, once its origin and shape are checked.
async fn checked_form(
    console: &Cx<'_>,
    headers: &http::HeaderMap,
    body: Incoming,
) -> Result<Vec<(String, String)>, Answer> {
    let origin = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok());
    if !origin.is_some_and(|origin| console.origins.iter().any(|o| o == origin)) {
        return Err(Answer::problem(
            StatusCode::FORBIDDEN,
            console,
            "refused: an action must come from a page of this console (the Origin header is missing or names another site)",
            None,
        ));
    }
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|c| c.to_str().ok())
        .and_then(|c| c.split(';').next())
        .is_some_and(|c| {
            c.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !is_form {
        return Err(Answer::problem(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            console,
            "an action is a form post (application/x-www-form-urlencoded)",
            None,
        ));
    }
    let bytes = match Limited::new(body, MAX_FORM).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            return Err(Answer::problem(
                StatusCode::PAYLOAD_TOO_LARGE,
                console,
                &format!("the form could not be read within {MAX_FORM} bytes: {e}"),
                None,
            ));
        }
    };
    std::str::from_utf8(&bytes)
        .map_err(|_| "the form is not UTF-8".to_owned())
        .and_then(form_fields)
        .map_err(|problem| Answer::problem(StatusCode::BAD_REQUEST, console, &problem, None))
}

fn signin_page(console: &Cx<'_>, status: StatusCode, problem: Option<&str>) -> Answer {
    let mut body = String::from("<h1>Sign in</h1>");
    if let Some(problem) = problem {
        let _ = write!(body, "<p class=\"problem\">{}</p>", Text(problem));
    }
    if let Some(session) = &console.session {
        let _ = write!(
            body,
            "<p class=\"note\">Signed in as {} ({}). Signing in again replaces that.</p>",
            Text(&session.name),
            session.role
        );
    }
    body.push_str(
        "<form class=\"signin\" method=\"post\" action=\"signin\">\
         <label>Console token<input type=\"password\" name=\"token\" required \
         autocomplete=\"current-password\" autofocus></label>\
         <button type=\"submit\">Sign in</button></form>\
         <p class=\"note\">Tokens come from the console's tokens file or \
         <code>AIRLOCK_CONSOLE_TOKENS</code>; without them, the console printed an admin \
         token when it started.</p>",
    );
    Answer::page(status, "Sign in", console, &body)
}

/// Checks a posted token and opens a session: a new id each time (a session id known
/// before signing in is never the one after).
async fn sign_in(console: &Cx<'_>, headers: &http::HeaderMap, body: Incoming) -> Answer {
    let fields = match checked_form(console, headers, body).await {
        Ok(fields) => fields,
        Err(refused) => return refused,
    };
    let Some((name, role)) = field(&fields, "token").and_then(|t| console.tokens.check(t)) else {
        return signin_page(
            console,
            StatusCode::FORBIDDEN,
            Some("refused: that is not a console token"),
        );
    };
    if let Some(old) = console.session_id(headers) {
        console.sessions.close(old);
    }
    match console.sessions.open(name, role) {
        Ok(id) => Answer::redirect(console.home())
            .with_header(header::SET_COOKIE, &console.cookie(Some(&id))),
        Err(e) => Answer::problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            console,
            &format!("{e:#}"),
            None,
        ),
    }
}

/// The action a form asks for, with what it needs.
enum Act {
    Release { force: bool },
    Rescan,
    Purge,
    Export,
}

async fn action(console: &Cx<'_>, page: &str, headers: &http::HeaderMap, body: Incoming) -> Answer {
    let fields = match checked_form(console, headers, body).await {
        Ok(fields) => fields,
        Err(refused) => return refused,
    };
    let Some(session) = &console.session else {
        return Answer::problem(
            StatusCode::FORBIDDEN,
            console,
            "refused: sign in first (no session, or it expired)",
            None,
        );
    };
    if !field(&fields, "csrf").is_some_and(|token| same_secret(token, &session.csrf)) {
        return Answer::problem(
            StatusCode::FORBIDDEN,
            console,
            "refused: the form's token is missing or stale (reload the page and try again)",
            None,
        );
    }
    if page == "/signout" {
        if let Some(id) = console.session_id(headers) {
            console.sessions.close(id);
        }
        return Answer::redirect(format!("{}/signin", console.prefix))
            .with_header(header::SET_COOKIE, &console.cookie(None));
    }
    let act = match page {
        "/release" => Act::Release {
            force: field(&fields, "force").is_some(),
        },
        "/rescan" => Act::Rescan,
        "/purge" => Act::Purge,
        _ => Act::Export,
    };
    let Some(key) = field(&fields, "key") else {
        return Answer::problem(
            StatusCode::BAD_REQUEST,
            console,
            "which item? the form has no key",
            None,
        );
    };
    let needs_admin = match act {
        Act::Purge => Some("purging"),
        Act::Release { force: true } => Some("a forced release"),
        _ => None,
    };
    if let (Some(what), Role::Reviewer) = (needs_admin, session.role) {
        return Answer::problem(
            StatusCode::FORBIDDEN,
            console,
            &format!(
                "refused: {what} needs the admin role; {} is signed in as a reviewer",
                session.name
            ),
            Some(key),
        );
    }
    let Some(why) = field(&fields, "why") else {
        return Answer::problem(
            StatusCode::BAD_REQUEST,
            console,
            "refused: a written reason is required (why is this done?)",
            Some(key),
        );
    };
    let review = console.local.review();
    let reviewer = session.name.as_str();
    let done = |what: &str| {
        Answer::redirect(format!(
            "{}/item?key={}&done={what}",
            console.prefix,
            url_encode(key)
        ))
    };
    match act {
        Act::Purge => match review::purge(&review, key, reviewer, why).await {
            Ok(_) => done("purged"),
            Err(err) => review_problem(console, &err, Some(key)),
        },
        Act::Export => export(console, key, reviewer, why).await,
        Act::Release { force } => {
            judged(console, key, "released", |rescanning| async move {
                review::release(&review, &rescanning, key, reviewer, why, force).await
            })
            .await
        }
        Act::Rescan => {
            judged(console, key, "rescanned", |rescanning| async move {
                review::rescan_item(&review, &rescanning, key, reviewer, why).await
            })
            .await
        }
    }
}

/// Runs a release or rescan with the console's scanner, and answers with its outcome.
async fn judged<'a, F, Fut>(console: &'a Cx<'_>, key: &str, done: &str, run: F) -> Answer
where
    F: FnOnce(Rescanning<'a>) -> Fut,
    Fut: std::future::Future<Output = Result<ReleaseReport, ReviewError>>,
{
    let judge = match console.judge().await {
        Ok(judge) => judge,
        Err(e) => {
            let message = format!("the scanner could not be started: {e:#}");
            return Answer::problem(
                StatusCode::SERVICE_UNAVAILABLE,
                console,
                &message,
                Some(key),
            );
        }
    };
    let rescanning = Rescanning {
        scanner: judge.scanner.as_ref(),
        freshness: crate::review_cli::LOCAL_FRESHNESS,
        policies: &judge.policies,
        media: Arc::new(airlock_media::ImageProcessor),
        media_permits: Arc::clone(&judge.media_permits),
    };
    match run(rescanning).await {
        Ok(report) => match report.outcome {
            ReleaseOutcome::Released { .. } => Answer::redirect(format!(
                "{}/item?key={}&done={done}",
                console.prefix,
                url_encode(key)
            )),
            ReleaseOutcome::Rejected(rejection) => Answer::problem(
                StatusCode::CONFLICT,
                console,
                &format!(
                    "refused: it stays quarantined: judged again as {} ({}); audit entry {}",
                    rejection.reason, rejection.detail, report.audit_seq
                ),
                Some(key),
            ),
        },
        Err(err) => review_problem(console, &err, Some(key)),
    }
}

/// The export as a download: a zip encrypted with the password `infected`, as an
/// attachment that no browser renders.
async fn export(console: &Cx<'_>, key: &str, reviewer: &str, why: &str) -> Answer {
    let spool = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(e) => return failure(console, &e, Some(key)),
    };
    let sink = airlock_local::EncryptedZipFile {
        path: spool.path().join("sample.zip"),
    };
    let report = match review::export(&console.local.review(), key, reviewer, why, &sink).await {
        Ok(report) => report,
        Err(err) => return review_problem(console, &err, Some(key)),
    };
    let bytes = match tokio::fs::read(&sink.path).await {
        Ok(bytes) => bytes,
        Err(e) => return failure(console, &e, Some(key)),
    };
    Answer {
        status: StatusCode::OK,
        body: Bytes::from(bytes),
        content_type: "application/zip",
        location: None,
        headers: Vec::new(),
    }
    .with_header(
        header::CONTENT_DISPOSITION,
        &format!("attachment; filename=\"{}.zip\"", report.sha256),
    )
}

impl Console {
    /// The scanner and policies releases use: a running one, or `--clamd`, or a clamd
    /// started on the first release and stopped with the console.
    async fn judge(&self) -> anyhow::Result<&Judge> {
        self.judge
            .get_or_try_init(|| async {
                let args = self
                    .scanner
                    .as_ref()
                    .context("the console has no scanner")?;
                let (scanner, managed, policies) =
                    crate::review_cli::rescanning_parts(args).await?;
                Ok(Judge {
                    scanner,
                    _managed: Mutex::new(managed),
                    policies,
                    media_permits: crate::review_cli::media_permits(),
                })
            })
            .await
    }
}

const STYLE: &str = "\
:root{color-scheme:light dark;--fg:#1b1f24;--muted:#5c6670;--line:#d8dde3;--bg:#fff;--head:#f4f6f8;--bad:#b42318;--good:#087443;--accent:#1f5fbf}
@media (prefers-color-scheme:dark){:root{--fg:#e6e9ed;--muted:#9aa4ae;--line:#38404a;--bg:#14181d;--head:#1d232a;--bad:#f97066;--good:#47cd89;--accent:#7cb4ff}}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,sans-serif;color:var(--fg);background:var(--bg)}
header{display:flex;gap:1.5rem;align-items:center;padding:.6rem 1.2rem;border-bottom:1px solid var(--line);background:var(--head)}
header nav{display:flex;gap:1rem;flex:1}
a{color:var(--accent)}
.brand{font-weight:700;text-decoration:none;color:var(--fg)}
.who{color:var(--muted)}
main{padding:1rem 1.2rem;max-width:110rem}
h1{font-size:1.35rem;margin:.2rem 0 1rem;overflow-wrap:anywhere}
h2{font-size:1.05rem;margin:1.4rem 0 .5rem}
h3{font-size:.9rem;margin:0 0 .3rem;color:var(--muted)}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid var(--line);vertical-align:top;overflow-wrap:anywhere}
thead th{background:var(--head)}
table.record th{width:10rem;color:var(--muted);font-weight:500}
.num{text-align:right;font-variant-numeric:tabular-nums}
.code,code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,monospace}
pre{background:var(--head);padding:.6rem;overflow:auto;border:1px solid var(--line)}
.filters{display:flex;flex-wrap:wrap;gap:.6rem;align-items:end;margin-bottom:1rem}
.filters label{display:flex;flex-direction:column;font-size:.8rem;color:var(--muted)}
input,select,textarea,button{font:inherit}
input,select{padding:.2rem .3rem;min-width:9rem}
button{padding:.3rem .9rem;cursor:pointer}
.counts{display:flex;flex-wrap:wrap;gap:2rem;align-items:start;margin-bottom:1rem}
.counts h2{margin:0;flex-basis:100%}
.count-group ul{list-style:none;margin:0;padding:0}
.count-group .n{color:var(--muted)}
.status.quarantined{color:var(--bad)}.status.released{color:var(--good)}.status.purged{color:var(--muted)}
.actions{display:flex;flex-wrap:wrap;gap:1rem}
.actions h2{flex-basis:100%;margin-bottom:0}
form.action{border:1px solid var(--line);padding:.6rem .8rem;flex:1;min-width:20rem}
form.action textarea{display:block;width:100%;margin:.3rem 0 .5rem}
form.purge button{color:var(--bad)}
.problem,.verify.broken{color:var(--bad);font-weight:600}
.done,.verify.intact{color:var(--good);font-weight:600}
.note,.empty{color:var(--muted)}
form.signout{margin:0}
form.signout button{padding:.15rem .6rem}
form.signin{display:flex;gap:.6rem;align-items:end;margin:1rem 0}
form.signin label{display:flex;flex-direction:column;font-size:.8rem;color:var(--muted)}
form.signin input{min-width:24rem}
label.force{display:block;margin-bottom:.5rem;color:var(--bad)}
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_escapes_markup_and_shows_hidden_characters() {
        assert_eq!(
            escape_html("<img src=x onerror=alert(1)>.png"),
            "&lt;img src=x onerror=alert(1)&gt;.png"
        );
        assert_eq!(
            escape_html("\"a\" & 'b'"),
            "&quot;a&quot; &amp; &#39;b&#39;"
        );
        assert_eq!(
            escape_html("invoice\u{202e}gpj.exe\u{7}"),
            "invoice\\u{202e}gpj.exe\\u{0007}"
        );
    }

    #[test]
    fn form_values_decode_and_bad_escapes_are_named() {
        assert_eq!(
            form_fields("key=quarantine%2Facme%2Fx&why=a+b%21&empty").unwrap(),
            vec![
                ("key".to_owned(), "quarantine/acme/x".to_owned()),
                ("why".to_owned(), "a b!".to_owned()),
                ("empty".to_owned(), String::new()),
            ]
        );
        assert!(
            form_fields("why=%zz")
                .unwrap_err()
                .contains("percent escape")
        );
        assert!(form_fields("why=%ff").unwrap_err().contains("UTF-8"));
        let key = "quarantine/acme/avatar/<x> & y";
        assert_eq!(form_decode(&url_encode(key)).unwrap(), key);
    }

    #[test]
    fn list_filters_parse_and_name_what_is_wrong() {
        let query =
            list_query("tenant=acme&reason=infected&reason=&status=purged&since=2026-03-01")
                .unwrap();
        assert_eq!(query.filter.tenant.as_deref(), Some("acme"));
        assert_eq!(query.filter.reasons, vec![ReasonCode::Infected]);
        assert_eq!(query.filter.status, Some(QuarantineStatus::Purged));
        assert!(query.filter.since.is_some());
        assert!(list_query("reason=nope").unwrap_err().contains("reason"));
        assert!(list_query("since=yesterday").unwrap_err().contains("since"));
        assert!(list_query("status=gone").unwrap_err().contains("status"));
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
    }
}
