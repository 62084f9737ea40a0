//! CloudWatch metrics as Embedded Metric Format (EMF) log lines: one JSON object per line
//! on standard output, which CloudWatch Logs turns into metrics with no agent and no API
//! call (Lambda's log stream does this as is; an ECS task with the `awslogs` driver does
//! it too).
//!
//! airlock records one line per stage run: namespace `airlock`, dimensions `Stage` and
//! `Outcome`, the metrics `Duration` (milliseconds) and `Count` (1), so CloudWatch has the
//! duration of each stage (dimension set `[Stage]`) and how often each outcome happens
//! (`[Stage, Outcome]`).
//!
//! ```
//! use std::time::{Duration, UNIX_EPOCH};
//! let line = airlock_emf::StageMetric::new("scan", "pass", Duration::from_millis(12))
//!     .at(UNIX_EPOCH + Duration::from_secs(1_764_668_129))
//!     .to_line();
//! let emf: serde_json::Value = serde_json::from_str(&line).unwrap();
//! assert_eq!(emf["_aws"]["Timestamp"], 1_764_668_129_000_u64);
//! assert_eq!(emf["Duration"], 12.0);
//! ```
//!
//! The format: <https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html>.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

/// The CloudWatch namespace of airlock's metrics.
pub const NAMESPACE: &str = "airlock";

/// One stage run: which stage, how it ended, how long it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageMetric {
    /// The stage, e.g. `scan` (`airlock_core::stages::Stage::as_str`).
    pub stage: String,
    /// How it ended, e.g. `pass`, `reject`, `transient-error` (a short kebab-case word:
    /// each distinct value is its own CloudWatch metric, so never put ids or messages here).
    pub outcome: String,
    pub duration: Duration,
    /// When it ended; the time the line is made if not set.
    pub at: Option<SystemTime>,
}

impl StageMetric {
    #[must_use]
    pub fn new(stage: impl Into<String>, outcome: impl Into<String>, duration: Duration) -> Self {
        Self {
            stage: stage.into(),
            outcome: outcome.into(),
            duration,
            at: None,
        }
    }

    #[must_use]
    pub fn at(mut self, at: SystemTime) -> Self {
        self.at = Some(at);
        self
    }

    /// The EMF object.
    #[must_use]
    pub fn to_json(&self) -> Value {
        let at = self.at.unwrap_or_else(SystemTime::now);
        let timestamp = at.duration_since(UNIX_EPOCH).map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        });
        json!({
            "_aws": {
                "Timestamp": timestamp,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [["Stage"], ["Stage", "Outcome"]],
                    "Metrics": [
                        {"Name": "Duration", "Unit": "Milliseconds"},
                        {"Name": "Count", "Unit": "Count"}
                    ]
                }]
            },
            "Stage": self.stage,
            "Outcome": self.outcome,
            "Duration": self.duration.as_secs_f64() * 1000.0,
            "Count": 1
        })
    }

    /// The EMF object as one line, without the newline.
    #[must_use]
    pub fn to_line(&self) -> String {
        self.to_json().to_string()
    }

    /// Writes the line and a newline to `out` in one write, so lines from concurrent tasks
    /// never interleave.
    pub fn write_to(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let mut line = self.to_line();
        line.push('\n');
        out.write_all(line.as_bytes())?;
        out.flush()
    }

    /// Writes the line to standard output (where Lambda and the `awslogs` driver read it).
    pub fn emit(&self) -> std::io::Result<()> {
        self.write_to(&mut std::io::stdout().lock())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric() -> StageMetric {
        StageMetric::new("scan", "pass", Duration::from_micros(12_500))
            .at(UNIX_EPOCH + Duration::from_millis(1_764_668_129_250))
    }

    #[test]
    fn the_line_is_the_emf_object() {
        assert_eq!(
            metric().to_json(),
            json!({
                "_aws": {
                    "Timestamp": 1_764_668_129_250_u64,
                    "CloudWatchMetrics": [{
                        "Namespace": "airlock",
                        "Dimensions": [["Stage"], ["Stage", "Outcome"]],
                        "Metrics": [
                            {"Name": "Duration", "Unit": "Milliseconds"},
                            {"Name": "Count", "Unit": "Count"}
                        ]
                    }]
                },
                "Stage": "scan",
                "Outcome": "pass",
                "Duration": 12.5,
                "Count": 1
            })
        );
    }

    /// The rules of the specification a line must follow to become metrics.
    #[test]
    fn the_line_follows_the_specification() {
        let line = metric().to_line();
        assert!(!line.contains('\n'));
        let root: Value = serde_json::from_str(&line).unwrap();
        let aws = &root["_aws"];
        // Timestamp: milliseconds since the epoch, a number.
        assert!(aws["Timestamp"].is_u64());
        let directives = aws["CloudWatchMetrics"].as_array().unwrap();
        assert_eq!(directives.len(), 1);
        let directive = &directives[0];
        let namespace = directive["Namespace"].as_str().unwrap();
        assert!(!namespace.is_empty() && namespace.len() <= 255);
        // Every dimension set has at most 30 names, each a string member of the root.
        for set in directive["Dimensions"].as_array().unwrap() {
            let set = set.as_array().unwrap();
            assert!(!set.is_empty() && set.len() <= 30);
            for name in set {
                assert!(root[name.as_str().unwrap()].is_string(), "{name}");
            }
        }
        // Every metric is a number member of the root, with a unit CloudWatch knows, and
        // at most 100 metrics per directive.
        let metrics = directive["Metrics"].as_array().unwrap();
        assert!(metrics.len() <= 100);
        for m in metrics {
            let name = m["Name"].as_str().unwrap();
            assert!(!name.is_empty() && name.len() <= 1024);
            assert!(root[name].is_number(), "{name}");
            assert!(["Milliseconds", "Count"].contains(&m["Unit"].as_str().unwrap()));
        }
    }

    #[test]
    fn written_lines_end_with_a_newline() {
        let mut out = Vec::new();
        metric().write_to(&mut out).unwrap();
        metric().write_to(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(text.ends_with('\n'));
        assert_eq!(lines[0], metric().to_line());
    }

    #[test]
    fn an_unset_time_is_now() {
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis();
        let stamped = StageMetric::new("inspect", "reject", Duration::ZERO).to_json();
        let at = u128::from(stamped["_aws"]["Timestamp"].as_u64().unwrap());
        assert!(at >= before, "{at} < {before}");
    }
}
