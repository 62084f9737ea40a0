//! `ClamdScanner` against local fake servers that misbehave in the ways a real clamd (or
//! something that is not clamd) can: silence, garbage, resets, answers before the end of the
//! stream. None of them may produce a verdict. Also checks the framing the scanner sends,
//! the engine-version cache, and that a fake that cannot answer the self-test canaries is
//! refused. (The fakes cannot pass the self-test, so most tests turn it off.)

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use airlock_clamd::{ClamdAddress, ClamdConfig, ClamdScanner, SelfTestError};
use airlock_core::ports::{ByteStream, Retry, ScanError, ScanVerdict, Scanner};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// What the fake server does after reading a command.
#[derive(Clone, Copy)]
enum Behaviour {
    /// Reads everything, answers nothing, keeps the connection open.
    Silent,
    /// Answers `VERSION`, reads the whole `INSTREAM`, never answers it.
    HangOnInstream,
    /// Answers every command with an HTTP error and closes.
    Garbage,
    /// Answers `VERSION`, then answers `INSTREAM` with garbage.
    GarbageVerdict,
    /// Answers `VERSION`, then resets the `INSTREAM` connection.
    ResetOnInstream,
    /// A well-behaved clamd that finds nothing.
    Ok,
    /// Answers `VERSION`; on `INSTREAM` reads one chunk, answers `stream: OK`, and reads
    /// nothing more, keeping the connection open.
    EarlyOkThenStall,
    /// Answers `VERSION`; on `INSTREAM` reads one chunk, answers `stream: OK`, and closes.
    EarlyOkThenClose,
    /// Answers `VERSION`; on `INSTREAM` reads one chunk and closes without a word.
    CloseMidStream,
    /// Answers `VERSION`; on `INSTREAM` reads one chunk, sends clamd's `StreamMaxLength`
    /// error, and closes (what clamd does past its limit).
    StreamLimitMidStream,
    /// Answers `VERSION`; on `INSTREAM` reads nothing at all, ever.
    NeverReadsInstream,
}

struct Fake {
    address: SocketAddr,
    versions: Arc<AtomicUsize>,
    /// The chunk lengths of each `INSTREAM`, terminator included, and the bytes.
    streams: mpsc::UnboundedReceiver<(Vec<usize>, Vec<u8>)>,
}

async fn fake(behaviour: Behaviour) -> Fake {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let versions = Arc::new(AtomicUsize::new(0));
    let (sender, streams) = mpsc::unbounded_channel();
    let counter = Arc::clone(&versions);
    tokio::spawn(async move {
        loop {
            let (conn, _) = listener.accept().await.unwrap();
            let counter = Arc::clone(&counter);
            let sender = sender.clone();
            tokio::spawn(async move {
                let _ = serve(conn, behaviour, &counter, &sender).await;
            });
        }
    });
    Fake {
        address,
        versions,
        streams,
    }
}

async fn serve(
    mut conn: TcpStream,
    behaviour: Behaviour,
    versions: &AtomicUsize,
    streams: &mpsc::UnboundedSender<(Vec<usize>, Vec<u8>)>,
) -> io::Result<()> {
    let command = read_command(&mut conn).await?;
    match (behaviour, command.as_slice()) {
        (Behaviour::Silent, _) => {
            let mut sink = Vec::new();
            conn.read_to_end(&mut sink).await?;
            std::future::pending::<()>().await;
        }
        (Behaviour::Garbage, _) => {
            conn.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await?;
        }
        (_, b"zVERSION") => {
            versions.fetch_add(1, Ordering::SeqCst);
            conn.write_all(b"ClamAV 9.9.9/12345/Thu Jan  1 00:00:00 2026\0")
                .await?;
        }
        (_, b"zPING") => conn.write_all(b"PONG\0").await?,
        (Behaviour::ResetOnInstream, b"zINSTREAM") => {
            conn.set_zero_linger()?;
            drop(conn);
        }
        (Behaviour::NeverReadsInstream, b"zINSTREAM") => std::future::pending::<()>().await,
        (
            Behaviour::EarlyOkThenStall
            | Behaviour::EarlyOkThenClose
            | Behaviour::CloseMidStream
            | Behaviour::StreamLimitMidStream,
            b"zINSTREAM",
        ) => {
            let len = conn.read_u32().await? as usize;
            let mut chunk = vec![0_u8; len];
            conn.read_exact(&mut chunk).await?;
            match behaviour {
                Behaviour::EarlyOkThenStall => {
                    conn.write_all(b"stream: OK\0").await?;
                    std::future::pending::<()>().await;
                }
                Behaviour::EarlyOkThenClose => conn.write_all(b"stream: OK\0").await?,
                Behaviour::StreamLimitMidStream => {
                    conn.write_all(b"INSTREAM size limit exceeded. ERROR\0")
                        .await?;
                }
                _ => {}
            }
        }
        (_, b"zINSTREAM") => {
            let (lengths, bytes) = read_chunks(&mut conn).await?;
            streams.send((lengths, bytes)).unwrap();
            match behaviour {
                Behaviour::HangOnInstream => std::future::pending::<()>().await,
                Behaviour::GarbageVerdict => conn.write_all(b"\x01\x02 who knows\0").await?,
                _ => conn.write_all(b"stream: OK\0").await?,
            }
        }
        _ => conn.write_all(b"UNKNOWN COMMAND\0").await?,
    }
    Ok(())
}

async fn read_command(conn: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut command = Vec::new();
    loop {
        let byte = conn.read_u8().await?;
        if byte == 0 {
            return Ok(command);
        }
        command.push(byte);
    }
}

async fn read_chunks(conn: &mut TcpStream) -> io::Result<(Vec<usize>, Vec<u8>)> {
    let mut lengths = Vec::new();
    let mut bytes = Vec::new();
    loop {
        let len = conn.read_u32().await? as usize;
        lengths.push(len);
        if len == 0 {
            return Ok((lengths, bytes));
        }
        let start = bytes.len();
        bytes.resize(start + len, 0);
        conn.read_exact(&mut bytes[start..]).await?;
    }
}

const IO_TIMEOUT: Duration = Duration::from_millis(300);
const VERDICT_TIMEOUT: Duration = Duration::from_millis(500);

/// Short idle limits, a long overall limit (so a `Timeout` carrying the idle limit shows
/// which timer fired), and no self-test.
fn config(address: SocketAddr) -> ClamdConfig {
    ClamdConfig::new(ClamdAddress::from(address))
        .connect_timeout(Duration::from_secs(2))
        .io_timeout(IO_TIMEOUT)
        .verdict_timeout(VERDICT_TIMEOUT)
        .scan_timeout(Duration::from_secs(30))
        .require_self_test(false)
}

fn stream(bytes: &[u8]) -> ByteStream {
    Box::new(io::Cursor::new(bytes.to_vec()))
}

/// 1 GiB of a repeating pattern, produced as it is read: far more than the socket buffers
/// hold, so a peer that stops reading stalls the sender.
fn endless() -> ByteStream {
    struct Pattern(u64);
    impl tokio::io::AsyncRead for Pattern {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            let n = usize::try_from(self.0)
                .unwrap_or(usize::MAX)
                .min(buf.remaining());
            buf.put_slice(&vec![b'a'; n]);
            self.0 -= n as u64;
            std::task::Poll::Ready(Ok(()))
        }
    }
    Box::new(Pattern(1 << 30))
}

fn is_early_answer(error: &ScanError) -> bool {
    matches!(error, ScanError::Protocol(message)
        if message.contains("stream: OK") && message.contains("before the end of the stream"))
}

#[tokio::test]
async fn silent_server_times_out() {
    let server = fake(Behaviour::Silent).await;
    let scanner = ClamdScanner::new(config(server.address));

    let error = scanner.ping().await.unwrap_err();
    assert!(
        matches!(error, ScanError::Timeout(d) if d == Duration::from_millis(300)),
        "{error:?}"
    );
    let error = scanner.scan(stream(b"hello")).await.unwrap_err();
    assert!(matches!(error, ScanError::Timeout(_)), "{error:?}");
    assert_eq!(error.retry(), Retry::Transient);
}

#[tokio::test]
async fn early_ok_while_the_rest_is_unread_is_not_a_verdict() {
    let server = fake(Behaviour::EarlyOkThenStall).await;
    let scanner = ClamdScanner::new(config(server.address));
    let error = scanner.scan(endless()).await.unwrap_err();
    assert!(is_early_answer(&error), "{error:?}");
    assert_eq!(error.retry(), Retry::Permanent);
}

#[tokio::test]
async fn early_ok_then_close_is_not_a_verdict() {
    let server = fake(Behaviour::EarlyOkThenClose).await;
    let scanner = ClamdScanner::new(config(server.address));
    for source in [endless(), stream(&vec![1_u8; 16 << 20])] {
        let error = scanner.scan(source).await.unwrap_err();
        assert!(is_early_answer(&error), "{error:?}");
    }
}

#[tokio::test]
async fn stream_limit_error_before_the_end_is_still_limit_exceeded() {
    let server = fake(Behaviour::StreamLimitMidStream).await;
    let scanner = ClamdScanner::new(config(server.address));
    let report = scanner.scan(endless()).await.unwrap();
    assert!(
        matches!(&report.verdict, ScanVerdict::LimitExceeded { detail } if detail.contains("StreamMaxLength")),
        "{report:?}"
    );
}

#[tokio::test]
async fn close_mid_stream_without_reply_is_unavailable() {
    let server = fake(Behaviour::CloseMidStream).await;
    let scanner = ClamdScanner::new(config(server.address));
    let error = scanner.scan(endless()).await.unwrap_err();
    assert!(matches!(error, ScanError::Unavailable(_)), "{error:?}");
    assert_eq!(error.retry(), Retry::Transient);
}

#[tokio::test]
async fn server_that_stops_reading_fails_after_the_idle_limit() {
    let server = fake(Behaviour::NeverReadsInstream).await;
    let scanner = ClamdScanner::new(config(server.address));
    let error = scanner.scan(endless()).await.unwrap_err();
    assert!(
        matches!(error, ScanError::Timeout(d) if d == IO_TIMEOUT),
        "{error:?}"
    );
}

#[tokio::test]
async fn server_that_takes_the_stream_and_never_answers_fails_after_the_verdict_limit() {
    for behaviour in [Behaviour::HangOnInstream, Behaviour::NeverReadsInstream] {
        let server = fake(behaviour).await;
        let scanner = ClamdScanner::new(config(server.address));
        let error = scanner.scan(stream(b"hello")).await.unwrap_err();
        assert!(
            matches!(error, ScanError::Timeout(d) if d == VERDICT_TIMEOUT),
            "{error:?}"
        );
    }
}

#[tokio::test]
async fn scanner_that_finds_nothing_fails_the_self_test() {
    let server = fake(Behaviour::Ok).await;
    let scanner = ClamdScanner::new(config(server.address).require_self_test(true));
    let error = scanner.self_test().await.unwrap_err();
    assert!(
        matches!(error, SelfTestError::EicarNotDetected { .. }),
        "{error:?}"
    );
    let error = scanner.scan(stream(b"hello")).await.unwrap_err();
    assert!(
        matches!(&error, ScanError::Protocol(message) if message.contains("EICAR")),
        "{error:?}"
    );
    assert!(!scanner.is_verified());
}

#[tokio::test]
async fn server_that_never_gives_a_verdict_hits_the_scan_timeout() {
    let server = fake(Behaviour::HangOnInstream).await;
    let limit = Duration::from_millis(700);
    let scanner = ClamdScanner::new(
        config(server.address)
            .verdict_timeout(Duration::from_secs(30))
            .scan_timeout(limit),
    );
    let started = std::time::Instant::now();
    let error = scanner.scan(stream(b"hello")).await.unwrap_err();
    assert!(
        matches!(error, ScanError::Timeout(d) if d == limit),
        "{error:?}"
    );
    assert!(started.elapsed() < limit * 3, "{:?}", started.elapsed());
}

#[tokio::test]
async fn garbage_server_is_a_protocol_error() {
    let server = fake(Behaviour::Garbage).await;
    let scanner = ClamdScanner::new(config(server.address));
    let error = scanner.scan(stream(b"hello")).await.unwrap_err();
    assert!(matches!(error, ScanError::Protocol(_)), "{error:?}");
    assert_eq!(error.retry(), Retry::Permanent);
    let error = scanner.ping().await.unwrap_err();
    assert!(matches!(error, ScanError::Protocol(_)), "{error:?}");
}

#[tokio::test]
async fn garbage_verdict_is_a_protocol_error() {
    let server = fake(Behaviour::GarbageVerdict).await;
    let scanner = ClamdScanner::new(config(server.address));
    let error = scanner.scan(stream(b"hello")).await.unwrap_err();
    assert!(
        matches!(&error, ScanError::Protocol(message) if message.contains("who knows")),
        "{error:?}"
    );
}

#[tokio::test]
async fn reset_connection_is_unavailable() {
    let server = fake(Behaviour::ResetOnInstream).await;
    let scanner = ClamdScanner::new(config(server.address));
    let error = scanner
        .scan(stream(&vec![1_u8; 300_000]))
        .await
        .unwrap_err();
    assert!(matches!(error, ScanError::Unavailable(_)), "{error:?}");
    assert_eq!(error.retry(), Retry::Transient);
}

#[tokio::test]
async fn refused_connection_is_unavailable() {
    let address = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let scanner = ClamdScanner::new(config(address));
    let error = scanner.scan(stream(b"hello")).await.unwrap_err();
    assert!(matches!(error, ScanError::Unavailable(_)), "{error:?}");
}

#[tokio::test]
async fn stream_is_framed_in_chunks_of_the_configured_size() {
    let mut server = fake(Behaviour::Ok).await;
    let scanner = ClamdScanner::new(config(server.address).chunk_size(1000));
    let bytes: Vec<u8> = (0..10_500_u32).map(|i| i.to_le_bytes()[0]).collect();
    let report = scanner.scan(stream(&bytes)).await.unwrap();
    assert_eq!(report.verdict, ScanVerdict::Clean);
    assert_eq!(report.engine, "ClamAV 9.9.9/12345");

    let (lengths, received) = server.streams.recv().await.unwrap();
    assert_eq!(received, bytes);
    let mut expected = vec![1000; 10];
    expected.extend([500, 0]);
    assert_eq!(lengths, expected);
}

#[tokio::test]
async fn empty_stream_is_just_the_terminator() {
    let mut server = fake(Behaviour::Ok).await;
    let scanner = ClamdScanner::new(config(server.address));
    scanner.scan(stream(b"")).await.unwrap();
    let (lengths, received) = server.streams.recv().await.unwrap();
    assert_eq!(lengths, [0]);
    assert!(received.is_empty());
}

#[tokio::test]
async fn engine_version_is_cached_for_its_ttl() {
    let server = fake(Behaviour::Ok).await;
    let cached = ClamdScanner::new(config(server.address));
    for _ in 0..3 {
        cached.scan(stream(b"x")).await.unwrap();
    }
    assert_eq!(server.versions.load(Ordering::SeqCst), 1);

    let uncached = ClamdScanner::new(config(server.address).version_ttl(Duration::ZERO));
    for _ in 0..3 {
        uncached.scan(stream(b"x")).await.unwrap();
    }
    assert_eq!(server.versions.load(Ordering::SeqCst), 4);
}
