//! A `moto_server` on 127.0.0.1 for a run, stopped when dropped.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use aws_sdk_s3::config::{Credentials, Region};

/// How long the emulator may take to answer its first request.
const START_LIMIT: Duration = Duration::from_mins(1);

/// `moto_server` with one repair: to start an execution, its Step Functions executor
/// deep-copies the state machine, and with it the whole backend and every earlier
/// execution; once one of those holds a lock the copy fails and every later
/// `StartExecution` answers HTTP 500 (in practice from the third execution on). The copy
/// here shares the backend and the execution list, which the execution only reads.
const REPAIRED_SERVER: &str = "import copy, sys
import moto.server as server
from moto.stepfunctions.models import StateMachine
def _copy(self, memo):
    new = self.__class__.__new__(self.__class__)
    memo[id(self)] = new
    for name, value in self.__dict__.items():
        setattr(new, name, value if name in ('backend', 'executions') else copy.deepcopy(value, memo))
    return new
StateMachine.__deepcopy__ = _copy
server.main(sys.argv[1:])";

/// A running emulator.
#[derive(Debug)]
pub struct MotoServer {
    child: Child,
    pub endpoint: String,
}

impl MotoServer {
    /// Starts `moto_server` (the executable at `program`) on a free port, waits until it
    /// answers, and lets its Step Functions executor run executions (it only records them
    /// by default).
    pub async fn start(program: &Path) -> anyhow::Result<Self> {
        if !program.exists() {
            bail!(
                "{} is missing: run scripts/venv.sh (or scripts/setup.sh) to install the AWS emulator",
                program.display()
            );
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("finding a free port for the emulator")?
            .port();
        // The emulator's own entry point, run by its Python with one repair (below).
        let python = program.with_file_name("python");
        let child = Command::new(&python)
            .args([
                "-c",
                REPAIRED_SERVER,
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {} with {}", program.display(), python.display()))?;
        let mut server = Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        server.wait_until_ready().await?;
        configure_executor(&server.endpoint).await?;
        Ok(server)
    }

    async fn wait_until_ready(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("moto_server exited before answering: {status}");
            }
            if tokio::net::TcpStream::connect(self.endpoint.trim_start_matches("http://"))
                .await
                .is_ok()
            {
                return Ok(());
            }
            if started.elapsed() > START_LIMIT {
                bail!(
                    "moto_server did not answer at {} within {START_LIMIT:?}",
                    self.endpoint
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Turns the emulator's Step Functions executor on (`POST /moto-api/config`).
pub async fn configure_executor(endpoint: &str) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let body = r#"{"stepfunctions":{"execute_state_machine":true}}"#;
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = tokio::net::TcpStream::connect(host)
        .await
        .with_context(|| format!("connecting to the emulator at {endpoint}"))?;
    let request = format!(
        "POST /moto-api/config HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await?;
    if !answer.starts_with("HTTP/1.1 2") && !answer.starts_with("HTTP/1.0 2") {
        bail!(
            "the emulator refused its configuration: {}",
            answer.lines().next().unwrap_or_default()
        );
    }
    Ok(())
}

/// The SDK configuration for an emulator at `endpoint`: its fixed test credentials, one
/// region, the project's HTTP client.
pub async fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(airlock_aws::https_client())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "testing", "testing", None, None, "emulator",
        ))
        .load()
        .await
}
