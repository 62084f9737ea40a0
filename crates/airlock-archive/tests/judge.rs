//! Archives built at test time, judged end to end.

use std::io::{self, Cursor, Read, Seek, SeekFrom, Write};

use airlock_archive::{
    ArchiveError, ArchiveFormat, ArchivePolicy, ArchiveReport, Judgement, ScannerLimits,
    judge_file, judge_reader,
};
use zip::write::SimpleFileOptions;
use zip::{AesMode, CompressionMethod, ZipWriter};

const MIB: usize = 1 << 20;

fn judge_with(bytes: &[u8], policy: &ArchivePolicy, limits: &ScannerLimits) -> Judgement {
    judge_reader(Cursor::new(bytes), policy, limits).expect("an in-memory archive reads")
}

fn judge(bytes: &[u8]) -> Judgement {
    judge_with(bytes, &ArchivePolicy::default(), &ScannerLimits::default())
}

fn accepted(judgement: Judgement) -> ArchiveReport {
    match judgement {
        Judgement::Accepted(report) => report,
        other => panic!("expected accepted, got {other:?}"),
    }
}

/// The finding's code and detail, failing the test for anything but a rejection.
fn rejected(judgement: Judgement) -> (&'static str, String) {
    match judgement {
        Judgement::Rejected(finding) => (finding.code(), finding.detail),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

fn deflated() -> SimpleFileOptions {
    SimpleFileOptions::default().compression_method(CompressionMethod::Deflated)
}

fn zip_with(members: &[(&str, &[u8])], options: SimpleFileOptions) -> Vec<u8> {
    let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
    for (name, data) in members {
        writer.start_file(*name, options).expect("start member");
        writer.write_all(data).expect("write member");
    }
    writer.finish().expect("finish zip").into_inner()
}

fn zip(members: &[(&str, &[u8])]) -> Vec<u8> {
    zip_with(members, deflated())
}

/// Bytes that do not compress (a simple generator; the content only needs to be
/// incompressible, not random).
fn noise(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[3]
        })
        .collect()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn tar(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in members {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, name, *data).unwrap();
    }
    builder.into_inner().unwrap()
}

/// Offset of the zip end record and of the central directory.
fn zip_layout(zip: &[u8]) -> (usize, usize) {
    let end = zip
        .windows(4)
        .rposition(|w| w == b"PK\x05\x06")
        .expect("end record");
    let directory = u32::from_le_bytes(zip[end + 16..end + 20].try_into().unwrap()) as usize;
    (end, directory)
}

fn put_u16(bytes: &mut [u8], at: usize, value: u16) {
    bytes[at..at + 2].copy_from_slice(&value.to_le_bytes());
}

fn put_u32(bytes: &mut [u8], at: usize, value: u32) {
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

#[test]
fn plain_zip_is_accepted_with_its_numbers() {
    let text = b"hello, plain zip member\n".repeat(10);
    let report = accepted(judge(&zip(&[("a.txt", &text), ("dir/b.txt", b"second")])));
    assert_eq!(report.format, ArchiveFormat::Zip);
    assert_eq!(report.members, 2);
    assert_eq!(report.total_uncompressed, text.len() as u64 + 6);
    assert_eq!(report.depth, 1);
}

#[test]
fn ooxml_like_container_passes() {
    let content_types = br#"<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="xml" ContentType="application/xml"/></Types>"#;
    let document = b"<w:document><w:body><w:p>text</w:p></w:body></w:document>".repeat(50);
    let bytes = zip(&[
        ("[Content_Types].xml", content_types),
        ("_rels/.rels", b"<Relationships/>"),
        ("word/document.xml", &document),
    ]);
    let report = accepted(judge(&bytes));
    assert_eq!(report.members, 3);
}

#[test]
fn empty_zip_is_an_archive_with_no_members() {
    let mut bytes = b"PK\x05\x06".to_vec();
    bytes.extend_from_slice(&[0; 18]);
    let report = accepted(judge(&bytes));
    assert_eq!((report.members, report.total_uncompressed), (0, 0));
    let (code, _) = rejected(judge_with(
        &bytes,
        &ArchivePolicy::forbidden(),
        &ScannerLimits::default(),
    ));
    assert_eq!(code, "archive-not-allowed");
}

#[test]
fn files_that_are_not_archives_are_not_judged() {
    assert_eq!(judge(b"just some text\n"), Judgement::NotArchive);
    assert_eq!(judge(b"%PDF-1.7\n%\xe2\xe3"), Judgement::NotArchive);
    assert_eq!(judge(b""), Judgement::NotArchive);
}

#[test]
fn zip64_is_unscannable() {
    let bytes = zip_with(&[("big.txt", b"small really")], deflated().large_file(true));
    let (code, detail) = rejected(judge(&bytes));
    assert_eq!(code, "archive-unscannable");
    assert!(detail.contains("ZIP64"), "{detail}");
}

#[test]
fn zipcrypto_member_is_encrypted() {
    use zip::unstable::write::FileOptionsExt;
    let options = deflated().with_deprecated_encryption(b"secret").unwrap();
    let bytes = zip_with(&[("hidden.txt", b"cannot be scanned")], options);
    let (code, detail) = rejected(judge(&bytes));
    assert_eq!(code, "archive-encrypted");
    assert!(
        detail.contains("hidden.txt") && detail.contains("ZipCrypto"),
        "{detail}"
    );
}

#[test]
fn aes_member_is_encrypted() {
    let options = deflated().with_aes_encryption(AesMode::Aes256, "secret");
    let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
    writer.start_file("plain.txt", deflated()).unwrap();
    writer.write_all(b"readable").unwrap();
    writer.start_file("aes.txt", options).unwrap();
    writer.write_all(b"cannot be scanned").unwrap();
    let bytes = writer.finish().unwrap().into_inner();
    let (code, detail) = rejected(judge(&bytes));
    assert_eq!(code, "archive-encrypted");
    assert!(
        detail.contains("aes.txt") && detail.contains("AES"),
        "{detail}"
    );
}

#[test]
fn member_counts_against_policy_and_scanner() {
    let names: Vec<String> = (0..11).map(|i| format!("m{i}.txt")).collect();
    let members: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"x"[..])).collect();
    let bytes = zip(&members);

    let policy = ArchivePolicy {
        max_members: 10,
        ..ArchivePolicy::default()
    };
    let (code, detail) = rejected(judge_with(&bytes, &policy, &ScannerLimits::default()));
    assert_eq!(code, "archive-too-large");
    assert!(detail.contains("m10.txt"), "{detail}");
    let policy = ArchivePolicy {
        max_members: 11,
        ..ArchivePolicy::default()
    };
    accepted(judge_with(&bytes, &policy, &ScannerLimits::default()));

    let limits = ScannerLimits {
        max_files: 10,
        ..ScannerLimits::default()
    };
    let (code, _) = rejected(judge_with(&bytes, &ArchivePolicy::default(), &limits));
    assert_eq!(code, "archive-unscannable");
}

#[test]
fn zip_bomb_is_rejected_for_its_ratio() {
    let zeros = vec![0u8; 20 * MIB];
    let bytes = zip(&[("zeros.bin", &zeros)]);
    let (code, detail) = rejected(judge(&bytes));
    assert_eq!(code, "archive-ratio");
    assert!(detail.contains("zeros.bin"), "{detail}");

    // Highly compressible but below the ratio's minimum size: accepted.
    let small = vec![0u8; 512 * 1024];
    let report = accepted(judge(&zip(&[("small.bin", &small)])));
    assert_eq!(report.total_uncompressed, small.len() as u64);
}

#[test]
fn member_past_scanner_file_size_is_unscannable() {
    // Four symbols: compresses about four times, so the zip stays under the limit while
    // its member does not.
    let data: Vec<u8> = noise(2 * MIB).into_iter().map(|b| b'a' + b % 4).collect();
    let bytes = zip(&[("big.bin", &data)]);
    let limits = ScannerLimits {
        max_file_size: MIB as u64 * 3 / 2,
        ..ScannerLimits::default()
    };
    let (code, detail) = rejected(judge_with(&bytes, &ArchivePolicy::default(), &limits));
    assert_eq!(code, "archive-unscannable");
    assert!(
        detail.contains("big.bin") && detail.contains("max file size"),
        "{detail}"
    );
    assert!(bytes.len() < MIB, "the zip itself is {} bytes", bytes.len());
    accepted(judge(&bytes));
}

#[test]
fn total_size_against_policy_and_scan_size() {
    let data = noise(MIB);
    let bytes = zip(&[("a.bin", &data), ("b.bin", &data)]);
    let policy = ArchivePolicy {
        max_total_size: MIB as u64 * 3 / 2,
        ..ArchivePolicy::default()
    };
    let (code, _) = rejected(judge_with(&bytes, &policy, &ScannerLimits::default()));
    assert_eq!(code, "archive-too-large");
    // The scanner counts the file itself plus its members: 2 MiB of members and a 2 MiB
    // file exceed 3 MiB.
    let limits = ScannerLimits {
        max_scan_size: 3 * MIB as u64,
        ..ScannerLimits::default()
    };
    let (code, detail) = rejected(judge_with(&bytes, &ArchivePolicy::default(), &limits));
    assert_eq!(code, "archive-unscannable");
    assert!(detail.contains("max scan size"), "{detail}");
}

#[test]
fn a_member_inflating_past_its_declared_size_is_caught() {
    let data = b"declared sizes can lie ".repeat(100);
    let mut bytes = zip(&[("liar.txt", &data)]);
    let (_, directory) = zip_layout(&bytes);
    // Uncompressed size in the central entry (24) and the local header (22).
    put_u32(&mut bytes, directory + 24, 100);
    put_u32(&mut bytes, 22, 100);
    let (code, detail) = rejected(judge(&bytes));
    assert_eq!(code, "archive-unscannable");
    assert!(
        detail.contains("liar.txt") && detail.contains("declared size of 100"),
        "{detail}"
    );
}

#[test]
fn nested_zips_count_depth() {
    let inner = zip(&[("deep.txt", b"three levels down")]);
    let middle = zip(&[("inner.zip", &inner)]);
    let outer = zip(&[("middle.zip", &middle), ("top.txt", b"top")]);

    let report = accepted(judge(&outer));
    assert_eq!(report.depth, 3);
    assert_eq!(report.members, 4);

    let policy = ArchivePolicy {
        max_depth: 2,
        ..ArchivePolicy::default()
    };
    let (code, detail) = rejected(judge_with(&outer, &policy, &ScannerLimits::default()));
    assert_eq!(code, "archive-too-deep");
    assert!(detail.contains("middle.zip > inner.zip"), "{detail}");

    let limits = ScannerLimits {
        max_recursion: 3,
        ..ScannerLimits::default()
    };
    let (code, _) = rejected(judge_with(&outer, &ArchivePolicy::default(), &limits));
    assert_eq!(code, "archive-unscannable");
}

#[test]
fn nested_encryption_is_found() {
    use zip::unstable::write::FileOptionsExt;
    let options = deflated().with_deprecated_encryption(b"pw").unwrap();
    let inner = zip_with(&[("x.txt", b"hidden")], options);
    let outer = zip(&[("docs/inner.zip", &inner)]);
    let (code, detail) = rejected(judge(&outer));
    assert_eq!(code, "archive-encrypted");
    assert!(detail.contains("docs/inner.zip > x.txt"), "{detail}");
}

#[test]
fn tar_gz_is_accepted_two_layers_deep() {
    let bytes = gzip(&tar(&[("a.txt", b"alpha"), ("b/c.txt", b"charlie")]));
    let report = accepted(judge(&bytes));
    assert_eq!(report.format, ArchiveFormat::Gzip);
    assert_eq!(report.depth, 2);
    // The gzip content, then two tar members.
    assert_eq!(report.members, 3);
}

#[test]
fn tar_with_many_members_is_too_large() {
    let names: Vec<String> = (0..60).map(|i| format!("f{i}")).collect();
    let members: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"data"[..])).collect();
    let bytes = tar(&members);
    let policy = ArchivePolicy {
        max_members: 50,
        ..ArchivePolicy::default()
    };
    let (code, _) = rejected(judge_with(&bytes, &policy, &ScannerLimits::default()));
    assert_eq!(code, "archive-too-large");
    assert_eq!(accepted(judge(&bytes)).members, 60);
}

#[test]
fn gzip_bomb_is_rejected_for_its_ratio() {
    let bytes = gzip(&vec![0u8; 40 * MIB]);
    let (code, detail) = rejected(judge(&bytes));
    assert_eq!(code, "archive-ratio");
    assert!(detail.contains("gzip content"), "{detail}");
}

#[test]
fn multi_member_gzip_is_read_to_its_end() {
    let mut bytes = gzip(b"first member ");
    bytes.extend(gzip(b"second member"));
    let report = accepted(judge(&bytes));
    assert_eq!(report.total_uncompressed, 26);
}

#[test]
fn bzip2_xz_and_zstd_streams_are_judged() {
    let payload = tar(&[("inside.txt", b"inside a compressed tar")]);

    let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
    bz.write_all(&payload).unwrap();
    let bz = bz.finish().unwrap();
    let report = accepted(judge(&bz));
    assert_eq!(
        (report.format, report.depth, report.members),
        (ArchiveFormat::Bzip2, 2, 2)
    );

    let mut xz =
        lzma_rust2::XzWriter::new(Vec::new(), lzma_rust2::XzOptions::with_preset(1)).unwrap();
    xz.write_all(&payload).unwrap();
    let xz = xz.finish().unwrap();
    let report = accepted(judge(&xz));
    assert_eq!(
        (report.format, report.depth, report.members),
        (ArchiveFormat::Xz, 2, 2)
    );

    let zst = ruzstd::encoding::compress_to_vec(
        payload.as_slice(),
        ruzstd::encoding::CompressionLevel::Fastest,
    );
    let report = accepted(judge(&zst));
    assert_eq!(
        (report.format, report.depth, report.members),
        (ArchiveFormat::Zstd, 2, 2)
    );

    let zeros = ruzstd::encoding::compress_to_vec(
        vec![0u8; 20 * MIB].as_slice(),
        ruzstd::encoding::CompressionLevel::Fastest,
    );
    assert_eq!(rejected(judge(&zeros)).0, "archive-ratio");
}

#[test]
fn truncated_and_corrupt_zips_are_unscannable() {
    let bytes = zip(&[("a.txt", &b"some text to compress ".repeat(50))]);
    let (code, detail) = rejected(judge(&bytes[..bytes.len() - 30]));
    assert_eq!(code, "archive-unscannable");
    assert!(detail.contains("end of central directory"), "{detail}");

    let mut corrupt = bytes.clone();
    // Flip bytes inside the deflate data (local header 30 + name 5).
    for byte in &mut corrupt[36..60] {
        *byte ^= 0x5a;
    }
    let (code, _) = rejected(judge(&corrupt));
    assert_eq!(code, "archive-unscannable");

    let truncated_gzip = gzip(&noise(100_000));
    let (code, _) = rejected(judge(&truncated_gzip[..50_000]));
    assert_eq!(code, "archive-unscannable");
}

#[test]
fn overlapping_members_are_unscannable() {
    // Two central entries pointing at one local header: the overlapping zip bomb layout.
    let bytes = zip(&[("a.txt", b"shared data")]);
    let (end, directory) = zip_layout(&bytes);
    let entry = bytes[directory..end].to_vec();
    let mut crafted = bytes[..end].to_vec();
    crafted.extend_from_slice(&entry);
    let mut end_record = bytes[end..].to_vec();
    put_u16(&mut end_record, 8, 2);
    put_u16(&mut end_record, 10, 2);
    put_u32(&mut end_record, 12, u32::try_from(2 * entry.len()).unwrap());
    crafted.extend_from_slice(&end_record);
    let (code, detail) = rejected(judge(&crafted));
    assert_eq!(code, "archive-unscannable");
    assert!(detail.contains("overlaps"), "{detail}");
}

#[test]
fn multi_disk_and_unknown_methods_are_unscannable() {
    let bytes = zip(&[("a.txt", b"text")]);
    let (end, directory) = zip_layout(&bytes);

    let mut spanned = bytes.clone();
    put_u16(&mut spanned, end + 4, 1);
    let (code, detail) = rejected(judge(&spanned));
    assert_eq!(code, "archive-unscannable");
    assert!(detail.contains("disk"), "{detail}");

    let mut lzma = bytes;
    put_u16(&mut lzma, directory + 10, 14);
    put_u16(&mut lzma, 8, 14);
    let (code, detail) = rejected(judge(&lzma));
    assert_eq!(code, "archive-unscannable");
    assert!(detail.contains("method 14 (lzma)"), "{detail}");
}

#[test]
fn formats_outside_the_policy_are_not_allowed() {
    let rar = b"Rar!\x1a\x07\x01\x00 rest of a rar 5 archive".to_vec();
    let (code, _) = rejected(judge(&rar));
    assert_eq!(code, "archive-not-allowed");
    let with_rar = ArchivePolicy {
        formats: ArchiveFormat::ALL.to_vec(),
        ..ArchivePolicy::default()
    };
    let (code, detail) = rejected(judge_with(&rar, &with_rar, &ScannerLimits::default()));
    assert_eq!(code, "archive-unscannable");
    assert!(detail.contains("rar"), "{detail}");

    let zip_only = ArchivePolicy {
        formats: vec![ArchiveFormat::Zip],
        ..ArchivePolicy::default()
    };
    let nested = zip(&[("data.tar.gz", &gzip(&tar(&[("a", b"a")])))]);
    let (code, detail) = rejected(judge_with(&nested, &zip_only, &ScannerLimits::default()));
    assert_eq!(code, "archive-not-allowed");
    assert!(
        detail.contains("data.tar.gz") && detail.contains("gzip"),
        "{detail}"
    );
}

fn sevenz(members: &[(&str, &[u8])], password: Option<&str>, encrypt_header: bool) -> Vec<u8> {
    use sevenz_rust2::encoder_options::AesEncoderOptions;
    use sevenz_rust2::{ArchiveEntry, ArchiveWriter, EncoderMethod, Password};
    let mut writer = ArchiveWriter::new(Cursor::new(Vec::new())).unwrap();
    if let Some(password) = password {
        writer.set_content_methods(vec![
            AesEncoderOptions::new(Password::new(password)).into(),
            EncoderMethod::LZMA2.into(),
        ]);
        writer.set_encrypt_header(encrypt_header);
    }
    for (name, data) in members {
        writer
            .push_archive_entry(ArchiveEntry::new_file(name), Some(*data))
            .unwrap();
    }
    writer.finish().unwrap().into_inner()
}

#[test]
fn sevenz_is_listed_and_encryption_found() {
    let bytes = sevenz(&[("a.txt", b"alpha"), ("b.txt", b"bravo")], None, false);
    let report = accepted(judge(&bytes));
    assert_eq!(
        (report.format, report.members, report.total_uncompressed),
        (ArchiveFormat::SevenZip, 2, 10)
    );

    let encrypted_members = sevenz(&[("a.txt", b"alpha")], Some("pw"), false);
    let (code, _) = rejected(judge(&encrypted_members));
    assert_eq!(code, "archive-encrypted");

    let encrypted_header = sevenz(&[("a.txt", b"alpha")], Some("pw"), true);
    let (code, _) = rejected(judge(&encrypted_header));
    assert_eq!(code, "archive-encrypted");

    let inner = zip(&[("in.txt", b"zip inside 7z")]);
    let report = accepted(judge(&sevenz(&[("inner.zip", &inner)], None, false)));
    assert_eq!((report.depth, report.members), (2, 2));
}

/// A file whose reads fail past an offset, as a failing disk would.
struct FailingAfter {
    inner: Cursor<Vec<u8>>,
    fail_at: u64,
}

impl Read for FailingAfter {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.inner.position() >= self.fail_at {
            return Err(io::Error::other("device error"));
        }
        let room = usize::try_from(self.fail_at - self.inner.position()).unwrap();
        let len = buf.len().min(room);
        self.inner.read(&mut buf[..len])
    }
}

impl Seek for FailingAfter {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.inner.seek(pos)
    }
}

#[test]
fn read_failures_are_errors_not_findings() {
    let bytes = gzip(&noise(200_000));
    let reader = FailingAfter {
        inner: Cursor::new(bytes.clone()),
        fail_at: 100_000,
    };
    let err = judge_reader(reader, &ArchivePolicy::default(), &ScannerLimits::default())
        .expect_err("a failing read is an error");
    let ArchiveError::Io { source, .. } = err;
    assert_eq!(source.to_string(), "device error");

    // The same bytes cut short at that offset are a truncated archive: a finding.
    let (code, _) = rejected(judge(&bytes[..100_000]));
    assert_eq!(code, "archive-unscannable");
}

#[test]
fn judge_file_reads_a_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("upload.zip");
    std::fs::write(&path, zip(&[("a.txt", b"file on disk")])).unwrap();
    let report =
        accepted(judge_file(&path, &ArchivePolicy::default(), &ScannerLimits::default()).unwrap());
    assert_eq!(report.members, 1);

    let missing = dir.path().join("missing.zip");
    let err = judge_file(
        &missing,
        &ArchivePolicy::default(),
        &ScannerLimits::default(),
    )
    .expect_err("missing file");
    assert!(err.to_string().contains("missing.zip"), "{err}");
}

#[test]
fn policy_reads_from_toml() {
    let policy: ArchivePolicy = toml::from_str(
        r#"
        max_members = 100
        max_total_size = "64 MiB"
        ratio_min_size = 4096
        formats = ["zip", "7z"]
        "#,
    )
    .unwrap();
    assert_eq!(policy.max_members, 100);
    assert_eq!(policy.max_total_size, 64 << 20);
    assert_eq!(policy.ratio_min_size, 4096);
    assert_eq!(
        policy.formats,
        vec![ArchiveFormat::Zip, ArchiveFormat::SevenZip]
    );
    assert_eq!(policy.max_ratio, ArchivePolicy::default().max_ratio);

    let err = toml::from_str::<ArchivePolicy>("max_files = 3").unwrap_err();
    assert!(err.to_string().contains("max_files"), "{err}");
    let err = toml::from_str::<ArchivePolicy>("max_total_size = \"3 parsecs\"").unwrap_err();
    assert!(err.to_string().contains("parsecs"), "{err}");

    let limits: ScannerLimits = toml::from_str("max_file_size = \"25 MB\"").unwrap();
    assert_eq!(limits.max_file_size, 25_000_000);
    assert_eq!(limits.max_files, 10_000);
}

#[test]
fn streamed_zip_with_data_descriptors_and_directories_passes() {
    // Written to a non-seekable sink: sizes follow each member in a data descriptor and the
    // local headers carry zeros, as in zips made by streaming tools.
    let mut writer = ZipWriter::new_stream(Vec::new());
    writer.add_directory("docs/", deflated()).unwrap();
    writer.start_file("docs/a.txt", deflated()).unwrap();
    writer.write_all(&b"streamed member ".repeat(64)).unwrap();
    writer.start_file("docs/b.txt", deflated()).unwrap();
    writer.write_all(b"second").unwrap();
    let bytes = writer.finish().unwrap().into_inner();
    let descriptors = (0..bytes.len() - 8)
        .filter(|&at| &bytes[at..at + 4] == b"PK\x03\x04")
        .filter(|&at| u16::from_le_bytes([bytes[at + 6], bytes[at + 7]]) & 8 != 0)
        .count();
    assert_eq!(descriptors, 2, "both files have a data descriptor");
    let report = accepted(judge(&bytes));
    assert_eq!(report.members, 3);
    assert_eq!(report.total_uncompressed, 16 * 64 + 6);
}
