//! A deadpool pool of Postgres connections, kept apart from the sqlx pool for the API's
//! one-statement reads.
//!
//! sqlx 0.8's pool pings every connection it takes back (a Sync message and a wait for
//! ReadyForQuery), so each statement run through it costs two round trips to Postgres. A read
//! of one row needs only one. This pool pings a connection only when it is taken after sitting
//! idle for `PING_AFTER_IDLE`. A connection goes back only after a statement has run to the end (ReadyForQuery
//! received), so no connection in an unknown protocol state is reused. A statement that fails,
//! or whose future is dropped (a request timeout), takes its connection out of the pool and
//! closes it instead.

use std::str::FromStr;
use std::time::Duration;

use deadpool::Runtime;
use deadpool::managed::{
    Manager, Metrics, Object, Pool, PoolError, QueueMode, RecycleError, RecycleResult, Timeouts,
};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};
use uuid::Uuid;

use super::StoreError;
use super::distributions::{self, Distribution};

/// The maximum time `acquire` takes, the same as the sqlx pool's acquire timeout.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Idle time after which a connection is pinged before use, as in the sqlx pool.
const PING_AFTER_IDLE: Duration = super::PING_AFTER_IDLE;

/// Idle time after which a connection is closed rather than reused, as sqlx's pool default.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// Age after which a connection is closed rather than reused, as sqlx's pool default, so
/// Postgres backends do not live for ever.
const MAX_LIFETIME: Duration = Duration::from_secs(30 * 60);

/// Interval between sweeps that close connections past `IDLE_TIMEOUT` or `MAX_LIFETIME`.
/// deadpool has no idle reaper of its own, and without one a connection that is never taken
/// again would stay open.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Opens and checks the pool's connections.
struct PgManager {
    options: PgConnectOptions,
}

impl Manager for PgManager {
    type Type = PgConnection;
    type Error = sqlx::Error;

    async fn create(&self) -> Result<PgConnection, sqlx::Error> {
        self.options.connect().await
    }

    /// Checks a connection taken from the idle list. A connection that fails here is dropped
    /// by deadpool, which then tries the next idle one or opens a new one.
    async fn recycle(
        &self,
        connection: &mut PgConnection,
        metrics: &Metrics,
    ) -> RecycleResult<sqlx::Error> {
        if metrics.age() >= MAX_LIFETIME {
            return Err(RecycleError::message("past its max lifetime"));
        }

        // deadpool's `last_used` counts from the last time the connection was taken, not
        // returned, so it overstates idle time by the length of the last lease. That only
        // makes the ping and the idle timeout come slightly early, never late.
        let idle = metrics.last_used();
        if idle >= IDLE_TIMEOUT {
            return Err(RecycleError::message("past its idle timeout"));
        }

        if idle >= PING_AFTER_IDLE
            && let Err(error) = connection.ping().await
        {
            tracing::warn!(%error, "an idle read connection failed its ping, so it is dropped");
            return Err(RecycleError::Backend(error));
        }
        Ok(())
    }
}

/// A fixed number of Postgres connections for reads of one row, opened on first use.
#[derive(Clone)]
pub struct ReadConnections {
    pool: Pool<PgManager>,
}

/// One connection taken from `ReadConnections`. Dropping it closes the connection, and only
/// `release` puts it back.
pub struct ReadLease {
    object: Option<Object<PgManager>>,
}

impl ReadConnections {
    /// Prepares up to `size` connections to `database_url`, each opened on first use. Also
    /// starts the task that closes idle and old connections, which ends when the pool is
    /// dropped.
    ///
    /// # Panics
    ///
    /// Panics outside a Tokio runtime, because the sweep task needs one.
    pub fn new(database_url: &str, size: u32) -> Result<Self, sqlx::Error> {
        let options = PgConnectOptions::from_str(database_url)?;

        // Each step gets the full acquire timeout; `acquire` bounds their sum separately.
        let timeouts = Timeouts {
            wait: Some(ACQUIRE_TIMEOUT),
            create: Some(ACQUIRE_TIMEOUT),
            recycle: Some(ACQUIRE_TIMEOUT),
        };

        // Last in, first out, so under light load the same few connections stay warm and
        // the rest sit idle until the sweep closes them.
        let pool = Pool::builder(PgManager { options })
            .max_size(size as usize)
            .timeouts(timeouts)
            .queue_mode(QueueMode::Lifo)
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|error| sqlx::Error::Configuration(Box::new(error)))?;

        spawn_sweep(&pool);
        Ok(ReadConnections { pool })
    }

    /// Fetches a distribution if `owner` owns it, in one round trip.
    pub async fn get_for_owner(
        &self,
        id: Uuid,
        owner: &str,
    ) -> Result<Option<Distribution>, StoreError> {
        let mut lease = self.acquire().await?;
        let found = distributions::get_for_owner(lease.connection(), id, owner).await?;
        lease.release();
        Ok(found)
    }

    /// Takes an idle connection, or opens one. Waiting for a free slot, pinging and
    /// connecting together take at most `ACQUIRE_TIMEOUT`, as in the sqlx pool, and a timeout
    /// returns `sqlx::Error::PoolTimedOut` as the sqlx pool does.
    pub async fn acquire(&self) -> Result<ReadLease, sqlx::Error> {
        // The pool's timeouts bound each step on its own. This deadline bounds the whole
        // acquire, which may wait, then ping, then connect. Dropping `get` here is safe,
        // because deadpool gives back the slot and discards any half-checked connection.
        let result = match tokio::time::timeout(ACQUIRE_TIMEOUT, self.pool.get()).await {
            Ok(result) => result,
            Err(_elapsed) => {
                tracing::warn!(timeout = ?ACQUIRE_TIMEOUT, "acquiring a read connection timed out");
                return Err(sqlx::Error::PoolTimedOut);
            }
        };

        match result {
            Ok(object) => Ok(ReadLease {
                object: Some(object),
            }),
            Err(PoolError::Timeout(step)) => {
                tracing::warn!(?step, "acquiring a read connection timed out");
                Err(sqlx::Error::PoolTimedOut)
            }
            Err(PoolError::Backend(error)) => Err(error),
            Err(PoolError::Closed) => Err(sqlx::Error::PoolClosed),
            Err(error @ (PoolError::NoRuntimeSpecified | PoolError::PostCreateHook(_))) => {
                // `new` sets a runtime and no hooks, so this is a bug in this module.
                tracing::error!(%error, "the read connection pool is misconfigured");
                Err(sqlx::Error::Configuration(error.to_string().into()))
            }
        }
    }
}

impl ReadLease {
    /// Returns the connection, for one statement that runs to its end.
    pub fn connection(&mut self) -> &mut PgConnection {
        self.object
            .as_mut()
            .expect("a lease holds its connection until released")
    }

    /// Puts the connection back for reuse. Call it only after a statement returned
    /// successfully, because then Postgres has sent ReadyForQuery and waits for the next one.
    pub fn release(mut self) {
        // Dropping the object returns it to the pool.
        drop(self.object.take());
    }
}

impl Drop for ReadLease {
    /// Takes an unreleased connection out of the pool and drops it, which closes its socket
    /// and frees its slot. Its protocol state is unknown, so it gets no Terminate message,
    /// and Postgres ends the backend on end of file.
    fn drop(&mut self) {
        if let Some(object) = self.object.take() {
            drop(Object::take(object));
        }
    }
}

/// Starts a task that closes idle connections past `IDLE_TIMEOUT` or `MAX_LIFETIME` every
/// `SWEEP_INTERVAL`. It holds only a weak reference, so it ends once the pool is dropped.
fn spawn_sweep(pool: &Pool<PgManager>) {
    let weak = pool.weak();
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(SWEEP_INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let Some(pool) = weak.upgrade() else {
                return;
            };

            let expired = pool.retain(|_, metrics| {
                metrics.last_used() < IDLE_TIMEOUT && metrics.age() < MAX_LIFETIME
            });
            for connection in expired.removed {
                close(connection);
            }
        }
    });
}

/// Closes a healthy connection in the background, telling Postgres first.
fn close(connection: PgConnection) {
    tokio::spawn(async move {
        if let Err(error) = connection.close().await {
            tracing::warn!(%error, "closing an idle read connection failed");
        }
    });
}
