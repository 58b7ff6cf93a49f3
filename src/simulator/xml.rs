//! Parsing of the request bodies the simulator accepts.
//!
//! A distribution config is kept as the XML the client sent, one raw string per
//! top-level element, so that fields the simulator does not model survive a
//! Get/Update round trip unchanged.

use quick_xml::Reader;
use quick_xml::events::Event;

use super::error::ApiError;
use super::tags::{Tag, parse_tags};

pub use super::documents::error_document;

/// A `DistributionConfig` as a list of its top-level elements, each kept as raw XML.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigXml {
    elements: Vec<ConfigElement>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct ConfigElement {
    name: String,
    raw: String,
}

impl ConfigXml {
    /// Parses a `DistributionConfig` document.
    pub fn parse(body: &str) -> Result<Self, ApiError> {
        let elements = parse_children(body, "DistributionConfig")?
            .into_iter()
            .map(|(name, raw)| ConfigElement { name, raw })
            .collect();
        Ok(Self { elements })
    }

    /// Returns the raw XML of the top-level element `name`, if present.
    pub fn element(&self, name: &str) -> Option<&str> {
        self.elements
            .iter()
            .find(|element| element.name == name)
            .map(|element| element.raw.as_str())
    }

    /// Returns the concatenated raw XML of all elements, for embedding in a document.
    pub fn inner_xml(&self) -> String {
        self.elements
            .iter()
            .map(|element| element.raw.as_str())
            .collect()
    }

    /// Returns the text content of the simple top-level element `name`.
    pub fn text(&self, name: &str) -> Option<String> {
        let raw = self.element(name)?;
        Some(
            descendant_texts(raw, name)
                .into_iter()
                .next()
                .unwrap_or_default(),
        )
    }

    /// Replaces the simple top-level element `name` with `<name>value</name>`,
    /// appending it when absent.
    pub fn set_text(&mut self, name: &str, value: &str) {
        let raw = format!("<{name}>{}</{name}>", quick_xml::escape::escape(value));
        match self
            .elements
            .iter_mut()
            .find(|element| element.name == name)
        {
            Some(element) => element.raw = raw,
            None => self.elements.push(ConfigElement {
                name: name.to_string(),
                raw,
            }),
        }
    }

    pub fn caller_reference(&self) -> Option<String> {
        self.text("CallerReference")
    }

    /// Returns `Enabled`, or `None` when it is absent or not a boolean.
    pub fn enabled(&self) -> Option<bool> {
        match self.text("Enabled")?.trim() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        }
    }

    pub fn comment(&self) -> String {
        self.text("Comment").unwrap_or_default()
    }

    /// Returns the CNAMEs listed under `Aliases/Items`.
    pub fn aliases(&self) -> Vec<String> {
        self.element("Aliases")
            .map(|raw| descendant_texts(raw, "CNAME"))
            .unwrap_or_default()
    }

    /// Checks the elements CloudFront requires in every config.
    pub fn validate(&self) -> Result<(), ApiError> {
        match self.caller_reference() {
            Some(reference) if !reference.trim().is_empty() => {}
            _ => {
                return Err(ApiError::invalid_argument(
                    "CallerReference is missing or empty.",
                ));
            }
        }
        if self.enabled().is_none() {
            return Err(ApiError::invalid_argument(
                "Enabled is missing or is not true or false.",
            ));
        }
        for required in ["Origins", "DefaultCacheBehavior"] {
            if self.element(required).is_none() {
                return Err(ApiError::invalid_argument(format!(
                    "{required} is missing."
                )));
            }
        }
        Ok(())
    }
}

/// Parses a `DistributionConfigWithTags` document into the config and its tags.
pub fn parse_config_with_tags(body: &str) -> Result<(ConfigXml, Vec<Tag>), ApiError> {
    let children = parse_children(body, "DistributionConfigWithTags")?;
    let mut config = None;
    let mut tags = Vec::new();
    for (name, raw) in children {
        match name.as_str() {
            "DistributionConfig" => config = Some(ConfigXml::parse(&raw)?),
            "Tags" => tags = parse_tags(&raw)?,
            _ => {}
        }
    }
    let config =
        config.ok_or_else(|| ApiError::invalid_argument("DistributionConfig is missing."))?;
    Ok((config, tags))
}

/// Parses `body`, checks that its root element is `root` and returns each child
/// element of the root as `(local name, raw XML)`.
pub(super) fn parse_children(body: &str, root: &str) -> Result<Vec<(String, String)>, ApiError> {
    let mut reader = Reader::from_str(body);
    let mut children = Vec::new();
    let mut depth = 0usize;
    let mut seen_root = false;
    let mut child: Option<(String, usize)> = None;
    loop {
        let event_start = reader.buffer_position() as usize;
        let event = reader.read_event().map_err(ApiError::malformed_xml)?;
        let event_end = reader.buffer_position() as usize;
        match event {
            Event::Start(start) => {
                let name = local_name(start.local_name().as_ref());
                if depth == 0 {
                    check_root(&name, root, seen_root)?;
                    seen_root = true;
                } else if depth == 1 {
                    child = Some((name, event_start));
                }
                depth += 1;
            }
            Event::Empty(empty) => {
                let name = local_name(empty.local_name().as_ref());
                if depth == 0 {
                    check_root(&name, root, seen_root)?;
                    seen_root = true;
                } else if depth == 1 {
                    children.push((name, body[event_start..event_end].to_string()));
                }
            }
            Event::End(_) => {
                depth = depth.saturating_sub(1);
                if depth == 1
                    && let Some((name, start)) = child.take()
                {
                    children.push((name, body[start..event_end].to_string()));
                }
            }
            Event::Text(text) if depth == 0 && !text.iter().all(u8::is_ascii_whitespace) => {
                return Err(ApiError::malformed_xml("text outside the root element"));
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !seen_root {
        return Err(ApiError::malformed_xml(format!(
            "expected a {root} element"
        )));
    }
    if depth != 0 {
        return Err(ApiError::malformed_xml(
            "the document ends inside an element",
        ));
    }
    Ok(children)
}

fn check_root(name: &str, expected: &str, seen_root: bool) -> Result<(), ApiError> {
    if seen_root {
        return Err(ApiError::malformed_xml("more than one root element"));
    }
    if name != expected {
        return Err(ApiError::malformed_xml(format!(
            "expected root element {expected}, found {name}"
        )));
    }
    Ok(())
}

/// Returns the text of every element named `name` anywhere in `raw`.
pub(super) fn descendant_texts(raw: &str, name: &str) -> Vec<String> {
    let mut reader = Reader::from_str(raw);
    let mut texts = Vec::new();
    let mut inside = false;
    let mut current = String::new();
    while let Ok(event) = reader.read_event() {
        match event {
            Event::Start(start) if local_name(start.local_name().as_ref()) == name => {
                inside = true;
                current.clear();
            }
            Event::Empty(empty) if local_name(empty.local_name().as_ref()) == name => {
                texts.push(String::new());
            }
            Event::Text(text) if inside => {
                current.push_str(&text.unescape().unwrap_or_default());
            }
            Event::CData(data) if inside => {
                current.push_str(&String::from_utf8_lossy(&data));
            }
            Event::End(end) if inside && local_name(end.local_name().as_ref()) == name => {
                inside = false;
                texts.push(std::mem::take(&mut current));
            }
            Event::Eof => break,
            _ => {}
        }
    }
    texts
}

pub(super) fn local_name(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
