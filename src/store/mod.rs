//! Postgres queries. Every time that decides when a row is due comes from the database's
//! clock (`now()`), never from a replica's, so replicas with skewed clocks agree.

pub mod admin;
pub mod adoption;
pub mod claims;
pub mod distributions;
pub mod events;
pub mod idempotency;
pub mod notify;
pub mod rate_limit;
pub mod reads;
pub mod retention;
pub mod stats;
pub mod waits;
pub mod webhooks;

pub use distributions::{Distribution, ListFilter};
pub use events::Event;

use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgPool};

/// The channel the API notifies when it records new work, so idle workers wake at once.
pub const WORK_CHANNEL: &str = "cloudfront_lifecycle_work";

/// Errors from the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("row {id} holds invalid data: {detail}")]
    Corrupt { id: uuid::Uuid, detail: String },
}

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A pooled connection idle for this long is pinged before it is handed out, so one
/// that died while idle (a database restart, a proxy's idle timeout) is replaced first. A
/// connection the server closed within this time of its last statement fails the next
/// statement that gets it.
const PING_AFTER_IDLE: std::time::Duration = std::time::Duration::from_secs(1);

/// Opens a pool; connections are made lazily, so start-up does not wait for the database.
///
/// Only connections idle for at least [`PING_AFTER_IDLE`] are pinged. sqlx's default pings
/// on every acquire, which doubles the round trips of a busy worker. A connection that breaks
/// while in use fails its query whether or not it was pinged.
pub fn connect_lazy(database_url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(std::time::Duration::from_secs(5))
        .test_before_acquire(false)
        .before_acquire(|connection, metadata| {
            Box::pin(async move {
                if metadata.idle_for >= PING_AFTER_IDLE {
                    connection.ping().await?;
                }
                Ok(true)
            })
        })
        .connect_lazy(database_url)
}

/// Wakes idle workers on every replica. The payload is empty: workers re-read the table,
/// which stays the source of truth, so a lost notification only delays work.
pub async fn notify_work(executor: impl sqlx::PgExecutor<'_>) -> Result<(), sqlx::Error> {
    sqlx::query!("select pg_notify($1, '')", WORK_CHANNEL)
        .execute(executor)
        .await?;
    Ok(())
}
