//! Changes made outside the API, as another actor (the console, another tool,
//! CloudFront itself) would make them. They are not written to the call log.

use std::time::Duration;

use chrono::Utc;
use quick_xml::escape::escape;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::tags::Tag;
use super::xml::ConfigXml;
use super::{DistributionView, Simulator};

/// A distribution created directly, not through the API.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExternalCreate {
    /// Defaults to a fresh UUID.
    pub caller_reference: Option<String>,
    pub enabled: bool,
    pub comment: String,
    pub aliases: Vec<String>,
    pub tags: Vec<Tag>,
    /// How long ago it was last modified; once this exceeds the deploy time it is
    /// already `Deployed`.
    #[serde(rename = "age_ms", with = "super::deploy::millis")]
    pub age: Duration,
}

/// A change to an existing distribution's config. Any change gets a new ETag and
/// restarts the deploy, as on CloudFront, even when no field is set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExternalChange {
    pub enabled: Option<bool>,
    pub comment: Option<String>,
}

impl Simulator {
    /// Creates a distribution outside the API, with a minimal valid config.
    pub fn external_create(&self, request: ExternalCreate) -> Result<DistributionView, ApiError> {
        let caller_reference = request
            .caller_reference
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let config = ConfigXml::parse(&minimal_config(
            &caller_reference,
            request.enabled,
            &request.comment,
            &request.aliases,
        ))?;
        let mut inner = self.lock();
        let now = Utc::now();
        let id = inner
            .store
            .create(config, request.tags, now, request.age)?
            .id
            .clone();
        Ok(inner.view(&id, now).expect("created above"))
    }

    /// Changes a distribution outside the API, for example re-enabling it.
    pub fn external_change(
        &self,
        id: &str,
        change: ExternalChange,
    ) -> Result<DistributionView, ApiError> {
        let mut inner = self.lock();
        let now = Utc::now();
        let mut config = inner.store.get(id)?.current.config.clone();
        if let Some(enabled) = change.enabled {
            config.set_text("Enabled", if enabled { "true" } else { "false" });
        }
        if let Some(comment) = &change.comment {
            config.set_text("Comment", comment);
        }
        inner.store.replace_config(id, config, now)?;
        Ok(inner.view(id, now).expect("changed above"))
    }

    /// Deletes a distribution outside the API, whatever its state.
    pub fn external_delete(&self, id: &str) -> Result<(), ApiError> {
        let mut inner = self.lock();
        inner
            .store
            .distributions
            .remove(id)
            .map(|_| ())
            .ok_or_else(|| ApiError::no_such_distribution(id))
    }
}

/// Returns a config with one custom origin and a default cache behavior using the
/// managed CachingOptimized policy, the least CloudFront accepts.
fn minimal_config(
    caller_reference: &str,
    enabled: bool,
    comment: &str,
    aliases: &[String],
) -> String {
    let alias_items: String = aliases
        .iter()
        .map(|alias| format!("<CNAME>{}</CNAME>", escape(alias.as_str())))
        .collect();
    let aliases_xml = if aliases.is_empty() {
        "<Aliases><Quantity>0</Quantity></Aliases>".to_string()
    } else {
        format!(
            "<Aliases><Quantity>{}</Quantity><Items>{alias_items}</Items></Aliases>",
            aliases.len()
        )
    };
    format!(
        "<DistributionConfig><CallerReference>{}</CallerReference>{aliases_xml}\
         <Origins><Quantity>1</Quantity><Items><Origin><Id>origin-1</Id>\
         <DomainName>origin.example.com</DomainName><CustomOriginConfig><HTTPPort>80</HTTPPort>\
         <HTTPSPort>443</HTTPSPort><OriginProtocolPolicy>https-only</OriginProtocolPolicy>\
         </CustomOriginConfig></Origin></Items></Origins><DefaultCacheBehavior>\
         <TargetOriginId>origin-1</TargetOriginId><ViewerProtocolPolicy>redirect-to-https</ViewerProtocolPolicy>\
         <CachePolicyId>658327ea-f89d-4fab-a63d-7e88639e58f6</CachePolicyId></DefaultCacheBehavior>\
         <Comment>{}</Comment><Enabled>{enabled}</Enabled></DistributionConfig>",
        escape(caller_reference),
        escape(comment),
    )
}
