//! Rows of the `distributions` table as the API reads and changes them.

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

use super::StoreError;
use crate::lifecycle::{Intent, Status};
use crate::spec::{DistributionPatch, DistributionSpec, FieldError};

/// One managed distribution.
#[derive(Clone, Debug)]
pub struct Distribution {
    pub id: Uuid,
    pub owner: String,
    pub spec: DistributionSpec,
    pub status: Status,
    pub intent: Intent,
    pub caller_reference: String,
    pub create_attempted: bool,
    /// A create ended without a definitive response, so it may have made a distribution.
    pub create_uncertain: bool,
    /// Creates sent and not yet rejected; a success or an uncertain end never lowers it.
    pub creates_unresolved: i32,
    pub cloudfront_id: Option<String>,
    pub arn: Option<String>,
    pub domain_name: Option<String>,
    pub etag: Option<String>,
    pub cloudfront_status: Option<String>,
    pub cloudfront_enabled: Option<bool>,
    pub next_check_at: Option<DateTime<Utc>>,
    pub lease_token: i64,
    pub failures: i32,
    pub checks: i32,
    pub waiting_since: Option<DateTime<Utc>>,
    pub disable_confirmed: bool,
    pub enabled_reads: i32,
    pub last_error_code: Option<String>,
    pub last_error_message: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    pub overdue: bool,
    pub delete_requested_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub version: i64,
    /// Bumped by every PATCH that changes the requested configuration.
    pub spec_version: i32,
    /// The spec version CloudFront was last sent.
    pub applied_spec_version: i32,
    /// The ETag the service's own update returned, while the row is `updating`.
    pub update_etag: Option<String>,
}

/// A row as Postgres returns it, before its text and JSON columns are parsed.
#[derive(Debug)]
pub(crate) struct Record {
    pub id: Uuid,
    pub owner: String,
    pub spec: serde_json::Value,
    pub status: String,
    pub intent: String,
    pub caller_reference: String,
    pub create_attempted: bool,
    pub create_uncertain: bool,
    pub creates_unresolved: i32,
    pub cloudfront_id: Option<String>,
    pub arn: Option<String>,
    pub domain_name: Option<String>,
    pub etag: Option<String>,
    pub cloudfront_status: Option<String>,
    pub cloudfront_enabled: Option<bool>,
    pub next_check_at: Option<DateTime<Utc>>,
    pub lease_token: i64,
    pub failures: i32,
    pub checks: i32,
    pub waiting_since: Option<DateTime<Utc>>,
    pub disable_confirmed: bool,
    pub enabled_reads: i32,
    pub last_error_code: Option<String>,
    pub last_error_message: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    pub overdue: bool,
    pub delete_requested_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub version: i64,
    pub spec_version: i32,
    pub applied_spec_version: i32,
    pub update_etag: Option<String>,
    /// The database's clock when the row was read.
    pub db_now: Option<DateTime<Utc>>,
}

impl TryFrom<Record> for Distribution {
    type Error = StoreError;

    fn try_from(record: Record) -> Result<Self, StoreError> {
        let corrupt = |detail: String| StoreError::Corrupt {
            id: record.id,
            detail,
        };
        let status = Status::parse(&record.status)
            .ok_or_else(|| corrupt(format!("unknown status {:?}", record.status)))?;
        let intent = Intent::parse(&record.intent)
            .ok_or_else(|| corrupt(format!("unknown intent {:?}", record.intent)))?;
        let spec = serde_json::from_value(record.spec)
            .map_err(|error| corrupt(format!("spec does not parse: {error}")))?;

        Ok(Distribution {
            id: record.id,
            owner: record.owner,
            spec,
            status,
            intent,
            caller_reference: record.caller_reference,
            create_attempted: record.create_attempted,
            create_uncertain: record.create_uncertain,
            creates_unresolved: record.creates_unresolved,
            cloudfront_id: record.cloudfront_id,
            arn: record.arn,
            domain_name: record.domain_name,
            etag: record.etag,
            cloudfront_status: record.cloudfront_status,
            cloudfront_enabled: record.cloudfront_enabled,
            next_check_at: record.next_check_at,
            lease_token: record.lease_token,
            failures: record.failures,
            checks: record.checks,
            waiting_since: record.waiting_since,
            disable_confirmed: record.disable_confirmed,
            enabled_reads: record.enabled_reads,
            last_error_code: record.last_error_code,
            last_error_message: record.last_error_message,
            last_error_at: record.last_error_at,
            overdue: record.overdue,
            delete_requested_at: record.delete_requested_at,
            created_at: record.created_at,
            updated_at: record.updated_at,
            deleted_at: record.deleted_at,
            version: record.version,
            spec_version: record.spec_version,
            applied_spec_version: record.applied_spec_version,
            update_etag: record.update_etag,
        })
    }
}

/// Records a new distribution, due for its first check at once, with its first history row.
pub async fn insert(
    executor: impl PgExecutor<'_>,
    id: Uuid,
    owner: &str,
    spec: &DistributionSpec,
    caller_reference: &str,
) -> Result<Distribution, StoreError> {
    let spec = serde_json::to_value(spec).expect("a spec always serializes");
    let record = sqlx::query_as!(
        Record,
        r#"
        with inserted as (
            insert into distributions (id, owner, spec, status, caller_reference, next_check_at)
            values ($1, $2, $3, 'creating', $4, now())
            returning *
        ), event as (
            insert into distribution_events (distribution_id, from_status, to_status, reason)
            select id, null, status, 'create requested' from inserted
        )
        select *, now() as "db_now?" from inserted
        "#,
        id,
        owner,
        spec,
        caller_reference,
    )
    .fetch_one(executor)
    .await?;
    record.try_into()
}

/// Fetches one of `owner`'s distributions.
pub async fn get_for_owner(
    executor: impl PgExecutor<'_>,
    id: Uuid,
    owner: &str,
) -> Result<Option<Distribution>, StoreError> {
    let record = sqlx::query_as!(
        Record,
        r#"select *, now() as "db_now?" from distributions where id = $1 and owner = $2"#,
        id,
        owner
    )
    .fetch_optional(executor)
    .await?;
    record.map(Distribution::try_from).transpose()
}

/// Fetches a distribution of any owner, for the worker and operators.
pub async fn get(
    executor: impl PgExecutor<'_>,
    id: Uuid,
) -> Result<Option<Distribution>, StoreError> {
    let record = sqlx::query_as!(
        Record,
        r#"select *, now() as "db_now?" from distributions where id = $1"#,
        id
    )
    .fetch_optional(executor)
    .await?;
    record.map(Distribution::try_from).transpose()
}

/// Filter and keyset position for listing an owner's distributions, newest first.
#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    pub status: Option<Status>,
    /// Continue after this (created_at, id) position.
    pub after: Option<(DateTime<Utc>, Uuid)>,
    pub limit: i64,
}

pub async fn list_for_owner(
    executor: impl PgExecutor<'_>,
    owner: &str,
    filter: &ListFilter,
) -> Result<Vec<Distribution>, StoreError> {
    let (after_created, after_id) = filter.after.unzip();
    let records = sqlx::query_as!(
        Record,
        r#"
        select *, now() as "db_now?" from distributions
        where owner = $1
          and ($2::text is null or status = $2)
          and ($3::timestamptz is null or (created_at, id) < ($3, $4))
        order by created_at desc, id desc
        limit $5
        "#,
        owner,
        filter.status.map(Status::as_str),
        after_created,
        after_id,
        filter.limit,
    )
    .fetch_all(executor)
    .await?;
    records.into_iter().map(Distribution::try_from).collect()
}

/// Reasons a change requested through the API was not made.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("no such distribution")]
    NotFound,
    /// The caller's If-Match named an older version of the resource.
    #[error("the resource has changed since version {expected}; it is now at version {current}")]
    VersionMismatch { expected: i64, current: i64 },
    /// The change does not fit the row's state (for example, an update during deletion).
    #[error("{0}")]
    Conflict(String),
    /// The patched configuration is invalid.
    #[error("the patched configuration is invalid")]
    Invalid(Vec<FieldError>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for ChangeError {
    fn from(error: sqlx::Error) -> Self {
        ChangeError::Store(StoreError::Database(error))
    }
}

/// Locks `owner`'s row for a change and checks the caller's expected version (If-Match).
async fn lock_for_change(
    transaction: &mut sqlx::PgConnection,
    id: Uuid,
    owner: &str,
    expected_version: Option<i64>,
) -> Result<(String, String, i64), ChangeError> {
    let current = sqlx::query!(
        "select status, intent, version from distributions where id = $1 and owner = $2 for update",
        id,
        owner
    )
    .fetch_optional(&mut *transaction)
    .await?
    .ok_or(ChangeError::NotFound)?;

    if let Some(expected) = expected_version
        && expected != current.version
    {
        return Err(ChangeError::VersionMismatch {
            expected,
            current: current.version,
        });
    }
    Ok((current.status, current.intent, current.version))
}

/// Records that `owner` wants the distribution deleted (or, with `retain`, disabled and
/// kept) and makes it due at once. Asking again is harmless: a row already on its way is
/// left alone, and a failed one is put back into the lifecycle. Changing the intent bumps
/// the lease token, so an in-flight check cannot overwrite it.
pub async fn request_delete(
    pool: &PgPool,
    id: Uuid,
    owner: &str,
    intent: Intent,
    expected_version: Option<i64>,
) -> Result<Distribution, ChangeError> {
    let mut transaction = pool.begin().await?;
    let (status, current_intent, _) =
        lock_for_change(&mut transaction, id, owner, expected_version).await?;

    let already_requested = current_intent == intent.as_str() && status != "failed";
    let finished = status == "deleted";
    if !already_requested && !finished {
        let reason = if intent == Intent::Retain {
            "disable and retain requested"
        } else {
            "deletion requested"
        };
        sqlx::query!(
            r#"
            with updated as (
                update distributions
                set intent = $2,
                    delete_requested_at = coalesce(delete_requested_at, now()),
                    next_check_at = now(),
                    lease_token = lease_token + 1,
                    failures = 0,
                    disable_confirmed = case when status = 'failed' then false
                        else disable_confirmed end,
                    enabled_reads = case when status = 'failed' then 0 else enabled_reads end,
                    status = case when status = 'failed' then
                        case when cloudfront_id is null then 'creating' else 'disabling' end
                        else status end,
                    version = version + 1,
                    updated_at = now()
                where id = $1
                returning id, status
            )
            insert into distribution_events (distribution_id, from_status, to_status, reason)
            select id, $3, status, $4 from updated
            "#,
            id,
            intent.as_str(),
            status,
            reason,
        )
        .execute(&mut *transaction)
        .await?;
    }

    let row = get(&mut *transaction, id)
        .await?
        .expect("the row was locked in this transaction");
    transaction.commit().await?;
    Ok(row)
}

/// Merges `patch` into the requested configuration for the worker to apply. The merge uses
/// the spec read under the row lock, so concurrent PATCHes without If-Match each keep what
/// the others set. A row being deleted, or already deleted, cannot be updated, even by a
/// patch that changes nothing. When the spec changes, a `deployed` row shows `updating` at
/// once. A `failed` row goes back into the lifecycle, since the new configuration may be
/// what fixes it. Returns the row and whether the spec changed.
pub async fn request_update(
    pool: &PgPool,
    id: Uuid,
    owner: &str,
    patch: &DistributionPatch,
    expected_version: Option<i64>,
) -> Result<(Distribution, bool), ChangeError> {
    let mut transaction = pool.begin().await?;
    let current = sqlx::query!(
        "select spec, status, intent, version from distributions where id = $1 and owner = $2 for update",
        id,
        owner
    )
    .fetch_optional(&mut *transaction)
    .await?
    .ok_or(ChangeError::NotFound)?;

    let current_spec: DistributionSpec =
        serde_json::from_value(current.spec).map_err(|error| StoreError::Corrupt {
            id,
            detail: format!("spec does not parse: {error}"),
        })?;
    let spec = current_spec.patched(patch);
    let errors = spec.validate();
    if !errors.is_empty() {
        return Err(ChangeError::Invalid(errors));
    }
    if let Some(expected) = expected_version
        && expected != current.version
    {
        return Err(ChangeError::VersionMismatch {
            expected,
            current: current.version,
        });
    }
    let (status, intent) = (current.status, current.intent);
    if intent != Intent::Keep.as_str() || status == "deleted" {
        return Err(ChangeError::Conflict(format!(
            "the distribution is {status} after a request to {intent} it; it can no longer be updated"
        )));
    }

    let changed = spec != current_spec;
    if changed {
        let spec = serde_json::to_value(&spec).expect("a spec always serializes");
        sqlx::query!(
            r#"
            with updated as (
                update distributions
                set spec = $2,
                    spec_version = spec_version + 1,
                    next_check_at = now(),
                    lease_token = lease_token + 1,
                    failures = 0,
                    status = case
                        when status = 'failed' and cloudfront_id is null then 'creating'
                        when status in ('failed', 'deployed') then 'updating'
                        else status end,
                    version = version + 1,
                    updated_at = now()
                where id = $1
                returning id, status
            )
            insert into distribution_events (distribution_id, from_status, to_status, reason)
            select id, $3, status, 'update requested' from updated
            "#,
            id,
            spec,
            status,
        )
        .execute(&mut *transaction)
        .await?;
    }

    let row = get(&mut *transaction, id)
        .await?
        .expect("the row was locked in this transaction");
    transaction.commit().await?;
    Ok((row, changed))
}

/// Serialises creates by one owner, so the quota check and the insert cannot interleave
/// with another request of the same owner. Held until the transaction ends.
pub async fn lock_owner(executor: impl PgExecutor<'_>, owner: &str) -> Result<(), StoreError> {
    sqlx::query!(
        "select pg_advisory_xact_lock(hashtextextended('owner:' || $1, 0))",
        owner
    )
    .execute(executor)
    .await?;
    Ok(())
}

/// Counts the owner's distributions that are not deleted.
pub async fn count_live(executor: impl PgExecutor<'_>, owner: &str) -> Result<i64, StoreError> {
    let count = sqlx::query_scalar!(
        r#"select count(*) as "count!" from distributions where owner = $1 and status <> 'deleted'"#,
        owner
    )
    .fetch_one(executor)
    .await?;
    Ok(count)
}

/// The result of [`retry`].
#[derive(Clone, Debug)]
pub enum RetryOutcome {
    /// The failed row is back in the lifecycle and due now.
    Retried(Distribution),
    /// The row is not `failed`, so there is nothing to retry; it is returned unchanged.
    NotFailed(Distribution),
    /// No such row, or it belongs to another owner.
    NotFound,
}

/// Puts a `failed` row back into the lifecycle, for example after an operator fixed the IAM
/// policy or removed a conflicting alias. The row goes back to `creating` when it has no
/// CloudFront id, else to `deploying` or `disabling` by its intent, with its counters reset
/// and due at once. Bumping the lease token drops any check still in flight. `owner` limits
/// the lookup to that owner's rows; `None` (operators) finds any row.
pub async fn retry(
    pool: &PgPool,
    id: Uuid,
    owner: Option<&str>,
) -> Result<RetryOutcome, StoreError> {
    let mut transaction = pool.begin().await?;

    let current = sqlx::query!(
        r#"
        select status from distributions
        where id = $1 and ($2::text is null or owner = $2)
        for update
        "#,
        id,
        owner,
    )
    .fetch_optional(&mut *transaction)
    .await?;
    let Some(current) = current else {
        return Ok(RetryOutcome::NotFound);
    };

    if current.status != Status::Failed.as_str() {
        let row = get(&mut *transaction, id)
            .await?
            .expect("the row was locked in this transaction");
        transaction.commit().await?;
        return Ok(RetryOutcome::NotFailed(row));
    }

    sqlx::query!(
        r#"
        with updated as (
            update distributions
            set status = case
                    when cloudfront_id is null then 'creating'
                    when intent = 'keep' then 'deploying'
                    else 'disabling' end,
                failures = 0,
                checks = 0,
                disable_confirmed = false,
                enabled_reads = 0,
                waiting_since = now(),
                next_check_at = now(),
                lease_token = lease_token + 1,
                version = version + 1,
                updated_at = now()
            where id = $1
            returning id, status
        )
        insert into distribution_events (distribution_id, from_status, to_status, reason)
        select id, 'failed', status, 'retry requested' from updated
        "#,
        id,
    )
    .execute(&mut *transaction)
    .await?;
    super::notify_work(&mut *transaction).await?;

    let row = get(&mut *transaction, id)
        .await?
        .expect("the row was locked in this transaction");
    transaction.commit().await?;
    Ok(RetryOutcome::Retried(row))
}
