//! `POST /v1/distributions/adopt`: take over a distribution that exists in CloudFront but
//! was not created through this API.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use utoipa::ToSchema;

use super::AppState;
use super::auth::Admin;
use super::distributions::{DistributionResource, resource_response};
use super::error::{ApiError, Problem};
use super::extract::Json;
use crate::adopt::{ADOPTED_REASON, AdoptError, AdoptRequest, adopt as adopt_distribution};
use crate::lifecycle::ErrorClass;
use crate::spec::FieldError;

/// Maximum length of an owner, in characters.
const MAX_OWNER_CHARS: usize = 255;

/// A distribution to adopt.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdoptBody {
    /// The CloudFront distribution id.
    #[schema(example = "E2QWRUHAPOMQZL")]
    pub cloudfront_id: String,
    /// The owner of the new row; the caller when absent.
    #[serde(default)]
    pub owner: Option<String>,
}

/// Adopt an existing CloudFront distribution
///
/// Reads the distribution from CloudFront and records it as a managed distribution with its
/// current status (`deployed`, `deploying`, or `disabled` and retained when it is disabled),
/// its configuration as far as the API can describe it, and its own CallerReference. The
/// distribution is tagged with the new row's id. From then on it is read, updated and
/// deleted like any other. Needs a token with the admin scope (AUTH_ADMIN_SCOPE).
#[utoipa::path(
    post,
    path = "/v1/distributions/adopt",
    tag = "distributions",
    operation_id = "adoptDistribution",
    request_body = AdoptBody,
    responses(
        (status = 201, description = "Adopted", body = DistributionResource,
            headers(
                ("ETag" = String, description = "The resource's version"),
                ("Location" = String, description = "The new resource"),
            )),
        (status = 400, description = "The body is not valid JSON for this operation", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token lacks the admin scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No CloudFront distribution has this id", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already managed; the detail names the existing distribution", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The CloudFront id or the owner is invalid", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "CloudFront could not be read or tagged; retry later", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn adopt(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Json(body): Json<AdoptBody>,
) -> Result<Response, ApiError> {
    validate(&body)?;
    let owner = body.owner.as_deref().unwrap_or(&caller);
    let request = AdoptRequest {
        cloudfront_id: &body.cloudfront_id,
        owner,
        reason: ADOPTED_REASON,
        delete: false,
        require_disabled: false,
    };
    let row = adopt_distribution(&state.pool, &state.cloudfront, None, &request)
        .await
        .map_err(into_api_error)?;
    tracing::info!(distribution.id = %row.id, cloudfront.id = %body.cloudfront_id, owner = %owner, caller = %caller, "adoption requested");
    if row.next_check_at.is_some() {
        state.wake_workers();
    }
    Ok(resource_response(StatusCode::CREATED, row, true))
}

/// Checks the body. A CloudFront id is upper-case letters and digits.
fn validate(body: &AdoptBody) -> Result<(), ApiError> {
    let mut errors = Vec::new();
    let id = &body.cloudfront_id;
    if id.is_empty()
        || id.len() > 64
        || !id
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    {
        errors.push(FieldError {
            pointer: "/cloudfront_id".to_owned(),
            detail: "must be a CloudFront distribution id such as E2QWRUHAPOMQZL".to_owned(),
        });
    }
    if let Some(owner) = &body.owner
        && (owner.trim().is_empty() || owner.chars().count() > MAX_OWNER_CHARS)
    {
        errors.push(FieldError {
            pointer: "/owner".to_owned(),
            detail: format!("must be 1 to {MAX_OWNER_CHARS} characters, not only spaces"),
        });
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Validation(errors))
    }
}

fn into_api_error(error: AdoptError) -> ApiError {
    match error {
        AdoptError::NotFound(id) => ApiError::NoSuchCloudFrontDistribution(id),
        conflict @ (AdoptError::AlreadyManaged { .. }
        | AdoptError::CallerReferenceTaken { .. }
        | AdoptError::Enabled(_)
        | AdoptError::Concurrent(_)) => ApiError::Conflict(conflict.to_string()),
        AdoptError::CloudFront(call) => {
            tracing::warn!(code = %call.code, message = %call.message, "adoption failed on a CloudFront call");
            let hint = match call.class {
                ErrorClass::Throttled | ErrorClass::Transient => "retry later",
                _ => "check the service's CloudFront permissions, then retry",
            };
            ApiError::Unavailable(format!(
                "CloudFront returned {} while the distribution was read or tagged; {hint}",
                call.code
            ))
        }
        AdoptError::Store(error) => ApiError::Store(error),
    }
}
