//! Adoption: taking over a distribution that exists in CloudFront but was not created by
//! this service, so that it becomes an ordinary row that can be read, updated and deleted.
//! Used by `POST /v1/distributions/adopt` and by `admin sweep`.

pub mod sweep;

use std::time::Duration;

use aws_sdk_cloudfront::types::{DistributionConfig, OriginProtocolPolicy};
use sqlx::PgPool;
use uuid::Uuid;

use crate::cloudfront::CloudFront;
use crate::lifecycle::{CallError, ErrorClass, Intent, Status};
use crate::spec::{DistributionSpec, OriginKind, OriginProtocol, OriginSpec, PriceClass};
use crate::store::adoption::{self, AdoptedRow};
use crate::store::rate_limit::{self, Bucket, RateLimitSettings};
use crate::store::{self, Distribution, StoreError};

/// History reason of an adoption requested through the API.
pub const ADOPTED_REASON: &str = "adopted";

/// A reason a distribution was not adopted.
#[derive(Debug, thiserror::Error)]
pub enum AdoptError {
    #[error("no CloudFront distribution has id {0}")]
    NotFound(String),
    #[error("CloudFront distribution {cloudfront_id} is already managed as distribution {row_id}")]
    AlreadyManaged { cloudfront_id: String, row_id: Uuid },
    #[error(
        "the CallerReference of CloudFront distribution {cloudfront_id} is already recorded by distribution {row_id} (status {status}); a CallerReference can belong to one row only"
    )]
    CallerReferenceTaken {
        cloudfront_id: String,
        row_id: Uuid,
        status: String,
    },
    #[error("CloudFront distribution {0} is enabled now; only a disabled one is adopted here")]
    Enabled(String),
    #[error("another adoption of CloudFront distribution {0} ended while this one ran; retry")]
    Concurrent(String),
    #[error("CloudFront call failed with {}: {}", .0.code, .0.message)]
    CloudFront(CallError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One adoption: the distribution, its new owner, and what follows the adoption.
#[derive(Clone, Debug)]
pub struct AdoptRequest<'a> {
    pub cloudfront_id: &'a str,
    pub owner: &'a str,
    /// Recorded in the history for the adoption, and for the deletion request if any.
    pub reason: &'a str,
    /// Request the deletion in the same transaction as the adoption.
    pub delete: bool,
    /// Adopt only if the distribution is disabled when it is read, so a sweep that listed
    /// it as disabled never takes over one that someone enabled since.
    pub require_disabled: bool,
}

/// Draws each CloudFront call from the account-wide token buckets that the worker uses, so
/// bulk operator work cannot starve the calls made for users.
#[derive(Clone, Copy, Debug)]
pub struct CallPacer<'a> {
    pub pool: &'a PgPool,
    pub settings: &'a RateLimitSettings,
}

impl CallPacer<'_> {
    /// Waits until a token of `bucket` is ready, queueing in the bucket for at most the
    /// configured maximum wait at a time.
    pub async fn take(&self, bucket: Bucket) -> Result<(), StoreError> {
        loop {
            let max_wait = self.settings.max_wait;
            match rate_limit::take(self.pool, bucket, self.settings, max_wait).await? {
                Some(wait) => {
                    if !wait.is_zero() {
                        tokio::time::sleep(wait).await;
                    }
                    return Ok(());
                }
                // The queue is longer than the maximum wait; let it drain a while.
                None => tokio::time::sleep(max_wait.max(Duration::from_millis(100)) / 2).await,
            }
        }
    }

    /// Cuts the shared rate of `bucket` when CloudFront throttled a call. A failure is
    /// logged and ignored, since the caller reports the throttled call anyway.
    pub async fn observe(&self, bucket: Bucket, error: &CallError) {
        if error.class != ErrorClass::Throttled {
            return;
        }
        if let Err(error) = rate_limit::decrease(self.pool, bucket, self.settings).await {
            tracing::warn!(bucket = bucket.as_str(), %error, "cutting the shared rate after Throttling failed");
        }
    }
}

/// Reads the distribution and records it as a managed row owned by `request.owner`, with
/// its live status, ETag and a spec derived from its config, then tags it with the row id.
///
/// The row is inserted and tagged in one transaction: if TagResource fails, no row is left.
/// The unique index on live CloudFront ids makes a concurrent adoption of the same
/// distribution wait for this one and then fail with [`AdoptError::AlreadyManaged`].
pub async fn adopt(
    pool: &PgPool,
    cloudfront: &CloudFront,
    pacer: Option<CallPacer<'_>>,
    request: &AdoptRequest<'_>,
) -> Result<Distribution, AdoptError> {
    let cloudfront_id = request.cloudfront_id;
    if let Some(row_id) = adoption::live_row_for(pool, cloudfront_id).await? {
        return Err(AdoptError::AlreadyManaged {
            cloudfront_id: cloudfront_id.to_owned(),
            row_id,
        });
    }

    if let Some(pacer) = pacer {
        pacer.take(Bucket::Read).await?;
    }
    let remote = match cloudfront.get(cloudfront_id).await {
        Ok(remote) => remote,
        Err(error) if error.class == ErrorClass::NotFound => {
            return Err(AdoptError::NotFound(cloudfront_id.to_owned()));
        }
        Err(error) => {
            if let Some(pacer) = pacer {
                pacer.observe(Bucket::Read, &error).await;
            }
            return Err(AdoptError::CloudFront(error));
        }
    };
    let enabled = remote.snapshot.enabled;
    if request.require_disabled && enabled {
        return Err(AdoptError::Enabled(cloudfront_id.to_owned()));
    }
    let config = remote
        .config
        .as_ref()
        .expect("a successful GetDistribution always carries the config");
    let caller_reference = config.caller_reference.as_str();
    if let Some(conflict) = caller_reference_conflict(pool, cloudfront_id, caller_reference).await?
    {
        return Err(conflict);
    }

    let spec = spec_from_config(config);
    let (status, intent) = match (enabled, remote.snapshot.deployed) {
        (true, true) => (Status::Deployed, Intent::Keep),
        (true, false) => (Status::Deploying, Intent::Keep),
        (false, true) => (Status::Disabled, Intent::Retain),
        (false, false) => (Status::Disabling, Intent::Retain),
    };
    let row_id = Uuid::new_v4();
    let adopted = AdoptedRow {
        id: row_id,
        owner: request.owner,
        spec: &spec,
        status,
        intent,
        caller_reference,
        cloudfront_id,
        arn: &remote.arn,
        domain_name: &remote.domain_name,
        etag: &remote.snapshot.etag,
        cloudfront_status: &remote.status,
        cloudfront_enabled: enabled,
        reason: request.reason,
    };

    let mut transaction = pool.begin().await.map_err(StoreError::from)?;
    let mut row = match adoption::insert(&mut *transaction, &adopted).await {
        Ok(row) => row,
        Err(StoreError::Database(error)) if is_unique_violation(&error) => {
            drop(transaction);
            return Err(conflict_after_race(pool, cloudfront_id, caller_reference).await?);
        }
        Err(error) => return Err(error.into()),
    };
    if request.delete {
        row = adoption::request_deletion(&mut transaction, row_id, request.reason).await?;
    }

    if let Some(pacer) = pacer {
        pacer.take(Bucket::Mutating).await?;
    }
    if let Err(error) = cloudfront.tag_row_id(&remote.arn, row_id).await {
        if let Some(pacer) = pacer {
            pacer.observe(Bucket::Mutating, &error).await;
        }
        return Err(AdoptError::CloudFront(error));
    }
    if row.next_check_at.is_some() {
        store::notify_work(&mut *transaction)
            .await
            .map_err(StoreError::from)?;
    }
    transaction.commit().await.map_err(StoreError::from)?;

    tracing::info!(
        distribution.id = %row_id,
        cloudfront.id = %cloudfront_id,
        owner = %request.owner,
        status = %row.status,
        intent = row.intent.as_str(),
        reason = request.reason,
        "distribution adopted"
    );
    Ok(row)
}

async fn caller_reference_conflict(
    pool: &PgPool,
    cloudfront_id: &str,
    caller_reference: &str,
) -> Result<Option<AdoptError>, StoreError> {
    let conflict = adoption::row_with_caller_reference(pool, caller_reference)
        .await?
        .map(|(row_id, status)| {
            // A live row without a CloudFront id yet is a create whose distribution this
            // is; the worker records the id itself once CloudFront names it.
            if status == Status::Deleted.as_str() {
                AdoptError::CallerReferenceTaken {
                    cloudfront_id: cloudfront_id.to_owned(),
                    row_id,
                    status,
                }
            } else {
                AdoptError::AlreadyManaged {
                    cloudfront_id: cloudfront_id.to_owned(),
                    row_id,
                }
            }
        });
    Ok(conflict)
}

/// Names the row that won a race to record the same distribution.
async fn conflict_after_race(
    pool: &PgPool,
    cloudfront_id: &str,
    caller_reference: &str,
) -> Result<AdoptError, StoreError> {
    if let Some(row_id) = adoption::live_row_for(pool, cloudfront_id).await? {
        return Ok(AdoptError::AlreadyManaged {
            cloudfront_id: cloudfront_id.to_owned(),
            row_id,
        });
    }
    // The winner may have rolled back since the violation, leaving no row to name.
    let conflict = caller_reference_conflict(pool, cloudfront_id, caller_reference).await?;
    Ok(conflict.unwrap_or_else(|| AdoptError::Concurrent(cloudfront_id.to_owned())))
}

fn is_unique_violation(error: &sqlx::Error) -> bool {
    error.as_database_error().is_some_and(|error| {
        matches!(
            error.constraint(),
            Some(adoption::LIVE_CLOUDFRONT_ID_INDEX | adoption::CALLER_REFERENCE_CONSTRAINT)
        )
    })
}

/// Derives the spec of an adopted distribution from its config, as far as the spec can
/// describe it: the origin the default cache behavior targets, aliases, certificate,
/// comment, price class, default root object and Enabled.
///
/// The result is stored as derived, without [`DistributionSpec::validate`]: it describes a
/// distribution CloudFront already accepted, and the service's own rules are stricter (for
/// example, it accepts only ACM certificates). A later PATCH validates the whole resulting
/// spec, so such a field must be fixed in the same request.
pub fn spec_from_config(config: &DistributionConfig) -> DistributionSpec {
    let target = config
        .default_cache_behavior
        .as_ref()
        .map(|behavior| behavior.target_origin_id.as_str());
    let origins = config
        .origins
        .as_ref()
        .map(|origins| origins.items.as_slice())
        .unwrap_or_default();
    let origin = origins
        .iter()
        .find(|origin| Some(origin.id.as_str()) == target)
        .or(origins.first());
    let origin = match origin {
        Some(origin) => OriginSpec {
            domain_name: origin.domain_name.clone(),
            kind: if origin.s3_origin_config.is_some() {
                OriginKind::S3
            } else {
                OriginKind::Custom
            },
            protocol: match origin
                .custom_origin_config
                .as_ref()
                .map(|custom| &custom.origin_protocol_policy)
            {
                Some(OriginProtocolPolicy::HttpOnly) => OriginProtocol::HttpOnly,
                Some(OriginProtocolPolicy::MatchViewer) => OriginProtocol::MatchViewer,
                _ => OriginProtocol::HttpsOnly,
            },
        },
        None => OriginSpec {
            domain_name: String::new(),
            kind: OriginKind::Custom,
            protocol: OriginProtocol::HttpsOnly,
        },
    };

    let price_class = match config.price_class.as_ref().map(|class| class.as_str()) {
        Some("PriceClass_100") => PriceClass::PriceClass100,
        Some("PriceClass_200") => PriceClass::PriceClass200,
        _ => PriceClass::PriceClassAll,
    };
    DistributionSpec {
        origin,
        aliases: config
            .aliases
            .as_ref()
            .and_then(|aliases| aliases.items.clone())
            .unwrap_or_default(),
        certificate_arn: config
            .viewer_certificate
            .as_ref()
            .and_then(|certificate| certificate.acm_certificate_arn.clone()),
        comment: config.comment.clone(),
        price_class,
        default_root_object: config
            .default_root_object
            .clone()
            .filter(|object| !object.is_empty()),
        enabled: config.enabled,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloudfront::config::distribution_config;

    #[test]
    fn spec_round_trips_through_config() {
        let spec = DistributionSpec {
            origin: OriginSpec {
                domain_name: "bucket.s3.us-east-1.amazonaws.com".to_owned(),
                kind: OriginKind::S3,
                protocol: OriginProtocol::HttpsOnly,
            },
            aliases: vec!["www.example.com".to_owned()],
            certificate_arn: Some("arn:aws:acm:us-east-1:123456789012:certificate/abc".to_owned()),
            comment: "kept".to_owned(),
            price_class: PriceClass::PriceClass100,
            default_root_object: Some("index.html".to_owned()),
            enabled: false,
        };
        let config = distribution_config("ref-1", &spec).unwrap();

        assert_eq!(spec_from_config(&config), spec);
    }

    #[test]
    fn custom_origin_keeps_protocol() {
        let spec = DistributionSpec {
            origin: OriginSpec {
                domain_name: "origin.example.com".to_owned(),
                kind: OriginKind::Custom,
                protocol: OriginProtocol::MatchViewer,
            },
            aliases: Vec::new(),
            certificate_arn: None,
            comment: String::new(),
            price_class: PriceClass::PriceClassAll,
            default_root_object: None,
            enabled: true,
        };
        let config = distribution_config("ref-2", &spec).unwrap();

        assert_eq!(spec_from_config(&config), spec);
    }
}
