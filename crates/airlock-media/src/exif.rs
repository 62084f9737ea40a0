//! The few EXIF facts worth keeping: orientation, camera, capture time and whether GPS
//! data was present. The EXIF block itself never reaches an output.

use exif::{Context, In, Reader, Tag, Value};

/// What the EXIF block said, reduced to safe, display-ready values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ExifSummary {
    /// EXIF orientation 1..=8 (1 when absent or out of range).
    pub orientation: u16,
    pub camera_make: Option<String>,
    pub camera_model: Option<String>,
    /// `DateTimeOriginal` as ISO 8601 local time, `YYYY-MM-DDTHH:MM:SS`.
    pub captured_at: Option<String>,
    /// Any GPS field was present. The coordinates themselves are never read out.
    pub gps_present: bool,
}

/// Longest camera string kept; anything longer is not a real make or model.
const MAX_TEXT_CHARS: usize = 64;

/// Reads the summary from a raw TIFF-structured EXIF block. A damaged block yields
/// whatever could be read (at worst nothing): bad metadata is no reason to refuse an image.
pub(crate) fn summarize(tiff: &[u8]) -> ExifSummary {
    let mut summary = ExifSummary {
        orientation: 1,
        ..ExifSummary::default()
    };
    let parsed = Reader::new()
        .continue_on_error(true)
        .read_raw(tiff.to_vec())
        .or_else(|error| error.distill_partial_result(|_| {}));
    let Ok(exif) = parsed else {
        return summary;
    };
    for field in exif.fields() {
        if field.tag.context() == Context::Gps {
            summary.gps_present = true;
            continue;
        }
        if field.ifd_num != In::PRIMARY {
            continue;
        }
        match field.tag {
            Tag::Orientation => {
                summary.orientation = field
                    .value
                    .get_uint(0)
                    .and_then(|v| u16::try_from(v).ok())
                    .filter(|v| (1..=8).contains(v))
                    .unwrap_or(1);
            }
            Tag::Make => summary.camera_make = ascii_text(&field.value),
            Tag::Model => summary.camera_model = ascii_text(&field.value),
            Tag::DateTimeOriginal => summary.captured_at = timestamp(&field.value),
            _ => {}
        }
    }
    summary
}

/// First ASCII string of a field, trimmed, with control characters removed.
fn ascii_text(value: &Value) -> Option<String> {
    let Value::Ascii(strings) = value else {
        return None;
    };
    let raw = strings.first()?;
    let text: String = String::from_utf8_lossy(raw)
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_TEXT_CHARS)
        .collect();
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

fn timestamp(value: &Value) -> Option<String> {
    let Value::Ascii(strings) = value else {
        return None;
    };
    let time = exif::DateTime::from_ascii(strings.first()?).ok()?;
    let valid = (1..=12).contains(&time.month)
        && (1..=31).contains(&time.day)
        && time.hour < 24
        && time.minute < 60
        && time.second < 61;
    valid.then(|| {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            time.year, time.month, time.day, time.hour, time.minute, time.second
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        tiff.extend_from_slice(&0x0112u16.to_le_bytes());
        tiff.extend_from_slice(&3u16.to_le_bytes());
        tiff.extend_from_slice(&1u32.to_le_bytes());
        tiff.extend_from_slice(&[6, 0, 0, 0]);
        tiff.extend_from_slice(&0u32.to_le_bytes());
        assert_eq!(summarize(&tiff).orientation, 6);
    }
}
