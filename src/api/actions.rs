//! Operator actions on a distribution: `POST /v1/distributions/{id}/retry`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use uuid::Uuid;

use super::AppState;
use super::auth::Owner;
use super::distributions::{DistributionResource, resource_response};
use super::error::{ApiError, Problem};
use super::extract::Path;
use crate::store::distributions::{self, RetryOutcome};

/// Retry a failed distribution
///
/// Puts a `failed` distribution back into its lifecycle once the cause is fixed (for example
/// an IAM policy, a conflicting alias or the account quota). It goes back to `creating` if it
/// never got a CloudFront id, else to `deploying` or `disabling` as its intent requires, and
/// the worker picks it up at once.
#[utoipa::path(
    post,
    path = "/v1/distributions/{id}/retry",
    tag = "distributions",
    params(("id" = Uuid, Path, description = "The distribution's id")),
    responses(
        (status = 202, description = "Back in the lifecycle; it continues in the background", body = DistributionResource,
            headers(("ETag" = String, description = "The resource's version"))),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such distribution for this owner", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The distribution is not failed", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn retry(
    State(state): State<AppState>,
    Owner(owner): Owner,
    Path(id): Path<Uuid>,
) -> Result<Response, ApiError> {
    match distributions::retry(&state.pool, id, Some(&owner)).await? {
        RetryOutcome::Retried(row) => {
            tracing::info!(distribution.id = %id, owner = %owner, to = %row.status, "retry requested");
            state.wake_workers();
            Ok(resource_response(StatusCode::ACCEPTED, row, false))
        }
        RetryOutcome::NotFailed(row) => Err(ApiError::Conflict(format!(
            "distribution {id} is {}, not failed; only a failed distribution can be retried",
            row.status
        ))),
        RetryOutcome::NotFound => Err(ApiError::NotFound),
    }
}
