//! Resource tags: their documents and the TagResource/UntagResource rules.

use quick_xml::Reader;
use quick_xml::events::Event;

use super::error::ApiError;
use super::state::{Distribution, Store};
use super::xml::{descendant_texts, local_name, parse_children};

/// CloudFront's quota of tags per resource.
const MAX_TAGS: usize = 50;

/// A resource tag; CloudFront allows a tag without a value.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tag {
    pub key: String,
    #[serde(default)]
    pub value: Option<String>,
}

/// Parses a `Tags` document (`Tags/Items/Tag/{Key,Value}`).
pub fn parse_tags(body: &str) -> Result<Vec<Tag>, ApiError> {
    let mut reader = Reader::from_str(body);
    let mut tags = Vec::new();
    let mut current: Option<Tag> = None;
    let mut field: Option<String> = None;
    loop {
        match reader.read_event().map_err(ApiError::malformed_xml)? {
            Event::Start(start) => {
                let name = local_name(start.local_name().as_ref());
                if name == "Tag" {
                    current = Some(Tag {
                        key: String::new(),
                        value: None,
                    });
                }
                field = Some(name);
            }
            Event::Text(text) => {
                let value = text.unescape().map_err(ApiError::malformed_xml)?;
                if let (Some(tag), Some(name)) = (current.as_mut(), field.as_deref()) {
                    match name {
                        "Key" => tag.key.push_str(&value),
                        "Value" => tag.value.get_or_insert_default().push_str(&value),
                        _ => {}
                    }
                }
            }
            Event::End(end) => {
                field = None;
                if local_name(end.local_name().as_ref()) == "Tag" {
                    tags.extend(current.take());
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if tags.iter().any(|tag| tag.key.is_empty()) {
        return Err(ApiError::new(
            400,
            "InvalidTagging",
            "A tag key is missing or empty.",
        ));
    }
    Ok(tags)
}

/// Parses a `TagKeys` document (`TagKeys/Items/Key`).
pub fn parse_tag_keys(body: &str) -> Result<Vec<String>, ApiError> {
    parse_children(body, "TagKeys")?;
    Ok(descendant_texts(body, "Key"))
}

pub(super) fn check_tag_count(tags: &[Tag]) -> Result<(), ApiError> {
    if tags.len() > MAX_TAGS {
        // NOTE: the error code CloudFront returns above the quota is unverified.
        return Err(ApiError::new(
            400,
            "InvalidTagging",
            format!(
                "A resource can have at most {MAX_TAGS} tags, got {}.",
                tags.len()
            ),
        ));
    }
    Ok(())
}

impl Store {
    pub fn find_by_arn(&self, arn: &str) -> Result<&Distribution, ApiError> {
        self.distributions
            .values()
            .find(|distribution| distribution.arn == arn)
            .ok_or_else(|| {
                ApiError::new(
                    404,
                    "NoSuchResource",
                    format!("The resource {arn} does not exist."),
                )
            })
    }

    /// Adds or replaces tags on the resource `arn`, as TagResource does.
    pub fn tag(&mut self, arn: &str, tags: Vec<Tag>) -> Result<(), ApiError> {
        let id = self.find_by_arn(arn)?.id.clone();
        let distribution = self.distributions.get_mut(&id).expect("found by ARN above");
        let mut merged = distribution.tags.clone();
        for tag in tags {
            merged.retain(|existing| existing.key != tag.key);
            merged.push(tag);
        }
        check_tag_count(&merged)?;
        distribution.tags = merged;
        Ok(())
    }

    /// Removes tags by key from the resource `arn`, as UntagResource does.
    pub fn untag(&mut self, arn: &str, keys: &[String]) -> Result<(), ApiError> {
        let id = self.find_by_arn(arn)?.id.clone();
        let distribution = self.distributions.get_mut(&id).expect("found by ARN above");
        distribution.tags.retain(|tag| !keys.contains(&tag.key));
        Ok(())
    }
}
