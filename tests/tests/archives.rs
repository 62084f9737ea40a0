//! Archives through the whole pipeline with the real clamd: what clamd cannot fully read is
//! quarantined by airlock's own archive judge, never promoted on clamd's "OK".

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use airlock_clamd::ManagedClamd;
use airlock_core::verdict::ReasonCode;
use airlock_embedded::cases::eicar;
use airlock_embedded::{EmbeddedPipeline, PipelineConfig, Settlement};
use airlock_tests::{repo_root, start_clamd};
use zip::write::SimpleFileOptions;

fn pipeline_at(data_dir: &Path, clamd: &ManagedClamd) -> EmbeddedPipeline {
    let mut config = PipelineConfig::new(
        data_dir,
        "airlock-uploads",
        Arc::new(clamd.scanner()),
        Arc::new(airlock_media::ImageProcessor),
    );
    config.delay_scale = 0.001;
    EmbeddedPipeline::start(config).unwrap()
}

/// A zip of `(name, bytes)` members, with the options each member gets.
fn zip_of(members: &[(&str, &[u8])], options: SimpleFileOptions) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, bytes) in members {
        writer.start_file(*name, options).unwrap();
        writer.write_all(bytes).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

fn deflated() -> SimpleFileOptions {
    SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated)
}

/// Uploads `bytes` as an attachment of `declared_type` through the pipeline; where it ended.
async fn settle(
    pipeline: &EmbeddedPipeline,
    dir: &Path,
    name: &str,
    declared_type: &str,
    bytes: &[u8],
) -> Settlement {
    let (object, _) = airlock_tests::upload(
        pipeline,
        dir,
        name,
        ("umbrella", "attachment", declared_type),
        bytes,
    )
    .await;
    pipeline.process(&object).await.unwrap().settlement
}

fn reason(settlement: &Settlement) -> Option<ReasonCode> {
    match settlement {
        Settlement::Quarantine { reason, .. } => Some(*reason),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archives_clamd_cannot_fully_read_are_quarantined() {
    let clamd = start_clamd();
    let dir = tempfile::tempdir().unwrap();
    let pipeline = pipeline_at(&dir.path().join("data"), &clamd);
    let eicar = eicar();

    // A plain zip with EICAR: clamd finds it.
    let plain = zip_of(
        &[("readme.txt", b"hello"), ("eicar.com", &eicar)],
        deflated(),
    );
    let settled = settle(
        &pipeline,
        dir.path(),
        "plain.zip",
        "application/zip",
        &plain,
    )
    .await;
    assert_eq!(reason(&settled), Some(ReasonCode::Infected), "{settled:?}");

    // A ZIP64 zip: clamd 1.4 does not read ZIP64 central directories, so its "OK" for one
    // covers nothing; airlock quarantines it even with clean members.
    let zip64 = zip_of(
        &[("readme.txt", b"hello"), ("notes.txt", b"clean")],
        deflated().large_file(true),
    );
    let settled = settle(
        &pipeline,
        dir.path(),
        "zip64.zip",
        "application/zip",
        &zip64,
    )
    .await;
    assert_eq!(
        reason(&settled),
        Some(ReasonCode::ArchiveUnscannable),
        "{settled:?}"
    );
    // With EICAR inside it is quarantined whichever of the two sees it first.
    let zip64 = zip_of(
        &[("readme.txt", b"hello"), ("eicar.com", &eicar)],
        deflated().large_file(true),
    );
    let settled = settle(
        &pipeline,
        dir.path(),
        "zip64-eicar.zip",
        "application/zip",
        &zip64,
    )
    .await;
    assert!(
        matches!(
            reason(&settled),
            Some(ReasonCode::Infected | ReasonCode::ArchiveUnscannable)
        ),
        "{settled:?}"
    );

    // Nested deeper than the purpose allows (zip in zip in ... , 6 levels).
    let mut nested = zip_of(&[("inner.txt", b"clean")], deflated());
    for level in 0..5 {
        nested = zip_of(&[(&format!("level{level}.zip"), &nested)], deflated());
    }
    let settled = settle(
        &pipeline,
        dir.path(),
        "deep.zip",
        "application/zip",
        &nested,
    )
    .await;
    assert_eq!(
        reason(&settled),
        Some(ReasonCode::ArchiveTooDeep),
        "{settled:?}"
    );

    // More members than the purpose allows.
    let names: Vec<String> = (0..5001).map(|i| format!("f{i}.txt")).collect();
    let members: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"x"[..])).collect();
    let many = zip_of(&members, SimpleFileOptions::default());
    let settled = settle(&pipeline, dir.path(), "many.zip", "application/zip", &many).await;
    assert_eq!(
        reason(&settled),
        Some(ReasonCode::ArchiveTooLarge),
        "{settled:?}"
    );

    // An encrypted member: the managed clamd (AlertEncrypted, checked by its self-test)
    // reports it, and airlock would anyway (archive-encrypted).
    let encrypted = airlock_clamd::canary::encrypted_zip("eicar.com", &eicar, b"infected");
    let settled = settle(
        &pipeline,
        dir.path(),
        "encrypted.zip",
        "application/zip",
        &encrypted,
    )
    .await;
    match &settled {
        Settlement::Quarantine {
            reason: ReasonCode::Infected,
            signature: Some(signature),
            ..
        } => assert!(signature.starts_with("Heuristics.Encrypted"), "{signature}"),
        other => panic!("encrypted zip: {other:?}"),
    }

    // A clean zip within every limit is promoted.
    let fine = zip_of(&[("a.txt", b"alpha"), ("b.csv", b"1,2\n")], deflated());
    let settled = settle(&pipeline, dir.path(), "fine.zip", "application/zip", &fine).await;
    assert!(matches!(settled, Settlement::Trusted { .. }), "{settled:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_past_the_scanners_file_limit_is_unscannable() {
    // GIVEN a clamd that reads at most 1 MiB of any file (and archive member), and at most
    // 100 members of an archive
    let clamd = ManagedClamd::builder()
        .database_dir(repo_root().join("fixtures/clamav"))
        .max_file_size(1 << 20)
        .max_files(100)
        .start()
        .expect("clamd starts (install clamav-daemon: scripts/setup.sh)");
    let dir = tempfile::tempdir().unwrap();
    let pipeline = pipeline_at(&dir.path().join("data"), &clamd);
    // WHEN EICAR sits in a zip member after its first 2 MiB (clamd trims the member to its
    // limit and says nothing)
    // Filler that compresses about 100:1 (under the ratio limit), so the zip itself stays
    // far below the scanner's limit while its member inflates past it.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut member: Vec<u8> = (0..24 << 10)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect();
    member.resize(2 << 20, b'a');
    member.extend_from_slice(&eicar());
    let zip = zip_of(&[("big.txt", &member)], deflated());
    let settled = settle(&pipeline, dir.path(), "big.zip", "application/zip", &zip).await;
    // THEN airlock, knowing the scanner's limit, quarantines it as unscannable
    assert_eq!(
        reason(&settled),
        Some(ReasonCode::ArchiveUnscannable),
        "{settled:?}"
    );
    // AND a zip with more members than the scanner reads is reported by the scanner (its
    // AlertExceedsMax was checked by the self-test; airlock would judge it unscannable too)
    let names: Vec<String> = (0..101).map(|i| format!("f{i}.txt")).collect();
    let members: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"x"[..])).collect();
    let many = zip_of(&members, SimpleFileOptions::default());
    let settled = settle(&pipeline, dir.path(), "many.zip", "application/zip", &many).await;
    match &settled {
        Settlement::Quarantine {
            reason: ReasonCode::TooLargeToScan,
            signature: Some(signature),
            ..
        } => assert!(signature.contains("MaxFiles"), "{signature}"),
        other => panic!("many.zip: {other:?}"),
    }
    // AND a 7z with EICAR is found by clamd itself
    let mut writer = sevenz_rust2::ArchiveWriter::new(std::io::Cursor::new(Vec::new())).unwrap();
    writer
        .push_archive_entry(
            sevenz_rust2::ArchiveEntry::new_file("eicar.com"),
            Some(eicar().as_slice()),
        )
        .unwrap();
    let sevenz = writer.finish().unwrap().into_inner();
    let settled = settle(
        &pipeline,
        dir.path(),
        "eicar.7z",
        "application/x-7z-compressed",
        &sevenz,
    )
    .await;
    assert_eq!(reason(&settled), Some(ReasonCode::Infected), "{settled:?}");
    // AND a .tar.gz with EICAR is found by clamd itself
    let mut tar = tar::Builder::new(Vec::new());
    let bytes = eicar();
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "eicar.com", bytes.as_slice())
        .unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar.into_inner().unwrap()).unwrap();
    let tgz = gz.finish().unwrap();
    let settled = settle(
        &pipeline,
        dir.path(),
        "eicar.tar.gz",
        "application/gzip",
        &tgz,
    )
    .await;
    assert_eq!(reason(&settled), Some(ReasonCode::Infected), "{settled:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zip_hidden_at_the_end_of_another_type_is_quarantined() {
    let clamd = start_clamd();
    let dir = tempfile::tempdir().unwrap();
    let pipeline = pipeline_at(&dir.path().join("data"), &clamd);
    let eicar = eicar();
    // A zip appended to a PDF, and to text past inspect's first 8 KiB: an archive nobody
    // declared or judged (the zip is ZIP64, which clamd would not read).
    let hidden = zip_of(&[("eicar.com", &eicar)], deflated().large_file(true));
    let mut pdf = std::fs::read(repo_root().join("fixtures/objects/invoice.pdf")).unwrap();
    pdf.extend_from_slice(&hidden);
    let settled = settle(
        &pipeline,
        dir.path(),
        "invoice.pdf",
        "application/pdf",
        &pdf,
    )
    .await;
    assert!(
        matches!(
            reason(&settled),
            Some(ReasonCode::ArchiveHidden | ReasonCode::Infected)
        ),
        "{settled:?}"
    );
    let clean_zip = zip_of(
        &[("notes.txt", b"nothing to see")],
        deflated().large_file(true),
    );
    let mut text = "a line of plain text\n".repeat(1000).into_bytes();
    text.extend_from_slice(&clean_zip);
    let settled = settle(&pipeline, dir.path(), "notes.txt", "text/plain", &text).await;
    assert_eq!(
        reason(&settled),
        Some(ReasonCode::ArchiveHidden),
        "{settled:?}"
    );
}
