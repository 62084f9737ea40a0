//! `airlock bench scan`: measures inspect and scan of one large object against a running
//! clamd, for the benchmark script (`scripts/bench.sh`), which compares it with
//! `clamdscan --stream` on the same bytes and the same clamd.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use airlock_clamd::{ClamdAddress, ClamdConfig, ClamdScanner};
use airlock_core::intent::{IntentState, UploadIntent};
use airlock_core::keys::{Purpose, TenantId, UploadId, UploadKey};
use airlock_core::object::{ObjectMeta, ObjectRef};
use airlock_core::policy::{Policies, parse_size};
use airlock_core::ports::{
    ByteStream, IntentStore, ObjectReader, ObjectVersion, StoreError, SystemClock,
};
use airlock_core::stages::{self, InspectOutcome, ScanOutcome};
use airlock_local::{FsStore, SqliteIntentStore};
use anyhow::{Context as _, bail};
use async_trait::async_trait;
use chrono::{Duration, Utc};
use serde_json::json;
use std::fmt::Write as _;

use tokio::io::AsyncWriteExt;

/// Measure inspect and scan of one large generated object.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchScanArgs {
    /// The clamd to scan with (`host:port` or a Unix socket path).
    #[arg(long)]
    pub clamd: String,
    /// Folder for the object store holding the generated object (kept between runs).
    #[arg(long, default_value = "target/bench")]
    pub dir: PathBuf,
    /// Object size, e.g. `1 GiB`, `200 MiB`.
    #[arg(long, default_value = "1 GiB")]
    pub size: String,
    /// INSTREAM chunk size in bytes (the adapter's default unless given).
    #[arg(long, default_value_t = airlock_clamd::ClamdConfig::DEFAULT_CHUNK_SIZE)]
    pub chunk_size: usize,
}

/// Counts the content bytes a stage reads.
struct CountingReader {
    inner: FsStore,
    range_bytes: AtomicU64,
    opened: AtomicU64,
}

#[async_trait]
impl ObjectReader for CountingReader {
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        self.inner.head(key).await
    }
    async fn read_range(
        &self,
        key: &str,
        version: Option<&ObjectVersion>,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, StoreError> {
        let bytes = self.inner.read_range(key, version, offset, len).await?;
        self.range_bytes
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(bytes)
    }
    async fn open(
        &self,
        key: &str,
        version: Option<&ObjectVersion>,
    ) -> Result<ByteStream, StoreError> {
        self.opened.fetch_add(1, Ordering::Relaxed);
        self.inner.open(key, version).await
    }
}

/// Peak resident memory of this process, in KiB (Linux `VmHWM`).
#[must_use]
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Writes `size` bytes of text lines (clean for any scanner, recognisable as text/plain).
async fn generate(path: &std::path::Path, size: u64) -> anyhow::Result<()> {
    if std::fs::metadata(path).is_ok_and(|m| m.len() == size) {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut file =
        tokio::io::BufWriter::with_capacity(1 << 20, tokio::fs::File::create(path).await?);
    let mut written = 0u64;
    let mut line_no = 0u64;
    let mut line = String::new();
    while written < size {
        line.clear();
        let _ = writeln!(
            line,
            "airlock benchmark line {line_no:>12} lorem ipsum dolor sit amet"
        );
        let take = usize::try_from((size - written).min(line.len() as u64))?;
        file.write_all(&line.as_bytes()[..take]).await?;
        written += take as u64;
        line_no += 1;
    }
    file.flush().await?;
    Ok(())
}

/// Runs the measurement and prints one JSON object.
pub async fn run_scan(args: BenchScanArgs) -> anyhow::Result<u8> {
    let size = parse_size(&args.size).map_err(anyhow::Error::msg)?;
    if size == 0 {
        bail!("--size must be above zero");
    }
    let address: ClamdAddress = args.clamd.parse()?;
    let store = FsStore::open(args.dir.join("bucket"))
        .with_context(|| format!("opening {}", args.dir.display()))?;
    // A fixed id, so the generated object is reused between runs.
    let id: UploadId = "01937a3b-0000-7000-8000-00000000b1a5".parse()?;
    let upload = UploadKey::new(TenantId::new("bench")?, Purpose::new("attachment")?, id);
    let key = upload.incoming();
    let path = store.path_of(&key)?;
    generate(&path, size).await?;

    let intents = SqliteIntentStore::in_memory()?;
    let now = Utc::now();
    intents
        .create(&UploadIntent {
            id,
            tenant: upload.tenant.clone(),
            purpose: upload.purpose.clone(),
            declared_type: "text/plain".to_owned(),
            declared_size: size,
            sha256: None,
            filename: None,
            uploader: None,
            state: IntentState::Pending,
            created_at: now,
            updated_at: now,
            expires_at: now + Duration::hours(1),
            outcome: None,
            multipart_upload_id: None,
        })
        .await?;
    let mut policies_toml =
        String::from("[purposes.attachment]\nallowed_types = [\"text/plain\"]\n");
    writeln!(policies_toml, "max_size = {size}")?;
    let policies = Policies::from_toml(&policies_toml)?;
    let reader = Arc::new(CountingReader {
        inner: store,
        range_bytes: AtomicU64::new(0),
        opened: AtomicU64::new(0),
    });

    let object = ObjectRef::new("bench", key.clone());
    let inspect_started = Instant::now();
    let inspected =
        stages::inspect(reader.as_ref(), &intents, &policies, &SystemClock, &object).await?;
    let inspect_seconds = inspect_started.elapsed().as_secs_f64();
    let InspectOutcome::Pass(report) = inspected else {
        bail!("inspect did not pass the generated object: {inspected:?}");
    };
    let inspect_bytes = reader.range_bytes.load(Ordering::Relaxed);
    let inspect_opened = reader.opened.load(Ordering::Relaxed);

    let scanner = ClamdScanner::new(
        ClamdConfig::new(address)
            .chunk_size(args.chunk_size)
            .verdict_timeout(std::time::Duration::from_hours(1))
            .scan_timeout(std::time::Duration::from_hours(1)),
    );
    scanner.ping().await.context("clamd does not answer PING")?;
    let started = Instant::now();
    let outcome = stages::scan(
        reader.as_ref(),
        &scanner,
        &key,
        &report,
        &airlock_archive::ArchivePolicy::default(),
        // The benchmark measures scanning, whatever the age of the clamd's definitions.
        &airlock_core::definitions::FreshnessRule::accepting_undated(None),
        &airlock_core::ports::SystemClock,
    )
    .await?;
    let seconds = started.elapsed().as_secs_f64();
    let verdict = match &outcome {
        ScanOutcome::Pass(pass) => {
            json!({"outcome": "pass", "sha256": pass.sha256, "size": pass.size, "engine": pass.engine})
        }
        ScanOutcome::Reject(r) => {
            json!({"outcome": "reject", "reason": r.reason, "detail": r.detail})
        }
    };
    #[allow(clippy::cast_precision_loss, reason = "throughput for display")]
    let mib_per_second = size as f64 / (1024.0 * 1024.0) / seconds;
    let line = json!({
        "path": path,
        "bytes": size,
        "inspect": {
            "seconds": inspect_seconds,
            "contentBytesRead": inspect_bytes,
            "streamsOpened": inspect_opened,
            "detectedType": report.detected_type,
        },
        "scan": { "seconds": seconds, "mibPerSecond": mib_per_second, "verdict": verdict },
        "peakRssKib": peak_rss_kib(),
    });
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, &line)?;
    writeln!(out)?;
    Ok(0)
}

/// Replay many small mixed fixture cases against a running clamd.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchReplayArgs {
    /// The clamd to scan with (`host:port` or a Unix socket path).
    #[arg(long)]
    pub clamd: String,
    /// How many cases to replay (the bundled small cases, repeated with fresh ids).
    #[arg(long, default_value_t = 200)]
    pub count: usize,
    /// The bundled cases to draw from.
    #[arg(long, default_value = "fixtures/cases")]
    pub fixtures: PathBuf,
    /// Work folder (emptied first).
    #[arg(long, default_value = "target/bench/replay")]
    pub dir: PathBuf,
    /// Objects in flight at once (two per core keeps latency low on small machines).
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
}

/// Largest object a "small" case may have.
const SMALL: u64 = 64 * 1024;

/// The bundled cases small enough for the replay benchmark, with absolute object paths.
fn small_cases(fixtures: &std::path::Path) -> anyhow::Result<Vec<(String, serde_json::Value)>> {
    let mut out = Vec::new();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(fixtures)
        .with_context(|| format!("listing {}", fixtures.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    paths.sort();
    for path in paths
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
    {
        let mut case: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)
            .with_context(|| format!("reading {}", path.display()))?;
        let object = &mut case["object"];
        if let Some(file) = object.get("file").and_then(serde_json::Value::as_str) {
            let absolute = std::fs::canonicalize(fixtures.join(file))?;
            if std::fs::metadata(&absolute)?.len() > SMALL {
                continue;
            }
            object["file"] = absolute.to_string_lossy().into_owned().into();
        } else if object.get("path").is_some() {
            continue; // Only on machines with the package: keep the mix reproducible.
        } else {
            let size = object
                .get("size")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0);
            let padding = object
                .get("paddingBefore")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0);
            if size > SMALL || padding > SMALL {
                continue;
            }
        }
        let name = path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        out.push((name, case));
    }
    if out.is_empty() {
        bail!("no small cases in {}", fixtures.display());
    }
    Ok(out)
}

/// Runs the replay benchmark and prints one JSON object.
pub async fn run_replay(args: BenchReplayArgs) -> anyhow::Result<u8> {
    let templates = small_cases(&args.fixtures)?;
    if args.dir.exists() {
        std::fs::remove_dir_all(&args.dir)
            .with_context(|| format!("emptying {}", args.dir.display()))?;
    }
    let cases_dir = args.dir.join("cases");
    std::fs::create_dir_all(&cases_dir)?;
    for i in 0..args.count {
        let (name, template) = &templates[i % templates.len()];
        let mut case = template.clone();
        let id = UploadId::generate().to_string();
        if case.get("intent").is_some_and(serde_json::Value::is_object) {
            case["intent"]["id"] = id.into();
        } else if let Some(key) = case.get("key").and_then(serde_json::Value::as_str) {
            let prefix = key
                .rsplit_once('/')
                .map_or("incoming/bench/attachment", |(p, _)| p);
            case["key"] = format!("{prefix}/{id}").into();
        }
        std::fs::write(
            cases_dir.join(format!("{i:04}-{name}.json")),
            case.to_string(),
        )?;
    }
    let replay_args = crate::replay::ReplayArgs {
        inputs: vec![cases_dir],
        data_dir: args.dir.join("data"),
        bucket: "airlock-uploads".to_owned(),
        policies: None,
        definition: None,
        clamd: Some(args.clamd.clone()),
        signatures: PathBuf::from("fixtures/clamav"),
        max_definitions_age_hours: airlock_core::definitions::MaxAge(Some(
            airlock_core::definitions::DEFAULT_MAX_AGE,
        )),
        target: crate::replay::ReplayTarget::Local,
        emulator_endpoint: None,
        delay_scale: 0.05,
        concurrency: args.concurrency,
        verbose: false,
        json: true,
    };
    let report = crate::replay::replay(&replay_args).await?;
    let mut totals: Vec<f64> = Vec::new();
    let mut unexpected = 0usize;
    let mut failed = 0usize;
    for result in &report.results {
        if matches!(result.expectation, Some(Err(_))) {
            unexpected += 1;
        }
        if let crate::replay::ReplayOutcome::Run(run) = &result.result {
            if matches!(run.settlement, crate::Settlement::Failed { .. }) {
                failed += 1;
            }
            totals.push(run.total_ms);
        }
    }
    totals.sort_by(f64::total_cmp);
    let percentile = |p: f64| -> f64 {
        if totals.is_empty() {
            return 0.0;
        }
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss,
            reason = "an index into a short sorted list"
        )]
        let index = ((totals.len() - 1) as f64 * p).round() as usize;
        totals[index]
    };
    let seconds = report.elapsed.as_secs_f64();
    #[allow(clippy::cast_precision_loss, reason = "a rate for display")]
    let rate = totals.len() as f64 / seconds;
    let line = json!({
        "objects": totals.len(),
        "templates": templates.len(),
        "concurrency": args.concurrency,
        "seconds": seconds,
        "objectsPerSecond": rate,
        "medianMs": percentile(0.5),
        "p95Ms": percentile(0.95),
        "failed": failed,
        "unexpected": unexpected,
        "peakRssKib": peak_rss_kib(),
    });
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, &line)?;
    writeln!(out)?;
    Ok(u8::from(failed > 0 || unexpected > 0))
}
