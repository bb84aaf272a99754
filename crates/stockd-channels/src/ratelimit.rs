//! Token buckets. [`TokenBucket`] is the pure arithmetic (time is an input);
//! [`Limiter`] wraps one for async callers and sleeps on tokio's clock, so
//! tests under paused time see exactly when requests would leave.
//!
//! Buckets start from the channel's published limits and are corrected from
//! what the channel reports (Shopify's `throttleStatus`, the REST call-limit
//! header) and from `Retry-After`, which empties the bucket until then.

use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// A leaky/token bucket: `capacity` tokens, refilled at `refill_per_sec`.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBucket {
    pub capacity: f64,
    pub refill_per_sec: f64,
    tokens: f64,
    /// Seconds since the bucket's origin at which `tokens` was measured.
    at_secs: f64,
    /// No token is handed out before this time (seconds since origin).
    blocked_until_secs: f64,
}

impl TokenBucket {
    /// A full bucket at time 0.
    pub fn new(capacity: f64, refill_per_sec: f64) -> TokenBucket {
        TokenBucket {
            capacity,
            refill_per_sec,
            tokens: capacity,
            at_secs: 0.0,
            blocked_until_secs: 0.0,
        }
    }

    fn refill(&mut self, now_secs: f64) {
        if now_secs > self.at_secs {
            self.tokens =
                (self.tokens + (now_secs - self.at_secs) * self.refill_per_sec).min(self.capacity);
            self.at_secs = now_secs;
        }
    }

    /// Takes `cost` tokens at `now_secs` if they are there; otherwise how
    /// long to wait before they will be. A cost above the capacity is
    /// treated as the capacity (it could never be paid otherwise).
    pub fn try_take(&mut self, now_secs: f64, cost: f64) -> Result<(), Duration> {
        self.try_take_leaving(now_secs, cost, 0.0)
    }

    /// Takes `cost` tokens only when `reserve` more would be left: a caller
    /// of lower priority leaves room for the next urgent request. The
    /// reserve is cut to what the capacity allows beside the cost.
    pub fn try_take_leaving(
        &mut self,
        now_secs: f64,
        cost: f64,
        reserve: f64,
    ) -> Result<(), Duration> {
        if now_secs < self.blocked_until_secs {
            return Err(Duration::from_secs_f64(self.blocked_until_secs - now_secs));
        }
        self.refill(now_secs);
        let cost = cost.min(self.capacity);
        let reserve = reserve.clamp(0.0, self.capacity - cost);
        if self.tokens + 1e-9 >= cost + reserve {
            self.tokens -= cost;
            Ok(())
        } else {
            let missing = cost + reserve - self.tokens;
            Err(Duration::from_secs_f64(
                missing / self.refill_per_sec.max(1e-9),
            ))
        }
    }

    /// Gives back tokens taken but not spent (e.g. Shopify refunds requested
    /// minus actual query cost).
    pub fn refund(&mut self, now_secs: f64, tokens: f64) {
        self.refill(now_secs);
        self.tokens = (self.tokens + tokens).min(self.capacity);
    }

    /// Adopts the channel's own view: its capacity, refill rate and what is
    /// available now. Never raises the local count above the channel's.
    pub fn observe(&mut self, now_secs: f64, capacity: f64, refill_per_sec: f64, available: f64) {
        self.refill(now_secs);
        if capacity > 0.0 {
            self.capacity = capacity;
        }
        if refill_per_sec > 0.0 {
            self.refill_per_sec = refill_per_sec;
        }
        self.tokens = self.tokens.min(available.max(0.0)).min(self.capacity);
    }

    /// The channel said to wait `after`: nothing leaves before then, and the
    /// bucket restarts empty.
    pub fn block_for(&mut self, now_secs: f64, after: Duration) {
        let until = now_secs + after.as_secs_f64();
        if until > self.blocked_until_secs {
            self.blocked_until_secs = until;
        }
        self.refill(now_secs);
        self.tokens = 0.0;
        self.at_secs = self.at_secs.max(until);
    }

    /// Tokens available at `now_secs`.
    pub fn available(&mut self, now_secs: f64) -> f64 {
        self.refill(now_secs);
        self.tokens
    }
}

/// An async token bucket on tokio's clock.
#[derive(Debug)]
pub struct Limiter {
    origin: Instant,
    bucket: Mutex<TokenBucket>,
}

impl Limiter {
    pub fn new(capacity: f64, refill_per_sec: f64) -> Limiter {
        Limiter {
            origin: Instant::now(),
            bucket: Mutex::new(TokenBucket::new(capacity, refill_per_sec)),
        }
    }

    /// A limiter a little under a channel's published bucket: one token
    /// under its burst and at `margin` of its rate, so requests that reach
    /// the channel bunched (network, scheduling) still fit its own count.
    pub fn under(burst: f64, refill_per_sec: f64, margin: f64) -> Limiter {
        Limiter::new((burst - 1.0).max(1.0), refill_per_sec * margin)
    }

    fn now_secs(&self) -> f64 {
        self.origin.elapsed().as_secs_f64()
    }

    fn with<T>(&self, f: impl FnOnce(&mut TokenBucket, f64) -> T) -> T {
        let now = self.now_secs();
        let mut bucket = match self.bucket.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut bucket, now)
    }

    /// Waits until `cost` tokens can be taken, then takes them.
    pub async fn acquire(&self, cost: f64) {
        self.acquire_leaving(cost, 0.0).await
    }

    /// Waits until `cost` tokens can be taken with `reserve` left over
    /// (`TokenBucket::try_take_leaving`), then takes them.
    pub async fn acquire_leaving(&self, cost: f64, reserve: f64) {
        loop {
            match self.with(|b, now| b.try_take_leaving(now, cost, reserve)) {
                Ok(()) => return,
                Err(wait) => tokio::time::sleep(wait.max(Duration::from_millis(1))).await,
            }
        }
    }

    pub fn refund(&self, tokens: f64) {
        self.with(|b, now| b.refund(now, tokens));
    }

    pub fn observe(&self, capacity: f64, refill_per_sec: f64, available: f64) {
        self.with(|b, now| b.observe(now, capacity, refill_per_sec, available));
    }

    pub fn block_for(&self, after: Duration) {
        self.with(|b, now| b.block_for(now, after));
    }

    pub fn available(&self) -> f64 {
        self.with(|b, now| b.available(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_until_empty_then_says_how_long_to_wait() {
        let mut b = TokenBucket::new(2.0, 0.5);
        assert_eq!(b.try_take(0.0, 1.0), Ok(()));
        assert_eq!(b.try_take(0.0, 1.0), Ok(()));
        assert_eq!(b.try_take(0.0, 1.0), Err(Duration::from_secs(2)));
        assert_eq!(b.try_take(2.0, 1.0), Ok(()));
    }

    #[test]
    fn a_reserve_is_left_for_urgent_callers() {
        let mut b = TokenBucket::new(4.0, 2.0);
        // Two taken leaving two; the third would eat into the reserve.
        assert_eq!(b.try_take_leaving(0.0, 1.0, 2.0), Ok(()));
        assert_eq!(b.try_take_leaving(0.0, 1.0, 2.0), Ok(()));
        assert_eq!(
            b.try_take_leaving(0.0, 1.0, 2.0),
            Err(Duration::from_millis(500))
        );
        // An urgent caller still finds the reserve.
        assert_eq!(b.try_take(0.0, 1.0), Ok(()));
        assert_eq!(b.try_take(0.0, 1.0), Ok(()));
        assert!(b.try_take(0.0, 1.0).is_err());
        // A reserve larger than the bucket allows is cut to fit.
        let mut small = TokenBucket::new(1.0, 1.0);
        assert_eq!(small.try_take_leaving(0.0, 1.0, 5.0), Ok(()));
    }

    #[test]
    fn retry_after_blocks_and_empties() {
        let mut b = TokenBucket::new(10.0, 10.0);
        b.block_for(0.0, Duration::from_secs(3));
        assert_eq!(b.try_take(1.0, 1.0), Err(Duration::from_secs(2)));
        // At the end of the block the bucket starts empty and refills from there.
        assert!(b.try_take(3.0, 1.0).is_err());
        assert_eq!(b.try_take(3.1, 1.0), Ok(()));
    }

    #[test]
    fn observe_lowers_to_what_the_channel_reports() {
        let mut b = TokenBucket::new(1000.0, 50.0);
        b.observe(0.0, 2000.0, 100.0, 150.0);
        assert_eq!(b.capacity, 2000.0);
        assert!((b.available(0.0) - 150.0).abs() < 1e-9);
        assert!((b.available(1.0) - 250.0).abs() < 1e-9);
    }

    #[tokio::test(start_paused = true)]
    async fn limiter_paces_on_paused_time() {
        let limiter = Limiter::new(2.0, 1.0);
        let start = Instant::now();
        for _ in 0..4 {
            limiter.acquire(1.0).await;
        }
        // Two from the full bucket, then one per second.
        assert_eq!(start.elapsed().as_secs(), 2);
    }
}
