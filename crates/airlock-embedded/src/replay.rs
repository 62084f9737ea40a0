//! `airlock replay`: runs fixture cases or captured events through the pipeline on this
//! machine and reports where each object went.
//!
//! Memory stays bounded whatever the input's size: event files are read as a stream (one
//! record at a time, [`intake::read_events`]) by a reader thread feeding a bounded channel,
//! objects run with bounded concurrency as they arrive, and results are handed on in input
//! order as they finish, holding at most a fixed window of them; the printer keeps only
//! counters, spooling table rows and notes to temporary files until the end.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, BufWriter, IsTerminal, Seek, Write};
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
use tokio::sync::{Semaphore, mpsc};

use crate::cases::{self, Case, Prepared};
use crate::pipeline::{EmbeddedPipeline, PipelineConfig, PipelineRun, Settlement};

/// Exit status when every object settled (trusted, quarantined or skipped).
pub const EXIT_OK: u8 = 0;
/// Exit status when an execution failed or the pipeline could not run.
pub const EXIT_INFRASTRUCTURE: u8 = 1;
/// Exit status when a case ended other than its file expects. (Malformed input — a record
/// that does not parse, a hostile key, an event for another bucket, a file that cannot be
/// read — is reported but does not change the status: a capture may well hold some.)
pub const EXIT_UNEXPECTED: u8 = 3;

/// Items read ahead of the objects running.
const READ_AHEAD: usize = 256;
/// Results held, at most, while an earlier one is still running (per object in flight).
const REORDER_WINDOW_PER_SLOT: usize = 64;

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
    /// Oldest clamd definitions whose verdicts count, in hours, or `off`. Applies to a
    /// clamd that reports a daily database (its build time); plain signature files, such
    /// as the project's test signatures, report none and are accepted.
    #[arg(long, default_value = "48")]
    pub max_definitions_age_hours: airlock_core::definitions::MaxAge,
    /// Where to replay: `local`, the embedded pipeline; or `emulator`, the AWS deployment
    /// on the AWS emulator (fixture cases only).
    #[arg(long, value_enum, default_value_t = ReplayTarget::Local)]
    pub target: ReplayTarget,
    /// With `--target emulator`: a running AWS emulator to deploy to; without it, one is
    /// started from `.venv/bin/moto_server` (made by `scripts/venv.sh`) for the run.
    #[arg(long, env = "AIRLOCK_EMULATOR_ENDPOINT")]
    pub emulator_endpoint: Option<String>,
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

/// Where a replay runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReplayTarget {
    /// The embedded pipeline on this machine.
    Local,
    /// The AWS deployment on the AWS emulator.
    Emulator,
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

/// A file to read, or why a path in a folder could not be looked at.
enum Input {
    File(PathBuf),
    Unreadable {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// The files of `path` (itself, or the `*.json` files under it, sorted). A path given on the
/// command line must exist; anything wrong below it is one unreadable input, so the rest
/// still replays.
fn collect_files(path: &Path, top: bool, out: &mut Vec<Input>) -> anyhow::Result<()> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(err) if top => {
            return Err(err).with_context(|| format!("{}: cannot read", path.display()));
        }
        Err(error) => {
            out.push(Input::Unreadable {
                path: path.to_path_buf(),
                error,
            });
            return Ok(());
        }
    };
    if !meta.is_dir() {
        out.push(Input::File(path.to_path_buf()));
        return Ok(());
    }
    let listing = std::fs::read_dir(path).and_then(|entries| {
        entries
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<Vec<_>, _>>()
    });
    let mut entries = match listing {
        Ok(entries) => entries,
        Err(err) if top => {
            return Err(err).with_context(|| format!("{}: cannot list", path.display()));
        }
        Err(error) => {
            out.push(Input::Unreadable {
                path: path.to_path_buf(),
                error,
            });
            return Ok(());
        }
    };
    entries.sort();
    for entry in entries {
        // A dangling symlink is neither a folder nor a file: named `*.json`, it is an input
        // that cannot be read, and reported as such.
        if entry.extension().is_some_and(|e| e == "json") || entry.is_dir() {
            collect_files(&entry, false, out)?;
        }
    }
    Ok(())
}

/// Reads the inputs in order, sending what they hold as it is parsed. Returns when all is
/// read or the receiver is gone.
fn read_inputs(inputs: Vec<Input>, tx: &mpsc::Sender<Work>) {
    for input in inputs {
        let (path, error) = match input {
            Input::Unreadable { path, error } => (path, error),
            Input::File(path) => match std::fs::File::open(&path) {
                Ok(file) => {
                    let origin = path.display().to_string();
                    let mut open = true;
                    let mut emit = |streamed: intake::Streamed| {
                        open = send_streamed(&path, streamed, tx);
                        open
                    };
                    let read = intake::read_events(
                        &origin,
                        BufReader::with_capacity(1 << 16, file),
                        &mut emit,
                    );
                    if !open {
                        return;
                    }
                    match read {
                        Ok(()) => continue,
                        Err(error) => (path, error),
                    }
                }
                Err(error) => (path, error),
            },
        };
        let work = Work::Error {
            source: path.display().to_string(),
            error: format!("cannot read {}: {error}", path.display()),
        };
        if tx.blocking_send(work).is_err() {
            return;
        }
    }
}

/// Turns one streamed item or document into work; `false` once nobody is listening.
fn send_streamed(path: &Path, streamed: intake::Streamed, tx: &mpsc::Sender<Work>) -> bool {
    match streamed {
        intake::Streamed::Item(item) => tx.blocking_send(Work::Event(item)).is_ok(),
        intake::Streamed::Document { origin, value } if cases::is_case(&value) => {
            let work = match Case::from_value(path, value) {
                Ok(case) => Work::Case(Box::new(case)),
                Err(err) => Work::Error {
                    source: origin,
                    error: format!("{err:#}"),
                },
            };
            tx.blocking_send(work).is_ok()
        }
        intake::Streamed::Document { origin, value } => intake::parse_event(&origin, &value)
            .into_iter()
            .all(|item| tx.blocking_send(Work::Event(item)).is_ok()),
    }
}

/// A clamd to scan with: the given one (`clamd`), or one started for this run with the
/// signatures in `signatures` and, when `largest` is given, stream and file limits that let
/// it scan objects of that size whole (clamd's own defaults otherwise).
pub async fn scanner_for(
    clamd: Option<&str>,
    signatures: &std::path::Path,
    largest: Option<u64>,
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
        let mut builder = ManagedClamd::builder().database_dir(signatures);
        if let Some(largest) = largest {
            // clamd keeps its limits below 2 GiB; larger objects are refused as unscannable.
            let limit = largest.clamp(100 << 20, (2 << 30) - (1 << 20));
            builder = builder
                .stream_max_length(limit)
                .max_file_size(limit)
                .max_scan_size(limit.max(400 << 20));
        }
        builder.start()
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
pub async fn locate(
    store: &dyn ObjectReader,
    case: &Case,
) -> Option<(&'static str, Option<ReasonCode>)> {
    let key = case.key();
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

/// Whether a case landed as it expects (`None` for a case without an expectation).
#[must_use]
pub fn check_expectation(
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

/// What a replay did, with every result (for callers that want them all, such as the
/// benchmark; [`replay_with`] keeps none).
#[derive(Debug)]
pub struct ReplayReport {
    pub results: Vec<ReplayResult>,
    pub elapsed: std::time::Duration,
    /// Messages the workers could not handle, with their queue.
    pub dead_letters: Vec<(String, airlock_local::DeadLetter)>,
}

/// What a replay did, in totals.
#[derive(Debug)]
pub struct ReplayTotals {
    pub summary: Summary,
    /// Messages the workers could not handle, with their queue.
    pub dead_letters: Vec<(String, airlock_local::DeadLetter)>,
}

/// Runs the replay and returns every result, printing nothing. Memory grows with the
/// number of results: for large inputs use [`replay_with`].
pub async fn replay(args: &ReplayArgs) -> anyhow::Result<ReplayReport> {
    let mut results = Vec::new();
    let totals = replay_with(args, &mut |result| {
        results.push(result);
        Ok(())
    })
    .await?;
    Ok(ReplayReport {
        results,
        elapsed: std::time::Duration::from_secs_f64(totals.summary.seconds),
        dead_letters: totals.dead_letters,
    })
}

/// The pipeline to replay through, and the clamd started for it, if one was.
async fn start_pipeline(
    args: &ReplayArgs,
) -> anyhow::Result<(Arc<EmbeddedPipeline>, Option<ManagedClamd>)> {
    let policies = match &args.policies {
        Some(path) => Policies::load(path)?,
        None => Policies::builtin(),
    };
    let (scanner, managed) = scanner_for(args.clamd.as_deref(), &args.signatures, None).await?;
    let mut config = PipelineConfig::new(
        &args.data_dir,
        &args.bucket,
        scanner,
        Arc::new(airlock_media::ImageProcessor),
    );
    config.policies = Arc::new(policies);
    config.delay_scale = args.delay_scale;
    config.freshness = airlock_core::definitions::FreshnessRule::accepting_undated(
        args.max_definitions_age_hours.0,
    );
    if let Some(path) = &args.definition {
        config.definition =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    }
    Ok((Arc::new(EmbeddedPipeline::start(config)?), managed))
}

/// Runs the replay, handing each result to `on_result` in input order as soon as it and
/// those before it are done, and keeping only the totals. Objects start in input order, at
/// most `--concurrency` at once, and a bounded number of results wait for a slower earlier
/// one.
pub async fn replay_with(
    args: &ReplayArgs,
    on_result: &mut dyn FnMut(ReplayResult) -> anyhow::Result<()>,
) -> anyhow::Result<ReplayTotals> {
    let mut inputs = Vec::new();
    for input in &args.inputs {
        collect_files(input, true, &mut inputs)?;
    }
    if inputs.is_empty() {
        bail!("no cases or events found in {:?}", args.inputs);
    }
    let (pipeline, mut managed) = start_pipeline(args).await?;
    let started = Instant::now();

    let (tx, mut rx) = mpsc::channel(READ_AHEAD);
    let reader = tokio::task::spawn_blocking(move || read_inputs(inputs, &tx));
    let concurrency = args.concurrency.max(1);
    let limit = Arc::new(Semaphore::new(concurrency));
    let window = concurrency * REORDER_WINDOW_PER_SLOT;
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(u64, Vec<ReplayResult>)>();
    let mut waiting: BTreeMap<u64, Vec<ReplayResult>> = BTreeMap::new();
    let (mut started_items, mut next_out) = (0_u64, 0_u64);
    let mut input_done = false;
    let mut summary = Summary::default();
    let mut progress = Progress::new(args.json);
    loop {
        if input_done && next_out == started_items {
            break;
        }
        // Room for one more: an object slot free (taken here, so objects start in input
        // order) and the window of results waiting for an earlier one not full.
        let room = started_items - next_out < window as u64 && limit.available_permits() > 0;
        tokio::select! {
            biased;
            Some((seq, results)) = done_rx.recv() => {
                waiting.insert(seq, results);
                while let Some(results) = waiting.remove(&next_out) {
                    next_out += 1;
                    progress.inc();
                    for result in results {
                        summary.add(&result);
                        on_result(result)?;
                    }
                }
            }
            work = rx.recv(), if !input_done && room => match work {
                None => input_done = true,
                Some(item) => {
                    let seq = started_items;
                    started_items += 1;
                    let source = item.source();
                    let pipeline = Arc::clone(&pipeline);
                    let permit = Arc::clone(&limit)
                        .try_acquire_owned()
                        .context("no object slot free")?;
                    let done = done_tx.clone();
                    tokio::spawn(async move {
                        let task = tokio::spawn(async move { replay_one(&pipeline, item).await });
                        let results = task.await.unwrap_or_else(|join| {
                            // One item's crash is that item's failure, not the replay's.
                            vec![ReplayResult {
                                source,
                                key: None,
                                result: ReplayOutcome::InputError {
                                    error: format!("replaying it crashed: {join}"),
                                },
                                expectation: None,
                            }]
                        });
                        // Freed before the result is sent, so the loop that receives it
                        // finds the slot free.
                        drop(permit);
                        let _ = done.send((seq, results));
                    });
                }
            },
        }
    }
    progress.finish();
    reader.await.context("the input reader crashed")?;
    summary.seconds = started.elapsed().as_secs_f64();
    let dead_letters = pipeline.dead_letters();
    let pipeline = Arc::into_inner(pipeline).context("pipeline still in use")?;
    pipeline.shutdown().await;
    if let Some(clamd) = managed.as_mut() {
        clamd.stop().ok();
    }
    if started_items == 0 {
        bail!("no cases or events found in {:?}", args.inputs);
    }
    Ok(ReplayTotals {
        summary,
        dead_letters,
    })
}

/// Runs the replay and prints the report; returns the process exit status.
pub async fn run(args: ReplayArgs) -> anyhow::Result<u8> {
    let mut printer = Printer::new(&args)?;
    let ReplayTotals {
        summary,
        dead_letters,
    } = replay_with(&args, &mut |result| printer.add(&result)).await?;
    printer.finish(&dead_letters)?;
    eprintln!("{summary}");
    Ok(summary.exit_status())
}

/// Prints results as they come: JSON elements or histories straight away, table rows and
/// notes spooled to temporary files (the column widths are known only at the end), so
/// memory does not grow with the number of results.
struct Printer {
    out: BufWriter<std::io::Stdout>,
    json: bool,
    verbose: bool,
    printed: usize,
    rows: BufWriter<std::fs::File>,
    notes: BufWriter<std::fs::File>,
    widths: [usize; 9],
}

impl Printer {
    fn new(args: &ReplayArgs) -> anyhow::Result<Self> {
        let spool = || -> anyhow::Result<BufWriter<std::fs::File>> {
            Ok(BufWriter::new(
                tempfile::tempfile().context("creating a temporary file for the report")?,
            ))
        };
        let mut widths = [0; 9];
        for (width, title) in widths.iter_mut().zip(HEADER) {
            *width = title.chars().count();
        }
        Ok(Self {
            out: BufWriter::new(std::io::stdout()),
            json: args.json,
            verbose: args.verbose,
            printed: 0,
            rows: spool()?,
            notes: spool()?,
            widths,
        })
    }

    fn add(&mut self, result: &ReplayResult) -> anyhow::Result<()> {
        if self.json {
            self.out
                .write_all(if self.printed == 0 { b"[\n" } else { b",\n" })?;
            serde_json::to_writer_pretty(&mut self.out, result)?;
            self.printed += 1;
            return Ok(());
        }
        if let (true, ReplayOutcome::Run(run)) = (self.verbose, &result.result) {
            write_history(&mut self.out, &result.source, run)?;
        }
        let mut notes = Vec::new();
        let row = cut_row(table_row(result, &mut notes));
        for (width, cell) in self.widths.iter_mut().zip(&row) {
            *width = (*width).max(cell.chars().count());
        }
        serde_json::to_writer(&mut self.rows, &row)?;
        self.rows.write_all(b"\n")?;
        for note in notes {
            writeln!(self.notes, "{}", escape(&note))?;
        }
        self.printed += 1;
        Ok(())
    }

    fn finish(mut self, dead: &[(String, airlock_local::DeadLetter)]) -> anyhow::Result<()> {
        if self.json {
            self.out
                .write_all(if self.printed == 0 { b"[]\n" } else { b"\n]\n" })?;
            self.out.flush()?;
            return Ok(());
        }
        write_row(&mut self.out, &HEADER.map(str::to_owned), &self.widths)?;
        let mut rows = rewind(self.rows)?;
        let mut line = String::new();
        while rows.read_line(&mut line)? > 0 {
            let row: [String; 9] =
                serde_json::from_str(&line).context("reading back the report")?;
            write_row(&mut self.out, &row, &self.widths)?;
            line.clear();
        }
        std::io::copy(&mut rewind(self.notes)?, &mut self.out)?;
        for (queue, letter) in dead {
            writeln!(
                self.out,
                "dead letter on {queue}: {} ({})",
                escape(&letter.reason),
                escape(&letter.message.body)
            )?;
        }
        self.out.flush()?;
        Ok(())
    }
}

fn rewind(spool: BufWriter<std::fs::File>) -> anyhow::Result<BufReader<std::fs::File>> {
    let mut file = spool
        .into_inner()
        .map_err(std::io::IntoInnerError::into_error)?;
    file.rewind()?;
    Ok(BufReader::new(file))
}

/// Shows progress on a terminal once a run is long enough for it to help.
struct Progress {
    quiet: bool,
    count: u64,
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    fn new(quiet: bool) -> Self {
        Self {
            quiet: quiet || !std::io::stderr().is_terminal(),
            count: 0,
            bar: None,
        }
    }

    fn inc(&mut self) {
        self.count += 1;
        if let Some(bar) = &self.bar {
            bar.inc(1);
        } else if !self.quiet && self.count == 20 {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_style(
                indicatif::ProgressStyle::with_template("{spinner} {pos} items {elapsed}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            bar.set_position(self.count);
            self.bar = Some(bar);
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
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
    let bucket = &pipeline.config().bucket;
    if object.bucket != *bucket {
        // Input, not infrastructure: the capture is of another bucket (or forged).
        return ReplayResult {
            source,
            key: Some(object.key),
            result: ReplayOutcome::InputError {
                error: format!(
                    "bucket {:?} is not the bucket replayed here ({bucket:?}, --bucket)",
                    object.bucket
                ),
            },
            expectation: None,
        };
    }
    let key = Some(object.key.clone());
    match pipeline.process(&object).await {
        Ok(run) => {
            let expectation = match case {
                Some(case) => {
                    // Settled by an earlier run: judge where it is now.
                    let (destination, reason) = match &run.settlement {
                        Settlement::Skipped { .. } => locate(pipeline.store().as_ref(), case)
                            .await
                            .unwrap_or(("skipped", None)),
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

const HEADER: [&str; 9] = [
    "SOURCE",
    "RESULT",
    "REASON",
    "INSPECT ms",
    "SCAN ms",
    "MEDIA ms",
    "SETTLE ms",
    "TOTAL ms",
    "CHECK",
];

/// Escapes what a terminal would act on (control characters, such as ESC or a carriage
/// return, and the bidirectional overrides that reorder text), as Rust's `escape_debug` does,
/// leaving other text, non-ASCII included, as it is. Everything printed that came from the
/// input goes through this.
#[must_use]
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

/// Escapes the cells, and cuts long event sources and reasons to keep rows on one line; the
/// notes below the table carry them whole.
fn cut_row(row: [String; 9]) -> [String; 9] {
    let limits = [56, 10, 60, 10, 8, 8, 9, 8, 10];
    let mut i = 0;
    row.map(|cell| {
        let limit = limits[i];
        i += 1;
        let cell = escape(&cell);
        if cell.chars().count() <= limit {
            cell
        } else {
            let mut short: String = cell.chars().take(limit - 1).collect();
            short.push('…');
            short
        }
    })
}

fn write_row(out: &mut impl Write, row: &[String; 9], widths: &[usize; 9]) -> std::io::Result<()> {
    let mut line = String::new();
    for (i, cell) in row.iter().enumerate() {
        // Numbers right-aligned, text left-aligned.
        if (3..=7).contains(&i) {
            let _ = write!(line, "{cell:>w$}  ", w = widths[i]);
        } else {
            let _ = write!(line, "{cell:<w$}  ", w = widths[i]);
        }
    }
    writeln!(out, "{}", line.trim_end())
}

fn write_history(out: &mut impl Write, source: &str, run: &PipelineRun) -> std::io::Result<()> {
    writeln!(
        out,
        "== {}: execution {} ==",
        escape(source),
        run.execution_name
    )?;
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
        let summary = escape(&details.map(summarize_details).unwrap_or_default());
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
            s.add(result);
        }
        s
    }

    /// Counts one more result.
    pub fn add(&mut self, result: &ReplayResult) {
        match &result.result {
            ReplayOutcome::Run(run) => {
                self.objects += 1;
                match run.settlement {
                    Settlement::Trusted { .. } => self.trusted += 1,
                    Settlement::Quarantine { .. } => self.quarantined += 1,
                    Settlement::Skipped { .. } => self.skipped += 1,
                    Settlement::Failed { .. } => self.failed += 1,
                }
            }
            ReplayOutcome::Ignored { .. } => self.ignored += 1,
            ReplayOutcome::InputError { .. } => self.bad_input += 1,
            ReplayOutcome::Unavailable { .. } => self.not_run += 1,
        }
        if matches!(result.expectation, Some(Err(_))) {
            self.unexpected += 1;
        }
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
