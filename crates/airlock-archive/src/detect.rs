//! Archive formats recognised from a file's first bytes.

use serde::{Deserialize, Serialize};

/// How many leading bytes `detect` looks at, at most.
pub const DETECT_LEN: usize = 8 * 1024;

/// A container format airlock recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ArchiveFormat {
    /// Any zip, including OOXML, ODF, JAR and APK containers, and the empty zip.
    Zip,
    Gzip,
    Tar,
    #[serde(rename = "7z")]
    SevenZip,
    /// RAR 4 and 5.
    Rar,
    Bzip2,
    Xz,
    Zstd,
}

impl ArchiveFormat {
    /// Every format, in a fixed order.
    pub const ALL: [Self; 8] = [
        Self::Zip,
        Self::Gzip,
        Self::Tar,
        Self::SevenZip,
        Self::Rar,
        Self::Bzip2,
        Self::Xz,
        Self::Zstd,
    ];

    /// The format's name in messages and policy files.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Zip => "zip",
            Self::Gzip => "gzip",
            Self::Tar => "tar",
            Self::SevenZip => "7z",
            Self::Rar => "rar",
            Self::Bzip2 => "bzip2",
            Self::Xz => "xz",
            Self::Zstd => "zstd",
        }
    }
}

impl std::fmt::Display for ArchiveFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The archive format of a file whose first bytes (up to [`DETECT_LEN`]) are `head`, if any.
#[must_use]
pub fn detect(head: &[u8]) -> Option<ArchiveFormat> {
    let starts = |magic: &[u8]| head.starts_with(magic);
    // Local file header, empty archive (end record only), and the spanned-archive marker
    // that precedes a first local header.
    if starts(b"PK\x03\x04") || starts(b"PK\x05\x06") || starts(b"PK\x07\x08PK\x03\x04") {
        return Some(ArchiveFormat::Zip);
    }
    if starts(&[0x1f, 0x8b]) {
        return Some(ArchiveFormat::Gzip);
    }
    if starts(b"7z\xbc\xaf\x27\x1c") {
        return Some(ArchiveFormat::SevenZip);
    }
    // RAR 4 ("Rar!\x1a\x07\x00") and RAR 5 ("Rar!\x1a\x07\x01\x00").
    if starts(b"Rar!\x1a\x07\x00") || starts(b"Rar!\x1a\x07\x01\x00") {
        return Some(ArchiveFormat::Rar);
    }
    if starts(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        return Some(ArchiveFormat::Xz);
    }
    if starts(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return Some(ArchiveFormat::Zstd);
    }
    // "BZh" then the block size digit, then the block or end-of-stream magic.
    if head.len() >= 10
        && starts(b"BZh")
        && (b'1'..=b'9').contains(&head[3])
        && (head[4..10] == [0x31, 0x41, 0x59, 0x26, 0x53, 0x59]
            || head[4..10] == [0x17, 0x72, 0x45, 0x38, 0x50, 0x90])
    {
        return Some(ArchiveFormat::Bzip2);
    }
    if is_tar_header(head) {
        return Some(ArchiveFormat::Tar);
    }
    None
}

/// A tar header block: the ustar magic at 257, or (old-style tar) a valid header checksum.
fn is_tar_header(head: &[u8]) -> bool {
    if head.len() < 512 {
        return false;
    }
    let block = &head[..512];
    if &block[257..262] == b"ustar" {
        return true;
    }
    // Old-style tar has no magic: accept a block whose name is set and whose checksum field
    // (octal, at 148..156) equals the sum of the block's bytes with that field as spaces.
    if block[0] == 0 {
        return false;
    }
    let Some(stored) = parse_octal(&block[148..156]) else {
        return false;
    };
    let sum: u64 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                u64::from(b' ')
            } else {
                u64::from(b)
            }
        })
        .sum();
    stored == sum
}

fn parse_octal(field: &[u8]) -> Option<u64> {
    let text = field
        .iter()
        .copied()
        .skip_while(|&b| b == b' ')
        .take_while(|&b| b != 0 && b != b' ');
    let mut value: u64 = 0;
    let mut digits = 0;
    for b in text {
        if !(b'0'..=b'7').contains(&b) {
            return None;
        }
        value = value * 8 + u64::from(b - b'0');
        digits += 1;
    }
    (digits > 0).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_numbers() {
        assert_eq!(detect(b"PK\x03\x04rest"), Some(ArchiveFormat::Zip));
        assert_eq!(detect(b"PK\x05\x06\0\0"), Some(ArchiveFormat::Zip));
        assert_eq!(detect(&[0x1f, 0x8b, 8, 0]), Some(ArchiveFormat::Gzip));
        assert_eq!(
            detect(b"7z\xbc\xaf\x27\x1c\0\x04"),
            Some(ArchiveFormat::SevenZip)
        );
        assert_eq!(detect(b"Rar!\x1a\x07\x00x"), Some(ArchiveFormat::Rar));
        assert_eq!(detect(b"Rar!\x1a\x07\x01\x00x"), Some(ArchiveFormat::Rar));
        assert_eq!(detect(b"\xfd7zXZ\0\0\x04"), Some(ArchiveFormat::Xz));
        assert_eq!(
            detect(&[0x28, 0xb5, 0x2f, 0xfd, 0]),
            Some(ArchiveFormat::Zstd)
        );
        assert_eq!(
            detect(b"BZh91AY&SYxxxx"),
            Some(ArchiveFormat::Bzip2),
            "bzip2 block magic"
        );
        assert_eq!(detect(b"BZhello world"), None, "text starting BZh");
        assert_eq!(detect(b"%PDF-1.7"), None);
        assert_eq!(detect(b""), None);
        assert_eq!(detect(b"PK"), None);
    }

    #[test]
    fn old_style_tar_by_checksum() {
        let mut block = [0u8; 512];
        block[..5].copy_from_slice(b"a.txt");
        block[100..108].copy_from_slice(b"0000644\0");
        block[124..136].copy_from_slice(b"00000000005\0");
        block[148..156].copy_from_slice(b"        ");
        let sum: u32 = block.iter().map(|&b| u32::from(b)).sum();
        let field = format!("{sum:06o}\0 ");
        block[148..156].copy_from_slice(field.as_bytes());
        assert_eq!(detect(&block), Some(ArchiveFormat::Tar));
        block[0] = b'b';
        assert_eq!(detect(&block), None, "checksum no longer matches");
    }
}
