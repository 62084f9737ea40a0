//! Retry policy: which retrier applies to an error and how long to wait.

use std::time::Duration;

use crate::definition::Retrier;
use crate::error::StateError;

/// Tracks, for one visit of a state, how many retries each retrier has spent.
#[derive(Debug)]
pub(crate) struct RetryBudget<'a> {
    retriers: &'a [Retrier],
    spent: Vec<u32>,
}

impl<'a> RetryBudget<'a> {
    pub(crate) fn new(retriers: &'a [Retrier]) -> Self {
        Self {
            retriers,
            spent: vec![0; retriers.len()],
        }
    }

    /// The first retrier whose `ErrorEquals` matches decides: if it has attempts left,
    /// returns the (unscaled) delay before the retry; otherwise `None` (go to Catch).
    pub(crate) fn next_delay(
        &mut self,
        error: &StateError,
        rng: &mut fastrand::Rng,
    ) -> Option<Duration> {
        let index = self
            .retriers
            .iter()
            .position(|r| r.error_equals.iter().any(|p| error.matches(p)))?;
        let retrier = &self.retriers[index];
        let spent = self.spent[index];
        if spent >= retrier.max_attempts {
            return None;
        }
        self.spent[index] += 1;
        let delay = backoff_seconds(retrier, spent);
        let delay = if retrier.full_jitter {
            delay * rng.f64()
        } else {
            delay
        };
        Some(Duration::from_secs_f64(delay))
    }
}

/// `IntervalSeconds × BackoffRate^retries`, capped at `MaxDelaySeconds`.
pub(crate) fn backoff_seconds(retrier: &Retrier, retries_so_far: u32) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let interval = retrier.interval_seconds as f64;
    let exponent = i32::try_from(retries_so_far).unwrap_or(i32::MAX);
    let delay = interval * retrier.backoff_rate.powi(exponent);
    #[allow(clippy::cast_precision_loss)]
    let cap = retrier
        .max_delay_seconds
        .map_or(f64::INFINITY, |m| m as f64);
    // Very long backoffs overflow to infinity; the cap (or a day) bounds them.
    delay.min(cap).min(86_400.0 * 365.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retrier(errors: &[&str], interval: u64, attempts: u32, rate: f64) -> Retrier {
        Retrier {
            error_equals: errors.iter().map(|s| (*s).to_owned()).collect(),
            interval_seconds: interval,
            max_attempts: attempts,
            backoff_rate: rate,
            max_delay_seconds: None,
            full_jitter: false,
        }
    }

    fn err(name: &str) -> StateError {
        StateError::new(name, "")
    }

    #[test]
    fn spec_complex_retry_scenario() {
        // ASL spec: errors A, B, C, B; the fourth exhausts the first retrier.
        let retriers = [
            retrier(&["ErrorA", "ErrorB"], 1, 2, 2.0),
            retrier(&["ErrorC"], 5, 3, 2.0),
        ];
        let mut budget = RetryBudget::new(&retriers);
        let mut rng = fastrand::Rng::with_seed(1);
        assert_eq!(
            budget.next_delay(&err("ErrorA"), &mut rng),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            budget.next_delay(&err("ErrorB"), &mut rng),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            budget.next_delay(&err("ErrorC"), &mut rng),
            Some(Duration::from_secs(5))
        );
        assert_eq!(budget.next_delay(&err("ErrorB"), &mut rng), None);
    }

    #[test]
    fn spec_backoff_example_waits_3_then_4_5_seconds() {
        let retriers = [retrier(&["States.Timeout"], 3, 2, 1.5)];
        let mut budget = RetryBudget::new(&retriers);
        let mut rng = fastrand::Rng::with_seed(1);
        let timeout = err("States.Timeout");
        assert_eq!(
            budget.next_delay(&timeout, &mut rng),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            budget.next_delay(&timeout, &mut rng),
            Some(Duration::from_secs_f64(4.5))
        );
        assert_eq!(budget.next_delay(&timeout, &mut rng), None);
    }

    #[test]
    fn zero_attempts_never_retries_and_first_match_wins() {
        let retriers = [
            retrier(&["States.Timeout"], 1, 0, 2.0),
            retrier(&["States.ALL"], 1, 3, 2.0),
        ];
        let mut budget = RetryBudget::new(&retriers);
        let mut rng = fastrand::Rng::with_seed(1);
        assert_eq!(budget.next_delay(&err("States.Timeout"), &mut rng), None);
        assert!(budget.next_delay(&err("Other"), &mut rng).is_some());
        assert_eq!(budget.next_delay(&err("States.Runtime"), &mut rng), None);
        let mut without_retriers = RetryBudget::new(&[]);
        assert_eq!(without_retriers.next_delay(&err("Other"), &mut rng), None);
    }

    #[test]
    fn max_delay_caps_and_defaults_apply() {
        let mut r = retrier(&["X"], 2, 10, 3.0);
        r.max_delay_seconds = Some(10);
        let delays: Vec<f64> = (0..4).map(|n| backoff_seconds(&r, n)).collect();
        assert_eq!(delays, vec![2.0, 6.0, 10.0, 10.0]);
    }

    #[test]
    fn full_jitter_stays_within_the_backoff() {
        let mut r = retrier(&["X"], 4, 100, 2.0);
        r.full_jitter = true;
        let retriers = [r];
        let mut budget = RetryBudget::new(&retriers);
        let mut rng = fastrand::Rng::with_seed(42);
        let mut saw_below_cap = false;
        for n in 0..8 {
            let delay = budget
                .next_delay(&err("X"), &mut rng)
                .unwrap()
                .as_secs_f64();
            let cap = 4.0 * 2f64.powi(n);
            assert!((0.0..=cap).contains(&delay), "{delay} > {cap}");
            saw_below_cap |= delay < cap * 0.99;
        }
        assert!(saw_below_cap, "jitter should shorten at least one delay");
    }
}
