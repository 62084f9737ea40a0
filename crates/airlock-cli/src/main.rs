//! The `airlock` command: dispatches to the libraries that do the work.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "airlock", version, about = "Makes user uploads safe to use")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Replay fixture cases or captured events through the pipeline on this machine.
    Replay(airlock_embedded::replay::ReplayArgs),
    /// Uploads whose promote or quarantine failed after every retry: list them, retry them.
    #[command(subcommand)]
    DeadLetters(airlock_embedded::dead_letters::DeadLettersCommand),
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
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AIRLOCK_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::parse();
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
            Command::Replay(args) => airlock_embedded::replay::run(args).await,
            Command::DeadLetters(command) => airlock_embedded::dead_letters::run(command).await,
            Command::Media(_) => unreachable!("handled before the runtime starts"),
            Command::Bench(BenchCommand::Scan(args)) => {
                airlock_embedded::bench::run_scan(args).await
            }
            Command::Bench(BenchCommand::Replay(args)) => {
                airlock_embedded::bench::run_replay(args).await
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
