//! The claim loop: claim due rows up to the free slots and the CloudFront budget, check
//! each in its own task, and sleep until the next row is claimable or the API announces new
//! work.

pub mod learned;
pub mod observe;
pub mod pacing;
pub mod step;
pub mod write_back;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    /// The maximum time a worker sleeps without probing the table, in case a notification
    /// was lost while the LISTEN connection looked healthy.
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
            safety_interval: Duration::from_secs(300),
            schedule: RecheckSchedule::default(),
            delays: Delays::default(),
            policy: Policy::default(),
            deletion_deadline: Duration::from_secs(3600),
            shutdown_timeout: Duration::from_secs(30),
            rate_limits: RateLimitSettings::default(),
            retention: Duration::from_secs(7 * 24 * 3600),
            purge_interval: Duration::from_secs(3600),
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
/// of notifications costs one claim.
const WAKE_DEBOUNCE: Duration = Duration::from_millis(25);

/// How long the loop waits after a claim that filled every free slot before it claims
/// again with fewer than a batch of slots free.
const BATCH_WAIT: Duration = Duration::from_millis(5);

/// The shortest sleep before a planned claim, so rows waiting for rate-limit tokens are
/// claimed a few tokens' worth at a time rather than with one statement per token.
const MIN_CLAIM_PAUSE: Duration = Duration::from_millis(20);

/// Delay from a finished check to the next probe, because the check's write-back may have
/// made its row due before the planned wake-up. Checks that finish within it share a probe.
const PROBE_AFTER_CHECK: Duration = Duration::from_millis(20);

/// How long the loop pauses after a failed claim or probe.
const ERROR_PAUSE: Duration = Duration::from_secs(1);

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
    ///
    /// The loop claims only when it expects a claimable row: when a probe found one due (and
    /// its bucket holding a token), when the API announced new work, or while rows are
    /// backed up. Otherwise it probes, which is one cheap statement, and sleeps until the
    /// probed time or the safety interval. While rows are backed up it lets finished checks
    /// free a batch of slots before the next claim, so one statement claims many rows.
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
            safety_interval_seconds = settings.safety_interval.as_secs_f64(),
            "worker started"
        );
        self.warn_if_calls_outlast_lease();
        let purger = tokio::spawn(purge_periodically(
            pool.clone(),
            settings.clone(),
            shutdown.clone(),
        ));

        let batch = claim_batch(settings.concurrency);
        let mut plan = Plan::start(Instant::now());
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            let now = Instant::now();
            let free = settings.concurrency.saturating_sub(in_flight.len());

            if plan.may_claim(now, free, batch) {
                match self.claim(free).await {
                    Ok(rows) => {
                        let count = rows.len();
                        metrics::counter!("cloudfront_lifecycle_claims_total")
                            .increment(count as u64);
                        for claimed in rows {
                            self.spawn_check(claimed, &mut in_flight, &held);
                        }
                        metrics::gauge!("cloudfront_lifecycle_checks_in_flight")
                            .set(in_flight.len() as f64);
                        plan.after_claim(Instant::now(), count, free);
                    }
                    Err(error) => {
                        error!(%error, "claiming due rows failed; retrying in a second");
                        plan.retry_after_error(Instant::now());
                    }
                }
                continue;
            }

            if plan.probe_due(now) {
                if listener.is_none() {
                    listener = listen(pool).await;
                }
                match claims::outlook(pool, &settings.rate_limits).await {
                    Ok(outlook) => {
                        let safety = jittered(settings.safety_interval);
                        plan.after_probe(Instant::now(), &outlook, safety);
                    }
                    Err(error) => {
                        error!(%error, "probing for the next due row failed; retrying in a second");
                        plan.retry_after_error(Instant::now());
                    }
                }
                continue;
            }

            let wake_at = plan.wake_at(free, batch);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {
                    plan.after_check(Instant::now());
                }
                wake = receive(&mut listener) => match wake {
                    Wake::Work => {
                        debug!("woken by a work notification");
                        gather_notifications(&mut listener, &shutdown).await;
                        plan.claim_now(Instant::now());
                    }
                    // A notification may have been lost while the connection was down.
                    Wake::Reconnected | Wake::Failed => plan.probe_now(Instant::now()),
                },
                _ = tokio::time::sleep_until(wake_at.into()) => {}
            }
        }

        self.drain(in_flight, held).await;
        if let Err(error) = purger.await {
            warn!(%error, "the purge task panicked");
        }
        Ok(())
    }

    /// Claims up to `free` due rows within the CloudFront budget.
    async fn claim(&self, free: usize) -> Result<Vec<claims::Claimed>, StoreError> {
        let settings = &self.context.settings;
        let request = claims::ClaimRequest {
            limit: free,
            lease_seconds: settings.lease.as_secs_f64(),
            rate_limits: &settings.rate_limits,
            prioritize_waits: matches!(settings.schedule, RecheckSchedule::Adaptive { .. }),
        };
        claims::claim_within_budget(&self.context.pool, &request).await
    }

    /// Checks a claimed row in its own task, within the check timeout, holding its lease
    /// token so shutdown can hand the row back.
    fn spawn_check(
        &self,
        claimed: claims::Claimed,
        in_flight: &mut JoinSet<()>,
        held: &Arc<Mutex<HashMap<Uuid, i64>>>,
    ) {
        let id = claimed.row.id;
        held.lock()
            .expect("lease map")
            .insert(id, claimed.row.lease_token);
        let context = self.context.clone();
        let held = held.clone();
        let span = observe::check_span(&claimed);
        in_flight.spawn(tracing::Instrument::instrument(
            async move {
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
            },
            span,
        ));
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

/// Returns how many free slots a backed-up loop waits for before it claims: a quarter of
/// the concurrency, so a claim takes several rows while most slots stay busy.
fn claim_batch(concurrency: usize) -> usize {
    (concurrency / 4).max(1)
}

/// Scales `interval` by a random factor between 0.9 and 1.1, so replicas do not probe in
/// step.
fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(0.9 + 0.2 * rand::random::<f64>())
}

/// When the claim loop next claims and next probes.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Plan {
    /// When a claim is expected to find a row; `None` when none is known to come due.
    claim_at: Option<Instant>,
    /// When the next probe runs: at the latest after the safety interval.
    probe_at: Instant,
    /// Set by a claim that filled every free slot: rows are backed up, so the next claim
    /// waits for a batch of free slots (or [`BATCH_WAIT`] after this time).
    backlog_since: Option<Instant>,
}

impl Plan {
    /// Plans a probe at once, because a starting worker has no due time yet.
    fn start(now: Instant) -> Self {
        Plan {
            claim_at: None,
            probe_at: now,
            backlog_since: None,
        }
    }

    /// Returns whether to claim now with `free` free slots.
    fn may_claim(&self, now: Instant, free: usize, batch: usize) -> bool {
        free > 0 && self.claim_at.is_some_and(|at| at <= now) && self.batch_ready(now, free, batch)
    }

    fn batch_ready(&self, now: Instant, free: usize, batch: usize) -> bool {
        match self.backlog_since {
            Some(since) => free >= batch || now >= since + BATCH_WAIT,
            None => true,
        }
    }

    fn probe_due(&self, now: Instant) -> bool {
        self.probe_at <= now
    }

    /// Plans the step after a claim of `claimed` rows into `free` slots. A claim that filled
    /// every slot may have left rows due, so the loop claims again once a batch of slots is
    /// free. Any other claim took what it could, and a probe finds the next row. After a
    /// claim that found nothing, the probe waits a moment, so a row the probe counts as
    /// claimable but the claim cannot take (locked by a long transaction) cannot spin the
    /// loop.
    fn after_claim(&mut self, now: Instant, claimed: usize, free: usize) {
        if claimed == free {
            self.claim_at = Some(now);
            self.backlog_since = Some(now);
            return;
        }
        self.claim_at = None;
        self.backlog_since = None;
        self.probe_at = if claimed == 0 {
            now + MIN_CLAIM_PAUSE
        } else {
            now
        };
    }

    /// Plans the next claim from a probe: at once when a row is claimable, at the probed
    /// time when it is within the safety interval, and otherwise only after the next probe.
    fn after_probe(&mut self, now: Instant, outlook: &claims::Outlook, safety: Duration) {
        self.probe_at = now + safety;
        self.backlog_since = None;
        self.claim_at = match outlook.seconds_until_claimable() {
            Some(seconds) if seconds <= 0.0 => Some(now),
            Some(seconds) => {
                let wait = Duration::from_secs_f64(seconds).max(MIN_CLAIM_PAUSE);
                (wait < safety).then(|| now + wait)
            }
            None => None,
        };
    }

    /// Plans a probe shortly after a check finished, because its write-back may have made
    /// its row due before the planned wake-up. A claim planned before then makes that probe
    /// unneeded: a claim that leaves slots free is followed by a probe anyway, and a
    /// backed-up loop claims again soon.
    fn after_check(&mut self, now: Instant) {
        let soon = now + PROBE_AFTER_CHECK;
        let claim_planned = self.claim_at.is_some_and(|at| at <= soon);
        if !claim_planned && self.backlog_since.is_none() {
            self.probe_at = self.probe_at.min(soon);
        }
    }

    fn claim_now(&mut self, now: Instant) {
        self.claim_at = Some(now);
        self.backlog_since = None;
    }

    fn probe_now(&mut self, now: Instant) {
        self.probe_at = now;
    }

    fn retry_after_error(&mut self, now: Instant) {
        self.claim_at = None;
        self.backlog_since = None;
        self.probe_at = now + ERROR_PAUSE;
    }

    /// Returns when to wake without an event: the next probe, or the planned claim when a
    /// slot is free for it.
    fn wake_at(&self, free: usize, batch: usize) -> Instant {
        let claim = match (self.claim_at, free > 0) {
            (Some(at), true) => match self.backlog_since {
                // Short of a batch, a finished check wakes the loop before this.
                Some(since) if free < batch => Some(at.max(since + BATCH_WAIT)),
                _ => Some(at),
            },
            _ => None,
        };
        claim.map_or(self.probe_at, |claim| claim.min(self.probe_at))
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
        let pause = jittered(settings.purge_interval);
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

/// Event reported by the work notification channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wake {
    /// A notification arrived.
    Work,
    /// The connection was lost and is back (PgListener reconnects before it reports the
    /// loss), so notifications sent meanwhile were missed.
    Reconnected,
    /// Receiving failed, after a pause so a database outage does not spin the loop; the next
    /// call reconnects.
    Failed,
}

/// Waits for a work notification, or forever without a listener.
async fn receive(listener: &mut Option<PgListener>) -> Wake {
    match listener {
        Some(listener) => match listener.try_recv().await {
            Ok(Some(_)) => Wake::Work,
            Ok(None) => {
                warn!(
                    "work notification connection was lost and reconnected; probing for work missed meanwhile"
                );
                Wake::Reconnected
            }
            Err(error) => {
                warn!(%error, "work notification channel failed; reconnecting");
                tokio::time::sleep(ERROR_PAUSE).await;
                Wake::Failed
            }
        },
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{BATCH_WAIT, MIN_CLAIM_PAUSE, PROBE_AFTER_CHECK, Plan, claim_batch};
    use crate::store::claims::Outlook;

    const SAFETY: Duration = Duration::from_secs(300);

    #[test]
    fn plan_idle_probe_plans_no_claim() {
        let now = Instant::now();
        let mut plan = Plan::start(now);
        assert!(plan.probe_due(now));
        plan.after_probe(now, &Outlook::default(), SAFETY);
        assert_eq!(plan.claim_at, None);
        assert_eq!(plan.wake_at(16, 4), now + SAFETY);
    }

    #[test]
    fn plan_claims_at_probed_due_time() {
        let now = Instant::now();
        let mut plan = Plan::start(now);
        let outlook = Outlook {
            next_read_due: Some(7.0),
            ..Outlook::default()
        };
        plan.after_probe(now, &outlook, SAFETY);
        let due = now + Duration::from_secs(7);
        assert_eq!(plan.wake_at(16, 4), due);
        assert!(!plan.may_claim(now, 16, 4));
        assert!(plan.may_claim(due, 16, 4));
    }

    #[test]
    fn plan_due_beyond_safety_waits_for_probe() {
        let now = Instant::now();
        let mut plan = Plan::start(now);
        let outlook = Outlook {
            next_read_due: Some(1000.0),
            ..Outlook::default()
        };
        plan.after_probe(now, &outlook, SAFETY);
        assert_eq!(plan.claim_at, None);
        assert_eq!(plan.wake_at(16, 4), now + SAFETY);
    }

    #[test]
    fn plan_token_wait_has_minimum_pause() {
        let now = Instant::now();
        let mut plan = Plan::start(now);
        let outlook = Outlook {
            next_read_due: Some(-3.0),
            read_token_in: 0.001,
            ..Outlook::default()
        };
        plan.after_probe(now, &outlook, SAFETY);
        assert_eq!(plan.claim_at, Some(now + MIN_CLAIM_PAUSE));
    }

    #[test]
    fn plan_backlog_waits_for_batch() {
        let now = Instant::now();
        let mut plan = Plan::start(now);
        plan.claim_now(now);
        plan.after_claim(now, 16, 16);
        assert!(!plan.may_claim(now, 1, 4), "claimed with one slot free");
        assert!(plan.may_claim(now, 4, 4), "did not claim with a batch free");
        assert!(
            plan.may_claim(now + BATCH_WAIT, 1, 4),
            "did not claim after the batch wait"
        );
    }

    #[test]
    fn plan_partial_claim_probes_next() {
        let now = Instant::now();
        let mut plan = Plan::start(now + SAFETY);
        plan.claim_now(now);
        plan.after_claim(now, 3, 16);
        assert_eq!(plan.claim_at, None);
        assert!(plan.probe_due(now));
    }

    #[test]
    fn plan_empty_claim_pauses_probe() {
        let now = Instant::now();
        let mut plan = Plan::start(now);
        plan.claim_now(now);
        plan.after_claim(now, 0, 16);
        assert!(!plan.probe_due(now));
        assert!(plan.probe_due(now + MIN_CLAIM_PAUSE));
    }

    #[test]
    fn plan_finished_check_probes_soon() {
        let now = Instant::now();
        let mut plan = Plan::start(now);
        plan.after_probe(now, &Outlook::default(), SAFETY);
        plan.after_check(now);
        assert_eq!(plan.probe_at, now + PROBE_AFTER_CHECK);
    }

    #[test]
    fn claim_batch_is_a_quarter() {
        assert_eq!(claim_batch(64), 16);
        assert_eq!(claim_batch(2), 1);
    }
}
