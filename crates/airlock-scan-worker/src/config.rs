//! The scan worker's configuration: command-line flags, each also read from an `AIRLOCK_*`
//! environment variable (the container's task definition sets those).

use std::path::PathBuf;
use std::time::Duration;

use airlock_core::definitions::{FreshnessRule, MaxAge};

/// Where the scan worker finds everything.
#[derive(Debug, Clone, clap::Args)]
pub struct ScanWorkerArgs {
    /// The scan queue the state machine sends scan tasks to.
    #[arg(long, env = "AIRLOCK_SCAN_QUEUE_URL")]
    pub scan_queue_url: String,
    /// The uploads bucket.
    #[arg(long, env = "AIRLOCK_BUCKET")]
    pub bucket: String,
    /// The intents table.
    #[arg(long, env = "AIRLOCK_TABLE")]
    pub table: String,
    /// The EventBridge bus for `upload.*` events.
    #[arg(long, env = "AIRLOCK_EVENT_BUS")]
    pub event_bus: String,
    /// Upload policies (TOML); the built-in ones when absent.
    #[arg(long, env = "AIRLOCK_POLICIES")]
    pub policies: Option<PathBuf>,
    #[command(flatten)]
    pub definitions: DefinitionsArgs,
    /// Oldest definitions whose verdicts count, in hours, or `off`.
    #[arg(long, env = "AIRLOCK_MAX_DEFINITIONS_AGE_HOURS", default_value = "48")]
    pub max_definitions_age_hours: MaxAge,
    /// Scan tasks run at once.
    #[arg(long, env = "AIRLOCK_CONCURRENCY", default_value_t = 4)]
    pub concurrency: usize,
    /// How long a received message stays invisible to other workers; renewed every half
    /// of it while its task runs.
    #[arg(long, env = "AIRLOCK_VISIBILITY_SECONDS", default_value_t = 120)]
    pub visibility_seconds: u32,
    /// Minutes between definitions refreshes from the mirror.
    #[arg(
        long,
        env = "AIRLOCK_DEFINITIONS_REFRESH_MINUTES",
        default_value_t = 60
    )]
    pub refresh_minutes: u64,
}

/// The mirror and clamd.
#[derive(Debug, Clone, clap::Args)]
pub struct DefinitionsArgs {
    /// clamd's address: `host:port`, `unix:/path` or `/path`.
    #[arg(long, env = "AIRLOCK_CLAMD", default_value = "/run/clamav/clamd.ctl")]
    pub clamd: String,
    /// The private mirror bucket the definitions come from.
    #[arg(long, env = "AIRLOCK_DEFINITIONS_BUCKET")]
    pub definitions_bucket: String,
    /// The folder of the mirror bucket holding the databases (empty: its root).
    #[arg(long, env = "AIRLOCK_DEFINITIONS_PREFIX", default_value = "")]
    pub definitions_prefix: String,
    /// clamd's `DatabaseDirectory`.
    #[arg(long, env = "AIRLOCK_DATABASE_DIR", default_value = "/var/lib/clamav")]
    pub database_dir: PathBuf,
}

impl ScanWorkerArgs {
    /// The freshness rule: dated definitions at most the maximum age, undated refused (a
    /// mirror without a daily database is broken).
    #[must_use]
    pub fn freshness(&self) -> FreshnessRule {
        FreshnessRule {
            max_age: self.max_definitions_age_hours.0,
            undated: airlock_core::definitions::Undated::Refuse,
        }
    }

    #[must_use]
    pub fn visibility(&self) -> Duration {
        Duration::from_secs(u64::from(self.visibility_seconds.max(2)))
    }
}
