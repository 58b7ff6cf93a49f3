//! Request metrics by route template (`/v1/distributions/{id}`, never the raw path, so the
//! number of series stays bounded) and status.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;

/// The route template a response was produced by, passed from the inner middleware (which
/// runs after routing) to the outer one (which also sees timeouts and unmatched paths).
#[derive(Clone)]
struct RouteTemplate(String);

/// Route-level middleware: remembers which route template matched.
pub async fn tag_route(matched: Option<MatchedPath>, request: Request, next: Next) -> Response {
    let route = matched.map(|path| path.as_str().to_owned());
    let mut response = next.run(request).await;
    if let Some(route) = route {
        response.extensions_mut().insert(RouteTemplate(route));
    }
    response
}

/// Outer middleware: counts every request and records its latency until the response head
/// is ready. For a watch stream that is the time to open it, not its lifetime.
pub async fn record_request(request: Request, next: Next) -> Response {
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let route = response
        .extensions()
        .get::<RouteTemplate>()
        .map(|route| route.0.clone())
        .unwrap_or_else(|| "unmatched".to_owned());
    let status = response.status().as_u16().to_string();

    metrics::histogram!(
        "cloudfront_lifecycle_http_request_duration_seconds",
        "method" => method.clone(),
        "route" => route.clone(),
    )
    .record(started.elapsed().as_secs_f64());
    metrics::counter!(
        "cloudfront_lifecycle_http_requests_total",
        "method" => method,
        "route" => route,
        "status" => status,
    )
    .increment(1);
    response
}
