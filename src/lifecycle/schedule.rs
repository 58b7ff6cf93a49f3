//! When a waiting row is looked at again.
//!
//! A deploy or disable usually finishes in a few minutes and occasionally takes 40 or more.
//! The adaptive schedule (the default) learns how long this account's waits take from the
//! waits it has finished and the ones still open. It skips the stretch where completion is
//! unlikely, checks densely while completion is likely, and spaces out geometrically for the
//! rare long wait. Until enough waits have finished it falls back to a geometric backoff from
//! one second. Failed calls back off exponentially; throttled calls wait a fixed, jittered
//! while.

use std::time::Duration;

use super::{Status, Wait};

/// The shortest recheck delay a schedule may name: a millisecond, so a typo cannot turn the
/// worker into a busy loop against CloudFront.
const MIN_DELAY_SECONDS: f64 = 0.001;

/// The maximum recheck delay a schedule may name: a day.
const MAX_DELAY_SECONDS: f64 = 86_400.0;

/// The longest stretch before a wait was seen over that counts toward its estimated end.
/// A wait seen over at the first check after a long delay ended somewhere in that delay,
/// and taking the midpoint would drag the learned low quantile down by half of it with each
/// such wait, so the end is placed at most this long before it was seen.
pub const ESTIMATE_SPAN: Duration = ADAPTIVE_DENSE;

/// Finished waits of one kind needed before their quantiles are trusted; fewer fall back to
/// [`ADAPTIVE_FALLBACK`].
pub const MIN_OBSERVATIONS: i64 = 20;

/// The quantile of wait durations before which the adaptive schedule does not check: about
/// one wait in 33 finishes earlier and is seen late.
pub const LOW_QUANTILE: f64 = 0.03;

/// The quantile of wait durations after which the adaptive schedule spaces its checks out.
pub const HIGH_QUANTILE: f64 = 0.97;

/// Growth of the delay past the high quantile: each delay is this fraction of the time
/// already spent past it, so delays grow by a factor of 1.25 from one check to the next.
const TAIL_FRACTION: f64 = 0.25;

/// Slack when comparing an estimated survival with a quantile's level, so that rounding in
/// the product (0.97 computed as 0.970000001) does not move a quantile by one observation.
const SURVIVAL_TOLERANCE: f64 = 1e-9;

/// Relative jitter of adaptive delays (plus or minus 5%), so rows that started waiting
/// together do not stay in step.
const ADAPTIVE_JITTER: f64 = 0.1;

/// The schedule the adaptive one follows before it has learned anything: checks 1, 1.5,
/// 2.25 … seconds after the change, then every 20 seconds.
pub const ADAPTIVE_FALLBACK: RecheckSchedule = RecheckSchedule::Backoff {
    first: Duration::from_secs(1),
    factor: 1.5,
    max: Duration::from_secs(20),
};

/// The spacing of rechecks during a wait for Deployed.
#[derive(Clone, Debug, PartialEq)]
pub enum RecheckSchedule {
    /// Every `interval`, as a delay queue or the AWS SDK's waiter would poll.
    Fixed { interval: Duration },
    /// `first`, then each delay `factor` times the previous one, up to `max`.
    Backoff {
        first: Duration,
        factor: f64,
        max: Duration,
    },
    /// First check at the learned low quantile of this kind of wait, then every `dense`
    /// until the learned high quantile, then delays growing by 1.25 up to `max`.
    Adaptive { dense: Duration, max: Duration },
}

/// The adaptive schedule's default dense interval. Checks every 13 seconds see 95% of the
/// waits that end inside the learned window within 12.4 seconds of their end.
pub const ADAPTIVE_DENSE: Duration = Duration::from_secs(13);

/// The adaptive schedule's default ceiling for the long tail.
pub const ADAPTIVE_MAX: Duration = Duration::from_secs(60);

impl Default for RecheckSchedule {
    fn default() -> Self {
        RecheckSchedule::Adaptive {
            dense: ADAPTIVE_DENSE,
            max: ADAPTIVE_MAX,
        }
    }
}

impl std::str::FromStr for RecheckSchedule {
    type Err = String;

    /// Parses `fixed:SECONDS`, `backoff:FIRST,FACTOR,MAX` (seconds, factor, seconds),
    /// `adaptive` or `adaptive:DENSE,MAX` (seconds, with DENSE at most MAX).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || {
            format!(
                "invalid recheck schedule {text:?}: expected adaptive, adaptive:DENSE,MAX, fixed:SECONDS or backoff:FIRST,FACTOR,MAX with delays from 0.001 to 86400 seconds and a factor from 1 to 10, for example adaptive:12,60"
            )
        };
        if text == "adaptive" {
            return Ok(RecheckSchedule::default());
        }
        let (kind, parameters) = text.split_once(':').ok_or_else(invalid)?;
        let numbers: Vec<f64> = parameters
            .split(',')
            .map(|part| part.trim().parse::<f64>())
            .collect::<Result<_, _>>()
            .map_err(|_| invalid())?;
        let is_delay = |seconds: &f64| (MIN_DELAY_SECONDS..=MAX_DELAY_SECONDS).contains(seconds);
        match (kind, numbers.as_slice()) {
            ("fixed", [seconds]) if is_delay(seconds) => Ok(RecheckSchedule::Fixed {
                interval: Duration::from_secs_f64(*seconds),
            }),
            ("backoff", [first, factor, max])
                if is_delay(first)
                    && is_delay(max)
                    && (1.0..=10.0).contains(factor)
                    && first <= max =>
            {
                Ok(RecheckSchedule::Backoff {
                    first: Duration::from_secs_f64(*first),
                    factor: *factor,
                    max: Duration::from_secs_f64(*max),
                })
            }
            ("adaptive", [dense, max]) if is_delay(dense) && is_delay(max) && dense <= max => {
                Ok(RecheckSchedule::Adaptive {
                    dense: Duration::from_secs_f64(*dense),
                    max: Duration::from_secs_f64(*max),
                })
            }
            _ => Err(invalid()),
        }
    }
}

impl std::fmt::Display for RecheckSchedule {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecheckSchedule::Fixed { interval } => {
                write!(formatter, "fixed:{}", interval.as_secs_f64())
            }
            RecheckSchedule::Backoff { first, factor, max } => write!(
                formatter,
                "backoff:{},{},{}",
                first.as_secs_f64(),
                factor,
                max.as_secs_f64()
            ),
            RecheckSchedule::Adaptive { dense, max } => write!(
                formatter,
                "adaptive:{},{}",
                dense.as_secs_f64(),
                max.as_secs_f64()
            ),
        }
    }
}

/// The kind of change a wait for Deployed follows. Each kind is learned apart, because a
/// disable and a configuration deploy need not take equally long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitKind {
    /// A create or an update propagating.
    Deploy,
    /// A disable before deletion propagating.
    Disable,
}

impl WaitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WaitKind::Deploy => "deploy",
            WaitKind::Disable => "disable",
        }
    }

    /// Returns the kind of wait a row in `status` is in, or `None` when it is not waiting for
    /// Deployed.
    pub fn of_status(status: Status) -> Option<WaitKind> {
        match status {
            Status::Deploying | Status::Updating => Some(WaitKind::Deploy),
            Status::Disabling => Some(WaitKind::Disable),
            _ => None,
        }
    }
}

/// The stretch of a wait in which waits of its kind are likely to finish: from the low to the
/// high quantile of their durations.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LearnedWindow {
    pub low: Duration,
    pub high: Duration,
}

impl LearnedWindow {
    /// Builds a window from `count` observations and their low and high quantiles in
    /// seconds, or `None` when there are too few observations or the values are unusable.
    pub fn from_quantiles(count: i64, low_seconds: f64, high_seconds: f64) -> Option<Self> {
        let usable = |seconds: f64| seconds.is_finite() && seconds >= 0.0;
        if count < MIN_OBSERVATIONS || !usable(low_seconds) || !usable(high_seconds) {
            return None;
        }
        let low = low_seconds.min(MAX_DELAY_SECONDS);
        let high = high_seconds.clamp(low, MAX_DELAY_SECONDS);
        Some(LearnedWindow {
            low: Duration::from_secs_f64(low),
            high: Duration::from_secs_f64(high),
        })
    }

    /// Estimates the window from finished and open waits of one kind, or returns `None` when
    /// fewer than [`MIN_OBSERVATIONS`] waits have finished or none of the steps is usable.
    ///
    /// Both quantiles come from the product-limit estimate ([`product_limit_quantile`]), so a
    /// wait still open counts as one that lasted at least its age. When so many waits are
    /// open that the high quantile is not reached yet, nothing is known about where the last
    /// 3% end. The window then reaches to the oldest open wait, so every wait is checked
    /// densely at least up to the age the oldest one has reached. When even the low quantile
    /// is not reached, the longest finished wait is used: fewer than 3% end before it, so the
    /// first check there is no later than the estimate would place it.
    pub fn estimate(sample: &WaitSample) -> Option<Self> {
        if sample.finished < MIN_OBSERVATIONS {
            return None;
        }
        let longest_finished = sample
            .steps
            .iter()
            .filter(|step| step.is_usable())
            .map(|step| step.seconds)
            .fold(None, |longest: Option<f64>, seconds| {
                Some(longest.map_or(seconds, |longest| longest.max(seconds)))
            })?;
        let oldest_open = sample
            .oldest_open
            .filter(|seconds| seconds.is_finite() && *seconds >= 0.0)
            .unwrap_or(0.0);

        let low = product_limit_quantile(&sample.steps, LOW_QUANTILE).unwrap_or(longest_finished);
        let high = product_limit_quantile(&sample.steps, HIGH_QUANTILE)
            .unwrap_or_else(|| longest_finished.max(oldest_open));
        Self::from_quantiles(sample.finished, low, high)
    }

    /// Returns whether a wait this old is past the point where completion becomes likely.
    pub fn is_likely_done(&self, elapsed: Duration) -> bool {
        elapsed >= self.low
    }
}

/// One distinct duration at which finished waits ended, with the number of waits at risk
/// there: the product-limit estimator's input, which the store computes in SQL.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SurvivalStep {
    /// The duration, in seconds from the start of the wait.
    pub seconds: f64,
    /// Finished waits that lasted exactly this long.
    pub ended: i64,
    /// Waits, finished or still open, that lasted at least this long.
    pub at_risk: i64,
}

impl SurvivalStep {
    fn is_usable(&self) -> bool {
        self.seconds.is_finite() && self.seconds >= 0.0 && self.ended > 0 && self.at_risk > 0
    }
}

/// Finished and open waits of one kind, summarized for [`LearnedWindow::estimate`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WaitSample {
    /// One step per distinct finished duration, in any order.
    pub steps: Vec<SurvivalStep>,
    /// Finished waits in the sample; [`MIN_OBSERVATIONS`] applies to this count.
    pub finished: i64,
    /// The age in seconds of the oldest wait still open, if any is open.
    pub oldest_open: Option<f64>,
}

impl WaitSample {
    /// Builds a sample from the durations of finished waits and the ages of open ones, in
    /// seconds. Negative and non-finite values are left out. A wait open exactly as long as
    /// a finished one lasted counts as at risk at that duration.
    pub fn from_durations(finished: &[f64], open: &[f64]) -> Self {
        let usable = |seconds: &&f64| seconds.is_finite() && **seconds >= 0.0;
        let mut ended: Vec<f64> = finished.iter().filter(usable).copied().collect();
        let mut open: Vec<f64> = open.iter().filter(usable).copied().collect();
        ended.sort_by(f64::total_cmp);
        open.sort_by(f64::total_cmp);

        let mut steps: Vec<SurvivalStep> = Vec::new();
        for (index, &seconds) in ended.iter().enumerate() {
            if let Some(last) = steps.last_mut()
                && last.seconds == seconds
            {
                last.ended += 1;
                continue;
            }
            let finished_at_risk = ended.len() - index;
            let open_at_risk = open.len() - open.partition_point(|age| *age < seconds);
            steps.push(SurvivalStep {
                seconds,
                ended: 1,
                at_risk: (finished_at_risk + open_at_risk) as i64,
            });
        }

        WaitSample {
            steps,
            finished: ended.len() as i64,
            oldest_open: open.last().copied(),
        }
    }
}

/// Estimates the `quantile` (in [0, 1]) of wait durations with the product-limit
/// (Kaplan-Meier) estimator, in seconds. Returns `None` when the estimate never reaches it:
/// the waits still open leave too much unknown, or there are no usable steps.
///
/// The estimated share of waits lasting longer than t is the product, over the finished
/// durations d up to t, of 1 - ended(d) / at_risk(d). The quantile is the shortest finished
/// duration at which that share has fallen to 1 - `quantile` or below. Without open waits
/// this is the empirical quantile that Postgres's `percentile_disc` returns. Steps with
/// negative or non-finite durations, or no waits ending or at risk, are skipped, and a
/// step with more waits ending than at risk counts as all of them ending.
pub fn product_limit_quantile(steps: &[SurvivalStep], quantile: f64) -> Option<f64> {
    if !quantile.is_finite() {
        return None;
    }
    let target = 1.0 - quantile.clamp(0.0, 1.0) + SURVIVAL_TOLERANCE;

    let mut usable: Vec<SurvivalStep> = steps
        .iter()
        .copied()
        .filter(SurvivalStep::is_usable)
        .collect();
    usable.sort_by(|left, right| left.seconds.total_cmp(&right.seconds));

    let mut survival = 1.0;
    for step in usable {
        let ended = step.ended.min(step.at_risk) as f64;
        survival *= 1.0 - ended / step.at_risk as f64;
        if survival <= target {
            return Some(step.seconds);
        }
    }
    None
}

/// A row's position in its current wait, as the recheck schedule uses it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct WaitProgress {
    /// Rechecks already made during the wait.
    pub checks: u32,
    /// Time since the wait began (zero when it begins with this check).
    pub elapsed: Duration,
    /// The learned window of this kind of wait, if enough waits have been seen.
    pub window: Option<LearnedWindow>,
}

/// Delays that do not depend on the recheck schedule.
#[derive(Clone, Debug, PartialEq)]
pub struct Delays {
    /// Before re-reading to confirm a surprising read.
    pub confirm: Duration,
    /// The first retry after a failed call; doubles with each further failure.
    pub backoff_first: Duration,
    /// The maximum retry delay after failed calls.
    pub backoff_max: Duration,
    /// After CloudFront throttled a call.
    pub throttled: Duration,
}

impl Default for Delays {
    fn default() -> Self {
        Delays {
            confirm: Duration::from_secs(5),
            backoff_first: Duration::from_secs(2),
            backoff_max: Duration::from_secs(300),
            throttled: Duration::from_secs(10),
        }
    }
}

/// Computes the delay before the next look at a row whose wait has no learned window, as
/// [`delay_in_wait`] does with only `checks` known.
pub fn delay(
    wait: Wait,
    schedule: &RecheckSchedule,
    delays: &Delays,
    checks: u32,
    failures: u32,
    jitter: f64,
) -> Duration {
    let progress = WaitProgress {
        checks,
        ..WaitProgress::default()
    };
    delay_in_wait(wait, schedule, delays, &progress, failures, jitter)
}

/// Computes the delay before the next look at a row.
///
/// `progress` places the row in its current wait for Deployed, `failures` counts the
/// consecutive failed attempts. `jitter` is a number in [0, 1) drawn by the caller; it
/// spreads retries so that rows failing together do not retry together. All durations are
/// in the schedule's own time; the worker scales them for benchmarks.
pub fn delay_in_wait(
    wait: Wait,
    schedule: &RecheckSchedule,
    delays: &Delays,
    progress: &WaitProgress,
    failures: u32,
    jitter: f64,
) -> Duration {
    let jitter = jitter.clamp(0.0, 1.0);
    match wait {
        Wait::Deploy => match schedule {
            RecheckSchedule::Fixed { interval } => *interval,
            RecheckSchedule::Backoff { first, factor, max } => {
                backoff(*first, *factor, *max, progress.checks)
            }
            RecheckSchedule::Adaptive { dense, max } => match progress.window {
                Some(window) => adaptive(*dense, *max, &window, progress.elapsed, jitter),
                None => delay_in_wait(wait, &ADAPTIVE_FALLBACK, delays, progress, failures, jitter),
            },
        },
        Wait::Confirm => delays.confirm,
        // Exponential with "equal jitter": between half and all of the exponential delay.
        Wait::Backoff => {
            let exponent = failures.saturating_sub(1).min(30) as i32;
            let full = (delays.backoff_first.as_secs_f64() * 2f64.powi(exponent))
                .min(delays.backoff_max.as_secs_f64());
            Duration::from_secs_f64(full * (0.5 + 0.5 * jitter))
        }
        Wait::Throttled => delays.throttled.mul_f64(0.5 + jitter),
    }
}

fn backoff(first: Duration, factor: f64, max: Duration, checks: u32) -> Duration {
    let grown = first.as_secs_f64() * factor.powi(checks.min(64) as i32);
    Duration::from_secs_f64(grown.min(max.as_secs_f64()))
}

/// The adaptive delay for a wait `elapsed` old: up to the low quantile, then every `dense`,
/// then past the high quantile a delay of a quarter of the time spent past it, at least
/// `dense` and at most `max`. Jittered by plus or minus 5%.
///
/// A check that the jitter placed up to 5% before the low quantile counts as the first
/// check in the window. A dense delay follows it, not one more check a few seconds later at
/// the low quantile itself.
fn adaptive(
    dense: Duration,
    max: Duration,
    window: &LearnedWindow,
    elapsed: Duration,
    jitter: f64,
) -> Duration {
    let dense = dense.min(max);
    let window_opens = window.low.mul_f64(1.0 - ADAPTIVE_JITTER / 2.0);
    let planned = if elapsed < window_opens {
        window.low - elapsed
    } else if elapsed < window.high {
        dense
    } else {
        (elapsed - window.high)
            .mul_f64(TAIL_FRACTION)
            .clamp(dense, max)
    };
    let jittered = planned.mul_f64(1.0 - ADAPTIVE_JITTER / 2.0 + ADAPTIVE_JITTER * jitter);
    jittered.max(Duration::from_secs_f64(MIN_DELAY_SECONDS))
}
