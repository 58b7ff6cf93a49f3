//! Distributions and the rules CloudFront enforces on them.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::deploy::{DeploySampler, DeployTime};
use super::documents::DistributionFacts;
use super::error::ApiError;
use super::tags::{Tag, check_tag_count};
use super::xml::ConfigXml;

const ACCOUNT_ID: &str = "123456789012";
const ID_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// `Status` of a distribution as CloudFront reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum DistributionStatus {
    InProgress,
    Deployed,
}

impl DistributionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DistributionStatus::InProgress => "InProgress",
            DistributionStatus::Deployed => "Deployed",
        }
    }
}

/// One state of a distribution's config, replaced as a whole by every change.
#[derive(Clone, Debug)]
pub struct Version {
    pub config: ConfigXml,
    pub etag: String,
    pub last_modified: DateTime<Utc>,
    pub deployed_at: DateTime<Utc>,
}

impl Version {
    pub fn status(&self, now: DateTime<Utc>) -> DistributionStatus {
        if now >= self.deployed_at {
            DistributionStatus::Deployed
        } else {
            DistributionStatus::InProgress
        }
    }

    pub fn enabled(&self) -> bool {
        self.config.enabled().unwrap_or(false)
    }
}

#[derive(Debug)]
pub struct Distribution {
    pub id: String,
    pub arn: String,
    pub domain_name: String,
    pub caller_reference: String,
    pub current: Version,
    /// The version before the last change, which stale reads return.
    pub previous: Option<Version>,
    pub tags: Vec<Tag>,
    /// Deploy time for this distribution's future changes, overriding the store's.
    pub deploy: Option<DeploySampler>,
}

impl Distribution {
    pub fn facts<'a>(&'a self, version: &'a Version, now: DateTime<Utc>) -> DistributionFacts<'a> {
        DistributionFacts {
            id: &self.id,
            arn: &self.arn,
            domain_name: &self.domain_name,
            status: version.status(now).as_str(),
            etag: &version.etag,
            last_modified: version.last_modified,
            config: &version.config,
        }
    }
}

/// All distributions of the simulated account, keyed by id so that list markers stay
/// valid when distributions are deleted between pages.
#[derive(Debug)]
pub struct Store {
    pub distributions: BTreeMap<String, Distribution>,
    pub deploy: DeploySampler,
    pub max_distributions: usize,
    /// Deploy times are drawn in CloudFront time and divided by this factor.
    pub time_scale: f64,
    rng: StdRng,
}

impl Store {
    pub fn new(deploy: DeployTime, seed: u64, max_distributions: usize, time_scale: f64) -> Self {
        Self {
            distributions: BTreeMap::new(),
            deploy: DeploySampler::new(deploy),
            max_distributions,
            time_scale,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// Returns `E` followed by 13 random uppercase letters and digits, the shape of
    /// CloudFront's distribution ids and ETags.
    fn random_token(&mut self) -> String {
        let mut token = String::from("E");
        for _ in 0..13 {
            let index = self.rng.random_range(0..ID_ALPHABET.len());
            token.push(ID_ALPHABET[index] as char);
        }
        token
    }

    fn new_etag(&mut self, old: Option<&str>) -> String {
        loop {
            let etag = self.random_token();
            if Some(etag.as_str()) != old {
                return etag;
            }
        }
    }

    /// Draws the deploy time of the next change to `id`, in real time.
    fn deploy_time_for(&mut self, id: &str) -> Duration {
        let drawn = match self
            .distributions
            .get_mut(id)
            .and_then(|d| d.deploy.as_mut())
        {
            Some(sampler) => sampler.sample(),
            None => self.deploy.sample(),
        };
        drawn.div_f64(self.time_scale)
    }

    pub fn get(&self, id: &str) -> Result<&Distribution, ApiError> {
        self.distributions
            .get(id)
            .ok_or_else(|| ApiError::no_such_distribution(id))
    }

    fn check_aliases(&self, config: &ConfigXml, own_id: Option<&str>) -> Result<(), ApiError> {
        for alias in config.aliases() {
            let holder = self.distributions.values().find(|distribution| {
                Some(distribution.id.as_str()) != own_id
                    && distribution.current.config.aliases().contains(&alias)
            });
            if holder.is_some() {
                return Err(ApiError::new(
                    409,
                    "CNAMEAlreadyExists",
                    format!(
                        "One or more of the CNAMEs you provided are already associated with a different resource: {alias}"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Creates a distribution, as CreateDistribution does; `age` backdates it for
    /// out-of-band creates that should look older.
    pub fn create(
        &mut self,
        config: ConfigXml,
        tags: Vec<Tag>,
        now: DateTime<Utc>,
        age: Duration,
    ) -> Result<&Distribution, ApiError> {
        config.validate()?;
        let caller_reference = config.caller_reference().unwrap_or_default();
        if let Some(existing) = self
            .distributions
            .values()
            .find(|distribution| distribution.caller_reference == caller_reference)
        {
            return Err(ApiError::new(
                409,
                "DistributionAlreadyExists",
                format!(
                    "The caller reference that you are using to create a distribution is associated with another distribution. Already exists: {}",
                    existing.id
                ),
            ));
        }
        self.check_aliases(&config, None)?;
        if self.distributions.len() >= self.max_distributions {
            return Err(ApiError::new(
                400,
                "TooManyDistributions",
                format!(
                    "Your request contains more distributions than are allowed per account ({}).",
                    self.max_distributions
                ),
            ));
        }
        check_tag_count(&tags)?;

        let mut id = self.random_token();
        while self.distributions.contains_key(&id) {
            id = self.random_token();
        }
        let last_modified = now - chrono::Duration::from_std(age).unwrap_or_default();
        let deploy_time = self.deploy.sample().div_f64(self.time_scale);
        let deployed_at = add_duration(last_modified, deploy_time);
        let current = Version {
            config,
            etag: self.new_etag(None),
            last_modified,
            deployed_at,
        };
        let distribution = Distribution {
            arn: format!("arn:aws:cloudfront::{ACCOUNT_ID}:distribution/{id}"),
            domain_name: format!("d{}.cloudfront.net", id[1..].to_lowercase()),
            id: id.clone(),
            caller_reference,
            current,
            previous: None,
            tags,
            deploy: None,
        };
        Ok(self.distributions.entry(id).or_insert(distribution))
    }

    /// Checks an `If-Match` header against the current ETag of `id`.
    pub fn check_if_match(&self, id: &str, if_match: Option<&str>) -> Result<(), ApiError> {
        let if_match = if_match.filter(|value| !value.trim().is_empty());
        let Some(if_match) = if_match else {
            return Err(ApiError::missing_if_match());
        };
        if self.get(id)?.current.etag != if_match {
            return Err(ApiError::precondition_failed(if_match));
        }
        Ok(())
    }

    /// Replaces the config of `id`, as UpdateDistribution does.
    pub fn update(
        &mut self,
        id: &str,
        if_match: Option<&str>,
        config: ConfigXml,
        now: DateTime<Utc>,
    ) -> Result<&Distribution, ApiError> {
        self.get(id)?;
        self.check_if_match(id, if_match)?;
        config.validate()?;
        let existing = self.get(id)?;
        if config.caller_reference().as_deref() != Some(existing.caller_reference.as_str()) {
            return Err(ApiError::new(
                400,
                "IllegalUpdate",
                "Origin and CallerReference cannot be updated.",
            ));
        }
        self.check_aliases(&config, Some(id))?;
        self.replace_config(id, config, now)
    }

    /// Applies a new config with a new ETag and a fresh deploy, keeping the old
    /// version for stale reads. Callers check the id exists.
    pub fn replace_config(
        &mut self,
        id: &str,
        config: ConfigXml,
        now: DateTime<Utc>,
    ) -> Result<&Distribution, ApiError> {
        let deploy_time = self.deploy_time_for(id);
        let old_etag = self.get(id)?.current.etag.clone();
        let etag = self.new_etag(Some(&old_etag));
        let distribution = self
            .distributions
            .get_mut(id)
            .ok_or_else(|| ApiError::no_such_distribution(id))?;
        let next = Version {
            config,
            etag,
            last_modified: now,
            deployed_at: add_duration(now, deploy_time),
        };
        distribution.previous = Some(std::mem::replace(&mut distribution.current, next));
        Ok(distribution)
    }

    /// Deletes `id`, as DeleteDistribution does: only when disabled and deployed.
    pub fn delete(
        &mut self,
        id: &str,
        if_match: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), ApiError> {
        self.get(id)?;
        self.check_if_match(id, if_match)?;
        let current = &self.get(id)?.current;
        if current.enabled() || current.status(now) != DistributionStatus::Deployed {
            return Err(ApiError::new(
                409,
                "DistributionNotDisabled",
                "The distribution you are trying to delete has not been disabled.",
            ));
        }
        self.distributions.remove(id);
        Ok(())
    }
}

/// Adds `duration` to `time`, saturating at the latest representable time.
fn add_duration(time: DateTime<Utc>, duration: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(duration)
        .ok()
        .and_then(|delta| time.checked_add_signed(delta))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}
