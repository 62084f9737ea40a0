//! `airlock replay`: runs fixture cases or captured events through the pipeline on this
//! machine and reports where each object went.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use airlock_clamd::{ClamdAddress, ClamdConfig, ClamdScanner, ManagedClamd};
use airlock_core::intake::{self, IntakeItem};
use airlock_core::keys::{QUARANTINE_PREFIX, TRUSTED_PREFIX, counterpart};
use airlock_core::policy::Policies;
use airlock_core::ports::{IntentStore, ObjectReader, Scanner};
use airlock_core::stages::QuarantineRecord;
use airlock_core::verdict::ReasonCode;
use anyhow::{Context as _, bail};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::Semaphore;

use crate::cases::{self, Case, Prepared};
use crate::pipeline::{EmbeddedPipeline, PipelineConfig, PipelineRun, Settlement};

/// Exit status when every object settled (trusted, quarantined or skipped).
pub const EXIT_OK: u8 = 0;
/// Exit status when an execution failed or the pipeline could not run.
pub const EXIT_INFRASTRUCTURE: u8 = 1;
/// Exit status when a case ended other than its file expects. (Malformed input is reported
/// but does not change the status: a capture may well hold some.)
pub const EXIT_UNEXPECTED: u8 = 3;

/// Replay fixture cases or captured S3 / SQS / EventBridge events through the pipeline.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {
    /// Case files, event files, or folders of them (read recursively, `*.json`).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Where the local object store, intents and event log live.
    #[arg(long, default_value = ".airlock", env = "AIRLOCK_DATA_DIR")]
    pub data_dir: PathBuf,
    /// The bucket name events must name.
    #[arg(long, default_value = "airlock-uploads", env = "AIRLOCK_BUCKET")]
    pub bucket: String,
    /// Upload policies (TOML); the built-in ones when absent.
    #[arg(long, env = "AIRLOCK_POLICIES")]
    pub policies: Option<PathBuf>,
    /// A state machine to run instead of the built-in `statemachine/pipeline.asl.json`.
    #[arg(long)]
    pub definition: Option<PathBuf>,
    /// A running clamd (`host:port` or a Unix socket path). Without it, replay starts its own
    /// clamd with `--signatures` and stops it at the end.
    #[arg(long, env = "AIRLOCK_CLAMD")]
    pub clamd: Option<String>,
    /// Signature folder for the clamd replay starts.
    #[arg(long, default_value = "fixtures/clamav")]
    pub signatures: PathBuf,
    /// Multiplies the state machine's retry delays (1 = as on AWS).
    #[arg(long, default_value_t = 0.05)]
    pub delay_scale: f64,
    /// Objects in flight at once (two per core keeps latency low on small machines).
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Print each execution's step-by-step history.
    #[arg(short, long)]
    pub verbose: bool,
    /// Print the results as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// One input item's result.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplayResult {
    /// The case name, or the event source.
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub result: ReplayOutcome,
    /// For cases with an expectation: whether it was met, and if not, how it differs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expectation: Option<Result<(), String>>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ReplayOutcome {
    Run(Box<PipelineRun>),
    /// The event needed no processing (a test event, another prefix...).
    Ignored {
        reason: String,
    },
    /// The input was malformed.
    InputError {
        error: String,
    },
    /// A case whose optional object is not on this machine.
    Unavailable {
        reason: String,
    },
}

/// What was found in the inputs.
enum Work {
    Case(Box<Case>),
    Event(IntakeItem),
    Error { source: String, error: String },
}

impl Work {
    /// What the report calls it.
    fn source(&self) -> String {
        match self {
            Self::Case(case) => case.name.clone(),
            Self::Event(item) => item.source.clone(),
            Self::Error { source, .. } => source.clone(),
        }
    }
}

fn collect_files(path: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("{}: cannot read", path.display()))?;
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("{}: cannot list", path.display()))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        entries.sort();
        for entry in entries {
            if entry.is_dir() || entry.extension().is_some_and(|e| e == "json") {
                collect_files(&entry, out)?;
            }
        }
    } else {
        out.push(path.to_path_buf());
    }
    Ok(())
}

fn load_work(inputs: &[PathBuf]) -> anyhow::Result<Vec<Work>> {
    let mut files = Vec::new();
    for input in inputs {
        collect_files(input, &mut files)?;
    }
    let mut work = Vec::new();
    for file in files {
        let origin = file.display().to_string();
        let text =
            std::fs::read_to_string(&file).with_context(|| format!("{origin}: cannot read"))?;
        match serde_json::from_str::<Value>(&text) {
            Ok(value) if cases::is_case(&value) => match Case::from_value(&file, value) {
                Ok(case) => work.push(Work::Case(Box::new(case))),
                Err(err) => work.push(Work::Error {
                    source: origin,
                    error: format!("{err:#}"),
                }),
            },
            Ok(value) => work.extend(
                intake::parse_event(&origin, &value)
                    .into_iter()
                    .map(Work::Event),
            ),
            Err(_) => work.extend(
                intake::parse_event_str(&origin, &text)
                    .into_iter()
                    .map(Work::Event),
            ),
        }
    }
    Ok(work)
}

/// A clamd to scan with: the given one (`clamd`), or one started for this run with the
/// signatures in `signatures`.
pub(crate) async fn scanner_for(
    clamd: Option<&str>,
    signatures: &std::path::Path,
) -> anyhow::Result<(Arc<dyn Scanner>, Option<ManagedClamd>)> {
    if let Some(address) = clamd {
        let address: ClamdAddress = address
            .parse()
            .with_context(|| format!("--clamd {address}"))?;
        let scanner = ClamdScanner::new(ClamdConfig::new(address));
        scanner.ping().await.context("clamd does not answer PING")?;
        // Refuse a clamd that misses the canaries (e.g. no `AlertEncrypted yes`) at start.
        scanner
            .ensure_verified()
            .await
            .context("clamd failed airlock's self-test")?;
        return Ok((Arc::new(scanner), None));
    }
    let signatures = signatures.to_owned();
    let managed = tokio::task::spawn_blocking(move || {
        ManagedClamd::builder().database_dir(signatures).start()
    })
    .await?
    .context("starting clamd (pass --clamd to use a running one)")?;
    let scanner = managed.scanner();
    scanner
        .ensure_verified()
        .await
        .context("clamd failed airlock's self-test")?;
    Ok((Arc::new(scanner), Some(managed)))
}

/// Where a case's object is now, for a run that found it settled earlier: the destination
/// and, for quarantine, the recorded reason.
async fn locate(
    pipeline: &EmbeddedPipeline,
    case: &Case,
) -> Option<(&'static str, Option<ReasonCode>)> {
    let key = case.key();
    let store = pipeline.store();
    let trusted = counterpart(&key, TRUSTED_PREFIX)?;
    if store.head(&trusted).await.ok()?.is_some() {
        return Some(("trusted", None));
    }
    let quarantined = counterpart(&key, QUARANTINE_PREFIX)?;
    let record = store
        .read_range(&format!("{quarantined}.json"), None, 0, 1 << 20)
        .await
        .ok()?;
    let record: QuarantineRecord = serde_json::from_slice(&record).ok()?;
    Some(("quarantine", Some(record.reason)))
}

fn check_expectation(
    case: &Case,
    destination: &str,
    reason: Option<ReasonCode>,
    state: Option<String>,
) -> Option<Result<(), String>> {
    let expect = case.file.expect.as_ref()?;
    let mut problems = Vec::new();
    if destination != expect.destination {
        problems.push(format!(
            "went to {destination}, expected {}",
            expect.destination
        ));
    }
    if let Some(want) = expect.reason {
        match reason {
            Some(got) if got == want => {}
            Some(got) => problems.push(format!("reason {got}, expected {want}")),
            None => problems.push(format!("no reason, expected {want}")),
        }
    }
    if let Some(want) = expect.intent_state {
        let got = state.unwrap_or_else(|| "none".to_owned());
        if got != want.as_str() {
            problems.push(format!("intent {got}, expected {want}"));
        }
    }
    Some(if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    })
}

/// What a replay did.
#[derive(Debug)]
pub struct ReplayReport {
    pub results: Vec<ReplayResult>,
    pub elapsed: std::time::Duration,
    /// Messages the workers could not handle, with their queue.
    pub dead_letters: Vec<(String, airlock_local::DeadLetter)>,
}

/// Runs the replay and returns what happened, printing nothing.
pub async fn replay(args: &ReplayArgs) -> anyhow::Result<ReplayReport> {
    let work = load_work(&args.inputs)?;
    if work.is_empty() {
        bail!("no cases or events found in {:?}", args.inputs);
    }
    let policies = match &args.policies {
        Some(path) => Policies::load(path)?,
        None => Policies::builtin(),
    };
    let (scanner, mut managed) = scanner_for(args.clamd.as_deref(), &args.signatures).await?;
    let mut config = PipelineConfig::new(
        &args.data_dir,
        &args.bucket,
        scanner,
        Arc::new(airlock_media::ImageProcessor),
    );
    config.policies = Arc::new(policies);
    config.delay_scale = args.delay_scale;
    if let Some(path) = &args.definition {
        config.definition =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    }
    let pipeline = Arc::new(EmbeddedPipeline::start(config)?);
    let started = Instant::now();

    let progress = progress_bar(work.len(), args.json);
    let limit = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let mut tasks = Vec::new();
    for item in work {
        let source = item.source();
        let pipeline = Arc::clone(&pipeline);
        let limit = Arc::clone(&limit);
        let progress = progress.clone();
        tasks.push((
            tokio::spawn(async move {
                let _permit = limit.acquire_owned().await.expect("semaphore open");
                let results = replay_one(&pipeline, item).await;
                if let Some(bar) = &progress {
                    bar.inc(1);
                }
                results
            }),
            source,
        ));
    }
    let mut results = Vec::new();
    for (task, source) in tasks {
        match task.await {
            Ok(done) => results.extend(done),
            // One item's crash is that item's failure, not the replay's.
            Err(join) => results.push(ReplayResult {
                source,
                key: None,
                result: ReplayOutcome::InputError {
                    error: format!("replaying it crashed: {join}"),
                },
                expectation: None,
            }),
        }
    }
    if let Some(bar) = &progress {
        bar.finish_and_clear();
    }
    let elapsed = started.elapsed();
    let dead_letters = pipeline.dead_letters();
    let pipeline = Arc::into_inner(pipeline).context("pipeline still in use")?;
    pipeline.shutdown().await;
    if let Some(clamd) = managed.as_mut() {
        clamd.stop().ok();
    }
    Ok(ReplayReport {
        results,
        elapsed,
        dead_letters,
    })
}

/// Runs the replay and prints the report; returns the process exit status.
pub async fn run(args: ReplayArgs) -> anyhow::Result<u8> {
    let ReplayReport {
        results,
        elapsed,
        dead_letters: dead,
    } = replay(&args).await?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &results)?;
        writeln!(out)?;
    } else {
        if args.verbose {
            for result in &results {
                if let ReplayOutcome::Run(run) = &result.result {
                    write_history(&mut out, &result.source, run)?;
                }
            }
        }
        write_table(&mut out, &results)?;
        for (queue, letter) in &dead {
            writeln!(
                out,
                "dead letter on {queue}: {} ({})",
                letter.reason, letter.message.body
            )?;
        }
    }
    let summary = Summary::of(&results, elapsed);
    eprintln!("{summary}");
    Ok(summary.exit_status())
}

fn progress_bar(len: usize, quiet: bool) -> Option<indicatif::ProgressBar> {
    if quiet || len < 20 || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(len as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} objects {elapsed}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Some(bar)
}

async fn replay_one(pipeline: &EmbeddedPipeline, item: Work) -> Vec<ReplayResult> {
    match item {
        Work::Error { source, error } => vec![ReplayResult {
            source,
            key: None,
            result: ReplayOutcome::InputError { error },
            expectation: None,
        }],
        Work::Event(item) => vec![run_item(pipeline, item, None).await],
        Work::Case(case) => {
            let prepared = cases::prepare(
                &case,
                pipeline.store().as_ref(),
                pipeline.intents().as_ref(),
                &pipeline.config().policies,
                &pipeline.config().bucket,
            )
            .await;
            match prepared {
                Err(err) => vec![ReplayResult {
                    source: case.name.clone(),
                    key: Some(case.key()),
                    result: ReplayOutcome::InputError {
                        error: format!("{err:#}"),
                    },
                    expectation: None,
                }],
                Ok(Prepared::Unavailable(reason)) => vec![ReplayResult {
                    source: case.name.clone(),
                    key: Some(case.key()),
                    result: ReplayOutcome::Unavailable { reason },
                    expectation: None,
                }],
                Ok(Prepared::Ready(items)) => {
                    let mut results = Vec::new();
                    for item in items {
                        results.push(run_item(pipeline, item, Some(&case)).await);
                    }
                    results
                }
            }
        }
    }
}

async fn run_item(
    pipeline: &EmbeddedPipeline,
    item: IntakeItem,
    case: Option<&Case>,
) -> ReplayResult {
    let source = case.map_or_else(|| item.source.clone(), |c| c.name.clone());
    let object = match item.outcome {
        Err(err) => {
            return ReplayResult {
                source,
                key: None,
                result: ReplayOutcome::InputError {
                    // The source column already says where; say what.
                    error: if err.field.is_empty() {
                        err.problem.to_string()
                    } else {
                        format!("{}: {}", err.field, err.problem)
                    },
                },
                expectation: None,
            };
        }
        Ok(intake::Intake::Skipped(reason)) => {
            return ReplayResult {
                source,
                key: None,
                result: ReplayOutcome::Ignored {
                    reason: reason.to_string(),
                },
                expectation: None,
            };
        }
        Ok(intake::Intake::Object(object)) => object,
    };
    let key = Some(object.key.clone());
    match pipeline.process(&object).await {
        Ok(run) => {
            let expectation = match case {
                Some(case) => {
                    // Settled by an earlier run: judge where it is now.
                    let (destination, reason) = match &run.settlement {
                        Settlement::Skipped { .. } => {
                            locate(pipeline, case).await.unwrap_or(("skipped", None))
                        }
                        Settlement::Quarantine { reason, .. } => ("quarantine", Some(*reason)),
                        other => (other.label(), None),
                    };
                    let state = match &case.file.intent {
                        Some(intent) => pipeline
                            .intents()
                            .get(intent.id)
                            .await
                            .ok()
                            .flatten()
                            .map(|i| i.state.as_str().to_owned()),
                        None => None,
                    };
                    check_expectation(case, destination, reason, state)
                }
                None => None,
            };
            ReplayResult {
                source,
                key,
                result: ReplayOutcome::Run(Box::new(run)),
                expectation,
            }
        }
        Err(err) => ReplayResult {
            source,
            key,
            result: ReplayOutcome::Run(Box::new(PipelineRun {
                object: object.clone(),
                execution_name: object.execution_name(),
                duplicate: false,
                media: None,
                settlement: Settlement::Failed {
                    error: "Airlock.ReplayFailed".to_owned(),
                    cause: format!("{err:#}"),
                },
                states: Vec::new(),
                total_ms: 0.0,
                history: Value::Null,
            })),
            expectation: None,
        },
    }
}

fn state_ms(run: &PipelineRun, state: &str) -> String {
    run.states
        .iter()
        .filter(|s| s.state == state)
        .map(|s| s.duration_ms)
        .reduce(|a, b| a + b)
        .map_or_else(|| "-".to_owned(), |ms| format!("{ms:.1}"))
}

/// One table row for a result; notes (failures, skips, surprises) go to `notes`.
fn table_row(result: &ReplayResult, notes: &mut Vec<String>) -> [String; 9] {
    let check = match &result.expectation {
        None => String::new(),
        Some(Ok(())) => "ok".to_owned(),
        Some(Err(problem)) => {
            notes.push(format!("{}: UNEXPECTED: {problem}", result.source));
            "UNEXPECTED".to_owned()
        }
    };
    match &result.result {
        ReplayOutcome::Run(run) => {
            let (label, reason) = match &run.settlement {
                Settlement::Trusted { .. } => {
                    if let Some(media) = &run.media {
                        notes.push(format!("{}: {}", result.source, describe_media(media)));
                    }
                    ("trusted", String::new())
                }
                Settlement::Quarantine {
                    reason, signature, ..
                } => (
                    "quarantine",
                    signature
                        .as_ref()
                        .map_or_else(|| reason.to_string(), |s| format!("{reason} ({s})")),
                ),
                Settlement::Skipped { detail } => {
                    notes.push(format!("{}: skipped: {detail}", result.source));
                    ("skipped", String::new())
                }
                Settlement::Failed { error, cause } => {
                    notes.push(format!("{}: FAILED: {error}: {cause}", result.source));
                    ("FAILED", error.clone())
                }
            };
            let settle = match (
                state_ms(run, "Promote").as_str(),
                state_ms(run, "Quarantine"),
            ) {
                ("-", q) => q,
                (p, _) => p.to_owned(),
            };
            [
                result.source.clone(),
                label.to_owned(),
                reason,
                state_ms(run, "Inspect"),
                state_ms(run, "Scan"),
                state_ms(run, "Media"),
                settle,
                format!("{:.1}", run.total_ms),
                check,
            ]
        }
        ReplayOutcome::Ignored { reason } => text_row(result, "ignored", reason, check),
        ReplayOutcome::InputError { error } => {
            notes.push(format!("{}: error: {error}", result.source));
            text_row(result, "bad input", "", check)
        }
        ReplayOutcome::Unavailable { reason } => text_row(result, "not run", reason, check),
    }
}

/// One line about what the media stage made.
fn describe_media(media: &Value) -> String {
    let size = |o: &Value| {
        format!(
            "{}x{} {}",
            o.get("width").and_then(Value::as_u64).unwrap_or(0),
            o.get("height").and_then(Value::as_u64).unwrap_or(0),
            o.get("contentType").and_then(Value::as_str).unwrap_or("?")
        )
    };
    let mut line = format!(
        "sanitized {}",
        media.get("original").map(size).unwrap_or_default()
    );
    let variants: Vec<String> = media
        .get("variants")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|v| {
            format!(
                "{} {}",
                v.get("name").and_then(Value::as_str).unwrap_or("?"),
                size(v)
            )
        })
        .collect();
    if !variants.is_empty() {
        let _ = write!(line, "; variants {}", variants.join(", "));
    }
    if let Some(metadata) = media.get("metadata") {
        if metadata.get("orientationApplied").and_then(Value::as_bool) == Some(true) {
            let _ = write!(
                line,
                "; orientation {} applied",
                metadata
                    .get("orientation")
                    .and_then(Value::as_u64)
                    .unwrap_or(0)
            );
        }
        if metadata.get("gpsPresent").and_then(Value::as_bool) == Some(true) {
            line.push_str("; GPS removed");
        }
        if let Some(placeholder) = metadata.get("placeholder").and_then(Value::as_str) {
            let _ = write!(line, "; placeholder {placeholder}");
        }
    }
    line
}

/// A row with no timings.
fn text_row(result: &ReplayResult, label: &str, reason: &str, check: String) -> [String; 9] {
    let blank = String::new;
    [
        result.source.clone(),
        label.to_owned(),
        reason.to_owned(),
        blank(),
        blank(),
        blank(),
        blank(),
        blank(),
        check,
    ]
}

fn write_table(out: &mut impl Write, results: &[ReplayResult]) -> std::io::Result<()> {
    let mut rows = vec![[
        "SOURCE".to_owned(),
        "RESULT".to_owned(),
        "REASON".to_owned(),
        "INSPECT ms".to_owned(),
        "SCAN ms".to_owned(),
        "MEDIA ms".to_owned(),
        "SETTLE ms".to_owned(),
        "TOTAL ms".to_owned(),
        "CHECK".to_owned(),
    ]];
    let mut notes = Vec::new();
    for result in results {
        let row = table_row(result, &mut notes);
        rows.push(row);
    }
    // Long event sources and reasons are cut to keep rows on one line; the notes below
    // the table carry them whole.
    let limits = [56, 10, 60, 10, 8, 8, 9, 8, 10];
    let cut = |cell: &str, limit: usize| -> String {
        if cell.chars().count() <= limit {
            cell.to_owned()
        } else {
            let mut short: String = cell.chars().take(limit - 1).collect();
            short.push('…');
            short
        }
    };
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| row.iter().zip(limits).map(|(c, l)| cut(c, l)).collect())
        .collect();
    let widths: Vec<usize> = (0..9)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    for row in &rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            // Numbers right-aligned, text left-aligned.
            if (3..=7).contains(&i) {
                let _ = write!(line, "{cell:>w$}  ", w = widths[i]);
            } else {
                let _ = write!(line, "{cell:<w$}  ", w = widths[i]);
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    for note in notes {
        writeln!(out, "{note}")?;
    }
    Ok(())
}

fn write_history(out: &mut impl Write, source: &str, run: &PipelineRun) -> std::io::Result<()> {
    writeln!(out, "== {source}: execution {} ==", run.execution_name)?;
    let Some(events) = run.history.as_array() else {
        return Ok(());
    };
    let start = events
        .first()
        .and_then(|e| e.get("timestamp"))
        .and_then(Value::as_str)
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
    for event in events {
        let kind = event.get("type").and_then(Value::as_str).unwrap_or("?");
        let offset = match (
            start,
            event
                .get("timestamp")
                .and_then(Value::as_str)
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()),
        ) {
            (Some(s), Some(t)) => {
                #[allow(clippy::cast_precision_loss, reason = "an offset in ms for display")]
                let ms = (t - s).num_microseconds().unwrap_or(0) as f64 / 1000.0;
                format!("{ms:>9.1}")
            }
            _ => " ".repeat(9),
        };
        // The details object is the one field named `...EventDetails`.
        let details = event
            .as_object()
            .and_then(|o| o.iter().find(|(k, _)| k.ends_with("EventDetails")))
            .map(|(_, v)| v);
        let summary = details.map(summarize_details).unwrap_or_default();
        writeln!(
            out,
            "  {offset} ms  #{:<3} {kind:<28} {summary}",
            event.get("id").and_then(Value::as_u64).unwrap_or(0)
        )?;
    }
    Ok(())
}

fn summarize_details(details: &Value) -> String {
    let mut parts = Vec::new();
    for field in ["name", "resource", "error", "cause", "output"] {
        if let Some(value) = details.get(field) {
            let text = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let text: String = text.chars().take(140).collect();
            parts.push(format!("{field}={text}"));
        }
    }
    parts.join(" ")
}

/// Totals of a replay.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub objects: usize,
    pub trusted: usize,
    pub quarantined: usize,
    pub skipped: usize,
    pub failed: usize,
    pub ignored: usize,
    pub bad_input: usize,
    pub not_run: usize,
    pub unexpected: usize,
    pub seconds: f64,
}

impl Summary {
    #[must_use]
    pub fn of(results: &[ReplayResult], elapsed: std::time::Duration) -> Self {
        let mut s = Self {
            seconds: elapsed.as_secs_f64(),
            ..Self::default()
        };
        for result in results {
            match &result.result {
                ReplayOutcome::Run(run) => {
                    s.objects += 1;
                    match run.settlement {
                        Settlement::Trusted { .. } => s.trusted += 1,
                        Settlement::Quarantine { .. } => s.quarantined += 1,
                        Settlement::Skipped { .. } => s.skipped += 1,
                        Settlement::Failed { .. } => s.failed += 1,
                    }
                }
                ReplayOutcome::Ignored { .. } => s.ignored += 1,
                ReplayOutcome::InputError { .. } => s.bad_input += 1,
                ReplayOutcome::Unavailable { .. } => s.not_run += 1,
            }
            if matches!(result.expectation, Some(Err(_))) {
                s.unexpected += 1;
            }
        }
        s
    }

    #[must_use]
    pub fn exit_status(&self) -> u8 {
        if self.failed > 0 {
            EXIT_INFRASTRUCTURE
        } else if self.unexpected > 0 {
            EXIT_UNEXPECTED
        } else {
            EXIT_OK
        }
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        #[allow(clippy::cast_precision_loss, reason = "a rate for display")]
        let rate = if self.seconds > 0.0 {
            self.objects as f64 / self.seconds
        } else {
            0.0
        };
        write!(
            f,
            "{} objects: {} trusted, {} quarantined, {} skipped, {} failed; {} events ignored, {} bad input, {} not run",
            self.objects,
            self.trusted,
            self.quarantined,
            self.skipped,
            self.failed,
            self.ignored,
            self.bad_input,
            self.not_run
        )?;
        if self.unexpected > 0 {
            write!(f, "; {} UNEXPECTED", self.unexpected)?;
        }
        write!(f, " — {:.2} s ({rate:.1} objects/s)", self.seconds)
    }
}
