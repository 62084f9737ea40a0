//! A really full disk (a 2 MiB tmpfs, mounted by the test: CI runs as root): the promotion
//! fails with a clear error, nothing is half written or lost, and once space is freed a
//! rerun settles the upload.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use airlock_clamd::ManagedClamd;
use airlock_core::ports::IntentStore;
use airlock_embedded::{EmbeddedPipeline, PipelineConfig, Settlement};
use airlock_tests::repo_root;

/// A small tmpfs, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Self {
        std::fs::create_dir_all(at).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .expect("mount runs");
        assert!(
            status.success(),
            "mounting a tmpfs needs root (CI and scripts/test.sh run as root)"
        );
        Self(at.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Every file below `dir` with its size.
fn files(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push((path.clone(), entry.metadata().unwrap().len()));
        }
    }
    out
}

/// Fills the disk `dir` is on with 64 KiB files, then frees `spare` of them; returns `dir`.
fn fill(dir: &Path, spare: usize) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let mut chunks = 0;
    while std::fs::write(dir.join(chunks.to_string()), vec![7u8; 64 * 1024]).is_ok() {
        chunks += 1;
    }
    let _ = std::fs::remove_file(dir.join(chunks.to_string()));
    for i in 0..spare.min(chunks) {
        std::fs::remove_file(dir.join((chunks - 1 - i).to_string())).unwrap();
    }
    dir.to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_loses_nothing_and_a_rerun_settles_once_space_is_freed() {
    let scratch = tempfile::tempdir().unwrap();
    let disk = Tmpfs::mount(&scratch.path().join("disk"), "2m");
    let data_dir = disk.0.join("data");
    let clamd = ManagedClamd::builder()
        .database_dir(repo_root().join("fixtures/clamav"))
        .start()
        .expect("clamd starts (install clamav-daemon: scripts/setup.sh)");
    let start = || {
        let mut config = PipelineConfig::new(
            &data_dir,
            "airlock-uploads",
            Arc::new(clamd.scanner()),
            Arc::new(airlock_media::ImageProcessor),
        );
        config.delay_scale = 0.001;
        EmbeddedPipeline::start(config).unwrap()
    };
    let pipeline = start();

    // GIVEN a 600 KB upload in incoming/ ...
    let text: Vec<u8> = b"a line of a long report\n"
        .iter()
        .copied()
        .cycle()
        .take(600 * 1024)
        .collect();
    let (object, case) = airlock_tests::upload(
        &pipeline,
        scratch.path(),
        "report.txt",
        ("acme", "document", "text/plain"),
        &text,
    )
    .await;
    // ... AND a disk with room for small writes but not for its copy
    let filler = fill(&disk.0.join("filler"), 4);
    // WHEN the pipeline runs
    let run = pipeline.process(&object).await.unwrap();
    // THEN it fails with an error that says the disk is full ...
    match &run.settlement {
        Settlement::Failed { error, cause } => {
            assert!(error.contains("PromoteFailed"), "{error}: {cause}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    let history = run.history.to_string();
    assert!(
        history.contains("No space left on device"),
        "the cause is not named: {history}"
    );
    // ... AND the intent is FAILED with a dead letter for an operator
    let letters = pipeline.intents().dead_letters().await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].letter.object.key, object.key);
    let intent_id = case.file.intent.as_ref().unwrap().id;
    let intent = pipeline.intents().get(intent_id).await.unwrap().unwrap();
    assert_eq!(intent.state, airlock_core::intent::IntentState::Failed);
    // ... AND nothing is lost or half written: the object waits whole in incoming/, no
    // empty or partial file anywhere, nothing in trusted/
    let bucket = data_dir.join("buckets/airlock-uploads");
    assert_eq!(std::fs::read(bucket.join(&object.key)).unwrap(), text);
    for (path, size) in files(&bucket) {
        assert!(size > 0, "empty file {}", path.display());
        assert!(
            !path.starts_with(bucket.join("trusted")),
            "{} in trusted/",
            path.display()
        );
        assert!(
            !path.starts_with(bucket.join(".airlock-tmp")),
            "temporary file left: {}",
            path.display()
        );
    }

    // WHEN space is freed and the upload is run again by a new process (as
    // `airlock dead-letters retry` does)
    std::fs::remove_dir_all(&filler).unwrap();
    pipeline.shutdown().await;
    let pipeline = start();
    let rerun = pipeline.process(&object).await.unwrap();
    // THEN it is promoted, whole
    assert!(
        matches!(rerun.settlement, Settlement::Trusted { .. }),
        "{:?}",
        rerun.settlement
    );
    let trusted = object.key.replacen("incoming/", "trusted/", 1);
    assert_eq!(std::fs::read(bucket.join(trusted)).unwrap(), text);
    assert!(!bucket.join(&object.key).exists());
    pipeline.shutdown().await;
}
