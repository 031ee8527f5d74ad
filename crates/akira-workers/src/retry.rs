//! The standard retry policy: exponential backoff with jitter, capped, and a delivery limit.

use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// Delay before delivery `n + 1` after delivery `n` failed: `min(cap, base * 2^(n-1))`,
/// multiplied by a random factor in `[1 - jitter, 1 + jitter]`.
///
/// `max_deliver` is also the consumer's `max_deliver`: a retryable error on that delivery
/// dead-letters the message instead of retrying it.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    #[serde(with = "crate::duration", default = "default_base")]
    pub base: Duration,
    #[serde(with = "crate::duration", default = "default_cap")]
    pub cap: Duration,
    #[serde(default = "default_max_deliver")]
    pub max_deliver: i64,
    #[serde(default = "default_jitter")]
    pub jitter: f64,
}

fn default_base() -> Duration {
    Duration::from_secs(1)
}
fn default_cap() -> Duration {
    Duration::from_secs(300)
}
fn default_max_deliver() -> i64 {
    5
}
fn default_jitter() -> f64 {
    0.2
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: default_base(),
            cap: default_cap(),
            max_deliver: default_max_deliver(),
            jitter: default_jitter(),
        }
    }
}

impl RetryPolicy {
    /// Returns the delay after failed delivery `attempt` (1-based), without jitter.
    pub fn delay(&self, attempt: i64) -> Duration {
        let exponent = attempt.saturating_sub(1).clamp(0, 32) as u32;
        let factor = 2u64.saturating_pow(exponent);
        let nanos = self.base.as_nanos().saturating_mul(factor as u128);
        let capped = nanos.min(self.cap.as_nanos());
        Duration::from_nanos(capped.min(u64::MAX as u128) as u64)
    }

    /// Returns [`RetryPolicy::delay`] multiplied by a random factor in `[1 - jitter, 1 + jitter]`.
    pub fn jittered_delay(&self, attempt: i64) -> Duration {
        let delay = self.delay(attempt);
        if self.jitter <= 0.0 {
            return delay;
        }
        let factor = rand::rng().random_range((1.0 - self.jitter)..=(1.0 + self.jitter));
        delay.mul_f64(factor)
    }

    /// Returns whether a failure on delivery `delivered` is the last one the policy allows.
    pub fn is_last_delivery(&self, delivered: i64) -> bool {
        delivered >= self.max_deliver
    }

    /// Returns the consumer's server-side `backoff`, the safety net when a worker crashes
    /// without acking: `max(ack_wait, delay(i))` for deliveries 1 to `max_deliver - 1`.
    ///
    /// No entry is shorter than `ack_wait`, because the server uses the entry in place of
    /// `ack_wait` for that delivery, and in-progress acks are sent every `ack_wait / 3`.
    /// The list has `max_deliver - 1` entries, which every server version accepts
    /// (nats-server 2.9 requires `max_deliver` to exceed the list's length).
    pub fn server_backoff(&self, ack_wait: Duration) -> Vec<Duration> {
        (1..self.max_deliver)
            .map(|attempt| self.delay(attempt).max(ack_wait))
            .collect()
    }

    pub(crate) fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        if self.max_deliver < 1 {
            return Err(ConfigError::invalid(
                "retry.max_deliver",
                origin,
                format!("{} must be at least 1", self.max_deliver),
            ));
        }
        if self.base.is_zero() {
            return Err(ConfigError::invalid(
                "retry.base",
                origin,
                "must be greater than 0, such as \"1s\"",
            ));
        }
        if self.cap < self.base {
            return Err(ConfigError::invalid(
                "retry.cap",
                origin,
                format!(
                    "{} is shorter than retry.base {}; raise retry.cap",
                    crate::duration::format(self.cap),
                    crate::duration::format(self.base)
                ),
            ));
        }
        if !(0.0..1.0).contains(&self.jitter) {
            return Err(ConfigError::invalid(
                "retry.jitter",
                origin,
                format!(
                    "{} must be at least 0 and less than 1, such as 0.2",
                    self.jitter
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_doubles_until_cap() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.delay(1), Duration::from_secs(1));
        assert_eq!(policy.delay(2), Duration::from_secs(2));
        assert_eq!(policy.delay(4), Duration::from_secs(8));
        assert_eq!(policy.delay(20), Duration::from_secs(300));
        assert_eq!(policy.delay(i64::MAX), Duration::from_secs(300));
    }

    #[test]
    fn jitter_stays_in_bounds() {
        let policy = RetryPolicy::default();
        for _ in 0..1000 {
            let d = policy.jittered_delay(3);
            assert!(
                d >= Duration::from_millis(3200) && d <= Duration::from_millis(4800),
                "{d:?}"
            );
        }
    }

    #[test]
    fn server_backoff_respects_ack_wait_and_length() {
        let policy = RetryPolicy::default();
        let backoff = policy.server_backoff(Duration::from_secs(30));
        assert_eq!(backoff.len(), 4);
        assert_eq!(backoff[0], Duration::from_secs(30));
        let short = policy.server_backoff(Duration::from_secs(1));
        assert_eq!(
            short,
            vec![1, 2, 4, 8]
                .into_iter()
                .map(Duration::from_secs)
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn last_delivery_is_max_deliver() {
        let policy = RetryPolicy {
            max_deliver: 3,
            ..Default::default()
        };
        assert!(!policy.is_last_delivery(2));
        assert!(policy.is_last_delivery(3));
    }
}
