//! `ClamdScanner` against real clamd processes run by `ManagedClamd` with the project's
//! test signatures (`fixtures/clamav/`). These tests fail, not skip, when clamd is missing.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use airlock_clamd::{
    ClamdAddress, ClamdConfig, ClamdLimits, ClamdScanner, ManagedClamd, ManagedClamdError,
    SELF_TEST_NESTING, SelfTestError, canary,
};
use airlock_core::ports::{ByteStream, Retry, ScanError, ScanVerdict, Scanner};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, ReadBuf};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// One clamd with the defaults (100 MiB limits), shared by the tests of this binary. It is
/// never dropped; its watchdog stops it when the test process exits.
fn clamd() -> &'static ManagedClamd {
    static CLAMD: OnceLock<ManagedClamd> = OnceLock::new();
    CLAMD.get_or_init(|| start(ManagedClamd::builder()))
}

/// Small limits: `StreamMaxLength` 1 MiB, `MaxFileSize` 768 KiB, `MaxScanSize` 256 KiB (a
/// file larger than `MaxFileSize` is reported as such; an archive under `MaxFileSize` whose
/// members add up to more than `MaxScanSize` is reported as `MaxScanSize`), `MaxFiles` 16.
fn limited_clamd() -> &'static ManagedClamd {
    static CLAMD: OnceLock<ManagedClamd> = OnceLock::new();
    CLAMD.get_or_init(|| {
        start(
            ManagedClamd::builder()
                .stream_max_length(MIB as u64)
                .max_file_size(768 * KIB as u64)
                .max_scan_size(256 * KIB as u64)
                .max_files(16),
        )
    })
}

fn start(builder: airlock_clamd::ManagedClamdBuilder) -> ManagedClamd {
    builder
        .start()
        .unwrap_or_else(|e| panic!("these tests need a real clamd: {e}"))
}

/// The EICAR test string, assembled at run time so it never sits in the repository in one
/// piece.
fn eicar() -> Vec<u8> {
    canary::eicar()
}

/// The file `Airlock.Test.HashFixture` in `fixtures/clamav/airlock-test.hsb` matches.
fn hash_fixture() -> Vec<u8> {
    b"airlock hash fixture\n".repeat(64)
}

fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut bytes = vec![0_u8; len];
    rng.fill(&mut bytes);
    bytes
}

fn stream(bytes: Vec<u8>) -> ByteStream {
    Box::new(io::Cursor::new(bytes))
}

fn infected(signature: &str) -> ScanVerdict {
    ScanVerdict::Infected {
        signature: signature.to_owned(),
    }
}

/// Produces `len` bytes of a repeating pattern without holding them in memory.
struct Generated {
    left: u64,
}

impl AsyncRead for Generated {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = usize::try_from(self.left)
            .unwrap_or(usize::MAX)
            .min(buf.remaining());
        let start = buf.filled().len();
        buf.initialize_unfilled_to(n);
        for (i, byte) in buf.initialized_mut()[start..start + n]
            .iter_mut()
            .enumerate()
        {
            #[allow(clippy::cast_possible_truncation)]
            let value = (i % 251) as u8;
            *byte = value;
        }
        buf.advance(n);
        self.left -= n as u64;
        Poll::Ready(Ok(()))
    }
}

/// Yields some bytes, then fails.
struct Failing {
    sent: bool,
}

impl AsyncRead for Failing {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.sent {
            return Poll::Ready(Err(io::Error::other("disk on fire")));
        }
        self.sent = true;
        buf.put_slice(&[7_u8; 1000]);
        Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn clean_stream_is_clean() {
    let report = clamd()
        .scanner()
        .scan(stream(b"an ordinary upload\n".repeat(1000)))
        .await
        .unwrap();
    assert_eq!(report.verdict, ScanVerdict::Clean);
}

#[tokio::test]
async fn empty_stream_is_clean() {
    let report = clamd().scanner().scan(stream(Vec::new())).await.unwrap();
    assert_eq!(report.verdict, ScanVerdict::Clean);
}

#[tokio::test]
async fn eicar_is_found_with_its_signature_name() {
    let report = clamd().scanner().scan(stream(eicar())).await.unwrap();
    assert_eq!(report.verdict, infected("Airlock.Test.EICAR.UNOFFICIAL"));
}

#[tokio::test]
async fn eicar_after_a_mebibyte_of_noise_is_found() {
    let mut bytes = noise(MIB, 1);
    bytes.extend(eicar());
    bytes.extend(noise(10 * KIB, 2));
    // Small chunks, so the signature straddles chunk boundaries.
    let scanner = ClamdScanner::new(clamd().scanner_config().chunk_size(4093));
    let report = scanner.scan(stream(bytes)).await.unwrap();
    assert_eq!(report.verdict, infected("Airlock.Test.EICAR.UNOFFICIAL"));
}

#[tokio::test]
async fn hash_signature_is_found() {
    let report = clamd()
        .scanner()
        .scan(stream(hash_fixture()))
        .await
        .unwrap();
    assert_eq!(
        report.verdict,
        infected("Airlock.Test.HashFixture.UNOFFICIAL")
    );
}

#[test]
fn hash_fixture_matches_the_committed_signature() {
    let hsb = std::fs::read_to_string(
        Path::new(airlock_clamd::managed::FIXTURE_DATABASE_DIR).join("airlock-test.hsb"),
    )
    .unwrap();
    let bytes = hash_fixture();
    let line = format!(
        "{}:{}:Airlock.Test.HashFixture",
        hex::encode(Sha256::digest(&bytes)),
        bytes.len()
    );
    assert!(hsb.lines().any(|l| l == line), "{line} not in {hsb}");
}

#[tokio::test]
async fn hash_signature_needs_the_whole_file() {
    let mut bytes = hash_fixture();
    bytes.push(b'\n');
    let report = clamd().scanner().scan(stream(bytes)).await.unwrap();
    assert_eq!(report.verdict, ScanVerdict::Clean);
}

#[tokio::test]
async fn stream_over_stream_max_length_is_limit_exceeded() {
    let report = limited_clamd()
        .scanner()
        .scan(stream(noise(3 * MIB, 3)))
        .await
        .unwrap();
    assert!(
        matches!(&report.verdict, ScanVerdict::LimitExceeded { detail } if detail.contains("StreamMaxLength")),
        "{report:?}"
    );
}

#[tokio::test]
async fn stream_far_over_stream_max_length_still_gets_the_verdict() {
    // clamd answers and closes after 1 MiB; the client hits a broken pipe or a reset
    // while sending the rest and must still read the answer.
    let started = Instant::now();
    let report = limited_clamd()
        .scanner()
        .scan(Box::new(Generated {
            left: 200 * MIB as u64,
        }))
        .await
        .unwrap();
    assert!(
        matches!(&report.verdict, ScanVerdict::LimitExceeded { detail } if detail.contains("StreamMaxLength")),
        "{report:?}"
    );
    assert!(
        started.elapsed().as_secs() < 10,
        "the client stopped sending early"
    );
}

#[tokio::test]
async fn file_over_max_file_size_is_limit_exceeded() {
    let report = limited_clamd()
        .scanner()
        .scan(stream(noise(900 * KIB, 4)))
        .await
        .unwrap();
    assert_eq!(
        report.verdict,
        ScanVerdict::LimitExceeded {
            detail: "Heuristics.Limits.Exceeded.MaxFileSize".to_owned()
        }
    );
}

#[tokio::test]
async fn archive_over_max_scan_size_is_limit_exceeded() {
    let report = limited_clamd()
        .scanner()
        .scan(stream(tar_of_noise(3, 100 * KIB)))
        .await
        .unwrap();
    assert_eq!(
        report.verdict,
        ScanVerdict::LimitExceeded {
            detail: "Heuristics.Limits.Exceeded.MaxScanSize".to_owned()
        }
    );
}

#[tokio::test]
async fn stopped_clamd_is_unavailable_and_transient() {
    let mut clamd = start(ManagedClamd::builder());
    let scanner = clamd.scanner();
    scanner.ping().await.unwrap();
    clamd.stop().unwrap();
    assert!(!clamd.is_running());

    let error = scanner.scan(stream(eicar())).await.unwrap_err();
    assert!(matches!(error, ScanError::Unavailable(_)), "{error:?}");
    assert_eq!(error.retry(), Retry::Transient);
    let error = scanner.ping().await.unwrap_err();
    assert!(matches!(error, ScanError::Unavailable(_)), "{error:?}");
}

#[tokio::test]
async fn dropping_the_managed_clamd_stops_it() {
    let clamd = start(ManagedClamd::builder());
    let address = clamd.address();
    let socket = clamd.socket_path().to_owned();
    drop(clamd);
    assert!(std::net::TcpStream::connect(address).is_err());
    assert!(!socket.exists());
}

#[tokio::test]
async fn source_error_is_source() {
    let error = clamd()
        .scanner()
        .scan(Box::new(Failing { sent: false }))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ScanError::Source(e) if e.to_string() == "disk on fire"),
        "{error:?}"
    );
    // clamd is not left in a bad state by the aborted stream.
    let report = clamd().scanner().scan(stream(eicar())).await.unwrap();
    assert_eq!(report.verdict, infected("Airlock.Test.EICAR.UNOFFICIAL"));
}

#[tokio::test]
async fn engine_is_the_clamav_version() {
    let scanner = clamd().scanner();
    let engine = scanner.engine().await.unwrap();
    assert!(engine.starts_with("ClamAV 1."), "{engine}");
    let report = scanner.scan(stream(b"x".to_vec())).await.unwrap();
    assert_eq!(report.engine, engine);
}

#[tokio::test]
async fn ping_answers() {
    clamd().scanner().ping().await.unwrap();
}

#[tokio::test]
async fn unix_socket_works() {
    let scanner = ClamdScanner::new(ClamdConfig::new(ClamdAddress::Unix(
        clamd().socket_path().to_owned(),
    )));
    scanner.ping().await.unwrap();
    let report = scanner.scan(stream(eicar())).await.unwrap();
    assert_eq!(report.verdict, infected("Airlock.Test.EICAR.UNOFFICIAL"));
}

#[tokio::test]
async fn concurrent_scans_through_a_shared_dyn_scanner() {
    let scanner: Arc<dyn Scanner> = Arc::new(clamd().scanner());
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..8_u64 {
        let scanner = Arc::clone(&scanner);
        tasks.spawn(async move {
            let infected = i % 2 == 0;
            let mut bytes = noise(64 * KIB, i);
            if infected {
                bytes.extend(eicar());
            }
            (infected, scanner.scan(stream(bytes)).await.unwrap().verdict)
        });
    }
    while let Some(result) = tasks.join_next().await {
        let (infected, verdict) = result.unwrap();
        assert_eq!(verdict == ScanVerdict::Clean, !infected, "{verdict:?}");
    }
}

#[tokio::test]
async fn every_clamav_testfile_is_detected() {
    let dir = Path::new("/usr/share/clamav-testfiles");
    assert!(
        dir.is_dir(),
        "{} is missing: install the Debian package `clamav-testfiles` \
         (apt-get install clamav-testfiles)",
        dir.display()
    );
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());

    let scanner = clamd().scanner();
    let mut missed = Vec::new();
    for path in &files {
        let file = tokio::fs::File::open(path).await.unwrap();
        let verdict = scanner.scan(Box::new(file)).await.unwrap().verdict;
        if verdict != infected("Airlock.Test.ClamMessageBoxA.UNOFFICIAL") {
            missed.push(format!("{}: {verdict:?}", path.display()));
        }
    }
    println!(
        "scanned {} files from {}; {} not detected",
        files.len(),
        dir.display(),
        missed.len()
    );
    assert!(missed.is_empty(), "not detected:\n{}", missed.join("\n"));
}

#[tokio::test]
async fn captured_replies_match_live_clamd() {
    let replies = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/replies");
    let cases: Vec<(&str, &ManagedClamd, Vec<u8>)> = vec![
        ("clean.txt", clamd(), b"clean".to_vec()),
        ("eicar.txt", clamd(), eicar()),
        ("hash-fixture.txt", clamd(), hash_fixture()),
        ("max-file-size.txt", limited_clamd(), noise(900 * KIB, 5)),
        (
            "max-scan-size.txt",
            limited_clamd(),
            tar_of_noise(3, 100 * KIB),
        ),
        ("stream-max-length.txt", limited_clamd(), noise(2 * MIB, 6)),
    ];
    for (file, clamd, bytes) in cases {
        let live = clamd.scanner().instream_reply(stream(bytes)).await.unwrap();
        let captured = std::fs::read(replies.join(file)).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&live),
            String::from_utf8_lossy(&captured),
            "{file}"
        );
    }
}

#[test]
fn missing_clamd_names_the_package() {
    let error = ManagedClamd::builder()
        .clamd_path("/nonexistent/sbin/clamd")
        .start()
        .unwrap_err();
    assert!(
        matches!(error, ManagedClamdError::ClamdNotFound { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("clamav-daemon"), "{error}");
}

#[test]
fn database_without_signatures_is_refused() {
    let empty = tempfile::tempdir().unwrap();
    let error = ManagedClamd::builder()
        .database_dir(empty.path())
        .start()
        .unwrap_err();
    assert!(
        matches!(error, ManagedClamdError::Database { .. }),
        "{error:?}"
    );
}

#[test]
fn startup_failure_reports_clamds_output() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("broken.ndb"), "not a signature\n").unwrap();
    let error = ManagedClamd::builder()
        .database_dir(dir.path())
        .start()
        .unwrap_err();
    let text = error.to_string();
    assert!(
        matches!(error, ManagedClamdError::StartFailed { .. }),
        "{error:?}"
    );
    assert!(text.contains("broken.ndb"), "{text}");
}

/// A POSIX tar of `count` members of `size` random bytes each.
fn tar_of_noise(count: usize, size: usize) -> Vec<u8> {
    let mut tar = Vec::new();
    for i in 0..count {
        let mut header = [0_u8; 512];
        let name = format!("member-{i}.bin");
        header[..name.len()].copy_from_slice(name.as_bytes());
        header[100..108].copy_from_slice(b"0000644\0");
        header[108..116].copy_from_slice(b"0000000\0");
        header[116..124].copy_from_slice(b"0000000\0");
        header[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
        header[136..148].copy_from_slice(b"00000000000\0");
        header[156] = b'0';
        header[257..263].copy_from_slice(b"ustar\0");
        header[263..265].copy_from_slice(b"00");
        header[148..156].copy_from_slice(b"        ");
        let checksum: u32 = header.iter().map(|&b| u32::from(b)).sum();
        header[148..156].copy_from_slice(format!("{checksum:06o}\0 ").as_bytes());
        tar.extend_from_slice(&header);
        tar.extend(noise(size, 100 + i as u64));
        tar.resize(tar.len().next_multiple_of(512), 0);
    }
    tar.resize(tar.len() + 1024, 0);
    tar
}

#[tokio::test]
async fn managed_clamd_passes_the_self_test() {
    let scanner = clamd().scanner();
    let report = scanner.self_test().await.unwrap();
    assert_eq!(report.eicar, "Airlock.Test.EICAR.UNOFFICIAL");
    assert_eq!(report.encrypted, "Heuristics.Encrypted.Zip");
    assert_eq!(report.limits, "Heuristics.Limits.Exceeded.MaxRecursion");
    assert!(report.engine.starts_with("ClamAV 1."), "{report:?}");
    println!("self-test took {:?}", report.elapsed);
    // Calling it directly does not mark the scanner verified; a scan does.
    assert!(!scanner.is_verified());
    scanner.scan(stream(b"x".to_vec())).await.unwrap();
    assert!(scanner.is_verified());
}

/// A managed clamd whose config leaves `options` out (clamd's default for each is `no`).
fn clamd_without(options: &[&str]) -> ManagedClamd {
    let builder = options
        .iter()
        .fold(ManagedClamd::builder(), |b, option| b.omit_option(*option));
    let clamd = start(builder);
    let config = clamd.config_text().unwrap();
    for option in options {
        assert!(!config.contains(option), "{config}");
    }
    clamd
}

#[tokio::test]
async fn clamd_without_alert_encrypted_is_refused() {
    let clamd = clamd_without(&[
        "AlertEncrypted",
        "AlertEncryptedArchive",
        "AlertEncryptedDoc",
    ]);
    let scanner = clamd.scanner();
    let error = scanner.self_test().await.unwrap_err();
    assert!(
        matches!(error, SelfTestError::EncryptedNotFlagged { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("`AlertEncrypted yes`"), "{message}");
    assert!(message.contains(&clamd.address().to_string()), "{message}");
    // Scans are refused too, even of what this clamd does detect.
    let error = scanner.scan(stream(eicar())).await.unwrap_err();
    assert!(
        matches!(&error, ScanError::Protocol(m) if m.contains("AlertEncrypted")),
        "{error:?}"
    );
    assert_eq!(error.retry(), Retry::Permanent);
}

#[tokio::test]
async fn clamd_without_alert_exceeds_max_is_refused() {
    let clamd = clamd_without(&["AlertExceedsMax"]);
    let scanner = clamd.scanner();
    let error = scanner.self_test().await.unwrap_err();
    assert!(
        matches!(error, SelfTestError::LimitsNotFlagged { .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("`AlertExceedsMax yes`"),
        "{error}"
    );
    let error = scanner.scan(stream(b"x".to_vec())).await.unwrap_err();
    assert!(
        matches!(&error, ScanError::Protocol(m) if m.contains("AlertExceedsMax")),
        "{error:?}"
    );
}

#[tokio::test]
async fn clamd_with_a_high_max_recursion_is_refused() {
    let nesting = u32::try_from(SELF_TEST_NESTING).unwrap();
    let clamd = start(ManagedClamd::builder().max_recursion(nesting + 1));
    let error = clamd.scanner().self_test().await.unwrap_err();
    assert!(
        error.to_string().contains("`MaxRecursion` at most 64"),
        "{error}"
    );
}

#[tokio::test]
async fn encrypted_zip_with_eicar_is_flagged_as_encrypted() {
    let zip = canary::encrypted_zip("eicar.com", &eicar(), b"infected");
    let report = clamd().scanner().scan(stream(zip)).await.unwrap();
    assert_eq!(report.verdict, infected("Heuristics.Encrypted.Zip"));
}

#[tokio::test]
async fn zips_nested_past_max_recursion_are_limit_exceeded() {
    let limits = clamd().limits();
    let depth = usize::try_from(limits.max_recursion).unwrap();
    let scanner = clamd().scanner();
    let shallow = canary::nested_zip(depth - 2, &noise(64, 7));
    assert_eq!(
        scanner.scan(stream(shallow)).await.unwrap().verdict,
        ScanVerdict::Clean
    );
    let deep = canary::nested_zip(depth, &noise(64, 8));
    assert_eq!(
        scanner.scan(stream(deep)).await.unwrap().verdict,
        ScanVerdict::LimitExceeded {
            detail: "Heuristics.Limits.Exceeded.MaxRecursion".to_owned()
        }
    );
}

#[tokio::test]
async fn zip_with_more_members_than_max_files_is_limit_exceeded() {
    let max_files = usize::try_from(limited_clamd().limits().max_files).unwrap();
    let names: Vec<String> = (0..=max_files).map(|i| format!("member-{i}.txt")).collect();
    let contents: Vec<Vec<u8>> = (0..=max_files)
        .map(|i| noise(100, 200 + i as u64))
        .collect();
    let members: Vec<(&str, &[u8])> = names
        .iter()
        .zip(&contents)
        .map(|(name, content)| (name.as_str(), content.as_slice()))
        .collect();
    let scanner = limited_clamd().scanner();
    let few = canary::stored_zip(&members[..max_files / 2]);
    assert_eq!(
        scanner.scan(stream(few)).await.unwrap().verdict,
        ScanVerdict::Clean
    );
    let many = canary::stored_zip(&members);
    assert_eq!(
        scanner.scan(stream(many)).await.unwrap().verdict,
        ScanVerdict::LimitExceeded {
            detail: "Heuristics.Limits.Exceeded.MaxFiles".to_owned()
        }
    );
}

#[test]
fn managed_clamd_reports_and_writes_its_limits() {
    let clamd = limited_clamd();
    let limits = clamd.limits();
    assert_eq!(
        limits,
        ClamdLimits {
            stream_max_length: MIB as u64,
            max_file_size: 768 * KIB as u64,
            max_scan_size: 256 * KIB as u64,
            max_files: 16,
            max_recursion: 17,
            max_scan_time: Duration::from_mins(2),
        }
    );
    let config = clamd.config_text().unwrap();
    for line in [
        "StreamMaxLength 1048576",
        "MaxFileSize 786432",
        "MaxScanSize 262144",
        "MaxFiles 16",
        "MaxRecursion 17",
        "MaxScanTime 120000",
        "AlertExceedsMax yes",
        "AlertEncrypted yes",
        "AlertEncryptedArchive yes",
        "AlertEncryptedDoc yes",
    ] {
        assert!(
            config.lines().any(|l| l == line),
            "{line} missing:\n{config}"
        );
    }
    assert_eq!(
        clamd.scanner_config().verdict_timeout,
        Duration::from_mins(2) + airlock_clamd::managed::VERDICT_MARGIN
    );
}

/// Forwards connections to a clamd that can be switched, counts them, and can drop the
/// next one at once (a failed connection, as when clamd restarts).
struct Proxy {
    address: std::net::SocketAddr,
    state: Arc<std::sync::Mutex<ProxyState>>,
}

struct ProxyState {
    target: std::net::SocketAddr,
    drop_next: bool,
    connections: usize,
}

impl Proxy {
    async fn start(target: std::net::SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let state = Arc::new(std::sync::Mutex::new(ProxyState {
            target,
            drop_next: false,
            connections: 0,
        }));
        let shared = Arc::clone(&state);
        tokio::spawn(async move {
            loop {
                let (mut client, _) = listener.accept().await.unwrap();
                let target = {
                    let mut state = shared.lock().unwrap();
                    state.connections += 1;
                    if std::mem::take(&mut state.drop_next) {
                        continue;
                    }
                    state.target
                };
                tokio::spawn(async move {
                    let mut server = tokio::net::TcpStream::connect(target).await.unwrap();
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
            }
        });
        Self { address, state }
    }

    fn connections(&self) -> usize {
        self.state.lock().unwrap().connections
    }
}

#[tokio::test]
async fn self_test_runs_once_then_again_after_a_failed_connection() {
    let misconfigured = clamd_without(&["AlertExceedsMax"]);
    let proxy = Proxy::start(clamd().address()).await;
    let scanner = ClamdScanner::new(ClamdConfig::new(ClamdAddress::from(proxy.address)));

    // First use: VERSION and three canaries, then the scan.
    let report = scanner.scan(stream(eicar())).await.unwrap();
    assert_eq!(report.verdict, infected("Airlock.Test.EICAR.UNOFFICIAL"));
    assert_eq!(proxy.connections(), 5);
    // Verified: one connection per scan.
    scanner.scan(stream(b"x".to_vec())).await.unwrap();
    assert_eq!(proxy.connections(), 6);

    // clamd "restarts" with another configuration: the connection in between fails.
    {
        let mut state = proxy.state.lock().unwrap();
        state.target = misconfigured.address();
        state.drop_next = true;
    }
    let error = scanner.scan(stream(b"x".to_vec())).await.unwrap_err();
    assert!(matches!(error, ScanError::Unavailable(_)), "{error:?}");
    assert!(!scanner.is_verified());
    let error = scanner.scan(stream(eicar())).await.unwrap_err();
    assert!(
        matches!(&error, ScanError::Protocol(m) if m.contains("AlertExceedsMax")),
        "{error:?}"
    );

    // Back to a well-configured clamd: the next scan passes the self-test again.
    proxy.state.lock().unwrap().target = clamd().address();
    let report = scanner.scan(stream(eicar())).await.unwrap();
    assert_eq!(report.verdict, infected("Airlock.Test.EICAR.UNOFFICIAL"));
    assert!(scanner.is_verified());
}
