//! The claim loop: claim due rows up to the free slots, check each in its own task, and
//! sleep until the next row is due or the API announces new work.

pub mod learned;
pub mod observe;
pub mod pacing;
pub mod step;
pub mod write_back;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};
use uuid::Uuid;

use crate::cloudfront::CloudFront;
use crate::lifecycle::Policy;
use crate::lifecycle::schedule::{Delays, RecheckSchedule};
use crate::store::rate_limit::RateLimitSettings;
use crate::store::{self, StoreError, claims, retention};

/// Worker settings, built from the command line.
#[derive(Clone, Debug)]
pub struct WorkerSettings {
    /// Rows checked at the same time by this process.
    pub concurrency: usize,
    /// How long a claim keeps a row before another worker may take it.
    pub lease: Duration,
    /// The maximum time a worker sleeps without looking at the table, in case a notification
    /// was lost.
    pub safety_interval: Duration,
    pub schedule: RecheckSchedule,
    pub delays: Delays,
    pub policy: Policy,
    /// After this long, a deletion still under way is reported (but not abandoned).
    pub deletion_deadline: Duration,
    /// How long shutdown waits for checks in flight before handing their rows back.
    pub shutdown_timeout: Duration,
    /// The account-wide CloudFront rate limits, shared with every replica.
    pub rate_limits: RateLimitSettings,
    /// How long a deleted row and its history are kept before they are purged.
    pub retention: Duration,
    /// How often this replica tries to purge; only one replica purges at a time.
    pub purge_interval: Duration,
    /// Divides every recheck, retry and confirm delay, for benchmarks against a simulator
    /// whose clock runs this many times faster. 1 in production.
    pub time_scale: f64,
}

impl WorkerSettings {
    /// Returns the time scale, treating a value that is not a positive number as 1.
    pub fn scale(&self) -> f64 {
        if self.time_scale.is_finite() && self.time_scale > 0.0 {
            self.time_scale
        } else {
            1.0
        }
    }
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            concurrency: 16,
            lease: Duration::from_secs(120),
            safety_interval: Duration::from_secs(60),
            schedule: RecheckSchedule::default(),
            delays: Delays::default(),
            policy: Policy::default(),
            deletion_deadline: Duration::from_secs(3600),
            shutdown_timeout: Duration::from_secs(30),
            rate_limits: RateLimitSettings::default(),
            retention: Duration::from_secs(7 * 24 * 3600),
            purge_interval: Duration::from_secs(300),
            time_scale: 1.0,
        }
    }
}

/// Shared context of every check: the pool, the CloudFront client and the settings.
pub struct WorkerContext {
    pub pool: PgPool,
    pub cloudfront: CloudFront,
    pub settings: WorkerSettings,
    /// The wait durations the adaptive schedule has learned.
    pub learned: learned::LearnedCache,
    /// Batches the checks' fenced write-backs into shared statements.
    pub write_backs: write_back::WriteBackQueue,
}

/// How long a notification is left to gather others before the loop claims, so a burst
/// of notifications costs one claim and one probe.
const WAKE_DEBOUNCE: Duration = Duration::from_millis(25);

/// Batches one purge run deletes at most, so a large backlog is spread over several runs.
const PURGE_MAX_BATCHES: usize = 20;

/// A worker process's claim loop.
#[derive(Clone)]
pub struct Worker {
    context: Arc<WorkerContext>,
}

impl Worker {
    pub fn new(pool: PgPool, cloudfront: CloudFront, settings: WorkerSettings) -> Self {
        Worker {
            context: Arc::new(WorkerContext {
                write_backs: write_back::WriteBackQueue::new(pool.clone()),
                pool,
                cloudfront,
                settings,
                learned: learned::LearnedCache::default(),
            }),
        }
    }

    pub fn context(&self) -> &WorkerContext {
        &self.context
    }

    /// Claims what is due now and checks it, returning how many rows were checked. Tests
    /// use it to drive the lifecycle one round at a time.
    pub async fn run_once(&self) -> Result<usize, StoreError> {
        let settings = &self.context.settings;
        let claimed = claims::claim(
            &self.context.pool,
            settings.concurrency as i64,
            settings.lease.as_secs_f64(),
        )
        .await?;
        let count = claimed.len();
        for row in claimed {
            step::check(&self.context, row).await?;
        }
        Ok(count)
    }

    /// Runs until `shutdown` is cancelled, then lets checks in flight finish within the
    /// shutdown timeout and hands back the rows of those that did not.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), StoreError> {
        let settings = &self.context.settings;
        let pool = &self.context.pool;
        let held: Arc<Mutex<HashMap<Uuid, i64>>> = Arc::default();
        let mut in_flight = JoinSet::new();
        let mut listener = listen(pool).await;
        info!(
            concurrency = settings.concurrency,
            lease_seconds = settings.lease.as_secs_f64(),
            schedule = %settings.schedule,
            mutating_calls_per_second = settings.rate_limits.mutating.rate_per_second,
            reads_per_second = settings.rate_limits.read.rate_per_second,
            "worker started"
        );
        self.warn_if_calls_outlast_lease();
        let purger = tokio::spawn(purge_periodically(
            pool.clone(),
            settings.clone(),
            shutdown.clone(),
        ));

        loop {
            if shutdown.is_cancelled() {
                break;
            }

            let free = settings.concurrency.saturating_sub(in_flight.len());
            let mut claimed_all_free_slots = false;
            if free > 0 {
                match claims::claim(pool, free as i64, settings.lease.as_secs_f64()).await {
                    Ok(rows) => {
                        claimed_all_free_slots = rows.len() == free;
                        metrics::counter!("cloudfront_lifecycle_claims_total")
                            .increment(rows.len() as u64);
                        for claimed in rows {
                            let id = claimed.row.id;
                            held.lock()
                                .expect("lease map")
                                .insert(id, claimed.row.lease_token);
                            let context = self.context.clone();
                            let held = held.clone();
                            let span = observe::check_span(&claimed);
                            in_flight.spawn(tracing::Instrument::instrument(async move {
                                let timeout = pacing::check_timeout(context.settings.lease);
                                match tokio::time::timeout(timeout, step::check(&context, claimed)).await {
                                    Ok(Ok(_)) => {}
                                    Ok(Err(error)) => {
                                        error!(distribution.id = %id, %error, "check failed on the database; the row comes due again when its lease ends");
                                    }
                                    Err(_) => {
                                        warn!(distribution.id = %id, timeout_seconds = timeout.as_secs_f64(), "check took too long and was abandoned; the row comes due again when its lease ends");
                                    }
                                }
                                held.lock().expect("lease map").remove(&id);
                            }, span));
                        }
                        metrics::gauge!("cloudfront_lifecycle_checks_in_flight")
                            .set(in_flight.len() as f64);
                    }
                    Err(error) => {
                        error!(%error, "claiming due rows failed; retrying in a second");
                        tokio::select! {
                            _ = shutdown.cancelled() => break,
                            _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        }
                    }
                }
            }

            // More may be due: claim again as soon as there is room.
            if claimed_all_free_slots && in_flight.len() < settings.concurrency {
                continue;
            }

            let sleep_for = if in_flight.len() >= settings.concurrency || claimed_all_free_slots {
                // Full: only a finished check makes room.
                settings.safety_interval
            } else {
                self.sleep_until_due().await
            };

            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
                notification = receive(&mut listener) => {
                    if notification {
                        debug!("woken by a work notification");
                        gather_notifications(&mut listener, &shutdown).await;
                    }
                }
                _ = tokio::time::sleep(sleep_for) => {}
            }
        }

        self.drain(in_flight, held).await;
        if let Err(error) = purger.await {
            warn!(%error, "the purge task panicked");
        }
        Ok(())
    }

    /// Warns when one slow call could outlast the time the loop gives a check.
    fn warn_if_calls_outlast_lease(&self) {
        let budget = pacing::check_timeout(self.context.settings.lease);
        let call_timeout = self.context.cloudfront.call_timeout();
        if call_timeout + pacing::WRITE_BACK_MARGIN >= budget {
            warn!(
                call_timeout_seconds = call_timeout.as_secs_f64(),
                check_timeout_seconds = budget.as_secs_f64(),
                "the CloudFront call timeout does not fit in 0.8 x the lease, so a slow call may be abandoned mid-way; raise WORKER_LEASE_SECONDS or lower CLOUDFRONT_CALL_TIMEOUT_SECONDS"
            );
        }
    }

    /// Computes how long to sleep: until the next row is due, but never past the safety interval
    /// (jittered per replica so replicas do not probe in step).
    async fn sleep_until_due(&self) -> Duration {
        let settings = &self.context.settings;
        let safety = settings
            .safety_interval
            .mul_f64(0.9 + 0.2 * rand::random::<f64>());
        match claims::seconds_until_next_due(&self.context.pool).await {
            Ok(Some(seconds)) => Duration::from_secs_f64(seconds.max(0.0)).min(safety),
            Ok(None) => safety,
            Err(error) => {
                error!(%error, "probing for the next due row failed; sleeping a second");
                Duration::from_secs(1)
            }
        }
    }

    async fn drain(&self, mut in_flight: JoinSet<()>, held: Arc<Mutex<HashMap<Uuid, i64>>>) {
        let timeout = self.context.settings.shutdown_timeout;
        info!(
            in_flight = in_flight.len(),
            timeout_seconds = timeout.as_secs_f64(),
            "worker stopping; letting checks in flight finish"
        );
        let finished = tokio::time::timeout(timeout, async {
            while in_flight.join_next().await.is_some() {}
        })
        .await;
        if finished.is_err() {
            in_flight.abort_all();
            while in_flight.join_next().await.is_some() {}
        }

        let leases: Vec<(Uuid, i64)> = held.lock().expect("lease map").drain().collect();
        if !leases.is_empty() {
            match claims::release(&self.context.pool, &leases).await {
                Ok(released) => info!(released, "handed unfinished rows back for another worker"),
                Err(error) => {
                    warn!(%error, rows = leases.len(), "handing rows back failed; they come due again when their leases end")
                }
            }
        }
        info!("worker stopped");
    }
}

async fn listen(pool: &PgPool) -> Option<PgListener> {
    let mut listener = match PgListener::connect_with(pool).await {
        Ok(listener) => listener,
        Err(error) => {
            warn!(%error, "LISTEN connection failed; relying on the safety interval alone");
            return None;
        }
    };
    if let Err(error) = listener.listen(store::WORK_CHANNEL).await {
        warn!(%error, "LISTEN failed; relying on the safety interval alone");
        return None;
    }
    Some(listener)
}

/// Lets a burst of notifications arrive, then drops the ones already buffered: the claim
/// that follows sees every row they announced.
async fn gather_notifications(listener: &mut Option<PgListener>, shutdown: &CancellationToken) {
    tokio::select! {
        _ = shutdown.cancelled() => return,
        _ = tokio::time::sleep(WAKE_DEBOUNCE) => {}
    }
    if let Some(listener) = listener {
        while listener.next_buffered().is_some() {}
    }
}

/// Purges deleted rows past their retention every purge interval (jittered, so replicas
/// do not collide), until `shutdown` is cancelled.
async fn purge_periodically(pool: PgPool, settings: WorkerSettings, shutdown: CancellationToken) {
    loop {
        let pause = settings
            .purge_interval
            .mul_f64(0.9 + 0.2 * rand::random::<f64>());
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
        let retention = settings.retention.as_secs_f64();
        match retention::purge_deleted(&pool, retention, PURGE_MAX_BATCHES).await {
            Ok(Some(purged)) if purged > 0 => {
                metrics::counter!("cloudfront_lifecycle_purged_rows_total").increment(purged);
                info!(
                    purged,
                    retention_seconds = retention,
                    "purged deleted rows past their retention"
                );
            }
            Ok(_) => {}
            Err(error) => warn!(%error, "purging deleted rows failed; trying again next interval"),
        }
    }
}

/// Waits for a work notification. Returns false after an error, having paused a moment so a
/// database outage does not spin this loop; PgListener reconnects on the next call.
async fn receive(listener: &mut Option<PgListener>) -> bool {
    match listener {
        Some(listener) => match listener.recv().await {
            Ok(_) => true,
            Err(error) => {
                warn!(%error, "work notification channel failed; reconnecting");
                tokio::time::sleep(Duration::from_secs(1)).await;
                false
            }
        },
        None => std::future::pending().await,
    }
}
