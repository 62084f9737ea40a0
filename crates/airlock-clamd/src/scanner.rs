//! [`ClamdScanner`]: the [`Scanner`] port over clamd's `INSTREAM` command.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use airlock_archive::ScannerLimits;
use airlock_core::definitions::Definitions;
use airlock_core::ports::{ByteStream, ScanError, ScanReport, ScanVerdict, Scanner};
use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::reply::{MAX_REPLY_LEN, ReplyError, is_stream_limit_reply, parse_reply};

/// Where clamd listens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ClamdAddress {
    /// `host:port` (clamd's `TCPSocket`/`TCPAddr`), e.g. `127.0.0.1:3310`.
    Tcp(String),
    /// A Unix socket path (clamd's `LocalSocket`).
    Unix(PathBuf),
}

impl fmt::Display for ClamdAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(host_port) => f.write_str(host_port),
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// A `--clamd` style address that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid clamd address {0:?}: expected host:port, unix:/path or /path")]
pub struct InvalidAddress(pub String);

impl FromStr for ClamdAddress {
    type Err = InvalidAddress;

    /// `unix:/run/clamav/clamd.ctl` or `/run/clamav/clamd.ctl` is a Unix socket;
    /// `tcp://127.0.0.1:3310` or `127.0.0.1:3310` is TCP.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(InvalidAddress(s.to_owned()));
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        if s.starts_with('/') {
            return Ok(Self::Unix(PathBuf::from(s)));
        }
        let host_port = s.strip_prefix("tcp://").unwrap_or(s);
        match host_port.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                Ok(Self::Tcp(host_port.to_owned()))
            }
            _ => Err(InvalidAddress(s.to_owned())),
        }
    }
}

impl From<std::net::SocketAddr> for ClamdAddress {
    fn from(addr: std::net::SocketAddr) -> Self {
        Self::Tcp(addr.to_string())
    }
}

/// How to reach clamd and how long to wait for it.
///
/// Time is bounded at three levels: `connect_timeout` for the connection; `io_timeout` as an
/// idle limit on every single socket read and write (no byte moves for that long: the scan
/// fails with [`ScanError::Timeout`]); `verdict_timeout` for the silence while clamd scans
/// after the whole stream is sent; and `scan_timeout` over everything, including reading the
/// source.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClamdConfig {
    pub address: ClamdAddress,
    /// Bytes per `INSTREAM` chunk; also the only buffer a scan holds. Default 64 KiB.
    pub chunk_size: usize,
    /// Limit on establishing the connection. Default 5 s.
    pub connect_timeout: Duration,
    /// Idle limit on each socket write (the command, every chunk, the terminator) and each
    /// socket read of a reply other than the verdict (`PING`, `VERSION`, an answer that
    /// arrives while the stream is sent). A clamd that stops reading fails the scan after
    /// this long. Default 30 s.
    pub io_timeout: Duration,
    /// Limit on the wait for the verdict once the whole stream is sent. clamd sends
    /// nothing while it scans and ends a long scan itself after its `MaxScanTime` (with
    /// `AlertExceedsMax`, as `Heuristics.Limits.Exceeded.MaxScanTime`), so this should be a
    /// little more than that clamd's `MaxScanTime`; a clamd that takes the stream and never
    /// answers fails after this long. Default 130 s (clamd's default `MaxScanTime` is 120 s).
    pub verdict_timeout: Duration,
    /// Limit on a whole scan, from connecting to the verdict, including reading the
    /// source. Default 10 min.
    pub scan_timeout: Duration,
    /// How long the engine version from `VERSION` is reused. Default 10 min.
    pub version_ttl: Duration,
    /// Whether [`Scanner::scan`] trusts a verdict only from a clamd that passed
    /// [`ClamdScanner::self_test`] (at first use and again after any failure to talk to
    /// it). Default true; turn it off only for test doubles that cannot answer the canaries.
    pub require_self_test: bool,
    /// The limits of that clamd's `clamd.conf` (`MaxFileSize`, `MaxScanSize`, `MaxFiles`,
    /// `MaxRecursion`), for airlock's own archive judge: an archive reaching one is judged
    /// unscannable. Default: clamd's own defaults, which is what an external clamd has
    /// unless told otherwise.
    pub limits: ScannerLimits,
}

impl ClamdConfig {
    pub const DEFAULT_CHUNK_SIZE: usize = 64 * 1024;

    /// The defaults for `address`.
    #[must_use]
    pub fn new(address: ClamdAddress) -> Self {
        Self {
            address,
            chunk_size: Self::DEFAULT_CHUNK_SIZE,
            connect_timeout: Duration::from_secs(5),
            io_timeout: Duration::from_secs(30),
            verdict_timeout: Duration::from_secs(130),
            scan_timeout: Duration::from_mins(10),
            version_ttl: Duration::from_mins(10),
            require_self_test: true,
            limits: ScannerLimits::default(),
        }
    }

    #[must_use]
    pub fn limits(mut self, limits: ScannerLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets the chunk size, clamped to 1 byte ..= 16 MiB.
    #[must_use]
    pub fn chunk_size(mut self, bytes: usize) -> Self {
        self.chunk_size = bytes.clamp(1, 16 * 1024 * 1024);
        self
    }

    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    #[must_use]
    pub fn io_timeout(mut self, timeout: Duration) -> Self {
        self.io_timeout = timeout;
        self
    }

    #[must_use]
    pub fn verdict_timeout(mut self, timeout: Duration) -> Self {
        self.verdict_timeout = timeout;
        self
    }

    #[must_use]
    pub fn scan_timeout(mut self, timeout: Duration) -> Self {
        self.scan_timeout = timeout;
        self
    }

    #[must_use]
    pub fn version_ttl(mut self, ttl: Duration) -> Self {
        self.version_ttl = ttl;
        self
    }

    #[must_use]
    pub fn require_self_test(mut self, required: bool) -> Self {
        self.require_self_test = required;
        self
    }
}

/// Scans streams with clamd's `INSTREAM` command, one connection per scan.
///
/// Cheap to share: wrap it in an `Arc` (it is usable as `Arc<dyn Scanner>`).
///
/// With [`ClamdConfig::require_self_test`] (the default), a verdict is returned only while
/// the clamd is known to pass [`ClamdScanner::self_test`]. The check is lazy and costs one
/// self-test per (re)connection, not per scan: every failure to talk to clamd (refused or
/// reset connection, timeout, a reply that is not understood) bumps a failure counter; the
/// self-test records the counter it started at; a scan runs the self-test first when the
/// counter moved since the last pass, and again before returning its verdict when the
/// counter moved during the scan (clamd may have been restarted with another
/// configuration). Concurrent scans wait for one self-test. A clamd restarted between two
/// scans without any failed connection is not noticed.
#[derive(Debug)]
pub struct ClamdScanner {
    config: ClamdConfig,
    /// The last `VERSION` answer and when it was fetched.
    engine: Mutex<Option<(ClamdVersion, Instant)>>,
    /// Failures to talk to clamd so far.
    failures: AtomicU64,
    /// `failures + 1` as it was when the last passing self-test started; 0 before any.
    verified: AtomicU64,
    /// Serializes self-tests.
    verifying: tokio::sync::Mutex<()>,
}

trait Connection: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Connection for T {}

type Conn = Box<dyn Connection>;

/// How sending a stream ended early.
enum SendError {
    /// The source failed.
    Source(io::Error),
    /// Writing to clamd failed or stalled.
    Socket(ScanError),
}

/// What stopped the sending before the stream was complete.
enum Interruption {
    /// Writing failed or stalled.
    WriteFailed(ScanError),
    /// clamd sent something (or closed, `Ok(0)`) before the end of the stream.
    Replied(io::Result<usize>),
}

impl ClamdScanner {
    #[must_use]
    pub fn new(config: ClamdConfig) -> Self {
        Self {
            config,
            engine: Mutex::new(None),
            failures: AtomicU64::new(0),
            verified: AtomicU64::new(0),
            verifying: tokio::sync::Mutex::new(()),
        }
    }

    #[must_use]
    pub fn config(&self) -> &ClamdConfig {
        &self.config
    }

    /// Whether the clamd passed a self-test since the last failure to talk to it.
    #[must_use]
    pub fn is_verified(&self) -> bool {
        self.verified.load(Ordering::SeqCst) == self.failures.load(Ordering::SeqCst) + 1
    }

    /// Runs [`ClamdScanner::self_test`] unless the clamd passed one since the last failure
    /// to talk to it (or the config does not require it). A failed self-test is
    /// [`ScanError::Protocol`] naming the missing `clamd.conf` setting (retrying does not
    /// help); a failure to reach clamd keeps its own kind.
    pub async fn ensure_verified(&self) -> Result<(), ScanError> {
        if !self.config.require_self_test || self.is_verified() {
            return Ok(());
        }
        let _one_at_a_time = self.verifying.lock().await;
        let failures = self.failures.load(Ordering::SeqCst);
        if self.verified.load(Ordering::SeqCst) == failures + 1 {
            return Ok(());
        }
        match self.self_test().await {
            Ok(report) => {
                tracing::info!(address = %self.config.address, ?report, "clamd passed the self-test");
                self.verified.store(failures + 1, Ordering::SeqCst);
                Ok(())
            }
            Err(error) => {
                tracing::error!(address = %self.config.address, %error, "clamd failed the self-test");
                Err(error.into())
            }
        }
    }

    /// Counts a failure to talk to clamd, so the next verdict waits for a new self-test.
    /// A failing source says nothing about clamd.
    pub(crate) fn failed(&self, error: ScanError) -> ScanError {
        if !matches!(error, ScanError::Source(_)) {
            self.failures.fetch_add(1, Ordering::SeqCst);
        }
        error
    }

    /// `PING`: succeeds when clamd answers `PONG`.
    pub async fn ping(&self) -> Result<(), ScanError> {
        let reply = self.command("zPING\0").await?;
        if reply == b"PONG\0" {
            Ok(())
        } else {
            Err(self.failed(ScanError::Protocol(format!(
                "PING answered {:?}",
                String::from_utf8_lossy(&reply)
            ))))
        }
    }

    /// The engine string put in every report, e.g. `ClamAV 1.4.3/27500` (the definitions
    /// version is present only with a daily database). Cached for `version_ttl`.
    pub async fn engine(&self) -> Result<String, ScanError> {
        Ok(self.version().await?.engine)
    }

    /// The engine and its definitions, from `VERSION`. Cached for `version_ttl`, and
    /// forgotten by [`ClamdScanner::reload`].
    pub async fn version(&self) -> Result<ClamdVersion, ScanError> {
        if let Some((version, at)) = self.cached_version()
            && at.elapsed() < self.config.version_ttl
        {
            return Ok(version);
        }
        self.fetch_version().await
    }

    fn cached_version(&self) -> Option<(ClamdVersion, Instant)> {
        self.engine.lock().expect("engine cache poisoned").clone()
    }

    /// `VERSION`, bypassing and refreshing the cache.
    pub async fn fetch_version(&self) -> Result<ClamdVersion, ScanError> {
        let reply = self.command("zVERSION\0").await?;
        let version = parse_version(&reply).map_err(|e| self.failed(e))?;
        *self.engine.lock().expect("engine cache poisoned") =
            Some((version.clone(), Instant::now()));
        Ok(version)
    }

    /// `RELOAD`: clamd reloads its database directory (in the background: it keeps
    /// scanning with the old databases until the new ones are loaded). The cached
    /// `VERSION` is forgotten, so the next report names what is loaded then.
    pub async fn reload(&self) -> Result<(), ScanError> {
        let reply = self.command("zRELOAD\0").await?;
        *self.engine.lock().expect("engine cache poisoned") = None;
        if reply == b"RELOADING\0" {
            Ok(())
        } else {
            Err(self.failed(ScanError::Protocol(format!(
                "RELOAD answered {:?}",
                describe_reply(&reply)
            ))))
        }
    }

    /// Streams `stream` to clamd and returns its raw reply (with the terminating NUL),
    /// without interpreting it and without the self-test. [`Scanner::scan`] is the
    /// self-test check, this, and [`parse_reply`]. An answer that arrives before the whole
    /// stream is sent is an error, except clamd's `StreamMaxLength` error.
    pub async fn instream_reply(&self, stream: ByteStream) -> Result<Vec<u8>, ScanError> {
        let limit = self.config.scan_timeout;
        tokio::time::timeout(limit, self.instream(stream))
            .await
            .unwrap_or_else(|_| Err(self.failed(ScanError::Timeout(limit))))
    }

    pub(crate) async fn instream(&self, stream: ByteStream) -> Result<Vec<u8>, ScanError> {
        self.try_instream(stream).await.map_err(|e| self.failed(e))
    }

    async fn try_instream(&self, mut stream: ByteStream) -> Result<Vec<u8>, ScanError> {
        let conn = self.connect().await?;
        let (mut reader, mut writer) = tokio::io::split(conn);
        let sent = AtomicU64::new(0);
        let mut first = [0_u8; 256];
        // Watch for an answer while sending: a reply before the end of the stream is about
        // part of it at most. `read` is cancel-safe, so nothing is lost when sending ends
        // first.
        let interruption = tokio::select! {
            biased;
            result = self.send_stream(&mut writer, &mut stream, &sent) => match result {
                Ok(()) => None,
                Err(SendError::Source(e)) => return Err(ScanError::Source(e)),
                Err(SendError::Socket(e)) => Some(Interruption::WriteFailed(e)),
            },
            read = reader.read(&mut first) => Some(Interruption::Replied(read)),
        };
        let sent = sent.load(Ordering::SeqCst);
        let address = &self.config.address;
        match interruption {
            None => {
                // The whole stream is sent; clamd is scanning and says nothing until the
                // verdict.
                let reply =
                    read_reply(&mut reader, Vec::new(), self.config.verdict_timeout).await?;
                if reply.is_empty() {
                    return Err(ScanError::Unavailable(format!(
                        "clamd at {address} closed the connection without a verdict \
                         after the whole stream ({sent} bytes)"
                    )));
                }
                Ok(reply)
            }
            Some(Interruption::Replied(Ok(0))) => Err(ScanError::Unavailable(format!(
                "clamd at {address} closed the connection after {sent} bytes, before the \
                 end of the stream, without a reply"
            ))),
            Some(Interruption::Replied(Ok(n))) => {
                let reply =
                    read_reply(&mut reader, first[..n].to_vec(), self.config.io_timeout).await?;
                self.early_reply(reply, sent)
            }
            Some(Interruption::Replied(Err(e))) => Err(unavailable("reading its reply", &e)),
            // clamd answers and closes as soon as the stream exceeds `StreamMaxLength`; the
            // client then sees a broken pipe or a reset while sending, and the answer may
            // still be waiting in the socket. A stalled write has no answer waiting (the
            // select above would have seen it).
            Some(Interruption::WriteFailed(error @ ScanError::Unavailable(_))) => {
                match read_reply(&mut reader, Vec::new(), self.config.io_timeout).await {
                    Ok(reply) if !reply.is_empty() => self.early_reply(reply, sent),
                    _ => Err(error),
                }
            }
            Some(Interruption::WriteFailed(error)) => Err(error),
        }
    }

    /// A reply that came before the end of the stream: only clamd's `StreamMaxLength` error
    /// (which it sends as soon as the limit is passed) is an answer; anything else, a clean
    /// `OK` above all, does not cover the whole stream.
    fn early_reply(&self, reply: Vec<u8>, sent: u64) -> Result<Vec<u8>, ScanError> {
        if is_stream_limit_reply(&reply) {
            return Ok(reply);
        }
        let text = describe_reply(&reply);
        let address = &self.config.address;
        Err(match parse_reply(&reply) {
            Err(ReplyError::ReadTimedOut | ReplyError::Empty) => ScanError::Unavailable(format!(
                "clamd at {address} answered {text:?} after {sent} bytes, before the end of \
                 the stream"
            )),
            _ => ScanError::Protocol(format!(
                "clamd at {address} answered {text:?} after {sent} bytes, before the end of \
                 the stream: an answer about part of a stream is not a verdict"
            )),
        })
    }

    /// Sends `zINSTREAM`, the stream in chunks, and the zero-length terminator; counts the
    /// payload bytes written in `sent`.
    async fn send_stream<W: AsyncWrite + Unpin>(
        &self,
        writer: &mut W,
        stream: &mut ByteStream,
        sent: &AtomicU64,
    ) -> Result<(), SendError> {
        self.write(writer, b"zINSTREAM\0", "sending INSTREAM")
            .await
            .map_err(SendError::Socket)?;
        // Two buffers (a 4-byte length prefix, then the chunk): the next chunk is read while
        // the current one is sent, so reading the source and clamd's receiving overlap.
        // Memory stays at two chunks whatever the object's size.
        let chunk_size = self.config.chunk_size;
        let mut current = vec![0_u8; 4 + chunk_size];
        let mut next = vec![0_u8; 4 + chunk_size];
        let mut len = fill(stream, &mut current[4..])
            .await
            .map_err(SendError::Source)?;
        loop {
            let prefix = u32::try_from(len).expect("chunk size is at most 16 MiB");
            current[..4].copy_from_slice(&prefix.to_be_bytes());
            if len == 0 {
                // The zero-length chunk ends the stream.
                return self
                    .write(writer, &current[..4], "ending the stream")
                    .await
                    .map_err(SendError::Socket);
            }
            let (written, read) = tokio::join!(
                self.write(writer, &current[..4 + len], "sending a chunk"),
                fill(stream, &mut next[4..]),
            );
            written.map_err(SendError::Socket)?;
            sent.fetch_add(len as u64, Ordering::SeqCst);
            len = read.map_err(SendError::Source)?;
            std::mem::swap(&mut current, &mut next);
        }
    }

    async fn command(&self, command: &str) -> Result<Vec<u8>, ScanError> {
        self.try_command(command).await.map_err(|e| self.failed(e))
    }

    async fn try_command(&self, command: &str) -> Result<Vec<u8>, ScanError> {
        let mut conn = self.connect().await?;
        self.write(&mut conn, command.as_bytes(), "sending a command")
            .await?;
        let reply = read_reply(&mut conn, Vec::new(), self.config.io_timeout).await?;
        if reply.is_empty() {
            return Err(ScanError::Unavailable(format!(
                "clamd at {} closed the connection without a reply",
                self.config.address
            )));
        }
        Ok(reply)
    }

    async fn connect(&self) -> Result<Conn, ScanError> {
        let limit = self.config.connect_timeout;
        let address = &self.config.address;
        let connecting = async {
            match address {
                ClamdAddress::Tcp(host_port) => {
                    let stream = tokio::net::TcpStream::connect(host_port.as_str()).await?;
                    stream.set_nodelay(true)?;
                    Ok::<Conn, io::Error>(Box::new(stream))
                }
                #[cfg(unix)]
                ClamdAddress::Unix(path) => {
                    Ok(Box::new(tokio::net::UnixStream::connect(path).await?) as Conn)
                }
                #[cfg(not(unix))]
                ClamdAddress::Unix(_) => Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "Unix sockets are not supported on this platform",
                )),
            }
        };
        match tokio::time::timeout(limit, connecting).await {
            Err(_) => Err(ScanError::Timeout(limit)),
            Ok(Err(e)) => Err(ScanError::Unavailable(format!(
                "cannot connect to clamd at {address}: {e}"
            ))),
            Ok(Ok(conn)) => Ok(conn),
        }
    }

    /// Writes all of `bytes`; fails when a single write makes no progress for
    /// `io_timeout`.
    async fn write<W: AsyncWrite + Unpin>(
        &self,
        writer: &mut W,
        mut bytes: &[u8],
        doing: &str,
    ) -> Result<(), ScanError> {
        let idle = self.config.io_timeout;
        while !bytes.is_empty() {
            match tokio::time::timeout(idle, writer.write(bytes)).await {
                Err(_) => {
                    tracing::debug!(address = %self.config.address, doing, "clamd stopped reading");
                    return Err(ScanError::Timeout(idle));
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Err(unavailable(doing, &e)),
                Ok(Ok(0)) => {
                    return Err(unavailable(doing, &io::ErrorKind::WriteZero.into()));
                }
                Ok(Ok(n)) => bytes = &bytes[n..],
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Scanner for ClamdScanner {
    async fn scan(&self, stream: ByteStream) -> Result<ScanReport, ScanError> {
        let limit = self.config.scan_timeout;
        let scanning = async {
            self.ensure_verified().await?;
            let failures = self.failures.load(Ordering::SeqCst);
            let ClamdVersion {
                engine,
                definitions,
            } = self.version().await?;
            let reply = self.instream(stream).await?;
            let verdict = verdict_of(&reply).map_err(|e| self.failed(e))?;
            if self.failures.load(Ordering::SeqCst) != failures {
                // Talking to clamd failed somewhere meanwhile: the verdict counts only if
                // clamd passes the self-test again.
                self.ensure_verified().await?;
            }
            Ok(ScanReport {
                verdict,
                engine,
                definitions,
            })
        };
        let result = tokio::time::timeout(limit, scanning)
            .await
            .unwrap_or_else(|_| Err(self.failed(ScanError::Timeout(limit))));
        match &result {
            Ok(report) => {
                tracing::debug!(verdict = ?report.verdict, engine = %report.engine, "clamd scan");
            }
            Err(error) => {
                tracing::warn!(%error, address = %self.config.address, "clamd scan failed");
            }
        }
        result
    }

    fn limits(&self) -> ScannerLimits {
        self.config.limits
    }
}

/// Interprets a raw `INSTREAM` reply as a scan outcome.
fn verdict_of(reply: &[u8]) -> Result<ScanVerdict, ScanError> {
    parse_reply(reply).map_err(|error| match error {
        ReplyError::Empty | ReplyError::ReadTimedOut => ScanError::Unavailable(error.to_string()),
        ReplyError::Server(_) | ReplyError::Unexpected(_) => ScanError::Protocol(error.to_string()),
    })
}

/// A reply as text for messages, without its terminator.
pub(crate) fn describe_reply(reply: &[u8]) -> String {
    let text = String::from_utf8_lossy(reply);
    text.trim_end_matches(['\0', '\n']).to_owned()
}

/// What clamd's `VERSION` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClamdVersion {
    /// Engine and definitions version, e.g. `ClamAV 1.4.3/27500`.
    pub engine: String,
    /// The daily database's version and build time; `None` when clamd loaded no daily
    /// database (only plain signature files, such as the project's test signatures).
    pub definitions: Option<Definitions>,
}

/// `ClamAV 1.4.3/27500/Mon Dec  2 09:35:29 2024` → engine `ClamAV 1.4.3/27500`, definitions
/// 27500 built at that time; `ClamAV 1.4.6` (no daily database) has no definitions.
///
/// clamd prints the build time in its own local time zone (`ctime`): it is read in this
/// process's, which is the same when both run in one container (UTC unless `TZ` says
/// otherwise).
fn parse_version(reply: &[u8]) -> Result<ClamdVersion, ScanError> {
    let text = std::str::from_utf8(reply)
        .ok()
        .and_then(|t| t.strip_suffix('\0'))
        .filter(|t| t.starts_with("ClamAV ") && !t.contains(['\0', '\n']))
        .ok_or_else(|| {
            ScanError::Protocol(format!(
                "VERSION answered {:?}",
                String::from_utf8_lossy(reply)
            ))
        })?;
    let mut parts = text.splitn(3, '/');
    let engine = parts.next().unwrap_or_default().trim();
    let Some(version) = parts.next().map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(ClamdVersion {
            engine: engine.to_owned(),
            definitions: None,
        });
    };
    let malformed = |what: &str| {
        ScanError::Protocol(format!(
            "VERSION answered {text:?}: the definitions {what} is not understood"
        ))
    };
    let number: u32 = version.parse().map_err(|_| malformed("version"))?;
    let built = parts.next().map(str::trim).unwrap_or_default();
    let built_at = chrono::NaiveDateTime::parse_from_str(built, "%a %b %e %H:%M:%S %Y")
        .ok()
        .and_then(|local| local.and_local_timezone(chrono::Local).earliest())
        .ok_or_else(|| malformed("build time"))?;
    Ok(ClamdVersion {
        engine: format!("{engine}/{version}"),
        definitions: Some(Definitions {
            version: number,
            built_at: built_at.with_timezone(&chrono::Utc),
        }),
    })
}

/// Reads until `buf` is full or the source ends; returns how many bytes were read.
async fn fill(stream: &mut ByteStream, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match stream.read(&mut buf[filled..]).await {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Reads one reply after the `initial` bytes already read: up to and including the first
/// NUL, or to the end of the connection (clamd ends a few replies with a newline and
/// closes). Fails when a single read waits longer than `idle`. Stops after
/// `MAX_REPLY_LEN + 1` bytes so a misbehaving peer cannot make it grow.
async fn read_reply<R: AsyncRead + Unpin>(
    reader: &mut R,
    mut reply: Vec<u8>,
    idle: Duration,
) -> Result<Vec<u8>, ScanError> {
    if let Some(end) = reply.iter().position(|&b| b == 0) {
        reply.truncate(end + 1);
        return Ok(reply);
    }
    let mut buf = [0_u8; 1024];
    while reply.len() <= MAX_REPLY_LEN {
        let n = match tokio::time::timeout(idle, reader.read(&mut buf)).await {
            Err(_) => return Err(ScanError::Timeout(idle)),
            Ok(Ok(n)) => n,
            // A reset after part of a reply: keep what arrived.
            Ok(Err(e)) if !reply.is_empty() && e.kind() == io::ErrorKind::ConnectionReset => 0,
            Ok(Err(e)) => return Err(unavailable("reading its reply", &e)),
        };
        if n == 0 {
            break;
        }
        if let Some(end) = buf[..n].iter().position(|&b| b == 0) {
            reply.extend_from_slice(&buf[..=end]);
            break;
        }
        reply.extend_from_slice(&buf[..n]);
    }
    Ok(reply)
}

fn unavailable(doing: &str, error: &io::Error) -> ScanError {
    ScanError::Unavailable(format!("clamd connection failed while {doing}: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse() {
        assert_eq!(
            "127.0.0.1:3310".parse(),
            Ok(ClamdAddress::Tcp("127.0.0.1:3310".to_owned()))
        );
        assert_eq!(
            "tcp://clamd.internal:3310".parse(),
            Ok(ClamdAddress::Tcp("clamd.internal:3310".to_owned()))
        );
        assert_eq!(
            "unix:/run/clamav/clamd.ctl".parse(),
            Ok(ClamdAddress::Unix(PathBuf::from("/run/clamav/clamd.ctl")))
        );
        assert_eq!(
            "/run/clamav/clamd.ctl".parse(),
            Ok(ClamdAddress::Unix(PathBuf::from("/run/clamav/clamd.ctl")))
        );
        assert!("clamd".parse::<ClamdAddress>().is_err());
        assert!("clamd:port".parse::<ClamdAddress>().is_err());
        assert!(":3310".parse::<ClamdAddress>().is_err());
        assert!("unix:".parse::<ClamdAddress>().is_err());
    }

    #[test]
    fn address_display_round_trips() {
        for text in ["127.0.0.1:3310", "unix:/run/clamav/clamd.ctl"] {
            let address: ClamdAddress = text.parse().unwrap();
            assert_eq!(address.to_string(), text);
        }
    }

    #[test]
    fn version_keeps_engine_and_definitions() {
        let version = parse_version(b"ClamAV 1.4.3/27500/Mon Dec  2 09:35:29 2024\0").unwrap();
        assert_eq!(version.engine, "ClamAV 1.4.3/27500");
        let definitions = version.definitions.unwrap();
        assert_eq!(definitions.version, 27_500);
        let local = definitions.built_at.with_timezone(&chrono::Local);
        assert_eq!(
            local.naive_local().to_string(),
            "2024-12-02 09:35:29",
            "the build time is clamd's local time"
        );
        let version = parse_version(b"ClamAV 1.4.6\0").unwrap();
        assert_eq!(version.engine, "ClamAV 1.4.6");
        assert_eq!(version.definitions, None);
        for bad in [
            &b"ClamAV 1.4.3/x/Mon Dec  2 09:35:29 2024\0"[..],
            b"ClamAV 1.4.3/27500/yesterday\0",
            b"ClamAV 1.4.3/27500\0",
        ] {
            assert!(
                parse_version(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(matches!(
            parse_version(b"PONG\0"),
            Err(ScanError::Protocol(_))
        ));
        assert!(matches!(
            parse_version(b"ClamAV 1.4.6"),
            Err(ScanError::Protocol(_))
        ));
    }

    #[test]
    fn reply_errors_map_to_scan_errors() {
        assert!(matches!(verdict_of(b""), Err(ScanError::Unavailable(_))));
        assert!(matches!(
            verdict_of(b"COMMAND READ TIMED OUT\n"),
            Err(ScanError::Unavailable(_))
        ));
        assert!(matches!(
            verdict_of(b"UNKNOWN COMMAND\0"),
            Err(ScanError::Protocol(_))
        ));
        assert!(matches!(
            verdict_of(b"stream: Can't allocate memory ERROR\0"),
            Err(ScanError::Protocol(_))
        ));
    }

    #[test]
    fn chunk_size_is_clamped() {
        let address = ClamdAddress::Tcp("127.0.0.1:1".to_owned());
        assert_eq!(
            ClamdConfig::new(address.clone()).chunk_size(0).chunk_size,
            1
        );
        assert_eq!(
            ClamdConfig::new(address).chunk_size(usize::MAX).chunk_size,
            16 * 1024 * 1024
        );
    }
}
