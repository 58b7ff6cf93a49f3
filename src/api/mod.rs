//! The REST API: routes, shared state, middleware and the OpenAPI document.

pub mod actions;
pub mod adopt;
pub mod auth;
pub mod distributions;
mod document;
pub mod error;
pub mod events;
pub mod extract;
pub mod health;
pub mod metrics;
pub mod rate_limit;
mod security;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, Request, header};
use metrics_exporter_prometheus::PrometheusHandle;
use sqlx::PgPool;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::cloudfront::{Backend, CloudFront};
use crate::store::notify::WorkNotifier;
use crate::store::reads::ReadConnections;
use auth::Authenticator;
use rate_limit::OwnerRateLimiter;

/// Shared state every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub authenticator: Arc<Authenticator>,
    pub backend: Backend,
    /// For operator requests that read CloudFront directly, such as adoption.
    pub cloudfront: CloudFront,
    pub notifier: WorkNotifier,
    pub metrics: Option<PrometheusHandle>,
    pub events: crate::live::EventHub,
    /// Per-owner request limit; `None` when disabled.
    pub rate_limiter: Option<Arc<OwnerRateLimiter>>,
    /// Connections for reads of one distribution; `None` sends them through `pool`.
    pub reads: Option<ReadConnections>,
    pub limits: ApiLimits,
}

/// Per-owner limits of the API.
#[derive(Clone, Debug)]
pub struct ApiLimits {
    /// Distributions an owner may have that are not deleted.
    pub max_distributions_per_owner: i64,
    /// How long an Idempotency-Key is remembered.
    pub idempotency_ttl: Duration,
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits {
            max_distributions_per_owner: 100,
            idempotency_ttl: Duration::from_secs(24 * 3600),
        }
    }
}

impl AppState {
    /// Tells idle workers (on every replica) that there is new work.
    pub fn wake_workers(&self) {
        self.notifier.wake();
    }
}

/// HTTP settings that shape the middleware.
#[derive(Clone, Debug)]
pub struct HttpSettings {
    /// Browser origins allowed to call the API; empty allows none.
    pub cors_allowed_origins: Vec<String>,
    pub body_limit_bytes: usize,
    pub request_timeout: Duration,
    pub limits: ApiLimits,
    /// Sustained requests per second allowed to each owner; 0 disables the limit.
    pub rate_limit_per_second: u32,
    /// Requests an owner may send at once before the sustained rate applies.
    pub rate_limit_burst: u32,
    /// `max-age` of the Strict-Transport-Security header in seconds; 0 sends no header.
    pub hsts_max_age_seconds: u64,
    /// Postgres connections, besides the pool, for `GET /v1/distributions/{id}`; 0 opens
    /// none and sends those reads through the pool.
    pub read_connections: u32,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            cors_allowed_origins: Vec::new(),
            body_limit_bytes: 64 * 1024,
            request_timeout: Duration::from_secs(15),
            limits: ApiLimits::default(),
            rate_limit_per_second: 10,
            rate_limit_burst: 50,
            hsts_max_age_seconds: 0,
            read_connections: 10,
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "cloudfront-lifecycle",
        description = "Creates CloudFront distributions on behalf of users and finishes their slow deletion in the background. Every error is an RFC 9457 problem document (application/problem+json).",
    ),
    modifiers(&BearerAuth),
    components(schemas(error::Problem, crate::spec::FieldError)),
    tags(
        (name = "distributions", description = "Managed CloudFront distributions"),
        (name = "operations", description = "Probes and metrics for operators"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(distributions::create, distributions::list))
        .routes(routes!(
            distributions::get,
            distributions::update,
            distributions::delete
        ))
        .routes(routes!(actions::retry))
        .routes(routes!(adopt::adopt))
        .routes(routes!(events::list))
        .routes(routes!(events::watch))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
}

/// The routes and the complete OpenAPI document that describes them.
fn api_parts() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut document) = api_router().split_for_parts();
    document::complete(&mut document);
    (router, document)
}

/// The OpenAPI document the code describes; `openapi/openapi.json` must equal it.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_parts().1
}

/// The OpenAPI document as committed: pretty JSON with a trailing newline.
pub fn openapi_json() -> String {
    let mut text = openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serializes");
    text.push('\n');
    text
}

/// Builds the whole HTTP application.
pub fn router(state: AppState, settings: &HttpSettings) -> Router {
    let (router, document) = api_parts();
    let document = Arc::new(document);

    let request_id = HeaderName::from_static("x-request-id");
    let trace = TraceLayer::new_for_http()
        .make_span_with(|request: &Request<_>| {
            let request_id = request
                .headers()
                .get("x-request-id")
                .and_then(|value| value.to_str().ok())
                .unwrap_or("");
            tracing::info_span!(
                "request",
                http.method = %request.method(),
                http.path = %request.uri().path(),
                request_id,
                owner = tracing::field::Empty,
            )
        })
        // One line per request, carrying the span's request_id and owner: INFO for API
        // calls, DEBUG for the probes and scrapes that arrive every few seconds.
        .on_response(
            |response: &axum::http::Response<_>, latency: Duration, _span: &tracing::Span| {
                let status = response.status().as_u16();
                let latency_ms = latency.as_secs_f64() * 1000.0;
                if response.extensions().get::<health::Probe>().is_some() {
                    tracing::debug!(status, latency_ms, "finished processing request");
                } else {
                    tracing::info!(status, latency_ms, "finished processing request");
                }
            },
        );

    router
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let document = document.clone();
                async move { axum::Json(document.as_ref().clone()) }
            }),
        )
        .route("/metrics", axum::routing::get(health::metrics))
        .merge(security::docs_router())
        .route_layer(axum::middleware::from_fn(metrics::tag_route))
        .fallback(error::route_not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .with_state(state)
        .layer(DefaultBodyLimit::max(settings.body_limit_bytes))
        .layer(security::timeout_layer(settings.request_timeout))
        .layer(cors(settings))
        .layer(security::headers_layer(settings))
        .layer(axum::middleware::from_fn(metrics::record_request))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(axum::middleware::from_fn(health::mark_probe))
        .layer(trace)
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}

fn cors(settings: &HttpSettings) -> CorsLayer {
    let origins: Vec<HeaderValue> = settings
        .cors_allowed_origins
        .iter()
        .filter_map(|origin| HeaderValue::from_str(origin).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_MATCH,
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([
            header::ETAG,
            header::LOCATION,
            HeaderName::from_static("x-request-id"),
        ])
        .max_age(Duration::from_secs(600))
}
