//! How long a change stays `InProgress` before CloudFront reports it `Deployed`.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// The deploy time of each change (create, update, out-of-band change).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeployTime {
    /// Every change takes exactly this long; zero makes changes deploy at once.
    Fixed(#[serde(with = "millis")] Duration),
    /// Log-normal around `median`, clamped to `[min, max]`, reproducible from `seed`.
    ///
    /// The spread is chosen so that `max` lies three standard deviations above the
    /// median on the log scale, so about one change in a thousand reaches `max`.
    Random {
        #[serde(with = "millis")]
        min: Duration,
        #[serde(with = "millis")]
        median: Duration,
        #[serde(with = "millis")]
        max: Duration,
        seed: u64,
    },
    /// A mix resembling CloudFront's own deploys, reproducible from `seed`. 92% of changes
    /// are log-normal around 3 min 20 s, about 95% of them between 1.9 and 6 minutes. The
    /// rest form a slow tail log-normal around 12 minutes, which reaches 38 minutes at two
    /// standard deviations and more beyond.
    ///
    /// NOTE: the shape is an estimate from CloudFront's documented "a few minutes" and
    /// reports of deploys taking up to an hour, not a measured distribution.
    Field { seed: u64 },
}

/// The share of [`DeployTime::Field`] changes drawn from the fast part of the mix.
const FIELD_FAST_SHARE: f64 = 0.92;
/// Median and log-scale standard deviation of the fast part, in seconds.
const FIELD_FAST: (f64, f64) = (200.0, 0.3);
/// Median and log-scale standard deviation of the slow tail, in seconds.
const FIELD_SLOW: (f64, f64) = (720.0, 0.6);

impl DeployTime {
    /// Checks that `min <= median <= max` and that the median is not zero.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            DeployTime::Fixed(_) | DeployTime::Field { .. } => Ok(()),
            DeployTime::Random {
                min, median, max, ..
            } => {
                if min > median || median > max {
                    Err(format!(
                        "invalid random deploy time: expected min <= median <= max, got \
                         min={min:?} median={median:?} max={max:?}"
                    ))
                } else if median.is_zero() {
                    Err("invalid random deploy time: median must be greater than zero".into())
                } else {
                    Ok(())
                }
            }
        }
    }
}

/// Draws deploy times from a [`DeployTime`], keeping the random state between draws.
#[derive(Debug)]
pub(crate) struct DeploySampler {
    spec: DeployTime,
    rng: StdRng,
}

impl DeploySampler {
    /// Creates a sampler.
    ///
    /// # Panics
    /// Panics when `spec` fails [`DeployTime::validate`], because a simulator with
    /// an impossible deploy time would silently test the wrong thing.
    pub fn new(spec: DeployTime) -> Self {
        if let Err(message) = spec.validate() {
            panic!("{message}");
        }
        let seed = match &spec {
            DeployTime::Fixed(_) => 0,
            DeployTime::Random { seed, .. } | DeployTime::Field { seed } => *seed,
        };
        Self {
            spec,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    pub fn sample(&mut self) -> Duration {
        match self.spec {
            DeployTime::Fixed(duration) => duration,
            DeployTime::Random {
                min, median, max, ..
            } => {
                let median_secs = median.as_secs_f64();
                let sigma = (max.as_secs_f64() / median_secs).ln() / 3.0;
                let drawn = median_secs * (sigma * self.standard_normal()).exp();
                let clamped = drawn.clamp(min.as_secs_f64(), max.as_secs_f64());
                Duration::from_secs_f64(clamped)
            }
            DeployTime::Field { .. } => {
                let (median, sigma) = if self.rng.random::<f64>() < FIELD_FAST_SHARE {
                    FIELD_FAST
                } else {
                    FIELD_SLOW
                };
                let drawn = median * (sigma * self.standard_normal()).exp();
                Duration::from_secs_f64(drawn)
            }
        }
    }

    /// Draws from N(0, 1) with the Box-Muller transform.
    fn standard_normal(&mut self) -> f64 {
        let u1: f64 = 1.0 - self.rng.random::<f64>();
        let u2: f64 = self.rng.random::<f64>();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// Serializes a `Duration` as whole milliseconds, the unit of the admin API.
pub(crate) mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(duration.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_deploy_time_stays_within_bounds() {
        let spec = DeployTime::Random {
            min: Duration::from_secs(60),
            median: Duration::from_secs(300),
            max: Duration::from_secs(2400),
            seed: 7,
        };
        let mut sampler = DeploySampler::new(spec);
        for _ in 0..1000 {
            let drawn = sampler.sample();
            assert!(drawn >= Duration::from_secs(60), "{drawn:?} below min");
            assert!(drawn <= Duration::from_secs(2400), "{drawn:?} above max");
        }
    }

    #[test]
    fn field_deploy_time_mostly_takes_minutes() {
        let mut sampler = DeploySampler::new(DeployTime::Field { seed: 3 });
        let mut draws: Vec<f64> = (0..10_000)
            .map(|_| sampler.sample().as_secs_f64())
            .collect();
        draws.sort_by(f64::total_cmp);
        let quantile = |q: f64| draws[(q * (draws.len() - 1) as f64) as usize];

        assert!(
            (150.0..260.0).contains(&quantile(0.5)),
            "median {}",
            quantile(0.5)
        );
        assert!(quantile(0.05) > 100.0, "5th percentile {}", quantile(0.05));
        assert!(quantile(0.85) < 360.0, "85th percentile {}", quantile(0.85));
        assert!(
            quantile(0.999) > 2400.0,
            "99.9th percentile {}",
            quantile(0.999)
        );
    }

    #[test]
    fn random_deploy_time_repeats_for_same_seed() {
        let spec = DeployTime::Random {
            min: Duration::ZERO,
            median: Duration::from_secs(10),
            max: Duration::from_secs(100),
            seed: 42,
        };
        let mut first = DeploySampler::new(spec.clone());
        let mut second = DeploySampler::new(spec);
        let first_draws: Vec<_> = (0..20).map(|_| first.sample()).collect();
        let second_draws: Vec<_> = (0..20).map(|_| second.sample()).collect();
        assert_eq!(first_draws, second_draws);
    }
}
