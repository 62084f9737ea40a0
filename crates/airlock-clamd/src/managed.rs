//! [`ManagedClamd`]: a private clamd process for tests and local runs.
//!
//! It writes a `clamd.conf` (explicit limits, and the alerts the self-test checks for) into a
//! fresh temporary directory, starts clamd in the foreground on a free port of 127.0.0.1
//! (and on a Unix socket in that directory), waits until it answers `PING`, and stops it
//! when dropped.
//!
//! clamd is started under a small `sh` watchdog that holds a pipe from this process: when
//! this process goes away for any reason (even `SIGKILL`, or a `static` that is never
//! dropped), the pipe closes and the watchdog stops clamd and removes its temporary
//! directory, so no daemon and no files are left behind.

use std::fmt;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::scanner::{ClamdAddress, ClamdConfig, ClamdScanner};

/// Where Debian's `clamav-daemon` installs clamd.
pub const DEFAULT_CLAMD_PATH: &str = "/usr/sbin/clamd";

/// The project's test signatures (`fixtures/clamav/` in the repository).
pub const FIXTURE_DATABASE_DIR: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/clamav");

const MIB: u64 = 1024 * 1024;

/// How much longer than clamd's `MaxScanTime` the scanner of a managed clamd waits for a
/// verdict.
pub const VERDICT_MARGIN: Duration = Duration::from_secs(10);

/// Runs clamd under a watchdog: `$0` is clamd, `$1` its config, `$2` the temporary directory.
/// fd 3 keeps the pipe from the parent (a background job's stdin is /dev/null in a
/// non-interactive shell). When the pipe yields a line or ends, the watchdog sends TERM, then
/// KILL if clamd lingers. `stop` writes `keep` first; a bare end-of-file means the parent
/// died without stopping clamd, so the shell also removes the temporary directory, which
/// nobody else will.
const WATCHDOG_SCRIPT: &str = r#"exec 3<&0
"$0" -c "$1" </dev/null 3<&- &
clamd=$!
(
  line=
  read -r line <&3
  [ "$line" = keep ] || : >"$2/orphaned"
  kill -TERM "$clamd" 2>/dev/null
  sleep 5 3<&-
  kill -KILL "$clamd" 2>/dev/null
) &
watchdog=$!
exec 3<&-
wait "$clamd"
status=$?
kill "$watchdog" 2>/dev/null
if [ -e "$2/orphaned" ]; then
  case "$2" in */airlock-clamd-*) rm -rf "$2" ;; esac
fi
exit "$status"
"#;

/// Why a managed clamd could not be started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ManagedClamdError {
    #[error(
        "clamd not found at {}: install the Debian package `clamav-daemon` \
         (apt-get install clamav-daemon) or set the clamd path",
        path.display()
    )]
    ClamdNotFound { path: PathBuf },
    #[error("clamd signature directory {}: {message}", path.display())]
    Database { path: PathBuf, message: String },
    #[error("clamd did not start ({reason}); its output:\n{output}")]
    StartFailed { reason: String, output: String },
    #[error("managing clamd failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Settings for a [`ManagedClamd`]. Sizes are in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedClamdBuilder {
    clamd_path: PathBuf,
    database_dir: PathBuf,
    stream_max_length: u64,
    max_file_size: u64,
    max_scan_size: u64,
    max_files: u32,
    max_recursion: u32,
    max_scan_time: Duration,
    startup_timeout: Duration,
    extra_config: Vec<String>,
    omitted: Vec<String>,
}

/// The scan limits a [`ManagedClamd`] was configured with (`clamd.conf` names in brackets).
/// Sizes are in bytes. With `AlertExceedsMax yes` (always set), exceeding any of them is a
/// `Heuristics.Limits.Exceeded.*` verdict, except that an archive member inflating past
/// `max_file_size` is trimmed to it and scanned in part without an alert (clamd 1.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClamdLimits {
    /// Longest `INSTREAM` stream (`StreamMaxLength`).
    pub stream_max_length: u64,
    /// Largest file or archive member scanned (`MaxFileSize`).
    pub max_file_size: u64,
    /// Most data scanned per stream, archive contents included (`MaxScanSize`).
    pub max_scan_size: u64,
    /// Most files scanned inside one container (`MaxFiles`).
    pub max_files: u32,
    /// Deepest archive nesting unpacked (`MaxRecursion`).
    pub max_recursion: u32,
    /// Longest scan (`MaxScanTime`).
    pub max_scan_time: Duration,
}

impl Default for ManagedClamdBuilder {
    fn default() -> Self {
        Self {
            clamd_path: PathBuf::from(DEFAULT_CLAMD_PATH),
            database_dir: PathBuf::from(FIXTURE_DATABASE_DIR),
            stream_max_length: 100 * MIB,
            max_file_size: 100 * MIB,
            max_scan_size: 400 * MIB,
            max_files: 10_000,
            max_recursion: 17,
            max_scan_time: Duration::from_mins(2),
            startup_timeout: Duration::from_secs(30),
            extra_config: Vec::new(),
            omitted: Vec::new(),
        }
    }
}

impl ManagedClamdBuilder {
    /// The clamd binary. Default [`DEFAULT_CLAMD_PATH`].
    #[must_use]
    pub fn clamd_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.clamd_path = path.into();
        self
    }

    /// The signature folder (clamd's `DatabaseDirectory`); clamd only reads it.
    /// Default [`FIXTURE_DATABASE_DIR`].
    #[must_use]
    pub fn database_dir(mut self, path: impl Into<PathBuf>) -> Self {
        self.database_dir = path.into();
        self
    }

    /// `StreamMaxLength`: longer `INSTREAM` streams are refused. Default 100 MiB.
    #[must_use]
    pub fn stream_max_length(mut self, bytes: u64) -> Self {
        self.stream_max_length = bytes;
        self
    }

    /// `MaxFileSize`: larger files (and archive members) are reported as
    /// `Heuristics.Limits.Exceeded.MaxFileSize`. Default 100 MiB; clamd caps it just under
    /// 2 GiB.
    #[must_use]
    pub fn max_file_size(mut self, bytes: u64) -> Self {
        self.max_file_size = bytes;
        self
    }

    /// `MaxScanSize`: the most data scanned per stream, archive contents included.
    /// Default 400 MiB.
    #[must_use]
    pub fn max_scan_size(mut self, bytes: u64) -> Self {
        self.max_scan_size = bytes;
        self
    }

    /// `MaxFiles`: the most files scanned inside one archive or document. Default 10 000
    /// (clamd's own default).
    #[must_use]
    pub fn max_files(mut self, count: u32) -> Self {
        self.max_files = count;
        self
    }

    /// `MaxRecursion`: the deepest archive nesting unpacked. Default 17 (clamd's own
    /// default); must stay at or below [`crate::SELF_TEST_NESTING`] for the self-test to pass.
    #[must_use]
    pub fn max_recursion(mut self, levels: u32) -> Self {
        self.max_recursion = levels;
        self
    }

    /// `MaxScanTime`. Default 120 s (clamd's own default). The scanner from
    /// [`ManagedClamd::scanner_config`] waits a little longer than this for a verdict.
    #[must_use]
    pub fn max_scan_time(mut self, time: Duration) -> Self {
        self.max_scan_time = time;
        self
    }

    /// How long to wait for the first `PONG`. Default 30 s (a large database takes a while
    /// to load; the fixture database loads in well under a second).
    #[must_use]
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// Adds a raw `clamd.conf` line (e.g. `"MaxThreads 4"`), written after the generated ones.
    /// clamd keeps the first value of a repeated option: to change a generated one, leave it
    /// out with [`ManagedClamdBuilder::omit_option`] first.
    #[must_use]
    pub fn config_line(mut self, line: impl Into<String>) -> Self {
        self.extra_config.push(line.into());
        self
    }

    /// Leaves the generated `clamd.conf` line of `option` (e.g. `"AlertEncrypted"`) out, so
    /// clamd uses its default or a [`ManagedClamdBuilder::config_line`]. For tests of how
    /// airlock treats a clamd configured differently; such a clamd may fail the self-test.
    #[must_use]
    pub fn omit_option(mut self, option: impl Into<String>) -> Self {
        self.omitted.push(option.into());
        self
    }

    /// Starts clamd and waits until it answers `PING`. Blocks the calling thread for the
    /// startup (well under a second with the fixture database).
    pub fn start(self) -> Result<ManagedClamd, ManagedClamdError> {
        if !self.clamd_path.is_file() {
            return Err(ManagedClamdError::ClamdNotFound {
                path: self.clamd_path,
            });
        }
        let database_dir = self.checked_database_dir()?;
        // The port is picked by binding to port 0 and releasing it; another process may
        // take it before clamd binds, so a bind failure is retried with a new port.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.spawn_once(&database_dir) {
                Err(ManagedClamdError::StartFailed { output, .. })
                    if attempt < 5 && output.contains("Cannot bind") =>
                {
                    tracing::debug!(attempt, "clamd lost its port to another process; retrying");
                }
                result => return result,
            }
        }
    }

    fn checked_database_dir(&self) -> Result<PathBuf, ManagedClamdError> {
        let path = &self.database_dir;
        let database_error = |message: String| ManagedClamdError::Database {
            path: path.clone(),
            message,
        };
        let dir = fs::canonicalize(path).map_err(|e| database_error(e.to_string()))?;
        let has_files = fs::read_dir(&dir)
            .map_err(|e| database_error(e.to_string()))?
            .filter_map(Result::ok)
            .any(|entry| entry.path().is_file());
        if !has_files {
            return Err(database_error(
                "no signature files (clamd refuses to start without one)".to_owned(),
            ));
        }
        Ok(dir)
    }

    fn spawn_once(&self, database_dir: &Path) -> Result<ManagedClamd, ManagedClamdError> {
        let dir = tempfile::Builder::new()
            .prefix("airlock-clamd-")
            .tempdir()?;
        let scratch = dir.path().join("tmp");
        fs::create_dir(&scratch)?;
        let port = free_port()?;
        let socket = dir.path().join("clamd.sock");
        let config_path = dir.path().join("clamd.conf");
        let log_path = dir.path().join("clamd.log");

        let config = self.config_text(database_dir, port, &socket, dir.path(), &scratch)?;
        fs::write(&config_path, config)?;

        let log = File::create(&log_path)?;
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(WATCHDOG_SCRIPT)
            .arg(&self.clamd_path)
            .arg(&config_path)
            .arg(dir.path())
            .stdin(Stdio::piped())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let stdin = child.stdin.take();
        let mut clamd = ManagedClamd {
            child: Some(child),
            stdin,
            address: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            socket,
            log_path,
            limits: self.limits(),
            dir,
        };
        clamd.wait_ready(self.startup_timeout)?;
        tracing::debug!(address = %clamd.address, "managed clamd is ready");
        Ok(clamd)
    }

    fn limits(&self) -> ClamdLimits {
        ClamdLimits {
            stream_max_length: self.stream_max_length,
            max_file_size: self.max_file_size,
            max_scan_size: self.max_scan_size,
            max_files: self.max_files,
            max_recursion: self.max_recursion,
            max_scan_time: self.max_scan_time,
        }
    }

    fn config_text(
        &self,
        database_dir: &Path,
        port: u16,
        socket: &Path,
        dir: &Path,
        scratch: &Path,
    ) -> Result<String, ManagedClamdError> {
        let path_value = |path: &Path| {
            let text = path.to_str().ok_or_else(|| {
                ManagedClamdError::Io(std::io::Error::other(format!(
                    "path {} is not valid UTF-8",
                    path.display()
                )))
            })?;
            if text.contains('\n') {
                return Err(ManagedClamdError::Io(std::io::Error::other(format!(
                    "path {text:?} contains a newline"
                ))));
            }
            Ok(text.to_owned())
        };
        let mut lines = vec![
            "Foreground yes".to_owned(),
            format!("DatabaseDirectory {}", path_value(database_dir)?),
            format!("TCPSocket {port}"),
            "TCPAddr 127.0.0.1".to_owned(),
            format!("LocalSocket {}", path_value(socket)?),
            format!("PidFile {}", path_value(&dir.join("clamd.pid"))?),
            format!("TemporaryDirectory {}", path_value(scratch)?),
            format!("StreamMaxLength {}", self.stream_max_length),
            format!("MaxFileSize {}", self.max_file_size),
            format!("MaxScanSize {}", self.max_scan_size),
            format!("MaxFiles {}", self.max_files),
            format!("MaxRecursion {}", self.max_recursion),
            format!("MaxScanTime {}", self.max_scan_time.as_millis()),
            // Without it, whatever exceeds a limit above comes back OK, unscanned.
            "AlertExceedsMax yes".to_owned(),
            // Without these, encrypted zip/7z/rar members and PDFs come back OK, unread.
            "AlertEncrypted yes".to_owned(),
            "AlertEncryptedArchive yes".to_owned(),
            "AlertEncryptedDoc yes".to_owned(),
            // Malformed PE/ELF files are a known way to slip past unpackers.
            "AlertBrokenExecutables yes".to_owned(),
            "LogTime yes".to_owned(),
        ];
        lines.retain(|line| {
            let option = line.split_whitespace().next().unwrap_or_default();
            !self.omitted.iter().any(|o| o.eq_ignore_ascii_case(option))
        });
        for line in &self.extra_config {
            if line.contains('\n') {
                return Err(ManagedClamdError::Io(std::io::Error::other(format!(
                    "config line {line:?} contains a newline"
                ))));
            }
            lines.push(line.clone());
        }
        let mut text = lines.join("\n");
        text.push('\n');
        Ok(text)
    }
}

/// A clamd process owned by this value: started by [`ManagedClamdBuilder::start`], stopped
/// by [`ManagedClamd::stop`] or on drop.
pub struct ManagedClamd {
    child: Option<Child>,
    /// Closing it makes the watchdog stop clamd.
    stdin: Option<ChildStdin>,
    address: SocketAddr,
    socket: PathBuf,
    log_path: PathBuf,
    limits: ClamdLimits,
    /// Holds clamd.conf, the log, the Unix socket and clamd's scratch space.
    dir: TempDir,
}

impl fmt::Debug for ManagedClamd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagedClamd")
            .field("pid", &self.child.as_ref().map(Child::id))
            .field("address", &self.address)
            .field("socket", &self.socket)
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

impl ManagedClamd {
    /// The settings, starting from the defaults.
    #[must_use]
    pub fn builder() -> ManagedClamdBuilder {
        ManagedClamdBuilder::default()
    }

    /// Starts clamd with the defaults (the fixture signatures, 100 MiB limits).
    pub fn start() -> Result<Self, ManagedClamdError> {
        Self::builder().start()
    }

    /// The TCP address clamd listens on (127.0.0.1 and a free port).
    #[must_use]
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The Unix socket clamd also listens on.
    #[must_use]
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// The TCP address as a scanner address.
    #[must_use]
    pub fn clamd_address(&self) -> ClamdAddress {
        ClamdAddress::from(self.address)
    }

    /// A scanner config for this clamd with the default timeouts, except the wait for a
    /// verdict, which is its `MaxScanTime` plus [`VERDICT_MARGIN`]: a scan that long ends
    /// with clamd's own `Heuristics.Limits.Exceeded.MaxScanTime` first.
    #[must_use]
    pub fn scanner_config(&self) -> ClamdConfig {
        ClamdConfig::new(self.clamd_address())
            .verdict_timeout(self.limits.max_scan_time + VERDICT_MARGIN)
            .limits(airlock_archive::ScannerLimits {
                max_file_size: self.limits.max_file_size,
                max_scan_size: self.limits.max_scan_size,
                max_files: u64::from(self.limits.max_files),
                max_recursion: self.limits.max_recursion,
            })
    }

    /// A scanner for this clamd with the timeouts of [`ManagedClamd::scanner_config`].
    #[must_use]
    pub fn scanner(&self) -> ClamdScanner {
        ClamdScanner::new(self.scanner_config())
    }

    /// The limits written to its `clamd.conf`.
    #[must_use]
    pub fn limits(&self) -> ClamdLimits {
        self.limits
    }

    /// The generated `clamd.conf`.
    pub fn config_text(&self) -> std::io::Result<String> {
        fs::read_to_string(self.dir.path().join("clamd.conf"))
    }

    /// The process id of the watchdog shell that runs clamd (clamd is its child), while
    /// running.
    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// What clamd wrote to stdout and stderr so far.
    #[must_use]
    pub fn output(&self) -> String {
        read_log(&self.log_path)
    }

    /// Whether clamd is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Stops clamd (TERM, then KILL after a few seconds) and waits for it to exit.
    /// Stopping a stopped clamd does nothing.
    pub fn stop(&mut self) -> Result<(), ManagedClamdError> {
        if let Some(mut stdin) = self.stdin.take() {
            // Fails only if the watchdog is gone already; closing the pipe is what counts.
            let _ = stdin.write_all(b"keep\n");
        }
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                // The watchdog escalates to KILL by itself; this only reaps the shell.
                child.kill()?;
                child.wait()?;
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), ManagedClamdError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                return Err(ManagedClamdError::StartFailed {
                    reason: format!("clamd exited with {status}"),
                    output: self.output(),
                });
            }
            if ping(self.address) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let output = self.output();
                let _ = self.stop();
                return Err(ManagedClamdError::StartFailed {
                    reason: format!("no PONG within {timeout:?}"),
                    output,
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ManagedClamd {
    fn drop(&mut self) {
        if let Err(error) = self.stop() {
            tracing::warn!(%error, "stopping the managed clamd failed");
        }
    }
}

fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// One blocking `zPING`; true on `PONG`.
fn ping(address: SocketAddr) -> bool {
    let attempt = || -> std::io::Result<bool> {
        let timeout = Duration::from_millis(500);
        let mut stream = TcpStream::connect_timeout(&address, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.write_all(b"zPING\0")?;
        let mut reply = Vec::new();
        stream.take(16).read_to_end(&mut reply)?;
        Ok(reply == b"PONG\0")
    };
    attempt().unwrap_or(false)
}

fn read_log(path: &Path) -> String {
    const KEEP: usize = 8 * 1024;
    match fs::read(path) {
        Ok(bytes) => {
            let start = bytes.len().saturating_sub(KEEP);
            String::from_utf8_lossy(&bytes[start..]).into_owned()
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}
