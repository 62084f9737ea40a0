//! A private AWS emulator (`moto_server` from the project's `.venv`, made by
//! `scripts/venv.sh`) for each test, and SDK clients pointed at it.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_s3::config::{Credentials, Region};

/// How long the emulator may take to answer its first request.
const START_LIMIT: Duration = Duration::from_mins(1);

/// A running `moto_server` on 127.0.0.1, stopped when dropped.
pub struct Moto {
    child: Child,
    port: u16,
    pub endpoint: String,
    pub config: aws_config::SdkConfig,
}

fn moto_server() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let path = root.join(".venv/bin/moto_server");
    assert!(
        path.exists(),
        "{} is missing: run scripts/venv.sh (or scripts/setup.sh) to install the AWS emulator",
        path.display()
    );
    path
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free local port")
        .port()
}

/// `moto_server`'s own entry point, serving one request at a time.
const SERIAL_SERVER: &str = "import sys, moto.server as m
run = m.run_simple
m.run_simple = lambda *a, **k: run(*a, **{**k, 'threaded': False})
m.main(sys.argv[1:])";

impl Moto {
    /// The raw item of `table` at `pk`, as the table holds it (a consistent read).
    pub async fn raw_item(
        &self,
        table: &str,
        pk: &str,
    ) -> Option<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
        self.dynamodb()
            .get_item()
            .table_name(table)
            .key(
                "pk",
                aws_sdk_dynamodb::types::AttributeValue::S(pk.to_owned()),
            )
            .consistent_read(true)
            .send()
            .await
            .unwrap()
            .item
    }

    /// Starts the emulator on a free port and waits until it answers HTTP.
    pub async fn start() -> Self {
        let port = free_port();
        Self::spawn(Command::new(moto_server()), port).await
    }

    /// Starts the emulator answering one request at a time, so each request is atomic, as
    /// each DynamoDB request is: the threaded server checks a write's condition and writes
    /// without a lock, so two concurrent conditional writes (or transactions) can both
    /// pass there. For tests of concurrent requests; it cannot serve a long poll and other
    /// requests at once.
    pub async fn start_serial() -> Self {
        let port = free_port();
        let python = moto_server().with_file_name("python");
        let mut command = Command::new(python);
        command.args(["-c", SERIAL_SERVER]);
        Self::spawn(command, port).await
    }

    async fn spawn(mut command: Command, port: u16) -> Self {
        let child = command
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let endpoint = format!("http://127.0.0.1:{port}");
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(airlock_aws::https_client())
            .endpoint_url(&endpoint)
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
            .load()
            .await;
        let mut moto = Self {
            child,
            port,
            endpoint,
            config,
        };
        moto.wait_until_ready().await;
        moto
    }

    async fn wait_until_ready(&mut self) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("moto_server status") {
                panic!("moto_server exited before answering: {status}");
            }
            let port = self.port;
            let answered = tokio::task::spawn_blocking(move || {
                request(port, "GET", "/moto-api/data.json", "").is_ok()
            })
            .await
            .unwrap();
            if answered {
                return;
            }
            assert!(
                started.elapsed() < START_LIMIT,
                "moto_server did not answer on port {port} within {START_LIMIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends a request to the emulator's own API (`/moto-api/...`); the response body.
    pub async fn moto_api(&self, method: &'static str, path: &str, body: &str) -> String {
        let (port, target, body) = (self.port, path.to_owned(), body.to_owned());
        tokio::task::spawn_blocking(move || request(port, method, &target, &body))
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("moto API {path}: {e}"))
    }

    /// Lets Step Functions executions run (moto only records them by default).
    pub async fn run_state_machines(&self) {
        self.moto_api(
            "POST",
            "/moto-api/config",
            r#"{"stepfunctions":{"execute_state_machine":true}}"#,
        )
        .await;
    }

    pub fn s3(&self) -> aws_sdk_s3::Client {
        aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&self.config)
                .force_path_style(true)
                .build(),
        )
    }

    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.config)
    }

    pub fn sfn(&self) -> aws_sdk_sfn::Client {
        aws_sdk_sfn::Client::new(&self.config)
    }

    pub fn eventbridge(&self) -> aws_sdk_eventbridge::Client {
        aws_sdk_eventbridge::Client::new(&self.config)
    }

    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&self.config)
    }

    /// Creates a bucket, versioned or not.
    pub async fn bucket(&self, name: &str, versioned: bool) {
        let s3 = self.s3();
        s3.create_bucket().bucket(name).send().await.unwrap();
        if versioned {
            use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
            s3.put_bucket_versioning()
                .bucket(name)
                .versioning_configuration(
                    VersioningConfiguration::builder()
                        .status(BucketVersioningStatus::Enabled)
                        .build(),
                )
                .send()
                .await
                .unwrap();
        }
    }

    /// Creates an SQS queue; its URL and ARN.
    pub async fn queue(&self, name: &str) -> (String, String) {
        use aws_sdk_sqs::types::QueueAttributeName;
        let sqs = self.sqs();
        let url = sqs
            .create_queue()
            .queue_name(name)
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        let arn = sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap()
            .remove(&QueueAttributeName::QueueArn)
            .unwrap();
        (url, arn)
    }

    /// Receives up to `want` messages from the queue in at most `polls` long polls of 1 s;
    /// their bodies, deleted from the queue.
    pub async fn receive(&self, queue_url: &str, want: usize, polls: usize) -> Vec<String> {
        let sqs = self.sqs();
        let mut bodies = Vec::new();
        for _ in 0..polls {
            if bodies.len() >= want {
                break;
            }
            let out = sqs
                .receive_message()
                .queue_url(queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .unwrap();
            for message in out.messages() {
                bodies.push(message.body().unwrap_or_default().to_owned());
                sqs.delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(message.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
        bodies
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.1 request to the emulator; the body of a 2xx answer.
fn request(port: u16, method: &str, path: &str, body: &str) -> Result<String, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| e.to_string())?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(|e| e.to_string())?;
    let status = answer.split(' ').nth(1).unwrap_or_default();
    if !status.starts_with('2') {
        return Err(format!("status {status}: {answer}"));
    }
    Ok(answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default())
}
