//! The learned windows of waits for Deployed, cached in the worker so the adaptive schedule
//! costs one query at most every [`REFRESH_INTERVAL`], and only while rows are waiting.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::Mutex;
use tracing::{debug, warn};

use super::WorkerContext;
use crate::lifecycle::Status;
use crate::lifecycle::schedule::{LearnedWindow, RecheckSchedule, WaitKind};
use crate::store::Distribution;
use crate::store::waits::{self, LearnedWindows};

/// How long cached windows are used before they are read again, divided by the time scale.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(30);

/// The shortest refresh interval however large the time scale.
const MIN_REFRESH_INTERVAL: Duration = Duration::from_millis(200);

/// The cache; empty until a waiting row first needs it.
#[derive(Debug, Default)]
pub struct LearnedCache {
    cached: Mutex<Option<(Instant, LearnedWindows)>>,
}

impl LearnedCache {
    /// Returns the learned window of `kind`, reading the table when the cache is older than
    /// the refresh interval. A failed read is logged and the old value kept until the next
    /// interval, so a database hiccup does not turn into one query per check.
    pub async fn window(&self, context: &WorkerContext, kind: WaitKind) -> Option<LearnedWindow> {
        let interval = REFRESH_INTERVAL
            .div_f64(context.settings.scale())
            .max(MIN_REFRESH_INTERVAL);
        let mut cached = self.cached.lock().await;
        let fresh = cached
            .as_ref()
            .is_some_and(|(read_at, _)| read_at.elapsed() < interval);
        if !fresh {
            let previous = cached.map(|(_, windows)| windows).unwrap_or_default();
            let windows = match waits::learned_windows(&context.pool).await {
                Ok(windows) => {
                    debug!(?windows, "learned windows of waits for Deployed refreshed");
                    windows
                }
                Err(error) => {
                    warn!(%error, "reading the learned wait windows failed; keeping the previous ones");
                    previous
                }
            };
            *cached = Some((Instant::now(), windows));
        }
        cached.as_ref().and_then(|(_, windows)| windows.get(kind))
    }
}

/// Returns the kind of wait a row in `status` is in, or `None` when it is not waiting for
/// Deployed.
pub fn wait_kind(status: Status) -> Option<WaitKind> {
    WaitKind::of_status(status)
}

/// Returns the time a row has spent in its current wait at `now` (database time).
pub fn elapsed_in_wait(row: &Distribution, now: DateTime<Utc>) -> Duration {
    row.waiting_since
        .and_then(|since| (now - since).to_std().ok())
        .unwrap_or(Duration::ZERO)
}

/// Returns the learned window for a row's wait when the schedule is adaptive, or `None`.
pub async fn window_for(context: &WorkerContext, status: Status) -> Option<LearnedWindow> {
    if !matches!(context.settings.schedule, RecheckSchedule::Adaptive { .. }) {
        return None;
    }
    let kind = wait_kind(status)?;
    context.learned.window(context, kind).await
}
