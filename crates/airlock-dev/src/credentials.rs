//! The development secrets: the key that signs dev tokens and the local endpoint's access
//! key. Made once per data dir (random, owner-readable only) so tokens and URLs stay valid
//! across restarts.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// The file in the data dir that holds them.
pub const FILE_NAME: &str = "dev-credentials.json";

#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DevCredentials {
    /// Hex; signs and verifies dev tokens (HS256).
    pub token_secret: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for DevCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCredentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

fn random_hex(bytes: usize) -> anyhow::Result<String> {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(hex::encode(buffer))
}

impl DevCredentials {
    #[must_use]
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(FILE_NAME)
    }

    /// The secret's bytes.
    pub fn token_secret_bytes(&self) -> anyhow::Result<Vec<u8>> {
        hex::decode(&self.token_secret).context("the dev token secret is not hex")
    }

    /// Reads the data dir's credentials.
    pub fn load(data_dir: &Path) -> anyhow::Result<Self> {
        let path = Self::path(data_dir);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "reading {} (start `airlock dev --data-dir {}` once to make it)",
                path.display(),
                data_dir.display()
            )
        })?;
        serde_json::from_str(&text).with_context(|| format!("{} is not valid", path.display()))
    }

    /// Reads the data dir's credentials, making them first if there are none.
    pub fn load_or_create(data_dir: &Path) -> anyhow::Result<Self> {
        let path = Self::path(data_dir);
        if path.exists() {
            return Self::load(data_dir);
        }
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        let made = Self {
            token_secret: random_hex(32)?,
            access_key_id: format!("AKDEV{}", random_hex(8)?.to_ascii_uppercase()),
            secret_access_key: random_hex(20)?,
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options
            .open(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        file.write_all(serde_json::to_string_pretty(&made)?.as_bytes())?;
        file.sync_all()?;
        Ok(made)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = DevCredentials::load_or_create(dir.path()).unwrap();
        let again = DevCredentials::load_or_create(dir.path()).unwrap();
        assert_eq!(first.token_secret, again.token_secret);
        assert_eq!(first.token_secret_bytes().unwrap().len(), 32);
        assert!(first.access_key_id.starts_with("AKDEV"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(DevCredentials::path(dir.path()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "readable by others: {mode:o}");
        }
        let other = tempfile::tempdir().unwrap();
        assert!(
            DevCredentials::load(other.path())
                .unwrap_err()
                .to_string()
                .contains("airlock dev")
        );
    }
}
