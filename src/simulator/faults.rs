//! Injected failures: queued errors, lost responses, latency, stale reads and rate limits.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::error::ApiError;

/// A CloudFront API operation the simulator serves, named as in the API reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Operation {
    CreateDistribution,
    CreateDistributionWithTags,
    GetDistribution,
    GetDistributionConfig,
    UpdateDistribution,
    DeleteDistribution,
    ListDistributions,
    TagResource,
    UntagResource,
    ListTagsForResource,
}

impl Operation {
    /// Returns whether the operation changes state, which selects its rate-limit bucket.
    pub fn is_mutating(self) -> bool {
        matches!(
            self,
            Operation::CreateDistribution
                | Operation::CreateDistributionWithTags
                | Operation::UpdateDistribution
                | Operation::DeleteDistribution
                | Operation::TagResource
                | Operation::UntagResource
        )
    }
}

/// The next `count` calls of `operation` (of every operation when `None`) fail with
/// this error before doing anything.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InjectedError {
    #[serde(default)]
    pub operation: Option<Operation>,
    pub count: u32,
    pub status: u16,
    pub code: String,
    pub message: String,
}

/// The way a call loses its response after its change was applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LostResponseMode {
    /// Return 500 InternalError.
    InternalError,
    /// Send the status line and headers, then fail the body so the connection is reset.
    DropConnection,
}

/// The next `count` successful calls of `operation` (of every operation when `None`)
/// apply their change and then lose the response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LostResponse {
    #[serde(default)]
    pub operation: Option<Operation>,
    pub count: u32,
    pub mode: LostResponseMode,
}

/// The next `count` GetDistribution or GetDistributionConfig reads of
/// `distribution_id` (of any distribution when `None`) return the version before
/// its last change. Reads of a distribution that never changed do not use up the count.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaleReads {
    #[serde(default)]
    pub distribution_id: Option<String>,
    pub count: u32,
}

/// A token bucket: `burst` calls at once, refilled at `rate_per_second`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RateLimit {
    pub rate_per_second: f64,
    pub burst: u32,
}

/// Rate limits for mutating calls and for reads; `None` leaves that kind unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RateLimits {
    #[serde(default)]
    pub mutating: Option<RateLimit>,
    #[serde(default)]
    pub read: Option<RateLimit>,
}

#[derive(Debug)]
struct TokenBucket {
    limit: RateLimit,
    tokens: f64,
    refilled_at: Instant,
}

impl TokenBucket {
    fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            tokens: f64::from(limit.burst),
            refilled_at: Instant::now(),
        }
    }

    fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.tokens =
            (self.tokens + elapsed * self.limit.rate_per_second).min(f64::from(self.limit.burst));
        self.refilled_at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The faults currently armed.
#[derive(Debug, Default)]
pub struct Faults {
    errors: Vec<InjectedError>,
    lost_responses: Vec<LostResponse>,
    stale_reads: Vec<StaleReads>,
    pub latency: Duration,
    mutating_bucket: Option<TokenBucket>,
    read_bucket: Option<TokenBucket>,
}

fn applies(filter: Option<Operation>, operation: Operation) -> bool {
    filter.is_none_or(|wanted| wanted == operation)
}

impl Faults {
    pub fn inject_error(&mut self, error: InjectedError) {
        if error.count > 0 {
            self.errors.push(error);
        }
    }

    pub fn lose_responses(&mut self, lost: LostResponse) {
        if lost.count > 0 {
            self.lost_responses.push(lost);
        }
    }

    pub fn serve_stale_reads(&mut self, stale: StaleReads) {
        if stale.count > 0 {
            self.stale_reads.push(stale);
        }
    }

    pub fn set_rate_limits(&mut self, limits: RateLimits) {
        self.mutating_bucket = limits.mutating.map(TokenBucket::new);
        self.read_bucket = limits.read.map(TokenBucket::new);
    }

    /// Takes a token for `operation`, or returns the Throttling error when its bucket is empty.
    pub fn check_rate(&mut self, operation: Operation, now: Instant) -> Result<(), ApiError> {
        let bucket = if operation.is_mutating() {
            self.mutating_bucket.as_mut()
        } else {
            self.read_bucket.as_mut()
        };
        let allowed = bucket.is_none_or(|bucket| bucket.try_take(now));
        if allowed {
            Ok(())
        } else {
            Err(ApiError::throttling())
        }
    }

    /// Uses up one injected error for `operation`, oldest first.
    pub fn take_error(&mut self, operation: Operation) -> Result<(), ApiError> {
        let Some(index) = self
            .errors
            .iter()
            .position(|error| applies(error.operation, operation))
        else {
            return Ok(());
        };
        let error = &mut self.errors[index];
        let api_error = ApiError::new(error.status, error.code.clone(), error.message.clone());
        error.count -= 1;
        if error.count == 0 {
            self.errors.remove(index);
        }
        Err(api_error)
    }

    /// Uses up one lost response for `operation`, returning how to lose it.
    pub fn take_lost_response(&mut self, operation: Operation) -> Option<LostResponseMode> {
        let index = self
            .lost_responses
            .iter()
            .position(|lost| applies(lost.operation, operation))?;
        let lost = &mut self.lost_responses[index];
        let mode = lost.mode;
        lost.count -= 1;
        if lost.count == 0 {
            self.lost_responses.remove(index);
        }
        Some(mode)
    }

    /// Uses up one stale read of `distribution_id`, returning whether to serve it stale.
    pub fn take_stale_read(&mut self, distribution_id: &str) -> bool {
        let Some(index) = self.stale_reads.iter().position(|stale| {
            stale
                .distribution_id
                .as_deref()
                .is_none_or(|wanted| wanted == distribution_id)
        }) else {
            return false;
        };
        let stale = &mut self.stale_reads[index];
        stale.count -= 1;
        if stale.count == 0 {
            self.stale_reads.remove(index);
        }
        true
    }
}
