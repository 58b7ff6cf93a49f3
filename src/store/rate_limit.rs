//! Account-wide token buckets for CloudFront calls, kept in Postgres so every replica draws
//! from the same budget.
//!
//! A bucket refills at its current rate up to its burst. Taking a token is one atomic UPDATE
//! that computes the refill from `now()`. A caller may take a token that is not ready yet
//! (the bucket goes negative) when the wait for it is within `max_wait`. It then sleeps
//! that long, so callers queue in the row instead of retrying. On Throttling the rate is
//! halved, at most once per [`DECREASE_COOLDOWN_SECONDS`], down to a floor, and it climbs
//! back linearly with time (AIMD).

use std::time::Duration;

use sqlx::PgExecutor;

use super::StoreError;

/// The bucket a CloudFront call draws from. CloudFront throttles mutating calls far sooner
/// than reads, so they are limited apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bucket {
    Mutating,
    Read,
}

impl Bucket {
    pub fn as_str(self) -> &'static str {
        match self {
            Bucket::Mutating => "mutating",
            Bucket::Read => "read",
        }
    }
}

/// Configured limits of one bucket.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BucketLimit {
    /// Calls per second when CloudFront is not throttling.
    pub rate_per_second: f64,
    /// Calls that may be made at once after a quiet period.
    pub burst: f64,
}

/// Both buckets' limits and how the rate adapts to Throttling.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimitSettings {
    pub mutating: BucketLimit,
    pub read: BucketLimit,
    /// Seconds the rate takes to climb from zero back to the configured rate after a cut;
    /// a halved rate is back in half this time.
    pub recovery: Duration,
    /// Maximum time a check waits for a token before it reschedules its row.
    pub max_wait: Duration,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        RateLimitSettings {
            mutating: BucketLimit {
                rate_per_second: 1.0,
                burst: 2.0,
            },
            read: BucketLimit {
                rate_per_second: 5.0,
                burst: 10.0,
            },
            recovery: Duration::from_secs(60),
            max_wait: Duration::from_secs(10),
        }
    }
}

/// Calls per second at or above which a bucket counts as unlimited: it is not kept in
/// Postgres and no call takes a token from it. CloudFront's own limits are far lower, so only
/// benchmarks and tests configure such rates.
pub const UNLIMITED_RATE: f64 = 10_000.0;

impl BucketLimit {
    /// Returns whether the bucket is effectively unlimited (see [`UNLIMITED_RATE`]).
    pub fn is_unlimited(&self) -> bool {
        self.rate_per_second >= UNLIMITED_RATE
    }
}

impl RateLimitSettings {
    pub fn limit(&self, bucket: Bucket) -> BucketLimit {
        match bucket {
            Bucket::Mutating => self.mutating,
            Bucket::Read => self.read,
        }
    }
}

/// The lowest rate Throttling can push a bucket to, as a fraction of its configured rate.
pub const FLOOR_FRACTION: f64 = 0.1;

/// Throttled calls that were sent before a cut took effect must not cut the rate again.
pub const DECREASE_COOLDOWN_SECONDS: f64 = 2.0;

/// Takes one token from `bucket`. Returns how long the caller must wait before its call,
/// or `None` when the wait would exceed `max_wait` (no token was taken).
pub async fn take(
    executor: impl PgExecutor<'_>,
    bucket: Bucket,
    settings: &RateLimitSettings,
    max_wait: Duration,
) -> Result<Option<Duration>, StoreError> {
    let limit = settings.limit(bucket);
    let rate = limit.rate_per_second.max(f64::MIN_POSITIVE);
    let floor = rate * FLOOR_FRACTION;
    let increase_per_second = rate / settings.recovery.as_secs_f64().max(1.0);
    // Every expression reads the row's own columns, so a replica that waited for the row
    // lock re-evaluates them against the newest version and no token is handed out twice.
    let wait = sqlx::query_scalar!(
        r#"
        update cloudfront_rate_limits
        set tokens = least($3, tokens
                + greatest(0, extract(epoch from now() - refilled_at)::float8)
                  * coalesce(rate, $2)) - 1,
            rate = greatest($4, least($2, coalesce(rate, $2)
                + $5 * greatest(0, extract(epoch from now() - refilled_at)::float8))),
            refilled_at = greatest(refilled_at, now())
        where bucket = $1
          and (1 - least($3, tokens
                + greatest(0, extract(epoch from now() - refilled_at)::float8)
                  * coalesce(rate, $2))) / coalesce(rate, $2) <= $6
        returning greatest(0, -tokens / rate) as "wait_seconds!"
        "#,
        bucket.as_str(),
        rate,
        limit.burst.max(1.0),
        floor,
        increase_per_second,
        max_wait.as_secs_f64(),
    )
    .fetch_optional(executor)
    .await?;
    Ok(wait.map(Duration::from_secs_f64))
}

/// Halves `bucket`'s rate after CloudFront throttled a call, unless another call cut it
/// within the cooldown. Unused tokens are dropped so the cut takes effect at once. Returns
/// the new rate when this call cut it.
pub async fn decrease(
    executor: impl PgExecutor<'_>,
    bucket: Bucket,
    settings: &RateLimitSettings,
) -> Result<Option<f64>, StoreError> {
    let rate = settings
        .limit(bucket)
        .rate_per_second
        .max(f64::MIN_POSITIVE);
    let new_rate = sqlx::query_scalar!(
        r#"
        update cloudfront_rate_limits
        set rate = greatest($3, coalesce(rate, $2) * 0.5),
            tokens = least(tokens, 0),
            decreased_at = now()
        where bucket = $1
          and (decreased_at is null or decreased_at < now() - make_interval(secs => $4))
        returning rate as "rate!"
        "#,
        bucket.as_str(),
        rate,
        rate * FLOOR_FRACTION,
        DECREASE_COOLDOWN_SECONDS,
    )
    .fetch_optional(executor)
    .await?;
    Ok(new_rate)
}
