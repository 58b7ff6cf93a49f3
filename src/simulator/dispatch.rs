//! The path every CloudFront call takes: latency, rate limit, injected errors, the
//! operation itself, lost responses and the call log.

use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};

use super::calls::CallRecord;
use super::error::ApiError;
use super::faults::{LostResponseMode, Operation};
use super::{Inner, Simulator};

/// A successful result before faults are applied to it.
pub(super) struct Reply {
    pub status: StatusCode,
    pub etag: Option<String>,
    pub location: Option<String>,
    pub body: Option<String>,
    /// The distribution a create made, for the call log.
    pub created_id: Option<String>,
}

impl Reply {
    pub fn ok(body: String, etag: Option<String>) -> Self {
        Self {
            status: StatusCode::OK,
            etag,
            location: None,
            body: Some(body),
            created_id: None,
        }
    }

    pub fn empty(status: StatusCode) -> Self {
        Self {
            status,
            etag: None,
            location: None,
            body: None,
            created_id: None,
        }
    }

    fn into_response(self) -> Response {
        let mut response = match self.body {
            Some(body) => (self.status, [(header::CONTENT_TYPE, "text/xml")], body).into_response(),
            None => self.status.into_response(),
        };
        let headers = response.headers_mut();
        for (name, value) in [("ETag", self.etag), ("Location", self.location)] {
            if let Some(value) = value.and_then(|value| value.parse().ok()) {
                headers.insert(name, value);
            }
        }
        response
    }
}

/// Serves one call: latency, rate limit, injected errors, the action itself, lost
/// responses, and the call log, in that order.
pub(super) async fn serve(
    simulator: &Simulator,
    operation: Operation,
    distribution_id: Option<String>,
    if_match: Option<String>,
    action: impl FnOnce(&mut Inner, DateTime<Utc>) -> Result<Reply, ApiError>,
) -> Response {
    let latency = simulator.lock().faults.latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }

    let mut inner = simulator.lock();
    let now = Utc::now();
    let observed = distribution_id
        .as_deref()
        .and_then(|id| inner.store.distributions.get(id))
        .map(|distribution| {
            (
                distribution.current.enabled(),
                distribution.current.status(now),
            )
        });
    let outcome = inner
        .faults
        .check_rate(operation, Instant::now())
        .and_then(|()| inner.faults.take_error(operation))
        .and_then(|()| action(&mut inner, now));
    let lost = match outcome {
        Ok(_) => inner.faults.take_lost_response(operation),
        Err(_) => None,
    };

    let (http_status, error_code) = match &outcome {
        Ok(reply) => (reply.status.as_u16(), None),
        Err(error) => (error.status, Some(error.code.clone())),
    };
    let logged_id = match &outcome {
        Ok(Reply {
            created_id: Some(id),
            ..
        }) => Some(id.clone()),
        _ => distribution_id.clone(),
    };
    let changes_config = matches!(
        operation,
        Operation::CreateDistribution
            | Operation::CreateDistributionWithTags
            | Operation::UpdateDistribution
    );
    let deployed_at = match (&outcome, &logged_id) {
        (Ok(_), Some(id)) if changes_config => inner
            .store
            .distributions
            .get(id)
            .map(|distribution| distribution.current.deployed_at),
        _ => None,
    };
    tracing::debug!(?operation, id = ?logged_id, http_status, ?error_code, ?lost, "CloudFront call");
    inner.calls.record(CallRecord {
        sequence: 0,
        operation,
        distribution_id: logged_id,
        if_match,
        http_status,
        error_code,
        time: now,
        enabled: observed.map(|(enabled, _)| enabled),
        status: observed.map(|(_, status)| status),
        response_lost: lost,
        deployed_at,
    });
    drop(inner);

    match (outcome, lost) {
        (Err(error), _) => error.into_response(),
        (Ok(_), Some(LostResponseMode::InternalError)) => {
            ApiError::internal_error().into_response()
        }
        (Ok(_), Some(LostResponseMode::DropConnection)) => broken_response(),
        (Ok(reply), None) => reply.into_response(),
    }
}

/// Returns a 200 response whose body fails after its first byte; hyper then aborts
/// the connection, so the client sees the response cut off.
fn broken_response() -> Response {
    let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
        Ok(Bytes::from_static(b"<")),
        Err(std::io::Error::other("simulated lost response")),
    ];
    let mut response = Response::new(Body::from_stream(futures::stream::iter(chunks)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        "text/xml".parse().expect("static header value"),
    );
    response
}
