//! When a waiting row is looked at again.
//!
//! A deploy or disable usually finishes in a few minutes and occasionally takes 40 or more.
//! The adaptive schedule (the default) learns from the waits this account has finished how
//! long they take: it skips the stretch where completion is unlikely, checks densely while
//! completion is likely, and spaces out geometrically for the rare long wait. Until enough
//! waits have been seen it falls back to a geometric backoff from one second. Failed calls
//! back off exponentially; throttled calls wait a fixed, jittered while.

use std::time::Duration;

use super::Wait;

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

/// The quantile of finished waits before which the adaptive schedule does not check: about
/// one wait in 33 finishes earlier and is seen late.
pub const LOW_QUANTILE: f64 = 0.03;

/// The quantile of finished waits after which the adaptive schedule spaces its checks out.
pub const HIGH_QUANTILE: f64 = 0.97;

/// Growth of the delay past the high quantile: each delay is this fraction of the time
/// already spent past it, so delays grow by a factor of 1.25 from one check to the next.
/// Slow growth matters because the learned high quantile runs low while long waits are
/// still open (they are not observations yet).
const TAIL_FRACTION: f64 = 0.25;

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
}

/// The stretch of a wait in which recent waits of its kind finished: from the low to the
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

    /// Returns whether a wait this old is past the point where completion becomes likely.
    pub fn is_likely_done(&self, elapsed: Duration) -> bool {
        elapsed >= self.low
    }
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
fn adaptive(
    dense: Duration,
    max: Duration,
    window: &LearnedWindow,
    elapsed: Duration,
    jitter: f64,
) -> Duration {
    let dense = dense.min(max);
    let planned = if elapsed < window.low {
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
