//! ClamAV database containers: reading the header of a `.cvd` / `.cld` / `.cud` file, and
//! building an unsigned `.cud` around plain signature files.
//!
//! A container is a 512-byte header (`ClamAV-VDB:<date>:<version>:<signatures>:<flevel>:
//! <md5>:<dsig>:<builder>:<build time>`, padded with spaces) followed by a tar of its
//! files. Official `.cvd` files are signed by ClamAV; a `.cud` is the unsigned form clamd
//! loads without a signature check. Named `daily.cud`, it sets what clamd's `VERSION`
//! reports as the definitions' version and build time, exactly as an official
//! `daily.cvd` does: tests use it to give the project's test signatures a version and an
//! age.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

/// The length of a container's header.
pub const HEADER_LEN: usize = 512;

/// What a container's header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerHeader {
    pub version: u32,
    pub signatures: u32,
    pub functionality_level: u32,
    pub built_at: DateTime<Utc>,
}

/// A header that is not a ClamAV container's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a ClamAV database container: {0}")]
pub struct BadContainer(pub String);

/// Reads a container's header from its first bytes (at least [`HEADER_LEN`]).
pub fn read_header(first: &[u8]) -> Result<ContainerHeader, BadContainer> {
    let header = first
        .get(..HEADER_LEN)
        .ok_or_else(|| BadContainer(format!("{} bytes, shorter than a header", first.len())))?;
    let text = std::str::from_utf8(header)
        .map_err(|_| BadContainer("the header is not text".to_owned()))?
        .trim_end_matches([' ', '\0']);
    let fields: Vec<&str> = text.split(':').collect();
    if fields.first() != Some(&"ClamAV-VDB") || fields.len() < 9 {
        return Err(BadContainer(format!("header {text:?}")));
    }
    let number = |i: usize, what: &str| {
        fields[i]
            .trim()
            .parse::<u32>()
            .map_err(|_| BadContainer(format!("{what} {:?} in header {text:?}", fields[i])))
    };
    let build_time = fields[8]
        .trim()
        .parse::<i64>()
        .ok()
        .and_then(|secs| DateTime::from_timestamp(secs, 0))
        .ok_or_else(|| BadContainer(format!("build time {:?} in header {text:?}", fields[8])))?;
    Ok(ContainerHeader {
        version: number(2, "version")?,
        signatures: number(3, "signature count")?,
        functionality_level: number(4, "functionality level")?,
        built_at: build_time,
    })
}

/// An unsigned container (`.cud`) named `name` (`daily` for the definitions' version and
/// build time) holding `files` (plain signature files, e.g. `.ndb`, `.hsb`), with its
/// `{name}.info` index listing each file's size and SHA-256.
///
/// # Panics
/// If a file name is longer than 100 bytes (a tar name field).
#[must_use]
pub fn unsigned_container(
    name: &str,
    version: u32,
    built_at: DateTime<Utc>,
    files: &[(&str, &[u8])],
) -> Vec<u8> {
    let header = format!(
        "ClamAV-VDB:{}:{version}:{}:90:-:-:airlock:{}",
        built_at.format("%d %b %Y %H-%M +0000"),
        files.len(),
        built_at.timestamp()
    );
    let mut info = format!("{header}\n");
    for (file, bytes) in files {
        let line = format!(
            "{file}:{}:{}\n",
            bytes.len(),
            hex::encode(Sha256::digest(bytes))
        );
        info.push_str(&line);
    }
    let mut out = header.into_bytes();
    out.resize(HEADER_LEN, b' ');
    let info_name = format!("{name}.info");
    tar_entry(&mut out, &info_name, info.as_bytes());
    for (file, bytes) in files {
        tar_entry(&mut out, file, bytes);
    }
    // Two zero blocks end a tar.
    out.resize(out.len() + 1024, 0);
    out
}

/// Appends one regular file to an uncompressed ustar archive.
fn tar_entry(out: &mut Vec<u8>, name: &str, bytes: &[u8]) {
    assert!(name.len() <= 100, "tar name {name:?} is too long");
    let mut header = [0_u8; 512];
    header[..name.len()].copy_from_slice(name.as_bytes());
    let octal = |field: &mut [u8], value: u64| {
        let text = format!("{value:0width$o}\0", width = field.len() - 1);
        field.copy_from_slice(text.as_bytes());
    };
    octal(&mut header[100..108], 0o644);
    octal(&mut header[108..116], 0);
    octal(&mut header[116..124], 0);
    octal(&mut header[124..136], bytes.len() as u64);
    octal(&mut header[136..148], 0);
    header[156] = b'0';
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    // The checksum is computed with its own field as spaces.
    header[148..156].fill(b' ');
    let sum: u64 = header.iter().map(|&b| u64::from(b)).sum();
    let text = format!("{sum:06o}\0 ");
    header[148..156].copy_from_slice(text.as_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(bytes);
    out.resize(out.len().next_multiple_of(512), 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_built_container_reads_back() {
        let built_at = DateTime::from_timestamp(1_764_668_129, 0).unwrap();
        let container =
            unsigned_container("daily", 27_500, built_at, &[("daily.ndb", b"X:0:*:41\n")]);
        assert_eq!(container.len() % 512, 0);
        let header = read_header(&container).unwrap();
        assert_eq!(
            header,
            ContainerHeader {
                version: 27_500,
                signatures: 1,
                functionality_level: 90,
                built_at,
            }
        );
        assert_eq!(&container[512 + 257..512 + 262], b"ustar");
    }

    #[test]
    fn other_files_are_not_containers() {
        assert!(read_header(b"ClamAV-VDB:short").is_err());
        let mut plain = b"Airlock.Test.EICAR:0:*:45494341".to_vec();
        plain.resize(HEADER_LEN, b' ');
        assert!(read_header(&plain).is_err());
        let mut bad_time = b"ClamAV-VDB:date:1:2:90:m:d:b:soon".to_vec();
        bad_time.resize(HEADER_LEN, b' ');
        let err = read_header(&bad_time).unwrap_err();
        assert!(err.to_string().contains("build time"), "{err}");
    }
}
