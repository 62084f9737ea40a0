//! `airlock bench quarantine`: how quarantine review scales. Fills a data dir with many
//! quarantined records (100,000 by default: objects and JSON records, as the quarantine
//! stage leaves them) and some trusted uploads, then prints how long the index takes to
//! build, how long `list` with filters and `stats` take (in the process, and as whole
//! `airlock quarantine` commands), and the rate of a trusted rescan next to the scan stage's
//! rate on the same objects and the same clamd.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use airlock_core::intent::{IntentOutcome, IntentState, UploadIntent};
use airlock_core::keys::{Purpose, TenantId, UploadId};
use airlock_core::policy::parse_size;
use airlock_core::ports::{IntentStore, SystemClock, Transition};
use airlock_core::review::{
    self, PageRequest, QuarantineFilter, QuarantineIndex, QuarantineStatus, TrustedFilter,
};
use airlock_core::stages::{self, InspectReport, QuarantineRecord, ScanOutcome, Stage};
use airlock_core::verdict::ReasonCode;
use airlock_local::{FsStore, SqliteIntentStore};
use anyhow::{Context as _, bail};
use chrono::Utc;
use serde::{Deserialize, Serialize};

use crate::review_cli::{LocalReview, ReviewDataArgs};

/// Measure quarantine review over many records.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchQuarantineArgs {
    /// Folder for the generated data dir (kept between runs, made again when the counts
    /// change).
    #[arg(long, default_value = "target/bench-quarantine")]
    pub dir: PathBuf,
    /// Quarantined records to generate.
    #[arg(long, default_value_t = 100_000)]
    pub records: usize,
    /// Trusted uploads to generate for the rescan.
    #[arg(long, default_value_t = 1_000)]
    pub trusted: usize,
    /// Size of each trusted upload, e.g. `256 KiB`.
    #[arg(long, default_value = "256 KiB")]
    pub trusted_size: String,
    /// Times each query runs (the median and the slowest are printed).
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
    /// A running clamd (`host:port` or a socket); else one is started with `--signatures`.
    #[arg(long)]
    pub clamd: Option<String>,
    #[arg(long, default_value = "fixtures/clamav")]
    pub signatures: PathBuf,
}

const BUCKET: &str = "airlock-uploads";
const TENANTS: usize = 20;
const PURPOSES: [&str; 3] = ["avatar", "document", "attachment"];
/// Reasons in the proportions generated: infected most, then type mismatches and outages.
const REASONS: [ReasonCode; 10] = [
    ReasonCode::Infected,
    ReasonCode::Infected,
    ReasonCode::Infected,
    ReasonCode::Infected,
    ReasonCode::TypeMismatch,
    ReasonCode::TypeMismatch,
    ReasonCode::ScanUnavailable,
    ReasonCode::TooLarge,
    ReasonCode::SizeMismatch,
    ReasonCode::InfectedOnRescan,
];

/// What a generated data dir holds.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Seeded {
    records: usize,
    trusted: usize,
    trusted_size: u64,
}

fn tenant(n: usize) -> String {
    format!("tenant-{:02}", n % TENANTS)
}

/// A spread of values from a counter (a multiplicative hash), so filters select a mix.
fn spread(n: usize, modulo: usize) -> usize {
    (n.wrapping_mul(2_654_435_761) >> 7) % modulo
}

fn write_records(bucket: &Path, count: usize) -> anyhow::Result<()> {
    let now = Utc::now();
    let span = chrono::Duration::days(90);
    for n in 0..count {
        let tenant = tenant(n);
        let purpose = PURPOSES[spread(n, PURPOSES.len())];
        let id = UploadId::generate();
        let reason = REASONS[spread(n, REASONS.len())];
        let infected = matches!(reason, ReasonCode::Infected | ReasonCode::InfectedOnRescan);
        let key = format!("quarantine/{tenant}/{purpose}/{id}");
        let bytes = format!("quarantined upload {n}\n");
        #[allow(clippy::cast_possible_wrap, clippy::cast_possible_truncation)]
        let offset = span * (n as i32) / (count.max(1) as i32);
        let record = QuarantineRecord {
            reason,
            detail: format!("generated record {n}"),
            signature: infected.then(|| format!("Bench.Signature.{}", (n / 7) % 50)),
            stage: if infected {
                Stage::Scan
            } else {
                Stage::Inspect
            },
            sha256: format!("{n:064x}"),
            size: bytes.len() as u64,
            bucket: BUCKET.to_owned(),
            original_key: format!("incoming/{tenant}/{purpose}/{id}"),
            quarantine_key: key.clone(),
            tenant: Some(tenant.clone()),
            purpose: Some(purpose.to_owned()),
            intent_id: Some(id.to_string()),
            uploader: Some(format!("user-{}", (n / 3) % 1000)),
            filename: Some(format!("file-{n}.bin")),
            declared_type: Some("application/octet-stream".to_owned()),
            declared_size: Some(bytes.len() as u64),
            engine: infected.then(|| "ClamAV 1.4.3".to_owned()),
            definitions: None,
            uploaded_at: Some(now - span + offset),
            quarantined_at: now - span + offset,
        };
        let path = bucket.join(&key);
        std::fs::create_dir_all(path.parent().expect("a key has folders"))?;
        std::fs::write(&path, bytes)?;
        std::fs::write(
            bucket.join(format!("{key}.json")),
            serde_json::to_vec_pretty(&record)?,
        )?;
    }
    Ok(())
}

/// READY intents with their objects in `trusted/` (text, `size` bytes each).
async fn write_trusted(
    intents: &SqliteIntentStore,
    bucket: &Path,
    count: usize,
    size: u64,
) -> anyhow::Result<()> {
    let now = Utc::now();
    let line = b"minutes of the weekly meeting: nothing to report\n";
    let body: Vec<u8> = line
        .iter()
        .copied()
        .cycle()
        .take(usize::try_from(size)?)
        .collect();
    for n in 0..count {
        let intent = UploadIntent {
            id: UploadId::generate(),
            tenant: TenantId::new(tenant(n))?,
            purpose: Purpose::new("document")?,
            declared_type: "text/plain".into(),
            declared_size: size,
            sha256: None,
            filename: Some(format!("minutes-{n}.txt")),
            uploader: Some("user-1".into()),
            state: IntentState::Pending,
            created_at: now,
            updated_at: now,
            expires_at: now + chrono::Duration::minutes(15),
            outcome: None,
            multipart_upload_id: None,
        };
        intents.create(&intent).await?;
        let key = intent.key().trusted();
        let path = bucket.join(&key);
        std::fs::create_dir_all(path.parent().expect("a key has folders"))?;
        std::fs::write(&path, &body)?;
        for (from, to, outcome) in [
            (IntentState::Pending, IntentState::Processing, None),
            (
                IntentState::Processing,
                IntentState::Ready,
                Some(IntentOutcome {
                    key,
                    reason: None,
                    detail: None,
                    sha256: None,
                    size: Some(size),
                    engine: None,
                    media: None,
                }),
            ),
        ] {
            intents
                .transition(
                    intent.id,
                    Transition {
                        from: vec![from],
                        to,
                        at: now,
                        outcome,
                        review: false,
                    },
                )
                .await?;
        }
    }
    Ok(())
}

/// Makes the data dir unless one with the same counts is there.
async fn seed(args: &BenchQuarantineArgs, trusted_size: u64) -> anyhow::Result<PathBuf> {
    let data = args.dir.join("data");
    let marker = data.join("bench-seeded.json");
    let wanted = Seeded {
        records: args.records,
        trusted: args.trusted,
        trusted_size,
    };
    if let Ok(bytes) = std::fs::read(&marker)
        && serde_json::from_slice::<Seeded>(&bytes).is_ok_and(|seeded| seeded == wanted)
    {
        eprintln!("using the data dir generated before: {}", data.display());
        return Ok(data);
    }
    if data.exists() {
        std::fs::remove_dir_all(&data).with_context(|| format!("removing {}", data.display()))?;
    }
    let bucket = data.join("buckets").join(BUCKET);
    std::fs::create_dir_all(&bucket)?;
    let started = Instant::now();
    let intents = SqliteIntentStore::open(data.join("intents.sqlite"))?;
    let records_dir = bucket.clone();
    let records = args.records;
    tokio::task::spawn_blocking(move || write_records(&records_dir, records)).await??;
    write_trusted(&intents, &bucket, args.trusted, trusted_size).await?;
    eprintln!(
        "generated {} quarantined records and {} trusted uploads in {:.1} s",
        args.records,
        args.trusted,
        started.elapsed().as_secs_f64()
    );
    std::fs::write(&marker, serde_json::to_vec(&wanted)?)?;
    Ok(data)
}

/// Median and slowest of `runs` timings of `f`, in milliseconds.
async fn timed<F, Fut, T>(runs: usize, mut f: F) -> anyhow::Result<(f64, f64, T)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut times = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs.max(1) {
        let started = Instant::now();
        last = Some(f().await?);
        times.push(started.elapsed());
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    Ok((
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1]),
        last.expect("ran at least once"),
    ))
}

/// `airlock bench quarantine`.
pub async fn run(args: BenchQuarantineArgs) -> anyhow::Result<u8> {
    let trusted_size = parse_size(&args.trusted_size).map_err(anyhow::Error::msg)?;
    if trusted_size == 0 {
        bail!("--trusted-size must be above zero");
    }
    let data = seed(&args, trusted_size).await?;
    let review_data = ReviewDataArgs {
        data_dir: data.clone(),
        bucket: BUCKET.to_owned(),
    };
    let local = LocalReview::open(&review_data).await?;
    let started = Instant::now();
    let indexed = local.quarantine.sync().await?;
    println!(
        "index: {indexed} records indexed in {:.2} s (0 when indexed by an earlier run)",
        started.elapsed().as_secs_f64()
    );
    query_times(&args, &local).await?;
    command_times(&args, &data).await?;
    rescan_rates(&args, &local, trusted_size).await?;
    Ok(0)
}

/// `list` (first page) and `counts` with several filters, in the process.
async fn query_times(args: &BenchQuarantineArgs, local: &LocalReview) -> anyhow::Result<()> {
    let month_ago = Utc::now() - chrono::Duration::days(30);
    let filters: [(&str, QuarantineFilter); 6] = [
        ("no filter", QuarantineFilter::default()),
        (
            "--tenant tenant-03 --reason infected",
            QuarantineFilter {
                tenant: Some("tenant-03".into()),
                reasons: vec![ReasonCode::Infected],
                ..QuarantineFilter::default()
            },
        ),
        (
            "--reason type-mismatch --since (30 days) --status quarantined",
            QuarantineFilter {
                reasons: vec![ReasonCode::TypeMismatch],
                since: Some(month_ago),
                status: Some(QuarantineStatus::Quarantined),
                ..QuarantineFilter::default()
            },
        ),
        (
            "--signature Bench.Signature.7",
            QuarantineFilter {
                signature: Some("Bench.Signature.7".into()),
                ..QuarantineFilter::default()
            },
        ),
        (
            "--uploader user-42",
            QuarantineFilter {
                uploader: Some("user-42".into()),
                ..QuarantineFilter::default()
            },
        ),
        (
            "--purpose avatar --status released",
            QuarantineFilter {
                purpose: Some("avatar".into()),
                status: Some(QuarantineStatus::Released),
                ..QuarantineFilter::default()
            },
        ),
    ];
    println!(
        "\nin the process, {} runs each (median / slowest, ms):",
        args.runs
    );
    println!(
        "{:<62} {:>17} {:>17} {:>8}",
        "FILTER", "LIST (50)", "STATS", "MATCHING"
    );
    for (name, filter) in &filters {
        let index = local.quarantine.as_ref();
        let (list_median, list_max, _) = timed(args.runs, || async {
            Ok(index.list(filter, &PageRequest::first(50)).await?)
        })
        .await?;
        let (stats_median, stats_max, counts) =
            timed(args.runs, || async { Ok(index.counts(filter).await?) }).await?;
        println!(
            "{name:<62} {:>7.1} / {:>7.1} {:>7.1} / {:>7.1} {:>8}",
            list_median, list_max, stats_median, stats_max, counts.total
        );
    }
    Ok(())
}

/// Whole `airlock quarantine` commands: process start, opening the stores, the query.
async fn command_times(args: &BenchQuarantineArgs, data: &Path) -> anyhow::Result<()> {
    let airlock = std::env::current_exe().context("finding the airlock binary")?;
    let data_arg = data.to_string_lossy().into_owned();
    let commands: [(&str, Vec<&str>); 3] = [
        (
            "airlock quarantine list --tenant tenant-03 --reason infected",
            vec![
                "quarantine",
                "list",
                "--tenant",
                "tenant-03",
                "--reason",
                "infected",
                "--limit",
                "50",
                "--json",
            ],
        ),
        (
            "airlock quarantine stats",
            vec!["quarantine", "stats", "--json"],
        ),
        (
            "airlock quarantine stats --reason infected",
            vec!["quarantine", "stats", "--reason", "infected", "--json"],
        ),
    ];
    println!(
        "\nwhole commands, {} runs each (median / slowest, ms):",
        args.runs
    );
    for (name, command) in &commands {
        let (median, max, ()) = timed(args.runs, || async {
            let status = std::process::Command::new(&airlock)
                .args(command)
                .args(["--data-dir", &data_arg, "--bucket", BUCKET])
                .stdout(std::process::Stdio::null())
                .status()?;
            anyhow::ensure!(status.success(), "{name} failed: {status}");
            Ok(())
        })
        .await?;
        println!("{name:<62} {median:>7.1} / {max:>7.1}");
    }
    Ok(())
}

/// A trusted rescan of the generated uploads, and the scan stage over the same objects.
async fn rescan_rates(
    args: &BenchQuarantineArgs,
    local: &LocalReview,
    trusted_size: u64,
) -> anyhow::Result<()> {
    let (scanner, managed) =
        crate::replay::scanner_for(args.clamd.as_deref(), &args.signatures, Some(trusted_size))
            .await?;
    let review = local.review();
    let started = Instant::now();
    let summary = review::rescan_trusted(
        &review,
        scanner.as_ref(),
        local.intents.as_ref(),
        local.intents.as_ref(),
        &TrustedFilter::default(),
        "bench",
        "benchmark",
        &mut |_| {},
    )
    .await?;
    let rescan_seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        summary.revoked == 0,
        "the rescan revoked generated clean uploads: {summary:?}"
    );

    // The scan stage (hashing, archive detection and clamd) over the same objects.
    let store = FsStore::open(data_bucket(&args.dir))?;
    let mut keys = Vec::new();
    let mut after = None;
    loop {
        let batch = airlock_core::review::TrustedUploads::trusted(
            local.intents.as_ref(),
            &TrustedFilter::default(),
            after,
            500,
        )
        .await?;
        let Some(last) = batch.last() else { break };
        after = Some(last.id);
        keys.extend(
            batch
                .into_iter()
                .filter_map(|i| i.outcome.map(|o| (i.id, i.tenant, i.purpose, o.key))),
        );
    }
    let policy = airlock_archive::ArchivePolicy::default();
    let freshness = airlock_core::definitions::FreshnessRule::accepting_undated(None);
    let started = Instant::now();
    let mut bytes = 0u64;
    for (id, tenant, purpose, key) in &keys {
        let report = InspectReport {
            upload_id: *id,
            tenant: tenant.clone(),
            purpose: purpose.clone(),
            size: trusted_size,
            declared_type: "text/plain".into(),
            detected_type: "text/plain".into(),
            media: false,
            expected_sha256: None,
            bytes_read: 0,
            version: None,
            archive: None,
        };
        match stages::scan(
            &store,
            scanner.as_ref(),
            key,
            &report,
            &policy,
            &freshness,
            &SystemClock,
        )
        .await?
        {
            ScanOutcome::Pass(pass) => bytes += pass.size,
            ScanOutcome::Reject(rejection) => bail!("the scan stage rejected {key}: {rejection:?}"),
        }
    }
    let stage_seconds = started.elapsed().as_secs_f64();
    drop(managed);

    #[allow(clippy::cast_precision_loss, reason = "rates for people to read")]
    let rate = |objects: u64, bytes: u64, seconds: f64| {
        format!(
            "{:>8.1} objects/s {:>7.1} MB/s",
            objects as f64 / seconds.max(1e-9),
            bytes as f64 / 1e6 / seconds.max(1e-9)
        )
    };
    println!(
        "\nrescan of {} trusted uploads of {} bytes, one at a time, same clamd:",
        summary.scanned, trusted_size
    );
    println!(
        "{:<62} {}",
        "airlock quarantine rescan --trusted",
        rate(summary.scanned, summary.bytes, rescan_seconds)
    );
    println!(
        "{:<62} {}",
        "the pipeline's scan stage",
        rate(keys.len() as u64, bytes, stage_seconds)
    );
    Ok(())
}

fn data_bucket(dir: &Path) -> PathBuf {
    dir.join("data").join("buckets").join(BUCKET)
}
