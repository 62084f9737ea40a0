//! The first bytes of a quarantined object as text a reviewer can read safely: never
//! rendered as the type the object claims to be.

use std::fmt::Write;

/// A classic hex dump: offset, 16 bytes in hex, and the printable ASCII of them (anything
/// else, including every control character, as `.`).
#[must_use]
pub fn hex_dump(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 4 + 16);
    for (row, chunk) in bytes.chunks(16).enumerate() {
        let _ = write!(out, "{:08x}  ", row * 16);
        for column in 0..16 {
            match chunk.get(column) {
                Some(byte) => {
                    let _ = write!(out, "{byte:02x} ");
                }
                None => out.push_str("   "),
            }
            if column == 7 {
                out.push(' ');
            }
        }
        out.push_str(" |");
        out.extend(chunk.iter().map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                char::from(b)
            } else {
                '.'
            }
        }));
        out.push_str("|\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::hex_dump;

    #[test]
    fn rows_of_sixteen_with_printable_ascii_only() {
        let dump = hex_dump(b"MZ\x90\0<script>\x1b[31m alert(1)");
        let lines: Vec<_> = dump.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(
            lines[0],
            "00000000  4d 5a 90 00 3c 73 63 72  69 70 74 3e 1b 5b 33 31  |MZ..<script>.[31|"
        );
        assert!(
            lines[1].starts_with("00000010  6d 20 61 6c"),
            "{}",
            lines[1]
        );
        assert!(lines[1].ends_with("|m alert(1)|"), "{}", lines[1]);
        assert_eq!(hex_dump(b""), "");
    }
}
