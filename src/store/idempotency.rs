//! Idempotency keys of POST /v1/distributions.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use super::StoreError;

/// A key already used by an owner, and the response its first request got.
#[derive(Clone, Debug)]
pub struct StoredKey {
    pub request_hash: String,
    pub distribution_id: Uuid,
    pub response: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

/// Serialises requests that carry the same key, so only the first creates anything. Held
/// until the transaction ends.
pub async fn lock_key(
    executor: impl PgExecutor<'_>,
    owner: &str,
    key: &str,
) -> Result<(), StoreError> {
    sqlx::query!(
        "select pg_advisory_xact_lock(hashtextextended('idempotency:' || $1 || ':' || $2, 0))",
        owner,
        key
    )
    .execute(executor)
    .await?;
    Ok(())
}

/// Finds a key that has not expired; keys older than `ttl_seconds` count as unused.
pub async fn find(
    executor: impl PgExecutor<'_>,
    owner: &str,
    key: &str,
    ttl_seconds: f64,
) -> Result<Option<StoredKey>, StoreError> {
    let stored = sqlx::query_as!(
        StoredKey,
        r#"
        select request_hash, distribution_id, response, created_at
        from idempotency_keys
        where owner = $1 and key = $2 and created_at > now() - make_interval(secs => $3)
        "#,
        owner,
        key,
        ttl_seconds,
    )
    .fetch_optional(executor)
    .await?;
    Ok(stored)
}

/// Records a key with the response its request got, replacing an expired one.
pub async fn insert(
    executor: impl PgExecutor<'_>,
    owner: &str,
    key: &str,
    request_hash: &str,
    distribution_id: Uuid,
    response: &serde_json::Value,
) -> Result<(), StoreError> {
    sqlx::query!(
        r#"
        insert into idempotency_keys (owner, key, request_hash, distribution_id, response)
        values ($1, $2, $3, $4, $5)
        on conflict (owner, key) do update
        set request_hash = excluded.request_hash,
            distribution_id = excluded.distribution_id,
            response = excluded.response,
            created_at = now()
        "#,
        owner,
        key,
        request_hash,
        distribution_id,
        response,
    )
    .execute(executor)
    .await?;
    Ok(())
}

/// Deletes expired keys in one small batch; returns how many went.
pub async fn purge_expired(
    executor: impl PgExecutor<'_>,
    ttl_seconds: f64,
    batch: i64,
) -> Result<u64, StoreError> {
    let result = sqlx::query!(
        r#"
        delete from idempotency_keys
        where (owner, key) in (
            select owner, key from idempotency_keys
            where created_at < now() - make_interval(secs => $1)
            limit $2
        )
        "#,
        ttl_seconds,
        batch,
    )
    .execute(executor)
    .await?;
    Ok(result.rows_affected())
}
