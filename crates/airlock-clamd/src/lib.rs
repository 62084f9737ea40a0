//! airlock's virus-scanning adapter over clamd.
//!
//! - [`ClamdScanner`] implements the core [`Scanner`](airlock_core::ports::Scanner) port with
//!   clamd's `INSTREAM` command over TCP or a Unix socket. It streams the object in chunks
//!   (memory does not grow with the object), bounds every step with a timeout, reads
//!   clamd's answer even when clamd cut the stream short, and stamps each report with the
//!   engine version from `VERSION`.
//! - [`parse_reply`] turns a raw clamd reply into a verdict: `OK` is clean, a signature
//!   `FOUND` is infected, `Heuristics.Limits.Exceeded.*` and the `StreamMaxLength` error are
//!   "limit exceeded" (the object was not fully scanned), anything else is an error.
//! - [`managed::ManagedClamd`] runs a private clamd (generated config, free port, the
//!   project's test signatures from `fixtures/clamav/` by default) for tests and local runs,
//!   and stops it when dropped.
//!
//! Failures map to [`ScanError`](airlock_core::ports::ScanError): refused or reset
//! connections are `Unavailable`, exceeded timeouts are `Timeout` (both transient), a reply
//! that is not a verdict is `Protocol` (permanent), and a failing source stream is `Source`.

pub mod managed;
mod reply;
mod scanner;

pub use managed::{ManagedClamd, ManagedClamdBuilder, ManagedClamdError};
pub use reply::{
    LIMITS_EXCEEDED_PREFIX, MAX_REPLY_LEN, ReplyError, STREAM_LIMIT_ERROR, parse_reply,
};
pub use scanner::{ClamdAddress, ClamdConfig, ClamdScanner, InvalidAddress};
