//! CloudFront API routes under `/2020-05-31/`, with faults applied around each call.

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::dispatch::{Reply, serve};
use super::documents;
use super::error::ApiError;
use super::faults::Operation;
use super::tags;
use super::xml::{self, ConfigXml};
use super::{Inner, Simulator};

type Params = Query<HashMap<String, String>>;

pub fn router(simulator: Simulator) -> Router {
    Router::new()
        .route("/2020-05-31/distribution", get(list).post(create))
        .route(
            "/2020-05-31/distribution/{id}",
            get(get_distribution).delete(delete),
        )
        .route(
            "/2020-05-31/distribution/{id}/config",
            get(get_config).put(update),
        )
        .route("/2020-05-31/tagging", get(list_tags).post(tag_or_untag))
        .fallback(unsupported)
        .with_state(simulator)
}

fn if_match(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::IF_MATCH)
        .and_then(|value| value.to_str().ok())
        .map(str::to_string)
}

fn utf8(body: &Bytes) -> Result<&str, ApiError> {
    std::str::from_utf8(body).map_err(|_| ApiError::malformed_xml("the body is not UTF-8"))
}

async fn create(
    State(simulator): State<Simulator>,
    Query(params): Params,
    body: Bytes,
) -> Response {
    let with_tags = params.contains_key("WithTags");
    let operation = if with_tags {
        Operation::CreateDistributionWithTags
    } else {
        Operation::CreateDistribution
    };
    serve(&simulator, operation, None, None, |inner, now| {
        let body = utf8(&body)?;
        let (config, tags) = if with_tags {
            xml::parse_config_with_tags(body)?
        } else {
            (ConfigXml::parse(body)?, Vec::new())
        };
        let distribution = inner
            .store
            .create(config, tags, now, std::time::Duration::ZERO)?;
        let mut reply = Reply::ok(
            documents::distribution_document(&distribution.facts(&distribution.current, now)),
            Some(distribution.current.etag.clone()),
        );
        reply.status = StatusCode::CREATED;
        reply.location = Some(format!(
            "https://cloudfront.amazonaws.com/2020-05-31/distribution/{}",
            distribution.id
        ));
        reply.created_id = Some(distribution.id.clone());
        Ok(reply)
    })
    .await
}

/// Serves GetDistribution and GetDistributionConfig, honouring armed stale reads.
async fn read(simulator: Simulator, operation: Operation, id: String) -> Response {
    serve(
        &simulator,
        operation,
        Some(id.clone()),
        None,
        |inner, now| {
            let Inner { store, faults, .. } = inner;
            let distribution = store.get(&id)?;
            let version = match &distribution.previous {
                Some(previous) if faults.take_stale_read(&id) => previous,
                _ => &distribution.current,
            };
            let body = match operation {
                Operation::GetDistributionConfig => documents::config_document(&version.config),
                _ => documents::distribution_document(&distribution.facts(version, now)),
            };
            Ok(Reply::ok(body, Some(version.etag.clone())))
        },
    )
    .await
}

async fn get_distribution(State(simulator): State<Simulator>, Path(id): Path<String>) -> Response {
    read(simulator, Operation::GetDistribution, id).await
}

async fn get_config(State(simulator): State<Simulator>, Path(id): Path<String>) -> Response {
    read(simulator, Operation::GetDistributionConfig, id).await
}

async fn update(
    State(simulator): State<Simulator>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let if_match = if_match(&headers);
    let operation = Operation::UpdateDistribution;
    serve(
        &simulator,
        operation,
        Some(id.clone()),
        if_match.clone(),
        |inner, now| {
            let config = ConfigXml::parse(utf8(&body)?)?;
            let distribution = inner.store.update(&id, if_match.as_deref(), config, now)?;
            Ok(Reply::ok(
                documents::distribution_document(&distribution.facts(&distribution.current, now)),
                Some(distribution.current.etag.clone()),
            ))
        },
    )
    .await
}

async fn delete(
    State(simulator): State<Simulator>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let if_match = if_match(&headers);
    let operation = Operation::DeleteDistribution;
    serve(
        &simulator,
        operation,
        Some(id.clone()),
        if_match.clone(),
        |inner, now| {
            inner.store.delete(&id, if_match.as_deref(), now)?;
            Ok(Reply::empty(StatusCode::NO_CONTENT))
        },
    )
    .await
}

async fn list(State(simulator): State<Simulator>, Query(params): Params) -> Response {
    serve(
        &simulator,
        Operation::ListDistributions,
        None,
        None,
        |inner, now| {
            let marker = params.get("Marker").cloned().unwrap_or_default();
            let max_items = match params.get("MaxItems") {
                None => 100,
                Some(text) => text
                    .parse::<usize>()
                    .ok()
                    .filter(|value| *value > 0)
                    .ok_or_else(|| {
                        ApiError::invalid_argument(format!(
                            "MaxItems must be a positive integer, got {text:?}."
                        ))
                    })?,
            };
            let range = match marker.as_str() {
                "" => inner.store.distributions.range::<String, _>(..),
                _ => inner.store.distributions.range::<String, _>((
                    std::ops::Bound::Excluded(&marker),
                    std::ops::Bound::Unbounded,
                )),
            };
            let mut remaining = range.peekable();
            let page: Vec<_> = remaining.by_ref().take(max_items).map(|(_, d)| d).collect();
            let truncated = remaining.peek().is_some();
            let next_marker = page.last().filter(|_| truncated).map(|d| d.id.as_str());
            let document = documents::list_document(&documents::ListPage {
                marker: &marker,
                next_marker,
                max_items,
                items: page.iter().map(|d| d.facts(&d.current, now)).collect(),
            });
            Ok(Reply::ok(document, None))
        },
    )
    .await
}

/// Returns the id of the distribution with `arn`, for the call log.
fn id_for_arn(simulator: &Simulator, arn: Option<&String>) -> Option<String> {
    let inner = simulator.lock();
    Some(inner.store.find_by_arn(arn?).ok()?.id.clone())
}

fn resource(params: &HashMap<String, String>) -> Result<&str, ApiError> {
    params
        .get("Resource")
        .map(String::as_str)
        .filter(|arn| !arn.is_empty())
        .ok_or_else(|| ApiError::invalid_argument("The Resource parameter is missing."))
}

async fn list_tags(State(simulator): State<Simulator>, Query(params): Params) -> Response {
    let id = id_for_arn(&simulator, params.get("Resource"));
    serve(
        &simulator,
        Operation::ListTagsForResource,
        id,
        None,
        |inner, _| {
            let distribution = inner.store.find_by_arn(resource(&params)?)?;
            Ok(Reply::ok(
                documents::tags_document(&distribution.tags),
                None,
            ))
        },
    )
    .await
}

async fn tag_or_untag(
    State(simulator): State<Simulator>,
    Query(params): Params,
    body: Bytes,
) -> Response {
    let id = id_for_arn(&simulator, params.get("Resource"));
    let operation = match params.get("Operation").map(String::as_str) {
        Some("Tag") => Operation::TagResource,
        Some("Untag") => Operation::UntagResource,
        other => {
            return ApiError::invalid_argument(format!(
                "The Operation parameter must be Tag or Untag, got {other:?}."
            ))
            .into_response();
        }
    };
    serve(&simulator, operation, id, None, |inner, _| {
        let arn = resource(&params)?;
        let body = utf8(&body)?;
        match operation {
            Operation::TagResource => inner.store.tag(arn, tags::parse_tags(body)?)?,
            _ => inner.store.untag(arn, &tags::parse_tag_keys(body)?)?,
        }
        Ok(Reply::empty(StatusCode::NO_CONTENT))
    })
    .await
}

async fn unsupported(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    ApiError::new(
        501,
        "NotImplemented",
        format!("The CloudFront simulator does not implement {method} {uri}."),
    )
    .into_response()
}
