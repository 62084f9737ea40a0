//! The few EXIF facts worth keeping: orientation, camera, capture time and whether GPS
//! data was present. The EXIF block itself never reaches an output.
//!
//! This is a minimal reader of the TIFF structure, not a general EXIF library: it looks
//! at IFD0 (orientation, make, model and the two sub-IFD pointers) and at the EXIF IFD
//! (capture time), reads only the values of those four fields, and learns whether GPS data
//! is present from the GPS IFD's entry count without reading any GPS value. It allocates
//! nothing but the two short strings it returns, and its work is bounded by
//! [`MAX_EXIF_BYTES`]: a block that points many entries at the same large value, or
//! splits a value into thousands of strings, costs no more than any other.

/// Bytes of an EXIF block that are looked at; anything further is taken as absent. The
/// fields read here sit at the start of real blocks (a JPEG cannot carry more than 64 KiB
/// of EXIF in one segment anyway); the rest is thumbnails and maker notes.
pub(crate) const MAX_EXIF_BYTES: usize = 64 * 1024;

/// What the EXIF block said, reduced to safe, display-ready values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ExifSummary {
    /// EXIF orientation 1..=8 (1 when absent or out of range).
    pub orientation: u16,
    pub camera_make: Option<String>,
    pub camera_model: Option<String>,
    /// `DateTimeOriginal` as ISO 8601 local time, `YYYY-MM-DDTHH:MM:SS`.
    pub captured_at: Option<String>,
    /// The GPS IFD is present and has entries. The coordinates themselves are never read.
    pub gps_present: bool,
}

/// Longest camera string kept; anything longer is not a real make or model.
const MAX_TEXT_CHARS: usize = 64;

const TAG_MAKE: u16 = 0x010F;
const TAG_MODEL: u16 = 0x0110;
const TAG_ORIENTATION: u16 = 0x0112;
const TAG_EXIF_IFD: u16 = 0x8769;
const TAG_GPS_IFD: u16 = 0x8825;
const TAG_DATE_TIME_ORIGINAL: u16 = 0x9003;

const TYPE_BYTE: u16 = 1;
const TYPE_ASCII: u16 = 2;
const TYPE_SHORT: u16 = 3;
const TYPE_LONG: u16 = 4;
/// An IFD offset; some writers type sub-IFD pointers so instead of LONG.
const TYPE_IFD: u16 = 13;

/// A TIFF structure: bounds-checked reads in its byte order.
struct Tiff<'a> {
    data: &'a [u8],
    big_endian: bool,
}

/// One 12-byte IFD entry.
#[derive(Clone, Copy)]
struct Entry {
    tag: u16,
    kind: u16,
    count: u32,
    /// Where the entry's 4-byte value-or-offset field is.
    field: usize,
}

impl<'a> Tiff<'a> {
    fn u16_at(&self, at: usize) -> Option<u16> {
        let bytes: [u8; 2] = self.data.get(at..at.checked_add(2)?)?.try_into().ok()?;
        Some(if self.big_endian {
            u16::from_be_bytes(bytes)
        } else {
            u16::from_le_bytes(bytes)
        })
    }

    fn u32_at(&self, at: usize) -> Option<u32> {
        let bytes: [u8; 4] = self.data.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(if self.big_endian {
            u32::from_be_bytes(bytes)
        } else {
            u32::from_le_bytes(bytes)
        })
    }

    /// The entries of the IFD at `offset` that lie inside the block (a count running past
    /// the end is cut short, as a truncated block would be).
    fn entries(&self, offset: u32) -> impl Iterator<Item = Entry> + '_ {
        let start = usize::try_from(offset).ok();
        let count = start.and_then(|start| self.u16_at(start)).unwrap_or(0);
        let first = start.map_or(0, |start| start.saturating_add(2));
        (0..usize::from(count))
            .map(move |i| first.saturating_add(i * 12))
            .take_while(|at| at.saturating_add(12) <= self.data.len())
            .filter_map(|at| {
                Some(Entry {
                    tag: self.u16_at(at)?,
                    kind: self.u16_at(at + 2)?,
                    count: self.u32_at(at + 4)?,
                    field: at + 8,
                })
            })
    }

    /// The bytes of an entry's value: inside the entry when they fit in 4 bytes, else at
    /// the offset it holds. `None` when they do not lie inside the block.
    fn value(&self, entry: Entry, unit: usize) -> Option<&'a [u8]> {
        let len = usize::try_from(entry.count).ok()?.checked_mul(unit)?;
        let start = if len <= 4 {
            entry.field
        } else {
            usize::try_from(self.u32_at(entry.field)?).ok()?
        };
        self.data.get(start..start.checked_add(len)?)
    }

    /// First value of a BYTE, SHORT, LONG or IFD entry.
    fn uint(&self, entry: Entry) -> Option<u32> {
        if entry.count == 0 {
            return None;
        }
        match entry.kind {
            TYPE_BYTE => self.data.get(entry.field).copied().map(u32::from),
            TYPE_SHORT => self.u16_at(entry.field).map(u32::from),
            TYPE_LONG | TYPE_IFD => self.u32_at(entry.field),
            _ => None,
        }
    }

    /// The offset in a sub-IFD pointer entry.
    fn pointer(&self, entry: Entry) -> Option<u32> {
        matches!(entry.kind, TYPE_LONG | TYPE_IFD)
            .then(|| self.uint(entry))
            .flatten()
    }

    /// The first string of an ASCII entry (up to its first zero byte), at most `max` bytes
    /// of it.
    fn ascii(&self, entry: Entry, max: usize) -> Option<&'a [u8]> {
        if entry.kind != TYPE_ASCII {
            return None;
        }
        let value = self.value(entry, 1)?;
        let end = memchr::memchr(0, value).unwrap_or(value.len());
        Some(&value[..end.min(max)])
    }
}

/// Reads the summary from a raw TIFF-structured EXIF block. A damaged block yields
/// whatever could be read (at worst nothing): bad metadata is no reason to refuse an image.
pub(crate) fn summarize(block: &[u8]) -> ExifSummary {
    let mut summary = ExifSummary {
        orientation: 1,
        ..ExifSummary::default()
    };
    let data = &block[..block.len().min(MAX_EXIF_BYTES)];
    let big_endian = match data.get(..4) {
        Some(b"MM\0*") => true,
        Some(b"II*\0") => false,
        _ => return summary,
    };
    let tiff = Tiff { data, big_endian };
    let Some(ifd0) = tiff.u32_at(4) else {
        return summary;
    };
    let mut exif_ifd = None;
    // The first of a repeated tag counts; later copies are ignored.
    let mut seen = [false; 5];
    for entry in tiff.entries(ifd0) {
        let slot = match entry.tag {
            TAG_ORIENTATION => 0,
            TAG_MAKE => 1,
            TAG_MODEL => 2,
            TAG_EXIF_IFD => 3,
            TAG_GPS_IFD => 4,
            _ => continue,
        };
        if std::mem::replace(&mut seen[slot], true) {
            continue;
        }
        match entry.tag {
            TAG_ORIENTATION => {
                summary.orientation = tiff
                    .uint(entry)
                    .and_then(|v| u16::try_from(v).ok())
                    .filter(|v| (1..=8).contains(v))
                    .unwrap_or(1);
            }
            TAG_MAKE => summary.camera_make = tiff.ascii(entry, 4 * MAX_TEXT_CHARS).and_then(text),
            TAG_MODEL => {
                summary.camera_model = tiff.ascii(entry, 4 * MAX_TEXT_CHARS).and_then(text);
            }
            TAG_EXIF_IFD => exif_ifd = tiff.pointer(entry),
            _ => {
                // Only the entry count: the GPS values are never parsed.
                summary.gps_present = tiff
                    .pointer(entry)
                    .and_then(|offset| tiff.u16_at(usize::try_from(offset).ok()?))
                    .is_some_and(|count| count > 0);
            }
        }
    }
    if let Some(offset) = exif_ifd.filter(|&offset| offset != ifd0) {
        summary.captured_at = tiff
            .entries(offset)
            .find(|entry| entry.tag == TAG_DATE_TIME_ORIGINAL)
            .and_then(|entry| tiff.ascii(entry, 19))
            .and_then(timestamp);
    }
    summary
}

/// A string field, with control characters removed and trimmed; `None` when empty.
fn text(raw: &[u8]) -> Option<String> {
    let text: String = String::from_utf8_lossy(raw)
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_TEXT_CHARS)
        .collect();
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// `YYYY:MM:DD HH:MM:SS` as `YYYY-MM-DDTHH:MM:SS`, when it is a plausible time.
fn timestamp(raw: &[u8]) -> Option<String> {
    if raw.len() < 19 || [raw[4], raw[7], raw[10], raw[13], raw[16]] != *b":: ::" {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        raw[range].iter().try_fold(0u32, |acc, &digit| {
            digit
                .is_ascii_digit()
                .then(|| acc * 10 + u32::from(digit - b'0'))
        })
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    let valid = (1..=12).contains(&month)
        && (1..=31).contains(&day)
        && hour < 24
        && minute < 60
        && second < 61;
    valid.then(|| format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(t: &mut Vec<u8>, tag: u16, kind: u16, count: u32, value: [u8; 4]) {
        t.extend_from_slice(&tag.to_le_bytes());
        t.extend_from_slice(&kind.to_le_bytes());
        t.extend_from_slice(&count.to_le_bytes());
        t.extend_from_slice(&value);
    }

    #[test]
    fn garbage_yields_defaults() {
        let summary = summarize(b"definitely not TIFF");
        assert_eq!(summary.orientation, 1);
        assert_eq!(summary.camera_make, None);
        assert!(!summary.gps_present);
    }

    #[test]
    fn reads_orientation_from_a_minimal_block() {
        // Little-endian TIFF, one IFD with Orientation = 6 (SHORT).
        let mut tiff = b"II*\0\x08\0\0\0".to_vec();
        tiff.extend_from_slice(&1u16.to_le_bytes());
        entry(&mut tiff, TAG_ORIENTATION, TYPE_SHORT, 1, [6, 0, 0, 0]);
        tiff.extend_from_slice(&0u32.to_le_bytes());
        assert_eq!(summarize(&tiff).orientation, 6);
    }

    #[test]
    fn out_of_block_values_and_pointers_are_ignored() {
        let mut tiff = b"II*\0\x08\0\0\0".to_vec();
        tiff.extend_from_slice(&4u16.to_le_bytes());
        // Make: 1000 bytes at an offset past the end.
        entry(&mut tiff, TAG_MAKE, TYPE_ASCII, 1000, 60u32.to_le_bytes());
        // Model: inline, short.
        entry(&mut tiff, TAG_MODEL, TYPE_ASCII, 4, *b"X1\0\0");
        // EXIF IFD pointing at IFD0 itself (a loop), GPS IFD far outside.
        entry(&mut tiff, TAG_EXIF_IFD, TYPE_LONG, 1, 8u32.to_le_bytes());
        entry(&mut tiff, TAG_GPS_IFD, TYPE_LONG, 1, u32::MAX.to_le_bytes());
        tiff.extend_from_slice(&0u32.to_le_bytes());
        let summary = summarize(&tiff);
        assert_eq!(summary.camera_make, None);
        assert_eq!(summary.camera_model.as_deref(), Some("X1"));
        assert_eq!(summary.captured_at, None);
        assert!(!summary.gps_present);
    }

    #[test]
    fn reads_a_little_endian_block_with_ifd_typed_pointers() {
        // Header | IFD0 (3 entries) at 8 | EXIF IFD at 50 | GPS IFD at 68 | time at 86.
        let mut tiff = b"II*\0\x08\0\0\0".to_vec();
        tiff.extend_from_slice(&3u16.to_le_bytes());
        entry(&mut tiff, TAG_MAKE, TYPE_ASCII, 4, *b"Abc\0");
        entry(&mut tiff, TAG_EXIF_IFD, TYPE_IFD, 1, 50u32.to_le_bytes());
        entry(&mut tiff, TAG_GPS_IFD, TYPE_LONG, 1, 68u32.to_le_bytes());
        tiff.extend_from_slice(&0u32.to_le_bytes());
        assert_eq!(tiff.len(), 50);
        tiff.extend_from_slice(&1u16.to_le_bytes());
        entry(
            &mut tiff,
            TAG_DATE_TIME_ORIGINAL,
            TYPE_ASCII,
            20,
            86u32.to_le_bytes(),
        );
        tiff.extend_from_slice(&0u32.to_le_bytes());
        tiff.extend_from_slice(&1u16.to_le_bytes());
        entry(&mut tiff, 0x0001, TYPE_ASCII, 2, *b"S\0\0\0");
        tiff.extend_from_slice(&0u32.to_le_bytes());
        assert_eq!(tiff.len(), 86);
        tiff.extend_from_slice(b"2001:02:03 04:05:06\0");
        let summary = summarize(&tiff);
        assert_eq!(summary.orientation, 1);
        assert_eq!(summary.camera_make.as_deref(), Some("Abc"));
        assert_eq!(summary.camera_model, None);
        assert_eq!(summary.captured_at.as_deref(), Some("2001-02-03T04:05:06"));
        assert!(summary.gps_present);
    }

    #[test]
    fn timestamps_must_be_well_formed() {
        assert_eq!(
            timestamp(b"2023:07:14 09:26:53").as_deref(),
            Some("2023-07-14T09:26:53")
        );
        assert_eq!(timestamp(b"    :  :     :  :  "), None);
        assert_eq!(timestamp(b"2023:13:14 09:26:53"), None);
        assert_eq!(timestamp(b"2023-07-14 09:26:53"), None);
        assert_eq!(timestamp(b"2023:07:14"), None);
    }
}
