//! Probes and metrics for the operators of the service.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::error::ApiError;

/// Marks a response to a probe or a metrics scrape, so its request is logged at DEBUG.
#[derive(Clone, Copy, Debug)]
pub struct Probe;

/// Tags the responses of `/healthz`, `/readyz` and `/metrics` with [`Probe`].
pub async fn mark_probe(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let is_probe = matches!(request.uri().path(), "/healthz" | "/readyz" | "/metrics");
    let mut response = next.run(request).await;
    if is_probe {
        response.extensions_mut().insert(Probe);
    }
    response
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: String,
}

/// Liveness: the process is up
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process is up", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".to_owned(),
    })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    #[schema(example = "ready")]
    pub status: String,
    /// `simulator` or `aws`.
    pub cloudfront_backend: String,
    /// True when CloudFront is simulated: this service manages no real distributions.
    pub simulated: bool,
}

/// Readiness: the database responds
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready to serve", body = Readiness),
        (status = 503, description = "The database does not answer", body = super::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Readiness>, ApiError> {
    sqlx::query_scalar!("select 1 as \"one!\"")
        .fetch_one(&state.pool)
        .await
        .map_err(|error| {
            tracing::warn!(%error, "readiness check failed: the database does not respond");
            ApiError::Unavailable("the database does not respond; retry later".to_owned())
        })?;
    Ok(Json(Readiness {
        status: "ready".to_owned(),
        cloudfront_backend: state.backend.name().to_owned(),
        simulated: state.backend.is_simulated(),
    }))
}

/// Prometheus metrics in the text exposition format.
pub async fn metrics(State(state): State<AppState>) -> Response {
    match &state.metrics {
        Some(handle) => {
            crate::telemetry::refresh_table_gauges(&state.pool).await;
            (
                StatusCode::OK,
                [("content-type", "text/plain; version=0.0.4")],
                handle.render(),
            )
                .into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
