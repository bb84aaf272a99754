//! Retry decisions for outbound updates: exponential backoff with full
//! jitter, never earlier than the channel's `Retry-After`, and when to give
//! up (attempts or age) and move an update to the dead-letter queue.

use std::time::Duration;

/// How a channel's updates are retried.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// The first backoff's upper bound.
    pub base: Duration,
    /// No backoff is longer than this.
    pub cap: Duration,
    /// Failed attempts after which an update is dead-lettered.
    pub max_attempts: u32,
    /// An update failing for longer than this is dead-lettered.
    pub max_age: Duration,
    /// Updates dead-lettered by a transient failure (network, timeout, 5xx)
    /// are sent again once the channel acknowledges pushes again, at most
    /// this often: an outage longer than the attempts parks nothing for good.
    pub revive_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_millis(200),
            cap: Duration::from_secs(60),
            max_attempts: 10,
            max_age: Duration::from_secs(6 * 3600),
            revive_after: Duration::from_secs(30),
        }
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RetryDecision {
    RetryAfter(Duration),
    DeadLetter,
}

impl RetryPolicy {
    /// The delay before attempt `attempts + 1`: uniform in
    /// `[0, min(cap, base · 2^(attempts−1))]` ("full jitter"; `jitter` is
    /// the random draw in `[0, 1)`), but never before `retry_after`.
    pub fn backoff(&self, attempts: u32, jitter: f64, retry_after: Option<Duration>) -> Duration {
        let exp = attempts.saturating_sub(1).min(30);
        let ceiling = self
            .base
            .checked_mul(1u32 << exp)
            .unwrap_or(self.cap)
            .min(self.cap);
        let drawn = ceiling.mul_f64(jitter.clamp(0.0, 1.0));
        drawn.max(retry_after.unwrap_or(Duration::ZERO))
    }

    /// After failed attempt number `attempts` of an update failing for `age`.
    pub fn decide(
        &self,
        attempts: u32,
        age: Duration,
        jitter: f64,
        retry_after: Option<Duration>,
    ) -> RetryDecision {
        if attempts >= self.max_attempts || age >= self.max_age {
            RetryDecision::DeadLetter
        } else {
            RetryDecision::RetryAfter(self.backoff(attempts, jitter, retry_after))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_and_respects_retry_after() {
        let p = RetryPolicy {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
            max_attempts: 5,
            max_age: Duration::from_secs(60),
            ..RetryPolicy::default()
        };
        assert_eq!(p.backoff(1, 1.0, None), Duration::from_millis(100));
        assert_eq!(p.backoff(3, 1.0, None), Duration::from_millis(400));
        assert_eq!(p.backoff(10, 1.0, None), Duration::from_secs(1));
        assert_eq!(p.backoff(3, 0.5, None), Duration::from_millis(200));
        assert_eq!(
            p.backoff(1, 0.0, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn gives_up_after_attempts_or_age() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.decide(p.max_attempts, Duration::ZERO, 0.5, None),
            RetryDecision::DeadLetter
        );
        assert_eq!(p.decide(1, p.max_age, 0.5, None), RetryDecision::DeadLetter);
        assert!(matches!(
            p.decide(1, Duration::ZERO, 0.5, None),
            RetryDecision::RetryAfter(_)
        ));
    }
}
