//! Building a complete CloudFront DistributionConfig from what the user asked for.

use aws_sdk_cloudfront::types::{
    Aliases, AllowedMethods, CachedMethods, CustomOriginConfig, DefaultCacheBehavior,
    DistributionConfig, HttpVersion, Method, MinimumProtocolVersion, Origin, OriginProtocolPolicy,
    OriginSslProtocols, Origins, PriceClass, S3OriginConfig, SslProtocol, SslSupportMethod,
    ViewerCertificate, ViewerProtocolPolicy,
};
use aws_smithy_types::error::operation::BuildError;

use crate::spec::{DistributionSpec, OriginKind, OriginProtocol};

/// The id of the single origin every distribution of this service has.
const ORIGIN_ID: &str = "primary";

/// AWS's managed CachingOptimized cache policy, the same id in every account.
pub const CACHING_OPTIMIZED_POLICY_ID: &str = "658327ea-f89d-4fab-a63d-7e88639e58f6";

/// Builds the config sent with CreateDistribution. Every required part is filled in here:
/// the SDK's builder accepts a config without origins, which CloudFront then rejects.
pub fn distribution_config(
    caller_reference: &str,
    spec: &DistributionSpec,
) -> Result<DistributionConfig, BuildError> {
    let origin = origin(spec)?;

    let get_head = || vec![Method::Get, Method::Head];
    let cache_behavior = DefaultCacheBehavior::builder()
        .target_origin_id(ORIGIN_ID)
        .viewer_protocol_policy(ViewerProtocolPolicy::RedirectToHttps)
        .cache_policy_id(CACHING_OPTIMIZED_POLICY_ID)
        .compress(true)
        .allowed_methods(
            AllowedMethods::builder()
                .quantity(2)
                .set_items(Some(get_head()))
                .cached_methods(
                    CachedMethods::builder()
                        .quantity(2)
                        .set_items(Some(get_head()))
                        .build()?,
                )
                .build()?,
        )
        .build()?;

    DistributionConfig::builder()
        .caller_reference(caller_reference)
        .comment(&spec.comment)
        .enabled(spec.enabled)
        .origins(Origins::builder().quantity(1).items(origin).build()?)
        .default_cache_behavior(cache_behavior)
        .aliases(aliases(spec)?)
        .viewer_certificate(certificate(spec))
        .price_class(PriceClass::from(spec.price_class.as_str()))
        .default_root_object(spec.default_root_object.clone().unwrap_or_default())
        .http_version(HttpVersion::Http2and3)
        .is_ipv6_enabled(true)
        .build()
}

/// Applies the user's requested configuration to the config CloudFront returned, for
/// UpdateDistribution. Only the fields the API manages change: everything else (cache
/// behaviors, logging, restrictions, policies an operator added) goes back as it came,
/// because CloudFront's update replaces the whole config.
pub fn apply_spec(
    mut config: DistributionConfig,
    spec: &DistributionSpec,
) -> Result<DistributionConfig, BuildError> {
    config.comment = spec.comment.clone();
    config.enabled = spec.enabled;
    config.price_class = Some(PriceClass::from(spec.price_class.as_str()));
    config.default_root_object = Some(spec.default_root_object.clone().unwrap_or_default());
    config.aliases = Some(aliases(spec)?);
    config.viewer_certificate = Some(certificate(spec));

    // The user's origin is the one the default cache behavior targets. Its id stays, so
    // other cache behaviors that point at it keep working.
    let target = config
        .default_cache_behavior
        .as_ref()
        .map(|behavior| behavior.target_origin_id.clone())
        .unwrap_or_else(|| ORIGIN_ID.to_owned());
    let replacement = origin(spec)?;
    if config.origins.is_none() {
        config.origins = Some(
            Origins::builder()
                .quantity(0)
                .set_items(Some(Vec::new()))
                .build()?,
        );
    }
    let origins = config.origins.as_mut().expect("set just above");
    match origins
        .items
        .iter_mut()
        .find(|existing| existing.id == target)
    {
        Some(existing) => {
            existing.domain_name = replacement.domain_name;
            existing.custom_origin_config = replacement.custom_origin_config;
            existing.s3_origin_config = replacement.s3_origin_config;
        }
        None => {
            let mut added = replacement;
            added.id = target;
            origins.items.push(added);
        }
    }
    origins.quantity = origins.items.len() as i32;

    Ok(config)
}

fn aliases(spec: &DistributionSpec) -> Result<Aliases, BuildError> {
    Aliases::builder()
        .quantity(spec.aliases.len() as i32)
        .set_items((!spec.aliases.is_empty()).then(|| spec.aliases.clone()))
        .build()
}

fn certificate(spec: &DistributionSpec) -> ViewerCertificate {
    match &spec.certificate_arn {
        Some(arn) => ViewerCertificate::builder()
            .acm_certificate_arn(arn)
            .ssl_support_method(SslSupportMethod::SniOnly)
            .minimum_protocol_version(MinimumProtocolVersion::TlSv122021)
            .build(),
        None => ViewerCertificate::builder()
            .cloud_front_default_certificate(true)
            .build(),
    }
}

fn origin(spec: &DistributionSpec) -> Result<Origin, BuildError> {
    let builder = Origin::builder()
        .id(ORIGIN_ID)
        .domain_name(&spec.origin.domain_name);

    match spec.origin.kind {
        // An empty origin access identity: the bucket is read as a public S3 origin unless an
        // operator adds origin access control afterwards.
        OriginKind::S3 => builder
            .s3_origin_config(S3OriginConfig::builder().origin_access_identity("").build())
            .build(),
        OriginKind::Custom => {
            let policy = match spec.origin.protocol {
                OriginProtocol::HttpsOnly => OriginProtocolPolicy::HttpsOnly,
                OriginProtocol::HttpOnly => OriginProtocolPolicy::HttpOnly,
                OriginProtocol::MatchViewer => OriginProtocolPolicy::MatchViewer,
            };
            let custom = CustomOriginConfig::builder()
                .http_port(80)
                .https_port(443)
                .origin_protocol_policy(policy)
                .origin_ssl_protocols(
                    OriginSslProtocols::builder()
                        .quantity(1)
                        .items(SslProtocol::TlSv12)
                        .build()?,
                )
                .origin_read_timeout(30)
                .origin_keepalive_timeout(5)
                .build()?;
            builder.custom_origin_config(custom).build()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{OriginKind, OriginProtocol, OriginSpec, PriceClass as SpecPriceClass};

    fn spec(domain: &str) -> DistributionSpec {
        DistributionSpec {
            origin: OriginSpec {
                domain_name: domain.to_owned(),
                kind: OriginKind::Custom,
                protocol: OriginProtocol::HttpsOnly,
            },
            aliases: Vec::new(),
            certificate_arn: None,
            comment: "first".to_owned(),
            price_class: SpecPriceClass::PriceClassAll,
            default_root_object: None,
            enabled: true,
        }
    }

    #[test]
    fn apply_spec_keeps_unmanaged_fields() {
        let mut original = distribution_config("ref-1", &spec("a.example.com")).unwrap();
        original.web_acl_id = Some("acl-kept".to_owned());

        let mut changed = spec("b.example.com");
        changed.comment = "second".to_owned();
        changed.enabled = false;
        let updated = apply_spec(original, &changed).unwrap();

        assert_eq!(updated.caller_reference, "ref-1");
        assert_eq!(updated.web_acl_id.as_deref(), Some("acl-kept"));
        assert_eq!(updated.comment, "second");
        assert!(!updated.enabled);
        let origins = updated.origins.unwrap();
        assert_eq!(origins.quantity, 1);
        assert_eq!(origins.items[0].id, ORIGIN_ID);
        assert_eq!(origins.items[0].domain_name, "b.example.com");
    }
}
