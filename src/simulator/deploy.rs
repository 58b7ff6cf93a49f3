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
}

impl DeployTime {
    /// Checks that `min <= median <= max` and that the median is not zero.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            DeployTime::Fixed(_) => Ok(()),
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
            DeployTime::Random { seed, .. } => *seed,
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
