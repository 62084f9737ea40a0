//! Encodings `SigV4` needs for S3: URI encoding and lowercase hex.

const UPPER_HEX: &[u8; 16] = b"0123456789ABCDEF";
const LOWER_HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `input` URI-encoded the way `SigV4` wants it for S3: the unreserved characters
/// `A-Z a-z 0-9 - . _ ~` stay, every other byte of the UTF-8 form becomes `%XX` with
/// uppercase hex. `/` stays only when `keep_slash` (object key paths); query names and
/// values encode it.
pub(crate) fn uri_encode_into(out: &mut String, input: &str, keep_slash: bool) {
    for &b in input.as_bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(UPPER_HEX[usize::from(b >> 4)]));
            out.push(char::from(UPPER_HEX[usize::from(b & 0x0f)]));
        }
    }
}

/// [`uri_encode_into`] into a new string.
pub(crate) fn uri_encode(input: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(input.len() + input.len() / 2);
    uri_encode_into(&mut out, input, keep_slash);
    out
}

/// Appends `bytes` as lowercase hex (signatures and hashes are lowercase in `SigV4`).
pub(crate) fn hex_into(out: &mut String, bytes: &[u8]) {
    for &b in bytes {
        out.push(char::from(LOWER_HEX[usize::from(b >> 4)]));
        out.push(char::from(LOWER_HEX[usize::from(b & 0x0f)]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreserved_characters_stay_and_the_rest_is_uppercase_percent_encoded() {
        assert_eq!(uri_encode("AZaz09-._~", false), "AZaz09-._~");
        assert_eq!(uri_encode("a b+c=d&e", false), "a%20b%2Bc%3Dd%26e");
        assert_eq!(uri_encode("x/y", false), "x%2Fy");
        assert_eq!(uri_encode("x/y", true), "x/y");
        assert_eq!(uri_encode("*", false), "%2A");
        // Multi-byte UTF-8 is encoded byte by byte.
        assert_eq!(uri_encode("é", true), "%C3%A9");
        assert_eq!(uri_encode("\u{1f600}", true), "%F0%9F%98%80");
        assert_eq!(
            uri_encode(":?#[]@!$'()", true),
            "%3A%3F%23%5B%5D%40%21%24%27%28%29"
        );
    }

    #[test]
    fn hex_is_lowercase() {
        let mut s = String::new();
        hex_into(&mut s, &[0x00, 0xab, 0xff, 0x10]);
        assert_eq!(s, "00abff10");
    }
}
