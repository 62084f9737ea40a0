//! A running endpoint over a fresh store, and what the tests look at: the store's objects,
//! the multipart folder and the events sent.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use airlock_core::ports::{ObjectReader as _, ObjectVersion};
use airlock_local::FsStore;
use airlock_presign::{Addressing, PresignConfig, Presigner};
use airlock_s3_endpoint::{Credentials, EndpointConfig, EndpointHandle, serve};
use serde_json::Value;
use tokio::sync::mpsc;

pub const ACCESS_KEY: &str = "airlock-test-access";
pub const SECRET_KEY: &str = "airlock-test-secret-0123456789";
pub const BUCKET: &str = "uploads";
pub const REGION: &str = "us-east-1";
pub const ORIGIN: &str = "http://localhost:5173";

pub struct Harness {
    pub handle: EndpointHandle,
    pub store: Arc<FsStore>,
    pub events: mpsc::UnboundedReceiver<Value>,
    pub parts_dir: PathBuf,
    _dir: tempfile::TempDir,
}

impl Harness {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(FsStore::open(dir.path().join("bucket")).unwrap());
        let parts_dir = dir.path().join("parts");
        let mut config = EndpointConfig::new(
            BUCKET,
            REGION,
            Credentials::new(ACCESS_KEY, SECRET_KEY),
            &parts_dir,
        );
        config.cors_origins = vec![ORIGIN.to_owned()];
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (tx, events) = mpsc::unbounded_channel();
        let handle = serve(listener, Arc::clone(&store), config, tx)
            .await
            .unwrap();
        Self {
            handle,
            store,
            events,
            parts_dir,
            _dir: dir,
        }
    }

    pub fn presigner_as(&self, credentials: airlock_presign::Credentials) -> Presigner {
        Presigner::new(
            PresignConfig::new(self.handle.url(), REGION, Addressing::Path),
            credentials,
        )
        .unwrap()
    }

    pub fn presigner(&self) -> Presigner {
        self.presigner_as(airlock_presign::Credentials::new(ACCESS_KEY, SECRET_KEY))
    }

    pub async fn version(&self, key: &str) -> Option<ObjectVersion> {
        self.store.head(key).await.unwrap().and_then(|m| m.version)
    }

    pub async fn bytes(&self, key: &str) -> Option<Vec<u8>> {
        self.store.head(key).await.unwrap()?;
        Some(self.store.read_range(key, None, 0, u64::MAX).await.unwrap())
    }

    /// Every file under the store's root, temporary files included: what was stored.
    pub fn stored_files(&self) -> Vec<String> {
        files_under(self.store.root())
    }

    /// Every file in the multipart folder (part bodies, records).
    pub fn part_files(&self) -> Vec<String> {
        files_under(&self.parts_dir)
    }

    /// The one event sent since the last call (events are sent before the answer).
    pub fn one_event(&mut self) -> Value {
        let event = self.events.try_recv().expect("no event was sent");
        self.no_event();
        event
    }

    pub fn no_event(&mut self) {
        if let Ok(event) = self.events.try_recv() {
            panic!("unexpected event {event}");
        }
    }
}

fn files_under(root: &Path) -> Vec<String> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, base, out);
            } else {
                out.push(
                    path.strip_prefix(base)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

pub fn payload(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| u8::try_from(i * 7 % 251).unwrap())
        .collect()
}

pub fn md5_hex(data: &[u8]) -> String {
    use md5::Digest as _;
    hex::encode(md5::Md5::digest(data))
}

/// S3's multipart ETag: MD5 of the parts' binary MD5s, then `-` and the part count.
pub fn multipart_etag(parts: &[&[u8]]) -> String {
    use md5::Digest as _;
    let mut outer = md5::Md5::new();
    for part in parts {
        outer.update(md5::Md5::digest(part));
    }
    format!("{}-{}", hex::encode(outer.finalize()), parts.len())
}

/// The object an event announces, as the pipeline's intake reads it.
pub fn parsed(event: &Value) -> airlock_core::object::ObjectRef {
    let items = airlock_core::intake::parse_event("endpoint", event);
    assert_eq!(items.len(), 1, "{items:?}");
    items[0]
        .object()
        .unwrap_or_else(|| panic!("not an object: {}", items[0]))
        .clone()
}
