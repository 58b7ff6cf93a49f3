//! Cheap aggregate reads for the metrics gauges.

use sqlx::PgExecutor;

use super::StoreError;

/// Rows per status, read through the status index.
pub async fn rows_by_status(
    executor: impl PgExecutor<'_>,
) -> Result<Vec<(String, i64)>, StoreError> {
    let rows =
        sqlx::query!(r#"select status, count(*) as "count!" from distributions group by status"#)
            .fetch_all(executor)
            .await?;
    Ok(rows
        .into_iter()
        .map(|row| (row.status, row.count))
        .collect())
}

/// What is waiting: due rows and webhook deliveries, with the age of the oldest of each.
#[derive(Clone, Copy, Debug, Default)]
pub struct Backlog {
    pub due_rows: i64,
    /// Seconds since the oldest due row came due; 0 when none is due.
    pub oldest_due_seconds: f64,
    /// Deletions still under way past their deadline.
    pub overdue_rows: i64,
    pub pending_webhooks: i64,
    /// Seconds since the oldest undelivered notification was recorded; 0 when none waits.
    pub oldest_webhook_seconds: f64,
}

/// Reads the backlog through the partial due indexes, so its cost follows the backlog and
/// not the table.
pub async fn backlog(executor: impl PgExecutor<'_>) -> Result<Backlog, StoreError> {
    let row = sqlx::query!(
        r#"
        select
            (select count(*) from distributions where next_check_at <= now()) as "due_rows!",
            (select coalesce(extract(epoch from now() - min(next_check_at))::float8, 0)
               from distributions where next_check_at <= now()) as "oldest_due_seconds!",
            (select count(*) from distributions where next_check_at is not null and overdue)
                as "overdue_rows!",
            (select count(*) from webhook_deliveries where next_attempt_at is not null)
                as "pending_webhooks!",
            (select coalesce(extract(epoch from now() - min(created_at))::float8, 0)
               from webhook_deliveries where next_attempt_at is not null)
                as "oldest_webhook_seconds!"
        "#
    )
    .fetch_one(executor)
    .await?;
    Ok(Backlog {
        due_rows: row.due_rows,
        oldest_due_seconds: row.oldest_due_seconds,
        overdue_rows: row.overdue_rows,
        pending_webhooks: row.pending_webhooks,
        oldest_webhook_seconds: row.oldest_webhook_seconds,
    })
}
