//! Exported samples: a zip whose entries are encrypted with the password `infected`
//! (`ZipCrypto`, the convention malware analysts and their tools expect: `unzip -P infected`,
//! 7-Zip), holding the object as `{sha256}.bin` and its quarantine record as
//! `record.json`. Encrypted, so no scanner or mail filter on the way acts on the sample, and
//! nobody opens it by accident; not secret (the password is public).

use std::io::Write;
use std::path::PathBuf;

use airlock_core::ports::ByteStream;
use airlock_core::review::SampleSink;
use airlock_core::stages::QuarantineRecord;
use async_trait::async_trait;
use zip::unstable::write::FileOptionsExt;
use zip::write::SimpleFileOptions;

/// The password every exported sample is encrypted with.
pub const EXPORT_PASSWORD: &str = "infected";

/// Writes a sample to a new zip file at `path` (never replacing one).
#[derive(Debug, Clone)]
pub struct EncryptedZipFile {
    pub path: PathBuf,
}

#[async_trait]
impl SampleSink for EncryptedZipFile {
    async fn write_sample(
        &self,
        record: &QuarantineRecord,
        mut bytes: ByteStream,
    ) -> Result<String, std::io::Error> {
        // The zip writer is synchronous: spool the stream to a temporary file first.
        let spool = tempfile::NamedTempFile::new()?;
        let mut out = tokio::fs::File::from_std(spool.reopen()?);
        tokio::io::copy(&mut bytes, &mut out).await?;
        out.sync_all().await?;
        drop(out);
        let record_json = serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?;
        let name = format!("{}.bin", record.sha256);
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let file = std::fs::File::create_new(&path)?;
            let written = write_zip(&file, &name, &spool, &record_json);
            if written.is_err() {
                let _ = std::fs::remove_file(&path);
            }
            written?;
            file.sync_all()?;
            Ok(path.display().to_string())
        })
        .await
        .map_err(std::io::Error::other)?
    }
}

fn write_zip(
    file: &std::fs::File,
    name: &str,
    spool: &tempfile::NamedTempFile,
    record_json: &[u8],
) -> std::io::Result<()> {
    let options = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(spool.as_file().metadata()?.len() >= u64::from(u32::MAX))
        .with_deprecated_encryption(EXPORT_PASSWORD.as_bytes())
        .map_err(std::io::Error::other)?;
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file));
    zip.start_file(name, options)
        .map_err(std::io::Error::other)?;
    std::io::copy(&mut spool.reopen()?, &mut zip)?;
    zip.start_file("record.json", options)
        .map_err(std::io::Error::other)?;
    zip.write_all(record_json)?;
    zip.finish().map_err(std::io::Error::other)?.flush()
}
