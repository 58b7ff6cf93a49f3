//! `/v1/distributions`: create, read, list and delete distributions.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::AppState;
use super::auth::Owner;
use super::error::{ApiError, Problem};
use super::extract::{Json, Path, Query};
use crate::lifecycle::{Intent, Status};
use crate::spec::DistributionSpec;
use crate::store::Distribution;
use crate::store::distributions::{self, ListFilter};

/// The largest page `GET /v1/distributions` returns.
pub const MAX_PAGE_SIZE: i64 = 100;
const DEFAULT_PAGE_SIZE: i64 = 20;

/// A managed distribution as the API shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DistributionResource {
    pub id: Uuid,
    pub status: Status,
    /// The configuration the distribution was created with.
    pub config: DistributionSpec,
    /// What CloudFront last reported; absent until the distribution exists there.
    pub cloudfront: Option<CloudFrontView>,
    /// Present once deletion (or disable-and-retain) has been requested.
    pub deletion: Option<DeletionView>,
    /// The last error CloudFront returned, kept after the row recovered from it.
    pub last_error: Option<ErrorView>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CloudFrontView {
    #[schema(example = "E2QWRUHAPOMQZL")]
    pub id: String,
    pub arn: Option<String>,
    #[schema(example = "d111111abcdef8.cloudfront.net")]
    pub domain_name: Option<String>,
    /// `InProgress` or `Deployed`, as of the last check.
    pub status: Option<String>,
    pub enabled: Option<bool>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeletionView {
    pub requested_at: DateTime<Utc>,
    /// The distribution is disabled and kept rather than deleted.
    pub retain: bool,
    /// The deletion has taken longer than the configured deadline; it goes on regardless.
    pub overdue: bool,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorView {
    /// CloudFront's error code, such as `CNAMEAlreadyExists`.
    pub code: String,
    pub message: String,
    pub at: Option<DateTime<Utc>>,
}

impl From<Distribution> for DistributionResource {
    fn from(row: Distribution) -> Self {
        let cloudfront = row.cloudfront_id.map(|id| CloudFrontView {
            id,
            arn: row.arn,
            domain_name: row.domain_name,
            status: row.cloudfront_status,
            enabled: row.cloudfront_enabled,
        });
        let deletion = row.delete_requested_at.map(|requested_at| DeletionView {
            requested_at,
            retain: row.intent == Intent::Retain,
            overdue: row.overdue,
        });
        let last_error = row.last_error_code.map(|code| ErrorView {
            code,
            message: row.last_error_message.unwrap_or_default(),
            at: row.last_error_at,
        });
        DistributionResource {
            id: row.id,
            status: row.status,
            config: row.spec,
            cloudfront,
            deletion,
            last_error,
            created_at: row.created_at,
            updated_at: row.updated_at,
            deleted_at: row.deleted_at,
        }
    }
}

/// Renders a resource with its ETag (the row's version) and, when given, a Location.
pub(super) fn resource_response(status: StatusCode, row: Distribution, location: bool) -> Response {
    let etag = format!("\"{}\"", row.version);
    let path = format!("/v1/distributions/{}", row.id);
    let mut response = (status, axum::Json(DistributionResource::from(row))).into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    if location && let Ok(value) = HeaderValue::from_str(&path) {
        headers.insert(header::LOCATION, value);
    }
    response
}

/// Create a distribution
///
/// Records the request and answers at once; the worker creates the distribution in
/// CloudFront and follows it until it is deployed.
#[utoipa::path(
    post,
    path = "/v1/distributions",
    tag = "distributions",
    request_body = DistributionSpec,
    responses(
        (status = 202, description = "Recorded; creation continues in the background", body = DistributionResource,
            headers(("Location" = String, description = "The new resource"), ("ETag" = String, description = "The resource's version"))),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    Owner(owner): Owner,
    Json(spec): Json<DistributionSpec>,
) -> Result<Response, ApiError> {
    let errors = spec.validate();
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }

    let id = Uuid::now_v7();
    // Fixed before any CloudFront call and reused by every retry, so a retry can only ever
    // find the distribution an earlier attempt created.
    let caller_reference = format!("cloudfront-lifecycle-{id}");
    let row = distributions::insert(&state.pool, id, &owner, &spec, &caller_reference).await?;
    state.wake_workers();
    tracing::info!(distribution.id = %id, owner = %owner, "creation requested");

    Ok(resource_response(StatusCode::ACCEPTED, row, true))
}

/// Get a distribution
#[utoipa::path(
    get,
    path = "/v1/distributions/{id}",
    tag = "distributions",
    params(("id" = Uuid, Path, description = "The distribution's id")),
    responses(
        (status = 200, description = "The distribution", body = DistributionResource,
            headers(("ETag" = String, description = "The resource's version"))),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such distribution for this owner", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    Owner(owner): Owner,
    Path(id): Path<Uuid>,
) -> Result<Response, ApiError> {
    let row = distributions::get_for_owner(&state.pool, id, &owner)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(resource_response(StatusCode::OK, row, false))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Page size, 1 to 100; 20 when absent.
    limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Only distributions with this status.
    status: Option<Status>,
}

/// One page of distributions, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DistributionPage {
    pub items: Vec<DistributionResource>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// List your distributions
#[utoipa::path(
    get,
    path = "/v1/distributions",
    tag = "distributions",
    params(ListParams),
    responses(
        (status = 200, description = "A page of distributions", body = DistributionPage),
        (status = 400, description = "Invalid limit, cursor or status", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    Owner(owner): Owner,
    Query(params): Query<ListParams>,
) -> Result<axum::Json<DistributionPage>, ApiError> {
    let limit = params.limit.unwrap_or(DEFAULT_PAGE_SIZE);
    if !(1..=MAX_PAGE_SIZE).contains(&limit) {
        return Err(ApiError::InvalidParameter(format!(
            "limit must be between 1 and {MAX_PAGE_SIZE}, got {limit}"
        )));
    }
    let after = params.cursor.as_deref().map(decode_cursor).transpose()?;

    let filter = ListFilter {
        status: params.status,
        after,
        limit: limit + 1,
    };
    let mut rows = distributions::list_for_owner(&state.pool, &owner, &filter).await?;

    let next_cursor = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|row| encode_cursor(row.created_at, row.id))
    } else {
        None
    };
    Ok(axum::Json(DistributionPage {
        items: rows.into_iter().map(DistributionResource::from).collect(),
        next_cursor,
    }))
}

fn encode_cursor(created_at: DateTime<Utc>, id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}|{id}", created_at.timestamp_micros()))
}

fn decode_cursor(cursor: &str) -> Result<(DateTime<Utc>, Uuid), ApiError> {
    let invalid = || {
        ApiError::InvalidParameter(
            "cursor is not one this service issued; pass the next_cursor of a previous page"
                .to_owned(),
        )
    };
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let (micros, id) = text.split_once('|').ok_or_else(invalid)?;
    let micros: i64 = micros.parse().map_err(|_| invalid())?;
    let created_at = DateTime::from_timestamp_micros(micros).ok_or_else(invalid)?;
    let id = Uuid::parse_str(id).map_err(|_| invalid())?;
    Ok((created_at, id))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeleteParams {
    /// Disable the distribution and keep it instead of deleting it; it ends `disabled`.
    #[serde(default)]
    retain: bool,
}

/// Delete a distribution
///
/// Records the request and answers at once. The worker disables the distribution, waits
/// until CloudFront reports it Deployed and disabled, then deletes it. Repeating the request
/// is harmless.
#[utoipa::path(
    delete,
    path = "/v1/distributions/{id}",
    tag = "distributions",
    params(("id" = Uuid, Path, description = "The distribution's id"), DeleteParams),
    responses(
        (status = 202, description = "Deletion recorded; it continues in the background", body = DistributionResource,
            headers(("ETag" = String, description = "The resource's version"))),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such distribution for this owner", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn delete(
    State(state): State<AppState>,
    Owner(owner): Owner,
    Path(id): Path<Uuid>,
    Query(params): Query<DeleteParams>,
    _headers: HeaderMap,
) -> Result<Response, ApiError> {
    let intent = if params.retain {
        Intent::Retain
    } else {
        Intent::Delete
    };
    let row = distributions::request_delete(&state.pool, id, &owner, intent)
        .await?
        .ok_or(ApiError::NotFound)?;
    tracing::info!(distribution.id = %id, owner = %owner, intent = intent.as_str(), "deletion requested");
    state.wake_workers();
    Ok(resource_response(StatusCode::ACCEPTED, row, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips() {
        let created_at = DateTime::from_timestamp_micros(1_764_800_000_123_456).unwrap();
        let id = Uuid::now_v7();
        let cursor = encode_cursor(created_at, id);
        assert_eq!(decode_cursor(&cursor).unwrap(), (created_at, id));
    }

    #[test]
    fn forged_cursor_rejected() {
        assert!(decode_cursor("not-a-cursor").is_err());
        assert!(decode_cursor(&URL_SAFE_NO_PAD.encode("12|not-a-uuid")).is_err());
    }
}
