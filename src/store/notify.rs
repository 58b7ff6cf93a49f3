//! A debounced wake-up for workers: the API may record many rows in a burst, and one
//! payload-free NOTIFY per burst is enough, since workers re-read the table anyway.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::Notify;

/// How long a burst of wake-ups is gathered into one NOTIFY.
const DEBOUNCE: Duration = Duration::from_millis(20);

/// Sends the work notification on behalf of request handlers, off their path.
#[derive(Clone)]
pub struct WorkNotifier {
    pending: Arc<Notify>,
}

impl WorkNotifier {
    /// Starts the task that sends the notifications; it lives as long as the runtime.
    pub fn spawn(pool: PgPool) -> Self {
        let pending = Arc::new(Notify::new());
        let signal = pending.clone();
        tokio::spawn(async move {
            loop {
                signal.notified().await;
                tokio::time::sleep(DEBOUNCE).await;
                if let Err(error) = super::notify_work(&pool).await {
                    tracing::warn!(%error, "sending the work notification failed; workers will find the work at their next probe");
                }
            }
        });
        WorkNotifier { pending }
    }

    pub fn wake(&self) {
        self.pending.notify_one();
    }
}
