//! `S3Store` against the emulator: versions in versioned and unversioned buckets,
//! create-only writes, pinned copies and deletes, streamed reads, errors.

mod common;

use std::error::Error as _;

use airlock_aws::S3Store;
use airlock_core::ports::{
    ObjectReader, ObjectVersion, ObjectWriter, Retry, StoreError, WriteMode,
};
use common::Moto;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

const KEY: &str = "incoming/acme/document/0193a7d2-5b1c-7e4f-8a9b-0c1d2e3f4a5b";

async fn store(moto: &Moto, versioned: bool) -> S3Store {
    let bucket = if versioned {
        "uploads-versioned"
    } else {
        "uploads-plain"
    };
    moto.bucket(bucket, versioned).await;
    S3Store::new(moto.s3(), bucket)
}

async fn put(store: &S3Store, key: &str, bytes: &[u8]) -> ObjectVersion {
    store
        .put(key, bytes.to_vec(), "text/plain", WriteMode::Overwrite)
        .await
        .unwrap()
        .version
        .expect("S3 names every object written")
}

async fn read_all(store: &S3Store, key: &str, version: Option<&ObjectVersion>) -> Vec<u8> {
    let mut bytes = Vec::new();
    store
        .open(key, version)
        .await
        .unwrap()
        .read_to_end(&mut bytes)
        .await
        .unwrap();
    bytes
}

fn assert_mismatch<T: std::fmt::Debug>(
    result: Result<T, StoreError>,
    expected: &ObjectVersion,
    found: Option<&ObjectVersion>,
) {
    match result {
        Err(StoreError::VersionMismatch {
            expected: e,
            found: f,
            ..
        }) => {
            assert_eq!(&e, expected);
            assert_eq!(f.as_ref(), found);
        }
        other => panic!("expected a version mismatch, got {other:?}"),
    }
}

#[tokio::test]
async fn a_versioned_bucket_reads_copies_and_deletes_exact_versions() {
    let moto = Moto::start().await;
    let store = store(&moto, true).await;
    let v1 = put(&store, KEY, b"first").await;
    assert!(
        !v1.as_str().starts_with('"'),
        "a VersionId, not an ETag: {v1}"
    );
    let head = store.head(KEY).await.unwrap().unwrap();
    assert_eq!(head.version.as_ref(), Some(&v1));
    assert_eq!(head.size, 5);
    assert_eq!(head.content_type.as_deref(), Some("text/plain"));

    // The key is written again: the old version stays readable by its id.
    let v2 = put(&store, KEY, b"second!").await;
    assert_ne!(v1, v2);
    assert_eq!(read_all(&store, KEY, Some(&v1)).await, b"first");
    assert_eq!(read_all(&store, KEY, None).await, b"second!");
    assert_eq!(
        store.read_range(KEY, Some(&v1), 0, 100).await.unwrap(),
        b"first"
    );
    assert_eq!(
        store.read_range(KEY, Some(&v2), 2, 3).await.unwrap(),
        b"con"
    );

    // A copy of the pinned old version has its bytes, and reports its own version.
    let copy = store
        .copy(KEY, Some(&v1), "trusted/x", WriteMode::Overwrite)
        .await
        .unwrap();
    assert_eq!(copy.size, 5);
    assert_eq!(read_all(&store, "trusted/x", None).await, b"first");
    assert_eq!(
        store.head("trusted/x").await.unwrap().unwrap().version,
        copy.version
    );

    // Deleting v1 leaves v2 the object at the key; v1 is then gone for reads and copies.
    store.delete(KEY, Some(&v1)).await.unwrap();
    assert_eq!(
        store.head(KEY).await.unwrap().unwrap().version.as_ref(),
        Some(&v2)
    );
    assert_eq!(read_all(&store, KEY, None).await, b"second!");
    assert_mismatch(store.open(KEY, Some(&v1)).await.map(drop), &v1, Some(&v2));
    assert_mismatch(store.read_range(KEY, Some(&v1), 0, 5).await, &v1, Some(&v2));
    assert_mismatch(
        store
            .copy(KEY, Some(&v1), "trusted/y", WriteMode::Overwrite)
            .await,
        &v1,
        Some(&v2),
    );
    assert!(store.head("trusted/y").await.unwrap().is_none());
    // Deleting a version twice is not an error.
    store.delete(KEY, Some(&v1)).await.unwrap();

    store.delete(KEY, Some(&v2)).await.unwrap();
    assert!(store.head(KEY).await.unwrap().is_none());
    assert_mismatch(store.open(KEY, Some(&v2)).await.map(drop), &v2, None);
    assert!(matches!(
        store.open(KEY, None).await.map(drop),
        Err(StoreError::NotFound { .. })
    ));
}

#[tokio::test]
async fn an_unversioned_bucket_pins_objects_by_etag() {
    let moto = Moto::start().await;
    let store = store(&moto, false).await;
    let v1 = put(&store, KEY, b"first").await;
    let head = store.head(KEY).await.unwrap().unwrap();
    assert!(v1.as_str().starts_with('"'), "an ETag: {v1}");
    assert_eq!(head.etag.as_deref(), Some(v1.as_str()));
    assert_eq!(head.version.as_ref(), Some(&v1));

    // Replaced: the old ETag no longer names what the key holds.
    let v2 = put(&store, KEY, b"second").await;
    assert_ne!(v1, v2);
    assert_mismatch(store.open(KEY, Some(&v1)).await.map(drop), &v1, Some(&v2));
    assert_mismatch(store.read_range(KEY, Some(&v1), 0, 5).await, &v1, Some(&v2));
    assert_mismatch(store.read_range(KEY, Some(&v1), 0, 0).await, &v1, Some(&v2));
    assert_eq!(read_all(&store, KEY, Some(&v2)).await, b"second");

    // A delete of the old ETag leaves the new object alone.
    store.delete(KEY, Some(&v1)).await.unwrap();
    assert_eq!(read_all(&store, KEY, None).await, b"second");

    // (The emulator ignores `x-amz-copy-source-if-match`, so a copy of a replaced ETag is
    // not tested here; S3 answers it with 412.)
    let copy = store
        .copy(KEY, Some(&v2), "trusted/x", WriteMode::Overwrite)
        .await
        .unwrap();
    assert_eq!(copy.size, 6);
    assert_eq!(copy.version.as_ref(), Some(&v2), "same bytes, same ETag");
    assert_eq!(read_all(&store, "trusted/x", None).await, b"second");

    store.delete(KEY, Some(&v2)).await.unwrap();
    assert!(store.head(KEY).await.unwrap().is_none());
    assert_mismatch(store.open(KEY, Some(&v2)).await.map(drop), &v2, None);
}

#[tokio::test]
async fn create_only_writes_never_replace_an_object() {
    let moto = Moto::start().await;
    for versioned in [true, false] {
        let store = store(&moto, versioned).await;
        let evidence = "quarantine/acme/document/x";
        store
            .put(
                evidence,
                b"evidence".to_vec(),
                "text/plain",
                WriteMode::CreateOnly,
            )
            .await
            .unwrap();
        let err = store
            .put(
                evidence,
                b"other".to_vec(),
                "text/plain",
                WriteMode::CreateOnly,
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::AlreadyExists { key } if key == evidence),
            "{err}"
        );
        // A create-only copy onto it is refused too, and a free key takes it. (The emulator
        // ignores `If-None-Match` on copies: here the store's HEAD of the destination
        // refuses it; on S3 the header also closes the race.)
        let source = put(&store, KEY, b"upload").await;
        let err = store
            .copy(KEY, Some(&source), evidence, WriteMode::CreateOnly)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::AlreadyExists { .. }), "{err}");
        assert_eq!(read_all(&store, evidence, None).await, b"evidence");
        let copy = store
            .copy(
                KEY,
                Some(&source),
                "quarantine/acme/document/y",
                WriteMode::CreateOnly,
            )
            .await
            .unwrap();
        assert_eq!(copy.size, 6);
        assert_eq!(
            read_all(&store, "quarantine/acme/document/y", None).await,
            b"upload"
        );
        // Overwrite replaces.
        store
            .put(
                evidence,
                b"new".to_vec(),
                "text/plain",
                WriteMode::Overwrite,
            )
            .await
            .unwrap();
        assert_eq!(read_all(&store, evidence, None).await, b"new");
    }
}

#[tokio::test]
async fn large_objects_stream_and_ranges_stop_at_the_end() {
    let moto = Moto::start().await;
    let store = store(&moto, true).await;
    // 6 MiB of varied bytes.
    let mut bytes = Vec::with_capacity(6 << 20);
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    while bytes.len() < 6 << 20 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    let version = put(&store, KEY, &bytes).await;
    // Read in small chunks and hashed on the way, as the scan stage reads.
    let mut stream = store.open(KEY, Some(&version)).await.unwrap();
    let mut hasher = Sha256::new();
    let mut chunk = vec![0; 64 * 1024];
    let mut total = 0;
    loop {
        let n = stream.read(&mut chunk).await.unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&chunk[..n]);
        total += n;
    }
    assert_eq!(total, bytes.len());
    assert_eq!(
        hasher.finalize().as_slice(),
        Sha256::digest(&bytes).as_slice()
    );

    let size = bytes.len() as u64;
    assert_eq!(
        store
            .read_range(KEY, Some(&version), size - 10, 100)
            .await
            .unwrap(),
        &bytes[bytes.len() - 10..]
    );
    assert_eq!(
        store
            .read_range(KEY, Some(&version), 8192, 4)
            .await
            .unwrap(),
        &bytes[8192..8196]
    );
    assert!(
        store
            .read_range(KEY, Some(&version), size + 5, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .read_range(KEY, Some(&version), 0, 0)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn missing_objects_are_answers_and_failures_say_whether_to_retry() {
    let moto = Moto::start().await;
    let store = store(&moto, true).await;
    assert!(store.head(KEY).await.unwrap().is_none());
    assert!(matches!(
        store.open(KEY, None).await.map(drop),
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.read_range(KEY, None, 0, 10).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store
            .copy(KEY, None, "trusted/x", WriteMode::Overwrite)
            .await,
        Err(StoreError::NotFound { .. })
    ));
    store.delete(KEY, None).await.unwrap();

    // A bucket that does not exist: a configuration error, permanent, with its cause.
    let wrong = S3Store::new(moto.s3(), "no-such-bucket");
    store.check_bucket().await.unwrap();
    assert_eq!(
        wrong.check_bucket().await.unwrap_err().retry(),
        Retry::Permanent
    );
    let err = wrong
        .put(KEY, b"x".to_vec(), "text/plain", WriteMode::Overwrite)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Backend { .. }), "{err}");
    assert_eq!(err.retry(), Retry::Permanent);
    let cause = format!("{:?}", err.source().expect("the SDK error is the source"));
    assert!(cause.contains("NoSuchBucket"), "{cause}");

    // Nobody listening: transient.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        port
    };
    let config = aws_sdk_s3::config::Builder::from(&moto.config)
        .endpoint_url(format!("http://127.0.0.1:{closed}"))
        .force_path_style(true)
        .build();
    let unreachable = S3Store::new(aws_sdk_s3::Client::from_conf(config), "uploads-versioned");
    let err = unreachable.head(KEY).await.unwrap_err();
    assert_eq!(err.retry(), Retry::Transient, "{err}");
    assert!(err.source().is_some());
}
