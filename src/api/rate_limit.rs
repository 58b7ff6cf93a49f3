//! Per-owner request rate limits (a generic cell rate algorithm, from the governor crate).

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota};

use super::error::ApiError;

/// Checks between two sweeps of owners whose bucket is full again.
const SWEEP_EVERY: u64 = 4096;

/// Limits each owner to a sustained rate with a burst allowance.
pub struct OwnerRateLimiter {
    limiter: DefaultKeyedRateLimiter<String>,
    checks: AtomicU64,
}

impl OwnerRateLimiter {
    /// Creates a limiter allowing `per_second` requests per second and bursts of `burst`.
    /// Returns `None` when `per_second` is 0, which disables limiting. A burst of 0 is read
    /// as 1.
    pub fn new(per_second: u32, burst: u32) -> Option<Self> {
        let per_second = NonZeroU32::new(per_second)?;
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        Some(OwnerRateLimiter {
            limiter: DefaultKeyedRateLimiter::keyed(
                Quota::per_second(per_second).allow_burst(burst),
            ),
            checks: AtomicU64::new(0),
        })
    }

    /// Charges one request to `owner`, or returns a `rate-limited` error saying when to retry.
    pub fn check(&self, owner: &str) -> Result<(), ApiError> {
        // Owners whose bucket has refilled need no state, so the map is swept now and then
        // to keep memory proportional to recently active owners.
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        self.limiter
            .check_key(&owner.to_owned())
            .map_err(|not_until| {
                let wait = not_until.wait_time_from(self.limiter.clock().now());
                tracing::debug!(
                    owner,
                    wait_ms = wait.as_millis() as u64,
                    "request rate-limited"
                );
                ApiError::RateLimited {
                    retry_after: round_up_to_seconds(wait),
                }
            })
    }
}

/// Whole seconds for `Retry-After`, rounded up and at least 1, so a client that honours the
/// header is not rejected again.
fn round_up_to_seconds(wait: Duration) -> u64 {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    seconds.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_rate_disables() {
        assert!(OwnerRateLimiter::new(0, 5).is_none());
    }

    #[test]
    fn burst_then_reject() {
        let limiter = OwnerRateLimiter::new(1, 3).unwrap();
        for _ in 0..3 {
            assert!(limiter.check("alice").is_ok());
        }
        assert!(matches!(
            limiter.check("alice"),
            Err(ApiError::RateLimited { retry_after: 1 })
        ));
        assert!(limiter.check("bob").is_ok());
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(round_up_to_seconds(Duration::ZERO), 1);
        assert_eq!(round_up_to_seconds(Duration::from_millis(1200)), 2);
        assert_eq!(round_up_to_seconds(Duration::from_secs(3)), 3);
    }
}
