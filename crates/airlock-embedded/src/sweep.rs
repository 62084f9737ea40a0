//! Sweeping `staging/`: media outputs wait there until promotion, which removes them. What a
//! crash or a failed promotion left behind is removed here once its upload is settled (or
//! has no intent). On AWS a lifecycle rule on `staging/` does the same job.

use std::path::Path;

use airlock_core::keys::UploadId;
use airlock_core::ports::IntentStore;

/// Removes the staging folders (`staging/{tenant}/{purpose}/{upload_id}/`) below
/// `bucket_root` whose upload is settled (READY, QUARANTINED, EXPIRED or FAILED) or unknown.
/// Folders of uploads still in flight are left alone. Returns how many were removed.
pub async fn sweep_staging(bucket_root: &Path, intents: &dyn IntentStore) -> anyhow::Result<usize> {
    let staging = bucket_root.join("staging");
    let mut removed = 0;
    for upload_dir in folders(&staging, 3)? {
        let Some(id) = upload_dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse::<UploadId>().ok())
        else {
            continue;
        };
        let settled = intents.get(id).await?.is_none_or(|intent| {
            intent.state.is_final() || intent.state == airlock_core::intent::IntentState::Failed
        });
        if settled {
            tokio::fs::remove_dir_all(&upload_dir).await?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// The folders exactly `depth` levels below `root` (none if `root` does not exist).
fn folders(root: &Path, depth: usize) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut level = vec![root.to_path_buf()];
    for _ in 0..depth {
        let mut next = Vec::new();
        for dir in level {
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for entry in entries {
                let entry = entry?;
                if entry.file_type()?.is_dir() {
                    next.push(entry.path());
                }
            }
        }
        level = next;
    }
    Ok(level)
}
