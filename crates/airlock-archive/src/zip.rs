//! Zip, read from its raw records: the end record, the central directory, every local
//! header, then each member inflated with caps.

use std::io::{self, Read, SeekFrom};

use crate::judge::{Compressed, Judge, MemberReader, ReadSeek, Stop, join, unscannable, which};
use crate::{ArchiveFinding, Finding};

const END_RECORD: &[u8; 4] = b"PK\x05\x06";
const END_RECORD_LEN: usize = 22;
const ZIP64_LOCATOR: &[u8; 4] = b"PK\x06\x07";
const CENTRAL_HEADER: &[u8; 4] = b"PK\x01\x02";
const CENTRAL_HEADER_LEN: usize = 46;
const LOCAL_HEADER: &[u8; 4] = b"PK\x03\x04";
const LOCAL_HEADER_LEN: usize = 30;

const STORED: u16 = 0;
const DEFLATED: u16 = 8;
const BZIP2: u16 = 12;
const AES_METHOD: u16 = 99;

const EXTRA_ZIP64: u16 = 0x0001;
const EXTRA_STRONG_ENCRYPTION: u16 = 0x0017;
const EXTRA_AES: u16 = 0x9901;

const FLAG_ENCRYPTED: u16 = 1;
const FLAG_STRONG_ENCRYPTION: u16 = 1 << 6;
const FLAG_MASKED_DIRECTORY: u16 = 1 << 13;

/// One central directory entry, as much as the judgement needs.
struct Entry {
    /// For messages, with the path of the archive holding it.
    name: String,
    /// The name's first bytes and full length, to compare with the local header.
    name_prefix: Vec<u8>,
    name_len: usize,
    flags: u16,
    method: u16,
    compressed: u64,
    uncompressed: u64,
    local_offset: u64,
    /// Where the member's data starts, once its local header is read.
    data_start: u64,
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// The ids of an extra field's records (malformed trailing bytes are ignored).
fn extra_ids(extra: &[u8]) -> Vec<u16> {
    let mut ids = Vec::new();
    let mut at = 0;
    while at + 4 <= extra.len() {
        ids.push(u16_at(extra, at));
        at += 4 + usize::from(u16_at(extra, at + 2));
    }
    ids
}

fn method_name(method: u16) -> &'static str {
    match method {
        1 => "shrink",
        2..=5 => "reduce",
        6 => "implode",
        9 => "deflate64",
        14 => "lzma",
        93 => "zstd",
        95 => "xz",
        96 => "jpeg",
        97 => "wavpack",
        98 => "ppmd",
        _ => "unknown",
    }
}

/// The encryption an entry declares, if any.
fn encryption(flags: u16, method: u16, extra: &[u8]) -> Option<&'static str> {
    let ids = extra_ids(extra);
    if method == AES_METHOD || ids.contains(&EXTRA_AES) {
        Some("AES")
    } else if flags & FLAG_STRONG_ENCRYPTION != 0 || ids.contains(&EXTRA_STRONG_ENCRYPTION) {
        Some("strong encryption")
    } else if flags & FLAG_ENCRYPTED != 0 {
        Some("ZipCrypto")
    } else {
        None
    }
}

fn encrypted(name: &str, how: &str) -> Stop {
    ArchiveFinding::new(
        Finding::Encrypted,
        format!("member {name} is encrypted ({how})"),
    )
    .into()
}

fn zip64(what: &str) -> Stop {
    unscannable(format!(
        "{what} uses ZIP64 records, which the scanner cannot read"
    ))
}

impl Judge<'_> {
    pub(crate) fn judge_zip(
        &mut self,
        source: &mut dyn ReadSeek,
        len: u64,
        depth: u32,
        name: &str,
    ) -> Result<(), Stop> {
        let archive = which(name);
        let (directory_offset, directory_size, entries) =
            self.zip_end_record(source, len, &archive)?;
        let mut list = self.zip_directory(
            source,
            (directory_offset, directory_size, entries),
            name,
            &archive,
        )?;
        self.zip_local_headers(source, &mut list, directory_offset, &archive)?;
        self.zip_inflate(source, &list, depth, &archive)
    }

    fn zip_read_error(&self, e: &io::Error, archive: &str, what: &str) -> Stop {
        self.classify(e, &format!("{archive}: {what}"))
    }

    /// Finds and checks the end record: where the central directory is, and its entries.
    fn zip_end_record(
        &mut self,
        source: &mut dyn ReadSeek,
        len: u64,
        archive: &str,
    ) -> Result<(u64, u64, u16), Stop> {
        let read_err =
            |judge: &Self, e: &io::Error, what: &str| judge.zip_read_error(e, archive, what);
        // The end record: the last signature whose comment fits in the file, preferring one
        // whose comment ends exactly at the end of the file.
        let tail_len = len.min((END_RECORD_LEN + usize::from(u16::MAX)) as u64);
        let tail_start = len - tail_len;
        let mut tail = Vec::new();
        source
            .seek(SeekFrom::Start(tail_start))
            .and_then(|_| (&mut *source).take(tail_len).read_to_end(&mut tail))
            .map_err(|e| read_err(self, &e, "reading the end record"))?;
        let candidates = (0..=tail.len().saturating_sub(END_RECORD_LEN))
            .rev()
            .filter(|&at| tail.len() >= END_RECORD_LEN && &tail[at..at + 4] == END_RECORD)
            .filter(|&at| at + END_RECORD_LEN + usize::from(u16_at(&tail, at + 20)) <= tail.len());
        let mut end_at = None;
        for at in candidates {
            let exact = at + END_RECORD_LEN + usize::from(u16_at(&tail, at + 20)) == tail.len();
            if exact {
                end_at = Some(at);
                break;
            }
            end_at.get_or_insert(at);
        }
        let Some(end_at) = end_at else {
            return Err(unscannable(format!(
                "{archive} has no zip end of central directory record (truncated or corrupt)"
            )));
        };
        let end = &tail[end_at..end_at + END_RECORD_LEN];
        let end_pos = tail_start + end_at as u64;
        if end_at >= 20 && &tail[end_at - 20..end_at - 16] == ZIP64_LOCATOR {
            return Err(zip64(archive));
        }
        let (disk, directory_disk) = (u16_at(end, 4), u16_at(end, 6));
        let (entries_here, entries) = (u16_at(end, 8), u16_at(end, 10));
        let (directory_size, directory_offset) = (u32_at(end, 12), u32_at(end, 16));
        if entries == u16::MAX || directory_size == u32::MAX || directory_offset == u32::MAX {
            return Err(zip64(archive));
        }
        if disk != 0 || directory_disk != 0 || entries_here != entries {
            return Err(unscannable(format!(
                "{archive} spans several disks (disk {disk}, central directory on disk {directory_disk})"
            )));
        }
        let (directory_size, directory_offset) =
            (u64::from(directory_size), u64::from(directory_offset));
        if directory_offset + directory_size > end_pos {
            return Err(unscannable(format!(
                "{archive}: the central directory (offset {directory_offset}, {directory_size} bytes) runs past its end record at {end_pos}"
            )));
        }
        Ok((directory_offset, directory_size, entries))
    }

    /// Reads the central directory, judging each entry's declarations.
    fn zip_directory(
        &mut self,
        source: &mut dyn ReadSeek,
        (directory_offset, directory_size, entries): (u64, u64, u16),
        name: &str,
        archive: &str,
    ) -> Result<Vec<Entry>, Stop> {
        let read_err =
            |judge: &Self, e: &io::Error, what: &str| judge.zip_read_error(e, archive, what);

        // The central directory, entry by entry: members are counted as they are read, so
        // memory stays within the member limits.
        source
            .seek(SeekFrom::Start(directory_offset))
            .map_err(|e| read_err(self, &e, "seeking to the central directory"))?;
        let mut directory = io::BufReader::new((&mut *source).take(directory_size));
        let mut list: Vec<Entry> = Vec::new();
        let mut declared_total: u64 = 0;
        for index in 0..entries {
            let mut fixed = [0u8; CENTRAL_HEADER_LEN];
            directory
                .read_exact(&mut fixed)
                .map_err(|e| read_err(self, &e, &format!("central directory entry {index}")))?;
            if &fixed[..4] != CENTRAL_HEADER {
                return Err(unscannable(format!(
                    "{archive}: central directory entry {index} has no valid signature"
                )));
            }
            let (name_len, extra_len, comment_len) = (
                usize::from(u16_at(&fixed, 28)),
                usize::from(u16_at(&fixed, 30)),
                usize::from(u16_at(&fixed, 32)),
            );
            let mut variable = vec![0u8; name_len + extra_len + comment_len];
            directory
                .read_exact(&mut variable)
                .map_err(|e| read_err(self, &e, &format!("central directory entry {index}")))?;
            let raw_name = &variable[..name_len];
            let extra = &variable[name_len..name_len + extra_len];
            let member = join(name, raw_name);
            self.count_member(&member)?;

            let flags = u16_at(&fixed, 8);
            let method = u16_at(&fixed, 10);
            let compressed = u32_at(&fixed, 20);
            let uncompressed = u32_at(&fixed, 24);
            let disk_start = u16_at(&fixed, 34);
            let local_offset = u32_at(&fixed, 42);
            if let Some(how) = encryption(flags, method, extra) {
                return Err(encrypted(&member, how));
            }
            if flags & FLAG_MASKED_DIRECTORY != 0 {
                return Err(encrypted(&member, "masked central directory"));
            }
            if [compressed, uncompressed, local_offset].contains(&u32::MAX)
                || disk_start == u16::MAX
                || extra_ids(extra).contains(&EXTRA_ZIP64)
            {
                return Err(zip64(&format!("member {member}")));
            }
            if disk_start != 0 {
                return Err(unscannable(format!(
                    "member {member} starts on disk {disk_start} of a multi-disk zip"
                )));
            }
            if ![STORED, DEFLATED, BZIP2].contains(&method) {
                return Err(unscannable(format!(
                    "member {member} uses compression method {method} ({}), which airlock cannot inflate",
                    method_name(method)
                )));
            }
            let (compressed, uncompressed) = (u64::from(compressed), u64::from(uncompressed));
            if method == STORED && compressed != uncompressed {
                return Err(unscannable(format!(
                    "member {member} is stored but declares {compressed} bytes stored and {uncompressed} uncompressed"
                )));
            }
            // Declared sizes reject early; the same limits are enforced on the bytes
            // actually inflated below, since declarations can lie.
            self.caps
                .check_member(&member, uncompressed, Some(compressed))?;
            declared_total += uncompressed;
            self.caps
                .check_total(self.shared.borrow().total_plus(declared_total))?;
            list.push(Entry {
                name: member,
                name_prefix: raw_name[..name_len.min(256)].to_vec(),
                name_len,
                flags,
                method,
                compressed,
                uncompressed,
                local_offset: u64::from(local_offset),
                data_start: 0,
            });
        }
        let mut rest = [0u8; 1];
        let more = directory
            .read(&mut rest)
            .map_err(|e| read_err(self, &e, "central directory"))?;
        if more > 0 {
            return Err(unscannable(format!(
                "{archive}: the central directory holds more than the {entries} entries its end record declares"
            )));
        }
        Ok(list)
    }

    /// Checks the local headers against the directory, and that members do not overlap.
    fn zip_local_headers(
        &mut self,
        source: &mut dyn ReadSeek,
        list: &mut [Entry],
        directory_offset: u64,
        archive: &str,
    ) -> Result<(), Stop> {
        let read_err =
            |judge: &Self, e: &io::Error, what: &str| judge.zip_read_error(e, archive, what);
        // Local headers, in file order: each must agree with its central entry, and each
        // member's data must end before the next member starts.
        list.sort_by_key(|entry| entry.local_offset);
        for index in 0..list.len() {
            let next_start = list
                .get(index + 1)
                .map_or(directory_offset, |next| next.local_offset);
            let entry = &list[index];
            let mut fixed = [0u8; LOCAL_HEADER_LEN];
            source
                .seek(SeekFrom::Start(entry.local_offset))
                .and_then(|_| source.read_exact(&mut fixed))
                .map_err(|e| {
                    read_err(self, &e, &format!("local header of member {}", entry.name))
                })?;
            if &fixed[..4] != LOCAL_HEADER {
                return Err(unscannable(format!(
                    "member {}: no local header at offset {}",
                    entry.name, entry.local_offset
                )));
            }
            let (name_len, extra_len) = (
                usize::from(u16_at(&fixed, 26)),
                usize::from(u16_at(&fixed, 28)),
            );
            let mut variable = vec![0u8; name_len + extra_len];
            source.read_exact(&mut variable).map_err(|e| {
                read_err(self, &e, &format!("local header of member {}", entry.name))
            })?;
            let (flags, method) = (u16_at(&fixed, 6), u16_at(&fixed, 8));
            let extra = &variable[name_len..];
            if let Some(how) = encryption(flags, method, extra) {
                return Err(encrypted(&entry.name, how));
            }
            if extra_ids(extra).contains(&EXTRA_ZIP64) {
                return Err(zip64(&format!("member {}", entry.name)));
            }
            if method != entry.method
                || name_len != entry.name_len
                || !variable[..name_len].starts_with(&entry.name_prefix)
                || (flags ^ entry.flags) & FLAG_ENCRYPTED != 0
            {
                return Err(unscannable(format!(
                    "member {}: its local header disagrees with the central directory",
                    entry.name
                )));
            }
            let data_start = entry.local_offset + (LOCAL_HEADER_LEN + name_len + extra_len) as u64;
            let data_end = data_start + entry.compressed;
            if data_end > next_start {
                let next = list
                    .get(index + 1)
                    .map_or_else(|| "the central directory".to_owned(), |n| n.name.clone());
                return Err(unscannable(format!(
                    "member {} (data {data_start}..{data_end}) overlaps {next} at {next_start}",
                    entry.name
                )));
            }
            list[index].data_start = data_start;
        }
        Ok(())
    }

    /// Inflates every member, counting what comes out.
    fn zip_inflate(
        &mut self,
        source: &mut dyn ReadSeek,
        list: &[Entry],
        depth: u32,
        archive: &str,
    ) -> Result<(), Stop> {
        let read_err =
            |judge: &Self, e: &io::Error, what: &str| judge.zip_read_error(e, archive, what);
        for entry in list {
            if entry.uncompressed == 0 && entry.compressed == 0 {
                continue;
            }
            source
                .seek(SeekFrom::Start(entry.data_start))
                .map_err(|e| read_err(self, &e, &format!("member {}", entry.name)))?;
            let raw = (&mut *source).take(entry.compressed);
            let decoder: Box<dyn Read + '_> = match entry.method {
                STORED => Box::new(raw),
                DEFLATED => Box::new(flate2::read::DeflateDecoder::new(raw)),
                BZIP2 => Box::new(bzip2::read::BzDecoder::new(raw)),
                other => unreachable!("method {other} was rejected above"),
            };
            let mut data = MemberReader::new(
                self,
                decoder,
                &entry.name,
                Some(entry.uncompressed),
                Compressed::Known(entry.compressed),
            );
            self.member_content(&entry.name, depth, &mut data)?;
            data.finish()?;
        }
        Ok(())
    }
}
