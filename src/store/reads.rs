//! Connections kept apart from the pool for the API's one-statement reads.
//!
//! sqlx 0.8's pool pings every connection it takes back (a Sync message and a wait for
//! ReadyForQuery), so each statement run through the pool costs two round trips to Postgres.
//! A read of one row needs only one. These connections skip the ping on return. They are put
//! back only after a statement has run to the end (ReadyForQuery received), so no connection
//! in an unknown protocol state is reused. A statement that fails, or whose future is dropped
//! (a request timeout), closes its connection instead.

use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};
use tokio::sync::{Semaphore, SemaphorePermit};
use uuid::Uuid;

use super::StoreError;
use super::distributions::{self, Distribution};

/// The longest `acquire` takes, the same as the pool's acquire timeout.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Idle time after which a connection is pinged before use, as in the pool.
const PING_AFTER_IDLE: Duration = super::PING_AFTER_IDLE;

/// Idle time after which a connection is closed rather than reused, as sqlx's pool default.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// Age after which a connection is closed rather than reused, as sqlx's pool default, so
/// Postgres backends do not live for ever.
const MAX_LIFETIME: Duration = Duration::from_secs(30 * 60);

/// A fixed number of Postgres connections for reads of one row, opened on first use.
#[derive(Clone)]
pub struct ReadConnections {
    inner: Arc<Inner>,
}

struct Inner {
    options: PgConnectOptions,
    permits: Semaphore,
    /// Connections ready for use, the most recently used last.
    idle: Mutex<Vec<IdleConnection>>,
}

struct IdleConnection {
    connection: PgConnection,
    opened: Instant,
    idle_since: Instant,
}

/// One connection taken from `ReadConnections`. Dropping it closes the connection; only
/// `release` puts it back.
pub struct ReadLease<'a> {
    connection: Option<PgConnection>,
    opened: Instant,
    inner: &'a Inner,
    _permit: SemaphorePermit<'a>,
}

impl ReadConnections {
    /// Prepares up to `size` connections to `database_url`; none is opened yet.
    pub fn new(database_url: &str, size: u32) -> Result<Self, sqlx::Error> {
        let options = PgConnectOptions::from_str(database_url)?;
        Ok(ReadConnections {
            inner: Arc::new(Inner {
                options,
                permits: Semaphore::new(size as usize),
                idle: Mutex::new(Vec::with_capacity(size as usize)),
            }),
        })
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
    /// connecting together take at most `ACQUIRE_TIMEOUT`, as in the pool.
    pub async fn acquire(&self) -> Result<ReadLease<'_>, sqlx::Error> {
        match tokio::time::timeout(ACQUIRE_TIMEOUT, self.acquire_unbounded()).await {
            Ok(result) => result,
            Err(_elapsed) => Err(sqlx::Error::PoolTimedOut),
        }
    }

    async fn acquire_unbounded(&self) -> Result<ReadLease<'_>, sqlx::Error> {
        let inner = self.inner.as_ref();
        let permit = inner
            .permits
            .acquire()
            .await
            .map_err(|_closed| sqlx::Error::PoolClosed)?;

        while let Some(idle) = inner.take_idle() {
            if idle.opened.elapsed() >= MAX_LIFETIME || idle.idle_since.elapsed() >= IDLE_TIMEOUT {
                close(idle.connection);
                continue;
            }
            let mut connection = idle.connection;
            if idle.idle_since.elapsed() >= PING_AFTER_IDLE
                && let Err(error) = connection.ping().await
            {
                tracing::warn!(%error, "an idle read connection failed its ping; opening another");
                continue;
            }
            return Ok(ReadLease {
                connection: Some(connection),
                opened: idle.opened,
                inner,
                _permit: permit,
            });
        }

        let connection = inner.options.connect().await?;
        Ok(ReadLease {
            connection: Some(connection),
            opened: Instant::now(),
            inner,
            _permit: permit,
        })
    }
}

impl Inner {
    fn take_idle(&self) -> Option<IdleConnection> {
        self.idle.lock().expect("read connections lock").pop()
    }
}

impl ReadLease<'_> {
    /// Returns the connection, for one statement that runs to its end.
    pub fn connection(&mut self) -> &mut PgConnection {
        self.connection
            .as_mut()
            .expect("a lease holds its connection until released")
    }

    /// Puts the connection back for reuse. Call it only after a statement returned
    /// successfully, because then Postgres has sent ReadyForQuery and waits for the next one.
    pub fn release(mut self) {
        let Some(connection) = self.connection.take() else {
            return;
        };
        let mut idle = self.inner.idle.lock().expect("read connections lock");
        idle.push(IdleConnection {
            connection,
            opened: self.opened,
            idle_since: Instant::now(),
        });

        // The least recently used connections are at the front, and acquire takes from the
        // back, so under light load these are the ones that would otherwise stay open idle.
        while idle
            .first()
            .is_some_and(|oldest| oldest.idle_since.elapsed() >= IDLE_TIMEOUT)
        {
            close(idle.remove(0).connection);
        }
    }
}

impl Drop for ReadLease<'_> {
    /// Drops an unreleased connection, which closes its socket. Its protocol state is
    /// unknown, so it gets no Terminate message; Postgres ends the backend on end of file.
    fn drop(&mut self) {
        drop(self.connection.take());
    }
}

/// Closes a healthy connection in the background, telling Postgres first.
fn close(connection: PgConnection) {
    tokio::spawn(async move {
        if let Err(error) = connection.close().await {
            tracing::warn!(%error, "closing an idle read connection failed");
        }
    });
}
