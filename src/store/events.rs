//! The append-only history of status changes.

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

use super::StoreError;

/// One status change (or change of intent) of a distribution.
#[derive(Clone, Debug)]
pub struct Event {
    pub id: i64,
    pub distribution_id: Uuid,
    pub from_status: Option<String>,
    pub to_status: String,
    pub reason: String,
    pub created_at: DateTime<Utc>,
}

/// Lists a distribution's history, oldest first.
pub async fn list(
    executor: impl PgExecutor<'_>,
    distribution_id: Uuid,
) -> Result<Vec<Event>, StoreError> {
    let events = sqlx::query_as!(
        Event,
        r#"
        select id, distribution_id, from_status, to_status, reason, created_at
        from distribution_events
        where distribution_id = $1
        order by id
        "#,
        distribution_id
    )
    .fetch_all(executor)
    .await?;
    Ok(events)
}

/// A distribution's history after a given event, read together with its current status
/// from one snapshot, so the status never runs ahead of the events returned with it.
#[derive(Clone, Debug)]
pub struct Progress {
    pub status: String,
    /// True when no check is scheduled: nothing will change until someone asks for it.
    pub idle: bool,
    /// Events with an id above the one asked for, oldest first, at most the limit.
    pub events: Vec<Event>,
}

/// Reads the events after `after_id` and the row's status in one repeatable-read snapshot.
/// Returns `None` when the distribution does not exist.
pub async fn progress_after(
    pool: &PgPool,
    distribution_id: Uuid,
    after_id: i64,
    limit: i64,
) -> Result<Option<Progress>, StoreError> {
    let mut transaction = pool.begin().await?;
    sqlx::query!("set transaction isolation level repeatable read, read only")
        .execute(&mut *transaction)
        .await?;
    let row = sqlx::query!(
        r#"select status, next_check_at is null as "idle!" from distributions where id = $1"#,
        distribution_id
    )
    .fetch_optional(&mut *transaction)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let events = sqlx::query_as!(
        Event,
        r#"
        select id, distribution_id, from_status, to_status, reason, created_at
        from distribution_events
        where distribution_id = $1 and id > $2
        order by id
        limit $3
        "#,
        distribution_id,
        after_id,
        limit
    )
    .fetch_all(&mut *transaction)
    .await?;
    transaction.commit().await?;
    Ok(Some(Progress {
        status: row.status,
        idle: row.idle,
        events,
    }))
}
