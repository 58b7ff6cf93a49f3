//! When a waiting row is looked at again.
//!
//! A deploy or disable usually finishes in a few minutes and occasionally takes 40 or more, so
//! rechecks start soon after a change and then space out geometrically up to a ceiling: a
//! short change is seen within seconds, a long one costs one read per ceiling interval.
//! Failed calls back off exponentially; throttled calls wait a fixed, jittered while.

use std::time::Duration;

use super::Wait;

/// The shortest recheck delay a schedule may name: a millisecond, so a typo cannot turn the
/// worker into a busy loop against CloudFront.
const MIN_DELAY_SECONDS: f64 = 0.001;

/// The longest recheck delay a schedule may name: a day.
const MAX_DELAY_SECONDS: f64 = 86_400.0;

/// How rechecks during a wait for Deployed are spaced.
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
}

impl Default for RecheckSchedule {
    fn default() -> Self {
        RecheckSchedule::Backoff {
            first: Duration::from_secs(1),
            factor: 1.5,
            max: Duration::from_secs(20),
        }
    }
}

impl std::str::FromStr for RecheckSchedule {
    type Err = String;

    /// Parses `fixed:SECONDS` or `backoff:FIRST,FACTOR,MAX` (seconds, factor, seconds).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || {
            format!(
                "invalid recheck schedule {text:?}: expected fixed:SECONDS or backoff:FIRST,FACTOR,MAX with delays from 0.001 to 86400 seconds and a factor from 1 to 10, for example backoff:1,1.5,20"
            )
        };
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
        }
    }
}

/// Delays that do not depend on the recheck schedule.
#[derive(Clone, Debug, PartialEq)]
pub struct Delays {
    /// Before re-reading to confirm a surprising read.
    pub confirm: Duration,
    /// The first retry after a failed call; doubles with each further failure.
    pub backoff_first: Duration,
    /// The longest retry delay after failed calls.
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

/// Computes the delay before the next look at a row.
///
/// `checks` counts the rechecks already made during the current wait, `failures` the
/// consecutive failed attempts. `jitter` is a number in [0, 1) drawn by the caller; it
/// spreads retries so that rows failing together do not retry together.
pub fn delay(
    wait: Wait,
    schedule: &RecheckSchedule,
    delays: &Delays,
    checks: u32,
    failures: u32,
    jitter: f64,
) -> Duration {
    let jitter = jitter.clamp(0.0, 1.0);
    match wait {
        Wait::Deploy => match schedule {
            RecheckSchedule::Fixed { interval } => *interval,
            RecheckSchedule::Backoff { first, factor, max } => {
                let grown = first.as_secs_f64() * factor.powi(checks.min(64) as i32);
                Duration::from_secs_f64(grown.min(max.as_secs_f64()))
            }
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
