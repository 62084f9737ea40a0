//! The `airlock` command: dispatches to the libraries that do the work.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(name = "airlock", version, about = "Makes user uploads safe to use")]
struct Cli {
    /// How log lines on stderr look: `text` for people, `json` (one object a line, with the
    /// task's stage, key, upload id and execution) for log collectors. The level comes from
    /// `RUST_LOG` (or `AIRLOCK_LOG`), `warn` by default.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "AIRLOCK_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Replay fixture cases or captured events through the pipeline on this machine (or
    /// fixture cases through the AWS deployment on the AWS emulator, `--target emulator`).
    Replay(airlock_embedded::replay::ReplayArgs),
    /// The whole product on this machine: upload API, S3 endpoint, pipeline, clamd, upload
    /// page; `airlock dev token` mints a development token.
    Dev(Box<airlock_dev::DevArgs>),
    /// Uploads whose promote or quarantine failed after every retry: list them, retry them.
    #[command(subcommand)]
    DeadLetters(airlock_embedded::dead_letters::DeadLettersCommand),
    /// Review quarantined uploads: list, show, stats, release, purge, rescan, export.
    #[command(subcommand)]
    Quarantine(airlock_embedded::review_cli::QuarantineCommand),
    /// The audit trail of reviewer actions: list it, verify its hash chain.
    #[command(subcommand)]
    Audit(airlock_embedded::review_cli::AuditCommand),
    /// Quarantine review as web pages on this machine (127.0.0.1): list, item, release,
    /// purge, audit trail.
    Console(Box<airlock_embedded::console::ConsoleArgs>),
    /// The media stage on single images.
    #[command(subcommand)]
    Media(MediaCommand),
    /// Measurements for the benchmark script.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Subcommand)]
enum MediaCommand {
    /// Sanitize one image and make its variants; writes the files and prints the metadata.
    Process(airlock_embedded::media_cli::MediaProcessArgs),
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Inspect and scan one large generated object against a running clamd; prints JSON.
    Scan(airlock_embedded::bench::BenchScanArgs),
    /// Replay many small mixed fixture cases against a running clamd; prints JSON.
    Replay(airlock_embedded::bench::BenchReplayArgs),
    /// `POST /uploads` end to end against an in-process `airlock dev`: requests per second
    /// and latency percentiles; prints JSON.
    Api(airlock_dev::bench::BenchApiArgs),
    /// Quarantine review over many generated records: list and stats times, and the rate of
    /// a trusted rescan next to the scan stage's.
    Quarantine(airlock_embedded::bench_quarantine::BenchQuarantineArgs),
}

/// The log level filter: `AIRLOCK_LOG`, else `RUST_LOG`, else `warn` (which keeps replay's
/// table and summary readable). A filter that does not parse is reported and not used.
fn log_filter() -> EnvFilter {
    const DEFAULT: &str = "warn";
    for variable in ["AIRLOCK_LOG", "RUST_LOG"] {
        let Ok(directives) = std::env::var(variable) else {
            continue;
        };
        match EnvFilter::builder().parse(&directives) {
            Ok(filter) => return filter,
            Err(err) => {
                eprintln!(
                    "warning: ignoring {variable}={directives:?}: {err}; logging at {DEFAULT}"
                );
                break;
            }
        }
    }
    EnvFilter::new(DEFAULT)
}

fn init_logging(format: LogFormat) {
    let logs = tracing_subscriber::fmt()
        .with_env_filter(log_filter())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs.json().init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    // CPU-bound and synchronous: no runtime, so a whole-process timing measures the work.
    if let Command::Media(MediaCommand::Process(args)) = &cli.command {
        return finish(airlock_embedded::media_cli::run(args));
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(airlock_embedded::replay::EXIT_INFRASTRUCTURE);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Replay(args)
                if args.target == airlock_embedded::replay::ReplayTarget::Emulator =>
            {
                airlock_emulator::replay::run(&args).await
            }
            Command::Replay(args) => airlock_embedded::replay::run(args).await,
            Command::Dev(args) => airlock_dev::run(*args).await,
            Command::DeadLetters(command) => airlock_embedded::dead_letters::run(command).await,
            Command::Quarantine(command) => {
                airlock_embedded::review_cli::run_quarantine(command).await
            }
            Command::Audit(command) => airlock_embedded::review_cli::run_audit(command).await,
            Command::Console(args) => airlock_embedded::console::run(*args).await,
            Command::Media(_) => unreachable!("handled before the runtime starts"),
            Command::Bench(BenchCommand::Scan(args)) => {
                airlock_embedded::bench::run_scan(args).await
            }
            Command::Bench(BenchCommand::Replay(args)) => {
                airlock_embedded::bench::run_replay(args).await
            }
            Command::Bench(BenchCommand::Api(args)) => airlock_dev::bench::run_api(args).await,
            Command::Bench(BenchCommand::Quarantine(args)) => {
                airlock_embedded::bench_quarantine::run(args).await
            }
        }
    });
    finish(result)
}

fn finish(result: anyhow::Result<u8>) -> ExitCode {
    match result {
        Ok(status) => ExitCode::from(status),
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(airlock_embedded::replay::EXIT_INFRASTRUCTURE)
        }
    }
}
