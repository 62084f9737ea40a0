//! `airlock bench api`: requests per second and latency of the upload API's `POST /uploads`
//! end to end in `airlock dev` (HTTP request, token verified, policy checked, intent stored
//! in SQLite, URL signed, JSON answer), for `scripts/bench-api.sh`.
//!
//! The server runs in this process on 127.0.0.1 with a fresh data dir; the load comes from
//! keep-alive HTTP/1.1 connections (hyper's client) on the same runtime, so client and server
//! share the machine's cores and the figure is what one machine does with both on it.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde_json::json;
use tokio::net::TcpStream;

use crate::{DevInfo, ServeArgs};

/// Measure `POST /uploads` against an in-process `airlock dev`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchApiArgs {
    /// Requests timed in each run.
    #[arg(long, default_value_t = 20_000)]
    pub requests: usize,
    /// Requests sent before timing (connections opened, caches and the database warm).
    #[arg(long, default_value_t = 2_000)]
    pub warmup: usize,
    /// Keep-alive connections, each with one request in flight.
    #[arg(long, default_value_t = 48)]
    pub concurrency: usize,
    /// The percentage of requests of the second run that carry a fresh `Idempotency-Key`
    /// (0 skips that run).
    #[arg(long, default_value_t = 50)]
    pub idempotent_percent: u8,
    /// A running clamd (`host:port` or a socket path); else one is started with
    /// `--signatures`. The benchmark sends no object, but `airlock dev` needs its scanner.
    #[arg(long, env = "AIRLOCK_CLAMD")]
    pub clamd: Option<String>,
    #[arg(long, default_value = "fixtures/clamav")]
    pub signatures: PathBuf,
    /// Work folder, emptied first: the server's data dir (and its SQLite database) goes
    /// there, on the disk a real `airlock dev` would use.
    #[arg(long, default_value = "target/bench/api")]
    pub dir: PathBuf,
}

/// One timed run.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunReport {
    pub label: String,
    /// The percentage of requests with a fresh `Idempotency-Key`.
    pub idempotent_percent: u8,
    pub requests: usize,
    pub concurrency: usize,
    pub seconds: f64,
    pub requests_per_second: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Responses other than `201 Created`.
    pub errors: usize,
    /// CPU time of this whole process (server and load generator) per request.
    pub cpu_us_per_request: Option<f64>,
}

/// What one connection saw.
#[derive(Debug, Default)]
struct Tally {
    latencies_us: Vec<u32>,
    errors: usize,
    first_error: Option<String>,
    /// A few created uploads, checked afterwards.
    samples: Vec<String>,
}

/// The request body: a JPEG avatar of 48,213 bytes with its SHA-256, signed as a PUT.
const BODY: &str = r#"{"purpose":"avatar","contentType":"image/jpeg","size":48213,"filename":"me.jpg","sha256":"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08","method":"put"}"#;

/// Every how many requests one created upload is kept for the check afterwards.
const SAMPLE_EVERY: usize = 101;

/// Process CPU time (user + system) from `/proc/self/stat`, in seconds (Linux only).
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start at field 3; utime and
    // stime are fields 14 and 15, in clock ticks of 1/100 s on Linux.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ').skip(11);
    let user: f64 = fields.next()?.parse().ok()?;
    let system: f64 = fields.next()?.parse().ok()?;
    Some((user + system) / 100.0)
}

/// Sends requests numbered from `next` up to `total` over one keep-alive connection.
async fn connection(
    addr: SocketAddr,
    token: Arc<str>,
    next: Arc<AtomicUsize>,
    total: usize,
    idempotent_percent: u8,
    run: usize,
) -> anyhow::Result<Tally> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let (mut sender, driver) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP/1.1 handshake")?;
    let driver = tokio::spawn(driver);
    let authorization = format!("Bearer {token}");
    let host = addr.to_string();
    let body = Bytes::from_static(BODY.as_bytes());
    let mut tally = Tally::default();
    loop {
        let number = next.fetch_add(1, Ordering::Relaxed);
        if number >= total {
            break;
        }
        let mut request = Request::builder()
            .method(Method::POST)
            .uri("/uploads")
            .header(header::HOST, &host)
            .header(header::AUTHORIZATION, &authorization)
            .header(header::CONTENT_TYPE, "application/json");
        // Spread keyed requests evenly: request n is keyed when its share rounds up.
        if (number * usize::from(idempotent_percent)) % 100 < usize::from(idempotent_percent) {
            request = request.header("idempotency-key", format!("bench-{run}-{number}"));
        }
        let request = request.body(Full::new(body.clone()))?;
        let started = Instant::now();
        sender.ready().await.context("the connection closed")?;
        let response = sender
            .send_request(request)
            .await
            .context("sending a request")?;
        let status = response.status();
        let location = response.headers().get(header::LOCATION).cloned();
        let answer = response
            .into_body()
            .collect()
            .await
            .context("reading a response")?
            .to_bytes();
        let elapsed = started.elapsed();
        tally
            .latencies_us
            .push(u32::try_from(elapsed.as_micros()).unwrap_or(u32::MAX));
        if status == StatusCode::CREATED {
            if number.is_multiple_of(SAMPLE_EVERY)
                && let Some(location) = location.and_then(|l| l.to_str().ok().map(str::to_owned))
            {
                tally.samples.push(location);
            }
        } else {
            tally.errors += 1;
            if tally.first_error.is_none() {
                tally.first_error = Some(format!(
                    "{status}: {}",
                    String::from_utf8_lossy(&answer)
                        .chars()
                        .take(300)
                        .collect::<String>()
                ));
            }
        }
    }
    drop(sender);
    let _ = driver.await;
    Ok(tally)
}

/// Fires `total` requests over `concurrency` connections; returns the tallies and the time
/// from the first request to the last answer.
async fn fire(
    addr: SocketAddr,
    token: &Arc<str>,
    total: usize,
    concurrency: usize,
    idempotent_percent: u8,
    run: usize,
) -> anyhow::Result<(Vec<Tally>, Duration)> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        tasks.spawn(connection(
            addr,
            Arc::clone(token),
            Arc::clone(&next),
            total,
            idempotent_percent,
            run,
        ));
    }
    let mut tallies = Vec::with_capacity(concurrency);
    while let Some(done) = tasks.join_next().await {
        tallies.push(done??);
    }
    Ok((tallies, started.elapsed()))
}

#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    reason = "an index into a sorted list, and milliseconds for display"
)]
fn percentile_ms(sorted_us: &[u32], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let index = ((sorted_us.len() - 1) as f64 * p).round() as usize;
    f64::from(sorted_us[index]) / 1000.0
}

/// Checks that sampled uploads exist and are `PENDING` (`GET /uploads/{id}`).
async fn check_samples(addr: SocketAddr, token: &str, samples: &[String]) -> anyhow::Result<()> {
    let stream = TcpStream::connect(addr).await?;
    let (mut sender, driver) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let driver = tokio::spawn(driver);
    for location in samples {
        let request = Request::builder()
            .uri(location.as_str())
            .header(header::HOST, addr.to_string())
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Full::new(Bytes::new()))?;
        sender.ready().await?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        let state: Option<String> = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("state").and_then(|s| s.as_str()).map(str::to_owned));
        if status != StatusCode::OK || state.as_deref() != Some("PENDING") {
            bail!(
                "GET {location} after the run: {status} {}",
                String::from_utf8_lossy(&body)
            );
        }
    }
    drop(sender);
    let _ = driver.await;
    Ok(())
}

/// One timed run: returns its report and the sampled uploads.
async fn timed_run(
    args: &BenchApiArgs,
    addr: SocketAddr,
    token: &Arc<str>,
    idempotent_percent: u8,
    run: usize,
) -> anyhow::Result<(RunReport, Vec<String>)> {
    let cpu_before = process_cpu_seconds();
    let (tallies, elapsed) = fire(
        addr,
        token,
        args.requests,
        args.concurrency,
        idempotent_percent,
        run,
    )
    .await?;
    let cpu = cpu_before
        .zip(process_cpu_seconds())
        .map(|(before, after)| after - before);
    let mut latencies: Vec<u32> = Vec::with_capacity(args.requests);
    let mut errors = 0;
    let mut first_error = None;
    let mut samples = Vec::new();
    for tally in tallies {
        latencies.extend(tally.latencies_us);
        errors += tally.errors;
        first_error = first_error.or(tally.first_error);
        samples.extend(tally.samples);
    }
    if let Some(error) = first_error {
        eprintln!("bench api: {errors} requests failed; the first: {error}");
    }
    latencies.sort_unstable();
    let seconds = elapsed.as_secs_f64();
    #[allow(clippy::cast_precision_loss, reason = "rates for display")]
    let (rate, cpu_us) = (
        latencies.len() as f64 / seconds,
        cpu.map(|c| c * 1e6 / latencies.len().max(1) as f64),
    );
    let label = if idempotent_percent == 0 {
        "POST /uploads".to_owned()
    } else {
        format!("POST /uploads, {idempotent_percent}% with a fresh Idempotency-Key")
    };
    Ok((
        RunReport {
            label,
            idempotent_percent,
            requests: latencies.len(),
            concurrency: args.concurrency,
            seconds,
            requests_per_second: rate,
            p50_ms: percentile_ms(&latencies, 0.50),
            p90_ms: percentile_ms(&latencies, 0.90),
            p99_ms: percentile_ms(&latencies, 0.99),
            max_ms: latencies.last().map_or(0.0, |&us| f64::from(us) / 1000.0),
            errors,
            cpu_us_per_request: cpu_us,
        },
        samples,
    ))
}

/// Runs the benchmark against a server that is up at `info`.
async fn measure(args: &BenchApiArgs, info: &DevInfo) -> anyhow::Result<Vec<RunReport>> {
    let addr: SocketAddr = info
        .api
        .strip_prefix("http://")
        .unwrap_or(&info.api)
        .parse()
        .with_context(|| format!("the API address {}", info.api))?;
    let token: Arc<str> = Arc::from(info.token.as_str());
    let (warm, _) = fire(addr, &token, args.warmup, args.concurrency, 50, 0).await?;
    let warm_errors: usize = warm.iter().map(|t| t.errors).sum();
    if warm_errors > 0 {
        let first = warm.into_iter().find_map(|t| t.first_error);
        bail!(
            "{warm_errors} warm-up requests failed; the first: {}",
            first.unwrap_or_default()
        );
    }
    let mut runs = vec![0];
    if args.idempotent_percent > 0 {
        runs.push(args.idempotent_percent);
    }
    let mut reports = Vec::new();
    for (index, percent) in runs.into_iter().enumerate() {
        let (report, samples) = timed_run(args, addr, &token, percent, index + 1).await?;
        check_samples(addr, &token, &samples)
            .await
            .context("an upload the API created is not readable")?;
        reports.push(report);
    }
    Ok(reports)
}

fn table(reports: &[RunReport]) -> String {
    let mut out = String::from(
        "| run | requests | req/s | p50 ms | p90 ms | p99 ms | max ms | errors | CPU µs/req |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in reports {
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.1} | {} | {} |",
            r.label,
            r.requests,
            r.requests_per_second,
            r.p50_ms,
            r.p90_ms,
            r.p99_ms,
            r.max_ms,
            r.errors,
            r.cpu_us_per_request
                .map_or_else(|| "-".to_owned(), |c| format!("{c:.0}")),
        );
    }
    out
}

/// How the figures were measured, for the JSON and the table.
fn method(args: &BenchApiArgs) -> String {
    format!(
        "airlock dev in this process on 127.0.0.1 (fresh data dir under {}); load from {} \
         keep-alive HTTP/1.1 connections (hyper client) on the same tokio runtime, one request \
         in flight each, {} warm-up requests first; a request is timed from send to its whole \
         response; {} logical cores shared by server and load generator",
        args.dir.display(),
        args.concurrency,
        args.warmup,
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
    )
}

/// Runs the benchmark: prints one JSON object on stdout and a table on stderr; exits 1 if
/// any request failed.
pub async fn run_api(args: BenchApiArgs) -> anyhow::Result<u8> {
    if args.concurrency == 0 || args.requests == 0 {
        bail!("--concurrency and --requests must be above zero");
    }
    if args.idempotent_percent > 100 {
        bail!(
            "--idempotent-percent is a percentage (0 to 100), not {}",
            args.idempotent_percent
        );
    }
    if args.dir.exists() {
        std::fs::remove_dir_all(&args.dir)
            .with_context(|| format!("emptying {}", args.dir.display()))?;
    }
    let web_dir = args.dir.join("web");
    std::fs::create_dir_all(&web_dir).with_context(|| format!("creating {}", web_dir.display()))?;
    // A page, so the server does not warn that none is built.
    std::fs::write(
        web_dir.join("index.html"),
        "<!doctype html><title>bench</title>",
    )?;
    let serve_args = ServeArgs {
        data_dir: args.dir.join("data"),
        bucket: "airlock-dev".to_owned(),
        policies: None,
        clamd: args.clamd.clone(),
        signatures: args.signatures.clone(),
        host: std::net::Ipv4Addr::LOCALHOST.into(),
        api_port: 0,
        s3_port: 0,
        web_dir,
        ready_file: None,
        cors_origins: Vec::new(),
        tenant: "bench".to_owned(),
        subject: "bench-user".to_owned(),
        jwt_public_key: None,
        jwt_algorithm: "RS256".to_owned(),
        tenant_claim: airlock_api::identity::DEFAULT_TENANT_CLAIM.to_owned(),
        console_tokens_file: None,
        console_tokens: None,
    };
    let (ready, is_ready) = tokio::sync::oneshot::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        crate::serve(
            &serve_args,
            move |info| {
                let _ = ready.send(info.clone());
            },
            async move {
                let _ = stopped.await;
            },
        )
        .await
    });
    let Ok(info) = is_ready.await else {
        // The server ended before it was up: say why.
        server.await??;
        bail!("airlock dev stopped before it was ready");
    };
    let measured = measure(&args, &info).await;
    let _ = stop.send(());
    server.await??;
    let reports = measured?;

    let line = json!({
        "measuredWith": method(&args),
        "cores": std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        "runs": reports,
    });
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, &line)?;
    writeln!(out)?;
    eprint!("{}", table(&reports));
    eprintln!("measured: {}", method(&args));
    Ok(u8::from(reports.iter().any(|r| r.errors > 0)))
}
