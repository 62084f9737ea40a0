//! End-to-end tests of airlock against real servers (see `tests/`), and the helpers they
//! share.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The repository's root folder.
#[must_use]
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// A private clamd on the project's test signatures.
///
/// # Panics
/// When clamd cannot start (install `clamav-daemon`: `scripts/setup.sh`).
#[must_use]
pub fn start_clamd() -> airlock_clamd::ManagedClamd {
    airlock_clamd::ManagedClamd::builder()
        .database_dir(repo_root().join("fixtures/clamav"))
        .start()
        .expect("clamd starts (install clamav-daemon: scripts/setup.sh)")
}

/// The bundled fixture cases (`fixtures/cases/*.json`), in file name order.
///
/// # Panics
/// When a case file cannot be read or is not a case.
#[must_use]
pub fn load_cases() -> Vec<airlock_embedded::cases::Case> {
    let mut paths: Vec<_> = std::fs::read_dir(repo_root().join("fixtures/cases"))
        .expect("fixtures/cases is readable")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let bytes = std::fs::read(p).expect("a readable case file");
            let value: serde_json::Value =
                serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            airlock_embedded::cases::Case::from_value(p, value)
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        })
        .collect()
}

/// Every file below `root` (relative path -> SHA-256 of its content).
#[must_use]
pub fn snapshot(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let bytes = std::fs::read(&path).expect("readable file");
                let relative = path
                    .strip_prefix(root)
                    .expect("below root")
                    .to_string_lossy()
                    .into_owned();
                out.insert(relative, hex::encode(Sha256::digest(&bytes)));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Uploads `bytes` as `tenant`'s `purpose` upload declared as `declared_type`, with a new
/// intent, the way a fixture case does (the bytes are written to `dir/name` first); the
/// object the upload event announces.
pub async fn upload(
    pipeline: &airlock_embedded::EmbeddedPipeline,
    dir: &Path,
    name: &str,
    (tenant, purpose, declared_type): (&str, &str, &str),
    bytes: &[u8],
) -> (
    airlock_core::object::ObjectRef,
    airlock_embedded::cases::Case,
) {
    use airlock_embedded::cases::{self, Case, Prepared};
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    let case = Case::from_value(
        &dir.join(format!("{name}.json")),
        serde_json::json!({
            "description": name,
            "intent": {
                "id": uuid::Uuid::now_v7().to_string(),
                "tenant": tenant,
                "purpose": purpose,
                "declaredType": declared_type,
            },
            "object": {"path": path},
            "event": "s3-put",
        }),
    )
    .unwrap();
    let Prepared::Ready(items) = cases::prepare(
        &case,
        pipeline.store().as_ref(),
        pipeline.intents().as_ref(),
        &pipeline.config().policies,
        &pipeline.config().bucket,
    )
    .await
    .unwrap() else {
        panic!("{name}: not prepared");
    };
    let object = items[0].object().expect("an object").clone();
    (object, case)
}

/// Uploads a fixture case's object (and intent) and runs it through the pipeline.
pub async fn run_case(
    pipeline: &airlock_embedded::EmbeddedPipeline,
    case: &airlock_embedded::cases::Case,
) -> airlock_embedded::PipelineRun {
    use airlock_embedded::cases::{self, Prepared};
    let prepared = cases::prepare(
        case,
        pipeline.store().as_ref(),
        pipeline.intents().as_ref(),
        &pipeline.config().policies,
        &pipeline.config().bucket,
    )
    .await
    .unwrap();
    let Prepared::Ready(items) = prepared else {
        panic!(
            "{}: optional object missing (install clamav-testfiles: scripts/setup.sh)",
            case.name
        );
    };
    assert_eq!(items.len(), 1, "{}", case.name);
    let object = items[0].object().expect("case event yields an object");
    pipeline.process(object).await.unwrap()
}
