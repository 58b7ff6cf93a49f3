//! The configuration a user asks for, and its validation. The service turns it into a
//! complete CloudFront DistributionConfig in `cloudfront::config`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// CloudFront's limit on the length of a distribution's comment.
pub const MAX_COMMENT_CHARS: usize = 128;

/// CloudFront's default quota of alternate domain names per distribution.
pub const MAX_ALIASES: usize = 100;

/// The distribution a user asks for. The service fills in everything else with safe
/// defaults: the managed CachingOptimized cache policy, HTTPS redirect, HTTP/2 and HTTP/3,
/// and IPv6.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DistributionSpec {
    pub origin: OriginSpec,
    /// Alternate domain names (CNAMEs). Each is a hostname, optionally with one leading
    /// wildcard label. When present, `certificate_arn` is required.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// An ACM certificate in us-east-1 covering the aliases.
    #[serde(default)]
    #[schema(
        example = "arn:aws:acm:us-east-1:123456789012:certificate/0b1c2d3e-aaaa-bbbb-cccc-0123456789ab"
    )]
    pub certificate_arn: Option<String>,
    /// Free text shown in the CloudFront console; at most 128 characters.
    #[serde(default)]
    pub comment: String,
    #[serde(default)]
    pub price_class: PriceClass,
    /// The object returned for a request to the root URL, such as `index.html`.
    #[serde(default)]
    pub default_root_object: Option<String>,
    /// Whether the distribution serves traffic once deployed.
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
}

fn enabled_by_default() -> bool {
    true
}

/// Where CloudFront fetches content from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OriginSpec {
    /// The origin's hostname: a web server, or an S3 bucket endpoint such as
    /// `my-bucket.s3.us-east-1.amazonaws.com` when `kind` is `s3`.
    #[schema(example = "origin.example.com")]
    pub domain_name: String,
    #[serde(default)]
    pub kind: OriginKind,
    /// How CloudFront connects to a custom origin; ignored for S3 origins.
    #[serde(default)]
    pub protocol: OriginProtocol,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OriginKind {
    /// An HTTP(S) server.
    #[default]
    Custom,
    /// An S3 bucket, addressed by its bucket endpoint.
    S3,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OriginProtocol {
    #[default]
    HttpsOnly,
    HttpOnly,
    MatchViewer,
}

/// CloudFront's price classes, by their API names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum PriceClass {
    #[serde(rename = "PriceClass_100")]
    PriceClass100,
    #[serde(rename = "PriceClass_200")]
    PriceClass200,
    #[default]
    #[serde(rename = "PriceClass_All")]
    PriceClassAll,
}

impl PriceClass {
    pub fn as_str(self) -> &'static str {
        match self {
            PriceClass::PriceClass100 => "PriceClass_100",
            PriceClass::PriceClass200 => "PriceClass_200",
            PriceClass::PriceClassAll => "PriceClass_All",
        }
    }
}

/// A change to a distribution's configuration: every field is optional, and only the
/// fields present change. `null` clears `certificate_arn` and `default_root_object`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DistributionPatch {
    #[serde(default)]
    pub origin: Option<OriginSpec>,
    #[serde(default)]
    pub aliases: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, nullable)]
    pub certificate_arn: Option<Option<String>>,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub price_class: Option<PriceClass>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, nullable)]
    pub default_root_object: Option<Option<String>>,
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// Tells a field that is present with `null` (`Some(None)`) from one that is absent (`None`,
/// through `#[serde(default)]`).
fn present<'de, T, D>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

impl DistributionSpec {
    /// Returns this spec with the patch's fields applied.
    pub fn patched(&self, patch: &DistributionPatch) -> DistributionSpec {
        let mut spec = self.clone();
        if let Some(origin) = &patch.origin {
            spec.origin = origin.clone();
        }
        if let Some(aliases) = &patch.aliases {
            spec.aliases = aliases.clone();
        }
        if let Some(certificate_arn) = &patch.certificate_arn {
            spec.certificate_arn = certificate_arn.clone();
        }
        if let Some(comment) = &patch.comment {
            spec.comment = comment.clone();
        }
        if let Some(price_class) = patch.price_class {
            spec.price_class = price_class;
        }
        if let Some(default_root_object) = &patch.default_root_object {
            spec.default_root_object = default_root_object.clone();
        }
        if let Some(enabled) = patch.enabled {
            spec.enabled = enabled;
        }
        spec
    }
}

/// One invalid field: a JSON pointer into the request body and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FieldError {
    #[schema(example = "/origin/domain_name")]
    pub pointer: String,
    #[schema(example = "must be a hostname such as origin.example.com")]
    pub detail: String,
}

impl FieldError {
    fn new(pointer: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError {
            pointer: pointer.into(),
            detail: detail.into(),
        }
    }
}

impl DistributionSpec {
    /// Checks every field and returns each problem found; empty when the spec is valid.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();

        match self.origin.kind {
            OriginKind::Custom => {
                if !is_hostname(&self.origin.domain_name, false) {
                    errors.push(FieldError::new(
                        "/origin/domain_name",
                        "must be a hostname such as origin.example.com (letters, digits and hyphens in dot-separated labels)",
                    ));
                }
            }
            OriginKind::S3 => {
                if !is_s3_bucket_endpoint(&self.origin.domain_name) {
                    errors.push(FieldError::new(
                        "/origin/domain_name",
                        "must be an S3 bucket endpoint such as my-bucket.s3.us-east-1.amazonaws.com",
                    ));
                }
            }
        }

        if self.aliases.len() > MAX_ALIASES {
            errors.push(FieldError::new(
                "/aliases",
                format!(
                    "at most {MAX_ALIASES} aliases are allowed, got {}",
                    self.aliases.len()
                ),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for (index, alias) in self.aliases.iter().enumerate() {
            let pointer = format!("/aliases/{index}");
            if !is_hostname(alias, true) {
                errors.push(FieldError::new(
                    pointer,
                    "must be a hostname, optionally starting with one wildcard label such as *.example.com",
                ));
            } else if !seen.insert(alias.to_ascii_lowercase()) {
                errors.push(FieldError::new(
                    pointer,
                    format!("duplicates alias {alias}"),
                ));
            }
        }

        match &self.certificate_arn {
            Some(arn) if !is_us_east_1_acm_arn(arn) => errors.push(FieldError::new(
                "/certificate_arn",
                "must be an ACM certificate ARN in us-east-1, such as arn:aws:acm:us-east-1:123456789012:certificate/ID",
            )),
            None if !self.aliases.is_empty() => errors.push(FieldError::new(
                "/certificate_arn",
                "is required when aliases are given: CloudFront serves aliases only with a certificate that covers them",
            )),
            _ => {}
        }

        let comment_chars = self.comment.chars().count();
        if comment_chars > MAX_COMMENT_CHARS {
            errors.push(FieldError::new(
                "/comment",
                format!("must be at most {MAX_COMMENT_CHARS} characters, got {comment_chars}"),
            ));
        }

        // Postgres cannot store U+0000 in jsonb, and XML 1.0 (CloudFront's wire format)
        // allows no other control character than tab, line feed and carriage return.
        if self
            .comment
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
        {
            errors.push(FieldError::new(
                "/comment",
                "must not contain control characters other than tab, line feed and carriage return",
            ));
        }

        if let Some(object) = &self.default_root_object
            && (object.is_empty()
                || object.len() > 255
                || object.starts_with('/')
                || object.chars().any(|c| c.is_control() || c.is_whitespace()))
        {
            errors.push(FieldError::new(
                "/default_root_object",
                "must be an object name such as index.html: 1 to 255 characters, no leading slash, no spaces",
            ));
        }

        errors
    }
}

/// RFC 1123 hostname with at least two labels; `allow_wildcard` permits one leading `*.`.
pub fn is_hostname(name: &str, allow_wildcard: bool) -> bool {
    let name = match name.strip_prefix("*.") {
        Some(rest) if allow_wildcard => rest,
        _ => name,
    };
    if name.is_empty() || name.len() > 253 {
        return false;
    }
    let labels: Vec<&str> = name.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// `BUCKET.s3.amazonaws.com`, `BUCKET.s3.REGION.amazonaws.com` or the older
/// `BUCKET.s3-REGION.amazonaws.com`, with a bucket name valid for virtual-host addressing.
pub fn is_s3_bucket_endpoint(name: &str) -> bool {
    let Some((bucket, rest)) = name.split_once(".s3") else {
        return false;
    };
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && bucket.as_bytes()[0].is_ascii_alphanumeric()
        && bucket.as_bytes()[bucket.len() - 1].is_ascii_alphanumeric();
    let region_ok = match rest.strip_suffix(".amazonaws.com") {
        Some("") => true,
        Some(region) => {
            let region = region
                .strip_prefix('.')
                .or_else(|| region.strip_prefix('-'))
                .unwrap_or("");
            !region.is_empty()
                && region
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        }
        None => false,
    };
    bucket_ok && region_ok
}

fn is_us_east_1_acm_arn(arn: &str) -> bool {
    let Some(rest) = arn
        .strip_prefix("arn:aws:acm:us-east-1:")
        .or_else(|| arn.strip_prefix("arn:aws-cn:acm:us-east-1:"))
    else {
        return false;
    };
    let Some((account, certificate)) = rest.split_once(":certificate/") else {
        return false;
    };
    account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && !certificate.is_empty()
        && certificate
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(domain: &str) -> DistributionSpec {
        DistributionSpec {
            origin: OriginSpec {
                domain_name: domain.to_owned(),
                kind: OriginKind::Custom,
                protocol: OriginProtocol::HttpsOnly,
            },
            aliases: Vec::new(),
            certificate_arn: None,
            comment: String::new(),
            price_class: PriceClass::PriceClassAll,
            default_root_object: None,
            enabled: true,
        }
    }

    #[test]
    fn hostname_rules() {
        assert!(is_hostname("example.com", false));
        assert!(is_hostname("a-b.example.com", false));
        assert!(!is_hostname("localhost", false));
        assert!(!is_hostname("-a.example.com", false));
        assert!(!is_hostname("a..example.com", false));
        assert!(!is_hostname("exa mple.com", false));
        assert!(!is_hostname("*.example.com", false));
        assert!(is_hostname("*.example.com", true));
        assert!(!is_hostname("a.*.example.com", true));
    }

    #[test]
    fn s3_endpoint_rules() {
        assert!(is_s3_bucket_endpoint("my-bucket.s3.amazonaws.com"));
        assert!(is_s3_bucket_endpoint(
            "my-bucket.s3.eu-west-1.amazonaws.com"
        ));
        assert!(is_s3_bucket_endpoint(
            "my-bucket.s3-eu-west-1.amazonaws.com"
        ));
        assert!(!is_s3_bucket_endpoint("example.com"));
        assert!(!is_s3_bucket_endpoint("My_Bucket.s3.amazonaws.com"));
        assert!(!is_s3_bucket_endpoint(
            "my-bucket.s3.amazonaws.com.evil.com"
        ));
    }

    #[test]
    fn aliases_need_certificate() {
        let mut spec = spec("example.com");
        spec.aliases = vec!["cdn.example.com".into()];
        let errors = spec.validate();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].pointer, "/certificate_arn");
    }

    #[test]
    fn duplicate_aliases_rejected() {
        let mut spec = spec("example.com");
        spec.aliases = vec!["cdn.example.com".into(), "CDN.example.com".into()];
        spec.certificate_arn =
            Some("arn:aws:acm:us-east-1:123456789012:certificate/abc-123".into());
        let errors = spec.validate();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].pointer, "/aliases/1");
    }

    #[test]
    fn certificate_outside_us_east_1_rejected() {
        let mut spec = spec("example.com");
        spec.certificate_arn =
            Some("arn:aws:acm:eu-west-1:123456789012:certificate/abc-123".into());
        assert_eq!(spec.validate()[0].pointer, "/certificate_arn");
    }

    #[test]
    fn long_comment_rejected() {
        let mut spec = spec("example.com");
        spec.comment = "x".repeat(129);
        assert_eq!(spec.validate()[0].pointer, "/comment");
        spec.comment = "x".repeat(128);
        assert!(spec.validate().is_empty());
    }
}
