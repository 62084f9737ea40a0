//! `airlock dev`: the whole product on one machine. Starts, on 127.0.0.1, the upload API
//! (the same handler the `sign` Lambda runs, verifying tokens itself), an S3-compatible
//! endpoint over the local object store that verifies every signature and announces each
//! new object to the pipeline, the local pipeline and a private clamd, and serves the upload
//! page. `airlock dev token` mints a development token; [`bench`] measures its upload API.

pub mod bench;
pub mod credentials;
pub mod server;
pub mod sweeper;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use airlock_api::identity::Algorithm;
use airlock_api::{Api, ApiConfig, JwtVerifier, SignedHttpMultipart};
use airlock_core::intake::parse_event;
use airlock_core::keys::TenantId;
use airlock_core::policy::Policies;
use airlock_core::ports::{Clock, SystemClock};
use airlock_embedded::console::{AccessArgs, Console, ConsoleConfig, ConsoleScanner};
use airlock_embedded::review_cli::ReviewDataArgs;
use airlock_embedded::{EmbeddedPipeline, PipelineConfig, Settlement};
use airlock_presign::{Addressing, PresignConfig, Presigner};
use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};

use crate::credentials::DevCredentials;

/// The region the local endpoint signs in.
const REGION: &str = "us-east-1";
/// How often overdue intents are expired.
const SWEEP_EVERY: Duration = Duration::from_secs(30);
/// Uploads judged at once.
const PIPELINE_CONCURRENCY: usize = 4;

/// `airlock dev` and its one subcommand.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DevArgs {
    #[command(subcommand)]
    pub command: Option<DevCommand>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum DevCommand {
    /// Mint a development token for a tenant and user (signed with the data dir's key).
    Token(TokenArgs),
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The data dir of the `airlock dev` that will verify the token.
    #[arg(long, default_value = ".airlock-dev")]
    pub data_dir: PathBuf,
    #[arg(long, default_value = "dev")]
    pub tenant: String,
    /// The user (`sub` claim).
    #[arg(long = "sub", default_value = "developer")]
    pub subject: String,
    /// Validity in hours.
    #[arg(long, default_value_t = 12)]
    pub hours: u32,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Holds the object store, intents, event log and the dev credentials.
    #[arg(long, default_value = ".airlock-dev")]
    pub data_dir: PathBuf,
    #[arg(long, default_value = "airlock-dev")]
    pub bucket: String,
    /// Upload policies (TOML); the built-in ones when absent.
    #[arg(long, env = "AIRLOCK_POLICIES")]
    pub policies: Option<PathBuf>,
    /// A running clamd (`host:port` or a socket path); else one is started with
    /// `--signatures`, with limits that fit the largest upload the policies allow.
    #[arg(long, env = "AIRLOCK_CLAMD")]
    pub clamd: Option<String>,
    #[arg(long, default_value = "fixtures/clamav")]
    pub signatures: PathBuf,
    /// The address to listen on: a loopback address (dev credentials are not for networks).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// The API and upload page port (0: any free port).
    #[arg(long, default_value_t = 8700)]
    pub api_port: u16,
    /// The S3 endpoint port (0: any free port).
    #[arg(long, default_value_t = 8701)]
    pub s3_port: u16,
    /// The built upload page (`scripts/build-web.sh` makes `web/dist`).
    #[arg(long, default_value = "web/dist")]
    pub web_dir: PathBuf,
    /// Writes the URLs and token as JSON here once everything is up.
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
    /// Other browser origins that may call the API and upload to the endpoint
    /// (e.g. `http://localhost:5173`).
    #[arg(long = "cors-origin")]
    pub cors_origins: Vec<String>,
    /// The tenant and user of the token printed at start.
    #[arg(long, default_value = "dev")]
    pub tenant: String,
    #[arg(long = "sub", default_value = "developer")]
    pub subject: String,
    /// Verify tokens with this PEM public key (RS256, or ES256 with --jwt-algorithm)
    /// instead of the dev key, e.g. to try tokens from your identity provider.
    #[arg(long)]
    pub jwt_public_key: Option<PathBuf>,
    #[arg(long, default_value = "RS256", value_parser = ["RS256", "ES256"])]
    pub jwt_algorithm: String,
    /// The claim that names the tenant.
    #[arg(long, default_value = airlock_api::identity::DEFAULT_TENANT_CLAIM)]
    pub tenant_claim: String,
    /// Sign-in tokens of the quarantine console at /console/ (lines `ROLE NAME TOKEN`, as
    /// `airlock console --tokens-file`); without any, an admin token is generated and
    /// printed.
    #[arg(long, env = "AIRLOCK_CONSOLE_TOKENS_FILE")]
    pub console_tokens_file: Option<PathBuf>,
    /// Console tokens as in --console-tokens-file, separated by newlines or `;`.
    #[arg(long, env = "AIRLOCK_CONSOLE_TOKENS", hide_env_values = true)]
    pub console_tokens: Option<String>,
}

/// Where everything is, once it runs.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DevInfo {
    pub api: String,
    pub page: String,
    pub s3: String,
    pub bucket: String,
    pub token: String,
    /// The quarantine review console.
    pub console: String,
    /// The console's admin token, generated because none was configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub console_token: Option<String>,
    pub data_dir: PathBuf,
}

/// Mints a token with the data dir's key.
pub fn mint_token(args: &TokenArgs) -> anyhow::Result<String> {
    let credentials = DevCredentials::load(&args.data_dir)?;
    let tenant = TenantId::new(&args.tenant).context("--tenant")?;
    Ok(airlock_api::mint_hs256(
        &credentials.token_secret_bytes()?,
        &tenant,
        &args.subject,
        chrono::Utc::now(),
        chrono::Duration::hours(i64::from(args.hours)),
    )?)
}

fn verifier(args: &ServeArgs, credentials: &DevCredentials) -> anyhow::Result<JwtVerifier> {
    let verifier = match &args.jwt_public_key {
        Some(path) => {
            let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let algorithm = if args.jwt_algorithm == "ES256" {
                Algorithm::ES256
            } else {
                Algorithm::RS256
            };
            JwtVerifier::from_public_pem(algorithm, &pem)
                .with_context(|| format!("{} is not a usable public key", path.display()))?
        }
        None => JwtVerifier::hs256(&credentials.token_secret_bytes()?)?
            .issuer(airlock_api::identity::DEV_ISSUER),
    };
    Ok(verifier.tenant_claim(&args.tenant_claim))
}

async fn bind(host: IpAddr, port: u16, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(SocketAddr::new(host, port))
        .await
        .with_context(|| format!("cannot listen on {host}:{port} for the {what} (pass --{what}-port 0 for any free port)"))
}

/// Runs `airlock dev` until `shutdown` resolves; `on_ready` gets the URLs once all is up.
pub async fn serve(
    args: &ServeArgs,
    on_ready: impl FnOnce(&DevInfo),
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    if !args.host.is_loopback() {
        bail!(
            "--host {} is not a loopback address: airlock dev listens on this machine only",
            args.host
        );
    }
    let policies = match &args.policies {
        Some(path) => Policies::load(path)?,
        None => Policies::builtin(),
    };
    let largest = policies.purposes().map(|(_, p)| p.max_size).max();
    let credentials = DevCredentials::load_or_create(&args.data_dir)?;
    let verifier = verifier(args, &credentials)?;

    let (scanner, managed_clamd) =
        airlock_embedded::replay::scanner_for(args.clamd.as_deref(), &args.signatures, largest)
            .await?;
    let mut config = PipelineConfig::new(
        &args.data_dir,
        &args.bucket,
        Arc::clone(&scanner),
        Arc::new(airlock_media::ImageProcessor),
    );
    let console_policies = policies.clone();
    let policies = Arc::new(policies);
    config.policies = Arc::clone(&policies);
    let pipeline = Arc::new(EmbeddedPipeline::start(config)?);

    let api_listener = bind(args.host, args.api_port, "api").await?;
    let s3_listener = bind(args.host, args.s3_port, "s3").await?;
    let api_origin = format!("http://{}", api_listener.local_addr()?);
    let s3_origin = format!("http://{}", s3_listener.local_addr()?);

    let (endpoint, notifications) =
        start_endpoint(args, &credentials, &pipeline, s3_listener, &api_origin).await?;

    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let api = build_api(
        args,
        &credentials,
        &s3_origin,
        policies,
        &pipeline,
        Arc::clone(&clock),
    )?;
    let web_dir = args
        .web_dir
        .join("index.html")
        .is_file()
        .then(|| args.web_dir.clone());
    if web_dir.is_none() {
        tracing::warn!(dir = %args.web_dir.display(), "no upload page built there (scripts/build-web.sh)");
    }
    let (console, console_token) =
        open_console(args, api_listener.local_addr()?, scanner, console_policies).await?;
    let state = Arc::new(server::AppState {
        api,
        verifier,
        web_dir,
        cors_origins: args.cors_origins.clone(),
        s3_origin: s3_origin.clone(),
        console: Some(Arc::new(console)),
    });
    let server = server::serve(api_listener, state)?;

    let feeder = tokio::spawn(feed(Arc::clone(&pipeline), notifications));
    let sweeper = tokio::spawn(sweep_forever(Arc::clone(&pipeline), Arc::clone(&clock)));

    let tenant = TenantId::new(&args.tenant).context("--tenant")?;
    let token = airlock_api::mint_hs256(
        &credentials.token_secret_bytes()?,
        &tenant,
        &args.subject,
        clock.now(),
        chrono::Duration::hours(12),
    )?;
    let info = DevInfo {
        page: format!("{api_origin}/#token={token}"),
        console: format!("{api_origin}{}/", server::CONSOLE_PREFIX),
        console_token,
        api: api_origin,
        s3: s3_origin,
        bucket: args.bucket.clone(),
        token,
        data_dir: args.data_dir.clone(),
    };
    if let Some(path) = &args.ready_file {
        write_ready_file(path, &info)?;
    }
    on_ready(&info);

    shutdown.await;
    sweeper.abort();
    server.shutdown().await;
    // Closing the endpoint drops the event sender: the feeder finishes what arrived.
    endpoint.shutdown().await;
    let _ = feeder.await;
    if let Ok(pipeline) = Arc::try_unwrap(pipeline) {
        pipeline.shutdown().await;
    }
    drop(managed_clamd);
    Ok(())
}

/// The quarantine console at [`server::CONSOLE_PREFIX`] on the API's address, judging with
/// the pipeline's scanner; and the admin token generated when none is configured.
async fn open_console(
    args: &ServeArgs,
    addr: SocketAddr,
    scanner: Arc<dyn airlock_core::ports::Scanner>,
    policies: Policies,
) -> anyhow::Result<(Console, Option<String>)> {
    let access = AccessArgs {
        tokens_file: args.console_tokens_file.clone(),
        tokens: args.console_tokens.clone(),
        session_hours: 8,
    };
    let (tokens, generated) = access.tokens()?;
    let console = Console::open(ConsoleConfig {
        data: ReviewDataArgs {
            data_dir: args.data_dir.clone(),
            bucket: args.bucket.clone(),
        },
        tokens,
        session_lifetime: access.lifetime(),
        scanner: ConsoleScanner::Running { scanner, policies },
        prefix: server::CONSOLE_PREFIX.to_owned(),
        addr,
    })
    .await
    .context("opening the quarantine console")?;
    Ok((console, generated))
}

/// The S3 endpoint over the pipeline's store; browsers on the API's origin may upload.
async fn start_endpoint(
    args: &ServeArgs,
    credentials: &DevCredentials,
    pipeline: &EmbeddedPipeline,
    listener: TcpListener,
    api_origin: &str,
) -> anyhow::Result<(
    airlock_s3_endpoint::EndpointHandle,
    mpsc::UnboundedReceiver<serde_json::Value>,
)> {
    let (events, notifications) = mpsc::unbounded_channel();
    let mut config = airlock_s3_endpoint::EndpointConfig::new(
        &args.bucket,
        REGION,
        airlock_s3_endpoint::Credentials::new(
            &credentials.access_key_id,
            &credentials.secret_access_key,
        ),
        args.data_dir.join("multipart"),
    );
    config.cors_origins = std::iter::once(api_origin.to_owned())
        .chain(args.cors_origins.iter().cloned())
        .collect();
    let endpoint =
        airlock_s3_endpoint::serve(listener, Arc::clone(pipeline.store()), config, events)
            .await
            .context("starting the S3 endpoint")?;
    Ok((endpoint, notifications))
}

/// Writes the URLs and token where a script waits for them, whole or not at all.
fn write_ready_file(path: &std::path::Path, info: &DevInfo) -> anyhow::Result<()> {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, serde_json::to_vec_pretty(info)?)
        .and_then(|()| std::fs::rename(&temporary, path))
        .with_context(|| format!("writing {}", path.display()))
}

/// The upload API over the pipeline's intent store, signing for the local endpoint.
fn build_api(
    args: &ServeArgs,
    credentials: &DevCredentials,
    s3_origin: &str,
    policies: Arc<Policies>,
    pipeline: &EmbeddedPipeline,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Api> {
    let presigner = Arc::new(Presigner::new(
        PresignConfig::new(s3_origin, REGION, Addressing::Path),
        airlock_presign::Credentials::new(
            &credentials.access_key_id,
            &credentials.secret_access_key,
        ),
    )?);
    let multipart = Arc::new(
        SignedHttpMultipart::new(Arc::clone(&presigner), &args.bucket, Arc::clone(&clock))
            .context("building the HTTP client")?,
    );
    Ok(Api::new(
        ApiConfig::new(&args.bucket),
        policies,
        pipeline.intents().clone(),
        presigner,
        multipart,
        clock,
    )?)
}

/// Runs every object the endpoint announces through the pipeline, a few at a time, and
/// prints how each one ended.
async fn feed(
    pipeline: Arc<EmbeddedPipeline>,
    mut notifications: mpsc::UnboundedReceiver<serde_json::Value>,
) {
    let permits = Arc::new(Semaphore::new(PIPELINE_CONCURRENCY));
    let mut running = tokio::task::JoinSet::new();
    while let Some(notification) = notifications.recv().await {
        for item in parse_event("s3-endpoint", &notification) {
            let Some(object) = item.object().cloned() else {
                if let Some(error) = item.error() {
                    tracing::warn!(source = %item.source, %error, "the endpoint's event was not understood");
                }
                continue;
            };
            let pipeline = Arc::clone(&pipeline);
            let permits = Arc::clone(&permits);
            running.spawn(async move {
                let Ok(_permit) = permits.acquire().await else {
                    return;
                };
                match pipeline.process(&object).await {
                    Ok(run) => println!(
                        "{:<12} {}{}",
                        run.settlement.label(),
                        object.key,
                        describe(&run.settlement)
                    ),
                    Err(err) => eprintln!("pipeline failed for {}: {err:#}", object.key),
                }
            });
        }
        while running.try_join_next().is_some() {}
    }
    while running.join_next().await.is_some() {}
}

fn describe(settlement: &Settlement) -> String {
    match settlement {
        Settlement::Quarantine { reason, .. } => format!("  ({})", reason.code()),
        Settlement::Failed { error, cause } => format!("  ({error}: {cause})"),
        _ => String::new(),
    }
}

async fn sweep_forever(pipeline: Arc<EmbeddedPipeline>, clock: Arc<dyn Clock>) {
    let mut every = tokio::time::interval(SWEEP_EVERY);
    loop {
        every.tick().await;
        match sweeper::sweep(
            pipeline.intents(),
            pipeline.store().as_ref(),
            clock.as_ref(),
        )
        .await
        {
            Ok(swept) if swept.expired > 0 => {
                tracing::info!(
                    expired = swept.expired,
                    "expired intents that got no upload"
                );
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %format!("{err:#}"), "sweeping intents failed"),
        }
    }
}

/// `airlock dev [token]`: returns the exit status.
pub async fn run(args: DevArgs) -> anyhow::Result<u8> {
    if let Some(DevCommand::Token(token_args)) = &args.command {
        println!("{}", mint_token(token_args)?);
        return Ok(0);
    }
    serve(&args.serve, print_ready, stop_signal()).await?;
    Ok(0)
}

fn print_ready(info: &DevInfo) {
    println!("airlock dev is running (Ctrl-C stops it)");
    println!("  upload page  {}", info.page);
    println!("  API          {}  (docs/api.md)", info.api);
    println!("  S3 endpoint  {}  bucket {}", info.s3, info.bucket);
    println!("  token        {}", info.token);
    println!("  console      {}  (quarantine review)", info.console);
    if let Some(token) = &info.console_token {
        println!("  console token {token}  (admin; generated, valid until this stops)");
    }
    println!("  data         {}", info.data_dir.display());
    println!("try:  curl -s {}/config", info.api);
}

/// Ctrl-C or SIGTERM.
async fn stop_signal() {
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot watch SIGTERM; Ctrl-C still stops");
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
