//! Decoding of object keys as storage events carry them.

use super::{IntakeError, IntakeProblem};

/// Decodes an object key as S3 event notifications carry it: form-URL encoding, so `+` is a
/// space and `%XX` is the byte `0xXX` (`%2B` a literal plus, `%2F` a slash, `%C3%A9` an `é`).
///
/// A `%` not followed by two hex digits, or bytes that are not UTF-8 once decoded, are errors:
/// guessing would name an object other than the one the event announced.
pub fn decode_key(raw: &str) -> Result<String, IntakeError> {
    decode(raw).map_err(|problem| IntakeError {
        at: "key".to_owned(),
        field: String::new(),
        problem,
    })
}

pub(super) fn decode(raw: &str) -> Result<String, IntakeProblem> {
    let bad = |reason: String| IntakeProblem::BadKey {
        raw: raw.to_owned(),
        reason,
    };
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        match byte {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let high = bytes.get(i + 1).copied().and_then(hex_value);
                let low = bytes.get(i + 2).copied().and_then(hex_value);
                let (Some(high), Some(low)) = (high, low) else {
                    return Err(bad(format!(
                        "'%' at byte {i} is not followed by two hex digits"
                    )));
                };
                out.push(high << 4 | low);
                i += 3;
            }
            other => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|err| {
        bad(format!(
            "decodes to invalid UTF-8 (after {} valid bytes)",
            err.utf8_error().valid_up_to()
        ))
    })
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// Why a decoded key is refused as input: control characters (NUL included) would be printed
/// or logged as terminal commands and cut C strings short, and empty, `.` or `..` segments
/// name another object once a file system or a careless consumer resolves them. Keys airlock
/// makes have none of these.
pub(super) fn hostile(key: &str) -> Option<&'static str> {
    if key.chars().any(char::is_control) {
        return Some("it contains control characters");
    }
    if key.starts_with('/') {
        return Some("it starts with '/'");
    }
    key.split('/').find_map(|segment| match segment {
        "" => Some("it has an empty path segment"),
        "." | ".." => Some("it has a '.' or '..' path segment"),
        _ => None,
    })
}
