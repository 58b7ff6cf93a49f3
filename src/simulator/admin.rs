//! Admin API for fault injection and inspection, served next to the CloudFront routes.
//!
//! All routes live under `/__simulator/`, take and return JSON, and mirror methods
//! of [`Simulator`]. Durations are whole milliseconds. Operation names are
//! CloudFront's (`CreateDistribution`, `CreateDistributionWithTags`,
//! `GetDistribution`, `GetDistributionConfig`, `UpdateDistribution`,
//! `DeleteDistribution`, `ListDistributions`, `TagResource`, `UntagResource`,
//! `ListTagsForResource`); a missing or null `operation` means every operation.
//! Errors come back as `{"error": "...", "code": "..."}` with a 4xx status.
//!
//! Inspection:
//! - `GET /__simulator/distributions`: every distribution (id, arn, domain_name,
//!   caller_reference, enabled, status, etag, comment, aliases, tags, last_modified,
//!   deployed_at), ordered by id.
//! - `GET /__simulator/calls`: every CloudFront call, oldest first, with operation,
//!   distribution_id, if_match, http_status, error_code, time, and the
//!   distribution's `enabled` and `status` when the call arrived.
//! - `GET /__simulator/calls/counts`: calls per operation, e.g. `{"GetDistribution": 4}`.
//! - `POST /__simulator/reset`: delete all distributions, disarm all faults, clear
//!   the call log, restore the deploy time of the settings. Returns 204.
//!
//! Faults (each returns 204):
//! - `POST /__simulator/faults/errors`, body
//!   `{"operation": "UpdateDistribution", "count": 3, "status": 400, "code": "Throttling", "message": "Rate exceeded"}`:
//!   the next `count` calls fail with that error before doing anything.
//! - `POST /__simulator/faults/lost-responses`, body
//!   `{"operation": "CreateDistribution", "count": 1, "mode": "internal_error"}`:
//!   the next `count` successful calls apply their change, then return 500
//!   InternalError (`internal_error`) or cut the response off mid-body
//!   (`drop_connection`).
//! - `PUT /__simulator/faults/latency`, body `{"latency_ms": 250}`: delay every call.
//! - `POST /__simulator/faults/stale-reads`, body
//!   `{"distribution_id": "E123...", "count": 2}`: the next `count`
//!   GetDistribution/GetDistributionConfig reads return the version before the last
//!   change (its status, enabled flag and ETag).
//! - `PUT /__simulator/faults/rate-limits`, body
//!   `{"mutating": {"rate_per_second": 1.0, "burst": 2}, "read": null}`: token buckets;
//!   calls above them get 400 Throttling "Rate exceeded".
//! - `DELETE /__simulator/faults`: disarm every fault.
//!
//! Deploy time (each returns 204):
//! - `PUT /__simulator/deploy-time`, body `{"fixed": 30000}` or
//!   `{"random": {"min": 60000, "median": 300000, "max": 2400000, "seed": 7}}`:
//!   deploy time of future changes.
//! - `PUT /__simulator/distributions/{id}/deploy-time`, same body: deploy time of
//!   future changes to one distribution.
//!
//! Out-of-band changes, as another actor would make them (not in the call log):
//! - `POST /__simulator/distributions`, body
//!   `{"caller_reference": "ref-1", "enabled": false, "comment": "made by hand", "aliases": [], "tags": [{"key": "team", "value": "web"}], "age_ms": 600000}`
//!   (every field optional): create a distribution. Returns 201 and the distribution.
//! - `PATCH /__simulator/distributions/{id}`, body `{"enabled": true, "comment": "x"}`:
//!   change it; a new ETag and a new deploy, even with an empty body `{}`.
//! - `DELETE /__simulator/distributions/{id}`: delete it whatever its state. Returns 204.
//!
//! Example:
//! ```text
//! curl -X POST http://127.0.0.1:PORT/__simulator/faults/errors \
//!   -H 'content-type: application/json' \
//!   -d '{"count": 5, "status": 400, "code": "Throttling", "message": "Rate exceeded"}'
//! curl http://127.0.0.1:PORT/__simulator/calls
//! ```

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::Simulator;
use super::deploy::DeployTime;
use super::error::ApiError;
use super::external::{ExternalChange, ExternalCreate};
use super::faults::{InjectedError, LostResponse, RateLimits, StaleReads};

pub fn router(simulator: Simulator) -> Router {
    Router::new()
        .route(
            "/__simulator/distributions",
            get(list_distributions).post(create_distribution),
        )
        .route(
            "/__simulator/distributions/{id}",
            patch(change_distribution).delete(delete_distribution),
        )
        .route(
            "/__simulator/distributions/{id}/deploy-time",
            put(set_distribution_deploy_time),
        )
        .route("/__simulator/deploy-time", put(set_deploy_time))
        .route("/__simulator/calls", get(calls))
        .route("/__simulator/calls/counts", get(call_counts))
        .route("/__simulator/reset", post(reset))
        .route("/__simulator/faults", delete(clear_faults))
        .route("/__simulator/faults/errors", post(inject_error))
        .route("/__simulator/faults/lost-responses", post(lose_responses))
        .route("/__simulator/faults/latency", put(set_latency))
        .route("/__simulator/faults/stale-reads", post(serve_stale_reads))
        .route("/__simulator/faults/rate-limits", put(set_rate_limits))
        .with_state(simulator)
}

fn admin_error(error: ApiError) -> Response {
    let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::BAD_REQUEST);
    (
        status,
        Json(json!({"error": error.message, "code": error.code})),
    )
        .into_response()
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({"error": message}))).into_response()
}

async fn list_distributions(State(simulator): State<Simulator>) -> Response {
    Json(simulator.distributions()).into_response()
}

async fn create_distribution(
    State(simulator): State<Simulator>,
    Json(request): Json<ExternalCreate>,
) -> Response {
    match simulator.external_create(request) {
        Ok(view) => (StatusCode::CREATED, Json(view)).into_response(),
        Err(error) => admin_error(error),
    }
}

async fn change_distribution(
    State(simulator): State<Simulator>,
    Path(id): Path<String>,
    Json(change): Json<ExternalChange>,
) -> Response {
    match simulator.external_change(&id, change) {
        Ok(view) => Json(view).into_response(),
        Err(error) => admin_error(error),
    }
}

async fn delete_distribution(
    State(simulator): State<Simulator>,
    Path(id): Path<String>,
) -> Response {
    match simulator.external_delete(&id) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => admin_error(error),
    }
}

async fn set_deploy_time(
    State(simulator): State<Simulator>,
    Json(deploy_time): Json<DeployTime>,
) -> Response {
    if let Err(message) = deploy_time.validate() {
        return bad_request(message);
    }
    simulator.set_deploy_time(deploy_time);
    StatusCode::NO_CONTENT.into_response()
}

async fn set_distribution_deploy_time(
    State(simulator): State<Simulator>,
    Path(id): Path<String>,
    Json(deploy_time): Json<DeployTime>,
) -> Response {
    if let Err(message) = deploy_time.validate() {
        return bad_request(message);
    }
    match simulator.set_distribution_deploy_time(&id, deploy_time) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => admin_error(error),
    }
}

async fn calls(State(simulator): State<Simulator>) -> Response {
    Json(simulator.calls()).into_response()
}

async fn call_counts(State(simulator): State<Simulator>) -> Response {
    Json(simulator.call_counts()).into_response()
}

async fn reset(State(simulator): State<Simulator>) -> StatusCode {
    simulator.reset();
    StatusCode::NO_CONTENT
}

async fn clear_faults(State(simulator): State<Simulator>) -> StatusCode {
    simulator.clear_faults();
    StatusCode::NO_CONTENT
}

async fn inject_error(
    State(simulator): State<Simulator>,
    Json(error): Json<InjectedError>,
) -> Response {
    if StatusCode::from_u16(error.status).is_err() || error.status < 400 {
        return bad_request(format!(
            "status must be an HTTP error status (400-599), got {}",
            error.status
        ));
    }
    simulator.inject_error(error);
    StatusCode::NO_CONTENT.into_response()
}

async fn lose_responses(
    State(simulator): State<Simulator>,
    Json(lost): Json<LostResponse>,
) -> StatusCode {
    simulator.lose_responses(lost);
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct LatencyRequest {
    latency_ms: u64,
}

async fn set_latency(
    State(simulator): State<Simulator>,
    Json(request): Json<LatencyRequest>,
) -> StatusCode {
    simulator.set_latency(Duration::from_millis(request.latency_ms));
    StatusCode::NO_CONTENT
}

async fn serve_stale_reads(
    State(simulator): State<Simulator>,
    Json(stale): Json<StaleReads>,
) -> StatusCode {
    simulator.serve_stale_reads(stale);
    StatusCode::NO_CONTENT
}

async fn set_rate_limits(
    State(simulator): State<Simulator>,
    Json(limits): Json<RateLimits>,
) -> Response {
    for limit in [limits.mutating, limits.read].into_iter().flatten() {
        if !(limit.rate_per_second.is_finite() && limit.rate_per_second >= 0.0) {
            return bad_request(format!(
                "rate_per_second must be a finite number >= 0, got {}",
                limit.rate_per_second
            ));
        }
    }
    simulator.set_rate_limits(limits);
    StatusCode::NO_CONTENT.into_response()
}
