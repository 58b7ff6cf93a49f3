//! Response headers that limit what a browser does with the API's responses, the request
//! timeout, and the interactive reference page at `/docs`.

use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::set_header::SetResponseHeaderLayer;
use utoipa_swagger_ui::{Config, SwaggerUi};

use super::error::ApiError;
use super::{AppState, HttpSettings};

/// The policy for every API response, because JSON needs no scripts, styles or frames.
const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

/// The policy for the reference page, which loads its scripts, styles and the OpenAPI
/// document from this service only. Swagger UI sets inline `style` attributes and uses
/// `data:` images for its icons.
const DOCS_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// Adds the security headers to every response. The Content-Security-Policy is only added
/// when the route has not set its own, which only `/docs` does.
pub fn headers_layer(
    settings: &HttpSettings,
) -> axum::middleware::MapResponseLayer<
    impl Fn(Response) -> std::future::Ready<Response> + Clone + use<>,
    (),
    (),
> {
    let hsts = (settings.hsts_max_age_seconds > 0).then(|| {
        HeaderValue::from_str(&format!(
            "max-age={}; includeSubDomains",
            settings.hsts_max_age_seconds
        ))
        .expect("a number makes a valid header value")
    });
    middleware::map_response(move |mut response: Response| {
        let headers = response.headers_mut();
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
            headers.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(API_CSP),
            );
        }
        if let Some(hsts) = &hsts {
            headers.insert(header::STRICT_TRANSPORT_SECURITY, hsts.clone());
        }
        std::future::ready(response)
    })
}

type ResponseFuture = std::pin::Pin<Box<dyn Future<Output = Response> + Send>>;

/// Responds to a request that runs past `limit` with a `request-timeout` problem. The handler's
/// future is dropped at that point, so work it had not committed yet does not happen.
pub fn timeout_layer(
    limit: Duration,
) -> axum::middleware::FromFnLayer<impl Fn(Request, Next) -> ResponseFuture + Clone, (), (Request,)>
{
    middleware::from_fn(move |request: Request, next: Next| {
        Box::pin(async move {
            match tokio::time::timeout(limit, next.run(request)).await {
                Ok(response) => response,
                Err(_) => ApiError::RequestTimeout(limit).into_response(),
            }
        }) as ResponseFuture
    })
}

/// Swagger UI (bundled into the binary, so the page works offline) reading `/openapi.json`.
pub fn docs_router() -> Router<AppState> {
    // The validator badge would send the document to an external service, so it is off.
    let config = Config::from("/openapi.json").validator_url("none");
    Router::from(SwaggerUi::new("/docs").config(config)).layer(SetResponseHeaderLayer::overriding(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(DOCS_CSP),
    ))
}
