//! [`ClamdScanner`]: the [`Scanner`] port over clamd's `INSTREAM` command.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use airlock_core::ports::{ByteStream, ScanError, ScanReport, ScanVerdict, Scanner};
use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::reply::{MAX_REPLY_LEN, ReplyError, parse_reply};

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
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClamdConfig {
    pub address: ClamdAddress,
    /// Bytes per `INSTREAM` chunk; also the only buffer a scan holds. Default 64 KiB.
    pub chunk_size: usize,
    /// Limit on establishing the connection. Default 5 s.
    pub connect_timeout: Duration,
    /// Limit on any single socket operation while talking to clamd: sending one chunk,
    /// or waiting for the answer to `PING`/`VERSION`. Not applied to the wait for the
    /// verdict once the whole stream is sent (that is scanning time). Default 30 s.
    pub io_timeout: Duration,
    /// Limit on a whole scan, from connecting to the verdict, including reading the
    /// source. Default 10 min.
    pub scan_timeout: Duration,
    /// How long the engine version from `VERSION` is reused. Default 10 min.
    pub version_ttl: Duration,
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
            scan_timeout: Duration::from_mins(10),
            version_ttl: Duration::from_mins(10),
        }
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
    pub fn scan_timeout(mut self, timeout: Duration) -> Self {
        self.scan_timeout = timeout;
        self
    }

    #[must_use]
    pub fn version_ttl(mut self, ttl: Duration) -> Self {
        self.version_ttl = ttl;
        self
    }
}

/// Scans streams with clamd's `INSTREAM` command, one connection per scan.
///
/// Cheap to share: wrap it in an `Arc` (it is usable as `Arc<dyn Scanner>`).
#[derive(Debug)]
pub struct ClamdScanner {
    config: ClamdConfig,
    /// The engine string and when it was fetched.
    engine: Mutex<Option<(String, Instant)>>,
}

trait Connection: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Connection for T {}

type Conn = Box<dyn Connection>;

impl ClamdScanner {
    #[must_use]
    pub fn new(config: ClamdConfig) -> Self {
        Self {
            config,
            engine: Mutex::new(None),
        }
    }

    #[must_use]
    pub fn config(&self) -> &ClamdConfig {
        &self.config
    }

    /// `PING`: succeeds when clamd answers `PONG`.
    pub async fn ping(&self) -> Result<(), ScanError> {
        let reply = self.command("zPING\0").await?;
        if reply == b"PONG\0" {
            Ok(())
        } else {
            Err(ScanError::Protocol(format!(
                "PING answered {:?}",
                String::from_utf8_lossy(&reply)
            )))
        }
    }

    /// The engine string put in every report, e.g. `ClamAV 1.4.3/27500` (the definitions
    /// version is present only with official databases). Cached for `version_ttl`.
    pub async fn engine(&self) -> Result<String, ScanError> {
        if let Some((engine, at)) = self.cached_engine()
            && at.elapsed() < self.config.version_ttl
        {
            return Ok(engine);
        }
        let engine = self.fetch_engine().await?;
        *self.engine.lock().expect("engine cache poisoned") =
            Some((engine.clone(), Instant::now()));
        Ok(engine)
    }

    fn cached_engine(&self) -> Option<(String, Instant)> {
        self.engine.lock().expect("engine cache poisoned").clone()
    }

    async fn fetch_engine(&self) -> Result<String, ScanError> {
        let reply = self.command("zVERSION\0").await?;
        parse_version(&reply)
    }

    /// Streams `stream` to clamd and returns its raw reply (with the terminating NUL),
    /// without interpreting it. [`Scanner::scan`] is this plus [`parse_reply`].
    pub async fn instream_reply(&self, stream: ByteStream) -> Result<Vec<u8>, ScanError> {
        let limit = self.config.scan_timeout;
        tokio::time::timeout(limit, self.instream(stream))
            .await
            .unwrap_or(Err(ScanError::Timeout(limit)))
    }

    async fn instream(&self, mut stream: ByteStream) -> Result<Vec<u8>, ScanError> {
        let mut conn = self.connect().await?;
        self.write(&mut conn, b"zINSTREAM\0", "sending INSTREAM")
            .await?;

        // Two buffers (a 4-byte length prefix, then the chunk): the next chunk is read while
        // the current one is sent, so reading the source and clamd's receiving overlap.
        // Memory stays at two chunks whatever the object's size.
        let chunk_size = self.config.chunk_size;
        let mut current = vec![0_u8; 4 + chunk_size];
        let mut next = vec![0_u8; 4 + chunk_size];
        let mut len = fill(&mut stream, &mut current[4..])
            .await
            .map_err(ScanError::Source)?;
        loop {
            let prefix = u32::try_from(len).expect("chunk size is at most 16 MiB");
            current[..4].copy_from_slice(&prefix.to_be_bytes());
            if len == 0 {
                // The zero-length chunk ends the stream.
                if let Err(error) = self
                    .write(&mut conn, &current[..4], "ending the stream")
                    .await
                {
                    return self.reply_after_failed_write(&mut conn, error).await;
                }
                break;
            }
            let (sent, read) = tokio::join!(
                self.write(&mut conn, &current[..4 + len], "sending a chunk"),
                fill(&mut stream, &mut next[4..]),
            );
            if let Err(error) = sent {
                return self.reply_after_failed_write(&mut conn, error).await;
            }
            len = read.map_err(ScanError::Source)?;
            std::mem::swap(&mut current, &mut next);
        }
        // The stream is sent; clamd is scanning. Only the overall limit applies now.
        read_reply(&mut conn)
            .await
            .map_err(|e| unavailable("reading the verdict", &e))
    }

    /// clamd answers and closes as soon as the stream exceeds `StreamMaxLength` (and on
    /// other errors); the client then sees a broken pipe or a reset while sending. The
    /// answer may still be waiting in the socket: read it before calling it a failure.
    async fn reply_after_failed_write(
        &self,
        conn: &mut Conn,
        error: ScanError,
    ) -> Result<Vec<u8>, ScanError> {
        if !matches!(error, ScanError::Unavailable(_)) {
            return Err(error);
        }
        match tokio::time::timeout(self.config.io_timeout, read_reply(conn)).await {
            Ok(Ok(reply)) if !reply.is_empty() => Ok(reply),
            _ => Err(error),
        }
    }

    async fn command(&self, command: &str) -> Result<Vec<u8>, ScanError> {
        let mut conn = self.connect().await?;
        self.write(&mut conn, command.as_bytes(), "sending a command")
            .await?;
        let limit = self.config.io_timeout;
        match tokio::time::timeout(limit, read_reply(&mut conn)).await {
            Err(_) => Err(ScanError::Timeout(limit)),
            Ok(Err(e)) => Err(unavailable("reading a reply", &e)),
            Ok(Ok(reply)) if reply.is_empty() => Err(ScanError::Unavailable(format!(
                "clamd at {} closed the connection without a reply",
                self.config.address
            ))),
            Ok(Ok(reply)) => Ok(reply),
        }
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

    async fn write(&self, conn: &mut Conn, bytes: &[u8], doing: &str) -> Result<(), ScanError> {
        let limit = self.config.io_timeout;
        match tokio::time::timeout(limit, conn.write_all(bytes)).await {
            Err(_) => Err(ScanError::Timeout(limit)),
            Ok(Err(e)) => Err(unavailable(doing, &e)),
            Ok(Ok(())) => Ok(()),
        }
    }
}

#[async_trait]
impl Scanner for ClamdScanner {
    async fn scan(&self, stream: ByteStream) -> Result<ScanReport, ScanError> {
        let limit = self.config.scan_timeout;
        let scanning = async {
            let engine = self.engine().await?;
            let reply = self.instream(stream).await?;
            let verdict = verdict_of(&reply)?;
            Ok(ScanReport { verdict, engine })
        };
        let result = tokio::time::timeout(limit, scanning)
            .await
            .unwrap_or(Err(ScanError::Timeout(limit)));
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
}

/// Interprets a raw `INSTREAM` reply as a scan outcome.
fn verdict_of(reply: &[u8]) -> Result<ScanVerdict, ScanError> {
    parse_reply(reply).map_err(|error| match error {
        ReplyError::Empty | ReplyError::ReadTimedOut => ScanError::Unavailable(error.to_string()),
        ReplyError::Server(_) | ReplyError::Unexpected(_) => ScanError::Protocol(error.to_string()),
    })
}

/// `ClamAV 1.4.3/27500/Mon Dec  2 09:35:29 2024` → `ClamAV 1.4.3/27500`;
/// `ClamAV 1.4.6` (no official databases) stays as it is.
fn parse_version(reply: &[u8]) -> Result<String, ScanError> {
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
    Ok(match parts.next().map(str::trim) {
        Some(definitions) if !definitions.is_empty() => format!("{engine}/{definitions}"),
        _ => engine.to_owned(),
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

/// Reads one reply: up to and including the first NUL, or to the end of the connection
/// (clamd ends a few replies with a newline and closes). Stops after `MAX_REPLY_LEN + 1`
/// bytes so a misbehaving peer cannot make it grow.
async fn read_reply(conn: &mut Conn) -> io::Result<Vec<u8>> {
    let mut reply = Vec::with_capacity(64);
    let mut buf = [0_u8; 1024];
    loop {
        let n = match conn.read(&mut buf).await {
            Ok(n) => n,
            // A reset after part of a reply: keep what arrived.
            Err(e) if !reply.is_empty() && e.kind() == io::ErrorKind::ConnectionReset => 0,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(reply);
        }
        if let Some(end) = buf[..n].iter().position(|&b| b == 0) {
            reply.extend_from_slice(&buf[..=end]);
            return Ok(reply);
        }
        reply.extend_from_slice(&buf[..n]);
        if reply.len() > MAX_REPLY_LEN {
            return Ok(reply);
        }
    }
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
        assert_eq!(
            parse_version(b"ClamAV 1.4.3/27500/Mon Dec  2 09:35:29 2024\0").unwrap(),
            "ClamAV 1.4.3/27500"
        );
        assert_eq!(parse_version(b"ClamAV 1.4.6\0").unwrap(), "ClamAV 1.4.6");
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
