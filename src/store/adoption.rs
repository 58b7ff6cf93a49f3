//! Rows for distributions that already exist in CloudFront and that the service takes over
//! (adopts) instead of creating.

use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::StoreError;
use super::distributions::{Distribution, Record};
use crate::lifecycle::{Intent, Status};
use crate::spec::DistributionSpec;

/// Name of the unique index that allows one live row per CloudFront id.
pub const LIVE_CLOUDFRONT_ID_INDEX: &str = "distributions_live_cloudfront_id";

/// Name of the unique constraint on `caller_reference`.
pub const CALLER_REFERENCE_CONSTRAINT: &str = "distributions_caller_reference_key";

/// A distribution read from CloudFront, as it is recorded.
#[derive(Clone, Debug)]
pub struct AdoptedRow<'a> {
    pub id: Uuid,
    pub owner: &'a str,
    pub spec: &'a DistributionSpec,
    pub status: Status,
    pub intent: Intent,
    /// The distribution's own CallerReference, so the service can never create it again.
    pub caller_reference: &'a str,
    pub cloudfront_id: &'a str,
    pub arn: &'a str,
    pub domain_name: &'a str,
    pub etag: &'a str,
    pub cloudfront_status: &'a str,
    pub cloudfront_enabled: bool,
    /// Recorded in the history row of the adoption.
    pub reason: &'a str,
}

/// Inserts an adopted row with its first history row. A row that is still waiting for
/// Deployed is due at once; a settled one (`deployed`, `disabled`) is not due at all. A
/// disabled one is recorded as if disable-and-retain had been requested at adoption, so the
/// API shows it with `deletion.retain`.
///
/// A row whose distribution was seen disabled starts with `disable_confirmed`, so a later
/// read that shows it enabled again is treated as someone else's change and confirmed before
/// anything is done, instead of being disabled by the service.
pub async fn insert(
    executor: impl PgExecutor<'_>,
    row: &AdoptedRow<'_>,
) -> Result<Distribution, StoreError> {
    let spec = serde_json::to_value(row.spec).expect("a spec always serializes");
    let due = !row.status.is_final();
    let record = sqlx::query_as!(
        Record,
        r#"
        with inserted as (
            insert into distributions (
                id, owner, spec, status, intent, caller_reference, create_attempted,
                cloudfront_id, arn, domain_name, etag, cloudfront_status, cloudfront_enabled,
                next_check_at, waiting_since, disable_confirmed, delete_requested_at,
                spec_version, applied_spec_version
            )
            values (
                $1, $2, $3, $4, $5, $6, true, $7, $8, $9, $10, $11, $12,
                case when $13 then now() end, case when $13 then now() end, not $12,
                case when $5 <> 'keep' then now() end, 1, 1
            )
            returning *
        ), event as (
            insert into distribution_events (distribution_id, from_status, to_status, reason)
            select id, null, status, $14 from inserted
        )
        select *, now() as "db_now?" from inserted
        "#,
        row.id,
        row.owner,
        spec,
        row.status.as_str(),
        row.intent.as_str(),
        row.caller_reference,
        row.cloudfront_id,
        row.arn,
        row.domain_name,
        row.etag,
        row.cloudfront_status,
        row.cloudfront_enabled,
        due,
        row.reason,
    )
    .fetch_one(executor)
    .await?;
    record.try_into()
}

/// Records a deletion request on a row just adopted, due at once, with `reason` in the
/// history. The worker then deletes it by the same rules as a deletion requested through
/// the API.
pub async fn request_deletion(
    connection: &mut PgConnection,
    id: Uuid,
    reason: &str,
) -> Result<Distribution, StoreError> {
    sqlx::query!(
        r#"
        with updated as (
            update distributions
            set intent = 'delete',
                delete_requested_at = coalesce(delete_requested_at, now()),
                next_check_at = now(),
                lease_token = lease_token + 1,
                version = version + 1,
                updated_at = now()
            where id = $1
            returning id, status
        )
        insert into distribution_events (distribution_id, from_status, to_status, reason)
        select id, status, status, $2 from updated
        "#,
        id,
        reason,
    )
    .execute(&mut *connection)
    .await?;
    let row = super::distributions::get(&mut *connection, id)
        .await?
        .expect("the row was inserted in this transaction");
    Ok(row)
}

/// Finds the live (not deleted) row that manages the distribution with this CloudFront id.
pub async fn live_row_for(
    executor: impl PgExecutor<'_>,
    cloudfront_id: &str,
) -> Result<Option<Uuid>, StoreError> {
    let id = sqlx::query_scalar!(
        "select id from distributions where cloudfront_id = $1 and status <> 'deleted'",
        cloudfront_id
    )
    .fetch_optional(executor)
    .await?;
    Ok(id)
}

/// Finds the row with this CallerReference, in any status, with its status.
pub async fn row_with_caller_reference(
    executor: impl PgExecutor<'_>,
    caller_reference: &str,
) -> Result<Option<(Uuid, String)>, StoreError> {
    let row = sqlx::query!(
        "select id, status from distributions where caller_reference = $1",
        caller_reference
    )
    .fetch_optional(executor)
    .await?;
    Ok(row.map(|row| (row.id, row.status)))
}

/// Lists the id and CloudFront id (once known) of every row that is not deleted.
pub async fn live_rows(
    executor: impl PgExecutor<'_>,
) -> Result<Vec<(Uuid, Option<String>)>, StoreError> {
    let rows =
        sqlx::query!("select id, cloudfront_id from distributions where status <> 'deleted'")
            .fetch_all(executor)
            .await?;
    Ok(rows
        .into_iter()
        .map(|row| (row.id, row.cloudfront_id))
        .collect())
}

/// Returns the database's clock, which decides ages so that every replica judges them alike.
pub async fn database_now(
    executor: impl PgExecutor<'_>,
) -> Result<chrono::DateTime<chrono::Utc>, StoreError> {
    let now = sqlx::query_scalar!(r#"select now() as "now!""#)
        .fetch_one(executor)
        .await?;
    Ok(now)
}
