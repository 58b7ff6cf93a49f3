//! `POST /v1/distributions`, with Idempotency-Key and the owner quota.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::api::AppState;
use crate::api::auth::Owner;
use crate::api::error::{ApiError, Problem};
use crate::api::extract::Json;
use crate::spec::{DistributionSpec, FieldError};
use crate::store::distributions::{self};
use crate::store::{StoreError, idempotency};

use super::{DistributionResource, etag_of, resource_response};

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
