//! Queries for the operator commands. They see every owner's rows unless asked to filter.

use sqlx::PgExecutor;
use uuid::Uuid;

use super::StoreError;
use super::distributions::{Distribution, Record};

/// Lists distributions, newest first, optionally of one status and one owner.
pub async fn list(
    executor: impl PgExecutor<'_>,
    status: Option<&str>,
    owner: Option<&str>,
    limit: i64,
) -> Result<Vec<Distribution>, StoreError> {
    let records = sqlx::query_as!(
        Record,
        r#"
        select *, now() as "db_now?" from distributions
        where ($1::text is null or status = $1)
          and ($2::text is null or owner = $2)
        order by created_at desc, id desc
        limit $3
        "#,
        status,
        owner,
        limit,
    )
    .fetch_all(executor)
    .await?;
    records.into_iter().map(Distribution::try_from).collect()
}

/// Makes a row due now and bumps its lease token, so a check in flight cannot overwrite
/// what the next check finds. Deleted and failed rows are left alone (a failed row needs a
/// retry, which also resets its failure count). Returns the row as it is now, or `None`
/// when no row has this id.
pub async fn recheck(
    executor: impl PgExecutor<'_>,
    id: Uuid,
) -> Result<Option<Distribution>, StoreError> {
    let record = sqlx::query_as!(
        Record,
        r#"
        update distributions
        set next_check_at = case when status in ('deleted', 'failed') then next_check_at
                                 else now() end,
            lease_token = case when status in ('deleted', 'failed') then lease_token
                               else lease_token + 1 end
        where id = $1
        returning *, now() as "db_now?"
        "#,
        id,
    )
    .fetch_optional(executor)
    .await?;
    record.map(Distribution::try_from).transpose()
}
