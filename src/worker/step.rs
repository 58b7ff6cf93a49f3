//! One check of one claimed row: observe CloudFront, decide, act, and write the result back
//! under the lease.

use std::time::Duration;

use tracing::{error, info, warn};
use uuid::Uuid;

use super::WorkerContext;
use super::pacing::{Admission, Pacing};
use crate::cloudfront::Remote;
use crate::lifecycle::schedule::{ESTIMATE_SPAN, LearnedWindow, WaitKind, WaitProgress};
use crate::lifecycle::{
    self, Action, CallError, Decision, ErrorClass, Failures, Intent, Observed, Status, Stored, Wait,
};
use crate::store::claims::{self, Claimed, CreateOutcome, WriteBack};
use crate::store::{Distribution, StoreError};

/// Calls one check may make before it stops and comes back later. A normal deletion step
/// needs at most three (read, disable or delete, and a re-read after a stale ETag); the cap
/// keeps a distribution that keeps changing under us from holding a worker.
const MAX_CALLS_PER_CHECK: usize = 6;

/// The outcome of a check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The result was written back.
    Written,
    /// The lease was lost (another worker, or new user intent); the result was dropped.
    LeaseLost,
}

/// Runs one check of a claimed row.
pub async fn check(context: &WorkerContext, claimed: Claimed) -> Result<Outcome, StoreError> {
    let check_started = std::time::Instant::now();
    let row = claimed.row;
    let id = row.id;
    let lease_token = row.lease_token;

    let mut state = StepState::new(&row);
    let mut observed = Observed::Nothing;
    let mut last_read: Option<Remote> = None;
    let mut calls = 0;
    let waiting = super::learned::wait_kind(row.status).is_some();
    let elapsed = super::learned::elapsed_in_wait(&row, claimed.claimed_at);
    let window = if waiting {
        super::learned::window_for(context, row.status).await
    } else {
        None
    };
    // Without a learned window, the first few rechecks of a wait count as early.
    let early_in_wait = match window {
        Some(window) => !window.is_likely_done(elapsed),
        None => row.checks < super::pacing::EARLY_RECHECKS,
    };
    let mut pacing = Pacing::start(context, early_in_wait, claimed.token);
    let mut deferred_for = None;

    let final_decision = loop {
        let decision = lifecycle::decide(&state.stored, observed, &context.settings.policy);
        state.apply(&decision);

        let action = decision.action.clone();
        if matches!(action, Action::Recheck(_) | Action::Settle) {
            break decision;
        }
        if calls == MAX_CALLS_PER_CHECK {
            warn!(distribution.id = %id, cloudfront.id = ?state.cloudfront_id, "call limit of one check reached; rechecking shortly");
            break Decision {
                action: Action::Recheck(Wait::Confirm),
                ..decision
            };
        }

        // Take a token from the account-wide rate limit within the time the lease leaves; a
        // row that cannot get one in time is looked at again later.
        if let Admission::Later(delay) = pacing
            .admit(context, &row, decision.status, &action)
            .await?
        {
            deferred_for = Some(delay);
            break Decision {
                action: Action::Recheck(Wait::Confirm),
                ..decision
            };
        }

        // Record a status change before the call, so the history and the API show what is
        // under way; the write is fenced like every other.
        if decision.status != row_status_in_db(&state) || matches!(action, Action::Create) {
            let create = matches!(action, Action::Create);
            let written = claims::record_before_call(
                &context.pool,
                id,
                lease_token,
                decision.status,
                decision.reason,
                create,
            )
            .await?;
            if !written {
                return drop_result(context, &row, &state).await;
            }
            state.status_in_db = decision.status;
            state.create_attempted |= create;
        }

        calls += 1;
        observed = match action {
            Action::Read => {
                let cloudfront_id = state
                    .cloudfront_id
                    .clone()
                    .expect("Read needs a CloudFront id");
                let result = context.cloudfront.get(&cloudfront_id).await;
                count_call(context, "GetDistribution", &result);
                if calls == 1
                    && let Ok(remote) = &result
                {
                    // The wait was seen over when the read returned: the claim's database time
                    // plus the time this check has taken since.
                    let seen_at = claimed.claimed_at
                        + chrono::Duration::from_std(check_started.elapsed()).unwrap_or_default();
                    record_finished_wait(context, &row, seen_at, &remote.snapshot).await;
                }
                Observed::Read(remember(&mut state, &mut last_read, result))
            }
            Action::Create => {
                let result = context
                    .cloudfront
                    .create(id, &row.caller_reference, &row.spec)
                    .await;
                count_call(context, "CreateDistributionWithTags", &result);
                if let Ok(remote) = &result {
                    info!(distribution.id = %id, cloudfront.id = %remote.id, "created in CloudFront");
                    // The create carried the spec read at claim time.
                    state.stored.update_pending = false;
                    state.applied_spec_version = Some(row.spec_version);
                }
                if let Err(error) = &result
                    && let Some(outcome) = create_outcome(error)
                {
                    let attempted =
                        claims::record_create_outcome(&context.pool, id, outcome).await?;
                    state.create_attempted = attempted;
                    state.stored.create_attempted = attempted;
                }
                Observed::Created(remember(&mut state, &mut last_read, result))
            }
            Action::Adopt { cloudfront_id } => {
                info!(distribution.id = %id, cloudfront.id = %cloudfront_id, "CallerReference already used; adopting the distribution it created");
                state.cloudfront_id = Some(cloudfront_id);
                state.stored.has_cloudfront_id = true;
                calls -= 1;
                Observed::Nothing
            }
            Action::Update { etag } => {
                let cloudfront_id = state
                    .cloudfront_id
                    .clone()
                    .expect("Update needs a CloudFront id");
                let config = last_read
                    .as_ref()
                    .and_then(|remote| remote.config.clone())
                    .expect("Update follows a read that returned the config");
                let result = context
                    .cloudfront
                    .update(&cloudfront_id, &etag, config, &row.spec)
                    .await;
                count_call(context, "UpdateDistribution", &result);
                if let Ok(remote) = &result {
                    info!(distribution.id = %id, cloudfront.id = %cloudfront_id, spec_version = row.spec_version, "requested configuration sent");
                    state.stored.update_pending = false;
                    state.stored.update_etag = Some(remote.snapshot.etag.clone());
                    state.applied_spec_version = Some(row.spec_version);
                }
                Observed::Updated(remember(&mut state, &mut last_read, result))
            }
            Action::Disable { etag } => {
                let cloudfront_id = state
                    .cloudfront_id
                    .clone()
                    .expect("Disable needs a CloudFront id");
                let config = last_read
                    .as_ref()
                    .and_then(|remote| remote.config.clone())
                    .expect("Disable follows a read that returned the config");
                let result = context
                    .cloudfront
                    .disable(&cloudfront_id, &etag, config)
                    .await;
                count_call(context, "UpdateDistribution", &result);
                Observed::Disabled(remember(&mut state, &mut last_read, result))
            }
            Action::Delete { etag } => {
                let cloudfront_id = state
                    .cloudfront_id
                    .clone()
                    .expect("Delete needs a CloudFront id");
                let result = context.cloudfront.delete(&cloudfront_id, &etag).await;
                count_call(context, "DeleteDistribution", &result);
                if let Err(error) = &result {
                    log_call_error(id, &state, "DeleteDistribution", error);
                }
                Observed::Deleted(result)
            }
            Action::Recheck(_) | Action::Settle => unreachable!("handled above"),
        };
        pacing.after_call(context, id, &observed).await;
    };

    // The status the row waits in after this check decides which learned window applies.
    let next_window = match final_decision.action {
        Action::Recheck(Wait::Deploy) => {
            super::learned::window_for(context, final_decision.status).await
        }
        _ => None,
    };
    let mut update = state.write_back(
        &final_decision,
        &row,
        claimed.claimed_at,
        next_window,
        context,
    );
    if let Some(delay) = deferred_for {
        update.next_check_in = Some(delay.as_secs_f64());
    }
    log_outcome(id, &row, &state, &final_decision, &update);

    let status = update.status;
    let error_code = update.error.as_ref().map(|(code, _)| code.clone());
    let written = context.write_backs.write(id, lease_token, update).await?;
    if !written {
        return drop_result(context, &row, &state).await;
    }
    super::observe::record_write_back(&row, status, error_code, claimed.claimed_at);
    Ok(Outcome::Written)
}

/// Records how long a wait took when the first read of a check finds it over: a row that
/// waited for a deploy now reads Deployed, or one that waited for its disable reads Deployed
/// and disabled. The wait ended between the previous check (the row's last write-back) and
/// `seen_at`. The midpoint is recorded, but no earlier than [`ESTIMATE_SPAN`] before
/// `seen_at`. A failure is logged and otherwise ignored, because the observation only tunes
/// the schedule.
///
/// NOTE: `updated_at` is used as the time of the previous check, but a write-back moves it
/// only when a field the API shows changes. During a quiet wait it stays near the wait's
/// start, so most waits are recorded as ending [`ESTIMATE_SPAN`] before `seen_at`: for a
/// wait seen during the dense checks, that is half a dense interval early on average. It
/// also moves when a user changes the row during the wait, which makes that one observation
/// look shorter than it was.
async fn record_finished_wait(
    context: &WorkerContext,
    row: &Distribution,
    seen_at: chrono::DateTime<chrono::Utc>,
    snapshot: &lifecycle::Snapshot,
) {
    let Some(kind) = super::learned::wait_kind(row.status) else {
        return;
    };
    let Some(since) = row.waiting_since else {
        return;
    };
    let finished = snapshot.deployed && (kind == WaitKind::Deploy || !snapshot.enabled);
    if !finished {
        return;
    }
    let last_in_progress = row.updated_at.max(since);
    let midpoint = last_in_progress + (seen_at - last_in_progress) / 2;
    let span = ESTIMATE_SPAN.div_f64(context.settings.scale());
    let latest_start = seen_at - chrono::Duration::from_std(span).unwrap_or_default();
    let seconds = (midpoint.max(latest_start) - since).as_seconds_f64();
    if let Err(error) = crate::store::waits::record(&context.pool, kind, seconds).await {
        warn!(distribution.id = %row.id, %error, "recording how long the wait took failed");
    }
}

/// Classifies a failed create by whether it may have made a distribution. An already used
/// CallerReference is left out because its distribution is adopted.
fn create_outcome(error: &CallError) -> Option<CreateOutcome> {
    match error.class {
        ErrorClass::Transient => Some(CreateOutcome::Uncertain),
        // NOTE: with SDK retries (CLOUDFRONT_MAX_ATTEMPTS > 1) an earlier attempt of the
        // same call may have timed out after CloudFront created the distribution; a rejection
        // of the retry is still read as definitive. Such a retry usually gets
        // DistributionAlreadyExists instead, which is adopted.
        ErrorClass::Permanent | ErrorClass::PermanentUnlessSoon | ErrorClass::Throttled => {
            Some(CreateOutcome::Rejected)
        }
        _ => None,
    }
}

/// Drops this check's result after its lease was lost, but keeps what CloudFront returned about
/// a distribution it created: the next worker then reads that one instead of creating again,
/// and a create that landed after the row was deleted is deleted too rather than orphaned.
async fn drop_result(
    context: &WorkerContext,
    row: &Distribution,
    state: &StepState,
) -> Result<Outcome, StoreError> {
    if let (Some(cloudfront_id), Some(arn), Some(domain)) =
        (&state.cloudfront_id, &state.arn, &state.domain_name)
        && row.cloudfront_id.is_none()
    {
        claims::record_created_identity(&context.pool, row.id, cloudfront_id, arn, domain).await?;
    }
    Ok(lease_lost(row.id, state))
}

fn row_status_in_db(state: &StepState) -> Status {
    state.status_in_db
}

fn lease_lost(id: Uuid, state: &StepState) -> Outcome {
    metrics::counter!("cloudfront_lifecycle_lease_lost_total").increment(1);
    warn!(distribution.id = %id, cloudfront.id = ?state.cloudfront_id, "lease lost: another worker or a newer request owns the row now; dropping this result");
    Outcome::LeaseLost
}

fn count_call<T>(context: &WorkerContext, operation: &'static str, result: &Result<T, CallError>) {
    let outcome = match result {
        Ok(_) => "ok",
        Err(error) => match error.class {
            ErrorClass::Throttled => "throttled",
            _ => "error",
        },
    };
    let _ = context;
    metrics::counter!("cloudfront_lifecycle_cloudfront_calls_total", "operation" => operation, "outcome" => outcome)
        .increment(1);
}

/// Keeps what a successful call returned: the identity for the write-back, and the whole
/// response so a following update can send its config back.
fn remember(
    state: &mut StepState,
    last_read: &mut Option<Remote>,
    result: Result<Remote, CallError>,
) -> Result<lifecycle::Snapshot, CallError> {
    match result {
        Ok(remote) => {
            state.cloudfront_id = Some(remote.id.clone());
            state.stored.has_cloudfront_id = true;
            state.arn = Some(remote.arn.clone());
            state.domain_name = Some(remote.domain_name.clone());
            state.etag = Some(remote.snapshot.etag.clone());
            state.cloudfront_status = Some(remote.status.clone());
            state.cloudfront_enabled = Some(remote.snapshot.enabled);
            let snapshot = remote.snapshot.clone();
            *last_read = Some(remote);
            Ok(snapshot)
        }
        Err(error) => {
            log_call_error(state.id, state, "CloudFront call", &error);
            Err(error)
        }
    }
}

fn log_call_error(id: Uuid, state: &StepState, operation: &str, error: &CallError) {
    match error.class {
        ErrorClass::Permanent | ErrorClass::PermanentUnlessSoon => warn!(
            distribution.id = %id, cloudfront.id = ?state.cloudfront_id, operation,
            error.code = %error.code, error.message = %error.message, "CloudFront rejected the call"
        ),
        _ => info!(
            distribution.id = %id, cloudfront.id = ?state.cloudfront_id, operation,
            error.code = %error.code, error.message = %error.message, "CloudFront call failed"
        ),
    }
}

fn log_outcome(
    id: Uuid,
    row: &Distribution,
    state: &StepState,
    decision: &Decision,
    update: &WriteBack,
) {
    let cloudfront_id = state.cloudfront_id.as_deref().unwrap_or("");
    if update.status != row.status {
        if update.status == Status::Failed {
            let (code, message) = update.error.clone().unwrap_or_default();
            error!(distribution.id = %id, cloudfront.id = cloudfront_id, owner = %row.owner, error.code = %code, error.message = %message, reason = decision.reason, "distribution failed and needs a person");
        } else {
            info!(distribution.id = %id, cloudfront.id = cloudfront_id, from = %row.status, to = %update.status, reason = decision.reason, "status changed");
        }
    }
    if update.overdue && !row.overdue {
        error!(distribution.id = %id, cloudfront.id = cloudfront_id, owner = %row.owner, "deletion is past its deadline; still rechecking");
    }
    match (&decision.action, &decision.error) {
        (Action::Recheck(Wait::Throttled), _) => {
            metrics::counter!("cloudfront_lifecycle_throttled_total").increment(1);
            warn!(distribution.id = %id, cloudfront.id = cloudfront_id, retry_in_seconds = update.next_check_in, "CloudFront throttled the call; backing off");
        }
        (Action::Recheck(Wait::Backoff), Some(error)) => {
            metrics::counter!("cloudfront_lifecycle_retries_total").increment(1);
            warn!(distribution.id = %id, cloudfront.id = cloudfront_id, attempt = update.failures, error.code = %error.code, error.message = %error.message, retry_in_seconds = update.next_check_in, "CloudFront call failed; retrying after backoff");
        }
        _ => {}
    }
}

/// The row as this check has changed it so far.
struct StepState {
    id: Uuid,
    stored: Stored,
    status_in_db: Status,
    create_attempted: bool,
    cloudfront_id: Option<String>,
    arn: Option<String>,
    domain_name: Option<String>,
    etag: Option<String>,
    cloudfront_status: Option<String>,
    cloudfront_enabled: Option<bool>,
    wait_started: bool,
    error: Option<CallError>,
    applied_spec_version: Option<i32>,
}

impl StepState {
    fn new(row: &Distribution) -> Self {
        StepState {
            id: row.id,
            stored: Stored {
                status: row.status,
                intent: row.intent,
                has_cloudfront_id: row.cloudfront_id.is_some(),
                create_attempted: row.create_attempted,
                disable_confirmed: row.disable_confirmed,
                enabled_reads: row.enabled_reads.max(0) as u32,
                failures: row.failures.max(0) as u32,
                update_pending: row.cloudfront_id.is_some()
                    && row.spec_version > row.applied_spec_version,
                update_etag: row.update_etag.clone(),
            },
            status_in_db: row.status,
            create_attempted: false,
            cloudfront_id: row.cloudfront_id.clone(),
            arn: None,
            domain_name: None,
            etag: None,
            cloudfront_status: None,
            cloudfront_enabled: None,
            wait_started: false,
            error: None,
            applied_spec_version: None,
        }
    }

    fn apply(&mut self, decision: &Decision) {
        self.stored.status = decision.status;
        self.stored.disable_confirmed = decision.disable_confirmed;
        self.stored.enabled_reads = decision.enabled_reads;
        self.stored.failures = match decision.failures {
            Failures::Reset => 0,
            Failures::Keep => self.stored.failures,
            Failures::Increment => self.stored.failures + 1,
        };
        self.wait_started |= decision.wait_started;
        if decision.error.is_some() {
            self.error = decision.error.clone();
        }
        if matches!(decision.action, Action::Create) {
            self.stored.create_attempted = true;
        }
    }

    fn write_back(
        &self,
        decision: &Decision,
        row: &Distribution,
        claimed_at: chrono::DateTime<chrono::Utc>,
        window: Option<LearnedWindow>,
        context: &WorkerContext,
    ) -> WriteBack {
        let settings = &context.settings;
        let scale = settings.scale();
        let checks = if self.wait_started {
            0
        } else if decision.action == Action::Recheck(Wait::Deploy) {
            row.checks.saturating_add(1)
        } else {
            row.checks
        };

        let next_check_in = match decision.action {
            Action::Recheck(wait) => {
                // The schedule works in its own time: the wait's age and the learned window
                // are real time multiplied by the scale, and its delay is divided by it.
                let elapsed = if self.wait_started {
                    Duration::ZERO
                } else {
                    super::learned::elapsed_in_wait(row, claimed_at)
                };
                let progress = WaitProgress {
                    checks: checks.max(0) as u32,
                    elapsed: elapsed.mul_f64(scale),
                    window: window.map(|window| LearnedWindow {
                        low: window.low.mul_f64(scale),
                        high: window.high.mul_f64(scale),
                    }),
                };
                let delay = lifecycle::schedule::delay_in_wait(
                    wait,
                    &settings.schedule,
                    &settings.delays,
                    &progress,
                    self.stored.failures,
                    rand::random::<f64>(),
                );
                Some(delay.as_secs_f64() / scale)
            }
            _ => None,
        };

        let waiting_for_deletion = row.intent != Intent::Keep && !decision.status.is_final();
        let past_deadline = row
            .delete_requested_at
            .map(|requested| {
                (claimed_at - requested).to_std().unwrap_or(Duration::ZERO)
                    > settings.deletion_deadline
            })
            .unwrap_or(false);

        WriteBack {
            status: decision.status,
            reason: decision.reason.to_owned(),
            cloudfront_id: self.cloudfront_id.clone(),
            arn: self.arn.clone(),
            domain_name: self.domain_name.clone(),
            etag: self.etag.clone(),
            cloudfront_status: self.cloudfront_status.clone(),
            cloudfront_enabled: self.cloudfront_enabled,
            next_check_in,
            failures: self.stored.failures as i32,
            checks,
            wait_started: self.wait_started,
            disable_confirmed: self.stored.disable_confirmed,
            enabled_reads: self.stored.enabled_reads as i32,
            error: self
                .error
                .as_ref()
                .map(|error| (error.code.clone(), error.message.clone())),
            overdue: row.overdue || (waiting_for_deletion && past_deadline),
            create_attempted: self.create_attempted || self.stored.create_attempted,
            applied_spec_version: self.applied_spec_version,
            // Only an update still propagating needs its ETag.
            update_etag: if decision.status == Status::Updating {
                self.stored.update_etag.clone()
            } else {
                None
            },
        }
    }
}
