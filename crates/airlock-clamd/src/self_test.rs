//! [`ClamdScanner::self_test`]: proves that a clamd detects, and is configured to report
//! what it cannot scan, before its verdicts are trusted.
//!
//! Three canaries, built in memory on each run (see [`crate::canary`]):
//! - the EICAR test string must come back `FOUND` (the signature database works);
//! - a zip with a ZipCrypto-encrypted member must come back `Heuristics.Encrypted.*`
//!   (`AlertEncrypted yes`: otherwise encrypted members, which clamd cannot read, are `OK`);
//! - zips nested [`SELF_TEST_NESTING`] deep must come back `Heuristics.Limits.Exceeded.*`
//!   (`AlertExceedsMax yes`: otherwise whatever exceeds `MaxFiles`, `MaxFileSize`,
//!   `MaxScanSize` or `MaxRecursion` is `OK`, unscanned). Nesting is the cheap limit to
//!   exceed whatever the clamd's limits are: about 7 KB and a few milliseconds, where
//!   `MaxFiles` (10 000 by default) costs seconds.
//!
//! The encrypted and nested canaries carry a fresh payload each time, because clamd skips
//! files whose hash it has already found clean.

use std::time::{Duration, Instant};

use airlock_core::ports::{ScanError, ScanVerdict};

use crate::canary;
use crate::reply::{LIMITS_EXCEEDED_PREFIX, parse_reply};
use crate::scanner::{ClamdAddress, ClamdScanner, describe_reply};

/// How deep the limits canary nests zips; a clamd passes only with `MaxRecursion` at or
/// below this (clamd's default is 17).
pub const SELF_TEST_NESTING: usize = 64;

/// The virus names prefix clamd reports for encrypted content.
pub const ENCRYPTED_PREFIX: &str = "Heuristics.Encrypted.";

/// What a clamd answered to the canaries of a passed self-test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelfTestReport {
    /// The engine string, as in scan reports.
    pub engine: String,
    /// The signature reported for EICAR.
    pub eicar: String,
    /// The heuristic reported for the encrypted zip, e.g. `Heuristics.Encrypted.Zip`.
    pub encrypted: String,
    /// The limit reported for the nested zips, e.g.
    /// `Heuristics.Limits.Exceeded.MaxRecursion`.
    pub limits: String,
    /// How long the self-test took.
    pub elapsed: Duration,
}

/// Why a clamd is not trusted.
#[derive(Debug, thiserror::Error)]
pub enum SelfTestError {
    /// clamd could not be reached or did not answer; the self-test did not run to its end.
    #[error("clamd self-test could not run: {0}")]
    Scan(#[from] ScanError),
    #[error(
        "clamd at {address} did not detect the EICAR test string (it answered {got:?}): \
         its signature database must include EICAR, as the official ClamAV databases do"
    )]
    EicarNotDetected { address: ClamdAddress, got: String },
    #[error(
        "clamd at {address} did not flag an encrypted zip member (it answered {got:?}): \
         set `AlertEncrypted yes` in clamd.conf (and keep `ScanArchive yes`)"
    )]
    EncryptedNotFlagged { address: ClamdAddress, got: String },
    #[error(
        "clamd at {address} did not flag zips nested {depth} deep as exceeding a limit (it \
         answered {got:?}): set `AlertExceedsMax yes` in clamd.conf (and keep \
         `ScanArchive yes` and `MaxRecursion` at most {depth})"
    )]
    LimitsNotFlagged {
        address: ClamdAddress,
        depth: usize,
        got: String,
    },
}

/// A failed canary is a configuration problem ([`ScanError::Protocol`]: retrying does not
/// help); a failure to talk to clamd keeps its own kind.
impl From<SelfTestError> for ScanError {
    fn from(error: SelfTestError) -> Self {
        match error {
            SelfTestError::Scan(error) => error,
            other => ScanError::Protocol(other.to_string()),
        }
    }
}

impl ClamdScanner {
    /// Scans the three canaries (see the module documentation) and checks the answers.
    /// Costs four short connections (`VERSION` and three `INSTREAM`s of under 8 KB).
    /// [`Scanner::scan`](airlock_core::ports::Scanner::scan) runs it by itself when needed
    /// (see [`ClamdScanner`]); calling it directly does not mark the clamd as verified.
    pub async fn self_test(&self) -> Result<SelfTestReport, SelfTestError> {
        let started = Instant::now();
        let address = || self.config().address.clone();
        let engine = self.fetch_version().await?.engine;

        let reply = self
            .instream(Box::new(std::io::Cursor::new(canary::eicar())))
            .await?;
        let Ok(ScanVerdict::Infected { signature: eicar }) = parse_reply(&reply) else {
            return Err(SelfTestError::EicarNotDetected {
                address: address(),
                got: describe_reply(&reply),
            });
        };

        let zip = canary::encrypted_zip("canary.txt", &canary::unique_payload(), b"airlock");
        let reply = self.instream(Box::new(std::io::Cursor::new(zip))).await?;
        let encrypted = match parse_reply(&reply) {
            Ok(ScanVerdict::Infected { signature }) if signature.starts_with(ENCRYPTED_PREFIX) => {
                signature
            }
            _ => {
                return Err(SelfTestError::EncryptedNotFlagged {
                    address: address(),
                    got: describe_reply(&reply),
                });
            }
        };

        let nested = canary::nested_zip(SELF_TEST_NESTING, &canary::unique_payload());
        let reply = self
            .instream(Box::new(std::io::Cursor::new(nested)))
            .await?;
        let limits = match parse_reply(&reply) {
            Ok(ScanVerdict::LimitExceeded { detail })
                if detail.starts_with(LIMITS_EXCEEDED_PREFIX) =>
            {
                detail
            }
            _ => {
                return Err(SelfTestError::LimitsNotFlagged {
                    address: address(),
                    depth: SELF_TEST_NESTING,
                    got: describe_reply(&reply),
                });
            }
        };

        Ok(SelfTestReport {
            engine,
            eicar,
            encrypted,
            limits,
            elapsed: started.elapsed(),
        })
    }
}
