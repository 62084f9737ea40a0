//! Test inputs whose verdicts prove how a clamd is configured, built in memory.
//!
//! Nothing here is written to disk: the EICAR string is assembled from pieces so it never
//! sits in the source in one piece, and the zips are built byte by byte (stored members,
//! no compression), so no zip library is needed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The EICAR anti-virus test string (68 bytes). Every signature database, including the
/// project's test signatures, reports it.
#[must_use]
pub fn eicar() -> Vec<u8> {
    [
        r"X5O!P%@AP[4\PZX54(P^)7CC)7}$",
        "EICAR-STANDARD-",
        "ANTIVIRUS-",
        "TEST-FILE!$H+H*",
    ]
    .concat()
    .into_bytes()
}

/// A short text that differs on every call (time, process, counter). clamd caches the
/// hashes of clean files and skips them when seen again; a fresh payload makes a canary
/// be scanned for real every time.
#[must_use]
pub fn unique_payload() -> Vec<u8> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "airlock clamd self-test {nanos} {} {}\n",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
    .into_bytes()
}

/// A zip with one stored member `name` holding `content`, encrypted with the traditional
/// PKWARE cipher (`ZipCrypto`) under `password`. clamd cannot read the member, and reports
/// `Heuristics.Encrypted.Zip` only with `AlertEncrypted` (or `AlertEncryptedArchive`) on.
#[must_use]
pub fn encrypted_zip(name: &str, content: &[u8], password: &[u8]) -> Vec<u8> {
    let crc = crc32(content);
    let mut keys = ZipCryptoKeys::new(password);
    // The 12-byte encryption header: 11 arbitrary bytes, then the CRC's high byte, which
    // readers use to check the password.
    let mut header = [0_u8; 12];
    for (i, byte) in header.iter_mut().enumerate().take(11) {
        *byte = u8::try_from((i * 37 + 11) % 256).expect("below 256");
    }
    header[11] = crc.to_le_bytes()[3];
    let mut data = Vec::with_capacity(12 + content.len());
    data.extend(header.iter().chain(content).map(|&b| keys.encrypt(b)));
    let mut zip = ZipWriter::default();
    zip.add(name, content.len(), crc, &data, ENCRYPTED);
    zip.finish()
}

/// `depth` zips nested in one another (each the only, stored member of the next), with
/// `innermost` as the member of the deepest one. clamd stops unpacking at `MaxRecursion`
/// levels and, with `AlertExceedsMax` on, reports `Heuristics.Limits.Exceeded.MaxRecursion`
/// when `depth` is at least its `MaxRecursion`. About 110 bytes per level.
#[must_use]
pub fn nested_zip(depth: usize, innermost: &[u8]) -> Vec<u8> {
    let mut current = innermost.to_vec();
    for level in 0..depth {
        let name = if level == 0 {
            "canary.txt".to_owned()
        } else {
            format!("level-{level}.zip")
        };
        current = stored_zip(&[(&name, &current)]);
    }
    current
}

/// A zip of stored (uncompressed) members, in order.
#[must_use]
pub fn stored_zip(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut zip = ZipWriter::default();
    for (name, content) in members {
        zip.add(name, content.len(), crc32(content), content, 0);
    }
    zip.finish()
}

/// General purpose flag bit 0: the member is encrypted.
const ENCRYPTED: u16 = 1;

/// Writes a zip of stored members (PKWARE APPNOTE 4.3: local headers, central directory,
/// end of central directory; no ZIP64, so every size must fit in 32 bits).
#[derive(Default)]
struct ZipWriter {
    body: Vec<u8>,
    central: Vec<u8>,
    entries: u16,
}

impl ZipWriter {
    fn add(&mut self, name: &str, size: usize, crc: u32, data: &[u8], flags: u16) {
        let offset = u32::try_from(self.body.len()).expect("canary zips are small");
        let size = u32::try_from(size).expect("canary zips are small");
        let stored = u32::try_from(data.len()).expect("canary zips are small");
        let name_len = u16::try_from(name.len()).expect("short member names");

        let body = &mut self.body;
        body.extend(0x0403_4b50_u32.to_le_bytes());
        body.extend(20_u16.to_le_bytes()); // version needed: 2.0
        body.extend(flags.to_le_bytes());
        body.extend(0_u16.to_le_bytes()); // method: stored
        body.extend([0_u8; 4]); // modification time and date
        body.extend(crc.to_le_bytes());
        body.extend(stored.to_le_bytes());
        body.extend(size.to_le_bytes());
        body.extend(name_len.to_le_bytes());
        body.extend(0_u16.to_le_bytes()); // extra field length
        body.extend(name.as_bytes());
        body.extend(data);

        let central = &mut self.central;
        central.extend(0x0201_4b50_u32.to_le_bytes());
        central.extend(20_u16.to_le_bytes()); // version made by
        central.extend(20_u16.to_le_bytes()); // version needed
        central.extend(flags.to_le_bytes());
        central.extend(0_u16.to_le_bytes()); // method: stored
        central.extend([0_u8; 4]); // modification time and date
        central.extend(crc.to_le_bytes());
        central.extend(stored.to_le_bytes());
        central.extend(size.to_le_bytes());
        central.extend(name_len.to_le_bytes());
        central.extend([0_u8; 8]); // extra and comment lengths, disk, internal attributes
        central.extend([0_u8; 4]); // external attributes
        central.extend(offset.to_le_bytes());
        central.extend(name.as_bytes());
        self.entries += 1;
    }

    fn finish(mut self) -> Vec<u8> {
        let central_offset = u32::try_from(self.body.len()).expect("canary zips are small");
        let central_len = u32::try_from(self.central.len()).expect("canary zips are small");
        self.body.append(&mut self.central);
        let end = &mut self.body;
        end.extend(0x0605_4b50_u32.to_le_bytes());
        end.extend([0_u8; 4]); // this disk, the central directory's disk
        end.extend(self.entries.to_le_bytes());
        end.extend(self.entries.to_le_bytes());
        end.extend(central_len.to_le_bytes());
        end.extend(central_offset.to_le_bytes());
        end.extend(0_u16.to_le_bytes()); // comment length
        self.body
    }
}

/// The traditional PKWARE stream cipher (APPNOTE 6.1).
struct ZipCryptoKeys([u32; 3]);

impl ZipCryptoKeys {
    fn new(password: &[u8]) -> Self {
        let mut keys = Self([0x1234_5678, 0x2345_6789, 0x3456_7890]);
        for &byte in password {
            keys.update(byte);
        }
        keys
    }

    fn update(&mut self, plain: u8) {
        let [k0, k1, k2] = &mut self.0;
        *k0 = crc32_update(*k0, plain);
        *k1 = k1
            .wrapping_add(*k0 & 0xff)
            .wrapping_mul(134_775_813)
            .wrapping_add(1);
        *k2 = crc32_update(*k2, k1.to_be_bytes()[0]);
    }

    fn encrypt(&mut self, plain: u8) -> u8 {
        let temp = (self.0[2] | 2) & 0xffff;
        let key = (temp.wrapping_mul(temp ^ 1) >> 8).to_le_bytes()[0];
        self.update(plain);
        plain ^ key
    }
}

/// One byte of the reflected CRC-32 (polynomial 0xEDB88320) without pre/post inversion.
fn crc32_update(crc: u32, byte: u8) -> u32 {
    let mut crc = crc ^ u32::from(byte);
    for _ in 0..8 {
        crc = if crc & 1 == 1 {
            (crc >> 1) ^ 0xEDB8_8320
        } else {
            crc >> 1
        };
    }
    crc
}

/// The CRC-32 zip stores for a member.
fn crc32(bytes: &[u8]) -> u32 {
    !bytes.iter().fold(!0, |crc, &b| crc32_update(crc, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn eicar_is_the_68_byte_test_string() {
        let eicar = eicar();
        assert_eq!(eicar.len(), 68);
        assert!(eicar.starts_with(b"X5O!"));
        assert!(eicar.ends_with(b"H+H*"));
    }

    #[test]
    fn unique_payloads_differ() {
        assert_ne!(unique_payload(), unique_payload());
    }

    #[test]
    fn encrypted_member_is_flagged_and_hidden() {
        let zip = encrypted_zip("a.txt", b"secret text", b"pw");
        assert_eq!(&zip[..4], b"PK\x03\x04");
        assert_eq!(u16::from_le_bytes([zip[6], zip[7]]) & ENCRYPTED, ENCRYPTED);
        assert!(!zip.windows(11).any(|w| w == b"secret text"));
        // Stored size covers the 12-byte encryption header.
        assert_eq!(u32::from_le_bytes(zip[18..22].try_into().unwrap()), 11 + 12);
    }

    #[test]
    fn nested_zip_grows_per_level() {
        let one = nested_zip(1, b"x");
        let ten = nested_zip(10, b"x");
        assert!(one.starts_with(b"PK\x03\x04"));
        assert!(ten.len() > one.len() * 9 && ten.len() < 200 * 10);
    }
}
