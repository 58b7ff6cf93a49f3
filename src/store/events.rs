//! The append-only history of status changes.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
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
