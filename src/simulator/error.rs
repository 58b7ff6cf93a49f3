//! CloudFront error documents and the HTTP statuses that go with them.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::xml;

/// An error as CloudFront reports it: HTTP status, error code and message.
///
/// The AWS SDKs map `code` to their typed error variants, so codes must match the
/// names in CloudFront's API model exactly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
        }
    }

    pub fn no_such_distribution(id: &str) -> Self {
        Self::new(
            404,
            "NoSuchDistribution",
            format!("The specified distribution does not exist: {id}"),
        )
    }

    pub fn precondition_failed(if_match: &str) -> Self {
        Self::new(
            412,
            "PreconditionFailed",
            format!("The If-Match version {if_match} is missing or not valid for the resource."),
        )
    }

    pub fn missing_if_match() -> Self {
        Self::new(
            400,
            "InvalidIfMatchVersion",
            "The If-Match version is missing or not valid for the resource.",
        )
    }

    pub fn malformed_xml(detail: impl std::fmt::Display) -> Self {
        Self::new(
            400,
            "MalformedXML",
            format!("The XML you provided was not well-formed or did not validate: {detail}"),
        )
    }

    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(400, "InvalidArgument", message)
    }

    pub fn throttling() -> Self {
        Self::new(400, "Throttling", "Rate exceeded")
    }

    pub fn internal_error() -> Self {
        Self::new(
            500,
            "InternalError",
            "We encountered an internal error. Please try again.",
        )
    }

    /// Returns the `<Type>` of the error document: `Receiver` for server faults,
    /// `Sender` for everything the client caused.
    fn fault_type(&self) -> &'static str {
        if self.status >= 500 {
            "Receiver"
        } else {
            "Sender"
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let request_id = uuid::Uuid::new_v4().to_string();
        let body = xml::error_document(self.fault_type(), &self.code, &self.message, &request_id);
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            headers.insert("x-amzn-RequestId", value);
        }
        response
    }
}
