//! `airlock dead-letters`: the uploads whose promote or quarantine failed after every retry.
//! Each stays in `incoming/` with its intent FAILED; an operator lists them, fixes the cause
//! (a full disk, a permission), and retries them through the pipeline.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use airlock_core::policy::Policies;
use airlock_local::{SqliteIntentStore, StoredDeadLetter};
use anyhow::Context;

use crate::{EmbeddedPipeline, PipelineConfig, Settlement};

/// Where the data dir is.
#[derive(Debug, Clone, clap::Args)]
pub struct DataDirArgs {
    /// The local object store, intents and event log.
    #[arg(long, default_value = ".airlock", env = "AIRLOCK_DATA_DIR")]
    pub data_dir: PathBuf,
}

/// List or retry failed uploads.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum DeadLettersCommand {
    /// Every failed upload: id, stage, object, error.
    List {
        #[command(flatten)]
        data: DataDirArgs,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Runs failed uploads through the pipeline again; each one that settles (trusted,
    /// quarantined, or found already settled) leaves the list.
    Retry(RetryArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct RetryArgs {
    /// Ids from `list`.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub ids: Vec<i64>,
    /// Every failed upload.
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub data: DataDirArgs,
    /// The bucket the data dir holds.
    #[arg(long, default_value = "airlock-uploads", env = "AIRLOCK_BUCKET")]
    pub bucket: String,
    /// Upload policies (TOML); the built-in ones when absent.
    #[arg(long, env = "AIRLOCK_POLICIES")]
    pub policies: Option<PathBuf>,
    /// A running clamd; without it one is started with `--signatures`.
    #[arg(long, env = "AIRLOCK_CLAMD")]
    pub clamd: Option<String>,
    /// Signature folder for the clamd that is started.
    #[arg(long, default_value = "fixtures/clamav")]
    pub signatures: PathBuf,
}

fn open_intents(data: &DataDirArgs) -> anyhow::Result<SqliteIntentStore> {
    let path = data.data_dir.join("intents.sqlite");
    anyhow::ensure!(path.exists(), "no intent database at {}", path.display());
    SqliteIntentStore::open(&path).with_context(|| format!("opening {}", path.display()))
}

/// Runs a `dead-letters` command; returns the exit status (1 when a retry still failed).
pub async fn run(command: DeadLettersCommand) -> anyhow::Result<u8> {
    match command {
        DeadLettersCommand::List { data, json } => {
            let letters = open_intents(&data)?.dead_letters().await?;
            let mut out = std::io::stdout().lock();
            if json {
                let list: Vec<_> = letters
                    .iter()
                    .map(|l| serde_json::json!({"id": l.id, "deadLetter": l.letter}))
                    .collect();
                serde_json::to_writer_pretty(&mut out, &list)?;
                writeln!(out)?;
            } else {
                write_list(&mut out, &letters)?;
            }
            Ok(0)
        }
        DeadLettersCommand::Retry(args) => retry(args).await,
    }
}

fn write_list(out: &mut impl Write, letters: &[StoredDeadLetter]) -> std::io::Result<()> {
    if letters.is_empty() {
        return writeln!(out, "no failed uploads");
    }
    writeln!(
        out,
        "{:>5}  {:<10}  {:<25}  {:<60}  ERROR",
        "ID", "STAGE", "AT", "OBJECT"
    )?;
    for StoredDeadLetter { id, letter } in letters {
        writeln!(
            out,
            "{id:>5}  {:<10}  {:<25}  {:<60}  {}: {}",
            letter.stage.as_str(),
            letter.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            letter.object.key.escape_debug().to_string(),
            letter.error,
            letter.cause.escape_debug()
        )?;
    }
    Ok(())
}

async fn retry(args: RetryArgs) -> anyhow::Result<u8> {
    let letters = open_intents(&args.data)?.dead_letters().await?;
    let chosen: Vec<StoredDeadLetter> = if args.all {
        letters
    } else {
        let mut chosen = Vec::new();
        for id in &args.ids {
            let letter = letters
                .iter()
                .find(|l| l.id == *id)
                .with_context(|| format!("no failed upload with id {id} (see `list`)"))?;
            chosen.push(letter.clone());
        }
        chosen
    };
    if chosen.is_empty() {
        println!("no failed uploads");
        return Ok(0);
    }
    let policies = match &args.policies {
        Some(path) => Policies::load(path)?,
        None => Policies::builtin(),
    };
    let (scanner, mut managed) =
        crate::replay::scanner_for(args.clamd.as_deref(), &args.signatures, None).await?;
    let mut config = PipelineConfig::new(
        &args.data.data_dir,
        &args.bucket,
        scanner,
        Arc::new(airlock_media::ImageProcessor),
    );
    config.policies = Arc::new(policies);
    let pipeline = EmbeddedPipeline::start(config)?;
    let mut still_failed = 0;
    for StoredDeadLetter { id, letter } in chosen {
        let key = letter.object.key.escape_debug().to_string();
        let run = pipeline.process(&letter.object).await?;
        match &run.settlement {
            Settlement::Failed { error, cause } => {
                still_failed += 1;
                println!("{id}: {key}: still failing: {error}: {cause}");
            }
            settled => {
                pipeline.intents().remove_dead_letter(id).await?;
                println!("{id}: {key}: {}", settled.label());
            }
        }
    }
    pipeline.shutdown().await;
    if let Some(clamd) = managed.as_mut() {
        clamd.stop().ok();
    }
    Ok(u8::from(still_failed > 0))
}
