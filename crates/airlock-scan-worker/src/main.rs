//! `scan-worker`: answers the pipeline's scan tasks beside clamd (see the library docs).
//!
//! - `scan-worker run`: refresh definitions from the mirror, wait for clamd
//!   and its self-test, then poll the scan queue until SIGTERM, refreshing the definitions
//!   on a schedule.
//! - `scan-worker sync-definitions`: copy the mirror once into clamd's database directory
//!   (the container runs it before it starts clamd, which refuses to start without
//!   databases).

use std::sync::Arc;
use std::time::Duration;

use airlock_aws::{DynamoIntentStore, EventBridgeSink, S3Store, StepFunctionsAnswers};
use airlock_clamd::{ClamdAddress, ClamdConfig, ClamdScanner};
use airlock_core::policy::Policies;
use airlock_core::ports::{SystemClock, TaskAnswers};
use airlock_core::worker::{HEARTBEAT_EVERY, Worker};
use airlock_scan_worker::config::{DefinitionsArgs, ScanWorkerArgs};
use airlock_scan_worker::consumer::ScanQueueConsumer;
use airlock_scan_worker::mirror::{DefinitionsMirror, refresh};
use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tokio::sync::{Semaphore, watch};

#[derive(Debug, Parser)]
#[command(
    name = "scan-worker",
    version,
    about = "airlock's scan worker, beside clamd"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Poll the scan queue until SIGTERM.
    Run(Box<ScanWorkerArgs>),
    /// Copy the definitions mirror into clamd's database directory once.
    SyncDefinitions(DefinitionsArgs),
}

/// How long clamd may take to load the full databases at start (10-40 s is usual).
const CLAMD_START_LIMIT: Duration = Duration::from_mins(5);
/// How long a RELOAD may take to show the new daily version.
const RELOAD_LIMIT: Duration = Duration::from_mins(5);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let config = airlock_aws::load_config().await;
    match cli.command {
        Command::SyncDefinitions(args) => {
            let mirror = mirror(&config, &args);
            let report = mirror.sync().await?;
            tracing::info!(?report, "definitions copied from the mirror");
            Ok(())
        }
        Command::Run(args) => run(&config, &args).await,
    }
}

fn mirror(config: &airlock_aws::SdkConfig, args: &DefinitionsArgs) -> DefinitionsMirror {
    DefinitionsMirror::new(
        aws_sdk_s3::Client::new(config),
        &args.definitions_bucket,
        &args.definitions_prefix,
        &args.database_dir,
    )
}

async fn run(config: &airlock_aws::SdkConfig, args: &ScanWorkerArgs) -> anyhow::Result<()> {
    let address: ClamdAddress = args.definitions.clamd.parse()?;
    let scanner = Arc::new(ClamdScanner::new(ClamdConfig::new(address)));
    let mirror = mirror(config, &args.definitions);
    wait_for_clamd(&scanner).await?;
    let report = refresh(&mirror, &scanner, RELOAD_LIMIT).await?;
    tracing::info!(?report, "definitions refreshed");
    scanner
        .ensure_verified()
        .await
        .context("clamd failed its self-test")?;

    let policies = match &args.policies {
        Some(path) => Policies::load(path)?,
        None => Policies::builtin(),
    };
    let intents = Arc::new(DynamoIntentStore::new(
        aws_sdk_dynamodb::Client::new(config),
        &args.table,
    ));
    let worker = Arc::new(Worker {
        store: Arc::new(S3Store::new(aws_sdk_s3::Client::new(config), &args.bucket)),
        intents: intents.clone(),
        scanner: scanner.clone(),
        events: Arc::new(EventBridgeSink::new(
            aws_sdk_eventbridge::Client::new(config),
            &args.event_bus,
        )),
        dead_letters: intents,
        clock: Arc::new(SystemClock),
        policies: Arc::new(policies),
        media: Arc::new(airlock_scan_worker::consumer::NoMedia),
        media_permits: Arc::new(Semaphore::new(1)),
        bucket: args.bucket.clone(),
        heartbeat_every: HEARTBEAT_EVERY,
        freshness: args.freshness(),
    });
    let answers: Arc<dyn TaskAnswers> =
        Arc::new(StepFunctionsAnswers::new(aws_sdk_sfn::Client::new(config)));
    let mut consumer = ScanQueueConsumer::new(
        aws_sdk_sqs::Client::new(config),
        &args.scan_queue_url,
        worker,
        answers,
    );
    consumer.concurrency = args.concurrency.max(1);
    consumer.visibility = args.visibility();

    let (stop, stopped) = watch::channel(false);
    let refresher = tokio::spawn(refresh_every(
        mirror,
        Arc::clone(&scanner),
        Duration::from_mins(args.refresh_minutes.max(1)),
        stopped.clone(),
    ));
    let polling = tokio::spawn(async move { consumer.run(stopped).await });
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM: no new tasks; finishing those in flight"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted: no new tasks; finishing those in flight"),
    }
    let _ = stop.send(true);
    polling.await?;
    refresher.await?;
    Ok(())
}

/// Waits until clamd answers `PING` (it loads its databases first).
async fn wait_for_clamd(scanner: &ClamdScanner) -> anyhow::Result<()> {
    let started = tokio::time::Instant::now();
    loop {
        match scanner.ping().await {
            Ok(()) => return Ok(()),
            Err(error) if started.elapsed() < CLAMD_START_LIMIT => {
                tracing::info!(%error, "waiting for clamd");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(error) => {
                return Err(error)
                    .context(format!("clamd did not answer within {CLAMD_START_LIMIT:?}"));
            }
        }
    }
}

/// Refreshes the definitions every `every` until stopped. A failed refresh keeps the
/// databases loaded; the freshness rule refuses verdicts once they are too old.
async fn refresh_every(
    mirror: DefinitionsMirror,
    scanner: Arc<ClamdScanner>,
    every: Duration,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = stopped.wait_for(|stop| *stop) => return,
        }
        match refresh(&mirror, &scanner, RELOAD_LIMIT).await {
            Ok(report) => tracing::info!(?report, "definitions refreshed"),
            Err(error) => {
                tracing::error!(error = %airlock_core::stages::error_chain(&error), "definitions refresh failed");
            }
        }
    }
}
