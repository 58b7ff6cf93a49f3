//! The webhook outbox. Rows are written by triggers in the transaction that records the
//! lifecycle change; dispatchers claim them like the worker claims distributions.

use sqlx::PgExecutor;
use uuid::Uuid;

use super::StoreError;

/// The channel the outbox trigger notifies when it records a notification.
pub const WEBHOOK_CHANNEL: &str = "cloudfront_lifecycle_webhooks";

/// One notification claimed for an attempt.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The event id, the same on every attempt.
    pub id: Uuid,
    pub distribution_id: Uuid,
    pub event_type: String,
    pub payload: serde_json::Value,
    /// Attempts made so far, counting this one.
    pub attempts: i32,
}

/// Claims up to `limit` notifications that are due, holding each for `lease_seconds` so no
/// other dispatcher sends it at the same time.
pub async fn claim(
    executor: impl PgExecutor<'_>,
    limit: i64,
    lease_seconds: f64,
) -> Result<Vec<Delivery>, StoreError> {
    let deliveries = sqlx::query_as!(
        Delivery,
        r#"
        with due as materialized (
            select id from webhook_deliveries
            where next_attempt_at <= now()
            order by next_attempt_at
            limit $1
            for update skip locked
        )
        update webhook_deliveries w
        set next_attempt_at = now() + make_interval(secs => $2),
            attempts = w.attempts + 1,
            last_attempt_at = now()
        from due
        where w.id = due.id
        returning w.id, w.distribution_id, w.event_type, w.payload, w.attempts
        "#,
        limit,
        lease_seconds,
    )
    .fetch_all(executor)
    .await?;
    Ok(deliveries)
}

/// Marks a notification delivered, so it is never sent again.
pub async fn mark_delivered(executor: impl PgExecutor<'_>, id: Uuid) -> Result<(), StoreError> {
    sqlx::query!(
        r#"
        update webhook_deliveries
        set delivered_at = coalesce(delivered_at, now()), next_attempt_at = null
        where id = $1
        "#,
        id
    )
    .execute(executor)
    .await?;
    Ok(())
}

/// Schedules the next attempt after a failed one, unless the notification was delivered or
/// re-claimed (its attempt count moved on) meanwhile.
pub async fn schedule_retry(
    executor: impl PgExecutor<'_>,
    id: Uuid,
    attempts: i32,
    retry_in_seconds: f64,
    error: &str,
) -> Result<(), StoreError> {
    sqlx::query!(
        r#"
        update webhook_deliveries
        set next_attempt_at = now() + make_interval(secs => $3), last_error = $4
        where id = $1 and attempts = $2 and delivered_at is null
        "#,
        id,
        attempts,
        retry_in_seconds,
        error,
    )
    .execute(executor)
    .await?;
    Ok(())
}

/// Stops trying a notification after its last allowed attempt; the row stays for operators.
pub async fn abandon(
    executor: impl PgExecutor<'_>,
    id: Uuid,
    attempts: i32,
    error: &str,
) -> Result<(), StoreError> {
    sqlx::query!(
        r#"
        update webhook_deliveries
        set next_attempt_at = null, abandoned_at = now(), last_error = $3
        where id = $1 and attempts = $2 and delivered_at is null
        "#,
        id,
        attempts,
        error,
    )
    .execute(executor)
    .await?;
    Ok(())
}

/// Seconds until the next notification is due (negative when one is overdue), or `None`.
pub async fn seconds_until_next_due(
    executor: impl PgExecutor<'_>,
) -> Result<Option<f64>, StoreError> {
    let seconds = sqlx::query_scalar!(
        r#"
        select extract(epoch from min(next_attempt_at) - now())::float8
        from webhook_deliveries
        where next_attempt_at is not null
        "#
    )
    .fetch_one(executor)
    .await?;
    Ok(seconds)
}
