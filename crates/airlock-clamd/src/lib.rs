//! airlock's virus-scanning adapter over clamd.
//!
//! - [`ClamdScanner`] implements the core [`Scanner`](airlock_core::ports::Scanner) port with
//!   clamd's `INSTREAM` command over TCP or a Unix socket. It streams the object in chunks
//!   (memory does not grow with the object), bounds every step with a timeout, reads
//!   clamd's answer even when clamd cut the stream short, and stamps each report with the
//!   engine version and the definitions' version and build time from `VERSION`
//!   ([`ClamdVersion`]); [`ClamdScanner::reload`] has clamd reload its databases.
//! - [`parse_reply`] turns a raw clamd reply into a verdict: `OK` is clean, a signature
//!   `FOUND` is infected, `Heuristics.Limits.Exceeded.*` and the `StreamMaxLength` error are
//!   "limit exceeded" (the object was not fully scanned), anything else is an error.
//! - [`ClamdScanner::self_test`] scans three canaries built in memory (EICAR, an encrypted
//!   zip member, zips nested past `MaxRecursion`) and refuses a clamd that misses one, naming
//!   the `clamd.conf` setting; scans run it at first use and after any connection failure.
//! - A reply that arrives before the whole stream is sent is an error, never a verdict
//!   (except clamd's `StreamMaxLength` error); every socket read and write has an idle limit.
//! - [`managed::ManagedClamd`] runs a private clamd (generated config with the alerts the
//!   self-test needs, free port, the project's test signatures from `fixtures/clamav/` by
//!   default) for tests and local runs, reports its [`ClamdLimits`], and stops it when
//!   dropped.
//!
//! - [`database`] reads ClamAV database container headers (version, build time) and builds
//!   unsigned `daily.cud` containers around plain signature files, so tests can give the
//!   project's test signatures a version and an age that clamd reports.
//!
//! Failures map to [`ScanError`](airlock_core::ports::ScanError): refused or reset
//! connections are `Unavailable`, exceeded timeouts are `Timeout` (both transient), a reply
//! that is not a verdict is `Protocol` (permanent), and a failing source stream is `Source`.

pub mod canary;
pub mod database;
pub mod managed;
mod reply;
mod scanner;
mod self_test;

pub use managed::{ClamdLimits, ManagedClamd, ManagedClamdBuilder, ManagedClamdError};
pub use reply::{
    LIMITS_EXCEEDED_PREFIX, MAX_REPLY_LEN, ReplyError, STREAM_LIMIT_ERROR, is_stream_limit_reply,
    parse_reply,
};
pub use scanner::{ClamdAddress, ClamdConfig, ClamdScanner, ClamdVersion, InvalidAddress};
pub use self_test::{ENCRYPTED_PREFIX, SELF_TEST_NESTING, SelfTestError, SelfTestReport};
