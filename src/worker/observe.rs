//! Spans and lifecycle metrics for checks, kept apart from the check itself.

use chrono::{DateTime, Utc};
use tracing::Span;

use crate::lifecycle::Status;
use crate::store::Distribution;
use crate::store::claims::Claimed;

/// The span a check runs in, so every line it logs names the row and its owner.
pub fn check_span(claimed: &Claimed) -> Span {
    let row = &claimed.row;
    tracing::info_span!(
        "check",
        distribution.id = %row.id,
        cloudfront.id = row.cloudfront_id.as_deref().unwrap_or(""),
        owner = %row.owner,
    )
}

/// Records the metrics of a write-back that was accepted under the lease.
///
/// The deletion duration runs from the delete request to the check that saw the deletion
/// succeed, both on the database's clock. The detection lag is an upper bound: CloudFront
/// finished somewhere between the previous check, which saw `InProgress` (the row's
/// `updated_at`), and the check that sent DeleteDistribution (`claimed_at`).
///
/// `status` is the status written and `error_code` the code of the error it recorded, if any.
pub fn record_write_back(
    row: &Distribution,
    status: Status,
    error_code: Option<String>,
    claimed_at: DateTime<Utc>,
) {
    if status == row.status {
        return;
    }
    // Only final statuses: a status set before a call (disabling, deleting) is written by
    // another query, so counting intermediate steps here would miss some of them.
    if status.is_final() {
        metrics::counter!("cloudfront_lifecycle_settled_total", "status" => status.as_str())
            .increment(1);
    }

    match status {
        Status::Deleted => {
            if let Some(requested) = row.delete_requested_at {
                metrics::histogram!("cloudfront_lifecycle_deletion_duration_seconds")
                    .record(seconds_between(requested, claimed_at));
            }
            if row.cloudfront_status.as_deref() == Some("InProgress") {
                metrics::histogram!("cloudfront_lifecycle_detection_lag_seconds")
                    .record(seconds_between(row.updated_at, claimed_at));
            }
        }
        Status::Failed => {
            let code = error_code.unwrap_or_else(|| "unknown".to_owned());
            metrics::counter!("cloudfront_lifecycle_failed_total", "code" => code).increment(1);
        }
        _ => {}
    }
}

fn seconds_between(start: DateTime<Utc>, end: DateTime<Utc>) -> f64 {
    (end - start).num_milliseconds().max(0) as f64 / 1000.0
}
