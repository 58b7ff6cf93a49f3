//! XML response documents in CloudFront's 2020-05-31 namespace.

use std::fmt::Write;

use chrono::{DateTime, SecondsFormat, Utc};
use quick_xml::escape::escape;

use super::tags::Tag;
use super::xml::ConfigXml;

const NAMESPACE: &str = "http://cloudfront.amazonaws.com/doc/2020-05-31/";
const DECLARATION: &str = r#"<?xml version="1.0" encoding="UTF-8"?>"#;

/// The state of one distribution as a response shows it.
pub struct DistributionFacts<'a> {
    pub id: &'a str,
    pub arn: &'a str,
    pub domain_name: &'a str,
    pub status: &'a str,
    pub etag: &'a str,
    pub last_modified: DateTime<Utc>,
    pub config: &'a ConfigXml,
}

/// One page of `ListDistributions`.
pub struct ListPage<'a> {
    pub marker: &'a str,
    pub next_marker: Option<&'a str>,
    pub max_items: usize,
    pub items: Vec<DistributionFacts<'a>>,
}

/// Config elements a `DistributionSummary` repeats, in the order of the API model,
/// with the default written when the config leaves the element out.
const SUMMARY_ELEMENTS: &[(&str, &str)] = &[
    ("Aliases", "<Aliases><Quantity>0</Quantity></Aliases>"),
    ("Origins", ""),
    ("OriginGroups", ""),
    ("DefaultCacheBehavior", ""),
    (
        "CacheBehaviors",
        "<CacheBehaviors><Quantity>0</Quantity></CacheBehaviors>",
    ),
    (
        "CustomErrorResponses",
        "<CustomErrorResponses><Quantity>0</Quantity></CustomErrorResponses>",
    ),
    ("Comment", "<Comment></Comment>"),
    ("PriceClass", "<PriceClass>PriceClass_All</PriceClass>"),
    ("Enabled", ""),
    (
        "ViewerCertificate",
        "<ViewerCertificate><CloudFrontDefaultCertificate>true</CloudFrontDefaultCertificate></ViewerCertificate>",
    ),
    (
        "Restrictions",
        "<Restrictions><GeoRestriction><RestrictionType>none</RestrictionType><Quantity>0</Quantity></GeoRestriction></Restrictions>",
    ),
    ("WebACLId", "<WebACLId></WebACLId>"),
    ("HttpVersion", "<HttpVersion>http2</HttpVersion>"),
    ("IsIPV6Enabled", "<IsIPV6Enabled>true</IsIPV6Enabled>"),
    ("Staging", "<Staging>false</Staging>"),
];

fn timestamp(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Writes a `Distribution` document (GetDistribution, CreateDistribution, UpdateDistribution).
pub fn distribution_document(facts: &DistributionFacts<'_>) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "{DECLARATION}<Distribution xmlns=\"{NAMESPACE}\">\
         <Id>{id}</Id><ARN>{arn}</ARN><Status>{status}</Status>\
         <LastModifiedTime>{modified}</LastModifiedTime>\
         <InProgressInvalidationBatches>0</InProgressInvalidationBatches>\
         <DomainName>{domain}</DomainName>\
         <ActiveTrustedSigners><Enabled>false</Enabled><Quantity>0</Quantity></ActiveTrustedSigners>\
         <ActiveTrustedKeyGroups><Enabled>false</Enabled><Quantity>0</Quantity></ActiveTrustedKeyGroups>\
         <DistributionConfig>{config}</DistributionConfig></Distribution>",
        id = escape(facts.id),
        arn = escape(facts.arn),
        status = facts.status,
        modified = timestamp(facts.last_modified),
        domain = escape(facts.domain_name),
        config = facts.config.inner_xml(),
    );
    out
}

/// Writes a `DistributionConfig` document (GetDistributionConfig).
pub fn config_document(config: &ConfigXml) -> String {
    format!(
        "{DECLARATION}<DistributionConfig xmlns=\"{NAMESPACE}\">{}</DistributionConfig>",
        config.inner_xml()
    )
}

/// Writes a `DistributionList` document (ListDistributions).
pub fn list_document(page: &ListPage<'_>) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "{DECLARATION}<DistributionList xmlns=\"{NAMESPACE}\"><Marker>{}</Marker>",
        escape(page.marker)
    );
    if let Some(next) = page.next_marker {
        let _ = write!(out, "<NextMarker>{}</NextMarker>", escape(next));
    }
    let _ = write!(
        out,
        "<MaxItems>{}</MaxItems><IsTruncated>{}</IsTruncated><Quantity>{}</Quantity>",
        page.max_items,
        page.next_marker.is_some(),
        page.items.len()
    );
    if !page.items.is_empty() {
        out.push_str("<Items>");
        for facts in &page.items {
            write_summary(&mut out, facts);
        }
        out.push_str("</Items>");
    }
    out.push_str("</DistributionList>");
    out
}

fn write_summary(out: &mut String, facts: &DistributionFacts<'_>) {
    let _ = write!(
        out,
        "<DistributionSummary><Id>{}</Id><ARN>{}</ARN><ETag>{}</ETag><Status>{}</Status>\
         <LastModifiedTime>{}</LastModifiedTime><DomainName>{}</DomainName>",
        escape(facts.id),
        escape(facts.arn),
        escape(facts.etag),
        facts.status,
        timestamp(facts.last_modified),
        escape(facts.domain_name),
    );
    for (name, default) in SUMMARY_ELEMENTS {
        out.push_str(facts.config.element(name).unwrap_or(default));
    }
    out.push_str("</DistributionSummary>");
}

/// Writes a `Tags` document (ListTagsForResource).
pub fn tags_document(tags: &[Tag]) -> String {
    let mut out = format!("{DECLARATION}<Tags xmlns=\"{NAMESPACE}\"><Items>");
    for tag in tags {
        let _ = write!(out, "<Tag><Key>{}</Key>", escape(tag.key.as_str()));
        if let Some(value) = &tag.value {
            let _ = write!(out, "<Value>{}</Value>", escape(value.as_str()));
        }
        out.push_str("</Tag>");
    }
    out.push_str("</Items></Tags>");
    out
}

/// Writes an `ErrorResponse` document.
pub fn error_document(fault_type: &str, code: &str, message: &str, request_id: &str) -> String {
    format!(
        "{DECLARATION}<ErrorResponse xmlns=\"{NAMESPACE}\"><Error><Type>{fault_type}</Type>\
         <Code>{}</Code><Message>{}</Message></Error><RequestId>{}</RequestId></ErrorResponse>",
        escape(code),
        escape(message),
        escape(request_id)
    )
}
