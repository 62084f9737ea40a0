//! `airlock quarantine` and `airlock audit`: quarantine review on a local data dir.
//!
//! Read commands (`list`, `show`, `stats`, `audit list`, `audit verify`) only read. Actions
//! (`release`, `purge`, `rescan`, `export`) need a reviewer (`--reviewer` or
//! `AIRLOCK_REVIEWER`) and a written reason (`--why`), and each is recorded in the audit
//! trail. None takes the data dir's lock: every store they touch is safe to share with a
//! running pipeline (SQLite transactions, atomic file operations, whole-line appends).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use airlock_core::definitions::{DEFAULT_MAX_AGE, FreshnessRule};
use airlock_core::policy::Policies;
use airlock_core::ports::SystemClock;
use airlock_core::review::{
    self, AuditAction, AuditCheck, AuditFilter, AuditTrail, Count, ItemDetail, PageRequest,
    QuarantineFilter, QuarantineIndex, QuarantineItem, QuarantineStatus, ReleaseOutcome,
    RescanProgress, Rescanning, Review, ReviewError, TrustedFilter, hex_dump,
};
use airlock_core::verdict::ReasonCode;
use airlock_local::{
    EncryptedZipFile, FsStore, JsonlEventSink, LocalQuarantine, SqliteAuditTrail, SqliteIntentStore,
};
use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};

/// Exit status: done.
pub const EXIT_OK: u8 = 0;
/// Exit status: an infrastructure failure (a store, the scanner).
pub const EXIT_FAILURE: u8 = 1;
/// Exit status: the action was refused (a reason a release cannot fix, a purged or released
/// upload, bytes the rescan rejects again, no reviewer or no written reason): nothing
/// changed.
pub const EXIT_REFUSED: u8 = 3;
/// Exit status: no such quarantined upload.
pub const EXIT_NOT_FOUND: u8 = 4;
/// Exit status of `audit verify`: the chain is broken.
pub const EXIT_AUDIT_BROKEN: u8 = 5;

/// How old the definitions behind a release's or a rescan's verdict may be: as in the local
/// pipeline, at most two days, and undated ones (the project's test signatures) accepted.
pub const LOCAL_FRESHNESS: FreshnessRule = FreshnessRule::accepting_undated(Some(DEFAULT_MAX_AGE));

/// Where the data dir is.
#[derive(Debug, Clone, clap::Args)]
pub struct ReviewDataArgs {
    /// The local object store, intents, audit trail and event log.
    #[arg(long, default_value = ".airlock", env = "AIRLOCK_DATA_DIR")]
    pub data_dir: PathBuf,
    /// The bucket the data dir holds.
    #[arg(long, default_value = "airlock-uploads", env = "AIRLOCK_BUCKET")]
    pub bucket: String,
}

/// Which quarantined uploads.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct FilterArgs {
    #[arg(long)]
    pub tenant: Option<String>,
    #[arg(long)]
    pub purpose: Option<String>,
    /// A reason code (repeat for any of several), e.g. `infected`, `scan-unavailable`.
    #[arg(long = "reason", value_name = "CODE")]
    pub reasons: Vec<ReasonCode>,
    /// The scanner's signature name, exactly.
    #[arg(long)]
    pub signature: Option<String>,
    #[arg(long)]
    pub uploader: Option<String>,
    /// Quarantined at or after (RFC 3339, or a date: midnight UTC).
    #[arg(long, value_parser = parse_when)]
    pub since: Option<DateTime<Utc>>,
    /// Quarantined before (RFC 3339, or a date).
    #[arg(long, value_parser = parse_when)]
    pub until: Option<DateTime<Utc>>,
    /// `quarantined`, `released` or `purged`.
    #[arg(long)]
    pub status: Option<QuarantineStatus>,
}

impl FilterArgs {
    fn filter(&self) -> QuarantineFilter {
        QuarantineFilter {
            tenant: self.tenant.clone(),
            purpose: self.purpose.clone(),
            reasons: self.reasons.clone(),
            signature: self.signature.clone(),
            uploader: self.uploader.clone(),
            since: self.since,
            until: self.until,
            status: self.status,
        }
    }
}

/// Who acts, and why.
#[derive(Debug, Clone, clap::Args)]
pub struct ActorArgs {
    /// The reviewer's name, recorded in the audit trail.
    #[arg(long, env = "AIRLOCK_REVIEWER")]
    pub reviewer: Option<String>,
    /// The written reason, recorded in the audit trail (required).
    #[arg(long)]
    pub why: Option<String>,
}

/// The scanner and policies to judge bytes again with.
#[derive(Debug, Clone, clap::Args)]
pub struct ScannerArgs {
    /// A running clamd (host:port or socket); otherwise one is started with `--signatures`.
    #[arg(long, env = "AIRLOCK_CLAMD")]
    pub clamd: Option<String>,
    /// Signature folder for the clamd that is started.
    #[arg(long, default_value = "fixtures/clamav")]
    pub signatures: PathBuf,
    /// Upload policies (TOML); the built-in ones when absent.
    #[arg(long, env = "AIRLOCK_POLICIES")]
    pub policies: Option<PathBuf>,
    /// Refuse to judge with dated definitions older than this many hours (`off`: any
    /// age); undated ones (the project's test signatures) are accepted, as in replay.
    #[arg(long, default_value = "48")]
    pub max_definitions_age_hours: airlock_core::definitions::MaxAge,
}

/// Review quarantined uploads.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum QuarantineCommand {
    /// Quarantined uploads, newest first, filtered, one page at a time.
    List {
        #[command(flatten)]
        data: ReviewDataArgs,
        #[command(flatten)]
        filter: FilterArgs,
        /// Items per page.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// The cursor printed under the previous page.
        #[arg(long)]
        after: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// One upload: its record, intent, history, audit entries and first bytes (hex).
    Show {
        /// The quarantine key (as `list` prints it).
        key: String,
        #[command(flatten)]
        data: ReviewDataArgs,
        #[arg(long)]
        json: bool,
    },
    /// Counts by reason, signature, tenant and status.
    Stats {
        #[command(flatten)]
        data: ReviewDataArgs,
        #[command(flatten)]
        filter: FilterArgs,
        #[arg(long)]
        json: bool,
    },
    /// Rescan an upload with the current scanner and promote it if clean.
    Release {
        key: String,
        /// Release even for a reason a release cannot fix (size, type or checksum other
        /// than declared); the bytes are still scanned, and images still sanitized.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        data: ReviewDataArgs,
        #[command(flatten)]
        actor: ActorArgs,
        #[command(flatten)]
        scanner: ScannerArgs,
        #[arg(long)]
        json: bool,
    },
    /// Delete quarantined objects, keeping their records and a tombstone each.
    Purge {
        /// Quarantine keys.
        #[arg(required_unless_present = "older_than", conflicts_with = "older_than")]
        keys: Vec<String>,
        /// Instead: every quarantined upload older than this many days (with the filters).
        #[arg(long, value_name = "DAYS")]
        older_than: Option<u32>,
        #[command(flatten)]
        filter: FilterArgs,
        #[command(flatten)]
        data: ReviewDataArgs,
        #[command(flatten)]
        actor: ActorArgs,
        #[arg(long)]
        json: bool,
    },
    /// Rescan uploads quarantined for an outage (`scan-unavailable`, `inspect-unavailable`,
    /// `media-unavailable`) and promote those now clean; with `--trusted`, rescan trusted
    /// uploads and move those the scanner now detects to quarantine (`infected-on-rescan`).
    Rescan {
        /// Rescan trusted uploads instead.
        #[arg(long)]
        trusted: bool,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        purpose: Option<String>,
        /// With `--trusted`: uploads promoted at or after (RFC 3339, or a date).
        #[arg(long, value_parser = parse_when, requires = "trusted")]
        since: Option<DateTime<Utc>>,
        #[command(flatten)]
        data: ReviewDataArgs,
        #[command(flatten)]
        actor: ActorArgs,
        #[command(flatten)]
        scanner: ScannerArgs,
        #[arg(long)]
        json: bool,
    },
    /// Write one quarantined object and its record to a zip encrypted with the password
    /// `infected`.
    Export {
        key: String,
        /// The zip to write (never replaced).
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        data: ReviewDataArgs,
        #[command(flatten)]
        actor: ActorArgs,
    },
}

/// The audit trail of reviewer actions.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum AuditCommand {
    /// Entries, newest first.
    List {
        #[command(flatten)]
        data: ReviewDataArgs,
        /// Entries about this key.
        #[arg(long)]
        subject: Option<String>,
        #[arg(long)]
        actor: Option<String>,
        /// `release`, `release-refused`, `purge`, `rescan`, `revoke` or `export`.
        #[arg(long)]
        action: Option<AuditAction>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Check the hash chain; names the first entry that was changed or removed.
    Verify {
        #[command(flatten)]
        data: ReviewDataArgs,
        #[arg(long)]
        json: bool,
    },
}

/// `2026-03-01` (midnight UTC) or an RFC 3339 time.
pub(crate) fn parse_when(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map(|day| day.and_time(chrono::NaiveTime::MIN).and_utc())
        .map_err(|_| format!("{text:?} is neither a date (2026-03-01) nor an RFC 3339 time"))
}

/// The local stores of a data dir, opened.
pub struct LocalReview {
    pub store: Arc<FsStore>,
    pub bucket: String,
    pub intents: Arc<SqliteIntentStore>,
    pub quarantine: Arc<LocalQuarantine>,
    pub audit: Arc<SqliteAuditTrail>,
    pub events: Arc<JsonlEventSink>,
    pub clock: SystemClock,
}

impl std::fmt::Debug for LocalReview {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalReview")
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

impl LocalReview {
    /// Opens the stores of an existing data dir.
    pub async fn open(data: &ReviewDataArgs) -> anyhow::Result<Self> {
        let intents_path = data.data_dir.join("intents.sqlite");
        anyhow::ensure!(
            intents_path.exists(),
            "no intent database at {} (is --data-dir right?)",
            intents_path.display()
        );
        let root = data.data_dir.join("buckets").join(&data.bucket);
        let store = Arc::new(
            FsStore::open(&root)
                .with_context(|| format!("opening object store {}", root.display()))?,
        );
        let intents = Arc::new(
            SqliteIntentStore::open(&intents_path)
                .with_context(|| format!("opening {}", intents_path.display()))?,
        );
        let quarantine = Arc::new(LocalQuarantine::open(&intents, &store).await?);
        let audit = Arc::new(SqliteAuditTrail::open(&intents).await?);
        let events_path = data.data_dir.join("events.jsonl");
        let events = Arc::new(
            JsonlEventSink::open(&events_path)
                .with_context(|| format!("opening event log {}", events_path.display()))?,
        );
        Ok(Self {
            store,
            bucket: data.bucket.clone(),
            intents,
            quarantine,
            audit,
            events,
            clock: SystemClock,
        })
    }

    /// The ports the review functions take.
    #[must_use]
    pub fn review(&self) -> Review<'_> {
        Review {
            store: self.store.as_ref(),
            bucket: &self.bucket,
            intents: self.intents.as_ref(),
            quarantine: self.quarantine.as_ref(),
            audit: self.audit.as_ref(),
            events: self.events.as_ref(),
            clock: &self.clock,
        }
    }
}

/// An action's reviewer and written reason, or the refusal to act without them.
fn actor(args: &ActorArgs) -> Result<(String, String), String> {
    let reviewer = args
        .reviewer
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .ok_or("who is acting? give --reviewer NAME or set AIRLOCK_REVIEWER")?;
    let why = args
        .why
        .as_deref()
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .ok_or("a written reason is required: --why \"...\"")?;
    Ok((reviewer.to_owned(), why.to_owned()))
}

/// Text from an upload, printable on a terminal.
fn shown(text: &str) -> String {
    text.escape_debug().to_string()
}

fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The exit status for a review error, printing it.
fn refused(err: &ReviewError) -> anyhow::Result<u8> {
    if let ReviewError::NotFound(_) = err {
        eprintln!("error: {err}");
        return Ok(EXIT_NOT_FOUND);
    }
    if err.is_refusal() {
        eprintln!("refused: {err}");
        return Ok(EXIT_REFUSED);
    }
    Err(anyhow::anyhow!(airlock_core::stages::error_chain(err)))
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// Runs a `quarantine` command; returns the exit status.
pub async fn run_quarantine(command: QuarantineCommand) -> anyhow::Result<u8> {
    match command {
        QuarantineCommand::List {
            data,
            filter,
            limit,
            after,
            json,
        } => {
            let local = LocalReview::open(&data).await?;
            let page = local
                .quarantine
                .list(&filter.filter(), &PageRequest { limit, after })
                .await?;
            if json {
                print_json(&page)?;
            } else {
                write_list(
                    &mut std::io::stdout().lock(),
                    &page.items,
                    page.next.as_deref(),
                )?;
            }
            Ok(EXIT_OK)
        }
        QuarantineCommand::Show { key, data, json } => {
            let local = LocalReview::open(&data).await?;
            match review::describe(&local.review(), &key).await {
                Ok(detail) if json => print_json(&detail).map(|()| EXIT_OK),
                Ok(detail) => {
                    write_detail(&mut std::io::stdout().lock(), &detail)?;
                    Ok(EXIT_OK)
                }
                Err(err) => refused(&err),
            }
        }
        QuarantineCommand::Stats { data, filter, json } => {
            let local = LocalReview::open(&data).await?;
            let counts = local.quarantine.counts(&filter.filter()).await?;
            if json {
                print_json(&counts)?;
            } else {
                let mut out = std::io::stdout().lock();
                writeln!(out, "{} quarantined uploads", counts.total)?;
                for (title, counts) in [
                    ("REASON", &counts.by_reason),
                    ("SIGNATURE", &counts.by_signature),
                    ("TENANT", &counts.by_tenant),
                    ("STATUS", &counts.by_status),
                ] {
                    write_counts(&mut out, title, counts)?;
                }
            }
            Ok(EXIT_OK)
        }
        QuarantineCommand::Release {
            key,
            force,
            data,
            actor: who,
            scanner,
            json,
        } => release(&key, force, &data, &who, &scanner, json).await,
        QuarantineCommand::Purge {
            keys,
            older_than,
            filter,
            data,
            actor: who,
            json,
        } => purge(&keys, older_than, &filter, &data, &who, json).await,
        QuarantineCommand::Rescan {
            trusted,
            tenant,
            purpose,
            since,
            data,
            actor: who,
            scanner,
            json,
        } => {
            let scope = TrustedFilter {
                tenant,
                purpose,
                since,
            };
            rescan(trusted, scope, &data, &who, &scanner, json).await
        }
        QuarantineCommand::Export {
            key,
            out,
            data,
            actor: who,
        } => export(&key, out, &data, &who).await,
    }
}

async fn export(
    key: &str,
    out: PathBuf,
    data: &ReviewDataArgs,
    who: &ActorArgs,
) -> anyhow::Result<u8> {
    let (reviewer, why) = match actor(who) {
        Ok(found) => found,
        Err(problem) => {
            eprintln!("refused: {problem}");
            return Ok(EXIT_REFUSED);
        }
    };
    let local = LocalReview::open(data).await?;
    let sink = EncryptedZipFile { path: out };
    match review::export(&local.review(), key, &reviewer, &why, &sink).await {
        Ok(report) => {
            println!(
                "{}: exported to {} (zip encrypted with the password \"{}\"; audit entry {})",
                shown(&report.key),
                report.written_to,
                airlock_local::EXPORT_PASSWORD,
                report.audit_seq
            );
            Ok(EXIT_OK)
        }
        Err(err) => refused(&err),
    }
}

pub(crate) async fn rescanning_parts(
    scanner: &ScannerArgs,
) -> anyhow::Result<(
    Arc<dyn airlock_core::ports::Scanner>,
    Option<airlock_clamd::ManagedClamd>,
    Policies,
)> {
    let policies = match &scanner.policies {
        Some(path) => Policies::load(path)?,
        None => Policies::builtin(),
    };
    let (scanner, managed) =
        crate::replay::scanner_for(scanner.clamd.as_deref(), &scanner.signatures, None).await?;
    Ok((scanner, managed, policies))
}

pub(crate) fn media_permits() -> Arc<tokio::sync::Semaphore> {
    Arc::new(tokio::sync::Semaphore::new(
        std::thread::available_parallelism().map_or(1, usize::from),
    ))
}

/// What a CLI action judges bytes again with: `scanner`, the policies, the media library,
/// and dated definitions at most `max_definitions_age` old (undated test signatures pass).
fn rescanning<'a>(
    scanner: &'a dyn airlock_core::ports::Scanner,
    policies: &'a Policies,
    max_definitions_age: Option<std::time::Duration>,
) -> Rescanning<'a> {
    Rescanning {
        scanner,
        policies,
        media: Arc::new(airlock_media::ImageProcessor),
        media_permits: media_permits(),
        freshness: FreshnessRule::accepting_undated(max_definitions_age),
    }
}

async fn release(
    key: &str,
    force: bool,
    data: &ReviewDataArgs,
    who: &ActorArgs,
    scanner: &ScannerArgs,
    json: bool,
) -> anyhow::Result<u8> {
    let (reviewer, why) = match actor(who) {
        Ok(found) => found,
        Err(problem) => {
            eprintln!("refused: {problem}");
            return Ok(EXIT_REFUSED);
        }
    };
    let local = LocalReview::open(data).await?;
    let max_definitions_age = scanner.max_definitions_age_hours.0;
    let (scanner, mut managed, policies) = rescanning_parts(scanner).await?;
    let rescanning = rescanning(scanner.as_ref(), &policies, max_definitions_age);
    let result = review::release(&local.review(), &rescanning, key, &reviewer, &why, force).await;
    if let Some(clamd) = managed.as_mut() {
        clamd.stop().ok();
    }
    let report = match result {
        Ok(report) => report,
        Err(err) => return refused(&err),
    };
    if json {
        print_json(&report)?;
    }
    match &report.outcome {
        ReleaseOutcome::Released { trusted_key, .. } => {
            if !json {
                println!(
                    "{}: released to {trusted_key}{} (audit entry {})",
                    shown(key),
                    if report.released_now {
                        ""
                    } else {
                        ", as before"
                    },
                    report.audit_seq
                );
            }
            Ok(EXIT_OK)
        }
        ReleaseOutcome::Rejected(rejection) => {
            eprintln!(
                "refused: {} stays quarantined: judged again as {} ({}) (audit entry {})",
                shown(key),
                rejection.reason,
                shown(&rejection.detail),
                report.audit_seq
            );
            Ok(EXIT_REFUSED)
        }
    }
}

async fn purge(
    keys: &[String],
    older_than: Option<u32>,
    filter: &FilterArgs,
    data: &ReviewDataArgs,
    who: &ActorArgs,
    json: bool,
) -> anyhow::Result<u8> {
    let (reviewer, why) = match actor(who) {
        Ok(found) => found,
        Err(problem) => {
            eprintln!("refused: {problem}");
            return Ok(EXIT_REFUSED);
        }
    };
    let local = LocalReview::open(data).await?;
    let review = local.review();
    let mut reports = Vec::new();
    let mut status = EXIT_OK;
    if let Some(days) = older_than {
        let age = chrono::Duration::days(i64::from(days));
        match review::purge_older_than(&review, &filter.filter(), age, &reviewer, &why).await {
            Ok(done) => reports.extend(done),
            Err(err) => return refused(&err),
        }
    }
    for key in keys {
        match review::purge(&review, key, &reviewer, &why).await {
            Ok(report) => reports.push(report),
            Err(err) => status = status.max(refused(&err)?),
        }
    }
    if json {
        print_json(&reports)?;
    } else {
        for report in &reports {
            println!(
                "{}: {}; tombstone {}",
                shown(&report.key),
                if report.purged_now {
                    "purged"
                } else {
                    "purged before"
                },
                shown(&report.tombstone_key)
            );
        }
        if reports.is_empty() {
            println!("nothing to purge");
        }
    }
    Ok(status)
}

async fn rescan(
    trusted: bool,
    scope: TrustedFilter,
    data: &ReviewDataArgs,
    who: &ActorArgs,
    scanner: &ScannerArgs,
    json: bool,
) -> anyhow::Result<u8> {
    let (reviewer, why) = match actor(who) {
        Ok(found) => found,
        Err(problem) => {
            eprintln!("refused: {problem}");
            return Ok(EXIT_REFUSED);
        }
    };
    let local = LocalReview::open(data).await?;
    let max_definitions_age = scanner.max_definitions_age_hours.0;
    let (scanner, mut managed, policies) = rescanning_parts(scanner).await?;
    let review = local.review();
    let started = std::time::Instant::now();
    let mut progress = |p: &RescanProgress| {
        eprintln!("[{}] {}: {}", p.done, shown(&p.key), shown(&p.result));
    };
    let result = if trusted {
        review::rescan_trusted(
            &review,
            scanner.as_ref(),
            local.intents.as_ref(),
            local.intents.as_ref(),
            &scope,
            &reviewer,
            &why,
            &mut progress,
        )
        .await
    } else {
        let rescanning = rescanning(scanner.as_ref(), &policies, max_definitions_age);
        let filter = QuarantineFilter {
            tenant: scope.tenant.clone(),
            purpose: scope.purpose.clone(),
            ..QuarantineFilter::default()
        };
        review::rescan_quarantined(
            &review,
            &rescanning,
            &filter,
            &reviewer,
            &why,
            &mut progress,
        )
        .await
    };
    if let Some(clamd) = managed.as_mut() {
        clamd.stop().ok();
    }
    let summary = match result {
        Ok(summary) => summary,
        Err(err) => return refused(&err),
    };
    let seconds = started.elapsed().as_secs_f64();
    if json {
        print_json(&summary)?;
    } else {
        #[allow(clippy::cast_precision_loss)] // Reason: a rate for people to read.
        let (per_second, mb_per_second) = (
            summary.scanned as f64 / seconds.max(1e-9),
            summary.bytes as f64 / 1e6 / seconds.max(1e-9),
        );
        if let Some(after) = &summary.resumed_after {
            println!("resumed after upload {after}");
        }
        if trusted {
            println!(
                "{} trusted uploads rescanned ({} bytes): {} clean, {} revoked (infected-on-rescan), {} not fully scanned, {} missing; {} interrupted revocations finished — {seconds:.2} s ({per_second:.1} objects/s, {mb_per_second:.1} MB/s)",
                summary.scanned,
                summary.bytes,
                summary.clean,
                summary.revoked,
                summary.not_fully_scanned,
                summary.missing,
                summary.finished
            );
        } else {
            println!(
                "{} quarantined uploads rescanned: {} released, {} still rejected — {seconds:.2} s",
                summary.scanned, summary.released, summary.still_rejected
            );
        }
    }
    Ok(EXIT_OK)
}

fn write_list(
    out: &mut impl Write,
    items: &[QuarantineItem],
    next: Option<&str>,
) -> std::io::Result<()> {
    if items.is_empty() {
        return writeln!(out, "no quarantined uploads match");
    }
    writeln!(
        out,
        "{:<20}  {:<11}  {:<20}  {:<10}  {:<12}  {:>10}  {:<32}  KEY",
        "QUARANTINED", "STATUS", "REASON", "TENANT", "PURPOSE", "SIZE", "SIGNATURE"
    )?;
    for item in items {
        let record = &item.record;
        writeln!(
            out,
            "{:<20}  {:<11}  {:<20}  {:<10}  {:<12}  {:>10}  {:<32}  {}",
            time(record.quarantined_at),
            item.status.as_str(),
            record.reason.code(),
            shown(record.tenant.as_deref().unwrap_or("-")),
            shown(record.purpose.as_deref().unwrap_or("-")),
            record.size,
            shown(record.signature.as_deref().unwrap_or("-")),
            shown(&record.quarantine_key)
        )?;
    }
    if let Some(next) = next {
        writeln!(out, "more: --after {next}")?;
    }
    Ok(())
}

fn write_counts(out: &mut impl Write, title: &str, counts: &[Count]) -> std::io::Result<()> {
    writeln!(out)?;
    writeln!(out, "{title:<40}  {:>8}", "COUNT")?;
    for count in counts {
        writeln!(out, "{:<40}  {:>8}", shown(&count.value), count.count)?;
    }
    Ok(())
}

fn write_detail(out: &mut impl Write, detail: &ItemDetail) -> std::io::Result<()> {
    let item = &detail.item;
    let record = &item.record;
    let field = |out: &mut dyn Write, name: &str, value: &str| -> std::io::Result<()> {
        writeln!(out, "{name:<15} {}", shown(value))
    };
    field(out, "key", &record.quarantine_key)?;
    field(out, "status", item.status.as_str())?;
    field(out, "reason", record.reason.code())?;
    field(out, "detail", &record.detail)?;
    field(out, "signature", record.signature.as_deref().unwrap_or("-"))?;
    field(out, "engine", record.engine.as_deref().unwrap_or("-"))?;
    field(out, "stage", record.stage.as_str())?;
    field(out, "sha256", &record.sha256)?;
    field(out, "size", &record.size.to_string())?;
    field(out, "tenant", record.tenant.as_deref().unwrap_or("-"))?;
    field(out, "purpose", record.purpose.as_deref().unwrap_or("-"))?;
    field(out, "upload", record.intent_id.as_deref().unwrap_or("-"))?;
    field(out, "uploader", record.uploader.as_deref().unwrap_or("-"))?;
    field(out, "filename", record.filename.as_deref().unwrap_or("-"))?;
    field(
        out,
        "declared",
        &format!(
            "{} ({} bytes)",
            record.declared_type.as_deref().unwrap_or("-"),
            record
                .declared_size
                .map_or("-".to_owned(), |s| s.to_string())
        ),
    )?;
    field(out, "original key", &record.original_key)?;
    field(out, "quarantined", &time(record.quarantined_at))?;
    if let Some(intent) = &detail.intent {
        field(out, "intent", intent.state.as_str())?;
    }
    if let Some(tombstone) = &detail.tombstone {
        field(
            out,
            "purged",
            &format!(
                "{} by {}: {}",
                time(tombstone.purged_at),
                tombstone.purged_by,
                tombstone.why
            ),
        )?;
    }
    writeln!(out, "\nHISTORY")?;
    for change in &detail.history {
        writeln!(
            out,
            "  {}  {} -> {}",
            time(change.at),
            change.from,
            change.to
        )?;
    }
    writeln!(out, "\nAUDIT")?;
    for entry in &detail.audit {
        writeln!(
            out,
            "  {:>5}  {}  {:<16}  {}: {}",
            entry.seq,
            time(entry.record.at),
            entry.record.action.as_str(),
            shown(&entry.record.actor),
            shown(&entry.record.why)
        )?;
    }
    writeln!(out, "\nFIRST {} BYTES", detail.head.len())?;
    if detail.object_present {
        out.write_all(hex_dump(&detail.head).as_bytes())?;
    } else {
        writeln!(out, "  (the object is no longer in quarantine)")?;
    }
    Ok(())
}

/// Runs an `audit` command; returns the exit status.
pub async fn run_audit(command: AuditCommand) -> anyhow::Result<u8> {
    match command {
        AuditCommand::List {
            data,
            subject,
            actor,
            action,
            limit,
            json,
        } => {
            let local = LocalReview::open(&data).await?;
            let entries = local
                .audit
                .list(&AuditFilter {
                    subject,
                    actor,
                    action,
                    before_seq: None,
                    limit,
                })
                .await?;
            if json {
                return print_json(&entries).map(|()| EXIT_OK);
            }
            let mut out = std::io::stdout().lock();
            if entries.is_empty() {
                writeln!(out, "no audit entries")?;
            } else {
                writeln!(
                    out,
                    "{:>5}  {:<20}  {:<12}  {:<16}  {:<24}  {:<12}  SUBJECT — WHY",
                    "SEQ", "AT", "ACTOR", "ACTION", "CHANGE", "SHA256"
                )?;
            }
            for entry in &entries {
                let record = &entry.record;
                writeln!(
                    out,
                    "{:>5}  {:<20}  {:<12}  {:<16}  {:<24}  {:<12}  {} — {}",
                    entry.seq,
                    time(record.at),
                    shown(&record.actor),
                    record.action.as_str(),
                    format!("{} -> {}", record.before, record.after),
                    record
                        .sha256
                        .as_deref()
                        .map_or("-", |s| s.get(..12).unwrap_or(s)),
                    shown(&record.subject),
                    shown(&record.why)
                )?;
            }
            Ok(EXIT_OK)
        }
        AuditCommand::Verify { data, json } => {
            let local = LocalReview::open(&data).await?;
            let check = local.audit.verify().await?;
            if json {
                print_json(&check)?;
            }
            match check {
                AuditCheck::Intact { entries, head } => {
                    if !json {
                        println!("audit trail intact: {entries} entries, head {head}");
                    }
                    Ok(EXIT_OK)
                }
                AuditCheck::Broken { seq, problem } => {
                    if !json {
                        println!("audit trail broken at entry {seq}: {problem}");
                    }
                    Ok(EXIT_AUDIT_BROKEN)
                }
            }
        }
    }
}
