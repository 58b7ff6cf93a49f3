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

    let aliases = Aliases::builder()
        .quantity(spec.aliases.len() as i32)
        .set_items((!spec.aliases.is_empty()).then(|| spec.aliases.clone()))
        .build()?;

    let certificate = match &spec.certificate_arn {
        Some(arn) => ViewerCertificate::builder()
            .acm_certificate_arn(arn)
            .ssl_support_method(SslSupportMethod::SniOnly)
            .minimum_protocol_version(MinimumProtocolVersion::TlSv122021)
            .build(),
        None => ViewerCertificate::builder()
            .cloud_front_default_certificate(true)
            .build(),
    };

    DistributionConfig::builder()
        .caller_reference(caller_reference)
        .comment(&spec.comment)
        .enabled(spec.enabled)
        .origins(Origins::builder().quantity(1).items(origin).build()?)
        .default_cache_behavior(cache_behavior)
        .aliases(aliases)
        .viewer_certificate(certificate)
        .price_class(PriceClass::from(spec.price_class.as_str()))
        .default_root_object(spec.default_root_object.clone().unwrap_or_default())
        .http_version(HttpVersion::Http2and3)
        .is_ipv6_enabled(true)
        .build()
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
