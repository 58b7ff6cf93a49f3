//! `/v1/distributions`: create, read, list and delete distributions.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::AppState;
use super::auth::Owner;
use super::error::{ApiError, Problem};
use super::extract::{Json, Path, Query};
use crate::lifecycle::{Intent, Status};
use crate::spec::{DistributionPatch, DistributionSpec, FieldError};
use crate::store::distributions::{self, ListFilter};
use crate::store::{Distribution, StoreError, idempotency};

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
    /// CloudFront's view as of the last check; absent until the distribution exists there.
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
    let etag = etag_of(&row);
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
/// Records the request and returns at once; the worker creates the distribution in
/// CloudFront and follows it until it is deployed. With an `Idempotency-Key`, repeating the
/// request returns the original response instead of creating another distribution.
#[utoipa::path(
    post,
    path = "/v1/distributions",
    tag = "distributions",
    operation_id = "createDistribution",
    request_body = DistributionSpec,
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Up to 255 printable ASCII characters. The same key and body from the same owner within the key's lifetime (24 hours by default) returns the original response; the same key with another body is rejected with 422."),
    ),
    responses(
        (status = 202, description = "Recorded; creation continues in the background", body = DistributionResource,
            headers(("Location" = String, description = "The new resource"), ("ETag" = String, description = "The resource's version"))),
        (status = 400, description = "Malformed JSON or Idempotency-Key", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The owner's quota of live distributions is reached", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, or an Idempotency-Key reused with another body", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    Owner(owner): Owner,
    headers: HeaderMap,
    Json(spec): Json<DistributionSpec>,
) -> Result<Response, ApiError> {
    let errors = spec.validate();
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let idempotency_key = idempotency_key(&headers)?;
    let request_hash = hex::encode(Sha256::digest(
        serde_json::to_vec(&spec).expect("a spec always serializes"),
    ));

    let mut transaction = state.pool.begin().await.map_err(StoreError::from)?;

    if let Some(key) = &idempotency_key {
        idempotency::lock_key(&mut *transaction, &owner, key).await?;
        let ttl = state.limits.idempotency_ttl.as_secs_f64();
        if let Some(stored) = idempotency::find(&mut *transaction, &owner, key, ttl).await? {
            if stored.request_hash != request_hash {
                return Err(ApiError::Validation(vec![FieldError {
                    pointer: String::new(),
                    detail: format!(
                        "Idempotency-Key {key:?} was already used with a different body; use a new key for a different request"
                    ),
                }]));
            }
            tracing::info!(distribution.id = %stored.distribution_id, owner = %owner, "idempotent replay of a create");
            return Ok(replayed_response(stored.distribution_id, stored.response));
        }
    }

    distributions::lock_owner(&mut *transaction, &owner).await?;
    let live = distributions::count_live(&mut *transaction, &owner).await?;
    let limit = state.limits.max_distributions_per_owner;
    if live >= limit {
        return Err(ApiError::QuotaExceeded(format!(
            "the owner already has {live} live distributions and the limit is {limit} (MAX_DISTRIBUTIONS_PER_OWNER); delete one first"
        )));
    }

    let id = Uuid::now_v7();
    // Fixed before any CloudFront call and reused by every retry, so a retry can only ever
    // find the distribution an earlier attempt created.
    let caller_reference = format!("cloudfront-lifecycle-{id}");
    let row =
        distributions::insert(&mut *transaction, id, &owner, &spec, &caller_reference).await?;

    if let Some(key) = &idempotency_key {
        let body = serde_json::to_value(DistributionResource::from(row.clone()))
            .expect("a resource always serializes");
        let stored = serde_json::json!({"etag": etag_of(&row), "body": body});
        idempotency::insert(&mut *transaction, &owner, key, &request_hash, id, &stored).await?;
    }
    transaction.commit().await.map_err(StoreError::from)?;

    state.wake_workers();
    tracing::info!(distribution.id = %id, owner = %owner, "creation requested");
    Ok(resource_response(StatusCode::ACCEPTED, row, true))
}

/// The largest Idempotency-Key accepted, in bytes.
const MAX_IDEMPOTENCY_KEY_BYTES: usize = 255;

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let mut values = headers.get_all("idempotency-key").iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ApiError::InvalidParameter(
            "send Idempotency-Key once; this request has several".to_owned(),
        ));
    }
    let key = value
        .to_str()
        .ok()
        .filter(|key| {
            !key.is_empty()
                && key.len() <= MAX_IDEMPOTENCY_KEY_BYTES
                && key.bytes().all(|b| b.is_ascii_graphic())
        })
        .ok_or_else(|| {
            ApiError::InvalidParameter(format!(
                "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_BYTES} printable ASCII characters without spaces"
            ))
        })?;
    Ok(Some(key.to_owned()))
}

/// Rebuilds the response the first request with this Idempotency-Key got.
fn replayed_response(id: Uuid, stored: serde_json::Value) -> Response {
    let etag = stored["etag"].as_str().unwrap_or_default().to_owned();
    let mut response = (StatusCode::ACCEPTED, axum::Json(stored["body"].clone())).into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    if let Ok(value) = HeaderValue::from_str(&format!("/v1/distributions/{id}")) {
        headers.insert(header::LOCATION, value);
    }
    headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    response
}

fn etag_of(row: &Distribution) -> String {
    format!("\"{}\"", row.version)
}

/// Reads `If-Match`: `None` when absent or `*`, else the version it names. An ETag this
/// service did not issue can never match, so it becomes a version no row has.
fn expected_version(headers: &HeaderMap) -> Option<i64> {
    let Ok(value) = headers.get(header::IF_MATCH)?.to_str() else {
        // Not visible ASCII, so not an ETag this service issued.
        return Some(-1);
    };
    let value = value.trim();
    if value == "*" {
        return None;
    }
    let first = value.split(',').next().unwrap_or("").trim();
    let first = first.strip_prefix("W/").unwrap_or(first);
    Some(
        first
            .strip_prefix('"')
            .and_then(|rest| rest.strip_suffix('"'))
            .and_then(|version| version.parse::<i64>().ok())
            .unwrap_or(-1),
    )
}

/// Get a distribution
#[utoipa::path(
    get,
    path = "/v1/distributions/{id}",
    tag = "distributions",
    operation_id = "getDistribution",
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
    operation_id = "listDistributions",
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
    // Rows are created after 1970, so an earlier position is forged; Postgres would also
    // reject times before 4713 BC that chrono still accepts.
    if micros < 0 {
        return Err(invalid());
    }
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

/// Update a distribution
///
/// Records the requested configuration and returns at once. The worker sends it to
/// CloudFront with the whole current config and a fresh ETag (CloudFront's update replaces
/// the config), waits until CloudFront reports Deployed, and shows the outcome in the
/// resource: `updating`, then `deployed` (or `failed` with `last_error`).
#[utoipa::path(
    patch,
    path = "/v1/distributions/{id}",
    tag = "distributions",
    operation_id = "updateDistribution",
    request_body = DistributionPatch,
    params(
        ("id" = Uuid, Path, description = "The distribution's id"),
        ("If-Match" = Option<String>, Header, description = "The ETag last read; the update is rejected with 412 if the resource has changed since"),
    ),
    responses(
        (status = 202, description = "Update recorded; it continues in the background", body = DistributionResource,
            headers(("ETag" = String, description = "The resource's version"))),
        (status = 400, description = "Malformed JSON or a non-UUID id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such distribution for this owner", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The distribution is being deleted or is deleted", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "If-Match names an older version", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn update(
    State(state): State<AppState>,
    Owner(owner): Owner,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    Json(patch): Json<DistributionPatch>,
) -> Result<Response, ApiError> {
    let expected = expected_version(&headers);
    let (row, changed) =
        distributions::request_update(&state.pool, id, &owner, &patch, expected).await?;
    if changed {
        tracing::info!(distribution.id = %id, owner = %owner, spec_version = row.spec_version, "update requested");
        state.wake_workers();
    }
    Ok(resource_response(StatusCode::ACCEPTED, row, false))
}

/// Delete a distribution
///
/// Records the request and returns at once. The worker disables the distribution, waits
/// until CloudFront reports it Deployed and disabled, then deletes it. Repeating the request
/// is harmless.
#[utoipa::path(
    delete,
    path = "/v1/distributions/{id}",
    tag = "distributions",
    operation_id = "deleteDistribution",
    params(
        ("id" = Uuid, Path, description = "The distribution's id"),
        ("If-Match" = Option<String>, Header, description = "The ETag last read; the deletion is rejected with 412 if the resource has changed since"),
        DeleteParams,
    ),
    responses(
        (status = 202, description = "Deletion recorded; it continues in the background", body = DistributionResource,
            headers(("ETag" = String, description = "The resource's version"))),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such distribution for this owner", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "If-Match names an older version", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn delete(
    State(state): State<AppState>,
    Owner(owner): Owner,
    Path(id): Path<Uuid>,
    Query(params): Query<DeleteParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let intent = if params.retain {
        Intent::Retain
    } else {
        Intent::Delete
    };
    let expected = expected_version(&headers);
    let row = distributions::request_delete(&state.pool, id, &owner, intent, expected).await?;
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
