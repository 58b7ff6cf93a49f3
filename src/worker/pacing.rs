//! Pacing of one check's CloudFront calls: the account-wide rate limit, and the time the
//! check has left before the claim loop abandons it.
//!
//! Time budget: the claim loop abandons a check at [`check_timeout`] (0.8 × the lease), so
//! it never runs past its lease. A call starts only when the CloudFront call timeout (all
//! SDK attempts together) plus [`WRITE_BACK_MARGIN`] still fits before that point, and a
//! token wait is cut to what is left after that. When the call timeout is longer than a
//! quarter of the budget (a short lease, warned about at start-up), a quarter of the budget
//! is used in its place, so such a worker still makes calls. A check that runs out of budget, or cannot
//! get a token in time, writes its row back to be looked at again later.

use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::WorkerContext;
use crate::lifecycle::{Action, CallError, ErrorClass, Observed, Status};
use crate::store::rate_limit::{self, Bucket};
use crate::store::{Distribution, StoreError};

/// Time kept after a call for the fenced write-back.
pub const WRITE_BACK_MARGIN: Duration = Duration::from_secs(1);

/// Rechecks counted as early in a wait for Deployed when there is no learned window. Early
/// reads yield to other calls when tokens are scarce (see [`Pacing::admit`]).
pub const EARLY_RECHECKS: i32 = 3;

/// Returns how long the claim loop lets one check run before abandoning it: well inside
/// the lease, so no other worker can have taken the row while the check still writes.
pub fn check_timeout(lease: Duration) -> Duration {
    lease.mul_f64(0.8)
}

/// Whether to make the next call now or stop and look at the row again later.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Admission {
    Go,
    Later(Duration),
}

/// The pacing state of one check.
pub struct Pacing {
    deadline: Instant,
    budget: Duration,
    call_timeout: Duration,
    early_in_wait: bool,
    /// A token the claim already took for the first call from this bucket, until spent.
    prepaid: Option<Bucket>,
}

impl Pacing {
    /// Starts the budget of a check claimed now. `early_in_wait` marks a row whose wait
    /// is still too young for completion to be likely. `prepaid` is the bucket of the token
    /// the claim took for this check, if any.
    pub fn start(context: &WorkerContext, early_in_wait: bool, prepaid: Option<Bucket>) -> Self {
        let budget = check_timeout(context.settings.lease);
        Pacing {
            deadline: Instant::now() + budget,
            budget,
            call_timeout: context.cloudfront.call_timeout(),
            early_in_wait,
            prepaid,
        }
    }

    /// Waits for a token for the call `action` makes, if the budget allows.
    ///
    /// Priority when tokens are scarce: a read of a row early in its wait for Deployed takes
    /// a token only if one is ready at once. Early means younger than the learned low
    /// quantile of its kind of wait under the adaptive schedule, and otherwise fewer than
    /// [`EARLY_RECHECKS`] rechecks so far. Every other call may queue for a token up to the
    /// configured maximum wait, so mutating calls and rows likely to have finished go first.
    ///
    /// No token is taken for a call from an effectively unlimited bucket, nor for the first
    /// call from the bucket the claim already paid.
    pub async fn admit(
        &mut self,
        context: &WorkerContext,
        row: &Distribution,
        status: Status,
        action: &Action,
    ) -> Result<Admission, StoreError> {
        let Some(bucket) = bucket_of(action) else {
            return Ok(Admission::Go);
        };
        let settings = &context.settings;
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        let needed = self.call_timeout.min(self.budget / 4) + WRITE_BACK_MARGIN;
        if remaining < needed {
            info!(distribution.id = %row.id, remaining_seconds = remaining.as_secs_f64(), "check is out of time before its lease ends; rechecking shortly");
            return Ok(Admission::Later(settings.delays.confirm));
        }
        if settings.rate_limits.limit(bucket).is_unlimited() {
            return Ok(Admission::Go);
        }
        if self.prepaid == Some(bucket) {
            self.prepaid = None;
            return Ok(Admission::Go);
        }

        let early_read = *action == Action::Read
            && matches!(status, Status::Deploying | Status::Disabling)
            && self.early_in_wait;
        let max_wait = if early_read {
            Duration::ZERO
        } else {
            settings.rate_limits.max_wait.min(remaining - needed)
        };

        match rate_limit::take(&context.pool, bucket, &settings.rate_limits, max_wait).await? {
            Some(wait) => {
                if !wait.is_zero() {
                    metrics::histogram!("cloudfront_lifecycle_rate_limit_wait_seconds", "bucket" => bucket.as_str())
                        .record(wait.as_secs_f64());
                    tokio::time::sleep(wait).await;
                }
                Ok(Admission::Go)
            }
            None => {
                let delay = settings
                    .rate_limits
                    .max_wait
                    .mul_f64(0.5 + rand::random::<f64>());
                metrics::counter!("cloudfront_lifecycle_rate_limit_deferred_total", "bucket" => bucket.as_str())
                    .increment(1);
                info!(distribution.id = %row.id, bucket = bucket.as_str(), retry_in_seconds = delay.as_secs_f64(), "no CloudFront token within the allowed wait; rechecking later");
                Ok(Admission::Later(delay))
            }
        }
    }

    /// Cuts the shared rate of the bucket whose call CloudFront throttled. A failure here is
    /// logged and ignored: the throttled row backs off by itself.
    pub async fn after_call(&self, context: &WorkerContext, id: uuid::Uuid, observed: &Observed) {
        let (bucket, error) = match observed {
            Observed::Read(Err(error)) => (Bucket::Read, error),
            Observed::Created(Err(error))
            | Observed::Disabled(Err(error))
            | Observed::Deleted(Err(error)) => (Bucket::Mutating, error),
            _ => return,
        };
        if !is_throttled(error) {
            return;
        }
        match rate_limit::decrease(&context.pool, bucket, &context.settings.rate_limits).await {
            Ok(Some(rate)) => {
                metrics::counter!("cloudfront_lifecycle_rate_limit_decreases_total", "bucket" => bucket.as_str())
                    .increment(1);
                warn!(distribution.id = %id, bucket = bucket.as_str(), rate_per_second = rate, "CloudFront throttled a call; cut the shared rate");
            }
            Ok(None) => {}
            Err(error) => {
                warn!(distribution.id = %id, bucket = bucket.as_str(), %error, "cutting the shared rate after Throttling failed");
            }
        }
    }
}

fn is_throttled(error: &CallError) -> bool {
    error.class == ErrorClass::Throttled
}

/// Returns the bucket the call for `action` draws from, or `None` when it makes no call.
pub fn bucket_of(action: &Action) -> Option<Bucket> {
    match action {
        Action::Read => Some(Bucket::Read),
        Action::Create | Action::Update { .. } | Action::Disable { .. } | Action::Delete { .. } => {
            Some(Bucket::Mutating)
        }
        Action::Adopt { .. } | Action::Recheck(_) | Action::Settle => None,
    }
}
