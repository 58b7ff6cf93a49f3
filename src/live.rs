//! One LISTEN connection per process that fans history notifications out to every watcher.
//!
//! A trigger on `distribution_events` sends the distribution id on [`EVENTS_CHANNEL`] when a
//! history row commits, on whichever replica wrote it. Watchers treat a notification only as
//! a hint to re-read the history after the last row they sent, so the table stays the source
//! of truth and a missed notification costs latency, not data.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use uuid::Uuid;

/// The channel the history trigger notifies (see the operability migration).
pub const EVENTS_CHANNEL: &str = "cloudfront_lifecycle_events";

/// Notifications buffered per watcher before it lags; a lagging watcher re-reads its history.
const CAPACITY: usize = 1024;

/// A message from the shared listener to every watcher.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// A history row for this distribution committed.
    Distribution(Uuid),
    /// Notifications may have been missed (the connection dropped): every watcher re-reads.
    Resync,
}

/// The fan-out point that API handlers subscribe to.
#[derive(Clone)]
pub struct EventHub {
    sender: broadcast::Sender<Change>,
    shutdown: CancellationToken,
}

impl EventHub {
    /// Starts the shared listener; it stops when `shutdown` is cancelled.
    pub fn spawn(pool: PgPool, shutdown: CancellationToken) -> Self {
        let (sender, _) = broadcast::channel(CAPACITY);
        let hub = EventHub {
            sender: sender.clone(),
            shutdown: shutdown.clone(),
        };
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = listen(pool, sender) => {}
            }
        });
        hub
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.sender.subscribe()
    }

    /// Cancelled when the process shuts down, so open streams end and the server can stop.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }
}

async fn listen(pool: PgPool, sender: broadcast::Sender<Change>) {
    loop {
        let mut listener = match connect(&pool).await {
            Ok(listener) => listener,
            Err(error) => {
                warn!(%error, channel = EVENTS_CHANNEL, "LISTEN for history notifications failed; retrying in a second, watchers poll meanwhile");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        info!(
            channel = EVENTS_CHANNEL,
            "listening for history notifications"
        );
        // Rows may have committed while no connection listened.
        let _ = sender.send(Change::Resync);

        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => match Uuid::parse_str(notification.payload()) {
                    Ok(id) => {
                        // No receiver is not an error: nobody is watching right now.
                        let _ = sender.send(Change::Distribution(id));
                    }
                    Err(error) => {
                        debug!(payload = notification.payload(), %error, "ignoring a history notification that is not a UUID");
                    }
                },
                Ok(None) => {
                    warn!(
                        channel = EVENTS_CHANNEL,
                        "history notification connection lost; reconnecting"
                    );
                    let _ = sender.send(Change::Resync);
                }
                Err(error) => {
                    warn!(%error, channel = EVENTS_CHANNEL, "history notification channel failed; reconnecting in a second");
                    let _ = sender.send(Change::Resync);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    break;
                }
            }
        }
    }
}

async fn connect(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(EVENTS_CHANNEL).await?;
    Ok(listener)
}
