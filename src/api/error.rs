//! The API's one error type, rendered as RFC 9457 problem details (`application/problem+json`).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::spec::FieldError;
use crate::store::StoreError;

/// Every error the API returns.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("no such distribution")]
    NotFound,
    #[error("no CloudFront distribution has id {0}")]
    NoSuchCloudFrontDistribution(String),
    #[error("no such route")]
    RouteNotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    InvalidParameter(String),
    #[error("{0}")]
    MalformedBody(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("the request has invalid fields")]
    Validation(Vec<FieldError>),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    QuotaExceeded(String),
    #[error("{0}")]
    PreconditionFailed(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Unavailable(String),
    #[error("too many requests for this owner; retry after {retry_after} s")]
    RateLimited { retry_after: u64 },
    #[error("the request took longer than {0:?} and was abandoned")]
    RequestTimeout(std::time::Duration),
}

/// The problem types clients can switch on; each `type` URI is stable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemType {
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    InvalidParameter,
    MalformedBody,
    UnsupportedMediaType,
    PayloadTooLarge,
    ValidationFailed,
    Conflict,
    QuotaExceeded,
    PreconditionFailed,
    Internal,
    Unavailable,
    RateLimited,
    RequestTimeout,
}

impl ProblemType {
    pub const ALL: [ProblemType; 16] = [
        ProblemType::Unauthorized,
        ProblemType::Forbidden,
        ProblemType::NotFound,
        ProblemType::MethodNotAllowed,
        ProblemType::InvalidParameter,
        ProblemType::MalformedBody,
        ProblemType::UnsupportedMediaType,
        ProblemType::PayloadTooLarge,
        ProblemType::ValidationFailed,
        ProblemType::Conflict,
        ProblemType::QuotaExceeded,
        ProblemType::PreconditionFailed,
        ProblemType::Internal,
        ProblemType::Unavailable,
        ProblemType::RateLimited,
        ProblemType::RequestTimeout,
    ];

    pub fn slug(self) -> &'static str {
        match self {
            ProblemType::Unauthorized => "unauthorized",
            ProblemType::Forbidden => "forbidden",
            ProblemType::NotFound => "not-found",
            ProblemType::MethodNotAllowed => "method-not-allowed",
            ProblemType::InvalidParameter => "invalid-parameter",
            ProblemType::MalformedBody => "malformed-body",
            ProblemType::UnsupportedMediaType => "unsupported-media-type",
            ProblemType::PayloadTooLarge => "payload-too-large",
            ProblemType::ValidationFailed => "validation-failed",
            ProblemType::Conflict => "conflict",
            ProblemType::QuotaExceeded => "quota-exceeded",
            ProblemType::PreconditionFailed => "precondition-failed",
            ProblemType::Internal => "internal",
            ProblemType::Unavailable => "unavailable",
            ProblemType::RateLimited => "rate-limited",
            ProblemType::RequestTimeout => "request-timeout",
        }
    }

    pub fn uri(self) -> String {
        format!("urn:cloudfront-lifecycle:problem:{}", self.slug())
    }

    pub fn title(self) -> &'static str {
        match self {
            ProblemType::Unauthorized => "Missing or invalid bearer token",
            ProblemType::Forbidden => "Permission missing",
            ProblemType::NotFound => "Not found",
            ProblemType::MethodNotAllowed => "Method not allowed",
            ProblemType::InvalidParameter => "Invalid path or query parameter",
            ProblemType::MalformedBody => "Malformed request body",
            ProblemType::UnsupportedMediaType => "Unsupported media type",
            ProblemType::PayloadTooLarge => "Request body too large",
            ProblemType::ValidationFailed => "Invalid fields",
            ProblemType::Conflict => "Conflicts with the resource's state",
            ProblemType::QuotaExceeded => "Quota exceeded",
            ProblemType::PreconditionFailed => "The resource has changed",
            ProblemType::Internal => "Internal error",
            ProblemType::Unavailable => "Service unavailable",
            ProblemType::RateLimited => "Too many requests",
            ProblemType::RequestTimeout => "Request timed out",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            ProblemType::Unauthorized => StatusCode::UNAUTHORIZED,
            ProblemType::Forbidden => StatusCode::FORBIDDEN,
            ProblemType::NotFound => StatusCode::NOT_FOUND,
            ProblemType::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ProblemType::InvalidParameter | ProblemType::MalformedBody => StatusCode::BAD_REQUEST,
            ProblemType::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ProblemType::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProblemType::ValidationFailed => StatusCode::UNPROCESSABLE_ENTITY,
            ProblemType::Conflict | ProblemType::QuotaExceeded => StatusCode::CONFLICT,
            ProblemType::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            ProblemType::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ProblemType::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ProblemType::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ProblemType::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
        }
    }

    /// When the problem occurs and what the client should do, for the OpenAPI document.
    pub fn description(self) -> &'static str {
        match self {
            ProblemType::Unauthorized => {
                "The Authorization header is missing, or its bearer token is expired, not yet valid, signed by an unknown key, or for another issuer or audience. Get a new token."
            }
            ProblemType::Forbidden => {
                "The bearer token is valid but lacks the permission this operation needs, such as the admin scope (AUTH_ADMIN_SCOPE) for adopting distributions. Use a token that grants it."
            }
            ProblemType::NotFound => {
                "No such route, or no distribution with this id belongs to the caller. Another owner's distribution is reported exactly like one that does not exist."
            }
            ProblemType::MethodNotAllowed => "The route exists but not with this HTTP method.",
            ProblemType::InvalidParameter => {
                "A path or query parameter is invalid, such as an id that is not a UUID or a limit out of range."
            }
            ProblemType::MalformedBody => "The request body is not valid JSON for this operation.",
            ProblemType::UnsupportedMediaType => {
                "The request body is not sent as Content-Type: application/json."
            }
            ProblemType::PayloadTooLarge => "The request body exceeds the configured size limit.",
            ProblemType::ValidationFailed => {
                "The body is well-formed JSON but some fields are invalid; `errors` lists each one with a JSON pointer."
            }
            ProblemType::Conflict => {
                "The request does not fit the distribution's current state, such as an update while it is being deleted, or a retry of a distribution that has not failed."
            }
            ProblemType::QuotaExceeded => {
                "The owner already has as many live distributions as MAX_DISTRIBUTIONS_PER_OWNER allows. Delete one first."
            }
            ProblemType::PreconditionFailed => {
                "If-Match names an older version of the resource: someone changed it since it was read. Read it again and retry with its current ETag."
            }
            ProblemType::Internal => {
                "The service failed; the cause is logged with the request id and never sent. Retrying may succeed."
            }
            ProblemType::Unavailable => {
                "A dependency such as the database is unreachable. Retry later."
            }
            ProblemType::RateLimited => {
                "The caller sent more requests than its per-owner rate limit allows. Retry after the number of seconds in the Retry-After header."
            }
            ProblemType::RequestTimeout => {
                "The request took longer than the configured request timeout and was abandoned. It may or may not have taken effect, so read the resource before retrying."
            }
        }
    }
}

/// An RFC 9457 problem details document.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A stable URI naming the kind of problem.
    #[schema(example = "urn:cloudfront-lifecycle:problem:validation-failed")]
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    /// One sentence describing this request's failure.
    pub detail: String,
    /// For `validation-failed`: each invalid field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
}

impl ApiError {
    pub fn problem_type(&self) -> ProblemType {
        match self {
            ApiError::Unauthorized(_) => ProblemType::Unauthorized,
            ApiError::Forbidden(_) => ProblemType::Forbidden,
            ApiError::NotFound
            | ApiError::NoSuchCloudFrontDistribution(_)
            | ApiError::RouteNotFound => ProblemType::NotFound,
            ApiError::MethodNotAllowed => ProblemType::MethodNotAllowed,
            ApiError::InvalidParameter(_) => ProblemType::InvalidParameter,
            ApiError::MalformedBody(_) => ProblemType::MalformedBody,
            ApiError::UnsupportedMediaType(_) => ProblemType::UnsupportedMediaType,
            ApiError::PayloadTooLarge(_) => ProblemType::PayloadTooLarge,
            ApiError::Validation(_) => ProblemType::ValidationFailed,
            ApiError::Conflict(_) => ProblemType::Conflict,
            ApiError::QuotaExceeded(_) => ProblemType::QuotaExceeded,
            ApiError::PreconditionFailed(_) => ProblemType::PreconditionFailed,
            ApiError::Store(_) => ProblemType::Internal,
            ApiError::Unavailable(_) => ProblemType::Unavailable,
            ApiError::RateLimited { .. } => ProblemType::RateLimited,
            ApiError::RequestTimeout(_) => ProblemType::RequestTimeout,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let kind = self.problem_type();

        // Internal details are logged once here and never sent to the client.
        let detail = match &self {
            ApiError::Store(error) => {
                tracing::error!(%error, "request failed on the database");
                "The request could not be completed; it has been logged.".to_owned()
            }
            ApiError::Validation(errors) => format!(
                "{} field{} invalid; see errors.",
                errors.len(),
                if errors.len() == 1 { " is" } else { "s are" }
            ),
            other => other.to_string(),
        };
        let retry_after = match &self {
            ApiError::RateLimited { retry_after } => Some(*retry_after),
            _ => None,
        };
        let errors = match self {
            ApiError::Validation(errors) => Some(errors),
            _ => None,
        };

        let problem = Problem {
            problem_type: kind.uri(),
            title: kind.title().to_owned(),
            status: kind.status().as_u16(),
            detail,
            errors,
        };
        let mut response = (kind.status(), Json(problem)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if kind == ProblemType::Unauthorized {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
        }
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<crate::store::distributions::ChangeError> for ApiError {
    fn from(error: crate::store::distributions::ChangeError) -> Self {
        use crate::store::distributions::ChangeError;
        match error {
            ChangeError::NotFound => ApiError::NotFound,
            mismatch @ ChangeError::VersionMismatch { .. } => ApiError::PreconditionFailed(
                format!("{mismatch}; read it again and retry with its current ETag in If-Match"),
            ),
            ChangeError::Conflict(detail) => ApiError::Conflict(detail),
            ChangeError::Invalid(errors) => ApiError::Validation(errors),
            ChangeError::Store(error) => ApiError::Store(error),
        }
    }
}

/// Returns the API's own not-found problem for routes that do not exist.
pub async fn route_not_found() -> ApiError {
    ApiError::RouteNotFound
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
