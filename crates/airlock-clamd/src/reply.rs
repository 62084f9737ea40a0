//! Parsing clamd's reply to `zINSTREAM`.
//!
//! The forms clamd 1.4 sends (each terminated by a NUL byte, except the read timeout, which
//! ends with a newline):
//!
//! | reply                                          | meaning                                  |
//! |------------------------------------------------|------------------------------------------|
//! | `stream: OK`                                   | clean                                    |
//! | `stream: <Signature> FOUND`                    | infected                                 |
//! | `stream: Heuristics.Limits.Exceeded.<Max> FOUND` | a scan limit was hit (`AlertExceedsMax`) |
//! | `INSTREAM size limit exceeded. ERROR`          | the stream is longer than `StreamMaxLength` |
//! | `<text> ERROR`                                 | clamd failed to scan                     |
//! | `COMMAND READ TIMED OUT`                       | clamd waited longer than its `ReadTimeout` for data |
//! | `UNKNOWN COMMAND`                              | the command was not understood           |

use airlock_core::ports::ScanVerdict;

/// The prefix of the virus names clamd reports when a scan limit is hit and
/// `AlertExceedsMax` is on, e.g. `Heuristics.Limits.Exceeded.MaxFileSize`.
pub const LIMITS_EXCEEDED_PREFIX: &str = "Heuristics.Limits.Exceeded.";

/// The error text clamd sends when the stream exceeds `StreamMaxLength`.
pub const STREAM_LIMIT_ERROR: &str = "INSTREAM size limit exceeded.";

/// The start of the `LimitExceeded` detail for [`STREAM_LIMIT_ERROR`].
const STREAM_LIMIT_DETAIL: &str = "clamd StreamMaxLength";

/// Whether `reply` is clamd's `StreamMaxLength` error: the one answer clamd gives before the
/// end of a stream (as soon as the stream passes the limit).
#[must_use]
pub fn is_stream_limit_reply(reply: &[u8]) -> bool {
    matches!(
        parse_reply(reply),
        Ok(ScanVerdict::LimitExceeded { detail }) if detail.starts_with(STREAM_LIMIT_DETAIL)
    )
}

/// The longest reply accepted; a real verdict line is far shorter.
pub const MAX_REPLY_LEN: usize = 16 * 1024;

/// A reply that is not a verdict.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// The connection closed before any byte of a reply arrived.
    #[error("clamd closed the connection without a reply")]
    Empty,
    /// clamd answered `... ERROR` (other than the stream size limit).
    #[error("clamd reported an error: {0}")]
    Server(String),
    /// clamd gave up waiting for the client to send data (its `ReadTimeout`).
    #[error("clamd timed out waiting for stream data (its ReadTimeout)")]
    ReadTimedOut,
    /// Anything else: not clamd, a different protocol version, or a corrupted reply.
    #[error("unexpected reply from clamd: {0:?}")]
    Unexpected(String),
}

/// Parses one reply to `zINSTREAM` (with or without its terminating NUL or newline).
pub fn parse_reply(reply: &[u8]) -> Result<ScanVerdict, ReplyError> {
    if reply.is_empty() {
        return Err(ReplyError::Empty);
    }
    if reply.len() > MAX_REPLY_LEN {
        return Err(ReplyError::Unexpected(format!(
            "{} bytes, longer than any verdict line",
            reply.len()
        )));
    }
    let Ok(text) = std::str::from_utf8(reply) else {
        return Err(ReplyError::Unexpected(
            String::from_utf8_lossy(reply).into_owned(),
        ));
    };
    let text = text.strip_suffix('\0').unwrap_or(text);
    let text = text.strip_suffix('\n').unwrap_or(text);
    if text.is_empty() {
        return Err(ReplyError::Empty);
    }
    if text.contains(['\0', '\n']) {
        return Err(ReplyError::Unexpected(text.to_owned()));
    }

    if let Some(rest) = text.strip_suffix(" ERROR") {
        let rest = rest.trim();
        let message = rest.strip_prefix("stream:").map_or(rest, str::trim);
        if message == STREAM_LIMIT_ERROR {
            return Ok(ScanVerdict::LimitExceeded {
                detail: format!("{STREAM_LIMIT_DETAIL}: {message}"),
            });
        }
        return Err(ReplyError::Server(message.to_owned()));
    }
    if text == "COMMAND READ TIMED OUT" {
        return Err(ReplyError::ReadTimedOut);
    }

    let Some(result) = text.strip_prefix("stream: ") else {
        return Err(ReplyError::Unexpected(text.to_owned()));
    };
    if result == "OK" {
        return Ok(ScanVerdict::Clean);
    }
    if let Some(name) = result.strip_suffix(" FOUND")
        && is_signature_name(name)
    {
        if name.starts_with(LIMITS_EXCEEDED_PREFIX) {
            return Ok(ScanVerdict::LimitExceeded {
                detail: name.to_owned(),
            });
        }
        return Ok(ScanVerdict::Infected {
            signature: name.to_owned(),
        });
    }
    Err(ReplyError::Unexpected(text.to_owned()))
}

/// Signature names are printable ASCII without spaces (e.g. `Win.Test.EICAR_HDB-1`,
/// `Airlock.Test.EICAR.UNOFFICIAL`).
fn is_signature_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminators_are_optional() {
        assert_eq!(parse_reply(b"stream: OK"), Ok(ScanVerdict::Clean));
        assert_eq!(parse_reply(b"stream: OK\n"), Ok(ScanVerdict::Clean));
        assert_eq!(parse_reply(b"stream: OK\0"), Ok(ScanVerdict::Clean));
    }

    #[test]
    fn two_replies_in_one_buffer_are_rejected() {
        assert!(matches!(
            parse_reply(b"stream: OK\0stream: OK\0"),
            Err(ReplyError::Unexpected(_))
        ));
    }

    #[test]
    fn found_needs_a_name_without_spaces() {
        assert!(matches!(
            parse_reply(b"stream:  FOUND\0"),
            Err(ReplyError::Unexpected(_))
        ));
        assert!(matches!(
            parse_reply(b"stream: two words FOUND\0"),
            Err(ReplyError::Unexpected(_))
        ));
    }

    #[test]
    fn oversized_and_empty_replies() {
        assert_eq!(parse_reply(b""), Err(ReplyError::Empty));
        assert_eq!(parse_reply(b"\0"), Err(ReplyError::Empty));
        let long = vec![b'a'; MAX_REPLY_LEN + 1];
        assert!(matches!(parse_reply(&long), Err(ReplyError::Unexpected(_))));
    }

    #[test]
    fn only_the_stream_limit_error_is_a_stream_limit_reply() {
        assert!(is_stream_limit_reply(
            b"INSTREAM size limit exceeded. ERROR\0"
        ));
        assert!(is_stream_limit_reply(
            b"stream: INSTREAM size limit exceeded. ERROR\0"
        ));
        assert!(!is_stream_limit_reply(b"stream: OK\0"));
        assert!(!is_stream_limit_reply(
            b"stream: Heuristics.Limits.Exceeded.MaxFileSize FOUND\0"
        ));
        assert!(!is_stream_limit_reply(b"stream: Some other ERROR\0"));
    }

    #[test]
    fn stream_prefixed_errors_keep_their_text() {
        assert_eq!(
            parse_reply(b"stream: Can't allocate memory ERROR\0"),
            Err(ReplyError::Server("Can't allocate memory".to_owned()))
        );
    }
}
