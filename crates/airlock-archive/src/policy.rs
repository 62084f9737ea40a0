//! What a purpose accepts in an archive, and what the virus scanner can read.

use serde::{Deserialize, Serialize};

use crate::ArchiveFormat;

/// A purpose's rules for archives and other containers. Counts and sizes are totals over
/// every nesting level: a member of a member counts, and so do the bytes of a nested archive
/// and the bytes of its members.
///
/// In TOML (sizes are a number of bytes or a string such as `"256 MiB"`; every field is
/// optional and defaults to [`ArchivePolicy::default`]):
///
/// ```toml
/// allowed = true
/// max_members = 5000
/// max_total_size = "256 MiB"
/// max_ratio = 200
/// ratio_min_size = "1 MiB"
/// max_depth = 4
/// formats = ["zip", "gzip", "tar", "7z", "bzip2", "xz", "zstd"]
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArchivePolicy {
    /// Whether archives are accepted at all for the purpose.
    pub allowed: bool,
    /// Most members (files, directories and links) over all nesting levels.
    pub max_members: u64,
    /// Most uncompressed bytes over all members at all nesting levels.
    #[serde(with = "size")]
    pub max_total_size: u64,
    /// Highest compression ratio (uncompressed / compressed, rounded down), per member and
    /// for the archive as a whole.
    pub max_ratio: u64,
    /// The ratio is only judged for a member (or archive) whose uncompressed size reaches
    /// this, so small highly compressible files pass.
    #[serde(with = "size")]
    pub ratio_min_size: u64,
    /// Most archive layers: a zip is 1, a zip inside it 2, a `.tar.gz` 2 (gzip, then tar).
    pub max_depth: u32,
    /// The formats accepted, at any level.
    pub formats: Vec<ArchiveFormat>,
}

impl Default for ArchivePolicy {
    fn default() -> Self {
        Self {
            allowed: true,
            max_members: 5_000,
            max_total_size: 256 * MIB,
            max_ratio: 200,
            ratio_min_size: MIB,
            max_depth: 4,
            formats: vec![
                ArchiveFormat::Zip,
                ArchiveFormat::Gzip,
                ArchiveFormat::Tar,
                ArchiveFormat::SevenZip,
                ArchiveFormat::Bzip2,
                ArchiveFormat::Xz,
                ArchiveFormat::Zstd,
            ],
        }
    }
}

impl ArchivePolicy {
    /// A policy that rejects every archive.
    #[must_use]
    pub fn forbidden() -> Self {
        Self {
            allowed: false,
            ..Self::default()
        }
    }

    /// Whether the policy accepts this format.
    #[must_use]
    pub fn allows(&self, format: ArchiveFormat) -> bool {
        self.allowed && self.formats.contains(&format)
    }
}

const MIB: u64 = 1 << 20;

/// The limits of the virus scanner the file is scanned with. Past any of them the scanner
/// reads a container only partly (or not at all) and may still answer clean, so airlock
/// quarantines such files as unscannable. Defaults are clamd 1.4's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScannerLimits {
    /// clamd `MaxFileSize`: larger files, and larger members of containers, are not
    /// scanned (members are trimmed to this and scanned partly).
    #[serde(with = "size")]
    pub max_file_size: u64,
    /// clamd `MaxScanSize`: bytes scanned per input file, counting the file itself plus
    /// every extracted member at every level.
    #[serde(with = "size")]
    pub max_scan_size: u64,
    /// clamd `MaxFiles`: members scanned per input file.
    pub max_files: u64,
    /// clamd `MaxRecursion`: nesting levels scanned.
    pub max_recursion: u32,
}

impl Default for ScannerLimits {
    fn default() -> Self {
        Self {
            max_file_size: 100 * MIB,
            max_scan_size: 400 * MIB,
            max_files: 10_000,
            max_recursion: 17,
        }
    }
}

/// Sizes as a number of bytes or a string like `"10 MiB"` (same units as upload policies:
/// B, KB, MB, GB are powers of ten; KiB, MiB, GiB powers of two). Written as bytes.
pub mod size {
    use serde::{Deserialize, Deserializer, Serializer};

    #[allow(clippy::trivially_copy_pass_by_ref)] // Reason: serde's `with` signature.
    pub fn serialize<S: Serializer>(value: &u64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(*value)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bytes(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Bytes(n) => Ok(n),
            Raw::Text(text) => parse(&text).map_err(serde::de::Error::custom),
        }
    }

    /// Parses `1048576`, `"512 KiB"`, `"10 MiB"`, `"1 GiB"`, `"2MB"`.
    pub fn parse(text: &str) -> Result<u64, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: u64 = number
            .parse()
            .map_err(|_| format!("size {text:?} does not start with a whole number"))?;
        let factor: u64 = match unit.trim() {
            "" | "B" => 1,
            "KB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            other => {
                return Err(format!(
                    "size {text:?} has unknown unit {other:?} (use B, KB, MB, GB, KiB, MiB or GiB)"
                ));
            }
        };
        number
            .checked_mul(factor)
            .ok_or_else(|| format!("size {text:?} is too large"))
    }
}
