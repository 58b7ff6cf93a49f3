//! `PATCH` and `DELETE /v1/distributions/{id}`, both guarded by If-Match.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::api::AppState;
use crate::api::auth::Owner;
use crate::api::error::{ApiError, Problem};
use crate::api::extract::{Json, Path, Query};
use crate::lifecycle::Intent;
use crate::spec::DistributionPatch;
use crate::store::distributions::{self};

use super::{DistributionResource, resource_response};

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
