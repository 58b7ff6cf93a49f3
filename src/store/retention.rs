//! Purging deleted rows, with their history, once they are older than the retention time.

use sqlx::PgPool;

use super::StoreError;

/// Advisory lock key that lets one replica at a time purge; any other replica skips its turn.
const PURGE_LOCK_KEY: i64 = 0x6366_6c70_7572_6765;

/// Rows deleted per transaction: small, so a purge never holds many row locks or writes a
/// large burst of WAL at once.
pub const PURGE_BATCH: i64 = 500;

/// Deletes rows that reached `deleted` more than `retention_seconds` ago, and their
/// history (by cascade), in batches of [`PURGE_BATCH`], stopping after `max_batches`.
/// Returns the rows purged, or `None` when another replica held the purge lock.
pub async fn purge_deleted(
    pool: &PgPool,
    retention_seconds: f64,
    max_batches: usize,
) -> Result<Option<u64>, StoreError> {
    let mut purged = 0;
    for batch in 0..max_batches {
        let mut transaction = pool.begin().await?;
        let locked = sqlx::query_scalar!(
            r#"select pg_try_advisory_xact_lock($1) as "locked!""#,
            PURGE_LOCK_KEY
        )
        .fetch_one(&mut *transaction)
        .await?;
        if !locked {
            // Another replica is purging: leave the rest to it.
            return Ok((batch > 0).then_some(purged));
        }
        let deleted = sqlx::query!(
            r#"
            with doomed as (
                select id from distributions
                where deleted_at < now() - make_interval(secs => $1)
                  and status = 'deleted'
                order by deleted_at
                limit $2
                for update skip locked
            )
            delete from distributions d
            using doomed
            where d.id = doomed.id
            "#,
            retention_seconds,
            PURGE_BATCH,
        )
        .execute(&mut *transaction)
        .await?
        .rows_affected();
        transaction.commit().await?;
        purged += deleted;
        if deleted < PURGE_BATCH as u64 {
            break;
        }
    }
    Ok(Some(purged))
}
