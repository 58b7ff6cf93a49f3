//! `/v1/distributions`: create, read, list, update and delete distributions. Each action
//! has its own file; this one contains the resource as the API shows it.

mod change;
mod create;
mod read;

pub use change::*;
pub use create::*;
pub use read::*;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::lifecycle::{Intent, Status};
use crate::spec::DistributionSpec;
use crate::store::Distribution;

/// The largest page `GET /v1/distributions` returns.
pub const MAX_PAGE_SIZE: i64 = 100;
pub(super) const DEFAULT_PAGE_SIZE: i64 = 20;

/// A managed distribution as the API shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DistributionResource {
    pub id: Uuid,
    pub status: Status,
    /// The configuration the distribution was created with.
    pub config: DistributionSpec,
    /// CloudFront's view as of the last check; absent until the distribution exists there.
    pub cloudfront: Option<CloudFrontView>,
    /// Present once deletion (or disable-and-retain) has been requested.
    pub deletion: Option<DeletionView>,
    /// The last error CloudFront returned, kept after the row recovered from it.
    pub last_error: Option<ErrorView>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CloudFrontView {
    #[schema(example = "E2QWRUHAPOMQZL")]
    pub id: String,
    pub arn: Option<String>,
    #[schema(example = "d111111abcdef8.cloudfront.net")]
    pub domain_name: Option<String>,
    /// `InProgress` or `Deployed`, as of the last check.
    pub status: Option<String>,
    pub enabled: Option<bool>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeletionView {
    pub requested_at: DateTime<Utc>,
    /// The distribution is disabled and kept rather than deleted.
    pub retain: bool,
    /// The deletion has taken longer than the configured deadline; it goes on regardless.
    pub overdue: bool,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorView {
    /// CloudFront's error code, such as `CNAMEAlreadyExists`.
    pub code: String,
    pub message: String,
    pub at: Option<DateTime<Utc>>,
}

impl From<Distribution> for DistributionResource {
    fn from(row: Distribution) -> Self {
        let cloudfront = row.cloudfront_id.map(|id| CloudFrontView {
            id,
            arn: row.arn,
            domain_name: row.domain_name,
            status: row.cloudfront_status,
            enabled: row.cloudfront_enabled,
        });
        let deletion = row.delete_requested_at.map(|requested_at| DeletionView {
            requested_at,
            retain: row.intent == Intent::Retain,
            overdue: row.overdue,
        });
        let last_error = row.last_error_code.map(|code| ErrorView {
            code,
            message: row.last_error_message.unwrap_or_default(),
            at: row.last_error_at,
        });
        DistributionResource {
            id: row.id,
            status: row.status,
            config: row.spec,
            cloudfront,
            deletion,
            last_error,
            created_at: row.created_at,
            updated_at: row.updated_at,
            deleted_at: row.deleted_at,
        }
    }
}

/// Renders a resource with its ETag (the row's version) and, when given, a Location.
pub(super) fn resource_response(status: StatusCode, row: Distribution, location: bool) -> Response {
    let etag = etag_of(&row);
    let path = format!("/v1/distributions/{}", row.id);
    let mut response = (status, axum::Json(DistributionResource::from(row))).into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    if location && let Ok(value) = HeaderValue::from_str(&path) {
        headers.insert(header::LOCATION, value);
    }
    response
}

pub(super) fn etag_of(row: &Distribution) -> String {
    format!("\"{}\"", row.version)
}
