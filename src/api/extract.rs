//! Extractors whose rejections come back as problem+json rather than axum's plain text.

use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;
use serde_json::error::Category;
use serde_path_to_error::Segment;

use crate::spec::FieldError;

use super::error::ApiError;

/// A JSON body. Broken JSON is a 400; a body that parses but does not fit the type (a
/// missing field, an unknown field, a wrong type) is a 422 whose error names the field with
/// a JSON pointer, so a client can show it next to the right input.
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(request.headers()) {
            return Err(ApiError::UnsupportedMediaType(
                "the request body must be JSON with Content-Type: application/json".to_owned(),
            ));
        }

        // Bytes honours the body limit, which returns 413.
        let bytes =
            Bytes::from_request(request, state)
                .await
                .map_err(|rejection| match rejection.status() {
                    StatusCode::PAYLOAD_TOO_LARGE => {
                        ApiError::PayloadTooLarge(rejection.body_text())
                    }
                    _ => ApiError::MalformedBody(rejection.body_text()),
                })?;

        let mut deserializer = serde_json::Deserializer::from_slice(&bytes);
        let value = match serde_path_to_error::deserialize::<_, T>(&mut deserializer) {
            Ok(value) => value,
            Err(error) => return Err(body_error(error)),
        };
        deserializer
            .end()
            .map_err(|error| ApiError::MalformedBody(format!("invalid JSON: {error}")))?;
        Ok(Json(value))
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Turns a deserialization error into a 400 (not JSON) or a 422 naming the field.
fn body_error(error: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let mut pointer = String::new();
    for segment in error.path().iter() {
        match segment {
            Segment::Seq { index } => pointer.push_str(&format!("/{index}")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                pointer.push('/');
                pointer.push_str(&escape_pointer(key));
            }
            Segment::Unknown => pointer.push_str("/?"),
        }
    }
    let inner = error.into_inner();
    let message = inner.to_string();
    // serde_json appends the position, which the pointer already gives.
    let message = match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message,
    };

    match inner.classify() {
        Category::Data => {
            // The path of a missing or unknown field ends at its parent object.
            if let Some(field) = quoted_field(&message, "missing field `")
                .or_else(|| quoted_field(&message, "unknown field `"))
            {
                pointer.push('/');
                pointer.push_str(&escape_pointer(field));
            }
            ApiError::Validation(vec![FieldError {
                pointer,
                detail: message,
            }])
        }
        Category::Syntax | Category::Eof | Category::Io => {
            ApiError::MalformedBody(format!("invalid JSON: {inner}"))
        }
    }
}

fn quoted_field<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = message.strip_prefix(prefix)?;
    rest.split('`').next()
}

/// Escapes a key for a JSON pointer (RFC 6901).
fn escape_pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Path parameters; an id that is not a UUID is a 400.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::InvalidParameter(format!(
            "invalid path parameter: {}; distribution ids are UUIDs",
            rejection.body_text()
        ))
    }
}

/// Query parameters.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::InvalidParameter(rejection.body_text())
    }
}
