//! Virus definitions: which ones judged an object, how old they were, and the freshness
//! rule that refuses a verdict given on stale ones.
//!
//! A scanner reports the version and build time of its definitions with every verdict
//! (clamd: the daily database's, from `VERSION`). [`FreshnessRule::check`] compares the
//! build time with the [`Clock`]: definitions older than the rule's maximum age, or with
//! no build time when the rule wants one, fail the scan stage as a transient error, so the
//! state machine retries it (a definitions refresh may land meanwhile) and then
//! quarantines the object as `scan-unavailable`. Nothing is promoted on stale signatures.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ports::Clock;

/// The definitions a scanner used: the version and build time of its daily database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Definitions {
    pub version: u32,
    pub built_at: DateTime<Utc>,
}

/// The definitions as a verdict records them: version, build time and age when used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DefinitionsRecord {
    pub version: u32,
    pub built_at: DateTime<Utc>,
    /// Whole seconds from the build time to the verdict.
    pub age_seconds: u64,
}

/// What to do with a verdict whose scanner reports no definitions build time (clamd loaded
/// only plain signature files, no `daily` database).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Undated {
    /// Their age is unknown: the verdict is refused, as for stale definitions.
    Refuse,
    /// Accepted (the project's own test signatures, which carry no build time).
    Accept,
}

/// How old the definitions behind a verdict may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FreshnessRule {
    /// Definitions built longer ago than this are stale; `None` sets no limit.
    pub max_age: Option<Duration>,
    pub undated: Undated,
}

/// The default maximum age: ClamAV publishes daily updates several times a day, so two
/// days without one means the refresh is broken.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_hours(48);

/// How far in the future a build time may be (clock skew) before it is distrusted; the
/// same hour after which clamd itself warns.
pub const FUTURE_TOLERANCE: Duration = Duration::from_hours(1);

impl Default for FreshnessRule {
    /// [`DEFAULT_MAX_AGE`], undated definitions refused: what a deployment wants.
    fn default() -> Self {
        Self::strict(DEFAULT_MAX_AGE)
    }
}

impl FreshnessRule {
    /// Definitions must be dated and at most `max_age` old.
    #[must_use]
    pub const fn strict(max_age: Duration) -> Self {
        Self {
            max_age: Some(max_age),
            undated: Undated::Refuse,
        }
    }

    /// Dated definitions must be at most `max_age` old (`None`: any age); undated ones are
    /// accepted. For local runs on the project's test signatures.
    #[must_use]
    pub const fn accepting_undated(max_age: Option<Duration>) -> Self {
        Self {
            max_age,
            undated: Undated::Accept,
        }
    }

    /// Whether a verdict given with `reported` definitions may be used now: the record to
    /// keep with it (`None` when undated and accepted), or why not.
    pub fn check(
        &self,
        reported: Option<&Definitions>,
        clock: &dyn Clock,
    ) -> Result<Option<DefinitionsRecord>, StaleDefinitions> {
        let Some(definitions) = reported else {
            return match self.undated {
                Undated::Accept => Ok(None),
                Undated::Refuse => Err(StaleDefinitions::Undated),
            };
        };
        let now = clock.now();
        let age = now.signed_duration_since(definitions.built_at);
        if let Ok(ahead) = (-age).to_std()
            && ahead > FUTURE_TOLERANCE
        {
            return Err(StaleDefinitions::FromTheFuture {
                version: definitions.version,
                built_at: definitions.built_at,
                now,
            });
        }
        // A build time slightly ahead of this clock counts as age zero.
        let age = age.to_std().unwrap_or_default();
        if let Some(max_age) = self.max_age
            && age > max_age
        {
            return Err(StaleDefinitions::TooOld {
                version: definitions.version,
                built_at: definitions.built_at,
                age: Hours(age),
                max_age: Hours(max_age),
            });
        }
        Ok(Some(DefinitionsRecord {
            version: definitions.version,
            built_at: definitions.built_at,
            age_seconds: age.as_secs(),
        }))
    }
}

/// Reads a maximum age given in hours (`48`, `0.5`), or `off` for no limit: the form of
/// `--max-definitions-age-hours` and `AIRLOCK_MAX_DEFINITIONS_AGE_HOURS`.
pub fn parse_max_age_hours(text: &str) -> Result<Option<Duration>, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let hours: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of hours or `off`"))?;
    if !hours.is_finite() || hours <= 0.0 || hours > 24.0 * 365.0 {
        return Err(format!(
            "{text:?} hours: a maximum age must be more than 0 and at most a year (or `off`)"
        ));
    }
    Ok(Some(Duration::from_secs_f64(hours * 3600.0)))
}

/// A maximum age as a command-line or environment value: hours, or `off` (`None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxAge(pub Option<Duration>);

impl std::str::FromStr for MaxAge {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse_max_age_hours(text).map(Self)
    }
}

/// A duration shown in hours, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hours(pub Duration);

impl fmt::Display for Hours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        #[allow(clippy::cast_precision_loss)] // Display only.
        let hours = self.0.as_secs() as f64 / 3600.0;
        write!(f, "{hours:.1} h")
    }
}

/// Why the definitions behind a verdict are not fit to judge with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StaleDefinitions {
    #[error(
        "virus definitions {version} were built at {built_at}, {age} ago, more than the \
         {max_age} allowed: the definitions refresh is not working"
    )]
    TooOld {
        version: u32,
        built_at: DateTime<Utc>,
        age: Hours,
        max_age: Hours,
    },
    #[error(
        "virus definitions {version} claim to be built at {built_at}, after now ({now}): \
         check the clocks"
    )]
    FromTheFuture {
        version: u32,
        built_at: DateTime<Utc>,
        now: DateTime<Utc>,
    },
    #[error(
        "the scanner reports no definitions build time (no daily database loaded), so \
         their age cannot be checked"
    )]
    Undated,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    struct FixedClock(DateTime<Utc>);

    impl Clock for FixedClock {
        fn now(&self) -> DateTime<Utc> {
            self.0
        }
    }

    fn built_at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 30, 9, 35, 29).unwrap()
    }

    fn definitions() -> Definitions {
        Definitions {
            version: 27_500,
            built_at: built_at(),
        }
    }

    fn clock_after(age: chrono::Duration) -> FixedClock {
        FixedClock(built_at() + age)
    }

    #[test]
    fn definitions_within_the_age_are_recorded_with_their_age() {
        let rule = FreshnessRule::default();
        let record = rule
            .check(
                Some(&definitions()),
                &clock_after(chrono::Duration::hours(3)),
            )
            .unwrap()
            .unwrap();
        assert_eq!(
            record,
            DefinitionsRecord {
                version: 27_500,
                built_at: built_at(),
                age_seconds: 3 * 3600,
            }
        );
        // Exactly the maximum age is still fresh; one second more is not.
        let limit = chrono::Duration::hours(48);
        assert!(
            rule.check(Some(&definitions()), &clock_after(limit))
                .is_ok()
        );
        let err = rule
            .check(
                Some(&definitions()),
                &clock_after(limit + chrono::Duration::seconds(1)),
            )
            .unwrap_err();
        assert!(
            matches!(
                err,
                StaleDefinitions::TooOld {
                    version: 27_500,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("48.0 h allowed"), "{err}");
    }

    #[test]
    fn the_maximum_age_is_configurable() {
        let rule = FreshnessRule::strict(Duration::from_hours(6));
        let clock = clock_after(chrono::Duration::hours(7));
        assert!(matches!(
            rule.check(Some(&definitions()), &clock),
            Err(StaleDefinitions::TooOld { .. })
        ));
        let unlimited = FreshnessRule::accepting_undated(None);
        let record = unlimited
            .check(
                Some(&definitions()),
                &clock_after(chrono::Duration::days(400)),
            )
            .unwrap()
            .unwrap();
        assert_eq!(record.age_seconds, 400 * 86_400);
    }

    #[test]
    fn undated_definitions_are_refused_unless_accepted() {
        let clock = clock_after(chrono::Duration::zero());
        assert_eq!(
            FreshnessRule::default().check(None, &clock),
            Err(StaleDefinitions::Undated)
        );
        assert_eq!(
            FreshnessRule::accepting_undated(Some(DEFAULT_MAX_AGE)).check(None, &clock),
            Ok(None)
        );
        // Accepting undated definitions does not excuse stale dated ones.
        let rule = FreshnessRule::accepting_undated(Some(DEFAULT_MAX_AGE));
        assert!(
            rule.check(
                Some(&definitions()),
                &clock_after(chrono::Duration::days(3))
            )
            .is_err()
        );
    }

    #[test]
    fn a_build_time_in_the_future_is_distrusted_past_the_tolerance() {
        let rule = FreshnessRule::default();
        let slightly_behind = clock_after(-chrono::Duration::minutes(10));
        let record = rule
            .check(Some(&definitions()), &slightly_behind)
            .unwrap()
            .unwrap();
        assert_eq!(record.age_seconds, 0);
        let far_behind = clock_after(-chrono::Duration::hours(2));
        assert!(matches!(
            rule.check(Some(&definitions()), &far_behind),
            Err(StaleDefinitions::FromTheFuture { .. })
        ));
    }

    #[test]
    fn maximum_ages_parse_from_hours_or_off() {
        assert_eq!(parse_max_age_hours("48"), Ok(Some(DEFAULT_MAX_AGE)));
        assert_eq!(
            parse_max_age_hours(" 0.5 "),
            Ok(Some(Duration::from_mins(30)))
        );
        assert_eq!(parse_max_age_hours("OFF"), Ok(None));
        assert_eq!("off".parse::<MaxAge>(), Ok(MaxAge(None)));
        for bad in ["", "0", "-3", "two days", "NaN", "inf", "100000"] {
            let err = parse_max_age_hours(bad).unwrap_err();
            assert!(err.contains(bad.trim()), "{err}");
        }
    }

    #[test]
    fn records_serialize_in_camel_case() {
        let record = DefinitionsRecord {
            version: 27_500,
            built_at: built_at(),
            age_seconds: 60,
        };
        assert_eq!(
            serde_json::to_value(record).unwrap(),
            serde_json::json!({
                "version": 27_500,
                "builtAt": "2026-11-30T09:35:29Z",
                "ageSeconds": 60
            })
        );
    }
}
