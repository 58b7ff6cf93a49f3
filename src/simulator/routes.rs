//! CloudFront API routes under `/2020-05-31/`, with faults applied around each call.

use std::collections::HashMap;
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};

use super::calls::CallRecord;
use super::documents;
use super::error::ApiError;
use super::faults::{LostResponseMode, Operation};
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

/// A successful result before faults are applied to it.
struct Reply {
    status: StatusCode,
    etag: Option<String>,
    location: Option<String>,
    body: Option<String>,
    /// The distribution a create made, for the call log.
    created_id: Option<String>,
}

impl Reply {
    fn ok(body: String, etag: Option<String>) -> Self {
        Self {
            status: StatusCode::OK,
            etag,
            location: None,
            body: Some(body),
            created_id: None,
        }
    }

    fn empty(status: StatusCode) -> Self {
        Self {
            status,
            etag: None,
            location: None,
            body: None,
            created_id: None,
        }
    }

    fn into_response(self) -> Response {
        let mut response = match self.body {
            Some(body) => (self.status, [(header::CONTENT_TYPE, "text/xml")], body).into_response(),
            None => self.status.into_response(),
        };
        let headers = response.headers_mut();
        for (name, value) in [("ETag", self.etag), ("Location", self.location)] {
            if let Some(value) = value.and_then(|value| value.parse().ok()) {
                headers.insert(name, value);
            }
        }
        response
    }
}

/// Serves one call: latency, rate limit, injected errors, the action itself, lost
/// responses, and the call log, in that order.
async fn serve(
    simulator: &Simulator,
    operation: Operation,
    distribution_id: Option<String>,
    if_match: Option<String>,
    action: impl FnOnce(&mut Inner, DateTime<Utc>) -> Result<Reply, ApiError>,
) -> Response {
    let latency = simulator.lock().faults.latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }

    let mut inner = simulator.lock();
    let now = Utc::now();
    let observed = distribution_id
        .as_deref()
        .and_then(|id| inner.store.distributions.get(id))
        .map(|distribution| {
            (
                distribution.current.enabled(),
                distribution.current.status(now),
            )
        });
    let outcome = inner
        .faults
        .check_rate(operation, Instant::now())
        .and_then(|()| inner.faults.take_error(operation))
        .and_then(|()| action(&mut inner, now));
    let lost = match outcome {
        Ok(_) => inner.faults.take_lost_response(operation),
        Err(_) => None,
    };

    let (http_status, error_code) = match &outcome {
        Ok(reply) => (reply.status.as_u16(), None),
        Err(error) => (error.status, Some(error.code.clone())),
    };
    let logged_id = match &outcome {
        Ok(Reply {
            created_id: Some(id),
            ..
        }) => Some(id.clone()),
        _ => distribution_id.clone(),
    };
    tracing::debug!(?operation, id = ?logged_id, http_status, ?error_code, ?lost, "CloudFront call");
    inner.calls.record(CallRecord {
        sequence: 0,
        operation,
        distribution_id: logged_id,
        if_match,
        http_status,
        error_code,
        time: now,
        enabled: observed.map(|(enabled, _)| enabled),
        status: observed.map(|(_, status)| status),
        response_lost: lost,
    });
    drop(inner);

    match (outcome, lost) {
        (Err(error), _) => error.into_response(),
        (Ok(_), Some(LostResponseMode::InternalError)) => {
            ApiError::internal_error().into_response()
        }
        (Ok(_), Some(LostResponseMode::DropConnection)) => broken_response(),
        (Ok(reply), None) => reply.into_response(),
    }
}

/// Returns a 200 response whose body fails after its first byte; hyper then aborts
/// the connection, so the client sees the response cut off.
fn broken_response() -> Response {
    let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
        Ok(Bytes::from_static(b"<")),
        Err(std::io::Error::other("simulated lost response")),
    ];
    let mut response = Response::new(Body::from_stream(futures::stream::iter(chunks)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        "text/xml".parse().expect("static header value"),
    );
    response
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
            Operation::TagResource => inner.store.tag(arn, xml::parse_tags(body)?)?,
            _ => inner.store.untag(arn, &xml::parse_tag_keys(body)?)?,
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
