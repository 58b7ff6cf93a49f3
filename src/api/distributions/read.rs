//! `GET /v1/distributions/{id}` and the keyset-paged listing.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::api::AppState;
use crate::api::auth::Owner;
use crate::api::error::{ApiError, Problem};
use crate::api::extract::{Path, Query};
use crate::lifecycle::Status;
use crate::store::distributions::{self, ListFilter};

use super::{DEFAULT_PAGE_SIZE, DistributionResource, MAX_PAGE_SIZE, resource_response};

/// Get a distribution
#[utoipa::path(
    get,
    path = "/v1/distributions/{id}",
    tag = "distributions",
    operation_id = "getDistribution",
    params(("id" = Uuid, Path, description = "The distribution's id")),
    responses(
        (status = 200, description = "The distribution", body = DistributionResource,
            headers(("ETag" = String, description = "The resource's version"))),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such distribution for this owner", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    Owner(owner): Owner,
    Path(id): Path<Uuid>,
) -> Result<Response, ApiError> {
    let row = match &state.reads {
        Some(reads) => reads.get_for_owner(id, &owner).await?,
        None => distributions::get_for_owner(&state.pool, id, &owner).await?,
    };
    let row = row.ok_or(ApiError::NotFound)?;
    Ok(resource_response(StatusCode::OK, row, false))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Page size, 1 to 100; 20 when absent.
    limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Only distributions with this status.
    status: Option<Status>,
}

/// One page of distributions, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DistributionPage {
    pub items: Vec<DistributionResource>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// List your distributions
#[utoipa::path(
    get,
    path = "/v1/distributions",
    tag = "distributions",
    operation_id = "listDistributions",
    params(ListParams),
    responses(
        (status = 200, description = "A page of distributions", body = DistributionPage),
        (status = 400, description = "Invalid limit, cursor or status", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    Owner(owner): Owner,
    Query(params): Query<ListParams>,
) -> Result<axum::Json<DistributionPage>, ApiError> {
    let limit = params.limit.unwrap_or(DEFAULT_PAGE_SIZE);
    if !(1..=MAX_PAGE_SIZE).contains(&limit) {
        return Err(ApiError::InvalidParameter(format!(
            "limit must be between 1 and {MAX_PAGE_SIZE}, got {limit}"
        )));
    }
    let after = params.cursor.as_deref().map(decode_cursor).transpose()?;

    let filter = ListFilter {
        status: params.status,
        after,
        limit: limit + 1,
    };
    let mut rows = distributions::list_for_owner(&state.pool, &owner, &filter).await?;

    let next_cursor = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|row| encode_cursor(row.created_at, row.id))
    } else {
        None
    };
    Ok(axum::Json(DistributionPage {
        items: rows.into_iter().map(DistributionResource::from).collect(),
        next_cursor,
    }))
}

fn encode_cursor(created_at: DateTime<Utc>, id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}|{id}", created_at.timestamp_micros()))
}

fn decode_cursor(cursor: &str) -> Result<(DateTime<Utc>, Uuid), ApiError> {
    let invalid = || {
        ApiError::InvalidParameter(
            "cursor is not one this service issued; pass the next_cursor of a previous page"
                .to_owned(),
        )
    };
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let (micros, id) = text.split_once('|').ok_or_else(invalid)?;
    let micros: i64 = micros.parse().map_err(|_| invalid())?;
    // Rows are created after 1970, so an earlier position is forged; Postgres would also
    // reject times before 4713 BC that chrono still accepts.
    if micros < 0 {
        return Err(invalid());
    }
    let created_at = DateTime::from_timestamp_micros(micros).ok_or_else(invalid)?;
    let id = Uuid::parse_str(id).map_err(|_| invalid())?;
    Ok((created_at, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips() {
        let created_at = DateTime::from_timestamp_micros(1_764_800_000_123_456).unwrap();
        let id = Uuid::now_v7();
        let cursor = encode_cursor(created_at, id);
        assert_eq!(decode_cursor(&cursor).unwrap(), (created_at, id));
    }

    #[test]
    fn forged_cursor_rejected() {
        assert!(decode_cursor("not-a-cursor").is_err());
        assert!(decode_cursor(&URL_SAFE_NO_PAD.encode("12|not-a-uuid")).is_err());
    }
}
