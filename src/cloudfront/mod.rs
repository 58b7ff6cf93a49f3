//! The one path to CloudFront: aws-sdk-cloudfront, whether its peer is AWS, moto or the
//! simulator. Each call returns what the lifecycle needs, with failures classified.

pub mod config;
pub mod errors;

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_cloudfront::Client;
use aws_sdk_cloudfront::config::{Credentials, Region};
use aws_sdk_cloudfront::types::{DistributionConfig, DistributionConfigWithTags, Tag, Tags};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::lifecycle::{CallError, ErrorClass, Snapshot};
use crate::spec::DistributionSpec;

/// CloudFront's API is global and is signed for us-east-1.
pub const SIGNING_REGION: &str = "us-east-1";

/// The tag that names the row a distribution belongs to, so an operator (or a sweep) can
/// tell which distributions this service created.
pub const ROW_ID_TAG: &str = "cloudfront-lifecycle:row-id";

/// Timeouts and retries for every CloudFront call.
#[derive(Clone, Debug)]
pub struct CallSettings {
    /// Attempts per call, including the first, made by the SDK's standard retry policy.
    pub max_attempts: u32,
    /// Maximum time one attempt may take.
    pub attempt_timeout: Duration,
    /// Maximum time a call may take across all its attempts.
    pub call_timeout: Duration,
}

impl Default for CallSettings {
    fn default() -> Self {
        CallSettings {
            max_attempts: 3,
            attempt_timeout: Duration::from_secs(10),
            call_timeout: Duration::from_secs(25),
        }
    }
}

impl CallSettings {
    fn retry(&self) -> RetryConfig {
        RetryConfig::standard().with_max_attempts(self.max_attempts.max(1))
    }

    fn timeouts(&self) -> TimeoutConfig {
        TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(3))
            .operation_attempt_timeout(self.attempt_timeout)
            .operation_timeout(self.call_timeout)
            .build()
    }
}

/// One distribution as a call observed it.
#[derive(Clone, Debug)]
pub struct Remote {
    pub id: String,
    pub arn: String,
    pub domain_name: String,
    /// `InProgress` or `Deployed`.
    pub status: String,
    pub snapshot: Snapshot,
    /// The full config, kept so an update can send it back whole: CloudFront's update
    /// replaces the config rather than merging it.
    pub config: Option<DistributionConfig>,
}

/// A CloudFront client with the calls the lifecycle makes.
#[derive(Clone, Debug)]
pub struct CloudFront {
    client: Client,
}

impl CloudFront {
    pub fn from_client(client: Client) -> Self {
        CloudFront { client }
    }

    /// Builds a client for a CloudFront-compatible server at `endpoint` (the simulator, or moto)
    /// with placeholder credentials: such servers accept any signature.
    pub fn for_endpoint(endpoint: &str, settings: &CallSettings) -> Self {
        let config = aws_sdk_cloudfront::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(SIGNING_REGION))
            .endpoint_url(endpoint)
            .credentials_provider(Credentials::new(
                "simulated",
                "simulated",
                None,
                None,
                "cloudfront-lifecycle-simulator",
            ))
            .retry_config(settings.retry())
            .timeout_config(settings.timeouts())
            .build();
        CloudFront::from_client(Client::from_conf(config))
    }

    /// Builds a client configured by aws-config's standard chain (environment, profile, web identity,
    /// ECS and EC2 instance roles), honouring `AWS_ENDPOINT_URL`.
    pub async fn from_environment(settings: &CallSettings) -> Self {
        let shared = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(SIGNING_REGION))
            .retry_config(settings.retry())
            .timeout_config(settings.timeouts())
            .load()
            .await;
        CloudFront::from_client(Client::new(&shared))
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The maximum time one call may take across all its attempts; the default when none is set.
    pub fn call_timeout(&self) -> Duration {
        self.client
            .config()
            .timeout_config()
            .and_then(|timeouts| timeouts.operation_timeout())
            .unwrap_or(CallSettings::default().call_timeout)
    }

    /// CreateDistributionWithTags with the row's CallerReference, tagged with the row id.
    pub async fn create(
        &self,
        row_id: Uuid,
        caller_reference: &str,
        spec: &DistributionSpec,
    ) -> Result<Remote, CallError> {
        let config =
            config::distribution_config(caller_reference, spec).map_err(|error| CallError {
                class: ErrorClass::Permanent,
                code: "InvalidConfig".to_owned(),
                message: format!("the distribution config could not be built: {error}"),
            })?;
        let tag = Tag::builder()
            .key(ROW_ID_TAG)
            .value(row_id.to_string())
            .build()
            .expect("a tag with a key always builds");
        let with_tags = DistributionConfigWithTags::builder()
            .distribution_config(config)
            .tags(Tags::builder().items(tag).build())
            .build();

        let output = self
            .client
            .create_distribution_with_tags()
            .distribution_config_with_tags(with_tags)
            .send()
            .await
            .map_err(|error| errors::classify(&error))?;
        remote(output.distribution(), output.e_tag())
    }

    /// GetDistribution: Status, Enabled, the full config and the current ETag.
    pub async fn get(&self, cloudfront_id: &str) -> Result<Remote, CallError> {
        let output = self
            .client
            .get_distribution()
            .id(cloudfront_id)
            .send()
            .await
            .map_err(|error| errors::classify(&error))?;
        remote(output.distribution(), output.e_tag())
    }

    /// UpdateDistribution with Enabled=false, sending back the whole config read with `etag`.
    pub async fn disable(
        &self,
        cloudfront_id: &str,
        etag: &str,
        mut config: DistributionConfig,
    ) -> Result<Remote, CallError> {
        config.enabled = false;
        let output = self
            .client
            .update_distribution()
            .id(cloudfront_id)
            .if_match(etag)
            .distribution_config(config)
            .send()
            .await
            .map_err(|error| errors::classify(&error))?;
        remote(output.distribution(), output.e_tag())
    }

    /// UpdateDistribution with the user's requested configuration applied to the whole
    /// config read with `etag`.
    pub async fn update(
        &self,
        cloudfront_id: &str,
        etag: &str,
        config: DistributionConfig,
        spec: &DistributionSpec,
    ) -> Result<Remote, CallError> {
        let config = config::apply_spec(config, spec).map_err(|error| CallError {
            class: ErrorClass::Permanent,
            code: "InvalidConfig".to_owned(),
            message: format!("the distribution config could not be built: {error}"),
        })?;
        let output = self
            .client
            .update_distribution()
            .id(cloudfront_id)
            .if_match(etag)
            .distribution_config(config)
            .send()
            .await
            .map_err(|error| errors::classify(&error))?;
        remote(output.distribution(), output.e_tag())
    }

    /// Lists every distribution in the account, following `NextMarker` page by page until
    /// CloudFront reports `IsTruncated=false`.
    pub async fn list_all(&self) -> Result<Vec<Summary>, CallError> {
        self.list_all_paced(async || Ok::<(), CallError>(())).await
    }

    /// Like [`CloudFront::list_all`], but awaits `before_page` before each ListDistributions
    /// call, so a caller can draw each page from a rate limit. An error from `before_page`
    /// ends the listing with that error.
    pub async fn list_all_paced<E: From<CallError>>(
        &self,
        mut before_page: impl AsyncFnMut() -> Result<(), E>,
    ) -> Result<Vec<Summary>, E> {
        let mut summaries = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            before_page().await?;
            let output = self
                .client
                .list_distributions()
                .set_marker(marker.take())
                .send()
                .await
                .map_err(|error| errors::classify(&error))?;
            let Some(list) = output.distribution_list() else {
                return Err(CallError {
                    class: ErrorClass::Transient,
                    code: "MalformedResponse".to_owned(),
                    message: "CloudFront's response has no DistributionList".to_owned(),
                }
                .into());
            };
            summaries.extend(list.items().iter().map(summary));
            if !list.is_truncated() {
                return Ok(summaries);
            }
            match list.next_marker() {
                Some(next) if !next.is_empty() => marker = Some(next.to_owned()),
                _ => {
                    return Err(CallError {
                        class: ErrorClass::Transient,
                        code: "MalformedResponse".to_owned(),
                        message: "CloudFront's list page is truncated but has no NextMarker"
                            .to_owned(),
                    }
                    .into());
                }
            }
        }
    }

    /// ListTagsForResource: the tags of the distribution with this ARN, as key and value.
    pub async fn list_tags(&self, arn: &str) -> Result<Vec<(String, String)>, CallError> {
        let output = self
            .client
            .list_tags_for_resource()
            .resource(arn)
            .send()
            .await
            .map_err(|error| errors::classify(&error))?;
        let tags = output
            .tags()
            .map(|tags| tags.items())
            .unwrap_or_default()
            .iter()
            .map(|tag| (tag.key().to_owned(), tag.value().unwrap_or("").to_owned()))
            .collect();
        Ok(tags)
    }

    /// TagResource with [`ROW_ID_TAG`] naming `row_id`, as `create` tags what it creates.
    pub async fn tag_row_id(&self, arn: &str, row_id: Uuid) -> Result<(), CallError> {
        let tag = Tag::builder()
            .key(ROW_ID_TAG)
            .value(row_id.to_string())
            .build()
            .expect("a tag with a key always builds");
        self.client
            .tag_resource()
            .resource(arn)
            .tags(Tags::builder().items(tag).build())
            .send()
            .await
            .map_err(|error| errors::classify(&error))?;
        Ok(())
    }

    /// DeleteDistribution with If-Match.
    pub async fn delete(&self, cloudfront_id: &str, etag: &str) -> Result<(), CallError> {
        self.client
            .delete_distribution()
            .id(cloudfront_id)
            .if_match(etag)
            .send()
            .await
            .map_err(|error| errors::classify(&error))?;
        Ok(())
    }
}

/// One distribution as ListDistributions describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    pub id: String,
    pub arn: String,
    pub domain_name: String,
    /// `InProgress` or `Deployed`.
    pub status: String,
    pub enabled: bool,
    pub comment: String,
    pub aliases: Vec<String>,
    /// Present in the API since ETags were added to summaries; older peers leave it out.
    pub etag: Option<String>,
    /// When the distribution's config last changed; `None` if the response left it out.
    pub last_modified: Option<DateTime<Utc>>,
}

fn summary(item: &aws_sdk_cloudfront::types::DistributionSummary) -> Summary {
    Summary {
        id: item.id().to_owned(),
        arn: item.arn().to_owned(),
        domain_name: item.domain_name().to_owned(),
        status: item.status().to_owned(),
        enabled: item.enabled(),
        comment: item.comment().to_owned(),
        aliases: item
            .aliases()
            .map(|aliases| aliases.items().to_vec())
            .unwrap_or_default(),
        etag: item.e_tag().map(str::to_owned),
        last_modified: DateTime::from_timestamp(
            item.last_modified_time().secs(),
            item.last_modified_time().subsec_nanos(),
        ),
    }
}

fn remote(
    distribution: Option<&aws_sdk_cloudfront::types::Distribution>,
    etag: Option<&str>,
) -> Result<Remote, CallError> {
    let malformed = |what: &str| CallError {
        class: ErrorClass::Transient,
        code: "MalformedResponse".to_owned(),
        message: format!("CloudFront's response has no {what}"),
    };
    let distribution = distribution.ok_or_else(|| malformed("Distribution"))?;
    let etag = etag.ok_or_else(|| malformed("ETag header"))?;
    let config = distribution.distribution_config().cloned();
    let enabled = config
        .as_ref()
        .map(|config| config.enabled)
        .ok_or_else(|| malformed("DistributionConfig"))?;

    Ok(Remote {
        id: distribution.id().to_owned(),
        arn: distribution.arn().to_owned(),
        domain_name: distribution.domain_name().to_owned(),
        status: distribution.status().to_owned(),
        snapshot: Snapshot {
            deployed: distribution.status() == "Deployed",
            enabled,
            etag: etag.to_owned(),
        },
        config,
    })
}

/// The kind of CloudFront peer this process talks to, as reported in logs, `/readyz` and
/// metrics, so a service on the simulator never passes for one managing real distributions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The embedded simulator.
    Simulator,
    /// AWS, or the CloudFront-compatible server at `endpoint`.
    Aws { endpoint: Option<String> },
}

impl Backend {
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Simulator => "simulator",
            Backend::Aws { .. } => "aws",
        }
    }

    pub fn is_simulated(&self) -> bool {
        matches!(self, Backend::Simulator)
    }
}
